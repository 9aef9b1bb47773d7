"""POST /v1/videos (services/submission.py) pinned where a changed message, location, metric or
field would reach a client or an operator: the key and body rules with their exact answers, the
fingerprint's canonical form, the job and answer a submit stores, its metrics and its log."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.system import System
from tests.unit.test_submit_video import BODY, submit  # 5 credits a video
from videogen import crash
from videogen.domain.errors import (
    BalanceChanged,
    ConcurrentUpdate,
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    InsufficientCredits,
    TooManyActiveJobs,
    ValidationFailed,
)
from videogen.observability import logger
from videogen.services.submission import check_key, fingerprint, parse_body

MISSING = "Send an Idempotency-Key header (1-255 printable ASCII characters)"
INVALID = "Idempotency-Key must be 1-255 printable ASCII characters"


@pytest.fixture
def funded(system: System) -> System:
    system.store.grant("u1", 10, "welcome")
    return system


def errors_of(raw: bytes) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as failed:
        parse_body(raw)
    return failed.value.errors


# --- the key and the body -------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, ""])
def test_no_key_is_missing_with_how_to_send_one(key: str | None) -> None:
    with pytest.raises(IdempotencyKeyMissing) as missing:
        check_key(key)
    assert missing.value.detail == MISSING


@pytest.mark.parametrize("key", [" k", "k ", "ü", "k\n", "k" * 256])
def test_a_malformed_key_is_invalid_with_the_rule(key: str) -> None:
    with pytest.raises(IdempotencyKeyInvalid) as invalid:
        check_key(key)
    assert invalid.value.detail == INVALID


def test_bodies_that_are_not_a_json_object_are_located_at_body() -> None:
    assert errors_of(b"") == [{"loc": "body", "msg": "body must be a JSON object"}]  # no body is null
    assert errors_of(b"[1]") == [{"loc": "body", "msg": "body must be a JSON object"}]
    assert errors_of(b"\xff") == [{"loc": "body", "msg": "body is not valid JSON"}]
    assert errors_of(b"{") == [{"loc": "body", "msg": "body is not valid JSON"}]
    [rejected] = errors_of(b'{"model": NaN}')
    assert rejected == {"loc": "body", "msg": "body is not valid JSON: NaN is not JSON"}


def test_the_model_field_is_required_and_a_string() -> None:
    assert errors_of(b'{"input": {}}') == [{"loc": "model", "msg": "field required"}]
    assert errors_of(b'{"model": 5}') == [{"loc": "model", "msg": "model must be a string (a model id)"}]


def test_unknown_fields_are_each_named_unquoted_in_order_and_user_id_is_ignored() -> None:
    assert errors_of(b'{"model": "m", "zz": 1, "aa": 2}') == [
        {"loc": "aa", "msg": "unknown field"},
        {"loc": "zz", "msg": "unknown field"},
    ]
    assert parse_body(b'{"model": "m", "input": {}, "user_id": "someone-else"}') == {"model": "m", "input": {}}


def test_the_fingerprint_is_the_sha256_of_the_compact_sorted_body() -> None:
    canonical = b'{"input":{"a":2,"b":[1,"x"]},"model":"m"}'
    assert fingerprint("m", {"b": [1, "x"], "a": 2}) == hashlib.sha256(canonical).hexdigest()


# --- what a submit stores and answers ----------------------------------------------------------------


def test_a_submit_stores_a_queued_vid_job_with_its_input_without_nulls_and_answers_in_json(
    funded: System, counted: Callable[[str], int]
) -> None:
    answer = submit(funded)
    assert (answer.status_code, answer.replayed) == (202, False)
    job = answer.body["job"]
    assert job["id"].startswith("vid_")
    assert job["status"] == "queued" and type(job["status"]) is str  # mode="json": plain JSON values
    assert job["progress"] == {"queue_position": None, "message": "queued"}
    assert answer.body["credits"] == {"charged": 5, "balance": 5}
    stored = funded.job(job["id"])
    assert stored.progress.message == "queued"
    assert stored.input == {"prompt": "a cat surfing", "prompt_optimizer": True}
    record = funded.store.get_idempotency("u1", "k1")
    assert record is not None and record.body == answer.body
    assert record.fingerprint == fingerprint("minimax-video-01", stored.input)  # the normalised body's
    assert (counted("JobsSubmitted"), counted("CreditsCharged"), counted("SubmitReplayed")) == (1, 5, 0)
    assert abs(stored.deadline_at - (time.time() + 1800)) <= 5  # the model's max_s from now  # type: ignore[operator]
    expiry = funded.store.idempotency_expiry[("u1", "k1")]
    assert abs(expiry - (time.time() + 48 * 3600)) <= 5  # the key is remembered 48 h
    assert logger.get_correlation_id() == job["id"]


def test_an_optional_input_left_out_is_not_stored_as_null(system: System) -> None:
    system.store.grant("u1", 1000, "welcome")
    model = next(s for s in system.registry if "negative_prompt" in s.input_schema()["properties"])
    body = {"model": model.id, "input": {"prompt": "a cat", "image_url": "https://img.test/cat.png"}}
    answer = submit(system, body=body)
    stored = system.job(answer.body["job"]["id"]).input
    assert "negative_prompt" not in stored
    assert None not in stored.values()


def test_a_replay_is_counted_and_a_reused_key_is_refused_with_why(
    funded: System, counted: Callable[[str], int]
) -> None:
    first = submit(funded)
    again = submit(funded)
    assert (again.body, again.replayed, counted("SubmitReplayed")) == (first.body, True, 1)
    with pytest.raises(IdempotencyKeyReused) as reused:
        submit(funded, body={**BODY, "input": {"prompt": "a dog"}})
    assert reused.value.detail == "This Idempotency-Key was used with a different request body"


def test_refusals_say_the_price_the_balance_and_the_cap(system: System) -> None:
    system.store.grant("u1", 3, "welcome")
    with pytest.raises(InsufficientCredits) as poor:
        submit(system)
    assert poor.value.detail == "This video costs 5 credits; the balance is 3"
    system.store.grant("u1", 100, "more")
    with pytest.raises(TooManyActiveJobs) as busy:
        submit(system, max_active_jobs=0)
    assert busy.value.detail == "At most 0 jobs may be unfinished at once"


def test_a_balance_that_never_settles_says_retry_shortly(funded: System) -> None:
    funded.store.fail("create_job", BalanceChanged(), times=30)
    with pytest.raises(ConcurrentUpdate) as moving:
        submit(funded)
    assert moving.value.detail == "Too many concurrent changes to this account; retry shortly"


def test_a_failed_start_is_logged_and_counted_and_still_accepted(
    funded: System, counted: Callable[[str], int], caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(job_id: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("states unavailable")

    funded.workflow.start = refuse  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        answer = submit(funded)
    assert answer.status_code == 202
    assert counted("ExecutionStartFailed") == 1
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "StartExecution failed; the reconciler will start the job"
    ]


def test_the_crash_point_after_the_charge_is_where_it_says(funded: System) -> None:
    crash.arm(crash.AFTER_SUBMIT_TRANSACTION)
    with pytest.raises(crash.CrashPointReached):
        submit(funded)
    assert funded.store.get_balance("u1").balance == 5  # charged, then the process died
    assert funded.workflow.starts == []
