"""The simulator's HTTP transport: waitress serving one ``Request -> Response`` function.

waitress parses HTTP (a malformed request line, header or body framing is its own 400, a body
over ``MAX_BODY`` its 413) and buffers the body, so the handler always gets a whole
:class:`Request`. Bodies are iterables streamed by waitress's task threads, which block once
``outbuf_high_watermark`` bytes wait for a slow client: a large video is never held in memory.
A body shorter than its ``Content-Length`` makes waitress close the connection after it (the
CDN's truncated-download fault relies on that). A handler that raises is logged and answered
``500`` in fal's error shape; a client that went away is not an error. The server itself,
its threads and its stop are :mod:`devstack.httpd`'s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.httpd import HttpServer, request_headers, status_line

log = logging.getLogger("falsim")

MAX_BODY = 1024 * 1024
THREADS = 64  # one per response in flight: slow CDN downloads and inline webhook deliveries beside the polls
BACKLOG = 1024  # pending connections the kernel queues: bursts of polls are never reset
CONNECTION_LIMIT = 1000
IDLE_TIMEOUT_S = 30  # idle keep-alive connections are closed after this
# bytes of a response waiting for its client before the writing thread blocks: kept in memory
# (below waitress's outbuf_overflow, past which it spools to a temp file) and small, so many slow
# downloads cost little and the one event loop thread never stalls behind them
OUTBUF_HIGH = 256 * 1024


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the request target exactly as sent (path and query, never percent-decoded)
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Iterable[bytes] = ()


Handler = Callable[[Request], Response]


def json_response(status: int, body: Any, extra: Mapping[str, str] | None = None) -> Response:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(extra or {})}
    return Response(status, headers, [data])


def fal_error(status: int, detail: str, error_type: str, extra: Mapping[str, str] | None = None) -> Response:
    """fal's request-error answer: ``{"detail", "error_type"}`` plus the ``X-Fal-Error-Type`` header."""
    headers = {"X-Fal-Error-Type": error_type, **(extra or {})}
    return json_response(status, {"detail": detail, "error_type": error_type}, extra=headers)


def plain_response(status: int, data: bytes) -> Response:
    return Response(status, {"Content-Type": "text/plain", "Content-Length": str(len(data))}, [data])


def _request(environ: dict[str, Any]) -> Request:
    target = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    return Request(
        method=environ["REQUEST_METHOD"],
        target=target,
        headers=request_headers(environ),
        body=environ["wsgi.input"].read(),  # buffered and bounded by waitress (max_request_body_size)
    )


class _WsgiApp:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = _request(environ)
        try:
            response = self._handler(request)
        except Exception:
            log.exception("falsim handler failed")
            response = fal_error(500, "Internal error (simulator bug)", "internal_error", {"Connection": "close"})
        start_response(status_line(response.status), list(response.headers.items()))
        return () if request.method == "HEAD" else response.body


def http_server(handler: Handler, host: str, port: int, *, name: str = "falsim-http") -> HttpServer:
    """The simulator's waitress server on ``host:port`` (0 = any free port), bound at :meth:`HttpServer.start`."""
    return HttpServer(
        _WsgiApp(handler),
        host,
        port,
        name=name,
        threads=THREADS,
        backlog=BACKLOG,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=IDLE_TIMEOUT_S,
        max_request_body_size=MAX_BODY,
        outbuf_high_watermark=OUTBUF_HIGH,
        asyncore_use_poll=True,  # select() cannot watch descriptors past 1024
        expose_tracebacks=False,
        log_socket_errors=False,  # a client that hung up mid-download is not a simulator error
        ident="falsim/1",
    )
