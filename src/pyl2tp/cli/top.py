"""``pyl2tp top``: tunnels and sessions with their packet and byte rates, refreshed.

Why: the counters ``pyl2tp -s show`` prints are totals since creation, and the question an
operator has during an incident is "which tunnel is busy *now*, and which one is dropping".
Rates need two readings, so each refresh takes a dump, waits, takes another and prints the
difference divided by the time between them. Nothing is added to the daemon: the dumps are
the management API's ordinary ``tunnel_get``/``session_get`` dumps and ``control_dump``.

``-b`` (batch) prints plain text with no screen control, one block per refresh, so scripts and
tests can read it; ``-n`` bounds the number of refreshes, ``-d`` sets the delay between them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from pyl2tp.errors import L2tpError

Request = Callable[[str, dict[str, Any], bool], Any]

CLEAR = "\x1b[H\x1b[J"
SORT_KEYS = ("total", "rx", "tx", "errors", "id")


class TopUsage(Exception):
    """A bad option: reported in one line by the CLI."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One pair of dumps, as taken at ``when`` (monotonic seconds)."""

    when: float
    tunnels: dict[int, dict[str, Any]]
    sessions: dict[tuple[int, int], dict[str, Any]]
    control: dict[int, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Rates:
    rx_pps: float
    rx_bps: float
    tx_pps: float
    tx_bps: float
    errors: float  # rx_errors + tx_errors per second

    @property
    def total(self) -> float:
        return self.rx_bps + self.tx_bps


def take(request: Request, clock: Callable[[], float] = time.monotonic) -> Reading:
    """Dump tunnels, sessions and control connections once."""
    when = clock()
    tunnels = {t["conn_id"]: t for t in request("tunnel_get", {}, True)}
    sessions = {(s["conn_id"], s["session_id"]): s for s in request("session_get", {}, True)}
    try:
        control = {c["tunnel_id"]: c for c in request("control_dump", {}, False)}
    except L2tpError:  # a daemon without a control plane: tunnels are still shown
        control = {}
    return Reading(when, tunnels, sessions, control)


def rates(prev: dict[str, Any] | None, cur: dict[str, Any], dt: float) -> Rates | None:
    """Per-second rates between two readings of one object's ``stats``; None when the object
    is new (no earlier reading) or its counters went backwards (deleted and re-created)."""
    if prev is None or dt <= 0:
        return None
    a, b = prev.get("stats") or {}, cur.get("stats") or {}

    def delta(name: str) -> float:
        return (int(b.get(name, 0)) - int(a.get(name, 0))) / dt

    values = [delta(n) for n in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")]
    errors = delta("rx_errors") + delta("tx_errors")
    if min(*values, errors) < 0:
        return None
    return Rates(values[0], values[1] * 8, values[2], values[3] * 8, errors)


def human(value: float, unit: str = "") -> str:
    """3-4 significant characters with k/M/G suffixes (decimal, as network rates are)."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f}{suffix}{unit}"
    return f"{value:.0f}{unit}" if value >= 10 or value == 0 else f"{value:.1f}{unit}"


def _r(r: Rates | None, attr: str, unit: str = "") -> str:
    return "-" if r is None else human(getattr(r, attr), unit)


def _sort_key(order: str) -> Callable[[tuple[Any, Rates | None]], Any]:
    def key(item: tuple[Any, Rates | None]) -> Any:
        ident, r = item
        if order == "id":
            return (0, ident)
        value = 0.0 if r is None else {"total": r.total, "rx": r.rx_bps, "tx": r.tx_bps,
                                       "errors": r.errors}[order]
        return (-value, ident)
    return key


def render(prev: Reading, cur: Reading, *, order: str = "total", max_rows: int | None = None,
           now: float | None = None) -> str:
    """The text of one refresh: a summary, the tunnel table, then the session table."""
    dt = cur.when - prev.when
    lines: list[str] = []
    stamp = time.strftime("%H:%M:%S", time.localtime(now if now is not None else time.time()))
    states: dict[str, int] = {}
    for c in cur.control.values():
        states[c["state"]] = states.get(c["state"], 0) + 1
    state_text = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    lines.append(f"pyl2tp top - {stamp}, interval {dt:.1f}s")
    lines.append(f"Tunnels: {len(cur.tunnels)}  Sessions: {len(cur.sessions)}  "
                 f"Control connections: {len(cur.control)} ({state_text})")
    trates = {tid: rates(prev.tunnels.get(tid), t, dt) for tid, t in cur.tunnels.items()}
    known = [r for r in trates.values() if r is not None]
    lines.append(
        "Total: rx " + human(sum(r.rx_bps for r in known), "bit/s") + " "
        + human(sum(r.rx_pps for r in known), " pkt/s") + "  tx "
        + human(sum(r.tx_bps for r in known), "bit/s") + " "
        + human(sum(r.tx_pps for r in known), " pkt/s") + "  errors "
        + human(sum(r.errors for r in known), "/s"))
    lines.append("")
    lines.append(f"{'TUNNEL':>10} {'PEER':>10} {'V':>1} {'ENCAP':5} {'REMOTE':<24} "
                 f"{'STATE':<14} {'SESS':>5} {'RX_PPS':>8} {'RX_BPS':>8} {'TX_PPS':>8} "
                 f"{'TX_BPS':>8} {'ERR/S':>6}")
    tunnel_rows = sorted(trates.items(), key=_sort_key(order))
    budget = None if max_rows is None else max(max_rows - len(lines) - 3, 1)
    shown = tunnel_rows if budget is None else tunnel_rows[:max(budget // 2, 1)]
    for tid, r in shown:
        t = cur.tunnels[tid]
        remote = t.get("ip_daddr") or t.get("ip6_daddr") or "-"
        if t.get("encap_type", 0) == 0:
            remote = f"[{remote}]:{t.get('udp_dport')}" if ":" in remote else \
                f"{remote}:{t.get('udp_dport')}"
        state = cur.control.get(tid, {}).get("state", "static")
        nsess = sum(1 for key in cur.sessions if key[0] == tid)
        lines.append(
            f"{tid:>10} {t.get('peer_conn_id', 0):>10} {t.get('proto_version', 0):>1} "
            f"{'udp' if t.get('encap_type', 0) == 0 else 'ip':5} {remote[:24]:<24} "
            f"{state[:14]:<14} {nsess:>5} {_r(r, 'rx_pps'):>8} {_r(r, 'rx_bps'):>8} "
            f"{_r(r, 'tx_pps'):>8} {_r(r, 'tx_bps'):>8} {_r(r, 'errors'):>6}")
    if len(shown) < len(tunnel_rows):
        lines.append(f"  ... {len(tunnel_rows) - len(shown)} more tunnels")
    lines.append("")
    lines.append(f"{'SESSION':>10} {'TUNNEL':>10} {'PEER':>10} {'IFNAME':<15} "
                 f"{'RX_PPS':>8} {'RX_BPS':>8} {'TX_PPS':>8} {'TX_BPS':>8} {'ERR/S':>6}")
    srates = {key: rates(prev.sessions.get(key), s, dt) for key, s in cur.sessions.items()}
    session_rows = sorted(srates.items(), key=_sort_key(order))
    if max_rows is not None:
        room = max(max_rows - len(lines), 1)
        shown_s = session_rows[:room - 1] if len(session_rows) > room else session_rows
    else:
        shown_s = session_rows
    for (tid, sid), r in shown_s:
        s = cur.sessions[(tid, sid)]
        lines.append(
            f"{sid:>10} {tid:>10} {s.get('peer_session_id', 0):>10} "
            f"{str(s.get('ifname', '-'))[:15]:<15} {_r(r, 'rx_pps'):>8} {_r(r, 'rx_bps'):>8} "
            f"{_r(r, 'tx_pps'):>8} {_r(r, 'tx_bps'):>8} {_r(r, 'errors'):>6}")
    if len(shown_s) < len(session_rows):
        lines.append(f"  ... {len(session_rows) - len(shown_s)} more sessions")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pyl2tp top", add_help=False,
        description="Tunnels and sessions with packet/byte rates, refreshed.")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-b", "--batch", action="store_true",
                   help="plain text, no screen control (for scripts)")
    p.add_argument("-n", "--iterations", type=int, default=None, metavar="COUNT",
                   help="stop after COUNT refreshes (default: until interrupted)")
    p.add_argument("-d", "--delay", type=float, default=2.0, metavar="SECONDS",
                   help="seconds between the two dumps of each refresh (default 2)")
    p.add_argument("-o", "--sort", choices=SORT_KEYS, default="total",
                   help="sort by total/rx/tx bit rate, error rate, or id")
    try:
        args, rest = p.parse_known_args(list(argv))
    except SystemExit:
        raise TopUsage("bad option") from None
    if rest:
        raise TopUsage(f'unknown argument "{rest[0]}"')
    if args.iterations is not None and args.iterations < 1:
        raise TopUsage("-n needs a count of at least 1")
    if not args.delay > 0:
        raise TopUsage("-d needs a positive number of seconds")
    return args


USAGE = """\
Usage: pyl2tp top [ -b ] [ -n COUNT ] [ -d SECONDS ] [ -o { total | rx | tx | errors | id } ]
  -b  batch mode: plain text blocks, no screen control (for scripts)
  -n  number of refreshes, then exit (default: until Ctrl-C)
  -d  seconds between the two dumps each rate is computed from (default 2)
  -o  sort order (default total bit rate)
"""


def run(argv: Sequence[str], request: Request, out: TextIO = sys.stdout, *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic) -> int:
    """Run ``pyl2tp top``; returns the exit status. Ctrl-C ends it quietly."""
    args = parse_args(argv)
    if args.help:
        out.write(USAGE)
        return 0
    interactive = not args.batch and out.isatty()
    prev = take(request, clock)
    done = 0
    try:
        while args.iterations is None or done < args.iterations:
            sleep(args.delay)
            cur = take(request, clock)
            rows = shutil.get_terminal_size().lines - 1 if interactive else None
            text = render(prev, cur, order=args.sort, max_rows=rows)
            if interactive:
                out.write(CLEAR + text)
            else:
                out.write(text + ("\n" if args.iterations is None or
                                  done + 1 < args.iterations else ""))
            out.flush()
            prev = cur
            done += 1
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["USAGE", "Rates", "Reading", "TopUsage", "human", "rates", "render", "run", "take"]
