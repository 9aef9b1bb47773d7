"""DynamoDB's contention (TransactionConflict) on every path that writes, on fakes.

``FakeStore.conflict(op, n)`` makes the next ``n`` DynamoDB calls behind ``op`` lose to a
concurrent transaction, retried as the adapter retries them (``CONFLICT_ATTEMPTS`` tries, then
``StoreBusy``). For each caller: a few conflicts are absorbed (the pauses are the jittered
backoff's attempts), persistent ones end in the documented answer, and nothing is charged,
refunded or lost twice. The adapter's own mapping on moto: tests/integration/test_ddb_conflicts.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import completed, video_url
from tests.fakes.system import System, webhook_query
from videogen.api.http import problem
from videogen.domain.errors import ServiceUnavailable, StoreBusy
from videogen.domain.models import CancelIntent, JobStatus, LedgerType
from videogen.retry import CONFLICT_ATTEMPTS
from videogen.services.credits import grant_credits
from videogen.services.submission import SubmitAnswer, SubmitLimits, submit_video

BODY = {"model": "minimax-video-01", "input": {"prompt": "a cat surfing"}}  # 5 credits
ABSORBED = CONFLICT_ATTEMPTS - 1  # the most conflicts in a row a call survives
LATER = 10_000.0
ASL = Path(__file__).resolve().parents[2] / "statemachines" / "video_job.asl.json"


def submit(system: System, key: str = "k1") -> SubmitAnswer:
    return submit_video(
        user_id="u1",
        idempotency_key=key,
        raw_body=json.dumps(BODY).encode(),
        store=system.store,
        registry=system.registry,
        workflow=system.workflow,
        limits=SubmitLimits(),
        pause=lambda _: None,
    )


def ok_delivery(system: System, job_id: str, request_id: str) -> dict[str, Any]:
    body = {"request_id": request_id, "status": "OK", "payload": {"video": {"url": video_url(request_id)}}}
    return system.webhooks.handle({}, webhook_query(job_id), json.dumps(body).encode())


@pytest.fixture
def funded(system: System) -> System:
    system.store.grant("u1", 10, "welcome")
    return system


def test_the_conflict_answer_is_503_service_unavailable_with_retry_after() -> None:
    reply = problem(StoreBusy("kept conflicting"))
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "1"
    assert json.loads(str(reply.body))["code"] == "service_unavailable"
    assert isinstance(StoreBusy(), ServiceUnavailable)


def test_only_writes_and_transactional_reads_can_conflict(system: System) -> None:
    with pytest.raises(ValueError):
        system.store.conflict("get_job")


# --- submit: read_for_submit (TransactGetItems) and create_job (TransactWriteItems) ---------------


@pytest.mark.parametrize("operation", ["read_for_submit", "create_job"])
def test_submit_absorbs_conflicts_and_charges_once(funded: System, operation: str) -> None:
    funded.store.conflict(operation, ABSORBED)
    answer = submit(funded)
    assert answer.status_code == 202 and not answer.replayed
    assert funded.store.pauses == list(range(ABSORBED))  # full-jitter backoff, attempt by attempt
    assert funded.store.get_balance("u1").balance == 5
    assert [e.type for e in funded.store.ledger("u1")].count(LedgerType.CHARGE) == 1
    assert funded.workflow.starts == [answer.body["job"]["id"]]


@pytest.mark.parametrize("operation", ["read_for_submit", "create_job"])
def test_submit_with_persistent_conflicts_is_503_charges_nothing_and_the_same_key_then_works(
    funded: System, operation: str
) -> None:
    funded.store.conflict(operation, CONFLICT_ATTEMPTS)
    with pytest.raises(StoreBusy):
        submit(funded)
    assert funded.store.get_balance("u1").balance == 10 and funded.workflow.starts == []
    again = submit(funded)  # the app retries with the SAME key: a first answer, charged once
    assert again.status_code == 202 and not again.replayed
    assert funded.store.get_balance("u1").balance == 5 and len(funded.workflow.starts) == 1


# --- grants ------------------------------------------------------------------------------------


def test_a_grant_absorbs_conflicts_and_a_persistent_one_applies_nothing_until_retried(system: System) -> None:
    system.store.conflict("grant", ABSORBED)
    assert grant_credits(system.store, user_id="u2", credits=7, grant_id="g1") is True
    system.store.conflict("grant", CONFLICT_ATTEMPTS)
    with pytest.raises(StoreBusy):
        grant_credits(system.store, user_id="u2", credits=3, grant_id="g2")
    assert system.store.get_balance("u2").balance == 7
    assert grant_credits(system.store, user_id="u2", credits=3, grant_id="g2") is True
    assert grant_credits(system.store, user_id="u2", credits=3, grant_id="g2") is False
    assert system.store.ledger_totals("u2") == {"grant": 10, "charge": 0, "refund": 0, "purchase": 0, "clawback": 0}


# --- the webhook (complete / fail): 503, fal delivers again -------------------------------------


def test_a_webhook_absorbs_conflicts_on_the_completion(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.conflict("complete", ABSORBED)
    assert ok_delivery(system, job.id, "req-1") == {"ok": True, "status": "completed"}
    assert system.events.types_for(job.id) == ["Job Completed"]


def test_a_webhook_whose_completion_keeps_conflicting_is_503_keeps_the_video_and_the_redelivery_completes(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.conflict("complete", CONFLICT_ATTEMPTS)
    with pytest.raises(StoreBusy):  # a ServiceUnavailable: 503, fal delivers again
        ok_delivery(system, job.id, "req-1")
    assert system.job(job.id).status == JobStatus.SUBMITTED and len(system.videos.keys()) == 1
    assert ok_delivery(system, job.id, "req-1") == {"ok": True, "status": "completed"}
    assert system.media.opened == [video_url("req-1")]  # the stored copy was reused, not fetched again
    assert system.events.types_for(job.id) == ["Job Completed"]


def test_a_failure_whose_refund_keeps_conflicting_refunds_nothing_until_it_goes_through(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    body = {"request_id": "req-1", "status": "ERROR", "error": "Invalid status code: 422", "payload": None}
    raw = json.dumps(body).encode()
    system.store.conflict("finish_with_refund", CONFLICT_ATTEMPTS)
    with pytest.raises(StoreBusy):
        system.webhooks.handle({}, webhook_query(job.id), raw)
    assert system.store.refunds(job.id) == 0 and system.job(job.id).status == JobStatus.SUBMITTED
    system.webhooks.handle({}, webhook_query(job.id), raw)
    assert system.job(job.id).status == JobStatus.FAILED and system.store.refunds(job.id) == 1


def test_when_only_the_outbox_flag_keeps_conflicting_the_change_stands_and_the_reconciler_republishes(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.conflict("clear_event_pending", CONFLICT_ATTEMPTS)
    assert ok_delivery(system, job.id, "req-1") == {"ok": True, "status": "completed"}  # no 503 after a commit
    assert system.job(job.id).event_pending and system.events.types_for(job.id) == ["Job Completed"]
    assert system.reconciler.run(now=_later())["event_published"] == 1
    assert not system.job(job.id).event_pending
    assert system.events.types_for(job.id) == ["Job Completed", "Job Completed"]  # at least once


# --- the poll loop (Check) ---------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["update_progress", "complete"])
def test_a_check_round_that_keeps_conflicting_is_not_this_round_and_the_next_one_settles(
    system: System, operation: str
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    if operation == "complete":
        system.fal.script_status("req-1", completed())
    system.store.conflict(operation, CONFLICT_ATTEMPTS)
    timing = {"poll_s": [1], "max_checks": 5}
    assert system.check.run(job.id, 0, timing)["done"] is False
    assert system.job(job.id).status == JobStatus.SUBMITTED
    system.fal.script_status("req-1", completed())
    assert system.check.run(job.id, 1, timing)["done"] is True
    assert system.job(job.id).status == JobStatus.COMPLETED


# --- SubmitToFal: StoreBusy is in the state machine's Retry --------------------------------------


def test_submit_to_fal_raises_store_busy_which_the_state_machine_retries(system: System) -> None:
    retry = json.loads(ASL.read_text())["States"]["SubmitToFal"]["Retry"]
    assert any("StoreBusy" in r["ErrorEquals"] for r in retry)  # not caught into FailJob + refund

    job = system.given_job(JobStatus.QUEUED)
    system.store.conflict("record_submit_attempt", CONFLICT_ATTEMPTS)
    with pytest.raises(StoreBusy):
        system.submit.run(job.id)
    assert system.fal.calls == [] and system.job(job.id).submit_attempts == 0  # nothing reached fal

    system.store.conflict("mark_submitted", CONFLICT_ATTEMPTS)
    with pytest.raises(StoreBusy):  # fal accepted, the request id could not be stored
        system.submit.run(job.id)
    assert system.submit.run(job.id) == {"done": False}  # the retry: a second attempt, counted
    stored = system.job(job.id)
    assert stored.status == JobStatus.SUBMITTED and stored.submit_attempts == 2
    assert system.fal.count("submit") == 2 and system.store.refunds(job.id) == 0


# --- cancel: 503, nothing refunded; the retried cancel answers 200 -----------------------------


@pytest.mark.parametrize(
    ("status", "operation"),
    [
        (JobStatus.QUEUED, "finish_with_refund"),
        (JobStatus.SUBMITTED, "request_cancel"),
        (JobStatus.SUBMITTED, "finish_with_refund"),
    ],
)
def test_a_cancel_that_keeps_conflicting_is_503_and_refunds_once_when_retried(
    system: System, status: JobStatus, operation: str
) -> None:
    job = system.given_job(status, request_id="req-1" if status == JobStatus.SUBMITTED else None)
    system.store.conflict(operation, CONFLICT_ATTEMPTS)
    with pytest.raises(ServiceUnavailable):
        system.cancel.run(system.job(job.id))
    assert system.store.refunds(job.id) == 0 and not system.job(job.id).is_terminal
    if operation == "finish_with_refund" and status == JobStatus.SUBMITTED:
        assert system.job(job.id).cancel_requested == CancelIntent.USER  # kept: the next look carries it out
    done = system.cancel.run(system.job(job.id))
    assert done.status == JobStatus.CANCELED and system.store.refunds(job.id) == 1


# --- the reconciler: a conflict defers one job, never stops the pass ----------------------------


def test_the_reconciler_defers_a_job_whose_repair_keeps_conflicting_and_goes_on(system: System) -> None:
    stuck = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    other = system.given_job(JobStatus.SUBMITTED, request_id="req-2")
    system.fal.script_status("req-1", completed())
    system.fal.script_status("req-2", completed())
    system.store.conflict("complete", CONFLICT_ATTEMPTS)
    system.store.conflict("touch", CONFLICT_ATTEMPTS)  # the deferral's own heartbeat is lost too: no raise
    outcomes = system.reconciler.run(now=_later())
    assert system.store.calls.count("touch") == 1
    assert outcomes["found"] == 2 and outcomes["retry_later"] == 1 and outcomes["finished"] == 1
    assert sorted(system.job(j.id).status for j in (stuck, other)) == [JobStatus.COMPLETED, JobStatus.SUBMITTED]
    system.reconciler.run(now=_later())
    assert {system.job(j.id).status for j in (stuck, other)} == {JobStatus.COMPLETED}


def test_the_deadline_task_raises_store_busy_for_its_retry_and_refunds_once_later(system: System) -> None:
    job = system.given_job(JobStatus.QUEUED, deadline_in_s=-1)
    system.store.conflict("finish_with_refund", CONFLICT_ATTEMPTS)
    with pytest.raises(StoreBusy):  # Expire/FailJob retry every error; then the reconciler
        system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert system.store.refunds(job.id) == 0
    assert system.reconciler.run(now=_later())["expired"] == 1
    assert system.job(job.id).status == JobStatus.FAILED and system.store.refunds(job.id) == 1


def _later() -> float:
    import time

    return time.time() + LATER
