"""The reconciler and the crash points: whatever step a Lambda dies after, the system still
reaches the right terminal state with correct credits (the conftest audits every test)."""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from videogen import crash, wiring
from videogen.domain.media import poster_key
from videogen.domain.models import FalRequest, JobStatus, Progress


@pytest.fixture
def events(stack_sfn):
    """Every event the bus receives (an EventBridge rule → SQS queue in moto)."""
    return stack_sfn.event_tap()


def _ledger_types(stack, token) -> list[str]:
    return [e["type"] for e in stack.request("GET", "/v1/credits?limit=100", token=token).json["ledger"]]


# --- crash points -------------------------------------------------------------------------------


def test_crash_after_submit_transaction_reconciler_starts_the_execution(stack_sfn):
    token = stack_sfn.user(credits=10)
    crash.arm(crash.AFTER_SUBMIT_TRANSACTION)
    assert stack_sfn.submit(token, key="k").status == 500  # the Lambda died: API Gateway answers 500
    replay = stack_sfn.submit(token, key="k")  # the app retries with its key
    assert replay.status == 202 and replay.headers["idempotent-replayed"] == "true"
    job_id = replay.json["job"]["id"]
    assert stack_sfn.job(job_id).status == JobStatus.QUEUED

    assert stack_sfn.stack.reconcile_once()["execution_started"] == 1
    job = stack_sfn.wait_status(job_id, {"completed"})
    assert job.video is not None
    assert _ledger_types(stack_sfn, token) == ["charge", "grant"]


def test_crash_after_fal_accepted_with_webhooks_lost_resubmits_once(stack_sfn):
    """fal has no idempotency key: with the first generation unheard of, the retried SubmitToFal
    submits again and the poll loop finishes the job. Charged once, never refunded."""
    stack_sfn.sim.set_config(queue_s=0.2, run_s=0.3, webhook_drop_rate=1)
    token = stack_sfn.user(credits=10)
    crash.arm(crash.AFTER_FAL_SUBMIT)
    job_id = stack_sfn.submit(token).json["job"]["id"]
    job = stack_sfn.wait_status(job_id, {"completed", "failed"}, timeout_s=40)
    assert job.status == JobStatus.COMPLETED
    assert job.submit_attempts == 2
    assert stack_sfn.sim.stats()["submits"] == 2  # the lost generation and the retry
    assert crash.fired[crash.AFTER_FAL_SUBMIT] == 1
    assert _ledger_types(stack_sfn, token) == ["charge", "grant"]


def test_crash_after_s3_upload_before_the_transition(stack_sfn):
    token = stack_sfn.user(credits=10)
    crash.arm(crash.AFTER_S3_UPLOAD)
    job_id = stack_sfn.submit(token).json["job"]["id"]
    job = stack_sfn.wait_status(job_id, {"completed"}, timeout_s=40)
    assert crash.fired[crash.AFTER_S3_UPLOAD] == 1
    # the next actor reused the stored object (and the media function put its poster beside it)
    stack_sfn.wait_event_out(job_id)
    assert stack_sfn.bucket_keys() == [job.video.s3_key, poster_key(job.video.s3_key)]
    assert _ledger_types(stack_sfn, token) == ["charge", "grant"]


@pytest.mark.parametrize("fail", [False, True])
def test_crash_after_the_transition_before_the_event_reconciler_publishes_it(stack_sfn, events, fail):
    if fail:
        stack_sfn.sim.set_config(fail_rate=1)
    token = stack_sfn.user(credits=10)
    crash.arm(crash.AFTER_TRANSITION)
    job_id = stack_sfn.submit(token).json["job"]["id"]
    job = stack_sfn.wait_status(job_id, {"failed" if fail else "completed"})
    stack_sfn.wait_executions_idle()
    assert job.event_pending and events.types() == []

    result = stack_sfn.stack.reconcile_once()
    assert result["event_published"] == 1
    assert events.types(job_id) == ["Job Failed" if fail else "Job Completed"]
    assert not stack_sfn.job(job_id).event_pending
    assert stack_sfn.stack.reconcile_once().get("found", 0) == 0  # it left the sparse index
    assert _ledger_types(stack_sfn, token) == (["refund", "charge", "grant"] if fail else ["charge", "grant"])


# --- the reconciler ------------------------------------------------------------------------------


QUIET_S = 5  # longer than any model's quiet allowance at the tests' time scale (0.01)


def _reconcile_later() -> dict[str, int]:
    """A reconciler pass QUIET_S seconds from now: jobs at fal count as stuck only after their
    model's quiet allowance (a healthy execution writes a heartbeat on every Check)."""
    return wiring.reconciler().run(now=time.time() + QUIET_S)


def test_jobs_with_a_recent_heartbeat_are_left_alone(stack, monkeypatch):
    token = stack.user(credits=20)
    job_id = _submitted_without_execution(stack, monkeypatch, token, queue_s=30)
    request_id = stack.job(job_id).fal.request_id
    assert wiring.check_job().run(job_id, 0, {})["done"] is False  # a Check: the heartbeat
    assert stack.sim.requests[request_id]["status_calls"] == 1
    assert stack.stack.reconcile_once().get("found", 0) == 0
    assert stack.sim.requests[request_id]["status_calls"] == 1  # left alone: fal was not asked
    assert _reconcile_later()["polled_orphan"] == 1
    assert stack.sim.requests[request_id]["status_calls"] == 2


def _submitted_without_execution(stack, monkeypatch, token, **sim) -> str:
    """A job at fal whose execution is gone (stopped), its webhook lost."""
    stack.sim.set_config(**{"queue_s": 0.05, "run_s": 0.1, "webhook_drop_rate": 1, **sim})
    job_id = stack.submit(token).json["job"]["id"]
    wiring.submit_to_fal().run(job_id)
    boto3.client("stepfunctions").stop_execution(executionArn=wiring.workflow().execution_arn(job_id))
    return job_id


def test_job_finished_at_fal_whose_execution_died_is_completed(stack, monkeypatch):
    token = stack.user(credits=20)
    job_id = _submitted_without_execution(stack, monkeypatch, token)
    time.sleep(0.5)
    assert _reconcile_later()["finished"] == 1
    assert stack.job(job_id).status == JobStatus.COMPLETED


def test_job_still_generating_whose_execution_died_is_polled_until_done(stack, monkeypatch):
    token = stack.user(credits=20)
    job_id = _submitted_without_execution(stack, monkeypatch, token, queue_s=0, run_s=1.5)
    assert _reconcile_later()["polled_orphan"] == 1
    assert stack.job(job_id).status == JobStatus.IN_PROGRESS
    time.sleep(1.6)
    assert _reconcile_later()["finished"] == 1
    assert stack.job(job_id).status == JobStatus.COMPLETED


def test_request_fal_lost_is_failed_and_refunded(stack):
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    base = f"{stack.sim.base_url}/fal-ai/minimax/requests/lost-1"
    stack.store.record_submit_attempt(job_id)
    stack.store.mark_submitted(
        job_id,
        FalRequest(request_id="lost-1", status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel"),
        Progress(),
    )
    assert _reconcile_later()["failed_refunded"] == 1
    job = stack.job(job_id)
    assert job.status == JobStatus.FAILED and job.error.code == "expired"
    assert _ledger_types(stack, token) == ["refund", "charge", "grant"]


def test_queued_job_whose_execution_ended_is_failed_and_refunded(stack):
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    boto3.client("stepfunctions").stop_execution(executionArn=wiring.workflow().execution_arn(job_id))
    assert stack.stack.reconcile_once()["failed_refunded"] == 1
    assert stack.job(job_id).status == JobStatus.FAILED
    assert stack.store.get_balance(stack.job(job_id).user_id).balance == 10


def test_job_past_its_deadline_is_expired_with_a_refund(stack, monkeypatch):
    token = stack.user(credits=10)
    job_id = _submitted_without_execution(stack, monkeypatch, token, queue_s=60)
    held = stack.job(job_id)
    assert held.fal is not None and not held.status.is_terminal  # at fal, its execution gone, in time
    stack.pass_deadline(job_id)
    assert _reconcile_later()["expired"] == 1
    job = stack.job(job_id)
    assert job.status == JobStatus.FAILED and job.error.code == "expired"
    assert stack.sim.stats()["cancelled"] == 1
    assert _ledger_types(stack, token) == ["refund", "charge", "grant"]  # refunded once


def test_work_per_run_is_bounded_and_continues_next_run(stack, monkeypatch):
    token = stack.user(credits=50)
    ids = []
    for i in range(5):  # each submit dies after its transaction: five jobs without an execution
        crash.arm(crash.AFTER_SUBMIT_TRANSACTION)
        assert stack.submit(token, key=f"b{i}").status == 500
        ids.append(stack.submit(token, key=f"b{i}").json["job"]["id"])  # the app's retry: a replay
    monkeypatch.setenv("RECONCILE_BATCH", "2")
    monkeypatch.setenv("RECONCILE_GRACE_S", "1")
    wiring.reset()
    time.sleep(1.1)
    started = [stack.stack.reconcile_once().get("execution_started", 0) for _ in range(4)]
    assert started == [2, 2, 1, 0]
    names = {
        e["name"]
        for e in boto3.client("stepfunctions").list_executions(stateMachineArn=stack.stack.resources.state_machine_arn)[
            "executions"
        ]
    }
    assert names == set(ids)


def test_two_reconcilers_at_once_refund_each_lost_job_once(stack):
    token = stack.user(credits=50)
    ids = []
    for i in range(5):
        job_id = stack.submit(token, key=f"r{i}").json["job"]["id"]
        base = f"{stack.sim.base_url}/fal-ai/minimax/requests/lost-{i}"
        stack.store.record_submit_attempt(job_id)
        stack.store.mark_submitted(
            job_id,
            FalRequest(
                request_id=f"lost-{i}", status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel"
            ),
            Progress(),
        )
        ids.append(job_id)
    barrier = threading.Barrier(2)
    results = []

    def run():
        barrier.wait()
        results.append(wiring.reconciler().run(now=time.time() + QUIET_S))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(stack.job(i).status == JobStatus.FAILED for i in ids)
    assert _ledger_types(stack, token).count("refund") == 5


def test_active_index_holds_only_unfinished_jobs(stack):
    token = stack.user(credits=20)
    keep = stack.submit(token, key="keep").json["job"]["id"]
    gone = stack.submit(token, key="gone").json["job"]["id"]
    assert stack.request("POST", f"/v1/videos/{gone}/cancel", token=token).status == 200
    items = []
    for shard in range(8):
        items += stack.db.query(
            TableName=stack.table,
            IndexName="Active",
            KeyConditionExpression="active_pk = :p",
            ExpressionAttributeValues={":p": {"S": f"ACTIVE#{shard}"}},
        )["Items"]
    assert [i["id"]["S"] for i in items] == [keep]


@pytest.mark.parametrize("delete_fails_once", [False, True])
def test_crash_after_s3_upload_then_the_job_fails_the_outbox_removes_the_video(stack, monkeypatch, delete_fails_once):
    """The poll loop stored fal's video and died before its ``completed`` write; the job then
    failed another way (as after an OK webhook without payload). The terminal event's outbox
    removes the object no job owns; if S3 refuses, the event stays owed and the reconciler retries."""
    token = stack.user(credits=20)
    job_id = _submitted_without_execution(stack, monkeypatch, token)
    time.sleep(0.5)  # fal finished
    crash.arm(crash.AFTER_S3_UPLOAD)
    with pytest.raises(crash.CrashPointReached):
        wiring.check_job().run(job_id, 0, {})
    assert len(stack.s3.list_objects_v2(Bucket=stack.bucket).get("Contents", [])) == 1
    deletes: list[int] = []

    def s3_refuses_once(**_: object) -> None:
        deletes.append(1)
        if delete_fails_once and len(deletes) == 1:
            raise EndpointConnectionError(endpoint_url="http://s3.test")  # what botocore raises on a lost line

    wiring.client("s3").meta.events.register("before-call.s3.DeleteObject", s3_refuses_once)
    try:
        wiring.finisher().fail(stack.job(job_id), "generation_failed", "the provider returned no result")
        assert stack.job(job_id).event_pending == delete_fails_once
        if delete_fails_once:
            assert len(stack.s3.list_objects_v2(Bucket=stack.bucket).get("Contents", [])) == 1
            assert _reconcile_later()["event_published"] == 1
    finally:
        wiring.client("s3").meta.events.unregister("before-call.s3.DeleteObject", s3_refuses_once)
    job = stack.job(job_id)
    assert job.status == JobStatus.FAILED and not job.event_pending
    assert stack.s3.list_objects_v2(Bucket=stack.bucket).get("KeyCount") == 0
    assert _ledger_types(stack, token) == ["refund", "charge", "grant"]
