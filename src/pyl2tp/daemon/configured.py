"""Applying a configuration file to a running daemon, at start and on SIGHUP.

The file describes a desired state (listeners, peer policies, tunnels to dial, static
tunnels); :class:`ConfigManager` moves the daemon towards it and keeps it there: dialled
tunnels that drop are dialled again with a capped exponential backoff, and a reload touches
only what changed, so established tunnels whose section is unchanged keep running. A reload
with an invalid file changes nothing.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import ipaddress
import logging
import socket
from typing import Any

from pyl2tp.control import events as ev
from pyl2tp.control.params import CallParams, ConnectionParams
from pyl2tp.control.plane import Decision
from pyl2tp.control.tunnel import ControlConnection
from pyl2tp.dataplane.registry import Registry
from pyl2tp.dataplane.userspace import Endpoint
from pyl2tp.errors import L2tpError
from pyl2tp.mgmt import commands
from pyl2tp.wire.constants import AvpType, EncapType, PwType, StopCCNResult
from pyl2tp.wire.message import ControlMessage

from .config import Config, DialSession, DialTunnel, StaticTunnel, TunnelParams
from .control import ControlDriver, source_address

log = logging.getLogger("pyl2tp.config")

REDIAL_INITIAL = 1.0
REDIAL_CAP = 60.0
ROUTER_ID_TTL = 60.0
"""How long a Router ID derived from our source address towards a peer is reused (every
SCCRQ from that peer would otherwise probe the routing table)."""

GC_THRESHOLD0 = 20_000
"""Allocations between young-generation collections. Every tunnel and session is a small
web of objects that lives for hours; with the interpreter's default (700) a burst of ten
thousand tunnels triggers full collections that walk all of them again and again (measured
with ``bench/control/micro.py``: a third of the protocol core's CPU while 10,000 tunnels are
set up)."""


def tune_gc() -> None:
    """Set the collector up for a long-running daemon: move everything alive now (modules,
    the configuration) out of the collector's way for good (``gc.freeze``), and collect the
    young generation less often. Cyclic garbage is still collected; a full collection just
    has fewer objects to walk. Idempotent; called once the configuration is applied."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GC_THRESHOLD0, gen0), gen1, gen2)


def connection_params(tp: TunnelParams, *, version: int, secret: bytes | None,
                      host_name: str, router_id: int, ppp: str | None = None,
                      switch_to: str | None = None) -> ConnectionParams:
    """The protocol cores' view of a resolved ``[defaults]``/``[[peer]]``/``[[tunnel]]``.
    ``ppp``/``switch_to`` say what happens to the PPP of calls the peer places."""
    pw_types = tuple(int(p) for p in tp.pw_types) or (PwType.ETH,)
    call = CallParams(
        pw_type=pw_types[0] if version == 3 else PwType.PPP,
        cookie_len=tp.cookie_len if version == 3 else 0,
        l2spec_type=tp.l2spec_type if version == 3 else 0,
        data_sequencing=tp.data_sequencing if version == 3 and tp.l2spec_type else 0,
        sequencing=tp.sequencing, reorder_timeout=tp.reorder_timeout,
        ppp_profile=ppp or "", switch_to=switch_to or "")
    return ConnectionParams(
        version=version, host_name=host_name, router_id=router_id, secret=secret,
        challenge=tp.challenge, hide_avps=tp.hide_avps and secret is not None,
        digest_type=tp.digest, hello_interval=tp.hello_interval,
        receive_window=tp.receive_window, retransmit_initial=tp.retransmit_initial,
        retransmit_cap=tp.retransmit_cap, max_retries=tp.max_retries,
        setup_timeout=tp.setup_timeout, pw_types=pw_types, max_sessions=tp.max_sessions,
        control_rx_queue=tp.control_rx_queue, call=call)


def session_params(s: DialSession, version: int) -> CallParams:
    return CallParams(
        pw_type=int(s.pw_type), cookie_len=s.cookie_len if version == 3 else 0,
        l2spec_type=s.l2spec_type if version == 3 else 0,
        data_sequencing=s.data_sequencing if version == 3 and s.l2spec_type else 0,
        sequencing=s.sequencing, reorder_timeout=s.reorder_timeout,
        remote_end_id=(s.remote_end_id or "").encode(), called_number=s.called_number or "",
        ifname=s.ifname or "", ppp_profile=s.ppp or "")


def derived_router_id(host_name: str, peer: str | None = None) -> int:
    """RFC 3931 §5.4.3 wants a Router ID unique to this LCCE; a local IPv4 address is the
    usual choice. Without one, a stable hash of the host name serves."""
    if peer is not None and ":" not in peer:
        local = source_address(socket.AF_INET, peer)
        if local != "0.0.0.0":
            return int(ipaddress.IPv4Address(local))
    return int.from_bytes(hashlib.sha256(host_name.encode()).digest()[:4], "big") or 1


def static_requests(st: StaticTunnel) -> list[tuple[str, dict[str, Any]]]:
    """The netlink-style requests that create a static tunnel and its sessions."""
    v6 = ":" in st.local
    tattrs: dict[str, Any] = {
        "conn_id": st.tunnel_id, "peer_conn_id": st.peer_tunnel_id,
        "proto_version": st.version, "encap_type": int(st.encap),
        ("ip6_saddr" if v6 else "ip_saddr"): st.local,
        ("ip6_daddr" if v6 else "ip_daddr"): st.remote,
    }
    if st.encap == EncapType.UDP:
        tattrs.update(udp_sport=st.udp_sport, udp_dport=st.udp_dport, udp_csum=st.udp_csum,
                      udp_zero_csum6_tx=not st.udp6_csum_tx,
                      udp_zero_csum6_rx=not st.udp6_csum_rx)
    out = [("tunnel_create", tattrs)]
    for s in st.sessions:
        sattrs: dict[str, Any] = {
            "conn_id": st.tunnel_id, "session_id": s.session_id,
            "peer_session_id": s.peer_session_id, "pw_type": int(s.pw_type),
            "recv_seq": s.recv_seq, "send_seq": s.send_seq, "lns_mode": s.lns_mode,
            "recv_timeout": int(s.reorder_timeout * 1000),
        }
        if st.version == 3:
            sattrs["l2spec_type"] = int(s.l2spec_type)
            if s.cookie:
                sattrs["cookie"] = s.cookie.hex()
            if s.peer_cookie:
                sattrs["peer_cookie"] = s.peer_cookie.hex()
            if s.ifname:
                sattrs["ifname"] = s.ifname
        out.append(("session_create", sattrs))
    return out


class _Dialled:
    """A ``[[tunnel]]`` the daemon keeps up."""

    def __init__(self, spec: DialTunnel) -> None:
        self.spec = spec
        self.conn: ControlConnection | None = None
        self.backoff = REDIAL_INITIAL
        self.timer: asyncio.TimerHandle | None = None
        self.stopped = False


class ConfigManager:
    """Holds the current configuration and reconciles the daemon with it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, registry: Registry,
                 driver: ControlDriver, config: Config) -> None:
        self.loop = loop
        self.registry = registry
        self.driver = driver
        self.config = config
        self.dialled: dict[str, _Dialled] = {}
        self.static: dict[int, StaticTunnel] = {}
        self.listen_eps: dict[Any, Endpoint] = {}
        self._tied: dict[ControlConnection, _Dialled] = {}
        self._router_ids: dict[str | None, tuple[float, int]] = {}
        self._gc_tuned = False
        self._limits(config)

    # ---- policy -----------------------------------------------------------------------------

    def router_id(self, peer: str | None = None) -> int:
        rid = self.config.daemon.router_id
        if rid is not None:
            return rid
        now = self.loop.time()
        hit = self._router_ids.get(peer)
        if hit is not None and hit[0] > now:
            return hit[1]
        rid = derived_router_id(self.config.daemon.host_name, peer)
        if len(self._router_ids) >= 4096:
            self._router_ids.clear()
        self._router_ids[peer] = (now + ROUTER_ID_TTL, rid)
        return rid

    def accept(self, ep: Endpoint, peer: tuple[str, int], msg: ControlMessage) -> Decision:
        """First matching ``[[peer]]``; a peer we dial ourselves is served with its own
        tunnel's settings (that is how tunnel ties and peers dialling back are handled)."""
        host = peer[0]
        host_name = msg.get(AvpType.HOST_NAME)
        version = msg.version
        daemon = self.config.daemon
        policy = self.config.peer_for(host, host_name if isinstance(host_name, str) else None)
        if policy is not None and ep in self.driver.listeners:
            if not policy.accept:
                return (StopCCNResult.NOT_AUTHORIZED, 0, f"refused by policy {policy.name!r}")
            if version not in policy.versions:
                return (StopCCNResult.UNSUPPORTED_VERSION, 0x0100 if 2 in policy.versions
                        else 0, f"L2TPv{version} is not accepted from this peer")
            return connection_params(policy.params, version=version, secret=policy.secret,
                                     host_name=daemon.host_name,
                                     router_id=self.router_id(host), ppp=policy.ppp,
                                     switch_to=policy.switch_to)
        for d in self.dialled.values():
            if d.spec.peer == host and d.spec.version == version:
                return connection_params(d.spec.params, version=version,
                                         secret=d.spec.secret, host_name=daemon.host_name,
                                         router_id=self.router_id(host), ppp=d.spec.ppp)
        if ep not in self.driver.listeners:
            return None  # a socket we only dial from: never answer strangers there
        return (StopCCNResult.NOT_AUTHORIZED, 0, "no [[peer]] policy matches")

    # ---- reconciling ------------------------------------------------------------------------

    def apply(self, new: Config) -> None:
        """Move to ``new`` (already validated), touching only what differs."""
        old, self.config = self.config, new
        if old.daemon.host_name != new.daemon.host_name:
            self._router_ids.clear()
        self._limits(new)
        self._listeners(new)
        self._statics(new)
        self._dials(new)
        if old is not new:
            log.info("configuration applied: %d listeners, %d peer policies, %d dialled and "
                     "%d static tunnels", len(new.listen), len(new.peers), len(new.tunnels),
                     len(new.static_tunnels))
        if not self._gc_tuned:
            self._gc_tuned = True
            tune_gc()

    def _limits(self, cfg: Config) -> None:
        d = cfg.daemon
        self.driver.set_limits(
            max_tunnels=d.max_tunnels, max_half_open_tunnels=d.max_half_open_tunnels,
            max_sessions=d.max_sessions, sccrq_rate=d.sccrq_rate, sccrq_burst=d.sccrq_burst,
            sccrq_sources=d.sccrq_sources, max_ppp_negotiations=d.max_ppp_negotiations)
        self.registry.set_reorder_q_max(d.reorder_queue)

    def _listeners(self, cfg: Config) -> None:
        wanted = {(ls.encap, ls.address, ls.port): ls for ls in cfg.listen}
        for key in list(self.listen_eps):
            if key not in wanted:
                self.driver.unlisten(self.listen_eps.pop(key))
                log.info("stopped listening on %s", key)
        for key, ls in wanted.items():
            if key in self.listen_eps:
                continue
            try:
                ep = self.driver.listen(ls.encap, ls.address, ls.port)
            except L2tpError as exc:
                log.error("cannot listen on %s %s: %s", ls.encap.name.lower(), ls.address,
                          exc.message)
                continue
            self.listen_eps[key] = ep

    def _statics(self, cfg: Config) -> None:
        wanted = {st.tunnel_id: st for st in cfg.static_tunnels}
        for tid, st in list(self.static.items()):
            if wanted.get(tid) != st:
                del self.static[tid]
                tunnel = self.registry.tunnels.get(tid)
                if tunnel is not None:
                    self.registry.delete_tunnel(tunnel)
        for tid, st in wanted.items():
            if tid in self.static:
                continue
            try:
                for cmd, attrs in static_requests(st):
                    commands.execute(self.registry, {"cmd": cmd, "attrs": attrs})
            except L2tpError as exc:
                log.error("static tunnel %d: %s", tid, exc.message)
                tunnel = self.registry.tunnels.get(tid)
                if tunnel is not None and tunnel.owner != "control":
                    self.registry.delete_tunnel(tunnel)
                continue
            tunnel = self.registry.tunnels[tid]
            tunnel.owner = "config"
            self.static[tid] = st

    def _dials(self, cfg: Config) -> None:
        wanted = {d.name: d for d in cfg.tunnels}
        for name, d in list(self.dialled.items()):
            if wanted.get(name) != d.spec:
                self._stop(d, "configuration changed")
                del self.dialled[name]
        for name, spec in wanted.items():
            if name not in self.dialled:
                d = _Dialled(spec)
                self.dialled[name] = d
                self._dial(d)

    def _stop(self, d: _Dialled, why: str) -> None:
        d.stopped = True
        if d.timer is not None:
            d.timer.cancel()
        if d.conn is not None and not d.conn.dead:
            self.driver.hangup(d.conn, text=why)

    def _dial(self, d: _Dialled) -> None:
        d.timer = None
        if d.stopped:
            return
        spec = d.spec
        params = connection_params(spec.params, version=spec.version, secret=spec.secret,
                                   host_name=self.config.daemon.host_name,
                                   router_id=self.router_id(spec.peer), ppp=spec.ppp)
        try:
            conn = self.driver.dial(params, spec.peer, port=spec.port or 1701,
                                    encap=spec.encap, local=spec.local,
                                    local_port=spec.local_port)
            for s in spec.sessions:
                cp = session_params(s, spec.version)
                for _ in range(s.count):
                    self.driver.place_call(conn, cp, direction=str(s.direction))
        except (L2tpError, ValueError) as exc:
            log.error("tunnel %r: %s", spec.name, getattr(exc, "message", exc))
            self._schedule(d)
            return
        d.conn = conn
        log.info("tunnel %r: dialling %s (tunnel id %d)", spec.name, spec.peer, conn.local_id,
                 extra={"tunnel_id": conn.local_id, "peer": spec.peer})

    def _schedule(self, d: _Dialled) -> None:
        if d.stopped or d.timer is not None:
            return
        delay = d.backoff
        d.backoff = min(d.backoff * 2, REDIAL_CAP)
        d.timer = self.loop.call_later(delay, self._dial, d)
        log.info("tunnel %r: dialling again in %.0f s", d.spec.name, delay)

    def on_event(self, event: ev.Event) -> None:
        """Follow the dialled tunnels' fate (called by the driver for every event)."""
        if isinstance(event, ev.TunnelUp):
            for d in self.dialled.values():
                if d.conn is event.conn:
                    d.backoff = REDIAL_INITIAL
        elif isinstance(event, ev.TunnelDown):
            for d in self.dialled.values():
                if d.conn is event.conn:
                    d.conn = None
                    if event.reason == "lost the tunnel tie breaker":
                        self._tied[event.conn] = d  # the peer's connection replaces it
                    else:
                        self._schedule(d)
        elif isinstance(event, ev.TunnelReplaced):
            tied = self._tied.pop(event.old, None)
            if tied is not None and not tied.stopped:
                tied.conn = event.new

    def shutdown(self) -> None:
        for d in self.dialled.values():
            d.stopped = True
            if d.timer is not None:
                d.timer.cancel()


__all__ = ["ConfigManager", "connection_params", "derived_router_id", "session_params",
           "static_requests", "tune_gc"]
