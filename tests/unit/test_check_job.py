"""CheckJob (the poll loop's task) and the poll it shares with expire, cancel and the reconciler."""

from __future__ import annotations

import pytest

from tests.fakes import completed, in_progress, in_queue, video_url
from tests.fakes.system import System
from videogen.domain.errors import FalRejectedError, FalTransientError, MediaTransferError, StoreBusy
from videogen.domain.models import JobStatus
from videogen.ports import FalResult

TIMING = {"poll_base_s": 10, "poll_max_s": 60, "poll_factor": 1.5}


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED])
def test_given_a_terminal_job_when_checked_then_done_without_calling_fal(system: System, status: JobStatus) -> None:
    job = system.given_job(status)
    assert system.check.run(job.id, 0, TIMING)["done"] is True
    assert system.fal.calls == []


def test_given_no_job_when_checked_then_done(system: System) -> None:
    assert system.check.run("vid_missing", 0, TIMING)["done"] is True
    assert system.fal.calls == []


def test_given_a_job_past_its_deadline_when_checked_then_expired_without_calling_fal(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", deadline_in_s=-1)
    answer = system.check.run(job.id, 3, TIMING)
    assert answer["expired"] is True and answer["done"] is False
    assert system.fal.calls == []
    assert system.job(job.id).status == JobStatus.SUBMITTED  # the state machine's Expire task ends it


def test_given_no_fal_request_yet_when_checked_then_pending_with_the_next_wait(system: System) -> None:
    job = system.given_job()
    assert system.check.run(job.id, 2, TIMING) == {"done": False, "expired": False, "next_wait_s": 22}
    assert system.fal.calls == []


def test_given_fal_completed_with_a_video_when_checked_then_completed_stored_and_announced(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    assert system.check.run(job.id, 0, TIMING)["done"] is True
    assert system.fal.calls == [("status", "req-1"), ("result", "req-1")]
    done = system.job(job.id)
    assert done.status == JobStatus.COMPLETED and done.video is not None
    assert system.videos.keys() == [done.video.s3_key] and done.video.s3_key.startswith(f"videos/{job.id}/")
    assert system.media.opened == [video_url("req-1")]
    assert system.events.types_for(job.id) == ["Job Completed"]
    assert not done.event_pending
    assert system.store.refunds(job.id) == 0 and system.store.get_balance(job.user_id).active_jobs == 0


def test_given_fal_completed_with_an_error_in_the_status_when_checked_then_its_result_read_failed_and_refunded(
    system: System,
) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", completed(error="out of memory"))
    system.fal.script_result("req-1", FalResult(error="500: out of memory"))
    assert system.check.run(job.id, 0, TIMING)["done"] is True
    assert system.fal.calls == [("status", "req-1"), ("result", "req-1")]
    failed = system.job(job.id)
    assert failed.status == JobStatus.FAILED and failed.error and failed.error.code == "generation_failed"
    assert system.store.refunds(job.id) == 1
    assert system.events.types_for(job.id) == ["Job Failed"]


def test_given_fal_completed_with_an_error_result_when_checked_then_failed_and_refunded(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    system.fal.script_result("req-1", FalResult(error="422: field required"))
    assert system.check.run(job.id, 0, TIMING)["done"] is True
    assert system.job(job.id).status == JobStatus.FAILED
    assert system.store.refunds(job.id) == 1 and system.videos.keys() == []


def test_given_the_job_waits_in_fal_queue_when_checked_then_its_position_is_written(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_queue(4))
    before = system.job(job.id).updated_at
    assert system.check.run(job.id, 0, TIMING) == {"done": False, "expired": False, "next_wait_s": 10}
    stored = system.job(job.id)
    assert stored.status == JobStatus.SUBMITTED and stored.progress.queue_position == 4
    assert stored.updated_at >= before and system.store.calls.count("update_progress") == 1


def test_given_fal_generates_when_checked_then_in_progress_with_fal_log_message(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_progress("rendering frame 40"))
    assert system.check.run(job.id, 0, TIMING)["done"] is False
    stored = system.job(job.id)
    assert stored.status == JobStatus.IN_PROGRESS and stored.progress.message == "rendering frame 40"


def test_given_an_unchanged_status_when_checked_again_then_the_heartbeat_is_written_anyway(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", in_progress())
    system.check.run(job.id, 0, TIMING)
    system.check.run(job.id, 1, TIMING)
    assert system.store.calls.count("update_progress") == 2  # the reconciler skips jobs written recently
    assert system.job(job.id).status == JobStatus.IN_PROGRESS


def test_given_fal_reports_queue_after_generation_started_then_status_never_moves_back(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", in_queue(1))
    assert system.check.run(job.id, 0, TIMING)["done"] is False
    assert system.job(job.id).status == JobStatus.IN_PROGRESS


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda s: s.fal.script_status("req-1", FalTransientError("timeout")), id="fal-transient"),
        pytest.param(lambda s: s.fal.script_status("req-1", FalRejectedError(401, None, "key")), id="fal-refused"),
        pytest.param(
            lambda s: (
                s.fal.script_status("req-1", completed()),
                s.media.fail(video_url("req-1"), MediaTransferError()),
            ),
            id="cdn-down",
        ),
        pytest.param(
            lambda s: (s.fal.script_status("req-1", completed()), s.videos.fail_puts(MediaTransferError())),
            id="bucket-down",
        ),
        pytest.param(
            lambda s: (s.fal.script_status("req-1", completed()), s.store.fail("complete", StoreBusy())),
            id="store-busy",
        ),
    ],
)
def test_given_a_transient_failure_when_checked_then_pending_and_the_job_stays_active(system: System, break_it) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    break_it(system)
    assert system.check.run(job.id, 0, TIMING) == {"done": False, "expired": False, "next_wait_s": 10}
    stored = system.job(job.id)
    assert stored.status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0
