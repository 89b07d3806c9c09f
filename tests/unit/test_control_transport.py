"""The control connection's reliable transport (RFC 2661 §5.8 / App. A-B, RFC 3931 §4.2 /
App. A-B) on a virtual clock: every time is a plain float handed to the call, nothing sleeps.

The RFC worked examples are replayed with their exact Ns/Nr values; the backoff, window and
congestion rules are checked by exact numbers; and two transports talk through a simulated
link that drops, duplicates and reorders, with the invariants asserted after every call.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyl2tp.control.transport import (
    InvalidNr,
    LingerExpired,
    ReliableTransport,
    RetriesExhausted,
    SendQueueFull,
    TransportConfig,
    seq_add,
    seq_le,
    seq_lt,
)
from pyl2tp.wire.constants import MessageType
from pyl2tp.wire.message import ControlMessage, decode_message, encode_message

M = MessageType


def cm(
    msg_type: int, version: int = 2, *, ns: int = 0, nr: int = 0, session_id: int = 0
) -> ControlMessage:
    return ControlMessage(msg_type, version=version, ns=ns, nr=nr, session_id=session_id)


def zlb(ns: int, nr: int, version: int = 2) -> ControlMessage:
    return ControlMessage(M.ZLB, version=version, ns=ns, nr=nr)


def sent(t: ReliableTransport) -> list[tuple[str, int, int]]:
    """What the transport puts on the wire now, as (name, Ns, Nr)."""
    return [(m.name, m.ns, m.nr) for m in t.datagrams_to_send()]


def pair(version: int = 2, **kw: object) -> tuple[ReliableTransport, ReliableTransport]:
    cfg = TransportConfig(version=version, **kw)  # type: ignore[arg-type]
    return ReliableTransport(cfg), ReliableTransport(cfg)


def ack_name(explicit: bool) -> str:
    return "ACK" if explicit else "ZLB"


# --------------------------------------------------------------------------------------------
# Sequence-number arithmetic


def test_half_space_comparison_rfc_example() -> None:
    # RFC 2661 §5.8 / RFC 3931 §4.2: with 15 last received, 0..15 and 32784..65535 are "<=".
    older = {v for v in range(0x10000) if seq_le(v, 15)}
    assert older == set(range(16)) | set(range(32784, 0x10000))
    assert not seq_lt(15, 15) and seq_le(15, 15)
    assert seq_lt(65535, 0) and not seq_lt(0, 65535)
    assert seq_add(65535, 1) == 0 and seq_add(65530, 10) == 4


@given(st.integers(0, 0xFFFF), st.integers(1, 0x7FFF))
def test_half_space_is_antisymmetric_within_the_half(a: int, d: int) -> None:
    b = seq_add(a, d)
    assert seq_lt(a, b) and not seq_le(b, a)


# --------------------------------------------------------------------------------------------
# Configuration


def test_config_defaults_follow_the_rfcs() -> None:
    v2, v3 = TransportConfig(version=2), TransportConfig(version=3)
    assert (v2.retry_limit, v3.retry_limit) == (5, 10)
    assert [v2.timeout(k) for k in range(6)] == [1, 2, 4, 8, 8, 8]
    assert v2.linger_time == 31.0  # RFC 2661 §5.7: "31 seconds"
    assert v3.linger_time == 1 + 2 + 4 + 8 * 8
    assert TransportConfig(linger=5).linger_time == 5
    assert TransportConfig(max_retries=7).retry_limit == 7


@pytest.mark.parametrize("kw", [
    {"version": 1},
    {"receive_window": 0},
    {"receive_window": 0x8000},
    {"peer_receive_window": 0},
    {"retransmit_initial": 0},
    {"retransmit_cap": 7.9},
    {"retransmit_initial": 10.0, "retransmit_cap": 9.0},
    {"max_retries": -1},
    {"sccrq_max_retries": -1},
    {"ack_delay": -0.1},
    {"explicit_ack": True},  # v2 has no ACK message
    {"max_queue": 0},
    {"linger": -1.0},
])
def test_config_rejects_invalid_values(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TransportConfig(**kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# RFC Appendix B worked examples


@pytest.mark.parametrize(("version", "explicit"), [(2, False), (3, False), (3, True)])
def test_appendix_b1_lock_step(version: int, explicit: bool) -> None:
    a, b = pair(version, explicit_ack=explicit)
    a.send(cm(M.SCCRQ, version), 0.0)
    wire = a.datagrams_to_send()
    assert [(m.name, m.nr, m.ns) for m in wire] == [("SCCRQ", 0, 0)]
    assert [m.name for m in b.receive(wire[0], 0.01)] == ["SCCRQ"]

    b.send(cm(M.SCCRP, version), 0.02)
    wire = b.datagrams_to_send()
    assert [(m.name, m.nr, m.ns) for m in wire] == [("SCCRP", 1, 0)]  # piggybacked ack
    assert [m.name for m in a.receive(wire[0], 0.03)] == ["SCCRP"]
    assert a.idle is False  # owes an ack for SCCRP

    a.send(cm(M.SCCCN, version), 0.04)
    wire = a.datagrams_to_send()
    assert [(m.name, m.nr, m.ns) for m in wire] == [("SCCCN", 1, 1)]
    assert [m.name for m in b.receive(wire[0], 0.05)] == ["SCCCN"]
    assert b.datagrams_to_send() == []  # the ack waits ack_delay for a message to ride on
    deadline = b.next_deadline()
    assert deadline == pytest.approx(0.15)
    b.handle_timer(deadline)  # type: ignore[arg-type]
    wire = b.datagrams_to_send()
    assert [(m.name, m.nr, m.ns) for m in wire] == [(ack_name(explicit), 2, 1)]
    assert a.receive(wire[0], 0.16) == []
    assert a.idle and b.idle
    assert a.next_deadline() is None and b.next_deadline() is None
    assert (a.ns_next, a.nr, b.ns_next, b.nr) == (2, 1, 1, 2)


@pytest.mark.parametrize(("version", "explicit"), [(2, False), (3, True)])
def test_appendix_b2_lost_icrp(version: int, explicit: bool) -> None:
    # An existing tunnel: LAC has sent Ns 0..1 and received Ns 0; LNS the reverse.
    cfg = TransportConfig(version=version, explicit_ack=explicit, ack_delay=0.0)
    lac = ReliableTransport(cfg, initial_ns=2, initial_nr=1)
    lns = ReliableTransport(cfg, initial_ns=1, initial_nr=2)
    ack = ack_name(explicit)

    lac.send(cm(M.ICRQ, version), 0.0)
    (icrq,) = lac.datagrams_to_send()
    assert (icrq.name, icrq.nr, icrq.ns) == ("ICRQ", 1, 2)
    assert [m.name for m in lns.receive(icrq, 0.05)] == ["ICRQ"]
    lns.send(cm(M.ICRP, version), 0.05)
    assert sent(lns) == [("ICRP", 1, 3)]  # (name, Ns, Nr): packet lost

    # LAC's timer started first, so fires first.
    assert lac.next_deadline() == 1.0 < lns.next_deadline()  # type: ignore[operator]
    lac.handle_timer(1.0)
    (again,) = lac.datagrams_to_send()
    assert (again.name, again.nr, again.ns) == ("ICRQ", 1, 2)
    assert lac.stats.retransmits == 1

    # LNS has seen it: discards it and acknowledges it.
    assert lns.receive(again, 1.02) == []
    assert lns.stats.rx_duplicates == 1
    (a1,) = lns.datagrams_to_send()
    assert (a1.name, a1.nr, a1.ns) == (ack, 3, 2)
    assert lac.receive(a1, 1.04) == []
    assert lac.outstanding == 0 and lac.nr == 1  # an ACK never advances Nr

    # LNS's retransmit timer fires.
    assert lns.next_deadline() == pytest.approx(1.05)
    lns.handle_timer(1.05)
    (icrp,) = lns.datagrams_to_send()
    assert (icrp.name, icrp.nr, icrp.ns) == ("ICRP", 3, 1)
    assert [m.name for m in lac.receive(icrp, 1.07)] == ["ICRP"]
    lac.send(cm(M.ICCN, version), 1.07)
    (iccn,) = lac.datagrams_to_send()
    assert (iccn.name, iccn.nr, iccn.ns) == ("ICCN", 2, 3)
    assert [m.name for m in lns.receive(iccn, 1.09)] == ["ICCN"]
    (a2,) = lns.datagrams_to_send()
    assert (a2.name, a2.nr, a2.ns) == (ack, 4, 2)
    assert lac.receive(a2, 1.1) == []
    assert lac.idle and lns.idle


def test_lost_icrp_with_ack_delay_piggybacks_on_the_retransmission() -> None:
    # Same as B.2 but with the default 100 ms ack delay: the ICRP retransmission comes first
    # and carries the acknowledgement of the duplicate, so no ZLB is needed.
    cfg = TransportConfig()
    lac = ReliableTransport(cfg, initial_ns=2, initial_nr=1)
    lns = ReliableTransport(cfg, initial_ns=1, initial_nr=2)
    lac.send(cm(M.ICRQ), 0.0)
    (icrq,) = lac.datagrams_to_send()
    lns.receive(icrq, 0.0)
    lns.send(cm(M.ICRP), 0.05)
    lns.datagrams_to_send()  # lost
    lac.handle_timer(1.0)
    (again,) = lac.datagrams_to_send()
    assert lns.receive(again, 1.02) == []
    assert lns.datagrams_to_send() == []
    lns.handle_timer(1.05)
    assert sent(lns) == [("ICRP", 1, 3)]
    lns.handle_timer(1.2)
    assert lns.datagrams_to_send() == [] and lns.stats.zlb_sent == 0


def test_emitted_acks_encode_and_decode() -> None:
    for version, explicit, expected in ((2, False, M.ZLB), (3, False, M.ZLB), (3, True, M.ACK)):
        t = ReliableTransport(TransportConfig(version=version, explicit_ack=explicit,
                                              ack_delay=0), peer_id=0x1234)
        t.receive(cm(M.HELLO, version), 0.0)
        (out,) = t.datagrams_to_send()
        back = decode_message(encode_message(out))
        assert (back.msg_type, back.version, back.tunnel_id, back.ns, back.nr) == (
            expected, version, 0x1234, 0, 1)


# --------------------------------------------------------------------------------------------
# Retransmission and backoff


def transmissions(t: ReliableTransport, until: float) -> list[float]:
    """Drive the timer to ``until``; return the times at which something went out."""
    times: list[float] = []
    if t.datagrams_to_send():
        times.append(0.0)
    while (d := t.next_deadline()) is not None and d <= until:
        t.handle_timer(d)
        if t.datagrams_to_send():
            times.append(d)
    return times


def test_backoff_and_exhaustion_v2_defaults() -> None:
    t = ReliableTransport(TransportConfig(version=2))
    t.send(cm(M.SCCRQ), 0.0)
    assert transmissions(t, 1000) == [0, 1, 3, 7, 15, 23]  # 5 retries: 1, 2, 4, 8, 8
    assert t.events() == [RetriesExhausted(ns=0, msg_type=M.SCCRQ, retries=5, at=31.0)]
    assert t.exhausted and t.next_deadline() is None and t.stats.retransmits == 5
    t.send(cm(M.StopCCN), 40)
    assert t.datagrams_to_send() == [] and t.stats.tx_discarded == 1


def test_backoff_v3_defaults_and_custom_cap() -> None:
    t = ReliableTransport(TransportConfig(version=3))
    t.send(cm(M.SCCRQ, 3), 0.0)
    assert transmissions(t, 1000) == [0, 1, 3, 7, 15, 23, 31, 39, 47, 55, 63]
    assert t.events()[0].at == 71.0  # type: ignore[union-attr]

    t = ReliableTransport(TransportConfig(retransmit_cap=10.0, max_retries=7))
    t.send(cm(M.HELLO), 0.0)
    times = transmissions(t, 1000)
    assert [b - a for a, b in itertools.pairwise(times)] == [1, 2, 4, 8, 10, 10, 10]
    assert t.events()[0].at == times[-1] + 10  # type: ignore[union-attr]


def test_sccrq_retry_override() -> None:
    cfg = TransportConfig(version=3, sccrq_max_retries=2)
    t = ReliableTransport(cfg)
    t.send(cm(M.SCCRQ, 3), 0.0)
    assert transmissions(t, 1000) == [0, 1, 3]
    assert t.events() == [RetriesExhausted(0, M.SCCRQ, 2, 7.0)]
    t = ReliableTransport(cfg)  # other messages keep the general limit
    t.send(cm(M.HELLO, 3), 0.0)
    assert len(transmissions(t, 1000)) == 11


def test_retransmission_keeps_ns_and_carries_current_nr() -> None:
    t = ReliableTransport(TransportConfig(ack_delay=0.5))
    t.send(cm(M.HELLO), 0.0)
    assert sent(t) == [("HELLO", 0, 0)]
    t.receive(cm(M.ICRQ, ns=0, nr=0), 0.5)
    t.receive(cm(M.ICCN, ns=1, nr=0), 0.6)
    t.handle_timer(1.0)
    assert sent(t) == [("HELLO", 0, 2)]  # and this carried the pending ack
    t.handle_timer(1.2)
    assert t.datagrams_to_send() == []


def test_zero_retries_exhausts_at_the_first_timeout() -> None:
    t = ReliableTransport(TransportConfig(max_retries=0))
    t.send(cm(M.HELLO), 0.0)
    assert transmissions(t, 100) == [0]
    assert [type(e) for e in t.events()] == [RetriesExhausted]


# --------------------------------------------------------------------------------------------
# Window, slow start and congestion avoidance


def ack_one(t: ReliableTransport, now: float) -> None:
    """The peer acknowledges exactly the oldest outstanding message."""
    t.receive(zlb(0, seq_add(t.oldest_unacked, 1)), now)


def test_window_never_exceeds_cwnd_or_peer_rws() -> None:
    t = ReliableTransport(TransportConfig())
    for _ in range(12):
        t.send(cm(M.HELLO), 0.0)
    assert (t.cwnd, t.ssthresh, t.peer_rws) == (1, 4, 4)
    assert [m.ns for m in t.datagrams_to_send()] == [0]
    assert t.outstanding == 1 and t.queued == 11
    ack_one(t, 0.1)  # cwnd 2: one freed slot plus one more
    assert [m.ns for m in t.datagrams_to_send()] == [1, 2]
    t.receive(zlb(0, 3), 0.2)  # a cumulative Nr counts as two ACKs: cwnd 4 = RWS
    assert t.cwnd == 4 and [m.ns for m in t.datagrams_to_send()] == [3, 4, 5, 6]
    t.receive(zlb(0, 7), 0.3)  # congestion avoidance, but never beyond the peer's RWS
    assert t.cwnd == 4 and t.outstanding == 4


def test_slow_start_then_congestion_avoidance_exact_values() -> None:
    t = ReliableTransport(TransportConfig(peer_receive_window=16))
    for _ in range(200):
        t.send(cm(M.HELLO), 0.0)
    now = 0.0
    growth = []
    for _ in range(5):
        now += 0.01
        ack_one(t, now)
        growth.append(t.cwnd)
    assert growth == [2, 3, 4, 5, 6]  # slow start: +1 per ACK
    t.datagrams_to_send()
    # The oldest outstanding message times out: SSTHRESH = CWND/2, CWND = 1.
    deadline = t.next_deadline()
    assert deadline is not None
    t.handle_timer(deadline)
    assert (t.cwnd, t.ssthresh) == (1, 3)
    assert [m.ns for m in t.datagrams_to_send()] == [5]  # only the oldest is resent
    now = deadline
    growth = []
    for _ in range(3 + 3 + 4 + 5):
        now += 0.001
        ack_one(t, now)
        growth.append(t.cwnd)
    # slow start to SSTHRESH, then +1 per CWND acks: 3 at 3, 4 at 4, 5 at 5.
    assert growth == [2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6]


@pytest.mark.parametrize(("cwnd", "ssthresh"), [(1, 1), (2, 1), (3, 1), (5, 2), (8, 4)])
def test_halving_on_timeout(cwnd: int, ssthresh: int) -> None:
    t = ReliableTransport(TransportConfig(peer_receive_window=8))
    for _ in range(3 * cwnd):
        t.send(cm(M.HELLO), 0.0)
    for i in range(cwnd - 1):
        ack_one(t, 0.01 * (i + 1))
    assert t.cwnd == cwnd
    t.datagrams_to_send()
    t.handle_timer(t.next_deadline())  # type: ignore[arg-type]
    assert (t.cwnd, t.ssthresh) == (1, ssthresh)


def test_one_loss_episode_halves_once_and_resends_as_the_window_reopens() -> None:
    t = ReliableTransport(TransportConfig(peer_receive_window=4))
    for _ in range(8):
        t.send(cm(M.HELLO), 0.0)
    assert [m.ns for m in t.datagrams_to_send()] == [0]
    t.receive(zlb(0, 1), 0.1)
    assert [m.ns for m in t.datagrams_to_send()] == [1, 2]
    t.receive(zlb(0, 3), 0.2)
    assert t.cwnd == 4 and [m.ns for m in t.datagrams_to_send()] == [3, 4, 5, 6]
    assert t.oldest_unacked == 3 and t.outstanding == 4  # 3, 4, 5, 6 (all lost)
    t.handle_timer(1.2)
    assert (t.cwnd, t.ssthresh) == (1, 2)
    assert sent(t) == [("HELLO", 3, 0)]
    t.handle_timer(1.25)  # 4, 5, 6 expired too but lie outside the window
    assert t.datagrams_to_send() == []
    t.receive(zlb(0, 4), 1.5)  # 3 got through: window 2 admits 4, 5 at once, no new halving
    assert (t.cwnd, t.ssthresh) == (2, 2)
    assert [m.ns for m in t.datagrams_to_send()] == [4, 5]
    t.receive(zlb(0, 6), 1.6)  # CA: 3 after 2 acks; 6 is resent, 7 is new
    assert (t.cwnd, t.ssthresh) == (3, 2)
    assert [m.ns for m in t.datagrams_to_send()] == [6, 7]
    assert t.stats.retransmits == 4 and t.stats.tx_messages == 8


def test_set_peer_rws() -> None:
    t = ReliableTransport(TransportConfig())
    with pytest.raises(ValueError):
        t.set_peer_rws(0)
    t.set_peer_rws(10)
    assert (t.peer_rws, t.ssthresh) == (10, 10)
    t.set_peer_rws(70000)
    assert t.peer_rws == 0x7FFF
    t.set_peer_rws(1)
    for _ in range(3):
        t.send(cm(M.HELLO), 0.0)
    for i in range(3):
        assert t.outstanding == 1 and t.cwnd == 1
        ack_one(t, 0.1 * (i + 1))


def test_peer_rws_increase_releases_queued_messages() -> None:
    t = ReliableTransport(TransportConfig(peer_receive_window=1))
    for _ in range(4):
        t.send(cm(M.HELLO), 0.0)
    ack_one(t, 0.1)
    ack_one(t, 0.2)
    assert t.cwnd == 1 and t.outstanding == 1
    t.set_peer_rws(4)  # SSTHRESH 4; CWND grows on the next acks
    ack_one(t, 0.3)
    assert t.cwnd == 2 and t.outstanding == 1  # only one message left


# --------------------------------------------------------------------------------------------
# Receive side


def test_duplicates_are_reacknowledged_not_redelivered() -> None:
    t = ReliableTransport(TransportConfig(ack_delay=0.1))
    assert len(t.receive(cm(M.SCCRQ, ns=0), 0.0)) == 1
    t.handle_timer(0.1)
    assert sent(t) == [("ZLB", 0, 1)]
    assert t.receive(cm(M.SCCRQ, ns=0), 1.0) == []
    assert t.stats.rx_duplicates == 1 and t.nr == 1
    t.handle_timer(1.1)
    assert sent(t) == [("ZLB", 0, 1)]


def test_out_of_order_buffered_and_delivered_when_the_gap_fills() -> None:
    t = ReliableTransport(TransportConfig(receive_window=4))
    assert t.receive(cm(M.ICRQ, ns=2), 0.0) == []
    assert t.receive(cm(M.ICCN, ns=1), 0.0) == []
    assert t.receive(cm(M.ICCN, ns=1), 0.0) == []  # duplicate of a buffered one
    assert t.receive(cm(M.CDN, ns=4), 0.0) == []  # offset 4 >= window 4: dropped
    assert t.buffered == 2
    assert [m.ns for m in t.receive(cm(M.HELLO, ns=0), 0.1)] == [0, 1, 2]
    assert t.nr == 3 and t.buffered == 0
    s = t.stats
    assert (s.rx_out_of_order, s.rx_duplicates, s.rx_out_of_window, s.rx_messages) == (
        2, 1, 1, 3)
    assert [m.ns for m in t.receive(cm(M.CDN, ns=4), 0.2)] == []  # now inside, buffered
    assert [m.ns for m in t.receive(cm(M.HELLO, ns=3), 0.2)] == [3, 4]


def test_holds_names_the_buffered_object_and_forget_lets_it_go() -> None:
    # The connection keeps validation errors only for what the transport holds: a duplicate
    # of a held message is not held, and a forgotten one is received again when resent.
    t = ReliableTransport(TransportConfig(receive_window=4))
    first, again = cm(M.ICRQ, ns=1), cm(M.ICRQ, ns=1)
    t.receive(first, 0.0)
    t.receive(again, 0.0)
    assert t.holds(first) and not t.holds(again)
    t.forget(again)  # not held: nothing happens
    assert t.buffered == 1
    t.forget(first)
    assert t.buffered == 0 and not t.holds(first)
    assert t.receive(again, 0.1) == [] and t.holds(again)
    assert [m.ns for m in t.receive(cm(M.HELLO, ns=0), 0.2)] == [0, 1]


def test_reordering_off_drops_future_messages() -> None:
    t = ReliableTransport(TransportConfig(reorder=False))
    assert t.receive(cm(M.HELLO, ns=1), 0.0) == []
    assert t.buffered == 0 and t.stats.rx_out_of_order == 1
    assert [m.ns for m in t.receive(cm(M.HELLO, ns=0), 0.0)] == [0]
    assert t.nr == 1


def test_out_of_order_buffer_bounded_by_our_window() -> None:
    t = ReliableTransport(TransportConfig(receive_window=3))
    for ns in range(1, 200):
        t.receive(cm(M.HELLO, ns=ns), 0.0)
        assert t.buffered <= 2
    assert t.stats.rx_out_of_window == 197 and t.stats.rx_out_of_order == 2


def test_zlb_does_not_advance_nr_or_get_acknowledged() -> None:
    t = ReliableTransport(TransportConfig(ack_delay=0))
    t.send(cm(M.HELLO), 0.0)
    t.datagrams_to_send()
    assert t.receive(zlb(5, 1), 0.1) == []
    assert t.nr == 0 and t.idle and t.datagrams_to_send() == []
    assert t.stats.rx_acks == 1


def test_v3_ack_message_acknowledges_but_type_20_is_sequenced_in_v2() -> None:
    t = ReliableTransport(TransportConfig(version=3))
    t.send(cm(M.HELLO, 3), 0.0)
    assert t.receive(cm(M.ACK, 3, ns=0, nr=1), 0.1) == [] and t.idle
    t2 = ReliableTransport(TransportConfig(version=2))
    assert len(t2.receive(cm(M.ACK, 2, ns=0, nr=0), 0.1)) == 1


def test_invalid_nr_v3_drops_the_message() -> None:
    t = ReliableTransport(TransportConfig(version=3))
    t.send(cm(M.SCCRQ, 3), 0.0)  # Ns 0: valid Nr are 0 and 1
    assert t.receive(cm(M.SCCRP, 3, ns=0, nr=2), 0.1) == []
    assert t.events() == [InvalidNr(nr=2, limit=1, msg_type=M.SCCRP, dropped=True)]
    assert t.stats.invalid_nr == 1 and t.nr == 0 and t.outstanding == 1
    assert len(t.receive(cm(M.SCCRP, 3, ns=0, nr=1), 0.2)) == 1
    assert t.outstanding == 0 and t.events() == []


def test_invalid_nr_v2_ignores_only_the_nr() -> None:
    t = ReliableTransport(TransportConfig(version=2))
    t.send(cm(M.SCCRQ), 0.0)
    assert len(t.receive(cm(M.SCCRP, ns=0, nr=9), 0.1)) == 1
    assert t.events() == [InvalidNr(nr=9, limit=1, msg_type=M.SCCRP, dropped=False)]
    assert t.outstanding == 1 and t.nr == 1


def test_stale_nr_is_harmless() -> None:
    t = ReliableTransport(TransportConfig())
    for _ in range(3):
        t.send(cm(M.HELLO), 0.0)
    t.receive(zlb(0, 1), 0.1)
    t.receive(zlb(0, 3), 0.2)
    t.receive(zlb(0, 1), 0.3)  # reordered older acknowledgement
    assert t.outstanding == 0 and t.events() == [] and t.stats.invalid_nr == 0


# --------------------------------------------------------------------------------------------
# Delayed acknowledgement


@pytest.mark.parametrize(("version", "explicit"), [(2, False), (3, False), (3, True)])
def test_delayed_ack_piggybacked_or_explicit(version: int, explicit: bool) -> None:
    t = ReliableTransport(TransportConfig(version=version, explicit_ack=explicit))
    t.receive(cm(M.ICRQ, version, ns=0), 0.0)
    assert t.datagrams_to_send() == [] and t.next_deadline() == pytest.approx(0.1)
    t.send(cm(M.ICRP, version), 0.05)  # within the delay: the ack rides on it
    assert sent(t) == [("ICRP", 0, 1)]
    assert t.next_deadline() == pytest.approx(1.05)  # only the retransmission remains

    t.receive(cm(M.ICCN, version, ns=1, nr=1), 2.0)
    t.handle_timer(2.05)
    assert t.datagrams_to_send() == []
    t.handle_timer(2.1)
    assert sent(t) == [(ack_name(explicit), 1, 2)]
    assert (t.stats.zlb_sent, t.stats.acks_sent) == ((0, 1) if explicit else (1, 0))


def test_zero_ack_delay_acknowledges_in_the_same_flush() -> None:
    t = ReliableTransport(TransportConfig(ack_delay=0))
    t.receive(cm(M.HELLO, ns=0), 3.0)
    assert sent(t) == [("ZLB", 0, 1)]
    t.receive(cm(M.HELLO, ns=1), 4.0)
    t.send(cm(M.HELLO), 4.0)  # sent before the flush: piggybacked
    assert sent(t) == [("HELLO", 0, 2)]


def test_zlb_ns_is_next_unsent_even_with_queued_messages() -> None:
    t = ReliableTransport(TransportConfig(ack_delay=0, peer_receive_window=1))
    t.send(cm(M.HELLO), 0.0)
    t.send(cm(M.HELLO), 0.0)
    t.datagrams_to_send()
    t.receive(cm(M.HELLO, ns=0, nr=0), 0.5)
    assert sent(t) == [("ZLB", 1, 1)]  # Ns 1 is numbered but not yet transmitted


# --------------------------------------------------------------------------------------------
# 16-bit wraparound


def test_wraparound_lock_step() -> None:
    cfg = TransportConfig(ack_delay=0)
    a = ReliableTransport(cfg, initial_ns=65533, initial_nr=65534)
    b = ReliableTransport(cfg, initial_ns=65534, initial_nr=65533)
    seen_ns = []
    now = 0.0
    for i in range(8):
        now += 0.1
        a.send(cm(M.HELLO, session_id=i), now)
        (m,) = a.datagrams_to_send()
        seen_ns.append(m.ns)
        assert [x.session_id for x in b.receive(m, now)] == [i]
        b.send(cm(M.HELLO, session_id=i), now)
        (r,) = b.datagrams_to_send()
        assert [x.session_id for x in a.receive(r, now)] == [i]
    assert seen_ns == [65533, 65534, 65535, 0, 1, 2, 3, 4]
    assert a.outstanding == 0 and b.outstanding == 1  # b's last reply is not acked yet
    assert (a.ns_next, b.nr, b.ns_next, a.nr) == (5, 5, 6, 6)


def test_wraparound_reordering_and_duplicates() -> None:
    t = ReliableTransport(TransportConfig(receive_window=8), initial_nr=65534)
    for ns in (1, 65535, 0):
        assert t.receive(cm(M.HELLO, ns=ns), 0.0) == []
    assert [m.ns for m in t.receive(cm(M.HELLO, ns=65534), 0.0)] == [65534, 65535, 0, 1]
    assert t.nr == 2
    assert t.receive(cm(M.HELLO, ns=65530), 0.0) == []  # old across the wrap
    assert t.stats.rx_duplicates == 1
    # Exactly half a space ahead of Nr: "at or before the last received" (1 + 32767 = 32768).
    assert t.receive(cm(M.HELLO, ns=seq_add(2, 0x8000)), 0.0) == []
    assert t.receive(cm(M.HELLO, ns=seq_add(2, 0x7FFF)), 0.0) == []
    assert (t.stats.rx_duplicates, t.stats.rx_out_of_window) == (2, 1)


# --------------------------------------------------------------------------------------------
# StopCCN linger, bounds, misuse


def test_stopccn_receiver_lingers_a_full_cycle_and_keeps_acking() -> None:
    t = ReliableTransport(TransportConfig(ack_delay=0), initial_nr=5)
    assert len(t.receive(cm(M.StopCCN, ns=5), 10.0)) == 1
    t.begin_linger(10.0)
    assert t.closing and t.linger_until == 41.0
    assert sent(t) == [("ZLB", 0, 6)]
    assert t.receive(cm(M.StopCCN, ns=5), 12.0) == []  # our ZLB was lost
    assert sent(t) == [("ZLB", 0, 6)]
    t.begin_linger(12.0)  # does not extend
    assert t.next_deadline() == 41.0
    t.handle_timer(40.9)
    assert t.events() == []
    t.handle_timer(41.0)
    assert t.events() == [LingerExpired(41.0)] and t.next_deadline() is None


def test_stopccn_sender_may_stop_once_acknowledged_v3() -> None:
    t = ReliableTransport(TransportConfig(version=3))
    t.send(cm(M.StopCCN, 3), 0.0)
    t.begin_linger(0.0, until_acked=True)
    assert sent(t) == [("StopCCN", 0, 0)]
    assert t.linger_until == 71.0 and t.events() == []
    t.handle_timer(1.0)
    assert sent(t) == [("StopCCN", 0, 0)]  # still retransmitted while lingering
    t.receive(zlb(0, 1, 3), 1.5)
    assert t.events() == [LingerExpired(1.5)]


def test_send_queue_is_bounded() -> None:
    t = ReliableTransport(TransportConfig(max_queue=3))
    for _ in range(3):
        t.send(cm(M.HELLO), 0.0)
    with pytest.raises(SendQueueFull):
        t.send(cm(M.HELLO), 0.0)
    ack_one(t, 0.1)
    assert t.send(cm(M.HELLO), 0.2) == 3


def test_send_rejects_acks_and_wrong_version() -> None:
    t = ReliableTransport(TransportConfig(version=3))
    for bad in (cm(M.ZLB, 3), cm(M.ACK, 3), cm(M.HELLO, 2)):
        with pytest.raises(ValueError):
            t.send(bad, 0.0)
    assert t.ns_next == 0


def test_send_sets_and_returns_ns_and_outputs_are_snapshots() -> None:
    t = ReliableTransport(TransportConfig(), initial_ns=7)
    m = cm(M.HELLO)
    assert t.send(m, 0.0) == 7 and m.ns == 7
    (out,) = t.datagrams_to_send()
    assert out is not m and out.ns == 7
    t.receive(cm(M.HELLO, ns=0), 0.5)
    t.handle_timer(1.0)
    (again,) = t.datagrams_to_send()
    assert (out.nr, again.nr) == (0, 1)


def test_acknowledged_before_flush_is_not_sent() -> None:
    t = ReliableTransport(TransportConfig(ack_delay=0))
    t.send(cm(M.HELLO), 0.0)
    t.datagrams_to_send()
    t.handle_timer(1.0)  # retransmission queued for output ...
    t.receive(cm(M.HELLO, ns=0, nr=1), 1.0)  # ... but acknowledged first
    assert sent(t) == [("ZLB", 1, 1)]


def test_undrained_retransmissions_go_out_once() -> None:
    t = ReliableTransport(TransportConfig())
    t.send(cm(M.HELLO), 0.0)
    t.handle_timer(1.0)
    t.handle_timer(3.0)
    assert sent(t) == [("HELLO", 0, 0)] and t.stats.retransmits == 2


# --------------------------------------------------------------------------------------------
# Lossy-link simulation


class Link:
    """One direction of a datagram path: loss, duplication and delay jitter (reordering)."""

    def __init__(self, rng: random.Random, loss: float, dup: float, jitter: float) -> None:
        self.rng, self.loss, self.dup, self.jitter = rng, loss, dup, jitter
        self.heap: list[tuple[float, int, ControlMessage]] = []
        self.count = itertools.count()

    def put(self, msg: ControlMessage, now: float) -> None:
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            if self.rng.random() < self.loss:
                continue
            at = now + 0.01 + self.rng.random() * self.jitter
            heapq.heappush(self.heap, (at, next(self.count), dataclasses.replace(msg)))

    def next_time(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def due(self, now: float) -> Iterator[ControlMessage]:
        while self.heap and self.heap[0][0] <= now:
            yield heapq.heappop(self.heap)[2]


class Endpoint:
    """A transport plus the application around it, checking invariants after every call."""

    def __init__(self, t: ReliableTransport, n: int, send_times: list[float]) -> None:
        self.t = t
        self.n = n
        self.send_times = send_times
        self.next_app = 0
        self.got: list[int] = []

    def check(self, tx_before: int) -> None:
        t = self.t
        assert t.outstanding <= t.peer_rws
        assert 1 <= t.cwnd <= t.peer_rws and t.ssthresh >= 1
        assert t.buffered < t.config.receive_window
        if t.stats.tx_messages > tx_before:
            assert t.outstanding <= min(t.cwnd, t.peer_rws)

    def app_time(self) -> float | None:
        return self.send_times[self.next_app] if self.next_app < self.n else None

    def step(self, now: float, inbound: Link, outbound: Link) -> None:
        t = self.t
        while self.next_app < self.n and self.send_times[self.next_app] <= now:
            before = t.stats.tx_messages
            t.send(cm(M.HELLO, t.config.version, session_id=self.next_app), now)
            self.check(before)
            self.next_app += 1
        for msg in inbound.due(now):
            before = t.stats.tx_messages
            for m in t.receive(msg, now):
                self.got.append(m.session_id)
            self.check(before)
        deadline = t.next_deadline()
        if deadline is not None and deadline <= now:
            before = t.stats.tx_messages
            t.handle_timer(now)
            self.check(before)
        for m in t.datagrams_to_send():
            if m.msg_type not in (M.ZLB, M.ACK):
                # Never beyond the peer's receive window in sequence space.
                assert (m.ns - t.oldest_unacked) & 0xFFFF < t.peer_rws
            outbound.put(m, now)


def simulate(
    *,
    seed: int,
    n: int,
    loss: float = 0.0,
    dup: float = 0.0,
    jitter: float = 0.02,
    version: int = 2,
    rws: tuple[int, int] = (4, 4),
    start: int = 0,
    span: float = 30.0,
) -> tuple[Endpoint, Endpoint]:
    rng = random.Random(seed)

    def make(our: int, theirs: int) -> ReliableTransport:
        cfg = TransportConfig(version=version, receive_window=our, explicit_ack=version == 3,
                              max_retries=60)
        t = ReliableTransport(cfg, initial_ns=start, initial_nr=start)
        t.set_peer_rws(theirs)
        return t

    a = Endpoint(make(rws[0], rws[1]), n, sorted(rng.uniform(0, span) for _ in range(n)))
    b = Endpoint(make(rws[1], rws[0]), n, sorted(rng.uniform(0, span) for _ in range(n)))
    ab, ba = Link(rng, loss, dup, jitter), Link(rng, loss, dup, jitter)
    now = 0.0
    for _ in range(2_000_000):
        times = [x for x in (ab.next_time(), ba.next_time(), a.t.next_deadline(),
                             b.t.next_deadline(), a.app_time(), b.app_time()) if x is not None]
        if not times:
            break
        now = max(now, min(times))
        a.step(now, ba, ab)
        b.step(now, ab, ba)
    else:
        pytest.fail("simulation did not settle")
    for e in (a, b):
        assert e.t.events() == []  # no exhaustion, no invalid Nr
        assert e.t.idle and e.t.stats.rx_out_of_window == 0
    return a, b


@pytest.mark.parametrize(("name", "kw"), [
    ("loss", {"loss": 0.2}),
    ("dup+reorder", {"dup": 0.2, "jitter": 1.5}),
    ("all", {"loss": 0.2, "dup": 0.2, "jitter": 1.5, "version": 3, "start": 65000}),
])
def test_lossy_link_thousand_messages_each_way(name: str, kw: dict[str, float]) -> None:
    a, b = simulate(seed=2661, n=1000, **kw)  # type: ignore[arg-type]
    assert a.got == list(range(1000)) and b.got == list(range(1000))
    sa, sb = a.t.stats, b.t.stats
    assert sa.tx_messages == sb.rx_messages == 1000
    if kw.get("loss"):
        assert sa.retransmits > 100 and sb.retransmits > 100
    if kw.get("dup"):
        assert sa.rx_duplicates > 100 and sb.rx_out_of_order > 10


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 40),
    loss=st.floats(0.0, 0.4),
    dup=st.floats(0.0, 0.3),
    jitter=st.floats(0.0, 3.0),
    version=st.sampled_from([2, 3]),
    rws=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    start=st.integers(0, 0xFFFF),
)
def test_lossy_link_property(
    seed: int, n: int, loss: float, dup: float, jitter: float, version: int,
    rws: tuple[int, int], start: int,
) -> None:
    a, b = simulate(seed=seed, n=n, loss=loss, dup=dup, jitter=jitter, version=version,
                    rws=rws, start=start, span=5.0)
    assert a.got == list(range(n)) and b.got == list(range(n))
