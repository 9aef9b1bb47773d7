"""The chaos run's clients: each plan's submissions (an upload first when its image is one, copies,
retries with the same key, replays, a reused key, a cancel), polling until every job ends, and what
every client saw (Observations; the apps' devices and uploads: :mod:`devstack.chaos.apps`)."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from devstack.chaos.apps import AppObservations, Apps
from devstack.chaos.plan import URL, Plan, User
from devstack.invariants import TERMINAL

MAX_ATTEMPTS = 10  # per request, as an app would retry a 5xx / 409 / lost answer with the same key
RETRYABLE = {409, 500, 502, 503, 504}


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
    job_plan: dict[str, Plan] = field(default_factory=dict)
    canceled_ok: set[str] = field(default_factory=set)  # cancel answered 200 (status canceled)
    first_terminal: dict[str, str] = field(default_factory=dict)
    terminal_changed: list[str] = field(default_factory=list)
    requests_sent: int = 0
    submitted_at: dict[str, float] = field(default_factory=dict)  # key -> wall clock of its first request
    refused: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # key -> final non-202 (status, code)
    apps: AppObservations = field(default_factory=AppObservations)

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


def _code(body: bytes) -> str:
    """The problem+json ``code`` of an error answer ("" when it has none)."""
    try:
        return str(json.loads(body).get("code", ""))
    except (ValueError, AttributeError):
        return ""


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0.05, min(2.0, 0.2 * 2**attempt)))


class Driver:
    def __init__(self, client: Client, obs: Observations, deadline: float = float("inf"), seed: int = 0) -> None:
        self.client = client
        self.obs = obs
        self.deadline = deadline  # monotonic: past it nothing new is sent and nothing is retried
        self.apps = Apps(client, obs.apps, seed)

    def _late(self) -> bool:
        return time.monotonic() >= self.deadline

    def create_users(self, users: list[User]) -> None:
        for u in users:
            reply = self.client.call("POST", "/_local/users", json={"user_id": u.user_id, "credits": u.credits})
            reply.raise_for_status()
            u.token = reply.json()["token"]
        for u in users:
            for device in u.devices:
                self.apps.register(u, device)

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
        input_ = dict(p.input)
        if p.source != URL:  # the photo is uploaded first, then named as upload:<id>
            upload_id = self.apps.upload_photo(p.user, p.key, p.source)
            if upload_id is None:
                return  # the app could not upload (reported under its own kind)
            input_["image_url"] = f"upload:{upload_id}"
        body = {"model": p.model, "input": input_}
        with self.obs.lock:
            self.obs.submitted_at[p.key] = time.time()
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
            refused = [(a.status, _code(a.body)) for a in finals if a.status != 202]
            if refused:
                self.obs.refused.setdefault(p.key, []).extend(refused)
            if job_id:
                self.obs.job_owner[job_id] = p.user
                self.obs.job_plan[job_id] = p
        if job_id is None:
            return
        if p.cancel_after_s is not None:
            time.sleep(max(0.0, p.cancel_after_s - (time.monotonic() - answered_at)))
            if p.cancel_when_submitted:
                self.wait_until_at_fal(job_id)
            self.cancel(p, job_id)
        if p.replay_after_s is not None:
            time.sleep(p.replay_after_s)
            final = self.submit_once(p, body)
            with self.obs.lock:
                self.obs.final_by_key[p.key].append(final.status)
        if p.reuse_other_body:
            other = {"model": p.model, "input": {**input_, "prompt": input_["prompt"] + " (edited)"}}
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

    def wait_until_at_fal(self, job_id: str, bound_s: float = 10.0) -> None:
        """Poll (often, bounded) until the job is no longer ``queued`` here: fal has it (or it ended)."""
        deadline = min(time.monotonic() + bound_s, self.deadline)
        while time.monotonic() < deadline:
            status = self.poll(job_id)
            if status is not None and status != "queued":
                return
            time.sleep(0.1)

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
