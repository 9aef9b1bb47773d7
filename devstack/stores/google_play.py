"""The local Google Play of the local stack (never deployed): a local Android Publisher API, its
OAuth token endpoint and a local Pub/Sub push signer, on their own port (``PLAY_PORT``).

* :meth:`LocalPlay.env`: what the functions are configured with — the local package name, a
  service-account key generated now whose ``token_uri`` is this server (so google-auth's own
  JWT-bearer exchange runs unchanged), the push audience and service account, and the two URLs a
  deployed stack never honours (``PLAY_LOCAL_API_URL``, ``PLAY_LOCAL_CERTS_URL``: read only when
  ``ENVIRONMENT`` is local);
* the server: ``POST /token`` (the service account's signed assertion verified, an access token
  issued), ``GET .../purchases/products/{productId}/tokens/{token}`` and ``POST ...:consume``
  (only with an issued access token, only for the local package), ``GET /oauth2/v1/certs`` (the push
  signer's certificate, by key id);
* :meth:`LocalPlay.buy`: ``POST /_local/store/google-play/purchases``, a purchase the Publisher API
  then reports as purchased (its ``obfuscatedExternalAccountId`` the user's account token);
* :meth:`LocalPlay.refund`: ``POST /_local/store/refunds`` with ``store: google_play``: the purchase
  voided at the local API (canceled, and on ``voidedpurchases.list``), then a
  ``voidedPurchaseNotification`` pushed to ``POST /webhooks/google-play`` with an OIDC token signed
  by the push signer, as Pub/Sub sends it (:meth:`LocalPlay.void` alone: a push that never came).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, Field

from devstack.httpd import HttpServer, request_headers, status_line

LOCAL_PACKAGE = "com.example.videogen.local"
PUSH_SERVICE_ACCOUNT = "play-push@videogen-local.iam.gserviceaccount.com"
PUBLISHER_SERVICE_ACCOUNT = "play-publisher@videogen-local.iam.gserviceaccount.com"
ISSUER = "https://accounts.google.com"
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth's assertion audience, whatever token_uri
_PREFIX = f"/androidpublisher/v3/applications/{LOCAL_PACKAGE}/purchases/products/"
_VOIDED = f"/androidpublisher/v3/applications/{LOCAL_PACKAGE}/purchases/voidedpurchases"

Deliver = Callable[[str, str, dict[str, str], bytes], tuple[int, Any]]
"""(method, path, headers, body) → (status, JSON body): a request through the local gateway."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PlayPurchaseRequest(_Strict):
    user_id: str = Field(min_length=1, max_length=128)
    product_id: str = Field(min_length=1, max_length=100)


class PlayRefundRequest(_Strict):
    store: str
    purchase_token: str = Field(min_length=1, max_length=1024)


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _certificate(key: rsa.RSAPrivateKey, name: str) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class LocalPlay:
    host: str
    port: int = 0
    audience: str = "http://127.0.0.1/webhooks/google-play"
    publisher_key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    publisher_key_id: str = field(default_factory=lambda: secrets.token_hex(20))
    push_key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    push_key_id: str = field(default_factory=lambda: secrets.token_hex(20))
    purchases: dict[str, dict[str, Any]] = field(default_factory=dict)  # token → ProductPurchase
    voided: list[dict[str, Any]] = field(default_factory=list)  # what voidedpurchases.list answers
    access_tokens: dict[str, float] = field(default_factory=dict)  # token → expiry (monotonic)
    calls: list[str] = field(default_factory=list)  # "get" / "consume" / "token": what the stack asked
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: HttpServer | None = None

    def start(self) -> LocalPlay:
        self._server = HttpServer(self._wsgi, self.host, self.port, name="local-play", threads=4)
        self._server.start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def service_account_json(self) -> str:
        """A service-account key as the Cloud console downloads it, its token_uri this server."""
        return json.dumps(
            {
                "type": "service_account",
                "project_id": "videogen-local",
                "private_key_id": self.publisher_key_id,
                "private_key": _pem(self.publisher_key),
                "client_email": PUBLISHER_SERVICE_ACCOUNT,
                "client_id": "1",
                "token_uri": f"{self.base_url}/token",
            }
        )

    def env(self) -> dict[str, str]:
        return {
            "PlayPackageName": LOCAL_PACKAGE,
            "PlayPushAudience": self.audience,
            "PlayPushServiceAccountEmail": PUSH_SERVICE_ACCOUNT,
            "PLAY_SERVICE_ACCOUNT": self.service_account_json(),
            "PLAY_LOCAL_API_URL": self.base_url,
            "PLAY_LOCAL_CERTS_URL": f"{self.base_url}/oauth2/v1/certs",
        }

    # --- the stack's routes ------------------------------------------------------------------------

    def buy(self, body: bytes, account_token: Callable[[str], str]) -> tuple[int, Any]:
        try:
            req = PlayPurchaseRequest.model_validate_json(body or b"{}")
        except ValueError as exc:
            return 400, {"error": f'send {{"user_id", "product_id"}} ({exc})'}
        token = f"{secrets.token_urlsafe(24)}.AO-J1O{secrets.token_urlsafe(60)}"
        digits = "".join(str(secrets.randbelow(10)) for _ in range(16))
        order = f"GPA.{digits[:4]}-{digits[4:8]}-{digits[8:12]}-{digits[12:]}"
        record = {
            "kind": "androidpublisher#productPurchase",
            "purchaseTimeMillis": str(int(time.time() * 1000)),
            "purchaseState": 0,
            "consumptionState": 0,
            "orderId": order,
            "purchaseType": 0,  # a license tester's purchase: what a local purchase is
            "acknowledgementState": 0,
            "productId": req.product_id,
            "regionCode": "US",
            "obfuscatedExternalAccountId": account_token(req.user_id),
        }
        with self._lock:
            self.purchases[token] = record
        return 200, {"purchase_token": token, "order_id": order}

    def refund(self, body: bytes, deliver: Deliver) -> tuple[int, Any]:
        try:
            req = PlayRefundRequest.model_validate_json(body or b"{}")
        except ValueError as exc:
            return 400, {"error": f'send {{"store": "google_play", "purchase_token"}} ({exc})'}
        record = self.void(req.purchase_token)
        if record is None:
            return 404, {"error": "the local Publisher API sold nothing with that purchase token"}
        now = int(time.time() * 1000)
        notification = {
            "version": "1.0",
            "packageName": LOCAL_PACKAGE,
            "eventTimeMillis": str(now),
            "voidedPurchaseNotification": {
                "purchaseToken": req.purchase_token,
                "orderId": record["orderId"],
                "productType": 2,
                "refundType": 1,
            },
        }
        status, answer = deliver("POST", "/webhooks/google-play", *self.push(notification))
        if status != 200:
            return 502, {"error": f"the webhook answered {status}", "answer": answer}
        return 200, {"delivered": True, "webhook": answer}

    def void(self, purchase_token: str) -> dict[str, Any] | None:
        """The purchase refunded at the local Google: canceled, and on the voided purchases list."""
        with self._lock:
            record = self.purchases.get(purchase_token)
            if record is not None and record["purchaseState"] != 1:
                record["purchaseState"] = 1  # Canceled: what Google reports for a voided order
                self.voided.append(
                    {
                        "kind": "androidpublisher#voidedPurchase",
                        "purchaseToken": purchase_token,
                        "orderId": record["orderId"],
                        "purchaseTimeMillis": record["purchaseTimeMillis"],
                        "voidedTimeMillis": str(int(time.time() * 1000)),
                        "voidedSource": 0,
                        "voidedReason": 1,
                        "voidedQuantity": 1,
                    }
                )
        return record

    def _voided_list(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            start = int(query.get("startTime", ["0"])[0])
            size = int(query.get("maxResults", ["1000"])[0])
            offset = int(query.get("token", ["0"])[0])
        except ValueError:
            return 400, {"error": {"code": 400, "message": "Invalid value"}}
        with self._lock:
            self.calls.append("voidedpurchases")
            matching = [v for v in self.voided if int(v["voidedTimeMillis"]) >= start]
        page = matching[offset : offset + size]
        answer: dict[str, Any] = {"voidedPurchases": page, "pageInfo": {"totalResults": len(matching)}}
        if offset + size < len(matching):
            answer["tokenPagination"] = {"nextPageToken": str(offset + size)}
        return 200, answer

    def push(self, notification: dict[str, Any], **claims: Any) -> tuple[dict[str, str], bytes]:
        """Headers and body of a Pub/Sub push of ``notification`` (claims override the token's)."""
        message_id = str(secrets.randbelow(10**16))
        body = {
            "message": {
                "attributes": {},
                "data": base64.b64encode(json.dumps(notification).encode()).decode(),
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": dt.datetime.now(dt.UTC).isoformat(),
            },
            "subscription": "projects/videogen-local/subscriptions/play-rtdn",
        }
        headers = {
            "authorization": f"Bearer {self.oidc_token(**claims)}",
            "content-type": "application/json",
            "user-agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
        }
        return headers, json.dumps(body).encode()

    def oidc_token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": self.audience,
            "azp": "1",
            "sub": "1",
            "email": PUSH_SERVICE_ACCOUNT,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        } | claims
        return jwt.encode(payload, self.push_key, algorithm="RS256", headers={"kid": self.push_key_id})

    # --- the server -------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        raw = environ.get("RAW_URI") or environ.get("PATH_INFO", "")
        raw_path, _, query = raw.partition("?")
        path = unquote(raw_path) + (f"?{query}" if query else "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, answer = self._handle(method, path, request_headers(environ), body)
        data = json.dumps(answer).encode() if answer is not None else b""
        start(status_line(status), [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        path, _, query = target.partition("?")
        if (method, path) == ("GET", "/oauth2/v1/certs"):
            return 200, {self.push_key_id: _certificate(self.push_key, "local-pubsub-push")}
        if (method, path) == ("POST", "/token"):
            return self._token(body)
        if not path.startswith("/androidpublisher/v3/applications/"):
            return 404, {"error": {"code": 404, "message": "not found"}}
        if not self._authorized(headers.get("authorization", "")):
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        if (method, path) == ("GET", _VOIDED):
            return self._voided_list(parse_qs(query))
        if not path.startswith(_PREFIX):  # another package: ours cannot see it
            return 404, {"error": {"code": 404, "message": "No application was found for the given package name."}}
        product_id, _, rest = path[len(_PREFIX) :].partition("/tokens/")
        token, consume = (rest[: -len(":consume")], True) if rest.endswith(":consume") else (rest, False)
        with self._lock:
            record = self.purchases.get(token)
            if record is None or record["productId"] != product_id:
                return 400, {"error": {"code": 400, "message": "The purchase token is no longer valid."}}
            if method == "GET" and not consume:
                self.calls.append("get")
                return 200, dict(record)
            if method == "POST" and consume:
                self.calls.append("consume")
                if record["consumptionState"] == 1 or record["purchaseState"] != 0:
                    return 400, {"error": {"code": 400, "message": "The product purchase is not owned by the user."}}
                record["consumptionState"] = 1
                record["acknowledgementState"] = 1
                return 204, None
        return 405, {"error": {"code": 405}}

    def _token(self, body: bytes) -> tuple[int, Any]:
        form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                self.publisher_key.public_key(),
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_AUDIENCE, f"{self.base_url}/token"],
                issuer=PUBLISHER_SERVICE_ACCOUNT,
            )
        except jwt.PyJWTError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if SCOPE not in str(claims.get("scope", "")).split():
            return 400, {"error": "invalid_scope"}
        access = f"ya29.local-{secrets.token_urlsafe(32)}"
        with self._lock:
            self.calls.append("token")
            self.access_tokens[access] = time.monotonic() + 3600
        return 200, {"access_token": access, "expires_in": 3600, "token_type": "Bearer"}

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        with self._lock:
            expiry = self.access_tokens.get(token)
        return scheme == "Bearer" and expiry is not None and expiry > time.monotonic()
