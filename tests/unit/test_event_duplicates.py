"""Duplicated EventBridge deliveries (devstack/event_targets.py, LOCAL_EVENT_DUPLICATE_RATE): at
rate 1 every Lambda delivery happens twice, at 0 once; each duplicate is counted, and the
deliveries under way drain to 0."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from devstack import event_targets

ARN = "arn:aws:lambda:us-east-1:123456789012:function:notifier"


@pytest.fixture
def received() -> Iterator[Counter[str]]:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def deliver(arn: str, event: dict[str, Any]) -> None:
        with lock:
            seen[str(event["id"])] += 1

    event_targets.deliver_with(deliver)
    try:
        yield seen
    finally:
        event_targets.deliver_with(None)
        event_targets.drain()
        event_targets.set_duplicates(0.0)


def _send(n: int) -> None:
    for i in range(n):
        event_targets._dispatch(ARN, {"id": f"e{i}", "detail": {"job_id": f"j{i}"}})
    event_targets.drain(timeout_s=10)


def test_rate_one_delivers_every_event_twice(received: Counter[str]) -> None:
    event_targets.duplicates_from_env({"LOCAL_EVENT_DUPLICATE_RATE": "1", "LOCAL_EVENT_DUPLICATE_SEED": "3"})
    _send(5)
    assert received == Counter({f"e{i}": 2 for i in range(5)})
    assert event_targets.duplicated == 5
    assert event_targets.in_flight() == 0


def test_unset_delivers_once(received: Counter[str]) -> None:
    event_targets.duplicates_from_env({})
    _send(5)
    assert received == Counter({f"e{i}": 1 for i in range(5)})
    assert event_targets.duplicated == 0


def test_a_rate_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match="LOCAL_EVENT_DUPLICATE_RATE"):
        event_targets.duplicates_from_env({"LOCAL_EVENT_DUPLICATE_RATE": "1.5"})
