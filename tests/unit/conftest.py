"""Unit tests: the domain and the services on in-memory fakes (tests/fakes). No network (every
socket connection raises), no moto, no threads, no sleeps."""

from __future__ import annotations

import socket
from collections.abc import Iterator
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
