"""The pause between optimistic retries (a lost conditional write, re-read and try again)."""

from __future__ import annotations

import random
import time


def backoff(attempt: int, base_s: float = 0.01, cap_s: float = 0.2) -> None:
    """Full-jitter sleep before retry number ``attempt`` (0-based)."""
    time.sleep(random.uniform(0, min(cap_s, base_s * 2**attempt)))
