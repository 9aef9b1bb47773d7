"""adapters/google_play.py offline: Google's answers (a fake HTTP session) mapped to our types and
errors, and the push's OIDC token verified by google-auth against certificates served by a fake
transport (tokens minted here with the local push signer's key)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from devstack.stores.google_play import LOCAL_PACKAGE, PUSH_SERVICE_ACCOUNT, LocalPlay, _certificate
from videogen.adapters.google_play import GooglePlayPublisher, GooglePlayPush, PlayConfig, PushConfig
from videogen.domain.errors import InvalidSignature, PurchaseInvalid, ServiceUnavailable

PRODUCT, TOKEN = "credits_100", "tok.A-1"
BOUGHT = {"orderId": "GPA.1", "purchaseState": 0, "consumptionState": 0, "productId": PRODUCT}


@dataclass
class _Reply:
    status_code: int
    body: Any = None

    @property
    def content(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()

    def json(self) -> Any:
        return self.body


@dataclass
class _Session:
    replies: list[_Reply | Exception]
    asked: list[tuple[str, str]] = field(default_factory=list)

    def request(self, method: str, url: str, **kw: Any) -> _Reply:
        self.asked.append((method, url))
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


class _Valid:
    valid, token = True, "ya29.test"


def _publisher(*replies: _Reply | Exception) -> tuple[GooglePlayPublisher, _Session]:
    session = _Session(list(replies))
    publisher = GooglePlayPublisher(PlayConfig("com.example.app", "https://play.test"), lambda: "{}", session)  # type: ignore[arg-type]
    publisher._credentials = _Valid()  # type: ignore[assignment]
    return publisher, session


def test_a_purchase_is_asked_for_our_package_and_product_with_the_token_quoted() -> None:
    publisher, session = _publisher(_Reply(200, {**BOUGHT, "purchaseType": 0, "quantity": 1}))
    p = publisher.purchase(PRODUCT, "a/b")
    assert session.asked == [
        (
            "GET",
            "https://play.test/androidpublisher/v3/applications/com.example.app/purchases/products/credits_100/tokens/a%2Fb",
        )
    ]
    assert (p.order_id, p.consumed, p.quantity, p.test, p.environment) == ("GPA.1", False, 1, True, "sandbox")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({**BOUGHT, "productId": "credits_500"}, "not 'credits_100'"),
        ({k: v for k, v in BOUGHT.items() if k != "orderId"}, "no order id"),
        ({**BOUGHT, "purchaseState": "x"}, "not a ProductPurchase"),
    ],
)
def test_an_answer_that_is_not_a_purchase_of_the_product_is_purchase_invalid(body: dict[str, Any], match: str) -> None:
    publisher, _ = _publisher(_Reply(200, body))
    with pytest.raises(PurchaseInvalid, match=match):
        publisher.purchase(PRODUCT, TOKEN)


@pytest.mark.parametrize("status", [400, 404, 410])
def test_a_token_google_does_not_know_is_purchase_invalid(status: int) -> None:
    publisher, _ = _publisher(_Reply(status, {"error": {}}))
    with pytest.raises(PurchaseInvalid, match="knows no purchase"):
        publisher.purchase(PRODUCT, TOKEN)


@pytest.mark.parametrize("reply", [_Reply(401), _Reply(403), _Reply(500), requests.ConnectionError("down")])
def test_google_refusing_our_credential_or_down_is_service_unavailable(reply: _Reply | Exception) -> None:
    publisher, _ = _publisher(reply)
    with pytest.raises(ServiceUnavailable):
        publisher.purchase(PRODUCT, TOKEN)


def test_a_consume_google_refuses_because_it_is_consumed_already_is_done() -> None:
    publisher, session = _publisher(_Reply(400, {"error": {}}), _Reply(200, {**BOUGHT, "consumptionState": 1}))
    publisher.consume(PRODUCT, TOKEN)
    assert [m for m, _ in session.asked] == ["POST", "GET"] and session.asked[0][1].endswith(":consume")


def test_a_consume_refused_for_another_reason_is_service_unavailable() -> None:
    publisher, _ = _publisher(_Reply(400, {"error": {}}), _Reply(200, BOUGHT))
    with pytest.raises(ServiceUnavailable):
        publisher.consume(PRODUCT, TOKEN)


def test_the_voided_list_is_read_page_by_page_and_bad_entries_skipped() -> None:
    from datetime import UTC, datetime

    page1 = {
        "voidedPurchases": [{"orderId": "GPA.1", "purchaseToken": "t1", "voidedTimeMillis": "1000"}, {"bad": 1}],
        "tokenPagination": {"nextPageToken": "p2"},
    }
    page2 = {"voidedPurchases": [{"orderId": "GPA.2", "purchaseToken": "t2", "voidedTimeMillis": "2000"}]}
    publisher, session = _publisher(_Reply(200, page1), _Reply(200, page2))
    voided = publisher.voided_purchases(datetime(2026, 1, 1, tzinfo=UTC))
    assert [(v.order_id, v.message_id) for v in voided] == [
        ("GPA.1", "voided-list:GPA.1"),
        ("GPA.2", "voided-list:GPA.2"),
    ]
    assert len(session.asked) == 2 and session.asked[0][1].endswith("/purchases/voidedpurchases")


# --- the push -------------------------------------------------------------------------------------------


class _Certs:
    """A google.auth transport answering the certificates URL with the signer's certificate."""

    def __init__(self, play: LocalPlay) -> None:
        self.body = json.dumps({play.push_key_id: _certificate(play.push_key, "push")}).encode()
        self.fetches = 0

    def __call__(self, url: str, method: str = "GET", **kw: Any) -> Any:
        self.fetches += 1
        return type("R", (), {"status": 200, "data": self.body, "headers": {}})()


@pytest.fixture
def signer() -> LocalPlay:
    return LocalPlay("127.0.0.1", audience="https://api.test/webhooks/google-play")


def _push(signer: LocalPlay) -> tuple[GooglePlayPush, _Certs]:
    push = GooglePlayPush(PushConfig(LOCAL_PACKAGE, signer.audience, PUSH_SERVICE_ACCOUNT, "https://certs.test"))
    certs = _Certs(signer)
    push._request._inner = certs  # type: ignore[assignment]
    return push, certs


def _voided_body(**voided: Any) -> dict[str, Any]:
    return {
        "packageName": LOCAL_PACKAGE,
        "eventTimeMillis": "1700000000000",
        "voidedPurchaseNotification": {"purchaseToken": "t", "orderId": "GPA.9", "refundType": 2, **voided},
    }


def test_a_verified_voided_push_is_decoded_and_the_certificates_are_fetched_once(signer: LocalPlay) -> None:
    push, certs = _push(signer)
    headers, body = signer.push(_voided_body())
    v = push.voided(headers["authorization"], body)
    assert v is not None and (v.order_id, v.purchase_token, v.refund_type) == ("GPA.9", "t", 2)
    assert v.message_id == json.loads(body)["message"]["messageId"]
    push.voided(*[signer.push(_voided_body())[0]["authorization"], body])
    assert certs.fetches == 1


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://other.test"},
        {"iss": "https://accounts.google.com.evil"},
        {"email": "x@y.iam.gserviceaccount.com"},
        {"email_verified": "true"},
        {"email_verified": None},
        {"exp": 10, "iat": 1},
    ],
)
def test_a_token_with_any_claim_not_ours_is_invalid_signature(signer: LocalPlay, claims: dict[str, Any]) -> None:
    push, _ = _push(signer)
    headers, body = signer.push(_voided_body(), **claims)
    with pytest.raises(InvalidSignature):
        push.voided(headers["authorization"], body)


def test_the_issuer_without_https_is_googles_too(signer: LocalPlay) -> None:
    push, _ = _push(signer)
    headers, body = signer.push(_voided_body(), iss="accounts.google.com")
    assert push.voided(headers["authorization"], body) is not None


@pytest.mark.parametrize("authorization", [None, "", "Basic abc", "Bearer ", "Bearer not.a.jwt"])
def test_no_bearer_token_or_not_a_jwt_is_invalid_signature(signer: LocalPlay, authorization: str | None) -> None:
    push, _ = _push(signer)
    with pytest.raises(InvalidSignature):
        push.voided(authorization, signer.push(_voided_body())[1])


def _raw(data: Any, message_id: Any = "1") -> bytes:
    encoded = base64.b64encode(json.dumps(data).encode()).decode() if not isinstance(data, str) else data
    return json.dumps({"message": {"data": encoded, "messageId": message_id}}).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"message": {}}).encode(),
        _raw("%%%"),
        _raw(_voided_body(), message_id=""),
        _raw(["not", "an", "object"]),
        _raw(_voided_body(orderId="")),
        _raw({**_voided_body(), "eventTimeMillis": "soon"}),
        b"x" * (65 * 1024),
    ],
)
def test_a_verified_token_on_a_body_that_is_not_a_play_notification_is_invalid_signature(
    signer: LocalPlay, body: bytes
) -> None:
    push, _ = _push(signer)
    with pytest.raises(InvalidSignature):
        push.voided(signer.push(_voided_body())[0]["authorization"], body)


def test_another_packages_or_a_test_notification_is_none(signer: LocalPlay) -> None:
    push, _ = _push(signer)
    auth = signer.push(_voided_body())[0]["authorization"]
    assert push.voided(auth, _raw({**_voided_body(), "packageName": "com.other"})) is None
    assert push.voided(auth, _raw({"packageName": LOCAL_PACKAGE, "testNotification": {}})) is None
    assert push.voided(auth, _raw(_voided_body())) is not None
