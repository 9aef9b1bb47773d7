"""The job state machine's transition table, written out by hand, against the domain's tables and
every conditional write of the FakeStore (the DynamoDB adapter's walk against the same literal
table: tests/integration/test_transition_literal_dynamo.py).

test_fakes.py / test_transition_table.py check the stores obey ``ALLOWED_FROM``; this checks
``ALLOWED_FROM`` itself: a move added to (or dropped from) the table fails here.
"""

from __future__ import annotations

import pytest

from tests.fakes import FakeStore, make_job
from tests.unit.test_fakes import MOVES, PATHS
from videogen.domain.errors import TransitionRejected
from videogen.domain.models import (
    ACTIVE,
    ALLOWED_FROM,
    CANCEL_INTENT_FROM,
    CANCEL_INTENT_REPLACES,
    TERMINAL,
    CancelIntent,
    JobStatus,
    progress_allowed_from,
)

Q, S, G, C, F, X = (  # G: generating (in_progress)
    JobStatus.QUEUED,
    JobStatus.SUBMITTED,
    JobStatus.IN_PROGRESS,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELED,
)

# write → {state it is legal from: the status after it}. Every pair not listed is rejected.
# A job reaches SUBMITTED/IN_PROGRESS/COMPLETED/FAILED holding a fal request; QUEUED and CANCELED
# (canceled before submit) hold none.
LEGAL: dict[str, dict[JobStatus, JobStatus]] = {
    "record_submit_attempt": {Q: Q},  # only before any request is stored
    "mark_submitted": {Q: S},
    "update_progress(submitted)": {S: S},  # never from queued (not handed over), never back from in_progress
    "update_progress(in_progress)": {S: G, G: G},
    "complete": {Q: C, S: C, G: C},
    "finish_with_refund(failed)": {Q: F, S: F, G: F},
    "finish_with_refund(canceled)": {Q: X, S: X},  # never once generating
    "finish_with_refund(canceled, unsubmitted)": {Q: X},  # submitted holds a request
    "request_cancel(user)": {Q: Q, S: S},
    "request_cancel(deadline)": {Q: Q, S: S, G: G},
}

# the FakeStore walk's names for the same writes (tests/unit/test_fakes.py)
FAKE_NAMES = {
    "fail": "finish_with_refund(failed)",
    "cancel": "finish_with_refund(canceled)",
    "cancel(unsubmitted)": "finish_with_refund(canceled, unsubmitted)",
}


def test_the_domain_tables_are_the_literal_ones() -> None:
    assert {s: set(f) for s, f in ALLOWED_FROM.items()} == {
        S: {Q},
        G: {Q, S},
        C: {Q, S, G},
        F: {Q, S, G},
        X: {Q, S},
    }
    assert {C, F, X} == TERMINAL and {Q, S, G} == ACTIVE
    assert progress_allowed_from(S) == {S} and progress_allowed_from(G) == {S, G}
    for status in (Q, C, F, X):
        with pytest.raises(ValueError):
            progress_allowed_from(status)
    assert {CancelIntent.USER: {Q, S}, CancelIntent.DEADLINE: {Q, S, G}} == CANCEL_INTENT_FROM
    assert {CancelIntent.USER: set(), CancelIntent.DEADLINE: {CancelIntent.USER}} == CANCEL_INTENT_REPLACES


def test_the_literal_table_names_every_write_of_both_walks() -> None:
    assert {FAKE_NAMES.get(m, m) for m in MOVES} == set(LEGAL)
    assert set(PATHS) == set(JobStatus)


@pytest.mark.parametrize("start", list(PATHS))
@pytest.mark.parametrize("move", list(MOVES))
def test_every_write_of_the_fake_store_from_every_state_follows_the_literal_table(start: JobStatus, move: str) -> None:
    store = FakeStore()
    job = store.put_job(make_job())
    for step in PATHS[start]:
        job = MOVES[step][3](store, job)
    assert store.job(job.id).status == start
    expected = LEGAL[FAKE_NAMES.get(move, move)].get(start)
    before = (store.job(job.id), store.get_balance(job.user_id), store.ledger(job.user_id))
    try:
        after = MOVES[move][3](store, job)
    except TransitionRejected:
        assert expected is None, f"{start} --{move}--> rejected; the literal table says {expected}"
        assert (store.job(job.id), store.get_balance(job.user_id), store.ledger(job.user_id)) == before
    else:
        assert expected is not None, f"{start} --{move}--> {after.status}: the literal table forbids it"
        assert after.status == expected == store.job(job.id).status
    assert store.audit().ok
