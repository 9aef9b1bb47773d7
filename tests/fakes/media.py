"""The media path in memory: a provider CDN (:class:`FakeMediaSource`) and our bucket
(:class:`FakeVideoStore`), each able to succeed, reject (``MediaRejected``) or fail
transiently (``MediaTransferError``) on demand.

The video store keeps the S3 adapter's contract: ``{sha256}`` in a key is replaced by the
content's hash, a failed copy leaves nothing behind, and every stream is closed.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from videogen.adapters.media_urls import DEFAULT_WINDOW_S, signing_window
from videogen.domain.errors import MediaTransferError, MediaUndecodable, VideoMissing
from videogen.domain.media import pick_poster
from videogen.domain.models import StoredVideo, VideoMedia
from videogen.ports import SHA256_PLACEHOLDER, MediaStream, SignedUrl


class FakeStream:
    def __init__(self, data: bytes, content_type: str = "video/mp4", fail_after: int | None = None) -> None:
        self._data = data
        self.content_type = content_type
        self.declared_size: int | None = len(data)
        self._fail_after = fail_after  # bytes read before the body breaks (a CDN dropping the line)
        self.closed = False

    def chunks(self) -> Iterator[bytes]:
        step = 4
        for start in range(0, len(self._data), step):
            if self._fail_after is not None and start >= self._fail_after:
                raise MediaTransferError("the body broke off")
            yield self._data[start : start + step]

    def close(self) -> None:
        self.closed = True


class FakeMediaSource:
    """Implements :class:`videogen.ports.MediaSource`: every URL serves ``b"video of <url>"`` unless
    the test says otherwise with :meth:`serve` or :meth:`fail`."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.streams: list[FakeStream] = []
        self._bodies: dict[str, bytes] = {}
        self._failures: dict[str, list[BaseException]] = defaultdict(list)

    def serve(self, url: str, data: bytes) -> None:
        self._bodies[url] = data

    def fail(self, url: str, error: BaseException, times: int = 1) -> None:
        """The next ``times`` opens of ``url`` raise ``error`` (MediaRejected / MediaTransferError)."""
        self._failures[url].extend([error] * times)

    def body(self, url: str) -> bytes:
        return self._bodies.get(url, f"video of {url}".encode())

    def open(self, url: str) -> MediaStream:
        self.opened.append(url)
        if self._failures[url]:
            raise self._failures[url].pop(0)
        stream = FakeStream(self.body(url))
        self.streams.append(stream)
        return stream


class FakeVideoStore:
    """Implements :class:`videogen.ports.VideoStore` as a dict of objects."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, StoredVideo]] = {}
        self.window_s = DEFAULT_WINDOW_S
        self.deleted: list[str] = []
        self._put_failures: list[BaseException] = []
        self._delete_failures: list[BaseException] = []

    def fail_puts(self, error: BaseException, times: int = 1) -> None:
        self._put_failures.extend([error] * times)

    def fail_deletes(self, error: BaseException, times: int = 1) -> None:
        self._delete_failures.extend([error] * times)

    def put_stream(self, key: str, stream: MediaStream) -> StoredVideo:
        try:
            if self._put_failures:
                raise self._put_failures.pop(0)
            data = b"".join(stream.chunks())
            digest = hashlib.sha256(data).hexdigest()
            key = key.replace(SHA256_PLACEHOLDER, digest)
            video = StoredVideo(s3_key=key, sha256=digest, size_bytes=len(data), content_type=stream.content_type)
            self.objects[key] = (data, video)
            return video
        finally:
            stream.close()

    def put(self, key: str, data: bytes) -> StoredVideo:
        """Seed an object (e.g. one a crashed actor stored before dying)."""
        return self.put_stream(key, FakeStream(data))

    def presign(self, key: str, ttl_s: int) -> SignedUrl:
        """Shaped like S3WindowedUrls': signed at the start of the window (``window_s``), valid until
        window end + ``ttl_s``, so every read in one window gets the same URL."""
        start, end = signing_window(datetime.now(UTC), self.window_s, ttl_s)
        expires = int((end - start).total_seconds())
        url = f"https://bucket.test/{key}?X-Amz-Date={start:%Y%m%dT%H%M%SZ}&X-Amz-Expires={expires}"
        return SignedUrl(url, end)

    def presign_input(self, key: str, ttl_s: int) -> SignedUrl:
        return SignedUrl(
            f"https://bucket.test/{key}?X-Amz-Expires={ttl_s}", datetime.now(UTC) + timedelta(seconds=ttl_s)
        )

    def head(self, key: str) -> StoredVideo | None:
        found = self.objects.get(key)
        return found[1] if found else None

    def find(self, prefix: str) -> StoredVideo | None:
        return next((video for key, (_, video) in sorted(self.objects.items()) if key.startswith(prefix)), None)

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))

    def delete(self, key: str) -> None:
        if self._delete_failures:
            raise self._delete_failures.pop(0)
        self.deleted.append(key)
        self.objects.pop(key, None)

    def keys(self) -> list[str]:
        return self.list_keys("")

    # the one S3 call the invariant audit makes (it re-hashes completed jobs' videos)
    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # boto3 names
        if Key not in self.objects:
            raise KeyError(Key)
        return {"Body": io.BytesIO(self.objects[Key][0])}


@dataclass
class FakeClip:
    """What a stored video holds, for :class:`FakeMediaTools`: its frames' mean lumas and metadata."""

    lumas: list[float] = field(default_factory=lambda: [120.0])
    duration_s: float = 5.0
    width: int = 1280
    height: int = 720
    fps: float = 24.0
    has_audio: bool = False
    decodable: bool = True


class FakeMediaTools:
    """Implements :class:`videogen.ports.MediaTools` over a :class:`FakeVideoStore`: a video that is
    not in the store is ``VideoMissing``; its clip (:meth:`clip`, default one bright frame) says what
    it holds; the poster's frame is chosen by the domain's rule (``pick_poster``) and recorded in
    ``posters`` (poster key -> frame index)."""

    def __init__(self, videos: FakeVideoStore) -> None:
        self._videos = videos
        self._clips: dict[str, FakeClip] = {}
        self._failures: list[BaseException] = []
        self.posters: dict[str, int] = {}
        self.calls: list[str] = []

    def clip(self, video_key: str, clip: FakeClip) -> None:
        self._clips[video_key] = clip

    def fail(self, error: BaseException, times: int = 1) -> None:
        """The next ``times`` calls raise ``error`` (e.g. ``MediaTransferError``) and store nothing."""
        self._failures.extend([error] * times)

    def make_poster(self, video_key: str, poster_key: str) -> VideoMedia:
        self.calls.append(video_key)
        if self._failures:
            raise self._failures.pop(0)
        if self._videos.head(video_key) is None:
            raise VideoMissing(video_key)
        clip = self._clips.get(video_key, FakeClip())
        chosen = pick_poster(enumerate(clip.lumas)) if clip.decodable else None
        if chosen is None:
            raise MediaUndecodable(video_key)
        self.posters[poster_key] = chosen[0]
        return VideoMedia(
            duration_s=clip.duration_s,
            width=clip.width,
            height=clip.height,
            fps=clip.fps,
            has_audio=clip.has_audio,
            poster_key=poster_key,
        )
