"""Reads of the public API. DynamoDB only: never a call to fal."""

from __future__ import annotations

from typing import Any

from videogen.domain.errors import BadRequest, JobNotFound
from videogen.domain.models import Job, JobStatus
from videogen.domain.registry import Registry
from videogen.ports import JobStore, VideoStore
from videogen.services.views import job_view, ledger_view


def parse_limit(raw: str | None, default: int = 20, maximum: int = 100) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer between 1 and {maximum}") from None
    if not 1 <= value <= maximum:
        raise BadRequest(f"limit must be an integer between 1 and {maximum}")
    return value


def parse_status(raw: str | None) -> JobStatus | None:
    if raw is None or raw == "":
        return None
    try:
        return JobStatus(raw)
    except ValueError:
        raise BadRequest(f"status must be one of {', '.join(s.value for s in JobStatus)}") from None


def owned_job(store: JobStore, user_id: str, job_id: str) -> Job:
    """The caller's job; another user's job is indistinguishable from a missing one."""
    job = store.get_job(job_id) if job_id and len(job_id) <= 64 else None
    if job is None or job.user_id != user_id:
        raise JobNotFound(f"No job {job_id!r}")
    return job


def get_job(store: JobStore, videos: VideoStore, user_id: str, job_id: str, url_ttl_s: int) -> dict[str, Any]:
    return job_view(owned_job(store, user_id, job_id), videos, url_ttl_s)


def list_jobs(
    store: JobStore, videos: VideoStore, user_id: str, params: dict[str, str], url_ttl_s: int
) -> dict[str, Any]:
    jobs, cursor = store.list_jobs(
        user_id, parse_status(params.get("status")), parse_limit(params.get("limit")), params.get("cursor") or None
    )
    return {"items": [job_view(j, videos, url_ttl_s) for j in jobs], "next_cursor": cursor}


def credits(store: JobStore, user_id: str, params: dict[str, str]) -> dict[str, Any]:
    entries, cursor = store.list_ledger(user_id, parse_limit(params.get("limit")), params.get("cursor") or None)
    return {
        "balance": store.get_balance(user_id).balance,
        "ledger": [ledger_view(e) for e in entries],
        "next_cursor": cursor,
    }


def models(registry: Registry) -> dict[str, Any]:
    return {
        "items": [
            {
                "id": m.id,
                "name": m.name,
                "fal_endpoint": m.fal_endpoint,
                "credits": m.default_credits,
                "expected_seconds": m.expected_s,
                "input_schema": m.input_schema(),
            }
            for m in registry
        ]
    }
