"""One look at fal for a submitted job: settle it if fal is done, else record its progress.

Shared by the Check task, the deadline's last look, user cancel and the reconciler.
"""

from __future__ import annotations

import contextlib

from videogen.domain.errors import TransitionRejected
from videogen.domain.models import Job, JobStatus, Progress
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

    def poll_and_settle(self, job: Job) -> bool:
        """Ask fal about the job once; finish it if fal is done. True when the job is terminal.

        Raises what the ports raise (``FalTransientError``, ``FalRejectedError``,
        ``MediaTransferError``, ``StoreBusy``): each caller decides what a failed look means.
        """
        assert job.fal is not None
        status = self._fal.status(job.fal)
        if status.status == "COMPLETED":
            result = FalResult(error=status.error) if status.error else self._fal.result(job.fal)
            return self._finisher.settle(job, result).is_terminal
        # Written on every look, changed or not: it keeps progress current AND is the job's
        # heartbeat in the Active index, so the reconciler only sees jobs nobody is watching.
        self.record_progress(job, status)
        return False

    def record_progress(self, job: Job, status: FalStatus) -> None:
        """Write what fal says about a job it is still working on (lost races are fine)."""
        new_status, progress = progress_of(status)
        with contextlib.suppress(TransitionRejected):
            self._store.update_progress(job.id, new_status, progress)
