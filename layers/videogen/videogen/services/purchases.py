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
sent.

Google Play (:meth:`PurchaseService.claim_google_play`, :meth:`PurchaseService.google_play_notification`)
adds only a verifier (the Publisher API's record of the purchase) and a notification source (the
Pub/Sub push of a voided purchase): the same claim transaction keyed by the order id, the same
clawback. Depends on ports only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
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
    Revocation,
    Store,
    consumption_of,
    new_play_purchase,
    new_purchase,
    play_claimable,
    unclaimed_refund,
)
from videogen.observability import count, logger
from videogen.ports_purchases import (
    AppStoreConsumption,
    AppStoreVerification,
    PlayPublisher,
    PlayPushVerification,
    PurchaseStore,
)

ATTEMPTS = 5  # reads and conditional writes that lose to another writer of the same record
VOIDED_WINDOW = timedelta(days=7)  # Pub/Sub keeps an unacknowledged push 7 days; the list goes back 30

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
        play: PlayPublisher | None = None,
        play_push: PlayPushVerification | None = None,
        consumption: AppStoreConsumption | None = None,
        consented: bool = False,
    ) -> None:
        """``consumption``: Apple's API (None: no App Store Connect API key); ``consented``: the
        app obtains every buyer's consent to share consumption data with Apple."""
        self._store = store
        self._app_store = app_store
        self._play = play
        self._play_push = play_push
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
        self._own_token(user_id, tx.app_account_token, f"transaction {tx.transaction_id}")
        return self._claim(
            user_id,
            "app_store",
            tx.transaction_id,
            lambda seen: new_purchase(user_id, verified, seen.id if seen else new_id("pur"), rfc3339()),
        )

    def claim_google_play(self, user_id: str, product_id: str, purchase_token: str) -> Claimed:
        """Google's record of the purchase (our package, this product), the caller's account id (or
        none), then the grant keyed by the order id as for the App Store, then the consume at Google.
        A claim whose consume did not happen (a crash, Google down) is repaired by its replay or by
        :meth:`repair_consume`: the grant is never repeated, the consume is."""
        if self._play is None:
            raise PurchaseInvalid("this deployment accepts no Google Play purchases (no PlayPackageName)")
        play = self._play.purchase(product_id, purchase_token)
        self._own_token(user_id, play.account_id, f"Google Play order {play.order_id}")
        seen = self._store.get_purchase("google_play", play.order_id)
        # a recorded order answers as a replay (even once consumed); a new one must be claimable
        pack = play_claimable(play, self._catalog) if seen is None or seen.claimable else None

        def build(seen: Purchase | None) -> Purchase:
            assert pack is not None, "a recorded order is never built again"
            return new_play_purchase(user_id, play, pack, seen.id if seen else new_id("pur"), rfc3339())

        claimed = self._claim(user_id, "google_play", play.order_id, build, seen, read=True)
        self.repair_consume(claimed.purchase)
        return claimed

    def repair_consume(self, p: Purchase) -> bool:
        """Consume a granted Google Play purchase at Google unless that is recorded done; True when
        it is done. A failure is logged and left for the next replay or repair (never re-granted)."""
        if p.store != "google_play" or p.consumed_at is not None or p.status != "granted" or not p.purchase_token:
            return p.consumed_at is not None
        assert self._play is not None
        try:
            self._play.consume(p.product_id, p.purchase_token)
        except ServiceUnavailable:
            logger.warning("google play consume failed; left for repair", extra={"purchase_id": p.id})
            count("PlayConsumeDeferred")
            return False
        self._store.consumed(p, rfc3339())
        return True

    def reconcile(self, created_before: str, limit: int) -> dict[str, int]:
        """The reconciler's Play passes: the consumes owed (:meth:`repair_consumes`), then the voids
        of the last ``VOIDED_WINDOW`` whose push never came (:meth:`voided_pass`)."""
        outcomes = self.repair_consumes(created_before, limit)
        if self._play is not None:
            outcomes.update(self.voided_pass(datetime.now(UTC) - VOIDED_WINDOW))
        return outcomes

    def repair_consumes(self, created_before: str, limit: int) -> dict[str, int]:
        """The reconciler's pass: Play purchases granted before ``created_before`` whose consume is
        not recorded done, consumed now (a voided one owes none and just leaves the list)."""
        outcomes: dict[str, int] = {}
        if self._play is None:
            return outcomes
        for p in self._store.pending_consumes(created_before, limit):
            if p.status != "granted":
                self._store.consumed(p, rfc3339())
                outcome = "consume_not_owed"
            else:
                outcome = "consumed" if self.repair_consume(p) else "consume_deferred"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes

    def _own_token(self, user_id: str, token: str | None, what: str) -> None:
        if token is not None and token != self._account_token(user_id):
            raise PurchaseAlreadyClaimed(f"{what} was bought with another account's app_account_token")

    def _claim(
        self,
        user_id: str,
        store: Store,
        transaction_id: str,
        build: Callable[[Purchase | None], Purchase],
        seen: Purchase | None = None,
        *,
        read: bool = False,
    ) -> Claimed:
        """The record + grant + ledger entry in ONE transaction while ``transaction_id`` is
        unclaimed; a claimed one answers as a replay (or 409 / 422). ``read``: ``seen`` is the
        record as the caller just read it (absent when None)."""
        for _ in range(ATTEMPTS):
            if not read:
                seen = self._store.get_purchase(store, transaction_id)
            read = False
            if seen is not None and not seen.claimable:
                return self._replay(seen, user_id)
            stored = self._store.claim(build(seen), seen)
            if stored is not None:
                count("PurchaseGranted" if stored.environment == "production" else "SandboxPurchaseGranted")
                logger.info(
                    "purchase granted",
                    extra={
                        "purchase_id": stored.id,
                        "store": store,
                        "user_id": user_id,
                        "credits": stored.credits,
                        "environment": stored.environment,
                    },
                )
                return Claimed(stored, self._balance(stored), replayed=False)
        raise StoreBusy(f"transaction {transaction_id}: kept changing while it was claimed")

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
            revoked_at = rfc3339(tx.revoked_at) if tx.revoked_at is not None else rfc3339()
            outcome = self._revoke(
                Revocation(
                    "app_store",
                    tx.transaction_id,
                    tx.product_id,
                    tx.environment,
                    notification.notification_id,
                    revoked_at,
                )
            )
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

    def _revoke(self, r: Revocation) -> NotificationOutcome:
        for _ in range(ATTEMPTS):
            seen = self._store.get_purchase(r.store, r.transaction_id)
            if seen is not None and r.notification_id in seen.notifications:
                return "duplicate"
            if seen is None or seen.claimable:
                pack = self._catalog.by_app_store(r.product_id) if r.store == "app_store" else None
                record = unclaimed_refund(r, pack.credits if pack else 0, seen.id if seen else new_id("pur"))
                if self._store.record_unclaimed(record, r.notification_id, seen):
                    return "recorded_unclaimed"
                continue
            if seen.status != "granted":
                return "already_revoked"
            if self._store.clawback(seen, r.notification_id, r.revoked_at):
                return "clawed_back"
        raise StoreBusy(f"transaction {r.transaction_id}: kept changing while it was revoked")

    # --- POST /webhooks/google-play --------------------------------------------------------------

    def google_play_notification(self, authorization: str | None, body: bytes) -> NotificationOutcome:
        """A Pub/Sub push of a Play notification: its OIDC token verified, then a voided purchase
        clawed back once (the Pub/Sub message id is the notification applied; a voided order
        already revoked changes nothing). Raises InvalidSignature (401) when it does not verify."""
        if self._play_push is None:
            raise InvalidSignature("this deployment has no Google Play app (no PlayPackageName)")
        voided = self._play_push.voided(authorization, body)
        if voided is None:
            outcome: NotificationOutcome = "ignored"
        else:
            outcome = self._revoke(
                Revocation(
                    "google_play",
                    voided.order_id,
                    "",
                    "production",
                    f"play:{voided.message_id}",
                    rfc3339(voided.voided_at),
                )
            )
        if outcome == "clawed_back":
            count("PurchaseClawedBack")
        logger.info("google play notification", extra={"outcome": outcome})
        return outcome

    def voided_pass(self, since: datetime) -> dict[str, int]:
        """The reconciler's pass over Play's voided purchases list: every void since ``since`` clawed
        back as its push would have (one applied per order: the push's or the list's, whichever came
        first; an order already revoked changes nothing). Counts only what it changed."""
        outcomes: dict[str, int] = {}
        if self._play is None:
            return outcomes
        for v in self._play.voided_purchases(since):
            outcome = self._revoke(
                Revocation("google_play", v.order_id, "", "production", v.message_id, rfc3339(v.voided_at))
            )
            if outcome not in ("clawed_back", "recorded_unclaimed"):
                continue  # applied already (by the push or an earlier pass): every run sees it again
            outcomes[f"voided_{outcome}"] = outcomes.get(f"voided_{outcome}", 0) + 1
            if outcome == "clawed_back":
                count("PurchaseClawedBack")
            logger.info("voided purchase found by the list", extra={"outcome": outcome})
        return outcomes

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
