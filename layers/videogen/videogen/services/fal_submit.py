"""State machine task SubmitToFal: hand a queued job to fal, once."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from videogen import crash
from videogen.domain.endings import DEADLINE_EXCEEDED, failed, submit_rejected
from videogen.domain.errors import FalRejectedError, FalTransientError, TransitionRejected
from videogen.domain.models import FalRequest, Progress
from videogen.domain.registry import Registry
from videogen.domain.timing import past_deadline
from videogen.observability import count, logger
from videogen.ports import FalGateway, JobStore, VideoStore
from videogen.services.completion import JobFinisher
from videogen.services.uploads import UnsealedInput, inputs_for_fal


class SubmitToFal:
    def __init__(
        self,
        store: JobStore,
        registry: Registry,
        fal: FalGateway,
        finisher: JobFinisher,
        webhook_url_for: Callable[[str], str | None],
        videos: VideoStore,
    ) -> None:
        self._videos = videos
        self._store = store
        self._registry = registry
        self._fal = fal
        self._finisher = finisher
        self._webhook_url_for = webhook_url_for

    def run(self, job_id: str) -> dict[str, bool]:
        """Hand the job to fal once. Transient fal errors raise FalTransientError (the state
        machine retries with backoff); a rejected request fails the job with a refund.
        ``done``: nothing is left for the poll loop."""
        job = self._store.get_job(job_id)
        if job is None or job.is_terminal:
            return {"done": True}
        if job.fal is not None:  # a retry after the request id was stored
            return {"done": False}
        if past_deadline(job):  # started too late: never pay fal for it
            self._finisher.end(job, DEADLINE_EXCEEDED)
            return {"done": True}
        try:
            job = self._store.record_submit_attempt(job_id)
        except TransitionRejected:
            latest = self._store.get_job(job_id)
            return {"done": latest is None or latest.is_terminal}
        if job.submit_attempts > 1:
            # An earlier attempt may have reached fal (its call went out and the answer was lost,
            # or its task died after the call); its request id is lost. fal has no idempotency
            # key, so this submits again (see README: "a lost request id"). An attempt fal
            # refused is taken back below, so a plain retry after a 429/503 is not counted.
            logger.warning("resubmitting to fal", extra={"job_id": job_id, "attempt": job.submit_attempts})
            count("FalResubmitted")
        spec = self._registry.for_job(job.model)
        try:
            payload = inputs_for_fal(job, spec, self._videos)  # upload:<id> → a presigned GET of it
            request = self._fal.submit(spec.fal_endpoint, payload, self._webhook_url_for(job_id))
        except FalTransientError as exc:
            if exc.refused:  # fal took nothing: this attempt never reached it
                with contextlib.suppress(TransitionRejected):
                    self._store.record_submit_refused(job_id)
            raise
        except UnsealedInput as exc:  # accepted before inputs were sealed: never send unchecked bytes
            with contextlib.suppress(TransitionRejected):
                self._store.record_submit_refused(job_id)
            self._finisher.fail(job, "invalid_input", f"{exc}: upload the file again and submit a new request")
            return {"done": True}
        except FalRejectedError as exc:
            count("FalSubmitRejected")
            self._finisher.end(job, failed(submit_rejected(exc.failure, exc.status)))
            return {"done": True}
        crash.point(crash.AFTER_FAL_SUBMIT)
        try:
            self._store.mark_submitted(job_id, request, Progress(message="waiting in queue"))
        except TransitionRejected:
            # The job moved on without this request (canceled, finished, or another run of this
            # task stored its own): nobody will ever read this generation, so stop paying for it.
            latest = self._store.get_job(job_id)
            self._cancel_orphan(job_id, request)
            count("FalOrphanCanceled")
            return {"done": latest is None or latest.is_terminal}
        count("FalSubmitted")
        return {"done": False}

    def _cancel_orphan(self, job_id: str, request: FalRequest) -> None:
        try:
            self._fal.cancel(request)
        except (FalTransientError, FalRejectedError):
            logger.warning("could not cancel a request at fal", extra={"job_id": job_id})
