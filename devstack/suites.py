"""``make test``: every test suite in its own pytest run, a one-line summary per suite.

``python -m devstack.suites [SUITE ...] [-- PYTEST_ARGS ...]`` (default: every suite, in order).

The suites: ``unit`` (tests/unit, fakes only), ``integration`` (tests/integration, moto), ``e2e``
(tests/e2e over HTTP, without the chaos run) and ``chaos`` (the seeded small chaos run of
tests/e2e). Each runs even when an earlier one failed, so the summary is complete. A suite fails
when pytest fails — including exit code 5, a suite that collected no test: a folder whose tests
all vanished (renamed, deselected, skipped at import) must not pass. Exit code 0 when every suite
passed, 1 otherwise.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time

SUITES = {
    "unit": ["tests/unit"],
    "integration": ["tests/integration"],
    "e2e": ["tests/e2e", "-m", "not browser and not chaos"],
    "chaos": ["tests/e2e", "-m", "chaos"],
}
NO_TESTS_COLLECTED = 5  # pytest.ExitCode.NO_TESTS_COLLECTED


def run(suite: str, extra: list[str]) -> tuple[int, str]:
    """pytest's exit code for the suite and the last line it printed (its summary)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", *SUITES[suite], *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        sys.stdout.write(line)
        if line.strip():
            last = line.strip().strip("=").strip()
    return proc.wait(), last


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    unknown = [s for s in argv if s not in SUITES]
    if unknown:
        print(f"unknown suite(s) {unknown}; the suites are {list(SUITES)}")
        return 2
    lines = []
    for suite in argv or list(SUITES):
        print(f"== {suite}: pytest -q {shlex.join(SUITES[suite] + extra)}", flush=True)
        started = time.monotonic()
        code, last = run(suite, extra)
        if code == 0:
            verdict = "ok"
        elif code == NO_TESTS_COLLECTED:
            verdict = "FAILED: collected no test"
        else:
            verdict = f"FAILED (pytest exit code {code})"
        lines.append(f"{suite:<12} {verdict:<28} {last}  [{time.monotonic() - started:.0f} s]")
    print("== suites")
    print("\n".join(lines))
    return 0 if all(line.split()[1] == "ok" for line in lines) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
