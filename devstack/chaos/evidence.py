"""What the chaos run reads back once every job has ended: the table, the bucket, the events the bus
delivered, the simulator's requests, the stack's counters and log. Read once, after the system has
gone quiet (:func:`settle`), so the audit (:mod:`devstack.chaos.checks`) judges one snapshot and
never looks again to let a transient violation pass."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config as BotoConfig

from devstack.chaos.driver import Observations
from devstack.chaos.plan import Plan, User
from devstack.invariants import TERMINAL, Bucket, delivered_events, scan_table
from devstack.process import StackProcess


@dataclass
class Evidence:
    """Everything the audit judges (plain data: the unit tests build it by hand)."""

    items: list[dict[str, Any]]
    bucket: Bucket | None
    events: Counter[str]  # job id -> events the bus delivered
    sim_requests: dict[str, dict[str, Any]]  # fal request id -> the simulator's view of it
    reference: tuple[str, int] | None  # sha256 and size of the video fal serves
    obs: Observations
    plans: list[Plan]
    users: list[User]
    quiet: bool = True  # the table stopped changing before it was read
    stuck_seen: set[str] = field(default_factory=set)  # jobs the polling never saw end

    @property
    def jobs(self) -> dict[str, dict[str, Any]]:
        return {str(i["id"]): i for i in self.items if i["sk"] == "JOB"}

    @property
    def idempotency_records(self) -> list[dict[str, Any]]:
        return [i for i in self.items if str(i["sk"]).startswith("IDEM#")]


class Aws:
    """boto3 clients on the stack's moto server, and its table, bucket and event log names."""

    def __init__(self, stack: StackProcess) -> None:
        kw: dict[str, Any] = {
            "endpoint_url": stack.moto,
            "region_name": "us-east-1",
            "aws_access_key_id": "local",
            "aws_secret_access_key": "local",
            "config": BotoConfig(connect_timeout=5, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"}),
        }
        self.db, self.s3 = boto3.client("dynamodb", **kw), boto3.client("s3", **kw)
        self.logs, self.sfn = boto3.client("logs", **kw), boto3.client("stepfunctions", **kw)
        self.table = next(t for t in self.db.list_tables()["TableNames"] if t.endswith("jobs-table"))
        self.bucket = next(b["Name"] for b in self.s3.list_buckets()["Buckets"] if b["Name"].endswith("videos-bucket"))
        groups = self.logs.describe_log_groups(logGroupNamePrefix="/")["logGroups"]
        self.event_log = next(g["logGroupName"] for g in groups if g["logGroupName"].endswith("/delivered-events"))

    def running_executions(self) -> int:
        machines = self.sfn.list_state_machines()["stateMachines"]
        return sum(
            len(self.sfn.list_executions(stateMachineArn=m["stateMachineArn"], statusFilter="RUNNING")["executions"])
            for m in machines
        )


def settle(aws: Aws, bound_s: float) -> tuple[list[dict[str, Any]], bool]:
    """Wait until nothing moves: every job terminal, none owing its event, no execution running and
    two scans a second apart equal. Returns the last scan and whether it was quiet within
    ``bound_s`` (two reconciler periods plus its grace: by then no event may still be owed)."""
    deadline = time.monotonic() + bound_s
    previous: list[dict[str, Any]] | None = None
    while True:
        items = scan_table(aws.db, aws.table)
        busy = any(i["sk"] == "JOB" and (i["status"] not in TERMINAL or i.get("event_pending")) for i in items)
        if not busy and items == previous and not aws.running_executions():
            return items, True
        if time.monotonic() >= deadline:
            return items, False
        previous = items
        time.sleep(1.0)


def gather(
    stack: StackProcess,
    obs: Observations,
    plans: list[Plan],
    users: list[User],
    stuck_seen: set[str],
    settle_s: float,
) -> Evidence:
    aws = Aws(stack)
    items, quiet = settle(aws, settle_s)
    jobs = {str(i["id"]): i for i in items if i["sk"] == "JOB"}
    return Evidence(
        items=items,
        bucket=Bucket.read(aws.s3, aws.bucket),
        events=delivered_events(aws.logs, aws.event_log),
        sim_requests=sim_requests(stack.sim),
        reference=reference_video(stack.sim, jobs),
        obs=obs,
        plans=plans,
        users=users,
        quiet=quiet,
        stuck_seen=stuck_seen,
    )


def sim_requests(sim: str) -> dict[str, dict[str, Any]]:
    reply = requests.get(f"{sim}/_sim/requests", timeout=30)
    reply.raise_for_status()
    known: dict[str, dict[str, Any]] = reply.json()
    return known


def reference_video(sim: str, jobs: dict[str, dict[str, Any]]) -> tuple[str, int] | None:
    """sha256 and size of what fal serves (the simulator serves the same MP4 for every request).

    Called once every job has ended, with the CDN faults turned off."""
    requests.put(f"{sim}/_sim/config", json={"cdn_error_rate": 0}, timeout=10).raise_for_status()
    for job in jobs.values():
        request_id = (job.get("fal") or {}).get("request_id")
        if job["status"] != "completed" or not request_id:
            continue
        reply = requests.get(f"{sim}/cdn/{request_id}.mp4", timeout=30)
        if reply.status_code == 200:
            return hashlib.sha256(reply.content).hexdigest(), len(reply.content)
    return None


def count_in_log(path: Path, needle: str) -> int:
    try:
        return path.read_text(errors="replace").count(needle)
    except OSError:
        return 0
