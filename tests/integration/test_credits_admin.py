"""Credit grants: one operation, idempotent by grant id, with a ledger entry; and the admin CLI."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from videogen.admin import main as admin
from videogen.domain.errors import BadRequest, GrantConflict, StoreBusy
from videogen.services.credits import grant_credits


def test_grant_is_idempotent_by_grant_id_even_concurrently_and_under_contention(stack):
    """20 concurrent grants of one id, with every DynamoDB write liable to lose to a concurrent
    transaction (injected): each call is applied, already applied, or StoreBusy (nothing
    changed); the grant is applied at most once, and exactly once if any call got through; the
    balance is the ledger's. A retry after the contention applies what is missing, once."""
    from devstack import moto_patches

    moto_patches.set_conflicts(0.5, ["TransactWriteItems"], seed=20)

    def grant(_):
        try:
            return grant_credits(stack.store, user_id="dora", credits=30, grant_id="g-1")
        except StoreBusy:
            return "busy"

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(grant, range(20)))
    injected = moto_patches.FAULT.injected["TransactWriteItems"]
    moto_patches.set_conflicts(0)
    assert injected > 0
    assert outcomes.count(True) <= 1
    if True in outcomes or False in outcomes:
        assert outcomes.count(True) == 1
    applied = outcomes.count(True)
    assert stack.store.get_balance("dora").balance == 30 * applied == stack.store.ledger_totals("dora")["grant"]
    assert grant_credits(stack.store, user_id="dora", credits=30, grant_id="g-1") is (applied == 0)
    assert grant_credits(stack.store, user_id="dora", credits=5, grant_id="g-2") is True
    assert stack.store.ledger_totals("dora") == {"grant": 35, "charge": 0, "refund": 0, "purchase": 0, "clawback": 0}


def test_same_grant_id_with_another_amount_is_refused(stack):
    grant_credits(stack.store, user_id="eve", credits=10, grant_id="g")
    with pytest.raises(GrantConflict):
        grant_credits(stack.store, user_id="eve", credits=11, grant_id="g")
    assert stack.store.get_balance("eve").balance == 10


@pytest.mark.parametrize("credits", [0, -5, True, 10**7, "10"])
def test_grant_rejects_bad_amounts(stack, credits):
    with pytest.raises(BadRequest):
        grant_credits(stack.store, user_id="frank", credits=credits, grant_id="g")
    assert stack.store.get_balance("frank").balance == 0


def test_admin_cli_grants_once_and_shows_balance(stack, capsys):
    args = ["--table", stack.table, "grant", "--user", "gus", "--credits", "25", "--grant-id", "promo-1"]
    assert admin(args) == 0
    assert json.loads(capsys.readouterr().out) == {"user": "gus", "grant_id": "promo-1", "applied": True, "balance": 25}
    assert admin(args) == 0
    assert json.loads(capsys.readouterr().out)["applied"] is False
    assert admin(["--table", stack.table, "balance", "--user", "gus"]) == 0
    assert json.loads(capsys.readouterr().out)["ledger_totals"]["grant"] == 25
    assert admin(["--table", stack.table, "grant", "--user", "gus", "--credits", "0", "--grant-id", "x"]) == 2
