"""Resource bounds of the control plane (issue 7), on the sans-I/O cores and a virtual clock.

Every bound is driven past its limit and the test checks the refusal on the wire (the
protocol's result and error code), that the daemon-wide counter moved, and that the refusal
holds no state. Two planes talk directly (no simulated loss), so each datagram can be
inspected and replayed.
"""

from __future__ import annotations

from typing import Any

import pytest

from pyl2tp.control import events as ev
from pyl2tp.control.limits import SessionBudget, SourceRateLimiter
from pyl2tp.control.params import CallParams, ConnectionParams
from pyl2tp.control.plane import ControlPlane
from pyl2tp.control.transport import ReliableTransport, TransportConfig
from pyl2tp.control.tunnel import ControlConnection
from pyl2tp.wire.constants import (
    AvpType,
    CDNResult,
    ErrorCode,
    MessageType,
    PwType,
    StopCCNResult,
)
from pyl2tp.wire.message import ControlMessage, decode_message

A = AvpType
M = MessageType

LAC = ("10.0.0.1", 1701)
LNS = ("10.0.0.2", 1701)


class Wire:
    """A LAC plane and an LNS plane joined directly; ``now`` is the virtual clock."""

    def __init__(self, params: ConnectionParams, **lns_limits: Any) -> None:
        self.params = params
        self.now = 0.0
        self.lac = ControlPlane(max_tunnels=100_000)
        self.lns = ControlPlane(accept=lambda _l, _p, _m: params, **lns_limits)
        self.lac_events: list[ev.Event] = []
        self.lns_events: list[ev.Event] = []
        self.to_lac: list[bytes] = []  # everything the LNS sent, in order

    def dial(self) -> ControlConnection:
        return self.lac.dial(self.params, "lac", LNS, self.now)

    def lac_datagrams(self) -> list[bytes]:
        self.lac_events += self.lac.events()
        return [data for _l, _p, data in self.lac.datagrams()]

    def deliver_to_lns(self, datagrams: list[bytes], source: tuple[str, int] = LAC
                       ) -> list[bytes]:
        for data in datagrams:
            self.lns.receive("lns", data, 0, source, self.now)
        out = [data for _l, _p, data in self.lns.datagrams()]
        self.lns_events += self.lns.events()
        self.to_lac += out
        return out

    def deliver_to_lac(self, datagrams: list[bytes]) -> None:
        for data in datagrams:
            self.lac.receive("lac", data, 0, LNS, self.now)
        self.lac_events += self.lac.events()

    def pump(self, rounds: int = 50) -> None:
        """Exchange until both sides are quiet, stepping past the delayed-ack timer."""
        for _ in range(rounds):
            up = self.lac_datagrams()
            down = self.deliver_to_lns(up)
            self.deliver_to_lac(down)
            if not up and not down:
                self.now += 0.2
                self.lac.handle_timer(self.now)
                self.lns.handle_timer(self.now)
                self.lns_events += self.lns.events()
                if not self.lac_datagrams_peek() and not self.lns_pending():
                    return

    def lac_datagrams_peek(self) -> bool:
        return bool(self.lac._out)

    def lns_pending(self) -> bool:
        return bool(self.lns._out)


def decoded(datagrams: list[bytes]) -> list[ControlMessage]:
    return [decode_message(d, validate=False) for d in datagrams]


def result_of(msg: ControlMessage) -> tuple[int, int]:
    rc = msg.get(A.RESULT_CODE)
    return rc.result, rc.error


def downs(events: list[ev.Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# ---- half-open tunnels and tunnels ---------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_half_open_tunnels_beyond_the_bound_get_stopccn_2_4(version: int) -> None:
    w = Wire(ConnectionParams(version=version, hello_interval=0), max_half_open_tunnels=2,
             sccrq_rate=0)
    conns = [w.dial() for _ in range(3)]
    sccrqs = w.lac_datagrams()
    replies = decoded(w.deliver_to_lns(sccrqs))
    assert [m.msg_type for m in replies] == [M.SCCRP, M.SCCRP, M.StopCCN]
    stop = replies[2]
    assert result_of(stop) == (StopCCNResult.GENERAL_ERROR, ErrorCode.NO_RESOURCES)
    # Addressed to the refused connection, acknowledging its SCCRQ, from no connection.
    assert stop.tunnel_id == conns[2].local_id and stop.ns == 0 and stop.nr == 1
    assert w.lns.half_open == 2 and len(w.lns.conns) == 2
    assert w.lns.stats["refused_max_half_open_tunnels"] == 1
    assert w.lns.stats["rx_sccrq_refused"] == 1 and w.lns.stats["rx_sccrq_accepted"] == 2
    # A retransmission of the refused SCCRQ is refused again, still without state.
    (again,) = decoded(w.deliver_to_lns([sccrqs[2]]))
    assert again.msg_type == M.StopCCN and w.lns.stats["refused_max_half_open_tunnels"] == 2
    assert len(w.lns.conns) == 2
    # The dialler is told why: StopCCN 2/4 from the peer.
    w.deliver_to_lac(w.to_lac)
    (down,) = downs(w.lac_events, ev.TunnelDown)
    assert down.conn is conns[2] and down.by_peer
    assert (down.result, down.error) == (StopCCNResult.GENERAL_ERROR, ErrorCode.NO_RESOURCES)
    # Once the two are established, they no longer count: a new tunnel is accepted.
    w.pump()
    assert conns[0].established and conns[1].established and w.lns.half_open == 0
    late = w.dial()
    w.pump()
    assert late.established and len(w.lns.conns) == 3


def test_half_open_counts_only_tunnels_peers_opened() -> None:
    """Our own outstanding dials are not half-open tunnels of the peers: they do not take
    the places a flood would fill, and they never refuse anyone."""
    w = Wire(ConnectionParams(version=2), max_half_open_tunnels=1, sccrq_rate=0)
    w.lns.dial(ConnectionParams(version=2), "lns", ("10.9.9.9", 1701), 0.0)
    w.lns.datagrams()
    conn = w.dial()
    w.pump()
    assert conn.established and w.lns.half_open == 0


@pytest.mark.parametrize("refused_by_policy", [False, True])
def test_tunnels_beyond_max_tunnels_get_stopccn_2_4_without_state(
        refused_by_policy: bool) -> None:
    w = Wire(ConnectionParams(version=2, hello_interval=0), max_tunnels=2, sccrq_rate=0)
    if refused_by_policy:
        w.lns.accept = lambda _l, _p, _m: (StopCCNResult.NOT_AUTHORIZED, 0, "no")
    for _ in range(3):
        w.dial()
    replies = decoded(w.deliver_to_lns(w.lac_datagrams()))
    first = M.StopCCN if refused_by_policy else M.SCCRP
    assert [m.msg_type for m in replies] == [first, first, M.StopCCN]
    assert result_of(replies[2]) == (StopCCNResult.GENERAL_ERROR, ErrorCode.NO_RESOURCES)
    assert w.lns.stats["refused_max_tunnels"] == 1
    assert len(w.lns.conns) == 2, "the refusal beyond the bound holds no connection"
    # Ten more: still two connections, ten more refusals counted.
    for _ in range(10):
        w.dial()
    w.deliver_to_lns(w.lac_datagrams())
    assert len(w.lns.conns) == 2 and w.lns.stats["refused_max_tunnels"] == 11


# ---- SCCRQ rate per source -----------------------------------------------------------------


def test_sccrq_rate_per_source_drops_silently_and_counts() -> None:
    w = Wire(ConnectionParams(version=2, hello_interval=0), sccrq_rate=1, sccrq_burst=2)
    for _ in range(5):
        w.dial()
    sccrqs = w.lac_datagrams()
    replies = decoded(w.deliver_to_lns(sccrqs))
    assert [m.msg_type for m in replies] == [M.SCCRP, M.SCCRP]  # nothing for the other 3
    assert w.lns.stats["rx_sccrq_rate_limited"] == 3 and len(w.lns.conns) == 2
    # Another source has a bucket of its own.
    other = decoded(w.deliver_to_lns([sccrqs[2]], source=("10.0.0.3", 1701)))
    assert [m.msg_type for m in other] == [M.SCCRP]
    # One token a second: a second later the retransmission of one dropped SCCRQ gets in
    # (and only one).
    w.now += 1.0
    assert [m.msg_type for m in decoded(w.deliver_to_lns(sccrqs[3:5]))] == [M.SCCRP]
    assert w.lns.stats["rx_sccrq_rate_limited"] == 4
    # Every datagram is in exactly one rx_* counter.
    assert sum(v for k, v in w.lns.stats.items() if k.startswith("rx_")) == 8
    # The source's bucket is empty, yet the three tunnels answered to it complete: only
    # SCCRQs are limited. (The one answered to 10.0.0.3 cannot: this wire delivers its
    # SCCCN from the LAC's address.)
    w.deliver_to_lac(w.to_lac)
    w.pump()
    assert sum(c.established for c in w.lns.conns.values()) == 3


def test_sccrq_rate_table_is_bounded() -> None:
    limiter = SourceRateLimiter(rate=1, burst=1, max_sources=3)
    for i in range(100):
        assert limiter.allow(f"10.1.0.{i}", 0.0)
    assert len(limiter) == 3
    # The most recent sources are the ones remembered (and limited).
    assert not limiter.allow("10.1.0.99", 0.0)
    assert limiter.allow("10.1.0.0", 0.0), "a forgotten source starts with a full bucket"


def test_sccrq_rate_zero_disables_the_limiter() -> None:
    limiter = SourceRateLimiter(rate=0, burst=1, max_sources=1)
    assert all(limiter.allow("10.1.0.1", 0.0) for _ in range(1000))
    assert len(limiter) == 0


# ---- sessions --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_sessions_beyond_the_daemon_bound_get_cdn_4_4(version: int) -> None:
    params = ConnectionParams(version=version, hello_interval=0,
                              call=CallParams(pw_type=PwType.PPP))
    w = Wire(params, max_sessions=3, sccrq_rate=0)
    conns = [w.dial(), w.dial()]
    w.pump()
    calls = [c.place_call(CallParams(pw_type=PwType.PPP), now=w.now) for c in conns
             for _ in range(2)]
    for c in conns:
        w.lac.touch(c)
    w.pump()
    assert w.lns.sessions == 3 and w.lns.stats["refused_max_sessions"] == 1
    refused = [c for c in calls if c.dead]
    (call,) = refused
    (down,) = [e for e in downs(w.lac_events, ev.CallDown) if e.call is call]
    assert down.by_peer
    assert (down.result, down.error) == (CDNResult.NO_FACILITIES_TEMPORARY,
                                         ErrorCode.NO_RESOURCES)
    lns_conn = w.lns.conns[call.conn.peer_id]
    assert lns_conn.stats["refused_max_sessions"] == 1
    # The LNS cannot place a fourth of its own either.
    with pytest.raises(ValueError, match="max_sessions 3"):
        lns_conn.place_call(CallParams(pw_type=PwType.PPP), now=w.now)
    # One session goes: room for another.
    up = next(c for c in calls if c.established)
    up.conn.disconnect_call(up, w.now)
    w.lac.touch(up.conn)
    w.pump()
    assert w.lns.sessions == 2
    again = conns[0].place_call(CallParams(pw_type=PwType.PPP), now=w.now)
    w.lac.touch(conns[0])
    w.pump()
    assert again.established and w.lns.sessions == 3


def test_sessions_beyond_the_tunnel_bound_are_counted() -> None:
    params = ConnectionParams(version=2, hello_interval=0, max_sessions=1)
    w = Wire(params, sccrq_rate=0)
    lac_params = ConnectionParams(version=2, hello_interval=0)
    conn = w.lac.dial(lac_params, "lac", LNS, w.now)
    w.pump()
    calls = [conn.place_call(now=w.now) for _ in range(2)]
    w.lac.touch(conn)
    w.pump()
    assert calls[0].established and calls[1].dead
    (down,) = [e for e in downs(w.lac_events, ev.CallDown) if e.call is calls[1]]
    assert (down.result, down.error) == (CDNResult.NO_FACILITIES_TEMPORARY,
                                         ErrorCode.NO_RESOURCES)
    assert w.lns.stats["refused_tunnel_max_sessions"] == 1
    assert w.lns.conns[conn.peer_id].stats["refused_tunnel_max_sessions"] == 1


def test_session_budget_follows_calls_through_tunnel_teardown() -> None:
    w = Wire(ConnectionParams(version=2, hello_interval=0), sccrq_rate=0)
    conn = w.dial()
    w.pump()
    for _ in range(5):
        conn.place_call(now=w.now)
    w.lac.touch(conn)
    w.pump()
    assert w.lns.sessions == 5 and w.lac.sessions == 5
    conn.close(w.now)
    w.lac.touch(conn)
    w.pump()
    assert w.lns.sessions == 0 and w.lac.sessions == 0


def test_session_budget_rejects_a_zero_limit() -> None:
    with pytest.raises(ValueError):
        SessionBudget(0)


# ---- control receive queue -------------------------------------------------------------------


def _numbered(ns: int) -> ControlMessage:
    return ControlMessage(M.HELLO, version=2, tunnel_id=1, ns=ns, nr=0)


def test_out_of_order_control_messages_beyond_the_queue_bound_are_dropped() -> None:
    t = ReliableTransport(TransportConfig(version=2, receive_window=16, max_buffered=2))
    for ns in (1, 2, 3, 4):
        assert t.receive(_numbered(ns), 0.0) == []
    assert t.buffered == 2 and t.stats.rx_queue_full == 2 and t.stats.rx_out_of_order == 4
    delivered = t.receive(_numbered(0), 0.0)
    assert [m.ns for m in delivered] == [0, 1, 2]
    assert t.nr == 3, "3 and 4 were dropped: the peer retransmits them"
    assert [m.ns for m in t.receive(_numbered(3), 0.1) + t.receive(_numbered(4), 0.1)] == [3, 4]


def test_control_rx_queue_reaches_the_connection_transport() -> None:
    conn = ControlConnection(ConnectionParams(version=2, control_rx_queue=0), 7, now=0.0)
    assert conn.transport.config.max_buffered == 0
    assert ConnectionParams().control_rx_queue == 16
    with pytest.raises(ValueError):
        ConnectionParams(control_rx_queue=-1)
