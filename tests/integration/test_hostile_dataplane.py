"""Hostile input on the data sockets of a daemon that is carrying real traffic.

Victim A and its legitimate peer B run pyl2tp with two cookie-protected Ethernet pseudowires:
one L2TPv3 over UDP, one over IP (protocol 115). While B pings A through the UDP pseudowire,
attacker M (a third namespace) throws a few thousand malformed, truncated, wrong-version,
unknown-session, spoofed, oversized and empty datagrams at both sockets, and B's namespace adds
what only the peer's own address can send: a wrong source port, wrong cookies and truncated
packets from the right address and port (raw ``IP_HDRINCL``, as B's daemon holds the port).

A userspace data plane must survive all of it and say what it threw away: afterwards the
daemon is alive and quiet in its log, both pseudowires still pass pings, the legitimate
session kept receiving during the attack, and every drop category the attack exercised shows
up in its named counter (endpoint counters from the ``endpoint_stats`` request, session and
tunnel counters from ``pyl2tp -j -s show``). One attack feeds all the assertions below, so
each counter is reported as its own test without repeating the setup.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from tests.support.daemon import Daemon, PingResult, ping, start_all
from tests.support.netns import NetNS, Topology, child_env

pytestmark = pytest.mark.netns

A_ADDR, B_ADDR, M_ADDR, A_ADDR_M = "10.88.1.1", "10.88.1.2", "10.88.2.2", "10.88.2.1"
A_UDP_COOKIE, B_UDP_COOKIE = "a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2"
A_IP_COOKIE, B_IP_COOKIE = "c3c3c3c3", "d4d4d4d4"
UDP_TID, UDP_SID, IP_TID, IP_SID = 1, 10, 2, 30  # A's ids; B uses 20 and 40
PEER_WRONG_PORT = 200  # datagrams B's namespace sends from the peer address, wrong port

# Sent by the attacker M: its own address, so nothing it sends may reach a session.
ATTACKER = """
import json, random, socket, struct, time
rnd = random.Random(2661)
A, PORT = "{a}", 1701
SID, SID_IP = {sid}, {sid_ip}
COOKIE = bytes.fromhex("{b_udp_cookie}")  # what A expects from B: right cookie, wrong sender
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 115)
sent = {{}}

def pace(i):
    if i % 200 == 199:
        time.sleep(0.005)  # let the daemon drain; loss would only blur the counters

def u(kind, data):
    sent[kind] = sent.get(kind, 0) + 1
    udp.sendto(data, (A, PORT))
    pace(sent[kind])

def r(kind, data):
    sent[kind] = sent.get(kind, 0) + 1
    raw.sendto(data, (A, 0))
    pace(sent[kind])

frame = bytes(6) + bytes.fromhex("02aabbccddee") + b"\\x08\\x00" + rnd.randbytes(46)
for _ in range(1200):
    u("udp_random", rnd.randbytes(rnd.randrange(0, 120)))
for n in range(8):
    for _ in range(20):
        u("udp_truncated", (b"\\x00\\x03\\x00\\x00" + struct.pack(">I", SID))[:n])
for v in (1, 4, 15):
    for _ in range(60):
        u("udp_bad_version", struct.pack(">HHI", v, 0, SID) + frame)
for _ in range(200):
    tid, sid = rnd.randrange(1, 65536), rnd.randrange(1, 65536)
    u("udp_v2_unknown", struct.pack(">HHH", 0x0002, tid, sid) + frame)
    u("udp_v2_unknown", struct.pack(">HHHH", 0x4002, 14 + len(frame), tid, sid) + frame)
for _ in range(300):
    sid = rnd.choice([s for s in range(1, 1000) if s not in (SID, SID_IP)])
    u("udp_v3_unknown", b"\\x00\\x03\\x00\\x00" + struct.pack(">I", sid) + COOKIE + frame)
for _ in range(300):
    u("udp_spoofed", b"\\x00\\x03\\x00\\x00" + struct.pack(">I", SID) + COOKIE
      + bytes(4) + frame)
for _ in range(200):
    u("udp_control", b"\\xc8\\x02" + struct.pack(">H", 12 + 20) + rnd.randbytes(28))
for _ in range(20):
    u("udp_zero", b"")
for i in range(12):
    head = b"\\x00\\x03\\x00\\x00" + struct.pack(">I", SID if i % 2 else 77777) + COOKIE
    u("udp_big_spoofed" if i % 2 else "udp_big_unknown", head + rnd.randbytes(65507 - len(head)))
    time.sleep(0.01)

for _ in range(600):
    r("ip_random", rnd.randbytes(rnd.randrange(0, 120)))
for n in range(4):
    for _ in range(20):
        r("ip_short", struct.pack(">I", SID_IP)[:n])
for _ in range(300):
    r("ip_control_garbage", bytes(4) + rnd.randbytes(rnd.randrange(0, 80)))
for _ in range(300):
    sid = rnd.choice([s for s in range(1, 1000) if s not in (SID, SID_IP)])
    r("ip_unknown", struct.pack(">I", sid) + rnd.randbytes(60))
for _ in range(300):
    r("ip_spoofed", struct.pack(">I", SID_IP) + bytes.fromhex("{b_ip_cookie}") + bytes(4)
      + frame)
for i in range(8):
    r("ip_big_spoofed" if i % 2 else "ip_big_unknown",
      struct.pack(">I", SID_IP if i % 2 else 77777) + rnd.randbytes(65000))
    time.sleep(0.01)
print(json.dumps(sent))
"""

# Sent from B's namespace, where the tunnels' peer address lives.
PEER_SIDE = """
import random, socket, struct
rnd = random.Random(3931)
A, B = "{a}", "{b}"
SID, SID_IP = {sid}, {sid_ip}
RIGHT_UDP = bytes.fromhex("{b_udp_cookie}")
frame = bytes(6) + bytes.fromhex("02aabbccddee") + b"\\x08\\x00" + rnd.randbytes(46)
v3 = b"\\x00\\x03\\x00\\x00" + struct.pack(">I", SID)

# The peer's address, another port: not the peer.
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((B, 40000))
for _ in range({wrong_port_count}):
    udp.sendto(v3 + RIGHT_UDP + bytes(4) + frame, (A, 1701))

# The peer's address and port (B's daemon holds the port, so build the UDP header by hand;
# checksum 0 means none in IPv4).
hdrincl = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
def from_peer_port(payload):
    udph = struct.pack(">HHHH", 1701, 1701, 8 + len(payload), 0)
    iph = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 0, 0, 64, 17, 0,
                      socket.inet_aton(B), socket.inet_aton(A))
    hdrincl.sendto(iph + udph + payload, (A, 0))
for _ in range(200):
    from_peer_port(v3 + rnd.randbytes(8) + bytes(4) + frame)  # wrong cookie
for n in range(8, 20):
    from_peer_port((v3 + RIGHT_UDP + bytes(4))[:n])  # too short for cookie and sublayer

raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 115)
for _ in range(200):
    raw.sendto(struct.pack(">I", SID_IP) + rnd.randbytes(4) + bytes(4) + frame, (A, 0))
for n in range(4, 12):
    raw.sendto((struct.pack(">I", SID_IP) + bytes.fromhex("{b_ip_cookie}") + bytes(4))[:n],
               (A, 0))
print("ok")
"""


@dataclass
class Attack:
    """What the attack left behind, gathered once for all the tests of this module."""

    a: Daemon
    b: Daemon
    victim: NetNS
    peer: NetNS
    sent: dict[str, int]
    during: PingResult
    rx_before: int
    rx_after: int
    udp_ep: dict[str, Any] = field(default_factory=dict)
    ip_ep: dict[str, Any] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    tunnels: dict[int, dict[str, Any]] = field(default_factory=dict)


def _configure(a: Daemon, b: Daemon) -> None:
    a.cli(
        f"add tunnel tunnel_id {UDP_TID} peer_tunnel_id 1 encap udp local {A_ADDR} "
        f"remote {B_ADDR} udp_sport 1701 udp_dport 1701"
    )
    a.cli(
        f"add session name pwudp tunnel_id {UDP_TID} session_id {UDP_SID} peer_session_id 20 "
        f"cookie {A_UDP_COOKIE} peer_cookie {B_UDP_COOKIE}"
    )
    a.cli(f"add tunnel tunnel_id {IP_TID} peer_tunnel_id 2 encap ip local {A_ADDR} remote {B_ADDR}")
    a.cli(
        f"add session name pwip tunnel_id {IP_TID} session_id {IP_SID} peer_session_id 40 "
        f"cookie {A_IP_COOKIE} peer_cookie {B_IP_COOKIE}"
    )
    b.cli(
        f"add tunnel tunnel_id 1 peer_tunnel_id {UDP_TID} encap udp local {B_ADDR} "
        f"remote {A_ADDR} udp_sport 1701 udp_dport 1701"
    )
    b.cli(
        f"add session name pwudp tunnel_id 1 session_id 20 peer_session_id {UDP_SID} "
        f"cookie {B_UDP_COOKIE} peer_cookie {A_UDP_COOKIE}"
    )
    b.cli(f"add tunnel tunnel_id 2 peer_tunnel_id {IP_TID} encap ip local {B_ADDR} remote {A_ADDR}")
    b.cli(
        f"add session name pwip tunnel_id 2 session_id 40 peer_session_id {IP_SID} "
        f"cookie {B_IP_COOKIE} peer_cookie {A_IP_COOKIE}"
    )


@pytest.fixture(scope="module")
def attack() -> Iterator[Attack]:
    with Topology() as topo:
        victim, peer, attacker = topo.add("victim"), topo.add("peer"), topo.add("attacker")
        for ns in (victim, peer):
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        topo.veth(victim, peer, f"{A_ADDR}/24", f"{B_ADDR}/24")
        topo.veth(victim, attacker, f"{A_ADDR_M}/24", f"{M_ADDR}/24")
        attacker.ip("route", "add", "10.88.1.0/24", "via", A_ADDR_M)
        a, b = Daemon(victim), Daemon(peer)
        with a, b:
            start_all([a, b])
            _configure(a, b)
            for ns, last in ((victim, "1"), (peer, "2")):
                for dev, net in (("pwudp", "10.188.1"), ("pwip", "10.188.2")):
                    ns.addr_add(dev, f"{net}.{last}/24")
                    ns.link_up(dev)
            for target in ("10.188.1.1", "10.188.2.1"):
                warm = ping(peer, target)
                assert warm.ok, f"pseudowire down before the attack: {warm}"

            fmt = {
                "a": A_ADDR,
                "b": B_ADDR,
                "sid": UDP_SID,
                "sid_ip": IP_SID,
                "b_udp_cookie": B_UDP_COOKIE,
                "b_ip_cookie": B_IP_COOKIE,
                "wrong_port_count": PEER_WRONG_PORT,
            }
            pinger = peer.popen(
                ["ping", "-n", "-i", "0.05", "-w", "3", "10.188.1.1"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            time.sleep(0.3)
            rx_before = a.counters(UDP_TID, UDP_SID)["rx_packets"]
            env = child_env()
            attackers = [
                ns.popen(
                    [sys.executable, "-c", textwrap.dedent(code.format(**fmt))],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                for ns, code in ((attacker, ATTACKER), (peer, PEER_SIDE))
            ]
            outs = [p.communicate(timeout=60) for p in attackers]
            for p, (_out, err) in zip(attackers, outs, strict=True):
                assert p.returncode == 0, f"attack script failed:\n{err}"
            rx_after = a.counters(UDP_TID, UDP_SID)["rx_packets"]
            out, _ = pinger.communicate(timeout=15)
            during = _ping_result(pinger.returncode, out)

            time.sleep(0.3)  # the daemon may still be draining its socket buffers
            result = Attack(a, b, victim, peer, json.loads(outs[0][0]), during, rx_before, rx_after)
            result.udp_ep = a.endpoint("udp", A_ADDR, 1701)
            result.ip_ep = a.endpoint("ip", A_ADDR)
            result.sessions = {s["interface"]: s for s in a.sessions()}
            result.tunnels = {t["tunnel_id"]: t for t in a.show("tunnel")}
            yield result


def _ping_result(code: int, out: str) -> PingResult:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    sent, got = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return PingResult(code, sent, got, out)


def test_attack_was_delivered(attack: Attack) -> None:
    """The datagrams did reach the victim's sockets (else every counter test is moot)."""
    total = sum(attack.sent.values())
    assert total > 3000
    received = attack.udp_ep["rx_datagrams"] + attack.ip_ep["rx_datagrams"]
    assert received >= 0.9 * total, (received, attack.sent)


def test_daemon_alive_and_quiet(attack: Attack) -> None:
    """Bad input is counted, never logged per packet and never an exception."""
    assert attack.a.alive(), attack.a.log_tail()
    log = attack.a.log()
    assert "Traceback" not in log and "ERROR" not in log and "Exception" not in log, log[-3000:]
    assert json.loads(attack.a.cli("-j show tunnel").stdout)


def test_legitimate_traffic_flowed_during_attack(attack: Attack) -> None:
    assert attack.rx_after > attack.rx_before, (attack.rx_before, attack.rx_after)
    d = attack.during
    assert d.received > 0 and d.received >= d.transmitted // 2, str(d)


@pytest.mark.parametrize("target", ["10.188.1.1", "10.188.2.1"], ids=["udp", "ip"])
def test_pseudowires_still_pass_ping(attack: Attack, target: str) -> None:
    r = ping(attack.peer, target)
    assert r.ok and r.received == r.transmitted, str(r)


# Which deliberately crafted kinds (attacker's names, plus what B's namespace sent) each
# endpoint counter must at least cover; random datagrams add to them unpredictably.
UDP_EXPECTED = {
    "rx_short": ["udp_truncated", "udp_zero"],
    "rx_bad_version": ["udp_bad_version"],
    "rx_unknown_session": ["udp_v2_unknown", "udp_v3_unknown", "udp_big_unknown"],
    "rx_wrong_peer": ["udp_spoofed", "udp_big_spoofed", "peer_wrong_port"],
    "rx_control": ["udp_control"],
}
IP_EXPECTED = {
    "rx_short": ["ip_short"],
    "rx_unknown_session": ["ip_unknown", "ip_big_unknown"],
    "rx_wrong_peer": ["ip_spoofed", "ip_big_spoofed"],
    "rx_control": ["ip_control_garbage"],
}


def _at_least(attack: Attack, kinds: list[str]) -> int:
    sent = {**attack.sent, "peer_wrong_port": PEER_WRONG_PORT}
    return int(0.9 * sum(sent[k] for k in kinds))  # a few may be lost in socket buffers


@pytest.mark.parametrize("counter", sorted(UDP_EXPECTED))
def test_udp_endpoint_counter(attack: Attack, counter: str) -> None:
    minimum = _at_least(attack, UDP_EXPECTED[counter])
    assert attack.udp_ep[counter] >= minimum > 0, (minimum, attack.udp_ep)


@pytest.mark.parametrize("counter", sorted(IP_EXPECTED))
def test_ip_endpoint_counter(attack: Attack, counter: str) -> None:
    minimum = _at_least(attack, IP_EXPECTED[counter])
    assert attack.ip_ep[counter] >= minimum > 0, (minimum, attack.ip_ep)


def test_control_plane_accounts_for_every_control_packet(attack: Attack) -> None:
    """Control-looking datagrams go to the control plane, which drops each one into exactly
    one named counter; with no listener and nothing dialled, none may create a connection
    (answering spoofed SCCRQs would make the daemon a reflector)."""
    for ep in (attack.udp_ep, attack.ip_ep):
        assert ep["rx_control_unhandled"] == 0, ep
    stats = attack.a.request("control_stats")
    plane = stats["plane"]
    rx = {k: v for k, v in plane.items() if k.startswith("rx_")}
    assert sum(rx.values()) == attack.udp_ep["rx_control"] + attack.ip_ep["rx_control"], plane
    assert stats["connections"] == 0 and not rx.get("rx_dispatched") and not rx.get(
        "rx_sccrq_accepted") and not rx.get("rx_sccrq_refused"), plane


def test_no_version_errors_over_ip(attack: Attack) -> None:
    """IP encapsulation has no version field: nothing there may count as a bad version,
    and the kernel always hands a raw IPv4 socket a well-formed IP header."""
    assert attack.ip_ep["rx_bad_version"] == 0 and attack.ip_ep["rx_invalid_ip"] == 0


@pytest.mark.parametrize("ifname", ["pwudp", "pwip"])
def test_wrong_cookies_discarded(attack: Attack, ifname: str) -> None:
    """Wrong cookies from the peer's own address and port are discarded by the session."""
    rx = attack.sessions[ifname]["stats"]["rx"]
    assert rx["cookie_discards"] >= 190, rx  # 200 sent, a few may be lost in transit
    assert rx["errors"] >= rx["cookie_discards"], rx


@pytest.mark.parametrize("tunnel_id", [UDP_TID, IP_TID])
def test_truncated_peer_packets_invalid(attack: Attack, tunnel_id: int) -> None:
    """Packets from the peer too short for the session's cookie and sublayer count as the
    tunnel's rx_invalid, as in the newest kernels."""
    rx = attack.tunnels[tunnel_id]["stats"]["rx"]
    assert rx["invalid"] > 0, rx


@pytest.mark.parametrize(
    ("ids_a", "ids_b"),
    [((UDP_TID, UDP_SID), (1, 20)), ((IP_TID, IP_SID), (2, 40))],
    ids=["udp", "ip"],
)
def test_attacker_frames_never_delivered(
    attack: Attack, ids_a: tuple[int, int], ids_b: tuple[int, int]
) -> None:
    """Spoofed frames with the right session id and cookie from the wrong sender were not
    delivered: A's session received no more than B's session really sent."""
    a_rx = attack.a.counters(*ids_a)["rx_packets"]
    b_tx = attack.b.counters(*ids_b)["tx_packets"]
    assert 0 < a_rx <= b_tx, (a_rx, b_tx)
