"""The job's clock, in one place: its deadline, the poll loop's waits and bounds, and how long a
job may stay quiet before the reconciler counts it as stuck.

Everything scales with ``time_scale`` (< 1 for local runs). The Step Functions definition reads
the waits and bounds from the execution input built here; the Check task computes the next wait
here; every actor asks :func:`past_deadline`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from videogen.domain.models import Job
from videogen.domain.registry import ModelSpec

POLL_BASE_S = 10  # first wait between two checks (after the model's expected time)
POLL_MAX_S = 60  # the waits grow by POLL_FACTOR up to this cap
POLL_FACTOR = 1.5
# One poll cycle costs 11 history events (measured: make bench), so at most this many checks keep
# an execution near 11k events, under the 25,000-event limit even with task retries.
MAX_CHECKS = 1000


def deadline_for(spec: ModelSpec, time_scale: float, now: float | None = None) -> int:
    """Epoch seconds after which a new job of ``spec`` is failed and refunded."""
    return int((time.time() if now is None else now) + spec.max_s * time_scale)


def past_deadline(job: Job, now: float | None = None) -> bool:
    """THE deadline test: the job has a deadline and the wall clock passed it."""
    return bool(job.deadline_at) and (time.time() if now is None else now) >= job.deadline_at


def execution_input(job: Job, spec: ModelSpec, time_scale: float) -> dict[str, Any]:
    """The job's execution input: every wait and bound of the poll loop, scaled for local runs."""
    poll_base = max(1, round(POLL_BASE_S * time_scale))
    poll_max = max(poll_base, round(POLL_MAX_S * time_scale))
    return {
        "job_id": job.id,
        "attempt": 0,
        "timing": {
            "initial_wait_s": max(1, round(spec.expected_s * time_scale)),
            "poll_base_s": poll_base,
            "poll_max_s": poll_max,
            "poll_factor": POLL_FACTOR,
            "deadline_at": job.deadline_at,
            # enough checks to reach the deadline at the smallest interval, plus slack
            "max_checks": min(MAX_CHECKS, math.ceil(spec.max_s * time_scale / poll_base) + 10),
        },
    }


def next_wait_s(timing: Mapping[str, Any], attempt: int) -> int:
    """The wait before check ``attempt + 1``, from the execution input's ``timing``."""
    base = int(timing.get("poll_base_s", POLL_BASE_S))
    cap = int(timing.get("poll_max_s", POLL_MAX_S))
    factor = float(timing.get("poll_factor", POLL_FACTOR))
    return int(min(cap, max(1, round(base * factor ** min(attempt, 32)))))


def quiet_allowance_s(job: Job, expected_s: float, grace_s: float, time_scale: float) -> float:
    """How long this job may go without a write before it counts as stuck.

    A healthy execution writes the job on every Check (its heartbeat), and the longest gap
    between two checks is the model's expected time (the first wait) or the poll cap; twice
    that, or the grace when longer. Queued jobs get the grace only: they move within seconds.
    Terminal jobs owing their event count once the grace passed.
    """
    if job.is_terminal or job.fal is None:
        return grace_s
    return max(grace_s, 2 * max(expected_s, POLL_MAX_S) * time_scale)
