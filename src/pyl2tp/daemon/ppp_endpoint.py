"""The asyncio side of one PPP link: a session's PPP channel, a TUN device and the clock.

:class:`PppEndpoint` is what pppd is to one PPPoL2TP socket. Frames from the L2TP session go
to the sans-I/O :class:`~pyl2tp.ppp.link.PppLink`, except IP packets on an open network
protocol, which go straight to the TUN device (the fast path: one comparison and one write).
IP packets read from the device go out the same way in reverse, framed and given their L2TP
header in two concatenations. The link's events create the
device and its addresses when the first network protocol opens, ask the authentication
backend about users, and report the end of the link so the L2TP session is torn down.

On the kernel backend the channel is the kernel's (``KernelPppChannel``) and offers
``create_unit``: the interface is then a kernel ``pppN`` unit instead of a TUN device, so IPv4
and IPv6 never come up to Python -- only LCP, authentication and the NCPs do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from pyl2tp.dataplane import tuntap
from pyl2tp.dataplane.pppox import PppUnit
from pyl2tp.errors import L2tpError
from pyl2tp.ppp.auth import AuthBackend, AuthRequest, AuthResult
from pyl2tp.ppp.link import (
    LinkFinished,
    NetworkDown,
    NetworkUp,
    PppLink,
    UserAuthenticated,
    VerifyRequest,
)
from pyl2tp.ppp.protocols import PROTO_IPCP
from pyl2tp.pw.ppp import PppChannel

from . import ifaddr
from .deadline import DeadlineTimer

log = logging.getLogger("pyl2tp.ppp")

READ_BATCH = 64
IPV6_MIN_MTU = 1280
_IPV4 = b"\x00\x21"
_IPV6 = b"\x00\x57"

Publish = Callable[[str, dict[str, Any]], None]


class PppEndpoint:
    """Terminates PPP on one L2TP session."""

    def __init__(self, loop: asyncio.AbstractEventLoop, channel: PppChannel, link: PppLink, *,
                 label: str, ifname: str = "ppp%d", mtu: int | None = None,
                 backend: AuthBackend | None = None, default_route: bool = False,
                 on_finished: Callable[[PppEndpoint, str], None] | None = None,
                 publish: Publish | None = None) -> None:
        self.loop = loop
        self.channel = channel
        self.link = link
        self.label = label
        self.ifname_template = ifname
        self.mtu = mtu
        self.backend = backend
        self.default_route = default_route
        self.on_finished = on_finished
        self.publish = publish or (lambda _e, _a: None)
        self.dev: tuntap.NetDevice | None = None
        # The kernel's pppN when the channel can make one (IP then bypasses this process).
        self.unit: PppUnit | None = None
        self.ipv4: tuple[IPv4Address, IPv4Address | None] | None = None
        self.ipv6: IPv6Address | None = None
        self.peer6: IPv4Address | IPv6Address | None = None
        self.dns: tuple[IPv4Address, ...] = ()
        self.rx_no_device = 0
        self._timer = DeadlineTimer(loop, self._on_timer)
        self._verify: asyncio.Task[None] | None = None
        self._config_task: asyncio.Task[None] | None = None
        self._device_up = False
        self._closed = False
        channel.on_frame = self._on_frame

    @property
    def ifname(self) -> str | None:
        iface = self._iface
        return iface.name if iface is not None else None

    @property
    def _iface(self) -> tuntap.NetDevice | PppUnit | None:
        return self.dev if self.dev is not None else self.unit

    # -- control ------------------------------------------------------------------------------

    def start(self) -> None:
        self.link.start(self.loop.time())
        self._drive()

    def lower_down(self) -> None:
        """The session went away under us: no Terminate exchange is possible."""
        if not self._closed:
            self.link.lower_down(self.loop.time())
            self._drive()

    def close(self, reason: str = "administrative close") -> None:
        """Terminate PPP politely; :attr:`on_finished` follows when LCP is done."""
        if not self._closed:
            self.link.close(self.loop.time(), reason)
            self._drive()

    def summary(self) -> dict[str, Any]:
        link = self.link
        out: dict[str, Any] = {
            "ifname": self.ifname, "phase": link.phase.value, "user": link.peer_name,
            "lcp": link.lcp.state.name.lower(), "peer_mru": link.peer_mru,
            "ipv4_up": link.ipv4_open, "ipv6_up": link.ipv6_open,
        }
        policy = link.lcp_policy
        if policy.auth_of_peer is not None:
            out["auth"] = policy.auth_of_peer.value  # what we demanded and the peer took
        if policy.auth_by_peer is not None:
            out["auth_by_peer"] = policy.auth_by_peer.value
        if self.ipv4 is not None:
            out["local"], out["peer"] = str(self.ipv4[0]), str(self.ipv4[1] or "")
        if self.ipv6 is not None:
            out["local6"] = str(self.ipv6)
            out["peer6"] = str(self.peer6)
        if self.dns:
            out["dns"] = [str(d) for d in self.dns]
        c = link.counters
        out["counters"] = {"rx_frames": c.rx_frames, "tx_frames": c.tx_frames,
                           "rx_malformed": c.rx_malformed, "rx_not_ready": c.rx_not_ready,
                           "rx_protocol_rejected": c.rx_protocol_rejected,
                           "tx_not_ready": c.tx_not_ready, "echo_sent": c.echo_sent,
                           "rx_no_device": self.rx_no_device}
        return out

    # -- data path ----------------------------------------------------------------------------

    def _on_frame(self, frame: bytes) -> None:
        head = frame[:2]
        link = self.link
        if (head == _IPV4 and link.ipv4_open) or (head == _IPV6 and link.ipv6_open):
            dev = self.dev
            if dev is None:
                self.rx_no_device += 1
                return
            try:
                dev.write(frame[2:])
            except OSError:
                self.rx_no_device += 1
            return
        link.receive(frame, self.loop.time())
        self._drive()

    def _readable(self) -> None:
        dev = self.dev
        if dev is None:
            return
        ip_protocol = self.link.ip_protocol
        send = self.channel.send_protocol
        for _ in range(READ_BATCH):
            try:
                packet = dev.read()
            except OSError as exc:  # deleted under us: without it the link carries nothing
                self._drop_device()
                self.close(f"interface read failed: {exc.strerror or exc}")
                return
            if packet is None:
                return
            protocol = ip_protocol(packet)
            if protocol is not None:
                send(protocol, packet)

    # -- the link's outputs -------------------------------------------------------------------

    def _drive(self) -> None:
        link = self.link
        for frame in link.frames_to_send():
            self.channel.send(frame)
        for packet in link.ip_received():
            if self.dev is not None:
                with contextlib.suppress(OSError):
                    self.dev.write(packet)
        for event in link.events():
            if self._closed and not isinstance(event, LinkFinished):
                continue  # finished earlier in this batch: nothing may be created now
            try:
                self._on_event(event)
            except Exception:  # one failing event must not wedge the link
                log.exception("%s: PPP event %r failed", self.label, event)
        if self._closed:
            return
        self._timer.arm(link.next_deadline())

    def _on_timer(self) -> None:
        self.link.handle_timer(self.loop.time())
        self._drive()

    def _on_event(self, event: object) -> None:
        if isinstance(event, NetworkUp):
            self._network_up(event)
        elif isinstance(event, NetworkDown):
            self._network_down(event)
        elif isinstance(event, VerifyRequest):
            self._start_verify(event.request)
        elif isinstance(event, UserAuthenticated):
            log.info("%s: peer authenticated as %r", self.label, event.username)
            self.publish("ppp_authenticated", {"session": self.label, "user": event.username})
        elif isinstance(event, LinkFinished):
            self._finish(event.reason)

    def _network_up(self, event: NetworkUp) -> None:
        try:
            self._ensure_device()
        except (OSError, ValueError, ifaddr.InterfaceConfigError) as exc:
            log.warning("%s: cannot create the PPP interface: %s", self.label, exc)
            self.close(f"interface setup failed: {exc}")
            return
        self._configure(lambda: self._network_up_async(event))

    def _network_down(self, event: NetworkDown) -> None:
        iface = self._iface
        if iface is not None:
            name = iface.name
            # Queued behind any pending "up", so it removes what that up installs.
            self._configure(lambda: self._network_down_async(event, name))

    def _configure(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run interface changes one after another, in the order the link asked for them:
        rtnetlink calls are coroutines, and "up, then address" must not interleave with a
        "down" for the same interface."""
        previous = self._config_task

        async def chained() -> None:
            if previous is not None:
                with contextlib.suppress(BaseException):
                    await previous
            if not self._closed:
                await work()
        self._config_task = self.loop.create_task(chained())

    async def _network_up_async(self, event: NetworkUp) -> None:
        dev = self._iface
        if dev is None or self._closed:
            return
        name = dev.name
        try:
            if not self._device_up:
                await ifaddr.bring_up(name, self.mtu or self.link.peer_mru,
                                      ipv6=self.link.ipv6cp_policy is not None)
                self._device_up = True
            if event.protocol == PROTO_IPCP:
                local, peer = event.local, event.peer
                if not isinstance(local, IPv4Address):
                    raise ifaddr.InterfaceConfigError("IPCP opened without a local address")
                peer4 = peer if isinstance(peer, IPv4Address) else None
                await ifaddr.add_ipv4_ptp(name, local, peer4)
                self.ipv4 = (local, peer4)
                self.dns = event.dns
                if self.default_route:
                    await ifaddr.add_default_route(name)
                log.info("%s: %s up, local %s peer %s%s", self.label, name, local, peer4,
                         f" dns {', '.join(map(str, event.dns))}" if event.dns else "")
            else:
                if not isinstance(event.local, IPv6Address):
                    raise ifaddr.InterfaceConfigError("IPV6CP opened without an address")
                if dev.get_mtu() < IPV6_MIN_MTU:
                    # The kernel disables IPv6 below 1280 (RFC 8200 §5); IPv4 stays usable.
                    log.warning("%s: %s MTU %d is below IPv6's minimum of %d: IPv6 not "
                                "configured", self.label, name, dev.get_mtu(), IPV6_MIN_MTU)
                    return
                await ifaddr.add_ipv6_link_local(name, event.local)
                self.ipv6 = event.local
                self.peer6 = event.peer
                log.info("%s: %s IPv6 up, local %s peer %s", self.label, name, event.local,
                         event.peer)
        except (OSError, ifaddr.InterfaceConfigError) as exc:
            if self._closed:
                return
            log.warning("%s: network interface setup failed: %s", self.label, exc)
            self.close(f"interface setup failed: {exc}")
            return
        self.publish("ppp_up", {"session": self.label, **self.summary()})

    async def _network_down_async(self, event: NetworkDown, name: str) -> None:
        if event.protocol == PROTO_IPCP:
            self.ipv4 = None
            await ifaddr.remove_ipv4(name)
        elif self.ipv6 is not None:
            local6, self.ipv6 = self.ipv6, None
            await ifaddr.remove_ipv6(name, local6)

    def _ensure_device(self) -> None:
        if self.dev is not None or self.unit is not None:
            return
        name = self.ifname_template
        create_unit = getattr(self.channel, "create_unit", None)
        if create_unit is not None:
            try:
                self.unit = create_unit(None if "%d" in name else name)
            except L2tpError as exc:
                raise ifaddr.InterfaceConfigError(exc.message) from None
            return
        try:
            dev = tuntap.open_tun(template=name) if "%d" in name else tuntap.open_tun(name)
        except FileExistsError:
            raise ifaddr.InterfaceConfigError(f"interface {name} already exists") from None
        self.dev = dev
        self.loop.add_reader(dev.fd, self._readable)

    def _drop_device(self) -> None:
        self._device_up = False
        if self.unit is not None:
            self.unit = None
            destroy_unit = getattr(self.channel, "destroy_unit", None)
            if destroy_unit is not None:
                destroy_unit()
        dev, self.dev = self.dev, None
        if dev is not None and not dev.closed:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(dev.fd)
            dev.close()

    # -- authentication -----------------------------------------------------------------------

    def _start_verify(self, request: AuthRequest) -> None:
        if self.backend is None:
            self.link.verdict(AuthResult(False, "no user database"), self.loop.time())
            self._drive()
            return
        if self._verify is not None:
            self._verify.cancel()
        self._verify = self.loop.create_task(self._run_verify(self.backend, request))

    async def _run_verify(self, backend: AuthBackend, request: AuthRequest) -> None:
        try:
            result = await backend.authenticate(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken backend refuses; it must not kill the daemon
            log.warning("%s: authentication backend failed: %s", self.label, exc)
            result = AuthResult(False, "authentication backend error")
        if self._closed:
            return
        if not result.ok:
            log.info("%s: user %r refused", self.label, request.username)
        self.link.verdict(result, self.loop.time(), request=request)
        self._drive()

    # -- teardown ------------------------------------------------------------------------------

    def _finish(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._timer.cancel()
        if self._verify is not None:
            self._verify.cancel()
        if self._config_task is not None:
            self._config_task.cancel()
        name = self.ifname
        self._drop_device()
        if self.channel.on_frame == self._on_frame:
            self.channel.on_frame = None
        log.info("%s: PPP finished: %s", self.label, reason)
        self.publish("ppp_down", {"session": self.label, "ifname": name, "reason": reason})
        if self.on_finished is not None:
            self.on_finished(self, reason)

    def shutdown(self) -> None:
        """Release everything at once (daemon exit, session already gone)."""
        with contextlib.suppress(Exception):
            self.lower_down()
        self._finish("shutdown")


__all__ = ["PppEndpoint"]
