"""Every answer of every route conforms to GET /openapi.json.

Real requests go through the in-process stack (gateway → real handlers → moto, state machine
running, fal simulator) and each reply is checked against the document the stack itself serves:
the status is documented for the operation, the media type is the documented one, the body
validates with unknown properties forbidden everywhere, a problem's code is one the document
lists for that status, and every 429 carries Retry-After. A view that emits a field the
document lacks, or a status or code the document does not list, fails here.
"""

from __future__ import annotations

import copy
import re
import time
import uuid
from typing import Any

from jsonschema import Draft202012Validator

from devstack.stores.local_store import LOCAL_PRODUCTS

PROBLEM = "application/problem+json"
CODES = "x-problem-codes"

ALICE_ID = "contract-alice"
PACK_PRODUCT = str(LOCAL_PRODUCTS[0]["app_store_product_id"])


def _strict(node: Any) -> Any:
    """Forbid unknown properties in every object schema that names its properties."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


class Conformance:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.components = _strict(copy.deepcopy(doc["components"]))
        self.templates = [(re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", p) + "$"), p) for p in doc["paths"]]
        self.seen: set[tuple[str, int]] = set()

    def operation(self, method: str, path: str) -> dict[str, Any]:
        bare = path.split("?", 1)[0]
        matches = [t for rx, t in self.templates if rx.match(bare)]
        assert matches, f"{path} is not in the document"
        template = min(matches, key=lambda t: t.count("{"))  # a literal segment beats a parameter
        operation = self.doc["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the document"
        return dict(operation)

    def check(self, method: str, path: str, reply: Any, expected: int, code: str | None = None) -> Any:
        assert reply.status == expected, (method, path, reply.status, reply.body[:300])
        operation = self.operation(method, path)
        documented = operation["responses"].get(str(reply.status))
        assert documented is not None, f"{operation['operationId']} answered an undocumented {reply.status}"
        media = reply.headers.get("content-type", "").split(";")[0].strip()
        assert media in documented["content"], f"{operation['operationId']} {reply.status}: media type {media}"
        schema = documented["content"][media]["schema"]
        body = reply.json
        errors = sorted(
            Draft202012Validator({**_strict(schema), "components": self.components}).iter_errors(body),
            key=str,
        )
        assert not errors, f"{operation['operationId']} {reply.status}: {[e.message for e in errors][:5]}"
        if media == PROBLEM:
            assert body["code"] in documented[CODES], (operation["operationId"], reply.status, body["code"])
            assert code is None or body["code"] == code
        if reply.status == 429:
            assert int(reply.headers["retry-after"]) >= 1
        self.seen.add((operation["operationId"], reply.status))
        return body


def _poll(stack, token: str, job_id: str, statuses: set[str], conf: Conformance) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = conf.check("GET", f"/v1/videos/{job_id}", stack.request("GET", f"/v1/videos/{job_id}", token=token), 200)
        if job["status"] in statuses:
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {statuses}")


def _submit(stack, conf: Conformance, token: str | None, expected: int, code: str | None = None, **kwargs: Any):
    key = kwargs.pop("key", uuid.uuid4().hex)
    headers = {} if key is None else {"idempotency-key": key}
    body = kwargs.pop("body", {"model": "minimax-video-01", "input": {"prompt": "a cat surfing"}})
    reply = stack.request("POST", "/v1/videos", token=token, headers=headers, body=body, **kwargs)
    out = conf.check("POST", "/v1/videos", reply, expected, code)
    if expected == 202:
        assert reply.headers["location"] == f"/v1/videos/{out['job']['id']}"
    return out, reply


def test_finished_jobs_answer_as_the_document_says(stack_sfn):
    """A completed job (video set), its 409 on cancel, and a failed one (error set, refunded)."""
    stack = stack_sfn
    conf = Conformance(stack.request("GET", "/openapi.json").json)
    alice = stack.user(credits=100)
    kling = {"model": "kling-2.1-standard-i2v", "input": {"prompt": "a heron", "image_url": "https://e.com/h.png"}}
    first, _ = _submit(stack, conf, alice, 202, key="k1", body=kling)
    _, replay = _submit(stack, conf, alice, 202, key="k1", body=kling)
    assert replay.headers["idempotent-replayed"] == "true"
    done = _poll(stack, alice, first["job"]["id"], {"completed"}, conf)
    assert done["video"]["url"] and done["credits_refunded"] == 0
    job_path = f"/v1/videos/{done['id']}"
    conf.check("POST", f"{job_path}/cancel", stack.request("POST", f"{job_path}/cancel", token=alice), 409)

    stack.sim.set_config(fail_rate=1)
    failing, _ = _submit(stack, conf, alice, 202)
    failed = _poll(stack, alice, failing["job"]["id"], {"failed"}, conf)
    assert failed["error"]["code"] and failed["credits_refunded"] == failed["credits_charged"] == 5


def test_every_route_answers_as_the_document_says(stack):
    """Every operation, its 2xx and its errors (jobs stay queued: no state machine runs here)."""
    conf = Conformance(stack.request("GET", "/openapi.json").json)
    conf.check("GET", "/openapi.json", stack.request("GET", "/openapi.json"), 200)
    conf.check("GET", "/v1/models", stack.request("GET", "/v1/models"), 200)

    def submit(token: str | None, expected: int, code: str | None = None, **kwargs: Any) -> Any:
        return _submit(stack, conf, token, expected, code, **kwargs)

    alice = stack.user(credits=100, user_id=ALICE_ID)
    first, _ = submit(alice, 202, key="k1")
    queued = f"/v1/videos/{first['job']['id']}"
    assert conf.check("GET", queued, stack.request("GET", queued, token=alice), 200)["status"] == "queued"
    # the submit's errors
    submit(alice, 400, "idempotency_key_missing", key=None)
    submit(alice, 400, "idempotency_key_invalid", key=" padded ")
    submit(None, 401)
    submit(alice, 404, "model_not_found", body={"model": "nope", "input": {}})
    submit(alice, 413, "payload_too_large", raw=b'{"model": "' + b"x" * 70_000 + b'"}')
    submit(alice, 422, "validation_failed", body={"model": "minimax-video-01", "input": {}})
    submit(alice, 422, "validation_failed", body={"model": "minimax-video-01", "input": {"prompt": "\t\u3000"}})
    submit(alice, 422, "validation_failed", raw=b"\xff\xfe'\xe9\x02")  # not UTF-8: API Gateway base64s it
    submit(alice, 422, "idempotency_key_reused", key="k1", body={"model": "minimax-video-01", "input": {"prompt": "b"}})
    submit(stack.user(credits=1), 402, "insufficient_credits")

    # the active-job cap, then cancel each of the jobs, twice
    carol = stack.user(credits=100)
    held = [submit(carol, 202)[0]["job"]["id"] for _ in range(10)]
    submit(carol, 429, "too_many_active_jobs")
    for job_id in held:
        for _ in range(2):
            path = f"/v1/videos/{job_id}/cancel"
            canceled = conf.check("POST", path, stack.request("POST", path, token=carol), 200)
            assert canceled["status"] == "canceled" and canceled["credits_refunded"] == canceled["credits_charged"]

    # lists and credits, their 400s; the 404s and 401s of the job routes
    page = conf.check(
        "GET",
        "/v1/videos?status=canceled&limit=3",
        stack.request("GET", "/v1/videos?status=canceled&limit=3", token=carol),
        200,
    )
    assert len(page["items"]) == 3 and page["next_cursor"]
    for path in ("/v1/videos", "/v1/credits", "/v1/purchases"):
        conf.check("GET", path, stack.request("GET", f"{path}?limit=2", token=alice), 200)
        conf.check("GET", path, stack.request("GET", f"{path}?limit=0", token=alice), 400, "bad_request")
        conf.check("GET", path, stack.request("GET", f"{path}?cursor=bad", token=alice), 400, "invalid_cursor")
        conf.check("GET", path, stack.request("GET", path), 401)
    conf.check("GET", "/v1/videos", stack.request("GET", "/v1/videos?status=done", token=alice), 400, "bad_request")
    other = f"/v1/videos/{held[0]}"  # carol's job, asked for by alice
    conf.check("GET", other, stack.request("GET", other, token=alice), 404, "job_not_found")
    conf.check("POST", f"{other}/cancel", stack.request("POST", f"{other}/cancel", token=alice), 404, "job_not_found")
    conf.check("GET", other, stack.request("GET", other), 401)
    conf.check("POST", f"{other}/cancel", stack.request("POST", f"{other}/cancel"), 401)

    # uploads: create, read, their 422, 404 (another user's) and 401; upload:<id> refusals at submit
    body = {"content_type": "image/png", "size_bytes": 10}
    created = conf.check("POST", "/v1/uploads", stack.request("POST", "/v1/uploads", token=alice, body=body), 201)
    mine = f"/v1/uploads/{created['upload']['id']}"
    assert conf.check("GET", mine, stack.request("GET", mine, token=alice), 200)["status"] == "pending"
    conf.check("GET", mine, stack.request("GET", mine, token=carol), 404, "upload_not_found")
    conf.check("GET", mine, stack.request("GET", mine), 401)
    too_big = {"content_type": "image/png", "size_bytes": 21 << 20}
    reply = stack.request("POST", "/v1/uploads", token=alice, body=too_big)
    conf.check("POST", "/v1/uploads", reply, 422, "validation_failed")
    conf.check("POST", "/v1/uploads", stack.request("POST", "/v1/uploads", body=body), 401)
    ref = f"upload:{created['upload']['id']}"
    kling = {"model": "kling-2.1-standard-i2v", "input": {"prompt": "p", "image_url": ref}}
    submit(alice, 409, "upload_not_ready", body=kling)
    submit(carol, 422, "upload_not_found", body=kling)
    # the devices routes: register, update, list, their errors, delete (204, no body)
    phone = "/v1/devices/phone-1"
    body = {"platform": "apns", "token": "ab" * 32}
    conf.check("PUT", phone, stack.request("PUT", phone, token=alice, body=body), 200)
    conf.check("PUT", phone, stack.request("PUT", phone, token=alice, body={**body, "platform": "fcm"}), 200)
    conf.check("GET", "/v1/devices", stack.request("GET", "/v1/devices", token=alice), 200)
    bad = {"platform": "webpush", "token": "x"}
    conf.check("PUT", phone, stack.request("PUT", phone, token=alice, body=bad), 422, "validation_failed")
    conf.check("PUT", "/v1/devices/a%20b", stack.request("PUT", "/v1/devices/a%20b", token=alice, body=body), 400)
    for i in range(9):
        stack.request("PUT", f"/v1/devices/more-{i}", token=alice, body=body)
    full = stack.request("PUT", "/v1/devices/eleventh", token=alice, body=body)
    conf.check("PUT", "/v1/devices/eleventh", full, 409, "too_many_devices")
    conf.check("PUT", phone, stack.request("PUT", phone, body=body), 401)
    conf.check("GET", "/v1/devices", stack.request("GET", "/v1/devices"), 401)
    gone = stack.request("DELETE", phone, token=alice)
    assert gone.status == 204 and "204" in conf.operation("DELETE", phone)["responses"]
    conf.seen.add(("deleteDevice", 204))
    conf.check("DELETE", phone, stack.request("DELETE", phone, token=alice), 404, "device_not_found")

    # products and purchases: the packs, a claim (201), its replay (200), another user (409), the 422s, 401
    conf.check("GET", "/v1/products", stack.request("GET", "/v1/products"), 200)
    signed = stack.request(
        "POST", "/_local/store/app-store/transactions", body={"user_id": ALICE_ID, "product_id": PACK_PRODUCT}
    ).json["signed_transaction"]
    claim = {"store": "app_store", "signed_transaction": signed}
    conf.check("POST", "/v1/purchases", stack.request("POST", "/v1/purchases", token=alice, body=claim), 201)
    conf.check("POST", "/v1/purchases", stack.request("POST", "/v1/purchases", token=alice, body=claim), 200)
    reply = stack.request("POST", "/v1/purchases", token=carol, body=claim)
    conf.check("POST", "/v1/purchases", reply, 409, "purchase_already_claimed")
    forged = {"store": "app_store", "signed_transaction": "a.b.c"}
    reply = stack.request("POST", "/v1/purchases", token=alice, body=forged)
    conf.check("POST", "/v1/purchases", reply, 422, "purchase_invalid")
    reply = stack.request("POST", "/v1/purchases", token=alice, body={"store": "app_store"})
    conf.check("POST", "/v1/purchases", reply, 422, "validation_failed")
    conf.check("POST", "/v1/purchases", stack.request("POST", "/v1/purchases", body=claim), 401)

    operations = {op["operationId"] for item in conf.doc["paths"].values() for op in item.values()}
    assert {op for op, status in conf.seen if 200 <= status < 300} == operations  # every route was driven
