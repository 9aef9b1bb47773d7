"""The local App Store: a certificate chain generated at start and a signer of StoreKit 2 data.

Never deployed (devstack only). The chain is what Apple's verifier (app-store-server-library's
``_ChainVerifier``, strict X509 mode) requires of Apple's own:

* three P-256 certificates, root → intermediate → leaf; the CAs with basicConstraints CA (path
  length 1 and 0) and keyUsage keyCertSign + cRLSign, the leaf with digitalSignature;
* Apple's marker extensions, non-critical, value DER NULL: the WWDR intermediate's
  ``1.2.840.113635.100.6.2.1`` and the receipt-signing leaf's ``1.2.840.113635.100.6.11.1``;
* SubjectKeyIdentifier and AuthorityKeyIdentifier on all three (strict mode refuses a chain
  without them);
* validity covering every ``signedDate`` we sign (from a day before generation, ten years on).

:class:`LocalAppStoreSigner` signs with the leaf key (ES256, header ``x5c`` = base64 DER of leaf,
intermediate, root) payloads shaped like StoreKit 2's ``jwsRepresentation`` and App Store Server
Notifications V2's ``signedPayload``, so the library verifies them UNCHANGED once it trusts
:attr:`LocalAppStoreChain.root_der`. The knobs (no Apple extension, another root, another bundle
id, any environment or field) exist for the attack tests.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

WWDR_INTERMEDIATE_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
RECEIPT_SIGNING_LEAF_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
_DER_NULL = b"\x05\x00"
_VALID_FOR = timedelta(days=3650)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "videogen local stack (never deployed)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "videogen local App Store"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    path_length: int | None,
    marker: x509.ObjectIdentifier | None,
    not_before: datetime,
) -> x509.Certificate:
    """One certificate: a CA when ``path_length`` is not None, self-signed when ``issuer`` is None."""
    ca = path_length is not None
    issuer_name = issuer.subject if issuer is not None else _name(subject)
    issuer_public = issuer.public_key() if issuer is not None else key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + _VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if marker is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(marker, _DER_NULL), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class LocalAppStoreChain:
    """Root → intermediate → leaf, and the leaf's private key."""

    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(
        cls,
        *,
        leaf_extension: bool = True,
        intermediate_extension: bool = True,
        now: datetime | None = None,
    ) -> LocalAppStoreChain:
        """A fresh chain valid from a day before ``now``. ``leaf_extension`` /
        ``intermediate_extension`` False: that certificate lacks Apple's marker extension (a chain
        any CA could issue; the verifier must refuse it)."""
        start = (now or datetime.now(UTC)) - timedelta(days=1)
        root_key, intermediate_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        root = _certificate(
            "videogen Local Root CA", root_key, None, root_key, path_length=1, marker=None, not_before=start
        )
        intermediate = _certificate(
            "videogen Local WWDR CA",
            intermediate_key,
            root,
            root_key,
            path_length=0,
            marker=WWDR_INTERMEDIATE_OID if intermediate_extension else None,
            not_before=start,
        )
        leaf = _certificate(
            "videogen Local App Store Signing",
            leaf_key,
            intermediate,
            intermediate_key,
            path_length=None,
            marker=RECEIPT_SIGNING_LEAF_OID if leaf_extension else None,
            not_before=start,
        )
        return cls(root, intermediate, leaf, leaf_key)

    @property
    def root_der(self) -> bytes:
        """What the local stack's verifier trusts instead of Apple's roots."""
        return _der(self.root)

    def x5c(self) -> list[str]:
        return [base64.b64encode(_der(c)).decode() for c in (self.leaf, self.intermediate, self.root)]


def _ms(moment: datetime | None = None) -> int:
    return int((moment or datetime.now(UTC)).timestamp() * 1000)


@dataclass
class LocalAppStoreSigner:
    """Signs StoreKit-2-shaped data for one app with a chain's leaf key."""

    chain: LocalAppStoreChain
    bundle_id: str
    app_apple_id: int
    _sequence: int = field(default=0, repr=False)

    def sign(self, payload: dict[str, Any], *, x5c: list[str] | None = None) -> str:
        """``payload`` as an ES256 JWS with the chain in ``x5c`` (or the ``x5c`` given)."""
        headers = {"alg": "ES256", "x5c": self.chain.x5c() if x5c is None else x5c}
        return jwt.encode(payload, self.chain.leaf_key, algorithm="ES256", headers=headers)

    def new_transaction_id(self) -> str:
        """A numeric id like Apple's (unique within this process and across restarts)."""
        self._sequence += 1
        return f"{time.time_ns() // 1000}{self._sequence:04d}"

    def transaction_payload(
        self,
        product_id: str,
        *,
        transaction_id: str | None = None,
        environment: str = "Sandbox",
        app_account_token: str | None = None,
        revoked_at: datetime | None = None,
        signed_at: datetime | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """A consumable's JWSTransactionDecodedPayload; ``overrides`` replace or add fields (a
        value None removes the field)."""
        tid = transaction_id or self.new_transaction_id()
        signed = _ms(signed_at)
        payload: dict[str, Any] = {
            "transactionId": tid,
            "originalTransactionId": tid,
            "bundleId": self.bundle_id,
            "productId": product_id,
            "purchaseDate": signed,
            "originalPurchaseDate": signed,
            "quantity": 1,
            "type": "Consumable",
            "inAppOwnershipType": "PURCHASED",
            "signedDate": signed,
            "environment": environment,
            "transactionReason": "PURCHASE",
            "storefront": "USA",
            "storefrontId": "143441",
            "price": 4990,
            "currency": "USD",
            "appTransactionId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"local-app/{self.bundle_id}")),
        }
        if app_account_token is not None:
            payload["appAccountToken"] = app_account_token
        if revoked_at is not None:
            payload.update(revocationDate=_ms(revoked_at), revocationReason=0, revocationType="REFUND_FULL")
        payload.update(overrides)
        return {k: v for k, v in payload.items() if v is not None}

    def transaction(self, product_id: str, **kwargs: Any) -> str:
        """What StoreKit hands the app after a purchase: the transaction's ``jwsRepresentation``."""
        return self.sign(self.transaction_payload(product_id, **kwargs))

    def notification(
        self,
        notification_type: str,
        *,
        signed_transaction: str | None,
        environment: str = "Sandbox",
        subtype: str | None = None,
        consumption_request_reason: str | None = None,
        notification_id: str | None = None,
        bundle_id: str | None = None,
        app_apple_id: int | None = None,
    ) -> str:
        """An App Store Server Notification V2 ``signedPayload`` (the body is
        ``{"signedPayload": <this>}``)."""
        data: dict[str, Any] = {
            "appAppleId": self.app_apple_id if app_apple_id is None else app_apple_id,
            "bundleId": bundle_id or self.bundle_id,
            "bundleVersion": "1",
            "environment": environment,
        }
        if signed_transaction is not None:
            data["signedTransactionInfo"] = signed_transaction
        if consumption_request_reason is not None:
            data["consumptionRequestReason"] = consumption_request_reason
        payload: dict[str, Any] = {
            "notificationType": notification_type,
            "notificationUUID": notification_id or str(uuid.uuid4()),
            "data": data,
            "version": "2.0",
            "signedDate": _ms(),
        }
        if subtype is not None:
            payload["subtype"] = subtype
        return self.sign(payload)
