"""What an uploaded file really is, read from its own bytes, in two steps:

1. :func:`probe` (here, cheap, no decoder): magic bytes of the declared type, and its dimensions
   (PNG, JPEG, WebP) or duration (MP4, from the ``mvhd`` box), each within the bounds below —
   BEFORE anything is decoded, so a 20 MiB file claiming 65535x65535 never reaches a decoder
   (a decompression bomb). Only headers are read, through ``read(offset, length)`` (ranged reads
   of the object): an MP4 is walked box by box to its ``moov``, wherever it sits.
2. the decode (:class:`videogen.ports.MediaProbe`, PyAV): the first frame is really decoded (its
   size bounded again from the decoder's own header first: :func:`check_frame`), and a video's
   duration is read from its container (:func:`check_duration`).

A header that lies about its own lengths, a file cut short, or bytes no decoder can turn into a
frame are :class:`NotDecodable`; the code says which rule refused it (:data:`REJECTION_CODES`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

Reader = Callable[[int, int], bytes]
"""``read(offset, length)``: up to ``length`` bytes from ``offset`` (fewer at the end of the file)."""

MAX_SIDE = 16_384  # pixels per side of an image or a video frame (WebP holds at most 16383)
MAX_PIXELS = 50_000_000  # per image or frame (a 50 MP camera's photo): decoded, at most ~400 MB (16-bit RGBA)
MAX_DURATION_S = 600.0  # the longest video input the contract takes (a sequence's driving video: 10 minutes)
MAX_BOXES = 256  # an MP4 with more top-level boxes (or moov children) than this is refused

# Why an upload was rejected (its ``error.code``): one home, the contract describes these.
TYPE_MISMATCH = "type_mismatch"  # the magic bytes are another format's
SIZE_MISMATCH = "size_mismatch"  # not the declared number of bytes
NOT_DECODABLE = "not_decodable"  # a broken header, no frame (image data, video track) that decodes
TOO_LARGE = "too_large"  # more pixels than MAX_SIDE / MAX_PIXELS allow
TOO_LONG = "too_long"  # a video longer than MAX_DURATION_S
REJECTION_CODES = (TYPE_MISMATCH, SIZE_MISMATCH, NOT_DECODABLE, TOO_LARGE, TOO_LONG)


class NotDecodable(Exception):
    """The bytes are not a readable file of the declared type, or not one we take; ``code`` is one
    of :data:`REJECTION_CODES`."""

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
        raise NotDecodable(NOT_DECODABLE, f"the file ends inside its {what}")
    return data


def check_frame(width: int, height: int, what: str) -> Probe:
    """An image's (or a video frame's) size as its header says, before it is decoded."""
    if width <= 0 or height <= 0:
        raise NotDecodable(NOT_DECODABLE, f"{what} header has impossible dimensions {width}x{height}")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        taken = f"at most {MAX_SIDE} per side and {MAX_PIXELS // 1_000_000} MP are taken"
        raise NotDecodable(TOO_LARGE, f"{what} is {width}x{height} pixels; {taken}")
    return Probe(width=width, height=height)


def check_duration(duration_s: float | None, what: str) -> float:
    """A video's duration (seconds), rounded to ms: present, above zero, at most MAX_DURATION_S."""
    if duration_s is None or not duration_s > 0:  # also NaN
        raise NotDecodable(NOT_DECODABLE, f"{what} without a duration")
    if duration_s > MAX_DURATION_S:
        raise NotDecodable(
            TOO_LONG, f"{what} lasts {duration_s:.0f} s; videos of at most {MAX_DURATION_S:.0f} s are taken"
        )
    return round(duration_s, 3)


# --- PNG --------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"


def probe_png(read: Reader, size: int) -> Probe:
    head = _exact(read, 0, 33, "PNG header")
    if head[:8] != PNG_SIGNATURE:
        raise NotDecodable(TYPE_MISMATCH, "the bytes are not a PNG")
    length, kind = struct.unpack(">I4s", head[8:16])
    if kind != b"IHDR" or length != 13:
        raise NotDecodable(NOT_DECODABLE, "PNG without an IHDR chunk first")
    (crc,) = struct.unpack(">I", head[29:33])
    if zlib.crc32(head[12:29]) != crc:
        raise NotDecodable(NOT_DECODABLE, "PNG header checksum does not match")
    if size < 45 or read(size - 12, 12) != _PNG_END:  # every PNG ends with its IEND chunk
        raise NotDecodable(NOT_DECODABLE, "PNG cut short (no IEND chunk at its end)")
    width, height = struct.unpack(">II", head[16:24])
    return check_frame(width, height, "PNG")


# --- JPEG -------------------------------------------------------------------------------

# Start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length


def probe_jpeg(read: Reader, size: int) -> Probe:
    if _exact(read, 0, 3, "JPEG header") != b"\xff\xd8\xff":
        raise NotDecodable(TYPE_MISMATCH, "the bytes are not a JPEG")
    offset = 2
    for _ in range(1024):  # segments before the frame header (EXIF, ICC, tables ...)
        marker = _exact(read, offset, 2, "JPEG segment list")
        if marker[0] != 0xFF:
            raise NotDecodable(NOT_DECODABLE, "JPEG segment without a marker")
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
            raise NotDecodable(NOT_DECODABLE, "JPEG segment longer than the file")
        if code in _SOF:
            frame = _exact(read, offset + 4, 5, "JPEG frame header")
            height, width = struct.unpack(">HH", frame[1:5])
            return check_frame(width, height, "JPEG")
        offset += 2 + length
    raise NotDecodable(NOT_DECODABLE, "JPEG without a frame header")


# --- WebP -------------------------------------------------------------------------------


def probe_webp(read: Reader, size: int) -> Probe:
    head = _exact(read, 0, 30, "WebP header")
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        raise NotDecodable(TYPE_MISMATCH, "the bytes are not a WebP")
    (riff_size,) = struct.unpack("<I", head[4:8])
    if riff_size + 8 > size:
        raise NotDecodable(NOT_DECODABLE, "WebP cut short (its RIFF size is larger than the file)")
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit width and height
        if head[23:26] != b"\x9d\x01\x2a":
            raise NotDecodable(NOT_DECODABLE, "WebP VP8 frame without its start code")
        width, height = struct.unpack("<HH", head[26:30])
        return check_frame(width & 0x3FFF, height & 0x3FFF, "WebP")
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14 bits width-1, 14 bits height-1
        if head[20] != 0x2F:
            raise NotDecodable(NOT_DECODABLE, "WebP VP8L without its signature")
        (bits,) = struct.unpack("<I", head[21:25])
        return check_frame((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "WebP")
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return check_frame(width, height, "WebP")
    raise NotDecodable(NOT_DECODABLE, "WebP without an image chunk")


# --- MP4 --------------------------------------------------------------------------------


def _boxes(read: Reader, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, box end) of each box from ``start`` to ``end``, checked to nest."""
    out: list[tuple[bytes, int, int]] = []
    offset = start
    while offset < end:
        if len(out) >= MAX_BOXES:
            raise NotDecodable(NOT_DECODABLE, "MP4 with too many boxes")
        header = _exact(read, offset, 8, "MP4 box header")
        box_size, kind = struct.unpack(">I4s", header)
        payload = offset + 8
        if box_size == 1:  # 64-bit size
            (box_size,) = struct.unpack(">Q", _exact(read, offset + 8, 8, "MP4 box header"))
            payload += 8
        elif box_size == 0:  # to the end of the file
            box_size = end - offset
        if box_size < payload - offset or offset + box_size > end:
            raise NotDecodable(NOT_DECODABLE, f"MP4 box {kind!r} is larger than its container")
        out.append((kind, payload, offset + box_size))
        offset += box_size
    return out


def probe_mp4(read: Reader, size: int) -> Probe:
    head = _exact(read, 0, 8, "MP4 header")
    if head[4:8] != b"ftyp":
        raise NotDecodable(TYPE_MISMATCH, "the bytes are not an MP4 (no ftyp box first)")
    top = _boxes(read, 0, size)
    moov = next(((p, e) for kind, p, e in top if kind == b"moov"), None)
    if moov is None:
        raise NotDecodable(NOT_DECODABLE, "MP4 without a moov box")
    mvhd = next(((p, e) for kind, p, e in _boxes(read, *moov) if kind == b"mvhd"), None)
    if mvhd is None:
        raise NotDecodable(NOT_DECODABLE, "MP4 without a movie header (mvhd)")
    version = _exact(read, mvhd[0], 1, "movie header")[0]
    if mvhd[0] + (32 if version == 1 else 20) > mvhd[1]:
        raise NotDecodable(NOT_DECODABLE, "MP4 movie header shorter than its fields")
    if version == 1:
        timescale, duration = struct.unpack(">IQ", _exact(read, mvhd[0] + 20, 12, "movie header"))
    else:
        timescale, duration = struct.unpack(">II", _exact(read, mvhd[0] + 12, 8, "movie header"))
    if timescale == 0 or duration == 0 or duration == 0xFFFFFFFF:
        raise NotDecodable(NOT_DECODABLE, "MP4 without a duration")
    return Probe(duration_s=check_duration(duration / timescale, "MP4 movie header"))


PROBES: dict[str, Callable[[Reader, int], Probe]] = {
    "image/png": probe_png,
    "image/jpeg": probe_jpeg,
    "image/webp": probe_webp,
    "video/mp4": probe_mp4,
}


def probe(content_type: str, read: Reader, size: int) -> Probe:
    """The declared type's header probe on the file's bytes (:class:`NotDecodable` when they are
    not one, or one past the bounds)."""
    return PROBES[content_type](read, size)


def accept(header: Probe, decoded: Probe) -> Probe:
    """What a ready upload records, once the decoder took it: the decoded frame's size for an image
    (bounded again: a decoder may read a size the header parse did not), the container's duration
    for a video (the decoder's, bounded; the header's when the container states none)."""
    if header.duration_s is None:  # an image
        if decoded.width is None or decoded.height is None:
            raise NotDecodable(NOT_DECODABLE, "no frame of the image could be decoded")
        return check_frame(decoded.width, decoded.height, "the decoded image")
    duration = decoded.duration_s if decoded.duration_s is not None else header.duration_s
    return Probe(duration_s=check_duration(duration, "the video"))
