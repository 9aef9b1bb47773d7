"""``python -m bench`` (what ``make bench`` runs): every benchmark, each printing its figures as
ratios against a baseline measured in the same run."""

from __future__ import annotations

import sys

from bench import (
    bench_posters,
    bench_reads,
    bench_transfer,
    bench_upload_check,
    bench_webhook,
    bench_workflow_cost,
)


def main() -> int:
    results = []
    for bench in (bench_transfer, bench_webhook, bench_workflow_cost, bench_reads, bench_posters, bench_upload_check):
        if results:
            print("\n" + "=" * 100 + "\n", flush=True)
        results.append(bench.main([]))
    return max(results)


if __name__ == "__main__":
    sys.exit(main())
