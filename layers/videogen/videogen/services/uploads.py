"""Uploads: POST /v1/uploads and GET /v1/uploads/{id}, the check of each uploaded file (S3
ObjectCreated → :class:`UploadValidator`, which seals the bytes it checked under ``inputs/``), and
the two places an ``upload:<id>`` input is read: submit (:func:`check_uploads`, on the submit's
one read, which records each sealed key on the job) and SubmitToFal (:func:`inputs_for_fal`, a
presigned GET of the sealed object in place of the reference)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from videogen import contract
from videogen.domain import media_probe
from videogen.domain.errors import (
    BalanceChanged,
    ConcurrentUpdate,
    MediaTransferError,
    UnknownUpload,
    UploadChanged,
    shown_id,
)
from videogen.domain.limits import UserLimits, admit, admit_unread
from videogen.domain.models import Balance, Job, new_id, rfc3339
from videogen.domain.registry import ModelSpec, upload_fields
from videogen.domain.uploads import (
    POST_TTL_S,
    UPLOAD_ID,
    UPLOAD_ID_LEN,
    UPLOAD_TTL_S,
    MediaKind,
    Upload,
    UploadError,
    UploadStatus,
    input_key,
    parse_object_key,
    upload_id_of,
    usable,
)
from videogen.observability import count, logger
from videogen.ports import ObjectHead, UploadBucket, UploadStore, VideoStore

MIN_FAL_URL_TTL_S = 60  # a job past its deadline is never submitted; this only floors the arithmetic
MAX_OPTIMISTIC_ATTEMPTS = 10


def upload_view(upload: Upload) -> contract.Upload:
    return contract.Upload(
        id=upload.id,
        status=upload.status,
        content_type=upload.content_type,
        size_bytes=upload.size_bytes,
        width=upload.width,
        height=upload.height,
        duration_s=upload.duration_s,
        created_at=upload.created_at,
        expires_at=rfc3339(datetime.fromtimestamp(upload.expires_at, UTC)),
        error=contract.UploadError(code=upload.error.code, message=upload.error.message) if upload.error else None,
    )


def create_upload(
    store: UploadStore,
    bucket: UploadBucket,
    user_id: str,
    request: contract.UploadRequest,
    limits: UserLimits,
    clock: Callable[[], float] = time.time,
) -> contract.UploadCreated:
    """A pending upload record, then the presigned POST for its key (the record first: an event
    for the object always finds it).

    An upload counts against the user's request rate (videogen.domain.limits, the budget submits
    use), in the same one write that creates the record: decided first without a read (a user
    who is not bursting is idle), and when that write is refused, again on the state it returned
    — ``429 rate_limited`` (nothing written) or a write conditioned on exactly that state."""
    now = clock()
    upload = Upload(
        id=new_id("upl"),
        user_id=user_id,
        status=UploadStatus.PENDING,
        content_type=request.content_type,
        size_bytes=request.size_bytes,
        created_at=rfc3339(datetime.fromtimestamp(now, UTC)),
        expires_at=int(now) + UPLOAD_TTL_S,
    )
    _count_and_create(store, upload, limits, int(now * 1000))
    post = bucket.presign_post(upload.s3_key, upload.content_type, upload.size_bytes, POST_TTL_S)
    count("UploadsCreated")
    return contract.UploadCreated(upload=upload_view(upload), url=post.url, fields=post.fields)


def _count_and_create(store: UploadStore, upload: Upload, limits: UserLimits, now_ms: int) -> None:
    seen, usage = Balance(), admit_unread(limits, now_ms)
    for _ in range(MAX_OPTIMISTIC_ATTEMPTS):
        try:
            store.create_upload(upload, seen, usage)
            return
        except BalanceChanged as moved:  # not idle, or another request counted meanwhile
            seen = moved.seen or Balance()  # the store returns it; unknown: a write that cannot pass
            usage = admit(limits, seen, now_ms)  # RateLimited: nothing written
    raise ConcurrentUpdate("Too many concurrent changes to this account; retry shortly")


def get_upload(store: UploadStore, user_id: str, upload_id: str) -> contract.Upload:
    """The caller's own upload; another user's, a missing or an expired one: 404 alike."""
    upload = store.get_upload(user_id, upload_id) if re.fullmatch(UPLOAD_ID, upload_id) else None
    if upload is None or upload.expired():
        raise UnknownUpload(f"No upload {shown_id(upload_id, UPLOAD_ID_LEN)}")
    return upload_view(upload)


# --- submit ---------------------------------------------------------------------------------


def check_uploads(refs: Mapping[str, tuple[str, MediaKind]], found: Mapping[str, Upload]) -> dict[str, str]:
    """Every ``upload:<id>`` input (field -> (id, kind)) names a ``ready`` upload of the caller's
    of that kind; ``found``: the caller's uploads the submit's one read returned. Returns the
    job's input objects: field -> the sealed key of the bytes that were checked."""
    return {
        field: usable(upload_id, found.get(upload_id), kind, f"input.{field}")
        for field, (upload_id, kind) in sorted(refs.items())
    }


# --- SubmitToFal ----------------------------------------------------------------------------


def inputs_for_fal(
    job: Job, spec: ModelSpec, videos: VideoStore, now: Callable[[], float] = time.time
) -> dict[str, Any]:
    """The job's input as fal gets it: each ``upload:<id>`` replaced by a presigned GET of the
    sealed object the submit recorded for it (``job.input_objects``: the bytes the validator
    checked, never the key the app POSTs to), valid until the job's deadline (fal may start it any
    time before; after, the job is failed and never submitted). The job itself keeps
    ``upload:<id>``. A reference without a recorded object (a job accepted before inputs were
    sealed) is :class:`UnsealedInput`: its bytes were never pinned, so it is not sent."""
    fields = upload_fields(spec.input_model)
    payload = dict(job.input)
    ttl = max(MIN_FAL_URL_TTL_S, int(job.deadline_at - now()) + 1) if job.deadline_at else UPLOAD_TTL_S
    for name in fields:
        if upload_id_of(payload.get(name)) is None:
            continue
        sealed = job.input_objects.get(name)
        if sealed is None:
            raise UnsealedInput(f"input.{name} has no sealed object")
        payload[name] = videos.presign_input(sealed, ttl).url
    return payload


class UnsealedInput(Exception):
    """An ``upload:<id>`` input of a job without the sealed object submit records for it."""


# --- the check of an uploaded file --------------------------------------------------------------

_FIRST_READ = 64 * 1024  # one ranged GET covers the header of nearly every image


class _CachedReader:
    """Ranged reads of one object, the first 64 KiB read once and served from memory."""

    def __init__(self, bucket: UploadBucket, bucket_name: str, key: str, head: ObjectHead) -> None:
        self._read = lambda offset, length: bucket.read(bucket_name, key, offset, length, head.etag)
        self._size = head.size
        self._head = b""
        self._head_read = False
        self.reads = 0

    def __call__(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self._size - offset))
        if not self._head_read:
            self._head = self._read(0, min(_FIRST_READ, self._size))
            self._head_read = True
            self.reads += 1
        if offset + length <= len(self._head):
            return self._head[offset : offset + length]
        self.reads += 1
        return self._read(offset, length)


class UploadValidator:
    """Marks a pending upload ``ready`` (with what it measured) or ``rejected`` (with why), once:
    the write is conditioned on ``pending``, so a redelivered event changes nothing."""

    def __init__(self, store: UploadStore, bucket: UploadBucket) -> None:
        self._store = store
        self._bucket = bucket

    def check(self, bucket_name: str, key: str) -> str:
        """One object of an ObjectCreated event; returns what was done (for the log)."""
        owner = parse_object_key(key)
        if owner is None:
            return "ignored"  # not a key POST /v1/uploads hands out
        user_id, upload_id = owner
        upload = self._store.get_upload(user_id, upload_id)
        if upload is None or upload.status is not UploadStatus.PENDING:
            return "ignored"  # unknown (expired), or checked already: a redelivery
        head = self._bucket.head(bucket_name, key)
        if head is None:
            return "ignored"  # gone again (lifecycle); nothing to check
        size = head.size
        try:
            if size != upload.size_bytes:  # S3 enforces it, the local S3 does not: checked here too
                raise media_probe.NotDecodable(
                    "size_mismatch", f"the file has {size} bytes; {upload.size_bytes} were declared"
                )
            reader = _CachedReader(self._bucket, bucket_name, key, head)
            found = media_probe.probe(upload.content_type, reader, size)
        except UploadChanged:
            return self._superseded(upload_id)
        except media_probe.NotDecodable as bad:
            self._store.finish_upload(
                user_id, upload_id, UploadStatus.REJECTED, error=UploadError(code=bad.code, message=bad.message)
            )
            count("UploadsRejected")
            logger.info("upload rejected", extra={"upload_id": upload_id, "reason": bad.code})
            return "rejected"
        except MediaTransferError:
            logger.warning("upload could not be read; the event is retried", extra={"upload_id": upload_id})
            raise
        # The seal: fal will only ever read this copy, made only if the object is still the one checked.
        sealed = input_key(user_id, upload_id, head.etag)
        if not self._bucket.seal(bucket_name, key, head.etag, sealed):
            return self._superseded(upload_id)
        self._store.finish_upload(
            user_id,
            upload_id,
            UploadStatus.READY,
            width=found.width,
            height=found.height,
            duration_s=found.duration_s,
            input_key=sealed,
        )
        count("UploadsReady")
        return "ready"

    @staticmethod
    def _superseded(upload_id: str) -> str:
        """The app POSTed other bytes while these were checked: their own ObjectCreated event checks
        them; the upload stays pending until then (nothing sealed, nothing marked)."""
        count("UploadsSuperseded")
        logger.info("upload changed while it was checked", extra={"upload_id": upload_id})
        return "superseded"
