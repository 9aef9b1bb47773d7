"""Edges of the webhook URL checks that the main tests leave open (mutation survivors)."""

from __future__ import annotations

from videogen.services.webhook_link import MAX_JOB_ID, WebhookLinks

LINKS = WebhookLinks(lambda: "the-secret")
NO_SECRET = WebhookLinks(lambda: "")


def test_without_a_secret_token_and_mac_are_empty() -> None:
    assert NO_SECRET.token() == ""
    assert NO_SECRET.mac("vid_1") == ""


def test_a_query_without_a_token_is_refused_not_an_error() -> None:
    assert LINKS.token_ok({}) is False
    assert LINKS.token_ok({"token": LINKS.token()}) is True


def test_a_mac_without_a_job_id_never_verifies() -> None:
    assert LINKS.mac_ok({"mac": LINKS.mac("XXXX")}) is False
    assert LINKS.mac_ok({"job_id": "", "mac": LINKS.mac("")}) is False
    assert LINKS.mac_ok({"mac": LINKS.mac("")}) is False


def test_a_job_id_of_the_maximum_length_verifies() -> None:
    job_id = "v" * MAX_JOB_ID
    assert LINKS.mac_ok({"job_id": job_id, "mac": LINKS.mac(job_id)}) is True
    assert LINKS.mac_ok({"job_id": job_id + "v", "mac": LINKS.mac(job_id + "v")}) is False
