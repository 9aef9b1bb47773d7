"""The reconciler: finds jobs that stopped moving and drives each to its right end.

Runs on an EventBridge schedule. Reads only the sparse ``Active`` index (no table
scans), handles a bounded batch per run (the rest waits for the next run), and
uses the same completion / failure / refund code as the webhook and the poll loop,
so it is safe next to them and next to another reconciler. Then the Google Play passes
(``purchases``): the consumes a crash or an outage left owed (never granted again), and the voided
purchases list for voids whose push never came (clawed back once).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from videogen.domain.endings import FailureCode, failed, failure_of
from videogen.domain.errors import (
    FalRejectedError,
    FalTransientError,
    MediaTransferError,
    ModelNotFound,
    StoreBusy,
)
from videogen.domain.models import Job, rfc3339
from videogen.domain.registry import Registry
from videogen.domain.timing import execution_input, past_deadline, quiet_allowance_s
from videogen.observability import count, logger
from videogen.ports import ExecutionState, JobStore, Workflow
from videogen.services.completion import JobFinisher
from videogen.services.expiry import ExpireJob
from videogen.services.fal_poll import FalPoller


class Reconciler:
    def __init__(
        self,
        store: JobStore,
        registry: Registry,
        workflow: Workflow,
        poller: FalPoller,
        expire: ExpireJob,
        finisher: JobFinisher,
        *,
        grace_s: float,
        batch: int,
        time_scale: float,
        purchases: Callable[[str, int], dict[str, int]] | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._workflow = workflow
        self._poller = poller
        self._expire = expire
        self._finisher = finisher
        self._grace_s = grace_s
        self._batch = batch
        self._time_scale = time_scale
        self._purchases = purchases  # PurchaseService.reconcile: Play consumes owed, voids whose push never came

    def quiet_allowance_s(self, job: Job) -> float:
        """How long this job may go without a write before it counts as stuck (domain.timing)."""
        try:
            expected = self._registry.for_job(job.model).expected_s
        except ModelNotFound:
            expected = 0
        return quiet_allowance_s(job, expected, self._grace_s, self._time_scale)

    def run(self, now: float | None = None) -> dict[str, int]:
        """One pass: at most ``batch`` stuck jobs. Returns what was found and done."""
        now = time.time() if now is None else now
        cutoff = rfc3339(datetime.fromtimestamp(now - self._grace_s, UTC))
        candidates = self._store.find_stale_active(cutoff, self._batch)
        jobs = [j for j in candidates if now - _epoch(j.updated_at) >= self.quiet_allowance_s(j)]
        outcomes: Counter[str] = Counter(found=len(jobs))
        for job in jobs:
            logger.set_correlation_id(job.id)
            try:
                outcome = self.repair(job)
            except (FalTransientError, MediaTransferError, StoreBusy) as exc:
                outcome = "retry_later"
                logger.warning("repair deferred", extra={"job_id": job.id, "error": type(exc).__name__})
                self._store.touch(job.id)
            except Exception:  # noqa: BLE001 - one bad job must not stop the pass; it goes to the back
                outcome = "error"
                logger.exception("repair failed")
                self._store.touch(job.id)
            outcomes[outcome] += 1
            count(f"Reconcile_{outcome}")
        logger.set_correlation_id(None)
        if self._purchases is not None:
            try:
                outcomes.update(self._purchases(cutoff, self._batch))
            except Exception:  # noqa: BLE001 - the Play passes wait for the next run; the jobs' repairs stand
                outcomes["purchases_error"] += 1
                logger.exception("play purchase passes failed")
        count("ReconcileFound", len(jobs))
        logger.info("reconcile pass", extra={"outcomes": dict(outcomes)})
        return dict(outcomes)

    def repair(self, job: Job) -> str:
        """Drive one stuck job towards its end. Returns the outcome's name (a metric)."""
        if job.is_terminal:
            return self._publish_owed_event(job)
        if past_deadline(job):  # the wall clock, not the pass's start
            self._expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
            return "expired"
        state = self._workflow.state(job.id)
        if job.fal is None:
            return self._restart_or_fail_unsubmitted(job, state)
        return self._poll_at_fal(job, state)

    def _publish_owed_event(self, job: Job) -> str:
        if job.event_pending:
            self._finisher.publish(job)
            return "event_published"
        return "already_done"

    def _restart_or_fail_unsubmitted(self, job: Job, state: ExecutionState) -> str:
        """A job that never reached fal: start its missing execution, or fail it if that ended."""
        if state == "MISSING":
            spec = self._registry.for_job(job.model)
            self._workflow.start(job.id, execution_input(job, spec, self._time_scale))
            self._store.touch(job.id)  # to the back of the queue: the next run looks at others first
            return "execution_started"
        if state == "RUNNING":
            self._store.touch(job.id)
            return "running"
        # The execution ended but the job never reached fal: nothing will move it again.
        self._finisher.end(
            job, failed(failure_of(FailureCode.SUBMIT_FAILED, "the job could not be handed to the provider"))
        )
        return "failed_refunded"

    def _poll_at_fal(self, job: Job, state: ExecutionState) -> str:
        """A job at fal nobody watched: look once, settle it if done; a request fal lost fails."""
        try:
            if self._poller.poll_and_settle(job):
                return "finished"
        except FalRejectedError as exc:
            if exc.status not in (404, 410):
                raise FalTransientError(f"fal refused the status call ({exc.status})") from None
            # fal does not know the request any more (lost, expired result): nothing to wait for.
            self._finisher.end(job, failed(failure_of(FailureCode.EXPIRED, "the provider no longer holds the request")))
            return "failed_refunded"
        # fal is still working. A running execution keeps polling; if it died, the reconciler
        # polls on its next passes until the job's deadline.
        self._store.touch(job.id)
        return "running" if state == "RUNNING" else "polled_orphan"


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
