"""The Prometheus endpoint: the daemon's counters read at scrape time, served on its loop.

Why it is built this way:

* **No per-packet work.** The data path already keeps the kernel's counters as plain integers
  on every tunnel and session; the control plane keeps per-message-type counters on every
  connection. :class:`MetricsSource` reads them when Prometheus asks, so a daemon that is
  never scraped pays nothing, and one that is scraped pays once per scrape, not per packet.
  The only things it records as they happen are the few facts that are gone by the time of a
  scrape (how long a setup took, why a PPP link closed, the counters of a connection that no
  longer exists), all on control-plane events.
* **The state lives on the event loop; the rendering does not.** :class:`DaemonCollector` is
  a prometheus-client collector that copies the state into a plain :class:`Snapshot` *on the
  loop* (directly when it runs there, through ``run_coroutine_threadsafe`` from any other
  thread) and builds the metric families from that copy, so formatting tens of thousands of
  series happens in a worker thread while the loop keeps forwarding packets.
* **Bounded label sets.** Per-tunnel series are on by default; per-session series only with
  ``--metrics-sessions``: 65,535 sessions times ten counters would otherwise be 655,350 series
  in every scrape. Without it the session counters are still exported, summed over all
  sessions (including deleted ones, so the sums never go backwards). Free-text reasons are
  reduced to a bounded set of categories before they become label values.
* **Counters that appear by themselves.** Every named counter of the control plane (its
  ``stats`` dict), of the control connections and of their transports is exported under
  ``pyl2tp_control_events_total{scope, counter}``: a counter added to those dicts tomorrow
  shows up without a change here.

The metric names and labels are documented in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import gzip
import logging
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pyl2tp.control import events as ev
from pyl2tp.control.call import CallState
from pyl2tp.control.transport import TransportStats
from pyl2tp.control.tunnel import State
from pyl2tp.dataplane.model import STATS_FIELDS, Session, Tunnel
from pyl2tp.wire.constants import EncapType, MessageType

log = logging.getLogger("pyl2tp.metrics")

# Setup latency buckets: a LAN setup takes a few milliseconds, one retransmission adds a
# second, a peer answering at the last retry about half a minute.
SETUP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0, 30.0, 60.0)
MAX_REASONS = 64          # distinct reason categories per counter before "other"
SCRAPE_TIMEOUT = 30.0     # how long a scrape from another thread waits for the loop
_MESSAGE_NAMES = frozenset(m.name for m in MessageType)
_TRANSPORT_FIELDS = tuple(f.name for f in dataclasses.fields(TransportStats))
_STATS: Callable[[Any], tuple[int, ...]] = operator.attrgetter(*STATS_FIELDS)


def reason_category(reason: str) -> str:
    """A free-text close reason as a bounded label value: the part before the first colon
    (what happened, not the details such as a user name), numbers replaced by N, lower case.
    "authentication failed: user 'bob' refused" becomes "authentication failed"."""
    head = reason.split(":", 1)[0].strip().lower()
    head = re.sub(r"\d+", "N", head)
    head = re.sub(r"\s+", " ", head)
    return head[:80] or "unknown"


class _Histogram:
    """Cumulative bucket counts and a sum, updated on control events (never per packet)."""

    __slots__ = ("counts", "count", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(SETUP_BUCKETS)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        value = max(value, 0.0)
        for i, bound in enumerate(SETUP_BUCKETS):
            if value <= bound:
                self.counts[i] += 1
        self.count += 1
        self.total += value

    def copy(self) -> tuple[list[int], int, float]:
        return list(self.counts), self.count, self.total


class _BoundedCounter:
    """Counts per label value, at most MAX_REASONS distinct values (the rest is "other"):
    a peer that invents a new reason per session must not create a series per session."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def inc(self, key: str) -> None:
        if key not in self.values and len(self.values) >= MAX_REASONS:
            key = "other"
        self.values[key] = self.values.get(key, 0) + 1


@dataclass(slots=True)
class TunnelRow:
    tunnel_id: int
    peer_tunnel_id: int
    version: int
    encap: str
    local: str
    remote: str
    owner: str
    sessions: int
    stats: tuple[int, ...]


@dataclass(slots=True)
class SessionRow:
    tunnel_id: int
    session_id: int
    peer_session_id: int
    pw_type: int
    ifname: str
    stats: tuple[int, ...]


@dataclass(slots=True)
class Snapshot:
    """Everything a scrape exports, copied on the loop: plain values only, safe to read from
    any thread afterwards."""

    version: str
    backend: str = "userspace"
    tunnels: list[TunnelRow] = field(default_factory=list)
    sessions: list[SessionRow] | None = None
    session_totals: dict[str, int] = field(default_factory=dict)
    dataplane_tunnels: dict[str, int] = field(default_factory=dict)
    dataplane_sessions: int = 0
    control_states: dict[str, int] = field(default_factory=dict)
    call_states: dict[str, int] = field(default_factory=dict)
    limits: dict[str, tuple[int, int]] = field(default_factory=dict)
    messages: dict[tuple[str, str], int] = field(default_factory=dict)
    events: dict[tuple[str, str], int] = field(default_factory=dict)
    retransmissions: int = 0
    closed: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    setup: dict[str, tuple[list[int], int, float]] = field(default_factory=dict)
    endpoints: list[tuple[str, str, int, dict[str, int]]] = field(default_factory=list)
    ppp_phases: dict[str, int] = field(default_factory=dict)
    ppp_closed: dict[str, int] = field(default_factory=dict)
    ppp_failures: dict[str, int] = field(default_factory=dict)
    notifications: dict[str, int] = field(default_factory=dict)


class MetricsSource:
    """Reads the daemon's state into a :class:`Snapshot`, and records the few facts that must
    be caught when they happen. Every method runs on the daemon's event loop.

    ``driver`` is the :class:`~pyl2tp.daemon.control.ControlDriver`, ``backend`` the userspace
    backend, ``ppp`` the PPP manager (anything with an ``endpoints`` dict of PPP endpoints).
    """

    def __init__(self, *, registry: Any, driver: Any, backend: Any, ppp: Any = None,
                 version: str = "", sessions: bool = False) -> None:
        self.registry = registry
        self.driver = driver
        self.backend = backend
        self.ppp = ppp
        self.version = version
        self.per_session = sessions
        # Counters of connections and sessions that are gone, so that sums never decrease.
        self._retired_messages: dict[tuple[str, str], int] = {}
        self._retired_events: dict[tuple[str, str], int] = {}
        self._retiring: list[Any] = []          # connections down, maybe still lingering
        self._session_totals = dict.fromkeys(STATS_FIELDS, 0)
        self._closed: dict[tuple[str, str, str, str], int] = {}
        self._setup = {"tunnel": _Histogram(), "session": _Histogram()}
        self._ppp_up: set[str] = set()
        self._ppp_closed = _BoundedCounter()
        self._ppp_failures = _BoundedCounter()
        self._notifications: dict[str, int] = {}

    # -- hooks (installed by the daemon only when metrics are enabled) -------------------------

    def on_control_event(self, event: ev.Event) -> None:
        """Observer of the control driver: setup latencies, teardown results, retirements."""
        if isinstance(event, ev.TunnelUp):
            conn = event.conn
            if conn.established_at is not None:
                self._setup["tunnel"].observe(conn.established_at - conn.created_at)
        elif isinstance(event, ev.CallUp):
            call = event.call
            if call.established_at is not None:
                self._setup["session"].observe(call.established_at - call.created_at)
        elif isinstance(event, ev.TunnelDown):
            self._count_closed("tunnel", event.result, event.error, event.by_peer)
            if not any(c is event.conn for c in self._retiring):
                self._retiring.append(event.conn)
            if len(self._retiring) > 256:
                self._fold_retired()
        elif isinstance(event, ev.CallDown):
            self._count_closed("session", event.result, event.error, event.by_peer)

    def _count_closed(self, kind: str, result: int | None, error: int | None,
                      by_peer: bool) -> None:
        key = (kind, "none" if result is None else str(result),
               "none" if error is None else str(error), "true" if by_peer else "false")
        self._closed[key] = self._closed.get(key, 0) + 1

    def on_registry(self, event: str, obj: object) -> None:
        """Registry listener: a deleted session's final counters join the all-sessions sums
        (delete notifications are sent before the object goes, with the final counters)."""
        if event == "session_delete" and isinstance(obj, Session):
            totals = self._session_totals
            stats = obj.stats
            for name in STATS_FIELDS:
                totals[name] += getattr(stats, name)

    def on_publish(self, event: str, attrs: dict[str, Any]) -> None:
        """Every notification the daemon publishes: counted by name; PPP up/down feed the
        PPP close and negotiation-failure counters."""
        self._notifications[event] = self._notifications.get(event, 0) + 1
        if event == "ppp_up":
            self._ppp_up.add(str(attrs.get("session")))
        elif event == "ppp_down":
            label = str(attrs.get("session"))
            category = reason_category(str(attrs.get("reason") or "unknown"))
            self._ppp_closed.inc(category)
            if label in self._ppp_up:
                self._ppp_up.discard(label)
            else:
                self._ppp_failures.inc(category)

    # -- scrape -------------------------------------------------------------------------------

    def _fold_retired(self) -> None:
        """Move the counters of connections that have left the plane into the retired sums;
        a connection still lingering stays where it is (it is counted as live)."""
        conns = self.driver.plane.conns
        keep = []
        for conn in self._retiring:
            if conns.get(conn.local_id) is conn:
                keep.append(conn)
                continue
            self._add_conn(conn, self._retired_messages, self._retired_events)
        self._retiring = keep

    @staticmethod
    def _add_conn(conn: Any, messages: dict[tuple[str, str], int],
                  events: dict[tuple[str, str], int]) -> None:
        for name, value in conn.stats.items():
            direction, _, rest = name.partition("_")
            if direction in ("rx", "tx") and (rest in _MESSAGE_NAMES or rest.startswith("type-")):
                key = (direction, rest)
                messages[key] = messages.get(key, 0) + value
            else:
                ekey = ("tunnel", name)
                events[ekey] = events.get(ekey, 0) + value
        tstats = conn.transport.stats
        for name in _TRANSPORT_FIELDS:
            ekey = ("transport", name)
            events[ekey] = events.get(ekey, 0) + getattr(tstats, name)

    def snapshot(self) -> Snapshot:
        """Copy the state (runs on the loop; plain values out)."""
        refresh = getattr(self.backend, "refresh_stats", None)
        if refresh is not None:  # the kernel's counters, read back in one dump each
            refresh()
        snap = Snapshot(version=self.version, backend=getattr(self.backend, "name", "userspace"))
        reg = self.registry
        per_session = self.per_session
        totals = dict(self._session_totals)
        owners: dict[str, int] = {}
        sessions: list[SessionRow] | None = [] if per_session else None
        # One C-level attrgetter call per session and column sums: this loop runs on the
        # event loop, 65,535 sessions must cost milliseconds, not a stalled data path.
        values: list[tuple[int, ...]] = []
        for tunnel in reg.sorted_tunnels():
            snap.tunnels.append(_tunnel_row(tunnel))
            owners[tunnel.owner] = owners.get(tunnel.owner, 0) + 1
            if sessions is None:
                values.extend([_STATS(s.stats) for s in tunnel.sessions.values()])
                continue
            for sid in sorted(tunnel.sessions):
                session = tunnel.sessions[sid]
                row = _STATS(session.stats)
                values.append(row)
                sessions.append(SessionRow(tunnel.tunnel_id, sid, session.peer_session_id,
                                           int(session.pw_type), session.ifname, row))
        for name, column in zip(STATS_FIELDS, zip(*values, strict=True), strict=False):
            totals[name] += sum(column)
        snap.sessions = sessions
        snap.session_totals = totals
        snap.dataplane_tunnels = owners
        snap.dataplane_sessions = len(values)

        plane = self.driver.plane
        self._fold_retired()
        messages = dict(self._retired_messages)
        events = dict(self._retired_events)
        states = dict.fromkeys((s.value for s in State), 0)
        call_states = dict.fromkeys((s.value for s in CallState), 0)
        for conn in plane.conns.values():
            states[conn.state.value] += 1
            for call in conn.calls.values():
                call_states[call.state.value] = call_states.get(call.state.value, 0) + 1
            self._add_conn(conn, messages, events)
        for name, value in plane.stats.items():
            events[("plane", name)] = value
        snap.control_states = states
        snap.call_states = call_states
        snap.limits = _limits(plane)
        snap.messages = messages
        snap.events = events
        snap.retransmissions = events.get(("transport", "retransmits"), 0)
        snap.closed = dict(self._closed)
        snap.setup = {kind: h.copy() for kind, h in self._setup.items()}
        snap.endpoints = [
            ("udp" if ep.encap == EncapType.UDP else "ip", str(ep.local), int(ep.port),
             ep.counters())
            for ep in list(self.backend.endpoints.values())
        ]
        phases: dict[str, int] = {}
        for endpoint in list(getattr(self.ppp, "endpoints", {}).values()):
            link = getattr(endpoint, "link", None)
            phase = getattr(getattr(link, "phase", None), "value", "unknown")
            phases[phase] = phases.get(phase, 0) + 1
        snap.ppp_phases = phases
        snap.ppp_closed = dict(self._ppp_closed.values)
        snap.ppp_failures = dict(self._ppp_failures.values)
        snap.notifications = dict(self._notifications)
        return snap


def _limits(plane: Any) -> dict[str, tuple[int, int]]:
    """The control plane's bounds as {name: (limit, in use)}, for those the plane has (read
    defensively: the set of bounds grows with the control plane)."""
    out = {"max_tunnels": (int(plane.max_tunnels), len(plane.conns))}
    half_open = getattr(plane, "max_half_open_tunnels", None)
    if isinstance(half_open, int):
        used = getattr(plane, "half_open", 0)
        out["max_half_open_tunnels"] = (half_open, used if isinstance(used, int) else 0)
    budget = getattr(plane, "budget", None)
    limit, used = getattr(budget, "limit", None), getattr(budget, "used", None)
    if isinstance(limit, int) and isinstance(used, int):
        out["max_sessions"] = (limit, used)
    return out


def _tunnel_row(t: Tunnel) -> TunnelRow:
    return TunnelRow(t.tunnel_id, t.peer_tunnel_id, t.version,
                     "udp" if t.encap == EncapType.UDP else "ip", str(t.local), str(t.remote),
                     str(t.owner), len(t.sessions), _STATS(t.stats))


# -- metric families ----------------------------------------------------------------------------

_STAT_HELP = {
    "tx_packets": "data packets sent",
    "tx_bytes": "data octets sent (L2TP header and payload)",
    "tx_errors": "data packets that could not be sent",
    "rx_packets": "data packets received and delivered",
    "rx_bytes": "data octets received (L2TP header and payload)",
    "rx_seq_discards": "data packets dropped by sequence number checks",
    "rx_cookie_discards": "data packets dropped for a wrong cookie",
    "rx_oos_packets": "data packets received out of sequence",
    "rx_errors": "data packets dropped for any reason",
    "rx_invalid": "packets too short or of the wrong version",
}


def families(snap: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot (pure; runs in whichever thread renders)."""
    info = GaugeMetricFamily("pyl2tp_info", "pyl2tp version and backend",
                             labels=["version", "backend"])
    info.add_metric([snap.version, snap.backend], 1)
    yield info

    # data plane: per tunnel, per session (opt-in), and all sessions summed
    tinfo = GaugeMetricFamily(
        "pyl2tp_tunnel_info", "one series per data-plane tunnel, carrying its description",
        labels=["tunnel_id", "peer_tunnel_id", "version", "encap", "local", "remote", "owner"])
    tsess = GaugeMetricFamily("pyl2tp_tunnel_sessions", "sessions in the tunnel",
                              labels=["tunnel_id"])
    tstats = [CounterMetricFamily(f"pyl2tp_tunnel_{name}", f"tunnel: {_STAT_HELP[name]}",
                                  labels=["tunnel_id"]) for name in STATS_FIELDS]
    for t in snap.tunnels:
        tid = str(t.tunnel_id)
        tinfo.add_metric([tid, str(t.peer_tunnel_id), str(t.version), t.encap, t.local,
                          t.remote, t.owner], 1)
        tsess.add_metric([tid], t.sessions)
        for fam, value in zip(tstats, t.stats, strict=True):
            fam.add_metric([tid], value)
    yield tinfo
    yield tsess
    yield from tstats

    if snap.sessions is not None:
        sinfo = GaugeMetricFamily(
            "pyl2tp_session_info", "one series per session, carrying its description",
            labels=["tunnel_id", "session_id", "peer_session_id", "pw_type", "ifname"])
        sstats = [CounterMetricFamily(f"pyl2tp_session_{name}", f"session: {_STAT_HELP[name]}",
                                      labels=["tunnel_id", "session_id"])
                  for name in STATS_FIELDS]
        for s in snap.sessions:
            ids = [str(s.tunnel_id), str(s.session_id)]
            sinfo.add_metric([*ids, str(s.peer_session_id), str(s.pw_type), s.ifname], 1)
            for fam, value in zip(sstats, s.stats, strict=True):
                fam.add_metric(ids, value)
        yield sinfo
        yield from sstats
    for name in STATS_FIELDS:
        yield CounterMetricFamily(
            f"pyl2tp_sessions_{name}",
            f"all sessions, including deleted ones: {_STAT_HELP[name]}",
            value=snap.session_totals.get(name, 0))

    yield _family(GaugeMetricFamily, "pyl2tp_tunnels", "data-plane tunnels by creator",
                  ["owner"], sorted(snap.dataplane_tunnels.items()))
    yield GaugeMetricFamily("pyl2tp_sessions", "data-plane sessions",
                            value=snap.dataplane_sessions)

    ep_fam = CounterMetricFamily(
        "pyl2tp_endpoint_packets", "per-socket receive outcomes and send errors",
        labels=["encap", "local", "port", "counter"])
    for encap, local, port, counters in snap.endpoints:
        for name, value in counters.items():
            ep_fam.add_metric([encap, local, str(port), name], value)
    yield ep_fam

    # control plane
    yield _family(GaugeMetricFamily, "pyl2tp_control_tunnels", "control connections by state",
                  ["state"], snap.control_states.items())
    yield _family(GaugeMetricFamily, "pyl2tp_control_sessions", "calls by state", ["state"],
                  snap.call_states.items())
    limit = GaugeMetricFamily(
        "pyl2tp_control_limit", "the control plane's bounds (beyond them requests are refused; "
        "each refusal is counted in pyl2tp_control_events_total)", labels=["limit"])
    in_use = GaugeMetricFamily("pyl2tp_control_in_use", "what each bound currently counts",
                               labels=["limit"])
    for name, (bound, used) in sorted(snap.limits.items()):
        limit.add_metric([name], bound)
        in_use.add_metric([name], used)
    yield limit
    yield in_use
    yield _family(CounterMetricFamily, "pyl2tp_control_messages", "control messages by type",
                  ["direction", "type"], sorted(snap.messages.items()))
    yield CounterMetricFamily("pyl2tp_control_retransmissions",
                              "control messages sent again after a timeout",
                              value=snap.retransmissions)
    yield _family(
        CounterMetricFamily, "pyl2tp_control_events",
        "every named counter of the control plane (scope=plane), its connections "
        "(scope=tunnel) and their reliable transports (scope=transport)",
        ["scope", "counter"], sorted(snap.events.items()))
    yield _family(
        CounterMetricFamily, "pyl2tp_control_closed",
        "tunnels and sessions cleared, by StopCCN/CDN result code",
        ["kind", "result", "error", "by_peer"], sorted(snap.closed.items()))
    setup = HistogramMetricFamily("pyl2tp_setup_duration_seconds",
                                  "time from SCCRQ (or call request) to established",
                                  labels=["kind"])
    for kind, (counts, count, total) in sorted(snap.setup.items()):
        buckets = [(_bound(b), float(c)) for b, c in zip(SETUP_BUCKETS, counts, strict=True)]
        buckets.append(("+Inf", float(count)))
        setup.add_metric([kind], buckets, total)
    yield setup

    # PPP and the notification stream
    yield _family(GaugeMetricFamily, "pyl2tp_ppp_links", "PPP links terminated here, by phase",
                  ["phase"], sorted(snap.ppp_phases.items()))
    yield _family(CounterMetricFamily, "pyl2tp_ppp_closed", "PPP links finished, by reason",
                  ["reason"], sorted(snap.ppp_closed.items()))
    yield _family(
        CounterMetricFamily, "pyl2tp_ppp_negotiation_failures",
        "PPP links that finished before their network layer came up, by reason",
        ["reason"], sorted(snap.ppp_failures.items()))
    yield _family(CounterMetricFamily, "pyl2tp_notifications", "events published on the stream",
                  ["event"], sorted(snap.notifications.items()))


def _family(kind: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str,
            documentation: str, labels: list[str],
            rows: Iterable[tuple[str | tuple[str, ...], int]]) -> Metric:
    """A labelled family with one sample per row, in the rows' order: a row's key is the one
    label's value, or a tuple of the values of all ``labels``."""
    fam = kind(name, documentation, labels=labels)
    for key, value in rows:
        fam.add_metric([key] if isinstance(key, str) else list(key), value)
    return fam


def _bound(value: float) -> str:
    return repr(float(value))


class DaemonCollector(Collector):
    """prometheus-client collector over a :class:`MetricsSource`.

    ``collect`` may be called from any thread: off the loop it schedules the snapshot on the
    loop and waits for it, so the daemon's objects are only ever read by the loop's thread."""

    def __init__(self, source: MetricsSource, loop: asyncio.AbstractEventLoop,
                 timeout: float = SCRAPE_TIMEOUT) -> None:
        self.source = source
        self.loop = loop
        self.timeout = timeout

    def _take(self) -> Snapshot:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            return self.source.snapshot()

        async def take() -> Snapshot:
            return self.source.snapshot()

        return asyncio.run_coroutine_threadsafe(take(), self.loop).result(self.timeout)

    def collect(self) -> Iterable[Metric]:
        return list(families(self._take()))

    def describe(self) -> Iterable[Metric]:
        # Nothing: registering must not read the state (it may happen off the loop).
        return []


def parse_address(text: str) -> tuple[str | None, int]:
    """``ADDR:PORT`` (``[v6]:PORT``, ``:PORT`` or ``PORT`` for every address) as (host,
    port); ValueError with a one-line reason."""
    text = text.strip()
    host: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise ValueError(f"expected [ADDR]:PORT, got {text!r}")
        host, port_text = text[1:end], text[end + 2:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets: [ADDR]:PORT, got {text!r}")
    else:
        host, port_text = "", text
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"expected ADDR:PORT, got {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host or None, port


class MetricsServer:
    """A minimal HTTP/1.1 server on the daemon's loop for ``GET /metrics``.

    Rendering runs in one worker thread (the collector fetches its snapshot from the loop),
    scrapes are serialised, requests are bounded in size and time, and every connection is
    closed after one response: Prometheus opens one per scrape anyway."""

    MAX_REQUEST = 16 * 1024
    READ_TIMEOUT = 10.0
    MAX_CLIENTS = 32

    def __init__(self, source: MetricsSource, host: str | None, port: int) -> None:
        self.source = source
        self.host = host
        self.port = port
        self.loop = asyncio.get_running_loop()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DaemonCollector(source, self.loop))
        # Process CPU, memory and descriptors: what "high CPU" troubleshooting starts with.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pyl2tp-metrics")
        self._lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        if self._server is None:
            return []
        return [s.getsockname() for s in self._server.sockets]

    async def start(self) -> None:
        where = f"[{self.host}]" if self.host and ":" in self.host else (self.host or "*")
        try:
            self._server = await asyncio.start_server(self._client, self.host, self.port,
                                                      reuse_address=True)
        except OSError as exc:
            # asyncio rewords bind errors ("error while attempting to bind on address ...");
            # the errno's own text is the one-line reason.
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise OSError(exc.errno, f"metrics endpoint {where}:{self.port}: {reason}") from None
        log.info("metrics on http://%s:%d/metrics", where, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def render(self, accept: str = "", gzip_ok: bool = False) -> tuple[bytes, str, bool]:
        """Body, content type and whether it is gzipped; runs in the worker thread."""
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        if gzip_ok:
            return gzip.compress(body, compresslevel=5), content_type, True
        return body, content_type, False

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= self.MAX_CLIENTS:
            # Idle connections must not pile up on the daemon's loop.
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError):
            pass
        except Exception:  # a bug must not take the daemon's loop down with it
            log.exception("metrics request failed")
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.READ_TIMEOUT)
        if len(head) > self.MAX_REQUEST:
            self._respond(writer, 431, b"request too large\n")
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            self._respond(writer, 400, b"bad request\n")
            return
        method, target, _version = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            self._respond(writer, 405, b"only GET and HEAD\n", extra={"Allow": "GET, HEAD"})
            return
        if path == "/":
            self._respond(writer, 200, b"<html><body><a href=\"/metrics\">metrics</a>"
                          b"</body></html>\n", content_type="text/html", head=method == "HEAD")
            return
        if path != "/metrics":
            self._respond(writer, 404, b"not found: try /metrics\n")
            return
        gzip_ok = "gzip" in headers.get("accept-encoding", "")
        async with self._lock:
            body, content_type, zipped = await self.loop.run_in_executor(
                self._executor, self.render, headers.get("accept", ""), gzip_ok)
        self._respond(writer, 200, body, content_type=content_type, head=method == "HEAD",
                      extra={"Content-Encoding": "gzip"} if zipped else None)
        await writer.drain()

    @staticmethod
    def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, *,
                 content_type: str = "text/plain; charset=utf-8", head: bool = False,
                 extra: dict[str, str] | None = None) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  431: "Request Header Fields Too Large"}.get(status, "Error")
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head:
            writer.write(body)


def render_text(source: MetricsSource) -> str:
    """The exposition text of one snapshot, without HTTP (tests, ``--metrics`` debugging)."""
    from prometheus_client.exposition import generate_latest

    class _Once(Collector):
        def collect(self) -> Iterable[Metric]:
            return list(families(source.snapshot()))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once())
    return generate_latest(registry).decode()

__all__ = ["SETUP_BUCKETS", "DaemonCollector", "MetricsServer", "MetricsSource", "Snapshot",
           "families", "parse_address", "reason_category", "render_text"]
