"""EventBridge "Job Completed" → the job's poster JPEG and the metadata read from its video
(PosterMaker). Runs after the completion, so it never delays ``completed``. A transient failure
raises: Lambda's asynchronous retries deliver the event again (the work is idempotent)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.observability import logger, metrics, trace_handler


@logger.inject_lambda_context(correlation_id_path="detail.job_id", clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail = event.get("detail")
    job_id = detail.get("job_id") if isinstance(detail, dict) else None
    if not isinstance(job_id, str) or not job_id:
        logger.error("not a job event", extra={"detail_type": str(event.get("detail-type"))[:100]})
        return {"outcome": "ignored"}
    return {"outcome": wiring.poster_maker().run(job_id)}
