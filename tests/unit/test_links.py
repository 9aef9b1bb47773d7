"""No link or path in the project leads outside its repository.

Scanned: every Markdown file (links, their #anchors, and any ``*.md`` it names), every
Python comment and docstring, and every other text file whole (YAML, TOML, JSON, Makefile,
shell, TypeScript, ...). A relative link must resolve to a file inside the repository;
a named ``*.md`` must exist relative to the naming file or to the repository root; a path
into the developer machine's shared folder or an absolute machine path is refused. Web
URLs (``https://...``) are allowed: they are not files of some other checkout.
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {
    ".git",
    ".venv",
    "node_modules",
    ".aws-sam",
    ".local",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".json", ".txt", ".cfg", ".ini", ".sh", ".ts", ".js", ".mjs"}
TEXT_NAMES = {"Makefile", "run", ".gitignore"}

# Paths that only exist on the machine the project was first written on.
OUTSIDE = [
    re.compile(r"\.\./+shared\b"),  # the sibling folder of the checkout
    re.compile(r"(?<![\w.])/work/"),  # an absolute path of the development machine
    re.compile(r"(?<![\w/.-])shared/[\w.-]+\.md\b"),  # a page of that sibling folder
    re.compile(r"(?<![\w.])/(?:home|Users|tmp)/\w"),  # any other absolute machine path
]
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
MD_NAME = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)*[\w.-]+(?:/[\w.-]+)*\.md)\b")
MD_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _files() -> Iterator[Path]:
    """The project's own files: what git tracks or would track (.gitignore'd tool folders such as
    .venv-contract or node_modules are other people's code). Outside a git checkout, a walk."""
    try:
        listed = (
            subprocess.run(
                ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                cwd=ROOT,
                capture_output=True,
                check=True,
                timeout=30,
            )
            .stdout.decode()
            .split("\0")
        )
        candidates = [ROOT / name for name in listed if name]
    except (OSError, subprocess.SubprocessError):
        candidates = []
        for folder, dirs, names in os.walk(ROOT):  # never descends into skipped (or symlinked) folders
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
            candidates += [Path(folder, name) for name in names]
    for path in sorted(candidates):
        if path.is_file() and not path.is_symlink() and (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES):
            yield path


def _python_prose(source: str) -> str:
    """Comments and docstrings of a Python module: what a reader takes for documentation."""
    parts = [
        tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                parts.append(doc)
    return "\n".join(parts)


def _prose(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None
    return _python_prose(text) if path.suffix == ".py" else text


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.DOTALL)
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.MULTILINE):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _inside(target: Path) -> bool:
    return target.resolve().is_relative_to(ROOT)


def problems_of(path: Path, prose: str) -> list[str]:
    found: list[str] = []
    rel = path.relative_to(ROOT)
    for pattern in OUTSIDE:
        found += [f"{rel}: leads outside the repository: {m.group(0)!r}" for m in pattern.finditer(prose)]
    without_urls = URL.sub("", prose)
    if path.suffix == ".md":
        for target in MD_LINK.findall(prose):
            if URL.match(target) or target.startswith(("mailto:", "#")):
                if target.startswith("#") and target[1:] not in _anchors(path):
                    found.append(f"{rel}: no heading for anchor {target!r}")
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve()
            if not _inside(dest) or not dest.exists():
                found.append(f"{rel}: link to a file not in the repository: {target!r}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                found.append(f"{rel}: no heading for anchor {target!r}")
    for name in MD_NAME.findall(without_urls):
        candidates = [path.parent / name, ROOT / name]
        if not any(_inside(c) and c.is_file() for c in candidates):
            found.append(f"{rel}: names {name!r}, which is not a file of the repository")
    return found


def test_no_link_or_path_leads_outside_the_repository():
    found: list[str] = []
    scanned = 0
    for path in _files():
        prose = _prose(path)
        if prose is None:
            continue
        scanned += 1
        found += problems_of(path, prose)
    assert scanned > 50  # the walk found the project, not an empty folder
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("README.md", "The contract is [api](../" + "shared/api.md)."),
        ("README.md", "See [gone](docs/missing.md)."),
        ("README.md", "See [anchor](docs/api.md#no-such-heading)."),
        ("README.md", "See the [section](#no-such-heading)."),
        ("README.md", "Facts from `fal-api.md`."),
        ("layers/videogen/videogen/x.py", '"""Follows shared/' + 'api.md."""\n'),
        ("layers/videogen/videogen/x.py", "x = 1  # see /wo" + "rk/shared/design.md\n"),
        ("layers/videogen/videogen/x.py", '"""The shapes of api.md."""\n'),
        ("template.yaml", "# as ../" + "shared/api.md says\n"),
    ],
)
def test_the_scan_catches_each_kind_of_outside_link(name, text):
    # Given a file with one link that leads nowhere inside the repository
    path = ROOT / name
    prose = _python_prose(text) if path.suffix == ".py" else text
    # Then the scan reports it
    assert problems_of(path, prose)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("README.md", "See [the API](docs/api.md#error-codes) and [fal](https://fal.ai/docs/x.md)."),
        ("docs/auth.md", "See [api.md](api.md) and `docs/api.md`."),
        ("layers/videogen/videogen/x.py", '"""The shapes of docs/api.md."""\n# ../ is fine alone\n'),
    ],
)
def test_links_inside_the_repository_pass(name, text):
    path = ROOT / name
    prose = _python_prose(text) if path.suffix == ".py" else text
    assert problems_of(path, prose) == []
