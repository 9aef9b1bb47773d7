"""One fal request's life: IN_QUEUE → IN_PROGRESS → COMPLETED on the wall clock, and what fal
answers about it at each point (status, result, webhook payload), as docs/fal.md describes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Required inputs of the models listed in docs/fal.md; a missing one fails the run with a 422.
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "fal-ai/kling-video/v2.1/standard/image-to-video": ("prompt", "image_url"),
    "fal-ai/kling-video/v2.6/pro/image-to-video": ("prompt", "start_image_url"),
    "fal-ai/kling-video/v2.6/standard/motion-control": ("image_url", "video_url", "character_orientation"),
    "fal-ai/minimax/video-01": ("prompt",),
    "fal-ai/veo3.1/image-to-video": ("prompt", "image_url"),
    "fal-ai/sora-2/image-to-video": ("prompt", "image_url"),
}
CANCELLED_ERROR = ("Request was cancelled", "request_cancelled")
VALIDATION_ERROR = ("Invalid status code: 422", "validation_error")
# The injected failures (each turned on by the config key ``<kind>_rate``, ``generic`` by ``fail_rate``):
# the status's (error, error_type), and the result's status code. A validation kind's result body is
# ``{"detail": [items]}`` (failure_detail), the others' fal's request error ``{"detail", "error_type"}``.
FAULTS: dict[str, tuple[tuple[str, str], int]] = {
    "generic": (("Invalid status code: 500", "internal_error"), 500),
    "invalid_input": (VALIDATION_ERROR, 422),
    "content_policy": (VALIDATION_ERROR, 422),
    "provider_timeout": (("Invalid status code: 504", "request_timeout"), 504),
}
FAULT_DETAIL = {
    "generic": "Internal server error (simulated)",
    "provider_timeout": "Request timed out (simulated)",
}


class FalError(Exception):
    """A request error fal answers as ``{"detail", "error_type"}`` plus ``X-Fal-Error-Type``."""

    def __init__(self, status: int, detail: str, error_type: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error_type = error_type
        self.headers = headers or {}


@dataclass
class SimRequest:
    """One queued request as the simulator knows it."""

    seq: int
    request_id: str
    owner_app: str
    model_id: str
    input: dict[str, Any]
    input_sha256: dict[str, str]  # field -> sha256 of the bytes fetched from its URL at submit
    webhook_url: str | None
    submitted_at: float
    queue_s: float
    run_s: float
    fault: str | None  # injected failure: a key of FAULTS (fail_rate, <kind>_rate), or None
    bad_media: bool  # its CDN URL serves text, not a video (bad_media_rate)
    missing_inputs: tuple[str, ...]
    video_size: int
    cancel: str | None = None  # None | "removed" (was queued) | "signalled" (was running)
    cancelled_at: float | None = None
    finalized: bool = False
    completed_at: float | None = None
    webhook_body: bytes | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # calls our side made about this request, so "without calling fal" is measured, not inferred
    status_calls: int = 0
    result_calls: int = 0
    cancel_calls: int = 0

    @property
    def started_at(self) -> float:
        return self.submitted_at + self.queue_s

    @property
    def done_at(self) -> float:
        if self.cancel == "removed" and self.cancelled_at is not None:
            return self.cancelled_at
        return self.started_at + self.run_s

    def phase(self, now: float) -> str:
        if self.cancel == "removed":
            return "COMPLETED"
        if now < self.started_at:
            return "IN_QUEUE"
        if now < self.done_at:
            return "IN_PROGRESS"
        return "COMPLETED"

    @property
    def error(self) -> tuple[str, str] | None:
        if self.cancel == "removed":
            return CANCELLED_ERROR
        if self.missing_inputs:
            return VALIDATION_ERROR
        return FAULTS[self.fault][0] if self.fault else None

    def failure_detail(self) -> list[dict[str, Any]] | str:
        """The result's ``detail``: validation items (loc, msg, type) or a request error's text."""
        if self.missing_inputs:
            return [
                {"loc": ["body", name], "msg": "field required", "type": "value_error.missing"}
                for name in self.missing_inputs
            ]
        if self.fault == "content_policy":
            return [
                {
                    "loc": ["body", "prompt"],
                    "msg": "The prompt was flagged by the content checker (simulated)",
                    "type": "content_policy_violation",
                    "ctx": {"category": "violence"},
                }
            ]
        if self.fault == "invalid_input":
            return [
                {
                    "loc": ["body", self._an_image_input()],
                    "msg": "Failed to process the input image (simulated failure)",
                    "type": "image_load_error",
                }
            ]
        return FAULT_DETAIL[self.fault or "generic"]

    def _an_image_input(self) -> str:
        return next((name for name in sorted(self.input) if name.endswith("image_url")), "image_url")

    def failure_body(self) -> tuple[int, dict[str, Any]]:
        """The result's status and body for a failed (not cancelled) request."""
        detail = self.failure_detail()
        if isinstance(detail, list):
            return 422, {"detail": detail}
        assert self.fault is not None
        (_, error_type), status = FAULTS[self.fault]
        return status, {"detail": detail, "error_type": error_type}

    # -- what fal answers about it ---------------------------------------------------------

    def urls(self, base_url: str) -> dict[str, str]:
        root = f"{base_url}/{self.owner_app}/requests/{self.request_id}"
        return {"response_url": root, "status_url": f"{root}/status", "cancel_url": f"{root}/cancel"}

    def status_body(
        self, now: float, base_url: str, queue_position: int | None, want_logs: bool
    ) -> tuple[int, dict[str, Any]]:
        """The status answer at ``now`` (``queue_position`` is only read while IN_QUEUE)."""
        phase = self.phase(now)
        body: dict[str, Any] = {"status": phase, "request_id": self.request_id, **self.urls(base_url)}
        if phase == "IN_QUEUE":
            body["queue_position"] = queue_position
            return 202, body
        body["logs"] = self.logs(now) if want_logs else None
        if phase == "IN_PROGRESS":
            return 202, body
        if self.cancel != "removed":
            body["metrics"] = {"inference_time": round(self.run_s, 3)}
        error = self.error
        if error is not None:
            body["error"], body["error_type"] = error
        return 200, body

    def logs(self, now: float) -> list[dict[str, Any]]:
        def entry(at: float, message: str, level: str = "INFO") -> dict[str, Any]:
            stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
            return {"message": message, "level": level, "source": "user", "timestamp": stamp}

        if self.cancel == "removed":
            return []
        logs = [entry(self.started_at, "Starting generation")]
        for pct in (25, 50, 75):
            at = self.started_at + self.run_s * pct / 100
            if at <= now:
                logs.append(entry(at, f"Generating video: {pct}%"))
        if now >= self.done_at:
            if self.error is not None:
                logs.append(entry(self.done_at, "Generation failed", "ERROR"))
            else:
                logs.append(entry(self.done_at, "Generation complete"))
        return logs

    def result_body(self, base_url: str) -> tuple[int, dict[str, Any]]:
        """The result answer of a COMPLETED request: its output, or its error."""
        if self.cancel == "removed":
            return 400, {"detail": CANCELLED_ERROR[0], "error_type": CANCELLED_ERROR[1]}
        if self.error is not None:
            return self.failure_body()
        return 200, self.output(base_url)

    def output(self, base_url: str) -> dict[str, Any]:
        return {
            "video": {
                "url": f"{base_url}/cdn/{self.request_id}.mp4",
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": self.video_size,
            },
            "seed": self.seq,
        }

    def webhook_payload(self, base_url: str, payload_error: bool) -> dict[str, Any]:
        """The webhook body; ``payload_error`` (only drawn for a success) is the OK-without-payload fault."""
        base = {"request_id": self.request_id, "gateway_request_id": self.request_id}
        if self.cancel == "removed":
            return {**base, "status": "ERROR", "error": CANCELLED_ERROR[0], "payload": {"detail": CANCELLED_ERROR[0]}}
        if self.error is not None:
            return {**base, "status": "ERROR", "error": self.error[0], "payload": self.failure_body()[1]}
        if payload_error:
            return {
                **base,
                "status": "OK",
                "payload": None,
                "payload_error": "Response payload is not JSON serializable (simulated)",
            }
        return {**base, "status": "OK", "payload": self.output(base_url), "error": None}

    def describe(self, now: float) -> dict[str, Any]:
        """The inspection view (``GET /_sim/requests``)."""
        return {
            "request_id": self.request_id,
            "model_id": self.model_id,
            "status": self.phase(now),
            "input": self.input,
            "input_sha256": dict(self.input_sha256),
            "webhook_url": self.webhook_url,
            "queue_s": self.queue_s,
            "run_s": self.run_s,
            "failed": self.error is not None,
            "error": self.error[0] if self.error else None,
            "fault": self.fault,
            "cancel": self.cancel,
            "video_size": self.video_size,
            "deliveries": list(self.deliveries),
            "status_calls": self.status_calls,
            "result_calls": self.result_calls,
            "cancel_calls": self.cancel_calls,
        }
