"""Sessions and tunnels beyond the configured limits, asked for politely and by a flood.

The lab of ``tests/support/hostile.py`` with an LNS configured for ``max_tunnels = 32`` (the
legitimate tunnel included) and ``max_sessions = 4`` on the hostile peers' policy:

* a hostile tunnel asks for ten calls: four are answered, six refused with CDN 4/4 (no
  facilities, no resources), and only four sessions reach the data plane, also when the
  refused ones are asked for again after the first four are connected;
* a hostile host opens tunnels one at a time (acknowledging every answer, as a real peer
  would) until the daemon holds 32 connections: every further SCCRQ gets StopCCN 2/4;
* a flood of 2,000 SCCRQs from 200 addresses x 10 ports (nobody acknowledges anything):
  every one is counted as accepted or refused, the daemon and the legitimate pseudowire carry
  on, and the connection table, refusals included, never holds more than 32 (at commit
  74b140a it held 2,001: see ``docs/robustness.md``, "Bugs found");
* a peer that never acknowledges: the daemon's answers pile up to the control queue bound,
  which clears that tunnel.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from pyl2tp.wire.constants import AvpType, MessageType
from tests.support.ctlpeer import full_message
from tests.support.hostile import (
    ATK_ADDR,
    LNS_ATK_ADDR,
    FloodResult,
    HostilePeer,
    Lab,
    Reply,
    lab,
    proc_rss_kb,
    sccrq_flood,
    udp_socket,
)
from tests.support.netns import wait_for

pytestmark = pytest.mark.netns

A = AvpType
M = MessageType
MAX_TUNNELS = 32
MAX_SESSIONS = 4
FLOOD = 2000
PORTS = itertools.count(22000)


@pytest.fixture(scope="module")
def the_lab() -> Iterator[Lab]:
    with lab(max_tunnels=MAX_TUNNELS, max_sessions=MAX_SESSIONS) as built:
        yield built


def _peer(lab_: Lab, version: int) -> HostilePeer:
    return HostilePeer(udp_socket(lab_.atk_ns, ATK_ADDR, next(PORTS)), (LNS_ATK_ADDR, 1701),
                       version=version, host_name="open")


def _names(replies: list[Reply]) -> list[str]:
    out = []
    for r in replies:
        if r.msg is None or r.msg.msg_type in (M.ZLB, M.ACK):
            continue
        out.append(f"{r.name} {r.result[0]}/{r.result[1] or 0}" if r.result else r.name)
    return out


def _wait_idle(lab_: Lab, base: int = 1) -> None:
    wait_for(lambda: lab_.connections() <= base, timeout=15, interval=0.2,
             message="the hostile connections to go")


@pytest.mark.parametrize("version", [2, 3])
def test_sessions_beyond_max_sessions(the_lab: Lab, version: int) -> None:
    peer = _peer(the_lab, version)
    barrier = the_lab.barrier()
    try:
        peer.establish()
        sid_key = A.ASSIGNED_SESSION_ID if version == 2 else A.LOCAL_SESSION_ID
        for n in range(10):
            peer.send(full_message(version, M.ICRQ, tid=peer.tid, sid=0x200 + n))
        answers = _names(peer.collect(10))
        assert answers.count("ICRP") == MAX_SESSIONS, answers
        assert answers.count("CDN 4/4") == 10 - MAX_SESSIONS, answers
        # Connect the four that were answered: they become data-plane sessions.
        icrps = [r.msg for r in peer.replies if r.msg is not None and r.msg.msg_type == M.ICRP]
        for icrp in icrps:
            theirs = int(icrp.get(sid_key))
            ours = int(icrp.get(A.REMOTE_SESSION_ID, 0)) if version == 3 else 0
            iccn = full_message(version, M.ICCN, tid=peer.tid, sid=ours or 0x200,
                                peer_sid=theirs)
            if version == 3:
                iccn.avps = [a for a in iccn.avps if a.attr_type != A.REMOTE_SESSION_ID]
                iccn.add(A.REMOTE_SESSION_ID, theirs)
            peer.send(iccn)
        # ... and ask again for the six refused ones: still no room.
        for n in range(MAX_SESSIONS, 10):
            peer.send(full_message(version, M.ICRQ, tid=peer.tid, sid=0x300 + n))
        answers = _names(peer.collect(10 - MAX_SESSIONS))
        barrier(peer.send_raw)
        answers += _names(peer.recv())
        assert answers == ["CDN 4/4"] * (10 - MAX_SESSIONS), answers
        conn = the_lab.conn(peer.peer_tid)
        assert conn is not None
        up = [c for c in conn["calls"] if c["state"] == "established"]
        assert len(conn["calls"]) == len(up) == MAX_SESSIONS, conn["calls"]
        dataplane = [s for s in the_lab.lns.request("session_get", dump=True)
                     if s["conn_id"] == peer.peer_tid]
        assert len(dataplane) == MAX_SESSIONS
        peer.ns = int(conn["nr"])
        peer.stop()
    finally:
        peer.close()
    the_lab.assert_intact()
    wait_for(lambda: not [s for s in the_lab.lns.request("session_get", dump=True)
                          if s["conn_id"] == peer.peer_tid],
             timeout=5, message="the hostile sessions to leave the data plane")


def test_tunnels_beyond_max_tunnels(the_lab: Lab) -> None:
    """Tunnels opened one by one, every answer acknowledged: the count never passes the
    limit, and what is beyond it gets StopCCN 2/4 and leaves nothing behind."""
    _wait_idle(the_lab)
    peers: list[HostilePeer] = []
    outcomes: list[str] = []
    peak = 0
    try:
        for _ in range(MAX_TUNNELS + 8):
            peer = _peer(the_lab, 2)
            peers.append(peer)
            peer.send(peer.sccrq(), tunnel_id=0)
            got = peer.recv(3.0, until=lambda new: any(
                r.msg is not None and r.msg.msg_type in (M.SCCRP, M.StopCCN) for r in new))
            names = _names(got)
            outcomes.append(names[0] if names else "none")
            sccrp = next((r.msg for r in got if r.msg is not None
                          and r.msg.msg_type == M.SCCRP), None)
            if sccrp is not None:
                peer.learn_sccrp(sccrp)
                peer.send(peer.scccn(sccrp))
            else:
                stop = next(r.msg for r in got if r.msg is not None)
                peer.peer_tid = int(stop.get(A.ASSIGNED_TUNNEL_ID, 0))
                peer.ack()
            the_lab.barrier()(peer.send_raw)
            peak = max(peak, the_lab.connections())
        room = MAX_TUNNELS - 1  # the legitimate tunnel holds one
        assert outcomes == ["SCCRP"] * room + ["StopCCN 2/4"] * (len(outcomes) - room)
        assert peak == MAX_TUNNELS
        established = [c for c in the_lab.conns() if c["state"] == "established"]
        assert len(established) == MAX_TUNNELS
        the_lab.assert_intact()
    finally:
        for peer in peers:
            if peer.peer_tid:
                conn = the_lab.conn(peer.peer_tid)
                if conn is not None and conn["state"] == "established":
                    peer.ns = int(conn["nr"])
                    peer.stop()
            peer.close()
    _wait_idle(the_lab)


@pytest.fixture(scope="module")
def flood(the_lab: Lab) -> FloodResult:
    """2,000 SCCRQs from 200 addresses x 10 ports; nobody ever answers the daemon."""
    _wait_idle(the_lab)
    return sccrq_flood(the_lab, FLOOD, sources=200, port_base=40000)


def test_sccrq_flood_beyond_max_tunnels(the_lab: Lab, flood: FloodResult) -> None:
    print(f"\nSCCRQ flood: {flood}")
    assert flood.accounted == flood.sent, flood
    assert flood.accepted <= MAX_TUNNELS - 1
    # Connections being set up or established never pass the limit.
    assert flood.peak_active <= MAX_TUNNELS
    the_lab.assert_intact()


def test_sccrq_flood_keeps_the_connection_table_bounded(flood: FloodResult) -> None:
    """Refusing costs no state: the connection table holds at most ``max_tunnels``.

    At commit 74b140a this failed (peak 2,001 connections for a limit of 32, +16 MB RSS):
    every SCCRQ refused at the limit became a refusing connection that lingered until its
    StopCCN was acknowledged or 31 s (v2) / 71 s (v3) had passed. See docs/robustness.md."""
    assert flood.peak_connections <= MAX_TUNNELS, flood


def test_peer_that_never_acknowledges(the_lab: Lab) -> None:
    """3,000 call requests from a peer that never acknowledges anything: the daemon's
    answers pile up behind a closed window until the control queue bound (1024) clears the
    tunnel, rather than growing without limit."""
    _wait_idle(the_lab)
    rss0 = proc_rss_kb(the_lab.lns.pid)
    peer = _peer(the_lab, 3)
    try:
        peer.establish()
        for n in range(3000):
            peer.send(full_message(3, M.ICRQ, tid=peer.tid, sid=1000 + n))
            if n % 200 == 199:
                time.sleep(0.01)
        the_lab.barrier()(peer.send_raw, timeout=20)
        conn = the_lab.conn(peer.peer_tid)
        assert conn is not None, "the connection vanished without a trace"
        assert conn["state"] != "established", conn
        assert conn["counters"].get("tx_queue_full", 0) >= 1, conn["counters"]
        assert conn["down_reason"] == "control queue full", conn["down_reason"]
    finally:
        peer.close()
    rss1 = proc_rss_kb(the_lab.lns.pid)
    print(f"\nnever-acknowledging peer: LNS RSS {rss0} -> {rss1} kB")
    assert rss1 - rss0 < 20_000
    the_lab.assert_intact()
