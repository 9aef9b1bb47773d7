"""The job failure codes' one home (videogen/domain/endings.py): every branch of what a failure fal
reports means (fal_failure), a refused submit, the workflow's reasons, the codes stored before the
contract's, and the adapter feeding each of fal's answers (result, webhook, submit) through it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from tests.fakes import make_job
from tests.fakes.fal import fal_request
from tests.fakes.system import System
from videogen.adapters.fal import FalClient, parse_delivery
from videogen.domain.endings import (
    OLDER_CODES,
    Failure,
    FailureCode,
    contract_code,
    deadline_ending,
    fal_failure,
    public_error,
    submit_rejected,
    workflow_ending,
)
from videogen.domain.errors import FalRejectedError
from videogen.domain.models import JobError, JobStatus
from videogen.ports import FalResult

FLAGGED = {"loc": ["body", "prompt"], "msg": "flagged by the content checker", "type": "content_policy_violation"}
BAD_IMAGE = {"loc": ["body", "image_url"], "msg": "Failed to load the image", "type": "image_load_error"}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # a content-policy validation item names the flagged input (loc without "body")
        ({"detail": [BAD_IMAGE, FLAGGED]}, Failure(FailureCode.CONTENT_POLICY, "m", "prompt")),
        # fal's error_type says content policy, without items: no field
        ({"error_type": "content_policy_violation"}, Failure(FailureCode.CONTENT_POLICY, "m")),
        ({"error_type": "request_timeout"}, Failure(FailureCode.PROVIDER_TIMEOUT, "m")),
        ({"error_type": "startup_timeout"}, Failure(FailureCode.PROVIDER_TIMEOUT, "m")),
        ({"http_status": 504}, Failure(FailureCode.PROVIDER_TIMEOUT, "m")),
        # any other validation error: invalid_input naming the first item's input
        ({"detail": [BAD_IMAGE]}, Failure(FailureCode.INVALID_INPUT, "m", "image_url")),
        ({"http_status": 422}, Failure(FailureCode.INVALID_INPUT, "m")),
        ({"http_status": 422, "detail": "Unprocessable"}, Failure(FailureCode.INVALID_INPUT, "m")),
        ({"http_status": 500, "error_type": "internal_error"}, Failure(FailureCode.GENERATION_FAILED, "m")),
        ({"http_status": 400, "error_type": "request_cancelled"}, Failure(FailureCode.GENERATION_FAILED, "m")),
        ({}, Failure(FailureCode.GENERATION_FAILED, "m")),
    ],
)
def test_each_kind_of_fal_failure_has_its_contract_code(kwargs: dict[str, Any], expected: Failure) -> None:
    assert fal_failure("m", **kwargs) == expected


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Invalid status code: 422", FailureCode.INVALID_INPUT),
        ("Invalid status code: 504", FailureCode.PROVIDER_TIMEOUT),
        ("Invalid status code: 500", FailureCode.GENERATION_FAILED),
        ("Request was cancelled", FailureCode.GENERATION_FAILED),
    ],
)
def test_the_status_fals_failure_text_names_counts_when_no_status_is_given(message: str, code: FailureCode) -> None:
    assert fal_failure(message).code == code
    assert fal_failure(message, http_status=500).code == FailureCode.GENERATION_FAILED


def test_a_failure_without_a_message_says_the_items_or_the_codes_own_message() -> None:
    assert fal_failure(None, detail=[FLAGGED]) == Failure(
        FailureCode.CONTENT_POLICY, "flagged by the content checker", "prompt"
    )
    assert fal_failure(None, detail=[BAD_IMAGE, {"type": "one_of"}]).message == "Failed to load the image; one_of"
    assert fal_failure(None).message == "the provider reported a failure"
    assert fal_failure(None, error_type="request_timeout").message == "the provider timed out"


@pytest.mark.parametrize(
    ("loc", "field"),
    [(["body", "prompt"], "prompt"), (["image_url"], "image_url"), (["body", "items", 0], "items.0"), ("prompt", None)],
)
def test_the_field_is_the_loc_without_body(loc: object, field: str | None) -> None:
    assert fal_failure("m", detail=[{"loc": loc, "msg": "x", "type": "content_policy_violation"}]).field == field


def test_a_refused_submit_keeps_an_inputs_fault_and_is_submit_failed_otherwise() -> None:
    flagged = Failure(FailureCode.CONTENT_POLICY, "m", "prompt")
    assert submit_rejected(flagged, 422) == flagged
    invalid = Failure(FailureCode.INVALID_INPUT, "m", "image_url")
    assert submit_rejected(invalid, 422) == invalid
    expected = Failure(FailureCode.SUBMIT_FAILED, "fal rejected the request (401)")
    assert submit_rejected(Failure(FailureCode.GENERATION_FAILED, "bad key"), 401) == expected
    assert submit_rejected(None, 404) == Failure(FailureCode.SUBMIT_FAILED, "fal rejected the request (404)")


def test_the_workflows_reasons_and_older_codes_read_as_the_contracts() -> None:
    at_fal = make_job(JobStatus.SUBMITTED, request_id="req-1")
    assert workflow_ending("deadline_exceeded", at_fal).error == JobError(
        code="expired", message="the provider did not finish in time"
    )
    assert workflow_ending("submit_failed", at_fal).error == JobError(
        code="submit_failed", message="the provider could not accept the request"
    )
    assert workflow_ending("operator_stopped", at_fal).error == JobError(
        code="generation_failed", message="operator_stopped"
    )


def test_a_job_fal_never_accepted_is_submit_failed_at_its_deadline_not_expired() -> None:
    """Every submit refused (429/503) until the deadline: fal never held it, so it did not "fail to
    finish in time" (black-box bb17 #4)."""
    never = make_job(JobStatus.QUEUED, submit_attempts=3)
    for ending in (workflow_ending("deadline_exceeded", never), deadline_ending(never)):
        assert ending.error == JobError(code="submit_failed", message="the provider did not accept the request in time")
    assert deadline_ending(make_job(JobStatus.IN_PROGRESS, request_id="r")).error.code == "expired"
    for stored, code in OLDER_CODES.items():
        assert contract_code(stored) == code
    assert {contract_code(code.value) for code in FailureCode} == set(FailureCode)


@pytest.mark.parametrize("status", [JobStatus.CANCELED, JobStatus.COMPLETED, JobStatus.IN_PROGRESS])
def test_only_a_failed_job_shows_an_error(status: JobStatus) -> None:
    assert public_error(status, JobError(code="canceled", message="canceled by the user")) is None


# --- the adapter feeds every answer of fal through fal_failure ------------------------------------


def _webhook(**fields: object) -> bytes:
    return json.dumps({"request_id": "req-1", "gateway_request_id": "g", "status": "ERROR", **fields}).encode()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"error": "Invalid status code: 422", "payload": {"detail": [FLAGGED]}},
            FalResult(
                error="Invalid status code: 422: body.prompt: flagged by the content checker",
                code=FailureCode.CONTENT_POLICY,
                field="prompt",
            ),
        ),
        (
            {"error": "Invalid status code: 422", "payload": {"detail": [BAD_IMAGE]}},
            FalResult(
                error="Invalid status code: 422: body.image_url: Failed to load the image",
                code=FailureCode.INVALID_INPUT,
                field="image_url",
            ),
        ),
        (
            {
                "error": "Invalid status code: 504",
                "payload": {"detail": "Request timed out", "error_type": "request_timeout"},
            },
            FalResult(error="Invalid status code: 504: Request timed out", code=FailureCode.PROVIDER_TIMEOUT),
        ),
        (
            {"error": "Request was cancelled", "payload": {"detail": "Request was cancelled"}},
            FalResult(error="Request was cancelled", code=FailureCode.GENERATION_FAILED),
        ),
        ({"error": "boom", "payload": None}, FalResult(error="boom", code=FailureCode.GENERATION_FAILED)),
    ],
)
def test_an_error_webhook_carries_the_code_its_payload_means(fields: dict[str, Any], expected: FalResult) -> None:
    delivery = parse_delivery(_webhook(**fields))
    assert delivery is not None and delivery.result == expected


class _Session:
    """One canned answer for every call, as requests.Session.request returns it."""

    def __init__(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        self.answer = requests.Response()
        self.answer.status_code = status
        self.answer._content = json.dumps(body).encode()
        self.answer.headers = CaseInsensitiveDict({"Content-Type": "application/json", **(headers or {})})

    def request(self, *args: object, **kwargs: object) -> requests.Response:
        return self.answer


def _client(status: int, body: object, headers: dict[str, str] | None = None) -> FalClient:
    session: Any = _Session(status, body, headers)
    return FalClient("https://queue.fal.test", lambda: "key-1234", session=session, sleep=lambda s: None)


def test_a_result_answering_a_content_policy_422_is_content_policy_naming_the_input() -> None:
    result = _client(422, {"detail": [FLAGGED]}).result(fal_request("req-1"))
    assert (result.code, result.field, result.error) == (
        FailureCode.CONTENT_POLICY,
        "prompt",
        "422: body.prompt: flagged by the content checker",
    )


def test_a_submit_refused_with_a_validation_422_carries_invalid_input_and_its_field() -> None:
    with pytest.raises(FalRejectedError) as refused:
        _client(422, {"detail": [BAD_IMAGE]}).submit("fal-ai/minimax/video-01", {"prompt": "x"}, None)
    assert refused.value.failure == Failure(
        FailureCode.INVALID_INPUT, "422: body.image_url: Failed to load the image", "image_url"
    )


def test_a_submit_fal_refused_for_the_input_fails_the_job_with_that_code_and_field(system: System) -> None:
    job = system.given_job()
    flagged = Failure(FailureCode.CONTENT_POLICY, "flagged", "prompt")
    system.fal.on_submit(FalRejectedError(422, None, "flagged", flagged))
    assert system.submit.run(job.id) == {"done": True}
    failed = system.job(job.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error == JobError(code="content_policy", message="flagged", field="prompt")
    assert system.store.refunds(job.id) == 1
