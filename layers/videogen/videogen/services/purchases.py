"""Store purchases turned into credits, and the store's refunds taken back (issue 12).

``POST /v1/purchases`` (:meth:`PurchaseService.claim_app_store`): the StoreKit 2 JWS verified with
Apple's library (adapters/app_store.py: chain to Apple's roots, our bundle id, an accepted
environment, a consumable pack we sell, quantity 1, not revoked), its ``appAccountToken`` the
caller's or absent, then ONE transaction of record + grant + ledger entry conditioned on the
transaction id being unclaimed. Offline verification accepts an old JWS forever: replay protection
is that record. The answers:

* first claim → created (201); the same user again → the stored answer (200, replayed);
* another user's claim, or another user's account token → ``purchase_already_claimed`` (409);
* a refund recorded before any claim, or the caller's own purchase since revoked →
  ``purchase_revoked`` (422).

``POST /webhooks/app-store`` (:meth:`PurchaseService.app_store_notification`): REFUND / REVOKE of a
granted purchase → one ``clawback`` of its credits with the status change (the balance may go
below zero); of an unclaimed transaction → recorded so a later claim is refused; REFUND_REVERSED →
the credits again, once. Each notification (``notificationUUID``) is applied at most once, so a
replayed notification changes nothing. CONSUMPTION_REQUEST (the customer asked Apple for a refund)
→ the consumption information Apple asks for (domain/purchases.py, ``consumption_of``: what was
delivered and how much of it was spent), sent with Apple's API only when the customer consented
(the deployment says its app obtains that consent: Apple refuses ``customerConsented: false``) and
this deployment has an App Store Connect API key; else acknowledged, and a metric says it was not
sent. Depends on ports only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from videogen.domain.errors import (
    InvalidSignature,
    PurchaseAlreadyClaimed,
    PurchaseInvalid,
    PurchaseRevoked,
    ServiceUnavailable,
    StoreBusy,
)
from videogen.domain.models import new_id, rfc3339
from videogen.domain.products import Catalog
from videogen.domain.purchases import (
    AppStoreNotification,
    AppStoreTransaction,
    Purchase,
    consumption_of,
    new_purchase,
    unclaimed_refund,
)
from videogen.observability import count, logger
from videogen.ports_purchases import AppStoreConsumption, AppStoreVerification, PurchaseStore

ATTEMPTS = 5  # reads and conditional writes that lose to another writer of the same record

NotificationOutcome = Literal[
    "clawed_back",
    "regranted",
    "recorded_unclaimed",
    "cleared_unclaimed",
    "already_revoked",
    "not_revoked",
    "unknown_transaction",
    "duplicate",
    "ignored",
    "consumption_sent",
    "consumption_not_sent",
    "consumption_failed",
]


@dataclass(frozen=True)
class Claimed:
    purchase: Purchase
    balance: int  # the balance right after the grant (the same on every replay)
    replayed: bool


class PurchaseService:
    def __init__(
        self,
        store: PurchaseStore,
        app_store: AppStoreVerification | None,
        account_token: Callable[[str], str],
        catalog: Catalog,
        consumption: AppStoreConsumption | None = None,
        consented: bool = False,
    ) -> None:
        """``consumption``: Apple's API (None: no App Store Connect API key); ``consented``: the
        app obtains every buyer's consent to share consumption data with Apple."""
        self._store = store
        self._app_store = app_store
        self._account_token = account_token
        self._catalog = catalog
        self._consumption = consumption
        self._consented = consented

    def _verifier(self) -> AppStoreVerification:
        if self._app_store is None:
            raise PurchaseInvalid("this deployment accepts no App Store purchases (no AppStoreBundleId)")
        return self._app_store

    # --- POST /v1/purchases ----------------------------------------------------------------------

    def claim_app_store(self, user_id: str, signed_transaction: str) -> Claimed:
        verified = self._verifier().purchase(signed_transaction)
        tx = verified.transaction
        if tx.app_account_token is not None and tx.app_account_token != self._account_token(user_id):
            raise PurchaseAlreadyClaimed(
                f"transaction {tx.transaction_id} was bought with another account's app_account_token"
            )
        for _ in range(ATTEMPTS):
            seen = self._store.get_purchase("app_store", tx.transaction_id)
            if seen is not None and not seen.claimable:
                return self._replay(seen, user_id)
            fresh = new_purchase(user_id, verified, seen.id if seen else new_id("pur"), rfc3339())
            stored = self._store.claim(fresh, seen)
            if stored is not None:
                count("PurchaseGranted" if stored.environment == "production" else "SandboxPurchaseGranted")
                logger.info(
                    "purchase granted",
                    extra={
                        "purchase_id": stored.id,
                        "user_id": user_id,
                        "credits": stored.credits,
                        "environment": stored.environment,
                    },
                )
                return Claimed(stored, self._balance(stored), replayed=False)
        raise StoreBusy(f"transaction {tx.transaction_id}: kept changing while it was claimed")

    def _replay(self, seen: Purchase, user_id: str) -> Claimed:
        if seen.user_id is not None and seen.user_id != user_id:
            raise PurchaseAlreadyClaimed(f"transaction {seen.transaction_id} was credited to another account")
        if seen.status != "granted":
            raise PurchaseRevoked(f"transaction {seen.transaction_id} was refunded or revoked")
        return Claimed(seen, self._balance(seen), replayed=True)

    def _balance(self, p: Purchase) -> int:
        """The balance the first claim answered (recorded right after its grant; a claim that
        died before recording it has it recorded by the first replay)."""
        if p.balance_after is None:
            p = self._store.answered(p)
        assert p.balance_after is not None
        return p.balance_after

    # --- POST /webhooks/app-store ----------------------------------------------------------------

    def app_store_notification(self, signed_payload: str) -> tuple[AppStoreNotification, NotificationOutcome]:
        """The verified notification and what it did. Raises InvalidSignature (401) when it does
        not verify (or this deployment has no App Store app to verify it for)."""
        if self._app_store is None:
            raise InvalidSignature("this deployment has no App Store app (no AppStoreBundleId)")
        notification = self._app_store.notification(signed_payload)
        tx = notification.transaction
        action = notification.action
        if tx is None or action == "ignore":
            outcome: NotificationOutcome = "ignored"
        elif action == "consumption_request":
            outcome = self._answer_consumption(tx, notification)
        elif action == "clawback":
            outcome = self._revoke(tx, notification.notification_id)
        else:
            outcome = self._reverse(tx, notification.notification_id)
        if outcome in ("clawed_back", "regranted"):
            count("PurchaseClawedBack" if outcome == "clawed_back" else "PurchaseRegranted")
        logger.info(
            "app store notification",
            extra={
                "notification_type": notification.notification_type,
                "subtype": notification.subtype,
                "environment": notification.environment,
                "outcome": outcome,
            },
        )
        return notification, outcome

    def _revoke(self, tx: AppStoreTransaction, notification_id: str) -> NotificationOutcome:
        revoked_at = rfc3339(tx.revoked_at) if tx.revoked_at is not None else rfc3339()
        for _ in range(ATTEMPTS):
            seen = self._store.get_purchase("app_store", tx.transaction_id)
            if seen is not None and notification_id in seen.notifications:
                return "duplicate"
            if seen is None or seen.claimable:
                pack = self._catalog.by_app_store(tx.product_id)
                record = unclaimed_refund(
                    tx, pack.credits if pack else 0, seen.id if seen else new_id("pur"), revoked_at
                )
                if self._store.record_unclaimed(record, notification_id, seen):
                    return "recorded_unclaimed"
                continue
            if seen.status != "granted":
                return "already_revoked"
            if self._store.clawback(seen, notification_id, revoked_at):
                return "clawed_back"
        raise StoreBusy(f"transaction {tx.transaction_id}: kept changing while it was revoked")

    def _reverse(self, tx: AppStoreTransaction, notification_id: str) -> NotificationOutcome:
        for _ in range(ATTEMPTS):
            seen = self._store.get_purchase("app_store", tx.transaction_id)
            if seen is None:
                return "unknown_transaction"
            if notification_id in seen.notifications:
                return "duplicate"
            if seen.status != "revoked":
                return "not_revoked"
            if seen.user_id is None:
                cleared = replace(seen, status="cleared", revoked_at=None)
                if self._store.record_unclaimed(cleared, notification_id, seen):
                    return "cleared_unclaimed"
                continue
            if self._store.regrant(seen, notification_id):
                return "regranted"
        raise StoreBusy(f"transaction {tx.transaction_id}: kept changing while its refund was reversed")

    def _answer_consumption(self, tx: AppStoreTransaction, notification: AppStoreNotification) -> NotificationOutcome:
        if not self._consented or self._consumption is None:
            reason = "no_consent" if not self._consented else "no_api_key"
            count("ConsumptionInfoNotSent")
            logger.warning("consumption information not sent", extra={"reason": reason})
            return "consumption_not_sent"
        seen = self._store.get_purchase("app_store", tx.transaction_id)
        usage = None
        if seen is not None and seen.user_id is not None and seen.status == "granted":
            usage = self._store.usage_since(seen.user_id, seen.created_at)
        info = consumption_of(seen, usage)
        if info is None:
            return "already_revoked"
        try:
            self._consumption.send(tx.transaction_id, notification.environment, info)
        except ServiceUnavailable as exc:
            count("ConsumptionInfoFailed")
            logger.warning("consumption information not taken by Apple", extra={"error": str(exc)})
            return "consumption_failed"
        count("ConsumptionInfoSent")
        logger.info(
            "consumption information sent",
            extra={
                "delivery_status": info.delivery_status,
                "consumption_milli": info.consumption_milli,
                "refund_preference": info.refund_preference,
                "reason": notification.consumption_request_reason,
            },
        )
        return "consumption_sent"
