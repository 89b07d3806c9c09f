"""Control connections on the sans-I/O control plane: RFC 2661 §5.1, §7.2 and RFC 3931 §4.3,
§5.4.1, §7.2: required AVPs, authentication failures, setup and HELLO timers, tolerance.

Single messages are injected by a hand-driven peer (:class:`tests.support.ctlpeer.FakePeer`);
exchanges between two real planes run over the simulated link on a virtual clock. Whatever a
plane answers is decoded from its datagrams and the StopCCN result/error codes are asserted.
"""

from __future__ import annotations

import itertools
import random

import pytest
from tests.support.ctlpeer import (
    LOCAL,
    PEER_ADDR,
    FakePeer,
    assigned_id_attr,
    full_message,
    only,
    without,
)
from tests.support.simlink import Link, Node, SimNet

from pyl2tp.control import events as ev
from pyl2tp.control.params import ConnectionParams
from pyl2tp.control.plane import ControlPlane
from pyl2tp.control.tunnel import State
from pyl2tp.wire import auth
from pyl2tp.wire.avp import Avp, ResultCode
from pyl2tp.wire.constants import AvpType, MessageType, StopCCNResult
from pyl2tp.wire.message import (
    REQUIRED_V2,
    REQUIRED_V3,
    ControlMessage,
    decode_message,
    encode_message,
)

A = AvpType
M = MessageType


def make_plane(version: int, seed: int = 5, **kw: object) -> tuple[ControlPlane, FakePeer]:
    params = ConnectionParams(version=version, **kw)  # type: ignore[arg-type]
    plane = ControlPlane(accept=lambda _l, _p, _m: params, rng=random.Random(seed).randbytes)
    return plane, FakePeer(plane, version)


def result_of(msg: ControlMessage) -> tuple[int, int | None]:
    rc = msg.get(A.RESULT_CODE)
    assert isinstance(rc, ResultCode), msg
    return rc.result, rc.error


def wire(node: Node, msg_type: int | None = None) -> list[ControlMessage]:
    """What a simulated node sent, decoded (hidden AVPs stay unreadable: tests do not hide)."""
    out = [decode_message(d, validate=False) for _t, d in node.sent]
    return [m for m in out if msg_type is None or m.msg_type == msg_type]


def of(node: Node, kind: type) -> list:
    return [e for e in node.events if isinstance(e, kind)]


# ---- control connection messages with each required AVP missing ---------------------------

TUNNEL_CASES = [
    pytest.param(version, msg_type, attr, id=f"v{version}-{M(msg_type).name}-{A(attr).name}")
    for version, table in ((2, REQUIRED_V2), (3, REQUIRED_V3))
    for msg_type, attrs in table.items()
    if msg_type in (M.SCCRQ, M.SCCRP, M.SCCCN, M.StopCCN, M.HELLO, M.ACK)
    for attr in attrs
]


def test_tunnel_case_table_covers_every_message_with_required_avps() -> None:
    covered = {(p.values[0], p.values[1]) for p in TUNNEL_CASES}
    assert covered == {(2, M.SCCRQ), (2, M.SCCRP), (2, M.StopCCN),
                       (3, M.SCCRQ), (3, M.SCCRP), (3, M.StopCCN)}
    # The others require nothing but the Message Type.
    for table in (REQUIRED_V2, REQUIRED_V3):
        assert table[M.SCCCN] == () and table[M.HELLO] == ()


@pytest.mark.parametrize(("version", "msg_type", "attr"), TUNNEL_CASES)
def test_tunnel_message_missing_required_avp(version: int, msg_type: int, attr: int) -> None:
    """An SCCRQ/SCCRP without a required AVP is answered with StopCCN result 2 (General Error),
    error 6, and the connection is cleared; a StopCCN without one still ends the tunnel (the
    peer is leaving) and is acknowledged, not answered."""
    plane, peer = make_plane(version)
    if msg_type == M.SCCRQ:
        msg = without(full_message(version, M.SCCRQ, tid=peer.tid), attr)
        replies = peer.send(msg, tunnel_id=0)
        stop = only(replies, M.StopCCN)
        assert not [m for m in replies if m.msg_type == M.SCCRP]
        conn = next(iter(plane.conns.values()))
    elif msg_type == M.SCCRP:
        conn = plane.dial(ConnectionParams(version=version), LOCAL, PEER_ADDR, 0.0)
        sccrq = only(peer.recv(), M.SCCRQ)
        peer.peer_tid = sccrq.get(assigned_id_attr(version))
        replies = peer.send(without(full_message(version, M.SCCRP, tid=peer.tid), attr))
        stop = only(replies, M.StopCCN)
        assert not [m for m in replies if m.msg_type == M.SCCCN]
    else:
        conn = peer.dial()
        peer.inbox.clear()
        replies = peer.send(without(full_message(version, M.StopCCN, tid=peer.tid), attr))
        assert not [m for m in replies if m.msg_type == M.StopCCN]
        (down,) = peer.events_of(ev.TunnelDown)
        assert down.conn is conn and down.by_peer and down.was_up
        assert conn.state is State.CLOSING
        replies = peer.advance(0.2)
        assert [m.name for m in replies] == ["ZLB"], "the StopCCN must be acknowledged"
        assert replies[0].nr == peer.ns
        peer.advance(40)
        assert not plane.conns
        return
    assert result_of(stop) == (StopCCNResult.GENERAL_ERROR, 6)
    assert stop.get(assigned_id_attr(version)) == conn.local_id
    # Addressed to the peer's id when it gave one (else 0, for the peer's reverse lookup).
    assert stop.tunnel_id == (0 if attr == assigned_id_attr(version) else peer.tid)
    (down,) = peer.events_of(ev.TunnelDown)
    assert down.conn is conn and not down.by_peer and not down.was_up
    assert (down.result, down.error) == (StopCCNResult.GENERAL_ERROR, 6)
    assert not peer.events_of(ev.TunnelUp)
    peer.zlb()  # acknowledge the StopCCN
    peer.advance(40)
    assert not plane.conns


# ---- authentication -----------------------------------------------------------------------


def dial_pair(pa: ConnectionParams, pb: ConnectionParams, *, run: float = 80.0,
              seed: int = 1) -> tuple[SimNet, Node, Node]:
    net = SimNet(seed=seed, link=Link(delay=(0.01, 0.01)))
    a = net.add("a", "10.0.0.1", accept=lambda _l, _p, _m: pa)
    b = net.add("b", "10.0.0.2", accept=lambda _l, _p, _m: pb)
    a.plane.dial(pa, LOCAL, ("10.0.0.2", 1701), 0.0)
    net.run(run)
    return net, a, b


def assert_refused(refuser: Node, other: Node, *, other_was_up: bool = False,
                   other_by_peer: bool = True) -> None:
    """``refuser`` cleared the connection with StopCCN 4; it never had a tunnel, the other side
    learnt the codes from the StopCCN, and both planes are empty once the linger is over.
    (The dialler is established as soon as it sends SCCCN, so a failure the answerer finds in
    the SCCCN takes down a tunnel that was up there: ``other_was_up``.)"""
    (stop,) = wire(refuser, M.StopCCN)  # once: the peer acknowledged it
    assert result_of(stop)[0] == StopCCNResult.NOT_AUTHORIZED
    (down,) = of(refuser, ev.TunnelDown)
    assert down.result == StopCCNResult.NOT_AUTHORIZED and not down.by_peer
    assert not down.was_up and not of(refuser, ev.TunnelUp)
    (other_down,) = of(other, ev.TunnelDown)
    assert other_down.was_up is other_was_up
    assert other_down.by_peer is other_by_peer
    assert other_down.result == StopCCNResult.NOT_AUTHORIZED
    assert not refuser.plane.conns and not other.plane.conns


def test_v2_wrong_secret_challenge_response_mismatch_in_sccrp() -> None:
    pa = ConnectionParams(version=2, secret=b"right")
    pb = ConnectionParams(version=2, secret=b"wrong")
    _net, a, b = dial_pair(pa, pb)
    assert_refused(a, b)
    assert "Challenge Response" in of(a, ev.TunnelDown)[0].reason


def test_v2_wrong_secret_with_hidden_avps() -> None:
    """Hiding starts with SCCCN (SCCRQ/SCCRP are sent in clear for xl2tpd's sake); a hidden
    Challenge Response that does not decrypt with the answerer's secret is refused as the
    authentication failure it is (StopCCN 4), not as a malformed message."""
    pa = ConnectionParams(version=2, secret=b"right", hide_avps=True, challenge=False)
    pb = ConnectionParams(version=2, secret=b"wrong", hide_avps=True)
    _net, a, b = dial_pair(pa, pb)
    assert_refused(b, a, other_was_up=True)
    reason = of(b, ev.TunnelDown)[0].reason
    assert "hidden AVP" in reason or "Challenge Response" in reason
    (stop,) = wire(b, M.StopCCN)
    assert stop.tunnel_id == of(a, ev.TunnelDown)[0].conn.local_id
    assert len(of(b, ev.TunnelDown)) == 1


def test_v2_wrong_secret_challenge_response_mismatch_in_scccn() -> None:
    """The dialler does not challenge; the answerer's challenge is answered wrongly in SCCCN."""
    pa = ConnectionParams(version=2, secret=b"right", challenge=False)
    pb = ConnectionParams(version=2, secret=b"wrong")
    _net, a, b = dial_pair(pa, pb)
    assert_refused(b, a, other_was_up=True)
    assert not wire(a, M.StopCCN)


def test_v2_same_secret_authenticates() -> None:
    p = ConnectionParams(version=2, secret=b"s3cret", hide_avps=True)
    _net, a, b = dial_pair(p, p, run=5)
    assert len(of(a, ev.TunnelUp)) == len(of(b, ev.TunnelUp)) == 1
    assert not of(a, ev.TunnelDown) and not of(b, ev.TunnelDown)


def test_v2_peer_without_secret_gives_no_challenge_response_in_sccrp() -> None:
    plane, peer = make_plane(2)
    conn = plane.dial(ConnectionParams(version=2, secret=b"s"), LOCAL, PEER_ADDR, 0.0)
    sccrq = only(peer.recv(), M.SCCRQ)
    assert sccrq.has(A.CHALLENGE)
    peer.peer_tid = sccrq.get(A.ASSIGNED_TUNNEL_ID)
    replies = peer.send(full_message(2, M.SCCRP, tid=peer.tid))
    stop = only(replies, M.StopCCN)
    assert result_of(stop)[0] == StopCCNResult.NOT_AUTHORIZED
    assert not conn.established and conn.state is State.CLOSING
    (down,) = peer.events_of(ev.TunnelDown)
    assert down.result == 4 and "lacks the Challenge Response" in down.reason


def test_v2_peer_without_secret_gives_no_challenge_response_in_scccn() -> None:
    _plane, peer = make_plane(2, secret=b"s")
    replies = peer.send(full_message(2, M.SCCRQ, tid=peer.tid), tunnel_id=0)
    sccrp = only(replies, M.SCCRP)
    assert sccrp.has(A.CHALLENGE)
    peer.peer_tid = sccrp.get(A.ASSIGNED_TUNNEL_ID)
    replies = peer.send(ControlMessage(M.SCCCN))
    assert result_of(only(replies, M.StopCCN))[0] == StopCCNResult.NOT_AUTHORIZED
    assert not peer.events_of(ev.TunnelUp)


def test_v2_challenge_when_we_have_no_secret() -> None:
    # Answering: the peer's SCCRQ carries a Challenge.
    pa = ConnectionParams(version=2, secret=b"s")
    pb = ConnectionParams(version=2)
    _net, a, b = dial_pair(pa, pb)
    assert_refused(b, a)
    assert "no secret" in of(b, ev.TunnelDown)[0].reason
    # Dialling: the peer's SCCRP carries one.
    plane, peer = make_plane(2)
    plane.dial(ConnectionParams(version=2), LOCAL, PEER_ADDR, 0.0)
    peer.peer_tid = only(peer.recv(), M.SCCRQ).get(A.ASSIGNED_TUNNEL_ID)
    sccrp = full_message(2, M.SCCRP, tid=peer.tid).add(A.CHALLENGE, b"\x01" * 16)
    stop = only(peer.send(sccrp), M.StopCCN)
    assert result_of(stop)[0] == StopCCNResult.NOT_AUTHORIZED


def test_v3_wrong_secret_fails_the_digest() -> None:
    pa = ConnectionParams(version=3, secret=b"right")
    pb = ConnectionParams(version=3, secret=b"wrong")
    _net, a, b = dial_pair(pa, pb)
    stops = wire(b, M.StopCCN)
    assert stops and result_of(stops[0])[0] == StopCCNResult.NOT_AUTHORIZED
    (down,) = of(b, ev.TunnelDown)
    assert down.result == 4 and not down.by_peer and "Digest" in down.reason
    assert of(a, ev.TunnelDown) and not of(a, ev.TunnelUp) and not of(b, ev.TunnelUp)
    assert not a.plane.conns and not b.plane.conns


def test_v3_peer_without_nonce_when_we_require_auth() -> None:
    pa = ConnectionParams(version=3)  # no secret: no nonce, no digest
    pb = ConnectionParams(version=3, secret=b"s")
    _net, a, b = dial_pair(pa, pb)
    assert_refused(b, a)
    assert not wire(a, M.StopCCN)


def test_v3_peer_authenticates_but_we_have_no_secret() -> None:
    pa = ConnectionParams(version=3, secret=b"s")
    pb = ConnectionParams(version=3)
    _net, a, b = dial_pair(pa, pb)
    # The refusal cannot carry a digest, so the dialler cannot verify it: it clears its side
    # with a StopCCN 4 of its own instead of trusting an unsigned message.
    assert_refused(b, a, other_by_peer=False)
    assert "Digest" in of(a, ev.TunnelDown)[0].reason


def test_v3_corrupted_digest_on_established_tunnel_is_dropped_and_counted() -> None:
    p = ConnectionParams(version=3, secret=b"s3cret", hide_avps=True)
    net, a, b = dial_pair(p, p, run=2)
    (conn,) = a.plane.conns.values()
    (peer_conn,) = b.plane.conns.values()
    assert conn.established and peer_conn.established and peer_conn.digests
    conn.place_call(now=net.now)
    a.plane.touch(conn)
    ((_local, _peer, icrq),) = a.plane.datagrams()
    ((digest_at, _dtype),) = auth.find_digests(icrq)

    def corrupt(at: int) -> bytes:
        bad = bytearray(icrq)
        bad[at] ^= 0x20
        return bytes(bad)

    for at in (digest_at, digest_at + 15, len(icrq) - 1):  # the digest, then the body
        b.plane.receive(LOCAL, corrupt(at), 0, ("10.0.0.1", 1701), net.now)
    # An unauthenticated ZLB cannot carry a digest and is ignored too.
    zlb = ControlMessage(M.ZLB, version=3, tunnel_id=peer_conn.local_id, ns=2, nr=5)
    b.plane.receive(LOCAL, encode_message(zlb), 0, ("10.0.0.1", 1701), net.now)
    assert peer_conn.stats["rx_digest_failures"] == 3
    assert peer_conn.stats["rx_unauthenticated_zlb"] == 1
    assert peer_conn.established and not peer_conn.calls
    assert not b.plane.datagrams() and not b.plane.events()
    assert peer_conn.transport.nr == 2, "a forged message must not advance Nr"
    # The genuine message is still accepted afterwards.
    b.plane.receive(LOCAL, icrq, 0, ("10.0.0.1", 1701), net.now)
    assert len(peer_conn.calls) == 1
    out = b.plane.datagrams()
    assert [decode_message(d, hide_key=auth.hiding_key_v3(b"s3cret")).name
            for _l, _p, d in out] == ["ICRP"]


# ---- tolerance and timers ------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_unknown_optional_and_vendor_avps_in_sccrq_are_ignored(version: int) -> None:
    _plane, peer = make_plane(version)
    sccrq = full_message(version, M.SCCRQ, tid=peer.tid)
    sccrq.avps += [
        Avp(250, b"\x01\x02\x03", mandatory=False),
        Avp(AvpType.FAILOVER_CAPABILITY, b"\x00\x01\x00\x00\x03\xe8", mandatory=False),
        Avp(10, b"\x00\x01", vendor_id=9, mandatory=False),  # Cisco Draft AVP Version
        Avp(3, b"vendor", vendor_id=311, mandatory=False),
        Avp(9, b"ext", vendor_id=0x10000, mandatory=False, extended=True),
    ]
    conn = peer.dial(sccrq)
    assert conn.established and conn.peer_host_name == "fakepeer"


@pytest.mark.parametrize("version", [2, 3])
def test_recognised_avps_with_m_bit_clear_are_accepted(version: int) -> None:
    """prol2tp sends Protocol Version and the v3 AVPs with M=0, and Router ID 0."""
    _plane, peer = make_plane(version)
    sccrq = full_message(version, M.SCCRQ, tid=peer.tid)
    sccrq.avps = [Avp(a.attr_type, a.value if a.attr_type != A.ROUTER_ID else bytes(4),
                      a.vendor_id, False) for a in sccrq.avps]
    conn = peer.dial(sccrq)
    assert conn.established and conn.peer_rws == 4
    if version == 3:
        assert conn.peer_pw_types == (5, 4, 7) and conn.peer_router_id == 0


@pytest.mark.parametrize("version", [2, 3])
def test_stopccn_result_code_without_error_code_is_accepted(version: int) -> None:
    _plane, peer = make_plane(version)
    conn = peer.dial()
    stop = ControlMessage(M.StopCCN)
    stop.add(assigned_id_attr(version), peer.tid)
    stop.add(A.RESULT_CODE, ResultCode(6))  # 2-octet Result Code
    replies = peer.send(stop) + peer.advance(0.2)
    assert [m.name for m in replies] == ["ZLB"]
    (down,) = peer.events_of(ev.TunnelDown)
    assert (down.conn, down.result, down.error, down.by_peer) == (conn, 6, None, True)


@pytest.mark.parametrize("version", [2, 3])
def test_setup_timeout_when_peer_never_sends_scccn(version: int) -> None:
    plane, peer = make_plane(version, setup_timeout=20.0, hello_interval=0)
    only(peer.send(full_message(version, M.SCCRQ, tid=peer.tid), tunnel_id=0), M.SCCRP)
    peer.peer_tid = next(iter(plane.conns))
    assert peer.zlb() == []  # acknowledges the SCCRP; no SCCCN follows
    replies = peer.advance(19.9)
    assert replies == [] and next(iter(plane.conns.values())).state is State.WAIT_CTL_CONN
    replies = peer.advance(0.2)
    stop = only(replies, M.StopCCN)
    assert result_of(stop)[0] == StopCCNResult.FSM_ERROR == 7
    (down,) = peer.events_of(ev.TunnelDown)
    assert down.result == 7 and not down.was_up and "not established in time" in down.reason


@pytest.mark.parametrize("version", [2, 3])
def test_duplicate_sccrq_goes_to_the_existing_connection(version: int) -> None:
    secret = b"hide-me" if version == 2 else None
    kw = {"secret": secret, "challenge": False, "hide_avps": True} if secret else {}
    plane, peer = make_plane(version, **kw)
    peer.hide_key = secret
    sccrq = full_message(version, M.SCCRQ, tid=peer.tid)
    if secret:  # the Assigned Tunnel ID arrives hidden: the plane must unhide it to match
        sccrq.avps = [Avp(a.attr_type, a.value, hidden=a.attr_type == A.ASSIGNED_TUNNEL_ID)
                      for a in sccrq.avps]
    data = peer.encode(sccrq, tunnel_id=0)
    first = peer.deliver(data)
    sccrp = only(first, M.SCCRP)
    again = peer.deliver(data) + peer.advance(0.2)  # a retransmission (its SCCRP was "lost")
    assert len(plane.conns) == 1
    assert [m.name for m in again] == ["ZLB"] and again[0].nr == 1
    peer.peer_tid = sccrp.get(assigned_id_attr(version))
    peer.send(ControlMessage(M.SCCCN))
    (conn,) = plane.conns.values()
    assert conn.established and len(peer.events_of(ev.TunnelUp)) == 1


@pytest.mark.parametrize("version", [2, 3])
def test_hello_keeps_an_idle_tunnel_up_and_detects_a_dead_peer(version: int) -> None:
    p = ConnectionParams(version=version, hello_interval=10.0)
    net = SimNet(seed=4, link=Link(delay=(0.01, 0.01)))
    a = net.add("a", "10.0.0.1", accept=lambda _l, _p, _m: p)
    b = net.add("b", "10.0.0.2", accept=lambda _l, _p, _m: p)
    conn = a.plane.dial(p, LOCAL, ("10.0.0.2", 1701), 0.0)
    net.run(300)
    assert conn.established and len(b.plane.conns) == 1
    hellos = [t for t, d in a.sent + b.sent if decode_message(d).msg_type == M.HELLO]
    assert len(hellos) >= 20, "an idle tunnel exchanges HELLOs"
    assert not of(a, ev.TunnelDown) and not of(b, ev.TunnelDown)

    # The peer dies: nothing reaches a any more.
    net.nodes.pop("10.0.0.2")
    cut = net.now
    a.sent.clear()
    net.run(cut + 120, stop=lambda: not a.plane.conns)
    (down,) = of(a, ev.TunnelDown)
    assert down.reason == "hello timeout" and down.was_up and down.result is None
    times = [t for t, d in a.sent if decode_message(d).msg_type == M.HELLO]
    retries = 5
    assert len(times) == retries + 1
    assert [round(y - x, 6) for x, y in itertools.pairwise(times)] == [1, 2, 4, 8, 8]
    assert times[0] - cut <= 10.0 + 0.1
    assert not a.plane.conns and net.now == pytest.approx(times[0] + 31)


def test_stopccn_before_peer_id_known_is_found_by_reverse_lookup() -> None:
    """A StopCCN with tunnel id 0 reaches the connection through its Assigned Tunnel ID."""
    _plane, peer = make_plane(2)
    only(peer.send(full_message(2, M.SCCRQ, tid=peer.tid), tunnel_id=0), M.SCCRP)
    stop = full_message(2, M.StopCCN, tid=peer.tid)
    peer.send(stop, tunnel_id=0)
    (down,) = peer.events_of(ev.TunnelDown)
    assert down.by_peer and down.result == 1


@pytest.mark.parametrize("version", [2, 3])
def test_accept_policy_refusal_and_version_mismatch(version: int) -> None:
    """An SCCRQ the policy refuses is answered with the policy's StopCCN codes; one for a
    version the policy does not serve with StopCCN 5. Either is acknowledged by the dialler
    (which learns the refuser's id from it) and sent only once."""
    p = ConnectionParams(version=version)
    net = SimNet(seed=2, link=Link(delay=(0.01, 0.01)))
    a = net.add("a", "10.0.0.1")
    net.add("b", "10.0.0.2", accept=lambda _l, _p, _m: (StopCCNResult.ALREADY_EXISTS, 0, "dup"))
    c = net.add("c", "10.0.0.3",
                accept=lambda _l, _p, _m: ConnectionParams(version=5 - version))
    a.plane.dial(p, LOCAL, ("10.0.0.2", 1701), 0.0)
    a.plane.dial(p, LOCAL, ("10.0.0.3", 1701), 0.0)
    net.run(60)
    downs = {e.conn.peer[0]: e for e in of(a, ev.TunnelDown)}
    assert downs["10.0.0.2"].result == StopCCNResult.ALREADY_EXISTS
    assert downs["10.0.0.3"].result == StopCCNResult.UNSUPPORTED_VERSION
    assert all(d.by_peer and not d.was_up for d in downs.values())
    for node in (net.nodes["10.0.0.2"], c):
        (stop,) = wire(node, M.StopCCN)
        assert stop.version == version
    assert not a.plane.conns and not c.plane.conns


def test_ignored_sccrq_gets_no_answer() -> None:
    p = ConnectionParams(version=2, setup_timeout=600)
    net = SimNet(seed=2, link=Link(delay=(0.01, 0.01)))
    a = net.add("a", "10.0.0.1")
    b = net.add("b", "10.0.0.2", accept=lambda _l, _p, _m: None)
    a.plane.dial(p, LOCAL, ("10.0.0.2", 1701), 0.0)
    net.run(60)
    assert not b.sent and not b.plane.conns and b.plane.stats["rx_sccrq_ignored"] == 6
    (down,) = of(a, ev.TunnelDown)
    assert "SCCRQ unacknowledged" in down.reason
