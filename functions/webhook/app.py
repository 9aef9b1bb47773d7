"""POST /webhooks/fal — fal.ai reports a finished request. Verified, then finished through the
one completion path. Never logs the body or the token (no log_event)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import wiring
from videogen.api.http import build_resolver, json_response, raw_body
from videogen.domain.errors import MediaTransferError, ServiceUnavailable
from videogen.observability import logger, metrics, trace_handler

app = build_resolver()


@app.post("/webhooks/fal")
def fal_webhook() -> Response:
    event = app.current_event
    try:
        result = wiring.webhooks().handle(event.headers, dict(event.query_string_parameters or {}), raw_body(app))
    except MediaTransferError as exc:
        logger.warning("video transfer failed; fal will deliver again", extra={"error": str(exc)[:300]})
        # The completion could not be recorded: answer 5xx so fal delivers again (the poll loop
        # and the reconciler would finish the job too).
        raise ServiceUnavailable("The result could not be stored yet; deliver again") from None
    return json_response(200, result)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
