"""Google Play purchases on moto, through the real handlers, roles, google-auth and requests against
the local Publisher API (its token endpoint, its purchases, its push signer's certificates): a token
credited once (also 20 posts at once), replays, the consume and its repair, a voided purchase
clawed back once, and every attack answered with nothing changed in the table."""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devstack.invariants import scan_table
from devstack.stores.google_play import LOCAL_PACKAGE, LocalPlay
from devstack.stores.local_store import LOCAL_PRODUCTS
from tests.recording import Recording
from videogen import wiring
from videogen.adapters.google_play import GooglePlayPush, PushConfig
from videogen.adapters.purchases import DynamoPurchaseStore
from videogen.domain.errors import InvalidSignature
from videogen.services.purchases import PurchaseService

PRODUCT = str(LOCAL_PRODUCTS[0]["google_play_product_id"])
OTHER_PRODUCT = str(LOCAL_PRODUCTS[1]["google_play_product_id"])
CREDITS = int(LOCAL_PRODUCTS[0]["credits"])  # type: ignore[call-overload]


def _user(stack: Any, credits: int = 0) -> tuple[str, str]:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    return user_id, stack.user(credits, user_id)


def _buy(stack: Any, user_id: str, product: str = PRODUCT) -> dict[str, Any]:
    reply = stack.request(
        "POST", "/_local/store/google-play/purchases", body={"user_id": user_id, "product_id": product}
    )
    assert reply.status == 200, reply.body
    return dict(reply.json)


def _claim(stack: Any, token: str, purchase_token: str, product: str = PRODUCT) -> Any:
    body = {"store": "google_play", "product_id": product, "purchase_token": purchase_token}
    return stack.request("POST", "/v1/purchases", token=token, body=body)


def _balance(stack: Any, token: str) -> int:
    return int(stack.request("GET", "/v1/credits", token=token).json["balance"])


def _table(stack: Any) -> list[dict[str, Any]]:
    return sorted(scan_table(stack.db, stack.table), key=lambda i: (str(i["pk"]), str(i["sk"])))


def _unchanged(stack: Any, attempt: Any) -> Any:
    before = _table(stack)
    try:
        return attempt()
    finally:
        assert _table(stack) == before


def _play(stack: Any) -> LocalPlay:
    return stack.stack.play  # type: ignore[no-any-return]


def _voided(play: LocalPlay, order_id: str, purchase_token: str) -> dict[str, Any]:
    return {
        "version": "1.0",
        "packageName": LOCAL_PACKAGE,
        "eventTimeMillis": str(int(time.time() * 1000)),
        "voidedPurchaseNotification": {
            "purchaseToken": purchase_token, "orderId": order_id, "productType": 2, "refundType": 1,
        },
    }  # fmt: skip


def _push(stack: Any, headers: dict[str, str], body: bytes) -> Any:
    return stack.request("POST", "/webhooks/google-play", headers=headers, raw=body)


def test_a_play_purchase_is_credited_once_consumed_at_google_and_replayed_with_the_same_body(stack):
    user_id, token = _user(stack, 3)
    bought = _buy(stack, user_id)
    first = _claim(stack, token, bought["purchase_token"])
    assert first.status == 201, first.body
    assert first.json["credits"] == {"granted": CREDITS, "balance": 3 + CREDITS}
    purchase = first.json["purchase"]
    assert (purchase["store"], purchase["transaction_id"], purchase["product_id"], purchase["environment"]) == (
        "google_play", bought["order_id"], PRODUCT, "sandbox"  # a local purchase is a license tester's
    )  # fmt: skip
    assert _play(stack).purchases[bought["purchase_token"]]["consumptionState"] == 1
    again = _claim(stack, token, bought["purchase_token"])
    assert (again.status, again.json, again.headers.get("idempotent-replayed")) == (200, first.json, "true")
    assert _balance(stack, token) == 3 + CREDITS


def test_twenty_concurrent_claims_of_one_token_credit_it_once(stack):
    user_id, token = _user(stack)
    bought = _buy(stack, user_id)
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: _claim(stack, token, bought["purchase_token"]), range(20)))
    statuses = sorted(r.status for r in replies)
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201}, [r.body for r in replies if r.status >= 300]
    assert _balance(stack, token) == CREDITS


def test_another_user_is_refused_and_a_token_for_a_different_product_or_made_up_changes_nothing(stack):
    alice, alice_token = _user(stack)
    _, mallory_token = _user(stack, 1)
    bought = _buy(stack, alice)
    for attempt in (
        lambda: _claim(stack, mallory_token, bought["purchase_token"]),  # alice's account id: 409
        lambda: _claim(stack, alice_token, bought["purchase_token"], OTHER_PRODUCT),  # another product
        lambda: _claim(stack, alice_token, "made-up.token"),
    ):
        reply = _unchanged(stack, attempt)
        assert reply.status in (409, 422), reply.body
    assert _claim(stack, alice_token, bought["purchase_token"]).status == 201
    other = _claim(stack, mallory_token, bought["purchase_token"])
    assert (other.status, other.json["code"]) == (409, "purchase_already_claimed")
    assert _balance(stack, mallory_token) == 1
    bad = _unchanged(stack, lambda: _claim(stack, alice_token, "has/a/slash"))
    assert (bad.status, bad.json["code"]) == (422, "validation_failed")


def _claim_while_consume_is_down(stack: Any, token: str, purchase_token: str) -> Any:
    """The claim with Google answering 503 to the consume (the grant recorded, the consume owed)."""
    play = _play(stack)
    real = play._handle

    def down_for_consume(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path.endswith(":consume"):
            return 503, {"error": {"code": 503}}
        return real(method, path, headers, body)

    play._handle = down_for_consume  # type: ignore[method-assign]
    try:
        return _claim(stack, token, purchase_token)
    finally:
        play._handle = real  # type: ignore[method-assign]


def test_a_consume_that_failed_is_repaired_by_the_replay_without_a_second_grant(stack):
    user_id, token = _user(stack)
    bought = _buy(stack, user_id)
    play = _play(stack)
    first = _claim_while_consume_is_down(stack, token, bought["purchase_token"])
    assert first.status == 201 and play.purchases[bought["purchase_token"]]["consumptionState"] == 0
    again = _claim(stack, token, bought["purchase_token"])
    assert again.status == 200 and again.json == first.json
    assert play.purchases[bought["purchase_token"]]["consumptionState"] == 1 and _balance(stack, token) == CREDITS


def test_a_voided_purchase_is_clawed_back_once_and_a_redelivery_changes_nothing(stack):
    user_id, token = _user(stack, 2)
    bought = _buy(stack, user_id)
    assert _claim(stack, token, bought["purchase_token"]).status == 201
    headers, body = _play(stack).push(_voided(_play(stack), bought["order_id"], bought["purchase_token"]))
    first = _push(stack, headers, body)
    assert (first.status, first.json["outcome"]) == (200, "clawed_back")
    assert _unchanged(stack, lambda: _push(stack, headers, body)).json["outcome"] == "duplicate"
    refund = stack.request(
        "POST", "/_local/store/refunds", body={"store": "google_play", "purchase_token": bought["purchase_token"]}
    )
    assert refund.status == 200 and refund.json["webhook"]["outcome"] == "already_revoked"
    credits = stack.request("GET", "/v1/credits", token=token).json
    assert credits["balance"] == 2 and [e["type"] for e in credits["ledger"]].count("clawback") == 1
    revoked = _claim(stack, token, bought["purchase_token"])
    assert (revoked.status, revoked.json["code"]) == (422, "purchase_revoked")


def test_a_voided_order_never_claimed_makes_its_claim_purchase_revoked(stack):
    user_id, token = _user(stack)
    bought = _buy(stack, user_id)
    reply = stack.request(
        "POST", "/_local/store/refunds", body={"store": "google_play", "purchase_token": bought["purchase_token"]}
    )
    assert reply.json["webhook"]["outcome"] == "recorded_unclaimed"
    late = _claim(stack, token, bought["purchase_token"])
    assert (late.status, late.json["code"]) == (422, "purchase_revoked") and _balance(stack, token) == 0


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://elsewhere.example/webhooks/google-play"},
        {"iss": "https://evil.example"},
        {"email": "someone@attacker.iam.gserviceaccount.com"},
        {"email_verified": False},
        {"exp": 1, "iat": 0},
    ],
)
def test_a_push_whose_oidc_token_does_not_verify_is_401_and_changes_nothing(stack, claims):
    user_id, token = _user(stack)
    bought = _buy(stack, user_id)
    assert _claim(stack, token, bought["purchase_token"]).status == 201
    headers, body = _play(stack).push(_voided(_play(stack), bought["order_id"], bought["purchase_token"]), **claims)
    reply = _unchanged(stack, lambda: _push(stack, headers, body))
    assert (reply.status, reply.json["code"]) == (401, "invalid_signature")
    assert _balance(stack, token) == CREDITS


def test_a_push_signed_by_another_key_without_a_token_or_with_a_bad_body_is_401(stack):
    user_id, token = _user(stack)
    bought = _buy(stack, user_id)
    assert _claim(stack, token, bought["purchase_token"]).status == 201
    play = _play(stack)
    notification = _voided(play, bought["order_id"], bought["purchase_token"])
    forger = LocalPlay(play.host, audience=play.audience, push_key_id=play.push_key_id)  # same kid, other key
    forged_headers, body = forger.push(notification)
    good_headers, _ = play.push(notification)
    for headers, payload in (
        (forged_headers, body),
        ({"content-type": "application/json"}, body),
        (good_headers, b"\xff not json"),
        (good_headers, json.dumps({"message": {"messageId": "1", "data": "!!"}}).encode()),
    ):
        reply = _unchanged(stack, lambda h=headers, p=payload: _push(stack, h, p))
        assert (reply.status, reply.json["code"]) == (401, "invalid_signature")
    assert _balance(stack, token) == CREDITS


def test_a_verified_push_of_another_package_or_a_test_notification_is_200_and_ignored(stack):
    play = _play(stack)
    for notification in (
        {"version": "1.0", "packageName": "com.other.app", "eventTimeMillis": "1",
         "voidedPurchaseNotification": {"purchaseToken": "t", "orderId": "GPA.1", "refundType": 1}},
        {"version": "1.0", "packageName": LOCAL_PACKAGE, "eventTimeMillis": "1", "testNotification": {}},
    ):  # fmt: skip
        reply = _unchanged(stack, lambda n=notification: _push(stack, *play.push(n)))
        assert (reply.status, reply.json["outcome"]) == (200, "ignored")


def test_the_push_verifier_needs_email_verified_true_not_truthy(stack):
    play = _play(stack)
    push = GooglePlayPush(
        PushConfig(LOCAL_PACKAGE, play.audience, "play-push@videogen-local.iam.gserviceaccount.com",
                   f"{play.base_url}/oauth2/v1/certs")
    )  # fmt: skip
    headers, body = play.push({"packageName": LOCAL_PACKAGE, "testNotification": {}}, email_verified="true")
    with pytest.raises(InvalidSignature, match="service account"):
        push.voided(headers["authorization"], body)
    headers, body = play.push({"packageName": LOCAL_PACKAGE, "testNotification": {}})
    assert push.voided(headers["authorization"], body) is None
    assert base64.b64decode(json.loads(body)["message"]["data"])


def test_the_aws_and_google_calls_of_a_first_claim_and_of_a_replay(stack):
    user_id, _ = _user(stack)
    db = Recording(stack.db)
    play = _play(stack)
    service = PurchaseService(
        DynamoPurchaseStore(db, stack.table), None, wiring.account_token, wiring.catalog(), wiring.play()
    )
    bought = _buy(stack, user_id)
    play.calls.clear()
    service.claim_google_play(user_id, PRODUCT, bought["purchase_token"])
    assert db.calls == [
        "get_item", "transact_write_items[Put+Update+Put]", "get_item", "update_item", "update_item"
    ]  # fmt: skip
    assert [c for c in play.calls if c != "token"] == ["get", "consume"]
    db.calls.clear()
    play.calls.clear()
    assert service.claim_google_play(user_id, PRODUCT, bought["purchase_token"]).replayed
    assert db.calls == ["get_item"] and play.calls == ["get"]


def test_the_reconciler_consumes_a_purchase_whose_consume_failed_without_a_second_grant(stack):
    user_id, token = _user(stack)
    bought = _buy(stack, user_id)
    play = _play(stack)
    assert _claim_while_consume_is_down(stack, token, bought["purchase_token"]).status == 201
    assert play.purchases[bought["purchase_token"]]["consumptionState"] == 0
    outcomes = wiring.reconciler().run(now=time.time() + 3600)
    assert outcomes.get("consumed") == 1, outcomes
    assert play.purchases[bought["purchase_token"]]["consumptionState"] == 1 and _balance(stack, token) == CREDITS
    assert "consumed" not in wiring.reconciler().run(now=time.time() + 3600)


def test_the_reconciler_claws_back_a_void_whose_push_never_came_from_the_voided_list_once(stack):
    user_id, token = _user(stack, 1)
    bought = _buy(stack, user_id)
    assert _claim(stack, token, bought["purchase_token"]).status == 201
    play = _play(stack)
    play.void(bought["purchase_token"])  # refunded at Google; the push is lost
    first = wiring.reconciler().run()
    assert first.get("voided_clawed_back") == 1, first
    assert "voided_clawed_back" not in wiring.reconciler().run()
    credits = stack.request("GET", "/v1/credits", token=token).json
    assert credits["balance"] == 1 and [e["type"] for e in credits["ledger"]].count("clawback") == 1
    headers, body = play.push(_voided(play, bought["order_id"], bought["purchase_token"]))  # the push, late
    assert _unchanged(stack, lambda: _push(stack, headers, body)).json["outcome"] == "already_revoked"
