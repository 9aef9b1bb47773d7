"""The in-memory FakeStore (tests/fakes) against the DynamoDB adapter on moto: the same
scenarios, the same outcomes. This is what lets the unit tests trust the fake. (Both walk the
transition table too: the adapter in test_transition_table.py, the fake in tests/unit/test_fakes.py.)

Every job state is reached through the stores' own operations (no raw writes), and every
scenario ends with the invariant audit on the store's contents.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack import moto_patches
from devstack.invariants import audit
from devstack.provision import provision
from devstack.template import SamTemplate
from tests.fakes import FakeStore, fal_request, make_job
from tests.fakes.jobs import next_usage
from videogen.adapters.dynamo import DynamoStore
from videogen.domain.errors import (
    BalanceChanged,
    GrantConflict,
    IdempotencyKeyTaken,
    InvalidCursor,
    StoreBusy,
    TransitionRejected,
)
from videogen.domain.models import (
    Balance,
    CancelIntent,
    Job,
    JobError,
    JobStatus,
    LedgerType,
    Progress,
    StoredVideo,
    VideoMedia,
)
from videogen.ports import JobStore
from videogen.retry import CONFLICT_ATTEMPTS

VIDEO = StoredVideo(s3_key="videos/x/abc.mp4", sha256="ab" * 32, size_bytes=3)


# The DynamoDB call behind each store operation that can meet a concurrent transaction.
AWS_OPERATION = {
    "read_for_submit": "TransactGetItems",
    "create_job": "TransactWriteItems",
    "grant": "TransactWriteItems",
    "record_submit_attempt": "UpdateItem",
    "finish_with_refund": "TransactWriteItems",
}


def _money(balance: Balance) -> Balance:
    """The credits and the active count of a balance item (its limit state left out)."""
    return Balance(balance.balance, balance.active_jobs)


class Subject:
    def __init__(self, store: JobStore, check: Callable[[], Any], conflict: Callable[[str, int], None]) -> None:
        self.store = store
        self.audit = check
        self.conflict = conflict  # (store operation, times): its next DynamoDB calls lose to a transaction


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Subject]:
    """One moto table (from template.yaml) for the module: each test has its own user."""
    with pytest.MonkeyPatch.context() as mp, mock_aws():
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        resources = provision(SamTemplate.load(), prefix="contract", region="us-east-1")
        db = boto3.client("dynamodb", region_name="us-east-1")
        moto_patches.apply()

        def conflict(operation: str, times: int) -> None:
            moto_patches.conflict_next(AWS_OPERATION[operation], times, item=0)

        yield Subject(
            DynamoStore(db, resources.table_name), lambda: audit(db, resources.table_name, priced=False), conflict
        )


@pytest.fixture(params=["fake", "dynamodb"])
def subject(request: pytest.FixtureRequest) -> Subject:
    if request.param == "fake":
        fake = FakeStore()
        return Subject(fake, lambda: fake.audit(priced=False), fake.conflict)
    return request.getfixturevalue("dynamodb")  # type: ignore[no-any-return]


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _create(store: JobStore, user: str, key: str = "k1", cost: int = 5) -> Job:
    job = make_job(user_id=user, credits=cost)
    seen, _, _ = store.read_for_submit(user, key)
    store.create_job(
        job,
        idempotency_key=key,
        fingerprint="fp",
        answer={"a": 1},
        seen=seen,
        usage=next_usage(seen),
        max_active=2,
        idem_ttl_s=86400,
    )
    return job


def _in_status(store: JobStore, user: str, status: JobStatus) -> Job:
    """A job of ``user`` brought to ``status`` along the real path."""
    store.grant(user, 5, f"g-{status.value}")
    job = _create(store, user, key=f"k-{status.value}")
    if status == JobStatus.QUEUED:
        return job
    if status == JobStatus.CANCELED:
        return store.finish_with_refund(job, JobStatus.CANCELED, None, unsubmitted=True)
    store.record_submit_attempt(job.id)
    job = store.mark_submitted(job.id, fal_request(f"req-{job.id}"), Progress())
    if status == JobStatus.SUBMITTED:
        return job
    job = store.update_progress(job.id, JobStatus.IN_PROGRESS, Progress(message="x"))
    if status == JobStatus.IN_PROGRESS:
        return job
    if status == JobStatus.COMPLETED:
        return store.complete(job, VIDEO)
    return store.finish_with_refund(job, JobStatus.FAILED, JobError(code="c", message="m"))


def test_submit_charges_once_replays_the_key_and_refuses_a_moved_balance(subject: Subject, user: str) -> None:
    store = subject.store
    assert store.grant(user, 12, "welcome") is True
    assert store.grant(user, 12, "welcome") is False
    with pytest.raises(GrantConflict):
        store.grant(user, 99, "welcome")
    job = _create(store, user)
    assert _money(store.get_balance(user)) == Balance(7, 1)
    with pytest.raises(IdempotencyKeyTaken) as taken:
        _create(store, user)
    assert taken.value.record.job_id == job.id and taken.value.record.body == {"a": 1}
    balance, record, _ = store.read_for_submit(user, "k1")
    assert _money(balance) == Balance(7, 1) and record is not None and record.fingerprint == "fp"
    other = make_job(user_id=user)
    stale = Balance(12, 0)
    with pytest.raises(BalanceChanged):
        store.create_job(
            other,
            idempotency_key="k2",
            fingerprint="f",
            answer={},
            seen=stale,
            usage=next_usage(stale),
            max_active=2,
            idem_ttl_s=86400,
        )
    _create(store, user, key="k3", cost=1)
    with pytest.raises(BalanceChanged):  # the active-job cap (2) is a condition on the balance item too
        _create(store, user, key="k4", cost=1)
    assert store.get_job(other.id) is None
    assert store.ledger_totals(user) == {"grant": 12, "charge": 6, "refund": 0, "purchase": 0, "clawback": 0}
    assert subject.audit().ok


def test_a_refund_happens_once_and_frees_the_slot(subject: Subject, user: str) -> None:
    store = subject.store
    job = _in_status(store, user, JobStatus.SUBMITTED)
    store.finish_with_refund(job, JobStatus.FAILED, JobError(code="a", message="b"))
    with pytest.raises(TransitionRejected):
        store.finish_with_refund(job, JobStatus.FAILED, JobError(code="a", message="b"))
    with pytest.raises(ValueError):
        store.finish_with_refund(job, JobStatus.COMPLETED, None)
    assert _money(store.get_balance(user)) == Balance(5, 0)
    assert [e.type for e in store.list_ledger(user, 10, None)[0]].count(LedgerType.REFUND) == 1
    assert subject.audit().ok


def test_the_outbox_keeps_terminal_jobs_findable_until_their_event_is_out(subject: Subject, user: str) -> None:
    store = subject.store
    done = _in_status(store, user, JobStatus.COMPLETED)
    active = _in_status(store, user, JobStatus.QUEUED)

    def stale(before: str) -> set[str]:
        return {j.id for j in store.find_stale_active(before, 1000) if j.user_id == user}

    assert stale("9999") == {done.id, active.id}
    store.clear_event_pending(done.id)
    store.clear_event_pending(done.id)  # twice is fine
    assert stale("9999") == {active.id}
    assert stale("0000") == set()
    store.touch(done.id)  # a terminal job is not touched back into the index
    assert stale("9999") == {active.id}


def test_jobs_are_found_by_their_request_id_and_listed_per_user_newest_first(subject: Subject, user: str) -> None:
    store = subject.store
    first = _in_status(store, user, JobStatus.SUBMITTED)
    second = _in_status(store, user, JobStatus.QUEUED)
    assert first.fal is not None and store.find_by_request_id(first.fal.request_id) == store.get_job(first.id)
    assert store.find_by_request_id("req-unknown") is None
    newest, older = sorted([first.id, second.id], reverse=True)  # ids are time ordered (to the ms)
    page, cursor = store.list_jobs(user, None, 1, None)
    assert [j.id for j in page] == [newest] and cursor
    rest, end = store.list_jobs(user, None, 1, cursor)
    assert [j.id for j in rest] == [older] and end is None
    assert [j.id for j in store.list_jobs(user, JobStatus.SUBMITTED, 10, None)[0]] == [first.id]


def test_a_cancel_intent_is_recorded_once_the_deadline_overrides_the_user_and_never_the_reverse(
    subject: Subject, user: str
) -> None:
    store = subject.store
    job = _in_status(store, user, JobStatus.SUBMITTED)
    assert store.request_cancel(job.id, CancelIntent.USER).cancel_requested == CancelIntent.USER
    assert store.request_cancel(job.id, CancelIntent.USER).cancel_requested == CancelIntent.USER  # a second cancel
    assert store.request_cancel(job.id, CancelIntent.DEADLINE).cancel_requested == CancelIntent.DEADLINE
    with pytest.raises(TransitionRejected):
        store.request_cancel(job.id, CancelIntent.USER)
    stored = store.get_job(job.id)
    assert stored is not None and stored.cancel_requested == CancelIntent.DEADLINE
    assert stored.status == JobStatus.SUBMITTED
    generating = _in_status(store, user, JobStatus.IN_PROGRESS)
    with pytest.raises(TransitionRejected):  # the user's cancel only while the job may be canceled
        store.request_cancel(generating.id, CancelIntent.USER)
    assert store.request_cancel(generating.id, CancelIntent.DEADLINE).cancel_requested == CancelIntent.DEADLINE
    assert subject.audit().ok


def test_a_refused_submit_attempt_is_taken_back_only_while_one_is_counted(subject: Subject, user: str) -> None:
    store = subject.store
    store.grant(user, 5, "g")
    job = _create(store, user)
    assert store.record_submit_attempt(job.id).submit_attempts == 1
    assert store.record_submit_refused(job.id).submit_attempts == 0
    with pytest.raises(TransitionRejected):  # nothing left to take back
        store.record_submit_refused(job.id)
    store.record_submit_attempt(job.id)
    store.mark_submitted(job.id, fal_request(f"req-{job.id}"), Progress())
    with pytest.raises(TransitionRejected):  # a request is stored: the attempt reached fal
        store.record_submit_refused(job.id)
    stored = store.get_job(job.id)
    assert stored is not None and stored.submit_attempts == 1
    assert subject.audit().ok


def test_a_status_filter_follows_every_transition_and_its_cursors_stay_in_their_filter(
    subject: Subject, user: str
) -> None:
    store = subject.store
    statuses = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.IN_PROGRESS, JobStatus.QUEUED]
    jobs = {status: _in_status(store, user, status) for status in statuses}  # 2 active: the cap
    for status, job in jobs.items():
        assert [j.id for j in store.list_jobs(user, status, 10, None)[0]] == [job.id], status
    queued = store.list_jobs(user, JobStatus.QUEUED, 10, None)[0][0]
    store.finish_with_refund(queued, JobStatus.CANCELED, None, unsubmitted=True)
    assert store.list_jobs(user, JobStatus.QUEUED, 10, None) == ([], None)
    canceled = sorted([queued.id, jobs[JobStatus.CANCELED].id], reverse=True)
    first, cursor = store.list_jobs(user, JobStatus.CANCELED, 1, None)
    assert [j.id for j in first] == canceled[:1] and cursor
    # the cursor of a page cut short continues after its last job, in its own filter only
    assert (
        store.list_jobs(user, JobStatus.CANCELED, 5, store.job_cursor(first[0], JobStatus.CANCELED))[0][0].id
        == (canceled[1])
    )
    everything = [j.id for j in store.list_jobs(user, None, 10, None)[0]]
    after = store.list_jobs(user, None, 10, store.job_cursor(first[0], None))[0]
    assert [j.id for j in after] == everything[everything.index(first[0].id) + 1 :]
    with pytest.raises(InvalidCursor):
        store.list_jobs(user, JobStatus.FAILED, 5, store.job_cursor(first[0], JobStatus.CANCELED))


def test_a_credits_snapshot_is_a_balance_and_its_ledger(subject: Subject, user: str) -> None:
    store = subject.store
    store.grant(user, 12, "g1")
    job = _create(store, user)
    store.finish_with_refund(job, JobStatus.CANCELED, None, unsubmitted=True)
    balance, entries, cursor = store.credits_snapshot(user, 10, None)
    assert balance == store.get_balance(user) and _money(balance) == Balance(12, 0) and cursor is None
    assert sorted(e.type for e in entries) == sorted([LedgerType.REFUND, LedgerType.CHARGE, LedgerType.GRANT])


@pytest.mark.parametrize("operation", sorted(AWS_OPERATION))
def test_contention_is_retried_then_store_busy_and_changes_nothing(subject: Subject, user: str, operation: str) -> None:
    store = subject.store
    store.grant(user, 12, "g0")
    job = _create(store, user, key="k0")
    calls: dict[str, Callable[[], Any]] = {
        "read_for_submit": lambda: store.read_for_submit(user, "k0"),
        "create_job": lambda: _create(store, user, key=f"k-{uuid.uuid4().hex[:6]}", cost=1),
        "grant": lambda: store.grant(user, 1, f"g-{uuid.uuid4().hex[:6]}"),
        "record_submit_attempt": lambda: store.record_submit_attempt(job.id),
        "finish_with_refund": lambda: store.finish_with_refund(store.get_job(job.id), JobStatus.FAILED, None),
    }
    before = (store.get_balance(user), store.ledger_totals(user), store.get_job(job.id))
    subject.conflict(operation, CONFLICT_ATTEMPTS)
    with pytest.raises(StoreBusy):
        calls[operation]()
    assert (store.get_balance(user), store.ledger_totals(user), store.get_job(job.id)) == before
    subject.conflict(operation, CONFLICT_ATTEMPTS - 1)
    calls[operation]()  # absorbed by the retries
    if operation == "finish_with_refund":
        assert store.get_job(job.id).status == JobStatus.FAILED  # type: ignore[union-attr]
        assert store.ledger_totals(user)["refund"] == 5
    assert subject.audit().ok


def test_media_is_recorded_once_on_a_completed_job_of_that_video_and_nothing_else_moves(
    subject: Subject, user: str
) -> None:
    store = subject.store
    media = VideoMedia(
        duration_s=5.041, width=1280, height=720, fps=23.976, has_audio=True, poster_key=VIDEO.s3_key + ".poster.jpg"
    )
    for status in (JobStatus.IN_PROGRESS, JobStatus.FAILED):
        other = _in_status(store, user, status)
        with pytest.raises(TransitionRejected):
            store.record_media(other.id, VIDEO.s3_key, media)
    job = _in_status(store, user, JobStatus.COMPLETED)
    assert job.video is not None and job.video.media is None  # complete() leaves no media (not even null)
    with pytest.raises(TransitionRejected):
        store.record_media(job.id, "videos/x/another.mp4", media)  # not the job's video
    with pytest.raises(TransitionRejected):
        store.record_media("vid_missing", VIDEO.s3_key, media)
    done = store.record_media(job.id, VIDEO.s3_key, media)
    assert done.video is not None and done.video.media == media  # floats as they were: 23.976, 5.041
    assert done.model_dump(exclude={"video"}) == job.model_dump(exclude={"video"})  # status, updated_at, outbox
    assert store.get_job(job.id) == done
    with pytest.raises(TransitionRejected):  # once
        store.record_media(job.id, VIDEO.s3_key, media.model_copy(update={"width": 1}))
    assert store.get_job(job.id) == done
    assert subject.audit().ok
