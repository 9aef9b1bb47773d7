"""The DynamoDB adapter against the domain's transition table, pair by pair (moto).

For every state a job can be in and every conditional status write of the adapter: the write
succeeds exactly when the table (``ALLOWED_FROM`` and ``progress_allowed_from``) allows the move,
and otherwise raises ``TransitionRejected`` with nothing changed — the job item, the balance and
the ledger. Terminal states never change. The conftest audits the credit invariants afterwards.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.jobs import next_usage
from videogen.adapters.dynamo import DynamoStore, job_key
from videogen.domain.errors import TransitionRejected
from videogen.domain.models import (
    ALLOWED_FROM,
    CANCEL_INTENT_FROM,
    TERMINAL,
    CancelIntent,
    FalRequest,
    Job,
    JobError,
    JobStatus,
    Progress,
    StoredVideo,
    progress_allowed_from,
    rfc3339,
)

BYTES = b"not really an mp4, but the audit only checks the sha256"
SHA = hashlib.sha256(BYTES).hexdigest()


@dataclass(frozen=True)
class Write:
    name: str
    allowed_from: frozenset[JobStatus]
    result: JobStatus | None  # the status after success; None: unchanged (a counter write)
    needs_no_request: bool  # also conditioned on no fal request being stored
    call: Callable[[Any, Job], Job | None]


def _put_video(h: Any, job: Job) -> StoredVideo:
    key = f"videos/{job.id}/{SHA}.mp4"
    h.s3.put_object(Bucket=h.bucket, Key=key, Body=BYTES)
    return StoredVideo(s3_key=key, sha256=SHA, size_bytes=len(BYTES))


def _complete(h: Any, job: Job) -> Job:
    video = _put_video(h, job)
    try:
        return h.store.complete(job, video)
    except TransitionRejected:  # as the finisher does: a video the job does not own is deleted (no orphan)
        latest = h.store.get_job(job.id)
        if latest is None or latest.video is None or latest.video.s3_key != video.s3_key:
            h.s3.delete_object(Bucket=h.bucket, Key=video.s3_key)
        raise


def _request(job_id: str) -> FalRequest:
    base = f"http://127.0.0.1:1/fal-ai/x/requests/{job_id}"
    return FalRequest(request_id=job_id, status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel")


WRITES = [
    Write(
        "record_submit_attempt",
        ALLOWED_FROM[JobStatus.SUBMITTED],
        None,
        True,
        lambda h, j: h.store.record_submit_attempt(j.id),
    ),
    Write(
        "mark_submitted",
        ALLOWED_FROM[JobStatus.SUBMITTED],
        JobStatus.SUBMITTED,
        False,
        lambda h, j: h.store.mark_submitted(j.id, _request(j.id), Progress(message="waiting in queue")),
    ),
    Write(
        "update_progress(submitted)",
        progress_allowed_from(JobStatus.SUBMITTED),
        JobStatus.SUBMITTED,
        False,
        lambda h, j: h.store.update_progress(j.id, JobStatus.SUBMITTED, Progress(queue_position=3)),
    ),
    Write(
        "update_progress(in_progress)",
        progress_allowed_from(JobStatus.IN_PROGRESS),
        JobStatus.IN_PROGRESS,
        False,
        lambda h, j: h.store.update_progress(j.id, JobStatus.IN_PROGRESS, Progress(message="generating")),
    ),
    Write(
        "complete",
        ALLOWED_FROM[JobStatus.COMPLETED],
        JobStatus.COMPLETED,
        False,
        lambda h, j: _complete(h, j),
    ),
    Write(
        "finish_with_refund(failed)",
        ALLOWED_FROM[JobStatus.FAILED],
        JobStatus.FAILED,
        False,
        lambda h, j: h.store.finish_with_refund(j, JobStatus.FAILED, JobError(code="x", message="x")),
    ),
    Write(
        "finish_with_refund(canceled)",
        ALLOWED_FROM[JobStatus.CANCELED],
        JobStatus.CANCELED,
        False,
        lambda h, j: h.store.finish_with_refund(j, JobStatus.CANCELED, None),
    ),
    Write(
        "finish_with_refund(canceled, unsubmitted)",
        ALLOWED_FROM[JobStatus.CANCELED],
        JobStatus.CANCELED,
        True,
        lambda h, j: h.store.finish_with_refund(j, JobStatus.CANCELED, None, unsubmitted=True),
    ),
    Write(
        "request_cancel(user)",
        CANCEL_INTENT_FROM[CancelIntent.USER],
        None,
        False,
        lambda h, j: h.store.request_cancel(j.id, CancelIntent.USER),
    ),
    Write(
        "request_cancel(deadline)",
        CANCEL_INTENT_FROM[CancelIntent.DEADLINE],
        None,
        False,
        lambda h, j: h.store.request_cancel(j.id, CancelIntent.DEADLINE),
    ),
]

# How a job reaches each state, through the adapter's own writes (so the invariants hold).
PATHS: dict[JobStatus, list[str]] = {
    JobStatus.QUEUED: [],
    JobStatus.SUBMITTED: ["mark_submitted"],
    JobStatus.IN_PROGRESS: ["mark_submitted", "update_progress(in_progress)"],
    JobStatus.COMPLETED: ["mark_submitted", "complete"],
    JobStatus.FAILED: ["mark_submitted", "finish_with_refund(failed)"],
    JobStatus.CANCELED: ["finish_with_refund(canceled, unsubmitted)"],
}
BY_NAME = {w.name: w for w in WRITES}


def _new_job(store: DynamoStore, user_id: str) -> Job:
    now = rfc3339()
    job = Job(
        id=f"vid_{uuid.uuid4().hex[:20]}",
        user_id=user_id,
        status=JobStatus.QUEUED,
        model="minimax-video-01",
        input={"prompt": "p"},
        credits_charged=5,  # the registry's price of this input
        created_at=now,
        updated_at=now,
    )
    store.create_job(
        job,
        idempotency_key=job.id,
        fingerprint="f",
        answer={"job": {"id": job.id}},
        seen=(seen := store.get_balance(user_id)),
        usage=next_usage(seen),
        max_active=1000,
        idem_ttl_s=3600,
    )
    return job


def _snapshot(h: Any, job: Job) -> tuple[Any, ...]:
    item = h.db.get_item(TableName=h.table, Key=job_key(job.id), ConsistentRead=True)["Item"]
    return item, h.store.get_balance(job.user_id), h.store.ledger_totals(job.user_id)


def test_the_table_covers_every_status_write():
    # every state the table lets a job move to has a write of the adapter that makes that move
    assert {w.result for w in WRITES if w.result} == set(ALLOWED_FROM)
    assert JobStatus.QUEUED not in ALLOWED_FROM  # nothing moves a job back to queued
    assert all(not (w.allowed_from & TERMINAL) for w in WRITES)  # no write starts from a terminal state


def walk(stack: Any, expected: Callable[[JobStatus, Write, Job], JobStatus | None]) -> list[str]:
    """Every write from every state on the adapter; ``expected(start, write, job)`` is the status
    after it, None when it must be rejected. Returns the mismatches (empty: all as expected)."""
    user = f"table-{uuid.uuid4().hex[:8]}"
    stack.store.grant(user, 10 * len(WRITES) * len(PATHS), "g")
    mismatches: list[str] = []
    for start, path in PATHS.items():
        for write in WRITES:
            job = _new_job(stack.store, user)
            for step in path:
                job = BY_NAME[step].call(stack, job) or job
            job = stack.store.get_job(job.id)
            assert job is not None and job.status == start, (start, path)
            result = expected(start, write, job)
            before = _snapshot(stack, job)
            try:
                write.call(stack, job)
            except TransitionRejected:
                if result is not None:
                    mismatches.append(f"{start.value} --{write.name}--> rejected, expected {result.value}")
                if _snapshot(stack, job) != before:
                    mismatches.append(f"{start.value} --{write.name}--> rejected but changed the job or credits")
                continue
            after = stack.store.get_job(job.id)
            assert after is not None
            if result is None:
                mismatches.append(f"{start.value} --{write.name}--> {after.status.value}: it must be rejected")
            elif after.status != result:
                mismatches.append(f"{start.value} --{write.name}--> {after.status.value}, expected {result.value}")
            if start in TERMINAL:
                mismatches.append(f"terminal {start.value} changed by {write.name}")
    return mismatches


def _by_the_table(start: JobStatus, write: Write, job: Job) -> JobStatus | None:
    allowed = start in write.allowed_from and not (write.needs_no_request and job.fal is not None)
    return (write.result or start) if allowed else None


def test_every_write_from_every_state_obeys_the_transition_table(stack):
    assert walk(stack, _by_the_table) == []
