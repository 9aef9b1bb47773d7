"""``POST /_local/users`` reads its body like every body the API reads: depth-bounded JSON
(videogen.jsonbody) into a strict model, so a bad body is a JSON 400, never a 500 or a guess."""

from __future__ import annotations

import json

import pytest

from devstack import stack
from devstack.stack import LocalUser


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,  # once a RecursionError: a 500
        b'{"user_id": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        json.dumps({"user_id": 5}).encode(),  # once coerced to "5"
        json.dumps({"user_id": "alice", "grant_id": []}).encode(),  # once ignored
        json.dumps({"user_id": "alice", "credits": "5"}).encode(),
        json.dumps({"user_id": "alice", "credits": True}).encode(),
        json.dumps({"user_id": "alice", "credits": 5.5}).encode(),
        json.dumps({"user_id": "alice", "extra": 1}).encode(),
        json.dumps({"user_id": ""}).encode(),
        b'{"user_id": "alice", "credits": NaN}',
        b"{}",
        b"not json",
        b"\xff\xfe",
    ],
)
def test_a_bad_body_is_a_json_400(body: bytes) -> None:
    with pytest.raises(ValueError):
        LocalUser.from_body(body)
    status, answer = stack.LocalStack._create_user(object(), body)  # type: ignore[arg-type]
    assert status == 400 and isinstance(answer["error"], str) and "\n" not in answer["error"]


def test_the_400_says_which_field_is_wrong() -> None:
    status, answer = stack.LocalStack._create_user(object(), json.dumps({"user_id": 5}).encode())  # type: ignore[arg-type]
    assert status == 400 and "user_id: Input should be a valid string" in answer["error"]


def test_a_good_body_is_read_as_sent() -> None:
    user = LocalUser.from_body(json.dumps({"user_id": "alice", "credits": 5, "grant_id": "g-1"}).encode())
    assert (user.user_id, user.credits, user.grant_id) == ("alice", 5, "g-1")
    assert LocalUser.from_body(b'{"user_id": "bob"}').credits == 0
