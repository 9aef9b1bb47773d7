"""Media URLs an app can cache (adapters/media_urls.py): one URL per object and window, its
``expires_at`` the earlier of the window's bound and the signing credentials' expiry; the S3 URL
is exactly botocore's own presign made at the window start; the CloudFront URL is deterministic
and verifies with the public key."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.credentials import Credentials, EnvProvider, RefreshableCredentials
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from videogen.adapters.media import S3VideoStore
from videogen.adapters.media_urls import (
    CloudFrontUrls,
    S3WindowedUrls,
    client_credentials,
    credentials_expiry,
    signing_window,
)

WINDOW_S = 3600
TTL_S = 900
BUCKET = "videogen-videos"
KEY = "videos/vid_1/abc.mp4"
T0 = datetime(2031, 3, 1, 10, 0, 0, tzinfo=UTC)  # a window start
STATIC = Credentials("AKIDEXAMPLE", "secret", "session-token")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _s3() -> object:
    return boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id=STATIC.access_key,
        aws_secret_access_key=STATIC.secret_key,
        aws_session_token=STATIC.token,
        config=Config(signature_version="s3v4"),
    )


def _signer(clock: Clock, credentials: Credentials | None = STATIC) -> S3WindowedUrls:
    return S3WindowedUrls(_s3(), BUCKET, lambda: credentials, window_s=WINDOW_S, clock=clock)  # type: ignore[arg-type]


def _refreshable(expiry: datetime) -> RefreshableCredentials:
    return RefreshableCredentials("ASIAEXAMPLE", "secret", "token", expiry, lambda: {}, "assume-role")


# --- the window --------------------------------------------------------------------------------


def test_the_window_starts_at_a_multiple_of_its_length_and_ends_ttl_after_its_end() -> None:
    assert signing_window(T0, WINDOW_S, TTL_S) == (T0, T0 + timedelta(seconds=WINDOW_S + TTL_S))
    last = T0 + timedelta(seconds=WINDOW_S - 1, microseconds=999_999)
    assert signing_window(last, WINDOW_S, TTL_S)[0] == T0
    assert signing_window(T0 + timedelta(seconds=WINDOW_S), WINDOW_S, TTL_S)[0] == T0 + timedelta(seconds=WINDOW_S)
    with pytest.raises(ValueError):
        signing_window(T0, 0, TTL_S)
    with pytest.raises(ValueError):
        signing_window(T0, WINDOW_S, 0)


# --- S3 presigned, signed at the window start -----------------------------------------------------


def test_two_reads_in_one_window_get_the_same_url_and_expiry_and_the_next_window_a_new_one() -> None:
    clock = Clock(T0 + timedelta(seconds=5))
    signer = _signer(clock)
    first = signer.sign(KEY, TTL_S)
    clock.now = T0 + timedelta(seconds=WINDOW_S - 1)
    second = signer.sign(KEY, TTL_S)
    clock.now = T0 + timedelta(seconds=WINDOW_S)
    third = signer.sign(KEY, TTL_S)

    assert second == first
    assert first.expires_at == T0 + timedelta(seconds=WINDOW_S + TTL_S)
    query = parse_qs(urlsplit(first.url).query)
    assert query["X-Amz-Date"] == ["20310301T100000Z"]
    assert query["X-Amz-Expires"] == [str(WINDOW_S + TTL_S)]
    assert query["X-Amz-Security-Token"] == ["session-token"]
    assert third.url != first.url
    assert third.expires_at == first.expires_at + timedelta(seconds=WINDOW_S)
    # every URL is valid at least TTL_S after it was handed out
    assert first.expires_at - clock.now >= timedelta(seconds=TTL_S)


@pytest.mark.parametrize("key", [KEY, "videos/vid_1/a b+c=d&é~!.mp4"])
def test_the_url_is_botocores_own_presign_made_at_the_window_start(key: str) -> None:
    """The signature is botocore's: with its clock stopped at the window start, its own presign of
    the object is the very same URL (path quoting, scope, token, signed headers)."""
    signed = _signer(Clock(T0 + timedelta(minutes=17))).sign(key, TTL_S)
    with (
        # botocore's pure-Python signer (with awscrt installed it would pick the CRT one, whose clock is its own)
        mock.patch.dict(botocore.auth.AUTH_TYPE_MAPS, {"s3v4-query": botocore.auth.S3SigV4QueryAuth}),
        mock.patch("botocore.auth.get_current_datetime", return_value=T0.replace(tzinfo=None)),
    ):
        expected = _s3().generate_presigned_url(  # type: ignore[attr-defined]
            "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=WINDOW_S + TTL_S
        )
    assert signed.url == expected


def test_expires_at_is_the_credentials_expiry_when_they_die_before_the_window_ends() -> None:
    early = T0 + timedelta(minutes=40)
    signed = _signer(Clock(T0), _refreshable(early)).sign(KEY, TTL_S)
    assert signed.expires_at == early
    late = T0 + timedelta(hours=6)
    assert _signer(Clock(T0), _refreshable(late)).sign(KEY, TTL_S).expires_at == T0 + timedelta(
        seconds=WINDOW_S + TTL_S
    )


def test_credentials_without_an_expiry_leave_the_windows_bound() -> None:
    assert credentials_expiry(STATIC) is None
    assert credentials_expiry(None) is None
    assert _signer(Clock(T0)).sign(KEY, TTL_S).expires_at == T0 + timedelta(seconds=WINDOW_S + TTL_S)


def test_the_expiry_botocore_reads_from_the_environment_is_the_one_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pins the reading of botocore's refreshable credentials (no public accessor) against botocore
    itself: AWS_CREDENTIAL_EXPIRATION makes EnvProvider answer RefreshableCredentials."""
    environ = {
        "AWS_ACCESS_KEY_ID": "ASIAENV",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_CREDENTIAL_EXPIRATION": "2031-03-01T10:30:00Z",
    }
    creds = EnvProvider(environ=environ).load()
    assert isinstance(creds, RefreshableCredentials)
    assert credentials_expiry(creds) == T0 + timedelta(minutes=30)
    assert _signer(Clock(T0), creds).sign(KEY, TTL_S).expires_at == T0 + timedelta(minutes=30)
    without = EnvProvider(environ={k: v for k, v in environ.items() if k != "AWS_CREDENTIAL_EXPIRATION"}).load()
    assert credentials_expiry(without) is None


def test_a_refresh_while_freezing_gives_the_expiry_of_the_credentials_signed_with() -> None:
    creds = _refreshable(T0 + timedelta(minutes=10))
    renewed = T0 + timedelta(hours=1)

    def freeze_and_refresh() -> object:
        frozen = mock.Mock(access_key="ASIANEW", secret_key="s2", token="t2")
        creds._expiry_time = renewed  # type: ignore[attr-defined]  # what a refresh does
        return frozen

    with mock.patch.object(creds, "get_frozen_credentials", side_effect=freeze_and_refresh):
        signed = _signer(Clock(T0), creds).sign(KEY, TTL_S)
    assert "ASIANEW" in signed.url
    assert signed.expires_at == renewed


def test_no_credentials_or_a_window_over_s3s_seven_days_is_refused() -> None:
    with pytest.raises(RuntimeError):
        _signer(Clock(T0), None).sign(KEY, TTL_S)
    with pytest.raises(ValueError):
        _signer(Clock(T0)).sign(KEY, 7 * 24 * 3600)
    with pytest.raises(ValueError):
        S3WindowedUrls(_s3(), BUCKET, lambda: STATIC, window_s=0)  # type: ignore[arg-type]


def test_the_store_presigns_through_its_signer_and_by_default_with_the_clients_credentials() -> None:
    s3 = _s3()
    assert client_credentials(s3)().get_frozen_credentials().access_key == "AKIDEXAMPLE"
    signer = mock.Mock()
    store = S3VideoStore(s3, BUCKET, urls=signer)  # type: ignore[arg-type]
    assert store.presign("posters/p.jpg", 60) is signer.sign.return_value
    signer.sign.assert_called_once_with("posters/p.jpg", 60)
    default = S3VideoStore(s3, BUCKET).presign(KEY, TTL_S)  # type: ignore[arg-type]
    assert "AKIDEXAMPLE" in default.url and "X-Amz-Expires=" in default.url


# --- CloudFront signed URLs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cloudfront_b64decode(value: str) -> bytes:
    return base64.b64decode(value.replace("-", "+").replace("_", "=").replace("~", "/"))


def test_cloudfront_urls_are_deterministic_per_window_and_verify_with_the_public_key(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    clock = Clock(T0 + timedelta(seconds=1))
    reads = []
    signer = CloudFrontUrls("d111.cloudfront.net", "K2ABC", lambda: _pem(rsa_key), window_s=WINDOW_S, clock=clock)
    first = signer.sign("videos/vid_1/a b.mp4", TTL_S)
    clock.now = T0 + timedelta(seconds=WINDOW_S - 1)
    reads.append(signer.sign("videos/vid_1/a b.mp4", TTL_S))
    # another container: its own signer object, same key pair -> the same URL
    other = CloudFrontUrls("d111.cloudfront.net", "K2ABC", lambda: _pem(rsa_key), window_s=WINDOW_S, clock=clock)
    reads.append(other.sign("videos/vid_1/a b.mp4", TTL_S))
    assert reads == [first, first]

    end = T0 + timedelta(seconds=WINDOW_S + TTL_S)
    assert first.expires_at == end
    resource, query_string = first.url.split("?", 1)
    assert resource == "https://d111.cloudfront.net/videos/vid_1/a%20b.mp4"
    query = parse_qs(query_string)
    assert query["Expires"] == [str(int(end.timestamp()))]
    assert query["Key-Pair-Id"] == ["K2ABC"]
    canned = {
        "Statement": [{"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": int(end.timestamp())}}}]
    }
    policy = json.dumps(canned, separators=(",", ":")).encode()
    signature = _cloudfront_b64decode(query["Signature"][0])
    rsa_key.public_key().verify(signature, policy, padding.PKCS1v15(), hashes.SHA1())  # raises if not ours
    with pytest.raises(InvalidSignature):
        rsa_key.public_key().verify(signature, policy.replace(b"a%20b", b"other"), padding.PKCS1v15(), hashes.SHA1())

    clock.now = T0 + timedelta(seconds=WINDOW_S)
    later = signer.sign("videos/vid_1/a b.mp4", TTL_S)
    assert later.url != first.url and later.expires_at == end + timedelta(seconds=WINDOW_S)


def test_cloudfront_signer_reloads_a_rotated_key_and_refuses_a_key_that_is_not_rsa(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = {"value": _pem(rsa_key)}
    signer = CloudFrontUrls("https://cdn.example", "K1", lambda: pem["value"], window_s=WINDOW_S, clock=Clock(T0))
    before = signer.sign(KEY, TTL_S)
    assert before.url.startswith("https://cdn.example/videos/")
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem["value"] = _pem(rotated)
    after = signer.sign(KEY, TTL_S)
    signature = _cloudfront_b64decode(parse_qs(urlsplit(after.url).query)["Signature"][0])
    assert after.url != before.url
    assert len(signature) == 256
    pem["value"] = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(ValueError):
        signer.sign(KEY, TTL_S)
    with pytest.raises(ValueError):
        CloudFrontUrls("", "K1", lambda: "", window_s=WINDOW_S)
    with pytest.raises(ValueError):
        CloudFrontUrls("cdn.example", "K1", lambda: "", window_s=0)


def test_a_repeated_read_is_answered_from_memory_and_new_credentials_sign_anew() -> None:
    creds = {"now": STATIC}
    s3 = _s3()
    signer = S3WindowedUrls(s3, BUCKET, lambda: creds["now"], window_s=WINDOW_S, clock=Clock(T0))  # type: ignore[arg-type]
    with mock.patch.object(s3, "generate_presigned_url", wraps=s3.generate_presigned_url) as presign:  # type: ignore[attr-defined]
        first = signer.sign(KEY, TTL_S)
        assert signer.sign(KEY, TTL_S) == first
        assert presign.call_count == 1
        creds["now"] = Credentials("AKIDOTHER", "secret2", "token2")  # e.g. a refresh
        renewed = signer.sign(KEY, TTL_S)
        assert presign.call_count == 2
    assert "AKIDOTHER" in renewed.url and renewed.url != first.url


def test_a_client_that_presigns_with_sigv2_still_gets_a_windowed_sigv4_url() -> None:
    legacy = boto3.client("s3", region_name="us-east-1", aws_access_key_id="AKIDV2", aws_secret_access_key="s")
    signer = S3WindowedUrls(legacy, BUCKET, client_credentials(legacy), window_s=WINDOW_S, clock=Clock(T0))
    query = parse_qs(urlsplit(signer.sign(KEY, TTL_S).url).query)
    assert query["X-Amz-Date"] == ["20310301T100000Z"]
    assert query["X-Amz-Credential"][0].split("/")[2] == "us-east-1"
    assert not {"AWSAccessKeyId", "Signature", "Expires"} & set(query)
