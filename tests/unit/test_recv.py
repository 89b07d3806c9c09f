"""The data-plane receive core against the kernel's ``l2tp_recv_common`` rules, on a virtual clock.

Sessions are built directly from the model; ``session.deliver`` is a list's ``append`` so the
tests see exactly what the pseudowire would get. Time is a plain float passed to every call.
"""

from __future__ import annotations

import math
import socket
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyl2tp.dataplane import xmit
from pyl2tp.dataplane.model import STATS_FIELDS, Session, Stats, Tunnel
from pyl2tp.dataplane.recv import handle_timer, next_deadline, purge, recv_common
from pyl2tp.wire.constants import EncapType, L2SpecType, PwType

V2_MAX = 0xFFFF
V3_MAX = 0xFFFFFF
TID, PEER_TID, SID, PEER_SID = 11, 22, 33, 44


class Rig:
    """One tunnel and one session whose deliveries land in ``self.delivered``."""

    def __init__(
        self,
        version: int = 2,
        encap: EncapType = EncapType.UDP,
        **session_kw: Any,
    ) -> None:
        self.tunnel = Tunnel(
            TID,
            PEER_TID,
            version,
            encap,
            family=socket.AF_INET,
            local="192.0.2.1",
            remote="192.0.2.2",
            udp_sport=1701,
            udp_dport=1701,
        )
        self.session = Session(self.tunnel, SID, PEER_SID, PwType.PPP, **session_kw)
        self.tunnel.sessions[SID] = self.session
        self.delivered: list[bytes] = []
        self.session.deliver = self.delivered.append
        xmit.set_header(self.session)
        self.calls = 0

    @property
    def max(self) -> int:
        return self.session.nr_max

    def establish(self, nr: int) -> None:
        """Put the session in the state a stream of in-order packets up to ``nr - 1`` leaves."""
        self.session.nr = nr & self.max
        self.session.reorder_skip = False

    def v2(
        self,
        payload: bytes,
        ns: int | None = None,
        *,
        offset: bytes | None = None,
        now: float = 0.0,
        cut: int | None = None,
    ) -> None:
        """Receive an L2TPv2 data packet; ``offset`` is the padding announced by the O bit."""
        flags = 0x0002
        body = b""
        if ns is not None:
            flags |= 0x0800
            body += struct.pack(">HH", ns & V2_MAX, 0)
        if offset is not None:
            flags |= 0x0200
            body += struct.pack(">H", len(offset)) + offset
        data = struct.pack(">HHH", flags, TID, SID) + body + payload
        if cut is not None:
            data = data[:cut]
        self.calls += 1
        recv_common(self.session, data, 6, flags, len(data), now)

    def v3(
        self,
        payload: bytes,
        ns: int | None = None,
        *,
        cookie: bytes | None = None,
        now: float = 0.0,
        cut: int | None = None,
    ) -> None:
        """Receive an L2TPv3 data packet; the sublayer is present iff the session expects it."""
        head = b"\x00\x03\x00\x00" if self.tunnel.encap == EncapType.UDP else b""
        data = head + struct.pack(">I", SID)
        ptr = len(data)
        data += self.session.peer_cookie if cookie is None else cookie
        if self.session.l2spec_type == L2SpecType.DEFAULT:
            data += struct.pack(">I", 0 if ns is None else 0x40000000 | (ns & V3_MAX))
        data += payload
        if cut is not None:
            data = data[:cut]
        self.calls += 1
        recv_common(self.session, data, ptr, 0, len(data), now)

    def rx(self, payload: bytes, ns: int | None = None, *, now: float = 0.0) -> None:
        """Receive a sequenced (or not) packet in whichever version the rig speaks."""
        if self.tunnel.version == 2:
            self.v2(payload, ns, now=now)
        else:
            self.v3(payload, ns, now=now)

    def held(self) -> list[int]:
        return [entry[0] for entry in self.session.reorder_q]


def assert_counters(stats: Stats, **expected: int) -> None:
    """Every counter, not only the interesting ones: the rest must be exactly 0."""
    want = dict.fromkeys(STATS_FIELDS, 0)
    want.update(expected)
    assert stats.as_dict() == want


def v2_len(payload: bytes, seq: bool = True) -> int:
    return 6 + (4 if seq else 0) + len(payload)


def seq_rig(version: int, **kw: Any) -> Rig:
    if version == 3:
        kw.setdefault("l2spec_type", L2SpecType.DEFAULT)
    return Rig(version, **kw)


def pkt_len(rig: Rig, payload: bytes, seq: bool = True) -> int:
    if rig.tunnel.version == 2:
        return v2_len(payload, seq)
    return 8 + len(rig.session.peer_cookie) + 4 + len(payload)


# --- unsequenced fast path -------------------------------------------------------------------


def test_v2_unsequenced_delivery_counts_tunnel_and_session() -> None:
    rig = Rig(2)
    rig.v2(b"\xff\x03\xc0\x21abc")
    rig.v2(b"")
    assert rig.delivered == [b"\xff\x03\xc0\x21abc", b""]
    assert_counters(rig.session.stats, rx_packets=2, rx_bytes=13 + 6)
    assert_counters(rig.tunnel.stats, rx_packets=2, rx_bytes=13 + 6)
    assert rig.session.nr == 0
    assert rig.session.reorder_skip is True
    assert next_deadline(rig.session) is None


@pytest.mark.parametrize("encap", [EncapType.UDP, EncapType.IP])
def test_v3_without_sublayer_delivers_after_session_id(encap: EncapType) -> None:
    rig = Rig(3, encap)
    rig.v3(b"frame")
    assert rig.delivered == [b"frame"]
    size = (8 if encap == EncapType.UDP else 4) + 5
    assert_counters(rig.session.stats, rx_packets=1, rx_bytes=size)
    assert_counters(rig.tunnel.stats, rx_packets=1, rx_bytes=size)


def test_v3_sublayer_is_skipped_even_without_s_bit() -> None:
    rig = Rig(3, l2spec_type=L2SpecType.DEFAULT)
    rig.v3(b"frame")
    assert rig.delivered == [b"frame"]
    assert rig.session.reorder_skip is True
    assert_counters(rig.session.stats, rx_packets=1, rx_bytes=8 + 4 + 5)


def test_length_argument_is_what_rx_bytes_counts() -> None:
    rig = Rig(2)
    data = struct.pack(">HHH", 0x0002, TID, SID) + b"xyz"
    recv_common(rig.session, data, 6, 0x0002, 1000, 0.0)
    assert rig.delivered == [b"xyz"]
    assert_counters(rig.session.stats, rx_packets=1, rx_bytes=1000)
    assert_counters(rig.tunnel.stats, rx_packets=1, rx_bytes=1000)


# --- sequence numbers: first packet, in order, window -----------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_first_sequenced_packet_sets_nr(version: int) -> None:
    rig = seq_rig(version)
    rig.rx(b"a", 100)
    assert rig.delivered == [b"a"]
    assert rig.session.nr == 101
    assert rig.session.reorder_skip is False
    assert_counters(rig.session.stats, rx_packets=1, rx_bytes=pkt_len(rig, b"a"))


@pytest.mark.parametrize("version", [2, 3])
def test_first_packet_outside_window_of_zero_is_dropped(version: int) -> None:
    # Kernel order: the window check uses nr = 0 before reorder_skip resynchronises.
    rig = seq_rig(version)
    half = rig.max // 2
    rig.rx(b"far", half)
    assert rig.delivered == []
    assert_counters(rig.session.stats, rx_errors=1)
    assert rig.session.reorder_skip is True
    rig.rx(b"near", half - 1)
    assert rig.delivered == [b"near"]
    assert rig.session.nr == half


@pytest.mark.parametrize("version", [2, 3])
def test_in_order_delivery_across_wrap(version: int) -> None:
    rig = seq_rig(version)
    start = rig.max - 3
    rig.establish(start)
    for i in range(8):
        rig.rx(bytes([i]), (start + i) & rig.max, now=i * 0.01)
    assert rig.delivered == [bytes([i]) for i in range(8)]
    assert rig.session.nr == 4
    assert_counters(rig.session.stats, rx_packets=8, rx_bytes=8 * pkt_len(rig, b"x"))
    assert_counters(rig.tunnel.stats, rx_packets=8, rx_bytes=8 * pkt_len(rig, b"x"))


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("nr_from_top", [None, 0, 1, 10])
def test_window_edges(version: int, nr_from_top: int | None) -> None:
    """Half the space ahead (exclusive) is new; everything else, including nr - 1, is old."""
    probe = seq_rig(version)
    top = probe.max
    window = top // 2
    nr = 100 if nr_from_top is None else top - nr_from_top
    cases = [
        ((nr + window - 1) & top, True),
        ((nr + window) & top, False),
        ((nr + window + 1) & top, False),
        ((nr - 1) & top, False),
        ((nr + 1) & top, True),
    ]
    for ns, accepted in cases:
        rig = seq_rig(version, reorder_timeout=1.0)
        rig.establish(nr)
        rig.rx(b"p", ns)
        assert rig.delivered == []
        if accepted:
            assert rig.held() == [ns]
            assert_counters(rig.session.stats)
        else:
            assert rig.held() == []
            assert_counters(rig.session.stats, rx_errors=1)
    rig = seq_rig(version, reorder_timeout=1.0)
    rig.establish(nr)
    rig.rx(b"p", nr)
    assert rig.delivered == [b"p"]
    assert rig.session.nr == (nr + 1) & top


def test_v2_window_wraps_at_16_bits_and_v3_at_24() -> None:
    v2 = seq_rig(2, reorder_timeout=1.0)
    v2.establish(0xFFF0)
    v2.rx(b"x", 0x7FEE)  # 0xFFF0 + 0x7FFE, wrapped
    assert v2.held() == [0x7FEE]
    v2.rx(b"y", 0x7FEF)  # 0xFFF0 + 0x7FFF: outside
    assert v2.held() == [0x7FEE]
    assert_counters(v2.session.stats, rx_errors=1)

    v3 = seq_rig(3, reorder_timeout=1.0)
    v3.establish(0xFFFFF0)
    v3.rx(b"x", 0x7FFFEE)
    assert v3.held() == [0x7FFFEE]
    v3.rx(b"y", 0x7FFFEF)
    assert v3.held() == [0x7FFFEE]
    assert_counters(v3.session.stats, rx_errors=1)


# --- reordering ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_reorder_holds_until_gap_fills(version: int) -> None:
    rig = seq_rig(version, reorder_timeout=0.1)
    rig.rx(b"9", 9, now=0.0)
    rig.rx(b"12", 12, now=0.01)
    assert rig.held() == [12]
    rig.rx(b"11", 11, now=0.02)
    assert rig.held() == [11, 12]
    assert rig.delivered == [b"9"]
    rig.rx(b"10", 10, now=0.03)
    assert rig.delivered == [b"9", b"10", b"11", b"12"]
    assert rig.held() == []
    assert rig.session.nr == 13
    rig.rx(b"13", 13, now=0.04)
    assert rig.delivered[-1] == b"13"
    size = pkt_len(rig, b"9") + 4 * pkt_len(rig, b"12")
    assert_counters(rig.session.stats, rx_packets=5, rx_bytes=size, rx_oos_packets=2)
    assert_counters(rig.tunnel.stats, rx_packets=5, rx_bytes=size)


def test_expiry_reaped_by_later_packet_drops_all_expired() -> None:
    rig = seq_rig(2, reorder_timeout=0.1)
    rig.establish(10)
    rig.rx(b"11", 11, now=0.0)
    rig.rx(b"12", 12, now=0.05)
    rig.rx(b"13", 13, now=0.2)  # both held packets have expired by now
    assert rig.delivered == [b"13"]
    assert rig.session.nr == 14
    assert rig.session.reorder_skip is False
    assert_counters(
        rig.session.stats, rx_packets=1, rx_bytes=v2_len(b"13"), rx_seq_discards=2, rx_errors=2
    )


def test_expiry_reaped_by_later_packet_resyncs_on_survivor() -> None:
    rig = seq_rig(2, reorder_timeout=0.1)
    rig.establish(10)
    rig.rx(b"11", 11, now=0.0)
    rig.rx(b"12", 12, now=0.05)
    rig.rx(b"14", 14, now=0.12)  # only 11 expired: nr resyncs to 12, then waits for 13
    assert rig.delivered == [b"12"]
    assert rig.held() == [14]
    assert rig.session.nr == 13
    assert_counters(
        rig.session.stats, rx_packets=1, rx_bytes=v2_len(b"12"), rx_seq_discards=1, rx_errors=1
    )


def test_timer_releases_held_packets_without_traffic() -> None:
    rig = seq_rig(3, reorder_timeout=0.1)
    rig.establish(10)
    rig.rx(b"11", 11, now=0.0)
    rig.rx(b"12", 12, now=0.05)
    deadline = next_deadline(rig.session)
    assert deadline == math.nextafter(0.1, math.inf)
    handle_timer(rig.session, 0.05)
    handle_timer(rig.session, 0.1)  # expiry is strictly after `expires`, as time_after()
    assert rig.held() == [11, 12]
    assert deadline is not None
    handle_timer(rig.session, deadline)
    assert rig.delivered == [b"12"]
    assert rig.held() == []
    assert rig.session.nr == 13
    assert next_deadline(rig.session) is None
    size = pkt_len(rig, b"12")
    assert_counters(rig.session.stats, rx_packets=1, rx_bytes=size, rx_seq_discards=1, rx_errors=1)
    assert_counters(rig.tunnel.stats, rx_packets=1, rx_bytes=size)
    handle_timer(rig.session, 5.0)  # nothing held: nothing happens
    assert_counters(rig.session.stats, rx_packets=1, rx_bytes=size, rx_seq_discards=1, rx_errors=1)


def test_next_deadline_follows_the_head_not_the_earliest_packet() -> None:
    # The later number arrived first, so it expires first, but the walk is blocked on the head.
    rig = seq_rig(2, reorder_timeout=0.1)
    rig.establish(10)
    rig.rx(b"12", 12, now=0.0)
    rig.rx(b"11", 11, now=0.05)
    assert rig.held() == [11, 12]
    deadline = next_deadline(rig.session)
    assert deadline == math.nextafter(0.05 + 0.1, math.inf)
    handle_timer(rig.session, 0.12)
    assert rig.held() == [11, 12]
    assert deadline is not None
    handle_timer(rig.session, deadline)
    assert rig.delivered == []
    assert rig.held() == []
    assert rig.session.reorder_skip is True
    assert_counters(rig.session.stats, rx_oos_packets=1, rx_seq_discards=2, rx_errors=2)


def test_timer_deadline_loop_terminates() -> None:
    rig = seq_rig(2, reorder_timeout=0.1)
    rig.establish(0)
    for i, ns in enumerate([5, 3, 9, 7, 2]):
        rig.rx(bytes([ns]), ns, now=i * 0.03)
    steps = 0
    while (deadline := next_deadline(rig.session)) is not None:
        handle_timer(rig.session, deadline)
        steps += 1
        assert steps < 10
    assert rig.held() == []
    stats: Any = rig.session.stats
    assert stats.rx_packets + stats.rx_seq_discards == 5
    assert stats.rx_errors == stats.rx_seq_discards


def test_reorder_sorts_across_the_wrap() -> None:
    # 0 arrives before 65535 and 65534. The kernel's plain compare would keep 0 at the head,
    # blocking until it expired and was lost; sorting by distance ahead of nr delivers all.
    rig = seq_rig(2, reorder_timeout=0.1)
    rig.establish(0xFFFE)
    rig.rx(b"0", 0, now=0.0)
    rig.rx(b"ffff", 0xFFFF, now=0.01)
    assert rig.held() == [0xFFFF, 0]
    rig.rx(b"fffe", 0xFFFE, now=0.02)
    assert rig.held() == []
    assert rig.delivered == [b"fffe", b"ffff", b"0"]
    assert rig.session.nr == 1
    assert_counters(
        rig.session.stats,
        rx_packets=3,
        rx_bytes=v2_len(b"fffe") + v2_len(b"ffff") + v2_len(b"0"),
        rx_oos_packets=2,
    )


def test_unsequenced_packet_waits_behind_held_ones() -> None:
    rig = seq_rig(2, reorder_timeout=0.1, lns_mode=True)
    rig.establish(10)
    rig.v2(b"12", 12)
    rig.v2(b"plain")
    assert rig.held() == [12, 0]
    rig.v2(b"11", 11)
    rig.v2(b"10", 10)
    assert rig.delivered == [b"10", b"11", b"12", b"plain"]
    assert rig.session.nr == 13
    assert_counters(
        rig.session.stats,
        rx_packets=4,
        rx_bytes=3 * v2_len(b"12") + v2_len(b"plain", seq=False),
        rx_oos_packets=2,
    )


def test_without_reordering_a_waiting_packet_is_held_one_second() -> None:
    rig = seq_rig(2, reorder_timeout=0.1, lns_mode=True)
    rig.establish(10)
    rig.v2(b"12", 12, now=0.0)
    rig.session.reorder_timeout = 0.0
    rig.v2(b"plain", now=0.0)
    assert [entry[2] for entry in rig.session.reorder_q] == [0.1, 1.0]
    deadline = next_deadline(rig.session)
    assert deadline is not None
    handle_timer(rig.session, deadline)
    assert rig.delivered == [b"plain"]
    assert_counters(
        rig.session.stats,
        rx_packets=1,
        rx_bytes=v2_len(b"plain", seq=False),
        rx_seq_discards=1,
        rx_errors=1,
    )


def test_queue_bound_refuses_the_excess_but_never_the_gap_filler() -> None:
    rig = seq_rig(2, reorder_timeout=0.5)
    rig.session.reorder_q_max = 3
    rig.establish(10)
    for ns in (12, 13, 14):
        rig.v2(bytes([ns]), ns)
    rig.v2(b"15", 15)
    assert rig.held() == [12, 13, 14]
    assert_counters(rig.session.stats, rx_seq_discards=1, rx_errors=1)
    rig.v2(b"\x0b", 11)  # the queue is full and 10 is still missing: 11 would stay held
    assert rig.held() == [12, 13, 14]
    assert_counters(rig.session.stats, rx_seq_discards=2, rx_errors=2, rx_oos_packets=1)
    rig.v2(b"\x0a", 10)
    assert rig.delivered == [b"\x0a"]
    assert rig.held() == [12, 13, 14]
    rig.v2(b"\x0b", 11)  # the queue is full, but this one releases it all
    assert rig.delivered == [b"\x0a", b"\x0b", b"\x0c", b"\x0d", b"\x0e"]
    assert rig.held() == []
    assert rig.session.nr == 15
    assert_counters(
        rig.session.stats,
        rx_packets=5,
        rx_bytes=5 * v2_len(b"x"),
        rx_seq_discards=2,
        rx_errors=2,
        rx_oos_packets=3,
    )


def test_queue_bound_lets_gap_filler_through_when_full() -> None:
    rig = seq_rig(2, reorder_timeout=0.5)
    rig.session.reorder_q_max = 2
    rig.establish(10)
    rig.v2(b"11", 11)
    rig.v2(b"12", 12)
    rig.v2(b"10", 10)
    assert rig.delivered == [b"10", b"11", b"12"]
    assert_counters(rig.session.stats, rx_packets=3, rx_bytes=3 * v2_len(b"10"), rx_oos_packets=1)


# --- resynchronisation with reordering off ---------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_resync_after_five_consecutive_out_of_sequence(version: int) -> None:
    rig = seq_rig(version)
    rig.rx(b"9", 9)
    for ns in range(100, 105):
        rig.rx(bytes([ns]), ns)
    assert rig.delivered == [b"9"]
    assert rig.session.nr_oos == 104
    assert rig.session.nr_oos_count == 4
    assert_counters(
        rig.session.stats,
        rx_packets=1,
        rx_bytes=pkt_len(rig, b"9"),
        rx_seq_discards=5,
        rx_errors=5,
    )
    rig.rx(b"105", 105)
    rig.rx(b"106", 106)
    assert rig.delivered == [b"9", b"105", b"106"]
    assert rig.session.nr == 107
    assert_counters(
        rig.session.stats,
        rx_packets=3,
        rx_bytes=pkt_len(rig, b"9") + 2 * pkt_len(rig, b"105"),
        rx_seq_discards=5,
        rx_errors=5,
    )


def test_resync_count_restarts_on_a_non_consecutive_packet() -> None:
    rig = seq_rig(2)
    rig.establish(10)
    for ns in (100, 101, 102, 200, 201, 202, 203, 204):
        rig.v2(b"x", ns)
    assert rig.delivered == []
    assert rig.session.nr_oos_count == 4
    assert_counters(rig.session.stats, rx_seq_discards=8, rx_errors=8)
    rig.v2(b"x", 205)
    assert rig.delivered == [b"x"]
    assert rig.session.nr == 206


def test_out_of_window_without_reordering_is_not_a_seq_discard() -> None:
    rig = seq_rig(2)
    rig.establish(10)
    rig.v2(b"old", 9)
    assert_counters(rig.session.stats, rx_errors=1)
    assert rig.session.nr_oos == 0


# --- who sends sequence numbers ----------------------------------------------------------


def test_v2_lac_follows_lns_sequencing_on_and_off() -> None:
    rig = Rig(2)
    s = rig.session
    plain = struct.pack(">HHH", 0x0002, PEER_TID, PEER_SID)
    assert xmit.header(s) == plain
    rig.v2(b"a", 0)
    assert s.send_seq is True
    assert s.hdr_len == 10
    assert xmit.header(s) == struct.pack(">HHHHH", 0x0802, PEER_TID, PEER_SID, 0, 0)
    assert xmit.header(s) == struct.pack(">HHHHH", 0x0802, PEER_TID, PEER_SID, 1, 0)
    rig.v2(b"b")
    assert s.send_seq is False
    assert s.hdr_len == 6
    assert xmit.header(s) == plain
    rig.v2(b"c", 1)
    # Re-enabled sequencing continues where it left off (RFC 2661 §5.4).
    assert xmit.header(s) == struct.pack(">HHHHH", 0x0802, PEER_TID, PEER_SID, 2, 0)
    assert rig.delivered == [b"a", b"b", b"c"]
    assert_counters(s.stats, rx_packets=3, rx_bytes=v2_len(b"a") * 2 + v2_len(b"b", seq=False))


def test_v3_lac_follows_lns_sequencing() -> None:
    rig = Rig(3, l2spec_type=L2SpecType.DEFAULT, cookie=b"\x01\x02\x03\x04")
    s = rig.session
    prefix = b"\x00\x03\x00\x00" + struct.pack(">I", PEER_SID) + b"\x01\x02\x03\x04"
    assert xmit.header(s) == prefix + b"\x00\x00\x00\x00"
    rig.v3(b"a", 7)
    assert s.send_seq is True
    assert xmit.header(s) == prefix + struct.pack(">I", 0x40000000)
    rig.v3(b"b")
    assert s.send_seq is False
    assert xmit.header(s) == prefix + b"\x00\x00\x00\x00"
    assert rig.delivered == [b"a", b"b"]


def test_v3_without_sublayer_lac_stops_sending_seq() -> None:
    rig = Rig(3, send_seq=True)
    rig.v3(b"a")
    assert rig.session.send_seq is False
    assert rig.delivered == [b"a"]


def test_lns_discards_unsequenced_while_sending_seq() -> None:
    rig = Rig(2, lns_mode=True, send_seq=True)
    rig.v2(b"a")
    assert rig.session.send_seq is True
    assert rig.delivered == []
    assert_counters(rig.session.stats, rx_seq_discards=1, rx_errors=1)
    rig.v2(b"b", 0)
    assert rig.delivered == [b"b"]
    assert xmit.header(rig.session)[:2] == b"\x08\x02"


def test_lns_does_not_follow_the_peer() -> None:
    rig = Rig(2, lns_mode=True)
    rig.v2(b"a", 0)
    assert rig.session.send_seq is False
    rig.v2(b"b")
    assert rig.session.send_seq is False
    assert rig.delivered == [b"a", b"b"]
    assert_counters(
        rig.session.stats, rx_packets=2, rx_bytes=v2_len(b"a") + v2_len(b"b", seq=False)
    )


@pytest.mark.parametrize("lns_mode", [False, True])
def test_recv_seq_discards_unsequenced(lns_mode: bool) -> None:
    rig = Rig(2, recv_seq=True, send_seq=True, lns_mode=lns_mode)
    rig.v2(b"a")
    assert rig.delivered == []
    assert rig.session.send_seq is True  # checked before the LAC would stop sequencing
    assert_counters(rig.session.stats, rx_seq_discards=1, rx_errors=1)
    rig.v2(b"b", 0)
    assert rig.delivered == [b"b"]
    assert_counters(
        rig.session.stats, rx_packets=1, rx_bytes=v2_len(b"b"), rx_seq_discards=1, rx_errors=1
    )


def test_recv_seq_v3_requires_the_s_bit() -> None:
    rig = Rig(3, l2spec_type=L2SpecType.DEFAULT, recv_seq=True)
    rig.v3(b"a")
    assert_counters(rig.session.stats, rx_seq_discards=1, rx_errors=1)
    rig.v3(b"b", 0)
    assert rig.delivered == [b"b"]


# --- cookies ---------------------------------------------------------------------------


@pytest.mark.parametrize("cookie", [b"\xde\xad\xbe\xef", b"\x01\x02\x03\x04\x05\x06\x07\x08"])
@pytest.mark.parametrize("encap", [EncapType.UDP, EncapType.IP])
def test_cookie_match_and_mismatch(cookie: bytes, encap: EncapType) -> None:
    rig = Rig(3, encap, peer_cookie=cookie, l2spec_type=L2SpecType.DEFAULT)
    rig.v3(b"good", 0)
    assert rig.delivered == [b"good"]
    wrong = bytes(b ^ 0x80 for b in cookie)
    rig.v3(b"bad", 1, cookie=wrong)
    rig.v3(b"bad", 1, cookie=cookie[:-1] + bytes([cookie[-1] ^ 1]))
    assert rig.delivered == [b"good"]
    size = (8 if encap == EncapType.UDP else 4) + len(cookie) + 4 + 4
    assert_counters(
        rig.session.stats, rx_packets=1, rx_bytes=size, rx_cookie_discards=2, rx_errors=2
    )
    assert_counters(rig.tunnel.stats, rx_packets=1, rx_bytes=size)
    assert rig.session.nr == 1


def test_cookie_truncated_packet_is_an_error_not_a_cookie_discard() -> None:
    rig = Rig(3, peer_cookie=b"\x01\x02\x03\x04\x05\x06\x07\x08")
    rig.v3(b"", cut=8 + 5)
    assert_counters(rig.session.stats, rx_errors=1)
    rig2 = Rig(3, peer_cookie=b"\x01\x02\x03\x04", l2spec_type=L2SpecType.DEFAULT)
    rig2.v3(b"", cookie=b"\x09\x09\x09\x09", cut=8 + 4 + 2)  # wrong cookie, no room for sublayer
    assert_counters(rig2.session.stats, rx_errors=1)


# --- v2 offset and truncation -------------------------------------------------------------


def test_v2_offset_padding_is_skipped() -> None:
    rig = Rig(2)
    rig.v2(b"payload", offset=b"\x00\x00\x00")
    rig.v2(b"seqpay", 0, offset=b"")
    rig.v2(b"", 1, offset=b"\xaa")
    assert rig.delivered == [b"payload", b"seqpay", b""]
    assert_counters(
        rig.session.stats, rx_packets=3, rx_bytes=(6 + 2 + 3 + 7) + (10 + 2 + 6) + (10 + 2 + 1)
    )


def test_v2_offset_past_the_end_is_dropped() -> None:
    rig = Rig(2)
    data = struct.pack(">HHHH", 0x0202, TID, SID, 10) + b"abc"
    recv_common(rig.session, data, 6, 0x0202, len(data), 0.0)
    data = struct.pack(">HHH", 0x0202, TID, SID) + b"\x00"  # offset field cut in half
    recv_common(rig.session, data, 6, 0x0202, len(data), 0.0)
    assert rig.delivered == []
    assert_counters(rig.session.stats, rx_errors=2)


def test_v3_ignores_o_bit_in_hdrflags() -> None:
    rig = Rig(3)
    data = b"\x00\x03\x00\x00" + struct.pack(">I", SID) + b"\x00\x05abc"
    recv_common(rig.session, data, 8, 0x0200, len(data), 0.0)
    assert rig.delivered == [b"\x00\x05abc"]


def test_truncated_sequence_fields_are_dropped_before_any_state_change() -> None:
    rig = Rig(2)
    rig.v2(b"", 5, cut=6 + 2)  # Ns present, Nr missing
    rig.v2(b"", 5, cut=6)
    assert rig.session.send_seq is False
    v3 = Rig(3, l2spec_type=L2SpecType.DEFAULT)
    v3.v3(b"", 5, cut=8 + 3)
    v3.v3(b"", 5, cut=8)
    assert v3.session.send_seq is False
    assert rig.delivered == v3.delivered == []
    assert_counters(rig.session.stats, rx_errors=2)
    assert_counters(v3.session.stats, rx_errors=2)
    assert_counters(rig.tunnel.stats)


# --- session deletion and re-entrancy ---------------------------------------------------------


def test_purge_counts_each_held_packet() -> None:
    rig = seq_rig(2, reorder_timeout=1.0)
    rig.establish(10)
    rig.v2(b"12", 12)
    rig.v2(b"13", 13)
    purge(rig.session)
    assert rig.held() == []
    assert next_deadline(rig.session) is None
    assert_counters(rig.session.stats, rx_errors=2)
    purge(rig.session)
    assert_counters(rig.session.stats, rx_errors=2)


def test_deleting_the_session_from_its_deliver_handler_stops_the_walk() -> None:
    rig = seq_rig(2, reorder_timeout=1.0)
    rig.establish(10)
    rig.v2(b"11", 11)
    rig.v2(b"12", 12)

    def deliver_then_delete(payload: bytes) -> None:
        rig.delivered.append(payload)
        purge(rig.session)

    rig.session.deliver = deliver_then_delete
    rig.v2(b"10", 10)
    assert rig.delivered == [b"10"]
    assert rig.held() == []
    assert_counters(
        rig.session.stats, rx_packets=1, rx_bytes=v2_len(b"10"), rx_oos_packets=1, rx_errors=2
    )


def test_deliver_handler_may_reenter_receive() -> None:
    rig = seq_rig(2, reorder_timeout=1.0)
    rig.establish(10)
    rig.v2(b"12", 12)
    seen: list[bytes] = []

    def deliver(payload: bytes) -> None:
        seen.append(payload)
        if payload == b"10":
            rig.v2(b"11", 11)

    rig.session.deliver = deliver
    rig.v2(b"10", 10)
    assert seen == [b"10", b"11", b"12"]
    assert rig.session.nr == 13
    assert rig.held() == []


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    version=st.sampled_from([2, 3]),
    data=st.data(),
)
def test_property_permutations_within_timeout_deliver_in_order(
    version: int, data: st.DataObject
) -> None:
    rig = seq_rig(version, reorder_timeout=0.5)
    m = rig.max
    n = data.draw(st.integers(1, 40), label="n")
    # Any base, so batches that straddle the wrap of the sequence space are covered too.
    base = data.draw(st.integers(1, m + 1), label="base")
    numbers = [(base + k) & m for k in range(n)]
    order = data.draw(st.permutations(numbers), label="order")
    rig.establish((base - 1) & m)
    rig.rx(b"start", (base - 1) & m, now=0.0)
    held: set[int] = set()
    expected_next = base & m
    oos = 0
    for i, ns in enumerate(order):
        # Counter model: inserted before a held packet that lies further ahead of nr.
        oos += any((h - expected_next) & m > (ns - expected_next) & m for h in held)
        held.add(ns)
        while expected_next in held:
            held.remove(expected_next)
            expected_next = (expected_next + 1) & m
        rig.rx(ns.to_bytes(4, "big"), ns, now=i * 0.01)
    assert rig.delivered[1:] == [ns.to_bytes(4, "big") for ns in numbers]
    assert rig.held() == []
    assert rig.session.nr == (base + n) & m
    size = pkt_len(rig, b"1234")
    assert_counters(
        rig.session.stats,
        rx_packets=n + 1,
        rx_bytes=n * size + pkt_len(rig, b"start"),
        rx_oos_packets=oos,
    )


_COOKIES = [b"", b"\xc0\x0c\x1e\x01", b"\x01\x23\x45\x67\x89\xab\xcd\xef"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from([2, 3]),
    encap=st.sampled_from([EncapType.UDP, EncapType.IP]),
    cookie=st.sampled_from(_COOKIES),
    l2spec=st.sampled_from([L2SpecType.NONE, L2SpecType.DEFAULT]),
    recv_seq=st.booleans(),
    send_seq=st.booleans(),
    lns_mode=st.booleans(),
    timeout=st.sampled_from([0.0, 0.05]),
    q_max=st.integers(0, 4),
    packets=st.lists(
        st.tuples(
            st.binary(max_size=40),
            st.integers(0, 40),
            st.integers(0, 0xFFFF),
            st.booleans(),
            st.floats(0, 0.1),
            st.booleans(),
        ),
        max_size=30,
    ),
)
def test_property_arbitrary_bytes_never_raise_and_every_packet_is_accounted(
    version: int,
    encap: EncapType,
    cookie: bytes,
    l2spec: L2SpecType,
    recv_seq: bool,
    send_seq: bool,
    lns_mode: bool,
    timeout: float,
    q_max: int,
    packets: list[tuple[bytes, int, int, bool, float, bool]],
) -> None:
    rig = Rig(
        version,
        encap,
        peer_cookie=cookie if version == 3 else b"",
        l2spec_type=l2spec,
        recv_seq=recv_seq,
        send_seq=send_seq,
        lns_mode=lns_mode,
        reorder_timeout=timeout,
    )
    s = rig.session
    s.reorder_q_max = q_max
    stats: Any = s.stats
    tstats: Any = rig.tunnel.stats
    now = 0.0
    for count, (raw, ptr, flags, with_cookie, dt, timer) in enumerate(packets, 1):
        ptr = min(ptr, len(raw))
        data = raw[:ptr] + s.peer_cookie + raw[ptr:] if with_cookie else raw
        now += dt
        recv_common(s, data, ptr, flags if version == 2 else 0, len(data), now)
        if timer:
            deadline = next_deadline(s)
            if deadline is not None:
                now = max(now, deadline)
                handle_timer(s, now)
        # Every packet is delivered, held or discarded with exactly one rx_errors.
        assert stats.rx_packets + stats.rx_errors + len(s.reorder_q) == count
        assert stats.rx_packets == len(rig.delivered) == tstats.rx_packets
        assert stats.rx_bytes == tstats.rx_bytes
        assert len(s.reorder_q) <= q_max
        assert 0 <= s.nr <= s.nr_max
    assert all(type(p) is bytes for p in rig.delivered)
    purge(s)
    assert stats.rx_packets + stats.rx_errors == len(packets)


# A literal transcription of the kernel's path after header parsing: always queue, then walk
# the queue from the head, restarting after each delivery. The fast paths must be invisible.


def _ref_receive(
    s: Session, has_seq: bool, ns: int, payload: bytes, length: int, now: float
) -> None:
    stats: Any = s.stats
    entry = [
        ns if has_seq else 0,
        has_seq,
        now + (s.reorder_timeout if s.reorder_timeout > 0 else 1.0),
        payload,
        length,
    ]
    if has_seq:
        nws = ns - s.nr if ns >= s.nr else (s.nr_max + 1) - (s.nr - ns)
        if not nws < s.nr_window_size:
            stats.rx_errors += 1
            return
        if s.reorder_timeout > 0:
            for i, queued in enumerate(s.reorder_q):
                # pyl2tp's one change to this kernel code: sort by distance ahead of nr.
                if (queued[0] - s.nr) & s.nr_max > (ns - s.nr) & s.nr_max:
                    s.reorder_q.insert(i, entry)
                    stats.rx_oos_packets += 1
                    break
            else:
                s.reorder_q.append(entry)
        elif ns == s.nr:
            s.reorder_q.append(entry)
        else:
            nr_next = (s.nr_oos + 1) & s.nr_max
            s.nr_oos_count = s.nr_oos_count + 1 if ns == nr_next else 0
            s.nr_oos = ns
            if s.nr_oos_count > s.nr_oos_count_max:
                s.reorder_skip = True
            if not s.reorder_skip:
                stats.rx_seq_discards += 1
                stats.rx_errors += 1
                return
            s.reorder_q.append(entry)
    else:
        s.reorder_q.append(entry)
    _ref_dequeue(s, now)


def _ref_dequeue(s: Session, now: float) -> None:
    q = s.reorder_q
    stats: Any = s.stats
    tstats: Any = s.tunnel.stats
    restart = True
    while restart:
        restart = False
        i = 0
        while i < len(q):
            entry = q[i]
            if now > entry[2]:
                stats.rx_seq_discards += 1
                stats.rx_errors += 1
                s.reorder_skip = True
                del q[i]
                continue
            if entry[1]:
                if s.reorder_skip:
                    s.reorder_skip = False
                    s.nr = entry[0]
                if entry[0] != s.nr:
                    return
            del q[i]
            tstats.rx_packets += 1
            tstats.rx_bytes += entry[4]
            stats.rx_packets += 1
            stats.rx_bytes += entry[4]
            if entry[1]:
                s.nr = (s.nr + 1) & s.nr_max
            s.deliver(entry[3])
            restart = True
            break


def _state(rig: Rig) -> tuple[Any, ...]:
    s = rig.session
    return (
        s.stats.as_dict(),
        rig.tunnel.stats.as_dict(),
        s.nr,
        s.reorder_skip,
        s.nr_oos,
        s.nr_oos_count,
        list(s.reorder_q),
        rig.delivered,
    )


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from([2, 3]),
    timeout=st.sampled_from([0.0, 0.05, 0.5]),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["seq", "seq", "seq", "plain", "far", "timer"]),
            st.integers(-6, 12),
            st.floats(0, 0.08),
        ),
        max_size=60,
    ),
)
def test_property_matches_kernel_append_then_dequeue(
    version: int, timeout: float, ops: list[tuple[str, int, float]]
) -> None:
    mine = seq_rig(version, reorder_timeout=timeout, lns_mode=True)
    ref = seq_rig(version, reorder_timeout=timeout, lns_mode=True)
    now = 0.0
    for i, (kind, delta, dt) in enumerate(ops):
        now += dt
        payload = i.to_bytes(2, "big")
        if kind == "timer":
            handle_timer(mine.session, now)
            if ref.session.reorder_q:
                _ref_dequeue(ref.session, now)
        elif kind == "plain":
            mine.rx(payload, None, now=now)
            _ref_receive(ref.session, False, 0, payload, pkt_len(ref, payload, seq=False), now)
        else:
            ns = (mine.session.nr + delta * (997 if kind == "far" else 1)) & mine.max
            mine.rx(payload, ns, now=now)
            _ref_receive(ref.session, True, ns, payload, pkt_len(ref, payload), now)
        assert _state(mine) == _state(ref)
