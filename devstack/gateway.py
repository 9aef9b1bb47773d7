"""Local stand-in for API Gateway (HTTP API, payload format 2.0).

Routes come from template.yaml (the functions' HttpApi events). Each request is
turned into the v2 event API Gateway would send, JWT-checked like the HTTP API's
JWT authorizer where the route is authorized, and answered by the REAL handler.
Also serves the local-only routes ``GET /_local/health``, ``POST /_local/users``
and ``GET /_local/stats``. CORS as the HTTP API's CorsConfiguration does it (:class:`Cors`).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.receiver import ChunkedReceiver
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import BadRequest, Error, RequestEntityTooLarge, find_double_newline

from devstack.auth import AuthError, LocalAuthority
from devstack.httpd import HttpServer, request_headers, status_line
from devstack.template import Route, SamTemplate

TEXT_TYPES = ("application/json", "application/problem+json", "text/", "application/x-www-form-urlencoded")
MAX_PAYLOAD = 10 * 1024 * 1024  # API Gateway's own limit
MAX_HEADERS = 64 * 1024  # the request line and headers; longer: 431 {"message": ...}, never a drop
IDLE_TIMEOUT_S = 30  # API Gateway's idle connection timeout
log = logging.getLogger("devstack.gateway")
# A line ending that is not CRLF, in the request line or a header: a bare LF, or a CR followed by
# anything but LF (a CR that ends what has arrived so far may still be followed by its LF).
_BARE_CR_OR_LF = re.compile(rb"(?<!\r)\n|\r(?=[^\n])")


_LOCAL_ORIGIN = re.compile(r"^http://(localhost|127\.0\.0\.1)(:\d{1,5})?$")


@dataclass(frozen=True)
class Cors:
    """What the HTTP API's CorsConfiguration does: API Gateway answers a browser's preflight
    itself and adds the allow-origin and expose headers to actual answers, for allowed origins
    only; any other origin gets no CORS header at all. Locally the allowed origins are the
    template's ``CorsAllowedOrigins`` plus any ``http://localhost:*`` / ``http://127.0.0.1:*``."""

    origins: frozenset[str]
    allow_headers: tuple[str, ...]
    allow_methods: tuple[str, ...]
    expose_headers: tuple[str, ...]
    max_age: int

    @classmethod
    def from_template(cls, template: SamTemplate, origins: Iterable[str]) -> Cors:
        """The template's HttpApi CorsConfiguration, resolved as if ``origins`` were deployed."""
        refs = {"CorsAllowedOrigins": ",".join(origins)}
        (api,) = template.resources_of_type("AWS::Serverless::HttpApi").values()
        config = template.resolve(api["Properties"]["CorsConfiguration"], refs) or {}
        return cls(
            origins=frozenset(config.get("AllowOrigins", ())),
            allow_headers=tuple(config.get("AllowHeaders", ())),
            allow_methods=tuple(config.get("AllowMethods", ())),
            expose_headers=tuple(config.get("ExposeHeaders", ())),
            max_age=int(config.get("MaxAge", 0)),
        )

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and (origin in self.origins or bool(_LOCAL_ORIGIN.match(origin or "")))

    def preflight(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers of the answer to a preflight (none when the origin, method or a header is refused)."""
        origin = headers.get("origin")
        method = headers.get("access-control-request-method", "").upper()
        wanted = {h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",") if h.strip()}
        if not self.allows(origin) or method not in self.allow_methods:
            return {}
        if not wanted <= {h.lower() for h in self.allow_headers}:
            return {}
        return {
            "access-control-allow-origin": str(origin),
            "access-control-allow-methods": ",".join(self.allow_methods),
            "access-control-allow-headers": ",".join(self.allow_headers),
            "access-control-max-age": str(self.max_age),
            "vary": "origin",
        }

    def actual(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers API Gateway adds to an actual answer for an allowed origin."""
        origin = headers.get("origin")
        if not self.allows(origin):
            return {}
        return {
            "access-control-allow-origin": str(origin),
            "access-control-expose-headers": ",".join(self.expose_headers),
            "vary": "origin",
        }


def _is_utf8(body: bytes) -> bool:
    """API Gateway passes a body it cannot read as text base64-encoded, whatever its content type."""
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def _compile(route: Route) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\+?\}", r"(?P<\1>[^/]+)", route.path)
    return re.compile(f"^{pattern}$")


class LocalApi:
    """Everything the HTTP server needs, kept apart from the socket code so tests can call it."""

    def __init__(
        self,
        routes: list[Route],
        invoke: Callable[[str, dict[str, Any]], Any],
        authority: LocalAuthority,
        local_routes: dict[tuple[str, str], Callable[[bytes], tuple[int, Any]]] | None = None,
        cors: Cors | None = None,
        local_prefixes: dict[tuple[str, str], Callable[[str, dict[str, str], bytes], tuple[int, Any]]] | None = None,
    ) -> None:
        """``local_routes``: (method, exact path) → handler of the body; ``local_prefixes``: (method,
        path prefix) → handler of (path, headers, body), for the local services under a path (the
        local App Store Server API)."""
        self._routes = [(r, _compile(r)) for r in routes]
        self._cors = cors
        self._invoke = invoke
        self._authority = authority
        self._local = local_routes or {}
        self._prefixes = local_prefixes or {}

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str = "127.0.0.1"
    ) -> tuple[int, dict[str, str], bytes]:
        if self._cors is None:
            return self._handle(method, target, headers, body, source_ip)
        if method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers:
            return 204, self._cors.preflight(headers), b""
        status, out, payload = self._handle(method, target, headers, body, source_ip)
        return status, {**out, **self._cors.actual(headers)}, payload

    def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(target)
        # HTTP APIs hand the function the path percent-decoded (rawPath and the path parameters
        # alike; REST APIs and function URLs keep the encoding): match and deliver it decoded.
        url = url._replace(path=unquote(url.path))
        local = self._local.get((method, url.path))
        if local is not None:
            status, payload = local(body)
            return status, {"content-type": "application/json"}, json.dumps(payload).encode()
        for (prefix_method, prefix), handler in self._prefixes.items():
            if method == prefix_method and url.path.startswith(prefix):
                status, payload = handler(url.path, headers, body)
                return status, {"content-type": "application/json"}, json.dumps(payload).encode()
        if len(body) > MAX_PAYLOAD:
            return self._message(413, "Request Entity Too Large")
        for route, pattern in self._routes:
            match = pattern.match(url.path)
            if route.method == method and match:
                break
        else:
            return self._message(404, "Not Found")
        claims = None
        if route.authorized:
            try:
                claims = self._authority.verify(headers.get("authorization"))
            except AuthError as refused:
                status, out, payload = self._message(401, "Unauthorized")
                return status, {**out, "www-authenticate": refused.challenge}, payload
        event = self._event(route, method, url.path, url.query, headers, body, match.groupdict(), claims, source_ip)
        try:
            result = self._invoke(route.function, event)
        except Exception:  # the function crashed: API Gateway answers 500
            return self._message(500, "Internal Server Error")
        return self._response(result)

    @staticmethod
    def _message(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
        return status, {"content-type": "application/json"}, json.dumps({"message": message}).encode()

    @staticmethod
    def _event(
        route: Route,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        path_params: dict[str, str],
        claims: dict[str, Any] | None,
        source_ip: str,
    ) -> dict[str, Any]:
        content_type = headers.get("content-type", "")
        is_text = not body or (content_type.startswith(TEXT_TYPES) and _is_utf8(body))
        params: dict[str, str] = {}
        for k, v in parse_qsl(query, keep_blank_values=True):
            params[k] = f"{params[k]},{v}" if k in params else v
        now = datetime.now(UTC)
        route_key = f"{route.method} {route.path}"
        return {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "queryStringParameters": params or None,
            "pathParameters": path_params or None,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "authorizer": {"jwt": {"claims": claims, "scopes": None}} if claims is not None else None,
                "domainName": headers.get("host", "127.0.0.1"),
                "domainPrefix": "local",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": uuid.uuid4().hex,
                "routeKey": route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(time.time() * 1000),
            },
            "body": (body.decode() if is_text else base64.b64encode(body).decode()) if body else None,
            "isBase64Encoded": bool(body) and not is_text,
        }

    @staticmethod
    def _response(result: Any) -> tuple[int, dict[str, str], bytes]:
        if not isinstance(result, dict) or "statusCode" not in result:
            return 200, {"content-type": "application/json"}, json.dumps(result).encode()
        headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode()
        return int(result["statusCode"]), headers, body


class _WsgiApp:
    """The WSGI face of :class:`LocalApi`; ``api`` is swapped in once the stack is provisioned."""

    def __init__(self, api: LocalApi) -> None:
        self.api = api

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        try:
            body = environ["wsgi.input"].read()  # the server has read it whole, chunked or not
            status, out_headers, payload = self.api.handle(
                method, environ.get("REQUEST_URI") or "/", request_headers(environ), body, environ["REMOTE_ADDR"]
            )
        except Exception as exc:  # a gateway bug answers like API Gateway's own failure, never a traceback
            log.error("gateway failed on %s: %s", method, type(exc).__name__)
            status, out_headers, payload = LocalApi._message(500, "Internal Server Error")
        headers = [(k, v) for k, v in out_headers.items() if k not in _HOP_HEADERS]
        headers.append(("content-length", str(len(payload))))
        start_response(status_line(status), headers)
        return [b"" if method == "HEAD" else payload]


_HOP_HEADERS = frozenset({"content-length", "connection", "transfer-encoding", "keep-alive"})


class _JsonErrorTask(ErrorTask):
    """The server's own refusals (a malformed request line, ``Content-Length: abc``, a header block
    over the limit, a body over 10 MB, ...) as API Gateway words them: ``{"message": ...}`` JSON."""

    def execute(self) -> None:
        error = self.request.error
        body = json.dumps({"message": error.reason}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _RequestTimeout(Error):
    code = 408
    reason = "Request Timeout"


class _Parser(HTTPRequestParser):
    """waitress's request parser, stricter where a front end and a back end could read one
    request two ways (request smuggling) or where waitress would wait for bytes that never
    come: a line ending that is not CRLF is a 400 at once (waitress looks for CRLF CRLF only and
    would wait out the idle timeout); ``Content-Length`` together with ``Transfer-Encoding`` is a
    400 (waitress reads the chunks and serves the bytes after them as a second request); a chunk
    larger than the body limit is a 413 at once, not after 10 MB have arrived."""

    def received(self, data: bytes) -> int:
        if self.body_rcv is None and not self.completed:
            so_far = self.header_plus + data
            end = find_double_newline(so_far)
            if _BARE_CR_OR_LF.search(so_far[:end] if end >= 0 else so_far):
                self.refuse(BadRequest("Bare CR or LF found in HTTP message"))
                return len(data)
        consumed = int(super().received(data))
        body = self.body_rcv
        if (
            not self.completed
            and isinstance(body, ChunkedReceiver)
            and body.chunk_remainder >= self.adj.max_request_body_size
        ):
            self.refuse(RequestEntityTooLarge("a chunk exceeds the body limit"))
        return consumed

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked and "CONTENT_LENGTH" in self.headers:
            raise ParsingError("both Content-Length and Transfer-Encoding")

    def refuse(self, error: Error) -> None:
        """End this request as ``error`` (its answer; the connection closes after it)."""
        if not self.headers_finished:  # the error task reads a request line and headers
            self.headers = {}
            HTTPRequestParser.parse_header(self, b"GET / HTTP/1.1\r\n")
            self.headers_finished = True
        self.error = error
        self.completed = True


class _Server(TcpWSGIServer):
    """A request left incomplete past the idle timeout is answered 408 before the close (an idle
    connection with no request begun is closed silently, as API Gateway closes idle ones)."""

    def maintenance(self, now: float) -> None:
        cutoff = now - self.adj.channel_timeout
        for channel in list(self.active_channels.values()):
            if isinstance(channel, _Channel) and not channel.requests and channel.last_activity < cutoff:
                channel.refuse_partial(_RequestTimeout("the request was not completed in time"))
        super().maintenance(now)


class _Channel(HTTPChannel):
    """A connection. A client that ends its side mid-request (a body shorter than its
    Content-Length, then EOF) gets a 400 answer before the close, not a silent drop."""

    error_task_class = _JsonErrorTask
    parser_class = _Parser
    _peer_done = False

    def readable(self) -> bool:
        return not self._peer_done and bool(super().readable())

    def handle_read(self) -> None:
        partial = self.request
        if partial is None or partial.completed:
            super().handle_read()
            return
        try:  # the socket itself: the dispatcher's recv() closes the channel at EOF
            data = self.socket.recv(self.adj.recv_bytes)
        except BlockingIOError:
            return
        except OSError:
            self.handle_close()
            return
        if data:
            self.last_activity = time.time()
            self.received(data)
            return
        self.refuse_partial(BadRequest("the request ended before its declared length"))

    def refuse_partial(self, error: Error) -> None:
        """Answer the request begun on this connection with ``error``, then close (no request
        begun: nothing to answer). Runs on the event loop's thread."""
        with self.requests_lock:
            partial = self.request
            if not isinstance(partial, _Parser) or partial.completed:
                return
            self._peer_done = True
            self.request = None
            partial.refuse(error)
            self.requests.append(partial)
            if len(self.requests) == 1:
                self.server.add_task(self)


class Gateway:
    """The local API served by waitress (:class:`devstack.httpd.HttpServer`): a real threaded WSGI
    server with a deep listen backlog (``http.server``'s backlog of 5 reset connections under load)
    and keep-alive connections that cost no thread while idle. Bound at construction, so its port
    is known before it serves."""

    THREADS = 16
    BACKLOG = 1024
    CONNECTION_LIMIT = 1000

    def __init__(self, api: LocalApi, host: str, port: int, *, idle_timeout_s: int = IDLE_TIMEOUT_S) -> None:
        for name in ("waitress.queue", "waitress"):  # no "task queue depth" chatter; errors still shown
            logging.getLogger(name).setLevel(logging.ERROR)
        self._app = _WsgiApp(api)
        self._server = HttpServer(
            self._app,
            host,
            port,
            name="gateway",
            channel_class=_Channel,
            server_class=_Server,
            threads=self.THREADS,
            backlog=self.BACKLOG,
            connection_limit=self.CONNECTION_LIMIT,
            max_request_body_size=MAX_PAYLOAD,
            max_request_header_size=MAX_HEADERS,
            channel_timeout=idle_timeout_s,
            cleanup_interval=max(1, idle_timeout_s // 6),  # how often idle connections are looked at
            ident=None,  # no Server header: API Gateway sends none
            expose_tracebacks=False,
            clear_untrusted_proxy_headers=True,
        ).bind()

    @property
    def api(self) -> LocalApi:
        return self._app.api

    @api.setter
    def api(self, api: LocalApi) -> None:
        self._app.api = api

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> Gateway:
        self._server.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection, then the worker threads."""
        self._server.stop()


def serve(api: LocalApi, host: str, port: int) -> Gateway:
    """The gateway bound to ``host:port`` (0: any free port), not yet serving (:meth:`Gateway.start`)."""
    return Gateway(api, host, port)
