"""The job's clock (domain/timing.py): deadline, poll waits, execution input, quiet allowance."""

from __future__ import annotations

from videogen.domain.models import FalRequest, Job, JobStatus, progress_allowed_from
from videogen.domain.registry import Registry
from videogen.domain.timing import (
    MAX_CHECKS,
    deadline_for,
    execution_input,
    next_wait_s,
    past_deadline,
    quiet_allowance_s,
)

SPEC = Registry().get("minimax-video-01")
REQ = FalRequest(request_id="r", status_url="s", response_url="r", cancel_url="c")


def _job(status: JobStatus = JobStatus.SUBMITTED, deadline_at: int = 0, fal: FalRequest | None = REQ) -> Job:
    return Job(
        id="vid_1",
        user_id="u",
        status=status,
        model=SPEC.id,
        input={},
        credits_charged=1,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
        deadline_at=deadline_at,
        fal=fal,
    )


def test_the_deadline_is_passed_from_its_second_on_and_never_without_one():
    assert not past_deadline(_job(deadline_at=0), now=10**12)
    assert not past_deadline(_job(deadline_at=100), now=99.9)
    assert past_deadline(_job(deadline_at=100), now=100)
    assert past_deadline(_job(deadline_at=100), now=101)


def test_a_new_jobs_deadline_is_the_models_maximum_time_scaled():
    assert deadline_for(SPEC, 1.0, now=1000.0) == 1000 + SPEC.max_s
    assert deadline_for(SPEC, 0.01, now=1000.0) == int(1000 + SPEC.max_s * 0.01)


def test_execution_input_bounds_the_loop_and_its_waits_match_the_check_task():
    job = _job(deadline_at=123)
    full = execution_input(job, SPEC, 1.0)
    assert full["job_id"] == "vid_1" and full["attempt"] == 0
    timing = full["timing"]
    assert timing["deadline_at"] == 123 and timing["initial_wait_s"] == SPEC.expected_s
    assert (timing["poll_base_s"], timing["poll_max_s"]) == (10, 60)
    assert 0 < timing["max_checks"] <= MAX_CHECKS
    # enough checks to reach the deadline even at the smallest interval
    assert timing["max_checks"] * timing["poll_base_s"] >= SPEC.max_s
    assert next_wait_s(timing, 0) == timing["poll_base_s"] and next_wait_s(timing, 99) == timing["poll_max_s"]
    tiny = execution_input(job, SPEC, 0.001)["timing"]
    assert tiny["initial_wait_s"] >= 1 and tiny["poll_base_s"] >= 1 and tiny["poll_max_s"] >= tiny["poll_base_s"]


def test_quiet_allowance_is_the_grace_unless_a_healthy_loop_may_be_quieter():
    assert quiet_allowance_s(_job(fal=None, status=JobStatus.QUEUED), 300, 120, 1.0) == 120
    assert quiet_allowance_s(_job(status=JobStatus.COMPLETED), 300, 120, 1.0) == 120
    assert quiet_allowance_s(_job(), 300, 120, 1.0) == 600  # twice the first wait
    assert quiet_allowance_s(_job(), 10, 100, 1.0) == 120  # twice the poll cap
    assert quiet_allowance_s(_job(), 300, 120, 0.01) == 120  # scaled down: the grace wins


def test_progress_reports_move_forward_only_and_never_from_queued():
    assert progress_allowed_from(JobStatus.SUBMITTED) == {JobStatus.SUBMITTED}
    assert progress_allowed_from(JobStatus.IN_PROGRESS) == {JobStatus.SUBMITTED, JobStatus.IN_PROGRESS}
