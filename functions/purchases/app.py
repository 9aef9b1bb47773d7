"""POST /v1/purchases: an in-app purchase turned into credits (routes in videogen.api.routes.purchases).
Never logs the body (a signed transaction names the buyer's account token)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.api.http import build_resolver
from videogen.api.routes import purchases
from videogen.observability import logger, metrics, trace_handler

wiring.catalog()  # a bad Products parameter fails the cold start, not a purchase
app = build_resolver(validate=True)
app.include_router(purchases)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
