"""Pauses and bounded retries for optimistic writes and for DynamoDB's transaction conflicts."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How many times one DynamoDB call is tried while it loses to a concurrent transaction
# (TransactionConflict) before the store gives up with StoreBusy (docs/api.md, "Contention").
CONFLICT_ATTEMPTS = 5


def backoff(attempt: int, base_s: float = 0.01, cap_s: float = 0.2) -> None:
    """Full-jitter sleep before retry number ``attempt`` (0-based)."""
    time.sleep(random.uniform(0, min(cap_s, base_s * 2**attempt)))


def retry_conflicts(
    call: Callable[[], T],
    *,
    conflicted: Callable[[Exception], bool],
    exhausted: Callable[[Exception], Exception],
    attempts: int = CONFLICT_ATTEMPTS,
    pause: Callable[[int], None] = backoff,
) -> T:
    """``call()``, tried again after ``pause(attempt)`` while it raises an error ``conflicted``
    says is a lost conflict (nothing was written); after ``attempts`` tries, ``exhausted(last
    error)`` is raised instead. Any other error propagates at once."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if not conflicted(exc):
                raise
            if attempt == attempts - 1:
                raise exhausted(exc) from None
            pause(attempt)
    raise AssertionError("attempts must be at least 1")
