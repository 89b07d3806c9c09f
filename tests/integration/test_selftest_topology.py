"""The kernel's L2TP selftest (``tools/testing/selftests/net/l2tp.sh``), run with pyl2tp.

Same three namespaces (host-1, router, host-2), same addresses and routes, and on the hosts the
selftest's own ``ip l2tp`` command lines with ``pyl2tp`` in place of ``ip l2tp``: if pyl2tp is
a drop-in for the kernel, the selftest's pings must pass unchanged. The selftest only uses IP
encapsulation; the same lines with ``encap udp`` are run as a second configuration, and on top
come the checks of the extended (l2tp-ktest) variant: large pings, 4- and 8-byte cookies, a
cookie mismatch that must stop traffic, and sequencing.

Speed: the topology and the two daemons are built once per module and the selftest's tunnels
once per encapsulation (a module-scoped parametrized fixture, so pytest runs all tests of one
encapsulation together). Tests that need other session options add sessions of their own to
the selftest's tunnels, with their own ids, names and inner subnets, and delete them after.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.support.daemon import Daemon, PingResult, ping, start_all, wait_counter
from tests.support.netns import NetNS, SelftestTopology, selftest_topology, wait_for

pytestmark = pytest.mark.netns

# The selftest's commands, verbatim but for "pyl2tp" and the encapsulation words.
ENCAP = {"ip": "encap ip", "udp": "encap udp udp_sport 1701 udp_dport 1701"}

SETUP_L2TP_IPV4: dict[str, Any] = {
    "host1": [
        "pyl2tp add tunnel tunnel_id 1041 peer_tunnel_id 1042 {encap} local 10.1.1.1 "
        "remote 10.1.2.1",
        "pyl2tp add session name l2tp4 tunnel_id 1041 session_id 1041 peer_session_id 1042",
        "ip link set dev l2tp4 up",
        "ip addr add dev l2tp4 172.16.1.1 peer 172.16.1.2",
    ],
    "host2": [
        "pyl2tp add tunnel tunnel_id 1042 peer_tunnel_id 1041 {encap} local 10.1.2.1 "
        "remote 10.1.1.1",
        "pyl2tp add session name l2tp4 tunnel_id 1042 session_id 1042 peer_session_id 1041",
        "ip link set dev l2tp4 up",
        "ip addr add dev l2tp4 172.16.1.2 peer 172.16.1.1",
    ],
    "routes": [
        ("host1", "ip ro add 172.16.101.2/32 via 172.16.1.2"),
        ("host2", "ip ro add 172.16.101.1/32 via 172.16.1.1"),
    ],
}
SETUP_L2TP_IPV6: dict[str, Any] = {
    "host1": [
        "pyl2tp add tunnel tunnel_id 1061 peer_tunnel_id 1062 {encap} local 2001:db8:1::1 "
        "remote 2001:db8:2::1",
        "pyl2tp add session name l2tp6 tunnel_id 1061 session_id 1061 peer_session_id 1062",
        "ip link set dev l2tp6 up",
        "ip addr add dev l2tp6 fc00:1::1 peer fc00:1::2",
    ],
    "host2": [
        "pyl2tp add tunnel tunnel_id 1062 peer_tunnel_id 1061 {encap} local 2001:db8:2::1 "
        "remote 2001:db8:1::1",
        "pyl2tp add session name l2tp6 tunnel_id 1062 session_id 1062 peer_session_id 1061",
        "ip link set dev l2tp6 up",
        "ip addr add dev l2tp6 fc00:1::2 peer fc00:1::1",
    ],
    "routes": [
        ("host1", "ip -6 ro add fc00:101::2/128 via fc00:1::2"),
        ("host2", "ip -6 ro add fc00:101::1/128 via fc00:1::1"),
    ],
}


@dataclass(frozen=True)
class Family:
    """What differs between the selftest's IPv4 and IPv6 halves."""

    version: int
    tunnels: tuple[int, int]  # host-1's and host-2's tunnel ids
    dev: str
    peer_inner: str  # host-2's address on the pseudowire
    lo: tuple[str, str]  # host-1's and host-2's loopback addresses


FAMILIES = {
    4: Family(4, (1041, 1042), "l2tp4", "172.16.1.2", ("172.16.101.1", "172.16.101.2")),
    6: Family(6, (1061, 1062), "l2tp6", "fc00:1::2", ("fc00:101::1", "fc00:101::2")),
}

# Counts fragments of outer (UDP or L2TP/IP) packets the router forwards: inner fragments
# are inside the tunnel payload and invisible here, so a non-zero count proves the outer
# packet itself was fragmented.
ROUTER_NFT = """
table inet pyl2tp_frag {
  counter outer4 { }
  counter outer6 { }
  chain forwarded {
    type filter hook forward priority 0; policy accept;
    ip protocol { 17, 115 } ip frag-off & 0x3fff != 0 counter name "outer4"
    ip6 nexthdr 44 counter name "outer6"
  }
}
"""


@dataclass
class Hosts:
    topo: SelftestTopology
    d1: Daemon
    d2: Daemon

    @property
    def host1(self) -> NetNS:
        return self.topo.host1

    @property
    def host2(self) -> NetNS:
        return self.topo.host2


@dataclass
class Rig(Hosts):
    encap: str


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    """The selftest topology with a pyl2tp daemon on host-1 and host-2 (not the router).

    Module-scoped rather than the function-scoped ``selftest_topo`` fixture: building it for
    every one of these tests would cost most of the time budget.
    """
    with selftest_topology() as topo:
        d1, d2 = Daemon(topo.host1), Daemon(topo.host2)
        try:
            start_all([d1, d2])
            topo.router.run(["nft", "-f", "-"], input=ROUTER_NFT)
            yield Hosts(topo, d1, d2)
        finally:
            d1.close()
            d2.close()


def _run_selftest_lines(h: Hosts, setup: dict[str, Any], encap: str) -> None:
    for role, daemon in (("host1", h.d1), ("host2", h.d2)):
        ns = h.topo[role]
        for line in setup[role]:
            argv = shlex.split(line.format(encap=ENCAP[encap]))
            if argv[0] == "pyl2tp":
                daemon.cli(argv[1:])
            else:
                ns.run(argv)
    for role, line in setup["routes"]:
        h.topo[role].run(shlex.split(line))


@pytest.fixture(scope="module", params=sorted(ENCAP))
def rig(request: pytest.FixtureRequest, hosts: Hosts) -> Iterator[Rig]:
    """The selftest's tunnels, sessions, addresses and routes with one encapsulation."""
    encap: str = request.param
    try:
        _run_selftest_lines(hosts, SETUP_L2TP_IPV4, encap)
        _run_selftest_lines(hosts, SETUP_L2TP_IPV6, encap)
        yield Rig(hosts.topo, hosts.d1, hosts.d2, encap)
    finally:
        # Deleting a tunnel deletes its sessions, their devices and with them the routes.
        for daemon, tids in ((hosts.d1, (1041, 1061)), (hosts.d2, (1042, 1062))):
            for tid in tids:
                daemon.cli(["del", "tunnel", "tunnel_id", str(tid)], check=False)


@pytest.fixture(autouse=True)
def _daemon_logs(hosts: Hosts) -> Iterator[None]:
    """Print what the daemons logged during this test (pytest shows it only on failure), and
    fail the test if one of them died."""
    marks = [len(d.log()) for d in (hosts.d1, hosts.d2)]
    yield
    for d, mark in zip((hosts.d1, hosts.d2), marks, strict=True):
        print(f"\n----- daemon log during this test, {d.ns.name} -----\n{d.log()[mark:]}")
    dead = [d.ns.name for d in (hosts.d1, hosts.d2) if not d.alive()]
    assert not dead, f"pyl2tp daemon died in {dead}"


def _rx(d: Daemon, ifname: str) -> dict[str, int]:
    return d.session_stats(ifname=ifname)


def _assert_all_replied(r: PingResult) -> None:
    assert r.ok and r.received == r.transmitted, str(r)


# -- the selftest's own checks ----------------------------------------------------------------


@pytest.mark.parametrize("family", [4, 6])
def test_basic_ping(rig: Rig, family: int) -> None:
    """``IPv4/IPv6 basic L2TP tunnel``: the peer's pseudowire address answers, and both
    sessions count the frames (the only path to 172.16.1.2 / fc00:1::2 is the pseudowire)."""
    f = FAMILIES[family]
    before1, before2 = _rx(rig.d1, f.dev), _rx(rig.d2, f.dev)
    r = ping(rig.host1, f.peer_inner)
    _assert_all_replied(r)
    after1, after2 = _rx(rig.d1, f.dev), _rx(rig.d2, f.dev)
    assert after2["packets"] - before2["packets"] >= r.received, (before2, after2)
    assert after1["packets"] - before1["packets"] >= r.received, (before1, after1)
    assert after1["tx_packets"] - before1["tx_packets"] >= r.transmitted
    for after in (after1, after2):
        assert after["cookie_discards"] == 0 and after["seq_discards"] == 0, after


@pytest.mark.parametrize("family", [4, 6])
def test_route_through_tunnel(rig: Rig, family: int) -> None:
    """``route through L2TP tunnel``: loopback to loopback, routed via the pseudowire peer."""
    f = FAMILIES[family]
    before = _rx(rig.d2, f.dev)["packets"]
    r = ping(rig.host1, f.lo[1], source=f.lo[0])
    _assert_all_replied(r)
    assert _rx(rig.d2, f.dev)["packets"] - before >= r.received


def _snapshot_nft(router: NetNS, name: str) -> int:
    out = router.run(["nft", "-j", "list", "counter", "inet", "pyl2tp_frag", name]).stdout
    for item in json.loads(out)["nftables"]:
        if "counter" in item:
            return int(item["counter"]["packets"])
    raise AssertionError(f"no counter {name} in {out}")


def _mtu(ns: NetNS, dev: str) -> int:
    return int(json.loads(ns.ip("-j", "link", "show", "dev", dev).stdout)[0]["mtu"])


@pytest.mark.parametrize("family", [4, 6])
def test_large_ping_fragments_outer_packet(rig: Rig, family: int) -> None:
    """1600-byte pings, first as l2tp-ktest sends them (the pseudowire's MTU, derived from the
    path MTU, makes the *inner* stack fragment), then with the pseudowire MTU raised to 1500 so
    that full-size frames no longer fit the path and the *outer* packets must be fragmented
    by the sender and reassembled by the peer; the router's counter of forwarded outer
    fragments proves that happened."""
    f = FAMILIES[family]
    _assert_all_replied(ping(rig.host1, f.peer_inner, size=1600))

    counter = f"outer{family}"
    old = (_mtu(rig.host1, f.dev), _mtu(rig.host2, f.dev))
    assert max(old) < 1500, f"pseudowire MTU should leave room for the encapsulation: {old}"
    before = _snapshot_nft(rig.topo.router, counter)
    try:
        for ns in (rig.host1, rig.host2):
            ns.ip("link", "set", "dev", f.dev, "mtu", "1500")
        r = ping(rig.host1, f.peer_inner, size=1600)
    finally:
        for ns, mtu in zip((rig.host1, rig.host2), old, strict=True):
            ns.ip("link", "set", "dev", f.dev, "mtu", str(mtu))
    _assert_all_replied(r)
    fragments = _snapshot_nft(rig.topo.router, counter) - before
    # Per echo: the request's and the reply's full-size inner fragment each become >= 2 outer
    # fragments.
    assert fragments >= 4 * r.received, f"router forwarded {fragments} outer fragments; {r}"


# -- session options: cookies, sequencing --------------------------------------------------


@dataclass(frozen=True)
class ExtraPair:
    """A session pair added to the selftest's tunnels for one test."""

    name: str
    sids: tuple[int, int]
    inner: tuple[str, str]


AddPair = Callable[[int, str, int, str, str], ExtraPair]


@pytest.fixture
def add_pair(rig: Rig) -> Iterator[AddPair]:
    """Add a session pair (own ids, device name and inner /32 or /128 pair) to the selftest
    tunnel of one outer family; everything is deleted after the test.

    ``add(family, name, n, opts1, opts2)``: session ids ``n*1000+41/42`` (v4) or ``+61/62``
    (v6), inner addresses ``172.16.<n>.1/2`` or ``fc00:<n>::1/2``; ``opts1``/``opts2`` are
    appended to host-1's / host-2's ``add session`` lines.
    """
    created: list[tuple[Daemon, int, int]] = []

    def add(family: int, name: str, n: int, opts1: str, opts2: str) -> ExtraPair:
        f = FAMILIES[family]
        base = n * 1000 + (40 if family == 4 else 60)
        sids = (base + 1, base + 2)
        inner = (
            (f"172.16.{n}.1", f"172.16.{n}.2") if family == 4 else (f"fc00:{n}::1", f"fc00:{n}::2")
        )
        sides = ((rig.d1, rig.host1, 0, opts1), (rig.d2, rig.host2, 1, opts2))
        for d, ns, i, opts in sides:
            d.cli(
                f"add session name {name} tunnel_id {f.tunnels[i]} session_id {sids[i]} "
                f"peer_session_id {sids[1 - i]} {opts}"
            )
            created.append((d, f.tunnels[i], sids[i]))
            ns.ip("link", "set", "dev", name, "up")
            ns.ip("addr", "add", "dev", name, inner[i], "peer", inner[1 - i])
        return ExtraPair(name, sids, inner)

    try:
        yield add
    finally:
        for d, tid, sid in created:
            d.cli(["del", "session", "tunnel_id", str(tid), "session_id", str(sid)], check=False)


COOKIES_4 = ("01234567", "89abcdef")
COOKIES_8 = ("0123456789abcdef", "fedcba9876543210")


@pytest.mark.parametrize(
    ("family", "cookies"),
    [pytest.param(4, COOKIES_4, id="v4-4byte"), pytest.param(6, COOKIES_8, id="v6-8byte")],
)
def test_cookies(rig: Rig, add_pair: AddPair, family: int, cookies: tuple[str, str]) -> None:
    """Mirrored cookies (each side's ``cookie`` is the other's ``peer_cookie``) carry traffic,
    and both sides report the cookies they were given."""
    c1, c2 = cookies
    pair = add_pair(
        family, "ck", 3, f"cookie {c1} peer_cookie {c2}", f"cookie {c2} peer_cookie {c1}"
    )
    _assert_all_replied(ping(rig.host1, pair.inner[1]))
    s1, s2 = rig.d1.session(ifname="ck"), rig.d2.session(ifname="ck")
    assert (s1["cookie"], s1["peer_cookie"]) == (c1, c2), s1
    assert (s2["cookie"], s2["peer_cookie"]) == (c2, c1), s2
    for s in (s1, s2):
        assert s["stats"]["rx"]["packets"] >= 2 and s["stats"]["rx"]["cookie_discards"] == 0, s


@pytest.mark.parametrize(
    ("family", "opts1", "opts2"),
    [
        # host-1 expects 11112222, host-2 sends 89abcdef.
        pytest.param(
            4,
            "cookie 01234567 peer_cookie 11112222",
            "cookie 89abcdef peer_cookie 01234567",
            id="v4-wrong-value",
        ),
        # host-1 expects an 8-byte cookie, host-2 sends 4 bytes.
        pytest.param(
            6,
            "cookie 01234567 peer_cookie 89abcdef11111111",
            "cookie 89abcdef peer_cookie 01234567",
            id="v6-wrong-length",
        ),
    ],
)
def test_cookie_mismatch_stops_traffic(
    rig: Rig, add_pair: AddPair, family: int, opts1: str, opts2: str
) -> None:
    """host-1's peer_cookie does not match what host-2 sends: host-2 still receives host-1's
    frames (its rx_packets grows) but every frame back is discarded by host-1, which counts
    rx_cookie_discards and never rx_packets, so the ping fails."""
    pair = add_pair(family, "ckbad", 4, opts1, opts2)
    r = ping(rig.host1, pair.inner[1], count=3, wait=1, deadline=1)
    assert not r.ok, f"ping passed despite a cookie mismatch: {r}"
    # host-2 got host-1's ARP / neighbour solicitations and answered them...
    wait_counter(lambda: rig.d2.session_stats(ifname="ckbad"), "tx_packets", 0)
    s2 = rig.d2.session_stats(ifname="ckbad")
    assert s2["packets"] > 0 and s2["cookie_discards"] == 0, s2
    # ... and host-1 threw every answer away.
    wait_counter(lambda: rig.d1.session_stats(ifname="ckbad"), "cookie_discards", 0)
    s1 = rig.d1.session_stats(ifname="ckbad")
    assert s1["packets"] == 0, s1
    assert s1["errors"] >= s1["cookie_discards"] > 0, s1


_SESSION_RE = re.compile(r"^  SESSION (\d+), peer (\d+)", re.M)
_NRNS_RE = re.compile(r"^   nr (\d+), ns (\d+)$", re.M)


def _nr_ns(d: Daemon, sid: int) -> tuple[int, int]:
    """(nr, ns) of session ``sid`` from ``pyl2tp debug``."""
    text = d.debug()
    starts = [(m.start(), int(m.group(1))) for m in _SESSION_RE.finditer(text)]
    for i, (pos, found) in enumerate(starts):
        if found != sid:
            continue
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        m = _NRNS_RE.search(text, pos, end)
        assert m, f"no nr/ns line for session {sid} in:\n{text[pos:end]}"
        return int(m.group(1)), int(m.group(2))
    raise AssertionError(f"session {sid} not in pyl2tp debug:\n{text}")


@pytest.mark.parametrize("family", [4, 6])
def test_sequencing(rig: Rig, add_pair: AddPair, family: int) -> None:
    """``seq both`` on both sides: traffic passes, nothing is discarded for sequencing, and
    ``pyl2tp debug`` shows each side's ns advancing and the peer's nr following it."""
    pair = add_pair(family, "sq", 5, "seq both", "seq both")
    sid1, sid2 = pair.sids
    # Link-up chatter (IPv6 router solicitations, MLD) may already have moved the numbers.
    nr1, ns1 = _nr_ns(rig.d1, sid1)
    nr2, ns2 = _nr_ns(rig.d2, sid2)
    _assert_all_replied(ping(rig.host1, pair.inner[1], count=3))

    def settled() -> tuple[int, int, int, int] | None:
        # Every frame one side numbered was received in order by the other.
        n1, s1 = _nr_ns(rig.d1, sid1)
        n2, s2 = _nr_ns(rig.d2, sid2)
        return (n1, s1, n2, s2) if (n2, n1) == (s1, s2) else None

    final = wait_for(settled, timeout=3, message="nr == peer ns")
    assert final is not None
    last_nr1, last_ns1, last_nr2, last_ns2 = final
    assert last_ns1 >= ns1 + 3 and last_ns2 >= ns2 + 3, (ns1, ns2, last_ns1, last_ns2)
    assert last_nr1 >= nr1 + 3 and last_nr2 >= nr2 + 3
    for d in (rig.d1, rig.d2):
        s = d.session(ifname="sq")
        assert "send_seq" in s and "recv_seq" in s, s
        assert s["stats"]["rx"]["seq_discards"] == 0 and s["stats"]["rx"]["errors"] == 0, s
