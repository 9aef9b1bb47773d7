"""The per-user limits inside submit's and cancel's own writes, on fakes: what counts, what is
refused (429 rate_limited with its own Retry-After), that nothing else changes when refused, and
that a decision on a stale snapshot is decided again."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes import in_queue
from tests.fakes.system import System
from tests.fakes.uploads import FakeUploadBucket
from tests.unit.test_submit_video import submit as submit_with
from videogen import contract
from videogen.domain.errors import (
    BalanceChanged,
    ConcurrentUpdate,
    InsufficientCredits,
    RateLimited,
    TooManyActiveJobs,
    ValidationFailed,
)
from videogen.domain.limits import UserLimits
from videogen.domain.models import Balance, JobStatus, LedgerType
from videogen.services import uploads
from videogen.services.submission import SubmitAnswer

BODY = {"model": "minimax-video-01", "input": {"prompt": "a cat surfing"}}  # 5 credits
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def submit(system: System, key: str, clock: Clock, uid: str = "u1", **limits: Any) -> SubmitAnswer:
    return submit_with(system, key, BODY, uid, clock=clock, pauses=[], **{"max_active_jobs": 100, **limits})


@pytest.fixture
def rich(system: System) -> System:
    system.store.grant("u1", 1000, "welcome")
    system.store.grant("u2", 1000, "welcome")
    return system


def charges(system: System, user: str = "u1") -> int:
    return sum(1 for e in system.store.ledger(user) if e.type == LedgerType.CHARGE)


# --- submit ------------------------------------------------------------------------------------


def test_a_burst_over_the_budget_is_rate_limited_with_the_real_wait_and_nothing_written(rich: System) -> None:
    clock, limits = Clock(), UserLimits(requests_per_minute=6, burst=3)  # one per 10 s
    for i in range(3):
        assert submit(rich, f"k{i}", clock, **_limits(limits)).status_code == 202
    before = (rich.store.get_balance("u1"), charges(rich), list(rich.workflow.starts))
    clock.t += 3.5  # 6.5 s until the next one is allowed
    with pytest.raises(RateLimited) as refused:
        submit(rich, "k3", clock, **_limits(limits))
    assert refused.value.retry_after_s == 7 and refused.value.status == 429
    assert (rich.store.get_balance("u1"), charges(rich), list(rich.workflow.starts)) == before
    assert rich.store.get_idempotency("u1", "k3") is None  # the same key works later
    clock.t += 6.5
    assert submit(rich, "k3", clock, **_limits(limits)).status_code == 202


def _limits(user: UserLimits) -> dict[str, Any]:
    return {"per_user": user}


def test_a_replay_is_answered_without_counting_and_never_refused(rich: System) -> None:
    clock, limits = Clock(), UserLimits(requests_per_minute=1, burst=1)
    first = submit(rich, "k0", clock, **_limits(limits))
    tat = rich.store.get_balance("u1").rl_tat_ms
    for _ in range(5):  # over the budget, but a replay
        again = submit(rich, "k0", clock, **_limits(limits))
        assert again.replayed and again.body == first.body
    assert rich.store.get_balance("u1").rl_tat_ms == tat
    with pytest.raises(RateLimited):
        submit(rich, "k1", clock, **_limits(limits))


def test_requests_refused_before_the_write_are_not_counted(system: System) -> None:
    clock, limits = Clock(), UserLimits(requests_per_minute=1, burst=1)
    with pytest.raises(InsufficientCredits):  # 402: no write, no count
        submit(system, "k0", clock, **_limits(limits))
    system.store.grant("u1", 10, "g")
    assert system.store.get_balance("u1").rl_tat_ms is None
    assert submit(system, "k1", clock, **_limits(limits)).status_code == 202
    with pytest.raises(TooManyActiveJobs):  # checked before the rate: not counted either
        submit(system, "k2", clock, max_active_jobs=1, **_limits(UserLimits(requests_per_minute=1, burst=5)))


def test_another_user_has_a_budget_of_their_own(rich: System) -> None:
    clock, limits = Clock(), UserLimits(requests_per_minute=1, burst=2)
    for i in range(2):
        submit(rich, f"k{i}", clock, **_limits(limits))
    with pytest.raises(RateLimited):
        submit(rich, "k2", clock, **_limits(limits))
    assert submit(rich, "k0", clock, uid="u2", **_limits(limits)).status_code == 202


def test_a_request_that_counted_meanwhile_makes_the_submit_decide_again_and_refuse(rich: System) -> None:
    """Two submits decided on one snapshot: the store's condition on the seen rate state lets one
    write; the other re-reads and is over the budget now."""
    clock, limits = Clock(), UserLimits(requests_per_minute=1, burst=1)
    rich.store.before("create_job", lambda: submit(rich, "other", clock, **_limits(limits)))
    with pytest.raises(RateLimited):
        submit(rich, "k0", clock, **_limits(limits))
    assert charges(rich) == 1 and rich.store.calls.count("read_for_submit") == 3


def test_the_daily_cap_refuses_a_charge_over_it_until_midnight_and_names_the_cap(rich: System) -> None:
    clock, limits = Clock(), UserLimits(daily_credit_cap=12)  # 08:00 UTC
    submit(rich, "k0", clock, **_limits(limits))
    submit(rich, "k1", clock, **_limits(limits))  # 10 spent
    with pytest.raises(RateLimited) as over:
        submit(rich, "k2", clock, **_limits(limits))
    assert over.value.retry_after_s == 16 * 3600 and "daily spending cap of 12 credits" in over.value.detail
    assert charges(rich) == 2
    clock.t += 16 * 3600  # the next UTC day
    assert submit(rich, "k2", clock, **_limits(limits)).status_code == 202
    assert rich.store.get_balance("u1").spend_credits == 5


def test_a_job_over_the_daily_cap_on_its_own_is_a_422_even_on_a_fresh_day_and_balance(system: System) -> None:
    """It could never pass: 422 validation_failed (not a 429 retried at every midnight), decided
    before the balance (a user with too little credit is not told to top up for it), nothing
    written, not counted."""
    clock, limits = Clock(), UserLimits(daily_credit_cap=4)  # the job costs 5
    for credits in (0, 1000):
        with pytest.raises(ValidationFailed) as never:
            submit(system, "k0", clock, **_limits(limits))
        assert never.value.status == 422 and "daily spending cap of 4" in never.value.errors[0]["msg"]
        system.store.grant("u1", credits or 1000, f"g{credits}")
    assert charges(system) == 0 and system.store.get_balance("u1").rl_tat_ms is None
    assert system.store.get_idempotency("u1", "k0") is None and not system.workflow.starts


def test_a_refund_does_not_give_the_days_budget_back(rich: System) -> None:
    clock, limits = Clock(), UserLimits(daily_credit_cap=5)
    job_id = submit(rich, "k0", clock, **_limits(limits)).body["job"]["id"]
    rich.cancel.run(rich.job(job_id))  # refunded
    assert rich.store.get_balance("u1").spend_credits == 5
    with pytest.raises(RateLimited):
        submit(rich, "k1", clock, **_limits(limits))


# --- cancel ------------------------------------------------------------------------------------


def test_a_cancel_is_neither_counted_nor_refused_when_submits_spent_the_budget(rich: System) -> None:
    """docs/api.md: a cancel answers 200/404/409/503, never 429 rate_limited. A user whose submits
    spent the whole budget can still stop a job fal holds, and the cancel spends none of it."""
    clock, limits = Clock(), UserLimits(requests_per_minute=1, burst=1)
    submit(rich, "k0", clock, **_limits(limits))  # the budget is spent
    tat = rich.store.get_balance("u1").rl_tat_ms
    for i in range(3):
        job = rich.given_job(JobStatus.SUBMITTED, request_id=f"req-{i}", user_id="u1")
        rich.fal.script_status(f"req-{i}", in_queue(1))
        assert rich.cancel.run(job).status == JobStatus.CANCELED
    assert rich.store.get_balance("u1").rl_tat_ms == tat  # nothing spent
    clock.t += 60  # the next submit is allowed exactly when it would have been without the cancels
    assert submit(rich, "k1", clock, **_limits(limits)).status_code == 202


# --- uploads -----------------------------------------------------------------------------------


def create_upload(system: System, clock: Clock, limits: UserLimits, uid: str = "u1") -> str:
    request = contract.UploadRequest.model_validate({"content_type": "image/png", "size_bytes": 100})
    return uploads.create_upload(system.store, FakeUploadBucket(), uid, request, limits, clock).upload.id


def test_an_idle_users_upload_is_counted_in_its_one_write_with_no_read(system: System) -> None:
    clock, limits = Clock(), UserLimits(requests_per_minute=6, burst=3)
    upload_id = create_upload(system, clock, limits)
    assert system.store.calls == ["create_upload"]  # no read of the balance item: one write
    assert system.store.get_upload("u1", upload_id) is not None
    assert system.store.get_balance("u1").rl_tat_ms == int(NOW * 1000) + 10_000


def test_uploads_over_the_budget_are_rate_limited_with_the_real_wait_and_nothing_written(system: System) -> None:
    clock, limits = Clock(), UserLimits(requests_per_minute=6, burst=3)  # one per 10 s
    for _ in range(3):
        create_upload(system, clock, limits)
    tat = system.store.get_balance("u1").rl_tat_ms
    system.store.calls.clear()
    clock.t += 3.5
    with pytest.raises(RateLimited) as refused:
        create_upload(system, clock, limits)
    assert refused.value.retry_after_s == 7 and refused.value.status == 429
    # decided on the state the refused write returned: no read, and nothing written
    assert system.store.calls == ["create_upload"] and system.store.get_balance("u1").rl_tat_ms == tat
    assert len(system.store._uploads) == 3
    clock.t += 6.5
    create_upload(system, clock, limits)
    assert len(system.store._uploads) == 4


def test_a_bursting_user_within_the_budget_is_decided_on_the_returned_state_in_a_second_write(system: System) -> None:
    clock, limits = Clock(), UserLimits(requests_per_minute=6, burst=3)
    create_upload(system, clock, limits)
    system.store.calls.clear()
    create_upload(system, clock, limits)  # not idle (tat > now) but within the burst
    assert system.store.calls == ["create_upload", "create_upload"]
    assert system.store.get_balance("u1").rl_tat_ms == int(NOW * 1000) + 20_000


def test_uploads_and_submits_share_one_budget(rich: System) -> None:
    clock, limits = Clock(), UserLimits(requests_per_minute=1, burst=2)
    create_upload(rich, clock, limits)
    submit(rich, "k0", clock, **_limits(limits))
    with pytest.raises(RateLimited):
        create_upload(rich, clock, limits)
    with pytest.raises(RateLimited):
        submit(rich, "k1", clock, **_limits(limits))
    create_upload(rich, clock, limits, uid="u2")  # another user's budget is their own


def test_an_upload_whose_rate_state_keeps_moving_is_concurrent_update_and_writes_nothing(system: System) -> None:
    clock, limits = Clock(), UserLimits(requests_per_minute=60_000, burst=10_000)
    moved = BalanceChanged(Balance(rl_tat_ms=int(NOW * 1000) + 5))  # another request counted meanwhile
    system.store.fail("create_upload", moved, times=uploads.MAX_OPTIMISTIC_ATTEMPTS)
    with pytest.raises(ConcurrentUpdate):
        create_upload(system, clock, limits)
    assert system.store.calls.count("create_upload") == uploads.MAX_OPTIMISTIC_ATTEMPTS
    assert system.store._uploads == {} and system.store.get_balance("u1").rl_tat_ms is None
