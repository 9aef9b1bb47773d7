"""The one way a request body becomes JSON: every route that parses a body (POST /v1/videos, the
fal webhook) reads it with :func:`loads`.

``json.loads`` recurses once per nesting level: ``[`` x 5000 (10 KB) raises RecursionError, which
would be a 500 with a traceback. A cheap scan of the bracket depth (outside strings) comes first,
so a body nested deeper than any real one is refused as invalid JSON. ``NaN`` and ``Infinity``,
which Python accepts and JSON does not, are refused too, and so is an object naming a key twice.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class JsonRejected(ValueError):
    """The body is not JSON this API reads (a ValueError, as ``json.loads`` raises)."""


def depth(raw: bytes) -> int:
    """The deepest bracket nesting of ``raw``, brackets inside strings not counted."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    return max(accumulate(1 if c in b"[{" else -1 for c in brackets), default=0)


def _no_constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object naming a key twice is refused: parsers disagree on which one wins (Python's
    json keeps the last, others the first), so ``{"platform": "apns", "platform": "fcm"}`` would
    be two different requests to two readers."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise JsonRejected(f"the key {json.dumps(key)[:40]} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``raw`` as JSON; :class:`JsonRejected` (a ValueError) when it nests deeper than ``max_depth``,
    holds NaN/Infinity or names a key twice in one object, ValueError (UnicodeDecodeError
    included) when it is not JSON at all."""
    data = raw.encode() if isinstance(raw, str) else raw
    if depth(data) > max_depth:
        raise JsonRejected(f"nested deeper than {max_depth} levels")
    return json.loads(data, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
