"""DynamoDB adapter: the single table holding balances, ledgers, idempotency records and jobs.

Item layout (one table, ``pk``/``sk``):

=====================  ======================  ==============================================
pk                     sk                      what
=====================  ======================  ==============================================
``USER#<uid>``         ``BALANCE``             balance, active_jobs (the per-user cap counter),
                                               rev (+1 on every write: see credits_snapshot),
                                               the user's limits (domain/limits.py): rl_tat_ms,
                                               spend_day, spend_credits
``USER#<uid>``         ``LEDGER#<entry id>``   one ledger entry (ids are time ordered)
``USER#<uid>``         ``GRANT#<grant id>``    marks a grant as applied (idempotent grants)
``USER#<uid>``         ``IDEM#<key>``          idempotency record: fingerprint + stored answer (TTL)
``PURCHASE#<tx key>``  ``PURCHASE``            a store transaction (``<store>#<transaction id>``):
                                               its user, credits, status (adapters/purchases.py)
``USER#<uid>``         ``UPLOAD#<upload id>``  an upload (pending → ready | rejected; TTL): under its
                                               owner's key, so only the owner ever finds it
``JOB#<job id>``       ``JOB``                 the job; ``gsi1*`` lists it per user, ``gsi1pk`` +
                                               ``status_sk`` per user and status, ``active_*``
                                               (sparse) finds it while it is not terminal
=====================  ======================  ==============================================

Every state change is a conditional write. Multi-item changes (submit, refund,
completion, grant) are one ``TransactWriteItems`` each, so they happen entirely
or not at all. ``ConditionalCheckFailed`` becomes a domain outcome here; no
caller sees a botocore error.

Contention: DynamoDB rejects an item write that meets an ongoing transaction on the item
(``TransactionConflictException``) and cancels a transaction — TransactGetItems included —
that meets a concurrent write (``TransactionCanceledException``, reason ``TransactionConflict``).
Neither changed anything and botocore retries neither, so every write and TransactGetItems
here goes through :meth:`DynamoStore._call` (plain reads never conflict): tried again with
jittered backoff (``retry.CONFLICT_ATTEMPTS`` tries), then :class:`StoreBusy` (503
``service_unavailable``, Retry-After). A failed condition is never retried there: it is an answer.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from videogen.adapters.ddb import (
    DynamoTable,
    cancel_reasons,
    error_is,
    from_item,
    numbers,
    to_item,
    to_values,
)
from videogen.domain.errors import (
    BalanceChanged,
    ConcurrentUpdate,
    GrantConflict,
    IdempotencyKeyInUse,
    IdempotencyKeyTaken,
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

ACTIVE_SHARDS = 8  # the sparse "Active" index is spread over this many partitions


def _job_from(data: dict[str, Any]) -> Job:
    """A job from its item's plain values (the input is stored as one JSON string)."""
    data["input"] = json.loads(data.pop("input_json", "{}"))
    return Job.model_validate(data)


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def job_key(job_id: str) -> dict[str, Any]:
    return to_item({"pk": f"JOB#{job_id}", "sk": "JOB"})


def balance_key(user_id: str) -> dict[str, Any]:
    return to_item({"pk": user_pk(user_id), "sk": "BALANCE"})


def idem_key(user_id: str, key: str) -> dict[str, Any]:
    return to_item({"pk": user_pk(user_id), "sk": f"IDEM#{key}"})


def upload_key(user_id: str, upload_id: str) -> dict[str, Any]:
    return to_item({"pk": user_pk(user_id), "sk": f"UPLOAD#{upload_id}"})


def ledger_put(
    table: str,
    user_id: str,
    entry_id: str,
    kind: LedgerType,
    amount: int,
    now: str,
    *,
    job_id: str | None = None,
    purchase_id: str | None = None,
    purchase_seq: int | None = None,
) -> dict[str, Any]:
    """The transaction item writing one ledger entry (every entry is written beside a write of the
    balance item that bumps its ``rev``: see credits_snapshot). A purchase's entries carry
    ``purchase_seq``: the purchase record's revision that the same transaction writes (conditioned
    on the revision before it), so they order reliably where ids of one millisecond may not."""
    return {
        "Put": {
            "TableName": table,
            "Item": to_item(
                {
                    "pk": user_pk(user_id),
                    "sk": f"LEDGER#{entry_id}",
                    "id": entry_id,
                    "type": kind.value,
                    "amount": amount,
                    "job_id": job_id,
                    "purchase_id": purchase_id,
                    "purchase_seq": purchase_seq,
                    "created_at": now,
                }
            ),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def balance_add(table: str, user_id: str, amount: int, now: str) -> dict[str, Any]:
    """The transaction item adding ``amount`` (may be negative) to a balance, unconditionally."""
    return {
        "Update": {
            "TableName": table,
            "Key": balance_key(user_id),
            "UpdateExpression": "ADD balance :a, rev :one SET updated_at = :now",
            "ExpressionAttributeValues": to_values({":a": amount, ":now": now, ":one": 1}),
        }
    }


def _upload_from(item: Mapping[str, Any]) -> Upload:
    return Upload.model_validate(from_item(item))


def status_fields(status: JobStatus, job_id: str) -> dict[str, str]:
    """The job's status and its key in the ByUserStatus index (``<status>#JOB#<id>``): every write
    of ``status`` writes both, so a status filter is an index query that reads only matching jobs."""
    return {"status": status.value, "status_sk": f"{status.value}#JOB#{job_id}"}


def active_shard(job_id: str) -> str:
    return f"ACTIVE#{zlib.crc32(job_id.encode()) % ACTIVE_SHARDS}"


def _balance_from(data: Mapping[str, Any]) -> Balance:
    """The balance item's plain values as the domain sees them (an absent item: all zero)."""
    tat = data.get("rl_tat_ms")
    return Balance(
        balance=int(data.get("balance", 0)),
        active_jobs=int(data.get("active_jobs", 0)),
        rl_tat_ms=None if tat is None else int(tat),
        spend_day=data.get("spend_day"),
        spend_credits=int(data.get("spend_credits", 0)),
    )


def _usage_write(seen: Balance, usage: Usage) -> tuple[list[str], str, dict[str, Any]]:
    """The SET clauses, the condition and the values that write a request's new limit state on
    the balance item only while it still holds the state the decision read (``seen``): two
    requests decided on one snapshot cannot both write (domain/limits.py). A usage decided without a
    read (``usage.idle_at_ms``) holds while the stored rate state is at most that instant."""
    sets = ["rl_tat_ms = :tat"]
    values: dict[str, Any] = {":tat": usage.rl_tat_ms}
    if usage.idle_at_ms is not None:
        conditions = ["(attribute_not_exists(rl_tat_ms) OR rl_tat_ms <= :idle)"]
        values[":idle"] = usage.idle_at_ms
    elif seen.rl_tat_ms is None:
        conditions = ["attribute_not_exists(rl_tat_ms)"]
    else:
        conditions = ["rl_tat_ms = :seen_tat"]
        values[":seen_tat"] = seen.rl_tat_ms
    if usage.spend_day is not None:
        sets += ["spend_day = :day", "spend_credits = :spent"]
        values |= {":day": usage.spend_day, ":spent": usage.spend_credits}
        if seen.spend_day is None:
            conditions.append("attribute_not_exists(spend_day)")
        else:
            conditions.append("spend_day = :seen_day AND spend_credits = :seen_spent")
            values |= {":seen_day": seen.spend_day, ":seen_spent": seen.spend_credits}
    return sets, " AND ".join(conditions), values


def _status_condition(
    allowed: Iterable[JobStatus], *, unsubmitted: bool = False
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``#status IN (...)`` for the states a job write may come from (and, with ``unsubmitted``,
    no fal request stored): the ONE builder of a job write's condition, fed from the domain's
    transition table (ALLOWED_FROM and what derives from it). Returns (expression, names, values)."""
    states = sorted(s.value for s in allowed)
    if not states:
        raise ValueError("a status write must be allowed from at least one state")
    placeholders = [f":from{i}" for i in range(len(states))]
    return (
        "#status IN (" + ", ".join(placeholders) + ")" + (" AND attribute_not_exists(fal)" if unsubmitted else ""),
        {"#status": "status"},
        to_values(dict(zip(placeholders, states, strict=True))),
    )


class DynamoStore(DynamoTable):
    """Implements :class:`videogen.ports.JobStore`: every read and conditional write of the domain
    against one DynamoDB table."""

    # --- users and credits ---------------------------------------------------------------

    def get_balance(self, user_id: str) -> Balance:
        return self._balance(user_id)[0]

    def _balance(self, user_id: str) -> tuple[Balance, int]:
        """The balance item, strongly consistent, and its revision (0 before its first write)."""
        item = self._db.get_item(TableName=self._table, Key=balance_key(user_id), ConsistentRead=True).get("Item")
        data = from_item(item) if item else {}
        return _balance_from(data), int(data.get("rev", 0))

    def credits_snapshot(
        self, user_id: str, limit: int, cursor: str | None, attempts: int = 5
    ) -> tuple[Balance, list[LedgerEntry], str | None]:
        """The balance and a ledger page as of ONE moment: every complete ledger sums to the balance.

        Why a re-read loop: a query cannot join a transaction (TransactGetItems reads items by key
        only), and a running balance on each entry would need every refund and grant to read the
        balance first (they ADD blindly, which is what keeps them free of contention). Instead:
        every ledger entry is written in the same transaction as a write of the balance item, and
        every write of that item bumps ``rev``. So if ``rev`` is the same before and after a
        strongly consistent ledger query, no entry was committed between the two reads: the page
        is exactly the ledger of that balance. A moved ``rev`` retries; a user whose balance keeps
        moving gets ``ConcurrentUpdate`` (429, Retry-After) rather than an answer that does not add up.
        """
        for attempt in range(attempts):
            balance, rev = self._balance(user_id)
            entries, next_cursor = self.list_ledger(user_id, limit, cursor)
            if self._balance(user_id)[1] == rev:
                return balance, entries, next_cursor
            self._pause(attempt)
        raise ConcurrentUpdate("the balance kept changing while it was read; retry")

    def grant(self, user_id: str, amount: int, grant_id: str) -> bool:
        """Add ``amount`` credits once per ``grant_id``. False when the grant was applied before."""
        now = rfc3339()
        entry_id = new_id("le")
        try:
            self._call(
                "transact_write_items",
                f"grant {grant_id}",
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item(
                                {
                                    "pk": user_pk(user_id),
                                    "sk": f"GRANT#{grant_id}",
                                    "amount": amount,
                                    "entry_id": entry_id,
                                    "created_at": now,
                                }
                            ),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    balance_add(self._table, user_id, amount, now),
                    self._ledger_put(user_id, entry_id, LedgerType.GRANT, amount, None, now),
                ],
            )
            return True
        except ClientError as exc:
            if error_is(exc, "TransactionCanceledException") and cancel_reasons(exc)[0] == "ConditionalCheckFailed":
                marker = self._db.get_item(
                    TableName=self._table,
                    Key=to_item({"pk": user_pk(user_id), "sk": f"GRANT#{grant_id}"}),
                    ConsistentRead=True,
                ).get("Item")
                if marker and int(from_item(marker)["amount"]) != amount:
                    raise GrantConflict(f"grant {grant_id!r} was applied with another amount") from None
                return False
            raise

    def _ledger_put(
        self, user_id: str, entry_id: str, kind: LedgerType, amount: int, job_id: str | None, now: str
    ) -> dict[str, Any]:
        return ledger_put(self._table, user_id, entry_id, kind, amount, now, job_id=job_id)

    def list_ledger(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[LedgerEntry], str | None]:
        items, next_cursor = self._page(
            {
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
                "ExpressionAttributeValues": to_values({":pk": user_pk(user_id), ":p": "LEDGER#"}),
                "ConsistentRead": True,  # every entry committed before this read (credits_snapshot)
            },
            limit,
            cursor,
            key_names=("pk", "sk"),
            owner=("pk", user_pk(user_id)),
            valid=lambda k: k["sk"].startswith("LEDGER#") and len(k["sk"]) > len("LEDGER#"),
        )
        return [LedgerEntry.model_validate(i) for i in items], next_cursor

    def ledger_totals(self, user_id: str) -> dict[str, int]:
        """Sums per entry type over the whole ledger (used by invariant checks and admin)."""
        totals = {t.value: 0 for t in LedgerType}
        cursor = None
        while True:
            entries, cursor = self.list_ledger(user_id, 100, cursor)
            for e in entries:
                totals[e.type.value] += e.amount
            if not cursor:
                return totals

    # --- idempotency + submit --------------------------------------------------------------

    def get_idempotency(self, user_id: str, key: str) -> IdempotencyRecord | None:
        item = self._db.get_item(TableName=self._table, Key=idem_key(user_id, key), ConsistentRead=True).get("Item")
        return self._idem_record(item) if item else None

    @staticmethod
    def _idem_record(item: Mapping[str, Any]) -> IdempotencyRecord:
        data = from_item(item)
        return IdempotencyRecord(
            fingerprint=data["fingerprint"],
            job_id=data["job_id"],
            status_code=int(data["status_code"]),
            body=json.loads(data["body"]),
        )

    def read_for_submit(
        self, user_id: str, key: str, upload_ids: Sequence[str] = ()
    ) -> tuple[Balance, IdempotencyRecord | None, dict[str, Upload]]:
        """One consistent snapshot of the user's balance item, the idempotency record and the
        caller's uploads among ``upload_ids`` (read under the caller's key: another user's upload
        is not there), in the same one TransactGetItems.

        A TransactGetItems is cancelled when it meets a concurrent write of any item (the
        user's other submits, refunds, grants): read again, then :class:`StoreBusy`."""
        uploads = sorted(set(upload_ids))
        got = self._call(
            "transact_get_items",
            "read_for_submit",
            TransactItems=[
                {"Get": {"TableName": self._table, "Key": balance_key(user_id)}},
                {"Get": {"TableName": self._table, "Key": idem_key(user_id, key)}},
                *({"Get": {"TableName": self._table, "Key": upload_key(user_id, u)}} for u in uploads),
            ],
        )["Responses"]
        bal_item, idem_item = got[0].get("Item"), got[1].get("Item")
        balance = _balance_from(from_item(bal_item) if bal_item else {})
        found = {u: _upload_from(r["Item"]) for u, r in zip(uploads, got[2:], strict=True) if r.get("Item")}
        return balance, (self._idem_record(idem_item) if idem_item else None), found

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
        """Charge, job, idempotency record and ledger entry as ONE transaction, with the user's
        new limit state (``usage``: rate and daily spend, decided on ``seen``).

        Conditions: the balance is still exactly ``seen.balance`` (so the answer's
        balance is exact) and covers the cost, the active-job count is under the cap,
        the limit state is still the one seen, and the key is unused. Raises
        :class:`IdempotencyKeyTaken` with the stored record, :class:`BalanceChanged` to re-read
        and retry. A transaction cancelled by a conflict wrote nothing and is sent again (a
        concurrent submit with the key has then stored its record: a replay); when the conflicts
        persist, :class:`IdempotencyKeyInUse` if the key's own record was the one in conflict
        (another request with the key is in flight), else :class:`StoreBusy`.
        """
        now = job.created_at
        cost = job.credits_charged
        entry_id = new_id("le")
        usage_sets, usage_condition, usage_values = _usage_write(seen, usage)
        items = [
            {
                "Update": {
                    "TableName": self._table,
                    "Key": balance_key(job.user_id),
                    "UpdateExpression": "SET balance = balance - :cost, updated_at = :now, "
                    + ", ".join(usage_sets)
                    + " ADD active_jobs :one, rev :one",
                    "ConditionExpression": "balance = :seen AND balance >= :cost "
                    "AND (attribute_not_exists(active_jobs) OR active_jobs < :cap) AND " + usage_condition,
                    "ExpressionAttributeValues": to_values(
                        {":cost": cost, ":now": now, ":one": 1, ":seen": seen.balance, ":cap": max_active}
                        | usage_values
                    ),
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(
                        {
                            "pk": user_pk(job.user_id),
                            "sk": f"IDEM#{idempotency_key}",
                            "fingerprint": fingerprint,
                            "job_id": job.id,
                            "status_code": 202,
                            "body": json.dumps(answer, separators=(",", ":")),
                            "created_at": now,
                            "expires_at": int(time.time()) + idem_ttl_s,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._job_item(job),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            self._ledger_put(job.user_id, entry_id, LedgerType.CHARGE, cost, job.id, now),
        ]

        def key_held(exc: ClientError) -> Exception:
            if cancel_reasons(exc)[1:2] == ["TransactionConflict"]:
                return IdempotencyKeyInUse()
            return StoreBusy(f"submit of {job.id}: kept conflicting with concurrent transactions")

        try:
            self._call("transact_write_items", "create_job", exhausted=key_held, TransactItems=items)
        except ClientError as exc:
            if not error_is(exc, "TransactionCanceledException"):
                raise
            reasons = cancel_reasons(exc)
            if reasons[1] == "ConditionalCheckFailed":
                record = self.get_idempotency(job.user_id, idempotency_key)
                if record is None:  # expired between the two calls: treat like in use
                    raise IdempotencyKeyInUse() from None
                raise IdempotencyKeyTaken(record) from None
            if reasons[0] == "ConditionalCheckFailed":
                raise BalanceChanged() from None
            raise

    # --- uploads (UploadStore) ------------------------------------------------------------------

    def create_upload(self, upload: Upload, seen: Balance, usage: Usage) -> None:
        """The pending upload record and the user's new rate state (``usage``, decided on ``seen``
        or, without a read, on the user being idle) as ONE TransactWriteItems: an upload counts
        against the user's request rate in the write that creates it. :class:`BalanceChanged`
        when the rate state is not the one decided on, carrying the state as stored (the refused
        write returns it: ``ReturnValuesOnConditionCheckFailure``), so deciding again costs no
        read. An upload record already there (a retried call whose first write went through)
        changes nothing."""
        values = {"pk": user_pk(upload.user_id), "sk": f"UPLOAD#{upload.id}", **upload.model_dump(exclude_none=True)}
        sets, condition, usage_values = _usage_write(seen, usage)
        items = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(values),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": balance_key(upload.user_id),
                    "UpdateExpression": "SET " + ", ".join(sets) + " ADD rev :one",
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": to_values(usage_values | {":one": 1}),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ]
        try:
            self._call("transact_write_items", f"upload {upload.id}", TransactItems=items)
        except ClientError as exc:
            if not error_is(exc, "TransactionCanceledException"):
                raise
            reasons = cancel_reasons(exc)
            if reasons[0] == "ConditionalCheckFailed":
                return  # the record exists: this upload was created already
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                answer: dict[str, Any] = dict(exc.response)
                stored = answer["CancellationReasons"][1].get("Item")
                raise BalanceChanged(_balance_from(from_item(stored) if stored else {})) from None
            raise

    def get_upload(self, user_id: str, upload_id: str) -> Upload | None:
        item = self._db.get_item(TableName=self._table, Key=upload_key(user_id, upload_id), ConsistentRead=True)
        return _upload_from(item["Item"]) if "Item" in item else None

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
        """pending → ready | rejected, once: the condition makes a redelivered event a no-op."""
        if status is UploadStatus.PENDING:
            raise ValueError(status)
        sets = {
            "status": status.value,
            "width": width,
            "height": height,
            "duration_s": Decimal(str(duration_s)) if duration_s is not None else None,
            "error": error.model_dump() if error else None,
            "input_key": input_key,
            "checked_at": rfc3339(),
        }
        sets = {k: v for k, v in sets.items() if v is not None}
        try:
            self._call(
                "update_item",
                f"upload {upload_id}",
                TableName=self._table,
                Key=upload_key(user_id, upload_id),
                UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in sets),
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={f"#{k}": k for k in sets},
                ExpressionAttributeValues=to_values({f":{k}": v for k, v in sets.items()} | {":pending": "pending"}),
            )
        except ClientError as exc:
            if error_is(exc, "ConditionalCheckFailedException"):
                return False
            raise
        return True

    # --- jobs ------------------------------------------------------------------------------

    def _job_item(self, job: Job) -> dict[str, Any]:
        values: dict[str, Any] = {
            "pk": f"JOB#{job.id}",
            "sk": "JOB",
            "id": job.id,
            "user_id": job.user_id,
            **status_fields(job.status, job.id),
            "model": job.model,
            "input_json": json.dumps(job.input, separators=(",", ":")),
            "credits_charged": job.credits_charged,
            "created_at": job.created_at,
            "updated_at": job.updated_at,
            "deadline_at": job.deadline_at,
            "submit_attempts": job.submit_attempts,
            "progress": job.progress.model_dump(exclude_none=True),
            "gsi1pk": user_pk(job.user_id),
            "gsi1sk": f"JOB#{job.id}",
        }
        if job.input_objects:
            values["input_objects"] = dict(job.input_objects)
        if not job.is_terminal:
            values["active_pk"] = active_shard(job.id)
            values["active_sk"] = job.updated_at
        return to_item(values)

    @staticmethod
    def _job(item: Mapping[str, Any]) -> Job:
        return _job_from(from_item(item))

    def find_by_request_id(self, request_id: str) -> Job | None:
        resp = self._db.query(
            TableName=self._table,
            IndexName="ByFalRequest",
            KeyConditionExpression="fal_request_id = :r",
            ExpressionAttributeValues=to_values({":r": request_id}),
            Limit=1,
        )
        items = resp.get("Items", [])
        return self.get_job(from_item(items[0])["pk"].removeprefix("JOB#")) if items else None

    def get_job(self, job_id: str) -> Job | None:
        item = self._db.get_item(TableName=self._table, Key=job_key(job_id), ConsistentRead=True).get("Item")
        return self._job(item) if item else None

    def list_jobs(
        self, user_id: str, status: JobStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[Job], str | None]:
        """Newest first. With ``status``: a query of the ByUserStatus index, never a filter over the
        user's whole history (a filter applies after the read: each page would pay for, and loop
        over, every non-matching job)."""
        index, sort_key, prefix = self._job_index(status)
        items, next_cursor = self._page(
            {
                "IndexName": index,
                "KeyConditionExpression": f"gsi1pk = :pk AND begins_with({sort_key}, :p)",
                "ExpressionAttributeValues": to_values({":pk": user_pk(user_id), ":p": prefix}),
            },
            limit,
            cursor,
            key_names=("pk", "sk", "gsi1pk", sort_key),
            owner=("gsi1pk", user_pk(user_id)),
            valid=lambda k: k["sk"] == "JOB" and len(k["pk"]) > 4 and k[sort_key] == prefix + k["pk"][4:],
        )
        jobs = [_job_from(i) for i in items]
        return jobs, next_cursor

    @staticmethod
    def _job_index(status: JobStatus | None) -> tuple[str, str, str]:
        """The index listing a user's jobs (in ``status``), its sort key and the key's prefix."""
        if status is None:
            return "ByUser", "gsi1sk", "JOB#"
        return "ByUserStatus", "status_sk", f"{status.value}#JOB#"

    def job_cursor(self, job: Job, status: JobStatus | None) -> str:
        """The cursor of a list page that ends with ``job`` (a page cut short, e.g. by its size)."""
        _, sort_key, prefix = self._job_index(status)
        keys = {"pk": f"JOB#{job.id}", "sk": "JOB", "gsi1pk": user_pk(job.user_id), sort_key: prefix + job.id}
        return self._encode_cursor(to_item(keys))

    # --- job transitions (each a conditional write) ----------------------------------------------

    def _update_job(self, job_id: str, sets: Mapping[str, Any], allowed_from: Iterable[JobStatus], **how: Any) -> Job:
        """One conditional UpdateItem of a job (:meth:`_job_write`)."""
        return self._conditional_update(job_id, **self._job_write(job_id, sets, allowed_from, **how))

    @staticmethod
    def _job_write(
        job_id: str,
        sets: Mapping[str, Any],
        allowed_from: Iterable[JobStatus],
        *,
        add: Mapping[str, int] | None = None,
        unsubmitted: bool = False,
        also: tuple[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The update of a job that sets ``sets`` (and ``add`` to counters) on a job still in one
        of ``allowed_from`` (and, with ``unsubmitted``, still without a fal request; with ``also``,
        a further condition and its values, written with the ``#name`` of a set/added field); its
        place in the stale index (``active_sk``) moves to now with ``updated_at``. Returns
        UpdateItem's expression arguments."""
        now = rfc3339()
        sets = {**sets, "updated_at": now, "active_sk": now}
        add = dict(add or {})
        condition, names, values = _status_condition(allowed_from, unsubmitted=unsubmitted)
        if also is not None:
            condition += f" AND ({also[0]})"
            values |= to_values(also[1])
        names |= {f"#{k}": k for k in (*sets, *add)}
        values |= to_values({f":{k}": v for k, v in (sets | add).items()})
        update = "SET " + ", ".join(f"#{k} = :{k}" for k in sets)
        if add:
            update += " ADD " + ", ".join(f"#{k} :{k}" for k in add)
        return {
            "UpdateExpression": update,
            "ConditionExpression": "attribute_exists(pk) AND " + condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def _conditional_update(self, job_id: str, **update: Any) -> Job:
        """One conditional UpdateItem of a job; a failed condition is :class:`TransitionRejected`."""
        try:
            resp = self._call(
                "update_item",
                f"job {job_id}",
                TableName=self._table,
                Key=job_key(job_id),
                ReturnValues="ALL_NEW",
                **update,
            )
        except ClientError as exc:
            if error_is(exc, "ConditionalCheckFailedException"):
                raise TransitionRejected(job_id) from None
            raise
        return self._job(resp["Attributes"])

    def record_submit_attempt(self, job_id: str) -> Job:
        """Count a submit attempt before calling fal, so a request id lost to a crash is visible.
        Only while the job may still move to SUBMITTED and holds no fal request."""
        return self._update_job(
            job_id, {}, ALLOWED_FROM[JobStatus.SUBMITTED], add={"submit_attempts": 1}, unsubmitted=True
        )

    def record_submit_refused(self, job_id: str) -> Job:
        """fal refused the attempt just counted (nothing reached it): take it back, so
        ``submit_attempts`` > 1 means a request may really have reached fal twice."""
        return self._update_job(
            job_id,
            {},
            ALLOWED_FROM[JobStatus.SUBMITTED],
            add={"submit_attempts": -1},
            unsubmitted=True,
            also=("#submit_attempts > :none", {":none": 0}),
        )

    def _cancel_intent_write(self, job_id: str, intent: CancelIntent) -> dict[str, Any]:
        keep = sorted(i.value for i in CANCEL_INTENT_REPLACES[intent] | {intent})
        placeholders = {f":intent{i}": value for i, value in enumerate(keep)}
        return self._job_write(
            job_id,
            {"cancel_requested": intent.value},
            CANCEL_INTENT_FROM[intent],
            also=(
                f"attribute_not_exists(#cancel_requested) OR #cancel_requested IN ({', '.join(placeholders)})",
                placeholders,
            ),
        )

    def request_cancel(self, job_id: str, intent: CancelIntent) -> Job:
        """Record why we are about to ask fal to cancel, before the call (see CancelIntent): while
        the job is in CANCEL_INTENT_FROM[intent] and its intent is unset or one ``intent`` may hold
        or replace."""
        return self._conditional_update(job_id, **self._cancel_intent_write(job_id, intent))

    def mark_submitted(self, job_id: str, request: FalRequest, progress: Progress) -> Job:
        return self._update_job(
            job_id,
            {
                **status_fields(JobStatus.SUBMITTED, job_id),
                "fal": request.model_dump(),
                "fal_request_id": request.request_id,
                "progress": progress.model_dump(exclude_none=True),
            },
            ALLOWED_FROM[JobStatus.SUBMITTED],
        )

    def update_progress(self, job_id: str, status: JobStatus, progress: Progress) -> Job:
        """Keep ``progress`` current while fal works; status only moves forward (submitted → in_progress)."""
        return self._update_job(
            job_id,
            {**status_fields(status, job_id), "progress": progress.model_dump(exclude_none=True)},
            progress_allowed_from(status),
        )

    def touch(self, job_id: str) -> None:
        """Move an active job's place in the stale index (the reconciler looked at it now). Best
        effort: a job that moved on, or a write that kept conflicting, is left where it is."""
        with contextlib.suppress(TransitionRejected, StoreBusy):
            self._update_job(job_id, {}, ACTIVE)

    def _terminal_update(
        self, job: Job, status: JobStatus, fields: Mapping[str, Any], now: str, *, unsubmitted: bool = False
    ) -> dict[str, Any]:
        """The job's move to a terminal ``status``, conditioned on the states it may come from
        (and, with ``unsubmitted``, on no fal request having been stored meanwhile).

        The job stays in the sparse index with ``event_pending`` until its event is out (outbox).
        """
        sets = {
            **status_fields(status, job.id),
            "completed_at": now,
            "updated_at": now,
            "event_pending": True,
            "active_sk": now,
            **fields,
        }
        condition, names, values = _status_condition(ALLOWED_FROM[status], unsubmitted=unsubmitted)
        return {
            "Update": {
                "TableName": self._table,
                "Key": job_key(job.id),
                "UpdateExpression": "SET " + ", ".join(f"#{k} = :{k}" for k in sets),
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names | {f"#{k}": k for k in sets},
                "ExpressionAttributeValues": values | to_values({f":{k}": v for k, v in sets.items()}),
            }
        }

    def _balance_update(self, user_id: str, credits: int, now: str) -> dict[str, Any]:
        """Give back ``credits`` (0 for a completion) and free one active-job slot."""
        return {
            "Update": {
                "TableName": self._table,
                "Key": balance_key(user_id),
                "UpdateExpression": "ADD balance :credits, active_jobs :minus, rev :one SET updated_at = :now",
                "ExpressionAttributeValues": to_values({":credits": credits, ":minus": -1, ":now": now, ":one": 1}),
            }
        }

    def _finish(self, job: Job, items: list[dict[str, Any]]) -> Job:
        """Commit a terminal transition. Only the job's own condition failing means someone else
        ended it (:class:`TransitionRejected`); contention (the user's other writes on the balance
        item, a concurrent write of the job) is retried, then reported as :class:`StoreBusy` for
        the caller to retry later."""
        try:
            self._call("transact_write_items", f"job {job.id}", TransactItems=items)
        except ClientError as exc:
            if error_is(exc, "TransactionCanceledException") and cancel_reasons(exc)[:1] == ["ConditionalCheckFailed"]:
                raise TransitionRejected(job.id) from None
            raise
        done = self.get_job(job.id)
        assert done is not None
        return done

    def complete(self, job: Job, video: StoredVideo) -> Job:
        """Active → completed with the stored video, and free the user's active slot. One transaction."""
        now = rfc3339()
        fields = {"video": video.model_dump(exclude_none=True), "progress": {"message": "completed"}}
        return self._finish(
            job,
            [
                self._terminal_update(job, JobStatus.COMPLETED, fields, now),
                self._balance_update(job.user_id, 0, now),
            ],
        )

    def finish_with_refund(
        self, job: Job, status: JobStatus, error: JobError | None, *, unsubmitted: bool = False
    ) -> Job:
        """Active → failed/canceled, credits back, ledger refund, slot freed: ONE transaction.

        The job's status condition makes the refund happen at most once, whatever races.
        ``unsubmitted``: only while no fal request is stored (a cancel that skipped fal).
        """
        if status not in (JobStatus.FAILED, JobStatus.CANCELED):
            raise ValueError(status)
        now = rfc3339()
        fields = {"error": error.model_dump()} if error is not None else {}
        return self._finish(
            job,
            [
                self._terminal_update(job, status, fields, now, unsubmitted=unsubmitted),
                self._balance_update(job.user_id, job.credits_charged, now),
                self._ledger_put(job.user_id, new_id("le"), LedgerType.REFUND, job.credits_charged, job.id, now),
            ],
        )

    def clear_event_pending(self, job_id: str) -> None:
        """The terminal event went out: the job leaves the sparse index for good."""
        try:
            self._call(
                "update_item",
                f"job {job_id}",
                TableName=self._table,
                Key=job_key(job_id),
                UpdateExpression="REMOVE event_pending, active_pk, active_sk",
                ConditionExpression="attribute_exists(event_pending)",
            )
        except ClientError as exc:
            if not error_is(exc, "ConditionalCheckFailedException"):
                raise

    def record_media(self, job_id: str, video_key: str, media: VideoMedia) -> Job:
        """``video.media`` set once on a completed job still pointing to ``video_key``; nothing else
        changes (not ``updated_at``, not the stale index: its place there is the outbox's)."""
        condition, names, values = _status_condition({JobStatus.COMPLETED})
        return self._conditional_update(
            job_id,
            UpdateExpression="SET #video.#media = :media",
            ConditionExpression=(
                f"attribute_exists(pk) AND {condition} AND #video.#s3_key = :video_key"
                " AND attribute_not_exists(#video.#media)"
            ),
            ExpressionAttributeNames=names | {"#video": "video", "#media": "media", "#s3_key": "s3_key"},
            ExpressionAttributeValues=values
            | to_values({":media": numbers(media.model_dump(exclude_none=True)), ":video_key": video_key}),
        )

    def find_stale_active(self, updated_before: str, limit: int) -> list[Job]:
        """Jobs in the sparse index (not terminal, or terminal with their event unpublished)
        untouched since ``updated_before``, oldest first per shard."""
        found: list[Job] = []
        shards = list(range(ACTIVE_SHARDS))
        random.shuffle(shards)  # no shard starves when a run stops at ``limit``
        for shard in shards:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": "Active",
                "KeyConditionExpression": "active_pk = :p AND active_sk < :t",
                "ExpressionAttributeValues": to_values({":p": f"ACTIVE#{shard}", ":t": updated_before}),
                "Limit": limit - len(found),
            }
            items = self._db.query(**kwargs).get("Items", [])
            for item in items:
                job = self.get_job(from_item(item)["id"])  # the index may lag: read the item itself
                if job is not None and (not job.is_terminal or job.event_pending):
                    found.append(job)
            if len(found) >= limit:
                break
        return found
