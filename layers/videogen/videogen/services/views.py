"""The public JSON shapes of docs/api.md, built from domain objects."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from videogen.domain.models import Job, LedgerEntry, rfc3339, utc_now
from videogen.ports import VideoStore


def job_view(job: Job, videos: VideoStore | None = None, url_ttl_s: int = 3600) -> dict[str, Any]:
    """``Job`` as docs/api.md defines it. ``video.url`` is a presigned URL to OUR bucket."""
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "model": job.model,
        "input": job.input,
        "credits_charged": job.credits_charged,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "completed_at": job.completed_at,
        "progress": job.progress.model_dump(),
        "video": None,
        "error": job.error.model_dump() if job.error else None,
    }
    if job.video is not None and videos is not None:
        view["video"] = {
            "url": videos.presign(job.video.s3_key, url_ttl_s),
            "expires_at": rfc3339(utc_now() + timedelta(seconds=url_ttl_s)),
            "content_type": job.video.content_type,
            "size_bytes": job.video.size_bytes,
            "sha256": job.video.sha256,
        }
    return view


def ledger_view(entry: LedgerEntry) -> dict[str, Any]:
    return entry.model_dump(mode="json")
