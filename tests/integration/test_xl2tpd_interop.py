"""L2TPv2 interoperability with xl2tpd (the Debian package), both directions.

xl2tpd runs in its own namespace through ``tests/support/xl2tpd.py``; pyl2tp's daemon in
another. Challenge authentication and AVP hiding are on at both ends (xl2tpd's "hidden bit"
only adds Random Vectors; pyl2tp really hides its AVPs, which xl2tpd must decrypt). Tunnels
and sessions must establish and be torn down cleanly from either side: CDN for one call,
StopCCN for the tunnel, with each end's data plane and xl2tpd's log agreeing. What PPP does
inside the sessions belongs to the PPP issue: xl2tpd's pppd is the harness's stand-in, which
keeps the session up without negotiating.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.support.daemon import Daemon, write_temp
from tests.support.netns import NetNS, veth, wait_for
from tests.support.xl2tpd import (
    CALL_ESTABLISHED_LAC,
    CALL_ESTABLISHED_LNS,
    CDN_RECEIVED,
    STOPCCN_RECEIVED,
    TUNNEL_ESTABLISHED,
    LacSection,
    LnsSection,
    Secret,
    Xl2tpd,
    require_xl2tpd,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

PY_ADDR = "10.78.1.1"
XL_ADDR = "10.78.1.2"
SECRET = "interop-s3cret"
PY_NAME = "pyl2tp-host"
XL_NAME = "xl2tpd-host"

PY_CONFIG = f"""
[daemon]
host_name = "{PY_NAME}"

[[listen]]
encap = "udp"
address = "{PY_ADDR}"

[[peer]]
name = "xl2tpd"
host_name = "{XL_NAME}"
secret = "{SECRET}"
hide_avps = true
versions = [2]
"""




class Rig:
    def __init__(self, py: Daemon, xl_ns: NetNS) -> None:
        self.py = py
        self.xl_ns = xl_ns

    def control(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self.py.cli(["control", "show", "-j"]).stdout)
        return result

    def sessions(self) -> list[dict[str, Any]]:
        return self.py.show("session", stats=False)

    def tunnels(self) -> list[dict[str, Any]]:
        return self.py.show("tunnel", stats=False)


@pytest.fixture
def rig(netns_factory: Callable[[str], NetNS]) -> Iterator[Rig]:
    require_xl2tpd()
    py_ns, xl_ns = netns_factory("py"), netns_factory("xl")
    veth(py_ns, xl_ns, f"{PY_ADDR}/24", f"{XL_ADDR}/24")
    path = write_temp(PY_CONFIG)
    py = Daemon(py_ns, extra_args=["--config", path])
    try:
        py.start()
        yield Rig(py, xl_ns)
    finally:
        py.close()
        os.unlink(path)


def _redial(lac: Xl2tpd, name: str) -> None:
    """``c NAME`` once xl2tpd has finished with the previous call (it refuses while its own
    teardown of that call is still pending)."""
    def dialled() -> bool:
        return lac.command(f"c {name}").ok

    wait_for(dialled, timeout=10, interval=0.2, message=f"xl2tpd to accept 'c {name}'")


def test_xl2tpd_lac_dials_pyl2tp_lns(rig: Rig) -> None:
    lac = Xl2tpd(rig.xl_ns, XL_ADDR,
                 [LacSection("py", lns=PY_ADDR, challenge=True, hidden_bit=True,
                             hostname=XL_NAME)],
                 [Secret(SECRET)])
    with lac:
        lac.dial("py")
        t = lac.wait_for_log(TUNNEL_ESTABLISHED, timeout=10)
        c = lac.wait_for_log(CALL_ESTABLISHED_LAC, timeout=10)
        # pyl2tp's data plane has the tunnel and the session with xl2tpd's ids as peer ids.
        wait_for(lambda: len(rig.sessions()) == 1, timeout=10, message="the pyl2tp session")
        (tunnel,) = rig.tunnels()
        assert (tunnel["tunnel_id"], tunnel["peer_tunnel"]) == (int(t["remote"]),
                                                                   int(t["local"]))
        (session,) = rig.sessions()
        assert (session["session_id"], session["peer_session_id"]) == (int(c["remote"]),
                                                                       int(c["local"]))
        (conn,) = rig.control()
        assert conn["authenticated"] and conn["peer_host_name"] == XL_NAME

        # The call ends on xl2tpd's side (its pppd dies: CDN 1/0): pyl2tp removes the
        # session and keeps the tunnel. (`h` on an xl2tpd LAC leaves the LAC marked active.)
        ((pid, _args),) = wait_for(lac.pppd_stub_calls, message="xl2tpd's pppd")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: rig.sessions() == [], timeout=10, message="the session to go")
        assert len(rig.tunnels()) == 1

        # A second call, hung up by pyl2tp's operator with ip-l2tp syntax: CDN 3 to xl2tpd.
        lac.wait_for_log(r"Terminating pppd|pppd terminated", timeout=10)
        mark = lac.log_mark()
        _redial(lac, "py")
        c2 = lac.wait_for_log(CALL_ESTABLISHED_LAC, timeout=10, since=mark)
        wait_for(lambda: len(rig.sessions()) == 1, timeout=10, message="the second session")
        rig.py.cli(["del", "session", "tunnel_id", t["remote"], "session_id", c2["remote"]])
        cdn = lac.wait_for_log(CDN_RECEIVED, timeout=10, since=mark)
        assert cdn["result"] == "3"

        # pyl2tp deletes the tunnel: StopCCN 1 reaches xl2tpd, which closes it.
        mark = lac.log_mark()
        rig.py.cli(["del", "tunnel", "tunnel_id", t["remote"]])
        stop = lac.wait_for_log(STOPCCN_RECEIVED, timeout=10, since=mark)
        assert stop["result"] == "1"
        wait_for(lambda: rig.control() == [] or all(
            x["state"] in ("closing", "dead") for x in rig.control()), timeout=10,
            message="the control connection to close")

        # And a tunnel torn down by xl2tpd (`d`: StopCCN 1 "Goodbye!").
        mark = lac.log_mark()
        _redial(lac, "py")
        lac.wait_for_log(CALL_ESTABLISHED_LAC, timeout=10, since=mark)
        wait_for(lambda: len(rig.sessions()) == 1, timeout=10, message="the third session")
        lac.hangup("py")
        wait_for(lambda: rig.tunnels() == [] and rig.sessions() == [], timeout=10,
                 message="pyl2tp to remove the tunnel after xl2tpd's StopCCN")
    assert "Goodbye!" in rig.py.log()


def test_pyl2tp_lac_dials_xl2tpd_lns(rig: Rig) -> None:
    lns = Xl2tpd(rig.xl_ns, XL_ADDR,
                 [LnsSection(challenge=True, hidden_bit=True, hostname=XL_NAME)],
                 [Secret(SECRET)])
    with lns:
        out = rig.py.cli(["dial", "peer", XL_ADDR, "version", "2", "secret", SECRET,
                          "hidden", "host_name", PY_NAME]).stdout
        tid = int(out.split()[1])
        t = lns.wait_for_log(TUNNEL_ESTABLISHED, timeout=10)
        assert int(t["remote"]) == tid
        sid = int(rig.py.cli(["call", "tunnel_id", str(tid)]).stdout.split()[3])
        c = lns.wait_for_log(CALL_ESTABLISHED_LNS, timeout=10)
        assert int(c["remote"]) == sid
        wait_for(lambda: len(rig.sessions()) == 1, timeout=10, message="the pyl2tp session")
        (session,) = rig.sessions()
        assert session["peer_session_id"] == int(c["local"])
        (conn,) = rig.control()
        assert conn["authenticated"] and conn["peer_host_name"] == XL_NAME

        # pyl2tp hangs up the call: xl2tpd receives CDN 3.
        mark = lns.log_mark()
        rig.py.cli(["hangup", "tunnel_id", str(tid), "session_id", str(sid)])
        cdn = lns.wait_for_log(CDN_RECEIVED, timeout=10, since=mark)
        assert cdn["result"] == "3"
        wait_for(lambda: rig.sessions() == [], timeout=10, message="the session to go")

        # A second call, ended by xl2tpd (its pppd ends: CDN 1/0).
        mark = lns.log_mark()
        sid2 = int(rig.py.cli(["call", "tunnel_id", str(tid)]).stdout.split()[3])
        c2 = lns.wait_for_log(CALL_ESTABLISHED_LNS, timeout=10, since=mark)
        assert int(c2["remote"]) == sid2
        wait_for(lambda: len(rig.sessions()) == 1, timeout=10, message="the second session")
        lns.hangup_call(int(c2["local"]))
        wait_for(lambda: rig.sessions() == [], timeout=10,
                 message="pyl2tp to drop the session xl2tpd hung up")
        assert len(rig.tunnels()) == 1

        # pyl2tp closes the tunnel: xl2tpd gets StopCCN 1 and forgets it.
        mark = lns.log_mark()
        rig.py.cli(["hangup", "tunnel_id", str(tid)])
        stop = lns.wait_for_log(STOPCCN_RECEIVED, timeout=10, since=mark)
        assert stop["result"] == "1"
        wait_for(lambda: lns.lns_status()["tunnels.count"] == "0", timeout=10,
                 message="xl2tpd to close the tunnel")
        assert rig.tunnels() == []

        # A new tunnel, torn down by xl2tpd shutting down (SIGINT: StopCCN 1).
        out = rig.py.cli(["dial", "peer", XL_ADDR, "version", "2", "secret", SECRET,
                          "hidden", "host_name", PY_NAME]).stdout
        tid = int(out.split()[1])
        rig.py.cli(["call", "tunnel_id", str(tid)])
        wait_for(lambda: len(rig.sessions()) == 1, timeout=10, message="the third session")
        lns.stop(signal.SIGINT)
        wait_for(lambda: rig.tunnels() == [] and rig.sessions() == [], timeout=10,
                 message="pyl2tp to remove the tunnel after xl2tpd's StopCCN")
    assert "Server closing" in rig.py.log()
