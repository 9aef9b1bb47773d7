"""CancelJob (services/cancel.py) as the client reads it: the ``detail`` of each refusal (the
problem body's text, docs/api.md), and a job generating or ended refused before any write.

Complements test_cancel_branches.py (statuses, codes and credits) and test_cancel_job.py (races).
"""

from __future__ import annotations

import pytest

from tests.fakes import completed, in_progress, in_queue
from tests.fakes.system import System
from videogen.domain.errors import (
    DomainError,
    FalTransientError,
    MediaTransferError,
    NotCancelable,
    ServiceUnavailable,
    TransitionRejected,
)
from videogen.domain.models import CancelIntent, Job, JobStatus


def refusal(system: System, job: Job) -> tuple[type[DomainError], str]:
    with pytest.raises(DomainError) as caught:
        system.cancel.run(job)
    return type(caught.value), caught.value.detail


def test_a_job_the_deadline_is_canceling_is_refused_as_past_its_deadline(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    job = system.store.request_cancel(job.id, CancelIntent.DEADLINE)
    assert refusal(system, job) == (NotCancelable, "The job is past its deadline")
    assert system.fal.calls == []


def test_a_job_that_keeps_moving_is_refused_after_three_tries_with_its_status(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.store.fail("request_cancel", TransitionRejected(job.id), times=3)
    assert refusal(system, job) == (NotCancelable, "The job is submitted")
    assert system.store.calls.count("request_cancel") == 3 and system.fal.calls == []


def test_fal_unreachable_is_a_retry_shortly(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", FalTransientError("timeout"))
    assert refusal(system, job) == (ServiceUnavailable, "The provider could not be reached; retry shortly")


def test_a_finished_video_being_stored_is_generation_has_finished(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    system.videos.fail_puts(MediaTransferError("S3 down"))
    assert refusal(system, job) == (NotCancelable, "Generation has finished")


def test_a_generation_fal_finished_is_generation_has_finished(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", completed())
    assert refusal(system, job) == (NotCancelable, "Generation has finished")
    assert system.job(job.id).status == JobStatus.COMPLETED


def test_a_generation_that_started_is_generation_has_started(system: System) -> None:
    job = system.given_job(JobStatus.SUBMITTED, request_id="req-1")
    system.fal.script_status("req-1", in_queue(0), in_progress("frame 1"))
    system.fal.script_cancel("req-1", "already_completed")
    assert refusal(system, job) == (NotCancelable, "Generation has started")
    assert system.job(job.id).status == JobStatus.IN_PROGRESS
