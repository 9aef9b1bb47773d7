"""State machine task for FailJob (submit failed) and Expire (deadline): cancel at fal when
asked, then fail the job and refund through the one completion path."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.observability import logger, metrics, trace_handler


@logger.inject_lambda_context(correlation_id_path="job_id", clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    job = wiring.expire_job().run(
        str(event["job_id"]),
        str(event.get("reason", "failed")),
        bool(event.get("cancel_at_fal", False)),
        cause=event.get("cause"),
    )
    return {"status": job.status.value if job else None}
