"""schemathesis hooks of the contract check (loaded by devstack/schemathesis.toml; runs in .venv-contract).

An Idempotency-Key names ONE request: the same key with another body is, by the contract,
``422 idempotency_key_reused``. Hypothesis happily draws the same small key ("0") for different
bodies, which would make a schema-valid request "rejected". So every schema-valid (positive) call of
``POST /v1/videos`` gets a key of its own, as an app sends it; negative cases keep the drawn key
(invalid and missing keys stay tested), and so do the key's format checks in the coverage phase's
negative cases.
"""

from __future__ import annotations

import uuid
from typing import Any

import schemathesis

KEY = "idempotency-key"


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if case.operation.method.upper() != "POST" or case.operation.path != "/v1/videos":
        return
    if case.meta is None or not case.meta.generation.mode.is_positive or not case.headers:
        return
    for name in list(case.headers):
        if name.lower() == KEY:
            case.headers[name] = uuid.uuid4().hex
