"""The chaos run's table: rows of (label, value), printed aligned or as Markdown."""

from __future__ import annotations

from collections import Counter


def fmt_counter(c: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def render(rows: list[tuple[str, str]], markdown: bool) -> str:
    """Rows of (label, value); a row with value "" is a section heading."""
    if markdown:
        out = ["| | |", "|---|---|"]
        for label, value in rows:
            out.append(f"| **{label}** | |" if value == "" else f"| {label} | {value} |")
        return "\n".join(out)
    width = max(len(label) for label, _ in rows) + 2
    out = []
    for label, value in rows:
        if value == "":
            out.append(f"{label}")
        else:
            out.append(f"  {label.ljust(width)}{value}")
    return "\n".join(out)
