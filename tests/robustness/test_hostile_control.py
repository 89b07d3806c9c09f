"""Every control message type, broken every way, against a live daemon carrying real traffic.

The lab (``tests/support/hostile.py``): a LAC daemon has dialled an LNS daemon with an L2TPv3
tunnel (secret, hidden AVPs) and an Ethernet pseudowire that carries pings. From a third
namespace a hostile peer opens its own control connection to the LNS (the LNS's
``hostile-open`` policy accepts it without a secret) and sends one message type with one
defect; the test then synchronises with the daemon (:class:`~tests.support.hostile.Barrier`),
reads what the daemon answered and which counter moved, and clears the hostile tunnel.

Defects, per message type and version:

* header: Length longer than the datagram, Length shorter than the header, version 1 (L2F)
  and the other L2TP version's header: discarded silently, counted by the plane
  (``rx_malformed``, or ``rx_unknown_tunnel`` when the other version's id names nothing);
* AVPs: a trailing fragment too short for an AVP header, an AVP Length below 6, an AVP Length
  past the end of the message, an unknown AVP with the M bit (IETF and vendor), an AVP with
  v2 reserved bits, the first required AVP missing: StopCCN (tunnel messages) or CDN (call
  requests) with result 2 and the RFC error code (2 length, 8 unknown mandatory, 6 missing),
  counted as ``rx_invalid`` on the connection; an unknown AVP *without* the M bit is ignored;
* sequencing: Ns far outside the window (dropped, ``rx_out_of_window``), an old Ns (a
  duplicate: re-acknowledged, not delivered, ``rx_duplicates``), an Nr acknowledging messages
  the daemon never sent (``invalid_nr``; v3 drops the message, v2 keeps its payload).

The expected answer of every case is written out in ``expected`` below from the documented
decisions (``docs/architecture.md``, "Wire-level decisions"); the tests compare the whole
table at once so that a failure lists every deviation. After each message type the daemon
must be alive and the legitimate tunnel, session and pings unaffected.
"""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pyl2tp.wire.constants import AvpType, MessageType
from pyl2tp.wire.message import REQUIRED_V2, REQUIRED_V3, ControlMessage
from tests.support.ctlpeer import full_message
from tests.support.hostile import (
    LNS_ATK_ADDR,
    HostilePeer,
    Lab,
    Reply,
    avp_bytes,
    lab,
    udp_socket,
)

pytestmark = pytest.mark.netns

A = AvpType
M = MessageType

TYPES_V2 = [M.SCCRQ, M.SCCRP, M.SCCCN, M.StopCCN, M.HELLO, M.OCRQ, M.OCRP, M.OCCN, M.ICRQ,
            M.ICRP, M.ICCN, M.CDN, M.WEN, M.SLI]
TYPES_V3 = [*TYPES_V2, M.ACK]
CALL_REQUESTS = {M.ICRQ, M.OCRQ}
TUNNEL_SETUP = {M.SCCRQ, M.SCCRP, M.SCCCN}
HEADER_KINDS = ("length_over", "length_under", "version_l2f", "version_other")
AVP_KINDS = ("avp_trailing", "avp_len_short", "avp_len_over", "unknown_m", "unknown_vendor_m",
             "reserved_bits", "missing")
SEQ_KINDS = ("ns_ahead", "ns_old", "nr_bogus")
KINDS = ("valid", "unknown_o", *HEADER_KINDS, *AVP_KINDS, *SEQ_KINDS)
PORTS = itertools.count(20000)
SOURCES = 16
ERROR_OF = {"avp_trailing": 2, "avp_len_short": 2, "avp_len_over": 2, "unknown_m": 8,
            "unknown_vendor_m": 8, "reserved_bits": 8, "missing": 6}


@pytest.fixture(scope="module")
def the_lab() -> Iterator[Lab]:
    with lab() as built:
        yield built


def _hostile_socket(lab_: Lab) -> socket.socket:
    """A UDP socket on a port never used before in this lab (the daemon's lingering
    connections of earlier cases are keyed by address and port, and an ephemeral port may
    come round again), on one of 16 attacker addresses in turn: each case opens a tunnel,
    and a daemon may rate-limit SCCRQs per source address."""
    n = next(PORTS)
    return udp_socket(lab_.atk_ns, lab_.sources(SOURCES)[n % SOURCES], n)


# ---------------------------------------------------------------------------------------------
# Building the defective messages


def _message(version: int, msg_type: int, peer: HostilePeer) -> ControlMessage:
    if msg_type == M.SCCRQ:
        return peer.sccrq()
    if msg_type == M.ACK:
        return ControlMessage(M.ACK, version=version)
    # The hostile peer's own session ids; the daemon's side of each call does not exist.
    return full_message(version, msg_type, tid=peer.tid, sid=0x51, peer_sid=0x77)


def _required(version: int, msg_type: int) -> tuple[int, ...]:
    return (REQUIRED_V2 if version == 2 else REQUIRED_V3).get(msg_type, ())


def applicable(version: int, msg_type: int, kind: str) -> bool:
    if kind == "missing":
        return bool(_required(version, msg_type))
    if kind == "reserved_bits":
        return version == 2
    if kind == "ns_old":
        return msg_type != M.SCCRQ  # nothing precedes a new tunnel's SCCRQ
    return True


def _set_length(value: int) -> Callable[[bytearray], None]:
    def patch(data: bytearray) -> None:
        struct.pack_into(">H", data, 2, value)
    return patch


def send_case(peer: HostilePeer, version: int, msg_type: int, kind: str,
              daemon_ns: int) -> bytes:
    """Send ``msg_type`` with defect ``kind``; returns the octets sent."""
    msg = _message(version, msg_type, peer)
    kw: dict[str, Any] = {}
    if msg_type == M.SCCRQ:
        kw["tunnel_id"] = 0
    if kind == "unknown_o":
        kw["extra"] = avp_bytes(250, b"ignore me", m=False)
    elif kind == "length_over":
        kw["patch"] = lambda d: struct.pack_into(">H", d, 2, len(d) + 16)
    elif kind == "length_under":
        kw["patch"] = _set_length(10)
    elif kind == "version_l2f":
        kw["patch"] = lambda d: d.__setitem__(1, (d[1] & 0xF0) | 1)
    elif kind == "version_other":
        kw["patch"] = lambda d: d.__setitem__(1, (d[1] & 0xF0) | (5 - version))
    elif kind == "avp_trailing":
        kw["extra"] = b"\x80\x00\x07"
    elif kind == "avp_len_short":
        kw["extra"] = avp_bytes(250, b"", length=4)
    elif kind == "avp_len_over":
        kw["extra"] = avp_bytes(250, b"abcd", length=900)
    elif kind == "unknown_m":
        kw["extra"] = avp_bytes(250, b"must understand", m=True)
    elif kind == "unknown_vendor_m":
        kw["extra"] = avp_bytes(1, b"\x00\x01", m=True, vendor=9)  # a Cisco AVP 1
    elif kind == "reserved_bits":
        kw["extra"] = avp_bytes(A.CALLING_NUMBER, b"123", m=True, reserved=0x0400)
    elif kind == "missing":
        drop = _required(version, msg_type)[0]
        msg.avps = [a for a in msg.avps if not (a.attr_type == drop and a.vendor_id == 0)]
    elif kind == "ns_ahead":
        kw["ns"] = (peer.ns + 300) & 0xFFFF
    elif kind == "ns_old":
        kw["ns"] = (peer.ns - 1) & 0xFFFF
    elif kind == "nr_bogus":
        kw["nr"] = (daemon_ns + 500) & 0xFFFF
    data = peer.encode(msg, **kw)
    if kind in HEADER_KINDS and msg_type != M.ACK:
        # The daemon never reads the Ns of a message it cannot parse: take ours back.
        peer.ns = (peer.ns - 1) & 0xFFFF
    peer.send_raw(data)
    return data


# ---------------------------------------------------------------------------------------------
# What the daemon must do


def expected(version: int, msg_type: int, kind: str) -> tuple[str, str]:
    """(answer, counter) for one case.

    ``answer`` is the daemon's non-acknowledgement reply: "none", "SCCRP", "ICRP",
    "OCRP+OCCN", "StopCCN r/e" or "CDN r/e". ``counter`` names what must have moved:
    "plane.<name>", "conn.<name>" (the hostile connection's counters) or
    "transport.<name>".
    """
    new_tunnel = msg_type == M.SCCRQ
    if kind in HEADER_KINDS:
        if kind == "version_other" and not new_tunnel:
            return "none", "plane.rx_unknown_tunnel"
        if kind == "version_other":
            # An SCCRQ of the other version with this version's AVPs: the policy accepts the
            # version, the message lacks that version's required AVPs.
            return "StopCCN 2/6", "plane.rx_sccrq_accepted"
        return "none", "plane.rx_malformed"
    if kind in ("valid", "unknown_o") or (kind == "nr_bogus" and version == 2):
        counter = "conn.rx_invalid_nr" if kind == "nr_bogus" else f"conn.rx_{M(msg_type).name}"
        if new_tunnel:
            return "SCCRP", counter
        if msg_type in TUNNEL_SETUP:
            return "StopCCN 7/0", counter  # on an established tunnel: a state error
        if msg_type == M.ICRQ:
            return "ICRP", counter
        if msg_type == M.OCRQ:
            return "OCRP+OCCN", counter
        if msg_type in (M.ICRP, M.OCRP) or (version == 3 and msg_type in (M.ICCN, M.OCCN)):
            return "CDN 2/5", counter  # for a session of ours that does not exist
        if msg_type == M.ACK:
            return "none", "transport.rx_acks"
        return "none", counter
    if msg_type == M.ACK and kind in SEQ_KINDS:
        # Only acknowledges: its Ns is never checked. (An Nr beyond what was sent is
        # still counted, and a v3 message with one dropped.)
        return "none", "transport.invalid_nr" if kind == "nr_bogus" else "transport.rx_acks"
    if kind == "nr_bogus":
        return ("none", "transport.invalid_nr") if not new_tunnel else (
            "none", "plane.rx_sccrq_accepted")
    if kind == "ns_ahead":
        if new_tunnel:
            return "SCCRP", "plane.rx_sccrq_accepted"  # RFC 4951: a peer may start anywhere
        return "none", "transport.rx_out_of_window"
    if kind == "ns_old":
        return "none", "transport.rx_duplicates"
    # AVP defects: judged once the Message Type is known.
    error = ERROR_OF[kind]
    if msg_type == M.ACK:
        # Never delivered (it only acknowledges), yet judged like any other message.
        return f"StopCCN 2/{error}", "conn.rx_invalid"
    if msg_type == M.StopCCN:
        return "none", "conn.rx_invalid"  # a malformed StopCCN still ends the tunnel
    if new_tunnel or msg_type in TUNNEL_SETUP or msg_type == M.HELLO:
        return f"StopCCN 2/{error}", "conn.rx_invalid"
    if msg_type in CALL_REQUESTS:
        return f"CDN 2/{error}", "conn.rx_invalid"
    return "none", "conn.rx_invalid"  # a call message for no call of ours


def answer_of(replies: list[Reply]) -> str:
    names = []
    for r in replies:
        if r.msg is None:
            names.append("undecodable")
        elif r.msg.msg_type in (M.ZLB, M.ACK):
            continue
        elif r.msg.msg_type in (M.StopCCN, M.CDN) and r.result is not None:
            names.append(f"{r.name} {r.result[0]}/{r.result[1] or 0}")
        else:
            names.append(r.name)
    return "+".join(names) or "none"


# ---------------------------------------------------------------------------------------------
# Running one case


@dataclass
class Outcome:
    case: str
    answer: str
    want_answer: str
    counter: str
    moved: int

    @property
    def ok(self) -> bool:
        return self.answer == self.want_answer and self.moved > 0


def _read(lab_: Lab, where: str, name: str, conn: dict[str, Any] | None) -> int:
    if where == "plane":
        return int(lab_.plane().get(name, 0))
    if conn is None:
        return 0
    source = conn["transport"] if where == "transport" else conn["counters"]
    return int(source.get(name, 0))


def run_case(lab_: Lab, version: int, msg_type: int, kind: str) -> Outcome:
    want_answer, counter = expected(version, msg_type, kind)
    where, name = counter.split(".", 1)
    peer = HostilePeer(_hostile_socket(lab_), (LNS_ATK_ADDR, 1701), version=version,
                       host_name="open")
    barrier = lab_.barrier()
    try:
        before = 0
        daemon_ns = 0
        if msg_type != M.SCCRQ:
            peer.establish()
            barrier(peer.send_raw)
            peer.recv()
            conn = lab_.conn(peer.peer_tid)
            assert conn is not None and conn["state"] == "established", conn
            before = _read(lab_, where, name, conn)
            daemon_ns = int(conn["ns"])
        else:
            before = _read(lab_, where, name, None)
        send_case(peer, version, msg_type, kind, daemon_ns)
        barrier(peer.send_raw)
        replies = peer.recv()
        conn = _find_conn(lab_, peer)
        after = _read(lab_, where, name, conn)
        if where == "conn" and msg_type == M.SCCRQ and conn is not None:
            before = 0  # a new connection
        outcome = Outcome(f"v{version} {M(msg_type).name} {kind}", answer_of(replies),
                          want_answer, counter, after - before)
        _clean_up(peer, replies, conn)
        return outcome
    finally:
        peer.close()


def _find_conn(lab_: Lab, peer: HostilePeer) -> dict[str, Any] | None:
    addr, port = peer.local
    return next((c for c in lab_.conns() if c["peer"] == addr and c["peer_port"] == port),
                None)


def _clean_up(peer: HostilePeer, replies: list[Reply], conn: dict[str, Any] | None) -> None:
    """Leave nothing behind: acknowledge a StopCCN, or send our own."""
    stopped = any(r.msg is not None and r.msg.msg_type == M.StopCCN for r in replies)
    if stopped:
        peer.ack()
    elif conn is not None and conn["state"] == "established" and peer.peer_tid:
        peer.ns = int(conn["nr"])
        peer.stop()


def run_type(lab_: Lab, version: int, msg_type: int) -> list[Outcome]:
    out = [run_case(lab_, version, msg_type, kind) for kind in KINDS
           if applicable(version, msg_type, kind)]
    lab_.assert_intact()
    return out


def report(outcomes: list[Outcome]) -> str:
    bad = [o for o in outcomes if not o.ok]
    lines = [f"{o.case:36} answered {o.answer!r:22} expected {o.want_answer!r:22} "
             f"{o.counter} moved {o.moved}" for o in bad]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("msg_type", TYPES_V2, ids=lambda t: M(t).name)
def test_v2_defective_messages(the_lab: Lab, msg_type: int) -> None:
    outcomes = run_type(the_lab, 2, msg_type)
    assert all(o.ok for o in outcomes), "\n" + report(outcomes)


@pytest.mark.parametrize("msg_type", TYPES_V3, ids=lambda t: M(t).name)
def test_v3_defective_messages(the_lab: Lab, msg_type: int) -> None:
    outcomes = run_type(the_lab, 3, msg_type)
    assert all(o.ok for o in outcomes), "\n" + report(outcomes)


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("msg_type", [M.SCCRQ, M.ICRQ, M.OCRQ], ids=lambda t: M(t).name)
def test_zero_ids_are_refused(the_lab: Lab, version: int, msg_type: int) -> None:
    """An Assigned Tunnel/Connection ID or a session id of 0 names nothing (both RFCs: MUST
    be non-zero): refused as a bad value, 2/3, before any state is built on it."""
    peer = HostilePeer(_hostile_socket(the_lab), (LNS_ATK_ADDR, 1701), version=version,
                       host_name="open")
    barrier = the_lab.barrier()
    try:
        if msg_type == M.SCCRQ:
            msg = peer.sccrq()
            attr = A.ASSIGNED_TUNNEL_ID if version == 2 else A.ASSIGNED_CONNECTION_ID
            want = "StopCCN 2/3"
        else:
            peer.establish()
            msg = full_message(version, msg_type, tid=peer.tid, sid=1)
            attr = A.ASSIGNED_SESSION_ID if version == 2 else A.LOCAL_SESSION_ID
            want = "CDN 2/3"
        msg.avps = [a for a in msg.avps if a.attr_type != attr]
        msg.add(attr, 0)
        peer.send(msg, **({"tunnel_id": 0} if msg_type == M.SCCRQ else {}))
        barrier(peer.send_raw)
        replies = peer.recv()
        assert answer_of(replies) == want
        conn = _find_conn(the_lab, peer)
        if msg_type != M.SCCRQ:
            assert conn is not None and conn["state"] == "established" and not conn["calls"]
        _clean_up(peer, replies, conn)
    finally:
        peer.close()
    the_lab.assert_intact()


def test_v3_ack_with_unknown_mandatory_avp_clears_the_connection(the_lab: Lab) -> None:
    outcome = run_case(the_lab, 3, M.ACK, "unknown_m")
    assert outcome.answer == "StopCCN 2/8", outcome
