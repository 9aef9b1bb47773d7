"""The devices routes (PUT/GET/DELETE /v1/devices) through the real handler on the fakes: create,
update, list, delete, the 11th device, a bad platform or id, another user's device, and the SNS
endpoint made at registration."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.devices import FakeDeviceStore, FakePush
from videogen import contract, wiring
from videogen.domain.devices import Platform
from videogen.services.devices import register_device, remove_device

ROOT = Path(__file__).resolve().parents[2]
EVENT = json.loads((ROOT / "events" / "api_credits.json").read_text())
TOKEN = "a" * 64


def _load_app() -> Any:
    spec = importlib.util.spec_from_file_location("devices_app_under_test", ROOT / "functions" / "devices" / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


APP = _load_app()


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeDeviceStore, FakePush]:
    store, push = FakeDeviceStore(), FakePush()
    monkeypatch.setattr(wiring, "device_store", lambda: store)
    monkeypatch.setattr(wiring, "push", lambda: push)
    return store, push


def call(method: str, path: str, body: Any = None, user: str = "alice") -> tuple[int, Any]:
    event = copy.deepcopy(EVENT)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    route = "/v1/devices/{device_id}" if path.count("/") == 3 else "/v1/devices"
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {route}"
    event["pathParameters"] = {"device_id": path.rsplit("/", 1)[1]} if path.count("/") == 3 else None
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = user
    event["body"] = json.dumps(body) if body is not None else None
    event["isBase64Encoded"] = False
    event["rawQueryString"], event["queryStringParameters"] = "", None
    answer = APP.lambda_handler(event, _Context())
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


class _Context:
    function_name = "DevicesFunction"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:devices"
    aws_request_id = "req-1"


def test_put_creates_the_device_with_its_endpoint_and_never_answers_the_token(fakes: Any) -> None:
    store, push = fakes
    status, body = call("PUT", "/v1/devices/phone-1", {"platform": "apns", "token": TOKEN})
    assert status == 200
    assert set(body) == {"id", "platform", "created_at", "updated_at"} and body["id"] == "phone-1"
    assert TOKEN not in json.dumps(body)
    device = store.get_device("alice", "phone-1")
    assert device and device.token == TOKEN and device.endpoint_arn  # made at PUT time
    assert push.created == [TOKEN]


def test_put_again_updates_the_token_and_platform_and_is_not_counted_twice(fakes: Any) -> None:
    store, push = fakes
    call("PUT", "/v1/devices/phone-1", {"platform": "apns", "token": TOKEN})
    first = store.get_device("alice", "phone-1")
    status, body = call("PUT", "/v1/devices/phone-1", {"platform": "fcm", "token": "f" * 150})
    assert status == 200 and body["platform"] == "fcm" and body["created_at"] == first.created_at
    assert store.count("alice") == 1
    assert push.deleted == [first.endpoint_arn]  # the APNs endpoint went with the platform
    assert store.get_device("alice", "phone-1").token == "f" * 150


def test_list_answers_the_callers_devices_oldest_first_and_no_other_users(fakes: Any) -> None:
    call("PUT", "/v1/devices/a", {"platform": "apns", "token": TOKEN})
    call("PUT", "/v1/devices/b", {"platform": "fcm", "token": "x"})
    call("PUT", "/v1/devices/c", {"platform": "fcm", "token": "y"}, user="bob")
    status, body = call("GET", "/v1/devices")
    assert status == 200 and [d["id"] for d in body["items"]] == ["a", "b"]
    assert "token" not in json.dumps(body)


def test_delete_removes_it_and_its_endpoint_and_a_second_delete_is_404(fakes: Any) -> None:
    store, push = fakes
    call("PUT", "/v1/devices/a", {"platform": "apns", "token": TOKEN})
    arn = store.get_device("alice", "a").endpoint_arn
    assert call("DELETE", "/v1/devices/a") == (204, None)
    assert store.get_device("alice", "a") is None and push.deleted == [arn]
    status, body = call("DELETE", "/v1/devices/a")
    assert status == 404 and body["code"] == "device_not_found"


def test_another_users_device_is_404_and_unchanged(fakes: Any) -> None:
    store, _ = fakes
    call("PUT", "/v1/devices/a", {"platform": "apns", "token": TOKEN}, user="bob")
    status, body = call("DELETE", "/v1/devices/a")
    assert status == 404 and body["code"] == "device_not_found"
    assert store.get_device("bob", "a") is not None


def test_the_eleventh_device_is_409_and_changes_nothing(fakes: Any) -> None:
    store, _ = fakes
    for i in range(10):
        assert call("PUT", f"/v1/devices/d{i}", {"platform": "fcm", "token": f"t{i}"})[0] == 200
    status, body = call("PUT", "/v1/devices/d10", {"platform": "fcm", "token": "t10"})
    assert status == 409 and body["code"] == "too_many_devices"
    assert store.count("alice") == 10 and store.get_device("alice", "d10") is None
    assert call("PUT", "/v1/devices/d3", {"platform": "apns", "token": TOKEN})[0] == 200  # an update still works


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "webpush", "token": "x"},
        {"platform": "apns"},
        {"platform": "apns", "token": ""},
        {"platform": "fcm", "token": "x", "extra": 1},
    ],
)
def test_a_bad_body_is_422_and_stores_nothing(fakes: Any, body: dict[str, Any]) -> None:
    store, _ = fakes
    status, answer = call("PUT", "/v1/devices/a", body)
    assert status == 422 and answer["code"] == "validation_failed"
    assert store.devices == {}


# the gateway hands the function the path decoded: any character may arrive
@pytest.mark.parametrize("device_id", ["a b", "x" * 129, "a,b", "×ø\x9b", "a%2Fb", "é"])
def test_a_bad_device_id_is_400_and_stores_nothing(fakes: Any, device_id: str) -> None:
    store, _ = fakes
    status, answer = call("PUT", f"/v1/devices/{device_id}", {"platform": "fcm", "token": "x"})
    assert status == 400 and answer["code"] == "bad_request"
    assert store.devices == {}


def test_a_token_the_push_service_rejects_is_422_and_the_device_is_not_kept(fakes: Any) -> None:
    store, push = fakes
    push.gone.add("bad")
    status, body = call("PUT", "/v1/devices/a", {"platform": "fcm", "token": "bad"})
    assert status == 422 and body["errors"][0]["loc"] == "body.token"
    assert store.devices == {}


@pytest.mark.parametrize("token", ["bad", "g" * 64, "a" * 63, "a" * 62, "a" * 202])
@pytest.mark.parametrize("platform", ["apns", "apns_sandbox"])
def test_an_apns_token_that_is_not_hex_is_422_before_the_push_service_is_asked(
    fakes: Any, platform: str, token: str
) -> None:
    store, _push = fakes
    status, body = call("PUT", "/v1/devices/a", {"platform": platform, "token": token})
    assert status == 422 and body["errors"][0]["loc"] == "body.token", body
    assert store.devices == {}
    assert call("PUT", "/v1/devices/a", {"platform": "fcm", "token": token})[0] == 200  # FCM's are not hex


def test_the_published_schema_says_what_apns_tokens_are() -> None:
    import jsonschema

    schema = jsonschema.Draft202012Validator(contract.DeviceRequest.model_json_schema())
    assert schema.is_valid({"platform": "apns", "token": "aB" * 32})
    assert not schema.is_valid({"platform": "apns_sandbox", "token": "xyz"})
    assert schema.is_valid({"platform": "fcm", "token": "xyz"})


def test_sns_not_answering_keeps_the_device_without_endpoint_for_the_notifier(fakes: Any) -> None:
    store, push = fakes
    push.unavailable.add(TOKEN)
    assert call("PUT", "/v1/devices/a", {"platform": "apns", "token": TOKEN})[0] == 200
    assert store.get_device("alice", "a").endpoint_arn is None


def test_push_off_for_the_platform_the_routes_still_work(fakes: Any) -> None:
    store, push = fakes
    push.platforms = set()
    assert call("PUT", "/v1/devices/a", {"platform": Platform.FCM.value, "token": "x"})[0] == 200
    assert store.get_device("alice", "a").endpoint_arn is None and push.created == []
    assert [d["id"] for d in call("GET", "/v1/devices")[1]["items"]] == ["a"]


def test_removing_a_device_whose_token_another_device_registered_since_keeps_the_endpoint() -> None:
    store, push = FakeDeviceStore(), FakePush()
    register_device(store, push, "alice", "phone", Platform.APNS, "tok-shared")
    register_device(store, push, "bob", "phone-b", Platform.APNS, "tok-shared")
    remove_device(store, push, "alice", "phone")
    assert push.deleted == []  # bob is sent to through it
    remove_device(store, push, "bob", "phone-b")
    assert push.deleted == ["arn:aws:sns:us-east-1:123456789012:endpoint/apns/app/tok-shared"]


def test_an_apns_token_in_upper_case_is_the_same_phone_as_in_lower_case(fakes: Any) -> None:
    """APNs tokens are bytes written in hex: one phone, whatever the case (black-box bb17b #5)."""
    body = contract.DeviceRequest.model_validate({"platform": "apns", "token": "AB" * 32})
    assert body.token == "ab" * 32
    assert contract.DeviceRequest.model_validate({"platform": "fcm", "token": "AbC"}).token == "AbC"
