"""FalClient against a live FalSimulator (127.0.0.1, port 0), plus the client's error table.

The simulator runs with queue_s = run_s = 0.2 s so a whole request lifecycle takes ~0.4 s.
Scripted transports (a requests adapter) cover answers the simulator never gives.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from devstack.falsim import FalSimulator, media
from devstack.falsim.timers import Scheduler
from videogen.adapters.fal import (
    MAX_QUEUE_POSITION,
    FalClient,
    classify_status,
    fal_key_provider,
    parse_delivery,
    parse_retry_after,
)
from videogen.adapters.webhook_signature import WebhookVerifier
from videogen.config import Settings
from videogen.domain.endings import FailureCode
from videogen.domain.errors import FalRejectedError, FalTransientError
from videogen.domain.models import FalRequest
from videogen.ports import FalResult

MODEL = "fal-ai/kling-video/v2.6/standard/motion-control"
MODEL_INPUT = {
    "image_url": "https://img.test/a.png",
    "video_url": "https://img.test/m.mp4",
    "character_orientation": "image",
}
KEY = "test-fal-key-0123456789"


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture()
def sim() -> Iterator[FalSimulator]:
    simulator = FalSimulator(port=0, seed=7)
    simulator.start()
    simulator.set_config(queue_s=0.2, run_s=0.2, webhook_retry_base_s=0.05)
    yield simulator
    simulator.stop()


@pytest.fixture()
def client(sim: FalSimulator) -> FalClient:
    return FalClient(sim.base_url, lambda: KEY, timeout_s=5)


class Receiver:
    """A local webhook endpoint that records raw deliveries and answers scripted statuses."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.deliveries.append((self.path, dict(self.headers.items()), body))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=lambda: self.server.serve_forever(poll_interval=0.05), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/fal?token=t0k%2Fen&x=1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def wait_for(predicate: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def run_to_completion(client: FalClient, req: FalRequest) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = client.status(req)
        if not seen or seen[-1] != status.status:
            seen.append(status.status)
        if status.status == "COMPLETED":
            return seen
        time.sleep(0.03)
    raise AssertionError(f"never completed: {seen}")


class Scripted(BaseAdapter):
    """A transport answering from a script: (status, body, headers) per call; the last one repeats."""

    def __init__(self, *answers: tuple[int, Any, dict[str, str]] | tuple[int, Any]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.calls: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.calls.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        status, body = answer[0], answer[1]
        headers = answer[2] if len(answer) > 2 else {}  # type: ignore[misc]
        if isinstance(body, Exception):
            raise body
        resp = requests.Response()
        resp.status_code = status
        resp.raw = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
        resp.headers = CaseInsensitiveDict({"Content-Type": "application/json", **headers})
        resp.url = request.url or ""
        resp.request = request
        resp.reason = "scripted"
        return resp

    def close(self) -> None:
        pass


def scripted_client(*answers: Any, max_attempts: int = 3) -> tuple[FalClient, Scripted, list[float]]:
    transport = Scripted(*answers)
    session = requests.Session()
    session.mount("https://", transport)
    sleeps: list[float] = []
    client = FalClient(
        "https://queue.test", lambda: KEY, session=session, max_attempts=max_attempts, sleep=sleeps.append
    )
    return client, transport, sleeps


FAKE_REQ = FalRequest(
    request_id="r1",
    status_url="https://queue.test/o/a/requests/r1/status",
    response_url="https://queue.test/o/a/requests/r1",
    cancel_url="https://queue.test/o/a/requests/r1/cancel",
)
SUBMITTED = {"request_id": "r1", **FAKE_REQ.model_dump(exclude={"request_id"}), "status": "IN_QUEUE"}


# --- lifecycle against the simulator ---------------------------------------------------------


def test_full_lifecycle_with_subpath_model_and_real_mp4(sim: FalSimulator, client: FalClient) -> None:
    req = client.submit(MODEL, MODEL_INPUT, None)

    # status/result/cancel live under owner/app only, never under the full model path
    root = f"{sim.base_url}/fal-ai/kling-video/requests/{req.request_id}"
    assert (req.status_url, req.response_url, req.cancel_url) == (f"{root}/status", root, f"{root}/cancel")
    assert sim.requests[req.request_id]["model_id"] == MODEL

    assert run_to_completion(client, req) == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    final = client.status(req)
    assert final.error is None and final.last_message == "Generation complete"

    result = client.result(req)
    assert result.ok and result.content_type == "video/mp4"
    video = requests.get(result.video_url or "", timeout=5)
    assert video.status_code == 200 and video.headers["Content-Type"] == "video/mp4"
    assert int(video.headers["Content-Length"]) == len(video.content) > 1000
    assert video.content[4:8] == b"ftyp"
    assert sim.stats()["completed"] == 1


def test_status_answers_have_fal_shapes(sim: FalSimulator, client: FalClient) -> None:
    sim.set_config(queue_s=0.3, run_s=0.3)
    req = client.submit(MODEL, MODEL_INPUT, None)
    headers = {"Authorization": f"Key {KEY}"}

    queued = requests.get(req.status_url, headers=headers, timeout=5)
    assert queued.status_code == 202
    assert queued.json()["status"] == "IN_QUEUE" and queued.json()["queue_position"] == 0

    time.sleep(0.4)
    running = requests.get(req.status_url, params={"logs": "1"}, headers=headers, timeout=5)
    assert running.status_code == 202 and running.json()["status"] == "IN_PROGRESS"
    assert running.json()["logs"][0]["message"] == "Starting generation"
    assert requests.get(req.status_url, params={"logs": "0"}, headers=headers, timeout=5).json()["logs"] is None

    time.sleep(0.3)
    done = requests.get(req.status_url, params={"logs": "1"}, headers=headers, timeout=5)
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "COMPLETED" and "logs" in body and "inference_time" in body["metrics"]
    assert "error" not in body
    # a result is the model output itself
    output = requests.get(req.response_url, headers=headers, timeout=5).json()
    assert set(output["video"]) == {"url", "content_type", "file_name", "file_size"}


def test_queue_position_decreases(sim: FalSimulator, client: FalClient) -> None:
    sim.set_config(queue_s=2.2, run_s=0.1)
    req = client.submit(MODEL, MODEL_INPUT, None)
    first = client.status(req).queue_position
    time.sleep(1.05)
    second = client.status(req).queue_position
    assert first is not None and second is not None and first > second >= 0
    assert client.cancel(req) == "requested"


def test_failed_run_is_completed_with_a_generic_500(sim: FalSimulator, client: FalClient) -> None:
    sim.set_config(fail_rate=1)
    req = client.submit(MODEL, MODEL_INPUT, None)
    run_to_completion(client, req)
    status = client.status(req)
    assert (status.status, status.error, status.error_type) == (
        "COMPLETED",
        "Invalid status code: 500",
        "internal_error",
    )
    with pytest.raises(FalTransientError, match="500 internal_error"):  # the model's own 500, as fal relays it
        client.result(req)
    assert sim.stats()["failures"] == 1


@pytest.mark.parametrize(
    ("knob", "code", "field", "stat"),
    [
        ("fail_rate", FailureCode.GENERATION_FAILED, None, "failures"),
        ("invalid_input_rate", FailureCode.INVALID_INPUT, "image_url", "invalid_input_failures"),
        ("content_policy_rate", FailureCode.CONTENT_POLICY, "prompt", "content_policy_failures"),
        ("provider_timeout_rate", FailureCode.PROVIDER_TIMEOUT, None, "provider_timeout_failures"),
    ],
)
def test_each_injected_failure_reads_as_its_code_from_the_status_result_and_webhook(
    sim: FalSimulator, client: FalClient, receiver: Receiver, knob: str, code: FailureCode, field: str | None, stat: str
) -> None:
    sim.set_config(**{knob: 1})
    req = client.submit(MODEL, MODEL_INPUT, receiver.url)
    run_to_completion(client, req)
    status = client.status(req)
    assert status.failure is not None
    try:
        result = client.result(req)
    except FalTransientError:  # a 5xx result: the status's own error is what the poller uses
        result = FalResult.failed(status.failure)
    assert (result.ok, result.code, result.field) == (False, code, field)
    _, _, body = wait_for(lambda: receiver.deliveries and receiver.deliveries[0])
    delivery = parse_delivery(body)
    assert delivery is not None and (delivery.result.code, delivery.result.field) == (code, field)
    assert sim.stats()[stat] == 1


def test_a_rejected_submit_is_a_final_403(sim: FalSimulator, client: FalClient) -> None:
    sim.set_config(submit_reject_rate=1)
    with pytest.raises(FalRejectedError) as refused:
        client.submit(MODEL, MODEL_INPUT, None)
    assert (refused.value.status, refused.value.error_type) == (403, "account_locked")
    assert refused.value.failure is not None and refused.value.failure.code == FailureCode.GENERATION_FAILED
    assert sim.stats()["submit_rejections"] == 1 and sim.stats()["submits"] == 0


def test_bad_media_is_served_as_something_that_is_not_a_video(sim: FalSimulator, client: FalClient) -> None:
    sim.set_config(bad_media_rate=1)
    req = client.submit(MODEL, MODEL_INPUT, None)
    run_to_completion(client, req)
    answer = requests.get(client.result(req).video_url or "", timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/plain"
    assert sim.stats()["bad_media"] == 1


def test_missing_required_input_fails_the_run_with_422(sim: FalSimulator, client: FalClient) -> None:
    req = client.submit("fal-ai/minimax/video-01", {}, None)
    run_to_completion(client, req)
    result = client.result(req)
    assert result.error == "422: body.prompt: field required"


def test_submit_errors_are_transient(sim: FalSimulator, client: FalClient) -> None:
    sim.set_config(submit_error_rate=1)
    seen = set()
    for _ in range(8):
        with pytest.raises(FalTransientError) as exc:
            client.submit(MODEL, MODEL_INPUT, None)
        seen.add(exc.value.status)
        if exc.value.status == 429:
            assert exc.value.retry_after_s == 1.0
        else:
            assert exc.value.error_type == "runner_scheduling_failure"
    assert seen == {429, 503}
    assert sim.stats()["submit_errors"] == 8 and sim.stats()["submits"] == 0


def test_missing_key_is_rejected(sim: FalSimulator) -> None:
    raw = requests.post(f"{sim.base_url}/{MODEL}", json=MODEL_INPUT, timeout=5)
    assert raw.status_code == 401
    assert raw.json()["error_type"] == raw.headers["X-Fal-Error-Type"] == "unauthorized"
    assert "detail" in raw.json()

    with pytest.raises(FalRejectedError) as exc:
        FalClient(sim.base_url, lambda: "").submit(MODEL, MODEL_INPUT, None)
    assert exc.value.status == 401 and sim.stats()["submits"] == 0


def test_other_auth_schemes_are_rejected(sim: FalSimulator) -> None:
    headers = {"Authorization": "Bearer nope"}
    raw = requests.put(f"{sim.base_url}/fal-ai/kling-video/requests/x/cancel", headers=headers, timeout=5)
    assert raw.status_code == 401 and raw.headers["X-Fal-Error-Type"] == "unauthorized"


def test_cancel_queued_request(sim: FalSimulator, client: FalClient) -> None:
    sim.set_config(queue_s=5)
    req = client.submit(MODEL, MODEL_INPUT, None)
    assert client.status(req).status == "IN_QUEUE"
    assert client.cancel(req) == "requested"
    status = client.status(req)
    assert status.status == "COMPLETED" and status.error and status.error_type == "request_cancelled"
    assert client.result(req).error
    assert client.cancel(req) == "already_completed"
    assert sim.stats()["cancelled"] == 1


def test_cancel_running_request_only_signals_it(sim: FalSimulator, client: FalClient) -> None:
    sim.set_config(queue_s=0, run_s=0.3)
    req = client.submit(MODEL, MODEL_INPUT, None)
    assert client.status(req).status == "IN_PROGRESS"
    assert client.cancel(req) == "requested"
    run_to_completion(client, req)
    assert client.result(req).ok


def test_cancel_completed_and_unknown(sim: FalSimulator, client: FalClient) -> None:
    req = client.submit(MODEL, MODEL_INPUT, None)
    run_to_completion(client, req)
    assert client.cancel(req) == "already_completed"
    unknown = req.model_copy(update={"cancel_url": req.cancel_url.replace(req.request_id, "no-such-id")})
    assert client.cancel(unknown) == "not_found"
    with pytest.raises(FalRejectedError) as exc:
        client.status(req.model_copy(update={"status_url": req.status_url.replace(req.request_id, "nope")}))
    assert exc.value.status == 404


def test_calls_on_each_request_are_counted(sim: FalSimulator, client: FalClient) -> None:
    """The inspection view counts status, result and cancel calls per request (so a test can
    measure that a path did not call fal); calls that reach no request count nowhere."""
    sim.set_config(queue_s=5)
    req = client.submit(MODEL, MODEL_INPUT, None)
    other = client.submit(MODEL, MODEL_INPUT, None)
    client.status(req)
    client.status(req)
    client.result(req)  # still queued: an error answer, still a call
    client.cancel(req)
    client.cancel(req)  # already completed (cancelled)
    with pytest.raises(FalRejectedError):  # a request fal does not know under this app
        client.status(req.model_copy(update={"status_url": req.status_url.replace("kling-video", "veo3.1")}))
    headers = {"Authorization": f"Key {KEY}"}
    assert requests.get(req.status_url, timeout=5).status_code == 401  # refused: not a call on it
    assert requests.get(req.response_url, headers=headers, timeout=5).status_code == 400  # cancelled

    def counts(view: dict[str, Any]) -> tuple[int, int, int]:
        return view["status_calls"], view["result_calls"], view["cancel_calls"]

    assert counts(sim.requests[req.request_id]) == (2, 2, 2)
    assert counts(sim.requests[other.request_id]) == (0, 0, 0)
    over_http = requests.get(f"{sim.base_url}/_sim/requests", timeout=5).json()
    assert counts(over_http[req.request_id]) == (2, 2, 2)
    client.cancel(other)


def test_result_before_completion_is_an_error_answer(sim: FalSimulator, client: FalClient) -> None:
    sim.set_config(queue_s=5)
    req = client.submit(MODEL, MODEL_INPUT, None)
    assert client.result(req).error
    client.cancel(req)


# --- webhooks ------------------------------------------------------------------------------------


def test_webhook_is_delivered_and_verifies(sim: FalSimulator, client: FalClient, receiver: Receiver) -> None:
    req = client.submit(MODEL, MODEL_INPUT, receiver.url)
    assert sim.requests[req.request_id]["webhook_url"] == receiver.url  # url-encoded on the way, intact here

    path, headers, body = wait_for(lambda: receiver.deliveries and receiver.deliveries[0])
    assert path == receiver.url.split(f":{receiver.server.server_address[1]}", 1)[1]
    WebhookVerifier(sim.jwks_url).verify(headers, body)
    payload = json.loads(body)
    assert payload["request_id"] == req.request_id == headers["X-Fal-Webhook-Request-Id"]
    assert payload["status"] == "OK" and payload["error"] is None
    assert payload["payload"]["video"]["url"] == client.result(req).video_url
    assert set(payload) == {"request_id", "gateway_request_id", "status", "payload", "error"}
    wait_for(lambda: sim.stats()["webhooks_sent"] == 1)


def test_webhook_for_failed_run(sim: FalSimulator, client: FalClient, receiver: Receiver) -> None:
    sim.set_config(fail_rate=1)
    client.submit(MODEL, MODEL_INPUT, receiver.url)
    _, headers, body = wait_for(lambda: receiver.deliveries and receiver.deliveries[0])
    WebhookVerifier(sim.jwks_url).verify(headers, body)
    payload = json.loads(body)
    assert payload["status"] == "ERROR" and payload["error"] and payload["payload"]["detail"]


def test_cancel_webhook_can_be_delivered_before_the_cancel_answers(
    sim: FalSimulator, client: FalClient, receiver: Receiver
) -> None:
    sim.set_config(queue_s=30, webhook_delay_s=5, cancel_webhook_first_rate=1)
    req = client.submit(MODEL, MODEL_INPUT, receiver.url)
    assert client.cancel(req) == "requested"
    assert len(receiver.deliveries) == 1  # already there when the cancel call answered (no delay)
    _, headers, body = receiver.deliveries[0]
    WebhookVerifier(sim.jwks_url).verify(headers, body)
    payload = json.loads(body)
    assert payload["status"] == "ERROR" and payload["error"] == "Request was cancelled"
    assert sim.stats()["cancel_webhooks_first"] == 1 and sim.stats()["webhooks_sent"] == 1


def test_webhook_with_tampered_body_fails_verification(
    sim: FalSimulator, client: FalClient, receiver: Receiver
) -> None:
    from videogen.domain.errors import InvalidSignature

    client.submit(MODEL, MODEL_INPUT, receiver.url)
    _, headers, body = wait_for(lambda: receiver.deliveries and receiver.deliveries[0])
    with pytest.raises(InvalidSignature):
        WebhookVerifier(sim.jwks_url).verify(headers, body.replace(b'"OK"', b'"ERROR"'))


def test_webhook_duplicated(sim: FalSimulator, client: FalClient, receiver: Receiver) -> None:
    sim.set_config(webhook_duplicate_rate=1)
    client.submit(MODEL, MODEL_INPUT, receiver.url)
    wait_for(lambda: len(receiver.deliveries) == 2)
    assert receiver.deliveries[0][2] == receiver.deliveries[1][2]
    assert sim.stats()["webhooks_duplicated"] == 1


def test_webhook_dropped(sim: FalSimulator, client: FalClient, receiver: Receiver) -> None:
    sim.set_config(webhook_drop_rate=1)
    req = client.submit(MODEL, MODEL_INPUT, receiver.url)
    run_to_completion(client, req)
    wait_for(lambda: sim.stats()["webhooks_dropped"] == 1)
    time.sleep(0.3)
    assert receiver.deliveries == []


def test_webhook_retried_after_error_answer(sim: FalSimulator, client: FalClient, receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    client.submit(MODEL, MODEL_INPUT, receiver.url)
    wait_for(lambda: sim.stats()["webhooks_sent"] == 1)
    assert len(receiver.deliveries) == 3 and sim.stats()["webhook_retries"] == 2
    for _, headers, body in receiver.deliveries:  # every attempt is signed afresh
        WebhookVerifier(sim.jwks_url).verify(headers, body)


def test_webhook_delayed(sim: FalSimulator, client: FalClient, receiver: Receiver) -> None:
    sim.set_config(webhook_delay_s=[0.4, 0.4])
    req = client.submit(MODEL, MODEL_INPUT, receiver.url)
    run_to_completion(client, req)
    done = time.monotonic()
    wait_for(lambda: receiver.deliveries)
    assert time.monotonic() - done >= 0.25 and sim.stats()["webhooks_delayed"] == 1


def test_rotated_key_signs_and_verifier_refetches(sim: FalSimulator, client: FalClient, receiver: Receiver) -> None:
    verifier = WebhookVerifier(sim.jwks_url, min_refetch_interval_s=0)
    client.submit(MODEL, MODEL_INPUT, receiver.url)
    _, headers, body = wait_for(lambda: receiver.deliveries and receiver.deliveries[0])
    verifier.verify(headers, body)
    assert verifier.fetch_count == 1

    sim.rotate_key()
    assert len(sim.jwks()["keys"]) == 2
    client.submit(MODEL, MODEL_INPUT, receiver.url)
    _, headers, body = wait_for(lambda: len(receiver.deliveries) == 2 and receiver.deliveries[1])
    verifier.verify(headers, body)
    assert verifier.fetch_count == 2


def test_jwks_format(sim: FalSimulator) -> None:
    keys = requests.get(sim.jwks_url, timeout=5).json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519" and keys[0]["kid"]
    assert "=" not in keys[0]["x"] and len(keys[0]["x"]) == 43
    sim.rotate_key(keep_old=False)
    assert [k["kid"] for k in sim.jwks()["keys"]] == [sim.signing_kid]


# --- CDN and control API --------------------------------------------------------------------------


def test_large_video_is_padded_and_still_playable(sim: FalSimulator, client: FalClient, tmp_path: Any) -> None:
    sim.set_config(video_bytes=300_000)
    req = client.submit(MODEL, MODEL_INPUT, None)
    run_to_completion(client, req)
    url = client.result(req).video_url or ""
    with requests.get(url, stream=True, timeout=5) as resp:
        assert resp.headers["Content-Length"] == "300000"
        data = b"".join(resp.iter_content(65536))
    assert len(data) == 300_000 and data[4:8] == b"ftyp"
    base = media.sample_mp4()
    assert data[: len(base)] == base and data[len(base) + 4 : len(base) + 8] == b"free"
    path = tmp_path / "v.mp4"
    path.write_bytes(data)
    import imageio_ffmpeg

    decoded = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        timeout=30,
    )
    assert decoded.returncode == 0 and decoded.stderr == b""


def test_huge_padding_uses_a_64_bit_box_header() -> None:
    chunks = media.padded_chunks(b"\x00\x00\x00\x08ftyp", 8 + 2**32 + 100)
    assert next(chunks) == b"\x00\x00\x00\x08ftyp"
    header = next(chunks)
    assert header[:8] == b"\x00\x00\x00\x01free" and int.from_bytes(header[8:], "big") == 2**32 + 100


def test_bundled_sample_is_the_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import imageio_ffmpeg

    def missing() -> str:
        raise RuntimeError("no ffmpeg here")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    assert media.generate_mp4(tmp_path / "x.mp4") is False and not (tmp_path / "x.mp4").exists()
    assert media.is_mp4(media.FALLBACK_MP4.read_bytes())


def test_cdn_errors(sim: FalSimulator, client: FalClient) -> None:
    req = client.submit(MODEL, MODEL_INPUT, None)
    run_to_completion(client, req)
    url = client.result(req).video_url or ""
    sim.set_config(cdn_error_rate=1)
    kinds = set()
    for _ in range(8):
        try:
            resp = requests.get(url, timeout=5)
            kinds.add(resp.status_code)
        except requests.exceptions.ChunkedEncodingError:
            kinds.add("truncated")
    assert kinds == {503, "truncated"} and sim.stats()["cdn_errors"] == 8
    sim.set_config(cdn_error_rate=0)
    assert requests.get(url, timeout=5).content[4:8] == b"ftyp"
    assert requests.get(f"{sim.base_url}/cdn/unknown.mp4", timeout=5).status_code == 404


def test_config_and_stats_endpoints(sim: FalSimulator) -> None:
    assert requests.put(f"{sim.base_url}/_sim/config", json={"nope": 1}, timeout=5).status_code == 400
    assert requests.put(f"{sim.base_url}/_sim/config", json={"fail_rate": 2}, timeout=5).status_code == 400
    assert requests.put(f"{sim.base_url}/_sim/config", json={"run_s": [2, 1]}, timeout=5).status_code == 400
    ok = requests.put(f"{sim.base_url}/_sim/config", json={"fail_rate": 0.5, "run_s": [1, 2]}, timeout=5)
    assert ok.status_code == 200 and ok.json()["fail_rate"] == 0.5 and ok.json()["run_s"] == [1.0, 2.0]
    assert requests.get(f"{sim.base_url}/_sim/config", timeout=5).json() == sim.config
    stats = requests.get(f"{sim.base_url}/_sim/stats", timeout=5).json()
    assert {"submit_errors", "failures", "webhooks_dropped", "webhooks_duplicated", "webhooks_delayed"} <= set(stats)
    assert {"cdn_errors", "submits", "completed", "cancelled", "webhooks_sent", "webhook_retries"} <= set(stats)
    with pytest.raises(ValueError):
        sim.set_config(unknown_key=1)


@pytest.mark.parametrize(
    "updates",
    [
        {"queue_s": 1e10},  # past threading.TIMEOUT_MAX: it once killed the timer thread
        {"run_s": 1e308},
        {"webhook_delay_s": [0, 1e308]},
        {"webhook_retry_base_s": 1e10},
        {"webhook_timeout_s": 1e308},
        {"result_ttl_s": 86_401},
    ],
)
def test_config_durations_beyond_a_day_are_refused(sim: FalSimulator, updates: dict[str, Any]) -> None:
    before = sim.config
    answer = requests.put(f"{sim.base_url}/_sim/config", json=updates, timeout=5)
    assert answer.status_code == 400 and "86400" in answer.text
    assert sim.config == before
    assert requests.put(f"{sim.base_url}/_sim/config", json={"queue_s": 86_400}, timeout=5).status_code == 200


def test_the_timer_thread_survives_a_timer_it_cannot_wait_for() -> None:
    scheduler = Scheduler(name="falsim-timers-test")
    scheduler.start()
    ran = threading.Event()
    try:
        scheduler.schedule(time.time() + 1e10, lambda: None)  # beyond threading.TIMEOUT_MAX
        scheduler.schedule(float("nan"), lambda: None)
        time.sleep(0.05)
        scheduler.schedule(time.time(), ran.set)
        assert ran.wait(2), "the timer thread died"
    finally:
        scheduler.stop()


def _raw_exchange(sim: FalSimulator, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; the status line of the answer (b"" if none)."""
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as conn:
        conn.sendall(data)
        answer = b""
        while b"\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"POST /fal-ai/minimax/video-01 HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST /fal-ai/minimax/video-01 HTTP/1.1\r\nAuthorization: Key k\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"POST /fal-ai/minimax/video-01 HTTP/1.1\r\nAuthorization: Key k\r\nContent-Length: 4\r\n\r\n\xff\xfe{}", 422),
        (
            b"POST /fal-ai/minimax/video-01 HTTP/1.1\r\nAuthorization: Key k\r\nContent-Length: 50000\r\n\r\n"
            + b"[" * 50000,
            422,
        ),
        (b'PUT /_sim/config HTTP/1.1\r\nContent-Length: 16\r\n\r\n{"queue_s": NaN}', 400),
        (b"GET /fal-ai%2Fx/y/requests/a/status HTTP/1.1\r\nAuthorization: Key k\r\n\r\n", 404),
        (b"GET /\xff/requests/a/status HTTP/1.1\r\n\r\n", 400),
        (b"PATCH /fal-ai/minimax/video-01 HTTP/1.1\r\n\r\n", 405),
    ],
)
def test_malformed_requests_get_an_answer_and_no_traceback(
    sim: FalSimulator, caplog: pytest.LogCaptureFixture, raw: bytes, status: int
) -> None:
    caplog.set_level("DEBUG")
    request_line, _, rest = raw.partition(b"\r\n")
    answer = _raw_exchange(sim, request_line + b"\r\nHost: x\r\nConnection: close\r\n" + rest)
    assert answer.split(b" ")[1] == str(status).encode(), answer
    assert not [r for r in caplog.records if r.exc_info or r.levelname in {"ERROR", "CRITICAL"}]
    assert requests.get(f"{sim.base_url}/_sim/stats", timeout=5).status_code == 200  # still serving


def test_stop_ends_the_simulator_threads() -> None:
    simulator = FalSimulator(port=0).start()
    url = simulator.base_url
    simulator.stop()
    time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name.startswith("falsim-") and t.is_alive()]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_sim/stats", timeout=2)


# --- client error handling (scripted transport) -----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        *[(code, "ok") for code in (200, 202)],
        *[(code, "rejected") for code in (400, 401, 403, 404, 422)],
        *[(code, "transient") for code in (408, 409, 429, 500, 502, 503, 504)],
    ],
)
def test_classification_table(code: int, kind: str) -> None:
    assert classify_status(code) == kind
    client, transport, _ = scripted_client((code, {"detail": "x", "error_type": "t", "status": "IN_QUEUE"}))
    if kind == "ok":
        assert client.status(FAKE_REQ).status == "IN_QUEUE"
    elif kind == "transient":
        with pytest.raises(FalTransientError) as t_exc:
            client.status(FAKE_REQ)
        assert t_exc.value.status == code and len(transport.calls) == 3
    else:
        with pytest.raises(FalRejectedError) as r_exc:
            client.status(FAKE_REQ)
        assert r_exc.value.status == code and r_exc.value.error_type == "t" and len(transport.calls) == 1


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        *[(code, "error") for code in (400, 404, 422)],
        *[(code, FalRejectedError) for code in (401, 403)],
        *[(code, FalTransientError) for code in (429, 500, 504)],
    ],
)
def test_result_error_table(code: int, outcome: Any) -> None:
    client, _, _ = scripted_client((code, {"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]}))
    if outcome == "error":
        assert client.result(FAKE_REQ).error == f"{code}: body.prompt: field required"
    else:
        with pytest.raises(outcome):
            client.result(FAKE_REQ)


def test_a_status_answer_with_an_absurd_queue_position_is_clamped() -> None:
    # What the simulator answered to queue_s=1e308: a 309-digit integer DynamoDB cannot hold.
    client, _, _ = scripted_client((200, {"status": "IN_QUEUE", "queue_position": 10**308}))
    assert client.status(FAKE_REQ).queue_position == MAX_QUEUE_POSITION


def test_result_without_video_is_an_error() -> None:
    client, _, _ = scripted_client((200, {"images": []}))
    assert client.result(FAKE_REQ).error == "no video in result"
    client, _, _ = scripted_client((200, {"video": {"url": "https://v3.fal.media/x.mp4"}}))
    assert client.result(FAKE_REQ).video_url == "https://v3.fal.media/x.mp4"


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ((202, {"status": "CANCELLATION_REQUESTED"}), "requested"),
        ((400, {"status": "ALREADY_COMPLETED"}), "already_completed"),
        ((404, {"detail": "Request not found"}), "not_found"),
        ((400, {"status": "NOT_FOUND"}), "not_found"),
    ],
)
def test_cancel_outcomes(answer: tuple[int, Any], outcome: str) -> None:
    client, transport, _ = scripted_client(answer)
    assert client.cancel(FAKE_REQ) == outcome
    assert transport.calls[0].method == "PUT" and transport.calls[0].url == FAKE_REQ.cancel_url


def test_retry_after_is_honoured() -> None:
    client, transport, sleeps = scripted_client(
        (429, {"detail": "slow down"}, {"Retry-After": "2"}), (202, {"status": "IN_PROGRESS", "logs": None})
    )
    assert client.status(FAKE_REQ).status == "IN_PROGRESS"
    assert sleeps == [2.0] and len(transport.calls) == 2


def test_retry_after_beyond_the_cap_is_not_slept_through() -> None:
    client, transport, sleeps = scripted_client((503, {"detail": "busy"}, {"Retry-After": "120"}))
    with pytest.raises(FalTransientError) as exc:
        client.status(FAKE_REQ)
    assert exc.value.retry_after_s == 120 and sleeps == [] and len(transport.calls) == 1


def test_transient_retries_are_bounded_with_backoff() -> None:
    client, transport, sleeps = scripted_client((502, b"<html>bad gateway</html>"), max_attempts=4)
    with pytest.raises(FalTransientError):
        client.result(FAKE_REQ)
    assert len(transport.calls) == 4 and len(sleeps) == 3
    assert all(0 < s <= 2.0 for s in sleeps) and sleeps[2] > sleeps[0]


def test_transport_errors_are_retried_then_transient() -> None:
    client, transport, sleeps = scripted_client(
        (0, requests.ConnectionError("boom")), (0, requests.ReadTimeout("slow")), (200, {"status": "COMPLETED"})
    )
    assert client.status(FAKE_REQ).status == "COMPLETED" and len(sleeps) == 2 and len(transport.calls) == 3
    client, _, _ = scripted_client((0, requests.ReadTimeout("slow")))
    with pytest.raises(FalTransientError) as exc:
        client.status(FAKE_REQ)
    assert exc.value.error_type == "timeout"


def test_submit_is_never_retried_in_process() -> None:
    client, transport, sleeps = scripted_client((503, {"detail": "x", "error_type": "runner_scheduling_failure"}))
    with pytest.raises(FalTransientError):
        client.submit(MODEL, MODEL_INPUT, "https://api.test/webhooks/fal?token=a&b=c")
    assert len(transport.calls) == 1 and sleeps == []
    sent = transport.calls[0]
    assert (
        sent.url
        == f"https://queue.test/{MODEL}?fal_webhook=https%3A%2F%2Fapi.test%2Fwebhooks%2Ffal%3Ftoken%3Da%26b%3Dc"
    )
    assert sent.headers["Authorization"] == f"Key {KEY}"
    client, transport, _ = scripted_client((0, requests.ReadTimeout("slow")))
    with pytest.raises(FalTransientError) as exc:
        client.submit(MODEL, MODEL_INPUT, "https://api.test/webhooks/fal?token=secret-token")
    assert "secret-token" not in str(exc.value) and len(transport.calls) == 1


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        ((429, {"detail": "slow down", "error_type": "rate_limited"}), True),
        ((503, {"detail": "x", "error_type": "runner_scheduling_failure"}), True),
        ((408, {"detail": "x"}), True),
        ((0, requests.ConnectTimeout("never connected")), True),
        ((500, {"detail": "x", "error_type": "internal_error"}), False),
        ((502, {"detail": "x"}), False),
        ((504, {"detail": "x", "error_type": "request_timeout"}), False),
        ((0, requests.ReadTimeout("sent, no answer")), False),
        ((0, requests.ConnectionError("reset")), False),
        ((200, {"request_id": "r"}), False),  # an unusable 2xx: fal may have queued it
    ],
    ids=["429", "503", "408", "connect-timeout", "500", "502", "504", "read-timeout", "reset", "protocol"],
)
def test_a_submit_fal_certainly_took_nothing_for_is_marked_refused(answer: tuple[int, Any], refused: bool) -> None:
    """SubmitToFal counts a resubmission only when an earlier attempt may have reached fal."""
    client, _, _ = scripted_client(answer)
    with pytest.raises(FalTransientError) as exc:
        client.submit(MODEL, MODEL_INPUT, None)
    assert exc.value.refused is refused


def test_submit_answer_missing_a_url_is_a_protocol_error() -> None:
    client, _, _ = scripted_client((200, {k: v for k, v in SUBMITTED.items() if k != "cancel_url"}))
    with pytest.raises(FalTransientError) as exc:
        client.submit(MODEL, MODEL_INPUT, None)
    assert exc.value.error_type == "protocol_error"
    client, _, _ = scripted_client((200, b"<html>captive portal</html>"))
    with pytest.raises(FalTransientError):
        client.submit(MODEL, MODEL_INPUT, None)
    client, _, _ = scripted_client((200, SUBMITTED))
    assert client.submit(MODEL, MODEL_INPUT, None) == FAKE_REQ


def test_submit_rejects_a_bad_model_id() -> None:
    client, transport, _ = scripted_client((200, SUBMITTED))
    for bad in ["../admin", "fal-ai", "fal-ai/../x", "fal ai/x", "fal-ai/x?y=1"]:
        with pytest.raises(ValueError):
            client.submit(bad, {}, None)
    assert transport.calls == []


def test_the_key_never_appears_in_errors() -> None:
    client, _, _ = scripted_client((400, {"detail": f"invalid key {KEY}", "error_type": "bad_request"}))
    with pytest.raises(FalRejectedError) as exc:
        client.status(FAKE_REQ)
    assert KEY not in str(exc.value) and KEY not in exc.value.detail


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


# --- key provider ---------------------------------------------------------------------------------


def test_key_provider_local_key() -> None:
    assert fal_key_provider(Settings(fal_key="local-key"))() == "local-key"


def test_key_provider_reads_ssm_or_secrets_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools.utilities import parameters

    calls: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(parameters, "get_parameter", lambda n, **kw: calls.append(("ssm", n, kw)) or "ssm-key\n")
    monkeypatch.setattr(
        parameters, "get_secret", lambda n, **kw: calls.append(("sm", n, kw)) or '{"FAL_KEY": "sm-key"}'
    )

    assert fal_key_provider(Settings(fal_key_parameter="/videogen/fal-key"))() == "ssm-key"
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:fal-key-AbCdEf"
    assert fal_key_provider(Settings(fal_key_parameter=arn))() == "sm-key"
    assert calls == [
        ("ssm", "/videogen/fal-key", {"decrypt": True, "max_age": 300}),
        ("sm", arn, {"max_age": 300}),
    ]
    with pytest.raises(ValueError):
        fal_key_provider(Settings())


def test_key_provider_failure_is_transient() -> None:
    def broken() -> str:
        raise RuntimeError("AccessDenied for secret sk-123")

    client = FalClient("https://queue.test", broken, sleep=lambda s: None)
    with pytest.raises(FalTransientError) as exc:
        client.status(FAKE_REQ)
    assert "sk-123" not in str(exc.value)


def test_submit_answer_with_urls_off_the_queue_origin_is_refused() -> None:
    """The key is sent with every status/result/cancel call: URLs elsewhere are never used."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Evil(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = json.dumps(
                {
                    "request_id": "r1",
                    "status_url": "https://attacker.example/r1/status",
                    "response_url": "https://attacker.example/r1",
                    "cancel_url": "http://x@127.0.0.1/c",
                }
            )
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = FalClient(f"http://127.0.0.1:{server.server_address[1]}", lambda: "k")
        with pytest.raises(FalTransientError) as exc:
            client.submit("fal-ai/minimax/video-01", {"prompt": "p"}, None)
        assert exc.value.error_type == "protocol_error"
    finally:
        server.shutdown()
