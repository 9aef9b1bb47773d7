"""POST /webhooks/app-store — App Store Server Notifications V2, the signed payload verified with
Apple's library (adapters/app_store.py); POST /webhooks/google-play — Play's real-time developer
notifications pushed by Pub/Sub, the push's OIDC token verified with google-auth
(adapters/google_play.py). A refund claws the credits back once (services/purchases.py). 200 for
every verified notification (also those ignored), 401 for one that does not verify, nothing
changed. Never logs the body or the token (no log_event): they name the buyer's purchase."""

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


@app.post("/webhooks/google-play")
def google_play_webhook() -> Any:
    authorization = app.current_event.headers.get("authorization")
    outcome = wiring.purchases().google_play_notification(authorization, raw_body(app))
    return json_response(200, {"outcome": outcome})


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@trace_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
