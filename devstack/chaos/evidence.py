"""What the chaos run reads back once every job has ended: the table, the bucket (and the first
bytes of every poster), the events the bus delivered, the notifications each device would have
received, the simulator's requests, the stack's counters and log. Read once, after the system has
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
    notifications: list[dict[str, Any]] = field(default_factory=list)  # GET /_local/notifications, oldest first
    posters: dict[str, bytes] = field(default_factory=dict)  # poster key -> its first bytes (absent: no object)

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


def settle(aws: Aws, api: str, bound_s: float) -> tuple[list[dict[str, Any]], bool]:
    """Wait until nothing moves: every job terminal, none owing its event, no execution running, no
    event delivery to a function under way (the notifier, the media function) and two scans a
    second apart equal. Returns the last scan and whether it was quiet within ``bound_s`` (two
    reconciler periods plus its grace and the notifier's wait for a poster: by then no event may
    still be owed, no notification still due)."""
    deadline = time.monotonic() + bound_s
    previous: list[dict[str, Any]] | None = None
    while True:
        items = scan_table(aws.db, aws.table)
        busy = any(i["sk"] == "JOB" and (i["status"] not in TERMINAL or i.get("event_pending")) for i in items)
        if not busy and items == previous and not aws.running_executions() and not _deliveries_in_flight(api):
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
    items, quiet = settle(aws, stack.api, settle_s)
    jobs = {str(i["id"]): i for i in items if i["sk"] == "JOB"}
    bucket = Bucket.read(aws.s3, aws.bucket)
    return Evidence(
        items=items,
        bucket=bucket,
        events=delivered_events(aws.logs, aws.event_log),
        sim_requests=sim_requests(stack.sim),
        reference=reference_video(stack.sim, jobs),
        obs=obs,
        plans=plans,
        users=users,
        quiet=quiet,
        stuck_seen=stuck_seen,
        notifications=notifications(stack.api),
        posters=poster_heads(aws, bucket, jobs),
    )


def _deliveries_in_flight(api: str) -> int:
    reply = requests.get(f"{api}/_local/stats", timeout=10)
    reply.raise_for_status()
    return int(reply.json().get("event_deliveries_in_flight", 0))


def notifications(api: str) -> list[dict[str, Any]]:
    reply = requests.get(f"{api}/_local/notifications", timeout=30)
    reply.raise_for_status()
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


POSTER_HEAD = 16  # bytes of each poster read back (a JPEG starts FF D8 FF)


def poster_heads(aws: Aws, bucket: Bucket, jobs: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """The first bytes of the poster each completed job's ``video.media`` names, when it exists."""
    out: dict[str, bytes] = {}
    for job in jobs.values():
        key = ((job.get("video") or {}).get("media") or {}).get("poster_key")
        if job["status"] == "completed" and key and key in bucket.keys:
            body = aws.s3.get_object(Bucket=aws.bucket, Key=key, Range=f"bytes=0-{POSTER_HEAD - 1}")["Body"]
            out[str(key)] = body.read()
    return out


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
