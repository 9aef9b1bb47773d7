"""Reads that stay correct and bounded whatever the user's history (issue 8, "Bounded reads"):
private answers are never cached, JSON is UTF-8 without ``\\u`` escapes, a video's ``expires_at``
is its URL's real expiry, a status filter reads from an index, pages stop before Lambda's 6 MB,
and ``/v1/credits`` is one snapshot."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.bench_reads import QueryMeter
from tests.fakes.jobs import write_jobs
from videogen import wiring
from videogen.domain.models import Job, JobError, JobStatus

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
    """The URL is signed at the start of its window (adapters/media_urls.py); ``expires_at`` is what
    it says: X-Amz-Date + X-Amz-Expires, at least the TTL after the read."""
    stack = stack_sfn
    token = stack.user(credits=50)
    job_id = stack.submit(token).json["job"]["id"]
    stack.wait_status(job_id, {"completed"})
    s = wiring.settings()
    for _ in range(5):
        before = datetime.now(UTC)
        video = stack.request("GET", f"/v1/videos/{job_id}", token=token).json["video"]
        query = parse_qs(urlsplit(video["url"]).query)
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expiry = signed + timedelta(seconds=int(query["X-Amz-Expires"][0]))
        assert datetime.fromisoformat(video["expires_at"]) == expiry
        assert signed <= before and int(signed.timestamp()) % s.media_url_window_s == 0
        assert expiry == signed + timedelta(seconds=s.media_url_window_s + s.video_url_ttl_s)
        assert expiry - datetime.now(UTC) >= timedelta(seconds=s.video_url_ttl_s)
        time.sleep(0.1)


def _seed_jobs(stack, user_id: str, count: int) -> list[Job]:
    """``count`` queued jobs of ``user_id`` written along the submit path's transaction (no cap)."""
    stack.store.grant(user_id, 5 * count, f"seed-{user_id}")
    return write_jobs(stack.store, user_id, count)


def test_a_status_filter_reads_only_matching_jobs_whatever_the_history(stack):
    user_id = "user-many-jobs"
    token = stack.user(credits=0, user_id=user_id)
    jobs = _seed_jobs(stack, user_id, 150)
    failed = stack.store.finish_with_refund(jobs[3], JobStatus.FAILED, JobError(code="x", message="y"))
    meter = QueryMeter(wiring.client("dynamodb"))  # the API's own client

    reply = stack.request("GET", "/v1/videos?status=failed&limit=1", token=token)
    assert [j["id"] for j in reply.json["items"]] == [failed.id]
    filtered = (meter.calls, meter.scanned)
    meter.reset()
    page = stack.request("GET", "/v1/videos?limit=100", token=token).json
    unfiltered = (meter.calls, meter.scanned)
    meter.reset()
    queued = stack.request("GET", "/v1/videos?status=queued&limit=100", token=token).json

    # one query reading the one matching job, not one per non-matching job (150 before)
    assert filtered == (1, 1)
    assert unfiltered == (1, 100) and len(page["items"]) == 100 and page["next_cursor"]
    assert (meter.calls, meter.scanned) == (1, 100) and failed.id not in {j["id"] for j in queued["items"]}
    # and the filtered pages, followed to the end, are exactly the queued jobs, newest first
    seen = [j["id"] for j in queued["items"]]
    rest = stack.request("GET", f"/v1/videos?status=queued&limit=100&cursor={queued['next_cursor']}", token=token)
    seen += [j["id"] for j in rest.json["items"]]
    assert rest.json["next_cursor"] is None
    assert seen == sorted((j.id for j in jobs if j.id != failed.id), reverse=True)


def test_a_page_stops_before_its_byte_bound_and_its_cursor_continues(stack, monkeypatch):
    from videogen.services import queries

    token = stack.user(credits=100)
    ids = [stack.submit(token, key=f"e{i}", payload={"prompt": EMOJI_PROMPT}).json["job"]["id"] for i in range(7)]
    monkeypatch.setattr(queries, "PAGE_MAX_BYTES", 35_000)  # ~3 jobs of 10 KB prompts
    for query in ("", "status=queued&"):
        seen, cursor, pages = [], None, 0
        while True:
            path = f"/v1/videos?{query}limit=100" + (f"&cursor={cursor}" if cursor else "")
            reply = stack.request("GET", path, token=token)
            assert reply.status == 200 and len(reply.body) <= 35_000
            seen += [j["id"] for j in reply.json["items"]]
            pages += 1
            cursor = reply.json["next_cursor"]
            if not cursor:
                break
        assert seen == list(reversed(ids)) and pages == 3


def test_the_default_byte_bound_is_safely_under_lambdas_6_mb():
    from videogen.services import queries

    assert queries.PAGE_MAX_BYTES <= 5_000_000 < 6 * 1024 * 1024


def test_every_complete_credits_answer_sums_to_its_balance_under_activity(stack):
    token = stack.user(credits=10_000)
    stop = threading.Event()
    answers: list[dict[str, Any]] = []

    def activity(worker: int) -> None:
        for i in range(12):
            job = stack.submit(token, key=f"w{worker}-{i}")
            if job.status == 202 and i % 2 == 0:
                stack.request("POST", f"/v1/videos/{job.json['job']['id']}/cancel", token=token)

    def read() -> None:
        while not stop.is_set():
            reply = stack.request("GET", "/v1/credits?limit=100", token=token)
            if reply.status == 200:
                answers.append(reply.json)
            else:  # the only other answer: the balance kept moving, try again
                assert reply.status == 429 and reply.json["code"] == "concurrent_update"

    readers = [threading.Thread(target=read) for _ in range(2)]
    for r in readers:
        r.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(activity, range(4)))
    stop.set()
    for r in readers:
        r.join()

    sign = {"grant": 1, "refund": 1, "charge": -1}
    complete = [a for a in answers if a["next_cursor"] is None]
    assert len(complete) >= 10
    moved = {a["balance"] for a in complete}
    assert len(moved) > 1  # the reads did see activity
    for a in complete:
        assert sum(sign[e["type"]] * e["amount"] for e in a["ledger"]) == a["balance"]
