"""The 409 for an Idempotency-Key another request is still using, through the REAL method that
decides it: DynamoStore.create_job reading the transaction's cancellation reasons (a stub DynamoDB
client answers as DynamoDB does), then submit_video and the HTTP problem.

The reasons list follows the transaction's items: [balance, idempotency record, job, ledger entry].
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.fakes.workflow import FakeWorkflow
from videogen.adapters.dynamo import DynamoStore
from videogen.api.http import problem
from videogen.domain.errors import BalanceChanged, IdempotencyKeyInUse, IdempotencyKeyTaken, StoreBusy
from videogen.domain.limits import Usage
from videogen.domain.models import Balance, Job, JobStatus, rfc3339
from videogen.domain.registry import Registry
from videogen.retry import CONFLICT_ATTEMPTS
from videogen.services.submission import SubmitAnswer, SubmitLimits, submit_video

BODY = b'{"model":"minimax-video-01","input":{"prompt":"a cat surfing"}}'
RECORD = {
    "pk": {"S": "USER#u1"},
    "sk": {"S": "IDEM#k1"},
    "fingerprint": {"S": "fp"},
    "job_id": {"S": "vid_first"},
    "status_code": {"N": "202"},
    "body": {"S": '{"job":{"id":"vid_first"}}'},
}


def canceled(*reasons: str) -> ClientError:
    """TransactWriteItems' answer when the transaction was cancelled, as botocore parses it."""
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": [{"Code": r} for r in reasons],
        },
        "TransactWriteItems",
    )


class StubDynamo:
    """The few DynamoDB calls a submit makes: a funded balance, no record yet, and a scripted
    TransactWriteItems (an exception, or None to succeed). ``record``: what GetItem then finds."""

    def __init__(self, *writes: ClientError | None, record: dict[str, Any] | None = None) -> None:
        self.writes = list(writes)
        self.record = record
        self.calls: list[str] = []

    def transact_get_items(self, **_: Any) -> dict[str, Any]:
        self.calls.append("TransactGetItems")
        return {"Responses": [{"Item": {"balance": {"N": "10"}, "active_jobs": {"N": "0"}}}, {}]}

    def transact_write_items(self, **_: Any) -> dict[str, Any]:
        self.calls.append("TransactWriteItems")
        answer = self.writes.pop(0)
        if answer is not None:
            raise answer
        return {}

    def get_item(self, **_: Any) -> dict[str, Any]:
        self.calls.append("GetItem")
        return {"Item": self.record} if self.record else {}


def job() -> Job:
    now = rfc3339()
    return Job(
        id="vid_second",
        user_id="u1",
        status=JobStatus.QUEUED,
        model="minimax-video-01",
        input={"prompt": "p"},
        credits_charged=5,
        created_at=now,
        updated_at=now,
    )


def store_over(client: StubDynamo) -> DynamoStore:
    """The real adapter over ``client``, its conflict backoff not slept."""
    return DynamoStore(client, "t", pause=lambda _attempt: None)


def create(store: DynamoStore) -> None:
    store.create_job(
        job(),
        idempotency_key="k1",
        fingerprint="fp",
        answer={},
        seen=Balance(10, 0),
        usage=Usage(1),
        max_active=10,
        idem_ttl_s=60,
    )


def submit(client: StubDynamo, workflow: FakeWorkflow, pauses: list[int]) -> SubmitAnswer:
    """POST /v1/videos' use case on the real adapter over ``client``."""
    return submit_video(
        user_id="u1",
        idempotency_key="k1",
        raw_body=BODY,
        store=store_over(client),
        registry=Registry(),
        workflow=workflow,
        limits=SubmitLimits(),
        pause=pauses.append,
    )


KEY_HELD = ("None", "TransactionConflict", "None", "None")


def test_a_conflict_on_the_keys_record_that_persists_is_key_in_use() -> None:
    client = StubDynamo(*[canceled(*KEY_HELD)] * CONFLICT_ATTEMPTS)
    with pytest.raises(IdempotencyKeyInUse):
        create(store_over(client))
    assert client.calls == ["TransactWriteItems"] * CONFLICT_ATTEMPTS  # resent, never re-read: the key is held


def test_a_conflict_on_the_keys_record_that_clears_is_retried_and_the_job_created() -> None:
    client = StubDynamo(canceled(*KEY_HELD), None)
    create(store_over(client))
    assert client.calls == ["TransactWriteItems"] * 2


def test_a_resent_transaction_that_finds_the_winners_record_is_the_key_taken() -> None:
    client = StubDynamo(canceled(*KEY_HELD), canceled("None", "ConditionalCheckFailed", "None", "None"), record=RECORD)
    with pytest.raises(IdempotencyKeyTaken) as taken:
        create(store_over(client))
    assert taken.value.record.job_id == "vid_first"


def test_a_record_that_exists_is_the_key_taken_with_its_first_answer() -> None:
    client = StubDynamo(canceled("None", "ConditionalCheckFailed", "None", "None"), record=RECORD)
    with pytest.raises(IdempotencyKeyTaken) as taken:
        create(store_over(client))
    assert taken.value.record.job_id == "vid_first" and taken.value.record.body == {"job": {"id": "vid_first"}}


def test_a_record_that_expired_before_it_could_be_read_is_key_in_use() -> None:
    client = StubDynamo(canceled("None", "ConditionalCheckFailed", "None", "None"), record=None)
    with pytest.raises(IdempotencyKeyInUse):
        create(store_over(client))
    assert client.calls == ["TransactWriteItems", "GetItem"]


@pytest.mark.parametrize(
    "reasons",
    [
        ("ConditionalCheckFailed", "None", "None", "None"),  # the balance moved or ran short
        ("ConditionalCheckFailed", "TransactionConflict", "None", "None"),  # the balance decides first
    ],
)
def test_a_moved_balance_is_balance_changed_not_key_in_use(reasons: tuple[str, ...]) -> None:
    client = StubDynamo(canceled(*reasons))
    with pytest.raises(BalanceChanged):
        create(store_over(client))
    assert client.calls == ["TransactWriteItems"]  # a failed condition is not retried here


@pytest.mark.parametrize(
    "reasons",
    [
        ("TransactionConflict", "None", "None", "None"),  # another write to the balance
        ("None", "None", "None", "TransactionConflict"),
    ],
)
def test_a_contended_balance_or_entry_that_persists_is_store_busy_not_key_in_use(reasons: tuple[str, ...]) -> None:
    client = StubDynamo(*[canceled(*reasons)] * CONFLICT_ATTEMPTS)
    with pytest.raises(StoreBusy):
        create(store_over(client))
    assert client.calls == ["TransactWriteItems"] * CONFLICT_ATTEMPTS


def test_any_other_failure_is_not_mistaken_for_an_idempotency_outcome() -> None:
    with pytest.raises(ClientError):
        create(store_over(StubDynamo(canceled("None", "None", "ConditionalCheckFailed", "None"))))
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems")
    with pytest.raises(ClientError):
        create(store_over(StubDynamo(throttled)))


def test_a_submit_whose_key_is_in_flight_answers_409_idempotency_key_in_use_and_starts_nothing() -> None:
    client = StubDynamo(*[canceled(*KEY_HELD)] * CONFLICT_ATTEMPTS)
    workflow = FakeWorkflow()
    with pytest.raises(IdempotencyKeyInUse) as in_use:
        submit(client, workflow, [])
    answer = problem(in_use.value)
    assert answer.status_code == 409
    assert json.loads(str(answer.body))["code"] == "idempotency_key_in_use"
    assert workflow.starts == [] and client.calls == ["TransactGetItems"] + ["TransactWriteItems"] * CONFLICT_ATTEMPTS


def test_a_submit_whose_balance_conflicted_once_is_resent_by_the_store_and_accepted() -> None:
    client = StubDynamo(canceled("TransactionConflict", "None", "None", "None"), None)
    workflow = FakeWorkflow()
    pauses: list[int] = []
    answer = submit(client, workflow, pauses)
    assert answer.status_code == 202 and not answer.replayed and pauses == []  # the store's own retry
    assert client.calls == ["TransactGetItems", "TransactWriteItems", "TransactWriteItems"]
    assert workflow.starts == [answer.body["job"]["id"]]


def test_a_submit_whose_balance_moved_re_reads_it_and_is_accepted() -> None:
    client = StubDynamo(canceled("ConditionalCheckFailed", "None", "None", "None"), None)
    workflow = FakeWorkflow()
    pauses: list[int] = []
    answer = submit(client, workflow, pauses)
    assert answer.status_code == 202 and not answer.replayed and pauses == [0]  # the use case's re-read
    assert client.calls == ["TransactGetItems", "TransactWriteItems"] * 2
    assert workflow.starts == [answer.body["job"]["id"]]
