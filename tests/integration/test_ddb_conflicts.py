"""DynamoDB's contention on moto, injected as AWS answers it (devstack/moto_patches.py), and the
adapter's mapping of it: retried with backoff, then 503 service_unavailable (Retry-After) or, for
a submit whose own key record stays in conflict, 409 idempotency_key_in_use; nothing changed.

The fault: ``set_conflicts(rate, ops)`` (what ``LOCAL_DDB_CONFLICT_RATE`` / ``_OPS`` set at stack
start) and ``conflict_next(op, n, item)`` (the next ``n`` calls, deterministic). The services'
branches on fakes: tests/unit/test_conflict_handling.py.
"""

from __future__ import annotations

import boto3
import pytest

from devstack import moto_patches
from devstack.stack import in_process
from tests.conftest import Harness
from videogen import wiring
from videogen.domain.errors import StoreBusy
from videogen.domain.models import JobStatus
from videogen.retry import CONFLICT_ATTEMPTS
from videogen.services.credits import grant_credits

ABSORBED = CONFLICT_ATTEMPTS - 1


def _injected(operation: str) -> int:
    return moto_patches.FAULT.injected[operation]


def _balance(stack, token: str) -> int:
    return int(stack.request("GET", "/v1/credits", token=token).json["balance"])


def _executions(stack) -> int:
    sfn = boto3.client("stepfunctions")
    return len(sfn.list_executions(stateMachineArn=stack.stack.resources.state_machine_arn)["executions"])


def test_the_fault_answers_as_dynamodb_does_and_changes_nothing(stack, capsys) -> None:
    db, table = stack.db, stack.table
    key = {"pk": {"S": "USER#probe"}, "sk": {"S": "BALANCE"}}
    moto_patches.conflict_next("TransactGetItems", item=1)
    with pytest.raises(db.exceptions.TransactionCanceledException) as cancelled:
        db.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": table, "Key": key}},
                {"Get": {"TableName": table, "Key": {**key, "sk": {"S": "IDEM#k"}}}},
            ]
        )
    reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert reasons == ["None", "TransactionConflict"]
    moto_patches.conflict_next("UpdateItem")
    with pytest.raises(db.exceptions.TransactionConflictException):
        db.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET balance = :b",
            ExpressionAttributeValues={":b": {"N": "5"}},
        )
    moto_patches.conflict_next("TransactWriteItems", item=0)
    with pytest.raises(db.exceptions.TransactionCanceledException) as cancelled:
        db.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": {**key, "balance": {"N": "5"}}}}])
    assert [r["Code"] for r in cancelled.value.response["CancellationReasons"]] == ["TransactionConflict"]
    assert "Item" not in db.get_item(TableName=table, Key=key)  # nothing was written
    err = capsys.readouterr().err
    for operation in ("TransactGetItems", "UpdateItem", "TransactWriteItems"):
        assert err.count(f"{moto_patches.NEEDLE} on {operation}") == 1  # one line per fault


def test_the_rate_is_read_at_stack_start_and_counted_in_the_stats(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_DDB_CONFLICT_RATE", "1.0")
    monkeypatch.setenv("LOCAL_DDB_CONFLICT_OPS", "TransactGetItems")
    monkeypatch.setenv("LOCAL_DDB_CONFLICT_SEED", "7")
    with in_process() as local:
        harness = Harness(local)
        token = harness.user(credits=10)  # a grant: TransactWriteItems, not faulted
        reply = harness.submit(token, key="k")
        assert reply.status == 503 and reply.json["code"] == "service_unavailable"
        assert local.stats()["conflicts_injected"] == {"TransactGetItems": CONFLICT_ATTEMPTS}
    with pytest.raises(ValueError, match="LOCAL_DDB_CONFLICT_RATE"):
        moto_patches.conflicts_from_env({"LOCAL_DDB_CONFLICT_RATE": "1.5"})
    with pytest.raises(ValueError, match="unknown DynamoDB operations"):
        moto_patches.conflicts_from_env({"LOCAL_DDB_CONFLICT_RATE": "0.1", "LOCAL_DDB_CONFLICT_OPS": "GetItem"})


# --- POST /v1/videos: read_for_submit (TransactGetItems) and create_job (TransactWriteItems) -----


@pytest.mark.parametrize("operation", ["TransactGetItems", "TransactWriteItems"])
def test_a_submit_absorbs_a_few_conflicts(stack, operation: str) -> None:
    token = stack.user(credits=10)
    moto_patches.conflict_next(operation, ABSORBED)
    reply = stack.submit(token, key="k")
    assert reply.status == 202 and _injected(operation) == ABSORBED
    assert _balance(stack, token) == 5 and _executions(stack) == 1


@pytest.mark.parametrize("operation", ["TransactGetItems", "TransactWriteItems"])
def test_a_submit_under_persistent_conflicts_is_503_with_retry_after_then_works_with_the_same_key(
    stack, operation: str
) -> None:
    token = stack.user(credits=10)
    if operation == "TransactGetItems":
        moto_patches.set_conflicts(1.0, [operation])
    else:  # on the balance item: a conflict on the key's own record is 409 (below)
        moto_patches.conflict_next(operation, CONFLICT_ATTEMPTS, item=0)
    reply = stack.submit(token, key="k")
    assert reply.status == 503 and reply.json["code"] == "service_unavailable", reply.json
    assert reply.headers["retry-after"] == "1"
    assert _injected(operation) == CONFLICT_ATTEMPTS  # tried, then given up: bounded
    moto_patches.set_conflicts(0)
    assert _balance(stack, token) == 10 and _executions(stack) == 0  # nothing charged
    again = stack.submit(token, key="k")
    assert again.status == 202 and "idempotent-replayed" not in again.headers
    assert _balance(stack, token) == 5 and _executions(stack) == 1


def test_a_submit_whose_key_record_stays_in_conflict_is_409_in_use(stack) -> None:
    token = stack.user(credits=10)
    moto_patches.conflict_next("TransactWriteItems", CONFLICT_ATTEMPTS, item=1)  # the IDEM# item
    reply = stack.submit(token, key="k")
    assert reply.status == 409 and reply.json["code"] == "idempotency_key_in_use"
    assert _balance(stack, token) == 10
    assert stack.submit(token, key="k").status == 202


# --- the adapter, op by op (a conflict is never a lost race: TransitionRejected is not raised) ---


def test_job_writes_absorb_conflicts_then_raise_store_busy_and_change_nothing(stack) -> None:
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    store = wiring.store()
    moto_patches.conflict_next("UpdateItem", ABSORBED)
    assert store.record_submit_attempt(job_id).submit_attempts == 1
    moto_patches.set_conflicts(1.0, ["UpdateItem"])
    with pytest.raises(StoreBusy):
        store.record_submit_attempt(job_id)
    store.touch(job_id)  # best effort: no raise
    moto_patches.set_conflicts(0)
    assert stack.job(job_id).submit_attempts == 1

    moto_patches.set_conflicts(1.0, ["TransactWriteItems"])
    with pytest.raises(StoreBusy):
        store.finish_with_refund(stack.job(job_id), JobStatus.FAILED, None)
    moto_patches.set_conflicts(0)
    assert stack.job(job_id).status == JobStatus.QUEUED and _balance(stack, token) == 5
    assert store.finish_with_refund(stack.job(job_id), JobStatus.FAILED, None).status == JobStatus.FAILED
    assert _balance(stack, token) == 10

    moto_patches.set_conflicts(1.0, ["UpdateItem"])
    with pytest.raises(StoreBusy):
        store.clear_event_pending(job_id)
    moto_patches.set_conflicts(0)
    assert stack.job(job_id).event_pending
    wiring.finisher().publish(stack.job(job_id))  # the outbox's own path: the event out, then the flag cleared
    assert not stack.job(job_id).event_pending


def test_grants_retry_conflicts_then_raise_store_busy(stack) -> None:
    store = wiring.store()
    moto_patches.conflict_next("TransactWriteItems", ABSORBED)
    assert grant_credits(store, user_id="gina", credits=4, grant_id="g1") is True
    moto_patches.set_conflicts(1.0, ["TransactWriteItems"])
    with pytest.raises(StoreBusy):
        grant_credits(store, user_id="gina", credits=4, grant_id="g2")
    moto_patches.set_conflicts(0)
    assert grant_credits(store, user_id="gina", credits=4, grant_id="g2") is True
    assert store.ledger_totals("gina")["grant"] == 8 == store.get_balance("gina").balance


# --- cancel and the webhook over HTTP --------------------------------------------------------


def test_a_cancel_under_persistent_conflicts_is_503_then_the_retried_cancel_refunds_once(stack) -> None:
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    moto_patches.set_conflicts(1.0, ["TransactWriteItems"])
    reply = stack.request("POST", f"/v1/videos/{job_id}/cancel", token=token)
    assert reply.status == 503 and reply.json["code"] == "service_unavailable"
    assert reply.headers["retry-after"] == "1"
    moto_patches.set_conflicts(0)
    assert stack.job(job_id).status == JobStatus.QUEUED and _balance(stack, token) == 5
    reply = stack.request("POST", f"/v1/videos/{job_id}/cancel", token=token)
    assert reply.status == 200 and reply.json["status"] == "canceled"
    assert _balance(stack, token) == 10
    assert stack.store.ledger_totals(stack.job(job_id).user_id)["refund"] == 5


def test_a_committed_cancel_whose_outbox_write_keeps_conflicting_still_answers_200(stack) -> None:
    token = stack.user(credits=10)
    job_id = stack.submit(token).json["job"]["id"]
    moto_patches.set_conflicts(1.0, ["UpdateItem"])  # clear_event_pending only: the refund is a transaction
    reply = stack.request("POST", f"/v1/videos/{job_id}/cancel", token=token)
    moto_patches.set_conflicts(0)
    assert reply.status == 200 and reply.json["status"] == "canceled"
    assert stack.job(job_id).event_pending  # owed: the reconciler publishes it
    stack.stack.reconcile_once()
    assert not stack.job(job_id).event_pending
