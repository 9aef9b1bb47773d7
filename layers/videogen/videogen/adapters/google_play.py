"""Google Play: the Android Publisher API (purchases verified and consumed) and the Pub/Sub push of
Play's real-time developer notifications (its OIDC token verified). Implements
:class:`videogen.ports_purchases.PlayPublisher` and :class:`videogen.ports_purchases.PlayPushVerification`.

Publisher API (``requests`` + google-auth's service-account credentials, no generated client: two
REST calls do not earn googleapiclient's discovery machinery):

* ``purchases.products.get`` — GET ``{base}/androidpublisher/v3/applications/{package}/purchases/
  products/{productId}/tokens/{token}`` → ``ProductPurchase``. The package is ours by construction
  (a token of another app is unknown to Google under our package: 400/404 → purchase_invalid); the
  answer must name the product asked for (when it names one).
* ``purchases.products.consume`` — POST ``...:consume``; a consume Google refuses because the
  purchase is consumed already counts as done (checked with a get);
* ``purchases.voidedpurchases.list`` — GET ``.../purchases/voidedpurchases`` (one-time products,
  since a start time, paged): the reconciler's pass for voided purchases whose push never came.

The credential is a service-account key (JSON) read from Secrets Manager; google-auth exchanges it
at the key's ``token_uri`` for an access token (scope androidpublisher), refreshed when expired.
``base_url`` is Google's; the local stack points it (and the local key's ``token_uri``) at its local
Publisher API. Never logged: tokens, keys, bodies.

Push (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions): ``Authorization:
Bearer <JWT>`` verified by google-auth (``id_token.verify_token``: RS256 against the certificates at
``certs_url``, ``iat``/``exp``, our ``aud``), then what google-auth leaves to us: ``iss`` is Google's,
``email`` is our push service account and ``email_verified`` is true. The certificates are cached
(``CERTS_MAX_AGE_S``) instead of fetched on every push.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from google.auth import exceptions as google_exceptions
from google.auth.transport import Request as GoogleRequest
from google.auth.transport import Response as GoogleResponse
from google.auth.transport.requests import Request as RequestsRequest
from google.oauth2 import id_token, service_account

from videogen.domain.errors import InvalidSignature, PurchaseInvalid, ServiceUnavailable
from videogen.domain.purchases import PLAY_TEST, PlayPurchase, PlayVoided
from videogen.observability import logger

GOOGLE_APIS = "https://androidpublisher.googleapis.com"
GOOGLE_CERTS = "https://www.googleapis.com/oauth2/v1/certs"
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
TIMEOUT_S = 10.0
CERTS_MAX_AGE_S = 3600.0
MAX_PUSH_BYTES = 64 * 1024
CLOCK_SKEW_S = 10
VOIDED_PAGE_SIZE = 1000
VOIDED_PAGES = 3


@dataclass(frozen=True)
class PlayConfig:
    package_name: str  # the Android app's package name, e.g. com.example.videogen
    base_url: str = GOOGLE_APIS

    def __post_init__(self) -> None:
        if not self.package_name:
            raise ValueError("the Play verifier needs the app's package name")


class GooglePlayPublisher:
    def __init__(
        self,
        config: PlayConfig,
        service_account_json: Callable[[], str],
        session: requests.Session | None = None,
    ) -> None:
        self.config = config
        self._key = service_account_json
        self._session = session or requests.Session()
        self._credentials: service_account.Credentials | None = None
        self._lock = threading.Lock()

    # --- the port -------------------------------------------------------------------------------

    def purchase(self, product_id: str, purchase_token: str) -> PlayPurchase:
        status, body = self._call("GET", product_id, purchase_token, "")
        if status in (400, 404, 410):
            raise PurchaseInvalid(
                f"Google Play knows no purchase of {product_id!r} with this token for {self.config.package_name}"
            )
        if status != 200 or not isinstance(body, dict):
            raise self._unavailable("get", status)
        return _purchase(body, product_id, purchase_token)

    def consume(self, product_id: str, purchase_token: str) -> None:
        status, _ = self._call("POST", product_id, purchase_token, ":consume")
        if status in (200, 204):
            return
        # refused: consumed already? Google's record says
        if status in (400, 409) and self.purchase(product_id, purchase_token).consumed:
            return
        raise self._unavailable("consume", status)

    def voided_purchases(self, since: datetime, max_pages: int = VOIDED_PAGES) -> list[PlayVoided]:
        """``purchases.voidedpurchases.list`` of one-time products voided since ``since`` (Google keeps
        30 days), at most ``max_pages`` pages of ``VOIDED_PAGE_SIZE``."""
        found: list[PlayVoided] = []
        params: dict[str, str] = {
            "startTime": str(int(since.timestamp() * 1000)),
            "type": "0",
            "maxResults": str(VOIDED_PAGE_SIZE),
        }
        for _ in range(max_pages):
            status, body = self._request("GET", f"{self._app_url()}/purchases/voidedpurchases", params)
            if status != 200 or not isinstance(body, dict):
                raise self._unavailable("voidedpurchases.list", status)
            for v in body.get("voidedPurchases") or ():
                item = _voided_item(v)
                if item is not None:
                    found.append(item)
            page = (body.get("tokenPagination") or {}).get("nextPageToken")
            if not page:
                break
            params["token"] = str(page)
        return found

    # --- calls ----------------------------------------------------------------------------------

    def _app_url(self) -> str:
        c = self.config
        return f"{c.base_url.rstrip('/')}/androidpublisher/v3/applications/{quote(c.package_name, safe='')}"

    def _call(self, method: str, product_id: str, purchase_token: str, action: str) -> tuple[int, Any]:
        product, token = quote(product_id, safe=""), quote(purchase_token, safe="")
        return self._request(method, f"{self._app_url()}/purchases/products/{product}/tokens/{token}{action}")

    def _request(self, method: str, url: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        try:
            headers = {"Authorization": f"Bearer {self._access_token()}"}
            response = self._session.request(method, url, headers=headers, params=params, timeout=TIMEOUT_S)
        except (requests.RequestException, google_exceptions.GoogleAuthError) as exc:
            logger.warning("google play call failed", extra={"call": method, "error": type(exc).__name__})
            raise ServiceUnavailable("Google Play could not be reached; try again") from None
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        return response.status_code, body

    def _access_token(self) -> str:
        with self._lock:
            if self._credentials is None:
                info = json.loads(self._key())
                self._credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
            if not self._credentials.valid:
                self._credentials.refresh(RequestsRequest(self._session))
            return str(self._credentials.token)

    def _unavailable(self, call: str, status: int) -> ServiceUnavailable:
        # 401/403: our service account lacks the Play Console permission (an operator's fix)
        logger.error("google play refused a call", extra={"call": call, "status": status})
        return ServiceUnavailable(f"Google Play answered {status}; try again")


def _purchase(body: Mapping[str, Any], product_id: str, purchase_token: str) -> PlayPurchase:
    named = body.get("productId")
    if named is not None and named != product_id:
        raise PurchaseInvalid(f"the purchase is of {named!r}, not {product_id!r}")
    order_id = body.get("orderId")
    if not isinstance(order_id, str) or not order_id:
        raise PurchaseInvalid("Google Play's record of the purchase has no order id")
    try:
        state = int(body.get("purchaseState", -1))
        consumption = int(body.get("consumptionState", 0))
        quantity = int(body.get("quantity", 1))
        millis = body.get("purchaseTimeMillis")
        purchased_at = datetime.fromtimestamp(int(millis) / 1000, tz=UTC) if millis is not None else None
        kind = body.get("purchaseType")
        test = kind is not None and int(kind) == PLAY_TEST
    except (TypeError, ValueError):
        raise PurchaseInvalid("Google Play's record of the purchase is not a ProductPurchase") from None
    account = body.get("obfuscatedExternalAccountId")
    return PlayPurchase(
        order_id=order_id,
        purchase_token=purchase_token,
        product_id=product_id,
        purchase_state=state,
        consumed=consumption == 1,
        quantity=quantity,
        account_id=str(account).lower() if account else None,
        test=test,
        purchased_at=purchased_at,
    )


def _voided_item(v: object) -> PlayVoided | None:
    """One entry of the voided purchases list, as the push would have announced it (its id is the
    order's: the list and a redelivered list say the same void)."""
    if not isinstance(v, dict):
        return None
    order_id, token = v.get("orderId"), v.get("purchaseToken")
    if not isinstance(order_id, str) or not order_id or not isinstance(token, str):
        return None
    try:
        at = datetime.fromtimestamp(int(str(v.get("voidedTimeMillis"))) / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return PlayVoided(f"voided-list:{order_id}", order_id, token, None, at)


# --- the push ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushConfig:
    package_name: str
    audience: str  # the push subscription's audience (PlayPushAudience)
    service_account_email: str  # the push subscription's service account (PlayPushServiceAccountEmail)
    certs_url: str = GOOGLE_CERTS

    def __post_init__(self) -> None:
        if not (self.package_name and self.audience and self.service_account_email):
            raise ValueError("the Play push verifier needs the package name, the audience and the service account")


class _CachedCerts(GoogleRequest):
    """google-auth's transport, with the certificates' answer kept ``CERTS_MAX_AGE_S`` seconds."""

    def __init__(self, session: requests.Session) -> None:
        self._inner = RequestsRequest(session)
        self._cached: tuple[float, GoogleResponse] | None = None
        self._lock = threading.Lock()

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> GoogleResponse:  # fmt: skip
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < CERTS_MAX_AGE_S:
                return self._cached[1]
        response = self._inner(url, method=method, body=body, headers=headers, timeout=timeout or TIMEOUT_S)
        if response.status == 200:
            with self._lock:
                self._cached = (time.monotonic(), response)
        return response


class GooglePlayPush:
    def __init__(self, config: PushConfig, session: requests.Session | None = None) -> None:
        self.config = config
        self._request = _CachedCerts(session or requests.Session())

    def voided(self, authorization: str | None, body: bytes) -> PlayVoided | None:
        self._verify(authorization)
        return self._notification(body)

    def _verify(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidSignature("the push carries no bearer token")
        c = self.config
        try:
            claims = id_token.verify_token(
                token.strip(), self._request, audience=c.audience, certs_url=c.certs_url,
                clock_skew_in_seconds=CLOCK_SKEW_S,
            )  # fmt: skip
        except google_exceptions.TransportError:
            raise ServiceUnavailable("Google's certificates could not be fetched; the push is retried") from None
        except (ValueError, google_exceptions.GoogleAuthError):
            raise InvalidSignature("the push's OIDC token does not verify") from None
        if claims.get("iss") not in ISSUERS:
            raise InvalidSignature("the push's OIDC token was not issued by Google")
        if claims.get("email") != c.service_account_email or claims.get("email_verified") is not True:
            raise InvalidSignature("the push's OIDC token is not our push subscription's service account")

    def _notification(self, body: bytes) -> PlayVoided | None:
        if len(body) > MAX_PUSH_BYTES:
            raise InvalidSignature("the push body is too large for a Play notification")
        try:
            push = json.loads(body)
            message = push["message"]
            message_id = message.get("messageId") or message.get("message_id")
            data = json.loads(base64.b64decode(message["data"], validate=True))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise InvalidSignature("the body is not a Pub/Sub push of a Play notification") from None
        if not isinstance(message_id, str) or not message_id or not isinstance(data, dict):
            raise InvalidSignature("the push has no message id or no notification")
        if data.get("packageName") != self.config.package_name:
            return None  # verified, but another app's: acknowledged, nothing done
        voided = data.get("voidedPurchaseNotification")
        if not isinstance(voided, dict):
            return None  # a test, one-time-product or subscription notification: acknowledged only
        order_id, token = voided.get("orderId"), voided.get("purchaseToken")
        if not isinstance(order_id, str) or not order_id or not isinstance(token, str) or not token:
            raise InvalidSignature("the voided purchase notification names no order or token")
        try:
            at = datetime.fromtimestamp(int(str(data.get("eventTimeMillis"))) / 1000, tz=UTC)
            refund_type = int(voided["refundType"]) if voided.get("refundType") is not None else None
        except (TypeError, ValueError, OverflowError, OSError):
            raise InvalidSignature("the voided purchase notification's time or refund type is not a number") from None
        return PlayVoided(message_id, order_id, token, refund_type, at)
