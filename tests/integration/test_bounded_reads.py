"""Reads that stay correct and bounded whatever the user's history (issue 8, "Bounded reads"):
private answers are never cached, JSON is UTF-8 without ``\\u`` escapes, a video's ``expires_at``
is its URL's real expiry, a status filter reads from an index, pages stop before Lambda's 6 MB,
and ``/v1/credits`` is one snapshot."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

EMOJI_PROMPT = "🦩🌊" * 1250  # 2500 characters, the longest prompt the schema allows


def test_private_answers_are_no_store_and_public_ones_are_not(stack):
    token = stack.user(credits=50)
    submitted = stack.submit(token, key="k1")
    job_id = submitted.json["job"]["id"]
    private = [
        submitted,
        stack.request("GET", f"/v1/videos/{job_id}", token=token),
        stack.request("GET", "/v1/videos", token=token),
        stack.request("GET", "/v1/videos/vid_missing", token=token),  # a problem is private too
        stack.request("GET", "/v1/credits", token=token),
        stack.request("POST", f"/v1/videos/{job_id}/cancel", token=token),
    ]
    assert [r.status for r in private] == [202, 200, 200, 404, 200, 200]
    assert all(r.headers.get("cache-control") == "no-store" for r in private)
    assert "cache-control" not in stack.request("GET", "/v1/models").headers


def test_non_ascii_is_written_as_utf8_not_escaped(stack):
    token = stack.user(credits=50)
    assert stack.submit(token, payload={"prompt": EMOJI_PROMPT}).status == 202
    for path in ("/v1/videos", "/v1/videos?status=queued"):
        reply = stack.request("GET", path, token=token)
        assert reply.status == 200
        assert b"\\u" not in reply.body
        assert EMOJI_PROMPT.encode() in reply.body  # 4 bytes per emoji, not a 12-byte surrogate pair
        assert reply.json["items"][0]["input"]["prompt"] == EMOJI_PROMPT
        assert len(reply.body) < len(EMOJI_PROMPT.encode()) + 2000


def test_expires_at_is_the_presigned_urls_real_expiry(stack_sfn):
    stack = stack_sfn
    token = stack.user(credits=50)
    job_id = stack.submit(token).json["job"]["id"]
    stack.wait_status(job_id, {"completed"})
    for _ in range(5):  # several signing moments: a truncation error would show on some
        before = datetime.now(UTC)
        video = stack.request("GET", f"/v1/videos/{job_id}", token=token).json["video"]
        query = parse_qs(urlsplit(video["url"]).query)
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expiry = signed + timedelta(seconds=int(query["X-Amz-Expires"][0]))
        assert datetime.fromisoformat(video["expires_at"]) == expiry
        assert before.replace(microsecond=0) <= signed <= datetime.now(UTC)
        time.sleep(0.3)
