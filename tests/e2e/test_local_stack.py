"""The local stack as a newcomer runs it (`python -m devstack`, what `make run` starts), over HTTP.

A job goes from POST /v1/videos to a playable MP4 served from the local S3 through
a presigned URL — once through the signed webhook, once with every webhook dropped
(the Step Functions poll loop finishes it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from devstack.invariants import audit

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    def __init__(self, base: str, sim: str, moto: str) -> None:
        self.base, self.sim, self.moto = base, sim, moto
        self.http = requests.Session()

    def user(self, credits: int) -> tuple[str, str]:
        user_id = f"e2e-{uuid.uuid4().hex[:6]}"
        reply = self.http.post(f"{self.base}/_local/users", json={"user_id": user_id, "credits": credits}, timeout=10)
        reply.raise_for_status()
        return user_id, reply.json()["token"]

    def submit(self, token: str, prompt: str = "a heron taking off") -> requests.Response:
        return self.http.post(
            f"{self.base}/v1/videos",
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
            json={
                "model": "kling-2.1-standard-i2v",
                "input": {"prompt": prompt, "image_url": "https://example.com/heron.png"},
            },
            timeout=10,
        )

    def wait_done(self, token: str, job_id: str, timeout_s: float = 60) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.http.get(
                f"{self.base}/v1/videos/{job_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
            ).json()
            if job["status"] in ("completed", "failed", "canceled"):
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")

    def sim_config(self, **values: object) -> None:
        self.http.put(f"{self.sim}/_sim/config", json=values, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def local() -> Iterator[Client]:
    port, sim_port, moto_port = _free_port(), _free_port(), _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "FALSIM_PORT": str(sim_port),
        "MOTO_PORT": str(moto_port),
        "PYTHONPATH": f"{ROOT / 'layers' / 'videogen'}:{ROOT}",
        "RECONCILE_EVERY_S": "2",
    }
    for key in ("FAL_KEY", "PUBLIC_URL", "AWS_ENDPOINT_URL", "CRASH_POINTS"):
        env.pop(key, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/_local/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None:
                raise AssertionError(f"the local stack exited: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.2)
        else:
            raise AssertionError("the local stack did not become healthy in 60 s")
        yield Client(base, f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{moto_port}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _assert_playable_video(client: Client, job: dict) -> None:
    assert job["status"] == "completed", job
    video = job["video"]
    assert video["url"].startswith(client.moto)  # our bucket, never the provider's URL
    data = requests.get(video["url"], timeout=10).content
    assert len(data) == video["size_bytes"] > 1000
    assert data[4:8] == b"ftyp"  # an MP4


def test_health_models_and_auth(local):
    assert requests.get(f"{local.base}/_local/health", timeout=5).json() == {"ok": True}
    assert requests.get(f"{local.base}/v1/models", timeout=5).status_code == 200
    assert requests.get(f"{local.base}/v1/credits", timeout=5).status_code == 401
    assert (
        requests.get(f"{local.base}/v1/credits", headers={"Authorization": "Bearer x.y.z"}, timeout=5).status_code
        == 401
    )


def test_a_browser_on_localhost_passes_the_preflight_and_reads_the_answer_headers(local):
    origin = "http://localhost:5173"
    preflight = requests.options(
        f"{local.base}/v1/videos",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
        timeout=5,
    )
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "idempotency-key" in preflight.headers["Access-Control-Allow-Headers"].lower()
    _, token = local.user(credits=5)
    reply = local.http.post(
        f"{local.base}/v1/videos",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex, "Origin": origin},
        json={"model": "minimax-video-01", "input": {"prompt": "a fox"}},
        timeout=10,
    )
    assert reply.status_code == 202 and reply.headers["Access-Control-Allow-Origin"] == origin
    assert "Location" in reply.headers["Access-Control-Expose-Headers"].split(",")
    other = requests.options(
        f"{local.base}/v1/videos",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"},
        timeout=5,
    )
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize("method", ["TRACE", "HEAD", "OPTIONS", "DELETE", "QUERY"])
def test_a_method_without_a_route_is_api_gateways_404(local, method):
    reply = requests.request(method, f"{local.base}/v1/models", timeout=5)
    assert reply.status_code == 404 and reply.headers["content-type"] == "application/json"
    assert method == "HEAD" or reply.json() == {"message": "Not Found"}


def test_job_completes_through_the_webhook(local):
    local.sim_config(queue_s=0.3, run_s=0.5, webhook_drop_rate=0)
    _, token = local.user(credits=20)
    reply = local.submit(token)
    assert reply.status_code == 202, reply.text
    job = local.wait_done(token, reply.json()["job"]["id"])
    _assert_playable_video(local, job)
    credits = local.http.get(f"{local.base}/v1/credits", headers={"Authorization": f"Bearer {token}"}, timeout=5).json()
    assert credits["balance"] == 16 and [e["type"] for e in credits["ledger"]] == ["charge", "grant"]


def test_job_completes_with_every_webhook_dropped(local):
    local.sim_config(queue_s=0.3, run_s=0.5, webhook_drop_rate=1)
    try:
        _, token = local.user(credits=20)
        reply = local.submit(token, prompt="the poll loop finds me")
        job = local.wait_done(token, reply.json()["job"]["id"])
        _assert_playable_video(local, job)
        stats = local.http.get(f"{local.sim}/_sim/stats", timeout=5).json()
        assert stats["webhooks_dropped"] >= 1
        known = local.http.get(f"{local.sim}/_sim/requests", timeout=5).json()
        mine = [r for r in known.values() if r["input"].get("prompt") == "the poll loop finds me"]
        assert len(mine) == 1 and mine[0]["status_calls"] >= 1  # the poll loop asked fal
    finally:
        local.sim_config(webhook_drop_rate=0)


def test_failed_generation_is_refunded(local):
    local.sim_config(fail_rate=1)
    try:
        _, token = local.user(credits=4)
        job = local.wait_done(token, local.submit(token).json()["job"]["id"])
        assert job["status"] == "failed" and job["error"]["code"] == "generation_failed"
        credits = local.http.get(
            f"{local.base}/v1/credits", headers={"Authorization": f"Bearer {token}"}, timeout=5
        ).json()
        assert credits["balance"] == 4
    finally:
        local.sim_config(fail_rate=0)


def test_invariants_hold_in_the_local_stack(local):
    db = boto3.client(
        "dynamodb",
        endpoint_url=local.moto,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    s3 = boto3.client(
        "s3", endpoint_url=local.moto, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
    )
    table = next(t for t in db.list_tables()["TableNames"] if t.endswith("jobs-table"))
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("videos-bucket"))
    result = audit(db, table, s3, bucket)
    assert result.ok, result.problems
    assert result.jobs["completed"] >= 2
