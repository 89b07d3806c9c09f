"""Ethernet pseudowire: one TAP device per session, like the kernel's ``l2tpethN`` devices.

The device is created down with the MTU the kernel would compute for the encapsulation
overhead, so an Ethernet frame of that MTU fits in one outer packet of the path MTU.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from pyl2tp.dataplane import tuntap
from pyl2tp.errors import L2tpError
from pyl2tp.wire.constants import EncapType

if TYPE_CHECKING:
    from pyl2tp.dataplane.model import Session
    from pyl2tp.dataplane.userspace import UserspaceBackend

ETH_HLEN = 14
READ_BATCH = 64


def kernel_mtu(session: Session, path_mtu: int) -> int:
    """``l2tp_eth``'s MTU: path MTU minus UDP (8, if UDP), the L2TP header, the inner Ethernet
    header and the outer IP header (20 or 40); 1500 minus that when the result is absurd."""
    tunnel = session.tunnel
    overhead = (8 if tunnel.encap == EncapType.UDP else 0) + session.hdr_len + ETH_HLEN + (
        20 if tunnel.family == socket.AF_INET else 40)
    mtu = path_mtu - overhead
    if not 0 <= mtu <= 65535:
        mtu = 1500 - overhead
    return mtu


class EthPseudowire:
    """Moves frames between a session and its TAP device in both directions."""

    def __init__(self, backend: UserspaceBackend, session: Session) -> None:
        self.backend = backend
        self.session = session
        self.rx_short = 0
        self.rx_no_device = 0
        try:
            if session.ifname and "%d" not in session.ifname:
                self.dev = tuntap.open_tap(session.ifname)
            else:
                # Like the kernel's dev_alloc_name: a "%d" in the name picks the first free
                # number ("name l2tp%d" in ip l2tp, count > 1 in the configuration).
                self.dev = tuntap.open_tap(template=session.ifname or "l2tpeth%d")
        except FileExistsError as exc:
            raise L2tpError(errno.EEXIST, str(exc)) from None
        except (OSError, ValueError) as exc:
            code = getattr(exc, "errno", None) or errno.EINVAL
            raise L2tpError(code, f"cannot create TAP: {exc}") from None
        session.ifname = self.dev.name
        try:
            self.dev.set_mtu(kernel_mtu(session, backend.tunnel_mtu(session.tunnel)))
        except OSError:
            pass
        session.deliver = self._deliver
        backend.loop.add_reader(self.dev.fd, self._readable)

    def _deliver(self, frame: bytes | bytearray) -> None:
        if len(frame) < ETH_HLEN:
            self.rx_short += 1
            return
        if self.dev.closed:
            self.rx_no_device += 1
            return
        try:
            self.dev.write(frame)
        except OSError:
            self._device_gone()
            self.rx_no_device += 1

    def _readable(self) -> None:
        read = self.dev.read
        transmit = self.backend.transmit
        session = self.session
        for _ in range(READ_BATCH):
            try:
                frame = read()
            except OSError:
                self._device_gone()
                return
            if frame is None:
                return
            transmit(session, frame)

    def _device_gone(self) -> None:
        """The device was deleted under us (``ip link del``): its fd now fails every read and
        write with EBADFD while epoll keeps reporting it, so stop watching it. As with
        ``l2tp_eth`` after ``ndo_uninit``, the session itself stays until it is deleted and
        drops the frames it receives."""
        self.close()

    def close(self) -> None:
        if not self.dev.closed:
            self.backend.loop.remove_reader(self.dev.fd)
            self.dev.close()
