"""How a job ends when it does not complete: its status, the contract's ``error.code`` and message.

The ONE home of the failure codes (docs/api.md, "Job error codes"): the codes themselves
(:class:`FailureCode`, also the OpenAPI enum), what each failure fal reports means
(:func:`fal_failure`, per docs/fal.md's errors), what the workflow's own endings mean, the codes
stored before these (mapped on read by :func:`public_error`), and what a provider failure means
for a job whose cancel WE asked for (:func:`provider_failure_ending`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from videogen.domain.models import ALLOWED_FROM, CancelIntent, Job, JobError, JobStatus


class FailureCode(StrEnum):
    """Why a failed job failed (its error.code): exactly the contract's list; every one refunds the credits."""

    INVALID_INPUT = "invalid_input"  # fal rejected the input (a validation error naming it)
    CONTENT_POLICY = "content_policy"  # the provider's safety check refused it; error.field names the input
    GENERATION_FAILED = "generation_failed"  # fal reported any other failure
    PROVIDER_TIMEOUT = "provider_timeout"  # fal itself timed out (request/startup timeout, 504)
    MEDIA_REJECTED = "media_rejected"  # the generated video failed a guard of ours
    EXPIRED = "expired"  # the job's deadline passed, or fal no longer holds the request
    SUBMIT_FAILED = "submit_failed"  # fal could not accept the request (refused, or every retry failed)


# The code a canceled job carries in the table (never shown: a canceled job's error is null).
CANCELED_CODE = "canceled"

# What a failed job's error.message says when the failure brings no text of its own.
FAILURE_MESSAGES: dict[FailureCode, str] = {
    FailureCode.INVALID_INPUT: "the provider rejected the input",
    FailureCode.CONTENT_POLICY: "the provider's safety check refused the input",
    FailureCode.GENERATION_FAILED: "the provider reported a failure",
    FailureCode.PROVIDER_TIMEOUT: "the provider timed out",
    FailureCode.MEDIA_REJECTED: "the generated video failed a safety check",
    FailureCode.EXPIRED: "the provider did not finish in time",
    FailureCode.SUBMIT_FAILED: "the provider could not accept the request",
}

# Codes stored by earlier versions, and the workflow's own reasons (the state machine's
# ``reason``), mapped to the contract's. A stored code neither here nor a FailureCode is
# generation_failed on read.
OLDER_CODES: dict[str, FailureCode] = {
    "deadline_exceeded": FailureCode.EXPIRED,  # the model's deadline passed (the state machine's reason)
    "provider_lost": FailureCode.EXPIRED,  # fal no longer knew the request (its result expired)
    "execution_failed": FailureCode.SUBMIT_FAILED,  # the execution ended before the job reached fal
    "provider_rejected": FailureCode.SUBMIT_FAILED,  # fal refused the submit (4xx)
}

# fal's ``error_type`` / validation ``type`` values (docs/fal.md, "Errors").
CONTENT_POLICY_TYPES = frozenset({"content_policy_violation"})
TIMEOUT_TYPES = frozenset({"request_timeout", "startup_timeout"})
# The codes a refused submit keeps (the input's fault); any other refusal is submit_failed.
INPUT_CODES = frozenset({FailureCode.INVALID_INPUT, FailureCode.CONTENT_POLICY})
_CODES = frozenset(FailureCode)
# fal's failure text names the model's HTTP status: "Invalid status code: 422".
_STATUS_IN_TEXT = re.compile(r"status code:?\s*(\d{3})\b", re.IGNORECASE)


@dataclass(frozen=True)
class Failure:
    """What a failure means: its contract code, a message, and the input it names (if any)."""

    code: FailureCode
    message: str
    field: str | None = None


@dataclass(frozen=True)
class Ending:
    status: JobStatus  # FAILED or CANCELED (a refund either way)
    code: str  # a FailureCode, or CANCELED_CODE
    message: str
    field: str | None = None

    @property
    def error(self) -> JobError:
        return JobError(code=self.code, message=self.message[:500], field=self.field)


def failed(failure: Failure) -> Ending:
    return Ending(JobStatus.FAILED, failure.code, failure.message, failure.field)


def failure_of(code: FailureCode, message: str | None = None) -> Failure:
    return Failure(code, message or FAILURE_MESSAGES[code])


USER_CANCELED = Ending(JobStatus.CANCELED, CANCELED_CODE, "canceled by the user")
DEADLINE_EXCEEDED = failed(failure_of(FailureCode.EXPIRED))
MEDIA_REJECTED = failed(failure_of(FailureCode.MEDIA_REJECTED))


def contract_code(stored: str) -> FailureCode:
    """The contract's code for a code as stored (today's, an older one, or a workflow reason)."""
    try:
        return FailureCode(stored)
    except ValueError:
        return OLDER_CODES.get(stored, FailureCode.GENERATION_FAILED)


NEVER_ACCEPTED = failed(failure_of(FailureCode.SUBMIT_FAILED, "the provider did not accept the request in time"))


def deadline_ending(job: Job) -> Ending:
    """A job at its deadline: ``expired`` once fal held it; ``submit_failed`` when fal never
    accepted it (every submit refused with a 429/503 until then, or it started too late)."""
    return DEADLINE_EXCEEDED if job.fal is not None else NEVER_ACCEPTED


def workflow_ending(reason: str, job: Job) -> Ending:
    """The ending the state machine's ``reason`` asks for (``deadline_exceeded``, ``submit_failed``)
    for ``job`` as stored; a reason of no known code is generation_failed and says itself."""
    code = contract_code(reason)
    if code == FailureCode.EXPIRED:
        return deadline_ending(job)
    known = reason in _CODES or reason in OLDER_CODES
    return failed(failure_of(code, None if known else reason))


def public_error(status: JobStatus, error: JobError | None) -> JobError | None:
    """``error`` as the contract shows it: set for a failed job only, with a contract code."""
    if status != JobStatus.FAILED:
        return None
    if error is None:  # never written so; still a failed job shows why
        return JobError(code=FailureCode.GENERATION_FAILED, message=FAILURE_MESSAGES[FailureCode.GENERATION_FAILED])
    return JobError(code=contract_code(error.code), message=error.message, field=error.field)


def _input_name(loc: object) -> str | None:
    """The input a fal validation ``loc`` names: ``["body", "prompt"]`` → ``prompt``."""
    if not isinstance(loc, list | tuple):
        return None
    parts = [str(part) for part in loc if isinstance(part, str | int) and not isinstance(part, bool)]
    if parts[:1] == ["body"]:
        parts = parts[1:]
    return ".".join(parts)[:200] or None


def fal_failure(
    message: str | None,
    *,
    http_status: int | None = None,
    error_type: str | None = None,
    detail: object = None,
) -> Failure:
    """What a failure fal reported means (a result answer, a webhook's ERROR, a status error).

    ``detail`` is fal's body ``detail``: a model validation error is a list of
    ``{"loc", "msg", "type"}``. An item of a content-policy type → content_policy naming its input;
    fal's timeouts (``error_type`` request/startup timeout, or a 504) → provider_timeout; any other
    validation error (items, or a 422) → invalid_input naming the first item's input; anything
    else → generation_failed. Without ``http_status``, the one ``message`` names is used.
    """
    if http_status is None and message and (found := _STATUS_IN_TEXT.search(message)):
        http_status = int(found.group(1))
    items = [item for item in detail if isinstance(item, Mapping)] if isinstance(detail, list) else []
    text = message or None
    flagged = [item for item in items if str(item.get("type") or "") in CONTENT_POLICY_TYPES]
    if flagged:
        return Failure(FailureCode.CONTENT_POLICY, text or _msg(flagged), _input_name(flagged[0].get("loc")))
    if error_type in CONTENT_POLICY_TYPES:
        return failure_of(FailureCode.CONTENT_POLICY, text)
    if error_type in TIMEOUT_TYPES or http_status == 504:
        return failure_of(FailureCode.PROVIDER_TIMEOUT, text)
    if items or http_status == 422:
        return Failure(
            FailureCode.INVALID_INPUT, text or _msg(items), _input_name(items[0].get("loc")) if items else None
        )
    return failure_of(FailureCode.GENERATION_FAILED, text)


def _msg(items: Iterable[Mapping[str, object]]) -> str:
    return "; ".join(str(item.get("msg") or item.get("type") or "invalid") for item in items) or "invalid input"


def submit_rejected(failure: Failure | None, http_status: int) -> Failure:
    """A submit fal refused (a final 4xx): the input's fault keeps its code, any other is submit_failed."""
    if failure is not None and failure.code in INPUT_CODES:
        return failure
    return failure_of(FailureCode.SUBMIT_FAILED, f"fal rejected the request ({http_status})")


def provider_failure_ending(job: Job, failure: Failure) -> Ending:
    """What a failure reported by fal (status, result or webhook) means for ``job`` as stored now.

    fal reports a request WE cancelled as a failure ("Request was cancelled"), and its webhook can
    arrive before our cancel call returns. So a failure of a job carrying a cancel intent ends as
    that intent asked: the user's → canceled, the deadline's → expired. The user's intent
    counts only while the job may still be canceled: once fal was seen generating (the cancel
    answered 409), a failure is the provider's own. A success never comes here: a video fal
    finished always completes the job.
    """
    if job.cancel_requested == CancelIntent.DEADLINE:
        return DEADLINE_EXCEEDED
    if job.cancel_requested == CancelIntent.USER and job.status in ALLOWED_FROM[JobStatus.CANCELED]:
        return USER_CANCELED
    return failed(failure)
