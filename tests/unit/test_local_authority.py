"""The local JWT authority (devstack/auth.py) refuses what API Gateway's JWT authorizer refuses."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.auth import LOCAL_AUDIENCE, LOCAL_ISSUER, AuthError, LocalAuthority


@pytest.fixture(scope="module")
def authority() -> LocalAuthority:
    return LocalAuthority()


def bearer(token: str) -> str:
    return f"Bearer {token}"


def forged(payload: dict[str, Any], *, key: Any, algorithm: str = "RS256", kid: str = "local-1") -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


class FromNow(int):
    """A time claim given as seconds from when the token is made, not from when the test was
    collected (a parametrize value is built at import, maybe many minutes before it runs)."""


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": "alice", "iat": now, "nbf": now - 5, "exp": now + 60}
    base.update({k: now + v if isinstance(v, FromNow) else v for k, v in over.items()})
    return {k: v for k, v in base.items() if v is not None}


def test_a_token_it_issued_is_accepted(authority: LocalAuthority) -> None:
    got = authority.verify(bearer(authority.issue("alice")))
    assert got["sub"] == "alice"
    assert got["iss"] == LOCAL_ISSUER


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer not-a-jwt", "Bearer a.b.c"])
def test_a_missing_or_malformed_token_is_refused(authority: LocalAuthority, header: str | None) -> None:
    with pytest.raises(AuthError):
        authority.verify(header)


def test_a_token_signed_by_another_key_is_refused(authority: LocalAuthority) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError):
        authority.verify(bearer(forged(claims(), key=other)))


def test_an_unsigned_or_hmac_token_is_refused(authority: LocalAuthority) -> None:
    with pytest.raises(AuthError):
        authority.verify(bearer(forged(claims(), key=None, algorithm="none")))
    with pytest.raises(AuthError):
        authority.verify(bearer(forged(claims(), key="a-shared-secret-of-32-bytes-or-more!", algorithm="HS256")))


def test_an_unknown_key_id_is_refused(authority: LocalAuthority) -> None:
    with pytest.raises(AuthError):
        authority.verify(bearer(forged(claims(), key=authority._key, kid="other")))
    assert authority.verify(bearer(forged(claims(), key=authority._key)))["sub"] == "alice"


@pytest.mark.parametrize(
    "over",
    [
        {"iss": "https://elsewhere.example/issuer"},
        {"iss": None},
        {"aud": "someone-else"},
        {"aud": ["someone-else", "another"]},
        {"aud": "someone-else", "client_id": LOCAL_AUDIENCE},  # aud present and wrong: client_id is not looked at
        {"aud": None},  # neither aud nor client_id
        {"aud": None, "client_id": "someone-else"},
        {"exp": None},
        {"exp": FromNow(-1)},
        {"nbf": FromNow(600)},
        {"iat": FromNow(600)},
        {"iat": "yesterday"},
        {"sub": None},
        {"sub": ""},
        {"sub": 42},
        {"sub": " "},  # blank is no subject
        {"sub": "\t\n"},
        {"exp": "9999999999"},  # a NumericDate is a JSON number: PyJWT alone would take this string
        {"exp": True},
        {"nbf": "0"},
        {"iat": "0"},
    ],
    ids=repr,
)
def test_a_claim_the_authorizer_refuses_is_refused(authority: LocalAuthority, over: dict[str, Any]) -> None:
    with pytest.raises(AuthError):
        authority.verify(bearer(forged(claims(**over), key=authority._key)))


@pytest.mark.parametrize(
    "over",
    [
        {"aud": [LOCAL_AUDIENCE, "another"]},
        {"aud": None, "client_id": LOCAL_AUDIENCE},  # no aud: client_id is the audience
        {"nbf": None, "iat": None},  # both optional
        {"exp": 4_102_444_800.5},  # RFC 7519: a NumericDate may be a non-integer number
    ],
    ids=repr,
)
def test_what_the_authorizer_accepts_is_accepted(authority: LocalAuthority, over: dict[str, Any]) -> None:
    assert authority.verify(bearer(forged(claims(**over), key=authority._key)))["sub"] == "alice"


def test_the_signing_key_is_kept_owner_only_and_reused(tmp_path: Path) -> None:
    path = tmp_path / ".local" / "jwt-signing-key.pem"
    first = LocalAuthority(key_path=path)
    token = first.issue("alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = LocalAuthority(key_path=path)  # the next start
    assert again.verify(bearer(token))["sub"] == "alice"
    with pytest.raises(AuthError):
        LocalAuthority(key_path=tmp_path / "another.pem").verify(bearer(token))


def test_a_stored_key_readable_by_others_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    LocalAuthority(key_path=path)
    path.chmod(0o644)
    LocalAuthority(key_path=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("over", "description"),
    [
        ({"exp": FromNow(-1)}, "the token has expired"),
        ({"nbf": FromNow(600)}, "the token is not valid yet"),
        ({"aud": "someone-else"}, "the token does not have a valid audience"),
        ({"iss": "https://elsewhere.example/issuer"}, "the token does not have a valid issuer"),
        ({"sub": " "}, "the token does not have a valid subject"),
        ({"exp": "9999999999"}, "the token's exp, nbf and iat must be NumericDates"),
    ],
    ids=repr,
)
def test_a_refusal_names_its_reason_the_way_the_authorizer_does(
    authority: LocalAuthority, over: dict[str, Any], description: str
) -> None:
    with pytest.raises(AuthError) as refused:
        authority.verify(bearer(forged(claims(**over), key=authority._key)))
    assert refused.value.challenge == f'Bearer scope="" error="invalid_token" error_description="{description}"'


def test_a_request_without_a_bearer_token_is_challenged_without_an_error(authority: LocalAuthority) -> None:
    with pytest.raises(AuthError) as refused:
        authority.verify(None)
    assert refused.value.challenge == "Bearer"
    with pytest.raises(AuthError) as malformed:
        authority.verify("Bearer a.b.c")
    assert 'error_description="the token is malformed"' in malformed.value.challenge
