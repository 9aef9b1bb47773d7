"""CONSUMPTION_REQUEST answered (issue 12): what we tell Apple (domain ``consumption_of``, every
case) and when the service sends it (consent, API key, the purchase's state, Apple refusing it),
on fakes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from tests.fakes import FakeAppStore, FakeAppStoreConsumption, FakePurchaseStore, FakeStore
from tests.fakes.store import _entry
from videogen.domain.account_token import app_account_token
from videogen.domain.models import LedgerType
from videogen.domain.products import parse_products
from videogen.domain.purchases import (
    AppStoreNotification,
    AppStorePurchase,
    AppStoreTransaction,
    ConsumptionInfo,
    Purchase,
    Usage,
    consumption_of,
)
from videogen.services import purchases as service_module
from videogen.services.purchases import PurchaseService

PRODUCT = "com.example.credits100"
CATALOG = parse_products(json.dumps([{"id": "credits_100", "credits": 100, "app_store_product_id": PRODUCT}]))
SIGNED_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def token(user_id: str) -> str:
    return app_account_token("secret", user_id)


def tx(tid: str = "2000000001") -> AppStoreTransaction:
    return AppStoreTransaction(tid, tid, PRODUCT, token("alice"), "sandbox", "Consumable", 1, SIGNED_AT)


def record(status: str = "granted", user_id: str | None = "alice") -> Purchase:
    return Purchase("pur_1", "app_store", "2000000001", PRODUCT, 100, status, "production", "2026-12-01T09:00:00.000Z",
                    user_id=user_id)  # type: ignore[arg-type]  # fmt: skip


# --- what we tell Apple -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "milli", "preference"),
    [
        (Usage(spent=0, balance=100), 0, "GRANT_FULL"),  # bought, nothing spent
        (Usage(spent=40, balance=60), 40_000, "GRANT_PRORATED"),
        (Usage(spent=100, balance=0), 100_000, "DECLINE"),
        (Usage(spent=250, balance=0), 100_000, "DECLINE"),  # spent more than the pack: all of it
        (Usage(spent=30, balance=500), 0, "GRANT_FULL"),  # the balance still holds the pack's credits
        (Usage(spent=30, balance=90), 10_000, "GRANT_PRORATED"),  # of its 100, 90 still held
        (Usage(spent=-5, balance=0), 0, "GRANT_FULL"),  # refunds of earlier charges outweigh the spend
        (Usage(spent=100, balance=-20), 100_000, "DECLINE"),
    ],
)
def test_a_granted_purchase_tells_what_of_its_credits_was_spent(usage: Usage, milli: int, preference: str) -> None:
    assert consumption_of(record(), usage) == ConsumptionInfo("DELIVERED", milli, preference)  # type: ignore[arg-type]


@pytest.mark.parametrize("seen", [None, record("revoked", None), record("cleared", None)])
def test_a_transaction_never_claimed_was_never_delivered(seen: Purchase | None) -> None:
    info = consumption_of(seen, None)
    assert info == ConsumptionInfo("UNDELIVERED_OTHER", 0, "GRANT_FULL")
    assert info.customer_consented and not info.sample_content_provided


def test_a_purchase_refunded_already_has_nothing_to_tell() -> None:
    assert consumption_of(record("revoked"), Usage(0, 0)) is None


# --- when the service sends it ----------------------------------------------------------------------


@dataclass
class World:
    store: FakeStore
    purchases: FakePurchaseStore
    apple: FakeAppStore
    api: FakeAppStoreConsumption

    def service(self, *, consented: bool = True, key: bool = True) -> PurchaseService:
        api = self.api if key else None
        return PurchaseService(self.purchases, self.apple, token, CATALOG, consumption=api, consented=consented)

    def claim(self) -> None:
        t = tx()
        self.apple.purchases["jws"] = AppStorePurchase(t, CATALOG.packs[0])
        self.service().claim_app_store("alice", "jws")

    def spend(self, amount: int, kind: LedgerType = LedgerType.CHARGE) -> None:
        account = self.store._accounts["alice"]
        account.balance += -amount if kind == LedgerType.CHARGE else amount
        account.ledger.append(_entry(kind, amount, "j1", self.store._now()))

    def request(self, kind: str = "CONSUMPTION_REQUEST", nid: str = "n-1") -> str:
        key = f"note-{kind}-{nid}"
        self.apple.notifications[key] = AppStoreNotification(
            nid, kind, None, "sandbox", SIGNED_AT, tx(), consumption_request_reason="UNSATISFIED_WITH_PURCHASE"
        )
        return key


@pytest.fixture
def w() -> World:
    store = FakeStore()
    return World(store, FakePurchaseStore(store), FakeAppStore(), FakeAppStoreConsumption())


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    monkeypatch.setattr(service_module, "count", lambda name, value=1: names.append(name))
    return names


def test_a_consumption_request_of_a_granted_purchase_sends_what_was_spent(w: World, counted: list[str]) -> None:
    w.claim()
    w.spend(50)
    w.spend(10, LedgerType.REFUND)  # a failed job's credits back: 40 spent
    notification, outcome = w.service().app_store_notification(w.request())
    assert (notification.notification_id, outcome) == ("n-1", "consumption_sent")
    assert w.api.sent == [("2000000001", "sandbox", ConsumptionInfo("DELIVERED", 40_000, "GRANT_PRORATED"))]
    assert counted[-1] == "ConsumptionInfoSent"


def test_spending_before_the_purchase_does_not_count(w: World) -> None:
    w.store.clock = lambda: time.time() - 60  # a minute before the purchase
    w.store.grant("alice", 30, "g1")
    w.spend(30)
    w.store.clock = time.time
    w.claim()
    assert w.service().app_store_notification(w.request())[1] == "consumption_sent"
    assert w.api.sent[0][2] == ConsumptionInfo("DELIVERED", 0, "GRANT_FULL")


def test_a_consumption_request_of_a_transaction_never_claimed_says_undelivered(w: World) -> None:
    assert w.service().app_store_notification(w.request())[1] == "consumption_sent"
    assert w.api.sent == [("2000000001", "sandbox", ConsumptionInfo("UNDELIVERED_OTHER", 0, "GRANT_FULL"))]


def test_a_consumption_request_of_a_purchase_refunded_already_sends_nothing(w: World) -> None:
    w.claim()
    w.apple.notifications["refund"] = AppStoreNotification("n-0", "REFUND", None, "sandbox", SIGNED_AT, tx())
    w.service().app_store_notification("refund")
    assert w.service().app_store_notification(w.request())[1] == "already_revoked"
    assert w.api.sent == []


@pytest.mark.parametrize(("consented", "key"), [(False, True), (True, False), (False, False)])
def test_without_consent_or_an_api_key_the_request_is_acknowledged_and_nothing_sent(
    w: World, counted: list[str], consented: bool, key: bool
) -> None:
    w.claim()
    before = w.store.items()
    assert w.service(consented=consented, key=key).app_store_notification(w.request())[1] == "consumption_not_sent"
    assert w.api.sent == [] and w.store.items() == before
    assert counted[-1] == "ConsumptionInfoNotSent"


def test_apple_refusing_the_information_is_acknowledged_and_counted(w: World, counted: list[str]) -> None:
    w.claim()
    w.api.fail = True
    before = w.store.items()
    assert w.service().app_store_notification(w.request())[1] == "consumption_failed"
    assert w.store.items() == before and counted[-1] == "ConsumptionInfoFailed"


def test_a_consumption_request_changes_no_credits(w: World) -> None:
    w.claim()
    w.service().app_store_notification(w.request())
    assert w.store.get_balance("alice").balance == 100
    assert [e.type for e in w.store.ledger("alice")] == [LedgerType.PURCHASE]
