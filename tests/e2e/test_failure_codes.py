"""Every job failure code of the contract, driven through the fal simulator over HTTP.

One job per code, against ``python -m devstack`` as an app meets it: the simulator is set to
produce that kind of failure (fal's 422 naming the flagged input, its 504, a generic 500, text
instead of a video, a locked account, a queue longer than the model's deadline), the job is
submitted, and once fal holds it the setting is put back, so the jobs then finish side by side.
Each job must end ``failed`` with exactly its code (and the field fal named), refunded, and a
canceled job must show no error at all.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.process import StackProcess
from tests.e2e.conftest import app_stack

pytestmark = pytest.mark.e2e

KLING = {"model": "kling-2.1-standard-i2v", "input": {"prompt": "a heron", "image_url": "https://example.com/h.png"}}
VEO = {"model": "veo-3.1-i2v", "input": {"prompt": "a heron", "image_url": "https://example.com/h.png"}}
# code → (the simulator's setting that produces it, the body, the error.field fal names)
KINDS: dict[str, tuple[dict[str, Any], dict[str, Any], str | None]] = {
    "content_policy": ({"content_policy_rate": 1}, KLING, "prompt"),
    "invalid_input": ({"invalid_input_rate": 1}, KLING, "image_url"),
    "generation_failed": ({"fail_rate": 1}, KLING, None),
    "provider_timeout": ({"provider_timeout_rate": 1}, KLING, None),
    "media_rejected": ({"bad_media_rate": 1}, KLING, None),
    "submit_failed": ({"submit_reject_rate": 1}, KLING, None),
    # the shortest deadline (veo: 1200 s at the e2e time scale of 0.02 = 24 s) behind a longer queue
    "expired": ({"queue_s": 300}, VEO, None),
}
DEFAULTS = {
    "content_policy_rate": 0,
    "invalid_input_rate": 0,
    "fail_rate": 0,
    "provider_timeout_rate": 0,
    "bad_media_rate": 0,
    "submit_reject_rate": 0,
    "queue_s": 1.0,
}
TERMINAL = ("completed", "failed", "canceled")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    yield from app_stack(tmp_path_factory, "failure-codes", seed=17)


class App:
    def __init__(self, stack: StackProcess) -> None:
        self.stack = stack
        self.http = requests.Session()
        reply = self.http.post(
            f"{stack.api}/_local/users", json={"user_id": f"codes-{uuid.uuid4().hex[:6]}", "credits": 500}, timeout=10
        )
        reply.raise_for_status()
        self.auth = {"Authorization": f"Bearer {reply.json()['token']}"}

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {**self.auth, "Idempotency-Key": uuid.uuid4().hex}
        reply = self.http.post(f"{self.stack.api}/v1/videos", headers=headers, json=body, timeout=10)
        assert reply.status_code == 202, reply.text
        job: dict[str, Any] = reply.json()["job"]
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        reply = self.http.get(f"{self.stack.api}/v1/videos/{job_id}", headers=self.auth, timeout=10)
        reply.raise_for_status()
        job: dict[str, Any] = reply.json()
        return job

    def wait(self, job_id: str, statuses: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} not {statuses} in {timeout_s}s: {self.job(job_id)}")

    def sim(self, **values: object) -> None:
        self.http.put(f"{self.stack.sim}/_sim/config", json=values, timeout=5).raise_for_status()

    def balance(self) -> int:
        reply = self.http.get(f"{self.stack.api}/v1/credits", headers=self.auth, timeout=10)
        reply.raise_for_status()
        return int(reply.json()["balance"])


def test_each_failure_kind_fal_can_produce_ends_the_job_with_its_contract_code(stack: StackProcess) -> None:
    app = App(stack)
    jobs: dict[str, str] = {}
    try:
        for code, (setting, body, _) in KINDS.items():
            app.sim(**setting)
            job_id = app.submit(body)["id"]
            # the setting is drawn when fal gets the submit: keep it until the job left the queue
            app.wait(job_id, ("submitted", "in_progress", *TERMINAL), timeout_s=30)
            app.sim(**DEFAULTS)
            jobs[code] = job_id
    finally:
        app.sim(**DEFAULTS)
    ended = {code: app.wait(job_id, TERMINAL, timeout_s=90) for code, job_id in jobs.items()}
    shown = {
        code: (job["status"], (job["error"] or {}).get("code"), (job["error"] or {}).get("field"))
        for code, job in ended.items()
    }
    assert shown == {code: ("failed", code, field) for code, (_, _, field) in KINDS.items()}
    for job in ended.values():
        assert job["credits_refunded"] == job["credits_charged"] > 0
        assert job["progress"] == {"queue_position": None, "message": None}  # finished: no progress shown
        assert job["error"]["message"]
    assert app.balance() == 500


def test_a_canceled_job_shows_no_error_and_no_progress(stack: StackProcess) -> None:
    app = App(stack)
    app.sim(queue_s=60)
    try:
        job_id = app.submit(KLING)["id"]
        app.wait(job_id, ("submitted",), timeout_s=30)
    finally:
        app.sim(**DEFAULTS)
    reply = app.http.post(f"{stack.api}/v1/videos/{job_id}/cancel", headers=app.auth, timeout=10)
    assert reply.status_code == 200, reply.text
    job = app.wait(job_id, TERMINAL, timeout_s=30)
    assert (job["status"], job["error"], job["progress"]) == (
        "canceled",
        None,
        {"queue_position": None, "message": None},
    )
    assert job["credits_refunded"] == job["credits_charged"]
