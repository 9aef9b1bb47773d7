"""POST /webhooks/fal: verify, find the job, and finish it through the completion path."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from videogen.adapters.dynamo import DynamoStore
from videogen.domain.errors import BadRequest, InvalidSignature
from videogen.domain.models import Job
from videogen.observability import count, logger
from videogen.ports import FalResult
from videogen.services.completion import JobFinisher


class SignatureVerifier(Protocol):  # implemented by adapters.webhook_signature.WebhookVerifier
    def verify(self, headers: Mapping[str, str], raw_body: bytes) -> None: ...


@dataclass(frozen=True)
class Delivery:
    request_id: str
    status: str
    result: FalResult


def parse_delivery(raw_body: bytes) -> Delivery | None:
    """A fal webhook body → Delivery; None for a status we ignore; BadRequest if it is not one."""
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("request_id"), str) or not body["request_id"]:
        raise BadRequest("body is not a fal webhook (request_id missing)")
    status = body.get("status")
    if status not in ("OK", "ERROR"):
        return None
    payload = body.get("payload")
    if status == "ERROR":
        return Delivery(body["request_id"], status, FalResult(error=_short(body.get("error")) or "generation failed"))
    if body.get("payload_error") or not isinstance(payload, dict):
        return Delivery(body["request_id"], status, FalResult(error=_short(body.get("payload_error")) or "no payload"))
    video = payload.get("video")
    if not isinstance(video, dict) or not isinstance(video.get("url"), str) or not video["url"]:
        return Delivery(body["request_id"], status, FalResult(error="no video in the result"))
    url = video["url"]
    return Delivery(body["request_id"], status, FalResult(video_url=url, content_type=video.get("content_type")))


def _short(value: Any) -> str | None:
    return None if value is None else str(value)[:300]


class WebhookService:
    def __init__(
        self,
        store: DynamoStore,
        finisher: JobFinisher,
        verifier: SignatureVerifier,
        token: Callable[[], str],
        expected_user_id: str = "",
    ) -> None:
        self._store = store
        self._finisher = finisher
        self._verifier = verifier
        self._token = token
        self._expected_user_id = expected_user_id

    def handle(self, headers: Mapping[str, str], query: Mapping[str, str], raw_body: bytes) -> dict[str, Any]:
        expected = self._token()
        if not expected or not hmac.compare_digest(query.get("token", "").encode(), expected.encode()):
            count("WebhookRejected")
            raise InvalidSignature("bad or missing webhook token")
        self._verifier.verify(headers, raw_body)
        if self._expected_user_id:  # signed by fal, but for OUR account? (the user id is in the signature)
            sender = {k.lower(): v for k, v in headers.items()}.get("x-fal-webhook-user-id", "")
            if not hmac.compare_digest(sender.encode(), self._expected_user_id.encode()):
                raise InvalidSignature("delivery for another fal account")
        delivery = parse_delivery(raw_body)
        if delivery is None:
            return {"ok": True, "ignored": "status"}
        job = self._find(query.get("job_id", ""), delivery.request_id)
        if job is None:
            logger.warning("webhook for an unknown job", extra={"fal_request_id": delivery.request_id})
            count("WebhookUnknownJob")
            return {"ok": True, "ignored": "unknown job"}
        logger.set_correlation_id(job.id)
        if job.is_terminal:
            count("WebhookForFinishedJob")
            return {"ok": True, "status": job.status.value}
        if not self._belongs(job, delivery.request_id, delivery.result.ok):
            logger.warning(
                "webhook from another generation of this job ignored", extra={"fal_request_id": delivery.request_id}
            )
            count("WebhookOrphanIgnored")
            return {"ok": True, "ignored": "other request"}
        count("WebhookAccepted")
        done = self._finisher.settle(job, delivery.result)
        return {"ok": True, "status": done.status.value}

    def _find(self, job_id: str, request_id: str) -> Job | None:
        if job_id:
            return self._store.get_job(job_id) if len(job_id) <= 64 else None
        return self._store.find_by_request_id(request_id)

    @staticmethod
    def _belongs(job: Job, request_id: str, succeeded: bool) -> bool:
        """The stored request settles the job either way. When an earlier submit's answer was lost
        (fal has no idempotency key), another generation of this job may complete it — the first
        to finish wins — but its failure is ignored: the stored request may still succeed."""
        if job.fal is None or job.fal.request_id == request_id:
            return True
        return job.submit_attempts > 1 and succeeded
