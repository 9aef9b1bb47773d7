"""The chaos run's audit: pure functions of the :class:`~devstack.chaos.evidence.Evidence`.

:func:`violations` returns every kind (:data:`KINDS`: the table/bucket/event invariants of
:mod:`devstack.invariants` first, then the run's own) with the problems found under it; any
problem fails the run. The unit tests (tests/unit/test_chaos_audit.py) build evidence with each
violation in it and assert it is reported.

What the clients saw, judged precisely (docs in devstack/chaos/__init__.py):

* a submission's *final answer* is the last answer of its retry loop (5xx / 409 / no answer are
  retried with the same key, up to ``MAX_ATTEMPTS``); intermediate errors are fine;
* every final answer of one key (its copies sent at once, its later replay) must be the same
  status, and every 202 of a key must name one job with byte-identical bodies;
* a final answer that is still an error (the client gave up) is a violation, whether or not a job
  was charged; a charged job whose key never got a 202 is one too.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from devstack.chaos.driver import RETRYABLE
from devstack.chaos.evidence import Evidence
from devstack.chaos.plan import SIM_FAULT_KINDS
from devstack.invariants import KINDS as TABLE_KINDS
from devstack.invariants import TERMINAL, Audit, audit_items
from videogen.crash import ALL as CRASH_POINTS

CANCELLED_TEXT = "Request was cancelled"  # fal's (and the simulator's) error for a request a cancel removed
PAYLOAD_ERROR_TEXT = "not JSON serializable"  # the simulator's payload_error: fal said OK but sent no video
COPY_FAILURE_CODES = {"media_rejected"}  # a finished video we refused to store, for a recorded reason

RUN_KINDS = (
    "stuck (not terminal at the end)",
    "table still changing at the audit",
    "failed although fal had finished it OK",
    "completed with other bytes than fal served",
    "job price differs from the plan's",
    "idempotency keys answered with >1 job id",
    "idempotency keys with differing 202 bodies",
    "idempotency keys answered 'new' twice",
    "keys whose final answers differ",
    "submissions that ended on an error (client gave up)",
    "charged jobs whose client never got a 202",
    "jobs without exactly one idempotency record",
    "idempotency records without their job",
    "jobs answered 202 but not in the table",
    "key reused with another body, not 422",
    "402 to a user who could afford every planned job",
    "terminal state changed",
    "cancel answered 200, job not canceled",
    "our cancel ended as a provider failure",
)
KINDS = TABLE_KINDS + RUN_KINDS


def violations(ev: Evidence) -> tuple[Audit, dict[str, list[str]]]:
    """The table audit and every kind of violation with its problems (empty lists: held)."""
    table = audit_items(ev.items, ev.bucket, ev.events)
    found: dict[str, list[str]] = defaultdict(list)
    for kind, problems in table.by_kind.items():
        found[kind].extend(problems)
    jobs = ev.jobs
    obs = ev.obs

    stuck = {j for j, item in jobs.items() if item["status"] not in TERMINAL} | (ev.stuck_seen - set(jobs))
    found["stuck (not terminal at the end)"] += [
        f"stuck: {j} ({jobs.get(j, {}).get('status', '?')})" for j in sorted(stuck)
    ]
    if not ev.quiet:
        found["table still changing at the audit"].append("the table did not settle within two reconciler periods")
    found["failed although fal had finished it OK"] += lost_results(jobs, ev.sim_requests)
    found["completed with other bytes than fal served"] += wrong_videos(jobs, ev.reference)
    for job_id, plan in sorted(obs.job_plan.items()):
        charged = jobs.get(job_id, {}).get("credits_charged")
        if charged is not None and int(charged) != plan.cost:
            found["job price differs from the plan's"].append(f"{job_id}: charged {charged}, the plan says {plan.cost}")

    for key, answers in sorted(obs.by_key.items()):
        if len({a.job_id for a in answers}) > 1:
            found["idempotency keys answered with >1 job id"].append(key)
        if len({a.body for a in answers}) > 1:
            found["idempotency keys with differing 202 bodies"].append(key)
        if sum(1 for a in answers if not a.replayed) > 1:
            found["idempotency keys answered 'new' twice"].append(key)
    for key, finals in sorted(obs.final_by_key.items()):
        if len(set(finals)) > 1:
            found["keys whose final answers differ"].append(f"{key}: {sorted(finals)}")
        gave_up = [c for c in finals if not c or c in RETRYABLE]
        if gave_up:
            found["submissions that ended on an error (client gave up)"].append(f"{key}: final {gave_up}")
    client_jobs = set(obs.job_owner)
    run_users = {u.user_id for u in ev.users}
    for job_id in sorted(set(jobs) - client_jobs):
        if jobs[job_id].get("user_id") in run_users:
            found["charged jobs whose client never got a 202"].append(job_id)
    found["jobs answered 202 but not in the table"] += sorted(client_jobs - set(jobs))

    idem: dict[str, int] = defaultdict(int)
    for record in ev.idempotency_records:
        idem[str(record.get("job_id"))] += 1
    found["jobs without exactly one idempotency record"] += sorted(j for j in jobs if idem[j] != 1)
    found["idempotency records without their job"] += sorted(j for j in idem if j not in jobs)
    found["key reused with another body, not 422"] += [f"{k} x{v}" for k, v in obs.reuse_codes.items() if k != "422"]
    found["402 to a user who could afford every planned job"] += refused_but_affordable(ev)

    found["terminal state changed"] += list(obs.terminal_changed) + [
        f"{j}: {s} -> {jobs[j]['status']}"
        for j, s in obs.first_terminal.items()
        if j in jobs and jobs[j]["status"] != s
    ]
    found["cancel answered 200, job not canceled"] += sorted(
        j for j in obs.canceled_ok if jobs.get(j, {}).get("status") != "canceled"
    )
    # Only our own cancels (the user's, the deadline's, an orphan's) make fal answer "cancelled":
    # such a job ends as we asked (canceled / expired), never as the provider's failure.
    found["our cancel ended as a provider failure"] += sorted(
        j for j, item in jobs.items() if CANCELLED_TEXT in str(_error(item).get("message", ""))
    )
    return table, {kind: found.get(kind, []) for kind in KINDS}


def lost_results(jobs: dict[str, dict[str, Any]], sim_requests: dict[str, dict[str, Any]]) -> list[str]:
    """Failed (not canceled) jobs whose fal request had finished OK before the job ended: a
    finished video thrown away (the design's "a job fal finished is never lost"), unless storing it
    failed for a recorded reason (:data:`COPY_FAILURE_CODES`, or fal's OK without a payload).

    When fal finished: the simulator's ``completed_at`` if it reports it, else its first webhook
    attempt (the latest moment it can have finished); with neither (its webhook dropped), a request
    finished OK and never cancelled counts as finished before (the deadline cancels at fal)."""
    lost = []
    for job_id, job in sorted(jobs.items()):
        request_id = (job.get("fal") or {}).get("request_id")
        req = sim_requests.get(str(request_id)) if request_id else None
        if job["status"] != "failed" or req is None:
            continue
        if req.get("status") != "COMPLETED" or req.get("failed") or req.get("cancel"):
            continue
        error = _error(job)
        if error.get("code") in COPY_FAILURE_CODES or PAYLOAD_ERROR_TEXT in str(error.get("message", "")):
            continue
        finished = req.get("completed_at")
        if finished is None:
            finished = min((float(d["at"]) for d in req.get("deliveries", []) if "at" in d), default=None)
        ended = _epoch(job.get("completed_at"))
        if finished is not None and ended is not None and float(finished) >= ended:
            continue
        lost.append(
            f"{job_id} ({job.get('model')}): failed {error.get('code')} at {job.get('completed_at')}, "
            f"fal {request_id} finished OK"
        )
    return lost


def wrong_videos(jobs: dict[str, dict[str, Any]], reference: tuple[str, int] | None) -> list[str]:
    """Completed jobs whose recorded video is not the bytes fal served (e.g. a truncated download
    that was stored anyway: its object and checksum would agree with each other, so the table audit
    alone would not see it)."""
    if reference is None:
        return []
    sha, size = reference
    out = []
    for job_id, job in sorted(jobs.items()):
        video = job.get("video") or {}
        if job["status"] == "completed" and (video.get("sha256") != sha or int(video.get("size_bytes", -1)) != size):
            out.append(job_id)
    return out


def refused_but_affordable(ev: Evidence) -> list[str]:
    """402s answered to a user whose credits cover every job the plan gives them."""
    planned: dict[str, int] = defaultdict(int)
    for p in ev.plans:
        planned[p.user.user_id] += p.cost
    out = []
    for p in ev.plans:
        if 402 in ev.obs.final_by_key.get(p.key, []) and planned[p.user.user_id] <= p.user.credits:
            out.append(
                f"{p.key}: 402 for {p.user.user_id} ({p.user.credits} credits, {planned[p.user.user_id]} planned)"
            )
    return out


def _error(job: dict[str, Any]) -> dict[str, Any]:
    return dict(job.get("error") or {})


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def shortfalls(
    ev: Evidence,
    *,
    sim_config: dict[str, Any],
    sim_stats: dict[str, Any],
    crashes: dict[str, int],
    crash_rate: float,
    conflicts: int | None,
) -> list[str]:
    """What the run did too little of, at any size: submissions never sent, fewer jobs than the
    plans the users could afford, a way of ending no job took, a fault kind turned on that never
    fired (``conflicts`` None: not required)."""
    out = []
    if ev.obs.not_sent:
        out.append(f"{ev.obs.not_sent} submissions not sent (the time was up)")
    planned: dict[str, int] = defaultdict(int)
    for p in ev.plans:
        planned[p.user.user_id] += p.cost
    affordable = sum(1 for p in ev.plans if planned[p.user.user_id] <= p.user.credits)
    created = len(ev.obs.job_owner)
    if created < affordable or not created:
        out.append(f"{created} jobs created, fewer than the {affordable} submissions their users could afford")
    statuses = {str(j["status"]) for j in ev.jobs.values()}
    out += [f"no job ended {s}" for s in ("completed", "failed", "canceled") if s not in statuses]
    out += [
        f"fault never fired: {label}"
        for label, stat, key in SIM_FAULT_KINDS
        if _turned_on(sim_config.get(key)) and not sim_stats.get(stat)
    ]
    if crash_rate > 0:
        out += [f"fault never fired: crash point {name}" for name in CRASH_POINTS if not crashes.get(name)]
    if conflicts is not None and not conflicts:
        out.append("fault never fired: DynamoDB TransactionConflict")
    return out


def _turned_on(value: Any) -> bool:
    return bool(max(value) if isinstance(value, list) else value)
