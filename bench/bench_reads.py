"""Benchmark: a status-filtered job list vs the unfiltered page, for users with a long history.

Run: ``PYTHONPATH=layers/videogen:. .venv/bin/python -m bench.bench_reads`` (``make bench``).

Target: "every read does bounded work whatever the user's history" (issue 8). What is measured:

* The whole system in this process, as in the integration tests: moto (resources from
  template.yaml), the real ApiFunction behind the local gateway (called without sockets).
* Per history size N: a user with N jobs, written along the submit path's own transaction;
  the OLDEST one failed (refunded), the others queued -- the worst case for a filter that reads
  the history newest first.
* Timed, best of ``--repeat`` alternating runs, with the DynamoDB Query calls and the items they
  read (``ScannedCount``: what DynamoDB bills and spends time on) counted from botocore's events:
  ``unfiltered``  ``GET /v1/videos?limit=100`` -- the baseline, measured in the same run;
  ``failed/1``    ``GET /v1/videos?status=failed&limit=1`` -- one match at the end of the history;
  ``queued/100``  ``GET /v1/videos?status=queued&limit=100`` -- a full page of matches.
  The ratio is each filtered read's time over the baseline's.

Exits 0 when every answer is right (the failed job found, full pages where there are matches);
1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.bench_webhook import local_system

HISTORIES = (100, 400)
READS = {
    "unfiltered": "/v1/videos?limit=100",
    "failed/1": "/v1/videos?status=failed&limit=1",
    "queued/100": "/v1/videos?status=queued&limit=100",
}


class QueryMeter:
    """Query calls of one DynamoDB client and the items they read, from botocore's after-call event."""

    def __init__(self, client: Any) -> None:
        self.calls, self.scanned = 0, 0
        client.meta.events.register("after-call.dynamodb.Query", self._after)

    def _after(self, parsed: dict[str, Any], **_: Any) -> None:
        self.calls += 1
        self.scanned += int(parsed.get("ScannedCount", 0))

    def reset(self) -> None:
        self.calls, self.scanned = 0, 0


def seed(stack: Any, user_id: str, count: int) -> tuple[str, str]:
    """``count`` jobs of a new user, the oldest failed; returns (bearer token, failed job id)."""
    from tests.fakes.jobs import write_jobs
    from videogen import wiring
    from videogen.domain.models import JobError, JobStatus

    store = wiring.store()
    status, _, body = request(stack, "POST", "/_local/users", {"user_id": user_id, "credits": 5 * count})
    if status != 200:
        raise RuntimeError(f"could not create the bench user: {status}")
    first = write_jobs(store, user_id, count, idem_ttl_s=600)[0]
    store.finish_with_refund(first, JobStatus.FAILED, JobError(code="bench", message="the oldest job"))
    return str(json.loads(body)["token"]), first.id


def request(stack: Any, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any, bytes]:
    headers = {"host": "127.0.0.1", "content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = b"" if body is None else json.dumps(body).encode()
    return stack.server.api.handle(method, path, headers, data)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--histories", default=",".join(map(str, HISTORIES)), help="jobs per user (comma-separated)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per read")
    args = parser.parse_args(argv)
    histories = [int(n) for n in args.histories.split(",") if n.strip()]
    problems: list[str] = []
    rows: list[tuple[int, str, float, int, int]] = []
    with local_system() as stack:
        from videogen import wiring

        meter = QueryMeter(wiring.client("dynamodb"))
        for n in histories:
            token, failed_id = seed(stack, f"bench-reads-{n}", n)
            best = {name: float("inf") for name in READS}
            cost = {}
            for run in range(args.repeat + 1):  # run 0 warms up
                for name, path in READS.items():
                    meter.reset()
                    t0 = time.perf_counter()
                    status, _, body = request(stack, "GET", path, token=token)
                    elapsed = time.perf_counter() - t0
                    page = json.loads(body)
                    ids = [j["id"] for j in page.get("items", [])]
                    full = min(n if name == "unfiltered" else n - 1, 100)  # the failed job is not queued
                    right = ids == [failed_id] if name == "failed/1" else len(ids) == full
                    if status != 200 or not right:
                        problems.append(f"{name} of {n} jobs answered {status} with {len(ids)} items")
                    if run:
                        best[name] = min(best[name], elapsed)
                    cost[name] = (meter.calls, meter.scanned)
            rows += [(n, name, best[name], *cost[name]) for name in READS]
    report(rows)
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems else 0


def report(rows: list[tuple[int, str, float, int, int]]) -> None:
    print("Job list reads: a status filter vs the unfiltered page (the baseline, same run, same user)")
    print()
    header = f"{'jobs':>5} {'read':<11} {'seconds':>8} {'ratio':>6} {'queries':>8} {'items read':>11}"
    print(header)
    print("-" * len(header))
    base = {n: s for n, name, s, _, _ in rows if name == "unfiltered"}
    for n, name, seconds, calls, scanned in rows:
        print(f"{n:>5} {name:<11} {seconds:>8.4f} {seconds / base[n]:>6.2f} {calls:>8} {scanned:>11}")


if __name__ == "__main__":
    sys.exit(main())
