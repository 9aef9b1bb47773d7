"""Ports of the store purchases (issue 12), beside :mod:`videogen.ports` until they are merged
into it: the services depend on these Protocols, the adapters implement them, the fakes too."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

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


class AppStoreVerification(Protocol):
    """Apple's signed data, verified offline against the trusted roots, our bundle id and app id,
    in the environments this deployment accepts (Production, and Sandbox unless turned off)."""

    def purchase(self, signed_transaction: str) -> AppStorePurchase:
        """A StoreKit 2 ``jwsRepresentation`` the app posts, when it is one we credit. Raises
        PurchaseInvalid (does not verify, not ours, not a consumable, quantity not 1),
        PurchaseRevoked, ProductUnknown; ServiceUnavailable when verification could not run."""
        ...

    def transaction(self, signed_transaction: str) -> AppStoreTransaction:
        """Any verified transaction of ours (also a revoked one, or one of a pack no longer on
        sale). Raises PurchaseInvalid when it does not verify."""
        ...

    def notification(self, signed_payload: str) -> AppStoreNotification:
        """A Server Notification V2 ``signedPayload`` and its transaction. Raises InvalidSignature
        (401) when either does not verify; ServiceUnavailable when verification could not run."""
        ...


class PlayPublisher(Protocol):
    """The Android Publisher API for OUR package (its service account from Secrets Manager)."""

    def purchase(self, product_id: str, purchase_token: str) -> PlayPurchase:
        """``purchases.products.get``: Google's record of the purchase. Raises PurchaseInvalid when
        Google knows no such purchase of ``product_id`` in our package (another app's token, another
        product, a made-up token); ServiceUnavailable when Google could not be asked."""
        ...

    def consume(self, product_id: str, purchase_token: str) -> None:
        """``purchases.products.consume`` (also when Google says it is consumed already: done).
        Raises ServiceUnavailable when it could not be done now (a later replay or repair does it)."""
        ...

    def voided_purchases(self, since: datetime) -> list[PlayVoided]:
        """``purchases.voidedpurchases.list``: our one-time purchases Google voided since ``since``
        (bounded pages). Raises ServiceUnavailable when Google could not be asked."""
        ...


class PlayPushVerification(Protocol):
    """Pub/Sub push deliveries of Play's real-time developer notifications."""

    def voided(self, authorization: str | None, body: bytes) -> PlayVoided | None:
        """The push's OIDC token verified (Google's signature, issuer, our audience, our push
        service account with ``email_verified``) and its notification decoded: the voided purchase
        it announces, or None for a verified notification of anything else (or another package).
        Raises InvalidSignature (401) when the token or the body does not verify."""
        ...


class AppStoreConsumption(Protocol):
    """Apple's App Store Server API, Send Consumption Information (v2), signed with our App Store
    Connect API key, in the environment the notification came from."""

    def send(self, transaction_id: str, environment: StoreEnvironment, info: ConsumptionInfo) -> None:
        """PUT the consumption information of ``transaction_id``. Raises ServiceUnavailable when
        Apple did not take it (an error answer, or no answer)."""
        ...


class PurchaseStore(Protocol):
    """The purchase records (keyed by store and transaction id) and the credits they move. Every
    change is ONE conditional transaction of the record, the user's balance and a ledger entry,
    conditioned on the record as read (absent, or its ``rev``): False/None = another write won
    (nothing changed; read again)."""

    def get_purchase(self, store: Store, transaction_id: str) -> Purchase | None:
        """The record, strongly consistent."""
        ...

    def list_purchases(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[Purchase], str | None]:
        """The purchases credited to ``user_id`` (also revoked ones), newest first, and the cursor of
        the next page (None on the last). Raises InvalidCursor for a cursor not of this list."""
        ...

    def claim(self, purchase: Purchase, replacing: Purchase | None = None) -> Purchase | None:
        """Record ``purchase`` (status granted) and credit its user: the record, ADD credits to the
        balance and a ``purchase`` ledger entry, while the transaction id is unclaimed (no record,
        or ``replacing`` unchanged). The stored record with ``balance_after``; None when lost."""
        ...

    def answered(self, purchase: Purchase) -> Purchase:
        """The record with ``balance_after`` (the user's balance now, recorded once when missing)."""
        ...

    def clawback(self, purchase: Purchase, notification_id: str, revoked_at: str) -> bool:
        """granted → revoked, its credits taken back (the balance may go below zero), one
        ``clawback`` entry, ``notification_id`` recorded as applied."""
        ...

    def regrant(self, purchase: Purchase, notification_id: str) -> bool:
        """revoked → granted, its credits given again, one ``purchase`` entry."""
        ...

    def consumed(self, purchase: Purchase, at: str) -> None:
        """Note that Google confirmed the consume of this Google Play purchase, or that none is
        owed any more (it was voided): it leaves the pending consumes (idempotent)."""
        ...

    def pending_consumes(self, created_before: str, limit: int) -> list[Purchase]:
        """Google Play purchases granted before ``created_before`` whose consume is not recorded
        done (a sparse index: a claim puts the record in, :meth:`consumed` takes it out), oldest first."""
        ...

    def record_unclaimed(self, purchase: Purchase, notification_id: str, replacing: Purchase | None = None) -> bool:
        """Write a record no user holds (a refund before any claim: revoked; its reversal: cleared)."""
        ...

    def usage_since(self, user_id: str, since: str) -> Usage:
        """The credits ``user_id`` spent from ``since`` on (charges minus refunds, by the ledger
        entries' ``created_at``) and their balance now."""
        ...
