"""What a restart of the local stack (`make run` again) keeps and loses, and a start on a taken port.

The signing key of the local authority is kept in a file, so a token issued before a restart is
still accepted after it; moto keeps AWS in memory, so users' credits and jobs are gone.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from devstack.process import StackProcess

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_a_token_outlives_a_restart_and_the_aws_state_does_not(tmp_path: Path) -> None:
    key_file = tmp_path / "jwt-signing-key.pem"
    stack = StackProcess(
        seed=1,
        time_scale=0.02,
        crash_rate=0,
        reconcile_every_s=0,
        reconcile_grace_s=10,
        log_path=tmp_path / "stack.log",
    )
    stack.env["JWT_KEY_FILE"] = str(key_file)
    http = requests.Session()
    try:
        stack.start()
        user = http.post(f"{stack.api}/_local/users", json={"user_id": "restart-1", "credits": 30}, timeout=10)
        auth = {"Authorization": f"Bearer {user.json()['token']}"}
        assert http.get(f"{stack.api}/v1/credits", headers=auth, timeout=10).json()["balance"] == 30
        submitted = http.post(
            f"{stack.api}/v1/videos",
            headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
            json={
                "model": "kling-2.1-standard-i2v",
                "input": {"prompt": "a heron taking off", "image_url": "https://example.com/heron.png"},
            },
            timeout=10,
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job"]["id"]
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        stack.stop()

        stack.start()  # the same ports, the same key file
        credits = http.get(f"{stack.api}/v1/credits", headers=auth, timeout=10)
        assert credits.status_code == 200  # the token is still good
        assert credits.json()["balance"] == 0  # moto's tables were in memory: the grant is gone
        assert http.get(f"{stack.api}/v1/videos/{job_id}", headers=auth, timeout=10).status_code == 404
    finally:
        stack.stop()


def test_a_taken_moto_port_ends_the_start_at_once_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "PORT": "0",
            "FALSIM_PORT": "0",
            "MOTO_PORT": str(port),
            "PYTHONPATH": f"{ROOT / 'layers' / 'videogen'}{os.pathsep}{ROOT}",
        }
        env.pop("FAL_KEY", None)
        done = subprocess.run(
            [sys.executable, "-m", "devstack"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"MOTO_PORT={port}" in lines[0]
