"""One L2TP control connection (tunnel), sans-I/O: RFC 2661 §7.2 and RFC 3931 §7.2.

:class:`ControlConnection` takes datagrams and time and produces datagrams, events and a
deadline. It owns the reliable transport, authentication (v2 Challenge/Response, v3 Message
Digest with nonces), AVP hiding, HELLO keepalives, the StopCCN linger and the calls that run
on it; it never opens a socket or reads a clock. :class:`pyl2tp.control.plane.ControlPlane`
demultiplexes datagrams between many of them.

Decisions where the RFCs leave room, each implemented below:

* Authentication failures while the connection is being set up (a wrong v2 Challenge
  Response, a v3 digest that does not verify in SCCRQ/SCCRP/SCCCN, a peer that does not
  authenticate although we hold a secret for it) answer StopCCN 4 "not authorized" instead of
  silently dropping, so that an operator sees the reason on both ends when the secret is
  wrong. Once established, a message with a bad digest is dropped and counted (RFC 3931
  §4.3: it could be forged, and answering would let a forger clear the tunnel).
* With authentication on, ZLBs are ignored (they cannot carry a digest) and we acknowledge
  with the ACK message; without it, v3 uses ZLBs like v2, which every peer understands.
* A tunnel or call that does not reach "established" within ``setup_timeout`` is cleared
  with StopCCN 7 / CDN 10 (v2) or 16 (v3), so a peer that acknowledges but never completes
  the exchange cannot hold state forever.
* HELLO is sent ``hello_interval`` seconds after our last HELLO, or 1.25 times that after the
  peer's last message (acknowledgements aside), so that one end keeps the connection alive and
  the other only answers, instead of both sending one at the same moment. Its delivery failing
  (retries exhausted) clears the tunnel with reason "hello timeout". A HELLO is acknowledged at
  once, since no reply will carry the acknowledgement.
"""

from __future__ import annotations

import enum
import heapq
import logging
import os
import struct
from collections.abc import Callable
from typing import Any

from pyl2tp.wire import auth
from pyl2tp.wire.avp import ProtocolVersion, ResultCode
from pyl2tp.wire.constants import (
    SESSION_MESSAGES,
    AvpType,
    CDNResult,
    ErrorCode,
    MessageType,
    StopCCNResult,
)
from pyl2tp.wire.errors import HeaderError, MessageError, ParseError
from pyl2tp.wire.header import decode_control_header
from pyl2tp.wire.message import ControlMessage, decode_message, encode_message, message_name

from . import events as ev
from .call import Call, CallState
from .limits import SessionBudget
from .params import CallParams, ConnectionParams
from .transport import LingerExpired, ReliableTransport, RetriesExhausted, SendQueueFull

log = logging.getLogger(__name__)

A = AvpType
M = MessageType

Rng = Callable[[int], bytes]

CHALLENGE_LEN = 16
HELLO_RECEIVER_SLACK = 1.25
"""How much longer than ``hello_interval`` a connection waits after the peer's last message
before sending a HELLO itself (see :meth:`ControlConnection.receive`)."""
NONCE_LEN = 16
BUFFERED_ERRORS_MAX = 64
"""Out-of-order messages whose validation error is remembered until their turn (each holds
a reorder-queue slot too, so this only bounds a window larger than it)."""
V2_PROTOCOL = ProtocolVersion(1, 0)


class State(enum.Enum):
    IDLE = "idle"
    WAIT_CTL_REPLY = "wait-ctl-reply"
    WAIT_CTL_CONN = "wait-ctl-conn"
    ESTABLISHED = "established"
    CLOSING = "closing"
    DEAD = "dead"


class _Refuse(Exception):
    """Clear the control connection with a StopCCN carrying these codes."""

    def __init__(self, result: int, error: int, text: str) -> None:
        super().__init__(text)
        self.result = result
        self.error = error
        self.text = text


class ControlConnection:
    """A control connection from either end, with its calls.

    Create one with :meth:`dial` (we send SCCRQ) or :meth:`answer` (a received SCCRQ). Feed
    it with :meth:`receive` and :meth:`handle_timer`; after every call collect
    :meth:`datagrams_to_send` and :meth:`events`, and re-arm :meth:`next_deadline`.
    ``peer`` and ``local`` are opaque to the connection (the driver's addresses).
    """

    def __init__(self, params: ConnectionParams, local_id: int, *, now: float,
                 rng: Rng = os.urandom, ip_encap: bool = False, peer: Any = None,
                 local: Any = None, session_id_taken: Callable[[int], bool] | None = None,
                 budget: SessionBudget | None = None) -> None:
        self.params = params
        self.version = params.version
        self.local_id = local_id
        self.peer_id = 0
        self.rng = rng
        self.ip_encap = ip_encap
        self.peer = peer
        self.local = local
        self.state = State.IDLE
        self.initiator = False
        self.created_at = now  # setup began: our SCCRQ, or the peer's arriving
        # Validation errors of messages held for reordering, by Ns, with the message itself.
        self._buffered_errors: dict[int, tuple[ControlMessage, MessageError]] = {}
        self.established_at: float | None = None
        self.peer_host_name = ""
        self.peer_vendor = ""
        self.peer_router_id = 0
        self.peer_pw_types: tuple[int, ...] = ()
        self.peer_framing = 0
        self.peer_bearer: int | None = None
        self.peer_version: ProtocolVersion | None = None
        self.our_tie_breaker: bytes | None = None
        self.peer_tie_breaker: bytes | None = None
        self.calls: dict[int, Call] = {}
        self._by_peer_sid: dict[int, Call] = {}
        # Calls of ours waiting for the tunnel, or for a free slot of max_call_setups.
        self._pending: dict[int, Call] = {}
        # Calls of ours whose request is out and unanswered (bounded by max_call_setups).
        # (a dict as an ordered set: an empty one costs a quarter of an empty set)
        self._in_setup: dict[int, None] = {}
        # Setup deadlines of calls not yet established, as a heap of (deadline, seq, call);
        # entries of calls that came up or went away are skipped when they surface, so no
        # message has to walk every call of the tunnel.
        self._call_timers: list[tuple[float, int, Call]] = []
        self._timer_seq = 0
        self._serial = 0
        self._session_id_taken = session_id_taken or (lambda _sid: False)
        self._budget = budget
        # authentication
        secret = params.secret
        self._hide_key = params.hide_key
        self._auth_key = auth.auth_key_v3(secret) if secret is not None else None
        self.our_challenge: bytes | None = None
        self._peer_challenge: bytes | None = None
        self.our_nonce: bytes | None = None
        self.peer_nonce: bytes | None = None
        self.digests = False  # v3 Message Digests in force (both nonces exchanged)
        self.transport = ReliableTransport(params.transport_config(
            explicit_ack=self.version == 3 and secret is not None))
        self._setup_deadline: float | None = now + params.setup_timeout
        self._hello_due: float | None = None
        self._events: list[ev.Event] = []
        self._out: list[bytes] = []
        self._now = now
        self.result: ResultCode | None = None
        self.down_reason = ""
        self.stats: dict[str, int] = {}

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def dial(cls, params: ConnectionParams, local_id: int, *, now: float,
             rng: Rng = os.urandom, **kw: Any) -> ControlConnection:
        """Start a connection as its originator: send SCCRQ."""
        conn = cls(params, local_id, now=now, rng=rng, **kw)
        conn.initiator = True
        if params.tie_breaker:
            conn.our_tie_breaker = rng(8)
        msg = conn._sccrx(M.SCCRQ)
        conn.state = State.WAIT_CTL_REPLY
        conn._send(msg, now)
        return conn

    @classmethod
    def answer(cls, params: ConnectionParams, local_id: int, data: bytes, offset: int, *,
               now: float, rng: Rng = os.urandom, decoded: ControlMessage | None = None,
               **kw: Any) -> ControlConnection:
        """Start a connection from a received SCCRQ (tunnel id 0). The result may already be
        closing (refused with StopCCN) or dead (the SCCRQ was unusable). ``decoded`` is the
        SCCRQ as the caller already decoded it (see :meth:`receive`)."""
        conn = cls(params, local_id, now=now, rng=rng, **kw)
        if decoded is not None:
            ns: int | None = decoded.ns
        else:
            try:
                ns = decode_control_header(data, offset).ns
            except HeaderError:
                ns = None
        if ns is not None:
            # Normally 0, but a recovering peer (RFC 4951) may start elsewhere.
            conn.transport = ReliableTransport(conn.transport.config, initial_nr=ns)
        conn.receive(data, offset, now, decoded=decoded)
        return conn

    @classmethod
    def refuse(cls, params: ConnectionParams, local_id: int, data: bytes, offset: int, *,
               now: float, result: int, error: int, text: str, rng: Rng = os.urandom,
               **kw: Any) -> ControlConnection:
        """Answer an SCCRQ we will not serve with StopCCN, delivered reliably like any other
        message (the peer's retransmissions are acknowledged during the linger)."""
        conn = cls(params, local_id, now=now, rng=rng, **kw)
        try:
            msg = decode_message(data, offset=offset, hide_key=conn._hide_key, validate=False)
        except MessageError as exc:
            if not isinstance(exc.message, ControlMessage):
                conn.state = State.DEAD
                return conn
            msg = exc.message
        except ParseError:
            conn.state = State.DEAD
            return conn
        conn.transport = ReliableTransport(conn.transport.config, initial_nr=msg.ns)
        conn.peer_id = msg.get(assigned_id_type(conn.version), 0) or 0
        conn._auth_key = None
        conn.transport.receive(msg, now)
        conn._teardown(now, text, result, error, by_peer=False)
        conn._after(now)
        return conn

    def abandon(self, now: float, reason: str) -> None:
        """Drop the connection without a StopCCN (a lost tie breaker, RFC 2661 §4.4.3)."""
        if self.state is State.DEAD:
            return
        if self.state is not State.CLOSING:
            self._teardown(now, reason, None, None, by_peer=False, send=False)
        self.state = State.DEAD

    # ---- properties -------------------------------------------------------------------------

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def dead(self) -> bool:
        return self.state is State.DEAD

    @property
    def peer_rws(self) -> int:
        """The peer's Receive Window Size (4 until its SCCRQ/SCCRP says otherwise)."""
        return self.transport.peer_rws

    @property
    def hiding(self) -> bool:
        return self.params.hide_avps and self._hide_key is not None

    def _count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def __repr__(self) -> str:
        return (f"<ControlConnection v{self.version} {self.local_id}->{self.peer_id} "
                f"{self.state.value}>")

    # ---- building control connection messages -------------------------------------------------

    def _sccrx(self, msg_type: int) -> ControlMessage:
        p = self.params
        msg = ControlMessage(msg_type, version=self.version, tunnel_id=self.peer_id)
        # Nothing is hidden in SCCRQ/SCCRP: a peer may only pick the secret once it has seen
        # the whole message (xl2tpd looks it up after parsing, and rejects hidden AVPs it meets
        # before with StopCCN 2/6 "Invalid Hidden AVP"); hiding starts with SCCCN.
        if self.version == 2:
            msg.add(A.PROTOCOL_VERSION, V2_PROTOCOL)
            msg.add(A.HOST_NAME, p.host_name)
            msg.add(A.FRAMING_CAPABILITIES, p.framing_capabilities)
            msg.add(A.BEARER_CAPABILITIES, p.bearer_capabilities)
            msg.add(A.FIRMWARE_REVISION, p.firmware_revision)
            msg.add(A.VENDOR_NAME, p.vendor_name)
            # Never hidden: the id is in clear in every header the peer sends us anyway, and a
            # peer with another secret must still be able to address its StopCCN to us.
            msg.add(A.ASSIGNED_TUNNEL_ID, self.local_id)
            msg.add(A.RECEIVE_WINDOW_SIZE, p.receive_window)
            if self._peer_challenge is not None and self.params.secret is not None:
                msg.add(A.CHALLENGE_RESPONSE, auth.challenge_response(
                    msg_type, self.params.secret, self._peer_challenge))
                self._peer_challenge = None
            if p.secret is not None and p.challenge:
                self.our_challenge = self.rng(CHALLENGE_LEN)
                msg.add(A.CHALLENGE, self.our_challenge)
        else:
            msg.add(A.HOST_NAME, p.host_name)
            msg.add(A.ROUTER_ID, p.router_id)
            msg.add(A.ASSIGNED_CONNECTION_ID, self.local_id)  # not hidden: see v2 above
            msg.add(A.PW_CAPABILITIES_LIST, tuple(p.pw_types))
            msg.add(A.RECEIVE_WINDOW_SIZE, p.receive_window)
            msg.add(A.VENDOR_NAME, p.vendor_name)
            if p.secret is not None:
                self.our_nonce = self.rng(NONCE_LEN)
                msg.add(A.CTRL_MSG_AUTH_NONCE, self.our_nonce)
        if msg_type == M.SCCRQ and self.our_tie_breaker is not None:
            msg.add(A.TIE_BREAKER, self.our_tie_breaker)
        return msg

    # ---- sending ----------------------------------------------------------------------------

    def _send(self, msg: ControlMessage, now: float) -> None:
        msg.tunnel_id = self.peer_id
        try:
            self.transport.send(msg, now)
        except SendQueueFull:
            self._count("tx_queue_full")
            if msg.msg_type != M.StopCCN:
                self._teardown(now, "control queue full", StopCCNResult.GENERAL_ERROR,
                               ErrorCode.NO_RESOURCES, by_peer=False, send=False)
            return
        self._count(_counter_name("tx_", msg.msg_type))

    def datagrams_to_send(self) -> list[bytes]:
        """Encoded datagrams due now (IP encapsulation adds the 4 zero octets)."""
        out, self._out = self._out, []
        self.transport.peer_id = self.peer_id
        for msg in self.transport.datagrams_to_send():
            try:
                out.append(self._encode(msg))
            except (ValueError, OverflowError, struct.error) as exc:  # a value out of range
                self._count("tx_encode_errors")
                log.warning("tunnel %d: cannot encode %s: %s", self.local_id, msg.name, exc,
                            extra=self._log_ids)
        return out

    def _encode(self, msg: ControlMessage) -> bytes:
        digest = None
        sender = receiver = None
        if self.version == 3 and self._auth_key is not None and msg.msg_type != M.ZLB and (
                self.digests or self.our_nonce is not None):
            digest = self.params.digest_type
            if msg.msg_type != M.SCCRQ:
                sender, receiver = self.our_nonce, self.peer_nonce
        return encode_message(msg, hide_key=self._hide_key, ip_encap=self.ip_encap,
                              rng=self.rng, digest_type=digest, auth_key=self._auth_key,
                              sender_nonce=sender, receiver_nonce=receiver)

    def events(self) -> list[ev.Event]:
        out, self._events = self._events, []
        return out

    # ---- receiving --------------------------------------------------------------------------

    def receive(self, data: bytes, offset: int, now: float, *,
                decoded: ControlMessage | None = None) -> None:
        """One datagram addressed to this connection (the driver demultiplexed it).

        ``decoded`` is the same datagram already decoded and validated by the caller, which
        it may only pass when the message has no hidden AVPs (our hiding key would change
        nothing): the plane decodes every SCCRQ for its accept policy, and decoding it again
        here would double the cost of accepting a tunnel."""
        self._now = now
        if self.state is State.DEAD:
            return
        error: MessageError | None = None
        if decoded is not None:
            msg = decoded
        else:
            try:
                msg = decode_message(data, offset=offset, hide_key=self._hide_key)
            except MessageError as exc:
                if not isinstance(exc.message, ControlMessage):
                    self._count("rx_malformed")
                    return
                msg, error = exc.message, exc
            except ParseError as exc:
                self._count("rx_malformed")
                log.debug("tunnel %d: malformed control message: %s", self.local_id, exc)
                return
        if msg.version != self.version:
            self._count("rx_wrong_version")
            return
        if not self._authentic(msg, data, offset, now):
            return
        if self._hello_due is not None and not (
                msg.msg_type == M.ZLB or (msg.msg_type == M.ACK and self.version == 3)):
            # A message from the peer postpones our HELLO by a quarter more than the peer's
            # own timer runs after sending one, and the mere acknowledgement of ours does not
            # postpone it at all: so one end keeps sending HELLOs and the other only answers.
            # Otherwise the next HELLO arrives just as the receiver's timer expires, and both
            # ends send one, every interval.
            self._hello_due = now + self.params.hello_interval * HELLO_RECEIVER_SLACK
        delivered = self.transport.receive(msg, now)
        if error is not None and not any(m is msg for m in delivered):
            self._undelivered_error(msg, error, now)
        for m in delivered:
            if self.state in (State.DEAD, State.CLOSING):
                break
            self._count(_counter_name("rx_", m.msg_type))
            if self.version == 2:
                self.transport.ack_session_id = self._peer_session_of(m)
            m_error = error if m is msg else self._take_buffered_error(m)
            if m_error is not None:
                self._protocol_error(m, m_error, now)
                continue
            try:
                self._dispatch(m, now)
            except _Refuse as exc:
                self._teardown(now, exc.text, exc.result, exc.error, by_peer=False)
        self._after(now)

    def _undelivered_error(self, msg: ControlMessage, error: MessageError, now: float) -> None:
        """A message that failed validation but was not delivered in order now. An ACK is
        never delivered (it only acknowledges), yet an unknown mandatory AVP in it must still
        clear the connection (RFC 3931 §5.2). A message held for reordering keeps its error
        for when the gap fills (if the table of such errors is full, the transport lets go of
        it and the peer retransmits). Duplicates and out-of-window messages are dropped
        anyway, and must not displace the error of the message the transport holds."""
        if self.transport.is_ack_only(msg):
            self._count(_counter_name("rx_", msg.msg_type))
            self._protocol_error(msg, error, now)
        elif self.transport.holds(msg):
            if len(self._buffered_errors) < BUFFERED_ERRORS_MAX:
                self._buffered_errors[msg.ns] = (msg, error)
            else:
                self.transport.forget(msg)

    def _take_buffered_error(self, msg: ControlMessage) -> MessageError | None:
        if not self._buffered_errors:
            return None
        entry = self._buffered_errors.pop(msg.ns, None)
        return entry[1] if entry is not None and entry[0] is msg else None

    def _peer_session_of(self, msg: ControlMessage) -> int:
        """The peer's id of the session a v2 message belongs to (0 for tunnel messages)."""
        if msg.msg_type not in SESSION_MESSAGES:
            return 0
        try:
            sid = self._peer_sid(msg)
        except ParseError:
            sid = None  # malformed: the dispatch answers it; the ZLB still needs an id
        if isinstance(sid, int):
            return sid
        call = self.calls.get(msg.session_id)
        return call.peer_id if call is not None else 0

    def _peer_sid(self, msg: ControlMessage) -> Any:
        """The session id the peer assigned, as its session messages carry it (v2 Assigned
        Session ID, v3 Local Session ID); None when absent."""
        return msg.get(A.ASSIGNED_SESSION_ID if self.version == 2 else A.LOCAL_SESSION_ID)

    def _authentic(self, msg: ControlMessage, data: bytes, offset: int, now: float) -> bool:
        """v3 Message Digest checks. False drops the message (and may clear the tunnel)."""
        if self.version != 3:
            return True
        digested = msg.has(A.MESSAGE_DIGEST)
        if self._auth_key is None:
            if msg.has(A.CTRL_MSG_AUTH_NONCE) and msg.msg_type in (M.SCCRQ, M.SCCRP):
                self._refuse_setup(msg, now, "peer authenticates but no secret is configured")
                return False
            return True
        is_setup = msg.msg_type in (M.SCCRQ, M.SCCRP)
        if self.peer_nonce is None and is_setup:
            nonce = msg.get(A.CTRL_MSG_AUTH_NONCE)
            if nonce is None or not digested:
                if self.params.require_auth:
                    self._refuse_setup(msg, now, "peer did not authenticate (no nonce or "
                                                  "Message Digest)")
                    return False
                self._auth_key = None  # carry on unauthenticated: the policy allows it
                return True
            self.peer_nonce = nonce
        if msg.msg_type == M.ZLB:
            if self.digests or self.peer_nonce is not None:
                self._count("rx_unauthenticated_zlb")
                return False
            return True
        if msg.msg_type == M.SCCRQ:
            ok = auth.verify(data, offset, self._auth_key, None, None)
        else:
            ok = auth.verify(data, offset, self._auth_key, self.peer_nonce, self.our_nonce)
        if ok:
            if self.peer_nonce is not None and self.our_nonce is not None:
                self.digests = True
            return True
        self._count("rx_digest_failures")
        log.debug("tunnel %d: %s digest does not verify", self.local_id, msg.name)
        if self.state in (State.IDLE, State.WAIT_CTL_REPLY, State.WAIT_CTL_CONN):
            self._refuse_setup(msg, now, "Message Digest does not verify (wrong secret?)")
        return False

    def _refuse_setup(self, msg: ControlMessage, now: float, text: str) -> None:
        """Refuse while setting up: account the message so our StopCCN acknowledges it."""
        if self.peer_id == 0:
            self.peer_id = msg.get(A.ASSIGNED_CONNECTION_ID, 0) or 0
        self.digests = False
        self._auth_key = None  # our StopCCN goes out unsigned: the peer's key is not ours
        self.transport.receive(msg, now)
        self._count("auth_failures")
        self._teardown(now, text, StopCCNResult.NOT_AUTHORIZED, ErrorCode.NO_ERROR,
                       by_peer=False)
        self._after(now)

    def _protocol_error(self, msg: ControlMessage, exc: MessageError, now: float) -> None:
        self._count("rx_invalid")
        log.info("tunnel %d: %s", self.local_id, exc.reason, extra=self._log_ids)
        result = exc.result_code or StopCCNResult.GENERAL_ERROR
        error = exc.error_code or 0
        if exc.clears == "session" and msg.msg_type in SESSION_MESSAGES and self.established:
            call = self._find_call(msg)
            if call is not None and msg.msg_type == M.CDN:
                # A malformed CDN still ends the call (RFC 2661 §7.4: any state, rx CDN ->
                # clean up); answering it with another CDN would reach a cleared session.
                self._call_down(call, now, f"peer sent a malformed CDN: {exc.reason}", None,
                                None, send=False, by_peer=True)
            elif call is not None:
                self._call_down(call, now, exc.reason, result, error, send=True, by_peer=False)
            elif msg.msg_type in (M.ICRQ, M.OCRQ):
                self._cdn_unknown(msg, now, result, error, exc.reason)
            return
        if msg.msg_type == M.StopCCN:
            # A malformed StopCCN still ends the connection: the peer is leaving.
            self._learn_id_from_stopccn(msg)
            self._teardown(now, f"peer sent a malformed StopCCN: {exc.reason}", None, None,
                           by_peer=True, send=False)
            return
        if self.peer_id == 0 and msg.msg_type in (M.SCCRQ, M.SCCRP):
            self.peer_id = msg.get(assigned_id_type(self.version), 0) or 0
        if not self.established and "hidden AVP" in exc.reason and self._hide_key is not None:
            # A hidden value that does not decrypt to a sane length is what a wrong shared
            # secret looks like: report it as the authentication failure it almost surely is.
            self._count("auth_failures")
            result, error = StopCCNResult.NOT_AUTHORIZED, 0
        self._teardown(now, exc.reason, result, error, by_peer=False)

    def _cdn_unknown(self, msg: ControlMessage, now: float, result: int, error: int,
                     text: str) -> None:
        """Refuse a call request we never created a call for."""
        peer_sid = self._peer_sid(msg)
        reply = ControlMessage(M.CDN, version=self.version, session_id=peer_sid or 0)
        reply.add(A.RESULT_CODE, ResultCode(result, error, text))
        # The id is required and must not be zero; it names no session of ours.
        own = self._new_session_id()
        if self.version == 2:
            reply.add(A.ASSIGNED_SESSION_ID, own)
        else:
            reply.add(A.LOCAL_SESSION_ID, own)
            reply.add(A.REMOTE_SESSION_ID, peer_sid or 0)
        self._send(reply, now)

    # ---- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, msg: ControlMessage, now: float) -> None:
        t = msg.msg_type
        if t == M.SCCRQ:
            self._on_sccrq(msg, now)
        elif t == M.SCCRP:
            self._on_sccrp(msg, now)
        elif t == M.SCCCN:
            self._on_scccn(msg, now)
        elif t == M.StopCCN:
            self._on_stopccn(msg, now)
        elif t == M.HELLO:
            # Acknowledged by the transport, at once: no reply will carry the ack, and a
            # delayed one costs a timer per tunnel per hello interval.
            self.transport.ack_now()
        elif t in SESSION_MESSAGES:
            if not self.established:
                raise _Refuse(StopCCNResult.FSM_ERROR, 0,
                              f"{msg.name} before the control connection is established")
            self._on_session_message(msg, now)
        else:
            # Unknown types with M=0 (vendor messages, CSUN, FSQ ...) are ignored (§5.4.1).
            self._count("rx_ignored")

    def _on_sccrq(self, msg: ControlMessage, now: float) -> None:
        if self.state is not State.IDLE:
            raise _Refuse(StopCCNResult.FSM_ERROR, 0, f"SCCRQ in state {self.state.value}")
        self._learn_peer(msg)
        self.peer_tie_breaker = msg.get(A.TIE_BREAKER)
        self._check_v2_auth(msg, expect_response=False)
        self.state = State.WAIT_CTL_CONN
        self._send(self._sccrx(M.SCCRP), now)

    def _on_sccrp(self, msg: ControlMessage, now: float) -> None:
        if self.state is not State.WAIT_CTL_REPLY:
            raise _Refuse(StopCCNResult.FSM_ERROR, 0, f"SCCRP in state {self.state.value}")
        self._learn_peer(msg)
        self._check_v2_auth(msg, expect_response=True)
        reply = ControlMessage(M.SCCCN, version=self.version)
        if self.version == 2 and self._peer_challenge is not None:
            assert self.params.secret is not None
            reply.add(A.CHALLENGE_RESPONSE, auth.challenge_response(
                M.SCCCN, self.params.secret, self._peer_challenge), hidden=self.hiding)
            self._peer_challenge = None
        self._send(reply, now)
        self._up(now)

    def _on_scccn(self, msg: ControlMessage, now: float) -> None:
        if self.state is not State.WAIT_CTL_CONN:
            raise _Refuse(StopCCNResult.FSM_ERROR, 0, f"SCCCN in state {self.state.value}")
        self._check_v2_auth(msg, expect_response=True)
        self._up(now)

    def _learn_peer(self, msg: ControlMessage) -> None:
        if self.version == 2:
            self.peer_id = msg.get(A.ASSIGNED_TUNNEL_ID)
            self.peer_version = msg.get(A.PROTOCOL_VERSION)
            if self.peer_version != V2_PROTOCOL:
                # RFC 2661 §7.2.1: StopCCN 5 with the highest version we support (1.0).
                raise _Refuse(StopCCNResult.UNSUPPORTED_VERSION, 0x0100,
                              f"protocol version {self.peer_version} is not supported")
            self.peer_framing = msg.get(A.FRAMING_CAPABILITIES, 0)
            self.peer_bearer = msg.get(A.BEARER_CAPABILITIES)
        else:
            self.peer_id = msg.get(A.ASSIGNED_CONNECTION_ID)
            self.peer_router_id = msg.get(A.ROUTER_ID, 0)
            self.peer_pw_types = tuple(msg.get(A.PW_CAPABILITIES_LIST, ()))
        self.transport.peer_id = self.peer_id
        self.peer_host_name = msg.get(A.HOST_NAME, "")
        self.peer_vendor = msg.get(A.VENDOR_NAME, "")
        rws = msg.get(A.RECEIVE_WINDOW_SIZE)
        if rws:
            self.transport.set_peer_rws(rws)

    def _check_v2_auth(self, msg: ControlMessage, *, expect_response: bool) -> None:
        """RFC 2661 §5.1.1: answer the peer's Challenge and check its Challenge Response."""
        if self.version != 2:
            return
        secret = self.params.secret
        challenge = msg.get(A.CHALLENGE)
        if challenge is not None:
            if secret is None:
                raise _Refuse(StopCCNResult.NOT_AUTHORIZED, 0,
                              "peer sent a Challenge but no secret is configured for it")
            self._peer_challenge = challenge
        if not expect_response:
            return
        response = msg.get(A.CHALLENGE_RESPONSE)
        if self.our_challenge is None:
            return
        if response is None:
            self._count("auth_failures")
            if self.params.require_auth:
                raise _Refuse(StopCCNResult.NOT_AUTHORIZED, 0,
                              f"{msg.name} lacks the Challenge Response")
            return
        expect = auth.challenge_response(msg.msg_type, secret or b"", self.our_challenge)
        if response != expect:
            self._count("auth_failures")
            raise _Refuse(StopCCNResult.NOT_AUTHORIZED, 0,
                          "Challenge Response does not match (wrong secret?)")

    def _up(self, now: float) -> None:
        self.state = State.ESTABLISHED
        self.established_at = now
        self._setup_deadline = None
        if self.params.hello_interval > 0:
            # The initiator is up when the SCCRP arrives, the responder one trip later on the
            # SCCCN: the initiator's timer runs first and it becomes the end that sends HELLOs
            # (see receive()).
            slack = 1.0 if self.initiator else HELLO_RECEIVER_SLACK
            self._hello_due = now + self.params.hello_interval * slack
        self._events.append(ev.TunnelUp(self))
        log.info("tunnel %d established with %s (peer id %d, host %r)", self.local_id,
                 self.peer, self.peer_id, self.peer_host_name,
                 extra={**self._log_ids, "peer_tunnel_id": self.peer_id})
        self._start_next(now)

    def _on_stopccn(self, msg: ControlMessage, now: float) -> None:
        self._learn_id_from_stopccn(msg)
        rc = msg.get(A.RESULT_CODE)
        result = rc.result if rc is not None else None
        error = rc.error if rc is not None else None
        text = f"peer sent StopCCN {result}/{error}"
        if rc is not None and rc.message:
            text += f" ({rc.message})"
        self._teardown(now, text, result, error, by_peer=True, send=False)

    def _learn_id_from_stopccn(self, msg: ControlMessage) -> None:
        """A StopCCN answering our SCCRQ is the first we hear of the peer's id: adopt it so
        that our acknowledgement reaches the peer's connection (RFC 2661 §5.7: the StopCCN
        carries the Assigned Tunnel ID for exactly this)."""
        if self.peer_id == 0:
            value = msg.get(assigned_id_type(self.version))
            if isinstance(value, int) and value:
                self.peer_id = value

    # ---- calls ------------------------------------------------------------------------------

    def _new_session_id(self) -> int:
        bits = 16 if self.version == 2 else 32
        for _ in range(64):
            sid = int.from_bytes(self.rng(bits // 8), "big")
            if sid and sid not in self.calls and not self._session_id_taken(sid):
                return sid
        raise RuntimeError("no free session id")

    def place_call(self, params: CallParams | None = None, *, direction: str = "incoming",
                   now: float) -> Call:
        """Start a call of ours (ICRQ or OCRQ), now or as soon as the tunnel is up."""
        if direction not in ("incoming", "outgoing"):
            raise ValueError("direction is 'incoming' or 'outgoing'")
        if self.state in (State.CLOSING, State.DEAD):
            raise ValueError("the tunnel is closing")
        if len(self.calls) >= self.params.max_sessions:
            raise ValueError(f"the tunnel already has {len(self.calls)} sessions "
                             f"(max_sessions {self.params.max_sessions})")
        if self._budget is not None and self._budget.full:
            raise ValueError(f"the daemon already has {self._budget.used} sessions "
                             f"(max_sessions {self._budget.limit})")
        params = params or self.params.call
        if self.version == 3 and params.pw_type not in self.params.pw_types:
            raise ValueError(f"pseudowire type {params.pw_type} is not enabled on this tunnel")
        self._now = now
        self._serial = (self._serial + 1) & 0xFFFFFFFF
        call = Call(self, self._new_session_id(), params, direction=direction, initiator=True,
                    serial=self._serial, now=now)
        if self.version == 3 and self.params.tie_breaker:
            call.tie_breaker = self.rng(8)
        self._add_call(call)
        self._pending[call.local_id] = call
        if self.established:
            self._start_next(now)
            self._after(now)
        return call

    def _add_call(self, call: Call) -> None:
        self.calls[call.local_id] = call
        if self._budget is not None:
            self._budget.add()

    def _arm_call(self, call: Call) -> None:
        """Put the call's setup deadline on the timer heap."""
        self._timer_seq += 1
        heapq.heappush(self._call_timers, (call.deadline, self._timer_seq, call))

    def _start_next(self, now: float) -> None:
        """Send the requests of waiting calls of ours while fewer than ``max_call_setups``
        are unanswered."""
        pending = self._pending
        limit = self.params.max_call_setups
        while pending and len(self._in_setup) < limit and self.state is State.ESTABLISHED:
            call = pending.pop(next(iter(pending)))
            if not call.dead:
                self._start_call(call, now)

    def _start_call(self, call: Call, now: float) -> None:
        call.deadline = now + self.params.setup_timeout  # time waiting for the tunnel is free
        if self.version == 3 and self.peer_pw_types and call.pw_type not in self.peer_pw_types:
            self._call_down(call, now, f"peer does not support pseudowire type {call.pw_type}",
                            CDNResult.UNSUPPORTED_PW_TYPE, 0, send=False, by_peer=False)
            return
        self._in_setup[call.local_id] = None
        self._arm_call(call)
        self._send(call.request(), now)

    def disconnect_call(self, call: Call, now: float, *, result: int = CDNResult.ADMINISTRATIVE,
                        error: int = 0, text: str | None = None) -> None:
        """Tear a call down with CDN (or quietly, if it never reached the peer)."""
        self._now = now
        if call.dead:
            return
        send = call.state is not CallState.WAIT_TUNNEL and self.state is not State.CLOSING
        self._call_down(call, now, text or "disconnected locally", result, error, send=send,
                        by_peer=False)
        self._after(now)

    def _find_call(self, msg: ControlMessage) -> Call | None:
        if self.version == 2:
            sid = msg.session_id
            if sid:
                return self.calls.get(sid)
            if msg.msg_type == M.CDN:
                return self._by_peer_sid.get(msg.get(A.ASSIGNED_SESSION_ID, 0))
            return None
        sid = msg.get(A.REMOTE_SESSION_ID, 0)
        if sid:
            return self.calls.get(sid)
        if msg.msg_type in (M.CDN, M.WEN, M.SLI):
            return self._by_peer_sid.get(msg.get(A.LOCAL_SESSION_ID, 0))
        return None

    def _on_session_message(self, msg: ControlMessage, now: float) -> None:
        t = msg.msg_type
        if t in (M.ICRQ, M.OCRQ) and self._find_call(msg) is None:
            self._on_call_request(msg, now)
            return
        call = self._find_call(msg)
        if call is None or call.dead:
            self._count("rx_unknown_session")
            peer_sid = self._peer_sid(msg)
            if t not in (M.CDN, M.WEN, M.SLI) and peer_sid:
                # Tell the peer at once instead of letting its call time out; never answer
                # a CDN, WEN or SLI, so two confused ends cannot ping-pong.
                log.debug("tunnel %d: %s for unknown session", self.local_id, msg.name)
                self._cdn_unknown(msg, now, CDNResult.GENERAL_ERROR, ErrorCode.INVALID_SESSION_ID,
                                  f"{msg.name} for no session of ours")
            return
        if t == M.CDN:
            rc = msg.get(A.RESULT_CODE)
            call.result = rc
            text = f"peer sent CDN {rc.result}/{rc.error}" if rc else "peer sent CDN"
            if rc is not None and rc.message:
                text += f" ({rc.message})"
            self._call_down(call, now, text, rc.result if rc else None,
                            rc.error if rc else None, send=False, by_peer=True)
            return
        if t in (M.WEN, M.SLI):
            call.record_info(msg)
            self._events.append(ev.CallInfo(call, t))
            return
        expected = {
            (CallState.WAIT_REPLY, True): M.ICRP if call.direction == "incoming" else M.OCRP,
            (CallState.WAIT_CONNECT, False): M.ICCN if call.direction == "incoming" else None,
            (CallState.WAIT_CONNECT, True): M.OCCN,
        }.get((call.state, call.initiator))
        if t != expected:
            self._call_down(call, now, f"{msg.name} in call state {call.state.value}",
                            self._fsm_cdn, 0, send=True, by_peer=False)
            return
        if t in (M.ICRP, M.OCRP):
            refused = call.learn_reply(msg)
            if refused:
                self._call_down(call, now, refused[2], refused[0], refused[1], send=True,
                                by_peer=False)
                return
            self._by_peer_sid[call.peer_id] = call
            if t == M.ICRP:
                self._send(call.connected(), now)
                self._call_up(call, now)
            else:
                call.state = CallState.WAIT_CONNECT
            return
        refused = call.learn_connected(msg)  # ICCN (we answered an ICRQ) or OCCN
        if refused:
            self._call_down(call, now, refused[2], refused[0], refused[1], send=True,
                            by_peer=False)
            return
        self._call_up(call, now)

    @property
    def _fsm_cdn(self) -> int:
        return CDNResult.FSM_ERROR if self.version == 3 else CDNResult.GENERAL_ERROR

    def _on_call_request(self, msg: ControlMessage, now: float) -> None:
        direction = "incoming" if msg.msg_type == M.ICRQ else "outgoing"
        peer_sid = self._peer_sid(msg)
        if peer_sid in self._by_peer_sid:
            old = self._by_peer_sid[peer_sid]
            self._cdn_unknown(msg, now, CDNResult.GENERAL_ERROR, ErrorCode.INVALID_SESSION_ID,
                              f"session id {peer_sid} is already in use by {old.local_id}")
            return
        if self.version == 3 and self._session_tie(msg, now):
            return
        if len(self.calls) >= self.params.max_sessions:
            self._refuse_call(msg, now, "refused_tunnel_max_sessions",
                              f"session limit {self.params.max_sessions} of the tunnel reached")
            return
        if self._budget is not None and self._budget.full:
            self._refuse_call(msg, now, "refused_max_sessions",
                              f"session limit {self._budget.limit} of the host reached")
            return
        call = Call(self, self._new_session_id(), self.params.call, direction=direction,
                    initiator=False, serial=0, now=now)
        refused = call.refuse_request(msg)
        call.learn_request(msg)
        self._add_call(call)
        self._by_peer_sid[call.peer_id] = call
        if refused:
            self._call_down(call, now, refused[2], refused[0], refused[1], send=True,
                            by_peer=False)
            return
        self._send(call.reply(), now)
        if direction == "incoming":
            call.state = CallState.WAIT_CONNECT
            self._arm_call(call)
        else:
            # We are the LAC of an outgoing call: there is no bearer to dial, so the call is
            # "answered" at once (RFC 2661 §7.5 wait-cs-answer collapses).
            self._send(call.connected(), now)
            self._call_up(call, now)

    def _refuse_call(self, msg: ControlMessage, now: float, counter: str, text: str) -> None:
        """A call request beyond a session bound: CDN 4 (lack of facilities, temporary) with
        error 4 (insufficient resources), counted here and in the daemon's counters."""
        self._count(counter)
        if self._budget is not None:
            self._budget.count(counter)
        self._cdn_unknown(msg, now, CDNResult.NO_FACILITIES_TEMPORARY, ErrorCode.NO_RESOURCES,
                          text)

    def _session_tie(self, msg: ControlMessage, now: float) -> bool:
        """RFC 3931 §5.4.4 session tie breaking; True if the request was consumed."""
        end_id = msg.get(A.REMOTE_END_ID, b"")
        if not end_id:
            return False  # ties are recognised by Remote End ID only
        # Only our unanswered requests can tie: at most max_call_setups of them.
        ours = next((c for sid in self._in_setup if (c := self.calls.get(sid)) is not None
                     and c.initiator and c.state is CallState.WAIT_REPLY
                     and c.remote_end_id == end_id), None)
        if ours is None:
            return False
        theirs = msg.get(A.TIE_BREAKER)
        mine = ours.tie_breaker
        self._count("session_ties")
        if mine is not None and (theirs is None or mine < theirs):
            self._cdn_unknown(msg, now, CDNResult.LOST_TIE_BREAKER, 0, "lost the tie breaker")
            return True
        if theirs is not None and (mine is None or theirs < mine):
            self._call_down(ours, now, "lost the session tie breaker",
                            CDNResult.LOST_TIE_BREAKER, 0, send=True, by_peer=False)
            return False
        # Equal values, or neither side sent one: both sessions are torn down.
        self._call_down(ours, now, "session tie without a winner", CDNResult.LOST_TIE_BREAKER,
                        0, send=True, by_peer=False)
        self._cdn_unknown(msg, now, CDNResult.LOST_TIE_BREAKER, 0, "session tie without a winner")
        return True

    def _call_up(self, call: Call, now: float) -> None:
        call.state = CallState.ESTABLISHED
        call.established_at = now
        self._events.append(ev.CallUp(call))
        if call.local_id in self._in_setup:
            del self._in_setup[call.local_id]
            self._start_next(now)

    def _call_down(self, call: Call, now: float, reason: str, result: int | None,
                   error: int | None, *, send: bool, by_peer: bool) -> None:
        was_up = call.established
        if send:
            self._send(call.disconnect(result or CDNResult.GENERAL_ERROR, error or 0, reason),
                       now)
        call.state = CallState.DEAD
        if self.calls.pop(call.local_id, None) is call and self._budget is not None:
            self._budget.remove()
        if self._by_peer_sid.get(call.peer_id) is call:
            del self._by_peer_sid[call.peer_id]
        self._pending.pop(call.local_id, None)
        self._events.append(ev.CallDown(call, reason, result, error, by_peer, was_up))
        log.info("session %d/%d down: %s", self.local_id, call.local_id, reason,
                 extra={**self._log_ids, "session_id": call.local_id, "reason": reason})
        if call.local_id in self._in_setup:
            del self._in_setup[call.local_id]
            self._start_next(now)

    # ---- teardown ---------------------------------------------------------------------------

    def close(self, now: float, *, result: int = StopCCNResult.GENERAL_CLEAR, error: int = 0,
              text: str | None = None) -> None:
        """Clear the control connection with StopCCN (administrative close)."""
        self._now = now
        if self.state in (State.CLOSING, State.DEAD):
            return
        send = self.state is not State.IDLE
        self._teardown(now, text or "closed locally", result, error, by_peer=False, send=send)
        self._after(now)

    def _teardown(self, now: float, reason: str, result: int | None, error: int | None, *,
                  by_peer: bool, send: bool = True) -> None:
        if self.state in (State.CLOSING, State.DEAD):
            return
        was_up = self.established
        if send and result is not None:
            # Whatever the window still holds back is moot once the StopCCN clears every
            # session; it must not delay the StopCCN past the linger.
            dropped = self.transport.discard_unsent()
            if dropped:
                self._count("tx_discarded_on_close", dropped)
            msg = ControlMessage(M.StopCCN, version=self.version)
            # readable for the peer's reverse lookup
            msg.add(assigned_id_type(self.version), self.local_id)
            msg.add(A.RESULT_CODE, ResultCode(result, error or 0, reason[:200]))
            self._send(msg, now)
        self.result = ResultCode(result, error, reason) if result is not None else None
        self.down_reason = reason
        self._pending.clear()  # so that no call down below starts a waiting one
        for call in list(self.calls.values()):
            self._call_down(call, now, "tunnel closed", None, None, send=False,
                            by_peer=by_peer)
        self._in_setup.clear()
        self._call_timers.clear()
        self._setup_deadline = None
        self._hello_due = None
        self.state = State.CLOSING
        # The StopCCN receiver lingers a full retransmission cycle to re-acknowledge; the
        # sender may stop as soon as its StopCCN is acknowledged (RFC 3931 §4.2).
        if self.transport.exhausted:
            self.state = State.DEAD
        else:
            self.transport.begin_linger(now, until_acked=send and not by_peer)
        self._events.append(ev.TunnelDown(self, reason, result, error, by_peer, was_up))
        log.info("tunnel %d down: %s", self.local_id, reason,
                 extra={**self._log_ids, "reason": reason})

    @property
    def _log_ids(self) -> dict[str, Any]:
        """The fields a structured log line carries for this connection (``extra=``)."""
        return {"tunnel_id": self.local_id, "peer": self.peer}

    # ---- timers -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        best = self.transport.next_deadline()
        for t in (self._setup_deadline, self._hello_due):
            if t is not None and (best is None or t < best):
                best = t
        if self.established:
            t = self._next_call_deadline()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def _call_timer_live(self, entry: tuple[float, int, Call]) -> bool:
        deadline, _seq, call = entry
        return (deadline == call.deadline and not call.established and not call.dead
                and self.calls.get(call.local_id) is call)

    def _next_call_deadline(self) -> float | None:
        heap = self._call_timers
        while heap:
            if self._call_timer_live(heap[0]):
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        self._now = now
        if self.state is State.DEAD:
            return
        self.transport.handle_timer(now)
        if self._setup_deadline is not None and now >= self._setup_deadline:
            if self.state is State.WAIT_CTL_REPLY and self.transport.outstanding:
                # Our SCCRQ is still unacknowledged: its retransmissions decide, and an
                # unreachable peer is reported as such rather than as a timeout.
                self._setup_deadline = now + self.params.setup_timeout
            else:
                self._teardown(now, "control connection not established in time",
                               StopCCNResult.FSM_ERROR, 0, by_peer=False)
        if self.established:
            heap = self._call_timers
            while heap and heap[0][0] <= now and self.state is State.ESTABLISHED:
                entry = heapq.heappop(heap)
                if not self._call_timer_live(entry):
                    continue
                call = entry[2]
                result = CDNResult.FSM_ERROR if self.version == 3 else CDNResult.TIMEOUT
                self._call_down(call, now, "session not established in time", result, 0,
                                send=call.state is not CallState.WAIT_TUNNEL, by_peer=False)
            if self._hello_due is not None and now >= self._hello_due:
                self._hello_due = now + self.params.hello_interval
                if self.transport.outstanding == 0:
                    self._send(ControlMessage(M.HELLO, version=self.version), now)
        self._after(now)

    def _after(self, now: float) -> None:
        """Collect what the transport reported and what it wants sent."""
        for event in self.transport.events():
            if isinstance(event, RetriesExhausted):
                what = ("hello timeout" if event.msg_type == M.HELLO else
                        f"{message_name(event.msg_type)} unacknowledged after "
                        f"{event.retries} retransmissions")
                self._count("retries_exhausted")
                self._teardown(now, what, None, None, by_peer=False, send=False)
                self.state = State.DEAD  # also when it was already closing
            elif isinstance(event, LingerExpired):
                self.state = State.DEAD
            else:
                self._count("rx_invalid_nr")
        if self.state is State.DEAD:
            return
        pending = self.datagrams_to_send()  # drains self._out first: keep it in a local
        self._out = pending

    # ---- introspection ----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        t = self.transport
        return {
            "tunnel_id": self.local_id,
            "peer_tunnel_id": self.peer_id,
            "version": self.version,
            "state": self.state.value,
            "initiator": self.initiator,
            "peer_host_name": self.peer_host_name,
            "peer_vendor": self.peer_vendor,
            "authenticated": self.digests or (self.version == 2 and self.our_challenge
                                              is not None and self.established),
            "sessions": len(self.calls),
            "result": list(self.result) if self.result is not None else None,
            "down_reason": self.down_reason,
            "ns": t.ns_next,
            "nr": t.nr,
            "cwnd": t.cwnd,
            "peer_rws": t.peer_rws,
            "counters": dict(sorted(self.stats.items())),
            "transport": {k: getattr(t.stats, k) for k in t.stats.__dataclass_fields__},
        }


_COUNTER_NAMES: dict[tuple[str, int], str] = {}


def _counter_name(prefix: str, msg_type: int) -> str:
    """``rx_HELLO`` and the like, built once per message type: every message counts one."""
    key = (prefix, msg_type)
    name = _COUNTER_NAMES.get(key)
    if name is None:
        name = _COUNTER_NAMES[key] = prefix + message_name(msg_type)
    return name


def assigned_id_type(version: int) -> int:
    """The AVP that carries a control connection's own id: Assigned Tunnel ID (v2) or
    Assigned Control Connection ID (v3)."""
    return A.ASSIGNED_TUNNEL_ID if version == 2 else A.ASSIGNED_CONNECTION_ID


__all__ = ["ControlConnection", "State", "assigned_id_type"]
