"""In-memory fakes of the purchase ports (videogen.ports_purchases) with the adapters' semantics.

:class:`FakePurchaseStore` keeps its records in a :class:`FakeStore` (``store.purchases``, in the
DynamoDB adapter's item layout, so the invariant audit sees them) and moves the credits of that
store's accounts: every change is one step conditioned on the record as read (absent, or its
``rev``), exactly as adapters/purchases.py conditions its transactions. :meth:`before` runs a
callback right before an operation (another writer winning the race between a read and a write).

:class:`FakeAppStore` answers the verification port with what a test set: a purchase or
notification per JWS string, or the error the real verifier would raise.

:class:`FakeAppStoreConsumption` records what Send Consumption Information was given, or refuses it
as Apple's API does when told to (``fail``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from tests.fakes.store import FakeStore, _entry, _page
from videogen.domain.errors import InvalidSignature, PurchaseInvalid, ServiceUnavailable
from videogen.domain.models import LedgerType
from videogen.domain.purchases import (
    AppStoreNotification,
    AppStorePurchase,
    AppStoreTransaction,
    ConsumptionInfo,
    PlayPurchase,
    PlayVoided,
    Purchase,
    Store,
    StoreEnvironment,
    Usage,
)


def _item(p: Purchase) -> dict[str, Any]:
    return {
        "pk": f"PURCHASE#{p.store}#{p.transaction_id}",
        "sk": "PURCHASE",
        **{k: v for k, v in p.__dict__.items() if v is not None and k != "notifications"},
        **({"notifications": sorted(p.notifications)} if p.notifications else {}),
    }


class FakePurchaseStore:
    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self._records: dict[tuple[str, str], Purchase] = {}
        self._before: dict[str, list[Callable[[], None]]] = defaultdict(list)
        self.calls: list[str] = []

    def before(self, operation: str, action: Callable[[], None]) -> None:
        self._before[operation].append(action)

    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        if self._before[operation]:
            self._before[operation].pop(0)()

    def _save(self, p: Purchase) -> None:
        self._records[(p.store, p.transaction_id)] = p
        self._store.purchases[(p.store, p.transaction_id)] = _item(p)

    def _holds(self, seen: Purchase | None, key: tuple[str, str]) -> bool:
        now = self._records.get(key)
        return now is None if seen is None else now is not None and now.rev == seen.rev

    def _credit(self, user_id: str, amount: int, kind: LedgerType, purchase_id: str, seq: int) -> None:
        """``seq``: the record's revision written with it (the adapter's ``purchase_seq``)."""
        account = self._store._accounts[user_id]
        account.balance += amount
        entry = _entry(kind, abs(amount), None, self._store._now(), purchase_id=purchase_id)
        account.ledger.append(entry)
        self._store.purchase_seqs[entry.id] = seq

    # --- the port ---------------------------------------------------------------------------------

    def get_purchase(self, store: Store, transaction_id: str) -> Purchase | None:
        self._enter("get_purchase")
        return self._records.get((store, transaction_id))

    def list_purchases(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Purchase], str | None]:
        self._enter("list_purchases")
        mine = sorted((p for p in self._records.values() if p.user_id == user_id), key=lambda p: p.id, reverse=True)
        return _page(mine, limit, cursor, lambda p: p.id)

    def claim(self, purchase: Purchase, replacing: Purchase | None = None) -> Purchase | None:
        self._enter("claim")
        key = (purchase.store, purchase.transaction_id)
        if not self._holds(replacing, key):
            return None
        assert purchase.user_id is not None
        notes = replacing.notifications if replacing else frozenset()
        rev = (replacing.rev + 1) if replacing else 1
        self._credit(purchase.user_id, purchase.credits, LedgerType.PURCHASE, purchase.id, rev)
        self._save(replace(purchase, notifications=notes, rev=rev))
        return self.answered(self._records[key])

    def answered(self, purchase: Purchase) -> Purchase:
        self._enter("answered")
        key = (purchase.store, purchase.transaction_id)
        stored = self._records[key]
        if stored.balance_after is None and stored.user_id is not None:
            stored = replace(stored, balance_after=self._store._accounts[stored.user_id].balance)
            self._save(stored)
        return stored

    def _move(self, seen: Purchase, notification_id: str, status: str, revoked_at: str | None) -> bool:
        key = (seen.store, seen.transaction_id)
        if not self._holds(seen, key):
            return False
        assert seen.user_id is not None
        revoke = status == "revoked"
        kind = LedgerType.CLAWBACK if revoke else LedgerType.PURCHASE
        self._credit(seen.user_id, -seen.credits if revoke else seen.credits, kind, seen.id, seen.rev + 1)
        self._save(
            replace(
                self._records[key],
                status=status,  # type: ignore[arg-type]
                revoked_at=revoked_at,
                notifications=seen.notifications | {notification_id},
                rev=seen.rev + 1,
            )
        )
        return True

    def clawback(self, purchase: Purchase, notification_id: str, revoked_at: str) -> bool:
        self._enter("clawback")
        return self._move(purchase, notification_id, "revoked", revoked_at)

    def regrant(self, purchase: Purchase, notification_id: str) -> bool:
        self._enter("regrant")
        return self._move(purchase, notification_id, "granted", None)

    def consumed(self, purchase: Purchase, at: str) -> None:
        self._enter("consumed")
        key = (purchase.store, purchase.transaction_id)
        stored = self._records[key]
        if stored.consumed_at is None:
            self._save(replace(stored, consumed_at=at))

    def pending_consumes(self, created_before: str, limit: int) -> list[Purchase]:
        self._enter("pending_consumes")
        pending = sorted(
            (
                p
                for p in self._records.values()
                if p.store == "google_play" and p.user_id is not None and p.consumed_at is None
                and p.created_at < created_before
            ),
            key=lambda p: p.created_at,
        )  # fmt: skip
        return pending[:limit]

    def record_unclaimed(self, purchase: Purchase, notification_id: str, replacing: Purchase | None = None) -> bool:
        self._enter("record_unclaimed")
        key = (purchase.store, purchase.transaction_id)
        if not self._holds(replacing, key):
            return False
        notes = (replacing.notifications if replacing else frozenset()) | {notification_id}
        self._save(replace(purchase, notifications=notes, rev=(replacing.rev + 1) if replacing else 1))
        return True

    def usage_since(self, user_id: str, since: str) -> Usage:
        self._enter("usage_since")
        account = self._store._accounts[user_id]
        moves = {LedgerType.CHARGE: 1, LedgerType.REFUND: -1}
        spent = sum(moves.get(e.type, 0) * e.amount for e in account.ledger if e.created_at >= since)
        return Usage(spent=spent, balance=account.balance)


class FakeAppStoreConsumption:
    def __init__(self) -> None:
        self.sent: list[tuple[str, StoreEnvironment, ConsumptionInfo]] = []
        self.fail = False

    def send(self, transaction_id: str, environment: StoreEnvironment, info: ConsumptionInfo) -> None:
        if self.fail:
            raise ServiceUnavailable("the App Store Server API answered 500")
        self.sent.append((transaction_id, environment, info))


class FakeAppStore:
    """The verification port answering what a test registered per JWS; anything else is refused as
    the real verifier refuses a JWS that does not verify."""

    def __init__(self) -> None:
        self.purchases: dict[str, AppStorePurchase | Exception] = {}
        self.notifications: dict[str, AppStoreNotification] = {}

    def purchase(self, signed_transaction: str) -> AppStorePurchase:
        found = self.purchases.get(signed_transaction)
        if found is None:
            raise PurchaseInvalid("the transaction does not verify")
        if isinstance(found, Exception):
            raise found
        return found

    def transaction(self, signed_transaction: str) -> AppStoreTransaction:
        return self.purchase(signed_transaction).transaction

    def notification(self, signed_payload: str) -> AppStoreNotification:
        found = self.notifications.get(signed_payload)
        if found is None:
            raise InvalidSignature("the notification does not verify")
        return found


class FakePlay:
    """The Publisher API and the push verifier: Google's records per (product id, token) as a test
    set them (consumed by :meth:`consume`, as Google does), pushes per bearer token."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], PlayPurchase] = {}
        self.pushes: dict[str, PlayVoided | None] = {}
        self.consume_fails = 0  # the next N consumes raise ServiceUnavailable
        self.voided_list: list[PlayVoided] = []  # what voidedpurchases.list answers (any ``since``)
        self.consumes: list[str] = []

    def purchase(self, product_id: str, purchase_token: str) -> PlayPurchase:
        found = self.records.get((product_id, purchase_token))
        if found is None:
            raise PurchaseInvalid("Google Play knows no such purchase")
        return found

    def consume(self, product_id: str, purchase_token: str) -> None:
        if self.consume_fails:
            self.consume_fails -= 1
            raise ServiceUnavailable("Google Play answered 503")
        found = self.purchase(product_id, purchase_token)
        self.consumes.append(purchase_token)
        self.records[(product_id, purchase_token)] = replace(found, consumed=True)

    def voided_purchases(self, since: datetime) -> list[PlayVoided]:
        return [v for v in self.voided_list if v.voided_at >= since]

    def voided(self, authorization: str | None, body: bytes) -> PlayVoided | None:
        if authorization not in self.pushes:
            raise InvalidSignature("the push's OIDC token does not verify")
        return self.pushes[authorization]
