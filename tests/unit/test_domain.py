"""The domain without AWS: registry prices and schemas, the state machine's rules, ids, settings."""

from __future__ import annotations

import pytest

from tests.fakes import make_job
from videogen.config import Settings
from videogen.domain.endings import DEADLINE_EXCEEDED, USER_CANCELED, Ending, fal_failure, provider_failure_ending
from videogen.domain.errors import ModelNotFound, ValidationFailed
from videogen.domain.models import ACTIVE, ALLOWED_FROM, TERMINAL, CancelIntent, JobStatus, new_id
from videogen.domain.registry import Registry
from videogen.domain.timing import next_wait_s
from videogen.services.submission import check_key, fingerprint

IMG = "https://example.com/a.png"


@pytest.mark.parametrize(
    ("model", "payload", "credits"),
    [
        ("kling-2.1-standard-i2v", {"prompt": "p", "image_url": IMG}, 4),
        ("kling-2.1-standard-i2v", {"prompt": "p", "image_url": IMG, "duration": "10"}, 8),
        ("kling-2.6-pro-i2v", {"prompt": "p", "start_image_url": IMG}, 7),
        ("kling-2.6-pro-i2v", {"prompt": "p", "start_image_url": IMG, "generate_audio": False, "duration": "10"}, 10),
        ("minimax-video-01", {"prompt": "p"}, 5),
        ("veo-3.1-i2v", {"prompt": "p", "image_url": IMG}, 24),
        ("veo-3.1-i2v", {"prompt": "p", "image_url": IMG, "duration": "4s", "generate_audio": False}, 8),
        ("veo-3.1-i2v", {"prompt": "p", "image_url": IMG, "resolution": "4k", "duration": "4s"}, 36),
    ],
)
def test_prices_depend_on_inputs(model, payload, credits):
    spec = Registry().get(model)
    assert spec.credits(spec.parse_input(payload)) == credits


def test_every_model_has_a_schema_endpoint_and_sane_times():
    for spec in Registry():
        schema = spec.input_schema()
        assert schema["type"] == "object" and schema["properties"]
        assert spec.fal_endpoint.startswith("fal-ai/")
        assert 0 < spec.expected_s < spec.max_s
        assert spec.default_credits > 0


def test_unknown_and_disabled_models_are_not_found():
    with pytest.raises(ModelNotFound):
        Registry().get("nope")
    with pytest.raises(ModelNotFound):
        Registry(disabled=frozenset({"sora-2-i2v"})).get("sora-2-i2v")
    with pytest.raises(ModelNotFound):
        Registry().get(["not", "a", "string"])


def test_validation_errors_name_the_field():
    spec = Registry().get("veo-3.1-i2v")
    with pytest.raises(ValidationFailed) as exc:
        spec.parse_input({"prompt": "", "image_url": IMG, "resolution": "8k"})
    assert {e["loc"] for e in exc.value.errors} == {"input.prompt", "input.resolution"}


def test_terminal_states_have_no_way_out_and_cancel_only_before_generation():
    for target, sources in ALLOWED_FROM.items():
        assert not (sources & TERMINAL), f"{target} reachable from a terminal state"
    assert ALLOWED_FROM[JobStatus.CANCELED] == {JobStatus.QUEUED, JobStatus.SUBMITTED}
    assert set(JobStatus) == ACTIVE | TERMINAL


def test_ids_are_unique_and_time_ordered():
    ids = [new_id("vid") for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(i.startswith("vid_") and len(i) == 30 for i in ids)
    assert ids[0][:14] <= ids[-1][:14]


@pytest.mark.parametrize("key", ["a", "x" * 255, "uuid-1234_ABC.~!", "with space inside"])
def test_valid_keys(key):
    assert check_key(key) == key


def test_fingerprint_ignores_key_order_only():
    assert fingerprint("m", {"a": 1, "b": 2}) == fingerprint("m", {"b": 2, "a": 1})
    assert fingerprint("m", {"a": 1}) != fingerprint("m", {"a": 2})
    assert fingerprint("m", {"a": 1}) != fingerprint("n", {"a": 1})


def test_poll_interval_grows_and_is_capped():
    timing = {"poll_base_s": 10, "poll_max_s": 60, "poll_factor": 1.5}
    waits = [next_wait_s(timing, n) for n in range(8)]
    assert waits == sorted(waits) and waits[0] == 10 and waits[-1] == 60
    assert all(isinstance(w, int) for w in waits)
    assert next_wait_s({"poll_base_s": 1, "poll_max_s": 1}, 10_000) == 1


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("MAX_ACTIVE_JOBS", "3")
    monkeypatch.setenv("MEDIA_REQUIRE_HTTPS", "false")
    monkeypatch.setenv("MEDIA_ALLOWED_HOSTS", "A.com, b")
    s = Settings()
    assert s.max_active_jobs == 3 and s.media_require_https is False
    assert s.allowed_hosts == {"a.com", "b"}
    monkeypatch.setenv("JWKS_CACHE_S", str(2 * 24 * 3600))
    with pytest.raises(ValueError):
        Settings()


@pytest.mark.parametrize("status", sorted(ACTIVE))
@pytest.mark.parametrize("intent", [None, CancelIntent.USER, CancelIntent.DEADLINE])
def test_a_provider_failure_ends_as_the_cancel_we_asked_for(status: JobStatus, intent: CancelIntent | None) -> None:
    """fal reports a request we cancelled as a failure: the recorded intent decides the ending."""
    job = make_job(status, cancel_requested=intent)
    ending = provider_failure_ending(job, fal_failure("Request was cancelled"))
    if intent == CancelIntent.DEADLINE:
        assert ending == DEADLINE_EXCEEDED
    elif intent == CancelIntent.USER and status != JobStatus.IN_PROGRESS:
        assert ending == USER_CANCELED
    else:  # no cancel of ours, or the user's cancel found fal generating (it answered 409)
        assert ending == Ending(JobStatus.FAILED, "generation_failed", "Request was cancelled")
    assert ending.status in (JobStatus.FAILED, JobStatus.CANCELED)
    assert ending.status == JobStatus.FAILED or status in ALLOWED_FROM[ending.status]


def test_a_provider_failure_without_a_message_still_says_what_happened() -> None:
    assert provider_failure_ending(make_job(JobStatus.SUBMITTED), fal_failure(None)).message == (
        "the provider reported a failure"
    )
