"""Churn: many creates and deletes must leave a daemon's memory and descriptors where they were.

* ``test_session_churn``: 100,000 session creates and deletes (at full scale) on one static
  tunnel through the management API, as ``ip l2tp add/del session`` would do them, from four
  API clients at once, each creating a batch of 50 sessions and deleting it again (PPP
  pseudowires: no device is created, so the test measures pyl2tp, not the TAP driver).
* ``test_dial_churn``: 10,000 dial/teardown cycles (at full scale) between a LAC daemon and an
  LNS daemon in two namespaces, eight at a time: each cycle dials an L2TPv3 tunnel through the
  LAC's API, places a call on it, waits for the session to be up on the LAC, and hangs up
  (StopCCN), waiting for the tunnel to go; the waits follow the LAC's event stream.

Each test first warms up at the same concurrency, in rounds of a fifth of its size until a
round grows no daemon's RSS by 1 % (RSS climbs during the first thousands of operations while
the Python heap stays flat: the allocator's high-water mark settling, see
``docs/robustness.md``), then records VmRSS
(``/proc/PID/status``) and open descriptors (``/proc/PID/fd``) of each daemon, runs the churn,
waits until no tunnel or session is left (including connections lingering after StopCCN), and
requires both to be back within 5 % of the start.

The size is ``PYL2TP_CHURN_SCALE`` times the full scale (default 0.05: 5,000 session creates
and 500 dial cycles, well under a minute together); ``docs/robustness.md`` has the command for
the full campaign and the numbers of the last one.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pyl2tp.mgmt.client import Client
from tests.support.daemon import Daemon, lac_lns_pair
from tests.support.hostile import proc_fds, proc_rss_kb
from tests.support.netns import Topology, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

FULL_SESSION_CREATES = 100_000
FULL_DIAL_CYCLES = 10_000
SESSION_CLIENTS = 4
SESSION_BATCH = 50
DIAL_WORKERS = 8
TOLERANCE = 0.05
WARM_UP = 5  # warm-up rounds are a fifth of the run


def churn_scale() -> float:
    raw = os.environ.get("PYL2TP_CHURN_SCALE", "0.05")
    try:
        scale = float(raw)
    except ValueError:
        raise pytest.UsageError(f"PYL2TP_CHURN_SCALE={raw!r} is not a number") from None
    if not 0 < scale <= 100:
        raise pytest.UsageError("PYL2TP_CHURN_SCALE must be in (0, 100]")
    return scale


@dataclass
class Footprint:
    rss_kb: int
    fds: int

    @classmethod
    def of(cls, d: Daemon) -> Footprint:
        """RSS and descriptors once the API connections the test just closed are gone on
        the daemon's side too (it closes them asynchronously): the fewest descriptors seen
        within half a second."""
        fds = proc_fds(d.pid)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            time.sleep(0.05)
            fds = min(fds, proc_fds(d.pid))
        return cls(proc_rss_kb(d.pid), fds)


def warm_up(daemons: list[Daemon], run: Callable[[], object], rounds: int = 8) -> int:
    """Run ``run`` until one round grows no daemon's RSS by 1 % or more (at most ``rounds``
    times): the measurement then starts from a settled allocator. Returns the rounds run."""
    for n in range(1, rounds + 1):
        before = [proc_rss_kb(d.pid) for d in daemons]
        run()
        after = [proc_rss_kb(d.pid) for d in daemons]
        if all(a < b * 1.01 for a, b in zip(after, before, strict=True)):
            return n
    return rounds


def check_footprint(name: str, start: Footprint, end: Footprint) -> str:
    line = (f"{name}: RSS {start.rss_kb} -> {end.rss_kb} kB "
            f"({(end.rss_kb - start.rss_kb) / start.rss_kb:+.1%}), "
            f"fds {start.fds} -> {end.fds}")
    assert end.rss_kb <= start.rss_kb * (1 + TOLERANCE), line
    assert end.fds <= start.fds * (1 + TOLERANCE), line
    return line


# ---------------------------------------------------------------------------------------------
# Session churn on a static tunnel


@pytest.fixture
def static_daemon() -> Iterator[Daemon]:
    with Topology() as topo:
        ns = topo.add("churn")
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        # A veth inside the namespace holds the local address and a route to the "peer".
        ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
        ns.addr_add("v0", "10.80.0.1/24")
        ns.link_up("v0")
        ns.link_up("v1")
        with Daemon(ns, log_level="warning") as d:
            d.start()
            d.request("tunnel_create", {
                "conn_id": 1, "peer_conn_id": 1, "proto_version": 3, "encap_type": 0,
                "ip_saddr": "10.80.0.1", "ip_daddr": "10.80.0.2", "udp_sport": 5000,
                "udp_dport": 5000})
            yield d


def _timed_threads(work: Callable[..., None], args: Iterable[tuple[Any, ...]]) -> float:
    """Run ``work(*a)`` for every ``a`` in ``args`` in threads started together; re-raise the
    first error any of them hit, else return the seconds they took."""
    errors: list[BaseException] = []

    def guarded(*a: Any) -> None:
        try:
            work(*a)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=a) for a in args]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - start


def _session_round(path: str, client_no: int, rounds: int) -> None:
    base = 1_000_000 * (client_no + 1)
    with Client(path, timeout=30) as c:
        for _ in range(rounds):
            for j in range(SESSION_BATCH):
                c.request("session_create", {"conn_id": 1, "session_id": base + j,
                                             "peer_session_id": base + j, "pw_type": 7})
            for j in range(SESSION_BATCH):
                c.request("session_delete", {"conn_id": 1, "session_id": base + j})


def _session_churn(d: Daemon, rounds: int) -> float:
    return _timed_threads(_session_round,
                          [(d.socket_path, n, rounds) for n in range(SESSION_CLIENTS)])


def test_session_churn(static_daemon: Daemon) -> None:
    d = static_daemon
    creates = round(FULL_SESSION_CREATES * churn_scale())
    rounds = max(1, creates // (SESSION_CLIENTS * SESSION_BATCH))
    warm = warm_up([d], lambda: _session_churn(d, max(2, rounds // WARM_UP)))
    start = Footprint.of(d)
    seconds = _session_churn(d, rounds)
    assert d.request("session_get", dump=True) == []
    assert len(d.request("tunnel_get", dump=True)) == 1
    end = Footprint.of(d)
    done = rounds * SESSION_CLIENTS * SESSION_BATCH
    line = check_footprint("daemon", start, end)
    print(f"\nsession churn: {done} creates + {done} deletes in {seconds:.1f} s "
          f"({2 * done / seconds:.0f} requests/s) after {warm} warm-up rounds; {line}")
    assert d.alive()


# ---------------------------------------------------------------------------------------------
# Dial/teardown churn between two daemons

LNS_CONFIG = """
[daemon]
host_name = "lns"
max_tunnels = 20000
log_level = "warning"

[[listen]]
address = "0.0.0.0"

[defaults]
hello_interval = 0
# Lingering connections after StopCCN last one retransmission cycle: 0.5 + 1 s.
retransmit_initial = 0.5
max_retries = 1

[[peer]]
name = "lac"
host_name = "lac"
"""

DIAL = {"peer": "10.81.0.2", "version": 3, "host_name": "lac", "hello_interval": 0,
        "local_port": 1701}


class Events:
    """The LAC's event stream, dispatched to waiters by control connection id."""

    def __init__(self, path: str) -> None:
        self.client = Client(path, timeout=30)
        self._waiters: dict[tuple[str, int], queue.SimpleQueue[dict[str, Any]]] = {}
        self._early: dict[tuple[str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stream = self.client.subscribe()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._stream:
                name = event.get("event", "")
                if name not in ("control_session_up", "control_tunnel_down"):
                    continue
                key = (name, int(event["attrs"]["conn_id"]))
                with self._lock:
                    q = self._waiters.pop(key, None)
                    if q is None:
                        self._early[key] = event
                if q is not None:
                    q.put(event)
        except (OSError, ValueError):
            return

    def wait(self, name: str, conn_id: int, timeout: float = 30.0) -> dict[str, Any]:
        key = (name, conn_id)
        with self._lock:
            early = self._early.pop(key, None)
            if early is not None:
                return early
            q: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
            self._waiters[key] = q
        try:
            return q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {name} for tunnel {conn_id} in {timeout} s") from None

    def close(self) -> None:
        try:
            self.client.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.client.close()


@pytest.fixture
def lac_lns() -> Iterator[tuple[Daemon, Daemon]]:
    with lac_lns_pair("10.81.0.1/24", "10.81.0.2/24", LNS_CONFIG, ipv6="off",
                      log_level="warning") as pair:
        yield pair.lac, pair.lns


def _cycle(c: Client, events: Events) -> None:
    tid = int(c.request("control_dial", DIAL)["conn_id"])
    c.request("control_call", {"conn_id": tid, "pw_type": "ppp"})
    events.wait("control_session_up", tid)
    c.request("control_hangup", {"conn_id": tid})
    events.wait("control_tunnel_down", tid)


def _dial_churn(lac: Daemon, events: Events, cycles: int) -> float:
    per_worker = [cycles // DIAL_WORKERS + (1 if n < cycles % DIAL_WORKERS else 0)
                  for n in range(DIAL_WORKERS)]

    def work(n: int) -> None:
        with Client(lac.socket_path, timeout=30) as c:
            for _ in range(n):
                _cycle(c, events)

    return _timed_threads(work, [(n,) for n in per_worker])


def _settled(d: Daemon) -> Callable[[], bool]:
    def check() -> bool:
        return (d.request("control_stats")["connections"] == 0
                and not d.request("tunnel_get", dump=True)
                and not d.request("session_get", dump=True))
    return check


def test_dial_churn(lac_lns: tuple[Daemon, Daemon]) -> None:
    lac, lns = lac_lns
    cycles = max(DIAL_WORKERS, round(FULL_DIAL_CYCLES * churn_scale()))
    events = Events(lac.socket_path)
    try:
        def warm_round() -> None:
            _dial_churn(lac, events, max(100, cycles // WARM_UP))
            for d in (lac, lns):
                wait_for(_settled(d), timeout=20, interval=0.2, message=f"{d!r} to settle")

        warm = warm_up([lac, lns], warm_round)
        start = {d: Footprint.of(d) for d in (lac, lns)}
        seconds = _dial_churn(lac, events, cycles)
        for d in (lac, lns):
            wait_for(_settled(d), timeout=30, interval=0.2, message=f"{d!r} to settle")
        end = {d: Footprint.of(d) for d in (lac, lns)}
    finally:
        events.close()
    lines = [check_footprint(name, start[d], end[d]) for name, d in (("LAC", lac), ("LNS", lns))]
    stats = {name: d.request("control_stats")["plane"] for name, d in (("LAC", lac),
                                                                       ("LNS", lns))}
    print(f"\ndial churn: {cycles} cycles in {seconds:.1f} s ({cycles / seconds:.0f}/s) "
          f"after {warm} warm-up rounds; "
          f"{'; '.join(lines)}\n{json.dumps(stats)}")
    assert stats["LNS"].get("rx_sccrq_accepted", 0) >= cycles
    assert lac.alive() and lns.alive()
