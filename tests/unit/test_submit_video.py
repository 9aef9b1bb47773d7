"""POST /v1/videos' use case on fakes: one read, one all-or-nothing charge, one execution start."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.fakes.system import System
from videogen.domain.errors import (
    BalanceChanged,
    ConcurrentUpdate,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InsufficientCredits,
    TooManyActiveJobs,
)
from videogen.domain.models import JobStatus, LedgerType
from videogen.services.submission import SubmitAnswer, SubmitLimits, submit_video

BODY = {"model": "minimax-video-01", "input": {"prompt": "a cat surfing"}}  # 5 credits


def submit(
    system: System, key: str = "k1", body: dict[str, Any] = BODY, user: str = "u1", **limits: Any
) -> SubmitAnswer:
    pauses = limits.pop("pauses", [])
    clock = limits.pop("clock", time.time)
    return submit_video(
        user_id=user,
        idempotency_key=key,
        raw_body=json.dumps(body).encode(),
        store=system.store,
        registry=system.registry,
        workflow=system.workflow,
        limits=SubmitLimits(**limits),
        pause=pauses.append,
        clock=clock,
    )


@pytest.fixture
def funded(system: System) -> System:
    system.store.grant("u1", 10, "welcome")
    system.store.calls.clear()
    return system


def test_given_credits_when_submitting_then_charged_once_and_one_execution_started(funded: System) -> None:
    answer = submit(funded)
    assert answer.status_code == 202 and not answer.replayed
    job_id = answer.body["job"]["id"]
    assert funded.store.calls == ["read_for_submit", "create_job"]  # the whole critical path
    assert funded.workflow.starts == [job_id] and funded.workflow.inputs[job_id]["job_id"] == job_id
    assert funded.job(job_id).status == JobStatus.QUEUED
    assert funded.store.get_balance("u1").balance == 5 and funded.store.get_balance("u1").active_jobs == 1
    assert [e.type for e in funded.store.ledger("u1")] == [LedgerType.GRANT, LedgerType.CHARGE]
    assert funded.fal.calls == []


def test_given_the_same_key_and_body_when_submitted_again_then_the_first_answer_is_replayed(funded: System) -> None:
    first = submit(funded)
    again = submit(funded)
    assert again.replayed and again.body == first.body and again.status_code == 202
    assert funded.workflow.starts == [first.body["job"]["id"]]
    assert funded.store.get_balance("u1").balance == 5


def test_given_the_same_key_with_another_body_then_reused_and_nothing_changes(funded: System) -> None:
    submit(funded)
    with pytest.raises(IdempotencyKeyReused):
        submit(funded, body={**BODY, "input": {"prompt": "a dog"}})
    assert funded.store.get_balance("u1").balance == 5


def test_given_the_key_is_held_by_a_concurrent_request_then_in_use_and_nothing_charged(funded: System) -> None:
    funded.store.fail("create_job", IdempotencyKeyInUse())
    with pytest.raises(IdempotencyKeyInUse):
        submit(funded)
    assert funded.store.get_balance("u1").balance == 10 and funded.workflow.starts == []


def test_given_a_concurrent_request_with_the_key_wins_then_its_answer_is_replayed(funded: System) -> None:
    winner: list[SubmitAnswer] = []
    funded.store.before("create_job", lambda: winner.append(submit(funded)))
    answer = submit(funded)
    assert answer.replayed and answer.body == winner[0].body
    assert funded.store.get_balance("u1").balance == 5 and len(funded.workflow.starts) == 1


def test_given_the_balance_moves_between_read_and_charge_then_it_rereads_and_charges_the_new_balance(
    funded: System,
) -> None:
    funded.store.before("create_job", lambda: funded.store.grant("u1", 3, "bonus"))
    pauses: list[int] = []
    answer = submit(funded, pauses=pauses)
    assert pauses == [0] and answer.body["credits"] == {"charged": 5, "balance": 8}
    assert funded.store.get_balance("u1").balance == 8


def test_given_the_balance_keeps_moving_then_concurrent_update_after_bounded_retries(funded: System) -> None:
    funded.store.fail("create_job", BalanceChanged(), times=1000)
    pauses: list[int] = []
    with pytest.raises(ConcurrentUpdate):
        submit(funded, pauses=pauses)
    assert pauses == list(range(len(pauses))) and 1 < len(pauses) <= 100
    assert funded.store.get_balance("u1").balance == 10


def test_given_too_few_credits_then_insufficient_and_nothing_written(funded: System) -> None:
    funded.store.calls.clear()
    with pytest.raises(InsufficientCredits):
        submit(funded, user="poor")
    assert funded.store.calls == ["read_for_submit"]


def test_given_the_active_cap_is_reached_then_too_many_active_jobs(funded: System) -> None:
    submit(funded, key="a", max_active_jobs=1)
    with pytest.raises(TooManyActiveJobs):
        submit(funded, key="b", max_active_jobs=1)


def test_given_start_execution_fails_then_still_202_and_the_job_waits_queued_for_the_reconciler(
    funded: System,
) -> None:
    funded.workflow.start_error = RuntimeError("StartExecution unavailable")
    answer = submit(funded)
    assert answer.status_code == 202
    job_id = answer.body["job"]["id"]
    assert funded.job(job_id).status == JobStatus.QUEUED and funded.workflow.state(job_id) == "MISSING"
    funded.workflow.start_error = None
    assert funded.reconciler.run(now=10**10)["execution_started"] == 1
