"""WebhookService: which fal deliveries settle a job, which are refused or ignored.

The signature itself is the verifier's (tests/unit/test_webhook_signature.py); here it accepts
every delivery unless a test refuses it. Bodies are fal's, parsed by the fal adapter's parser.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes import video_url
from tests.fakes.system import System, webhook_query
from videogen.domain.errors import BadRequest, InvalidSignature, MediaTransferError, ServiceUnavailable, StoreBusy
from videogen.domain.models import Job, JobStatus
from videogen.services.webhook import REFUSED


def ok_body(request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "status": "OK", "payload": {"video": {"url": video_url(request_id)}}}


def error_body(request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, "status": "ERROR", "error": "Invalid status code: 500", "payload": None}


def deliver(
    system: System, body: dict[str, Any] | bytes, job: Job | None = None, *, mac: bool = False, **query: str
) -> dict[str, Any]:
    """Deliver to the job's webhook URL: with its MAC as we built it for fal (``mac``), or with the
    job id alone (as in a URL whose job id was swapped)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return system.webhooks.handle({}, {**webhook_query(job.id if job else None, mac=mac), **query}, raw)


@pytest.mark.parametrize("token", ["", "not-the-token"])
def test_given_a_bad_token_then_refused_before_the_signature_is_even_checked(system: System, token: str) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    with pytest.raises(InvalidSignature):
        deliver(system, ok_body("req-1"), job, token=token)
    assert system.verifier.verified == 0 and system.store.calls == []


def test_given_a_bad_signature_then_refused_and_nothing_read(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.verifier.error = InvalidSignature("bad signature")
    with pytest.raises(InvalidSignature):
        deliver(system, ok_body("req-1"), job)
    assert system.store.calls == [] and system.job(job.id).status == JobStatus.SUBMITTED


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"status": "OK"}'])
def test_given_a_body_that_is_no_fal_webhook_then_bad_request(system: System, raw: bytes) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    with pytest.raises(BadRequest):
        deliver(system, raw, job)


@pytest.mark.parametrize("status", ["IN_PROGRESS", "IN_QUEUE", "SOMETHING_NEW"])
def test_given_a_status_we_do_not_act_on_then_acknowledged_and_ignored(system: System, status: str) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    assert deliver(system, {"request_id": "req-1", "status": status}, job) == {"ok": True, "ignored": "status"}
    assert system.store.calls == [] and system.job(job.id).status == JobStatus.SUBMITTED


@pytest.mark.parametrize("query", [{"job_id": "vid_unknown"}, {"job_id": "v" * 65}, {}])
def test_given_an_unknown_job_then_refused(system: System, query: dict[str, str]) -> None:
    with pytest.raises(InvalidSignature) as refused:
        deliver(system, ok_body("req-nobody"), **query)
    assert refused.value.detail == REFUSED and system.media.opened == []


def test_given_no_job_id_in_the_url_then_the_job_is_found_by_its_request_id(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    assert deliver(system, ok_body("req-1")) == {"ok": True, "status": "completed"}
    assert system.job(job.id).status == JobStatus.COMPLETED


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED])
def test_given_a_finished_job_then_its_status_is_answered_and_nothing_changes(
    system: System, status: JobStatus
) -> None:
    job = system.given_job(status, request_id="req-1")
    assert deliver(system, ok_body("req-1"), job) == {"ok": True, "status": status.value}
    assert system.job(job.id) == job and system.media.opened == []


def test_given_a_success_for_the_stored_request_then_completed_once(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    assert deliver(system, ok_body("req-1"), job) == {"ok": True, "status": "completed"}
    done = system.job(job.id)
    assert deliver(system, ok_body("req-1"), job) == {"ok": True, "status": "completed"}  # fal delivers again
    assert system.job(job.id) == done and len(system.videos.keys()) == 1
    assert system.events.types_for(job.id) == ["Job Completed"]


@pytest.mark.parametrize(
    "body",
    [
        error_body("req-1"),
        {"request_id": "req-1", "status": "OK", "payload": None, "payload_error": "not JSON serializable"},
        {"request_id": "req-1", "status": "OK", "payload": {"images": []}},
    ],
    ids=["error", "payload-error", "no-video"],
)
def test_given_a_failure_for_the_stored_request_then_failed_and_refunded_once(
    system: System, body: dict[str, Any]
) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    assert deliver(system, body, job) == {"ok": True, "status": "failed"}
    assert deliver(system, body, job) == {"ok": True, "status": "failed"}
    failed = system.job(job.id)
    assert failed.error and failed.error.code == "generation_failed"
    assert system.store.refunds(job.id) == 1


def test_given_the_request_id_was_never_stored_then_the_delivery_to_the_jobs_url_settles_it(system: System) -> None:
    job = system.given_job(submit_attempts=1)  # SubmitToFal died after fal accepted
    assert deliver(system, ok_body("req-lost"), job, mac=True) == {"ok": True, "status": "completed"}


def test_given_another_generation_succeeds_after_a_lost_submit_answer_then_it_completes_the_job(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-2", submit_attempts=2)
    assert deliver(system, ok_body("req-lost"), job, mac=True) == {"ok": True, "status": "completed"}
    assert system.media.opened == [video_url("req-lost")]


def test_given_another_generation_fails_after_a_lost_submit_answer_then_ignored(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-2", submit_attempts=2)
    assert deliver(system, error_body("req-lost"), job, mac=True) == {"ok": True, "ignored": "other request"}
    assert system.job(job.id).status == JobStatus.SUBMITTED and system.store.refunds(job.id) == 0


@pytest.mark.parametrize("body", [ok_body("req-other"), error_body("req-other")], ids=["success", "failure"])
@pytest.mark.parametrize("mac", [False, True], ids=["no-mac", "mac"])
def test_given_a_request_the_job_never_recorded_with_one_attempt_then_refused(
    system: System, body: dict[str, Any], mac: bool
) -> None:
    """One attempt, and its request id is recorded: no other request can be this job's."""
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", submit_attempts=1)
    with pytest.raises(InvalidSignature):
        deliver(system, body, job, mac=mac)
    assert system.job(job.id) == job and system.media.opened == []


def test_given_the_copy_breaks_then_it_raises_for_a_redelivery_and_the_next_one_completes(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.media.fail(video_url("req-1"), MediaTransferError("cdn down"))
    with pytest.raises(MediaTransferError):  # 503: fal delivers again
        deliver(system, ok_body("req-1"), job)
    assert system.job(job.id).status == JobStatus.SUBMITTED and system.videos.keys() == []
    assert deliver(system, ok_body("req-1"), job) == {"ok": True, "status": "completed"}


def test_given_the_store_stays_busy_then_it_raises_for_a_redelivery_and_the_stored_video_is_reused(
    system: System,
) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.fail("complete", StoreBusy("kept conflicting"))
    with pytest.raises(StoreBusy) as busy:  # a ServiceUnavailable: 503, fal delivers again
        deliver(system, ok_body("req-1"), job)
    assert isinstance(busy.value, ServiceUnavailable)
    assert system.job(job.id).status == JobStatus.SUBMITTED and len(system.videos.keys()) == 1
    assert deliver(system, ok_body("req-1"), job) == {"ok": True, "status": "completed"}
    assert system.media.opened == [video_url("req-1")]  # downloaded once
