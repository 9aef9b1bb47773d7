"""After ``sam build``: every shared object of the built layers must be aarch64 (the functions run on
arm64; an x86-64 wheel slipping in would fail only at import on AWS), checked with ``file``.
Prints each layer's size unzipped and zipped (what Lambda counts against its 250 MB / 50 MB limits).

``python -m devstack.layer_check [BUILD_DIR]`` (default ``.aws-sam/build``); exits 1 on a wrong .so.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

LAYERS = ("SharedLayer", "MediaLayer")
MIB = 1024 * 1024


def shared_objects(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and (p.suffix == ".so" or ".so." in p.name))


def architecture(path: Path) -> str:
    return subprocess.run(["file", "-b", str(path)], check=True, capture_output=True, text=True).stdout.strip()


def sizes(root: Path) -> tuple[int, int]:
    """(bytes unzipped, bytes as a deflate zip of the directory, as sam deploy uploads it)."""
    files = [p for p in root.rglob("*") if p.is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(root))
    return sum(p.stat().st_size for p in files), buffer.tell()


def main(argv: list[str]) -> int:
    build = Path(argv[0] if argv else ".aws-sam/build")
    wrong = 0
    for layer in LAYERS:
        root = build / layer
        if not root.is_dir():
            print(f"{layer}: not built ({root} missing)")
            wrong += 1
            continue
        objects = shared_objects(root)
        bad = [(p, kind) for p in objects if "aarch64" not in (kind := architecture(p))]
        for path, kind in bad:
            print(f"  NOT aarch64: {path.relative_to(root)}: {kind}")
        unzipped, zipped = sizes(root)
        print(
            f"{layer}: {len(objects)} shared objects, {len(objects) - len(bad)} aarch64, {len(bad)} other; "
            f"{unzipped / MIB:.1f} MiB unzipped, {zipped / MIB:.1f} MiB zipped"
        )
        wrong += len(bad)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
