"""CORS (docs/api.md): the template's HttpApi CorsConfiguration, present only when origins are
given, and the local gateway answering browsers the way that configuration makes API Gateway do."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from devstack.gateway import Cors
from devstack.template import SamTemplate

HEADERS = ["Authorization", "Content-Type", "Idempotency-Key"]
EXPOSED = ["Location", "Idempotent-Replayed", "Retry-After"]
METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS"]


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


def _deployed_cors(origins: str) -> Any:
    """What CloudFormation would give API Gateway: the SAM transform, then the intrinsics resolved."""
    template = SamTemplate.load()
    data = copy.deepcopy(template.data)
    for resource in data["Resources"].values():
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key"
    out = transform(data, {"CorsAllowedOrigins": origins}, _NoManagedPolicies())
    (api,) = (r for r in out["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api")
    body = SamTemplate(out, template.path).resolve(api["Properties"]["Body"], {"CorsAllowedOrigins": origins})
    return body.get("x-amazon-apigateway-cors")


def test_template_has_cors_only_when_origins_are_given(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert _deployed_cors("") is None  # the default: no CORS configuration at all
    assert _deployed_cors("https://app.example.com,https://admin.example.com") == {
        "allowOrigins": ["https://app.example.com", "https://admin.example.com"],
        "allowHeaders": HEADERS,
        "allowMethods": METHODS,
        "exposeHeaders": EXPOSED,
        "maxAge": 600,
    }


def test_the_local_gateway_takes_its_lists_from_the_template():
    cors = Cors.from_template(SamTemplate.load(), ["http://127.0.0.1:3000"])
    assert (list(cors.allow_headers), list(cors.allow_methods), list(cors.expose_headers)) == (
        HEADERS,
        METHODS,
        EXPOSED,
    )
    assert cors.origins == {"http://127.0.0.1:3000"}


def _preflight(stack, origin: str, method: str = "POST", headers: str = "authorization,content-type,idempotency-key"):
    return stack.stack.server.api.handle(
        "OPTIONS",
        "/v1/videos",
        {"origin": origin, "access-control-request-method": method, "access-control-request-headers": headers},
        b"",
    )


@pytest.mark.parametrize("origin", ["http://localhost:5173", "http://127.0.0.1:8080", "http://localhost"])
def test_preflight_from_an_allowed_origin_is_answered_by_the_gateway(stack, origin):
    status, headers, body = _preflight(stack, origin)
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == origin
    assert headers["access-control-allow-methods"].split(",") == METHODS
    assert {h.lower() for h in headers["access-control-allow-headers"].split(",")} >= {
        "authorization",
        "idempotency-key",
    }


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("https://evil.example", "POST", "authorization"),
        ("http://localhost.evil.example", "GET", ""),
        ("https://localhost:3000", "GET", ""),  # not http: not the local console
        ("http://localhost:5173", "PATCH", ""),  # a method the configuration does not allow
        ("http://localhost:5173", "POST", "x-custom"),  # a header it does not allow
    ],
)
def test_refused_preflights_get_no_cors_headers(stack, origin, method, headers):
    status, out, _ = _preflight(stack, origin, method, headers)
    assert status == 204 and not [h for h in out if h.startswith("access-control-")]


def test_actual_answers_carry_the_origin_and_exposed_headers_for_allowed_origins_only(stack):
    token = stack.user(credits=10)
    reply = stack.request(
        "POST",
        "/v1/videos",
        token=token,
        headers={"origin": "http://localhost:5173", "idempotency-key": "cors-1"},
        body={"model": "minimax-video-01", "input": {"prompt": "a fox"}},
    )
    assert reply.status == 202 and reply.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert reply.headers["access-control-expose-headers"].split(",") == EXPOSED
    denied = stack.request("GET", "/v1/credits", headers={"origin": "https://evil.example"})  # the authorizer's 401
    assert denied.status == 401 and "access-control-allow-origin" not in denied.headers
    allowed_401 = stack.request("GET", "/v1/credits", headers={"origin": "http://127.0.0.1:3000"})
    assert allowed_401.status == 401 and allowed_401.headers["access-control-allow-origin"] == "http://127.0.0.1:3000"
