"""The ``linux`` data-plane backend against the real ``net/l2tp`` (Debian 6.1, in the VM).

The guest runs the programs of ``test_linux_backend_guest.py`` with the host's virtualenv.

1. **Management, both backends, one boot** (:func:`mgmt_run`). ``kernel_has_l2tp()`` loads
   the modules itself (the guest's module tree is linked where ``modprobe`` looks). The same
   48 management requests -- tunnels over UDP and IP, v2 and v3, IPv4 and IPv6; Ethernet
   sessions with cookies, L2-specific sublayer and sequencing; PPP sessions of all four
   PPPoL2TP address kinds; modify, get by ids and by interface name, dumps, a dozen refusals,
   deletes and immediate re-creation -- run in one namespace on the ``linux`` backend and in
   another on the userspace backend. Checked: every reply and errno is the same; at each
   checkpoint the registry's dumps are the kernel's own netlink dumps; ``ip l2tp show``
   (text and JSON) prints exactly what pyl2tp's formatter makes of the backend's kernel
   dump; both backends leave the same devices with the same MTUs; closing the backend
   leaves the kernel empty. Then managed tunnels (a peer of plain sockets in the guest):
   v3/UDP Ethernet over IPv4 and IPv6, v2/UDP PPP with a channel and a ``pppN`` unit
   answering an ICMP echo, v3/IP Ethernet -- data in the kernel, control messages passed up
   once, to the listener.
2. **Pings to the userspace daemon** (:func:`peer_run`): two unmanaged L2TPv3 Ethernet
   pseudowires (UDP with cookies and sequencing, IP with no sublayer) between the ``linux``
   backend in the guest and ``pyl2tp daemon`` on the host, through the VM's tap. Pings both
   sizes; each side's counters are what the other side counted.
3. **PPP with pppd** (:func:`ppp_run`): ``pyl2tp daemon`` on the ``linux`` backend as an
   LNS in a guest namespace; xl2tpd + pppd dial it over a veth; the managed tunnel and the
   PPP session are the kernel's, PPP frames reach pyl2tp's endpoint through the kernel PPP
   channel; pings cross; the LNS's IP runs through a kernel ``pppN`` unit, not a TUN device.
4. **Dynamic L2TPv3 to the userspace daemon** (:func:`dynamic_run`): ``pyl2tp daemon`` in the
   guest picks the ``linux`` backend by itself (``auto``), dials ``pyl2tp daemon`` on the host
   (userspace backend) and places an Ethernet call; pings cross the kernel's ``l2tpeth``
   device and the host's TAP. Then ``pyl2tp --kernel show`` against ``ip l2tp show``, a
   tunnel deleted behind the daemon's back with ``ip l2tp del``, and an API tunnel left in
   the kernel by ``kill -9`` that the next start deletes.

Each boot takes 25-45 s of wall time.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.interop.test_kernel_interop import ip_leak
from tests.interop.test_linux_backend_guest import (
    DYN_HOST,
    DYN_SECRET,
    MARK,
    PEER_GUEST,
    PEER_HOST,
    PEER_PWS,
    PPP_LOCAL,
    PPP_PEER,
    REQUESTS,
)
from tests.support.daemon import Daemon, write_temp
from tests.support.kernelvm import (
    L2TP_MODULES,
    REPO_ROOT,
    GuestResult,
    modprobe_lines,
    require_vm,
    run_guest,
)
from tests.support.netns import NetNS

from pyl2tp.cli.iproute import OutputOptions, format_sessions, format_tunnels

pytestmark = [pytest.mark.kernelvm, pytest.mark.slow, pytest.mark.timeout(300)]

PY = f"{REPO_ROOT}/.venv/bin/python"
GUEST = (f"env PYTHONPATH={shlex.quote(f'{REPO_ROOT}/src:{REPO_ROOT}')} {PY} "
         "-m tests.interop.test_linux_backend_guest")


def parse(res: GuestResult) -> dict[str, Any]:
    """``@@LBK TAG JSON`` lines of a guest run (TAG may contain spaces)."""
    out: dict[str, Any] = {}
    for line in res.lines:
        if not line.startswith(MARK + " "):
            continue
        rest = line[len(MARK) + 1:]
        brace = min(i for i in (rest.find("{"), rest.find("[")) if i >= 0)
        out[rest[:brace].strip()] = json.loads(rest[brace:])
    return out


def _check(res: GuestResult, found: dict[str, Any], *tags: str) -> None:
    missing = [t for t in tags if t not in found]
    assert res.ok and not missing, (
        f"guest status {res.returncode}, missing {missing}\n{res.output}\n{res.host_stderr}")


# ------------------------------------------------------------------------------------------
# 1. management through both backends, and managed tunnels

def _ns_setup(ns: str) -> str:
    return "\n".join([
        f"ip netns add {ns}", f"ip -n {ns} link set lo up",
        f"ip -n {ns} link add lv0 type veth peer name lv1",
        f"ip -n {ns} link set lv0 up", f"ip -n {ns} link set lv1 up",
        f"ip -n {ns} addr add 10.214.50.1/24 dev lv0",
        f"ip -n {ns} addr add 10.214.50.3/24 dev lv0",
        f"ip -n {ns} addr add fd00:214:50::1/64 dev lv0 nodad", ""])


def mgmt_script() -> str:
    return "\n".join([
        # kernel_has_l2tp() runs modprobe itself: let it find the guest kernel's modules.
        'mkdir -p /lib/modules && ln -sfn "$VM_MODROOT/lib/modules/$VM_KVER" '
        '"/lib/modules/$VM_KVER"',
        modprobe_lines(("veth", "tun", "ppp_generic", "pppox")),
        "ip link set lo up",
        f"{GUEST} has-l2tp",
        modprobe_lines((*L2TP_MODULES, "l2tp_ppp")),
        _ns_setup("k"), _ns_setup("u"),
        f"ip netns exec k {GUEST} mgmt linux || echo 'mgmt linux failed'",
        f"ip netns exec u {GUEST} mgmt userspace || echo 'mgmt userspace failed'",
        "ip netns add m", "ip -n m link set lo up",
        "ip -n m link add md0 type veth peer name md1",
        "ip -n m link set md0 up", "ip -n m link set md1 up",
        "ip -n m addr add 10.214.70.1/24 dev md0", "ip -n m addr add 10.214.70.2/24 dev md0",
        "ip -n m addr add fd00:214:70::1/64 dev md0 nodad",
        "ip -n m addr add fd00:214:70::2/64 dev md0 nodad",
        f"ip netns exec m {GUEST} managed || echo 'managed failed'",
    ])


@pytest.fixture(scope="module")
def mgmt_run() -> dict[str, Any]:
    require_vm()
    res = run_guest(mgmt_script(), timeout=200)
    found = parse(res)
    found["_output"] = res.output
    found["_elapsed"] = res.elapsed
    _check(res, found, "HAS_L2TP", "REPLIES linux", "REPLIES userspace", "CLOSED",
           "MANAGED")
    return found


def test_kernel_has_l2tp_loads_the_modules(mgmt_run: dict[str, Any]) -> None:
    has = mgmt_run["HAS_L2TP"]
    assert has["before"] is False  # nothing loaded l2tp_netlink before the call
    assert has["result"] is True
    assert all(has["after"].values()), has


@pytest.fixture(scope="module")
def both(mgmt_run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The outputs of each backend: ``REPLIES`` and ``CHECKPOINT <name>``."""
    out: dict[str, dict[str, Any]] = {"linux": {}, "userspace": {}}
    for tag, value in mgmt_run.items():
        words = tag.split()
        if words and words[0] in ("REPLIES", "CHECKPOINT") and len(words) >= 2:
            out[words[1]][" ".join([words[0], *words[2:]])] = value
    assert out["linux"].get("REPLIES") and out["userspace"].get("REPLIES"), sorted(mgmt_run)
    return out


REQ_CMDS = [r for r in REQUESTS if r[0] != "@"]


@pytest.mark.parametrize("k", range(len(REQ_CMDS)),
                         ids=[f"{i}-{c}" for i, (c, _a, _d) in enumerate(REQ_CMDS)])
def test_both_backends_answer_alike(both: dict[str, dict[str, Any]], k: int) -> None:
    linux, user = both["linux"]["REPLIES"][k], both["userspace"]["REPLIES"][k]
    assert set(linux) == set(user), (REQ_CMDS[k], linux, user)
    if "error" in linux:
        assert linux["error"] == user["error"], (REQ_CMDS[k], linux, user)
    else:
        assert linux["ok"] == user["ok"], REQ_CMDS[k]


def _sorted_sessions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda s: (s["conn_id"], s["session_id"]))


CHECKPOINTS = [a for c, a, _d in REQUESTS if c == "@"]


@pytest.mark.parametrize("point", CHECKPOINTS)
def test_registry_shows_the_kernels_objects(both: dict[str, dict[str, Any]], point: str
                                            ) -> None:
    cp = both["linux"][f"CHECKPOINT {point}"]
    assert cp["tunnels"] == cp["kernel_tunnels"]
    # The kernel never reports l2spec_type; pyl2tp's replies add it.
    ours = [{k: v for k, v in s.items() if k != "l2spec_type"} for s in cp["sessions"]]
    assert _sorted_sessions(ours) == _sorted_sessions(cp["kernel_sessions"])


@pytest.mark.parametrize("point", CHECKPOINTS)
def test_ip_l2tp_show_prints_the_backends_dump(both: dict[str, dict[str, Any]], point: str
                                               ) -> None:
    cp = both["linux"][f"CHECKPOINT {point}"]
    ip = cp["ip"]
    for key in ip:
        assert ip[key]["rc"] == 0 and ip[key]["err"] == "", (key, ip[key])
    text, js = OutputOptions(), OutputOptions(json=True)
    assert ip["tunnel_text"]["out"] == format_tunnels(cp["kernel_tunnels"], text)
    assert ip["tunnel_json"]["out"] == format_tunnels(cp["kernel_tunnels"], js)
    # In the kernel's dump order, with iproute2's reuse of fields between entries.
    sessions = ip_leak(cp["kernel_sessions"])
    assert ip["session_text"]["out"] == format_sessions(sessions, text)
    assert ip["session_json"]["out"] == format_sessions(sessions, js)


@pytest.mark.parametrize("point", CHECKPOINTS)
def test_both_backends_hold_the_same_objects(both: dict[str, dict[str, Any]], point: str
                                             ) -> None:
    lin, usr = both["linux"][f"CHECKPOINT {point}"], both["userspace"][f"CHECKPOINT {point}"]
    assert lin["tunnels"] == usr["tunnels"]
    assert _sorted_sessions(lin["sessions"]) == _sorted_sessions(usr["sessions"])

    def devices(cp: dict[str, Any]) -> dict[str, int]:
        return {ln["ifname"]: ln["mtu"] for ln in cp["links"] if ln["kind"] != "veth"}
    # l2tpethN/kpwN from the kernel, TAPs from userspace: same names, same MTUs.
    assert devices(lin) == devices(usr)


def test_closing_the_backend_empties_the_kernel(mgmt_run: dict[str, Any]) -> None:
    closed = mgmt_run["CLOSED"]
    assert closed["kernel_tunnels"] == [] and closed["kernel_sessions"] == []
    assert closed["ip"]["tunnel_text"]["out"] == "" and closed["ip"]["session_text"]["out"] == ""
    assert {ln["ifname"] for ln in closed["links"]} == {"lv0", "lv1"}


def test_managed_udp_tunnel_runs_on_our_socket(mgmt_run: dict[str, Any]) -> None:
    m = mgmt_run["MANAGED"]
    assert m["udp_socket"] == {"local": ["10.214.70.1", 1701], "peer": ["10.214.70.2", 1801]}
    k = m["udp_kernel_tunnel"]
    # What the kernel reports comes from the socket we handed it.
    assert (k["conn_id"], k["peer_conn_id"], k["proto_version"], k["encap_type"]) == (
        40, 140, 3, 0)
    assert (k["ip_saddr"], k["ip_daddr"], k["udp_sport"], k["udp_dport"], k["udp_csum"]) == (
        "10.214.70.1", "10.214.70.2", 1701, 1801, True)


def test_managed_udp_data_in_the_kernel_control_to_us(mgmt_run: dict[str, Any]) -> None:
    u = mgmt_run["MANAGED"]["udp"]
    assert u["mpw0_rx_packets"] == 1  # the peer's frame came out of the l2tpeth device
    assert u["wire_out"] == u["expected_out"]  # our frame left with the session's header
    assert u["control"] == [{"listener": True, "data": "c803000c0000002800000000",
                             "from": ["10.214.70.2", 1801]}]
    assert u["endpoint"]["rx_unknown_session"] == 1  # the kernel passed up session 999
    s = u["session_stats"]
    assert (s["rx_packets"], s["tx_packets"], s["rx_errors"]) == (1, 1, 0)
    assert s["rx_bytes"] == 12 + 4 + len(bytes.fromhex(u["expected_out"])) - 16


def test_managed_udp6_tunnel_takes_the_sockets_checksum_options(mgmt_run: dict[str, Any]
                                                                ) -> None:
    u = mgmt_run["MANAGED"]["udp6"]
    k = u["kernel_tunnel"]
    assert (k["ip6_saddr"], k["ip6_daddr"], k["udp_sport"], k["udp_dport"]) == (
        "fd00:214:70::1", "fd00:214:70::2", 1701, 1801)
    # UDP_NO_CHECK6_TX on our socket is what the kernel reports as UDP_ZERO_CSUM6_TX.
    assert k.get("udp_zero_csum6_tx") is True and "udp_zero_csum6_rx" not in k
    assert u["m6pw0_rx_packets"] == 1
    assert u["control"] == [{"listener": True, "data": "c803000c0000002b00000000"}]
    assert u["wire_out"] == u["expected_out"]  # l2spec_type none: no sublayer


def test_managed_ppp_channel_and_unit(mgmt_run: dict[str, Any]) -> None:
    p = mgmt_run["MANAGED"]["ppp"]
    # LCP through the channel: FF 03 stripped on the way up, added on the way down.
    assert p["channel_frames"] == ["c0210101000a050601020304"]
    assert p["wire_out"] == p["expected_out"]
    assert p["unit"] == "kppp0"
    assert p["unit_frames"] == ["802101010004"]  # NCPs arrive on the unit's descriptor
    # An IPv4 echo request through the unit: answered by the guest's stack, out the tunnel.
    assert p.get("echo_reply_ip") == {"src": PPP_LOCAL, "dst": PPP_PEER, "icmp_type": 0}, p
    assert p["kppp0"]["rx_packets"] >= 1 and p["kppp0"]["tx_packets"] >= 1
    assert p["unit_gone"] is True
    ioc, stats = p["ioc_stats"], p["session_stats"]
    assert (ioc["tunnel_id"], ioc["session_id"]) == (41, 7)
    assert stats["rx_packets"] == ioc["rx_packets"] == 3  # LCP, IPCP, echo request
    assert stats["tx_packets"] == ioc["tx_packets"] >= 2  # LCP ack, echo reply
    assert p["channel_counters"]["tx_errors"] == 0


def test_managed_ip_tunnel(mgmt_run: dict[str, Any]) -> None:
    ip = mgmt_run["MANAGED"]["ip"]
    assert ip["ipw0_rx_packets"] == 1
    assert ip["wire_out"] == ip["expected_out"]
    # Control passed up exactly once: the listener's filter lets only session id 0 through
    # and the tunnel's own L2TP/IP socket is drained, not passed up.
    assert ip["control_from_peer"] == ["c803000c0000002a00000000"]
    k = ip["kernel_tunnel"]
    assert (k["encap_type"], k["ip_saddr"], k["ip_daddr"]) == (1, "10.214.70.1", "10.214.70.2")
    assert ip["session_stats"]["rx_packets"] == 1 and ip["session_stats"]["tx_packets"] == 1


def test_managed_close_leaves_nothing(mgmt_run: dict[str, Any]) -> None:
    closed = mgmt_run["MANAGED"]["closed"]
    assert closed["kernel_tunnels"] == [] and closed["kernel_sessions"] == []
    assert {ln["ifname"] for ln in closed["links"]} == {"md0", "md1"}
    assert "Tunnel 43, encap UDP" in mgmt_run["MANAGED"]["ip_l2tp_show"]


# ------------------------------------------------------------------------------------------
# 2. pings between the linux backend (guest) and the userspace daemon (host)

HOST_TAP = "10.215.0.1"


def _host_pws() -> list[tuple[list[str], list[str], str, str]]:
    """The host's mirror of :data:`PEER_PWS`: (tunnel args, session args, device, inner)."""
    out = []
    for k, pw in enumerate(PEER_PWS, start=1):
        t, s = pw["tunnel"], pw["session"]
        tunnel = ["add", "tunnel", "tunnel_id", str(t["peer_conn_id"]), "peer_tunnel_id",
                  str(t["conn_id"]), "encap", "udp" if t["encap_type"] == 0 else "ip",
                  "local", PEER_HOST, "remote", PEER_GUEST]
        if t["encap_type"] == 0:
            tunnel += ["udp_sport", str(t["udp_dport"]), "udp_dport", str(t["udp_sport"])]
        session = ["add", "session", "name", f"hk{k}", "tunnel_id", str(t["peer_conn_id"]),
                   "session_id", str(s["peer_session_id"]), "peer_session_id",
                   str(s["session_id"])]
        if s.get("peer_cookie"):
            session += ["cookie", s["peer_cookie"]]
        if s.get("cookie"):
            session += ["peer_cookie", s["cookie"]]
        session += ["l2spec_type", "none" if s.get("l2spec_type") == 0 else "default"]
        session += ["seq", "both" if s.get("send_seq") else "none"]
        out.append((tunnel, session, f"hk{k}", pw["host_inner"]))
    return out


def _run_on_tap(host: NetNS, prelude: str, mode: str, tap_prefix: str, *, timeout: float
                ) -> GuestResult:
    """Boot the guest on a tap into ``host`` (guest PEER_GUEST, host behind HOST_TAP) and run
    the guest program's ``mode``."""
    script = "\n".join([
        prelude,
        "ip link set lo up",
        "echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6",
        f"ip addr add {PEER_GUEST}/24 dev eth0", "ip link set eth0 up",
        f"ip route add 10.215.1.0/24 via {HOST_TAP}",
        f"{GUEST} {mode} || echo '{mode} failed'",
    ])
    return run_guest(script, tap=f"{tap_prefix}{secrets.token_hex(3)}", netns=host.name,
                     tap_addr=f"{HOST_TAP}/24", timeout=timeout)


@pytest.fixture(scope="module")
def peer_run() -> Iterator[dict[str, Any]]:
    require_vm()
    host = NetNS("lbh")
    daemon = Daemon(host, log_level="warning")
    try:
        host.addr_add("lo", f"{PEER_HOST}/32")
        # The tap appears only when QEMU starts; until then a veth route covers the guest's
        # prefix so that tunnels to it can be created (no route: ENETUNREACH).
        host.ip("link", "add", "lbcover0", "type", "veth", "peer", "name", "lbcover1")
        host.link_up("lbcover0")
        host.link_up("lbcover1")
        host.ip("route", "add", "10.215.0.0/16", "dev", "lbcover0")
        daemon.start()
        for tunnel, session, dev, inner in _host_pws():
            daemon.cli(tunnel)
            daemon.cli(session)
            host.sysctl(f"net.ipv6.conf.{dev}.disable_ipv6", 1)
            host.addr_add(dev, f"{inner}/24")
            host.link_up(dev)
        res = _run_on_tap(host, modprobe_lines(L2TP_MODULES), "peer", "lbt", timeout=200)
        found = parse(res)
        _check(res, found, "PEER")
        found["host"] = {dev: daemon.counters(int(t[t.index("tunnel_id") + 1]),
                                              int(s[s.index("session_id") + 1]))
                         for t, s, dev, _i in _host_pws()}
        found["_elapsed"] = res.elapsed
        yield found
    finally:
        daemon.close()
        host.close()


def test_pseudowires_set_up(peer_run: dict[str, Any]) -> None:
    assert all("ok" in r for r in peer_run["PEER"]["setup"]), peer_run["PEER"]["setup"]


@pytest.mark.parametrize("pw", [p["name"] for p in PEER_PWS])
def test_pings_cross_the_kernel_pseudowire(peer_run: dict[str, Any], pw: str) -> None:
    pings = peer_run["PEER"]["pings"][pw]
    assert pings["small"]["rc"] == 0, pings
    assert pings["big"]["rc"] == 0, pings


@pytest.mark.parametrize("k", range(len(PEER_PWS)))
def test_counters_agree_with_the_userspace_peer(peer_run: dict[str, Any], k: int) -> None:
    pw = PEER_PWS[k]
    sid = pw["session"]["session_id"]
    guest = next(s for s in peer_run["PEER"]["sessions"]["ok"] if s["session_id"] == sid)
    kernel = next(s for s in peer_run["PEER"]["kernel_sessions"] if s["session_id"] == sid)
    assert guest["stats"] == kernel["stats"]  # the registry shows the kernel's counters
    host = peer_run["host"][f"hk{k + 1}"]
    g = guest["stats"]
    assert g["tx_packets"] > 10
    # Nothing is sent once the guest's last ping has been answered, so what one side sent
    # the other received, packet for packet and byte for byte.
    assert (g["tx_packets"], g["tx_bytes"]) == (host["rx_packets"], host["rx_bytes"])
    assert (g["rx_packets"], g["rx_bytes"]) == (host["tx_packets"], host["tx_bytes"])
    for key in ("rx_errors", "rx_seq_discards", "rx_cookie_discards", "rx_oos_packets"):
        assert g[key] == 0 and host[key] == 0, (key, g, host)
    if pw["session"].get("send_seq"):
        assert guest["send_seq"] and guest["recv_seq"]


# ------------------------------------------------------------------------------------------
# 3. PPP: pyl2tp daemon on the linux backend as LNS, xl2tpd + pppd as LAC

LNS_CONFIG = """
[daemon]
host_name = "pyl2tp-kernel-lns"

[[listen]]
address = "10.217.0.1"

[[ppp]]
name = "lns"
auth = ["pap"]
secrets = "{secrets}"
local_ip = "10.217.9.1"
pool = "10.217.9.10-10.217.9.20"

[[peer]]
name = "lac"
ppp = "lns"
"""


def ppp_script(cfg: str) -> str:
    from tests.support.pppvm import lac_fragment, prelude

    lns_side = "\n".join([
        "ip netns add lns", "ip -n lns link set lo up",
        "ip link add pv0 type veth peer name pv1", "ip link set pv1 netns lns",
        "ip addr add 10.217.0.2/24 dev pv0", "ip link set pv0 up",
        "ip -n lns addr add 10.217.0.1/24 dev pv1", "ip -n lns link set pv1 up",
        f"ip netns exec lns {GUEST} daemon --config {cfg} --log-level info "
        "> /tmp/lns.log 2>&1 &",
        "LNS=$!",
        "for i in $(seq 1 100); do [ -S /run/pyl2tp/lns.sock ] && break; sleep 0.2; done",
    ])
    # One python start for both queries (each costs seconds in the emulated guest).
    query = ("from pyl2tp.cli.main import main; main(['-j', '-s', 'show', 'session']); "
             "print('@@@'); main(['ppp', 'show', '-j'])")
    commands = "\n".join([
        'pppvm_check PING4 ping -c 3 -i 0.3 -W 3 "$PPP_PEER"',
        'pppvm_check LNSPING ip netns exec lns ping -c 3 -i 0.3 -W 3 "$PPP_LOCAL"',
        "pppvm_check KTUNNEL ip netns exec lns ip l2tp show tunnel",
        "pppvm_check KSESSION ip netns exec lns ip l2tp show session",
        "pppvm_check KLINKS ip netns exec lns ip -d -j link show",
        f"pppvm_check API ip netns exec lns env PYTHONPATH={REPO_ROOT}/src {PY} -c "
        f"{shlex.quote(query)}",
    ])
    lac = lac_fragment(lns="10.217.0.1", user="kim", password="kernel secret", auth="pap",
                       listen_addr="10.217.0.2", commands=commands, wait=60)
    return (prelude(extra_modules=("veth", "tun", *L2TP_MODULES)) + lns_side + "\n" + lac
            + "kill -TERM $LNS; wait $LNS\n"
            + "echo '--- lns log'; sed 's/^/|lns| /' /tmp/lns.log\n")


@pytest.fixture(scope="module")
def ppp_run() -> Iterator[dict[str, Any]]:
    from tests.support.pppvm import guest_log, parse_markers, require_pppd_vm

    require_pppd_vm()
    secrets_file = write_temp('kim * "kernel secret"\n', suffix=".secrets")
    cfg = write_temp(LNS_CONFIG.format(secrets=secrets_file))
    try:
        res = run_guest(ppp_script(cfg), timeout=200)
        yield {"res": res, "m": parse_markers(res.output, "lac"),
               "log": lambda src: guest_log(res.output, "lac", src)}
    finally:
        os.unlink(cfg)
        os.unlink(secrets_file)


def test_pppd_brings_ppp_up_over_the_kernel_backend(ppp_run: dict[str, Any]) -> None:
    m, out = ppp_run["m"], ppp_run["res"].output
    assert "PPP-UP" in m, out
    assert m["PPP-UP"]["peer"] == "10.217.9.1", m
    assert "PING4-OK" in m and "LNSPING-OK" in m, out


def test_the_tunnel_and_session_are_the_kernels(ppp_run: dict[str, Any]) -> None:
    m, log = ppp_run["m"], ppp_run["log"]
    assert "KTUNNEL-OK" in m and "KSESSION-OK" in m
    tunnels = log("KTUNNEL")
    assert "encap UDP" in tunnels and "From 10.217.0.1 to 10.217.0.2" in tunnels, tunnels
    assert "UDP source / dest ports: 1701/1701" in tunnels
    assert "Session " in log("KSESSION")
    sessions_text, links_text = log("API").split("@@@\n")
    sessions = json.loads(sessions_text)
    assert len(sessions) == 1
    stats = sessions[0]["stats"]
    # The kernel counted the PPP session's packets: LCP, PAP, IPCP and the pings.
    assert stats["rx"]["packets"] >= 9 and stats["tx"]["packets"] >= 9, stats
    assert stats["rx"]["errors"] == 0 and stats["tx"]["errors"] == 0
    links = json.loads(links_text)
    assert links and links[0]["user"] == "kim" and links[0]["ipv4_up"], links


def test_ip_of_the_ppp_session_stays_in_a_kernel_unit(ppp_run: dict[str, Any]) -> None:
    links = json.loads(ppp_run["log"]("KLINKS"))
    kinds = {ln["ifname"]: ln.get("linkinfo", {}).get("info_kind") for ln in links}
    ppp = json.loads(ppp_run["log"]("API").split("@@@\n")[1])
    # ppp_generic's pppN (kind "ppp"), not a TUN device fed by Python (kind "tun").
    assert kinds.get(ppp[0]["ifname"]) == "ppp", kinds


def test_elapsed_budget(mgmt_run: dict[str, Any]) -> None:
    """Each boot stays within the suite's budget (a regression guard, not a benchmark)."""
    assert mgmt_run["_elapsed"] < 90, mgmt_run["_elapsed"]



# ------------------------------------------------------------------------------------------
# 4. a dynamic L2TPv3 Ethernet call from the linux backend (guest) to the userspace daemon

DYN_CONFIG = f"""
[daemon]
host_name = "host-userspace"

[[listen]]
encap = "udp"
address = "{PEER_HOST}"

[[peer]]
name = "guest"
host_name = "guest"
secret = "{DYN_SECRET}"
"""


def _configure_host_side(daemon: Daemon, host: NetNS, stop: threading.Event,
                         seen: dict[str, Any]) -> None:
    """Address the host's TAP as soon as the guest's call brings it up (the guest script
    runs meanwhile), and remember the host's last view of its sessions."""
    while not stop.wait(0.3):
        try:
            sessions = json.loads(daemon.cli(["-j", "-s", "show", "session"]).stdout or "[]")
        except Exception:  # the daemon may be busy: try again
            continue
        for s in sessions:
            seen["sessions"] = sessions
            dev = s.get("interface")
            if dev and dev not in seen.setdefault("configured", []):
                host.sysctl(f"net.ipv6.conf.{dev}.disable_ipv6", 1)
                host.addr_add(dev, f"{DYN_HOST}/24")
                host.link_up(dev)
                seen["configured"].append(dev)


@pytest.fixture(scope="module")
def dynamic_run() -> Iterator[dict[str, Any]]:
    require_vm()
    host = NetNS("lbd")
    cfg = write_temp(DYN_CONFIG)
    daemon = Daemon(host, log_level="info", extra_args=["--config", cfg])
    stop, seen = threading.Event(), {}
    watcher = threading.Thread(target=_configure_host_side, args=(daemon, host, stop, seen))
    try:
        host.addr_add("lo", f"{PEER_HOST}/32")
        daemon.start()
        watcher.start()
        # The daemon's kernel_has_l2tp() loads the modules itself (auto).
        res = _run_on_tap(host, "\n".join([
            'mkdir -p /lib/modules && ln -sfn "$VM_MODROOT/lib/modules/$VM_KVER" '
            '"/lib/modules/$VM_KVER"', modprobe_lines(("veth", "tun"))]),
            "dynamic", "lbd", timeout=240)
        found = parse(res)
        _check(res, found, "DYNAMIC")
        stop.set()
        watcher.join()
        found["host"] = seen
        found["host_tunnels_after"] = json.loads(
            daemon.cli(["-j", "show", "tunnel"]).stdout or "[]")
        found["_output"] = res.output
        yield found
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        daemon.close()
        host.close()
        os.unlink(cfg)


def test_auto_selects_the_kernel_and_says_so(dynamic_run: dict[str, Any]) -> None:
    d = dynamic_run["DYNAMIC"]
    assert d["version"]["backend"] == "linux", d["version"]
    assert d["version"]["backend_reason"] == "auto: the kernel has L2TP"
    assert "(backend linux, auto: the kernel has L2TP)" in d["log"]


def test_dynamic_l2tpv3_ethernet_call_carries_pings(dynamic_run: dict[str, Any]) -> None:
    d = dynamic_run["DYNAMIC"]
    assert d["dial"]["rc"] == 0 and d["established"], d["dial"]
    assert d["call"]["rc"] == 0 and d["device"], d["call"]
    assert dynamic_run["host"].get("configured"), dynamic_run["host"]
    assert d["ping"] == 0 and d["ping_big"] == 0, dynamic_run["_output"][-3000:]
    # The guest's end is the kernel's l2tpeth device (no rtnl kind of its own), not a TAP.
    assert d["link"][0].get("linkinfo", {}).get("info_kind") != "tun", d["link"]
    assert "interface name: kdyn0" in d["ip_session"], d["ip_session"]
    guest = d["sessions"][0]["stats"]
    host = dynamic_run["host"]["sessions"][0]["stats"]
    assert guest["tx"]["packets"] >= 8 and host["rx"]["packets"] >= 8, (guest, host)
    assert guest["rx"]["errors"] == 0 and host["rx"]["errors"] == 0


def test_kernel_option_shows_what_ip_l2tp_shows(dynamic_run: dict[str, Any]) -> None:
    d = dynamic_run["DYNAMIC"]
    assert d["kernel_tunnel"]["rc"] == 0 and d["kernel_session"]["rc"] == 0
    assert d["kernel_tunnel"]["out"] == d["ip_tunnel"] != ""
    assert d["kernel_session"]["out"] == d["ip_session"] != ""


def test_kernel_option_adds_sets_and_deletes_like_ip_l2tp(dynamic_run: dict[str, Any]) -> None:
    kx = dynamic_run["DYNAMIC"]["kx"]
    for step in ("add", "add_session", "set", "del"):
        assert kx[step]["rc"] == 0 and kx[step]["err"] == "", (step, kx[step])
    session = next(s for s in json.loads(kx["shown"]) if s["tunnel_id"] == 700)
    assert (session["session_id"], session["peer_session_id"], session["interface"]) == (
        7, 8, "kx0")
    assert "recv_seq" in session and "send_seq" in session, session  # set ... seq both
    # The daemon's registry holds only its own tunnels; the kernel's other one is not its.
    assert 700 not in [t["tunnel_id"] for t in kx["daemon_tunnels"]]
    assert "Tunnel 700," not in kx["after_del"]  # ip shows every tunnel, 700 is gone
    assert kx["del_missing"]["rc"] != 0
    assert kx["del_missing"]["err"] == kx["ip_del_missing"], kx


def test_a_tunnel_deleted_behind_the_daemons_back_is_cleared(dynamic_run: dict[str, Any]
                                                             ) -> None:
    d = dynamic_run["DYNAMIC"]
    assert d["external_del"] == 0
    assert d["conn_after_external"] in ("gone", "closing", "dead"), d["conn_after_external"]
    assert d["after_external"] == []
    assert "deleted from the kernel by someone else (kernel notification)" in d["log"], d["log"]
    # The control connection was cleared with the peer, which dropped its side as well.
    assert dynamic_run["host_tunnels_after"] == []


def test_a_killed_daemons_api_tunnel_is_deleted_at_the_next_start(dynamic_run: dict[str, Any]
                                                                  ) -> None:
    d = dynamic_run["DYNAMIC"]
    assert d["add_leftover"]["rc"] == 0, d["add_leftover"]
    assert "Tunnel 900, encap UDP" in d["after_kill"]
    assert d["after_restart"] == ""
    assert "deleted 1 kernel tunnels a previous run left behind" in d["log"]
