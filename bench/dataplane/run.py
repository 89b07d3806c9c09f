"""Data-plane benchmark: pyl2tp's userspace data plane next to a Python floor and the kernel.

    python bench/dataplane/run.py [--quick] [--duration S] [--profile]

Two network namespaces joined by a veth pair. Every system under test moves inner frames from
devices in one namespace to devices in the other:

* pyl2tp: L2TPv3 Ethernet pseudowires over UDP and over IP (static tunnels, TAP devices) and
  L2TPv2 PPP sessions (a pyl2tp LAC dialling a pyl2tp LNS, PPP terminated on TUN devices by
  pyl2tp's PPP endpoint); one daemon per namespace serves all three;
* the floor: ``floor.py``, the least a Python TAP/TUN <-> UDP relay can do (no L2TP logic);
* the kernel: VXLAN devices over the same veth pair.

For each session count (1, then 100) every system is set up at once (idle ones cost nothing)
and the measurements are interleaved in rounds, so that pyl2tp, the floor and the kernel see
the same machine conditions; each cell is the median of its rounds. A closed-loop generator
(``gen.c``, compiled with gcc at run time; ``gen_py.py`` without a compiler) sends on the inner
devices of one namespace and counts arrivals on the other namespace's device counters.
README.md explains the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

import frames  # noqa: E402
from tests.support.netns import NetNS, Topology, wait_for  # noqa: E402

from pyl2tp.mgmt.client import Client  # noqa: E402
from pyl2tp.mgmt.server import socket_alive  # noqa: E402

RESULTS = REPO / "bench" / "results"
PYTHON = sys.executable
PYL2TP = str(Path(sys.executable).with_name("pyl2tp"))
NET = "10.201.0"  # the veth pair: A is .1, B is .2; .3 is a MAC-only address on B (one_sided)
ADDR_A, ADDR_B, ADDR_SINK = f"{NET}.1", f"{NET}.2", f"{NET}.3"
SIZES = (64, 1400)
DIRECTIONS = ("A>B", "B>A")
CLK = os.sysconf("SC_CLK_TCK")
QUIET = 25.0  # % of a core used by other processes, above which a round is set aside
# Main systems, in the order each round measures them.
SYSTEMS = ("kernel-vxlan", "floor-tap", "pyl2tp-udp", "pyl2tp-ip", "floor-tun", "pyl2tp-ppp")
SCENARIOS = (
    ("L2TPv3 eth / UDP", "pyl2tp-udp", "floor-tap"),
    ("L2TPv3 eth / IP", "pyl2tp-ip", "floor-tap"),
    ("L2TPv2 PPP / UDP", "pyl2tp-ppp", "floor-tun"),
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- machine -------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "loadavg_at_start": os.getloadavg(),
    }


# -- the generator and one measurement -----------------------------------------------------------


@dataclass
class Generator:
    argv: list[str]
    kind: str

    @classmethod
    def build(cls, workdir: str, force_python: bool) -> Generator:
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc and not force_python:
            exe = os.path.join(workdir, "gen")
            subprocess.run([gcc, "-O2", "-Wall", "-o", exe, str(HERE / "gen.c")], check=True)
            version = subprocess.run([gcc, "-dumpfullversion"], capture_output=True,
                                     text=True).stdout.strip()
            return cls([exe], f"C ({os.path.basename(gcc)} {version}, compiled at run time): "
                              "sendmmsg on AF_PACKET with qdisc bypass")
        return cls([PYTHON, str(HERE / "gen_py.py")],
                   "Python (gen_py.py, no gcc found): sendto on AF_PACKET, slower ceiling")


@dataclass
class Opts:
    duration: float
    warmup: float
    window: int
    gen: Generator
    workdir: str


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def _system_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def _netns_inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


def background_ticks(exclude_ns: set[int]) -> dict[int, int]:
    """CPU ticks so far of every user process outside the benchmark (not in one of its
    namespaces, not this harness): other people's work on a shared machine shows up here."""
    out: dict[int, int] = {}
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == 2 or pid == 2:
                continue  # kernel threads: softirq work is ours as much as anyone's
            if os.stat(f"/proc/{pid}/ns/net").st_ino in exclude_ns:
                continue
            out[pid] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return out


_SNMP_UDP = re.compile(r"^Udp: (\d.*)$", re.M)


def drop_counters(ns: NetNS) -> dict[str, int]:
    """Where packets get dropped in ``ns``: every device's tx/rx drops, and UDP's receive
    buffer overflows (a process that does not keep up with its socket)."""
    out: dict[str, int] = defaultdict(int)
    for link in json.loads(ns.ip("-s", "-j", "link", "show").stdout or "[]"):
        stats = link.get("stats64", {})
        out["dev_tx_dropped"] += stats.get("tx", {}).get("dropped", 0)
        out["dev_rx_dropped"] += stats.get("rx", {}).get("dropped", 0)
    snmp = ns.run(["cat", "/proc/net/snmp"]).stdout
    m = _SNMP_UDP.search(snmp)
    if m:
        vals = [int(x) for x in m.group(1).split()]
        out["udp_rcvbuf_errors"] = vals[4]
        out["udp_no_ports"] = vals[1]
    return dict(out)


def measure(opts: Opts, tx: NetNS, rx: NetNS, tx_ifs: Sequence[str], rx_ifs: Sequence[str],
            templates: Sequence[tuple[int, bytes]], cpu: dict[str, Sequence[int]] | None = None,
            window: int | None = None) -> dict[str, Any]:
    """One generator run: its counts, the CPU used by each named group of pids, the CPU other
    processes on the machine used meanwhile, and the drop counters that moved.

    Traffic spread over many devices gets a 5 times larger window: each device queue holds
    its own share, and the sink's counters (a dump of every device) are polled less often."""
    if window is None:
        window = opts.window if len(tx_ifs) < 5 else 5 * opts.window
    tpath = os.path.join(opts.workdir, "templates.bin")
    frames.write_templates(tpath, templates)
    cpu = cpu or {}
    drops0 = {ns.name: drop_counters(ns) for ns in (tx, rx)}
    before = {name: sum(_cpu_ticks(p) for p in pids) for name, pids in cpu.items()}
    ours = {_netns_inode(f"/run/netns/{tx.name}"), _netns_inode(f"/run/netns/{rx.name}")}
    bg0 = background_ticks(ours)
    busy0, total0 = _system_busy()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    argv = [*opts.gen.argv, "--tx-ns", f"/run/netns/{tx.name}", "--rx-ns",
            f"/run/netns/{rx.name}", "--tx-ifs", ",".join(tx_ifs), "--rx-ifs", ",".join(rx_ifs),
            "--templates", tpath, "--warmup", str(opts.warmup), "--duration", str(opts.duration),
            "--window", str(window)]
    proc = subprocess.run(argv, capture_output=True, text=True,
                          timeout=opts.warmup + opts.duration + 30)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"generator failed ({proc.returncode}): {proc.stderr.strip()}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, total1 = _system_busy()
    bg1 = background_ticks(ours)
    after = {name: sum(_cpu_ticks(p) for p in pids) for name, pids in cpu.items()}
    drops1 = {ns.name: drop_counters(ns) for ns in (tx, rx)}
    out: dict[str, Any] = json.loads(proc.stdout)
    size = len(templates[0][1])
    out["size"] = size
    out["mbps"] = out["pps"] * size * 8 / 1e6
    # Offered = accepted by the transmit device + refused by it (a TAP/TUN whose reader fell
    # behind): both are the system under test's loss if they never arrive.
    offered = out["sent"] + out.get("tx_dropped", 0)
    out["offered"] = offered
    out["loss"] = max(0, offered - out["delivered"]) / offered if offered else 0.0
    cores = os.cpu_count() or 1
    usage = {name: 100 * (after[name] - before[name]) / CLK / wall for name in cpu}
    usage["generator"] = 100 * (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall
    usage["system"] = 100 * cores * (busy1 - busy0) / max(1, total1 - total0)
    usage["background"] = 100 * sum(t - bg0.get(pid, 0) for pid, t in bg1.items()) / CLK / wall
    out["cpu"] = {k: round(v, 1) for k, v in usage.items()}
    moved = {}
    for side, ns in (("tx", tx), ("rx", rx)):
        for k, v in drops1[ns.name].items():
            if v - drops0[ns.name].get(k, 0):
                moved[f"{side}_{k}"] = v - drops0[ns.name].get(k, 0)
    out["drops"] = moved
    return out


def wait_quiet(limit: float, threshold: float = QUIET) -> float:
    """Wait at most ``limit`` seconds until two 2-second windows in a row show the machine busy
    below ``threshold`` % of one core (this harness idles meanwhile); return the wait."""
    t0 = time.monotonic()
    calm = 0
    while time.monotonic() - t0 < limit:
        busy0, total0 = _system_busy()
        time.sleep(2)
        busy1, total1 = _system_busy()
        busy = 100 * (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
        calm = calm + 1 if busy < threshold else 0
        if calm >= 2:
            break
        if not calm:
            log(f"   machine busy ({busy:.0f}% of a core with other work); waiting")
    return round(time.monotonic() - t0, 1)


# -- namespaces and processes --------------------------------------------------------------------


@dataclass
class Net:
    a: NetNS
    b: NetNS
    veth_a: str
    veth_b: str
    mac_a: bytes = b""
    mac_b: bytes = b""


def _mac(ns: NetNS, dev: str) -> bytes:
    link = json.loads(ns.ip("-j", "link", "show", "dev", dev).stdout)[0]
    return bytes.fromhex(link["address"].replace(":", ""))


def build_net(topo: Topology) -> Net:
    a, b = topo.add("dpa"), topo.add("dpb")
    va, vb = topo.veth(a, b, f"{ADDR_A}/24", f"{ADDR_B}/24")
    for ns in (a, b):
        # No IPv6: new TAP/TUN devices would send solicitations and MLD reports that the sink
        # counters would count. No forwarding: inner packets die where they are counted.
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        ns.sysctl("net.ipv4.ip_forward", 0)
    net = Net(a, b, va, vb, _mac(a, va), _mac(b, vb))
    # ADDR_SINK resolves to B's MAC without being B's address: B counts the packet on its veth
    # and drops it (no forwarding, no ICMP): the sink of the one-sided encapsulation runs.
    a.ip("neigh", "replace", ADDR_SINK, "lladdr", ":".join(f"{x:02x}" for x in net.mac_b),
         "dev", va, "nud", "permanent")
    return net


def ip_batch(ns: NetNS, lines: Sequence[str]) -> None:
    proc = subprocess.run(["ip", "-n", ns.name, "-force", "-batch", "-"], input="\n".join(lines),
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"ip -batch in {ns.name} failed: {proc.stderr.strip()[:2000]}")


def links(ns: NetNS) -> set[str]:
    return {link["ifname"] for link in json.loads(ns.ip("-j", "link", "show").stdout or "[]")}


def _kill_group(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


class PyDaemon:
    """A ``pyl2tp daemon`` in a namespace, logging to a file shown only when something fails."""

    def __init__(self, ns: NetNS, config: str, workdir: str, tag: str,
                 wrapper: Sequence[str] = ()) -> None:
        self.ns = ns
        self.tag = tag
        self.socket = f"/run/pyl2tp/{ns.name}.sock"
        self.log_path = os.path.join(workdir, f"{tag}.log")
        cfg = os.path.join(workdir, f"{tag}.toml")
        Path(cfg).write_text(config)
        with open(self.log_path, "wb") as logf:
            self.proc = ns.popen([*wrapper, PYL2TP, "daemon", "--config", cfg, "--log-level",
                                  "warning", "--socket", self.socket], stdin=subprocess.DEVNULL,
                                 stdout=logf, stderr=logf)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pyl2tp daemon in {self.ns.name} exited:\n{self.log()}")
            return socket_alive(self.socket)
        wait_for(ready, timeout=30, interval=0.02, message=f"daemon in {self.ns.name}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def request(self, cmd: str, attrs: dict[str, Any] | None = None) -> Any:
        with Client(self.socket, timeout=30) as client:
            return client.request(cmd, attrs or {})

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        _kill_group(self.proc, timeout=30)


class Floor:
    """``floor.py`` in a namespace."""

    def __init__(self, ns: NetNS, kind: str, names: Sequence[str], local: str, remote: str,
                 port: int, workers: int = 1, style: str = "epoll") -> None:
        self.ns = ns
        self.proc = ns.popen([PYTHON, str(HERE / "floor.py"), "--kind", kind, "--names",
                              ",".join(names), "--local", local, "--remote", remote,
                              "--port", str(port), "--peer-port", str(port),
                              "--workers", str(workers), "--style", style],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.pids: list[int] = []

    def wait_ready(self) -> Floor:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"floor in {self.ns.name} failed: {line}{err}")
        self.pids = [int(p) for p in line.split()[1:]]
        return self

    def stop(self) -> None:
        _kill_group(self.proc)


@dataclass
class System:
    """Something to measure: inner devices on each side, the pids whose CPU we account."""

    name: str
    kind: str  # "tap" (Ethernet frames) or "tun" (IP packets)
    names_a: list[str]
    names_b: list[str]
    pids_a: list[int] = field(default_factory=list)
    pids_b: list[int] = field(default_factory=list)


@contextlib.contextmanager
def kernel_vxlan(net: Net, n: int) -> Iterator[System]:
    names = [f"vx{i}" for i in range(n)]
    try:
        for ns, local, remote, dev in ((net.a, ADDR_A, ADDR_B, net.veth_a),
                                       (net.b, ADDR_B, ADDR_A, net.veth_b)):
            ip_batch(ns, [f"link add {name} type vxlan id {i + 1} local {local} remote {remote} "
                          f"dstport 4789 dev {dev}" for i, name in enumerate(names)]
                     + [f"link set {name} up" for name in names])
        yield System("kernel-vxlan", "tap", names, names)
    finally:
        for ns in (net.a, net.b):
            with contextlib.suppress(Exception):
                ip_batch(ns, [f"link del {name}" for name in names])


@contextlib.contextmanager
def floor_pair(net: Net, kind: str, n: int, port: int, workers: int = 1,
               style: str = "epoll", name: str | None = None) -> Iterator[System]:
    names = [f"{'fl' if kind == 'tap' else 'ft'}{port % 1000}x{i}" for i in range(n)]
    fa = Floor(net.a, kind, names, ADDR_A, ADDR_B, port, workers, style)
    fb = Floor(net.b, kind, names, ADDR_B, ADDR_A, port, workers, style)
    try:
        fa.wait_ready()
        fb.wait_ready()
        yield System(name or f"floor-{kind}", kind, names, names, fa.pids, fb.pids)
    finally:
        fa.stop()
        fb.stop()


def static_config(tid: int, peer_tid: int, encap: str, local: str, remote: str,
                  names: Sequence[str], first_sid: int) -> str:
    out = ["", "[[static_tunnel]]", f"tunnel_id = {tid}", f"peer_tunnel_id = {peer_tid}",
           "version = 3", f'encap = "{encap}"', f'local = "{local}"', f'remote = "{remote}"']
    if encap == "udp":
        out += ["udp_sport = 5000", "udp_dport = 5000"]
    for i, name in enumerate(names):
        out += ["", "[[static_tunnel.session]]", f"session_id = {first_sid + i}",
                f"peer_session_id = {first_sid + i}", 'pw_type = "eth"', f'ifname = "{name}"']
    return "\n".join(out) + "\n"


LNS_PPP = """
[[listen]]
address = "{addr}"

[[ppp]]
name = "lns"
local_ip = "10.202.0.1"
pool = "10.202.0.0/22"
echo_interval = 0

[[peer]]
name = "any"
ppp = "lns"
"""

LAC_PPP = """
[[ppp]]
name = "client"
echo_interval = 0

[[tunnel]]
name = "to-lns"
peer = "{peer}"
version = 2
ppp = "client"

[[tunnel.session]]
pw_type = "ppp"
count = {count}
"""


@contextlib.contextmanager
def pyl2tp_pair(net: Net, n: int, workdir: str, systems: set[str],
                wrappers: dict[str, list[str]] | None = None) -> Iterator[dict[str, System]]:
    """One daemon per namespace serving every pyl2tp system asked for: static L2TPv3 tunnels
    over UDP and IP with ``n`` Ethernet sessions each, and ``n`` PPP sessions from the LAC
    (A) to the LNS (B)."""
    cfg_a = ['[daemon]\nhost_name = "bench-a"']
    cfg_b = ['[daemon]\nhost_name = "bench-b"']
    names: dict[str, list[str]] = {}
    for system, encap, tids, first_sid in (("pyl2tp-udp", "udp", (1000, 2000), 1),
                                           ("pyl2tp-ip", "ip", (1001, 2001), 1001)):
        if system in systems:
            names[system] = [f"p{encap[0]}{i}" for i in range(n)]
            cfg_a.append(static_config(tids[0], tids[1], encap, ADDR_A, ADDR_B, names[system],
                                       first_sid))
            cfg_b.append(static_config(tids[1], tids[0], encap, ADDR_B, ADDR_A, names[system],
                                       first_sid))
    ppp = "pyl2tp-ppp" in systems
    if ppp:
        cfg_a.append(LAC_PPP.format(peer=ADDR_B, count=n))
        cfg_b.append(LNS_PPP.format(addr=ADDR_B))
    wrappers = wrappers or {}
    db = PyDaemon(net.b, "\n".join(cfg_b), workdir, "pyl2tp-b", wrappers.get("b", ()))
    da: PyDaemon | None = None
    try:
        db.wait_ready()
        da = PyDaemon(net.a, "\n".join(cfg_a), workdir, "pyl2tp-a", wrappers.get("a", ()))
        da.wait_ready()
        out: dict[str, System] = {}
        for system, devs in names.items():
            for ns in (net.a, net.b):
                wait_for(lambda ns=ns, devs=devs: set(devs) <= links(ns), timeout=60,
                         message=f"{system} devices in {ns.name}")
                ip_batch(ns, [f"link set {name} up" for name in devs])
            out[system] = System(system, "tap", devs, devs, [da.pid], [db.pid])
        if ppp:
            pair = (da, db)

            def up() -> list[list[str]] | None:
                got = []
                for d in pair:
                    names = sorted(p["ifname"] for p in d.request("ppp_dump")
                                   if p.get("ipv4_up") and p.get("ifname"))
                    if len(names) < n or not set(names) <= links(d.ns):
                        return None
                    got.append(names)
                return got

            ppp_a, ppp_b = wait_for(up, timeout=120, interval=0.2, message=f"{n} PPP links up")
            out["pyl2tp-ppp"] = System("pyl2tp-ppp", "tun", ppp_a, ppp_b, [da.pid], [db.pid])
        yield out
    except Exception:
        for d in (da, db):
            if d is not None:
                log(f"--- pyl2tp daemon log ({d.tag}, {d.ns.name}) ---\n{d.log()}")
        raise
    finally:
        if da is not None:
            da.stop()
        db.stop()


# -- results ----------------------------------------------------------------------------------


@dataclass
class Results:
    samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, m: dict[str, Any], **key: Any) -> dict[str, Any]:
        cell = {**key, **{k: v for k, v in m.items() if k not in key}}
        self.samples.append(cell)
        return cell

    def cells(self) -> list[dict[str, Any]]:
        """Samples of the same measurement merged: median rate, pooled loss, mean CPU."""
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        keys = ("system", "sessions", "size", "direction", "mode", "half")
        for s in self.samples:
            groups[tuple(s.get(k) for k in keys)].append(s)
        out = []
        for key, all_rounds in groups.items():
            # Rounds during which other processes used less than QUIET of a core, if any: on a
            # shared machine their load comes and goes, and a busy round measures the neighbours.
            quiet = [s for s in all_rounds if s["cpu"]["background"] < QUIET]
            group = quiet or all_rounds
            pps = [s["pps"] for s in group]
            med = statistics.median(pps)
            sent = sum(s["offered"] for s in group)
            lost = sum(max(0, s["offered"] - s["delivered"]) for s in group)
            cpu: dict[str, float] = defaultdict(float)
            drops: dict[str, int] = defaultdict(int)
            for s in group:
                for k, v in s["cpu"].items():
                    cpu[k] += v / len(group)
                for k, v in s.get("drops", {}).items():
                    drops[k] += v
            cell = {k: v for k, v in zip(keys, key, strict=True) if v is not None}
            cell.update(pps=med, mbps=med * group[0]["size"] * 8 / 1e6, rounds=len(group),
                        pps_best=max(pps), pps_all=[s["pps"] for s in all_rounds],
                        quiet_rounds=len(quiet),
                        spread=(max(pps) - min(pps)) / med if med else 0.0,
                        loss=lost / sent if sent else 0.0, sent=sent, lost=lost,
                        cpu={k: round(v, 1) for k, v in cpu.items()}, drops=dict(drops),
                        stalls=sum(s["stalls"] for s in group))
            out.append(cell)
        return out


def find(cells: Sequence[dict[str, Any]], **key: Any) -> dict[str, Any] | None:
    for cell in cells:
        if all(cell.get(k) == v for k, v in key.items()):
            return cell
    return None


def _short(m: dict[str, Any]) -> str:
    cpu = " ".join(f"{k}={v:.0f}%" for k, v in m["cpu"].items())
    drops = f" drops {m['drops']}" if m.get("drops") else ""
    return (f"{m['pps'] / 1e3:8.1f} kpps {m['mbps']:7.1f} Mbit/s loss {100 * m['loss']:6.3f}% "
            f"| cpu {cpu}{drops}")


# -- the runs -------------------------------------------------------------------------------------


def _directions(net: Net, s: System) -> Iterator[tuple[str, NetNS, NetNS, list[str], list[str],
                                                        dict[str, list[int]]]]:
    yield "A>B", net.a, net.b, s.names_a, s.names_b, {"tx": s.pids_a, "rx": s.pids_b}
    yield "B>A", net.b, net.a, s.names_b, s.names_a, {"tx": s.pids_b, "rx": s.pids_a}


def interleaved(res: Results, opts: Opts, net: Net, systems: Sequence[System], n: int,
                rounds: int) -> None:
    """Every (size, direction) of every system, round after round."""
    for r in range(rounds):
        log(f"-- round {r + 1}/{rounds}, {n} session(s)")
        for size in SIZES:
            for s in systems:
                for direction, tx, rx, tx_ifs, rx_ifs, pids in _directions(net, s):
                    tmpl = frames.inner_templates(s.kind, size, len(tx_ifs))
                    cpu = pids if pids["tx"] or pids["rx"] else None
                    m = measure(opts, tx, rx, tx_ifs, rx_ifs, tmpl, cpu)
                    res.add(m, system=s.name, sessions=n, size=size, direction=direction)
                    log(f"   {s.name:12s} {size:5d}B {direction} {_short(m)}")


def main_phase(res: Results, opts: Opts, net: Net, n: int, rounds: int, want: set[str]) -> None:
    log(f"== {n} session(s): setting up {', '.join(s for s in SYSTEMS if s in want)}")
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        systems: dict[str, System] = {}
        if "kernel-vxlan" in want:
            systems["kernel-vxlan"] = stack.enter_context(kernel_vxlan(net, n))
        if "floor-tap" in want:
            systems["floor-tap"] = stack.enter_context(floor_pair(net, "tap", n, 7000))
        if "floor-tun" in want:
            systems["floor-tun"] = stack.enter_context(floor_pair(net, "tun", n, 7001))
        py = {s for s in want if s.startswith("pyl2tp-")}
        if py:
            systems.update(stack.enter_context(pyl2tp_pair(net, n, opts.workdir, py)))
        log(f"   set up in {time.monotonic() - t0:.1f} s")
        interleaved(res, opts, net, [systems[s] for s in SYSTEMS if s in systems], n, rounds)


def generator_ceiling(res: Results, opts: Opts, net: Net, rounds: int) -> None:
    """The generator alone over the bare veth pair (no tunnel), closed and open loop."""
    log("== generator ceiling (bare veth, no tunnel)")
    for _ in range(rounds):
        for size in SIZES:
            tmpl = frames.inner_templates("tap", size, 1)
            for window, mode in ((opts.window, "closed"), (0, "open")):
                m = measure(opts, net.a, net.b, [net.veth_a], [net.veth_b], tmpl, window=window)
                res.add(m, system="generator", mode=mode, sessions=1, size=size, direction="A>B")
                log(f"   {size:5d}B {mode:6s} {_short(m)}")


def workers_phase(res: Results, opts: Opts, net: Net, rounds: int, styles: bool,
                  size: int = 64) -> None:
    """Each half of the data path alone with the kernel as its peer: what one worker process
    does, and what a second one adds (the floor with a multi-queue TAP and SO_REUSEPORT),
    in closed loop and in open loop (generator flat out, the excess dropped at the TAP);
    then the floor end to end with 1 and with 2 workers per side.

    encap: generator -> TAP in A -> worker(s) in A -> UDP to ADDR_SINK, counted on B's veth;
    decap: generator sends ready-made tunnel packets on A's veth -> worker(s) in B -> TAP in B.
    """
    log(f"== one worker vs two ({size}B)")
    tap_tmpl = frames.inner_templates("tap", size, 1)

    def decap_tmpl(headers: Sequence[bytes], dport: int, sport: int | None = None
                   ) -> list[tuple[int, bytes]]:
        return frames.encapsulated_templates(size, net.mac_b, net.mac_a, ADDR_A, ADDR_B, dport,
                                             headers, sport=sport)

    l2tp_hdr = b"\x00\x03\x00\x00" + (1).to_bytes(4, "big") + b"\x00\x00\x00\x00"
    with contextlib.ExitStack() as stack:
        # (label, half, tx ns, tx devices, rx ns, rx devices, templates, pids)
        runs: list[tuple[str, str, NetNS, list[str], NetNS, list[str], Any, list[int]]] = []
        for workers in (1, 2):
            enc, dec = f"e{workers}", f"d{workers}"
            fa = Floor(net.a, "tap", [enc], ADDR_A, ADDR_SINK, 7100 + workers, workers)
            stack.callback(fa.stop)
            fb = Floor(net.b, "tap", [dec], ADDR_B, ADDR_A, 7200 + workers, workers)
            stack.callback(fb.stop)
            fa.wait_ready()
            fb.wait_ready()
            hdrs = [floor_header(w, 0) for w in range(workers)]
            runs.append((f"floor-{workers}w", "encap", net.a, [enc], net.b, [net.veth_b],
                         tap_tmpl, fa.pids))
            runs.append((f"floor-{workers}w", "decap", net.a, [net.veth_a], net.b, [dec],
                         decap_tmpl(hdrs, 7200 + workers), fb.pids))
        da = PyDaemon(net.a, static_config(1000, 2000, "udp", ADDR_A, ADDR_SINK, ["pe0"], 1),
                      opts.workdir, "half-a")
        stack.callback(da.stop)
        db = PyDaemon(net.b, static_config(2000, 1000, "udp", ADDR_B, ADDR_A, ["pd0"], 1),
                      opts.workdir, "half-b")
        stack.callback(db.stop)
        for d, dev in ((da, "pe0"), (db, "pd0")):
            d.wait_ready()
            wait_for(lambda d=d, dev=dev: dev in links(d.ns), timeout=30, message=dev)
            ip_batch(d.ns, [f"link set {dev} up"])
        runs.append(("pyl2tp-udp", "encap", net.a, ["pe0"], net.b, [net.veth_b], tap_tmpl,
                     [da.pid]))
        runs.append(("pyl2tp-udp", "decap", net.a, [net.veth_a], net.b, ["pd0"],
                     decap_tmpl([l2tp_hdr], 5000, 5000), [db.pid]))
        # End to end: the floor with 1 and 2 workers per side (and, with --styles, the
        # 1-worker floor with asyncio's add_reader as pyl2tp uses, and two blocking threads).
        variants = [(1, "epoll", "floor-e2e-1w"), (2, "epoll", "floor-e2e-2w")]
        if styles:
            variants += [(1, "asyncio", "floor-e2e-asyncio"), (1, "blocking", "floor-e2e-blocking")]
        e2e = [stack.enter_context(floor_pair(net, "tap", 1, 7300 + k, workers=w, style=st,
                                              name=name))
               for k, (w, st, name) in enumerate(variants)]
        for r in range(rounds):
            log(f"-- round {r + 1}/{rounds}")
            for label, half, tx, tx_ifs, rx, rx_ifs, tmpl, pids in runs:
                for mode, window in (("closed", opts.window), ("open", 0)):
                    m = measure(opts, tx, rx, tx_ifs, rx_ifs, tmpl, {"worker": pids},
                                window=window)
                    res.add(m, system=label, half=half, mode=mode, sessions=1, size=size,
                            direction="A>B")
                    log(f"   {half} {mode:6s} {label:11s} {_short(m)}")
            for s in e2e:
                tmpl = frames.inner_templates("tap", size, 1)
                m = measure(opts, net.a, net.b, s.names_a, s.names_b, tmpl,
                            {"tx": s.pids_a, "rx": s.pids_b})
                res.add(m, system=s.name, half="e2e", mode="closed", sessions=1, size=size,
                        direction="A>B")
                log(f"   e2e {s.name:15s} {_short(m)}")


def floor_header(worker: int, index: int) -> bytes:
    return bytes((worker, 0, index >> 8, index & 0xFF))


# -- profile ------------------------------------------------------------------------------------


def profile_phase(opts: Opts, net: Net, outdir: Path, seconds: float) -> dict[str, Any]:
    """Sample the daemons with py-spy where each is the bottleneck, 64-byte frames, 1 session:
    the sending daemon (A) end to end A>B, where it saturates first; the receiving daemon (B)
    alone, fed ready-made tunnel packets on A's veth (end to end it idles half the time, and
    its profile would be mostly epoll). Returns own time per line; writes the raw stacks."""
    pyspy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    if not os.path.exists(pyspy):
        log("py-spy not found: profiling with cProfile instead")
        return cprofile_phase(opts, net, outdir, seconds)
    out: dict[str, Any] = {"tool": "py-spy record --nonblocking, 500 Hz"}
    prof_opts = Opts(seconds, 0.5, opts.window, opts.gen, opts.workdir)
    with pyl2tp_pair(net, 1, opts.workdir, {"pyl2tp-udp", "pyl2tp-ppp"}) as systems:
        for name in ("pyl2tp-udp", "pyl2tp-ppp"):
            s = systems[name]
            out[name] = {}
            if name == "pyl2tp-udp":
                hdr = b"\x00\x03\x00\x00" + (1).to_bytes(4, "big") + b"\x00\x00\x00\x00"
                port = 5000
            else:
                with Client(f"/run/pyl2tp/{net.b.name}.sock") as client:
                    link = client.request("ppp_dump")[0]
                hdr = (struct.pack(">HHH", 0x0002, link["tunnel_id"], link["session_id"])
                       + b"\xff\x03\x00\x21")
                port = 1701
            decap = frames.encapsulated_templates(64, net.mac_b, net.mac_a, ADDR_A, ADDR_B, port,
                                                  [hdr], kind=s.kind, sport=port)
            runs = (("tx", s.pids_a[0], net.a, s.names_a, net.b, s.names_b,
                     frames.inner_templates(s.kind, 64, 1), "A, device -> tunnel, end to end"),
                    ("rx", s.pids_b[0], net.a, [net.veth_a], net.b, s.names_b, decap,
                     "B, tunnel -> device, fed alone"))
            for side, pid, tx, tx_ifs, rx, rx_ifs, tmpl, what in runs:
                path = outdir / f"dataplane-profile-{name}-{side}.txt"
                spy = subprocess.Popen(
                    [pyspy, "record", "--pid", str(pid), "--rate", "500", "--nonblocking",
                     "--format", "raw", "--output", str(path), "--duration",
                     str(int(seconds + 2))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(0.5)
                m = measure(prof_opts, tx, rx, tx_ifs, rx_ifs, tmpl, {"daemon": [pid]})
                log(f"   profiled {name} {side}: {_short(m)}")
                _, err = spy.communicate(timeout=seconds + 30)
                if spy.returncode != 0 or not path.exists():
                    log(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
                    continue
                summary = summarize_collapsed(path.read_text(), seconds + 2, 500)
                summary.update(what=what, stacks_file=str(path), rate_under_profiler=m["pps"],
                               daemon_cpu=m["cpu"]["daemon"],
                               background=m["cpu"]["background"])
                out[name][side] = summary
    return out


# Lines that call into the kernel directly (not Python methods that will).
_SYSCALL = re.compile(r"\bos\.(read|readv|write)\(|\bself\.sock\.\w+\(|_selector\.poll\(|"
                      r"\brecvfrom\(|\brecv_into\(")


def _source_line(path: str, line: int) -> str:
    import linecache
    import sysconfig

    for root in (REPO / "src", Path(sysconfig.get_paths()["stdlib"]), REPO):
        text = linecache.getline(str(root / path), line)
        if text:
            return text.strip()
    return ""


def summarize_collapsed(text: str, seconds: float, rate: int, top: int = 15) -> dict[str, Any]:
    """Own time per function and per source line from py-spy's collapsed stacks, and the share
    of it spent in lines that make a system call (socket, device or epoll)."""
    by_func: dict[str, int] = defaultdict(int)
    by_line: dict[tuple[str, str, int], int] = defaultdict(int)
    samples = 0
    for raw in text.splitlines():
        stack, _, count_s = raw.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        samples += count
        m = re.match(r"(.*) \((.*?):(\d+)\)$", stack.split(";")[-1].strip())
        if not m:
            continue
        fn, path, line = m.group(1), m.group(2), int(m.group(3))
        by_func[f"{fn} ({path})"] += count
        by_line[(fn, path, line)] += count
    busy = max(1, samples)
    lines = []
    syscall = 0
    for (fn, path, line), c in sorted(by_line.items(), key=lambda x: -x[1]):
        code = _source_line(path, line)
        is_sys = bool(_SYSCALL.search(code))
        syscall += c if is_sys else 0
        lines.append({"where": f"{path}:{line}", "function": fn, "code": code,
                      "pct": round(100 * c / busy, 1), "syscall": is_sys})
    # py-spy leaves out threads parked in a system call (epoll_wait) unless --idle, so the
    # samples over the expected count is the share of one core the interpreter was busy.
    return {
        "busy_samples": samples, "busy_core_share": round(samples / (seconds * rate), 3),
        "syscall_pct": round(100 * syscall / busy, 1),
        "own_by_function": [(f, round(100 * c / busy, 1)) for f, c in
                            sorted(by_func.items(), key=lambda x: -x[1])[:top]],
        "own_by_line": lines[:top],
    }


def cprofile_phase(opts: Opts, net: Net, outdir: Path, seconds: float) -> dict[str, Any]:
    import pstats

    out: dict[str, Any] = {"tool": "cProfile (deterministic; inflates call-heavy code)"}
    prof_opts = Opts(seconds, 0.5, opts.window, opts.gen, opts.workdir)
    stats_files = {side: os.path.join(opts.workdir, f"cprofile-{side}.out") for side in "ab"}
    for name in ("pyl2tp-udp", "pyl2tp-ppp"):
        with contextlib.ExitStack() as stack:
            # Each side writes its profile when it exits (SIGTERM returns from main).
            wrap = {side: [PYTHON, "-m", "cProfile", "-o", f] for side, f in stats_files.items()}
            systems = stack.enter_context(pyl2tp_pair(net, 1, opts.workdir, {name}, wrap))
            s = systems[name]
            m = measure(prof_opts, net.a, net.b, s.names_a, s.names_b,
                        frames.inner_templates(s.kind, 64, 1), {"tx": s.pids_a, "rx": s.pids_b})
            out[name] = {"rate_under_profiler": m["pps"]}
        for side, f in stats_files.items():
            if os.path.exists(f):
                st = pstats.Stats(f)
                rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:20]  # type: ignore[attr-defined]
                out[name]["tx" if side == "a" else "rx"] = {"own_seconds": [
                    (f"{fn[2]} ({Path(fn[0]).name}:{fn[1]})", round(v[2], 3)) for fn, v in rows]}
    return out


# -- report ---------------------------------------------------------------------------------------


def _value(cell: dict[str, Any] | None, size: int) -> float | None:
    if cell is None:
        return None
    return float(cell["pps"] / 1e3 if size == 64 else cell["mbps"])


def table_rows(cells: Sequence[dict[str, Any]], sessions: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for label, system, floor in SCENARIOS:
        for n in sessions:
            for size in SIZES:
                for direction in DIRECTIONS:
                    key = {"sessions": n, "size": size, "direction": direction}
                    py = find(cells, system=system, half=None, **key)
                    if py is None:
                        continue
                    fl = find(cells, system=floor, half=None, **key)
                    kv = find(cells, system="kernel-vxlan", half=None, **key)
                    vpy, vfl, vkv = _value(py, size), _value(fl, size), _value(kv, size)
                    rows.append({
                        "scenario": label, "sessions": n, "direction": direction,
                        "metric": "kpps, 64B" if size == 64 else "Mbit/s, 1400B",
                        "pyl2tp": vpy, "floor": vfl, "kernel": vkv,
                        "pyl2tp/floor": vpy / vfl if vpy and vfl else None,
                        "pyl2tp/kernel": vpy / vkv if vpy and vkv else None,
                        "loss": py["loss"],
                        "loss_floor": fl["loss"] if fl else None,
                        "loss_kernel": kv["loss"] if kv else None,
                        "spread": py["spread"],
                        "us_per_pkt": _us_per_packet(py), "us_per_pkt_floor": _us_per_packet(fl),
                        "machine_us": _machine_us_per_packet(py),
                        "machine_us_floor": _machine_us_per_packet(fl),
                        "machine_us_kernel": _machine_us_per_packet(kv),
                        "kernel_generator_cpu": kv["cpu"]["generator"] if kv else None,
                        "cpu_tx": py["cpu"].get("tx"), "cpu_rx": py["cpu"].get("rx"),
                        "background": py["cpu"].get("background"),
                        "quiet_rounds": py["quiet_rounds"],
                    })
    return rows


def _fmt(v: float | None, spec: str) -> str:
    if v is None:
        width = re.match(r"\d*", spec).group()  # type: ignore[union-attr]
        return "-".rjust(int(width or 0))
    return format(v, spec)


def _us_per_packet(cell: dict[str, Any] | None) -> float | None:
    """CPU the relaying processes (both sides) spent per delivered packet, in microseconds:
    a cost that does not depend on how much CPU other processes left over."""
    if cell is None or not cell["pps"]:
        return None
    used = cell["cpu"].get("tx", 0) + cell["cpu"].get("rx", 0)
    return used / 100 / cell["pps"] * 1e6 if used else None


def _machine_us_per_packet(cell: dict[str, Any] | None) -> float | None:
    """CPU the whole machine spent per delivered packet, other people's processes left out:
    generator, relays, kernel threads and softirqs all included, so the kernel (whose work
    runs inside the generator's send calls) compares with the userspace relays."""
    if cell is None or not cell["pps"]:
        return None
    used = cell["cpu"]["system"] - cell["cpu"]["background"]
    return used / 100 / cell["pps"] * 1e6 if used > 0 else None


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    head = (f"{'scenario':16s} {'sess':>4s} {'metric':13s} {'dir':3s} {'pyl2tp':>7s} "
            f"{'floor':>7s} {'kernel':>7s} {'py/floor':>8s} {'py/kern':>7s} {'loss':>6s} "
            f"{'±':>4s} {'cpu tx/rx':>9s} {'bg':>4s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        cpu = f"{_fmt(r['cpu_tx'], '.0f')}/{_fmt(r['cpu_rx'], '.0f')}"
        print(f"{r['scenario']:16s} {r['sessions']:4d} {r['metric']:13s} {r['direction']:3s} "
              f"{_fmt(r['pyl2tp'], '7.1f')} {_fmt(r['floor'], '7.1f')} "
              f"{_fmt(r['kernel'], '7.1f')} {_fmt(r['pyl2tp/floor'], '8.2f')} "
              f"{_fmt(r['pyl2tp/kernel'], '7.3f')} {100 * r['loss']:5.2f}% "
              f"{100 * r['spread']:3.0f}% {cpu:>9s} {_fmt(r['background'], '3.0f')}%"
              f"{'' if r['quiet_rounds'] else ' !'}")


def print_cost_table(rows: Sequence[dict[str, Any]]) -> None:
    print("\nCPU per delivered packet, in microseconds. relays: user + system time of the "
          "relaying processes of both sides\n(pyl2tp daemons, floor.py); machine: all CPU "
          "used meanwhile minus other people's processes (generator,\nkernel threads and "
          "softirqs included), the only way to charge the kernel, whose work runs in the "
          "generator):")
    head = (f"{'scenario':16s} {'sess':>4s} {'metric':13s} {'dir':3s} | {'relays:':>7s} "
            f"{'pyl2tp':>6s} {'floor':>6s} {'py/fl':>5s} | {'machine:':>8s} {'pyl2tp':>6s} "
            f"{'floor':>6s} {'kernel':>6s} {'py/fl':>5s} {'py/kern':>7s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        a, b = r["us_per_pkt"], r["us_per_pkt_floor"]
        ma, mb, mk = r["machine_us"], r["machine_us_floor"], r["machine_us_kernel"]
        print(f"{r['scenario']:16s} {r['sessions']:4d} {r['metric']:13s} {r['direction']:3s} | "
              f"{'':7s} {_fmt(a, '6.2f')} {_fmt(b, '6.2f')} "
              f"{_fmt(a / b if a and b else None, '5.2f')} | {'':8s} {_fmt(ma, '6.2f')} "
              f"{_fmt(mb, '6.2f')} {_fmt(mk, '6.2f')} "
              f"{_fmt(ma / mb if ma and mb else None, '5.2f')} "
              f"{_fmt(ma / mk if ma and mk else None, '7.2f')}")


def print_extras(cells: Sequence[dict[str, Any]]) -> None:
    gens = [c for c in cells if c["system"] == "generator"]
    if gens:
        print("\ngenerator ceiling (bare veth, no tunnel; sink = the veth's rx counter):")
        for c in gens:
            print(f"  {c['size']:5d}B {c['mode']:6s} loop: {c['pps'] / 1e3:8.1f} kpps "
                  f"{c['mbps']:8.1f} Mbit/s  generator cpu {c['cpu']['generator']:3.0f}%  "
                  f"loss {100 * c['loss']:.2f}%  background {c['cpu']['background']:.0f}%")
    halves = [c for c in cells if c.get("half")]
    if halves:
        print("\none worker vs two (64B; median and best round in kpps; cpu = all the worker "
              "processes;\nclosed = closed loop, open = generator flat out, the excess refused "
              "by the TAP and counted as loss):")
        for c in halves:
            print(f"  {c['half']:5s} {c.get('mode', ''):6s} {c['system']:18s} "
                  f"{c['pps'] / 1e3:7.1f} kpps (best {c['pps_best'] / 1e3:6.1f})  "
                  f"loss {100 * c['loss']:5.1f}%  cpu workers {_cpu_sum(c):4.0f}%  "
                  f"generator {c['cpu']['generator']:3.0f}%  background "
                  f"{c['cpu']['background']:3.0f}%"
                  f"{'  generator-bound' if c['cpu']['generator'] >= 90 else ''}")
        for half, mode, one, two in (("encap", "closed", "floor-1w", "floor-2w"),
                                     ("encap", "open", "floor-1w", "floor-2w"),
                                     ("decap", "closed", "floor-1w", "floor-2w"),
                                     ("decap", "open", "floor-1w", "floor-2w"),
                                     ("e2e", "closed", "floor-e2e-1w", "floor-e2e-2w")):
            c1 = find(cells, system=one, half=half, mode=mode)
            c2 = find(cells, system=two, half=half, mode=mode)
            if c1 and c2 and c1["pps"]:
                print(f"  floor {half} {mode}: 2 workers / 1 worker = "
                      f"{c2['pps'] / c1['pps']:.2f}x (median), "
                      f"{c2['pps_best'] / c1['pps_best']:.2f}x (best rounds)")
        base = find(cells, system="floor-e2e-1w", half="e2e")
        for style in ("asyncio", "blocking"):
            c = find(cells, system=f"floor-e2e-{style}", half="e2e")
            if base and c and base["pps"]:
                print(f"  floor e2e, {style} loop / epoll loop = {c['pps'] / base['pps']:.2f}x "
                      f"(median); CPU per packet {_us_per_packet(c) or 0:.2f} vs "
                      f"{_us_per_packet(base) or 0:.2f} us")


def _cpu_sum(c: dict[str, Any]) -> float:
    return float(sum(v for k, v in c["cpu"].items() if k in ("worker", "tx", "rx")))


def print_profile(prof: dict[str, Any]) -> None:
    print(f"\nprofile of the pyl2tp daemons, 64B frames, 1 session ({prof.get('tool')}):")
    for name in ("pyl2tp-udp", "pyl2tp-ppp"):
        for side in ("tx", "rx"):
            p = prof.get(name, {}).get(side)
            if not p:
                continue
            if "own_by_line" in p:
                print(f"  {name} {side} ({p['what']}): {p['rate_under_profiler'] / 1e3:.1f} kpps "
                      f"under the profiler, daemon {p['daemon_cpu']:.0f}% of a core, "
                      f"background {p['background']:.0f}%;\n    {p['syscall_pct']:.0f}% of the "
                      "busy samples on lines calling the kernel (*); own time by line:")
                for e in p["own_by_line"][:12]:
                    mark = "*" if e["syscall"] else " "
                    print(f"      {e['pct']:5.1f}% {mark} {e['where']:34s} {e['code'][:58]}")
            else:
                print(f"  {name} {side}, own seconds:")
                for fn, sec in p["own_seconds"][:12]:
                    print(f"      {sec:7.3f}s  {fn}")


def plot(rows: Sequence[dict[str, Any]], cells: Sequence[dict[str, Any]],
         outdir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for metric, fname, unit in (("kpps, 64B", "dataplane-pps.png", "kpps (64-byte frames)"),
                                ("Mbit/s, 1400B", "dataplane-mbps.png",
                                 "Mbit/s (1400-byte frames)")):
        sel = [r for r in rows if r["metric"] == metric]
        if not sel:
            continue
        labels = [f"{r['scenario']}\n{r['sessions']} sess {r['direction']}" for r in sel]
        fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(sel)), 5.5))
        width = 0.27
        xs = list(range(len(sel)))
        for k, (col, color, label) in enumerate((("pyl2tp", "tab:blue", "pyl2tp"),
                                                 ("floor", "tab:orange", "Python floor"),
                                                 ("kernel", "tab:gray", "kernel VXLAN"))):
            ax.bar([x + (k - 1) * width for x in xs], [r[col] or 0 for r in sel], width,
                   label=label, color=color)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=7, rotation=45, ha="right")
        ax.set_ylabel(unit)
        ax.set_title(f"pyl2tp data plane vs Python floor vs kernel: {unit}")
        ax.legend()
        fig.tight_layout()
        path = outdir / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    halves = [c for c in cells if c.get("half") and c.get("mode", "closed") == "closed"]
    if halves:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        groups = ("encap", "decap", "e2e")
        bars = (("floor, 1 worker", "floor-1w", "floor-e2e-1w", "tab:orange"),
                ("floor, 2 workers", "floor-2w", "floor-e2e-2w", "tab:red"),
                ("pyl2tp (1 worker)", "pyl2tp-udp", None, "tab:blue"))
        for k, (label, half_sys, e2e_sys, color) in enumerate(bars):
            xs, vals = [], []
            for g, half in enumerate(groups):
                c = find(halves, system=e2e_sys if half == "e2e" else half_sys, half=half)
                if c is not None:
                    xs.append(g + (k - 1) * 0.27)
                    vals.append(c["pps"] / 1e3)
            ax.bar(xs, vals, 0.27, label=label, color=color)
            for x, v in zip(xs, vals, strict=True):
                ax.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(["encap alone\n(TAP -> UDP)", "decap alone\n(UDP -> TAP)",
                            "end to end\n(both sides)"])
        ax.set_ylabel("kpps (64-byte frames), closed loop")
        ax.set_title("1 vs 2 worker processes (multi-queue TAP + SO_REUSEPORT), 2 cores")
        ax.legend()
        fig.tight_layout()
        path = outdir / "dataplane-workers.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


# -- main -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="1 session, 1 round, short cells (under a minute)")
    p.add_argument("--duration", type=float, default=None,
                   help="measured seconds per cell and round (default 0.8, quick 0.4)")
    p.add_argument("--warmup", type=float, default=None,
                   help="unmeasured seconds before each cell (default 0.25, quick 0.15)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds; cells are medians (default 3, quick 1)")
    p.add_argument("--sessions", default=None, help="session counts (default 1,100; quick 1)")
    p.add_argument("--window", type=int, default=400,
                   help="generator's in-flight limit in packets, 5 times that for traffic "
                        "spread over 5 devices or more (0 = open loop)")
    p.add_argument("--only", default=None,
                   help="comma-separated subset of: generator,kernel,floor,udp,ip,ppp,workers")
    p.add_argument("--styles", action="store_true",
                   help="also time the floor's asyncio and blocking-thread loops (workers part)")
    p.add_argument("--profile", action="store_true",
                   help="also sample the daemons with py-spy (cProfile if missing)")
    p.add_argument("--profile-seconds", type=float, default=8.0)
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each phase, wait up to SECONDS (in all) for other work on the "
                        "machine to fall below a quarter of a core")
    p.add_argument("--python-generator", action="store_true",
                   help="use gen_py.py even if gcc exists")
    p.add_argument("--output", default=str(RESULTS / "dataplane.json"))
    args = p.parse_args(argv)

    if os.geteuid() != 0:
        print("run.py: needs root (network namespaces, TAP devices)", file=sys.stderr)
        return 1
    duration = args.duration or (0.4 if args.quick else 0.8)
    warmup = args.warmup if args.warmup is not None else (0.15 if args.quick else 0.25)
    rounds = args.rounds or (1 if args.quick else 3)
    sessions = [int(x) for x in (args.sessions or ("1" if args.quick else "1,100")).split(",")]
    parts = set(args.only.split(",")) if args.only else {
        "generator", "kernel", "floor", "udp", "ip", "ppp", "workers"}
    want = {s for s in SYSTEMS if s.split("-")[-1] in parts or s.split("-")[0] in parts}
    if "ppp" in parts:
        want.add("floor-tun")
    if "udp" in parts or "ip" in parts:
        want.add("floor-tap")

    # SIGTERM unwinds like Ctrl-C, so the namespaces and daemons are always torn down.
    def on_term(_sig: int, _frame: object) -> None:
        raise SystemExit(143)
    signal.signal(signal.SIGTERM, on_term)

    machine = machine_info()
    log(f"machine: {machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}, "
        f"Python {machine['python']}, load average {machine['loadavg_at_start'][0]:.2f}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    res = Results()
    prof: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="pyl2tp-bench-") as workdir:
        gen = Generator.build(workdir, args.python_generator)
        log(f"generator: {gen.kind}")
        opts = Opts(duration, warmup, args.window, gen, workdir)
        waited = 0.0

        def quiet() -> None:
            nonlocal waited
            if args.wait_quiet > waited:
                waited += wait_quiet(args.wait_quiet - waited)

        with Topology() as topo:
            net = build_net(topo)
            log(f"namespaces {net.a.name} <-> {net.b.name}, veth {net.veth_a}/{net.veth_b}")
            if "generator" in parts:
                quiet()
                generator_ceiling(res, opts, net, 1)
            if want:
                for n in sessions:
                    quiet()
                    main_phase(res, opts, net, n, rounds, want)
            if "workers" in parts:
                quiet()
                workers_phase(res, opts, net, rounds, args.styles)
            if args.profile:
                quiet()
                prof = profile_phase(opts, net, out.parent, args.profile_seconds)
    elapsed = time.monotonic() - started

    cells = res.cells()
    rows = table_rows(cells, sessions)
    print()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, Linux {machine['kernel']}, "
          f"{machine['implementation']} {machine['python']}; load average at start "
          f"{machine['loadavg_at_start'][0]:.2f}")
    print(f"generator: {gen.kind}; closed loop, at most {args.window} packets in flight "
          f"({5 * args.window} over 100 devices)")
    print(f"each cell: median of {rounds} interleaved round(s) of {duration:g} s "
          f"(+{warmup:g} s warm-up), leaving out rounds during which other processes used "
          f"{QUIET:g}% of a core or more\n(! = no such quiet round: all rounds used); "
          f"total {elapsed:.0f} s"
          + (f", of which {waited:.0f} s waiting for a quiet machine" if waited else ""))
    print("pyl2tp and floor: kpps or Mbit/s of inner frames delivered; kernel: VXLAN over the "
          "same veth (Ethernet frames, also on the PPP rows),\nbounded by the generator: its "
          "single thread runs the kernel's whole path and is ~100% busy, so read it as a "
          "lower bound;\nfloor: floor.py relaying TAP "
          "(TUN on the PPP rows) over UDP; ±: spread of pyl2tp's rounds; cpu: % of one core "
          "used by\nthe sending/receiving pyl2tp daemon; bg: % of a core used by other "
          "processes on the machine meanwhile\n")
    print_table(rows)
    print_cost_table(rows)
    print_extras(cells)
    if prof:
        print_profile(prof)

    doc = {"machine": machine, "generator": gen.kind, "waited_for_quiet_s": waited,
           "duration": duration, "warmup": warmup,
           "rounds": rounds, "window": args.window, "sessions": sessions,
           "elapsed_seconds": round(elapsed, 1), "rows": rows, "cells": cells,
           "samples": res.samples, "profile": prof}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {out}")
    try:
        for path in plot(rows, cells, out.parent):
            print(f"wrote {path}")
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
