"""Helpers for the control-plane tests: a hand-driven peer and full, valid control messages.

:class:`FakePeer` plays the far end of a :class:`~pyl2tp.control.plane.ControlPlane` without a
control connection of its own: it builds messages with :func:`pyl2tp.wire.message.encode_message`,
keeps the Ns/Nr bookkeeping a real peer would, and decodes everything the plane answers. Tests
use it to inject exactly the message they want (one AVP missing, an odd M bit, a vendor AVP) at
exactly the point of an exchange where it matters, on a virtual clock.

:func:`full_message` builds every v2/v3 control message with all the AVPs RFC 2661 §6 /
RFC 3931 §6 require, so a test can remove one of them and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyl2tp.control import events as ev
from pyl2tp.control.plane import ControlPlane
from pyl2tp.control.tunnel import ControlConnection
from pyl2tp.wire import auth
from pyl2tp.wire.avp import Accm, CallErrors, ProtocolVersion, ResultCode
from pyl2tp.wire.constants import AvpType, MessageType
from pyl2tp.wire.message import ControlMessage, decode_message, encode_message

A = AvpType
M = MessageType

PEER_ADDR = ("192.0.2.9", 1701)
LOCAL = "sock"


def full_message(version: int, msg_type: int, *, tid: int = 0x4242, sid: int = 0x51,
                 peer_sid: int = 0) -> ControlMessage:
    """``msg_type`` with every AVP its version requires (and a few usual optional ones).

    ``tid`` is the sender's own tunnel/control connection id, ``sid`` its session id and
    ``peer_sid`` the recipient's session id (v3 Remote Session ID; v2 puts it in the header).
    """
    msg = ControlMessage(msg_type, version=version)
    if version == 2:
        if msg_type in (M.SCCRQ, M.SCCRP):
            msg.add(A.PROTOCOL_VERSION, ProtocolVersion(1, 0))
            msg.add(A.HOST_NAME, "fakepeer")
            msg.add(A.FRAMING_CAPABILITIES, 3)
            msg.add(A.BEARER_CAPABILITIES, 3)
            msg.add(A.ASSIGNED_TUNNEL_ID, tid)
            msg.add(A.RECEIVE_WINDOW_SIZE, 4)
        elif msg_type == M.StopCCN:
            msg.add(A.ASSIGNED_TUNNEL_ID, tid)
            msg.add(A.RESULT_CODE, ResultCode(1, 0, "bye"))
        elif msg_type == M.OCRQ:
            msg.add(A.ASSIGNED_SESSION_ID, sid)
            msg.add(A.CALL_SERIAL_NUMBER, 7)
            msg.add(A.MINIMUM_BPS, 0)
            msg.add(A.MAXIMUM_BPS, 100_000_000)
            msg.add(A.BEARER_TYPE, 1)
            msg.add(A.FRAMING_TYPE, 1)
            msg.add(A.CALLED_NUMBER, "5551234")
        elif msg_type in (M.OCRP, M.ICRP):
            msg.add(A.ASSIGNED_SESSION_ID, sid)
        elif msg_type in (M.OCCN, M.ICCN):
            msg.add(A.TX_CONNECT_SPEED, 100_000_000)
            msg.add(A.FRAMING_TYPE, 1)
        elif msg_type == M.ICRQ:
            msg.add(A.ASSIGNED_SESSION_ID, sid)
            msg.add(A.CALL_SERIAL_NUMBER, 7)
            msg.add(A.BEARER_TYPE, 1)
        elif msg_type == M.CDN:
            msg.add(A.RESULT_CODE, ResultCode(3, 0, "done"))
            msg.add(A.ASSIGNED_SESSION_ID, sid)
        elif msg_type == M.WEN:
            msg.add(A.CALL_ERRORS, CallErrors(1, 2, 3, 4, 5, 6))
        elif msg_type == M.SLI:
            msg.add(A.ACCM, Accm(0, 0xFFFFFFFF))
        if msg_type in (M.OCRP, M.OCCN, M.ICRP, M.ICCN, M.CDN, M.WEN, M.SLI):
            msg.session_id = peer_sid
        return msg
    if msg_type in (M.SCCRQ, M.SCCRP):
        msg.add(A.HOST_NAME, "fakepeer")
        msg.add(A.ROUTER_ID, 0x0A000009)
        msg.add(A.ASSIGNED_CONNECTION_ID, tid)
        msg.add(A.PW_CAPABILITIES_LIST, (5, 4, 7))
        msg.add(A.RECEIVE_WINDOW_SIZE, 4)
    elif msg_type == M.StopCCN:
        msg.add(A.RESULT_CODE, ResultCode(1, 0, "bye"))
        msg.add(A.ASSIGNED_CONNECTION_ID, tid)
    elif msg_type in (M.ICRQ, M.OCRQ):
        msg.add(A.LOCAL_SESSION_ID, sid)
        msg.add(A.REMOTE_SESSION_ID, 0)
        msg.add(A.CALL_SERIAL_NUMBER, 7)
        msg.add(A.PW_TYPE, 5)
        msg.add(A.REMOTE_END_ID, b"pw-1")
        msg.add(A.CIRCUIT_STATUS, 3)
        msg.add(A.ASSIGNED_COOKIE, b"\x01\x02\x03\x04\x05\x06\x07\x08")
        msg.add(A.L2_SPECIFIC_SUBLAYER, 1)
        msg.add(A.DATA_SEQUENCING, 0)
    elif msg_type in (M.ICRP, M.OCRP):
        msg.add(A.LOCAL_SESSION_ID, sid)
        msg.add(A.REMOTE_SESSION_ID, peer_sid)
        msg.add(A.CIRCUIT_STATUS, 3)
        msg.add(A.ASSIGNED_COOKIE, b"\x0a\x0b\x0c\x0d")
    elif msg_type in (M.ICCN, M.OCCN, M.SLI):
        msg.add(A.LOCAL_SESSION_ID, sid)
        msg.add(A.REMOTE_SESSION_ID, peer_sid)
        if msg_type == M.SLI:
            msg.add(A.CIRCUIT_STATUS, 1)
    elif msg_type == M.CDN:
        msg.add(A.RESULT_CODE, ResultCode(3, 0, "done"))
        msg.add(A.LOCAL_SESSION_ID, sid)
        msg.add(A.REMOTE_SESSION_ID, peer_sid)
    elif msg_type == M.WEN:
        msg.add(A.LOCAL_SESSION_ID, sid)
        msg.add(A.REMOTE_SESSION_ID, peer_sid)
        msg.add(A.CALL_ERRORS, CallErrors(0, 0, 3, 4, 5, 6))
    return msg


def without(msg: ControlMessage, attr: int) -> ControlMessage:
    """The message with every IETF AVP of type ``attr`` removed."""
    assert msg.has(attr), f"{msg.name} has no AVP {attr} to remove"
    msg.avps = [a for a in msg.avps if not (a.attr_type == attr and a.vendor_id == 0)]
    return msg


def hide_key(version: int, secret: bytes | None) -> bytes | None:
    if secret is None:
        return None
    return secret if version == 2 else auth.hiding_key_v3(secret)


class FakePeer:
    """The far end of ``plane``, driven by hand on a virtual clock (no authentication).

    ``tid`` is our Assigned Tunnel/Control Connection ID, ``peer_tid`` the plane's once known.
    :meth:`send` returns (and :attr:`inbox` accumulates) the decoded messages the plane sends
    in answer; :attr:`events` collects the plane's events.
    """

    def __init__(self, plane: ControlPlane, version: int, *, tid: int = 0x4242,
                 addr: tuple[str, int] = PEER_ADDR, secret: bytes | None = None) -> None:
        self.plane = plane
        self.version = version
        self.tid = tid
        self.addr = addr
        self.peer_tid = 0
        self.ns = 0
        self.nr = 0
        self.now = 0.0
        self.hide_key = hide_key(version, secret)
        self.inbox: list[ControlMessage] = []
        self.raw: list[bytes] = []
        self.events: list[ev.Event] = []

    # ---- sending ------------------------------------------------------------------------

    def encode(self, msg: ControlMessage, *, tunnel_id: int | None = None,
               ns: int | None = None) -> bytes:
        msg.version = self.version
        msg.tunnel_id = self.peer_tid if tunnel_id is None else tunnel_id
        msg.ns = self.ns if ns is None else ns
        msg.nr = self.nr
        data = encode_message(msg, hide_key=self.hide_key)
        if ns is None and msg.msg_type != M.ZLB:
            self.ns = (self.ns + 1) & 0xFFFF
        return data

    def deliver(self, data: bytes) -> list[ControlMessage]:
        self.plane.receive(LOCAL, data, 0, self.addr, self.now)
        return self.recv()

    def send(self, msg: ControlMessage, **kw: Any) -> list[ControlMessage]:
        return self.deliver(self.encode(msg, **kw))

    def zlb(self) -> list[ControlMessage]:
        return self.send(ControlMessage(M.ZLB))

    # ---- receiving ----------------------------------------------------------------------

    def recv(self) -> list[ControlMessage]:
        out = []
        for local, peer, data in self.plane.datagrams():
            assert local == LOCAL and peer[0] == self.addr[0], (local, peer)
            msg = decode_message(data, hide_key=self.hide_key, validate=False)
            if msg.msg_type not in (M.ZLB, M.ACK) and msg.ns == self.nr:
                self.nr = (self.nr + 1) & 0xFFFF
            self.raw.append(data)
            out.append(msg)
        self.inbox.extend(out)
        self.events.extend(self.plane.events())
        return out

    def advance(self, dt: float) -> list[ControlMessage]:
        """Let ``dt`` seconds pass, firing the plane's timers on the way."""
        end = self.now + dt
        out: list[ControlMessage] = []
        while (deadline := self.plane.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.plane.handle_timer(self.now)
            out += self.recv()
        self.now = end
        return out

    # ---- exchanges ----------------------------------------------------------------------

    def dial(self, sccrq: ControlMessage | None = None) -> ControlConnection:
        """Open a tunnel to the plane (SCCRQ, SCCRP, SCCCN); returns the plane's side."""
        sccrq = sccrq or full_message(self.version, M.SCCRQ, tid=self.tid)
        replies = self.send(sccrq, tunnel_id=0)
        sccrp = only(replies, M.SCCRP)
        self.peer_tid = sccrp.get(assigned_id_attr(self.version))
        self.send(ControlMessage(M.SCCCN))
        conn = self.plane.conns[self.peer_tid]
        assert conn.established, conn
        return conn

    def answer(self, conn: ControlConnection) -> None:
        """Complete a tunnel the plane dialled to us (its SCCRQ is waiting)."""
        sccrq = only(self.recv(), M.SCCRQ)
        self.peer_tid = sccrq.get(assigned_id_attr(self.version))
        assert self.peer_tid == conn.local_id
        replies = self.send(full_message(self.version, M.SCCRP, tid=self.tid))
        only(replies, M.SCCCN)
        assert conn.established

    def take(self, msg_type: int) -> ControlMessage:
        """The one message of ``msg_type`` received since the last take, acknowledging."""
        msgs = [m for m in self.inbox if m.msg_type == msg_type]
        assert len(msgs) == 1, (msg_type, [m.name for m in self.inbox])
        self.inbox.clear()
        return msgs[0]

    def of_type(self, *types: int) -> list[ControlMessage]:
        return [m for m in self.inbox if m.msg_type in types]

    def events_of(self, kind: type) -> list[Any]:
        self.events.extend(self.plane.events())
        return [e for e in self.events if isinstance(e, kind)]


def only(msgs: Iterable[ControlMessage], msg_type: int) -> ControlMessage:
    found = [m for m in msgs if m.msg_type == msg_type]
    assert len(found) == 1, (M(msg_type).name, [m.name for m in msgs])
    return found[0]


def assigned_id_attr(version: int) -> int:
    return A.ASSIGNED_TUNNEL_ID if version == 2 else A.ASSIGNED_CONNECTION_ID


def session_attr(version: int) -> int:
    return A.ASSIGNED_SESSION_ID if version == 2 else A.LOCAL_SESSION_ID
