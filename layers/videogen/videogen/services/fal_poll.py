"""One look at fal for a submitted job: settle it if fal is done, else record its progress.

Shared by the Check task, the deadline's last look, user cancel and the reconciler; a user's cancel
recorded on the job (``cancel_requested``) is carried out by whichever of them looks first.
"""

from __future__ import annotations

import contextlib

from videogen.domain.endings import USER_CANCELED
from videogen.domain.errors import FalRejectedError, FalTransientError, TransitionRejected
from videogen.domain.models import CancelIntent, Job, JobStatus, Progress
from videogen.ports import FalGateway, FalResult, FalStatus, JobStore
from videogen.services.completion import JobFinisher


def progress_of(status: FalStatus) -> tuple[JobStatus, Progress]:
    """The job status and progress a fal status answer means (IN_QUEUE or IN_PROGRESS)."""
    if status.status == "IN_QUEUE":
        return JobStatus.SUBMITTED, Progress(queue_position=status.queue_position, message="waiting in queue")
    return JobStatus.IN_PROGRESS, Progress(message=status.last_message or "generating")


class FalPoller:
    def __init__(self, store: JobStore, fal: FalGateway, finisher: JobFinisher) -> None:
        self._store = store
        self._fal = fal
        self._finisher = finisher

    def poll_and_settle(self, job: Job, *, record: bool = True) -> bool:
        """Ask fal about the job once; finish it if fal is done. True when the job is terminal.
        ``record=False`` (the deadline's last look) writes no progress: a job about to be failed
        needs none, and no failure to write it may keep the job from its end.

        Raises what the ports raise (``FalTransientError``, ``FalRejectedError``,
        ``MediaTransferError``, ``StoreBusy``): each caller decides what a failed look means.
        """
        assert job.fal is not None
        status = self._fal.status(job.fal)
        if status.status == "COMPLETED":
            return self._settle_completed(job, status)
        if status.status == "IN_QUEUE" and job.cancel_requested == CancelIntent.USER:
            return self._carry_out_user_cancel(job, record)
        if not record:
            return False
        # Written on every look, changed or not: it keeps progress current AND is the job's
        # heartbeat in the Active index, so the reconciler only sees jobs nobody is watching.
        self.record_progress(job, status)
        return False

    def _settle_completed(self, job: Job, status: FalStatus) -> bool:
        assert job.fal is not None
        failure = status.failure
        if failure is None:
            return self._finisher.settle(job, self._fal.result(job.fal)).is_terminal
        # COMPLETED + error: the result holds fal's detail (a validation error names the input);
        # when it cannot be read, or oddly holds a video, the status's own error says what failed.
        try:
            result = self._fal.result(job.fal)
        except (FalTransientError, FalRejectedError):
            result = FalResult.failed(failure)
        return self._finisher.settle(job, result if not result.ok else FalResult.failed(failure)).is_terminal

    def _carry_out_user_cancel(self, job: Job, record: bool) -> bool:
        """The user asked to cancel and fal still holds the request in its queue: cancel it there,
        then end the job canceled. Whoever looks first does it — the cancel call itself, or the
        poll loop and the reconciler when that call died after recording the intent. fal's
        "cancelled" webhook may end the job first: settle maps it to the same ending."""
        assert job.fal is not None
        outcome = self._fal.cancel(job.fal)
        if outcome == "already_completed":  # it finished meanwhile: what it did wins (a video completes)
            status = self._fal.status(job.fal)
            if status.status != "COMPLETED":
                if record:
                    self.record_progress(job, status)
                return False
            return self._settle_completed(job, status)
        # "requested" (removed from the queue) or "not_found" (fal holds nothing to generate)
        return self._finisher.end(job, USER_CANCELED).is_terminal

    def record_progress(self, job: Job, status: FalStatus) -> None:
        """Write what fal says about a job it is still working on (lost races are fine)."""
        new_status, progress = progress_of(status)
        with contextlib.suppress(TransitionRejected):
            self._store.update_progress(job.id, new_status, progress)
