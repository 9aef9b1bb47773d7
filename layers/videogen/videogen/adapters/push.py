"""SNS mobile push adapter (:class:`videogen.ports.PushGateway`): platform endpoints and the
per-platform message of a notification.

One ``Publish`` per device, ``MessageStructure=json``: the message is a JSON object whose keys
name the platform (``APNS``, ``APNS_SANDBOX``, ``GCM`` for FCM) and whose values are that
platform's payload *as a JSON string*; ``default`` is required by SNS and used by no platform here.

* APNs: ``aps.alert`` {title, body}, ``mutable-content: 1`` when there is a poster (the app's
  notification service extension downloads ``poster_url`` and attaches it: a rich notification),
  and ``job_id`` / ``status`` / ``poster_url`` as custom keys beside ``aps``.
* FCM: the HTTP v1 form SNS takes under ``fcmV1Message``: ``message.notification`` {title, body,
  image} and ``message.data`` (string values only: FCM refuses others) with job_id, status and
  poster_url.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import ClientError

from videogen.domain.devices import Notification, Platform
from videogen.domain.errors import PushEndpointGone, PushUnavailable
from videogen.observability import logger

SNS_KEY = {Platform.APNS: "APNS", Platform.APNS_SANDBOX: "APNS_SANDBOX", Platform.FCM: "GCM"}
_GONE = {"EndpointDisabled", "NotFound"}  # SNS will never deliver to this endpoint again
_NOT_NOW = {"Throttled", "ThrottlingException", "InternalError", "InternalFailure", "ServiceUnavailable"}
_EXISTING = re.compile(r"Endpoint (arn:[^\s]+) already exists")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def payload(platform: Platform, n: Notification) -> dict[str, Any]:
    """The platform's own payload of one notification (what the device receives)."""
    if platform == Platform.FCM:
        data = {"job_id": n.job_id, "status": n.status.value}
        notification = {"title": n.title, "body": n.body}
        if n.poster_url:
            data["poster_url"] = n.poster_url
            notification["image"] = n.poster_url
        message = {"notification": notification, "data": data, "android": {"priority": "high"}}
        return {"fcmV1Message": {"message": message}}
    aps: dict[str, Any] = {"alert": {"title": n.title, "body": n.body}, "sound": "default"}
    if n.poster_url:
        aps["mutable-content"] = 1
    return {"aps": aps, "job_id": n.job_id, "status": n.status.value, "poster_url": n.poster_url}


def message(platform: Platform, n: Notification) -> str:
    """The ``Message`` of the ``Publish`` (``MessageStructure=json``) to a ``platform`` endpoint."""
    return json.dumps({"default": n.body, SNS_KEY[platform]: json.dumps(payload(platform, n))})


class SnsPush:
    """Implements :class:`videogen.ports.PushGateway`. ``applications``: platform → the SNS
    platform application ARN (a platform with an empty ARN is off)."""

    def __init__(self, sns_client: Any, applications: dict[Platform, str]) -> None:
        self._sns = sns_client
        self._apps = {p: arn for p, arn in applications.items() if arn}

    def enabled(self, platform: Platform) -> bool:
        return platform in self._apps

    def _failed(self, exc: ClientError, what: str) -> Exception:
        code = _code(exc)
        if code in _GONE:
            return PushEndpointGone(f"{what}: {code}")
        if code in _NOT_NOW:
            return PushUnavailable(f"{what}: {code}")
        return exc

    def ensure_endpoint(self, platform: Platform, token: str, endpoint_arn: str | None) -> str:
        """AWS's registration flow: an endpoint we have is given the token and enabled again (the
        app registering is proof the token works); one SNS no longer has, or none, is created."""
        if endpoint_arn:
            try:
                self._set(endpoint_arn, token)
                return endpoint_arn
            except PushEndpointGone:
                pass  # deleted: create a new one
        try:
            answer = self._sns.create_platform_endpoint(PlatformApplicationArn=self._apps[platform], Token=token)
            return str(answer["EndpointArn"])
        except ClientError as exc:
            code = _code(exc)
            existing = _EXISTING.search(str(exc.response.get("Error", {}).get("Message", "")))
            if code == "InvalidParameter" and existing:
                # the token has an endpoint already (with other attributes, e.g. disabled): take it over
                self._set(existing.group(1), token)
                return existing.group(1)
            if code == "InvalidParameter":
                raise PushEndpointGone("the push service rejected the token") from None
            raise self._failed(exc, "CreatePlatformEndpoint") from None

    def _set(self, endpoint_arn: str, token: str) -> None:
        try:
            self._sns.set_endpoint_attributes(EndpointArn=endpoint_arn, Attributes={"Token": token, "Enabled": "true"})
        except ClientError as exc:
            raise self._failed(exc, "SetEndpointAttributes") from None

    def publish(self, platform: Platform, endpoint_arn: str, notification: Notification) -> str:
        try:
            answer = self._sns.publish(
                TargetArn=endpoint_arn, Message=message(platform, notification), MessageStructure="json"
            )
        except ClientError as exc:
            raise self._failed(exc, "Publish") from None
        return str(answer["MessageId"])

    def delete_endpoint(self, endpoint_arn: str) -> None:
        try:
            self._sns.delete_endpoint(EndpointArn=endpoint_arn)
        except ClientError as exc:
            logger.warning("deleting a push endpoint failed", extra={"code": _code(exc)})
