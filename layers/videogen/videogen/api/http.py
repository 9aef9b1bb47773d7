"""The API's HTTP conventions in one place.

* :func:`problem` renders RFC 9457 problem details.
* :func:`build_resolver` returns a Powertools ``APIGatewayHttpResolver`` with the
  ONE exception→status mapping registered: a :class:`DomainError` carries its own
  status and code; anything else is a 500 without internals.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Mapping
from functools import partial
from typing import Any, Protocol, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.shared.json_encoder import Encoder
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from videogen import contract, jsonbody
from videogen.domain.errors import (
    BadRequest,
    DomainError,
    PayloadTooLarge,
    RouteNotFound,
    Unauthorized,
    ValidationFailed,
)
from videogen.observability import count, logger

PROBLEM = "application/problem+json"
JSON = "application/json"
# Every 429, and a 503 service_unavailable, tells the app when to try again (docs/api.md).
# Seconds: the error's own ``retry_after_s`` (rate_limited computes it), else by problem code (a 429
# not listed: 1).
RETRY_AFTER_S = {"too_many_active_jobs": 30, "concurrent_update": 1, "service_unavailable": 1}
# An answer to an authenticated caller is private and changes fast (a polled job, a balance): no
# cache on the way (iOS's URL cache included) may keep it or answer a later request with it.
NO_STORE = {"Cache-Control": "no-store"}
# UTF-8 JSON as written: non-ASCII stays as is (an emoji is 4 bytes, not a 12-byte \u escape pair).
dumps = partial(json.dumps, separators=(",", ":"), ensure_ascii=False, cls=Encoder)


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
    retry = error.status == 429 or error.code in RETRY_AFTER_S
    seconds = error.retry_after_s if error.retry_after_s is not None else RETRY_AFTER_S.get(error.code, 1)
    headers = {"Retry-After": str(seconds)} if retry else {}
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
    return Response(status_code=status, content_type=JSON, body=dumps(body), headers=headers or {})


class Resolver(APIGatewayHttpResolver):
    """Powertools' resolver with its request state (event, Lambda context, route context) kept
    per thread. A Lambda container answers one event at a time, but the local stack runs the
    same handler on several threads at once, and Powertools keeps that state on the resolver
    and its class: two requests would read each other's event and route arguments. (The same
    reason for :meth:`_build_routes`.)"""

    _request = threading.local()

    @property  # type: ignore[override]  # narrowed to the HTTP API event, as Powertools does
    def current_event(self) -> APIGatewayProxyEventV2:
        return cast(APIGatewayProxyEventV2, self._request.event)

    @current_event.setter
    def current_event(self, value: APIGatewayProxyEventV2) -> None:
        self._request.event = value

    @property
    def lambda_context(self) -> LambdaContext:
        return cast(LambdaContext, self._request.lambda_context)

    @lambda_context.setter
    def lambda_context(self, value: LambdaContext) -> None:
        self._request.lambda_context = value

    @property
    def context(self) -> dict[str, Any]:
        if not hasattr(self._request, "context"):
            self._request.context = {}
        return cast(dict[str, Any], self._request.context)

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        self._request.context = value

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}$") -> re.Pattern[str]:
        """A path parameter is any run of characters but ``/``: an HTTP API hands the function the
        path percent-decoded, so ``/v1/devices/%C3%97`` arrives as ``/v1/devices/×``. Powertools
        matches parameters with URL-safe characters only and would answer that with a 404 for
        the route; the route's own parameter type then answers 400 naming what is wrong. (Its
        REST resolver overrides this method the same way.)"""
        return re.compile(base_regex.format(re.sub(r"(<\w+>)", r"(?P\1[^/]+)", rule)))

    _build_lock = threading.Lock()
    _built = False

    def _build_routes(self) -> None:
        """Powertools builds a route's middleware chain on its first call, unguarded: two threads
        calling a route for the first time at once would chain it twice. Build them all once."""
        with self._build_lock:
            if not self._built:
                for route in self._static_routes + self._dynamic_routes:
                    if not route._middleware_stack_built:
                        route._build_middleware_stack(router_middlewares=self._router_middlewares, app=self)
                self._built = True

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        if not self._built:
            self._build_routes()
        event = _as_json(event)
        self.current_event = cast(APIGatewayProxyEventV2, self._to_proxy_event(dict(event)))
        self.lambda_context = context
        too_large = _over_body_cap(self.current_event)
        if too_large is not None:  # every route, before routing: nothing read, nothing changed
            count(f"Problem_{too_large.code}")
            answer = self._response_builder_class(problem(too_large), serializer=self._serializer).build(
                self.current_event, self._cors
            )
        else:
            answer = super().resolve(event, context)
        if _claims(self.current_event):
            answer["headers"] = {**(answer.get("headers") or {}), **NO_STORE}
        return answer


def _as_json(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """Every body this API reads is JSON, whatever ``Content-Type`` says (``curl -d`` sends
    form-urlencoded, an app may send ``text/plain``): the routes whose body Powertools validates
    read it as JSON too, as POST /v1/videos always did, never as a form nor a 500."""
    if not event.get("body"):
        return event
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    return {**event, "headers": {**headers, "content-type": "application/json"}}


def _read_json(raw: str) -> Any:
    """How the routes with a body model read their body: by jsonbody's rules, as POST /v1/videos
    does (no NaN, a depth limit). Whatever it refuses (an integer past Python's 4300-digit bound
    too, a plain ValueError) is the JSON error Powertools answers with our 422 validation_failed."""
    try:
        return jsonbody.loads(raw)
    except json.JSONDecodeError:
        raise
    except ValueError as refused:
        raise json.JSONDecodeError(f"not JSON this API reads: {refused}", raw, 0) from None


def _over_body_cap(event: APIGatewayProxyEventV2) -> PayloadTooLarge | None:
    """The body cap of every route (``max_body_bytes``, 64 KiB): API Gateway lets up to 10 MB in."""
    from videogen import wiring  # settings are read on first use, never at import

    limit = wiring.settings().max_body_bytes
    size = len(_raw(event))  # the bytes as sent (a base64 body decoded)
    return PayloadTooLarge(f"The body is {size} bytes; the limit is {limit}") if size > limit else None


def build_resolver(*, validate: bool = False) -> APIGatewayHttpResolver:
    """``validate``: Powertools checks the routes' declared parameters (errors become our own
    400/422 problems) and serialises the contract models they return."""
    # a route returning what its contract model does not allow is our bug: 500, never a 4xx
    app = Resolver(
        serializer=dumps,
        json_body_deserializer=_read_json,
        enable_validation=validate,
        response_validation_error_http_code=500 if validate else None,
    )

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response:
        return _domain(_request_invalid(error))

    @app.exception_handler(UnicodeDecodeError)
    def _not_utf8(_: UnicodeDecodeError) -> Response:
        # a body Powertools decoded for a body model that is not UTF-8 (JSON's only encoding here)
        return _domain(ValidationFailed([{"loc": "body", "msg": "body is not valid JSON: not UTF-8"}]))

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


def _claims(event: APIGatewayProxyEventV2) -> dict[str, Any]:
    """The JWT claims API Gateway's authorizer validated; empty on a public route."""
    ctx = event.request_context
    return (ctx.authorizer.jwt_claim if ctx.authorizer else None) or {}


# A user id as the IdPs this stack supports issue it (docs/auth.md: a Cognito UUID, Auth0's
# ``auth0|…``, a Firebase uid, Apple's dotted id): it becomes part of DynamoDB keys, so nothing
# else (no ``#`` key separator, no space or control character, no unbounded length) gets in.
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:|@+=~-]{0,127}")


def caller(app: _HasEvent) -> str:
    """The user id: the JWT's ``sub`` as validated by the authorizer, and nothing else.

    API Gateway's JWT authorizer checks ``aud`` (or ``client_id`` when there is no ``aud``), so
    with Cognito both the ID token (``aud`` = the app client) and the access token (``client_id``
    = the app client) pass it; AWS: "there is no standard mechanism to differentiate JWT access
    tokens from other types of JWTs". Cognito names the kind in ``token_use``: when the claim is
    there it must be ``access``. IdPs without the claim (Firebase, Apple: docs/auth.md) are taken
    as the authorizer took them."""
    claims = _claims(app.current_event)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not USER_ID.fullmatch(sub):
        raise Unauthorized("No authenticated user")
    if "token_use" in claims and claims["token_use"] != "access":
        raise Unauthorized("Send the access token")
    return sub


def raw_body(app: _HasEvent) -> bytes:
    """The request body exactly as received (webhook signatures are over these bytes)."""
    return _raw(app.current_event)


def _raw(event: APIGatewayProxyEventV2) -> bytes:
    body = event.body
    if body is None:
        return b""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode()
