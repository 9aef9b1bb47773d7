"""The API's HTTP conventions in one place.

* :func:`problem` renders RFC 9457 problem details.
* :func:`build_resolver` returns a Powertools ``APIGatewayHttpResolver`` with the
  ONE exception→status mapping registered: a :class:`DomainError` carries its own
  status and code; anything else is a 500 without internals.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from videogen.domain.errors import DomainError, RouteNotFound, Unauthorized, ValidationFailed
from videogen.observability import count, logger

PROBLEM = "application/problem+json"
JSON = "application/json"


def problem(error: DomainError) -> Response:
    body: dict[str, Any] = {
        "type": f"https://videogen.dev/problems/{error.code.replace('_', '-')}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    if isinstance(error, ValidationFailed):
        body["errors"] = error.errors
    return Response(status_code=error.status, content_type=PROBLEM, body=json.dumps(body))


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=JSON, body=json.dumps(body), headers=headers or {})


def build_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()

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


def caller(app: APIGatewayHttpResolver) -> str:
    """The user id: the JWT's ``sub`` as validated by the authorizer, and nothing else."""
    ctx = app.current_event.request_context
    claims = (ctx.authorizer.jwt_claim if ctx.authorizer else None) or {}
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("No authenticated user")
    return sub


def raw_body(app: APIGatewayHttpResolver) -> bytes:
    """The request body exactly as received (webhook signatures are over these bytes)."""
    body = app.current_event.body
    if body is None:
        return b""
    return base64.b64decode(body) if app.current_event.is_base64_encoded else body.encode()
