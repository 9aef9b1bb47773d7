"""The submit fingerprint's equivalences: bodies that validate to the same request are one body (the
key replays the first answer, one charge); bodies that differ in anything the job would use are
not (422 idempotency_key_reused, nothing charged again)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.system import System
from videogen.domain.errors import IdempotencyKeyReused
from videogen.services.submission import SubmitAnswer, SubmitLimits, _read_request, fingerprint, submit_video

MINIMAX = b'{"model":"minimax-video-01","input":{"prompt":"a cat surfing"}}'
VEO_INPUT = {"prompt": "a cat surfing", "image_url": "https://example.com/cat.png", "seed": 1}
VEO = json.dumps({"model": "veo-3.1-i2v", "input": VEO_INPUT}).encode()


def submit(system: System, raw: bytes, key: str = "k1") -> SubmitAnswer:
    return submit_video(
        user_id="u1",
        idempotency_key=key,
        raw_body=raw,
        store=system.store,
        registry=system.registry,
        workflow=system.workflow,
        limits=SubmitLimits(),
        pause=lambda attempt: None,
    )


def veo(**changes: Any) -> bytes:
    body = json.loads(VEO)
    body["input"].update(changes)
    return json.dumps(body).encode()


SAME_AS_MINIMAX = {
    "key order": b'{"input":{"prompt":"a cat surfing"},"model":"minimax-video-01"}',
    "white space": b'{\n  "model" : "minimax-video-01",\n  "input" : { "prompt" : "a cat surfing" }\n}\n',
    "spelt-out default": b'{"model":"minimax-video-01","input":{"prompt_optimizer":true,"prompt":"a cat surfing"}}',
    "padded prompt": b'{"model":"minimax-video-01","input":{"prompt":"  a cat surfing\\n"}}',
    "a user_id (ignored)": b'{"model":"minimax-video-01","input":{"prompt":"a cat surfing"},"user_id":"someone"}',
    "escaped characters": b'{"model":"minimax-video-01","input":{"prompt":"a c\\u0061t surfing"}}',
}
SAME_AS_VEO = {
    "1.0 for 1": veo(seed=1.0),
    "spelt-out defaults": veo(aspect_ratio="auto", duration="8s", resolution="720p", generate_audio=True),
    "null for an absent optional": veo(negative_prompt=None),
}
DIFFERENT_FROM_MINIMAX = {
    "another prompt": b'{"model":"minimax-video-01","input":{"prompt":"a dog surfing"}}',
    "a case change": b'{"model":"minimax-video-01","input":{"prompt":"A cat surfing"}}',
    "a non-default option": b'{"model":"minimax-video-01","input":{"prompt":"a cat surfing","prompt_optimizer":false}}',
    "another model": json.dumps(
        {"model": "kling-2.1-standard-i2v", "input": {"prompt": "a cat surfing", "image_url": "https://e.com/a.png"}}
    ).encode(),
}
DIFFERENT_FROM_VEO = {
    "another seed": veo(seed=2),
    "another resolution": veo(resolution="1080p"),
    "another image": veo(image_url="https://example.com/dog.png"),
    "a negative prompt": veo(negative_prompt="rain"),
}


def _cases(base: bytes, variants: dict[str, bytes]) -> list[Any]:
    return [pytest.param(base, raw, id=name) for name, raw in variants.items()]


@pytest.mark.parametrize(("first", "again"), _cases(MINIMAX, SAME_AS_MINIMAX) + _cases(VEO, SAME_AS_VEO))
def test_a_body_validating_to_the_same_request_replays_the_first_answer(
    system: System, first: bytes, again: bytes
) -> None:
    system.store.grant("u1", 100, "g")
    original = submit(system, first)
    replay = submit(system, again)
    assert replay.replayed and (replay.status_code, replay.body) == (original.status_code, original.body)
    assert len(system.workflow.starts) == 1
    assert system.store.ledger_totals("u1")["charge"] == system.job(original.body["job"]["id"]).credits_charged


@pytest.mark.parametrize(("first", "again"), _cases(MINIMAX, DIFFERENT_FROM_MINIMAX) + _cases(VEO, DIFFERENT_FROM_VEO))
def test_a_body_differing_in_what_the_job_uses_is_refused_and_not_charged(
    system: System, first: bytes, again: bytes
) -> None:
    system.store.grant("u1", 100, "g")
    original = submit(system, first)
    with pytest.raises(IdempotencyKeyReused):
        submit(system, again)
    assert len(system.workflow.starts) == 1
    assert system.store.ledger_totals("u1")["charge"] == system.job(original.body["job"]["id"]).credits_charged
    assert not submit(system, again, key="k2").replayed  # under its own key it is a new job


@pytest.mark.parametrize("raw", [MINIMAX, *SAME_AS_MINIMAX.values()])
def test_equivalent_bodies_share_their_first_fingerprint(system: System, raw: bytes) -> None:
    body = json.loads(raw)
    body.pop("user_id", None)
    assert (
        _read_request(body, system.registry).fingerprints[0]
        == _read_request(json.loads(MINIMAX), system.registry).fingerprints[0]
    )


def test_the_second_fingerprint_is_the_raw_body_for_records_stored_before_normalising(system: System) -> None:
    body = json.loads(SAME_AS_MINIMAX["padded prompt"])
    fingerprints = _read_request(body, system.registry).fingerprints
    assert fingerprints[1] == fingerprint("minimax-video-01", {"prompt": "  a cat surfing\n"})
    assert fingerprints[0] != fingerprints[1]


def test_a_body_that_no_longer_validates_has_only_its_raw_fingerprint(system: System) -> None:
    unknown = _read_request({"model": "retired-model", "input": {"prompt": "x"}}, system.registry)
    invalid = _read_request({"model": "minimax-video-01", "input": {"prompt": 3}}, system.registry)
    assert unknown.fingerprints == (fingerprint("retired-model", {"prompt": "x"}),)
    assert invalid.fingerprints == (fingerprint("minimax-video-01", {"prompt": 3}),)


def test_the_fingerprint_ignores_key_order_and_separates_model_from_input() -> None:
    assert fingerprint("m", {"a": 1, "b": [1, 2]}) == fingerprint("m", {"b": [1, 2], "a": 1})
    assert fingerprint("m", {"a": 1}) != fingerprint("m2", {"a": 1})
    assert fingerprint("m", {"a": 1}) != fingerprint("m", {"a": "1"})
    assert fingerprint("m", {"a": [1, 2]}) != fingerprint("m", {"a": [2, 1]})
    assert len(fingerprint("m", None)) == 64
