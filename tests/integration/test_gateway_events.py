"""The payload format 2.0 event the local gateway hands a function, for bodies API Gateway treats
specially: a body that is not UTF-8 text arrives base64-encoded with ``isBase64Encoded``."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from devstack.auth import LocalAuthority
from devstack.gateway import LocalApi
from devstack.template import Route


def _event(body: bytes, content_type: str) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []
    api = LocalApi(
        [Route("POST", "/echo", "EchoFunction", authorized=False)],
        lambda _fn, event: seen.append(event) or {"statusCode": 204},
        LocalAuthority(),
    )
    status, _, _ = api.handle("POST", "/echo?x=1", {"content-type": content_type}, body)
    assert status == 204
    (event,) = seen
    return event


@pytest.mark.parametrize(
    "body",
    [
        '{"prompt": "héron"}'.encode("utf-16"),  # a BOM and NULs: not UTF-8
        '{"prompt": "héron"}'.encode("latin-1"),
        b"\xff\xfe\x00",
    ],
)
def test_a_body_that_is_not_utf8_arrives_base64_encoded(body: bytes) -> None:
    event = _event(body, "application/json")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_utf8_text_arrives_as_text() -> None:
    event = _event('{"prompt": "héron"}'.encode(), "application/json; charset=utf-8")
    assert (event["isBase64Encoded"], event["body"]) == (False, '{"prompt": "héron"}')


def test_a_binary_type_arrives_base64_encoded_even_when_it_decodes() -> None:
    event = _event(b"plain bytes", "application/octet-stream")
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"plain bytes"


def test_a_refused_token_is_a_401_naming_its_reason_in_www_authenticate() -> None:
    authority = LocalAuthority()
    api = LocalApi(
        [Route("GET", "/private", "Fn", authorized=True)], lambda _fn, _event: {"statusCode": 200}, authority
    )
    expired = authority.issue("alice", ttl_s=-60)
    status, headers, body = api.handle("GET", "/private", {"authorization": f"Bearer {expired}"}, b"")
    assert (status, json.loads(body)) == (401, {"message": "Unauthorized"})
    assert (
        headers["www-authenticate"] == 'Bearer scope="" error="invalid_token" error_description="the token has expired"'
    )
    status, headers, _ = api.handle("GET", "/private", {}, b"")
    assert (status, headers["www-authenticate"]) == (401, "Bearer")


def test_the_path_arrives_percent_decoded_as_http_apis_deliver_it() -> None:
    """An HTTP API decodes the path before the function sees it (``rawPath`` and the path
    parameters): a device id ``:a+b@c=`` sent as ``%3Aa%2Bb%40c%3D`` is that id, not its escape."""
    seen: list[dict[str, Any]] = []
    api = LocalApi(
        [Route("DELETE", "/v1/devices/{device_id}", "DevicesFunction", authorized=False)],
        lambda _fn, event: seen.append(event) or {"statusCode": 204},
        LocalAuthority(),
    )
    status, _, _ = api.handle("DELETE", "/v1/devices/%3Aa%2Bb%40c%3D?x=%3A", {}, b"")
    assert status == 204
    (event,) = seen
    assert event["rawPath"] == "/v1/devices/:a+b@c="
    assert event["pathParameters"] == {"device_id": ":a+b@c="}
    assert event["rawQueryString"] == "x=%3A"  # the query string stays raw; its parameters are decoded
    assert event["queryStringParameters"] == {"x": ":"}
