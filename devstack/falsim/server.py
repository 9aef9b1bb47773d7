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
* ``GET|PUT /_sim/config``, ``GET /_sim/stats``, ``GET /_sim/requests``: control and inspection
  (each request's view counts the ``status_calls``, ``result_calls`` and ``cancel_calls`` made on it).

Every request that finishes (OK or ERROR) and was submitted with ``fal_webhook`` gets a signed
webhook POST, retried with backoff on non-2xx answers or connection errors.

Not simulated: ``X-Fal-Request-Timeout``, queue priorities, the account concurrency limit.

The parts, one concept each: ``config`` (settings and their check), ``faults`` (the seeded draws
they drive), ``lifecycle`` (one request's phases and answers), ``queue_state`` (the requests and
the queue API's operations), ``timers``, ``signing`` (keys, JWKS), ``webhooks`` (delivery and
retries), ``cdn`` (video downloads), ``routes`` (paths to operations), ``transport`` (waitress).
This module puts them together; its names are the package's public ones.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devstack.falsim import media
from devstack.falsim.config import DEFAULT_CONFIG, validate_config
from devstack.falsim.faults import FaultPlan
from devstack.falsim.lifecycle import REQUIRED_INPUTS, SimRequest
from devstack.falsim.queue_state import RequestQueue
from devstack.falsim.routes import Router
from devstack.falsim.signing import Keyring
from devstack.falsim.stats import STAT_KEYS, Stats
from devstack.falsim.timers import Scheduler
from devstack.falsim.transport import MAX_BODY, http_server
from devstack.falsim.webhooks import WebhookSender

__all__ = [
    "DEFAULT_CONFIG",
    "MAX_BODY",
    "REQUIRED_INPUTS",
    "STAT_KEYS",
    "FalSimulator",
    "SimRequest",
    "validate_config",
]

log = logging.getLogger("falsim")


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
        self.user_id = user_id
        self._plan = FaultPlan(seed)
        self._stats = Stats()
        self._keyring = Keyring(user_id)
        self._scheduler = Scheduler()
        self._webhooks = WebhookSender(self._keyring, self._plan, self._stats, self._scheduler, webhook_workers)
        self._video = b""
        self._queue = RequestQueue(
            self._plan, self._stats, self._scheduler, self._webhooks, lambda: self.base_url, lambda: len(self._video)
        )
        router = Router(self._queue, self._keyring, self._plan, self._stats, lambda: self._video)
        self._http = http_server(router, host, port)
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FalSimulator:
        if self._started:
            raise RuntimeError("simulator already started")
        self._video = media.sample_mp4()
        self._keyring.ensure_key()
        self._http.start()
        self._started = True
        self._scheduler.start()
        self._webhooks.start()
        log.info("fal simulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._scheduler.stop()
        self._webhooks.stop()
        self._http.stop()

    def __enter__(self) -> FalSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    # -- control ------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        return self._plan.config

    def set_config(self, **updates: Any) -> dict[str, Any]:
        """Change any subset of the config keys (ValueError on an unknown key or bad value)."""
        return self._plan.update(**updates)

    def reset_config(self) -> dict[str, Any]:
        return self.set_config(**DEFAULT_CONFIG)

    def stats(self) -> dict[str, int]:
        return self._stats.snapshot()

    @property
    def requests(self) -> dict[str, dict[str, Any]]:
        """A snapshot of every known request (for tests and ``GET /_sim/requests``)."""
        return self._queue.snapshot()

    # -- webhook signing ----------------------------------------------------------------

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return self._keyring.signing_key

    @property
    def signing_kid(self) -> str:
        return self._keyring.signing_kid

    def rotate_key(self, keep_old: bool = True) -> str:
        """Sign with a new key from now on; the JWKS keeps the old ones unless ``keep_old`` is False."""
        return self._keyring.rotate(keep_old)

    def jwks(self) -> dict[str, Any]:
        return self._keyring.jwks()

    def sign(self, request_id: str, timestamp: str, body: bytes) -> str:
        """Hex signature of one delivery, exactly as docs/fal.md describes."""
        return self._keyring.sign(request_id, timestamp, body)
