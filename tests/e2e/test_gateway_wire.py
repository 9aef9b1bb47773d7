"""The local gateway on the wire, as a mobile app and an attacker meet it (`python -m devstack`).

API Gateway (HTTP API) never resets a connection under load, answers every request it cannot
route with JSON ``{"message": "Not Found"}`` (HEAD, OPTIONS outside a CORS preflight and unknown
methods included), refuses a malformed request with a JSON 4xx instead of dropping it, and passes
a chunked body to the function like any other. Malformed requests go over raw sockets, since
HTTP clients refuse to send them; after all of them the stack's log holds no traceback.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devstack.process import StackProcess

pytestmark = pytest.mark.e2e

CLIENTS = 64
SUBMITS_PER_CLIENT = 2


def host_stack(host: str, log_path: Path) -> StackProcess:
    """The stack started with ``HOST``: every URL of it names that host."""
    return StackProcess(
        seed=3, time_scale=0.02, crash_rate=0, reconcile_every_s=0, reconcile_grace_s=10, log_path=log_path, host=host
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    running = host_stack("127.0.0.1", tmp_path_factory.mktemp("gateway") / "stack.log")
    with running:
        yield running
    log = running.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


def _user(api: str, credits: int = 100) -> str:
    reply = requests.post(
        f"{api}/_local/users", json={"user_id": f"gw-{uuid.uuid4().hex[:8]}", "credits": credits}, timeout=10
    )
    reply.raise_for_status()
    return str(reply.json()["token"])


SUBMIT = {
    "model": "kling-2.1-standard-i2v",
    "input": {"prompt": "a heron taking off", "image_url": "https://example.com/heron.png"},
}


# --- load ------------------------------------------------------------------------------------------


def test_64_keep_alive_clients_posting_submits_see_no_connection_reset(stack: StackProcess) -> None:
    tokens = [_user(stack.api) for _ in range(CLIENTS)]
    start = threading.Barrier(CLIENTS)
    errors: list[str] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client(token: str) -> None:
        http = requests.Session()  # one keep-alive connection per client, as an app holds one
        start.wait()
        for _ in range(SUBMITS_PER_CLIENT):
            try:
                reply = http.post(
                    f"{stack.api}/v1/videos",
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
                    json=SUBMIT,
                    timeout=120,
                )
            except requests.ConnectionError as exc:  # a reset, a refused or a dropped connection
                with lock:
                    errors.append(type(exc).__name__)
                continue
            with lock:
                statuses.append(reply.status_code)

    threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert statuses == [202] * (CLIENTS * SUBMITS_PER_CLIENT)


# --- what API Gateway answers that no route serves -------------------------------------------------


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> object:
        return json.loads(self.body)


def _raw(stack: StackProcess, data: bytes, *, end_sending: bool = False) -> Raw:
    """Send ``data`` as is (``end_sending``: then shut our sending side) and read the answer."""
    with socket.create_connection((stack.host, stack.port), timeout=20) as sock:
        sock.sendall(data)
        if end_sending:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"the connection was dropped without an answer (got {received!r})"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        is_head = data.startswith(b"HEAD ")
        while not is_head and len(body) < length:
            chunk = sock.recv(65536)
            assert chunk, "the connection was dropped mid-answer"
            body += chunk
        return Raw(int(lines[0].split()[1]), headers, body)


def _request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


NOT_FOUND = {"message": "Not Found"}
BAD_REQUEST = {"message": "Bad Request"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/nothing"),
        ("DELETE", "/v1/models"),  # a route, not for this method
        ("BREW", "/v1/videos"),  # an unknown method
        ("TRACE", "/v1/models"),
        ("OPTIONS", "/v1/videos"),  # no Origin / Access-Control-Request-Method: not a preflight
    ],
)
def test_what_no_route_serves_is_a_json_404(stack: StackProcess, method: str, path: str) -> None:
    reply = _raw(stack, _request(method, path))
    assert (reply.status, reply.headers["content-type"], reply.json) == (404, "application/json", NOT_FOUND)


def test_head_is_routed_like_any_method_and_its_answer_has_no_body(stack: StackProcess) -> None:
    reply = _raw(stack, _request("HEAD", "/v1/models"))  # only GET /v1/models is a route
    assert reply.status == 404 and reply.body == b""
    assert int(reply.headers["content-length"]) == len(json.dumps(NOT_FOUND))


def test_a_preflight_is_still_answered_by_the_gateway(stack: StackProcess) -> None:
    reply = _raw(
        stack,
        _request(
            "OPTIONS",
            "/v1/videos",
            "Origin: http://localhost:5173",
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: authorization,content-type,idempotency-key",
        ),
    )
    assert reply.status == 204 and reply.headers["access-control-allow-origin"] == "http://localhost:5173"


# --- malformed requests: a JSON 4xx, never a dropped connection --------------------------------------


@pytest.mark.parametrize("length", ["abc", "-5", "1.5", "5, 6"])
def test_an_invalid_content_length_is_a_json_400(stack: StackProcess, length: str) -> None:
    reply = _raw(stack, _request("POST", "/v1/videos", f"Content-Length: {length}", body=b"{}"))
    assert (reply.status, reply.headers["content-type"], reply.json) == (400, "application/json", BAD_REQUEST)


def test_a_garbage_request_line_is_a_json_400(stack: StackProcess) -> None:
    reply = _raw(stack, b"\x16\x03\x01 hello there\r\n\r\n")
    assert (reply.status, reply.json) == (400, BAD_REQUEST)


def test_a_body_shorter_than_its_content_length_is_a_json_400(stack: StackProcess) -> None:
    reply = _raw(stack, _request("POST", "/v1/videos", "Content-Length: 100", body=b'{"model":'), end_sending=True)
    assert (reply.status, reply.json) == (400, BAD_REQUEST)


def test_a_huge_header_is_a_json_431(stack: StackProcess) -> None:
    reply = _raw(stack, _request("GET", "/v1/models", f"X-Padding: {'a' * 200_000}"))
    assert (reply.status, reply.json) == (431, {"message": "Request Header Fields Too Large"})


def test_a_body_over_10_mb_is_a_json_413(stack: StackProcess) -> None:
    reply = _raw(stack, _request("POST", "/v1/videos", f"Content-Length: {10 * 1024 * 1024 + 1}"))
    assert (reply.status, reply.json) == (413, {"message": "Request Entity Too Large"})


def _submit(stack: StackProcess, framing: str, body: bytes) -> Raw:
    """POST /v1/videos by a fresh user over a raw socket, ``body`` sent as framed by ``framing``."""
    token = _user(stack.api)
    headers = (
        f"Authorization: Bearer {token}",
        f"Idempotency-Key: {uuid.uuid4().hex}",
        "Content-Type: application/json",
    )
    return _raw(stack, _request("POST", "/v1/videos", *headers, framing, body=body))


def test_a_chunked_body_reaches_the_function(stack: StackProcess) -> None:
    body = json.dumps({**SUBMIT, "input": {**SUBMIT["input"], "prompt": "chunked heron"}}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    reply = _submit(stack, "Transfer-Encoding: chunked", chunks)
    assert reply.status == 202, reply.body
    assert reply.json["job"]["input"]["prompt"] == "chunked heron"  # type: ignore[index]


def test_a_utf16_body_reaches_the_function_and_is_answered(stack: StackProcess) -> None:
    """The gateway passes it base64-encoded (tests/integration/test_gateway_events.py); whatever
    the function makes of it, the answer is the function's, over a connection that stays whole."""
    body = json.dumps(SUBMIT).encode("utf-16")
    reply = _submit(stack, f"Content-Length: {len(body)}", body)
    assert reply.status < 500 and reply.json != BAD_REQUEST, reply.body
    assert reply.headers["content-type"] in ("application/json", "application/problem+json")


# --- HOST: the address every server binds and every URL names -----------------------------------------


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_host_binds_every_server_there_and_signs_the_video_url_for_it(tmp_path: Path) -> None:
    """127.0.0.2 is loopback too (all of 127/8 on Linux) yet another address than 127.0.0.1."""
    with host_stack("127.0.0.2", tmp_path / "stack.log") as other:
        for port in (other.port, other.sim_port, other.moto_port):
            assert _refused("127.0.0.1", port)  # bound to HOST only
        token = _user(other.api)
        auth = {"Authorization": f"Bearer {token}"}
        submitted = requests.post(
            f"{other.api}/v1/videos", headers={**auth, "Idempotency-Key": uuid.uuid4().hex}, json=SUBMIT, timeout=10
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job"]["id"]
        deadline = time.monotonic() + 60
        while (job := requests.get(f"{other.api}/v1/videos/{job_id}", headers=auth, timeout=10).json())[
            "status"
        ] not in ("completed", "failed", "canceled"):
            assert time.monotonic() < deadline, job
            time.sleep(0.3)
        assert job["status"] == "completed", job
        url = job["video"]["url"]
        assert url.startswith(f"http://127.0.0.2:{other.moto_port}/")  # signed for HOST
        video = requests.get(url, timeout=10)
        assert video.status_code == 200 and len(video.content) == job["video"]["size_bytes"]
