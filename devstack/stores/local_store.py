"""The local App Store of the local stack (never deployed): its chain, its app, its packs, and the
``/_local/store/...`` routes of the contract (docs/api.md, "Local stack").

* :meth:`LocalAppStore.env`: what the functions are configured with — the local app's bundle id and
  Apple ID, the local packs (the ``Products`` parameter) and the generated root, which the
  verifier trusts instead of Apple's only because ``ENVIRONMENT`` is local
  (``AppStoreVerifier.trusting(..., local=settings.is_local)``);
* :meth:`LocalAppStore.sign_transaction`: ``POST /_local/store/app-store/transactions``, what
  StoreKit hands the app after a purchase (the account token defaults to the user's own);
* :meth:`LocalAppStore.refund`: ``POST /_local/store/refunds``, Apple's signed REFUND notification
  of a transaction it signed (or, with ``"notification": "CONSUMPTION_REQUEST"``, the customer's
  refund request that asks us for consumption information), delivered to ``POST
  /webhooks/app-store`` through the local gateway and the real handler, as Apple sends it;
* :class:`LocalServerApi`: the local App Store Server API the store webhook answers a
  CONSUMPTION_REQUEST at (``PUT .../inApps/v2/transactions/consumption/{id}``, requests signed with
  the local App Store Connect API key it generated, checked as Apple checks them), and ``GET
  /_local/store/app-store/consumption``: what it received.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field

from devstack.stores.app_store_chain import LocalAppStoreChain, LocalAppStoreSigner

LOCAL_BUNDLE_ID = "com.example.videogen.local"
LOCAL_APP_APPLE_ID = 1234567890
LOCAL_PRODUCTS = [
    {"id": "credits_100", "credits": 100, "app_store_product_id": "com.example.videogen.credits100",
     "google_play_product_id": "credits_100"},
    {"id": "credits_500", "credits": 500, "app_store_product_id": "com.example.videogen.credits500",
     "google_play_product_id": "credits_500"},
]  # fmt: skip
"""The packs the local stack sells (its ``Products`` parameter)."""

Deliver = Callable[[str, str, bytes], tuple[int, Any]]
"""(method, path, body) → (status, JSON body): a request through the local gateway."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TransactionRequest(_Strict):
    user_id: str = Field(min_length=1, max_length=128)
    product_id: str = Field(min_length=1, max_length=100)
    environment: Literal["Sandbox", "Production", "Xcode", "LocalTesting"] = "Sandbox"
    app_account_token: str | None = None


class RefundRequest(_Strict):
    store: Literal["app_store"]
    transaction_id: str = Field(min_length=1, max_length=64)
    notification: Literal["REFUND", "CONSUMPTION_REQUEST"] = "REFUND"
    reason: Literal["UNINTENDED_PURCHASE", "FULFILLMENT_ISSUE", "UNSATISFIED_WITH_PURCHASE", "LEGAL", "OTHER"] = (
        "UNSATISFIED_WITH_PURCHASE"  # consumptionRequestReason of a CONSUMPTION_REQUEST
    )


API_PREFIX = "/_local/store/app-store/api"  # the local App Store Server API's base URL path
CONSUMPTION_PATH = "/inApps/v2/transactions/consumption/"


@dataclass
class LocalServerApi:
    """Apple's App Store Server API as far as Send Consumption Information goes: a request must
    carry a bearer JWT signed ES256 by the local API key (its ``kid``), for our issuer, audience
    ``appstoreconnect-v1`` and our bundle id, else 401; a body with ``customerConsented`` not true
    is 400 InvalidCustomerConsentedError (4000035), as Apple answers it. What it accepted is kept
    for ``GET .../consumption``."""

    bundle_id: str
    key_id: str = field(default_factory=lambda: secrets.token_hex(5).upper())
    issuer_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    received: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def secret(self) -> str:
        """The App Store Connect API key's secret, as the deployed one is stored (JSON)."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return json.dumps({"key_id": self.key_id, "issuer_id": self.issuer_id, "private_key": pem})

    def consumption(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        """``PUT {API_PREFIX}/inApps/v2/transactions/consumption/{transactionId}``."""
        transaction_id = path.removeprefix(API_PREFIX + CONSUMPTION_PATH)
        if not transaction_id or "/" in transaction_id:
            return 404, {"errorCode": 4040010, "errorMessage": "Transaction id not found."}
        if not self._authorized(headers.get("authorization", "")):
            return 401, {"errorMessage": "Unauthenticated"}
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict) or request.get("customerConsented") is not True:
            return 400, {"errorCode": 4000035, "errorMessage": "The customer consented field is invalid."}
        with self._lock:
            self.received.append({"transaction_id": transaction_id, "body": request})
        return 202, {}

    def _authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            return False
        try:
            if jwt.get_unverified_header(token).get("kid") != self.key_id:
                return False
            claims = jwt.decode(
                token, self._key.public_key(), algorithms=["ES256"], audience="appstoreconnect-v1",
                issuer=self.issuer_id, options={"require": ["exp", "iss", "aud"]},
            )  # fmt: skip
        except jwt.InvalidTokenError:
            return False
        return bool(claims.get("bid") == self.bundle_id)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)


@dataclass
class LocalAppStore:
    chain: LocalAppStoreChain
    signer: LocalAppStoreSigner
    api: LocalServerApi
    signed: dict[str, dict[str, Any]] = field(default_factory=dict)  # transaction id → its payload
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(cls) -> LocalAppStore:
        chain = LocalAppStoreChain.generate()
        return cls(
            chain, LocalAppStoreSigner(chain, LOCAL_BUNDLE_ID, LOCAL_APP_APPLE_ID), LocalServerApi(LOCAL_BUNDLE_ID)
        )

    def env(self, api_url: str, api_key_secret_arn: str) -> dict[str, str]:
        """Template parameters (``Products``, ``AppStore*``) and the variables only a local stack
        reads: the generated root, and the local App Store Server API (at ``api_url``) whose key
        is in the secret ``api_key_secret_arn`` (:meth:`LocalServerApi.secret`)."""
        return {
            "Products": json.dumps(LOCAL_PRODUCTS),
            "AppStoreBundleId": LOCAL_BUNDLE_ID,
            "AppStoreAppAppleId": str(LOCAL_APP_APPLE_ID),
            "AppStoreAcceptSandbox": "true",
            "AppStoreConnectApiKeySecretArn": api_key_secret_arn,
            "AppStoreConsumptionConsent": "true",
            "APP_STORE_LOCAL_ROOT": base64.b64encode(self.chain.root_der).decode(),
            "APP_STORE_SERVER_API_URL": api_url.rstrip("/") + API_PREFIX,
        }

    # --- the routes -------------------------------------------------------------------------------

    def sign_transaction(self, body: bytes, account_token: Callable[[str], str]) -> tuple[int, Any]:
        try:
            req = TransactionRequest.model_validate_json(body or b"{}")
        except ValueError as exc:
            return 400, {"error": f'send {{"user_id", "product_id", "environment"?, "app_account_token"?}} ({exc})'}
        token = req.app_account_token if req.app_account_token is not None else account_token(req.user_id)
        payload = self.signer.transaction_payload(req.product_id, environment=req.environment, app_account_token=token)
        with self._lock:
            self.signed[payload["transactionId"]] = payload
        return 200, {"signed_transaction": self.signer.sign(payload), "transaction_id": payload["transactionId"]}

    def refund(self, body: bytes, deliver: Deliver) -> tuple[int, Any]:
        try:
            req = RefundRequest.model_validate_json(body or b"{}")
        except ValueError as exc:
            return 400, {
                "error": f'send {{"store": "app_store", "transaction_id", "notification"?, "reason"?}} ({exc})'
            }
        with self._lock:
            payload = self.signed.get(req.transaction_id)
        if payload is None:
            return 404, {"error": f"the local App Store signed no transaction {req.transaction_id!r}"}
        refund = req.notification == "REFUND"  # a CONSUMPTION_REQUEST: asked for, not refunded yet
        transaction = self.signer.transaction_payload(
            payload["productId"],
            transaction_id=req.transaction_id,
            environment=payload["environment"],
            app_account_token=payload.get("appAccountToken"),
            revoked_at=datetime.now(UTC) if refund else None,
        )
        notification = self.signer.notification(
            req.notification,
            signed_transaction=self.signer.sign(transaction),
            environment=payload["environment"],
            consumption_request_reason=None if refund else req.reason,
        )
        status, answer = deliver("POST", "/webhooks/app-store", json.dumps({"signedPayload": notification}).encode())
        if status != 200:
            return 502, {"error": f"the webhook answered {status}", "answer": answer}
        return 200, {"delivered": True, "webhook": answer}
