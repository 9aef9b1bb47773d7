"""The public contract of docs/api.md as pydantic models: every request and response body.

The views build these models, the routes return them, and ``GET /openapi.json`` is generated
from them (:mod:`videogen.api.document`). A field that is always sent is required; a field that
may be null is ``X | None`` and still required when it is always sent.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from videogen.domain import media_probe
from videogen.domain.devices import APNS_PLATFORMS, APNS_TOKEN, TOKEN_MAX, Platform, canonical_token
from videogen.domain.endings import FailureCode
from videogen.domain.errors import a_or_an, error_classes
from videogen.domain.models import JobStatus, LedgerType
from videogen.domain.purchases import MAX_JWS_CHARS, MAX_PLAY_TOKEN_CHARS, StoreEnvironment
from videogen.domain.registry import INTEGRAL, VideoRequest
from videogen.domain.uploads import CONTENT_TYPES, MAX_BYTES, MediaKind, UploadStatus

__all__ = [
    "AppStorePurchaseRequest",
    "ChargedCredits",
    "CreditsPage",
    "Device",
    "DeviceList",
    "DeviceRequest",
    "FieldError",
    "GatewayMessage",
    "GooglePlayPurchaseRequest",
    "GrantedCredits",
    "Job",
    "JobError",
    "JobPage",
    "LedgerEntry",
    "ModelInfo",
    "ModelList",
    "Problem",
    "ProblemCode",
    "Product",
    "ProductList",
    "Progress",
    "Purchase",
    "PurchaseCreated",
    "PurchaseRequest",
    "SubmitAccepted",
    "Upload",
    "UploadCreated",
    "UploadError",
    "UploadRequest",
    "ValidationProblem",
    "Video",
    "VideoRequest",
    "problem_codes",
]

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"}, examples=["2026-11-22T09:00:00.000Z"])]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Progress(_Body):
    queue_position: int | None = Field(description="Position in fal's queue while the job waits there")
    message: str | None = Field(description="What is happening now, for display")


class JobError(_Body):
    code: FailureCode = Field(description="Why the job failed; every one of them refunds the credits")
    message: str
    field: str | None = Field(
        description="The input the provider named (content_policy: the flagged input; invalid_input: the "
        "rejected one), when it says which",
    )


class Video(_Body):
    url: str = Field(description="Short-lived presigned GET of this system's own bucket")
    expires_at: Timestamp
    content_type: str
    size_bytes: int
    sha256: str = Field(description="Hex SHA-256 of the stored file, to check a download")
    # Measured from the file itself, shortly after the job completed; null until then.
    duration_s: float | None = Field(description="Length in seconds, read from the file; null until measured")
    width: int | None = Field(description="Frame width in pixels, read from the file; null until measured")
    height: int | None = Field(description="Frame height in pixels, read from the file; null until measured")
    fps: float | None = Field(description="Average frame rate, read from the file; null until measured")
    has_audio: bool | None = Field(description="Whether the file has an audio track; null until measured")
    poster_url: str | None = Field(
        description="Short-lived presigned GET of a JPEG frame near the start that is not black (a poster "
        "for lists and notifications), signed like url; null until the poster exists (seconds after completion)"
    )


class Job(_Body):
    id: str
    status: JobStatus
    model: str
    input: dict[str, Any] = Field(description="The inputs as accepted, with the model's defaults filled in")
    credits_charged: int
    credits_refunded: int = Field(
        description="The credits given back: credits_charged once the job failed or was canceled, else 0"
    )
    created_at: Timestamp
    updated_at: Timestamp
    completed_at: Timestamp | None
    progress: Progress
    video: Video | None = Field(description="Set once the job is completed")
    error: JobError | None = Field(description="Set once the job failed, else null (also for a canceled job)")


class ChargedCredits(_Body):
    charged: int
    balance: int


class SubmitAccepted(_Body):
    job: Job
    credits: ChargedCredits


class JobPage(_Body):
    items: list[Job]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")


class LedgerEntry(_Body):
    id: str
    type: LedgerType
    amount: int
    job_id: str | None
    purchase_id: str | None = Field(description="The purchase a purchase or clawback entry is of; else null")
    created_at: Timestamp


class CreditsPage(_Body):
    balance: int = Field(description="May be below zero after a clawback; then nothing can be spent until it is back")
    app_account_token: str = Field(
        json_schema_extra={"format": "uuid"},
        description="Pass this to the store at purchase time (StoreKit appAccountToken, Play Billing "
        "obfuscatedAccountId): a purchase carrying another user's token is refused. Stable per user",
    )
    ledger: list[LedgerEntry] = Field(description="Newest first")
    next_cursor: str | None


class ModelInfo(_Body):
    id: str
    name: str
    fal_endpoint: str = Field(description="The upstream model the user pays for (never substituted)")
    credits: int = Field(description="The price at the model's default inputs")
    expected_seconds: int = Field(description="Typical time from submit to video")
    input_schema: dict[str, Any] = Field(description="JSON Schema of this model's input")


class ModelList(_Body):
    items: list[ModelInfo]


# --- products and purchases ----------------------------------------------------------------


class Product(_Body):
    id: str = Field(examples=["credits_100"])
    credits: int = Field(description="The credits a purchase of this pack grants")
    app_store_product_id: str | None = Field(description="The App Store product id; null: not sold there")
    google_play_product_id: str | None = Field(description="The Google Play product id; null: not sold there")


class ProductList(_Body):
    items: list[Product]


class AppStorePurchaseRequest(_Body):
    """``POST /v1/purchases`` with an App Store purchase."""

    store: Literal["app_store"]
    signed_transaction: str = Field(
        min_length=1,
        max_length=MAX_JWS_CHARS,
        description="StoreKit 2's Transaction.jwsRepresentation of the purchase, as StoreKit handed it to the app",
    )


class GooglePlayPurchaseRequest(_Body):
    """``POST /v1/purchases`` with a Google Play purchase."""

    store: Literal["google_play"]
    product_id: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[a-z0-9][a-z0-9_.]*$",
        description="The Play product id bought (Purchase.getProducts()), a pack's google_play_product_id",
    )
    purchase_token: str = Field(
        min_length=1,
        max_length=MAX_PLAY_TOKEN_CHARS,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Play Billing's Purchase.getPurchaseToken() of the purchase",
    )


PurchaseRequest = Annotated[AppStorePurchaseRequest | GooglePlayPurchaseRequest, Field(discriminator="store")]


class Purchase(_Body):
    id: str = Field(examples=["pur_01jd0000000000000000000000"])
    store: Literal["app_store", "google_play"]
    product_id: str = Field(description="The store's product id")
    transaction_id: str = Field(description="The store's transaction id (App Store transactionId)")
    credits: int
    status: Literal["granted", "revoked"] = Field(description="revoked: the store refunded it, credits taken back")
    environment: StoreEnvironment = Field(description="sandbox: App Review, TestFlight or a sandbox tester; no revenue")
    created_at: Timestamp
    revoked_at: Timestamp | None


class PurchasePage(_Body):
    items: list[Purchase]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")


class GrantedCredits(_Body):
    granted: int
    balance: int = Field(description="The balance right after the grant")


class PurchaseCreated(_Body):
    purchase: Purchase
    credits: GrantedCredits


class DeviceRequest(_Body):
    """``PUT /v1/devices/{device_id}``: where this install is reached."""

    # An APNs token is hex (32 bytes today; Apple may lengthen it): said in the schema too.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"platform": {"enum": [p.value for p in APNS_PLATFORMS]}}},
            "then": {"properties": {"token": {"pattern": APNS_TOKEN}}},
        },
    )

    platform: Platform = Field(
        description="apns (App Store and TestFlight builds), apns_sandbox (development builds), fcm (Firebase)"
    )
    token: str = Field(
        min_length=1,
        max_length=TOKEN_MAX,
        description="The APNs device token (hex) or FCM registration token; stored, never answered",
    )

    @field_validator("token")
    @classmethod
    def _apns_token_is_hex(cls, token: str, info: ValidationInfo) -> str:
        platform = info.data.get("platform")
        if platform in APNS_PLATFORMS and not re.fullmatch(APNS_TOKEN, token):
            raise ValueError("an APNs device token is an even number (64-200) of hex digits")
        return canonical_token(platform, token) if platform is not None else token


class Device(_Body):
    id: str = Field(description="The app's own install id, as in the path")
    platform: Platform
    created_at: Timestamp
    updated_at: Timestamp


class DeviceList(_Body):
    items: list[Device] = Field(description="The caller's devices, oldest first (at most 10)")


# --- uploads ----------------------------------------------------------------------------

# domain/uploads.py CONTENT_TYPES, spelt out for the type checker (a unit test keeps them equal)
UploadContentType = Literal["image/jpeg", "image/png", "image/webp", "video/mp4"]


class UploadRequest(_Body):
    """The body of POST /v1/uploads: what the app is about to send."""

    # The per-kind cap in the schema too, so what the document accepts is exactly what is accepted.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "allOf": [
                {
                    "if": {
                        "properties": {"content_type": {"enum": [c for c, k in CONTENT_TYPES.items() if k == kind]}}
                    },
                    "then": {"properties": {"size_bytes": {"maximum": MAX_BYTES[kind]}}},
                }
                for kind in MediaKind
            ]
        },
    )

    content_type: UploadContentType = Field(description="The file's type; the POST must send exactly this")
    size_bytes: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_BYTES[MediaKind.VIDEO],
            description=f"The file's exact size in bytes: images at most {MAX_BYTES[MediaKind.IMAGE]} (20 MiB), "
            f"videos at most {MAX_BYTES[MediaKind.VIDEO]} (100 MiB)",
        ),
        INTEGRAL,  # 1742.0 is an integer in JSON Schema, as in the published document
    ]

    @model_validator(mode="after")
    def _within_kind(self) -> UploadRequest:
        kind = CONTENT_TYPES[self.content_type]
        if self.size_bytes > MAX_BYTES[kind]:
            raise ValueError(f"size_bytes: {a_or_an(kind.value)} upload is at most {MAX_BYTES[kind]} bytes")
        return self


class UploadError(_Body):
    code: str = Field(description="Why the file was rejected: " + ", ".join(media_probe.REJECTION_CODES))
    message: str


class Upload(_Body):
    id: str = Field(examples=["upl_01jd0000000000000000000000"])
    status: UploadStatus = Field(description="pending until the bytes were checked, then ready or rejected")
    content_type: str
    size_bytes: int
    width: int | None = Field(description="Pixels, read from the file (images)")
    height: int | None = Field(description="Pixels, read from the file (images)")
    duration_s: float | None = Field(description="Seconds, read from the file (videos)")
    created_at: Timestamp
    expires_at: Timestamp = Field(description="After this, upload:<id> is upload_not_found (kept 7 days)")
    error: UploadError | None = Field(description="Set when rejected")


class UploadCreated(_Body):
    """A presigned S3 POST: send a multipart/form-data POST to ``url`` with every field of
    ``fields`` and then the file as the last field, ``file``. Valid 15 minutes."""

    upload: Upload
    url: str = Field(description="The form's action URL (our bucket), never this API")
    fields: dict[str, str] = Field(description="Form fields to send as they are, before the file")


def problem_codes() -> list[str]:
    """Every ``code`` a problem body can carry: one per DomainError class."""
    return sorted({c.code for c in error_classes()})


ProblemCode = StrEnum("ProblemCode", {c: c for c in problem_codes()})  # type: ignore[misc]


class Problem(_Body):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    code: ProblemCode


class FieldError(_Body):
    loc: str = Field(description="Dotted path of the offending field, e.g. input.prompt")
    msg: str


class ValidationProblem(Problem):
    """``422 validation_failed``: a problem with the fields that failed."""

    errors: list[FieldError]


class GatewayMessage(_Body):
    """API Gateway's own answer (401 from the JWT authorizer, its throttling and limits)."""

    message: str = Field(examples=["Unauthorized"])
