"""Ports: what the services need from the outside world, as small Protocols.

Adapters in :mod:`videogen.adapters` implement them against AWS and fal.ai (built in
:mod:`videogen.wiring` only); tests substitute in-memory fakes. Services depend on these names
and the domain only. What a port raises is a domain error (:mod:`videogen.domain.errors`),
never a botocore or requests exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from videogen.domain.models import (
    Balance,
    CancelIntent,
    FalRequest,
    IdempotencyRecord,
    Job,
    JobError,
    JobStatus,
    LedgerEntry,
    Progress,
    StoredVideo,
)

# --- the job and credit store ---------------------------------------------------------------


class JobStore(Protocol):
    """Jobs, balances, the ledger and idempotency records.

    Every change is a conditional write; a failed condition is a domain outcome
    (:class:`~videogen.domain.errors.TransitionRejected`, ``BalanceChanged``, ...) and changes
    nothing. Every status condition comes from :data:`videogen.domain.models.ALLOWED_FROM`.

    Contention (a write or a transactional read that met a concurrent transaction) is retried
    inside the store; when it persists, the write (or :meth:`read_for_submit`) raises
    :class:`~videogen.domain.errors.StoreBusy` and changed nothing — except :meth:`touch`, which
    is best effort and never raises.
    """

    # credits
    def get_balance(self, user_id: str) -> Balance: ...

    def grant(self, user_id: str, amount: int, grant_id: str) -> bool:
        """Add ``amount`` once per ``grant_id`` (+ ledger entry). False when applied before;
        ``GrantConflict`` when applied with another amount; ``StoreBusy`` on persistent contention."""
        ...

    def list_ledger(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[LedgerEntry], str | None]:
        """Newest first; ``InvalidCursor`` for a cursor this store did not return for this user."""
        ...

    def credits_snapshot(
        self, user_id: str, limit: int, cursor: str | None
    ) -> tuple[Balance, list[LedgerEntry], str | None]:
        """The balance and a ledger page (as :meth:`list_ledger`) of ONE moment, so a complete
        ledger sums to the balance; ``ConcurrentUpdate`` when no such moment could be read."""
        ...

    def ledger_totals(self, user_id: str) -> dict[str, int]: ...

    # submit
    def read_for_submit(self, user_id: str, key: str) -> tuple[Balance, IdempotencyRecord | None]:
        """One consistent snapshot of the balance and the key's idempotency record (``StoreBusy``)."""
        ...

    def create_job(
        self,
        job: Job,
        *,
        idempotency_key: str,
        fingerprint: str,
        answer: dict[str, Any],
        seen: Balance,
        max_active: int,
        idem_ttl_s: int,
    ) -> None:
        """Charge + job + idempotency record + ledger entry, all or nothing, while the balance is
        still ``seen.balance``, covers the cost and the active count is under ``max_active``.
        Raises ``IdempotencyKeyTaken(record)``, ``BalanceChanged``, or on persistent contention
        ``IdempotencyKeyInUse`` (the key's record was in conflict) or ``StoreBusy``."""
        ...

    # jobs: reads
    def get_job(self, job_id: str) -> Job | None: ...

    def find_by_request_id(self, request_id: str) -> Job | None: ...

    def list_jobs(
        self, user_id: str, status: JobStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Job], str | None]:
        """Newest first, reading only jobs in ``status`` when given (bounded work); ``InvalidCursor``
        for a cursor this store did not return for this user and filter."""
        ...

    def job_cursor(self, job: Job, status: JobStatus | None) -> str:
        """The cursor that continues a :meth:`list_jobs` page ending with ``job``."""
        ...

    def find_stale_active(self, updated_before: str, limit: int) -> list[Job]:
        """Jobs not terminal (or terminal with ``event_pending``) untouched since ``updated_before``."""
        ...

    # jobs: conditional writes (TransitionRejected when the condition fails)
    def record_submit_attempt(self, job_id: str) -> Job:
        """``submit_attempts += 1`` (before calling fal) while the job may still move to SUBMITTED
        and has no fal request."""
        ...

    def record_submit_refused(self, job_id: str) -> Job:
        """``submit_attempts -= 1``: fal refused the attempt just counted, so it created nothing.
        Same condition as :meth:`record_submit_attempt`, and only while the count is above 0."""
        ...

    def request_cancel(self, job_id: str, intent: CancelIntent) -> Job:
        """Record ``cancel_requested = intent`` BEFORE asking fal to cancel: only while the job is
        in :data:`~videogen.domain.models.CANCEL_INTENT_FROM` [intent] and carries no intent, the
        same one, or one in :data:`~videogen.domain.models.CANCEL_INTENT_REPLACES` [intent]."""
        ...

    def mark_submitted(self, job_id: str, request: FalRequest, progress: Progress) -> Job: ...

    def update_progress(self, job_id: str, status: JobStatus, progress: Progress) -> Job:
        """Allowed from :func:`videogen.domain.models.progress_allowed_from` (status)."""
        ...

    def touch(self, job_id: str) -> None:
        """Move an active job to the back of the stale queue; nothing if it is terminal, or if the
        write kept conflicting (best effort: never raises)."""
        ...

    def complete(self, job: Job, video: StoredVideo) -> Job:
        """Active → completed with ``video``, slot freed, ``event_pending`` set."""
        ...

    def finish_with_refund(
        self, job: Job, status: JobStatus, error: JobError | None, *, unsubmitted: bool = False
    ) -> Job:
        """Active → FAILED/CANCELED with refund, ledger entry and slot freed, at most once.
        ``unsubmitted``: only while no fal request is stored. ``StoreBusy`` on contention."""
        ...

    def clear_event_pending(self, job_id: str) -> None:
        """The job's terminal event is out: it leaves the sparse index (``StoreBusy``)."""
        ...


# --- fal.ai -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FalStatus:
    """One status answer of fal's queue API."""

    status: Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    queue_position: int | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None

    @property
    def last_message(self) -> str | None:
        for entry in reversed(self.logs):
            msg = entry.get("message") if isinstance(entry, dict) else None
            if msg:
                return str(msg)[:500]
        return None


@dataclass(frozen=True)
class FalResult:
    """The outcome of a finished request: a video URL, or an error."""

    video_url: str | None = None
    content_type: str | None = None
    error: str | None = None  # set when the request failed (never both)

    @property
    def ok(self) -> bool:
        return self.video_url is not None and self.error is None


CancelOutcome = Literal["requested", "already_completed", "not_found"]


class FalGateway(Protocol):
    """fal's queue API. Raises ``FalTransientError`` (retry later) or ``FalRejectedError`` (final)."""

    def submit(self, endpoint: str, payload: dict[str, Any], webhook_url: str | None) -> FalRequest: ...

    def status(self, request: FalRequest) -> FalStatus: ...

    def result(self, request: FalRequest) -> FalResult: ...

    def cancel(self, request: FalRequest) -> CancelOutcome: ...


@dataclass(frozen=True)
class FalDelivery:
    """One webhook delivery from fal, parsed: which request, and its outcome."""

    request_id: str
    result: FalResult


class DeliveryParser(Protocol):
    """A fal webhook body → :class:`FalDelivery`; None for a status we ignore; ``BadRequest`` if the
    body is not a fal webhook. Implemented by :func:`videogen.adapters.fal.parse_delivery`."""

    def __call__(self, raw_body: bytes) -> FalDelivery | None: ...


@dataclass(frozen=True)
class SignedDelivery:
    """What a verified signature vouches for: fal's request id, and whether the delivery was signed
    for the fal account this deployment is pinned to (False when no account is pinned)."""

    request_id: str
    our_account: bool


class SignatureVerifier(Protocol):
    """Authenticates a webhook delivery (signature, freshness, and the sending fal account when
    pinned). Raises ``InvalidSignature``, or ``ServiceUnavailable`` when keys cannot be had."""

    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> SignedDelivery: ...


# --- media ------------------------------------------------------------------------------

SHA256_PLACEHOLDER = "{sha256}"  # in a put_stream key: replaced by the content's hex sha256


class MediaSource(Protocol):
    """Opens a provider media URL behind the guards (allow-listed https host, size cap, type)."""

    def open(self, url: str) -> MediaStream: ...


class MediaStream(Protocol):
    content_type: str
    declared_size: int | None

    def chunks(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SignedUrl:
    """A presigned GET and the exact moment it stops working."""

    url: str
    expires_at: datetime


class UrlSigner(Protocol):
    """Signs GET URLs of our bucket's objects (videos, posters) that an app can cache: every call
    within one window answers the same URL and ``expires_at`` (adapters/media_urls.py)."""

    def sign(self, key: str, ttl_s: int) -> SignedUrl:
        """A URL of ``key`` valid at least ``ttl_s`` from now (unless its signing credentials expire
        first: ``expires_at`` is then theirs) and the exact moment it stops working."""
        ...


class VideoStore(Protocol):
    """Our bucket. ``MediaRejected`` (final) or ``MediaTransferError`` (retry later) on failure."""

    def put_stream(self, key: str, stream: MediaStream) -> StoredVideo:
        """Stream into ``key`` (``SHA256_PLACEHOLDER`` in it becomes the content's sha256)."""
        ...

    def presign(self, key: str, ttl_s: int) -> SignedUrl:
        """A GET URL of ``key`` (a video or its poster), the same one for every read in a window."""
        ...

    def head(self, key: str) -> StoredVideo | None: ...

    def find(self, prefix: str) -> StoredVideo | None: ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix``, complete or not."""
        ...

    def delete(self, key: str) -> None: ...


# --- workflow and events -----------------------------------------------------------------


ExecutionState = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "MISSING"]


class Workflow(Protocol):
    def start(self, job_id: str, execution_input: dict[str, Any]) -> bool:
        """Start the job's execution (named by the job id). False if it already exists."""
        ...

    def state(self, job_id: str) -> ExecutionState: ...


class EventPublisher(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> None: ...
