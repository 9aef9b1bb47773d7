"""The test doubles themselves: the audit they feed can fail, the network really is blocked, and
the scripted fal answers as documented. (tests/integration/test_store_contract.py runs the same
store scenarios against FakeStore and the DynamoDB adapter.)"""

from __future__ import annotations

import socket

import pytest
import requests

from tests.fakes import FakeFal, FakeStore, FakeVideoStore, completed, in_queue, make_job
from videogen.domain.errors import FalTransientError
from videogen.domain.models import JobStatus


def test_the_network_is_blocked() -> None:
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("127.0.0.1", 9))
    with pytest.raises(requests.ConnectionError):
        requests.get("http://127.0.0.1:9/", timeout=1)


def test_the_audit_sees_a_failed_job_without_a_refund() -> None:
    store = FakeStore()
    job = store.put_job(make_job(JobStatus.SUBMITTED, request_id="req-1"))
    assert store.audit().ok
    store.set_job(job.id, status=JobStatus.FAILED)  # bypasses finish_with_refund
    problems = store.audit().problems
    assert any("not refunded" in p for p in problems)
    assert any("active_jobs counter" in p for p in problems)


def test_the_audit_rehashes_stored_videos() -> None:
    store, videos = FakeStore(), FakeVideoStore()
    video = videos.put("videos/j/{sha256}.mp4", b"abc")
    store.put_job(make_job(JobStatus.COMPLETED, video=video))
    assert store.audit(videos).ok
    videos.objects[video.s3_key] = (b"tampered", video)
    assert not store.audit(videos).ok


def test_a_status_script_repeats_its_last_answer_and_raises_scripted_errors() -> None:
    fal = FakeFal()
    request = fal.request("req-1")
    fal.script_status("req-1", FalTransientError("timeout"), in_queue(2), completed())
    with pytest.raises(FalTransientError):
        fal.status(request)
    assert [fal.status(request).status for _ in range(3)] == ["IN_QUEUE", "COMPLETED", "COMPLETED"]
    assert fal.calls == [("status", "req-1")] * 4


def test_stores_hand_out_copies() -> None:
    store = FakeStore()
    job = store.put_job(make_job())
    read = store.get_job(job.id)
    assert read is not None
    read.progress.message = "changed by the caller"
    assert store.job(job.id).progress.message == "queued"
