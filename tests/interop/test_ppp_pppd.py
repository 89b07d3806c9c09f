"""pyl2tp's PPP endpoint against xl2tpd + the real pppd over the kernel's PPPoL2TP, in the VM.

The guest (Debian's kernel with L2TP and PPP) runs xl2tpd and pppd through the harness of
``tests/support/pppvm.py``; pyl2tp runs on the host in a namespace holding the VM's tap.

* **pyl2tp as the LNS.** Three xl2tpd + pppd LACs in one guest dial one pyl2tp LNS, one per
  authentication method (PAP, CHAP-MD5, MS-CHAPv2), each pppd refusing every other method so
  pyl2tp must fall back from its preference to the one the client can do. Each gets an
  address from the pool and IPV6CP link-local addresses; pings cross each link from both
  ends, IPv4 and IPv6. Teardown comes from pppd (LCP Terminate-Request, CDN, StopCCN) and
  must remove pyl2tp's interfaces.
* **pyl2tp as the client (LAC).** One xl2tpd + pppd LNS demands CHAP-MD5 and hands out an
  address and a DNS server; pyl2tp dials it from its configuration, authenticates, takes the
  address and pings through; again the peer tears down.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.support.daemon import Daemon, ping, write_temp
from tests.support.kernelvm import GuestResult, run_guest
from tests.support.netns import NetNS, wait_for
from tests.support.pppvm import (
    combine,
    lac_fragment,
    lns_script,
    parse_markers,
    ping_checks,
    require_pppd_vm,
)
from tests.support.pppvm import prelude as guest_prelude

pytestmark = [pytest.mark.kernelvm, pytest.mark.slow, pytest.mark.timeout(600)]

USERS = {"pap": ("pat", "pap secret"), "chap-md5": ("chad", "chap secret"),
         "mschap-v2": ("mike", "ms secret")}


def _links(d: Daemon) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(d.cli(["ppp", "show", "-j"]).stdout)
    return result


def _ppp_ifaces(ns: NetNS) -> list[str]:
    out = json.loads(ns.ip("-j", "link", "show").stdout)
    return [link["ifname"] for link in out if link["ifname"].startswith("ppp")]


def _pings(ns: NetNS, link: dict[str, Any]) -> dict[str, bool]:
    """Ping a PPP link's peer from the host, over IPv4 and over IPv6 link-local."""
    return {"ping4": ping(ns, link["peer"], count=3, wait=3).ok,
            "ping6": ping(ns, f"{link['peer6']}%{link['ifname']}", count=3, wait=3).ok}


def _ifaces_after_teardown(ns: NetNS, timeout: float = 20) -> list[str]:
    """The host's PPP interfaces once the guest's teardown had time to remove them."""
    deadline = time.monotonic() + timeout
    while _ppp_ifaces(ns) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _ppp_ifaces(ns)


class Run:
    def __init__(self, res: GuestResult, host: dict[str, Any], links: list[dict[str, Any]],
                 after: list[str]) -> None:
        self.res = res
        self.host = host      # what the host checked while the guest was up
        self.links = links    # the host's PPP links at their peak
        self.after = after    # host PPP interfaces left once the guest had torn down

    def markers(self, tag: str) -> dict[str, dict[str, str]]:
        return parse_markers(self.res.output, tag)


def _boot(script: str, ns: NetNS, tap: str, tap_addr: str,
          while_up: Callable[[], dict[str, Any]]) -> tuple[GuestResult, dict[str, Any]]:
    """Boot the guest on a tap in ``ns``; run ``while_up`` on the host meanwhile."""
    box: dict[str, Any] = {}

    def boot() -> None:
        try:
            box["res"] = run_guest(script, tap=tap, netns=ns.name, tap_addr=tap_addr,
                                   timeout=240)
        except BaseException as exc:  # re-raised below, not lost in the thread
            box["error"] = exc

    vm = threading.Thread(target=boot, daemon=True)
    vm.start()
    try:
        host = while_up()
    except Exception as exc:  # keep the guest's output: it explains most failures
        host = {"error": repr(exc)}
    vm.join(300)
    if "error" in box:
        raise box["error"]
    return box["res"], host


# ---- pyl2tp as the LNS ---------------------------------------------------------------------

LNS_CONFIG = """
[daemon]
host_name = "pyl2tp-lns"

[[listen]]
address = "0.0.0.0"

[[ppp]]
name = "lns"
auth = ["mschap-v2", "chap-md5", "pap"]
secrets = "{secrets}"
local_ip = "10.208.9.1"
pool = "10.208.9.10-10.208.9.50"
dns = ["10.208.9.53"]
ipv6 = true

[[peer]]
name = "guest"
ppp = "lns"
"""


@pytest.fixture(scope="module")
def lns_run() -> Iterator[Run]:
    require_pppd_vm()
    ns = NetNS("pvl")
    secrets = write_temp("".join(f'{u} * "{p}"\n' for u, p in USERS.values()))
    cfg = write_temp(LNS_CONFIG.format(secrets=secrets))
    daemon = Daemon(ns, extra_args=["--config", cfg])
    try:
        daemon.start()
        frags = [
            lac_fragment(lns="10.208.0.1", user=USERS[auth][0], password=USERS[auth][1],
                         auth=auth, tag=f"lac{k}", port=1701 + k, ipv6=True, usepeerdns=True,
                         commands=ping_checks(ipv4=True, ipv6=True), wait=90,
                         wait_ready=(), done_wait=60)
            for k, auth in enumerate(USERS)
        ]
        script = guest_prelude(eth0="10.208.0.2/24") + combine(*frags)
        peak: list[dict[str, Any]] = []

        def while_up() -> dict[str, Any]:
            wait_for(lambda: len([p for p in _links(daemon) if p.get("ipv6_up")
                                  and p.get("ipv4_up")]) == 3,
                     timeout=150, message="three PPP links from the guest")
            peak[:] = _links(daemon)
            out: dict[str, Any] = {}
            for p in peak:
                for family, ok in _pings(ns, p).items():
                    out[f"{family} {p['user']}"] = ok
            return out

        res, host = _boot(script, ns, "pvlt0", "10.208.0.1/24", while_up)
        yield Run(res, host, peak, _ifaces_after_teardown(ns))
    finally:
        daemon.close()
        ns.close()
        os.unlink(cfg)
        os.unlink(secrets)


@pytest.mark.parametrize("auth", list(USERS))
def test_pppd_lac_authenticates_to_pyl2tp_and_pings(lns_run: Run, auth: str) -> None:
    k = list(USERS).index(auth)
    m = lns_run.markers(f"lac{k}")
    out = lns_run.res.output
    assert "PPP-UP" in m, out
    assert m["PPP-UP"]["peer"] == "10.208.9.1", m
    assert m["PPP-UP"].get("dns1") == "10.208.9.53", m
    assert "PPP6-UP" in m, out
    assert "PING4-OK" in m and "PING6-OK" in m, out
    user = USERS[auth][0]
    link = next(p for p in lns_run.links if p["user"] == user)
    assert link["auth"] == auth  # pyl2tp fell back to what this pppd accepts
    assert link["peer"] == m["PPP-UP"]["local"]
    assert lns_run.host.get(f"ping4 {user}") is True, lns_run.host
    assert lns_run.host.get(f"ping6 {user}") is True, lns_run.host


def test_pppd_teardown_removes_pyl2tp_interfaces(lns_run: Run) -> None:
    assert len(lns_run.links) == 3, lns_run.host
    assert lns_run.after == []


# ---- pyl2tp as the client ------------------------------------------------------------------

CLIENT_CONFIG = """
[daemon]
host_name = "pyl2tp-lac"

[[ppp]]
name = "client"
user = "carol"
password = "carol's secret"
request_dns = true
ipv6 = true

[[tunnel]]
name = "guest-lns"
peer = "10.209.0.2"
version = 2
ppp = "client"

[[tunnel.session]]
pw_type = "ppp"
"""


@pytest.fixture(scope="module")
def client_run() -> Iterator[Run]:
    require_pppd_vm()
    ns = NetNS("pvc")
    cfg = write_temp(CLIENT_CONFIG)
    daemon = Daemon(ns, extra_args=["--config", cfg])
    try:
        script = lns_script(local_ip="10.209.9.1", ip_range="10.209.9.20-10.209.9.30",
                            users={"carol": "carol's secret"}, auth="chap-md5", ipv6=True,
                            eth0="10.209.0.2/24", ms_dns=["10.209.9.53"], wait=120,
                            commands=ping_checks(ipv4=True, ipv6=True))
        peak: list[dict[str, Any]] = []
        tap = "pvct0"

        def while_up() -> dict[str, Any]:
            # Start dialling once the tap exists (the route to the guest comes with it).
            wait_for(lambda: ns.ip("link", "show", "dev", tap, check=False).returncode == 0
                     and "10.209.0.1" in ns.ip("-br", "addr").stdout, timeout=60,
                     message="the VM's tap")
            daemon.start()
            wait_for(lambda: any(p.get("ipv4_up") and p.get("ipv6_up")
                                 for p in _links(daemon)), timeout=150,
                     message="pyl2tp's PPP link to the guest LNS")
            peak[:] = _links(daemon)
            return _pings(ns, peak[0])

        res, host = _boot(script, ns, tap, "10.209.0.1/24", while_up)
        yield Run(res, host, peak, _ifaces_after_teardown(ns))
    finally:
        daemon.close()
        ns.close()
        os.unlink(cfg)


def test_pyl2tp_client_authenticates_to_pppd_lns_and_pings(client_run: Run) -> None:
    m = client_run.markers("lns")
    out = client_run.res.output
    assert "PPP-UP" in m, out
    assert "PING4-OK" in m and "PPP6-UP" in m and "PING6-OK" in m, out
    (link,) = client_run.links
    assert link["auth_by_peer"] == "chap-md5"
    assert link["peer"] == "10.209.9.1"
    assert link["local"] == m["PPP-UP"]["peer"]
    assert link["local"].startswith("10.209.9.")
    # pppd with one ms-dns answers both DNS options with it
    assert set(link["dns"]) == {"10.209.9.53"}
    assert client_run.host.get("ping4") is True, client_run.host
    assert client_run.host.get("ping6") is True, client_run.host
    assert client_run.after == []
