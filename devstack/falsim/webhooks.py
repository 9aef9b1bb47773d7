"""Webhook delivery: signed POSTs from a few worker threads, retried with backoff on a non-2xx
answer or a connection error, every attempt recorded on its request."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import requests as _http

from devstack.falsim.faults import FaultPlan
from devstack.falsim.lifecycle import SimRequest
from devstack.falsim.signing import Keyring
from devstack.falsim.stats import Stats
from devstack.falsim.timers import Scheduler

log = logging.getLogger("falsim")

MAX_RETRY_DELAY_S = 30.0


class WebhookSender:
    def __init__(self, keyring: Keyring, plan: FaultPlan, stats: Stats, scheduler: Scheduler, workers: int = 4) -> None:
        self._keyring = keyring
        self._plan = plan
        self._stats = stats
        self._scheduler = scheduler
        self._n_workers = workers
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._local = threading.local()

    def start(self) -> None:
        self._stopping.clear()
        for i in range(self._n_workers):
            thread = threading.Thread(target=self._worker_loop, name=f"falsim-webhooks-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = []

    def send(self, req: SimRequest, copies: int, delay_s: float, *, inline: bool = False) -> None:
        """Deliver ``req.webhook_body`` ``copies`` times after ``delay_s`` (``inline``: the first
        attempt of the first copy now, on the caller's thread, without the delay)."""
        now = time.time()
        for copy in range(copies):
            if inline and copy == 0:
                self._deliver(req, copy, 1)
                continue
            self._scheduler.schedule(now + delay_s + 0.05 * copy, self._delivery(req, copy, 1))

    def _delivery(self, req: SimRequest, copy: int, attempt: int) -> Callable[[], None]:
        def hand_to_worker() -> None:  # the timer thread only queues: a slow receiver blocks a worker
            self._jobs.put(lambda: self._deliver(req, copy, attempt))

        return hand_to_worker

    def _deliver(self, req: SimRequest, copy: int, attempt: int) -> None:
        if self._stopping.is_set() or req.webhook_url is None or req.webhook_body is None:
            return
        body = req.webhook_body
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "falsim-webhook/1",
            "X-Fal-Webhook-Request-Id": req.request_id,
            "X-Fal-Webhook-User-Id": self._keyring.user_id,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": self._keyring.sign(req.request_id, timestamp, body),
        }
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = _http.Session()
        outcome: dict[str, Any] = {"copy": copy, "attempt": attempt, "at": time.time()}
        try:
            timeout = float(self._plan.value("webhook_timeout_s"))
            resp = session.post(req.webhook_url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
            outcome["status_code"] = resp.status_code
            ok = 200 <= resp.status_code < 300
        except _http.RequestException as exc:
            outcome["error"] = type(exc).__name__
            ok = False
        req.deliveries.append(outcome)  # one append (atomic): readers copy the list
        if ok:
            self._stats.add("webhooks_sent")
            return
        if attempt >= int(self._plan.value("webhook_max_attempts")):
            self._stats.add("webhooks_failed")
            log.warning("webhook for %s gave up after %d attempts", req.request_id, attempt)
            return
        self._stats.add("webhook_retries")
        base = float(self._plan.value("webhook_retry_base_s"))
        delay = min(MAX_RETRY_DELAY_S, base * 2 ** min(attempt - 1, 32))  # doubling, capped
        self._scheduler.schedule(time.time() + delay, self._delivery(req, copy, attempt + 1))

    def _worker_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stopping.is_set():
                return
            try:
                job()
            except Exception:
                log.exception("falsim webhook job failed")
