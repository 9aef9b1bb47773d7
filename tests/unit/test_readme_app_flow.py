"""The README's "Building an app on videogen" names real routes, and its sequence diagram shows the
calls its script makes, in the script's order (the script itself runs in tests/e2e/test_app_flow.py)."""

from __future__ import annotations

import pytest

from devstack.docs import route_keys
from tests import readme_flow

LOCAL_ONLY = {"POST /_local/users", "GET /_local/notifications"}  # the local stand-ins of the IdP and the push


def _collapsed(calls: list[str]) -> list[str]:
    """Consecutive repeats (a poll) as one call, the push's local stand-in left out."""
    out: list[str] = []
    for call in calls:
        if call != "GET /_local/notifications" and (not out or out[-1] != call):
            out.append(call)
    return out


def test_the_section_has_its_diagram_and_both_scripts() -> None:
    assert "```mermaid\nsequenceDiagram" in readme_flow.section()
    assert set(readme_flow.scripts()) == {"main", "errors"}


def test_the_diagram_shows_the_scripts_calls_in_their_order() -> None:
    script = readme_flow.script_calls(readme_flow.scripts()["main"])
    assert readme_flow.diagram_calls() == _collapsed(script)


@pytest.mark.parametrize("name", ["main", "errors"])
def test_every_call_of_a_script_is_a_route_of_the_template_or_of_the_local_stack(name: str) -> None:
    calls = set(readme_flow.script_calls(readme_flow.scripts()[name]))
    assert calls, name
    assert calls - LOCAL_ONLY <= set(route_keys())


def test_the_top_of_the_readme_links_the_section() -> None:
    head = readme_flow.README.read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert "(#building-an-app-on-videogen)" in head


def test_a_call_renamed_in_the_script_but_not_in_the_diagram_is_seen() -> None:
    text = readme_flow.README.read_text(encoding="utf-8")
    drifted = text.replace('"$API/v1/credits"', '"$API/v1/balance"')
    assert readme_flow.diagram_calls(drifted) != _collapsed(
        readme_flow.script_calls(readme_flow.scripts(drifted)["main"])
    )
