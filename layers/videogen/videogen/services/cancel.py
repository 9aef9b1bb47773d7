"""POST /v1/videos/{id}/cancel: cancel a job before generation starts, refunding it once."""

from __future__ import annotations

from videogen.domain.errors import FalRejectedError, FalTransientError, NotCancelable, ServiceUnavailable
from videogen.domain.models import Job, JobStatus
from videogen.ports import FalGateway
from videogen.services.completion import JobFinisher
from videogen.services.fal_poll import FalPoller


class CancelJob:
    def __init__(self, fal: FalGateway, poller: FalPoller, finisher: JobFinisher) -> None:
        self._fal = fal
        self._poller = poller
        self._finisher = finisher

    def run(self, job: Job) -> Job:
        """Cancel before generation starts: refund exactly once; NotCancelable once it runs or ended."""
        for _ in range(3):
            if job.status == JobStatus.CANCELED:
                return job
            if job.is_terminal or job.status == JobStatus.IN_PROGRESS:
                raise NotCancelable(f"The job is {job.status.value}")
            if job.fal is not None:
                try:
                    status = self._fal.status(job.fal)
                    if status.status != "IN_QUEUE":
                        if status.status == "IN_PROGRESS":
                            self._poller.record_progress(job, status)
                        raise NotCancelable("Generation has started")
                    outcome = self._fal.cancel(job.fal)
                except (FalTransientError, FalRejectedError):
                    raise ServiceUnavailable("The provider could not be reached; retry shortly") from None
                if outcome == "already_completed":
                    raise NotCancelable("Generation has finished")
            done = self._finisher.fail(
                job, "canceled", "canceled by the user", status=JobStatus.CANCELED, unsubmitted=job.fal is None
            )
            if done.status == JobStatus.CANCELED:
                return done
            job = done  # it moved (e.g. queued → submitted): decide again on the fresh state
        raise NotCancelable(f"The job is {job.status.value}")
