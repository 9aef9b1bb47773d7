"""The job workflow end to end on moto: the REAL statemachines/video_job.asl.json executed by
moto's interpreter, its Lambda tasks answered by the real handlers in-process, fal played by
the simulator, webhooks through the local gateway into the real webhook handler."""

from __future__ import annotations

import time

import boto3
import pytest

from videogen import wiring
from videogen.domain.media import poster_key

KLING = {
    "model": "kling-2.1-standard-i2v",
    "payload": {"prompt": "a lighthouse in a storm", "image_url": "https://example.com/l.png"},
}


@pytest.fixture
def events(stack_sfn):
    """Every event the bus receives (an EventBridge rule → SQS queue in moto)."""
    return stack_sfn.event_tap()


def _execution(stack, job_id: str) -> dict:
    sfn = boto3.client("stepfunctions")
    arn = wiring.workflow().execution_arn(job_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return desc
        time.sleep(0.1)
    raise AssertionError("execution still running")


def _history_states(job_id: str) -> list[str]:
    sfn = boto3.client("stepfunctions")
    events = sfn.get_execution_history(executionArn=wiring.workflow().execution_arn(job_id))["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def test_webhook_path_completes_into_s3_and_check_then_stops_without_calling_fal(stack_sfn, events):
    stack_sfn.sim.set_config(queue_s=0.1, run_s=0.2)
    token = stack_sfn.user(credits=10)
    job_id = stack_sfn.submit(token, **KLING).json["job"]["id"]

    job = stack_sfn.wait_status(job_id, {"completed"})
    assert len(job.video.sha256) == 64
    assert job.video.s3_key == f"videos/{job_id}/{job.video.sha256}.mp4"  # content-addressed
    stack_sfn.wait_event_out(job_id)  # the poster is cut on "Job Completed", published after the transition
    assert stack_sfn.bucket_keys() == [job.video.s3_key, poster_key(job.video.s3_key)]
    assert _execution(stack_sfn, job_id)["status"] == "SUCCEEDED"
    stack_sfn.wait_event_out(job_id)
    assert events.types(job_id) == ["Job Completed"]
    assert stack_sfn.sim.stats()["webhooks_sent"] >= 1
    # the webhook won: the first Check found a terminal job and the loop ended there, without a
    # call to fal (measured by the simulator: a Check that polled and found COMPLETED would also
    # end the loop after one Check)
    states = _history_states(job_id)
    assert states.count("Check") == 1 and "PollWait" not in states
    asked = stack_sfn.sim.requests[job.fal.request_id]
    assert (asked["status_calls"], asked["result_calls"], asked["cancel_calls"]) == (0, 0, 0)
    view = stack_sfn.request("GET", f"/v1/videos/{job_id}", token=token).json
    assert view["video"]["size_bytes"] == job.video.size_bytes
    assert stack_sfn.store.get_balance(job.user_id).balance == 6


def test_poll_only_path_with_every_webhook_dropped(stack_sfn, events):
    stack_sfn.sim.set_config(queue_s=0.5, run_s=1.5, webhook_drop_rate=1)
    token = stack_sfn.user(credits=10)
    job_id = stack_sfn.submit(token, **KLING).json["job"]["id"]

    job = stack_sfn.wait_status(job_id, {"completed"})
    assert stack_sfn.sim.stats()["webhooks_dropped"] == 1
    stack_sfn.wait_event_out(job_id)  # the poster is cut on "Job Completed", published after the transition
    assert job.video is not None and stack_sfn.bucket_keys() == [job.video.s3_key, poster_key(job.video.s3_key)]
    assert _execution(stack_sfn, job_id)["status"] == "SUCCEEDED"
    assert "PollWait" in _history_states(job_id)
    assert stack_sfn.sim.requests[job.fal.request_id]["status_calls"] >= 2  # the loop did ask fal
    stack_sfn.wait_event_out(job_id)
    assert events.types() == ["Job Completed"]


def test_progress_is_kept_current_by_check(stack_sfn):
    stack_sfn.sim.set_config(queue_s=3, run_s=3, webhook_drop_rate=1)
    token = stack_sfn.user(credits=10)
    job_id = stack_sfn.submit(token, **KLING).json["job"]["id"]
    queued = stack_sfn.wait_status(job_id, {"submitted"})
    assert queued.fal is not None and queued.fal.status_url.endswith("/status")
    running = stack_sfn.wait_status(job_id, {"in_progress"}, timeout_s=15)
    assert running.progress.message
    stack_sfn.wait_status(job_id, {"completed"}, timeout_s=20)


def test_fal_failure_fails_the_job_and_refunds_once(stack_sfn, events):
    stack_sfn.sim.set_config(fail_rate=1)
    token = stack_sfn.user(credits=10)
    job_id = stack_sfn.submit(token, **KLING).json["job"]["id"]
    job = stack_sfn.wait_status(job_id, {"failed"})
    assert job.error.code == "generation_failed"
    assert stack_sfn.store.get_balance(job.user_id).balance == 10
    ledger = stack_sfn.request("GET", "/v1/credits", token=token).json["ledger"]
    assert [e["type"] for e in ledger] == ["refund", "charge", "grant"]
    assert stack_sfn.bucket_keys() == []
    stack_sfn.wait_event_out(job_id)
    assert events.types() == ["Job Failed"]


def test_submit_5xx_then_success_is_retried_by_the_state_machine(stack_sfn):
    stack_sfn.sim.set_config(submit_error_rate=1)
    token = stack_sfn.user(credits=10)
    job_id = stack_sfn.submit(token, **KLING).json["job"]["id"]
    deadline = time.monotonic() + 10
    while stack_sfn.sim.stats()["submit_errors"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    stack_sfn.sim.set_config(submit_error_rate=0)
    job = stack_sfn.wait_status(job_id, {"completed"})
    assert stack_sfn.sim.stats()["submit_errors"] >= 1 and stack_sfn.sim.stats()["submits"] == 1
    assert job.submit_attempts == 1  # the attempts fal refused (429/503) never reached it: not counted
    assert stack_sfn.store.get_balance(job.user_id).balance == 6


def test_deadline_cancels_at_fal_fails_and_refunds(stack_sfn, events):
    stack_sfn.sim.set_config(queue_s=60, run_s=60, webhook_drop_rate=1)
    token = stack_sfn.user(credits=10)
    job_id = stack_sfn.submit(token, **KLING).json["job"]["id"]
    stack_sfn.wait_status(job_id, {"submitted", "in_progress"})  # at fal, its Check loop running
    stack_sfn.pass_deadline(job_id)
    job = stack_sfn.wait_status(job_id, {"failed"}, timeout_s=30)
    assert job.error.code == "expired"
    assert stack_sfn.store.get_balance(job.user_id).balance == 10
    assert "Expire" in _history_states(job_id)
    assert stack_sfn.sim.stats()["cancelled"] == 1
    stack_sfn.wait_event_out(job_id)
    assert events.types() == ["Job Failed"]
