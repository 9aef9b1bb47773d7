"""The simulator's HTTP transport: waitress serving one ``Request -> Response`` function.

waitress parses HTTP (a malformed request line, header or body framing is its own 400, a body
over ``MAX_BODY`` its 413) and buffers the body, so the handler always gets a whole
:class:`Request`. Bodies are iterables streamed by waitress's task threads, which block once
``outbuf_high_watermark`` bytes wait for a slow client: a large video is never held in memory.
A body shorter than its ``Content-Length`` makes waitress close the connection after it (the
CDN's truncated-download fault relies on that). A handler that raises is logged and answered
``500`` in fal's error shape; a client that went away is not an error.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

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


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _request(environ: dict[str, Any]) -> Request:
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    target = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    return Request(
        method=environ["REQUEST_METHOD"],
        target=target,
        headers=headers,
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
        start_response(f"{response.status} {_reason(response.status)}", list(response.headers.items()))
        return () if request.method == "HEAD" else response.body


class _NamedThreads(ThreadedTaskDispatcher):
    """waitress's worker pool with the simulator's thread names (``<name>-<n>``)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def start_new_thread(self, target: Callable[[int], None], thread_no: int) -> None:
        threading.Thread(target=target, name=f"{self._name}-{thread_no}", args=(thread_no,), daemon=True).start()


class HttpServer:
    """A waitress server on ``host:port`` (0 = any free port) with its own event loop thread."""

    def __init__(self, handler: Handler, host: str, port: int, *, name: str = "falsim-http") -> None:
        self._app = _WsgiApp(handler)
        self._host = host
        self._requested_port = port
        self._name = name
        self._map: dict[int, Any] = {}
        self._server: TcpWSGIServer | None = None
        self._workers: _NamedThreads | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        return self._requested_port if self._server is None else int(self._server.effective_port)

    def start(self) -> None:
        """Bind (an OSError when the port is taken) and serve from now on."""
        adj = Adjustments(
            host=self._host,
            port=self._requested_port,
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
        workers = _NamedThreads(self._name)
        self._map = {}
        try:
            self._server = TcpWSGIServer(self._app, map=self._map, dispatcher=workers, adj=adj)
        except OSError:
            for half_made in list(self._map.values()):  # the wake-up pipe and the unbound socket
                half_made.close()
            raise
        workers.set_thread_count(THREADS)
        self._workers = workers
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listener and every connection, then end the loop and worker threads."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.pull_trigger()  # wake the loop now
        thread.join(timeout=5)
        self._thread = None

    def _loop(self) -> None:
        server, workers = self._server, self._workers
        assert server is not None and workers is not None
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=0.5, map=self._map, use_poll=True, count=1)
        finally:
            # on the loop's own thread: nothing polls the descriptors while they are closed
            for channel in list(self._map.values()):
                if channel is not server and channel is not server.trigger:
                    channel.handle_close()  # a task still writing to it gets ClientDisconnected
            server.close()
            workers.shutdown(cancel_pending=True, timeout=2)
