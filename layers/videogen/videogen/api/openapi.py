"""GET /openapi.json, generated: Powertools builds the OpenAPI 3.1 document from the routes
(:mod:`videogen.api.routes`) and the contract's models (:mod:`videogen.contract`).

This module only holds what the routes declare about their answers — which problem codes
each status carries, API Gateway's own 401, the links a stateful client follows — and the
build of the one document from every router. No schema is written here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, License
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from videogen import contract
from videogen.api.http import JSON, PROBLEM, Resolver
from videogen.domain.errors import DomainError, PayloadTooLarge, ValidationFailed

TITLE, VERSION = "videogen", "1.0.0"
DESCRIPTION = "Turn a prompt and an image into an AI video, paid for in credits."
# The repository grants no licence: all rights reserved (SPDX LicenseRef for "no open licence").
LICENSE = License(name="Proprietary", identifier="LicenseRef-Proprietary")
SECURED: list[dict[str, list[str]]] = [{"jwt": []}]
PUBLIC: dict[str, Any] = {"security": []}  # openapi_extensions of a route without auth: says so explicitly
CODES = "x-problem-codes"  # on a problem response: the codes that status can carry
CACHE_CONTROL = {
    "Cache-Control": {
        "description": "no-store: an answer to an authenticated caller is private; no cache keeps it",
        "schema": {"type": "string", "enum": ["no-store"]},
    }
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}


def ok(model: type, description: str, *, private: bool = True, **extra: Any) -> dict[int, OpenAPIResponse]:
    """A 200 of ``model``; ``private`` (an authorized route): with Cache-Control: no-store."""
    headers = {"headers": CACHE_CONTROL} if private else {}
    return {200: {"description": description, "content": {JSON: {"model": model}}, **headers, **extra}}  # type: ignore[typeddict-item]


def problems(*errors: type[DomainError], authorized: bool = True) -> dict[int, OpenAPIResponse]:
    """The error answers of a route: its domain errors by status, 500 (and 503 if listed), our
    413 (the body cap, every route: videogen.api.http.Resolver), API Gateway's own 413 (a request
    over its 10 MB limit, every route) and 429 (throttling, every route) and, on an authorized
    route, its 401."""
    by_status: dict[int, list[type[DomainError]]] = {413: [PayloadTooLarge], 429: []}  # the body cap: every route
    error: type[DomainError]
    for error in (*errors, DomainError):  # every route may answer 500
        by_status.setdefault(error.status, []).append(error)
    out: dict[int, OpenAPIResponse] = {}
    for status, group in sorted(by_status.items()):
        codes = sorted({e.code for e in group})
        content: dict[str, Any] = {}
        description = f"problem details; code: {', '.join(codes)}"
        if group:
            validation = any(issubclass(e, ValidationFailed) for e in group)
            model: Any = contract.ValidationProblem if validation else contract.Problem
            if validation and len(group) > 1:
                model = contract.ValidationProblem | contract.Problem
            content[PROBLEM] = {"model": model}
        response: dict[str, Any] = {"description": description, "content": content}
        if codes:
            response[CODES] = codes
        if status == 413:
            content[JSON] = {"model": contract.GatewayMessage}
            response["description"] = (f"{description}; or " if codes else "") + (
                "API Gateway's own answer to a request over 10 MB (application/json, its own body)"
            )
        if status == 503 and codes:  # a problem the app retries after Retry-After (api/http.py)
            response["headers"] = RETRY_AFTER
            response["description"] = f"{description}, with Retry-After"
        if status == 429:
            content[JSON] = {"model": contract.GatewayMessage}
            response["headers"] = RETRY_AFTER
            response["description"] = (
                f"{description}, with Retry-After; or " if codes else ""
            ) + "API Gateway's own throttling (application/json, its own body)"
        out[status] = response  # type: ignore[assignment]
    if authorized:
        out[401] = {
            "description": "no or bad token: API Gateway's JWT authorizer answers, with its own body",
            "content": {JSON: {"model": contract.GatewayMessage}},
        }
    return out


def job_links() -> dict[str, Any]:
    """From a 202 of POST /v1/videos to the job's own routes (OpenAPI links)."""
    job_id = {"id": "$response.body#/job/id"}
    return {
        "getVideo": {"operationId": "getVideo", "parameters": job_id, "description": "The job just created"},
        "cancelVideo": {"operationId": "cancelVideo", "parameters": job_id, "description": "Cancel it"},
    }


def _resolver(routers: Iterable[Any]) -> APIGatewayHttpResolver:
    """A resolver holding every public route, used only to build the document. Including a router
    re-points its request state at the resolver, so that is put back for the live handlers (and
    the per-thread state of :class:`Resolver` is shared, so a request meanwhile reads its own)."""
    doc = Resolver()
    for router in routers:
        live = router.api_resolver
        doc.include_router(router)
        router.api_resolver = live
    return doc


def _referenced(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop component schemas nothing refers to (Powertools always adds its own validation ones)."""
    schemas = doc.get("components", {}).get("schemas", {})
    keep: set[str] = set()
    frontier = [json.dumps(doc["paths"])]
    while frontier:
        blob = frontier.pop()
        for name, schema in schemas.items():
            if name not in keep and f'"#/components/schemas/{name}"' in blob:
                keep.add(name)
                frontier.append(json.dumps(schema))
    doc["components"]["schemas"] = {k: v for k, v in schemas.items() if k in keep}
    return doc


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    from videogen.api.routes import ROUTERS

    raw = _resolver(ROUTERS).get_openapi_json_schema(
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        license_info=LICENSE,
        security_schemes={"jwt": HTTPBearer(bearerFormat="JWT")},
    )
    doc: dict[str, Any] = json.loads(raw)
    for item in doc["paths"].values():
        for operation in item.values():
            if "requestBody" in operation:  # the body is declared for the document only (see routes)
                operation["requestBody"]["required"] = True
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header":  # Powertools lowercases header names; its title keeps the case
                    parameter["name"] = parameter["schema"].get("title", parameter["name"])
            if "204" in operation.get("responses", {}):  # no content (Powertools reads Response[None] as JSON null)
                operation["responses"]["204"].pop("content", None)
    return _referenced(doc)
