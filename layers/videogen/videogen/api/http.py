"""The API's HTTP conventions in one place.

* :func:`problem` renders RFC 9457 problem details.
* :func:`build_resolver` returns a Powertools ``APIGatewayHttpResolver`` with the
  ONE exception→status mapping registered: a :class:`DomainError` carries its own
  status and code; anything else is a 500 without internals.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from videogen import contract
from videogen.domain.errors import BadRequest, DomainError, RouteNotFound, Unauthorized, ValidationFailed
from videogen.observability import count, logger

PROBLEM = "application/problem+json"
JSON = "application/json"
# Every 429 tells the app when to try again (api.md). Seconds, by problem code.
RETRY_AFTER_S = {"too_many_active_jobs": 30, "concurrent_update": 1}


def problem(error: DomainError) -> Response:
    fields: dict[str, Any] = {
        "type": f"https://videogen.dev/problems/{error.code.replace('_', '-')}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    body = (
        contract.ValidationProblem(**fields, errors=error.errors)
        if isinstance(error, ValidationFailed)
        else contract.Problem(**fields)
    )
    headers = {"Retry-After": str(RETRY_AFTER_S.get(error.code, 1))} if error.status == 429 else {}
    return Response(status_code=error.status, content_type=PROBLEM, body=body.model_dump_json(), headers=headers)


def _request_invalid(error: RequestValidationError) -> DomainError:
    """Powertools' validation of the declared parameters, as our own problems: a bad query or
    path parameter is 400 bad_request, a bad body 422 validation_failed."""
    errors = [
        {"loc": ".".join(str(p) for p in e.get("loc", ())), "msg": str(e.get("msg", "invalid"))} for e in error.errors()
    ]
    if any(e["loc"].startswith("body") for e in errors):
        return ValidationFailed(errors)
    return BadRequest("; ".join(f"{e['loc'].split('.', 1)[-1]}: {e['msg']}" for e in errors))


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=JSON, body=json.dumps(body), headers=headers or {})


def build_resolver(*, validate: bool = False) -> APIGatewayHttpResolver:
    """``validate``: Powertools checks the routes' declared parameters (errors become our own
    400/422 problems) and serialises the contract models they return."""
    app = APIGatewayHttpResolver(enable_validation=validate)

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response:
        return _domain(_request_invalid(error))

    @app.exception_handler(DomainError)
    def _domain(error: DomainError) -> Response:
        if error.status >= 500:
            logger.error("request failed", extra={"code": error.code})
        count(f"Problem_{error.code}")
        return problem(error)

    @app.not_found
    def _not_found(_: NotFoundError) -> Response:
        return problem(RouteNotFound("No such route"))

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        count("UnhandledError")
        return problem(DomainError("The request could not be completed"))

    return app


class _HasEvent(Protocol):
    @property
    def current_event(self) -> APIGatewayProxyEventV2: ...


def caller(app: _HasEvent) -> str:
    """The user id: the JWT's ``sub`` as validated by the authorizer, and nothing else."""
    ctx = app.current_event.request_context
    claims = (ctx.authorizer.jwt_claim if ctx.authorizer else None) or {}
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("No authenticated user")
    return sub


def raw_body(app: _HasEvent) -> bytes:
    """The request body exactly as received (webhook signatures are over these bytes)."""
    body = app.current_event.body
    if body is None:
        return b""
    return base64.b64decode(body) if app.current_event.is_base64_encoded else body.encode()
