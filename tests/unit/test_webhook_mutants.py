"""WebhookService (services/webhook.py) as operators see it: the one refusal (its body, its
metric, the reason in the log), the metric of each accepting branch, and the bounds of the
lost-request rule (how many submit attempts a job needs before an unrecorded request may be its).

Complements test_webhook_branches.py and test_webhook_decision.py (the decisions and replies).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tests.fakes import video_url
from tests.fakes.system import LINKS, System, webhook_query
from videogen.adapters.fal import parse_delivery
from videogen.domain.errors import InvalidSignature
from videogen.domain.models import JobStatus
from videogen.observability import logger
from videogen.ports import SignedDelivery
from videogen.services.webhook import REFUSED, WebhookService
from videogen.services.webhook_link import MAX_JOB_ID

Counted = Callable[[str], int]
Logged = Callable[..., list[tuple[Any, ...]]]
METRICS = ("WebhookAccepted", "WebhookLostRequestAccepted", "WebhookForFinishedJob", "WebhookOrphanIgnored")


def ok_body(request_id: str) -> bytes:
    body = {"request_id": request_id, "status": "OK", "payload": {"video": {"url": video_url(request_id)}}}
    return json.dumps(body).encode()


def error_body(request_id: str) -> bytes:
    return json.dumps({"request_id": request_id, "status": "ERROR", "error": "boom", "payload": None}).encode()


def refused(system: System, query: Mapping[str, str], body: bytes) -> InvalidSignature:
    with pytest.raises(InvalidSignature) as caught:
        system.webhooks.handle({}, query, body)
    return caught.value


def metrics(counted: Counted) -> dict[str, int]:
    return {name: counted(name) for name in METRICS if counted(name)}


def assert_refused_for(counted: Counted, logged: Logged, reason: str) -> None:
    assert logged("webhook refused", "reason") == [(reason,)]
    assert counted("WebhookRejected") == 1 and metrics(counted) == {}


def test_a_refusal_answers_the_one_detail_counts_it_and_logs_the_reason(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    error = refused(system, {"token": "wrong", "job_id": job.id}, ok_body("req-1"))
    assert error.detail == REFUSED == "The delivery was not accepted" and error.status == 401
    assert_refused_for(counted, logged, "bad or missing URL token")


def test_a_bad_signature_is_refused_with_the_verifier_s_detail_as_the_logged_reason(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.verifier.error = InvalidSignature("signature expired")
    assert refused(system, webhook_query(job.id), ok_body("req-1")).detail == REFUSED
    assert_refused_for(counted, logged, "signature expired")


def test_a_body_for_another_request_than_the_signed_one_is_refused(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.verifier.signed_request_id = "req-2"
    refused(system, webhook_query(job.id), ok_body("req-1"))
    assert_refused_for(counted, logged, "body request id is not the signed one")
    assert system.job(job.id).status == JobStatus.SUBMITTED


def test_an_unknown_job_is_refused(system: System, counted: Counted, logged: Logged) -> None:
    refused(system, webhook_query("vid_missing"), ok_body("req-1"))
    assert_refused_for(counted, logged, "unknown job")


@pytest.mark.parametrize(("length", "looked_up"), [(MAX_JOB_ID, True), (MAX_JOB_ID + 1, False)])
def test_a_job_id_longer_than_the_bound_is_never_looked_up(
    system: System, logged: Logged, length: int, looked_up: bool
) -> None:
    refused(system, webhook_query("v" * length), ok_body("req-1"))
    assert ("get_job" in system.store.calls) is looked_up
    assert "find_by_request_id" not in system.store.calls
    assert logged("webhook refused", "reason") == [("unknown job",)]


def test_the_verifier_is_given_the_headers_and_the_raw_body(system: System) -> None:
    seen: list[tuple[Mapping[str, str], bytes]] = []

    class Spy:
        def verify(self, headers: Mapping[str, str], raw_body: bytes) -> SignedDelivery:
            seen.append((headers, raw_body))
            return SignedDelivery("req-1", True)

    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    service = WebhookService(system.store, system.finisher, Spy(), LINKS, parse_delivery)
    headers, body = {"x-fal-webhook-signature": "sig"}, ok_body("req-1")
    assert service.handle(headers, webhook_query(job.id), body) == {"ok": True, "status": "completed"}
    assert seen == [(headers, body)]


def test_a_status_only_delivery_is_ignored_and_changes_nothing(system: System, counted: Counted) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    body = json.dumps({"request_id": "req-1", "status": "IN_PROGRESS"}).encode()
    assert system.webhooks.handle({}, webhook_query(job.id), body) == {"ok": True, "ignored": "status"}
    assert system.job(job.id).status == JobStatus.SUBMITTED and metrics(counted) == {}
    assert counted("WebhookRejected") == 0


def test_the_recorded_request_is_accepted_under_the_job_s_correlation_id(system: System, counted: Counted) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    logger.set_correlation_id(None)
    assert system.webhooks.handle({}, webhook_query(job.id), ok_body("req-1")) == {"ok": True, "status": "completed"}
    assert logger.get_correlation_id() == job.id
    assert metrics(counted) == {"WebhookAccepted": 1}
    logger.set_correlation_id(None)


def test_a_delivery_for_a_finished_job_is_counted_and_answers_its_status(system: System, counted: Counted) -> None:
    job = system.given_job(JobStatus.FAILED, request_id="req-1")
    assert system.webhooks.handle({}, webhook_query(job.id), ok_body("req-1")) == {"ok": True, "status": "failed"}
    assert metrics(counted) == {"WebhookForFinishedJob": 1} and system.job(job.id).status == JobStatus.FAILED


@pytest.mark.parametrize(("recorded", "attempts"), [(None, 1), ("req-1", 2)], ids=["none-recorded", "one-recorded"])
def test_a_lost_request_is_accepted_once_more_attempts_were_made_than_recorded(
    system: System, counted: Counted, recorded: str | None, attempts: int
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id=recorded, submit_attempts=attempts)
    reply = system.webhooks.handle({}, webhook_query(job.id, mac=True), ok_body("req-lost"))
    assert reply == {"ok": True, "status": "completed"}
    assert metrics(counted) == {"WebhookAccepted": 1, "WebhookLostRequestAccepted": 1}


@pytest.mark.parametrize(
    ("status", "recorded", "attempts"),
    [
        (JobStatus.SUBMITTED, None, 0),
        (JobStatus.SUBMITTED, "req-1", 1),
        (JobStatus.FAILED, "req-1", 2),
        (JobStatus.FAILED, None, 1),
    ],
    ids=["no-attempt", "all-recorded", "ended", "ended-unsubmitted"],
)
def test_an_unrecorded_request_is_refused_when_none_can_be_lost(
    system: System, counted: Counted, logged: Logged, status: JobStatus, recorded: str | None, attempts: int
) -> None:
    job = system.given_job(status, request_id=recorded, submit_attempts=attempts)
    refused(system, webhook_query(job.id, mac=True), ok_body("req-lost"))
    assert_refused_for(counted, logged, "request not recorded on the job, and none can be lost")
    assert system.job(job.id).status == status


def test_an_unrecorded_request_signed_for_another_account_is_refused(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, submit_attempts=1)
    system.verifier.our_account = False
    refused(system, webhook_query(job.id, mac=True), ok_body("req-lost"))
    assert_refused_for(counted, logged, "unrecorded request without a pinned fal account")


def test_an_unrecorded_request_without_the_job_s_mac_is_refused(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, submit_attempts=1)
    refused(system, webhook_query(job.id), ok_body("req-lost"))
    assert_refused_for(counted, logged, "unrecorded request without the job's URL MAC")


def test_an_unrecorded_request_another_job_recorded_is_refused(
    system: System, counted: Counted, logged: Logged
) -> None:
    other = system.given_job(JobStatus.SUBMITTED, request_id="req-other")
    job = system.given_job(JobStatus.SUBMITTED, submit_attempts=1)
    refused(system, webhook_query(job.id, mac=True), ok_body("req-other"))
    assert_refused_for(counted, logged, "request recorded on another job")
    assert system.job(other.id).status == system.job(job.id).status == JobStatus.SUBMITTED


def test_a_failure_of_another_generation_is_ignored_counted_and_logged(
    system: System, counted: Counted, logged: Logged
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", submit_attempts=2)
    reply = system.webhooks.handle({}, webhook_query(job.id, mac=True), error_body("req-2"))
    assert reply == {"ok": True, "ignored": "other request"}
    assert metrics(counted) == {"WebhookOrphanIgnored": 1} and counted("WebhookRejected") == 0
    assert logged("webhook from another generation of this job ignored", "fal_request_id") == [("req-2",)]
    assert system.job(job.id).status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0
