"""Devices and push on moto, through the real handlers and roles: the cap under concurrency (11
new devices at once: exactly 10), updates not counted twice, SNS platform endpoints made at PUT,
the notifier's messages as SNS receives them (MessageStructure=json, per-platform keys), once per
job and device, a disabled endpoint removing its device."""

from __future__ import annotations

import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from videogen import wiring
from videogen.domain.devices import Platform

APNS_TOKEN = "ab" * 32


def _event(job_id: str, user_id: str, status: str = "failed") -> dict[str, Any]:
    kind = {"completed": "Job Completed", "failed": "Job Failed"}[status]
    return {
        "version": "0",
        "id": uuid.uuid4().hex,
        "detail-type": kind,
        "source": "videogen.job",
        "time": "2026-11-22T09:00:00Z",
        "resources": [],
        "detail": {"job_id": job_id, "user_id": user_id, "status": status},
    }


def _counter(stack: Any, user_id: str) -> int:
    item = stack.db.get_item(
        TableName=stack.table, Key={"pk": {"S": f"USER#{user_id}"}, "sk": {"S": "DEVICES"}}, ConsistentRead=True
    ).get("Item")
    return int(item["count"]["N"]) if item else 0


def _user(stack: Any) -> tuple[str, str]:
    user_id = f"u-{uuid.uuid4().hex[:8]}"
    return user_id, stack.stack.authority.issue(user_id)


def put(stack: Any, token: str, device_id: str, platform: str = "fcm", push_token: str | None = None) -> Any:
    body = {"platform": platform, "token": push_token or f"fcm-{device_id}-{uuid.uuid4().hex}"}
    return stack.request("PUT", f"/v1/devices/{device_id}", token=token, body=body)


def test_eleven_new_devices_at_once_exactly_ten_are_registered(stack):
    user_id, token = _user(stack)
    with ThreadPoolExecutor(max_workers=11) as pool:
        replies = list(pool.map(lambda i: put(stack, token, f"dev-{i}"), range(11)))
    statuses = sorted(r.status for r in replies)
    assert statuses == [200] * 10 + [409]
    assert next(r for r in replies if r.status == 409).json["code"] == "too_many_devices"
    listed = stack.request("GET", "/v1/devices", token=token).json["items"]
    assert len(listed) == 10 == _counter(stack, user_id)


def test_updates_are_not_counted_and_deletes_uncount(stack):
    user_id, token = _user(stack)
    for _ in range(3):
        assert put(stack, token, "same").status == 200
    assert put(stack, token, "same", "apns", APNS_TOKEN).status == 200
    assert _counter(stack, user_id) == 1
    assert stack.request("DELETE", "/v1/devices/same", token=token).status == 204
    assert _counter(stack, user_id) == 0
    assert stack.request("DELETE", "/v1/devices/same", token=token).status == 404


def test_put_makes_an_enabled_sns_endpoint_and_a_new_token_moves_it(stack):
    user_id, token = _user(stack)
    put(stack, token, "phone", "apns", APNS_TOKEN)
    device = wiring.device_store().get_device(user_id, "phone")
    sns = boto3.client("sns")
    attrs = sns.get_endpoint_attributes(EndpointArn=device.endpoint_arn)["Attributes"]
    assert attrs["Token"] == APNS_TOKEN and attrs["Enabled"] == "true"
    assert ":endpoint/APNS/" in device.endpoint_arn
    put(stack, token, "phone", "apns", "cd" * 32)  # same platform: the endpoint is kept, its token updated
    again = wiring.device_store().get_device(user_id, "phone")
    assert again.endpoint_arn == device.endpoint_arn
    assert sns.get_endpoint_attributes(EndpointArn=device.endpoint_arn)["Attributes"]["Token"] == "cd" * 32


def _sent_for(stack: Any, job_id: str) -> list[dict[str, Any]]:
    return [n for n in stack.stack.push_log.items() if n["job_id"] == job_id]


def test_the_notifier_publishes_per_platform_json_once_per_job_and_device(stack, monkeypatch):
    monkeypatch.setenv("PUSH_POSTER_WAIT_S", "0")
    wiring.reset()
    user_id, token = _user(stack)
    put(stack, token, "ios", "apns", APNS_TOKEN)
    put(stack, token, "android", "fcm", "fcm-token-1")
    job_id = f"vid_{uuid.uuid4().hex}"
    for status in ("completed", "completed"):  # the event twice: one notification per device
        stack.stack.lambdas.invoke("NotifierFunction", _event(job_id, user_id, status))
    sent = _sent_for(stack, job_id)
    assert sorted((n["device_id"], n["platform"]) for n in sent) == [("android", "fcm"), ("ios", "apns")]
    ios = next(n for n in sent if n["platform"] == "apns")
    assert ios["payload"]["aps"]["alert"] == {"title": "Your video is ready", "body": "Tap to watch it."}
    assert ios["user_id"] == user_id and ios["status"] == "completed" and ios["poster_url"] is None
    android = next(n for n in sent if n["platform"] == "fcm")
    message = android["payload"]["fcmV1Message"]["message"]
    assert message["notification"]["title"] == "Your video is ready"
    assert message["data"] == {"job_id": job_id, "status": "completed"}  # strings only, no poster yet
    # what SNS itself received: MessageStructure=json with "default" and the platform's key as a string
    from moto.sns.models import sns_backends

    backend = sns_backends["123456789012"]["us-east-1"]
    device = wiring.device_store().get_device(user_id, "ios")
    raw = list(backend.get_endpoint(device.endpoint_arn).messages.values())
    assert len(raw) == 1
    structured = json.loads(raw[0])
    assert set(structured) == {"default", "APNS"} and isinstance(structured["APNS"], str)
    records = stack.db.query(
        TableName=stack.table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"PUSH#{job_id}"}},
        ConsistentRead=True,
    )["Items"]
    assert sorted(r["state"]["S"] for r in records) == ["sent", "sent"]


def test_a_disabled_endpoint_removes_the_device_and_the_others_are_notified(stack):
    user_id, token = _user(stack)
    put(stack, token, "old", "apns_sandbox", APNS_TOKEN)
    put(stack, token, "new", "fcm", "fcm-token-2")
    assert stack.request("POST", "/_local/push/disable", body={"user_id": user_id, "device_id": "old"}).status == 200
    job_id = f"vid_{uuid.uuid4().hex}"
    result = stack.stack.lambdas.invoke("NotifierFunction", _event(job_id, user_id, "failed"))
    assert result == {"removed": 1, "sent": 1}
    assert [d["id"] for d in stack.request("GET", "/v1/devices", token=token).json["items"]] == ["new"]
    assert [n["device_id"] for n in _sent_for(stack, job_id)] == ["new"]
    assert _counter(stack, user_id) == 1


def test_a_device_registered_without_endpoint_gets_one_at_its_first_notification(stack):
    user_id, _ = _user(stack)
    wiring.device_store().put_device(user_id, "quiet", Platform.FCM, "fcm-token-3")  # as if push had been off
    job_id = f"vid_{uuid.uuid4().hex}"
    assert stack.stack.lambdas.invoke("NotifierFunction", _event(job_id, user_id, "failed")) == {"sent": 1}
    assert wiring.device_store().get_device(user_id, "quiet").endpoint_arn
    assert [n["device_id"] for n in _sent_for(stack, job_id)] == ["quiet"]


@pytest.mark.parametrize("job_status", ["canceled"])
def test_a_canceled_job_notifies_nobody(stack, job_status):
    user_id, token = _user(stack)
    put(stack, token, "ios", "apns", APNS_TOKEN)
    event = _event("vid_x", user_id)
    event["detail"]["status"] = job_status
    assert stack.stack.lambdas.invoke("NotifierFunction", event) == {}


# --- a push token belongs to the device that registered it last ------------------------------------


def _owner(stack: Any, push_token: str) -> tuple[str, str] | None:
    return wiring.device_store().token_owner(push_token)


@pytest.mark.parametrize("bobs_spelling", [str.lower, str.upper])  # APNs hex: one phone whatever the case
def test_a_token_registered_by_another_user_moves_to_them_and_the_first_user_stops_getting_notified(
    stack, bobs_spelling
):
    alice, alice_token = _user(stack)
    bob, bob_token = _user(stack)
    shared = "ef" * 32
    assert put(stack, alice_token, "phone", "apns", shared).status == 200
    assert _owner(stack, shared) == (alice, "phone")
    # same phone, now signed in as bob
    assert put(stack, bob_token, "phone-b", "apns", bobs_spelling(shared)).status == 200
    assert _owner(stack, shared) == (bob, "phone-b")
    owner_item = stack.db.get_item(
        TableName=stack.table,
        Key={"pk": {"S": f"PUSHTOKEN#{hashlib.sha256(shared.encode()).hexdigest()}"}, "sk": {"S": "OWNER"}},
        ConsistentRead=True,
    )["Item"]
    assert shared not in json.dumps(owner_item)  # keyed by the token's sha256, the token not stored there
    job_a, job_b = f"vid_{uuid.uuid4().hex}", f"vid_{uuid.uuid4().hex}"
    assert stack.stack.lambdas.invoke("NotifierFunction", _event(job_a, alice, "failed")) == {"moved": 1}
    assert _sent_for(stack, job_a) == []
    assert stack.request("GET", "/v1/devices", token=alice_token).json["items"] == []  # alice's stale device
    assert stack.stack.lambdas.invoke("NotifierFunction", _event(job_b, bob, "failed")) == {"sent": 1}
    assert [n["user_id"] for n in _sent_for(stack, job_b)] == [bob]
    device = wiring.device_store().get_device(bob, "phone-b")
    attrs = boto3.client("sns").get_endpoint_attributes(EndpointArn=device.endpoint_arn)["Attributes"]
    assert attrs["Enabled"] == "true"  # alice's removal left bob's endpoint alone


def test_concurrent_registrations_of_one_token_by_two_users_leave_exactly_one_owner_who_alone_is_notified(stack):
    alice, alice_token = _user(stack)
    bob, bob_token = _user(stack)
    shared = f"fcm-shared-{uuid.uuid4().hex}"
    tokens = [(alice_token, "a"), (bob_token, "b")] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda t: put(stack, t[0], t[1], "fcm", shared), tokens))
    assert [r.status for r in replies] == [200] * 16
    owner = _owner(stack, shared)
    assert owner in {(alice, "a"), (bob, "b")}
    assert wiring.device_store().get_device(*owner).token == shared
    job_id = f"vid_{uuid.uuid4().hex}"
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(lambda u: stack.stack.lambdas.invoke("NotifierFunction", _event(job_id, u)), [alice, bob])
        )
    print(f"\n16 concurrent registrations of one token by two users: owner {owner[1]}, notifier {results}")
    assert dict(zip([alice, bob], results, strict=True)) == {
        owner[0]: {"sent": 1},
        ({alice, bob} - {owner[0]}).pop(): {"moved": 1},
    }
    assert len(_sent_for(stack, job_id)) == 1  # the one phone got the job's notification once
