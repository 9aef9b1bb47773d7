"""Jobs as the submit path creates them, for a test's 'given'."""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.fal import fal_request
from videogen.domain.limits import Usage
from videogen.domain.models import Balance, FalRequest, Job, JobStatus, Progress, new_id, rfc3339
from videogen.ports import JobStore

MODEL = "minimax-video-01"  # expected_s 180, max_s 1800, 5 credits


def make_job(
    status: JobStatus = JobStatus.QUEUED,
    *,
    request_id: str | None = None,
    fal: FalRequest | None = None,
    user_id: str = "user-1",
    credits: int = 5,
    deadline_in_s: float = 1800,
    **fields: Any,
) -> Job:
    """A job of ``user_id`` in ``status``; ``request_id`` gives it a stored fal request.
    ``deadline_in_s`` < 0 puts its deadline in the past."""
    now = rfc3339()
    if request_id is not None:
        fal = fal_request(request_id)
    values: dict[str, Any] = {
        "id": new_id("vid"),
        "user_id": user_id,
        "status": status,
        "model": MODEL,
        "input": {"prompt": "a cat surfing"},
        "credits_charged": credits,
        "created_at": now,
        "updated_at": now,
        "progress": Progress(message="queued"),
        "deadline_at": int(time.time() + deadline_in_s),
        "fal": fal,
        "submit_attempts": 1 if fal is not None else 0,
    }
    if status.is_terminal:
        values["completed_at"] = now
    return Job.model_validate({**values, **fields})


def next_usage(seen: Balance) -> Usage:
    """A valid next limit state after ``seen`` (a test writing jobs without the submit path's limits)."""
    return Usage(rl_tat_ms=(seen.rl_tat_ms or 0) + 1)


def write_jobs(store: JobStore, user_id: str, count: int, idem_ttl_s: int = 60) -> list[Job]:
    """``count`` queued jobs of ``user_id`` written along the submit path's transaction (its read,
    then ``create_job``), without the active-jobs cap; the user must hold their credits."""
    jobs = []
    for i in range(count):
        job = make_job(user_id=user_id, input={"prompt": f"job {i}"})
        seen, _, _ = store.read_for_submit(user_id, f"seed-{i}")
        store.create_job(
            job,
            idempotency_key=f"seed-{i}",
            fingerprint="fp",
            answer={},
            seen=seen,
            usage=next_usage(seen),
            max_active=10**6,
            idem_ttl_s=idem_ttl_s,
        )
        jobs.append(job)
    return jobs
