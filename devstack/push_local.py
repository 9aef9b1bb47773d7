"""Push notifications, played locally: moto's SNS stands in for APNs and FCM.

* :func:`create_applications`: one local SNS platform application per push parameter of the
  template (APNS, APNS_SANDBOX, GCM), so push is ON locally and the functions' grants name them.
* :class:`PushLog`: every message moto's SNS accepted for a platform endpoint, in order, with the
  device it went to (read from the table at the moment of the send, under moto's DynamoDB lock,
  so a device removed later still shows what it received; one removed while the send was under
  way is named from the last time it was seen) and when (``sent_at``, epoch seconds: the chaos run
  compares it with when a device was deleted). ``GET /_local/notifications`` lists them.
* :meth:`PushLog.disable`: mark a device's endpoint disabled, as SNS does when APNs or FCM report
  its token invalid (the removal path end to end).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

from botocore.exceptions import ClientError

PLATFORM_PARAMETERS = {
    "ApnsPlatformApplicationArn": "APNS",
    "ApnsSandboxPlatformApplicationArn": "APNS_SANDBOX",
    "FcmPlatformApplicationArn": "GCM",
}


def create_applications(sns: Any, prefix: str, parameters: Any) -> dict[str, str]:
    """Template parameter -> ARN of a local platform application (reused if it exists)."""
    existing = {
        a["PlatformApplicationArn"]
        for page in sns.get_paginator("list_platform_applications").paginate()
        for a in page["PlatformApplications"]
    }
    out: dict[str, str] = {}
    for parameter, platform in PLATFORM_PARAMETERS.items():
        if parameter not in parameters:
            continue
        name = f"{prefix}-{platform.lower().replace('_', '-')}"
        arn = next((a for a in existing if a.endswith(f":app/{platform}/{name}")), None)
        if arn is None:
            arn = sns.create_platform_application(
                Name=name, Platform=platform, Attributes={"PlatformCredential": "local", "PlatformPrincipal": "local"}
            )["PlatformApplicationArn"]
        out[parameter] = str(arn)
    return out


def _fields(platform: str, payload: dict[str, Any]) -> dict[str, Any]:
    if platform == "GCM":
        data = ((payload.get("fcmV1Message") or {}).get("message") or {}).get("data") or {}
        return {"job_id": data.get("job_id"), "status": data.get("status"), "poster_url": data.get("poster_url")}
    return {k: payload.get(k) for k in ("job_id", "status", "poster_url")}


_PLATFORM_NAMES = {"APNS": "apns", "APNS_SANDBOX": "apns_sandbox", "GCM": "fcm"}


class PushLog:
    """What each device would have received (local only)."""

    _active: PushLog | None = None
    _patched = False

    def __init__(self, table_name: str, region: str, account: str) -> None:
        self._table = table_name
        self._region = region
        self._account = account
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._items: list[dict[str, Any]] = []
        self._seen: dict[str, dict[str, Any]] = {}  # endpoint ARN -> the device last seen with it

    def install(self) -> None:
        """Record every accepted endpoint publish from now on (moto's SNS, in this process)."""
        from moto.sns.models import PlatformEndpoint

        if not PushLog._patched:
            original = PlatformEndpoint.publish

            def publish(endpoint: Any, message: str) -> str:
                message_id: str = original(endpoint, message)
                if PushLog._active is not None:
                    PushLog._active._record(endpoint, message)
                return message_id

            PlatformEndpoint.publish = publish  # type: ignore[method-assign]
            PushLog._patched = True
        PushLog._active = self

    def uninstall(self) -> None:
        if PushLog._active is self:
            PushLog._active = None

    def _device_of(self, endpoint_arn: str) -> dict[str, Any]:
        """The device whose item names ``endpoint_arn`` now (read under moto's DynamoDB lock: never
        a table mid-write), else the one last seen with it (removed while this send was under way)."""
        from moto.dynamodb.models import dynamodb_backends

        from devstack.moto_patches import dynamodb_lock

        table = dynamodb_backends[self._account][self._region].get_table(self._table)
        with dynamodb_lock():
            devices = [
                item.to_regular_json()
                for hash_key, by_range in table.items.items()
                if str(hash_key.value).startswith("USER#")
                for range_key, item in by_range.items()
                if str(range_key.value).startswith("DEVICE#")
            ]
        with self._lock:
            for data in devices:
                if data.get("endpoint_arn"):
                    self._seen[str(data["endpoint_arn"])] = data
            return dict(self._seen.get(endpoint_arn, {}))

    def _record(self, endpoint: Any, message: str) -> None:
        platform = str(endpoint.application.platform)
        structured = json.loads(message)
        payload = json.loads(structured.get(platform, "{}"))
        device = self._device_of(str(endpoint.arn))
        with self._lock:
            self._items.append(
                {
                    "seq": next(self._seq),
                    "user_id": device.get("user_id"),
                    "device_id": device.get("device_id"),
                    "platform": _PLATFORM_NAMES.get(platform, platform),
                    **_fields(platform, payload),
                    "payload": payload,
                    "sent_at": time.time(),
                }
            )

    def items(self) -> list[dict[str, Any]]:
        """Oldest first."""
        with self._lock:
            return [{k: v for k, v in item.items() if k != "seq"} for item in self._items]

    def disable(self, sns: Any, endpoint_arn: str) -> bool:
        try:
            sns.set_endpoint_attributes(EndpointArn=endpoint_arn, Attributes={"Enabled": "false"})
        except ClientError:
            return False
        return True
