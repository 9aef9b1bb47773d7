"""POST /webhooks/fal: verify, find the job, and finish it through the completion path."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

from videogen.domain.errors import InvalidSignature
from videogen.domain.models import Job
from videogen.observability import count, logger
from videogen.ports import DeliveryParser, JobStore, SignatureVerifier
from videogen.services.completion import JobFinisher


class WebhookService:
    def __init__(
        self,
        store: JobStore,
        finisher: JobFinisher,
        verifier: SignatureVerifier,
        token: Callable[[], str],
        parse: DeliveryParser,
    ) -> None:
        self._store = store
        self._finisher = finisher
        self._verifier = verifier
        self._token = token
        self._parse = parse

    def handle(self, headers: Mapping[str, str], query: Mapping[str, str], raw_body: bytes) -> dict[str, Any]:
        expected = self._token()
        if not expected or not hmac.compare_digest(query.get("token", "").encode(), expected.encode()):
            count("WebhookRejected")
            raise InvalidSignature("bad or missing webhook token")
        self._verifier.verify(headers, raw_body)
        delivery = self._parse(raw_body)
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
