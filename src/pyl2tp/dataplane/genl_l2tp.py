"""The kernel's ``l2tp`` generic-netlink family: a small codec and a blocking client.

pyl2tp's management API already speaks the kernel's netlink attributes as JSON (lowercased
``L2TP_ATTR_*`` names, see :mod:`pyl2tp.mgmt.commands`); this module is the same vocabulary on
the real wire, so the ``linux`` data-plane backend can hand tunnels and sessions to
``net/l2tp`` and read them back in exactly the shape the management layer and the ``ip l2tp``
formatter already consume.

Why a codec of our own rather than pyroute2's ``L2tp``: pyroute2 (0.9) swaps and inverts the
IPv6 checksum flags (``udp6_csum_rx`` sets ``UDP_ZERO_CSUM6_TX``), insists on addresses and
ports even for managed tunnels created from a file descriptor, lacks the newer statistics
(``RX_COOKIE_DISCARDS``, ``RX_INVALID``) and runs its own event loop inside ours. The family
has 35 attributes of five types; packing them with :mod:`struct` is less code than working
around all of that, and every byte is checkable in unit tests without a kernel.

Kernel quirks the encoder encodes on purpose (``net/l2tp/l2tp_netlink.c``):

* ``UDP_CSUM`` is read with ``nla_get_flag`` on create: its mere presence enables IPv4 UDP
  checksums, so it is sent (as u8 1, like iproute2) only when enabled, never as 0.
* ``UDP_ZERO_CSUM6_TX``/``_RX`` are flags: present means *zero* (no) checksums.
* ``IP_SADDR``/``IP_DADDR`` are ``in_addr`` in network order; ports are host order u16.
* ``RECV_TIMEOUT`` is ``NLA_MSECS``: a u64 of milliseconds.
* ``L2SPEC_TYPE``, ``COOKIE``, ``PEER_COOKIE`` and ``IFNAME`` only mean something to v3
  sessions; the kernel never reports ``L2SPEC_TYPE`` back.
* Dumps ignore every attribute (``show tunnel tunnel_id X`` lists all tunnels).
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pyl2tp.errors import L2tpError

__all__ = [
    "L2TP_MODULES",
    "NO_L2TP",
    "Attrs",
    "GenlSocket",
    "L2tpNetlink",
    "NetlinkMessage",
    "decode_session",
    "decode_tunnel",
    "genl_request",
    "kernel_has_l2tp",
    "parse_attrs",
    "parse_messages",
    "session_create_attrs",
    "session_key_attrs",
    "session_modify_attrs",
    "tunnel_create_attrs",
    "tunnel_id_attrs",
]

Attrs = dict[str, Any]

# -- netlink and generic netlink ------------------------------------------------------------

NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x001
NLM_F_MULTI = 0x002
NLM_F_ACK = 0x004
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR replies: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
CTRL_ATTR_MCAST_GROUPS = 7
CTRL_ATTR_MCAST_GRP_NAME = 1
CTRL_ATTR_MCAST_GRP_ID = 2

NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

_NLMSGHDR = struct.Struct("=IHHII")
_GENLMSGHDR = struct.Struct("=BBH")
_NLATTR = struct.Struct("=HH")

# -- include/uapi/linux/l2tp.h --------------------------------------------------------------

L2TP_GENL_NAME = "l2tp"
L2TP_GENL_VERSION = 1
L2TP_GENL_MCGROUP = "l2tp"

L2TP_CMD_NOOP = 0
L2TP_CMD_TUNNEL_CREATE = 1
L2TP_CMD_TUNNEL_DELETE = 2
L2TP_CMD_TUNNEL_MODIFY = 3
L2TP_CMD_TUNNEL_GET = 4
L2TP_CMD_SESSION_CREATE = 5
L2TP_CMD_SESSION_DELETE = 6
L2TP_CMD_SESSION_MODIFY = 7
L2TP_CMD_SESSION_GET = 8

L2TP_ATTR_PW_TYPE = 1
L2TP_ATTR_ENCAP_TYPE = 2
L2TP_ATTR_OFFSET = 3
L2TP_ATTR_DATA_SEQ = 4
L2TP_ATTR_L2SPEC_TYPE = 5
L2TP_ATTR_L2SPEC_LEN = 6
L2TP_ATTR_PROTO_VERSION = 7
L2TP_ATTR_IFNAME = 8
L2TP_ATTR_CONN_ID = 9
L2TP_ATTR_PEER_CONN_ID = 10
L2TP_ATTR_SESSION_ID = 11
L2TP_ATTR_PEER_SESSION_ID = 12
L2TP_ATTR_UDP_CSUM = 13
L2TP_ATTR_VLAN_ID = 14
L2TP_ATTR_COOKIE = 15
L2TP_ATTR_PEER_COOKIE = 16
L2TP_ATTR_DEBUG = 17
L2TP_ATTR_RECV_SEQ = 18
L2TP_ATTR_SEND_SEQ = 19
L2TP_ATTR_LNS_MODE = 20
L2TP_ATTR_USING_IPSEC = 21
L2TP_ATTR_RECV_TIMEOUT = 22
L2TP_ATTR_FD = 23
L2TP_ATTR_IP_SADDR = 24
L2TP_ATTR_IP_DADDR = 25
L2TP_ATTR_UDP_SPORT = 26
L2TP_ATTR_UDP_DPORT = 27
L2TP_ATTR_MTU = 28
L2TP_ATTR_MRU = 29
L2TP_ATTR_STATS = 30
L2TP_ATTR_IP6_SADDR = 31
L2TP_ATTR_IP6_DADDR = 32
L2TP_ATTR_UDP_ZERO_CSUM6_TX = 33
L2TP_ATTR_UDP_ZERO_CSUM6_RX = 34
L2TP_ATTR_PAD = 35

L2TP_ATTR_TX_PACKETS = 1
L2TP_ATTR_TX_BYTES = 2
L2TP_ATTR_TX_ERRORS = 3
L2TP_ATTR_RX_PACKETS = 4
L2TP_ATTR_RX_BYTES = 5
L2TP_ATTR_RX_SEQ_DISCARDS = 6
L2TP_ATTR_RX_OOS_PACKETS = 7
L2TP_ATTR_RX_ERRORS = 8
L2TP_ATTR_STATS_PAD = 9
L2TP_ATTR_RX_COOKIE_DISCARDS = 10
L2TP_ATTR_RX_INVALID = 11

#: Nested statistics attribute -> pyl2tp's counter name (``model.STATS_FIELDS``).
STATS_NAMES = {
    L2TP_ATTR_TX_PACKETS: "tx_packets",
    L2TP_ATTR_TX_BYTES: "tx_bytes",
    L2TP_ATTR_TX_ERRORS: "tx_errors",
    L2TP_ATTR_RX_PACKETS: "rx_packets",
    L2TP_ATTR_RX_BYTES: "rx_bytes",
    L2TP_ATTR_RX_SEQ_DISCARDS: "rx_seq_discards",
    L2TP_ATTR_RX_OOS_PACKETS: "rx_oos_packets",
    L2TP_ATTR_RX_ERRORS: "rx_errors",
    L2TP_ATTR_RX_COOKIE_DISCARDS: "rx_cookie_discards",
    L2TP_ATTR_RX_INVALID: "rx_invalid",
}
# The order of pyl2tp's Stats (and of the kernel's emission), so kernel and userspace replies
# compare key for key.
_STATS_ORDER = ("tx_packets", "tx_bytes", "tx_errors", "rx_packets", "rx_bytes",
                "rx_seq_discards", "rx_cookie_discards", "rx_oos_packets", "rx_errors",
                "rx_invalid")

#: The modules behind the whole feature set (netlink, Ethernet and PPP pseudowires, IP encap).
L2TP_MODULES = ("l2tp_netlink", "l2tp_eth", "l2tp_ip", "l2tp_ip6", "l2tp_ppp")
NO_L2TP = f"the kernel has no L2TP (modprobe {' '.join(L2TP_MODULES)} failed)"
"""What a user is told when :func:`kernel_has_l2tp` is false."""

# Value kinds for decoding: how each attribute's payload reads.
_U8, _U16, _U32, _U64, _STR, _FLAG, _BIN, _IP4, _IP6, _NEST = range(10)
_KINDS: dict[int, tuple[str, int]] = {
    L2TP_ATTR_PW_TYPE: ("pw_type", _U16),
    L2TP_ATTR_ENCAP_TYPE: ("encap_type", _U16),
    L2TP_ATTR_OFFSET: ("offset", _U16),
    L2TP_ATTR_DATA_SEQ: ("data_seq", _U8),
    L2TP_ATTR_L2SPEC_TYPE: ("l2spec_type", _U8),
    L2TP_ATTR_L2SPEC_LEN: ("l2spec_len", _U8),
    L2TP_ATTR_PROTO_VERSION: ("proto_version", _U8),
    L2TP_ATTR_IFNAME: ("ifname", _STR),
    L2TP_ATTR_CONN_ID: ("conn_id", _U32),
    L2TP_ATTR_PEER_CONN_ID: ("peer_conn_id", _U32),
    L2TP_ATTR_SESSION_ID: ("session_id", _U32),
    L2TP_ATTR_PEER_SESSION_ID: ("peer_session_id", _U32),
    L2TP_ATTR_UDP_CSUM: ("udp_csum", _U8),
    L2TP_ATTR_VLAN_ID: ("vlan_id", _U16),
    L2TP_ATTR_COOKIE: ("cookie", _BIN),
    L2TP_ATTR_PEER_COOKIE: ("peer_cookie", _BIN),
    L2TP_ATTR_DEBUG: ("debug", _U32),
    L2TP_ATTR_RECV_SEQ: ("recv_seq", _U8),
    L2TP_ATTR_SEND_SEQ: ("send_seq", _U8),
    L2TP_ATTR_LNS_MODE: ("lns_mode", _U8),
    L2TP_ATTR_USING_IPSEC: ("using_ipsec", _U8),
    L2TP_ATTR_RECV_TIMEOUT: ("recv_timeout", _U64),
    L2TP_ATTR_FD: ("fd", _U32),
    L2TP_ATTR_IP_SADDR: ("ip_saddr", _IP4),
    L2TP_ATTR_IP_DADDR: ("ip_daddr", _IP4),
    L2TP_ATTR_UDP_SPORT: ("udp_sport", _U16),
    L2TP_ATTR_UDP_DPORT: ("udp_dport", _U16),
    L2TP_ATTR_MTU: ("mtu", _U16),
    L2TP_ATTR_MRU: ("mru", _U16),
    L2TP_ATTR_STATS: ("stats", _NEST),
    L2TP_ATTR_IP6_SADDR: ("ip6_saddr", _IP6),
    L2TP_ATTR_IP6_DADDR: ("ip6_daddr", _IP6),
    L2TP_ATTR_UDP_ZERO_CSUM6_TX: ("udp_zero_csum6_tx", _FLAG),
    L2TP_ATTR_UDP_ZERO_CSUM6_RX: ("udp_zero_csum6_rx", _FLAG),
}
# Attributes the management API reports as booleans (the kernel sends u8 0/1).
_INT_FORMATS = {_U8: struct.Struct("=B"), _U16: struct.Struct("=H"), _U32: struct.Struct("=I"),
                _U64: struct.Struct("=Q")}
_BOOLS = frozenset({"udp_csum", "recv_seq", "send_seq", "lns_mode", "using_ipsec"})


# -- encoding --------------------------------------------------------------------------------


def nla(atype: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 octets."""
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, atype) + payload + b"\0" * (-length % 4)


def _u8(atype: int, value: int) -> bytes:
    return nla(atype, struct.pack("=B", value))


def _u16(atype: int, value: int) -> bytes:
    return nla(atype, struct.pack("=H", value))


def _u32(atype: int, value: int) -> bytes:
    return nla(atype, struct.pack("=I", value))


def _u64(atype: int, value: int) -> bytes:
    return nla(atype, struct.pack("=Q", value))


def _flag(atype: int) -> bytes:
    return nla(atype, b"")


def _str(atype: int, value: str) -> bytes:
    return nla(atype, value.encode() + b"\0")


def _family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def tunnel_create_attrs(
    tunnel_id: int,
    peer_tunnel_id: int,
    proto_version: int,
    encap_type: int,
    *,
    fd: int | None = None,
    local: str | None = None,
    remote: str | None = None,
    udp_sport: int = 0,
    udp_dport: int = 0,
    udp_csum: bool = False,
    udp_zero_csum6_tx: bool = False,
    udp_zero_csum6_rx: bool = False,
) -> bytes:
    """``L2TP_CMD_TUNNEL_CREATE`` attributes.

    With ``fd`` the tunnel is *managed*: the kernel takes over that (bound and connected)
    socket and still passes control messages up to whoever reads it; addresses, ports and
    checksums are the socket's, so none are sent. Without ``fd`` the kernel opens its own
    socket from ``local``/``remote`` and, for UDP (``encap_type`` 0), the ports, exactly as
    ``ip l2tp add tunnel`` asks it to.
    """
    out = [
        _u32(L2TP_ATTR_CONN_ID, tunnel_id),
        _u32(L2TP_ATTR_PEER_CONN_ID, peer_tunnel_id),
        _u8(L2TP_ATTR_PROTO_VERSION, proto_version),
        _u16(L2TP_ATTR_ENCAP_TYPE, encap_type),
    ]
    if fd is not None:
        out.append(_u32(L2TP_ATTR_FD, fd))
        return b"".join(out)
    if local is None or remote is None:
        raise L2tpError(errno.EINVAL, "an unmanaged tunnel needs local and remote addresses")
    for addr, v4, v6 in ((local, L2TP_ATTR_IP_SADDR, L2TP_ATTR_IP6_SADDR),
                         (remote, L2TP_ATTR_IP_DADDR, L2TP_ATTR_IP6_DADDR)):
        family = _family_of(addr)
        try:
            packed = socket.inet_pton(family, addr)
        except OSError:
            raise L2tpError(errno.EINVAL, f"not an IP address: {addr!r}") from None
        out.append(nla(v6 if family == socket.AF_INET6 else v4, packed))
    if encap_type == 0:  # UDP
        out.append(_u16(L2TP_ATTR_UDP_SPORT, udp_sport))
        out.append(_u16(L2TP_ATTR_UDP_DPORT, udp_dport))
        if udp_csum:
            out.append(_u8(L2TP_ATTR_UDP_CSUM, 1))
        if udp_zero_csum6_tx:
            out.append(_flag(L2TP_ATTR_UDP_ZERO_CSUM6_TX))
        if udp_zero_csum6_rx:
            out.append(_flag(L2TP_ATTR_UDP_ZERO_CSUM6_RX))
    return b"".join(out)


def tunnel_id_attrs(tunnel_id: int) -> bytes:
    """The key of ``TUNNEL_DELETE``, ``TUNNEL_MODIFY`` and ``TUNNEL_GET``."""
    return _u32(L2TP_ATTR_CONN_ID, tunnel_id)


def _seq_attrs(recv_seq: bool | None, send_seq: bool | None, lns_mode: bool | None,
               recv_timeout: int | None) -> list[bytes]:
    out = []
    if recv_seq is not None:
        out.append(_u8(L2TP_ATTR_RECV_SEQ, int(recv_seq)))
    if send_seq is not None:
        out.append(_u8(L2TP_ATTR_SEND_SEQ, int(send_seq)))
    if lns_mode is not None:
        out.append(_u8(L2TP_ATTR_LNS_MODE, int(lns_mode)))
    if recv_timeout is not None:
        out.append(_u64(L2TP_ATTR_RECV_TIMEOUT, recv_timeout))
    return out


def session_create_attrs(
    tunnel_id: int,
    session_id: int,
    peer_session_id: int,
    pw_type: int,
    *,
    peer_tunnel_id: int | None = None,
    l2spec_type: int | None = None,
    cookie: bytes = b"",
    peer_cookie: bytes = b"",
    recv_seq: bool | None = None,
    send_seq: bool | None = None,
    lns_mode: bool | None = None,
    recv_timeout: int | None = None,
    ifname: str | None = None,
) -> bytes:
    """``L2TP_CMD_SESSION_CREATE`` attributes; ``recv_timeout`` in milliseconds.

    ``cookie`` is what this end puts in the packets it sends, ``peer_cookie`` what received
    packets must carry (the kernel's naming). None leaves an attribute out, so the kernel's
    default applies (for ``l2spec_type`` of a v3 session that is DEFAULT, not NONE).
    """
    out = [
        _u32(L2TP_ATTR_CONN_ID, tunnel_id),
        _u32(L2TP_ATTR_SESSION_ID, session_id),
        _u32(L2TP_ATTR_PEER_SESSION_ID, peer_session_id),
        _u16(L2TP_ATTR_PW_TYPE, pw_type),
    ]
    if peer_tunnel_id is not None:
        out.append(_u32(L2TP_ATTR_PEER_CONN_ID, peer_tunnel_id))
    if l2spec_type is not None:
        out.append(_u8(L2TP_ATTR_L2SPEC_TYPE, l2spec_type))
    for atype, value in ((L2TP_ATTR_COOKIE, cookie), (L2TP_ATTR_PEER_COOKIE, peer_cookie)):
        if len(value) > 8:
            raise L2tpError(errno.EINVAL, "cookies are at most 8 octets")
        if value:
            out.append(nla(atype, bytes(value)))
    out += _seq_attrs(recv_seq, send_seq, lns_mode, recv_timeout)
    if ifname:
        out.append(_str(L2TP_ATTR_IFNAME, ifname))
    return b"".join(out)


def session_key_attrs(tunnel_id: int | None = None, session_id: int | None = None,
                      ifname: str | None = None) -> bytes:
    """The key of ``SESSION_DELETE``/``_GET``: tunnel and session id, or an interface name
    (which the kernel looks up first when present)."""
    out = []
    if tunnel_id is not None:
        out.append(_u32(L2TP_ATTR_CONN_ID, tunnel_id))
    if session_id is not None:
        out.append(_u32(L2TP_ATTR_SESSION_ID, session_id))
    if ifname:
        out.append(_str(L2TP_ATTR_IFNAME, ifname))
    return b"".join(out)


def session_modify_attrs(
    tunnel_id: int,
    session_id: int,
    *,
    recv_seq: bool | None = None,
    send_seq: bool | None = None,
    lns_mode: bool | None = None,
    recv_timeout: int | None = None,
) -> bytes:
    """``L2TP_CMD_SESSION_MODIFY``: the four things the kernel lets change (the rest is
    fixed at creation); ``recv_timeout`` in milliseconds."""
    return session_key_attrs(tunnel_id, session_id) + b"".join(
        _seq_attrs(recv_seq, send_seq, lns_mode, recv_timeout))


def genl_request(family_id: int, cmd: int, attrs: bytes, *, seq: int, flags: int,
                 version: int = L2TP_GENL_VERSION, pid: int = 0) -> bytes:
    """One netlink message: ``nlmsghdr`` + ``genlmsghdr`` + attributes."""
    body = _GENLMSGHDR.pack(cmd, version, 0) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), family_id, flags, seq, pid) + body


# -- decoding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetlinkMessage:
    """One message of a netlink datagram: header fields and the payload after the header."""

    type: int
    flags: int
    seq: int
    pid: int
    payload: bytes


def parse_messages(buf: bytes) -> list[NetlinkMessage]:
    """Split a datagram into its messages; a truncated tail is dropped."""
    out = []
    off = 0
    while off + _NLMSGHDR.size <= len(buf):
        length, mtype, flags, seq, pid = _NLMSGHDR.unpack_from(buf, off)
        if length < _NLMSGHDR.size or off + length > len(buf):
            break
        out.append(NetlinkMessage(mtype, flags, seq, pid, buf[off + _NLMSGHDR.size:off + length]))
        off += (length + 3) & ~3
    return out


def parse_attrs(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """``(type, payload)`` of each attribute in order, nested/byte-order bits masked off."""
    off = 0
    while off + _NLATTR.size <= len(buf):
        length, atype = _NLATTR.unpack_from(buf, off)
        if length < _NLATTR.size or off + length > len(buf):
            return
        yield atype & NLA_TYPE_MASK, buf[off + _NLATTR.size:off + length]
        off += (length + 3) & ~3


def _value(kind: int, data: bytes) -> Any:
    fmt = _INT_FORMATS.get(kind)
    if fmt is not None:
        if len(data) < fmt.size:
            raise ValueError(f"attribute too short ({len(data)} < {fmt.size})")
        return fmt.unpack_from(data)[0]
    if kind == _STR:
        return data.split(b"\0", 1)[0].decode(errors="replace")
    if kind == _FLAG:
        return True
    if kind == _IP4:
        return socket.inet_ntop(socket.AF_INET, data[:4])
    if kind == _IP6:
        return socket.inet_ntop(socket.AF_INET6, data[:16])
    if kind == _BIN:
        return data.hex()
    raise ValueError(kind)


def decode_stats(buf: bytes) -> dict[str, int]:
    """The nested ``L2TP_ATTR_STATS`` as pyl2tp's counter dict; counters the running kernel
    does not report (``rx_invalid`` before 5.13) read 0."""
    found = {STATS_NAMES[t]: _value(_U64, d) for t, d in parse_attrs(buf) if t in STATS_NAMES}
    return {name: found.get(name, 0) for name in _STATS_ORDER}


def decode_l2tp(payload: bytes) -> tuple[int, Attrs]:
    """``(cmd, attrs)`` of one l2tp family message (payload after ``nlmsghdr``), attributes
    named and ordered as the kernel sent them, in the management API's shapes: booleans for
    the u8 switches, hex for cookies, dotted/colon text for addresses."""
    cmd = payload[0] if payload else 0
    out: Attrs = {}
    for atype, data in parse_attrs(payload[_GENLMSGHDR.size:]):
        if atype in (0, L2TP_ATTR_PAD):
            continue
        name, kind = _KINDS.get(atype, (f"attr_{atype}", _BIN))
        if kind == _NEST:
            out[name] = decode_stats(data)
            continue
        value = _value(kind, data)
        out[name] = bool(value) if name in _BOOLS else value
    return cmd, out


def decode_tunnel(payload: bytes) -> Attrs:
    """A tunnel message as :func:`pyl2tp.mgmt.commands.tunnel_attrs` shapes it."""
    return decode_l2tp(payload)[1]


def decode_session(payload: bytes) -> Attrs:
    """A session message as :func:`pyl2tp.mgmt.commands.session_attrs` shapes it (without
    ``l2spec_type``, which the kernel never reports)."""
    return decode_l2tp(payload)[1]


# -- the client ------------------------------------------------------------------------------


class GenlSocket:
    """A blocking generic-netlink socket: one request at a time, replies matched by sequence.

    Blocking is deliberate: every L2TP command completes in the kernel before its ACK is
    sent (microseconds), so a coroutine interface would add a task per command for nothing;
    the timeout only guards against a kernel that never answers.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass  # older kernels: plain errnos, full request echoed
        self.sock.bind((0, 0))
        self.sock.settimeout(timeout)
        self.pid: int = self.sock.getsockname()[0]
        self._seq = itertools.count(int(time.time()) & 0xFFFFFF)

    def close(self) -> None:
        self.sock.close()

    def request(self, family_id: int, cmd: int, attrs: bytes = b"", *, dump: bool = False,
                version: int = L2TP_GENL_VERSION) -> list[bytes]:
        """Send one request; return the payloads of the replies (empty for a bare ACK).

        Raises :class:`L2tpError` with the kernel's errno (and its extended-ack message
        when it gave one).
        """
        seq = next(self._seq) & 0xFFFFFFFF
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        try:
            self.sock.send(genl_request(family_id, cmd, attrs, seq=seq, flags=flags,
                                        version=version))
        except OSError as exc:
            raise L2tpError(exc.errno or errno.EIO, f"netlink send: {exc.strerror}") from None
        replies: list[bytes] = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                raise L2tpError(errno.ETIMEDOUT, "no answer from the kernel's netlink") from None
            except OSError as exc:
                raise L2tpError(exc.errno or errno.EIO, f"netlink recv: {exc.strerror}") from None
            for msg in parse_messages(data):
                if msg.seq != seq or msg.pid not in (0, self.pid):
                    continue  # an answer to an earlier request that timed out
                if msg.type == NLMSG_ERROR:
                    code = struct.unpack_from("=i", msg.payload, 0)[0]
                    if code:
                        raise _nl_error(-code, msg)
                    return replies
                if msg.type == NLMSG_DONE:
                    code = struct.unpack_from("=i", msg.payload, 0)[0] if msg.payload else 0
                    if code:
                        raise _nl_error(-code, msg)
                    return replies
                replies.append(msg.payload)

    def family(self, name: str) -> tuple[int, dict[str, int]]:
        """A generic-netlink family's id and its multicast groups (name -> id)."""
        payloads = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                                _str(CTRL_ATTR_FAMILY_NAME, name), version=1)
        for payload in payloads:
            family_id = None
            groups: dict[str, int] = {}
            for atype, data in parse_attrs(payload[_GENLMSGHDR.size:]):
                if atype == CTRL_ATTR_FAMILY_ID:
                    family_id = _value(_U16, data)
                elif atype == CTRL_ATTR_MCAST_GROUPS:
                    for _idx, group in parse_attrs(data):
                        fields = dict(parse_attrs(group))
                        gname = fields.get(CTRL_ATTR_MCAST_GRP_NAME)
                        gid = fields.get(CTRL_ATTR_MCAST_GRP_ID)
                        if gname is not None and gid is not None:
                            groups[_value(_STR, gname)] = _value(_U32, gid)
            if family_id is not None:
                return family_id, groups
        raise L2tpError(errno.ENOENT, f"generic netlink family {name!r} not found")


def _nl_error(code: int, msg: NetlinkMessage) -> L2tpError:
    """The errno of an NLMSG_ERROR/DONE, with the extended-ack text when the kernel sent
    one (``NLM_F_ACK_TLVS``; the request is not echoed thanks to ``NETLINK_CAP_ACK``)."""
    text = ""
    if msg.flags & NLM_F_ACK_TLVS and msg.type == NLMSG_ERROR:
        # int error + the request's nlmsghdr (capped: header only) + TLVs
        echoed = struct.unpack_from("=I", msg.payload, 4)[0] if len(msg.payload) >= 8 else 16
        start = 4 + (16 if msg.flags & 0x100 else ((echoed + 3) & ~3))
        for atype, data in parse_attrs(msg.payload[start:]):
            if atype == NLMSGERR_ATTR_MSG:
                text = _value(_STR, data)
    return L2tpError(code, text or os.strerror(code))


class L2tpNetlink:
    """The kernel's L2TP commands as methods over the management API's attribute dicts.

    Create/modify/delete return nothing (the kernel only ACKs them); get and dump return the
    kernel's own replies decoded by :func:`decode_l2tp`, so what is shown is what the kernel
    holds, not what was asked for. The family id is resolved on first use, so constructing
    one never fails on a kernel without L2TP.
    """

    def __init__(self, sock: GenlSocket | None = None) -> None:
        self._sock = sock
        self._family: int | None = None
        self.groups: dict[str, int] = {}

    @property
    def sock(self) -> GenlSocket:
        if self._sock is None:
            self._sock = GenlSocket()
        return self._sock

    def family_id(self) -> int:
        if self._family is None:
            try:
                self._family, self.groups = self.sock.family(L2TP_GENL_NAME)
            except L2tpError as exc:
                raise L2tpError(errno.EPROTONOSUPPORT, "the kernel has no L2TP netlink "
                                f"family (modprobe l2tp_netlink): {exc.message}") from None
        return self._family

    def open_monitor(self) -> socket.socket:
        """A non-blocking socket joined to the family's ``l2tp`` multicast group: the
        kernel's notification of every create, modify and delete made through netlink
        (``ip l2tp`` included). Each carries the requester's port id as ``pid``, so a
        caller can tell its own requests (``self.sock.pid``) from everyone else's."""
        self.family_id()
        group = self.groups.get(L2TP_GENL_MCGROUP)
        if group is None:
            raise L2tpError(errno.ENOENT, "the l2tp family has no multicast group")
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        try:
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _do(self, cmd: int, attrs: bytes = b"", *, dump: bool = False) -> list[Attrs]:
        return [decode_l2tp(p)[1] for p in
                self.sock.request(self.family_id(), cmd, attrs, dump=dump)]

    # tunnels

    def tunnel_create(self, tunnel_id: int, peer_tunnel_id: int, proto_version: int,
                      encap_type: int, **kw: Any) -> None:
        """See :func:`tunnel_create_attrs` for the keywords."""
        self._do(L2TP_CMD_TUNNEL_CREATE,
                 tunnel_create_attrs(tunnel_id, peer_tunnel_id, proto_version, encap_type, **kw))

    def tunnel_delete(self, tunnel_id: int) -> None:
        self._do(L2TP_CMD_TUNNEL_DELETE, tunnel_id_attrs(tunnel_id))

    def tunnel_modify(self, tunnel_id: int) -> None:
        """Nothing of a tunnel is modifiable; the kernel still notifies its listeners."""
        self._do(L2TP_CMD_TUNNEL_MODIFY, tunnel_id_attrs(tunnel_id))

    def tunnel_get(self, tunnel_id: int) -> Attrs:
        replies = self._do(L2TP_CMD_TUNNEL_GET, tunnel_id_attrs(tunnel_id))
        if not replies:
            raise L2tpError(errno.ENODEV, f"no tunnel {tunnel_id}")
        return replies[0]

    def tunnel_dump(self) -> list[Attrs]:
        return self._do(L2TP_CMD_TUNNEL_GET, dump=True)

    # sessions

    def session_create(self, tunnel_id: int, session_id: int, peer_session_id: int,
                       pw_type: int, **kw: Any) -> None:
        """See :func:`session_create_attrs` for the keywords."""
        self._do(L2TP_CMD_SESSION_CREATE,
                 session_create_attrs(tunnel_id, session_id, peer_session_id, pw_type, **kw))

    def session_delete(self, tunnel_id: int | None = None, session_id: int | None = None, *,
                       ifname: str | None = None) -> None:
        self._do(L2TP_CMD_SESSION_DELETE, session_key_attrs(tunnel_id, session_id, ifname))

    def session_modify(self, tunnel_id: int, session_id: int, **kw: Any) -> None:
        """See :func:`session_modify_attrs` for the keywords."""
        self._do(L2TP_CMD_SESSION_MODIFY, session_modify_attrs(tunnel_id, session_id, **kw))

    def session_get(self, tunnel_id: int | None = None, session_id: int | None = None, *,
                    ifname: str | None = None) -> Attrs:
        replies = self._do(L2TP_CMD_SESSION_GET, session_key_attrs(tunnel_id, session_id, ifname))
        if not replies:
            raise L2tpError(errno.ENODEV, f"no session {tunnel_id}/{session_id}")
        return replies[0]

    def session_dump(self) -> list[Attrs]:
        return self._do(L2TP_CMD_SESSION_GET, dump=True)


def _family_resolvable() -> bool:
    try:
        sock = GenlSocket(timeout=2.0)
    except OSError:
        return False
    try:
        sock.family(L2TP_GENL_NAME)
        return True
    except L2tpError:
        return False
    finally:
        sock.close()


def kernel_has_l2tp(modules: Sequence[str] = L2TP_MODULES, *,
                    modprobe: Iterable[str] = ("modprobe", "-q")) -> bool:
    """Whether this network namespace's kernel can carry pyl2tp's data plane: the ``l2tp``
    generic-netlink family resolves, if need be after ``modprobe`` of ``modules``.

    This is how a daemon picks its backend automatically. It never raises: a missing
    ``modprobe``, a refused module (no root, a kernel built without L2TP) all mean False.
    """
    if _family_resolvable():
        return True
    for module in modules:
        try:
            subprocess.run([*modprobe, module], capture_output=True, timeout=15, check=False)
        except (OSError, subprocess.SubprocessError):
            break
    return _family_resolvable()
