"""``python -m bench`` (what ``make bench`` runs): every benchmark, each printing its figures as
ratios against a baseline measured in the same run."""

from __future__ import annotations

import sys

from bench import bench_transfer


def main() -> int:
    results = [bench_transfer.main([])]
    return max(results)


if __name__ == "__main__":
    sys.exit(main())
