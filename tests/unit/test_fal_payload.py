"""fal's output parsed once (adapters/fal.py): the result answer and the webhook's payload agree."""

from __future__ import annotations

import json

import pytest

from videogen.adapters.fal import MAX_QUEUE_POSITION, parse_delivery, result_from_payload, status_from_payload
from videogen.domain.errors import BadRequest
from videogen.ports import FalResult

VIDEO = {"video": {"url": "https://v3.fal.media/x.mp4", "content_type": "video/mp4"}}


def _body(**fields: object) -> bytes:
    return json.dumps({"request_id": "req-1", "gateway_request_id": "g", **fields}).encode()


def test_a_video_payload_is_the_same_result_from_the_result_call_and_the_webhook():
    expected = FalResult(video_url="https://v3.fal.media/x.mp4", content_type="video/mp4")
    assert result_from_payload(VIDEO) == expected
    delivery = parse_delivery(_body(status="OK", payload=VIDEO))
    assert delivery is not None and delivery.request_id == "req-1" and delivery.result == expected


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"status": "OK", "payload": {"images": []}}, "no video in result"),
        ({"status": "OK", "payload": None, "payload_error": "not serializable"}, "payload error: not serializable"),
        ({"status": "OK", "payload": {"video": {"url": ""}}}, "no video in result"),
        ({"status": "ERROR", "error": "Invalid status code: 500"}, "Invalid status code: 500"),
        ({"status": "ERROR"}, "generation failed"),
    ],
)
def test_failed_deliveries_carry_an_error_and_no_url(fields, error):
    delivery = parse_delivery(_body(**fields))
    assert delivery is not None and delivery.result == FalResult(error=error)
    assert not delivery.result.ok


def test_other_statuses_are_ignored_and_non_fal_bodies_are_bad_requests():
    assert parse_delivery(_body(status="IN_PROGRESS")) is None
    for raw in (b"not json", b"[]", json.dumps({"status": "OK"}).encode(), json.dumps({"request_id": ""}).encode()):
        with pytest.raises(BadRequest):
            parse_delivery(raw)


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        (3, 3),
        (0, 0),
        (10**308, MAX_QUEUE_POSITION),  # the simulator's answer to queue_s=1e308: clamped, never 309 digits
        (1e308, MAX_QUEUE_POSITION),
        (7.0, 7),
        (-1, None),
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        ("5", None),
        (None, None),
    ],
)
def test_a_status_answers_queue_position_is_a_bounded_whole_number(position, expected):
    assert status_from_payload({"status": "IN_QUEUE", "queue_position": position}).queue_position == expected


def test_a_status_answer_keeps_only_its_last_log_entries():
    logs = [{"message": str(n)} for n in range(10_000)] + ["not an entry"]
    status = status_from_payload({"status": "IN_PROGRESS", "logs": logs})
    assert 0 < len(status.logs) <= 50 and status.last_message == "9999"
