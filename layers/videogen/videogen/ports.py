"""Ports: what the services need from the outside world, as small Protocols.

Adapters in :mod:`videogen.adapters` implement them against AWS and fal.ai;
tests may substitute fakes. Services depend on these names only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from videogen.domain.models import FalRequest, StoredVideo

# --- fal.ai -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FalStatus:
    """One status answer of fal's queue API."""

    status: Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    queue_position: int | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None

    @property
    def last_message(self) -> str | None:
        for entry in reversed(self.logs):
            msg = entry.get("message") if isinstance(entry, dict) else None
            if msg:
                return str(msg)[:500]
        return None


@dataclass(frozen=True)
class FalResult:
    """The outcome of a finished request: a video URL, or an error."""

    video_url: str | None = None
    content_type: str | None = None
    error: str | None = None  # set when the request failed (never both)

    @property
    def ok(self) -> bool:
        return self.video_url is not None and self.error is None


CancelOutcome = Literal["requested", "already_completed", "not_found"]


class FalGateway(Protocol):
    def submit(self, endpoint: str, payload: dict[str, Any], webhook_url: str | None) -> FalRequest: ...

    def status(self, request: FalRequest) -> FalStatus: ...

    def result(self, request: FalRequest) -> FalResult: ...

    def cancel(self, request: FalRequest) -> CancelOutcome: ...


# --- media ------------------------------------------------------------------------------


class MediaSource(Protocol):
    """Opens a provider media URL behind the guards (allow-listed https host, size cap, type)."""

    def open(self, url: str) -> MediaStream: ...


class MediaStream(Protocol):
    content_type: str
    declared_size: int | None

    def chunks(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class VideoStore(Protocol):
    def put_stream(self, key: str, stream: MediaStream) -> StoredVideo: ...

    def presign(self, key: str, ttl_s: int) -> str: ...

    def head(self, key: str) -> StoredVideo | None: ...

    def find(self, prefix: str) -> StoredVideo | None: ...

    def delete(self, key: str) -> None: ...


# --- workflow and events -----------------------------------------------------------------


class Workflow(Protocol):
    def start(self, job_id: str, execution_input: dict[str, Any]) -> bool:
        """Start the job's execution (named by the job id). False if it already exists."""
        ...

    def state(self, job_id: str) -> Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "MISSING"]: ...


class EventPublisher(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> None: ...
