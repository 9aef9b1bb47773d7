"""Ports: what the services need from the outside world, as small Protocols.

Adapters in :mod:`videogen.adapters` implement them against AWS and fal.ai (built in
:mod:`videogen.wiring` only); tests substitute in-memory fakes. Services depend on these names
and the domain only. What a port raises is a domain error (:mod:`videogen.domain.errors`),
never a botocore or requests exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from videogen.domain.devices import Device, Notification, Platform
from videogen.domain.endings import FAILURE_MESSAGES, Failure, FailureCode, fal_failure
from videogen.domain.limits import Usage
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
    VideoMedia,
)
from videogen.domain.uploads import Upload, UploadError, UploadStatus

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
    def read_for_submit(
        self, user_id: str, key: str, upload_ids: Sequence[str] = ()
    ) -> tuple[Balance, IdempotencyRecord | None, dict[str, Upload]]:
        """One consistent snapshot of the balance, the key's idempotency record and the caller's
        uploads among ``upload_ids`` (id -> upload; another user's or a missing one is absent),
        in ONE read (``StoreBusy``)."""
        ...

    def create_job(
        self,
        job: Job,
        *,
        idempotency_key: str,
        fingerprint: str,
        answer: dict[str, Any],
        seen: Balance,
        usage: Usage,
        max_active: int,
        idem_ttl_s: int,
    ) -> None:
        """Charge + job + idempotency record + ledger entry + the user's new limit state ``usage``,
        all or nothing, while the balance is still ``seen.balance``, covers the cost, the active
        count is under ``max_active`` and the limit state (rate, daily spend) is still ``seen``'s.
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

    def record_media(self, job_id: str, video_key: str, media: VideoMedia) -> Job:
        """Store what was measured from the video and its poster (``video.media``), once: only while
        the job is completed, still points to ``video_key`` and has no media yet; status, credits,
        ``updated_at`` and the outbox are left alone. ``TransitionRejected`` otherwise."""
        ...


# --- uploads ------------------------------------------------------------------------------


class UploadStore(Protocol):
    """Upload records (the same table as the jobs), each keyed under its owner."""

    def create_upload(self, upload: Upload, seen: Balance, usage: Usage) -> None:
        """The pending record and the user's new rate state (``usage``, decided on ``seen``, or on
        the user being idle: ``usage.idle_at_ms``) in one write. ``BalanceChanged`` (with the state
        as stored, when known) when the rate state is not the one decided on; nothing written. A
        record already there changes nothing."""
        ...

    def get_upload(self, user_id: str, upload_id: str) -> Upload | None:
        """The caller's upload (expired ones included: the caller checks the time)."""
        ...

    def finish_upload(
        self,
        user_id: str,
        upload_id: str,
        status: UploadStatus,
        *,
        width: int | None = None,
        height: int | None = None,
        duration_s: float | None = None,
        error: UploadError | None = None,
        input_key: str | None = None,
    ) -> bool:
        """``pending`` → ``status`` (ready or rejected) with what was measured (and, ready, the
        sealed copy's key). False, changing nothing, when the upload is not pending (checked
        already: a redelivered event) or missing."""
        ...


@dataclass(frozen=True)
class PresignedPost:
    """Where and how the app POSTs a file: the form's action URL and its fields (policy, signature)."""

    url: str
    fields: dict[str, str]


@dataclass(frozen=True)
class ObjectHead:
    """One stored version of an object: its size and ETag (which names those bytes)."""

    size: int
    etag: str


class UploadBucket(Protocol):
    """The uploads prefix of our bucket: presigned POSTs for the app, ranged reads for the check,
    and the seal (a copy of exactly the bytes checked under ``inputs/``)."""

    def presign_post(self, key: str, content_type: str, size_bytes: int, ttl_s: int) -> PresignedPost:
        """A POST accepted only for ``key``, that content type and exactly ``size_bytes`` bytes."""
        ...

    def head(self, bucket: str, key: str) -> ObjectHead | None:
        """The object's size and ETag; None when there is no object."""
        ...

    def read(self, bucket: str, key: str, offset: int, length: int, etag: str) -> bytes:
        """Up to ``length`` bytes from ``offset`` of the version ``etag`` names (``UploadChanged``
        when the object is another one now, ``MediaTransferError`` when S3 fails)."""
        ...

    def seal(self, bucket: str, key: str, etag: str, sealed_key: str) -> bool:
        """Copy ``key`` to ``sealed_key`` only if it is still the version ``etag`` names: False,
        copying nothing, when it is not (S3 answers 412 to ``CopySourceIfMatch``) or gone."""
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
    def failure(self) -> Failure | None:
        """What a COMPLETED status with an error means (None without one)."""
        return fal_failure(self.error, error_type=self.error_type) if self.error else None

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
    code: FailureCode = FailureCode.GENERATION_FAILED  # what the failure means (fal_failure)
    field: str | None = None  # the input fal named, if any

    @property
    def ok(self) -> bool:
        return self.video_url is not None and self.error is None

    @property
    def failure(self) -> Failure:
        return Failure(self.code, self.error or FAILURE_MESSAGES[self.code], self.field)

    @classmethod
    def failed(cls, failure: Failure) -> FalResult:
        return cls(error=failure.message, code=failure.code, field=failure.field)


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

    def presign_input(self, key: str, ttl_s: int) -> SignedUrl:
        """A plain S3 presigned GET of ``key`` valid ``ttl_s`` from now, for a provider to fetch an
        input (an upload): never windowed, never the media CDN (which serves ``videos/*`` only and
        whose key only the functions answering apps read)."""
        ...

    def head(self, key: str) -> StoredVideo | None: ...

    def find(self, prefix: str) -> StoredVideo | None: ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix``, complete or not."""
        ...

    def delete(self, key: str) -> None: ...


class MediaTools(Protocol):
    """The ONE media adapter (PyAV; only the media function loads it): reads a stored video
    from our bucket, measures it and cuts its poster.

    Raises ``VideoMissing`` (no object at ``video_key``), ``MediaUndecodable`` (not a video it can
    read; final) or ``MediaTransferError`` (S3 trouble; retry later)."""

    def make_poster(self, video_key: str, poster_key: str) -> VideoMedia:
        """Measure the video at ``video_key`` from the file itself, store a JPEG of a frame near
        the start that is not black (:func:`videogen.domain.media.pick_poster`) at ``poster_key``
        and return both. Writing the same poster again is harmless (same key, same bytes)."""
        ...


# --- workflow and events -----------------------------------------------------------------


ExecutionState = Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "MISSING"]


class Workflow(Protocol):
    def start(self, job_id: str, execution_input: dict[str, Any]) -> bool:
        """Start the job's execution (named by the job id). False if it already exists."""
        ...

    def state(self, job_id: str) -> ExecutionState: ...


class EventPublisher(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> None: ...


# --- devices and push notifications ------------------------------------------------------


class DeviceStore(Protocol):
    """A user's devices (at most ``MAX_DEVICES``, enforced in the same write as the device) and the
    once-per-job-and-device notification records. Contention is retried inside; when it persists
    a write raises ``StoreBusy`` and changed nothing."""

    def put_device(self, user_id: str, device_id: str, platform: Platform, token: str) -> tuple[Device, Device | None]:
        """Create the device (counted) or update its platform and token (not counted again; its
        endpoint is kept while the platform is unchanged), and make it the token's owner in the same
        write (the token moves from whoever registered it before). Returns (the device, what it was
        before, None when new). ``TooManyDevices`` at the cap."""
        ...

    def get_device(self, user_id: str, device_id: str) -> Device | None: ...

    def list_devices(self, user_id: str) -> list[Device]:
        """Every device of the user, oldest first (at most ``MAX_DEVICES``)."""
        ...

    def set_endpoint(self, device: Device, endpoint_arn: str) -> Device:
        """Store the device's SNS endpoint while it still holds ``device.token`` (``DeviceChanged``)."""
        ...

    def delete_device(self, user_id: str, device_id: str, *, token: str | None = None) -> Device:
        """Remove the device (uncounted); with ``token``: only while it still holds it.
        ``DeviceNotFound`` when it is not there, ``DeviceChanged`` when its token moved on."""
        ...

    def claim_notification(self, job_id: str, device: Device) -> str | None:
        """Record, before sending, that ``job_id``'s notification to ``device`` is being sent, in
        one write with the check that ``device`` still owns its token (``TokenMoved`` when another
        device registered it since; nothing written). Returns the claim's id, or None when a record
        exists already (sent, or being sent or lost in a crash: never sent again)."""
        ...

    def token_owner(self, token: str) -> tuple[str, str] | None:
        """(user id, device id) of the device that registered ``token`` last; None if unrecorded."""
        ...

    def notification_sent(self, job_id: str, device_id: str, claim: str, message_id: str) -> None: ...

    def release_notification(self, job_id: str, device_id: str, claim: str) -> None:
        """Forget a claim whose message certainly was not sent (a retry may send it)."""
        ...


class PushGateway(Protocol):
    """SNS mobile push. ``PushEndpointGone`` (never deliverable again) or ``PushUnavailable``
    (not now) on failure."""

    def enabled(self, platform: Platform) -> bool:
        """Whether a platform application is configured for ``platform``."""
        ...

    def ensure_endpoint(self, platform: Platform, token: str, endpoint_arn: str | None) -> str:
        """The (enabled) endpoint of ``token``: ``endpoint_arn`` brought up to date, or a new one."""
        ...

    def publish(self, platform: Platform, endpoint_arn: str, notification: Notification) -> str:
        """Send one notification; the message id."""
        ...

    def delete_endpoint(self, endpoint_arn: str) -> None:
        """Best effort: a leftover endpoint only costs a line in SNS."""
        ...


class PosterLookup(Protocol):
    def poster_url(self, job_id: str) -> str | None:
        """A presigned GET of the job's poster once it exists, else None."""
        ...
