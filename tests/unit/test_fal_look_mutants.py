"""One look at fal and what the tasks around it say (services/fal_poll.py, fal_check.py,
expiry.py): the progress a status means, a failure fal reports in its status, a cancel that fal
answers "already completed" for a job still generating, and the log lines of a failed look."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes import completed, in_progress, in_queue
from tests.fakes.system import System
from videogen.domain.endings import FailureCode
from videogen.domain.errors import FalRejectedError, FalTransientError
from videogen.domain.models import CancelIntent, JobError, JobStatus, Progress
from videogen.ports import FalResult
from videogen.services.fal_poll import progress_of

Logged = Callable[..., list[tuple[Any, ...]]]
TIMING = {"poll_base_s": 5, "poll_factor": 1.5, "poll_cap_s": 60}


def test_the_progress_of_each_fal_status() -> None:
    assert progress_of(in_queue(3)) == (JobStatus.SUBMITTED, Progress(queue_position=3, message="waiting in queue"))
    assert progress_of(in_progress()) == (JobStatus.IN_PROGRESS, Progress(message="generating"))
    assert progress_of(in_progress("rendering")) == (JobStatus.IN_PROGRESS, Progress(message="rendering"))


@pytest.mark.parametrize(
    "answer",
    [FalResult(video_url="https://v3.fal.media/x.mp4"), FalTransientError("503"), FalRejectedError(403, None, "key")],
    ids=["a-video", "transient", "rejected"],
)
def test_a_failure_in_fals_status_whose_result_cannot_say_more_fails_the_job_with_the_statuss_error(
    system: System, answer: object
) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", completed(error="Request timed out", error_type="request_timeout"))
    system.fal.script_result("req-1", answer)
    assert system.poller.poll_and_settle(job) is True
    failed = system.job(job.id)
    assert failed.error is not None and (failed.error.code, failed.error.message) == (
        "provider_timeout",
        "Request timed out",
    )
    assert system.fal.count("result") == 1


def test_a_failure_in_fals_status_takes_the_results_detail(system: System) -> None:
    job = system.given_job(JobStatus.IN_PROGRESS, request_id="req-1")
    system.fal.script_status("req-1", completed(error="Invalid status code: 422"))
    system.fal.script_result(
        "req-1", FalResult(error="422: prompt: flagged", code=FailureCode.CONTENT_POLICY, field="prompt")
    )
    assert system.poller.poll_and_settle(job) is True
    failed = system.job(job.id)
    assert failed.error == JobError(code="content_policy", message="422: prompt: flagged", field="prompt")


def test_a_user_cancel_fal_says_came_too_late_keeps_a_generating_job_active(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1", cancel_requested=CancelIntent.USER)
    system.fal.script_status("req-1", in_queue(0), in_progress("rendering"))
    system.fal.script_cancel("req-1", "already_completed")
    assert system.poller.poll_and_settle(job) is False
    assert system.job(job.id).status == JobStatus.IN_PROGRESS
    assert system.job(job.id).progress.message == "rendering"


def test_a_check_that_could_not_reach_fal_logs_why_and_asks_again(system: System, logged: Logged) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalTransientError("timeout"))
    assert system.check.run(job.id, 0, TIMING)["done"] is False
    assert logged("check could not finish this round", "job_id", "error") == [(job.id, "FalTransientError")]


def test_a_deadline_whose_last_look_failed_logs_why_and_still_fails_the_job(system: System, logged: Logged) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalTransientError("timeout"))
    assert system.expire.run(job.id, "deadline_exceeded", True).status == JobStatus.FAILED  # type: ignore[union-attr]
    assert logged("last look / cancel at fal failed", "job_id", "error") == [(job.id, "FalTransientError")]


def test_a_failure_with_a_cause_logs_its_first_200_characters(system: System, logged: Logged) -> None:
    job = system.given_job()
    failed = system.expire.run(job.id, "submit_failed", False, cause="c" * 300)
    assert failed is not None and failed.error is not None
    assert failed.error.message == "the provider could not accept the request"
    assert logged("failing job", "job_id", "cause") == [(job.id, "c" * 200)]


def test_a_reason_without_a_message_of_its_own_is_its_own_message(system: System) -> None:
    job = system.given_job()
    failed = system.expire.run(job.id, "operator_stopped", False)
    assert failed is not None and failed.error is not None
    assert (failed.error.code, failed.error.message) == ("generation_failed", "operator_stopped")
