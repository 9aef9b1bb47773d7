"""Strict inputs through the local gateway into the real handlers on moto (issue 8): what the
published schema refuses is 422 and charges nothing, equivalent bodies are one idempotent body, a
malformed model is 422, user values are echoed as short prefixes, deep JSON is never a 500."""

from __future__ import annotations

import base64
import json

import pytest

PRO = {"prompt": "a fox", "start_image_url": "https://example.com/fox.png"}
VEO = {"prompt": "a fox", "image_url": "https://example.com/fox.png", "seed": 12}


def _problem(reply, status: int, code: str) -> dict:
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json
    assert body["code"] == code and body["status"] == status
    return body


@pytest.mark.parametrize(
    ("model", "payload", "loc"),
    [
        ("kling-2.6-pro-i2v", {**PRO, "generate_audio": "false"}, "input.generate_audio"),  # was 5 credits
        ("kling-2.6-pro-i2v", {**PRO, "generate_audio": 0}, "input.generate_audio"),
        ("kling-2.1-standard-i2v", {"prompt": "a", "image_url": PRO["start_image_url"], "cfg_scale": True}, None),
        ("kling-2.1-standard-i2v", {"prompt": "a", "image_url": PRO["start_image_url"], "duration": 5}, None),
        ("veo-3.1-i2v", {**VEO, "seed": "12"}, "input.seed"),
        ("sora-2-i2v", {"prompt": "a", "image_url": PRO["start_image_url"], "duration": "8"}, "input.duration"),
    ],
)
def test_a_value_the_schema_refuses_is_422_and_nothing_is_charged(stack, model, payload, loc):
    token = stack.user(credits=50)
    body = _problem(stack.submit(token, model=model, payload=payload), 422, "validation_failed")
    if loc:
        assert [e["loc"] for e in body["errors"]] == [loc]
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 50


def test_equivalent_bodies_replay_and_a_string_seed_is_another_body(stack):
    token = stack.user(credits=50)
    first = stack.submit(token, key="k", model="veo-3.1-i2v", payload=VEO)
    assert first.status == 202
    equivalent = (
        b'{ "input": {"seed": 12.0, "prompt": "  a fox ",\n "image_url": "https://example.com/fox.png",'
        b' "duration": "8s"},\r\n\t"model": "veo-3.1-i2v" }'
    )
    headers = {"idempotency-key": "k"}
    again = stack.request("POST", "/v1/videos", token=token, headers=headers, raw=equivalent)
    assert again.status == 202 and again.headers["idempotent-replayed"] == "true" and again.json == first.json
    string_seed = {"model": "veo-3.1-i2v", "input": {**VEO, "seed": "12"}}
    reused = stack.request("POST", "/v1/videos", token=token, headers=headers, body=string_seed)
    _problem(reused, 422, "idempotency_key_reused")
    charged = first.json["credits"]["charged"]
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 50 - charged


@pytest.mark.parametrize("model", [None, {"id": "minimax-video-01"}, ["minimax-video-01"], 7])
def test_a_malformed_model_is_422(stack, model):
    token = stack.user(credits=10)
    reply = stack.request(
        "POST", "/v1/videos", token=token, headers={"idempotency-key": "m"}, body={"model": model, "input": {}}
    )
    assert [e["loc"] for e in _problem(reply, 422, "validation_failed")["errors"]] == ["model"]


def test_a_long_unknown_model_or_job_id_is_echoed_as_a_short_prefix(stack):
    token = stack.user(credits=10)
    body = _problem(stack.submit(token, model="m" * 60_000), 404, "model_not_found")
    assert len(body["detail"]) < 150 and "…" in body["detail"]
    body = _problem(stack.request("GET", "/v1/videos/vid_" + "9" * 4000, token=token), 404, "job_not_found")
    assert len(body["detail"]) < 100
    unknown = {"model": "minimax-video-01", "input": {"prompt": "x", "k" * 30_000: 1}}
    reply = stack.request("POST", "/v1/videos", token=token, headers={"idempotency-key": "u"}, body=unknown)
    assert len(reply.body) < 1000 and _problem(reply, 422, "validation_failed")


@pytest.mark.parametrize(
    "raw",
    [b"[" * 5000, json.dumps({"model": "minimax-video-01", "input": {"prompt": "x"}}).encode()[:-2] + b"[" * 5000],
)
def test_deeply_nested_json_is_a_422_problem_never_a_500(stack, raw):
    token = stack.user(credits=10)
    reply = stack.request("POST", "/v1/videos", token=token, headers={"idempotency-key": "d"}, raw=raw)
    assert _problem(reply, 422, "validation_failed")["errors"][0]["loc"] == "body"
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 10


def test_a_body_on_a_route_that_reads_none_is_ignored_even_deeply_nested(stack):
    """Powertools parses a body only for a route declaring one; cancel declares none."""
    token = stack.user(credits=10)
    reply = stack.request("POST", "/v1/videos/vid_missing/cancel", token=token, raw=b"[" * 5000)
    _problem(reply, 404, "job_not_found")


@pytest.mark.parametrize("path", ["/v1/videos", "/v1/credits"])
def test_a_deeply_nested_cursor_is_400_invalid_cursor(stack, path):
    token = stack.user(credits=10)
    cursor = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
    _problem(stack.request("GET", f"{path}?cursor={cursor}", token=token), 400, "invalid_cursor")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/",
        "https://127.0.0.1/a.png",
        "https://10.0.0.1/a.png",
        "https://[::1]/a.png",
        "http://2130706433/a.png",
        "https://user:pass@example.com/a.png",
        "https://localhost/a.png",
    ],
)
def test_a_url_input_fal_must_not_fetch_is_422_naming_the_field_and_nothing_is_charged(stack, url):
    token = stack.user(credits=50)
    payload = {**PRO, "end_image_url": url}
    body = _problem(stack.submit(token, model="kling-2.6-pro-i2v", payload=payload), 422, "validation_failed")
    assert [e["loc"] for e in body["errors"]] == ["input.end_image_url"]
    assert url not in json.dumps(body)  # the refusal never echoes the URL (it may hold credentials)
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 50
    assert stack.request("GET", "/v1/videos", token=token).json["items"] == []


# The routes whose body Powertools validates (a body model): uploads and devices
_BODY_ROUTES = [
    ("POST", "/v1/uploads", {"content_type": "image/png", "size_bytes": 100}),
    ("PUT", "/v1/devices/phone-1", {"platform": "fcm", "token": "t" * 20}),
]


@pytest.mark.parametrize(("method", "path", "body"), _BODY_ROUTES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "x/made-up"])
def test_a_json_body_is_read_as_json_whatever_its_content_type(stack, method, path, body, content_type):
    token = stack.user(credits=10)
    raw = json.dumps(body).encode()
    reply = stack.request(method, path, token=token, headers={"content-type": content_type}, raw=raw)
    assert reply.status in (200, 201), reply.json


@pytest.mark.parametrize(("method", "path", "body"), _BODY_ROUTES)
@pytest.mark.parametrize("depth", [40, 1000, 5000])
def test_a_deeply_nested_body_on_a_body_model_route_is_a_422_problem_never_a_500(stack, method, path, body, depth):
    token = stack.user(credits=10)
    reply = stack.request(method, path, token=token, raw=b"[" * depth + b"]" * depth)
    _problem(reply, 422, "validation_failed")
    assert stack.request("GET", "/v1/devices", token=token).json["items"] == []


@pytest.mark.parametrize(("method", "path", "body"), _BODY_ROUTES)
@pytest.mark.parametrize("raw", [b'{"platform": "\xff\xfe"}', b"\xc3\x28", b"\xff" * 10])
def test_a_body_that_is_not_utf8_on_a_body_model_route_is_a_422_problem_never_a_500(stack, method, path, body, raw):
    token = stack.user(credits=10)
    reply = stack.request(method, path, token=token, raw=raw)
    _problem(reply, 422, "validation_failed")
    assert "UTF-8" in reply.json["errors"][0]["msg"]
    assert stack.request("GET", "/v1/devices", token=token).json["items"] == []


@pytest.mark.parametrize(
    ("method", "path"), [(m, p) for m, p, _ in _BODY_ROUTES] + [("POST", "/v1/purchases"), ("POST", "/v1/videos")]
)
@pytest.mark.parametrize(
    "raw",
    [
        b'{"size_bytes": ' + b"9" * 5000 + b"}",  # past Python's 4300-digit bound for int()
        b'{"size_bytes": NaN}',
        b'{"size_bytes": -Infinity}',
        b"[" * 40 + b"]" * 40,
        b'{"content_type": "image/png", "content_type": "video/mp4", "size_bytes": 10}',  # which one?
    ],
)
def test_every_body_route_reads_json_by_the_same_rules(stack, method, path, raw):
    """One JSON reader (videogen.jsonbody) for every route with a body: what POST /v1/videos refuses
    as 422 validation_failed, the body-model routes refuse the same way (was a 500 for a huge int)."""
    token = stack.user(credits=10)
    headers = {"idempotency-key": "k-json"} if path == "/v1/videos" else None
    reply = stack.request(method, path, token=token, raw=raw, headers=headers)
    _problem(reply, 422, "validation_failed")
    assert stack.request("GET", "/v1/devices", token=token).json["items"] == []
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 10
