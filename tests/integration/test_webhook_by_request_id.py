"""A fal webhook whose URL names no job: the job is found by fal's request id alone, through the
DynamoDB adapter's ByFalRequest index (moto), and settled through the real handler."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.integration.test_webhook_and_cancel import _ok_body, _submitted_job, _wait_sim_done
from videogen import wiring
from videogen.domain.models import JobStatus


def _deliver_by_request_id(stack: Any, request_id: str, body: dict[str, Any]) -> Any:
    """POST /webhooks/fal signed by the simulator for ``request_id``, with the token and NO job id."""
    raw = json.dumps(body).encode()
    ts = str(int(time.time()))
    headers = {
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": stack.sim.user_id,
        "x-fal-webhook-timestamp": ts,
        "x-fal-webhook-signature": stack.sim.sign(request_id, ts, raw),
    }
    return stack.request("POST", f"/webhooks/fal?token={wiring.webhook_links().token()}", raw=raw, headers=headers)


def test_a_success_naming_only_its_request_completes_the_job_found_by_the_index(stack):
    _, job = _submitted_job(stack)
    _, bystander = _submitted_job(stack)
    _wait_sim_done(stack, job.fal.request_id)
    reply = _deliver_by_request_id(stack, job.fal.request_id, _ok_body(stack, job))
    assert reply.status == 200 and reply.json == {"ok": True, "status": "completed"}
    done = stack.job(job.id)
    assert done.status == JobStatus.COMPLETED and done.video is not None
    assert stack.job(bystander.id).status == JobStatus.SUBMITTED


def test_a_failure_naming_only_its_request_fails_and_refunds_that_job_once(stack):
    token, job = _submitted_job(stack)
    body = {"request_id": job.fal.request_id, "status": "ERROR", "error": "Invalid status code: 422", "payload": None}
    for _ in range(2):  # fal delivers again: the same job, still one refund
        reply = _deliver_by_request_id(stack, job.fal.request_id, body)
        assert reply.status == 200 and reply.json == {"ok": True, "status": "failed"}
    assert stack.job(job.id).status == JobStatus.FAILED
    ledger = stack.request("GET", "/v1/credits", token=token).json["ledger"]
    assert [e["type"] for e in ledger].count("refund") == 1


def test_a_request_id_no_job_holds_is_refused(stack):
    _, job = _submitted_job(stack)
    reply = _deliver_by_request_id(stack, "req-nobody-has", {**_ok_body(stack, job), "request_id": "req-nobody-has"})
    assert reply.status == 401 and reply.json["code"] == "invalid_signature"
    assert stack.job(job.id).status == JobStatus.SUBMITTED
