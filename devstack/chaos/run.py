"""``python -m devstack.chaos``: the command line, the run's steps and its table (see the package's doc)."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import requests

from devstack.chaos import checks
from devstack.chaos.driver import Client, Driver, Observations, wait_terminal
from devstack.chaos.evidence import Evidence, count_in_log, gather
from devstack.chaos.plan import REJECTED, SIM_FAULT_KINDS, UPLOAD, make_plan, sim_faults
from devstack.chaos.report import fmt_counter, render
from devstack.process import CONFLICT_LOG_TEXT, ROOT, StackProcess
from videogen import crash

LOCAL_DIR = ROOT / ".local"
RESULT_PREFIX = "CHAOS-RESULT "


def main(argv: list[str] | None = None) -> int:
    from devstack import chaos

    ap = argparse.ArgumentParser(prog="python -m devstack.chaos", description=(chaos.__doc__ or "").split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=300, help="logical submissions (distinct idempotency keys)")
    ap.add_argument("--seed", type=int, default=None, help="seed of every random choice (default: random, printed)")
    ap.add_argument("--users", type=int, default=None, help="users (default: jobs/5, at least 4)")
    ap.add_argument(
        "--timeout-s",
        type=float,
        default=None,
        help="overall bound from the first submit (default: 60 + 0.8 s per job, at least 120)",
    )
    ap.add_argument("--concurrency", type=int, default=8, help="submitting threads (each may send 4 copies at once)")
    ap.add_argument(
        "--crash-rate",
        type=float,
        default=None,
        help="chance per pass through a crash point (default 0.08; 0.2 below 100 jobs, so every point fires)",
    )
    ap.add_argument(
        "--conflict-rate",
        type=float,
        default=0.03,
        help="chance that DynamoDB answers TransactionConflict to a transaction or write (LOCAL_DDB_CONFLICT_RATE)",
    )
    ap.add_argument(
        "--event-duplicate-rate",
        type=float,
        default=0.2,
        help="chance that EventBridge delivers an event to a function twice (LOCAL_EVENT_DUPLICATE_RATE)",
    )
    ap.add_argument(
        "--require-conflicts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fail unless the stack log shows an injected TransactionConflict (when --conflict-rate > 0)",
    )
    ap.add_argument(
        "--time-scale",
        type=float,
        default=0.05,
        help="job workflow waits and deadlines x this (0.05: 1800 s max -> 90 s)",
    )
    ap.add_argument("--reconcile-every-s", type=float, default=2.0)
    ap.add_argument("--reconcile-grace-s", type=int, default=4)
    ap.add_argument(
        "--sim",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override one simulator setting, e.g. --sim fail_rate=0.3 --sim 'queue_s=[1,5]'",
    )
    ap.add_argument("--log-level", default="ERROR", help="the stack's Powertools log level (INFO to investigate)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args(argv)

    args.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    args.users = args.users or max(4, args.jobs // 5)
    args.timeout_s = args.timeout_s or max(120.0, 60 + 0.8 * args.jobs)
    if args.crash_rate is None:
        # below 100 jobs a point like after_s3_upload is passed ~20 times: at 0.2 it never fired in
        # ~2 % of runs (a "too little" failure); at 0.3 in ~0.1 %
        args.crash_rate = 0.08 if args.jobs >= 100 else 0.3
    random.seed(args.seed ^ 0x5EED)  # client-side jitter; timing makes the run nondeterministic anyway

    log_path = LOCAL_DIR / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}-seed{args.seed}.log"
    stack = StackProcess(
        seed=args.seed,
        time_scale=args.time_scale,
        crash_rate=args.crash_rate,
        reconcile_every_s=args.reconcile_every_s,
        reconcile_grace_s=args.reconcile_grace_s,
        log_path=log_path,
        log_level=args.log_level,
        conflict_rate=args.conflict_rate,
        event_duplicate_rate=args.event_duplicate_rate,
    )
    print(
        f"chaos run: {args.jobs} jobs, {args.users} users, seed {args.seed}, timeout {args.timeout_s:.0f} s, "
        f"crash rate {args.crash_rate}, conflict rate {args.conflict_rate}, "
        f"event duplicate rate {args.event_duplicate_rate}, time scale {args.time_scale}",
        flush=True,
    )
    print(f"stack log: {log_path}", flush=True)
    t0 = time.monotonic()
    return stack.serve(lambda s: _run(args, s, t0, time.monotonic()))


def _run(args: argparse.Namespace, stack: StackProcess, t0: float, t_ready: float) -> int:
    sim_config = sim_faults(args.jobs)
    for override in args.sim:
        key, _, value = override.partition("=")
        sim_config[key.strip()] = json.loads(value)
    reply = requests.put(f"{stack.sim}/_sim/config", json=sim_config, timeout=10)
    if reply.status_code != 200:
        print(f"error: the simulator refused the config: {reply.text}", file=sys.stderr)
        return 2
    people, plans = make_plan(args.jobs, args.users, args.seed)
    obs = Observations()
    driver = Driver(Client(stack.api), obs, seed=args.seed)
    driver.create_users(people)  # and their devices

    start = time.monotonic()
    driver.deadline = start + args.timeout_s
    changes = driver.apps.schedule_device_changes(people)  # some devices go away mid-run
    with ThreadPoolExecutor(args.concurrency, thread_name_prefix="chaos") as pool:
        for _ in pool.map(driver.run, plans):
            pass
        t_submitted = time.monotonic()
        print(f"submitted in {t_submitted - start:.1f} s; waiting for every job to end", flush=True)
        stuck_seen = wait_terminal(driver, set(obs.job_owner), driver.deadline, pool)
    for timer in changes:
        timer.join()
    t_settled = time.monotonic()
    if not stack.alive():
        print(f"error: the local stack died during the run; see {stack.log_path}", file=sys.stderr)
        return 1

    # every job has ended: two reconciler periods (and its grace) for owed events, the notifier's
    # wait for a poster (PUSH_POSTER_WAIT_S, 10 s locally), then one snapshot
    settle_s = 2 * args.reconcile_every_s + args.reconcile_grace_s + 10 + 5
    ev = gather(stack, obs, plans, people, stuck_seen, settle_s)
    stats = requests.get(f"{stack.api}/_local/stats", timeout=10).json()
    t_end = time.monotonic()

    sim = stats.get("falsim") or {}
    crashes = stats.get("crash_points_fired") or {}
    recon = stats.get("reconcile") or {}
    conflicts = count_in_log(stack.log_path, CONFLICT_LOG_TEXT)
    table, found = checks.violations(ev)
    short = checks.shortfalls(
        ev,
        sim_config=sim_config,
        sim_stats=sim,
        crashes=crashes,
        crash_rate=args.crash_rate,
        conflicts=conflicts if args.conflict_rate > 0 and args.require_conflicts else None,
        events_duplicated=int(stats.get("events_duplicated") or 0) if args.event_duplicate_rate > 0 else None,
    )
    jobs = ev.jobs
    status_counts = Counter(str(j["status"]) for j in jobs.values())
    failed_by_code = Counter(
        str((j.get("error") or {}).get("code", "?")) for j in jobs.values() if j["status"] == "failed"
    )
    violations = {kind: len(problems) for kind, problems in found.items()}

    rows: list[tuple[str, str]] = [
        ("Run", ""),
        ("seed / jobs / users", f"{args.seed} / {args.jobs} / {args.users}"),
        ("Jobs", ""),
        ("submissions (distinct idempotency keys)", str(len(plans))),
        ("requests to POST /v1/videos (copies, retries, replays)", str(obs.requests_sent)),
        ("jobs created (distinct job ids answered 202)", str(len(obs.job_owner))),
        ("jobs in the table", str(len(jobs))),
        ("completed", str(status_counts["completed"])),
        ("failed", f"{status_counts['failed']}  ({fmt_counter(failed_by_code)})"),
        ("canceled", str(status_counts["canceled"])),
        ("stuck", str(violations["stuck (not terminal at the end)"])),
        ("Answers", ""),
        ("POST /v1/videos", fmt_counter(obs.submit_codes)),
        ("POST /v1/videos/{id}/cancel", fmt_counter(obs.cancel_codes)),
        ("same key + another body", fmt_counter(obs.reuse_codes)),
        ("GET /v1/videos/{id} (polling)", fmt_counter(obs.poll_codes)),
        ("submissions given up after retries", str(obs.gave_up)),
        ("submissions not sent (time was up)", str(obs.not_sent)),
        ("Credits and events", ""),
        ("charges", str(table.charges)),
        ("refunds", str(table.refunds)),
        ("events the bus delivered (terminal jobs)", f"{sum(ev.events.values())} ({len(ev.events)} jobs)"),
        ("Apps", ""),
        *app_rows(ev),
        ("Invariants (all must be 0)", ""),
        *[(label, str(v)) for label, v in violations.items()],
        ("Faults injected", ""),
        *[(label, str(sim.get(stat, 0))) for label, stat, _ in SIM_FAULT_KINDS],
        ("DynamoDB TransactionConflict (stack log)", str(conflicts)),
        ("EventBridge deliveries to a function duplicated", str(stats.get("events_duplicated", 0))),
        ("fal generations whose request id no job stored", unstored_generations(ev)),
        ("jobs failed by an OK webhook without payload", str(_payload_failures(ev))),
        ("webhook retries (our webhook answered non-2xx)", str(sim.get("webhook_retries", 0))),
        *[(f"crash point {name}", str(crashes.get(name, 0))) for name in crash.ALL],
        ("Reconciler", ""),
        (
            "runs (completed / died at a crash point)",
            f"{stats.get('reconcile_runs', 0)} / {count_in_log(stack.log_path, 'reconciler run failed')}",
        ),
        ("outcomes", fmt_counter({k: v for k, v in recon.items() if k != "found"})),
        ("stale jobs found (sum over runs)", str(recon.get("found", 0))),
        ("Time", ""),
        ("stack start", f"{t_ready - t0:.1f} s"),
        ("submitting", f"{t_submitted - start:.1f} s"),
        ("until every job ended", f"{t_settled - start:.1f} s" + (" (timed out)" if stuck_seen else "")),
        ("settling and reading back (one audit)", f"{t_end - t_settled:.1f} s"),
        ("wall time", f"{t_end - t0:.1f} s"),
    ]
    print()
    print(render(rows, args.markdown))
    print()

    broken = {k: v for k, v in violations.items() if v}
    for kind, problems in found.items():
        for line in problems[:5]:
            print(f"problem: {kind}: {line}")
    if ev.reference is None and status_counts["completed"]:
        print("note: could not fetch the simulator's video; stored bytes were not compared with it")
    for line in short:
        print(f"error: too little: {line}")
    ok = not broken and not short
    print(
        RESULT_PREFIX
        + json.dumps(
            {
                "ok": ok,
                "seed": args.seed,
                "jobs": len(obs.job_owner),
                "completed": status_counts["completed"],
                "failed": status_counts["failed"],
                "canceled": status_counts["canceled"],
                "stuck": violations["stuck (not terminal at the end)"],
                "charges": table.charges,
                "refunds": table.refunds,
                "violations": violations,
                "shortfalls": short,
                "wall_s": round(t_end - t0, 1),
            },
            sort_keys=True,
        )
    )
    print("PASS: every invariant held" if ok else "FAIL: " + ", ".join([*broken, *(["too little"] if short else [])]))
    return 0 if ok else 1


def app_rows(ev: Evidence) -> list[tuple[str, str]]:
    """What the apps did and got: devices, uploads, notifications, posters."""
    apps = ev.obs.apps
    registered = [d for d in apps.devices.values() if d.registered_at is not None]
    invalid = {(d.user_id, d.device_id) for d in registered if d.invalid_at is not None}
    present = checks.devices_in_table(ev)
    uploads = Counter(f"{u.source} -> {u.status}" for u in apps.uploads.values())
    from_uploads = Counter(
        str(ev.jobs[j]["status"]) for j, p in ev.obs.job_plan.items() if p.source == UPLOAD and j in ev.jobs
    )
    rejected_answers = Counter(
        f"{status} {code}".strip()
        for p in ev.plans
        if p.source == REJECTED
        for status, code in ev.obs.refused.get(p.key, [])
    )
    completed_notes = [n for n in ev.notifications if n.get("status") == "completed"]
    media = [j for j in ev.jobs.values() if j["status"] == "completed" and (j.get("video") or {}).get("media")]
    return [
        (
            "devices registered / deleted mid-run",
            f"{len(registered)} / {sum(d.deleted_at is not None for d in registered)}",
        ),
        ("devices whose token went invalid / removed by the notifier", f"{len(invalid)} / {len(invalid - present)}"),
        ("uploads (meant -> checked)", fmt_counter(uploads)),
        ("jobs from an upload", fmt_counter(from_uploads)),
        ("submits naming a rejected upload", fmt_counter(rejected_answers)),
        (
            "notifications (completed / failed)",
            f"{len(ev.notifications)} ({len(completed_notes)} / {len(ev.notifications) - len(completed_notes)})",
        ),
        (
            "completed notifications without a poster (waited the bound)",
            str(sum(1 for n in completed_notes if not n.get("poster_url"))),
        ),
        ("completed jobs with poster and metadata", str(len(media))),
    ]


def unstored_generations(ev: Evidence) -> str:
    """fal requests whose id no job stored: a crash between fal's answer and the write (the README's
    "lost request id"), or a submit that raced a cancel (then cancelled at fal, best effort)."""
    jobs = ev.jobs
    stored = {(j.get("fal") or {}).get("request_id") for j in jobs.values()}
    unstored = [req for request_id, req in ev.sim_requests.items() if request_id not in stored]
    canceled = 0
    for req in unstored:
        job_id = parse_qs(urlsplit(str(req.get("webhook_url") or "")).query).get("job_id", [""])[0]
        canceled += jobs.get(job_id, {}).get("status") == "canceled"
    return f"{len(unstored)}  ({canceled} for jobs canceled meanwhile)" if unstored else "0"


def _payload_failures(ev: Evidence) -> int:
    return sum(
        1 for j in ev.jobs.values() if checks.PAYLOAD_ERROR_TEXT in str((j.get("error") or {}).get("message", ""))
    )
