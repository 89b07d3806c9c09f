"""PPP over the kernel's L2TP: PPPoL2TP session sockets, PPP channels and PPP units.

This is what pppd's ``pppol2tp`` plugin does, as a library (``Documentation/networking/
l2tp.rst``, "PPPoL2TP Session Socket API"):

1. :func:`open_session_socket` -- ``socket(AF_PPPOX, SOCK_DGRAM, PX_PROTO_OL2TP)`` connected
   to a kernel session with one of the four ``sockaddr_pppol2tp*`` layouts. The kernel tells
   them apart by length only, so :func:`pppol2tp_sockaddr` picks the one that matches the
   tunnel (v2 or v3, IPv4 or IPv6). Closing that socket deletes the session.
2. :class:`PppChannelFd` -- ``PPPIOCGCHAN`` on the session socket, then ``/dev/ppp`` with
   ``PPPIOCATTCHAN``: a descriptor that reads and writes whole PPP frames (protocol field
   first; the kernel adds and strips ``FF 03`` and the L2TP header). Until a unit is
   connected every frame of the session comes here, IP included, so a userspace PPP endpoint
   works unchanged on top of it.
3. :class:`PppUnit` -- ``/dev/ppp`` with ``PPPIOCNEWUNIT`` (a ``pppN`` interface) and
   ``PPPIOCCONNECT`` of the channel to it, once the NCPs are up: from then on IPv4/IPv6
   packets stay in the kernel (``l2tp_ppp`` <-> ``ppp_generic`` <-> ``pppN``), LCP and
   authentication (protocols >= 0xC000) still arrive on the channel descriptor, and the NCPs
   (IPCP, IPV6CP, CCP) on the unit's descriptor.

Only the descriptors and ioctls live here; :mod:`pyl2tp.dataplane.linux` puts them on the
event loop. Everything is plain syscalls through :mod:`fcntl`, :mod:`socket` and, for the two
calls Python cannot make with a raw socket address (``connect``/``bind`` on ``AF_PPPOX`` and
on L2TP/IP sockets with a connection id), :mod:`ctypes`.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass

from pyl2tp.errors import L2tpError

__all__ = [
    "AF_PPPOX",
    "PX_PROTO_OL2TP",
    "PppChannelFd",
    "PppUnit",
    "SessionStats",
    "channel_index",
    "open_session_socket",
    "pppol2tp_sockaddr",
    "session_stats",
    "set_session_option",
    "sockaddr_l2tpip",
    "sys_bind",
    "sys_connect",
]

AF_PPPOX = 24
PX_PROTO_OL2TP = 1
SOL_PPPOL2TP = 273
PPPOL2TP_SO_DEBUG = 1
PPPOL2TP_SO_RECVSEQ = 2
PPPOL2TP_SO_SENDSEQ = 3
PPPOL2TP_SO_LNSMODE = 4
PPPOL2TP_SO_REORDERTO = 5

# <asm-generic/ioctl.h>
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _ioc(direction: int, kind: str, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


_INT = 4
#: <linux/ppp-ioctl.h>; sizes are x86_64's (int 4, struct pppol2tp_ioc_stats 72).
PPPIOCGFLAGS = _ioc(_IOC_READ, "t", 90, _INT)
PPPIOCSFLAGS = _ioc(_IOC_WRITE, "t", 89, _INT)
PPPIOCGUNIT = _ioc(_IOC_READ, "t", 86, _INT)
PPPIOCSMRU = _ioc(_IOC_WRITE, "t", 82, _INT)
PPPIOCNEWUNIT = _ioc(_IOC_READ | _IOC_WRITE, "t", 62, _INT)
PPPIOCATTACH = _ioc(_IOC_WRITE, "t", 61, _INT)
PPPIOCDETACH = _ioc(_IOC_WRITE, "t", 60, _INT)
PPPIOCCONNECT = _ioc(_IOC_WRITE, "t", 58, _INT)
PPPIOCDISCONN = _ioc(_IOC_NONE, "t", 57, 0)
PPPIOCATTCHAN = _ioc(_IOC_WRITE, "t", 56, _INT)
PPPIOCGCHAN = _ioc(_IOC_READ, "t", 55, _INT)
PPPIOCGL2TPSTATS = _ioc(_IOC_READ, "t", 54, 72)
PPPIOCBRIDGECHAN = _ioc(_IOC_WRITE, "t", 53, _INT)
PPPIOCUNBRIDGECHAN = _ioc(_IOC_NONE, "t", 52, 0)
SIOCSIFNAME = 0x8923
IFNAMSIZ = 16

PPP_DEVICE = "/dev/ppp"
#: Largest frame a read can return: ppp_generic fails a read whose buffer is too small.
MAX_FRAME = 65536

# -- raw socket addresses ----------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _sockaddr_call(name: str, fd: int, addr: bytes) -> None:
    func = getattr(_libc, name)
    buf = ctypes.create_string_buffer(addr, len(addr))
    if func(fd, buf, ctypes.c_uint(len(addr))) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def sys_connect(fd: int, addr: bytes) -> None:
    """``connect(2)`` with a socket address Python's socket module cannot build."""
    _sockaddr_call("connect", fd, addr)


def sys_bind(fd: int, addr: bytes) -> None:
    """``bind(2)`` with a socket address Python's socket module cannot build."""
    _sockaddr_call("bind", fd, addr)


def _sockaddr_in(host: str, port: int) -> bytes:
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_pton(socket.AF_INET, host) + b"\0" * 8)


def _sockaddr_in6(host: str, port: int) -> bytes:
    return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0)
            + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", 0))


def sockaddr_l2tpip(family: int, host: str, conn_id: int) -> bytes:
    """``struct sockaddr_l2tpip`` (16 octets) or ``sockaddr_l2tpip6`` (32): an address plus
    the L2TP connection (tunnel) id, in host order, where a port would be elsewhere. Binding
    an L2TP/IP socket to (local, tunnel id) is what makes the kernel deliver control messages
    for that tunnel to it; connecting gives the peer's tunnel id."""
    if family == socket.AF_INET:
        return (struct.pack("=HH", socket.AF_INET, 0) + socket.inet_pton(socket.AF_INET, host)
                + struct.pack("=I", conn_id) + b"\0" * 4)
    return (struct.pack("=HHI", socket.AF_INET6, 0, 0) + socket.inet_pton(socket.AF_INET6, host)
            + struct.pack("=II", 0, conn_id))


def pppol2tp_sockaddr(*, version: int, family: int, fd: int, tunnel_id: int, session_id: int,
                      peer_tunnel_id: int, peer_session_id: int,
                      peer: tuple[str, int] | None = None, pid: int = 0) -> bytes:
    """The ``sockaddr_pppol2tp`` variant for a v2/v3 tunnel over IPv4/IPv6 (38, 46, 50 or 58
    octets, all ``__packed``).

    ``s_*`` ids are this end's (they match incoming packets), ``d_*`` the peer's (they go
    into outgoing headers). ``fd`` is the tunnel socket; the kernel only uses it (and
    ``peer``) to create a tunnel that does not exist yet, which pyl2tp never asks of it.
    """
    head = struct.pack("=HI", AF_PPPOX, PX_PROTO_OL2TP) + struct.pack("=ii", pid, fd)
    if family == socket.AF_INET:
        host, port = peer or ("0.0.0.0", 0)
        addr = _sockaddr_in(host, port)
        if version == 2:
            return head + addr + struct.pack("=HHHH", tunnel_id, session_id, peer_tunnel_id,
                                             peer_session_id)
        return head + addr + struct.pack("=IIII", tunnel_id, session_id, peer_tunnel_id,
                                         peer_session_id)
    host, port = peer or ("::", 0)
    addr = _sockaddr_in6(host, port)
    if version == 2:
        return head + struct.pack("=HHHH", tunnel_id, session_id, peer_tunnel_id,
                                  peer_session_id) + addr
    return head + struct.pack("=IIII", tunnel_id, session_id, peer_tunnel_id,
                              peer_session_id) + addr


# -- session sockets ---------------------------------------------------------------------------


def _l2tp_error(exc: OSError, what: str) -> L2tpError:
    return L2tpError(exc.errno or errno.EIO, f"{what}: {exc.strerror or exc}")


def open_session_socket(*, version: int, family: int, tunnel_fd: int, tunnel_id: int,
                        session_id: int, peer_tunnel_id: int, peer_session_id: int,
                        peer: tuple[str, int] | None = None) -> socket.socket:
    """A PPPoL2TP socket connected to session ``session_id`` of tunnel ``tunnel_id``.

    If the session already exists (created through netlink, with its cookies, sequencing and
    L2-specific sublayer), it must be a PPP one (EPROTOTYPE) without a socket yet (EEXIST);
    if it does not, the kernel creates a bare PPP session. Closing the socket deletes the
    session either way.
    """
    try:
        sock = socket.socket(AF_PPPOX, socket.SOCK_DGRAM, PX_PROTO_OL2TP)
    except OSError as exc:
        raise _l2tp_error(exc, "PPPoL2TP socket (modprobe l2tp_ppp)") from None
    addr = pppol2tp_sockaddr(version=version, family=family, fd=tunnel_fd, tunnel_id=tunnel_id,
                             session_id=session_id, peer_tunnel_id=peer_tunnel_id,
                             peer_session_id=peer_session_id, peer=peer)
    try:
        sys_connect(sock.fileno(), addr)
    except OSError as exc:
        sock.close()
        raise _l2tp_error(exc, f"PPPoL2TP connect to session {tunnel_id}/{session_id}") from None
    return sock


def set_session_option(sock: socket.socket, option: int, value: int) -> None:
    """A ``SOL_PPPOL2TP`` option (``PPPOL2TP_SO_SENDSEQ`` also resizes the channel header,
    which netlink's SESSION_MODIFY does not)."""
    sock.setsockopt(SOL_PPPOL2TP, option, value)


def _ioctl_int(fd: int, request: int, value: int = 0) -> int:
    out = fcntl.ioctl(fd, request, struct.pack("=i", value))
    return int(struct.unpack("=i", out)[0])


def channel_index(sock: socket.socket) -> int:
    """``PPPIOCGCHAN``: the ppp_generic channel number of a connected session socket."""
    return _ioctl_int(sock.fileno(), PPPIOCGCHAN)


@dataclass(frozen=True)
class SessionStats:
    """``struct pppol2tp_ioc_stats``: the classic eight counters (no cookie/invalid ones)."""

    tunnel_id: int
    session_id: int
    using_ipsec: bool
    tx_packets: int
    tx_bytes: int
    tx_errors: int
    rx_packets: int
    rx_bytes: int
    rx_seq_discards: int
    rx_oos_packets: int
    rx_errors: int


_IOC_STATS = struct.Struct("=HHI8Q")


def session_stats(sock: socket.socket) -> SessionStats:
    """``PPPIOCGL2TPSTATS`` on a session socket (its own session's counters)."""
    raw = fcntl.ioctl(sock.fileno(), PPPIOCGL2TPSTATS, bytes(_IOC_STATS.size))
    tid, sid, flags, *counters = _IOC_STATS.unpack(raw)
    return SessionStats(tid, sid, bool(flags & 1), *counters)


# -- /dev/ppp ----------------------------------------------------------------------------------


def _open_ppp() -> int:
    try:
        return os.open(PPP_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise _l2tp_error(exc, f"open {PPP_DEVICE} (modprobe ppp_generic)") from None


class _PppFd:
    """A ``/dev/ppp`` descriptor that moves whole frames, protocol field first."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def fd(self) -> int:
        return self._fd

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def read(self) -> bytes | None:
        """One frame, or None when nothing is queued (the descriptor is non-blocking)."""
        try:
            return os.read(self._fd, MAX_FRAME)
        except BlockingIOError:
            return None

    def write(self, frame: bytes) -> None:
        """Send one frame (protocol field first) down the channel."""
        os.write(self._fd, frame)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class PppChannelFd(_PppFd):
    """The channel of one PPPoL2TP session, opened on ``/dev/ppp`` (``PPPIOCATTCHAN``).

    pppd uses exactly this descriptor for LCP and authentication; reads return frames with
    the protocol field first (the kernel has stripped ``FF 03``), writes take the same and
    the kernel adds ``FF 03`` and the session's L2TP header.
    """

    def __init__(self, index: int) -> None:
        fd = _open_ppp()
        try:
            _ioctl_int(fd, PPPIOCATTCHAN, index)
        except OSError as exc:
            os.close(fd)
            raise _l2tp_error(exc, f"PPPIOCATTCHAN {index}") from None
        os.set_blocking(fd, False)
        super().__init__(fd)
        self.index = index

    @classmethod
    def of_session(cls, sock: socket.socket) -> PppChannelFd:
        try:
            index = channel_index(sock)
        except OSError as exc:
            raise _l2tp_error(exc, "PPPIOCGCHAN") from None
        return cls(index)

    def connect_unit(self, unit: int) -> None:
        """``PPPIOCCONNECT``: IP (and NCP) frames now go to unit ``unit``."""
        _ioctl_int(self._fd, PPPIOCCONNECT, unit)

    def disconnect_unit(self) -> None:
        """``PPPIOCDISCONN``: every frame comes back to this descriptor."""
        fcntl.ioctl(self._fd, PPPIOCDISCONN)

    def bridge(self, other_index: int) -> None:
        """``PPPIOCBRIDGECHAN`` (Linux 5.12+): frames of this channel go out on channel
        ``other_index`` and vice versa, in the kernel -- L2TP tunnel switching without a
        userspace relay. Neither channel may be connected to a unit."""
        _ioctl_int(self._fd, PPPIOCBRIDGECHAN, other_index)

    def unbridge(self) -> None:
        fcntl.ioctl(self._fd, PPPIOCUNBRIDGECHAN)


class PppUnit(_PppFd):
    """A ``pppN`` network interface (``PPPIOCNEWUNIT``); closing the descriptor removes it.

    Reads return the frames the unit does not hand to the network stack itself (IPCP,
    IPV6CP, CCP: the NCPs), protocol field first; IPv4 and IPv6 go straight to ``pppN``
    while that protocol's NP mode is pass (the kernel's default).
    """

    def __init__(self, unit: int = -1) -> None:
        fd = _open_ppp()
        try:
            number = _ioctl_int(fd, PPPIOCNEWUNIT, unit)
        except OSError as exc:
            os.close(fd)
            raise _l2tp_error(exc, "PPPIOCNEWUNIT") from None
        os.set_blocking(fd, False)
        super().__init__(fd)
        self.unit = number
        self._name = f"ppp{number}"

    @property
    def name(self) -> str:
        return self._name

    def rename(self, name: str) -> None:
        """``SIOCSIFNAME`` (the interface must be down, as a new unit is)."""
        raw = name.encode()
        if not raw or len(raw) >= IFNAMSIZ:
            raise L2tpError(errno.EINVAL, f"invalid interface name {name!r}")
        req = self._name.encode().ljust(IFNAMSIZ, b"\0") + raw.ljust(IFNAMSIZ, b"\0")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                fcntl.ioctl(s.fileno(), SIOCSIFNAME, req.ljust(40, b"\0"))
            except OSError as exc:
                raise _l2tp_error(exc, f"rename {self._name} to {name}") from None
        self._name = name

    def set_mru(self, mru: int) -> None:
        _ioctl_int(self._fd, PPPIOCSMRU, mru)

    def get_mtu(self) -> int:
        """The interface MTU (what PPP's endpoint checks before configuring IPv6)."""
        req = self._name.encode().ljust(IFNAMSIZ, b"\0") + bytes(24)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            out = fcntl.ioctl(s.fileno(), 0x8921, req)  # SIOCGIFMTU
        return int(struct.unpack_from("=i", out, IFNAMSIZ)[0])
