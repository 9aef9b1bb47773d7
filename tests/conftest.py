"""Shared fixtures.

``stack``: the local stack in-process — moto ``mock_aws`` (resources from
template.yaml), the real handlers behind the local gateway (called without
sockets), a fal simulator on an ephemeral port. ``stack_sfn``: the same with
moto's Step Functions interpreter executing the real .asl.json.
After every test that used a stack, the credit invariants are audited.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from devstack.invariants import audit, delivered_events
from devstack.stack import LocalStack, in_process, isolated_env

FAST_SIM = {"queue_s": 0.2, "run_s": 0.3, "webhook_delay_s": 0}


@pytest.fixture(autouse=True)
def _clean_env() -> Iterator[None]:
    """Every test starts from the same environment and forgets cached adapters, crash points and
    injected DynamoDB conflicts."""
    with isolated_env(ENVIRONMENT="test", POWERTOOLS_LOG_LEVEL="WARNING"):
        _reset()
        yield
        _reset()


def _reset() -> None:
    from aws_lambda_powertools.utilities import parameters

    from devstack import moto_patches
    from videogen import crash, wiring

    wiring.reset()
    crash.disarm()
    moto_patches.set_conflicts(0)  # no DynamoDB conflict injected unless a test asks
    parameters.clear_caches()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Harness:
    """A started LocalStack plus conveniences for tests."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        from videogen import wiring

        self.store = wiring.store()
        self.db = boto3.client("dynamodb")
        self.s3 = boto3.client("s3")
        self.table = stack.resources.table_name
        self.bucket = stack.resources.bucket_name
        self.users: set[str] = set()

    @property
    def sim(self) -> Any:
        return self.stack.sim

    def user(self, credits: int = 100, user_id: str | None = None) -> str:
        """Create a user with ``credits`` through the real grant path; returns a bearer token."""
        user_id = user_id or f"user-{uuid.uuid4().hex[:8]}"
        reply = self.request("POST", "/_local/users", body={"user_id": user_id, "credits": credits})
        assert reply.status == 200, reply.body
        self.users.add(user_id)
        return str(reply.json["token"])

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        hdrs = {"host": "127.0.0.1", "content-type": "application/json", **(headers or {})}
        if token:
            hdrs["authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        status, out, payload = self.stack.server.api.handle(method, path, {k.lower(): v for k, v in hdrs.items()}, data)
        return Reply(status, out, payload)

    def submit(
        self, token: str, key: str | None = None, model: str = "minimax-video-01", payload: dict[str, Any] | None = None
    ) -> Reply:
        headers = {"idempotency-key": key or uuid.uuid4().hex}
        return self.request(
            "POST",
            "/v1/videos",
            token=token,
            headers=headers,
            body={"model": model, "input": payload or {"prompt": "a cat surfing"}},
        )

    def wait_executions_idle(self, timeout_s: float = 60) -> None:
        """Let running state machine executions finish before auditing (bounded)."""
        sfn = boto3.client("stepfunctions")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            running = sfn.list_executions(
                stateMachineArn=self.stack.resources.state_machine_arn, statusFilter="RUNNING"
            )["executions"]
            if not running:
                return
            time.sleep(0.2)
        raise AssertionError("state machine executions still running at the end of the test")

    def job(self, job_id: str) -> Any:
        return self.store.get_job(job_id)

    def pass_deadline(self, job_id: str) -> None:
        """The job's deadline passes now, whatever the machine's speed: its ``deadline_at`` is set
        a second into the past and nothing else is written (``updated_at`` stays: only the clock
        moved on). A test holds a job where it needs it, then lets the deadline pass."""
        self.db.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}},
            UpdateExpression="SET deadline_at = :past",
            ConditionExpression="attribute_exists(pk) AND deadline_at > :past",
            ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
        )

    def wait_status(self, job_id: str, statuses: set[str], timeout_s: float = 30) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.store.get_job(job_id)
            if job is not None and job.status.value in statuses:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} never reached {statuses}: {self.store.get_job(job_id)}")

    def wait_event_out(self, job_id: str, timeout_s: float = 10) -> None:
        """Until the terminal job's outbox has run (its flag cleared): the transition is written
        before its event is published, so a test that saw the status may be ahead of the event."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.store.get_job(job_id)
            if job is not None and job.is_terminal and not job.event_pending:
                return
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still owes its event: {self.store.get_job(job_id)}")

    def settled_job(self, job_id: str) -> Any:
        """The job once the event deliveries under way are done: a completed job's media function
        writes ``video.media`` after its "Job Completed", so a snapshot taken before may differ."""
        from devstack import event_targets

        event_targets.drain()
        return self.job(job_id)

    def bucket_keys(self) -> list[str]:
        """Every object key in the bucket, sorted, once the event deliveries under way are done
        (the media function writes a completed job's poster after its "Job Completed")."""
        from devstack import event_targets

        event_targets.drain()
        return sorted(o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", []))

    def event_tap(self) -> EventTap:
        """From now on, every event on the project's bus is also kept for the test to read."""
        return EventTap(self.stack.resources.event_bus_name)

    def audit(self, check_videos: bool = True) -> Any:
        """The invariant audit over the table, the bucket (``check_videos``) and the events the bus
        delivered: every terminal job that says its event is out has it on the bus (no reconciler
        runs here, so an event still owed is not yet a problem)."""
        events = delivered_events(boto3.client("logs"), self.stack.resources.event_log_group)
        s3 = self.s3 if check_videos else None
        return audit(self.db, self.table, s3, self.bucket, events, reconciled=False)


class EventTap:
    """An EventBridge rule on the bus sending every job event to an SQS queue (moto delivers it):
    the events as the bus received them, read without touching the publisher."""

    def __init__(self, bus: str) -> None:
        self._sqs = boto3.client("sqs")
        name = f"tap-{uuid.uuid4().hex[:8]}"
        self._queue = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events = boto3.client("events")
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps({"source": [{"prefix": ""}]}))
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def received(self) -> list[tuple[str, dict[str, Any]]]:
        """(detail-type, detail) of every event so far, in arrival order."""
        while True:
            messages = self._sqs.receive_message(QueueUrl=self._queue, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return list(self.seen)
            for m in messages:
                event = json.loads(m["Body"])
                self.seen.append((event["detail-type"], event["detail"]))
                self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=m["ReceiptHandle"])

    def types(self, job_id: str | None = None) -> list[str]:
        return [t for t, d in self.received() if job_id is None or d.get("job_id") == job_id]


def _start(execute_sfn: bool, sim_config: dict[str, Any]) -> Iterator[Harness]:
    with in_process(execute_sfn=execute_sfn, time_scale=0.01, sim_config=sim_config) as stack:
        harness = Harness(stack)
        yield harness
        if execute_sfn:
            harness.wait_executions_idle()
        result = harness.audit()
        assert result.ok, f"credit/job invariants broken after the test: {result.problems}"


@pytest.fixture
def stack() -> Iterator[Harness]:
    """The system without the state machine running (executions are only recorded)."""
    yield from _start(False, dict(FAST_SIM))


@pytest.fixture
def stack_sfn() -> Iterator[Harness]:
    """The whole system: the real state machine executes, fal is the simulator."""
    yield from _start(True, dict(FAST_SIM))


# --- least privilege, proven (devstack.iam) ---------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Record every AWS call the in-process functions make, from the first client on."""
    from devstack import iam

    config.stash[_IAM_RECORDER] = iam.install_recorder()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from devstack import iam

    recorder = config.stash.get(_IAM_RECORDER, None)
    if recorder is None or not recorder.calls:
        return
    if recorder.denied() or config.getoption("verbose") > 0 or _IAM_REPORT_ENV in __import__("os").environ:
        terminalreporter.write_sep("-", "IAM: the functions' AWS calls against their roles (devstack.iam)")
        terminalreporter.write_line(iam.report(recorder, _template()))
    else:
        denied = len(recorder.denied())
        terminalreporter.write_line(f"IAM check: {sum(recorder.calls.values())} AWS calls, {denied} not allowed")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A call a function's role does not allow fails the run (moto itself never refuses one)."""
    recorder = session.config.stash.get(_IAM_RECORDER, None)
    if recorder is not None and recorder.denied() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _template() -> Any:
    from devstack.template import SamTemplate

    return SamTemplate.load()


_IAM_RECORDER = pytest.StashKey[Any]()
_IAM_REPORT_ENV = "IAM_REPORT"
