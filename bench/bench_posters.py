"""Benchmark: the poster must not delay ``completed``; it appears soon after.

Run: ``PYTHONPATH=layers/videogen:. .venv/bin/python -m bench.bench_posters`` (``make bench``).

The whole system in this process (as bench_webhook: moto, the real handlers, the simulator; the
state machine does not execute). Per run, a job whose fal request finished is completed by ONE
signed webhook delivery (the real WebhookFunction: download into S3, the conditional transition,
the "Job Completed" event), timed from the delivery to its ``completed`` answer:

* ``with media``     the EventBridge rule of the template delivers "Job Completed" to the real
                     MediaFunction (devstack.event_targets), which runs while the webhook finishes;
* ``without media``  the same, with delivery to Lambda targets switched off (as before this
                     feature) — the baseline, alternated with the other run by run.

Then, for the ``with`` runs: the delay from the ``completed`` answer to the job carrying its
poster (``video.media``; the job is read every 5 ms), against the poster work alone (the PyAV
adapter on the same stored video, timed apart): the difference is the event's delivery.
Medians of ``--repeat`` runs per video size (padded MP4 from the simulator's CDN).

Exits 0 when every job completed and every ``with`` run got its poster; 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from bench.bench_webhook import MIB, Bench, local_system

SIZES_MIB = (1, 25)
REPEAT = 7
POSTER_BOUND_S = 30.0


def _poster_delay(bench: Bench, job_id: str) -> float | None:
    """Seconds until the job carries its media, from now; None past the bound."""
    store = bench.wiring.store()
    started = time.perf_counter()
    while time.perf_counter() - started < POSTER_BOUND_S:
        job = store.get_job(job_id)
        if job is not None and job.video is not None and job.video.media is not None:
            return time.perf_counter() - started
        time.sleep(0.005)
    return None


def run(bench: Bench, size: int, with_media: bool, problems: list[str]) -> tuple[float, float | None, str]:
    """One completion: (seconds to ``completed``, seconds from then to the poster or None, video key)."""
    from devstack import event_targets

    job_id, request_id = bench.finished_job(size)
    event_targets.deliver_with(bench.stack.lambdas.invoke if with_media else None)
    try:
        t0 = time.perf_counter()
        status, reply = bench.deliver(job_id, request_id)
        to_completed = time.perf_counter() - t0
        if status != 200 or reply.get("status") != "completed":
            problems.append(f"{job_id}: the delivery answered {status} {reply}")
        delay = _poster_delay(bench, job_id) if with_media else None
        if with_media and delay is None:
            problems.append(f"{job_id}: no poster within {POSTER_BOUND_S:.0f} s")
        event_targets.drain()
    finally:
        event_targets.deliver_with(bench.stack.lambdas.invoke)
    job = bench.wiring.store().get_job(job_id)
    key = job.video.s3_key if job is not None and job.video is not None else ""
    return to_completed, delay, key


def poster_work(key: str) -> float:
    """The PyAV adapter alone on a stored video (a poster key of its own, deleted after)."""
    from videogen import wiring

    target = f"{key}.bench.jpg"
    t0 = time.perf_counter()
    wiring.media_tools().make_poster(key, target)
    took = time.perf_counter() - t0
    wiring.client("s3").delete_object(Bucket=wiring.settings().bucket_name, Key=target)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES_MIB)), help="video sizes in MiB (comma-separated)")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="runs per size and mode")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    with local_system(sim_config={"queue_s": 0, "run_s": 0, "webhook_delay_s": 0, "webhook_drop_rate": 1}) as stack:
        bench = Bench(stack)
        run(bench, MIB, True, problems)  # warm-up: imports (PyAV too), JWKS, connection pools
        run(bench, MIB, False, problems)
        for size_mib in sizes:
            with_s: list[float] = []
            without_s: list[float] = []
            delays: list[float] = []
            work: list[float] = []
            for _ in range(args.repeat):
                to_completed, delay, key = run(bench, size_mib * MIB, True, problems)
                with_s.append(to_completed)
                if delay is not None:
                    delays.append(delay)
                work.append(poster_work(key))
                without_s.append(run(bench, size_mib * MIB, False, problems)[0])
            rows.append(
                {
                    "size": size_mib,
                    "with": statistics.median(with_s),
                    "without": statistics.median(without_s),
                    "delay": statistics.median(delays) if delays else float("nan"),
                    "work": statistics.median(work),
                }
            )
    print("bench_posters: time to `completed` with and without the media function, and completed -> poster")
    print(f"(medians of {args.repeat} alternating runs per size; the whole system in one process)\n")
    print(
        "| video | to completed, with media | without (baseline) | ratio "
        "| completed -> poster | poster work alone | delivery and store |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ms = {k: f"{r[k] * 1000:.0f} ms" for k in ("with", "without", "delay", "work")}
        print(
            f"| {r['size']} MiB | {ms['with']} | {ms['without']} | {r['with'] / r['without']:.2f} "
            f"| {ms['delay']} | {ms['work']} | {(r['delay'] - r['work']) * 1000:.0f} ms |"
        )
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
