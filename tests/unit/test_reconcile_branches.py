"""Reconciler.repair, outcome by outcome, with every side effect checked: the job's status, the
refunds, fal calls, execution starts, events and the touch that sends it to the back of the queue.

Complements test_reconciler.py: one table over all outcomes; every fal refusal but 404/410 kept
for a later pass; and jobs of a model taken off sale still driven to their end, never failed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fakes import completed, in_progress, in_queue
from tests.fakes.jobs import MODEL
from tests.fakes.system import GRACE_S, WEBHOOK_TOKEN, System
from videogen.domain.errors import FalRejectedError, FalTransientError
from videogen.domain.models import Job, JobStatus, rfc3339
from videogen.domain.registry import Registry
from videogen.ports import FalResult
from videogen.services.fal_submit import SubmitToFal
from videogen.services.reconcile import Reconciler

LATER = 10_000


@dataclass
class Effects:
    """What one repair did, read back from the fakes."""

    outcome: str
    status: JobStatus
    refunds: int
    fal: list[tuple[str, str]]
    starts: list[str]
    events: list[str]
    touches: int
    error_code: str | None = None


def repair(system: System, job: Job) -> Effects:
    outcome = system.reconciler.repair(system.store.job(job.id))
    stored = system.job(job.id)
    return Effects(
        outcome,
        stored.status,
        system.store.refunds(job.id),
        list(system.fal.calls),
        list(system.workflow.starts),
        system.events.types_for(job.id),
        system.store.calls.count("touch"),
        stored.error.code if stored.error else None,
    )


def test_a_queued_job_whose_execution_runs_is_only_touched_never_failed(system: System) -> None:
    job = system.given_job()
    system.workflow.executions[job.id] = "RUNNING"
    balance = system.store.get_balance(job.user_id)
    assert repair(system, job) == Effects("running", JobStatus.QUEUED, 0, [], [], [], 1)
    assert system.store.get_balance(job.user_id) == balance  # no refund, the slot still held


def test_a_queued_job_without_execution_gets_one_started(system: System) -> None:
    job = system.given_job()
    assert repair(system, job) == Effects("execution_started", JobStatus.QUEUED, 0, [], [job.id], [], 1)


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"])
def test_a_queued_job_whose_execution_ended_fails_with_one_refund_and_its_event(system: System, state: str) -> None:
    job = system.given_job()
    system.workflow.executions[job.id] = state
    assert repair(system, job) == Effects(
        "failed_refunded", JobStatus.FAILED, 1, [], [], ["Job Failed"], 0, "submit_failed"
    )


def test_a_job_past_its_deadline_is_expired_whatever_its_execution(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", deadline_in_s=-1)
    system.workflow.executions[job.id] = "RUNNING"
    assert repair(system, job) == Effects(
        "expired",
        JobStatus.FAILED,
        1,
        [("status", "req-1"), ("cancel", "req-1")],
        [],
        ["Job Failed"],
        0,
        "expired",
    )


def test_a_job_fal_finished_is_completed_without_a_refund(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", completed())
    effects = repair(system, job)
    assert effects == Effects(
        "finished", JobStatus.COMPLETED, 0, [("status", "req-1"), ("result", "req-1")], [], ["Job Completed"], 0
    )


def test_a_job_fal_failed_is_failed_with_one_refund(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", completed("Invalid status code: 500"))
    system.fal.script_result("req-1", FalResult(error="500: internal_error"))
    assert repair(system, job) == Effects(
        "finished",
        JobStatus.FAILED,
        1,
        [("status", "req-1"), ("result", "req-1")],
        [],
        ["Job Failed"],
        0,
        "generation_failed",
    )


@pytest.mark.parametrize(
    ("state", "outcome", "answer", "status"),
    [
        ("RUNNING", "running", in_queue(2), JobStatus.SUBMITTED),
        ("RUNNING", "running", in_progress(), JobStatus.IN_PROGRESS),
        ("MISSING", "polled_orphan", in_queue(2), JobStatus.SUBMITTED),
        ("FAILED", "polled_orphan", in_progress(), JobStatus.IN_PROGRESS),
    ],
)
def test_a_job_fal_still_works_on_is_polled_and_touched(
    system: System, state: str, outcome: str, answer: Any, status: JobStatus
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    if state != "MISSING":
        system.workflow.executions[job.id] = state
    system.fal.script_status("req-1", answer)
    assert repair(system, job) == Effects(outcome, status, 0, [("status", "req-1")], [], [], 1)


@pytest.mark.parametrize("code", [404, 410])
def test_a_request_fal_no_longer_knows_fails_the_job_with_one_refund(system: System, code: int) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalRejectedError(code, None, "gone"))
    assert repair(system, job) == Effects(
        "failed_refunded", JobStatus.FAILED, 1, [("status", "req-1")], [], ["Job Failed"], 0, "expired"
    )


@pytest.mark.parametrize("code", [400, 401, 402, 403, 405, 409, 411, 413, 415, 418, 422, 451])
def test_any_other_status_refusal_is_a_retry_later_and_the_job_kept(system: System, code: int) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalRejectedError(code, None, "no"))
    with pytest.raises(FalTransientError, match=str(code)):  # repair says "later"; run() defers it
        system.reconciler.repair(job)
    assert system.reconciler.run(now=time.time() + LATER) == {"found": 1, "retry_later": 1}
    stored = system.job(job.id)
    assert stored.status == JobStatus.SUBMITTED and stored.error is None and system.store.refunds(job.id) == 0
    assert system.events.published == []


def test_a_terminal_job_owing_its_event_is_published_and_one_whose_event_went_out_is_left(system: System) -> None:
    owed = system.given_job(JobStatus.COMPLETED, event_pending=True)
    done = system.given_job(JobStatus.COMPLETED)
    assert repair(system, owed).outcome == "event_published" and system.events.types_for(owed.id) == ["Job Completed"]
    assert repair(system, done) == Effects("already_done", JobStatus.COMPLETED, 0, [], [], [], 0)


def test_an_unexpected_error_is_counted_the_job_touched_and_kept(system: System) -> None:
    job = system.given_job()
    system.workflow.fail_state(job.id, RuntimeError("boom"))
    assert system.reconciler.run(now=time.time() + LATER) == {"found": 1, "error": 1}
    assert system.job(job.id).status == JobStatus.QUEUED and system.store.refunds(job.id) == 0
    assert system.store.calls.count("touch") == 1


# --- a model taken off sale: its accepted jobs still run to their end ------------------------------


def _reconciler(system: System, registry: Registry, batch: int = 50, purchases: Any = None) -> Reconciler:
    return Reconciler(
        system.store,
        registry,
        system.workflow,
        system.poller,
        system.expire,
        system.finisher,
        grace_s=GRACE_S,
        batch=batch,
        time_scale=1.0,
        purchases=purchases,
    )


def _off_sale(system: System) -> tuple[Registry, Reconciler]:
    registry = Registry(disabled=frozenset({MODEL}))
    return registry, _reconciler(system, registry)


def test_given_its_model_left_sale_then_a_queued_jobs_execution_is_still_started(system: System) -> None:
    registry, reconciler = _off_sale(system)
    assert MODEL not in {m.id for m in registry}
    job = system.given_job()
    assert reconciler.run(now=time.time() + LATER) == {"found": 1, "execution_started": 1}
    assert system.workflow.inputs[job.id]["timing"]["deadline_at"] == job.deadline_at
    assert system.job(job.id).status == JobStatus.QUEUED and system.store.refunds(job.id) == 0


def test_given_its_model_left_sale_then_a_job_at_fal_keeps_its_quiet_allowance_and_completes(system: System) -> None:
    _, reconciler = _off_sale(system)
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    assert reconciler.quiet_allowance_s(job) == system.reconciler.quiet_allowance_s(job) == 360
    system.fal.script_status("req-1", completed())
    assert reconciler.run(now=time.time() + LATER) == {"found": 1, "finished": 1}
    assert system.job(job.id).status == JobStatus.COMPLETED and system.store.refunds(job.id) == 0


def test_given_its_model_left_sale_then_a_queued_job_is_still_handed_to_fal(system: System) -> None:
    registry, _ = _off_sale(system)
    submit = SubmitToFal(system.store, registry, system.fal, system.finisher, lambda job_id: None, system.videos)
    job = system.given_job()
    assert submit.run(job.id) == {"done": False}
    assert [endpoint for endpoint, _, _ in system.fal.submitted] == [system.registry.for_job(MODEL).fal_endpoint]
    assert system.job(job.id).status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0


def test_a_job_of_a_model_this_code_never_knew_is_an_error_not_a_failure(system: System) -> None:
    job = system.given_job(model="retired-model")
    assert system.reconciler.run(now=time.time() + LATER) == {"found": 1, "error": 1}
    assert system.job(job.id).status == JobStatus.QUEUED and system.store.refunds(job.id) == 0


# --- races: another actor moves the job between the reconciler's read and its write ----------------


def test_given_the_webhook_completes_the_job_before_the_reconcilers_provider_lost_write_then_completed_unrefunded(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalRejectedError(404, None, "gone"))
    ok = {"request_id": "req-1", "status": "OK", "payload": {"video": {"url": "https://v3.fal.media/files/r.mp4"}}}
    replies: list[dict[str, Any]] = []
    system.store.before("finish_with_refund", lambda: replies.append(_deliver(system, job, ok)))
    system.reconciler.repair(job)
    assert replies == [{"ok": True, "status": "completed"}]
    assert system.job(job.id).status == JobStatus.COMPLETED and system.store.refunds(job.id) == 0
    assert system.events.types_for(job.id) == ["Job Completed"]


def test_given_the_user_cancels_before_the_reconcilers_execution_failed_write_then_one_refund(system: System) -> None:
    job = system.given_job()
    system.workflow.executions[job.id] = "FAILED"
    system.store.before("finish_with_refund", lambda: system.cancel.run(system.job(job.id)))
    system.reconciler.repair(job)
    stored = system.job(job.id)
    assert stored.status == JobStatus.CANCELED and stored.error and stored.error.code == "canceled"
    assert system.store.refunds(job.id) == 1 and system.events.types_for(job.id) == ["Job Canceled"]


def test_given_the_check_task_records_progress_before_the_reconcilers_touch_then_nothing_is_lost(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.workflow.executions[job.id] = "RUNNING"
    system.fal.script_status("req-1", in_progress("frame 9"))
    system.store.before("touch", lambda: system.check.run(job.id, 1, {}))
    assert system.reconciler.repair(job) == "running"
    stored = system.job(job.id)
    assert stored.status == JobStatus.IN_PROGRESS and stored.progress.message == "frame 9"
    assert system.store.refunds(job.id) == 0


def _deliver(system: System, job: Job, body: dict[str, Any]) -> dict[str, Any]:
    return system.webhooks.handle({}, {"token": WEBHOOK_TOKEN, "job_id": job.id}, json.dumps(body).encode())


# --- the Play passes (services/purchases.py: PurchaseService.reconcile) -----------------------------


def _with_purchases(system: System, passes: Any) -> Reconciler:
    return _reconciler(system, Registry(), batch=7, purchases=passes)


def test_the_play_passes_run_after_the_jobs_with_the_cutoff_and_batch_and_add_their_outcomes(system: System) -> None:
    seen: list[tuple[str, int]] = []

    def passes(cutoff: str, batch: int) -> dict[str, int]:
        seen.append((cutoff, batch))
        return {"consumed": 2}

    assert _with_purchases(system, passes).run(now=1_000_000.0) == {"found": 0, "consumed": 2}
    assert seen == [(rfc3339(datetime.fromtimestamp(1_000_000.0 - GRACE_S, UTC)), 7)]


def test_a_failing_play_pass_is_counted_and_leaves_the_jobs_repairs_standing(system: System) -> None:
    def passes(cutoff: str, batch: int) -> dict[str, int]:
        raise RuntimeError("google down")

    job = system.given_job()
    outcomes = _with_purchases(system, passes).run(now=time.time() + LATER)
    assert outcomes == {"found": 1, "execution_started": 1, "purchases_error": 1}
    assert job.id in system.workflow.inputs
