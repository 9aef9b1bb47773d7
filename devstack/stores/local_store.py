"""The local App Store of the local stack (never deployed): its chain, its app, its packs, and the
``/_local/store/...`` routes of the contract (docs/api.md, "Local stack").

* :meth:`LocalAppStore.env`: what the functions are configured with — the local app's bundle id and
  Apple ID, the local packs (the ``Products`` parameter) and the generated root, which the
  verifier trusts instead of Apple's only because ``ENVIRONMENT`` is local
  (``AppStoreVerifier.trusting(..., local=settings.is_local)``);
* :meth:`LocalAppStore.sign_transaction`: ``POST /_local/store/app-store/transactions``, what
  StoreKit hands the app after a purchase (the account token defaults to the user's own);
* :meth:`LocalAppStore.refund`: ``POST /_local/store/refunds``, Apple's signed REFUND notification
  of a transaction it signed, delivered to ``POST /webhooks/app-store`` through the local gateway
  and the real handler, as Apple sends it.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

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


@dataclass
class LocalAppStore:
    chain: LocalAppStoreChain
    signer: LocalAppStoreSigner
    signed: dict[str, dict[str, Any]] = field(default_factory=dict)  # transaction id → its payload
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(cls) -> LocalAppStore:
        chain = LocalAppStoreChain.generate()
        return cls(chain, LocalAppStoreSigner(chain, LOCAL_BUNDLE_ID, LOCAL_APP_APPLE_ID))

    def env(self) -> dict[str, str]:
        """Template parameters (``Products``, ``AppStore*``) and the variable only a local stack reads."""
        return {
            "Products": json.dumps(LOCAL_PRODUCTS),
            "AppStoreBundleId": LOCAL_BUNDLE_ID,
            "AppStoreAppAppleId": str(LOCAL_APP_APPLE_ID),
            "AppStoreAcceptSandbox": "true",
            "APP_STORE_LOCAL_ROOT": base64.b64encode(self.chain.root_der).decode(),
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
            return 400, {"error": f'send {{"store": "app_store", "transaction_id"}} ({exc})'}
        with self._lock:
            payload = self.signed.get(req.transaction_id)
        if payload is None:
            return 404, {"error": f"the local App Store signed no transaction {req.transaction_id!r}"}
        refunded = self.signer.transaction_payload(
            payload["productId"],
            transaction_id=req.transaction_id,
            environment=payload["environment"],
            app_account_token=payload.get("appAccountToken"),
            revoked_at=datetime.now(UTC),
        )
        notification = self.signer.notification(
            "REFUND", signed_transaction=self.signer.sign(refunded), environment=payload["environment"]
        )
        status, answer = deliver("POST", "/webhooks/app-store", json.dumps({"signedPayload": notification}).encode())
        if status != 200:
            return 502, {"error": f"the webhook answered {status}", "answer": answer}
        return 200, {"delivered": True, "webhook": answer}
