"""Benchmark: streamed media transfer vs the naive "download everything, then put_object".

Run: ``PYTHONPATH=layers/videogen:. .venv/bin/python -m bench.bench_transfer`` (``make bench``).

What is measured, and how moto's own memory is kept out of it:

* A child process runs both servers: a local HTTP "CDN" generating videos of any size
  from one 1 MiB block, and a moto S3 server (``ThreadedMotoServer``). moto keeps every
  object in memory; because it lives in the child, none of that reaches this process.
* This process runs only the client path — ``GuardedMediaSource.open`` ->
  ``S3VideoStore.put_stream`` with real ``requests`` and a real boto3 client talking
  HTTP to moto — so ``tracemalloc`` (started fresh for each case) sees exactly the
  transfer code's own allocations: the part buffer, HTTP chunks, botocore's request
  handling. Nothing is subtracted.
* Throughput is timed in separate, untraced runs of the same case (best of 3; tracing skews it).
* The baseline is ``requests.get(url).content`` + ``put_object`` (plus sha256 and SSE,
  the same work the streamed path does).

Exits 0 when every transfer arrived intact (sha256 checked against S3's metadata), 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MIB = 1024 * 1024
PART_BYTES = 8 * MIB
BUCKET = "videogen-bench"
STREAMED_SIZES_MIB = (8, 64, 200)
NAIVE_SIZES_MIB = (8, 64)
BLOCK = random.Random(7).randbytes(MIB)  # every served video is this block repeated, then cut


def expected_sha256(size: int) -> str:
    digest = hashlib.sha256()
    full, rest = divmod(size, MIB)
    for _ in range(full):
        digest.update(BLOCK)
    digest.update(BLOCK[:rest])
    return digest.hexdigest()


# --- child process: the media "CDN" and moto S3 ------------------------------------------


class _MediaHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        # /video/<bytes>.mp4
        size = int(self.path.rsplit("/", 1)[-1].split(".", 1)[0])
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        view = memoryview(BLOCK)
        sent = 0
        while sent < size:
            n = min(MIB, size - sent)
            self.wfile.write(view[:n])
            sent += n


def serve_forever() -> None:
    """Child process: start both servers, print their ports, run until stdin closes."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    media = ThreadingHTTPServer(("127.0.0.1", 0), _MediaHandler)
    media.daemon_threads = True
    threading.Thread(target=media.serve_forever, daemon=True).start()
    print(f"READY {moto.get_host_and_port()[1]} {media.server_address[1]}", flush=True)
    sys.stdin.read()  # the parent closes stdin (or dies) -> we exit
    media.shutdown()
    moto.stop()


# --- parent process: the measured client code ---------------------------------------------


@dataclass
class Result:
    approach: str
    size_mib: int
    seconds: float
    peak_bytes: int
    intact: bool
    finalize_s: float = 0.0  # CompleteMultipartUpload + CopyObject (moto's server-side work)

    @property
    def mib_per_s(self) -> float:
        return self.size_mib / self.seconds if self.seconds else float("inf")


class OperationClock:
    """Wall time per S3 operation, from botocore's before-call/after-call events."""

    def __init__(self, client: Any) -> None:
        self.totals: dict[str, float] = {}
        self._started: dict[str, float] = {}
        client.meta.events.register("before-call.s3.*", self._before)
        client.meta.events.register("after-call.s3.*", self._after)

    def _before(self, model: Any, **_: Any) -> None:
        self._started[model.name] = time.perf_counter()

    def _after(self, model: Any, **_: Any) -> None:
        elapsed = time.perf_counter() - self._started.pop(model.name, time.perf_counter())
        self.totals[model.name] = self.totals.get(model.name, 0.0) + elapsed

    def finalize_s(self) -> float:
        return self.totals.get("CompleteMultipartUpload", 0.0) + self.totals.get("CopyObject", 0.0)


def measure(run: Callable[[], bool], clock: OperationClock, repeat: int) -> tuple[float, int, bool, float]:
    """(best seconds of ``repeat`` untraced runs, peak traced bytes of one traced run, all intact, finalize s)."""
    seconds, finalize_s, ok_timed = float("inf"), 0.0, True
    for _ in range(repeat):
        gc.collect()
        clock.totals.clear()
        started = time.perf_counter()
        ok_timed = run() and ok_timed
        elapsed = time.perf_counter() - started
        if elapsed < seconds:
            seconds, finalize_s = elapsed, clock.finalize_s()
    gc.collect()
    tracemalloc.start()
    try:
        ok_traced = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak, ok_timed and ok_traced, finalize_s


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--serve``, be its server process); returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_forever()
        return 0

    import boto3
    import requests
    from botocore.config import Config

    from videogen.adapters.media import GuardedMediaSource, S3VideoStore

    child = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_transfer", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        if not ready or ready[0] != "READY":
            print("bench: the server process did not start", file=sys.stderr)
            return 1
        moto_port, media_port = int(ready[1]), int(ready[2])
        media_netloc = f"127.0.0.1:{media_port}"

        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{moto_port}",
            aws_access_key_id="bench",  # moto accepts anything; never touch real credentials
            aws_secret_access_key="bench",
            config=Config(retries={"max_attempts": 1}),
        )
        s3.create_bucket(Bucket=BUCKET)
        clock = OperationClock(s3)
        session = requests.Session()
        source = GuardedMediaSource(
            frozenset({media_netloc}), require_https=False, max_bytes=512 * MIB, timeout_s=30.0, session=session
        )
        store = S3VideoStore(s3, BUCKET, part_bytes=PART_BYTES)

        def url(size: int) -> str:
            return f"http://{media_netloc}/video/{size}.mp4"

        def streamed(size: int) -> Callable[[], bool]:
            def run() -> bool:
                key = f"streamed/{size}.mp4"
                stored = store.put_stream(key, source.open(url(size)))
                head = s3.head_object(Bucket=BUCKET, Key=key)
                s3.delete_object(Bucket=BUCKET, Key=key)
                want = expected_sha256(size)
                return stored.sha256 == want == head["Metadata"].get("sha256") and head["ContentLength"] == size

            return run

        def naive(size: int) -> Callable[[], bool]:
            def run() -> bool:
                key = f"naive/{size}.mp4"
                data = requests.get(url(size), timeout=30).content  # the anti-pattern being measured
                sha256 = hashlib.sha256(data).hexdigest()
                s3.put_object(
                    Bucket=BUCKET,
                    Key=key,
                    Body=data,
                    ContentType="video/mp4",
                    ServerSideEncryption="AES256",
                    Metadata={"sha256": sha256},
                )
                del data
                head = s3.head_object(Bucket=BUCKET, Key=key)
                s3.delete_object(Bucket=BUCKET, Key=key)
                return sha256 == expected_sha256(size) and head["ContentLength"] == size

            return run

        results: list[Result] = []
        for size_mib in STREAMED_SIZES_MIB:
            results.append(
                Result(
                    "streamed", size_mib, *measure(streamed(size_mib * MIB), clock, repeat=1 if size_mib > 64 else 3)
                )
            )
        for size_mib in NAIVE_SIZES_MIB:
            results.append(Result("naive", size_mib, *measure(naive(size_mib * MIB), clock, repeat=3)))
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    report(results)
    return 0 if all(r.intact for r in results) else 1


def report(results: list[Result]) -> None:
    by = {(r.approach, r.size_mib): r for r in results}
    print(f"Media transfer: local HTTP -> moto S3 server (part size {PART_BYTES // MIB} MiB)")
    print()
    header = (
        f"{'approach':<10}{'size MiB':>9}{'seconds':>9}{'MiB/s':>8}{'finalize s':>12}"
        f"{'peak traced MiB':>17}{'intact':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.approach:<10}{r.size_mib:>9}{r.seconds:>9.2f}{r.mib_per_s:>8.1f}{r.finalize_s:>12.2f}"
            f"{r.peak_bytes / MIB:>17.1f}{'yes' if r.intact else 'NO':>8}"
        )
    print()
    s8, s64, s200 = by[("streamed", 8)], by[("streamed", 64)], by[("streamed", 200)]
    n8, n64 = by[("naive", 8)], by[("naive", 64)]
    ratios = [
        ("peak memory, streamed 200 MiB / streamed 8 MiB", s200.peak_bytes / s8.peak_bytes, "~1 = independent of size"),
        ("peak memory, naive 64 MiB / streamed 64 MiB", n64.peak_bytes / s64.peak_bytes, ""),
        ("throughput, streamed / naive at 8 MiB", s8.mib_per_s / n8.mib_per_s, "both one PutObject"),
        ("throughput, streamed / naive at 64 MiB", s64.mib_per_s / n64.mib_per_s, "incl. finalize"),
        (
            "throughput, streamed / naive at 64 MiB, w/o finalize",
            (s64.size_mib / (s64.seconds - s64.finalize_s)) / n64.mib_per_s,
            "parts only",
        ),
    ]
    for label, value, note in ratios:
        print(f"{label:<54}{value:7.2f}  {note}")
    print()
    print("How it was measured: moto S3 and the media server run in a child process, so moto's in-memory")
    print("objects are not traced here; tracemalloc is started fresh around each transfer (open +")
    print("put_stream + head + delete for streamed; get().content + sha256 + put_object + head + delete for")
    print("naive) and nothing is subtracted. Seconds: best of 3 separate untraced runs (1 for 200 MiB).")
    print("'finalize' = CompleteMultipartUpload + the CopyObject (staging key -> final key) that attaches")
    print("the sha256 metadata: server-side work (on moto, in-memory concatenation and copy), no client bytes.")


if __name__ == "__main__":
    sys.exit(main())
