"""Make moto as atomic as the real services under concurrency.

* DynamoDB applies each write — and each TransactWriteItems — atomically, so a
  condition is checked and the write applied with nothing in between. moto's
  backend does not lock: two threads can both pass ``balance = :seen`` and both
  write, losing an update.
* S3 serves concurrent PUTs of one key (last writer wins). moto disposes the old
  object's buffer while another thread still reads it ("I/O operation on closed
  file"), which the webhook/poll race hits when both finishers store the same key —
  and a ListObjectsV2 hits when it computes the ETag of a key being overwritten.
  Object and bucket requests are therefore serialised.

* SNS mobile push (the local push services): moto's platform endpoints are a plain dict
  that CreatePlatformEndpoint scans for an existing token while other threads add, delete
  or publish to endpoints (the notifier's sends, a DELETE of a device, a registration), and
  the local push log (devstack/push_local.py) reads the table from inside a Publish. The
  platform-application and endpoint requests are serialised with their own lock; a Publish
  reading the table takes the DynamoDB lock inside it (always in that order: no deadlock).

The local stack and the tests run many threads, so moto's DynamoDB item operations,
S3 object requests and SNS push requests are serialised, each with one re-entrant lock. This changes
no semantics; it only removes interleavings the real services never show.

Also for speed: moto's TransactWriteItems deep-copies every table it touches as its
rollback backup, ~30 µs per item in the table, so a chaos run slowed down as the table
grew (58 ms per transaction at 2,000 items). The patch backs up only the items the
transaction names and restores them on failure: the same all-or-nothing result at a
constant cost.

S3's CopyObject honours ``x-amz-copy-source-if-match`` (412 PreconditionFailed when the source's
ETag is another one); moto 5 ignores the header and copies whatever is there, so the upload
validator's seal (copy only the bytes it checked) would be untested. :func:`_copy_source_if_match`
adds the check.

The serialising lock means DynamoDB's contention never happens by itself, so it is injected:
:class:`ConflictFault` makes DynamoDB item writes and transactions lose to a (pretend) concurrent
transaction exactly as AWS answers it — TransactGetItems and TransactWriteItems are cancelled
with ``TransactionCanceledException`` whose ``CancellationReasons`` name ``TransactionConflict``;
PutItem/UpdateItem/DeleteItem are rejected with ``TransactionConflictException`` ("there is an
ongoing transaction for the item"). Nothing is changed by a faulted call. The local stack reads
``LOCAL_DDB_CONFLICT_RATE`` (0..1, default 0), ``LOCAL_DDB_CONFLICT_SEED`` and
``LOCAL_DDB_CONFLICT_OPS`` (comma-separated operation names, default all five) at start; tests
call :func:`set_conflicts` / :func:`conflict_next`. Each injected fault prints one line with
``injected TransactionConflict`` and the operation's name (the chaos run counts them).
"""

from __future__ import annotations

import copy
import functools
import os
import random
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

_LOCK = threading.RLock()
_S3_LOCK = threading.RLock()
_SNS_LOCK = threading.RLock()
_SNS_PUSH_ACTIONS = (  # SNSResponse methods that read or change platform applications and endpoints
    "publish",
    "create_platform_application",
    "delete_platform_application",
    "list_platform_applications",
    "get_platform_application_attributes",
    "set_platform_application_attributes",
    "create_platform_endpoint",
    "delete_endpoint",
    "set_endpoint_attributes",
    "get_endpoint_attributes",
    "list_endpoints_by_platform_application",
)
_OPS = (
    "put_item",
    "get_item",
    "query",
    "scan",
    "update_item",
    "delete_item",
    "transact_write_items",
    "batch_write_item",
    "batch_get_item",
)
_applied = False
_in_transaction = threading.local()


def apply() -> None:
    global _applied
    if _applied:
        return
    import moto.dynamodb.models as ddb_models
    from moto.dynamodb.models import DynamoDBBackend

    ddb_models.copy = _NoTableCopy()  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = _item_level_rollback(DynamoDBBackend.transact_write_items)
    for name in _OPS:
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue
        setattr(DynamoDBBackend, name, _locked(original, _LOCK))

    from moto.dynamodb.responses import DynamoHandler

    # TransactGetItems reads its items one by one in the response layer: one snapshot, like AWS.
    DynamoHandler.transact_get_items = _locked(DynamoHandler.transact_get_items, _LOCK)  # type: ignore[method-assign]

    from moto.s3.responses import S3Response

    S3Response.copy_object = _copy_source_if_match(S3Response.copy_object)  # type: ignore[method-assign]
    S3Response.key_response = _locked(S3Response.key_response, _S3_LOCK)  # type: ignore[method-assign]
    # Bucket requests (ListObjectsV2 reads each key's buffer for its ETag; a browser POST writes a key)
    S3Response.bucket_response = _locked(S3Response.bucket_response, _S3_LOCK)  # type: ignore[method-assign]
    from moto.sns.responses import SNSResponse

    for name in _SNS_PUSH_ACTIONS:
        setattr(SNSResponse, name, _locked(getattr(SNSResponse, name), _SNS_LOCK))
    for operation, method in CONFLICT_OPS.items():
        setattr(DynamoHandler, method, FAULT.wrap(operation, getattr(DynamoHandler, method)))
    _applied = True


def _copy_source_if_match(original: Any) -> Any:
    """CopyObject with ``x-amz-copy-source-if-match``: 412 unless the source's ETag is that one
    (quotes or not, as S3 compares them); otherwise moto's own copy."""

    @functools.wraps(original)
    def copy_object(self: Any) -> Any:
        wanted = self.headers.get("x-amz-copy-source-if-match")
        if wanted is not None:
            from urllib.parse import unquote, urlparse

            from moto.s3.exceptions import MissingKey, PreconditionFailed

            source = self.headers.get("x-amz-copy-source")
            if isinstance(source, bytes):
                source = source.decode("utf-8")
            parsed = urlparse(source)
            bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
            found = self.backend.get_object(bucket, key)
            if found is None:
                raise MissingKey(key=key)
            if found.etag.strip('"') != wanted.strip('"'):
                raise PreconditionFailed("x-amz-copy-source-If-Match")
        return original(self)

    return copy_object


def dynamodb_lock() -> threading.RLock:
    """The lock moto's DynamoDB item operations run under: held by code that reads moto's tables
    directly (devstack/push_local.py), so it never sees a table mid-write."""
    return _LOCK


# --- TransactionConflict, as DynamoDB answers contention ----------------------------------------

# The operations that can meet a concurrent transaction, by their AWS name: the handler method.
CONFLICT_OPS = {
    "TransactGetItems": "transact_get_items",
    "TransactWriteItems": "transact_write_items",
    "PutItem": "put_item",
    "UpdateItem": "update_item",
    "DeleteItem": "delete_item",
}
NEEDLE = "injected TransactionConflict"  # one line per injected fault (devstack/chaos.py counts it)
_ONGOING = "Transaction is ongoing for the item"


class ConflictFault:
    """Which DynamoDB calls lose to a concurrent transaction: each call of an op in ``ops`` with
    probability ``rate`` (a seeded draw), plus the next ``forced[op]`` calls of ``op``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rate = 0.0
        self.ops: frozenset[str] = frozenset(CONFLICT_OPS)
        self._rng = random.Random()
        self._forced: Counter[str] = Counter()
        self._forced_item: dict[str, int | None] = {}
        self.injected: Counter[str] = Counter()

    def configure(self, rate: float, ops: Iterable[str] | None = None, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"LOCAL_DDB_CONFLICT_RATE must be between 0 and 1, not {rate}")
        chosen = frozenset(ops) if ops is not None else frozenset(CONFLICT_OPS)
        unknown = chosen - set(CONFLICT_OPS)
        if unknown:
            raise ValueError(f"unknown DynamoDB operations {sorted(unknown)}; known: {sorted(CONFLICT_OPS)}")
        with self._lock:
            self.rate, self.ops = rate, chosen
            self._rng = random.Random(seed)
            self._forced.clear()
            self._forced_item.clear()
            self.injected.clear()

    def force(self, operation: str, times: int = 1, item: int | None = None) -> None:
        """The next ``times`` calls of ``operation`` conflict (on transaction item ``item``;
        None: a random one), whatever the rate."""
        if operation not in CONFLICT_OPS:
            raise ValueError(f"unknown DynamoDB operation {operation!r}")
        with self._lock:
            self._forced[operation] += times
            self._forced_item[operation] = item

    def _draw(self, operation: str, items: int) -> int | None:
        """None: no fault; else the index of the transaction item in conflict (0 for an item op)."""
        with self._lock:
            if self._forced[operation] > 0:
                self._forced[operation] -= 1
                chosen = self._forced_item.get(operation)
            elif operation in self.ops and self.rate > 0 and self._rng.random() < self.rate:
                chosen = None
            else:
                return None
            self.injected[operation] += 1
            return chosen if chosen is not None else self._rng.randrange(max(items, 1))

    def wrap(self, operation: str, method: Any) -> Any:
        fault = self

        @functools.wraps(method)
        def handler(self: Any, *args: Any, **kwargs: Any) -> Any:
            items = self.body.get("TransactItems") or []
            index = fault._draw(operation, len(items))
            if index is not None:
                table = (items[index].get("Get") or next(iter(items[index].values()))) if items else self.body
                print(f"{NEEDLE} on {operation} (table {table.get('TableName')})", file=sys.stderr, flush=True)
                raise _conflict(operation, len(items), index)
            return method(self, *args, **kwargs)

        return handler


def _conflict(operation: str, items: int, index: int) -> Exception:
    from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException, TransactionCanceledException

    if operation.startswith("Transact"):
        reasons = [("TransactionConflict", _ONGOING, None) if i == index else (None, None, None) for i in range(items)]
        return TransactionCanceledException(reasons)
    return DynamodbException(ERROR_TYPE_PREFIX + "TransactionConflictException", _ONGOING)


FAULT = ConflictFault()


def set_conflicts(rate: float, ops: Iterable[str] | None = None, seed: int | None = None) -> None:
    """Every later call of an op in ``ops`` (default: all) conflicts with probability ``rate``."""
    FAULT.configure(rate, ops, seed)


def conflict_next(operation: str, times: int = 1, item: int | None = None) -> None:
    """The next ``times`` calls of ``operation`` conflict (on transaction item ``item``)."""
    FAULT.force(operation, times, item)


def conflicts_from_env(env: Mapping[str, str] = os.environ) -> None:
    """The fault as the local stack's environment sets it (off when unset)."""
    ops = env.get("LOCAL_DDB_CONFLICT_OPS", "")
    seed = env.get("LOCAL_DDB_CONFLICT_SEED", "")
    set_conflicts(
        float(env.get("LOCAL_DDB_CONFLICT_RATE") or 0),
        [o.strip() for o in ops.split(",") if o.strip()] or None,
        int(seed) if seed else None,
    )


def _locked(method: Any, lock: threading.RLock) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return wrapper


class _NoTableCopy:
    """``copy`` for moto's DynamoDB module: inside a transaction, a whole-table deepcopy (the
    rollback backup) returns the table itself; :func:`_item_level_rollback` keeps the backup."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        if getattr(_in_transaction, "active", False) and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def _item_level_rollback(original: Any) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        backups = []
        for entry in transact_items:
            op = next(iter(entry.values()))
            table = self.tables.get(op.get("TableName"))
            attrs = op.get("Item") or op.get("Key")
            if table is None or not attrs or table.hash_key_attr not in attrs:
                continue  # moto itself rejects it below
            hash_key = DynamoType(attrs[table.hash_key_attr])
            range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr in attrs else None
            backups.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        _in_transaction.active = True
        try:
            return original(self, transact_items)
        except BaseException:
            for table, hash_key, range_key, old in reversed(backups):
                if old is None:
                    if table.get_item(hash_key, range_key) is not None:
                        table.delete_item(hash_key, range_key)
                elif range_key is not None:
                    table.items[hash_key][range_key] = old
                else:
                    table.items[hash_key] = old
            raise
        finally:
            _in_transaction.active = False

    return transact_write_items
