"""Parameters of control connections and calls, as the sans-I/O cores consume them.

The daemon's TOML configuration and the management API both end up here: these objects are the
single vocabulary the state machines understand, so neither the config file format nor the API
schema leaks into protocol code. They are frozen so that one parameter set can be shared by
every tunnel accepted from a peer and replaced wholesale on reload without touching live
connections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pyl2tp.wire import auth
from pyl2tp.wire.constants import DataSequencing, DigestType, L2SpecType, PwType

from .transport import MAX_WINDOW, MIN_RETRANSMIT_CAP, TransportConfig

# Framing Capabilities / Framing Type bits (RFC 2661 §4.4.3): synchronous and asynchronous.
FRAMING_SYNC = 0x1
FRAMING_ASYNC = 0x2
# Bearer Capabilities / Bearer Type bits: digital and analog.
BEARER_DIGITAL = 0x1
BEARER_ANALOG = 0x2

# Circuit Status bits (RFC 3931 §5.4.5).
CIRCUIT_ACTIVE = 0x1
CIRCUIT_NEW = 0x2

SUPPORTED_PW_TYPES = (PwType.ETH, PwType.ETH_VLAN, PwType.PPP)
"""What the data plane can carry; ETH_VLAN frames travel like ETH frames (RFC 4719 §4)."""


@dataclass(frozen=True, slots=True)
class CallParams:
    """How one session is set up: the pseudowire and what we require of received data.

    ``cookie_len`` is the length of the cookie *we* assign (and so expect on every received
    data packet, RFC 3931 §4.1); 8 octets is what §8.2 asks for against blind insertion.
    ``l2spec_type`` and ``data_sequencing`` are what we require on received data; the
    kernel's data plane applies one L2-Specific Sublayer to both directions, so a session
    adopts the initiator's choice (see :mod:`pyl2tp.control.call`). ``sequencing`` is the v2
    "Sequencing Required" of the LAC, or the LNS's choice to sequence.
    """

    pw_type: int = PwType.ETH
    cookie_len: int = 8
    l2spec_type: int = L2SpecType.DEFAULT
    data_sequencing: int = DataSequencing.NONE
    sequencing: bool = False
    reorder_timeout: float = 0.0
    remote_end_id: bytes = b""
    called_number: str = ""
    calling_number: str = ""
    ifname: str = ""
    ppp_profile: str = ""
    """The daemon's PPP profile that terminates this call's PPP ('' = not terminated here).
    Like ``ifname``, carried for the layer above and never read by the control plane."""
    switch_to: str = ""
    """The dialled tunnel this call's PPP is switched onto instead ('' = not switched)."""
    tx_connect_speed: int = 100_000_000
    framing_type: int = FRAMING_SYNC
    bearer_type: int = BEARER_DIGITAL

    def __post_init__(self) -> None:
        if self.cookie_len not in (0, 4, 8):
            raise ValueError(f"cookie length must be 0, 4 or 8 octets, not {self.cookie_len}")
        if self.l2spec_type not in (L2SpecType.NONE, L2SpecType.DEFAULT):
            raise ValueError("l2spec_type must be none (0) or default (1)")
        if self.data_sequencing not in tuple(DataSequencing):
            raise ValueError("data_sequencing must be 0 (none), 1 (non-IP) or 2 (all)")
        if self.data_sequencing and self.l2spec_type == L2SpecType.NONE:
            raise ValueError("data sequencing needs the default L2-Specific Sublayer "
                             "(RFC 3931 §5.4.4)")
        if not (self.reorder_timeout >= 0 and math.isfinite(self.reorder_timeout)):
            raise ValueError("reorder_timeout must be a non-negative number of seconds")


@dataclass(frozen=True, slots=True)
class ConnectionParams:
    """Everything one control connection needs to know about itself and its peer.

    ``secret`` turns on authentication: the v2 Challenge/Response when ``challenge`` is set
    (and answering the peer's challenge in any case), v3 Message Digests of ``digest_type``,
    and the key of hidden AVPs. ``require_auth`` refuses a peer that does not authenticate
    itself although we have a secret for it; switching it off accepts peers that only answer
    challenges (some v2 LACs never send their own).
    """

    version: int = 3
    host_name: str = "pyl2tp"
    vendor_name: str = "pyl2tp"
    firmware_revision: int = 0x0100
    router_id: int = 0
    secret: bytes | None = None
    challenge: bool = True
    require_auth: bool = True
    hide_avps: bool = False
    digest_type: int = DigestType.HMAC_MD5
    hello_interval: float = 60.0
    receive_window: int = 8
    retransmit_initial: float = 1.0
    retransmit_cap: float = 8.0
    max_retries: int = 5
    setup_timeout: float = 30.0
    ack_delay: float = 0.1
    tie_breaker: bool = True
    pw_types: tuple[int, ...] = (PwType.ETH, PwType.PPP)
    max_sessions: int = 1024
    max_call_setups: int = 64
    """Calls of ours (ICRQ/OCRQ sent) awaiting their reply at once; more wait their turn.
    Placing thousands of calls at once would otherwise queue thousands of messages behind the
    peer's window, each call's setup timer running while it waits."""
    control_rx_queue: int = 16
    """Out-of-order control messages buffered at most (the rest within the window are
    dropped and counted, and the peer retransmits them)."""
    framing_capabilities: int = FRAMING_SYNC | FRAMING_ASYNC
    bearer_capabilities: int = BEARER_DIGITAL | BEARER_ANALOG
    call: CallParams = field(default_factory=CallParams)
    """Defaults for calls the peer places on this connection (what we accept them with)."""

    def __post_init__(self) -> None:
        if self.version not in (2, 3):
            raise ValueError(f"L2TP version must be 2 or 3, not {self.version}")
        if not self.host_name:
            raise ValueError("the Host Name must not be empty (RFC 2661 §4.4.3)")
        if not 1 <= self.receive_window <= MAX_WINDOW:
            raise ValueError(f"receive window must be 1..{MAX_WINDOW}")
        if self.retransmit_cap < MIN_RETRANSMIT_CAP:
            raise ValueError(f"the retransmission cap must be at least {MIN_RETRANSMIT_CAP:g} s")
        if not (self.hello_interval >= 0 and math.isfinite(self.hello_interval)):
            raise ValueError("hello_interval must be a non-negative number (0 disables HELLO)")
        if not (self.setup_timeout > 0 and math.isfinite(self.setup_timeout)):
            raise ValueError("setup_timeout must be a positive number")
        if self.max_retries < 1:
            raise ValueError("max_retries must be at least 1")
        if not 1 <= self.max_sessions <= 0xFFFF:
            raise ValueError("max_sessions must be 1..65535")
        if self.max_call_setups < 1:
            raise ValueError("max_call_setups must be at least 1")
        if not 0 <= self.control_rx_queue <= MAX_WINDOW:
            raise ValueError(f"control_rx_queue must be 0..{MAX_WINDOW}")
        if self.digest_type not in tuple(DigestType):
            raise ValueError("digest_type must be 0 (HMAC-MD5) or 1 (HMAC-SHA1)")
        if not 0 <= self.router_id <= 0xFFFFFFFF:
            raise ValueError("router_id must be a 32-bit value")

    @property
    def authenticates(self) -> bool:
        return self.secret is not None

    @property
    def hide_key(self) -> bytes | None:
        """The key of hidden AVPs: the secret itself in v2, a key derived from it in v3."""
        if self.secret is None:
            return None
        return self.secret if self.version == 2 else auth.hiding_key_v3(self.secret)

    def transport_config(self, *, explicit_ack: bool) -> TransportConfig:
        return TransportConfig(
            version=self.version,
            receive_window=self.receive_window,
            retransmit_initial=self.retransmit_initial,
            retransmit_cap=self.retransmit_cap,
            max_retries=self.max_retries,
            ack_delay=self.ack_delay,
            explicit_ack=explicit_ack,
            max_buffered=self.control_rx_queue,
        )


__all__ = [
    "BEARER_ANALOG",
    "BEARER_DIGITAL",
    "CIRCUIT_ACTIVE",
    "CIRCUIT_NEW",
    "FRAMING_ASYNC",
    "FRAMING_SYNC",
    "SUPPORTED_PW_TYPES",
    "CallParams",
    "ConnectionParams",
]
