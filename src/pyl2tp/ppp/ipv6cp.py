"""IPV6CP option negotiation (RFC 5072) as a :class:`NegotiationPolicy`.

IPV6CP negotiates one thing: the 64-bit Interface-Identifier of each end, from which the
link-local addresses fe80::/64 + identifier are formed (§5). The rules of §4.1 for the
peer's identifier, compared with the one in our last Configure-Request:

* different and non-zero: Ack;
* zero (and ours is not): Nak with a non-zero suggestion different from ours;
* equal and non-zero: Nak with a different value;
* both zero: Reject (no unique identifier can be negotiated).

Choices where the RFC leaves room:

* Our tentative identifier is ``config.local_ifid``, or random with the "u" bit clear
  (§4.1 method 3). ``local_ifid=0`` is allowed and means "we have no source of uniqueness,
  please suggest one" (§4.1); the both-zero case can only arise then.
* With ``config.peer_ifid`` (an LNS dictating the client's identifier, like l2tpns and
  accel-ppp's ``ipv6-peer-intf-id``) we Ack exactly that value and Nak anything else with
  it; if the peer's request lacks the option we append it to our Nak as a hint. §4.1 says
  the hint is to be sent once; here it is repeated until Max-Failure, the automaton's bound
  for every hint, which ends the same way a few Naks later.
* The suggestion for the peer is chosen ahead of time (random, "u" bit clear, different
  from ours) and kept until a Nak of our identifier arrives, which keeps judging free of side
  effects and makes it the value "sent in the last Configure-Nak": a Nak from the peer with
  exactly that value is our own Nak come back (a looped link), so we choose a new tentative
  identifier; any other non-zero suggestion is adopted, as §4.1 requires. After
  :data:`MAX_LOOPBACKS` looped Naks in a row ``failure`` is set.
* A Reject of our identifier means the peer does not implement the option: we keep our
  tentative one if it is non-zero and set ``failure`` if it is zero (no identifier at all).
  ``peer_ifid`` stays 0 ("unknown") when the peer never sent the option.
* Other options (2 IPv6-Compression-Protocol and anything unknown) are Rejected, as is a
  second Interface-Identifier (§4.1: exactly one instance).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address

from .fsm import ACK, REJECT, OptionVerdict, RenegotiatingPolicy, nak
from .packet import PROTO_IPV6CP, Option

__all__ = ["INTERFACE_IDENTIFIER", "MAX_LOOPBACKS", "Ipv6cpConfig", "Ipv6cpPolicy"]

INTERFACE_IDENTIFIER = 1
"""The only IPV6CP option we implement (RFC 5072 §4.1)."""
MAX_LOOPBACKS = 5
"""Consecutive looped Naks of our identifier before ``failure`` is set."""

_IFID_MAX = (1 << 64) - 1
_U_BIT = 1 << 57  # bit 6 counted from the most significant bit (RFC 5072 §4.1)
_LINK_LOCAL = int(IPv6Address("fe80::"))


def _ifid_option(value: int) -> Option:
    return Option(INTERFACE_IDENTIFIER, value.to_bytes(8, "big"))


@dataclass(frozen=True, slots=True)
class Ipv6cpConfig:
    """What this end wants from IPV6CP."""

    local_ifid: int | None = None
    """Our identifier; None = random non-zero; 0 = ask the peer to suggest one."""
    peer_ifid: int | None = None
    """The identifier the peer must use (an LNS may dictate it); None = accept the peer's
    own unless it is zero or equal to ours."""

    def __post_init__(self) -> None:
        for name, value in (("local_ifid", self.local_ifid), ("peer_ifid", self.peer_ifid)):
            if value is not None and not 0 <= value <= _IFID_MAX:
                raise ValueError(f"{name} {value:#x} does not fit 64 bits")
        if self.peer_ifid is not None:
            if self.peer_ifid == 0:
                raise ValueError("peer_ifid must be non-zero (use None to accept the peer's)")
            if self.peer_ifid == self.local_ifid:
                raise ValueError("local_ifid and peer_ifid must differ")


class Ipv6cpPolicy(RenegotiatingPolicy):
    """IPV6CP's negotiation decisions and results for one link (see the module docstring)."""

    protocol = PROTO_IPV6CP
    single_instance = frozenset((INTERFACE_IDENTIFIER,))

    def __init__(
        self,
        config: Ipv6cpConfig,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        max_loopbacks: int = MAX_LOOPBACKS,
    ) -> None:
        self.config = config
        self._rng = rng
        self.max_loopbacks = max_loopbacks
        self.loopbacks = 0
        """Looped Naks seen (our own Nak suggestion came back to us)."""
        avoid = (config.peer_ifid,) if config.peer_ifid is not None else ()
        # The tentative identifier survives renegotiation (§4.1 prefers stable identifiers).
        self._tentative = (
            config.local_ifid if config.local_ifid is not None else self._random_ifid(avoid)
        )
        self._suggestion = self._random_ifid((self._tentative, *avoid))
        self._fresh = False
        self._start_negotiation()

    def _start_negotiation(self) -> None:
        self._send_ifid = True
        self._consecutive_loops = 0
        self.local_ifid = 0
        """Our identifier as Acked (or kept after a Reject); 0 until then."""
        self.peer_ifid = 0
        """The peer's identifier as we Acked it; 0 when unknown."""
        self.failure: str | None = None
        """Why no usable identifier can be negotiated; the link closes IPV6CP."""

    @staticmethod
    def link_local(ifid: int) -> IPv6Address:
        """The link-local address fe80::/64 + ``ifid`` (RFC 5072 §5)."""
        if not 0 <= ifid <= _IFID_MAX:
            raise ValueError(f"interface identifier {ifid:#x} does not fit 64 bits")
        return IPv6Address(_LINK_LOCAL | ifid)

    # -- our request ----------------------------------------------------------------------------

    def request_options(self) -> Sequence[Option]:
        self._begin()
        return [_ifid_option(self._tentative)] if self._send_ifid else []

    def apply_nak(self, options: Sequence[Option]) -> None:
        for option in options:
            if option.type != INTERFACE_IDENTIFIER or not self._send_ifid:
                continue
            value = option.as_int() if len(option.data) == 8 else 0
            if value == self._suggestion:
                # Our own Nak came back: a looped link (§4.1). Choose anew.
                self.loopbacks += 1
                self._consecutive_loops += 1
                if self._consecutive_loops >= self.max_loopbacks and self.failure is None:
                    self.failure = "loopback detected"
                self._tentative = self._random_ifid(self._avoid(self._suggestion))
            elif value not in (0, self.config.peer_ifid):
                self._consecutive_loops = 0
                self._tentative = value
            else:
                # A zero or malformed suggestion, or the identifier we dictate for the peer,
                # is no usable suggestion: pick our own.
                self._tentative = self._random_ifid(self._avoid(self._suggestion))
            if self._suggestion == self._tentative:
                self._suggestion = self._random_ifid(self._avoid())

    def apply_reject(self, options: Sequence[Option]) -> None:
        if any(o.type == INTERFACE_IDENTIFIER for o in options):
            self._send_ifid = False
            if self._tentative == 0 and self.failure is None:
                self.failure = "peer rejected interface identifier negotiation"

    def request_acked(self, options: Sequence[Option]) -> None:
        value = self._tentative
        for option in options:
            if option.type == INTERFACE_IDENTIFIER:
                value = option.as_int()
        self.local_ifid = value
        self._consecutive_loops = 0
        if value == 0 and self.failure is None:
            self.failure = "no interface identifier could be negotiated"

    # -- the peer's request ---------------------------------------------------------------------

    def judge_option(self, option: Option) -> OptionVerdict:
        if option.type != INTERFACE_IDENTIFIER:
            return REJECT
        ours = self._tentative if self._send_ifid else None
        dictated = self.config.peer_ifid
        if len(option.data) != 8:
            # Wrong length: Nak with the right form when we have something to propose.
            if dictated is not None:
                return nak(_ifid_option(dictated))
            return nak(_ifid_option(self._suggestion)) if ours != 0 else REJECT
        value = option.as_int()
        if dictated is not None:
            return ACK if value == dictated else nak(_ifid_option(dictated))
        if value == 0 and ours == 0:
            return REJECT  # both zero: cannot be negotiated (§4.1)
        if value == 0 or value == ours:
            return nak(_ifid_option(self._suggestion))
        return ACK

    def desired_options(self, requested: Sequence[Option]) -> Sequence[Option]:
        dictated = self.config.peer_ifid
        if dictated is None or any(o.type == INTERFACE_IDENTIFIER for o in requested):
            return ()
        return (_ifid_option(dictated),)

    def peer_request_acked(self, options: Sequence[Option]) -> None:
        value = 0
        for option in options:
            if option.type == INTERFACE_IDENTIFIER:
                value = option.as_int()
        self.peer_ifid = value

    # -- helpers --------------------------------------------------------------------------------

    def _avoid(self, *extra: int) -> tuple[int, ...]:
        """Values a fresh identifier must differ from: our tentative one, the one we dictate
        for the peer, and ``extra``."""
        dictated = self.config.peer_ifid
        return (self._tentative, *((dictated,) if dictated is not None else ()), *extra)

    def _random_ifid(self, avoid: Sequence[int]) -> int:
        """A random non-zero identifier with the "u" bit clear, not in ``avoid``."""
        for _ in range(16):
            value = int.from_bytes(self._rng(8)[:8], "big") & ~_U_BIT
            if value and value not in avoid:
                return value
        value = 1
        while value in avoid:
            value += 1
        return value
