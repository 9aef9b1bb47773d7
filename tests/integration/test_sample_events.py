"""The sample events in events/ are real inputs: each handler accepts its event (as `sam local
invoke -e` would feed it) and answers as the contract says for that situation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EVENTS = Path(__file__).resolve().parents[2] / "events"

CASES = [
    ("SubmitFunction", "submit.json", 402),  # user-123 has no credits
    ("ApiFunction", "api_get_video.json", 404),
    ("ApiFunction", "api_list_videos.json", 200),
    ("ApiFunction", "api_cancel_video.json", 404),
    ("ApiFunction", "api_credits.json", 200),
    ("ApiFunction", "api_models.json", 200),
    ("WebhookFunction", "webhook.json", 401),  # not the deployment's token
    ("UploadsFunction", "uploads.json", 404),  # user-123 has no such upload
    ("DevicesFunction", "devices.json", 200),  # user-123's devices: none yet
    ("PurchasesFunction", "purchases.json", 422),  # a JWS Apple never signed: purchase_invalid
    ("StoreWebhookFunction", "store_webhook.json", 401),  # a notification Apple never signed
    ("StoreWebhookFunction", "store_webhook_google_play.json", 401),  # a push whose OIDC token Google never signed
]


@pytest.mark.parametrize(("function", "event", "status"), CASES)
def test_http_sample_events(stack, function, event, status):
    reply = stack.stack.lambdas.invoke(function, json.loads((EVENTS / event).read_text()))
    assert reply["statusCode"] == status, reply
    if status >= 400:
        assert reply["headers"]["Content-Type"] == "application/problem+json"


def test_state_machine_and_schedule_sample_events(stack):
    lambdas = stack.stack.lambdas
    assert lambdas.invoke("FalSubmitFunction", json.loads((EVENTS / "fal_submit.json").read_text())) == {"done": True}
    check = lambdas.invoke("FalCheckFunction", json.loads((EVENTS / "fal_check.json").read_text()))
    assert check == {"done": True, "expired": False, "next_wait_s": 10}
    assert lambdas.invoke("JobFailFunction", json.loads((EVENTS / "job_fail.json").read_text())) == {"status": None}
    assert lambdas.invoke("ReconcileFunction", json.loads((EVENTS / "reconcile.json").read_text())) == {"found": 0}
    s3_event = json.loads((EVENTS / "upload_validator.json").read_text())  # an upload nobody created
    assert lambdas.invoke("UploadValidatorFunction", s3_event) == {"ignored": 1}
    assert lambdas.invoke("NotifierFunction", json.loads((EVENTS / "notifier.json").read_text())) == {}  # no devices


def test_every_function_has_a_sample_event():
    functions = {p.parent.name for p in (EVENTS.parent / "functions").glob("*/app.py")}
    named = {p.stem.split("_")[0] if p.stem.startswith("api_") else p.stem for p in EVENTS.glob("*.json")}
    assert functions <= named


def test_media_sample_event(stack):
    """ "Job Completed" for a job this stack does not hold: consumed without a poster, no error."""
    event = json.loads((EVENTS / "media.json").read_text())
    assert stack.stack.lambdas.invoke("MediaFunction", event) == {"outcome": "job_missing"}
