"""The simulator's HTTP surface: which path and method is which operation.

* ``POST /{model_id...}[?fal_webhook=<url>]``: submit; ``GET|PUT /{owner}/{app}/requests/{id}[/status|/cancel]``:
  status, result, cancel (all with ``Authorization: Key <anything>``).
* ``GET /.well-known/jwks.json``, ``GET|HEAD /cdn/{request_id}.mp4``.
* ``GET|PUT /_sim/config``, ``GET /_sim/stats``, ``GET /_sim/requests``: control and inspection.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from devstack.falsim import cdn
from devstack.falsim.faults import FaultPlan
from devstack.falsim.lifecycle import FalError
from devstack.falsim.queue_state import RequestQueue
from devstack.falsim.signing import Keyring
from devstack.falsim.stats import Stats
from devstack.falsim.transport import Request, Response, fal_error, json_response

_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")


FETCH_TIMEOUT_S = 10
FETCH_MAX_BYTES = 100 * 1024 * 1024


def fetch_inputs(body: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Download every URL input the way fal does before it runs a model: fal's 422 validation
    error for the first one it cannot get (else None), and the sha256 of each input's bytes as
    fetched (field -> hex; ``GET /_sim/requests`` shows them, so a test proves which bytes fal got).
    Only ``http://`` URLs are fetched: the local S3's presigned GETs (uploads) are plain http, while
    the public ``https://`` URLs the tests send point at hosts this machine may not reach (fal would
    fetch those too)."""
    digests: dict[str, str] = {}
    for field, value in sorted(body.items()):
        if not field.endswith("_url") or not isinstance(value, str) or not value.startswith("http://"):
            continue
        try:
            with requests.get(value, stream=True, timeout=FETCH_TIMEOUT_S) as got:
                ok = got.status_code == 200
                size = 0
                digest = hashlib.sha256()
                for chunk in got.iter_content(64 * 1024) if ok else ():
                    size += len(chunk)
                    digest.update(chunk)
                    if size > FETCH_MAX_BYTES:
                        ok = False
                        break
                ok = ok and size > 0
        except requests.RequestException:
            ok = False
        if not ok:
            return {
                "loc": ["body", field],
                "msg": f"Failed to download the file from {field}; make sure the URL is publicly accessible",
                "type": "file_download_error",
                "input": value.split("?", 1)[0],
            }, digests
        digests[field] = digest.hexdigest()
    return None, digests


def _json_body(raw: bytes) -> Any:
    """The parsed body (empty = ``{}``), or raises ValueError; a nesting too deep is a ValueError too."""
    try:
        return json.loads(raw or b"{}")
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


class Router:
    def __init__(
        self, queue: RequestQueue, keyring: Keyring, plan: FaultPlan, stats: Stats, video: Callable[[], bytes]
    ) -> None:
        self._queue = queue
        self._keyring = keyring
        self._plan = plan
        self._stats = stats
        self._video = video

    def __call__(self, request: Request) -> Response:
        try:
            return self._route(request)
        except FalError as err:
            return fal_error(err.status, err.detail, err.error_type, err.headers)

    def _route(self, h: Request) -> Response:
        url = urlsplit(h.target)
        path, method = url.path, h.method
        query = parse_qs(url.query)
        parts = [p for p in path.split("/") if p]
        if path == "/.well-known/jwks.json" and method in {"GET", "HEAD"}:
            return json_response(200, self._keyring.jwks(), extra={"Cache-Control": "max-age=3600"})
        if parts[:1] == ["_sim"]:
            return self._control(h, parts[1:])
        if parts[:1] == ["cdn"] and len(parts) == 2 and method in {"GET", "HEAD"}:
            name = parts[1]
            req = self._queue.completed_video(name.removesuffix(".mp4")) if name.endswith(".mp4") else None
            return cdn.serve_video(req, method, self._video(), self._plan, self._stats)
        if not parts or not all(_SEGMENT.match(p) and p not in {".", ".."} for p in parts):
            return fal_error(404, "Not Found", "not_found")
        if method == "POST" and len(parts) >= 2:
            self._authorize(h)
            return self._submit(h, "/".join(parts), query)
        if len(parts) in {4, 5} and parts[2] == "requests" and method in {"GET", "PUT"}:
            self._authorize(h)
            return self._on_request(method, "/".join(parts[:2]), parts[3], parts[4:], query)
        return fal_error(404 if method in {"GET", "HEAD"} else 405, "Not Found", "not_found")

    def _authorize(self, h: Request) -> None:
        scheme, _, key = h.header("authorization").partition(" ")
        if scheme != "Key" or not key.strip():
            raise FalError(401, "Missing or invalid credentials (expected 'Authorization: Key ...')", "unauthorized")

    def _submit(self, h: Request, model_id: str, query: dict[str, list[str]]) -> Response:
        refusal = self._queue.submit_fault()
        if refusal is not None:
            raise refusal
        try:
            body = _json_body(h.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            detail = [{"loc": ["body"], "msg": "expected a JSON object", "type": "type_error.dict"}]
            return json_response(422, {"detail": detail})
        unreadable, digests = fetch_inputs(body)
        if unreadable is not None:
            return json_response(422, {"detail": [unreadable]})
        webhook: str | None = query.get("fal_webhook", [""])[0] or None
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            return fal_error(400, "fal_webhook must be an http(s) URL", "bad_request")
        return json_response(200, self._queue.submit(model_id, body, webhook, input_sha256=digests))

    def _on_request(
        self, method: str, owner_app: str, request_id: str, rest: list[str], query: dict[str, list[str]]
    ) -> Response:
        req = self._queue.find(owner_app, request_id)
        action = rest[0] if rest else ""
        if req is None:
            if method == "PUT" and action == "cancel":
                return json_response(
                    404,
                    {"status": "NOT_FOUND", "detail": "Request not found", "error_type": "not_found"},
                    extra={"X-Fal-Error-Type": "not_found"},
                )
            return fal_error(404, "Request not found", "not_found")
        if method == "GET" and action == "status":
            want_logs = (query.get("logs") or ["0"])[0].lower() in {"1", "true"}
            return json_response(*self._queue.status(req, want_logs))
        if method == "GET" and action == "":
            return json_response(*self._queue.result(req))
        if method == "PUT" and action == "cancel":
            return json_response(*self._queue.cancel(req))
        return fal_error(405, "Method not allowed", "bad_request")

    def _control(self, h: Request, parts: list[str]) -> Response:
        if parts == ["config"] and h.method == "GET":
            return json_response(200, self._plan.config)
        if parts == ["config"] and h.method == "PUT":
            try:
                updates = _json_body(h.body)
                if not isinstance(updates, dict):
                    raise ValueError("expected a JSON object")
                return json_response(200, self._plan.update(**updates))
            except ValueError as exc:
                return fal_error(400, str(exc), "bad_request")
        if parts == ["stats"] and h.method == "GET":
            return json_response(200, self._stats.snapshot())
        if parts == ["requests"] and h.method == "GET":
            return json_response(200, self._queue.snapshot())
        return fal_error(404, "Not Found", "not_found")
