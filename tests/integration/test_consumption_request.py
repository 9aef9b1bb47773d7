"""CONSUMPTION_REQUEST on the local stack (issue 12): the local App Store sends the customer's
refund request to the real webhook, the store webhook function answers it with Apple's library at
the local App Store Server API (the key read from Secrets Manager under its own role), and that API
recorded what it received — with the values of what the buyer spent."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests

from devstack.stores.local_store import LOCAL_BUNDLE_ID, LOCAL_PRODUCTS, LocalServerApi
from videogen.adapters.app_store_api import ApiKey, AppStoreServerApi
from videogen.domain.errors import ServiceUnavailable
from videogen.domain.purchases import ConsumptionInfo

PACK = LOCAL_PRODUCTS[0]
PRODUCT = str(PACK["app_store_product_id"])
CREDITS = int(PACK["credits"])  # type: ignore[call-overload]


def _bought(stack: Any, claim: bool = True) -> tuple[str, str]:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    token = stack.user(0, user_id)
    reply = stack.request(
        "POST", "/_local/store/app-store/transactions", body={"user_id": user_id, "product_id": PRODUCT}
    )
    signed = reply.json
    if claim:
        body = {"store": "app_store", "signed_transaction": signed["signed_transaction"]}
        assert stack.request("POST", "/v1/purchases", token=token, body=body).status == 201
    return token, str(signed["transaction_id"])


def _ask_refund(stack: Any, transaction_id: str) -> Any:
    body = {"store": "app_store", "transaction_id": transaction_id, "notification": "CONSUMPTION_REQUEST"}
    reply = stack.request("POST", "/_local/store/refunds", body=body)
    assert reply.status == 200, reply.body
    return reply.json["webhook"]


def _received(stack: Any, transaction_id: str) -> list[dict[str, Any]]:
    items = stack.request("GET", "/_local/store/app-store/consumption").json["items"]
    return [i["body"] for i in items if i["transaction_id"] == transaction_id]


def test_a_consumption_request_is_answered_with_what_the_buyer_spent(stack):
    token, transaction_id = _bought(stack)
    assert stack.submit(token).status == 202  # spends part of the pack
    balance = int(stack.request("GET", "/v1/credits", token=token).json["balance"])
    spent = CREDITS - balance
    assert 0 < spent < CREDITS
    assert _ask_refund(stack, transaction_id)["outcome"] == "consumption_sent"
    assert _received(stack, transaction_id) == [
        {
            "customerConsented": True,
            "sampleContentProvided": False,
            "deliveryStatus": "DELIVERED",
            "consumptionPercentage": spent * 100_000 // CREDITS,
            "refundPreference": "GRANT_PRORATED",
        }
    ]
    assert int(stack.request("GET", "/v1/credits", token=token).json["balance"]) == balance  # nothing moved


def test_a_consumption_request_of_a_transaction_never_claimed_says_undelivered(stack):
    _, transaction_id = _bought(stack, claim=False)
    assert _ask_refund(stack, transaction_id)["outcome"] == "consumption_sent"
    [body] = _received(stack, transaction_id)
    assert (body["deliveryStatus"], body["consumptionPercentage"], body["refundPreference"]) == (
        "UNDELIVERED_OTHER",
        0,
        "GRANT_FULL",
    )


def test_the_local_api_refuses_another_key_and_a_refused_consent_as_apple_does(stack):
    url = stack.stack.api_url.rstrip("/") + "/_local/store/app-store/api"
    info = ConsumptionInfo("DELIVERED", 0, "GRANT_FULL")
    other = ApiKey.parse(LocalServerApi(LOCAL_BUNDLE_ID).secret())  # a key the local API never issued
    with pytest.raises(ServiceUnavailable, match="HTTP 401"):
        AppStoreServerApi(lambda: other, LOCAL_BUNDLE_ID, url).send("2000000001", "sandbox", info)
    ours = ApiKey.parse(stack.stack.app_store.api.secret())
    with pytest.raises(ServiceUnavailable, match="HTTP 400 4000035"):
        AppStoreServerApi(lambda: ours, LOCAL_BUNDLE_ID, url).send(
            "2000000001", "sandbox", ConsumptionInfo("DELIVERED", 0, "GRANT_FULL", customer_consented=False)
        )
    with pytest.raises(ServiceUnavailable, match="did not answer"):
        AppStoreServerApi(lambda: ours, LOCAL_BUNDLE_ID, "http://127.0.0.1:9").send("2000000001", "sandbox", info)
    assert _received(stack, "2000000001") == []


def test_an_unsigned_request_to_the_local_api_is_401(stack):
    url = stack.stack.api_url.rstrip("/") + "/_local/store/app-store/api/inApps/v2/transactions/consumption/1"
    reply = requests.put(url, data=json.dumps({"customerConsented": True}), timeout=10)
    assert reply.status_code == 401
