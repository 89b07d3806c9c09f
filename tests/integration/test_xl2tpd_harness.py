"""The xl2tpd harness (tests/support/xl2tpd.py), checked by running xl2tpd against itself.

An xl2tpd LAC and an xl2tpd LNS run in two namespaces joined by a veth pair (10.77.1.0/24).
The harness must start both, bring a tunnel and a session up through the control FIFO, read
what happened from the logs, end sessions and tunnels in each of the ways it offers, and leave
no process behind. Both sides use the tunnel challenge and the hidden bit, as the interop tests
will.

Hosts without the kernel's PPP driver (no /dev/ppp, the usual case here) make the real pppd
exit at once; one test pins down what xl2tpd then does (a CDN), the others use the harness's
stand-in pppd, which keeps sessions up. Skipped without root or xl2tpd; under CI=true a
missing prerequisite fails instead.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest
from tests.support.netns import NetNS, veth, wait_for
from tests.support.xl2tpd import (
    CALL_ESTABLISHED_LAC,
    CALL_ESTABLISHED_LNS,
    CDN_RECEIVED,
    PPPD,
    PPPD_EXITED,
    STOPCCN_RECEIVED,
    TUNNEL_ESTABLISHED,
    LacSection,
    LnsSection,
    Secret,
    Xl2tpd,
    Xl2tpdError,
    render_config,
    render_secrets,
    require_xl2tpd,
    xl2tpd_version,
)

NetnsFactory = Callable[[str], NetNS]

LAC_ADDR = "10.77.1.1"
LNS_ADDR = "10.77.1.2"
SECRETS = [Secret("pyl2tp-xl2tpd-secret")]




@pytest.fixture
def hosts(netns_factory: NetnsFactory) -> tuple[NetNS, NetNS]:
    """(lac, lns) namespaces on one veth link; the factory deletes them after the test."""
    require_xl2tpd()
    lac, lns = netns_factory("xl2tp-lac"), netns_factory("xl2tp-lns")
    veth(lac, lns, f"{LAC_ADDR}/24", f"{LNS_ADDR}/24")
    return lac, lns


def _pair(
    hosts: tuple[NetNS, NetNS], pppd: Literal["stub", "real"] = "stub"
) -> tuple[Xl2tpd, Xl2tpd]:
    lac_ns, lns_ns = hosts
    lns = Xl2tpd(
        lns_ns,
        LNS_ADDR,
        [LnsSection(challenge=True, hidden_bit=True, hostname="lns-xl2tpd")],
        SECRETS,
        pppd=pppd,
    )
    lac = Xl2tpd(
        lac_ns,
        LAC_ADDR,
        [LacSection("t1", lns=LNS_ADDR, challenge=True, hidden_bit=True, hostname="lac-xl2tpd")],
        SECRETS,
        pppd=pppd,
    )
    return lac, lns


@pytest.fixture
def pair(hosts: tuple[NetNS, NetNS]) -> Iterator[tuple[Xl2tpd, Xl2tpd]]:
    """(lac, lns) xl2tpd instances with the stub pppd, running; stopped after the test."""
    lac, lns = _pair(hosts)
    with lns, lac:
        yield lac, lns
    # Stopping xl2tpd must also end the pppd stand-ins it started.
    for ns in hosts:
        assert ns.pids() == [], f"processes left in {ns.name}: {ns.pids()}"
    assert not lac.workdir.exists() and not lns.workdir.exists()


def test_render_config_and_secrets() -> None:
    text = render_config(
        "10.77.1.2",
        [
            LnsSection(challenge=True, hidden_bit=True, hostname="lns1"),
            LacSection("t1", lns="10.77.1.1", extra={"tunnel rws": "8"}),
        ],
        auth_file="/x/l2tp-secrets",
        pppoptfiles={"lns default": "/x/lns.opts"},
    )
    blocks = {b.splitlines()[0]: b.splitlines()[1:] for b in text.strip().split("\n\n")}
    assert list(blocks) == ["[global]", "[lns default]", "[lac t1]"]
    assert blocks["[global]"][:4] == [
        "listen-addr = 10.77.1.2",
        "port = 1701",
        "auth file = /x/l2tp-secrets",
        "access control = no",
    ]
    lns = blocks["[lns default]"]
    for line in (
        "ip range = 10.77.250.10-10.77.250.99",
        "local ip = 10.77.250.1",
        "challenge = yes",
        "hidden bit = yes",
        "require authentication = no",
        "length bit = yes",
        "hostname = lns1",
        "pppoptfile = /x/lns.opts",
    ):
        assert line in lns
    lac = blocks["[lac t1]"]
    for line in ("lns = 10.77.1.1", "redial = no", "autodial = no", "tunnel rws = 8"):
        assert line in lac
    assert not any(line.startswith("pppoptfile") for line in lac)

    assert render_secrets([Secret("s1"), Secret("s2", us="lns1", them="lac1")]) == (
        "* * s1\nlns1 lac1 s2\n"
    )
    with pytest.raises(ValueError):
        Secret("has;comment").line()
    with pytest.raises(ValueError, match="duplicate"):
        render_config("10.0.0.1", [LnsSection(), LnsSection()], auth_file="a", pppoptfiles={})


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_session_with_real_pppd(hosts: tuple[NetNS, NetNS]) -> None:
    """Tunnel and session come up; without /dev/ppp pppd dies and xl2tpd sends a CDN."""
    assert xl2tpd_version().startswith("xl2tpd-1.")
    lac, lns = _pair(hosts, pppd="real")
    with lns, lac:
        lac.dial("t1")
        t_lac = lac.wait_for_log(TUNNEL_ESTABLISHED)
        t_lns = lns.wait_for_log(TUNNEL_ESTABLISHED)
        assert (t_lac["local"], t_lac["remote"]) == (t_lns["remote"], t_lns["local"])
        c_lac = lac.wait_for_log(CALL_ESTABLISHED_LAC)
        c_lns = lns.wait_for_log(CALL_ESTABLISHED_LNS)
        assert (c_lac["local"], c_lac["remote"]) == (c_lns["remote"], c_lns["local"])
        if Path("/dev/ppp").exists():
            pytest.skip("this host has /dev/ppp: pppd runs, so no CDN is expected")

        # pppd exits with status 4 ("no kernel support"). The xl2tpd that notices first sends a
        # CDN; often both do and the CDNs cross.
        def cdns() -> list[re.Match[str]]:
            return lac.log_matches(CDN_RECEIVED) + lns.log_matches(CDN_RECEIVED)

        received = wait_for(cdns, timeout=5, message="a CDN on either side")
        assert {(m["result"], m["error"], m["message"]) for m in received} == {("1", "0", "")}
        exits = lac.log_matches(PPPD_EXITED) + lns.log_matches(PPPD_EXITED)
        assert ("exited", "4") in {(m["how"], m["status"]) for m in exits}
        # The tunnel outlives the session. (The status may still list the call: xl2tpd keeps
        # it when the peer's CDN arrives before its own pppd has exited.)
        assert lns.lns_status()["tunnels.count"] == "1"


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_sigint_sends_stopccn(pair: tuple[Xl2tpd, Xl2tpd]) -> None:
    lac, lns = pair
    lac.dial("t1")
    lns.wait_for_log(CALL_ESTABLISHED_LNS)
    mark = lns.log_mark()
    assert lac.stop(signal.SIGINT) == 1
    stop = lns.wait_for_log(STOPCCN_RECEIVED, since=mark)
    assert (stop["result"], stop["error"], stop["message"]) == ("1", "0", "Server closing")
    lns.wait_for_log(r"closing down tunnel", since=mark)
    assert lns.lns_status()["tunnels.count"] == "0"


def _dial(lac: Xl2tpd, lns: Xl2tpd) -> tuple[re.Match[str], re.Match[str]]:
    """Dial ``t1``; return the (LAC, LNS) "Call established" matches once the call has settled.

    The LNS acknowledges the ICCN with a ZLB carrying the session id. If the LAC has already
    dropped the call when it arrives, xl2tpd treats it as a message for an unknown call and
    counts it, after which its Nr is one ahead and the peer's next control message is
    discarded as a duplicate (an xl2tpd bug). So wait for that ZLB before ending the call.
    """
    mark_lac, mark_lns = lac.log_mark(), lns.log_mark()
    assert lac.dial("t1").text == "00 OK"
    on_lns = lns.wait_for_log(CALL_ESTABLISHED_LNS, since=mark_lns)
    on_lac = lac.wait_for_log(CALL_ESTABLISHED_LAC, since=mark_lac)
    assert (on_lac["local"], on_lac["remote"]) == (on_lns["remote"], on_lns["local"])
    lac.wait_for_log(rf"size = 12, tunnel = \d+, call = {on_lac['local']} ", since=on_lac.end())
    return on_lac, on_lns


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_stub_pppd_keeps_session_up(pair: tuple[Xl2tpd, Xl2tpd]) -> None:
    lac, lns = pair
    # The stand-in is bind-mounted in xl2tpd's own mount namespace only.
    assert f" {PPPD} " not in Path("/proc/self/mountinfo").read_text()

    _, call = _dial(lac, lns)
    time.sleep(2.0)
    assert lac.log_matches(CDN_RECEIVED) == [] and lns.log_matches(CDN_RECEIVED) == []

    status = lns.lns_status()
    assert status["tunnels.count"] == "1"
    assert status["tunnels.0.calls.0.id"] == call["local"]
    # Each stand-in records itself once it runs, a moment after xl2tpd logged the call.
    ((lns_pid, lns_args),) = wait_for(lns.pppd_stub_calls, message="the LNS pppd stub")
    assert lns_pid == int(call["pid"])
    assert lns_args[0].startswith("/dev/pts/") and "10.77.250.1:10.77.250.10" in lns_args
    assert len(wait_for(lac.pppd_stub_calls, message="the LAC pppd stub")) == 1

    # A second dial while a call is up is refused.
    with pytest.raises(Xl2tpdError, match="already active"):
        lac.dial("t1")

    # h CALLID on the LNS: its pppd is terminated, the LAC receives a CDN.
    mark = lac.log_mark()
    lns.hangup_call(int(call["local"]))
    cdn = lac.wait_for_log(CDN_RECEIVED, since=mark)
    assert (cdn["result"], cdn["error"], cdn["message"]) == ("1", "0", "Goodbye!")

    # The tunnel stays: a new dial is only ICRQ/ICRP/ICCN.
    lac.wait_for_log(r"Terminating pppd", since=mark)
    mark_lac = lac.log_mark()
    _, call2 = _dial(lac, lns)
    assert call2["local"] != call["local"]
    assert lac.log_matches(TUNNEL_ESTABLISHED, since=mark_lac) == []

    # pppd dying on the LAC: the LNS receives a CDN without a message.
    lac_pid = wait_for(lambda: lac.pppd_stub_calls()[1:], message="a second LAC stub")[0][0]
    mark_lac, mark_lns = lac.log_mark(), lns.log_mark()
    os.kill(lac_pid, signal.SIGKILL)
    cdn = lns.wait_for_log(CDN_RECEIVED, since=mark_lns)
    assert (cdn["result"], cdn["error"], cdn["message"]) == ("1", "0", "")
    exited = lac.wait_for_log(PPPD_EXITED, since=mark_lac)
    assert (exited["how"], exited["call"], exited["status"]) == ("terminated", call2["local"], "9")

    # d NAME: StopCCN for the whole tunnel, no CDN for its session.
    lac.wait_for_log(r"Terminating pppd", since=mark_lac)
    _dial(lac, lns)
    mark, mark_lac = lns.log_mark(), lac.log_mark()
    lac.hangup("t1")
    stop = lns.wait_for_log(STOPCCN_RECEIVED, since=mark)
    assert (stop["result"], stop["error"], stop["message"]) == ("1", "0", "Goodbye!")
    assert lns.log_matches(CDN_RECEIVED, since=mark) == []
    lns.wait_for_log(r"closing down tunnel", since=mark)
    assert lns.lns_status()["tunnels.count"] == "0"
    # The LAC forgets the tunnel once its StopCCN is acknowledged.
    lac.wait_for_log(r"closing down tunnel", since=mark_lac)

    with pytest.raises(Xl2tpdError, match="not up"):
        lac.hangup("t1")
    with pytest.raises(Xl2tpdError, match="No such tunnel"):
        lac.dial("nosuch")
    with pytest.raises(TimeoutError, match="never"):
        lns.wait_for_log("never", timeout=0.1)
