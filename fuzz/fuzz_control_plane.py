"""Harness: the control plane as a whole (``ControlPlane.receive`` and everything under it:
demultiplexing, the reliable transport, tunnel and call state machines, authentication and
hiding), two planes talking on a virtual clock with the fuzzer in the middle.

Plane A dials plane B; both are real, so the datagrams between them are valid (challenge
responses, digests, hidden AVPs included) and the fuzzer's job is to perturb that exchange:
deliver, corrupt, truncate, drop, duplicate or reorder the next datagram in flight, let time
pass, inject raw or forged messages, and act locally (place, clear calls; close, dial
tunnels). Forged messages are built from per-type templates holding every required AVP,
addressed and sequenced for a live connection, hidden and signed with its keys, then edited:
that reaches states random bytes never would (an ICRQ with a missing AVP, a CDN for a call in
wait-connect, a StopCCN with a bad Result Code ...).

Input: four configuration octets (see :func:`_params`), then operations until the input
ends, each an octet and its operands (see :meth:`_Net.step`).

Contract: nothing raises out of ``ControlPlane.receive``, ``handle_timer``, ``datagrams`` or
``events``; local actions raise only ``ValueError`` (documented refusals); every datagram
received lands in exactly one ``rx_*`` counter of its plane; nothing logs a warning.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from typing import Any

from fuzz.common import KnownIssue, Reader, entry, instrumented, main, tolerating

with instrumented(__name__):
    from pyl2tp.control.params import CallParams, ConnectionParams
    from pyl2tp.control.plane import ControlPlane
    from pyl2tp.control.tunnel import ControlConnection
    from pyl2tp.wire import auth
    from pyl2tp.wire.avp import (
        AVP_SPECS,
        Accm,
        Avp,
        CallErrors,
        ProtocolVersion,
        ResultCode,
    )
    from pyl2tp.wire.constants import AvpType, MessageType
    from pyl2tp.wire.message import ControlMessage, encode_message

A = AvpType
M = MessageType

A_ADDR, B_ADDR = "10.0.0.1", "10.0.0.2"
SECRET = b"fuzz-secret"
MAX_OPS = 120
MAX_FLIGHT = 32
CATALOG = sorted(AVP_SPECS)
KNOWN: tuple[KnownIssue, ...] = ()
"""Crash signatures tolerated until fixed (see fuzz/README.md, "Known issues"). Empty: the
three this harness found (calls moved after a lost tunnel tie onto a connection that refuses
them; a reordered invalid message dispatched as valid; a duplicate of it displacing its error)
are fixed in control/plane.py and control/tunnel.py, with regression tests in
tests/unit/test_fuzz_regressions.py."""

_NETS: list[_Net] = []
"""The exchange under way, for the known issues' state checks."""


FORGE_TYPES = (M.SCCRQ, M.SCCRP, M.SCCCN, M.StopCCN, M.HELLO, M.OCRQ, M.OCRP, M.OCCN, M.ICRQ,
               M.ICRP, M.ICCN, M.CDN, M.WEN, M.SLI, M.ACK, M.ZLB, M.CSUN, 99)


def _params(r: Reader) -> tuple[ConnectionParams, ConnectionParams, bool, int]:
    """Both ends' parameters from three octets (a fourth, read by :class:`_Net`, says
    whether B dials A too, for a tunnel tie).

    Octet 1: bit 0 v3, bit 1 shared secret, bit 2 hide AVPs, bit 3 no v2 challenge, bit 4 IP
    encapsulation (v3), bit 5 authentication not required, bit 6 HMAC-SHA1, bit 7 B holds a
    different secret. Octet 2: bits 0-2 receive window - 1 (and, modulo 3, the v3 cookie
    length), bit 4 the default L2-Specific Sublayer, bits 4-5 B's pseudowire types (both set:
    data sequencing too), bit 6 v2 sequencing required, bit 7 no tie breakers. Octet 3: the
    seed of both planes' random numbers.
    """
    c1, c2 = r.u8(), r.u8()
    version = 3 if c1 & 1 else 2
    secret = SECRET if c1 & 2 else None
    call = CallParams(pw_type=5 if version == 3 else 7,
                      cookie_len=(0, 4, 8)[c2 % 3] if version == 3 else 0,
                      l2spec_type=1 if version == 3 and c2 & 16 else 0,
                      data_sequencing=2 if version == 3 and c2 & 48 == 48 else 0,
                      sequencing=bool(c2 & 64))
    common: dict[str, Any] = dict(
        version=version, secret=secret, hide_avps=bool(c1 & 4), challenge=not c1 & 8,
        require_auth=not c1 & 32, digest_type=(c1 >> 6) & 1, receive_window=(c2 & 7) + 1,
        hello_interval=20.0, retransmit_initial=0.5, max_retries=3, setup_timeout=15.0,
        ack_delay=0.05, tie_breaker=not c2 & 128, max_sessions=3, call=call)
    a = ConnectionParams(**common)
    b_common = dict(common)
    if c1 & 128 and secret is not None:
        b_common["secret"] = b"another-secret"
    if version == 3:
        b_common["pw_types"] = ((5, 7), (5,), (7,), (4, 5))[(c2 >> 4) & 3]
    b = ConnectionParams(**b_common)
    return a, b, version == 3 and bool(c1 & 16), r.u8()


class _Net:
    def __init__(self, r: Reader) -> None:
        self.r = r
        self.pa, self.pb, self.ip, seed = _params(r)
        self.version = self.pa.version
        self.now = 0.0
        port = 0 if self.ip else 1701
        self.addr = {A_ADDR: (A_ADDR, port), B_ADDR: (B_ADDR, port)}
        rnd = random.Random(seed)
        self.a = ControlPlane(accept=lambda _l, _p, _m: self.pa, rng=rnd.randbytes,
                              max_tunnels=4)
        self.b = ControlPlane(accept=self._b_accepts, rng=rnd.randbytes, max_tunnels=4)
        self.refuse_next = False
        self.planes = {A_ADDR: self.a, B_ADDR: self.b}
        self.received = {A_ADDR: 0, B_ADDR: 0}
        self.flight: deque[tuple[str, tuple[str, int], bytes]] = deque()
        self.events = 0
        self.a.dial(self.pa, "sock", self.addr[B_ADDR], self.now, ip_encap=self.ip)
        if r.flag():
            self.b.dial(self.pb, "sock", self.addr[A_ADDR], self.now, ip_encap=self.ip)
        self.collect()

    def _b_accepts(self, _local: Any, _peer: Any, _msg: ControlMessage) -> Any:
        if self.refuse_next:
            self.refuse_next = False
            return (2, 0, "refused by the harness")
        return self.pb

    # ---- plumbing ---------------------------------------------------------------------------

    def collect(self) -> None:
        for src, plane in self.planes.items():
            for _local, peer, data in plane.datagrams():
                if peer[0] in self.planes:
                    self.flight.append((peer[0], self.addr[src], data))
            self.events += len(plane.events())
        while len(self.flight) > MAX_FLIGHT:
            self.flight.popleft()

    def deliver(self, dst: str, src: tuple[str, int], data: bytes) -> None:
        self.received[dst] += 1
        with tolerating(KNOWN):
            self.planes[dst].receive("sock", data, 4 if self.ip else 0, src, self.now,
                                     ip_encap=self.ip)
        self.collect()

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        for _ in range(64):
            due = [(d, p) for p in self.planes.values()
                   if (d := p.next_deadline()) is not None and d <= until]
            if not due:
                break
            when, plane = min(due, key=lambda x: x[0])
            self.now = max(self.now, when)
            with tolerating(KNOWN):
                plane.handle_timer(self.now)
            self.collect()
        self.now = until
        for plane in self.planes.values():
            with tolerating(KNOWN):
                plane.handle_timer(self.now)
        self.collect()

    def conn(self, plane: ControlPlane) -> ControlConnection | None:
        conns = list(plane.conns.values())
        return conns[self.r.u8() % len(conns)] if conns else None

    def check(self) -> None:
        for addr, plane in self.planes.items():
            counted = sum(n for k, n in plane.stats.items() if k.startswith("rx_"))
            assert counted == self.received[addr], (plane.stats, self.received[addr])

    # ---- the fuzzer's operations ----------------------------------------------------------

    def step(self) -> None:
        """One operation: 0 deliver, 1 corrupt one octet, 2 truncate, 3 drop, 4 duplicate,
        5 move to the back of the queue, 6 let time pass, 7 inject raw bytes, 8 inject a
        forged message, 9 a local action."""
        r = self.r
        op = r.u8() % 10
        if op <= 5:
            if not self.flight:
                return
            dst, src, data = self.flight.popleft()
            if op == 1 and data:
                pos = r.u16() % len(data)
                data = data[:pos] + bytes((data[pos] ^ (r.u8() or 1),)) + data[pos + 1:]
            elif op == 2:
                data = data[: r.u16() % (len(data) + 1)]
            elif op == 3:
                return
            elif op == 4:
                self.flight.appendleft((dst, src, data))
            elif op == 5:
                self.flight.append((dst, src, data))
                return
            self.deliver(dst, src, data)
        elif op == 6:
            step = r.u8()
            self.advance((step & 0x7F) * (1.0 if step & 0x80 else 0.05))
        elif op == 7:
            self.inject_raw()
        elif op == 8:
            self.forge()
        else:
            self.local_action()

    def _target(self) -> tuple[str, ControlPlane]:
        dst = B_ADDR if self.r.flag() else A_ADDR
        return dst, self.planes[dst]

    def inject_raw(self) -> None:
        """Raw bytes, optionally with a live connection's tunnel id and sequence numbers
        written into the header so that they get past demultiplexing and the transport."""
        dst, plane = self._target()
        how = self.r.u8()
        data = bytearray(self.r.chunk())
        conn = self.conn(plane)
        src = self.addr[A_ADDR if dst == B_ADDR else B_ADDR]
        off = 4 if self.ip else 0
        if how & 1 and conn is not None and len(data) >= off + 12:
            if conn.version == 2:  # a refused SCCRQ of the other version makes one
                data[off + 4 : off + 6] = (conn.local_id & 0xFFFF).to_bytes(2, "big")
            else:
                data[off + 4 : off + 8] = conn.local_id.to_bytes(4, "big")
            data[off + 8 : off + 10] = conn.transport.nr.to_bytes(2, "big")
            data[off + 10 : off + 12] = conn.transport.oldest_unacked.to_bytes(2, "big")
            if isinstance(conn.peer, tuple):
                src = conn.peer
        if how & 2:
            src = (src[0], 1702)  # another port of the same host
        self.deliver(dst, src, bytes(data))

    def forge(self) -> None:
        r = self.r
        dst, plane = self._target()
        conn = self.conn(plane)
        msg_type = r.pick(FORGE_TYPES)
        to_zero = conn is None or r.u8() & 3 == 0
        # A connection can be of the other version: one that refused such an SCCRQ.
        version = conn.version if conn is not None else self.version
        msg = self._template(msg_type, conn, version)
        for _ in range(r.u8() % 4):
            self._edit(msg)
        src = self.addr[A_ADDR if dst == B_ADDR else B_ADDR]
        if conn is not None and not to_zero:
            msg.tunnel_id = conn.local_id
            msg.ns = (conn.transport.nr + (r.u8() % 3 == 0) * r.u8()) & 0xFFFF
            msg.nr = conn.transport.oldest_unacked
            if isinstance(conn.peer, tuple):
                src = conn.peer
        else:
            msg.tunnel_id = 0
        if version == 2 and msg.msg_type in (M.OCRP, M.OCCN, M.ICRP, M.ICCN, M.CDN,
                                             M.WEN, M.SLI) and conn is not None:
            calls = list(conn.calls)
            msg.session_id = calls[r.u8() % len(calls)] if calls else r.u16()
        try:
            data = self._encode(msg, conn)
        except (ValueError, struct.error):
            return  # the forgery itself does not fit (the harness's problem, not pyl2tp's)
        if r.flag():
            src = (src[0], 1702)
        self.deliver(dst, src, data)

    def _encode(self, msg: ControlMessage, conn: ControlConnection | None) -> bytes:
        params = conn.params if conn is not None else self.pa
        key = params.hide_key
        kw: dict[str, Any] = {}
        if msg.version == 3 and params.secret is not None and msg.msg_type != M.ZLB:
            sender = receiver = None
            if msg.msg_type != M.SCCRQ and conn is not None:
                sender = conn.peer_nonce or next(
                    (a.value for a in msg.avps if a.attr_type == A.CTRL_MSG_AUTH_NONCE
                     and a.vendor_id == 0), None)
                receiver = conn.our_nonce
            kw = dict(digest_type=params.digest_type, auth_key=auth.auth_key_v3(params.secret),
                      sender_nonce=sender, receiver_nonce=receiver)
        return encode_message(msg, hide_key=key, ip_encap=self.ip,
                              rng=random.Random(msg.ns).randbytes, **kw)

    def _template(self, msg_type: int, conn: ControlConnection | None,
                  version: int) -> ControlMessage:
        """``msg_type`` with the AVPs RFC 2661 §6 / RFC 3931 §6 require, consistent with
        ``conn`` (its challenge answered, its calls' ids)."""
        r = self.r
        v2 = version == 2
        msg = ControlMessage(msg_type, version=version)
        if msg_type == M.ZLB:
            return msg
        hide = conn is not None and conn.params.secret is not None and r.flag()
        own_tid = r.u16() or 1
        calls = list(conn.calls.values()) if conn is not None else []
        call = calls[r.u8() % len(calls)] if calls else None
        our_sid = (call.local_id if call is not None else r.u16()) or 1
        peer_sid = (call.peer_id if call is not None and call.peer_id else r.u16()) or 1
        if msg_type in (M.SCCRQ, M.SCCRP):
            if v2:
                msg.add(A.PROTOCOL_VERSION, ProtocolVersion(1, 0))
                msg.add(A.FRAMING_CAPABILITIES, 3)
                msg.add(A.ASSIGNED_TUNNEL_ID, own_tid)
            else:
                msg.add(A.ROUTER_ID, 0x0A000009)
                msg.add(A.ASSIGNED_CONNECTION_ID, own_tid)
                msg.add(A.PW_CAPABILITIES_LIST, (5, 7))
                if conn is not None and conn.params.secret is not None:
                    msg.add(A.CTRL_MSG_AUTH_NONCE, bytes(range(16)))
            msg.add(A.HOST_NAME, "forger")
            msg.add(A.RECEIVE_WINDOW_SIZE, (r.u8() % 8) + 1)
            if msg_type == M.SCCRQ and r.flag():
                msg.add(A.TIE_BREAKER, r.take(8).ljust(8, b"\0"))
        if (v2 and msg_type in (M.SCCRP, M.SCCCN) and conn is not None
                and conn.our_challenge is not None and conn.params.secret is not None):
            msg.add(A.CHALLENGE_RESPONSE, auth.challenge_response(
                msg_type, conn.params.secret, conn.our_challenge), hidden=hide)
        if v2 and msg_type in (M.SCCRQ, M.SCCRP) and r.flag():
            msg.add(A.CHALLENGE, bytes(range(16)))
        if msg_type == M.StopCCN:
            msg.add(A.ASSIGNED_TUNNEL_ID if v2 else A.ASSIGNED_CONNECTION_ID, own_tid)
            msg.add(A.RESULT_CODE, ResultCode(r.u8() % 8, r.u8() % 10, "forged"))
        elif msg_type in (M.ICRQ, M.OCRQ):
            if v2:
                msg.add(A.ASSIGNED_SESSION_ID, peer_sid, hidden=hide)
                msg.add(A.CALL_SERIAL_NUMBER, 7)
                msg.add(A.BEARER_TYPE, 1)
                if msg_type == M.OCRQ:
                    msg.add(A.MINIMUM_BPS, 0)
                    msg.add(A.MAXIMUM_BPS, 10**8)
                    msg.add(A.FRAMING_TYPE, 1)
                    msg.add(A.CALLED_NUMBER, "5551234")
            else:
                msg.add(A.LOCAL_SESSION_ID, peer_sid)
                msg.add(A.REMOTE_SESSION_ID, 0)
                msg.add(A.CALL_SERIAL_NUMBER, 7)
                msg.add(A.PW_TYPE, r.pick((5, 7, 4, 0x11)))
                msg.add(A.REMOTE_END_ID, b"pw-1" if r.flag() else b"")
                msg.add(A.CIRCUIT_STATUS, 3)
                msg.add(A.ASSIGNED_COOKIE, bytes(range(r.pick((0, 4, 8)))))
                msg.add(A.L2_SPECIFIC_SUBLAYER, r.u8() % 3)
                msg.add(A.DATA_SEQUENCING, r.u8() % 3)
                if r.flag():
                    msg.add(A.TIE_BREAKER, r.take(8).ljust(8, b"\0"))
        elif msg_type in (M.ICRP, M.OCRP, M.ICCN, M.OCCN, M.CDN, M.WEN, M.SLI):
            if v2:
                if msg_type in (M.ICRP, M.OCRP, M.CDN):
                    msg.add(A.ASSIGNED_SESSION_ID, peer_sid, hidden=hide)
                if msg_type in (M.ICCN, M.OCCN):
                    msg.add(A.TX_CONNECT_SPEED, 10**8, hidden=hide)
                    msg.add(A.FRAMING_TYPE, 1)
                    if r.flag():
                        msg.add(A.SEQUENCING_REQUIRED)
            else:
                msg.add(A.LOCAL_SESSION_ID, peer_sid)
                msg.add(A.REMOTE_SESSION_ID, our_sid)
                if msg_type in (M.ICRP, M.OCRP, M.SLI):
                    msg.add(A.CIRCUIT_STATUS, 3)
                if msg_type in (M.ICRP, M.OCRP):
                    msg.add(A.ASSIGNED_COOKIE, bytes(range(r.pick((0, 4, 8)))))
                if msg_type in (M.ICRP, M.OCRP, M.ICCN, M.OCCN):
                    msg.add(A.L2_SPECIFIC_SUBLAYER, r.u8() % 3)
                    msg.add(A.DATA_SEQUENCING, r.u8() % 3)
            if msg_type == M.CDN:
                msg.add(A.RESULT_CODE, ResultCode(r.u8() % 12, 0, "forged"))
            elif msg_type == M.WEN:
                msg.add(A.CALL_ERRORS, CallErrors(1, 2, 3, 4, 5, 6))
            elif msg_type == M.SLI and v2:
                msg.add(A.ACCM, Accm(0, 0xFFFFFFFF))
        return msg

    def _edit(self, msg: ControlMessage) -> None:
        """Remove, replace, hide or add one AVP."""
        r = self.r
        kind = r.u8() % 4
        if msg.avps and kind < 3:
            index = r.u8() % len(msg.avps)
            old = msg.avps[index]
            if kind == 0:
                del msg.avps[index]
            elif kind == 1:
                msg.avps[index] = Avp(old.attr_type, r.small_chunk(), old.vendor_id,
                                      old.mandatory, old.hidden)
            else:
                msg.avps[index] = Avp(old.attr_type, old.value, old.vendor_id, old.mandatory,
                                      not old.hidden)
            return
        attr = r.u8()
        how = r.u8()
        vendor = 0 if how & 1 else r.u16()
        if vendor == 0 and attr < len(CATALOG) and how & 2:
            attr = CATALOG[attr]
        msg.avps.insert(r.u8() % (len(msg.avps) + 1),
                        Avp(attr, r.small_chunk(), vendor, bool(how & 4), bool(how & 8),
                            extended=bool(how & 16)))

    def local_action(self) -> None:
        """What the daemon does on its own: 0 place a call, 1 clear one, 2 close a tunnel,
        3 dial another, 4 refuse B's next SCCRQ."""
        r = self.r
        what = r.u8() % 5
        dst, plane = self._target()
        conn = self.conn(plane)
        with tolerating(KNOWN):
            self._act(what, dst, plane, conn)
        self.collect()

    def _act(self, what: int, dst: str, plane: ControlPlane,
             conn: ControlConnection | None) -> None:
        r = self.r
        try:
            if what == 0 and conn is not None:
                conn.place_call(direction="outgoing" if r.flag() else "incoming",
                                now=self.now)
                plane.touch(conn)
            elif what == 1 and conn is not None and conn.calls:
                calls = list(conn.calls.values())
                conn.disconnect_call(calls[r.u8() % len(calls)], self.now)
                plane.touch(conn)
            elif what == 2 and conn is not None:
                conn.close(self.now)
                plane.touch(conn)
            elif what == 3:
                other = A_ADDR if dst == B_ADDR else B_ADDR
                plane.dial(self.pa if plane is self.a else self.pb, "sock", self.addr[other],
                           self.now, ip_encap=self.ip)
            elif what == 4:
                self.refuse_next = True
        except ValueError:
            pass  # documented refusals: tunnel closing, session or tunnel limit reached


@entry
def test_one_input(data: bytes) -> None:
    r = Reader(data)
    net = _Net(r)
    _NETS[:] = [net]
    for _ in range(MAX_OPS):
        if not r.remaining:
            break
        net.step()
        net.check()
    # Let the exchange settle: whatever was started is finished or torn down by timers.
    for _ in range(8):
        for _ in range(64):
            if not net.flight:
                break
            net.deliver(*net.flight.popleft())
        net.advance(5.0)
    net.check()


if __name__ == "__main__":
    main(test_one_input)
