"""State machine task Check: one round of the poll loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from videogen.domain.errors import FalRejectedError, FalTransientError, MediaTransferError, StoreBusy
from videogen.domain.timing import next_wait_s, past_deadline
from videogen.observability import logger
from videogen.ports import JobStore
from videogen.services.fal_poll import FalPoller


class CheckJob:
    def __init__(self, store: JobStore, poller: FalPoller) -> None:
        self._store = store
        self._poller = poller

    def run(self, job_id: str, attempt: int, timing: Mapping[str, Any]) -> dict[str, Any]:
        """Terminal → done (no fal call); past the deadline → expired; else look at fal once.
        Returns ``{done, expired, next_wait_s}`` for the state machine's Choice and Wait."""
        pending = {"done": False, "expired": False, "next_wait_s": next_wait_s(timing, attempt)}
        job = self._store.get_job(job_id)
        if job is None or job.is_terminal:
            return {**pending, "done": True}  # the webhook (or someone) won: no call to fal
        if past_deadline(job):
            return {**pending, "expired": True}
        if job.fal is None:
            return pending
        try:
            if self._poller.poll_and_settle(job):
                return {**pending, "done": True}
        except (FalTransientError, FalRejectedError, MediaTransferError, StoreBusy) as exc:
            # Not this round: fal or the CDN is unreachable, or our key is refused. The loop asks
            # again; the deadline bounds it.
            logger.warning("check could not finish this round", extra={"job_id": job_id, "error": type(exc).__name__})
        return pending
