"""The fal queue: every request the simulator knows, and the queue API's operations on them
(submit, status, result, cancel), each counted per request; completion sends the webhook."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from devstack.falsim import media
from devstack.falsim.faults import FaultPlan
from devstack.falsim.lifecycle import FAULTS, REQUIRED_INPUTS, FalError, SimRequest
from devstack.falsim.stats import Stats
from devstack.falsim.timers import Scheduler
from devstack.falsim.webhooks import WebhookSender

FORGET_AFTER_S = 86400.0  # finished requests are dropped a day after completion


class RequestQueue:
    def __init__(
        self,
        plan: FaultPlan,
        stats: Stats,
        scheduler: Scheduler,
        webhooks: WebhookSender,
        base_url: Callable[[], str],
        video_len: Callable[[], int],
    ) -> None:
        self._plan = plan
        self._stats = stats
        self._scheduler = scheduler
        self._webhooks = webhooks
        self._base_url = base_url
        self._video_len = video_len
        self._lock = threading.RLock()
        self._requests: dict[str, SimRequest] = {}
        self._seq = 0

    # -- inspection -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every known request's inspection view (``GET /_sim/requests``)."""
        now = time.time()
        with self._lock:
            return {rid: req.describe(now) for rid, req in self._requests.items()}

    def find(self, owner_app: str, request_id: str) -> SimRequest | None:
        """The request, when it lives under ``owner_app`` (fal answers 404 elsewhere)."""
        with self._lock:
            req = self._requests.get(request_id)
        return req if req is not None and req.owner_app == owner_app else None

    def completed_video(self, request_id: str) -> SimRequest | None:
        """The request whose video the CDN serves: finished without an error, else None."""
        self.finalize(request_id)
        with self._lock:
            req = self._requests.get(request_id)
        return req if req is not None and req.finalized and req.error is None else None

    # -- the queue API ----------------------------------------------------------------------

    def submit_fault(self) -> FalError | None:
        """The injected submit refusal for this submit, if any: a transient 429 or 503
        (``submit_error_rate``), or a final 403 of a locked account (``submit_reject_rate``)."""
        if self._plan.chance("submit_reject_rate"):
            self._stats.add("submit_rejections")
            return FalError(403, "The account is locked (simulated)", "account_locked")
        if not self._plan.chance("submit_error_rate"):
            return None
        self._stats.add("submit_errors")
        if self._plan.coin():
            return FalError(429, "Too many requests (simulated)", "rate_limited", {"Retry-After": "1"})
        return FalError(503, "Could not schedule a runner (simulated)", "runner_scheduling_failure")

    def _draw_fault(self) -> str | None:
        """The failure this run will end with, if any (``fail_rate`` drawn first, as it always was:
        a seeded run without the other rates draws the same)."""
        if self._plan.chance("fail_rate"):
            return "generic"
        return next((kind for kind in FAULTS if kind != "generic" and self._plan.chance(f"{kind}_rate")), None)

    def submit(
        self, model_id: str, body: dict[str, Any], webhook_url: str | None, input_sha256: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Queue a request; the submit answer. ``input_sha256``: what its URL inputs' bytes hashed to."""
        now = time.time()
        with self._lock:
            self._prune(now)
            required = REQUIRED_INPUTS.get(model_id, ())
            req = SimRequest(
                seq=self._seq,
                request_id=str(uuid.uuid4()),  # never seeded: ids must not repeat across runs
                owner_app="/".join(model_id.split("/")[:2]),
                model_id=model_id,
                input=body,
                input_sha256=dict(input_sha256 or {}),
                webhook_url=webhook_url,
                submitted_at=now,
                queue_s=self._plan.duration("queue_s"),
                run_s=self._plan.duration("run_s"),
                fault=self._draw_fault(),
                bad_media=self._plan.chance("bad_media_rate"),
                missing_inputs=tuple(name for name in required if body.get(name) in (None, "")),
                video_size=media.served_size(self._video_len(), int(self._plan.value("video_bytes"))),
            )
            self._seq += 1
            self._requests[req.request_id] = req
            self._stats.add("submits")
        self._scheduler.schedule(req.done_at, lambda: self.finalize(req.request_id))
        return {
            "request_id": req.request_id,
            **req.urls(self._base_url()),
            "queue_position": self._queue_position(req, now),
            "status": "IN_QUEUE",
        }

    def status(self, req: SimRequest, want_logs: bool) -> tuple[int, dict[str, Any]]:
        now = time.time()
        with self._lock:
            req.status_calls += 1
        position = self._queue_position(req, now) if req.phase(now) == "IN_QUEUE" else None
        status, body = req.status_body(now, self._base_url(), position, want_logs)
        if status == 200:
            self.finalize(req.request_id)
        return status, body

    def result(self, req: SimRequest) -> tuple[int, dict[str, Any]]:
        now = time.time()
        with self._lock:
            req.result_calls += 1
        if req.phase(now) != "COMPLETED":
            raise FalError(400, "Request is still in progress", "request_in_progress")
        self.finalize(req.request_id)
        if req.completed_at is not None and now - req.completed_at > float(self._plan.value("result_ttl_s")):
            raise FalError(404, "Request result expired", "not_found")
        return req.result_body(self._base_url())

    def cancel(self, req: SimRequest) -> tuple[int, dict[str, Any]]:
        now = time.time()
        with self._lock:
            req.cancel_calls += 1
            phase = req.phase(now)
            if phase == "COMPLETED" or req.finalized:
                return 400, {"status": "ALREADY_COMPLETED"}
            self._stats.add("cancel_requests")
            if phase == "IN_QUEUE":
                req.cancel, req.cancelled_at = "removed", now
                self._stats.add("cancelled")
            else:
                req.cancel = req.cancel or "signalled"
        if req.cancel == "removed":
            if self._plan.chance("cancel_webhook_first_rate"):
                self._stats.add("cancel_webhooks_first")
                self.finalize(req.request_id, inline=True)  # delivered before this call answers
            else:
                self._scheduler.schedule(now, lambda: self.finalize(req.request_id))
        return 202, {"status": "CANCELLATION_REQUESTED"}

    # -- completion -------------------------------------------------------------------------

    def finalize(self, request_id: str, *, inline: bool = False) -> None:
        """Once per request, when it reaches COMPLETED: count it and send its webhook (``inline``:
        the first delivery attempt on the caller's thread, without the configured delay)."""
        with self._lock:
            req = self._requests.get(request_id)
            if req is None or req.finalized or req.phase(time.time()) != "COMPLETED":
                return
            req.finalized = True
            req.completed_at = req.done_at
            self._stats.add("completed")
            if req.cancel != "removed":
                if req.missing_inputs:
                    self._stats.add("validation_failures")
                elif req.fault == "generic":
                    self._stats.add("failures")
                elif req.fault:
                    self._stats.add(f"{req.fault}_failures")
            if not req.webhook_url:
                return
            payload_error = req.error is None and self._plan.chance("webhook_payload_error_rate")
            req.webhook_body = json.dumps(req.webhook_payload(self._base_url(), payload_error)).encode()
            if self._plan.chance("webhook_drop_rate"):
                self._stats.add("webhooks_dropped")
                return
            if payload_error:
                self._stats.add("webhooks_without_payload")  # sent: an OK that names no video
            copies = 1
            if self._plan.chance("webhook_duplicate_rate"):
                self._stats.add("webhooks_duplicated")
                copies = 2
            delay = self._plan.duration("webhook_delay_s")
            if delay > 0:
                self._stats.add("webhooks_delayed")
        self._webhooks.send(req, copies, delay, inline=inline)

    # -- housekeeping -----------------------------------------------------------------------

    def _queue_position(self, req: SimRequest, now: float) -> int:
        with self._lock:
            ahead = sum(
                1
                for other in self._requests.values()
                if not other.finalized and other.seq < req.seq and other.phase(now) == "IN_QUEUE"
            )
        return ahead + max(0, int(req.started_at - now))

    def _prune(self, now: float) -> None:
        """Forget requests finished more than a day ago (caller holds the lock)."""
        old = [
            rid
            for rid, r in self._requests.items()
            if r.completed_at is not None and now - r.completed_at > FORGET_AFTER_S
        ]
        for rid in old:
            del self._requests[rid]
