"""PurchaseService on fakes: every branch of a claim and of an App Store notification, with what
changed (or that nothing did) and the invariant audit over the store after each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

from tests.fakes import FakeAppStore, FakePurchaseStore, FakeStore
from videogen.domain.account_token import app_account_token
from videogen.domain.errors import (
    InvalidCursor,
    InvalidSignature,
    PurchaseAlreadyClaimed,
    PurchaseInvalid,
    PurchaseRevoked,
    StoreBusy,
)
from videogen.domain.models import LedgerType
from videogen.domain.products import parse_products
from videogen.domain.purchases import AppStoreNotification, AppStorePurchase, AppStoreTransaction
from videogen.services import queries
from videogen.services.purchases import ATTEMPTS, PurchaseService

SECRET = "per-deployment-secret"
PRODUCT = "com.example.credits100"
CATALOG = parse_products(json.dumps([{"id": "credits_100", "credits": 100, "app_store_product_id": PRODUCT}]))
SIGNED_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def token(user_id: str) -> str:
    return app_account_token(SECRET, user_id)


def tx(
    tid: str = "2000000001", *, user: str | None = "alice", env: str = "production", **kw: object
) -> AppStoreTransaction:
    fields: dict[str, object] = {
        "transaction_id": tid,
        "original_transaction_id": tid,
        "product_id": PRODUCT,
        "app_account_token": token(user) if user else None,
        "environment": env,
        "product_type": "Consumable",
        "quantity": 1,
        "signed_at": SIGNED_AT,
        "price_milli": 4990,
        "currency": "USD",
    } | kw
    return AppStoreTransaction(**fields)  # type: ignore[arg-type]


@dataclass
class World:
    store: FakeStore
    purchases: FakePurchaseStore
    apple: FakeAppStore
    service: PurchaseService

    def jws(self, t: AppStoreTransaction) -> str:
        """A JWS the fake verifier takes as ``t``."""
        key = f"jws-{t.transaction_id}-{t.app_account_token}-{t.environment}"
        self.apple.purchases[key] = AppStorePurchase(t, CATALOG.packs[0])
        return key

    def notify(self, kind: str, t: AppStoreTransaction | None, nid: str = "n-1") -> str:
        key = f"note-{kind}-{nid}"
        self.apple.notifications[key] = AppStoreNotification(nid, kind, None, "production", SIGNED_AT, t)
        return key

    def balance(self, user: str) -> int:
        return self.store.get_balance(user).balance

    def entries(self, user: str) -> list[tuple[LedgerType, int]]:
        return [(e.type, e.amount) for e in self.store.ledger(user)]


@pytest.fixture
def w() -> Iterator[World]:
    store = FakeStore()
    purchases = FakePurchaseStore(store)
    apple = FakeAppStore()
    world = World(store, purchases, apple, PurchaseService(purchases, apple, token, CATALOG))
    yield world
    audit = store.audit()
    assert audit.ok, audit.problems


# --- POST /v1/purchases ----------------------------------------------------------------------------


def test_a_first_claim_grants_the_pack_once_with_one_purchase_entry_naming_the_purchase(w: World) -> None:
    w.store.grant("alice", 5, "g")
    claimed = w.service.claim_app_store("alice", w.jws(tx()))
    assert not claimed.replayed
    p = claimed.purchase
    assert (p.user_id, p.status, p.credits, p.environment, p.transaction_id) == (
        "alice", "granted", 100, "production", "2000000001"
    )  # fmt: skip
    assert p.id.startswith("pur_") and claimed.balance == 105 == w.balance("alice")
    assert [(e.type, e.amount, e.purchase_id) for e in w.store.ledger("alice")][1:] == [
        (LedgerType.PURCHASE, 100, p.id)
    ]


def test_a_transaction_without_an_account_token_is_granted_to_the_first_verified_claim(w: World) -> None:
    claimed = w.service.claim_app_store("bob", w.jws(tx(user=None)))
    assert claimed.purchase.user_id == "bob" and w.balance("bob") == 100


def test_a_sandbox_purchase_is_granted_and_recorded_as_sandbox(w: World) -> None:
    claimed = w.service.claim_app_store("alice", w.jws(tx(env="sandbox")))
    assert claimed.purchase.environment == "sandbox" and w.balance("alice") == 100


def test_the_same_user_again_gets_the_first_answer_and_nothing_is_granted_twice(w: World) -> None:
    jws = w.jws(tx())
    first = w.service.claim_app_store("alice", jws)
    w.store.grant("alice", 7, "later")  # the balance moves on; the replay still answers the first body
    again = w.service.claim_app_store("alice", jws)
    assert again.replayed and again.purchase == first.purchase and again.balance == first.balance == 100
    assert w.entries("alice").count((LedgerType.PURCHASE, 100)) == 1 and w.balance("alice") == 107


def test_another_user_posting_the_same_transaction_is_refused_and_nothing_changes(w: World) -> None:
    w.service.claim_app_store("alice", w.jws(tx(user=None)))
    with pytest.raises(PurchaseAlreadyClaimed, match="another account"):
        w.service.claim_app_store("mallory", w.jws(tx(user=None)))
    assert w.balance("mallory") == 0 and w.entries("mallory") == []


def test_a_transaction_bought_with_another_users_token_is_refused_before_any_write(w: World) -> None:
    with pytest.raises(PurchaseAlreadyClaimed, match="another account's app_account_token"):
        w.service.claim_app_store("mallory", w.jws(tx(user="alice")))
    assert w.purchases.calls == [] and w.balance("mallory") == 0


def test_a_purchase_the_verifier_refuses_changes_nothing(w: World) -> None:
    with pytest.raises(PurchaseInvalid):
        w.service.claim_app_store("alice", "not-a-jws")
    assert w.purchases.calls == [] and w.store.items() == []


def test_a_deployment_without_an_app_store_app_refuses_app_store_purchases() -> None:
    store = FakeStore()
    service = PurchaseService(FakePurchaseStore(store), None, token, CATALOG)
    with pytest.raises(PurchaseInvalid, match="no App Store purchases"):
        service.claim_app_store("alice", "x")
    with pytest.raises(InvalidSignature, match="no App Store app"):
        service.app_store_notification("x")


def test_a_refund_recorded_before_any_claim_makes_the_claim_purchase_revoked(w: World) -> None:
    assert w.service.app_store_notification(w.notify("REFUND", tx()))[1] == "recorded_unclaimed"
    with pytest.raises(PurchaseRevoked):
        w.service.claim_app_store("alice", w.jws(tx()))
    assert w.balance("alice") == 0 and w.entries("alice") == []


def test_the_buyer_replaying_a_purchase_since_refunded_gets_purchase_revoked(w: World) -> None:
    jws = w.jws(tx())
    w.service.claim_app_store("alice", jws)
    w.service.app_store_notification(w.notify("REFUND", tx()))
    with pytest.raises(PurchaseRevoked):
        w.service.claim_app_store("alice", jws)
    assert w.balance("alice") == 0


def test_a_claim_that_loses_the_race_to_another_user_answers_409_and_grants_nothing(w: World) -> None:
    jws = w.jws(tx(user=None))
    w.purchases.before("claim", lambda: w.service.claim_app_store("bob", jws))
    with pytest.raises(PurchaseAlreadyClaimed):
        w.service.claim_app_store("alice", jws)
    assert (w.balance("alice"), w.balance("bob")) == (0, 100)


def test_a_claim_that_loses_the_race_to_the_same_user_answers_the_winners_body(w: World) -> None:
    jws = w.jws(tx())
    w.purchases.before("claim", lambda: w.service.claim_app_store("alice", jws))
    again = w.service.claim_app_store("alice", jws)
    assert again.replayed and again.balance == 100 and w.balance("alice") == 100


def test_a_claim_losing_every_attempt_is_store_busy_and_grants_nothing(w: World) -> None:
    jws = w.jws(tx())
    w.service.app_store_notification(w.notify("REFUND", tx(), "n-1"))
    w.service.app_store_notification(w.notify("REFUND_REVERSED", tx(), "n-2"))  # unclaimed, cleared: claimable

    def refund_and_reversal(i: int) -> None:  # the record stays claimable, its revision moves on
        w.service.app_store_notification(w.notify("REFUND", tx(), f"r{i}"))
        w.service.app_store_notification(w.notify("REFUND_REVERSED", tx(), f"v{i}"))

    for i in range(ATTEMPTS):
        w.purchases.before("claim", lambda i=i: refund_and_reversal(i))
    with pytest.raises(StoreBusy):
        w.service.claim_app_store("alice", jws)
    assert w.balance("alice") == 0 and w.entries("alice") == []


def test_a_reversed_unclaimed_refund_lets_the_buyer_claim_and_keeps_the_notifications_applied(w: World) -> None:
    w.service.app_store_notification(w.notify("REFUND", tx(), "n-1"))
    assert w.service.app_store_notification(w.notify("REFUND_REVERSED", tx(), "n-2"))[1] == "cleared_unclaimed"
    claimed = w.service.claim_app_store("alice", w.jws(tx()))
    assert not claimed.replayed and w.balance("alice") == 100
    assert w.service.app_store_notification(w.notify("REFUND", tx(), "n-1"))[1] == "duplicate"  # a replay
    assert w.balance("alice") == 100


def test_a_replay_of_a_claim_that_died_before_recording_its_answer_records_it(w: World) -> None:
    jws = w.jws(tx())
    first = w.service.claim_app_store("alice", jws)
    key = ("app_store", first.purchase.transaction_id)
    w.purchases._records[key] = replace(w.purchases._records[key], balance_after=None)
    again = w.service.claim_app_store("alice", jws)
    assert again.replayed and again.balance == 100 and w.purchases._records[key].balance_after == 100


# --- POST /webhooks/app-store ----------------------------------------------------------------------


def test_a_refund_claws_the_credits_back_once_even_below_zero(w: World) -> None:
    claimed = w.service.claim_app_store("alice", w.jws(tx()))
    w.store.grant("alice", 1, "g")
    note = w.notify("REFUND", tx(revoked_at=SIGNED_AT))
    notification, outcome = w.service.app_store_notification(note)
    assert outcome == "clawed_back" and notification.notification_id == "n-1"
    stored = w.purchases.get_purchase("app_store", claimed.purchase.transaction_id)
    assert stored is not None and stored.status == "revoked" and stored.revoked_at == "2026-12-01T09:00:00.000Z"
    assert w.entries("alice").count((LedgerType.CLAWBACK, 100)) == 1 and w.balance("alice") == 1
    assert [e.purchase_id for e in w.store.ledger("alice") if e.type == LedgerType.CLAWBACK] == [claimed.purchase.id]


def test_a_clawback_of_spent_credits_leaves_the_balance_negative(w: World) -> None:
    w.service.claim_app_store("alice", w.jws(tx()))
    w.store._accounts["alice"].balance -= 60  # spent (the audit sees no charge: the ledger is not checked here)
    w.store._accounts["alice"].ledger.append(
        w.store.ledger("alice")[0].model_copy(update={"id": "le_spent", "type": LedgerType.GRANT, "amount": -60})
    )
    assert w.service.app_store_notification(w.notify("REVOKE", tx()))[1] == "clawed_back"
    assert w.balance("alice") == -60


def test_a_replayed_refund_notification_changes_nothing(w: World) -> None:
    w.service.claim_app_store("alice", w.jws(tx()))
    note = w.notify("REFUND", tx())
    w.service.app_store_notification(note)
    before = w.store.items()
    assert w.service.app_store_notification(note)[1] == "duplicate"
    assert w.store.items() == before


def test_a_second_refund_notification_of_a_revoked_purchase_changes_nothing(w: World) -> None:
    w.service.claim_app_store("alice", w.jws(tx()))
    w.service.app_store_notification(w.notify("REFUND", tx(), "n-1"))
    before = w.store.items()
    assert w.service.app_store_notification(w.notify("REVOKE", tx(), "n-2"))[1] == "already_revoked"
    assert w.store.items() == before


def test_a_refund_reversal_grants_the_credits_again_once(w: World) -> None:
    w.service.claim_app_store("alice", w.jws(tx()))
    w.service.app_store_notification(w.notify("REFUND", tx(), "n-1"))
    reversal = w.notify("REFUND_REVERSED", tx(), "n-2")
    assert w.service.app_store_notification(reversal)[1] == "regranted"
    assert w.service.app_store_notification(reversal)[1] == "duplicate"
    assert w.balance("alice") == 100
    assert [t for t, _ in w.entries("alice")] == [LedgerType.PURCHASE, LedgerType.CLAWBACK, LedgerType.PURCHASE]
    stored = w.purchases.get_purchase("app_store", "2000000001")
    assert stored is not None and stored.status == "granted" and stored.revoked_at is None


def test_a_reversal_of_a_purchase_never_refunded_or_never_seen_changes_nothing(w: World) -> None:
    assert w.service.app_store_notification(w.notify("REFUND_REVERSED", tx(), "n-0"))[1] == "unknown_transaction"
    w.service.claim_app_store("alice", w.jws(tx()))
    before = w.store.items()
    assert w.service.app_store_notification(w.notify("REFUND_REVERSED", tx(), "n-1"))[1] == "not_revoked"
    assert w.store.items() == before


@pytest.mark.parametrize("kind", ["TEST", "REFUND_DECLINED", "ONE_TIME_CHARGE"])
def test_other_verified_notifications_are_acknowledged_and_change_nothing(w: World, kind: str) -> None:
    w.service.claim_app_store("alice", w.jws(tx()))
    before = w.store.items()
    assert w.service.app_store_notification(w.notify(kind, tx()))[1] == "ignored"
    assert w.service.app_store_notification(w.notify(kind, None, "n-2"))[1] == "ignored"
    assert w.store.items() == before


def test_a_refund_of_a_non_consumable_is_ignored(w: World) -> None:
    w.service.claim_app_store("alice", w.jws(tx()))
    assert w.service.app_store_notification(w.notify("REFUND", tx(product_type="Non-Consumable")))[1] == "ignored"
    assert w.balance("alice") == 100


def test_a_forged_notification_is_refused_and_changes_nothing(w: World) -> None:
    w.service.claim_app_store("alice", w.jws(tx()))
    before = w.store.items()
    with pytest.raises(InvalidSignature):
        w.service.app_store_notification("forged")
    assert w.store.items() == before


def test_a_clawback_that_loses_the_race_to_another_refund_claws_back_once(w: World) -> None:
    w.service.claim_app_store("alice", w.jws(tx()))
    w.purchases.before("clawback", lambda: w.service.app_store_notification(w.notify("REVOKE", tx(), "n-2")))
    assert w.service.app_store_notification(w.notify("REFUND", tx(), "n-1"))[1] == "already_revoked"
    assert w.entries("alice").count((LedgerType.CLAWBACK, 100)) == 1 and w.balance("alice") == 0


def test_an_unclaimed_refund_that_loses_the_race_to_a_claim_claws_that_claim_back(w: World) -> None:
    jws = w.jws(tx())
    w.purchases.before("record_unclaimed", lambda: w.service.claim_app_store("alice", jws))
    assert w.service.app_store_notification(w.notify("REFUND", tx()))[1] == "clawed_back"
    assert w.balance("alice") == 0


# --- GET /v1/purchases -----------------------------------------------------------------------------


def test_the_purchase_list_pages_the_callers_purchases_newest_first_revoked_ones_included(w: World) -> None:
    ids = [
        w.service.claim_app_store("alice", w.jws(tx(f"20000000{n:02}"))).purchase.id for n in range(5)
    ]  # 2000000000 … 04
    w.service.claim_app_store("bob", w.jws(tx("3000000001", user="bob")))
    w.service.app_store_notification(w.notify("REFUND", tx("2000000000")))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = queries.purchases(w.purchases, "alice", 2, cursor)
        assert len(page.items) <= 2
        seen += [p.id for p in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(ids, reverse=True)
    statuses = {p.transaction_id: p.status for p in queries.purchases(w.purchases, "alice", 100, None).items}
    assert statuses["2000000000"] == "revoked" and list(statuses.values()).count("granted") == 4
    assert [p.transaction_id for p in queries.purchases(w.purchases, "bob", 100, None).items] == ["3000000001"]
    assert queries.purchases(w.purchases, "carol", 20, None).items == []
    first = queries.purchases(w.purchases, "alice", 2, None)
    with pytest.raises(InvalidCursor):
        queries.purchases(w.purchases, "bob", 2, first.next_cursor)
