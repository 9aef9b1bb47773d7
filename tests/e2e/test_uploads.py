"""Uploads as an app uses them, over HTTP against the local stack (`python -m devstack`): create an
upload, POST the file to the presigned URL (the local S3), wait for the S3 event's check, submit
with upload:<id>, the job completes (the simulator fetched the file through its presigned GET);
a file that is not what it was declared to be is refused at submit with nothing charged."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.process import StackProcess
from tests.fakes.uploads import png

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    log_path: Path = tmp_path_factory.mktemp("uploads") / "stack.log"
    running = StackProcess(
        seed=11, time_scale=0.02, crash_rate=0, reconcile_every_s=0, reconcile_grace_s=10, log_path=log_path
    )
    with running:
        yield running
    log = running.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


def _user(api: str, credits: int) -> dict[str, str]:
    reply = requests.post(
        f"{api}/_local/users", json={"user_id": f"up-{uuid.uuid4().hex[:8]}", "credits": credits}, timeout=10
    )
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def _upload(api: str, auth: dict[str, str], data: bytes, content_type: str) -> dict:
    created = requests.post(
        f"{api}/v1/uploads", headers=auth, json={"content_type": content_type, "size_bytes": len(data)}, timeout=10
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["upload"]["status"] == "pending"
    sent = requests.post(body["url"], data=body["fields"], files={"file": ("photo", data, content_type)}, timeout=10)
    assert sent.status_code == 204, sent.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        upload = requests.get(f"{api}/v1/uploads/{body['upload']['id']}", headers=auth, timeout=10).json()
        if upload["status"] != "pending":
            return dict(upload)
        time.sleep(0.2)
    raise AssertionError("the upload was never checked")


def _submit(api: str, auth: dict[str, str], image_url: str) -> requests.Response:
    return requests.post(
        f"{api}/v1/videos",
        headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
        json={"model": "kling-2.1-standard-i2v", "input": {"prompt": "a fox in the snow", "image_url": image_url}},
        timeout=10,
    )


def test_a_png_uploaded_through_the_presigned_post_makes_a_job_that_completes(stack: StackProcess) -> None:
    auth = _user(stack.api, 20)
    upload = _upload(stack.api, auth, png(64, 48), "image/png")
    assert upload["status"] == "ready" and (upload["width"], upload["height"]) == (64, 48)

    answer = _submit(stack.api, auth, f"upload:{upload['id']}")
    assert answer.status_code == 202, answer.text
    job = answer.json()["job"]
    assert job["input"]["image_url"] == f"upload:{upload['id']}"
    deadline = time.monotonic() + 60
    while job["status"] not in ("completed", "failed", "canceled") and time.monotonic() < deadline:
        time.sleep(0.3)
        job = requests.get(f"{stack.api}/v1/videos/{job['id']}", headers=auth, timeout=10).json()
    assert job["status"] == "completed", job
    assert job["input"]["image_url"] == f"upload:{upload['id']}"  # shown as sent


def test_another_users_upload_is_404_and_upload_not_found_at_submit(stack: StackProcess) -> None:
    owner, other = _user(stack.api, 10), _user(stack.api, 10)
    upload = _upload(stack.api, owner, png(), "image/png")
    got = requests.get(f"{stack.api}/v1/uploads/{upload['id']}", headers=other, timeout=10)
    assert got.status_code == 404 and got.json()["code"] == "upload_not_found"
    refused = _submit(stack.api, other, f"upload:{upload['id']}")
    assert refused.status_code == 422 and refused.json()["code"] == "upload_not_found"


def test_bytes_that_are_not_the_declared_type_are_rejected_and_refused_at_submit_with_nothing_charged(
    stack: StackProcess,
) -> None:
    auth = _user(stack.api, 10)
    upload = _upload(stack.api, auth, b"GIF89a" + b"\x00" * 200, "image/png")
    assert upload["status"] == "rejected" and upload["error"]["code"] == "type_mismatch"
    before = requests.get(f"{stack.api}/v1/credits", headers=auth, timeout=10).json()

    refused = _submit(stack.api, auth, f"upload:{upload['id']}")

    assert refused.status_code == 422 and refused.json()["code"] == "upload_rejected"
    after = requests.get(f"{stack.api}/v1/credits", headers=auth, timeout=10).json()
    assert after["balance"] == before["balance"] == 10
    assert [e["type"] for e in after["ledger"]] == ["grant"]  # no charge, no refund: nothing happened
    assert requests.get(f"{stack.api}/v1/videos", headers=auth, timeout=10).json()["items"] == []
