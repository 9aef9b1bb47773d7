"""An in-memory job/credit store with the DynamoDB adapter's semantics.

What it keeps of ``adapters/dynamo.py``, so a service cannot tell them apart:

* every status change is conditioned on the domain's transition table
  (``ALLOWED_FROM``) and a lost condition raises :class:`TransitionRejected`;
* submit is ONE step: charge + job + idempotency record + ledger entry, all or nothing,
  with the same outcomes (``IdempotencyKeyTaken``, ``BalanceChanged``);
* a refund is ONE step with the job's terminal transition, so it happens at most once;
* the per-user active-job counter, the ``event_pending`` outbox and the sparse
  "active" view (not terminal, or terminal with its event unpublished).

Reads and writes hand out copies, as a real store does: a service holding a job it
read never sees a later write unless it reads again.

For tests, :meth:`FakeStore.before` runs a callback right before a named operation
(another actor winning a race between a service's read and its write),
:meth:`FakeStore.fail` makes an operation raise (``StoreBusy`` ...) without changing
anything, and :meth:`FakeStore.conflict` makes its next DynamoDB calls lose to a concurrent
transaction (TransactionConflict): retried as the adapter retries them (the same
:func:`videogen.retry.retry_conflicts`, ``CONFLICT_ATTEMPTS`` tries, each pause recorded in
``pauses``), then ``StoreBusy`` — so a service sees exactly what the adapter would hand it.
:meth:`FakeStore.audit` runs the project's invariant audit on the contents.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from devstack.invariants import Audit, Bucket, audit_items, scan_table
from videogen.domain.errors import (
    BalanceChanged,
    GrantConflict,
    IdempotencyKeyTaken,
    InvalidCursor,
    StoreBusy,
    TransitionRejected,
)
from videogen.domain.limits import Usage
from videogen.domain.models import (
    ACTIVE,
    ALLOWED_FROM,
    CANCEL_INTENT_FROM,
    CANCEL_INTENT_REPLACES,
    Balance,
    CancelIntent,
    FalRequest,
    IdempotencyRecord,
    Job,
    JobError,
    JobStatus,
    LedgerEntry,
    LedgerType,
    Progress,
    StoredVideo,
    VideoMedia,
    new_id,
    progress_allowed_from,
    rfc3339,
)
from videogen.domain.uploads import Upload, UploadError, UploadStatus
from videogen.retry import retry_conflicts

# The operations the adapter runs as a DynamoDB write or TransactGetItems: those a concurrent
# transaction can make conflict (plain reads never do).
CONFLICTING = frozenset(
    {
        "read_for_submit",
        "create_job",
        "grant",
        "record_submit_attempt",
        "record_submit_refused",
        "request_cancel",
        "mark_submitted",
        "update_progress",
        "touch",
        "complete",
        "finish_with_refund",
        "clear_event_pending",
        "record_media",
        "create_upload",
        "finish_upload",
    }
)


class _Conflict(Exception):
    """One DynamoDB call lost to a concurrent transaction (nothing written)."""


def _snapshot(account: _Account) -> Balance:
    return Balance(account.balance, account.active_jobs, account.rl_tat_ms, account.spend_day, account.spend_credits)


def _usage_holds(account: _Account, seen: Balance, usage: Usage) -> bool:
    """The adapter's condition on the limit state: still the one the decision read (or, decided
    without a read, the user still idle at ``usage.idle_at_ms``)."""
    if usage.idle_at_ms is not None:
        return account.rl_tat_ms is None or account.rl_tat_ms <= usage.idle_at_ms
    rate_same = account.rl_tat_ms == seen.rl_tat_ms
    spend_same = usage.spend_day is None or (account.spend_day, account.spend_credits) == (
        seen.spend_day,
        seen.spend_credits if seen.spend_day is not None else account.spend_credits,
    )
    return rate_same and spend_same


def _write_usage(account: _Account, usage: Usage) -> None:
    account.rl_tat_ms = usage.rl_tat_ms
    if usage.spend_day is not None:
        account.spend_day, account.spend_credits = usage.spend_day, usage.spend_credits


@dataclass
class _Account:
    balance: int = 0
    active_jobs: int = 0
    rl_tat_ms: int | None = None
    spend_day: str | None = None
    spend_credits: int = 0
    ledger: list[LedgerEntry] = field(default_factory=list)
    grants: dict[str, int] = field(default_factory=dict)
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)


class FakeStore:
    """Implements :class:`videogen.ports.JobStore` in memory."""

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = defaultdict(_Account)
        self._jobs: dict[str, Job] = {}
        self._uploads: dict[tuple[str, str], Upload] = {}  # (owner, upload id): found only under its owner
        self._by_request: dict[str, str] = {}
        self._before: dict[str, list[Callable[[], None]]] = defaultdict(list)
        self._failures: dict[str, list[BaseException]] = defaultdict(list)
        self._conflicts: dict[str, int] = defaultdict(int)
        self.pauses: list[int] = []  # the backoff attempts of every conflict retried
        self.calls: list[str] = []  # every operation, in order (reads included)
        self.idempotency_expiry: dict[tuple[str, str], int] = {}  # (user, key) -> epoch s, as the adapter's TTL
        self.clock: Callable[[], float] = time.time  # what updated_at / completed_at say
        self.purchases: dict[tuple[str, str], dict[str, Any]] = {}  # (store, tx id) -> item (tests/fakes/purchases.py)
        self.purchase_seqs: dict[str, int] = {}  # ledger entry id -> the purchase_seq it was written with

    def _now(self) -> str:
        return rfc3339(datetime.fromtimestamp(self.clock(), UTC))

    # --- test controls ------------------------------------------------------------------------

    def before(self, operation: str, action: Callable[[], None]) -> None:
        """Run ``action`` once, right before the next call of ``operation`` does anything."""
        self._before[operation].append(action)

    def fail(self, operation: str, error: BaseException, times: int = 1) -> None:
        """The next ``times`` calls of ``operation`` raise ``error`` and change nothing."""
        self._failures[operation].extend([error] * times)

    def conflict(self, operation: str, times: int = 1) -> None:
        """The next ``times`` DynamoDB calls behind ``operation`` lose to a concurrent transaction
        and change nothing; fewer than ``CONFLICT_ATTEMPTS`` in a row are absorbed by the retries."""
        if operation not in CONFLICTING:
            raise ValueError(f"{operation} is no write and no transaction: it cannot conflict")
        self._conflicts[operation] += times

    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        if self._before[operation]:
            self._before[operation].pop(0)()
        if self._failures[operation]:
            raise self._failures[operation].pop(0)
        if self._conflicts[operation]:
            retry_conflicts(
                lambda: self._attempt(operation),
                conflicted=lambda exc: isinstance(exc, _Conflict),
                exhausted=lambda _: StoreBusy(f"{operation}: kept conflicting with concurrent transactions"),
                pause=self.pauses.append,
            )

    def _attempt(self, operation: str) -> None:
        if self._conflicts[operation]:
            self._conflicts[operation] -= 1
            raise _Conflict(operation)

    def put_job(self, job: Job) -> Job:
        """Seed a job as the real paths would have left it: its user granted what it costs, charged
        once, its active slot held while it is unfinished, refunded once if it failed or was canceled."""
        account = self._accounts[job.user_id]
        cost = job.credits_charged
        account.ledger.append(_entry(LedgerType.GRANT, cost, None))
        account.ledger.append(_entry(LedgerType.CHARGE, cost, job.id))
        if job.status in (JobStatus.FAILED, JobStatus.CANCELED):
            account.balance += cost
            account.ledger.append(_entry(LedgerType.REFUND, cost, job.id))
        if not job.is_terminal:
            account.active_jobs += 1
        self._save(job)
        return job.model_copy(deep=True)

    def set_job(self, job_id: str, **fields: Any) -> Job:
        """Overwrite fields of a stored job, bypassing every rule (a test's 'given')."""
        job = self._jobs[job_id].model_copy(update=fields, deep=True)
        self._save(job)
        return job.model_copy(deep=True)

    # --- what a test reads back -----------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return self._jobs[job_id].model_copy(deep=True)

    def ledger(self, user_id: str) -> list[LedgerEntry]:
        return [e.model_copy() for e in self._accounts[user_id].ledger]

    def refunds(self, job_id: str) -> int:
        return sum(
            1 for a in self._accounts.values() for e in a.ledger if e.type == LedgerType.REFUND and e.job_id == job_id
        )

    def audit(self, videos: Any = None, *, priced: bool = True) -> Audit:
        """The project's invariant audit (devstack/invariants.py) over this store's contents;
        with ``videos`` (a :class:`tests.fakes.media.FakeVideoStore`) it also re-hashes stored videos;
        ``priced=False`` for jobs seeded at any cost (not by the submit path)."""
        bucket = None if videos is None else Bucket.of({k: data for k, (data, _) in videos.objects.items()})
        return audit_items(scan_table(_ScanView(self), "fake"), bucket, priced=priced)

    def items(self) -> list[dict[str, Any]]:
        """The store's contents in the DynamoDB adapter's item layout (plain values)."""
        out: list[dict[str, Any]] = []
        for user, account in self._accounts.items():
            pk = f"USER#{user}"
            out.append({"pk": pk, "sk": "BALANCE", "balance": account.balance, "active_jobs": account.active_jobs})
            out.extend(
                {"pk": pk, "sk": f"LEDGER#{e.id}", **e.model_dump(mode="json"), **self._seq_of(e.id)}
                for e in account.ledger
            )
        for job in self._jobs.values():
            out.append({"pk": f"JOB#{job.id}", "sk": "JOB", **job.model_dump(mode="json", exclude_none=True)})
        out.extend(dict(item) for item in self.purchases.values())
        return out

    def _seq_of(self, entry_id: str) -> dict[str, int]:
        seq = self.purchase_seqs.get(entry_id)
        return {} if seq is None else {"purchase_seq": seq}

    # --- users and credits --------------------------------------------------------------------

    def get_balance(self, user_id: str) -> Balance:
        self._enter("get_balance")
        return _snapshot(self._accounts[user_id])

    def grant(self, user_id: str, amount: int, grant_id: str) -> bool:
        self._enter("grant")
        account = self._accounts[user_id]
        if grant_id in account.grants:
            if account.grants[grant_id] != amount:
                raise GrantConflict(f"grant {grant_id!r} was applied with another amount")
            return False
        account.grants[grant_id] = amount
        account.balance += amount
        account.ledger.append(_entry(LedgerType.GRANT, amount, None, self._now()))
        return True

    def list_ledger(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[LedgerEntry], str | None]:
        self._enter("list_ledger")
        entries = sorted(self._accounts[user_id].ledger, key=lambda e: e.id, reverse=True)
        return _page(entries, limit, cursor, lambda e: e.id)

    def credits_snapshot(
        self, user_id: str, limit: int, cursor: str | None
    ) -> tuple[Balance, list[LedgerEntry], str | None]:
        """One moment by construction: nothing runs between the two reads of an in-memory store."""
        self._enter("credits_snapshot")
        entries, next_cursor = self.list_ledger(user_id, limit, cursor)
        return self.get_balance(user_id), entries, next_cursor

    def ledger_totals(self, user_id: str) -> dict[str, int]:
        self._enter("ledger_totals")
        totals = {t.value: 0 for t in LedgerType}
        for e in self._accounts[user_id].ledger:
            totals[e.type.value] += e.amount
        return totals

    # --- idempotency + submit -------------------------------------------------------------------

    def get_idempotency(self, user_id: str, key: str) -> IdempotencyRecord | None:
        self._enter("get_idempotency")
        return self._accounts[user_id].idempotency.get(key)

    def read_for_submit(
        self, user_id: str, key: str, upload_ids: Sequence[str] = ()
    ) -> tuple[Balance, IdempotencyRecord | None, dict[str, Upload]]:
        self._enter("read_for_submit")
        account = self._accounts[user_id]
        found = {u: self._uploads[(user_id, u)].model_copy() for u in upload_ids if (user_id, u) in self._uploads}
        return _snapshot(account), account.idempotency.get(key), found

    # --- uploads (UploadStore) ----------------------------------------------------------------

    def create_upload(self, upload: Upload, seen: Balance, usage: Usage) -> None:
        """The record and the rate state: both or neither; a refused rate state comes back with
        the state as stored, as the adapter's ReturnValuesOnConditionCheckFailure returns it."""
        self._enter("create_upload")
        if (upload.user_id, upload.id) in self._uploads:
            return
        account = self._accounts[upload.user_id]
        if not _usage_holds(account, seen, usage):
            raise BalanceChanged(_snapshot(account))
        _write_usage(account, usage)
        self._uploads[(upload.user_id, upload.id)] = upload.model_copy()

    def get_upload(self, user_id: str, upload_id: str) -> Upload | None:
        self._enter("get_upload")
        found = self._uploads.get((user_id, upload_id))
        return found.model_copy() if found else None

    def finish_upload(
        self,
        user_id: str,
        upload_id: str,
        status: UploadStatus,
        *,
        width: int | None = None,
        height: int | None = None,
        duration_s: float | None = None,
        error: UploadError | None = None,
        input_key: str | None = None,
    ) -> bool:
        self._enter("finish_upload")
        if status is UploadStatus.PENDING:
            raise ValueError(status)
        found = self._uploads.get((user_id, upload_id))
        if found is None or found.status is not UploadStatus.PENDING:
            return False
        self._uploads[(user_id, upload_id)] = found.model_copy(
            update={
                "status": status,
                "width": width,
                "height": height,
                "duration_s": duration_s,
                "error": error,
                "input_key": input_key,
            }
        )
        return True

    def create_job(
        self,
        job: Job,
        *,
        idempotency_key: str,
        fingerprint: str,
        answer: dict[str, Any],
        seen: Balance,
        usage: Usage,
        max_active: int,
        idem_ttl_s: int,
    ) -> None:
        """Charge, job, idempotency record, ledger entry and the limit state: all of them or none."""
        self._enter("create_job")
        account = self._accounts[job.user_id]
        if idempotency_key in account.idempotency:
            raise IdempotencyKeyTaken(account.idempotency[idempotency_key])
        cost = job.credits_charged
        if (
            account.balance != seen.balance
            or account.balance < cost
            or account.active_jobs >= max_active
            or not _usage_holds(account, seen, usage)
        ):
            raise BalanceChanged()
        _write_usage(account, usage)
        account.balance -= cost
        account.active_jobs += 1
        account.idempotency[idempotency_key] = IdempotencyRecord(fingerprint, job.id, 202, answer)
        self.idempotency_expiry[(job.user_id, idempotency_key)] = int(time.time()) + idem_ttl_s
        account.ledger.append(_entry(LedgerType.CHARGE, cost, job.id, job.created_at))
        self._save(job)

    # --- jobs -----------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job | None:
        self._enter("get_job")
        job = self._jobs.get(job_id)
        return job.model_copy(deep=True) if job else None

    def find_by_request_id(self, request_id: str) -> Job | None:
        self._enter("find_by_request_id")
        job_id = self._by_request.get(request_id)
        return self._jobs[job_id].model_copy(deep=True) if job_id else None

    def list_jobs(
        self, user_id: str, status: JobStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Job], str | None]:
        self._enter("list_jobs")
        jobs = sorted(
            (j for j in self._jobs.values() if j.user_id == user_id and (status is None or j.status == status)),
            key=lambda j: j.id,
            reverse=True,
        )
        page, next_cursor = _page(jobs, limit, cursor, lambda j: j.id)
        return [j.model_copy(deep=True) for j in page], next_cursor

    def job_cursor(self, job: Job, status: JobStatus | None) -> str:
        return job.id

    # --- job transitions (each conditional, like the adapter's) ----------------------------------

    def _update(self, job_id: str, allowed_from: Iterable[JobStatus], **fields: Any) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.status not in set(allowed_from):
            raise TransitionRejected(job_id)
        updated = job.model_copy(update={**fields, "updated_at": self._now()}, deep=True)
        self._save(updated)
        return updated.model_copy(deep=True)

    def record_submit_attempt(self, job_id: str) -> Job:
        self._enter("record_submit_attempt")
        job = self._jobs.get(job_id)
        if job is None or job.fal is not None:
            raise TransitionRejected(job_id)
        return self._update(job_id, ALLOWED_FROM[JobStatus.SUBMITTED], submit_attempts=job.submit_attempts + 1)

    def record_submit_refused(self, job_id: str) -> Job:
        self._enter("record_submit_refused")
        job = self._jobs.get(job_id)
        if job is None or job.fal is not None or job.submit_attempts <= 0:
            raise TransitionRejected(job_id)
        return self._update(job_id, ALLOWED_FROM[JobStatus.SUBMITTED], submit_attempts=job.submit_attempts - 1)

    def request_cancel(self, job_id: str, intent: CancelIntent) -> Job:
        self._enter("request_cancel")
        job = self._jobs.get(job_id)
        if job is None or job.cancel_requested not in {None, intent, *CANCEL_INTENT_REPLACES[intent]}:
            raise TransitionRejected(job_id)
        return self._update(job_id, CANCEL_INTENT_FROM[intent], cancel_requested=intent)

    def mark_submitted(self, job_id: str, request: FalRequest, progress: Progress) -> Job:
        self._enter("mark_submitted")
        return self._update(
            job_id, ALLOWED_FROM[JobStatus.SUBMITTED], status=JobStatus.SUBMITTED, fal=request, progress=progress
        )

    def update_progress(self, job_id: str, status: JobStatus, progress: Progress) -> Job:
        self._enter("update_progress")
        return self._update(job_id, progress_allowed_from(status), status=status, progress=progress)

    def touch(self, job_id: str) -> None:
        try:
            self._enter("touch")
        except StoreBusy:  # best effort, as the adapter's
            return
        job = self._jobs.get(job_id)
        if job is not None and job.status in ACTIVE:
            self._update(job_id, ACTIVE)

    def _terminal(self, job: Job, status: JobStatus, *, unsubmitted: bool = False, **fields: Any) -> Job:
        current = self._jobs.get(job.id)
        if current is None or current.status not in ALLOWED_FROM[status] or (unsubmitted and current.fal is not None):
            raise TransitionRejected(job.id)
        now = self._now()
        return current.model_copy(
            update={"status": status, "completed_at": now, "updated_at": now, "event_pending": True, **fields},
            deep=True,
        )

    def complete(self, job: Job, video: StoredVideo) -> Job:
        """Active → completed with the video, the user's slot freed: one step."""
        self._enter("complete")
        done = self._terminal(job, JobStatus.COMPLETED, video=video, progress=Progress(message="completed"))
        self._accounts[done.user_id].active_jobs -= 1
        self._save(done)
        return done.model_copy(deep=True)

    def finish_with_refund(
        self, job: Job, status: JobStatus, error: JobError | None, *, unsubmitted: bool = False
    ) -> Job:
        """Active → failed/canceled, credits back, ledger refund, slot freed: one step."""
        self._enter("finish_with_refund")
        if status not in (JobStatus.FAILED, JobStatus.CANCELED):
            raise ValueError(status)
        fields: dict[str, Any] = {"error": error} if error is not None else {}
        done = self._terminal(job, status, unsubmitted=unsubmitted, **fields)
        account = self._accounts[done.user_id]
        account.balance += done.credits_charged  # the stored charge, as the adapter's transaction uses the job's
        account.active_jobs -= 1
        account.ledger.append(_entry(LedgerType.REFUND, done.credits_charged, done.id, self._now()))
        self._save(done)
        return done.model_copy(deep=True)

    def clear_event_pending(self, job_id: str) -> None:
        self._enter("clear_event_pending")
        job = self._jobs.get(job_id)
        if job is not None and job.event_pending:
            self._save(job.model_copy(update={"event_pending": False}))

    def record_media(self, job_id: str, video_key: str, media: VideoMedia) -> Job:
        """``video.media`` once, on a completed job still pointing to ``video_key``; nothing else moves."""
        self._enter("record_media")
        job = self._jobs.get(job_id)
        if (
            job is None
            or job.status != JobStatus.COMPLETED
            or job.video is None
            or job.video.s3_key != video_key
            or job.video.media is not None
        ):
            raise TransitionRejected(job_id)
        done = job.model_copy(update={"video": job.video.model_copy(update={"media": media})}, deep=True)
        self._save(done)
        return done.model_copy(deep=True)

    def find_stale_active(self, updated_before: str, limit: int) -> list[Job]:
        self._enter("find_stale_active")
        stale = sorted(
            (
                j
                for j in self._jobs.values()
                if (not j.is_terminal or j.event_pending) and j.updated_at < updated_before
            ),
            key=lambda j: j.updated_at,
        )
        return [j.model_copy(deep=True) for j in stale[:limit]]

    def _save(self, job: Job) -> None:
        self._jobs[job.id] = job.model_copy(deep=True)
        if job.fal is not None:
            self._by_request[job.fal.request_id] = job.id


def _entry(
    kind: LedgerType, amount: int, job_id: str | None, now: str | None = None, purchase_id: str | None = None
) -> LedgerEntry:
    return LedgerEntry(
        id=new_id("le"), type=kind, amount=amount, job_id=job_id, purchase_id=purchase_id, created_at=now or rfc3339()
    )


def _page(items: list[Any], limit: int, cursor: str | None, key: Callable[[Any], str]) -> tuple[list[Any], str | None]:
    """Newest-first pages; the cursor is the last key of the previous page."""
    if cursor is not None:
        keys = [key(i) for i in items]
        if cursor not in keys:
            raise InvalidCursor("cursor is not one this API returned")
        items = items[keys.index(cursor) + 1 :]
    page = items[:limit]
    return page, (key(page[-1]) if len(items) > limit else None)


class _ScanView:
    """The DynamoDB ``scan`` the invariant audit reads, answered from a :class:`FakeStore`."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def scan(self, **_: Any) -> dict[str, Any]:
        from boto3.dynamodb.types import TypeSerializer

        ser = TypeSerializer()
        items = json.loads(json.dumps(self._store.items()), parse_float=Decimal)  # DynamoDB has no floats
        return {"Items": [{k: ser.serialize(v) for k, v in item.items()} for item in items]}
