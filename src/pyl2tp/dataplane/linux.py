"""The ``linux`` data-plane backend: pyl2tp's tunnels and sessions offloaded to ``net/l2tp``.

The registry, its id rules, the management API and the control plane stay exactly as they are
with the userspace backend; only what :class:`~pyl2tp.dataplane.registry.Backend` does when
objects come and go changes. Instead of sockets, TAP devices and a Python receive loop, each
tunnel and session becomes the kernel's own (generic netlink, :mod:`.genl_l2tp`), so data
packets never reach Python:

* **Unmanaged tunnels** (created through the API, like ``ip l2tp add tunnel``):
  ``L2TP_CMD_TUNNEL_CREATE`` with addresses and ports; the kernel opens, binds and connects
  its own socket.
* **Managed tunnels** (brought up by the control plane): ``TUNNEL_CREATE`` with the file
  descriptor of a socket of our own, bound to the control connection's local address and port
  and connected to the peer. The kernel consumes the data packets of known sessions on it and
  passes everything else up, so the daemon keeps receiving that tunnel's control messages on
  it (UDP). Over IP the kernel needs an L2TP/IP socket bound to the tunnel id; control
  messages still come in through the listener's raw socket, whose BPF filter admits only
  session id 0, so data packets cost userspace nothing there either.
* **Sessions**: ``L2TP_CMD_SESSION_CREATE`` with the session's ids, cookies, L2-specific
  sublayer, sequencing and reorder timeout. Ethernet pseudowires are the kernel's
  ``l2tpethN`` devices (or the requested name); PPP sessions get a PPPoL2TP socket and a PPP
  channel (:mod:`.pppox`) whose frames reach pyl2tp's PPP endpoint through the same interface
  as the userspace :class:`~pyl2tp.pw.ppp.PppChannel`, and that can hand IP to a kernel
  ``pppN`` unit once the NCPs are up (:meth:`KernelPppChannel.create_unit`).
* **Counters** are the kernel's: every tunnel's and session's ``stats`` is a
  :class:`KernelStats` that reads ``L2TP_ATTR_STATS`` back (one GET per object, or one dump
  for all of them with :meth:`LinuxBackend.refresh_stats`), so ``pyl2tp -s show`` prints what
  the kernel counted. Sequencing flags the kernel changes on its own (a LAC following its
  LNS) are read back with them.

:func:`kernel_has_l2tp` tells whether this backend can run here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pyl2tp.errors import L2tpError
from pyl2tp.pw.ppp import HDLC_HEADER, PppChannel
from pyl2tp.wire.constants import IPPROTO_L2TP, EncapType, PwType

from . import pppox
from .genl_l2tp import (
    L2TP_CMD_SESSION_DELETE,
    L2TP_CMD_TUNNEL_DELETE,
    Attrs,
    L2tpNetlink,
    decode_l2tp,
    kernel_has_l2tp,
    parse_messages,
)
from .model import STATS_FIELDS, Session, Stats, Tunnel
from .registry import Registry
from .userspace import (
    IP_MTU_DISCOVER,
    IP_PMTUDISC_DONT,
    IPV6_MTU_DISCOVER,
    IPV6_PMTUDISC_DONT,
    MAX_DATAGRAM,
    RECV_BATCH,
    SO_NO_CHECK,
    UDP_NO_CHECK6_RX,
    UDP_NO_CHECK6_TX,
    Endpoint,
    UserspaceBackend,
)

__all__ = [
    "KernelEthPseudowire",
    "KernelPppChannel",
    "KernelStats",
    "LinuxBackend",
    "control_filter",
    "kernel_has_l2tp",
]

log = logging.getLogger(__name__)

SO_ATTACH_FILTER = 26
# How long a kernel tunnel may take to leave its IDR after TUNNEL_DELETE (a work item).
TUNNEL_GONE_TIMEOUT = 2.0


# -- counters --------------------------------------------------------------------------------


class KernelStats(Stats):
    """A tunnel's or session's counters as the kernel keeps them.

    :meth:`as_dict` (what every management reply uses) reads them back first, unless a bulk
    :meth:`LinuxBackend.refresh_stats` younger than ``max_age`` seconds already did (a dump
    then costs two netlink requests instead of one per object); plain attribute reads give
    the last values read. Once the kernel object is gone (:meth:`detach`) the last values
    stay, like the final counters of a delete notification.
    """

    __slots__ = ("_fetch", "_stamp", "max_age")

    def __init__(self, fetch: Callable[[], Mapping[str, int] | None],
                 max_age: float = 0.2) -> None:
        super().__init__()
        self._fetch: Callable[[], Mapping[str, int] | None] | None = fetch
        self._stamp = -1e9
        self.max_age = max_age

    def update(self, values: Mapping[str, int], stamp: float | None = None) -> None:
        """Take ``values``; ``stamp`` (a bulk refresh's time) lets :meth:`as_dict` serve
        them for ``max_age`` seconds, without it the next :meth:`as_dict` reads again."""
        for name in STATS_FIELDS:
            setattr(self, name, int(values.get(name, 0)))
        self._stamp = -1e9 if stamp is None else stamp

    def refresh(self, *, force: bool = False) -> None:
        fetch = self._fetch
        if fetch is None or (not force and time.monotonic() - self._stamp < self.max_age):
            return
        values = fetch()
        if values is not None:
            self.update(values)

    def detach(self) -> None:
        self._fetch = None

    def as_dict(self) -> dict[str, int]:
        self.refresh()
        return super().as_dict()


# -- pseudowires -----------------------------------------------------------------------------


class KernelEthPseudowire:
    """An ``l2tpethN`` device: the kernel moves its frames; deleting the session removes it."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def ifname(self) -> str:
        return self.session.ifname

    def close(self) -> None:
        pass


class KernelPppChannel(PppChannel):
    """A PPP session's kernel channel behind the userspace :class:`PppChannel` interface.

    ``on_frame`` receives every frame the kernel passes up (protocol field first) and
    :meth:`send` transmits one, so pyl2tp's PPP endpoint and session switching run on it
    unchanged. Before :meth:`create_unit` IP frames come up too; after it they stay in the
    kernel's ``pppN`` and only LCP/authentication (channel) and NCP (unit) frames come up.
    """

    def __init__(self, backend: LinuxBackend, session: Session) -> None:
        super().__init__(backend, session)
        self.loop = backend.loop
        tunnel = session.tunnel
        tsock = backend.tunnel_socket(tunnel.tunnel_id)
        self.rx_frames = 0
        self.tx_frames = 0
        self.tx_errors = 0
        self.sock = pppox.open_session_socket(
            version=tunnel.version, family=tunnel.family,
            tunnel_fd=tsock.fileno() if tsock is not None else -1,
            tunnel_id=tunnel.tunnel_id, session_id=session.session_id,
            peer_tunnel_id=tunnel.peer_tunnel_id, peer_session_id=session.peer_session_id,
            peer=(tunnel.remote, tunnel.udp_dport))
        try:
            self.channel = pppox.PppChannelFd.of_session(self.sock)
        except L2tpError:
            self.sock.close()
            raise
        self.unit: pppox.PppUnit | None = None
        self.bridged: KernelPppChannel | None = None
        self.loop.add_reader(self.channel.fd, self._readable, self.channel)

    @property
    def index(self) -> int:
        """The ppp_generic channel number (what ``PPPIOCBRIDGECHAN`` takes)."""
        return self.channel.index

    def _readable(self, source: pppox.PppChannelFd | pppox.PppUnit) -> None:
        for _ in range(RECV_BATCH):
            try:
                frame = source.read()
            except OSError as exc:
                log.debug("%s: PPP read failed: %s", self.session.name, exc)
                self._stop_reading(source)
                return
            if frame is None:
                return
            self.rx_frames += 1
            self._deliver(frame)

    def _stop_reading(self, source: pppox.PppChannelFd | pppox.PppUnit) -> None:
        if not source.closed:
            self.loop.remove_reader(source.fd)

    def send(self, frame: bytes) -> None:
        """Transmit one PPP frame (protocol field onwards); the kernel adds ``FF 03`` and
        the L2TP header and counts it in the session's tx counters."""
        try:
            self.channel.write(frame)
            self.tx_frames += 1
        except OSError:
            self.tx_errors += 1

    def send_protocol(self, protocol_field: bytes, info: bytes) -> None:
        """:meth:`send` of ``protocol_field + info`` (the endpoint's IP fast path)."""
        self.send(protocol_field + info)

    def create_unit(self, ifname: str | None = None, *, mru: int | None = None
                    ) -> pppox.PppUnit:
        """A kernel ``pppN`` interface for this channel (``PPPIOCNEWUNIT`` +
        ``PPPIOCCONNECT``): IPv4/IPv6 now bypass userspace. ``ifname`` renames it (a
        ``%d`` keeps the kernel's name). NCP frames keep arriving on ``on_frame``."""
        if self.unit is not None:
            return self.unit
        unit = pppox.PppUnit()
        try:
            if ifname and "%d" not in ifname and ifname != unit.name:
                unit.rename(ifname)
            if mru:
                unit.set_mru(mru)
            self.channel.connect_unit(unit.unit)
        except (OSError, L2tpError) as exc:
            unit.close()
            if isinstance(exc, L2tpError):
                raise
            raise L2tpError(exc.errno or errno.EIO, f"PPPIOCCONNECT: {exc.strerror}") from None
        self.unit = unit
        self.loop.add_reader(unit.fd, self._readable, unit)
        return unit

    def destroy_unit(self) -> None:
        """Remove the ``pppN`` interface; every frame comes up on the channel again."""
        unit, self.unit = self.unit, None
        if unit is None:
            return
        try:
            self.channel.disconnect_unit()
        except OSError:
            pass
        self._stop_reading(unit)
        unit.close()

    def bridge(self, other: KernelPppChannel) -> None:
        """Splice this session's PPP to ``other``'s in the kernel (``PPPIOCBRIDGECHAN``):
        L2TP tunnel switching without a frame ever reaching Python."""
        try:
            self.channel.bridge(other.index)
        except OSError as exc:
            raise L2tpError(exc.errno or errno.EIO, f"PPPIOCBRIDGECHAN: {exc.strerror}") from None
        self.bridged, other.bridged = other, self

    def l2tp_stats(self) -> pppox.SessionStats:
        """``PPPIOCGL2TPSTATS``: the session's counters as pppd sees them."""
        return pppox.session_stats(self.sock)

    def close(self) -> None:
        super().close()
        self.destroy_unit()
        if self.bridged is not None:
            try:
                self.channel.unbridge()
            except OSError:
                pass
            self.bridged.bridged = None
            self.bridged = None
        self._stop_reading(self.channel)
        self.channel.close()
        self.sock.close()


# -- the backend -----------------------------------------------------------------------------

# Classic BPF for the control plane's raw protocol-115 sockets: accept only session id 0
# (control messages), so data packets the kernel handles never wake Python.
_BPF = struct.Struct("=HBBI")
_LDX_B_MSH, _LD_W_IND, _LD_W_ABS, _JEQ_K, _RET_K = 0xB1, 0x40, 0x20, 0x15, 0x06


def control_filter(family: int) -> bytes:
    """The filter program (``struct sock_filter[]``): IPv4 raw sockets see the IP header
    first (its length from IHL), IPv6 ones the payload."""
    load = ([(_LDX_B_MSH, 0, 0, 0), (_LD_W_IND, 0, 0, 0)] if family == socket.AF_INET
            else [(_LD_W_ABS, 0, 0, 0)])
    prog = [*load, (_JEQ_K, 0, 1, 0), (_RET_K, 0, 0, 0xFFFFFFFF), (_RET_K, 0, 0, 0)]
    return b"".join(_BPF.pack(*insn) for insn in prog)


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("@HP", len(program) // _BPF.size, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _wildcard(address: str) -> bool:
    return address in ("", "0.0.0.0", "::")


def _registered_session(reg: Registry, attrs: Attrs) -> Session | None:
    """The registry's session a kernel message (a dump entry, a notification) names."""
    tunnel = reg.tunnels.get(attrs.get("conn_id", -1))
    return tunnel.sessions.get(attrs.get("session_id", -1)) if tunnel is not None else None


class LinuxBackend(UserspaceBackend):
    """Tunnels and sessions in the kernel, control sockets in userspace.

    It is a :class:`UserspaceBackend` as far as its callers can tell -- the control driver
    opens listeners with :meth:`endpoint_for`, registers its ``control_handler`` and sends on
    the endpoints; the daemon reads ``endpoints``; PPP code uses ``session.pw`` -- so one
    line in the daemon picks the backend. ``netlink`` is injectable for tests.
    """

    name = "linux"

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, *,
                 netlink: L2tpNetlink | None = None,
                 leftovers: str | os.PathLike[str] | None = None) -> None:
        super().__init__(loop)
        self.nl = netlink or L2tpNetlink()
        # Managed tunnels: tunnel id -> the socket handed to the kernel (with L2TP_ATTR_FD).
        self._tunnel_socks: dict[int, socket.socket] = {}
        # Unmanaged tunnels outlive this process (the kernel owns their sockets); their ids
        # are kept in this file so that the next start after a crash can delete them.
        self.leftovers = Path(leftovers) if leftovers is not None else None
        self._unmanaged: set[int] = set()
        self.stats_vanished = 0
        self._monitor: socket.socket | None = None

    def attach(self, registry: Registry) -> None:
        super().attach(registry)
        registry.listeners.append(self._on_registry)

    def tunnel_socket(self, tunnel_id: int) -> socket.socket | None:
        """The socket a managed tunnel runs on (None for unmanaged tunnels)."""
        return self._tunnel_socks.get(tunnel_id)

    # -- control sockets ------------------------------------------------------------------

    def endpoint_for(self, encap: EncapType, family: int, local: str, port: int) -> Endpoint:
        """The control plane's shared socket for a local address (and UDP port).

        As in the userspace backend, except that these sockets only ever see control
        messages: the kernel consumes data packets before them, and raw IP sockets carry
        :func:`control_filter` so that the data packets the kernel handles (a raw socket gets
        a copy of each) never reach Python.
        """
        key_port = port if encap == EncapType.UDP else 0
        if encap == EncapType.IP or port:
            ep = self.endpoints.get((encap, family, local, key_port))
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
            if encap == EncapType.UDP:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            else:
                _attach_filter(sock, control_filter(family))
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT)
            sock.bind((local, key_port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise L2tpError(exc.errno or errno.EIO, f"cannot bind {local}"
                            f"{f' port {port}' if encap == EncapType.UDP else ''}: "
                            f"{exc.strerror}") from None
        bound = sock.getsockname()[1] if encap == EncapType.UDP else 0
        ep = Endpoint(self, sock, encap, family, local, bound)
        self.endpoints[ep.key] = ep
        reader = self._control_udp if encap == EncapType.UDP else self._control_ip
        self.loop.add_reader(sock.fileno(), reader, ep, sock)
        return ep

    def _control_udp(self, ep: Endpoint, sock: socket.socket) -> None:
        """A UDP socket of ours (listener or managed tunnel): what the kernel did not consume
        is a control message (T bit) or a data packet for a session it does not know."""
        for _ in range(RECV_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP errors reported on a connected socket
            ep.rx_datagrams += 1
            if data and data[0] & 0x80:
                self._pass_up(ep, data, 0, addr)
            elif len(data) < 8:
                ep.rx_short += 1
            else:
                ep.rx_unknown_session += 1

    def _control_ip(self, ep: Endpoint, sock: socket.socket) -> None:
        for _ in range(RECV_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            ep.rx_datagrams += 1
            if ep.family == socket.AF_INET:
                if len(data) < 20 or data[0] >> 4 != 4:
                    ep.rx_invalid_ip += 1
                    continue
                data = data[(data[0] & 0x0F) * 4:]
            if len(data) < 4:
                ep.rx_short += 1
            elif data[:4] == b"\0\0\0\0":
                self._pass_up(ep, data, 4, addr)
            else:
                ep.rx_unknown_session += 1  # only before the filter was attached

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        """An L2TP/IP tunnel socket: its control messages are copies of what the listener's
        raw socket already passed up, so they are only discarded."""
        for _ in range(RECV_BATCH):
            try:
                sock.recv(MAX_DATAGRAM)
            except OSError:
                return

    def _managed_socket(self, tunnel: Tunnel, ep: Endpoint) -> socket.socket:
        """The socket a managed kernel tunnel runs on: bound where the control connection
        is, connected to the peer (the kernel transmits only on connected sockets)."""
        local = tunnel.local if _wildcard(ep.local) else ep.local
        try:
            if tunnel.encap == EncapType.UDP:
                sock = socket.socket(tunnel.family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            else:
                sock = socket.socket(tunnel.family, socket.SOCK_DGRAM, IPPROTO_L2TP)
        except OSError as exc:
            raise L2tpError(exc.errno or errno.EIO, "cannot open the tunnel socket: "
                            f"{exc.strerror}") from None
        try:
            if tunnel.encap == EncapType.UDP:
                if tunnel.family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_TX,
                                    int(tunnel.udp_zero_csum6_tx))
                    sock.setsockopt(socket.IPPROTO_UDP, UDP_NO_CHECK6_RX,
                                    int(tunnel.udp_zero_csum6_rx))
                else:
                    sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 0 if tunnel.udp_csum else 1)
                self._bind_beside(sock, ep, local)
                sock.connect((tunnel.remote, tunnel.udp_dport))
                self._warn_same_5tuple(tunnel, sock)
            else:
                fd = sock.fileno()
                pppox.sys_bind(fd, pppox.sockaddr_l2tpip(tunnel.family, local, tunnel.tunnel_id))
                pppox.sys_connect(fd, pppox.sockaddr_l2tpip(tunnel.family, tunnel.remote,
                                                            tunnel.peer_tunnel_id))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise L2tpError(exc.errno or errno.EIO, f"tunnel {tunnel.tunnel_id} socket "
                            f"{local} -> {tunnel.remote}: {exc.strerror}") from None
        return sock

    def _bind_beside(self, sock: socket.socket, ep: Endpoint, local: str) -> None:
        """Bind a managed tunnel's socket to the port its control connection uses.

        Two UDP sockets share a port only if both carry SO_REUSEADDR when the second binds;
        it is set on the listener and the endpoint's other tunnel sockets for that moment
        only, so no other process can join the port afterwards. Once connected, the new
        socket is the kernel's best match for the peer's datagrams.
        """
        siblings = [ep.sock, *(s for t, s in self._socks_of(ep))]
        try:
            for s in (*siblings, sock):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((local, ep.port))
        finally:
            for s in (*siblings, sock):
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
                except OSError:
                    pass

    def _socks_of(self, ep: Endpoint) -> list[tuple[Tunnel, socket.socket]]:
        return [(t, self._tunnel_socks[t.tunnel_id]) for t in ep.tunnels
                if t.tunnel_id in self._tunnel_socks]

    def _warn_same_5tuple(self, tunnel: Tunnel, sock: socket.socket) -> None:
        """Kernels before 6.11 find a UDP packet's session through the socket it arrived on,
        and of two connected sockets with the same addresses and ports only one receives: the
        other tunnel's data would be passed up as unknown (the "multiple UDP sockets with the
        same 5-tuple" limitation of Documentation/networking/l2tp.rst)."""
        mine = (sock.getsockname()[:2], sock.getpeername()[:2])
        for tid, other in self._tunnel_socks.items():
            try:
                theirs = (other.getsockname()[:2], other.getpeername()[:2])
            except OSError:
                continue
            if theirs == mine:
                log.warning("tunnel %d shares addresses and ports with tunnel %d: kernels "
                            "before 6.11 deliver the data of only one of them", tunnel.tunnel_id,
                            tid)

    # -- tunnels --------------------------------------------------------------------------

    def tunnel_open(self, tunnel: Tunnel) -> None:
        ep = tunnel.endpoint if isinstance(tunnel.endpoint, Endpoint) else None
        sock = self._managed_socket(tunnel, ep) if ep is not None else None
        udp = tunnel.encap == EncapType.UDP
        try:
            if sock is not None:
                self.nl.tunnel_create(tunnel.tunnel_id, tunnel.peer_tunnel_id, tunnel.version,
                                      int(tunnel.encap), fd=sock.fileno())
            else:
                self.nl.tunnel_create(
                    tunnel.tunnel_id, tunnel.peer_tunnel_id, tunnel.version, int(tunnel.encap),
                    local=tunnel.local, remote=tunnel.remote,
                    udp_sport=tunnel.udp_sport, udp_dport=tunnel.udp_dport,
                    udp_csum=tunnel.udp_csum, udp_zero_csum6_tx=tunnel.udp_zero_csum6_tx,
                    udp_zero_csum6_rx=tunnel.udp_zero_csum6_rx)
        except L2tpError:
            if sock is not None:
                sock.close()
            raise
        try:
            info = self.nl.tunnel_get(tunnel.tunnel_id)
        except L2tpError:
            info = {}
        if udp:
            # An unmanaged tunnel asked for port 0 gets the kernel's ephemeral port.
            tunnel.udp_sport = int(info.get("udp_sport", tunnel.udp_sport))
        tunnel.peer_addr = (tunnel.remote, tunnel.udp_dport if udp else 0)
        stats = KernelStats(lambda: self._fetch_tunnel(tunnel))
        if "stats" in info:
            stats.update(info["stats"])
        tunnel.stats = stats
        if sock is not None and ep is not None:
            self._tunnel_socks[tunnel.tunnel_id] = sock
            if udp:
                self.loop.add_reader(sock.fileno(), self._control_udp, ep, sock)
            else:
                self.loop.add_reader(sock.fileno(), self._drain, sock)
            ep.tunnels.add(tunnel)
            tunnel.endpoint = ep
        else:
            tunnel.endpoint = None
            self._unmanaged.add(tunnel.tunnel_id)
            self._save_leftovers()

    def _save_leftovers(self) -> None:
        if self.leftovers is None:
            return
        try:
            if self._unmanaged:
                tmp = self.leftovers.with_name(self.leftovers.name + ".tmp")
                tmp.write_text("".join(f"{t}\n" for t in sorted(self._unmanaged)))
                tmp.replace(self.leftovers)
            else:
                self.leftovers.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot record kernel tunnels in %s: %s", self.leftovers, exc)

    def clean_leftovers(self) -> int:
        """Delete the unmanaged kernel tunnels an earlier run of this daemon created and did
        not delete (it was killed); returns how many were still there. Tunnels anyone else
        made are not touched: only the ids that run wrote down."""
        if self.leftovers is None:
            return 0
        try:
            text = self.leftovers.read_text()
        except OSError:
            return 0
        deleted = 0
        for word in text.split():
            if not word.isdigit():
                continue
            try:
                self.nl.tunnel_delete(int(word))
            except L2tpError:
                continue  # gone already
            self._wait_gone(int(word))
            deleted += 1
        self._save_leftovers()
        return deleted

    def _fetch_tunnel(self, tunnel: Tunnel) -> Mapping[str, int] | None:
        try:
            stats: Mapping[str, int] | None = self.nl.tunnel_get(tunnel.tunnel_id).get("stats")
            return stats
        except L2tpError:
            return None

    def tunnel_close(self, tunnel: Tunnel) -> None:
        tid = tunnel.tunnel_id
        try:
            self.nl.tunnel_delete(tid)
        except L2tpError as exc:
            if exc.code != errno.ENODEV:
                log.warning("tunnel %d: kernel delete failed: %s", tid, exc.message)
        sock = self._tunnel_socks.pop(tid, None)
        if sock is not None:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        if tid in self._unmanaged:
            self._unmanaged.discard(tid)
            self._save_leftovers()
        if isinstance(tunnel.stats, KernelStats):
            tunnel.stats.detach()
        ep = tunnel.endpoint
        if isinstance(ep, Endpoint):
            tunnel.endpoint = None
            ep.tunnels.discard(tunnel)
            self._release(ep)
        self._wait_gone(tid)

    def _wait_gone(self, tunnel_id: int) -> None:
        """The kernel deletes a tunnel in a work item after acknowledging the request; wait
        until its id is free again, so that re-creating it right away (a reload, the next
        test) does not fail with EEXIST."""
        deadline = time.monotonic() + TUNNEL_GONE_TIMEOUT
        pause = 0.0005
        while time.monotonic() < deadline:
            try:
                self.nl.tunnel_get(tunnel_id)
            except L2tpError:
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        log.warning("tunnel %d: still in the kernel %.1f s after its deletion", tunnel_id,
                    TUNNEL_GONE_TIMEOUT)

    # -- sessions -------------------------------------------------------------------------

    def session_open(self, session: Session) -> None:
        tunnel = session.tunnel
        v3 = tunnel.version == 3
        timeout_ms = round(session.reorder_timeout * 1000)
        self.nl.session_create(
            tunnel.tunnel_id, session.session_id, session.peer_session_id, session.pw_type,
            l2spec_type=session.l2spec_type if v3 else None,
            cookie=session.cookie if v3 else b"", peer_cookie=session.peer_cookie if v3 else b"",
            recv_seq=session.recv_seq, send_seq=session.send_seq, lns_mode=session.lns_mode,
            recv_timeout=timeout_ms or None,
            ifname=session.ifname if v3 and session.pw_type == PwType.ETH else None)
        try:
            info = self.nl.session_get(tunnel.tunnel_id, session.session_id)
            if session.pw_type == PwType.ETH:
                session.ifname = str(info.get("ifname", session.ifname))
                session.pw = KernelEthPseudowire(session)
            else:
                session.pw = KernelPppChannel(self, session)
        except L2tpError:
            self._delete_session(session)
            raise
        stats = KernelStats(lambda: self._fetch_session(session))
        if "stats" in info:
            stats.update(info["stats"])
        session.stats = stats

    def _fetch_session(self, session: Session) -> Mapping[str, int] | None:
        try:
            info = self.nl.session_get(session.tunnel.tunnel_id, session.session_id)
        except L2tpError:
            return None
        self._absorb(session, info)
        stats: Mapping[str, int] | None = info.get("stats")
        return stats

    @staticmethod
    def _absorb(session: Session, info: Attrs) -> None:
        """Take the sequencing state the kernel reports (it turns send_seq on or off by
        itself when a LAC follows its LNS), so the registry shows the kernel's view."""
        session.recv_seq = bool(info.get("recv_seq", session.recv_seq))
        session.send_seq = bool(info.get("send_seq", session.send_seq))
        session.lns_mode = bool(info.get("lns_mode", session.lns_mode))
        session.reorder_timeout = int(info.get("recv_timeout", 0)) / 1000.0

    def session_modify(self, session: Session) -> None:
        """Apply the registry's sequencing settings (``SESSION_MODIFY``; for PPP also the
        socket option, which keeps the channel's header length right)."""
        self.nl.session_modify(
            session.tunnel.tunnel_id, session.session_id, recv_seq=session.recv_seq,
            send_seq=session.send_seq, lns_mode=session.lns_mode,
            recv_timeout=round(session.reorder_timeout * 1000))
        pw = session.pw
        if isinstance(pw, KernelPppChannel):
            try:
                pppox.set_session_option(pw.sock, pppox.PPPOL2TP_SO_SENDSEQ,
                                         int(session.send_seq))
            except OSError as exc:
                log.debug("%s: SENDSEQ not applied: %s", session.name, exc)

    def session_close(self, session: Session) -> None:
        pw, session.pw = session.pw, None
        if pw is not None:
            pw.close()
        # Deleted one by one even when the whole tunnel goes: the kernel's TUNNEL_DELETE
        # would close them in a work item, leaving devices behind for a while (100 l2tpeth
        # devices took seconds in the VM), and the caller expects them gone.
        self._delete_session(session)
        if isinstance(session.stats, KernelStats):
            session.stats.detach()

    def _delete_session(self, session: Session) -> None:
        try:
            self.nl.session_delete(session.tunnel.tunnel_id, session.session_id)
        except L2tpError as exc:
            if exc.code != errno.ENODEV:  # already gone with its socket or its tunnel
                log.warning("%s: kernel delete failed: %s", session.name, exc.message)

    def _on_registry(self, event: str, obj: object) -> None:
        """Modifications reach the backend as registry events (the Backend protocol has no
        modify hook); an error is logged, the registry keeps what was asked."""
        try:
            if event == "session_modify" and isinstance(obj, Session) and not obj.dead:
                self.session_modify(obj)
            elif event == "tunnel_modify" and isinstance(obj, Tunnel) and not obj.dead:
                self.nl.tunnel_modify(obj.tunnel_id)
        except L2tpError as exc:
            log.warning("%s: kernel modify failed: %s", getattr(obj, "name", obj), exc.message)

    # -- reading the kernel back ----------------------------------------------------------

    def refresh_stats(self) -> None:
        """Read every tunnel's and session's counters (and sequencing flags) with one dump
        each, instead of one GET per object when a whole dump is about to be printed.

        Whatever the registry holds that the kernel no longer does was deleted behind our
        back (``ip l2tp del``, a module unloaded): it leaves the registry too, through the
        registry's own delete, so its owner reacts as to any delete (a control connection is
        cleared with StopCCN, a PPP link ends)."""
        reg = self.registry
        if reg is None:
            return
        now = time.monotonic()
        try:
            tunnels, sessions = self.nl.tunnel_dump(), self.nl.session_dump()
        except L2tpError as exc:
            log.warning("kernel dump failed: %s", exc.message)
            return
        seen_tunnels: set[int] = set()
        seen_sessions: set[tuple[int, int]] = set()
        for info in tunnels:
            tunnel = reg.tunnels.get(info.get("conn_id", -1))
            if tunnel is not None and isinstance(tunnel.stats, KernelStats):
                seen_tunnels.add(tunnel.tunnel_id)
                tunnel.stats.update(info.get("stats", {}), now)
        for info in sessions:
            session = _registered_session(reg, info)
            if session is not None and isinstance(session.stats, KernelStats):
                seen_sessions.add((session.tunnel.tunnel_id, session.session_id))
                self._absorb(session, info)
                session.stats.update(info.get("stats", {}), now)
        self._drop_vanished(reg, seen_tunnels, seen_sessions)

    def watch(self) -> bool:
        """Follow the kernel's notifications, so that a tunnel or session deleted with
        ``ip l2tp del`` leaves the registry at once (polling with :meth:`refresh_stats` is
        the backstop). False, and a log line, when the kernel offers none."""
        try:
            self._monitor = self.nl.open_monitor()
        except (L2tpError, OSError) as exc:
            log.info("no kernel L2TP notifications (%s): deletions found by polling",
                     getattr(exc, "message", exc))
            return False
        self.loop.add_reader(self._monitor.fileno(), self._notified)
        return True

    def _notified(self) -> None:
        mon, reg = self._monitor, self.registry
        if mon is None or reg is None:
            return
        own = self.nl.sock.pid
        for _ in range(RECV_BATCH):
            try:
                data = mon.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:  # ENOBUFS: notifications lost; a dump tells the truth
                log.debug("kernel notifications: %s; reading the tables again", exc)
                self.loop.call_soon(self.refresh_stats)
                return
            for msg in parse_messages(data):
                if msg.pid == own or len(msg.payload) < 4:
                    continue  # our own request's echo, or nothing to read
                cmd, attrs = decode_l2tp(msg.payload)
                if cmd == L2TP_CMD_TUNNEL_DELETE:
                    tunnel = reg.tunnels.get(attrs.get("conn_id", -1))
                    if tunnel is not None and isinstance(tunnel.stats, KernelStats):
                        self._deleted_elsewhere(reg, tunnel, "kernel notification")
                elif cmd == L2TP_CMD_SESSION_DELETE:
                    session = _registered_session(reg, attrs)
                    if session is not None and isinstance(session.stats, KernelStats):
                        self._deleted_elsewhere(reg, session, "kernel notification")

    def _deleted_elsewhere(self, reg: Registry, obj: Tunnel | Session, how: str) -> None:
        if obj.dead:
            return
        log.warning("%s: deleted from the kernel by someone else (%s); deleting it here",
                    obj.name, how)
        self.stats_vanished += 1
        if isinstance(obj, Tunnel):
            reg.delete_tunnel(obj)
        else:
            reg.delete_session(obj)

    def _drop_vanished(self, reg: Registry, tunnels: set[int],
                       sessions: set[tuple[int, int]]) -> None:
        for tunnel in [t for t in reg.tunnels.values()
                       if isinstance(t.stats, KernelStats) and t.tunnel_id not in tunnels]:
            self._deleted_elsewhere(reg, tunnel, "found missing")
        for session in [s for s in reg.sessions() if isinstance(s.stats, KernelStats)
                        and (s.tunnel.tunnel_id, s.session_id) not in sessions]:
            self._deleted_elsewhere(reg, session, "found missing")

    def kernel_tunnels(self) -> list[Attrs]:
        """Every tunnel of this namespace as the kernel reports it (also those pyl2tp did
        not create), in the management API's attribute shapes."""
        return self.nl.tunnel_dump()

    def kernel_sessions(self) -> list[Attrs]:
        return self.nl.session_dump()

    # -- data path ------------------------------------------------------------------------

    def transmit(self, session: Session, payload: bytes) -> None:
        """Only PPP frames can be sent from userspace (through the channel); Ethernet frames
        go through the ``l2tpethN`` device like any other interface's."""
        pw = session.pw
        if isinstance(pw, KernelPppChannel):
            pw.send(payload[2:] if payload[:2] == HDLC_HEADER else payload)
        else:
            log.debug("%s: userspace transmit on a kernel session dropped", session.name)

    def close(self) -> None:
        if self._monitor is not None:
            with contextlib.suppress(OSError, ValueError):
                self.loop.remove_reader(self._monitor.fileno())
            self._monitor.close()
            self._monitor = None
        super().close()
        for sock in self._tunnel_socks.values():
            sock.close()
        self._tunnel_socks.clear()
        self.nl.close()

