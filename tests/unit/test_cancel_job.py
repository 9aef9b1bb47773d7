"""CancelJob (POST /v1/videos/{id}/cancel): refund exactly once, only before generation starts."""

from __future__ import annotations

import pytest

from tests.fakes import completed, in_progress, in_queue
from tests.fakes.system import System
from videogen.domain.errors import (
    FalRejectedError,
    FalTransientError,
    NotCancelable,
    ServiceUnavailable,
    TransitionRejected,
)
from videogen.domain.models import JobStatus


def test_given_a_canceled_job_when_canceled_again_then_the_same_answer_and_no_second_refund(system: System) -> None:
    job = system.given_job()
    first = system.cancel.run(job)
    again = system.cancel.run(system.job(job.id))
    assert first.status == again.status == JobStatus.CANCELED and again == system.job(job.id)
    assert system.store.refunds(job.id) == 1


def test_given_a_stale_read_of_a_canceled_job_when_canceled_then_no_second_refund(system: System) -> None:
    job = system.given_job()
    system.cancel.run(job)
    assert system.cancel.run(job).status == JobStatus.CANCELED  # `job` still says queued
    assert system.store.refunds(job.id) == 1


@pytest.mark.parametrize("status", [JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.FAILED])
def test_given_a_job_generating_or_ended_when_canceled_then_not_cancelable_without_calling_fal(
    system: System, status: JobStatus
) -> None:
    job = system.given_job(status, request_id="req-1")
    with pytest.raises(NotCancelable):
        system.cancel.run(job)
    assert system.fal.calls == [] and system.job(job.id).status == status


def test_given_a_never_submitted_job_when_canceled_then_canceled_and_refunded_without_calling_fal(
    system: System,
) -> None:
    job = system.given_job()
    done = system.cancel.run(job)
    assert done.status == JobStatus.CANCELED and done.error and done.error.code == "canceled"
    assert system.fal.calls == []
    assert system.store.refunds(job.id) == 1 and system.store.get_balance(job.user_id).active_jobs == 0
    assert system.events.types_for(job.id) == ["Job Canceled"]
    assert system.submit.run(job.id) == {"done": True} and system.fal.calls == []  # SubmitToFal arriving late


def test_given_the_job_waits_in_fal_queue_when_canceled_then_canceled_at_fal_and_refunded_once(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_queue(7))
    done = system.cancel.run(job)
    assert done.status == JobStatus.CANCELED
    assert system.fal.calls == [("status", "req-1"), ("cancel", "req-1")]
    assert system.store.refunds(job.id) == 1


def test_given_fal_started_generating_when_canceled_then_not_cancelable_and_the_progress_is_recorded(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_progress("frame 3"))
    with pytest.raises(NotCancelable):
        system.cancel.run(job)
    stored = system.job(job.id)
    assert stored.status == JobStatus.IN_PROGRESS and stored.progress.message == "frame 3"
    assert system.fal.count("cancel") == 0 and system.store.refunds(job.id) == 0


def test_given_fal_finished_when_canceled_then_not_cancelable(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    with pytest.raises(NotCancelable):
        system.cancel.run(job)
    assert system.fal.count("cancel") == 0 and system.job(job.id).status == JobStatus.SUBMITTED


def test_given_fal_says_already_completed_when_canceled_then_not_cancelable(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_cancel("req-1", "already_completed")
    with pytest.raises(NotCancelable):
        system.cancel.run(job)
    assert system.job(job.id).status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0


@pytest.mark.parametrize("call", ["status", "cancel"])
@pytest.mark.parametrize(
    "error", [FalTransientError("timeout"), FalRejectedError(401, None, "key")], ids=["transient", "rejected"]
)
def test_given_fal_unreachable_when_canceled_then_service_unavailable_and_nothing_changes(
    system: System, call: str, error: Exception
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    (system.fal.script_status if call == "status" else system.fal.script_cancel)("req-1", error)
    with pytest.raises(ServiceUnavailable):
        system.cancel.run(job)
    assert system.job(job.id).status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0


def test_given_submit_stores_a_request_between_the_read_and_the_write_then_cancel_decides_again_and_asks_fal(
    system: System,
) -> None:
    job = system.given_job()  # read as queued, with no fal request
    system.store.before("finish_with_refund", lambda: system.submit.run(job.id))
    done = system.cancel.run(job)
    assert done.status == JobStatus.CANCELED
    assert system.fal.calls[-2:] == [("status", "req-1"), ("cancel", "req-1")]  # fal was told
    assert system.store.refunds(job.id) == 1


def test_given_every_transition_keeps_losing_when_canceled_then_not_cancelable_after_three_tries(
    system: System,
) -> None:
    job = system.given_job()
    system.store.fail("finish_with_refund", TransitionRejected(job.id), times=3)  # the job moves each time
    with pytest.raises(NotCancelable):
        system.cancel.run(job)
    assert system.store.calls.count("finish_with_refund") == 3 and system.store.refunds(job.id) == 0
