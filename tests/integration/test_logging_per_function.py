"""Each in-process function logs under its own name and its own job's correlation id.

The local stack runs every handler in one process on many threads, while the package has one
Powertools logger. Two real handlers (their decorators as deployed, the service behind each
replaced by a probe that logs through the package's logger) run at the same time, interleaved
by barriers so each logs after the other has set its keys; every captured line must carry its
own function's name and job id.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from videogen import wiring
from videogen.observability import logger

ROUNDS = 5


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The package logger's lines, formatted as on AWS (Powertools' JSON formatter)."""
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    try:
        yield sink
    finally:
        logger._logger.removeHandler(handler)


class _Probe:
    """Stands in for a service: logs ``ROUNDS`` lines, each after both handlers have (re)entered."""

    def __init__(self, step: threading.Barrier) -> None:
        self.step = step

    def run(self, job_id: str, *_: Any, **__: Any) -> Any:
        for n in range(ROUNDS):
            self.step.wait(timeout=10)
            logger.warning("probe", extra={"probe_job": job_id, "round": n})
        return None


def test_two_handlers_at_once_each_log_under_their_own_name_and_job(stack, monkeypatch, captured) -> None:
    step = threading.Barrier(2)
    probe = _Probe(step)
    monkeypatch.setattr(wiring, "check_job", lambda: _CheckProbe(probe))
    monkeypatch.setattr(wiring, "expire_job", lambda: probe)
    lambdas = stack.stack.lambdas
    calls = {"FalCheckFunction": "vid_check_job", "JobFailFunction": "vid_fail_job"}
    errors: list[BaseException] = []

    def invoke(function: str, job_id: str) -> None:
        try:
            lambdas.invoke(function, {"job_id": job_id, "attempt": 0, "timing": {}})
        except BaseException as exc:  # reported below
            errors.append(exc)
            step.abort()

    threads = [threading.Thread(target=invoke, args=item) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []

    lines = [json.loads(line) for line in captured.getvalue().splitlines() if '"probe"' in line]
    assert len(lines) == 2 * ROUNDS
    names = {lambdas.context_for(f).function_name: job for f, job in calls.items()}
    assert len(names) == 2
    for line in lines:
        assert names[line["function_name"]] == line["probe_job"] == line["correlation_id"], line


class _CheckProbe:
    def __init__(self, probe: _Probe) -> None:
        self.probe = probe

    def run(self, job_id: str, attempt: int, timing: dict[str, Any]) -> dict[str, Any]:
        self.probe.run(job_id)
        return {"done": True, "expired": False, "next_wait_s": 0}


def test_a_handler_invoked_inside_another_on_its_thread_gives_the_outer_one_its_keys_back(
    stack, monkeypatch, captured
) -> None:
    lambdas = stack.stack.lambdas

    class Outer:
        def run(self, job_id: str, *_: Any, **__: Any) -> Any:
            lambdas.invoke("FalCheckFunction", {"job_id": "vid_inner", "attempt": 0, "timing": {}})
            logger.warning("probe", extra={"probe_job": job_id})
            return None

    class Inner:
        def run(self, job_id: str, *_: Any) -> dict[str, Any]:
            logger.warning("probe", extra={"probe_job": job_id})
            return {"done": True, "expired": False, "next_wait_s": 0}

    monkeypatch.setattr(wiring, "expire_job", Outer)
    monkeypatch.setattr(wiring, "check_job", Inner)
    lambdas.invoke("JobFailFunction", {"job_id": "vid_outer"})
    lines = [json.loads(line) for line in captured.getvalue().splitlines() if '"probe"' in line]
    got = [(line["function_name"], line["correlation_id"], line["probe_job"]) for line in lines]
    assert got == [
        (lambdas.context_for("FalCheckFunction").function_name, "vid_inner", "vid_inner"),
        (lambdas.context_for("JobFailFunction").function_name, "vid_outer", "vid_outer"),
    ]
