"""The credit and job invariants of docs/architecture.md, checked against the raw table and bucket.

Used by the tests (after every test that touches credits) and by the chaos run.
Scans the whole table: fine for a test or local table, never done in production code.

:func:`audit_items` is the audit itself, a pure function of the table's items, the bucket's
contents (:class:`Bucket`) and the events the bus delivered (a job id -> count), so unit tests
feed it synthetic data with each violation in it; :func:`audit` reads a real table and bucket.
Every problem is counted under one kind (:data:`KINDS`); any problem fails the audit.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from boto3.dynamodb.types import TypeDeserializer

from videogen.domain.media import poster_key

_de = TypeDeserializer()
TERMINAL = {"completed", "failed", "canceled"}
LEDGER_TYPES = {"grant", "charge", "refund", "purchase", "clawback"}
STAGING_PREFIX = "_staging/"  # where a video is uploaded before it is copied to its key (adapters/media.py)
# the apps' input files and their sealed copies (domain/uploads.py): no job owns them, lifecycle rules end them
INPUT_PREFIXES = ("uploads/", "inputs/")

KINDS = (  # every kind of problem the audit reports, in the chaos table's order
    "double charges",
    "double refunds",
    "missing charges",
    "failed/canceled without refund",
    "completed but refunded",
    "charge amount differs from the job's credits_charged",
    "credits_charged differs from the price of the input",
    "refund amount differs from its charge",
    "charges or refunds for a job that does not exist",
    "unknown ledger entry types",
    "ledger-vs-balance mismatches",
    "negative balances",
    "purchase entries out of step with the purchase's status",
    "purchase or clawback amount differs from the purchase's credits",
    "purchase entries for a purchase that does not exist or another user",
    "purchase entries without their order (purchase_seq missing or repeated)",
    "purchase entries not alternating purchase, clawback, ... from a purchase",
    "active-counter mismatches",
    "completed without S3 object",
    "checksum mismatches",
    "S3 objects no completed job owns",
    "staging objects or unfinished uploads left in S3",
    "terminal jobs still owing their event",
    "terminal jobs whose event never reached the bus",
)


@dataclass
class Audit:
    users: int = 0
    jobs: Counter[str] = field(default_factory=Counter)
    charges: int = 0
    refunds: int = 0
    by_kind: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, kind: str, message: str) -> None:
        self.by_kind[kind].append(message)  # a KeyError for a kind not in KINDS
        self.problems.append(message)


@dataclass
class Bucket:
    """What the audit needs of a bucket: its keys, its unfinished multipart uploads, and a way to
    hash an object (None when it cannot be read)."""

    keys: list[str]
    uploads: list[str]
    sha256: Callable[[str], str | None]

    @classmethod
    def of(cls, objects: Mapping[str, bytes], uploads: list[str] | None = None) -> Bucket:
        """A bucket held in memory (unit tests)."""
        return cls(
            sorted(objects),
            list(uploads or []),
            lambda key: hashlib.sha256(objects[key]).hexdigest() if key in objects else None,
        )

    @classmethod
    def read(cls, s3: Any, bucket: str) -> Bucket:
        """A real bucket (boto3 S3 client, or a fake that answers the same calls)."""
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": bucket}
        while True:
            page = s3.list_objects_v2(**kwargs)
            keys.extend(str(o["Key"]) for o in page.get("Contents", []))
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        uploads = [str(u["Key"]) for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

        def sha256(key: str) -> str | None:
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            except Exception:  # a missing or unreadable object is what is checked
                return None
            digest = hashlib.sha256()
            for chunk in iter(lambda: body.read(1 << 20), b""):
                digest.update(chunk)
            return digest.hexdigest()

        return cls(keys, uploads, sha256)


def scan_table(db: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        resp = db.scan(**kwargs)
        items.extend({k: _de.deserialize(v) for k, v in i.items()} for i in resp.get("Items", []))
        if "LastEvaluatedKey" not in resp:
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def delivered_events(logs: Any, log_group: str) -> Counter[str]:
    """Job id -> how many events the bus delivered for it (read from the provisioned log group the
    bus's catch-all rule targets, devstack/provision.py)."""
    seen: Counter[str] = Counter()
    kwargs: dict[str, Any] = {"logGroupName": log_group}
    while True:
        page = logs.filter_log_events(**kwargs)
        for e in page.get("events", []):
            job_id = (json.loads(e["message"]).get("detail") or {}).get("job_id")
            if job_id:
                seen[str(job_id)] += 1
        if not page.get("nextToken"):
            return seen
        kwargs["nextToken"] = page["nextToken"]


def audit(
    db: Any,
    table: str,
    s3: Any | None = None,
    bucket: str | None = None,
    events: Mapping[str, int] | None = None,
    *,
    reconciled: bool = True,
    priced: bool = True,
) -> Audit:
    """Every invariant over every item. ``s3``/``bucket`` also verify the bucket; ``events`` (job
    id -> events delivered) also checks that every terminal job's event reached the bus."""
    contents = Bucket.read(s3, bucket) if s3 is not None and bucket else None
    return audit_items(scan_table(db, table), contents, events, reconciled=reconciled, priced=priced)


def price_of(model: str, raw_input: Any) -> int | None:
    """What the registry charges for this input (None when it cannot price it)."""
    price, _ = _priced(model, raw_input)
    return price


def _priced(model: str, raw_input: Any) -> tuple[int | None, str]:
    """The price, or None and why not (an unknown model or an input it refuses)."""
    from videogen.domain.registry import Registry

    try:
        spec = Registry().for_job(model)
        return spec.credits(spec.parse_input(raw_input)), ""
    except Exception as refused:
        return None, f"{type(refused).__name__}: {getattr(refused, 'errors', refused)!s:.300}"


def job_input(job: Mapping[str, Any]) -> Any:
    """A job item's input (the adapter stores it as JSON text, the fakes as a map, whose numbers a
    scan made Decimals: back to JSON numbers, as the registry validates them)."""
    if "input_json" in job:
        return json.loads(job["input_json"])
    return json.loads(json.dumps(job.get("input"), default=_json_number))


def _json_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(type(value).__name__)


def audit_items(
    items: list[dict[str, Any]],
    bucket: Bucket | None = None,
    events: Mapping[str, int] | None = None,
    *,
    reconciled: bool = True,
    priced: bool = True,
) -> Audit:
    """The audit over a table's items (plain values, as :func:`scan_table` returns them).
    ``reconciled``: the reconciler has run since the jobs ended, so none may still owe its event
    (False: a harness without a reconciler; a job that says its event is out must still have it
    on the bus). ``priced``: jobs were made by the submit path, so each costs the registry's price
    of its input (False: a store-level test writing jobs of any cost straight into the store)."""
    result = Audit()
    balances: dict[str, dict[str, Any]] = {}
    ledger: dict[str, list[dict[str, Any]]] = defaultdict(list)
    jobs: dict[str, dict[str, Any]] = {}
    purchases: dict[str, dict[str, Any]] = {}
    for item in items:
        pk, sk = str(item["pk"]), str(item["sk"])
        if sk == "BALANCE":
            balances[pk.removeprefix("USER#")] = item
        elif sk.startswith("LEDGER#"):
            ledger[pk.removeprefix("USER#")].append(item)
        elif sk == "JOB":
            jobs[str(item["id"])] = item
        elif sk == "PURCHASE":
            purchases[str(item["id"])] = item

    charges: dict[str, list[int]] = defaultdict(list)
    refunds: dict[str, list[int]] = defaultdict(list)
    moves: dict[str, list[Move]] = defaultdict(list)
    users = set(balances) | set(ledger)
    result.users = len(users)
    for user in sorted(users):
        total = 0
        for e in ledger.get(user, []):
            amount, kind = int(e["amount"]), str(e["type"])
            if kind == "grant":
                total += amount
            elif kind == "charge":
                total -= amount
                charges[str(e["job_id"])].append(amount)
            elif kind == "refund":
                total += amount
                refunds[str(e["job_id"])].append(amount)
            elif kind in ("purchase", "clawback"):
                total += amount if kind == "purchase" else -amount
                seq = e.get("purchase_seq")
                moves[str(e.get("purchase_id"))].append(Move(user, kind, amount, None if seq is None else int(seq)))
            else:
                result.fail("unknown ledger entry types", f"user {user}: ledger entry {e['sk']} of type {kind!r}")
        balance = int(balances.get(user, {}).get("balance", 0))
        if balance != total:
            result.fail("ledger-vs-balance mismatches", f"user {user}: balance {balance} != ledger sum {total}")
        clawed = any(str(e["type"]) == "clawback" for e in ledger.get(user, []))
        if balance < 0 and not clawed:  # below zero only after a clawback of credits already spent
            result.fail("negative balances", f"user {user}: negative balance {balance}")
        active = sum(1 for j in jobs.values() if j["user_id"] == user and j["status"] not in TERMINAL)
        counter = int(balances.get(user, {}).get("active_jobs", 0))
        if counter != active:
            result.fail(
                "active-counter mismatches", f"user {user}: active_jobs counter {counter} != {active} unfinished jobs"
            )

    _check_purchases(result, purchases, moves)
    result.charges = sum(len(v) for v in charges.values())
    result.refunds = sum(len(v) for v in refunds.values())
    owned_keys: set[str] = set()
    unfinished_prefixes = tuple(_video_prefix(j) for j, job in jobs.items() if job["status"] not in TERMINAL)
    for job_id, job in sorted(jobs.items()):
        status = str(job["status"])
        result.jobs[status] += 1
        _check_money(result, job_id, job, charges.get(job_id, []), refunds.get(job_id, []), priced)
        if status in TERMINAL and events is not None:
            if job.get("event_pending"):  # without a reconciler running it is owed, not yet lost
                if reconciled:
                    result.fail("terminal jobs still owing their event", f"job {job_id}: {status}, event still pending")
            elif not events.get(job_id):
                result.fail("terminal jobs whose event never reached the bus", f"job {job_id}: {status}, no event")
        key = (job.get("video") or {}).get("s3_key")
        if status == "completed" and bucket is not None:
            owned_keys.update({str(key), poster_key(str(key))})  # its poster, once the media function made it
            _check_video(result, job_id, job, bucket)
    for job_id in sorted((set(charges) | set(refunds)) - set(jobs)):
        result.fail("charges or refunds for a job that does not exist", f"ledger entries for a missing job {job_id}")
    if bucket is not None:
        for key in bucket.keys:
            if key.startswith(STAGING_PREFIX):
                result.fail("staging objects or unfinished uploads left in S3", f"staging object left: {key}")
            elif key.startswith(INPUT_PREFIXES):
                continue
            elif key not in owned_keys and not key.startswith(unfinished_prefixes):  # the next actor reuses those
                result.fail("S3 objects no completed job owns", f"object no completed job owns: {key}")
        for key in bucket.uploads:
            result.fail("staging objects or unfinished uploads left in S3", f"unfinished multipart upload: {key}")
    return result


def _video_prefix(job_id: str) -> str:
    from videogen.domain.models import Job
    from videogen.services.completion import video_prefix

    only_the_id: dict[str, Any] = {"id": job_id}  # all the prefix is made of
    return video_prefix(Job.model_construct(**only_the_id))


class Move(NamedTuple):
    """A ``purchase`` or ``clawback`` ledger entry of one purchase."""

    user: str
    kind: str
    amount: int
    seq: int | None  # purchase_seq: the purchase record's revision its transaction wrote


def _check_purchases(
    result: Audit, purchases: Mapping[str, Mapping[str, Any]], moves: Mapping[str, list[Move]]
) -> None:
    """Each purchase's ``purchase`` and ``clawback`` entries: under its user, of its credits, in the
    order of their ``purchase_seq`` (each its own) alternating purchase, clawback, ... from a
    ``purchase``: one more ``purchase`` than ``clawback`` while granted, as many once revoked (none
    while no user holds it)."""
    for pid, entries in sorted(moves.items()):
        purchase = purchases.get(pid)
        if purchase is None or any(m.user != purchase.get("user_id") for m in entries):
            result.fail(
                "purchase entries for a purchase that does not exist or another user",
                f"ledger entries of purchase {pid}, which is not theirs or does not exist",
            )
    for pid, purchase in sorted(purchases.items()):
        entries = moves.get(pid, [])
        bought = sum(1 for m in entries if m.kind == "purchase")
        taken = len(entries) - bought
        expected = 1 if purchase.get("status") == "granted" else 0
        if (purchase.get("user_id") is None and entries) or bought - taken != expected:
            result.fail(
                "purchase entries out of step with the purchase's status",
                f"purchase {pid}: {purchase.get('status')} with {bought} purchase and {taken} clawback entries",
            )
        for m in entries:
            if m.amount != int(purchase.get("credits", -1)):
                result.fail(
                    "purchase or clawback amount differs from the purchase's credits",
                    f"purchase {pid}: {m.kind} of {m.amount}, the purchase is {purchase.get('credits')} credits",
                )
        seqs = [m.seq for m in entries]
        if None in seqs or len(set(seqs)) != len(seqs):
            result.fail(
                "purchase entries without their order (purchase_seq missing or repeated)",
                f"purchase {pid}: entries with purchase_seq {seqs}",
            )
            continue
        kinds = [m.kind for m in sorted(entries, key=lambda m: m.seq or 0)]
        if kinds != [("purchase", "clawback")[i % 2] for i in range(len(kinds))]:
            result.fail(
                "purchase entries not alternating purchase, clawback, ... from a purchase",
                f"purchase {pid}: entries in purchase_seq order {kinds}",
            )


def _check_money(
    result: Audit, job_id: str, job: dict[str, Any], charged: list[int], refunded: list[int], priced: bool
) -> None:
    status = str(job["status"])
    cost = int(job.get("credits_charged", -1))
    if not charged:
        result.fail("missing charges", f"job {job_id}: no charge")
    if len(charged) > 1:
        result.fail("double charges", f"job {job_id}: charged {len(charged)} times")
    if status in ("failed", "canceled") and not refunded:
        result.fail("failed/canceled without refund", f"job {job_id}: {status} but not refunded")
    if len(refunded) > 1:
        result.fail("double refunds", f"job {job_id}: refunded {len(refunded)} times")
    if status not in ("failed", "canceled") and refunded:
        result.fail("completed but refunded", f"job {job_id}: {status} but refunded")
    for amount in charged:
        if amount != cost:
            result.fail(
                "charge amount differs from the job's credits_charged", f"job {job_id}: charged {amount}, cost {cost}"
            )
    price, why = _priced(str(job.get("model")), job_input(job)) if priced else (cost, "")
    if price != cost:
        result.fail(
            "credits_charged differs from the price of the input",
            f"job {job_id}: credits_charged {cost}, the registry prices its input at {price}"
            + (f" ({why}; input {json.dumps(job_input(job))[:300]})" if price is None else ""),
        )
    for amount in refunded:
        if charged and amount != charged[0]:
            result.fail(
                "refund amount differs from its charge", f"job {job_id}: refunded {amount}, charged {charged[0]}"
            )


def _check_video(result: Audit, job_id: str, job: dict[str, Any], bucket: Bucket) -> None:
    video = job.get("video") or {}
    key, expected = str(video.get("s3_key")), video.get("sha256")
    actual = bucket.sha256(key) if key in bucket.keys else None
    if actual is None:
        result.fail("completed without S3 object", f"job {job_id}: completed but {key} is missing")
    elif actual != expected:
        result.fail("checksum mismatches", f"job {job_id}: stored video sha256 differs from the recorded one")


def summary(a: Audit) -> str:
    return json.dumps(
        {"jobs": dict(a.jobs), "charges": a.charges, "refunds": a.refunds, "problems": a.problems[:20]}, indent=1
    )
