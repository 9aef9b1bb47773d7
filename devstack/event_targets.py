"""EventBridge rules whose target is a Lambda function, delivered locally.

moto's EventBridge matches a rule's pattern and delivers to log groups, SQS and other buses, but
not to Lambda. The template's ``EventBridgeRule`` events (e.g. MediaFunction on "Job Completed")
are created by :mod:`devstack.provision` as real rules on the bus with the function's ARN as
their target; :func:`apply` patches moto's ``Rule.send_to_targets`` so that, once moto's own
pattern matching let an event through, each Lambda target gets it from :func:`deliver_with`'s
callback — as AWS does, asynchronously (in a thread; the ``put_events`` call does not wait) and
retried twice on a handler error (Lambda's asynchronous invocation retries).

EventBridge delivers at least once: a target may get an event twice. :func:`set_duplicates`
(the local stack reads ``LOCAL_EVENT_DUPLICATE_RATE``, 0..1, and ``LOCAL_EVENT_DUPLICATE_SEED``
at start: :func:`duplicates_from_env`) makes each Lambda delivery happen a second time with that
probability, a moment later, so the at-most-once work behind an event (the notifier's one push
per job and device, the media function's one poster) is exercised; :data:`duplicated` counts
them. Only Lambda targets get duplicates: the catch-all log group the audit reads stays the
bus's own record of what was put.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

Deliver = Callable[[str, dict[str, Any]], Any]  # (function ARN, event) -> the handler's result

LAMBDA_ARN = "arn:aws:lambda:"
ASYNC_RETRIES = 2  # what Lambda retries an asynchronous invocation that failed
RETRY_PAUSE_S = 0.2  # locally short (Lambda waits about a minute, then two)

_deliver: Deliver | None = None
_applied = False
_lock = threading.Lock()
_inflight: set[threading.Thread] = set()
DUPLICATE_DELAY_S = (0.05, 1.0)  # how much later a duplicated delivery arrives
_duplicates = {"rate": 0.0}
_rng = random.Random()
duplicated = 0  # deliveries made twice on purpose since the stack started


def set_duplicates(rate: float, seed: int | None = None) -> None:
    """Each later Lambda delivery is made twice with probability ``rate`` (0: never)."""
    global duplicated
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"LOCAL_EVENT_DUPLICATE_RATE must be between 0 and 1, not {rate}")
    with _lock:
        _duplicates["rate"] = rate
        _rng.seed(seed)
        duplicated = 0


def duplicates_from_env(env: Mapping[str, str] = os.environ) -> None:
    seed = env.get("LOCAL_EVENT_DUPLICATE_SEED", "")
    set_duplicates(float(env.get("LOCAL_EVENT_DUPLICATE_RATE") or 0), int(seed) if seed else None)


def in_flight() -> int:
    """Deliveries under way (a handler running or waiting to retry): 0 once the targets are quiet."""
    with _lock:
        return len(_inflight)


def deliver_with(deliver: Deliver | None) -> None:
    """Who runs a Lambda target (the local stack's in-process handlers); None: events to Lambda
    targets are dropped, as no function exists."""
    global _deliver
    _deliver = deliver


def apply() -> None:
    """Patch moto's rules to deliver to Lambda targets (once per process)."""
    global _applied
    with _lock:
        if _applied:
            return
        from moto.events.models import Rule

        original = Rule.send_to_targets

        def send_to_targets(self: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
            lambdas = [t for t in self.targets if str(t.get("Arn", "")).startswith(LAMBDA_ARN)]
            others = [t for t in self.targets if t not in lambdas]
            if others:  # moto's own targets, by moto (it raises on a Lambda one): a copy of the rule
                rule = copy.copy(self)
                rule.targets = others
                original(rule, original_event, transform_input)
            if lambdas and self.event_pattern.matches_event(original_event):
                for target in lambdas:
                    _dispatch(str(target["Arn"]), lambda_event(original_event))

        Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
        _applied = True


def lambda_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a Lambda target receives it (moto keeps ``time`` as epoch seconds and adds
    ``ingestion-time``; EventBridge sends an RFC 3339 ``time``)."""
    out = {k: v for k, v in event.items() if k != "ingestion-time"}
    if isinstance(out.get("time"), (int, float)):
        out["time"] = datetime.fromtimestamp(float(out["time"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def _dispatch(arn: str, event: dict[str, Any]) -> None:
    global duplicated
    deliver = _deliver
    if deliver is None:
        return
    with _lock:
        twice = _duplicates["rate"] > 0 and _rng.random() < _duplicates["rate"]
        delay = _rng.uniform(*DUPLICATE_DELAY_S) if twice else 0.0
        duplicated += twice
    for pause in (0.0, delay) if twice else (0.0,):
        args = (deliver, arn, copy.deepcopy(event), pause)
        thread = threading.Thread(target=_run, args=args, name="eventbridge-target", daemon=True)
        with _lock:
            _inflight.add(thread)
        thread.start()


def _run(deliver: Deliver, arn: str, event: dict[str, Any], pause: float = 0.0) -> None:
    try:
        time.sleep(pause)
        for attempt in range(ASYNC_RETRIES + 1):
            if attempt and _deliver is not deliver:  # the stack stopped: no retry against a dead moto
                return
            try:
                deliver(arn, event)
                return
            except Exception:
                name = arn.rsplit(":", 1)[-1]
                logger.warning("event target %s failed (attempt %d)", name, attempt + 1, exc_info=True)
                time.sleep(RETRY_PAUSE_S)
        logger.error("event target %s gave up on event %s", arn.rsplit(":", 1)[-1], event.get("id"))
    finally:
        with _lock:
            _inflight.discard(threading.current_thread())


def drain(timeout_s: float = 10.0) -> None:
    """Wait (bounded) for the deliveries under way, e.g. before a stack stops its moto."""
    deadline = time.monotonic() + timeout_s
    while True:
        with _lock:
            running = list(_inflight)
        if not running or time.monotonic() >= deadline:
            return
        running[0].join(max(0.0, deadline - time.monotonic()))
