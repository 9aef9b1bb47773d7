"""The domain's small rules at their edges (domain/timing.py, errors.py, models.py, registry.py):
the poll loop's numbers as literals, the error texts and attributes, the id and timestamp
formats, the Veo price table."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from tests.fakes import make_job
from videogen.domain.errors import (
    BadRequest,
    FalRejectedError,
    FalTransientError,
    IdempotencyKeyTaken,
    ModelNotFound,
    ValidationFailed,
    shown,
)
from videogen.domain.models import IdempotencyRecord, JobStatus, new_id, progress_allowed_from, rfc3339, utc_now
from videogen.domain.registry import Registry, _request_model
from videogen.domain.timing import execution_input, next_wait_s

MINIMAX = Registry().get("minimax-video-01")  # expected 180 s, at most 1800 s


@pytest.mark.parametrize(
    ("scale", "timing"),
    [
        (1.0, {"initial_wait_s": 180, "poll_base_s": 10, "poll_max_s": 60, "max_checks": 190}),
        (0.01, {"initial_wait_s": 2, "poll_base_s": 1, "poll_max_s": 1, "max_checks": 28}),
        (0.001, {"initial_wait_s": 1, "poll_base_s": 1, "poll_max_s": 1, "max_checks": 12}),
    ],
)
def test_the_execution_input_holds_the_poll_loops_numbers_scaled(scale: float, timing: dict[str, int]) -> None:
    job = make_job()
    assert execution_input(job, MINIMAX, scale) == {
        "job_id": job.id,
        "attempt": 0,
        "timing": {**timing, "poll_factor": 1.5, "deadline_at": job.deadline_at},
    }


def test_the_next_wait_grows_by_the_inputs_factor_from_its_base_up_to_its_cap() -> None:
    timing = {"poll_base_s": 3, "poll_max_s": 20, "poll_factor": 2.0}
    assert [next_wait_s(timing, a) for a in range(5)] == [3, 6, 12, 20, 20]
    assert next_wait_s({}, 0) == 10 and next_wait_s({}, 1) == 15 and next_wait_s({}, 9) == 60  # the defaults


def test_the_next_wait_is_at_least_a_second_and_its_growth_stops_at_32_steps() -> None:
    assert next_wait_s({"poll_base_s": 1, "poll_max_s": 60, "poll_factor": 0.5}, 3) == 1
    slow = {"poll_base_s": 1000, "poll_max_s": 10**6, "poll_factor": 1.01}
    assert next_wait_s(slow, 40) == next_wait_s(slow, 32) == round(1000 * 1.01**32)


def test_a_shown_value_is_cut_only_past_its_limit() -> None:
    assert shown("abcde", quote=False, limit=5) == "abcde"
    assert shown("abcdef", quote=False, limit=5) == "abcd…"
    assert shown("x" * 62) == repr("x" * 62)  # 64 characters with its quotes: kept whole


def test_a_domain_error_defaults_to_its_title_and_keeps_its_extra_fields() -> None:
    assert (BadRequest().detail, str(BadRequest())) == ("Bad request", "Bad request")
    assert BadRequest("why", field="x").extra == {"field": "x"}


def test_a_validation_failure_says_the_schema_and_keeps_its_first_twenty_errors() -> None:
    errors = [{"loc": f"f{i}", "msg": "bad"} for i in range(21)]
    assert ValidationFailed(errors[:20]).detail == "The request does not match the schema"
    assert ValidationFailed(errors[:20]).errors == errors[:20]
    assert ValidationFailed(errors[:1]).extra == {"errors": errors[:1]}
    assert ValidationFailed(errors[:1], "custom").detail == "custom"
    many = ValidationFailed(errors)
    assert many.detail == "The request does not match the schema (the first 20 of 21 errors)"
    assert many.errors == errors[:20] and many.extra == {"errors": errors[:20]}


def test_the_fal_errors_carry_their_text_and_attributes() -> None:
    transient = FalTransientError("slow", status=503, error_type="busy", retry_after_s=2.5)
    assert (str(transient), transient.status, transient.error_type, transient.retry_after_s) == (
        "slow",
        503,
        "busy",
        2.5,
    )
    rejected = FalRejectedError(422, "validation", "bad input")
    assert (str(rejected), rejected.status, rejected.error_type, rejected.detail) == (
        "fal rejected the call (422 validation): bad input",
        422,
        "validation",
        "bad input",
    )
    assert str(FalRejectedError(401, None, "key")) == "fal rejected the call (401 error): key"
    taken = IdempotencyKeyTaken(IdempotencyRecord("fp", "vid_1", 202, {}))
    assert str(taken) == "vid_1"


def test_only_a_fal_progress_status_has_a_progress_rule() -> None:
    with pytest.raises(ValueError, match=r"^not a progress status: completed$"):
        progress_allowed_from(JobStatus.COMPLETED)


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is not UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("tokyo")
def test_timestamps_are_utc_with_milliseconds_whatever_the_local_zone() -> None:
    assert utc_now().utcoffset() == timedelta(0)
    moment = datetime(2026, 1, 2, 12, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(moment) == "2026-01-02T10:04:05.678Z"


def _decode(crockford: str) -> int:
    value = 0
    for c in crockford:
        value = value * 32 + "0123456789abcdefghjkmnpqrstvwxyz".index(c)
    return value


def test_an_id_is_its_prefix_and_26_lower_case_crockford_characters_led_by_the_time() -> None:
    before = int(time.time() * 1000)
    made = new_id("vid")
    after = int(time.time() * 1000)
    assert re.fullmatch(r"vid_[0-9a-hjkmnp-tv-z]{26}", made)
    value = _decode(made.removeprefix("vid_"))
    assert before <= value >> 80 <= after
    assert value < 2**128


def test_ids_made_later_sort_later() -> None:
    first = new_id("le")
    time.sleep(0.002)
    assert new_id("le") > first


@pytest.mark.parametrize(
    ("resolution", "duration", "audio", "credits"),
    [("720p", "8s", False, 16), ("1080p", "8s", False, 24), ("4k", "4s", False, 24), ("1080p", "6s", True, 27)],
)
def test_the_veo_price_per_second_of_each_resolution(resolution: str, duration: str, audio: bool, credits: int) -> None:
    veo = Registry().get("veo-3.1-i2v")
    parsed = veo.parse_input(
        {
            "prompt": "a cat",
            "image_url": "https://img.test/cat.png",
            "resolution": resolution,
            "duration": duration,
            "generate_audio": audio,
        }
    )
    assert veo.credits(parsed) == credits


def test_an_unknown_model_is_named_in_the_answer() -> None:
    with pytest.raises(ModelNotFound) as missing:
        Registry().for_job("no-such-model")
    assert missing.value.detail == "Unknown model 'no-such-model'"


def test_a_models_submit_body_is_its_id_and_its_own_input_and_nothing_else() -> None:
    from pydantic import ValidationError

    request = _request_model(MINIMAX)
    assert request.__name__ == f"{MINIMAX.input_model.__name__}Request"
    schema = request.model_json_schema()
    assert schema["title"] == f"{MINIMAX.name} request"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"model", "input"}
    parsed = request.model_validate({"model": MINIMAX.id, "input": {"prompt": "a cat"}})
    assert isinstance(parsed.input, MINIMAX.input_model)  # type: ignore[attr-defined]
    for wrong in (
        {"model": "other-model", "input": {"prompt": "a cat"}},
        {"model": MINIMAX.id, "input": {"prompt": "a cat"}, "extra": 1},
        {"model": MINIMAX.id},
    ):
        with pytest.raises(ValidationError):
            request.model_validate(wrong)
