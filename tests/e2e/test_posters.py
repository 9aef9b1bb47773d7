"""Posters and metadata over HTTP against `python -m devstack`: a job completes, then (bounded
wait, no timing assertion) `video.poster_url` serves a real JPEG of the simulator's real MP4, and
duration/width/height/fps/has_audio are those of the file itself."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
import requests

from devstack.process import StackProcess

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
POSTER_WAIT_S = 60  # a bound, not a measurement: the poster appears within a second or two


@pytest.fixture(scope="module")
def stack() -> Iterator[StackProcess]:
    with StackProcess(
        seed=11,
        time_scale=0.02,
        crash_rate=0.0,
        reconcile_every_s=5,
        reconcile_grace_s=5,
        log_path=ROOT / ".local" / "e2e-posters.log",
    ) as running:
        yield running


def _job(http: requests.Session, stack: StackProcess, token: str, job_id: str) -> dict:
    reply = http.get(f"{stack.api}/v1/videos/{job_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    reply.raise_for_status()
    return reply.json()


def _wait(what: str, bound_s: float, probe: object) -> dict:
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        found = probe()  # type: ignore[operator]
        if found is not None:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {bound_s:.0f} s")


def test_a_completed_job_gets_a_real_poster_and_the_files_metadata(stack: StackProcess) -> None:
    http = requests.Session()
    user = http.post(
        f"{stack.api}/_local/users", json={"user_id": f"poster-{uuid.uuid4().hex[:6]}", "credits": 20}, timeout=10
    ).json()
    token = user["token"]
    submitted = http.post(
        f"{stack.api}/v1/videos",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        json={
            "model": "kling-2.1-standard-i2v",
            "input": {"prompt": "a lighthouse", "image_url": "https://example.com/l.png"},
        },
        timeout=10,
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job"]["id"]

    def completed() -> dict | None:
        job = _job(http, stack, token, job_id)
        assert job["status"] not in ("failed", "canceled"), job
        return job if job["status"] == "completed" else None

    _wait("completed", 90, completed)

    def with_poster() -> dict | None:
        job = _job(http, stack, token, job_id)
        assert job["status"] == "completed"  # the media function never changes the status
        return job if job["video"]["poster_url"] is not None else None

    job = _wait("the poster", POSTER_WAIT_S, with_poster)
    video = job["video"]

    mp4 = http.get(video["url"], timeout=10)
    mp4.raise_for_status()
    with av.open(io.BytesIO(mp4.content)) as container:  # what the file itself says
        stream = container.streams.video[0]
        expected = {
            "duration_s": round(container.duration / av.time_base, 3),
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": round(float(stream.average_rate), 3),
            "has_audio": bool(container.streams.audio),
        }
    assert {k: video[k] for k in expected} == expected

    poster = http.get(video["poster_url"], timeout=10)
    poster.raise_for_status()
    assert poster.content[:2] == b"\xff\xd8"  # JPEG SOI
    assert poster.headers["Content-Type"] == "image/jpeg"
    with av.open(io.BytesIO(poster.content)) as image:  # a JPEG FFmpeg decodes, of the video's size
        frame = next(image.decode(video=0))
        assert (frame.width, frame.height) == (expected["width"], expected["height"])
    assert job["credits_refunded"] == 0 and job["credits_charged"] == submitted.json()["job"]["credits_charged"]
