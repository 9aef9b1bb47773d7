"""The public-https URL rule's pieces, called directly (mutation survivors: the module-level
pattern is built once at import, and the parsed-URL check is a second line behind the pattern)."""

from __future__ import annotations

import re

import pytest
from pydantic import HttpUrl

from videogen.domain.registry import URL_RULE, _any_case, _host_name


def test_any_case_matches_each_letter_in_both_cases_and_escapes_the_rest() -> None:
    assert _any_case("Ab1.") == r"[aA][bB]1\."
    pattern = re.compile(f"^{_any_case('local.host')}$")
    assert pattern.match("LoCaL.HOST") and pattern.match("local.host")
    assert not pattern.match("localXhost")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/a.png",
        "https://[::1]/a.png",
        "https://user@example.com/a.png",
        "https://:pw@example.com/a.png",
        "https://user:pw@example.com/a.png",
        "http://example.com/a.png",
    ],
)
def test_the_parsed_url_check_refuses_addresses_user_info_and_plain_http(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        _host_name(HttpUrl(url))
    assert str(refused.value) == URL_RULE


def test_the_parsed_url_check_keeps_a_public_https_name() -> None:
    url = HttpUrl("https://cdn.example.com/a.png")
    assert _host_name(url) is url
