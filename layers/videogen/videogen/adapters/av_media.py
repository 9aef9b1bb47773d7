"""The media adapter: PyAV (FFmpeg) on videos in our bucket. Only the media function imports it
(its layer, layers/media, carries PyAV; no other function's cold start pays for it).

The video is never downloaded whole: FFmpeg reads it through :class:`S3RangeFile`, a seekable
file of ranged GETs in ``block_bytes`` blocks, so a poster of a 2 GiB video reads its index
(``moov``) and its first frames only, a few MB.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

import av
from av.video.codeccontext import VideoCodecContext
from botocore.exceptions import BotoCoreError, ClientError

from videogen.adapters.seekable import SeekableReader
from videogen.domain.errors import MediaTransferError, MediaUndecodable, VideoMissing
from videogen.domain.media import POSTER_CONTENT_TYPE, POSTER_MAX_FRAMES, POSTER_MIN_LUMA, pick_poster
from videogen.domain.models import VideoMedia

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
LUMA_WIDTH = 64  # frames are measured scaled down to this width: the mean barely changes, the cost does
POSTER_MAX_SIDE = 1280  # a poster larger than this is scaled down (an app shows it as a thumbnail)
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3RangeFile(SeekableReader):
    """A read-only, seekable file over one S3 object, read in ranged GETs of ``block_bytes``,
    keeping the last ``cache_blocks`` blocks. The size comes from the first GET's Content-Range
    (no HeadObject). ``requests`` and ``bytes_fetched`` say what it cost.

    An S3 failure inside a read is kept in :attr:`error` as well as raised: FFmpeg reports it
    as its own I/O error, and the adapter raises the kept one instead."""

    def __init__(self, s3: S3Client, bucket: str, key: str, *, block_bytes: int = MIB, cache_blocks: int = 8) -> None:
        super().__init__()
        if block_bytes <= 0 or cache_blocks <= 0:
            raise ValueError("block_bytes and cache_blocks must be > 0")
        self._s3, self._bucket, self._key = s3, bucket, key
        self._block = block_bytes
        self._cache_blocks = cache_blocks
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
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

    def _remember(self, index: int, data: bytes) -> None:
        self._blocks[index] = data
        self._blocks.move_to_end(index)
        while len(self._blocks) > self._cache_blocks:
            self._blocks.popitem(last=False)

    def _block_at(self, index: int) -> bytes:
        if index in self._blocks:
            self._blocks.move_to_end(index)
            return self._blocks[index]
        start = index * self._block
        data = self._get(start, min(self.size, start + self._block) - 1)["Data"]
        self._remember(index, data)
        return data

    def __len__(self) -> int:
        return self.size

    def readinto(self, target: Any) -> int:
        if self._pos >= self.size:
            return 0
        index, offset = divmod(self._pos, self._block)
        block = self._block_at(index)
        n = min(len(target), len(block) - offset)
        target[:n] = block[offset : offset + n]
        self._pos += n
        return n


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
