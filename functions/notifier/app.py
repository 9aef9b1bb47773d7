"""EventBridge "Job Completed" / "Job Failed" → one push notification per device of the job's owner."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.domain.models import JobStatus
from videogen.observability import logger, metrics, trace_handler


@logger.inject_lambda_context(correlation_id_path="detail.job_id", clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    detail = event.get("detail") or {}
    return wiring.notifier().job_ended(str(detail["job_id"]), str(detail["user_id"]), JobStatus(detail["status"]))
