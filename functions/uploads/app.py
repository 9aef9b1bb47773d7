"""POST /v1/uploads, GET /v1/uploads/{id} (routes in videogen.api.routes.uploads)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen.api.http import build_resolver
from videogen.api.routes import uploads
from videogen.observability import logger, metrics, trace_handler

app = build_resolver(validate=True)
app.include_router(uploads)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
