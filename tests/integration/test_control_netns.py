"""Dynamic tunnels between two pyl2tp daemons in network namespaces.

A LAC daemon (driven through the CLI, as an operator would) dials an LNS daemon (driven by a
TOML configuration with a per-peer secret). For L2TPv3 the Ethernet pseudowire must carry
pings end to end, over UDP and over IP, IPv4 and IPv6; for L2TPv2 the tunnel and its PPP
sessions must establish and tear down from either side. A configured LAC daemon checks the
dial-at-start, re-dial and SIGHUP paths.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.daemon import Daemon, LacLns, lac_lns_pair, ping, write_temp
from tests.support.netns import wait_for

pytestmark = pytest.mark.netns

LNS_CONFIG = """
[daemon]
host_name = "lns"

[[listen]]
encap = "udp"
address = "0.0.0.0"

[[listen]]
encap = "udp"
address = "::"

[[listen]]
encap = "ip"
address = "0.0.0.0"

[[listen]]
encap = "ip"
address = "::"

[defaults]
hello_interval = 5

[[peer]]
name = "lac"
host_name = "lac"
secret = "s3cret"
hide_avps = true
"""


Net = LacLns


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    with lac_lns_pair(["10.71.0.1/24", "fd71::1/64"], ["10.71.0.2/24", "fd71::2/64"],
                      LNS_CONFIG, ipv6="settled") as pair:
        yield pair


def _control(d: Daemon) -> list[dict[str, Any]]:
    out = d.cli(["control", "show", "-j"]).stdout
    result: list[dict[str, Any]] = json.loads(out)
    return result


def _conn(d: Daemon, tunnel_id: int) -> dict[str, Any] | None:
    return next((c for c in _control(d) if c["tunnel_id"] == tunnel_id), None)


def _dial(net: Net, *words: str) -> int:
    out = net.lac.cli(["dial", *words, "host_name", "lac", "secret", "s3cret", "hidden"]).stdout
    tid = int(out.split()[1])
    wait_for(lambda: (_conn(net.lac, tid) or {}).get("state") == "established", timeout=10,
             message=f"tunnel {tid} to establish")
    return tid


def _hangup_and_check(net: Net, tid: int) -> None:
    peer_tid = _conn(net.lac, tid)["peer_tunnel_id"]  # type: ignore[index]
    net.lac.cli(["hangup", "tunnel_id", str(tid)])
    wait_for(lambda: not any(t["tunnel_id"] == peer_tid for t in net.lns.show("tunnel")),
             timeout=10, message="the LNS to remove the tunnel")
    wait_for(lambda: not any(t["tunnel_id"] == tid for t in net.lac.show("tunnel")),
             timeout=10, message="the LAC to remove the tunnel")


@pytest.mark.parametrize(("encap", "family"), [("udp", 4), ("ip", 4), ("udp", 6), ("ip", 6)])
def test_v3_ethernet_pseudowire_carries_pings(net: Net, encap: str, family: int) -> None:
    peer = "10.71.0.2" if family == 4 else "fd71::2"
    tid = _dial(net, "peer", peer, "version", "3", "encap", encap)
    conn = _conn(net.lac, tid)
    assert conn is not None and conn["authenticated"], conn
    ifname = f"dyn{encap}{family}"
    out = net.lac.cli(["call", "tunnel_id", str(tid), "pw_type", "eth", "ifname", ifname])
    sid = int(out.stdout.split()[3])
    wait_for(lambda: any(s["session_id"] == sid for s in net.lac.show("session")), timeout=10,
             message="the LAC session in the data plane")
    peer_tid = _conn(net.lac, tid)["peer_tunnel_id"]  # type: ignore[index]
    lns_session = next(s for s in net.lns.show("session") if s["tunnel_id"] == peer_tid)
    lac_session = net.lac.session(ifname=ifname)
    # Negotiated over the wire: each side's cookie is the other's peer cookie.
    assert lac_session["peer_session_id"] == lns_session["session_id"]
    assert lns_session["peer_session_id"] == lac_session["session_id"]
    assert lac_session.get("cookie") == lns_session.get("peer_cookie")
    assert lac_session.get("peer_cookie") == lns_session.get("cookie")
    a, b = net.lac_ns, net.lns_ns
    subnet = {("udp", 4): 1, ("ip", 4): 2, ("udp", 6): 3, ("ip", 6): 4}[(encap, family)]
    a.ip("addr", "add", f"192.168.{subnet}.1/24", "dev", ifname)
    a.link_up(ifname)
    b.ip("addr", "add", f"192.168.{subnet}.2/24", "dev", lns_session["interface"])
    b.link_up(lns_session["interface"])
    result = ping(a, f"192.168.{subnet}.2", count=5, interval=0.2)
    assert result.ok, result
    _hangup_and_check(net, tid)


def test_v2_tunnel_with_sessions_from_either_side(net: Net) -> None:
    tid = _dial(net, "peer", "10.71.0.2", "version", "2")
    out = net.lac.cli(["call", "tunnel_id", str(tid), "count", "3"]).stdout
    sids = [int(line.split()[3]) for line in out.splitlines()]
    assert len(sids) == 3
    wait_for(lambda: len([s for s in net.lac.show("session") if s["tunnel_id"] == tid]) == 3,
             timeout=10, message="three v2 sessions at the LAC")
    peer_tid = _conn(net.lac, tid)["peer_tunnel_id"]  # type: ignore[index]
    wait_for(lambda: len([s for s in net.lns.show("session")
                          if s["tunnel_id"] == peer_tid]) == 3,
             timeout=10, message="three v2 sessions at the LNS")
    # LAC hangs up one call (CDN): both data planes lose it.
    net.lac.cli(["hangup", "tunnel_id", str(tid), "session_id", str(sids[0])])
    wait_for(lambda: len([s for s in net.lns.show("session")
                          if s["tunnel_id"] == peer_tid]) == 2,
             timeout=10, message="the LNS to drop the hung-up session")
    # The LNS operator deletes one session with ip-l2tp syntax: CDN goes the other way.
    victim = next(s for s in net.lns.show("session") if s["tunnel_id"] == peer_tid)
    net.lns.cli(["del", "session", "tunnel_id", str(peer_tid), "session_id",
                 str(victim["session_id"])])
    wait_for(lambda: len([s for s in net.lac.show("session") if s["tunnel_id"] == tid]) == 1,
             timeout=10, message="the LAC to drop the session the LNS deleted")
    # ... and then the whole tunnel (StopCCN from the LNS).
    net.lns.cli(["del", "tunnel", "tunnel_id", str(peer_tid)])
    wait_for(lambda: not any(t["tunnel_id"] == tid for t in net.lac.show("tunnel")),
             timeout=10, message="the LAC to remove the tunnel after StopCCN")
    assert not any(s["tunnel_id"] == tid for s in net.lac.show("session"))


def test_wrong_secret_is_refused(net: Net) -> None:
    out = net.lac.cli(["dial", "peer", "10.71.0.2", "version", "2", "host_name", "lac",
                       "secret", "wrong"]).stdout
    tid = int(out.split()[1])
    wait_for(lambda: _conn(net.lac, tid) is None, timeout=15,
             message="the refused tunnel to go away")
    assert not any(t["tunnel_id"] == tid for t in net.lac.show("tunnel"))
    assert "wrong secret" in net.lac.log()


def test_configured_lac_dials_at_start_and_on_sighup(net: Net) -> None:
    a = net.lac_ns
    config = """
[daemon]
host_name = "lac"

[[tunnel]]
name = "to-lns"
peer = "10.71.0.2"
version = 3
local_port = 0
secret = "s3cret"

[[tunnel.session]]
pw_type = "eth"
count = 2
ifname = "cfg%d"
"""
    path = write_temp(config)
    sock = os.path.join(tempfile.gettempdir(), f"pyl2tp-cfg-{os.getpid()}.sock")
    lac2 = Daemon(a, sock, extra_args=["--config", path])
    try:
        lac2.start()
        wait_for(lambda: len(lac2.show("session")) == 2, timeout=15,
                 message="the configured sessions")
        first = _control(lac2)[0]["tunnel_id"]
        # Unchanged file: SIGHUP keeps the tunnel.
        lac2.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloading" in lac2.log(), timeout=5, message="the reload")
        assert _control(lac2)[0]["tunnel_id"] == first
        # A broken file is refused and changes nothing.
        with open(path, "a") as f:
            f.write("\n[defaults]\nhelo_interval = 3\n")
        lac2.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in lac2.log(), timeout=5, message="the refusal")
        assert _control(lac2)[0]["tunnel_id"] == first
        # A changed tunnel is dialled again with the new settings.
        with open(path, "w") as f:
            f.write(config.replace("count = 2", "count = 3"))
        lac2.send_signal(signal.SIGHUP)
        wait_for(lambda: len(lac2.show("session")) == 3, timeout=15,
                 message="three sessions after the reload")
        assert [c["tunnel_id"] for c in _control(lac2) if c["state"] == "established"] != [first]
    finally:
        lac2.close()
        os.unlink(path)
