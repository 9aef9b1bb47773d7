"""``make test`` (devstack/suites.py): each suite is its own pytest run, and a suite that collects
no test fails like one whose test fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import suites


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "passing").mkdir()
    (tmp_path / "passing" / "test_one.py").write_text("def test_one():\n    assert True\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "test_none.py").write_text("VALUE = 1\n")
    (tmp_path / "failing").mkdir()
    (tmp_path / "failing" / "test_bad.py").write_text("def test_bad():\n    assert False\n")
    monkeypatch.setattr(
        suites,
        "SUITES",
        {name: [str(tmp_path / name), "-p", "no:cacheprovider"] for name in ("passing", "empty", "failing")},
    )
    return tmp_path


def test_a_suite_that_passes_passes(folders: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert suites.main(["passing"]) == 0
    assert "passing      ok" in capsys.readouterr().out


def test_a_suite_that_collects_nothing_fails_and_says_so(folders: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert suites.main(["passing", "empty"]) == 1
    assert "empty        FAILED: collected no test" in capsys.readouterr().out


def test_a_selection_that_matches_nothing_fails_the_suite(folders: Path) -> None:
    assert suites.main(["passing", "--", "-k", "no_such_test"]) == 1


def test_every_suite_runs_and_is_summarised_even_after_a_failure(
    folders: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert suites.main(["failing", "passing"]) == 1
    summary = capsys.readouterr().out.split("== suites\n")[1].splitlines()
    assert [line.split()[:2] for line in summary] == [["failing", "FAILED"], ["passing", "ok"]]
