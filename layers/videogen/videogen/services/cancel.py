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

Step 1 is the cancel that will reach fal, so it counts against the user's request rate
(videogen.domain.limits, the budget submits share): the intent and the user's new rate state are
one transaction, decided on the balance item read with the job (``read_for_cancel``). A cancel
answered from the stored job (canceled: 200; generating or ended: 409; not found: 404) or one of a
job fal never got (refunded at once, at most once) is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from videogen.domain.endings import USER_CANCELED
from videogen.domain.errors import (
    BalanceChanged,
    ConcurrentUpdate,
    FalRejectedError,
    FalTransientError,
    MediaTransferError,
    NotCancelable,
    ServiceUnavailable,
    TransitionRejected,
)
from videogen.domain.limits import UserLimits, admit
from videogen.domain.models import Balance, CancelIntent, Job, JobStatus
from videogen.ports import JobStore
from videogen.services.completion import JobFinisher
from videogen.services.fal_poll import FalPoller

MAX_OPTIMISTIC_ATTEMPTS = 10


class CancelJob:
    def __init__(
        self,
        store: JobStore,
        poller: FalPoller,
        finisher: JobFinisher,
        limits: UserLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._poller = poller
        self._finisher = finisher
        self._limits = limits or UserLimits()
        self._clock = clock

    def run(self, job: Job, seen: Balance | None = None) -> Job:
        """Cancel before generation starts: refund exactly once; NotCancelable once it runs or ended.
        ``seen``: the user's balance item as read with the job (read here only if not given and
        the cancel is one that counts)."""
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
            job = self._at_fal(job, seen)
            seen = None  # spent (or stale): a further counted attempt reads it again
        raise NotCancelable(f"The job is {job.status.value}")

    def _record_intent(self, job: Job, seen: Balance | None) -> Job:
        """Step 1, counted: the intent and the user's new rate state in one write, decided on
        ``seen``; RateLimited when over (nothing written). Raises TransitionRejected."""
        for _ in range(MAX_OPTIMISTIC_ATTEMPTS):
            if seen is None:
                seen = self._store.get_balance(job.user_id)
            usage = admit(self._limits, seen, int(self._clock() * 1000))
            try:
                return self._store.request_user_cancel(job, seen, usage)
            except BalanceChanged:  # another request of the user counted meanwhile: decide again
                seen = None
        raise ConcurrentUpdate("Too many concurrent changes to this account; retry shortly")

    def _at_fal(self, job: Job, seen: Balance | None) -> Job:
        """Steps 1 and 2 for a job fal holds; returns the job as stored afterwards."""
        try:
            job = self._record_intent(job, seen)
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
