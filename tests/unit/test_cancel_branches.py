"""CancelJob, branch by branch, with the HTTP answer each branch means (its error's status and code)
and its side effects on credits: a finished generation is never refunded, a provider that cannot
be reached is a 503 (retry), never a 409 (final).

Complements test_cancel_job.py (races and fal's early "cancelled" webhook).
"""

from __future__ import annotations

import pytest

from tests.fakes import completed, in_progress, in_queue
from tests.fakes.system import System
from videogen.domain.errors import (
    DomainError,
    FalRejectedError,
    FalTransientError,
    MediaTransferError,
    NotCancelable,
    ServiceUnavailable,
)
from videogen.domain.models import CancelIntent, Job, JobStatus
from videogen.ports import CancelOutcome


def answer(system: System, job: Job) -> tuple[int, str]:
    """What the cancel route answers: 200 with the job, or the raised error's status and code."""
    try:
        done = system.cancel.run(job)
    except DomainError as exc:
        return exc.status, exc.code
    return 200, done.status.value


def credits(system: System, job: Job) -> tuple[int, int]:
    return system.store.get_balance(job.user_id).balance, system.store.refunds(job.id)


@pytest.mark.parametrize(
    ("status", "request_id"),
    [
        (JobStatus.IN_PROGRESS, "req-1"),
        (JobStatus.COMPLETED, "req-1"),
        (JobStatus.FAILED, "req-1"),
        (JobStatus.FAILED, None),
    ],
)
def test_a_job_generating_or_ended_is_409_without_calling_fal_or_moving_credits(
    system: System, status: JobStatus, request_id: str | None
) -> None:
    job = system.given_job(status, request_id=request_id)
    before = credits(system, job)
    system.store.calls.clear()
    with pytest.raises(NotCancelable) as refused:  # refused with its status, before any store call
        system.cancel.run(job)
    assert refused.value.detail == f"The job is {status.value}" and system.store.calls == []
    assert answer(system, job) == (409, "not_cancelable")
    assert system.fal.calls == [] and credits(system, job) == before and system.job(job.id) == job


def test_a_canceled_job_answers_200_again_without_a_second_refund(system: System) -> None:
    job = system.given_job(JobStatus.CANCELED)
    assert answer(system, job) == (200, "canceled")
    assert system.store.refunds(job.id) == 1 and system.fal.calls == []


def test_a_queued_job_is_canceled_and_refunded_its_charge_once(system: System) -> None:
    job = system.given_job(credits=7)
    balance = system.store.get_balance(job.user_id).balance
    assert answer(system, job) == (200, "canceled")
    assert credits(system, job) == (balance + 7, 1)
    assert system.events.types_for(job.id) == ["Job Canceled"]


def test_a_job_waiting_in_fals_queue_is_canceled_there_and_refunded_once(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", credits=5)
    balance = system.store.get_balance(job.user_id).balance
    system.fal.script_status("req-1", in_queue(4))
    assert answer(system, job) == (200, "canceled")
    assert credits(system, job) == (balance + 5, 1)
    assert system.fal.calls == [("status", "req-1"), ("cancel", "req-1")]


@pytest.mark.parametrize("cancel", ["requested", "not_found"])
def test_every_cancel_answer_but_already_completed_ends_the_job_canceled(system: System, cancel: CancelOutcome) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_cancel("req-1", cancel)
    assert answer(system, job) == (200, "canceled") and system.store.refunds(job.id) == 1


# --- a finished generation is never refunded -----------------------------------------------------


def test_a_generation_fal_finished_is_409_completed_and_never_refunded(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    before = credits(system, job)
    system.fal.script_status("req-1", completed())
    assert answer(system, job) == (409, "not_cancelable")
    done = system.job(job.id)
    assert done.status == JobStatus.COMPLETED and done.video is not None and done.error is None
    assert credits(system, job) == before and system.fal.count("cancel") == 0
    assert system.events.types_for(job.id) == ["Job Completed"]


def test_a_generation_finished_while_canceling_is_409_completed_and_never_refunded(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    before = credits(system, job)
    system.fal.script_status("req-1", in_queue(0), completed())
    system.fal.script_cancel("req-1", "already_completed")
    assert answer(system, job) == (409, "not_cancelable")
    assert system.job(job.id).status == JobStatus.COMPLETED and credits(system, job) == before


def test_a_generation_that_started_while_canceling_is_409_and_keeps_running(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_queue(0), in_progress("frame 1"))
    system.fal.script_cancel("req-1", "already_completed")
    assert answer(system, job) == (409, "not_cancelable")
    assert system.job(job.id).status == JobStatus.IN_PROGRESS and system.store.refunds(job.id) == 0


def test_a_finished_video_that_cannot_be_stored_yet_is_409_and_kept_unrefunded(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    system.videos.fail_puts(MediaTransferError("S3 down"))
    assert answer(system, job) == (409, "not_cancelable")
    assert system.job(job.id).status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0


# --- fal unreachable: 503, the intent kept for the retry -----------------------------------------


@pytest.mark.parametrize("call", ["status", "cancel"])
@pytest.mark.parametrize(
    "error",
    [
        FalTransientError("timeout"),
        FalTransientError("503", status=503),
        FalTransientError("429", status=429, retry_after_s=2),
        FalRejectedError(401, None, "key"),
        FalRejectedError(403, None, "locked"),
    ],
    ids=["timeout", "503", "429", "401", "403"],
)
def test_fal_unreachable_is_503_never_409_and_the_intent_stays(system: System, call: str, error: Exception) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    (system.fal.script_status if call == "status" else system.fal.script_cancel)("req-1", error)
    with pytest.raises(ServiceUnavailable) as raised:
        system.cancel.run(job)
    assert not isinstance(raised.value, NotCancelable)
    assert (raised.value.status, raised.value.code) == (503, "service_unavailable")
    stored = system.job(job.id)
    assert stored.status == JobStatus.SUBMITTED and stored.cancel_requested == CancelIntent.USER
    assert system.store.refunds(job.id) == 0


def test_after_a_503_the_retried_cancel_is_200_with_one_refund(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_cancel("req-1", FalTransientError("timeout"), "requested")
    assert answer(system, job) == (503, "service_unavailable")
    assert answer(system, job) == (200, "canceled") and system.store.refunds(job.id) == 1


def test_the_deadlines_cancel_in_flight_makes_a_users_cancel_409(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.request_cancel(job.id, CancelIntent.DEADLINE)
    assert answer(system, system.job(job.id)) == (409, "not_cancelable")
    assert system.fal.calls == [] and system.store.refunds(job.id) == 0
