"""Make moto as atomic as the real services under concurrency.

* DynamoDB applies each write — and each TransactWriteItems — atomically, so a
  condition is checked and the write applied with nothing in between. moto's
  backend does not lock: two threads can both pass ``balance = :seen`` and both
  write, losing an update.
* S3 serves concurrent PUTs of one key (last writer wins). moto disposes the old
  object's buffer while another thread still reads it ("I/O operation on closed
  file"), which the webhook/poll race hits when both finishers store the same key.

The local stack and the tests run many threads, so moto's DynamoDB item operations
and S3 object requests are serialised, each with one re-entrant lock. This changes
no semantics; it only removes interleavings the real services never show.

Also for speed: moto's TransactWriteItems deep-copies every table it touches as its
rollback backup, ~30 µs per item in the table, so a chaos run slowed down as the table
grew (58 ms per transaction at 2,000 items). The patch backs up only the items the
transaction names and restores them on failure: the same all-or-nothing result at a
constant cost.
"""

from __future__ import annotations

import copy
import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_S3_LOCK = threading.RLock()
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

    S3Response.key_response = _locked(S3Response.key_response, _S3_LOCK)  # type: ignore[method-assign]
    _applied = True


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
