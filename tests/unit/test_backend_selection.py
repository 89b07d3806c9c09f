"""Backend selection, ``pyl2tp version`` and ``pyl2tp --kernel`` on a host without L2TP.

The kernel side of these (the daemon on ``auto`` picking ``linux``, ``--kernel show`` against
``ip l2tp show``) runs in the kernel VM: tests/interop/test_linux_backend.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from pyl2tp.cli import iproute
from pyl2tp.cli.kernel import KernelRequests
from pyl2tp.cli.main import main
from pyl2tp.daemon.main import choose_backend
from pyl2tp.dataplane import genl_l2tp
from pyl2tp.dataplane.genl_l2tp import (
    L2TP_CMD_SESSION_CREATE,
    L2TP_CMD_TUNNEL_CREATE,
    L2tpNetlink,
    session_create_attrs,
    tunnel_create_attrs,
)


@pytest.mark.parametrize(("choice", "has", "expected"), [
    ("auto", True, ("linux", "auto: the kernel has L2TP")),
    ("auto", False, ("userspace", "auto: the kernel has no L2TP")),
    ("userspace", True, ("userspace", "configured")),
    ("linux", False, ("linux", "configured")),  # the caller refuses this one at start
])
def test_choose_backend(choice: str, has: bool, expected: tuple[str, str]) -> None:
    assert choose_backend(choice, lambda: has) == expected


def test_choose_backend_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        choose_backend("dpdk", lambda: True)


def test_daemon_backend_linux_without_l2tp_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import pyl2tp.daemon.main as daemon_main

    monkeypatch.setattr(daemon_main, "kernel_has_l2tp", lambda: False)
    assert main(["daemon", "--backend", "linux", "--socket", "/nonexistent/x.sock"]) == 1
    err = capsys.readouterr().err
    assert err == ("pyl2tp daemon: backend linux: the kernel has no L2TP (modprobe "
                   "l2tp_netlink l2tp_eth l2tp_ip l2tp_ip6 l2tp_ppp failed); use --backend "
                   "userspace\n")


def test_backend_config_key_is_checked(tmp_path: Any, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[daemon]\nbackend = "dpdk"\n')
    assert main(["daemon", "--check-config", "--config", str(cfg)]) == 1
    assert "backend" in capsys.readouterr().err


def test_kernel_option_without_l2tp_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import pyl2tp.cli.kernel as kernel

    monkeypatch.setattr(kernel, "kernel_has_l2tp", lambda: False)
    assert main(["--kernel", "show", "tunnel"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyl2tp: the kernel has no L2TP") and err.count("\n") == 1


def test_kernel_option_applies_to_ip_syntax_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--kernel", "top"]) == 255
    assert '--kernel applies to add, del, set and show only, not "top"' in (
        capsys.readouterr().err)


class _Recorder(L2tpNetlink):
    """The codec's client with the socket replaced by a list: what would be sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[int, bytes, bool]] = []

    def _do(self, cmd: int, attrs: bytes = b"", *, dump: bool = False) -> list[Any]:
        self.sent.append((cmd, attrs, dump))
        return []


def _requests(line: str) -> list[dict[str, Any]]:
    return iproute.parse(line.split()).requests


def test_kernel_requests_send_what_ip_l2tp_sends() -> None:
    nl = _Recorder()
    send = KernelRequests(nl)
    for req in _requests("add tunnel tunnel_id 7 peer_tunnel_id 8 encap udp local 10.1.0.1 "
                         "remote 10.1.0.2 udp_sport 5000 udp_dport 6000 udp_csum on"):
        send(req)
    for req in _requests("add session tunnel_id 7 session_id 70 peer_session_id 80 "
                         "cookie 0011223344556677 peer_cookie 8899aabb l2spec_type none "
                         "seq both name pw7"):
        send(req)
    assert nl.sent == [
        (L2TP_CMD_TUNNEL_CREATE, tunnel_create_attrs(
            7, 8, 3, 0, local="10.1.0.1", remote="10.1.0.2", udp_sport=5000, udp_dport=6000,
            udp_csum=True), False),
        (L2TP_CMD_SESSION_CREATE, session_create_attrs(
            7, 70, 80, 5, peer_tunnel_id=0, l2spec_type=0,  # ip sends 0 here too
            cookie=bytes.fromhex("0011223344556677"), peer_cookie=bytes.fromhex("8899aabb"),
            recv_seq=True, send_seq=True, ifname="pw7"), False),
    ]


def test_kernel_requests_dump_for_show() -> None:
    nl = _Recorder()
    send = KernelRequests(nl)
    for req in _requests("show session"):
        assert send(req) == []
    assert nl.sent == [(genl_l2tp.L2TP_CMD_SESSION_GET, b"", True)]
