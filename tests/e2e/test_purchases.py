"""App Store purchases over HTTP against `python -m devstack`, as the issue's "done when" says: a
locally signed transaction for a pack grants its credits once (a replay answers 200 with the same
body, another user gets 409, balance unchanged); a refund notification claws them back once (one
`clawback` in the ledger, a replayed notification changes nothing); a forged transaction and a
forged notification change nothing; a refund request (CONSUMPTION_REQUEST) is answered at the
local App Store Server API with what was spent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.process import StackProcess
from devstack.stores.app_store_chain import LocalAppStoreChain, LocalAppStoreSigner
from devstack.stores.local_store import LOCAL_APP_APPLE_ID, LOCAL_BUNDLE_ID, LOCAL_PRODUCTS

PRODUCT = str(LOCAL_PRODUCTS[0]["app_store_product_id"])
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
    if base:  # a fixed range (a shared machine): API, simulator, moto
        process.port, process.sim_port, process.moto_port = base, base + 1, base + 2
        process.env.update(PORT=str(base), FALSIM_PORT=str(base + 1), MOTO_PORT=str(base + 2))
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
    first = _claim(api, alice, signed["signed_transaction"])
    assert first.status_code == 201 and first.json()["credits"] == {"granted": CREDITS, "balance": 2 + CREDITS}
    again = _claim(api, alice, signed["signed_transaction"])
    assert (again.status_code, again.json(), again.headers.get("Idempotent-Replayed")) == (200, first.json(), "true")
    other = _claim(api, bob, signed["signed_transaction"])
    assert (other.status_code, other.json()["code"]) == (409, "purchase_already_claimed")
    assert _credits(api, bob)["balance"] == 3

    refund = {"store": "app_store", "transaction_id": signed["transaction_id"]}
    reply = requests.post(f"{api}/_local/store/refunds", json=refund, timeout=30)
    assert reply.status_code == 200 and reply.json()["webhook"]["outcome"] == "clawed_back"
    again_refund = requests.post(f"{api}/_local/store/refunds", json=refund, timeout=30)
    assert again_refund.json()["webhook"]["outcome"] == "already_revoked"
    credits = _credits(api, alice)
    assert credits["balance"] == 2 and [e["type"] for e in credits["ledger"]].count("clawback") == 1


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
