"""The reconciler's repairs: each kind of stuck job, driven to its right end, on fakes.

Jobs seeded now count as stuck only after their quiet allowance, so a pass runs "later" by
passing ``now``; the deadline is the job's own (in the past or not).
"""

from __future__ import annotations

import decimal
import time

import pytest

from tests.fakes import completed, in_progress, in_queue, video_url
from tests.fakes.system import CANCELLED, GRACE_S, System
from videogen.domain.errors import FalRejectedError, FalTransientError, MediaTransferError, StoreBusy
from videogen.domain.models import CancelIntent, Job, JobStatus

LATER = 10_000  # seconds: past every model's quiet allowance at time_scale 1


def run_later(system: System, seconds: float = LATER) -> dict[str, int]:
    return system.reconciler.run(now=time.time() + seconds)


def test_given_a_terminal_job_owing_its_event_then_the_event_is_published_and_it_leaves_the_index(
    system: System,
) -> None:
    job = system.given_job(JobStatus.FAILED, event_pending=True, error={"code": "x", "message": "y"})
    assert run_later(system) == {"found": 1, "event_published": 1}
    assert system.events.types_for(job.id) == ["Job Failed"]
    assert not system.job(job.id).event_pending
    assert run_later(system) == {"found": 0}
    assert system.fal.calls == [] and system.store.refunds(job.id) == 1


def test_given_a_completed_job_owing_its_event_then_job_completed_carries_the_video(system: System) -> None:
    job = system.given_job(JobStatus.COMPLETED, event_pending=True)
    assert run_later(system)["event_published"] == 1
    [(kind, detail)] = system.events.published
    assert kind == "Job Completed" and detail["video"]["sha256"] == job.video.sha256  # type: ignore[union-attr]


def test_given_the_bus_is_still_down_then_the_event_stays_owed(system: System) -> None:
    job = system.given_job(JobStatus.CANCELED, event_pending=True)
    system.events.down = True
    assert run_later(system)["event_published"] == 1  # attempted; the outbox flag stays
    assert system.job(job.id).event_pending
    system.events.down = False
    run_later(system)
    assert system.events.types_for(job.id) == ["Job Canceled"] and not system.job(job.id).event_pending


def test_given_a_job_past_its_deadline_then_canceled_at_fal_expired_and_refunded(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", deadline_in_s=-1)
    assert run_later(system) == {"found": 1, "expired": 1}
    failed = system.job(job.id)
    assert failed.status == JobStatus.FAILED and failed.error and failed.error.code == "expired"
    assert system.fal.calls == [("status", "req-1"), ("cancel", "req-1")]
    assert system.store.refunds(job.id) == 1


def test_given_progress_cannot_be_written_a_job_past_its_deadline_still_expires_once(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", deadline_in_s=-1)
    system.fal.script_status("req-1", in_queue(3))
    system.store.fail("update_progress", decimal.Overflow("[<class 'decimal.Overflow'>]"), times=5)
    assert run_later(system) == {"found": 1, "expired": 1}
    assert system.job(job.id).status == JobStatus.FAILED and system.store.refunds(job.id) == 1
    assert run_later(system) == {"found": 0}


def test_given_a_queued_job_without_execution_then_its_execution_is_started_and_it_goes_to_the_back(
    system: System,
) -> None:
    job = system.given_job()
    assert run_later(system) == {"found": 1, "execution_started": 1}
    assert system.workflow.state(job.id) == "RUNNING"
    timing = system.workflow.inputs[job.id]["timing"]
    assert system.workflow.inputs[job.id]["job_id"] == job.id and timing["deadline_at"] == job.deadline_at
    assert system.store.calls.count("touch") == 1
    assert system.job(job.id).status == JobStatus.QUEUED and system.fal.calls == []


def test_given_a_queued_job_whose_execution_runs_then_only_touched(system: System) -> None:
    job = system.given_job()
    system.workflow.executions[job.id] = "RUNNING"
    assert run_later(system) == {"found": 1, "running": 1}
    assert system.workflow.starts == [] and system.store.calls.count("touch") == 1


@pytest.mark.parametrize("state", ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"])
def test_given_a_queued_job_whose_execution_ended_then_failed_and_refunded(system: System, state) -> None:
    job = system.given_job()
    system.workflow.executions[job.id] = state
    assert run_later(system) == {"found": 1, "failed_refunded": 1}
    failed = system.job(job.id)
    assert failed.error and failed.error.code == "submit_failed" and system.store.refunds(job.id) == 1


def test_given_fal_finished_a_job_nobody_watched_then_it_is_completed(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", completed())
    assert run_later(system) == {"found": 1, "finished": 1}
    assert system.job(job.id).status == JobStatus.COMPLETED and system.media.opened == [video_url("req-1")]


@pytest.mark.parametrize(("state", "outcome"), [("RUNNING", "running"), ("ABORTED", "polled_orphan")])
def test_given_fal_still_working_then_progress_written_and_the_job_touched(
    system: System, state: str, outcome: str
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.workflow.executions[job.id] = state
    system.fal.script_status("req-1", in_progress("half way"))
    assert run_later(system) == {"found": 1, outcome: 1}
    stored = system.job(job.id)
    assert stored.status == JobStatus.IN_PROGRESS and stored.progress.message == "half way"
    assert system.store.calls.count("touch") == 1


@pytest.mark.parametrize("code", [404, 410])
def test_given_fal_lost_the_request_then_failed_provider_lost_and_refunded(system: System, code: int) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalRejectedError(code, None, "not found"))
    assert run_later(system) == {"found": 1, "failed_refunded": 1}
    failed = system.job(job.id)
    assert failed.error and failed.error.code == "expired" and system.store.refunds(job.id) == 1


@pytest.mark.parametrize(
    "error",
    [FalRejectedError(401, None, "key"), FalRejectedError(403, None, "locked"), FalTransientError("timeout")],
    ids=["401", "403", "transient"],
)
def test_given_fal_refuses_or_is_down_then_retry_later_and_the_job_is_kept(system: System, error: Exception) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", error)
    assert run_later(system) == {"found": 1, "retry_later": 1}
    assert system.job(job.id).status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0
    assert system.store.calls.count("touch") == 1


@pytest.mark.parametrize("broken", ["media", "store"])
def test_given_the_copy_or_the_store_breaks_then_retry_later(system: System, broken: str) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    if broken == "media":
        system.media.fail(video_url("req-1"), MediaTransferError())
    else:
        system.store.fail("complete", StoreBusy())
    assert run_later(system) == {"found": 1, "retry_later": 1}
    assert system.job(job.id).status == JobStatus.SUBMITTED


def test_given_a_repair_fails_unexpectedly_then_the_pass_goes_on_with_the_others(system: System) -> None:
    broken, *others = [system.given_job() for _ in range(3)]
    system.workflow.fail_state(broken.id, RuntimeError("unexpected"))
    outcome = run_later(system)
    assert outcome == {"found": 3, "error": 1, "execution_started": 2}
    assert {o.id for o in others} == set(system.workflow.executions)
    assert system.store.calls.count("touch") == 3  # the broken one went to the back too


def test_given_more_stuck_jobs_than_a_batch_then_each_pass_takes_a_batch() -> None:
    small = System(batch=2)
    ids = {small.given_job().id for _ in range(5)}
    later = time.time() + LATER
    small.store.clock = lambda: later  # what a pass touches is fresh for the next passes
    started = [small.reconciler.run(now=later + i).get("execution_started", 0) for i in range(4)]
    assert started == [2, 2, 1, 0]
    assert set(small.workflow.executions) == ids
    small.assert_invariants()


# --- when a job counts as stuck -----------------------------------------------------------------


def _fresh(system: System, status: JobStatus, **fields: object) -> Job:
    return system.given_job(status, **fields)


def test_given_a_job_written_within_the_grace_then_it_is_not_looked_at(system: System) -> None:
    _fresh(system, JobStatus.QUEUED)
    assert system.reconciler.run(now=time.time() + GRACE_S - 5) == {"found": 0}
    assert system.workflow.starts == []


def test_given_a_queued_job_then_the_grace_is_its_whole_allowance(system: System) -> None:
    _fresh(system, JobStatus.QUEUED)
    assert system.reconciler.run(now=time.time() + GRACE_S + 1)["found"] == 1


def test_given_a_job_at_fal_then_it_may_stay_quiet_twice_its_expected_time(system: System) -> None:
    job = _fresh(system, JobStatus.SUBMITTED, request_id="req-1")
    allowance = 2 * system.registry.for_job(job.model).expected_s  # 360 s > the grace
    assert system.reconciler.quiet_allowance_s(job) == allowance
    assert system.reconciler.run(now=time.time() + allowance - 5) == {"found": 0}
    assert system.fal.calls == []
    system.fal.script_status("req-1", in_queue(1))
    assert system.reconciler.run(now=time.time() + allowance + 1)["found"] == 1


def test_given_a_terminal_job_owing_its_event_then_the_grace_applies(system: System) -> None:
    _fresh(system, JobStatus.CANCELED, event_pending=True)
    assert system.reconciler.run(now=time.time() + GRACE_S + 1)["event_published"] == 1


def test_given_a_terminal_job_whose_event_went_out_then_it_is_never_found(system: System) -> None:
    _fresh(system, JobStatus.FAILED)
    assert run_later(system) == {"found": 0}


@pytest.mark.parametrize(
    ("fal_says", "cancels_at_fal"),
    [(in_queue(3), 1), (completed(CANCELLED), 0)],
    ids=["died-before-calling-fal", "died-after-fal-canceled"],
)
def test_given_a_users_cancel_died_midway_then_the_job_ends_canceled_with_one_refund(
    system: System, fal_says: object, cancels_at_fal: int
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.request_cancel(job.id, CancelIntent.USER)  # the cancel call recorded its intent, then died
    system.workflow.executions[job.id] = "ABORTED"
    system.fal.script_status("req-1", fal_says)
    assert run_later(system) == {"found": 1, "finished": 1}
    stored = system.job(job.id)
    assert stored.status == JobStatus.CANCELED and stored.error and stored.error.code == "canceled"
    assert system.fal.count("cancel") == cancels_at_fal and system.store.refunds(job.id) == 1
