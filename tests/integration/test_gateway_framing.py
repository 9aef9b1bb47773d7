"""The local gateway's HTTP framing on a raw socket: what a front end and a back end could read two
ways (request smuggling), line endings that are not CRLF, absurd chunk sizes and requests left
incomplete are each answered at once with a JSON 4xx, never served, never waited out.

A gateway on 127.0.0.1 port 0 with one echo route (no stack: these are the server's own answers).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.auth import LocalAuthority
from devstack.gateway import Gateway, LocalApi
from devstack.template import Route

IDLE_S = 1


@pytest.fixture()
def gateway() -> Iterator[tuple[Gateway, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    api = LocalApi(
        [Route("POST", "/echo", "EchoFunction", authorized=False), Route("GET", "/echo", "EchoFunction", False)],
        lambda _fn, event: seen.append(event) or {"statusCode": 200, "body": "{}"},
        LocalAuthority(),
    )
    server = Gateway(api, "127.0.0.1", 0, idle_timeout_s=IDLE_S).start()
    yield server, seen
    server.stop()


def _exchange(port: int, data: bytes, timeout: float = 5) -> tuple[list[bytes], float]:
    """Send ``data``; every answer's status line and body until the server closes, and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    return [line for line in received.split(b"\r\n") if line.startswith(b"HTTP/1.") or line.startswith(b"{")], (
        time.monotonic() - started
    )


def _answers(lines: list[bytes]) -> list[tuple[int, Any]]:
    statuses = [int(line.split()[1]) for line in lines if line.startswith(b"HTTP/1.")]
    bodies = [json.loads(line) for line in lines if line.startswith(b"{")]
    return list(zip(statuses, bodies, strict=True))


def test_content_length_with_chunked_is_refused_and_nothing_after_it_is_served(gateway: Any) -> None:
    server, seen = gateway
    smuggled = b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
    data = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    )
    lines, _ = _exchange(server.port, data)
    assert _answers(lines) == [(400, {"message": "Bad Request"})]
    assert seen == []


@pytest.mark.parametrize(
    "data",
    [
        b"GET /echo HTTP/1.1\nHost: x\n\n",
        b"POST /echo HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}",
        b"GET /echo HTTP/1.1\rHost: x\r\r",
        b"GET /echo HTTP/1.1\r\nHost: x\n\r\n",
        b"\n",
    ],
)
def test_a_line_ending_that_is_not_crlf_is_a_json_400_at_once(gateway: Any, data: bytes) -> None:
    server, seen = gateway
    lines, took = _exchange(server.port, data, timeout=IDLE_S * 10)
    assert _answers(lines) == [(400, {"message": "Bad Request"})]
    assert took < IDLE_S and seen == []


def test_a_chunk_larger_than_the_body_limit_is_a_json_413_at_once(gateway: Any) -> None:
    server, seen = gateway
    data = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nabc"
    lines, took = _exchange(server.port, data, timeout=IDLE_S * 10)
    assert _answers(lines) == [(413, {"message": "Request Entity Too Large"})]
    assert took < IDLE_S and seen == []


@pytest.mark.parametrize(
    "data",
    [
        b"GET /echo HTTP/1.1\r\nHost: x\r\n",  # headers never end
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}",  # body never completes
    ],
)
def test_a_request_left_incomplete_is_answered_408_on_the_idle_timeout(gateway: Any, data: bytes) -> None:
    server, seen = gateway
    lines, took = _exchange(server.port, data, timeout=IDLE_S * 10)
    assert _answers(lines) == [(408, {"message": "Request Timeout"})]
    assert IDLE_S <= took < IDLE_S * 5 and seen == []


def test_a_well_formed_chunked_request_is_still_served(gateway: Any) -> None:
    server, seen = gateway
    data = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    lines, _ = _exchange(server.port, data)
    assert _answers(lines) == [(200, {})]
    assert [event["body"] for event in seen] == ["{}"]
