"""WebhookVerifier: fal's ED25519 webhook signature rules (docs/fal.md), with no network.

The JWKS is served by a requests transport adapter mounted on the verifier's session, so
each test controls the key set and counts fetches; time comes from a fake clock.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from videogen.adapters.webhook_signature import WebhookVerifier, public_keys_from_jwks, signing_message
from videogen.domain.errors import InvalidSignature, ServiceUnavailable
from videogen.ports import SignedDelivery

JWKS_URL = "https://jwks.test/.well-known/jwks.json"
NOW = 1_760_000_000.0
BODY = b'{"request_id": "req-1", "status": "OK", "payload": {"video": {"url": "https://v3.fal.media/x.mp4"}}}'


def jwk(key: Ed25519PrivateKey, kid: str = "k") -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(), "kid": kid}


class JwksServer(BaseAdapter):
    """Answers every GET with the current JWKS document (or a chosen error status)."""

    def __init__(self, *keys: Ed25519PrivateKey) -> None:
        super().__init__()
        self.keys = list(keys)
        self.status = 200
        self.fetches = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.fetches += 1
        resp = requests.Response()
        resp.status_code = self.status
        body = json.dumps({"keys": [jwk(k, f"k{i}") for i, k in enumerate(self.keys)]}).encode()
        resp.raw = io.BytesIO(body if self.status == 200 else b"{}")
        resp.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signed_headers(
    key: Ed25519PrivateKey, body: bytes = BODY, timestamp: float = NOW, request_id: str = "req-1", user_id: str = "u-1"
) -> dict[str, str]:
    ts = str(int(timestamp))
    message = f"{request_id}\n{user_id}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": ts,
        "X-Fal-Webhook-Signature": key.sign(message).hex(),
    }


def make_verifier(server: JwksServer, clock: Clock, **kwargs: Any) -> WebhookVerifier:
    session = requests.Session()
    session.mount("https://", server)
    return WebhookVerifier(JWKS_URL, session=session, clock=clock, **kwargs)


@pytest.fixture()
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def reason(exc: pytest.ExceptionInfo[InvalidSignature]) -> str:
    return exc.value.detail


# --- accepted --------------------------------------------------------------------------


def test_valid_signature_is_accepted(key: Ed25519PrivateKey, clock: Clock) -> None:
    verifier = make_verifier(JwksServer(key), clock)
    # not pinned: the signature holds, yet nothing says the account is ours
    assert verifier.verify(signed_headers(key), BODY) == SignedDelivery("req-1", our_account=False)


def test_header_names_are_case_insensitive(key: Ed25519PrivateKey, clock: Clock) -> None:
    verifier = make_verifier(JwksServer(key), clock)
    headers = {name.lower(): value for name, value in signed_headers(key).items()}
    verifier.verify(headers, BODY)
    verifier.verify({name.upper(): value for name, value in headers.items()}, BODY)


def test_any_key_of_the_set_may_verify(key: Ed25519PrivateKey, clock: Clock) -> None:
    other = Ed25519PrivateKey.generate()
    verifier = make_verifier(JwksServer(other, key), clock)
    verifier.verify(signed_headers(key), BODY)


def test_message_is_exactly_the_documented_one() -> None:
    expected = b"rid\nuid\n123\n" + hashlib.sha256(b"{}").hexdigest().encode()
    assert signing_message("rid", "uid", "123", b"{}") == expected


def test_jwks_x_without_padding_is_decoded(key: Ed25519PrivateKey) -> None:
    assert len(public_keys_from_jwks({"keys": [jwk(key)]})) == 1
    # keys of other types or broken x values are skipped, not fatal
    assert (
        public_keys_from_jwks({"keys": [{"kty": "RSA", "n": "x"}, {"kty": "OKP", "crv": "Ed25519", "x": "!!"}]}) == []
    )


# --- rejected --------------------------------------------------------------------------


def test_signature_by_another_key_is_rejected(key: Ed25519PrivateKey, clock: Clock) -> None:
    verifier = make_verifier(JwksServer(key), clock)
    with pytest.raises(InvalidSignature) as exc:
        verifier.verify(signed_headers(Ed25519PrivateKey.generate()), BODY)
    assert reason(exc) == "bad signature"


def test_tampered_body_is_rejected(key: Ed25519PrivateKey, clock: Clock) -> None:
    verifier = make_verifier(JwksServer(key), clock)
    with pytest.raises(InvalidSignature) as exc:
        verifier.verify(signed_headers(key), BODY.replace(b"OK", b"ER"))
    assert reason(exc) == "bad signature"


def test_reserialised_body_is_rejected(key: Ed25519PrivateKey, clock: Clock) -> None:
    # Given a body re-serialised by a JSON library, When verified, Then it fails: only raw bytes count
    verifier = make_verifier(JwksServer(key), clock)
    with pytest.raises(InvalidSignature):
        verifier.verify(signed_headers(key), json.dumps(json.loads(BODY), separators=(",", ":")).encode())


@pytest.mark.parametrize("field", ["request_id", "user_id"])
def test_tampered_ids_are_rejected(key: Ed25519PrivateKey, clock: Clock, field: str) -> None:
    verifier = make_verifier(JwksServer(key), clock)
    headers = signed_headers(key)
    name = "X-Fal-Webhook-Request-Id" if field == "request_id" else "X-Fal-Webhook-User-Id"
    headers[name] = "someone-else"
    with pytest.raises(InvalidSignature):
        verifier.verify(headers, BODY)


def test_pinned_account_accepts_only_its_own_deliveries(key: Ed25519PrivateKey, clock: Clock) -> None:
    # Given a verifier pinned to our fal account, When fal signs for another account, Then it is refused
    verifier = make_verifier(JwksServer(key), clock, expected_user_id="our-account")
    signed = verifier.verify(signed_headers(key, user_id="our-account", request_id="req-9"), BODY)
    assert signed == SignedDelivery("req-9", our_account=True)
    with pytest.raises(InvalidSignature) as exc:
        verifier.verify(signed_headers(key, user_id="u-1"), BODY)
    assert reason(exc) == "delivery for another fal account"


def test_pin_is_checked_after_the_signature(key: Ed25519PrivateKey, clock: Clock) -> None:
    verifier = make_verifier(JwksServer(key), clock, expected_user_id="our-account")
    with pytest.raises(InvalidSignature) as exc:
        verifier.verify(signed_headers(Ed25519PrivateKey.generate(), user_id="u-1"), BODY)
    assert reason(exc) == "bad signature"


@pytest.mark.parametrize("skew", [-301, 301, -10_000, 10_000])
def test_stale_timestamp_is_rejected_in_both_directions(key: Ed25519PrivateKey, clock: Clock, skew: int) -> None:
    verifier = make_verifier(JwksServer(key), clock)
    with pytest.raises(InvalidSignature) as exc:
        verifier.verify(signed_headers(key, timestamp=NOW + skew), BODY)
    assert reason(exc) == "stale timestamp"


@pytest.mark.parametrize("digits", [13, 309, 5000])
def test_a_timestamp_too_long_to_be_a_time_is_refused_not_a_crash(
    key: Ed25519PrivateKey, clock: Clock, digits: int
) -> None:
    headers = signed_headers(key)
    headers["X-Fal-Webhook-Timestamp"] = "9" * digits  # 309+ digits overflowed a float: a 500 before
    with pytest.raises(InvalidSignature) as exc:
        make_verifier(JwksServer(key), clock).verify(headers, BODY)
    assert reason(exc) == "bad timestamp"


@pytest.mark.parametrize("skew", [-300, 300])
def test_timestamp_at_the_tolerance_edge_is_accepted(key: Ed25519PrivateKey, clock: Clock, skew: int) -> None:
    make_verifier(JwksServer(key), clock).verify(signed_headers(key, timestamp=NOW + skew), BODY)


@pytest.mark.parametrize(
    "header",
    ["X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id", "X-Fal-Webhook-Timestamp", "X-Fal-Webhook-Signature"],
)
def test_each_missing_header_is_rejected(key: Ed25519PrivateKey, clock: Clock, header: str) -> None:
    server = JwksServer(key)
    verifier = make_verifier(server, clock)
    headers = signed_headers(key)
    del headers[header]
    with pytest.raises(InvalidSignature) as exc:
        verifier.verify(headers, BODY)
    assert reason(exc) == f"missing header {header.lower()}"
    headers[header] = "  "
    with pytest.raises(InvalidSignature):
        verifier.verify(headers, BODY)
    assert server.fetches == 0  # rejected before any key was needed


@pytest.mark.parametrize("value", ["not-hex", "abcd", "zz" * 64])
def test_malformed_signature_is_rejected(key: Ed25519PrivateKey, clock: Clock, value: str) -> None:
    verifier = make_verifier(JwksServer(key), clock)
    headers = signed_headers(key) | {"X-Fal-Webhook-Signature": value}
    with pytest.raises(InvalidSignature) as exc:
        verifier.verify(headers, BODY)
    assert reason(exc) == "bad signature encoding"


@pytest.mark.parametrize("value", ["", "12.5", "-5", "1e9", "١٢٣"])
def test_malformed_timestamp_is_rejected(key: Ed25519PrivateKey, clock: Clock, value: str) -> None:
    verifier = make_verifier(JwksServer(key), clock)
    headers = signed_headers(key) | {"X-Fal-Webhook-Timestamp": value}
    with pytest.raises(InvalidSignature):
        verifier.verify(headers, BODY)


# --- key set cache and rotation ------------------------------------------------------------


def test_rotated_key_triggers_one_refetch_and_is_accepted(key: Ed25519PrivateKey, clock: Clock) -> None:
    server = JwksServer(key)
    verifier = make_verifier(server, clock)
    verifier.verify(signed_headers(key), BODY)
    assert server.fetches == 1

    # Given fal rotated to a new key the cached set does not hold
    new_key = Ed25519PrivateKey.generate()
    server.keys = [key, new_key]
    clock.now += 11
    # When a delivery signed with it arrives, Then the set is fetched once more and it verifies
    verifier.verify(signed_headers(new_key, timestamp=clock.now), BODY)
    assert server.fetches == 2
    # and later deliveries use the refreshed cache
    verifier.verify(signed_headers(new_key, timestamp=clock.now), BODY)
    assert server.fetches == 2


def test_unknown_signature_refetches_once_then_rejects(key: Ed25519PrivateKey, clock: Clock) -> None:
    server = JwksServer(key)
    verifier = make_verifier(server, clock)
    verifier.verify(signed_headers(key), BODY)
    clock.now += 11
    forged = signed_headers(Ed25519PrivateKey.generate(), timestamp=clock.now)
    with pytest.raises(InvalidSignature):
        verifier.verify(forged, BODY)
    assert server.fetches == 2  # exactly one refetch for this delivery


def test_refetches_are_rate_limited(key: Ed25519PrivateKey, clock: Clock) -> None:
    # Given a flood of forged deliveries, Then the JWKS is not fetched more than once per interval
    server = JwksServer(key)
    verifier = make_verifier(server, clock, min_refetch_interval_s=10)
    verifier.verify(signed_headers(key), BODY)
    for _ in range(20):
        clock.now += 0.1
        with pytest.raises(InvalidSignature):
            verifier.verify(signed_headers(Ed25519PrivateKey.generate(), timestamp=clock.now), BODY)
    assert server.fetches == 1
    clock.now += 10
    with pytest.raises(InvalidSignature):
        verifier.verify(signed_headers(Ed25519PrivateKey.generate(), timestamp=clock.now), BODY)
    assert server.fetches == 2


def test_first_fetch_is_not_followed_by_a_second_one(key: Ed25519PrivateKey, clock: Clock) -> None:
    server = JwksServer(key)
    verifier = make_verifier(server, clock, min_refetch_interval_s=0)
    with pytest.raises(InvalidSignature):
        verifier.verify(signed_headers(Ed25519PrivateKey.generate()), BODY)
    assert server.fetches == 1  # the set was just fetched: no point fetching it again


def test_cache_age_is_respected(key: Ed25519PrivateKey, clock: Clock) -> None:
    server = JwksServer(key)
    verifier = make_verifier(server, clock, cache_s=600)
    for _ in range(5):
        verifier.verify(signed_headers(key, timestamp=clock.now), BODY)
        clock.now += 100
    assert server.fetches == 1  # 0..400 s: served from the cache
    clock.now = NOW + 600
    verifier.verify(signed_headers(key, timestamp=clock.now), BODY)
    assert server.fetches == 2  # expired: fetched again


def test_cache_longer_than_a_day_is_refused() -> None:
    with pytest.raises(ValueError):
        WebhookVerifier(JWKS_URL, cache_s=86_401)
    WebhookVerifier(JWKS_URL, cache_s=86_400)


def test_unreachable_jwks_without_cache_is_service_unavailable(key: Ed25519PrivateKey, clock: Clock) -> None:
    server = JwksServer(key)
    server.status = 503
    verifier = make_verifier(server, clock)
    with pytest.raises(ServiceUnavailable):
        verifier.verify(signed_headers(key), BODY)


def test_expired_cache_is_kept_while_jwks_is_down(key: Ed25519PrivateKey, clock: Clock) -> None:
    server = JwksServer(key)
    verifier = make_verifier(server, clock, cache_s=60)
    verifier.verify(signed_headers(key), BODY)
    server.status = 500
    clock.now += 120
    verifier.verify(signed_headers(key, timestamp=clock.now), BODY)  # stale set, still within 24 h
    clock.now = NOW + 86_400 + 1
    with pytest.raises(ServiceUnavailable):
        verifier.verify(signed_headers(key, timestamp=clock.now), BODY)
