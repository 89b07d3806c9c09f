"""The ``linux`` backend without a kernel L2TP: netlink encoding and decoding against the UAPI
constants (``include/uapi/linux/l2tp.h``, as recorded in the kernel notes), PPPoL2TP and
L2TP/IP socket-address layouts and ioctl numbers, the control sockets' BPF filter on real raw
sockets, and the backend's bookkeeping against a recording stand-in for the netlink client.

What needs the kernel's L2TP (every command really executed, PPP channels, pings) is in
``tests/interop/test_linux_backend.py``, in the VM.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pyl2tp.dataplane import genl_l2tp as g
from pyl2tp.dataplane import pppox
from pyl2tp.dataplane.linux import (
    KernelEthPseudowire,
    KernelStats,
    LinuxBackend,
    control_filter,
)
from pyl2tp.dataplane.model import STATS_FIELDS, Session, Tunnel
from pyl2tp.dataplane.registry import Registry
from pyl2tp.errors import L2tpError
from pyl2tp.mgmt import commands
from pyl2tp.wire.constants import EncapType, L2SpecType, PwType

little_endian = pytest.mark.skipif(sys.byteorder != "little",
                                   reason="golden bytes are x86's (netlink is host order)")


def attrs_of(buf: bytes) -> list[tuple[int, bytes]]:
    """Attributes in order; also checks that every one is 4-aligned and the run is whole."""
    out = []
    off = 0
    while off < len(buf):
        length, atype = struct.unpack_from("=HH", buf, off)
        assert length >= 4
        out.append((atype, buf[off + 4:off + length]))
        off += (length + 3) & ~3
    assert off == len(buf)
    return out


def u(data: bytes) -> int:
    return int.from_bytes(data, sys.byteorder)


# -- constants ---------------------------------------------------------------------------------


def test_command_and_attribute_numbers_are_the_uapi_ones() -> None:
    assert (g.L2TP_CMD_TUNNEL_CREATE, g.L2TP_CMD_TUNNEL_DELETE, g.L2TP_CMD_TUNNEL_MODIFY,
            g.L2TP_CMD_TUNNEL_GET, g.L2TP_CMD_SESSION_CREATE, g.L2TP_CMD_SESSION_DELETE,
            g.L2TP_CMD_SESSION_MODIFY, g.L2TP_CMD_SESSION_GET) == (1, 2, 3, 4, 5, 6, 7, 8)
    assert (g.L2TP_ATTR_PW_TYPE, g.L2TP_ATTR_ENCAP_TYPE, g.L2TP_ATTR_L2SPEC_TYPE,
            g.L2TP_ATTR_PROTO_VERSION, g.L2TP_ATTR_IFNAME, g.L2TP_ATTR_CONN_ID,
            g.L2TP_ATTR_PEER_CONN_ID, g.L2TP_ATTR_SESSION_ID, g.L2TP_ATTR_PEER_SESSION_ID,
            g.L2TP_ATTR_UDP_CSUM, g.L2TP_ATTR_COOKIE, g.L2TP_ATTR_PEER_COOKIE,
            g.L2TP_ATTR_RECV_SEQ, g.L2TP_ATTR_SEND_SEQ, g.L2TP_ATTR_LNS_MODE,
            g.L2TP_ATTR_RECV_TIMEOUT, g.L2TP_ATTR_FD, g.L2TP_ATTR_IP_SADDR, g.L2TP_ATTR_IP_DADDR,
            g.L2TP_ATTR_UDP_SPORT, g.L2TP_ATTR_UDP_DPORT, g.L2TP_ATTR_STATS,
            g.L2TP_ATTR_IP6_SADDR, g.L2TP_ATTR_IP6_DADDR, g.L2TP_ATTR_UDP_ZERO_CSUM6_TX,
            g.L2TP_ATTR_UDP_ZERO_CSUM6_RX, g.L2TP_ATTR_PAD) == (
        1, 2, 5, 7, 8, 9, 10, 11, 12, 13, 15, 16, 18, 19, 20, 22, 23, 24, 25, 26, 27, 30, 31,
        32, 33, 34, 35)
    assert g.STATS_NAMES == {1: "tx_packets", 2: "tx_bytes", 3: "tx_errors", 4: "rx_packets",
                             5: "rx_bytes", 6: "rx_seq_discards", 7: "rx_oos_packets",
                             8: "rx_errors", 10: "rx_cookie_discards", 11: "rx_invalid"}
    assert g.L2TP_GENL_NAME == "l2tp" and g.L2TP_GENL_VERSION == 1


def test_ppp_ioctl_numbers_match_the_headers() -> None:
    # <linux/ppp-ioctl.h> on x86_64, as compiled for the kernel notes.
    assert pppox.PPPIOCGCHAN == 0x80047437
    assert pppox.PPPIOCATTCHAN == 0x40047438
    assert pppox.PPPIOCCONNECT == 0x4004743A
    assert pppox.PPPIOCNEWUNIT == 0xC004743E
    assert pppox.PPPIOCGL2TPSTATS == 0x80487436
    assert pppox.PPPIOCBRIDGECHAN == 0x40047435
    assert pppox.PPPIOCUNBRIDGECHAN == 0x00007434
    assert pppox.PPPIOCDISCONN == 0x00007439
    assert pppox.PPPIOCSMRU == 0x40047452
    assert (pppox.AF_PPPOX, pppox.PX_PROTO_OL2TP, pppox.SOL_PPPOL2TP) == (24, 1, 273)


# -- TUNNEL_CREATE ------------------------------------------------------------------------------


@little_endian
def test_tunnel_create_ip_encap_golden_bytes() -> None:
    raw = g.tunnel_create_attrs(1, 2, 3, 1, local="10.0.0.1", remote="10.0.0.2")
    assert raw.hex() == (
        "08000900" "01000000"      # CONN_ID u32 1
        "08000a00" "02000000"      # PEER_CONN_ID u32 2
        "05000700" "03000000"      # PROTO_VERSION u8 3 (+3 pad)
        "06000200" "01000000"      # ENCAP_TYPE u16 IP (+2 pad)
        "08001800" "0a000001"      # IP_SADDR, network order
        "08001900" "0a000002"      # IP_DADDR
    )


def test_tunnel_create_udp4_attributes() -> None:
    a = attrs_of(g.tunnel_create_attrs(1000, 2000, 3, 0, local="192.0.2.1",
                                       remote="198.51.100.7", udp_sport=5000, udp_dport=6000))
    assert [t for t, _ in a] == [9, 10, 7, 2, 24, 25, 26, 27]
    d = dict(a)
    assert u(d[9]) == 1000 and len(d[9]) == 4
    assert u(d[10]) == 2000
    assert d[7] == b"\x03"
    assert u(d[2]) == 0 and len(d[2]) == 2
    assert d[24] == socket.inet_aton("192.0.2.1")
    assert d[25] == socket.inet_aton("198.51.100.7")
    assert u(d[26]) == 5000 and len(d[26]) == 2  # host order, like iproute2
    assert u(d[27]) == 6000


def test_udp_csum_is_sent_only_to_enable() -> None:
    # The kernel reads UDP_CSUM with nla_get_flag: present means "on", whatever its value.
    off = dict(attrs_of(g.tunnel_create_attrs(1, 2, 3, 0, local="10.0.0.1", remote="10.0.0.2",
                                               udp_sport=1, udp_dport=2, udp_csum=False)))
    on = dict(attrs_of(g.tunnel_create_attrs(1, 2, 3, 0, local="10.0.0.1", remote="10.0.0.2",
                                              udp_sport=1, udp_dport=2, udp_csum=True)))
    assert 13 not in off
    assert on[13] == b"\x01"


def test_tunnel_create_udp6_zero_checksum_flags() -> None:
    a = attrs_of(g.tunnel_create_attrs(7, 8, 3, 0, local="fd00::1", remote="fd00::2",
                                       udp_sport=1701, udp_dport=1701, udp_zero_csum6_tx=True,
                                       udp_zero_csum6_rx=True))
    d = dict(a)
    assert d[31] == socket.inet_pton(socket.AF_INET6, "fd00::1")
    assert d[32] == socket.inet_pton(socket.AF_INET6, "fd00::2")
    assert d[33] == b"" and d[34] == b""  # flags: TX and RX as named, not swapped
    assert 24 not in d and 25 not in d
    only_rx = dict(attrs_of(g.tunnel_create_attrs(7, 8, 3, 0, local="fd00::1", remote="fd00::2",
                                                   udp_zero_csum6_rx=True)))
    assert 34 in only_rx and 33 not in only_rx


def test_ip_encap_sends_no_ports_and_v2_is_just_a_version() -> None:
    d = dict(attrs_of(g.tunnel_create_attrs(5, 6, 3, 1, local="fd00::1", remote="fd00::2",
                                             udp_sport=9, udp_dport=9)))
    assert 26 not in d and 27 not in d
    v2 = dict(attrs_of(g.tunnel_create_attrs(5, 6, 2, 0, local="10.0.0.1", remote="10.0.0.2",
                                              udp_sport=1701, udp_dport=1701)))
    assert v2[7] == b"\x02"


def test_managed_tunnel_sends_the_fd_and_nothing_of_the_socket() -> None:
    a = attrs_of(g.tunnel_create_attrs(42, 43, 2, 0, fd=17, local="10.0.0.1",
                                       remote="10.0.0.2", udp_sport=1701, udp_csum=True))
    assert [t for t, _ in a] == [9, 10, 7, 2, 23]
    assert u(dict(a)[23]) == 17


def test_unmanaged_tunnel_needs_addresses() -> None:
    with pytest.raises(L2tpError) as exc:
        g.tunnel_create_attrs(1, 2, 3, 0, local="10.0.0.1")
    assert exc.value.code == errno.EINVAL
    with pytest.raises(L2tpError):
        g.tunnel_create_attrs(1, 2, 3, 0, local="10.0.0.1", remote="not-an-address")


# -- SESSION_CREATE / MODIFY / keys ---------------------------------------------------------


def test_session_create_all_attributes() -> None:
    a = attrs_of(g.session_create_attrs(
        1000, 100, 200, 5, l2spec_type=1, cookie=bytes.fromhex("01234567"),
        peer_cookie=bytes.fromhex("0011223344556677"), recv_seq=True, send_seq=False,
        lns_mode=True, recv_timeout=40, ifname="l2tp0"))
    assert [t for t, _ in a] == [9, 11, 12, 1, 5, 15, 16, 18, 19, 20, 22, 8]
    d = dict(a)
    assert u(d[9]) == 1000 and u(d[11]) == 100 and u(d[12]) == 200
    assert u(d[1]) == 5 and len(d[1]) == 2
    assert d[5] == b"\x01"
    assert d[15] == bytes.fromhex("01234567")
    assert d[16] == bytes.fromhex("0011223344556677")
    assert (d[18], d[19], d[20]) == (b"\x01", b"\x00", b"\x01")
    assert u(d[22]) == 40 and len(d[22]) == 8  # NLA_MSECS: u64 milliseconds
    assert d[8] == b"l2tp0\0"


@little_endian
def test_session_create_golden_bytes() -> None:
    raw = g.session_create_attrs(3, 4, 5, 7)
    assert raw.hex() == ("08000900" "03000000" "08000b00" "04000000"
                         "08000c00" "05000000" "06000100" "07000000")


def test_session_create_leaves_out_what_is_not_given() -> None:
    d = dict(attrs_of(g.session_create_attrs(1, 2, 3, 7)))
    assert set(d) == {9, 11, 12, 1}  # the kernel's defaults apply (l2spec DEFAULT for v3)
    with pytest.raises(L2tpError):
        g.session_create_attrs(1, 2, 3, 5, cookie=bytes(9))


def test_session_modify_and_keys() -> None:
    a = attrs_of(g.session_modify_attrs(10, 100, send_seq=True, recv_timeout=0))
    assert [t for t, _ in a] == [9, 11, 19, 22]
    assert [t for t, _ in attrs_of(g.session_key_attrs(ifname="l2tpeth0"))] == [8]
    assert [t for t, _ in attrs_of(g.session_key_attrs(1, 2))] == [9, 11]
    assert attrs_of(g.tunnel_id_attrs(77)) == [(9, struct.pack("=I", 77))]


def test_genl_request_header() -> None:
    msg = g.genl_request(0x1B, g.L2TP_CMD_SESSION_GET, b"", seq=9,
                         flags=g.NLM_F_REQUEST | g.NLM_F_DUMP)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, mtype, flags, seq, pid) == (20, 0x1B, 0x301, 9, 0)
    assert msg[16:] == bytes([8, 1, 0, 0])  # cmd, version 1, reserved


# -- decoding ---------------------------------------------------------------------------------


def _kernel_tunnel_reply() -> bytes:
    """A TUNNEL_GET reply as 6.1 lays it out, PAD attributes included."""
    stats = b"".join([
        g.nla(9, b""),  # STATS_PAD
        g.nla(1, struct.pack("=Q", 5)), g.nla(2, struct.pack("=Q", 500)),
        g.nla(3, struct.pack("=Q", 0)), g.nla(4, struct.pack("=Q", 7)),
        g.nla(5, struct.pack("=Q", 700)), g.nla(6, struct.pack("=Q", 1)),
        g.nla(10, struct.pack("=Q", 2)), g.nla(7, struct.pack("=Q", 3)),
        g.nla(8, struct.pack("=Q", 4)),
    ])
    body = b"".join([
        g.nla(7, b"\x03"), g.nla(9, struct.pack("=I", 10)), g.nla(10, struct.pack("=I", 110)),
        g.nla(17, struct.pack("=I", 0)), g.nla(2, struct.pack("=H", 0)),
        g.nla(35, b""), g.nla(30 | g.NLA_F_NESTED, stats),
        g.nla(33, b""),
        g.nla(26, struct.pack("=H", 5010)), g.nla(27, struct.pack("=H", 6010)),
        g.nla(31, socket.inet_pton(socket.AF_INET6, "fd00::1")),
        g.nla(32, socket.inet_pton(socket.AF_INET6, "fd00::2")),
        g.nla(99, b"\xab"),
    ])
    return bytes([g.L2TP_CMD_TUNNEL_GET, 1, 0, 0]) + body


def test_decode_tunnel_in_the_management_shape() -> None:
    cmd, t = g.decode_l2tp(_kernel_tunnel_reply())
    assert cmd == g.L2TP_CMD_TUNNEL_GET
    assert t == {
        "proto_version": 3, "conn_id": 10, "peer_conn_id": 110, "debug": 0, "encap_type": 0,
        "stats": {"tx_packets": 5, "tx_bytes": 500, "tx_errors": 0, "rx_packets": 7,
                  "rx_bytes": 700, "rx_seq_discards": 1, "rx_cookie_discards": 2,
                  "rx_oos_packets": 3, "rx_errors": 4, "rx_invalid": 0},
        "udp_zero_csum6_tx": True, "udp_sport": 5010, "udp_dport": 6010,
        "ip6_saddr": "fd00::1", "ip6_daddr": "fd00::2", "attr_99": "ab",
    }
    assert list(t["stats"]) == list(STATS_FIELDS)  # the model's order, key for key


def test_decode_session_booleans_cookies_and_timeout() -> None:
    body = b"".join([
        g.nla(9, struct.pack("=I", 1)), g.nla(11, struct.pack("=I", 2)),
        g.nla(10, struct.pack("=I", 3)), g.nla(12, struct.pack("=I", 4)),
        g.nla(17, struct.pack("=I", 0)), g.nla(1, struct.pack("=H", 5)),
        g.nla(8, b"l2tpeth0\0"), g.nla(15, bytes.fromhex("0a0b0c0d")),
        g.nla(18, b"\x00"), g.nla(19, b"\x01"), g.nla(20, b"\x00"),
        g.nla(22, struct.pack("=Q", 52)),
    ])
    s = g.decode_session(bytes([8, 1, 0, 0]) + body)
    assert s == {"conn_id": 1, "session_id": 2, "peer_conn_id": 3, "peer_session_id": 4,
                 "debug": 0, "pw_type": 5, "ifname": "l2tpeth0", "cookie": "0a0b0c0d",
                 "recv_seq": False, "send_seq": True, "lns_mode": False, "recv_timeout": 52}


def test_parse_messages_and_truncation() -> None:
    one = g.genl_request(20, 4, g.tunnel_id_attrs(1), seq=1, flags=2)
    two = g.genl_request(20, 4, g.tunnel_id_attrs(2), seq=1, flags=2)
    msgs = g.parse_messages(one + two + two[:10])
    assert [m.seq for m in msgs] == [1, 1]
    assert [g.decode_tunnel(m.payload)["conn_id"] for m in msgs] == [1, 2]
    assert list(g.parse_attrs(b"\x08\x00\x09\x00\x01")) == []  # truncated attribute


def test_extended_ack_message_becomes_the_error_text() -> None:
    err = struct.pack("=i", -errno.EINVAL) + struct.pack("=IHHII", 36, 20, 5, 1, 0)
    err += g.nla(g.NLMSGERR_ATTR_MSG, b"bad attribute\0")
    msg = g.NetlinkMessage(g.NLMSG_ERROR, 0x100 | g.NLM_F_ACK_TLVS, 1, 0, err)
    exc = g._nl_error(errno.EINVAL, msg)
    assert exc.code == errno.EINVAL and exc.message == "bad attribute"
    plain = g._nl_error(errno.ENODEV, g.NetlinkMessage(g.NLMSG_ERROR, 0, 1, 0, err[:20]))
    assert plain.message == os.strerror(errno.ENODEV)


# -- the real generic netlink of this host (which has no L2TP) -------------------------------


def test_genl_socket_resolves_the_controller_family() -> None:
    sock = g.GenlSocket()
    try:
        family, groups = sock.family("nlctrl")
        assert family == g.GENL_ID_CTRL and "notify" in groups
        with pytest.raises(L2tpError) as exc:
            sock.family("nosuchfamily")
        assert exc.value.code == errno.ENOENT
        with pytest.raises(L2tpError) as exc:
            sock.family("a-name-longer-than-genl-namsiz")
        # The kernel's extended ack explains the refusal; the client keeps its text.
        assert exc.value.code == errno.EINVAL and "policy" in exc.value.message
    finally:
        sock.close()


def test_without_l2tp_the_client_says_so() -> None:
    if g._family_resolvable():
        pytest.skip("this kernel has L2TP")
    nl = g.L2tpNetlink()
    with pytest.raises(L2tpError) as exc:
        nl.tunnel_dump()
    assert exc.value.code == errno.EPROTONOSUPPORT and "l2tp_netlink" in exc.value.message
    nl.close()
    assert g.kernel_has_l2tp(modprobe=("true",)) is False


# -- socket addresses -----------------------------------------------------------------------


def test_pppol2tp_sockaddr_layouts() -> None:
    kw: dict[str, Any] = dict(fd=9, tunnel_id=0x1111, session_id=0x2222, peer_tunnel_id=0x3333,
                              peer_session_id=0x4444)
    v2 = pppox.pppol2tp_sockaddr(version=2, family=socket.AF_INET, peer=("10.0.0.2", 1701), **kw)
    v3 = pppox.pppol2tp_sockaddr(version=3, family=socket.AF_INET, **kw)
    v2in6 = pppox.pppol2tp_sockaddr(version=2, family=socket.AF_INET6, peer=("fd00::2", 1701),
                                    **kw)
    v3in6 = pppox.pppol2tp_sockaddr(version=3, family=socket.AF_INET6, **kw)
    # The kernel's pppol2tp_connect tells the four apart by length alone.
    assert [len(a) for a in (v2, v2in6, v3, v3in6)] == [38, 50, 46, 58]
    for a in (v2, v2in6, v3, v3in6):
        assert struct.unpack_from("=HIii", a) == (24, 1, 0, 9)  # AF_PPPOX, OL2TP, pid, fd
    # v2/IPv4: sockaddr_in at 14, then the four u16 ids at 30.
    assert struct.unpack_from("=H", v2, 14)[0] == socket.AF_INET
    assert struct.unpack_from("!H4s", v2, 16) == (1701, socket.inet_aton("10.0.0.2"))
    assert struct.unpack_from("=HHHH", v2, 30) == (0x1111, 0x2222, 0x3333, 0x4444)
    # v2/IPv6: ids first (14), then sockaddr_in6 (22).
    assert struct.unpack_from("=HHHH", v2in6, 14) == (0x1111, 0x2222, 0x3333, 0x4444)
    assert struct.unpack_from("=H", v2in6, 22)[0] == socket.AF_INET6
    assert v2in6[30:46] == socket.inet_pton(socket.AF_INET6, "fd00::2")
    # v3/IPv4: sockaddr_in at 14, then four u32 ids at 30.
    assert struct.unpack_from("=IIII", v3, 30) == (0x1111, 0x2222, 0x3333, 0x4444)
    # v3/IPv6: four u32 ids at 14, then sockaddr_in6 at 30.
    assert struct.unpack_from("=IIII", v3in6, 14) == (0x1111, 0x2222, 0x3333, 0x4444)
    assert struct.unpack_from("=H", v3in6, 30)[0] == socket.AF_INET6


def test_sockaddr_l2tpip_layouts() -> None:
    a4 = pppox.sockaddr_l2tpip(socket.AF_INET, "10.1.2.3", 0xABCD)
    a6 = pppox.sockaddr_l2tpip(socket.AF_INET6, "fd00::9", 0xABCD)
    assert len(a4) == 16 and len(a6) == 32
    assert struct.unpack_from("=H", a4)[0] == socket.AF_INET
    assert a4[4:8] == socket.inet_aton("10.1.2.3")
    assert struct.unpack_from("=I", a4, 8)[0] == 0xABCD  # host order, where sin_zero was
    assert struct.unpack_from("=H", a6)[0] == socket.AF_INET6
    assert a6[8:24] == socket.inet_pton(socket.AF_INET6, "fd00::9")
    assert struct.unpack_from("=I", a6, 28)[0] == 0xABCD


# -- the control sockets' BPF filter, on real raw sockets -------------------------------------

root = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")


@root
@pytest.mark.parametrize("family,addr", [(socket.AF_INET, "127.0.0.1"),
                                         (socket.AF_INET6, "::1")])
def test_control_filter_passes_only_session_id_zero(family: int, addr: str) -> None:
    from pyl2tp.dataplane.linux import _attach_filter

    rx = socket.socket(family, socket.SOCK_RAW, 115)
    tx = socket.socket(family, socket.SOCK_RAW, 115)
    try:
        _attach_filter(rx, control_filter(family))
        rx.bind((addr, 0))
        rx.settimeout(1.0)
        data = struct.pack("!I", 77) + b"data packet"
        control = struct.pack("!I", 0) + bytes.fromhex("c803000c0000002a00000000")
        tx.sendto(data, (addr, 0))
        tx.sendto(control, (addr, 0))
        tx.sendto(data, (addr, 0))
        got = rx.recv(2048)
        if family == socket.AF_INET:
            got = got[(got[0] & 0x0F) * 4:]
        assert got == control
        with pytest.raises(TimeoutError):
            rx.settimeout(0.3)
            rx.recv(2048)
    finally:
        rx.close()
        tx.close()


# -- the backend against a recording netlink ---------------------------------------------------


class FakeNetlink:
    """Stands in for :class:`L2tpNetlink`: records every call, keeps what a kernel would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.tunnels: dict[int, dict[str, Any]] = {}
        self.sessions: dict[tuple[int, int], dict[str, Any]] = {}
        self.stats = {name: 0 for name in STATS_FIELDS}
        self.gets = 0
        self.closed = False

    def _rec(self, name: str, *args: Any, **kw: Any) -> None:
        self.calls.append((name, args, kw))

    def tunnel_create(self, tid: int, ptid: int, version: int, encap: int, **kw: Any) -> None:
        self._rec("tunnel_create", tid, ptid, version, encap, **kw)
        if tid in self.tunnels:
            raise L2tpError(errno.EEXIST)
        self.tunnels[tid] = {"conn_id": tid, "udp_sport": kw.get("udp_sport") or 40000,
                             "stats": dict(self.stats)}

    def tunnel_get(self, tid: int) -> dict[str, Any]:
        self.gets += 1
        if tid not in self.tunnels:
            raise L2tpError(errno.ENODEV)
        return {**self.tunnels[tid], "stats": dict(self.stats)}

    def tunnel_delete(self, tid: int) -> None:
        self._rec("tunnel_delete", tid)
        if self.tunnels.pop(tid, None) is None:
            raise L2tpError(errno.ENODEV)
        for key in [k for k in self.sessions if k[0] == tid]:
            del self.sessions[key]

    def tunnel_modify(self, tid: int) -> None:
        self._rec("tunnel_modify", tid)

    def tunnel_dump(self) -> list[dict[str, Any]]:
        return [{**t, "stats": dict(self.stats)} for t in self.tunnels.values()]

    def session_create(self, tid: int, sid: int, psid: int, pw: int, **kw: Any) -> None:
        self._rec("session_create", tid, sid, psid, pw, **kw)
        self.sessions[(tid, sid)] = {"conn_id": tid, "session_id": sid,
                                     "ifname": kw.get("ifname") or "l2tpeth0"}
        self._seq(tid, sid, **kw)

    def _seq(self, tid: int, sid: int, **kw: Any) -> None:
        """Sequencing as the kernel reports it (recv_timeout only when non-zero)."""
        s = self.sessions[(tid, sid)]
        for key in ("recv_seq", "send_seq", "lns_mode"):
            if kw.get(key) is not None:
                s[key] = bool(kw[key])
            s.setdefault(key, False)
        if kw.get("recv_timeout") is not None:
            s.pop("recv_timeout", None)
            if kw["recv_timeout"]:
                s["recv_timeout"] = kw["recv_timeout"]

    def session_get(self, tid: int, sid: int) -> dict[str, Any]:
        self.gets += 1
        if (tid, sid) not in self.sessions:
            raise L2tpError(errno.ENODEV)
        return {**self.sessions[(tid, sid)], "stats": dict(self.stats)}

    def session_delete(self, tid: int, sid: int) -> None:
        self._rec("session_delete", tid, sid)
        if self.sessions.pop((tid, sid), None) is None:
            raise L2tpError(errno.ENODEV)

    def session_modify(self, tid: int, sid: int, **kw: Any) -> None:
        self._rec("session_modify", tid, sid, **kw)
        self._seq(tid, sid, **kw)

    def session_dump(self) -> list[dict[str, Any]]:
        return [{**s, "stats": dict(self.stats)} for s in self.sessions.values()]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _backend(loop: asyncio.AbstractEventLoop) -> tuple[LinuxBackend, FakeNetlink, Registry]:
    nl = FakeNetlink()
    backend = LinuxBackend(loop, netlink=nl)  # type: ignore[arg-type]
    reg = Registry()
    backend.attach(reg)
    return backend, nl, reg


def _run(reg: Registry, cmd: str, attrs: dict[str, Any], dump: bool = False) -> Any:
    return commands.execute(reg, {"cmd": cmd, "attrs": attrs, "dump": dump})


def test_unmanaged_tunnel_and_eth_session_reach_netlink(loop: asyncio.AbstractEventLoop
                                                        ) -> None:
    backend, nl, reg = _backend(loop)
    reply = _run(reg, "tunnel_create", {"conn_id": 10, "peer_conn_id": 20, "proto_version": 3,
                                        "encap_type": 0, "ip_saddr": "10.0.0.1",
                                        "ip_daddr": "10.0.0.2", "udp_sport": 0,
                                        "udp_dport": 1701, "udp_csum": True})
    assert nl.calls[0] == ("tunnel_create", (10, 20, 3, 0), {
        "local": "10.0.0.1", "remote": "10.0.0.2", "udp_sport": 0, "udp_dport": 1701,
        "udp_csum": True, "udp_zero_csum6_tx": False, "udp_zero_csum6_rx": False})
    assert reply["udp_sport"] == 40000  # the kernel's ephemeral port, read back
    tunnel = reg.tunnels[10]
    assert tunnel.endpoint is None and isinstance(tunnel.stats, KernelStats)
    _run(reg, "session_create", {"conn_id": 10, "session_id": 1, "peer_session_id": 2,
                                 "pw_type": 5, "cookie": "0102", "peer_cookie": "0a0b0c0d",
                                 "send_seq": True, "recv_timeout": 40, "ifname": "kpw%d"})
    assert nl.calls[1] == ("session_create", (10, 1, 2, 5), {
        "l2spec_type": L2SpecType.DEFAULT, "cookie": b"\x01\x02",
        "peer_cookie": bytes.fromhex("0a0b0c0d"), "recv_seq": False, "send_seq": True,
        "lns_mode": False, "recv_timeout": 40, "ifname": "kpw%d"})
    session = reg.tunnels[10].sessions[1]
    assert isinstance(session.pw, KernelEthPseudowire)
    _run(reg, "session_modify", {"conn_id": 10, "session_id": 1, "recv_seq": True})
    assert nl.calls[2] == ("session_modify", (10, 1), {
        "recv_seq": True, "send_seq": True, "lns_mode": False, "recv_timeout": 40})
    _run(reg, "tunnel_modify", {"conn_id": 10})
    assert nl.calls[3] == ("tunnel_modify", (10,), {})
    _run(reg, "tunnel_delete", {"conn_id": 10})
    assert [c[0] for c in nl.calls[4:]] == ["session_delete", "tunnel_delete"]
    assert nl.tunnels == {} and reg.tunnels == {}
    backend.close()
    assert nl.closed


def test_v2_sessions_send_no_v3_attributes(loop: asyncio.AbstractEventLoop) -> None:
    backend, nl, reg = _backend(loop)
    tunnel = Tunnel(5, 6, 2, EncapType.UDP, family=socket.AF_INET, local="10.0.0.1",
                    remote="10.0.0.2", udp_sport=1701, udp_dport=1701)
    reg.add_tunnel(tunnel)
    session = Session(tunnel, 7, 8, PwType.PPP, cookie=b"\x01\x02\x03\x04",
                      l2spec_type=L2SpecType.DEFAULT, ifname="ppp9")
    # The PPPoL2TP socket needs the kernel's l2tp_ppp: without it the session is refused and
    # the kernel's half is deleted again.
    with pytest.raises(L2tpError):
        reg.add_session(session)
    create = next(c for c in nl.calls if c[0] == "session_create")
    assert create[2]["l2spec_type"] is None and create[2]["cookie"] == b""
    assert create[2]["ifname"] is None
    assert ("session_delete", (5, 7), {}) in nl.calls
    assert nl.sessions == {} and tunnel.sessions == {}
    backend.close()


def test_kernel_errors_refuse_the_object(loop: asyncio.AbstractEventLoop) -> None:
    backend, nl, reg = _backend(loop)
    nl.tunnels[10] = {"conn_id": 10}  # made by someone else (ip l2tp) in this namespace
    with pytest.raises(L2tpError) as exc:
        _run(reg, "tunnel_create", {"conn_id": 10, "peer_conn_id": 20, "proto_version": 3,
                                    "encap_type": 1, "ip_saddr": "10.0.0.1",
                                    "ip_daddr": "10.0.0.2"})
    assert exc.value.code == errno.EEXIST and reg.tunnels == {}
    backend.close()


def test_stats_are_read_back_and_cached(loop: asyncio.AbstractEventLoop) -> None:
    backend, nl, reg = _backend(loop)
    _run(reg, "tunnel_create", {"conn_id": 1, "peer_conn_id": 2, "proto_version": 3,
                                "encap_type": 1, "ip_saddr": "10.0.0.1", "ip_daddr": "10.0.0.2"})
    _run(reg, "session_create", {"conn_id": 1, "session_id": 3, "peer_session_id": 4,
                                 "pw_type": 5})
    nl.stats["rx_packets"], nl.stats["rx_cookie_discards"] = 11, 2
    tunnel = reg.tunnels[1]
    assert isinstance(tunnel.stats, KernelStats)
    # Read back at once: the values read when the tunnel was created are not served again.
    reply = _run(reg, "tunnel_get", {"conn_id": 1})
    assert reply["stats"]["rx_packets"] == 11
    nl.stats["rx_packets"] = 12
    assert _run(reg, "tunnel_get", {"conn_id": 1})["stats"]["rx_packets"] == 12
    session = tunnel.sessions[3]
    assert isinstance(session.stats, KernelStats)
    nl.sessions[(1, 3)]["send_seq"] = True  # the kernel's LAC started sending sequence numbers
    backend.refresh_stats()
    gets = nl.gets
    reply = _run(reg, "session_get", {"conn_id": 1, "session_id": 3})
    assert nl.gets == gets  # served from the bulk refresh
    assert reply["stats"]["rx_cookie_discards"] == 2 and session.send_seq is True
    reply = _run(reg, "session_delete", {"conn_id": 1, "session_id": 3})
    assert reply["stats"]["rx_packets"] == 12  # read just before the kernel deleted it
    nl.stats["rx_packets"] = 99
    assert session.stats.as_dict()["rx_packets"] == 12  # detached: the final values stay
    backend.close()


def test_managed_udp_tunnel_keeps_control_messages_flowing(loop: asyncio.AbstractEventLoop
                                                           ) -> None:
    """A managed tunnel's own connected socket shares the listener's port (SO_REUSEADDR),
    gets the peer's datagrams (the kernel prefers a connected socket) and passes control
    messages up as arriving on the listener, the endpoint the control connection knows."""
    backend, nl, reg = _backend(loop)
    got: list[tuple[Any, bytes, Any]] = []
    backend.control_handler = lambda ep, data, off, addr: got.append((ep, data, addr))
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        ep = backend.endpoint_for(EncapType.UDP, socket.AF_INET, "0.0.0.0", 0)
        tunnel = Tunnel(9, 19, 3, EncapType.UDP, family=socket.AF_INET, local="127.0.0.1",
                        remote="127.0.0.1", udp_sport=ep.port,
                        udp_dport=peer.getsockname()[1], managed=True, udp_csum=True)
        tunnel.endpoint = ep
        reg.add_tunnel(tunnel)
        create = nl.calls[0]
        tsock = backend.tunnel_socket(9)
        assert tsock is not None and create[2] == {"fd": tsock.fileno()}
        assert tsock.getsockname() == ("127.0.0.1", ep.port)
        assert tsock.getpeername() == peer.getsockname()
        assert tunnel.endpoint is ep and tunnel in ep.tunnels
        control = bytes.fromhex("c803000c0000000900000000")
        peer.sendto(control, ("127.0.0.1", ep.port))
        peer.sendto(bytes.fromhex("00030000000000630000"), ("127.0.0.1", ep.port))

        async def settle() -> None:
            for _ in range(50):
                if got and ep.rx_unknown_session:
                    return
                await asyncio.sleep(0.01)
        loop.run_until_complete(settle())
        assert got == [(ep, control, peer.getsockname())]
        assert ep.rx_unknown_session == 1  # a data packet the kernel did not take
        reg.delete_tunnel(tunnel)
        assert backend.tunnel_socket(9) is None and tsock.fileno() == -1
        assert ep.key not in backend.endpoints  # unpinned and unused: closed
    finally:
        peer.close()
        backend.close()
