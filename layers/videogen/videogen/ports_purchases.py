"""Ports of the store purchases (issue 12), beside :mod:`videogen.ports` until they are merged
into it: the services depend on these Protocols, the adapters implement them, the fakes too."""

from __future__ import annotations

from typing import Protocol

from videogen.domain.purchases import AppStoreNotification, AppStorePurchase, AppStoreTransaction


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
