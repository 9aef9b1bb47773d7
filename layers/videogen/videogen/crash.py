"""Crash points: places right after a write where the code can be made to die.

They exist to prove that the system reaches the right end state whatever step
a Lambda dies after. They are honoured only when ``ENVIRONMENT`` is ``local``
or ``test`` — never in a deployed stack — and are armed either by tests
(:func:`arm`) or by the local stack's environment: ``CRASH_POINTS`` (comma
separated names, or ``*``) with ``CRASH_RATE`` (probability per pass, 0–1; the first
pass of each of them always crashes, so a run that reaches a point proves it once).
"""

from __future__ import annotations

import random
import threading
from collections import Counter

from videogen.config import get_settings

AFTER_SUBMIT_TRANSACTION = "after_submit_transaction"  # job charged, execution not started
AFTER_FAL_SUBMIT = "after_fal_submit"  # fal accepted, request id not stored
AFTER_S3_UPLOAD = "after_s3_upload"  # video in S3, job not yet completed
AFTER_TRANSITION = "after_transition"  # job terminal, event not yet published

ALL = (AFTER_SUBMIT_TRANSACTION, AFTER_FAL_SUBMIT, AFTER_S3_UPLOAD, AFTER_TRANSITION)


class CrashPointReached(Exception):
    """Raised at an armed crash point: the caller behaves as if the Lambda died here.

    The local Lambda runner reports it with Lambda's error type for a dead runtime, so
    the state machine's Retry treats it exactly like a real crash.
    """

    lambda_error_type = "Runtime.ExitError"


_lock = threading.Lock()
_armed: Counter[str] = Counter()
fired: Counter[str] = Counter()


def arm(name: str, times: int = 1) -> None:
    """Make the next ``times`` passes through ``name`` crash (tests only)."""
    if name not in ALL:
        raise ValueError(f"unknown crash point {name!r}")
    with _lock:
        _armed[name] += times


def disarm() -> None:
    with _lock:
        _armed.clear()
        fired.clear()


def point(name: str) -> None:
    settings = get_settings()
    if not settings.is_local:
        return
    with _lock:
        if _armed[name] > 0:
            _armed[name] -= 1
            fired[name] += 1
            raise CrashPointReached(name)
        names = {n.strip() for n in settings.crash_points.split(",") if n.strip()}
        # The first pass of each point armed by the environment always crashes, then each pass at
        # CRASH_RATE: a run that reaches a point proves its recovery at least once, whatever the draws.
        if (name in names or "*" in names) and (not fired[name] or random.random() < settings.crash_rate):
            fired[name] += 1
            raise CrashPointReached(name)
