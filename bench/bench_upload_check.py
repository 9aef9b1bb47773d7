"""``python -m bench.bench_upload_check``: the upload check's time per file, the header probe alone
(the check before the decode) against the header probe and PyAV's first-frame decode (now), on
in-memory bytes (no S3 latency: what the check itself costs). A printout, not an assertion."""

from __future__ import annotations

import sys
import time

from devstack.sample_files import SAMPLE_JPEG, png
from tests.fakes.uploads import SAMPLE_MP4
from videogen.adapters.av_media import PyAvProbe
from videogen.domain import media_probe

FILES = [
    ("PNG 320x240", "image/png", png(320, 240)),
    ("PNG 1024x1024 noise", "image/png", png(1024, 1024, noise=True)),
    ("JPEG 320x240", "image/jpeg", SAMPLE_JPEG),
    ("MP4 sample (H.264)", "video/mp4", SAMPLE_MP4),
]


def _per_call_ms(fn: object, runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / runs * 1000


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 50
    decoder = PyAvProbe()
    print(f"{'file':<22} {'bytes':>9} {'header ms':>10} {'header+decode ms':>17} {'ratio':>7}")
    for name, content_type, data in FILES:

        def read(offset: int, length: int, data: bytes = data) -> bytes:
            return data[offset : offset + length]

        def header(content_type: str = content_type, data: bytes = data) -> media_probe.Probe:
            return media_probe.probe(content_type, read, len(data))

        def both(content_type: str = content_type, data: bytes = data) -> media_probe.Probe:
            return media_probe.accept(header(), decoder.decode(content_type, read, len(data)))

        both()  # warm
        before, after = _per_call_ms(header, runs), _per_call_ms(both, runs)
        print(f"{name:<22} {len(data):>9} {before:>10.3f} {after:>17.3f} {after / before:>6.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
