"""Golden `ip l2tp` behaviour, recorded against the real kernel inside the reference VM.

pyl2tp's `ip l2tp` clone and its netlink-compatible management layer must behave like iproute2
talking to net/l2tp: the same stdout, stderr and exit status, the same kernel errors, the same
l2tpeth MTUs. Reading source gets most of that right; this script records what actually happens,
so tests can compare byte for byte instead of trusting notes.

Every scenario runs in a fresh network namespace (so kernel state never leaks between scenarios)
that has `lo` up and a dummy interface `dum0` carrying local addresses (see ENV_SETUP). Records in
one scenario run in order and may depend on earlier ones. The recorded argv is the command as run
*inside* the namespace (the `ip netns exec NS` wrapper is not part of it).

Run inside the guest only (it loads modules and creates namespaces):
    python3 ip_l2tp_cases.py OUT.json
Standard library only: the guest runs the host's system python3.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GENL = HERE / "l2tp_genl.py"
DEBUGFS = "/tmp/l2tp-debugfs"
MODULES = ["l2tp_core", "l2tp_netlink", "l2tp_eth", "l2tp_ip", "l2tp_ip6", "l2tp_debugfs"]

# Addresses: 192.0.2.0/24 and 2001:db8::/64 are documentation ranges, only ever configured on a
# dummy interface inside a throwaway namespace inside the VM; remotes (.2 / ::2) do not exist.
ENV_SETUP = [
    "ip link set lo up",
    "ip link add dum0 type dummy",
    "ip link set dum0 up",
    "ip addr add 192.0.2.1/24 dev dum0",
    "ip addr add 192.0.2.3/24 dev dum0",
    "ip -6 addr add 2001:db8::1/64 dev dum0 nodad",
    "ip -6 addr add 2001:db8::3/64 dev dum0 nodad",
]
LOCAL4, LOCAL4B, REMOTE4 = "192.0.2.1", "192.0.2.3", "192.0.2.2"
LOCAL6, LOCAL6B, REMOTE6 = "2001:db8::1", "2001:db8::3", "2001:db8::2"


class Recorder:
    """Runs commands in the current scenario's namespace and appends one record per command."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.scenarios: list[dict[str, Any]] = []
        self.scenario = ""
        self.ns = ""
        self.step = 0
        self.pending_delay = 0.0

    # -- scenario lifecycle -------------------------------------------------------------
    def begin(self, name: str, description: str, extra_env: list[str] | None = None) -> None:
        """Fresh namespace with the standard environment; env commands are recorded too."""
        self.scenario = name
        self.ns = f"cap-{len(self.scenarios)}"
        self.step = 0
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        env = ENV_SETUP + (extra_env or [])
        self.scenarios.append({"name": name, "description": description, "netns_env": env})
        for cmd in env:
            self.run(shlex.split(cmd), kind="env", note="environment setup")

    def end(self) -> None:
        """Drop the namespace; the kernel tears down any remaining tunnels with it."""
        subprocess.run(["ip", "netns", "del", self.ns], check=False)
        time.sleep(0.3)

    def settle(self, seconds: float = 0.5) -> None:
        """Tunnel/session deletion is asynchronous in the kernel (a workqueue); wait before the
        next command so that the recorded output does not depend on a race."""
        time.sleep(seconds)
        self.pending_delay += seconds

    # -- command recording --------------------------------------------------------------
    def run(self, argv: list[str], *, kind: str, note: str = "",
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
        full = ["ip", "netns", "exec", self.ns, *argv] if self.ns else argv
        p = subprocess.run(full, capture_output=True, timeout=60)
        rec: dict[str, Any] = {
            "scenario": self.scenario,
            "step": self.step,
            "kind": kind,
            "argv": argv,
            "stdout": p.stdout.decode(errors="surrogateescape"),
            "stderr": p.stderr.decode(errors="surrogateescape"),
            "exit_status": p.returncode,
            "note": note,
        }
        if self.pending_delay:
            rec["delay_before"] = round(self.pending_delay, 2)
            self.pending_delay = 0.0
        if extra:
            rec.update(extra)
        self.step += 1
        self.records.append(rec)
        return rec

    def l2(self, words: str, note: str = "", opts: str = "") -> dict[str, Any]:
        """`ip [opts] l2tp WORDS`; words are shell-split so tests can read them naturally."""
        argv = ["ip", *shlex.split(opts), "l2tp", *shlex.split(words)]
        return self.run(argv, kind="ip_l2tp", note=note)

    def l2argv(self, args: list[str], note: str = "") -> dict[str, Any]:
        """`ip l2tp` with an exact argv (for empty strings and other unsplittable words)."""
        return self.run(["ip", "l2tp", *args], kind="ip_l2tp", note=note)

    def link(self, ifname: str, note: str = "") -> dict[str, Any]:
        """The l2tpeth device as the kernel created it: name, MTU (and its bounds), type."""
        rec = self.run(["ip", "-j", "-d", "link", "show", "dev", ifname], kind="link",
                       note=note or f"l2tpeth device {ifname}")
        info: dict[str, Any] | None = None
        if rec["exit_status"] == 0:
            data = json.loads(rec["stdout"])[0]
            keys = ("ifname", "mtu", "min_mtu", "max_mtu", "link_type", "operstate", "flags",
                    "txqlen", "qdisc", "num_tx_queues", "num_rx_queues", "gso_max_size",
                    "gso_max_segs")
            info = {k: data.get(k) for k in keys}
        rec["link"] = info
        return rec

    def link_stats(self, ifname: str, note: str = "") -> dict[str, Any]:
        """`ip -s -j link show` of an l2tpeth device: the only counters iproute2 shows."""
        rec = self.run(["ip", "-s", "-j", "link", "show", "dev", ifname], kind="link_stats",
                       note=note or f"netdev counters of {ifname}")
        rec["stats64"] = json.loads(rec["stdout"])[0].get("stats64") if rec["exit_status"] == 0 \
            else None
        return rec

    def debugfs(self, note: str = "") -> dict[str, Any]:
        """l2tp_debugfs's per-netns view (the file shows the opener's namespace)."""
        return self.run(["cat", f"{DEBUGFS}/l2tp/tunnels"], kind="debugfs",
                        note=note or "debugfs /sys/kernel/debug/l2tp/tunnels")

    def genl(self, *query: str, note: str = "") -> dict[str, Any]:
        """Raw netlink reply of the l2tp family, decoded attribute by attribute."""
        rec = self.run([sys.executable, str(GENL), *query], kind="genl",
                       note=note or "raw generic netlink: " + " ".join(query))
        rec["argv"] = ["l2tp_genl.py", *query]
        rec["genl"] = json.loads(rec["stdout"]) if rec["exit_status"] == 0 else None
        return rec


def tunnel(tid: int, ptid: int, *, encap: str = "udp", fam: int = 4, sport: int | None = None,
           dport: int | None = None, extra: str = "", local: str | None = None) -> str:
    """`add tunnel` words for the standard environment."""
    loc = local or (LOCAL4 if fam == 4 else LOCAL6)
    rem = REMOTE4 if fam == 4 else REMOTE6
    words = (f"add tunnel tunnel_id {tid} peer_tunnel_id {ptid} encap {encap} "
             f"local {loc} remote {rem}")
    if encap == "udp":
        words += f" udp_sport {sport or 5000 + tid} udp_dport {dport or 6000 + tid}"
    return (words + " " + extra).strip()


# ---------------------------------------------------------------------------------------------
def scenario_no_modules(r: Recorder) -> None:
    r.begin("no_modules", "Before any L2TP module is loaded: the genl family cannot be resolved "
            "(module autoloading cannot work in the VM, as in a kernel without L2TP).")
    r.l2("show tunnel", "family lookup fails")
    r.l2("show session")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 1 encap ip local 192.0.2.1 remote 192.0.2.2")
    r.l2("help", "usage without the family")
    r.l2("", "no arguments without the family")
    r.l2("bogus")
    r.end()


def scenario_dispatch(r: Recorder) -> None:
    r.begin("usage_and_dispatch", "Usage text, help, command prefixes, unknown commands, "
            "empty listings.")
    r.l2("", "no arguments")
    r.l2("help")
    r.l2("h", "help prefix")
    r.l2("he")
    r.l2("foo", "unknown command")
    r.l2("addx tunnel", "not a prefix of add")
    r.l2("add", "neither tunnel nor session")
    r.l2("add help")
    r.l2("add tunnel help")
    r.l2("add tunnel bogus", "unknown keyword")
    r.l2("add tun tunnel_id 1", "object keywords are not prefix-matched")
    r.l2("add tunnel tunnel_id", "keyword without its value")
    r.l2("add session name", "keyword without its value")
    r.l2("show", "neither tunnel nor session")
    r.l2("del", "neither tunnel nor session")
    r.l2("add tunnel_id 1 peer_tunnel_id 2", "arguments but neither tunnel nor session")
    r.l2("show tunnel_id 1", "arguments but neither tunnel nor session")
    r.l2("del tunnel_id 1", "arguments but neither tunnel nor session")
    r.l2("show tunnel bogus", "unknown keyword on show")
    r.l2("show tunnel help", "help keyword on show")
    r.l2("delete tunnel")
    r.l2("show tunnel", "empty")
    r.l2("show session", "empty")
    r.l2("show tunnel", "empty, JSON", opts="-j")
    r.l2("show session", "empty, JSON", opts="-j")
    r.l2("show tunnel", "empty, pretty JSON", opts="-j -p")
    r.l2("lst tunnel", "lst alias")
    r.l2("list session", "list alias")
    r.l2("ls tunnel", "ls: prefix of lst?")
    r.l2("s tunnel", "s: prefix of show")
    r.l2("sh session tunnel_id 1")
    r.l2(tunnel(1, 2, encap="ip").replace("add tunnel", "a tunnel"), "a: prefix of add")
    r.l2("show tunnel")
    r.l2("d tunnel tunnel_id 1", "d: prefix of delete")
    r.settle()
    r.l2("show tunnel")
    r.l2("del tunnel session tunnel_id 1", "both keywords, no session id")
    r.end()


def scenario_tunnel_validation(r: Recorder) -> None:
    r.begin("add_tunnel_validation", "`add tunnel` argument checks in validation order, invalid "
            "values, and errors the kernel returns for tunnels.")
    base = f"tunnel_id 1 peer_tunnel_id 2 local {LOCAL4} remote {REMOTE4} udp_sport 5000"
    r.l2("add tunnel", "first check: tunnel_id")
    r.l2("add tunnel tunnel_id 1", "then peer_tunnel_id")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2", "then local")
    r.l2(f"add tunnel tunnel_id 1 peer_tunnel_id 2 local {LOCAL4}", "then remote")
    r.l2(f"add tunnel tunnel_id 1 peer_tunnel_id 2 local {LOCAL4} remote {REMOTE4}",
         "then udp_sport")
    r.l2(f"add tunnel {base}", "then udp_dport")
    r.l2(f"add tunnel peer_tunnel_id 2 local {LOCAL4} remote {REMOTE4} udp_sport 1 udp_dport 2",
         "tunnel_id checked before the rest")
    r.l2(f"add tunnel tunnel_id 1 local {LOCAL4} remote {REMOTE4} udp_sport 1 udp_dport 2",
         "peer_tunnel_id missing, rest present")
    r.l2(f"add tunnel tunnel_id 1 peer_tunnel_id 2 remote {REMOTE4} udp_sport 1 udp_dport 2",
         "local missing, rest present")
    r.l2(f"add tunnel tunnel_id 1 peer_tunnel_id 2 local {LOCAL4} udp_sport 1 udp_dport 2",
         "remote missing, rest present")
    r.l2(f"add tunnel tunnel_id 1 peer_tunnel_id 2 local {LOCAL4} remote {REMOTE4} udp_dport 2",
         "udp_sport missing, dport present")
    r.l2(f"add tunnel tunnel_id 0 peer_tunnel_id 2 local {LOCAL4} remote {REMOTE4} encap ip",
         "id 0 counts as missing")
    r.l2(f"add tunnel tunnel_id 1 peer_tunnel_id 0 local {LOCAL4} remote {REMOTE4} encap ip",
         "peer id 0 counts as missing")
    r.l2(f"add tunnel session tunnel_id 1 peer_tunnel_id 2 local {LOCAL4} remote {REMOTE4} "
         "encap ip", "tunnel+session: session ids are checked first")
    r.l2(f"add tunnel session tunnel_id 1 peer_tunnel_id 2 session_id 3 local {LOCAL4} "
         f"remote {REMOTE4} encap ip", "tunnel+session: peer_session_id missing")
    for bad in ("abc", "-1", "4294967296", "0x", "08", "1.5", "0x100000000", "' 1'", "''"):
        r.l2(f"add tunnel tunnel_id {bad} peer_tunnel_id 2", f"invalid ID {bad}")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id zz", "invalid peer ID")
    r.l2("add tunnel tid 1 ptid -5", "invalid alias ID")
    for bad in ("65536", "abc", "-1", "0x10000", "''"):
        r.l2(f"add tunnel {base.replace('5000', bad)} udp_dport 6000", f"invalid port {bad}")
    r.l2(f"add tunnel {base} udp_dport 99999", "invalid dport")
    r.l2(f"add tunnel {base} udp_dport 6000 udp_csum maybe", "bad udp_csum")
    r.l2(f"add tunnel {base} udp_dport 6000 udp6_csum_tx maybe", "bad udp6_csum_tx")
    r.l2(f"add tunnel {base} udp_dport 6000 udp6_csum_rx maybe", "bad udp6_csum_rx")
    r.l2(f"add tunnel {base} udp_dport 6000 udp_csum ON", "case of on/off")
    r.l2(f"add tunnel {base} udp_dport 6000 encap gre", "unknown encap")
    r.l2(f"add tunnel {base} udp_dport 6000 encap UDP", "encap case")
    r.l2(f"add tunnel {base} udp_dport 6000 encap", "encap without value")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2 local bogus remote 192.0.2.2 encap ip",
         "bad local address")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2 local 192.0.2.1 remote 300.1.1.1 encap ip",
         "bad remote address")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2 local 192.0.2.1/24 remote 192.0.2.2 encap ip",
         "prefix instead of address")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2 local any remote 192.0.2.2 encap ip",
         "local any")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2 local 192.0.2.1 remote any encap ip",
         "remote any")
    r.l2(f"add tunnel tunnel_id 1 peer_tunnel_id 2 local {LOCAL4} remote {REMOTE6} encap ip",
         "mixed families v4/v6")
    r.l2(f"add tunnel tunnel_id 1 peer_tunnel_id 2 local {LOCAL6} remote {REMOTE4} encap udp "
         "udp_sport 5000 udp_dport 6000", "mixed families v6/v4 udp")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2 local 198.51.100.1 remote 192.0.2.2 encap udp "
         "udp_sport 5000 udp_dport 6000", "local address not configured (udp)")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2 local 198.51.100.1 remote 192.0.2.2 encap ip",
         "local address not configured (ip)")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2 local 2001:db8:99::1 remote 2001:db8::2 "
         "encap udp udp_sport 5000 udp_dport 6000", "local v6 address not configured")
    r.l2("add tunnel tunnel_id 1 peer_tunnel_id 2 local 2001:db8:99::1 remote 2001:db8::2 "
         "encap ip", "local v6 address not configured (ip)")
    r.l2("show tunnel", "nothing was created by the failures above")
    # Kernel-side conflicts.
    r.l2(tunnel(10, 20, sport=5000, dport=6000), "ok")
    r.l2(tunnel(10, 21, sport=5001, dport=6001), "duplicate tunnel id (udp)")
    r.l2(tunnel(10, 21, encap="ip"), "duplicate tunnel id with other encap")
    r.l2(tunnel(11, 21, sport=5000, dport=6001), "local UDP port already bound by tunnel 10")
    r.l2(tunnel(12, 22, sport=5000, dport=6000, local=LOCAL4B),
         "same port, other local address")
    r.l2(tunnel(13, 23, encap="ip"), "ip encap ok")
    r.l2(tunnel(14, 23, encap="ip"), "ip encap, same peer tunnel id, same addresses")
    r.l2(tunnel(15, 25, encap="ip", fam=6), "ip6 encap ok")
    r.l2(tunnel(16, 26, fam=6, sport=5000, dport=6000), "udp6 on port 5000 (v4 port in use)")
    r.l2("show tunnel")
    r.l2("del tunnel tunnel_id 999", "delete a missing tunnel")
    r.l2("del tunnel", "del tunnel without id")
    r.l2("del tunnel tunnel_id 0", "id 0")
    r.l2("del tunnel tunnel_id abc", "invalid id")
    r.l2("del tunnel tunnel_id 10")
    r.l2("del tunnel tunnel_id 10", "delete twice, immediately")
    r.settle()
    r.l2("del tunnel tunnel_id 10", "delete twice, after settling")
    r.l2(tunnel(10, 20, sport=5000, dport=6000), "re-add after delete: port free again?")
    r.l2("show tunnel", opts="-j")
    r.end()


def scenario_tunnel_variants(r: Recorder) -> None:
    r.begin("add_tunnel_variants", "Successful tunnels: UDP/IP x IPv4/IPv6, checksum options, "
            "aliases and hex/octal ids; every show format; netlink and debugfs views.")
    r.l2(tunnel(100, 200, sport=5000, dport=6000), "udp4, checksum default (off)")
    r.l2(tunnel(101, 201, sport=5001, dport=6001, extra="udp_csum on"), "udp4 udp_csum on")
    r.l2(tunnel(102, 202, sport=5002, dport=6002, extra="udp_csum off"), "udp4 udp_csum off")
    r.l2(tunnel(103, 203, encap="ip"), "ip4")
    r.l2(tunnel(104, 204, fam=6, sport=5004, dport=6004), "udp6, checksums default (on)")
    r.l2(tunnel(105, 205, fam=6, sport=5005, dport=6005, extra="udp6_csum_tx off"),
         "udp6 tx checksum off")
    r.l2(tunnel(106, 206, fam=6, sport=5006, dport=6006, extra="udp6_csum_rx off"),
         "udp6 rx checksum off")
    r.l2(tunnel(107, 207, fam=6, sport=5007, dport=6007,
                extra="udp6_csum_tx off udp6_csum_rx off"), "udp6 both checksums off")
    r.l2(tunnel(108, 208, fam=6, encap="ip"), "ip6")
    r.l2(f"add tunnel tid 0x6d ptid 0157 local {LOCAL4} remote {REMOTE4} udp_sport 0x1398 "
         "udp_dport 010000", "aliases + hex/octal ids and ports (109, 111, 5016, 4096)")
    r.l2(tunnel(110, 210, sport=5010, dport=6010, extra="udp6_csum_tx off udp6_csum_rx off "
                "udp_csum on"), "udp4 with udp6 options (ignored?)")
    r.l2(tunnel(112, 212, fam=6, sport=5012, dport=6012, extra="udp_csum on"),
         "udp6 with udp_csum on")
    r.l2(f"add tunnel tunnel_id 113 peer_tunnel_id 213 local {LOCAL4} remote {REMOTE4} "
         "udp_sport 5013 udp_dport 6013 udp_sport 5113",
         "repeated keyword: last wins?")
    r.l2(f"add tunnel tunnel_id 114 peer_tunnel_id 214 local {LOCAL4} remote {REMOTE4} "
         "encap ip udp_sport 5014 udp_dport 6014", "ports given with ip encap")
    r.l2(f"add tunnel tunnel_id 4294967295 peer_tunnel_id 4294967295 local {LOCAL4} "
         f"remote {REMOTE4} encap ip", "maximum ids")
    r.l2(f"add tunnel tunnel_id 115 peer_tunnel_id 215 local {LOCAL4} remote {REMOTE4} "
         "udp_sport 65535 udp_dport 65535", "maximum ports")
    r.l2(f"add tunnel tunnel_id 116 peer_tunnel_id 216 local {LOCAL4} remote {REMOTE4} "
         "udp_sport 5017 udp_dport 6017 offset 8 peer_offset 16", "offset warnings on a tunnel")
    r.l2("show tunnel")
    r.l2("show tunnel", opts="-j")
    r.l2("show tunnel", opts="-j -p")
    r.l2("show tunnel", opts="-o")
    r.l2("show tunnel", opts="-s")
    r.l2("show tunnel", opts="-d")
    r.l2("show tunnel tunnel_id 104", "filter by id")
    r.l2("show tunnel tunnel_id 104", "filter by id, JSON", opts="-j")
    r.l2("show tunnel tunnel_id 999", "filter by a missing id")
    r.l2("show tunnel session_id 1", "session id on a tunnel show")
    r.genl("dump-tunnels")
    r.genl("get-tunnel", "104")
    r.genl("get-tunnel", "999")
    r.debugfs()
    r.l2("del tunnel tunnel_id 0x6d", "delete by hex id")
    r.l2("del tunnel tid 110", "delete by alias")
    r.settle()
    r.l2("show tunnel", opts="-j")
    r.end()


def scenario_session_validation(r: Recorder) -> None:
    r.begin("add_session_validation", "`add session` argument checks, invalid values, "
            "kernel errors for sessions, and `del` checks.")
    r.l2(tunnel(1, 2, sport=5000, dport=6000))
    r.l2("add session", "first check: tunnel_id")
    r.l2("add session tunnel_id 1", "then peer_session_id")
    r.l2("add session tunnel_id 1 peer_session_id 2", "then session_id")
    r.l2("add session tunnel_id 1 session_id 2", "session_id present, peer missing")
    r.l2("add session session_id 1 peer_session_id 2", "tunnel_id missing")
    r.l2("add session tunnel_id 1 session_id 0 peer_session_id 2", "session id 0 is missing")
    r.l2("add session tunnel_id 1 sid 1 psid abc", "invalid peer session id")
    r.l2("add session tunnel_id 1 sid 4294967296 psid 1", "invalid session id")
    base = "add session tunnel_id 1 session_id 10 peer_session_id 20"
    for bad in ("123456", "1234567890", "12345678901234567", "zzzzzzzz", "0x123456",
                "0123456789abcdeg", "", "1234 678", "0123456"):
        r.l2argv([*shlex.split(base), "cookie", bad], f"bad cookie {bad!r}")
    r.l2(f"{base} peer_cookie 123", "bad peer_cookie length")
    r.l2(f"{base} peer_cookie xyzxyzxy", "bad peer_cookie hex")
    r.l2(f"{base} seq sometimes", "unknown seq")
    r.l2(f"{base} seq", "seq without value")
    r.l2(f"{base} l2spec_type foo", "unknown l2spec")
    r.l2(f"{base} l2spec_type", "l2spec without value")
    r.l2argv([*shlex.split(base), "name", "x" * 16], "name too long (16)")
    r.l2argv([*shlex.split(base), "name", "a/b"], "name with slash")
    r.l2argv([*shlex.split(base), "name", ""], "empty name")
    r.l2argv([*shlex.split(base), "name", "."], "name .")
    r.l2argv([*shlex.split(base), "name", "a b"], "name with space")
    r.l2argv([*shlex.split(base), "name", "a:b"], "name with colon")
    r.l2("add session tunnel_id 999 session_id 1 peer_session_id 2", "missing tunnel")
    r.l2("add session tunnel_id 1 session_id 1 peer_session_id 2 name x" + "y" * 14,
         "name of 15 chars ok")
    r.l2("add session tunnel_id 1 session_id 1 peer_session_id 3", "duplicate session id, "
         "same tunnel")
    r.l2("add session tunnel_id 1 session_id 2 peer_session_id 2 name " + "x" + "y" * 14,
         "duplicate interface name")
    r.link("x" + "y" * 14)
    r.l2("add session tunnel_id 1 session_id 3 peer_session_id 3 name lo", "name of an existing "
         "non-l2tp device")
    r.l2("add session tunnel_id 1 session_id 4 peer_session_id 4 name eth%d", "name template")
    r.link("eth0", "template expanded?")
    r.l2("add session tunnel_id 1 session_id 5 peer_session_id 5 offset 8 peer_offset 16",
         "offset / peer_offset are ignored with a warning")
    r.l2("add session tunnel_id 1 session_id 6 peer_session_id 6 seq BOTH l2spec_type NONE",
         "keyword values are case-insensitive?")
    r.l2("add session tunnel_id 1 session_id 7 peer_session_id 7 seq recv seq send",
         "seq accumulates?")
    r.l2("add session tunnel_id 1 session_id 8 peer_session_id 8 seq both seq none",
         "seq none after both")
    r.l2("add session tunnel_id 1 session_id 9 peer_session_id 9 cookie DEADBEEF "
         "peer_cookie CAFEF00D", "uppercase hex cookies")
    r.l2("add session tunnel_id 1 peer_tunnel_id 77 session_id 11 peer_session_id 11",
         "peer_tunnel_id on a session")
    r.l2("show session")
    r.l2("show session", opts="-j")
    r.genl("dump-sessions")
    r.l2("del session", "del session without ids")
    r.l2("del session tunnel_id 1", "del session without session_id")
    r.l2("del session session_id 5", "del session without tunnel_id")
    r.l2("del session tunnel_id 1 session_id 999", "missing session")
    r.l2("del session tunnel_id 999 session_id 1", "missing tunnel")
    r.l2("del session tunnel_id 1 session_id abc", "invalid id")
    r.l2("del tunnel tunnel_id 1 session_id 5", "del tunnel with a session_id deletes the "
         "session only?")
    r.settle()
    r.l2("show session", opts="-j")
    r.l2("show tunnel", opts="-j")
    r.l2("del session tunnel_id 1 session_id 6")
    r.l2("del session tunnel_id 1 session_id 6", "delete twice, immediately")
    r.settle()
    r.l2("del session tunnel_id 1 session_id 6", "delete twice, after settling")
    r.genl("get-session", "1", "6")
    r.genl("get-session", "1", "7")
    r.l2("del tunnel tunnel_id 1", "tunnel with sessions")
    r.settle()
    r.l2("show session", opts="-j")
    r.link("x" + "y" * 14, "device gone with the tunnel?")
    r.end()


def scenario_session_variants(r: Recorder) -> None:
    r.begin("add_session_variants", "Successful sessions: names, cookies 4/8 bytes, seq modes, "
            "l2spec none/default, over UDP/IP x IPv4/IPv6; the l2tpeth device of each (MTU); "
            "every show format; netlink and debugfs views.",
            extra_env=["ip link add dum1 type dummy", "ip link set dum1 mtu 1400 up",
                       "ip addr add 198.51.100.1/24 dev dum1"])
    r.l2(tunnel(10, 20, sport=5010, dport=6010), "udp4")
    r.l2(tunnel(11, 21, encap="ip"), "ip4")
    r.l2(tunnel(12, 22, fam=6, sport=5012, dport=6012), "udp6")
    r.l2(tunnel(13, 23, fam=6, encap="ip"), "ip6")
    sessions: list[tuple[str, str, str]] = [
        ("tunnel_id 10 session_id 1 peer_session_id 2", "l2tpeth0", "udp4 defaults"),
        ("tunnel_id 10 session_id 3 peer_session_id 4 name l2tpA cookie 01234567 "
         "peer_cookie 89abcdef", "l2tpA", "udp4 4-byte cookies"),
        ("tunnel_id 10 session_id 4 peer_session_id 5 name l2tpB cookie 0123456789abcdef "
         "peer_cookie fedcba9876543210", "l2tpB", "udp4 8-byte cookies"),
        ("tunnel_id 10 session_id 5 peer_session_id 5 name l2tpC seq send", "l2tpC", "seq send"),
        ("tunnel_id 10 session_id 6 peer_session_id 6 name l2tpD seq recv", "l2tpD", "seq recv"),
        ("tunnel_id 10 session_id 7 peer_session_id 7 name l2tpE seq both", "l2tpE", "seq both"),
        ("tunnel_id 10 session_id 8 peer_session_id 8 name l2tpF seq none", "l2tpF", "seq none"),
        ("tunnel_id 10 session_id 9 peer_session_id 9 name l2tpG l2spec_type none", "l2tpG",
         "l2spec none"),
        ("tunnel_id 10 session_id 10 peer_session_id 10 name l2tpH l2spec_type default", "l2tpH",
         "l2spec default"),
        ("tunnel_id 10 session_id 11 peer_session_id 11 name l2tpI cookie 01234567 "
         "l2spec_type none seq both", "l2tpI", "cookie + l2spec none + seq both"),
        ("tunnel_id 10 session_id 12 peer_session_id 12 name l2tpJ cookie 01234567 "
         "peer_cookie 0123456789abcdef", "l2tpJ", "mixed cookie lengths"),
        ("tunnel_id 10 session_id 13 peer_session_id 13 name l2tpK peer_cookie 89abcdef",
         "l2tpK", "peer cookie only"),
        ("tunnel_id 10 sid 0x20 psid 040", "l2tpeth1", "aliases, hex/octal ids (32, 32)"),
        ("tunnel_id 10 session_id 14 peer_session_id 14 name l2tpL cookie 01234567 seq send",
         "l2tpL", "cookie + seq send"),
        ("tunnel_id 10 session_id 4294967295 peer_session_id 4294967295 name l2tpMax",
         "l2tpMax", "maximum session ids"),
        ("tunnel_id 11 session_id 100 peer_session_id 100 name ipA", "ipA", "ip4 defaults"),
        ("tunnel_id 11 session_id 101 peer_session_id 101 name ipB cookie 0123456789abcdef "
         "peer_cookie fedcba9876543210", "ipB", "ip4 8-byte cookies"),
        ("tunnel_id 11 session_id 102 peer_session_id 102 name ipC l2spec_type none", "ipC",
         "ip4 l2spec none"),
        ("tunnel_id 11 session_id 103 peer_session_id 103 name ipD cookie 01234567 "
         "l2spec_type none", "ipD", "ip4 cookie 4, l2spec none"),
        ("tunnel_id 12 session_id 200 peer_session_id 200 name u6A", "u6A", "udp6 defaults"),
        ("tunnel_id 12 session_id 201 peer_session_id 201 name u6B cookie 01234567 "
         "peer_cookie 89abcdef seq both", "u6B", "udp6 cookie 4 + seq both"),
        ("tunnel_id 12 session_id 202 peer_session_id 202 name u6C l2spec_type none", "u6C",
         "udp6 l2spec none"),
        ("tunnel_id 13 session_id 300 peer_session_id 300 name ip6A", "ip6A", "ip6 defaults"),
        ("tunnel_id 13 session_id 301 peer_session_id 301 name ip6B cookie 0123456789abcdef "
         "l2spec_type none", "ip6B", "ip6 cookie 8 + l2spec none"),
    ]
    for words, ifname, note in sessions:
        r.l2(f"add session {words}", note)
        r.link(ifname)
    r.l2(f"add tunnel session tunnel_id 14 peer_tunnel_id 24 session_id 400 "
         f"peer_session_id 400 name both0 local {LOCAL4} remote {REMOTE4} udp_sport 5014 "
         "udp_dport 6014", "tunnel and session in one command")
    r.link("both0")
    r.l2("add tunnel tunnel_id 15 peer_tunnel_id 25 local 198.51.100.1 remote 198.51.100.2 "
         "udp_sport 5015 udp_dport 6015", "udp4 over a 1400-byte MTU route")
    r.l2("add session tunnel_id 15 session_id 500 peer_session_id 500 name mtuA")
    r.link("mtuA", "MTU derived from the route MTU 1400")
    r.l2("add tunnel tunnel_id 16 peer_tunnel_id 26 local 198.51.100.1 remote 198.51.100.2 "
         "encap ip", "ip4 over a 1400-byte MTU route")
    r.l2("add session tunnel_id 16 session_id 600 peer_session_id 600 name mtuB cookie "
         "0123456789abcdef")
    r.link("mtuB", "MTU derived from the route MTU 1400")
    r.l2("show tunnel")
    r.l2("show session")
    r.l2("show session", opts="-j")
    r.l2("show session", opts="-j -p")
    r.l2("show session", opts="-o")
    r.l2("show session", opts="-s")
    r.l2("show session tunnel_id 11", "filter by tunnel only")
    r.l2("show session tunnel_id 11 session_id 101", "filter by tunnel+session")
    r.l2("show session tunnel_id 11 session_id 101", "filter by tunnel+session, JSON", opts="-j")
    r.l2("show session session_id 101", "filter by session only")
    r.l2("show session tunnel_id 11 session_id 999", "filter by a missing session")
    r.l2("show session tunnel_id 999 session_id 1", "filter by a missing tunnel")
    r.l2("show tunnel session tunnel_id 11", "both keywords")
    r.genl("dump-sessions")
    r.genl("get-session", "10", "3")
    r.genl("get-session", "10", "999")
    r.genl("dump-tunnels")
    r.debugfs()
    r.l2("del session tunnel_id 10 session_id 3")
    r.settle()
    r.link("l2tpA", "device gone with the session?")
    r.l2("add session tunnel_id 10 session_id 3 peer_session_id 4",
         "re-add: which l2tpethN name is picked?")
    r.link("l2tpeth2")
    r.l2("del tunnel tunnel_id 10", "tunnel with many sessions")
    r.settle()
    r.l2("show session", opts="-j")
    r.link("l2tpeth0", "gone with its tunnel?")
    r.l2("add session tunnel_id 11 session_id 104 peer_session_id 104",
         "after deleting l2tpeth0..2, which name?")
    r.link("l2tpeth0")
    r.end()


def scenario_collisions(r: Recorder) -> None:
    r.begin("session_id_collisions", "L2TPv3 session id uniqueness: same tunnel, across UDP "
            "tunnels, across IP tunnels, and between UDP and IP tunnels.")
    r.l2(tunnel(20, 120, sport=5020, dport=6020), "U1")
    r.l2(tunnel(21, 121, sport=5021, dport=6021), "U2")
    r.l2(tunnel(22, 122, encap="ip"), "I1")
    r.l2(tunnel(23, 123, encap="ip", local=LOCAL4B), "I2")
    r.l2(tunnel(24, 124, encap="ip", fam=6), "I3 (ip6)")
    r.l2("add session tunnel_id 20 session_id 1000 peer_session_id 1000 name u1s1000")
    r.l2("add session tunnel_id 20 session_id 1000 peer_session_id 1001 name u1dup",
         "same id, same UDP tunnel")
    r.l2("add session tunnel_id 21 session_id 1000 peer_session_id 1000 name u2s1000",
         "same id, another UDP tunnel")
    r.l2("add session tunnel_id 22 session_id 1000 peer_session_id 1000 name i1s1000",
         "id used by UDP sessions, now in an IP tunnel")
    r.l2("add session tunnel_id 22 session_id 2000 peer_session_id 2000 name i1s2000")
    r.l2("add session tunnel_id 23 session_id 2000 peer_session_id 2000 name i2s2000",
         "same id, another IP tunnel")
    r.l2("add session tunnel_id 24 session_id 2000 peer_session_id 2000 name i3s2000",
         "same id, an IPv6 IP tunnel")
    r.l2("add session tunnel_id 20 session_id 2000 peer_session_id 2000 name u1s2000",
         "id used by an IP session, now in a UDP tunnel")
    r.l2("add session tunnel_id 22 session_id 2000 peer_session_id 2001 name i1dup",
         "same id, same IP tunnel")
    r.l2("add session tunnel_id 22 session_id 3000 peer_session_id 1000 name i1p1000",
         "peer session ids need not be unique")
    r.l2("add session tunnel_id 23 session_id 3001 peer_session_id 1000 name i2p1000")
    r.l2("show session", opts="-j")
    r.l2("del session tunnel_id 20 session_id 1000")
    r.l2("del session tunnel_id 21 session_id 1000")
    r.settle()
    r.l2("add session tunnel_id 22 session_id 1000 peer_session_id 1000 name i1s1000",
         "after the UDP sessions are gone")
    r.l2("show session", opts="-j")
    r.end()


def scenario_dump_order(r: Recorder) -> None:
    r.begin("dump_order", "Order of dumped tunnels and sessions: created out of id order, "
            "then some deleted and re-added.")
    for tid in (50, 7, 4000, 45, 1):
        r.l2(tunnel(tid, tid + 1000, encap="ip"))
    r.l2(tunnel(60, 1060, sport=5060, dport=6060))
    for sid in (17, 3, 100, 1, 16, 33, 2, 65536, 18, 4294967295, 5):
        r.l2(f"add session tunnel_id 60 session_id {sid} peer_session_id {sid}")
    for sid in (9, 8):
        r.l2(f"add session tunnel_id 45 session_id {sid} peer_session_id {sid}")
    r.l2("show tunnel", opts="-j")
    r.l2("show session", opts="-j")
    r.l2("del tunnel tunnel_id 7")
    r.l2("del session tunnel_id 60 session_id 3")
    r.settle()
    r.l2(tunnel(7, 1007, encap="ip"), "re-added")
    r.l2("add session tunnel_id 60 session_id 3 peer_session_id 3", "re-added")
    r.l2("show tunnel", opts="-j")
    r.l2("show session", opts="-j")
    r.debugfs()
    r.end()


def scenario_debugfs(r: Recorder) -> None:
    r.begin("debugfs_configs", "l2tp_debugfs output for a few configurations.")
    r.debugfs("no tunnels")
    r.l2(tunnel(30, 130, sport=5030, dport=6030))
    r.debugfs("udp4 tunnel, no sessions")
    r.l2("add session tunnel_id 30 session_id 31 peer_session_id 131 name dA")
    r.debugfs("udp4 tunnel, one default session")
    r.l2("add session tunnel_id 30 session_id 32 peer_session_id 132 name dB cookie 01234567 "
         "peer_cookie 0123456789abcdef seq both")
    r.l2("add session tunnel_id 30 session_id 33 peer_session_id 133 name dC l2spec_type none "
         "seq send")
    r.debugfs("cookies, seq both, l2spec none")
    r.l2(tunnel(34, 134, encap="ip", fam=6))
    r.l2("add session tunnel_id 34 session_id 35 peer_session_id 135 name dD")
    r.l2(tunnel(36, 136, fam=6, sport=5036, dport=6036, extra="udp6_csum_rx off"))
    r.debugfs("plus ip6 and udp6 tunnels")
    r.end()


def main() -> int:
    """Record all scenarios and write the fixture JSON to argv[1]."""
    out = Path(sys.argv[1])
    modroot = os.environ["VM_MODROOT"]
    r = Recorder()
    for m in ("dummy", "veth"):
        subprocess.run(["modprobe", "-d", modroot, m], check=False)
    scenario_no_modules(r)
    for m in MODULES:
        subprocess.run(["modprobe", "-d", modroot, m], check=True)
    os.makedirs(DEBUGFS, exist_ok=True)
    subprocess.run(["mount", "-t", "debugfs", "debugfs", DEBUGFS], check=True)
    for fn in (scenario_dispatch, scenario_tunnel_validation, scenario_tunnel_variants,
               scenario_session_validation, scenario_session_variants, scenario_collisions,
               scenario_dump_order, scenario_debugfs):
        fn(r)
    doc = {
        "schema": "pyl2tp-ip-l2tp-cases/1",
        "kernel": os.uname().release,
        "kernel_version": os.uname().version,
        "iproute2": subprocess.run(["ip", "-V"], capture_output=True, text=True).stdout.strip(),
        "modules": MODULES,
        "scenarios": r.scenarios,
        "records": r.records,
    }
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"ip_l2tp_cases: {len(r.records)} records in {len(r.scenarios)} scenarios")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
