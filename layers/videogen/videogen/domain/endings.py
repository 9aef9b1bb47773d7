"""How a job ends when it does not complete: its status, docs/api.md's ``error.code`` and message.

The one place that decides what a provider failure means for a job whose cancel WE asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from videogen.domain.models import ALLOWED_FROM, CancelIntent, Job, JobStatus


@dataclass(frozen=True)
class Ending:
    status: JobStatus  # FAILED or CANCELED (a refund either way)
    code: str
    message: str


# What a failed job's error.message says for the failure codes of the workflow.
FAILURE_MESSAGES = {
    "deadline_exceeded": "the provider did not finish in time",
    "submit_failed": "the provider could not accept the request",
}

USER_CANCELED = Ending(JobStatus.CANCELED, "canceled", "canceled by the user")
DEADLINE_EXCEEDED = Ending(JobStatus.FAILED, "deadline_exceeded", FAILURE_MESSAGES["deadline_exceeded"])


def provider_failure_ending(job: Job, error: str | None) -> Ending:
    """What a failure reported by fal (status, result or webhook) means for ``job`` as stored now.

    fal reports a request WE cancelled as a failure ("Request was cancelled"), and its webhook can
    arrive before our cancel call returns. So a failure of a job carrying a cancel intent ends as
    that intent asked: the user's → canceled, the deadline's → deadline_exceeded. The user's intent
    counts only while the job may still be canceled: once fal was seen generating (the cancel
    answered 409), a failure is the provider's own. A success never comes here: a video fal
    finished always completes the job.
    """
    if job.cancel_requested == CancelIntent.DEADLINE:
        return DEADLINE_EXCEEDED
    if job.cancel_requested == CancelIntent.USER and job.status in ALLOWED_FROM[JobStatus.CANCELED]:
        return USER_CANCELED
    return Ending(JobStatus.FAILED, "generation_failed", error or "the provider reported a failure")
