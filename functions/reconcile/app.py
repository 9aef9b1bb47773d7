"""EventBridge-scheduled reconciler: repairs whatever slipped through (bounded work per run)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.observability import logger, metrics, trace_handler


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return wiring.reconciler().run()
