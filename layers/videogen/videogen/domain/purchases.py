"""What a verified store purchase says, in our terms, and which ones we credit.

The store adapters (adapters/app_store.py) verify the store's signature and map the store's
payload to these types; the rules of what is credited are here, pure:

* :func:`claimable`: a transaction is credited when it is a consumable bought once (quantity 1),
  not revoked, of a pack on sale; else :class:`PurchaseInvalid`, :class:`PurchaseRevoked` or
  :class:`ProductUnknown`;
* :attr:`AppStoreNotification.action`: what a verified server notification asks of us;
* :func:`play_claimable`: a Google Play purchase (as the Publisher API reports it) is credited when
  it is a purchased (``purchaseState`` 0), not yet consumed, single-quantity purchase of a pack on
  sale; a consumed one only when we hold its record (then the claim is a replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from videogen.domain.errors import ProductUnknown, PurchaseInvalid, PurchaseRevoked, a_or_an, shown
from videogen.domain.products import Catalog, CreditPack

StoreEnvironment = Literal["production", "sandbox"]
Store = Literal["app_store", "google_play"]
PurchaseStatus = Literal["granted", "revoked", "cleared"]
"""``granted``: its credits are the user's; ``revoked``: refunded or revoked, credits taken back (or,
with no user, a refund recorded before anyone claimed it: a later claim is purchase_revoked);
``cleared``: such an unclaimed refund that the store reversed (the transaction may be claimed)."""
NotificationAction = Literal["clawback", "regrant", "consumption_request", "ignore"]

MAX_JWS_CHARS = 32 * 1024  # a StoreKit transaction is ~3 KB, a notification ~6 KB
MAX_PLAY_TOKEN_CHARS = 1024  # a Play purchase token is ~150-200 characters
CONSUMABLE = "Consumable"  # Apple's ``type`` of a consumable in-app purchase
_CLAWBACK = frozenset({"REFUND", "REVOKE"})
_REGRANT = "REFUND_REVERSED"
_CONSUMPTION_REQUEST = "CONSUMPTION_REQUEST"


@dataclass(frozen=True)
class AppStoreTransaction:
    """A StoreKit 2 transaction whose signature, bundle id and environment were verified."""

    transaction_id: str
    original_transaction_id: str
    product_id: str
    app_account_token: str | None  # lower-case UUID, None when the app set none
    environment: StoreEnvironment
    product_type: str  # Apple's raw ``type`` ("Consumable", "Non-Consumable", ...)
    quantity: int
    signed_at: datetime
    purchased_at: datetime | None = None
    revoked_at: datetime | None = None
    revocation_reason: int | None = None
    price_milli: int | None = None  # price in milliunits of ``currency``; revenue only in production
    currency: str | None = None

    @property
    def consumable(self) -> bool:
        return self.product_type == CONSUMABLE


@dataclass(frozen=True)
class AppStoreNotification:
    """An App Store Server Notification V2 whose signature, bundle id, app id and environment were
    verified, with its transaction (verified the same way) when it carries one."""

    notification_id: str  # notificationUUID: the same for every retry of one notification
    notification_type: str  # Apple's raw ``notificationType``
    subtype: str | None
    environment: StoreEnvironment
    signed_at: datetime
    transaction: AppStoreTransaction | None = None
    consumption_request_reason: str | None = None

    @property
    def action(self) -> NotificationAction:
        """REFUND and REVOKE claw a consumable's credits back, REFUND_REVERSED grants them again,
        CONSUMPTION_REQUEST wants our consumption information; anything else is acknowledged only."""
        tx = self.transaction
        if tx is None or not tx.consumable:
            return "ignore"
        if self.notification_type in _CLAWBACK:
            return "clawback"
        if self.notification_type == _REGRANT:
            return "regrant"
        if self.notification_type == _CONSUMPTION_REQUEST:
            return "consumption_request"
        return "ignore"


def claimable(tx: AppStoreTransaction, catalog: Catalog) -> CreditPack:
    """The pack ``tx`` buys, when it is one we credit."""
    if not tx.consumable:
        kind = shown(tx.product_type, quote=False) if tx.product_type else "purchase of unknown type"
        raise PurchaseInvalid(f"product {shown(tx.product_id)} is {a_or_an(kind)}, not a consumable")
    if tx.quantity != 1:
        raise PurchaseInvalid(f"quantity must be 1, the transaction has {tx.quantity}")
    if tx.revoked_at is not None:
        raise PurchaseRevoked(f"transaction {tx.transaction_id} was revoked at {tx.revoked_at.isoformat()}")
    pack = catalog.by_app_store(tx.product_id)
    if pack is None:
        raise ProductUnknown(f"App Store product {shown(tx.product_id)} is not a credit pack on sale")
    return pack


@dataclass(frozen=True)
class AppStorePurchase:
    """A verified transaction we credit, and the pack it buys."""

    transaction: AppStoreTransaction
    pack: CreditPack


PLAY_PURCHASED, PLAY_CANCELED, PLAY_PENDING = 0, 1, 2  # ProductPurchase.purchaseState
PLAY_TEST = 0  # ProductPurchase.purchaseType of a license tester's purchase (no money moved)


@dataclass(frozen=True)
class PlayPurchase:
    """A one-time product purchase as the Android Publisher API reports it for OUR package
    (``purchases.products.get``): the answer of Google's own server, so no signature to check."""

    order_id: str  # the grant's key (one order = one purchase)
    purchase_token: str
    product_id: str
    purchase_state: int  # PLAY_PURCHASED / PLAY_CANCELED / PLAY_PENDING
    consumed: bool  # consumptionState 1
    quantity: int  # absent = 1
    account_id: str | None  # obfuscatedExternalAccountId: what the app set in BillingFlowParams
    test: bool = False  # purchaseType 0: a license tester's purchase, recorded as sandbox
    purchased_at: datetime | None = None

    @property
    def environment(self) -> StoreEnvironment:
        return "sandbox" if self.test else "production"


def play_claimable(p: PlayPurchase, catalog: Catalog) -> CreditPack:
    """The pack a first claim of ``p`` buys, when it is one we credit."""
    if p.purchase_state == PLAY_CANCELED:
        raise PurchaseRevoked(f"Google Play order {p.order_id} was canceled or refunded")
    if p.purchase_state != PLAY_PURCHASED:
        raise PurchaseInvalid(f"Google Play order {p.order_id} is not in the purchased state (it is pending)")
    if p.consumed:
        raise PurchaseInvalid(f"Google Play order {p.order_id} was already consumed (credited elsewhere)")
    if p.quantity != 1:
        raise PurchaseInvalid(f"quantity must be 1, the purchase has {p.quantity}")
    pack = catalog.by_google_play(p.product_id)
    if pack is None:
        raise ProductUnknown(f"Google Play product {shown(p.product_id)} is not a credit pack on sale")
    return pack


@dataclass(frozen=True)
class PlayVoided:
    """A Play real-time developer notification's ``voidedPurchaseNotification`` (the push's OIDC
    token verified): the order was refunded or charged back. Our packs are bought one at a time
    (quantity 1), so a quantity-based partial refund voids the one unit: the whole pack."""

    message_id: str  # Pub/Sub's messageId: the same for every redelivery
    order_id: str
    purchase_token: str
    refund_type: int | None  # 1 FULL_REFUND, 2 QUANTITY_BASED_PARTIAL_REFUND
    voided_at: datetime


@dataclass(frozen=True)
class Purchase:
    """A store transaction as recorded (adapters/purchases.py): keyed by (store, transaction id),
    credited to at most one user, ever."""

    id: str  # pur_...
    store: Store
    transaction_id: str
    product_id: str
    credits: int
    status: PurchaseStatus
    environment: StoreEnvironment
    created_at: str
    user_id: str | None = None  # None: a refund recorded before any claim
    pack_id: str | None = None
    revoked_at: str | None = None
    balance_after: int | None = None  # the balance the first claim answered (a replay answers the same)
    price_milli: int | None = None  # revenue only when environment is production
    currency: str | None = None
    notifications: frozenset[str] = frozenset()  # the store notifications applied (each at most once)
    purchase_token: str | None = None  # Google Play: the token the order is consumed with
    consumed_at: str | None = None  # Google Play: when Google confirmed the consume (None: still to do)
    rev: int = 0  # +1 on every write: a status change is conditioned on the revision it read

    @property
    def claimable(self) -> bool:
        """An unclaimed record a claim may take over (its refund was reversed)."""
        return self.user_id is None and self.status == "cleared"


def new_purchase(user_id: str, purchase: AppStorePurchase, purchase_id: str, now: str) -> Purchase:
    tx = purchase.transaction
    return Purchase(
        id=purchase_id,
        store="app_store",
        transaction_id=tx.transaction_id,
        product_id=tx.product_id,
        credits=purchase.pack.credits,
        status="granted",
        environment=tx.environment,
        created_at=now,
        user_id=user_id,
        pack_id=purchase.pack.id,
        price_milli=tx.price_milli,
        currency=tx.currency,
    )


def new_play_purchase(user_id: str, p: PlayPurchase, pack: CreditPack, purchase_id: str, now: str) -> Purchase:
    return Purchase(
        id=purchase_id,
        store="google_play",
        transaction_id=p.order_id,
        product_id=p.product_id,
        credits=pack.credits,
        status="granted",
        environment=p.environment,
        created_at=now,
        user_id=user_id,
        pack_id=pack.id,
        purchase_token=p.purchase_token,
    )


@dataclass(frozen=True)
class Revocation:
    """A store's refund or revocation of one transaction, whichever store said it."""

    store: Store
    transaction_id: str
    product_id: str  # "" when the store does not say (a Play voided notification names no product)
    environment: StoreEnvironment
    notification_id: str  # applied at most once
    revoked_at: str


def unclaimed_refund(r: Revocation, credits: int, purchase_id: str) -> Purchase:
    """What a refund of a transaction nobody claimed records, so that a later claim is refused."""
    return Purchase(
        id=purchase_id,
        store=r.store,
        transaction_id=r.transaction_id,
        product_id=r.product_id,
        credits=credits,
        status="revoked",
        environment=r.environment,
        created_at=r.revoked_at,
        revoked_at=r.revoked_at,
    )


# --- CONSUMPTION_REQUEST: what we tell Apple about a refund request (Send Consumption Information) -

DeliveryStatus = Literal["DELIVERED", "UNDELIVERED_OTHER"]
RefundPreference = Literal["DECLINE", "GRANT_FULL", "GRANT_PRORATED"]
FULL_MILLI = 100_000  # Apple's consumptionPercentage is in milliunits: 100 % = 100000


@dataclass(frozen=True)
class Usage:
    """What a buyer did with their credits since a purchase (PurchaseStore.usage_since)."""

    spent: int  # credits charged minus credits refunded in the ledger since the purchase
    balance: int  # the balance now


@dataclass(frozen=True)
class ConsumptionInfo:
    """The answer to a CONSUMPTION_REQUEST: the body of Apple's Send Consumption Information (v2,
    ``ConsumptionRequest``). Only ever sent with the customer's consent: Apple refuses
    ``customerConsented: false`` (HTTP 400), so without consent nothing is sent."""

    delivery_status: DeliveryStatus
    consumption_milli: int  # 0..100000 of the purchase's credits consumed
    refund_preference: RefundPreference
    sample_content_provided: bool = False  # no free sample or trial of a pack is given before its purchase
    customer_consented: bool = True


def consumption_of(purchase: Purchase | None, usage: Usage | None) -> ConsumptionInfo | None:
    """What we know of a transaction whose refund the customer asked Apple for; None when there is
    nothing to tell (refunded or revoked already: its credits were taken back).

    * never claimed (no record, or one no user holds): its credits were never delivered → nothing
      consumed, a full refund;
    * granted: consumed = the credits spent since the purchase, but no more than the purchase's
      credits no longer in the balance (credits are interchangeable: as long as the balance still
      holds them, the purchase counts as unspent) → 0 % GRANT_FULL, 100 % DECLINE, else GRANT_PRORATED.
    """
    if purchase is None or purchase.user_id is None:
        return ConsumptionInfo("UNDELIVERED_OTHER", 0, "GRANT_FULL")
    if purchase.status != "granted":
        return None
    assert usage is not None
    credits = purchase.credits
    unspent = min(credits, max(0, usage.balance))
    consumed = max(0, min(credits, usage.spent, credits - unspent))
    milli = FULL_MILLI if credits <= 0 else consumed * FULL_MILLI // credits
    preference: RefundPreference = (
        "GRANT_FULL" if consumed == 0 else "DECLINE" if consumed >= credits else "GRANT_PRORATED"
    )
    return ConsumptionInfo("DELIVERED", milli, preference)
