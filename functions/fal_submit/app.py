"""State machine task SubmitToFal: hand the job to fal.ai. Raises FalTransientError for the
state machine's Retry; returns {"done": bool}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.observability import logger, metrics, trace_handler


@logger.inject_lambda_context(correlation_id_path="job_id", clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return wiring.submit_to_fal().run(str(event["job_id"]))
