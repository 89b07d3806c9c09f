"""PPP authentication, sans-I/O: PAP (RFC 1334), CHAP-MD5 (RFC 1994), MS-CHAPv2 (RFC 2759).

Two roles, one driving API (the same shape as :class:`~pyl2tp.ppp.fsm.Automaton`):

* :class:`Authenticator` demands that the peer prove who it is (the LNS side). It never
  judges credentials itself: each candidate answer becomes a :class:`VerifyRequest` event,
  the driver hands its :class:`AuthRequest` to an :class:`AuthBackend` (a secrets file now,
  RADIUS later, which is why backends are async) and reports the answer through
  :meth:`Authenticator.verdict`. The protocol machinery (identifiers, retransmission,
  duplicate replies, timeouts) therefore stays free of I/O and of any password store.
* :class:`AuthPeer` proves our identity to a peer that demands it (the LAC/client side).

Bytes and the current time go in (``receive(protocol, data, now)``, ``handle_timer(now)``);
packets (``packets_to_send()``), events (``events()``) and the next deadline
(``next_deadline()``) come out. Every byte received is hostile: nothing in ``receive`` raises;
what cannot be used is counted in :class:`AuthCounters` and logged at debug level.

The bytes themselves (PAP and CHAP packets, MS-CHAPv2 values and messages) are built and
parsed in :mod:`pyl2tp.ppp.authpacket`.
"""

from __future__ import annotations

import enum
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import mschap
from .authpacket import (
    CHALLENGE_LEN,
    MAX_MESSAGE_LEN,
    MAX_NAME_LEN,
    MAX_PASSWORD_LEN,
    MD5_RESPONSE_LEN,
    MSCHAPV2_RESPONSE_LEN,
    ChapCode,
    PapCode,
    chap_status,
    chap_value_name,
    md5_response,
    message_from_wire,
    mschapv2_failure_text,
    mschapv2_response_value,
    name_from_wire,
    pap_reply,
    pap_request,
    parse_chap_value_name,
    parse_pap_reply,
    parse_pap_request,
    response_well_formed,
    split_mschapv2_response,
    to_wire,
)
from .packet import ControlPacket, PppParseError
from .protocols import AuthMethod

__all__ = [
    "DEFAULT_FAILURE_MESSAGE",
    "DEFAULT_SUCCESS_MESSAGE",
    "MAX_MESSAGE_LEN",
    "MAX_NAME_LEN",
    "MSCHAPV2_RESPONSE_LEN",
    "AuthBackend",
    "AuthCounters",
    "AuthEvent",
    "AuthFailed",
    "AuthPeer",
    "AuthRequest",
    "AuthResult",
    "AuthSucceeded",
    "Authenticator",
    "ChapCode",
    "Credentials",
    "PapCode",
    "VerifyRequest",
]

_log = logging.getLogger(__name__)

MAX_MSCHAP_PASSWORD_CHARS = 256
"""RFC 2759 §4: a password of 0 to 256 Unicode characters."""
DEFAULT_SUCCESS_MESSAGE = "Authentication succeeded"
DEFAULT_FAILURE_MESSAGE = "Authentication failed"
_MAX_QUEUE = 64
"""Bound on undrained packets and events; a driver drains after every call, so reaching it
means the driver is broken, and dropping (counted) beats growing without limit."""


# ---------------------------------------------------------------------------------------------
# Requests, results, backends


@dataclass(frozen=True, slots=True)
class Credentials:
    """What we send when the peer demands that we authenticate."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthResult:
    """A backend's answer.

    ``message`` is the text of the PAP Ack/Nak or CHAP Success/Failure. For MS-CHAPv2 it is
    protocol data, not decoration: ``"S=<40 hex> M=..."`` on success (the peer checks it),
    ``"E=691 R=0 C=<32 hex> V=3 M=..."`` on failure (RFC 2759 §5, §6). ``address`` is an
    IPv4 address assigned to the user (secrets file column, RADIUS Framed-IP-Address).
    """

    ok: bool
    message: str = ""
    address: str | None = None


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What an authenticator asks its backend to verify.

    ``password`` is set for PAP only. For CHAP, ``challenge`` is the value we sent
    (MS-CHAPv2: the 16-octet authenticator challenge) and ``response`` the value received
    (CHAP-MD5: the 16-octet hash; MS-CHAPv2: the 49-octet response). ``identifier`` is the
    CHAP identifier, which CHAP-MD5 hashes. Names received as invalid UTF-8 hold lone
    surrogates (``surrogateescape``) so that no two distinct wire names compare equal.
    """

    method: AuthMethod
    username: str
    password: str | None = field(default=None, repr=False)
    identifier: int = 0
    challenge: bytes = b""
    response: bytes = b""

    def verify_with(self, secret: str) -> AuthResult:
        """Check the request against a cleartext ``secret``, for local backends.

        An empty secret never matches: RFC 1994 §2.3 requires at least one octet, and
        accepting an empty PAP password by accident would open the door to anyone. For
        MS-CHAPv2 a success carries the authenticator response the peer must verify.
        """
        if not secret:
            return self.failure()
        secret_octets = to_wire(secret)
        if self.method is AuthMethod.PAP:
            given = to_wire(self.password) if self.password is not None else None
            if given is not None and hmac.compare_digest(given, secret_octets):
                return AuthResult(True, DEFAULT_SUCCESS_MESSAGE)
            return self.failure()
        if self.method is AuthMethod.CHAP_MD5:
            expected = md5_response(self.identifier, secret_octets, self.challenge)
            if len(self.response) == MD5_RESPONSE_LEN and hmac.compare_digest(
                expected, self.response
            ):
                return AuthResult(True, DEFAULT_SUCCESS_MESSAGE)
            return self.failure()
        return self._verify_mschapv2(secret)

    def _verify_mschapv2(self, secret: str) -> AuthResult:
        parsed = split_mschapv2_response(self.response)
        if parsed is None or len(self.challenge) != mschap.CHALLENGE_LEN:
            return self.failure()
        if len(secret) > MAX_MSCHAP_PASSWORD_CHARS:
            return self.failure()
        peer_challenge, nt_response = parsed
        user = _mschap_user(self.username)
        expected = mschap.generate_nt_response(self.challenge, peer_challenge, user, secret)
        if not hmac.compare_digest(expected, nt_response):
            return self.failure()
        auth_response = mschap.generate_authenticator_response(
            secret, nt_response, peer_challenge, self.challenge, user
        )
        return AuthResult(True, f"{auth_response} M={DEFAULT_SUCCESS_MESSAGE}")

    def failure(self, message: str = DEFAULT_FAILURE_MESSAGE) -> AuthResult:
        """A negative result in this method's format: MS-CHAPv2 needs the ``E= R= C= V=``
        fields (RFC 2759 §6; retry is not offered, so R=0), the others take plain text."""
        if self.method is AuthMethod.MSCHAP_V2:
            return AuthResult(False, mschapv2_failure_text(self.challenge, message))
        return AuthResult(False, message)


class AuthBackend(Protocol):
    """Decides whether an :class:`AuthRequest` is acceptable. Async so that a network
    backend (RADIUS) fits the same slot as a secrets file."""

    async def authenticate(self, request: AuthRequest) -> AuthResult: ...


# ---------------------------------------------------------------------------------------------
# Events and counters


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    """Authenticator only: ask the backend about ``request``, then call
    :meth:`Authenticator.verdict` with its answer."""

    request: AuthRequest


@dataclass(frozen=True, slots=True)
class AuthSucceeded:
    """Authentication completed; the link may proceed to the Network phase. Emitted once
    per :meth:`start`; a passed re-challenge emits nothing."""

    username: str
    result: AuthResult | None = None


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """Authentication failed or timed out: the link must now close LCP."""

    reason: str


AuthEvent = VerifyRequest | AuthSucceeded | AuthFailed


@dataclass(slots=True)
class AuthCounters:
    """Per-instance counters. ``rx``/``tx`` are keyed by packet code."""

    rx: dict[int, int] = field(default_factory=dict)
    tx: dict[int, int] = field(default_factory=dict)
    discarded_malformed: int = 0
    """Unparseable: bad Length, a length field past the end, empty CHAP value, long name."""
    discarded_bad_id: int = 0
    """A CHAP Response/Success/Failure or PAP Ack/Nak that answers no current packet of ours."""
    discarded_wrong_protocol: int = 0
    """Handed a frame of a protocol other than the method's (the driver's mistake)."""
    discarded_unexpected: int = 0
    """A code the other role sends (a Challenge to an authenticator), or an unknown code."""
    discarded_wrong_state: int = 0
    """Before :meth:`start`, after :meth:`stop`, or after the outcome made it meaningless."""
    discarded_busy: int = 0
    """Authenticator: a new answer while the backend is still judging the previous one."""
    invalid_responses: int = 0
    """Authenticator: a Response value of the wrong size for the method (judged a failure)."""
    duplicates: int = 0
    """A retransmitted request answered again, or a repeated reply ignored."""
    retransmits: int = 0
    timeouts: int = 0
    stale_verdicts: int = 0
    """Authenticator: a verdict with no outstanding request (after stop or a timeout)."""
    bad_authenticator_responses: int = 0
    """Peer, MS-CHAPv2: a Success whose ``S=`` did not prove knowledge of the password."""
    rechallenges: int = 0
    queue_overflows: int = 0
    """Packets or events dropped because the driver did not drain (see ``_MAX_QUEUE``)."""


class _Phase(enum.Enum):
    IDLE = "idle"  # not started, or stopped
    WAITING = "waiting"  # authenticator: for a request/response; peer: for a reply
    VERIFYING = "verifying"  # authenticator: a VerifyRequest is outstanding
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class _Endpoint:
    """What both roles share: retransmission parameters, identifiers, the current CHAP
    challenge, output queues, counters, the receive entry point and the failed outcome."""

    def __init__(
        self,
        method: AuthMethod,
        restart_interval: float,
        max_transmits: int,
        timeout: float,
        rng: Callable[[int], bytes],
    ) -> None:
        if restart_interval <= 0 or timeout <= 0:
            raise ValueError("restart_interval and timeout must be positive")
        if max_transmits < 1:
            raise ValueError("max_transmits must be at least 1")
        self.method = method
        self.protocol = method.protocol
        self.restart_interval = restart_interval
        self.max_transmits = max_transmits
        self.timeout = timeout
        self.counters = AuthCounters()
        self._rng = rng
        self._phase = _Phase.IDLE
        self._outbox: list[tuple[int, bytes]] = []
        self._events: list[AuthEvent] = []
        self._next_id = 0
        self._transmits = 0
        self._retransmit_at: float | None = None
        self._give_up_at: float | None = None
        self._chal_id: int | None = None  # CHAP: the current Challenge's identifier
        self._chal_value = b""  # and its value

    @property
    def phase(self) -> str:
        """Where the exchange stands (idle, waiting, verifying, succeeded, failed): for logs
        and status displays."""
        return self._phase.value

    def packets_to_send(self) -> list[tuple[int, bytes]]:
        """Drain the packets produced so far, oldest first, as (PPP protocol, packet)."""
        out, self._outbox = self._outbox, []
        return out

    def events(self) -> list[AuthEvent]:
        """Drain the events produced so far, oldest first."""
        out, self._events = self._events, []
        return out

    def receive(self, protocol: int, data: bytes, now: float) -> None:
        """Handle the Information field of one PAP or CHAP frame. Never raises on any input:
        what cannot be used is counted and dropped."""
        if protocol != self.protocol:
            self.counters.discarded_wrong_protocol += 1
            _log.debug("%s: frame of protocol %#06x dropped", self._label, protocol)
            return
        try:
            packet = ControlPacket.decode(bytes(data))
            rx = self.counters.rx
            rx[packet.code] = rx.get(packet.code, 0) + 1
            if self._phase is _Phase.IDLE:
                self.counters.discarded_wrong_state += 1
                _log.debug("%s: code %d dropped: not started", self._label, packet.code)
                return
            self._handle(packet, now)
        except PppParseError as exc:
            self.counters.discarded_malformed += 1
            _log.debug("%s: malformed packet dropped: %s", self._label, exc.reason)

    @property
    def _label(self) -> str:
        return f"{type(self).__name__}[{self.method.value}]"

    def _handle(self, packet: ControlPacket, now: float) -> None:
        raise NotImplementedError

    def _reset(self) -> None:
        """Back to idle: timers, the exchange and undrained output forgotten."""
        self._phase = _Phase.IDLE
        self._cancel_timers()
        self._transmits = 0
        self._chal_id = None
        self._chal_value = b""
        self._outbox.clear()
        self._events.clear()

    def _cancel_timers(self) -> None:
        self._retransmit_at = self._give_up_at = None

    def _send(self, packet: bytes) -> None:
        if len(self._outbox) >= _MAX_QUEUE:
            self.counters.queue_overflows += 1
            return
        tx = self.counters.tx
        tx[packet[0]] = tx.get(packet[0], 0) + 1
        self._outbox.append((self.protocol, packet))

    def _emit(self, event: AuthEvent) -> None:
        if len(self._events) >= _MAX_QUEUE:
            self.counters.queue_overflows += 1
            return
        self._events.append(event)

    def _failed(self, reason: str) -> None:
        """The outcome is failure: no more timers, and the link is told to close."""
        self._phase = _Phase.FAILED
        self._cancel_timers()
        _log.debug("%s: %s", self._label, reason)
        self._emit(AuthFailed(reason))

    def _unexpected(self, packet: ControlPacket) -> None:
        self.counters.discarded_unexpected += 1
        _log.debug("%s: unexpected code %d dropped", self._label, packet.code)


def _min_deadline(*deadlines: float | None) -> float | None:
    present = [d for d in deadlines if d is not None]
    return min(present) if present else None


def _mschap_user(username: str) -> bytes:
    """The user name as MS-CHAPv2 hashes it: without a domain, as octets (RFC 2759 §4)."""
    return to_wire(mschap.strip_domain(username))


# ---------------------------------------------------------------------------------------------
# Authenticator


class Authenticator(_Endpoint):
    """We demand that the peer authenticate (the LNS side).

    PAP: wait up to ``timeout`` seconds for an Authenticate-Request (the peer retransmits,
    RFC 1334 §2.2.1). CHAP: send a Challenge and repeat it every ``restart_interval`` with a
    new identifier and a new value (RFC 1994 §4.1: both "MUST be changed each time a
    Challenge is sent"), accepting Responses for the current identifier only; after
    ``max_transmits`` unanswered Challenges, or ``timeout`` seconds without a decision,
    authentication fails. Each acceptable-looking answer goes to the backend as a
    :class:`VerifyRequest`; answers arriving meanwhile are ignored (counted). Once decided,
    a repeated Request (PAP) or a repeated Response with the decided identifier (CHAP) gets
    the same reply again, because the first reply may have been lost (RFC 1334 §2.2.1,
    RFC 1994 §4.1). With ``rechallenge_interval`` > 0, CHAP challenges again that long after
    each success (RFC 1994 §2); the same user must pass it or the link fails.
    """

    def __init__(
        self,
        method: AuthMethod,
        *,
        name: str,
        rng: Callable[[int], bytes] = os.urandom,
        restart_interval: float = 3.0,
        max_transmits: int = 10,
        timeout: float = 30.0,
        rechallenge_interval: float = 0.0,
    ) -> None:
        super().__init__(method, restart_interval, max_transmits, timeout, rng)
        if rechallenge_interval < 0:
            raise ValueError("rechallenge_interval must not be negative")
        self.name = name
        self._name_octets = to_wire(name)
        if len(self._name_octets) > MAX_NAME_LEN:
            raise ValueError(f"authenticator name longer than {MAX_NAME_LEN} octets")
        self.rechallenge_interval = rechallenge_interval
        self._rechallenge_at: float | None = None
        self._pending: AuthRequest | None = None
        # The outcome sent for the current Request (PAP) or Challenge (CHAP): (ok, message),
        # repeated to duplicates; None while undecided or after a failure by timeout.
        self._decision: tuple[bool, str] | None = None
        self._user: str | None = None
        self._result: AuthResult | None = None

    @property
    def authenticated_user(self) -> str | None:
        """The peer's name once it has authenticated, until :meth:`stop`."""
        return self._user

    @property
    def result(self) -> AuthResult | None:
        """The backend's answer that authenticated the peer (its ``address`` in particular)."""
        return self._result

    # -- driving ---------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """LCP is Opened: begin the Authentication phase (again, if it had begun)."""
        self.stop()
        self._phase = _Phase.WAITING
        self._give_up_at = now + self.timeout
        if self.method is not AuthMethod.PAP:
            # An unpredictable first identifier, so a Response replayed from an earlier
            # session of this link is unlikely to carry the current one.
            self._next_id = self._rng(1)[0]
            self._send_challenge(now)

    def stop(self) -> None:
        """LCP left Opened: cancel timers and forget everything, queued output included
        (packets for a dead link, events the driver has already acted upon by stopping)."""
        self._reset()
        self._pending = None
        self._decision = None
        self._user = None
        self._result = None

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or None when no timer runs."""
        if self._phase is _Phase.WAITING:
            return _min_deadline(self._retransmit_at, self._give_up_at)
        if self._phase is _Phase.VERIFYING:
            return self._give_up_at
        if self._phase is _Phase.SUCCEEDED:
            return self._rechallenge_at
        return None

    def handle_timer(self, now: float) -> None:
        """Retransmit a Challenge, give up, or start a re-challenge, as deadlines have passed."""
        phase = self._phase
        if phase in (_Phase.WAITING, _Phase.VERIFYING):
            if self._give_up_at is not None and now >= self._give_up_at:
                self.counters.timeouts += 1
                what = "Authenticate-Request" if self.method is AuthMethod.PAP else "Response"
                self._fail_timeout(f"no valid {what} within {self.timeout:g} s")
                return
            if (
                phase is _Phase.WAITING
                and self._retransmit_at is not None
                and now >= self._retransmit_at
            ):
                if self._transmits >= self.max_transmits:
                    self.counters.timeouts += 1
                    self._fail_timeout(f"no Response to {self._transmits} Challenges")
                    return
                self.counters.retransmits += 1
                self._send_challenge(now)
        elif (
            phase is _Phase.SUCCEEDED
            and self._rechallenge_at is not None
            and now >= self._rechallenge_at
        ):
            self.counters.rechallenges += 1
            self._phase = _Phase.WAITING
            self._rechallenge_at = None
            self._give_up_at = now + self.timeout
            self._transmits = 0
            self._send_challenge(now)

    def verdict(
        self, result: AuthResult, now: float, *, request: AuthRequest | None = None
    ) -> None:
        """The backend's answer to the outstanding :class:`VerifyRequest`.

        Ignored (counted) when nothing is outstanding, e.g. the attempt timed out or LCP went
        down meanwhile; pass ``request`` to also reject an answer to an older request.
        """
        pending = self._pending
        if (
            self._phase is not _Phase.VERIFYING
            or pending is None
            or (request is not None and request is not pending)
        ):
            self.counters.stale_verdicts += 1
            _log.debug("%s: stale verdict ignored", self._label)
            return
        self._pending = None
        if result.ok and self._user is not None and pending.username != self._user:
            # A re-challenge proves the same peer is still there; addresses and accounting
            # were bound to the first identity, which cannot change under them.
            result = pending.failure("user name changed on re-challenge")
        if result.ok:
            self._succeed(pending, result, now)
        else:
            self._fail(pending, result)

    # -- receive ----------------------------------------------------------------------------

    def _handle(self, packet: ControlPacket, now: float) -> None:
        if self.method is AuthMethod.PAP:
            if packet.code == PapCode.AUTHENTICATE_REQUEST:
                self._on_pap_request(packet)
            else:
                self._unexpected(packet)
        elif packet.code == ChapCode.RESPONSE:
            self._on_chap_response(packet)
        else:
            self._unexpected(packet)

    def _on_pap_request(self, packet: ControlPacket) -> None:
        user, password = parse_pap_request(packet.data)
        if self._busy_or_decided(packet.identifier):
            return
        self._verify(
            AuthRequest(
                AuthMethod.PAP,
                name_from_wire(user),
                password=name_from_wire(password),
                identifier=packet.identifier,
            )
        )

    def _on_chap_response(self, packet: ControlPacket) -> None:
        value, name = parse_chap_value_name(packet.data)
        if self._chal_id is None or packet.identifier != self._chal_id:
            # A late answer to an earlier Challenge: the peer will answer the current one.
            self.counters.discarded_bad_id += 1
            _log.debug("%s: Response id %d is not current", self._label, packet.identifier)
            return
        if self._busy_or_decided(packet.identifier):
            return
        request = AuthRequest(
            self.method,
            name_from_wire(name),
            identifier=packet.identifier,
            challenge=self._chal_value,
            response=value,
        )
        if not response_well_formed(self.method, value):
            # Cannot equal the expected value (RFC 1994 §4.2: then send Failure); no need to
            # bother the backend with it.
            self.counters.invalid_responses += 1
            self._retransmit_at = None
            self._fail(request, request.failure())
            return
        self._verify(request)

    def _busy_or_decided(self, ident: int) -> bool:
        """Deal with an answer that is not for the backend, returning True: one arriving
        while the backend judges the previous answer (ignored), or after the outcome, which
        gets the same reply code again whatever it contains, since the first reply may have
        been lost (RFC 1334 §2.2.1, RFC 1994 §4.1)."""
        phase = self._phase
        if phase is _Phase.VERIFYING:
            self.counters.discarded_busy += 1
            return True
        if phase not in (_Phase.SUCCEEDED, _Phase.FAILED):
            return False
        if self._decision is None:  # failed by timeout: no reply was ever given
            self.counters.discarded_wrong_state += 1
        else:
            self.counters.duplicates += 1
            self._send_decision(ident)
        return True

    def _verify(self, request: AuthRequest) -> None:
        self._phase = _Phase.VERIFYING
        self._pending = request
        self._retransmit_at = None  # the peer answered; no more Challenges for now
        self._emit(VerifyRequest(request))

    # -- outcomes ---------------------------------------------------------------------------

    def _succeed(self, request: AuthRequest, result: AuthResult, now: float) -> None:
        first = self._user is None
        self._phase = _Phase.SUCCEEDED
        self._give_up_at = None
        self._user = request.username
        if first:
            self._result = result
        message = result.message or DEFAULT_SUCCESS_MESSAGE
        if self.method is AuthMethod.MSCHAP_V2 and not message.startswith("S="):
            # The peer MUST reject a Success without the authenticator response
            # (RFC 2759 §5); only the backend, which knows the password, can make it.
            _log.warning("%s: backend accepted without an S= response", self._label)
        self._decision = (True, message)
        self._send_decision(request.identifier)
        if self.method is not AuthMethod.PAP and self.rechallenge_interval > 0:
            self._rechallenge_at = now + self.rechallenge_interval
        if first:
            _log.debug("%s: peer %r authenticated", self._label, request.username)
            self._emit(AuthSucceeded(request.username, result))

    def _fail(self, request: AuthRequest, result: AuthResult, reason: str | None = None) -> None:
        message = result.message or DEFAULT_FAILURE_MESSAGE
        if self.method is AuthMethod.MSCHAP_V2 and not message.startswith("E="):
            message = request.failure(message).message
        self._decision = (False, message)
        self._send_decision(request.identifier)
        if reason is None:
            shown = message_from_wire(to_wire(request.username))
            reason = f"peer {shown!r} failed {self.method.value} authentication"
        self._failed(reason)

    def _fail_timeout(self, reason: str) -> None:
        pending = self._pending
        if pending is None:
            self._failed(reason)
            return
        # The backend never answered: tell the peer no rather than leave it guessing.
        self._pending = None
        self._fail(pending, pending.failure(), f"{reason} (backend did not answer)")

    def _cancel_timers(self) -> None:
        super()._cancel_timers()
        self._rechallenge_at = None

    def _send_decision(self, ident: int) -> None:
        """The PAP Ack/Nak or CHAP Success/Failure of ``_decision``, with ``ident``."""
        assert self._decision is not None
        ok, message = self._decision
        if self.method is AuthMethod.PAP:
            code = PapCode.AUTHENTICATE_ACK if ok else PapCode.AUTHENTICATE_NAK
            self._send(pap_reply(code, ident, message))
        else:
            self._send(chap_status(ChapCode.SUCCESS if ok else ChapCode.FAILURE, ident, message))

    # -- challenges -------------------------------------------------------------------------

    def _send_challenge(self, now: float) -> None:
        self._chal_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFF
        self._chal_value = bytes(self._rng(CHALLENGE_LEN))[:CHALLENGE_LEN]
        self._decision = None
        self._transmits += 1
        self._retransmit_at = now + self.restart_interval
        self._send(
            chap_value_name(ChapCode.CHALLENGE, self._chal_id, self._chal_value, self._name_octets)
        )


# ---------------------------------------------------------------------------------------------
# Peer


class AuthPeer(_Endpoint):
    """We authenticate to the peer (the LAC/client side).

    PAP: send an Authenticate-Request, repeat it every ``restart_interval`` with a new
    identifier (RFC 1334 §2.2.1) until an Ack or Nak for one of them arrives; after
    ``max_transmits`` unanswered Requests, fail.

    CHAP: answer every Challenge at once, always with the latest identifier (RFC 1994
    §4.1). A repeated Challenge (same identifier and value) gets the identical Response, so
    that an MS-CHAPv2 Success cannot refer to a peer challenge we have since replaced. The
    Response is also repeated every ``restart_interval`` (at most ``max_transmits`` times)
    until Success or Failure arrives: a lost Success would otherwise stall the link, which
    is why the authenticator "MUST allow repeated Response packets" (RFC 1994 §4.1). No
    Success or Failure within ``timeout`` seconds of :meth:`start` fails. MS-CHAPv2: the
    ``S=`` in a Success must prove that the authenticator knows the password (RFC 2759 §5,
    §8.8), or we fail; this holds for re-challenges too.
    """

    def __init__(
        self,
        method: AuthMethod,
        credentials: Credentials,
        *,
        restart_interval: float = 3.0,
        max_transmits: int = 10,
        timeout: float = 30.0,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__(method, restart_interval, max_transmits, timeout, rng)
        if max_transmits > 255:
            raise ValueError("max_transmits must be 1..255 (each Request needs a new id)")
        self._user = to_wire(credentials.username)
        self._password = to_wire(credentials.password)
        if len(self._user) > MAX_NAME_LEN:
            raise ValueError(f"user name longer than {MAX_NAME_LEN} octets")
        if method is AuthMethod.PAP and len(self._password) > MAX_PASSWORD_LEN:
            raise ValueError(f"PAP password longer than {MAX_PASSWORD_LEN} octets")
        if method is AuthMethod.MSCHAP_V2 and len(credentials.password) > MAX_MSCHAP_PASSWORD_CHARS:
            raise ValueError(f"MS-CHAPv2 password longer than {MAX_MSCHAP_PASSWORD_CHARS} chars")
        self.credentials = credentials
        self._sent_ids: set[int] = set()  # PAP: ids of this attempt's Requests (<= 255)
        # _transmits counts PAP Requests sent, or copies of the current CHAP Response.
        # CHAP: our Response value and packet for the Challenge we answered last.
        self._response = b""
        self._response_packet = b""
        self._confirmed_id: int | None = None  # CHAP: whose Success we have accepted

    def start(self, now: float) -> None:
        """LCP is Opened: PAP sends its first Request; CHAP starts waiting for a Challenge."""
        self.stop()
        self._phase = _Phase.WAITING
        if self.method is AuthMethod.PAP:
            self._next_id = self._rng(1)[0]  # unpredictable, like LCP's, across restarts
            self._send_request(now)
        else:
            self._give_up_at = now + self.timeout

    def stop(self) -> None:
        """LCP left Opened: cancel timers and forget everything, queued output included."""
        self._reset()
        self._sent_ids.clear()
        self._response = self._response_packet = b""
        self._confirmed_id = None

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or None when no timer runs."""
        if self._phase is _Phase.WAITING:
            return _min_deadline(self._retransmit_at, self._give_up_at)
        if self._phase is _Phase.SUCCEEDED:
            return self._retransmit_at  # CHAP: answering a re-challenge
        return None

    def handle_timer(self, now: float) -> None:
        """Retransmit the PAP Request or CHAP Response, or give up, as deadlines have passed."""
        if self._phase not in (_Phase.WAITING, _Phase.SUCCEEDED):
            return
        if (
            self._phase is _Phase.WAITING
            and self._give_up_at is not None
            and now >= self._give_up_at
        ):
            self.counters.timeouts += 1
            self._failed(f"no CHAP Success or Failure within {self.timeout:g} s")
            return
        if self._retransmit_at is None or now < self._retransmit_at:
            return
        if self.method is AuthMethod.PAP:
            if self._transmits >= self.max_transmits:
                self.counters.timeouts += 1
                self._failed(f"no reply to {self._transmits} Authenticate-Requests")
            else:
                self.counters.retransmits += 1
                self._send_request(now)
        elif self._transmits >= self.max_transmits:
            self._retransmit_at = None  # keep waiting: for a new Challenge or the timeout
        else:
            self.counters.retransmits += 1
            self._send_response(now)

    # -- receive ----------------------------------------------------------------------------

    def _handle(self, packet: ControlPacket, now: float) -> None:
        code = packet.code
        if self.method is AuthMethod.PAP:
            if code in (PapCode.AUTHENTICATE_ACK, PapCode.AUTHENTICATE_NAK):
                self._on_pap_reply(packet)
            else:
                self._unexpected(packet)
        elif code == ChapCode.CHALLENGE:
            self._on_chap_challenge(packet, now)
        elif code in (ChapCode.SUCCESS, ChapCode.FAILURE):
            self._on_chap_status(packet)
        else:
            self._unexpected(packet)

    def _on_pap_reply(self, packet: ControlPacket) -> None:
        message = parse_pap_reply(packet.data)
        if packet.identifier not in self._sent_ids:
            self.counters.discarded_bad_id += 1
            return
        if self._phase is not _Phase.WAITING:
            self.counters.duplicates += 1  # a reply to a retransmission, already decided
            return
        if packet.code == PapCode.AUTHENTICATE_ACK:
            self._succeed(message)
        else:
            self._refused(message)

    def _on_chap_challenge(self, packet: ControlPacket, now: float) -> None:
        value, name = parse_chap_value_name(packet.data)
        if self.method is AuthMethod.MSCHAP_V2 and len(value) != mschap.CHALLENGE_LEN:
            raise PppParseError(f"MS-CHAPv2 challenge of {len(value)} octets, not 16")
        if self._phase is _Phase.FAILED:
            self.counters.discarded_wrong_state += 1
            return
        if packet.identifier == self._chal_id and value == self._chal_value:
            # The authenticator repeated itself (our Response was lost): same answer.
            self.counters.duplicates += 1
        else:
            if self._phase is _Phase.SUCCEEDED:
                self.counters.rechallenges += 1
            _log.debug(
                "%s: Challenge id %d from %r",
                self._label,
                packet.identifier,
                message_from_wire(name),
            )
            self._chal_id = packet.identifier
            self._chal_value = value
            self._confirmed_id = None  # identifiers wrap: a reused one is a new Challenge
            self._response = self._compute_response(packet.identifier, value)
            self._response_packet = chap_value_name(
                ChapCode.RESPONSE, packet.identifier, self._response, self._user
            )
        self._transmits = 0
        self._send_response(now)

    def _compute_response(self, ident: int, challenge: bytes) -> bytes:
        if self.method is AuthMethod.CHAP_MD5:
            return md5_response(ident, self._password, challenge)
        peer_challenge = bytes(self._rng(mschap.CHALLENGE_LEN))[: mschap.CHALLENGE_LEN]
        peer_challenge = peer_challenge.ljust(mschap.CHALLENGE_LEN, b"\0")
        nt_response = mschap.generate_nt_response(
            challenge,
            peer_challenge,
            _mschap_user(self.credentials.username),
            self.credentials.password,
        )
        return mschapv2_response_value(peer_challenge, nt_response)

    def _on_chap_status(self, packet: ControlPacket) -> None:
        if self._chal_id is None or packet.identifier != self._chal_id:
            self.counters.discarded_bad_id += 1
            return
        if self._phase is _Phase.FAILED or self._confirmed_id == packet.identifier:
            # Already decided for this Challenge (a duplicate reply to a repeated Response).
            self.counters.duplicates += 1
            return
        text = message_from_wire(packet.data)
        self._retransmit_at = None
        if packet.code == ChapCode.FAILURE:
            self._refused(text)
            return
        if self.method is AuthMethod.MSCHAP_V2 and not self._authenticator_proved(packet.data):
            self.counters.bad_authenticator_responses += 1
            self._failed("authenticator response (S=) missing or wrong: not the real server?")
            return
        self._confirmed_id = packet.identifier
        if self._phase is _Phase.SUCCEEDED:
            _log.debug("%s: re-challenge passed", self._label)
            return
        self._succeed(text)

    def _authenticator_proved(self, message: bytes) -> bool:
        """RFC 2759 §5/§8.8: the message starts with ``S=`` and 40 hex digits that match
        what the password, our NT-Response and both challenges give."""
        received = message[: mschap.AUTHENTICATOR_RESPONSE_LEN]
        rest = message[mschap.AUTHENTICATOR_RESPONSE_LEN :]
        if len(received) != mschap.AUTHENTICATOR_RESPONSE_LEN or rest[:1] not in (b"", b" "):
            return False
        ours = split_mschapv2_response(self._response)
        assert ours is not None  # we built it
        peer_challenge, nt_response = ours
        return mschap.check_authenticator_response(
            self.credentials.password,
            nt_response,
            peer_challenge,
            self._chal_value,
            _mschap_user(self.credentials.username),
            received,
        )

    # -- sending and outcomes ---------------------------------------------------------------

    def _send_request(self, now: float) -> None:
        ident = self._next_id
        self._next_id = (ident + 1) & 0xFF
        self._sent_ids.add(ident)
        self._transmits += 1
        self._retransmit_at = now + self.restart_interval
        self._send(pap_request(ident, self._user, self._password))

    def _send_response(self, now: float) -> None:
        self._transmits += 1
        self._retransmit_at = now + self.restart_interval
        self._send(self._response_packet)

    def _succeed(self, message: str) -> None:
        self._phase = _Phase.SUCCEEDED
        self._cancel_timers()
        _log.debug("%s: authenticated as %r", self._label, self.credentials.username)
        self._emit(AuthSucceeded(self.credentials.username, AuthResult(True, message)))

    def _refused(self, message: str) -> None:
        """A PAP Nak or CHAP Failure: ``message`` is the authenticator's text, made safe."""
        self._failed(f"authenticator refused: {message}" if message else "authenticator refused")
