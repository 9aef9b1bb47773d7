"""Credit grants (services/credits.py): the id and amount rules at their edges, once per grant id."""

from __future__ import annotations

import logging

import pytest

from tests.fakes.store import FakeStore
from videogen.domain.errors import BadRequest
from videogen.domain.models import LedgerType
from videogen.services.credits import grant_credits

USER_RULE = "user id must be 1-128 characters of letters, digits and ._:@|+=-"
GRANT_RULE = "grant id must be 1-128 characters of letters, digits and ._:@|+=-"
CREDITS_RULE = "credits must be an integer between 1 and 1000000"


def test_a_grant_applies_once_per_grant_id_with_one_ledger_entry() -> None:
    store = FakeStore()
    assert grant_credits(store, user_id="u-1", credits=7, grant_id="g-1") is True
    assert grant_credits(store, user_id="u-1", credits=7, grant_id="g-1") is False
    assert store.get_balance("u-1").balance == 7
    assert [(e.type, e.amount) for e in store.ledger("u-1")] == [(LedgerType.GRANT, 7)]
    assert grant_credits(store, user_id="u-1", credits=2, grant_id="g-2") is True  # another grant applies
    assert store.get_balance("u-1").balance == 9


@pytest.mark.parametrize("user_id", ["a", "A9._:@|+=-", "u" * 128])
@pytest.mark.parametrize("grant_id", ["g", "G9._:@|+=-", "g" * 128])
def test_ids_at_the_edges_of_the_rule_are_taken(user_id: str, grant_id: str) -> None:
    store = FakeStore()
    assert grant_credits(store, user_id=user_id, credits=1, grant_id=grant_id) is True
    assert store.get_balance(user_id).balance == 1


@pytest.mark.parametrize("bad", ["", "u" * 129, "a b", "ü", "a/b"])
def test_a_user_id_outside_the_rule_is_refused_before_the_store(bad: str) -> None:
    store = FakeStore()
    with pytest.raises(BadRequest) as refused:
        grant_credits(store, user_id=bad, credits=1, grant_id="g-1")
    assert refused.value.detail == USER_RULE
    assert "grant" not in store.calls


@pytest.mark.parametrize("bad", ["", "g" * 129, "g 1", "g\n"])
def test_a_grant_id_outside_the_rule_is_refused_before_the_store(bad: str) -> None:
    store = FakeStore()
    with pytest.raises(BadRequest) as refused:
        grant_credits(store, user_id="u-1", credits=1, grant_id=bad)
    assert refused.value.detail == GRANT_RULE
    assert "grant" not in store.calls


@pytest.mark.parametrize("credits", [1, 2, 999_999, 1_000_000])
def test_amounts_from_one_to_a_million_are_granted(credits: int) -> None:
    store = FakeStore()
    assert grant_credits(store, user_id="u-1", credits=credits, grant_id="g-1") is True
    assert store.get_balance("u-1").balance == credits


@pytest.mark.parametrize("credits", [0, -1, 1_000_001, True, False, 1.0, "5", None])
def test_other_amounts_are_refused(credits: object) -> None:
    store = FakeStore()
    with pytest.raises(BadRequest) as refused:
        grant_credits(store, user_id="u-1", credits=credits, grant_id="g-1")  # type: ignore[arg-type]
    assert refused.value.detail == CREDITS_RULE
    assert store.get_balance("u-1").balance == 0


def test_each_grant_is_logged_with_who_what_and_whether_it_applied(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    with caplog.at_level(logging.INFO):
        grant_credits(store, user_id="u-1", credits=3, grant_id="g-1")
        grant_credits(store, user_id="u-1", credits=3, grant_id="g-1")
    grants = [r for r in caplog.records if r.getMessage() == "credit grant"]
    assert [(r.user_id, r.grant_id, r.credits, r.applied) for r in grants] == [  # type: ignore[attr-defined]
        ("u-1", "g-1", 3, True),
        ("u-1", "g-1", 3, False),
    ]
