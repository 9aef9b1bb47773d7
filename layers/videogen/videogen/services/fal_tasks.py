"""The state machine's tasks: SubmitToFal, Check, and fail/expire. Plus user cancel.

Each reads the job first and does nothing when it is already terminal; each
state change is conditional; each outcome goes through :class:`JobFinisher`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from videogen import crash
from videogen.adapters.dynamo import DynamoStore
from videogen.adapters.fal import FalRejectedError, FalTransientError
from videogen.domain.errors import (
    MediaTransferError,
    NotCancelable,
    ServiceUnavailable,
    StoreBusy,
    TransitionRejected,
)
from videogen.domain.models import FalRequest, Job, JobStatus, Progress
from videogen.domain.registry import Registry
from videogen.observability import count, logger
from videogen.ports import FalGateway, FalResult, FalStatus
from videogen.services.completion import JobFinisher

# What a failed job's error.message says for the failure codes of the workflow.
FAILURE_MESSAGES = {
    "deadline_exceeded": "the provider did not finish in time",
    "submit_failed": "the provider could not accept the request",
}


def webhook_url(base_url: str, token: str, job_id: str) -> str | None:
    """Where fal reports back: our webhook, with the deployment token and the job id."""
    if not base_url:
        return None  # no public URL (local run against the real fal): the poll loop finishes jobs
    return f"{base_url.rstrip('/')}/webhooks/fal?{urlencode({'token': token, 'job_id': job_id})}"


def next_wait_s(timing: dict[str, Any], attempt: int) -> int:
    base = int(timing.get("poll_base_s", 10))
    cap = int(timing.get("poll_max_s", 60))
    factor = float(timing.get("poll_factor", 1.5))
    return int(min(cap, max(1, round(base * factor ** min(attempt, 32)))))


def progress_of(status: FalStatus) -> tuple[JobStatus, Progress]:
    if status.status == "IN_QUEUE":
        return JobStatus.SUBMITTED, Progress(queue_position=status.queue_position, message="waiting in queue")
    return JobStatus.IN_PROGRESS, Progress(message=status.last_message or "generating")


class FalTasks:
    def __init__(
        self,
        store: DynamoStore,
        registry: Registry,
        fal: FalGateway,
        finisher: JobFinisher,
        webhook_url_for: Callable[[str], str | None],
    ) -> None:
        self._store = store
        self._registry = registry
        self._fal = fal
        self._finisher = finisher
        self._webhook_url_for = webhook_url_for

    # --- SubmitToFal -------------------------------------------------------------------------

    def submit(self, job_id: str) -> dict[str, bool]:
        """Hand the job to fal once. Transient fal errors raise FalTransientError (the state
        machine retries with backoff); a rejected request fails the job with a refund."""
        job = self._store.get_job(job_id)
        if job is None or job.is_terminal:
            return {"done": True}
        if job.fal is not None:  # a retry after the request id was stored
            return {"done": False}
        if job.deadline_at and time.time() >= job.deadline_at:  # started too late: never pay fal for it
            self._finisher.fail(job, "deadline_exceeded", FAILURE_MESSAGES["deadline_exceeded"])
            return {"done": True}
        try:
            job = self._store.record_submit_attempt(job_id)
        except TransitionRejected:
            latest = self._store.get_job(job_id)
            return {"done": latest is None or latest.is_terminal}
        if job.submit_attempts > 1:
            # An earlier attempt died after calling fal; its request id may be lost. fal has no
            # idempotency key, so this submits again (see README: "a lost request id").
            logger.warning("resubmitting to fal", extra={"job_id": job_id, "attempt": job.submit_attempts})
            count("FalResubmitted")
        spec = self._registry.for_job(job.model)
        try:
            request = self._fal.submit(spec.fal_endpoint, job.input, self._webhook_url_for(job_id))
        except FalRejectedError as exc:
            count("FalSubmitRejected")
            self._finisher.fail(job, "provider_rejected", f"fal rejected the request ({exc.status})")
            return {"done": True}
        crash.point(crash.AFTER_FAL_SUBMIT)
        try:
            self._store.mark_submitted(job_id, request, Progress(message="waiting in queue"))
        except TransitionRejected:
            # The job moved on without this request (canceled, finished, or another run of this
            # task stored its own): nobody will ever read this generation, so stop paying for it.
            latest = self._store.get_job(job_id)
            self._best_effort_cancel(job_id, request)
            count("FalOrphanCanceled")
            return {"done": latest is None or latest.is_terminal}
        count("FalSubmitted")
        return {"done": False}

    def _best_effort_cancel(self, job_id: str, request: FalRequest) -> None:
        try:
            self._fal.cancel(request)
        except (FalTransientError, FalRejectedError):
            logger.warning("could not cancel a request at fal", extra={"job_id": job_id})

    # --- Check -------------------------------------------------------------------------------

    def check(self, job_id: str, attempt: int, timing: dict[str, Any]) -> dict[str, Any]:
        pending = {"done": False, "expired": False, "next_wait_s": next_wait_s(timing, attempt)}
        job = self._store.get_job(job_id)
        if job is None or job.is_terminal:
            return {**pending, "done": True}  # the webhook (or someone) won: no call to fal
        if job.deadline_at and time.time() >= job.deadline_at:
            return {**pending, "expired": True}
        if job.fal is None:
            return pending
        try:
            if self.poll(job):
                return {**pending, "done": True}
        except (FalTransientError, FalRejectedError, MediaTransferError, StoreBusy) as exc:
            # Not this round: fal or the CDN is unreachable, or our key is refused. The loop asks
            # again; the deadline bounds it.
            logger.warning("check could not finish this round", extra={"job_id": job_id, "error": type(exc).__name__})
        return pending

    def poll(self, job: Job) -> bool:
        """Ask fal about the job once; finish it if fal is done. True when the job is terminal."""
        assert job.fal is not None
        status = self._fal.status(job.fal)
        if status.status == "COMPLETED":
            result = FalResult(error=status.error) if status.error else self._fal.result(job.fal)
            return self._finisher.settle(job, result).is_terminal
        new_status, progress = progress_of(status)
        # Written on every check, changed or not: it keeps progress current AND is the job's
        # heartbeat in the Active index, so the reconciler only sees jobs nobody is watching.
        with contextlib.suppress(TransitionRejected):
            self._store.update_progress(job.id, new_status, progress)
        return False

    # --- deadline / failure ------------------------------------------------------------------

    def expire(self, job_id: str, reason: str, cancel_at_fal: bool, cause: str | None = None) -> Job | None:
        job = self._store.get_job(job_id)
        if job is None or job.is_terminal:
            return job
        if cancel_at_fal and job.fal is not None:
            try:
                if self.poll(job):  # last look: it may have just finished
                    return self._store.get_job(job_id)
                self._fal.cancel(job.fal)
            except (MediaTransferError, StoreBusy):
                raise  # fal finished but storing it broke: retry (state machine, then reconciler), never fail
            except (FalTransientError, FalRejectedError) as exc:
                logger.warning(
                    "last look / cancel at fal failed", extra={"job_id": job_id, "error": type(exc).__name__}
                )
        if cause:
            logger.info("failing job", extra={"job_id": job_id, "cause": cause[:200]})
        return self._finisher.fail(job, reason, FAILURE_MESSAGES.get(reason, reason))

    # --- user cancel -------------------------------------------------------------------------

    def cancel(self, job: Job) -> Job:
        """Cancel before generation starts: refund exactly once; 409 once it runs or ended."""
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
                            self._record_progress(job, status)
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

    def _record_progress(self, job: Job, status: FalStatus) -> None:
        new_status, progress = progress_of(status)
        with contextlib.suppress(TransitionRejected):
            self._store.update_progress(job.id, new_status, progress)
