"""TAP and TUN network devices: where userspace pseudowires meet the host's network stack.

The kernel's ``l2tp_eth`` registers a net_device per Ethernet session and ``pppol2tp`` a ``pppN``
unit per PPP session. With no L2TP or PPP modules on the host, pyl2tp stands in for them with a
TAP device per Ethernet pseudowire and a TUN device per PPP endpoint: frames the host transmits
on the device are read from the fd and encapsulated, and decapsulated frames are written to the
fd to appear as received by the device.

Devices are never made persistent, so the device lives exactly as long as its fd: a daemon that
is killed leaves no ``l2tpethN`` behind, like the kernel deleting a session's interface when the
session goes. Configuration (MTU, flags, MAC) goes through the classic ``SIOC*`` ioctls on a
datagram socket, which act on the network namespace of the calling thread, like device creation.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from types import TracebackType
from typing import Final, Literal

__all__ = [
    "IFNAMSIZ",
    "NetDevice",
    "device_exists",
    "format_mac",
    "open_tap",
    "open_tun",
    "parse_mac",
    "validate_ifname",
]

TUN_PATH: Final = "/dev/net/tun"
IFNAMSIZ: Final = 16

# <linux/if_tun.h>
_TUNSETIFF: Final = 0x400454CA
_TUNGETIFF: Final = 0x800454D2
_TUNSETQUEUE: Final = 0x400454D9
_TUNSETCARRIER: Final = 0x400454E2
_IFF_TUN: Final = 0x0001
_IFF_TAP: Final = 0x0002
_IFF_MULTI_QUEUE: Final = 0x0100
_IFF_ATTACH_QUEUE: Final = 0x0200
_IFF_DETACH_QUEUE: Final = 0x0400
_IFF_NO_PI: Final = 0x1000
_IFF_TUN_EXCL: Final = 0x8000

# <linux/sockios.h>
_SIOCGIFFLAGS: Final = 0x8913
_SIOCSIFFLAGS: Final = 0x8914
_SIOCGIFMTU: Final = 0x8921
_SIOCSIFMTU: Final = 0x8922
_SIOCSIFHWADDR: Final = 0x8924
_SIOCGIFHWADDR: Final = 0x8927
_SIOCGIFINDEX: Final = 0x8933

_IFF_UP: Final = 0x0001
_ARPHRD_ETHER: Final = 1

# struct ifreq is the 16-byte name followed by a 24-byte union; each request uses one member.
_IFREQ_FLAGS = struct.Struct("16sH22x")
_IFREQ_INT = struct.Struct("16si20x")
_IFREQ_HWADDR = struct.Struct("16sH14s8x")

# Large enough for a maximal TAP frame (MTU 65521 + Ethernet header + one VLAN tag); a shorter
# buffer would make the kernel fail the read instead of truncating.
_READ_SIZE: Final = 65536 + 64

# Errors that mean "this one frame did not make it" rather than "the device is broken": the
# kernel ran out of buffers, the device was brought down under us, or a malformed frame from the
# network (a TAP rejects anything shorter than an Ethernet header with EINVAL). A data plane must
# count these and carry on, never let one bad frame stop a receive loop.
_WRITE_DROP_ERRNOS: Final = frozenset(
    {errno.EAGAIN, errno.ENOBUFS, errno.EIO, errno.EINVAL, errno.ENOMEM}
)

DeviceKind = Literal["tap", "tun"]


def validate_ifname(name: str, *, template: bool = False) -> bytes:
    """Check ``name`` against the kernel's ``dev_valid_name`` rules and return it encoded.

    Checking up front gives the user a message naming the rule instead of a bare EINVAL from an
    ioctl. With ``template=True`` the name must contain exactly one ``%d`` (the kernel's
    ``dev_alloc_name`` syntax); otherwise a ``%`` is refused, since the kernel would treat it as a
    template and silently create a different name than the one asked for.
    """
    if not isinstance(name, str):
        raise TypeError(f"interface name must be str, not {type(name).__name__}")
    if not name:
        raise ValueError("interface name must not be empty")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) >= IFNAMSIZ:
        raise ValueError(f"interface name {name!r} is too long (at most {IFNAMSIZ - 1} bytes)")
    if name in (".", ".."):
        raise ValueError(f"interface name {name!r} is not allowed")
    for ch in name:
        if ch in "/:\0" or ch.isspace():
            raise ValueError(f"interface name {name!r} contains an invalid character {ch!r}")
    if template:
        if name.count("%") != 1 or "%d" not in name:
            raise ValueError(f"interface name template {name!r} must contain exactly one %d")
    elif "%" in name:
        raise ValueError(f"interface name {name!r} must not contain '%' (use template=)")
    return raw


def device_exists(name: str) -> bool:
    """Whether a network device called ``name`` exists in the caller's network namespace.

    Asks the kernel (``SIOCGIFINDEX``) rather than looking in ``/sys/class/net``: sysfs shows the
    namespace it was mounted in, which is not the caller's after a ``setns``.
    """
    try:
        raw = validate_ifname(name)
    except ValueError:
        return False
    try:
        _ifreq_int(_SIOCGIFINDEX, raw, 0)
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            return False
        raise
    return True


def _ioctl(request: int, buf: bytes) -> bytes:
    """Run one interface ioctl on a fresh socket of the caller's namespace.

    A socket per call (configuration is rare) rather than a cached one, because a cached socket
    would stay bound to the namespace it was created in.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        return fcntl.ioctl(sock.fileno(), request, buf)


def _ifreq_int(request: int, raw_name: bytes, value: int) -> int:
    out = _ioctl(request, _IFREQ_INT.pack(raw_name, value))
    result: int = _IFREQ_INT.unpack(out)[1]
    return result


def _open_tun_fd() -> int:
    try:
        return os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            exc.errno, f"{TUN_PATH} is missing: the tun driver is not available", TUN_PATH
        ) from None
    except PermissionError as exc:
        raise PermissionError(
            exc.errno, f"cannot open {TUN_PATH}: creating devices needs CAP_NET_ADMIN", TUN_PATH
        ) from None


def _set_iff(fd: int, raw_name: bytes, flags: int, shown_name: str) -> str:
    """Issue TUNSETIFF and return the name the kernel gave the device.

    Errors are translated to exceptions that say which device was being created, since a bare
    ``[Errno 16] Device or resource busy`` tells an operator nothing.
    """
    buf = bytearray(_IFREQ_FLAGS.pack(raw_name, flags))
    try:
        fcntl.ioctl(fd, _TUNSETIFF, buf)
    except OSError as exc:
        if exc.errno == errno.EBUSY and flags & _IFF_TUN_EXCL:
            raise FileExistsError(
                errno.EEXIST, f"network device {shown_name!r} already exists"
            ) from None
        if exc.errno == errno.EPERM:
            raise PermissionError(
                exc.errno, f"creating network device {shown_name!r} needs CAP_NET_ADMIN"
            ) from None
        if exc.errno == errno.ENFILE:
            raise OSError(exc.errno, f"no free device name left for {shown_name!r}") from None
        raise OSError(
            exc.errno, f"cannot create network device {shown_name!r}: {exc.strerror}"
        ) from None
    return bytes(buf[:IFNAMSIZ]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


class NetDevice:
    """One TAP or TUN device (or one queue of a multi-queue device), owned through its fd.

    ``read``/``write`` are the data path and stay thin: one system call each, with no logging.
    Frames the kernel would not take are counted in ``write_drops`` (by errno in
    ``write_drop_errnos``) so a pseudowire can account them as transmit drops.
    """

    __slots__ = (
        "_fd",
        "_name",
        "kind",
        "ifindex",
        "multi_queue",
        "is_extra_queue",
        "write_drops",
        "write_drop_errnos",
        "__weakref__",
    )

    def __init__(
        self,
        fd: int,
        name: str,
        kind: DeviceKind,
        *,
        multi_queue: bool = False,
        is_extra_queue: bool = False,
    ) -> None:
        self._fd = fd
        self._name = name
        self.kind: DeviceKind = kind
        self.multi_queue = multi_queue
        self.is_extra_queue = is_extra_queue
        self.write_drops = 0
        self.write_drop_errnos: dict[int, int] = {}
        self.ifindex = _ifreq_int(_SIOCGIFINDEX, validate_ifname(name), 0)

    # -- identity ---------------------------------------------------------------------------

    @property
    def fd(self) -> int:
        """The device fd, for selectors and ``loop.add_reader``; -1 once closed."""
        return self._fd

    def fileno(self) -> int:
        """Lets the device be passed wherever a file-like object with an fd is expected."""
        if self._fd < 0:
            raise ValueError("I/O operation on closed network device")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    @property
    def name(self) -> str:
        """The device's current name, asked from the kernel so an ``ip link set name`` is seen.

        After ``close`` (or if the device was deleted under us) the last known name is returned.
        """
        if self._fd >= 0:
            buf = bytearray(_IFREQ_FLAGS.size)
            try:
                fcntl.ioctl(self._fd, _TUNGETIFF, buf)
            except OSError:
                return self._name
            self._name = bytes(buf[:IFNAMSIZ]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        return self._name

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<NetDevice {self.kind} {self._name!r} ifindex={self.ifindex} {state}>"

    # -- data path --------------------------------------------------------------------------

    def read(self) -> bytes | None:
        """One frame the host transmitted on the device, or None when none is queued."""
        try:
            return os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return None

    def readinto(self, buf: bytearray | memoryview) -> int | None:
        """Like ``read`` into a caller's buffer, so a receive loop can avoid an allocation.

        ``buf`` must hold a whole frame (MTU plus link header); returns the frame length.
        """
        try:
            return os.readv(self._fd, [buf])
        except BlockingIOError:
            return None

    def write(self, frame: bytes | bytearray | memoryview) -> None:
        """Hand one frame to the host as if the device had received it.

        Transient refusals are counted, not raised: see the class docstring.
        """
        try:
            os.write(self._fd, frame)
        except OSError as exc:
            code = exc.errno
            if code not in _WRITE_DROP_ERRNOS:
                raise
            self.write_drops += 1
            self.write_drop_errnos[code] = self.write_drop_errnos.get(code, 0) + 1

    # -- configuration ----------------------------------------------------------------------

    def _raw_name(self) -> bytes:
        return validate_ifname(self.name)

    def get_mtu(self) -> int:
        return _ifreq_int(_SIOCGIFMTU, self._raw_name(), 0)

    def set_mtu(self, mtu: int) -> None:
        """Set the device MTU; the kernel enforces the range (68..65521 for a TAP)."""
        if not isinstance(mtu, int) or mtu <= 0:
            raise ValueError(f"invalid MTU {mtu!r}")
        try:
            _ifreq_int(_SIOCSIFMTU, self._raw_name(), mtu)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise ValueError(f"MTU {mtu} is out of range for device {self.name!r}") from None
            raise

    def get_flags(self) -> int:
        """The ``IFF_*`` interface flags (the 16 bits ``SIOCGIFFLAGS`` reports)."""
        out = _ioctl(_SIOCGIFFLAGS, _IFREQ_FLAGS.pack(self._raw_name(), 0))
        flags: int = _IFREQ_FLAGS.unpack(out)[1]
        return flags

    def is_up(self) -> bool:
        return bool(self.get_flags() & _IFF_UP)

    def set_up(self, up: bool = True) -> None:
        """Administratively bring the device up or down (``ip link set ... up|down``)."""
        raw = self._raw_name()
        flags = _IFREQ_FLAGS.unpack(_ioctl(_SIOCGIFFLAGS, _IFREQ_FLAGS.pack(raw, 0)))[1]
        new = (flags | _IFF_UP) if up else (flags & ~_IFF_UP)
        if new != flags:
            _ioctl(_SIOCSIFFLAGS, _IFREQ_FLAGS.pack(raw, new))

    def get_mac(self) -> bytes:
        """The hardware address (6 bytes for a TAP; a TUN has none and returns b"")."""
        out = _ioctl(_SIOCGIFHWADDR, _IFREQ_HWADDR.pack(self._raw_name(), 0, b""))
        family, data = _IFREQ_HWADDR.unpack(out)[1:]
        return bytes(data[:6]) if family == _ARPHRD_ETHER else b""

    def set_mac(self, mac: str | bytes) -> None:
        """Set the TAP's MAC, given as 6 bytes or ``aa:bb:cc:dd:ee:ff``.

        Only a TAP has one; like the kernel, a multicast address is refused.
        """
        if self.kind != "tap":
            raise ValueError(f"device {self._name!r} is a TUN device and has no MAC address")
        addr = parse_mac(mac)
        if addr[0] & 1:
            raise ValueError(f"MAC {format_mac(addr)} is a multicast address")
        _ioctl(_SIOCSIFHWADDR, _IFREQ_HWADDR.pack(self._raw_name(), _ARPHRD_ETHER, addr))

    def set_carrier(self, on: bool) -> None:
        """Report link carrier on or off, so a pseudowire that is down shows NO-CARRIER."""
        fcntl.ioctl(self.fileno(), _TUNSETCARRIER, struct.pack("i", 1 if on else 0))

    # -- multi-queue ------------------------------------------------------------------------

    def open_queue(self) -> NetDevice:
        """Open one more queue of this multi-queue device, for another worker to read/write.

        The kernel spreads the host's transmitted flows across queues. The device stays until
        every queue's fd is closed.
        """
        if not self.multi_queue:
            raise ValueError(f"device {self._name!r} was not opened with multi_queue=True")
        name = self.name
        flags = _IFF_NO_PI | _IFF_MULTI_QUEUE | (_IFF_TAP if self.kind == "tap" else _IFF_TUN)
        fd = _open_tun_fd()
        try:
            got = _set_iff(fd, validate_ifname(name), flags, name)
            queue = NetDevice(fd, got, self.kind, multi_queue=True, is_extra_queue=True)
        except BaseException:
            os.close(fd)
            raise
        if queue.ifindex != self.ifindex:
            # Our device vanished and another took its name: never attach to a stranger's device.
            queue.close()
            raise OSError(errno.ENODEV, f"network device {name!r} is no longer ours")
        return queue

    def set_queue_enabled(self, enabled: bool) -> None:
        """Attach or detach this queue, so an idle worker stops getting a share of the flows."""
        if not self.multi_queue:
            raise ValueError(f"device {self._name!r} is not multi-queue")
        flags = _IFF_ATTACH_QUEUE if enabled else _IFF_DETACH_QUEUE
        fcntl.ioctl(self.fileno(), _TUNSETQUEUE, _IFREQ_FLAGS.pack(b"", flags))

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the fd; the kernel deletes the device when its last queue is closed."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> NetDevice:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten device must not outlive its owner object; the fd is a plain int, so
        # nothing else would ever close it.
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            self._fd = -1
            try:
                os.close(fd)
            except OSError:
                pass


def parse_mac(mac: str | bytes) -> bytes:
    """Accept a MAC as 6 raw bytes or as six colon- or dash-separated hex octets."""
    if isinstance(mac, bytes | bytearray):
        if len(mac) != 6:
            raise ValueError(f"MAC address must be 6 bytes, got {len(mac)}")
        return bytes(mac)
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"invalid MAC address {mac!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"invalid MAC address {mac!r}") from None


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _open(
    kind: DeviceKind,
    name: str | None,
    template: str,
    mtu: int | None,
    up: bool,
    multi_queue: bool,
) -> NetDevice:
    if name is not None:
        raw = validate_ifname(name)
        shown = name
    else:
        # The kernel expands "%d" itself (dev_alloc_name, under the RTNL lock) to the lowest
        # unused number in the caller's namespace. Doing it here would mean a check-then-create
        # race with other processes; letting the kernel do it makes the choice atomic.
        raw = validate_ifname(template, template=True)
        shown = template
    flags = (_IFF_TAP if kind == "tap" else _IFF_TUN) | _IFF_NO_PI | _IFF_TUN_EXCL
    if multi_queue:
        flags |= _IFF_MULTI_QUEUE
    fd = _open_tun_fd()
    try:
        got = _set_iff(fd, raw, flags, shown)
        dev = NetDevice(fd, got, kind, multi_queue=multi_queue)
    except BaseException:
        os.close(fd)
        raise
    try:
        if mtu is not None:
            dev.set_mtu(mtu)
        if up:
            dev.set_up(True)
    except BaseException:
        dev.close()
        raise
    return dev


def open_tap(
    name: str | None = None,
    *,
    template: str = "l2tpeth%d",
    mtu: int | None = None,
    up: bool = False,
    multi_queue: bool = False,
) -> NetDevice:
    """Create a TAP device for an Ethernet pseudowire.

    With no ``name`` the device is named from ``template`` with the lowest free number, as
    ``l2tp_eth`` names its devices. An explicit ``name`` that is taken raises FileExistsError:
    attaching to someone else's device would splice two sessions together.
    """
    return _open("tap", name, template, mtu, up, multi_queue)


def open_tun(
    name: str | None = None,
    *,
    template: str = "ppp%d",
    mtu: int | None = None,
    up: bool = False,
    multi_queue: bool = False,
) -> NetDevice:
    """Create a TUN device for a PPP endpoint's network side (IP packets, no link header)."""
    return _open("tun", name, template, mtu, up, multi_queue)
