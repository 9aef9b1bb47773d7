"""The per-user limits as pure functions (videogen.domain.limits): GCRA edge cases and the daily cap."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from videogen.domain.errors import RateLimited, ValidationFailed
from videogen.domain.limits import Usage, UserLimits, admit, admit_unread, check_within_cap, utc_day
from videogen.domain.models import Balance

NOON = int(datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp() * 1000)
LIMITS = UserLimits(requests_per_minute=30, burst=10)  # one per 2 s, 10 at once


def run(limits: UserLimits, times_ms: list[int], seen: Balance | None = None) -> list[bool]:
    """Each request at its time, the state written when it passes, as the store would."""
    state = seen or Balance()
    out = []
    for t in times_ms:
        try:
            usage = admit(limits, state, t)
        except RateLimited:
            out.append(False)
            continue
        state = Balance(rl_tat_ms=usage.rl_tat_ms)
        out.append(True)
    return out


def test_a_fresh_user_gets_the_whole_burst_at_once_and_not_one_more() -> None:
    assert run(LIMITS, [NOON] * 11) == [True] * 10 + [False]


def test_after_the_burst_one_request_per_interval_passes() -> None:
    times = [NOON] * 10 + [NOON + 1999, NOON + 2000, NOON + 2001, NOON + 4000]
    assert run(LIMITS, times) == [True] * 10 + [False, True, False, True]


def test_a_refused_request_is_told_the_real_wait_rounded_up_to_whole_seconds() -> None:
    state = Balance(rl_tat_ms=NOON + 10 * 2000)  # the burst spent at NOON
    with pytest.raises(RateLimited) as refused:
        admit(LIMITS, state, NOON)
    assert refused.value.retry_after_s == 2 and refused.value.code == "rate_limited"
    with pytest.raises(RateLimited) as later:
        admit(LIMITS, state, NOON + 500)  # 1.5 s left: 2
    assert later.value.retry_after_s == 2
    with pytest.raises(RateLimited) as nearly:
        admit(LIMITS, state, NOON + 1999)  # 1 ms left: at least 1
    assert nearly.value.retry_after_s == 1
    admit(LIMITS, state, NOON + 2000)  # exactly then: allowed


def test_a_tat_in_the_past_counts_as_now_so_idle_time_is_not_banked_beyond_the_burst() -> None:
    long_ago = Balance(rl_tat_ms=NOON - 3_600_000)
    assert run(LIMITS, [NOON] * 11, long_ago) == [True] * 10 + [False]


def test_burst_one_is_a_plain_interval() -> None:
    limits = UserLimits(requests_per_minute=60, burst=1)
    assert run(limits, [NOON, NOON + 999, NOON + 1000]) == [True, False, True]


def test_a_refusal_is_not_counted() -> None:
    """Retrying while refused does not push the allowed time further out."""
    state = Balance(rl_tat_ms=NOON + 10 * 2000)
    for t in range(NOON, NOON + 2000, 100):
        with pytest.raises(RateLimited):
            admit(LIMITS, state, t)
    assert admit(LIMITS, state, NOON + 2000).rl_tat_ms == NOON + 22_000


def test_settings_out_of_range_are_refused() -> None:
    for bad in ({"requests_per_minute": 0}, {"burst": 0}, {"daily_credit_cap": -1}):
        with pytest.raises(ValueError):
            UserLimits(**bad)  # type: ignore[arg-type]


# --- the daily credit-spend cap --------------------------------------------------------------------


def test_without_a_cap_a_charge_is_still_recorded_for_the_day() -> None:
    usage = admit(UserLimits(), Balance(), NOON, charge=500)
    assert usage == Usage(rl_tat_ms=NOON + 2000, spend_day="2026-12-02", spend_credits=500)


def test_the_cap_allows_up_to_its_amount_and_refuses_beyond_until_utc_midnight() -> None:
    limits = UserLimits(daily_credit_cap=20)
    seen = Balance(spend_day="2026-12-02", spend_credits=15)
    assert admit(limits, seen, NOON, charge=5).spend_credits == 20  # exactly the cap
    with pytest.raises(RateLimited) as over:
        admit(limits, seen, NOON, charge=6)
    assert over.value.retry_after_s == 12 * 3600  # noon to midnight UTC
    assert "daily spending cap of 20 credits" in over.value.detail and "15 spent today" in over.value.detail


def test_yesterdays_spend_does_not_count_today() -> None:
    limits = UserLimits(daily_credit_cap=20)
    usage = admit(limits, Balance(spend_day="2026-12-01", spend_credits=20), NOON, charge=20)
    assert (usage.spend_day, usage.spend_credits) == ("2026-12-02", 20)


def test_a_second_before_midnight_waits_one_second() -> None:
    last = int(datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)
    with pytest.raises(RateLimited) as over:
        admit(UserLimits(daily_credit_cap=1), Balance(spend_day=utc_day(last), spend_credits=1), last, charge=1)
    assert over.value.retry_after_s == 1


def test_a_request_that_charges_nothing_leaves_the_spend_alone_and_ignores_the_cap() -> None:
    seen = Balance(spend_day="2026-12-02", spend_credits=99)
    usage = admit(UserLimits(daily_credit_cap=1), seen, NOON)
    assert usage.spend_day is None and usage.rl_tat_ms == NOON + 2000


def test_the_cap_is_checked_before_the_rate_so_the_longer_wait_is_told() -> None:
    seen = Balance(rl_tat_ms=NOON + 30_000, spend_day="2026-12-02", spend_credits=1)
    with pytest.raises(RateLimited) as over:
        admit(UserLimits(daily_credit_cap=1), seen, NOON, charge=1)
    assert over.value.retry_after_s == 12 * 3600


def test_a_price_over_the_cap_on_its_own_is_a_422_naming_the_cap_and_the_price() -> None:
    with pytest.raises(ValidationFailed) as never:
        check_within_cap(UserLimits(daily_credit_cap=20), 21)
    assert never.value.status == 422 and never.value.errors[0]["loc"] == "input"
    assert "costs 21 credits" in never.value.errors[0]["msg"] and "cap of 20" in never.value.errors[0]["msg"]


def test_a_price_at_the_cap_or_without_a_cap_passes_the_check() -> None:
    check_within_cap(UserLimits(daily_credit_cap=20), 20)
    check_within_cap(UserLimits(), 10_000)


def test_admit_unread_is_what_admit_decides_for_any_idle_state() -> None:
    """Idle (tat <= now): max(tat, now) = now, so the new state does not depend on the unread tat."""
    usage = admit_unread(LIMITS, NOON)
    assert usage == Usage(rl_tat_ms=NOON + 2000, idle_at_ms=NOON)
    for tat in (None, 0, NOON - 1, NOON):
        assert admit(LIMITS, Balance(rl_tat_ms=tat), NOON).rl_tat_ms == usage.rl_tat_ms
