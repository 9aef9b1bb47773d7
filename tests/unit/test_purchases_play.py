"""PurchaseService with Google Play on fakes: every branch of a Play claim (verify, account id, the
shared claim transaction keyed by the order id, the consume and its repair) and of a voided-purchase
push, with what changed (or that nothing did) and the invariant audit over the store after each."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

from tests.fakes import FakeAppStore, FakePlay, FakePurchaseStore, FakeStore
from videogen.domain.account_token import app_account_token
from videogen.domain.errors import (
    InvalidSignature,
    ProductUnknown,
    PurchaseAlreadyClaimed,
    PurchaseInvalid,
    PurchaseRevoked,
    ServiceUnavailable,
)
from videogen.domain.models import LedgerType
from videogen.domain.products import parse_products
from videogen.domain.purchases import PLAY_CANCELED, PLAY_PENDING, PlayPurchase, PlayVoided
from videogen.services.purchases import PurchaseService

SECRET = "per-deployment-secret"
PRODUCT = "credits_100"
CATALOG = parse_products(
    json.dumps(
        [
            {"id": "credits_100", "credits": 100, "google_play_product_id": PRODUCT},
            {"id": "ios_only", "credits": 7, "app_store_product_id": "com.example.ios"},
        ]
    )
)
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def token(user_id: str) -> str:
    return app_account_token(SECRET, user_id)


@dataclass
class World:
    store: FakeStore
    purchases: FakePurchaseStore
    play: FakePlay
    service: PurchaseService

    def bought(self, order: str = "GPA.1", *, user: str | None = "alice", product: str = PRODUCT, **kw: object) -> str:
        """A purchase Google reports for (product, token); its token."""
        purchase_token = f"tok-{order}"
        self.play.records[(product, purchase_token)] = PlayPurchase(
            **(
                {
                    "order_id": order,
                    "purchase_token": purchase_token,
                    "product_id": product,
                    "purchase_state": 0,
                    "consumed": False,
                    "quantity": 1,
                    "account_id": token(user) if user else None,
                }
                | kw
            )  # type: ignore[arg-type]
        )
        return purchase_token

    def voided(self, order: str = "GPA.1", message: str = "m-1", bearer: str = "Bearer good") -> str:
        key = f"{bearer}-{message}"
        self.play.pushes[key] = PlayVoided(message, order, f"tok-{order}", 1, AT)
        return key

    def balance(self, user: str) -> int:
        return self.store.get_balance(user).balance

    def entries(self, user: str) -> list[tuple[LedgerType, int]]:
        return [(e.type, e.amount) for e in self.store.ledger(user)]


@pytest.fixture
def w() -> Iterator[World]:
    store = FakeStore()
    purchases = FakePurchaseStore(store)
    play = FakePlay()
    world = World(store, purchases, play, PurchaseService(purchases, FakeAppStore(), token, CATALOG, play, play))
    yield world
    audit = store.audit()
    assert audit.ok, audit.problems


# --- POST /v1/purchases with a Play token ----------------------------------------------------------


def test_a_play_purchase_is_granted_once_keyed_by_its_order_id_then_consumed(w: World) -> None:
    tok = w.bought()
    claimed = w.service.claim_google_play("alice", PRODUCT, tok)
    assert w.purchases.calls == ["get_purchase", "claim", "answered", "consumed"]  # the record read once
    p = claimed.purchase
    assert not claimed.replayed and claimed.balance == 100 == w.balance("alice")
    assert (p.store, p.transaction_id, p.product_id, p.credits, p.environment) == (
        "google_play", "GPA.1", PRODUCT, 100, "production"
    )  # fmt: skip
    assert w.play.consumes == [tok] and p.purchase_token == tok
    stored = w.purchases.get_purchase("google_play", "GPA.1")
    assert stored is not None and stored.consumed_at is not None
    assert w.entries("alice") == [(LedgerType.PURCHASE, 100)]


def test_a_license_testers_purchase_is_recorded_as_sandbox(w: World) -> None:
    claimed = w.service.claim_google_play("alice", PRODUCT, w.bought(test=True))
    assert claimed.purchase.environment == "sandbox"


def test_a_purchase_without_an_account_id_goes_to_the_first_claim(w: World) -> None:
    assert w.service.claim_google_play("bob", PRODUCT, w.bought(user=None)).purchase.user_id == "bob"


def test_the_replay_after_the_consume_answers_the_first_body_and_grants_nothing(w: World) -> None:
    tok = w.bought()
    first = w.service.claim_google_play("alice", PRODUCT, tok)
    w.store.grant("alice", 3, "later")
    again = w.service.claim_google_play("alice", PRODUCT, tok)  # Google now says consumed: the record answers
    assert again.replayed and again.purchase == replace(first.purchase, consumed_at=again.purchase.consumed_at)
    assert again.balance == 100 and w.balance("alice") == 103 and w.play.consumes == [tok]


def test_a_consume_that_fails_is_repaired_by_the_replay_without_a_second_grant(w: World) -> None:
    tok = w.bought()
    w.play.consume_fails = 1
    first = w.service.claim_google_play("alice", PRODUCT, tok)  # granted; the consume is left to do
    assert not first.replayed and w.play.consumes == [] and first.purchase.consumed_at is None
    again = w.service.claim_google_play("alice", PRODUCT, tok)
    assert again.replayed and w.play.consumes == [tok] and w.balance("alice") == 100
    stored = w.purchases.get_purchase("google_play", "GPA.1")
    assert stored is not None and stored.consumed_at is not None


def test_repair_consume_does_a_pending_consume_once(w: World) -> None:
    tok = w.bought()
    w.play.consume_fails = 1
    w.service.claim_google_play("alice", PRODUCT, tok)
    pending = w.purchases.get_purchase("google_play", "GPA.1")
    assert pending is not None
    assert w.service.repair_consume(pending) and w.play.consumes == [tok]
    done = w.purchases.get_purchase("google_play", "GPA.1")
    assert done is not None and w.service.repair_consume(done) and w.play.consumes == [tok]


def test_another_user_posting_the_same_token_is_409_and_nothing_changes(w: World) -> None:
    tok = w.bought(user=None)
    w.service.claim_google_play("alice", PRODUCT, tok)
    with pytest.raises(PurchaseAlreadyClaimed, match="another account"):
        w.service.claim_google_play("mallory", PRODUCT, tok)
    assert w.balance("mallory") == 0 and w.entries("mallory") == []


def test_a_purchase_with_another_users_account_id_is_409_before_any_write(w: World) -> None:
    tok = w.bought(user="alice")
    with pytest.raises(PurchaseAlreadyClaimed, match="another account's app_account_token"):
        w.service.claim_google_play("mallory", PRODUCT, tok)
    assert w.purchases.calls == [] and w.play.consumes == []


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"purchase_state": PLAY_PENDING}, PurchaseInvalid, "pending"),
        ({"purchase_state": PLAY_CANCELED}, PurchaseRevoked, "canceled"),
        ({"consumed": True}, PurchaseInvalid, "already consumed"),
        ({"quantity": 2}, PurchaseInvalid, "quantity"),
    ],
)
def test_a_purchase_not_in_a_creditable_state_changes_nothing(
    w: World, fields: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        w.service.claim_google_play("alice", PRODUCT, w.bought(**fields))
    assert w.balance("alice") == 0 and w.play.consumes == [] and w.purchases.calls == ["get_purchase"]


def test_a_product_that_is_not_a_play_pack_is_product_unknown(w: World) -> None:
    tok = w.bought(product="com.example.ios")
    with pytest.raises(ProductUnknown):
        w.service.claim_google_play("alice", "com.example.ios", tok)
    assert w.balance("alice") == 0


def test_a_token_google_does_not_know_for_that_product_changes_nothing(w: World) -> None:
    tok = w.bought(product=PRODUCT)
    with pytest.raises(PurchaseInvalid):
        w.service.claim_google_play("alice", "credits_500", tok)  # a token for a different product
    assert w.purchases.calls == [] and w.balance("alice") == 0


def test_google_unreachable_is_503_and_nothing_changes(w: World) -> None:
    tok = w.bought()

    def down(product_id: str, purchase_token: str) -> PlayPurchase:
        raise ServiceUnavailable("Google Play could not be reached")

    w.play.purchase = down  # type: ignore[method-assign]
    with pytest.raises(ServiceUnavailable):
        w.service.claim_google_play("alice", PRODUCT, tok)
    assert w.purchases.calls == []


def test_a_deployment_without_a_play_app_refuses_play_purchases_and_pushes() -> None:
    service = PurchaseService(FakePurchaseStore(FakeStore()), None, token, CATALOG)
    with pytest.raises(PurchaseInvalid, match="no Google Play purchases"):
        service.claim_google_play("alice", PRODUCT, "t")
    with pytest.raises(InvalidSignature, match="no Google Play app"):
        service.google_play_notification("Bearer x", b"{}")


def test_a_claim_losing_the_race_to_the_same_user_answers_the_winners_body(w: World) -> None:
    tok = w.bought()
    w.purchases.before("claim", lambda: w.service.claim_google_play("alice", PRODUCT, tok))
    again = w.service.claim_google_play("alice", PRODUCT, tok)
    assert again.replayed and w.balance("alice") == 100 and w.entries("alice") == [(LedgerType.PURCHASE, 100)]


# --- POST /webhooks/google-play ---------------------------------------------------------------------


def test_a_voided_purchase_is_clawed_back_once_and_a_redelivery_changes_nothing(w: World) -> None:
    w.service.claim_google_play("alice", PRODUCT, w.bought())
    push = w.voided()
    assert w.service.google_play_notification(push, b"{}") == "clawed_back"
    assert w.service.google_play_notification(push, b"{}") == "duplicate"
    assert w.service.google_play_notification(w.voided(message="m-2"), b"{}") == "already_revoked"
    assert w.balance("alice") == 0 and w.entries("alice") == [(LedgerType.PURCHASE, 100), (LedgerType.CLAWBACK, 100)]
    stored = w.purchases.get_purchase("google_play", "GPA.1")
    assert stored is not None and stored.status == "revoked" and stored.revoked_at == "2026-12-01T09:00:00.000Z"


def test_a_voided_order_never_claimed_is_recorded_and_a_later_claim_is_purchase_revoked(w: World) -> None:
    tok = w.bought()
    assert w.service.google_play_notification(w.voided(), b"{}") == "recorded_unclaimed"
    with pytest.raises(PurchaseRevoked):
        w.service.claim_google_play("alice", PRODUCT, tok)
    assert w.balance("alice") == 0 and w.play.consumes == []


def test_a_push_that_does_not_verify_is_401_and_nothing_changes(w: World) -> None:
    w.service.claim_google_play("alice", PRODUCT, w.bought())
    before = w.purchases.get_purchase("google_play", "GPA.1")
    with pytest.raises(InvalidSignature):
        w.service.google_play_notification("Bearer forged", b"{}")
    assert w.purchases.get_purchase("google_play", "GPA.1") == before and w.balance("alice") == 100


def test_a_verified_push_of_anything_but_a_voided_purchase_is_ignored(w: World) -> None:
    w.play.pushes["Bearer test"] = None
    assert w.service.google_play_notification("Bearer test", b"{}") == "ignored"
    assert w.purchases.calls == []


# --- the reconciler's consume repair ---------------------------------------------------------------

LATER = "2999-01-01T00:00:00.000Z"


def test_repair_consumes_consumes_what_a_failed_consume_left_owed_once_and_grants_nothing(w: World) -> None:
    tok = w.bought()
    w.play.consume_fails = 1
    w.service.claim_google_play("alice", PRODUCT, tok)
    assert w.service.repair_consumes(LATER, 10) == {"consumed": 1}
    assert w.play.consumes == [tok] and w.balance("alice") == 100
    assert w.service.repair_consumes(LATER, 10) == {}


def test_repair_consumes_leaves_a_purchase_newer_than_the_cutoff_and_retries_a_failure(w: World) -> None:
    tok = w.bought()
    w.play.consume_fails = 2
    claimed = w.service.claim_google_play("alice", PRODUCT, tok)
    assert w.service.repair_consumes(claimed.purchase.created_at, 10) == {}  # too new: a claim may be at it
    assert w.service.repair_consumes(LATER, 10) == {"consume_deferred": 1}
    assert w.service.repair_consumes(LATER, 10) == {"consumed": 1} and w.play.consumes == [tok]


def test_repair_consumes_owes_nothing_for_a_voided_purchase(w: World) -> None:
    w.play.consume_fails = 1
    w.service.claim_google_play("alice", PRODUCT, w.bought())
    w.service.google_play_notification(w.voided(), b"{}")
    assert w.service.repair_consumes(LATER, 10) == {"consume_not_owed": 1}
    assert w.play.consumes == [] and w.service.repair_consumes(LATER, 10) == {}


def test_repair_consumes_without_a_play_app_does_nothing() -> None:
    purchases = FakePurchaseStore(FakeStore())
    assert PurchaseService(purchases, None, token, CATALOG).repair_consumes(LATER, 10) == {}
    assert purchases.calls == []


# --- the reconciler's pass over the voided purchases list -----------------------------------------


def _listed(order: str, at: datetime = AT) -> PlayVoided:
    return PlayVoided(f"voided-list:{order}", order, f"tok-{order}", None, at)


def test_a_void_whose_push_never_came_is_clawed_back_by_the_list_once(w: World) -> None:
    w.service.claim_google_play("alice", PRODUCT, w.bought())
    w.play.voided_list = [_listed("GPA.1")]
    assert w.service.voided_pass(AT) == {"voided_clawed_back": 1}
    assert w.service.voided_pass(AT) == {}  # every run sees it again: applied once
    assert w.entries("alice") == [(LedgerType.PURCHASE, 100), (LedgerType.CLAWBACK, 100)] and w.balance("alice") == 0


def test_a_void_the_push_already_clawed_back_is_not_clawed_back_again_by_the_list(w: World) -> None:
    w.service.claim_google_play("alice", PRODUCT, w.bought())
    w.service.google_play_notification(w.voided(), b"{}")
    w.play.voided_list = [_listed("GPA.1")]
    assert w.service.voided_pass(AT) == {}
    assert w.entries("alice").count((LedgerType.CLAWBACK, 100)) == 1


def test_a_listed_void_of_an_order_never_claimed_is_recorded_so_its_claim_is_refused(w: World) -> None:
    tok = w.bought()
    w.play.voided_list = [_listed("GPA.1")]
    assert w.service.voided_pass(AT) == {"voided_recorded_unclaimed": 1}
    with pytest.raises(PurchaseRevoked):
        w.service.claim_google_play("alice", PRODUCT, tok)


def test_reconcile_runs_the_consume_repair_and_the_voided_pass(w: World) -> None:
    w.play.consume_fails = 1
    w.service.claim_google_play("alice", PRODUCT, w.bought())
    w.service.claim_google_play("bob", PRODUCT, w.bought("GPA.2", user="bob"))
    w.play.voided_list = [_listed("GPA.2", datetime.now(UTC))]
    assert w.service.reconcile(LATER, 10) == {"consumed": 1, "voided_clawed_back": 1}
    assert (w.balance("alice"), w.balance("bob")) == (100, 0)
