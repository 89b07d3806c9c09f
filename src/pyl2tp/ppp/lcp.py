"""LCP option negotiation (RFC 1661 §6, RFC 1570 codes 12/13) as a :class:`NegotiationPolicy`.

The automaton in :mod:`.fsm` does the packet exchange; this module decides *what* LCP asks
for and what it accepts, and records the outcome for the link (MRUs, authentication in each
direction, magic numbers, compression flags).

Choices beyond the letter of the RFC, all aimed at an L2TP link (no async framing, the LAC
already stripped HDLC) and at the LNSes described in the project's PPP notes:

* **MRU.** We request ``config.mru`` and leave the option out when it is the default 1500.
  The peer's MRU is Acked when it is at least ``config.min_mru`` and Nak'd with ``min_mru``
  otherwise (like l2tpns, which Naks below 576): a peer must still be able to receive 1500
  octets whatever it asked for (§6.1), so asking it to take ``min_mru`` is always safe. An
  MRU option of the wrong length is Nak'd with the right form and the default 1500. When
  the peer Naks *our* MRU we adopt its value if it is at least :data:`MIN_MRU` (64: RFC 1661
  sets no floor, this one only keeps out values no real link uses), larger than what we
  asked included (UDP carries it), and otherwise drop the option and fall back to the
  default, which the peer cannot refuse: a loop of Naks on MRU ends after one round.
* **ACCM** is meaningless without async HDLC framing (RFC 1662 §7.1; the LAC does the
  escaping): any well-formed value is Acked, since we never escape anything anyway. Rejecting
  it (accel-ppp) or Nak'ing it to 0 (l2tpns) costs a round trip for no effect. A malformed
  ACCM is Nak'd with the right form and value 0.
* **Authentication-Protocol** in the peer's request means the peer demands that *we*
  authenticate. We Ack a method in ``config.peer_auth``, Nak anything else with our most
  preferred one, and Reject the option when ``peer_auth`` is empty (we have no credentials;
  an LNS such as l2tpns then drops the session, which is the honest outcome). In our own
  request we demand the first method of ``config.auth`` the peer has not refused. A Nak
  naming another method of ours switches to it; a Nak naming anything else, or a Reject,
  refuses the current method and moves to the next (accel-ppp does the same). When every
  method has been refused :attr:`LcpPolicy.failure` is set; **the link must close LCP when**
  ``failure`` **is set**. The last method stays in our request even though the peer refused
  it (RFC 1661 §5.4 says a Rejected option must not be sent again): that request, sent by the
  same transition that saw the refusal, must never be one without Auth-Protocol that the
  peer could Ack, opening the link unauthenticated should the link miss ``failure``.
* **Magic-Number** (§6.4) follows the loopback procedure with one refinement that keeps
  judging free of side effects: the value we would propose in a Nak is chosen ahead of time
  and kept until a Nak of our own magic arrives. Receiving a Nak that carries exactly that
  value means our own Nak came back, i.e. the link is looped (one *loopback*); any other Nak
  proves it is not. Either way we pick a fresh random magic: §6.4 requires a new one in the
  looped case, and for the other a fresh one is as good as the peer's suggestion. After
  :data:`MAX_LOOPBACKS` loopbacks in a row ``failure`` is set to "loopback detected". A
  Reject of our magic is treated as an Ack without magic (§6.4): our magic stays 0. An Echo
  carrying our own non-zero magic is also a loopback, and such an Echo-Reply is not passed
  to :attr:`LcpPolicy.on_echo_reply`, so a looped link does not look alive to keepalives.
* **PFC and ACFC** from the peer are Acked (we can receive compressed frames); we never
  request them, as the PPP notes recommend for L2TP. With data they are malformed booleans
  and Rejected (§5.3: boolean options are Rejected, not Nak'd).
* Quality-Protocol, Callback, the Multilink options (MRRU, Short-Sequence-Number, Endpoint
  Discriminator), Vendor-Specific and every unknown type are Rejected. A second instance of
  a single-instance option is Rejected on its own, so the first instance is still judged.
* RFC 1570 Identification (12) and Time-Remaining (13) are accepted and counted instead of
  being Code-Rejected.
* Negotiation results and per-negotiation state (refused methods, Nak'd values, ``failure``)
  reset when a new negotiation starts, i.e. with the first Configure-Request after
  This-Layer-Down/Finished/Started, as pppd's ``resetci`` does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .fsm import ACK, REJECT, OptionVerdict, RenegotiatingPolicy, nak
from .packet import PROTO_LCP, Code, ControlPacket, Option
from .protocols import AuthMethod

__all__ = [
    "DEFAULT_MRU",
    "MAX_LOOPBACKS",
    "MIN_MRU",
    "LcpConfig",
    "LcpOption",
    "LcpPolicy",
]

DEFAULT_MRU = 1500
"""RFC 1661 §6.1: the MRU when the option is not negotiated."""
MIN_MRU = 64
"""The smallest MRU we accept being told to use in a Nak, and the floor for configuration."""
MAX_LOOPBACKS = 5
"""Consecutive loopback indications (looped Naks of our magic, Echoes with our own magic)
after which :attr:`LcpPolicy.failure` is set."""


class LcpOption:
    """LCP Configuration Option types (RFC 1661 §6, RFC 1570, RFC 1990)."""

    VENDOR_SPECIFIC = 0
    MRU = 1
    ACCM = 2
    AUTH_PROTOCOL = 3
    QUALITY_PROTOCOL = 4
    MAGIC_NUMBER = 5
    PFC = 7
    ACFC = 8
    CALLBACK = 13
    MRRU = 17
    SHORT_SEQUENCE = 18
    ENDPOINT_DISCRIMINATOR = 19


_SINGLE_INSTANCE = frozenset(
    (
        LcpOption.MRU,
        LcpOption.ACCM,
        LcpOption.AUTH_PROTOCOL,
        LcpOption.QUALITY_PROTOCOL,
        LcpOption.MAGIC_NUMBER,
        LcpOption.PFC,
        LcpOption.ACFC,
    )
)


@dataclass(frozen=True, slots=True)
class LcpConfig:
    """What this end of the link wants from LCP.

    ``auth`` lists the methods we demand of the peer (we are the authenticator), in
    preference order; ``peer_auth`` the methods we are able to perform when the peer demands
    one (we have credentials). Either may be empty.
    """

    mru: int = DEFAULT_MRU
    """The MRU we request; the option is omitted when it is 1500 (the default)."""
    auth: tuple[AuthMethod, ...] = ()
    peer_auth: tuple[AuthMethod, ...] = ()
    min_mru: int = 576
    """The smallest MRU we let the peer ask for; anything lower is Nak'd with this value."""
    magic: bool = True
    """Request a Magic-Number (needed for loopback detection)."""

    def __post_init__(self) -> None:
        if not MIN_MRU <= self.mru <= 0xFFFF:
            raise ValueError(f"mru {self.mru} is outside {MIN_MRU}..65535")
        if not MIN_MRU <= self.min_mru <= DEFAULT_MRU:
            raise ValueError(f"min_mru {self.min_mru} is outside {MIN_MRU}..{DEFAULT_MRU}")
        for methods in (self.auth, self.peer_auth):
            if not all(isinstance(m, AuthMethod) for m in methods):
                raise ValueError("authentication methods must be AuthMethod values")


def _method_names(methods: Sequence[AuthMethod]) -> str:
    return ", ".join(m.value for m in methods)


class LcpPolicy(RenegotiatingPolicy):
    """LCP's negotiation decisions and results for one link (see the module docstring)."""

    protocol = PROTO_LCP
    extension_codes = frozenset((Code.IDENTIFICATION, Code.TIME_REMAINING))
    single_instance = _SINGLE_INSTANCE

    def __init__(
        self,
        config: LcpConfig,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        max_loopbacks: int = MAX_LOOPBACKS,
    ) -> None:
        self.config = config
        self._rng = rng
        self.max_loopbacks = max_loopbacks
        self.on_echo_reply: Callable[[int], None] | None = None
        """Called with the identifier of each Echo-Reply received in Opened that does not
        carry our own magic (keepalive liveness)."""

        # Statistics that span negotiations.
        self.loopbacks = 0
        """Loopback indications seen: looped Naks of our magic and Echoes with our magic."""
        self.extensions_received: dict[int, int] = {}
        """RFC 1570 packets received, by code (12 Identification, 13 Time-Remaining)."""
        self.last_identification: bytes | None = None
        """The message of the last Identification packet (RFC 1570 §1.1)."""
        self.time_remaining: int | None = None
        """Seconds-Remaining of the last Time-Remaining packet (RFC 1570 §1.2)."""
        self.last_echo_reply_id: int | None = None
        self.last_echo_reply_magic: int | None = None

        # Our tentative magic survives renegotiation; the Nak proposal is kept ready so that
        # judging stays free of side effects (see the module docstring).
        self._magic = self._random_magic(())
        self._nak_magic = self._random_magic((self._magic,))
        self._fresh = False
        self._start_negotiation()

    # -- per-negotiation state ----------------------------------------------------------------

    def _start_negotiation(self) -> None:
        """Forget the previous negotiation: results, refusals, adopted values, failure."""
        config = self.config
        self._req_mru: int | None = None if config.mru == DEFAULT_MRU else config.mru
        self._refused: set[AuthMethod] = set()
        self._auth: AuthMethod | None = config.auth[0] if config.auth else None
        self._send_magic = config.magic
        self._consecutive_loops = 0

        self.our_mru = DEFAULT_MRU
        """The MRU the peer must respect when sending to us (as Acked)."""
        self.peer_mru = DEFAULT_MRU
        """The largest frame we may send: the peer's MRU, 1500 if it did not say."""
        self.auth_of_peer: AuthMethod | None = None
        """The method the peer Acked in our request: we authenticate the peer with it."""
        self.auth_by_peer: AuthMethod | None = None
        """The method we Acked in the peer's request: we authenticate ourselves with it."""
        self.our_magic = 0
        """Our negotiated magic (0 when not negotiated)."""
        self.peer_magic = 0
        """The peer's negotiated magic (0 when not negotiated)."""
        self.pfc = False
        """We Acked the peer's PFC: it may send compressed protocol fields."""
        self.acfc = False
        """We Acked the peer's ACFC: it may omit FF 03 (never on LCP)."""
        self.failure: str | None = None
        """Why negotiation cannot succeed; the link closes LCP with this text when set."""
        self.rejected_protocols: set[int] = set()
        """Protocols the peer Protocol-Rejected while LCP was Opened."""

    # -- our request ----------------------------------------------------------------------------

    def request_options(self) -> Sequence[Option]:
        self._begin()
        options: list[Option] = []
        if self._req_mru is not None:
            options.append(Option.u16(LcpOption.MRU, self._req_mru))
        if self._auth is not None:
            options.append(Option(LcpOption.AUTH_PROTOCOL, self._auth.option_data))
        if self._send_magic:
            options.append(Option.u32(LcpOption.MAGIC_NUMBER, self._magic))
        return options

    def apply_nak(self, options: Sequence[Option]) -> None:
        for option in options:
            if option.type == LcpOption.MRU:
                self._nak_mru(option)
            elif option.type == LcpOption.AUTH_PROTOCOL:
                if self._auth is not None:
                    self._refuse_auth(AuthMethod.from_option_data(option.data))
            elif option.type == LcpOption.MAGIC_NUMBER and self._send_magic:
                self._nak_magic_number(option)
            # Anything else is a hint for an option we do not request (§5.3): ignored.

    def _nak_mru(self, option: Option) -> None:
        if len(option.data) == 2 and option.as_int() >= MIN_MRU:
            self._req_mru = option.as_int()
        else:
            # Unusable suggestion: fall back to the default the peer must accept (§6.1).
            self._req_mru = None

    def _refuse_auth(self, suggested: AuthMethod | None) -> None:
        """The peer refused the method we demand, suggesting ``suggested`` (None for a
        Reject or a method we do not implement). Switch to the suggestion if it is ours and
        not yet refused, else to our next method; fail when none is left."""
        if self._auth is not None:
            self._refused.add(self._auth)
        remaining = [m for m in self.config.auth if m not in self._refused]
        if suggested in remaining:
            self._auth = suggested
        elif remaining:
            self._auth = remaining[0]
        elif self.failure is None:
            # Keep demanding the last method: a request without Auth-Protocol could be Acked
            # and open the link unauthenticated if the link missed ``failure``.
            self.failure = f"peer refused all of: {_method_names(self.config.auth)}"

    def _nak_magic_number(self, option: Option) -> None:
        looped = len(option.data) == 4 and option.as_int() == self._nak_magic
        if looped:
            self._loop_indication()
        else:
            # Proof that the link is not looped (§6.4).
            self._consecutive_loops = 0
        self._magic = self._random_magic((self._magic, self._nak_magic, option.as_int()))
        self._nak_magic = self._random_magic((self._magic,))

    def _loop_indication(self) -> None:
        self.loopbacks += 1
        self._consecutive_loops += 1
        if self._consecutive_loops >= self.max_loopbacks and self.failure is None:
            self.failure = "loopback detected"

    def apply_reject(self, options: Sequence[Option]) -> None:
        for option in options:
            if option.type == LcpOption.MRU:
                self._req_mru = None
            elif option.type == LcpOption.AUTH_PROTOCOL:
                self._refuse_auth(None)
            elif option.type == LcpOption.MAGIC_NUMBER:
                # The peer will not use magic numbers: proceed as if Acked, with magic 0.
                self._send_magic = False

    def request_acked(self, options: Sequence[Option]) -> None:
        self.our_mru = DEFAULT_MRU
        self.auth_of_peer = None
        self.our_magic = 0
        for option in options:
            if option.type == LcpOption.MRU:
                self.our_mru = option.as_int()
            elif option.type == LcpOption.AUTH_PROTOCOL:
                self.auth_of_peer = AuthMethod.from_option_data(option.data)
            elif option.type == LcpOption.MAGIC_NUMBER:
                self.our_magic = option.as_int()
        self._consecutive_loops = 0

    # -- the peer's request ---------------------------------------------------------------------

    def judge_option(self, option: Option) -> OptionVerdict:
        kind = option.type
        if kind == LcpOption.MRU:
            if len(option.data) != 2:
                return nak(Option.u16(LcpOption.MRU, DEFAULT_MRU))  # the right form (§6)
            if option.as_int() >= self.config.min_mru:
                return ACK
            return nak(Option.u16(LcpOption.MRU, self.config.min_mru))
        if kind == LcpOption.ACCM:
            return ACK if len(option.data) == 4 else nak(Option.u32(LcpOption.ACCM, 0))
        if kind == LcpOption.AUTH_PROTOCOL:
            return self._judge_auth(option)
        if kind == LcpOption.MAGIC_NUMBER:
            return self._judge_magic(option)
        if kind in (LcpOption.PFC, LcpOption.ACFC):
            return ACK if not option.data else REJECT
        return REJECT

    def _judge_auth(self, option: Option) -> OptionVerdict:
        if not self.config.peer_auth:
            return REJECT
        if AuthMethod.from_option_data(option.data) in self.config.peer_auth:
            return ACK
        return nak(Option(LcpOption.AUTH_PROTOCOL, self.config.peer_auth[0].option_data))

    def _judge_magic(self, option: Option) -> OptionVerdict:
        suggestion = nak(Option.u32(LcpOption.MAGIC_NUMBER, self._nak_magic))
        if len(option.data) != 4:
            return suggestion
        value = option.as_int()
        if value == 0 or (self._send_magic and value == self._magic):
            return suggestion
        return ACK

    def peer_request_acked(self, options: Sequence[Option]) -> None:
        self.peer_mru = DEFAULT_MRU
        self.auth_by_peer = None
        self.peer_magic = 0
        self.pfc = self.acfc = False
        for option in options:
            if option.type == LcpOption.MRU:
                self.peer_mru = option.as_int()
            elif option.type == LcpOption.AUTH_PROTOCOL:
                self.auth_by_peer = AuthMethod.from_option_data(option.data)
            elif option.type == LcpOption.MAGIC_NUMBER:
                self.peer_magic = option.as_int()
            elif option.type == LcpOption.PFC:
                self.pfc = True
            elif option.type == LcpOption.ACFC:
                self.acfc = True

    # -- link maintenance and extensions --------------------------------------------------------

    def magic_number(self) -> int:
        return self.our_magic

    def protocol_rejected(self, protocol: int) -> None:
        self.rejected_protocols.add(protocol)

    def link_maintenance(self, packet: ControlPacket) -> None:
        magic, _data = packet.magic_and_data()
        looped = self.our_magic != 0 and magic == self.our_magic
        if looped:
            self._loop_indication()
        if packet.code != Code.ECHO_REPLY:
            return
        self.last_echo_reply_id = packet.identifier
        self.last_echo_reply_magic = magic
        if not looped:
            self._consecutive_loops = 0
            if self.on_echo_reply is not None:
                self.on_echo_reply(packet.identifier)

    def extension_packet(self, packet: ControlPacket) -> None:
        code = packet.code
        self.extensions_received[code] = self.extensions_received.get(code, 0) + 1
        data = packet.data
        if code == Code.IDENTIFICATION and len(data) >= 4:
            self.last_identification = data[4:]
        elif code == Code.TIME_REMAINING and len(data) >= 8:
            self.time_remaining = int.from_bytes(data[4:8], "big")

    # -- helpers --------------------------------------------------------------------------------

    def _random_magic(self, avoid: Sequence[int]) -> int:
        """A random non-zero 32-bit number not in ``avoid``; bounded even for a broken rng."""
        for _ in range(16):
            value = int.from_bytes(self._rng(4)[:4], "big")
            if value and value not in avoid:
                return value
        value = 1
        while value in avoid:
            value += 1
        return value
