"""A local fal.ai simulator: queue API, signed webhooks, JWKS, a CDN of real MP4s, fault injection.

It follows ``docs/fal.md`` (where they disagree, that page wins):

* ``POST /{model_id...}?fal_webhook=<url>`` (``Authorization: Key <anything>``) queues a request and
  answers ``200 {"request_id", "response_url", "status_url", "cancel_url", "queue_position",
  "status": "IN_QUEUE"}``; the three URLs live under ``/{owner}/{app}/requests/{id}`` only.
* ``GET .../requests/{id}/status[?logs=1]``: ``202 IN_QUEUE`` → ``202 IN_PROGRESS`` → ``200 COMPLETED``
  (``error``/``error_type`` set when the run failed or was cancelled while queued). Timing is wall
  clock from submit: ``queue_s`` then ``run_s``.
* ``GET .../requests/{id}``: the model output ``{"video": {...}}`` or the failure (``422 {"detail": [...]}``).
* ``PUT .../requests/{id}/cancel``: ``202 CANCELLATION_REQUESTED`` / ``400 ALREADY_COMPLETED`` / ``404``.
* ``GET /.well-known/jwks.json``: the ED25519 public keys the webhooks are signed with.
* ``GET|HEAD /cdn/{request_id}.mp4``: a real playable H.264 MP4 (padded to ``video_bytes`` if set).
* ``GET|PUT /_sim/config``, ``GET /_sim/stats``, ``GET /_sim/requests``: control and inspection.

Every request that finishes (OK or ERROR) and was submitted with ``fal_webhook`` gets a signed
webhook POST, retried with backoff on non-2xx answers or connection errors.

Not simulated: ``X-Fal-Request-Timeout``, queue priorities, the account concurrency limit.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import itertools
import json
import logging
import queue
import random
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests as _http
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devstack.falsim import media

log = logging.getLogger("falsim")

DEFAULT_CONFIG: dict[str, Any] = {
    "queue_s": 1.0,  # time in IN_QUEUE (number or [min, max])
    "run_s": 2.0,  # time in IN_PROGRESS (number or [min, max])
    "webhook_delay_s": 0.0,  # extra delay before a webhook goes out (number or [min, max])
    "fail_rate": 0.0,  # runs that finish COMPLETED + error (result 422)
    "submit_error_rate": 0.0,  # submits answered 503 runner_scheduling_failure or 429
    "webhook_drop_rate": 0.0,  # webhooks never sent
    "webhook_duplicate_rate": 0.0,  # webhooks sent twice
    "webhook_payload_error_rate": 0.0,  # OK webhooks with payload null + payload_error
    "cdn_error_rate": 0.0,  # CDN answers truncated (Content-Length then early close) or 5xx
    # cancels of queued requests whose ERROR webhook is delivered BEFORE the cancel call is answered
    # (docs/fal.md: "often before the cancel call's own answer has been acted on"), the worst case
    "cancel_webhook_first_rate": 0.0,
    "video_bytes": 0,  # size of the served video; 0 = the small real MP4 itself
    "webhook_max_attempts": 10,  # deliveries per webhook (first try + retries)
    "webhook_retry_base_s": 0.5,  # first retry delay; doubles, capped at 30 s
    "webhook_timeout_s": 10.0,  # per delivery attempt
    "result_ttl_s": 3600.0,  # results answer 404 this long after completion
}
_RANGE_KEYS = frozenset({"queue_s", "run_s", "webhook_delay_s"})
_RATE_KEYS = frozenset(
    {
        "fail_rate",
        "submit_error_rate",
        "webhook_drop_rate",
        "webhook_duplicate_rate",
        "webhook_payload_error_rate",
        "cdn_error_rate",
        "cancel_webhook_first_rate",
    }
)
_INT_KEYS = frozenset({"video_bytes", "webhook_max_attempts"})
_NUMBER_KEYS = frozenset({"webhook_retry_base_s", "webhook_timeout_s", "result_ttl_s"})
STAT_KEYS = (
    "submits",
    "submit_errors",
    "completed",
    "failures",
    "validation_failures",
    "cancel_requests",
    "cancelled",
    "webhooks_sent",
    "webhook_retries",
    "webhooks_failed",
    "webhooks_dropped",
    "webhooks_duplicated",
    "webhooks_delayed",
    "cdn_errors",
    "cancel_webhooks_first",
)

# Required inputs of the models listed in docs/fal.md; a missing one fails the run with a 422.
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "fal-ai/kling-video/v2.1/standard/image-to-video": ("prompt", "image_url"),
    "fal-ai/kling-video/v2.6/pro/image-to-video": ("prompt", "start_image_url"),
    "fal-ai/kling-video/v2.6/standard/motion-control": ("image_url", "video_url", "character_orientation"),
    "fal-ai/minimax/video-01": ("prompt",),
    "fal-ai/veo3.1/image-to-video": ("prompt", "image_url"),
    "fal-ai/sora-2/image-to-video": ("prompt", "image_url"),
}
MAX_BODY = 1024 * 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_CANCELLED_ERROR = ("Request was cancelled", "request_cancelled")
_FAILED_ERROR = ("Invalid status code: 422", "validation_error")


def validate_config(updates: dict[str, Any]) -> dict[str, Any]:
    """Checked, normalised config values; raises ValueError naming the bad key."""
    unknown = sorted(set(updates) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
    clean: dict[str, Any] = {}
    for key, value in updates.items():
        if isinstance(value, bool):
            raise ValueError(f"{key}: booleans are not accepted")
        if key in _RANGE_KEYS:
            if isinstance(value, list | tuple):
                if len(value) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                    raise ValueError(f"{key}: expected a number or [min, max]")
                lo, hi = float(value[0]), float(value[1])
                if not 0 <= lo <= hi:
                    raise ValueError(f"{key}: expected 0 <= min <= max")
                clean[key] = [lo, hi]
                continue
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key}: expected a number >= 0 or [min, max]")
            clean[key] = float(value)
        elif key in _RATE_KEYS:
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{key}: expected a rate between 0 and 1")
            clean[key] = float(value)
        elif key in _INT_KEYS:
            if not isinstance(value, int) or value < 0 or (key == "webhook_max_attempts" and value < 1):
                raise ValueError(f"{key}: expected a non-negative integer")
            clean[key] = value
        elif key in _NUMBER_KEYS:
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key}: expected a number >= 0")
            clean[key] = float(value)
    return clean


@dataclass
class SimRequest:
    """One queued request as the simulator knows it."""

    seq: int
    request_id: str
    owner_app: str
    model_id: str
    input: dict[str, Any]
    webhook_url: str | None
    submitted_at: float
    queue_s: float
    run_s: float
    fails: bool  # injected failure (fail_rate)
    missing_inputs: tuple[str, ...]
    video_size: int
    cancel: str | None = None  # None | "removed" (was queued) | "signalled" (was running)
    cancelled_at: float | None = None
    finalized: bool = False
    completed_at: float | None = None
    webhook_body: bytes | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def started_at(self) -> float:
        return self.submitted_at + self.queue_s

    @property
    def done_at(self) -> float:
        if self.cancel == "removed" and self.cancelled_at is not None:
            return self.cancelled_at
        return self.started_at + self.run_s

    def phase(self, now: float) -> str:
        if self.cancel == "removed":
            return "COMPLETED"
        if now < self.started_at:
            return "IN_QUEUE"
        if now < self.done_at:
            return "IN_PROGRESS"
        return "COMPLETED"

    @property
    def error(self) -> tuple[str, str] | None:
        if self.cancel == "removed":
            return _CANCELLED_ERROR
        if self.missing_inputs or self.fails:
            return _FAILED_ERROR
        return None

    def failure_detail(self) -> list[dict[str, Any]]:
        if self.missing_inputs:
            return [
                {"loc": ["body", name], "msg": "field required", "type": "value_error.missing"}
                for name in self.missing_inputs
            ]
        return [
            {
                "loc": ["body", "image_url"],
                "msg": "Failed to process the input image (simulated failure)",
                "type": "image_load_error",
            }
        ]


class FalSimulator:
    """The simulator: an HTTP server, a timer thread and a few webhook workers, all daemon threads."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 3001,
        seed: int | None = None,
        *,
        user_id: str = "falsim-user",
        webhook_workers: int = 4,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.user_id = user_id
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._config: dict[str, Any] = dict(DEFAULT_CONFIG)
        self._stats: Counter[str] = Counter({k: 0 for k in STAT_KEYS})
        self._requests: dict[str, SimRequest] = {}
        self._seq = itertools.count()
        self._keys: list[tuple[str, Ed25519PrivateKey]] = []
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_cond = threading.Condition(threading.Lock())
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._n_workers = webhook_workers
        self._local = threading.local()
        self._video = b""

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FalSimulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._video = media.sample_mp4()
        if not self._keys:
            self.rotate_key()
        self._stopping.clear()
        server = ThreadingHTTPServer((self.host, self._requested_port), _Handler)
        server.daemon_threads = True
        server.sim = self  # type: ignore[attr-defined]
        self._server = server
        self._spawn("falsim-http", lambda: server.serve_forever(poll_interval=0.05))
        self._spawn("falsim-timers", self._timer_loop)
        for i in range(self._n_workers):
            self._spawn(f"falsim-webhooks-{i}", self._worker_loop)
        log.info("fal simulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        with self._timer_cond:
            self._timers.clear()
            self._timer_cond.notify_all()
        for _ in range(self._n_workers):
            self._jobs.put(None)
        server.shutdown()
        server.server_close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = []

    def __enter__(self) -> FalSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    # -- control ------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._config))

    def set_config(self, **updates: Any) -> dict[str, Any]:
        """Change any subset of the config keys (ValueError on an unknown key or bad value)."""
        clean = validate_config(updates)
        with self._lock:
            self._config.update(clean)
        return self.config

    def reset_config(self) -> dict[str, Any]:
        return self.set_config(**DEFAULT_CONFIG)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    @property
    def requests(self) -> dict[str, dict[str, Any]]:
        """A snapshot of every known request (for tests and ``GET /_sim/requests``)."""
        now = time.time()
        with self._lock:
            return {rid: self._describe(req, now) for rid, req in self._requests.items()}

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        with self._lock:
            return self._keys[-1][1]

    @property
    def signing_kid(self) -> str:
        with self._lock:
            return self._keys[-1][0]

    def rotate_key(self, keep_old: bool = True) -> str:
        """Sign with a new key from now on; the JWKS keeps the old ones unless ``keep_old`` is False."""
        kid = f"falsim-{secrets.token_hex(6)}"
        key = Ed25519PrivateKey.generate()
        with self._lock:
            self._keys = [*self._keys, (kid, key)] if keep_old else [(kid, key)]
        return kid

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            keys = list(self._keys)
        out = []
        for kid, key in keys:
            raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            out.append({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig", "alg": "EdDSA"})
        return {"keys": out}

    def sign(self, request_id: str, timestamp: str, body: bytes) -> str:
        """Hex signature of one delivery, exactly as docs/fal.md describes."""
        message = f"{request_id}\n{self.user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
        return self.signing_key.sign(message).hex()

    # -- random draws -------------------------------------------------------------------

    def _chance(self, key: str) -> bool:
        with self._lock:
            rate = float(self._config[key])
            return rate > 0 and self._rng.random() < rate

    def _duration(self, key: str) -> float:
        with self._lock:
            value = self._config[key]
            if isinstance(value, list):
                return self._rng.uniform(value[0], value[1])
            return float(value)

    # -- queue API ------------------------------------------------------------------------

    def _submit(self, model_id: str, body: dict[str, Any], webhook_url: str | None) -> SimRequest:
        now = time.time()
        with self._lock:
            self._prune(now)
            segments = model_id.split("/")
            required = REQUIRED_INPUTS.get(model_id, ())
            req = SimRequest(
                seq=next(self._seq),
                request_id=str(uuid.uuid4()),  # never seeded: ids must not repeat across runs
                owner_app="/".join(segments[:2]),
                model_id=model_id,
                input=body,
                webhook_url=webhook_url,
                submitted_at=now,
                queue_s=self._duration("queue_s"),
                run_s=self._duration("run_s"),
                fails=self._chance("fail_rate"),
                missing_inputs=tuple(name for name in required if body.get(name) in (None, "")),
                video_size=media.served_size(len(self._video), int(self._config["video_bytes"])),
            )
            self._requests[req.request_id] = req
            self._stats["submits"] += 1
        self._schedule(req.done_at, lambda: self._finalize(req.request_id))
        return req

    def _find(self, owner_app: str, request_id: str) -> SimRequest | None:
        with self._lock:
            req = self._requests.get(request_id)
        return req if req is not None and req.owner_app == owner_app else None

    def _urls(self, req: SimRequest) -> dict[str, str]:
        root = f"{self.base_url}/{req.owner_app}/requests/{req.request_id}"
        return {"response_url": root, "status_url": f"{root}/status", "cancel_url": f"{root}/cancel"}

    def _queue_position(self, req: SimRequest, now: float) -> int:
        with self._lock:
            ahead = sum(
                1
                for other in self._requests.values()
                if not other.finalized and other.seq < req.seq and other.phase(now) == "IN_QUEUE"
            )
        return ahead + max(0, int(req.started_at - now))

    def _status_body(self, req: SimRequest, now: float, want_logs: bool) -> tuple[int, dict[str, Any]]:
        phase = req.phase(now)
        body: dict[str, Any] = {"status": phase, "request_id": req.request_id, **self._urls(req)}
        if phase == "IN_QUEUE":
            body["queue_position"] = self._queue_position(req, now)
            return 202, body
        body["logs"] = self._logs(req, now) if want_logs else None
        if phase == "IN_PROGRESS":
            return 202, body
        self._finalize(req.request_id)
        if req.cancel != "removed":
            body["metrics"] = {"inference_time": round(req.run_s, 3)}
        error = req.error
        if error is not None:
            body["error"], body["error_type"] = error
        return 200, body

    def _logs(self, req: SimRequest, now: float) -> list[dict[str, Any]]:
        def entry(at: float, message: str, level: str = "INFO") -> dict[str, Any]:
            stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
            return {"message": message, "level": level, "source": "user", "timestamp": stamp}

        if req.cancel == "removed":
            return []
        logs = [entry(req.started_at, "Starting generation")]
        for pct in (25, 50, 75):
            at = req.started_at + req.run_s * pct / 100
            if at <= now:
                logs.append(entry(at, f"Generating video: {pct}%"))
        if now >= req.done_at:
            if req.error is not None:
                logs.append(entry(req.done_at, "Generation failed", "ERROR"))
            else:
                logs.append(entry(req.done_at, "Generation complete"))
        return logs

    def _result_body(self, req: SimRequest) -> tuple[int, dict[str, Any]]:
        if req.cancel == "removed":
            return 400, {"detail": _CANCELLED_ERROR[0], "error_type": _CANCELLED_ERROR[1]}
        if req.error is not None:
            return 422, {"detail": req.failure_detail()}
        return 200, self._output(req)

    def _output(self, req: SimRequest) -> dict[str, Any]:
        return {
            "video": {
                "url": f"{self.base_url}/cdn/{req.request_id}.mp4",
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": req.video_size,
            },
            "seed": req.seq,
        }

    def _cancel(self, req: SimRequest, now: float) -> tuple[int, dict[str, Any]]:
        with self._lock:
            phase = req.phase(now)
            if phase == "COMPLETED" or req.finalized:
                return 400, {"status": "ALREADY_COMPLETED"}
            self._stats["cancel_requests"] += 1
            if phase == "IN_QUEUE":
                req.cancel, req.cancelled_at = "removed", now
                self._stats["cancelled"] += 1
            else:
                req.cancel = req.cancel or "signalled"
        if req.cancel == "removed":
            if self._chance("cancel_webhook_first_rate"):
                with self._lock:
                    self._stats["cancel_webhooks_first"] += 1
                self._finalize(req.request_id, inline=True)  # delivered before this call answers
            else:
                self._schedule(now, lambda: self._finalize(req.request_id))
        return 202, {"status": "CANCELLATION_REQUESTED"}

    def _finalize(self, request_id: str, *, inline: bool = False) -> None:
        """Once per request, when it reaches COMPLETED: count it and send its webhook (``inline``:
        the first delivery attempt on the caller's thread, without the configured delay)."""
        with self._lock:
            req = self._requests.get(request_id)
            if req is None or req.finalized or req.phase(time.time()) != "COMPLETED":
                return
            req.finalized = True
            req.completed_at = req.done_at
            self._stats["completed"] += 1
            if req.cancel != "removed":
                if req.missing_inputs:
                    self._stats["validation_failures"] += 1
                elif req.fails:
                    self._stats["failures"] += 1
            if not req.webhook_url:
                return
            req.webhook_body = json.dumps(self._webhook_payload(req)).encode()
            if self._chance("webhook_drop_rate"):
                self._stats["webhooks_dropped"] += 1
                return
            copies = 1
            if self._chance("webhook_duplicate_rate"):
                self._stats["webhooks_duplicated"] += 1
                copies = 2
            delay = self._duration("webhook_delay_s")
            if delay > 0:
                self._stats["webhooks_delayed"] += 1
        now = time.time()
        for copy in range(copies):
            if inline and copy == 0:
                self._deliver(req, copy, 1)
                continue
            self._schedule(now + delay + 0.05 * copy, self._delivery(req, copy, 1))

    def _webhook_payload(self, req: SimRequest) -> dict[str, Any]:
        base = {"request_id": req.request_id, "gateway_request_id": req.request_id}
        if req.cancel == "removed":
            return {**base, "status": "ERROR", "error": _CANCELLED_ERROR[0], "payload": {"detail": _CANCELLED_ERROR[0]}}
        if req.error is not None:
            return {**base, "status": "ERROR", "error": req.error[0], "payload": {"detail": req.failure_detail()}}
        if self._chance("webhook_payload_error_rate"):
            return {
                **base,
                "status": "OK",
                "payload": None,
                "payload_error": "Response payload is not JSON serializable (simulated)",
            }
        return {**base, "status": "OK", "payload": self._output(req), "error": None}

    # -- webhook delivery -----------------------------------------------------------------

    def _delivery(self, req: SimRequest, copy: int, attempt: int) -> Callable[[], None]:
        def hand_to_worker() -> None:
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
            "X-Fal-Webhook-User-Id": self.user_id,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": self.sign(req.request_id, timestamp, body),
        }
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = _http.Session()
        outcome: dict[str, Any] = {"copy": copy, "attempt": attempt, "at": time.time()}
        try:
            timeout = float(self.config["webhook_timeout_s"])
            resp = session.post(req.webhook_url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
            outcome["status_code"] = resp.status_code
            ok = 200 <= resp.status_code < 300
        except _http.RequestException as exc:
            outcome["error"] = type(exc).__name__
            ok = False
        with self._lock:
            req.deliveries.append(outcome)
            if ok:
                self._stats["webhooks_sent"] += 1
                return
            max_attempts = int(self._config["webhook_max_attempts"])
            base = float(self._config["webhook_retry_base_s"])
            if attempt >= max_attempts:
                self._stats["webhooks_failed"] += 1
                log.warning("webhook for %s gave up after %d attempts", req.request_id, attempt)
                return
            self._stats["webhook_retries"] += 1
        delay = min(30.0, base * 2 ** (attempt - 1))
        self._schedule(time.time() + delay, self._delivery(req, copy, attempt + 1))

    # -- threads ----------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _schedule(self, due: float, fn: Callable[[], None]) -> None:
        with self._timer_cond:
            if self._stopping.is_set():
                return
            heapq.heappush(self._timers, (due, next(self._seq), fn))
            self._timer_cond.notify()

    def _timer_loop(self) -> None:
        while not self._stopping.is_set():
            with self._timer_cond:
                while not self._stopping.is_set():
                    now = time.time()
                    if self._timers and self._timers[0][0] <= now:
                        break
                    timeout = (self._timers[0][0] - now) if self._timers else None
                    self._timer_cond.wait(timeout if timeout is None else max(0.001, timeout))
                if self._stopping.is_set():
                    return
                _, _, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:  # a broken callback must not kill the timer thread
                log.exception("falsim timer callback failed")

    def _worker_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stopping.is_set():
                return
            try:
                job()
            except Exception:
                log.exception("falsim webhook job failed")

    # -- housekeeping -------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        """Forget requests finished more than a day ago (caller holds the lock)."""
        old = [rid for rid, r in self._requests.items() if r.completed_at is not None and now - r.completed_at > 86400]
        for rid in old:
            del self._requests[rid]

    def _describe(self, req: SimRequest, now: float) -> dict[str, Any]:
        return {
            "request_id": req.request_id,
            "model_id": req.model_id,
            "status": req.phase(now),
            "input": req.input,
            "webhook_url": req.webhook_url,
            "queue_s": req.queue_s,
            "run_s": req.run_s,
            "failed": req.error is not None,
            "error": req.error[0] if req.error else None,
            "cancel": req.cancel,
            "video_size": req.video_size,
            "deliveries": list(req.deliveries),
        }

    # -- HTTP dispatch (called by the handler) -------------------------------------------------

    def handle(self, h: _Handler, method: str) -> None:
        url = urlsplit(h.path)
        path = url.path
        query = parse_qs(url.query)
        parts = [p for p in path.split("/") if p]
        if path == "/.well-known/jwks.json" and method in {"GET", "HEAD"}:
            h.send_json(200, self.jwks(), extra={"Cache-Control": "max-age=3600"})
            return
        if parts[:1] == ["_sim"]:
            self._handle_control(h, method, parts[1:])
            return
        if parts[:1] == ["cdn"] and len(parts) == 2 and method in {"GET", "HEAD"}:
            self._handle_cdn(h, method, parts[1])
            return
        if not parts or not all(_SEGMENT.match(p) and p not in {".", ".."} for p in parts):
            h.send_fal_error(404, "Not Found", "not_found")
            return
        if method == "POST" and len(parts) >= 2:
            if not self._authorized(h):
                return
            self._handle_submit(h, "/".join(parts), query)
            return
        if len(parts) in {4, 5} and parts[2] == "requests" and method in {"GET", "PUT"}:
            if not self._authorized(h):
                return
            self._handle_request(h, method, "/".join(parts[:2]), parts[3], parts[4:], query)
            return
        h.send_fal_error(404 if method in {"GET", "HEAD"} else 405, "Not Found", "not_found")

    def _authorized(self, h: _Handler) -> bool:
        auth = h.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme != "Key" or not key.strip():
            h.drain_body()
            h.send_fal_error(401, "Missing or invalid credentials (expected 'Authorization: Key ...')", "unauthorized")
            return False
        return True

    def _handle_submit(self, h: _Handler, model_id: str, query: dict[str, list[str]]) -> None:
        raw = h.read_body()
        if raw is None:
            return
        if self._chance("submit_error_rate"):
            with self._lock:
                self._stats["submit_errors"] += 1
                overload = self._rng.random() < 0.5
            if overload:
                h.send_fal_error(429, "Too many requests (simulated)", "rate_limited", extra={"Retry-After": "1"})
            else:
                h.send_fal_error(503, "Could not schedule a runner (simulated)", "runner_scheduling_failure")
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            detail = [{"loc": ["body"], "msg": "expected a JSON object", "type": "type_error.dict"}]
            h.send_json(422, {"detail": detail})
            return
        webhook: str | None = query.get("fal_webhook", [""])[0] or None
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            h.send_fal_error(400, "fal_webhook must be an http(s) URL", "bad_request")
            return
        req = self._submit(model_id, body, webhook)
        now = time.time()
        h.send_json(
            200,
            {
                "request_id": req.request_id,
                **self._urls(req),
                "queue_position": self._queue_position(req, now),
                "status": "IN_QUEUE",
            },
        )

    def _handle_request(
        self, h: _Handler, method: str, owner_app: str, request_id: str, rest: list[str], query: dict[str, list[str]]
    ) -> None:
        h.drain_body()
        req = self._find(owner_app, request_id)
        action = rest[0] if rest else ""
        now = time.time()
        if req is None:
            if method == "PUT" and action == "cancel":
                h.send_json(
                    404,
                    {"status": "NOT_FOUND", "detail": "Request not found", "error_type": "not_found"},
                    extra={"X-Fal-Error-Type": "not_found"},
                )
            else:
                h.send_fal_error(404, "Request not found", "not_found")
            return
        if method == "GET" and action == "status":
            want_logs = (query.get("logs") or ["0"])[0].lower() in {"1", "true"}
            status, body = self._status_body(req, now, want_logs)
            h.send_json(status, body)
        elif method == "GET" and action == "":
            if req.phase(now) != "COMPLETED":
                h.send_fal_error(400, "Request is still in progress", "request_in_progress")
                return
            self._finalize(req.request_id)
            if req.completed_at is not None and now - req.completed_at > float(self.config["result_ttl_s"]):
                h.send_fal_error(404, "Request result expired", "not_found")
                return
            status, body = self._result_body(req)
            h.send_json(status, body)
        elif method == "PUT" and action == "cancel":
            status, body = self._cancel(req, now)
            h.send_json(status, body)
        else:
            h.send_fal_error(405, "Method not allowed", "bad_request")

    def _handle_cdn(self, h: _Handler, method: str, name: str) -> None:
        req = None
        if name.endswith(".mp4"):
            self._finalize(name[: -len(".mp4")])
            with self._lock:
                req = self._requests.get(name[: -len(".mp4")])
        if req is None or not req.finalized or req.error is not None:
            h.send_plain(404, b"Not Found")
            return
        total = req.video_size
        headers = {
            "Content-Type": "video/mp4",
            "Content-Length": str(total),
            "Accept-Ranges": "none",
            "Cache-Control": "public, max-age=86400",
        }
        if method == "HEAD":
            h.send_head(200, headers)
            return
        if self._chance("cdn_error_rate"):
            with self._lock:
                self._stats["cdn_errors"] += 1
                truncate = self._rng.random() < 0.5
            if not truncate:
                h.send_plain(503, b"CDN unavailable (simulated)")
                return
            h.send_head(200, headers)
            h.stream(_truncated(media.padded_chunks(self._video, total), max(1, total // 2)))
            h.close_connection = True
            return
        h.send_head(200, headers)
        h.stream(media.padded_chunks(self._video, total))

    def _handle_control(self, h: _Handler, method: str, parts: list[str]) -> None:
        if parts == ["config"] and method == "GET":
            h.send_json(200, self.config)
        elif parts == ["config"] and method == "PUT":
            raw = h.read_body()
            if raw is None:
                return
            try:
                updates = json.loads(raw or b"{}")
                if not isinstance(updates, dict):
                    raise ValueError("expected a JSON object")
                h.send_json(200, self.set_config(**updates))
            except ValueError as exc:
                h.send_fal_error(400, str(exc), "bad_request")
        elif parts == ["stats"] and method == "GET":
            h.send_json(200, self.stats())
        elif parts == ["requests"] and method == "GET":
            h.send_json(200, self.requests)
        else:
            h.drain_body()
            h.send_fal_error(404, "Not Found", "not_found")


def _truncated(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) >= limit:
            yield chunk[: limit - sent]
            return
        sent += len(chunk)
        yield chunk


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "falsim/1"
    timeout = 30  # idle keep-alive connections are closed after this

    def _dispatch(self, method: str) -> None:
        sim: FalSimulator = self.server.sim  # type: ignore[attr-defined]
        if sim._server is None:  # stopped: do not keep answering on kept-alive connections
            self.close_connection = True
            return
        try:
            sim.handle(self, method)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("falsim handler failed")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send_fal_error(500, "Internal error (simulator bug)", "internal_error")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- helpers ---------------------------------------------------------------------------

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 413/400."""
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                self.send_fal_error(411, "Content-Length required", "bad_request")
                return None
            return b""
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            self.send_fal_error(400, "Bad Content-Length", "bad_request")
            return None
        if length > MAX_BODY:
            self.close_connection = True
            self.send_fal_error(413, "Request body too large", "bad_request")
            return None
        return self.rfile.read(length) if length > 0 else b""

    def drain_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and 0 < int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        elif length and length != "0":
            self.close_connection = True

    def send_head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def send_json(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(extra or {})}
        self.send_head(status, headers)
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_fal_error(self, status: int, detail: str, error_type: str, extra: dict[str, str] | None = None) -> None:
        headers = {"X-Fal-Error-Type": error_type, **(extra or {})}
        self.send_json(status, {"detail": detail, "error_type": error_type}, extra=headers)

    def send_plain(self, status: int, data: bytes) -> None:
        self.send_head(status, {"Content-Type": "text/plain", "Content-Length": str(len(data))})
        if self.command != "HEAD":
            self.wfile.write(data)

    def stream(self, chunks: Iterator[bytes]) -> None:
        for chunk in chunks:
            self.wfile.write(chunk)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)
