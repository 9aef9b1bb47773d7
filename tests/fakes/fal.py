"""A scripted fal.ai queue: what each call answers is set by the test, and every call is recorded.

    fal = FakeFal()
    fal.on_submit(FalTransientError("503"))            # the next submit fails transiently
    req = fal.request("req-1")                         # a request fal knows (for a seeded job)
    fal.script_status("req-1", in_queue(3), in_progress(), completed())   # the last one repeats
    fal.script_result("req-1", FalResult(video_url="https://v3.fal.media/x.mp4"))
    fal.script_cancel("req-1", "already_completed")
    fal.during_cancel("req-1", deliver_webhook)        # runs inside the next cancel, before it answers
    ...
    assert fal.calls == [("status", "req-1")]          # "without calling fal" is ``fal.calls == []``

An entry of a script is either the answer or an exception to raise. Unscripted: submit accepts
(request ids ``req-1``, ``req-2``, ...), status says IN_QUEUE, result is a video on fal's CDN,
cancel says ``requested``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from videogen.domain.models import FalRequest
from videogen.ports import CancelOutcome, FalResult, FalStatus

QUEUE = "https://queue.fal.run/fal-ai/model/requests"
CDN = "https://v3.fal.media/files"

Scripted = Any  # an answer, or a BaseException to raise


def in_queue(position: int | None = 0) -> FalStatus:
    return FalStatus(status="IN_QUEUE", queue_position=position)


def in_progress(message: str | None = None) -> FalStatus:
    return FalStatus(status="IN_PROGRESS", logs=[{"message": message}] if message else [])


def completed(error: str | None = None, error_type: str | None = None) -> FalStatus:
    return FalStatus(status="COMPLETED", error=error, error_type=error_type)


def video_url(request_id: str) -> str:
    return f"{CDN}/{request_id}.mp4"


def fal_request(request_id: str) -> FalRequest:
    base = f"{QUEUE}/{request_id}"
    return FalRequest(
        request_id=request_id, status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel"
    )


class FakeFal:
    """Implements :class:`videogen.ports.FalGateway`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (operation, request id or endpoint)
        self.submitted: list[tuple[str, dict[str, Any], str | None]] = []  # (endpoint, payload, webhook url)
        self._submits: list[Scripted] = []
        self._statuses: dict[str, list[Scripted]] = defaultdict(list)
        self._results: dict[str, list[Scripted]] = defaultdict(list)
        self._cancels: dict[str, list[Scripted]] = defaultdict(list)
        self._during_cancel: dict[str, list[Callable[[], None]]] = defaultdict(list)
        self._next_id = 0

    # --- scripting ------------------------------------------------------------------------------

    def on_submit(self, *answers: Scripted) -> None:
        """What the next submits answer: a request id (str), a FalRequest, or an exception."""
        self._submits.extend(answers)

    def script_status(self, request_id: str, *answers: Scripted) -> None:
        self._statuses[request_id].extend(answers)

    def script_result(self, request_id: str, *answers: Scripted) -> None:
        self._results[request_id].extend(answers)

    def script_cancel(self, request_id: str, *answers: Scripted) -> None:
        self._cancels[request_id].extend(answers)

    def during_cancel(self, request_id: str, action: Callable[[], None]) -> None:
        """Run ``action`` inside the next cancel of ``request_id``, before the call answers (fal's
        ERROR webhook for the cancelled request arriving before our cancel call has returned)."""
        self._during_cancel[request_id].append(action)

    def request(self, request_id: str) -> FalRequest:
        return fal_request(request_id)

    def count(self, operation: str) -> int:
        return sum(1 for op, _ in self.calls if op == operation)

    # --- the port -------------------------------------------------------------------------------

    def submit(self, endpoint: str, payload: dict[str, Any], webhook_url: str | None) -> FalRequest:
        self.calls.append(("submit", endpoint))
        self.submitted.append((endpoint, payload, webhook_url))
        answer = self._submits.pop(0) if self._submits else None
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, FalRequest):
            return answer
        if answer is None:
            self._next_id += 1
            answer = f"req-{self._next_id}"
        return fal_request(str(answer))

    def status(self, request: FalRequest) -> FalStatus:
        self.calls.append(("status", request.request_id))
        answer = _next(self._statuses[request.request_id], in_queue())
        assert isinstance(answer, FalStatus)
        return answer

    def result(self, request: FalRequest) -> FalResult:
        self.calls.append(("result", request.request_id))
        answer = _next(self._results[request.request_id], FalResult(video_url=video_url(request.request_id)))
        assert isinstance(answer, FalResult)
        return answer

    def cancel(self, request: FalRequest) -> CancelOutcome:
        self.calls.append(("cancel", request.request_id))
        answer = _next(self._cancels[request.request_id], "requested")
        if self._during_cancel[request.request_id]:
            self._during_cancel[request.request_id].pop(0)()
        assert answer in ("requested", "already_completed", "not_found")
        return answer


def _next(script: list[Scripted], default: Scripted) -> Scripted:
    """Pop the script's next answer; its last answer stays (a status stays COMPLETED...)."""
    if not script:
        return default
    answer = script.pop(0) if len(script) > 1 else script[0]
    if isinstance(answer, BaseException):
        raise answer
    return answer
