"""The read API and cancel: GET /v1/videos[/{id}], POST /v1/videos/{id}/cancel, GET /v1/credits,
GET /v1/models, GET /v1/products, GET /openapi.json (routes in videogen.api.routes.reads)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.api.http import build_resolver
from videogen.api.routes import reads
from videogen.observability import logger, metrics, trace_handler

wiring.catalog()  # a bad Products parameter fails the cold start, not GET /v1/products
app = build_resolver(validate=True)
app.include_router(reads)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
