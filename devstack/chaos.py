"""The chaos run: many jobs against the local stack with every fault on, then an audit of every invariant.

``python -m devstack.chaos --jobs N --seed S [--users U] [--timeout-s T] [--markdown]``
(``make chaos`` runs 300 jobs, ``make chaos-small`` — the CI run — 40 jobs with seed 7).

1. Starts the local stack (``python -m devstack``) as a subprocess on free ports, with crash points
   armed at random (``CRASH_POINTS=*``, ``CRASH_RATE``), the reconciler on a compressed schedule and
   the job workflow's waits scaled down (``TIME_SCALE``). Its output goes to a log file under .local/.
2. Turns on the fal simulator's faults: submit errors, failed generations, dropped / duplicated /
   delayed webhooks, OK webhooks without payload, broken CDN downloads (``--sim KEY=JSON`` changes one).
3. Drives N logical submissions from many users (seeded): some users cannot afford much (402),
   some submissions send the same Idempotency-Key several times at once, every 500 / 409 / network
   error is retried with the same key (as an app would), some keys are replayed later, a few are
   reused with another body (422), some jobs are cancelled right after submit (200 or 409).
4. Waits until every job is terminal or the time is up (the rest are "stuck"), polling the API.
5. Audits the table and the bucket (:mod:`devstack.invariants`), checks idempotency from the
   clients' side (one job id per key, replays byte-identical) and prints a table.

Exit code 0 when every invariant held and nothing was stuck (and, with ``--require-faults``, the
default from 100 jobs up, every fault kind that was turned on was injected at least once); 1
otherwise; 2 when the stack could not be started. Everything is bounded by ``--timeout-s`` (past it
nothing is sent or retried and unfinished jobs count as stuck); the stack subprocess is always
stopped. The last lines are a machine-readable ``CHAOS-RESULT {json}`` and PASS / FAIL.

Needs ``PYTHONPATH=layers/videogen:.`` (the Makefile exports it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import requests
from botocore.config import Config as BotoConfig

from devstack.invariants import TERMINAL, Audit, audit, scan_table
from videogen import crash

ROOT = Path(__file__).resolve().parents[1]
LOCAL_DIR = ROOT / ".local"
RESULT_PREFIX = "CHAOS-RESULT "

# --- knobs (all overridable from the command line) -------------------------------------------

DEFAULT_SIM_FAULTS: dict[str, Any] = {
    "queue_s": [0.2, 2.0],
    "run_s": [0.3, 2.5],
    "webhook_delay_s": [0.0, 3.0],
    "submit_error_rate": 0.1,
    "fail_rate": 0.1,
    "webhook_drop_rate": 0.2,
    "webhook_duplicate_rate": 0.15,
    "cdn_error_rate": 0.1,
    "webhook_payload_error_rate": 0.03,  # OK webhooks without a payload: a failure (docs/fal.md)
    "cancel_webhook_first_rate": 0.5,  # a cancelled request's webhook before the cancel call's answer
}
# Jobs of a run: each (registry id, credits, input builder). Prices follow the registry.
MODELS: tuple[tuple[str, int, Any], ...] = (
    (
        "kling-2.1-standard-i2v",
        4,
        lambda n: {"prompt": f"chaos {n}: a heron taking off", "image_url": f"https://example.com/chaos/{n}.png"},
    ),
    ("minimax-video-01", 5, lambda n: {"prompt": f"chaos {n}: rain on a tin roof"}),
    (
        "veo-3.1-i2v",
        8,
        lambda n: {
            "prompt": f"chaos {n}: a lighthouse at dusk",
            "duration": "4s",
            "resolution": "720p",
            "generate_audio": False,
            "image_url": f"https://example.com/chaos/{n}.png",
        },
    ),
    (
        "sora-2-i2v",
        8,
        lambda n: {
            "prompt": f"chaos {n}: paper boats",
            "duration": 4,
            "image_url": f"https://example.com/chaos/{n}.png",
        },
    ),
)
MAX_ATTEMPTS = 10  # per request, as an app would retry a 5xx / 409 / lost answer with the same key
RETRYABLE = {409, 500, 502, 503, 504}

SIM_FAULT_KINDS = (  # (label, simulator stat, the config key that turns it on)
    ("fal submit errors (429/503)", "submit_errors", "submit_error_rate"),
    ("failed generations", "failures", "fail_rate"),
    ("webhooks dropped", "webhooks_dropped", "webhook_drop_rate"),
    ("webhooks duplicated", "webhooks_duplicated", "webhook_duplicate_rate"),
    ("webhooks delayed", "webhooks_delayed", "webhook_delay_s"),
    ("CDN errors (5xx / truncated)", "cdn_errors", "cdn_error_rate"),
    ("cancel webhooks before the cancel's answer", "cancel_webhooks_first", "cancel_webhook_first_rate"),
)
CANCELLED_TEXT = "Request was cancelled"  # fal's (and the simulator's) error for a request a cancel removed
PAYLOAD_ERROR_TEXT = "not JSON serializable"  # the simulator's payload_error (it keeps no counter of them)
CRASH_POINTS = crash.ALL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the stack subprocess --------------------------------------------------------------------


class StackProcess:
    """``python -m devstack`` on free ports; ``stop()`` always ends it (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        *,
        seed: int,
        time_scale: float,
        crash_rate: float,
        reconcile_every_s: float,
        reconcile_grace_s: int,
        log_path: Path,
        log_level: str = "ERROR",
    ) -> None:
        self.port, self.sim_port, self.moto_port = _free_port(), _free_port(), _free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "FALSIM_PORT": str(self.sim_port),
            "MOTO_PORT": str(self.moto_port),
            "PYTHONPATH": f"{ROOT / 'layers' / 'videogen'}{os.pathsep}{ROOT}",
            "TIME_SCALE": str(time_scale),
            "FALSIM_SEED": str(seed),
            "RECONCILE_EVERY_S": str(reconcile_every_s),
            "RECONCILE_GRACE_S": str(reconcile_grace_s),
            "POWERTOOLS_LOG_LEVEL": log_level,
            "PYTHONUNBUFFERED": "1",
        }
        for key in ("FAL_KEY", "PUBLIC_URL", "AWS_ENDPOINT_URL", "AWS_PROFILE", "CRASH_POINTS", "CRASH_RATE"):
            self.env.pop(key, None)
        if crash_rate:  # crash points armed at random; 0: a stack that never crashes on purpose
            self.env.update(CRASH_POINTS="*", CRASH_RATE=str(crash_rate))
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sim(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def moto(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def start(self, timeout_s: float = 90) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the local stack exited with code {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.api}/_local/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the local stack did not become healthy in {timeout_s:.0f} s; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> str:
        """Stop the stack; says how it ended."""
        proc, self.proc = self.proc, None
        outcome = "not running"
        if proc is not None and proc.poll() is None:
            started = time.monotonic()
            proc.terminate()  # the stack stops its servers on SIGTERM
            try:
                proc.wait(timeout=30)
                outcome = f"stopped in {time.monotonic() - started:.1f} s"
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
                proc.wait(timeout=10)
                outcome = "killed after 30 s"
        elif proc is not None:
            outcome = f"had exited with code {proc.returncode}"

        if self._log is not None:
            self._log.close()
            self._log = None
        return outcome


# --- the plan (all random choices, from the seed, before anything runs) -------------------------


@dataclass
class User:
    user_id: str
    credits: int
    poor: bool
    token: str = ""


@dataclass
class Plan:
    n: int
    user: User
    model: str
    cost: int
    input: dict[str, Any]
    key: str
    copies: int  # requests sent at once with the same key
    replay_after_s: float | None  # send the same key and body again this long after the answer
    reuse_other_body: bool  # send the key once more with another body: must be 422
    cancel_after_s: float | None


def make_plan(jobs: int, users: int, seed: int) -> tuple[list[User], list[Plan]]:
    rng = random.Random(seed)
    tag = f"{seed}-{rng.getrandbits(24):06x}"  # distinct users per run even against one long-lived stack
    people: list[User] = []
    for i in range(users):
        poor = rng.random() < 0.25
        credits = rng.choice([4, 5, 8, 12]) if poor else 300
        people.append(User(f"chaos-{tag}-u{i:03d}", credits, poor))
    weights = [0.3 if u.poor else 1.0 for u in people]  # poor users send fewer jobs: some 402s, not a flood
    plans = []
    for n in range(jobs):
        model, cost, build = rng.choice(MODELS)
        plans.append(
            Plan(
                n=n,
                user=rng.choices(people, weights)[0],
                model=model,
                cost=cost,
                input=build(n),
                key=f"chaos-{tag}-{n:04d}-{rng.getrandbits(32):08x}",
                copies=rng.choice([2, 3, 4]) if rng.random() < 0.2 else 1,
                replay_after_s=rng.uniform(0, 2) if rng.random() < 0.15 else None,
                reuse_other_body=rng.random() < 0.04,
                cancel_after_s=rng.uniform(0, 1.5) if rng.random() < 0.15 else None,
            )
        )
    # Even a small run exercises every client behaviour at least once.
    behaviours = {
        "copies": lambda p: p.copies > 1,
        "replay": lambda p: p.replay_after_s is not None,
        "reuse": lambda p: p.reuse_other_body,
        "cancel": lambda p: p.cancel_after_s is not None,
    }
    for name, has in behaviours.items():
        if plans and not any(has(p) for p in plans):
            p = rng.choice(plans)
            if name == "copies":
                p.copies = 3
            elif name == "replay":
                p.replay_after_s = 0.5
            elif name == "reuse":
                p.reuse_other_body = True
            else:
                p.cancel_after_s = 0.2
    return people, plans


# --- what the clients saw ---------------------------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: no answer (connection error / timeout)
    replayed: bool
    body: bytes
    job_id: str | None


@dataclass
class Observations:
    lock: threading.Lock = field(default_factory=threading.Lock)
    submit_codes: Counter[str] = field(default_factory=Counter)
    cancel_codes: Counter[str] = field(default_factory=Counter)
    poll_codes: Counter[str] = field(default_factory=Counter)
    reuse_codes: Counter[str] = field(default_factory=Counter)
    by_key: dict[str, list[Answer]] = field(default_factory=lambda: defaultdict(list))
    final_by_key: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    gave_up: int = 0
    not_sent: int = 0  # submissions skipped because the overall time was up
    job_owner: dict[str, User] = field(default_factory=dict)
    canceled_ok: set[str] = field(default_factory=set)  # cancel answered 200 (status canceled)
    first_terminal: dict[str, str] = field(default_factory=dict)
    terminal_changed: list[str] = field(default_factory=list)
    requests_sent: int = 0

    def submit_answer(self, key: str, answer: Answer) -> None:
        with self.lock:
            self.requests_sent += 1
            label = str(answer.status) if answer.status else "no answer"
            if answer.status == 202:
                label = "202 replayed" if answer.replayed else "202 new"
            self.submit_codes[label] += 1
            if answer.status == 202:
                self.by_key[key].append(answer)


class Client:
    """One thread's HTTP client (requests.Session is not shared between threads)."""

    _local = threading.local()

    def __init__(self, base: str) -> None:
        self.base = base

    @property
    def http(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, f"{self.base}{path}", headers=headers, timeout=30, **kw)


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0.05, min(2.0, 0.2 * 2**attempt)))


class Driver:
    def __init__(self, client: Client, obs: Observations, deadline: float = float("inf")) -> None:
        self.client = client
        self.obs = obs
        self.deadline = deadline  # monotonic: past it nothing new is sent and nothing is retried

    def _late(self) -> bool:
        return time.monotonic() >= self.deadline

    def create_users(self, users: list[User]) -> None:
        for u in users:
            reply = self.client.call("POST", "/_local/users", json={"user_id": u.user_id, "credits": u.credits})
            reply.raise_for_status()
            u.token = reply.json()["token"]

    def submit_once(self, p: Plan, body: dict[str, Any]) -> Answer:
        """One request, retried with the same key on 5xx / 409 / no answer. Returns the last answer."""
        answer = Answer(0, False, b"", None)
        for attempt in range(MAX_ATTEMPTS):
            if attempt and self._late():
                break
            try:
                r = self.client.call("POST", "/v1/videos", p.user.token, json=body, headers={"Idempotency-Key": p.key})
                job_id = None
                if r.status_code == 202:
                    job_id = r.json()["job"]["id"]
                answer = Answer(r.status_code, r.headers.get("Idempotent-Replayed") == "true", r.content, job_id)
            except requests.RequestException:
                answer = Answer(0, False, b"", None)
            self.obs.submit_answer(p.key, answer)
            if answer.status and answer.status not in RETRYABLE:
                return answer
            _pause(attempt)
        with self.obs.lock:
            self.obs.gave_up += 1
        return answer

    def run(self, p: Plan) -> None:
        if self._late():
            with self.obs.lock:
                self.obs.not_sent += 1
            return
        body = {"model": p.model, "input": p.input}
        if p.copies == 1:
            finals = [self.submit_once(p, body)]
        else:  # the same key, several times at once (a double tap, a retry racing the first)
            finals = []
            gate = threading.Barrier(p.copies)

            def copy() -> None:
                with contextlib.suppress(threading.BrokenBarrierError):
                    gate.wait(timeout=10)
                finals.append(self.submit_once(p, body))

            threads = [threading.Thread(target=copy) for _ in range(p.copies)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        answered_at = time.monotonic()
        job_id = next((a.job_id for a in finals if a.job_id), None)
        with self.obs.lock:
            self.obs.final_by_key[p.key].extend(a.status for a in finals)
            if job_id:
                self.obs.job_owner[job_id] = p.user
        if job_id is None:
            return
        if p.cancel_after_s is not None:
            time.sleep(max(0.0, p.cancel_after_s - (time.monotonic() - answered_at)))
            self.cancel(p, job_id)
        if p.replay_after_s is not None:
            time.sleep(p.replay_after_s)
            final = self.submit_once(p, body)
            with self.obs.lock:
                self.obs.final_by_key[p.key].append(final.status)
        if p.reuse_other_body:
            other = {"model": p.model, "input": {**p.input, "prompt": p.input["prompt"] + " (edited)"}}
            try:
                r = self.client.call("POST", "/v1/videos", p.user.token, json=other, headers={"Idempotency-Key": p.key})
                code = r.status_code
            except requests.RequestException:
                code = 0
            with self.obs.lock:
                self.obs.reuse_codes[str(code)] += 1

    def cancel(self, p: Plan, job_id: str) -> None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                r = self.client.call("POST", f"/v1/videos/{job_id}/cancel", p.user.token)
                code = r.status_code
            except requests.RequestException:
                code = 0
            with self.obs.lock:
                self.obs.cancel_codes[str(code) if code else "no answer"] += 1
                if code == 200:
                    self.obs.canceled_ok.add(job_id)
            if (code and code not in (500, 502, 503, 504)) or self._late():
                return
            _pause(attempt)

    def poll(self, job_id: str) -> str | None:
        """The job's status as the API shows it (None when the request failed)."""
        user = self.obs.job_owner[job_id]
        try:
            r = self.client.call("GET", f"/v1/videos/{job_id}", user.token)
        except requests.RequestException:
            with self.obs.lock:
                self.obs.poll_codes["no answer"] += 1
            return None
        with self.obs.lock:
            self.obs.poll_codes[str(r.status_code)] += 1
        if r.status_code != 200:
            return None
        status = str(r.json()["status"])
        with self.obs.lock:
            first = self.obs.first_terminal.get(job_id)
            if first is not None and first != status:
                self.obs.terminal_changed.append(f"{job_id}: {first} -> {status}")
            elif first is None and status in TERMINAL:
                self.obs.first_terminal[job_id] = status
        return status


def wait_terminal(driver: Driver, job_ids: set[str], deadline: float, pool: ThreadPoolExecutor) -> set[str]:
    """Poll the API until every job is terminal or the deadline passes; returns the unfinished ones."""
    pending = set(job_ids)
    while pending and time.monotonic() < deadline:
        ids = sorted(pending)
        for job_id, status in zip(ids, pool.map(driver.poll, ids), strict=True):
            if status in TERMINAL:
                pending.discard(job_id)
        if pending:
            time.sleep(1.5)
    return pending


# --- after the run: the table, the audit, the report -------------------------------------------


@dataclass
class TableFacts:
    jobs: dict[str, dict[str, Any]]  # the run's jobs, by id
    idem_jobs: Counter[str]  # job id -> idempotency records pointing at it
    idem_dangling: int  # idempotency records whose job does not exist
    failed_by_code: Counter[str]
    event_pending: int
    payload_error_failures: int


def table_facts(db: Any, table: str, prefix: str) -> TableFacts:
    jobs: dict[str, dict[str, Any]] = {}
    idem: Counter[str] = Counter()
    for item in scan_table(db, table):
        pk, sk = str(item["pk"]), str(item["sk"])
        if sk == "JOB" and str(item.get("user_id", "")).startswith(prefix):
            jobs[str(item["id"])] = item
        elif sk.startswith("IDEM#") and pk.startswith(f"USER#{prefix}"):
            idem[str(item["job_id"])] += 1
    failed = Counter(str((j.get("error") or {}).get("code", "?")) for j in jobs.values() if j["status"] == "failed")
    return TableFacts(
        jobs=jobs,
        idem_jobs=idem,
        idem_dangling=sum(1 for j in idem if j not in jobs),
        failed_by_code=failed,
        event_pending=sum(1 for j in jobs.values() if j.get("event_pending")),
        payload_error_failures=sum(
            1 for j in jobs.values() if PAYLOAD_ERROR_TEXT in str((j.get("error") or {}).get("message", ""))
        ),
    )


def reference_video(sim: str, jobs: dict[str, dict[str, Any]]) -> tuple[str, int] | None:
    """sha256 and size of what fal serves (the simulator serves the same MP4 for every request).

    Called once every job has ended, with the CDN faults turned off."""
    requests.put(f"{sim}/_sim/config", json={"cdn_error_rate": 0}, timeout=10).raise_for_status()
    for job in jobs.values():
        request_id = (job.get("fal") or {}).get("request_id")
        if job["status"] != "completed" or not request_id:
            continue
        reply = requests.get(f"{sim}/cdn/{request_id}.mp4", timeout=30)
        if reply.status_code == 200:
            return hashlib.sha256(reply.content).hexdigest(), len(reply.content)
    return None


def wrong_videos(jobs: dict[str, dict[str, Any]], reference: tuple[str, int] | None) -> list[str]:
    """Completed jobs whose recorded video is not the bytes fal served (e.g. a truncated download
    that was stored anyway: its object and checksum would agree with each other, so the audit alone
    would not see it)."""
    if reference is None:
        return []
    sha, size = reference
    out = []
    for job_id, job in jobs.items():
        video = job.get("video") or {}
        if job["status"] == "completed" and (video.get("sha256") != sha or int(video.get("size_bytes", -1)) != size):
            out.append(job_id)
    return out


def deadline_report(sim: str, jobs: dict[str, dict[str, Any]]) -> tuple[int, list[str]]:
    """Jobs failed at their deadline: how many of them fal had finished OK, and one line each.

    Not an invariant (the job was refunded), but a finished generation that never reached the
    user is what invariant 4 is about, so the run shows it."""
    expired = {j: job for j, job in jobs.items() if (job.get("error") or {}).get("code") == "deadline_exceeded"}
    if not expired:
        return 0, []
    try:
        known = requests.get(f"{sim}/_sim/requests", timeout=30).json()
    except (requests.RequestException, ValueError):
        known = {}
    finished_ok = 0
    lines = []
    for job_id, job in sorted(expired.items()):
        request_id = (job.get("fal") or {}).get("request_id")
        req = known.get(request_id or "", {})
        failed_at = _epoch(job.get("completed_at"))
        # fal's first webhook attempt is the latest moment fal can have finished at
        first_webhook = min((float(d["at"]) for d in req.get("deliveries", []) if "at" in d), default=None)
        before = first_webhook is not None and failed_at is not None and first_webhook < failed_at
        finished_ok += bool(before and not req.get("failed") and not req.get("cancel"))
        codes = [d.get("status_code", d.get("error")) for d in req.get("deliveries", [])]
        when = (
            ""
            if first_webhook is None or failed_at is None
            else f" {first_webhook - failed_at:+.1f} s from the failure"
        )
        lines.append(
            f"{job_id} ({job['model']}): created {job['created_at']}, failed {job.get('completed_at')}, "
            f"submit attempts {job.get('submit_attempts')}, fal request {request_id or 'never stored'}"
            + (
                f" {req.get('status')}{' (failed)' if req.get('failed') else ''}"
                f"{' (cancel ' + req['cancel'] + ')' if req.get('cancel') else ''}, webhooks {codes}{when}"
                if req
                else ""
            )
        )
    return finished_ok, lines


def _unstored_generations(sim: str, jobs: dict[str, dict[str, Any]]) -> str:
    """fal requests whose id no job stored: a crash between fal's answer and the write (the README's
    "lost request id"), or a submit that raced a cancel (then cancelled at fal, best effort)."""
    try:
        known = requests.get(f"{sim}/_sim/requests", timeout=30).json()
    except (requests.RequestException, ValueError):
        return "?"
    stored = {(j.get("fal") or {}).get("request_id") for j in jobs.values()}
    unstored = [req for request_id, req in known.items() if request_id not in stored]
    canceled = 0
    for req in unstored:
        job_id = parse_qs(urlsplit(str(req.get("webhook_url") or "")).query).get("job_id", [""])[0]
        canceled += jobs.get(job_id, {}).get("status") == "canceled"
    return f"{len(unstored)}  ({canceled} for jobs canceled meanwhile)" if unstored else "0"


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def stable_audit(db: Any, table: str, s3: Any, bucket: str, tries: int = 3) -> tuple[Audit, int]:
    """Audit; if something is off, look again a little later (a scan is not a snapshot: an in-flight
    transaction may land between its pages). Returns the last audit and the number of audits made."""
    result = audit(db, table, s3, bucket)
    n = 1
    while not result.ok and n < tries:
        time.sleep(3)
        result = audit(db, table, s3, bucket)
        n += 1
    return result, n


def _turned_on(value: Any) -> bool:
    return bool(max(value) if isinstance(value, list) else value)


def _count_in_log(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def _fmt_counter(c: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def render(rows: list[tuple[str, str]], markdown: bool) -> str:
    """Rows of (label, value); a row with value "" is a section heading."""
    if markdown:
        out = ["| | |", "|---|---|"]
        for label, value in rows:
            out.append(f"| **{label}** | |" if value == "" else f"| {label} | {value} |")
        return "\n".join(out)
    width = max(len(label) for label, _ in rows) + 2
    out = []
    for label, value in rows:
        if value == "":
            out.append(f"{label}")
        else:
            out.append(f"  {label.ljust(width)}{value}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devstack.chaos", description=__doc__.split("\n\n")[0])
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
    ap.add_argument("--crash-rate", type=float, default=0.08, help="chance per pass through a crash point")
    ap.add_argument(
        "--time-scale",
        type=float,
        default=0.05,
        help="job workflow waits and deadlines x this (0.05: 1800 s max -> 90 s)",
    )
    ap.add_argument("--reconcile-every-s", type=float, default=2.0)
    ap.add_argument("--reconcile-grace-s", type=int, default=4)
    ap.add_argument(
        "--require-faults",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fail unless every fault kind fired (default: on from 100 jobs)",
    )
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

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    users_n = args.users or max(4, args.jobs // 5)
    timeout_s = args.timeout_s or max(120.0, 60 + 0.8 * args.jobs)
    require_faults = args.require_faults if args.require_faults is not None else args.jobs >= 100
    random.seed(seed ^ 0x5EED)  # client-side jitter; timing makes the run nondeterministic anyway

    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = LOCAL_DIR / f"chaos-{stamp}-seed{seed}.log"
    stack = StackProcess(
        seed=seed,
        time_scale=args.time_scale,
        crash_rate=args.crash_rate,
        reconcile_every_s=args.reconcile_every_s,
        reconcile_grace_s=args.reconcile_grace_s,
        log_path=log_path,
        log_level=args.log_level,
    )
    print(
        f"chaos run: {args.jobs} jobs, {users_n} users, seed {seed}, timeout {timeout_s:.0f} s, "
        f"crash rate {args.crash_rate}, time scale {args.time_scale}",
        flush=True,
    )
    print(f"stack log: {log_path}", flush=True)
    t0 = time.monotonic()
    try:
        try:
            stack.start()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        t_ready = time.monotonic()
        return _run(args, stack, seed, users_n, timeout_s, require_faults, t0, t_ready)
    finally:
        print(f"local stack {stack.stop()}", flush=True)


def _run(
    args: argparse.Namespace,
    stack: StackProcess,
    seed: int,
    users_n: int,
    timeout_s: float,
    require_faults: bool,
    t0: float,
    t_ready: float,
) -> int:
    sim_config = dict(DEFAULT_SIM_FAULTS)
    for override in args.sim:
        key, _, value = override.partition("=")
        sim_config[key.strip()] = json.loads(value)
    reply = requests.put(f"{stack.sim}/_sim/config", json=sim_config, timeout=10)
    if reply.status_code != 200:
        print(f"error: the simulator refused the config: {reply.text}", file=sys.stderr)
        return 2
    people, plans = make_plan(args.jobs, users_n, seed)
    prefix = people[0].user_id.rsplit("-u", 1)[0]
    obs = Observations()
    driver = Driver(Client(stack.api), obs)
    driver.create_users(people)

    start = time.monotonic()
    deadline = start + timeout_s
    driver.deadline = deadline
    with ThreadPoolExecutor(args.concurrency, thread_name_prefix="chaos") as pool:
        for _ in pool.map(driver.run, plans):
            pass
        t_submitted = time.monotonic()
        print(f"submitted in {t_submitted - start:.1f} s; waiting for every job to end", flush=True)
        stuck_seen = wait_terminal(driver, set(obs.job_owner), deadline, pool)
    t_settled = time.monotonic()
    if not stack.alive():
        print(f"error: the local stack died during the run; see {stack.log_path}", file=sys.stderr)
        return 1

    stats = requests.get(f"{stack.api}/_local/stats", timeout=10).json()
    aws: dict[str, Any] = {
        "endpoint_url": stack.moto,
        "region_name": "us-east-1",
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    cfg = BotoConfig(connect_timeout=5, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"})
    db, s3 = boto3.client("dynamodb", config=cfg, **aws), boto3.client("s3", config=cfg, **aws)
    table = next(t for t in db.list_tables()["TableNames"] if t.endswith("jobs-table"))
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("videos-bucket"))
    result, audits = stable_audit(db, table, s3, bucket)
    facts = table_facts(db, table, prefix)
    reference = reference_video(stack.sim, facts.jobs)
    bad_videos = wrong_videos(facts.jobs, reference)
    expired_after_fal_ok, expired_lines = deadline_report(stack.sim, facts.jobs)
    unstored_generations = _unstored_generations(stack.sim, facts.jobs)
    reconcile_deaths = _count_in_log(stack.log_path, "reconciler run failed")
    t_end = time.monotonic()

    # --- client-side checks -----------------------------------------------------------------
    multi_job_keys = []
    body_mismatch_keys = []
    multi_fresh_keys = []
    for key, answers in obs.by_key.items():
        if len({a.job_id for a in answers}) > 1:
            multi_job_keys.append(key)
        if len({a.body for a in answers}) > 1:
            body_mismatch_keys.append(key)
        if sum(1 for a in answers if not a.replayed) > 1:
            multi_fresh_keys.append(key)
    mixed_keys = sum(1 for codes in obs.final_by_key.values() if 202 in codes and set(codes) != {202})
    client_jobs = set(obs.job_owner)
    # stuck: not terminal in the table now (a job the polling saw unfinished may have ended since)
    stuck_ids = sorted(
        {j for j, item in facts.jobs.items() if item["status"] not in TERMINAL} | (stuck_seen - set(facts.jobs))
    )
    unknown_jobs = sorted(set(facts.jobs) - client_jobs)
    missing_jobs = sorted(client_jobs - set(facts.jobs))
    no_idem = sorted(j for j in facts.jobs if facts.idem_jobs[j] != 1)
    cancel_not_canceled = sorted(j for j in obs.canceled_ok if facts.jobs.get(j, {}).get("status") != "canceled")
    # Only our own cancels (the user's, the deadline's, an orphan's) make fal answer "cancelled":
    # such a job ends as we asked (canceled / deadline_exceeded), never as the provider's failure.
    cancel_as_failure = sorted(
        j for j, item in facts.jobs.items() if CANCELLED_TEXT in str((item.get("error") or {}).get("message", ""))
    )
    changed = list(obs.terminal_changed) + [
        f"{j}: {s} -> {facts.jobs[j]['status']}"
        for j, s in obs.first_terminal.items()
        if j in facts.jobs and facts.jobs[j]["status"] != s
    ]
    reuse_not_422 = sum(v for k, v in obs.reuse_codes.items() if k != "422")

    status_counts = Counter(str(j["status"]) for j in facts.jobs.values())
    sim = stats.get("falsim") or {}
    crashes = stats.get("crash_points_fired") or {}
    recon = stats.get("reconcile") or {}

    violations: dict[str, int] = {
        "stuck (not terminal at the end)": len(stuck_ids),
        "double charges": result.double_charges,
        "double refunds": result.double_refunds,
        "missing charges": result.missing_charges,
        "failed/canceled without refund": result.missing_refunds,
        "completed but refunded": result.refunded_completed,
        "ledger-vs-balance mismatches": result.balance_mismatches,
        "negative balances": result.negative_balances,
        "active-counter mismatches": result.active_counter_mismatches,
        "completed without S3 object": result.completed_without_object,
        "checksum mismatches": result.checksum_mismatches,
        "completed with other bytes than fal served": len(bad_videos),
        "other audit problems": max(
            0,
            len(result.problems)
            - sum(
                (
                    result.double_charges,
                    result.double_refunds,
                    result.missing_charges,
                    result.missing_refunds,
                    result.refunded_completed,
                    result.balance_mismatches,
                    result.negative_balances,
                    result.active_counter_mismatches,
                    result.completed_without_object,
                    result.checksum_mismatches,
                )
            ),
        ),
        "idempotency keys answered with >1 job id": len(multi_job_keys),
        "idempotency keys with differing 202 bodies": len(body_mismatch_keys),
        "idempotency keys answered 'new' twice": len(multi_fresh_keys),
        "jobs without exactly one idempotency record": len(no_idem),
        "idempotency records without their job": facts.idem_dangling,
        "jobs answered 202 but not in the table": len(missing_jobs),
        "key reused with another body, not 422": reuse_not_422,
        "terminal state changed": len(changed),
        "cancel answered 200, job not canceled": len(cancel_not_canceled),
        "our cancel ended as a provider failure": len(cancel_as_failure),
    }
    # a kind counts as missing only when it was turned on (an override like --sim webhook_drop_rate=1
    # leaves no webhook to duplicate or delay)
    missing_faults = [
        label for label, stat, key in SIM_FAULT_KINDS if _turned_on(sim_config.get(key)) and not sim.get(stat)
    ]
    if args.crash_rate > 0:
        missing_faults += [f"crash point {name}" for name in CRASH_POINTS if not crashes.get(name)]

    rows: list[tuple[str, str]] = [
        ("Run", ""),
        ("seed / jobs / users", f"{seed} / {args.jobs} / {users_n}"),
        ("Jobs", ""),
        ("submissions (distinct idempotency keys)", str(len(plans))),
        ("requests to POST /v1/videos (copies, retries, replays)", str(obs.requests_sent)),
        ("jobs created (distinct job ids answered 202)", str(len(client_jobs))),
        ("jobs in the table", str(len(facts.jobs))),
        ("completed", str(status_counts["completed"])),
        ("failed", f"{status_counts['failed']}  ({_fmt_counter(facts.failed_by_code)})"),
        ("canceled", str(status_counts["canceled"])),
        ("stuck", str(len(stuck_ids))),
        ("failed at the deadline although fal had finished OK", str(expired_after_fal_ok)),
        ("Answers", ""),
        ("POST /v1/videos", _fmt_counter(obs.submit_codes)),
        ("POST /v1/videos/{id}/cancel", _fmt_counter(obs.cancel_codes)),
        ("same key + another body", _fmt_counter(obs.reuse_codes)),
        ("GET /v1/videos/{id} (polling)", _fmt_counter(obs.poll_codes)),
        ("submissions given up after retries", str(obs.gave_up)),
        ("submissions not sent (time was up)", str(obs.not_sent)),
        ("keys with a 202 and another final answer", str(mixed_keys)),
        ("Credits", ""),
        ("charges", str(result.charges)),
        ("refunds", str(result.refunds)),
        ("Invariants (all must be 0)", ""),
        *[(label, str(v)) for label, v in violations.items()],
        ("Faults injected", ""),
        *[(label, str(sim.get(stat, 0))) for label, stat, _ in SIM_FAULT_KINDS],
        (
            "fal generations whose request id no job stored",
            unstored_generations,
        ),
        ("jobs failed by an OK webhook without payload", str(facts.payload_error_failures)),
        ("webhook retries (our webhook answered non-2xx)", str(sim.get("webhook_retries", 0))),
        *[(f"crash point {name}", str(crashes.get(name, 0))) for name in CRASH_POINTS],
        ("Reconciler", ""),
        ("runs (completed / died at a crash point)", f"{stats.get('reconcile_runs', 0)} / {reconcile_deaths}"),
        ("outcomes", _fmt_counter({k: v for k, v in recon.items() if k != "found"})),
        ("stale jobs found (sum over runs)", str(recon.get("found", 0))),
        ("Time", ""),
        ("stack start", f"{t_ready - t0:.1f} s"),
        ("submitting", f"{t_submitted - start:.1f} s"),
        ("until every job ended", f"{t_settled - start:.1f} s" + ("" if not stuck_ids else " (timed out)")),
        ("audit", f"{t_end - t_settled:.1f} s ({audits} pass{'es' if audits > 1 else ''})"),
        ("wall time", f"{t_end - t0:.1f} s"),
    ]
    print()
    print(render(rows, args.markdown))
    print()

    broken = {k: v for k, v in violations.items() if v}
    details = (
        result.problems[:10]
        + [f"stuck: {j} ({facts.jobs.get(j, {}).get('status', '?')})" for j in stuck_ids[:10]]
        + [f"key with >1 job: {k}" for k in multi_job_keys[:5]]
        + [f"key with differing bodies: {k}" for k in body_mismatch_keys[:5]]
        + [f"job without one idempotency record: {j}" for j in no_idem[:5]]
        + [f"terminal changed: {c}" for c in changed[:5]]
        + [f"completed with other bytes than fal served: {j}" for j in bad_videos[:5]]
        + [f"cancel 200 but {facts.jobs.get(j, {}).get('status')}: {j}" for j in cancel_not_canceled[:5]]
        + [f"our cancel ended as a provider failure: {j}" for j in cancel_as_failure[:5]]
    )
    if unknown_jobs:
        print(
            f"note: {len(unknown_jobs)} job(s) in the table no client saw a 202 for "
            f"(their submissions gave up after {MAX_ATTEMPTS} tries)"
        )
    if facts.event_pending:
        print(
            f"note: {facts.event_pending} terminal job(s) still have their event pending (the reconciler "
            f"publishes them)"
        )
    if reference is None and status_counts["completed"]:
        print("note: could not fetch the simulator's video; stored bytes were not compared with it")
    for line in expired_lines[:10]:
        print(f"deadline: {line}")
    for line in details:
        print(f"problem: {line}")
    if missing_faults:
        print(("error" if require_faults else "note") + ": fault kinds never injected: " + ", ".join(missing_faults))
    ok = not broken and not (require_faults and missing_faults)
    print(
        RESULT_PREFIX
        + json.dumps(
            {
                "ok": ok,
                "seed": seed,
                "jobs": len(client_jobs),
                "completed": status_counts["completed"],
                "failed": status_counts["failed"],
                "canceled": status_counts["canceled"],
                "stuck": len(stuck_ids),
                "charges": result.charges,
                "refunds": result.refunds,
                "violations": violations,
                "missing_faults": missing_faults,
                "wall_s": round(t_end - t0, 1),
            },
            sort_keys=True,
        )
    )
    print("PASS: every invariant held" if ok else "FAIL: " + (", ".join(broken) or "fault kinds missing"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
