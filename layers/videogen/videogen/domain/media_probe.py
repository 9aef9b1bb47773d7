"""What an uploaded file really is, read from its own bytes: magic bytes of the declared type,
and its dimensions (PNG, JPEG, WebP) or duration (MP4, from the ``mvhd`` box).

Only headers are read, through ``read(offset, length)`` (ranged reads of the object), so a
100 MiB video costs a few small reads: an MP4 is walked box by box to its ``moov``, wherever it
sits. Nothing is decoded beyond the headers; a header that lies about its own lengths, or a
file cut short, is :class:`NotDecodable`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

Reader = Callable[[int, int], bytes]
"""``read(offset, length)``: up to ``length`` bytes from ``offset`` (fewer at the end of the file)."""

MAX_DIMENSION = 65_535  # no format here holds more; a header claiming more lies
MAX_BOXES = 256  # an MP4 with more top-level boxes (or moov children) than this is refused


class NotDecodable(Exception):
    """The bytes are not a readable file of the declared type. ``code``: type_mismatch when the
    magic bytes are another format's, not_decodable when the header is broken."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Probe:
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None


def _exact(read: Reader, offset: int, length: int, what: str) -> bytes:
    data = read(offset, length)
    if len(data) != length:
        raise NotDecodable("not_decodable", f"the file ends inside its {what}")
    return data


def _dimensions(width: int, height: int, what: str) -> Probe:
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise NotDecodable("not_decodable", f"{what} header has impossible dimensions {width}x{height}")
    return Probe(width=width, height=height)


# --- PNG --------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"


def probe_png(read: Reader, size: int) -> Probe:
    head = _exact(read, 0, 33, "PNG header")
    if head[:8] != PNG_SIGNATURE:
        raise NotDecodable("type_mismatch", "the bytes are not a PNG")
    length, kind = struct.unpack(">I4s", head[8:16])
    if kind != b"IHDR" or length != 13:
        raise NotDecodable("not_decodable", "PNG without an IHDR chunk first")
    (crc,) = struct.unpack(">I", head[29:33])
    if zlib.crc32(head[12:29]) != crc:
        raise NotDecodable("not_decodable", "PNG header checksum does not match")
    if size < 45 or read(size - 12, 12) != _PNG_END:  # every PNG ends with its IEND chunk
        raise NotDecodable("not_decodable", "PNG cut short (no IEND chunk at its end)")
    width, height = struct.unpack(">II", head[16:24])
    return _dimensions(width, height, "PNG")


# --- JPEG -------------------------------------------------------------------------------

# Start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length


def probe_jpeg(read: Reader, size: int) -> Probe:
    if _exact(read, 0, 3, "JPEG header") != b"\xff\xd8\xff":
        raise NotDecodable("type_mismatch", "the bytes are not a JPEG")
    offset = 2
    for _ in range(1024):  # segments before the frame header (EXIF, ICC, tables ...)
        marker = _exact(read, offset, 2, "JPEG segment list")
        if marker[0] != 0xFF:
            raise NotDecodable("not_decodable", "JPEG segment without a marker")
        code = marker[1]
        if code == 0xFF:  # fill byte
            offset += 1
            continue
        if code in _STANDALONE:
            offset += 2
            continue
        if code in (0xD9, 0xDA):  # end of image, start of scan: no frame header came first
            break
        (length,) = struct.unpack(">H", _exact(read, offset + 2, 2, "JPEG segment"))
        if length < 2 or offset + 2 + length > size:
            raise NotDecodable("not_decodable", "JPEG segment longer than the file")
        if code in _SOF:
            frame = _exact(read, offset + 4, 5, "JPEG frame header")
            height, width = struct.unpack(">HH", frame[1:5])
            return _dimensions(width, height, "JPEG")
        offset += 2 + length
    raise NotDecodable("not_decodable", "JPEG without a frame header")


# --- WebP -------------------------------------------------------------------------------


def probe_webp(read: Reader, size: int) -> Probe:
    head = _exact(read, 0, 30, "WebP header")
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        raise NotDecodable("type_mismatch", "the bytes are not a WebP")
    (riff_size,) = struct.unpack("<I", head[4:8])
    if riff_size + 8 > size:
        raise NotDecodable("not_decodable", "WebP cut short (its RIFF size is larger than the file)")
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit width and height
        if head[23:26] != b"\x9d\x01\x2a":
            raise NotDecodable("not_decodable", "WebP VP8 frame without its start code")
        width, height = struct.unpack("<HH", head[26:30])
        return _dimensions(width & 0x3FFF, height & 0x3FFF, "WebP")
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14 bits width-1, 14 bits height-1
        if head[20] != 0x2F:
            raise NotDecodable("not_decodable", "WebP VP8L without its signature")
        (bits,) = struct.unpack("<I", head[21:25])
        return _dimensions((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "WebP")
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return _dimensions(width, height, "WebP")
    raise NotDecodable("not_decodable", "WebP without an image chunk")


# --- MP4 --------------------------------------------------------------------------------


def _boxes(read: Reader, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, box end) of each box from ``start`` to ``end``, checked to nest."""
    out: list[tuple[bytes, int, int]] = []
    offset = start
    while offset < end:
        if len(out) >= MAX_BOXES:
            raise NotDecodable("not_decodable", "MP4 with too many boxes")
        header = _exact(read, offset, 8, "MP4 box header")
        box_size, kind = struct.unpack(">I4s", header)
        payload = offset + 8
        if box_size == 1:  # 64-bit size
            (box_size,) = struct.unpack(">Q", _exact(read, offset + 8, 8, "MP4 box header"))
            payload += 8
        elif box_size == 0:  # to the end of the file
            box_size = end - offset
        if box_size < payload - offset or offset + box_size > end:
            raise NotDecodable("not_decodable", f"MP4 box {kind!r} is larger than its container")
        out.append((kind, payload, offset + box_size))
        offset += box_size
    return out


def probe_mp4(read: Reader, size: int) -> Probe:
    head = _exact(read, 0, 8, "MP4 header")
    if head[4:8] != b"ftyp":
        raise NotDecodable("type_mismatch", "the bytes are not an MP4 (no ftyp box first)")
    top = _boxes(read, 0, size)
    moov = next(((p, e) for kind, p, e in top if kind == b"moov"), None)
    if moov is None:
        raise NotDecodable("not_decodable", "MP4 without a moov box")
    mvhd = next(((p, e) for kind, p, e in _boxes(read, *moov) if kind == b"mvhd"), None)
    if mvhd is None:
        raise NotDecodable("not_decodable", "MP4 without a movie header (mvhd)")
    version = _exact(read, mvhd[0], 1, "movie header")[0]
    if mvhd[0] + (32 if version == 1 else 20) > mvhd[1]:
        raise NotDecodable("not_decodable", "MP4 movie header shorter than its fields")
    if version == 1:
        timescale, duration = struct.unpack(">IQ", _exact(read, mvhd[0] + 20, 12, "movie header"))
    else:
        timescale, duration = struct.unpack(">II", _exact(read, mvhd[0] + 12, 8, "movie header"))
    if timescale == 0 or duration == 0 or duration == 0xFFFFFFFF:
        raise NotDecodable("not_decodable", "MP4 without a duration")
    return Probe(duration_s=round(duration / timescale, 3))


PROBES: dict[str, Callable[[Reader, int], Probe]] = {
    "image/png": probe_png,
    "image/jpeg": probe_jpeg,
    "image/webp": probe_webp,
    "video/mp4": probe_mp4,
}


def probe(content_type: str, read: Reader, size: int) -> Probe:
    """The declared type's probe on the file's bytes (:class:`NotDecodable` when they are not one)."""
    return PROBES[content_type](read, size)
