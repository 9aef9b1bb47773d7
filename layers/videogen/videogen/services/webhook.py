"""POST /webhooks/fal: verify, find the job, and finish it through the completion path.

A delivery changes a job only when it is bound to it:

* its (signed) request id is the one the job recorded; or
* the job may have lost a request id (a submit reached fal and its answer never arrived, so
  ``submit_attempts`` counts more attempts than the job recorded), the URL it came to carries the
  job's MAC (services/webhook_link.py: only we can build it, for that one job), the delivery is
  signed for OUR fal account (``FalWebhookUserId``), and the request id is recorded on no other
  job. A request id another job recorded never settles this one.

Everything else is refused with ONE answer (401 ``invalid_signature``, the same detail whatever
the reason: bad URL token, bad signature, unknown job, a request this job cannot be shown to
own); the reason goes to the log, never to the sender.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from videogen.domain.errors import InvalidSignature
from videogen.domain.models import Job
from videogen.observability import count, logger
from videogen.ports import DeliveryParser, FalDelivery, JobStore, SignatureVerifier, SignedDelivery
from videogen.services.completion import JobFinisher
from videogen.services.webhook_link import MAX_JOB_ID, WebhookLinks

REFUSED = "The delivery was not accepted"


class WebhookService:
    def __init__(
        self,
        store: JobStore,
        finisher: JobFinisher,
        verifier: SignatureVerifier,
        links: WebhookLinks,
        parse: DeliveryParser,
    ) -> None:
        self._store = store
        self._finisher = finisher
        self._verifier = verifier
        self._links = links
        self._parse = parse

    def handle(self, headers: Mapping[str, str], query: Mapping[str, str], raw_body: bytes) -> dict[str, Any]:
        if not self._links.token_ok(query):
            _refuse("bad or missing URL token")
        try:
            signed = self._verifier.verify(headers, raw_body)
        except InvalidSignature as exc:
            _refuse(exc.detail)
        delivery = self._parse(raw_body)
        if delivery is None:
            return {"ok": True, "ignored": "status"}
        if delivery.request_id != signed.request_id:
            _refuse("body request id is not the signed one")
        job = self._find(query.get("job_id", ""), delivery.request_id)
        if job is None:
            _refuse("unknown job")
        logger.set_correlation_id(job.id)
        if job.fal is not None and job.fal.request_id == delivery.request_id:
            if job.is_terminal:
                count("WebhookForFinishedJob")
                return {"ok": True, "status": job.status.value}
            return self._settle(job, delivery)
        self._check_lost_request(job, query, delivery, signed)
        if job.fal is not None and not delivery.result.ok:
            # Another generation of this job failed; the stored request may still succeed.
            logger.warning(
                "webhook from another generation of this job ignored", extra={"fal_request_id": delivery.request_id}
            )
            count("WebhookOrphanIgnored")
            return {"ok": True, "ignored": "other request"}
        count("WebhookLostRequestAccepted")
        return self._settle(job, delivery)

    def _settle(self, job: Job, delivery: FalDelivery) -> dict[str, Any]:
        count("WebhookAccepted")
        done = self._finisher.settle(job, delivery.result)
        return {"ok": True, "status": done.status.value}

    def _check_lost_request(
        self, job: Job, query: Mapping[str, str], delivery: FalDelivery, signed: SignedDelivery
    ) -> None:
        """Refuse unless this unrecorded request can only be one of the job's own lost ones: when
        our submit's answer is lost (fal has no idempotency key), the job never learns the request
        id, and fal's webhook to the URL built for this job is the only news of it."""
        recorded = 1 if job.fal is not None else 0
        if job.is_terminal or job.submit_attempts <= recorded:
            _refuse("request not recorded on the job, and none can be lost")
        if not signed.our_account:
            _refuse("unrecorded request without a pinned fal account")
        if query.get("job_id", "") != job.id or not self._links.mac_ok(query):
            _refuse("unrecorded request without the job's URL MAC")
        owner = self._store.find_by_request_id(delivery.request_id)
        if owner is not None and owner.id != job.id:
            _refuse("request recorded on another job")

    def _find(self, job_id: str, request_id: str) -> Job | None:
        if job_id:
            return self._store.get_job(job_id) if len(job_id) <= MAX_JOB_ID else None
        return self._store.find_by_request_id(request_id)


def _refuse(reason: str) -> NoReturn:
    """The one refusal: the same status and body for every reason (the log has the reason)."""
    logger.warning("webhook refused", extra={"reason": reason})
    count("WebhookRejected")
    raise InvalidSignature(REFUSED)
