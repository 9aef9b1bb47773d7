"""The poster rules: where a video's poster lives and which frame it shows. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

POSTER_SUFFIX = ".poster.jpg"
POSTER_CONTENT_TYPE = "image/jpeg"
# A frame whose mean luma (0..255, BT.601 Y) is below this reads as black: fades from black and
# dark title cards are skipped. 24 is above the studio-range black (16) plus encoder noise.
POSTER_MIN_LUMA = 24.0
POSTER_MAX_FRAMES = 48  # look at most this many frames from the start (2 s at 24 fps)

T = TypeVar("T")


def poster_key(video_key: str) -> str:
    """The poster's key, beside its video (``videos/<job>/<sha256>.mp4.poster.jpg``). Derived from
    the video key alone, so a completed job owns its poster's key before the poster is written
    (the outbox's clean-up of a job's prefix keeps it)."""
    return video_key + POSTER_SUFFIX


def pick_poster(
    frames: Iterable[tuple[T, float]], *, min_luma: float = POSTER_MIN_LUMA, max_frames: int = POSTER_MAX_FRAMES
) -> tuple[T, float] | None:
    """The first of the first ``max_frames`` ``(frame, mean luma)`` whose luma is at least
    ``min_luma``, else the brightest of them (the first one among equals); None when there are
    none. Lazy: nothing after the chosen frame is read, so a decoder stops at the first bright one."""
    best: tuple[T, float] | None = None
    for index, (frame, luma) in enumerate(frames):
        if index >= max_frames:
            break
        if luma >= min_luma:
            return frame, luma
        if best is None or luma > best[1]:
            best = (frame, luma)
    return best
