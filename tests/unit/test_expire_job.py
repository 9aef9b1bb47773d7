"""ExpireJob (the state machine's Expire/FailJob task and the reconciler's deadline repair)."""

from __future__ import annotations

import pytest

from tests.fakes import completed, in_progress, video_url
from tests.fakes.system import System
from videogen.domain.errors import FalRejectedError, FalTransientError, MediaTransferError, StoreBusy
from videogen.domain.models import JobStatus


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
    assert failed.error and failed.error.code == "deadline_exceeded"
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
