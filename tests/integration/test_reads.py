"""The read API: one job, the job list (cursor, status filter, newest first), credits, models,
openapi — and a user never sees another user's data."""

from __future__ import annotations

import base64
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest


def test_get_own_job_and_404_for_unknown_or_someone_elses(stack):
    alice, bob = stack.user(credits=20), stack.user(credits=20)
    job_id = stack.submit(alice).json["job"]["id"]

    mine = stack.request("GET", f"/v1/videos/{job_id}", token=alice)
    assert mine.status == 200
    job = mine.json
    assert job["id"] == job_id and job["status"] == "queued" and job["video"] is None
    assert job["input"] == {"prompt": "a cat surfing", "prompt_optimizer": True}

    theirs = stack.request("GET", f"/v1/videos/{job_id}", token=bob)
    unknown = stack.request("GET", "/v1/videos/vid_nope", token=bob)
    assert theirs.status == unknown.status == 404
    assert theirs.json["code"] == unknown.json["code"] == "job_not_found"
    assert theirs.headers["content-type"] == "application/problem+json"
    # cancel on someone else's job is a 404 too, and changes nothing
    assert stack.request("POST", f"/v1/videos/{job_id}/cancel", token=bob).status == 404
    assert stack.job(job_id).status.value == "queued"


def test_list_is_newest_first_paginated_and_filtered(stack):
    token = stack.user(credits=100)
    other = stack.user(credits=100)
    ids = [stack.submit(token, key=f"k{i}").json["job"]["id"] for i in range(7)]
    stack.submit(other, key="x")

    seen, cursor = [], None
    for _ in range(10):
        path = "/v1/videos?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = stack.request("GET", path, token=token).json
        assert len(page["items"]) <= 3
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))

    assert len(stack.request("GET", "/v1/videos?status=queued", token=token).json["items"]) == 7
    assert stack.request("GET", "/v1/videos?status=completed", token=token).json == {"items": [], "next_cursor": None}


_BAD_LIMITS = ["limit=0", "limit=101", "limit=abc", "limit=05", "limit=%2B5", "limit=%205", "limit=5.0"]


@pytest.mark.parametrize(
    ("path", "query"),
    # the contract's limit is an integer: decimal digits, not "05", "+5", " 5" or "5.0"
    [("/v1/videos", "status=done")] + [(path, q) for path in ("/v1/videos", "/v1/credits") for q in _BAD_LIMITS],
)
def test_bad_list_parameters_are_400(stack, path, query):
    token = stack.user(credits=1)
    reply = stack.request("GET", f"{path}?{query}", token=token)
    assert reply.status == 400 and reply.headers["content-type"] == "application/problem+json"


def test_invalid_or_foreign_cursor_is_400(stack):
    alice, bob = stack.user(credits=100), stack.user(credits=100)
    for i in range(3):
        stack.submit(alice, key=f"a{i}")
    cursor = stack.request("GET", "/v1/videos?limit=1", token=alice).json["next_cursor"]
    assert cursor
    assert stack.request("GET", "/v1/videos?cursor=%%%", token=alice).json["code"] == "invalid_cursor"
    assert stack.request("GET", "/v1/videos?cursor=bm9wZQ", token=alice).status == 400
    # Alice's cursor replayed by Bob cannot page into Alice's jobs
    foreign = stack.request("GET", f"/v1/videos?cursor={cursor}", token=bob)
    assert foreign.status == 400 and foreign.json["code"] == "invalid_cursor"
    # a forged cursor naming Alice's partition is refused as well: Bob re-encodes Alice's cursor to
    # start at another of her jobs, well shaped in every other way
    forged = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert forged["gsi1pk"].startswith("USER#")
    newest = stack.request("GET", "/v1/videos?limit=3", token=alice).json["items"][0]["id"]
    forged |= {"pk": f"JOB#{newest}", "gsi1sk": f"JOB#{newest}"}
    forged_cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    assert forged_cursor != cursor
    reply = stack.request("GET", f"/v1/videos?cursor={forged_cursor}", token=bob)
    assert reply.status == 400 and reply.json["code"] == "invalid_cursor" and "items" not in reply.json
    # the same forged cursor is one Alice could have been given: it pages on for her
    mine = stack.request("GET", f"/v1/videos?cursor={forged_cursor}", token=alice)
    assert mine.status == 200 and newest not in {j["id"] for j in mine.json["items"]}


def test_credits_balance_and_ledger_newest_first(stack):
    token = stack.user(credits=12)
    stack.submit(token, key="one")
    stack.submit(token, key="two")
    credits = stack.request("GET", "/v1/credits?limit=2", token=token).json
    assert credits["balance"] == 2
    assert [e["type"] for e in credits["ledger"]] == ["charge", "charge"]
    assert all(e["amount"] == 5 and e["job_id"] for e in credits["ledger"])
    rest = stack.request("GET", f"/v1/credits?limit=2&cursor={credits['next_cursor']}", token=token).json
    assert [(e["type"], e["amount"], e["job_id"]) for e in rest["ledger"]] == [("grant", 12, None)]
    assert rest["next_cursor"] is None


def test_models_list_schemas_without_auth(stack):
    reply = stack.request("GET", "/v1/models")
    assert reply.status == 200
    items = {m["id"]: m for m in reply.json["items"]}
    assert {"kling-2.1-standard-i2v", "kling-2.6-pro-i2v", "minimax-video-01", "veo-3.1-i2v"} <= set(items)
    kling = items["kling-2.1-standard-i2v"]
    assert kling["fal_endpoint"] == "fal-ai/kling-video/v2.1/standard/image-to-video"
    assert kling["credits"] == 4
    assert set(kling["input_schema"]["required"]) == {"prompt", "image_url"}


def test_openapi_document_lists_the_contract_routes(stack):
    doc = stack.request("GET", "/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/v1/videos",
        "/v1/videos/{id}",
        "/v1/videos/{id}/cancel",
        "/v1/credits",
        "/v1/models",
        "/openapi.json",
        "/v1/uploads",
        "/v1/uploads/{id}",
        "/v1/devices",
        "/v1/devices/{device_id}",
        "/v1/products",
        "/v1/purchases",
    }  # the providers' routes (/webhooks/*) stay out of the app's document
    assert "idempotency_key_reused" in doc["components"]["schemas"]["ProblemCode"]["enum"]


def test_unknown_route_is_404(stack):
    assert stack.request("GET", "/v2/nothing").status == 404


def test_user_id_in_body_or_query_is_ignored(stack):
    alice, bob = stack.user(credits=10, user_id="alice-x"), stack.user(credits=10, user_id="bob-x")
    assert stack.request("GET", "/v1/credits?user_id=alice-x", token=bob).json["balance"] == 10
    stack.submit(bob)
    assert stack.request("GET", "/v1/credits?user_id=bob-x", token=alice).json["balance"] == 10


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/v1/credits", {"pk": "USER#{u}", "sk": ""}),
        ("/v1/credits", {"pk": "USER#{u}", "sk": "GRANT#x"}),
        ("/v1/credits", {"pk": "USER#{u}", "sk": "ZZZ"}),
        ("/v1/videos", {"pk": "JOB#a", "sk": "JOB", "gsi1pk": "USER#{u}", "gsi1sk": "JOB#b"}),
        ("/v1/videos", {"pk": "JOB#a", "sk": "IDEM#k", "gsi1pk": "USER#{u}", "gsi1sk": "JOB#a"}),
    ],
)
def test_crafted_cursors_owned_by_the_caller_are_still_400(stack, path, key):
    token = stack.user(credits=5, user_id="cursor-user")
    forged = {k: v.replace("{u}", "cursor-user") for k, v in key.items()}
    cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    reply = stack.request("GET", f"{path}?cursor={cursor}", token=token)
    assert reply.status == 400 and reply.json["code"] == "invalid_cursor"


def test_concurrent_requests_of_different_users_each_get_their_own_answer(stack):
    """The local stack runs one handler on many threads at once (a Lambda container never does):
    no request may read another's event, route arguments or context."""
    tokens = {n: stack.user(credits=n + 5, user_id=f"concurrent-{n}") for n in range(6)}
    jobs = {n: stack.submit(tokens[n]).json["job"]["id"] for n in tokens}

    def read(n: int) -> list[tuple[int, int, Any]]:
        credits = stack.request("GET", "/v1/credits", token=tokens[n])
        job = stack.request("GET", f"/v1/videos/{jobs[n]}", token=tokens[n])
        return [(n, credits.status, credits.json.get("balance")), (n, job.status, job.json.get("id"))]

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show at once
    try:
        with ThreadPoolExecutor(12) as pool:
            results = [r for rs in pool.map(read, [n for n in tokens for _ in range(25)]) for r in rs]
    finally:
        sys.setswitchinterval(switch)
    # each user's balance is n (n + 5 granted, 5 charged) and their job is their own
    wrong = [(n, status, value) for n, status, value in results if (status, value) not in {(200, n), (200, jobs[n])}]
    assert not wrong, wrong[:5]
