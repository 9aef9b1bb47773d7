"""Unit tests: the domain and the services on in-memory fakes (tests/fakes). No network (every
socket connection raises), no moto, no threads, no sleeps."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fakes.system import System


def _refuse(*_: Any, **__: Any) -> None:
    raise OSError("the network is blocked in tests/unit: use the fakes in tests/fakes")


@pytest.fixture(autouse=True)  # per test: the block must end before tests outside tests/unit run
def _no_network() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket.socket, "connect_ex", _refuse)
        mp.setattr(socket, "create_connection", _refuse)
        mp.setattr(socket, "getaddrinfo", _refuse)
        yield


@pytest.fixture
def system() -> Iterator[System]:
    built = System()
    yield built
    built.assert_invariants()  # after every test: balance == sum(ledger), one refund per failed job, ...


@pytest.fixture
def counted() -> Iterator[Callable[[str], int]]:
    """The total of a count metric (``videogen.observability.count``) added during the test."""
    from videogen.observability import metrics

    metrics.clear_metrics()
    yield lambda name: sum(int(v) for v in metrics.metric_set.get(name, {}).get("Value", []))
    metrics.clear_metrics()


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Callable[..., list[tuple[Any, ...]]]:
    """``logged("message", "field", ...)``: (field values...) of each record of that message, in order."""
    caplog.set_level(logging.INFO)

    def records(message: str, *fields: str) -> list[tuple[Any, ...]]:
        return [tuple(getattr(r, f, None) for f in fields) for r in caplog.records if r.getMessage() == message]

    return records
