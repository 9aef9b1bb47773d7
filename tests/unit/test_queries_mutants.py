"""The public reads (services/queries.py) and the shapes they answer (services/views.py), field by
field: a job with its presigned video, refund and error, a page cut by size with the right cursor,
the credits page and the model list."""

from __future__ import annotations

import pytest

from tests.fakes.system import System
from videogen import contract
from videogen.domain.endings import FailureCode
from videogen.domain.errors import JobNotFound
from videogen.domain.models import JobError, JobStatus, LedgerType, Progress
from videogen.domain.registry import Registry
from videogen.services import queries
from videogen.services.views import job_view

TTL_S = 321
TOKEN = "3f2c0e7a-51b2-8d4e-9a10-6c1d2e3f4a5b"


def test_a_completed_job_is_answered_with_every_field_and_a_url_to_its_stored_video(system: System) -> None:
    job = system.given_job(JobStatus.COMPLETED, progress=Progress(queue_position=None, message="done"))
    assert job.video is not None
    view = queries.get_job(system.store, system.videos, job.user_id, job.id, TTL_S)
    assert (view.id, view.status, view.model, view.input) == (job.id, JobStatus.COMPLETED, job.model, job.input)
    assert (view.credits_charged, view.credits_refunded) == (job.credits_charged, 0)
    assert (view.created_at, view.updated_at, view.completed_at) == (job.created_at, job.updated_at, job.completed_at)
    assert view.completed_at is not None
    assert view.progress == contract.Progress(queue_position=None, message=None)  # finished: no progress
    assert view.error is None
    assert view.video is not None
    assert view.video.url.startswith(f"https://bucket.test/{job.video.s3_key}?")
    assert f"X-Amz-Expires={system.videos.window_s + TTL_S}" in view.video.url  # valid >= TTL_S after any read
    assert (view.video.content_type, view.video.size_bytes, view.video.sha256) == (
        job.video.content_type,
        job.video.size_bytes,
        job.video.sha256,
    )
    signed = system.videos.presign(job.video.s3_key, TTL_S)
    assert abs(_seconds(view.video.expires_at) - signed.expires_at.timestamp()) in {0, system.videos.window_s}


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_job_view_without_a_video_store_has_no_video(system: System) -> None:
    job = system.given_job(JobStatus.COMPLETED)
    assert job_view(job).video is None
    assert job_view(job, system.videos).video is not None
    assert f"X-Amz-Expires={system.videos.window_s + 3600}" in job_view(job, system.videos).video.url  # type: ignore[union-attr]


def test_a_failed_job_shows_its_whole_charge_refunded_and_its_error(system: System) -> None:
    error = JobError(code="content_policy", message="flagged", field="prompt")
    job = system.given_job(JobStatus.FAILED, credits=7, error=error)
    view = job_view(job, system.videos)
    assert (view.credits_charged, view.credits_refunded) == (7, 7)
    assert view.error == contract.JobError(code=FailureCode.CONTENT_POLICY, message="flagged", field="prompt")
    assert view.video is None


def test_a_canceled_job_shows_its_whole_charge_refunded_and_no_error(system: System) -> None:
    job = system.given_job(
        JobStatus.CANCELED, credits=7, error=JobError(code="canceled", message="canceled by the user")
    )
    view = job_view(job, system.videos)
    assert (view.credits_charged, view.credits_refunded) == (7, 7)
    assert view.error is None and view.video is None


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("deadline_exceeded", "expired"),
        ("provider_lost", "expired"),
        ("execution_failed", "submit_failed"),
        ("provider_rejected", "submit_failed"),
        ("something_new", "generation_failed"),
        ("media_rejected", "media_rejected"),
    ],
)
def test_a_failed_job_stored_with_an_older_code_shows_the_contracts(system: System, stored: str, shown: str) -> None:
    job = system.given_job(JobStatus.FAILED, error=JobError(code=stored, message="why"))
    assert job_view(job, system.videos).error == contract.JobError(code=FailureCode(shown), message="why", field=None)


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED])
def test_a_finished_job_shows_no_progress_whatever_was_last_recorded(system: System, status: JobStatus) -> None:
    job = system.given_job(status, progress=Progress(queue_position=4, message="Generating video: 75%"))
    assert job_view(job, system.videos).progress == contract.Progress(queue_position=None, message=None)


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.IN_PROGRESS])
def test_an_active_job_shows_nothing_refunded_and_its_queue_position(system: System, status: JobStatus) -> None:
    job = system.given_job(status, credits=4, progress=Progress(queue_position=3, message="in queue"))
    view = job_view(job, system.videos)
    assert (view.credits_charged, view.credits_refunded) == (4, 0)
    assert view.progress == contract.Progress(queue_position=3, message="in queue")
    assert view.completed_at is None
    assert (view.video, view.error) == (None, None)


def test_another_users_job_a_missing_one_and_an_overlong_id_are_all_not_found(system: System) -> None:
    job = system.given_job(user_id="owner")
    with pytest.raises(JobNotFound) as other:
        queries.get_job(system.store, system.videos, "someone-else", job.id, TTL_S)
    assert other.value.detail == f"No job {job.id!r}"
    with pytest.raises(JobNotFound):
        queries.get_job(system.store, system.videos, "owner", "vid_missing", TTL_S)
    system.store.calls.clear()
    for job_id in ("", "v" * 65):
        with pytest.raises(JobNotFound):
            queries.owned_job(system.store, "owner", job_id)
    assert system.store.calls == []  # refused without a read
    with pytest.raises(JobNotFound):
        queries.owned_job(system.store, "owner", "v" * 64)
    assert system.store.calls == ["get_job"]
    assert queries.owned_job(system.store, "owner", job.id).id == job.id


def _jobs(system: System, n: int, user_id: str = "u-1", status: JobStatus = JobStatus.QUEUED) -> list[str]:
    ids = [system.given_job(status, user_id=user_id).id for _ in range(n)]
    return sorted(ids, reverse=True)  # the store lists newest (largest id) first


def test_a_page_lists_the_users_jobs_of_the_status_with_the_stores_cursor(system: System) -> None:
    queued = _jobs(system, 3)
    _jobs(system, 2, status=JobStatus.COMPLETED)
    _jobs(system, 2, user_id="other")
    page = queries.list_jobs(system.store, system.videos, "u-1", JobStatus.QUEUED, 2, None, TTL_S)
    assert [j.id for j in page.items] == queued[:2]
    assert page.next_cursor == queued[1]
    rest = queries.list_jobs(system.store, system.videos, "u-1", JobStatus.QUEUED, 2, page.next_cursor, TTL_S)
    assert ([j.id for j in rest.items], rest.next_cursor) == (queued[2:], None)
    everything = queries.list_jobs(system.store, system.videos, "u-1", None, 10, "", TTL_S)  # "" is no cursor
    assert len(everything.items) == 5
    assert everything.next_cursor is None


def test_completed_jobs_in_a_page_carry_their_presigned_videos(system: System) -> None:
    _jobs(system, 1, status=JobStatus.COMPLETED)
    page = queries.list_jobs(system.store, system.videos, "u-1", None, 10, None, TTL_S)
    assert page.items[0].video is not None
    assert f"X-Amz-Expires={system.videos.window_s + TTL_S}" in page.items[0].video.url


def test_a_page_ends_early_at_the_byte_bound_with_the_cursor_of_its_last_job(system: System) -> None:
    ids = _jobs(system, 3)
    views = queries.list_jobs(system.store, system.videos, "u-1", None, 10, None, TTL_S).items
    sizes = [len(v.model_dump_json().encode()) + 1 for v in views]  # each item and its comma
    fits_two = 1024 + sizes[0] + sizes[1]
    page = queries.list_jobs(system.store, system.videos, "u-1", None, 10, None, TTL_S, max_bytes=fits_two)
    assert ([j.id for j in page.items], page.next_cursor) == (ids[:2], ids[1])
    page = queries.list_jobs(system.store, system.videos, "u-1", None, 10, None, TTL_S, max_bytes=fits_two - 1)
    assert ([j.id for j in page.items], page.next_cursor) == (ids[:1], ids[0])
    tiny = queries.list_jobs(system.store, system.videos, "u-1", None, 10, None, TTL_S, max_bytes=1)
    assert ([j.id for j in tiny.items], tiny.next_cursor) == (ids[:1], ids[0])  # a page always holds one job
    whole = queries.list_jobs(system.store, system.videos, "u-1", None, 10, None, TTL_S, max_bytes=1024 + sum(sizes))
    assert ([j.id for j in whole.items], whole.next_cursor) == (ids, None)


def test_the_credits_page_is_the_balance_and_the_ledger_newest_first(system: System) -> None:
    system.store.grant("u-1", 10, "g-1")
    system.store.grant("u-1", 5, "g-2")
    system.store.grant("u-1", 1, "g-3")
    page = queries.credits(system.store, "u-1", 2, None, TOKEN)
    assert page.balance == 16
    newest = sorted(system.store.ledger("u-1"), key=lambda e: e.id, reverse=True)  # the store's order
    assert [(e.id, e.type, e.amount, e.created_at) for e in page.ledger] == [
        (e.id, LedgerType.GRANT, e.amount, e.created_at) for e in newest[:2]
    ]
    assert page.next_cursor == newest[1].id
    rest = queries.credits(system.store, "u-1", 2, page.next_cursor, TOKEN)
    assert ([e.amount for e in rest.ledger], rest.next_cursor) == ([newest[2].amount], None)
    assert queries.credits(system.store, "u-1", 10, "", TOKEN).next_cursor is None


def test_each_ledger_entry_is_shown_whole_a_charge_naming_its_job(system: System) -> None:
    system.store.grant("u-1", 10, "g-1")
    system.given_job(user_id="u-1", credits=3)
    entries = sorted(system.store.ledger("u-1"), key=lambda e: e.id, reverse=True)
    shown = [e.model_dump() for e in queries.credits(system.store, "u-1", 10, None, TOKEN).ledger]
    assert shown == [e.model_dump() for e in entries]
    assert [e["job_id"] is not None for e in shown].count(True) == 1  # the charge


def test_the_model_list_is_the_registry_with_prices_and_schemas() -> None:
    registry = Registry()
    listed = queries.models(registry).items
    specs = list(registry)
    assert [m.id for m in listed] == [s.id for s in specs]
    assert len(listed) >= 1
    for info, spec in zip(listed, specs, strict=True):
        assert (info.name, info.fal_endpoint, info.credits, info.expected_seconds) == (
            spec.name,
            spec.fal_endpoint,
            spec.default_credits,
            spec.expected_s,
        )
        assert info.input_schema == spec.input_schema()


def test_a_failed_job_stored_without_an_error_still_shows_why(system: System) -> None:
    job = system.given_job(JobStatus.FAILED).model_copy(update={"error": None})
    assert job_view(job).error == contract.JobError(
        code=FailureCode.GENERATION_FAILED, message="the provider reported a failure", field=None
    )
