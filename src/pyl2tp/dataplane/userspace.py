"""The userspace data-plane backend: UDP and raw-IP (protocol 115) sockets driven by asyncio.

One socket serves every tunnel on a local address and port (UDP) or local address (IP), so
thousands of tunnels cost no descriptors; packets are demultiplexed by session id the way the
kernel's ``l2tp_udp_encap_recv`` / ``l2tp_ip_recv`` do. Because a kernel tunnel owns a
*connected* socket, only its peer can reach it; sharing a socket, we enforce the same thing by
checking the source address and port of every data packet against the tunnel's peer.

A UDP tunnel that carries sessions also gets what a kernel tunnel has, a socket bound to the
same address and port and connected to its peer (a :class:`PeerSocket`, shared by the
endpoint's tunnels to that peer; peer sockets take at most a quarter of the descriptor limit,
and never more than PEER_SOCKETS_MAX).
The kernel hands the peer's datagrams to that socket, so they are read with ``recv_into`` and
need neither a source check nor a source address (turning the address into a Python tuple is
most of what ``recvfrom`` costs), and sending on it saves the per-packet route lookup of
``sendto``. Everything else (other peers, control messages before the first session) still
arrives on the shared socket and is checked as before. Raw IPv4 packets carry their source in
the IP header, so the IP endpoint reads them with ``recv_into`` too.

Per packet the receive path costs one ``recv_into`` (or ``recvfrom``), one header unpack, one
dict lookup and, for a plain session (no cookie, no sequencing, nothing held), a slice and four
counter updates; other sessions run the kernel's receive algorithm (:mod:`.recv`). The transmit
path costs one concatenation and one ``send``. Nothing is logged there: every drop lands in a
named counter of the endpoint or session.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from pyl2tp.errors import L2tpError
from pyl2tp.wire.constants import FLAG_O, FLAG_S, IPPROTO_L2TP, L2SPEC_S_BIT, EncapType, L2SpecType

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
PEER_SOCKETS_MAX = 1024
"""Most connected peer sockets a backend opens, whatever the descriptor limit allows."""

# Plain ints for the per-packet tests (an enum member is a class attribute lookup each time).
_FLAG_T = 0x8000
_FLAG_L = 0x4000
_V2_SEQ_BITS = FLAG_S | FLAG_O
_SUBLAYER_S = L2SPEC_S_BIT >> 24  # the S bit within the first octet of the default sublayer
_L2SPEC_DEFAULT = int(L2SpecType.DEFAULT)

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


def _peer_socket_budget() -> int:
    """How many peer sockets to open at most: a quarter of the descriptor limit (devices,
    listeners and API clients need the rest), and never more than PEER_SOCKETS_MAX."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return 0
    if soft == resource.RLIM_INFINITY:
        return PEER_SOCKETS_MAX
    return max(0, min(PEER_SOCKETS_MAX, soft // 4))


def _set_options(sock: socket.socket, encap: EncapType, family: int) -> None:
    """The options every data socket gets, the endpoint's and the peer sockets alike."""
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


def _apply_checksums(sock: socket.socket, family: int, want: tuple[bool, bool, bool]) -> None:
    csum, zero6_tx, zero6_rx = want
    if family == socket.AF_INET:
        sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0 if csum else 1)
    else:
        sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_TX, int(zero6_tx))
        sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_RX, int(zero6_rx))


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
        # Connected sockets towards this endpoint's peers, keyed by the tunnels' peer_addr.
        self.peers: dict[tuple[Any, ...], PeerSocket] = {}
        # A stand-in socket (tests) may only offer recvfrom; it is read through that instead.
        self.recv_into: Callable[[bytearray], int] = getattr(
            sock, "recv_into", self._recv_into_via_recvfrom)
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

    def _recv_into_via_recvfrom(self, buf: bytearray) -> int:
        data: bytes = self.sock.recvfrom(len(buf))[0]
        buf[:len(data)] = data
        return len(data)

    def close(self) -> None:
        for peer in list(self.peers.values()):
            self.backend.close_peer_socket(self, peer)
        self.backend.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class PeerSocket:
    """A UDP socket bound to an endpoint's address and port and connected to one peer.

    It is what a kernel tunnel's socket is, shared by the endpoint's tunnels to that peer
    (``users`` counts them). ``addr`` is the peer as ``recvfrom`` would report it, which is
    what the control plane is handed for the control messages that arrive here.
    """

    __slots__ = ("sock", "key", "addr", "users")

    def __init__(self, sock: socket.socket, key: tuple[Any, ...], addr: tuple[Any, ...]) -> None:
        self.sock = sock
        self.key = key
        self.addr = addr
        self.users = 0


class UserspaceBackend:
    """Opens sockets and devices for the registry's tunnels and sessions and moves packets."""

    name = "userspace"

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_event_loop()
        self.registry: Registry | None = None
        self.endpoints: dict[tuple[Any, ...], Endpoint] = {}
        self.control_handler: ControlHandler | None = None
        self._timers: dict[Session, asyncio.TimerHandle] = {}
        # The one receive buffer: a datagram is parsed in place and only what is kept (the
        # frame handed to the session, a control message) is copied out of it.
        self._rx_buf = bytearray(MAX_DATAGRAM)
        # None: a quarter of the descriptor limit in force when a socket is to be opened (the
        # daemon raises its limit after creating the backend).
        self.peer_sockets_max: int | None = None
        self.peer_sockets = 0

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
        if tunnel.sock is not None:
            tunnel.sock = None
            peer = ep.peers.get(tunnel.peer_addr)
            if peer is not None:
                peer.users -= 1
                if peer.users <= 0 and self.loop.is_closed():
                    self.close_peer_socket(ep, peer)
                elif peer.users <= 0:
                    # Not closed here: what the peer already sent to it (a control message
                    # for another tunnel, say) is read first, from the loop, not from the
                    # middle of whatever is deleting this tunnel.
                    self.loop.call_soon(self._retire_peer_socket, ep, peer)
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
            _set_options(sock, encap, family)
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
        try:
            _apply_checksums(ep.sock, ep.family, want)
        except OSError as exc:
            log.debug("checksum option not applied on %s: %s", ep.key, exc)
        ep.checksum = want

    # -- peer sockets (a kernel tunnel's connected socket) -------------------------------------

    def _attach_peer_socket(self, tunnel: Tunnel) -> None:
        """Give a UDP tunnel the connected socket towards its peer, opening it if need be.

        Nothing changes for the tunnel when that is impossible (the budget is spent, the
        descriptor limit is reached, the bind is refused): it keeps the shared socket.
        """
        ep = tunnel.endpoint
        if tunnel.sock is not None or not isinstance(ep, Endpoint) or ep.encap != EncapType.UDP:
            return
        peer = ep.peers.get(tunnel.peer_addr)
        if peer is None:
            budget = self.peer_sockets_max
            if self.peer_sockets >= (_peer_socket_budget() if budget is None else budget):
                return
            peer = self._open_peer_socket(ep, tunnel.peer_addr)
            if peer is None:
                return
        peer.users += 1
        tunnel.sock = peer.sock

    def _open_peer_socket(self, ep: Endpoint, key: tuple[Any, ...]) -> PeerSocket | None:
        """Bind a second socket to the endpoint's address and port and connect it to ``key``.

        Two UDP sockets may share a port only if both ask with SO_REUSEADDR while the second
        binds; it is cleared again afterwards, so no other socket (another daemon's) can
        join the port later, exactly as before.
        """
        siblings = [ep.sock, *(p.sock for p in ep.peers.values())]
        sock: socket.socket | None = None
        try:
            for s in siblings:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock = socket.socket(ep.family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _set_options(sock, EncapType.UDP, ep.family)
            if ep.checksum is not None:
                _apply_checksums(sock, ep.family, ep.checksum)
            sock.bind((ep.local, ep.port))
            sock.connect(key)
            sock.setblocking(False)
            addr = tuple(sock.getpeername()[:2])
            peer = PeerSocket(sock, key, addr)
            self.loop.add_reader(sock.fileno(), self._udp_readable, ep, peer)
        except (OSError, AttributeError) as exc:
            # AttributeError: a stand-in endpoint socket without socket options (tests).
            log.debug("no connected socket towards %s from %s: %s", key, ep.key, exc)
            if sock is not None:
                sock.close()
            return None
        finally:
            if sock is not None:
                siblings.append(sock)
            for s in siblings:
                with contextlib.suppress(OSError, AttributeError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        ep.peers[key] = peer
        self.peer_sockets += 1
        return peer

    def _retire_peer_socket(self, ep: Endpoint, peer: PeerSocket) -> None:
        """Close a peer socket no tunnel uses any more, after reading what is queued in it.

        From then on the peer's datagrams arrive on the endpoint's shared socket again.
        """
        if peer.users > 0 or ep.peers.get(peer.key) is not peer:
            return  # taken again by a new tunnel meanwhile, or already closed with its endpoint
        self._udp_readable(ep, peer)
        self.close_peer_socket(ep, peer)

    def close_peer_socket(self, ep: Endpoint, peer: PeerSocket) -> None:
        """Close ``peer`` at once (its endpoint is closing, or nobody uses it)."""
        if ep.peers.pop(peer.key, None) is not peer:
            return
        self.peer_sockets -= 1
        with contextlib.suppress(OSError, ValueError):
            self.loop.remove_reader(peer.sock.fileno())
        peer.sock.close()

    # -- sessions -----------------------------------------------------------------------------

    def session_open(self, session: Session) -> None:
        from pyl2tp.pw import eth, ppp

        if session.pw_type == 5:
            session.pw = eth.EthPseudowire(self, session)
        else:
            session.pw = ppp.PppChannel(self, session)
        # A tunnel connects to its peer when it first carries sessions: a tunnel without
        # sessions (a control connection alone) moves no data and costs no descriptor.
        self._attach_peer_socket(session.tunnel)

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
        """Send one pseudowire frame on a session (``l2tp_xmit_skb``), on the tunnel's
        connected socket if it has one, and count it."""
        header = session.tx_header
        pkt = (header if header is not None else xmit.header(session)) + payload
        tunnel = session.tunnel
        sock = tunnel.sock
        try:
            if sock is not None:
                sock.send(pkt)
            else:
                ep = tunnel.endpoint
                if ep is None:
                    session.stats.tx_errors += 1
                    tunnel.stats.tx_errors += 1
                    return
                ep.sock.sendto(pkt, tunnel.peer_addr)
        except OSError as exc:
            if not self._resend(session, pkt, exc):
                return
        n = len(pkt)
        stats = session.stats
        stats.tx_packets += 1
        stats.tx_bytes += n
        stats = tunnel.stats
        stats.tx_packets += 1
        stats.tx_bytes += n

    def _resend(self, session: Session, pkt: bytes, exc: OSError) -> bool:
        """A send failed: retry once if only a connected socket could have failed that way,
        else count the error. True if the packet went out after all.

        A connected UDP socket reports an ICMP port unreachable from the peer once, as the
        error of the next send, which then sends nothing; the shared socket would have sent
        the packet and reported nothing, so the packet is sent again.
        """
        tunnel = session.tunnel
        sock = tunnel.sock
        if sock is not None and exc.errno == errno.ECONNREFUSED:
            try:
                sock.send(pkt)
                return True
            except OSError as again:
                exc = again
        ep = tunnel.endpoint
        if ep is not None:
            ep.tx_errors += 1
            log.debug("send to %s from %s failed: %s", tunnel.peer_addr, ep.key, exc)
        session.stats.tx_errors += 1
        tunnel.stats.tx_errors += 1
        return False

    # -- receive ------------------------------------------------------------------------------

    def _udp_readable(self, ep: Endpoint, peer: PeerSocket | None = None) -> None:
        """Handle up to RECV_BATCH datagrams from the endpoint's shared socket or, with
        ``peer``, from one peer's connected socket (no source address: it is the peer's)."""
        reg = self.registry
        if reg is None:
            return
        v2 = reg.v2_sessions
        v3 = reg.v3_sessions
        buf = self._rx_buf
        recvfrom = ep.sock.recvfrom
        own: Any = None
        addr: tuple[Any, ...] = ()
        if peer is not None:
            own = peer.sock
            recv_into = own.recv_into
            addr = peer.addr
        now = time.monotonic()
        data: bytes | bytearray
        for _ in range(RECV_BATCH):
            try:
                if own is None:
                    data, addr = recvfrom(MAX_DATAGRAM)
                    n = len(data)
                else:
                    n = recv_into(buf)
                    data = buf
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP errors reported on the socket
            ep.rx_datagrams += 1
            if n < 8:
                if n >= 1 and data[0] & 0x80:
                    self._pass_up(ep, bytes(data[:n]), 0, addr)
                else:
                    ep.rx_short += 1
                continue
            flags = (data[0] << 8) | data[1]
            if flags & _FLAG_T:
                self._pass_up(ep, bytes(data[:n]), 0, addr)
                continue
            ver = flags & 0xF
            if ver == 3:
                sid = _unpack_i(data, 4)[0]
                session = v3.get(sid)
                if session is None and reg.v3_collided:
                    session = self._v3_collision(reg, ep, sid, addr)
                ptr = 8
            elif ver == 2:
                ptr = 4 if flags & _FLAG_L else 2
                tid, sid = _unpack_hh(data, ptr)
                session = v2.get((tid << 16) | sid)
                ptr += 4
            else:
                ep.rx_bad_version += 1
                continue
            if session is None:
                ep.rx_unknown_session += 1
                continue
            tunnel = session.tunnel
            if own is None or tunnel.sock is not own:
                # Not known to be the tunnel's peer from the socket it came in on: check.
                peer_addr = tunnel.peer_addr
                if (addr[1] != peer_addr[1] or addr[0] != peer_addr[0]
                        or tunnel.endpoint is not ep):
                    ep.rx_wrong_peer += 1
                    continue
            if ver != tunnel.version:
                tunnel.stats.rx_invalid += 1
                continue
            skip = session.rx_plain
            if ver == 3:
                if skip >= 0:
                    if n < ptr + skip:  # no room for the sublayer (no cookie: plain)
                        tunnel.stats.rx_invalid += 1
                        continue
                    plain = not skip or not data[ptr] & _SUBLAYER_S
                elif n < ptr + len(session.peer_cookie) + (
                        4 if session.l2spec_type == _L2SPEC_DEFAULT else 0):
                    tunnel.stats.rx_invalid += 1
                    continue
                else:
                    plain = False
            else:
                plain = skip >= 0 and not flags & _V2_SEQ_BITS
            if plain and not session.reorder_q:
                # recv_common's own fast path, without the call and the tests that cannot
                # fail for this session (see recv.set_fast_path).
                stats = tunnel.stats
                stats.rx_packets += 1
                stats.rx_bytes += n
                stats = session.stats
                stats.rx_packets += 1
                stats.rx_bytes += n
                session.deliver(data[ptr + skip:n])
                continue
            recv.recv_common(session, data[:n], ptr, flags, n, now)
            if session.reorder_q:
                self._arm(session)

    def _v3_collision(self, reg: Registry, ep: Endpoint, sid: int,
                      addr: tuple[Any, ...]) -> Session | None:
        for tunnel in ep.tunnels:
            if tunnel.peer_addr[0] == addr[0] and tunnel.peer_addr[1] == addr[1]:
                return reg.lookup_v3(sid, tunnel)
        return None

    def _ip_readable(self, ep: Endpoint) -> None:
        """Handle up to RECV_BATCH packets from a raw protocol-115 socket.

        IPv4 raw sockets deliver the IP header, whose source address is compared in place
        (packed) with the tunnel's peer; IPv6 ones strip it, so there the socket's source
        address is needed and ``recvfrom`` is used.
        """
        reg = self.registry
        if reg is None:
            return
        v3 = reg.v3_sessions
        strip_ip = ep.family == socket.AF_INET
        buf = self._rx_buf
        recv_into = ep.recv_into
        recvfrom = ep.sock.recvfrom
        addr: tuple[Any, ...] = ()
        now = time.monotonic()
        data: bytes | bytearray
        for _ in range(RECV_BATCH):
            try:
                if strip_ip:
                    n = recv_into(buf)
                    data = buf
                else:
                    data, addr = recvfrom(MAX_DATAGRAM)
                    n = len(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            ep.rx_datagrams += 1
            base = 0
            if strip_ip:
                if n < 20 or data[0] >> 4 != 4:
                    ep.rx_invalid_ip += 1
                    continue
                base = (data[0] & 0x0F) * 4
            length = n - base
            if length < 4:
                ep.rx_short += 1
                continue
            sid = _unpack_i(data, base)[0]
            if sid == 0:
                if strip_ip:
                    addr = (socket.inet_ntop(socket.AF_INET, bytes(data[12:16])), 0)
                self._pass_up(ep, bytes(data[base:n]), 4, addr)
                continue
            session = v3.get(sid)
            if session is None:
                ep.rx_unknown_session += 1
                continue
            tunnel = session.tunnel
            if strip_ip:
                wrong_peer = data[12:16] != tunnel.peer_raw
            else:
                wrong_peer = addr[0] != tunnel.peer_addr[0]
            if wrong_peer or tunnel.endpoint is not ep:
                ep.rx_wrong_peer += 1
                continue
            skip = session.rx_plain
            ptr = base + 4
            if skip >= 0:
                if length < 4 + skip:
                    tunnel.stats.rx_invalid += 1
                    continue
                if not session.reorder_q and (not skip or not data[ptr] & _SUBLAYER_S):
                    stats = tunnel.stats
                    stats.rx_packets += 1
                    stats.rx_bytes += length
                    stats = session.stats
                    stats.rx_packets += 1
                    stats.rx_bytes += length
                    session.deliver(data[ptr + skip:n])
                    continue
            elif length < 4 + len(session.peer_cookie) + (
                    4 if session.l2spec_type == _L2SPEC_DEFAULT else 0):
                tunnel.stats.rx_invalid += 1
                continue
            recv.recv_common(session, data[base:n], 4, 0, length, now)
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
