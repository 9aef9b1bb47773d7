"""Each user's app_account_token: a stable UUIDv8 keyed by the deployment secret (domain/keys.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from videogen.domain import keys
from videogen.domain.account_token import LABEL, app_account_token, normalized
from videogen.services.webhook_link import WebhookLinks

SECRET = "deployment-secret-for-tests"


def test_the_token_is_stable_for_a_user() -> None:
    assert app_account_token(SECRET, "alice") == app_account_token(SECRET, "alice")


def test_users_and_deployments_get_different_tokens() -> None:
    tokens = {app_account_token(s, u) for s in (SECRET, SECRET + "2") for u in ("alice", "bob", "alicf")}
    assert len(tokens) == 6


def test_the_token_is_a_lower_case_rfc_9562_version_8_uuid() -> None:
    token = app_account_token(SECRET, "alice")
    parsed = uuid.UUID(token)
    assert str(parsed) == token and len(token) == 36
    assert parsed.version == 8
    assert parsed.variant == uuid.RFC_4122


def test_the_token_is_the_user_id_macd_under_a_key_expanded_from_the_secret_with_its_own_label() -> None:
    key = HKDFExpand(hashes.SHA256(), 32, LABEL).derive(SECRET.encode())  # RFC 5869, from another library
    raw = bytearray(hmac.new(key, b"alice", hashlib.sha256).digest()[:16])
    raw[6], raw[8] = (raw[6] & 0x0F) | 0x80, (raw[8] & 0x3F) | 0x80
    assert app_account_token(SECRET, "alice") == str(uuid.UUID(bytes=bytes(raw)))


def test_the_fal_webhook_url_token_uses_the_same_derivation_under_another_label() -> None:
    assert keys.expand(b"k", b"info") == HKDFExpand(hashes.SHA256(), 32, b"info").derive(b"k")
    expected = keys.expand(SECRET.encode(), b"videogen/fal-webhook/url-token/v1")
    assert WebhookLinks(lambda: SECRET).token() == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    assert LABEL != b"videogen/fal-webhook/url-token/v1"


@pytest.mark.parametrize(("secret", "user"), [("", "alice"), (SECRET, "")])
def test_no_token_without_a_secret_or_a_user(secret: str, user: str) -> None:
    with pytest.raises(ValueError, match="needs"):
        app_account_token(secret, user)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AAAAAAAA-0000-8000-8000-00000000000B", "aaaaaaaa-0000-8000-8000-00000000000b"),
        ("aaaaaaaa00008000800000000000000b", "aaaaaaaa-0000-8000-8000-00000000000b"),
        (None, None),
        ("", None),
        ("not-a-uuid", None),
    ],
)
def test_a_token_as_the_store_reports_it_is_normalized(raw: str | None, expected: str | None) -> None:
    assert normalized(raw) == expected
