"""IPCP option negotiation (RFC 1332, RFC 1877 DNS) as a :class:`NegotiationPolicy`.

One policy serves both ends of an L2TP link: an LNS (``local_address`` = its own address,
``peer_address`` = the one it assigns from its pool, ``dns`` = the servers it hands out) and a
client (no addresses, ``request_dns=True``), and any mix of the two.

Behaviour, with the reasons where the RFCs leave a choice:

* **Our request** always carries IP-Address: our configured address, or 0.0.0.0 ("please
  assign", §3.3) until a Nak tells us one. l2tpns does not answer a request without it, so
  it is only left out after the peer Rejected it. With ``request_dns`` the request also
  carries 129/131 (0.0.0.0 until Nak'd); a Reject drops them (accel-ppp Rejects DNS when it
  has none).
* **Naks of our IP-Address** are adopted only when we have no configured address: a
  configured address is a fact about this host, not something the peer may change (pppd's
  default without ``ipcp-accept-local``). A Nak we cannot use (a configured address, or a
  suggestion of 0.0.0.0) counts towards :data:`MAX_UNUSABLE_NAKS`, after which ``failure``
  is set, so a peer that never turns its Naks into Rejects cannot keep us looping.
* **A Reject of our IP-Address** is fatal when we have no address (``failure`` = "peer will
  not assign us an IP address"); with an address we stop requesting it and keep using it.
  Likewise an Ack that leaves us without an address sets ``failure``.
* **The peer's IP-Address.** With ``peer_address`` configured (server) we Ack exactly that
  address and Nak anything else, 0.0.0.0 included, with it. If the peer's request lacks
  the option we append it to our Nak as a hint (§3.3, RFC 1661 §5.3) until Max-Failure.
  Without ``peer_address`` we Ack any non-zero address except our own (two ends with one
  address cannot route), and Reject 0.0.0.0 or our own address, since we have nothing to
  suggest (pppd Rejects 0.0.0.0 in the same situation).
* **DNS 129/131 from the peer** are Nak'd with our configured servers, Acked when equal,
  and Rejected when we have none for that slot (131 with a single server configured).
* IP-Addresses (1, deprecated), IP-Compression-Protocol (2, no VJ here), the NBNS options
  130/132 and anything unknown are Rejected, as is a second instance of any option we
  judge. A known option with a bad length is Nak'd with the right form when we have a value
  to propose, else Rejected.
* Results (``local_address``, ``peer_address``, ``dns``) and per-negotiation state reset
  with the first Configure-Request after This-Layer-Down/Finished/Started.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from .fsm import ACK, REJECT, OptionVerdict, RenegotiatingPolicy, nak
from .packet import PROTO_IPCP, Option

__all__ = ["MAX_UNUSABLE_NAKS", "IpcpConfig", "IpcpOption", "IpcpPolicy"]

MAX_UNUSABLE_NAKS = 5
"""Naks of our IP-Address we could not adopt, in one negotiation, before giving up (the same
as RFC 1661's Max-Failure default)."""

_ZERO = IPv4Address(0)


class IpcpOption:
    """IPCP Configuration Option types (RFC 1332 §3, RFC 1877 §1)."""

    IP_ADDRESSES = 1
    IP_COMPRESSION = 2
    IP_ADDRESS = 3
    PRIMARY_DNS = 129
    PRIMARY_NBNS = 130
    SECONDARY_DNS = 131
    SECONDARY_NBNS = 132


_DNS_TYPES = (IpcpOption.PRIMARY_DNS, IpcpOption.SECONDARY_DNS)


def _address(option: Option) -> IPv4Address | None:
    """The address an address-valued option carries, or None when its length is wrong."""
    return IPv4Address(option.data) if len(option.data) == 4 else None


def _addr_option(kind: int, address: IPv4Address) -> Option:
    return Option(kind, address.packed)


@dataclass(frozen=True, slots=True)
class IpcpConfig:
    """What this end wants from IPCP (see the module docstring for the rules)."""

    local_address: IPv4Address | None = None
    """Our address; None = ask the peer to assign one (request 0.0.0.0, adopt its Nak)."""
    peer_address: IPv4Address | None = None
    """The address the peer must use (an LNS: assigned from its pool); None = accept any
    non-zero address the peer asks for."""
    dns: tuple[IPv4Address, ...] = ()
    """Up to two DNS servers handed out when asked (129 primary, 131 secondary)."""
    request_dns: bool = False
    """Ask the peer for DNS servers (129/131); dropped if it Rejects them."""

    def __post_init__(self) -> None:
        if len(self.dns) > 2:
            raise ValueError("at most two DNS servers (primary and secondary)")
        for address in (self.local_address, self.peer_address, *self.dns):
            if address is not None and not isinstance(address, IPv4Address):
                raise ValueError(f"{address!r} is not an IPv4Address")
            if address == _ZERO:
                raise ValueError("0.0.0.0 is not an address; use None for 'not configured'")
        if self.peer_address is not None and self.peer_address == self.local_address:
            raise ValueError(f"local and peer address are both {self.peer_address}")


class IpcpPolicy(RenegotiatingPolicy):
    """IPCP's negotiation decisions and results for one link (see the module docstring)."""

    protocol = PROTO_IPCP
    single_instance = frozenset(
        (IpcpOption.IP_ADDRESS, IpcpOption.PRIMARY_DNS, IpcpOption.SECONDARY_DNS)
    )
    """Every other type is Rejected anyway, repeated or not."""

    def __init__(self, config: IpcpConfig) -> None:
        self.config = config
        self._fresh = False
        self._start_negotiation()

    def _start_negotiation(self) -> None:
        config = self.config
        self._addr = config.local_address or _ZERO
        self._send_addr = True
        self._dns_req: dict[int, IPv4Address] = (
            dict.fromkeys(_DNS_TYPES, _ZERO) if config.request_dns else {}
        )
        self._unusable_naks = 0

        self.local_address: IPv4Address | None = None
        """Our address as Acked by the peer (or kept after it Rejected the option)."""
        self.peer_address: IPv4Address | None = None
        """The peer's address: what we Acked in its request, else the one we assigned."""
        self.dns: tuple[IPv4Address, ...] = ()
        """DNS servers the peer gave us (Acked 129/131 values), primary first."""
        self.failure: str | None = None
        """Why IPCP cannot give this end a usable configuration; the link closes IPCP."""

    # -- our request ----------------------------------------------------------------------------

    def request_options(self) -> Sequence[Option]:
        self._begin()
        options: list[Option] = []
        if self._send_addr:
            options.append(_addr_option(IpcpOption.IP_ADDRESS, self._addr))
        options.extend(_addr_option(kind, value) for kind, value in self._dns_req.items())
        return options

    def apply_nak(self, options: Sequence[Option]) -> None:
        for option in options:
            value = _address(option)
            if value is None:
                continue
            if option.type == IpcpOption.IP_ADDRESS and self._send_addr:
                if self.config.local_address is None and value != _ZERO:
                    self._addr = value
                else:
                    self._unusable_nak()
            elif option.type in self._dns_req:
                self._dns_req[option.type] = value

    def _unusable_nak(self) -> None:
        self._unusable_naks += 1
        if self._unusable_naks >= MAX_UNUSABLE_NAKS and self.failure is None:
            if self.config.local_address is None:
                self.failure = "peer will not assign us an IP address"
            else:
                self.failure = f"peer refuses our IP address {self.config.local_address}"

    def apply_reject(self, options: Sequence[Option]) -> None:
        for option in options:
            if option.type == IpcpOption.IP_ADDRESS:
                self._send_addr = False
                if self._addr == _ZERO and self.failure is None:
                    self.failure = "peer will not assign us an IP address"
            else:
                self._dns_req.pop(option.type, None)

    def request_acked(self, options: Sequence[Option]) -> None:
        local = self._addr if self._addr != _ZERO else None
        dns: dict[int, IPv4Address] = {}
        for option in options:
            value = _address(option)
            if option.type == IpcpOption.IP_ADDRESS:
                local = value if value != _ZERO else None
            elif option.type in _DNS_TYPES and value is not None and value != _ZERO:
                dns[option.type] = value
        self.local_address = local
        self.dns = tuple(dns[kind] for kind in _DNS_TYPES if kind in dns)
        if local is None and self.failure is None:
            self.failure = "could not determine our IP address"

    # -- the peer's request ---------------------------------------------------------------------

    def judge_option(self, option: Option) -> OptionVerdict:
        if option.type == IpcpOption.IP_ADDRESS:
            return self._judge_address(_address(option))
        if option.type in _DNS_TYPES:
            index = _DNS_TYPES.index(option.type)
            if index >= len(self.config.dns):
                return REJECT
            ours = self.config.dns[index]
            return ACK if _address(option) == ours else nak(_addr_option(option.type, ours))
        return REJECT

    def _judge_address(self, value: IPv4Address | None) -> OptionVerdict:
        assigned = self.config.peer_address
        if assigned is not None:
            if value == assigned:
                return ACK
            return nak(_addr_option(IpcpOption.IP_ADDRESS, assigned))
        if value is None or value == _ZERO or value == self._addr:
            return REJECT  # nothing to suggest
        return ACK

    def desired_options(self, requested: Sequence[Option]) -> Sequence[Option]:
        assigned = self.config.peer_address
        if assigned is None or any(o.type == IpcpOption.IP_ADDRESS for o in requested):
            return ()
        return (_addr_option(IpcpOption.IP_ADDRESS, assigned),)

    def peer_request_acked(self, options: Sequence[Option]) -> None:
        peer = self.config.peer_address
        for option in options:
            if option.type == IpcpOption.IP_ADDRESS:
                value = _address(option)
                if value is not None and value != _ZERO:
                    peer = value
        self.peer_address = peer
