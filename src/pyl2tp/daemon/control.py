"""The asyncio side of the control plane: sockets, one timer, and the data plane it programs.

:class:`ControlDriver` feeds the sans-I/O :class:`~pyl2tp.control.plane.ControlPlane` with the
control messages that the userspace backend's shared sockets pass up (T bit set, or session id
0 over IP), transmits what the plane produces, and turns its events into data-plane objects:
a tunnel that comes up becomes a managed registry tunnel on the very socket its control
connection uses, an established call becomes a session, and teardown removes them. The
reverse direction works too: deleting a managed tunnel or session through the management API
(``ip l2tp del ...``) clears it on the wire with StopCCN or CDN.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
from collections.abc import Callable
from typing import Any

from pyl2tp.control import events as ev
from pyl2tp.control.call import Call
from pyl2tp.control.params import CallParams, ConnectionParams
from pyl2tp.control.plane import ControlPlane, Decision
from pyl2tp.control.tunnel import ControlConnection, State
from pyl2tp.dataplane.model import Session, Tunnel
from pyl2tp.dataplane.registry import Registry
from pyl2tp.dataplane.userspace import Endpoint, UserspaceBackend
from pyl2tp.errors import L2tpError
from pyl2tp.wire.constants import L2TP_PORT, CDNResult, EncapType, ErrorCode, StopCCNResult
from pyl2tp.wire.message import ControlMessage

from .deadline import DeadlineTimer

log = logging.getLogger("pyl2tp.control")

Policy = Callable[[Endpoint, tuple[str, int], ControlMessage], Decision]
Publish = Callable[[str, dict[str, Any]], None]

SOURCE_CACHE_TTL = 60.0
"""How long a routing decision (our source address towards a peer) is reused: long enough
that a burst of tunnels from one peer probes the routing table once, short enough that a
route change shows within a minute."""
SOURCE_CACHE_SIZE = 4096
TIMER_SLACK = 0.005
"""The loop timer fires this much after the plane's next deadline, so that the deadlines of
the next few milliseconds are handled in the same wake-up: thousands of idle tunnels have
thousands of HELLO timers, and each wake-up of the event loop costs more than the handling
of one of them. Protocol timers are seconds; 5 ms does not change their meaning."""


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit and return the new (soft, hard).

    Every Ethernet session holds a TAP descriptor and every tunnel dialled from its own port a
    socket; the usual soft limit of 1024 would refuse the thousandth session (EMFILE) on a host
    whose hard limit allows far more. Raising the soft limit up to the hard one needs no
    privilege. Failure leaves the limit as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or soft == resource.RLIM_INFINITY:
        return soft, hard
    candidates = [hard]
    if hard == resource.RLIM_INFINITY:
        # The kernel caps descriptors at fs.nr_open; an unlimited hard limit means that.
        with contextlib.suppress(OSError, ValueError), open("/proc/sys/fs/nr_open") as f:
            candidates.append(int(f.read()))
    for want in candidates:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (OSError, ValueError):
            continue
        log.debug("RLIMIT_NOFILE soft limit raised from %s to %s", soft, want)
        return want, hard
    return soft, hard


def family_of(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def wildcard(family: int) -> str:
    return "::" if family == socket.AF_INET6 else "0.0.0.0"


def source_address(family: int, peer: str) -> str:
    """The local address the routing table picks towards ``peer`` (for display and for the
    data-plane tunnel's ``local``), found with an unbound connected UDP socket. Any failure,
    including running out of descriptors (EMFILE) for the probe itself, gives the wildcard:
    raising here would leave a control connection up without its data-plane tunnel."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((peer, L2TP_PORT))
            return str(probe.getsockname()[0])
    except OSError:
        return wildcard(family)


class ControlDriver:
    """Runs the control plane on the userspace backend's endpoints."""

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: Registry,
                 backend: UserspaceBackend, *, policy: Policy | None = None,
                 publish: Publish | None = None, max_tunnels: int = 4096) -> None:
        self.loop = loop
        self.registry = registry
        self.backend = backend
        self.policy = policy
        self.publish = publish or (lambda _e, _a: None)
        self.plane = ControlPlane(
            accept=self._accept, max_tunnels=max_tunnels,
            tunnel_id_taken=lambda tid: tid in registry.tunnels,
            session_id_taken=lambda sid: sid in registry.v3_sessions,
        )
        self.max_ppp_negotiations = 1024
        """Bound the PPP manager applies to sessions still negotiating PPP (set with the
        other limits by :meth:`set_limits`)."""
        self._sources: dict[tuple[int, str], tuple[float, str]] = {}
        self.listeners: list[Endpoint] = []
        self._refs: dict[Endpoint, int] = {}
        # Control connections holding a reference on their socket (conn.local).
        self._holding: set[int] = set()
        self._timer = DeadlineTimer(loop, self._on_timer)
        self._tunnels: dict[int, Tunnel] = {}   # control tunnel id -> data-plane tunnel
        self._sessions: dict[tuple[int, int], Session] = {}
        # Called with every control-plane event after the data plane has followed it.
        self.observers: list[Callable[[ev.Event], None]] = []
        backend.control_handler = self._on_datagram
        registry.listeners.append(self._on_registry)

    # ---- limits and counters -----------------------------------------------------------------

    def set_limits(self, *, max_tunnels: int, max_half_open_tunnels: int, max_sessions: int,
                   sccrq_rate: float, sccrq_burst: int, sccrq_sources: int,
                   max_ppp_negotiations: int) -> None:
        """The ``[daemon]`` resource bounds (at start and on every reload)."""
        self.plane.set_limits(max_tunnels=max_tunnels,
                              max_half_open_tunnels=max_half_open_tunnels,
                              max_sessions=max_sessions, sccrq_rate=sccrq_rate,
                              sccrq_burst=sccrq_burst, sccrq_sources=sccrq_sources)
        self.max_ppp_negotiations = max_ppp_negotiations

    def count(self, name: str) -> None:
        """Bump a daemon-wide counter; they are the plane's, shown by ``control_stats``."""
        self.plane.stats[name] = self.plane.stats.get(name, 0) + 1

    def source_for(self, family: int, peer: str) -> str:
        """:func:`source_address`, remembered per peer for :data:`SOURCE_CACHE_TTL` seconds:
        a tunnel coming up would otherwise open a probe socket each time."""
        key = (family, peer)
        now = self.loop.time()
        hit = self._sources.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        address = source_address(family, peer)
        if address != wildcard(family):  # a failed probe is retried next time
            if len(self._sources) >= SOURCE_CACHE_SIZE:
                self._sources.clear()
            self._sources[key] = (now + SOURCE_CACHE_TTL, address)
        return address

    # ---- sockets ----------------------------------------------------------------------------

    def listen(self, encap: EncapType, address: str, port: int = L2TP_PORT) -> Endpoint:
        """Open (or reuse) a socket that accepts incoming control connections."""
        ep = self.backend.endpoint_for(encap, family_of(address), address,
                                       port if encap == EncapType.UDP else 0)
        ep.pinned = True
        if ep not in self.listeners:
            self.listeners.append(ep)
        log.info("listening for %s control connections on %s%s", encap.name, address,
                 f" port {ep.port}" if encap == EncapType.UDP else "")
        return ep

    def unlisten(self, ep: Endpoint) -> None:
        """Stop accepting tunnels on ``ep``; its socket closes once no tunnel uses it."""
        if ep in self.listeners:
            self.listeners.remove(ep)
        if ep not in self._refs:
            ep.pinned = False
            self.backend._release(ep)

    def _hold(self, ep: Endpoint) -> None:
        self._refs[ep] = self._refs.get(ep, 0) + 1
        ep.pinned = True

    def _unhold(self, ep: Endpoint) -> None:
        n = self._refs.get(ep, 0) - 1
        if n > 0:
            self._refs[ep] = n
            return
        self._refs.pop(ep, None)
        if ep not in self.listeners:
            ep.pinned = False
            self.backend._release(ep)

    # ---- local actions ----------------------------------------------------------------------

    def dial(self, params: ConnectionParams, peer: str, *, port: int = L2TP_PORT,
             encap: EncapType = EncapType.UDP, local: str | None = None,
             local_port: int = L2TP_PORT) -> ControlConnection:
        """Open a control connection to ``peer``; calls may be placed on it at once."""
        if params.version == 2 and encap != EncapType.UDP:
            raise L2tpError(errno.EPROTONOSUPPORT, "L2TPv2 runs over UDP only")
        family = family_of(peer)
        if local is not None and family_of(local) != family:
            raise L2tpError(errno.EINVAL, "local and peer addresses must be of one family")
        sport = local_port if encap == EncapType.UDP else 0
        # Without a local address, dial from a listener that matches (a socket bound to one
        # address would refuse a second one bound to the wildcard on the same port).
        ep = next((e for e in self.listeners if local is None and e.encap == encap
                   and e.family == family and e.port == sport), None)
        if ep is None:
            ep = self.backend.endpoint_for(encap, family, local or wildcard(family), sport)
        self._hold(ep)
        try:
            conn = self.plane.dial(params, ep, (peer, port if encap == EncapType.UDP else 0),
                                   self.loop.time(), ip_encap=encap == EncapType.IP)
        except (ValueError, RuntimeError) as exc:
            self._unhold(ep)
            raise L2tpError(errno.ENOSPC, str(exc)) from None
        self._holding.add(conn.local_id)
        self._pump()
        return conn

    def place_call(self, conn: ControlConnection, params: CallParams | None = None, *,
                   direction: str = "incoming") -> Call:
        try:
            call = conn.place_call(params, direction=direction, now=self.loop.time())
        except ValueError as exc:
            raise L2tpError(errno.EINVAL, str(exc)) from None
        self.plane.touch(conn)
        self._pump()
        return call

    def hangup(self, conn: ControlConnection, call: Call | None = None, *,
               text: str = "administrative", result: int | None = None,
               error: int = ErrorCode.NO_ERROR) -> None:
        """StopCCN (no ``call``) or CDN; ``result`` defaults to the administrative codes
        (StopCCN 1, CDN 3)."""
        now = self.loop.time()
        if call is None:
            conn.close(now, result=StopCCNResult.GENERAL_CLEAR if result is None else result,
                       error=error, text=text)
        else:
            conn.disconnect_call(call, now, result=CDNResult.ADMINISTRATIVE if result is None
                                 else result, error=error, text=text)
        self.plane.touch(conn)
        self._pump()

    def close_all(self) -> None:
        self.plane.close_all(self.loop.time())
        self._pump()

    def conn(self, tunnel_id: int) -> ControlConnection:
        conn = self.plane.conns.get(tunnel_id)
        if conn is None:
            raise L2tpError(errno.ENODEV, f"no control connection {tunnel_id}")
        return conn

    # ---- receive path -------------------------------------------------------------------------

    def _accept(self, ep: Any, peer: Any, msg: ControlMessage) -> Decision:
        if self.policy is None:
            return None
        return self.policy(ep, peer, msg)

    def _on_datagram(self, ep: Endpoint, data: bytes, offset: int, addr: tuple[Any, ...]
                     ) -> None:
        peer = (addr[0], addr[1] if ep.encap == EncapType.UDP else 0)
        self.plane.receive(ep, data, offset, peer, self.loop.time(),
                           ip_encap=ep.encap == EncapType.IP)
        self._pump()

    def _on_timer(self) -> None:
        self.plane.handle_timer(self.loop.time())
        self._pump()

    def _pump(self) -> None:
        """Send what the plane produced, act on its events and re-arm the one timer.

        Acting on an event may produce more (a CDN for a session the data plane refused),
        so this repeats until the plane has nothing left."""
        while True:
            datagrams, events = self.plane.datagrams(), self.plane.events()
            if not datagrams and not events:
                break
            for ep, peer, data in datagrams:
                ep.sendto(data, peer)
            for event in events:
                try:
                    self._on_event(event)
                    for observer in self.observers:
                        observer(event)
                except Exception:  # one bad event must not stop the others or the loop
                    log.exception("control event %r failed", event)
        deadline = self.plane.next_deadline()
        self._timer.arm(None if deadline is None else deadline + TIMER_SLACK)

    # ---- events -> data plane -----------------------------------------------------------------

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.TunnelUp):
            self._tunnel_up(event.conn)
        elif isinstance(event, ev.CallUp):
            self._call_up(event.call)
        elif isinstance(event, ev.CallDown):
            self._call_down(event)
        elif isinstance(event, ev.TunnelDown):
            self._tunnel_down(event)
        elif isinstance(event, ev.CallInfo):
            self.publish("control_call_info", {
                "conn_id": event.call.conn.local_id, "session_id": event.call.local_id,
                "msg_type": event.msg_type, "info": event.call.summary()["peer_info"]})
        elif isinstance(event, ev.TunnelReplaced):
            self.publish("control_tunnel_replaced", {
                "old_conn_id": event.old.local_id, "conn_id": event.new.local_id})

    def _tunnel_up(self, conn: ControlConnection) -> None:
        ep: Endpoint = conn.local
        host, port = conn.peer
        tunnel = Tunnel(conn.local_id, conn.peer_id, conn.version, ep.encap,
                        family=ep.family, local=self.source_for(ep.family, host), remote=host,
                        udp_sport=ep.port, udp_dport=port, managed=True,
                        # The control messages share this socket: keep its checksums on.
                        udp_csum=True)
        tunnel.owner = "control"
        tunnel.endpoint = ep
        try:
            self.registry.add_tunnel(tunnel)
        except L2tpError as exc:
            log.warning("tunnel %d: data plane refused it: %s", conn.local_id, exc,
                        extra={"tunnel_id": conn.local_id, "peer": conn.peer})
            conn.close(self.loop.time(), result=StopCCNResult.GENERAL_ERROR, error=4,
                       text=f"data plane: {exc.message}")
            self.plane.touch(conn)
            return
        if conn.local_id not in self._holding:  # an answered connection
            self._hold(ep)
            self._holding.add(conn.local_id)
        self._tunnels[conn.local_id] = tunnel
        self.publish("control_tunnel_up", conn.summary())

    def _call_up(self, call: Call) -> None:
        conn = call.conn
        tunnel = self._tunnels.get(conn.local_id)
        if tunnel is None:
            return
        session = Session(tunnel, call.local_id, call.peer_id, call.pw_type,
                          cookie=call.cookie, peer_cookie=call.peer_cookie,
                          l2spec_type=call.l2spec_type, recv_seq=call.recv_seq,
                          send_seq=call.send_seq, lns_mode=call.lns_mode,
                          reorder_timeout=call.params.reorder_timeout,
                          ifname=call.params.ifname)
        try:
            self.registry.add_session(session)
        except L2tpError as exc:
            log.warning("session %d/%d: data plane refused it: %s", conn.local_id,
                        call.local_id, exc,
                        extra={"tunnel_id": conn.local_id, "session_id": call.local_id})
            conn.disconnect_call(call, self.loop.time(), result=CDNResult.GENERAL_ERROR,
                                 error=4, text=f"data plane: {exc.message}")
            self.plane.touch(conn)
            return
        self._sessions[(conn.local_id, call.local_id)] = session
        self.publish("control_session_up", {"conn_id": conn.local_id, **call.summary(),
                                            "ifname": session.ifname})

    def _call_down(self, event: ev.CallDown) -> None:
        call = event.call
        session = self._sessions.pop((call.conn.local_id, call.local_id), None)
        if session is not None and not session.dead:
            self.registry.delete_session(session)
        self.publish("control_session_down", {
            "conn_id": call.conn.local_id, "session_id": call.local_id,
            "peer_session_id": call.peer_id, "reason": event.reason, "result": event.result,
            "error": event.error, "by_peer": event.by_peer})

    def _tunnel_down(self, event: ev.TunnelDown) -> None:
        conn = event.conn
        tunnel = self._tunnels.pop(conn.local_id, None)
        if tunnel is not None and not tunnel.dead:
            self.registry.delete_tunnel(tunnel)
        self.publish("control_tunnel_down", {
            "conn_id": conn.local_id, "peer_conn_id": conn.peer_id, "reason": event.reason,
            "result": event.result, "error": event.error, "by_peer": event.by_peer})
        if conn.local_id in self._holding:
            self._holding.discard(conn.local_id)
            # The connection lingers on its socket to acknowledge the peer's retransmissions,
            # so a socket of its own (an ephemeral port) closes only after the linger.
            self.loop.call_later(conn.transport.config.linger_time + 1.0, self._unhold,
                                 conn.local)

    # ---- API-initiated deletes ----------------------------------------------------------------

    def _on_registry(self, event: str, obj: object) -> None:
        if event == "tunnel_delete" and isinstance(obj, Tunnel) and obj.owner == "control":
            conn = self.plane.conns.get(obj.tunnel_id)
            if conn is not None and conn.state not in (State.CLOSING, State.DEAD):
                self._tunnels.pop(obj.tunnel_id, None)
                self.loop.call_soon(self.hangup, conn, None)
        elif event == "session_delete" and isinstance(obj, Session) and \
                obj.tunnel.owner == "control":
            conn = self.plane.conns.get(obj.tunnel.tunnel_id)
            if conn is None:
                return
            call = conn.calls.get(obj.session_id)
            if call is not None and not call.dead:
                self._sessions.pop((conn.local_id, call.local_id), None)
                self.loop.call_soon(self.hangup, conn, call)

    def shutdown(self) -> None:
        """Tell every peer we are going (StopCCN 6) before the sockets close."""
        with contextlib.suppress(Exception):
            self.close_all()
        self._timer.cancel()
        if self._on_registry in self.registry.listeners:
            self.registry.listeners.remove(self._on_registry)

    def dump(self) -> list[dict[str, Any]]:
        out = []
        for conn in sorted(self.plane.conns.values(), key=lambda c: c.local_id):
            item = conn.summary()
            host, port = conn.peer
            item["peer"] = host
            item["peer_port"] = port
            item["encap"] = "ip" if conn.ip_encap else "udp"
            item["calls"] = [c.summary() for c in sorted(conn.calls.values(),
                                                         key=lambda c: c.local_id)]
            out.append(item)
        return out


__all__ = ["ControlDriver", "family_of", "raise_nofile_limit", "source_address", "wildcard"]
