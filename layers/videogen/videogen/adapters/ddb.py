"""What every DynamoDB adapter of the one table shares: item (de)serialisation, reading
DynamoDB's errors, and :class:`DynamoTable`, whose :meth:`~DynamoTable._call` retries a write or a
TransactGetItems that lost to a concurrent transaction (see the contention note in dynamo.py)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from videogen import jsonbody
from videogen.domain.errors import InvalidCursor, StoreBusy
from videogen.retry import CONFLICT_ATTEMPTS, backoff, retry_conflicts

_ser = TypeSerializer()
_de = TypeDeserializer()

# Cancellation reasons that say "not now" (nothing was written, no condition was evaluated false).
_CONTENTION = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values as a DynamoDB item (a None value leaves its attribute out)."""
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def to_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values as ``ExpressionAttributeValues`` (None kept: it is a NULL value there)."""
    return {k: _ser.serialize(v) for k, v in values.items()}


def plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints (whole) or floats, through dicts and lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def numbers(value: Any) -> Any:
    """Floats as the Decimals DynamoDB's serializer takes (through their shortest repr: 23.976, not
    23.975999999999999)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: numbers(v) for k, v in value.items()}
    return value


def deserialize(value: Any) -> Any:
    """One attribute value as Python (Decimals left as they are)."""
    return _de.deserialize(value)


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain values."""
    return {k: plain(_de.deserialize(v)) for k, v in item.items()}


def cancel_reasons(exc: ClientError) -> list[str]:
    """The codes of a cancelled transaction's ``CancellationReasons``, one per item."""
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]


def error_is(exc: ClientError, code: str) -> bool:
    return exc.response.get("Error", {}).get("Code") == code


def failed_condition(exc: ClientError) -> bool:
    """A single-item write whose condition was false."""
    return error_is(exc, "ConditionalCheckFailedException")


def conflicted(exc: Exception) -> bool:
    """DynamoDB's answer to contention: an item write that met an ongoing transaction, or a
    transaction (read or write) cancelled by a conflict and by no failed condition."""
    if not isinstance(exc, ClientError):
        return False
    if error_is(exc, "TransactionConflictException"):
        return True
    if not error_is(exc, "TransactionCanceledException"):
        return False
    reasons = cancel_reasons(exc)
    return "ConditionalCheckFailed" not in reasons and bool(_CONTENTION & set(reasons))


class DynamoTable:
    """One adapter's hold on the table: the client, the table's name, and :meth:`_call`."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        conflict_attempts: int = CONFLICT_ATTEMPTS,
        pause: Callable[[int], None] = backoff,
    ) -> None:
        self._db = client
        self._table = table_name
        self._conflict_attempts = conflict_attempts
        self._pause = pause

    def _call(
        self,
        operation: str,
        what: str,
        *,
        exhausted: Callable[[ClientError], Exception] | None = None,
        **request: Any,
    ) -> Any:
        """``self._db.<operation>(**request)``, retried while it loses to a concurrent transaction;
        then ``exhausted(last error)`` or :class:`StoreBusy`. Other errors are the caller's."""

        def give_up(exc: Exception) -> Exception:
            assert isinstance(exc, ClientError)
            if exhausted is not None:
                return exhausted(exc)
            return StoreBusy(f"{what}: kept conflicting with concurrent transactions")

        def call() -> Any:
            return getattr(self._db, operation)(**request)

        return retry_conflicts(
            call, conflicted=conflicted, exhausted=give_up, attempts=self._conflict_attempts, pause=self._pause
        )

    def _page(
        self,
        query: dict[str, Any],
        limit: int,
        cursor: str | None,
        *,
        key_names: tuple[str, ...],
        owner: tuple[str, str],
        valid: Callable[[dict[str, str]], bool],
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest-first page of ``limit`` items; the cursor is an opaque start key, accepted only if
        it is shaped like a key this query returns for this owner."""
        start = self._decode_cursor(cursor, key_names, owner, valid) if cursor else None
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            kwargs = {**query, "TableName": self._table, "ScanIndexForward": False, "Limit": limit - len(out)}
            if start:
                kwargs["ExclusiveStartKey"] = start
            try:
                resp = self._db.query(**kwargs)
            except ClientError as exc:
                if cursor and error_is(exc, "ValidationException"):  # a start key DynamoDB refuses
                    raise InvalidCursor("cursor is not one this API returned") from None
                raise
            out.extend(from_item(i) for i in resp.get("Items", []))
            start = resp.get("LastEvaluatedKey")
            if not start:
                break
        if start and len(out) >= limit:
            last = out[-1]
            start = to_item({k: last[k] for k in key_names if k in last})
        return out, (self._encode_cursor(start) if start else None)

    @staticmethod
    def _encode_cursor(key: Mapping[str, Any]) -> str:
        plain = {k: deserialize(v) for k, v in key.items()}
        return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(
        cursor: str, key_names: Iterable[str], owner: tuple[str, str], valid: Callable[[dict[str, str]], bool]
    ) -> dict[str, Any]:
        try:
            raw = jsonbody.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))  # bounded depth
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise InvalidCursor("cursor is not one this API returned") from None
        names = set(key_names)
        if (
            not isinstance(raw, dict)
            or set(raw) != names
            or not all(isinstance(v, str) for v in raw.values())
            or raw.get(owner[0]) != owner[1]
            or not valid(raw)
        ):
            raise InvalidCursor("cursor is not one this API returned")
        return to_item(raw)
