"""`make run` with a port something already listens on stops at once, naming the setting."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import stack

NAMES = ("PORT", "FALSIM_PORT", "MOTO_PORT", "PLAY_PORT")


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


def _main_exits_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> str:
    """``stack.main()`` with ``env`` (free ports otherwise): the one line it exits with."""
    for name in NAMES:
        monkeypatch.setenv(name, "0")
    monkeypatch.setenv("JWT_KEY_FILE", str(tmp_path / "key.pem"))
    for name in ("FAL_KEY", "HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(stack, "LocalStack", None)  # nothing may start after the check
    with pytest.raises(SystemExit) as exited:
        stack.main()
    message = exited.value.code
    assert isinstance(message, str) and "\n" not in message and "Traceback" not in message
    return message


def test_two_servers_on_one_port_is_one_line_naming_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = str(s.getsockname()[1])
    message = _main_exits_with(monkeypatch, tmp_path, PORT=free, MOTO_PORT=free)
    assert f"PORT={free} and MOTO_PORT={free}" in message and "own port" in message


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("192.0.2.1", "is not an address of this machine"),  # TEST-NET-1: never this machine's
        ("no-such-host.invalid", "no such host"),
    ],
)
def test_a_host_that_is_not_this_machine_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str, says: str
) -> None:
    message = _main_exits_with(monkeypatch, tmp_path, HOST=host, PORT="3999")
    assert f"HOST={host}" in message and says in message and "in use" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [("PORT", "abc"), ("PORT", "70000"), ("MOTO_PORT", "-1"), ("FALSIM_PORT", "1.5"), ("TIME_SCALE", "nan")],
)
def test_a_setting_that_is_not_a_number_in_range_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    message = _main_exits_with(monkeypatch, tmp_path, **{name: value})
    assert f"{name}={value!r}" in message


def test_a_key_file_that_is_not_a_key_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    message = _main_exits_with(monkeypatch, tmp_path, JWT_KEY_FILE=str(bad))
    assert f"JWT_KEY_FILE={bad}" in message


def test_a_key_file_that_cannot_be_read_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    where = tmp_path / "a-directory.pem"
    where.mkdir()
    message = _main_exits_with(monkeypatch, tmp_path, JWT_KEY_FILE=str(where))
    assert f"JWT_KEY_FILE={where}" in message
