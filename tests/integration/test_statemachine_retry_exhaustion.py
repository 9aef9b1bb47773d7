"""The REAL statemachines/video_job.asl.json in moto's interpreter: what happens when a task's
retries run out (each Retry's MaxAttempts, then its Catch, or none).

moto waits out each retry's interval (2 s doubling, full jitter, up to 60 s); here the waits are
recorded instead of slept, so the test checks how many retries ran and that each wait stayed
within the definition's bounds, in milliseconds of wall time.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from tests.integration import test_template_and_statemachine as sfn_tests
from tests.integration.test_template_and_statemachine import FalTransientError, Stack, job_input, not_done

DEFINITION = json.loads((Path(__file__).resolve().parents[2] / "statemachines" / "video_job.asl.json").read_text())

pytestmark = pytest.mark.timeout(120)
stack = sfn_tests.stack  # the fixture: moto with the real definition, the tasks answered by fakes


class MediaTransferError(Exception):
    """Same class name as the real one: the Check task's Retry matches it by name."""


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every retry interval the interpreter would have slept, in order."""
    slept: list[float] = []
    monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=slept.append))
    return slept


def _retry(state: str, error: str) -> dict[str, Any]:
    return next(r for r in DEFINITION["States"][state]["Retry"] if error in r["ErrorEquals"])


def _always(error: Exception) -> Any:
    def behaviour(event: dict[str, Any], n: int) -> Any:
        raise error

    return behaviour


def _fails_first(times: int, error: Exception, then: Any) -> Any:
    def behaviour(event: dict[str, Any], n: int) -> Any:
        if n <= times:
            raise error
        return then

    return behaviour


def test_the_definition_bounds_the_retries_these_tests_exhaust() -> None:
    assert _retry("SubmitToFal", "FalTransientError")["MaxAttempts"] == 6
    assert _retry("Check", "MediaTransferError")["MaxAttempts"] == 3
    assert _retry("FailJob", "States.ALL")["MaxAttempts"] == 5 and _retry("Expire", "States.ALL")["MaxAttempts"] == 5
    assert DEFINITION["States"]["SubmitToFal"]["Catch"][0]["Next"] == "FailJob"
    assert DEFINITION["States"]["Check"]["Catch"][0]["Next"] == "HandOverToReconciler"
    assert "Catch" not in DEFINITION["States"]["FailJob"] and "Catch" not in DEFINITION["States"]["Expire"]


def test_submit_transient_errors_past_the_retries_fail_the_job_with_submit_failed(
    stack: Stack, waits: list[float]
) -> None:
    stack.fake("FalSubmitFunction", _always(FalTransientError("fal answered 503")))
    stack.fake("FalCheckFunction", not_done)
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-submit-exhausted"))

    assert execution["status"] == "SUCCEEDED"  # the workflow handled it: the job failed with a refund
    assert len(stack.calls.of("FalSubmitFunction")) == 1 + 6
    assert stack.calls.of("FalCheckFunction") == []
    assert stack.calls.of("JobFailFunction") == [
        {
            "job_id": "job-submit-exhausted",
            "reason": "submit_failed",
            "cause": "FalTransientError",
            "cancel_at_fal": False,
        }
    ]
    assert len(waits) == 6 and all(0 <= w <= 60 for w in waits)


def test_submit_succeeding_on_its_last_retry_goes_on_to_the_poll_loop(stack: Stack, waits: list[float]) -> None:
    stack.fake("FalSubmitFunction", _fails_first(6, FalTransientError("429"), {"done": False}))
    stack.fake("FalCheckFunction", lambda event, n: {"done": True, "expired": False, "next_wait_s": 0})
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-submit-last-retry"))

    assert execution["status"] == "SUCCEEDED"
    assert len(stack.calls.of("FalSubmitFunction")) == 7 and len(stack.calls.of("FalCheckFunction")) == 1
    assert stack.calls.of("JobFailFunction") == [] and len(waits) == 6


def test_check_transfer_errors_past_the_retries_hand_the_job_to_the_reconciler(
    stack: Stack, waits: list[float]
) -> None:
    stack.fake("FalSubmitFunction", lambda event, n: {"done": False})
    stack.fake("FalCheckFunction", _always(MediaTransferError("S3 down")))
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-check-exhausted"))

    assert execution["status"] == "FAILED" and execution.get("error") == "CheckFailed"
    assert len(stack.calls.of("FalCheckFunction")) == 1 + 3
    assert stack.calls.of("JobFailFunction") == []  # never failed: fal finished it, the reconciler stores it
    assert len(waits) == 3 and all(0 <= w <= 60 for w in waits)


def test_check_recovering_within_its_retries_finishes_the_job(stack: Stack, waits: list[float]) -> None:
    stack.fake("FalSubmitFunction", lambda event, n: {"done": False})
    stack.fake(
        "FalCheckFunction",
        _fails_first(3, MediaTransferError("S3 down"), {"done": True, "expired": False, "next_wait_s": 0}),
    )
    stack.fake("JobFailFunction", lambda event, n: {"ok": True})

    execution = stack.run(job_input("job-check-recovers"))

    assert execution["status"] == "SUCCEEDED"
    assert len(stack.calls.of("FalCheckFunction")) == 4 and stack.calls.of("JobFailFunction") == []


@pytest.mark.parametrize("path", ["FailJob", "Expire"])
def test_a_failing_fail_task_past_its_retries_fails_the_execution_for_the_reconciler(
    stack: Stack, waits: list[float], path: str
) -> None:
    if path == "FailJob":
        stack.fake("FalSubmitFunction", _always(RuntimeError("422 from fal")))  # caught: FailJob
    else:
        stack.fake("FalSubmitFunction", lambda event, n: {"done": False})
    stack.fake("FalCheckFunction", lambda event, n: {"done": False, "expired": True, "next_wait_s": 0})
    stack.fake("JobFailFunction", _always(RuntimeError("DynamoDB unavailable")))

    execution = stack.run(job_input(f"job-{path.lower()}-exhausted"))

    assert execution["status"] == "FAILED"  # no Catch: the job stays active and the reconciler ends it
    fails = stack.calls.of("JobFailFunction")
    assert len(fails) == 1 + 5
    reason = "submit_failed" if path == "FailJob" else "deadline_exceeded"
    assert {f["reason"] for f in fails} == {reason}
    assert len(waits) == 5
