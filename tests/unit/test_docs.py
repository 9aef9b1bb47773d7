"""docs/api.md's generated sections match the code: routes, error codes, statuses, titles, models."""

from __future__ import annotations

import pytest

from devstack import docs


def test_generated_sections_of_api_md_are_current():
    current = docs.API_DOC.read_text(encoding="utf-8")
    assert docs.update(current) == current, "docs/api.md is out of date: run `python -m devstack.docs`"


def test_every_error_code_has_advice_and_no_advice_is_stale():
    codes = {cls.code for cls in docs.error_classes()}
    assert set(docs.ADVICE) == codes


def test_every_error_class_appears_in_the_table_with_its_status():
    table = docs.render_errors()
    for cls in docs.error_classes():
        assert f"| `{cls.code}` | {cls.status} |" in table


def test_a_row_missing_from_the_document_is_detected_and_restored():
    # Given docs/api.md without the row of one error code
    current = docs.API_DOC.read_text(encoding="utf-8")
    row = next(line for line in current.splitlines() if line.startswith("| `insufficient_credits` | 402 |"))
    stale = current.replace(row + "\n", "")
    # Then the check sees it is out of date, and the generator puts the row back
    assert docs.update(stale) != stale
    assert docs.update(stale) == current


def test_a_missing_marker_is_an_error():
    with pytest.raises(ValueError, match="no marked section"):
        docs.update("no markers here")


def test_every_route_of_the_template_is_described_and_no_description_is_stale():
    assert sorted(docs.ROUTE_SUMMARY) == sorted(docs.route_keys())


def test_nothing_listed_as_planned_is_built():
    routes = set(docs.route_keys())
    built = {item.text: item.built(routes) for item in docs.PLANNED}
    assert {text: what for text, what in built.items() if what} == {}, "built: remove it from docs.PLANNED"


def test_a_planned_route_that_appears_in_the_template_is_seen_as_built():
    item = docs.Planned("x", routes=("POST /v1/uploads",), fields=((docs.contract.Video, "poster_url"),))
    assert item.built(set(docs.route_keys())) == ["POST /v1/uploads", "Video.poster_url"]


def test_every_job_error_code_is_explained_and_no_explanation_is_stale():
    assert set(docs.JOB_ERRORS) == set(docs.FailureCode)
    table = docs.render_job_errors()
    assert [line.split("`")[1] for line in table.splitlines()[2:]] == [code.value for code in docs.FailureCode]
