"""Reliable delivery of control messages for one control connection, sans-I/O.

RFC 2661 §5.8 and RFC 3931 §4.2 give every tunnel (control connection) a small sliding-window
transport: each non-ZLB message takes one 16-bit sequence number (Ns), the peer acknowledges
cumulatively with Nr = the next Ns it expects, unacknowledged messages are retransmitted with
exponential backoff, and too many retransmissions of one message clear the tunnel. Appendix A
of both RFCs adds TCP-style slow start and congestion avoidance on top of the peer's Receive
Window Size.

This module owns exactly that state and nothing else. It never touches a socket or a clock:
the caller passes ``now`` (seconds, any monotonic origin) into :meth:`ReliableTransport.send`,
:meth:`~ReliableTransport.receive` and :meth:`~ReliableTransport.handle_timer`, encodes
whatever :meth:`~ReliableTransport.datagrams_to_send` returns, and arms one timer for
:meth:`~ReliableTransport.next_deadline`. That keeps the transport testable on a virtual clock
and lets a daemon drive thousands of tunnels from one event loop.

Choices where the RFCs leave room (each explained where it is implemented):

* Out-of-order messages within our advertised window are buffered, not dropped (both RFCs
  allow either; buffering saves a round of retransmissions on a lossy path).
* Slow start counts every newly acknowledged message as one ACK, so a cumulative Nr that
  covers three messages grows CWND as three separate ACKs would (Appendix A's "doubling CWND
  with each round trip" only holds that way).
* A retransmission timer runs per message, but only messages inside the current window
  ``min(CWND, peer RWS)`` may be retransmitted. The expiry of a message sent since the last
  congestion response halves SSTHRESH and resets CWND to 1 (Appendix A); messages sent before
  that response are part of the same loss episode and are resent as the window reopens without
  shrinking it again (the TCP reading of "congestion", RFC 5681 §3.1).
* ``max_retries`` counts retransmissions: with the v2 default of 5, a message goes out at
  t = 0, 1, 3, 7, 15 and 23 s and the tunnel is declared dead at 31 s, which is the RFC's
  "full retransmission cycle" of 31 s, also used as the default StopCCN linger.
* An Nr beyond the last Ns sent + 1 makes a v3 message invalid (RFC 3931 §4.2: dropped and
  reported); RFC 2661 says nothing, so a v2 message keeps its payload and only its bogus Nr is
  ignored (and still counted and reported).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections import deque
from dataclasses import dataclass
from typing import TypeAlias

from ..wire.constants import MessageType
from ..wire.message import ControlMessage

SEQ_MOD = 0x10000
"""Ns and Nr are 16-bit free-running counters (RFC 2661 §5.8, RFC 3931 §4.2)."""

SEQ_HALF = 0x8000
"""A value is "at or before" a reference if it lies in the reference and the 32767 before it."""

MAX_WINDOW = SEQ_HALF - 1
"""The largest window that half-space comparison can tell apart from duplicates."""

MIN_RETRANSMIT_CAP = 8.0
"""RFC 2661 §5.8: a cap on the retransmission interval MUST be no less than 8 seconds."""


def seq_add(seq: int, n: int) -> int:
    """``seq + n`` modulo 65536."""
    return (seq + n) & 0xFFFF


def seq_le(a: int, b: int) -> bool:
    """True when ``a`` is "less than or equal to" ``b`` in the RFCs' sense: ``a`` lies in
    ``b`` and the 32767 values before it (modulo 65536). With ``b`` = 15 that is 0..15 and
    32784..65535, the RFCs' own example."""
    return ((b - a) & 0xFFFF) < SEQ_HALF


def seq_lt(a: int, b: int) -> bool:
    """True when ``a`` is strictly before ``b`` (half-space comparison)."""
    return a != b and seq_le(a, b)


# --------------------------------------------------------------------------------------------
# Configuration, events, counters, errors


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Tunables of one control connection's reliable transport.

    ``max_retries`` and ``linger`` default (``None``) to the version's recommendation: 5 (v2)
    or 10 (v3) retransmissions, and one full retransmission cycle of lingering after StopCCN.
    ``sccrq_max_retries`` lets the SCCRQ give up sooner so that a caller can fail over to
    another peer (RFC 3931 §4.2). ``explicit_ack`` makes a v3 transport acknowledge with the
    ACK message (type 20) instead of a ZLB: required when control message authentication is
    on, because a ZLB cannot carry a Message Digest (RFC 3931 §6.15).
    """

    version: int = 2
    receive_window: int = 4
    """Our Receive Window Size, as advertised in SCCRQ/SCCRP: the out-of-order buffer bound.
    The default equals what a peer assumes when the AVP is absent."""
    peer_receive_window: int = 4
    """The peer's RWS until its Receive Window Size AVP is known (the RFCs' default 4)."""
    retransmit_initial: float = 1.0
    retransmit_cap: float = 8.0
    max_retries: int | None = None
    sccrq_max_retries: int | None = None
    ack_delay: float = 0.1
    """How long an acknowledgement may wait for an outgoing message to ride on before a
    ZLB/ACK is sent; 0 acknowledges in the same flush. Keep it well below the peer's
    retransmission timeout: both RFCs forbid withholding acknowledgements."""
    reorder: bool = True
    """Buffer out-of-order messages within our window (False: drop them, as xl2tpd does)."""
    max_buffered: int | None = None
    """Bound on out-of-order messages held at once (None: whatever the window admits).
    Beyond it they are dropped and counted in ``rx_queue_full``; the peer retransmits them,
    as both RFCs allow a receiver that does not buffer at all."""
    explicit_ack: bool = False
    max_queue: int = 1024
    """Bound on queued plus unacknowledged messages; :meth:`ReliableTransport.send` raises
    :class:`SendQueueFull` beyond it rather than letting a stalled peer consume memory."""
    linger: float | None = None

    def __post_init__(self) -> None:
        if self.version not in (2, 3):
            raise ValueError(f"L2TP version must be 2 or 3, not {self.version}")
        if not 1 <= self.receive_window <= MAX_WINDOW:
            raise ValueError(f"receive window must be 1..{MAX_WINDOW}, not {self.receive_window}")
        if self.peer_receive_window < 1:
            raise ValueError("a Receive Window Size of 0 is invalid (RFC 2661 §5.8)")
        if not (self.retransmit_initial > 0 and math.isfinite(self.retransmit_initial)):
            raise ValueError("the initial retransmission timeout must be a positive number")
        if not (self.retransmit_cap >= max(MIN_RETRANSMIT_CAP, self.retransmit_initial)
                and math.isfinite(self.retransmit_cap)):
            raise ValueError(
                f"the retransmission cap must be at least {MIN_RETRANSMIT_CAP:g} s and at "
                "least the initial timeout")
        for name in ("max_retries", "sccrq_max_retries"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        if not (self.ack_delay >= 0 and math.isfinite(self.ack_delay)):
            raise ValueError("ack_delay must be a non-negative number")
        if self.explicit_ack and self.version != 3:
            raise ValueError("the explicit ACK message exists only in L2TPv3")
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if self.max_buffered is not None and self.max_buffered < 0:
            raise ValueError("max_buffered must not be negative")
        if self.linger is not None and not (self.linger >= 0 and math.isfinite(self.linger)):
            raise ValueError("linger must be a non-negative number")

    @property
    def retry_limit(self) -> int:
        """Retransmissions of one message before the connection is declared dead."""
        if self.max_retries is not None:
            return self.max_retries
        return 5 if self.version == 2 else 10

    def timeout(self, retries: int) -> float:
        """The wait after the transmission that follows ``retries`` retransmissions:
        1, 2, 4, 8, 8, ... seconds with the defaults."""
        return min(self.retransmit_initial * 2.0 ** min(retries, 64), self.retransmit_cap)

    @property
    def linger_time(self) -> float:
        """How long to keep acknowledging after StopCCN: the configured ``linger``, else one
        full retransmission cycle (31 s for v2 defaults: 1 + 2 + 4 + 8 + 8 + 8)."""
        if self.linger is not None:
            return self.linger
        return sum(self.timeout(k) for k in range(self.retry_limit + 1))


@dataclass(frozen=True, slots=True)
class RetriesExhausted:
    """A message went unacknowledged through all its retransmissions: the peer is gone and
    the tunnel with all its sessions must be cleared (RFC 2661 §5.8, RFC 3931 §4.2). The
    transport sends nothing more after this."""

    ns: int
    msg_type: int
    retries: int
    at: float


@dataclass(frozen=True, slots=True)
class InvalidNr:
    """A received Nr acknowledged messages never sent (Nr beyond last Ns sent + 1).

    ``dropped`` is True for v3, where RFC 3931 §4.2 calls such a message clearly invalid;
    for v2 only the Nr was ignored and the message was still processed."""

    nr: int
    limit: int
    msg_type: int
    dropped: bool


@dataclass(frozen=True, slots=True)
class LingerExpired:
    """The post-StopCCN linger is over: the tunnel's state can now be freed."""

    at: float


TransportEvent: TypeAlias = RetriesExhausted | InvalidNr | LingerExpired


@dataclass(slots=True)
class TransportStats:
    """Plain integer counters, cheap to bump and to export (``dataclasses.asdict``)."""

    tx_messages: int = 0
    """First transmissions of sequenced messages."""
    retransmits: int = 0
    zlb_sent: int = 0
    acks_sent: int = 0
    """Explicit v3 ACK messages (type 20) sent; ZLBs are counted in ``zlb_sent``."""
    tx_discarded: int = 0
    """Messages handed to :meth:`ReliableTransport.send` after retries were exhausted."""
    rx_messages: int = 0
    """Sequenced messages delivered in order to the caller."""
    rx_acks: int = 0
    """ZLB / ACK messages received."""
    rx_duplicates: int = 0
    rx_out_of_order: int = 0
    """Messages ahead of the expected Ns but within our window (buffered unless
    ``reorder`` is off)."""
    rx_out_of_window: int = 0
    rx_queue_full: int = 0
    """Out-of-order messages dropped because ``max_buffered`` were already held."""
    invalid_nr: int = 0


class TransportError(Exception):
    """Base class of the errors this transport raises to its caller."""


class SendQueueFull(TransportError):
    """:meth:`ReliableTransport.send` would exceed ``max_queue`` queued plus unacknowledged
    messages: the peer is not keeping up and the caller must shed load or clear the tunnel."""


# --------------------------------------------------------------------------------------------
# The transport


_INIT_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(ControlMessage)
                                     if f.init))
_OTHER_FIELDS = tuple(f.name for f in dataclasses.fields(ControlMessage) if not f.init)


def _stamped(msg: ControlMessage, ns: int, nr: int) -> ControlMessage:
    """A copy of ``msg`` carrying ``ns`` and ``nr``: ``dataclasses.replace`` without its
    per-call field introspection (this runs for every message sent)."""
    copy = ControlMessage(*_INIT_FIELDS(msg))
    for name in _OTHER_FIELDS:
        setattr(copy, name, getattr(msg, name))
    copy.ns = ns
    copy.nr = nr
    return copy


class _Entry:
    """One sequenced message from :meth:`ReliableTransport.send` until it is acknowledged."""

    __slots__ = ("msg", "ns", "retries", "max_retries", "deadline", "tx_mark", "acked", "in_outbox")

    def __init__(self, msg: ControlMessage, ns: int, max_retries: int) -> None:
        self.msg = msg
        self.ns = ns
        self.retries = 0
        self.max_retries = max_retries
        self.deadline = math.inf
        # Ordinal of the latest transmission; compared with the congestion-episode mark.
        self.tx_mark = -1
        self.acked = False
        self.in_outbox = False  # a second timeout before the caller drains sends it once


class ReliableTransport:
    """Ns/Nr state, retransmission and windowing of one L2TP control connection.

    Typical use by a tunnel state machine::

        t = ReliableTransport(TransportConfig(version=2))
        t.send(sccrq, now)                       # assigns Ns, transmits when the window allows
        for m in t.datagrams_to_send(): sock.send(encode_message(m))
        ...
        for m in t.receive(decode_message(data), now):   # in order, no duplicates
            handle(m)
        t.handle_timer(now) when now >= t.next_deadline()
        for ev in t.events(): ...                # RetriesExhausted -> clear the tunnel

    ``peer_id`` is the recipient's Tunnel ID (v2) or Control Connection ID (v3) that the
    transport writes into the ZLB/ACK messages it makes up itself; the caller updates it once
    the peer's Assigned Tunnel/Connection ID is known. ``initial_ns``/``initial_nr`` start the
    sequence state elsewhere than 0 (failover recovery, RFC 4951; tests of the 16-bit wrap).
    """

    __slots__ = (
        "config", "peer_id",
        "_ns_next", "_snd_una", "_snd_max", "_rcv_nxt",
        "_queue", "_inflight", "_reorder", "_outbox",
        "_cwnd", "_ssthresh", "_ca_acks", "_peer_rws", "_tx_count", "_episode", "_congested",
        "_ack_pending", "_ack_deadline", "_now",
        "_exhausted", "_linger_until", "_linger_until_acked", "_linger_done",
        "_events", "stats", "ack_session_id",
    )

    def __init__(
        self,
        config: TransportConfig | None = None,
        *,
        peer_id: int = 0,
        initial_ns: int = 0,
        initial_nr: int = 0,
    ) -> None:
        self.config = config if config is not None else TransportConfig()
        self.peer_id = peer_id
        self._ns_next = initial_ns & 0xFFFF  # Ns the next send() takes
        self._snd_una = self._ns_next  # oldest unacknowledged Ns
        self._snd_max = self._ns_next  # one past the highest Ns ever transmitted
        self._rcv_nxt = initial_nr & 0xFFFF  # Nr: the Ns we expect next from the peer
        self._queue: deque[_Entry] = deque()  # numbered, not yet transmitted
        self._inflight: deque[_Entry] = deque()  # transmitted, unacknowledged, Ns-contiguous
        self._reorder: dict[int, ControlMessage] = {}
        self._outbox: list[_Entry] = []
        self._peer_rws = min(self.config.peer_receive_window, MAX_WINDOW)
        self._cwnd = 1
        self._ssthresh = self._peer_rws
        self._ca_acks = 0
        self._tx_count = 0
        self._episode = 0  # transmissions with tx_mark >= this postdate the last timeout
        self._congested = False
        self._ack_pending = False
        self._ack_deadline = math.inf
        self._now = -math.inf
        self._exhausted = False
        self._linger_until: float | None = None
        self._linger_until_acked = False
        self._linger_done = False
        self._events: list[TransportEvent] = []
        self.stats = TransportStats()
        # Header Session ID of the ZLBs we make (v2): the caller sets it to the peer's id of
        # the session whose message is being acknowledged, as xl2tpd expects (it only frees
        # a call once the ZLB acknowledging its CDN arrives with that call's id).
        self.ack_session_id = 0

    # ---- state ---------------------------------------------------------------------------

    @property
    def ns_next(self) -> int:
        """The Ns the next :meth:`send` assigns."""
        return self._ns_next

    @property
    def nr(self) -> int:
        """The Nr we send: the Ns expected next from the peer."""
        return self._rcv_nxt

    @property
    def outstanding(self) -> int:
        """Messages transmitted and not yet acknowledged."""
        return len(self._inflight)

    @property
    def oldest_unacked(self) -> int:
        """Ns of the oldest unacknowledged message (one past the last transmitted when nothing
        is outstanding): the peer's receive window starts here."""
        return self._snd_una

    @property
    def buffered(self) -> int:
        """Out-of-order messages held until the gap before them fills."""
        return len(self._reorder)

    @property
    def queued(self) -> int:
        """Messages numbered but held back by the window."""
        return len(self._queue)

    @property
    def cwnd(self) -> int:
        return self._cwnd

    @property
    def ssthresh(self) -> int:
        return self._ssthresh

    @property
    def peer_rws(self) -> int:
        return self._peer_rws

    @property
    def window(self) -> int:
        """How many messages may be outstanding now: ``min(CWND, peer RWS)``."""
        return min(self._cwnd, self._peer_rws)

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing unacknowledged and no acknowledgement owed."""
        return not self._queue and not self._inflight and not self._ack_pending

    @property
    def exhausted(self) -> bool:
        """Retries ran out: the connection is dead and transmits nothing more."""
        return self._exhausted

    @property
    def closing(self) -> bool:
        """A StopCCN was sent or received and the linger has begun."""
        return self._linger_until is not None

    @property
    def linger_until(self) -> float | None:
        return self._linger_until

    # ---- configuration from the peer -------------------------------------------------------

    def set_peer_rws(self, n: int) -> None:
        """Apply the peer's Receive Window Size AVP.

        Before any retransmission timeout SSTHRESH follows it, as if it had been known from
        the start (Appendix A initialises SSTHRESH to the advertised window; the default 4 was
        only a stand-in). Values beyond what half-space numbering can distinguish are clamped.
        Messages the wider window admits go out on the next call that carries a time."""
        if n < 1:
            raise ValueError("a Receive Window Size of 0 is invalid (RFC 2661 §5.8)")
        self._peer_rws = min(n, MAX_WINDOW)
        if not self._congested:
            self._ssthresh = self._peer_rws
        self._cwnd = min(self._cwnd, self._peer_rws)
        if self._now > -math.inf:
            self._service(self._now)

    # ---- sending ---------------------------------------------------------------------------

    def send(self, msg: ControlMessage, now: float) -> int:
        """Queue a sequenced control message, number it and transmit it if the window allows.

        Sets ``msg.ns`` and returns it. ZLB/ACK messages are not accepted: the transport makes
        those itself, because they must not take a sequence slot or be retransmitted.
        Raises :class:`SendQueueFull` at ``max_queue`` messages queued or unacknowledged.
        After retries are exhausted the message is discarded (and counted): the tunnel is
        being cleared and the peer is unreachable anyway.
        """
        if self.is_ack_only(msg):
            raise ValueError("ZLB/ACK messages are generated by the transport, not sent")
        if msg.version != self.config.version:
            raise ValueError(f"v{msg.version} message on a v{self.config.version} transport")
        self._now = now
        if self._exhausted:
            self.stats.tx_discarded += 1
            return msg.ns
        if len(self._queue) + len(self._inflight) >= self.config.max_queue:
            raise SendQueueFull(
                f"{self.config.max_queue} control messages already queued or unacknowledged")
        limit = self.config.retry_limit
        if msg.msg_type == MessageType.SCCRQ and self.config.sccrq_max_retries is not None:
            limit = self.config.sccrq_max_retries
        ns = self._ns_next
        self._ns_next = seq_add(ns, 1)
        msg.ns = ns
        self._queue.append(_Entry(msg, ns, limit))
        self._service(now)
        return ns

    def datagrams_to_send(self) -> list[ControlMessage]:
        """Messages to encode and transmit now, oldest first.

        Each is a fresh copy carrying its Ns and the *current* Nr, so every (re)transmission
        acknowledges everything received so far (RFC 2661 §5.8: "the Nr value MUST be
        updated"); the caller encodes each one anew, which in v3 with authentication also
        recomputes the digest over the changed header. If nothing sequenced goes out and an
        acknowledgement is due, a ZLB (or v3 ACK) carrying Ns = next unsent Ns is returned.
        Call after every :meth:`send`, :meth:`receive` and :meth:`handle_timer`.
        """
        outbox, self._outbox = self._outbox, []
        for entry in outbox:
            entry.in_outbox = False
        if self._exhausted:
            self._ack_pending = False
            return []
        nr = self._rcv_nxt
        out = [_stamped(e.msg, e.ns, nr) for e in outbox if not e.acked]
        if out:
            self._ack_pending = False  # piggybacked
        elif self._ack_pending and self._ack_deadline <= self._now:
            out.append(self._make_ack())
            self._ack_pending = False
        return out

    def _make_ack(self) -> ControlMessage:
        # Carries the next unsent Ns without consuming it (RFC 2661 App. B.1: ZLB Ns 1 after
        # SCCRP Ns 0); the Nr is what the acknowledgement is for.
        if self.config.explicit_ack:
            msg_type = MessageType.ACK
            self.stats.acks_sent += 1
        else:
            msg_type = MessageType.ZLB
            self.stats.zlb_sent += 1
        return ControlMessage(msg_type, version=self.config.version, tunnel_id=self.peer_id,
                              session_id=self.ack_session_id, ns=self._snd_max,
                              nr=self._rcv_nxt)

    # ---- receiving -------------------------------------------------------------------------

    def is_ack_only(self, msg: ControlMessage) -> bool:
        # v3 knows both the ACK message and the ZLB (RFC 3931 §6.15); type 20 means nothing
        # in v2 and takes a sequence slot like any other message there.
        return msg.msg_type == MessageType.ZLB or (
            msg.msg_type == MessageType.ACK and msg.version == 3)

    def holds(self, msg: ControlMessage) -> bool:
        """Whether this very message waits for reordering (a duplicate of it does not)."""
        return self._reorder.get(msg.ns) is msg

    def forget(self, msg: ControlMessage) -> None:
        """Drop a held message again, as if never received: the peer retransmits it."""
        if self.holds(msg):
            del self._reorder[msg.ns]

    def receive(self, msg: ControlMessage, now: float) -> list[ControlMessage]:
        """Process a decoded control message; return the messages now deliverable in order.

        The Nr acknowledges our messages in every case (also for duplicates, whose
        retransmission carries a fresh Nr, and for messages dropped as out of window, which
        RFC 3931 §4.2 permits). ZLB/ACK messages only acknowledge and never advance our Nr.
        Duplicates are not delivered but re-acknowledged, since the peer is evidently missing
        our acknowledgement. Messages ahead of the expected Ns wait within our window until
        the gap fills.
        """
        self._now = now
        if seq_lt(self._snd_max, msg.nr):
            self.stats.invalid_nr += 1
            dropped = self.config.version == 3
            self._events.append(InvalidNr(msg.nr, self._snd_max, msg.msg_type, dropped))
            if dropped:
                return []
        else:
            self._apply_nr(msg.nr)
        delivered: list[ControlMessage] = []
        if self.is_ack_only(msg):
            self.stats.rx_acks += 1
        else:
            offset = (msg.ns - self._rcv_nxt) & 0xFFFF
            if offset == 0:
                delivered.append(msg)
                nxt = seq_add(msg.ns, 1)
                while nxt in self._reorder:
                    delivered.append(self._reorder.pop(nxt))
                    nxt = seq_add(nxt, 1)
                self._rcv_nxt = nxt
                self.stats.rx_messages += len(delivered)
                self._want_ack(now)
            elif offset >= SEQ_HALF:
                # At or before the last one received (RFC half-space rule): a duplicate.
                self.stats.rx_duplicates += 1
                self._want_ack(now)
            elif offset < self.config.receive_window:
                if msg.ns in self._reorder:
                    self.stats.rx_duplicates += 1
                else:
                    self.stats.rx_out_of_order += 1
                    if self.config.reorder:
                        limit = self.config.max_buffered
                        if limit is not None and len(self._reorder) >= limit:
                            self.stats.rx_queue_full += 1
                        else:
                            self._reorder[msg.ns] = msg
            else:
                self.stats.rx_out_of_window += 1
        self._service(now)
        self._check_linger(now)
        return delivered

    def _want_ack(self, now: float) -> None:
        if not self._ack_pending:
            self._ack_pending = True
            self._ack_deadline = now + self.config.ack_delay

    def ack_now(self) -> None:
        """Make an owed acknowledgement due at once instead of after ``ack_delay``: for a
        message no reply will follow (HELLO), waiting only costs a timer and a wake-up."""
        if self._ack_pending:
            self._ack_deadline = self._now

    def _apply_nr(self, nr: int) -> None:
        """Release every unacknowledged message with Ns before ``nr``; an Nr before the oldest
        one is a stale (reordered) acknowledgement and changes nothing."""
        count = (nr - self._snd_una) & 0xFFFF
        if count == 0 or count > len(self._inflight):
            return
        for _ in range(count):
            entry = self._inflight.popleft()
            entry.acked = True
            self._on_ack()
        self._snd_una = nr

    def _on_ack(self) -> None:
        """Appendix A, per newly acknowledged message: slow start below SSTHRESH, then one
        more per CWND acknowledgements; never beyond the peer's window."""
        if self._cwnd < self._ssthresh:
            self._cwnd += 1
        else:
            self._ca_acks += 1
            if self._ca_acks >= self._cwnd:
                self._cwnd += 1
                self._ca_acks = 0
        if self._cwnd > self._peer_rws:
            self._cwnd = self._peer_rws

    # ---- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has work: a retransmission, a delayed acknowledgement
        or the end of the linger. None when nothing is pending."""
        best = math.inf
        if not self._exhausted:
            window = self.window
            for i, entry in enumerate(self._inflight):
                if i >= window:
                    break
                best = min(best, entry.deadline)
            if self._ack_pending:
                best = min(best, self._ack_deadline)
        if self._linger_until is not None and not self._linger_done:
            best = min(best, self._linger_until)
        return None if best == math.inf else best

    def handle_timer(self, now: float) -> None:
        """Retransmit what timed out, release a due acknowledgement (picked up by
        :meth:`datagrams_to_send`) and end the linger. Harmless to call early or often."""
        self._now = now
        self._service(now)
        self._check_linger(now)

    def _service(self, now: float) -> None:
        if self._exhausted:
            return
        self._retransmit_due(now)
        if self._exhausted:
            return
        window = self.window
        while self._queue and len(self._inflight) < window:
            entry = self._queue.popleft()
            self._transmit(entry, now)
            self._inflight.append(entry)
            self._snd_max = seq_add(entry.ns, 1)
            self.stats.tx_messages += 1

    def _transmit(self, entry: _Entry, now: float) -> None:
        entry.deadline = now + self.config.timeout(entry.retries)
        entry.tx_mark = self._tx_count
        self._tx_count += 1
        if not entry.in_outbox:
            entry.in_outbox = True
            self._outbox.append(entry)

    def _retransmit_due(self, now: float) -> None:
        i = 0
        while i < len(self._inflight) and i < self.window:
            entry = self._inflight[i]
            if entry.deadline <= now:
                if entry.retries >= entry.max_retries:
                    self._exhaust(entry, now)
                    return
                if entry.tx_mark >= self._episode:
                    # A fresh loss signal: Appendix A's congestion response.
                    self._ssthresh = max(self._cwnd // 2, 1)
                    self._cwnd = 1
                    self._ca_acks = 0
                    self._episode = self._tx_count
                    self._congested = True
                    if i >= self.window:
                        break  # resent once the window reopens, without a second response
                entry.retries += 1
                self.stats.retransmits += 1
                self._transmit(entry, now)
            i += 1

    def _exhaust(self, entry: _Entry, now: float) -> None:
        self._exhausted = True
        self._ack_pending = False
        self._events.append(RetriesExhausted(entry.ns, entry.msg.msg_type, entry.retries, now))

    # ---- teardown --------------------------------------------------------------------------

    def discard_unsent(self) -> int:
        """Drop the messages held back by the window (numbered, never transmitted) and give
        their sequence numbers back, so the next :meth:`send` reuses the first one's Ns; the
        peer never saw them. Returns how many were dropped.

        For a StopCCN, which clears every session: the queued session messages are moot, and
        behind a full window they could keep the StopCCN from leaving before the linger ends.
        """
        dropped = len(self._queue)
        if dropped:
            self._ns_next = self._queue[0].ns
            self._queue.clear()
        return dropped

    def begin_linger(self, now: float, *, until_acked: bool = False) -> None:
        """Start the post-StopCCN linger after sending or receiving StopCCN.

        For ``linger_time`` the transport keeps acknowledging retransmissions (our ZLB may be
        lost) and retransmitting our own StopCCN; then :class:`LingerExpired` is reported.
        ``until_acked`` ends it as soon as nothing of ours is unacknowledged, which RFC 3931
        §4.2 allows the StopCCN sender (call it after :meth:`send` of the StopCCN, or it
        ends at once). A second call does not extend the deadline: the
        linger covers one retransmission cycle of the peer's first StopCCN.
        """
        self._now = now
        if self._linger_until is None:
            self._linger_until = now + self.config.linger_time
        self._linger_until_acked = self._linger_until_acked or until_acked
        self._check_linger(now)

    def _check_linger(self, now: float) -> None:
        if self._linger_until is None or self._linger_done:
            return
        acked = self._linger_until_acked and not self._queue and not self._inflight
        if acked or now >= self._linger_until:
            self._linger_done = True
            self._events.append(LingerExpired(now))

    # ---- events ----------------------------------------------------------------------------

    def events(self) -> list[TransportEvent]:
        """Drain what happened since the last call (exhaustion, invalid Nr, linger end)."""
        out, self._events = self._events, []
        return out


__all__ = [
    "MAX_WINDOW",
    "MIN_RETRANSMIT_CAP",
    "SEQ_HALF",
    "SEQ_MOD",
    "InvalidNr",
    "LingerExpired",
    "ReliableTransport",
    "RetriesExhausted",
    "SendQueueFull",
    "TransportConfig",
    "TransportError",
    "TransportEvent",
    "TransportStats",
    "seq_add",
    "seq_le",
    "seq_lt",
]
