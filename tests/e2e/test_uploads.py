"""Uploads as an app uses them, over HTTP against the local stack (`python -m devstack`): create an
upload, POST the file to the presigned URL (the local S3), wait for the S3 event's check, submit
with upload:<id>, the job completes (the simulator fetched the file through its presigned GET);
a file that is not what it was declared to be is refused at submit with nothing charged."""

from __future__ import annotations

import hashlib
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


def test_bytes_posted_again_after_the_check_never_reach_fal_it_fetches_the_checked_ones(stack: StackProcess) -> None:
    """The presigned POST is valid 15 minutes: after the upload is ready, the app POSTs other bytes
    (same size, same declared type) to it. fal (the simulator, which records the sha256 of what it
    fetched) still gets exactly the bytes that were checked."""
    auth = _user(stack.api, 20)
    checked, swapped = png(64, 48), b"\x00" * len(png(64, 48))
    created = requests.post(
        f"{stack.api}/v1/uploads",
        headers=auth,
        json={"content_type": "image/png", "size_bytes": len(checked)},
        timeout=10,
    ).json()
    upload_id = created["upload"]["id"]

    def post(data: bytes) -> None:
        sent = requests.post(
            created["url"], data=created["fields"], files={"file": ("p", data, "image/png")}, timeout=10
        )
        assert sent.status_code == 204, sent.text

    post(checked)
    deadline = time.monotonic() + 30
    while requests.get(f"{stack.api}/v1/uploads/{upload_id}", headers=auth, timeout=10).json()["status"] == "pending":
        assert time.monotonic() < deadline, "the upload was never checked"
        time.sleep(0.2)
    post(swapped)  # after the check, within the POST's 15 minutes
    time.sleep(1)  # its S3 event is handled (and ignored: the upload is checked already)
    assert requests.get(f"{stack.api}/v1/uploads/{upload_id}", headers=auth, timeout=10).json()["status"] == "ready"

    answer = _submit(stack.api, auth, f"upload:{upload_id}")
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 60
    while True:
        fetched = [
            r
            for r in requests.get(f"{stack.sim}/_sim/requests", timeout=10).json().values()
            if upload_id in str(r["input"].get("image_url", ""))
        ]
        if fetched or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert len(fetched) == 1, "the job never reached fal"
    assert "/inputs/" in fetched[0]["input"]["image_url"]  # the sealed copy, never uploads/<user>/<id>
    assert fetched[0]["input_sha256"] == {"image_url": hashlib.sha256(checked).hexdigest()}
