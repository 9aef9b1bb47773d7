"""POST /v1/videos/{id}/cancel: cancel a job before generation starts, refunding it once.

A job fal holds is canceled in three steps:

1. Record the intent on the job (``cancel_requested = user``, a conditional write allowed only
   while the job may still be canceled) BEFORE calling fal. Why first: fal answers a cancelled
   request as a failure, and its ERROR webhook arrives within milliseconds of the cancel call,
   often before the call returns. Whoever then sees that failure (webhook, poll loop, reconciler,
   this call) reads the intent and ends the job canceled
   (:func:`videogen.domain.endings.provider_failure_ending`), never ``generation_failed``.
2. One look at fal through :class:`FalPoller`: still queued → cancel there and end the job
   canceled; already cancelled (a concurrent cancel of the same job got there first) → settled as
   canceled; generating → its progress is recorded (the intent no longer counts, 409); finished
   with a video → completed (a video fal finished is never lost, 409).
3. Answer from the job as stored: canceled → 200 (so overlapping cancels all answer 200).

If this call dies or fal is unreachable after step 1, the intent stays: the poll loop or the
reconciler carries it out on its next look, and a retried cancel answers 200.

A cancel never counts against the user's request rate and is never ``429 rate_limited``
(docs/api.md lists 200, 404, 409 and 503 for it): a user whose budget submits spent must still be
able to stop a job. What bounds cancels is the jobs themselves (each was a submit that counted,
and a job is canceled once) and the API's own throttling.
"""

from __future__ import annotations

from videogen.domain.endings import USER_CANCELED
from videogen.domain.errors import (
    FalRejectedError,
    FalTransientError,
    MediaTransferError,
    NotCancelable,
    ServiceUnavailable,
    TransitionRejected,
)
from videogen.domain.models import CancelIntent, Job, JobStatus
from videogen.ports import JobStore
from videogen.services.completion import JobFinisher
from videogen.services.fal_poll import FalPoller


class CancelJob:
    def __init__(self, store: JobStore, poller: FalPoller, finisher: JobFinisher) -> None:
        self._store = store
        self._poller = poller
        self._finisher = finisher

    def run(self, job: Job) -> Job:
        """Cancel before generation starts: refund exactly once; NotCancelable once it runs or ended."""
        for _ in range(3):
            if job.status == JobStatus.CANCELED:
                return job
            if job.is_terminal or job.status == JobStatus.IN_PROGRESS:
                raise NotCancelable(f"The job is {job.status.value}")
            if job.cancel_requested == CancelIntent.DEADLINE:
                raise NotCancelable("The job is past its deadline")
            if job.fal is None:
                # Nothing at fal to tell: cancel only while no request is stored meanwhile.
                job = self._finisher.end(job, USER_CANCELED, unsubmitted=True)
                continue
            job = self._at_fal(job)
        raise NotCancelable(f"The job is {job.status.value}")

    def _at_fal(self, job: Job) -> Job:
        """Steps 1 and 2 for a job fal holds; returns the job as stored afterwards."""
        try:
            job = self._store.request_cancel(job.id, CancelIntent.USER)
        except TransitionRejected:  # it moved (generating, ended, the deadline's): decide again
            return self._store.get_job(job.id) or job
        try:
            self._poller.poll_and_settle(job)
        except (FalTransientError, FalRejectedError):
            raise ServiceUnavailable("The provider could not be reached; retry shortly") from None
        except MediaTransferError:
            raise NotCancelable("Generation has finished") from None  # its video is being stored
        done = self._store.get_job(job.id) or job
        if done.status == JobStatus.IN_PROGRESS:
            raise NotCancelable("Generation has started")
        if done.status == JobStatus.COMPLETED:
            raise NotCancelable("Generation has finished")
        return done
