#!/usr/bin/env python3
"""Control-plane benchmark: pyl2tp LAC daemon -> pyl2tp LNS daemon (and xl2tpd as the LNS).

    .venv/bin/python bench/control/run.py [--quick] [--profile] [--only NAME ...]

Every scenario builds two fresh network namespaces (``pyl2tp-cb-lac-XXXXXX`` and
``pyl2tp-cb-lns-XXXXXX``) joined by a veth pair on a random private 10.x/24, starts the
daemons in them, measures, and tears everything down again (also on failure or Ctrl-C). The
LAC is always a pyl2tp daemon driven through its management API; the LNS is a pyl2tp daemon
with a TOML configuration, or xl2tpd 1.3.18 through ``tests/support/xl2tpd.py``.

Figures (see README.md for how to read them):

1. 10,000 sessions over 100 tunnels: L2TPv2 PPP and L2TPv3 PPP pseudowires (no [[ppp]]
   profile, so no device), and L2TPv3 Ethernet pseudowires (one TAP per session per side).
2. Tunnels/s for 5,000 tunnels dialled in one burst at one LNS socket.
3. RSS and descriptors per tunnel (10,000 tunnels) and per session (10,000 and 65,535).
4. CPU of 10,000 idle tunnels exchanging HELLOs, hello_interval 60 s and 10 s.
5. The same harness with xl2tpd as the LNS: tunnels/s, idle CPU, memory, sessions/s and how
   many sessions it takes before it breaks.

Results: a table on stdout, ``bench/results/control.json`` and ``bench/results/control-*.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    REPO,
    Api,
    Background,
    BenchDaemon,
    EventCounter,
    ProcSample,
    collapse_profile,
    machine,
    proc_sample,
    system_busy_s,
)
from tests.support import xl2tpd as xl
from tests.support.netns import NetNS, Topology

RESULTS = REPO / "bench" / "results"
# Where plots and raw profiles go: next to the JSON, named after it (set in main).
PREFIX = RESULTS / "control"
PY_SPY = Path(sys.executable).with_name("py-spy")

SESSION_EVENTS = ["control_session_up", "control_session_down", "control_tunnel_up",
                  "control_tunnel_down"]


# ---- configuration ----


def lns_config(address: str, *, hello: float = 60, window: int = 8,
               setup_timeout: float = 30) -> str:
    return f"""
[daemon]
host_name = "bench-lns"
max_tunnels = 20000
# A benchmark dials thousands of tunnels at once from one address: lift the flood bounds.
max_half_open_tunnels = 20000
max_sessions = 200000
sccrq_rate = 0

[[listen]]
address = "{address}"

[defaults]
hello_interval = {hello}
max_sessions = 65535
receive_window = {window}
setup_timeout = {setup_timeout}

[[peer]]
name = "any"
"""


def lac_config(*, hello: float = 60, window: int = 8, setup_timeout: float = 30) -> str:
    return f"""
[daemon]
host_name = "bench-lac"
max_tunnels = 20000
max_sessions = 200000

[defaults]
hello_interval = {hello}
max_sessions = 65535
receive_window = {window}
setup_timeout = {setup_timeout}
"""


@dataclass(frozen=True)
class Scale:
    quick: bool
    s1_repeats: int
    tap_tunnels: int
    tunnels_burst: int
    tunnels_total: int
    hello_window_60: float
    hello_window_10: float
    hello10_tunnels: int
    big_sessions: tuple[int, int] | None  # (tunnels, sessions per tunnel)
    density: tuple[int, int] | None
    xl_tunnels_total: int
    xl_idle_window: float


FULL = Scale(quick=False, s1_repeats=3, tap_tunnels=100, tunnels_burst=5000,
             tunnels_total=10000, hello_window_60=62, hello_window_10=30,
             hello10_tunnels=10000, big_sessions=(257, 255), density=(10, 1000),
             xl_tunnels_total=10000, xl_idle_window=62)
QUICK = Scale(quick=True, s1_repeats=1, tap_tunnels=10, tunnels_burst=5000,
              tunnels_total=5000, hello_window_60=0, hello_window_10=20,
              hello10_tunnels=0, big_sessions=None, density=None,
              xl_tunnels_total=5000, xl_idle_window=0)


# ---- plumbing ----


class Rig:
    """Two namespaces on a veth pair with random private addresses, torn down on exit."""

    def __init__(self, lns_role: str = "cb-lns") -> None:
        self.topo = Topology()
        a, b = random.randint(100, 250), random.randint(0, 255)
        self.lac_ip, self.lns_ip = f"10.{a}.{b}.1", f"10.{a}.{b}.2"
        try:
            self.lac_ns = self.topo.add("cb-lac")
            self.lns_ns = self.topo.add(lns_role)
            self.topo.veth(self.lac_ns, self.lns_ns, f"{self.lac_ip}/24", f"{self.lns_ip}/24")
        except BaseException:
            self.topo.close()
            raise
        self.closers: list[Callable[[], object]] = []

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()
        self.topo.close()

    def daemon(self, ns: NetNS, name: str, config: str, **kw: Any) -> BenchDaemon:
        d = BenchDaemon(ns, name, config, **kw)
        self.closers.append(d.close)
        return d

    def pyl2tp_pair(self, *, hello: float = 60, window: int = 8, setup_timeout: float = 30,
                    lac_nofile: int = 1 << 17, lns_nofile: int = 1 << 17
                    ) -> tuple[BenchDaemon, BenchDaemon]:
        lac = self.daemon(self.lac_ns, "lac", lac_config(hello=hello, window=window,
                                                         setup_timeout=setup_timeout),
                          nofile=lac_nofile)
        lns = self.daemon(self.lns_ns, "lns", lns_config(self.lns_ip, hello=hello, window=window,
                                                         setup_timeout=setup_timeout),
                          nofile=lns_nofile)
        lac.spawn()
        lns.spawn()
        lac.wait_ready()
        lns.wait_ready()
        return lac, lns

    def delete_taps(self) -> dict[str, Any]:
        """Delete every TAP of both namespaces in one rtnetlink batch per namespace (link
        group 77, then ``ip link del group 77``): closing N TAP descriptors one by one costs
        the kernel an RCU grace period each (~10-17 ms), a batch costs one."""
        out: dict[str, Any] = {}
        for ns in (self.lac_ns, self.lns_ns):
            t = time.monotonic()
            links = json.loads(ns.ip("-j", "link", "show").stdout or "[]")
            names = [lk["ifname"] for lk in links if lk["ifname"].startswith("l2tpeth")]
            if not names:
                continue
            # -force: go on past devices that vanished meanwhile (a CDN deleted them).
            ns.run(["ip", "-force", "-batch", "-"], timeout=300, check=False,
                   input="".join(f"link set dev {n} group 77\n" for n in names))
            t1 = time.monotonic()
            ns.run(["ip", "link", "del", "group", "77"], timeout=300, check=False)
            out[ns.role] = {"devices": len(names), "set_group_s": round(t1 - t, 3),
                            "delete_group_s": round(time.monotonic() - t1, 3)}
        return out


class Profiler:
    """py-spy attached to one pid for the duration of a ``with`` block (``--profile``)."""

    def __init__(self, name: str, pid: int, enabled: bool, sink: dict[str, Any]) -> None:
        self.name, self.pid, self.enabled, self.sink = name, pid, enabled, sink
        self.path = Path(f"{PREFIX}-py-spy-{name}.txt")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        if self.enabled and PY_SPY.exists():
            self.proc = subprocess.Popen(
                [str(PY_SPY), "record", "--function", "-r", "250", "-f", "raw", "-p",
                 str(self.pid), "-o", str(self.path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.8)  # attach before the work starts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.path.exists():
            self.sink[self.name] = collapse_profile(str(self.path), top=25)


def curve(times: list[float], t0: float, points: int = 300) -> list[list[float]]:
    """``[[seconds since t0, count], ...]`` downsampled to about ``points`` points."""
    if not times:
        return []
    step = max(1, len(times) // points)
    out = [[round(times[i] - t0, 4), i + 1] for i in range(0, len(times), step)]
    if out[-1][1] != len(times):
        out.append([round(times[-1] - t0, 4), len(times)])
    return out


def delta(a: ProcSample, b: ProcSample) -> dict[str, Any]:
    return {"cpu_s": round(b.cpu_s - a.cpu_s, 3), "rss_kib": b.rss_kib - a.rss_kib,
            "fds": b.fds - a.fds, "rss_kib_now": b.rss_kib, "fds_now": b.fds}


def mem_used_kib() -> int:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        info[key] = int(rest.split()[0])
    return info["MemTotal"] - info["MemAvailable"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- pyl2tp scenarios ----


def sessions_run(tunnels: int, per_tunnel: int, version: int, pw: str, *,
                 window: int = 8, setup_timeout: float = 30, profile: str | None = None,
                 profiles: dict[str, Any] | None = None, teardown_probe: bool = False
                 ) -> dict[str, Any]:
    """Dial ``tunnels`` tunnels and place ``per_tunnel`` calls on each at once; time until
    the LNS reports the last session up (its ``control_session_up`` event: ICCN received)."""
    target = tunnels * per_tunnel
    res: dict[str, Any] = {"tunnels": tunnels, "sessions_per_tunnel": per_tunnel,
                           "version": version, "pw_type": pw, "receive_window": window}
    with Rig() as rig:
        lac, lns = rig.pyl2tp_pair(window=window, setup_timeout=setup_timeout)
        if pw == "eth":
            rig.closers.append(rig.delete_taps)  # runs before the daemons stop
        ev = EventCounter(lns.socket_path, SESSION_EVENTS)
        rig.closers.append(ev.close)
        time.sleep(0.3)
        base_lac, base_lns, mem0 = lac.sample(), lns.sample(), mem_used_kib()
        sink = profiles if profiles is not None else {}
        with Profiler(profile or "", lns.pid, profile is not None, sink), \
                Api(lac.socket_path) as api:
            bg = Background([lac.pid, lns.pid])
            t0 = time.monotonic()
            dials = api.many([("control_dial", {"peer": rig.lns_ip, "version": version})
                              for _ in range(tunnels)])
            ev.wait("control_tunnel_up", tunnels, timeout=60, stall=20)
            tun_lac, tun_lns = lac.sample(), lns.sample()
            t_calls = time.monotonic()
            api.many([("control_call", {"conn_id": d["conn_id"], "count": per_tunnel,
                                        "pw_type": pw}) for d in dials])
            ok = ev.wait("control_session_up", target, timeout=600, stall=30)
            res["other_cpu_pct"] = bg.other_pct()
        ups = ev.times["control_session_up"]
        end = ups[-1] if ups else time.monotonic()
        res["down_reasons"] = {k: v for k, v in ev.reasons.items() if v}
        res.update(ok=ok, established=ev.counts["control_session_up"],
                   sessions_down=ev.counts["control_session_down"],
                   tunnels_down=ev.counts["control_tunnel_down"],
                   seconds=round(end - t0, 3),
                   seconds_calls_only=round(end - t_calls, 3),
                   tunnel_seconds=round(ev.times["control_tunnel_up"][-1] - t0, 3)
                   if ev.times["control_tunnel_up"] else None)
        res["rate"] = round(res["established"] / res["seconds"], 1) if res["seconds"] else 0
        if len(ups) >= 1000:  # for the xl2tpd comparison: counted from the first call
            res["seconds_first_1000"] = round(ups[999] - t_calls, 3)
            res["rate_first_1000"] = round(1000 / (ups[999] - t_calls), 1)
        time.sleep(0.5)
        end_lac, end_lns, mem1 = lac.sample(), lns.sample(), mem_used_kib()
        n = max(res["established"], 1)
        res["lns"] = {"tunnels": delta(base_lns, tun_lns), "sessions": delta(tun_lns, end_lns),
                      "cpu_us_per_session": round(1e6 * (end_lns.cpu_s - tun_lns.cpu_s) / n),
                      "rss_kib_per_session": round((end_lns.rss_kib - tun_lns.rss_kib) / n, 3),
                      "fds_per_session": round((end_lns.fds - tun_lns.fds) / n, 3),
                      "nofile": lns.nofile}
        res["lac"] = {"tunnels": delta(base_lac, tun_lac), "sessions": delta(tun_lac, end_lac),
                      "cpu_us_per_session": round(1e6 * (end_lac.cpu_s - tun_lac.cpu_s) / n),
                      "rss_kib_per_session": round((end_lac.rss_kib - tun_lac.rss_kib) / n, 3),
                      "fds_per_session": round((end_lac.fds - tun_lac.fds) / n, 3)}
        if pw == "eth":
            # Kernel memory of the TAP devices (both namespaces): what the machine lost beyond
            # the two daemons' RSS growth. Approximate: anything else running moves it too.
            rss = (end_lns.rss_kib - base_lns.rss_kib) + (end_lac.rss_kib - base_lac.rss_kib)
            res["kernel_kib_per_tap_approx"] = round((mem1 - mem0 - rss) / (2 * n), 1)
        res["plane"] = lns.request("control_stats")["plane"]
        res["curve"] = curve(ups, t0)
        if teardown_probe and ok:
            res["teardown_probe"] = _teardown_probe(lac, lns, ev, dials[0]["conn_id"],
                                                    per_tunnel)
        if pw == "eth":
            res["tap_batch_delete"] = rig.delete_taps()
        t = time.monotonic()
    res["teardown_s"] = round(time.monotonic() - t, 3)
    return res


def _teardown_probe(lac: BenchDaemon, lns: BenchDaemon, ev: EventCounter, conn_id: int,
                    sessions: int) -> dict[str, Any]:
    """Hang up one tunnel with its TAP sessions from the LAC; time until the LAC answers
    (it deletes its own TAPs first), until the LNS has removed the tunnel, and the longest
    time each daemon's event loop left a management request unanswered meanwhile."""
    downs = ev.counts["control_tunnel_down"]
    lags: dict[str, list[float]] = {"lac": [], "lns": []}
    stop = threading.Event()

    def ping(name: str, path: str) -> None:
        with Api(path) as api:
            while not stop.is_set():
                t = time.monotonic()
                api.one("version")
                lags[name].append(time.monotonic() - t)
                time.sleep(0.005)

    threads = [threading.Thread(target=ping, args=(n, d.socket_path), daemon=True)
               for n, d in (("lac", lac), ("lns", lns))]
    for th in threads:
        th.start()
    time.sleep(0.2)
    with Api(lac.socket_path) as api:
        t0 = time.monotonic()
        api.one("control_hangup", {"conn_id": conn_id})
        t_lac = time.monotonic()
    ev.wait("control_tunnel_down", downs + 1, timeout=120)
    t_lns = time.monotonic()
    time.sleep(0.2)
    stop.set()
    for th in threads:
        th.join(30)
    return {"sessions": sessions, "lac_reply_s": round(t_lac - t0, 3),
            "lns_removed_s": round(t_lns - t0, 3),
            "ms_per_tap": round(1000 * (t_lac - t0) / sessions, 2),
            "lac_api_max_lag_s": round(max(lags["lac"]), 3) if lags["lac"] else None,
            "lns_api_max_lag_s": round(max(lags["lns"]), 3) if lags["lns"] else None}


def tunnels_run(scale: Scale, *, hello: float, burst: int, total: int, window_s: float,
                profile: bool, profiles: dict[str, Any], chunk: int = 1000) -> dict[str, Any]:
    """``burst`` tunnels dialled at once (tunnels/s), then paced up to ``total`` (memory and
    descriptors per tunnel), then ``window_s`` seconds idle (CPU of the HELLOs)."""
    res: dict[str, Any] = {"hello_interval": hello, "burst": burst, "total": total}
    with Rig() as rig:
        lac, lns = rig.pyl2tp_pair(hello=hello)
        ev = EventCounter(lns.socket_path, SESSION_EVENTS)
        lac_ev = EventCounter(lac.socket_path, SESSION_EVENTS)
        rig.closers += [ev.close, lac_ev.close]
        time.sleep(0.3)
        base_lac, base_lns = lac.sample(), lns.sample()
        errors: list[str] = []
        with Api(lac.socket_path) as api:
            name = f"tunnels-burst-h{hello:g}"
            with Profiler(name, lns.pid, profile, profiles):
                bg = Background([lac.pid, lns.pid])
                t0 = time.monotonic()
                api.many([("control_dial", {"peer": rig.lns_ip, "version": 2,
                                            "hello_interval": hello})
                          for _ in range(burst)], errors=errors)
                t_dialled = time.monotonic()
                ok = ev.wait("control_tunnel_up", burst - len(errors), timeout=300, stall=30)
            ups = ev.times["control_tunnel_up"]
            end = ups[-1] if ups else time.monotonic()
            res["burst_result"] = {
                "ok": ok, "established": ev.counts["control_tunnel_up"],
                "down": ev.counts["control_tunnel_down"], "dial_errors": len(errors),
                "seconds": round(end - t0, 3), "api_dial_seconds": round(t_dialled - t0, 3),
                "other_cpu_pct": bg.other_pct(),
                "rate": round(ev.counts["control_tunnel_up"] / (end - t0), 1),
                "lac_side_seconds": round(lac_ev.times["control_tunnel_up"][-1] - t0, 3)
                if lac_ev.times["control_tunnel_up"] else None}
            mid_lac, mid_lns = lac.sample(), lns.sample()
            res["burst_result"]["lns"] = delta(base_lns, mid_lns)
            res["burst_result"]["lac"] = delta(base_lac, mid_lac)
            res["burst_result"]["lns_cpu_us_per_tunnel"] = round(
                1e6 * (mid_lns.cpu_s - base_lns.cpu_s) / max(ev.counts["control_tunnel_up"], 1))
            res["burst_result"]["plane"] = lns.request("control_stats")["plane"]
            # Paced to the total: chunks of `chunk`, each waited for, so that the LNS's
            # backlog never reaches the retransmission timeout.
            have = ev.counts["control_tunnel_up"]
            t1 = time.monotonic()
            while have < total:
                n = min(chunk, total - have)
                api.many([("control_dial", {"peer": rig.lns_ip, "version": 2,
                                            "hello_interval": hello})
                          for _ in range(n)], errors=errors)
                ev.wait("control_tunnel_up", have + n, timeout=120, stall=30)
                if ev.counts["control_tunnel_up"] == have:
                    break
                have = ev.counts["control_tunnel_up"]
        res["curve"] = curve(ev.times["control_tunnel_up"], t0)
        res["paced_seconds"] = round(time.monotonic() - t1, 3)
        time.sleep(1.5)  # let the delayed acknowledgements of the setup go out
        full_lac, full_lns = lac.sample(), lns.sample()
        n = max(ev.counts["control_tunnel_up"] - ev.counts["control_tunnel_down"], 1)
        res["established"] = ev.counts["control_tunnel_up"]
        res["down"] = ev.counts["control_tunnel_down"]
        res["lns"] = {**delta(base_lns, full_lns), "nofile": lns.nofile,
                      "fds_base": base_lns.fds,
                      "rss_kib_per_tunnel": round((full_lns.rss_kib - base_lns.rss_kib) / n, 3),
                      "fds_per_tunnel": round((full_lns.fds - base_lns.fds) / n, 5)}
        res["lac"] = {**delta(base_lac, full_lac),
                      "rss_kib_per_tunnel": round((full_lac.rss_kib - base_lac.rss_kib) / n, 3),
                      "fds_per_tunnel": round((full_lac.fds - base_lac.fds) / n, 5)}
        if window_s:
            res["idle"] = idle_window(lac, lns, window_s, f"hello-h{hello:g}", profile, profiles)
            res["idle"]["tunnels_down_during"] = ev.counts["control_tunnel_down"] - res["down"]
        res["lac_tunnels_down"] = lac_ev.counts["control_tunnel_down"]
        res["lac_tunnel_down_reasons"] = lac_ev.reasons["control_tunnel_down"]
    return res


def idle_window(lac: BenchDaemon, lns: BenchDaemon, seconds: float, name: str,
                profile: bool, profiles: dict[str, Any]) -> dict[str, Any]:
    st0 = lns.request("control_stats")["plane"]
    a_lac, a_lns = lac.sample(), lns.sample()
    bg = Background([lac.pid, lns.pid])
    with Profiler(name, lns.pid, profile, profiles):
        time.sleep(seconds)
    b_lac, b_lns = lac.sample(), lns.sample()
    other = bg.other_pct()
    st1 = lns.request("control_stats")["plane"]
    rx = st1.get("rx_dispatched", 0) - st0.get("rx_dispatched", 0)
    return {"window_s": round(b_lns.t - a_lns.t, 2),
            "lns_cpu_pct": round(100 * (b_lns.cpu_s - a_lns.cpu_s) / (b_lns.t - a_lns.t), 2),
            "lac_cpu_pct": round(100 * (b_lac.cpu_s - a_lac.cpu_s) / (b_lac.t - a_lac.t), 2),
            "lns_rx_messages": rx, "other_cpu_pct": other,
            "lns_us_per_rx_message": round(1e6 * (b_lns.cpu_s - a_lns.cpu_s) / rx, 1)
            if rx else None}


def hello_run(tunnels: int, hello: float, window_s: float, profile: bool,
              profiles: dict[str, Any]) -> dict[str, Any]:
    with Rig() as rig:
        lac, lns = rig.pyl2tp_pair(hello=hello)
        ev = EventCounter(lns.socket_path, SESSION_EVENTS)
        rig.closers.append(ev.close)
        t0 = time.monotonic()
        with Api(lac.socket_path) as api:
            for i in range(0, tunnels, 1000):
                n = min(1000, tunnels - i)
                api.many([("control_dial", {"peer": rig.lns_ip, "version": 2,
                                            "hello_interval": hello}) for _ in range(n)])
                ev.wait("control_tunnel_up", i + n, timeout=120, stall=30)
        res: dict[str, Any] = {"tunnels": ev.counts["control_tunnel_up"], "hello_interval": hello,
                               "setup_seconds": round(time.monotonic() - t0, 2)}
        time.sleep(1.5)
        res["idle"] = idle_window(lac, lns, window_s, f"hello-h{hello:g}", profile, profiles)
        res["idle"]["tunnels_down_during"] = ev.counts["control_tunnel_down"]
    return res


def fd_limit_run(with_tap: bool) -> dict[str, Any]:
    """What a 1024 descriptor limit (the usual default soft limit) does: a LAC dialling 1,100
    tunnels from ephemeral ports (one socket each), and (``with_tap``) an LNS given 1,100
    Ethernet sessions (one TAP descriptor each)."""
    out: dict[str, Any] = {"nofile": 1024}
    with Rig() as rig:
        lac, lns = rig.pyl2tp_pair(lac_nofile=1024, lns_nofile=1024)
        lac.expect_errors = lns.expect_errors = True
        ev = EventCounter(lns.socket_path, SESSION_EVENTS)
        rig.closers.append(ev.close)
        errors: list[str] = []
        with Api(lac.socket_path) as api:
            api.many([("control_dial", {"peer": rig.lns_ip, "version": 2, "local_port": 0})
                      for _ in range(1100)], errors=errors)
            ev.wait("control_tunnel_up", 1100 - len(errors), timeout=60, stall=10)
        out["lac_ephemeral_ports"] = {
            "attempted": 1100, "refused": len(errors), "up": ev.counts["control_tunnel_up"],
            "lac_fds": lac.sample().fds, "lns_fds": lns.sample().fds,
            "first_error": errors[0] if errors else None,
            # Tunnels whose control connection came up but whose data-plane tunnel could not
            # be made (an OSError escaping ControlDriver._tunnel_up, logged with a traceback).
            "lac_tunnel_up_exceptions": lac.log().count("control event TunnelUp")}
    if not with_tap:
        return out
    with Rig() as rig:
        lac, lns = rig.pyl2tp_pair(lac_nofile=1 << 17, lns_nofile=1024)
        lac.expect_errors = lns.expect_errors = True
        rig.closers.append(rig.delete_taps)
        ev = EventCounter(lac.socket_path, SESSION_EVENTS)
        rig.closers.append(ev.close)
        with Api(lac.socket_path) as api:
            dials = api.many([("control_dial", {"peer": rig.lns_ip, "version": 3})
                              for _ in range(11)])
            ev.wait("control_tunnel_up", 11, timeout=30)
            api.many([("control_call", {"conn_id": d["conn_id"], "count": 100,
                                        "pw_type": "eth"}) for d in dials])
            ev.wait("control_session_up", 1100, timeout=120, stall=10)
            time.sleep(2)  # CDNs for the sessions the LNS could not open
        lns_sessions = lns.request("session_get", dump=True)
        out["lns_tap_sessions"] = {
            "attempted": 1100, "lns_fds": lns.sample().fds,
            "lns_sessions": len(lns_sessions),
            "lns_sessions_with_device": sum(1 for x in lns_sessions if x.get("ifname")),
            "lns_log_sample": [ln for ln in lns.log().splitlines() if "WARNING" in ln
                               or "ERROR" in ln][:3],
            "lac_up": ev.counts["control_session_up"],
            "lac_down": ev.counts["control_session_down"],
            "lns_log_emfile": lns.log().count("Too many open files")}
        rig.delete_taps()
    return out


# ---- xl2tpd ----


class LogCounter:
    """Counts patterns in a growing log file (a thread tails it), with arrival times."""

    def __init__(self, path: Path, patterns: dict[str, bytes]) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 (closed in close())
        self.patterns = patterns
        self.counts = dict.fromkeys(patterns, 0)
        self.times: dict[str, list[float]] = {k: [] for k in patterns}
        self._tail = b""
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self.f.read()
            now = time.monotonic()
            if data:
                buf = self._tail + data
                cut = buf.rfind(b"\n") + 1
                whole, self._tail = buf[:cut], buf[cut:]
                for key, pat in self.patterns.items():
                    n = whole.count(pat)
                    if n:
                        self.counts[key] += n
                        self.times[key].extend([now] * n)
            else:
                time.sleep(0.02)

    def wait(self, key: str, target: int, timeout: float, stall: float,
             alive: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + timeout
        last, last_at = -1, time.monotonic()
        while self.counts[key] < target:
            now = time.monotonic()
            if self.counts[key] != last:
                last, last_at = self.counts[key], now
            if now >= deadline or now - last_at > stall or not alive():
                time.sleep(0.2)
                return self.counts[key] >= target
            time.sleep(0.05)
        return True

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.f.close()


XL_PATTERNS = {"tunnel_up": b"Connection established to", "session_up": b"Call established with",
               "fd_setsize": b"FD_SETSIZE", "closed": b"Connection closed to",
               "out_of_order": b"Received out of order control packet"}


@contextlib.contextmanager
def xl2tpd_lns(rig: Rig) -> Iterator[xl.Xl2tpd]:
    """xl2tpd as the LNS: no challenge, no IP assignment (pyl2tp without a [[ppp]] profile
    assigns none either), no debug logging; the stub pppd only holds the pty open."""
    orig = xl._stub_script
    # Lighter than the harness's stub (which records its arguments and copies the pty to a
    # file): one exec of cat per session, so that xl2tpd's own cost dominates.
    xl._stub_script = lambda record, capture_dir: "#!/bin/sh\nexec cat >/dev/null 2>&1\n"
    try:
        d = xl.Xl2tpd(rig.lns_ns, rig.lns_ip, [xl.LnsSection(extra={"assign ip": "no"})],
                      debug=False)
        quiet = io.StringIO()

        def close() -> None:
            with contextlib.redirect_stdout(quiet):
                d.close()

        rig.closers.append(close)
        d.start()
        yield d
    finally:
        xl._stub_script = orig


def xl2tpd_tunnels_run(scale: Scale) -> dict[str, Any]:
    burst, total = scale.tunnels_burst, scale.xl_tunnels_total
    res: dict[str, Any] = {"burst": burst, "total": total}
    with Rig("cb-xl") as rig:
        lac = rig.daemon(rig.lac_ns, "lac", lac_config())
        lac.start()
        with xl2tpd_lns(rig) as d:
            logc = LogCounter(d.log_path, XL_PATTERNS)
            rig.closers.append(logc.close)
            lac_ev = EventCounter(lac.socket_path, SESSION_EVENTS)
            rig.closers.append(lac_ev.close)
            base = proc_sample(d.pid)
            with Api(lac.socket_path) as api:
                t0 = time.monotonic()
                api.many([("control_dial", {"peer": rig.lns_ip, "version": 2})
                          for _ in range(burst)])
                ok = logc.wait("tunnel_up", burst, timeout=300, stall=30, alive=d.alive)
                ups = logc.times["tunnel_up"]
                end = ups[-1] if ups else time.monotonic()
                mid = proc_sample(d.pid) if d.alive() else None
                res["burst_result"] = {
                    "ok": ok, "established": logc.counts["tunnel_up"],
                    "seconds": round(end - t0, 3),
                    "rate": round(logc.counts["tunnel_up"] / (end - t0), 1),
                    "cpu_s": round(mid.cpu_s - base.cpu_s, 3) if mid else None,
                    "cpu_us_per_tunnel": round(1e6 * (mid.cpu_s - base.cpu_s)
                                               / max(logc.counts["tunnel_up"], 1))
                    if mid else None}
                have = logc.counts["tunnel_up"]
                while have < total and d.alive():
                    n = min(1000, total - have)
                    api.many([("control_dial", {"peer": rig.lns_ip, "version": 2})
                              for _ in range(n)])
                    logc.wait("tunnel_up", have + n, timeout=120, stall=10, alive=d.alive)
                    if logc.counts["tunnel_up"] == have:
                        break
                    have = logc.counts["tunnel_up"]
            res["curve"] = curve(logc.times["tunnel_up"], t0)
            time.sleep(1.5)
            res["established"] = logc.counts["tunnel_up"]
            res["alive"] = d.alive()
            if d.alive():
                full = proc_sample(d.pid)
                n = max(logc.counts["tunnel_up"], 1)
                res["rss_kib"] = full.rss_kib
                res["fds"] = full.fds
                res["rss_kib_per_tunnel"] = round((full.rss_kib - base.rss_kib) / n, 3)
                res["fds_per_tunnel"] = round((full.fds - base.fds) / n, 5)
                if scale.xl_idle_window:
                    st0 = lac.request("control_stats")["plane"].get("rx_dispatched", 0)
                    a = proc_sample(d.pid)
                    time.sleep(scale.xl_idle_window)
                    b = proc_sample(d.pid)
                    st1 = lac.request("control_stats")["plane"].get("rx_dispatched", 0)
                    res["idle"] = {"window_s": round(b.t - a.t, 2),
                                   "cpu_pct": round(100 * (b.cpu_s - a.cpu_s) / (b.t - a.t), 2),
                                   "lac_rx_messages": st1 - st0}
            res["lac_tunnels_down"] = lac_ev.counts["control_tunnel_down"]
            res["lac_tunnel_down_reasons"] = lac_ev.reasons["control_tunnel_down"]
            res["closed_in_log"] = logc.counts["closed"]
            res["out_of_order_in_log"] = logc.counts["out_of_order"]
    return res


def xl2tpd_sessions_run(tunnels: int, per_tunnel: int) -> dict[str, Any]:
    """Calls until xl2tpd stops establishing them (it select()s on one pty per session)."""
    target = tunnels * per_tunnel
    res: dict[str, Any] = {"tunnels": tunnels, "sessions_per_tunnel": per_tunnel,
                           "attempted": target}
    with Rig("cb-xl") as rig:
        lac = rig.daemon(rig.lac_ns, "lac", lac_config())
        lac.start()
        with xl2tpd_lns(rig) as d:
            logc = LogCounter(d.log_path, XL_PATTERNS)
            rig.closers.append(logc.close)
            lac_ev = EventCounter(lac.socket_path, SESSION_EVENTS)
            rig.closers.append(lac_ev.close)
            with Api(lac.socket_path) as api:
                dials = api.many([("control_dial", {"peer": rig.lns_ip, "version": 2})
                                  for _ in range(tunnels)])
                logc.wait("tunnel_up", tunnels, timeout=60, stall=20, alive=d.alive)
                base = proc_sample(d.pid)
                last: list[tuple[ProcSample, int]] = [(base, 0)]
                stop = threading.Event()

                def sampler() -> None:  # the fullest reading before xl2tpd dies
                    while not stop.is_set():
                        with contextlib.suppress(OSError, ValueError):
                            count = logc.counts["session_up"]
                            now = proc_sample(d.pid)
                            if now.fds >= last[0][0].fds:
                                last[0] = (now, count)
                        time.sleep(0.1)

                th = threading.Thread(target=sampler, daemon=True)
                th.start()
                t0 = time.monotonic()
                api.many([("control_call", {"conn_id": dd["conn_id"], "count": per_tunnel})
                          for dd in dials])
                logc.wait("session_up", target, timeout=300, stall=10, alive=d.alive)
                stop.set()
                th.join(5)
            ups = logc.times["session_up"]
            res["established"] = logc.counts["session_up"]
            res["alive"] = d.alive()
            res["exit_status"] = None if d.proc is None else d.proc.poll()
            res["fd_setsize_abort"] = logc.counts["fd_setsize"] > 0
            res["seconds"] = round(ups[-1] - t0, 3) if ups else None
            res["rate"] = round(len(ups) / (ups[-1] - t0), 1) if ups else 0
            if len(ups) >= 1000:
                res["seconds_first_1000"] = round(ups[999] - t0, 3)
                res["rate_first_1000"] = round(1000 / (ups[999] - t0), 1)
            s, n = last[0]
            n = max(n, 1)
            res["sample_at_sessions"] = n
            res["last_sample"] = {"rss_kib": s.rss_kib, "fds": s.fds,
                                  "cpu_s": round(s.cpu_s - base.cpu_s, 3)}
            res["rss_kib_per_session"] = round((s.rss_kib - base.rss_kib) / n, 3)
            res["fds_per_session"] = round((s.fds - base.fds) / n, 3)
            res["curve"] = curve(ups, t0)
            res["lac_session_up"] = lac_ev.counts["control_session_up"]
    return res


# ---- report ----


@dataclass
class Row:
    figure: str
    value: str
    target: str = "-"
    ok: bool | None = None
    xl2tpd: str = "-"
    ratio: str = "-"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, figure: str, value: str, target: str = "-", ok: bool | None = None,
            xl2tpd: str = "-", ratio: str = "-") -> None:
        self.rows.append(Row(figure, value, target, ok, xl2tpd, ratio))

    def table(self) -> str:
        head = ("figure", "measured", "target", "pass", "xl2tpd", "pyl2tp/xl2tpd")
        cells = [head] + [(r.figure, r.value, r.target,
                           "-" if r.ok is None else ("PASS" if r.ok else "FAIL"),
                           r.xl2tpd, r.ratio) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = []
        for k, c in enumerate(cells):
            lines.append("  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def build_report(r: dict[str, Any]) -> Report:
    rep = Report()
    s1 = r.get("sessions_v2_nodev")
    if s1:
        runs = s1["runs"]
        secs = statistics.median(x["seconds"] for x in runs)
        ok = all(x["ok"] for x in runs)
        each = ", ".join(f"{x['seconds']:.2f}" for x in runs)
        rep.add(f"10k sessions/100 tunnels, v2 PPP, no device (median of {len(runs)}: {each} s)",
                f"{secs:.2f} s = {10000 / secs:,.0f} sessions/s", "<= 5 s (>= 2,000/s)",
                ok and secs <= 5)
    for key, label in (("sessions_v3_nodev", "10k sessions/100 tunnels, v3 PPP pw, no device"),
                       ("sessions_v3_tap", "sessions/tunnels, v3 Ethernet, TAP per session")):
        x = r.get(key)
        if not x:
            continue
        n = x["tunnels"] * x["sessions_per_tunnel"]
        if key == "sessions_v3_tap":
            label = f"{n:,} sessions/{x['tunnels']} tunnels, v3 Ethernet, 2 TAPs per session"
        rep.add(label + ("" if x["ok"] else f" (only {x['established']:,} up)"),
                f"{x['seconds']:.2f} s = {x['rate']:,.0f} sessions/s",
                "<= 5 s (>= 2,000/s)", x["ok"] and x["rate"] >= 2000)
    dn = r.get("sessions_density")
    if dn:
        rep.add(f"density: {dn['tunnels']} tunnels x {dn['sessions_per_tunnel']} sessions (v2)",
                f"{dn['seconds']:.2f} s = {dn['rate']:,.0f} sessions/s, LNS "
                f"{dn['lns']['cpu_us_per_session']} us CPU/session")
    xs = r.get("xl2tpd_sessions")
    ps = r.get("sessions_v2_small")
    if ps and xs:
        py_rate = ps.get("rate_first_1000") or ps["rate"]
        xl_rate = xs.get("rate_first_1000") or xs["rate"]
        rep.add(f"sessions/s, first 1,000 of {ps['tunnels']}x{ps['sessions_per_tunnel']} (v2)",
                f"{py_rate:,.0f}/s", xl2tpd=f"{xl_rate:,.0f}/s",
                ratio=f"{py_rate / xl_rate:.1f}x" if xl_rate else "-")
        rep.add("sessions established before the LNS breaks (one LNS)",
                f">= {ps['established']:,} of {ps['attempted']:,} (no limit hit)",
                xl2tpd=f"{xs['established']:,} (then "
                       f"{'FD_SETSIZE abort' if xs['fd_setsize_abort'] else 'stalled'})",
                ratio=f"{ps['established'] / max(xs['established'], 1):.1f}x")
    t = r.get("tunnels")
    xt = r.get("xl2tpd_tunnels")
    if t:
        b = t["burst_result"]
        xb = _get(xt or {}, "burst_result")
        rep.add(f"tunnels/s, {b['established']:,} tunnels dialled at once, one LNS socket",
                f"{b['rate']:,.0f}/s ({b['seconds']:.2f} s; LNS {b['lns_cpu_us_per_tunnel']} "
                "us CPU/tunnel)",
                xl2tpd=f"{xb['rate']:,.0f}/s ({xb['seconds']:.2f} s; {xb['established']:,} up)"
                if xb else "-",
                ratio=f"{b['rate'] / xb['rate']:.1f}x" if xb and xb["rate"] else "-")
        n = t["established"] - t["down"]
        lns = t["lns"]
        rep.add(f"tunnels lost while dialling {t['total']:,} and idling (LAC side)",
                f"{t.get('lac_tunnels_down', '?')}", xl2tpd=f"{xt['lac_tunnels_down']:,} "
                f"({xt.get('out_of_order_in_log', '?')} 'out of order' in its log)"
                if xt else "-")
        rep.add(f"{n:,} tunnels on one LNS address: LNS descriptors "
                f"(limit {lns['nofile']})",
                f"{lns['fds_now']} total, {lns['fds']:+d} for the tunnels",
                "no fd per tunnel", n >= t["total"] and lns["fds"] <= 8,
                xl2tpd=f"{xt['fds']} total" if xt and "fds" in xt else "-")
        rep.add(f"RSS per tunnel at {n:,} tunnels (LNS)",
                f"{lns['rss_kib_per_tunnel']:.2f} KiB",
                xl2tpd=f"{xt['rss_kib_per_tunnel']:.2f} KiB ({xt['established']:,})"
                if xt and "rss_kib_per_tunnel" in xt else "-",
                ratio=f"{lns['rss_kib_per_tunnel'] / xt['rss_kib_per_tunnel']:.2f}x"
                if xt and xt.get("rss_kib_per_tunnel") else "-")
        idle = t.get("idle")
        if idle and t["hello_interval"] == 60:
            xi = _get(xt or {}, "idle")
            rep.add(f"idle CPU, {n:,} tunnels, hello 60 s (LNS; LAC "
                    f"{idle['lac_cpu_pct']:.2f} %)",
                    f"{idle['lns_cpu_pct']:.2f} % of a core", "< 5 %",
                    idle["lns_cpu_pct"] < 5,
                    xl2tpd=f"{xi['cpu_pct']:.2f} % ({xt['established']:,} tunnels)"
                    if xi and xt else "-",
                    ratio=f"{idle['lns_cpu_pct'] / xi['cpu_pct']:.2f}x"
                    if xi and xi["cpu_pct"] else "-")
    for key in ("hello10", "tunnels"):
        h = r.get(key)
        if not h or (key == "tunnels" and h["hello_interval"] != 10):
            continue
        idle = h["idle"]
        n = h.get("tunnels") or h["established"]
        rep.add(f"idle CPU, {n:,} tunnels, hello 10 s (LNS; LAC {idle['lac_cpu_pct']:.2f} %; "
                f"{idle['lns_us_per_rx_message']} us/message)",
                f"{idle['lns_cpu_pct']:.2f} % of a core", "< 5 %", idle["lns_cpu_pct"] < 5)
    for key in ("sessions_v2_nodev", "sessions_v3_nodev", "sessions_v3_tap"):
        x = r.get(key)
        if not x:
            continue
        x = x["runs"][0] if "runs" in x else x
        n = x["established"]
        lns = x["lns"]
        what = {"sessions_v2_nodev": "v2", "sessions_v3_nodev": "v3 PPP pw",
                "sessions_v3_tap": "v3 Ethernet/TAP"}[key]
        extra = ""
        if key == "sessions_v3_tap" and "kernel_kib_per_tap_approx" in x:
            extra = f"; + ~{x['kernel_kib_per_tap_approx']:.0f} KiB kernel per TAP"
        rep.add(f"RSS/fds per session at {n:,} sessions, {what} (LNS)",
                f"{lns['rss_kib_per_session']:.2f} KiB, {lns['fds_per_session']:.2f} fd{extra}",
                "<= 4 KiB" if key != "sessions_v3_tap" else "-",
                lns["rss_kib_per_session"] <= 4 if key != "sessions_v3_tap" else None,
                xl2tpd=f"{xs['rss_kib_per_session']:.2f} KiB, {xs['fds_per_session']:.2f} fd "
                       "+ a pppd process" if xs and key == "sessions_v2_nodev" else "-")
    big = r.get("sessions_65535")
    if big:
        lns = big["lns"]
        rep.add(f"RSS per session at {big['established']:,} sessions in one daemon "
                f"({big['tunnels']}x{big['sessions_per_tunnel']}, v2, LNS)",
                f"{lns['rss_kib_per_session']:.2f} KiB "
                f"({lns['sessions']['rss_kib_now'] / 1024:.0f} MiB total), "
                f"{lns['sessions']['fds_now']} fds",
                "<= 4 KiB", big["ok"] and lns["rss_kib_per_session"] <= 4)
        rep.add(f"time for {big['established']:,} sessions / {big['tunnels']} tunnels",
                f"{big['seconds']:.1f} s = {big['rate']:,.0f} sessions/s (LNS "
                f"{lns['cpu_us_per_session']} us CPU/session)")
    tap = r.get("sessions_v3_tap")
    if tap and tap.get("teardown_probe"):
        tp = tap["teardown_probe"]
        batch = _get(tap, "tap_batch_delete", "cb-lns")
        rep.add(f"hang up 1 tunnel with {tp['sessions']} TAP sessions (LAC answers; LNS "
                "drops it)",
                f"{tp['lac_reply_s']:.2f} s; {tp['lns_removed_s']:.2f} s ({tp['ms_per_tap']} "
                f"ms/TAP; event loops blocked up to {tp['lac_api_max_lag_s']} s LAC, "
                f"{tp['lns_api_max_lag_s']} s LNS)",
                xl2tpd=f"(ip link del group: {batch['devices']:,} TAPs in "
                       f"{batch['delete_group_s']:.2f} s)" if batch else "-")
    fd = r.get("fd_limits")
    if fd:
        e = fd["lac_ephemeral_ports"]
        rep.add("nofile 1024: LAC dialling 1,100 tunnels from ephemeral ports",
                f"{e['up']:,} up at the LNS, {e['refused']} dials refused (EMFILE), "
                f"{e['lac_tunnel_up_exceptions']} half-up (EMFILE in _tunnel_up)")
        if "lns_tap_sessions" in fd:
            s = fd["lns_tap_sessions"]
            rep.add("nofile 1024: LNS given 1,100 TAP sessions",
                    f"{s['lns_sessions']:,} made, the rest refused with CDN (EMFILE)")
    return rep


def plots(r: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label in (("sessions_v2_nodev", "pyl2tp v2 PPP, no device (100x100)"),
                       ("sessions_v3_nodev", "pyl2tp v3 PPP pw, no device (100x100)"),
                       ("sessions_v3_tap", "pyl2tp v3 Ethernet, TAP"),
                       ("sessions_density", "pyl2tp v2, 10 tunnels x 1000"),
                       ("sessions_v2_small", "pyl2tp v2 (100x20)"),
                       ("xl2tpd_sessions", "xl2tpd LNS (100x20 attempted)")):
        x = r.get(key)
        if not x:
            continue
        x = x["runs"][0] if "runs" in x else x
        if x.get("curve"):
            ts, ns = zip(*x["curve"], strict=True)
            ax.plot(ts, ns, label=label)
    ax.axvline(5, color="grey", linestyle=":", label="target: 10k in 5 s")
    ax.set_xlabel("seconds since the first dial")
    ax.set_ylabel("sessions established at the LNS")
    ax.set_title("Session setup")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(f"{PREFIX}-sessions.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))

    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label in (("tunnels", "pyl2tp LNS"), ("xl2tpd_tunnels", "xl2tpd LNS")):
        x = r.get(key)
        if x and x.get("curve"):
            ts, ns = zip(*x["curve"], strict=True)
            ax.plot(ts, ns, label=f"{label} ({x['burst']:,} at once, then paced)")
    ax.set_xlabel("seconds since the first dial")
    ax.set_ylabel("tunnels established at the LNS")
    ax.set_title("Tunnel setup, one LNS socket")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(f"{PREFIX}-tunnels.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5))
    bars: list[tuple[str, float]] = []
    t, xt = r.get("tunnels"), r.get("xl2tpd_tunnels")
    if t:
        bars.append((f"pyl2tp\n{t['established']:,} tun", t["lns"]["rss_kib_per_tunnel"]))
    if xt and xt.get("rss_kib_per_tunnel") is not None:
        bars.append((f"xl2tpd\n{xt['established']:,} tun", xt["rss_kib_per_tunnel"]))
    _bar(axes[0], bars, "KiB RSS per tunnel (LNS)")
    bars = []
    for key, label in (("sessions_v2_nodev", "v2 10k"), ("sessions_v3_nodev", "v3 10k"),
                       ("sessions_v3_tap", "v3 TAP"), ("sessions_65535", "v2 65,535")):
        x = r.get(key)
        if x:
            x = x["runs"][0] if "runs" in x else x
            bars.append((label, x["lns"]["rss_kib_per_session"]))
    xs = r.get("xl2tpd_sessions")
    if xs:
        bars.append((f"xl2tpd\n{xs['established']:,}", xs["rss_kib_per_session"]))
    _bar(axes[1], bars, "KiB RSS per session (LNS)", target=4)
    bars = []
    if t and t.get("idle"):
        bars.append((f"pyl2tp h{t['hello_interval']:g}", t["idle"]["lns_cpu_pct"]))
    h = r.get("hello10")
    if h:
        bars.append(("pyl2tp h10", h["idle"]["lns_cpu_pct"]))
    if xt and xt.get("idle"):
        bars.append(("xl2tpd h60", xt["idle"]["cpu_pct"]))
    _bar(axes[2], bars, "idle CPU % of a core (LNS)", target=5)
    path = Path(f"{PREFIX}-resources.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(str(path))
    return written


def _bar(ax: Any, bars: list[tuple[str, float]], title: str, target: float | None = None
         ) -> None:
    if bars:
        labels, values = zip(*bars, strict=True)
        ax.bar(labels, values, color="tab:blue")
        for i, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=8)
    if target is not None:
        ax.axhline(target, color="red", linestyle=":", label=f"target {target:g}")
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=8)


# ---- main ----


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller scale, under ~2 minutes")
    p.add_argument("--profile", action="store_true",
                   help="attach py-spy to the LNS during setup and idle windows (perturbs the "
                        "figures a little); summaries go into the JSON")
    p.add_argument("--only", nargs="*", default=None, help="run only these scenario keys")
    p.add_argument("--output", default=str(RESULTS / "control.json"))
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for the machine to be idle (other work "
                        "below a quarter of a core), so that the figures are not shared")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("run as root (network namespaces, TAP devices)", file=sys.stderr)
        return 1

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Tear down namespaces and daemons on SIGTERM too, and on SIGINT even when started in the
    # background of a non-interactive shell (which would leave SIGINT ignored).
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    scale = QUICK if args.quick else FULL
    global PREFIX
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    PREFIX = out.with_suffix("")
    waited = wait_quiet(args.wait_quiet) if args.wait_quiet else None
    mach = machine()
    mach["xl2tpd"] = xl.xl2tpd_version() if xl.xl2tpd_binary() else None
    mach["loadavg_start"] = Path("/proc/loadavg").read_text().split()[:3]
    print("machine: " + ", ".join(f"{k}={v}" for k, v in mach.items()), flush=True)
    profiles: dict[str, Any] = {}
    prof = args.profile
    results: dict[str, Any] = {"mode": "quick" if scale.quick else "full", "machine": mach,
                               "profiled": prof, "waited_for_quiet_s": waited, "errors": {}}

    def want(key: str) -> bool:
        return args.only is None or key in args.only

    def run(key: str, fn: Callable[[], Any]) -> None:
        if not want(key):
            return
        log(f"{key} ...")
        t = time.monotonic()
        try:
            results[key] = fn()
        except Exception as exc:  # record and go on with the next scenario
            traceback.print_exc()
            results["errors"][key] = f"{type(exc).__name__}: {exc}"
        log(f"{key} done in {time.monotonic() - t:.1f} s")

    t_start = time.monotonic()
    run("sessions_v2_nodev", lambda: {"runs": [
        sessions_run(100, 100, 2, "ppp", profile="sessions-v2" if i == 0 and prof else None,
                     profiles=profiles) for i in range(scale.s1_repeats)]})
    run("sessions_v3_nodev", lambda: sessions_run(
        100, 100, 3, "ppp", profile="sessions-v3" if prof else None, profiles=profiles))
    run("sessions_v3_tap", lambda: sessions_run(
        scale.tap_tunnels, 100, 3, "eth", profile="sessions-tap" if prof else None,
        profiles=profiles, teardown_probe=True))
    if scale.density:
        d_tunnels, d_sessions = scale.density
        run("sessions_density", lambda: sessions_run(
            d_tunnels, d_sessions, 2, "ppp", profile="density" if prof else None,
            profiles=profiles))
    run("sessions_v2_small", lambda: _small(sessions_run(100, 20, 2, "ppp")))
    run("tunnels", lambda: tunnels_run(
        scale, hello=10 if scale.quick else 60, burst=scale.tunnels_burst,
        total=scale.tunnels_total,
        window_s=scale.hello_window_10 if scale.quick else scale.hello_window_60,
        profile=prof, profiles=profiles))
    if scale.hello10_tunnels:
        run("hello10", lambda: hello_run(scale.hello10_tunnels, 10, scale.hello_window_10,
                                         prof, profiles))
    if scale.big_sessions:
        tn, per = scale.big_sessions
        run("sessions_65535", lambda: sessions_run(tn, per, 2, "ppp", setup_timeout=120))
    run("fd_limits", lambda: fd_limit_run(with_tap=not scale.quick))
    if xl.xl2tpd_binary() and os.path.isfile(xl.PPPD) and shutil.which("unshare"):
        run("xl2tpd_tunnels", lambda: xl2tpd_tunnels_run(scale))
        run("xl2tpd_sessions", lambda: xl2tpd_sessions_run(100, 20))
    else:
        results["errors"]["xl2tpd"] = "xl2tpd, pppd or unshare missing: no reference figures"
    results["profiles"] = profiles
    results["elapsed_s"] = round(time.monotonic() - t_start, 1)
    results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]

    rep = build_report(results)
    results["table"] = [r.__dict__ for r in rep.rows]
    try:
        # A profiled run's figures are perturbed by the sampler: no plots of them.
        results["plots"] = [] if prof else plots(results)
    except Exception as exc:
        results["errors"]["plots"] = f"{type(exc).__name__}: {exc}"
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")

    print()
    print(f"pyl2tp control plane, {results['mode']} run, {results['elapsed_s']} s; "
          f"{mach['cpu']}, {mach['cores']} cores, {mach['kernel']}, Python {mach['python']}, "
          f"{mach['xl2tpd']}; load {' '.join(mach['loadavg_start'])} -> "
          f"{' '.join(results['machine']['loadavg_end'])}")
    if waited is not None:
        print(f"(waited {waited} s for other work on the machine to stop)")
    print(rep.table())
    print("CPU used by other processes during the measurements (% of one core): "
          + ", ".join(f"{k} {v}" for k, v in background(results).items()))
    for key, err in results["errors"].items():
        print(f"ERROR {key}: {err}")
    for name, pr in profiles.items():
        print(f"\nprofile {name} ({pr['samples']} samples, py-spy --function):")
        for row in pr["cumulative"][:15]:
            print(f"  {row['pct']:5.1f}%  {row['function']}")
    print(f"\nwrote {', '.join([args.output, *results.get('plots', [])])}")
    return 0 if not results["errors"] else 1


def wait_quiet(limit: float, threshold: float = 25.0) -> float:
    """Wait (at most ``limit`` s) until two 3-s windows in a row show the machine busy below
    ``threshold`` % of one core; return how long that took."""
    t0 = time.monotonic()
    calm = 0
    while time.monotonic() - t0 < limit:
        a = system_busy_s()
        time.sleep(3)
        busy = 100 * (system_busy_s() - a) / 3
        calm = calm + 1 if busy < threshold else 0
        if calm >= 2:
            break
        if not calm:
            log(f"machine busy ({busy:.0f} % of a core with other work); waiting")
    return round(time.monotonic() - t0, 1)


def background(r: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, val in r.items():
        if not isinstance(val, dict):
            continue
        for sub in (val.get("runs") or [val]):
            for path in (("other_cpu_pct",), ("burst_result", "other_cpu_pct"),
                         ("idle", "other_cpu_pct")):
                v = _get(sub, *path)
                if v is not None:
                    name = key if len(path) == 1 else f"{key}.{path[0]}"
                    out[name] = max(out.get(name, 0.0), v)
    return out


def _small(res: dict[str, Any]) -> dict[str, Any]:
    res["attempted"] = res["tunnels"] * res["sessions_per_tunnel"]
    return res


if __name__ == "__main__":
    sys.exit(main())
