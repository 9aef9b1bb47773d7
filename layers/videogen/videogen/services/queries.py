"""Reads of the public API. DynamoDB only: never a call to fal."""

from __future__ import annotations

from videogen import contract
from videogen.domain.errors import JobNotFound, shown
from videogen.domain.models import Job, JobStatus
from videogen.domain.registry import Registry
from videogen.ports import JobStore, VideoStore
from videogen.services.views import job_view, ledger_view, model_view


def owned_job(store: JobStore, user_id: str, job_id: str) -> Job:
    """The caller's job; another user's job is indistinguishable from a missing one."""
    job = store.get_job(job_id) if job_id and len(job_id) <= 64 else None
    if job is None or job.user_id != user_id:
        raise JobNotFound(f"No job {shown(job_id)}")
    return job


def get_job(store: JobStore, videos: VideoStore, user_id: str, job_id: str, url_ttl_s: int) -> contract.Job:
    return job_view(owned_job(store, user_id, job_id), videos, url_ttl_s)


def list_jobs(
    store: JobStore,
    videos: VideoStore,
    user_id: str,
    status: JobStatus | None,
    limit: int,
    cursor: str | None,
    url_ttl_s: int,
) -> contract.JobPage:
    jobs, next_cursor = store.list_jobs(user_id, status, limit, cursor or None)
    return contract.JobPage(items=[job_view(j, videos, url_ttl_s) for j in jobs], next_cursor=next_cursor)


def credits(store: JobStore, user_id: str, limit: int, cursor: str | None) -> contract.CreditsPage:
    entries, next_cursor = store.list_ledger(user_id, limit, cursor or None)
    return contract.CreditsPage(
        balance=store.get_balance(user_id).balance,
        ledger=[ledger_view(e) for e in entries],
        next_cursor=next_cursor,
    )


def models(registry: Registry) -> contract.ModelList:
    return contract.ModelList(items=[model_view(m) for m in registry])
