"""Benchmark: Step Functions cost of one video job (state transitions, history events) vs a naive
fixed-interval poll loop.

Run: ``PYTHONPATH=layers/videogen:. .venv/bin/python -m bench.bench_workflow_cost`` (``make bench``).

Standard workflows are billed per state transition (about $0.025 per 1,000) and an execution's
history is capped at 25,000 events. What is measured, on moto executing the REAL
statemachines/video_job.asl.json with the real handlers and the fal simulator (in this process):

(a) webhook path: the generation ends early, its signed webhook goes through the gateway into the
    real WebhookFunction before the first Check; Check then sees a terminal job and the loop ends.
(b) poll-only path: every webhook dropped, the generation lasts the model's expected time x1, x2,
    x4 (it finishes just before that mark). Run at TIME_SCALE 0.1 (default): the initial wait,
    the poll intervals (10 s growing x1.5 to 60 s) and the generation time all shrink by the same
    factor, so the number of checks -- it depends only on the generation time measured in poll
    intervals -- is what it would be at full scale, up to the whole-second rounding of each wait
    (the formula below is evaluated at both scales and any difference is shown).
(c) worst case: a generation that never finishes; the loop runs until the deadline (Expire: a
    last look, cancel at fal, fail + refund). Measured once at a tiny scale, where every wait is
    1 s; computed for every model of the registry at full scale.

The formula: the execution input (``domain.timing.execution_input``) and the wait after
each check (``domain.timing.next_wait_s``) are the system's own functions; check k (k = 0..)
runs at T_k = initial_wait + sum of the first k waits, and the job is seen done at the first check
with T_k >= generation time (expired at the first with T_k >= the deadline, or when the attempt
counter reaches max_checks). With n checks the execution enters
    SubmitToFal, AfterSubmit, InitialWait, n x (Check, AfterCheck), (n-1) x (CountAttempt, PollWait),
    [Expire,] Done  ->  4n + 2 transitions done (4n + 3 expired).
History events per state visit are taken from the measured histories (ExecutionStarted/Succeeded
once each). Every measured run is checked against the formula at its own scale; the full-scale
figures are the formula at TIME_SCALE 1 (so they rest on the measured runs agreeing with it).

Baseline (computed, real seconds): a naive loop polling every 5 s -- SubmitToFal, then per poll
Wait + Check + Choice (3 transitions) until the poll at or after the generation time (or the
deadline), then Succeed (or Expire + Succeed): 3N + 2 (3N + 3).

Exits 0 when every measured run ended as intended (completed / failed with deadline_exceeded) and
its transition count equals the formula's; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

PRICE_PER_TRANSITION = 0.025 / 1000  # USD, Standard workflows (us-east-1 list price)
HISTORY_LIMIT = 25_000
NAIVE_INTERVAL_S = 5
MULTIPLIERS = (1, 2, 4)
DEFAULT_MODEL = "kling-2.1-standard-i2v"
DEFAULT_SCALE = 0.1  # the smallest scale at which the 10 s poll base is still a whole second
TINY_SCALE = 0.002  # worst-case run: kling's 1800 s deadline becomes 3.6 s
FINISH_EARLY_S = 0.05  # scaled seconds: the generation ends just before the m x expected mark
INPUTS = {"prompt": "a lighthouse in a storm", "image_url": "https://example.com/l.png"}
STATE_ORDER = (
    "SubmitToFal",
    "AfterSubmit",
    "InitialWait",
    "Check",
    "AfterCheck",
    "CountAttempt",
    "PollWait",
    "Expire",
    "FailJob",
    "HandOverToReconciler",
    "Done",
)


# --- the formula ------------------------------------------------------------------------------------


def timing_for(spec: Any, scale: float, deadline_at: int = 0) -> dict[str, Any]:
    """The poll timing the system gives a job of ``spec`` at ``scale`` (from execution_input itself)."""
    from videogen.domain.timing import execution_input

    job = SimpleNamespace(id="vid_formula", deadline_at=deadline_at)
    timing: dict[str, Any] = execution_input(job, spec, scale)["timing"]  # type: ignore[arg-type]
    return timing


def check_times(timing: dict[str, Any], limit: int = 100_000) -> Iterator[float]:
    """T_0, T_1, ...: when each check runs, seconds after InitialWait starts (no task latency)."""
    from videogen.domain.timing import next_wait_s

    t = float(timing["initial_wait_s"])
    for attempt in range(limit):
        yield t
        t += next_wait_s(timing, attempt)


def checks_until(timing: dict[str, Any], at_s: float) -> tuple[int, bool]:
    """(number of checks, capped by max_checks) until the first check at or after ``at_s``."""
    max_checks = int(timing["max_checks"])
    for k, t in enumerate(check_times(timing)):
        if t >= at_s:
            return k + 1, False
        if k >= max_checks:  # AfterCheck: attempt >= max_checks -> Expire
            return k + 1, True
    raise AssertionError("unreachable")


def visits(n_checks: int, expired: bool) -> Counter[str]:
    """State visits of one execution with ``n_checks`` checks."""
    counts: Counter[str] = Counter(SubmitToFal=1, AfterSubmit=1, InitialWait=1, Done=1)
    counts["Check"] = counts["AfterCheck"] = n_checks
    counts["CountAttempt"] = counts["PollWait"] = n_checks - 1
    if expired:
        counts["Expire"] = 1
    return counts


def naive_transitions(duration_s: float, expired: bool = False) -> int:
    polls = max(1, math.ceil(duration_s / NAIVE_INTERVAL_S))
    return 3 * polls + 2 + (1 if expired else 0)


@dataclass
class EventModel:
    """History events per state visit, learned from the measured histories."""

    per_visit: dict[str, float] = field(default_factory=dict)
    execution_events: int = 2  # ExecutionStarted + ExecutionSucceeded

    def events(self, counts: Counter[str]) -> int:
        return self.execution_events + round(sum(self.per_visit.get(s, 0.0) * n for s, n in counts.items()))


# --- measured runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    scale: float
    generation_s: float | None  # scaled seconds after fal accepted the request; None = never
    job_id: str = ""
    submitted_at: float = 0.0
    status: str = ""
    error_code: str | None = None
    deadline_at: int = 0
    webhook_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)

    @property
    def entered(self) -> list[tuple[str, Any]]:
        return [
            (e["stateEnteredEventDetails"]["name"], e["timestamp"])
            for e in self.history
            if e["type"].endswith("StateEntered")
        ]

    @property
    def transitions(self) -> int:
        return len(self.entered)

    @property
    def measured_visits(self) -> Counter[str]:
        return Counter(name for name, _ in self.entered)


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _attribute_events(history: list[dict[str, Any]]) -> tuple[Counter[str], int]:
    """Events per state (each event belongs to the state entered last), and the execution-level ones."""
    per_state: Counter[str] = Counter()
    execution_level = 0
    current: str | None = None
    for event in history:
        kind = event["type"]
        if kind.startswith("Execution"):
            execution_level += 1
            continue
        if kind.endswith("StateEntered"):
            current = event["stateEnteredEventDetails"]["name"]
        if current is not None:
            per_state[current] += 1
    return per_state, execution_level


class Driver:
    """Submits jobs through the real API and waits for them, on a started local stack."""

    def __init__(self, stack: Any) -> None:
        import boto3

        from videogen import wiring

        self.stack = stack
        self.sim = stack.sim
        self.wiring = wiring
        self.sfn = boto3.client("stepfunctions")
        status, _, body = self._request("POST", "/_local/users", {"user_id": "bench-cost", "credits": 10_000})
        if status != 200:
            raise RuntimeError(f"could not create the bench user: {body[:200]!r}")
        self.token = json.loads(body)["token"]

    def _request(self, method: str, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        hdrs = {"host": "127.0.0.1", "content-type": "application/json", **(headers or {})}
        return self.stack.server.api.handle(method, path, hdrs, json.dumps(body).encode())

    def submit(self, run: Run, model: str, **sim: Any) -> None:
        """POST /v1/videos with the simulator set to ``sim``; returns once fal has the request
        (queue and run times are drawn when fal accepts it, so the next job may change them)."""
        import uuid

        self.sim.set_config(**sim)
        run.submitted_at = time.time()
        status, _, body = self._request(
            "POST",
            "/v1/videos",
            {"model": model, "input": INPUTS},
            {"authorization": f"Bearer {self.token}", "idempotency-key": uuid.uuid4().hex},
        )
        if status != 202:
            raise RuntimeError(f"POST /v1/videos answered {status}: {body[:300]!r}")
        run.job_id = json.loads(body)["job"]["id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            job = self.wiring.store().get_job(run.job_id)
            if job is not None and (job.fal is not None or job.is_terminal):
                run.deadline_at = job.deadline_at
                return
            time.sleep(0.01)
        raise RuntimeError(f"SubmitToFal never handed {run.job_id} to the simulator")

    def request_id(self, run: Run) -> str:
        job = self.wiring.store().get_job(run.job_id)
        assert job is not None and job.fal is not None
        return job.fal.request_id

    def execution_arn(self, run: Run) -> str:
        return self.wiring.workflow().execution_arn(run.job_id)

    def finished(self, run: Run) -> bool:
        desc = self.sfn.describe_execution(executionArn=self.execution_arn(run))
        return desc["status"] != "RUNNING"

    def collect(self, run: Run) -> None:
        job = self.wiring.store().get_job(run.job_id)
        assert job is not None
        run.status = job.status.value
        run.error_code = job.error.code if job.error else None
        run.history = _history(self.sfn, self.execution_arn(run))
        run.timing = json.loads(run.history[0]["executionStartedEventDetails"]["input"])["timing"]


def measure(model: str, scale: float, timeout_s: float) -> tuple[list[Run], Any]:
    """Start the system, run (a), (b) x MULTIPLIERS and (c) concurrently; return the finished runs."""
    from bench.bench_webhook import deliver_webhook, local_system
    from videogen import wiring
    from videogen.domain.registry import Registry

    spec = Registry().get(model)
    runs: list[Run] = []
    with local_system(execute_sfn=True, time_scale=scale, sim_config={"webhook_drop_rate": 1}) as stack:
        driver = Driver(stack)
        # (b) longest first, so everything overlaps
        for m in sorted(MULTIPLIERS, reverse=True):
            run = Run(f"poll-only x{m}", scale, m * spec.expected_s * scale - FINISH_EARLY_S)
            driver.submit(run, model, queue_s=0, run_s=run.generation_s)
            runs.append(run)
        # (a) the generation ends at once; its webhook (dropped by the simulator) is delivered here
        hook = Run("webhook", scale, 0.2)
        driver.submit(hook, model, queue_s=0.05, run_s=0.15)
        runs.append(hook)
        # (c) at a tiny scale: every wait 1 s, the deadline a few seconds away; fal never finishes
        worst = Run("never finishes", TINY_SCALE, None)
        # The deadline is a whole epoch second (int(created + max_s * scale)), so at this scale where
        # it falls between the 1 s checks depends on the submit's fraction of a second: submit when
        # it lands mid-way between two checks, so task latencies cannot move it across one.
        first = runs[0]
        started = _history(driver.sfn, driver.execution_arn(first))
        offset = next(_seconds(e["timestamp"]) for e in started if e["type"] == "WaitStateEntered") - first.submitted_at
        _sleep_until_fraction(_best_fraction(timing_for(spec, TINY_SCALE), spec.max_s * TINY_SCALE, offset))
        os.environ["TIME_SCALE"] = str(TINY_SCALE)
        wiring.reset()
        try:
            driver.submit(worst, model, queue_s=3600, run_s=3600)
        finally:
            os.environ["TIME_SCALE"] = str(scale)
            wiring.reset()
        runs.append(worst)

        request_id = driver.request_id(hook)
        deadline = time.monotonic() + 10
        while stack.sim.requests[request_id]["status"] != "COMPLETED" and time.monotonic() < deadline:
            time.sleep(0.01)
        status, reply = deliver_webhook(stack, hook.job_id, request_id, f"{stack.sim.base_url}/cdn/{request_id}.mp4")
        hook.webhook_at = time.time()
        if status != 200 or reply.get("status") != "completed":
            raise RuntimeError(f"the webhook delivery failed: {status} {reply}")

        deadline = time.monotonic() + timeout_s
        pending = list(runs)
        while pending and time.monotonic() < deadline:
            pending = [r for r in pending if not driver.finished(r)]
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"executions still running after {timeout_s:.0f} s: {[r.label for r in pending]}")
        for run in runs:
            driver.collect(run)
    return runs, spec


def _best_fraction(timing: dict[str, Any], deadline_s: float, offset_s: float, latency_s: float = 0.025) -> float:
    """The fraction of a second to submit at so the deadline is farthest from every check."""
    checks = [offset_s + t + k * latency_s for k, t in zip(range(64), check_times(timing), strict=False)]
    best, best_margin = 0.0, -1.0
    for i in range(100):
        f = i / 100
        deadline = math.floor(f + deadline_s) - f  # seconds after the submit
        margin = min(abs(c - deadline) for c in checks)
        if margin > best_margin:
            best, best_margin = f, margin
    return best


def _sleep_until_fraction(fraction: float) -> None:
    now = time.time()
    wait = (fraction - (now - math.floor(now))) % 1.0
    time.sleep(wait)


# --- checking the formula against the runs ---------------------------------------------------------


@dataclass
class Verdict:
    run: Run
    predicted_checks: int
    predicted_expired: bool
    predicted_transitions: int
    full_scale_checks: int | None = None
    webhook_lead_s: float | None = None  # webhook path: how long before the first Check it arrived
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.run.transitions == self.predicted_transitions


def _seconds(ts: Any) -> float:
    return float(ts.timestamp()) if hasattr(ts, "timestamp") else float(ts)


def verify(runs: list[Run], spec: Any) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for run in runs:
        timing = run.timing
        if run.generation_s is not None:
            # done at the first check at or after the generation's end (the webhook path ends at
            # the first check whatever: the job is terminal before it)
            n, capped = checks_until(timing, run.generation_s)
            verdict = Verdict(run, n, capped, 4 * n + 2 + (1 if capped else 0))
            if run.label.startswith("poll-only"):
                m = int(run.label.rsplit("x", 1)[1])
                verdict.full_scale_checks, _ = checks_until(timing_for(spec, 1.0), m * spec.expected_s)
            if run.webhook_at is not None:
                first_check = next(_seconds(t) for name, t in run.entered if name == "Check")
                verdict.webhook_lead_s = first_check - run.webhook_at
                verdict.note = f"webhook in {verdict.webhook_lead_s:.1f} s before the first Check"
        else:
            # the deadline is an absolute epoch second: place the checks on the clock from the
            # measured start of InitialWait (task latencies of a few ms per check are ignored)
            start = next(_seconds(t) for name, t in run.entered if name == "InitialWait")
            n, capped = checks_until(timing, run.deadline_at - start)
            verdict = Verdict(run, n, True, 4 * n + 3)
            times = [start + t for t, _ in zip(check_times(timing), range(n + 1), strict=False)]
            margin = min(abs(t - run.deadline_at) for t in times)
            verdict.note = (
                f"deadline {run.deadline_at - start:.2f} s after InitialWait, {margin:.2f} s from the nearest check"
            )
            if not verdict.ok and margin < 0.15:
                verdict.note += " (a check landed on the deadline: off by one from task latency, not the formula)"
        verdicts.append(verdict)
    return verdicts


def learn_events(runs: list[Run]) -> tuple[EventModel, bool]:
    """History events per state visit from all measured runs; True when every run fits it exactly."""
    totals: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    execution_level: set[int] = set()
    for run in runs:
        per_state, execution_events = _attribute_events(run.history)
        totals.update(per_state)
        counts.update(run.measured_visits)
        execution_level.add(execution_events)
    model = EventModel({s: totals[s] / counts[s] for s in counts}, max(execution_level))
    fits = all(model.events(run.measured_visits) == len(run.history) for run in runs) and len(execution_level) == 1
    return model, fits


# --- report ------------------------------------------------------------------------------------------------


def dollars_per_1000_jobs(transitions: int) -> float:
    return transitions * PRICE_PER_TRANSITION * 1000


def report(
    runs: list[Run],
    verdicts: list[Verdict],
    spec: Any,
    scale: float,
    events: EventModel,
    events_fit: bool,
    took_s: float,
) -> None:
    from videogen.domain.registry import Registry

    print("Step Functions cost per video job: moto executing statemachines/video_job.asl.json with the real handlers")
    print(f"and the fal simulator. Model measured: {spec.id} (expected {spec.expected_s} s, deadline {spec.max_s} s).")
    print()
    print("1) Measured runs vs the formula at the run's own TIME_SCALE")
    header = (
        f"{'run':<16}{'scale':>7}{'gen s':>8}  {'ended':<30}{'checks':>7}{'transitions':>12}{'formula':>8}"
        f"{'events':>8}{'ev.formula':>11}  note"
    )
    print(header)
    print("-" * (len(header) + 40))
    for v in verdicts:
        r = v.run
        gen = "never" if r.generation_s is None else f"{r.generation_s:.2f}"
        ended = r.status if r.status == "completed" else f"{r.status}/{r.error_code or ''}"
        checks = r.measured_visits["Check"]
        ev = events.events(r.measured_visits)
        mark = "" if v.ok else "  MISMATCH"
        print(
            f"{r.label:<16}{r.scale:>7}{gen:>8}  {ended:<30}{checks:>7}{r.transitions:>12}{v.predicted_transitions:>8}"
            f"{len(r.history):>8}{ev:>11}  {v.note}{mark}"
        )
    visits_line = ", ".join(f"{s} {events.per_visit[s]:g}" for s in STATE_ORDER if s in events.per_visit)
    print(f"History events per state visit (measured): {visits_line}; + {events.execution_events} execution events.")
    print(f"Event model fits every measured history exactly: {'yes' if events_fit else 'NO'}")
    scaled_vs_full = [
        f"x{v.run.label.rsplit('x', 1)[1]}: {v.predicted_checks} at {scale}, {v.full_scale_checks} at 1.0"
        for v in verdicts
        if v.full_scale_checks is not None
    ]
    print("Checks of the poll-only runs by the formula, measured scale vs full scale: " + "; ".join(scaled_vs_full))
    print()

    print(f"2) Full scale (TIME_SCALE 1), {spec.id}: ours vs a naive poll every {NAIVE_INTERVAL_S} s")
    header = (
        f"{'scenario':<34}{'gen s':>7}{'checks':>7}{'ours':>6}{'naive':>7}{'ours/naive':>11}"
        f"{'$/1k ours':>10}{'$/1k naive':>11}{'events':>8}{'of 25k':>8}"
    )
    print(header)
    print("-" * len(header))
    full = timing_for(spec, 1.0)
    rows: list[tuple[str, float, int, bool, float]] = [
        ("webhook before 1st check (<= x1)", spec.expected_s, 1, False, spec.expected_s)
    ]
    for m in MULTIPLIERS:
        n, capped = checks_until(full, m * spec.expected_s)
        rows.append((f"poll-only, generation x{m}", m * spec.expected_s, n, capped, m * spec.expected_s))
    n, capped = checks_until(full, spec.max_s)
    rows.append(("never finishes (deadline)", spec.max_s, n, True, spec.max_s))
    for label, gen, n, expired, naive_s in rows:
        ours = 4 * n + 2 + (1 if expired else 0)
        naive = naive_transitions(naive_s, expired)
        ev = events.events(visits(n, expired))
        print(
            f"{label:<34}{gen:>7.0f}{n:>7}{ours:>6}{naive:>7}{ours / naive:>11.3f}"
            f"{dollars_per_1000_jobs(ours):>10.3f}{dollars_per_1000_jobs(naive):>11.3f}"
            f"{ev:>8}{ev / HISTORY_LIMIT:>8.2%}"
        )
    print()

    print("3) Worst case per model (never finishes: checks until the deadline), full scale")
    header = (
        f"{'model':<36}{'expected s':>11}{'deadline s':>11}{'checks':>7}{'ours':>6}{'naive':>7}{'ours/naive':>11}"
        f"{'$/1k ours':>10}{'events':>8}{'of 25k':>8}{'max_checks':>11}{'cap events':>11}"
    )
    print(header)
    print("-" * len(header))
    for model in Registry():
        timing = timing_for(model, 1.0)
        n, _ = checks_until(timing, model.max_s)
        ours = 4 * n + 3
        naive = naive_transitions(model.max_s, expired=True)
        ev = events.events(visits(n, True))
        cap = int(timing["max_checks"]) + 1  # checks if the deadline never triggered (the counter's bound)
        cap_ev = events.events(visits(cap, True))
        print(
            f"{model.id:<36}{model.expected_s:>11}{model.max_s:>11}{n:>7}{ours:>6}{naive:>7}{ours / naive:>11.3f}"
            f"{dollars_per_1000_jobs(ours):>10.3f}{ev:>8}{ev / HISTORY_LIMIT:>8.2%}{timing['max_checks']:>11}"
            f"{cap_ev:>11}"
        )
    print()
    price = PRICE_PER_TRANSITION * 1000
    notes = f"""
How to read it: transitions = StateEntered events of get_execution_history (what Standard workflows bill,
${price:.3f} per 1,000); '$/1k' = dollars per 1,000 jobs. 'ours' at full scale is the formula (4n+2 done,
4n+3 expired, n = checks) evaluated with the system's own execution_input and next_wait_s at TIME_SCALE 1;
table 1 shows the same formula reproducing every measured run at its scale. The number of checks depends
on the generation time measured in poll intervals, and every wait (initial = expected time, polls 10 s
x1.5 up to 60 s) scales with TIME_SCALE, so a run at {scale} has the checks of a full-scale run (rounding of
each wait to whole seconds aside, shown above).
naive = SubmitToFal + ceil(gen / {NAIVE_INTERVAL_S} s) x (Wait, Check, Choice) + Succeed [+ Expire]; it ignores
the webhook. A webhook arriving after the first check does not shorten our loop either: Check finds the
job terminal at the poll that would have found fal done, so such a job costs the poll-only figure for its
duration. Retries of a task (Lambda errors, fal 5xx on submit) are billed as transitions too and add ~3
events each; none happen here. events = history events (moto records the event types AWS does for
lambda:invoke tasks, Wait, Choice, Pass and Succeed states); 'cap events' = the history size if the
deadline never fired and only the max_checks counter ended the loop."""
    print(notes.strip("\n"))
    print(f"(bench_workflow_cost took {took_s:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="registry id of the model to measure")
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE, help="TIME_SCALE of the measured runs")
    parser.add_argument("--timeout", type=float, default=120, help="give up on the executions after this long")
    args = parser.parse_args(argv)

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        runs, spec = measure(args.model, args.scale, args.timeout)
    except RuntimeError as exc:
        print(f"bench_workflow_cost: {exc}", file=sys.stderr)
        return 1
    verdicts = verify(runs, spec)
    events, events_fit = learn_events(runs)
    report(runs, verdicts, spec, args.scale, events, events_fit, time.perf_counter() - started)

    problems = []
    for v in verdicts:
        r = v.run
        want = ("failed", "deadline_exceeded") if r.generation_s is None else ("completed", None)
        if (r.status, r.error_code) != want:
            problems.append(f"{r.label}: ended {r.status}/{r.error_code}, expected {want}")
        if v.webhook_lead_s is not None and v.webhook_lead_s <= 0:
            problems.append(f"{r.label}: the webhook arrived after the first Check (not the webhook path)")
        if not v.ok and "not the formula" not in v.note:
            problems.append(f"{r.label}: {r.transitions} transitions, the formula says {v.predicted_transitions}")
    if not events_fit:
        problems.append("the per-state event model does not reproduce every measured history")
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
