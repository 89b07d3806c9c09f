"""The userspace data-plane backend: UDP and raw-IP (protocol 115) sockets driven by asyncio.

One socket serves every tunnel on a local address and port (UDP) or local address (IP), so
thousands of tunnels cost no descriptors; packets are demultiplexed by session id the way the
kernel's ``l2tp_udp_encap_recv`` / ``l2tp_ip_recv`` do. Because a kernel tunnel owns a
*connected* socket, only its peer can reach it; sharing a socket, we enforce the same thing by
checking the source address and port of every data packet against the tunnel's peer.

Per packet the receive path costs one ``recvfrom``, one header unpack, one dict lookup and the
session's receive algorithm; the transmit path one header concatenation and one ``sendto``.
Nothing is logged there: every drop lands in a named counter of the endpoint or session.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from pyl2tp.errors import L2tpError
from pyl2tp.wire.constants import IPPROTO_L2TP, EncapType, L2SpecType

from . import recv, xmit
from .model import Session, Tunnel
from .registry import Registry

log = logging.getLogger(__name__)

SO_NO_CHECK = 11
UDP_NO_CHECK6_TX = 101
UDP_NO_CHECK6_RX = 102
IP_MTU = 14
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_DONT = 0
IPV6_MTU = 24
RECV_BATCH = 64
MAX_DATAGRAM = 65535

_unpack_hh = struct.Struct(">HH").unpack_from
_unpack_i = struct.Struct(">I").unpack_from

ENDPOINT_COUNTERS = (
    "rx_datagrams",
    "rx_short",
    "rx_bad_version",
    "rx_unknown_session",
    "rx_wrong_peer",
    "rx_control",
    "rx_control_unhandled",
    "rx_invalid_ip",
    "tx_errors",
)

# (endpoint, data, offset of the control header, source address) -> None
ControlHandler = Callable[["Endpoint", bytes, int, tuple[Any, ...]], None]


def _route_probe(tunnel: Tunnel) -> socket.socket:
    """A UDP socket connected towards the peer: connecting does the route lookup the kernel's
    tunnel socket does (failing with ENETUNREACH) and caches the route's MTU for IP_MTU."""
    probe = socket.socket(tunnel.family, socket.SOCK_DGRAM)
    try:
        probe.connect((tunnel.remote, tunnel.udp_dport or 1701))
    except OSError:
        probe.close()
        raise
    return probe


class Endpoint:
    """A socket shared by tunnels: UDP on (family, address, port) or IP on (family, address)."""

    def __init__(self, backend: UserspaceBackend, sock: socket.socket, encap: EncapType,
                 family: int, local: str, port: int) -> None:
        self.backend = backend
        self.sock = sock
        self.encap = encap
        self.family = family
        self.local = local
        self.port = port
        self.tunnels: set[Tunnel] = set()
        self.checksum: tuple[bool, bool, bool] | None = None
        # A pinned endpoint (a control-plane listener) stays open with no tunnels on it.
        self.pinned = False
        self.rx_datagrams = 0
        self.rx_short = 0
        self.rx_bad_version = 0
        self.rx_unknown_session = 0
        self.rx_wrong_peer = 0
        self.rx_control = 0
        self.rx_control_unhandled = 0
        self.rx_invalid_ip = 0
        self.tx_errors = 0

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.encap, self.family, self.local, self.port)

    def counters(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in ENDPOINT_COUNTERS}

    def sendto(self, data: bytes, addr: tuple[Any, ...]) -> bool:
        try:
            self.sock.sendto(data, addr)
            return True
        except OSError as exc:
            self.tx_errors += 1
            log.debug("sendto %s from %s failed: %s", addr, self.key, exc)
            return False

    def close(self) -> None:
        self.backend.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class UserspaceBackend:
    """Opens sockets and devices for the registry's tunnels and sessions and moves packets."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_event_loop()
        self.registry: Registry | None = None
        self.endpoints: dict[tuple[Any, ...], Endpoint] = {}
        self.control_handler: ControlHandler | None = None
        self._timers: dict[Session, asyncio.TimerHandle] = {}

    def attach(self, registry: Registry) -> None:
        self.registry = registry
        registry.backend = self

    # -- tunnels ------------------------------------------------------------------------------

    def tunnel_open(self, tunnel: Tunnel) -> None:
        self._check_route(tunnel)
        # A tunnel of the control plane arrives with the endpoint its control connection
        # runs on (data and control share the socket, as with a kernel tunnel's fd).
        ep = tunnel.endpoint if isinstance(tunnel.endpoint, Endpoint) else self.endpoint_for(
            tunnel.encap, tunnel.family, tunnel.local, tunnel.udp_sport)
        if tunnel.encap == EncapType.UDP:
            want = (tunnel.udp_csum, tunnel.udp_zero_csum6_tx, tunnel.udp_zero_csum6_rx)
            if ep.checksum is None:
                self._set_checksums(ep, want)
            elif ep.checksum != want:
                self._release(ep)
                raise L2tpError(errno.EINVAL, "UDP checksum options differ from another tunnel "
                                f"on {tunnel.local} port {ep.port}")
            tunnel.udp_sport = ep.port
            tunnel.peer_addr = (tunnel.remote, tunnel.udp_dport)
        else:
            tunnel.peer_addr = (tunnel.remote, 0)
        ep.tunnels.add(tunnel)
        tunnel.endpoint = ep

    @staticmethod
    def _check_route(tunnel: Tunnel) -> None:
        """Refuse a peer we have no route to, as the kernel's ``connect()`` of the tunnel
        socket does (ENETUNREACH), instead of accepting a tunnel that can never send."""
        try:
            _route_probe(tunnel).close()
        except OSError as exc:
            code = exc.errno or errno.ENETUNREACH
            raise L2tpError(code, f"no route to {tunnel.remote}: {exc.strerror}") from None

    def tunnel_close(self, tunnel: Tunnel) -> None:
        ep = tunnel.endpoint
        if ep is None:
            return
        tunnel.endpoint = None
        ep.tunnels.discard(tunnel)
        self._release(ep)

    def _release(self, ep: Endpoint) -> None:
        if not ep.tunnels and not ep.pinned:
            self.endpoints.pop(ep.key, None)
            ep.close()

    def endpoint_for(self, encap: EncapType, family: int, local: str, port: int) -> Endpoint:
        """The shared socket for a local address (and UDP port), created on first use.

        UDP port 0 asks for an ephemeral port, which gives a new socket each time, as the
        kernel does for tunnels created without ``udp_sport``.
        """
        if encap == EncapType.UDP and port:
            ep = self.endpoints.get((encap, family, local, port))
            if ep is not None:
                return ep
        elif encap == EncapType.IP:
            ep = self.endpoints.get((encap, family, local, 0))
            if ep is not None:
                return ep
        try:
            if encap == EncapType.UDP:
                sock = socket.socket(family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            else:
                sock = socket.socket(family, socket.SOCK_RAW, IPPROTO_L2TP)
        except OSError as exc:
            raise L2tpError(exc.errno or errno.EIO, f"cannot open socket: {exc.strerror}") from None
        try:
            if family == socket.AF_INET6 and encap == EncapType.UDP:
                # Raw sockets refuse IPV6_V6ONLY (EINVAL: their inet_num is set at creation)
                # and carry IPv6 only anyway.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            # The kernel transmits with ignore_df: outer IPv4 packets never carry DF and are
            # fragmented when a frame of the pseudowire MTU meets a smaller path.
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            sock.bind((local, port if encap == EncapType.UDP else 0))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            code = exc.errno or errno.EIO
            raise L2tpError(code, f"cannot bind {local}"
                            f"{f' port {port}' if encap == EncapType.UDP else ''}: "
                            f"{exc.strerror}") from None
        bound_port = sock.getsockname()[1] if encap == EncapType.UDP else 0
        ep = Endpoint(self, sock, encap, family, local, bound_port)
        self.endpoints[ep.key] = ep
        reader = self._udp_readable if encap == EncapType.UDP else self._ip_readable
        self.loop.add_reader(sock.fileno(), reader, ep)
        return ep

    @staticmethod
    def _set_checksums(ep: Endpoint, want: tuple[bool, bool, bool]) -> None:
        csum, zero6_tx, zero6_rx = want
        try:
            if ep.family == socket.AF_INET:
                ep.sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0 if csum else 1)
            else:
                ep.sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_TX, int(zero6_tx))
                ep.sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_RX, int(zero6_rx))
        except OSError as exc:
            log.debug("checksum option not applied on %s: %s", ep.key, exc)
        ep.checksum = want

    # -- sessions -----------------------------------------------------------------------------

    def session_open(self, session: Session) -> None:
        from pyl2tp.pw import eth, ppp

        if session.pw_type == 5:
            session.pw = eth.EthPseudowire(self, session)
        else:
            session.pw = ppp.PppChannel(self, session)

    def session_close(self, session: Session) -> None:
        timer = self._timers.pop(session, None)
        if timer is not None:
            timer.cancel()
        pw = session.pw
        session.pw = None
        if pw is not None:
            pw.close()

    def tunnel_mtu(self, tunnel: Tunnel) -> int:
        """The path MTU towards the peer from the routing table (the kernel's ``dst_mtu``)."""
        try:
            probe = _route_probe(tunnel)
        except OSError:
            return 1500
        try:
            if tunnel.family == socket.AF_INET:
                return int(probe.getsockopt(socket.IPPROTO_IP, IP_MTU))
            return int(probe.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU))
        except OSError:
            return 1500
        finally:
            probe.close()

    # -- transmit -----------------------------------------------------------------------------

    def transmit(self, session: Session, payload: bytes) -> None:
        """Send one pseudowire frame on a session (``l2tp_xmit_skb``)."""
        tunnel = session.tunnel
        ep = tunnel.endpoint
        pkt = xmit.header(session) + payload
        if ep is not None and ep.sendto(pkt, tunnel.peer_addr):
            n = len(pkt)
            session.stats.tx_packets += 1
            session.stats.tx_bytes += n
            tunnel.stats.tx_packets += 1
            tunnel.stats.tx_bytes += n
        else:
            session.stats.tx_errors += 1
            tunnel.stats.tx_errors += 1

    # -- receive ------------------------------------------------------------------------------

    def _udp_readable(self, ep: Endpoint) -> None:
        reg = self.registry
        if reg is None:
            return
        recvfrom = ep.sock.recvfrom
        v2 = reg.v2_sessions
        v3 = reg.v3_sessions
        now = time.monotonic()
        for _ in range(RECV_BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP errors reported on the socket
            ep.rx_datagrams += 1
            if len(data) < 8:
                if len(data) >= 1 and data[0] & 0x80:
                    self._pass_up(ep, data, 0, addr)
                else:
                    ep.rx_short += 1
                continue
            flags = (data[0] << 8) | data[1]
            if flags & 0x8000:
                self._pass_up(ep, data, 0, addr)
                continue
            ver = flags & 0xF
            if ver == 2:
                ptr = 4 if flags & 0x4000 else 2
                tid, sid = _unpack_hh(data, ptr)
                session = v2.get((tid << 16) | sid)
                ptr += 4
            elif ver == 3:
                sid = _unpack_i(data, 4)[0]
                session = v3.get(sid)
                if session is None and reg.v3_collided:
                    session = self._v3_collision(reg, ep, sid, addr)
                ptr = 8
            else:
                ep.rx_bad_version += 1
                continue
            if session is None:
                ep.rx_unknown_session += 1
                continue
            tunnel = session.tunnel
            peer = tunnel.peer_addr
            if addr[1] != peer[1] or addr[0] != peer[0] or tunnel.endpoint is not ep:
                ep.rx_wrong_peer += 1
                continue
            if ver != tunnel.version:
                tunnel.stats.rx_invalid += 1
                continue
            if ver == 3 and len(data) < ptr + len(session.peer_cookie) + (
                    4 if session.l2spec_type == L2SpecType.DEFAULT else 0):
                tunnel.stats.rx_invalid += 1
                continue
            recv.recv_common(session, data, ptr, flags, len(data), now)
            if session.reorder_q:
                self._arm(session)

    def _v3_collision(self, reg: Registry, ep: Endpoint, sid: int,
                      addr: tuple[Any, ...]) -> Session | None:
        for tunnel in ep.tunnels:
            if tunnel.peer_addr[0] == addr[0] and tunnel.peer_addr[1] == addr[1]:
                return reg.lookup_v3(sid, tunnel)
        return None

    def _ip_readable(self, ep: Endpoint) -> None:
        reg = self.registry
        if reg is None:
            return
        recvfrom = ep.sock.recvfrom
        v3 = reg.v3_sessions
        strip_ip = ep.family == socket.AF_INET
        now = time.monotonic()
        for _ in range(RECV_BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            ep.rx_datagrams += 1
            if strip_ip:
                # IPv4 raw sockets deliver the IP header; IPv6 ones do not.
                if len(data) < 20 or data[0] >> 4 != 4:
                    ep.rx_invalid_ip += 1
                    continue
                data = data[(data[0] & 0x0F) * 4:]
            if len(data) < 4:
                ep.rx_short += 1
                continue
            sid = _unpack_i(data, 0)[0]
            if sid == 0:
                self._pass_up(ep, data, 4, addr)
                continue
            session = v3.get(sid)
            if session is None:
                ep.rx_unknown_session += 1
                continue
            tunnel = session.tunnel
            if addr[0] != tunnel.peer_addr[0] or tunnel.endpoint is not ep:
                ep.rx_wrong_peer += 1
                continue
            if len(data) < 4 + len(session.peer_cookie) + (
                    4 if session.l2spec_type == L2SpecType.DEFAULT else 0):
                tunnel.stats.rx_invalid += 1
                continue
            recv.recv_common(session, data, 4, 0, len(data), now)
            if session.reorder_q:
                self._arm(session)

    def _pass_up(self, ep: Endpoint, data: bytes, offset: int, addr: tuple[Any, ...]) -> None:
        ep.rx_control += 1
        handler = self.control_handler
        if handler is None:
            ep.rx_control_unhandled += 1
            return
        try:
            handler(ep, data, offset, addr)
        except Exception:
            log.exception("control handler failed")

    # -- reorder timers (the kernel only reaps on the next packet; we use a real timer) ------

    def _arm(self, session: Session) -> None:
        deadline = recv.next_deadline(session)
        if deadline is None:
            return
        timer = self._timers.get(session)
        if timer is not None:
            if timer.when() <= deadline:
                return
            timer.cancel()
        self._timers[session] = self.loop.call_at(deadline, self._fire, session)

    def _fire(self, session: Session) -> None:
        self._timers.pop(session, None)
        if session.dead:
            return
        recv.handle_timer(session, time.monotonic())
        if session.reorder_q:
            self._arm(session)

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close_all()
        for ep in list(self.endpoints.values()):
            ep.close()
        self.endpoints.clear()
