"""Two daemons establishing 200 sessions over a real path that loses, duplicates and reorders.

A LAC daemon (driven through the API) dials four L2TPv3 tunnels to an LNS daemon and places
50 PPP calls on each (a PPP session with no ``[[ppp]]`` profile terminates nowhere, so it
creates no device) plus one Ethernet pseudowire on the first tunnel to ping across. All of it
runs over veth links whose namespaces drop, duplicate and reorder packets:

* ``test_200_sessions_at_20_percent_loss``: nftables drops 20 % of every L2TP packet in each
  direction (``tests/support/nftloss.py``: ``numgen random mod 100 < 20 drop`` in the input
  hook of both namespaces). All 201 sessions establish on both ends, no tunnel dies, and once
  the rule is gone the pseudowire passes every ping.
* ``test_200_sessions_with_duplication_reordering_and_loss``: the path runs through a third
  namespace where :class:`Relay`, a small UDP relay in this process, holds back 20 % of the
  datagrams in each direction and releases them after later ones (reordering); nftables
  duplicates 20 % of what leaves either end (``dup to ADDR device DEV``: the copy takes the
  same path as the original) and drops 10 % of what arrives. Same requirements.

The numbers each run measured (time to establish, drops, duplicates, reorders,
retransmissions) are printed; ``docs/robustness.md`` records a run.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.daemon import Daemon, lac_lns_daemons, lac_lns_pair, ping
from tests.support.hostile import in_netns
from tests.support.netns import NetNS, Topology, wait_for
from tests.support.nftloss import duplicate, loss, require_nft

pytestmark = pytest.mark.netns

TUNNELS = 4
CALLS_PER_TUNNEL = 50
SESSIONS = TUNNELS * CALLS_PER_TUNNEL + 1  # plus the Ethernet pseudowire
ESTABLISH_TIMEOUT = 150.0

LNS_CONFIG = """
[daemon]
host_name = "lns"

[[listen]]
address = "0.0.0.0"

[defaults]
receive_window = 32
max_retries = 10
setup_timeout = 120
hello_interval = 10

[[peer]]
name = "lac"
host_name = "lac"
"""

DIAL = {"version": 3, "host_name": "lac", "receive_window": 32, "max_retries": 10,
        "setup_timeout": 120, "hello_interval": 10}


# ---------------------------------------------------------------------------------------------
# A reordering relay


@dataclass
class RelayStats:
    forwarded: int = 0
    held: int = 0


class Relay:
    """A UDP relay between two interfaces of a middle namespace that reorders.

    Datagrams from the LAC to ``front`` (``front_addr:1701``) leave from ``back_addr:1701``
    for ``lns``; the LNS's answers travel back to the LAC's last address. In each direction a
    datagram is held back with probability ``reorder`` and sent after the next 1-3 datagrams
    of that direction, or after ``hold`` seconds if none come. The sockets are made in the
    middle namespace; the relay runs in a thread of the test process.
    """

    def __init__(self, ns: NetNS, front_addr: str, back_addr: str, lns: str, *,
                 reorder: float, hold: float = 0.05, seed: int = 3931) -> None:
        self.rnd = random.Random(seed)
        self.reorder = reorder
        self.hold = hold
        self.lns = (lns, 1701)
        self.lac: tuple[str, int] | None = None

        def sock(addr: str) -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            s.bind((addr, 1701))
            s.setblocking(False)
            return s

        self.front = in_netns(ns, lambda: sock(front_addr))
        self.back = in_netns(ns, lambda: sock(back_addr))
        self.stats = {"to_lns": RelayStats(), "to_lac": RelayStats()}
        # per direction: held datagrams as [data, release after n more, deadline]
        self._held: dict[str, list[list[Any]]] = {"to_lns": [], "to_lac": []}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.front.close()
        self.back.close()

    def _out(self, direction: str) -> tuple[socket.socket, tuple[str, int] | None]:
        return (self.back, self.lns) if direction == "to_lns" else (self.front, self.lac)

    def _send(self, direction: str, data: bytes) -> None:
        sock, dst = self._out(direction)
        if dst is not None:
            try:
                sock.sendto(data, dst)
            except OSError:
                return
            self.stats[direction].forwarded += 1

    def _pass(self, direction: str, data: bytes) -> None:
        held = self._held[direction]
        for item in held:
            item[1] -= 1
        if self.rnd.random() < self.reorder:
            self.stats[direction].held += 1
            held.append([data, self.rnd.randint(1, 3), time.monotonic() + self.hold])
        else:
            self._send(direction, data)
        self._release(direction)

    def _release(self, direction: str, now: float | None = None) -> None:
        held = self._held[direction]
        keep = []
        for item in held:
            if item[1] <= 0 or (now is not None and now >= item[2]):
                self._send(direction, item[0])
            else:
                keep.append(item)
        self._held[direction] = keep

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _w, _x = select.select([self.front, self.back], [], [], 0.01)
            for s in ready:
                while True:
                    try:
                        data, addr = s.recvfrom(70000)
                    except BlockingIOError:
                        break
                    if s is self.front:
                        self.lac = addr
                        self._pass("to_lns", data)
                    else:
                        self._pass("to_lac", data)
            now = time.monotonic()
            for direction in self._held:
                self._release(direction, now)


# ---------------------------------------------------------------------------------------------
# The network and the sessions


@dataclass
class Net:
    lac_ns: NetNS
    lns_ns: NetNS
    lac: Daemon
    lns: Daemon
    lac_dev: str      # the LAC's link towards the LNS (or the relay)
    lns_dev: str
    dial_to: str      # where the LAC dials
    lac_addr: str     # the LAC's address as the LNS sees it
    lns_addr: str
    tunnels: list[int] = field(default_factory=list)
    eth_ifname: str = "pwloss"


def _sessions(d: Daemon) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = d.request("session_get", dump=True)
    return out


def _control(d: Daemon) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = d.request("control_dump")
    return out


def _transport_totals(d: Daemon) -> dict[str, int]:
    totals: dict[str, int] = {}
    for conn in _control(d):
        for k, v in conn["transport"].items():
            totals[k] = totals.get(k, 0) + int(v)
    return totals


def establish(net: Net) -> dict[str, Any]:
    """Dial the tunnels, place the calls and wait for all sessions on both ends."""
    start = time.monotonic()
    for _ in range(TUNNELS):
        res = net.lac.request("control_dial", {"peer": net.dial_to, **DIAL})
        net.tunnels.append(int(res["conn_id"]))
    for n, tid in enumerate(net.tunnels):
        net.lac.request("control_call", {"conn_id": tid, "pw_type": "ppp",
                                         "count": CALLS_PER_TUNNEL})
        if n == 0:
            net.lac.request("control_call", {"conn_id": tid, "pw_type": "eth",
                                             "ifname": net.eth_ifname})
    progress: dict[str, int] = {}

    def all_up() -> bool:
        progress["lac"] = len(_sessions(net.lac))
        progress["lns"] = len(_sessions(net.lns))
        return progress["lac"] == progress["lns"] == SESSIONS

    try:
        wait_for(all_up, timeout=ESTABLISH_TIMEOUT, interval=0.5,
                 message=f"{SESSIONS} sessions on both ends")
    except TimeoutError as exc:
        states = [(c["tunnel_id"], c["state"], c["down_reason"], len(c["calls"]))
                  for c in _control(net.lac)]
        raise AssertionError(f"{exc}: {progress}; LAC tunnels {states}\n"
                             f"{net.lac.log_tail()}\n{net.lns.log_tail()}") from None
    seconds = time.monotonic() - start
    conns = _control(net.lac)
    assert len(conns) == TUNNELS and all(c["state"] == "established" for c in conns), [
        (c["state"], c["down_reason"]) for c in conns]
    return {"seconds": round(seconds, 1), "lac": _transport_totals(net.lac),
            "lns": _transport_totals(net.lns)}


def traffic_ok(net: Net) -> None:
    lns_if = next(s["ifname"] for s in _sessions(net.lns) if s["pw_type"] == 5)
    net.lac_ns.addr_add(net.eth_ifname, "192.168.79.1/24")
    net.lac_ns.link_up(net.eth_ifname)
    net.lns_ns.addr_add(lns_if, "192.168.79.2/24")
    net.lns_ns.link_up(lns_if)
    # ARP may still be settling on a just-created TAP: a first ping to wake it.
    ping(net.lac_ns, "192.168.79.2", count=1, wait=2)
    result = ping(net.lac_ns, "192.168.79.2", count=20, interval=0.05, wait=2)
    assert result.ok and result.received == result.transmitted, result


@pytest.fixture
def direct() -> Iterator[Net]:
    """lac (10.79.0.1) — lns (10.79.0.2) on one veth."""
    require_nft()
    with lac_lns_pair("10.79.0.1/24", "10.79.0.2/24", LNS_CONFIG, ipv6="off") as p:
        yield Net(p.lac_ns, p.lns_ns, p.lac, p.lns, p.lac_dev, p.lns_dev, dial_to="10.79.0.2",
                  lac_addr="10.79.0.1", lns_addr="10.79.0.2")


@pytest.fixture
def relayed() -> Iterator[tuple[Net, Relay]]:
    """lac (10.79.1.1) — mid (10.79.1.2 | 10.79.2.2) — lns (10.79.2.1), a Relay in mid."""
    require_nft()
    with Topology() as topo:
        a, m, b = topo.add("lac"), topo.add("mid"), topo.add("lns")
        for ns in (a, m, b):
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        dev_a, _ = topo.veth(a, m, "10.79.1.1/24", "10.79.1.2/24")
        _, dev_b = topo.veth(m, b, "10.79.2.2/24", "10.79.2.1/24")
        with lac_lns_daemons(a, b, LNS_CONFIG) as p, \
                Relay(m, "10.79.1.2", "10.79.2.2", "10.79.2.1", reorder=0.2) as relay:
            yield Net(a, b, p.lac, p.lns, dev_a, dev_b, dial_to="10.79.1.2",
                      lac_addr="10.79.2.2", lns_addr="10.79.2.2"), relay


# ---------------------------------------------------------------------------------------------
# The tests


def test_200_sessions_at_20_percent_loss(direct: Net) -> None:
    net = direct
    with loss(net.lac_ns, 20) as lac_drops, loss(net.lns_ns, 20) as lns_drops:
        result = establish(net)
        result["dropped"] = {"at_lac": lac_drops.packets, "at_lns": lns_drops.packets}
    print(f"\n20 % loss: {result}")
    assert result["dropped"]["at_lac"] > 0 and result["dropped"]["at_lns"] > 0
    assert result["lac"]["retransmits"] + result["lns"]["retransmits"] > 0
    # The loss is gone: every session is still there and the pseudowire passes every ping.
    assert len(_sessions(net.lac)) == len(_sessions(net.lns)) == SESSIONS
    traffic_ok(net)


def test_200_sessions_with_duplication_reordering_and_loss(relayed: tuple[Net, Relay]
                                                           ) -> None:
    net, relay = relayed
    with duplicate(net.lac_ns, "10.79.1.2", net.lac_dev, 20) as lac_dup, \
            duplicate(net.lns_ns, "10.79.2.2", net.lns_dev, 20) as lns_dup, \
            loss(net.lac_ns, 10) as lac_drops, loss(net.lns_ns, 10) as lns_drops:
        result = establish(net)
        result["duplicated"] = {"by_lac": lac_dup.packets, "by_lns": lns_dup.packets}
        result["dropped"] = {"at_lac": lac_drops.packets, "at_lns": lns_drops.packets}
    result["relay"] = {k: vars(v) for k, v in relay.stats.items()}
    print(f"\nduplication, reordering and loss: {result}")
    assert result["duplicated"]["by_lac"] > 0 and result["duplicated"]["by_lns"] > 0
    assert relay.stats["to_lns"].held > 0 and relay.stats["to_lac"].held > 0
    assert result["lac"]["rx_duplicates"] + result["lns"]["rx_duplicates"] > 0
    assert result["lac"]["rx_out_of_order"] + result["lns"]["rx_out_of_order"] > 0
    assert len(_sessions(net.lac)) == len(_sessions(net.lns)) == SESSIONS
    traffic_ok(net)
