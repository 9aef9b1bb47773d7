"""The App Store Server API adapter's configuration: the API key secret parsed (naming what is
missing, never the key), where requests go (Apple's hosts by environment; another base URL only on
a local stack), and no client at all without an App Store app or an API key."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from appstoreserverlibrary.models.Environment import Environment

from devstack.stores.local_store import LOCAL_BUNDLE_ID, LocalServerApi
from videogen import wiring
from videogen.adapters.app_store_api import ApiKey, _Client

KEY = ApiKey.parse(LocalServerApi(LOCAL_BUNDLE_ID).secret())


@pytest.mark.parametrize(
    ("secret", "missing"),
    [
        ("not json", "not JSON"),
        ("[]", "lacks key_id, issuer_id, private_key"),
        (json.dumps({"key_id": "K", "issuer_id": "I"}), "lacks private_key"),
        (json.dumps({"key_id": "", "issuer_id": "I", "private_key": "-----BEGIN"}), "lacks key_id"),
    ],
)
def test_a_bad_api_key_secret_names_what_is_missing_and_never_the_key(secret: str, missing: str) -> None:
    with pytest.raises(ValueError, match=missing) as refused:
        ApiKey.parse(secret)
    assert "BEGIN" not in str(refused.value)


def test_requests_go_to_apples_host_of_the_environment_or_the_local_base_url() -> None:
    path = "/inApps/v2/transactions/consumption/1"
    prod = _Client(KEY, LOCAL_BUNDLE_ID, Environment.PRODUCTION)
    sandbox = _Client(KEY, LOCAL_BUNDLE_ID, Environment.SANDBOX)
    local = _Client(KEY, LOCAL_BUNDLE_ID, Environment.SANDBOX, "http://127.0.0.1:3000/_local/x/")
    assert prod._get_full_url(path) == "https://api.storekit.apple.com" + path
    assert sandbox._get_full_url(path) == "https://api.storekit-sandbox.apple.com" + path
    assert local._get_full_url(path) == "http://127.0.0.1:3000/_local/x" + path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("APP_STORE_BUNDLE_ID", LOCAL_BUNDLE_ID)
    monkeypatch.setenv("APP_STORE_API_KEY_PARAMETER", "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf")
    monkeypatch.setenv("APP_STORE_SERVER_API_URL", "http://127.0.0.1:9/api")
    wiring.reset()
    yield monkeypatch
    wiring.reset()


def test_a_deployed_stack_ignores_another_base_url(env: pytest.MonkeyPatch) -> None:
    env.setenv("ENVIRONMENT", "prod")
    api = wiring.app_store_api()
    assert api is not None and api._base_url == ""


def test_a_local_stack_honours_its_base_url(env: pytest.MonkeyPatch) -> None:
    env.setenv("ENVIRONMENT", "local")
    api = wiring.app_store_api()
    assert api is not None and api._base_url == "http://127.0.0.1:9/api"


@pytest.mark.parametrize("blank", ["APP_STORE_BUNDLE_ID", "APP_STORE_API_KEY_PARAMETER"])
def test_without_an_app_or_an_api_key_there_is_no_client(env: pytest.MonkeyPatch, blank: str) -> None:
    env.setenv(blank, "")
    assert wiring.app_store_api() is None
