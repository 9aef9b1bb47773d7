"""CancelJob (POST /v1/videos/{id}/cancel): refund exactly once, only before generation starts."""

from __future__ import annotations

import pytest

from tests.fakes import completed, in_progress, in_queue
from tests.fakes.system import CANCELLED, System
from videogen.domain.errors import (
    FalRejectedError,
    FalTransientError,
    MediaTransferError,
    NotCancelable,
    ServiceUnavailable,
    StoreBusy,
    TransitionRejected,
)
from videogen.domain.models import CancelIntent, Job, JobStatus


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


def test_given_fal_finished_with_a_video_when_canceled_then_not_cancelable_and_the_video_completes_the_job(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    with pytest.raises(NotCancelable, match="finished"):
        system.cancel.run(job)
    assert system.fal.count("cancel") == 0 and system.job(job.id).status == JobStatus.COMPLETED
    assert system.store.refunds(job.id) == 0


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


# --- fal's "cancelled" answer arrives first (issue 8): the job still ends as we asked -------------


def _queued_at_fal(system: System) -> Job:
    """A job fal holds in its queue; once canceled there, fal reports it COMPLETED + cancelled."""
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_queue(2), completed(CANCELLED))
    return job


def _assert_canceled_once(system: System, job: Job, *answers: Job) -> None:
    stored = system.job(job.id)
    assert stored.status == JobStatus.CANCELED and stored.error and stored.error.code == "canceled"
    assert all(a == stored for a in answers)  # every cancel call answers the canceled job (200)
    assert system.store.refunds(job.id) == 1
    assert system.events.types_for(job.id) == ["Job Canceled"]


def test_given_fal_delivers_the_cancelled_webhook_before_the_cancel_call_returns_then_canceled_once_and_200(
    system: System,
) -> None:
    job = _queued_at_fal(system)
    webhook: list[dict[str, object]] = []
    system.fal.during_cancel("req-1", lambda: webhook.append(system.deliver_cancelled(system.job(job.id))))
    done = system.cancel.run(job)
    assert webhook == [{"ok": True, "status": "canceled"}]  # the webhook ended it, as canceled
    _assert_canceled_once(system, job, done)


def test_the_intent_is_recorded_before_fal_is_asked_to_cancel(system: System) -> None:
    job = _queued_at_fal(system)
    seen: list[CancelIntent | None] = []
    system.fal.during_cancel("req-1", lambda: seen.append(system.job(job.id).cancel_requested))
    system.cancel.run(job)
    assert seen == [CancelIntent.USER]


@pytest.mark.parametrize("moment", ["request_cancel", "get_job", "finish_with_refund"])
def test_given_a_second_cancel_overlaps_the_first_then_both_answer_canceled_with_one_refund(
    system: System, moment: str
) -> None:
    """A double tap: the second cancel runs inside the first one, at each of its steps."""
    job = _queued_at_fal(system)
    second: list[Job] = []
    system.store.before(moment, lambda: second.append(system.cancel.run(job)))  # `job`: a stale read
    first = system.cancel.run(job)
    assert len(second) == 1
    _assert_canceled_once(system, job, first, second[0])


def test_given_the_second_cancel_lands_while_fal_is_canceling_then_both_answer_canceled(system: System) -> None:
    job = _queued_at_fal(system)
    second: list[Job] = []
    system.fal.during_cancel("req-1", lambda: second.append(system.cancel.run(job)))
    first = system.cancel.run(job)
    _assert_canceled_once(system, job, first, second[0])


def test_given_the_first_cancel_died_after_fal_canceled_when_the_app_retries_then_canceled_once(
    system: System,
) -> None:
    """An app retrying a slow cancel 20 ms later: the first call's write never happened."""
    job = _queued_at_fal(system)
    system.store.fail("finish_with_refund", StoreBusy("throttled"))
    with pytest.raises(StoreBusy):  # a 503: fal canceled, our write did not go through
        system.cancel.run(job)
    assert system.job(job.id).status == JobStatus.SUBMITTED
    retry = system.cancel.run(job)
    _assert_canceled_once(system, job, retry)
    assert system.fal.count("cancel") == 1  # fal already said cancelled: not asked again


def test_given_the_cancel_died_before_calling_fal_then_the_poll_loop_carries_it_out(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.request_cancel(job.id, CancelIntent.USER)  # the call recorded its intent and died
    system.fal.script_status("req-1", in_queue(1))
    assert system.check.run(job.id, 1, {})["done"] is True
    assert system.fal.calls == [("status", "req-1"), ("cancel", "req-1")]
    _assert_canceled_once(system, job)


def test_given_fal_unreachable_after_the_intent_then_503_and_the_retry_cancels(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalTransientError("timeout"), in_queue(0))
    with pytest.raises(ServiceUnavailable):
        system.cancel.run(job)
    assert system.job(job.id).cancel_requested == CancelIntent.USER
    _assert_canceled_once(system, job, system.cancel.run(job))


def test_given_fal_started_generating_then_a_later_failure_is_the_providers_not_a_cancel(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_progress("frame 1"), completed("Invalid status code: 500"))
    with pytest.raises(NotCancelable, match="started"):
        system.cancel.run(job)
    assert system.check.run(job.id, 1, {})["done"] is True
    failed = system.job(job.id)
    assert failed.status == JobStatus.FAILED and failed.error and failed.error.code == "generation_failed"
    assert system.store.refunds(job.id) == 1


def test_given_fal_already_completed_with_a_cancelled_error_then_canceled(system: System) -> None:
    """fal removed it on an earlier cancel (its answer lost): 'already completed', and cancelled."""
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_queue(0), completed(CANCELLED))
    system.fal.script_cancel("req-1", "already_completed")
    _assert_canceled_once(system, job, system.cancel.run(job))


def test_given_fal_already_completed_with_a_video_then_not_cancelable_and_completed(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_queue(0), completed())
    system.fal.script_cancel("req-1", "already_completed")
    with pytest.raises(NotCancelable, match="finished"):
        system.cancel.run(job)
    assert system.job(job.id).status == JobStatus.COMPLETED and system.store.refunds(job.id) == 0


def test_given_fal_no_longer_knows_the_request_then_canceled(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_cancel("req-1", "not_found")
    _assert_canceled_once(system, job, system.cancel.run(job))


def test_given_the_video_cannot_be_stored_yet_then_not_cancelable_and_the_job_stays_for_a_retry(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    system.videos.fail_puts(MediaTransferError("S3 down"))
    with pytest.raises(NotCancelable, match="finished"):
        system.cancel.run(job)
    assert system.job(job.id).status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0


def test_given_the_deadline_is_canceling_the_job_then_a_user_cancel_is_not_cancelable(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.request_cancel(job.id, CancelIntent.DEADLINE)
    with pytest.raises(NotCancelable, match="deadline"):
        system.cancel.run(job)
    assert system.fal.calls == [] and system.job(job.id).cancel_requested == CancelIntent.DEADLINE
