"""``source_address`` never raises: a failed probe (even EMFILE on the probe socket itself)
falls back to the wildcard, so an established control connection always gets its tunnel."""

from __future__ import annotations

import errno
import socket

import pytest

from pyl2tp.daemon import control


def test_probe_socket_emfile_gives_the_wildcard(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fds(*_a: object, **_k: object) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(control.socket, "socket", no_fds)
    assert control.source_address(socket.AF_INET, "192.0.2.1") == "0.0.0.0"
    assert control.source_address(socket.AF_INET6, "2001:db8::1") == "::"


def test_loopback_peer_gives_a_loopback_source() -> None:
    assert control.source_address(socket.AF_INET, "127.0.0.1") == "127.0.0.1"
