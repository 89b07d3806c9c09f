"""The userspace backend's receive loops against the general algorithm they shortcut.

:meth:`UserspaceBackend._udp_readable` and ``_ip_readable`` hand packets of plain sessions
(no cookie, no sequencing, nothing held) straight to the pseudowire, read datagrams of a
tunnel's peer from its connected socket without a source address, and parse in a reused
buffer. Here every datagram of a random stream goes both through them and through a
reference that is the encapsulation code as it was before those shortcuts, calling
:func:`recv.recv_common` for every data packet. Deliveries, control messages, every counter
and the sequencing state must be the same after each datagram, and what was delivered must
still be intact at the end (nothing may alias the receive buffer).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyl2tp.dataplane import recv, userspace, xmit
from pyl2tp.dataplane.model import STATS_FIELDS, Session, Tunnel
from pyl2tp.dataplane.registry import Registry
from pyl2tp.dataplane.userspace import ENDPOINT_COUNTERS, Endpoint, PeerSocket, UserspaceBackend
from pyl2tp.pw.ppp import PppChannel
from pyl2tp.wire.constants import EncapType, L2SpecType, PwType

LOCAL4, PEER4, OTHER4, THIRD4 = "192.0.2.1", "192.0.2.2", "192.0.2.99", "192.0.2.77"
LOCAL6, PEER6, OTHER6, THIRD6 = "2001:db8::1", "2001:db8::2", "2001:db8::99", "2001:db8::77"
PORT, PEER_PORT = 1701, 1702
TID, TID2, PEER_TID = 10, 11, 20
# Two sessions in tunnel TID, one in tunnel TID2 (whose peer is OTHER); 103 is unknown.
SIDS = (101, 102, 104)
TUNNEL_OF = {101: TID, 102: TID, 104: TID2}


# -- stand-ins ------------------------------------------------------------------------------


class StandIn:
    """A socket's receive side: hands out queued datagrams, then BlockingIOError."""

    def __init__(self) -> None:
        self.inbox: list[tuple[bytes, tuple[Any, ...]]] = []
        self.sent: list[tuple[bytes, tuple[Any, ...] | None]] = []

    def recvfrom(self, _size: int) -> tuple[bytes, tuple[Any, ...]]:
        if not self.inbox:
            raise BlockingIOError
        return self.inbox.pop(0)

    def recv_into(self, buf: bytearray) -> int:
        data = self.recvfrom(len(buf))[0]
        buf[:len(data)] = data
        return len(data)

    def sendto(self, data: bytes, addr: tuple[Any, ...]) -> int:
        self.sent.append((bytes(data), addr))
        return len(data)

    def send(self, data: bytes) -> int:
        self.sent.append((bytes(data), None))
        return len(data)


class Clock:
    """Replaces ``time`` in the backend module so both sides see the same ``now``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@dataclass
class SessionConfig:
    cookie: bytes = b""
    l2spec: int = int(L2SpecType.NONE)
    recv_seq: bool = False
    send_seq: bool = False
    lns_mode: bool = False
    reorder_timeout: float = 0.0
    q_max: int = 1024


@dataclass
class World:
    """One registry with one tunnel and two sessions, recording what comes out of it."""

    reg: Registry
    tunnel: Tunnel
    tunnel2: Tunnel
    delivered: dict[int, list[Any]] = field(default_factory=dict)
    control: list[tuple[Any, int, tuple[Any, ...]]] = field(default_factory=list)


def build(version: int, encap: EncapType, family: int,
          configs: tuple[SessionConfig, SessionConfig]) -> World:
    local, peer, other = ((LOCAL4, PEER4, OTHER4) if family == socket.AF_INET
                          else (LOCAL6, PEER6, OTHER6))
    reg = Registry()
    tunnels = {}
    for tid, remote in ((TID, peer), (TID2, other)):
        tunnel = reg.add_tunnel(Tunnel(tid, PEER_TID, version, encap, family=family,
                                       local=local, remote=remote, udp_sport=PORT,
                                       udp_dport=PEER_PORT))
        tunnel.peer_addr = (remote, PEER_PORT if encap == EncapType.UDP else 0)
        tunnels[tid] = tunnel
    world = World(reg, tunnels[TID], tunnels[TID2])
    for sid, cfg in zip(SIDS, (*configs, configs[1]), strict=True):
        tunnel = tunnels[TUNNEL_OF[sid]]
        s = Session(tunnel, sid, sid + 1000, PwType.ETH,
                    cookie=b"", peer_cookie=cfg.cookie if version == 3 else b"",
                    l2spec_type=cfg.l2spec if version == 3 else L2SpecType.NONE,
                    recv_seq=cfg.recv_seq, send_seq=cfg.send_seq, lns_mode=cfg.lns_mode,
                    reorder_timeout=cfg.reorder_timeout)
        reg.add_session(s)
        s.reorder_q_max = cfg.q_max  # after add_session, which gives the registry's bound
        got: list[Any] = []
        world.delivered[sid] = got
        s.deliver = got.append
    return world


# -- the reference: the encapsulation code before the shortcuts ----------------------------


class Reference:
    """``_udp_readable``/``_ip_readable`` as they were: recvfrom, every data packet through
    recv_common, counters in a dict."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.counters = dict.fromkeys(ENDPOINT_COUNTERS, 0)

    def _pass_up(self, data: bytes, offset: int, addr: tuple[Any, ...]) -> None:
        self.counters["rx_control"] += 1
        self.world.control.append((data, offset, addr))

    def udp(self, data: bytes, addr: tuple[Any, ...], now: float) -> None:
        c = self.counters
        reg = self.world.reg
        c["rx_datagrams"] += 1
        if len(data) < 8:
            if len(data) >= 1 and data[0] & 0x80:
                self._pass_up(data, 0, addr)
            else:
                c["rx_short"] += 1
            return
        flags = (data[0] << 8) | data[1]
        if flags & 0x8000:
            self._pass_up(data, 0, addr)
            return
        ver = flags & 0xF
        if ver == 2:
            ptr = 4 if flags & 0x4000 else 2
            tid, sid = struct.unpack_from(">HH", data, ptr)
            session = reg.v2_sessions.get((tid << 16) | sid)
            ptr += 4
        elif ver == 3:
            sid = struct.unpack_from(">I", data, 4)[0]
            session = reg.v3_sessions.get(sid)
            ptr = 8
        else:
            c["rx_bad_version"] += 1
            return
        if session is None:
            c["rx_unknown_session"] += 1
            return
        tunnel = session.tunnel
        peer = tunnel.peer_addr
        if addr[1] != peer[1] or addr[0] != peer[0]:
            c["rx_wrong_peer"] += 1
            return
        if ver != tunnel.version:
            tunnel.stats.rx_invalid += 1
            return
        if ver == 3 and len(data) < ptr + len(session.peer_cookie) + (
                4 if session.l2spec_type == L2SpecType.DEFAULT else 0):
            tunnel.stats.rx_invalid += 1
            return
        recv.recv_common(session, data, ptr, flags, len(data), now)

    def ip(self, data: bytes, addr: tuple[Any, ...], now: float, strip_ip: bool) -> None:
        c = self.counters
        c["rx_datagrams"] += 1
        if strip_ip:
            if len(data) < 20 or data[0] >> 4 != 4:
                c["rx_invalid_ip"] += 1
                return
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) < 4:
            c["rx_short"] += 1
            return
        sid = struct.unpack_from(">I", data, 0)[0]
        if sid == 0:
            self._pass_up(data, 4, addr)
            return
        session = self.world.reg.v3_sessions.get(sid)
        if session is None:
            c["rx_unknown_session"] += 1
            return
        tunnel = session.tunnel
        if addr[0] != tunnel.peer_addr[0]:
            c["rx_wrong_peer"] += 1
            return
        if len(data) < 4 + len(session.peer_cookie) + (
                4 if session.l2spec_type == L2SpecType.DEFAULT else 0):
            tunnel.stats.rx_invalid += 1
            return
        recv.recv_common(session, data, 4, 0, len(data), now)


# -- the system under test ------------------------------------------------------------------


class Fast:
    """The real backend on stand-in sockets: the shared one, and optionally a peer socket."""

    def __init__(self, world: World, with_peer_socket: bool) -> None:
        self.world = world
        self.loop = asyncio.new_event_loop()
        self.backend = UserspaceBackend(self.loop)
        self.backend.registry = world.reg
        tunnel = world.tunnel
        self.shared = StandIn()
        self.ep = Endpoint(self.backend, self.shared, tunnel.encap,  # type: ignore[arg-type]
                           tunnel.family, tunnel.local, PORT)
        for t in (world.tunnel, world.tunnel2):
            self.ep.tunnels.add(t)
            t.endpoint = self.ep
            if with_peer_socket:
                own = StandIn()
                self.ep.peers[t.peer_addr] = PeerSocket(own, t.peer_addr,  # type: ignore[arg-type]
                                                        t.peer_addr)
                t.sock = own
        self.backend.control_handler = (
            lambda _ep, data, off, addr: world.control.append((data, off, addr)))

    def udp(self, data: bytes, addr: tuple[Any, ...]) -> None:
        peer = self.ep.peers.get(addr)
        if peer is not None:
            # The kernel gives a peer's datagrams to the socket connected to it.
            peer.sock.inbox.append((data, addr))  # type: ignore[attr-defined]
            self.backend._udp_readable(self.ep, peer)
        else:
            self.shared.inbox.append((data, addr))
            self.backend._udp_readable(self.ep)

    def ip(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.shared.inbox.append((data, addr))
        self.backend._ip_readable(self.ep)

    def close(self) -> None:
        self.loop.close()


def session_state(s: Session) -> tuple[Any, ...]:
    return (s.nr, s.ns, s.send_seq, s.reorder_skip, s.nr_oos, s.nr_oos_count,
            [(e[0], e[1], e[3], e[4]) for e in s.reorder_q], s.stats.as_dict(), s.tx_header,
            s.rx_plain)


def assert_same(a: World, fast: Fast, b: World, ref: Reference) -> None:
    assert fast.ep.counters() == ref.counters
    assert a.tunnel.stats.as_dict() == b.tunnel.stats.as_dict()
    assert a.tunnel2.stats.as_dict() == b.tunnel2.stats.as_dict()
    for sid in SIDS:
        sa = a.reg.tunnels[TUNNEL_OF[sid]].sessions[sid]
        sb = b.reg.tunnels[TUNNEL_OF[sid]].sessions[sid]
        assert session_state(sa) == session_state(sb), sid
        assert [bytes(p) for p in a.delivered[sid]] == b.delivered[sid], sid
    assert [(bytes(d), o, tuple(x[:2])) for d, o, x in a.control] == [
        (d, o, tuple(x[:2])) for d, o, x in b.control]


# -- packets --------------------------------------------------------------------------------

configs = st.builds(
    SessionConfig,
    cookie=st.sampled_from([b"", b"\x11\x22\x33\x44", b"12345678"]),
    l2spec=st.sampled_from([int(L2SpecType.NONE), int(L2SpecType.DEFAULT),
                            int(L2SpecType.ATM)]),
    recv_seq=st.booleans(), send_seq=st.booleans(), lns_mode=st.booleans(),
    reorder_timeout=st.sampled_from([0.0, 0.0, 0.5]),
    q_max=st.sampled_from([1024, 2]),
)
small_ns = st.one_of(st.integers(0, 6), st.integers(0, 0xFFFFFF))


@st.composite
def v3_body(draw: st.DrawFn, world_cfg: tuple[SessionConfig, SessionConfig]) -> bytes:
    """Session id onwards: a session's cookie (or a wrong one), a sublayer, a payload."""
    index = draw(st.sampled_from([0, 0, 0, 1, 2, 3]))
    sid = (*SIDS, 103)[index]
    cfg = world_cfg[min(index, 1)]
    cookie = draw(st.sampled_from([cfg.cookie, cfg.cookie, b"", b"\x99" * 4, b"\x99" * 8]))
    body = struct.pack(">I", sid) + cookie
    if draw(st.booleans()):
        if draw(st.booleans()):
            body += struct.pack(">I", 0x40000000 | (draw(small_ns) & 0xFFFFFF))
        else:
            body += struct.pack(">I", draw(st.integers(0, 0xFFFFFFFF)))
    body += draw(st.binary(max_size=20))
    return body


@st.composite
def udp_datagram(draw: st.DrawFn, version: int,
                 world_cfg: tuple[SessionConfig, SessionConfig]) -> bytes:
    kind = draw(st.sampled_from(["data"] * 8 + ["control", "garbage"]))
    if kind == "garbage":
        return draw(st.binary(max_size=24))
    if kind == "control":
        return b"\xc8\x02" + draw(st.binary(max_size=16))
    ver = draw(st.sampled_from([version] * 6 + [2, 3, 5]))
    if ver == 3:
        data = b"\x00\x03\x00\x00" + draw(v3_body(world_cfg))
    else:
        flags = 0x0002
        head = b""
        if draw(st.booleans()):
            flags |= 0x4000
            head += b"\x00\x00"
        index = draw(st.sampled_from([0, 0, 0, 1, 2, 3]))
        sid = (*SIDS, 103)[index]
        tid = TUNNEL_OF.get(sid, TID) if draw(st.integers(0, 9)) else TID + 7
        head += struct.pack(">HH", tid, sid)
        if draw(st.booleans()):
            flags |= 0x0800
            head += struct.pack(">HH", draw(small_ns) & 0xFFFF, 0)
        if draw(st.integers(0, 5)) == 0:
            flags |= 0x0200
            pad = draw(st.binary(max_size=4))
            head += struct.pack(">H", draw(st.sampled_from([len(pad), 40]))) + pad
        data = struct.pack(">H", flags) + head + draw(st.binary(max_size=20))
    if draw(st.integers(0, 6)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return data


@st.composite
def ip_datagram(draw: st.DrawFn, world_cfg: tuple[SessionConfig, SessionConfig]) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        body = b"\x00\x00\x00\x00" + draw(st.binary(max_size=12))  # control
    else:
        body = draw(v3_body(world_cfg))
    if draw(st.integers(0, 6)) == 0:
        body = body[:draw(st.integers(0, len(body)))]
    return body


def ipv4_header(src: str, options: int = 0, version: int = 4) -> bytes:
    ihl = 5 + options
    return (bytes([(version << 4) | ihl, 0]) + b"\x00\x00" * 3 + b"\x40\x73\x00\x00"
            + socket.inet_aton(src) + socket.inet_aton(LOCAL4) + b"\x00" * 4 * options)


@pytest.fixture(autouse=True)
def clock() -> Iterator[Clock]:
    c = Clock()
    with mock.patch.object(userspace, "time", c):
        yield c


def run_stream(version: int, encap: EncapType, family: int,
               cfg: tuple[SessionConfig, SessionConfig], peer_socket: bool,
               stream: list[tuple[bytes, int, float]], clock: Clock) -> None:
    a, b = build(version, encap, family, cfg), build(version, encap, family, cfg)
    fast, ref = Fast(a, peer_socket), Reference(b)
    v4 = family == socket.AF_INET
    # Tunnel TID's peer, its host on another port, tunnel TID2's peer, a stranger.
    sources = [((PEER4 if v4 else PEER6), PEER_PORT), ((PEER4 if v4 else PEER6), PEER_PORT + 1),
               ((OTHER4 if v4 else OTHER6), PEER_PORT), ((THIRD4 if v4 else THIRD6), PEER_PORT)]
    try:
        for data, source, dt in stream:
            clock.now += dt
            if encap == EncapType.UDP:
                addr = sources[source]
                fast.udp(data, addr)
                ref.udp(data, addr, clock.now)
            else:
                host = sources[source][0]
                if family == socket.AF_INET:
                    options = 1 if source == 1 else 0
                    data = ipv4_header(host, options, 4 if dt < 0.9 else 6) + data
                fast.ip(data, (host, 0))
                ref.ip(data, (host, 0), clock.now, family == socket.AF_INET)
            assert_same(a, fast, b, ref)
    finally:
        fast.close()


SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@SETTINGS
@given(data=st.data(), version=st.sampled_from([2, 3]), peer_socket=st.booleans(),
       cfg=st.tuples(configs, configs))
def test_udp_receive_matches_general_path(data: st.DataObject, version: int,
                                          peer_socket: bool,
                                          cfg: tuple[SessionConfig, SessionConfig],
                                          clock: Clock) -> None:
    stream = data.draw(st.lists(st.tuples(udp_datagram(version, cfg),
                                          st.sampled_from([0, 0, 0, 0, 1, 2, 2, 3]),
                                          st.sampled_from([0.0, 0.0, 0.1, 0.7, 1.5])),
                                max_size=30))
    run_stream(version, EncapType.UDP, socket.AF_INET, cfg, peer_socket, stream, clock)


@SETTINGS
@given(data=st.data(), family=st.sampled_from([socket.AF_INET, socket.AF_INET6]),
       cfg=st.tuples(configs, configs))
def test_ip_receive_matches_general_path(data: st.DataObject, family: int,
                                         cfg: tuple[SessionConfig, SessionConfig],
                                         clock: Clock) -> None:
    stream = data.draw(st.lists(st.tuples(ip_datagram(cfg),
                                          st.sampled_from([0, 0, 0, 1, 2, 2, 3]),
                                          st.sampled_from([0.0, 0.0, 0.1, 0.7, 0.95, 1.5])),
                                max_size=30))
    run_stream(3, EncapType.IP, family, cfg, False, stream, clock)


@pytest.mark.parametrize(("version", "encap"), [(2, EncapType.UDP), (3, EncapType.UDP),
                                               (3, EncapType.IP)])
@pytest.mark.parametrize("peer_socket", [False, True])
def test_unsequenced_packet_waits_behind_held_ones(version: int, encap: EncapType,
                                                   peer_socket: bool, clock: Clock) -> None:
    """A plain LNS session (not sending sequence numbers) that receives them holds
    out-of-order packets; an unsequenced packet must then queue behind them, not overtake
    them on the fast path."""
    lns = SessionConfig(l2spec=int(L2SpecType.DEFAULT), lns_mode=True, reorder_timeout=0.5)

    def pkt(ns: int | None, payload: bytes) -> bytes:
        if version == 3:
            word = 0 if ns is None else 0x40000000 | ns
            head = b"\x00\x03\x00\x00" if encap == EncapType.UDP else b""
            return head + struct.pack(">II", SIDS[0], word) + payload
        if ns is None:
            return struct.pack(">HHH", 0x0002, TID, SIDS[0]) + payload
        return struct.pack(">HHHHH", 0x0802, TID, SIDS[0], ns, 0) + payload

    stream = [(pkt(0, b"zero"), 0, 0.0), (pkt(2, b"two"), 0, 0.0), (pkt(None, b"plain"), 0, 0.0),
              (pkt(1, b"one"), 0, 0.1), (pkt(None, b"after"), 0, 0.0)]
    run_stream(version, encap, socket.AF_INET, (lns, lns), peer_socket, stream, clock)


def test_plain_packets_take_the_fast_path(clock: Clock) -> None:
    """The stream the benchmark sends: recv_common is never entered, and what it would
    have counted is counted."""
    plain = SessionConfig(l2spec=int(L2SpecType.DEFAULT))
    a = build(3, EncapType.UDP, socket.AF_INET, (plain, plain))
    fast = Fast(a, with_peer_socket=True)
    frame = bytes(range(60))
    pkt = b"\x00\x03\x00\x00" + struct.pack(">I", SIDS[0]) + b"\x00\x00\x00\x00" + frame
    with mock.patch.object(recv, "recv_common", side_effect=AssertionError):
        for _ in range(3):
            fast.udp(pkt, a.tunnel.peer_addr)
    s = a.tunnel.sessions[SIDS[0]]
    assert [bytes(p) for p in a.delivered[SIDS[0]]] == [frame] * 3
    assert s.stats.as_dict() == {**dict.fromkeys(STATS_FIELDS, 0), "rx_packets": 3,
                                 "rx_bytes": 3 * len(pkt)}
    assert a.tunnel.stats.as_dict() == s.stats.as_dict()
    assert fast.ep.counters() == {**dict.fromkeys(ENDPOINT_COUNTERS, 0), "rx_datagrams": 3}
    fast.close()


def test_delivered_frames_do_not_alias_the_receive_buffer(clock: Clock) -> None:
    a = build(3, EncapType.UDP, socket.AF_INET, (SessionConfig(), SessionConfig()))
    fast = Fast(a, with_peer_socket=True)
    head = b"\x00\x03\x00\x00" + struct.pack(">I", SIDS[0])
    fast.udp(head + b"first", a.tunnel.peer_addr)
    fast.udp(head + b"XXXXXXXXXX", a.tunnel.peer_addr)
    first = a.delivered[SIDS[0]][0]
    assert isinstance(first, bytes | bytearray) and bytes(first) == b"first"
    fast.close()


# -- what the fast paths rely on --------------------------------------------------------------


@pytest.mark.parametrize(("version", "cfg", "expected"), [
    (2, SessionConfig(), 0),
    (2, SessionConfig(recv_seq=True), -1),
    (2, SessionConfig(send_seq=True), -1),
    (3, SessionConfig(), 0),
    (3, SessionConfig(l2spec=int(L2SpecType.DEFAULT)), 4),
    (3, SessionConfig(l2spec=int(L2SpecType.ATM)), 0),
    (3, SessionConfig(cookie=b"abcd"), -1),
    (3, SessionConfig(l2spec=int(L2SpecType.DEFAULT), lns_mode=True, reorder_timeout=1), 4),
])
def test_set_fast_path(version: int, cfg: SessionConfig, expected: int) -> None:
    world = build(version, EncapType.UDP, socket.AF_INET, (cfg, cfg))
    assert world.tunnel.sessions[SIDS[0]].rx_plain == expected


def test_modify_and_following_the_lns_recompute_fast_path_and_header() -> None:
    world = build(3, EncapType.UDP, socket.AF_INET,
                  (SessionConfig(l2spec=int(L2SpecType.DEFAULT)), SessionConfig()))
    s = world.tunnel.sessions[SIDS[0]]
    assert s.rx_plain == 4 and s.tx_header == s.tx_prefix + b"\x00\x00\x00\x00"
    s.send_seq = True
    world.reg.modified(s)
    assert s.rx_plain == -1 and s.tx_header is None
    # An LNS that stops sequencing: the LAC follows, and is plain again.
    pkt = b"\x00\x03\x00\x00" + struct.pack(">I", SIDS[0]) + b"\x00\x00\x00\x00frame"
    recv.recv_common(s, pkt, 8, 0, len(pkt), 0.0)
    assert not s.send_seq and s.rx_plain == 4 and s.tx_header is not None
    s.recv_seq = True
    world.reg.modified(s)
    assert s.rx_plain == -1


@given(version=st.sampled_from([2, 3]), encap=st.sampled_from([EncapType.UDP, EncapType.IP]),
       cfg=configs)
def test_tx_header_is_what_header_returns(version: int, encap: EncapType,
                                          cfg: SessionConfig) -> None:
    if version == 2:
        encap = EncapType.UDP
    world = build(version, encap, socket.AF_INET, (cfg, cfg))
    s = world.tunnel.sessions[SIDS[0]]
    constant = s.tx_header
    first, second = xmit.header(s), xmit.header(s)
    if constant is None:
        assert first != second  # a sequence number is consumed per packet
    else:
        assert constant == first == second
        assert len(constant) == s.hdr_len


def test_ppp_channel_hands_bytes_without_the_address_and_control_field() -> None:
    world = build(2, EncapType.UDP, socket.AF_INET, (SessionConfig(), SessionConfig()))
    s = world.tunnel.sessions[SIDS[0]]
    sent: list[bytes] = []

    class Backend:
        def transmit(self, _session: Session, payload: bytes) -> None:
            sent.append(payload)

    channel = PppChannel(Backend(), s)  # type: ignore[arg-type]
    frames: list[bytes] = []
    channel.on_frame = frames.append
    for payload in (bytearray(b"\xff\x03\x00\x21ip"), b"\xff\x03\xc0\x21lcp",
                    bytearray(b"\x00\x57ip6"), b"\x21ip"):
        s.deliver(payload)
    assert frames == [b"\x00\x21ip", b"\xc0\x21lcp", b"\x00\x57ip6", b"\x21ip"]
    assert all(type(f) is bytes for f in frames)
    channel.send_protocol(b"\x00\x21", b"packet")
    channel.send(b"\x00\x21packet")
    assert sent == [b"\xff\x03\x00\x21packet"] * 2
