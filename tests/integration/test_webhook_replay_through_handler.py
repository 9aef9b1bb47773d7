"""The replay probe through the real webhook handler on moto: a captured, validly signed
delivery (the simulator signs for our pinned fal account) aimed at other users' jobs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.integration.test_webhook_and_cancel import _ok_body, _submitted_job, _wait_sim_done
from videogen import wiring
from videogen.domain.models import JobStatus


def _signed(stack: Any, request_id: str, raw: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": stack.sim.user_id,
        "x-fal-webhook-timestamp": ts,
        "x-fal-webhook-signature": stack.sim.sign(request_id, ts, raw),
    }


def _post(stack: Any, query: str, request_id: str, raw: bytes) -> Any:
    return stack.request("POST", f"/webhooks/fal?{query}", raw=raw, headers=_signed(stack, request_id, raw))


def _state(stack: Any, jobs: dict[str, str], tokens: dict[str, str]) -> Any:
    keys = stack.bucket_keys()  # first: the finished job's poster is written after its event
    return (
        {name: stack.job(job_id) for name, job_id in jobs.items()},
        {name: stack.request("GET", "/v1/credits", token=tok).json for name, tok in tokens.items()},
        keys,
    )


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_a_captured_delivery_replayed_at_other_users_jobs_is_refused_and_changes_nothing(stack, outcome) -> None:
    links = wiring.webhook_links()
    _, attacker = _submitted_job(stack)  # its request recorded; the delivery for it is captured
    _wait_sim_done(stack, attacker.fal.request_id)
    rid = attacker.fal.request_id
    body = _ok_body(stack, attacker)
    if outcome == "failure":
        body = {"request_id": rid, "status": "ERROR", "error": "boom", "payload": None}
    raw = json.dumps(body).encode()

    tokens = {name: stack.user(credits=10) for name in ("queued", "resubmitted", "submitted", "finished")}
    jobs = {name: stack.submit(tok).json["job"]["id"] for name, tok in tokens.items()}
    for _ in range(2):  # two submits that may have reached fal: submit_attempts > 1, no request recorded
        stack.store.record_submit_attempt(jobs["resubmitted"])
    assert wiring.submit_to_fal().run(jobs["submitted"]) == {"done": False}
    assert wiring.submit_to_fal().run(jobs["finished"]) == {"done": False}
    finished = stack.job(jobs["finished"])
    _wait_sim_done(stack, finished.fal.request_id)
    own = json.dumps(_ok_body(stack, finished)).encode()
    assert _post(stack, f"token={links.token()}&job_id={finished.id}", finished.fal.request_id, own).status == 200
    assert stack.settled_job(finished.id).status == JobStatus.COMPLETED  # its poster written too
    assert stack.job(jobs["resubmitted"]).submit_attempts == 2

    before = _state(stack, jobs, tokens)
    answers = set()
    for job_id in jobs.values():
        for query in (
            f"token={links.token()}&job_id={job_id}",  # job id swapped
            f"token={links.token()}&job_id={job_id}&mac={links.mac(attacker.id)}",  # with the attacker's MAC
            f"token={links.token()}&job_id={job_id}&mac={links.mac(job_id)}",  # even with the victim's own URL
        ):
            reply = _post(stack, query, rid, raw)
            assert reply.status == 401, (job_id, reply.body)
            answers.add(reply.body)
    assert _state(stack, jobs, tokens) == before
    assert stack.job(attacker.id).status == JobStatus.SUBMITTED

    # one body for every refusal: a wrong URL token reads as the rest
    wrong = _post(stack, f"token=wrong&job_id={attacker.id}", rid, raw)
    unsigned = stack.request("POST", f"/webhooks/fal?token={links.token()}&job_id={attacker.id}", raw=raw)
    assert wrong.status == unsigned.status == 401
    answers |= {wrong.body, unsigned.body}
    assert len(answers) == 1, answers
    # and the delivery still settles its own job
    assert _post(stack, f"token={links.token()}&job_id={attacker.id}", rid, raw).status == 200
