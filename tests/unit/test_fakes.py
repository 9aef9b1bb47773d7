"""The test doubles themselves: the audit they feed can fail, the network really is blocked, and
the scripted fal answers as documented. (tests/integration/test_store_contract.py runs the same
store scenarios against FakeStore and the DynamoDB adapter.)"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import requests

from tests.fakes import FakeFal, FakeStore, FakeVideoStore, completed, fal_request, in_queue, make_job
from videogen.domain.errors import FalTransientError, TransitionRejected
from videogen.domain.models import (
    ALLOWED_FROM,
    CANCEL_INTENT_FROM,
    CancelIntent,
    Job,
    JobError,
    JobStatus,
    Progress,
    StoredVideo,
    progress_allowed_from,
)


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


# --- the fake store against the transition table (the adapter's twin: test_transition_table.py) ---

VIDEO = StoredVideo(s3_key="videos/x/abc.mp4", sha256="ab" * 32, size_bytes=3)
ERROR = JobError(code="e", message="m")
MOVES: dict[str, tuple[frozenset[JobStatus], JobStatus | None, bool, Callable[[FakeStore, Job], Job]]] = {
    # name: (allowed from, status after (None: unchanged), needs no fal request, the write)
    "record_submit_attempt": (
        ALLOWED_FROM[JobStatus.SUBMITTED],
        None,
        True,
        lambda s, j: s.record_submit_attempt(j.id),
    ),
    "mark_submitted": (
        ALLOWED_FROM[JobStatus.SUBMITTED],
        JobStatus.SUBMITTED,
        False,
        lambda s, j: s.mark_submitted(j.id, fal_request(f"req-{j.id}"), Progress()),
    ),
    "update_progress(submitted)": (
        progress_allowed_from(JobStatus.SUBMITTED),
        JobStatus.SUBMITTED,
        False,
        lambda s, j: s.update_progress(j.id, JobStatus.SUBMITTED, Progress(queue_position=1)),
    ),
    "update_progress(in_progress)": (
        progress_allowed_from(JobStatus.IN_PROGRESS),
        JobStatus.IN_PROGRESS,
        False,
        lambda s, j: s.update_progress(j.id, JobStatus.IN_PROGRESS, Progress()),
    ),
    "complete": (ALLOWED_FROM[JobStatus.COMPLETED], JobStatus.COMPLETED, False, lambda s, j: s.complete(j, VIDEO)),
    "fail": (
        ALLOWED_FROM[JobStatus.FAILED],
        JobStatus.FAILED,
        False,
        lambda s, j: s.finish_with_refund(j, JobStatus.FAILED, ERROR),
    ),
    "cancel": (
        ALLOWED_FROM[JobStatus.CANCELED],
        JobStatus.CANCELED,
        False,
        lambda s, j: s.finish_with_refund(j, JobStatus.CANCELED, None),
    ),
    "cancel(unsubmitted)": (
        ALLOWED_FROM[JobStatus.CANCELED],
        JobStatus.CANCELED,
        True,
        lambda s, j: s.finish_with_refund(j, JobStatus.CANCELED, None, unsubmitted=True),
    ),
    "request_cancel(user)": (
        CANCEL_INTENT_FROM[CancelIntent.USER],
        None,
        False,
        lambda s, j: s.request_cancel(j.id, CancelIntent.USER),
    ),
    "request_cancel(deadline)": (
        CANCEL_INTENT_FROM[CancelIntent.DEADLINE],
        None,
        False,
        lambda s, j: s.request_cancel(j.id, CancelIntent.DEADLINE),
    ),
}
PATHS = {
    JobStatus.QUEUED: [],
    JobStatus.SUBMITTED: ["mark_submitted"],
    JobStatus.IN_PROGRESS: ["mark_submitted", "update_progress(in_progress)"],
    JobStatus.COMPLETED: ["mark_submitted", "complete"],
    JobStatus.FAILED: ["mark_submitted", "fail"],
    JobStatus.CANCELED: ["cancel(unsubmitted)"],
}


@pytest.mark.parametrize("start", list(PATHS))
@pytest.mark.parametrize("move", list(MOVES))
def test_every_write_of_the_fake_store_from_every_state_obeys_the_transition_table(start: JobStatus, move: str) -> None:
    store = FakeStore()
    job = store.put_job(make_job())
    for step in PATHS[start]:
        job = MOVES[step][3](store, job)
    allowed_from, result, needs_no_request, write = MOVES[move]
    allowed = start in allowed_from and not (needs_no_request and job.fal is not None)
    before, balance, ledger = store.job(job.id), store.get_balance(job.user_id), store.ledger(job.user_id)
    try:
        after = write(store, job)
    except TransitionRejected:
        assert not allowed, f"{start} --{move}--> rejected, the table allows it"
        assert (store.job(job.id), store.get_balance(job.user_id), store.ledger(job.user_id)) == (
            before,
            balance,
            ledger,
        )
    else:
        assert allowed, f"{start} --{move}--> {after.status}: the table forbids it"
        assert after.status == (result or start)
        assert after.event_pending == (result is not None and result.is_terminal)
    assert store.audit().ok
