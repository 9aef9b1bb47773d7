"""The simulator's counters (``GET /_sim/stats``): what it did and which faults it injected."""

from __future__ import annotations

import threading
from collections import Counter

STAT_KEYS = (
    "submits",
    "submit_errors",
    "submit_rejections",
    "completed",
    "failures",
    "validation_failures",
    "invalid_input_failures",
    "content_policy_failures",
    "provider_timeout_failures",
    "cancel_requests",
    "cancelled",
    "webhooks_sent",
    "webhook_retries",
    "webhooks_failed",
    "webhooks_dropped",
    "webhooks_duplicated",
    "webhooks_delayed",
    "webhooks_without_payload",
    "cdn_errors",
    "bad_media",
    "cancel_webhooks_first",
)


class Stats:
    """Thread-safe counters, every key of STAT_KEYS present from the start; a leaf lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter({key: 0 for key in STAT_KEYS})

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
