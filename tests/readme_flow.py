"""The README's "Building an app on videogen" read as data, so its calls cannot drift from the API:
the scripts marked ``<!-- app-flow: <name> ... -->`` (run as they are by tests/e2e/test_app_flow.py)
and the calls of its Mermaid sequence diagram (checked against the scripts and template.yaml by
tests/unit/test_readme_app_flow.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Building an app on videogen"

_BLOCK = re.compile(r"<!-- app-flow: (?P<name>[\w-]+) [^>]*-->\n```bash\n(?P<script>.*?)\n```", re.DOTALL)
_CALL = re.compile(r"\b(GET|POST|PUT|DELETE) (/(?:v1|_local)/[\w/{}.-]*)")
# a script's shell variables that stand for a path parameter
_PARAMS = {"$UPLOAD": "{id}", "$JOB2": "{id}", "$JOB": "{id}", "$DEVICE": "{device_id}"}


def section(text: str | None = None) -> str:
    text = README.read_text(encoding="utf-8") if text is None else text
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def scripts(text: str | None = None) -> dict[str, str]:
    """name -> the bash of each marked block of the section."""
    return {m["name"]: m["script"] for m in _BLOCK.finditer(section(text))}


def diagram_calls(text: str | None = None) -> list[str]:
    """``METHOD /path`` of each arrow from the App to the API in the sequence diagram, in order."""
    body = section(text).split("```mermaid\n", 1)[1].split("```", 1)[0]
    calls = []
    for line in body.splitlines():
        if "App->>API:" in line or "App->>IdP:" in line:
            calls += [f"{m[1]} {m[2]}" for m in _CALL.finditer(line)]
    return calls


def script_calls(script: str) -> list[str]:
    """``METHOD /path`` of each curl to ``$API`` in a script, path parameters as the routes name
    them, in order (one call per curl; a line ending in ``\\`` continues)."""
    joined = script.replace("\\\n", " ")
    calls = []
    for line in joined.splitlines():
        for part in line.split("curl ")[1:]:
            target = re.search(r'"\$API(/[^"]*)"', part)
            if not target:
                continue
            path = target[1]
            for variable, param in _PARAMS.items():
                path = path.replace(variable, param)
            method = re.search(r"-X\s*(GET|POST|PUT|DELETE)\b", part)
            calls.append(f"{method[1] if method else 'GET'} {path}")
    return calls


def documents(output: str) -> tuple[list[Any], list[str]]:
    """The JSON documents a script printed (jq's pretty output, curl's bodies) and its other lines."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    lines: list[str] = []
    i = 0
    while i < len(output):
        if output[i] in "{[":
            try:
                value, end = decoder.raw_decode(output, i)
            except ValueError:
                pass
            else:
                found.append(value)
                i = end
                continue
        end = output.find("\n", i)
        end = len(output) if end == -1 else end
        if output[i:end].strip():
            lines.append(output[i:end].strip())
        i = end + 1
    return found, lines
