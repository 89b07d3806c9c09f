"""Addresses and routes on the PPP endpoint's TUN interfaces, through rtnetlink.

pppd does this with ioctls (SIOCSIFADDR, SIOCSIFDSTADDR) and the routing socket; rtnetlink
is the modern interface and pyroute2 speaks it without a subprocess per call. pyroute2's
synchronous API runs an event loop of its own, which cannot nest in the daemon's, so these are
coroutines on its asyncio API; each is a local kernel round trip of a millisecond or two.
"""

from __future__ import annotations

import contextlib
import logging
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("pyl2tp.ppp")

__all__ = ["InterfaceConfigError", "add_default_route", "add_ipv4_ptp", "add_ipv6_link_local",
           "bring_up", "remove_ipv4", "remove_ipv6"]


class InterfaceConfigError(Exception):
    """The kernel refused an address or route; the message says which and why."""


async def _index(ipr: AsyncIPRoute, ifname: str) -> int:
    found = await ipr.link_lookup(ifname=ifname)
    if not found:
        raise InterfaceConfigError(f"interface {ifname} does not exist")
    return int(found[0])


async def bring_up(ifname: str, mtu: int, *, ipv6: bool) -> None:
    """Set the MTU and bring the interface up. With IPv6, switch off the kernel's own
    link-local address first: the one IPV6CP negotiated is the link's address (RFC 5072 §5),
    and a second, random one would be used as a source the peer never agreed to."""
    if ipv6:
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{ifname}/addr_gen_mode").write_text("1")
    try:
        async with AsyncIPRoute() as ipr:
            await ipr.link("set", index=await _index(ipr, ifname), mtu=mtu, state="up")
    except NetlinkError as exc:
        raise InterfaceConfigError(f"cannot bring {ifname} up: {exc}") from None


async def add_ipv4_ptp(ifname: str, local: IPv4Address, peer: IPv4Address | None) -> None:
    """``ip addr add LOCAL peer PEER/32 dev IF``: the kernel then routes PEER over the link,
    which is the peer route every PPP interface has."""
    try:
        async with AsyncIPRoute() as ipr:
            idx = await _index(ipr, ifname)
            if peer is None:
                await ipr.addr("add", index=idx, address=str(local), prefixlen=32)
            else:
                await ipr.addr("add", index=idx, local=str(local), address=str(peer), prefixlen=32)
    except NetlinkError as exc:
        raise InterfaceConfigError(
            f"cannot add {local} peer {peer} to {ifname}: {exc}") from None


async def remove_ipv4(ifname: str) -> None:
    with contextlib.suppress(NetlinkError, InterfaceConfigError, OSError):
        async with AsyncIPRoute() as ipr:
            idx = await _index(ipr, ifname)
            found = [a async for a in await ipr.get_addr(index=idx, family=2)]
            for addr in found:
                await ipr.addr("del", index=idx, address=addr.get_attr("IFA_ADDRESS"),
                               local=addr.get_attr("IFA_LOCAL"), prefixlen=addr["prefixlen"])


async def add_ipv6_link_local(ifname: str, local: IPv6Address) -> None:
    """The negotiated link-local address, on-link /64 so the peer's is reachable."""
    try:
        async with AsyncIPRoute() as ipr:
            await ipr.addr("add", index=await _index(ipr, ifname), address=str(local), prefixlen=64)
    except NetlinkError as exc:
        raise InterfaceConfigError(f"cannot add {local} to {ifname}: {exc}") from None


async def remove_ipv6(ifname: str, local: IPv6Address) -> None:
    with contextlib.suppress(NetlinkError, InterfaceConfigError, OSError):
        async with AsyncIPRoute() as ipr:
            await ipr.addr("del", index=await _index(ipr, ifname), address=str(local),
                           prefixlen=64)


async def add_default_route(ifname: str) -> None:
    """A client's ``defaultroute``: everything without a better route goes over the link.
    An existing default route is left alone (as pppd does) and the conflict logged."""
    try:
        async with AsyncIPRoute() as ipr:
            await ipr.route("add", dst="0.0.0.0/0", oif=await _index(ipr, ifname))
    except NetlinkError as exc:
        log.warning("%s: default route not added: %s", ifname, exc)
