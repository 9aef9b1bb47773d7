"""Make moto's DynamoDB as atomic as the real one.

Real DynamoDB applies each write — and each TransactWriteItems — atomically, so
a condition is checked and the write applied with nothing in between. moto's
backend does not lock: two threads can both pass ``balance = :seen`` and both
write, losing an update. The local stack and the tests run many threads, so we
serialise moto's item operations with one re-entrant lock. This changes no
semantics, it only removes an interleaving that real DynamoDB never allows.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_OPS = ("put_item", "get_item", "query", "scan", "update_item", "delete_item", "transact_write_items",
        "batch_write_item", "batch_get_item")
_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto.dynamodb.models import DynamoDBBackend

    for name in _OPS:
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue
        setattr(DynamoDBBackend, name, _locked(original))
    _applied = True


def _locked(method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(*args, **kwargs)

    return wrapper
