"""JobFinisher (services/completion.py) as operators and subscribers see it: the terminal event's
detail, the metrics and log lines of each ending, and the bounded re-decision of a failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes import make_job, video_url
from tests.fakes.system import System
from videogen import crash
from videogen.domain.errors import MediaRejected, TransitionRejected
from videogen.domain.models import JobStatus
from videogen.ports import FalResult

URL = video_url("req-1")
Counted = Callable[[str], int]
Logged = Callable[..., list[tuple[Any, ...]]]


def test_a_completion_publishes_its_video_counts_its_bytes_and_logs_it(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1", credits=6)
    done = system.finisher.complete_from_url(job, URL)
    assert done.video is not None and done.completed_at is not None
    [(kind, detail)] = system.events.published
    assert (kind, detail) == (
        "Job Completed",
        {
            "job_id": job.id,
            "user_id": job.user_id,
            "status": "completed",
            "model": job.model,
            "credits_charged": 6,
            "completed_at": done.completed_at,
            "video": {"s3_key": done.video.s3_key, "size_bytes": done.video.size_bytes, "sha256": done.video.sha256},
        },
    )
    size = len(system.media.body(URL))
    assert (counted("JobsCompleted"), counted("VideoBytesStored")) == (1, size)
    assert logged("job completed", "job_id", "size_bytes") == [(job.id, size)]


@pytest.mark.parametrize(
    ("status", "event", "metric"),
    [(JobStatus.FAILED, "Job Failed", "JobsFailed"), (JobStatus.CANCELED, "Job Canceled", "JobsCanceled")],
)
def test_a_failure_or_cancel_publishes_its_error_counts_the_refund_and_logs_it(
    system: System, counted: Counted, logged: Logged, status: JobStatus, event: str, metric: str
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", credits=4)
    done = system.finisher.fail(job, "generation_failed", "m" * 600, status)
    assert done.error is not None and done.error.message == "m" * 500  # cut to 500 characters
    [(kind, detail)] = system.events.published
    assert (kind, detail["status"], detail["credits_charged"]) == (event, status.value, 4)
    assert detail["error"] == {"code": "generation_failed", "message": "m" * 500, "field": None}
    assert "video" not in detail
    other = "JobsCanceled" if metric == "JobsFailed" else "JobsFailed"
    assert (counted(metric), counted(other), counted("CreditsRefunded")) == (1, 0, 4)
    assert logged("job ended with refund", "job_id", "status", "code") == [(job.id, status.value, "generation_failed")]


def test_a_failure_that_lost_the_race_is_logged_with_the_status_that_won(system: System, logged: Logged) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.finisher.complete_from_url(job, URL)
    assert system.finisher.fail(job, "generation_failed", "late").status == JobStatus.COMPLETED
    assert logged("failure lost the race", "job_id", "status") == [(job.id, "completed")]


def test_a_completion_that_lost_the_race_is_logged_with_the_status_that_won(system: System, logged: Logged) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.store.before("complete", lambda: system.finisher.fail(job, "deadline_exceeded", "late"))
    assert system.finisher.complete_from_url(job, URL).status == JobStatus.FAILED
    assert logged("completion lost the race", "job_id", "status") == [(job.id, "failed")]
    assert system.videos.keys() == []  # the copy belongs to no job


def test_a_rejected_video_fails_the_job_with_the_safety_message_a_metric_and_a_short_reason(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.media.fail(URL, MediaRejected("r" * 300))
    done = system.finisher.complete_from_url(job, URL)
    assert done.status == JobStatus.FAILED and done.error is not None
    assert (done.error.code, done.error.message) == ("media_rejected", "the generated video failed a safety check")
    assert counted("MediaRejected") == 1
    assert logged("result media rejected", "job_id", "reason") == [(job.id, "r" * 200)]


def test_an_event_the_bus_refused_is_logged_counted_and_stays_owed(
    system: System, counted: Counted, logged: Logged
) -> None:
    system.events.down = True
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.finisher.fail(job, "generation_failed", "boom")
    assert system.job(job.id).event_pending
    assert counted("EventPublishFailed") == 1
    assert len(logged("publishing the terminal event failed; the reconciler will retry")) == 1


def test_a_crash_right_after_the_completion_leaves_the_event_owed(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    crash.arm(crash.AFTER_TRANSITION)
    with pytest.raises(crash.CrashPointReached):
        system.finisher.complete_from_url(job, URL)
    done = system.job(job.id)
    assert done.status == JobStatus.COMPLETED and done.event_pending
    assert system.events.published == []
    system.finisher.publish(done)


def test_a_failure_is_redecided_at_most_three_times_while_the_job_stays_active(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.store.fail("finish_with_refund", TransitionRejected(job.id), times=5)
    assert system.finisher.settle(job, FalResult(error="boom")).status == JobStatus.IN_PROGRESS
    assert system.store.calls.count("finish_with_refund") == 3


def test_a_failure_of_a_job_the_store_does_not_have_returns_that_job(system: System) -> None:
    ghost = make_job(JobStatus.IN_PROGRESS, request_id="req-9")
    assert system.finisher.settle(ghost, FalResult(error="boom")).id == ghost.id
    assert system.events.published == []


def test_an_environment_armed_crash_point_crashes_its_first_pass_then_at_its_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chaos run that reaches a point proves its recovery at least once, whatever the draws (a
    seed-7 run once passed after_s3_upload 16 times at rate 0.3 without a crash: "too little")."""
    monkeypatch.setenv("ENVIRONMENT", "local")
    monkeypatch.setenv("CRASH_POINTS", crash.AFTER_S3_UPLOAD)
    monkeypatch.setenv("CRASH_RATE", "0")
    crash.disarm()
    try:
        with pytest.raises(crash.CrashPointReached):
            crash.point(crash.AFTER_S3_UPLOAD)
        crash.point(crash.AFTER_S3_UPLOAD)  # rate 0: never again
        crash.point(crash.AFTER_TRANSITION)  # not armed
        assert crash.fired == {crash.AFTER_S3_UPLOAD: 1}
    finally:
        crash.disarm()
