"""Domain errors. Each carries its stable API ``code`` and HTTP ``status``.

The one exception→status mapping of the API lives in :mod:`videogen.api.problems`
and reads these attributes; nothing matches on message text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from videogen.domain.endings import Failure
    from videogen.domain.models import Balance, IdempotencyRecord


SHOWN_CHARS = 64


def shown(value: object, *, quote: bool = True, limit: int = SHOWN_CHARS) -> str:
    """A user's value as an answer may quote it: its repr (``quote``) or str, cut to ``limit``
    characters with an ellipsis. An input may be 64 KB; an answer echoes a short prefix at most."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_id(value: str, max_len: int) -> str:
    """An id a client sent, as an answer quotes it: in full (quoted) when it is at most ``max_len``
    characters, the longest a valid id is; a longer one cannot name anything, so the detail shows
    its first ``max_len`` characters and says how long it was (never an attacker's 64 KiB)."""
    if len(value) <= max_len:
        return repr(value)
    return f"{value[:max_len]!r}… ({len(value)} characters; a valid id has at most {max_len})"


def a_or_an(word: str) -> str:
    """``word`` with its indefinite article, for a message that names a value (``an image``,
    ``a video``, ``an in_progress job``). By the first letter: the words it gets (media kinds, job
    statuses, store product types) have no silent or "you"-sounding first letter."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


class DomainError(Exception):
    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    retry_after_s: int | None = None  # set by an error that knows when to retry (Retry-After)

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class IdempotencyKeyMissing(DomainError):
    code, status, title = "idempotency_key_missing", 400, "Idempotency-Key header required"


class IdempotencyKeyInvalid(DomainError):
    code, status, title = "idempotency_key_invalid", 400, "Idempotency-Key is invalid"


class InvalidCursor(DomainError):
    code, status, title = "invalid_cursor", 400, "Invalid cursor"


class BadRequest(DomainError):
    code, status, title = "bad_request", 400, "Bad request"


class Unauthorized(DomainError):
    code, status, title = "unauthorized", 401, "Unauthorized"


class InvalidSignature(DomainError):
    code, status, title = "invalid_signature", 401, "Invalid webhook signature"


class InsufficientCredits(DomainError):
    code, status, title = "insufficient_credits", 402, "Insufficient credits"


class JobNotFound(DomainError):
    code, status, title = "job_not_found", 404, "Job not found"


class ModelNotFound(DomainError):
    code, status, title = "model_not_found", 404, "Model not found"


class RouteNotFound(DomainError):
    code, status, title = "not_found", 404, "Not found"


class IdempotencyKeyInUse(DomainError):
    code, status, title = "idempotency_key_in_use", 409, "A request with this Idempotency-Key is in progress"


class NotCancelable(DomainError):
    code, status, title = "not_cancelable", 409, "Job can no longer be canceled"


class UploadNotReady(DomainError):
    code, status, title = "upload_not_ready", 409, "Upload not checked yet"


class PayloadTooLarge(DomainError):
    code, status, title = "payload_too_large", 413, "Payload too large"


class ValidationFailed(DomainError):
    code, status, title = "validation_failed", 422, "Validation failed"

    MAX_ERRORS: ClassVar[int] = 20  # 64 KB of one-letter unknown keys must not answer 10,000 errors

    def __init__(self, errors: list[dict[str, str]], detail: str = "") -> None:
        detail = detail or "The request does not match the schema"
        if len(errors) > self.MAX_ERRORS:
            detail = f"{detail} (the first {self.MAX_ERRORS} of {len(errors)} errors)"
            errors = errors[: self.MAX_ERRORS]
        super().__init__(detail, errors=errors)
        self.errors = errors


class IdempotencyKeyReused(DomainError):
    code, status, title = "idempotency_key_reused", 422, "Idempotency-Key reused with a different body"


class UploadNotFound(DomainError):
    """An ``upload:<id>`` input naming no upload of the caller's (missing, another user's, expired)."""

    code, status, title = "upload_not_found", 422, "Upload not found"


class UnknownUpload(UploadNotFound):
    """``GET /v1/uploads/{id}`` of no upload of the caller's: 404, the same code."""

    status = 404


class UploadRejected(DomainError):
    """An ``upload:<id>`` input whose bytes failed the check, or of the wrong kind for its field."""

    code, status, title = "upload_rejected", 422, "Upload not usable"


class TooManyActiveJobs(DomainError):
    code, status, title = "too_many_active_jobs", 429, "Too many active jobs"


class RateLimited(DomainError):
    """A user's own limit (videogen.domain.limits): the request rate of submits and uploads, or the
    daily credit-spend cap. Carries the seconds until a request would be allowed (Retry-After)."""

    code, status, title = "rate_limited", 429, "Rate limited"

    def __init__(self, detail: str = "", *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = max(1, int(retry_after_s))


class ConcurrentUpdate(DomainError):
    """The account's data kept changing under an optimistic read-then-conditional-write (the
    balance moved before every charge, or during every credits read): 429, Retry-After. Not
    DynamoDB's contention, which is :class:`StoreBusy`."""

    code, status, title = "concurrent_update", 429, "Too many concurrent requests"


class ServiceUnavailable(DomainError):
    code, status, title = "service_unavailable", 503, "Service temporarily unavailable"


class StoreBusy(ServiceUnavailable):
    """A DynamoDB write or transactional read lost to contention (TransactionConflict,
    throttling) after its retries, not to a condition: nothing changed, and trying again later
    is right. 503 with Retry-After where it reaches the API; its NAME is in the state machine's
    SubmitToFal Retry (the other tasks retry every error or catch it)."""


class GrantConflict(DomainError):
    code, status, title = "grant_conflict", 409, "Grant id already used with other values"


# --- devices (push notifications) ----------------------------------------------------


class DeviceNotFound(DomainError):
    code, status, title = "device_not_found", 404, "Device not found"


class TooManyDevices(DomainError):
    code, status, title = "too_many_devices", 409, "Too many devices"


def error_classes() -> Iterator[type[DomainError]]:
    """Every DomainError class, depth first, the base included: what the API can answer (the
    OpenAPI document's problem codes and docs/api.md's error table are both built from this)."""

    def walk(cls: type[DomainError]) -> Iterator[type[DomainError]]:
        yield cls
        for sub in cls.__subclasses__():
            yield from walk(sub)

    return walk(DomainError)


# --- errors that never reach the API -------------------------------------------------


class TransitionRejected(Exception):
    """A conditional state change found the job in another state (someone else won)."""


class IdempotencyKeyTaken(Exception):
    """The submit transaction found the key already used; carries the stored record."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__(record.job_id)
        self.record = record


class BalanceChanged(Exception):
    """The balance item moved since it was read (optimistic check); re-read and retry. ``seen``:
    the item as stored, when the refused write returned it (no re-read needed)."""

    def __init__(self, seen: Balance | None = None) -> None:
        super().__init__()
        self.seen = seen


class MediaRejected(Exception):
    """The result media failed a guard (host, scheme, size, type). Final: do not retry."""


class MediaTransferError(Exception):
    """The result media could not be fetched or stored right now. Retry later."""


class UploadChanged(Exception):
    """The uploaded object is no longer the one being checked (the app POSTed new bytes to its
    key meanwhile: S3 answered 412 to an If-Match). The new bytes' own event checks them."""


class VideoMissing(Exception):
    """The stored video a job points to is not in the bucket (deleted, expired). Final."""


class MediaUndecodable(Exception):
    """The stored video could not be read as a video (no video stream, no decodable frame). Final:
    the same bytes fail the same way again."""


class TokenMoved(Exception):
    """A device's push token was registered since by another device (another user's, or another
    install of the same user's): the token is that device's now, this one must not be sent to."""


class DeviceChanged(Exception):
    """A device write found the device gone, or holding another token than the one it was for
    (the app re-registered meanwhile): nothing was changed."""


class PushEndpointGone(Exception):
    """The push service will never deliver to this device again: its endpoint is disabled or
    deleted, or the service rejected its token. The device is removed."""


class PushUnavailable(Exception):
    """The push service did not take the message now (throttling, an outage): nothing was sent;
    trying again later is right."""


# --- fal.ai outcomes, raised by the FalGateway port ----------------------------------------
# The class NAMES are part of the state machine: its Retry matches ``FalTransientError``.


class FalTransientError(Exception):
    """A retryable failure: 408/409/429/5xx, transport error, timeout or unusable answer.

    ``refused``: fal certainly did not act on the call (it answered that it took nothing, or the
    call never went out). For a submit this means no generation exists; without it, one may.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_type: str | None = None,
        retry_after_s: float | None = None,
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.retry_after_s = retry_after_s
        self.refused = refused


class FalRejectedError(Exception):
    """A final refusal (400/401/403/404/422, ...). ``detail`` is short and never holds the key."""

    def __init__(self, status: int, error_type: str | None, detail: str, failure: Failure | None = None) -> None:
        super().__init__(f"fal rejected the call ({status} {error_type or 'error'}): {detail}")
        self.status = status
        self.error_type = error_type
        self.detail = detail
        self.failure = failure  # what the refusal means for a job (endings.fal_failure), when known


# --- store purchases (POST /v1/purchases, the store webhooks) ---------------------------------
# DomainErrors like those above (error_classes() finds them wherever they are defined).


class PurchaseInvalid(DomainError):
    """The store's proof does not verify (signature, certificate chain, bundle id / package name,
    environment), or it is not a purchase we credit (not a consumable, quantity not 1)."""

    code, status, title = "purchase_invalid", 422, "The purchase could not be verified"


class PurchaseRevoked(DomainError):
    code, status, title = "purchase_revoked", 422, "The purchase was refunded or revoked"


class ProductUnknown(DomainError):
    code, status, title = "product_unknown", 422, "Not a credit pack on sale"


class PurchaseAlreadyClaimed(DomainError):
    """The store transaction was credited to another user, or carries another user's account token."""

    code, status, title = "purchase_already_claimed", 409, "The purchase belongs to another user"
