"""Step Functions adapter: one execution per job, named by the job id."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from videogen.ports import ExecutionState


class StepFunctionsWorkflow:
    """Implements :class:`videogen.ports.Workflow`."""

    def __init__(self, client: Any, state_machine_arn: str) -> None:
        self._sfn = client
        self._arn = state_machine_arn

    def start(self, job_id: str, execution_input: dict[str, Any]) -> bool:
        """Start the job's execution. False when one with this name exists (started before)."""
        try:
            self._sfn.start_execution(stateMachineArn=self._arn, name=job_id, input=json.dumps(execution_input))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return False
            raise

    def execution_arn(self, job_id: str) -> str:
        # arn:aws:states:<region>:<account>:stateMachine:<name> -> ...:execution:<name>:<job id>
        prefix, name = self._arn.split(":stateMachine:", 1)
        return f"{prefix}:execution:{name}:{job_id}"

    def state(self, job_id: str) -> ExecutionState:
        try:
            status = self._sfn.describe_execution(executionArn=self.execution_arn(job_id))["status"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"ExecutionDoesNotExist", "ResourceNotFound"}:
                return "MISSING"
            raise
        return status  # type: ignore[no-any-return,unused-ignore]
