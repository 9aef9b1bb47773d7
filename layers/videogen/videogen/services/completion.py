"""The ONE way a job ends. Webhook, poll loop (Check), deadline, cancel and reconciler all call this.

complete: result URL → guarded download → streamed into S3 (sha256) → conditional
transition to ``completed`` → ``Job Completed`` event.
fail/cancel: conditional transition with refund (one transaction) → ``Job Failed``
/ ``Job Canceled`` event.

Whoever gets there first wins; the others find a terminal job and stop. Events go
out through an outbox flag (``event_pending``) so a crash between the transition
and the event is repaired by the reconciler.
"""

from __future__ import annotations

from typing import Any

from videogen import crash
from videogen.domain.endings import MEDIA_REJECTED, Ending, provider_failure_ending
from videogen.domain.errors import MediaRejected, MediaTransferError, StoreBusy, TransitionRejected
from videogen.domain.media import poster_key
from videogen.domain.models import Job, JobStatus, StoredVideo
from videogen.observability import count, logger
from videogen.ports import SHA256_PLACEHOLDER, EventPublisher, FalResult, JobStore, MediaSource, VideoStore

EVENT_TYPES = {
    JobStatus.COMPLETED: "Job Completed",
    JobStatus.FAILED: "Job Failed",
    JobStatus.CANCELED: "Job Canceled",
}


def video_prefix(job: Job) -> str:
    return f"videos/{job.id}/"


def video_key(job: Job) -> str:
    """Content-addressed key: the same bytes always land on the same object, and two different
    generations of one job (after a lost submit answer) can never overwrite each other — the
    recorded sha256 always matches the object the job points to."""
    return f"{video_prefix(job)}{SHA256_PLACEHOLDER}.mp4"


class JobFinisher:
    def __init__(self, store: JobStore, media: MediaSource, videos: VideoStore, events: EventPublisher) -> None:
        self._store = store
        self._media = media
        self._videos = videos
        self._events = events

    # --- outcomes -----------------------------------------------------------------------

    def settle(self, job: Job, result: FalResult) -> Job:
        """Apply a finished fal request's outcome: success → complete; a failure → the ending
        :func:`provider_failure_ending` gives the job as stored NOW.

        Why re-read: a cancel WE asked for comes back from fal as a failure, and its webhook can
        beat our cancel call's own write. The intent is recorded on the job before fal is asked
        to cancel, so anyone holding fal's "cancelled" answer reads it here (a consistent read
        after fal's answer), whatever older copy of the job they were handed. Re-decided while a
        lost race leaves the job active (e.g. it moved to in_progress meanwhile)."""
        if result.ok:
            assert result.video_url is not None
            return self.complete_from_url(job, result.video_url)
        current = job
        for _ in range(3):
            current = self._store.get_job(job.id) or current
            if current.is_terminal:
                return current
            current = self.end(current, provider_failure_ending(current, result.failure))
            if current.is_terminal:
                break
        return current

    def end(self, job: Job, ending: Ending, *, unsubmitted: bool = False) -> Job:
        """Fail or cancel the job as ``ending`` says, and refund its credits, exactly once.
        ``unsubmitted``: only if no fal request was stored meanwhile (else the caller decides
        again on the fresh job)."""
        try:
            done = self._store.finish_with_refund(job, ending.status, ending.error, unsubmitted=unsubmitted)
        except TransitionRejected:
            latest = self._store.get_job(job.id) or job
            logger.info("failure lost the race", extra={"job_id": job.id, "status": latest.status.value})
            return latest
        count("JobsCanceled" if ending.status == JobStatus.CANCELED else "JobsFailed")
        count("CreditsRefunded", job.credits_charged)
        logger.info(
            "job ended with refund", extra={"job_id": job.id, "status": ending.status.value, "code": ending.code}
        )
        crash.point(crash.AFTER_TRANSITION)
        self.publish(done)
        return done

    def complete_from_url(self, job: Job, url: str) -> Job:
        """Copy the provider's video into our bucket and mark the job completed.

        Raises ``MediaTransferError`` when the copy broke (the job stays active and
        the next actor retries); a video that fails a guard fails the job instead.
        """
        current = self._store.get_job(job.id) or job
        if current.is_terminal:
            return current
        video = self._videos.find(video_prefix(current))  # a previous actor may have stored it and died
        if video is None:
            try:
                stream = self._media.open(url)
                try:
                    video = self._videos.put_stream(video_key(current), stream)
                finally:
                    stream.close()
            except MediaRejected as exc:
                logger.warning("result media rejected", extra={"job_id": job.id, "reason": str(exc)[:200]})
                count("MediaRejected")
                return self.end(current, MEDIA_REJECTED)
            count("VideoBytesStored", video.size_bytes)
        crash.point(crash.AFTER_S3_UPLOAD)
        return self._transition_completed(current, video)

    def _transition_completed(self, job: Job, video: StoredVideo) -> Job:
        try:
            done = self._store.complete(job, video)
        except TransitionRejected:
            latest = self._store.get_job(job.id) or job
            kept = latest.video.s3_key if latest.video else None
            if latest.is_terminal and kept != video.s3_key:
                # It ended otherwise meanwhile (deadline, cancel, another generation's video):
                # this object belongs to no job.
                self._videos.delete(video.s3_key)
            logger.info("completion lost the race", extra={"job_id": job.id, "status": latest.status.value})
            return latest
        count("JobsCompleted")
        logger.info("job completed", extra={"job_id": job.id, "size_bytes": video.size_bytes})
        crash.point(crash.AFTER_TRANSITION)
        self.publish(done)
        return done

    def fail(
        self, job: Job, code: str, message: str, status: JobStatus = JobStatus.FAILED, *, unsubmitted: bool = False
    ) -> Job:
        """:meth:`end` with the ending spelled out (``code`` as stored: a FailureCode, or canceled)."""
        return self.end(job, Ending(status, code, message), unsubmitted=unsubmitted)

    def publish(self, job: Job) -> None:
        """Remove the objects the job does not own, emit its terminal event (at least once) and
        clear its outbox flag. Every ending passes here, and the reconciler calls it again while
        the flag is set, so a video stored by an actor that died before its ``completed`` write
        (the job then failed or was canceled) is removed here; if that fails, nothing is
        published and the flag stays set for the reconciler."""
        try:
            self._remove_unowned_videos(job)
        except MediaTransferError:
            logger.warning(
                "removing the job's unowned videos failed; the reconciler will retry", extra={"job_id": job.id}
            )
            count("VideoCleanupFailed")
            return
        detail: dict[str, Any] = {
            "job_id": job.id,
            "user_id": job.user_id,
            "status": job.status.value,
            "model": job.model,
            "credits_charged": job.credits_charged,
            "completed_at": job.completed_at,
        }
        if job.video:
            detail["video"] = {
                "s3_key": job.video.s3_key,
                "size_bytes": job.video.size_bytes,
                "sha256": job.video.sha256,
            }
        if job.error:
            detail["error"] = job.error.model_dump()
        try:
            self._events.publish(EVENT_TYPES[job.status], detail)
        except Exception:  # noqa: BLE001 - the outbox flag stays set: the reconciler publishes it later
            logger.exception("publishing the terminal event failed; the reconciler will retry")
            count("EventPublishFailed")
            return
        try:
            self._store.clear_event_pending(job.id)
        except StoreBusy:
            # The job's change is committed and its event is out; only the flag stayed (the write
            # kept conflicting). The reconciler publishes it again (events are at least once).
            logger.warning("the outbox flag could not be cleared; the reconciler will", extra={"job_id": job.id})
            count("EventPendingClearFailed")

    def _remove_unowned_videos(self, job: Job) -> None:
        """Delete every object under the job's prefix but the video a completed job points to and
        its poster (whose key is the video's: the media function may write it before or after)."""
        owned = (
            {job.video.s3_key, poster_key(job.video.s3_key)}
            if job.status == JobStatus.COMPLETED and job.video
            else set()
        )
        for key in self._videos.list_keys(video_prefix(job)):
            if key not in owned:
                self._videos.delete(key)
                count("UnownedVideosDeleted")
                logger.info("unowned video deleted", extra={"job_id": job.id, "s3_key": key})
