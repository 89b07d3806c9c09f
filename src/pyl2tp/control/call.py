"""Calls (sessions) of a control connection: state, negotiation and the messages they send.

A :class:`Call` is one row of RFC 2661 §7.4/§7.5 and RFC 3931 §7.3/§7.4: incoming calls
(ICRQ/ICRP/ICCN) and outgoing calls (OCRQ/OCRP/OCCN), from either end. The control connection
routes messages to it and carries what it sends; the call decides what to answer and what its
data-plane session will look like once established.

Negotiation, where the RFCs leave the data plane room that the kernel's model does not have:

* v3 L2-Specific Sublayer (AVP 69) states what its *sender* wants to receive, so the two
  directions could differ; the kernel (and our data plane) applies one sublayer type to both.
  The call's recipient therefore adopts the initiator's choice and echoes it; an initiator
  that gets an explicit different answer disconnects (CDN 2, error 3) rather than carrying
  frames the other end cannot parse. A reply without the AVP is taken as agreement, because
  several peers only send it in the request.
* v3 Data Sequencing (AVP 70) is per direction and maps directly: the peer's level sets our
  ``send_seq``, ours sets ``recv_seq``; sequencing without a sublayer is refused (CDN 15).
* v2: the LAC may demand sequencing (Sequencing Required in ICCN/OCCN); otherwise the LNS
  decides, and the LAC's data plane follows what it receives (``lns_mode``, as in the
  kernel's ``l2tp_recv_common``).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from pyl2tp.wire.avp import ResultCode
from pyl2tp.wire.constants import AvpType, DataSequencing, L2SpecType, MessageType, PwType
from pyl2tp.wire.message import ControlMessage

from .params import CIRCUIT_ACTIVE, CIRCUIT_NEW, CallParams

if TYPE_CHECKING:
    from .tunnel import ControlConnection

A = AvpType
M = MessageType


class CallState(enum.Enum):
    WAIT_TUNNEL = "wait-tunnel"
    WAIT_REPLY = "wait-reply"
    WAIT_CONNECT = "wait-connect"
    ESTABLISHED = "established"
    DEAD = "dead"


class Call:
    """One session's control state and its negotiated data-plane parameters.

    ``direction`` is "incoming" (ICRQ/ICRP/ICCN) or "outgoing" (OCRQ/OCRP/OCCN);
    ``initiator`` says whether we sent the request. ``cookie`` is what we put in transmitted
    data packets (the peer's Assigned Cookie), ``peer_cookie`` what we require on received
    ones (our own Assigned Cookie): the kernel's naming, so the daemon can copy them across.
    """

    __slots__ = (
        "conn", "local_id", "peer_id", "direction", "initiator", "params", "state", "serial",
        "pw_type", "cookie", "peer_cookie", "l2spec_type", "send_seq", "recv_seq", "lns_mode",
        "remote_end_id", "tie_breaker", "deadline", "result", "peer_info", "created_at",
        "established_at",
    )

    def __init__(self, conn: ControlConnection, local_id: int, params: CallParams, *,
                 direction: str, initiator: bool, serial: int, now: float) -> None:
        self.conn = conn
        self.local_id = local_id
        self.peer_id = 0
        self.direction = direction
        self.initiator = initiator
        self.params = params
        self.state = CallState.WAIT_TUNNEL
        self.serial = serial
        self.pw_type = params.pw_type if conn.version == 3 else PwType.PPP
        self.cookie = b""
        self.peer_cookie = conn.rng(params.cookie_len) if conn.version == 3 else b""
        self.l2spec_type = params.l2spec_type if conn.version == 3 else L2SpecType.NONE
        self.send_seq = False
        self.recv_seq = False
        # The LNS side of a v2 call decides sequencing (kernel lns_mode).
        self.lns_mode = conn.version == 2 and (direction == "incoming") != initiator
        self.remote_end_id = params.remote_end_id
        self.tie_breaker: bytes | None = None
        self.deadline = now + conn.params.setup_timeout
        self.result: ResultCode | None = None
        # Last WEN Call Errors / SLI ACCM or Circuit Status and the like, by AVP name.
        self.peer_info: dict[str, object] = {}
        self.created_at = now
        self.established_at: float | None = None

    @property
    def established(self) -> bool:
        return self.state is CallState.ESTABLISHED

    @property
    def dead(self) -> bool:
        return self.state is CallState.DEAD

    @property
    def is_lac(self) -> bool:
        """v2 role on this call: the LAC sends ICRQ or receives OCRQ."""
        return (self.direction == "incoming") == self.initiator

    def __repr__(self) -> str:
        return (f"<Call {self.conn.local_id}/{self.local_id} peer {self.peer_id} "
                f"{self.direction} {self.state.value}>")

    # ---- messages we send -------------------------------------------------------------------

    def _msg(self, msg_type: int) -> ControlMessage:
        msg = ControlMessage(msg_type, version=self.conn.version, session_id=self.peer_id)
        if self.conn.version == 3:
            msg.add(A.LOCAL_SESSION_ID, self.local_id)
            msg.add(A.REMOTE_SESSION_ID, self.peer_id)
        return msg

    def _add_v3_pw(self, msg: ControlMessage, *, request: bool) -> None:
        if request:
            msg.add(A.PW_TYPE, self.pw_type)
            msg.add(A.REMOTE_END_ID, self.remote_end_id)
        if request or msg.msg_type in (M.ICRP, M.OCRP):
            msg.add(A.CIRCUIT_STATUS, CIRCUIT_ACTIVE | CIRCUIT_NEW)
            if self.peer_cookie:
                msg.add(A.ASSIGNED_COOKIE, self.peer_cookie)
        self._add_sublayer(msg)
        if request and self.tie_breaker is not None:
            msg.add(A.TIE_BREAKER, self.tie_breaker)

    def _add_sublayer(self, msg: ControlMessage) -> None:
        """The agreed sublayer, and the sequencing we require (impossible without one)."""
        msg.add(A.L2_SPECIFIC_SUBLAYER, self.l2spec_type)
        want = self.params.data_sequencing if self.l2spec_type else DataSequencing.NONE
        msg.add(A.DATA_SEQUENCING, want)

    def request(self) -> ControlMessage:
        """ICRQ or OCRQ, sent once the tunnel is up."""
        conn = self.conn
        msg_type = M.ICRQ if self.direction == "incoming" else M.OCRQ
        msg = self._msg(msg_type)
        hide = conn.hiding
        if conn.version == 2:
            msg.add(A.ASSIGNED_SESSION_ID, self.local_id, hidden=hide)
            msg.add(A.CALL_SERIAL_NUMBER, self.serial, hidden=hide)
            msg.add(A.BEARER_TYPE, self.params.bearer_type, hidden=hide)
            if msg_type == M.OCRQ:
                msg.add(A.MINIMUM_BPS, 0, hidden=hide)
                msg.add(A.MAXIMUM_BPS, self.params.tx_connect_speed, hidden=hide)
                msg.add(A.FRAMING_TYPE, self.params.framing_type, hidden=hide)
                msg.add(A.CALLED_NUMBER, self.params.called_number, hidden=hide)
            else:
                if self.params.called_number:
                    msg.add(A.CALLED_NUMBER, self.params.called_number, hidden=hide)
                if self.params.calling_number:
                    msg.add(A.CALLING_NUMBER, self.params.calling_number, hidden=hide)
        else:
            msg.add(A.CALL_SERIAL_NUMBER, self.serial, hidden=hide)
            self._add_v3_pw(msg, request=True)
        self.state = CallState.WAIT_REPLY
        return msg

    def reply(self) -> ControlMessage:
        """ICRP or OCRP to an accepted request."""
        msg = self._msg(M.ICRP if self.direction == "incoming" else M.OCRP)
        if self.conn.version == 2:
            msg.add(A.ASSIGNED_SESSION_ID, self.local_id, hidden=self.conn.hiding)
        else:
            self._add_v3_pw(msg, request=False)
        return msg

    def connected(self) -> ControlMessage:
        """ICCN or OCCN: the call is up from our side."""
        msg = self._msg(M.ICCN if self.direction == "incoming" else M.OCCN)
        hide = self.conn.hiding
        if self.conn.version == 2:
            msg.add(A.TX_CONNECT_SPEED, self.params.tx_connect_speed, hidden=hide)
            msg.add(A.FRAMING_TYPE, self.params.framing_type, hidden=hide)
            if self.params.sequencing:
                msg.add(A.SEQUENCING_REQUIRED)
                self.send_seq = self.recv_seq = True
        else:
            msg.add(A.CIRCUIT_STATUS, CIRCUIT_ACTIVE | CIRCUIT_NEW)
            self._add_sublayer(msg)
        return msg

    def disconnect(self, result: int, error: int, text: str | None) -> ControlMessage:
        """CDN. Before the peer's id is known the header (v2) or Remote Session ID (v3) is 0
        and our Assigned/Local Session ID lets the peer find the call (reverse lookup)."""
        msg = self._msg(M.CDN)
        msg.add(A.RESULT_CODE, ResultCode(result, error, text))
        if self.conn.version == 2:
            msg.add(A.ASSIGNED_SESSION_ID, self.local_id, hidden=self.conn.hiding)
        return msg

    # ---- what we learn from the peer --------------------------------------------------------

    def refuse_request(self, msg: ControlMessage) -> tuple[int, int, str] | None:
        """Check an ICRQ/OCRQ against our policy; a (result, error, text) refuses it."""
        conn = self.conn
        if conn.version == 2:
            return None
        pw_type = msg.get(A.PW_TYPE)
        if pw_type not in conn.params.pw_types:
            return (14, 0, f"pseudowire type {pw_type} is not supported")
        l2spec = msg.get(A.L2_SPECIFIC_SUBLAYER, L2SpecType.NONE)
        if l2spec not in (L2SpecType.NONE, L2SpecType.DEFAULT):
            return (2, 3, f"L2-Specific Sublayer type {l2spec} is not supported")
        if msg.get(A.DATA_SEQUENCING, 0) and l2spec == L2SpecType.NONE:
            return (15, 0, "sequencing requested without an L2-Specific Sublayer")
        return None

    def learn_request(self, msg: ControlMessage) -> None:
        """Adopt what an accepted ICRQ/OCRQ says (we are its recipient)."""
        if self.conn.version == 2:
            self.peer_id = msg.get(A.ASSIGNED_SESSION_ID)
            self.serial = msg.get(A.CALL_SERIAL_NUMBER, 0)
            return
        self.peer_id = msg.get(A.LOCAL_SESSION_ID)
        self.serial = msg.get(A.CALL_SERIAL_NUMBER, 0)
        self.pw_type = msg.get(A.PW_TYPE)
        self.remote_end_id = msg.get(A.REMOTE_END_ID, b"")
        self.cookie = msg.get(A.ASSIGNED_COOKIE, b"")
        self.l2spec_type = msg.get(A.L2_SPECIFIC_SUBLAYER, L2SpecType.NONE)
        self._learn_sequencing(msg)

    def learn_reply(self, msg: ControlMessage) -> tuple[int, int, str] | None:
        """Adopt an ICRP/OCRP (we sent the request); a (result, error, text) refuses it."""
        if self.conn.version == 2:
            self.peer_id = msg.get(A.ASSIGNED_SESSION_ID)
            return None
        self.peer_id = msg.get(A.LOCAL_SESSION_ID)
        self.cookie = msg.get(A.ASSIGNED_COOKIE, b"")
        return self._check_sublayer(msg) or self._learn_sequencing(msg)

    def learn_connected(self, msg: ControlMessage) -> tuple[int, int, str] | None:
        """Adopt an ICCN/OCCN (the final word on sequencing)."""
        if self.conn.version == 2:
            if msg.has(A.SEQUENCING_REQUIRED) or (self.lns_mode and self.params.sequencing):
                self.send_seq = self.recv_seq = True
            return None
        return self._check_sublayer(msg) or self._learn_sequencing(msg)

    def _check_sublayer(self, msg: ControlMessage) -> tuple[int, int, str] | None:
        l2spec = msg.get(A.L2_SPECIFIC_SUBLAYER)
        if l2spec is not None and l2spec != self.l2spec_type:
            return (2, 3, f"L2-Specific Sublayer {l2spec} differs from the agreed "
                          f"{self.l2spec_type}")
        return None

    def _learn_sequencing(self, msg: ControlMessage) -> tuple[int, int, str] | None:
        peer_wants = msg.get(A.DATA_SEQUENCING)
        if peer_wants is not None:
            if peer_wants and self.l2spec_type == L2SpecType.NONE:
                return (15, 0, "sequencing requested without an L2-Specific Sublayer")
            self.send_seq = bool(peer_wants)
        self.recv_seq = bool(self.params.data_sequencing) and bool(self.l2spec_type)
        return None

    def record_info(self, msg: ControlMessage) -> None:
        """WEN and SLI: keep the latest values for the operator."""
        for attr in (A.CALL_ERRORS, A.ACCM, A.CIRCUIT_STATUS):
            if msg.has(attr):
                self.peer_info[A(attr).name.lower()] = msg.get(attr)

    def summary(self) -> dict[str, object]:
        """The call as the management API shows it."""
        return {
            "session_id": self.local_id,
            "peer_session_id": self.peer_id,
            "direction": self.direction,
            "initiator": self.initiator,
            "state": self.state.value,
            "serial": self.serial,
            "pw_type": int(self.pw_type),
            "l2spec_type": int(self.l2spec_type),
            "cookie_len": len(self.cookie),
            "peer_cookie_len": len(self.peer_cookie),
            "send_seq": self.send_seq,
            "recv_seq": self.recv_seq,
            "peer_info": {k: repr(v) for k, v in self.peer_info.items()},
        }


__all__ = ["Call", "CallState"]
