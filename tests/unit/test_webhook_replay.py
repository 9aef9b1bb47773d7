"""A captured, validly signed fal delivery aimed at other jobs: refused, nothing changed.

The attacker holds one delivery for their own job (its body, fal's signature over its request
id) and the URL it came to (the deployment token, their job's id and MAC). They replay it with
another ``job_id``, with or without their MAC, and with a URL of the victim's job that they may
also have seen. Only the job that recorded the request, or a job whose own lost request it may
be (the victim's URL MAC, our fal account, no other job holding the request id) is settled.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes import video_url
from tests.fakes.system import System, webhook_query
from videogen.domain.errors import InvalidSignature
from videogen.domain.models import Job, JobStatus
from videogen.services.webhook import REFUSED


def ok_body(request_id: str) -> bytes:
    body = {"request_id": request_id, "status": "OK", "payload": {"video": {"url": video_url(request_id)}}}
    return json.dumps(body).encode()


def error_body(request_id: str) -> bytes:
    return json.dumps({"request_id": request_id, "status": "ERROR", "error": "boom", "payload": None}).encode()


def victims(system: System) -> dict[str, Job]:
    return {
        "queued": system.given_job(JobStatus.QUEUED, user_id="victim-1"),
        "queued-submitted-once": system.given_job(JobStatus.QUEUED, user_id="victim-1", submit_attempts=1),
        "resubmitted": system.given_job(JobStatus.SUBMITTED, user_id="victim-2", request_id="req-v", submit_attempts=2),
        "in-progress": system.given_job(JobStatus.IN_PROGRESS, user_id="victim-3", request_id="req-w"),
        "completed": system.given_job(JobStatus.COMPLETED, user_id="victim-4", request_id="req-x"),
        "failed": system.given_job(JobStatus.FAILED, user_id="victim-4", request_id="req-y"),
    }


def refused(system: System, query: dict[str, str], raw: bytes) -> str:
    with pytest.raises(InvalidSignature) as refusal:
        system.webhooks.handle({}, query, raw)
    return refusal.value.detail


@pytest.fixture
def attacker(system: System) -> Job:
    """The attacker's own job, its request recorded: the delivery they captured is for it."""
    return system.given_job(JobStatus.IN_PROGRESS, user_id="attacker", request_id="req-attacker")


@pytest.mark.parametrize("body", [ok_body, error_body], ids=["success", "failure"])
@pytest.mark.parametrize("url", ["job-id-swapped", "attackers-mac", "victims-mac"])
def test_a_replayed_delivery_settles_no_other_job(system: System, attacker: Job, body: Any, url: str) -> None:
    jobs = victims(system)
    before = {name: system.job(job.id) for name, job in jobs.items()}
    ledgers = {job.user_id: list(system.store.ledger(job.user_id)) for job in jobs.values()}
    objects = sorted(system.videos.keys())
    for job in jobs.values():
        if url == "job-id-swapped":
            query = webhook_query(job.id)
        elif url == "attackers-mac":
            query = {**webhook_query(attacker.id, mac=True), "job_id": job.id}
        else:  # the victim's own URL, seen somewhere: the request is the attacker job's
            query = webhook_query(job.id, mac=True)
        assert refused(system, query, body("req-attacker")) == REFUSED
    assert {name: system.job(job.id) for name, job in jobs.items()} == before
    assert {user: list(system.store.ledger(user)) for user in ledgers} == ledgers
    assert system.media.opened == [] and system.store.refunds(attacker.id) == 0
    assert sorted(system.videos.keys()) == objects
    assert system.job(attacker.id) == attacker


@pytest.mark.parametrize("body", [ok_body, error_body], ids=["success", "failure"])
def test_an_unrecorded_request_replayed_without_the_jobs_mac_settles_nothing(system: System, body: Any) -> None:
    """A request no job recorded (e.g. from another fal account's job): only the MAC of the
    named job's URL could make it that job's lost request."""
    jobs = victims(system)
    before = {name: system.job(job.id) for name, job in jobs.items()}
    for job in jobs.values():
        assert refused(system, webhook_query(job.id), body("req-unrecorded")) == REFUSED
        other = system.given_job(JobStatus.QUEUED, user_id="attacker", submit_attempts=1)
        assert refused(system, {**webhook_query(other.id, mac=True), "job_id": job.id}, body("req-x2")) == REFUSED
    assert {name: system.job(job.id) for name, job in jobs.items()} == before
    assert system.media.opened == []
    assert all(system.store.refunds(j.id) == 0 for j in jobs.values() if not j.is_terminal)


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED])
def test_a_finished_job_takes_no_unrecorded_request_even_with_its_mac(system: System, status: JobStatus) -> None:
    job = system.given_job(status, request_id="req-1", submit_attempts=2)
    for body in (ok_body, error_body):
        assert refused(system, webhook_query(job.id, mac=True), body("req-2")) == REFUSED
    assert system.job(job.id) == job and system.media.opened == []


def test_the_lost_request_path_needs_our_pinned_fal_account(system: System) -> None:
    job = system.given_job(JobStatus.QUEUED, submit_attempts=1)
    system.verifier.our_account = False  # no FalWebhookUserId configured
    assert refused(system, webhook_query(job.id, mac=True), ok_body("req-lost")) == REFUSED
    assert system.job(job.id) == job
    system.verifier.our_account = True
    assert system.webhooks.handle({}, webhook_query(job.id, mac=True), ok_body("req-lost"))["status"] == "completed"


def test_a_body_whose_request_id_is_not_the_signed_one_is_refused(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.verifier.signed_request_id = "req-other"  # fal signed another request; the body claims req-1
    assert refused(system, webhook_query(job.id, mac=True), ok_body("req-1")) == REFUSED
    assert system.job(job.id) == job


def test_a_request_settles_at_most_one_job_recorded_elsewhere_means_refused(system: System) -> None:
    """The request id is recorded on job A; B (which may have lost a request) is shown it with B's
    own URL MAC: the ByFalRequest index names A, so B is not settled."""
    a = system.given_job(JobStatus.SUBMITTED, request_id="req-a")
    b = system.given_job(JobStatus.QUEUED, submit_attempts=1)
    assert refused(system, webhook_query(b.id, mac=True), ok_body("req-a")) == REFUSED
    assert system.job(b.id) == b
    assert system.webhooks.handle({}, webhook_query(a.id, mac=True), ok_body("req-a"))["status"] == "completed"


def test_every_refusal_reads_the_same(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    details = {
        refused(system, {**webhook_query(job.id), "token": "wrong"}, ok_body("req-1")),
        refused(system, webhook_query("vid_nobody"), ok_body("req-1")),
        refused(system, webhook_query(job.id), ok_body("req-2")),
        refused(system, {**webhook_query(job.id, mac=True), "mac": "x"}, ok_body("req-2")),
    }
    system.verifier.error = InvalidSignature("bad signature")
    details.add(refused(system, webhook_query(job.id), ok_body("req-1")))
    assert details == {REFUSED}
