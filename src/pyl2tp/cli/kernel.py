"""``pyl2tp --kernel add|del|set|show ...``: the ``ip l2tp`` subset straight to the kernel.

Without a daemon, and without pyl2tp's data plane: each request the ``ip l2tp`` parser
builds goes to the kernel's L2TP generic-netlink family, exactly as ``ip l2tp`` sends it, and
what ``show`` prints is what the kernel holds. This is for hosts where someone wants pyl2tp's
CLI (its extra checks, ``-j``, ``version 2``) on the kernel's unmanaged tunnels, and for
comparing the daemon's answers with the kernel's on the same request.

The management API and the kernel speak the same attribute names (the API was modelled on
``L2TP_ATTR_*``), so the translation is small: address attributes become the codec's
``local``/``remote``, hex cookies become bytes, and gets/dumps are passed through.
"""

from __future__ import annotations

import errno
from typing import Any

from pyl2tp.dataplane.genl_l2tp import NO_L2TP, L2tpNetlink, kernel_has_l2tp
from pyl2tp.errors import L2tpError

Request = dict[str, Any]


class KernelRequests:
    """A ``send`` for :func:`pyl2tp.cli.iproute.execute` that talks to the kernel."""

    def __init__(self, nl: L2tpNetlink | None = None) -> None:
        self.nl = nl or L2tpNetlink()

    def close(self) -> None:
        self.nl.close()

    def __enter__(self) -> KernelRequests:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __call__(self, request: Request) -> Any:
        cmd = request["cmd"]
        attrs: dict[str, Any] = request.get("attrs") or {}
        handler = getattr(self, f"_{cmd}", None)
        if handler is None:
            raise L2tpError(errno.EOPNOTSUPP, f"{cmd} is not a kernel command")
        return handler(attrs, bool(request.get("dump")))

    # -- tunnels --------------------------------------------------------------------------

    def _tunnel_create(self, a: dict[str, Any], _dump: bool) -> dict[str, Any]:
        local = a.get("ip_saddr") or a.get("ip6_saddr")
        remote = a.get("ip_daddr") or a.get("ip6_daddr")
        self.nl.tunnel_create(
            a["conn_id"], a["peer_conn_id"], a.get("proto_version", 3), a.get("encap_type", 0),
            local=local, remote=remote, udp_sport=a.get("udp_sport", 0),
            udp_dport=a.get("udp_dport", 0), udp_csum=bool(a.get("udp_csum")),
            udp_zero_csum6_tx=bool(a.get("udp_zero_csum6_tx")),
            udp_zero_csum6_rx=bool(a.get("udp_zero_csum6_rx")))
        return {}

    def _tunnel_delete(self, a: dict[str, Any], _dump: bool) -> dict[str, Any]:
        self.nl.tunnel_delete(a["conn_id"])
        return {}

    def _tunnel_modify(self, a: dict[str, Any], _dump: bool) -> dict[str, Any]:
        self.nl.tunnel_modify(a["conn_id"])
        return {}

    def _tunnel_get(self, a: dict[str, Any], dump: bool) -> Any:
        if dump:
            return self.nl.tunnel_dump()
        return self.nl.tunnel_get(a["conn_id"])

    _tunnel_dump = _tunnel_get

    # -- sessions -------------------------------------------------------------------------

    def _session_create(self, a: dict[str, Any], _dump: bool) -> dict[str, Any]:
        self.nl.session_create(
            a["conn_id"], a["session_id"], a["peer_session_id"], a["pw_type"],
            peer_tunnel_id=a.get("peer_conn_id"), l2spec_type=a.get("l2spec_type"),
            cookie=_bytes(a.get("cookie")), peer_cookie=_bytes(a.get("peer_cookie")),
            recv_seq=a.get("recv_seq"), send_seq=a.get("send_seq"),
            lns_mode=a.get("lns_mode"), recv_timeout=a.get("recv_timeout"),
            ifname=a.get("ifname"))
        return {}

    def _session_delete(self, a: dict[str, Any], _dump: bool) -> dict[str, Any]:
        self.nl.session_delete(a.get("conn_id"), a.get("session_id"), ifname=a.get("ifname"))
        return {}

    def _session_modify(self, a: dict[str, Any], _dump: bool) -> dict[str, Any]:
        self.nl.session_modify(a["conn_id"], a["session_id"], recv_seq=a.get("recv_seq"),
                               send_seq=a.get("send_seq"), lns_mode=a.get("lns_mode"),
                               recv_timeout=a.get("recv_timeout"))
        return {}

    def _session_get(self, a: dict[str, Any], dump: bool) -> Any:
        if dump:
            return self.nl.session_dump()
        return self.nl.session_get(a.get("conn_id"), a.get("session_id"),
                                   ifname=a.get("ifname"))

    _session_dump = _session_get


def _bytes(cookie: str | bytes | None) -> bytes:
    if not cookie:
        return b""
    return cookie if isinstance(cookie, bytes) else bytes.fromhex(cookie)


def open_kernel() -> KernelRequests:
    """The kernel's L2TP, or a one-line :class:`L2tpError` saying it has none."""
    if not kernel_has_l2tp():
        raise L2tpError(errno.EPROTONOSUPPORT, f"{NO_L2TP}; drop --kernel to use the pyl2tp "
                        "daemon")
    return KernelRequests()
