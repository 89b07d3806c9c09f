"""One PPP link, sans-I/O: LCP, authentication and the NCPs behind one frame interface.

This is what pppd is for one ``pppN`` unit, minus the devices. Frames from the L2TP session go
in (:meth:`PppLink.receive`), frames for it come out (:meth:`PppLink.frames_to_send`), and so
do IP packets for the interface (:meth:`PppLink.ip_received`) and the events the device layer
acts on: a network protocol came up with its addresses, a user needs verifying, the link is
finished and the L2TP session should go. Time is injected, so the phases of RFC 1661 §3.2
(Dead, Establish, Authenticate, Network, Terminate), the keepalive and every retransmission
run on a virtual clock in tests.

The protocols themselves live in their own modules: the automaton in :mod:`.fsm`, the
options in :mod:`.lcp`, :mod:`.ipcp` and :mod:`.ipv6cp`, PAP/CHAP in :mod:`.auth`. This module
sequences them: LCP's This-Layer-Up starts authentication, success in both directions starts
the NCPs, LCP's This-Layer-Down stops everything above it, and a failure anywhere closes LCP
with a reason the peer sees in the Terminate-Request.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from . import fsm
from .auth import (
    Authenticator,
    AuthEvent,
    AuthFailed,
    AuthPeer,
    AuthRequest,
    AuthResult,
    AuthSucceeded,
    Credentials,
    VerifyRequest,
)
from .ipcp import IpcpConfig, IpcpPolicy
from .ipv6cp import Ipv6cpConfig, Ipv6cpPolicy
from .lcp import LcpConfig, LcpPolicy
from .packet import Code
from .protocols import (
    PROTO_CHAP,
    PROTO_IPCP,
    PROTO_IPV4,
    PROTO_IPV6,
    PROTO_IPV6CP,
    PROTO_LCP,
    PROTO_LQR,
    PROTO_PAP,
)

__all__ = [
    "LinkConfig",
    "LinkCounters",
    "LinkEvent",
    "LinkFinished",
    "NetworkDown",
    "NetworkUp",
    "Phase",
    "PppLink",
    "UserAuthenticated",
    "VerifyRequest",
    "decode_protocol",
]

_log = logging.getLogger(__name__)

HDLC_HEADER = b"\xff\x03"
_IPV4_HDR = PROTO_IPV4.to_bytes(2, "big")
_IPV6_HDR = PROTO_IPV6.to_bytes(2, "big")


_LCP_IDLE = frozenset((fsm.State.INITIAL, fsm.State.STARTING, fsm.State.CLOSED,
                       fsm.State.STOPPED))


_MAX_AUTH_TRANSMITS = 255
"""PAP's identifier space bounds its retransmissions; Max-Configure may be larger."""
_NCP_DONE = frozenset((fsm.State.INITIAL, fsm.State.CLOSED, fsm.State.STOPPED))


class Phase(enum.Enum):
    """RFC 1661 §3.2 link phases."""

    DEAD = "dead"
    ESTABLISH = "establish"
    AUTHENTICATE = "authenticate"
    NETWORK = "network"
    TERMINATE = "terminate"


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Everything one link negotiates. ``ipcp``/``ipv6cp`` None means the protocol is not
    run: the peer's packets for it get a Protocol-Reject, as pppd does with ``noip``/
    ``noipv6``."""

    lcp: LcpConfig = field(default_factory=LcpConfig)
    ipcp: IpcpConfig | None = field(default_factory=IpcpConfig)
    ipv6cp: Ipv6cpConfig | None = None
    credentials: Credentials | None = None
    """What we answer with when the peer demands authentication."""
    auth_name: str = "pyl2tp"
    """Our name in CHAP Challenges."""
    restart_interval: float = fsm.DEFAULT_RESTART_INTERVAL
    max_configure: int = fsm.DEFAULT_MAX_CONFIGURE
    max_terminate: int = fsm.DEFAULT_MAX_TERMINATE
    max_failure: int = fsm.DEFAULT_MAX_FAILURE
    echo_interval: float = 10.0
    """Seconds between LCP Echo-Requests once LCP is open; 0 disables the keepalive."""
    echo_failure: int = 3
    """Unanswered Echo-Requests in a row after which the peer is declared dead."""
    auth_timeout: float = 30.0
    rechallenge_interval: float = 0.0


# ---------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class NetworkUp:
    """An NCP reached Opened: IP of that family may flow. For IPCP the addresses are the
    negotiated ones; for IPV6CP they are the link-local addresses built from the interface
    identifiers (RFC 5072 §5)."""

    protocol: int
    local: IPv4Address | IPv6Address | None
    peer: IPv4Address | IPv6Address | None
    dns: tuple[IPv4Address, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkDown:
    protocol: int


@dataclass(frozen=True, slots=True)
class UserAuthenticated:
    """The peer proved who it is (we were the authenticator). ``result`` may carry an
    address the backend assigns this user."""

    username: str
    result: AuthResult | None


@dataclass(frozen=True, slots=True)
class LinkFinished:
    """LCP is finished (RFC 1661 This-Layer-Finished): the L2TP session should go."""

    reason: str


LinkEvent = NetworkUp | NetworkDown | UserAuthenticated | LinkFinished | VerifyRequest

Assign = Callable[[str | None, "AuthResult | None"], "IpcpConfig | str | None"]
"""Called as the Network phase starts with the authenticated user (None without
authentication) and the backend's result: the IPCP configuration to offer (say, with an
address from the pool), None to use :attr:`LinkConfig.ipcp` as it is, or a reason to close
the link (the pool is exhausted)."""


@dataclass(slots=True)
class LinkCounters:
    """Frames the link itself drops; the automata and auth exchanges count their own."""

    rx_frames: int = 0
    tx_frames: int = 0
    rx_malformed: int = 0
    """Too short for a protocol field, or a protocol field that is not valid (§2)."""
    rx_not_ready: int = 0
    """Well-formed, but its phase has not been reached (RFC 1661 §3.4-§3.6): silently
    discarded."""
    rx_protocol_rejected: int = 0
    """Unsupported protocols answered with a Protocol-Reject."""
    tx_not_ready: int = 0
    """IP packets from the interface while its NCP was not Opened."""
    echo_sent: int = 0
    echo_lost: int = 0


def decode_protocol(frame: bytes) -> tuple[int, int] | None:
    """The protocol and the offset of the Information field, tolerating a leading FF 03 and
    a compressed (one-octet) protocol field (RFC 1661 §2, RFC 1662 §3.2). None when the frame
    has no valid protocol field."""
    off = 2 if frame[:2] == HDLC_HEADER else 0
    if len(frame) <= off:
        return None
    first = frame[off]
    if first & 1:  # a compressed protocol: its only octet is odd
        return first, off + 1
    if len(frame) < off + 2 or not frame[off + 1] & 1:
        return None  # the low octet of a protocol number is always odd
    return (first << 8) | frame[off + 1], off + 2


# ---------------------------------------------------------------------------------------------
# The link


class PppLink:
    """One PPP link. Drive it with :meth:`start`, :meth:`receive`, :meth:`handle_timer` at
    :meth:`next_deadline`, :meth:`verdict` for each :class:`VerifyRequest`, and
    :meth:`lower_down`/:meth:`close`; after each call drain :meth:`frames_to_send`,
    :meth:`ip_received` and :meth:`events`.
    """

    def __init__(self, config: LinkConfig, *,
                 rng: Callable[[int], bytes] = os.urandom,
                 assign: Assign | None = None) -> None:
        self.config = config
        self.counters = LinkCounters()
        self._rng = rng
        self._assign = assign
        self.lcp_policy = LcpPolicy(config.lcp, rng=rng)
        self.lcp = self._automaton(self.lcp_policy, first_identifier=rng(1)[0])
        self.lcp_policy.on_echo_reply = self._echo_reply
        # The NCPs are built when the Network phase starts: the addresses they offer may
        # depend on who authenticated (a fixed address from the secrets file or RADIUS).
        self.ipcp_policy: IpcpPolicy | None = None
        self.ipv6cp_policy: Ipv6cpPolicy | None = None
        self.ncps: dict[int, fsm.Automaton] = {}
        self._rejected_seen: set[int] = set()
        self._ncp_failed: set[int] = set()
        self.phase = Phase.DEAD
        self.ipv4_open = False
        self.ipv6_open = False
        """Fast-path flags: whether IP of each family may be sent and received now."""
        self.authenticator: Authenticator | None = None
        self.auth_peer: AuthPeer | None = None
        self.peer_name: str | None = None
        self._auth_result: AuthResult | None = None
        self._exchanges: list[tuple[int, Authenticator | AuthPeer]] = []
        self._auth_pending = 0
        self._frames: list[bytes] = []
        self._ip: list[bytes] = []
        self._events: list[LinkEvent] = []
        self._echo_at: float | None = None
        self._echo_outstanding = 0
        self._closing_reason: str | None = None
        self._finished = False

    def _automaton(self, policy: fsm.NegotiationPolicy, first_identifier: int = 1
                   ) -> fsm.Automaton:
        cfg = self.config
        return fsm.Automaton(policy, restart_interval=cfg.restart_interval,
                             max_configure=cfg.max_configure, max_terminate=cfg.max_terminate,
                             max_failure=cfg.max_failure, first_identifier=first_identifier)

    # -- inputs -----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The L2TP session is established: open LCP on it (Open, then Up)."""
        if self.phase is Phase.DEAD and not self._finished:
            self.phase = Phase.ESTABLISH
            self.lcp.open(now)
            self.lcp.lower_up(now)
            self._pump(now)

    def lower_down(self, now: float) -> None:
        """The L2TP session is gone (CDN, StopCCN): LCP Down, everything above it stops."""
        self.lcp.lower_down(now)
        self._pump(now)
        self._finish("lower layer down")

    def close(self, now: float, reason: str = "administrative close") -> None:
        """Terminate the link politely: LCP Terminate-Request, then :class:`LinkFinished`."""
        if self._closing_reason is None:
            self._closing_reason = reason
        self.lcp.close(now, reason)
        self._pump(now)

    def receive(self, frame: bytes, now: float) -> None:
        """One frame from the session (with or without FF 03). Never raises."""
        self.counters.rx_frames += 1
        decoded = decode_protocol(frame)
        if decoded is None:
            self.counters.rx_malformed += 1
            _log.debug("PPP frame without a valid protocol field dropped")
            return
        protocol, off = decoded
        info = frame[off:]
        if protocol == PROTO_LCP:
            self.lcp.receive(info, now)
        elif not self.lcp.is_opened:
            self.counters.rx_not_ready += 1  # §3.4: only LCP before LCP is Opened
            return
        elif protocol in (PROTO_PAP, PROTO_CHAP):
            self._receive_auth(protocol, info, now)
        elif protocol == PROTO_LQR:
            self.counters.rx_not_ready += 1  # §3.5 lets LQR through; we do not run it
            return
        elif self.phase is not Phase.NETWORK:
            self.counters.rx_not_ready += 1  # §3.5: nothing else during authentication
            return
        elif protocol == PROTO_IPV4:
            if self.ipv4_open:
                self._ip.append(info)
            else:
                self.counters.rx_not_ready += 1
            return
        elif protocol == PROTO_IPV6:
            if self.ipv6_open:
                self._ip.append(info)
            else:
                self.counters.rx_not_ready += 1
            return
        elif protocol in self.ncps:
            self.ncps[protocol].receive(info, now)
        else:
            # §3.6/§5.7: an unsupported protocol (including NCPs we do not run) while LCP
            # is Opened gets a Protocol-Reject.
            if self.lcp.send_protocol_reject(protocol, info):
                self.counters.rx_protocol_rejected += 1
        self._pump(now)

    def verdict(self, result: AuthResult, now: float, *,
                request: AuthRequest | None = None) -> None:
        """The backend's answer to the outstanding :class:`VerifyRequest`; with ``request``,
        an answer to an older request (before a renegotiation) is ignored."""
        if self.authenticator is not None:
            self.authenticator.verdict(result, now, request=request)
            self._pump(now)

    def handle_timer(self, now: float) -> None:
        for automaton in (self.lcp, *self.ncps.values()):
            deadline = automaton.next_deadline()
            if deadline is not None and deadline <= now:
                automaton.handle_timer(now)
        for _proto, exchange in self._exchanges:
            deadline = exchange.next_deadline()
            if deadline is not None and deadline <= now:
                exchange.handle_timer(now)
        if self._echo_at is not None and self._echo_at <= now:
            self._echo_tick(now)
        self._pump(now)

    # -- the data path ----------------------------------------------------------------------

    def frame_ip(self, packet: bytes) -> bytes | None:
        """The frame carrying one IP packet from the interface, or None (counted) when its
        NCP is not Opened (RFC 1661 §3.6 forbids sending it then)."""
        protocol = self.ip_protocol(packet)
        return None if protocol is None else protocol + packet

    def ip_protocol(self, packet: bytes | bytearray) -> bytes | None:
        """The protocol field for one IP packet from the interface, or None (counted) when
        its NCP is not Opened: :meth:`frame_ip` without building the frame, for a sender
        that puts the field in front of the packet together with its other headers."""
        version = packet[0] >> 4 if packet else 0
        if version == 4 and self.ipv4_open:
            return _IPV4_HDR
        if version == 6 and self.ipv6_open:
            return _IPV6_HDR
        self.counters.tx_not_ready += 1
        return None

    # -- outputs ----------------------------------------------------------------------------

    def frames_to_send(self) -> list[bytes]:
        """Drain the frames for the session: protocol field onwards, no FF 03 (the channel
        adds it, as the kernel's PPPoL2TP does)."""
        out, self._frames = self._frames, []
        self.counters.tx_frames += len(out)
        return out

    def ip_received(self) -> list[bytes]:
        """Drain the IP packets received for the interface."""
        out, self._ip = self._ip, []
        return out

    def events(self) -> list[LinkEvent]:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        deadlines = [a.next_deadline() for a in (self.lcp, *self.ncps.values())]
        deadlines += [x.next_deadline() for _p, x in self._exchanges]
        deadlines.append(self._echo_at)
        live = [d for d in deadlines if d is not None]
        return min(live) if live else None

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def peer_mru(self) -> int:
        return self.lcp_policy.peer_mru

    # -- internals --------------------------------------------------------------------------

    def _receive_auth(self, protocol: int, info: bytes, now: float) -> None:
        # Both directions may run at once: the authenticator sends requests' answers
        # (Challenge, Success, PAP Ack) and receives Responses/Authenticate-Requests; the
        # peer the reverse. Each exchange ignores codes that are not its own.
        handled = False
        for proto, exchange in self._exchanges:
            if proto == protocol:
                exchange.receive(protocol, info, now)
                handled = True
        # An auth protocol nobody negotiated: Protocol-Reject, as for any other.
        if not handled and self.lcp.send_protocol_reject(protocol, info):
            self.counters.rx_protocol_rejected += 1

    def _pump(self, now: float) -> None:
        """Collect every sub-machine's output and act on its events until nothing moves:
        one layer's event (LCP Up) produces work for another (a CHAP Challenge)."""
        for _ in range(64):  # bounded: each round consumes events; a loop here is a bug
            moved = False
            for proto, automaton in ((PROTO_LCP, self.lcp), *self.ncps.items()):
                for packet in automaton.packets_to_send():
                    self._frames.append(packet.protocol.to_bytes(2, "big") + packet.data)
                    moved = True
                for event in automaton.events():
                    moved = True
                    if proto == PROTO_LCP:
                        self._lcp_event(event, now)
                    else:
                        self._ncp_event(proto, event, now)
            for _proto, exchange in self._exchanges:
                for proto, data in exchange.packets_to_send():
                    self._frames.append(proto.to_bytes(2, "big") + data)
                    moved = True
                for auth_event in exchange.events():
                    moved = True
                    self._auth_event(auth_event, exchange is self.authenticator, now)
            moved |= self._check_failures(now)
            if not moved:
                return
        _log.warning("PPP link: events did not settle")

    def _check_failures(self, now: float) -> bool:
        if self._closing_reason is not None or self.lcp.state in _LCP_IDLE:
            return False
        rejected = self.lcp_policy.rejected_protocols - self._rejected_seen
        if rejected:
            self._rejected_seen |= rejected
            for proto in rejected:
                automaton = self.ncps.get(proto)
                if automaton is not None:
                    automaton.protocol_rejected(now)
            return True
        failure = self.lcp_policy.failure
        if failure is None:
            for proto, automaton in self.ncps.items():
                ncp_failure = getattr(automaton.policy, "failure", None)
                if ncp_failure and proto not in self._ncp_failed:
                    # Once: the NCP then terminates on its own schedule (Closing, Closed).
                    self._ncp_failed.add(proto)
                    _log.debug("NCP %#06x failed: %s", proto, ncp_failure)
                    automaton.close(now, ncp_failure)
                    return True
            return False
        self._closing_reason = failure
        self.lcp.close(now, failure)
        return True

    def _lcp_event(self, event: fsm.LayerEvent, now: float) -> None:
        if event is fsm.LayerEvent.UP:
            self._lcp_up(now)
        elif event is fsm.LayerEvent.DOWN:
            self._lcp_down(now)
        elif event is fsm.LayerEvent.FINISHED:
            if self._closing_reason is not None:
                reason = self._closing_reason
            elif self.lcp.counters.rx.get(Code.TERMINATE_REQUEST):
                reason = "terminated by the peer"
            else:
                reason = "LCP negotiation failed"
            self._finish(reason)

    def _lcp_up(self, now: float) -> None:
        policy = self.lcp_policy
        self.lcp.peer_mru = policy.peer_mru  # the NCPs get it when _network builds them
        self.phase = Phase.AUTHENTICATE
        self._echo_outstanding = 0
        interval = self.config.echo_interval
        self._echo_at = now + interval if interval > 0 else None
        cfg = self.config
        self._auth_pending = 0
        if policy.auth_of_peer is not None:
            self.authenticator = Authenticator(
                policy.auth_of_peer, name=cfg.auth_name, rng=self._rng,
                restart_interval=cfg.restart_interval,
                max_transmits=min(cfg.max_configure, _MAX_AUTH_TRANSMITS),
                timeout=cfg.auth_timeout, rechallenge_interval=cfg.rechallenge_interval)
            self._auth_pending += 1
            self._exchanges.append((policy.auth_of_peer.protocol, self.authenticator))
            self.authenticator.start(now)
        if policy.auth_by_peer is not None:
            if cfg.credentials is None:  # LCP only Acks a demand we can meet; belt and braces
                self._closing_reason = "peer demands authentication but no credentials"
                self.lcp.close(now, self._closing_reason)
                return
            self.auth_peer = AuthPeer(policy.auth_by_peer, cfg.credentials,
                                      restart_interval=cfg.restart_interval,
                                      max_transmits=min(cfg.max_configure,
                                                        _MAX_AUTH_TRANSMITS),
                                      timeout=cfg.auth_timeout)
            self._auth_pending += 1
            self._exchanges.append((policy.auth_by_peer.protocol, self.auth_peer))
            self.auth_peer.start(now)
        if self._auth_pending == 0:
            self._network(now)

    def _lcp_down(self, now: float) -> None:
        self._echo_at = None
        for _proto, exchange in self._exchanges:
            exchange.stop()
        self._exchanges = []
        self.authenticator = self.auth_peer = None
        for automaton in self.ncps.values():
            automaton.lower_down(now)
        if self.phase is not Phase.DEAD:
            self.phase = Phase.TERMINATE if self._closing_reason else Phase.ESTABLISH

    def _network(self, now: float) -> None:
        self.phase = Phase.NETWORK
        cfg = self.config
        ipcp = cfg.ipcp
        self._ncp_failed = set()
        if ipcp is not None and self._assign is not None:
            try:
                assigned = self._assign(self.peer_name, self._auth_result)
            except ValueError as exc:  # an unusable address (say, a bad secrets entry)
                assigned = f"no usable address: {exc}"
            if isinstance(assigned, str):
                self._closing_reason = assigned
                self.lcp.close(now, assigned)
                return
            if assigned is not None:
                ipcp = assigned
        self.ipcp_policy = IpcpPolicy(ipcp) if ipcp is not None else None
        self.ipv6cp_policy = (Ipv6cpPolicy(cfg.ipv6cp, rng=self._rng)
                              if cfg.ipv6cp is not None else None)
        self.ncps = {}
        if self.ipcp_policy is not None:
            self.ncps[PROTO_IPCP] = self._automaton(self.ipcp_policy)
        if self.ipv6cp_policy is not None:
            self.ncps[PROTO_IPV6CP] = self._automaton(self.ipv6cp_policy)
        if not self.ncps:
            self._closing_reason = "no network protocols configured"
            self.lcp.close(now, self._closing_reason)
            return
        for automaton in self.ncps.values():
            automaton.peer_mru = self.lcp_policy.peer_mru
            automaton.open(now)
            automaton.lower_up(now)

    def _auth_event(self, event: AuthEvent, ours: bool, now: float) -> None:
        """``ours``: the event comes from the exchange where we are the authenticator."""
        if isinstance(event, VerifyRequest):
            self._events.append(event)
        elif isinstance(event, AuthSucceeded):
            if self.phase is not Phase.AUTHENTICATE:
                return  # a re-challenge in Network phase succeeded: nothing changes
            if ours:
                self.peer_name = event.username
                self._auth_result = event.result
                self._events.append(UserAuthenticated(event.username, event.result))
            self._auth_pending -= 1
            if self._auth_pending <= 0:
                self._network(now)
        elif isinstance(event, AuthFailed) and self._closing_reason is None:
            self._closing_reason = f"authentication failed: {event.reason}"
            self.lcp.close(now, self._closing_reason)

    def _ncp_event(self, proto: int, event: fsm.LayerEvent, now: float) -> None:
        if event is fsm.LayerEvent.UP:
            if proto == PROTO_IPCP and self.ipcp_policy is not None:
                p4 = self.ipcp_policy
                self.ipv4_open = True
                self._events.append(NetworkUp(proto, p4.local_address, p4.peer_address,
                                              tuple(p4.dns)))
            elif proto == PROTO_IPV6CP and self.ipv6cp_policy is not None:
                p6 = self.ipv6cp_policy
                self.ipv6_open = True
                self._events.append(NetworkUp(proto, p6.link_local(p6.local_ifid),
                                              p6.link_local(p6.peer_ifid)))
        elif event is fsm.LayerEvent.DOWN:
            if proto == PROTO_IPCP:
                self.ipv4_open = False
            else:
                self.ipv6_open = False
            self._events.append(NetworkDown(proto))
        elif (event is fsm.LayerEvent.FINISHED and self.phase is Phase.NETWORK
              and self._closing_reason is None
              and all(a.state in _NCP_DONE for a in self.ncps.values())):
            # pppd closes the link when its last network protocol stops (no point in a link
            # that can carry nothing); an NCP the peer merely refused is such a stop.
            self._closing_reason = "no network protocols running"
            self.lcp.close(now, self._closing_reason)

    # -- keepalive --------------------------------------------------------------------------

    def _echo_tick(self, now: float) -> None:
        cfg = self.config
        if self._echo_outstanding >= cfg.echo_failure:
            self._echo_at = None
            self.counters.echo_lost += self._echo_outstanding
            if self._closing_reason is None:
                self._closing_reason = (f"peer not responding to {self._echo_outstanding} "
                                        "echo requests")
                self.lcp.close(now, self._closing_reason)
            return
        if self.lcp.send_echo_request() is not None:
            self._echo_outstanding += 1
            self.counters.echo_sent += 1
        self._echo_at = now + cfg.echo_interval

    def _echo_reply(self, _identifier: int) -> None:
        self._echo_outstanding = 0

    def _finish(self, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        self.phase = Phase.DEAD
        self.ipv4_open = self.ipv6_open = False
        self._echo_at = None
        self._events.append(LinkFinished(reason))
