"""The ONE exception→HTTP mapping (api/http.py reading domain/errors.py), pinned by a literal table.

Every DomainError class answers its own status and code; anything else is a 500 whose body never
carries the exception's text; the caller is the JWT's ``sub`` and nothing else (no sub → 401).
The table below is written out by hand on purpose: a class changing its status or code, or a new
class, fails here until the table (and docs/api.md) say so too.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from videogen.api.http import build_resolver, caller
from videogen.domain import errors
from videogen.domain.errors import DomainError, error_classes

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "api_credits.json").read_text())

# class name → (HTTP status, problem code). Literal: not derived from the classes under test.
ERROR_TABLE: dict[str, tuple[int, str]] = {
    "DomainError": (500, "internal_error"),
    "IdempotencyKeyMissing": (400, "idempotency_key_missing"),
    "IdempotencyKeyInvalid": (400, "idempotency_key_invalid"),
    "InvalidCursor": (400, "invalid_cursor"),
    "BadRequest": (400, "bad_request"),
    "Unauthorized": (401, "unauthorized"),
    "InvalidSignature": (401, "invalid_signature"),
    "InsufficientCredits": (402, "insufficient_credits"),
    "JobNotFound": (404, "job_not_found"),
    "ModelNotFound": (404, "model_not_found"),
    "RouteNotFound": (404, "not_found"),
    "IdempotencyKeyInUse": (409, "idempotency_key_in_use"),
    "NotCancelable": (409, "not_cancelable"),
    "GrantConflict": (409, "grant_conflict"),
    "DeviceNotFound": (404, "device_not_found"),
    "TooManyDevices": (409, "too_many_devices"),
    "PayloadTooLarge": (413, "payload_too_large"),
    "ValidationFailed": (422, "validation_failed"),
    "IdempotencyKeyReused": (422, "idempotency_key_reused"),
    "TooManyActiveJobs": (429, "too_many_active_jobs"),
    "RateLimited": (429, "rate_limited"),
    "ConcurrentUpdate": (429, "concurrent_update"),
    "ServiceUnavailable": (503, "service_unavailable"),
    "StoreBusy": (503, "service_unavailable"),
    "PurchaseInvalid": (422, "purchase_invalid"),
    "PurchaseRevoked": (422, "purchase_revoked"),
    "ProductUnknown": (422, "product_unknown"),
    "PurchaseAlreadyClaimed": (409, "purchase_already_claimed"),
    "UploadNotReady": (409, "upload_not_ready"),
    "UploadNotFound": (422, "upload_not_found"),
    "UnknownUpload": (404, "upload_not_found"),
    "UploadRejected": (422, "upload_rejected"),
}
# docs/api.md: every 429 and 503 says when to come back
RETRY_AFTER = {"too_many_active_jobs": "30", "rate_limited": "7", "concurrent_update": "1", "service_unavailable": "1"}


def _instance(name: str) -> DomainError:
    cls = getattr(errors, name)
    if name == "ValidationFailed":
        return cls([{"loc": "input.prompt", "msg": "field required"}])  # type: ignore[no-any-return]
    if name == "RateLimited":
        return cls(f"detail of {name}", retry_after_s=7)  # type: ignore[no-any-return]
    return cls(f"detail of {name}")  # type: ignore[no-any-return]


def _app(raise_: BaseException | None = None) -> Any:
    app = build_resolver()

    @app.get("/boom")
    def boom() -> dict[str, Any]:
        assert raise_ is not None
        raise raise_

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"user": caller(app)}

    return app


def _event(path: str, claims: dict[str, Any] | None = None) -> dict[str, Any]:
    event = copy.deepcopy(EVENT)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["routeKey"] = event["requestContext"]["routeKey"] = f"GET {path}"
    if claims is None:
        event["requestContext"].pop("authorizer")
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"] = claims
    return event


def _call(app: Any, event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    answer = app.resolve(event, None)
    return answer["statusCode"], answer["headers"], json.loads(answer["body"])


def test_every_error_class_is_in_the_literal_table_with_its_status_and_code() -> None:
    assert {cls.__name__: (cls.status, cls.code) for cls in error_classes()} == ERROR_TABLE


@pytest.mark.parametrize("name", sorted(ERROR_TABLE))
def test_a_domain_error_raised_by_a_route_answers_its_status_and_code_as_a_problem(name: str) -> None:
    status, code = ERROR_TABLE[name]
    error = _instance(name)
    got_status, headers, body = _call(_app(error), _event("/boom", {"sub": "user-1"}))
    assert got_status == status == body["status"]
    assert body["code"] == code
    assert body["type"] == f"https://videogen.dev/problems/{code.replace('_', '-')}"
    assert body["detail"] == error.detail
    assert headers["Content-Type"] == "application/problem+json"
    assert headers.get("Retry-After") == RETRY_AFTER.get(code)  # a 429 or 503 only, with its own delay
    if name == "ValidationFailed":
        assert body["errors"] == [{"loc": "input.prompt", "msg": "field required"}]


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("boom: secret-text-4f2a /var/task/app.py"),
        KeyError("secret-text-4f2a"),
        ValueError("secret-text-4f2a"),
        errors.TransitionRejected("secret-text-4f2a"),  # a domain outcome that must never reach the API
        errors.FalTransientError("secret-text-4f2a", status=503),
        errors.MediaTransferError("secret-text-4f2a"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_unhandled_error_is_a_500_whose_body_never_carries_its_text(error: Exception) -> None:
    status, headers, body = _call(_app(error), _event("/boom", {"sub": "user-1"}))
    assert status == 500
    assert body == {
        "type": "https://videogen.dev/problems/internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "The request could not be completed",
        "code": "internal_error",
    }
    assert headers["Content-Type"] == "application/problem+json" and "Retry-After" not in headers


def test_an_unknown_route_is_the_not_found_problem() -> None:
    status, _, body = _call(_app(), _event("/nowhere", {"sub": "user-1"}))
    assert (status, body["code"]) == (404, "not_found")


def test_the_caller_is_the_tokens_sub() -> None:
    status, headers, body = _call(_app(), _event("/me", {"sub": "user-123", "iss": "x"}))
    assert (status, body) == (200, {"user": "user-123"})
    assert headers["Cache-Control"] == "no-store"  # an authenticated answer is never cached


@pytest.mark.parametrize(
    "claims",
    [{"iss": "x", "aud": "y"}, {"sub": ""}, {"sub": None}, {"sub": 123}, {"sub": ["user-1"]}, {}],
    ids=["no-sub", "empty", "null", "number", "list", "no-claims"],
)
def test_a_token_without_a_usable_sub_is_401_never_a_user(claims: dict[str, Any]) -> None:
    status, _, body = _call(_app(), _event("/me", claims))
    assert (status, body["code"]) == (401, "unauthorized")
    assert "user" not in body


@pytest.mark.parametrize(
    "sub",
    [
        "u" * 129,  # over the bound
        "user#1",  # the key separator of the table
        "USER#u1#LEDGER",
        "user 1",
        " user-1",
        "user-1\n",
        "user\x00",
        "-leading-dash",
        "../etc",
        "üser",
    ],
)
def test_a_sub_that_is_not_a_sane_id_is_401(sub: str) -> None:
    status, _, body = _call(_app(), _event("/me", {"sub": sub}))
    assert (status, body["code"]) == (401, "unauthorized") and "user" not in body


@pytest.mark.parametrize(
    "sub",
    [
        "0f8fad5b-d9cb-469f-a165-70867728950e",  # Cognito
        "auth0|5f7c8ec7c33c6c004bbafe82",  # Auth0
        "google-oauth2|104123456789012345678",
        "XjcW3Kq8ZUa2bT1dN0cPl9sEr4Y2",  # Firebase
        "001234.0a1b2c3d4e5f60718293a4b5c6d7e8f9.1234",  # Apple
        "u" * 128,
    ],
)
def test_the_subs_of_the_supported_idps_are_users(sub: str) -> None:
    assert _call(_app(), _event("/me", {"sub": sub}))[2] == {"user": sub}


@pytest.mark.parametrize(("token_use", "status"), [("access", 200), ("id", 401), ("refresh", 401), ("", 401)])
def test_a_cognito_token_is_a_caller_only_as_an_access_token(token_use: str, status: int) -> None:
    """API Gateway's authorizer takes a Cognito ID token too (its ``aud`` is the app client id)."""
    claims = {"sub": "0f8fad5b-d9cb-469f-a165-70867728950e", "token_use": token_use, "aud": "client"}
    got, _, body = _call(_app(), _event("/me", claims))
    assert got == status and (body.get("code") == "unauthorized") is (status == 401)


def test_a_token_without_token_use_is_taken_as_the_authorizer_took_it() -> None:
    """Firebase and Apple tokens carry no ``token_use``; the authorizer's aud check stands."""
    assert _call(_app(), _event("/me", {"sub": "XjcW3Kq8ZUa2bT1dN0cPl9sEr4Y2", "aud": "project"}))[0] == 200


def test_a_request_without_an_authorizer_is_401() -> None:
    status, headers, body = _call(_app(), _event("/me", None))
    assert (status, body["code"]) == (401, "unauthorized")
    assert "Cache-Control" not in headers  # a public answer: no claims, no private header


# --- the body cap, for every route of every resolver (videogen.api.http.Resolver) -------------------


@pytest.mark.parametrize("base64_body", [False, True])
def test_a_body_over_the_cap_is_413_before_any_route_runs_and_one_at_the_cap_is_served(base64_body: bool) -> None:
    import base64

    from videogen import wiring

    limit = wiring.settings().max_body_bytes
    called: list[str] = []
    app = build_resolver()

    @app.get("/me")
    def me() -> dict[str, Any]:
        called.append("me")
        return {"user": caller(app)}

    def with_body(size: int) -> dict[str, Any]:
        event = _event("/me", {"sub": "user-1"})
        raw = b"x" * size
        event["body"] = base64.b64encode(raw).decode() if base64_body else raw.decode()
        event["isBase64Encoded"] = base64_body
        return event

    status, headers, body = _call(app, with_body(limit + 1))
    assert status == 413 and body["code"] == "payload_too_large" and called == []
    assert body["detail"] == f"The body is {limit + 1} bytes; the limit is {limit}"
    assert headers["Content-Type"] == "application/problem+json" and headers["Cache-Control"] == "no-store"
    assert _call(app, with_body(limit))[0] == 200 and called == ["me"]


def test_rate_limited_carries_its_own_retry_after() -> None:
    from videogen.domain.errors import RateLimited

    status, headers, body = _call(_app(RateLimited("slow down", retry_after_s=42)), _event("/boom", {"sub": "u"}))
    assert (status, body["code"], headers["Retry-After"]) == (429, "rate_limited", "42")
