"""The read API and cancel (the ApiFunction): GET /v1/videos[/{id}], POST /v1/videos/{id}/cancel,
GET /v1/credits, GET /v1/purchases, GET /v1/models, GET /v1/products, GET /openapi.json. DynamoDB, S3 presigning and
the account-token secret only."""

from __future__ import annotations

import re
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from videogen import contract, wiring
from videogen.api.http import caller
from videogen.api.openapi import PUBLIC, SECURED, ok, problems
from videogen.domain import errors
from videogen.domain.models import JobStatus
from videogen.observability import logger
from videogen.services import queries
from videogen.services.views import job_view

router = APIGatewayHttpRouter()

JobId = Annotated[str, Path(description="The job's id")]
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def _decimal_limit() -> None:
    """The query's ``limit`` as the contract's schema writes an integer: decimal digits only
    (pydantic alone also takes "05", "+5" and " 5"). Checked on the raw parameter: a validator on
    the annotated type would drop its bounds from the published schema."""
    raw = (router.current_event.query_string_parameters or {}).get("limit")
    if raw is not None and not _DECIMAL.fullmatch(raw):
        raise errors.BadRequest("limit: expected a whole number in decimal digits")


Limit = Annotated[int, Query(ge=1, le=100, description="Page size")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
_PAGE = (errors.BadRequest, errors.InvalidCursor)


@router.get(
    "/v1/videos/<id>",
    operation_id="getVideo",
    summary="One job",
    tags=["videos"],
    security=SECURED,
    responses={**ok(contract.Job, "the job"), **problems(errors.JobNotFound)},
)
def get_video(id: JobId) -> contract.Job:
    logger.set_correlation_id(id)
    s = wiring.settings()
    return queries.get_job(wiring.store(), wiring.videos(), caller(router), id, s.video_url_ttl_s)


@router.get(
    "/v1/videos",
    operation_id="listVideos",
    summary="The caller's jobs, newest first",
    tags=["videos"],
    security=SECURED,
    responses={**ok(contract.JobPage, "a page of jobs"), **problems(*_PAGE)},
)
def list_videos(
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> contract.JobPage:
    _decimal_limit()
    s = wiring.settings()
    return queries.list_jobs(wiring.store(), wiring.videos(), caller(router), status, limit, cursor, s.video_url_ttl_s)


@router.post(
    "/v1/videos/<id>/cancel",
    operation_id="cancelVideo",
    summary="Cancel a job that has not started generating",
    description="200 with status canceled and the credits refunded; cancelling a canceled job is 200 again.",
    tags=["videos"],
    security=SECURED,
    responses={
        **ok(contract.Job, "the canceled job"),
        **problems(
            errors.JobNotFound,
            errors.NotCancelable,
            errors.ServiceUnavailable,
            errors.StoreBusy,
        ),
    },
)
def cancel_video(id: JobId) -> contract.Job:
    logger.set_correlation_id(id)
    job = queries.owned_job(wiring.store(), caller(router), id)
    done = wiring.cancel_job().run(job)
    return job_view(done, wiring.videos(), wiring.settings().video_url_ttl_s)


@router.get(
    "/v1/credits",
    operation_id="getCredits",
    summary="Balance and ledger, newest first",
    tags=["credits"],
    security=SECURED,
    responses={
        **ok(contract.CreditsPage, "balance and a page of the ledger"),
        **problems(*_PAGE, errors.ConcurrentUpdate),
    },
)
def get_credits(limit: Limit = 20, cursor: Cursor = None) -> contract.CreditsPage:
    _decimal_limit()
    user_id = caller(router)
    return queries.credits(wiring.store(), user_id, limit, cursor, wiring.account_token(user_id))


@router.get(
    "/v1/purchases",
    operation_id="listPurchases",
    summary="The caller's store purchases, newest first",
    description="Every purchase credited to the caller, also the revoked ones (refunded by the store: "
    "their credits were taken back by a clawback entry of the ledger).",
    tags=["purchases"],
    security=SECURED,
    responses={**ok(contract.PurchasePage, "a page of purchases"), **problems(*_PAGE)},
)
def list_purchases(limit: Limit = 20, cursor: Cursor = None) -> contract.PurchasePage:
    _decimal_limit()
    return queries.purchases(wiring.purchase_store(), caller(router), limit, cursor)


@router.get(
    "/v1/models",
    operation_id="listModels",
    summary="Models on sale with their prices and input schemas",
    tags=["models"],
    openapi_extensions=PUBLIC,
    responses={**ok(contract.ModelList, "the models on sale", private=False), **problems(authorized=False)},
)
def list_models() -> contract.ModelList:
    return queries.models(wiring.registry())


@router.get(
    "/v1/products",
    operation_id="listProducts",
    summary="The credit packs on sale, with each store's product id",
    tags=["purchases"],
    openapi_extensions=PUBLIC,
    responses={**ok(contract.ProductList, "the credit packs on sale", private=False), **problems(authorized=False)},
)
def list_products() -> contract.ProductList:
    return queries.products(wiring.catalog())


@router.get(
    "/openapi.json",
    operation_id="getOpenApi",
    summary="This document (OpenAPI 3.1)",
    tags=["meta"],
    openapi_extensions=PUBLIC,
    responses={
        200: {"description": "the OpenAPI document", "content": {"application/json": {"schema": {"type": "object"}}}},
        **problems(authorized=False),
    },
)
def get_openapi() -> dict[str, Any]:
    from videogen.api.openapi import openapi_document

    return openapi_document()
