"""What the e2e modules share: the local stack as a module's apps meet it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.process import StackProcess


def app_stack(tmp_path_factory: pytest.TempPathFactory, name: str, seed: int) -> Iterator[StackProcess]:
    """``python -m devstack`` on free ports as an app meets it: no crash points, fast waits, the
    reconciler every 2 s; a module-scoped fixture yields from it."""
    process = StackProcess(
        seed=seed,
        time_scale=0.02,
        crash_rate=0,
        reconcile_every_s=2,
        reconcile_grace_s=10,
        log_path=tmp_path_factory.mktemp(name) / "stack.log",
    )
    with process:
        yield process
