"""The webhook URL of a job: derived token and per-job MAC, never the secret itself."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from videogen.services.webhook_link import WebhookLinks

LINKS = WebhookLinks(lambda: "the-secret")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_the_url_carries_token_job_and_mac_and_none_without_a_public_url() -> None:
    assert LINKS.url("", "vid_1") is None
    url = LINKS.url("https://api.example.com/", "vid_1")
    assert url is not None and url.startswith("https://api.example.com/webhooks/fal?")
    assert query_of(url) == {"token": LINKS.token(), "job_id": "vid_1", "mac": LINKS.mac("vid_1")}


def test_the_secret_itself_is_never_in_the_url_and_token_and_mac_keys_differ() -> None:
    url = LINKS.url("https://api.example.com", "vid_1")
    assert url is not None and "the-secret" not in url
    assert len(LINKS.token()) == len(LINKS.mac("vid_1")) == 43
    # the token is not the MAC key: the MAC of the token's own label is not the token
    assert LINKS.token() not in (LINKS.mac("vid_1"), LINKS.mac(""), LINKS.mac("url-token"))


def test_a_url_of_one_job_does_not_verify_for_another() -> None:
    query = query_of(LINKS.url("https://x", "vid_a") or "")
    assert LINKS.token_ok(query) and LINKS.mac_ok(query)
    assert not LINKS.mac_ok({**query, "job_id": "vid_b"})
    assert not LINKS.mac_ok({**query, "mac": LINKS.mac("vid_b")})
    assert not LINKS.mac_ok({k: v for k, v in query.items() if k != "mac"})


@pytest.mark.parametrize("secret", ["", "other-secret"])
def test_another_or_no_secret_accepts_nothing(secret: str) -> None:
    query = query_of(LINKS.url("https://x", "vid_a") or "")
    other = WebhookLinks(lambda: secret)
    assert not other.token_ok(query) and not other.mac_ok(query)
    assert not other.token_ok({"token": ""}) and not other.mac_ok({"job_id": "vid_a", "mac": ""})


def test_an_overlong_job_id_never_verifies() -> None:
    job_id = "v" * 65
    assert not LINKS.mac_ok({"job_id": job_id, "mac": LINKS.mac(job_id)})
