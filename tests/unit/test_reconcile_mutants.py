"""The Reconciler (services/reconcile.py) as operators see it: the index query's cutoff, the exact
quiet-allowance bound, the job each touch sends to the back (its ``updated_at`` moves), the
failure messages stored on the job, and the pass's metrics and log lines.

Complements test_reconciler.py and test_reconcile_branches.py (outcomes and side effects).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fakes import in_queue
from tests.fakes.system import GRACE_S, System
from videogen.domain.errors import FalRejectedError, FalTransientError
from videogen.domain.models import Job, JobStatus, rfc3339
from videogen.domain.timing import POLL_MAX_S
from videogen.observability import logger

Counted = Callable[[str], int]
Logged = Callable[..., list[tuple[Any, ...]]]
LATER = 10_000
WRITTEN = 1_900_000_000.0  # a whole second: "now - updated_at" is exact
TOUCHED = WRITTEN + 5_000  # the fake store's clock while the pass runs


def at(epoch: float) -> str:
    return rfc3339(datetime.fromtimestamp(epoch, UTC))


def stale(system: System, status: JobStatus = JobStatus.QUEUED, **fields: Any) -> Job:
    """A job last written at WRITTEN; the store's clock then moves to TOUCHED."""
    job = system.given_job(status, **fields)
    job = system.store.set_job(job.id, updated_at=at(WRITTEN))
    system.store.clock = lambda: TOUCHED
    return job


def run(system: System) -> dict[str, int]:
    return system.reconciler.run(now=WRITTEN + LATER)


def test_the_index_is_read_up_to_now_minus_the_grace_a_batch_at_a_time(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, int]] = []
    read = system.store.find_stale_active

    def find_stale_active(cutoff: str, limit: int) -> list[Job]:
        asked.append((cutoff, limit))
        return read(cutoff, limit)

    monkeypatch.setattr(system.store, "find_stale_active", find_stale_active)
    system.reconciler.run(now=WRITTEN)
    assert asked == [(at(WRITTEN - GRACE_S), 50)]


@pytest.mark.parametrize(("short_s", "found"), [(0, 1), (1, 0)])
def test_a_job_quiet_exactly_its_allowance_counts_as_stuck(system: System, short_s: int, found: int) -> None:
    job = stale(system, JobStatus.SUBMITTED, request_id="req-1")
    allowance = system.reconciler.quiet_allowance_s(job)
    assert allowance > GRACE_S  # past the index's cutoff: only the allowance decides
    system.fal.script_status("req-1", in_queue(3))
    assert system.reconciler.run(now=WRITTEN + allowance - short_s)["found"] == found


def test_a_job_of_a_model_the_registry_does_not_know_gets_the_allowance_of_no_expected_time(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", model="retired-model")
    assert system.reconciler.quiet_allowance_s(job) == max(GRACE_S, 2 * POLL_MAX_S)


def test_each_repair_logs_under_its_job_s_correlation_id(system: System) -> None:
    job = stale(system)
    system.workflow.executions[job.id] = "RUNNING"
    seen: list[str | None] = []
    system.store.before("touch", lambda: seen.append(logger.get_correlation_id()))
    assert run(system) == {"found": 1, "running": 1}
    assert seen == [job.id] and logger.get_correlation_id() is None


def test_a_deferred_repair_is_logged_with_its_job_and_error_and_sent_to_the_back(
    system: System, logged: Logged, counted: Counted
) -> None:
    job = stale(system, JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalTransientError("timeout"))
    assert run(system) == {"found": 1, "retry_later": 1}
    assert logged("repair deferred", "job_id", "error") == [(job.id, "FalTransientError")]
    assert system.job(job.id).updated_at == at(TOUCHED)
    assert counted("Reconcile_retry_later") == 1


def test_a_failed_repair_is_logged_and_sent_to_the_back(system: System, logged: Logged, counted: Counted) -> None:
    job = stale(system)
    system.workflow.fail_state(job.id, RuntimeError("unexpected"))
    assert run(system) == {"found": 1, "error": 1}
    assert len(logged("repair failed")) == 1
    assert system.job(job.id).updated_at == at(TOUCHED) and counted("Reconcile_error") == 1


@pytest.mark.parametrize(("state", "outcome"), [("MISSING", "execution_started"), ("RUNNING", "running")])
def test_an_unsubmitted_job_left_to_its_execution_goes_to_the_back(system: System, state: str, outcome: str) -> None:
    job = stale(system)
    if state == "RUNNING":
        system.workflow.executions[job.id] = "RUNNING"
    assert run(system) == {"found": 1, outcome: 1}
    assert system.job(job.id).updated_at == at(TOUCHED)


def test_a_job_fal_still_holds_goes_to_the_back(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    job = stale(system, JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_queue(3))
    touched: list[str] = []
    touch = system.store.touch

    def recorded_touch(job_id: str) -> None:
        touched.append(job_id)
        touch(job_id)

    monkeypatch.setattr(system.store, "touch", recorded_touch)
    assert run(system) == {"found": 1, "polled_orphan": 1}
    assert touched == [job.id] and system.job(job.id).updated_at == at(TOUCHED)


def test_an_unsubmitted_job_whose_execution_ended_stores_why_it_failed(system: System) -> None:
    job = stale(system)
    system.workflow.executions[job.id] = "FAILED"
    assert run(system) == {"found": 1, "failed_refunded": 1}
    error = system.job(job.id).error
    assert error is not None and (error.code, error.message) == (
        "submit_failed",
        "the job could not be handed to the provider",
    )


def test_a_request_fal_lost_stores_why_it_failed(system: System) -> None:
    job = stale(system, JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalRejectedError(404, None, "not found"))
    assert run(system) == {"found": 1, "failed_refunded": 1}
    error = system.job(job.id).error
    assert error is not None and (error.code, error.message) == (
        "expired",
        "the provider no longer holds the request",
    )


def test_a_pass_counts_what_it_found_and_logs_its_outcomes(system: System, logged: Logged, counted: Counted) -> None:
    jobs = [system.given_job() for _ in range(2)]
    system.workflow.executions[jobs[0].id] = "RUNNING"
    outcomes = system.reconciler.run(now=time.time() + LATER)
    assert outcomes == {"found": 2, "running": 1, "execution_started": 1}
    assert counted("ReconcileFound") == 2
    assert (counted("Reconcile_running"), counted("Reconcile_execution_started")) == (1, 1)
    assert logged("reconcile pass", "outcomes") == [(outcomes,)]
