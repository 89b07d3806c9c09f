"""The kernel's L2TP netlink commands as functions over JSON-shaped attribute dicts.

Request and reply attributes are the kernel's ``L2TP_ATTR_*`` names lowercased, validated the
way ``l2tp_netlink.c`` validates them and answered with the same errnos, so that a script
written against the kernel's API reads naturally here. Where pyl2tp is stricter than the kernel
it says so in the message (zero ids, unknown protocol versions, v2 over IP).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from pyl2tp.dataplane.model import Session, Tunnel
from pyl2tp.dataplane.registry import Registry
from pyl2tp.errors import L2tpError, einval
from pyl2tp.wire.constants import EncapType, L2SpecType, PwType

Attrs = dict[str, Any]

IFNAMSIZ = 16
PW_TYPE_MAX = 12  # __L2TP_PWTYPE_MAX
IMPLEMENTED_PW = (PwType.ETH, PwType.PPP)


def _int(attrs: Attrs, name: str, bits: int, *, required: bool = False,
         default: int | None = None) -> int | None:
    v = attrs.get(name)
    if v is None:
        if required:
            raise einval(f"attribute {name} is required")
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise einval(f"attribute {name} must be an integer")
    if not 0 <= v < (1 << bits):
        raise einval(f"attribute {name} out of range for a {bits}-bit value")
    return v


def _bool(attrs: Attrs, name: str, default: bool = False) -> bool:
    v = attrs.get(name)
    if v is None:
        return default
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise einval(f"attribute {name} must be a boolean")


def _addr(attrs: Attrs, name: str, version: int) -> str | None:
    v = attrs.get(name)
    if v is None:
        return None
    try:
        ip = ipaddress.ip_address(v)
    except (ValueError, TypeError):
        raise einval(f"attribute {name} is not an IPv{version} address: {v!r}") from None
    if ip.version != version:
        raise einval(f"attribute {name} is not an IPv{version} address: {v!r}")
    return str(ip)


def _cookie(attrs: Attrs, name: str) -> bytes:
    v = attrs.get(name)
    if v is None:
        return b""
    try:
        raw = bytes.fromhex(v) if isinstance(v, str) else bytes(v)
    except (ValueError, TypeError):
        raise einval(f"attribute {name} must be a hex string") from None
    if len(raw) > 8:
        raise einval(f"attribute {name} longer than 8 octets")
    return raw


# -- replies --------------------------------------------------------------------------------


def tunnel_attrs(t: Tunnel) -> Attrs:
    """A tunnel as the kernel reports it (``l2tp_nl_tunnel_send``), in the same order."""
    out: Attrs = {
        "proto_version": t.version,
        "conn_id": t.tunnel_id,
        "peer_conn_id": t.peer_tunnel_id,
        "debug": 0,
        "encap_type": int(t.encap),
        "stats": t.stats.as_dict(),
    }
    udp = t.encap == EncapType.UDP
    if t.family == socket.AF_INET:
        if udp:
            out["udp_csum"] = t.udp_csum
            out["udp_sport"] = t.udp_sport
            out["udp_dport"] = t.udp_dport
        out["ip_saddr"] = t.local
        out["ip_daddr"] = t.remote
    else:
        if udp:
            if t.udp_zero_csum6_tx:
                out["udp_zero_csum6_tx"] = True
            if t.udp_zero_csum6_rx:
                out["udp_zero_csum6_rx"] = True
            out["udp_sport"] = t.udp_sport
            out["udp_dport"] = t.udp_dport
        out["ip6_saddr"] = t.local
        out["ip6_daddr"] = t.remote
    return out


def session_attrs(s: Session) -> Attrs:
    """A session as the kernel reports it (``l2tp_nl_session_send``), plus ``l2spec_type``,
    which the kernel accepts but never reports."""
    out: Attrs = {
        "conn_id": s.tunnel.tunnel_id,
        "session_id": s.session_id,
        "peer_conn_id": s.tunnel.peer_tunnel_id,
        "peer_session_id": s.peer_session_id,
        "debug": 0,
        "pw_type": s.pw_type,
    }
    if s.ifname:
        out["ifname"] = s.ifname
    if s.cookie:
        out["cookie"] = s.cookie.hex()
    if s.peer_cookie:
        out["peer_cookie"] = s.peer_cookie.hex()
    out["recv_seq"] = s.recv_seq
    out["send_seq"] = s.send_seq
    out["lns_mode"] = s.lns_mode
    if s.reorder_timeout:
        out["recv_timeout"] = round(s.reorder_timeout * 1000)
    out["l2spec_type"] = s.l2spec_type
    out["stats"] = s.stats.as_dict()
    return out


# -- tunnel commands ------------------------------------------------------------------------


def tunnel_create(reg: Registry, attrs: Attrs) -> Attrs:
    conn_id = _int(attrs, "conn_id", 32, required=True)
    peer_conn_id = _int(attrs, "peer_conn_id", 32, required=True)
    version = _int(attrs, "proto_version", 8, required=True)
    encap_raw = _int(attrs, "encap_type", 16, required=True)
    assert conn_id is not None and peer_conn_id is not None and version is not None
    if encap_raw not in (EncapType.UDP, EncapType.IP):
        raise einval(f"unknown encap_type {encap_raw}")
    encap = EncapType(encap_raw)
    if version not in (2, 3):
        raise L2tpError(errno.EPROTONOSUPPORT, f"L2TP version {version} is not supported")
    if version == 2 and encap != EncapType.UDP:
        raise L2tpError(errno.EPROTONOSUPPORT, "L2TPv2 runs over UDP only")
    if conn_id == 0 or peer_conn_id == 0:
        raise einval("tunnel ids must not be zero")
    if version == 2 and (conn_id > 0xFFFF or peer_conn_id > 0xFFFF):
        raise einval("L2TPv2 tunnel ids are 16-bit")
    if "fd" in attrs:
        raise L2tpError(errno.EOPNOTSUPP, "the fd attribute has no meaning outside the kernel; "
                        "managed tunnels are created by pyl2tp's control plane")
    sport = _int(attrs, "udp_sport", 16, default=0) or 0
    dport = _int(attrs, "udp_dport", 16, default=0) or 0
    saddr6, daddr6 = _addr(attrs, "ip6_saddr", 6), _addr(attrs, "ip6_daddr", 6)
    saddr4, daddr4 = _addr(attrs, "ip_saddr", 4), _addr(attrs, "ip_daddr", 4)
    if saddr6 and daddr6:
        family, local, remote = socket.AF_INET6, saddr6, daddr6
    elif saddr4 and daddr4:
        family, local, remote = socket.AF_INET, saddr4, daddr4
    else:
        raise einval("local and remote addresses of one family are required")
    if conn_id in reg.tunnels:
        raise L2tpError(errno.EEXIST, f"tunnel {conn_id} already exists")
    tunnel = Tunnel(
        conn_id, peer_conn_id, version, encap, family=family, local=local, remote=remote,
        udp_sport=sport if encap == EncapType.UDP else 0,
        udp_dport=dport if encap == EncapType.UDP else 0,
        udp_csum=_bool(attrs, "udp_csum"),
        udp_zero_csum6_tx=_bool(attrs, "udp_zero_csum6_tx"),
        udp_zero_csum6_rx=_bool(attrs, "udp_zero_csum6_rx"),
    )
    reg.add_tunnel(tunnel)
    return tunnel_attrs(tunnel)


def _tunnel(reg: Registry, attrs: Attrs) -> Tunnel:
    conn_id = _int(attrs, "conn_id", 32, required=True)
    assert conn_id is not None
    return reg.get_tunnel(conn_id)


def tunnel_delete(reg: Registry, attrs: Attrs) -> Attrs:
    tunnel = _tunnel(reg, attrs)
    reply = tunnel_attrs(tunnel)
    reg.delete_tunnel(tunnel)
    return reply


def tunnel_modify(reg: Registry, attrs: Attrs) -> Attrs:
    """Like the kernel, nothing of a tunnel is modifiable (debug is accepted and ignored)."""
    tunnel = _tunnel(reg, attrs)
    reg.modified(tunnel)
    return tunnel_attrs(tunnel)


def tunnel_get(reg: Registry, attrs: Attrs) -> Attrs:
    return tunnel_attrs(_tunnel(reg, attrs))


def _refresh(reg: Registry) -> None:
    """A kernel backend reads every counter back with one dump before a whole dump is
    answered, rather than with one request per object."""
    refresh = getattr(reg.backend, "refresh_stats", None)
    if refresh is not None:
        refresh()


def tunnel_dump(reg: Registry, attrs: Attrs) -> list[Attrs]:
    _refresh(reg)
    return [tunnel_attrs(t) for t in reg.sorted_tunnels()]


# -- session commands -----------------------------------------------------------------------


def session_create(reg: Registry, attrs: Attrs) -> Attrs:
    tunnel = _tunnel(reg, attrs)
    sid = _int(attrs, "session_id", 32, required=True)
    psid = _int(attrs, "peer_session_id", 32, required=True)
    pw_type = _int(attrs, "pw_type", 16, required=True)
    assert sid is not None and psid is not None and pw_type is not None
    if pw_type >= PW_TYPE_MAX:
        raise einval(f"pw_type {pw_type} out of range")
    if tunnel.version == 2 and pw_type != PwType.PPP:
        raise L2tpError(errno.EPROTONOSUPPORT, "L2TPv2 sessions carry PPP only (pw_type 7)")
    if sid == 0 or psid == 0:
        raise einval("session ids must not be zero")
    if tunnel.version == 2 and (sid > 0xFFFF or psid > 0xFFFF):
        raise einval("L2TPv2 session ids are 16-bit")
    l2spec = L2SpecType.NONE
    cookie = peer_cookie = b""
    ifname = ""
    if tunnel.version == 3:
        raw = _int(attrs, "l2spec_type", 8, default=L2SpecType.DEFAULT)
        if raw not in (L2SpecType.NONE, L2SpecType.DEFAULT):
            raise einval(f"l2spec_type {raw} is not supported (none=0, default=1)")
        l2spec = L2SpecType(raw)
        cookie, peer_cookie = _cookie(attrs, "cookie"), _cookie(attrs, "peer_cookie")
        ifname = attrs.get("ifname") or ""
        if not isinstance(ifname, str) or len(ifname) >= IFNAMSIZ or "/" in ifname or (
                ifname and (ifname in (".", "..") or any(c.isspace() for c in ifname))):
            raise einval(f"ifname {ifname!r} is not a valid interface name")
    if pw_type not in IMPLEMENTED_PW:
        raise L2tpError(errno.EPROTONOSUPPORT, f"pseudowire type {pw_type} is not implemented "
                        "(Ethernet=5 and PPP=7 are)")
    timeout_ms = _int(attrs, "recv_timeout", 64, default=0) or 0
    session = Session(
        tunnel, sid, psid, pw_type, cookie=cookie, peer_cookie=peer_cookie, l2spec_type=l2spec,
        recv_seq=_bool(attrs, "recv_seq"), send_seq=_bool(attrs, "send_seq"),
        lns_mode=_bool(attrs, "lns_mode"), reorder_timeout=timeout_ms / 1000.0, ifname=ifname,
    )
    reg.add_session(session)
    return session_attrs(session)


def _session(reg: Registry, attrs: Attrs) -> Session:
    ifname = attrs.get("ifname")
    if ifname:
        return reg.find_session_by_ifname(str(ifname))
    conn_id = _int(attrs, "conn_id", 32)
    sid = _int(attrs, "session_id", 32)
    if conn_id is None or sid is None:
        raise einval("conn_id and session_id (or ifname) are required")
    return reg.get_session(reg.get_tunnel(conn_id), sid)


def session_delete(reg: Registry, attrs: Attrs) -> Attrs:
    session = _session(reg, attrs)
    reply = session_attrs(session)
    reg.delete_session(session)
    return reply


def session_modify(reg: Registry, attrs: Attrs) -> Attrs:
    session = _session(reg, attrs)
    # Validate everything before changing anything.
    recv_seq = _bool(attrs, "recv_seq", session.recv_seq)
    send_seq = _bool(attrs, "send_seq", session.send_seq)
    lns_mode = _bool(attrs, "lns_mode", session.lns_mode)
    timeout = _int(attrs, "recv_timeout", 64)
    session.recv_seq, session.send_seq, session.lns_mode = recv_seq, send_seq, lns_mode
    if timeout is not None:
        session.reorder_timeout = timeout / 1000.0
    reg.modified(session)
    return session_attrs(session)


def session_get(reg: Registry, attrs: Attrs) -> Attrs:
    return session_attrs(_session(reg, attrs))


def session_dump(reg: Registry, attrs: Attrs) -> list[Attrs]:
    _refresh(reg)
    return [session_attrs(s) for s in reg.sessions()]


Handler = Callable[[Registry, Attrs], Any]
COMMANDS: dict[str, Handler] = {
    "tunnel_create": tunnel_create,
    "tunnel_delete": tunnel_delete,
    "tunnel_modify": tunnel_modify,
    "tunnel_get": tunnel_get,
    "session_create": session_create,
    "session_delete": session_delete,
    "session_modify": session_modify,
    "session_get": session_get,
}
DUMPS: dict[str, Handler] = {"tunnel_get": tunnel_dump, "session_get": session_dump}


def execute(reg: Registry, request: Attrs) -> Any:
    """Run one request ``{"cmd": ..., "attrs": {...}, "dump": bool}``; raises L2tpError."""
    cmd = request.get("cmd")
    attrs = request.get("attrs") or {}
    if not isinstance(attrs, dict):
        raise einval("attrs must be an object")
    if request.get("dump"):
        handler = DUMPS.get(str(cmd))
        if handler is None:
            raise L2tpError(errno.EOPNOTSUPP, f"{cmd} cannot be dumped")
        return handler(reg, attrs)
    handler = COMMANDS.get(str(cmd))
    if handler is None:
        raise L2tpError(errno.EOPNOTSUPP, f"unknown command {cmd!r}")
    return handler(reg, attrs)
