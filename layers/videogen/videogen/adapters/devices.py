"""DynamoDB adapter of :class:`videogen.ports.DeviceStore`: devices and notification records, in
the one table (items of :mod:`videogen.adapters.dynamo`'s layout).

=====================  ========================  ===========================================
pk                     sk                        what
=====================  ========================  ===========================================
``USER#<uid>``         ``DEVICE#<device id>``    one device: platform, token (never answered),
                                                 endpoint_arn, created_at, updated_at
``USER#<uid>``         ``DEVICES``               ``count``: the user's devices (the cap)
``PUSHTOKEN#<sha256>`` ``OWNER``                 the token's owner: ``user_id``, ``device_id`` of
                                                 the device that registered it last (written in
                                                 the same transaction as that device)
``PUSH#<job id>``      ``DEVICE#<device id>``    the job's notification to the device: claimed
                                                 (``sending``) before the publish, ``sent``
                                                 after it; kept ``NOTIFICATION_TTL_S`` (TTL)
=====================  ========================  ===========================================

The cap is one transaction: the new device's put (only if absent) and ``count + 1`` (only while
under the cap), so concurrent registrations of new devices can never pass it; an update of a
device that exists writes the device and its token's owner, and is not counted again; a removal
is the delete (only if present) and ``count - 1`` together. A notification's claim is one
transaction too: a ConditionCheck that the device still owns its token (or that the token has no
owner recorded: a device registered before ownership was) and the claim's put.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from botocore.exceptions import ClientError

from videogen.adapters.ddb import DynamoTable, cancel_reasons, error_is, failed_condition, from_item, to_item, to_values
from videogen.adapters.dynamo import user_pk
from videogen.domain.devices import MAX_DEVICES, Device, Platform, token_hash
from videogen.domain.errors import DeviceChanged, DeviceNotFound, StoreBusy, TokenMoved, TooManyDevices
from videogen.domain.models import rfc3339

NOTIFICATION_TTL_S = 30 * 24 * 3600  # an event redelivered later than this could notify again
_PUT_ATTEMPTS = 4  # create-vs-update races (the device appeared or vanished under us) before StoreBusy


def device_key(user_id: str, device_id: str) -> dict[str, Any]:
    return to_item({"pk": user_pk(user_id), "sk": f"DEVICE#{device_id}"})


def _counter_key(user_id: str) -> dict[str, Any]:
    return to_item({"pk": user_pk(user_id), "sk": "DEVICES"})


def _owner_key(token: str) -> dict[str, Any]:
    return to_item({"pk": f"PUSHTOKEN#{token_hash(token)}", "sk": "OWNER"})


def _owner_put(table: str, user_id: str, device_id: str, token: str, now: str) -> dict[str, Any]:
    """The token's ownership moves to this device, whoever held it (the latest registration wins)."""
    item = {**from_item(_owner_key(token)), "user_id": user_id, "device_id": device_id, "updated_at": now}
    return {"Put": {"TableName": table, "Item": to_item(item)}}


def _notification_key(job_id: str, device_id: str) -> dict[str, Any]:
    return to_item({"pk": f"PUSH#{job_id}", "sk": f"DEVICE#{device_id}"})


def _device(item: dict[str, Any]) -> Device:
    data = from_item(item)
    return Device(
        id=data["device_id"],
        user_id=data["user_id"],
        platform=Platform(data["platform"]),
        token=data["token"],
        endpoint_arn=data.get("endpoint_arn"),
        created_at=data["created_at"],
        updated_at=data["updated_at"],
    )


class DynamoDeviceStore(DynamoTable):
    """Implements :class:`videogen.ports.DeviceStore` (contention handled by :meth:`DynamoTable._call`)."""

    def get_device(self, user_id: str, device_id: str) -> Device | None:
        item = self._db.get_item(TableName=self._table, Key=device_key(user_id, device_id), ConsistentRead=True).get(
            "Item"
        )
        return _device(item) if item else None

    def list_devices(self, user_id: str) -> list[Device]:
        answer = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues=to_values({":pk": user_pk(user_id), ":p": "DEVICE#"}),
            ConsistentRead=True,
            Limit=MAX_DEVICES + 1,  # the cap bounds the read
        )
        return sorted((_device(i) for i in answer.get("Items", [])), key=lambda d: (d.created_at, d.id))

    def put_device(self, user_id: str, device_id: str, platform: Platform, token: str) -> tuple[Device, Device | None]:
        for _ in range(_PUT_ATTEMPTS):
            current = self.get_device(user_id, device_id)
            try:
                if current is None:
                    return self._create(user_id, device_id, platform, token), None
                return self._update(current, platform, token), current
            except DeviceChanged:
                continue  # created or deleted by a concurrent request: look again
        raise StoreBusy(f"device {device_id}: kept changing under concurrent registrations")

    def _create(self, user_id: str, device_id: str, platform: Platform, token: str) -> Device:
        now = rfc3339()
        device = Device(id=device_id, user_id=user_id, platform=platform, token=token, created_at=now, updated_at=now)
        item = {**device.model_dump(exclude={"id"}, exclude_none=True), "device_id": device_id}
        item["pk"], item["sk"] = user_pk(user_id), f"DEVICE#{device_id}"
        try:
            self._call(
                "transact_write_items",
                f"device {device_id}",
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item(item),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _counter_key(user_id),
                            "UpdateExpression": "ADD #n :one SET updated_at = :now",
                            "ConditionExpression": "attribute_not_exists(#n) OR #n < :max",
                            "ExpressionAttributeNames": {"#n": "count"},
                            "ExpressionAttributeValues": to_values({":one": 1, ":max": MAX_DEVICES, ":now": now}),
                        }
                    },
                    _owner_put(self._table, user_id, device_id, token, now),
                ],
            )
        except ClientError as exc:
            if not error_is(exc, "TransactionCanceledException"):
                raise
            reasons = cancel_reasons(exc)
            if reasons[0] == "ConditionalCheckFailed":
                raise DeviceChanged(device_id) from None  # registered meanwhile: update it instead
            if reasons[1] == "ConditionalCheckFailed":
                raise TooManyDevices(f"at most {MAX_DEVICES} devices per user; delete one first") from None
            raise
        return device

    def _update(self, current: Device, platform: Platform, token: str) -> Device:
        now = rfc3339()
        moved = platform != current.platform  # the endpoint belongs to the other platform's application
        expression = "SET platform = :p, #token = :t, updated_at = :now" + (" REMOVE endpoint_arn" if moved else "")
        try:
            self._call(
                "transact_write_items",
                f"device {current.id}",
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": device_key(current.user_id, current.id),
                            "UpdateExpression": expression,
                            "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeNames": {"#token": "token"},
                            "ExpressionAttributeValues": to_values({":p": platform.value, ":t": token, ":now": now}),
                        }
                    },
                    _owner_put(self._table, current.user_id, current.id, token, now),
                ],
            )
        except ClientError as exc:
            if error_is(exc, "TransactionCanceledException") and cancel_reasons(exc)[0] == "ConditionalCheckFailed":
                raise DeviceChanged(current.id) from None  # deleted meanwhile: create it again
            raise
        # a transaction returns no item: the device as the condition proved it and the write left it
        return current.model_copy(
            update={
                "platform": platform,
                "token": token,
                "updated_at": now,
                "endpoint_arn": None if moved else current.endpoint_arn,
            }
        )

    def set_endpoint(self, device: Device, endpoint_arn: str) -> Device:
        try:
            answer = self._call(
                "update_item",
                f"device {device.id}",
                TableName=self._table,
                Key=device_key(device.user_id, device.id),
                UpdateExpression="SET endpoint_arn = :e",
                ConditionExpression="#token = :t AND platform = :p",
                ExpressionAttributeNames={"#token": "token"},
                ExpressionAttributeValues=to_values(
                    {":e": endpoint_arn, ":t": device.token, ":p": device.platform.value}
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if failed_condition(exc):
                raise DeviceChanged(device.id) from None
            raise
        return _device(answer["Attributes"])

    def delete_device(self, user_id: str, device_id: str, *, token: str | None = None) -> Device:
        condition = "attribute_exists(pk)" + (" AND #token = :t" if token is not None else "")
        delete: dict[str, Any] = {
            "TableName": self._table,
            "Key": device_key(user_id, device_id),
            "ConditionExpression": condition,
        }
        if token is not None:
            delete["ExpressionAttributeNames"] = {"#token": "token"}
            delete["ExpressionAttributeValues"] = to_values({":t": token})
        current = self.get_device(user_id, device_id)
        if current is None:
            raise DeviceNotFound(f"no device {device_id!r}")
        try:
            self._call(
                "transact_write_items",
                f"device {device_id}",
                TransactItems=[
                    {"Delete": delete},
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _counter_key(user_id),
                            "UpdateExpression": "ADD #n :minus SET updated_at = :now",
                            "ConditionExpression": "#n > :zero",
                            "ExpressionAttributeNames": {"#n": "count"},
                            "ExpressionAttributeValues": to_values({":minus": -1, ":zero": 0, ":now": rfc3339()}),
                        }
                    },
                ],
            )
        except ClientError as exc:
            if error_is(exc, "TransactionCanceledException") and cancel_reasons(exc)[0] == "ConditionalCheckFailed":
                if token is not None and self.get_device(user_id, device_id) is not None:
                    raise DeviceChanged(device_id) from None
                raise DeviceNotFound(f"no device {device_id!r}") from None
            raise
        return current

    # --- notification records ---------------------------------------------------------

    def claim_notification(self, job_id: str, device: Device) -> str | None:
        claim = uuid.uuid4().hex
        now = rfc3339()
        try:
            self._call(
                "transact_write_items",
                f"notification {job_id}/{device.id}",
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self._table,
                            "Key": _owner_key(device.token),
                            "ConditionExpression": "attribute_not_exists(pk) OR (user_id = :u AND device_id = :d)",
                            "ExpressionAttributeValues": to_values({":u": device.user_id, ":d": device.id}),
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item(
                                {
                                    "pk": f"PUSH#{job_id}",
                                    "sk": f"DEVICE#{device.id}",
                                    "state": "sending",
                                    "claim": claim,
                                    "created_at": now,
                                    "expires_at": int(time.time()) + NOTIFICATION_TTL_S,
                                }
                            ),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ],
            )
        except ClientError as exc:
            if not error_is(exc, "TransactionCanceledException"):
                raise
            reasons = cancel_reasons(exc)
            if reasons[0] == "ConditionalCheckFailed":
                raise TokenMoved(device.id) from None
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                return None
            raise
        return claim

    def token_owner(self, token: str) -> tuple[str, str] | None:
        item = self._db.get_item(TableName=self._table, Key=_owner_key(token), ConsistentRead=True).get("Item")
        if not item:
            return None
        data = from_item(item)
        return str(data["user_id"]), str(data["device_id"])

    def notification_sent(self, job_id: str, device_id: str, claim: str, message_id: str) -> None:
        try:
            self._call(
                "update_item",
                f"notification {job_id}/{device_id}",
                TableName=self._table,
                Key=_notification_key(job_id, device_id),
                UpdateExpression="SET #state = :sent, message_id = :m, sent_at = :now",
                ConditionExpression="claim = :c",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=to_values(
                    {":sent": "sent", ":m": message_id, ":c": claim, ":now": rfc3339()}
                ),
            )
        except ClientError as exc:
            if not failed_condition(exc):
                raise

    def release_notification(self, job_id: str, device_id: str, claim: str) -> None:
        try:
            self._call(
                "delete_item",
                f"notification {job_id}/{device_id}",
                TableName=self._table,
                Key=_notification_key(job_id, device_id),
                ConditionExpression="claim = :c AND #state = :sending",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=to_values({":c": claim, ":sending": "sending"}),
            )
        except ClientError as exc:
            if not failed_condition(exc):
                raise
