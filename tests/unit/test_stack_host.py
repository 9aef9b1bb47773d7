"""HOST: the address the local stack binds, and the host its URLs name."""

from __future__ import annotations

import ipaddress

import pytest

from devstack.stack import StackConfig, lan_address


def test_host_defaults_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOST", raising=False)
    config = StackConfig.from_env()
    assert (config.host, config.public_host) == ("127.0.0.1", "127.0.0.1")


def test_a_host_is_bound_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "192.168.1.20")
    config = StackConfig.from_env()
    assert (config.host, config.public_host) == ("192.168.1.20", "192.168.1.20")


def test_every_interface_is_bound_and_the_lan_address_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "0.0.0.0")
    config = StackConfig.from_env()
    assert config.host == "0.0.0.0"
    assert config.public_host == lan_address()
    assert not ipaddress.ip_address(config.public_host).is_unspecified  # an address a phone can dial
