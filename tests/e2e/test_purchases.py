"""App Store and Google Play purchases over HTTP against `python -m devstack`, as the issue's "done
when" says: a locally signed transaction (or a local Play purchase token) for a pack grants its
credits once (a replay answers 200 with the same body, another user gets 409, balance unchanged); a
refund notification (Play: a voided purchase pushed with an OIDC token) claws them back once (one
`clawback` in the ledger, a replayed notification changes nothing); a forged transaction and a
forged notification change nothing; a refund request (CONSUMPTION_REQUEST) is answered at the
local App Store Server API with what was spent."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from devstack.process import StackProcess
from devstack.stores.app_store_chain import LocalAppStoreChain, LocalAppStoreSigner
from devstack.stores.google_play import LOCAL_PACKAGE, LocalPlay
from devstack.stores.local_store import LOCAL_APP_APPLE_ID, LOCAL_BUNDLE_ID, LOCAL_PRODUCTS

PRODUCT = str(LOCAL_PRODUCTS[0]["app_store_product_id"])
PLAY_PRODUCT = str(LOCAL_PRODUCTS[0]["google_play_product_id"])
CREDITS = int(LOCAL_PRODUCTS[0]["credits"])  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = StackProcess(
        seed=12,
        time_scale=0.02,
        crash_rate=0,
        reconcile_every_s=0,
        reconcile_grace_s=10,
        log_path=tmp_path_factory.mktemp("purchases") / "stack.log",
    )
    base = int(os.environ.get("E2E_PURCHASES_PORT", "0"))
    if base:  # a fixed range (a shared machine): API, simulator, moto, local Google Play
        process.port, process.sim_port, process.moto_port, process.play_port = base, base + 1, base + 2, base + 3
        process.env.update(PORT=str(base), FALSIM_PORT=str(base + 1), MOTO_PORT=str(base + 2), PLAY_PORT=str(base + 3))
    with process:
        yield process.api


def _user(api: str, user_id: str, credits: int = 0) -> dict[str, str]:
    reply = requests.post(f"{api}/_local/users", json={"user_id": user_id, "credits": credits}, timeout=30)
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def _credits(api: str, auth: dict[str, str]) -> dict[str, Any]:
    return dict(requests.get(f"{api}/v1/credits", headers=auth, timeout=30).json())


def _claim(api: str, auth: dict[str, str], jws: str) -> requests.Response:
    return requests.post(
        f"{api}/v1/purchases", headers=auth, json={"store": "app_store", "signed_transaction": jws}, timeout=30
    )


def test_a_pack_is_granted_once_and_its_refund_clawed_back_once_over_http(api: str) -> None:
    alice, bob = _user(api, "e2e-alice", 2), _user(api, "e2e-bob", 3)
    assert requests.get(f"{api}/v1/products", timeout=30).json()["items"][0]["app_store_product_id"] == PRODUCT
    signed = requests.post(
        f"{api}/_local/store/app-store/transactions", json={"user_id": "e2e-alice", "product_id": PRODUCT}, timeout=30
    ).json()
    refund = {"store": "app_store", "transaction_id": signed["transaction_id"]}
    _granted_once_then_clawed_back_once(
        api, lambda auth: _claim(api, auth, signed["signed_transaction"]), refund, alice, bob
    )


def _granted_once_then_clawed_back_once(
    api: str, claim: Callable[[dict[str, str]], requests.Response], refund: dict[str, str], alice: Any, bob: Any
) -> dict[str, Any]:
    """Alice (2 credits) claims once, replays, Bob (3) is refused; the store's refund, twice, claws
    back once. The first answer."""
    first = claim(alice)
    assert first.status_code == 201 and first.json()["credits"] == {"granted": CREDITS, "balance": 2 + CREDITS}
    again = claim(alice)
    assert (again.status_code, again.json(), again.headers.get("Idempotent-Replayed")) == (200, first.json(), "true")
    other = claim(bob)
    assert (other.status_code, other.json()["code"]) == (409, "purchase_already_claimed")
    assert _credits(api, bob)["balance"] == 3

    reply = requests.post(f"{api}/_local/store/refunds", json=refund, timeout=30)
    assert reply.status_code == 200 and reply.json()["webhook"]["outcome"] == "clawed_back"
    again_refund = requests.post(f"{api}/_local/store/refunds", json=refund, timeout=30)
    assert again_refund.json()["webhook"]["outcome"] == "already_revoked"
    credits = _credits(api, alice)
    assert credits["balance"] == 2 and [e["type"] for e in credits["ledger"]].count("clawback") == 1
    return dict(first.json())


def test_a_forged_transaction_and_a_forged_notification_change_nothing_over_http(api: str) -> None:
    carol = _user(api, "e2e-carol", 1)
    before = _credits(api, carol)
    forger = LocalAppStoreSigner(LocalAppStoreChain.generate(), LOCAL_BUNDLE_ID, LOCAL_APP_APPLE_ID)
    forged_tx = forger.transaction(PRODUCT, app_account_token=before["app_account_token"])
    reply = _claim(api, carol, forged_tx)
    assert (reply.status_code, reply.json()["code"]) == (422, "purchase_invalid")
    forged_note = forger.notification("REFUND", signed_transaction=forged_tx)
    note = requests.post(f"{api}/webhooks/app-store", json={"signedPayload": forged_note}, timeout=30)
    assert (note.status_code, note.json()["code"]) == (401, "invalid_signature")
    assert _credits(api, carol) == before


def _play_claim(api: str, auth: dict[str, str], purchase_token: str) -> requests.Response:
    body = {"store": "google_play", "product_id": PLAY_PRODUCT, "purchase_token": purchase_token}
    return requests.post(f"{api}/v1/purchases", headers=auth, json=body, timeout=30)


def test_a_play_purchase_is_granted_once_and_its_voided_purchase_clawed_back_once_over_http(api: str) -> None:
    alice, bob = _user(api, "e2e-play-alice", 2), _user(api, "e2e-play-bob", 3)
    bought = requests.post(
        f"{api}/_local/store/google-play/purchases",
        json={"user_id": "e2e-play-alice", "product_id": PLAY_PRODUCT},
        timeout=30,
    ).json()
    refund = {"store": "google_play", "purchase_token": bought["purchase_token"]}
    first = _granted_once_then_clawed_back_once(
        api, lambda auth: _play_claim(api, auth, bought["purchase_token"]), refund, alice, bob
    )
    assert first["purchase"]["transaction_id"] == bought["order_id"]


def test_a_forged_play_token_and_a_forged_oidc_push_change_nothing_over_http(api: str) -> None:
    dave = _user(api, "e2e-play-dave", 1)
    bought = requests.post(
        f"{api}/_local/store/google-play/purchases",
        json={"user_id": "e2e-play-dave", "product_id": PLAY_PRODUCT},
        timeout=30,
    ).json()
    assert _play_claim(api, dave, bought["purchase_token"]).status_code == 201
    before = _credits(api, dave)
    made_up = _play_claim(api, dave, "not-a-token-google-issued")
    assert (made_up.status_code, made_up.json()["code"]) == (422, "purchase_invalid")
    forger = LocalPlay("127.0.0.1", audience=f"{api}/webhooks/google-play")  # its own key: Google never signed it
    notification = {
        "version": "1.0",
        "packageName": LOCAL_PACKAGE,
        "eventTimeMillis": "1",
        "voidedPurchaseNotification": {
            "purchaseToken": bought["purchase_token"], "orderId": bought["order_id"], "refundType": 1,
        },
    }  # fmt: skip
    headers, body = forger.push(notification)
    forged = requests.post(f"{api}/webhooks/google-play", headers=headers, data=body, timeout=30)
    assert (forged.status_code, forged.json()["code"]) == (401, "invalid_signature")
    bare = requests.post(f"{api}/webhooks/google-play", data=body, timeout=30)
    assert (bare.status_code, bare.json()["code"]) == (401, "invalid_signature")
    assert _credits(api, dave) == before


def test_a_refund_request_is_answered_with_what_was_spent_over_http(api: str) -> None:
    dave = _user(api, "e2e-dave", 0)
    signed = requests.post(
        f"{api}/_local/store/app-store/transactions", json={"user_id": "e2e-dave", "product_id": PRODUCT}, timeout=30
    ).json()
    assert _claim(api, dave, signed["signed_transaction"]).status_code == 201
    ask = {"store": "app_store", "transaction_id": signed["transaction_id"], "notification": "CONSUMPTION_REQUEST"}
    reply = requests.post(f"{api}/_local/store/refunds", json=ask, timeout=30)
    assert reply.status_code == 200 and reply.json()["webhook"]["outcome"] == "consumption_sent"
    received = requests.get(f"{api}/_local/store/app-store/consumption", timeout=30).json()["items"]
    assert [i["body"] for i in received if i["transaction_id"] == signed["transaction_id"]] == [
        {
            "customerConsented": True,
            "sampleContentProvided": False,
            "deliveryStatus": "DELIVERED",
            "consumptionPercentage": 0,  # nothing spent yet
            "refundPreference": "GRANT_FULL",
        }
    ]
    assert _credits(api, dave)["balance"] == CREDITS
