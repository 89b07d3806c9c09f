"""PPP over L2TP between pyl2tp daemons in network namespaces: LAC/client, LNS and a switch.

The LNS terminates PPP with a ``[[ppp]]`` profile (CHAP-MD5 then PAP against a secrets file,
addresses from a pool, IPv6 link-local addresses from IPV6CP); the LAC is the L2TP VPN
client, whose own profile authenticates and takes the address it is given. Pings must cross
the ``pppN`` interfaces both ways, over IPv4 and IPv6, and tearing the session down from
either side must remove both interfaces. The switching test adds a middle daemon whose
``[[peer]]`` switches each incoming PPP session onto a tunnel to the LNS, relaying frames
without terminating PPP: the LAC's ping crosses both tunnels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.daemon import Daemon, ping, start_all, write_temp
from tests.support.netns import NetNS, Topology, wait_for

pytestmark = pytest.mark.netns

SECRETS = """\
# client  server  secret  address
alice     *       "in wonderland"
bob       *       builder  10.73.9.99
"""

LNS_CONFIG = """
[daemon]
host_name = "lns"

[[listen]]
address = "0.0.0.0"

[[ppp]]
name = "lns"
auth = ["chap-md5", "pap"]
secrets = "{secrets}"
local_ip = "10.73.9.1"
pool = "10.73.9.10-10.73.9.20"
dns = ["10.73.9.53"]
ipv6 = true
echo_interval = 2

[[peer]]
name = "any"
ppp = "lns"
"""

LAC_CONFIG = """
[daemon]
host_name = "lac"

[[ppp]]
name = "alice"
user = "alice"
password = "in wonderland"
request_dns = true
ipv6 = true
echo_interval = 2

[[ppp]]
name = "bob-pap"
user = "bob"
password = "builder"
peer_auth = ["pap"]
ifname = "vpn%d"

[[ppp]]
name = "mallory"
user = "alice"
password = "guess"

[[tunnel]]
name = "to-lns"
peer = "{peer}"
version = 2
ppp = "alice"

[[tunnel.session]]
pw_type = "ppp"
"""


def ppp_links(d: Daemon) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(d.cli(["ppp", "show", "-j"]).stdout)
    return result


def wait_links(d: Daemon, count: int, *, v6: bool = False) -> list[dict[str, Any]]:
    def ready() -> bool:
        up = [p for p in ppp_links(d) if p.get("ipv4_up") and (p.get("ipv6_up") or not v6)]
        return len(up) >= count
    wait_for(ready, timeout=20, message=f"{count} PPP link(s) up on {d!r}\n{d.log()}")
    return ppp_links(d)


def ifnames(ns: NetNS, prefix: str) -> set[str]:
    out = ns.ip("-o", "link", "show").stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
            if line.split(":")[1].strip().startswith(prefix)}


class Net:
    def __init__(self, lac_ns: NetNS, lns_ns: NetNS, lac: Daemon, lns: Daemon) -> None:
        self.lac_ns, self.lns_ns, self.lac, self.lns = lac_ns, lns_ns, lac, lns


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    with Topology() as topo:
        a, b = topo.add("plac"), topo.add("plns")
        topo.veth(a, b, "10.73.0.1/24", "10.73.0.2/24")
        secrets = write_temp(SECRETS)
        lns_cfg = write_temp(LNS_CONFIG.format(secrets=secrets))
        lac_cfg = write_temp(LAC_CONFIG.format(peer="10.73.0.2"))
        lns = Daemon(b, extra_args=["--config", lns_cfg])
        lac = Daemon(a, extra_args=["--config", lac_cfg])
        try:
            start_all([lns, lac])
            yield Net(a, b, lac, lns)
        finally:
            lac.close()
            lns.close()
            for path in (secrets, lns_cfg, lac_cfg):
                os.unlink(path)


def test_client_gets_pool_address_dns_and_pings_both_families(net: Net) -> None:
    (lac_link,) = wait_links(net.lac, 1, v6=True)
    (lns_link,) = wait_links(net.lns, 1, v6=True)
    assert lns_link["user"] == "alice"
    assert lac_link["local"] == "10.73.9.10" and lac_link["peer"] == "10.73.9.1"
    assert lns_link["local"] == "10.73.9.1" and lns_link["peer"] == "10.73.9.10"
    assert lac_link["dns"] == ["10.73.9.53"]
    assert lac_link["ifname"] == "ppp0" and lns_link["ifname"] == "ppp0"
    assert ping(net.lac_ns, "10.73.9.1", count=3).ok
    assert ping(net.lns_ns, "10.73.9.10", count=3).ok
    peer6 = lac_link.get("local6")
    assert peer6 is not None and peer6.startswith("fe80::")
    assert ping(net.lns_ns, f"{peer6}%ppp0", count=3).ok
    assert ping(net.lac_ns, f"{lns_link['local6']}%ppp0", count=3).ok


def _conn_id(d: Daemon) -> int:
    conns = json.loads(d.cli(["control", "show", "-j"]).stdout)
    return int(conns[0]["tunnel_id"])


def test_pap_fallback_fixed_address_and_teardown_from_either_side(net: Net) -> None:
    wait_links(net.lac, 1)
    tid = _conn_id(net.lac)
    out = net.lac.cli(["call", "tunnel_id", str(tid), "ppp", "bob-pap"]).stdout
    sid = int(out.split()[3])
    wait_for(lambda: "vpn0" in ifnames(net.lac_ns, "vpn") and any(
        p.get("ipv4_up") for p in ppp_links(net.lac) if p["ifname"] == "vpn0"),
        timeout=20, message="bob's PPP link")
    bob = next(p for p in ppp_links(net.lns) if p.get("user") == "bob")
    assert bob["peer"] == "10.73.9.99"  # the secrets file's fixed address, not the pool
    assert ping(net.lac_ns, "10.73.9.1", count=2, source="10.73.9.99").ok
    lns_before = ifnames(net.lns_ns, "ppp")
    assert len(lns_before) == 2

    # LAC side hangs up: CDN, both PPP interfaces of that session go.
    net.lac.cli(["hangup", "tunnel_id", str(tid), "session_id", str(sid)])
    wait_for(lambda: "vpn0" not in ifnames(net.lac_ns, "vpn")
             and len(ifnames(net.lns_ns, "ppp")) == 1, timeout=10,
             message="bob's interfaces to go")

    # And again, hung up by the LNS this time.
    net.lac.cli(["call", "tunnel_id", str(tid), "ppp", "bob-pap"])
    wait_for(lambda: len(ifnames(net.lns_ns, "ppp")) == 2 and "vpn0" in
             ifnames(net.lac_ns, "vpn"), timeout=20, message="bob again")
    bob = next(p for p in ppp_links(net.lns) if p.get("user") == "bob")
    net.lns.cli(["hangup", "tunnel_id", str(bob["tunnel_id"]), "session_id",
                 str(bob["session_id"])])
    wait_for(lambda: "vpn0" not in ifnames(net.lac_ns, "vpn")
             and len(ifnames(net.lns_ns, "ppp")) == 1, timeout=10,
             message="bob's interfaces to go after the LNS hung up")
    # alice's session is untouched
    assert ping(net.lac_ns, "10.73.9.1", count=2).ok


def test_wrong_password_is_refused_and_the_session_cleared(net: Net) -> None:
    wait_links(net.lac, 1)
    tid = _conn_id(net.lac)
    out = net.lac.cli(["call", "tunnel_id", str(tid), "ppp", "mallory"]).stdout
    sid = int(out.split()[3])

    def gone() -> bool:
        conn = json.loads(net.lac.cli(["control", "show", "-j"]).stdout)[0]
        return all(c["session_id"] != sid for c in conn["calls"])
    wait_for(gone, timeout=30, message="the refused session to be cleared")
    assert "refused" in net.lns.log() or "authentication failed" in net.lns.log()
    assert len(ifnames(net.lns_ns, "ppp")) == 1


SWITCH_CONFIG = """
[daemon]
host_name = "switch"

[[listen]]
address = "10.74.0.2"

[[peer]]
name = "lacs"
switch_to = "upstream"

[[tunnel]]
name = "upstream"
peer = "10.74.1.2"
local = "10.74.1.1"
version = 2
"""


def test_switch_relays_ppp_between_two_tunnels() -> None:
    with Topology() as topo:
        lac_ns, sw_ns, lns_ns = topo.add("slac"), topo.add("ssw"), topo.add("slns")
        topo.veth(lac_ns, sw_ns, "10.74.0.1/24", "10.74.0.2/24")
        topo.veth(sw_ns, lns_ns, "10.74.1.1/24", "10.74.1.2/24")
        secrets = write_temp(SECRETS)
        paths = [secrets, write_temp(LNS_CONFIG.format(secrets=secrets)), write_temp(SWITCH_CONFIG),
                 write_temp(LAC_CONFIG.format(peer="10.74.0.2"))]
        lns = Daemon(lns_ns, extra_args=["--config", paths[1]])
        switch = Daemon(sw_ns, extra_args=["--config", paths[2]])
        lac = Daemon(lac_ns, extra_args=["--config", paths[3]])
        try:
            start_all([lns, switch])
            wait_for(lambda: any(c["state"] == "established" for c in json.loads(
                switch.cli(["control", "show", "-j"]).stdout)), timeout=15,
                message="the switch's upstream tunnel")
            lac.start()
            (lac_link,) = wait_links(lac, 1)
            (lns_link,) = wait_links(lns, 1)
            assert lns_link["user"] == "alice"
            assert lac_link["peer"] == "10.73.9.1"
            assert ping(lac_ns, "10.73.9.1", count=3).ok
            (switched,) = json.loads(switch.cli(["ppp", "show", "-j"]).stdout)
            assert "switched_to" in switched and switched["frames"] > 0
            assert ifnames(sw_ns, "ppp") == set()  # nothing terminated in the middle
            # The LAC hangs up: the switch clears the upstream leg, the LNS drops PPP.
            lac.cli(["hangup", "tunnel_id", str(lac_link["tunnel_id"]), "session_id",
                     str(lac_link["session_id"])])
            wait_for(lambda: ifnames(lns_ns, "ppp") == set(), timeout=15,
                     message="the LNS to lose the switched session")
        finally:
            lac.close()
            switch.close()
            lns.close()
            for path in paths:
                os.unlink(path)
