"""The uploads prefix of the bucket in memory (:class:`videogen.ports.UploadBucket`), and small
real files of each accepted type to upload."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

from devstack.sample_files import png as png  # re-exported: the tests take it from here
from videogen.domain.errors import MediaTransferError, UploadChanged
from videogen.ports import ObjectHead, PresignedPost

SAMPLE_MP4 = (Path(__file__).resolve().parents[2] / "devstack" / "falsim" / "sample.mp4").read_bytes()


class FakeUploadBucket:
    def __init__(self, name: str = "bucket") -> None:
        self.name = name
        self.objects: dict[str, bytes] = {}
        self.posts: list[tuple[str, str, int, int]] = []  # (key, content type, size, ttl)
        self.reads: list[tuple[str, int, int]] = []
        self.fail_reads = 0
        self.seals: list[tuple[str, str, str]] = []  # (key, etag, sealed key) of each seal that copied
        self.before_read: Callable[[], None] | None = None  # runs once, before the next read (a racing POST)
        self.before_seal: Callable[[], None] | None = None  # runs once, before the next seal

    def presign_post(self, key: str, content_type: str, size_bytes: int, ttl_s: int) -> PresignedPost:
        self.posts.append((key, content_type, size_bytes, ttl_s))
        return PresignedPost(url=f"https://{self.name}.s3.test/", fields={"key": key, "Content-Type": content_type})

    @staticmethod
    def etag(data: bytes) -> str:
        return f'"{hashlib.md5(data).hexdigest()}"'

    def head(self, bucket: str, key: str) -> ObjectHead | None:
        data = self.objects.get(key)
        return None if data is None else ObjectHead(size=len(data), etag=self.etag(data))

    def _still(self, key: str, etag: str) -> bytes | None:
        data = self.objects.get(key)
        return data if data is not None and self.etag(data) == etag else None

    def read(self, bucket: str, key: str, offset: int, length: int, etag: str) -> bytes:
        if self.before_read is not None:
            hook, self.before_read = self.before_read, None
            hook()
        if self.fail_reads:
            self.fail_reads -= 1
            raise MediaTransferError("S3 is down")
        self.reads.append((key, offset, length))
        data = self._still(key, etag)
        if data is None:
            raise UploadChanged(key)
        return data[offset : offset + max(0, length)]

    def seal(self, bucket: str, key: str, etag: str, sealed_key: str) -> bool:
        if self.before_seal is not None:
            hook, self.before_seal = self.before_seal, None
            hook()
        data = self._still(key, etag)
        if data is None:
            return False
        self.objects[sealed_key] = data
        self.seals.append((key, etag, sealed_key))
        return True


# --- files ----------------------------------------------------------------------------------


def jpeg(width: int = 640, height: int = 480, exif_segments: int = 0) -> bytes:
    """A JPEG's header as cameras write it: APP0 (JFIF), optionally big APP1s (EXIF, 60 KB each), SOF0, SOS."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = (b"\xff\xe1" + struct.pack(">H", 60_002) + b"\x00" * 60_000) * exif_segments
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\xff\xda" + struct.pack(">H", 12) + b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00" + b"\x12" * 32
    return b"\xff\xd8" + app0 + app1 + sof0 + sos + b"\xff\xd9"


def _riff(chunk: bytes, payload: bytes) -> bytes:
    body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_lossy(width: int = 320, height: int = 200) -> bytes:
    frame = b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 10
    return _riff(b"VP8 ", frame)


def webp_lossless(width: int = 100, height: int = 50) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    return _riff(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\x00" * 8)


def webp_extended(width: int = 1000, height: int = 700) -> bytes:
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _riff(b"VP8X", payload)


def mp4(duration: int = 2500, timescale: int = 1000, *, moov_last: bool = False, version: int = 0) -> bytes:
    """An MP4's box structure: ftyp, moov (mvhd with the duration), mdat; ``moov_last`` as a
    camera writes it (no faststart)."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    if version == 1:
        mvhd = b"\x01\x00\x00\x00" + b"\x00" * 16 + struct.pack(">IQ", timescale, duration) + b"\x00" * 80
    else:
        mvhd = b"\x00\x00\x00\x00" + b"\x00" * 8 + struct.pack(">II", timescale, duration) + b"\x00" * 80
    ftyp = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
    moov = box(b"moov", box(b"mvhd", mvhd))
    mdat = box(b"mdat", b"\x00" * 100_000)
    return ftyp + (mdat + moov if moov_last else moov + mdat)
