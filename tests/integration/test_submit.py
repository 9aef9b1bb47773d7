"""POST /v1/videos: every status code of docs/api.md, idempotency and the one-transaction charge.

Through the local gateway (real v2 events, JWT checked) into the real handler on moto.
The conftest audits the credit invariants after each test.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from videogen import crash

KLING = {"prompt": "a fox in the snow", "image_url": "https://example.com/fox.png", "duration": "10"}


def _executions(stack) -> list[dict]:
    sfn = boto3.client("stepfunctions")
    return sfn.list_executions(stateMachineArn=stack.stack.resources.state_machine_arn)["executions"]


def test_accepts_charges_and_starts_one_execution_named_by_the_job(stack):
    token = stack.user(credits=20)
    reply = stack.submit(token, key="k1", model="kling-2.1-standard-i2v", payload=KLING)

    assert reply.status == 202
    body = reply.json
    job = body["job"]
    assert reply.headers["location"] == f"/v1/videos/{job['id']}"
    assert job["status"] == "queued" and job["credits_charged"] == 8  # 10 s of kling 2.1 = 8 credits
    assert body["credits"] == {"charged": 8, "balance": 12}
    assert "idempotent-replayed" not in reply.headers
    assert [e["name"] for e in _executions(stack)] == [job["id"]]
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 12


def test_same_key_same_body_replays_the_first_answer(stack):
    token = stack.user(credits=20)
    first = stack.submit(token, key="same")
    again = stack.submit(token, key="same")
    assert again.status == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json == first.json
    assert len(_executions(stack)) == 1
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 15


def test_same_key_other_body_is_422_reused_and_changes_nothing(stack):
    token = stack.user(credits=20)
    stack.submit(token, key="k")
    reply = stack.submit(token, key="k", payload={"prompt": "something else"})
    assert reply.status == 422
    assert reply.json["code"] == "idempotency_key_reused"
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 15


def test_keys_are_scoped_per_user(stack):
    alice, bob = stack.user(credits=10), stack.user(credits=10)
    a = stack.submit(alice, key="shared")
    b = stack.submit(bob, key="shared")
    assert a.status == b.status == 202
    assert a.json["job"]["id"] != b.json["job"]["id"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "idempotency_key_missing"),
        ({"idempotency-key": ""}, "idempotency_key_missing"),
        ({"idempotency-key": "x" * 256}, "idempotency_key_invalid"),
        ({"idempotency-key": "tab\tkey"}, "idempotency_key_invalid"),
        ({"idempotency-key": "caf\u00e9"}, "idempotency_key_invalid"),
    ],
)
def test_bad_idempotency_key_is_400(stack, headers, code):
    token = stack.user(credits=10)
    reply = stack.request(
        "POST", "/v1/videos", token=token, headers=headers, body={"model": "minimax-video-01", "input": {"prompt": "p"}}
    )
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/problem+json"
    problem = reply.json
    assert problem["code"] == code and problem["status"] == 400
    assert set(problem) >= {"type", "title", "status", "detail", "code"}
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 10


def test_no_or_bad_token_is_401_from_the_authorizer(stack):
    reply = stack.request("POST", "/v1/videos", headers={"idempotency-key": "k"}, body={})
    assert reply.status == 401
    forged = stack.user(credits=1)[:-4] + "AAAA"
    assert stack.request("POST", "/v1/videos", token=forged, headers={"idempotency-key": "k"}).status == 401


def test_insufficient_credits_is_402_and_charges_nothing(stack):
    token = stack.user(credits=3)
    reply = stack.submit(token, model="kling-2.1-standard-i2v", payload=KLING)
    assert reply.status == 402
    assert reply.json["code"] == "insufficient_credits"
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 3
    assert _executions(stack) == []


def test_unknown_model_is_404(stack):
    token = stack.user(credits=10)
    reply = stack.submit(token, model="no-such-model")
    assert reply.status == 404 and reply.json["code"] == "model_not_found"


def test_payload_over_64_kib_is_413(stack):
    token = stack.user(credits=10)
    raw = json.dumps({"model": "minimax-video-01", "input": {"prompt": "x" * (64 * 1024)}}).encode()
    reply = stack.request("POST", "/v1/videos", token=token, headers={"idempotency-key": "big"}, raw=raw)
    assert reply.status == 413 and reply.json["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"model": "kling-2.1-standard-i2v", "input": {"prompt": "p"}}, "input.image_url"),
        ({"model": "kling-2.1-standard-i2v", "input": {**KLING, "duration": "7"}}, "input.duration"),
        ({"model": "kling-2.1-standard-i2v", "input": {**KLING, "image_url": "not a url"}}, "input.image_url"),
        ({"model": "minimax-video-01", "input": {"prompt": "p", "extra": 1}}, "input.extra"),
        ({"model": "minimax-video-01", "input": "prompt"}, "input"),
        ({"input": {"prompt": "p"}}, "model"),
        ({"model": "minimax-video-01", "input": {"prompt": "p"}, "priority": "high"}, "priority"),
    ],
)
def test_invalid_input_is_422_with_locations_and_changes_nothing(stack, body, loc):
    token = stack.user(credits=30)
    reply = stack.request("POST", "/v1/videos", token=token, headers={"idempotency-key": "v"}, body=body)
    assert reply.status == 422
    assert reply.json["code"] == "validation_failed"
    assert loc in [e["loc"] for e in reply.json["errors"]]
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 30
    # nothing was stored under the key: a valid request with it now succeeds
    assert stack.submit(token, key="v").status == 202


def test_body_that_is_not_json_is_422(stack):
    token = stack.user(credits=10)
    reply = stack.request("POST", "/v1/videos", token=token, headers={"idempotency-key": "j"}, raw=b"{nope")
    assert reply.status == 422 and reply.json["errors"][0]["loc"] == "body"


def test_per_user_active_cap_is_429(stack, monkeypatch):
    token = stack.user(credits=100)
    for i in range(10):
        assert stack.submit(token, key=f"cap-{i}").status == 202
    reply = stack.submit(token, key="cap-10")
    assert reply.status == 429 and reply.json["code"] == "too_many_active_jobs"
    other = stack.user(credits=100)
    assert stack.submit(other, key="cap-0").status == 202  # the cap is per user
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 50


def test_fifty_concurrent_submits_with_one_key_make_one_job_one_charge_and_one_answer(stack):
    """What DynamoDB guarantees under contention (injected: every write and TransactGetItems may
    lose to a concurrent transaction): each answer is the key's 202 or a documented retryable
    error (409 idempotency_key_in_use, 503 service_unavailable), and a client retrying with the
    same key gets the same 202. One job, one charge, one execution."""
    from devstack import moto_patches

    token = stack.user(credits=100)
    moto_patches.set_conflicts(0.3, seed=50)
    barrier = threading.Barrier(50)
    retryable: list[tuple[int, str]] = []

    def go(_):
        barrier.wait()
        for _attempt in range(20):
            reply = stack.submit(token, key="one-key")
            if reply.status == 202:
                return reply
            retryable.append((reply.status, reply.json["code"]))
        raise AssertionError(f"no 202 after 20 tries: {reply.status} {reply.body[:200]!r}")

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(go, range(50)))
    injected = sum(moto_patches.FAULT.injected.values())
    moto_patches.set_conflicts(0)
    assert injected > 0  # the contention really happened
    assert set(retryable) <= {(409, "idempotency_key_in_use"), (503, "service_unavailable")}
    bodies = {json.dumps(r.json, sort_keys=True) for r in replies}
    assert len(bodies) == 1
    assert sum(1 for r in replies if "idempotent-replayed" not in r.headers) == 1
    assert len(_executions(stack)) == 1
    credits = stack.request("GET", "/v1/credits", token=token).json
    assert credits["balance"] == 95
    assert [e["type"] for e in credits["ledger"]].count("charge") == 1


def test_fifty_concurrent_submits_with_credits_for_seven(stack):
    token = stack.user(credits=35)  # minimax costs 5: exactly 7 jobs
    barrier = threading.Barrier(50)

    def go(i):
        barrier.wait()
        return stack.submit(token, key=f"key-{i}")

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(go, range(50)))
    statuses = sorted(r.status for r in replies)
    assert statuses.count(202) == 7
    assert statuses.count(402) == 43
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 0
    assert len(_executions(stack)) == 7


def test_start_execution_failure_still_answers_202_and_keeps_the_job_queued(stack):
    token = stack.user(credits=10)
    sfn = boto3.client("stepfunctions")
    sfn.delete_state_machine(stateMachineArn=stack.stack.resources.state_machine_arn)  # StartExecution fails
    reply = stack.submit(token)
    assert reply.status == 202
    assert stack.job(reply.json["job"]["id"]).status.value == "queued"


def test_crash_after_the_transaction_then_client_retry_replays(stack):
    """The Lambda dies between the transaction and StartExecution: API Gateway answers 500;
    the app retries with the same key and gets the stored answer; nothing charged twice."""
    token = stack.user(credits=10)
    crash.arm(crash.AFTER_SUBMIT_TRANSACTION)
    assert stack.submit(token, key="crashy").status == 500
    retry = stack.submit(token, key="crashy")
    assert retry.status == 202 and retry.headers["idempotent-replayed"] == "true"
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 5
    assert _executions(stack) == []  # the reconciler starts it (tests/integration/test_reconciler.py)


def test_user_id_in_the_body_is_ignored(stack):
    token = stack.user(credits=10, user_id="carol")
    stack.user(credits=10, user_id="mallory")
    reply = stack.request(
        "POST",
        "/v1/videos",
        token=token,
        headers={"idempotency-key": "u"},
        body={"model": "minimax-video-01", "input": {"prompt": "p"}, "user_id": "mallory"},
    )
    assert reply.status == 202
    assert stack.job(reply.json["job"]["id"]).user_id == "carol"
    assert stack.store.get_balance("mallory").balance == 10


def test_critical_path_is_one_read_one_transaction_one_start_and_no_fal(stack, monkeypatch):
    """What POST /v1/videos costs: a consistent read of balance + key (TransactGetItems), the ONE
    TransactWriteItems, and StartExecution. No other AWS call, and no call to fal."""
    import requests as http

    from videogen import wiring

    token = stack.user(credits=10)
    calls: list[str] = []
    for service in ("dynamodb", "stepfunctions", "s3", "events", "secretsmanager"):
        wiring.client(service).meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))

    def no_fal(*args, **kwargs):
        raise AssertionError("the submit path called out over HTTP")

    monkeypatch.setattr(http.Session, "request", no_fal)
    assert stack.submit(token, key="path").status == 202
    assert calls == ["TransactGetItems", "TransactWriteItems", "StartExecution"]

    calls.clear()
    assert stack.submit(token, key="path").status == 202  # a replay: the read alone answers it
    assert calls == ["TransactGetItems"]


def test_replay_answers_even_after_the_model_left_sale(stack, monkeypatch):
    from videogen import wiring

    token = stack.user(credits=20)
    first = stack.submit(token, key="before", model="kling-2.1-standard-i2v", payload=KLING)
    monkeypatch.setenv("DISABLED_MODELS", "kling-2.1-standard-i2v")
    wiring.reset()
    again = stack.submit(token, key="before", model="kling-2.1-standard-i2v", payload=KLING)
    assert again.status == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json == first.json
    assert stack.submit(token, key="after", model="kling-2.1-standard-i2v", payload=KLING).status == 404
