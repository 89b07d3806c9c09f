"""The option negotiation automaton of RFC 1661 §4, sans-I/O, generic over the protocol.

LCP, IPCP and IPV6CP run the same automaton and differ only in *what* they negotiate. The
automaton here owns everything the RFC fixes: the ten states, the event classification of
received packets, identifier matching, the Restart timer and its counters (Max-Configure,
Max-Terminate, Max-Failure), and the state transition table. A protocol supplies a
:class:`NegotiationPolicy`: the options it requests, its verdict on each option the peer
requests, what to do with the peer's Naks and Rejects, and what This-Layer-Up/Down/Started/
Finished mean for it.

Nothing here does I/O or reads a clock. Bytes and the current time go in (:meth:`Automaton.
receive`, :meth:`~Automaton.handle_timer`, the administrative and lower-layer events); packets
(:meth:`~Automaton.packets_to_send`), layer events (:meth:`~Automaton.events`) and the next
timer deadline (:meth:`~Automaton.next_deadline`) come out. Tests therefore run on a virtual
clock, and the asyncio layer only has to move bytes and sleep until the deadline.

The transition table is data (:data:`TRANSITIONS`), written row by row in the RFC's own
layout so it can be audited against §4.1 line by line; the code that runs it only interprets
actions. Network input is hostile: a malformed, unexpected or mismatched packet is dropped
and counted, never raised.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import NamedTuple

from .packet import (
    NCP_CODES,
    Code,
    ControlPacket,
    Option,
    PppParseError,
    codes_for,
)

__all__ = [
    "ACK",
    "DEFAULT_MAX_CONFIGURE",
    "DEFAULT_MAX_FAILURE",
    "DEFAULT_MAX_TERMINATE",
    "DEFAULT_RESTART_INTERVAL",
    "REJECT",
    "RESTART_TIMER_STATES",
    "TRANSITIONS",
    "Action",
    "Automaton",
    "Event",
    "FsmCounters",
    "Judgement",
    "LayerEvent",
    "NegotiationPolicy",
    "OptionVerdict",
    "OutgoingPacket",
    "RenegotiatingPolicy",
    "State",
    "Transition",
    "nak",
]

_log = logging.getLogger(__name__)

DEFAULT_RESTART_INTERVAL = 3.0
"""Seconds; RFC 1661 §4.6 Restart Timer: "SHOULD default to three (3) seconds"."""
DEFAULT_MAX_TERMINATE = 2
"""Terminate-Requests sent without a Terminate-Ack before giving up (RFC 1661 §4.6)."""
DEFAULT_MAX_CONFIGURE = 10
"""Configure-Requests sent without a valid reply before giving up (RFC 1661 §4.6)."""
DEFAULT_MAX_FAILURE = 5
"""Configure-Naks sent without sending a Configure-Ack before Naks become Rejects (§4.6)."""


# ---------------------------------------------------------------------------------------------
# States, events, actions (RFC 1661 §4.1-§4.4)


class State(IntEnum):
    """The ten states, numbered as in RFC 1661 §4.1."""

    INITIAL = 0
    STARTING = 1
    CLOSED = 2
    STOPPED = 3
    CLOSING = 4
    STOPPING = 5
    REQ_SENT = 6
    ACK_RCVD = 7
    ACK_SENT = 8
    OPENED = 9


class Event(Enum):
    """The sixteen events; the value is the RFC's name for the row."""

    UP = "Up"
    DOWN = "Down"
    OPEN = "Open"
    CLOSE = "Close"
    TO_PLUS = "TO+"
    TO_MINUS = "TO-"
    RCR_PLUS = "RCR+"
    RCR_MINUS = "RCR-"
    RCA = "RCA"
    RCN = "RCN"
    RTR = "RTR"
    RTA = "RTA"
    RUC = "RUC"
    RXJ_PLUS = "RXJ+"
    RXJ_MINUS = "RXJ-"
    RXR = "RXR"


class Action(Enum):
    """The thirteen actions; the value is the RFC's abbreviation."""

    TLU = "tlu"
    TLD = "tld"
    TLS = "tls"
    TLF = "tlf"
    IRC = "irc"
    ZRC = "zrc"
    SCR = "scr"
    SCA = "sca"
    SCN = "scn"
    STR = "str"
    STA = "sta"
    SCJ = "scj"
    SER = "ser"


class Transition(NamedTuple):
    """One cell of the table: actions in the RFC's order, then the state entered."""

    actions: tuple[Action, ...]
    next_state: State


def _c(*actions: Action, to: State) -> Transition:
    return Transition(actions, to)


# Short names so each row below reads like the RFC's row.
_INI, _STA, _CLD, _STP, _CLG, _SPG, _RQS, _ACR, _ACS, _OPN = tuple(State)
TLU, TLD, TLS, TLF, IRC, ZRC, SCR, SCA, SCN, STR, STA, SCJ, SER = tuple(Action)
_X = None  # "-": an illegal event in that state

# fmt: off
_ROWS: dict[Event, tuple[Transition | None, ...]] = {
    # State:          0 Initial        1 Starting             2 Closed               3 Stopped
    #                 4 Closing        5 Stopping             6 Req-Sent             7 Ack-Rcvd
    #                 8 Ack-Sent       9 Opened
    Event.UP: (
        _c(to=_CLD), _c(IRC, SCR, to=_RQS), _X, _X,
        _X, _X, _X, _X,
        _X, _X),
    Event.DOWN: (
        _X, _X, _c(to=_INI), _c(TLS, to=_STA),
        _c(to=_INI), _c(to=_STA), _c(to=_STA), _c(to=_STA),
        _c(to=_STA), _c(TLD, to=_STA)),
    Event.OPEN: (
        _c(TLS, to=_STA), _c(to=_STA), _c(IRC, SCR, to=_RQS), _c(to=_STP),
        _c(to=_SPG), _c(to=_SPG), _c(to=_RQS), _c(to=_ACR),
        _c(to=_ACS), _c(to=_OPN)),
    Event.CLOSE: (
        _c(to=_INI), _c(TLF, to=_INI), _c(to=_CLD), _c(to=_CLD),
        _c(to=_CLG), _c(to=_CLG), _c(IRC, STR, to=_CLG), _c(IRC, STR, to=_CLG),
        _c(IRC, STR, to=_CLG), _c(TLD, IRC, STR, to=_CLG)),
    Event.TO_PLUS: (
        _X, _X, _X, _X,
        _c(STR, to=_CLG), _c(STR, to=_SPG), _c(SCR, to=_RQS), _c(SCR, to=_RQS),
        _c(SCR, to=_ACS), _X),
    Event.TO_MINUS: (
        _X, _X, _X, _X,
        _c(TLF, to=_CLD), _c(TLF, to=_STP), _c(TLF, to=_STP), _c(TLF, to=_STP),
        _c(TLF, to=_STP), _X),
    Event.RCR_PLUS: (
        _X, _X, _c(STA, to=_CLD), _c(IRC, SCR, SCA, to=_ACS),
        _c(to=_CLG), _c(to=_SPG), _c(SCA, to=_ACS), _c(SCA, TLU, to=_OPN),
        _c(SCA, to=_ACS), _c(TLD, SCR, SCA, to=_ACS)),
    Event.RCR_MINUS: (
        _X, _X, _c(STA, to=_CLD), _c(IRC, SCR, SCN, to=_RQS),
        _c(to=_CLG), _c(to=_SPG), _c(SCN, to=_RQS), _c(SCN, to=_ACR),
        _c(SCN, to=_RQS), _c(TLD, SCR, SCN, to=_RQS)),
    Event.RCA: (
        _X, _X, _c(STA, to=_CLD), _c(STA, to=_STP),
        _c(to=_CLG), _c(to=_SPG), _c(IRC, to=_ACR), _c(SCR, to=_RQS),
        _c(IRC, TLU, to=_OPN), _c(TLD, SCR, to=_RQS)),
    Event.RCN: (
        _X, _X, _c(STA, to=_CLD), _c(STA, to=_STP),
        _c(to=_CLG), _c(to=_SPG), _c(IRC, SCR, to=_RQS), _c(SCR, to=_RQS),
        _c(IRC, SCR, to=_ACS), _c(TLD, SCR, to=_RQS)),
    Event.RTR: (
        _X, _X, _c(STA, to=_CLD), _c(STA, to=_STP),
        _c(STA, to=_CLG), _c(STA, to=_SPG), _c(STA, to=_RQS), _c(STA, to=_RQS),
        _c(STA, to=_RQS), _c(TLD, ZRC, STA, to=_SPG)),
    Event.RTA: (
        _X, _X, _c(to=_CLD), _c(to=_STP),
        _c(TLF, to=_CLD), _c(TLF, to=_STP), _c(to=_RQS), _c(to=_RQS),
        _c(to=_ACS), _c(TLD, SCR, to=_RQS)),
    Event.RUC: (
        _X, _X, _c(SCJ, to=_CLD), _c(SCJ, to=_STP),
        _c(SCJ, to=_CLG), _c(SCJ, to=_SPG), _c(SCJ, to=_RQS), _c(SCJ, to=_ACR),
        _c(SCJ, to=_ACS), _c(SCJ, to=_OPN)),
    Event.RXJ_PLUS: (
        _X, _X, _c(to=_CLD), _c(to=_STP),
        _c(to=_CLG), _c(to=_SPG), _c(to=_RQS), _c(to=_RQS),
        _c(to=_ACS), _c(to=_OPN)),
    Event.RXJ_MINUS: (
        _X, _X, _c(TLF, to=_CLD), _c(TLF, to=_STP),
        _c(TLF, to=_CLD), _c(TLF, to=_STP), _c(TLF, to=_STP), _c(TLF, to=_STP),
        _c(TLF, to=_STP), _c(TLD, IRC, STR, to=_SPG)),
    Event.RXR: (
        _X, _X, _c(to=_CLD), _c(to=_STP),
        _c(to=_CLG), _c(to=_SPG), _c(to=_RQS), _c(to=_ACR),
        _c(to=_ACS), _c(SER, to=_OPN)),
}
# fmt: on

TRANSITIONS: dict[tuple[State, Event], Transition] = {
    (state, event): cell
    for event, row in _ROWS.items()
    for state, cell in zip(State, row, strict=True)
    if cell is not None
}
"""RFC 1661 §4.1 as data: ``(state, event) -> (actions, next state)``. A missing key is the
table's "-" (illegal event: counted and logged, no transition). The footnoted options are
not taken: no restart option on Open ("r"), no passive wait on TO- ("p"); "x" (crossed
connection) is the plain table entry."""

RESTART_TIMER_STATES: frozenset[State] = frozenset(
    state for (state, event) in TRANSITIONS if event is Event.TO_PLUS
)
"""States in which the Restart timer runs: those with TO events (RFC 1661 §4.1, after the
table). Leaving them stops the timer."""

_NEGOTIATING = frozenset((State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT))
_REPLY_CHECKED = _NEGOTIATING | {State.OPENED}


# ---------------------------------------------------------------------------------------------
# What a protocol decides


class Judgement(Enum):
    ACK = "ack"
    NAK = "nak"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class OptionVerdict:
    """A policy's answer to one option of the peer's Configure-Request.

    ``suggestions`` go in the Configure-Nak in place of the option: normally one option of
    the same type with an acceptable value, several when the option may be listed more than
    once (RFC 1661 §5.3). A Nak without suggestions is sent as a Reject, since a Nak must
    say what would be acceptable.
    """

    judgement: Judgement
    suggestions: tuple[Option, ...] = ()


ACK = OptionVerdict(Judgement.ACK)
REJECT = OptionVerdict(Judgement.REJECT)


def nak(*suggestions: Option) -> OptionVerdict:
    """Nak an option, proposing ``suggestions`` instead."""
    return OptionVerdict(Judgement.NAK, suggestions)


class NegotiationPolicy(ABC):
    """What one protocol (LCP, IPCP, IPV6CP) decides; the automaton does everything else.

    Judging must be free of side effects: a request may be judged and then answered with a
    Terminate-Ack, or not at all, depending on the state. Values take effect only through
    :meth:`peer_request_acked` (we sent a Configure-Ack) and :meth:`request_acked` (the peer
    sent one). Callbacks run synchronously inside the automaton; one that calls back into the
    same automaton (say, ``close()`` from :meth:`this_layer_finished`) is queued and runs
    after the current transition completes.
    """

    @property
    @abstractmethod
    def protocol(self) -> int:
        """The PPP protocol number this policy negotiates (0xC021, 0x8021, 0x8057)."""

    extension_codes: frozenset[int] = frozenset()
    """Codes beyond RFC 1661's the protocol understands (e.g. RFC 1570's 12 and 13 for
    LCP); they go to :meth:`extension_packet` instead of being Code-Rejected."""

    # -- our request ------------------------------------------------------------------------

    @abstractmethod
    def request_options(self) -> Sequence[Option]:
        """The options of our next Configure-Request, after every Nak/Reject applied so far.

        Called for every transmission, retransmissions included.
        """

    @abstractmethod
    def apply_nak(self, options: Sequence[Option]) -> None:
        """The peer Nak'd our last request with these (its suggested values, maybe options we
        did not ask for). Adopt what we can live with for the next request (§5.3)."""

    @abstractmethod
    def apply_reject(self, options: Sequence[Option]) -> None:
        """The peer Rejected these options of our last request: the next request MUST NOT
        contain them (§5.4). If we cannot live without one, close the link instead."""

    def request_acked(self, options: Sequence[Option]) -> None:
        """The peer Acked our last request: these values are now in force for our side."""
        return None

    # -- the peer's request -----------------------------------------------------------------

    @abstractmethod
    def judge_option(self, option: Option) -> OptionVerdict:
        """Ack, Nak (with acceptable values) or Reject one option the peer requested."""

    single_instance: frozenset[int] = frozenset()
    """Option types that may appear once per request: a repeat is Rejected on its own
    (RFC 1661 §6: "only one instance"), the first is judged as usual."""

    def judge_request(self, options: Sequence[Option]) -> Sequence[OptionVerdict]:
        """One verdict per option, in order. Override to judge options that interact beyond
        the duplicates of :attr:`single_instance`."""
        seen: set[int] = set()
        verdicts: list[OptionVerdict] = []
        for option in options:
            if option.type in self.single_instance and option.type in seen:
                verdicts.append(REJECT)
            else:
                seen.add(option.type)
                verdicts.append(self.judge_option(option))
        return verdicts

    def desired_options(self, requested: Sequence[Option]) -> Sequence[Option]:
        """Options we want the peer to request but it did not: appended to a Configure-Nak
        to prompt it (§5.3). Dropped once Max-Failure is reached."""
        return ()

    def peer_request_acked(self, options: Sequence[Option]) -> None:
        """We are Acking the peer's request: these values are now in force for its side."""
        return None

    # -- layer signals (RFC 1661 §4.4) ------------------------------------------------------

    def this_layer_up(self) -> None:
        """Entering Opened: upper layers may use the link (LCP: Up to auth/NCPs)."""
        return None

    def this_layer_down(self) -> None:
        """Leaving Opened: upper layers must stop using the link (LCP: Down to NCPs)."""
        return None

    def this_layer_started(self) -> None:
        """Entering Starting: the lower layer is needed (LCP: bring up the session)."""
        return None

    def this_layer_finished(self) -> None:
        """Entering Initial/Closed/Stopped: the lower layer is no longer needed (LCP: tear the
        L2TP session down; NCP: LCP may close if no other NCP is open)."""
        return None

    # -- rejects and link maintenance -------------------------------------------------------

    def is_catastrophic_code(self, code: int) -> bool:
        """Whether a Code-Reject of ``code`` is RXJ- (link cannot work) rather than RXJ+.

        The default treats the codes every LCP-family protocol needs (1-7) as catastrophic
        (RFC 1661 §4.3: "a Code-Reject of Configure-Request").
        """
        return code in NCP_CODES

    def code_rejected(self, code: int) -> None:
        """The peer Code-Rejected a code it can do without: stop sending it (RXJ+)."""
        return None

    def protocol_rejected(self, protocol: int) -> None:
        """LCP only: the peer Protocol-Rejected ``protocol`` (not LCP itself); stop it."""
        return None

    def magic_number(self) -> int:
        """LCP only: our negotiated Magic-Number for Echo-Reply, 0 until negotiated (§5.8)."""
        return 0

    def link_maintenance(self, packet: ControlPacket) -> None:
        """LCP only, in Opened: an Echo-Request, Echo-Reply or Discard-Request arrived, for
        keepalive and loop detection. The automaton answers Echo-Requests itself."""
        return None

    def extension_packet(self, packet: ControlPacket) -> None:
        """A packet with one of :attr:`extension_codes`; no automaton transition."""
        return None


class RenegotiatingPolicy(NegotiationPolicy):
    """A policy whose results belong to one negotiation.

    Values adopted from Naks, options the peer refused and the results themselves are reset
    when the next negotiation starts: at the first Configure-Request after the layer left
    Opened (or started), as pppd's ``resetci``. Subclasses put the reset in
    :meth:`_start_negotiation` and call :meth:`_begin` before building a request.
    """

    _fresh = True

    def _start_negotiation(self) -> None:
        """Forget the previous negotiation (called once per negotiation, lazily)."""

    def _begin(self) -> None:
        if self._fresh:
            self._fresh = False
            self._start_negotiation()

    def this_layer_up(self) -> None:
        self._fresh = False

    def this_layer_down(self) -> None:
        self._fresh = True

    def this_layer_started(self) -> None:
        self._fresh = True

    def this_layer_finished(self) -> None:
        self._fresh = True


# ---------------------------------------------------------------------------------------------
# Outputs


class OutgoingPacket(NamedTuple):
    """A control packet to frame and send: PPP protocol number and the encoded packet."""

    protocol: int
    data: bytes


class LayerEvent(Enum):
    """The layer signals, also queued for :meth:`Automaton.events`."""

    UP = "this-layer-up"
    DOWN = "this-layer-down"
    STARTED = "this-layer-started"
    FINISHED = "this-layer-finished"


@dataclass(slots=True)
class FsmCounters:
    """Per-automaton counters. ``rx``/``tx`` are keyed by packet code."""

    rx: dict[int, int] = field(default_factory=dict)
    tx: dict[int, int] = field(default_factory=dict)
    discarded_malformed: int = 0
    """Unparseable: bad Length, bad option list, too short for its code's fields."""
    discarded_bad_id: int = 0
    """Ack/Nak/Reject whose identifier is not that of our last, unanswered request."""
    discarded_mismatch: int = 0
    """Ack whose options differ from our request's, Reject that is not a subset of it."""
    discarded_wrong_state: int = 0
    """Well-formed but not acceptable in the current state (e.g. anything while the lower
    layer is down, a Protocol-Reject outside Opened)."""
    illegal_events: int = 0
    """Events the table marks "-" (a packet in Initial/Starting, Up when already up, ...)."""
    restarts: int = 0
    """Restart timer expiries with the counter > 0 (TO+): each causes a retransmission."""
    timeouts: int = 0
    """Restart timer expiries with the counter exhausted (TO-)."""


@dataclass(slots=True)
class _Stimulus:
    """What caused the current transition: the time and, for receive events, the packet and
    the reply already chosen for it (Configure-Ack or Nak/Reject)."""

    now: float
    packet: ControlPacket | None = None
    reply: ControlPacket | None = None


# ---------------------------------------------------------------------------------------------
# The automaton


class Automaton:
    """One RFC 1661 automaton for one protocol on one link.

    Drive it with :meth:`lower_up`/:meth:`lower_down` (from the layer below: the L2TP session
    for LCP, LCP's This-Layer-Up/Down for an NCP), :meth:`open`/:meth:`close` (administrative
    intent), :meth:`receive` (each control packet of :attr:`protocol`) and
    :meth:`handle_timer` (at or after :meth:`next_deadline`). After each call, collect
    :meth:`packets_to_send` and :meth:`events`. Every Configure-Request, retransmissions
    included, carries a fresh identifier, so a late reply to an earlier one is recognisably
    stale.
    """

    def __init__(
        self,
        policy: NegotiationPolicy,
        *,
        restart_interval: float = DEFAULT_RESTART_INTERVAL,
        max_configure: int = DEFAULT_MAX_CONFIGURE,
        max_terminate: int = DEFAULT_MAX_TERMINATE,
        max_failure: int = DEFAULT_MAX_FAILURE,
        first_identifier: int = 1,
        peer_mru: int = 1500,
    ) -> None:
        if restart_interval <= 0:
            raise ValueError("restart_interval must be positive")
        if max_configure < 1 or max_terminate < 1:
            raise ValueError("max_configure and max_terminate must be at least 1")
        if max_failure < 0:
            raise ValueError("max_failure must not be negative")
        self.policy = policy
        self.protocol = policy.protocol
        self.restart_interval = restart_interval
        self.max_configure = max_configure
        self.max_terminate = max_terminate
        self.max_failure = max_failure
        self.peer_mru = peer_mru
        """Bounds Code-Reject and Protocol-Reject copies (§5.6, §5.7); LCP updates it."""
        self.counters = FsmCounters()

        self._codes = codes_for(self.protocol) | policy.extension_codes
        self._state = State.INITIAL
        self._restart_count = 0
        self._deadline: float | None = None
        self._next_id = first_identifier & 0xFF
        self._naks_sent = 0
        # Our last Configure-Request, for matching replies (§5.2-§5.4).
        self._req_id: int | None = None
        self._req_data = b""
        self._req_options: tuple[Option, ...] = ()
        self._req_answered = True
        self._terminate_data = b""

        self._outbox: list[OutgoingPacket] = []
        self._events: list[LayerEvent] = []
        self._busy = False
        self._deferred: deque[Callable[[], None]] = deque()

    # -- observation ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def is_opened(self) -> bool:
        return self._state is State.OPENED

    @property
    def restart_counter(self) -> int:
        """Transmissions left before TO- (RFC 1661 §4.4 irc)."""
        return self._restart_count

    def packets_to_send(self) -> list[OutgoingPacket]:
        """Drain the packets produced so far, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    def events(self) -> list[LayerEvent]:
        """Drain the layer signals produced so far, oldest first."""
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must be called next, or None if the timer is stopped."""
        return self._deadline

    # -- inputs: administrative and lower-layer events -------------------------------------

    def lower_up(self, now: float) -> None:
        """The lower layer can carry packets (Up event)."""
        self._serialized(lambda: self._dispatch(Event.UP, _Stimulus(now)))

    def lower_down(self, now: float) -> None:
        """The lower layer can no longer carry packets (Down event)."""
        self._serialized(lambda: self._dispatch(Event.DOWN, _Stimulus(now)))

    def open(self, now: float) -> None:
        """The link is administratively allowed to open (Open event)."""
        self._serialized(lambda: self._dispatch(Event.OPEN, _Stimulus(now)))

    def close(self, now: float, reason: bytes | str = b"") -> None:
        """The link is administratively closed (Close event); ``reason`` travels in the
        Terminate-Request's data field for the peer's logs."""
        data = reason.encode("utf-8", "replace") if isinstance(reason, str) else bytes(reason)
        data = data[: max(0, self.peer_mru - 4)]  # a Terminate-Request must fit the MRU (§5)

        def run() -> None:
            self._terminate_data = data
            self._dispatch(Event.CLOSE, _Stimulus(now))

        self._serialized(run)

    def protocol_rejected(self, now: float) -> None:
        """The peer's LCP Protocol-Rejected this (NCP) protocol: a catastrophic RXJ- for this
        automaton (RFC 1661 §5.7, as pppd's fsm_protreject). The reject arrives through LCP,
        so the link that demultiplexes it calls this rather than :meth:`receive`."""
        if self._state in (State.INITIAL, State.STARTING):
            return
        self._serialized(lambda: self._dispatch(Event.RXJ_MINUS, _Stimulus(now)))

    def handle_timer(self, now: float) -> None:
        """Fire the Restart timer if its deadline has passed (TO+ or TO-)."""
        self._serialized(lambda: self._timer(now))

    def receive(self, data: bytes, now: float) -> None:
        """Handle the Information field of one frame of this protocol. Never raises on any
        input: what cannot be used is counted and dropped."""
        self._serialized(lambda: self._receive(data, now))

    # -- outputs on demand (LCP link maintenance) -------------------------------------------

    def send_echo_request(self, data: bytes = b"") -> int | None:
        """Queue an Echo-Request (LCP, Opened only, §5.8); its identifier, or None if not
        allowed now."""
        return self._send_magic(Code.ECHO_REQUEST, data)

    def send_discard_request(self, data: bytes = b"") -> int | None:
        """Queue a Discard-Request (LCP, Opened only, §5.9); its identifier or None."""
        return self._send_magic(Code.DISCARD_REQUEST, data)

    def send_protocol_reject(self, protocol: int, information: bytes) -> bool:
        """Queue a Protocol-Reject for a frame of an unsupported ``protocol`` (LCP, Opened
        only, §5.7). False when it may not be sent now."""
        if Code.PROTOCOL_REJECT not in self._codes or not self.is_opened:
            return False
        pkt = ControlPacket.protocol_reject(
            self._new_id(), protocol & 0xFFFF, information, self.peer_mru
        )
        self._send(pkt)
        return True

    def _send_magic(self, code: Code, data: bytes) -> int | None:
        if code not in self._codes or not self.is_opened:
            return None
        ident = self._new_id()
        self._send(ControlPacket.with_magic(code, ident, self.policy.magic_number(), data))
        return ident

    # -- internals: serialization -----------------------------------------------------------

    def _serialized(self, work: Callable[[], None]) -> None:
        """Run ``work`` now, or after the current transition if a policy callback re-entered.

        The table's actions assume a transition is atomic; a callback that closes the link
        mid-transition would otherwise see (and change) a half-done state.
        """
        if self._busy:
            self._deferred.append(work)
            return
        self._busy = True
        try:
            work()
            while self._deferred:
                self._deferred.popleft()()
        except BaseException:
            self._deferred.clear()
            raise
        finally:
            self._busy = False

    # -- internals: timer -------------------------------------------------------------------

    def _timer(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self._restart_count > 0:
            self.counters.restarts += 1
            self._dispatch(Event.TO_PLUS, _Stimulus(now))
        else:
            self.counters.timeouts += 1
            self._dispatch(Event.TO_MINUS, _Stimulus(now))

    # -- internals: receive -----------------------------------------------------------------

    def _receive(self, data: bytes, now: float) -> None:
        try:
            packet = ControlPacket.decode(data)
        except PppParseError as exc:
            self._drop_malformed(exc)
            return
        rx = self.counters.rx
        rx[packet.code] = rx.get(packet.code, 0) + 1
        if self._state in (State.INITIAL, State.STARTING):
            # The lower layer is down: no packet can legitimately arrive (table rows "-").
            self.counters.discarded_wrong_state += 1
            self._illegal(packet.code_name)
            return
        try:
            self._classify(packet, now)
        except PppParseError as exc:
            # Its fields do not parse after all: a malformed packet, not a received one, so
            # that every input lands in exactly one counter.
            rx[packet.code] -= 1
            self._drop_malformed(exc)

    def _drop_malformed(self, exc: PppParseError) -> None:
        self.counters.discarded_malformed += 1
        _log.debug("proto %#06x: malformed packet dropped: %s", self.protocol, exc.reason)

    def _classify(self, packet: ControlPacket, now: float) -> None:
        """Turn a packet into an event (RFC 1661 §4.3) and dispatch it. Raises only
        PppParseError, for fields that do not parse."""
        code = packet.code
        stim = _Stimulus(now, packet)
        if code not in self._codes:
            self._dispatch(Event.RUC, stim)
        elif code == Code.CONFIGURE_REQUEST:
            self._receive_configure_request(stim, packet)
        elif code in (Code.CONFIGURE_ACK, Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT):
            self._receive_configure_reply(stim, packet)
        elif code == Code.TERMINATE_REQUEST:
            self._dispatch(Event.RTR, stim)
        elif code == Code.TERMINATE_ACK:
            self._dispatch(Event.RTA, stim)
        elif code == Code.CODE_REJECT:
            rejected = packet.rejected_code()
            if self.policy.is_catastrophic_code(rejected):
                self._dispatch(Event.RXJ_MINUS, stim)
            else:
                self.policy.code_rejected(rejected)
                self._dispatch(Event.RXJ_PLUS, stim)
        elif code == Code.PROTOCOL_REJECT:
            rejected_protocol, _info = packet.rejected_protocol()
            if not self.is_opened:
                # §5.7: "received in any state other than the LCP Opened state SHOULD be
                # silently discarded".
                self.counters.discarded_wrong_state += 1
            elif rejected_protocol == self.protocol:
                self._dispatch(Event.RXJ_MINUS, stim)
            else:
                self.policy.protocol_rejected(rejected_protocol)
                self._dispatch(Event.RXJ_PLUS, stim)
        elif code in (Code.ECHO_REQUEST, Code.ECHO_REPLY, Code.DISCARD_REQUEST):
            packet.magic_and_data()  # validates the magic field is present
            self._dispatch(Event.RXR, stim)
            if self.is_opened:
                self.policy.link_maintenance(packet)
        else:
            self.policy.extension_packet(packet)

    def _receive_configure_request(self, stim: _Stimulus, packet: ControlPacket) -> None:
        options = packet.options()  # a bad option list discards the packet (§6)
        plus = TRANSITIONS.get((self._state, Event.RCR_PLUS))
        minus = TRANSITIONS.get((self._state, Event.RCR_MINUS))
        if plus == minus:
            # The verdict cannot change what happens (Closed, Closing, Stopping): skip judging.
            self._dispatch(Event.RCR_PLUS, stim)
            return
        reply = self._judge(packet, options)
        stim.reply = reply
        good = reply.code == Code.CONFIGURE_ACK
        self._dispatch(Event.RCR_PLUS if good else Event.RCR_MINUS, stim)

    def _judge(self, request: ControlPacket, options: tuple[Option, ...]) -> ControlPacket:
        """Build the Ack, Nak or Reject for the peer's request (RFC 1661 §5.2-§5.4, §4.6).

        Any Reject wins over Naks (Naks wait for the next request); after Max-Failure Naks
        without an Ack, Naks become Rejects and desired options are no longer appended.
        """
        verdicts = list(self.policy.judge_request(options))
        if len(verdicts) != len(options):
            raise ValueError("policy must return one verdict per option")
        give_up = self._naks_sent >= self.max_failure
        rejects: list[Option] = []
        naks: list[Option] = []
        for option, verdict in zip(options, verdicts, strict=True):
            if verdict.judgement is Judgement.ACK:
                continue
            if verdict.judgement is Judgement.REJECT or give_up or not verdict.suggestions:
                rejects.append(option)
            else:
                naks.extend(verdict.suggestions)
        ident = request.identifier
        if rejects:
            return ControlPacket.configure(Code.CONFIGURE_REJECT, ident, rejects)
        if not give_up:
            naks.extend(self.policy.desired_options(options))
        if naks:
            return ControlPacket.configure(Code.CONFIGURE_NAK, ident, naks)
        # Acked options are echoed byte for byte, unmodified and in order (§5.2).
        return ControlPacket(Code.CONFIGURE_ACK, ident, request.data)

    def _receive_configure_reply(self, stim: _Stimulus, packet: ControlPacket) -> None:
        options = packet.options()
        state = self._state
        if state in _REPLY_CHECKED:
            # Only a reply to our last request, and only the first one, is valid (§5.1: the
            # identifier changes after a valid reply). A duplicated Ack therefore cannot
            # bounce an Opened link through the crossed-connection cells.
            if self._req_id is None or packet.identifier != self._req_id or self._req_answered:
                self.counters.discarded_bad_id += 1
                return
            if packet.code == Code.CONFIGURE_ACK and packet.data != self._req_data:
                self.counters.discarded_mismatch += 1
                return
            if packet.code == Code.CONFIGURE_REJECT and not all(
                option in self._req_options for option in options
            ):
                self.counters.discarded_mismatch += 1
                return
            self._req_answered = True
            if packet.code == Code.CONFIGURE_ACK:
                self.policy.request_acked(options)
            elif packet.code == Code.CONFIGURE_NAK:
                self.policy.apply_nak(options)
            else:
                self.policy.apply_reject(options)
        # In Closed/Stopped/Closing/Stopping no request is outstanding; the table answers a
        # stray reply with a Terminate-Ack (or ignores it) to resynchronize the peer.
        event = Event.RCA if packet.code == Code.CONFIGURE_ACK else Event.RCN
        self._dispatch(event, stim)

    # -- internals: the table interpreter ---------------------------------------------------

    def _illegal(self, what: str) -> None:
        self.counters.illegal_events += 1
        _log.debug(
            "proto %#06x: illegal event %s in state %s", self.protocol, what, self._state.name
        )

    def _dispatch(self, event: Event, stim: _Stimulus) -> None:
        transition = TRANSITIONS.get((self._state, event))
        if transition is None:
            self._illegal(event.value)
            if stim.packet is not None:
                self.counters.discarded_wrong_state += 1
            return
        # The new state is set first so callbacks observe the state being entered (tlu sees
        # Opened, tld sees the state after Opened, tlf sees Closed/Stopped/Initial).
        self._state = transition.next_state
        for action in transition.actions:
            self._act(action, transition.actions, stim)
        if self._state not in RESTART_TIMER_STATES:
            self._deadline = None
        if self._state not in _NEGOTIATING:
            # A negotiation attempt ended (Opened, or given up): the next one starts afresh.
            self._naks_sent = 0
        if self._state not in (State.CLOSING, State.STOPPING):
            # A Close reason belongs to the termination it started, not to a later one.
            self._terminate_data = b""

    def _act(self, action: Action, actions: tuple[Action, ...], stim: _Stimulus) -> None:
        policy = self.policy
        if action is Action.TLU:
            self._events.append(LayerEvent.UP)
            policy.this_layer_up()
        elif action is Action.TLD:
            self._events.append(LayerEvent.DOWN)
            policy.this_layer_down()
        elif action is Action.TLS:
            self._events.append(LayerEvent.STARTED)
            policy.this_layer_started()
        elif action is Action.TLF:
            self._events.append(LayerEvent.FINISHED)
            policy.this_layer_finished()
        elif action is Action.IRC:
            # Max-Terminate when a Terminate-Request follows, else Max-Configure (§4.4).
            self._restart_count = (
                self.max_terminate if Action.STR in actions else self.max_configure
            )
        elif action is Action.ZRC:
            # Pause one restart period before finishing, so the peer sees the Terminate-Ack
            # (§3.7, §4.4 zrc).
            self._restart_count = 0
            self._deadline = stim.now + self.restart_interval
        elif action is Action.SCR:
            self._send_configure_request(stim.now)
        elif action is Action.SCA or action is Action.SCN:
            self._send_reply(stim.reply)
        elif action is Action.STR:
            self._restart_count = max(0, self._restart_count - 1)
            self._deadline = stim.now + self.restart_interval
            self._send(ControlPacket(Code.TERMINATE_REQUEST, self._new_id(), self._terminate_data))
        elif action is Action.STA:
            # Copies the identifier of what it answers (§5.5); every sta in the table answers
            # a received packet.
            ident = stim.packet.identifier if stim.packet is not None else self._new_id()
            self._send(ControlPacket(Code.TERMINATE_ACK, ident))
        elif action is Action.SCJ:
            if stim.packet is not None:
                rejected = stim.packet.encode()
                self._send(ControlPacket.code_reject(self._new_id(), rejected, self.peer_mru))
        elif action is Action.SER:
            # RXR also covers Echo-Reply and Discard-Request, which get no answer (§5.8, §5.9).
            packet = stim.packet
            if packet is not None and packet.code == Code.ECHO_REQUEST:
                _magic, data = packet.magic_and_data()
                reply = ControlPacket.with_magic(
                    Code.ECHO_REPLY, packet.identifier, policy.magic_number(), data
                )
                self._send(reply)

    def _send_configure_request(self, now: float) -> None:
        options = tuple(self.policy.request_options())
        ident = self._new_id()
        packet = ControlPacket.configure(Code.CONFIGURE_REQUEST, ident, options)
        self._req_id = ident
        self._req_data = packet.data
        self._req_options = options
        self._req_answered = False
        self._restart_count = max(0, self._restart_count - 1)
        self._deadline = now + self.restart_interval
        self._send(packet)

    def _send_reply(self, reply: ControlPacket | None) -> None:
        if reply is None:
            return
        if reply.code == Code.CONFIGURE_ACK:
            self._naks_sent = 0
            self.policy.peer_request_acked(reply.options())
        elif reply.code == Code.CONFIGURE_NAK:
            self._naks_sent += 1
        self._send(reply)

    def _new_id(self) -> int:
        ident = self._next_id
        self._next_id = (ident + 1) & 0xFF
        return ident

    def _send(self, packet: ControlPacket) -> None:
        tx = self.counters.tx
        tx[packet.code] = tx.get(packet.code, 0) + 1
        self._outbox.append(OutgoingPacket(self.protocol, packet.encode()))
