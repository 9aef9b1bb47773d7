"""Push notification targets (``/v1/devices``) and what a notification says. No boto3 here.

A device is the app's own install id under one user, with the push service it is reached by and
its token. The token is a secret of the user's phone: it is stored, never answered, never logged.

A push token reaches ONE phone, whoever registered it last: a phone signed out of user A and into
user B registers the same token for B. So each token has one owner (user, device), recorded by
:func:`token_hash` of the token in the same write as the device, and a notification is sent to a
device only while it still owns its token: A stops getting B's notifications.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from videogen.domain.errors import a_or_an
from videogen.domain.models import JobStatus

MAX_DEVICES = 10
"""At most this many devices per user (409 too_many_devices beyond)."""

DEVICE_ID_MAX = 128
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._~:@+=-]{1,128}$"
"""An install id as apps make them (a UUID, an FCM installation id): it becomes part of a DynamoDB key."""
TOKEN_MAX = 4096  # an APNs token is 64 hex characters, an FCM registration token ~160; room to spare


def token_hash(token: str) -> str:
    """What the token's ownership is keyed by: its sha256 (the token itself is kept on its device only)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Platform(StrEnum):
    APNS = "apns"
    APNS_SANDBOX = "apns_sandbox"  # development builds talk to Apple's sandbox gateway
    FCM = "fcm"


APNS_PLATFORMS = frozenset({Platform.APNS, Platform.APNS_SANDBOX})
APNS_TOKEN = r"^(?:[0-9A-Fa-f]{2}){32,100}$"  # what APNs issues: hex, 32 bytes today


def canonical_token(platform: Platform, token: str) -> str:
    """The one spelling of a token: an APNs token is bytes written in hex, so ``AB..`` and ``ab..``
    are one phone (lower case: what its ownership is keyed by, what SNS gets). FCM's as sent."""
    return token.lower() if platform in APNS_PLATFORMS else token


class Device(BaseModel):
    """One stored device. ``endpoint_arn`` is the SNS platform endpoint of ``token`` (None while
    push is off for the platform, or until its endpoint is created)."""

    id: str
    user_id: str
    platform: Platform
    token: str
    endpoint_arn: str | None = None
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class Notification:
    """What one device is told about one job (the push adapter renders it per platform)."""

    job_id: str
    status: JobStatus
    title: str
    body: str
    poster_url: str | None = None


NOTIFIED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})
"""The endings a user is told about (a cancel is the user's own doing: no notification)."""


def notification_for(job_id: str, status: JobStatus, poster_url: str | None) -> Notification:
    """The notification of a job that ended ``completed`` (with its poster when there is one) or
    ``failed``."""
    if status == JobStatus.COMPLETED:
        return Notification(job_id, status, "Your video is ready", "Tap to watch it.", poster_url)
    if status == JobStatus.FAILED:
        return Notification(job_id, status, "Your video could not be made", "Your credits were refunded.")
    raise ValueError(f"no notification for {a_or_an(status.value)} job")
