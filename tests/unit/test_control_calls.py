"""Calls (sessions) on the sans-I/O control plane: RFC 2661 §7.4/§7.5, RFC 3931 §5.4.4, §7.3/§7.4.

A hand-driven peer (:class:`tests.support.ctlpeer.FakePeer`) injects session messages at the
exact point of an exchange; what the plane sends back is decoded and its result/error codes are
asserted. Whole exchanges between two real planes run over the simulated link.
"""

from __future__ import annotations

import random

import pytest
from tests.support.ctlpeer import FakePeer, full_message, session_attr, without
from tests.support.simlink import Link, Node, SimNet

from pyl2tp.control import events as ev
from pyl2tp.control.call import Call, CallState
from pyl2tp.control.params import CallParams, ConnectionParams
from pyl2tp.control.plane import ControlPlane
from pyl2tp.control.tunnel import ControlConnection
from pyl2tp.wire.avp import Accm, Avp, CallErrors, ResultCode
from pyl2tp.wire.constants import AvpType, CDNResult, DataSequencing, L2SpecType, MessageType
from pyl2tp.wire.message import REQUIRED_V2, REQUIRED_V3, ControlMessage, decode_message

A = AvpType
M = MessageType

PEER_SID = 0x51


def make_plane(version: int, seed: int = 7, **kw: object) -> tuple[ControlPlane, FakePeer]:
    params = ConnectionParams(version=version, **kw)  # type: ignore[arg-type]
    plane = ControlPlane(accept=lambda _l, _p, _m: params, rng=random.Random(seed).randbytes)
    return plane, FakePeer(plane, version)


def established_tunnel(version: int, **kw: object
                       ) -> tuple[ControlPlane, FakePeer, ControlConnection]:
    plane, peer = make_plane(version, **kw)
    conn = peer.dial()
    peer.inbox.clear()
    return plane, peer, conn


def peer_places_call(peer: FakePeer, conn: ControlConnection, msg_type: int = M.ICRQ
                     ) -> tuple[Call, ControlMessage]:
    """The peer sends a full ICRQ/OCRQ; returns the plane's call and its reply."""
    replies = peer.send(full_message(peer.version, msg_type, sid=PEER_SID))
    reply_type = M.ICRP if msg_type == M.ICRQ else M.OCRP
    reply = [m for m in replies if m.msg_type == reply_type]
    assert len(reply) == 1, [m.name for m in replies]
    (call,) = conn.calls.values()
    return call, reply[0]


def plane_places_call(peer: FakePeer, conn: ControlConnection, direction: str
                      ) -> tuple[Call, ControlMessage]:
    call = conn.place_call(CallParams(), direction=direction, now=peer.now)
    peer.plane.touch(conn)
    replies = peer.recv()
    request = [m for m in replies if m.msg_type in (M.ICRQ, M.OCRQ)]
    assert len(request) == 1
    return call, request[0]


def established_call(peer: FakePeer, conn: ControlConnection) -> Call:
    call, _icrp = peer_places_call(peer, conn)
    peer.send(full_message(peer.version, M.ICCN, sid=PEER_SID, peer_sid=call.local_id))
    assert call.established
    peer.inbox.clear()
    return call


def cdns(peer: FakePeer) -> list[ControlMessage]:
    return peer.of_type(M.CDN)


def result_of(msg: ControlMessage) -> tuple[int, int | None]:
    rc = msg.get(A.RESULT_CODE)
    assert isinstance(rc, ResultCode), msg
    return rc.result, rc.error


# ---- every session message with each required AVP missing ----------------------------------

SESSION_CASES = [
    pytest.param(version, msg_type, attr,
                 id=f"v{version}-{M(msg_type).name}-{A(attr).name}")
    for version, table in ((2, REQUIRED_V2), (3, REQUIRED_V3))
    for msg_type, attrs in table.items()
    if msg_type in (M.ICRQ, M.ICRP, M.ICCN, M.OCRQ, M.OCRP, M.OCCN, M.CDN, M.WEN, M.SLI)
    for attr in attrs
]


def test_session_case_table_covers_every_session_message() -> None:
    covered = {(p.values[0], p.values[1]) for p in SESSION_CASES}
    for version, table in ((2, REQUIRED_V2), (3, REQUIRED_V3)):
        for msg_type in (M.ICRQ, M.ICRP, M.ICCN, M.OCRQ, M.OCRP, M.OCCN, M.CDN, M.WEN, M.SLI):
            assert (version, msg_type) in covered
            assert table[msg_type]


@pytest.mark.parametrize(("version", "msg_type", "attr"), SESSION_CASES)
def test_session_message_missing_required_avp(version: int, msg_type: int, attr: int) -> None:
    """RFC 2661 §7.1 / RFC 3931 §7.1: a session message without a required AVP clears that
    session with CDN result 2 (General Error), error 6; the control connection stays up. A CDN
    that lacks one still clears the call (answering it with another CDN would be pointless).
    A v3 message that lacks the Remote Session ID names no session of ours: it cannot be
    attributed, so the call it was meant for is cleared by the setup timeout instead (CDN 16).
    """
    plane, peer, conn = established_tunnel(version, setup_timeout=10.0)
    v3 = version == 3
    call = None
    if msg_type in (M.ICRQ, M.OCRQ):
        msg = full_message(version, msg_type, sid=PEER_SID)
    elif msg_type in (M.ICRP, M.OCRP):
        call, request = plane_places_call(peer, conn, "incoming" if msg_type == M.ICRP
                                          else "outgoing")
        assert request.get(session_attr(version)) == call.local_id
        msg = full_message(version, msg_type, sid=PEER_SID, peer_sid=call.local_id)
    elif msg_type == M.ICCN:
        call, _icrp = peer_places_call(peer, conn)
        msg = full_message(version, M.ICCN, sid=PEER_SID, peer_sid=call.local_id)
    elif msg_type == M.OCCN:
        call, _ocrq = plane_places_call(peer, conn, "outgoing")
        peer.send(full_message(version, M.OCRP, sid=PEER_SID, peer_sid=call.local_id))
        assert call.state is CallState.WAIT_CONNECT
        msg = full_message(version, M.OCCN, sid=PEER_SID, peer_sid=call.local_id)
    else:  # CDN, WEN, SLI on an established call
        call = established_call(peer, conn)
        msg = full_message(version, msg_type, sid=PEER_SID, peer_sid=call.local_id)
    peer.inbox.clear()
    peer.events.clear()
    peer.send(without(msg, attr))

    assert conn.established, "a session error must not clear the control connection"
    assert plane.conns[conn.local_id] is conn
    assert not peer.of_type(M.StopCCN)
    if msg_type in (M.ICRQ, M.OCRQ):
        (cdn,) = cdns(peer)
        assert result_of(cdn) == (CDNResult.GENERAL_ERROR, 6)
        assert not conn.calls, "the refused request must not leave a call behind"
        assert not peer.events_of(ev.CallUp)
        # The CDN names the peer's session so that it can find it.
        if msg.has(session_attr(version)):
            if v3:
                assert cdn.get(A.REMOTE_SESSION_ID) == PEER_SID
            else:
                assert cdn.session_id == PEER_SID
        return
    assert call is not None
    if msg_type == M.CDN:
        assert call.dead
        assert not cdns(peer), "a CDN is not answered with a CDN"
        (down,) = peer.events_of(ev.CallDown)
        assert down.call is call and down.by_peer
        return
    if v3 and attr == A.REMOTE_SESSION_ID and msg_type in (M.ICRP, M.OCRP, M.ICCN, M.OCCN):
        assert not call.dead and not cdns(peer)
        peer.zlb()
        peer.advance(10.5)
        assert call.dead
        (cdn,) = cdns(peer)
        assert result_of(cdn)[0] == CDNResult.FSM_ERROR
        assert conn.established
        return
    (cdn,) = cdns(peer)
    assert result_of(cdn) == (CDNResult.GENERAL_ERROR, 6)
    assert call.dead and call.local_id not in conn.calls
    (down,) = peer.events_of(ev.CallDown)
    assert down.call is call and down.result == CDNResult.GENERAL_ERROR and down.error == 6
    # The CDN lets the peer find its session (v3: by our Local Session ID if need be).
    if v3:
        assert cdn.get(A.LOCAL_SESSION_ID) == call.local_id
    else:
        assert cdn.get(A.ASSIGNED_SESSION_ID) == call.local_id


# ---- tolerance ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_unknown_optional_and_vendor_avps_in_call_request_are_ignored(version: int) -> None:
    _plane, peer, conn = established_tunnel(version)
    icrq = full_message(version, M.ICRQ, sid=PEER_SID)
    icrq.avps += [
        Avp(250, b"\x00\x01", mandatory=False),  # unassigned IETF type, M=0
        Avp(1, b"circuit-7", vendor_id=3561, mandatory=False),  # Broadband Forum Agent-Circuit-Id
        Avp(8, b"\x00\x03", vendor_id=9, mandatory=False),  # Cisco, M=0
        Avp(1, b"x", vendor_id=70000, mandatory=False, extended=True),  # Extended Vendor ID
    ]
    replies = peer.send(icrq)
    assert [m.name for m in replies] == ["ICRP"]
    (call,) = conn.calls.values()
    peer.send(full_message(version, M.ICCN, sid=PEER_SID, peer_sid=call.local_id))
    assert call.established and conn.established


@pytest.mark.parametrize("version", [2, 3])
def test_recognised_avps_with_m_bit_clear_are_accepted_in_calls(version: int) -> None:
    _plane, peer, conn = established_tunnel(version)
    icrq = full_message(version, M.ICRQ, sid=PEER_SID)
    icrq.avps = [Avp(a.attr_type, a.value, a.vendor_id, False) for a in icrq.avps]
    replies = peer.send(icrq)
    assert [m.name for m in replies] == ["ICRP"]
    (call,) = conn.calls.values()
    assert call.peer_id == PEER_SID


@pytest.mark.parametrize("version", [2, 3])
def test_cdn_result_code_without_error_code_is_accepted(version: int) -> None:
    _plane, peer, conn = established_tunnel(version)
    call = established_call(peer, conn)
    peer.send(full_message(version, M.ICRQ, sid=PEER_SID + 1))  # a call that must survive
    other = next(c for c in conn.calls.values() if c is not call)
    cdn = ControlMessage(M.CDN)
    cdn.add(A.RESULT_CODE, ResultCode(1))  # 2-octet Result Code, no Error Code
    if version == 2:
        cdn.add(A.ASSIGNED_SESSION_ID, PEER_SID)
        cdn.session_id = call.local_id
    else:
        cdn.add(A.LOCAL_SESSION_ID, PEER_SID)
        cdn.add(A.REMOTE_SESSION_ID, call.local_id)
    assert len(cdn.avps[0].value) == 2
    peer.events.clear()
    replies = peer.send(cdn)
    assert call.dead and not other.dead and conn.established
    assert not [m for m in replies if m.msg_type in (M.CDN, M.StopCCN)]
    (down,) = peer.events_of(ev.CallDown)
    assert (down.call, down.result, down.error, down.by_peer) == (call, 1, None, True)


def test_v3_unsupported_pw_type_gets_cdn_14() -> None:
    _plane, peer, conn = established_tunnel(3)
    icrq = full_message(3, M.ICRQ, sid=PEER_SID)
    icrq.avps = [a for a in icrq.avps if a.attr_type != A.PW_TYPE]
    icrq.add(A.PW_TYPE, 0x0006)  # HDLC: not in our capabilities (ETH, PPP)
    peer.send(icrq)
    (cdn,) = cdns(peer)
    assert result_of(cdn)[0] == CDNResult.UNSUPPORTED_PW_TYPE == 14
    assert cdn.get(A.REMOTE_SESSION_ID) == PEER_SID
    assert not conn.calls and conn.established
    assert not peer.events_of(ev.CallUp)


def test_v3_sequencing_without_sublayer_gets_cdn_15() -> None:
    _plane, peer, conn = established_tunnel(3)
    icrq = full_message(3, M.ICRQ, sid=PEER_SID)
    icrq.avps = [a for a in icrq.avps
                 if a.attr_type not in (A.L2_SPECIFIC_SUBLAYER, A.DATA_SEQUENCING)]
    icrq.add(A.L2_SPECIFIC_SUBLAYER, L2SpecType.NONE)
    icrq.add(A.DATA_SEQUENCING, DataSequencing.ALL)
    peer.send(icrq)
    (cdn,) = cdns(peer)
    assert result_of(cdn)[0] == CDNResult.SEQUENCING_WITHOUT_SUBLAYER == 15
    assert not conn.calls and conn.established


def test_v3_reply_asking_sequencing_without_sublayer_gets_cdn_15() -> None:
    """The same rule for the ICRP: our call's sublayer is none and the peer wants sequencing."""
    plane, peer, conn = established_tunnel(3)
    call = conn.place_call(CallParams(l2spec_type=L2SpecType.NONE), now=peer.now)
    plane.touch(conn)
    peer.recv()
    icrp = full_message(3, M.ICRP, sid=PEER_SID, peer_sid=call.local_id)
    icrp.add(A.DATA_SEQUENCING, DataSequencing.ALL)
    peer.send(icrp)
    (cdn,) = cdns(peer)
    assert result_of(cdn)[0] == 15 and call.dead and conn.established


def test_wen_and_sli_are_recorded_on_established_calls() -> None:
    _plane, peer, conn = established_tunnel(2)
    call = established_call(peer, conn)
    peer.send(full_message(2, M.WEN, peer_sid=call.local_id))
    sli = ControlMessage(M.SLI, session_id=call.local_id).add(A.ACCM, Accm(0x0A, 0x0B))
    peer.send(sli)
    infos = peer.events_of(ev.CallInfo)
    assert [(i.call, i.msg_type) for i in infos] == [(call, M.WEN), (call, M.SLI)]
    assert call.peer_info["call_errors"] == CallErrors(1, 2, 3, 4, 5, 6)
    assert call.peer_info["accm"] == Accm(0x0A, 0x0B)
    assert call.established and not cdns(peer)

    _plane3, peer3, conn3 = established_tunnel(3)
    call3 = established_call(peer3, conn3)
    peer3.send(full_message(3, M.WEN, sid=PEER_SID, peer_sid=call3.local_id))
    sli3 = full_message(3, M.SLI, sid=PEER_SID, peer_sid=call3.local_id)
    peer3.send(sli3)
    # v3 reverse lookup: a SLI sent before the peer knew our id (Remote Session ID 0).
    sli_early = full_message(3, M.SLI, sid=PEER_SID, peer_sid=0)
    sli_early.avps = [a for a in sli_early.avps if a.attr_type != A.CIRCUIT_STATUS]
    sli_early.add(A.CIRCUIT_STATUS, 0)
    peer3.send(sli_early)
    infos3 = peer3.events_of(ev.CallInfo)
    assert [(i.call, i.msg_type) for i in infos3] == [(call3, M.WEN), (call3, M.SLI),
                                                     (call3, M.SLI)]
    assert call3.peer_info["call_errors"] == CallErrors(0, 0, 3, 4, 5, 6)
    assert call3.peer_info["circuit_status"] == 0
    assert call3.established


# ---- whole exchanges between two planes over the simulated link ---------------------------


def two_planes(version: int, *, seed: int = 3, link: Link | None = None, **kw: object
               ) -> tuple[SimNet, Node, Node, ControlConnection, ControlConnection]:
    params = ConnectionParams(version=version, **kw)  # type: ignore[arg-type]
    net = SimNet(seed=seed, link=link or Link(loss=0.1, duplicate=0.05, delay=(0.01, 0.03),
                                              reorder_spread=0.02))
    a = net.add("a", "10.0.0.1", accept=lambda _l, _p, _m: params)
    b = net.add("b", "10.0.0.2", accept=lambda _l, _p, _m: params)
    conn = a.plane.dial(params, "sock", ("10.0.0.2", 1701), 0.0)
    net.run(60, stop=lambda: conn.established and len(b.plane.conns) == 1
            and next(iter(b.plane.conns.values())).established)
    assert conn.established
    (peer_conn,) = b.plane.conns.values()
    return net, a, b, conn, peer_conn


def partner(call: Call, peer_conn: ControlConnection) -> Call:
    """The peer's side of ``call``."""
    return peer_conn.calls[call.peer_id]


@pytest.mark.parametrize("version", [2, 3])
def test_outgoing_calls_establish(version: int) -> None:
    net, a, b, conn, peer_conn = two_planes(version)
    calls = [conn.place_call(CallParams(), direction="outgoing", now=net.now) for _ in range(5)]
    a.plane.touch(conn)
    net.run(net.now + 60, stop=lambda: all(c.established for c in calls)
            and sum(isinstance(e, ev.CallUp) for e in b.events) == 5)
    for call in calls:
        assert call.established and call.direction == "outgoing" and call.initiator
        theirs = partner(call, peer_conn)
        assert theirs.established
        assert theirs.direction == "outgoing" and not theirs.initiator
        assert theirs.peer_id == call.local_id
        if version == 2:
            assert theirs.is_lac and not call.is_lac  # the OCRQ recipient is the LAC
        else:
            assert call.cookie == theirs.peer_cookie and theirs.cookie == call.peer_cookie
            assert len(call.cookie) == 8
    types = {decode_message(d, validate=False).msg_type for _t, d in a.sent}
    assert {M.OCRQ} <= types and M.ICRQ not in types
    types_b = {decode_message(d, validate=False).msg_type for _t, d in b.sent}
    assert {M.OCRP, M.OCCN} <= types_b


@pytest.mark.parametrize("version", [2, 3])
def test_cdn_from_either_side_tears_down_just_that_call(version: int) -> None:
    net, a, b, conn, peer_conn = two_planes(version)
    calls = [conn.place_call(CallParams(), now=net.now) for _ in range(3)]
    a.plane.touch(conn)
    net.run(net.now + 60, stop=lambda: len(peer_conn.calls) == 3
            and all(c.established for c in peer_conn.calls.values())
            and all(c.established for c in calls))
    mine, theirs_first, survivor = calls
    their_call = partner(theirs_first, peer_conn)
    assert their_call is not None

    conn.disconnect_call(mine, net.now, text="operator")
    a.plane.touch(conn)
    their_mine = partner(mine, peer_conn)
    net.run(net.now + 30, stop=lambda: their_mine.dead)
    peer_conn.disconnect_call(their_call, net.now)
    b.plane.touch(peer_conn)
    net.run(net.now + 30, stop=lambda: theirs_first.dead)

    assert mine.dead and their_mine.dead and theirs_first.dead and their_call.dead
    assert survivor.established and partner(survivor, peer_conn).established
    assert conn.established and peer_conn.established
    for node, call, by_peer in ((a, mine, False), (b, their_mine, True),
                                (b, their_call, False), (a, theirs_first, True)):
        (down,) = [e for e in node.events if isinstance(e, ev.CallDown) and e.call is call]
        assert down.by_peer is by_peer and down.was_up
        assert down.result == CDNResult.ADMINISTRATIVE
    assert not [e for e in a.events + b.events if isinstance(e, ev.TunnelDown)]


def force_tie_breaker(conn: ControlConnection, value: bytes) -> None:
    """Make the connection draw ``value`` as every Session Tie Breaker (the only 8-octet draw
    when the cookies are 4 octets)."""
    draw = conn.rng
    conn.rng = lambda n: value if n == 8 else draw(n)


@pytest.mark.parametrize("winner", ["a", "b"])
def test_v3_session_tie_is_broken_by_the_lower_tie_breaker(winner: str) -> None:
    """RFC 3931 §5.4.4: both ends send an ICRQ with the same Remote End ID; the lower Session
    Tie Breaker wins and the winner answers the losing ICRQ with CDN 13."""
    net, a, b, conn, peer_conn = two_planes(3, link=Link(delay=(0.01, 0.01)))
    params = CallParams(remote_end_id=b"pw-77", cookie_len=4)
    low, high = b"\x00" * 7 + b"\x01", b"\x7f" + b"\x00" * 7
    force_tie_breaker(conn, low if winner == "a" else high)
    force_tie_breaker(peer_conn, high if winner == "a" else low)
    call_a = conn.place_call(params, now=net.now)
    call_b = peer_conn.place_call(params, now=net.now)
    assert (call_a.tie_breaker, call_b.tie_breaker) == ((low, high) if winner == "a"
                                                       else (high, low))
    a.plane.touch(conn)
    b.plane.touch(peer_conn)
    win_call, lose_call = (call_a, call_b) if winner == "a" else (call_b, call_a)
    win_node, lose_node = (a, b) if winner == "a" else (b, a)
    lose_conn = peer_conn if winner == "a" else conn
    net.run(net.now + 30, stop=lambda: win_call.established and any(
        c.established for c in lose_conn.calls.values()))

    assert win_call.established and lose_call.dead
    (served,) = lose_conn.calls.values()
    assert served.established and not served.initiator and served.peer_id == win_call.local_id
    assert served.remote_end_id == b"pw-77"
    (lost,) = [e for e in lose_node.events if isinstance(e, ev.CallDown)]
    assert lost.call is lose_call and lost.result == CDNResult.LOST_TIE_BREAKER == 13
    # The winner refused the losing ICRQ with CDN 13 on the wire.
    win_cdns = [decode_message(d, validate=False) for _t, d in win_node.sent]
    win_cdns = [m for m in win_cdns if m.msg_type == M.CDN]
    assert [m.get(A.RESULT_CODE).result for m in win_cdns] == [13]
    assert win_cdns[0].get(A.REMOTE_SESSION_ID) == lose_call.local_id
    assert not [e for e in win_node.events if isinstance(e, ev.CallDown)]
    assert conn.established and peer_conn.established


def test_v3_session_tie_without_tie_breakers_clears_both() -> None:
    """RFC 3931 §5.4.4: if neither side sent a Session Tie Breaker both sessions are torn down."""
    net, a, b, conn, peer_conn = two_planes(3, link=Link(delay=(0.01, 0.01)), tie_breaker=False)
    params = CallParams(remote_end_id=b"pw-9")
    call_a = conn.place_call(params, now=net.now)
    call_b = peer_conn.place_call(params, now=net.now)
    assert call_a.tie_breaker is None and call_b.tie_breaker is None
    a.plane.touch(conn)
    b.plane.touch(peer_conn)
    net.run(net.now + 10)
    assert call_a.dead and call_b.dead
    assert not conn.calls and not peer_conn.calls
    for node in (a, b):
        results = [decode_message(d, validate=False) for _t, d in node.sent]
        assert {m.get(A.RESULT_CODE).result for m in results if m.msg_type == M.CDN} == {13}
    assert conn.established and peer_conn.established


@pytest.mark.parametrize("version", [2, 3])
def test_negotiated_call_values_match(version: int) -> None:
    """Cookies are swapped, the sublayer agreed, and sequencing per direction mirrors."""
    net, a, _b, conn, peer_conn = two_planes(version)
    if version == 3:
        params = CallParams(data_sequencing=DataSequencing.ALL, cookie_len=4)
    else:
        params = CallParams(sequencing=True)
    call = conn.place_call(params, now=net.now)
    a.plane.touch(conn)
    net.run(net.now + 30, stop=lambda: call.established
            and getattr(peer_conn.calls.get(call.peer_id), "established", False))
    theirs = partner(call, peer_conn)
    assert theirs.peer_id == call.local_id
    assert call.cookie == theirs.peer_cookie and theirs.cookie == call.peer_cookie
    assert call.l2spec_type == theirs.l2spec_type
    assert call.send_seq == theirs.recv_seq and call.recv_seq == theirs.send_seq
    if version == 3:
        assert len(call.peer_cookie) == 4 and len(call.cookie) == 8
        assert call.recv_seq and not call.send_seq
        assert call.l2spec_type == L2SpecType.DEFAULT
    else:
        assert call.cookie == b"" and call.send_seq and call.recv_seq
