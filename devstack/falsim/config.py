"""The simulator's settings: their defaults and the one check every change goes through."""

from __future__ import annotations

import math
from typing import Any

DEFAULT_CONFIG: dict[str, Any] = {
    "queue_s": 1.0,  # time in IN_QUEUE (number or [min, max])
    "run_s": 2.0,  # time in IN_PROGRESS (number or [min, max])
    "webhook_delay_s": 0.0,  # extra delay before a webhook goes out (number or [min, max])
    "fail_rate": 0.0,  # runs that finish COMPLETED + a generic error (result 500 internal_error)
    "invalid_input_rate": 0.0,  # runs that finish with a 422 validation error naming an image input
    "content_policy_rate": 0.0,  # runs that finish with a 422 content_policy_violation naming the prompt
    "provider_timeout_rate": 0.0,  # runs that finish with fal's 504 request_timeout
    "submit_error_rate": 0.0,  # submits answered 503 runner_scheduling_failure or 429
    "submit_reject_rate": 0.0,  # submits answered a final 403 account_locked (submit_failed)
    "webhook_drop_rate": 0.0,  # webhooks never sent
    "webhook_duplicate_rate": 0.0,  # webhooks sent twice
    "webhook_payload_error_rate": 0.0,  # OK webhooks with payload null + payload_error
    "cdn_error_rate": 0.0,  # CDN answers truncated (Content-Length then early close) or 5xx
    "bad_media_rate": 0.0,  # runs whose CDN URL serves text/plain instead of the video (media_rejected)
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
        "invalid_input_rate",
        "content_policy_rate",
        "provider_timeout_rate",
        "submit_error_rate",
        "submit_reject_rate",
        "webhook_drop_rate",
        "webhook_duplicate_rate",
        "webhook_payload_error_rate",
        "cdn_error_rate",
        "bad_media_rate",
        "cancel_webhook_first_rate",
    }
)
_INT_KEYS = frozenset({"video_bytes", "webhook_max_attempts"})
_NUMBER_KEYS = frozenset({"webhook_retry_base_s", "webhook_timeout_s", "result_ttl_s"})
_MAX_INT = 2**62  # beyond any video the padding can describe, and any retry count worth having
# Every duration ("_s") is at most a day: longer is no test worth running, and far longer ones
# overflow the timer thread's wait (threading.TIMEOUT_MAX) or the sockets' timeouts.
MAX_SECONDS = 86_400.0


def _is_number(value: Any) -> bool:
    """A finite int or float (JSON's NaN and Infinity, and booleans, are not settings)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
                if len(value) != 2 or not all(_is_number(v) for v in value):
                    raise ValueError(f"{key}: expected a number or [min, max]")
                lo, hi = float(value[0]), float(value[1])
                if not 0 <= lo <= hi <= MAX_SECONDS:
                    raise ValueError(f"{key}: expected 0 <= min <= max <= {MAX_SECONDS:g} seconds")
                clean[key] = [lo, hi]
                continue
            if not _is_number(value) or not 0 <= value <= MAX_SECONDS:
                raise ValueError(f"{key}: expected a number of seconds from 0 to {MAX_SECONDS:g}, or [min, max]")
            clean[key] = float(value)
        elif key in _RATE_KEYS:
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"{key}: expected a rate between 0 and 1")
            clean[key] = float(value)
        elif key in _INT_KEYS:
            minimum = 1 if key == "webhook_max_attempts" else 0
            if not isinstance(value, int) or not minimum <= value < _MAX_INT:
                raise ValueError(f"{key}: expected an integer >= {minimum} and < 2**62")
            clean[key] = value
        elif key in _NUMBER_KEYS:
            if not _is_number(value) or not 0 <= value <= MAX_SECONDS:
                raise ValueError(f"{key}: expected a number of seconds from 0 to {MAX_SECONDS:g}")
            clean[key] = float(value)
    return clean
