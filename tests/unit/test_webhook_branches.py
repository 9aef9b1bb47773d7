"""WebhookService, branch by branch: each decision (refuse, ignore, settle) and the reply it gives.

Complements test_webhook_decision.py: the configured token (an empty one refuses everything), the
lookup by fal request id alone (the ByFalRequest path of the store), and the job id's precedence.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes import video_url
from tests.fakes.system import WEBHOOK_SECRET, WEBHOOK_TOKEN, System, webhook_query
from videogen.adapters.fal import parse_delivery
from videogen.domain.errors import InvalidSignature
from videogen.domain.models import JobStatus
from videogen.services.webhook import WebhookService
from videogen.services.webhook_link import WebhookLinks


def ok_body(request_id: str) -> bytes:
    body = {"request_id": request_id, "status": "OK", "payload": {"video": {"url": video_url(request_id)}}}
    return json.dumps(body).encode()


def error_body(request_id: str) -> bytes:
    return json.dumps({"request_id": request_id, "status": "ERROR", "error": "boom", "payload": None}).encode()


def with_secret(system: System, configured: str) -> WebhookService:
    """The system's webhook service, with ``configured`` as the deployment's webhook secret."""
    links = WebhookLinks(lambda: configured)
    return WebhookService(system.store, system.finisher, system.verifier, links, parse_delivery)


@pytest.mark.parametrize("sent", ["", "anything", WEBHOOK_TOKEN, WEBHOOK_SECRET], ids=["empty", "other", "old", "raw"])
def test_given_no_token_is_configured_then_every_delivery_is_refused(system: System, sent: str) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    with pytest.raises(InvalidSignature):
        with_secret(system, "").handle({}, {"token": sent, "job_id": job.id}, ok_body("req-1"))
    with pytest.raises(InvalidSignature):  # and without a token parameter at all
        with_secret(system, "").handle({}, {"job_id": job.id}, ok_body("req-1"))
    assert system.verifier.verified == 0 and system.store.calls == []
    assert system.job(job.id).status == JobStatus.SUBMITTED


@pytest.mark.parametrize(
    "sent", [WEBHOOK_TOKEN[:-1], WEBHOOK_TOKEN + "x", WEBHOOK_TOKEN.upper(), f" {WEBHOOK_TOKEN}", WEBHOOK_SECRET]
)
def test_given_a_token_that_is_nearly_the_configured_one_then_refused(system: System, sent: str) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    with pytest.raises(InvalidSignature):
        system.webhooks.handle({}, {"token": sent, "job_id": job.id}, ok_body("req-1"))
    assert system.verifier.verified == 0 and system.store.calls == []


def test_given_the_configured_token_then_the_signature_is_checked_next(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    fresh = WebhookLinks(lambda: "fresh-secret").token()
    reply = with_secret(system, "fresh-secret").handle({}, {"token": fresh, "job_id": job.id}, ok_body("req-1"))
    assert reply == {"ok": True, "status": "completed"} and system.verifier.verified == 1


@pytest.mark.parametrize(
    ("body", "status"), [(ok_body, JobStatus.COMPLETED), (error_body, JobStatus.FAILED)], ids=["success", "failure"]
)
def test_given_only_the_request_id_then_the_job_is_found_by_it_and_settled(
    system: System, body: Any, status: JobStatus
) -> None:
    other = system.given_job(JobStatus.SUBMITTED, request_id="req-other")
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-7")
    reply = system.webhooks.handle({}, {"token": WEBHOOK_TOKEN}, body("req-7"))
    assert reply == {"ok": True, "status": status.value}
    assert system.store.calls[0] == "find_by_request_id"  # looked up by the request id, not by a job id
    assert system.job(job.id).status == status and system.job(other.id).status == JobStatus.SUBMITTED
    assert system.store.refunds(job.id) == (1 if status == JobStatus.FAILED else 0)


def test_given_only_an_unknown_request_id_then_refused_and_nothing_else_read(system: System) -> None:
    system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    with pytest.raises(InvalidSignature):
        system.webhooks.handle({}, {"token": WEBHOOK_TOKEN}, ok_body("req-nobody"))
    assert system.store.calls == ["find_by_request_id"] and system.media.opened == []


def test_given_a_job_id_then_it_wins_over_the_request_id(system: System) -> None:
    """A job id in the URL is looked up directly; a request id of another job does not settle it."""
    named = system.given_job(JobStatus.SUBMITTED, request_id="req-named", submit_attempts=1)
    owner = system.given_job(JobStatus.SUBMITTED, request_id="req-owner")
    with pytest.raises(InvalidSignature):
        system.webhooks.handle({}, webhook_query(named.id, mac=True), ok_body("req-owner"))
    assert "find_by_request_id" not in system.store.calls
    assert system.job(named.id).status == system.job(owner.id).status == JobStatus.SUBMITTED


def test_given_an_overlong_job_id_then_unknown_without_reading_the_store(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    with pytest.raises(InvalidSignature):
        system.webhooks.handle({}, {"token": WEBHOOK_TOKEN, "job_id": "v" * 65}, ok_body("req-1"))
    assert system.store.calls == []
    assert system.job(job.id).status == JobStatus.SUBMITTED


def test_given_a_job_id_of_64_characters_then_it_is_looked_up(system: System) -> None:
    with pytest.raises(InvalidSignature):
        system.webhooks.handle({}, {"token": WEBHOOK_TOKEN, "job_id": "v" * 64}, ok_body("req-1"))
    assert system.store.calls == ["get_job"]


def test_given_a_job_without_a_stored_request_then_a_failure_settles_it(system: System) -> None:
    """SubmitToFal died after fal accepted: the first delivery for the job is its request's."""
    job = system.given_job(submit_attempts=1)
    reply = system.webhooks.handle({}, webhook_query(job.id, mac=True), error_body("req-lost"))
    assert reply == {"ok": True, "status": "failed"} and system.store.refunds(job.id) == 1


def test_given_one_attempt_then_another_requests_success_is_refused_and_nothing_downloaded(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1", submit_attempts=1)
    with pytest.raises(InvalidSignature):
        system.webhooks.handle({}, webhook_query(job.id, mac=True), ok_body("req-2"))
    assert system.media.opened == [] and system.job(job.id).status == JobStatus.IN_PROGRESS


def test_given_a_status_delivery_then_ignored_before_any_lookup(system: System) -> None:
    body = json.dumps({"request_id": "req-1", "status": "IN_PROGRESS"}).encode()
    assert system.webhooks.handle({}, {"token": WEBHOOK_TOKEN}, body) == {"ok": True, "ignored": "status"}
    assert system.store.calls == [] and system.verifier.verified == 1
