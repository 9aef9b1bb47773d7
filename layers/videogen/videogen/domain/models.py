"""Jobs, ledger entries and the job state machine's rules."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE = frozenset(JobStatus) - TERMINAL

# The only legal moves. Every write that changes a status is conditioned on the
# job still being in one of the "from" states, so racing actors produce one move.
ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.SUBMITTED: frozenset({JobStatus.QUEUED}),
    JobStatus.IN_PROGRESS: frozenset({JobStatus.QUEUED, JobStatus.SUBMITTED}),
    JobStatus.COMPLETED: frozenset(ACTIVE),
    JobStatus.FAILED: frozenset(ACTIVE),
    # Cancel only while fal has not started generating.
    JobStatus.CANCELED: frozenset({JobStatus.QUEUED, JobStatus.SUBMITTED}),
}


class CancelIntent(StrEnum):
    """Why WE asked fal to cancel a job's request, recorded on the job BEFORE the cancel call.

    fal answers a cancelled request as a failure ("Request was cancelled": its ERROR webhook goes
    out at once, often before our cancel call has returned). The recorded intent is what lets the
    ONE completion path end such a job as we asked, whichever actor gets there first
    (:func:`videogen.domain.endings.provider_failure_ending`).
    """

    USER = "user"  # POST /v1/videos/{id}/cancel: the job ends canceled (one refund)
    DEADLINE = "deadline"  # the model's deadline: the job ends failed / deadline_exceeded


# The states each intent may be recorded in (a conditional write, like every status change):
# the user's only while the job may still move to CANCELED, the deadline's while it is active.
CANCEL_INTENT_FROM: dict[CancelIntent, frozenset[JobStatus]] = {
    CancelIntent.USER: ALLOWED_FROM[JobStatus.CANCELED],
    CancelIntent.DEADLINE: ACTIVE,
}
# The intents each may replace besides itself: the deadline overrides a user's cancel still in
# flight (the job is failing anyway); a user's cancel never replaces the deadline's.
CANCEL_INTENT_REPLACES: dict[CancelIntent, frozenset[CancelIntent]] = {
    CancelIntent.USER: frozenset(),
    CancelIntent.DEADLINE: frozenset({CancelIntent.USER}),
}


def progress_allowed_from(status: JobStatus) -> frozenset[JobStatus]:
    """The states a progress report from fal (``status`` SUBMITTED or IN_PROGRESS) may be written in.

    A report keeps the job's status or moves it forward along :data:`ALLOWED_FROM`, never back, and
    only once the job has been handed to fal (left QUEUED: ``mark_submitted`` is that move).
    """
    if status not in (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS):
        raise ValueError(f"not a progress status: {status}")
    return (ALLOWED_FROM[status] | {status}) - {JobStatus.QUEUED}


class LedgerType(StrEnum):
    GRANT = "grant"
    CHARGE = "charge"
    REFUND = "refund"
    PURCHASE = "purchase"  # a verified store purchase credited (services/purchases.py)
    CLAWBACK = "clawback"  # the store refunded or revoked it: its credits taken back


class Progress(BaseModel):
    queue_position: int | None = None
    message: str | None = None


class JobError(BaseModel):
    code: str  # a videogen.domain.endings.FailureCode, or "canceled" (shown as no error)
    message: str
    field: str | None = None  # the input the provider named (content_policy, invalid_input)


class VideoMedia(BaseModel):
    """What the media function measured from the stored file itself, and where its poster is.

    Written once, after the job completed, in one conditional write (metadata and poster
    together): a job's poster exists exactly when its ``video.media`` is set."""

    duration_s: float
    width: int
    height: int
    fps: float
    has_audio: bool
    poster_key: str  # the poster JPEG in our bucket (videogen.domain.media.poster_key)


class StoredVideo(BaseModel):
    """Where the finished video lives in our bucket (never the provider's URL)."""

    s3_key: str
    sha256: str
    size_bytes: int
    content_type: str = "video/mp4"
    media: VideoMedia | None = None  # set by the media function after completion


class FalRequest(BaseModel):
    """The three URLs fal returned on submit; stored, never rebuilt."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


class Job(BaseModel):
    id: str
    user_id: str
    status: JobStatus
    model: str
    input: dict[str, Any]
    credits_charged: int
    created_at: str
    # upload:<id> inputs: field -> the sealed object's key (Upload.input_key) as read at submit;
    # fal gets a presigned GET of that, never of a key the app can still POST to
    input_objects: dict[str, str] = Field(default_factory=dict)
    updated_at: str
    completed_at: str | None = None
    progress: Progress = Field(default_factory=Progress)
    error: JobError | None = None
    fal: FalRequest | None = None
    video: StoredVideo | None = None
    submit_attempts: int = 0  # submit calls that may have reached fal (a clean refusal is not counted)
    cancel_requested: CancelIntent | None = None  # a cancel we asked (or are asking) fal for
    deadline_at: int = 0  # epoch seconds after which the job is failed and refunded
    event_pending: bool = False  # terminal, its EventBridge event not yet confirmed (outbox)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


@dataclass(frozen=True)
class Balance:
    """A user's balance item: credits, the number of their unfinished jobs (the per-user cap) and
    the state of their own limits (videogen.domain.limits): the request rate's theoretical arrival
    time (epoch ms; None before the first counted request) and the credits charged on ``spend_day``."""

    balance: int = 0
    active_jobs: int = 0
    rl_tat_ms: int | None = None
    spend_day: str | None = None
    spend_credits: int = 0


@dataclass(frozen=True)
class IdempotencyRecord:
    """A used Idempotency-Key: the request's fingerprint and the answer it got (replayed as is)."""

    fingerprint: str
    job_id: str
    status_code: int
    body: dict[str, Any]


class LedgerEntry(BaseModel):
    id: str
    type: LedgerType
    amount: int
    job_id: str | None = None
    purchase_id: str | None = None  # the purchase of a ``purchase`` or ``clawback`` entry
    created_at: str


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(dt: datetime | None = None) -> str:
    dt = dt or utc_now()
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str) -> str:
    """A time-ordered, URL-safe id (ULID layout: 48-bit ms time + 80 random bits)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return f"{prefix}_{''.join(reversed(chars)).lower()}"
