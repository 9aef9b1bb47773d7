"""In-memory twins of the devices store, SNS mobile push and the poster lookup.

``FakeDeviceStore`` keeps :class:`videogen.adapters.devices.DynamoDeviceStore`'s semantics: the
cap is checked in the same step as the new device, an update is not counted, a removal with a
token happens only while the device still holds it, a notification claim exists at most once.
``FakePush`` records every publish and endpoint call; ``gone`` / ``unavailable`` / ``broken``
script failures per endpoint (or per token for endpoint creation).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from videogen.domain.devices import MAX_DEVICES, Device, Notification, Platform, token_hash
from videogen.domain.errors import (
    DeviceChanged,
    DeviceNotFound,
    PushEndpointGone,
    PushUnavailable,
    TokenMoved,
    TooManyDevices,
)
from videogen.domain.models import rfc3339


class FakeDeviceStore:
    def __init__(self) -> None:
        self.devices: dict[tuple[str, str], Device] = {}
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.owners: dict[str, tuple[str, str]] = {}  # token_hash -> (user, device) that registered it last
        self._claims = itertools.count(1)

    def count(self, user_id: str) -> int:
        return sum(1 for uid, _ in self.devices if uid == user_id)

    def put_device(self, user_id: str, device_id: str, platform: Platform, token: str) -> tuple[Device, Device | None]:
        now = rfc3339()
        before = self.devices.get((user_id, device_id))
        if before is None:
            if self.count(user_id) >= MAX_DEVICES:
                raise TooManyDevices("at most 10 devices per user")
            device = Device(
                id=device_id, user_id=user_id, platform=platform, token=token, created_at=now, updated_at=now
            )
        else:
            keep = before.endpoint_arn if before.platform == platform else None
            device = before.model_copy(
                update={"platform": platform, "token": token, "endpoint_arn": keep, "updated_at": now}
            )
        self.devices[(user_id, device_id)] = device
        self.owners[token_hash(token)] = (user_id, device_id)  # the same write moves the token's ownership
        return device.model_copy(), before

    def get_device(self, user_id: str, device_id: str) -> Device | None:
        device = self.devices.get((user_id, device_id))
        return device.model_copy() if device else None

    def list_devices(self, user_id: str) -> list[Device]:
        return sorted(
            (d.model_copy() for (uid, _), d in self.devices.items() if uid == user_id),
            key=lambda d: (d.created_at, d.id),
        )

    def set_endpoint(self, device: Device, endpoint_arn: str) -> Device:
        current = self.devices.get((device.user_id, device.id))
        if current is None or current.token != device.token or current.platform != device.platform:
            raise DeviceChanged(device.id)
        self.devices[(device.user_id, device.id)] = current.model_copy(update={"endpoint_arn": endpoint_arn})
        return self.devices[(device.user_id, device.id)].model_copy()

    def delete_device(self, user_id: str, device_id: str, *, token: str | None = None) -> Device:
        current = self.devices.get((user_id, device_id))
        if current is None:
            raise DeviceNotFound(device_id)
        if token is not None and current.token != token:
            raise DeviceChanged(device_id)
        del self.devices[(user_id, device_id)]
        return current

    def claim_notification(self, job_id: str, device: Device) -> str | None:
        owner = self.owners.get(token_hash(device.token))
        if owner is not None and owner != (device.user_id, device.id):
            raise TokenMoved(device.id)
        device_id = device.id
        if (job_id, device_id) in self.records:
            return None
        claim = f"claim-{next(self._claims)}"
        self.records[(job_id, device_id)] = {"state": "sending", "claim": claim}
        return claim

    def token_owner(self, token: str) -> tuple[str, str] | None:
        return self.owners.get(token_hash(token))

    def notification_sent(self, job_id: str, device_id: str, claim: str, message_id: str) -> None:
        record = self.records.get((job_id, device_id))
        if record and record["claim"] == claim:
            record.update(state="sent", message_id=message_id)

    def release_notification(self, job_id: str, device_id: str, claim: str) -> None:
        record = self.records.get((job_id, device_id))
        if record and record["claim"] == claim and record["state"] == "sending":
            del self.records[(job_id, device_id)]


@dataclass
class Sent:
    platform: Platform
    endpoint_arn: str
    notification: Notification


@dataclass
class FakePush:
    platforms: set[Platform] = field(default_factory=lambda: set(Platform))
    sent: list[Sent] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # tokens endpoints were created for
    deleted: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # endpoint ARNs (publish) or tokens (creation) SNS refuses for good
    unavailable: set[str] = field(default_factory=set)  # ... or refuses now
    broken: set[str] = field(default_factory=set)  # endpoint ARNs whose publish raises an unknown error
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def enabled(self, platform: Platform) -> bool:
        return platform in self.platforms

    def ensure_endpoint(self, platform: Platform, token: str, endpoint_arn: str | None) -> str:
        if token in self.gone:
            raise PushEndpointGone("token rejected")
        if token in self.unavailable:
            raise PushUnavailable("throttled")
        if endpoint_arn:
            return endpoint_arn
        self.created.append(token)
        return f"arn:aws:sns:us-east-1:123456789012:endpoint/{platform.value}/app/{token}"

    def publish(self, platform: Platform, endpoint_arn: str, notification: Notification) -> str:
        if endpoint_arn in self.gone:
            raise PushEndpointGone("EndpointDisabled")
        if endpoint_arn in self.unavailable:
            raise PushUnavailable("Throttled")
        if endpoint_arn in self.broken:
            raise TimeoutError("read timeout")
        self.sent.append(Sent(platform, endpoint_arn, notification))
        return f"msg-{next(self._ids)}"

    def delete_endpoint(self, endpoint_arn: str) -> None:
        self.deleted.append(endpoint_arn)


@dataclass
class FakePosters:
    """The poster appears after ``after`` looks (None: never)."""

    url: str = "https://posters.example/p.jpg"
    after: int | None = 0
    looks: int = 0

    def poster_url(self, job_id: str) -> str | None:
        self.looks += 1
        if self.after is None or self.looks <= self.after:
            return None
        return self.url
