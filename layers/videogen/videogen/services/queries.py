"""Reads of the public API. DynamoDB only: never a call to fal."""

from __future__ import annotations

from videogen import contract
from videogen.domain.errors import JobNotFound, shown
from videogen.domain.models import Job, JobStatus
from videogen.domain.products import Catalog
from videogen.domain.registry import Registry
from videogen.ports import JobStore, VideoStore
from videogen.ports_purchases import PurchaseStore
from videogen.services.views import job_view, ledger_view, model_view, purchase_view

# A Lambda response is at most 6 MB (API Gateway answers 5xx beyond): a page stops well before it.
PAGE_MAX_BYTES = 5_000_000


def _plausible(job_id: str) -> bool:
    return bool(job_id) and len(job_id) <= 64


def _owned(job: Job | None, user_id: str, job_id: str) -> Job:
    """Another user's job is indistinguishable from a missing one."""
    if job is None or job.user_id != user_id:
        raise JobNotFound(f"No job {shown(job_id)}")
    return job


def owned_job(store: JobStore, user_id: str, job_id: str) -> Job:
    """The caller's job."""
    return _owned(store.get_job(job_id) if _plausible(job_id) else None, user_id, job_id)


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
    max_bytes: int | None = None,
) -> contract.JobPage:
    """A page of at most ``limit`` jobs and at most ``max_bytes`` (PAGE_MAX_BYTES) of JSON: a page that would grow past
    it ends early with the cursor of its last job (docs/api.md, Paging: a page may be short). A job is far under
    the bound (a DynamoDB item is at most 400 KB), so a page always holds at least one."""
    max_bytes = max_bytes or PAGE_MAX_BYTES
    jobs, next_cursor = store.list_jobs(user_id, status, limit, cursor or None)
    items: list[contract.Job] = []
    size = 1024  # the envelope and a cursor
    for job in jobs:
        item = job_view(job, videos, url_ttl_s)
        size += len(item.model_dump_json().encode()) + 1  # and a comma
        if items and size > max_bytes:
            return contract.JobPage(items=items, next_cursor=store.job_cursor(jobs[len(items) - 1], status))
        items.append(item)
    return contract.JobPage(items=items, next_cursor=next_cursor)


def credits(store: JobStore, user_id: str, limit: int, cursor: str | None, account_token: str) -> contract.CreditsPage:
    """The balance and a ledger page, and the caller's ``account_token`` (domain/account_token.py)."""
    balance, entries, next_cursor = store.credits_snapshot(user_id, limit, cursor or None)
    return contract.CreditsPage(
        balance=balance.balance,
        app_account_token=account_token,
        ledger=[ledger_view(e) for e in entries],
        next_cursor=next_cursor,
    )


def purchases(store: PurchaseStore, user_id: str, limit: int, cursor: str | None) -> contract.PurchasePage:
    """The caller's purchases, newest first (revoked ones too: the ledger shows their clawback)."""
    items, next_cursor = store.list_purchases(user_id, limit, cursor or None)
    return contract.PurchasePage(items=[purchase_view(p) for p in items], next_cursor=next_cursor)


def products(catalog: Catalog) -> contract.ProductList:
    return contract.ProductList(items=[contract.Product(**pack.as_dict()) for pack in catalog])


def models(registry: Registry) -> contract.ModelList:
    return contract.ModelList(items=[model_view(m) for m in registry])
