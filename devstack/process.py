"""``python -m devstack`` as a subprocess on free ports: what the chaos run, the contract check and
the restart / browser tests run against. Used as a context manager (started on entry, always
stopped on exit) or through :meth:`StackProcess.serve` (a CLI's "start; 2 if it cannot; always stop")."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]


CONFLICT_RATE_ENV = "LOCAL_DDB_CONFLICT_RATE"
DUPLICATE_RATE_ENV = "LOCAL_EVENT_DUPLICATE_RATE"  # EventBridge -> Lambda deliveries made twice (event_targets)
CONFLICT_LOG_TEXT = "injected TransactionConflict"  # one stack log line per injected conflict


class StackStartError(RuntimeError):
    """The stack exited or did not become healthy in time (its log says why)."""


PORT_RANGE_ENV = "STACK_PORT_RANGE"  # e.g. "39200-39299": the stack's ports are taken from it (default: any free)
_taken: set[int] = set()  # ports this process already handed out from the range


def _free_port() -> int:
    """A free port: from ``STACK_PORT_RANGE`` when set (machines shared by several runs give each one
    its range), else one the kernel picks."""
    low, _, high = os.environ.get(PORT_RANGE_ENV, "").partition("-")
    candidates = [p for p in range(int(low), int(high) + 1) if p not in _taken] if low and high else [0]
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen = int(s.getsockname()[1])
        if port:
            _taken.add(chosen)
        return chosen
    raise StackStartError(f"no free port left in {PORT_RANGE_ENV}={os.environ[PORT_RANGE_ENV]}")


class StackProcess:
    """``python -m devstack`` on free ports; ``stop()`` always ends it (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        *,
        seed: int,
        time_scale: float,
        crash_rate: float,
        reconcile_every_s: float,
        reconcile_grace_s: int,
        log_path: Path,
        log_level: str = "ERROR",
        conflict_rate: float = 0.0,
        event_duplicate_rate: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.port, self.sim_port, self.moto_port = _free_port(), _free_port(), _free_port()
        self.play_port = _free_port()  # the local Google Play
        self.host = host  # HOST: what the stack binds and names in every URL
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "FALSIM_PORT": str(self.sim_port),
            "MOTO_PORT": str(self.moto_port),
            "PLAY_PORT": str(self.play_port),
            "HOST": host,
            "PYTHONPATH": f"{ROOT / 'layers' / 'videogen'}{os.pathsep}{ROOT}",
            "TIME_SCALE": str(time_scale),
            "FALSIM_SEED": str(seed),
            "RECONCILE_EVERY_S": str(reconcile_every_s),
            "RECONCILE_GRACE_S": str(reconcile_grace_s),
            "POWERTOOLS_LOG_LEVEL": log_level,
            "PYTHONUNBUFFERED": "1",
        }
        for key in (
            "FAL_KEY",
            "PUBLIC_URL",
            "AWS_ENDPOINT_URL",
            "AWS_PROFILE",
            "CRASH_POINTS",
            "CRASH_RATE",
            CONFLICT_RATE_ENV,
            DUPLICATE_RATE_ENV,
            PORT_RANGE_ENV,
        ):
            self.env.pop(key, None)
        if crash_rate:  # crash points armed at random; 0: a stack that never crashes on purpose
            self.env.update(CRASH_POINTS="*", CRASH_RATE=str(crash_rate))
        if conflict_rate:  # DynamoDB answers TransactionConflict at this rate (devstack/moto_patches.py)
            self.env[CONFLICT_RATE_ENV] = str(conflict_rate)
        if event_duplicate_rate:  # EventBridge delivers some events to their functions twice
            self.env.update({DUPLICATE_RATE_ENV: str(event_duplicate_rate), "LOCAL_EVENT_DUPLICATE_SEED": str(seed)})
        self.proc: subprocess.Popen[bytes] | None = None
        self.outcome = "not started"
        self._log: Any = None

    @property
    def api(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def sim(self) -> str:
        return f"http://{self.host}:{self.sim_port}"

    @property
    def moto(self) -> str:
        return f"http://{self.host}:{self.moto_port}"

    def start(self, timeout_s: float = 90) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devstack"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackStartError(f"the local stack exited with code {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.api}/_local/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise StackStartError(f"the local stack did not become healthy in {timeout_s:.0f} s; see {self.log_path}")

    def __enter__(self) -> StackProcess:
        try:
            self.start()
        except BaseException:
            self.outcome = self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.outcome = self.stop()

    def serve(self, body: Callable[[StackProcess], int]) -> int:
        """Start the stack, run ``body`` on it and return its exit code; 2 (the error printed) when
        the stack could not be started. The stack is always stopped, and how it ended printed."""
        try:
            with self:
                return body(self)
        except StackStartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            print(f"local stack {self.outcome}", flush=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> str:
        """Stop the stack; says how it ended."""
        proc, self.proc = self.proc, None
        outcome = "not running"
        if proc is not None and proc.poll() is None:
            started = time.monotonic()
            proc.terminate()  # the stack stops its servers on SIGTERM
            try:
                proc.wait(timeout=30)
                outcome = f"stopped in {time.monotonic() - started:.1f} s"
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what we started
                proc.wait(timeout=10)
                outcome = "killed after 30 s"
        elif proc is not None:
            outcome = f"had exited with code {proc.returncode}"

        if self._log is not None:
            self._log.close()
            self._log = None
        return outcome
