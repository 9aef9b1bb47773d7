"""Verification of fal.ai webhook deliveries (ED25519 over request id, user id, timestamp and body hash).

The rules are those of ``docs/fal.md`` ("Verifying a delivery"):

* the four ``X-Fal-Webhook-*`` headers must all be present (names are case-insensitive);
* ``|now - timestamp|`` must not exceed the tolerance (300 s by default);
* message = ``request_id + "\\n" + user_id + "\\n" + timestamp + "\\n" + hex(sha256(raw body))``;
* the hex signature must verify under ANY key of fal's JWKS (``x`` = base64url raw 32-byte key);
* when ``expected_user_id`` is set (stack parameter ``FalWebhookUserId``), the signed user id must be
  it: a delivery signed by fal for ANOTHER fal account is refused. Only then does the answer say
  ``our_account``, which a delivery for a request its job never recorded needs (services/webhook.py).

The key set is cached for ``cache_s`` (never more than 24 h). When no cached key verifies a
signature, the set is fetched again once and the check repeated; such refetches happen at most
every ``min_refetch_interval_s`` so that a stream of forged deliveries cannot turn this verifier
into an amplifier against the JWKS endpoint.

Failures raise :class:`videogen.domain.errors.InvalidSignature` with a short reason in ``detail``.
When the key set cannot be obtained at all (JWKS unreachable and nothing cached), the error is
:class:`videogen.domain.errors.ServiceUnavailable` instead: the sender is not at fault and fal
retries any non-2xx answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping

import requests
from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from videogen.domain.errors import InvalidSignature, ServiceUnavailable
from videogen.ports import SignedDelivery

HEADER_REQUEST_ID = "x-fal-webhook-request-id"
HEADER_USER_ID = "x-fal-webhook-user-id"
HEADER_TIMESTAMP = "x-fal-webhook-timestamp"
HEADER_SIGNATURE = "x-fal-webhook-signature"
MAX_TIMESTAMP_DIGITS = 12  # epoch seconds until the year 33658; longer is no time (and would overflow a float)
REQUIRED_HEADERS = (HEADER_REQUEST_ID, HEADER_USER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)

MAX_CACHE_S = 24 * 3600
_MAX_JWKS_BYTES = 256 * 1024


def signing_message(request_id: str, user_id: str, timestamp: str, raw_body: bytes) -> bytes:
    """The exact bytes fal signs for one delivery."""
    body_hash = hashlib.sha256(raw_body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{body_hash}".encode()


def public_keys_from_jwks(document: object) -> list[Ed25519PublicKey]:
    """The usable ED25519 keys of a JWKS document (others are skipped)."""
    keys: list[Ed25519PublicKey] = []
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return keys
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if entry.get("kty", "OKP") != "OKP" or entry.get("crv", "Ed25519") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str) or not x:
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            continue
    return keys


class WebhookVerifier:
    """Implements :class:`videogen.ports.SignatureVerifier`: fal webhook signatures against fal's
    JWKS, with a bounded key-set cache, and the optional pin to our fal account."""

    def __init__(
        self,
        jwks_url: str,
        tolerance_s: int = 300,
        cache_s: int = 3600,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 5.0,
        min_refetch_interval_s: float = 10.0,
        expected_user_id: str = "",
    ) -> None:
        if cache_s > MAX_CACHE_S:
            raise ValueError(f"cache_s must be <= {MAX_CACHE_S} (fal: never cache the JWKS longer than 24 h)")
        if cache_s < 0 or tolerance_s < 0:
            raise ValueError("cache_s and tolerance_s must be >= 0")
        self._jwks_url = jwks_url
        self._tolerance_s = tolerance_s
        self._cache_s = cache_s
        self._session = session or requests.Session()
        self._clock = clock
        self._timeout_s = timeout_s
        self._min_refetch_s = min_refetch_interval_s
        self._expected_user_id = expected_user_id
        self._lock = threading.Lock()
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at: float | None = None  # when the cached set was fetched
        self._last_attempt_at: float | None = None  # last fetch attempt, successful or not
        self.fetch_count = 0  # number of JWKS fetch attempts (inspection / tests)

    # -- public -------------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> SignedDelivery:
        """The signed request id (and whether the account is pinned and matched) when the
        delivery is authentic; raise ``InvalidSignature`` otherwise."""
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        values: dict[str, str] = {}
        for name in REQUIRED_HEADERS:
            value = lowered.get(name, "").strip()
            if not value:
                raise InvalidSignature(f"missing header {name}")
            values[name] = value

        timestamp = values[HEADER_TIMESTAMP]
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > MAX_TIMESTAMP_DIGITS:
            raise InvalidSignature("bad timestamp")
        if abs(self._clock() - int(timestamp)) > self._tolerance_s:
            raise InvalidSignature("stale timestamp")

        try:
            signature = bytes.fromhex(values[HEADER_SIGNATURE])
        except ValueError:
            raise InvalidSignature("bad signature encoding") from None
        if len(signature) != 64:
            raise InvalidSignature("bad signature encoding")

        message = signing_message(values[HEADER_REQUEST_ID], values[HEADER_USER_ID], timestamp, raw_body)
        keys, fresh = self._current_keys()
        if not _any_verifies(keys, signature, message):
            if fresh or not self._refetch_allowed():
                raise InvalidSignature("bad signature")
            keys = self._refresh(keep_on_failure=True)
            if not _any_verifies(keys, signature, message):
                raise InvalidSignature("bad signature")
        # Signed by fal, but for OUR account? (the user id is part of the signed message)
        if self._expected_user_id and not hmac.compare_digest(
            values[HEADER_USER_ID].encode(), self._expected_user_id.encode()
        ):
            raise InvalidSignature("delivery for another fal account")
        return SignedDelivery(values[HEADER_REQUEST_ID], our_account=bool(self._expected_user_id))

    def clear_cache(self) -> None:
        with self._lock:
            self._keys = []
            self._fetched_at = None
            self._last_attempt_at = None

    # -- key set ------------------------------------------------------------------------

    def _current_keys(self) -> tuple[list[Ed25519PublicKey], bool]:
        """The key set to check against, and whether it was fetched during this call."""
        with self._lock:
            now = self._clock()
            if self._keys and self._fetched_at is not None and now - self._fetched_at < self._cache_s:
                return self._keys, False
        return self._refresh(keep_on_failure=False), True

    def _refetch_allowed(self) -> bool:
        with self._lock:
            last = self._last_attempt_at
            return last is None or self._clock() - last >= self._min_refetch_s

    def _refresh(self, keep_on_failure: bool) -> list[Ed25519PublicKey]:
        with self._lock:
            now = self._clock()
            self._last_attempt_at = now
            self.fetch_count += 1
            try:
                keys = self._fetch()
            except ServiceUnavailable:
                # An expired set is still better than nothing on a refetch after an unknown
                # signature; on expiry we may keep serving it only within the 24 h hard limit.
                within_limit = self._fetched_at is not None and now - self._fetched_at < MAX_CACHE_S
                if self._keys and (keep_on_failure or within_limit):
                    return self._keys
                raise
            self._keys = keys
            self._fetched_at = now
            return keys

    def _fetch(self) -> list[Ed25519PublicKey]:
        try:
            with self._session.get(self._jwks_url, timeout=self._timeout_s, stream=True) as resp:
                if resp.status_code != 200:
                    raise ServiceUnavailable(f"jwks answered {resp.status_code}")
                body = bytearray()
                for chunk in resp.iter_content(chunk_size=16384):
                    body.extend(chunk)
                    if len(body) > _MAX_JWKS_BYTES:
                        raise ServiceUnavailable("jwks document too large")
        except requests.RequestException as exc:
            raise ServiceUnavailable(f"jwks unreachable ({type(exc).__name__})") from None
        try:
            document = json.loads(bytes(body))
        except ValueError:
            raise ServiceUnavailable("jwks is not JSON") from None
        keys = public_keys_from_jwks(document)
        if not keys:
            raise ServiceUnavailable("jwks holds no ED25519 key")
        return keys


def _any_verifies(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except _CryptoInvalidSignature:
            continue
    return False
