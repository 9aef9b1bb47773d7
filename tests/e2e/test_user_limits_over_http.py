"""Per-user limits over HTTP against the local stack (``python -m devstack`` in its own process,
started with a low budget through the environment, as an operator's stack parameters would set it):
a burst from one user gets 429 rate_limited with Retry-After while another user is served."""

from __future__ import annotations

import uuid
from pathlib import Path

import requests

from devstack.process import StackProcess

BODY = {"model": "minimax-video-01", "input": {"prompt": "a fox in the snow"}}


def _token(api: str, credits: int = 100) -> str:
    reply = requests.post(f"{api}/_local/users", json={"user_id": f"u-{uuid.uuid4().hex[:8]}", "credits": credits})
    reply.raise_for_status()
    return str(reply.json()["token"])


def _submit(api: str, token: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
    return requests.post(f"{api}/v1/videos", json=BODY, headers=headers, timeout=30)


def test_a_burst_from_one_user_is_rate_limited_while_another_user_is_served(tmp_path: Path) -> None:
    stack = StackProcess(
        seed=7,
        time_scale=0.02,
        crash_rate=0,
        reconcile_every_s=0,
        reconcile_grace_s=10,
        log_path=tmp_path / "stack.log",
    )
    stack.env.update(USER_REQUESTS_PER_MINUTE="1", USER_REQUEST_BURST="3")
    with stack:
        alice, bob = _token(stack.api), _token(stack.api)
        answers = [_submit(stack.api, alice) for _ in range(5)]
        assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
        refused = answers[3]
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.json()["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert _submit(stack.api, bob).status_code == 202  # another user's own budget
        credits = requests.get(f"{stack.api}/v1/credits", headers={"Authorization": f"Bearer {alice}"}, timeout=30)
        assert credits.json()["balance"] == 100 - 3 * 5  # the refused ones charged nothing
