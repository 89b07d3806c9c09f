#!/usr/bin/env python3
"""The sans-I/O control plane alone: CPU per tunnel and per session as the counts grow.

    .venv/bin/python bench/control/micro.py [--tunnels N] [--sessions N] [--json FILE]

Two :class:`~pyl2tp.control.plane.ControlPlane` objects (a LAC and an LNS) exchange their
datagrams in memory on a virtual clock: no sockets, no asyncio, no data plane, no other
process. Only the LNS plane's calls are timed (``time.process_time``), so the figures are
the protocol core's own cost on the LNS side, and how it grows:

* per tunnel, in chunks of 1,000 tunnels up to 10,000;
* per session, in chunks of 100 sessions on one tunnel up to 1,000 (v2 and v3).

The three linear scans an earlier version of this script estimated by monkeypatching
(``ControlPlane._tie`` walking every connection on each SCCRQ, ``ControlConnection
.next_deadline`` walking every call after each message, ``_session_tie`` walking every call on
each v3 ICRQ) are indexed in ``src/`` now, so both curves should stay flat.

The LNS plane runs with the SCCRQ rate limit off and the half-open bound raised: a thousand
tunnels dialled at once from one address is what this measures, not what the limits refuse.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from pyl2tp.control.params import CallParams, ConnectionParams  # noqa: E402
from pyl2tp.control.plane import ControlPlane  # noqa: E402
from pyl2tp.wire.constants import PwType  # noqa: E402

LAC, LNS = ("lac", 1701), ("lns", 1701)


class Pair:
    def __init__(self, version: int) -> None:
        params = ConnectionParams(version=version, max_sessions=65535, hello_interval=0,
                                  call=CallParams(pw_type=PwType.PPP))
        self.params = params
        self.now = 0.0
        self.lns_cpu = 0.0
        self.lac = ControlPlane(max_tunnels=100000)
        self.lns = ControlPlane(accept=lambda _l, _p, _m: self.params, max_tunnels=100000,
                                max_half_open_tunnels=100000, sccrq_rate=0)

    def pump(self) -> None:
        """Exchange datagrams until both sides are quiet (delayed acks flushed)."""
        idle_rounds = 0
        while idle_rounds < 2:
            moved = False
            for _local, _peer, data in self.lac.datagrams():
                t = time.process_time()
                self.lns.receive("lns", data, 0, LAC, self.now)
                self.lns_cpu += time.process_time() - t
                moved = True
            t = time.process_time()
            out = self.lns.datagrams()
            self.lns.events()
            self.lns_cpu += time.process_time() - t
            for _local, _peer, data in out:
                self.lac.receive("lac", data, 0, LNS, self.now)
                moved = True
            self.lac.events()
            if moved:
                idle_rounds = 0
                continue
            idle_rounds += 1
            self.now += 0.2  # past the delayed-ack timer
            self.lac.handle_timer(self.now)
            t = time.process_time()
            self.lns.handle_timer(self.now)
            self.lns_cpu += time.process_time() - t


def tunnels_curve(total: int = 10000, chunk: int = 1000) -> list[dict[str, Any]]:
    pair = Pair(2)
    out = []
    for done in range(0, total, chunk):
        before = pair.lns_cpu
        for _ in range(chunk):
            pair.lac.dial(pair.params, "lac", LNS, pair.now)
        pair.pump()
        up = sum(1 for c in pair.lns.conns.values() if c.established)
        out.append({"tunnels": done + chunk, "established": up,
                    "lns_us_per_tunnel": round(1e6 * (pair.lns_cpu - before) / chunk, 1)})
    return out


def sessions_curve(version: int, total: int = 1000, chunk: int = 100) -> list[dict[str, Any]]:
    pair = Pair(version)
    conn = pair.lac.dial(pair.params, "lac", LNS, pair.now)
    pair.pump()
    out = []
    for done in range(0, total, chunk):
        before = pair.lns_cpu
        for _ in range(chunk):
            conn.place_call(None, now=pair.now)
        pair.lac.touch(conn)
        pair.pump()
        lns_conn = next(iter(pair.lns.conns.values()))
        up = sum(1 for c in lns_conn.calls.values() if c.established)
        out.append({"sessions": done + chunk, "established": up,
                    "lns_us_per_session": round(1e6 * (pair.lns_cpu - before) / chunk, 1)})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tunnels", type=int, default=10000)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--json", default=None, help="write the curves here")
    args = p.parse_args()
    result: dict[str, Any] = {}
    for variant in ["as is"]:
        t = tunnels_curve(args.tunnels)
        s2 = sessions_curve(2, args.sessions)
        s3 = sessions_curve(3, args.sessions)
        result[variant] = {"tunnels": t, "sessions_v2": s2, "sessions_v3": s3}
        print(f"\n== {variant} ==")
        print("tunnels  LNS us/tunnel (this chunk of 1,000)")
        for row in t:
            print(f"{row['tunnels']:>7,}  {row['lns_us_per_tunnel']:>8}")
        print("sessions on one tunnel  LNS us/session v2   v3 (this chunk of 100)")
        for a, b in zip(s2, s3, strict=True):
            print(f"{a['sessions']:>7,}  {a['lns_us_per_session']:>20}  "
                  f"{b['lns_us_per_session']:>5}")
        bad = [r for r in t if r["established"] < r["tunnels"]]
        bad += [r for r in s2 + s3 if r["established"] < r["sessions"]]
        if bad:
            print(f"WARNING: not everything established: {bad[:3]}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
