"""The namespace test hosts themselves: the selftest topology routes, and nothing leaks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from tests.support.netns import (
    NS_PREFIX,
    SELFTEST,
    STATE_DIR,
    NetNS,
    SelftestTopology,
    Topology,
    child_env,
    list_namespaces,
    sweep_stale_namespaces,
    veth,
    wait_for,
)

NetnsFactory = Callable[[str], NetNS]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still has a pid but is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_wait_for_returns_value_or_times_out() -> None:
    calls = iter([0, None, "ready"])
    assert wait_for(lambda: next(calls), timeout=2, interval=0.01) == "ready"
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="the moon"):
        wait_for(lambda: False, timeout=0.1, interval=0.01, message="the moon")
    assert time.monotonic() - start < 1.0


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_selftest_topology_routes_across_router(selftest_topo: SelftestTopology) -> None:
    a = SELFTEST
    h1, rt, h2 = selftest_topo.host1, selftest_topo.router, selftest_topo.host2
    for ns, role in ((h1, "host1"), (rt, "router"), (h2, "host2")):
        assert re.fullmatch(rf"{NS_PREFIX}{role}-[0-9a-f]{{6}}", ns.name)

    # One routed hop: TTL/hop limit 64 arrives as 63.
    for src, dst in (
        (h1, a.host2_eth4),
        (h2, a.host1_eth4),
        (h1, a.host2_eth6),
        (h2, a.host1_eth6),
    ):
        out = src.run(["ping", "-c1", "-W2", dst]).stdout
        assert "ttl=63" in out, out

    # The loopback addresses are there but not routed yet: that is what the L2TP tunnel is for,
    # and the unreachable default makes the failure immediate.
    addrs = {i["ifname"]: i for i in json.loads(h1.run("ip -j addr show").stdout)}
    lo = {(x["local"], x["prefixlen"]) for x in addrs["lo"]["addr_info"]}
    assert {(a.host1_lo4, 32), (a.host1_lo6, 128)} <= lo
    for dst in (a.host2_lo4, a.host2_lo6):
        res = h1.run(["ping", "-c1", "-W1", dst], check=False)
        assert res.returncode != 0
        assert "no route to host" in res.stderr.lower() or "unreachable" in res.stderr.lower()
    for family in ("-4", "-6"):
        routes = h1.run(["ip", family, "route", "show", "default"]).stdout
        assert "unreachable default" in routes and "metric 8192" in routes

    assert rt.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert rt.run("cat /proc/sys/net/ipv6/conf/all/forwarding").stdout.strip() == "1"
    eth = {i["ifname"] for i in json.loads(rt.run("ip -j link show").stdout)}
    assert eth == {"lo", "eth1", "eth2"}


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_veth_ipv6_and_mtu(netns_factory: NetnsFactory) -> None:
    left, right = netns_factory("left"), netns_factory("right")
    dev_l, dev_r = veth(
        left, right, "2001:db8:77::1/64", ["2001:db8:77::2/64", "10.77.0.2/24"], mtu=1400
    )
    link = json.loads(left.run(["ip", "-j", "link", "show", "dev", dev_l]).stdout)[0]
    assert link["mtu"] == 1400 and "UP" in link["flags"]
    assert dev_r not in left.run("ip -o link").stdout  # each end lives only in its namespace
    left.run(["ping", "-c1", "-W2", "2001:db8:77::2"])
    right.run(["ping", "-c1", "-W2", "10.77.0.2"])


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_close_kills_processes_and_deletes_namespace() -> None:
    ns = NetNS("procs")
    try:
        assert ns.name in list_namespaces()
        assert (STATE_DIR / ns.name).read_text().split()[0] == str(os.getpid())
        # A tracked process with a child of its own, and a stray that left our session.
        tracked = ns.popen(
            ["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, text=True
        )
        assert tracked.stdout is not None
        grandchild = int(tracked.stdout.readline())
        stray = int(ns.run(["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"]).stdout)
        assert {tracked.pid, grandchild, stray} <= set(ns.pids())
    finally:
        ns.close()
    ns.close()  # idempotent
    assert ns.name not in list_namespaces()
    assert not (STATE_DIR / ns.name).exists()
    assert tracked.returncode is not None
    wait_for(lambda: not _alive(grandchild) and not _alive(stray), timeout=5)


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_failed_build_tears_everything_down() -> None:
    names: list[str] = []
    with pytest.raises(ValueError), Topology() as topo:
        a, b = topo.add("a"), topo.add("b")
        names = [a.name, b.name]
        topo.veth(a, b, "not-an-address")
    assert names and not set(names) & set(list_namespaces())


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_sweeper_removes_namespaces_of_dead_owners(netns_factory: NetnsFactory) -> None:
    mine = netns_factory("live")
    code = (
        "import os, signal\n"
        "from tests.support.netns import NetNS\n"
        "ns = NetNS('stale')\n"
        "print(ns.name, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=30
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    stale = proc.stdout.strip()
    try:
        assert stale in list_namespaces()  # the killed owner could not clean up
        removed = sweep_stale_namespaces()
        assert stale in removed
        assert mine.name not in removed
        assert stale not in list_namespaces()
        assert mine.name in list_namespaces()
        assert not (STATE_DIR / stale).exists()
    finally:
        if stale in list_namespaces():
            subprocess.run(["ip", "netns", "del", stale], check=False)
            (STATE_DIR / stale).unlink(missing_ok=True)
