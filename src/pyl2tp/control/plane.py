"""All control connections of a daemon behind one set of sockets, sans-I/O.

:class:`ControlPlane` is what the daemon's sockets talk to: it demultiplexes control messages
by tunnel id (RFC 2661 §3.1, RFC 3931 §3.2.1), turns SCCRQs into new connections according to
a policy, finds the connection a retransmitted SCCRQ or an early StopCCN (tunnel id 0)
belongs to by the peer's address and Assigned Tunnel ID, breaks tunnel ties (RFC 2661
§4.4.3, RFC 3931 §5.4.3), and keeps one timer heap for thousands of connections.

Addresses are opaque: ``local`` names the socket a datagram arrived on (and leaves by) and
``peer`` is the sender's address as the driver normalises it, ``(host, port)`` for UDP and
``(host, 0)`` for IP. Outgoing datagrams come back as ``(local, peer, bytes)``.
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Callable
from typing import Any

from pyl2tp.wire.constants import AvpType, ErrorCode, MessageType, StopCCNResult
from pyl2tp.wire.errors import HeaderError, MessageError, ParseError
from pyl2tp.wire.header import decode_control_header
from pyl2tp.wire.message import ControlMessage, decode_message

from . import events as ev
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


class ControlPlane:
    """Every control connection of one daemon, with their demultiplexing and timers."""

    def __init__(self, *, accept: AcceptPolicy = _refuse_all, rng: Rng = os.urandom,
                 tunnel_id_taken: Callable[[int], bool] | None = None,
                 session_id_taken: Callable[[int], bool] | None = None,
                 max_tunnels: int = 4096) -> None:
        self.accept = accept
        self.rng = rng
        self.max_tunnels = max_tunnels
        self._tunnel_id_taken = tunnel_id_taken or (lambda _tid: False)
        self._session_id_taken = session_id_taken
        self.conns: dict[int, ControlConnection] = {}
        self._by_peer: dict[tuple[Any, Any, int], ControlConnection] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._sched: dict[int, float] = {}
        self._seq = 0
        self._out: list[tuple[Any, Any, bytes]] = []
        self._events: list[ev.Event] = []
        self.stats: dict[str, int] = {}

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
                                      session_id_taken=self._session_id_taken)
        self.conns[conn.local_id] = conn
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
        try:
            msg = decode_message(data, offset=offset, validate=False)
        except MessageError as exc:
            if not isinstance(exc.message, ControlMessage):
                self._count("rx_malformed")
                return
            msg = exc.message  # hidden AVPs we cannot read yet; the type is known
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
            decision, params = (StopCCNResult.GENERAL_ERROR, ErrorCode.NO_RESOURCES,
                                f"tunnel limit {self.max_tunnels} reached"), None
        moved: list[tuple[CallParams, str]] = []
        replaced: ControlConnection | None = None
        if params is not None:
            consumed, replaced, moved = self._tie(local, peer, msg, version, now)
            if consumed:
                self._count("rx_sccrq_tie")
                return
        tid = self._new_tunnel_id(version)
        kw: dict[str, Any] = dict(now=now, rng=self.rng, ip_encap=ip_encap, peer=peer,
                                  local=local, session_id_taken=self._session_id_taken)
        if params is not None:
            self._count("rx_sccrq_accepted")
            conn = ControlConnection.answer(params, tid, data, offset, **kw)
        else:
            assert isinstance(decision, tuple)
            result, error, text = decision
            self._count("rx_sccrq_refused")
            log.info("refusing tunnel from %s: %s", peer, text)
            conn = ControlConnection.refuse(ConnectionParams(version=version), tid, data,
                                            offset, result=result, error=error, text=text, **kw)
        self.conns[tid] = conn
        if replaced is not None:
            self._events.append(ev.TunnelReplaced(replaced, conn))
            for call_params, direction in moved:
                conn.place_call(call_params, direction=direction, now=now)
        self._collect(conn)

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
        ours = next((c for c in self.conns.values()
                     if c.initiator and c.state is State.WAIT_CTL_REPLY and c.local == local
                     and c.peer[0] == peer[0] and c.version == version), None)
        if ours is None:
            return False, None, []
        theirs = msg.get(A.TIE_BREAKER)
        mine = ours.our_tie_breaker
        if theirs is None and mine is None:
            return False, None, []  # RFC: without tie breakers, two connections are made
        self._count("tunnel_ties")
        if mine is not None and (theirs is None or mine < theirs):
            log.info("tunnel tie with %s: we win", peer)
            return True, None, []  # the loser discards its own SCCRQ; it expects no answer
        if theirs == mine:
            ours.abandon(now, "tunnel tie breaker values are equal")
            self._collect(ours)
            return True, None, []
        log.info("tunnel tie with %s: we lose; serving the peer's connection", peer)
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
