"""POST /webhooks/fal through the local gateway, the webhook/poll race, the transfer guards on
the completion path, and cancel — with the state machine NOT running, so each actor is driven
by the test itself."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from videogen import wiring
from videogen.domain.media import poster_key
from videogen.domain.models import JobStatus


def _submitted_job(stack, **sim) -> tuple[str, object]:
    """A job handed to the simulator by the real SubmitToFal task (no webhook will be sent)."""
    stack.sim.set_config(**{"queue_s": 0.05, "run_s": 0.1, "webhook_drop_rate": 1, **sim})
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    assert wiring.submit_to_fal().run(job_id) == {"done": False}
    return token, stack.job(job_id)


def _wait_sim_done(stack, request_id: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if stack.sim.requests[request_id]["status"] == "COMPLETED":
            return
        time.sleep(0.05)
    raise AssertionError("simulator request never completed")


def _deliver(
    stack,
    job,
    body: dict | bytes,
    *,
    token: str | None = None,
    headers: dict | None = None,
    timestamp: int | None = None,
    job_id: str | None = None,
    mac: bool = False,
):
    """POST ``body`` signed by the simulator (for the body's request id, else the job's) to the
    job's webhook URL; ``mac``: with the job's MAC, as in the URL we hand fal."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    named = body.get("request_id") if isinstance(body, dict) else None
    request_id = named or (job.fal.request_id if job.fal else "unknown")
    ts = str(int(time.time()) if timestamp is None else timestamp)
    hdrs = {
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": stack.sim.user_id,
        "x-fal-webhook-timestamp": ts,
        "x-fal-webhook-signature": stack.sim.sign(request_id, ts, raw),
        **(headers or {}),
    }
    tok = token if token is not None else wiring.webhook_links().token()
    path = f"/webhooks/fal?token={tok}&job_id={job_id or job.id}"
    if mac:
        path += f"&mac={wiring.webhook_links().mac(job_id or job.id)}"
    return stack.request("POST", path, raw=raw, headers=hdrs)


def _ok_body(stack, job) -> dict:
    return {
        "request_id": job.fal.request_id,
        "gateway_request_id": job.fal.request_id,
        "status": "OK",
        "payload": {
            "video": {"url": f"{stack.sim.base_url}/cdn/{job.fal.request_id}.mp4", "content_type": "video/mp4"}
        },
        "error": None,
    }


def test_valid_delivery_completes_and_duplicates_change_nothing(stack):
    _, job = _submitted_job(stack)
    _wait_sim_done(stack, job.fal.request_id)
    first = _deliver(stack, job, _ok_body(stack, job))
    assert first.status == 200 and first.json["status"] == "completed"
    done = stack.settled_job(job.id)  # with its poster and metadata
    again = _deliver(stack, job, _ok_body(stack, job))
    assert again.status == 200
    assert stack.job(job.id) == done  # not even updated_at moved


@pytest.mark.parametrize(
    "case",
    ["bad_token", "no_token", "missing_signature", "tampered_body", "wrong_key", "stale_timestamp", "future_timestamp"],
)
def test_rejected_deliveries_are_401_and_change_nothing(stack, case):
    _, job = _submitted_job(stack)
    body = _ok_body(stack, job)
    raw = json.dumps(body).encode()
    if case == "bad_token":
        reply = _deliver(stack, job, raw, token="not-the-token")
    elif case == "no_token":
        reply = _deliver(stack, job, raw, token="")
    elif case == "missing_signature":
        reply = _deliver(stack, job, raw, headers={"x-fal-webhook-signature": ""})
    elif case == "tampered_body":
        ts = str(int(time.time()))
        sig = stack.sim.sign(job.fal.request_id, ts, raw)
        evil = raw.replace(b"/cdn/", b"/cdn/../")
        reply = _deliver(stack, job, evil, headers={"x-fal-webhook-signature": sig, "x-fal-webhook-timestamp": ts})
    elif case == "wrong_key":
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        other = Ed25519PrivateKey.generate()
        ts = str(int(time.time()))
        import hashlib

        msg = f"{job.fal.request_id}\n{stack.sim.user_id}\n{ts}\n{hashlib.sha256(raw).hexdigest()}".encode()
        reply = _deliver(
            stack, job, raw, headers={"x-fal-webhook-signature": other.sign(msg).hex(), "x-fal-webhook-timestamp": ts}
        )
    elif case == "stale_timestamp":
        reply = _deliver(stack, job, raw, timestamp=int(time.time()) - 301)
    else:
        reply = _deliver(stack, job, raw, timestamp=int(time.time()) + 301)
    assert reply.status == 401
    assert reply.json["code"] == "invalid_signature"
    assert stack.job(job.id).status == JobStatus.SUBMITTED


def test_rotated_signing_key_is_picked_up_from_the_jwks(stack, monkeypatch):
    monkeypatch.setenv("JWKS_MIN_REFETCH_S", "0")  # the default (10 s) rate-limits unknown-key refetches
    wiring.reset()
    _, job = _submitted_job(stack)
    _wait_sim_done(stack, job.fal.request_id)
    _deliver(stack, job, {"request_id": job.fal.request_id, "status": "IGNORED"})  # warms the JWKS cache
    stack.sim.rotate_key(keep_old=False)
    reply = _deliver(stack, job, _ok_body(stack, job))
    assert reply.status == 200 and stack.job(job.id).status == JobStatus.COMPLETED


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"status": "OK"}', b'{"request_id": ""}', b"[" * 5000, b'{"request_id": "r", "x": NaN}'],
)
def test_body_that_is_not_a_fal_webhook_is_400(stack, raw):
    """Signed, yet not a webhook: 400 problem+json (a body nested 5000 deep too: never a 500)."""
    _, job = _submitted_job(stack)
    reply = _deliver(stack, job, raw)
    assert reply.status == 400 and reply.headers["content-type"] == "application/problem+json"
    assert reply.json["code"] == "bad_request"
    assert stack.job(job.id).status == JobStatus.SUBMITTED


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {
                "status": "ERROR",
                "error": "Invalid status code: 422",
                "payload": {"detail": [{"msg": "field required"}]},
            },
            "invalid_input",
        ),
        ({"status": "ERROR", "error": "Invalid status code: 500", "payload": {"detail": "boom"}}, "generation_failed"),
        (
            {"status": "OK", "payload": None, "payload_error": "Response payload is not JSON serializable"},
            "generation_failed",
        ),
        ({"status": "OK", "payload": {"images": []}}, "generation_failed"),
    ],
)
def test_error_deliveries_fail_and_refund_exactly_once(stack, body, code):
    token, job = _submitted_job(stack)
    full = {"request_id": job.fal.request_id, "gateway_request_id": "g", **body}
    assert _deliver(stack, job, full).status == 200
    assert _deliver(stack, job, full).status == 200  # a duplicate
    failed = stack.job(job.id)
    assert failed.status == JobStatus.FAILED and failed.error.code == code
    ledger = stack.request("GET", "/v1/credits", token=token).json["ledger"]
    assert [e["type"] for e in ledger].count("refund") == 1


def test_delivery_for_unknown_job_or_other_request_is_refused_as_every_other_refusal(stack):
    _, job = _submitted_job(stack)
    unknown = _deliver(stack, job, _ok_body(stack, job), job_id="vid_unknown")
    other = _deliver(stack, job, {**_ok_body(stack, job), "request_id": "someone-elses"})
    bad_token = _deliver(stack, job, _ok_body(stack, job), token="wrong")
    assert unknown.status == other.status == bad_token.status == 401
    assert unknown.body == other.body == bad_token.body and unknown.json["code"] == "invalid_signature"
    assert stack.job(job.id).status == JobStatus.SUBMITTED


def test_webhook_and_poll_race_make_one_transition_one_object_no_refund(stack):
    events = stack.event_tap()  # only the actor whose transition won publishes the event
    token, job = _submitted_job(stack)
    _wait_sim_done(stack, job.fal.request_id)
    barrier = threading.Barrier(8)

    def webhook(_):
        barrier.wait()
        return _deliver(stack, job, _ok_body(stack, job)).status

    def poll(_):
        barrier.wait()
        return wiring.check_job().run(job.id, 0, {"poll_base_s": 1, "poll_max_s": 1})["done"]

    with ThreadPoolExecutor(8) as pool:
        hooks = [pool.submit(webhook, i) for i in range(4)]
        polls = [pool.submit(poll, i) for i in range(4)]
        assert {f.result() for f in hooks} == {200}
        assert {f.result() for f in polls} == {True}
    assert events.types(job.id) == ["Job Completed"]
    keys = stack.bucket_keys()
    done = stack.job(job.id)
    assert keys == [done.video.s3_key, poster_key(done.video.s3_key)]  # one video, and its poster
    assert done.status == JobStatus.COMPLETED
    assert [e["type"] for e in stack.request("GET", "/v1/credits", token=token).json["ledger"]] == ["charge", "grant"]


@pytest.fixture
def redirector(monkeypatch):
    """An allow-listed host that redirects every request to 127.0.0.1:9 (not on the list)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/internal-metadata")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    netloc = f"127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MEDIA_ALLOWED_HOSTS", f"{os.environ['MEDIA_ALLOWED_HOSTS']},{netloc}")
    wiring.reset()
    yield f"http://{netloc}/video.mp4"
    server.shutdown()


@pytest.mark.parametrize("url_kind", ["disallowed_host", "http_elsewhere", "redirect_to_loopback"])
def test_result_urls_off_the_allow_list_fail_the_job_with_a_refund(stack, redirector, url_kind):
    _, job = _submitted_job(stack)
    if url_kind == "disallowed_host":
        url = "https://evil.example.com/video.mp4"
    elif url_kind == "http_elsewhere":
        url = "http://127.0.0.2:9/video.mp4"
    else:
        url = redirector
    body = {**_ok_body(stack, job), "payload": {"video": {"url": url}}}
    reply = _deliver(stack, job, body)
    assert reply.status == 200
    failed = stack.job(job.id)
    assert failed.status == JobStatus.FAILED and failed.error.code == "media_rejected"
    assert stack.store.get_balance(failed.user_id).balance == 10


def test_broken_transfer_leaves_the_job_active_and_the_next_delivery_finishes_it(stack):
    _, job = _submitted_job(stack)
    _wait_sim_done(stack, job.fal.request_id)
    stack.sim.set_config(cdn_error_rate=1)
    reply = _deliver(stack, job, _ok_body(stack, job))
    assert reply.status == 503  # fal will deliver again
    assert stack.job(job.id).status == JobStatus.SUBMITTED
    assert stack.s3.list_objects_v2(Bucket=stack.bucket).get("KeyCount", 0) == 0
    stack.sim.set_config(cdn_error_rate=0)
    assert _deliver(stack, job, _ok_body(stack, job)).status == 200
    assert stack.job(job.id).status == JobStatus.COMPLETED


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_a_queued_job_refunds_and_is_idempotent(stack):
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    first = stack.request("POST", f"/v1/videos/{job_id}/cancel", token=token)
    assert first.status == 200 and first.json["status"] == "canceled"
    again = stack.request("POST", f"/v1/videos/{job_id}/cancel", token=token)
    assert again.status == 200 and again.json["status"] == "canceled"
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 10
    # SubmitToFal arriving late sees a finished job and does nothing
    assert wiring.submit_to_fal().run(job_id) == {"done": True}
    assert stack.sim.stats().get("submits", 0) == 0


def test_cancel_while_in_fal_queue_cancels_at_fal(stack):
    token, job = _submitted_job(stack, queue_s=30)
    reply = stack.request("POST", f"/v1/videos/{job.id}/cancel", token=token)
    assert reply.status == 200 and reply.json["status"] == "canceled"
    assert stack.sim.stats()["cancelled"] == 1
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 10


def test_cancel_once_generating_or_finished_is_409(stack):
    token, job = _submitted_job(stack, queue_s=0, run_s=30)
    time.sleep(0.2)
    reply = stack.request("POST", f"/v1/videos/{job.id}/cancel", token=token)
    assert reply.status == 409 and reply.json["code"] == "not_cancelable"
    assert stack.job(job.id).status == JobStatus.IN_PROGRESS  # learned on the way

    token2, job2 = _submitted_job(stack)
    _wait_sim_done(stack, job2.fal.request_id)
    _deliver(stack, job2, _ok_body(stack, job2))
    assert stack.request("POST", f"/v1/videos/{job2.id}/cancel", token=token2).status == 409


def test_concurrent_cancels_refund_once(stack):
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    with ThreadPoolExecutor(10) as pool:
        statuses = list(
            pool.map(lambda _: stack.request("POST", f"/v1/videos/{job_id}/cancel", token=token).status, range(10))
        )
    assert statuses == [200] * 10
    ledger = stack.request("GET", "/v1/credits", token=token).json["ledger"]
    assert [e["type"] for e in ledger].count("refund") == 1


def _deliveries_answered(stack, request_id: str) -> list[int]:
    return [d.get("status_code", 0) for d in stack.sim.requests[request_id]["deliveries"]]


def test_cancel_in_fal_queue_when_the_cancelled_webhook_arrives_before_the_cancel_returns(stack):
    """fal delivers the cancelled request's ERROR webhook before answering our cancel (issue 8):
    the webhook, through the real gateway and handler, ends the job canceled; the call answers 200."""
    events = stack.event_tap()
    token, job = _submitted_job(stack, queue_s=30, webhook_drop_rate=0, cancel_webhook_first_rate=1)
    reply = stack.request("POST", f"/v1/videos/{job.id}/cancel", token=token)
    assert reply.status == 200 and reply.json["status"] == "canceled", reply.json
    assert stack.sim.stats()["cancel_webhooks_first"] == 1
    assert _deliveries_answered(stack, job.fal.request_id) == [200]  # it arrived (first) and was taken
    stored = stack.job(job.id)
    assert stored.status == JobStatus.CANCELED and stored.error.code == "canceled"
    ledger = stack.request("GET", "/v1/credits", token=token).json["ledger"]
    assert [e["type"] for e in ledger].count("refund") == 1
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 10
    assert events.types(job.id) == ["Job Canceled"]


def test_overlapping_cancels_of_a_job_in_fal_queue_all_answer_200(stack):
    """A double tap and an app retrying a slow cancel 20 ms later, the webhook held back 3 s."""
    token, job = _submitted_job(stack, queue_s=30, webhook_drop_rate=0, webhook_delay_s=3)

    def cancel(delay_s: float) -> tuple[int, str]:
        time.sleep(delay_s)
        reply = stack.request("POST", f"/v1/videos/{job.id}/cancel", token=token)
        return reply.status, reply.json["status"] if reply.status == 200 else reply.json["detail"]

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(cancel, [0, 0, 0.02]))
    assert answers == [(200, "canceled")] * 3
    assert stack.sim.stats()["cancelled"] == 1
    ledger = stack.request("GET", "/v1/credits", token=token).json["ledger"]
    assert [e["type"] for e in ledger].count("refund") == 1


def test_deadline_of_a_job_in_fal_queue_is_deadline_exceeded_even_when_the_webhook_comes_first(stack):
    token, job = _submitted_job(stack, queue_s=30, webhook_drop_rate=0, cancel_webhook_first_rate=1)
    done = wiring.expire_job().run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert _deliveries_answered(stack, job.fal.request_id) == [200]
    assert done.status == JobStatus.FAILED and done.error.code == "expired", done.error
    assert stack.job(job.id) == done
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 10


def test_logs_never_hold_tokens_keys_or_webhook_bodies(stack):
    import io
    import logging

    from videogen.observability import logger

    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)  # the JSON lines Lambda would ship
    logger.addHandler(handler)
    logger.setLevel("DEBUG")
    try:
        token, job = _submitted_job(stack)
        _wait_sim_done(stack, job.fal.request_id)
        body = _ok_body(stack, job)
        assert _deliver(stack, job, body).status == 200
        assert _deliver(stack, job, body, token="wrong-token").status == 401
        logs = sink.getvalue()
        assert logs  # the handlers did log
        assert f'"correlation_id":"{job.id}"' in logs  # the job id is the correlation id
        for secret in (
            wiring.webhook_links().token(),
            "local-simulator-key",
            token,
            body["payload"]["video"]["url"],
            "wrong-token",
        ):
            assert secret not in logs
    finally:
        logger.removeHandler(handler)
        logger.setLevel("WARNING")


def test_transaction_conflict_is_not_a_lost_race(stack):
    """Contention on the balance item (TransactionConflict) is retried by the adapter; when it
    persists the adapter raises StoreBusy (503 at the webhook, so fal delivers again: see
    tests/unit/test_webhook_decision.py) — the job stays active and the stored video is kept."""
    from botocore.exceptions import ClientError

    from videogen.adapters.dynamo import DynamoStore
    from videogen.domain.errors import StoreBusy
    from videogen.services.completion import JobFinisher

    conflict = ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
            "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}],
        },
        "TransactWriteItems",
    )

    class Conflicting:
        """The DynamoDB client, with its next ``failures`` TransactWriteItems lost to contention."""

        def __init__(self, failures: int) -> None:
            self.failures = failures

        def __getattr__(self, name):
            return getattr(stack.db, name)

        def transact_write_items(self, **kwargs):
            if self.failures:
                self.failures -= 1
                raise conflict
            return stack.db.transact_write_items(**kwargs)

    def finisher(failures: int) -> JobFinisher:
        store = DynamoStore(Conflicting(failures), stack.table)
        return JobFinisher(store, wiring.media(), wiring.videos(), wiring.events())

    _, job = _submitted_job(stack)
    _wait_sim_done(stack, job.fal.request_id)
    url = _ok_body(stack, job)["payload"]["video"]["url"]
    assert finisher(2).complete_from_url(job, url).status == JobStatus.COMPLETED  # absorbed by the retries

    _, job2 = _submitted_job(stack)
    _wait_sim_done(stack, job2.fal.request_id)
    with pytest.raises(StoreBusy):  # it persists
        finisher(100).complete_from_url(job2, _ok_body(stack, job2)["payload"]["video"]["url"])
    assert stack.job(job2.id).status == JobStatus.SUBMITTED
    assert stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"videos/{job2.id}/")["KeyCount"] == 1  # kept
    assert _deliver(stack, job2, _ok_body(stack, job2)).status == 200
    assert stack.job(job2.id).status == JobStatus.COMPLETED


def test_submit_after_the_deadline_never_reaches_fal(stack, monkeypatch):
    monkeypatch.setenv("TIME_SCALE", "0.0001")
    wiring.reset()
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    time.sleep(0.3)
    assert wiring.submit_to_fal().run(job_id) == {"done": True}
    job = stack.job(job_id)
    assert job.status == JobStatus.FAILED and job.error.code == "submit_failed"  # fal never held it
    assert stack.sim.stats().get("submits", 0) == 0
    assert stack.request("GET", "/v1/credits", token=token).json["balance"] == 10


def test_failure_of_another_generation_does_not_fail_the_job(stack):
    """After a lost submit answer (two generations), only the stored request may fail the job;
    another generation may only complete it."""
    _, job = _submitted_job(stack)
    _wait_sim_done(stack, job.fal.request_id)  # (its file on the CDN stands in for the other generation's)
    stack.db.update_item(
        TableName=stack.table,
        Key={"pk": {"S": f"JOB#{job.id}"}, "sk": {"S": "JOB"}},
        UpdateExpression="SET submit_attempts = :two",
        ExpressionAttributeValues={":two": {"N": "2"}},
    )
    other = {
        "request_id": "lost-generation",
        "gateway_request_id": "g",
        "status": "ERROR",
        "error": "boom",
        "payload": {"detail": "boom"},
    }
    reply = _deliver(stack, job, other, mac=True)
    assert reply.status == 200 and reply.json["ignored"] == "other request"
    assert stack.job(job.id).status == JobStatus.SUBMITTED
    ok = {**_ok_body(stack, job), "request_id": "lost-generation"}
    assert _deliver(stack, job, ok).status == 401  # without the job's URL MAC: not shown to be its request
    assert stack.job(job.id).status == JobStatus.SUBMITTED
    assert _deliver(stack, job, ok, mac=True).json["status"] == "completed"


def test_deadline_last_look_with_a_broken_copy_keeps_the_job_for_a_retry(stack):
    from videogen.domain.errors import MediaTransferError

    _, job = _submitted_job(stack)
    _wait_sim_done(stack, job.fal.request_id)
    stack.sim.set_config(cdn_error_rate=1)
    with pytest.raises(MediaTransferError):
        wiring.expire_job().run(job.id, "deadline_exceeded", cancel_at_fal=True)
    assert stack.job(job.id).status == JobStatus.SUBMITTED  # not failed: fal has the video
    stack.sim.set_config(cdn_error_rate=0)
    assert wiring.expire_job().run(job.id, "deadline_exceeded", cancel_at_fal=True).status == JobStatus.COMPLETED


def test_deliveries_signed_for_another_fal_account_are_refused_when_pinned(stack, monkeypatch):
    _, job = _submitted_job(stack)
    _wait_sim_done(stack, job.fal.request_id)
    monkeypatch.setenv("FAL_WEBHOOK_USER_ID", "our-fal-account")
    wiring.reset()
    reply = _deliver(stack, job, _ok_body(stack, job))  # validly signed, for the simulator's user
    assert reply.status == 401 and stack.job(job.id).status == JobStatus.SUBMITTED
    monkeypatch.setenv("FAL_WEBHOOK_USER_ID", stack.sim.user_id)
    wiring.reset()
    assert _deliver(stack, job, _ok_body(stack, job)).status == 200
