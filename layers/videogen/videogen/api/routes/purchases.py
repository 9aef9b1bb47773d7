"""POST /v1/purchases (the PurchasesFunction): a store purchase, verified with the store's own
library or API, turned into credits once per store transaction (services/purchases.py). App Store
verification is offline (Apple's roots ship in the layer); Google Play's asks the Android Publisher
API with the service account's key (Secrets Manager)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from videogen import contract, wiring
from videogen.api.http import JSON, NO_STORE, caller
from videogen.api.openapi import CACHE_CONTROL, SECURED, problems
from videogen.domain import errors
from videogen.services.views import purchase_view

router = APIGatewayHttpRouter()

_REPLAYED = {
    **CACHE_CONTROL,
    "Idempotent-Replayed": {
        "description": "true on a 200: the stored answer of this user's earlier claim of the transaction",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


@router.post(
    "/v1/purchases",
    operation_id="createPurchase",
    summary="Turn an in-app purchase into credits",
    description="Verifies the purchase with the store (App Store: Apple's certificate chain, this app's bundle "
    "id; Google Play: the Android Publisher API's record for this app's package, purchased and not consumed), "
    "a consumable credit pack on sale, not revoked, the account token (appAccountToken / obfuscatedAccountId) "
    "the caller's or absent, and grants the pack's credits once per store transaction (App Store transaction "
    "id, Play order id): the same user again answers 200 with the same body. A Play purchase is then consumed "
    "at Google.",
    tags=["purchases"],
    security=SECURED,
    responses={
        201: {
            "description": "credited: the purchase and the credits granted",
            "content": {"application/json": {"model": contract.PurchaseCreated}},
            "headers": CACHE_CONTROL,  # type: ignore[typeddict-item]
        },
        200: {
            "description": "this user claimed the transaction before: the same body, nothing granted again",
            "content": {"application/json": {"model": contract.PurchaseCreated}},
            "headers": _REPLAYED,  # type: ignore[typeddict-item]
        },
        **problems(
            errors.PurchaseAlreadyClaimed,
            errors.PurchaseInvalid,
            errors.PurchaseRevoked,
            errors.ProductUnknown,
            errors.ValidationFailed,
            errors.ServiceUnavailable,
            errors.StoreBusy,
        ),
    },
)
def create_purchase(body: Annotated[contract.PurchaseRequest, Body()]) -> Response[contract.PurchaseCreated]:
    service = wiring.purchases()
    if isinstance(body, contract.GooglePlayPurchaseRequest):
        claimed = service.claim_google_play(caller(router), body.product_id, body.purchase_token)
    else:
        claimed = service.claim_app_store(caller(router), body.signed_transaction)
    answer = contract.PurchaseCreated(
        purchase=purchase_view(claimed.purchase),
        credits=contract.GrantedCredits(granted=claimed.purchase.credits, balance=claimed.balance),
    )
    headers = dict(NO_STORE)
    if claimed.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(status_code=200 if claimed.replayed else 201, content_type=JSON, body=answer, headers=headers)
