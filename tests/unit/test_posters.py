"""PosterMaker (the media function's use case), the poster rules of the domain and the Job's
``video`` view, on the fakes: every branch, and what none of them may touch (status, credits,
the outbox, ``updated_at``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes import FakeClip
from tests.fakes.system import System
from videogen.domain.errors import MediaTransferError, StoreBusy, TransitionRejected
from videogen.domain.media import POSTER_MAX_FRAMES, POSTER_MIN_LUMA, pick_poster, poster_key
from videogen.domain.models import Job, JobStatus
from videogen.services.completion import video_prefix
from videogen.services.views import job_view


def _completed(system: System, **clip: Any) -> Job:
    job = system.given_job(JobStatus.COMPLETED)
    assert job.video is not None
    if clip:
        system.media_tools.clip(job.video.s3_key, FakeClip(**clip))
    return job


def _unchanged_but_media(before: Job, after: Job) -> None:
    """Only ``video.media`` may differ."""
    assert before.video is not None and after.video is not None
    assert after.model_dump(exclude={"video"}) == before.model_dump(exclude={"video"})
    assert after.video.model_dump(exclude={"media"}) == before.video.model_dump(exclude={"media"})


# --- the domain's rules ---------------------------------------------------------------------------


def test_the_first_bright_frame_is_the_poster_and_nothing_after_it_is_read() -> None:
    read: list[int] = []

    def frames() -> Any:
        for index, luma in enumerate([0.0, 3.0, 10.0, POSTER_MIN_LUMA, 200.0, 90.0]):
            read.append(index)
            yield index, luma

    assert pick_poster(frames()) == (3, POSTER_MIN_LUMA)  # at the threshold counts as bright
    assert read == [0, 1, 2, 3]


def test_when_every_frame_is_dark_the_brightest_is_the_poster_the_first_among_equals() -> None:
    assert pick_poster(enumerate([2.0, 9.0, 4.0, 9.0])) == (1, 9.0)


def test_only_the_first_max_frames_are_looked_at() -> None:
    lumas = [1.0] * POSTER_MAX_FRAMES + [250.0]
    assert pick_poster(enumerate(lumas)) == (0, 1.0)
    assert pick_poster(enumerate([5.0, 6.0, 250.0]), max_frames=2) == (1, 6.0)


def test_no_frame_no_poster() -> None:
    assert pick_poster(iter([])) is None


def test_the_poster_lives_beside_its_video_under_the_jobs_prefix() -> None:
    key = "videos/vid_1/abc.mp4"
    assert poster_key(key) == "videos/vid_1/abc.mp4.poster.jpg"
    assert poster_key(key).startswith("videos/vid_1/")


# --- PosterMaker: every branch ----------------------------------------------------------------------


def test_a_completed_job_gets_its_metadata_and_poster_once(system: System, counted: Callable[[str], int]) -> None:
    job = _completed(system, duration_s=5.041, width=1280, height=720, fps=23.976, has_audio=True)
    assert job.video is not None
    assert system.posters.run(job.id) == "poster_stored"
    after = system.job(job.id)
    assert after.video is not None and after.video.media is not None
    media = after.video.media
    assert (media.duration_s, media.width, media.height, media.fps, media.has_audio) == (5.041, 1280, 720, 23.976, True)
    assert media.poster_key == poster_key(job.video.s3_key) and media.poster_key in system.media_tools.posters
    _unchanged_but_media(job, after)  # status, credits, outbox, updated_at: as they were
    assert counted("PostersStored") == 1 and system.store.calls.count("record_media") == 1


def test_a_redelivered_event_finds_the_media_recorded_and_does_nothing(system: System) -> None:
    job = _completed(system)
    assert system.posters.run(job.id) == "poster_stored"
    recorded = system.job(job.id)
    assert system.posters.run(job.id) == "already_done"
    assert system.job(job.id) == recorded
    assert len(system.media_tools.calls) == 1  # the video was not decoded again


def test_a_concurrent_delivery_that_recorded_first_wins_and_this_one_changes_nothing(system: System) -> None:
    job = _completed(system)
    system.store.before("record_media", lambda: system.posters.run(job.id))  # the other delivery, in between
    assert system.posters.run(job.id) == "already_done"
    assert system.store.calls.count("record_media") == 2
    assert len(system.media_tools.posters) == 1  # same key, same poster


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.IN_PROGRESS, JobStatus.FAILED, JobStatus.CANCELED])
def test_a_job_that_is_not_completed_gets_no_poster(system: System, status: JobStatus) -> None:
    job = system.given_job(status)
    assert system.posters.run(job.id) == "not_completed"
    assert system.media_tools.calls == [] and "record_media" not in system.store.calls
    assert system.job(job.id) == job


def test_an_unknown_job_gets_nothing(system: System) -> None:
    assert system.posters.run("vid_nope") == "job_missing"
    assert system.media_tools.calls == []


def test_a_missing_video_is_logged_and_counted_and_the_job_stays_completed_without_poster(
    system: System, counted: Callable[[str], int], logged: Callable[..., list[tuple[Any, ...]]]
) -> None:
    job = _completed(system)
    assert job.video is not None
    stored = system.videos.objects.pop(job.video.s3_key)
    assert system.posters.run(job.id) == "video_missing"
    assert system.job(job.id) == job and system.media_tools.posters == {}
    assert counted("PosterVideoMissing") == 1
    assert logged("poster: the job's video is not in the bucket", "job_id") == [(job.id,)]
    system.videos.objects[job.video.s3_key] = stored  # the teardown audit checks every completed job's video


def test_an_undecodable_video_is_logged_and_counted_and_the_job_stays_completed_without_poster(
    system: System, counted: Callable[[str], int], logged: Callable[..., list[tuple[Any, ...]]]
) -> None:
    job = _completed(system, decodable=False)
    assert system.posters.run(job.id) == "undecodable"
    assert system.job(job.id) == job and system.media_tools.posters == {}
    assert counted("PosterFailed") == 1 and counted("PostersStored") == 0
    assert [r[0] for r in logged("poster: the video could not be decoded", "job_id")] == [job.id]


def test_black_first_frames_are_skipped_for_the_first_bright_one(system: System) -> None:
    job = _completed(system, lumas=[0.0, 0.0, 1.5, 12.0, 130.0, 140.0])
    assert system.posters.run(job.id) == "poster_stored"
    media = system.job(job.id).video.media  # type: ignore[union-attr]
    assert media is not None and system.media_tools.posters[media.poster_key] == 4


def test_a_video_dark_throughout_gets_its_brightest_frame(system: System) -> None:
    job = _completed(system, lumas=[0.0, 7.0, 3.0])
    assert system.posters.run(job.id) == "poster_stored"
    media = system.job(job.id).video.media  # type: ignore[union-attr]
    assert media is not None and system.media_tools.posters[media.poster_key] == 1


def test_a_transient_s3_failure_raises_for_lambdas_retry_and_records_nothing(system: System) -> None:
    job = _completed(system)
    system.media_tools.fail(MediaTransferError("S3 timed out"))
    with pytest.raises(MediaTransferError):
        system.posters.run(job.id)
    assert system.job(job.id) == job
    assert system.posters.run(job.id) == "poster_stored"  # the retry


def test_a_busy_store_raises_for_lambdas_retry(system: System) -> None:
    job = _completed(system)
    system.store.fail("record_media", StoreBusy("busy"))
    with pytest.raises(StoreBusy):
        system.posters.run(job.id)
    assert system.posters.run(job.id) == "poster_stored"


def test_the_store_refuses_media_for_another_video_or_a_job_not_completed(system: System) -> None:
    job = _completed(system)
    other = system.given_job(JobStatus.FAILED)
    assert job.video is not None
    media = system.media_tools.make_poster(job.video.s3_key, poster_key(job.video.s3_key))
    with pytest.raises(TransitionRejected):
        system.store.record_media(job.id, "videos/x/other.mp4", media)
    with pytest.raises(TransitionRejected):
        system.store.record_media(other.id, job.video.s3_key, media)
    system.store.record_media(job.id, job.video.s3_key, media)
    with pytest.raises(TransitionRejected):  # once
        system.store.record_media(job.id, job.video.s3_key, media)


def test_the_outbox_clean_up_keeps_a_completed_jobs_poster_even_before_it_is_recorded(system: System) -> None:
    job = _completed(system)
    assert job.video is not None
    system.videos.put(poster_key(job.video.s3_key), b"\xff\xd8 poster")  # stored, not yet recorded
    system.videos.put(f"{video_prefix(job)}stray.mp4", b"another generation")
    system.finisher.publish(system.job(job.id))  # the reconciler re-publishing the event
    assert system.videos.list_keys(video_prefix(job)) == sorted([job.video.s3_key, poster_key(job.video.s3_key)])


# --- the view --------------------------------------------------------------------------------------


def test_the_video_view_has_null_metadata_and_poster_until_the_media_is_recorded(system: System) -> None:
    job = _completed(system, duration_s=2.0, width=320, height=240, fps=24.0, has_audio=False)
    video = job_view(system.job(job.id), system.videos).video
    assert video is not None
    assert (video.duration_s, video.width, video.height, video.fps, video.has_audio, video.poster_url) == (None,) * 6

    system.posters.run(job.id)
    video = job_view(system.job(job.id), system.videos).video
    assert video is not None and job.video is not None
    assert (video.duration_s, video.width, video.height, video.fps, video.has_audio) == (2.0, 320, 240, 24.0, False)
    assert video.poster_url is not None and poster_key(job.video.s3_key) in video.poster_url
    # presigned like url, by the same store: the same window, so the same expiry
    assert video.poster_url.split("?")[1] == video.url.split("?")[1]
