"""The public shapes of docs/api.md (:mod:`videogen.contract`), built from domain objects."""

from __future__ import annotations

from videogen import contract
from videogen.domain.endings import FailureCode, public_error
from videogen.domain.models import Job, JobStatus, LedgerEntry, Progress, rfc3339
from videogen.domain.purchases import Purchase
from videogen.domain.registry import ModelSpec
from videogen.ports import VideoStore

# A failed or canceled job was refunded in the same transaction as its transition
# (DynamoStore.finish_with_refund), so its refund is its whole charge.
_REFUNDED = frozenset({JobStatus.FAILED, JobStatus.CANCELED})


def job_view(job: Job, videos: VideoStore | None = None, url_ttl_s: int = 3600) -> contract.Job:
    """``Job`` as docs/api.md defines it. ``video.url`` is a presigned URL to OUR bucket."""
    video = None
    if job.video is not None and videos is not None:
        signed = videos.presign(job.video.s3_key, url_ttl_s)
        media = job.video.media
        poster = videos.presign(media.poster_key, url_ttl_s) if media is not None else None
        expires_at = min(signed.expires_at, poster.expires_at) if poster is not None else signed.expires_at
        video = contract.Video(
            url=signed.url,
            expires_at=rfc3339(expires_at),  # of both URLs: the earlier
            content_type=job.video.content_type,
            size_bytes=job.video.size_bytes,
            sha256=job.video.sha256,
            duration_s=media.duration_s if media else None,
            width=media.width if media else None,
            height=media.height if media else None,
            fps=media.fps if media else None,
            has_audio=media.has_audio if media else None,
            poster_url=poster.url if poster is not None else None,
        )
    # A terminal job is no longer in fal's queue or generating: its last progress is history.
    progress = Progress() if job.is_terminal else job.progress
    error = public_error(job.status, job.error)
    return contract.Job(
        id=job.id,
        status=job.status,
        model=job.model,
        input=job.input,
        credits_charged=job.credits_charged,
        credits_refunded=job.credits_charged if job.status in _REFUNDED else 0,
        created_at=job.created_at,
        updated_at=job.updated_at,
        completed_at=job.completed_at,
        progress=contract.Progress(queue_position=progress.queue_position, message=progress.message),
        video=video,
        error=contract.JobError(code=FailureCode(error.code), message=error.message, field=error.field)
        if error
        else None,
    )


def ledger_view(entry: LedgerEntry) -> contract.LedgerEntry:
    return contract.LedgerEntry(
        id=entry.id,
        type=entry.type,
        amount=entry.amount,
        job_id=entry.job_id,
        purchase_id=entry.purchase_id,
        created_at=entry.created_at,
    )


def purchase_view(p: Purchase) -> contract.Purchase:
    assert p.status != "cleared", "an unclaimed record is never shown"
    return contract.Purchase(
        id=p.id,
        store=p.store,
        product_id=p.product_id,
        transaction_id=p.transaction_id,
        credits=p.credits,
        status=p.status,
        environment=p.environment,
        created_at=p.created_at,
        revoked_at=p.revoked_at,
    )


def model_view(spec: ModelSpec) -> contract.ModelInfo:
    return contract.ModelInfo(
        id=spec.id,
        name=spec.name,
        fal_endpoint=spec.fal_endpoint,
        credits=spec.default_credits,
        expected_seconds=spec.expected_s,
        input_schema=spec.input_schema(),
    )
