"""The seeded small chaos run (what ``make chaos-small`` and CI run): 40 jobs, seed 7, every fault on,
its apps uploading photos and registering (and deleting) devices.

It starts its own local stack as a subprocess (``python -m devstack.chaos`` does), so it needs no
fixture and leaves nothing running. The run must end by itself, exit 0 and print a table showing
nothing stuck and no broken invariant.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.chaos import RESULT_PREFIX

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.chaos

MUST_BE_ZERO = (
    "stuck",
    "double charges",
    "double refunds",
    "ledger-vs-balance mismatches",
    "active-counter mismatches",
    "completed without S3 object",
    "checksum mismatches",
    "idempotency keys answered with >1 job id",
    "idempotency keys with differing 202 bodies",
    "completed without a poster JPEG in S3",
    "notifications for one job and device more than once",
    "devices registered throughout a notified job without exactly one",
    "notifications after the device's DELETE was answered",
    "rejected uploads not refused 422 upload_rejected, or charged",
)


def _row(output: str, label: str) -> int:
    match = re.search(rf"^\s+{re.escape(label)}\s+(\d+)\s*$", output, re.MULTILINE)
    assert match, f"no {label!r} row in the table:\n{output}"
    return int(match.group(1))


@pytest.mark.timeout(240)
def test_small_chaos_run_keeps_every_invariant() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'videogen'}{os.pathsep}{ROOT}"}
    for key in ("FAL_KEY", "PUBLIC_URL", "AWS_ENDPOINT_URL", "CRASH_POINTS", "CRASH_RATE"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "devstack.chaos", "--jobs", "40", "--seed", "7"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output

    for label in MUST_BE_ZERO:
        assert _row(output, label) == 0, f"{label} is not 0:\n{output}"

    result = json.loads(
        next(line for line in output.splitlines() if line.startswith(RESULT_PREFIX)).removeprefix(RESULT_PREFIX)
    )
    assert result["ok"] is True
    assert result["stuck"] == 0
    assert not any(result["violations"].values()), result["violations"]
    # the run did real work: jobs ended every way, and the faults actually fired
    assert result["completed"] > 0 and result["failed"] + result["canceled"] > 0
    assert result["charges"] == result["jobs"]
    crashes = ("after_submit_transaction", "after_fal_submit", "after_s3_upload", "after_transition")
    assert sum(_row(output, f"crash point {name}") for name in crashes) > 0
    assert _row(output, "webhooks dropped") + _row(output, "fal submit errors (429/503)") > 0
    # the apps did their part: uploads (one rejected and refused), devices, duplicated deliveries
    assert _row(output, "EventBridge deliveries to a function duplicated") > 0
    assert re.search(r"^\s+uploads \(meant -> checked\)\s+.*rejected -> rejected \d", output, re.MULTILINE), output
    assert re.search(r"^\s+submits naming a rejected upload\s+422 upload_rejected \d+\s*$", output, re.MULTILINE)
    assert re.search(r"^\s+jobs from an upload\s+.*completed \d", output, re.MULTILINE), output
