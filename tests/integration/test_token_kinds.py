"""Which tokens name a caller, through the local gateway (its authorizer checks as API Gateway's
does: issuer, audience or client_id, expiry) into the real handlers: a Cognito ID token passes
the authorizer but is refused by the API; a ``sub`` that is not a sane id is refused."""

from __future__ import annotations

import pytest


def _balance(stack, token: str):
    return stack.request("GET", "/v1/credits", token=token)


def test_a_cognito_access_token_is_served_and_an_id_token_of_the_same_user_is_401(stack) -> None:
    stack.user(credits=7, user_id="0f8fad5b-d9cb-469f-a165-70867728950e")
    authority = stack.stack.authority
    access = authority.issue("0f8fad5b-d9cb-469f-a165-70867728950e", token_use="access")
    ident = authority.issue("0f8fad5b-d9cb-469f-a165-70867728950e", token_use="id", email="a@example.com")
    assert _balance(stack, access).json["balance"] == 7
    refused = _balance(stack, ident)
    assert refused.status == 401 and refused.json["code"] == "unauthorized"
    submit = stack.request(
        "POST",
        "/v1/videos",
        token=ident,
        headers={"idempotency-key": "k"},
        body={"model": "minimax-video-01", "input": {"prompt": "a cat"}},
    )
    assert submit.status == 401
    assert _balance(stack, access).json["balance"] == 7  # nothing charged


@pytest.mark.parametrize("sub", ["u" * 129, "user#1", "USER#victim", "a b"])
def test_a_sub_that_is_not_a_sane_id_is_401(stack, sub: str) -> None:
    reply = _balance(stack, stack.stack.authority.issue(sub))
    assert reply.status == 401 and reply.json["code"] == "unauthorized"
