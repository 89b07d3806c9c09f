"""All control connections of a daemon behind one set of sockets, sans-I/O.

:class:`ControlPlane` is what the daemon's sockets talk to: it demultiplexes control messages
by tunnel id (RFC 2661 §3.1, RFC 3931 §3.2.1), turns SCCRQs into new connections according to
a policy, finds the connection a retransmitted SCCRQ or an early StopCCN (tunnel id 0)
belongs to by the peer's address and Assigned Tunnel ID, breaks tunnel ties (RFC 2661
§4.4.3, RFC 3931 §5.4.3), and keeps one timer heap for thousands of connections.

Addresses are opaque: ``local`` names the socket a datagram arrived on (and leaves by) and
``peer`` is the sender's address as the driver normalises it, ``(host, port)`` for UDP and
``(host, 0)`` for IP. Outgoing datagrams come back as ``(local, peer, bytes)``.

Resource bounds (issue 7), each counted in :attr:`ControlPlane.stats` when it bites:

* ``max_tunnels``: control connections of every kind; an SCCRQ beyond it is refused with
  StopCCN 2 (general error) / error 4 (insufficient resources): ``refused_max_tunnels``.
* ``max_half_open_tunnels``: connections peers opened (SCCRQ answered) that are not yet
  established, what a flood of SCCRQs piles up; beyond it the same StopCCN 2/4:
  ``refused_max_half_open_tunnels``.
* ``max_sessions``: calls of all connections together (:class:`SessionBudget`); a call request
  beyond it gets CDN 4 / error 4: ``refused_max_sessions`` (``refused_tunnel_max_sessions``
  for a tunnel's own ``max_sessions``).
* ``sccrq_rate``/``sccrq_burst`` per source address (:class:`SourceRateLimiter`): SCCRQs
  beyond it are dropped without an answer, since answering would amplify a flood towards a
  possibly forged source: ``rx_sccrq_rate_limited``.

Refusals for a bound are stateless: the StopCCN is built from the SCCRQ and sent once, no
connection lingers for it (the peer's retransmitted SCCRQ gets another one), so a flood of
refused SCCRQs cannot hold state either.
"""

from __future__ import annotations

import heapq
import logging
import os
import struct
from collections.abc import Callable
from typing import Any

from pyl2tp.wire.avp import ResultCode
from pyl2tp.wire.constants import AvpType, ErrorCode, MessageType, StopCCNResult
from pyl2tp.wire.errors import HeaderError, MessageError, ParseError
from pyl2tp.wire.header import decode_control_header
from pyl2tp.wire.message import ControlMessage, decode_message, encode_message

from . import events as ev
from .limits import SessionBudget, SourceRateLimiter
from .params import CallParams, ConnectionParams
from .tunnel import ControlConnection, Rng, State, assigned_id_type

log = logging.getLogger(__name__)

A = AvpType
M = MessageType

Decision = ConnectionParams | tuple[int, int, str] | None
"""What the accept policy says of an SCCRQ: serve it with these parameters, refuse it with
StopCCN (result, error, text), or ignore it (None)."""

AcceptPolicy = Callable[[Any, Any, ControlMessage], Decision]


def _refuse_all(_local: Any, _peer: Any, _msg: ControlMessage) -> Decision:
    return (StopCCNResult.NOT_AUTHORIZED, 0, "this host does not accept tunnels")


_FIRST_AVP = struct.Struct(">HHHH")  # flags/length, vendor, type, value of the first AVP
_CONTROL_HEADER_LEN = 12
_LIMIT_LOG_INTERVAL = 10.0


def _peek_type(data: bytes, offset: int) -> int | None:
    """The Message Type of a control message without decoding it (None if the first AVP is
    not a Message Type AVP), so that a flood is dropped before any real work."""
    start = offset + _CONTROL_HEADER_LEN
    if len(data) < start + _FIRST_AVP.size:
        return None
    word, vendor, attr, value = _FIRST_AVP.unpack_from(data, start)
    if vendor or attr != AvpType.MESSAGE_TYPE or word & 0x4000:  # hidden is malformed
        return None
    return int(value)


class ControlPlane:
    """Every control connection of one daemon, with their demultiplexing and timers."""

    def __init__(self, *, accept: AcceptPolicy = _refuse_all, rng: Rng = os.urandom,
                 tunnel_id_taken: Callable[[int], bool] | None = None,
                 session_id_taken: Callable[[int], bool] | None = None,
                 max_tunnels: int = 4096, max_half_open_tunnels: int = 1024,
                 max_sessions: int = 65535, sccrq_rate: float = 50.0, sccrq_burst: int = 100,
                 sccrq_sources: int = 4096) -> None:
        self.accept = accept
        self.rng = rng
        self.max_tunnels = max_tunnels
        self.max_half_open_tunnels = max_half_open_tunnels
        self.stats: dict[str, int] = {}
        self.budget = SessionBudget(max_sessions, self._count)
        self.sccrq_limiter = SourceRateLimiter(sccrq_rate, sccrq_burst, sccrq_sources)
        self._tunnel_id_taken = tunnel_id_taken or (lambda _tid: False)
        self._session_id_taken = session_id_taken
        self.conns: dict[int, ControlConnection] = {}
        self._by_peer: dict[tuple[Any, Any, int], ControlConnection] = {}
        # Connections peers opened that are not established yet (max_half_open_tunnels).
        self._half_open: set[int] = set()
        # Our SCCRQs awaiting a reply, by (local, peer host, version): what a tie is
        # checked against, without walking every connection on each SCCRQ.
        self._dialling: dict[tuple[Any, Any, int], dict[int, ControlConnection]] = {}
        self._dialling_key: dict[int, tuple[Any, Any, int]] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._sched: dict[int, float] = {}
        self._seq = 0
        self._out: list[tuple[Any, Any, bytes]] = []
        self._events: list[ev.Event] = []
        self._limit_logged: dict[str, float] = {}

    def set_limits(self, *, max_tunnels: int, max_half_open_tunnels: int, max_sessions: int,
                   sccrq_rate: float, sccrq_burst: int, sccrq_sources: int) -> None:
        """Apply new bounds (a configuration reload). Existing tunnels and sessions above a
        lowered bound stay; only new ones are refused. The rate table keeps its entries."""
        self.max_tunnels = max_tunnels
        self.max_half_open_tunnels = max_half_open_tunnels
        self.budget.limit = max_sessions
        limiter = self.sccrq_limiter
        limiter.rate, limiter.burst, limiter.max_sources = sccrq_rate, sccrq_burst, sccrq_sources

    @property
    def half_open(self) -> int:
        """Connections peers opened that are not established yet."""
        return len(self._half_open)

    @property
    def sessions(self) -> int:
        """Calls of every connection, in any state."""
        return self.budget.used

    def _count(self, name: str) -> None:
        """Every datagram handed to :meth:`receive` lands in exactly one ``rx_*`` counter
        (``rx_dispatched`` when a connection took it), so their sum accounts for all input."""
        self.stats[name] = self.stats.get(name, 0) + 1

    # ---- ids --------------------------------------------------------------------------------

    def _new_tunnel_id(self, version: int) -> int:
        size = 2 if version == 2 else 4
        for _ in range(64):
            tid = int.from_bytes(self.rng(size), "big")
            if tid and tid not in self.conns and not self._tunnel_id_taken(tid):
                return tid
        raise RuntimeError("no free tunnel id")

    # ---- local actions ----------------------------------------------------------------------

    def dial(self, params: ConnectionParams, local: Any, peer: Any, now: float, *,
             ip_encap: bool = False) -> ControlConnection:
        """Open a control connection to ``peer`` (we send SCCRQ)."""
        if len(self.conns) >= self.max_tunnels:
            raise ValueError(f"tunnel limit {self.max_tunnels} reached")
        conn = ControlConnection.dial(params, self._new_tunnel_id(params.version), now=now,
                                      rng=self.rng, ip_encap=ip_encap, peer=peer, local=local,
                                      session_id_taken=self._session_id_taken,
                                      budget=self.budget)
        self.conns[conn.local_id] = conn
        key = (local, peer[0], params.version)
        self._dialling.setdefault(key, {})[conn.local_id] = conn
        self._dialling_key[conn.local_id] = key
        self._collect(conn)
        return conn

    def touch(self, conn: ControlConnection) -> None:
        """Collect output after the driver acted on a connection directly (place_call ...)."""
        self._collect(conn)

    def close_all(self, now: float, *, result: int = StopCCNResult.SHUTTING_DOWN,
                  text: str = "shutting down") -> None:
        for conn in list(self.conns.values()):
            conn.close(now, result=result, text=text)
            self._collect(conn)

    # ---- receiving --------------------------------------------------------------------------

    def receive(self, local: Any, data: bytes, offset: int, peer: Any, now: float, *,
                ip_encap: bool = False) -> None:
        """A datagram with the T bit (or, over IP, session id 0) from ``peer``."""
        try:
            head = decode_control_header(data, offset)
        except HeaderError:
            # Not a control message at all (a data packet the backend passed up), or one
            # whose header is already unusable.
            is_control = len(data) > offset and data[offset] & 0x80
            self._count("rx_malformed" if is_control else "rx_not_control")
            return
        version, tid = head.version, head.tunnel_id
        if tid:
            conn = self.conns.get(tid)
            if conn is None or conn.version != version:
                self._count("rx_unknown_tunnel")
                log.debug("control message for unknown tunnel %d from %s", tid, peer)
                return
            if conn.local != local or conn.peer != peer:
                if (conn.local == local and conn.state is State.WAIT_CTL_REPLY
                        and conn.peer[0] == peer[0]):
                    conn.peer = peer  # RFC 2661 §8.1: the reply may come from another port
                else:
                    self._count("rx_wrong_peer")
                    return
            self._count("rx_dispatched")
            conn.receive(data, offset, now)
            self._collect(conn)
            return
        self._receive_unaddressed(local, data, offset, peer, now, version, ip_encap)

    def _receive_unaddressed(self, local: Any, data: bytes, offset: int, peer: Any,
                             now: float, version: int, ip_encap: bool) -> None:
        if _peek_type(data, offset) == M.SCCRQ and not self.sccrq_limiter.allow(peer[0], now):
            self._count("rx_sccrq_rate_limited")
            return
        # Decoded once for the policy and, when nothing in it is hidden, once for all.
        reusable = True
        try:
            msg = decode_message(data, offset=offset)
        except MessageError as exc:
            if not isinstance(exc.message, ControlMessage):
                self._count("rx_malformed")
                return
            msg = exc.message  # hidden AVPs we cannot read yet, or invalid: the type is known
            reusable = False
        except ParseError:
            self._count("rx_malformed")
            return
        if msg.msg_type == M.StopCCN:
            conn = self._by_peer.get((local, peer, msg.get(assigned_id_type(version), 0) or 0))
            if conn is None:
                self._count("rx_unknown_tunnel")
                return
            self._count("rx_dispatched")
            conn.receive(data, offset, now)
            self._collect(conn)
            return
        if msg.msg_type != M.SCCRQ:
            self._count("rx_unknown_tunnel")
            return
        decision = self.accept(local, peer, msg)
        if decision is None:
            self._count("rx_sccrq_ignored")
            return
        params = decision if isinstance(decision, ConnectionParams) else None
        if params is not None and params.version != version:
            decision, params = (StopCCNResult.UNSUPPORTED_VERSION, 0x0100 if params.version == 2
                                else 0, f"L2TPv{version} is not accepted from this peer"), None
        # A retransmitted SCCRQ belongs to the connection it created.
        peer_tid = self._assigned_id(data, offset, params, msg, version)
        if peer_tid is not None:
            known = self._by_peer.get((local, peer, peer_tid))
            if known is not None:
                self._count("rx_dispatched")
                known.receive(data, offset, now)
                self._collect(known)
                return
        if len(self.conns) >= self.max_tunnels:
            self._refuse_for_limit(local, peer, msg, version, ip_encap, now,
                                   "refused_max_tunnels", f"tunnel limit {self.max_tunnels} "
                                   "reached")
            return
        if params is not None and len(self._half_open) >= self.max_half_open_tunnels:
            self._refuse_for_limit(local, peer, msg, version, ip_encap, now,
                                   "refused_max_half_open_tunnels",
                                   f"{self.max_half_open_tunnels} tunnels are being set up")
            return
        moved: list[tuple[CallParams, str]] = []
        replaced: ControlConnection | None = None
        if params is not None:
            consumed, replaced, moved = self._tie(local, peer, msg, version, now)
            if consumed:
                self._count("rx_sccrq_tie")
                return
        tid = self._new_tunnel_id(version)
        kw: dict[str, Any] = dict(now=now, rng=self.rng, ip_encap=ip_encap, peer=peer,
                                  local=local, session_id_taken=self._session_id_taken,
                                  budget=self.budget)
        if params is not None:
            self._count("rx_sccrq_accepted")
            if reusable and params.secret is not None and msg.ignored:
                reusable = False  # an ignored AVP may be a hidden one our key would read
            conn = ControlConnection.answer(params, tid, data, offset,
                                            decoded=msg if reusable else None, **kw)
            if conn.state in (State.IDLE, State.WAIT_CTL_CONN):
                self._half_open.add(tid)
        else:
            assert isinstance(decision, tuple)
            result, error, text = decision
            self._count("rx_sccrq_refused")
            log.info("refusing tunnel from %s: %s", peer, text, extra={"peer": peer})
            conn = ControlConnection.refuse(ConnectionParams(version=version), tid, data,
                                            offset, result=result, error=error, text=text, **kw)
        self.conns[tid] = conn
        if replaced is not None:
            self._events.append(ev.TunnelReplaced(replaced, conn))
            for call_params, direction in moved:
                try:
                    conn.place_call(call_params, direction=direction, now=now)
                except ValueError as exc:  # refused at once (digest failed), or max_sessions
                    log.info("tunnel tie with %s: call not moved: %s", peer, exc,
                             extra={"peer": peer})
        self._collect(conn)

    def _refuse_for_limit(self, local: Any, peer: Any, msg: ControlMessage, version: int,
                          ip_encap: bool, now: float, counter: str, text: str) -> None:
        """StopCCN 2 (general error) / 4 (insufficient resources) in answer to an SCCRQ,
        without a connection: it goes out once per SCCRQ received, so the peer's
        retransmission gets another, and holding nothing is the point of refusing."""
        self._count("rx_sccrq_refused")
        self._count(counter)
        last = self._limit_logged.get(counter)
        if last is None or now - last >= _LIMIT_LOG_INTERVAL:
            self._limit_logged[counter] = now
            log.info("refusing tunnels (%s): %s; %d refused so far", counter, text,
                        self.stats[counter])
        peer_tid = msg.get(assigned_id_type(version))
        reply = ControlMessage(M.StopCCN, version=version,
                               tunnel_id=peer_tid if isinstance(peer_tid, int) else 0,
                               ns=0, nr=(msg.ns + 1) & 0xFFFF)
        # A connection id of ours is required; it names nothing, like the refusal itself.
        reply.add(assigned_id_type(version), self._new_tunnel_id(version))
        reply.add(A.RESULT_CODE, ResultCode(StopCCNResult.GENERAL_ERROR,
                                            ErrorCode.NO_RESOURCES, text))
        try:
            self._out.append((local, peer, encode_message(reply, ip_encap=ip_encap)))
        except (ValueError, OverflowError):  # the peer's id did not fit our header
            self._count("tx_encode_errors")

    @staticmethod
    def _assigned_id(data: bytes, offset: int, params: ConnectionParams | None,
                     msg: ControlMessage, version: int) -> int | None:
        key = assigned_id_type(version)
        value = msg.get(key)
        if value is None and params is not None and params.secret is not None:
            # Hidden: decode again with the peer's key.
            try:
                value = decode_message(data, offset=offset, hide_key=params.hide_key,
                                       validate=False).get(key)
            except ParseError:
                return None
        return value if isinstance(value, int) else None

    def _tie(self, local: Any, peer: Any, msg: ControlMessage, version: int, now: float
             ) -> tuple[bool, ControlConnection | None, list[tuple[CallParams, str]]]:
        """Tunnel tie breaking against our own outstanding SCCRQ to the same peer host.

        Returns whether the received SCCRQ was consumed (we won, or nobody did) and, when we
        lost, our abandoned connection and the calls to move to the peer's."""
        waiting = self._dialling.get((local, peer[0], version))
        ours = next((c for c in waiting.values() if c.state is State.WAIT_CTL_REPLY),
                    None) if waiting else None
        if ours is None:
            return False, None, []
        theirs = msg.get(A.TIE_BREAKER)
        mine = ours.our_tie_breaker
        if theirs is None and mine is None:
            return False, None, []  # RFC: without tie breakers, two connections are made
        self._count("tunnel_ties")
        if mine is not None and (theirs is None or mine < theirs):
            log.info("tunnel tie with %s: we win", peer, extra={"peer": peer})
            return True, None, []  # the loser discards its own SCCRQ; it expects no answer
        if theirs == mine:
            ours.abandon(now, "tunnel tie breaker values are equal")
            self._collect(ours)
            return True, None, []
        log.info("tunnel tie with %s: we lose; serving the peer's connection", peer,
                 extra={"peer": peer})
        pending = [(c.params, c.direction) for c in ours.calls.values()]
        ours.abandon(now, "lost the tunnel tie breaker")
        self._collect(ours)
        return False, ours, pending

    # ---- timers -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            when, _seq, tid = heap[0]
            conn = self.conns.get(tid)
            if conn is not None and self._sched.get(tid) == when:
                return when
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _seq, tid = heapq.heappop(heap)
            if self._sched.get(tid) != when:
                continue
            del self._sched[tid]
            conn = self.conns.get(tid)
            if conn is None:
                continue
            conn.handle_timer(now)
            self._collect(conn)

    # ---- output -----------------------------------------------------------------------------

    def _collect(self, conn: ControlConnection) -> None:
        for data in conn.datagrams_to_send():
            self._out.append((conn.local, conn.peer, data))
        events = conn.events()
        if events:
            self._events.extend(events)
        if conn.peer_id:
            key = (conn.local, conn.peer, conn.peer_id)
            if key not in self._by_peer and not conn.dead:
                self._by_peer[key] = conn
        lid = conn.local_id
        if lid in self._half_open and conn.state not in (State.IDLE, State.WAIT_CTL_CONN):
            self._half_open.discard(lid)
        if lid in self._dialling_key and conn.state is not State.WAIT_CTL_REPLY:
            key = self._dialling_key.pop(lid)
            waiting = self._dialling.get(key)
            if waiting is not None:
                waiting.pop(lid, None)
                if not waiting:
                    del self._dialling[key]
        if conn.dead:
            self.conns.pop(conn.local_id, None)
            self._sched.pop(conn.local_id, None)
            key = (conn.local, conn.peer, conn.peer_id)
            if self._by_peer.get(key) is conn:
                del self._by_peer[key]
            return
        deadline = conn.next_deadline()
        if deadline is not None and self._sched.get(conn.local_id) != deadline:
            self._sched[conn.local_id] = deadline
            self._seq += 1
            heapq.heappush(self._heap, (deadline, self._seq, conn.local_id))

    def datagrams(self) -> list[tuple[Any, Any, bytes]]:
        """``(local, peer, data)`` to transmit now."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[ev.Event]:
        out, self._events = self._events, []
        return out


__all__ = ["AcceptPolicy", "ControlPlane", "Decision"]
