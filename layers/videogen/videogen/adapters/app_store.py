"""App Store signed data verified with Apple's own library (``app-store-server-library``), mapped to
our types (domain/purchases.py). Implements :class:`videogen.ports_purchases.AppStoreVerification`.

What is checked, by the library unchanged (its ``SignedDataVerifier``, online checks off):

* the JWS is ES256 with a 3-certificate ``x5c`` whose leaf and intermediate chain up to a trusted
  root, with Apple's extensions on both (leaf ``1.2.840.113635.100.6.11.1``, intermediate
  ``1.2.840.113635.100.6.2.1``), valid at the payload's own ``signedDate`` (offline, so an old JWS
  verifies forever: replay protection is the purchase record keyed by transaction id);
* our bundle id, and for notifications our app id;
* the environment: a verifier for Production and, unless turned off, one for Sandbox (App Review and
  TestFlight buy in the sandbox against the production build). A sandbox purchase is recorded as
  ``sandbox``. The library's Xcode and LocalTesting environments decode WITHOUT checking any
  signature: no verifier here is ever built for them (only :data:`_LIBRARY_ENVIRONMENTS` is), so a
  JWS claiming either is refused like any other environment we do not accept.

Trust: a deployed stack trusts Apple's root certificates shipped in the layer (certs/apple/, their
SHA-256 pinned in the tests) and nothing else. Only the local stack, with ``local=True`` (the
settings' ``is_local``: never true for a deployed Stage), may build a verifier trusting its own
generated root (:meth:`AppStoreVerifier.trusting`).

Refusals: a purchase raises PurchaseInvalid / PurchaseRevoked / ProductUnknown (422), a
notification InvalidSignature (401); a verification that could not run (only with online checks,
which are off) ServiceUnavailable, so the store retries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.JWSTransactionDecodedPayload import JWSTransactionDecodedPayload
from appstoreserverlibrary.signed_data_verifier import SignedDataVerifier, VerificationException, VerificationStatus
from cattrs.errors import BaseValidationError

from videogen.domain.account_token import normalized
from videogen.domain.errors import DomainError, InvalidSignature, PurchaseInvalid, ServiceUnavailable
from videogen.domain.products import Catalog
from videogen.domain.purchases import (
    MAX_JWS_CHARS,
    AppStoreNotification,
    AppStorePurchase,
    AppStoreTransaction,
    StoreEnvironment,
    claimable,
)

APPLE_ROOTS_DIR = Path(__file__).resolve().parent.parent / "certs" / "apple"
APPLE_ROOT_FILES = ("AppleIncRootCertificate.cer", "AppleRootCA-G2.cer", "AppleRootCA-G3.cer")

# The ONLY library environments a verifier is built for; Xcode and LocalTesting skip every check.
_LIBRARY_ENVIRONMENTS: dict[StoreEnvironment, Environment] = {
    "production": Environment.PRODUCTION,
    "sandbox": Environment.SANDBOX,
}

_WHY: dict[VerificationStatus, str] = {
    VerificationStatus.VERIFICATION_FAILURE: "the signature or its certificate chain does not verify",
    VerificationStatus.INVALID_APP_IDENTIFIER: "it was signed for another app (bundle id or app id)",
    VerificationStatus.INVALID_CERTIFICATE: "its certificates cannot be read",
    VerificationStatus.INVALID_CHAIN_LENGTH: "its certificate chain does not have 3 certificates",
    VerificationStatus.INVALID_CHAIN: "its certificate chain does not verify",
    VerificationStatus.INVALID_ENVIRONMENT: "it is from an environment this deployment does not accept",
}

T = TypeVar("T")


def apple_roots() -> tuple[bytes, ...]:
    """Apple's root certificates (DER) as shipped in the layer."""
    return tuple((APPLE_ROOTS_DIR / name).read_bytes() for name in APPLE_ROOT_FILES)


@dataclass(frozen=True)
class AppStoreConfig:
    bundle_id: str  # the app's bundle id, e.g. com.example.videogen
    app_apple_id: int  # the app's Apple ID (App Store Connect → App Information)
    allow_sandbox: bool = True  # App Review and TestFlight buy in the sandbox against production builds

    def __post_init__(self) -> None:
        if not self.bundle_id:
            raise ValueError("the App Store verifier needs the app's bundle id")
        if isinstance(self.app_apple_id, bool) or not isinstance(self.app_apple_id, int) or self.app_apple_id <= 0:
            raise ValueError(f"the app's Apple ID must be a positive integer, got {self.app_apple_id!r}")

    @property
    def environments(self) -> tuple[StoreEnvironment, ...]:
        return ("production", "sandbox") if self.allow_sandbox else ("production",)


class AppStoreVerifier:
    """Verifies against Apple's roots; the one constructor a deployed stack uses."""

    def __init__(self, config: AppStoreConfig, catalog: Catalog) -> None:
        self._setup(config, catalog, apple_roots())

    @classmethod
    def trusting(
        cls, config: AppStoreConfig, catalog: Catalog, roots: Sequence[bytes], *, local: bool
    ) -> AppStoreVerifier:
        """A verifier trusting ``roots`` instead of Apple's: the local stack's generated chain
        (devstack/stores/app_store_chain.py). Refused unless ``local`` (settings.is_local)."""
        if not local:
            raise ValueError("a deployed configuration trusts Apple's root certificates only")
        if not roots:
            raise ValueError("no root certificate to trust")
        verifier = cls.__new__(cls)
        verifier._setup(config, catalog, tuple(roots))
        return verifier

    def _setup(self, config: AppStoreConfig, catalog: Catalog, roots: tuple[bytes, ...]) -> None:
        self.config = config
        self._catalog = catalog
        self._verifiers = tuple(
            (
                env,
                SignedDataVerifier(
                    list(roots), False, _LIBRARY_ENVIRONMENTS[env], config.bundle_id, config.app_apple_id
                ),
            )
            for env in config.environments
        )

    # --- the port -------------------------------------------------------------------------------

    def purchase(self, signed_transaction: str) -> AppStorePurchase:
        tx = self.transaction(signed_transaction)
        return AppStorePurchase(tx, claimable(tx, self._catalog))

    def transaction(self, signed_transaction: str) -> AppStoreTransaction:
        env, decoded = self._verify(
            signed_transaction,
            lambda v, jws: v.verify_and_decode_signed_transaction(jws),
            PurchaseInvalid,
            "transaction",
        )
        return _transaction(decoded, env, PurchaseInvalid)

    def notification(self, signed_payload: str) -> AppStoreNotification:
        env, decoded = self._verify(
            signed_payload, lambda v, jws: v.verify_and_decode_notification(jws), InvalidSignature, "notification"
        )
        if not decoded.notificationUUID or not decoded.rawNotificationType or decoded.signedDate is None:
            raise InvalidSignature("the notification lacks its id, type or signing date")
        data = decoded.data
        tx = None
        if data is not None and data.signedTransactionInfo:
            tx_env, tx_decoded = self._verify(
                data.signedTransactionInfo,
                lambda v, jws: v.verify_and_decode_signed_transaction(jws),
                InvalidSignature,
                "notification's transaction",
            )
            if tx_env != env:
                raise InvalidSignature("the notification and its transaction are from different environments")
            tx = _transaction(tx_decoded, tx_env, InvalidSignature)
        return AppStoreNotification(
            notification_id=decoded.notificationUUID,
            notification_type=decoded.rawNotificationType,
            subtype=decoded.rawSubtype,
            environment=env,
            signed_at=_time(decoded.signedDate),
            transaction=tx,
            consumption_request_reason=data.rawConsumptionRequestReason if data is not None else None,
        )

    # --- verification ---------------------------------------------------------------------------

    def _verify(
        self,
        jws: object,
        decode: Callable[[SignedDataVerifier, str], T],
        refusal: type[DomainError],
        what: str,
    ) -> tuple[StoreEnvironment, T]:
        """The first accepted environment whose verifier takes ``jws``. Another environment's
        verifier is tried only when this one refused the environment alone (the signature, chain
        and app checks come first in the library and are the same for every environment)."""
        if not isinstance(jws, str) or not jws or len(jws) > MAX_JWS_CHARS:
            raise refusal(f"the {what} is not a signed App Store JWS")
        status = VerificationStatus.INVALID_ENVIRONMENT
        for env, verifier in self._verifiers:
            try:
                return env, decode(verifier, jws)
            except VerificationException as e:
                status = e.status
            except (BaseValidationError, ValueError, TypeError, AttributeError):
                raise refusal(f"the {what}'s payload is not an App Store payload") from None
            if status != VerificationStatus.INVALID_ENVIRONMENT:
                break
        if status == VerificationStatus.RETRYABLE_VERIFICATION_FAILURE:
            raise ServiceUnavailable("Apple's certificate status could not be checked; try again")
        raise refusal(f"the {what} does not verify: {_WHY.get(status, 'verification failed')}")


def _transaction(
    d: JWSTransactionDecodedPayload, env: StoreEnvironment, refusal: type[DomainError]
) -> AppStoreTransaction:
    if not d.transactionId or not d.productId or d.signedDate is None:
        raise refusal("the transaction lacks its id, product id or signing date")
    token = normalized(d.appAccountToken)
    if d.appAccountToken and token is None:
        raise refusal("the transaction's appAccountToken is not a UUID")
    return AppStoreTransaction(
        transaction_id=d.transactionId,
        original_transaction_id=d.originalTransactionId or d.transactionId,
        product_id=d.productId,
        app_account_token=token,
        environment=env,
        product_type=d.rawType or "",
        quantity=d.quantity if d.quantity is not None else 0,
        signed_at=_time(d.signedDate),
        purchased_at=_time(d.purchaseDate) if d.purchaseDate is not None else None,
        revoked_at=_time(d.revocationDate) if d.revocationDate is not None else None,
        revocation_reason=d.rawRevocationReason,
        price_milli=d.price,
        currency=d.currency,
    )


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
