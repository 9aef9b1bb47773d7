"""The local stack's one HTTP server: waitress serving a WSGI app on ``host:port``.

Used by the local gateway (:mod:`devstack.gateway`) and the fal simulator
(:mod:`devstack.falsim.transport`); each passes its own waitress settings
(:class:`waitress.adjustments.Adjustments` keywords) and, if it needs one, its own
connection class. Every server has its own socket map and event loop thread (``<name>``)
and worker threads (``<name>-<n>``), so several can run in one process and stop
independently. Also the two things both WSGI apps read the same way: a request's headers and
the status line.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]

_PHRASES = {s.value: s.phrase for s in HTTPStatus}


def request_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    """A WSGI request's headers: names lower-cased, repeats comma-joined (waitress joined them)."""
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].lower().replace("_", "-")] = value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers[key.lower().replace("_", "-")] = value
    return headers


def status_line(status: int) -> str:
    """The WSGI status string for ``status`` (``"404 Not Found"``; a code without a name: ``Unknown``)."""
    return f"{status} {_PHRASES.get(status, 'Unknown')}"


class _NamedThreads(ThreadedTaskDispatcher):
    """waitress's worker pool with the server's thread names (``<name>-<n>``)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def start_new_thread(self, target: Callable[[int], None], thread_no: int) -> None:
        threading.Thread(target=target, name=f"{self._name}-{thread_no}", args=(thread_no,), daemon=True).start()


class HttpServer:
    """A waitress server on ``host:port`` (0 = any free port) with its own event loop thread.

    ``settings`` are :class:`~waitress.adjustments.Adjustments` keywords (``threads``,
    ``backlog``, ``ident``, ...); ``channel_class`` and ``server_class`` replace waitress's
    connection and listener classes.
    :meth:`bind` takes the port (an ``OSError`` when it is taken, nothing left open),
    :meth:`start` binds if not yet bound and serves; :meth:`stop` closes the listener and
    every connection, then ends the loop and worker threads. Bound again after a stop,
    it serves again.
    """

    def __init__(
        self,
        app: WsgiApp,
        host: str,
        port: int,
        *,
        name: str,
        channel_class: type[HTTPChannel] | None = None,
        server_class: type[TcpWSGIServer] = TcpWSGIServer,
        **settings: Any,
    ) -> None:
        self._app = app
        self._adj = Adjustments(host=host, port=port, **settings)
        self._requested_port = port
        self._port = port
        self._name = name
        self._channel_class = channel_class
        self._server_class = server_class
        self._map: dict[int, Any] = {}
        self._server: TcpWSGIServer | None = None
        self._workers: _NamedThreads | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        """The bound port (the requested one before the first bind)."""
        return self._port

    def bind(self) -> HttpServer:
        """Take the port now, before serving (an OSError when it is taken)."""
        if self._server is not None:
            return self
        workers = _NamedThreads(self._name)
        self._map = {}
        try:
            server = self._server_class(self._app, map=self._map, dispatcher=workers, adj=self._adj)
        except OSError:
            for half_made in list(self._map.values()):  # the wake-up pipe and the unbound socket
                half_made.close()
            raise
        if self._channel_class is not None:
            server.channel_class = self._channel_class
        self._server, self._workers = server, workers
        self._port = int(server.effective_port)
        return self

    def start(self) -> HttpServer:
        """Bind if not bound yet, then serve from now on."""
        self.bind()
        assert self._workers is not None
        self._workers.set_thread_count(self._adj.threads)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then end the loop and worker threads."""
        server, thread = self._server, self._thread
        if server is None:
            return
        if thread is None:  # bound, never served: no loop to end
            self._close(server, self._workers)
        else:
            self._stopping.set()
            # wake the loop now; OSError: the loop saw the flag first and closed its trigger, it is ending
            with contextlib.suppress(OSError):
                server.pull_trigger()
            thread.join(timeout=5)
        self._server, self._workers, self._thread = None, None, None

    def _loop(self) -> None:
        server, workers, adj, sockets = self._server, self._workers, self._adj, self._map
        assert server is not None
        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=adj.asyncore_loop_timeout, map=sockets, use_poll=adj.asyncore_use_poll, count=1)
        finally:
            self._close(server, workers)  # on the loop's own thread: nothing polls the descriptors while closed

    def _close(self, server: TcpWSGIServer, workers: ThreadedTaskDispatcher | None) -> None:
        for channel in list(self._map.values()):
            if channel is not server and channel is not server.trigger:
                channel.handle_close()  # a task still writing to it gets ClientDisconnected
        server.close()
        if workers is not None:
            workers.shutdown(cancel_pending=True, timeout=2)
