"""Strict inputs (issue 8): values validated exactly as the published JSON Schema says, the
idempotency fingerprint over the validated body, a malformed model 422, short echoes of user
values, and JSON nesting bounded in every body parser. On fakes."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import jsonschema
import pytest

from tests.fakes.system import WEBHOOK_TOKEN, System
from videogen import jsonbody
from videogen.domain.errors import (
    SHOWN_CHARS,
    BadRequest,
    IdempotencyKeyReused,
    JobNotFound,
    ModelNotFound,
    ValidationFailed,
    shown,
)
from videogen.domain.registry import URL_RULE, Registry
from videogen.services import queries
from videogen.services.submission import SubmitAnswer, SubmitLimits, fingerprint, parse_body, submit_video

URL = "https://example.com/a.png"
BASE = {
    "kling-2.1-standard-i2v": {"prompt": "a fox", "image_url": URL},
    "kling-2.6-pro-i2v": {"prompt": "a fox", "start_image_url": URL},
    "kling-2.6-standard-motion-control": {"image_url": URL, "video_url": URL, "character_orientation": "image"},
    "minimax-video-01": {"prompt": "a fox"},
    "veo-3.1-i2v": {"prompt": "a fox", "image_url": URL},
    "sora-2-i2v": {"prompt": "a fox", "image_url": URL},
}

# (model, field, value, accepted): each as the published schema decides it
PROBES = [
    ("kling-2.1-standard-i2v", "cfg_scale", True, False),  # a boolean is not a number
    ("kling-2.1-standard-i2v", "cfg_scale", "0.5", False),
    ("kling-2.1-standard-i2v", "cfg_scale", 1, True),  # an integer IS a number (JSON Schema)
    ("kling-2.1-standard-i2v", "cfg_scale", 0.5, True),
    ("kling-2.1-standard-i2v", "duration", 5, False),  # the schema says string enum: a 5 is not "5"
    ("kling-2.1-standard-i2v", "duration", "10", True),
    ("kling-2.6-pro-i2v", "generate_audio", "false", False),
    ("kling-2.6-pro-i2v", "generate_audio", 0, False),
    ("kling-2.6-pro-i2v", "generate_audio", 1, False),
    ("kling-2.6-pro-i2v", "generate_audio", False, True),
    ("kling-2.6-pro-i2v", "duration", 10, False),
    ("kling-2.6-standard-motion-control", "keep_original_sound", "true", False),
    ("minimax-video-01", "prompt_optimizer", 0, False),
    ("minimax-video-01", "prompt", 12, False),
    ("veo-3.1-i2v", "seed", "12", False),  # a string is not an integer
    ("veo-3.1-i2v", "seed", True, False),
    ("veo-3.1-i2v", "seed", 12.5, False),
    ("veo-3.1-i2v", "seed", 12, True),
    ("veo-3.1-i2v", "seed", 12.0, True),  # JSON Schema: a number with a zero fraction is an integer
    ("veo-3.1-i2v", "seed", None, True),
    ("veo-3.1-i2v", "seed", -1, False),
    ("veo-3.1-i2v", "seed", 2**32, False),
    ("veo-3.1-i2v", "generate_audio", "false", False),
    ("sora-2-i2v", "duration", "8", False),
    ("sora-2-i2v", "duration", 8.0, True),
    ("sora-2-i2v", "duration", 21, False),
    ("sora-2-i2v", "duration", False, False),
    ("sora-2-i2v", "image_url", "ftp://example.com/a.png", False),  # a URL input is http(s) only
    ("sora-2-i2v", "image_url", "javascript:alert(1)", False),
    ("sora-2-i2v", "image_url", "HTTPS://example.com/a.png", True),
    ("kling-2.6-pro-i2v", "end_image_url", "file:///etc/passwd", False),
    # a plain URL input is a public https URL: fal fetches it (issue 10)
    *[
        ("sora-2-i2v", "image_url", url, False)
        for url in (
            "http://example.com/a.png",
            "http://169.254.169.254/latest/meta-data/",
            "https://169.254.169.254/latest/meta-data/",
            "https://127.0.0.1/a.png",
            "https://10.0.0.1/a.png",
            "https://[::1]/a.png",
            "https://[fd00::1]/a.png",
            "https://2130706433/a.png",  # 127.0.0.1, decimal
            "https://0x7f.1/a.png",  # 127.0.0.1, hex
            "https://0177.0.0.1/a.png",  # 127.0.0.1, octal
            "https://127.0.0.1./a.png",
            "https://user:pass@example.com/a.png",
            "https://user@example.com/a.png",
            "https://@example.com/a.png",
            "https://example.com\\@127.0.0.1/a.png",
            "https://localhost/a.png",
            "https://LOCALHOST./a.png",
            "https://cdn.localhost/a.png",
            "https://metadata.google.internal/computeMetadata/v1/",
            "https://printer.local/a.png",
            "https://1.0.0.127.in-addr.arpa/a.png",
            "https://metadata/a.png",  # one label: never a public name
            "https://exa%6dple.com/a.png",  # an escaped host
            "https://example.com:99999/a.png",
            "https://example.com/a b.png",
            "https://example.com/a.png\n",
        )
    ],
    *[("kling-2.6-standard-motion-control", field, "http://10.0.0.1/a", False) for field in ("image_url", "video_url")],
    *[
        ("sora-2-i2v", "image_url", url, True)
        for url in (
            "https://example.com./a.png",
            "https://cdn.example.com:8443/a.png?x=1#top",
            "https://xn--bcher-kva.example/a.png",
            "https://bücher.example/a.png",
            "https://v3.fal.media/files/x/a.png",
        )
    ],
]


def _accepted_by_code(model: str, inputs: dict[str, Any]) -> bool:
    try:
        Registry().get(model).parse_input(inputs)
    except ValidationFailed:
        return False
    return True


@pytest.mark.parametrize(("model", "field", "value", "accepted"), PROBES)
def test_given_a_value_then_the_code_and_the_published_schema_agree(model, field, value, accepted) -> None:
    inputs = {**BASE[model], field: value}
    schema = Registry().get(model).input_schema()
    assert jsonschema.Draft202012Validator(schema).is_valid(inputs) is accepted
    assert _accepted_by_code(model, inputs) is accepted


def test_a_refused_url_names_its_field_and_says_why() -> None:
    with pytest.raises(ValidationFailed) as refused:
        Registry().get("kling-2.6-pro-i2v").parse_input(
            {**BASE["kling-2.6-pro-i2v"], "end_image_url": "https://[::1]/"}
        )
    assert refused.value.errors == [{"loc": "input.end_image_url", "msg": f"Value error, {URL_RULE}"}]


@pytest.mark.parametrize(
    "url",
    [
        "https://a.com?" + "x" * (2083 - len("https://a.com?")),  # 2083 sent; its normal form adds a "/"
        "https://" + "ä" * 60 + ".com/" + "x" * (2083 - 73),  # the host's punycode is longer than sent
    ],
)
def test_an_accepted_url_is_stored_in_a_form_that_parses_again(url: str) -> None:
    """What is stored (and sent to fal, and priced by the audit) is the parser's normal form: a URL
    whose normal form passes the length bound it was checked against is refused, not stored."""
    spec = Registry().get("kling-2.6-pro-i2v")
    body = {**BASE["kling-2.6-pro-i2v"], "end_image_url": url}
    try:
        parsed = spec.parse_input(body)
    except ValidationFailed as refused:
        assert [e["loc"] for e in refused.errors] == ["input.end_image_url"]
        return
    stored = parsed.model_dump(mode="json", exclude_none=True)
    assert spec.credits(spec.parse_input(stored)) == spec.credits(parsed)


def test_the_price_follows_only_a_real_boolean() -> None:
    spec = Registry().get("kling-2.6-pro-i2v")
    assert spec.credits(spec.parse_input({**BASE["kling-2.6-pro-i2v"], "generate_audio": False})) == 5
    assert spec.credits(spec.parse_input(BASE["kling-2.6-pro-i2v"])) == 7
    with pytest.raises(ValidationFailed):
        spec.parse_input({**BASE["kling-2.6-pro-i2v"], "generate_audio": "false"})


# --- the idempotency fingerprint ---------------------------------------------------------------


def _submit(system: System, raw: bytes | dict[str, Any], key: str = "k1") -> SubmitAnswer:
    return submit_video(
        user_id="u1",
        idempotency_key=key,
        raw_body=raw if isinstance(raw, bytes) else json.dumps(raw).encode(),
        store=system.store,
        registry=system.registry,
        workflow=system.workflow,
        limits=SubmitLimits(),
        pause=lambda _: None,
    )


@pytest.fixture
def funded(system: System) -> System:
    system.store.grant("u1", 100, "welcome")
    return system


VEO = {"model": "veo-3.1-i2v", "input": {"prompt": "a fox", "image_url": URL, "seed": 12}}


@pytest.mark.parametrize(
    "equivalent",
    [
        b'{"input": {"seed": 12, "image_url": "https://example.com/a.png", "prompt": "a fox"}, "model": "veo-3.1-i2v"}',
        b'{ "model" : "veo-3.1-i2v" ,\n\t"input" : { "prompt":"a fox",'
        b'  "image_url":"https://example.com/a.png",\r\n "seed":12 } }',
        b'{"model":"veo-3.1-i2v","input":{"prompt":"  a fox  ","image_url":"https://example.com/a.png","seed":12.0}}',
        b'{"model":"veo-3.1-i2v","input":{"prompt":"a fox","image_url":"https://example.com/a.png","seed":12,'
        b'"duration":"8s","resolution":"720p","negative_prompt":null}}',
    ],
    ids=["key order", "white space", "stripped prompt and 12.0", "defaults spelt out"],
)
def test_given_an_equivalent_body_with_the_same_key_then_the_first_answer_replays(funded, equivalent) -> None:
    first = _submit(funded, VEO)
    again = _submit(funded, equivalent)
    assert again.replayed and again.body == first.body
    assert len(funded.workflow.starts) == 1


def test_given_seed_12_then_seed_string_12_is_another_body_and_invalid(funded) -> None:
    first = _submit(funded, VEO)
    assert first.status_code == 202
    string_seed = {**VEO, "input": {**VEO["input"], "seed": "12"}}
    with pytest.raises(IdempotencyKeyReused):  # not the same body as 12 any more
        _submit(funded, string_seed)
    with pytest.raises(ValidationFailed) as invalid:  # and on a fresh key: a string is not an integer
        _submit(funded, string_seed, key="k2")
    assert invalid.value.errors == [{"loc": "input.seed", "msg": "Input should be a valid integer"}]
    assert len(funded.workflow.starts) == 1


def test_given_a_model_taken_off_sale_then_its_replay_still_answers_and_a_new_key_is_404(funded) -> None:
    first = _submit(funded, VEO)
    funded.registry = Registry(disabled=frozenset({"veo-3.1-i2v"}))
    reordered = json.dumps({"input": VEO["input"], "model": VEO["model"]}, indent=2).encode()
    again = _submit(funded, reordered)
    assert again.replayed and again.body == first.body
    with pytest.raises(ModelNotFound):
        _submit(funded, VEO, key="k2")


def test_given_a_record_fingerprinted_raw_then_the_same_raw_body_replays_even_for_a_dropped_model(funded) -> None:
    """Records stored before this rule (and bodies of a model this code no longer has) match on
    the raw canonical body."""
    first = _submit(funded, VEO)
    record = funded.store.get_idempotency("u1", "k1")
    assert record is not None and record.fingerprint != fingerprint(VEO["model"], VEO["input"])
    # as a record stored before this rule: the fingerprint of the raw body
    funded.store._accounts["u1"].idempotency["k1"] = replace(
        record, fingerprint=fingerprint(VEO["model"], VEO["input"])
    )
    funded.registry = Registry(models=tuple(m for m in Registry() if m.id != "veo-3.1-i2v"))
    assert _submit(funded, VEO).body == first.body
    with pytest.raises(IdempotencyKeyReused):
        _submit(funded, {**VEO, "input": {**VEO["input"], "seed": 13}})
    with pytest.raises(ModelNotFound):
        _submit(funded, VEO, key="k2")


# --- the model field -------------------------------------------------------------------------


@pytest.mark.parametrize("model", [None, {}, {"id": "veo-3.1-i2v"}, ["veo-3.1-i2v"], 5, 1.5, True])
def test_given_a_malformed_model_then_422_validation_failed(funded, model) -> None:
    with pytest.raises(ValidationFailed) as invalid:
        _submit(funded, {"model": model, "input": {"prompt": "x"}})
    assert [e["loc"] for e in invalid.value.errors] == ["model"]


def test_given_an_unknown_model_string_then_404_with_a_short_prefix_of_it(funded) -> None:
    with pytest.raises(ModelNotFound) as missing:
        _submit(funded, {"model": "m" * 60_000, "input": {"prompt": "x"}})
    assert "m" * SHOWN_CHARS not in missing.value.detail and "…" in missing.value.detail
    assert len(missing.value.detail) < 150


# --- short echoes --------------------------------------------------------------------------------


def test_shown_cuts_a_value_to_a_short_prefix_with_an_ellipsis() -> None:
    assert shown("vid_1") == "'vid_1'"
    assert shown("x" * 10_000) == "'" + "x" * (SHOWN_CHARS - 2) + "…"
    assert len(shown("x" * 10_000)) == SHOWN_CHARS
    assert shown("k" * 100, quote=False) == "k" * (SHOWN_CHARS - 1) + "…"


def test_given_unknown_fields_with_long_names_then_each_loc_is_a_short_prefix(funded) -> None:
    long_key = "z" * 20_000
    with pytest.raises(ValidationFailed) as top:
        parse_body(json.dumps({"model": "minimax-video-01", long_key: 1}).encode())
    with pytest.raises(ValidationFailed) as nested:
        _submit(funded, {"model": "minimax-video-01", "input": {"prompt": "x", long_key: 1}})
    for error in [*top.value.errors, *nested.value.errors]:
        assert len(error["loc"]) <= len("input.") + SHOWN_CHARS and len(error["msg"]) < 100


def test_given_thousands_of_unknown_fields_then_the_first_errors_only(funded) -> None:
    keys = {f"k{i}": 1 for i in range(5000)}
    with pytest.raises(ValidationFailed) as nested:
        _submit(funded, {"model": "minimax-video-01", "input": {"prompt": "x", **keys}})
    assert len(nested.value.errors) == ValidationFailed.MAX_ERRORS
    assert f"of {len(keys)} errors" in nested.value.detail


def test_given_a_long_unknown_job_id_then_the_404_detail_is_a_short_prefix(system) -> None:
    with pytest.raises(JobNotFound) as missing:
        queries.owned_job(system.store, "u1", "vid_" + "9" * 5000)
    assert len(missing.value.detail) < 100 and "…" in missing.value.detail


# --- JSON nesting ----------------------------------------------------------------------------


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize(
    "raw",
    [b'{"platform": "apns", "platform": "fcm"}', b'{"a": {"b": 1, "b": 2}}', b'[{"k": 1, "k": 1}]'],
)
def test_an_object_naming_a_key_twice_is_refused(raw: bytes) -> None:
    """Readers disagree on which duplicate wins (black-box bb17b #9): one reading, or none."""
    with pytest.raises(jsonbody.JsonRejected, match="appears twice"):
        jsonbody.loads(raw)
    assert jsonbody.loads(b'{"a": {"k": 1}, "b": {"k": 1}}') == {"a": {"k": 1}, "b": {"k": 1}}


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert jsonbody.depth(b'{"a": [1, {"b": "[[[{{{\\"]]]"}]}') == 3
    assert jsonbody.depth(b"") == 0
    assert jsonbody.loads(_nested(jsonbody.MAX_DEPTH)) is not None
    with pytest.raises(jsonbody.JsonRejected):
        jsonbody.loads(_nested(jsonbody.MAX_DEPTH + 1))


@pytest.mark.parametrize("raw", [b"[" * 5000, _nested(5000), b'{"a":' * 5000, b"[NaN]", b'{"x": Infinity}'])
def test_given_deep_or_non_json_bodies_then_a_value_error_never_a_recursion_error(raw) -> None:
    with pytest.raises(ValueError):
        jsonbody.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000,
        b'{"model": "minimax-video-01", "input": {"prompt": "x", "extra": ' + _nested(5000) + b"}}",
        b'{"model": "minimax-video-01", "input": {"prompt": "x", "seed": NaN}}',
    ],
)
def test_given_a_deeply_nested_submit_body_then_422_and_nothing_charged(funded, raw) -> None:
    with pytest.raises(ValidationFailed) as invalid:
        _submit(funded, raw)
    assert invalid.value.errors[0]["loc"] == "body"
    assert funded.store.get_balance("u1").balance == 100 and funded.workflow.starts == []


@pytest.mark.parametrize(
    "raw", [b"[" * 5000, b'{"request_id": "r1", "status": "OK", "payload": ' + _nested(5000) + b"}"]
)
def test_given_a_signed_deeply_nested_webhook_then_400_bad_request(system, raw) -> None:
    with pytest.raises(BadRequest):
        system.webhooks.handle({}, {"token": WEBHOOK_TOKEN, "job_id": "vid_1"}, raw)
    assert system.verifier.verified == 1  # the signature was checked first, as always
