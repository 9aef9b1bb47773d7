"""Per-user limits through the real handlers on moto (the DynamoDB conditions are the adapter's):
the request rate of submits and uploads (cancels never count nor are refused), the daily credit
cap, their 429 rate_limited with Retry-After, concurrency (never more accepted than the budget),
and the body cap on every route."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.jobs import make_job
from videogen import wiring
from videogen.domain.errors import BalanceChanged
from videogen.domain.limits import Usage
from videogen.domain.models import Balance, CancelIntent


@pytest.fixture
def limits(monkeypatch):
    """Set the limits the handlers use from now on (as the template's parameters would)."""

    def set_limits(per_minute: int = 30, burst: int = 10, cap: int = 0) -> None:
        monkeypatch.setenv("USER_REQUESTS_PER_MINUTE", str(per_minute))
        monkeypatch.setenv("USER_REQUEST_BURST", str(burst))
        monkeypatch.setenv("DAILY_CREDIT_CAP", str(cap))
        wiring.reset()

    return set_limits


def _cancel_ready_jobs(stack, n: int) -> tuple[str, str, list[str]]:
    """One user's ``n`` jobs waiting in the simulator's queue (a cancel reaches fal)."""
    stack.sim.set_config(queue_s=60, run_s=0.1, webhook_drop_rate=1)
    user_id = f"user-{uuid.uuid4().hex[:8]}"
    token = stack.user(credits=5 * n, user_id=user_id)
    ids = []
    for _ in range(n):
        job_id = stack.submit(token).json["job"]["id"]
        assert wiring.submit_to_fal().run(job_id) == {"done": False}
        ids.append(job_id)
    return user_id, token, ids


# --- submit ------------------------------------------------------------------------------------


def test_a_burst_from_one_user_is_429_rate_limited_with_retry_after_while_another_user_is_served(stack, limits):
    limits(per_minute=1, burst=4)
    alice, bob = stack.user(credits=500), stack.user(credits=500)
    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(lambda _: stack.submit(alice), range(12)))
    statuses = sorted(r.status for r in replies)
    accepted = statuses.count(202)
    refused = [r for r in replies if r.status == 429]
    print(f"\n12 concurrent submits, budget 4: accepted {accepted}, 429 rate_limited {len(refused)}")
    assert accepted == 4 and len(refused) == 8 and set(statuses) == {202, 429}
    for r in refused:
        assert r.json["code"] == "rate_limited" and r.headers["content-type"] == "application/problem+json"
        assert 1 <= int(r.headers["retry-after"]) <= 60
    assert stack.request("GET", "/v1/credits", token=alice).json["balance"] == 500 - 4 * 5
    assert stack.submit(bob).status == 202  # another user's own budget


def test_concurrent_uploads_of_one_user_share_the_budget_with_submits_and_never_pass_more(stack, limits):
    limits(per_minute=1, burst=4)
    token = stack.user(credits=50)
    body = {"content_type": "image/png", "size_bytes": 100}
    assert stack.submit(token).status == 202  # one of the four
    with ThreadPoolExecutor(max_workers=10) as pool:
        replies = list(pool.map(lambda _: stack.request("POST", "/v1/uploads", token=token, body=body), range(10)))
    statuses = [r.status for r in replies]
    print(f"\n10 concurrent uploads, budget 4 with one submit: 201 {statuses.count(201)}, 429 {statuses.count(429)}")
    assert statuses.count(201) == 3 and statuses.count(429) == 7
    for r in replies:
        if r.status == 429:
            assert r.json["code"] == "rate_limited" and 1 <= int(r.headers["retry-after"]) <= 60
    created = [r.json["upload"]["id"] for r in replies if r.status == 201]
    assert all(stack.request("GET", f"/v1/uploads/{i}", token=token).status == 200 for i in created)
    assert stack.submit(token).status == 429  # the same budget
    assert stack.request("POST", "/v1/uploads", token=stack.user(credits=0), body=body).status == 201


def test_a_replay_is_never_refused_by_the_limit(stack, limits):
    limits(per_minute=1, burst=1)
    token = stack.user(credits=50)
    first = stack.submit(token, key="only")
    assert stack.submit(token, key="second").status == 429
    again = stack.submit(token, key="only")
    assert again.status == 202 and again.headers["idempotent-replayed"] == "true" and again.json == first.json


def test_the_daily_cap_refuses_a_charge_over_it_until_midnight_utc(stack, limits):
    limits(cap=10)
    token = stack.user(credits=100)
    assert [stack.submit(token).status for _ in range(2)] == [202, 202]  # 5 + 5
    over = stack.submit(token)
    assert over.status == 429 and over.json["code"] == "rate_limited"
    assert "daily spending cap of 10 credits" in over.json["detail"]
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    assert abs(int(over.headers["retry-after"]) - (midnight - now).total_seconds()) <= 5
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 90


# --- cancel ------------------------------------------------------------------------------------


def test_concurrent_cancels_that_reach_fal_are_all_served_with_the_budget_spent_and_spend_none(stack, limits):
    """docs/api.md: cancel is 200/404/409/503, never 429 rate_limited; a runaway job can always be
    stopped, and the cancels leave the submits' budget as it was."""
    limits(per_minute=60_000, burst=100)  # make the jobs freely
    user_id, token, ids = _cancel_ready_jobs(stack, 6)
    limits(per_minute=1, burst=1)
    stack.store.grant(user_id, 100, "more")
    assert [stack.submit(token).status for _ in range(2)] == [202, 429]  # the budget is spent
    tat = stack.store.get_balance(user_id).rl_tat_ms
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda i: stack.request("POST", f"/v1/videos/{i}/cancel", token=token), ids))
    statuses = [r.status for r in replies]
    print(f"\n6 concurrent cancels reaching fal, budget spent: 200 {statuses.count(200)}")
    assert statuses == [200] * 6 and all(r.json["status"] == "canceled" for r in replies)
    assert all(stack.job(i).cancel_requested == CancelIntent.USER for i in ids)
    assert stack.sim.stats()["cancelled"] == 6
    assert stack.store.get_balance(user_id).rl_tat_ms == tat


def test_cancels_answered_from_the_job_are_not_counted(stack, limits):
    limits(per_minute=1, burst=1)
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]  # the budget is spent
    for _ in range(3):  # never submitted: refunded at once; then 200 from the stored job
        reply = stack.request("POST", f"/v1/videos/{job_id}/cancel", token=token)
        assert reply.status == 200 and reply.json["status"] == "canceled"
    assert stack.request("POST", f"/v1/videos/vid_{'0' * 26}/cancel", token=token).status == 404


# --- the adapter's conditions ------------------------------------------------------------------


def _create(store, job, key: str, seen: Balance, usage: Usage) -> None:
    store.create_job(
        job, idempotency_key=key, fingerprint="f", answer={}, seen=seen, usage=usage, max_active=10, idem_ttl_s=60
    )


def test_create_job_refuses_a_limit_state_that_moved_since_it_was_read(stack):
    store, user = stack.store, "u-cond"
    store.grant(user, 100, "g")
    seen = store.get_balance(user)
    job = make_job(user_id=user)
    _create(store, job, "a", seen, Usage(5, "2027-01-01", 5))
    moved = store.get_balance(user)
    assert (moved.rl_tat_ms, moved.spend_day, moved.spend_credits) == (5, "2027-01-01", 5)
    stale = Balance(moved.balance, moved.active_jobs, 4, moved.spend_day, moved.spend_credits)
    with pytest.raises(BalanceChanged):
        _create(store, make_job(user_id=user), "b", stale, Usage(6, "2027-01-01", 10))
    stale_spend = Balance(moved.balance, moved.active_jobs, 5, moved.spend_day, 0)
    with pytest.raises(BalanceChanged):
        _create(store, make_job(user_id=user), "c", stale_spend, Usage(6, "2027-01-01", 5))
    assert store.get_balance(user) == moved and store.get_idempotency(user, "b") is None


# --- the body cap on every route ---------------------------------------------------------------

OVER = b'{"x": "' + b"a" * (64 * 1024) + b'"}'


def test_an_oversize_body_is_413_on_every_route_family_and_changes_nothing(stack):
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    before = (stack.request("GET", "/v1/credits", token=token).json, stack.job(job_id))
    routes = [
        ("POST", "/v1/videos", {"idempotency-key": "big"}),
        ("POST", f"/v1/videos/{job_id}/cancel", {}),
        ("GET", "/v1/credits", {}),
        ("GET", f"/v1/videos/{job_id}", {}),
        ("GET", "/v1/models", {}),
        ("POST", f"/webhooks/fal?job_id={job_id}", {}),
    ]
    for method, path, headers in routes:
        reply = stack.request(method, path, token=token, raw=OVER, headers=headers)
        assert reply.status == 413, (path, reply.status, reply.body)
        assert reply.json["code"] == "payload_too_large" and reply.headers["content-type"] == "application/problem+json"
    assert (stack.request("GET", "/v1/credits", token=token).json, stack.job(job_id)) == before


def test_an_upload_costs_one_transaction_counted_or_not_and_a_refusal_no_more(stack, limits):
    """POST /v1/uploads' AWS calls: the ONE TransactWriteItems that creates the record and counts it
    (no read first); a user over the budget is refused on the state that write returned."""
    limits(per_minute=1, burst=1)
    token = stack.user(credits=0)
    calls: list[str] = []
    for service in ("dynamodb", "s3"):
        wiring.client(service).meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
    body = {"content_type": "image/png", "size_bytes": 100}
    assert stack.request("POST", "/v1/uploads", token=token, body=body).status == 201
    print(f"\nAWS calls of one POST /v1/uploads: {calls}")
    assert calls == ["TransactWriteItems"]  # the presigned POST is signed locally
    calls.clear()
    refused = stack.request("POST", "/v1/uploads", token=token, body=body)
    assert refused.status == 429 and refused.json["code"] == "rate_limited" and "retry-after" in refused.headers
    assert calls == ["TransactWriteItems"]
