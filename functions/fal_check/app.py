"""State machine task Check: read the job (terminal → done, no fal call), else ask fal once,
finish the job if fal is done, keep progress current. Returns {done, expired, next_wait_s}."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.observability import logger, metrics, trace_handler


@logger.inject_lambda_context(correlation_id_path="job_id", clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return wiring.check_job().run(str(event["job_id"]), int(event.get("attempt", 0)), dict(event.get("timing", {})))
