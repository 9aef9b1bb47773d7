"""State machine tasks Expire (deadline) and FailJob (submit failed); the reconciler's deadline too."""

from __future__ import annotations

from videogen.domain.endings import workflow_ending
from videogen.domain.errors import (
    FalRejectedError,
    FalTransientError,
    MediaTransferError,
    StoreBusy,
    TransitionRejected,
)
from videogen.domain.models import CancelIntent, Job
from videogen.observability import logger
from videogen.ports import FalGateway, JobStore
from videogen.services.completion import JobFinisher
from videogen.services.fal_poll import FalPoller


class ExpireJob:
    def __init__(self, store: JobStore, fal: FalGateway, poller: FalPoller, finisher: JobFinisher) -> None:
        self._store = store
        self._fal = fal
        self._poller = poller
        self._finisher = finisher

    def run(self, job_id: str, reason: str, cancel_at_fal: bool, cause: str | None = None) -> Job | None:
        """Fail the job with ``reason`` and refund it. With ``cancel_at_fal`` (the deadline's), first
        a last look at fal (it may have just finished: then it completes instead) and a cancel
        there, its intent recorded first."""
        job = self._store.get_job(job_id)
        if job is None or job.is_terminal:
            return job
        if cancel_at_fal and job.fal is not None:
            request = job.fal
            try:
                if self._poller.poll_and_settle(job, record=False):  # last look: it may have just finished
                    return self._store.get_job(job_id)
                # Recorded BEFORE the cancel call: fal reports the cancelled request as a failure
                # (its ERROR webhook often beats this task's own write below), and the
                # completion path maps a failure of a job with this intent to deadline_exceeded.
                job = self._store.request_cancel(job_id, CancelIntent.DEADLINE)
                if self._fal.cancel(request) == "already_completed" and self._poller.poll_and_settle(job, record=False):
                    return self._store.get_job(job_id)  # it finished meanwhile: a video still completes
            except TransitionRejected:  # it ended meanwhile
                return self._store.get_job(job_id)
            except (MediaTransferError, StoreBusy):
                raise  # fal finished but storing it broke: retry (state machine, then reconciler), never fail
            except (FalTransientError, FalRejectedError) as exc:
                logger.warning(
                    "last look / cancel at fal failed", extra={"job_id": job_id, "error": type(exc).__name__}
                )
        if cause:
            logger.info("failing job", extra={"job_id": job_id, "cause": cause[:200]})
        return self._finisher.end(job, workflow_ending(reason, job))
