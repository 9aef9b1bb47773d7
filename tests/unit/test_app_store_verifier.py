"""App Store verification with Apple's library, unchanged, against the local chain (devstack/stores):
what verifies and how it maps, and every forgery refused with its precise error.

The library is real (strict X509 checks on, online checks off); the chain and the signed data are
generated here, so no network and no fixture file is needed."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from appstoreserverlibrary.models.Environment import Environment

from devstack.stores.app_store_chain import LocalAppStoreChain, LocalAppStoreSigner
from videogen.adapters.app_store import AppStoreConfig, AppStoreVerifier
from videogen.domain.errors import InvalidSignature, ProductUnknown, PurchaseInvalid, PurchaseRevoked, a_or_an
from videogen.domain.products import parse_products
from videogen.domain.purchases import AppStoreNotification, AppStoreTransaction, claimable

BUNDLE = "com.example.videogen"
APP_ID = 1234567890
PRODUCT = "com.example.credits100"
TOKEN = "3f2c0e7a-51b2-8d4e-9a10-6c1d2e3f4a5b"
CATALOG = parse_products(
    json.dumps(
        [
            {"id": "credits_100", "credits": 100, "app_store_product_id": PRODUCT},
            {"id": "credits_500", "credits": 500, "app_store_product_id": "com.example.credits500"},
        ]
    )
)
CONFIG = AppStoreConfig(BUNDLE, APP_ID)


@pytest.fixture(scope="module")
def chain() -> LocalAppStoreChain:
    return LocalAppStoreChain.generate()


@pytest.fixture(scope="module")
def signer(chain: LocalAppStoreChain) -> LocalAppStoreSigner:
    return LocalAppStoreSigner(chain, BUNDLE, APP_ID)


@pytest.fixture(scope="module")
def local(chain: LocalAppStoreChain) -> AppStoreVerifier:
    """The local stack's verifier: trusts the local root, Production and Sandbox."""
    return AppStoreVerifier.trusting(CONFIG, CATALOG, [chain.root_der], local=True)


@pytest.fixture(scope="module")
def deployed() -> AppStoreVerifier:
    """A deployed stack's verifier: Apple's roots only."""
    return AppStoreVerifier(CONFIG, CATALOG)


def _refused(verifier: AppStoreVerifier, jws: Any, error: type[Exception], detail: str) -> None:
    with pytest.raises(error) as e:
        verifier.purchase(jws)
    assert re.search(detail, str(e.value)), str(e.value)


# --- what verifies -------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "ours"), [("Production", "production"), ("Sandbox", "sandbox")])
def test_a_locally_signed_transaction_verifies_and_maps_to_our_type(
    local: AppStoreVerifier, signer: LocalAppStoreSigner, env: str, ours: str
) -> None:
    signed = datetime(2026, 12, 1, 9, 30, tzinfo=UTC) + timedelta(days=1)
    jws = signer.transaction(
        PRODUCT, transaction_id="2000000123", environment=env, app_account_token=TOKEN.upper(), signed_at=signed
    )
    purchase = local.purchase(jws)
    assert purchase.pack == CATALOG.packs[0]
    assert purchase.transaction == AppStoreTransaction(
        transaction_id="2000000123",
        original_transaction_id="2000000123",
        product_id=PRODUCT,
        app_account_token=TOKEN,  # normalized to lower case
        environment=ours,  # type: ignore[arg-type]
        product_type="Consumable",
        quantity=1,
        signed_at=signed.replace(microsecond=0),
        purchased_at=signed.replace(microsecond=0),
        revoked_at=None,
        revocation_reason=None,
        price_milli=4990,
        currency="USD",
    )


def test_a_transaction_without_an_account_token_maps_to_none(
    local: AppStoreVerifier, signer: LocalAppStoreSigner
) -> None:
    assert local.purchase(signer.transaction(PRODUCT)).transaction.app_account_token is None


def test_an_old_transaction_verifies_offline_at_its_own_signing_date(signer: LocalAppStoreSigner) -> None:
    # a chain whose validity began in 2024 and a JWS signed then: offline, the date checked is signedDate
    old = LocalAppStoreChain.generate(now=datetime(2024, 1, 2, tzinfo=UTC))
    verifier = AppStoreVerifier.trusting(CONFIG, CATALOG, [old.root_der], local=True)
    jws = LocalAppStoreSigner(old, BUNDLE, APP_ID).transaction(PRODUCT, signed_at=datetime(2024, 1, 3, tzinfo=UTC))
    assert verifier.purchase(jws).transaction.signed_at == datetime(2024, 1, 3, tzinfo=UTC)


# --- attacks and refusals ------------------------------------------------------------------------


def test_a_self_signed_jws_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    forger = LocalAppStoreSigner(LocalAppStoreChain.generate(), BUNDLE, APP_ID)  # a root nobody trusts
    payload = forger.transaction_payload(PRODUCT)
    _refused(local, forger.sign(payload), PurchaseInvalid, "signature or its certificate chain does not verify")
    lone_leaf = forger.chain.x5c()[:1]  # the signing certificate alone
    _refused(local, forger.sign(payload, x5c=lone_leaf), PurchaseInvalid, "does not have 3 certificates")


def test_a_transaction_signed_by_the_local_chain_is_refused_by_a_deployed_verifier(
    deployed: AppStoreVerifier, signer: LocalAppStoreSigner
) -> None:
    _refused(deployed, signer.transaction(PRODUCT), PurchaseInvalid, "certificate chain does not verify")


def test_a_foreign_leaf_under_the_trusted_intermediate_is_refused(
    local: AppStoreVerifier, chain: LocalAppStoreChain
) -> None:
    # the trusted intermediate and root in x5c, but signed by a key of another chain's leaf
    other = LocalAppStoreSigner(LocalAppStoreChain.generate(), BUNDLE, APP_ID)
    x5c = other.chain.x5c()[:1] + chain.x5c()[1:]
    _refused(local, other.sign(other.transaction_payload(PRODUCT), x5c=x5c), PurchaseInvalid, "does not verify")


@pytest.mark.parametrize(("leaf", "intermediate"), [(False, False), (False, True), (True, False)])
def test_a_chain_lacking_apple_s_extensions_is_refused(leaf: bool, intermediate: bool) -> None:
    plain = LocalAppStoreChain.generate(leaf_extension=leaf, intermediate_extension=intermediate)
    verifier = AppStoreVerifier.trusting(CONFIG, CATALOG, [plain.root_der], local=True)
    jws = LocalAppStoreSigner(plain, BUNDLE, APP_ID).transaction(PRODUCT)
    _refused(verifier, jws, PurchaseInvalid, "certificate chain does not verify")


def test_a_tampered_payload_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    header, _, signature = signer.transaction(PRODUCT).split(".")
    forged = signer.transaction_payload("com.example.credits500")
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    _refused(local, f"{header}.{body}.{signature}", PurchaseInvalid, "signature or its certificate chain")


def test_an_unsigned_jws_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    payload = signer.transaction_payload(PRODUCT, environment="Production")
    unsigned = jwt.encode(payload, None, algorithm="none", headers={"x5c": signer.chain.x5c()})
    _refused(local, unsigned, PurchaseInvalid, "signature or its certificate chain does not verify")


def test_another_app_s_transaction_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    jws = signer.transaction(PRODUCT, bundleId="com.other.app")
    _refused(local, jws, PurchaseInvalid, "signed for another app")


@pytest.mark.parametrize("env", ["Xcode", "LocalTesting"])
def test_an_xcode_or_local_testing_jws_is_refused_by_a_deployed_verifier(
    deployed: AppStoreVerifier, local: AppStoreVerifier, signer: LocalAppStoreSigner, env: str
) -> None:
    payload = signer.transaction_payload(PRODUCT, environment=env)
    # as Xcode signs it (its own local certificate), signed by our chain, and not signed at all
    xcode = LocalAppStoreSigner(LocalAppStoreChain.generate(), BUNDLE, APP_ID)
    unsigned = jwt.encode(payload, None, algorithm="none")
    for jws in (xcode.sign(payload), xcode.sign(payload, x5c=xcode.chain.x5c()[:1]), signer.sign(payload), unsigned):
        with pytest.raises(PurchaseInvalid):
            deployed.purchase(jws)
    # even the local verifier, which trusts the chain that signed it, accepts no such environment
    _refused(local, signer.sign(payload), PurchaseInvalid, "environment this deployment does not accept")


def test_no_verifier_is_ever_built_for_the_environments_that_skip_signature_checks(
    local: AppStoreVerifier, deployed: AppStoreVerifier
) -> None:
    built = {sv._environment for v in (local, deployed) for _, sv in v._verifiers}
    assert built == {Environment.PRODUCTION, Environment.SANDBOX}
    # and the shipped package names neither anywhere (only the local stack may add a root)
    layer = Path(__file__).resolve().parents[2] / "layers" / "videogen" / "videogen"
    for source in layer.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert not re.search(r"Environment\.(XCODE|LOCAL_TESTING)|\"(Xcode|LocalTesting)\"", text), source


def test_a_deployed_configuration_cannot_trust_another_root(chain: LocalAppStoreChain) -> None:
    with pytest.raises(ValueError, match="trusts Apple's root certificates only"):
        AppStoreVerifier.trusting(CONFIG, CATALOG, [chain.root_der], local=False)
    with pytest.raises(ValueError, match="no root"):
        AppStoreVerifier.trusting(CONFIG, CATALOG, [], local=True)


def test_sandbox_purchases_are_refused_when_the_setting_turns_them_off(
    chain: LocalAppStoreChain, signer: LocalAppStoreSigner
) -> None:
    strict = AppStoreVerifier.trusting(
        AppStoreConfig(BUNDLE, APP_ID, allow_sandbox=False), CATALOG, [chain.root_der], local=True
    )
    _refused(strict, signer.transaction(PRODUCT, environment="Sandbox"), PurchaseInvalid, "environment")
    assert strict.purchase(signer.transaction(PRODUCT, environment="Production")).transaction.environment == (
        "production"
    )


def test_a_revoked_transaction_is_refused_as_revoked(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    revoked = datetime(2026, 12, 1, 10, tzinfo=UTC)
    jws = signer.transaction(PRODUCT, revoked_at=revoked)
    _refused(local, jws, PurchaseRevoked, "was revoked at 2026-12-01T10:00:00")
    # the webhooks still read it: a refund notification carries the revoked transaction
    assert local.transaction(jws).revoked_at == revoked


@pytest.mark.parametrize("kind", ["Non-Consumable", "Auto-Renewable Subscription", "Non-Renewing Subscription"])
def test_a_non_consumable_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner, kind: str) -> None:
    _refused(local, signer.transaction(PRODUCT, type=kind), PurchaseInvalid, f"is {a_or_an(kind)}, not a consumable")


def test_a_transaction_of_no_known_type_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    _refused(local, signer.transaction(PRODUCT, type=None), PurchaseInvalid, "unknown type, not a consumable")


@pytest.mark.parametrize("quantity", [2, 0, None])
def test_a_quantity_other_than_one_is_refused(
    local: AppStoreVerifier, signer: LocalAppStoreSigner, quantity: int | None
) -> None:
    _refused(local, signer.transaction(PRODUCT, quantity=quantity), PurchaseInvalid, "quantity must be 1")


def test_a_product_we_do_not_sell_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    _refused(local, signer.transaction("com.example.gems"), ProductUnknown, "'com.example.gems' is not a credit pack")


def test_an_account_token_that_is_not_a_uuid_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    _refused(local, signer.transaction(PRODUCT, appAccountToken="alice"), PurchaseInvalid, "not a UUID")


@pytest.mark.parametrize("missing", ["transactionId", "productId", "signedDate"])
def test_a_transaction_missing_an_identifying_field_is_refused(
    local: AppStoreVerifier, signer: LocalAppStoreSigner, missing: str
) -> None:
    _refused(local, signer.transaction(PRODUCT, **{missing: None}), PurchaseInvalid, "lacks its id")


def test_a_wrongly_typed_field_is_refused_not_a_crash(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    _refused(local, signer.transaction(PRODUCT, quantity="abc"), PurchaseInvalid, "not an App Store payload")


@pytest.mark.parametrize("jws", ["", "not.a.jws", "x" * (32 * 1024 + 1), None, 5, ["a"]])
def test_anything_but_a_jws_is_refused(local: AppStoreVerifier, jws: Any) -> None:
    with pytest.raises(PurchaseInvalid):
        local.purchase(jws)


# --- notifications -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "revoked", "action"),
    [("REFUND", True, "clawback"), ("REVOKE", True, "clawback"), ("REFUND_REVERSED", False, "regrant")],
)
def test_a_refund_notification_verifies_and_maps(
    local: AppStoreVerifier, signer: LocalAppStoreSigner, kind: str, revoked: bool, action: str
) -> None:
    when = datetime(2026, 12, 1, 11, tzinfo=UTC) if revoked else None
    tx = signer.transaction(PRODUCT, transaction_id="2000000777", environment="Production", revoked_at=when)
    payload = signer.notification(kind, signed_transaction=tx, environment="Production", notification_id="n-1")
    notification = local.notification(payload)
    assert isinstance(notification, AppStoreNotification)
    assert (notification.notification_id, notification.notification_type, notification.environment) == (
        "n-1",
        kind,
        "production",
    )
    assert notification.action == action
    assert notification.transaction is not None
    assert notification.transaction.transaction_id == "2000000777"
    assert notification.transaction.revoked_at == when


def test_a_consumption_request_verifies_and_maps_with_its_reason(
    local: AppStoreVerifier, signer: LocalAppStoreSigner
) -> None:
    tx = signer.transaction(PRODUCT, environment="Sandbox")
    payload = signer.notification(
        "CONSUMPTION_REQUEST", signed_transaction=tx, consumption_request_reason="UNINTENDED_PURCHASE"
    )
    notification = local.notification(payload)
    assert notification.action == "consumption_request"
    assert notification.environment == "sandbox"
    assert notification.consumption_request_reason == "UNINTENDED_PURCHASE"


def test_a_notification_without_a_transaction_is_acknowledged_only(
    local: AppStoreVerifier, signer: LocalAppStoreSigner
) -> None:
    notification = local.notification(signer.notification("TEST", signed_transaction=None))
    assert notification.transaction is None
    assert notification.action == "ignore"


def test_a_forged_notification_is_refused_as_a_bad_signature(
    local: AppStoreVerifier, deployed: AppStoreVerifier, signer: LocalAppStoreSigner
) -> None:
    forger = LocalAppStoreSigner(LocalAppStoreChain.generate(), BUNDLE, APP_ID)
    tx = forger.transaction(PRODUCT)
    with pytest.raises(InvalidSignature, match="notification does not verify"):
        local.notification(forger.notification("REFUND", signed_transaction=tx))
    with pytest.raises(InvalidSignature):
        deployed.notification(signer.notification("REFUND", signed_transaction=signer.transaction(PRODUCT)))


def test_a_genuine_notification_carrying_a_forged_transaction_is_refused(
    local: AppStoreVerifier, signer: LocalAppStoreSigner
) -> None:
    forged_tx = LocalAppStoreSigner(LocalAppStoreChain.generate(), BUNDLE, APP_ID).transaction(PRODUCT)
    with pytest.raises(InvalidSignature, match="notification's transaction does not verify"):
        local.notification(signer.notification("REFUND", signed_transaction=forged_tx))


def test_a_notification_for_another_app_id_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    tx = signer.transaction(PRODUCT, environment="Production")
    other = signer.notification("REFUND", signed_transaction=tx, environment="Production", app_apple_id=42)
    with pytest.raises(InvalidSignature, match="signed for another app"):
        local.notification(other)


def test_a_notification_and_its_transaction_must_share_the_environment(
    local: AppStoreVerifier, signer: LocalAppStoreSigner
) -> None:
    tx = signer.transaction(PRODUCT, environment="Sandbox")
    mixed = signer.notification("REFUND", signed_transaction=tx, environment="Production")
    with pytest.raises(InvalidSignature, match="different environments"):
        local.notification(mixed)


def test_a_notification_missing_its_id_is_refused(local: AppStoreVerifier, signer: LocalAppStoreSigner) -> None:
    payload = jwt.decode(signer.notification("TEST", signed_transaction=None), options={"verify_signature": False})
    del payload["notificationUUID"]
    with pytest.raises(InvalidSignature, match="lacks its id"):
        local.notification(signer.sign(payload))


# --- the rules, pure -----------------------------------------------------------------------------


def _tx(**fields: Any) -> AppStoreTransaction:
    base: dict[str, Any] = {
        "transaction_id": "1",
        "original_transaction_id": "1",
        "product_id": PRODUCT,
        "app_account_token": None,
        "environment": "production",
        "product_type": "Consumable",
        "quantity": 1,
        "signed_at": datetime(2026, 12, 1, tzinfo=UTC),
    }
    return AppStoreTransaction(**{**base, **fields})


def test_the_checks_run_invalid_first_then_revoked_then_product() -> None:
    revoked = datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(PurchaseInvalid):
        claimable(_tx(quantity=2, revoked_at=revoked, product_id="gems"), CATALOG)
    with pytest.raises(PurchaseRevoked):
        claimable(_tx(revoked_at=revoked, product_id="gems"), CATALOG)
    assert claimable(_tx(product_id="com.example.credits500"), CATALOG).credits == 500


@pytest.mark.parametrize(
    ("kind", "product_type", "with_tx", "action"),
    [
        ("REFUND", "Non-Consumable", True, "ignore"),
        ("REFUND", "Consumable", False, "ignore"),
        ("REFUND_DECLINED", "Consumable", True, "ignore"),
        ("ONE_TIME_CHARGE", "Consumable", True, "ignore"),
        ("CONSUMPTION_REQUEST", "Auto-Renewable Subscription", True, "ignore"),
    ],
)
def test_what_a_notification_asks_of_us_needs_a_consumable(
    kind: str, product_type: str, with_tx: bool, action: str
) -> None:
    notification = AppStoreNotification(
        "n",
        kind,
        None,
        "production",
        datetime(2026, 12, 1, tzinfo=UTC),
        _tx(product_type=product_type) if with_tx else None,
    )
    assert notification.action == action
