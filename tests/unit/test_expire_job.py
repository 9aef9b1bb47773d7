"""ExpireJob (the state machine's Expire/FailJob task and the reconciler's deadline repair)."""

from __future__ import annotations

import decimal

import pytest

from tests.fakes import completed, in_progress, in_queue, video_url
from tests.fakes.system import CANCELLED, System
from videogen.domain.errors import FalRejectedError, FalTransientError, MediaTransferError, StoreBusy
from videogen.domain.models import CancelIntent, JobStatus


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED])
def test_given_a_terminal_job_when_expired_then_unchanged_and_fal_untouched(system: System, status: JobStatus) -> None:
    job = system.given_job(status)
    assert system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True) == system.job(job.id)
    assert system.fal.calls == [] and system.store.refunds(job.id) == (1 if status != JobStatus.COMPLETED else 0)


def test_given_no_job_when_expired_then_none(system: System) -> None:
    assert system.expire.run("vid_missing", "deadline_exceeded", cancel_at_fal=True) is None


def test_given_fal_finished_meanwhile_when_expired_then_the_last_look_completes_it(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", completed())
    done = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert done is not None and done.status == JobStatus.COMPLETED
    assert system.fal.count("cancel") == 0 and system.store.refunds(job.id) == 0


def test_given_fal_still_working_when_expired_then_canceled_at_fal_failed_and_refunded_once(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", in_progress())
    failed = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True, cause="States.Timeout")
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.error and failed.error.code == "expired"
    assert failed.error.message == "the provider did not finish in time"
    assert system.fal.calls == [("status", "req-1"), ("cancel", "req-1")]
    assert system.store.refunds(job.id) == 1
    assert system.events.types_for(job.id) == ["Job Failed"]
    again = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)  # a retried task
    assert again == system.job(job.id) and system.store.refunds(job.id) == 1


def test_given_the_submit_failed_when_failed_without_cancel_then_refunded_without_calling_fal(system: System) -> None:
    job = system.given_job()
    failed = system.expire.run(job.id, "submit_failed", cancel_at_fal=False)
    assert failed is not None and failed.error and failed.error.code == "submit_failed"
    assert failed.error.message == "the provider could not accept the request"
    assert system.fal.calls == [] and system.store.refunds(job.id) == 1


def test_given_a_job_never_submitted_when_expired_then_failed_without_calling_fal(system: System) -> None:
    job = system.given_job()
    failed = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert failed is not None and failed.status == JobStatus.FAILED and system.fal.calls == []


@pytest.mark.parametrize(
    "error", [FalTransientError("timeout"), FalRejectedError(404, None, "gone")], ids=["transient", "rejected"]
)
def test_given_fal_unreachable_on_the_last_look_when_expired_then_failed_anyway(system: System, error) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", error)
    failed = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert failed is not None and failed.status == JobStatus.FAILED and system.store.refunds(job.id) == 1


def test_given_the_cancel_at_fal_fails_when_expired_then_failed_anyway(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_cancel("req-1", FalTransientError("timeout"))
    failed = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert failed is not None and failed.status == JobStatus.FAILED


@pytest.mark.parametrize("broken", ["media", "store"])
def test_given_fal_finished_but_storing_breaks_on_the_last_look_then_it_raises_and_never_fails(
    system: System, broken: str
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    if broken == "media":
        system.media.fail(video_url("req-1"), MediaTransferError("cdn down"))
    else:
        system.store.fail("complete", StoreBusy())
    with pytest.raises(MediaTransferError if broken == "media" else StoreBusy):
        system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert system.job(job.id).status == JobStatus.SUBMITTED  # fal has the video: retry, never refund
    assert system.fal.count("cancel") == 0 and system.store.refunds(job.id) == 0
    done = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)  # the retry
    assert done is not None and done.status == JobStatus.COMPLETED


# --- the deadline of a job still in fal's queue (issue 8) ----------------------------------------


def _assert_deadline_exceeded_once(system: System, job_id: str) -> None:
    failed = system.job(job_id)
    assert failed.status == JobStatus.FAILED and failed.error and failed.error.code == "expired"
    assert failed.error.message == "the provider did not finish in time"
    assert system.store.refunds(job_id) == 1 and system.events.types_for(job_id) == ["Job Failed"]


def test_given_fal_delivers_the_cancelled_webhook_before_the_cancel_returns_then_deadline_exceeded(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_queue(4), completed(CANCELLED))
    webhook: list[dict[str, object]] = []
    system.fal.during_cancel("req-1", lambda: webhook.append(system.deliver_cancelled(system.job(job.id))))
    done = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert webhook == [{"ok": True, "status": "failed"}]  # the webhook ended it, as the deadline asked
    assert done == system.job(job.id)
    _assert_deadline_exceeded_once(system, job.id)


def test_given_the_poll_loop_sees_the_deadlines_cancel_first_then_deadline_exceeded(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    stale = system.job(job.id)  # Check read the job before the deadline's intent was written
    system.store.request_cancel(job.id, CancelIntent.DEADLINE)
    system.fal.script_status("req-1", completed(CANCELLED))
    assert system.poller.poll_and_settle(stale) is True
    _assert_deadline_exceeded_once(system, job.id)


def test_given_a_users_cancel_in_flight_at_the_deadline_then_the_deadline_wins(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")  # fal started it after all
    system.store.set_job(job.id, cancel_requested=CancelIntent.USER)
    system.fal.script_status("req-1", in_progress(), completed(CANCELLED))
    system.fal.during_cancel("req-1", lambda: system.deliver_cancelled(system.job(job.id)))
    system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    _assert_deadline_exceeded_once(system, job.id)


def test_given_a_users_cancel_that_died_at_the_deadline_then_the_last_look_carries_it_out(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.request_cancel(job.id, CancelIntent.USER)
    done = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert done is not None and done.status == JobStatus.CANCELED and system.store.refunds(job.id) == 1


def test_given_fal_finished_just_before_the_deadlines_cancel_then_the_video_completes_the_job(
    system: System,
) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", in_progress(), completed())
    system.fal.script_cancel("req-1", "already_completed")
    done = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert done is not None and done.status == JobStatus.COMPLETED and system.store.refunds(job.id) == 0


def test_given_the_job_ended_before_the_intent_was_written_then_unchanged(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.before("request_cancel", lambda: system.cancel.run(system.job(job.id)))  # the user won
    done = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert done is not None and done.status == JobStatus.CANCELED and system.store.refunds(job.id) == 1


def test_given_progress_cannot_be_written_when_expired_then_the_job_still_fails_and_is_refunded(system: System) -> None:
    # fal's status said something our table cannot hold (a 309-digit queue position once): the
    # deadline's last look writes no progress, so no such write can keep the job from its end.
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", deadline_in_s=-1)
    system.fal.script_status("req-1", in_queue(7))
    system.store.fail("update_progress", decimal.Overflow("[<class 'decimal.Overflow'>]"), times=5)
    failed = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert failed is not None and failed.status == JobStatus.FAILED and failed.error
    assert failed.error.code == "expired" and system.store.refunds(job.id) == 1
    assert system.fal.calls == [("status", "req-1"), ("cancel", "req-1")]
