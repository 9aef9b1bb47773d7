"""The job's execution (Step Functions) and the event bus, in memory."""

from __future__ import annotations

from typing import Any

from videogen.ports import ExecutionState


class FakeWorkflow:
    """Implements :class:`videogen.ports.Workflow`: one execution per job id."""

    def __init__(self) -> None:
        self.executions: dict[str, ExecutionState] = {}
        self.inputs: dict[str, dict[str, Any]] = {}
        self.starts: list[str] = []  # every start call, accepted or not
        self.start_error: BaseException | None = None
        self._state_errors: dict[str, BaseException] = {}

    def fail_state(self, job_id: str, error: BaseException) -> None:
        """Asking for this job's execution raises ``error`` (an unexpected failure)."""
        self._state_errors[job_id] = error

    def start(self, job_id: str, execution_input: dict[str, Any]) -> bool:
        self.starts.append(job_id)
        if self.start_error is not None:
            raise self.start_error
        if job_id in self.executions:
            return False
        self.executions[job_id] = "RUNNING"
        self.inputs[job_id] = execution_input
        return True

    def state(self, job_id: str) -> ExecutionState:
        if job_id in self._state_errors:
            raise self._state_errors[job_id]
        return self.executions.get(job_id, "MISSING")


class FakeEvents:
    """Implements :class:`videogen.ports.EventPublisher`; ``down`` makes every publish raise."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        if self.down:
            raise RuntimeError("event bus unavailable")
        self.published.append((detail_type, detail))

    def types_for(self, job_id: str) -> list[str]:
        return [t for t, d in self.published if d.get("job_id") == job_id]
