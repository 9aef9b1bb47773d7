"""The media adapter: PyAV (FFmpeg) on videos in our bucket (posters) and on uploaded files (the
upload check's decode). Only the media and the upload validator functions import it (their
layer, layers/media, carries PyAV; no other function's cold start pays for it).

The video is never downloaded whole: FFmpeg reads it through :class:`S3RangeFile`, a seekable
file of ranged GETs in ``block_bytes`` blocks, so a poster of a 2 GiB video reads its index
(``moov``) and its first frames only, a few MB.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

import av
from av.video.codeccontext import VideoCodecContext
from botocore.exceptions import BotoCoreError, ClientError

from videogen.adapters.seekable import BlockReader
from videogen.domain.errors import MediaTransferError, MediaUndecodable, VideoMissing
from videogen.domain.media import POSTER_CONTENT_TYPE, POSTER_MAX_FRAMES, POSTER_MIN_LUMA, pick_poster
from videogen.domain.media_probe import MAX_PIXELS, NOT_DECODABLE, NotDecodable, Probe, Reader, check_frame
from videogen.domain.models import VideoMedia
from videogen.domain.uploads import CONTENT_TYPES, MediaKind

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
LUMA_WIDTH = 64  # frames are measured scaled down to this width: the mean barely changes, the cost does
POSTER_MAX_SIDE = 1280  # a poster larger than this is scaled down (an app shows it as a thumbnail)
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3RangeFile(BlockReader):
    """A read-only, seekable file over one S3 object, read in ranged GETs of ``block_bytes``,
    keeping the last ``cache_blocks`` blocks. The size comes from the first GET's Content-Range
    (no HeadObject). ``requests`` and ``bytes_fetched`` say what it cost.

    An S3 failure inside a read is kept in :attr:`error` as well as raised: FFmpeg reports it
    as its own I/O error, and the adapter raises the kept one instead."""

    def __init__(self, s3: S3Client, bucket: str, key: str, *, block_bytes: int = MIB, cache_blocks: int = 8) -> None:
        super().__init__(block_bytes, cache_blocks)
        self._s3, self._bucket, self._key = s3, bucket, key
        self.requests = 0
        self.bytes_fetched = 0
        self.error: Exception | None = None
        self.size = self._load_first()

    def _get(self, first: int, last: int) -> dict[str, Any]:
        try:
            self.requests += 1
            answer: dict[str, Any] = dict(
                self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={first}-{last}")
            )
            answer["Data"] = answer["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            error: Exception
            if code in _MISSING:
                error = VideoMissing(f"s3://{self._bucket}/{self._key} does not exist")
            elif code == "InvalidRange":  # an empty object
                error = MediaUndecodable(f"s3://{self._bucket}/{self._key} is empty")
            else:
                error = MediaTransferError(f"reading s3://{self._bucket}/{self._key} failed: {code}")
            self.error = error
            raise error from exc
        except (BotoCoreError, OSError) as exc:
            self.error = MediaTransferError(f"reading s3://{self._bucket}/{self._key} failed: {type(exc).__name__}")
            raise self.error from exc
        self.bytes_fetched += len(answer["Data"])
        return answer

    def _load_first(self) -> int:
        answer = self._get(0, self._block - 1)
        content_range = str(answer.get("ContentRange") or "")
        total = content_range.rpartition("/")[2]
        size = int(total) if total.isdigit() else len(answer["Data"])
        self._remember(0, answer["Data"])
        return size

    def _fetch(self, start: int, end: int) -> bytes:
        return bytes(self._get(start, end - 1)["Data"])


def mean_luma(frame: av.VideoFrame) -> float:
    """The frame's mean luma (0..255), measured on a ``LUMA_WIDTH``-wide grey copy."""
    height = max(2, round(LUMA_WIDTH * frame.height / max(1, frame.width)))
    grey = frame.reformat(width=LUMA_WIDTH, height=height, format="gray")
    plane = grey.planes[0]
    data = bytes(plane)
    stride = plane.line_size
    total = sum(sum(data[row * stride : row * stride + LUMA_WIDTH]) for row in range(height))
    return total / (LUMA_WIDTH * height)


def encode_jpeg(frame: av.VideoFrame, max_side: int = POSTER_MAX_SIDE) -> bytes:
    """One frame as a baseline JPEG (FFmpeg's mjpeg encoder), scaled down to ``max_side``."""
    scale = min(1.0, max_side / max(frame.width, frame.height))
    width = max(2, int(frame.width * scale) // 2 * 2)  # 4:2:0 wants even sides
    height = max(2, int(frame.height * scale) // 2 * 2)
    encoder = cast(VideoCodecContext, av.CodecContext.create("mjpeg", "w"))
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"qmin": "2", "qmax": "5"}  # quality (a lower q is better)
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    packets = encoder.encode(image) + encoder.encode(None)
    return b"".join(bytes(packet) for packet in packets)


class PyAvMedia:
    """Implements :class:`videogen.ports.MediaTools` with PyAV on one S3 bucket."""

    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        *,
        block_bytes: int = MIB,
        min_luma: float = POSTER_MIN_LUMA,
        max_frames: int = POSTER_MAX_FRAMES,
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._block_bytes = block_bytes
        self._min_luma = min_luma
        self._max_frames = max_frames
        self.last_reader: S3RangeFile | None = None  # what the last video cost to read (bench, tests)
        self.last_pick: tuple[float, float] | None = None  # the last poster's (time in s, mean luma)

    def make_poster(self, video_key: str, poster_key: str) -> VideoMedia:
        reader = S3RangeFile(self._s3, self._bucket, video_key, block_bytes=self._block_bytes)
        self.last_reader = reader
        try:
            media, jpeg = self._measure_and_cut(reader, poster_key)
        except av.FFmpegError as exc:
            if reader.error is not None:  # S3 failed under FFmpeg's read
                raise reader.error from exc
            raise MediaUndecodable(f"{video_key}: {type(exc).__name__}: {exc}"[:300]) from exc
        if reader.error is not None:  # FFmpeg may stop quietly at a failed read (an early end of file)
            raise reader.error
        self._put(poster_key, jpeg)
        return media

    def _measure_and_cut(self, reader: S3RangeFile, poster_key: str) -> tuple[VideoMedia, bytes]:
        container = av.open(reader, mode="r")
        try:
            if not container.streams.video:
                raise MediaUndecodable("the file has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if container.duration is not None:
                duration = container.duration / av.time_base
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = 0.0
            has_audio = bool(container.streams.audio)
            chosen = pick_poster(self._frames(container, stream), min_luma=self._min_luma, max_frames=self._max_frames)
            if chosen is None:
                raise MediaUndecodable("no frame could be decoded")
            frame = chosen[0]
            self.last_pick = (float(frame.time or 0.0), chosen[1])
            media = VideoMedia(
                duration_s=round(duration, 3),
                width=stream.codec_context.width or frame.width,
                height=stream.codec_context.height or frame.height,
                fps=round(float(rate), 3) if rate else 0.0,
                has_audio=has_audio,
                poster_key=poster_key,
            )
            return media, encode_jpeg(frame)
        finally:
            container.close()

    @staticmethod
    def _frames(container: Any, stream: Any) -> Iterator[tuple[av.VideoFrame, float]]:
        for frame in container.decode(stream):
            yield frame, mean_luma(frame)

    def _put(self, key: str, jpeg: bytes) -> None:
        try:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=jpeg,
                ContentType=POSTER_CONTENT_TYPE,
                ServerSideEncryption="AES256",
            )
        except (ClientError, BotoCoreError) as exc:
            raise MediaTransferError(f"storing s3://{self._bucket}/{key} failed: {type(exc).__name__}") from exc


# --- the upload check's decode (implements videogen.ports.MediaProbe) ---------------------------

# Each declared type is opened with its own demuxer only: FFmpeg never guesses the format (a
# guessed playlist or concat demuxer could make it open other files or URLs).
UPLOAD_FORMATS = {"image/png": "png_pipe", "image/jpeg": "jpeg_pipe", "image/webp": "webp_pipe", "video/mp4": "mp4"}
# A damaged frame is an error, not concealed (FFmpeg's default draws what it could and goes on),
# and FFmpeg itself refuses a frame over the pixel bound before it allocates it — also while
# av.open looks for the stream's parameters (which decodes a frame of an image pipe).
_STRICT_DECODE = {"err_detect": "explode", "max_pixels": str(MAX_PIXELS)}
MAX_PACKETS = 64  # a video whose first 64 packets decode to no frame is refused


class ReaderFile(BlockReader):
    """A seekable file over ``read(offset, length)`` (:data:`videogen.domain.media_probe.Reader`)
    of ``size`` bytes, read in blocks. A failure of ``read`` (``UploadChanged``,
    ``MediaTransferError``) is kept in :attr:`error`: FFmpeg turns it into its own I/O error."""

    def __init__(self, read: Reader, size: int, *, block_bytes: int = MIB, cache_blocks: int = 4) -> None:
        super().__init__(block_bytes, cache_blocks)
        self._read = read
        self.size = size
        self.error: Exception | None = None

    def _fetch(self, start: int, end: int) -> bytes:
        try:
            return self._read(start, end - start)
        except Exception as exc:
            self.error = exc
            raise


class PyAvProbe:
    """Implements :class:`videogen.ports.MediaProbe` with PyAV."""

    def __init__(self, *, block_bytes: int = MIB) -> None:
        self._block_bytes = block_bytes

    def decode(self, content_type: str, read: Reader, size: int) -> Probe:
        source = ReaderFile(read, size, block_bytes=self._block_bytes)
        try:
            found = self._first_frame(content_type, source)
        except av.FFmpegError as exc:
            if source.error is not None:  # the read failed under FFmpeg
                raise source.error from exc
            raise NotDecodable(NOT_DECODABLE, f"the file does not decode as {content_type}") from exc
        if source.error is not None:  # FFmpeg may stop quietly at a failed read (an early end of file)
            raise source.error
        return found

    @staticmethod
    def _first_frame(content_type: str, source: ReaderFile) -> Probe:
        # stream_options: one dict of codec options per stream (PyAV's stub says list[str])
        strict = cast(Any, [_STRICT_DECODE])
        container = av.open(source, mode="r", format=UPLOAD_FORMATS[content_type], stream_options=strict)
        try:
            if not container.streams.video:
                raise NotDecodable(NOT_DECODABLE, "the file has no video track")
            stream = container.streams.video[0]
            codec = stream.codec_context
            if codec.width or codec.height:  # bounded from the decoder's header, before decoding
                check_frame(codec.width, codec.height, "the frame")
            codec.options = _STRICT_DECODE
            frame = next(_frames(container, stream), None)
            if frame is None:
                raise NotDecodable(NOT_DECODABLE, "no frame of the file could be decoded")
            duration: float | None = None
            if CONTENT_TYPES[content_type] is MediaKind.VIDEO:
                if container.duration is not None:
                    duration = container.duration / av.time_base
                elif stream.duration is not None and stream.time_base is not None:
                    duration = float(stream.duration * stream.time_base)
            return Probe(width=frame.width, height=frame.height, duration_s=duration)
        finally:
            container.close()


def _frames(container: Any, stream: Any) -> Iterator[av.VideoFrame]:
    """The stream's frames, from at most ``MAX_PACKETS`` packets (then a flush)."""
    for count, packet in enumerate(container.demux(stream)):
        if count >= MAX_PACKETS:
            return
        yield from packet.decode()
