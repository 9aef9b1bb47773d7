"""`make run` with a port something already listens on stops at once, naming the setting."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from devstack import stack

NAMES = ("PORT", "FALSIM_PORT", "MOTO_PORT")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("name", NAMES)
def test_a_taken_port_fails_fast_naming_the_setting(
    name: str, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for other in NAMES:
        monkeypatch.setenv(other, "0")  # ephemeral: free
    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.setenv(name, str(taken_port))
    monkeypatch.setattr(stack, "LocalStack", None)  # nothing may start after the check
    with pytest.raises(SystemExit) as exited:
        stack.main()
    message = exited.value.code
    assert isinstance(message, str)  # printed on stderr, exit status 1
    assert "\n" not in message
    assert f"{name}={taken_port}" in message
    assert "in use" in message


def test_free_ports_pass_the_check() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    stack.StackConfig(port=free, falsim_port=0, moto_port=0).check_ports()


def test_with_the_real_fal_the_simulator_port_is_not_needed(taken_port: int) -> None:
    stack.StackConfig(port=0, falsim_port=taken_port, moto_port=0, fal_key="k").check_ports()
    with pytest.raises(stack.PortInUse, match=f"FALSIM_PORT={taken_port}"):
        stack.StackConfig(port=0, falsim_port=taken_port, moto_port=0).check_ports()
