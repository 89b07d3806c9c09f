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

Two costs of the kernel shape how devices are named and deleted (both measured with thousands
of devices, see ``bench/control``):

* A ``%d`` template makes the kernel's ``dev_alloc_name`` walk every device of the namespace,
  so each creation costs O(devices). A template is therefore expanded here, from a per-namespace
  record of the numbers this process holds, and the kernel only checks the one name
  (``IFF_TUN_EXCL`` makes a name someone else took fail with EBUSY, and the next number is
  tried). The result is the lowest number neither held by this process nor found taken:
  the kernel's choice, unless another process creates devices from the same template.
* Closing a device's fd deletes the device and waits for an RCU barrier (10-20 ms) in the
  closing thread. Inside an asyncio event loop a close is therefore deferred to the loop's next
  iteration, where everything closed meanwhile is deleted in one rtnetlink request (the
  devices are moved to a fresh link group and the group is deleted: one barrier for the whole
  batch) before the fds are closed. The device leaves the namespace's device list at once
  when the batch runs; :func:`device_exists` and a creation that collides with a device still
  being deleted run the pending batch first, so callers in this process never see the delay.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import fcntl
import heapq
import logging
import os
import random
import socket
import struct
from types import TracebackType
from typing import Final, Literal

log = logging.getLogger(__name__)

__all__ = [
    "IFNAMSIZ",
    "NetDevice",
    "device_exists",
    "flush_closes",
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
    namespace it was mounted in, which is not the caller's after a ``setns``. Devices this
    process has closed are deleted first, so a closed device never shows up here.
    """
    try:
        raw = validate_ifname(name)
    except ValueError:
        return False
    flush_closes()
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
        "_number",
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
        # (allocator, number) when the name came from expanding a template here.
        self._number: tuple[_NameAllocator, int] | None = None
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
        """Close the fd; the kernel deletes the device when its last queue is closed.

        Called on an event loop's thread, the deletion is deferred to the loop's next
        iteration and batched with every other device closed meanwhile (see the module
        docstring); the device is unusable through this object at once either way."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        if not self.multi_queue and _defer_close(self, fd):
            return
        _close_now(self, fd)

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
            number = getattr(self, "_number", None)
            if number is not None:
                self._number = None
                with contextlib.suppress(Exception):  # at interpreter exit heapq may be gone
                    number[0].release(number[1])


# -- naming: templates expanded here -------------------------------------------------------

_MAX_NAME_TRIES: Final = 4096


def _netns_id() -> tuple[int, int]:
    """The caller's network namespace (device numbers and deferred deletions are per
    namespace, since a thread may ``setns`` between two calls)."""
    try:
        st = os.stat("/proc/thread-self/ns/net")
    except OSError:
        return (0, 0)
    return (st.st_dev, st.st_ino)


class _NameAllocator:
    """The numbers of one template (``l2tpeth%d``) this process holds in one namespace.

    ``take`` gives the lowest number that is neither held nor known to be someone else's; a
    number found taken by another device (EBUSY) is skipped and not offered again, which is
    the one way the choice can differ from the kernel's lowest-free rule (a foreign device
    deleted later leaves its number unused by us)."""

    __slots__ = ("free", "next", "pending")

    def __init__(self) -> None:
        self.free: list[int] = []  # heap of numbers given back below ``next``
        self.next = 0
        self.pending = 0  # devices of this template whose deletion is deferred

    def take(self) -> int:
        if self.free:
            return heapq.heappop(self.free)
        number = self.next
        self.next += 1
        return number

    def peek(self) -> int:
        return self.free[0] if self.free else self.next

    def release(self, number: int) -> None:
        heapq.heappush(self.free, number)


_allocators: dict[tuple[tuple[int, int], str], _NameAllocator] = {}


def _open_numbered(fd: int, template: str, flags: int, kind: DeviceKind,
                   multi_queue: bool) -> NetDevice:
    """TUNSETIFF with the template expanded to the lowest number free for us (see the
    module docstring for why not the kernel's ``%d``)."""
    raw_template = validate_ifname(template, template=True)
    alloc = _allocators.get((_netns_id(), template))
    if alloc is None:
        alloc = _allocators[(_netns_id(), template)] = _NameAllocator()
    if alloc.pending:
        # A lower number may be held by a device whose deletion is still deferred: finish
        # those deletions so that the lowest free number is what it would be in the kernel.
        flush_closes()
    for _ in range(_MAX_NAME_TRIES):
        number = alloc.take()
        name = template.replace("%d", str(number), 1)
        if len(name.encode("utf-8", "surrogateescape")) >= IFNAMSIZ:
            alloc.release(number)
            break
        try:
            got = _set_iff(fd, name.encode("utf-8", "surrogateescape"), flags, name)
        except FileExistsError:
            continue  # someone else's device: skip the number for good
        except BaseException:
            alloc.release(number)
            raise
        try:
            dev = NetDevice(fd, got, kind, multi_queue=multi_queue)
        except BaseException:
            alloc.release(number)
            raise
        dev._number = (alloc, number)
        return dev
    # Out of numbers that fit (or too many taken by others): let the kernel search.
    got = _set_iff(fd, raw_template, flags, template)
    return NetDevice(fd, got, kind, multi_queue=multi_queue)


# -- deletion: deferred and batched inside an event loop ------------------------------------

# (device, fd, namespace) closed by their owners and not yet deleted
_pending: list[tuple[NetDevice, int, tuple[int, int]]] = []
# The loop that will run flush_closes(); another loop (a loop that stopped before running it,
# then a new one) schedules its own.
_flush_loop: asyncio.AbstractEventLoop | None = None

_NETLINK_ROUTE: Final = 0
_RTM_DELLINK: Final = 17
_RTM_SETLINK: Final = 19
_NLM_F_REQUEST: Final = 0x01
_NLM_F_ACK: Final = 0x04
_NLMSG_ERROR: Final = 2
_IFLA_GROUP: Final = 27
_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RTATTR_U32 = struct.Struct("=HHI")
_LINK_MSG_LEN: Final = _NLMSGHDR.size + _IFINFOMSG.size + _RTATTR_U32.size
_SETLINK_CHUNK: Final = 1024  # messages per sendmsg, well inside a netlink socket's buffer


def _close_now(dev: NetDevice, fd: int) -> None:
    try:
        os.close(fd)
    finally:
        number, dev._number = dev._number, None
        if number is not None:
            number[0].release(number[1])


def _defer_close(dev: NetDevice, fd: int) -> bool:
    """Queue ``fd`` for the batched deletion if the caller runs an event loop."""
    global _flush_loop
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    _pending.append((dev, fd, _netns_id()))
    if dev._number is not None:
        dev._number[0].pending += 1
    if _flush_loop is not loop:
        _flush_loop = loop
        loop.call_soon(flush_closes)
    return True


def flush_closes() -> bool:
    """Delete every device whose close was deferred, now; False if there were none.

    Devices of the caller's namespace go in one rtnetlink batch (moved to a fresh link group,
    then the group deleted) when there are several; the fds are closed afterwards, which then
    costs the kernel nothing more. Any failure falls back to closing the fds one by one."""
    global _flush_loop
    _flush_loop = None
    if not _pending:
        return False
    batch = _pending[:]
    _pending.clear()
    here = _netns_id()
    local = [(dev, fd) for dev, fd, ns in batch if ns == here]
    if len(local) > 1:
        try:
            _delete_group([dev.ifindex for dev, fd in local if _attached(fd)])
        except OSError as exc:
            log.debug("batched deletion of %d devices failed (%s); closing one by one",
                      len(local), exc)
    for dev, fd, _ns in batch:
        if dev._number is not None:
            dev._number[0].pending -= 1
        try:
            _close_now(dev, fd)
        except OSError:
            pass
    return True


def _attached(fd: int) -> bool:
    """Whether ``fd`` still has its device (one deleted under us reports EBADFD), so that a
    batch never names an ifindex that is no longer ours."""
    try:
        fcntl.ioctl(fd, _TUNGETIFF, bytearray(_IFREQ_FLAGS.size))
    except OSError:
        return False
    return True


def _link_msg(msg_type: int, flags: int, seq: int, ifindex: int, group: int) -> bytes:
    return (_NLMSGHDR.pack(_LINK_MSG_LEN, msg_type, _NLM_F_REQUEST | flags, seq, 0)
            + _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0)
            + _RTATTR_U32.pack(_RTATTR_U32.size, _IFLA_GROUP, group))


def _delete_group(ifindexes: list[int]) -> None:
    """Move the devices to a link group of their own and delete the group: the kernel's
    ``rtnl_group_dellink`` unregisters them together, one RCU barrier for all of them."""
    if not ifindexes:
        return
    # A group number nobody uses: high and random (groups are plain u32 labels; 0 is default).
    group = 0x80000000 | random.getrandbits(31)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       _NETLINK_ROUTE) as nl:
        nl.settimeout(30)  # the kernel always answers; never hang the loop on a bug
        nl.bind((0, 0))
        seq = 1
        for i in range(0, len(ifindexes), _SETLINK_CHUNK):
            chunk = ifindexes[i:i + _SETLINK_CHUNK]
            nl.sendall(b"".join(_link_msg(_RTM_SETLINK, 0, seq + k, ifindex, group)
                                for k, ifindex in enumerate(chunk)))
            seq += len(chunk)
        done = seq
        nl.sendall(_link_msg(_RTM_DELLINK, _NLM_F_ACK, done, 0, group))
        # Errors of single SETLINKs (a device that vanished) come back unasked; only the
        # acknowledgement of the group deletion matters.
        while True:
            data = nl.recv(65536)
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, msg_type, _flags, seq_no, _pid = _NLMSGHDR.unpack_from(data, pos)
                if msg_type == _NLMSG_ERROR and seq_no == done:
                    error = struct.unpack_from("=i", data, pos + _NLMSGHDR.size)[0]
                    if error:
                        raise OSError(-error, os.strerror(-error))
                    return
                if length < _NLMSGHDR.size:
                    raise OSError(errno.EPROTO, "malformed netlink reply")
                pos += (length + 3) & ~3


atexit.register(flush_closes)


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
    flags = (_IFF_TAP if kind == "tap" else _IFF_TUN) | _IFF_NO_PI | _IFF_TUN_EXCL
    if multi_queue:
        flags |= _IFF_MULTI_QUEUE
    fd = _open_tun_fd()
    try:
        if name is not None:
            raw = validate_ifname(name)
            try:
                got = _set_iff(fd, raw, flags, name)
            except FileExistsError:
                # Perhaps a device of ours still waiting for its deletion: finish that, retry.
                if not flush_closes():
                    raise
                got = _set_iff(fd, raw, flags, name)
            dev = NetDevice(fd, got, kind, multi_queue=multi_queue)
        else:
            dev = _open_numbered(fd, template, flags, kind, multi_queue)
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
