"""Per-user limits: the request rate (GCRA) and the daily credit-spend cap. Pure functions.

The ONE place deciding whether a user's request may write. Submit and POST /v1/uploads call
:func:`admit` (uploads first :func:`admit_unread`; a cancel never counts, nor is refused:
docs/api.md); the store writes the new state (:class:`Usage`) in
the same transaction as the request's own change, conditioned on the state the decision read
(:class:`Balance`), so two concurrent requests cannot both pass on one snapshot.

Rate: GCRA (generic cell rate algorithm). One stored value per user, the theoretical arrival
time ``tat`` (epoch milliseconds: an integer, so the store's "still the value seen" condition is
an exact comparison). With ``interval = 60 s / per_minute`` and ``tolerance = (burst - 1) *
interval``: a request at ``now`` is allowed iff ``max(tat, now) - now <= tolerance``; then
``tat = max(tat, now) + interval``. So ``burst`` requests pass at once, then one per interval;
a refused request waits ``max(tat, now) - tolerance - now``.

Spend: the credits charged on the current UTC day (``spend_day``, ``spend_credits``); a charge
that would take the day over ``daily_credit_cap`` is refused until the next UTC midnight.
Refunds do not give the day's budget back (the refund transaction adds blindly and cannot know
which day a charge counted on; the cap bounds how fast an account can be spent, and a refunded
job did take fal's time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from videogen.domain.errors import RateLimited, ValidationFailed
from videogen.domain.models import Balance


@dataclass(frozen=True)
class UserLimits:
    """``requests_per_minute``/``burst``: the budget of submits that charge and uploads;
    ``daily_credit_cap``: credits a user may be charged per UTC day (0: no cap)."""

    requests_per_minute: int = 30
    burst: int = 10
    daily_credit_cap: int = 0

    def __post_init__(self) -> None:
        if self.requests_per_minute < 1 or self.burst < 1 or self.daily_credit_cap < 0:
            raise ValueError("requests_per_minute and burst must be >= 1, daily_credit_cap >= 0")

    @property
    def interval_ms(self) -> int:
        return max(1, round(60_000 / self.requests_per_minute))

    @property
    def tolerance_ms(self) -> int:
        return (self.burst - 1) * self.interval_ms


@dataclass(frozen=True)
class Usage:
    """The limit state a request that passed writes (conditioned on the values it was decided on)."""

    rl_tat_ms: int
    spend_day: str | None = None  # None: the request charges nothing: spend untouched
    spend_credits: int = 0
    # Set by :func:`admit_unread`: decided without reading the state, on the assumption that the
    # user's ``tat`` is at most this (an idle user); the store conditions on that instead.
    idle_at_ms: int | None = None


def utc_day(now_ms: int) -> str:
    return datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%d")


def _seconds(ms: float) -> int:
    """A wait as Retry-After says it: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(ms / 1000))


def _until_midnight_ms(now_ms: int) -> int:
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return int(midnight.timestamp() * 1000) - now_ms


def spent_today(seen: Balance, now_ms: int) -> int:
    return seen.spend_credits if seen.spend_day == utc_day(now_ms) else 0


def check_within_cap(limits: UserLimits, charge: int) -> None:
    """A request whose price alone is over the daily cap can never be admitted, on any day:
    ``422 validation_failed`` (the app must change the input), not a ``429`` it would retry at
    every midnight forever. Decided before the balance is looked at."""
    if limits.daily_credit_cap and charge > limits.daily_credit_cap:
        raise ValidationFailed(
            [
                {
                    "loc": "input",
                    "msg": f"this request costs {charge} credits, more than the daily spending cap of "
                    f"{limits.daily_credit_cap} credits: choose cheaper inputs (e.g. a shorter duration)",
                }
            ],
            detail=f"The request costs more than the daily spending cap of {limits.daily_credit_cap} credits",
        )


def admit_unread(limits: UserLimits, now_ms: int) -> Usage:
    """The state a request that charges nothing writes if the user's rate state is idle
    (``tat <= now``: then ``max(tat, now) = now``, whatever ``tat`` is), decided with no read: the
    write that carries it is conditioned on that, and when it fails it returns the state as stored
    for :func:`admit` to decide on. A user who is not bursting costs no read at all."""
    return Usage(rl_tat_ms=now_ms + limits.interval_ms, idle_at_ms=now_ms)


def admit(limits: UserLimits, seen: Balance, now_ms: int, *, charge: int = 0) -> Usage:
    """The new limit state if a request (charging ``charge`` credits) may write now, decided on
    the snapshot ``seen``; else :class:`RateLimited` with the seconds until it would be allowed."""
    if charge and limits.daily_credit_cap:
        spent = spent_today(seen, now_ms)
        if spent + charge > limits.daily_credit_cap:
            raise RateLimited(
                f"The daily spending cap of {limits.daily_credit_cap} credits would be exceeded "
                f"({spent} spent today, UTC; this request costs {charge}); it resets at 00:00 UTC",
                retry_after_s=_seconds(_until_midnight_ms(now_ms)),
            )
    tat = max(seen.rl_tat_ms or 0, now_ms)
    if tat - now_ms > limits.tolerance_ms:
        raise RateLimited(
            f"Too many requests: at most {limits.burst} at once and {limits.requests_per_minute} per minute",
            retry_after_s=_seconds(tat - limits.tolerance_ms - now_ms),
        )
    if not charge:
        return Usage(rl_tat_ms=tat + limits.interval_ms)
    return Usage(
        rl_tat_ms=tat + limits.interval_ms,
        spend_day=utc_day(now_ms),
        spend_credits=spent_today(seen, now_ms) + charge,
    )
