"""EventBridge adapter: job events (terminal transitions) onto the project's bus."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient


class EventPublishError(RuntimeError):
    """EventBridge accepted the call but not the entry (``FailedEntryCount > 0``)."""

    def __init__(self, detail_type: str, error_code: str, error_message: str) -> None:
        super().__init__(f"PutEvents rejected {detail_type!r}: {error_code}: {error_message}")
        self.detail_type = detail_type
        self.error_code = error_code
        self.error_message = error_message


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):  # DynamoDB numbers
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    model_dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(model_dump):
        return model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class EventBridgePublisher:
    """Implements :class:`videogen.ports.EventPublisher` with one ``PutEvents`` entry per event."""

    def __init__(self, events_client: EventBridgeClient, bus_name: str, source: str = "videogen.job") -> None:
        self._events = events_client
        self._bus = bus_name
        self._source = source

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        """Put one event; raises :class:`EventPublishError` if EventBridge failed the entry.

        Client errors (throttling after botocore's retries, missing bus, ...) propagate as
        botocore exceptions.
        """
        answer = self._events.put_events(
            Entries=[
                {
                    "EventBusName": self._bus,
                    "Source": self._source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=_json_default, separators=(",", ":")),
                }
            ]
        )
        if answer.get("FailedEntryCount", 0):
            entry = (answer.get("Entries") or [{}])[0]
            raise EventPublishError(detail_type, entry.get("ErrorCode", "Unknown"), entry.get("ErrorMessage", ""))
