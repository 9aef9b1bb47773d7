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
"""

from __future__ import annotations

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


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto.dynamodb.models import DynamoDBBackend

    for name in _OPS:
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue
        setattr(DynamoDBBackend, name, _locked(original, _LOCK))

    from moto.s3.responses import S3Response

    S3Response.key_response = _locked(S3Response.key_response, _S3_LOCK)  # type: ignore[method-assign]
    _applied = True


def _locked(method: Any, lock: threading.RLock) -> Any:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return wrapper
