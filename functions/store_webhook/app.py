"""POST /webhooks/app-store — App Store Server Notifications V2. The signed payload is verified with
Apple's library (services/purchases.py, adapters/app_store.py); a refund claws the credits back once.
200 for every verified notification (also those ignored), 401 for one that does not verify, nothing
changed. Never logs the body (no log_event): it names the buyer's transaction and account token."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import jsonbody, wiring
from videogen.api.http import build_resolver, json_response, raw_body
from videogen.domain.errors import InvalidSignature
from videogen.observability import logger, metrics, trace_handler

wiring.catalog()  # a bad Products parameter fails the cold start, not a refund
app = build_resolver()


@app.post("/webhooks/app-store")
def app_store_webhook() -> Any:
    try:
        body = jsonbody.loads(raw_body(app))
    except ValueError:
        body = None
    payload = body.get("signedPayload") if isinstance(body, dict) else None
    if not isinstance(payload, str):
        raise InvalidSignature("the body is not an App Store notification: no signedPayload")
    notification, outcome = wiring.purchases().app_store_notification(payload)
    return json_response(200, {"notification_id": notification.notification_id, "outcome": outcome})


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
