"""The README's "Building an app on videogen", run as it is written, over HTTP against the local
stack (``python -m devstack``): its scripts (the marked ```bash blocks, read from README.md by
tests/readme_flow.py) are executed by bash with ``API`` pointing at the stack, and what they print
must carry every field the section says the app reads. A call that stops working, or a field that
goes missing, fails here."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.process import StackProcess
from tests import readme_flow
from tests.e2e.conftest import app_stack
from tests.fakes.uploads import png

pytestmark = pytest.mark.e2e

VIDEO_FIELDS = ("url", "expires_at", "poster_url", "content_type", "size_bytes", "duration_s", "width", "height")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    for running in app_stack(tmp_path_factory, "app-flow", seed=5):
        yield running  # the loop's end stops it
    log = running.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


def _run(script: str, stack: StackProcess, cwd: Path) -> tuple[list[Any], list[str]]:
    for tool in ("bash", "curl", "jq"):
        assert shutil.which(tool), f"the README's scripts need {tool}"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "API": stack.api, "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return readme_flow.documents(done.stdout)


def _one(docs: list[Any], **match: Any) -> dict[str, Any]:
    found = [d for d in docs if isinstance(d, dict) and all(d.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, docs)
    return found[0]


def test_the_readme_app_flow_runs_as_written_and_the_app_gets_every_field_it_reads(
    stack: StackProcess, tmp_path: Path
) -> None:
    (tmp_path / "fox.png").write_bytes(png(64, 48))
    scripts = readme_flow.scripts()
    # the cancel of the second script must meet a job still waiting in fal's queue
    slow_queue = f"curl -sf -XPUT {stack.sim}/_sim/config -d '{json.dumps({'queue_s': 60})}' >/dev/null\n"
    docs, lines = _run(scripts["main"] + "\n" + slow_queue + scripts["errors"], stack, tmp_path)

    # 2. models: one line per model on sale
    models = requests.get(f"{stack.api}/v1/models", timeout=10).json()["items"]
    for model in models:
        assert f"{model['id']}  {model['credits']} credits  ~{model['expected_seconds']} s" in lines

    # 5. the upload was checked and is ready, with what was measured
    upload = _one(docs, status="ready")
    assert upload["id"].startswith("upl_") and (upload["width"], upload["height"]) == (64, 48)

    # 6. the device, never its token
    assert _one(docs, id="iphone-1") == {"id": "iphone-1", "platform": "apns"}

    # 7. the job id
    job_id = next(line.split()[1] for line in lines if line.startswith("job "))
    assert job_id.startswith("vid_")

    # 8. the push: APNs alert, a rich notification with the poster, the job's fields
    push = next(d for d in docs if isinstance(d, dict) and "aps" in d)
    assert push["job_id"] == job_id and push["status"] == "completed"
    assert push["aps"]["alert"] == {"title": "Your video is ready", "body": "Tap to watch it."}
    assert push["aps"]["mutable-content"] == 1 and push["poster_url"].startswith("http")

    # 9. the job: the video, its poster, what was measured from the file
    job = _one(docs, id=job_id)
    assert job["status"] == "completed"
    video = job["video"]
    for field in VIDEO_FIELDS:
        assert video[field] is not None, field
    assert video["content_type"] == "video/mp4" and video["duration_s"] > 0
    assert isinstance(video["fps"], (int, float)) and isinstance(video["has_audio"], bool)
    poster = requests.get(video["poster_url"], timeout=10)
    assert poster.status_code == 200 and poster.content[:3] == b"\xff\xd8\xff"  # a JPEG

    # 10. byte ranges
    assert "range 206 video/mp4" in lines

    # 11. the charge of this job, and the balance
    credits = next(d for d in docs if isinstance(d, dict) and "ledger" in d)
    assert {"type": "charge", "amount": 4, "job_id": job_id} in credits["ledger"]
    assert isinstance(credits["balance"], int)

    # errors script: the cancel refunded; problems carry their code; 402
    canceled = _one(docs, status="canceled")
    assert canceled["credits_refunded"] == 4 and canceled["error"] is None
    missing = _one(docs, code="upload_not_found")
    assert missing["status"] == 422 and "upl_00000000000000000000000000" in missing["detail"]
    poor = _one(docs, code="insufficient_credits")
    assert poor["status"] == 402
    assert [line for line in lines if line.startswith("HTTP ")] == ["HTTP 422", "HTTP 402"]
