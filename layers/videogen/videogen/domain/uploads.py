"""Uploads: an input file the app puts straight into our bucket, then names as ``upload:<id>``.

The rules in one place: which content types are taken and how big, where an upload's bytes live,
how long they are kept, and when an ``upload:<id>`` input may be used (its owner's, ``ready``,
of the kind the field takes, not expired). No boto3 here.

Two keys per upload (the user is part of both, so an upload is only ever found under its owner):

* ``uploads/<user>/<id>``: where the app POSTs its file. The presigned POST works 15 minutes, so
  the app can POST other bytes there AFTER they were checked: nothing but the validator ever reads
  this key.
* ``inputs/<user>/<id>/<etag>``: the sealed copy — the validator copies the object it checked with
  ``CopySourceIfMatch=<the checked ETag>`` (S3 refuses the copy if the bytes changed meanwhile) and
  records this key on the upload (:attr:`Upload.input_key`). Submit records it on the job
  (``Job.input_objects``); fal only ever gets a presigned GET of it.
"""

from __future__ import annotations

import re
import time
from enum import StrEnum
from urllib.parse import quote, unquote

from pydantic import BaseModel

from videogen.domain.errors import UploadNotFound, UploadNotReady, UploadRejected, a_or_an, shown_id

UPLOAD_PREFIX = "uploads/"
INPUT_PREFIX = "inputs/"
POST_TTL_S = 15 * 60  # the presigned POST works this long
UPLOAD_TTL_S = 7 * 24 * 3600  # an upload may be used this long after it was created (docs/api.md: "kept 7 days")
# The bucket's lifecycle rules (template.yaml): a sealed input is deleted a day after its upload
# can no longer be named (ExpireInputs), so a job submitted in the upload's last minute can still
# be fetched by fal until its deadline; the raw POSTed bytes are only read by the validator,
# seconds after the POST, and go after a day (ExpireUploads).
INPUT_RETENTION_DAYS = 8
RAW_UPLOAD_RETENTION_DAYS = 1
MIB = 1024 * 1024


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


CONTENT_TYPES: dict[str, MediaKind] = {
    "image/jpeg": MediaKind.IMAGE,
    "image/png": MediaKind.IMAGE,
    "image/webp": MediaKind.IMAGE,
    "video/mp4": MediaKind.VIDEO,
}
MAX_BYTES: dict[MediaKind, int] = {MediaKind.IMAGE: 20 * MIB, MediaKind.VIDEO: 100 * MIB}


class UploadStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    REJECTED = "rejected"


# ``upload:`` + an id as :func:`videogen.domain.models.new_id` makes them (``upl_`` + 26 characters)
UPLOAD_ID = r"upl_[0-9a-z]{26}"
UPLOAD_ID_LEN = 30  # len("upl_") + 26: the longest id an answer quotes in full
UPLOAD_REF = rf"upload:{UPLOAD_ID}"
_REF = re.compile(rf"upload:({UPLOAD_ID})")


def upload_id_of(value: object) -> str | None:
    """The upload id an input value names (``upload:<id>``), else None (a plain URL)."""
    if isinstance(value, str):
        match = _REF.fullmatch(value)
        if match:
            return match.group(1)
    return None


class UploadError(BaseModel):
    code: str  # type_mismatch | size_mismatch | not_decodable
    message: str


class Upload(BaseModel):
    id: str
    user_id: str
    status: UploadStatus
    content_type: str
    size_bytes: int
    created_at: str
    expires_at: int  # epoch seconds: the table's TTL attribute (DynamoDB deletes it some time after)
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    error: UploadError | None = None
    input_key: str | None = None  # ready: the sealed copy of the checked bytes (:func:`input_key`)

    @property
    def kind(self) -> MediaKind:
        return CONTENT_TYPES[self.content_type]

    @property
    def s3_key(self) -> str:
        return object_key(self.user_id, self.id)

    def expired(self, now: float | None = None) -> bool:
        """TTL deletion lags (up to days): every read checks the time itself."""
        return (time.time() if now is None else now) >= self.expires_at


def object_key(user_id: str, upload_id: str) -> str:
    """Where an upload's bytes live. The user id is %-encoded (a ``sub`` may hold ``/`` or ``|``)."""
    return f"{UPLOAD_PREFIX}{quote(user_id, safe='')}/{upload_id}"


def input_key(user_id: str, upload_id: str, etag: str) -> str:
    """Where the sealed copy of the bytes checked (whose ETag was ``etag``) lives."""
    return f"{INPUT_PREFIX}{quote(user_id, safe='')}/{upload_id}/{quote(etag.strip(chr(34)), safe='')}"


def parse_object_key(key: str) -> tuple[str, str] | None:
    """(user id, upload id) of a key :func:`object_key` made; None for any other key."""
    if not key.startswith(UPLOAD_PREFIX):
        return None
    user, sep, upload_id = key[len(UPLOAD_PREFIX) :].partition("/")
    if not sep or not user or not re.fullmatch(UPLOAD_ID, upload_id):
        return None
    return unquote(user), upload_id


def usable(upload_id: str, upload: Upload | None, kind: MediaKind, field: str, now: float | None = None) -> str:
    """The sealed object (its key) an ``upload:<id>`` input of ``field`` (taking ``kind``) may use,
    else the problem. ``upload`` is what was read under the CALLER's key for ``upload_id``: another
    user's upload is None, like a missing one."""
    if upload is None or upload.expired(now):
        raise UploadNotFound(
            f"{field}: no upload {shown_id(upload_id, UPLOAD_ID_LEN)} (uploads are kept {UPLOAD_TTL_S // 86400} days)"
        )
    if upload.status is UploadStatus.REJECTED:
        reason = upload.error.message if upload.error else "its bytes are not a valid file of its type"
        raise UploadRejected(f"{field}: upload {upload.id} was rejected: {reason}")
    if upload.kind is not kind:
        raise UploadRejected(f"{field} takes {a_or_an(kind.value)}; upload {upload.id} is {a_or_an(upload.kind.value)}")
    if upload.status is not UploadStatus.READY:
        raise UploadNotReady(f"{field}: upload {upload.id} is still being checked; retry in a moment")
    if upload.input_key is None:  # checked before inputs were sealed: its bytes may have changed since
        raise UploadRejected(f"{field}: upload {upload.id} was checked before inputs were sealed; upload it again")
    return upload.input_key
