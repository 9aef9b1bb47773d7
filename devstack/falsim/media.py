"""Real, playable MP4 bytes for the simulator's CDN.

:func:`sample_mp4` makes a small H.264 MP4 once with the ffmpeg that ``imageio-ffmpeg`` ships
(cached under ``.local/falsim/``, or the temp dir when that is not writable) and falls back to
the ``sample.mp4`` next to this file when ffmpeg is unavailable.

:func:`padded_chunks` streams that MP4 followed by a trailing ``free`` box so that any larger
``video_bytes`` still yields a valid, playable file; the padding is generated on the fly and
never held in memory.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("falsim.media")

FALLBACK_MP4 = Path(__file__).with_name("sample.mp4")
FFMPEG_ARGS = (
    "-hide_banner", "-loglevel", "error", "-y",
    "-f", "lavfi", "-i", "testsrc=size=320x240:rate=24:duration=2",
    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-an",
)  # fmt: skip
CACHE_NAME = "sample-320x240-2s.mp4"
CHUNK = 64 * 1024
_ZEROS = bytes(CHUNK)
_FREE_HEADER = 8  # 32-bit size + "free"
_FREE_HEADER_LARGE = 16  # size field 1 + "free" + 64-bit size

_lock = threading.Lock()
_cached: bytes | None = None


def is_mp4(data: bytes) -> bool:
    """An ISO-BMFF file starts with a box whose type is ``ftyp`` (bytes 4..8)."""
    return len(data) >= 8 and data[4:8] == b"ftyp"


def cache_dir() -> Path:
    override = os.environ.get("FALSIM_CACHE_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / ".local" / "falsim"


def generate_mp4(target: Path, timeout_s: float = 60) -> bool:
    """Encode the test pattern into ``target`` with imageio-ffmpeg's ffmpeg; False if impossible."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # the package or its binary may be missing: use the fallback
        log.info("ffmpeg unavailable (%s); using the bundled sample", type(exc).__name__)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([exe, *FFMPEG_ARGS, tmp], check=True, capture_output=True, timeout=timeout_s)
        if not is_mp4(Path(tmp).read_bytes()[:16]):
            return False
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # atomic: concurrent generators never see a partial file
        return True
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("ffmpeg failed (%s); using the bundled sample", type(exc).__name__)
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sample_mp4() -> bytes:
    """The small real MP4 served for every completed request (made once per process)."""
    global _cached
    with _lock:
        if _cached is not None:
            return _cached
        data: bytes | None = None
        for directory in (cache_dir(), Path(tempfile.gettempdir()) / "falsim"):
            path = directory / CACHE_NAME
            try:
                if not path.exists():
                    generate_mp4(path)
                if path.exists():
                    candidate = path.read_bytes()
                    if is_mp4(candidate):
                        data = candidate
                        break
            except OSError:
                continue
        if data is None:
            data = FALLBACK_MP4.read_bytes()
        _cached = data
        return data


def served_size(base_len: int, video_bytes: int) -> int:
    """The size actually served for a requested ``video_bytes`` (0 or too small = the MP4 itself)."""
    if video_bytes <= base_len + _FREE_HEADER:
        return base_len
    return video_bytes


def padded_chunks(base: bytes, total: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """``base`` then a ``free`` box filling the file up to ``total`` bytes, in chunks."""
    yield base
    pad = total - len(base)
    if pad <= 0:
        return
    if pad < 2**32:
        header = pad.to_bytes(4, "big") + b"free"
    else:
        header = (1).to_bytes(4, "big") + b"free" + pad.to_bytes(8, "big")
    yield header
    remaining = pad - len(header)
    zeros = _ZEROS if chunk == CHUNK else bytes(chunk)
    while remaining > 0:
        n = min(chunk, remaining)
        yield zeros if n == len(zeros) else zeros[:n]
        remaining -= n
