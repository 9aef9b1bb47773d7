"""The CDN: a finished request's video as a streamed, real MP4, and the download faults
(``cdn_error_rate``: half a 503, half the headers of the whole file then an early close;
``bad_media_rate``: a text answer, not a video,, which our media guard refuses)."""

from __future__ import annotations

from collections.abc import Iterator

from devstack.falsim import media
from devstack.falsim.faults import FaultPlan
from devstack.falsim.lifecycle import SimRequest
from devstack.falsim.stats import Stats
from devstack.falsim.transport import Response, plain_response


def serve_video(req: SimRequest | None, method: str, video: bytes, plan: FaultPlan, stats: Stats) -> Response:
    """The answer to ``GET|HEAD /cdn/{request_id}.mp4`` (``req``: the finished request, or None)."""
    if req is None:
        return plain_response(404, b"Not Found")
    if req.bad_media:
        stats.add("bad_media")
        return plain_response(200, b"not a video (simulated)")
    total = req.video_size
    headers = {
        "Content-Type": "video/mp4",
        "Content-Length": str(total),
        "Accept-Ranges": "none",
        "Cache-Control": "public, max-age=86400",
    }
    if method == "HEAD":
        return Response(200, headers)
    if plan.chance("cdn_error_rate"):
        stats.add("cdn_errors")
        if not plan.coin():
            return plain_response(503, b"CDN unavailable (simulated)")
        # fewer bytes than Content-Length: the transport closes the connection after them
        return Response(200, headers, truncated(media.padded_chunks(video, total), max(1, total // 2)))
    return Response(200, headers, media.padded_chunks(video, total))


def truncated(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """The first ``limit`` bytes of ``chunks``."""
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) >= limit:
            yield chunk[: limit - sent]
            return
        sent += len(chunk)
        yield chunk
