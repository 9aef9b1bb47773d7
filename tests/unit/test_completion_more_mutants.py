"""JobFinisher.publish's outbox cleanup as operators see it: the metric and log line of each
removed, failed-to-remove or still-flagged step (mutation survivors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fakes import video_url
from tests.fakes.system import System
from videogen.domain.errors import MediaTransferError, StoreBusy
from videogen.domain.models import JobStatus
from videogen.services.completion import video_key

URL = video_url("req-1")
Counted = Callable[[str], int]
Logged = Callable[..., list[tuple[Any, ...]]]
CLEANUP_FAILED = "removing the job's unowned videos failed; the reconciler will retry"
FLAG_STAYED = "the outbox flag could not be cleared; the reconciler will"


def test_an_unowned_video_removed_is_counted_and_logged_with_its_key(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    done = system.finisher.complete_from_url(job, URL)
    stray = system.videos.put(video_key(done), b"a lost generation's bytes").s3_key
    system.finisher.publish(system.job(job.id))
    assert counted("UnownedVideosDeleted") == 1
    assert logged("unowned video deleted", "job_id", "s3_key") == [(job.id, stray)]


def test_a_failed_job_that_still_points_to_a_video_does_not_own_it(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    failed = system.finisher.fail(job, "generation_failed", "boom")
    stored = system.videos.put(video_key(failed), b"a lost generation's bytes")  # its actor died
    system.finisher.publish(failed.model_copy(update={"video": stored}))
    assert system.videos.keys() == [] and system.videos.deleted == [stored.s3_key]


def test_a_failed_removal_is_counted_and_logged_and_nothing_is_published(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    done = system.finisher.complete_from_url(job, URL)
    system.videos.put(video_key(done), b"a lost generation's bytes")
    system.videos.fail_deletes(MediaTransferError("s3 down"))
    published = len(system.events.published)
    system.finisher.publish(system.job(job.id))
    assert len(system.events.published) == published
    assert counted("VideoCleanupFailed") == 1
    assert logged(CLEANUP_FAILED, "job_id") == [(job.id,)]
    system.finisher.publish(system.job(job.id))  # the reconciler's retry removes it
    assert counted("UnownedVideosDeleted") == 1


def test_an_outbox_flag_that_cannot_be_cleared_is_counted_and_logged(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.finisher.complete_from_url(job, URL)
    system.store.fail("clear_event_pending", StoreBusy("kept conflicting"))
    system.finisher.publish(system.job(job.id))
    assert counted("EventPendingClearFailed") == 1
    assert logged(FLAG_STAYED, "job_id") == [(job.id,)]
