"""The guest-side PPP harness (``tests/support/pppvm.py``) works on its own, without pyl2tp.

Before pyl2tp's PPP endpoint is tested against xl2tpd + pppd in the reference-kernel VM, the
harness itself must be known to work: ONE boot runs seven LNS/LAC pairs of the harness's own
fragments against each other, concurrently, on the guest's loopback (each xl2tpd on its own
127.0.x.k address, each pair with its own PPP subnet 10.205.k.0/24, guest-only addresses):

==  ==========  ============================================================================
k   PPP auth    also
==  ==========  ============================================================================
1   PAP         fixed interface names (pppd ``ifname``)
2   CHAP-MD5    IPCP DNS: the LNS offers ``ms-dns``, the LAC asks (``usepeerdns``);
                teardown by StopCCN (``teardown="tunnel"``)
3   MS-CHAPv2   L2TP tunnel authentication (both xl2tpd challenge, shared secret)
4   PAP         the LAC's password is wrong
5   CHAP-MD5    the LAC's password is wrong
6   MS-CHAPv2   the LAC's password is wrong
7   PAP         the L2TP tunnel secrets differ
==  ==========  ============================================================================

Pairs 1-3 must come up (IPCP and IPV6CP) and ping each other both ways over IPv4 and IPv6
link-local, with the pppd logs showing the requested method in the LNS's LCP request; pairs
4-6 must fail authentication with both pppds exiting; in pair 7 the LAC's xl2tpd must reject
the LNS's challenge response and close the tunnel before any call. Pure tests of the script
builders and the marker parser need no VM. The boot takes about a minute of wall time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from tests.support.kernelvm import GuestResult, run_guest
from tests.support.pppvm import (
    combine,
    guest_log,
    lac_fragment,
    lac_script,
    lns_fragment,
    lns_script,
    parse_all_markers,
    parse_markers,
    ping_checks,
    prelude,
    require_pppd_vm,
)

F = TypeVar("F", bound=Callable[..., Any])

# k -> (auth, wrong PPP password); pair 7 has the right password but the wrong tunnel secret
PAIRS = {
    1: ("pap", False),
    2: ("chap-md5", False),
    3: ("mschap-v2", False),
    4: ("pap", True),
    5: ("chap-md5", True),
    6: ("mschap-v2", True),
    7: ("pap", False),
}
UP = (1, 2, 3)
WRONG_PASSWORD = (4, 5, 6)
#: What the LNS's pppd puts in its LCP Configure-Request for each method (pppd's debug log).
LCP_AUTH = {"pap": "<auth pap>", "chap-md5": "<auth chap MD5>", "mschap-v2": "<auth chap MS-v2>"}
DNS2 = "10.205.2.53"


def _user(k: int) -> str:
    return f"user{k}-{PAIRS[k][0]}"


def _password(k: int) -> str:
    return f'pw {k} "quoted" \\ back'  # spaces, quotes and a backslash survive pppd's quoting


def _pair(k: int) -> list[str]:
    auth, wrong = PAIRS[k]
    lns_tag, lac_tag = f"lns{k}", f"lac{k}"
    lns_kw: dict[str, Any] = {}
    lac_kw: dict[str, Any] = {}
    if k == 1:
        lns_kw["ifname"], lac_kw["ifname"] = "pvlns1", "pvlac1"
    if k == 2:
        lns_kw["ms_dns"] = [DNS2]
        lac_kw["usepeerdns"] = True
        lns_kw["teardown"] = lac_kw["teardown"] = "tunnel"
    if k == 3:
        lns_kw["tunnel_secret"] = lac_kw["tunnel_secret"] = "tunnel-s3cret"
    if k == 7:
        lns_kw["tunnel_secret"], lac_kw["tunnel_secret"] = "tunnel-s3cret", "other-s3cret"
        lns_kw["wait"] = 25  # no call ever arrives: do not hold the boot up for long
    lns = lns_fragment(
        **{"auth": auth, "ipv6": True, "commands": ping_checks(ipv6=True), "wait": 90, **lns_kw},
        tag=lns_tag,
        listen_addr=f"127.0.1.{k}",
        local_ip=f"10.205.{k}.1",
        ip_range=f"10.205.{k}.10-10.205.{k}.20",
        users={_user(k): _password(k)},
        wait_done=[lac_tag],
    )
    lac = lac_fragment(
        **{"auth": auth, "ipv6": True, "commands": ping_checks(ipv6=True), "wait": 90, **lac_kw},
        tag=lac_tag,
        lns=f"127.0.1.{k}",
        listen_addr=f"127.0.2.{k}",
        user=_user(k),
        password=_password(k) + ("x" if wrong else ""),
        wait_ready=[lns_tag],
        wait_done=[lns_tag],
    )
    return [lns, lac]


def _vm(test: F) -> F:
    """The marks of a test that boots the VM (the pure tests run everywhere)."""
    for mark in (pytest.mark.kernelvm, pytest.mark.slow, pytest.mark.timeout(600)):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def guest() -> Iterator[GuestResult]:
    require_pppd_vm()
    script = prelude() + combine(*(frag for k in PAIRS for frag in _pair(k)))
    res = run_guest(script, timeout=400).check()
    print(
        f"\npppvm harness guest: boot {res.boot_seconds} s, overhead "
        f"{res.vm_overhead_seconds and round(res.vm_overhead_seconds, 1)} s, "
        f"total {res.elapsed:.1f} s"
    )
    yield res


def _explain(res: GuestResult, *tags: str) -> str:
    keep = tuple(f"|{t} " for t in tags) + tuple(f"tag={t}" for t in tags)
    return "\n".join(line for line in res.lines if any(k in line for k in keep))


@_vm
@pytest.mark.parametrize("k", UP)
def test_pair_comes_up_and_pings_both_ways(guest: GuestResult, k: int) -> None:
    auth = PAIRS[k][0]
    lns_tag, lac_tag = f"lns{k}", f"lac{k}"
    why = _explain(guest, lns_tag, lac_tag)
    lns, lac = parse_markers(guest.output, lns_tag), parse_markers(guest.output, lac_tag)
    assert "PPP-UP" in lns and "PPP-UP" in lac, why
    assert lns["PPP-UP"]["local"] == f"10.205.{k}.1", why
    assert lac["PPP-UP"]["local"] == f"10.205.{k}.10", why
    assert lns["PPP-UP"]["peer"] == lac["PPP-UP"]["local"], why
    assert lac["PPP-UP"]["peer"] == lns["PPP-UP"]["local"], why
    assert lns["PPP6-UP"]["peer6"] == lac["PPP6-UP"]["local6"], why
    assert lac["PPP6-UP"]["peer6"] == lns["PPP6-UP"]["local6"], why
    assert lac["PPP6-UP"]["local6"].startswith("fe80::"), why
    for side in (lns, lac):
        for check in ("PING4-OK", "PING6-OK"):
            assert check in side, why
        assert side["PPPVM-END"]["up"] == "yes", why
        assert "pppd_killed" not in side["TEARDOWN"], why
    # The requested method is the one negotiated, and it succeeded.
    lac_log = guest_log(guest.output, lac_tag, "pppd")
    # (the id is 0x1 unless the first request raced the LAC's pppd attaching to the session)
    lcp_req = rf"rcvd \[LCP ConfReq id=0x[0-9a-f]+ <asyncmap 0x0> {re.escape(LCP_AUTH[auth])} "
    assert re.search(lcp_req, lac_log), why
    method = "PAP" if auth == "pap" else "CHAP"
    assert f"{method} authentication succeeded" in lac_log, why
    assert f'user="{_user(k)}"' in lac_log or f'name = "{_user(k)}"' in lac_log, why


@_vm
@pytest.mark.parametrize("k", WRONG_PASSWORD)
def test_wrong_password_fails(guest: GuestResult, k: int) -> None:
    auth = PAIRS[k][0]
    lns_tag, lac_tag = f"lns{k}", f"lac{k}"
    why = _explain(guest, lns_tag, lac_tag)
    lns, lac = parse_markers(guest.output, lns_tag), parse_markers(guest.output, lac_tag)
    for side in (lns, lac):
        assert "PPP-UP" not in side, why
        assert side["PPP-FAIL"]["reason"] == "pppd-exited", why
        assert side["PPPVM-END"]["up"] == "no", why
    method = "PAP" if auth == "pap" else "CHAP"
    assert f"{method} authentication failed" in guest_log(guest.output, lac_tag, "pppd"), why
    lns_log = guest_log(guest.output, lns_tag, "pppd")
    assert re.search(rf"(?:{method} peer authentication failed|failed {method} auth)", lns_log), why


@_vm
def test_wrong_tunnel_secret_fails_before_any_call(guest: GuestResult) -> None:
    why = _explain(guest, "lns7", "lac7")
    lns, lac = parse_markers(guest.output, "lns7"), parse_markers(guest.output, "lac7")
    assert lac["PPP-FAIL"]["reason"] == "tunnel-closed", why
    assert lns["PPP-FAIL"]["reason"] == "timeout", why  # an LNS keeps waiting for a call
    assert "Invalid authentication for host 'pppvm-lns'" in guest_log(
        guest.output, "lac7", "xl2tpd"
    ), why
    assert "Invalid challenge authentication" in guest_log(guest.output, "lns7", "xl2tpd"), why
    assert guest_log(guest.output, "lac7", "pppd") == "", why  # pppd never started


@_vm
def test_variants(guest: GuestResult) -> None:
    """Interface names, IPCP DNS, both teardown modes and tunnel authentication took effect."""
    m = parse_all_markers(guest.output)
    assert m["lns1"]["PPP-UP"]["iface"] == "pvlns1"
    assert m["lac1"]["PPP-UP"]["iface"] == "pvlac1"
    assert m["lac2"]["PPP-UP"]["dns1"] == DNS2
    # "ppp": the pppds ended the link with LCP Terminate-Request/-Ack (both sides tear down
    # at the same moment, so which one's request gets through first varies).
    assert m["lac1"]["TEARDOWN"]["mode"] == "ppp"
    logs1 = guest_log(guest.output, "lac1", "pppd") + guest_log(guest.output, "lns1", "pppd")
    assert 'rcvd [LCP TermReq id=0x2 "User request"]' in logs1
    assert "[LCP TermAck id=0x2]" in logs1
    # "tunnel": the LNS's StopCCN reached the LAC's xl2tpd (or the other way round).
    assert m["lac2"]["TEARDOWN"]["mode"] == "tunnel"
    assert "Stop-Control-Connection-Notification" in guest_log(
        guest.output, "lac2", "xl2tpd"
    ) + guest_log(guest.output, "lns2", "xl2tpd")
    # Pair 3 challenged and answered both ways (xl2tpd's "debug avp" lines).
    for tag in ("lns3", "lac3"):
        log = guest_log(guest.output, tag, "xl2tpd")
        assert "challenge_avp: challenge avp found" in log
        assert "chalresp_avp: Challenge reply found" in log


# -- without the VM ------------------------------------------------------------------------------


def test_parse_markers_and_logs() -> None:
    out = "\n".join(
        [
            "noise",
            "@@PPP-UP tag=lac role=lac iface=ppp0 local=10.0.0.2 peer=10.0.0.1 secs=1.5",
            "|lac pppd| rcvd [LCP ConfReq id=0x1]",
            "|lac PING4| 64 bytes from 10.0.0.1",
            "@@PING4-OK tag=lac",
            "@@PPP-FAIL tag=lns role=lns reason=timeout secs=30.1",
            "@@LOG tag=lns source=pppd",
        ]
    )
    assert parse_markers(out, "lac")["PPP-UP"] == {
        "tag": "lac",
        "role": "lac",
        "iface": "ppp0",
        "local": "10.0.0.2",
        "peer": "10.0.0.1",
        "secs": "1.5",
    }
    assert "PING4-OK" in parse_markers(out, "lac")
    assert parse_markers(out, "lns")["PPP-FAIL"]["reason"] == "timeout"
    assert parse_markers(out, "nope") == {}
    with pytest.raises(ValueError, match="several fragments"):
        parse_markers(out)
    assert guest_log(out, "lac", "pppd") == "rcvd [LCP ConfReq id=0x1]\n"
    assert guest_log(out, "lac", "PING4") == "64 bytes from 10.0.0.1\n"


def test_scripts_configure_the_requested_auth_only() -> None:
    lac = lac_script(
        eth0="10.201.7.2/24", lns="10.201.7.1", user="a", password='p"w', auth="mschap-v2"
    )
    assert "listen-addr = 10.201.7.2" in lac and "lns = 10.201.7.1:1701" in lac
    assert "ip addr add 10.201.7.2/24 dev eth0" in lac
    for opt in ("refuse-pap", "refuse-chap", "refuse-mschap", "refuse-eap", "noauth"):
        assert f"\n{opt}\n" in lac
    assert "\nrefuse-mschap-v2\n" not in lac
    assert '\npassword "p\\"w"\n' in lac
    lns = lns_script(
        eth0="10.201.7.2/24",
        local_ip="10.99.0.1",
        ip_range="10.99.0.10-10.99.0.20",
        users={"a": "b"},
        auth="pap",
    )
    assert "\nauth\nrequire-pap\n" in lns and "require-chap" not in lns
    assert '"a" * "b" *' in lns and "listen-addr = 10.201.7.2" in lns
    assert "require authentication = no" in lns


def test_builders_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="auth"):
        lac_fragment(lns="10.0.0.1", user="u", password="p", auth="chap")
    with pytest.raises(ValueError, match="tag"):
        lac_fragment(lns="10.0.0.1", user="u", password="p", auth="pap", tag="Bad Tag")
    with pytest.raises(ValueError, match="control"):
        lac_fragment(lns="10.0.0.1", user="u", password="p\nq", auth="pap")
    with pytest.raises(ValueError, match="IPv4"):
        lac_fragment(lns="fd00::1", user="u", password="p", auth="pap")
    with pytest.raises(ValueError, match="user"):
        lns_fragment(local_ip="10.0.0.1", ip_range="10.0.0.2", users={}, auth="pap")
    with pytest.raises(ValueError, match="teardown"):
        lns_fragment(local_ip="10.0.0.1", ip_range="10.0.0.2", users={}, auth="none", teardown="x")
    a = lac_fragment(lns="10.0.0.1", user="u", password="p", auth="pap", tag="x")
    with pytest.raises(ValueError, match="distinct"):
        combine(a, a)
    with pytest.raises(ValueError, match="fragments"):
        combine(prelude() + a)
