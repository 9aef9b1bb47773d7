"""ExpireJob's looks after its cancel at fal write no progress (mutation survivors)."""

from __future__ import annotations

from tests.fakes import in_progress
from tests.fakes.system import System
from videogen.domain.models import JobStatus


def test_given_fal_says_already_completed_but_still_works_then_no_progress_is_written(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", in_progress(), in_progress(), in_progress())
    system.fal.script_cancel("req-1", "already_completed")
    failed = system.expire.run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.error is not None and failed.error.code == "expired"
    assert system.fal.count("status") == 2 and "update_progress" not in system.store.calls
