"""Media transfer: fetch a provider's video behind guards and stream it into our S3 bucket.

Two adapters, used together by the completion path::

    stream = media_source.open(result.video_url)      # guards: scheme, host, redirects, status, type, size
    stored = video_store.put_stream(s3_key, stream)   # multipart upload, sha256 while streaming

Neither ever holds the whole video: the source yields ``chunk_bytes`` pieces and the
store keeps one reusable ``part_bytes`` buffer, so memory does not grow with the video.

Errors follow :mod:`videogen.domain.errors`: :class:`MediaRejected` is final (the URL or
the response broke a rule; retrying cannot help), :class:`MediaTransferError` means
"try again later" (network, timeouts, 5xx, S3 trouble).
"""

from __future__ import annotations

import hashlib
import mimetypes
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urljoin, urlsplit

import requests
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from videogen.adapters.seekable import SeekableReader
from videogen.domain.errors import MediaRejected, MediaTransferError
from videogen.domain.models import StoredVideo
from videogen.observability import logger
from videogen.ports import SHA256_PLACEHOLDER, SignedUrl, UrlSigner

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from videogen.ports import MediaStream

MIB = 1024 * 1024
S3_MIN_PART_BYTES = 5 * MIB  # every multipart part but the last must be at least this big
S3_MAX_PARTS = 10_000

DEFAULT_PORTS = {"https": 443, "http": 80}
# Hosts that serve more than fal's files: only these path prefixes are fal's.
DEFAULT_PATH_PREFIXES: Mapping[str, str] = {"storage.googleapis.com": "/falserverless/"}
# 4xx answers that mean "not now" rather than "never".
RETRYABLE_4XX = frozenset({408, 425, 429})
OCTET_STREAM = "application/octet-stream"

_HostKey = tuple[str, int | None]  # (lower-case host, port or None = the scheme's default port)


def _parse_allowed(entry: str) -> _HostKey:
    """``"host"`` or ``"host:port"`` (IPv6 as ``"[::1]:8080"``) -> (host, port|None)."""
    raw = entry.strip().lower()
    if not raw or any(c in raw for c in "/@?#\\ "):
        raise ValueError(f"invalid allow-list entry {entry!r}: expected 'host' or 'host:port'")
    parts = urlsplit(f"//{raw}")
    if not parts.hostname:
        raise ValueError(f"invalid allow-list entry {entry!r}")
    return parts.hostname, parts.port


class GuardedMediaSource:
    """Implements :class:`videogen.ports.MediaSource`: opens a media URL behind the guards.

    Every URL (the first and each redirect hop) must be http(s) as configured, carry no
    userinfo, and name an allow-listed ``host`` / ``host:port``. A bare ``host`` entry
    matches the scheme's default port only. Hosts listed in ``path_prefixes`` (by default
    ``storage.googleapis.com``) are allowed only under that path prefix. Checks run before
    any connection is made.
    """

    def __init__(
        self,
        allowed_hosts: frozenset[str],
        *,
        require_https: bool = True,
        max_bytes: int,
        timeout_s: float,
        session: requests.Session | None = None,
        max_redirects: int = 3,
        chunk_bytes: int = MIB,
        path_prefixes: Mapping[str, str] | None = None,
    ) -> None:
        if max_bytes <= 0 or chunk_bytes <= 0 or timeout_s <= 0 or max_redirects < 0:
            raise ValueError("max_bytes, chunk_bytes and timeout_s must be > 0, max_redirects >= 0")
        self._allowed: frozenset[_HostKey] = frozenset(_parse_allowed(h) for h in allowed_hosts)
        self._schemes = frozenset({"https"} if require_https else {"https", "http"})
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._session = session or requests.Session()
        self._max_redirects = max_redirects
        self._chunk_bytes = chunk_bytes
        prefixes = DEFAULT_PATH_PREFIXES if path_prefixes is None else path_prefixes
        self._path_prefixes = {host.lower(): prefix for host, prefix in prefixes.items()}

    # --- guards -------------------------------------------------------------------------

    def check_url(self, url: str) -> None:
        """Raise :class:`MediaRejected` unless ``url`` passes every guard. Makes no connection."""
        if not isinstance(url, str) or not url:
            raise MediaRejected("media URL missing")
        if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
            raise MediaRejected("media URL contains whitespace, control characters or backslashes")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise MediaRejected(f"media URL is malformed: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in self._schemes:
            raise MediaRejected(f"media URL scheme {scheme or '(none)'!r} not allowed")
        if "@" in parts.netloc:
            raise MediaRejected("media URL must not carry userinfo")
        host = (parts.hostname or "").lower()
        if not host:
            raise MediaRejected("media URL has no host")
        default_port = DEFAULT_PORTS[scheme]
        if port is None or port == default_port:
            allowed = (host, None) in self._allowed or (host, default_port) in self._allowed
        else:
            allowed = (host, port) in self._allowed
        if not allowed:
            shown = host if port is None else f"{host}:{port}"
            raise MediaRejected(f"media host {shown!r} is not on the allow list")
        prefix = self._path_prefixes.get(host)
        if prefix is not None:
            decoded = unquote(parts.path)
            segments = decoded.split("/")
            if not (parts.path.startswith(prefix) and decoded.startswith(prefix)) or any(
                s in {".", ".."} for s in segments
            ):
                raise MediaRejected(f"media path on {host!r} must be under {prefix!r}")

    # --- MediaSource ----------------------------------------------------------------------

    def open(self, url: str) -> GuardedMediaStream:
        current = url
        for _hop in range(self._max_redirects + 1):
            self.check_url(current)
            response = self._get(current)
            try:
                if response.is_redirect:
                    location = response.headers["location"]
                    current = urljoin(current, location)
                    response.close()
                    continue
                stream = self._accept(current, response)
            except BaseException:
                response.close()
                raise
            return stream
        raise MediaRejected(f"media URL redirected more than {self._max_redirects} times")

    def _get(self, url: str) -> requests.Response:
        try:
            return self._session.get(
                url,
                stream=True,
                allow_redirects=False,
                timeout=self._timeout_s,
                headers={"Accept": "video/*, application/octet-stream;q=0.5", "Accept-Encoding": "identity"},
            )
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ) as exc:
            raise MediaRejected(f"media URL rejected by the HTTP client: {exc}") from exc
        except (requests.RequestException, Urllib3HTTPError, OSError) as exc:
            raise MediaTransferError(f"media fetch failed: {type(exc).__name__}: {exc}") from exc

    def _accept(self, url: str, response: requests.Response) -> GuardedMediaStream:
        status = response.status_code
        if status >= 500 or status in RETRYABLE_4XX:
            raise MediaTransferError(f"media host answered {status}")
        if not 200 <= status < 300:
            raise MediaRejected(f"media host answered {status}")

        media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type == OCTET_STREAM:
            guessed, _ = mimetypes.guess_type(urlsplit(url).path)
            media_type = guessed if guessed and guessed.startswith("video/") else OCTET_STREAM
        elif not media_type.startswith("video/") or len(media_type) <= len("video/"):
            raise MediaRejected(f"media content type {media_type or '(none)'!r} is not video/*")

        encoding = response.headers.get("content-encoding", "identity").strip().lower() or "identity"
        declared: int | None = None
        raw_length = response.headers.get("content-length")
        if raw_length is not None:
            values = {v.strip() for v in raw_length.split(",")}
            value = values.pop() if len(values) == 1 else ""
            # ASCII digits only: str.isdigit() also takes "²" (int() raises) and "١١" (int() reads 11)
            if not (value.isascii() and value.isdigit()):
                raise MediaRejected(f"media Content-Length {raw_length!r} is invalid")
            declared = int(value)
            if declared > self._max_bytes:
                raise MediaRejected(f"media is {declared} bytes, over the {self._max_bytes} byte cap")
            if declared == 0:
                raise MediaRejected("media body is empty")
        return GuardedMediaStream(
            response,
            content_type=media_type,
            # With a content coding the header counts encoded bytes; urllib3 checks those.
            declared_size=declared if encoding == "identity" else None,
            max_bytes=self._max_bytes,
            chunk_bytes=self._chunk_bytes,
            url=url,
        )


class GuardedMediaStream:
    """Implements :class:`videogen.ports.MediaStream` over a streamed ``requests`` response."""

    def __init__(
        self,
        response: requests.Response,
        *,
        content_type: str,
        declared_size: int | None,
        max_bytes: int,
        chunk_bytes: int,
        url: str,
    ) -> None:
        self.content_type = content_type
        self.declared_size = declared_size
        self.url = url  # the final URL, after redirects
        self._response = response
        self._max_bytes = max_bytes
        self._chunk_bytes = chunk_bytes
        self._started = False
        self._closed = False

    def chunks(self) -> Iterator[bytes]:
        """Yield the body in pieces of at most ``chunk_bytes``; single use.

        Raises :class:`MediaRejected` once more than ``max_bytes`` arrive (or the body is
        empty) and :class:`MediaTransferError` when the connection breaks, a read times out
        or the body ends short of its Content-Length.
        """
        if self._started:
            raise RuntimeError("a media stream can be read once")
        self._started = True
        return self._iterate()

    def _iterate(self) -> Iterator[bytes]:
        received = 0
        try:
            pieces = self._response.iter_content(chunk_size=self._chunk_bytes)
            while True:
                try:
                    chunk = next(pieces)
                except StopIteration:
                    break
                except (requests.RequestException, Urllib3HTTPError, OSError) as exc:
                    raise MediaTransferError(
                        f"media body broke off after {received} bytes: {type(exc).__name__}: {exc}"
                    ) from exc
                if not chunk:
                    continue
                received += len(chunk)
                if received > self._max_bytes:
                    raise MediaRejected(f"media body exceeds the {self._max_bytes} byte cap")
                yield chunk
            if self.declared_size is not None and received != self.declared_size:
                raise MediaTransferError(f"media body ended at {received} of {self.declared_size} declared bytes")
            if received == 0:
                raise MediaRejected("media body is empty")
        finally:
            self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.close()


class _BufferReader(SeekableReader):
    """A seekable, read-only file over the first ``length`` bytes of a buffer, sharing its memory.

    botocore copies a ``bytes``/``bytearray`` body in some set-ups (the CRT signer wraps it
    in ``BytesIO``, which copies a ``bytearray``); a file object is read in small blocks
    instead, so a part is never held twice.
    """

    def __init__(self, buffer: bytearray, length: int) -> None:
        super().__init__()
        self._view = memoryview(buffer)[:length]

    def __len__(self) -> int:
        return len(self._view)

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        data = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return data

    def readinto(self, target: Any) -> int:
        n = max(0, min(len(target), len(self._view) - self._pos))
        target[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._view.release()
        super().close()


class S3VideoStore:
    """Implements :class:`videogen.ports.VideoStore` on one S3 bucket (SSE-S3, sha256 in metadata).

    ``put_stream`` buffers at most one part (``part_bytes``, one reused ``bytearray``).
    A video that fits in one part is written with a single ``PutObject``. A larger one is
    uploaded in parts to a staging key (``staging_prefix`` + random id) and, once complete,
    copied to its key with the ``sha256`` metadata (object metadata is fixed when an upload
    is created, before the hash is known), then the staging object is deleted. So the
    final key only ever holds a complete object with its checksum, and a failed or racing
    transfer never touches a good object at the final key.

    Backstops the bucket needs (a process can be killed mid-way): a lifecycle rule
    ``AbortIncompleteMultipartUpload`` and one expiring objects under ``staging_prefix``
    (e.g. after 1 day). CopyObject limits a multipart video to 5 GiB (the cap is 2 GiB).
    """

    def __init__(
        self,
        s3_client: S3Client,
        bucket: str,
        part_bytes: int = 8 * MIB,
        staging_prefix: str = "_staging/",
        urls: UrlSigner | None = None,
    ) -> None:
        """``urls`` signs ``presign``'s URLs; by default S3 presigned GETs with the client's own
        credentials, signed at the start of 1-hour windows."""
        if part_bytes < S3_MIN_PART_BYTES:
            raise ValueError(f"part_bytes must be at least {S3_MIN_PART_BYTES} (S3's minimum part size)")
        self._s3 = s3_client
        self._bucket = bucket
        self._part_bytes = part_bytes
        self._staging_prefix = staging_prefix
        if urls is None:
            from videogen.adapters.media_urls import DEFAULT_WINDOW_S, S3WindowedUrls, client_credentials

            urls = S3WindowedUrls(s3_client, bucket, client_credentials(s3_client), window_s=DEFAULT_WINDOW_S)
        self._urls = urls

    # --- writing --------------------------------------------------------------------------

    def put_stream(self, key: str, stream: MediaStream) -> StoredVideo:
        """Copy ``stream`` to ``key``; returns what was stored. Always closes ``stream``.

        On any failure nothing of this transfer is left behind (the multipart upload is
        aborted, the staging object deleted) and the error is re-raised:
        :class:`MediaRejected` as is, anything else as :class:`MediaTransferError`.
        """
        content_type = stream.content_type or OCTET_STREAM
        part_bytes = self._part_bytes
        buf = bytearray(part_bytes)
        fill = 0
        size = 0
        digest = hashlib.sha256()
        staging_key = f"{self._staging_prefix}{uuid.uuid4().hex}"
        upload_id: str | None = None
        staged = False
        parts: list[CompletedPartTypeDef] = []
        try:
            for chunk in stream.chunks():
                view = memoryview(chunk)
                digest.update(view)
                size += len(view)
                while view:
                    if fill == part_bytes:  # full, and more is coming: ship it
                        if upload_id is None:
                            upload_id = self._create_upload(staging_key, content_type)
                        parts.append(self._upload_part(staging_key, upload_id, len(parts) + 1, buf, fill))
                        fill = 0
                    n = min(len(view), part_bytes - fill)
                    buf[fill : fill + n] = view[:n]
                    fill += n
                    view = view[n:]
            if size == 0:
                raise MediaRejected("media body is empty")
            sha256 = digest.hexdigest()
            key = key.replace(SHA256_PLACEHOLDER, sha256)  # content-addressed keys: known only now
            metadata = {"sha256": sha256}
            if upload_id is None:
                with _BufferReader(buf, fill) as body:
                    self._s3.put_object(
                        Bucket=self._bucket,
                        Key=key,
                        Body=cast(IO[bytes], body),
                        ContentType=content_type,
                        ServerSideEncryption="AES256",
                        Metadata=metadata,
                    )
            else:
                parts.append(self._upload_part(staging_key, upload_id, len(parts) + 1, buf, fill))
                del buf  # the copy below can take a while; the part buffer is no longer needed
                self._s3.complete_multipart_upload(
                    Bucket=self._bucket, Key=staging_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
                upload_id, staged = None, True
                self._s3.copy_object(
                    Bucket=self._bucket,
                    Key=key,
                    CopySource={"Bucket": self._bucket, "Key": staging_key},
                    MetadataDirective="REPLACE",
                    ContentType=content_type,
                    ServerSideEncryption="AES256",
                    Metadata=metadata,
                )
                staged = False
                self._clean_up(staging_key, None, staged=True)
            return StoredVideo(s3_key=key, sha256=sha256, size_bytes=size, content_type=content_type)
        except BaseException as exc:
            self._clean_up(staging_key, upload_id, staged)
            if isinstance(exc, (MediaRejected, MediaTransferError)) or not isinstance(exc, Exception):
                raise
            raise MediaTransferError(f"storing s3://{self._bucket}/{key} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            stream.close()

    def _create_upload(self, key: str, content_type: str) -> str:
        answer = self._s3.create_multipart_upload(
            Bucket=self._bucket, Key=key, ContentType=content_type, ServerSideEncryption="AES256"
        )
        return answer["UploadId"]

    def _upload_part(self, key: str, upload_id: str, number: int, buf: bytearray, length: int) -> CompletedPartTypeDef:
        if number > S3_MAX_PARTS:
            raise MediaRejected(f"media needs more than {S3_MAX_PARTS} parts of {self._part_bytes} bytes")
        with _BufferReader(buf, length) as body:
            answer = self._s3.upload_part(
                Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=cast(IO[bytes], body)
            )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _clean_up(self, staging_key: str, upload_id: str | None, staged: bool) -> None:
        """Best effort: the lifecycle rules are the backstop, and the caller's error matters more."""
        try:
            if upload_id is not None:
                self._s3.abort_multipart_upload(Bucket=self._bucket, Key=staging_key, UploadId=upload_id)
            if staged:
                self._s3.delete_object(Bucket=self._bucket, Key=staging_key)
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "media clean-up failed",
                extra={"bucket": self._bucket, "key": staging_key, "error": str(exc)[:300]},
            )

    # --- reading --------------------------------------------------------------------------

    def presign(self, key: str, ttl_s: int) -> SignedUrl:
        """A GET URL of ``key`` and its expiry, from the store's :class:`~videogen.ports.UrlSigner`: the
        same URL for every read within a window (adapters/media_urls.py), for videos and posters alike."""
        return self._urls.sign(key, int(ttl_s))

    def presign_input(self, key: str, ttl_s: int) -> SignedUrl:
        """S3's own presigned GET of ``key``, valid ``ttl_s`` from now (an input fal fetches)."""
        url = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=int(ttl_s)
        )
        return SignedUrl(url, datetime.now(UTC) + timedelta(seconds=int(ttl_s)))

    def head(self, key: str) -> StoredVideo | None:
        """What is stored at ``key``; None when nothing (complete) is there."""
        try:
            answer = self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise MediaTransferError(f"head s3://{self._bucket}/{key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise MediaTransferError(f"head s3://{self._bucket}/{key} failed: {exc}") from exc
        sha256 = answer.get("Metadata", {}).get("sha256")
        if not sha256:  # not written by put_stream
            return None
        return StoredVideo(
            s3_key=key,
            sha256=sha256,
            size_bytes=int(answer["ContentLength"]),
            content_type=answer.get("ContentType") or OCTET_STREAM,
        )

    def find(self, prefix: str) -> StoredVideo | None:
        """A complete video stored under ``prefix`` (e.g. by an actor that died before using it)."""
        try:
            listing = self._s3.list_objects_v2(Bucket=self._bucket, Prefix=prefix, MaxKeys=10)
        except (ClientError, BotoCoreError) as exc:
            raise MediaTransferError(f"list s3://{self._bucket}/{prefix} failed: {exc}") from exc
        for obj in listing.get("Contents", []):
            found = self.head(obj["Key"])
            if found is not None:
                return found
        return None

    def list_keys(self, prefix: str) -> list[str]:
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix)
            return [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            raise MediaTransferError(f"list s3://{self._bucket}/{prefix} failed: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise MediaTransferError(f"delete s3://{self._bucket}/{key} failed: {exc}") from exc
