"""Posters and metadata: after a job completed ("Job Completed"), measure its stored video and cut
its poster, then record both on the job ONCE.

It runs after the completion, on the event, so it never delays ``completed``; it never changes a
job's status, credits or outbox. Every outcome but a transient S3 failure is final and returned
(the event is consumed); a transient failure (``MediaTransferError``) or a busy store raises, so
Lambda's asynchronous retries deliver the event again. A redelivered event finds the media
recorded and does nothing.
"""

from __future__ import annotations

from typing import Literal

from videogen.domain.errors import MediaUndecodable, TransitionRejected, VideoMissing
from videogen.domain.media import poster_key
from videogen.domain.models import JobStatus
from videogen.observability import count, logger
from videogen.ports import JobStore, MediaTools

PosterOutcome = Literal["poster_stored", "already_done", "not_completed", "job_missing", "video_missing", "undecodable"]


class PosterMaker:
    def __init__(self, store: JobStore, media: MediaTools) -> None:
        self._store = store
        self._media = media

    def run(self, job_id: str) -> PosterOutcome:
        job = self._store.get_job(job_id)  # the job as stored now, not as the event saw it
        if job is None:
            logger.warning("poster: no such job", extra={"job_id": job_id})
            return "job_missing"
        if job.status != JobStatus.COMPLETED or job.video is None:
            logger.warning("poster: job is not completed", extra={"job_id": job_id, "status": job.status.value})
            return "not_completed"
        if job.video.media is not None:
            return "already_done"
        video_key = job.video.s3_key
        try:
            media = self._media.make_poster(video_key, poster_key(video_key))
        except VideoMissing:
            logger.error("poster: the job's video is not in the bucket", extra={"job_id": job_id})
            count("PosterVideoMissing")
            return "video_missing"
        except MediaUndecodable as exc:
            logger.error("poster: the video could not be decoded", extra={"job_id": job_id, "reason": str(exc)[:300]})
            count("PosterFailed")
            return "undecodable"
        try:
            self._store.record_media(job_id, video_key, media)
        except TransitionRejected:  # another delivery recorded it first (the poster's bytes are the same)
            logger.info("poster: media already recorded", extra={"job_id": job_id})
            return "already_done"
        count("PostersStored")
        logger.info(
            "poster stored",
            extra={"job_id": job_id, "duration_s": media.duration_s, "width": media.width, "height": media.height},
        )
        return "poster_stored"
