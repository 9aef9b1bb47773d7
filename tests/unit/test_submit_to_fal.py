"""SubmitToFal (the state machine's first task): every branch, on fakes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes import video_url
from tests.fakes.system import System
from videogen import crash
from videogen.domain.errors import FalRejectedError, FalTransientError
from videogen.domain.models import JobStatus
from videogen.observability import metrics


def test_given_no_job_when_submitting_then_done_without_calling_fal(system: System) -> None:
    assert system.submit.run("vid_missing") == {"done": True}
    assert system.fal.calls == []


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED])
def test_given_a_terminal_job_when_submitting_then_done_without_calling_fal(system: System, status: JobStatus) -> None:
    job = system.given_job(status)
    assert system.submit.run(job.id) == {"done": True}
    assert system.fal.calls == []


def test_given_a_stored_fal_request_when_submitting_again_then_not_done_and_no_call(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    assert system.submit.run(job.id) == {"done": False}  # the poll loop takes over
    assert system.fal.calls == []
    assert system.job(job.id).submit_attempts == 1


def test_given_a_job_past_its_deadline_when_submitting_then_failed_and_refunded_without_calling_fal(
    system: System,
) -> None:
    job = system.given_job(deadline_in_s=-1)
    assert system.submit.run(job.id) == {"done": True}
    assert system.fal.calls == []
    failed = system.job(job.id)
    # fal never held it: submit_failed, not expired
    assert failed.status == JobStatus.FAILED and failed.error and failed.error.code == "submit_failed"
    assert system.store.refunds(job.id) == 1
    assert system.events.types_for(job.id) == ["Job Failed"]


def test_given_a_queued_job_when_submitted_then_fal_gets_the_input_and_webhook_and_the_request_is_stored(
    system: System,
) -> None:
    job = system.given_job()
    assert system.submit.run(job.id) == {"done": False}
    [(endpoint, payload, webhook)] = system.fal.submitted
    assert endpoint == system.registry.for_job(job.model).fal_endpoint
    assert payload == job.input
    assert webhook is not None and f"job_id={job.id}" in webhook
    stored = system.job(job.id)
    assert stored.status == JobStatus.SUBMITTED and stored.fal == system.fal.request("req-1")
    assert stored.submit_attempts == 1 and stored.progress.message == "waiting in queue"
    assert system.store.find_by_request_id("req-1") == stored


def test_given_the_attempt_cannot_be_recorded_when_submitting_then_no_call_and_done_if_the_job_ended(
    system: System,
) -> None:
    job = system.given_job()
    # another actor ends the job between the read and the attempt's conditional write
    system.store.before("record_submit_attempt", lambda: system.cancel.run(system.job(job.id)))
    assert system.submit.run(job.id) == {"done": True}
    assert system.fal.calls == []
    assert system.job(job.id).status == JobStatus.CANCELED


def test_given_another_run_stored_a_request_first_when_recording_the_attempt_then_not_done_and_no_call(
    system: System,
) -> None:
    job = system.given_job()
    system.store.before("record_submit_attempt", lambda: system.submit.run(job.id))  # a duplicate task run
    assert system.submit.run(job.id) == {"done": False}
    assert system.fal.count("submit") == 1  # only the other run's


def test_given_an_earlier_attempt_died_after_calling_fal_when_retried_then_it_submits_again(system: System) -> None:
    job = system.given_job(submit_attempts=1)  # attempt 1 counted, its request id lost
    assert system.submit.run(job.id) == {"done": False}
    assert system.fal.count("submit") == 1
    stored = system.job(job.id)
    assert stored.submit_attempts == 2 and stored.status == JobStatus.SUBMITTED


def test_given_fal_rejects_the_request_when_submitting_then_failed_submit_failed_with_one_refund(
    system: System,
) -> None:
    job = system.given_job()
    system.fal.on_submit(FalRejectedError(401, "unauthorized", "bad key"))
    assert system.submit.run(job.id) == {"done": True}
    failed = system.job(job.id)
    assert failed.status == JobStatus.FAILED and failed.error and failed.error.code == "submit_failed"
    assert "401" in failed.error.message
    assert system.store.refunds(job.id) == 1
    assert system.store.get_balance(job.user_id).active_jobs == 0


@pytest.fixture
def resubmissions() -> Iterator[Callable[[], int]]:
    """How many times SubmitToFal signalled a resubmission (the FalResubmitted metric)."""
    metrics.clear_metrics()
    yield lambda: sum(int(v) for v in metrics.metric_set.get("FalResubmitted", {}).get("Value", []))
    metrics.clear_metrics()


def test_given_an_answer_lost_on_the_way_back_when_retried_then_it_counts_as_a_resubmission(
    system: System, resubmissions: Callable[[], int]
) -> None:
    job = system.given_job()
    system.fal.on_submit(FalTransientError("read timeout", error_type="timeout"))  # fal may have queued it
    with pytest.raises(FalTransientError):
        system.submit.run(job.id)
    stored = system.job(job.id)
    assert stored.status == JobStatus.QUEUED and stored.fal is None and stored.submit_attempts == 1
    assert system.store.refunds(job.id) == 0 and resubmissions() == 0
    assert system.submit.run(job.id) == {"done": False}  # the state machine's retry
    assert system.job(job.id).submit_attempts == 2 and resubmissions() == 1


@pytest.mark.parametrize("status", [429, 503])
def test_given_fal_refused_the_submit_when_retried_then_no_resubmission_is_signalled(
    system: System, resubmissions: Callable[[], int], status: int
) -> None:
    """A 429/503 means fal took nothing: the retry is the first request that reaches it."""
    job = system.given_job()
    refused = FalTransientError(f"{status} from fal", status=status, refused=True)
    system.fal.on_submit(refused, refused)
    for _ in range(2):
        with pytest.raises(FalTransientError):
            system.submit.run(job.id)
        assert system.job(job.id).submit_attempts == 0
    assert system.submit.run(job.id) == {"done": False}
    stored = system.job(job.id)
    assert stored.submit_attempts == 1 and stored.status == JobStatus.SUBMITTED and resubmissions() == 0


def test_given_the_refusal_cannot_be_recorded_then_the_error_still_reaches_the_retry(system: System) -> None:
    job = system.given_job()
    system.fal.on_submit(FalTransientError("503", status=503, refused=True))
    system.store.before("record_submit_refused", lambda: system.cancel.run(system.job(job.id)))  # canceled meanwhile
    with pytest.raises(FalTransientError):
        system.submit.run(job.id)
    assert system.job(job.id).status == JobStatus.CANCELED and system.store.refunds(job.id) == 1


def test_given_the_job_moved_on_before_the_request_was_stored_then_the_orphan_is_canceled_at_fal(
    system: System,
) -> None:
    job = system.given_job()
    system.store.before("mark_submitted", lambda: system.cancel.run(system.job(job.id)))  # canceled meanwhile
    assert system.submit.run(job.id) == {"done": True}
    assert system.fal.calls == [("submit", system.registry.for_job(job.model).fal_endpoint), ("cancel", "req-1")]
    assert system.job(job.id).status == JobStatus.CANCELED and system.job(job.id).fal is None
    assert system.store.refunds(job.id) == 1


def test_given_the_orphan_cancel_fails_at_fal_then_submit_still_ends_quietly(system: System) -> None:
    job = system.given_job()
    system.store.before("mark_submitted", lambda: system.cancel.run(system.job(job.id)))
    system.fal.script_cancel("req-1", FalTransientError("timeout"))
    assert system.submit.run(job.id) == {"done": True}
    assert system.fal.count("cancel") == 1


def test_given_submit_died_after_fal_accepted_then_the_lost_generations_webhook_completes_the_job(
    system: System,
) -> None:
    """The request id was never stored, but the webhook URL names the job: the lost generation's
    delivery completes it, and the state machine's retry of SubmitToFal then finds it done."""
    job = system.given_job()
    crash.arm(crash.AFTER_FAL_SUBMIT)
    with pytest.raises(crash.CrashPointReached):
        system.submit.run(job.id)
    lost = system.job(job.id)
    assert lost.fal is None and lost.submit_attempts == 1
    [(_, _, webhook)] = system.fal.submitted
    assert webhook is not None and f"job_id={job.id}" in webhook
    body = {"request_id": "req-1", "status": "OK", "payload": {"video": {"url": video_url("req-1")}}}
    query = {k: v[0] for k, v in parse_qs(urlsplit(webhook).query).items()}  # the URL fal was given
    assert system.webhooks.handle({}, query, json.dumps(body).encode()) == {
        "ok": True,
        "status": "completed",
    }
    assert system.submit.run(job.id) == {"done": True}  # the retry
    assert system.fal.count("submit") == 1 and system.store.refunds(job.id) == 0


def test_given_submit_died_after_fal_accepted_and_no_webhook_comes_then_the_retry_submits_once_more(
    system: System,
) -> None:
    job = system.given_job()
    crash.arm(crash.AFTER_FAL_SUBMIT)
    with pytest.raises(crash.CrashPointReached):
        system.submit.run(job.id)
    assert system.submit.run(job.id) == {"done": False}
    stored = system.job(job.id)
    assert stored.submit_attempts == 2 and stored.fal == system.fal.request("req-2")
    assert system.fal.count("submit") == 2  # fal has no idempotency key: the lost generation and the retry
