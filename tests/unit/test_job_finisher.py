"""JobFinisher: the one way a job ends (completion, failure/cancel with refund, the event outbox),
including what happens when an actor dies at each crash point."""

from __future__ import annotations

import pytest

from tests.fakes import video_url
from tests.fakes.system import System
from videogen import crash
from videogen.domain.errors import MediaRejected, MediaTransferError
from videogen.domain.models import JobStatus
from videogen.ports import FalResult
from videogen.services.completion import video_key, video_prefix

URL = video_url("req-1")


def test_given_a_video_url_then_it_is_copied_content_addressed_and_the_job_completed(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    done = system.finisher.complete_from_url(job, URL)
    assert done.status == JobStatus.COMPLETED and done.video is not None
    assert done.video.s3_key == f"{video_prefix(job)}{done.video.sha256}.mp4"
    assert system.videos.objects[done.video.s3_key][0] == system.media.body(URL)
    assert all(s.closed for s in system.media.streams)
    assert system.events.types_for(job.id) == ["Job Completed"] and not system.job(job.id).event_pending


def test_given_a_video_stored_by_an_actor_that_died_then_it_is_reused_without_a_download(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    crash.arm(crash.AFTER_S3_UPLOAD)
    with pytest.raises(crash.CrashPointReached):
        system.finisher.complete_from_url(job, URL)
    [stored] = system.videos.keys()
    assert system.job(job.id).status == JobStatus.IN_PROGRESS
    done = system.finisher.complete_from_url(job, URL)  # the next actor (webhook retry, Check, reconciler)
    assert done.status == JobStatus.COMPLETED and done.video and done.video.s3_key == stored
    assert system.media.opened == [URL] and system.videos.keys() == [stored]


def test_given_a_crash_after_the_transition_then_the_event_stays_owed_for_the_reconciler(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    crash.arm(crash.AFTER_TRANSITION)
    with pytest.raises(crash.CrashPointReached):
        system.finisher.settle(job, FalResult(error="boom"))
    failed = system.job(job.id)
    assert failed.status == JobStatus.FAILED and failed.event_pending and system.events.published == []
    assert system.store.find_stale_active("9999", 10) == [failed]  # still in the sparse index
    system.finisher.publish(failed)
    assert system.events.types_for(job.id) == ["Job Failed"] and not system.job(job.id).event_pending
    assert system.store.find_stale_active("9999", 10) == []


def test_given_a_job_already_ended_then_nothing_is_downloaded(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.finisher.fail(job, "deadline_exceeded", "late")
    assert system.finisher.complete_from_url(job, URL).status == JobStatus.FAILED  # `job` is a stale read
    assert system.media.opened == [] and system.videos.keys() == []


def test_given_media_that_fails_a_guard_then_the_job_fails_with_a_refund_and_nothing_is_stored(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.media.fail(URL, MediaRejected("host not allowed"))
    failed = system.finisher.complete_from_url(job, URL)
    assert failed.status == JobStatus.FAILED and failed.error and failed.error.code == "media_rejected"
    assert system.store.refunds(job.id) == 1 and system.videos.keys() == []


def test_given_the_bucket_rejects_the_media_then_the_job_fails_with_a_refund(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.videos.fail_puts(MediaRejected("media body is empty"))
    assert system.finisher.complete_from_url(job, URL).status == JobStatus.FAILED
    assert system.media.streams[0].closed


def test_given_a_broken_copy_then_it_raises_and_the_job_stays_active(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.videos.fail_puts(MediaTransferError("s3 down"))
    with pytest.raises(MediaTransferError):
        system.finisher.complete_from_url(job, URL)
    assert system.job(job.id).status == JobStatus.IN_PROGRESS and system.store.refunds(job.id) == 0
    assert system.media.streams[0].closed


def test_given_another_generation_completed_first_then_the_losers_object_is_deleted(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-2", submit_attempts=2)
    stale = system.job(job.id)

    def other_generation_wins() -> None:
        theirs = system.videos.put(video_key(stale), b"the other generation's bytes")
        system.store.complete(stale, theirs)

    system.store.before("complete", other_generation_wins)
    result = system.finisher.complete_from_url(stale, URL)
    winner = system.job(job.id).video
    assert result.video == winner and winner is not None
    assert system.videos.keys() == [winner.s3_key]  # ours removed; the recorded sha256 matches the object
    assert len(system.videos.deleted) == 1 and system.videos.deleted[0] != winner.s3_key
    assert system.events.types_for(job.id) == []  # the winner's own publish is not this finisher's


def test_given_the_job_failed_while_copying_then_the_orphan_object_is_deleted(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.store.before("complete", lambda: system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=False))
    result = system.finisher.complete_from_url(job, URL)
    assert result.status == JobStatus.FAILED and system.videos.keys() == []
    assert system.store.refunds(job.id) == 1


def test_given_the_same_object_won_the_race_then_it_is_kept(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.store.before("complete", lambda: system.finisher.complete_from_url(job, URL))  # a racing webhook
    result = system.finisher.complete_from_url(job, URL)
    assert result.status == JobStatus.COMPLETED and result.video
    assert system.videos.keys() == [result.video.s3_key] and system.videos.deleted == []
    assert system.events.types_for(job.id) == ["Job Completed"]  # one transition, one event


def test_given_the_event_bus_is_down_then_the_job_ends_and_its_event_stays_owed(system: System) -> None:
    job = system.given_job()
    system.events.down = True
    done = system.cancel.run(job)
    assert done.status == JobStatus.CANCELED and system.job(job.id).event_pending
    assert system.store.refunds(job.id) == 1
    system.events.down = False
    assert system.reconciler.run(now=10**10)["event_published"] == 1
    assert system.events.types_for(job.id) == ["Job Canceled"] and not system.job(job.id).event_pending


def test_given_a_failure_twice_then_refunded_once(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    first = system.finisher.fail(job, "generation_failed", "x")
    second = system.finisher.fail(job, "deadline_exceeded", "y")  # a racing actor with a stale read
    assert second == system.job(job.id) and second.error and second.error.code == "generation_failed"
    assert first.status == JobStatus.FAILED
    assert system.store.refunds(job.id) == 1 and system.events.types_for(job.id) == ["Job Failed"]


def test_error_messages_are_capped(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    failed = system.finisher.settle(job, FalResult(error="x" * 2000))
    assert failed.error and len(failed.error.message) == 500


# --- the outbox removes what a job that did not complete left in the bucket ---------------------


def _crash_after_upload(system: System, job_id: str) -> str:
    crash.arm(crash.AFTER_S3_UPLOAD)
    with pytest.raises(crash.CrashPointReached):
        system.finisher.complete_from_url(system.job(job_id), URL)
    [stored] = system.videos.keys()
    return stored


def test_given_a_crash_after_the_upload_then_a_cancel_removes_the_object_when_it_publishes(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    stored = _crash_after_upload(system, job.id)
    canceled = system.cancel.run(system.job(job.id))
    assert canceled.status == JobStatus.CANCELED and system.videos.keys() == [] and system.videos.deleted == [stored]
    assert system.events.types_for(job.id) == ["Job Canceled"] and not system.job(job.id).event_pending


def test_given_a_crash_after_the_upload_then_a_failure_removes_the_object(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    _crash_after_upload(system, job.id)
    failed = system.finisher.settle(system.job(job.id), FalResult(error="boom"))
    assert failed.status == JobStatus.FAILED and system.videos.keys() == []
    assert system.events.types_for(job.id) == ["Job Failed"]


def test_given_the_removal_fails_then_the_event_stays_owed_and_the_reconciler_removes_it(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    stored = _crash_after_upload(system, job.id)
    system.videos.fail_deletes(MediaTransferError("s3 down"))
    canceled = system.cancel.run(system.job(job.id))
    assert canceled.status == JobStatus.CANCELED and system.store.refunds(job.id) == 1
    assert system.job(job.id).event_pending and system.events.types_for(job.id) == []  # not published, not cleared
    assert system.videos.keys() == [stored]
    assert system.reconciler.run(now=10**10)["event_published"] == 1
    assert system.videos.keys() == [] and system.events.types_for(job.id) == ["Job Canceled"]
    assert not system.job(job.id).event_pending


def test_a_completed_jobs_video_is_never_deleted_even_when_its_event_is_published_again(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    done = system.finisher.complete_from_url(job, URL)
    assert done.video is not None
    stray = system.videos.put(video_key(done), b"a lost generation's bytes").s3_key  # stored, then its actor died
    system.finisher.publish(system.job(job.id))  # the reconciler's republish
    assert system.videos.keys() == [done.video.s3_key] and system.videos.deleted == [stray]
    assert system.events.types_for(job.id) == ["Job Completed", "Job Completed"]
