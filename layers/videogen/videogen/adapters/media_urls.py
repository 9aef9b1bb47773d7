"""Media URLs an app can cache: every read within one window answers the same URL.

Two signers implement :class:`videogen.ports.UrlSigner`; :class:`~videogen.adapters.media.S3VideoStore`
delegates its ``presign`` (videos and posters alike) to the one the wiring picked:

* :class:`S3WindowedUrls` (the default, and locally): S3 presigned GETs signed at the START of the
  window (``X-Amz-Date`` = window start), so the URL is a pure function of (key, window,
  credentials). A URL signed with temporary credentials dies with them, whatever its
  ``X-Amz-Expires`` says, so ``expires_at`` is the earlier of the window's bound and the
  credentials' expiry when botocore knows it (refreshable credentials: assumed roles, container
  and instance credentials, ``AWS_CREDENTIAL_EXPIRATION``). Two containers hold different
  session credentials, so they answer different URLs for one object.
* :class:`CloudFrontUrls` (``MediaCdn=on``): CloudFront signed URLs with a canned policy whose
  expiry is the window's bound. The signature is RSA PKCS#1 v1.5 over the policy (deterministic),
  made with a key pair that does not depend on any session: every container answers the same URL.

The window (:func:`signing_window`): time is cut into ``window_s`` slices; a URL handed out in
slice ``[start, start + window_s)`` is valid until ``start + window_s + ttl_s``, so it is never
valid for less than ``ttl_s`` after it was handed out (the credentials permitting), and every read
in the slice gets the same one.

botocore signs with the current time and offers no supported way to pass another one (an open
feature request: aws/aws-sdk#218); :class:`_SignedAtQueryAuth` is botocore's own S3 query signer
with the timestamp it signs set to the window start, and ``tests/unit/test_media_urls.py``
checks that its URL equals botocore's own presigned URL made at that moment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from botocore.auth import SIGV4_TIMESTAMP, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials

from videogen.ports import SignedUrl

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_MAX_EXPIRES_S = 7 * 24 * 3600  # SigV4 presigned URLs are valid at most 7 days
DEFAULT_WINDOW_S = 3600
_SIGV2_PARAMS = frozenset({"AWSAccessKeyId", "Expires", "Signature"})
_MEMO_SIZE = 4096  # URLs signed in the current windows, per container (a URL is ~1 KB)

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def signing_window(now: datetime, window_s: int, ttl_s: int) -> tuple[datetime, datetime]:
    """(start, end) of the window ``now`` is in: start = ``now`` rounded down to a multiple of
    ``window_s`` (since the epoch, UTC), end = start + ``window_s`` + ``ttl_s``."""
    if window_s <= 0 or ttl_s <= 0:
        raise ValueError("window_s and ttl_s must be > 0")
    epoch = int(now.timestamp())
    start = datetime.fromtimestamp(epoch - epoch % window_s, UTC)
    return start, start + timedelta(seconds=window_s + ttl_s)


def client_credentials(client: Any) -> Callable[[], Credentials | None]:
    """The credentials a botocore client signs with (the very object botocore refreshes)."""
    return cast("Callable[[], Credentials | None]", client._get_credentials)


def credentials_expiry(credentials: Credentials | None) -> datetime | None:
    """When ``credentials`` stop working, or None when botocore does not know (static keys, and
    the environment-variable credentials a Lambda function gets without AWS_CREDENTIAL_EXPIRATION).

    botocore keeps the expiry of refreshable credentials in ``_expiry_time`` and has no public
    accessor; the unit tests pin this reading against botocore's own RefreshableCredentials."""
    if not isinstance(credentials, RefreshableCredentials):
        return None
    expiry = getattr(credentials, "_expiry_time", None)
    if expiry is None:
        return None
    if not isinstance(expiry, datetime):  # a refreshable credential whose shape we do not know
        raise TypeError(f"unexpected credential expiry {type(expiry).__name__}")
    return expiry.replace(tzinfo=UTC) if expiry.tzinfo is None else expiry.astimezone(UTC)


class _SignedAtQueryAuth(S3SigV4QueryAuth):
    """botocore's S3 SigV4 query signer, signing the moment ``signed_at`` instead of now."""

    def __init__(self, credentials: ReadOnlyCredentials, region_name: str, expires: int, signed_at: datetime) -> None:
        super().__init__(credentials, "s3", region_name, expires=expires)
        self._signed_at = signed_at

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        # add_auth stamps the current time, then calls this before anything is derived from it
        request.context["timestamp"] = self._signed_at.strftime(SIGV4_TIMESTAMP)
        super()._modify_request_before_signing(request)  # type: ignore[misc]  # not in botocore's stubs


class S3WindowedUrls:
    """Implements :class:`videogen.ports.UrlSigner` with S3 presigned GETs signed at the window start.

    ``credentials`` answers the credentials to sign with (the S3 client's session's, so they are the
    ones botocore refreshes). The client still builds the object's URL (endpoint, addressing style,
    signing region: whatever it would presign), which also keeps the presign visible to the local
    IAM check (devstack/iam.py); its own signature is replaced by one made at the window start.
    """

    def __init__(
        self,
        s3_client: S3Client,
        bucket: str,
        credentials: Callable[[], Credentials | None],
        *,
        window_s: int,
        clock: Clock = _now,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._s3 = s3_client
        self._bucket = bucket
        self._credentials = credentials
        self._window_s = window_s
        self._clock = clock
        self._memo: dict[tuple[str, int, datetime, str | None, str | None], str] = {}

    def sign(self, key: str, ttl_s: int) -> SignedUrl:
        start, end = signing_window(self._clock(), self._window_s, ttl_s)
        expires = int((end - start).total_seconds())
        if expires > S3_MAX_EXPIRES_S:
            raise ValueError(f"window + ttl is {expires} s, over S3's {S3_MAX_EXPIRES_S} s limit")
        source = self._credentials()
        if source is None:
            raise RuntimeError("no AWS credentials to sign media URLs with")
        frozen, creds_expiry = _frozen_with_expiry(source)
        memo = (key, ttl_s, start, frozen.access_key, frozen.token)
        found = self._memo.get(memo)
        if found is None:  # a repeated read in the window costs a dict lookup, not two signatures
            base, region = self._object_url(key, expires)
            request = AWSRequest(method="GET", url=base)
            _SignedAtQueryAuth(frozen, region, expires, start).add_auth(request)
            found = str(request.url)
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[memo] = found
        return SignedUrl(found, end if creds_expiry is None else min(end, creds_expiry))

    def _object_url(self, key: str, expires: int) -> tuple[str, str]:
        """The client's URL of the object without its signature, and the region it signs for."""
        presigned = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires
        )
        parts = urlsplit(presigned)
        query = parse_qsl(parts.query, keep_blank_values=True)
        # a client without the s3v4 config presigns with SigV2 (AWSAccessKeyId, Expires, Signature)
        credential = dict(query).get("X-Amz-Credential")  # <key id>/<date>/<region>/s3/aws4_request
        region = credential.split("/")[-3] if credential else str(self._s3.meta.region_name)
        kept = [(k, v) for k, v in query if not k.lower().startswith("x-amz-") and k not in _SIGV2_PARAMS]
        return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), "")), region


def _frozen_with_expiry(credentials: Credentials) -> tuple[ReadOnlyCredentials, datetime | None]:
    """One consistent (credentials, expiry) pair: freezing may refresh, so the expiry is read on
    both sides of it and the pair taken again if a refresh came between."""
    for _ in range(3):
        before = credentials_expiry(credentials)
        frozen = credentials.get_frozen_credentials()
        if credentials_expiry(credentials) == before:
            return frozen, before
    return frozen, before  # refreshed on every try: the older (earlier) expiry errs on the safe side


class CloudFrontUrls:
    """Implements :class:`videogen.ports.UrlSigner` with CloudFront signed URLs (canned policy).

    ``private_key`` answers the PEM of the key pair whose public key is in the distribution's key
    group (read from Secrets Manager, cached); ``key_id`` is that public key's CloudFront id. The
    URL depends only on (key, window), so every container answers the same one.
    """

    def __init__(
        self,
        domain: str,
        key_id: str,
        private_key: Callable[[], str],
        *,
        window_s: int,
        clock: Clock = _now,
    ) -> None:
        if not domain or not key_id:
            raise ValueError("domain and key_id are required")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self._base = domain.rstrip("/") if "://" in domain else f"https://{domain.rstrip('/')}"
        self._key_id = key_id
        self._private_key = private_key
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: tuple[str, Any] | None = None  # (PEM, loaded key): loaded again when the secret rotates

    def sign(self, key: str, ttl_s: int) -> SignedUrl:
        from botocore.signers import CloudFrontSigner

        _start, end = signing_window(self._clock(), self._window_s, ttl_s)
        url = f"{self._base}/{quote(key, safe='/')}"
        signer = CloudFrontSigner(self._key_id, self._rsa_signer())
        return SignedUrl(signer.generate_presigned_url(url, date_less_than=end), end)

    def _rsa_signer(self) -> Callable[[bytes], bytes]:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        pem = self._private_key()
        with self._lock:
            if self._loaded is None or self._loaded[0] != pem:
                loaded = serialization.load_pem_private_key(pem.encode(), password=None)
                if not isinstance(loaded, rsa.RSAPrivateKey):
                    raise ValueError("the CloudFront signing key must be an RSA private key")
                self._loaded = (pem, loaded)
            private = self._loaded[1]
        # RSA-SHA1 with PKCS#1 v1.5 padding: what CloudFront's signed URLs (and botocore's CloudFrontSigner) use
        return lambda message: bytes(private.sign(message, padding.PKCS1v15(), hashes.SHA1()))  # noqa: S303
