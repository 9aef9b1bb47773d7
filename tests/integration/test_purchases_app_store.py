"""App Store purchases on moto, through the real handlers, roles and Apple's library (unchanged,
trusting the local stack's generated chain): products, the account token, a claim credited once
(also 20 posts of one transaction at once), replays, refunds clawed back once, and every attack
answered with nothing changed in the table."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.invariants import audit_items, scan_table
from devstack.stores.app_store_chain import LocalAppStoreChain, LocalAppStoreSigner
from devstack.stores.local_store import LOCAL_APP_APPLE_ID, LOCAL_BUNDLE_ID, LOCAL_PRODUCTS
from tests.recording import Recording
from videogen import wiring
from videogen.adapters.app_store import AppStoreConfig, AppStoreVerifier
from videogen.adapters.purchases import DynamoPurchaseStore
from videogen.domain.errors import PurchaseInvalid
from videogen.services.purchases import PurchaseService

PACK = LOCAL_PRODUCTS[0]
PRODUCT = str(PACK["app_store_product_id"])
CREDITS = int(PACK["credits"])  # type: ignore[call-overload]


def _user(stack: Any, credits: int = 0) -> tuple[str, str]:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    return user_id, stack.user(credits, user_id)


def _sign(stack: Any, user_id: str, **body: Any) -> dict[str, Any]:
    reply = stack.request(
        "POST", "/_local/store/app-store/transactions", body={"user_id": user_id, "product_id": PRODUCT, **body}
    )
    assert reply.status == 200, reply.body
    return dict(reply.json)


def _claim(stack: Any, token: str, jws: str) -> Any:
    return stack.request("POST", "/v1/purchases", token=token, body={"store": "app_store", "signed_transaction": jws})


def _balance(stack: Any, token: str) -> int:
    return int(stack.request("GET", "/v1/credits", token=token).json["balance"])


def _table(stack: Any) -> list[dict[str, Any]]:
    return sorted(scan_table(stack.db, stack.table), key=lambda i: (str(i["pk"]), str(i["sk"])))


def _notify(stack: Any, signed_payload: str) -> Any:
    return stack.request("POST", "/webhooks/app-store", body={"signedPayload": signed_payload})


def _refund_notification(stack: Any, transaction_id: str, user_id: str, nid: str | None = None) -> str:
    signer = stack.stack.app_store.signer
    refunded = signer.transaction(
        PRODUCT,
        transaction_id=transaction_id,
        app_account_token=wiring.account_token(user_id),
        revoked_at=datetime.now(UTC),
    )
    return str(signer.notification("REFUND", signed_transaction=refunded, notification_id=nid))


# --- products and the account token -------------------------------------------------------------


def test_products_are_the_parameter_and_credits_show_the_callers_stable_account_token(stack):
    assert stack.request("GET", "/v1/products").json == {"items": [{**p} for p in LOCAL_PRODUCTS]}
    user_id, token = _user(stack)
    first = stack.request("GET", "/v1/credits", token=token).json["app_account_token"]
    assert (
        first
        == wiring.account_token(user_id)
        == stack.request("GET", "/v1/credits", token=token).json["app_account_token"]
    )
    assert first != wiring.account_token(user_id + "x")
    uuid.UUID(first)


# --- claims ---------------------------------------------------------------------------------------------


def test_a_locally_signed_transaction_grants_its_pack_once_replays_answer_the_same_and_others_get_409(stack):
    alice, alice_token = _user(stack, 5)
    _, mallory_token = _user(stack, 3)
    signed = _sign(stack, alice)
    first = _claim(stack, alice_token, signed["signed_transaction"])
    assert first.status == 201, first.body
    body = first.json
    assert body["credits"] == {"granted": CREDITS, "balance": 5 + CREDITS}
    purchase = body["purchase"]
    assert purchase["id"].startswith("pur_") and purchase["transaction_id"] == signed["transaction_id"]
    assert (purchase["status"], purchase["environment"], purchase["store"], purchase["product_id"]) == (
        "granted", "sandbox", "app_store", PRODUCT
    )  # fmt: skip
    again = _claim(stack, alice_token, signed["signed_transaction"])
    assert (again.status, again.json, again.headers.get("idempotent-replayed")) == (200, body, "true")
    other = _claim(stack, mallory_token, signed["signed_transaction"])
    assert (other.status, other.json["code"]) == (409, "purchase_already_claimed")
    assert (_balance(stack, alice_token), _balance(stack, mallory_token)) == (5 + CREDITS, 3)
    ledger = stack.request("GET", "/v1/credits", token=alice_token).json["ledger"]
    assert (ledger[0]["type"], ledger[0]["amount"], ledger[0]["purchase_id"]) == ("purchase", CREDITS, purchase["id"])
    assert sum(1 for e in ledger if e["type"] == "purchase") == 1


def test_a_production_purchase_is_recorded_as_production(stack):
    user_id, token = _user(stack)
    reply = _claim(stack, token, _sign(stack, user_id, environment="Production")["signed_transaction"])
    assert reply.status == 201 and reply.json["purchase"]["environment"] == "production"


def test_twenty_concurrent_claims_of_one_transaction_credit_it_once(stack):
    users = [_user(stack) for _ in range(4)]
    owner = users[0][0]
    jws = _sign(stack, owner, app_account_token=None)  # no token: the first verified claim wins
    anonymous = stack.stack.app_store.signer.transaction(PRODUCT, transaction_id=jws["transaction_id"])
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda i: (i % 4, _claim(stack, users[i % 4][1], anonymous)), range(20)))
    statuses = sorted(r.status for _, r in replies)
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}, statuses
    winner = next(i for i, r in replies if r.status == 201)
    assert all(r.status in (200, 201) for i, r in replies if i == winner)
    assert all(r.status == 409 for i, r in replies if i != winner)
    balances = [_balance(stack, t) for _, t in users]
    assert sorted(balances) == [0, 0, 0, CREDITS]
    entries = [i for i in scan_table(stack.db, stack.table) if i.get("type") == "purchase"]
    assert len(entries) == 1


# --- refunds --------------------------------------------------------------------------------------------


def test_a_refund_claws_back_once_and_a_replayed_notification_changes_nothing(stack):
    user_id, token = _user(stack, 1)
    signed = _sign(stack, user_id)
    assert _claim(stack, token, signed["signed_transaction"]).status == 201
    note = _refund_notification(stack, signed["transaction_id"], user_id)
    reply = _notify(stack, note)
    assert (reply.status, reply.json["outcome"]) == (200, "clawed_back")
    before = _table(stack)
    replay = _notify(stack, note)
    assert (replay.status, replay.json["outcome"]) == (200, "duplicate")
    assert _table(stack) == before
    ledger = stack.request("GET", "/v1/credits", token=token).json["ledger"]
    assert [e["type"] for e in ledger].count("clawback") == 1 and _balance(stack, token) == 1
    again = _claim(stack, token, signed["signed_transaction"])
    assert (again.status, again.json["code"]) == (422, "purchase_revoked")


def test_the_local_refund_route_delivers_apples_notification_to_the_real_webhook(stack):
    user_id, token = _user(stack)
    signed = _sign(stack, user_id)
    _claim(stack, token, signed["signed_transaction"])
    reply = stack.request(
        "POST", "/_local/store/refunds", body={"store": "app_store", "transaction_id": signed["transaction_id"]}
    )
    assert reply.status == 200, reply.body
    assert reply.json["webhook"]["outcome"] == "clawed_back"
    assert _balance(stack, token) == 0
    second = stack.request(
        "POST", "/_local/store/refunds", body={"store": "app_store", "transaction_id": signed["transaction_id"]}
    )
    assert second.json["webhook"]["outcome"] == "already_revoked" and _balance(stack, token) == 0


def test_a_clawback_of_credits_already_spent_takes_the_balance_below_zero(stack):
    user_id, token = _user(stack)
    signed = _sign(stack, user_id)
    _claim(stack, token, signed["signed_transaction"])
    assert stack.submit(token).status == 202  # spends some of the pack
    spent = CREDITS - _balance(stack, token)
    _notify(stack, _refund_notification(stack, signed["transaction_id"], user_id))
    assert _balance(stack, token) == -spent < 0
    assert stack.submit(token).json["code"] == "insufficient_credits"


def test_a_refund_before_any_claim_is_recorded_and_the_later_claim_is_purchase_revoked(stack):
    user_id, token = _user(stack)
    signed = _sign(stack, user_id)
    reply = _notify(stack, _refund_notification(stack, signed["transaction_id"], user_id))
    assert reply.json["outcome"] == "recorded_unclaimed"
    claim = _claim(stack, token, signed["signed_transaction"])
    assert (claim.status, claim.json["code"]) == (422, "purchase_revoked")
    assert _balance(stack, token) == 0


def test_a_refund_reversal_grants_the_credits_again_once(stack):
    user_id, token = _user(stack)
    signed = _sign(stack, user_id)
    _claim(stack, token, signed["signed_transaction"])
    _notify(stack, _refund_notification(stack, signed["transaction_id"], user_id))
    plain = stack.stack.app_store.signer.transaction(
        PRODUCT, transaction_id=signed["transaction_id"], app_account_token=wiring.account_token(user_id)
    )
    reversal = stack.stack.app_store.signer.notification("REFUND_REVERSED", signed_transaction=plain)
    assert _notify(stack, reversal).json["outcome"] == "regranted"
    assert _notify(stack, reversal).json["outcome"] == "duplicate"
    assert _balance(stack, token) == CREDITS
    again = _refund_notification(stack, signed["transaction_id"], user_id, nid=str(uuid.uuid4()))
    assert _notify(stack, again).json["outcome"] == "clawed_back"
    mine = [i for i in _table(stack) if i["pk"] == f"USER#{user_id}" or i.get("user_id") == user_id]
    moves = sorted((int(i["purchase_seq"]), i["type"]) for i in mine if i.get("type") in ("purchase", "clawback"))
    assert moves == [(1, "purchase"), (2, "clawback"), (3, "purchase"), (4, "clawback")]
    audited = audit_items(mine)
    assert audited.ok, audited.problems


# --- attacks: each answered, nothing changed ------------------------------------------------------------


def _unchanged(stack: Any, attempt: Any) -> Any:
    before = _table(stack)
    reply = attempt()
    assert _table(stack) == before
    return reply


def test_a_self_signed_transaction_is_purchase_invalid(stack):
    user_id, token = _user(stack)
    forger = LocalAppStoreSigner(LocalAppStoreChain.generate(), LOCAL_BUNDLE_ID, LOCAL_APP_APPLE_ID)
    jws = forger.transaction(PRODUCT, app_account_token=wiring.account_token(user_id))
    reply = _unchanged(stack, lambda: _claim(stack, token, jws))
    assert (reply.status, reply.json["code"]) == (422, "purchase_invalid")
    assert "does not verify" in reply.json["detail"]


def test_another_apps_bundle_id_is_purchase_invalid(stack):
    user_id, token = _user(stack)
    other_app = LocalAppStoreSigner(stack.stack.app_store.chain, "com.attacker.app", LOCAL_APP_APPLE_ID)
    jws = other_app.transaction(PRODUCT, app_account_token=wiring.account_token(user_id))
    reply = _unchanged(stack, lambda: _claim(stack, token, jws))
    assert (reply.status, reply.json["code"]) == (422, "purchase_invalid")
    assert "another app" in reply.json["detail"]


@pytest.mark.parametrize("environment", ["Xcode", "LocalTesting"])
def test_an_xcode_or_local_testing_transaction_is_purchase_invalid(stack, environment):
    user_id, token = _user(stack)
    jws = _sign(stack, user_id, environment=environment)["signed_transaction"]
    reply = _unchanged(stack, lambda: _claim(stack, token, jws))
    assert (reply.status, reply.json["code"]) == (422, "purchase_invalid")


def test_a_transaction_bought_with_another_users_account_token_is_409(stack):
    alice, _ = _user(stack)
    _, mallory_token = _user(stack)
    jws = _sign(stack, alice)["signed_transaction"]
    reply = _unchanged(stack, lambda: _claim(stack, mallory_token, jws))
    assert (reply.status, reply.json["code"]) == (409, "purchase_already_claimed")


def test_a_forged_or_malformed_notification_is_401_and_changes_nothing(stack):
    user_id, token = _user(stack)
    signed = _sign(stack, user_id)
    _claim(stack, token, signed["signed_transaction"])
    forger = LocalAppStoreSigner(LocalAppStoreChain.generate(), LOCAL_BUNDLE_ID, LOCAL_APP_APPLE_ID)
    refunded = forger.transaction(PRODUCT, transaction_id=signed["transaction_id"], revoked_at=None)
    forged = forger.notification("REFUND", signed_transaction=refunded)
    for attempt in (
        lambda: _notify(stack, forged),
        lambda: stack.request("POST", "/webhooks/app-store", body={"nope": 1}),
        lambda: stack.request("POST", "/webhooks/app-store", raw=b"\xff not json"),
    ):
        reply = _unchanged(stack, attempt)
        assert (reply.status, reply.json["code"]) == (401, "invalid_signature")
    assert _balance(stack, token) == CREDITS


def test_the_same_attacks_on_the_service_with_a_chain_lacking_apples_extensions_or_a_deployed_config(stack):
    """What cannot be posted to the local stack (it trusts its own root only): a chain that chains to
    a trusted root but lacks Apple's extensions, and an Xcode JWS sent to a deployed configuration."""
    user_id, _ = _user(stack)
    catalog = wiring.catalog()
    config = AppStoreConfig(LOCAL_BUNDLE_ID, LOCAL_APP_APPLE_ID)
    store = DynamoPurchaseStore(stack.db, stack.table)
    for leaf, intermediate in ((False, True), (True, False)):
        bare = LocalAppStoreChain.generate(leaf_extension=leaf, intermediate_extension=intermediate)
        verifier = AppStoreVerifier.trusting(config, catalog, [bare.root_der], local=True)
        jws = LocalAppStoreSigner(bare, LOCAL_BUNDLE_ID, LOCAL_APP_APPLE_ID).transaction(PRODUCT)
        service = PurchaseService(store, verifier, wiring.account_token, catalog)
        with pytest.raises(PurchaseInvalid, match="does not verify"):
            _unchanged(stack, lambda service=service, jws=jws: service.claim_app_store(user_id, jws))
    deployed = PurchaseService(store, AppStoreVerifier(config, catalog), wiring.account_token, catalog)
    xcode = stack.stack.app_store.signer.transaction(PRODUCT, environment="Xcode")
    with pytest.raises(PurchaseInvalid):
        _unchanged(stack, lambda: deployed.claim_app_store(user_id, xcode))


def test_the_aws_calls_of_a_first_claim_and_of_a_replay(stack):
    """What the purchase path costs in DynamoDB (the account-token secret is read once per cold start)."""
    user_id, _ = _user(stack)
    db = Recording(stack.db)
    service = PurchaseService(
        DynamoPurchaseStore(db, stack.table), wiring.app_store(), wiring.account_token, wiring.catalog()
    )
    jws = _sign(stack, user_id)["signed_transaction"]
    service.claim_app_store(user_id, jws)
    assert db.calls == ["get_item", "transact_write_items[Put+Update+Put]", "get_item", "update_item"]
    db.calls.clear()
    assert service.claim_app_store(user_id, jws).replayed
    assert db.calls == ["get_item"]


def test_the_purchase_list_is_the_callers_newest_first_with_revoked_ones_and_a_cursor_of_its_own(stack):
    user_id, token = _user(stack)
    claimed = []
    for _ in range(3):
        signed = _sign(stack, user_id)
        reply = _claim(stack, token, signed["signed_transaction"])
        assert reply.status == 201, reply.body
        claimed.append(reply.json["purchase"])
    assert _notify(stack, _refund_notification(stack, claimed[0]["transaction_id"], user_id)).status == 200
    other_id, other_token = _user(stack)
    assert _claim(stack, other_token, _sign(stack, other_id)["signed_transaction"]).status == 201

    first = stack.request("GET", "/v1/purchases?limit=2", token=token)
    assert first.status == 200, first.body
    assert [p["id"] for p in first.json["items"]] == [claimed[2]["id"], claimed[1]["id"]]
    cursor = first.json["next_cursor"]
    rest = stack.request("GET", f"/v1/purchases?limit=2&cursor={cursor}", token=token).json
    assert [(p["id"], p["status"]) for p in rest["items"]] == [(claimed[0]["id"], "revoked")]
    assert rest["items"][0]["revoked_at"] and rest["next_cursor"] is None
    assert first.json["items"][0] == claimed[2]  # the same Purchase the claim answered

    stolen = stack.request("GET", f"/v1/purchases?cursor={cursor}", token=other_token)
    assert (stolen.status, stolen.json["code"]) == (400, "invalid_cursor")
    assert len(stack.request("GET", "/v1/purchases", token=other_token).json["items"]) == 1
    nobody = stack.request("GET", "/v1/purchases")
    assert nobody.status == 401
