"""Small real image files: what the chaos run's apps upload and the tests' fakes hold."""

from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int = 4, height: int = 3, *, noise: bool = False, idat: bytes | None = None) -> bytes:
    """A real (decodable) RGB PNG of one colour, or of random pixels (``noise``: incompressible,
    so as large as its pixels). ``idat``: this image data instead (a PNG whose header claims a
    size its data does not hold)."""
    if idat is None:
        rows = (random.Random(row).randbytes(3 * width) if noise else b"\x80\x40\x20" * width for row in range(height))
        idat = zlib.compress(b"".join(b"\x00" + row for row in rows))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


SAMPLE_JPEG = (Path(__file__).resolve().parent / "sample.jpg").read_bytes()
"""A real (decodable) 320x240 baseline JPEG, as FFmpeg's mjpeg encoder writes it."""
