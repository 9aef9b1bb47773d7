"""The credit and job invariants of docs/architecture.md, checked against the raw table and bucket.

Used by the tests (after every test that touches credits) and by the chaos run.
Scans the whole table: fine for a test or local table, never done in production code.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

_de = TypeDeserializer()
TERMINAL = {"completed", "failed", "canceled"}


@dataclass
class Audit:
    users: int = 0
    jobs: Counter[str] = field(default_factory=Counter)
    charges: int = 0
    refunds: int = 0
    double_charges: int = 0
    double_refunds: int = 0
    missing_charges: int = 0
    missing_refunds: int = 0
    refunded_completed: int = 0
    balance_mismatches: int = 0
    negative_balances: int = 0
    active_counter_mismatches: int = 0
    completed_without_object: int = 0
    checksum_mismatches: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str) -> None:
        self.problems.append(message)


def scan_table(db: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        resp = db.scan(**kwargs)
        items.extend({k: _de.deserialize(v) for k, v in i.items()} for i in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def audit(db: Any, table: str, s3: Any | None = None, bucket: str | None = None) -> Audit:
    """Every invariant over every user and job. ``s3``/``bucket`` also verify stored videos."""
    result = Audit()
    balances: dict[str, dict[str, Any]] = {}
    ledger: dict[str, list[dict[str, Any]]] = defaultdict(list)
    jobs: dict[str, dict[str, Any]] = {}
    for item in scan_table(db, table):
        pk, sk = str(item["pk"]), str(item["sk"])
        if sk == "BALANCE":
            balances[pk.removeprefix("USER#")] = item
        elif sk.startswith("LEDGER#"):
            ledger[pk.removeprefix("USER#")].append(item)
        elif sk == "JOB":
            jobs[str(item["id"])] = item

    charges: Counter[str] = Counter()
    refunds: Counter[str] = Counter()
    users = set(balances) | set(ledger)
    result.users = len(users)
    for user in users:
        entries = ledger.get(user, [])
        total = 0
        for e in entries:
            amount = int(e["amount"])
            if e["type"] == "grant":
                total += amount
            elif e["type"] == "charge":
                total -= amount
                charges[str(e["job_id"])] += 1
            elif e["type"] == "refund":
                total += amount
                refunds[str(e["job_id"])] += 1
        balance = int(balances.get(user, {}).get("balance", 0))
        if balance != total:
            result.balance_mismatches += 1
            result.fail(f"user {user}: balance {balance} != ledger sum {total}")
        if balance < 0:
            result.negative_balances += 1
            result.fail(f"user {user}: negative balance {balance}")
        active = sum(1 for j in jobs.values() if j["user_id"] == user and j["status"] not in TERMINAL)
        counter = int(balances.get(user, {}).get("active_jobs", 0))
        if counter != active:
            result.active_counter_mismatches += 1
            result.fail(f"user {user}: active_jobs counter {counter} != {active} unfinished jobs")

    result.charges = sum(charges.values())
    result.refunds = sum(refunds.values())
    for job_id, job in jobs.items():
        status = str(job["status"])
        result.jobs[status] += 1
        n_charge, n_refund = charges[job_id], refunds[job_id]
        if n_charge == 0:
            result.missing_charges += 1
            result.fail(f"job {job_id}: no charge")
        if n_charge > 1:
            result.double_charges += 1
            result.fail(f"job {job_id}: charged {n_charge} times")
        if status in ("failed", "canceled") and n_refund == 0:
            result.missing_refunds += 1
            result.fail(f"job {job_id}: {status} but not refunded")
        if n_refund > 1:
            result.double_refunds += 1
            result.fail(f"job {job_id}: refunded {n_refund} times")
        if status not in ("failed", "canceled") and n_refund:
            result.refunded_completed += 1
            result.fail(f"job {job_id}: {status} but refunded")
        if status == "completed" and s3 is not None and bucket:
            _check_video(result, job_id, job, s3, bucket)
    orphans = set(charges) - set(jobs)
    for job_id in orphans:
        result.fail(f"charge for a job that does not exist: {job_id}")
    return result


def _check_video(result: Audit, job_id: str, job: dict[str, Any], s3: Any, bucket: str) -> None:
    video = job.get("video") or {}
    key, expected = video.get("s3_key"), video.get("sha256")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except Exception:
        result.completed_without_object += 1
        result.fail(f"job {job_id}: completed but s3://{bucket}/{key} is missing")
        return
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    if digest.hexdigest() != expected:
        result.checksum_mismatches += 1
        result.fail(f"job {job_id}: stored video sha256 differs from the recorded one")


def summary(a: Audit) -> str:
    return json.dumps(
        {"jobs": dict(a.jobs), "charges": a.charges, "refunds": a.refunds, "problems": a.problems[:20]}, indent=1
    )
