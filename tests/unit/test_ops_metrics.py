"""The Prometheus collector: what a scrape reads, that it never goes backwards, that its label
sets stay bounded, and that it may be scraped from another thread.

Control connections come from two real control planes on the simulated link (the control
plane's own test harness), data-plane objects from a real registry; the daemon is not needed
because :class:`MetricsSource` only reads those objects and receives the daemon's events.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.simlink import Link, Node, SimNet

from pyl2tp.control.params import ConnectionParams
from pyl2tp.daemon.metrics import (
    MAX_REASONS,
    DaemonCollector,
    MetricsServer,
    MetricsSource,
    families,
    parse_address,
    reason_category,
    render_text,
)
from pyl2tp.dataplane.model import Session, Tunnel
from pyl2tp.dataplane.registry import Registry
from pyl2tp.wire.constants import EncapType, PwType

A_ADDR, B_ADDR = "10.0.0.1", "10.0.0.2"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text as {(sample name, sorted labels): value}."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


class World:
    """Two control planes on a lossless simulated link, A's data plane, and a source on A."""

    def __init__(self, *, sessions: bool = False) -> None:
        self.net = SimNet(seed=3, link=Link(delay=(0.01, 0.01)))
        params = ConnectionParams(version=3, host_name="x")
        self.a: Node = self.net.add("a", A_ADDR, accept=lambda _l, _p, _m: params)
        self.b: Node = self.net.add("b", B_ADDR, accept=lambda _l, _p, _m: params)
        self.registry = Registry()
        self.endpoint = SimpleNamespace(encap=EncapType.UDP, local="0.0.0.0", port=1701,
                                        counters=lambda: {"rx_datagrams": 7, "rx_short": 1})
        self.source = MetricsSource(
            registry=self.registry, driver=SimpleNamespace(plane=self.a.plane),
            backend=SimpleNamespace(endpoints={"k": self.endpoint}), version="9.9",
            sessions=sessions)
        self.registry.listeners.append(self.source.on_registry)
        self.seen = 0

    def pump(self, until: float) -> None:
        self.net.run(until)
        for event in self.a.events[self.seen:]:
            self.source.on_control_event(event)
        self.seen = len(self.a.events)

    def dial(self) -> Any:
        conn = self.a.plane.dial(ConnectionParams(version=3, host_name="a"), "sock",
                                 (B_ADDR, 1701), self.net.now)
        self.net.flush(self.a)
        return conn

    def tunnel(self, tid: int, nsessions: int = 0) -> Tunnel:
        import socket as s

        t = Tunnel(tid, tid + 1, 3, EncapType.UDP, family=s.AF_INET, local="10.0.0.1",
                   remote="10.0.0.2", udp_sport=1701, udp_dport=1701)
        self.registry.add_tunnel(t)
        for sid in range(1, nsessions + 1):
            self.registry.add_session(Session(t, tid * 100000 + sid, sid, PwType.ETH))
        return t

    def text(self) -> str:
        return render_text(self.source)


def test_control_messages_setup_latency_and_states() -> None:
    w = World()
    conn = w.dial()
    w.pump(5.0)
    assert conn.established
    conn.place_call(None, direction="incoming", now=w.net.now)
    w.a.plane.touch(conn)
    w.net.flush(w.a)
    w.pump(10.0)
    text = w.text()
    assert value(text, "pyl2tp_control_messages_total", direction="tx", type="SCCRQ") == 1
    assert value(text, "pyl2tp_control_messages_total", direction="rx", type="SCCRP") == 1
    assert value(text, "pyl2tp_control_messages_total", direction="tx", type="ICRQ") == 1
    assert value(text, "pyl2tp_control_messages_total", direction="rx", type="ICRP") == 1
    assert value(text, "pyl2tp_control_tunnels", state="established") == 1
    assert value(text, "pyl2tp_control_sessions", state="established") == 1
    assert value(text, "pyl2tp_control_retransmissions_total") == 0
    # One round trip of 20 ms (10 ms each way) for the tunnel and for the call.
    for kind in ("tunnel", "session"):
        assert value(text, "pyl2tp_setup_duration_seconds_count", kind=kind) == 1
        assert value(text, "pyl2tp_setup_duration_seconds_sum", kind=kind) == \
            pytest.approx(0.02, abs=0.002)
        assert value(text, "pyl2tp_setup_duration_seconds_bucket", kind=kind, le="0.01") == 0
        assert value(text, "pyl2tp_setup_duration_seconds_bucket", kind=kind, le="0.025") == 1
    # Every named counter of the plane and the transports, generically.
    assert value(text, "pyl2tp_control_events_total", scope="plane",
                 counter="rx_dispatched") > 0
    assert value(text, "pyl2tp_control_events_total", scope="transport",
                 counter="tx_messages") >= 3
    assert value(text, "pyl2tp_control_limit", limit="max_tunnels") == 4096
    assert value(text, "pyl2tp_control_in_use", limit="max_tunnels") == 1


def test_new_counters_appear_without_code_changes() -> None:
    w = World()
    w.a.plane.stats["rx_some_future_limit"] = 3
    conn = w.dial()
    w.pump(5.0)
    conn.stats["tx_queue_full"] = 2
    text = w.text()
    assert value(text, "pyl2tp_control_events_total", scope="plane",
                 counter="rx_some_future_limit") == 3
    assert value(text, "pyl2tp_control_events_total", scope="tunnel",
                 counter="tx_queue_full") == 2


def test_counters_of_closed_connections_are_kept() -> None:
    """A connection leaves the plane after its linger; its counts must not vanish with it
    (a Prometheus counter that decreases reads as a reset)."""
    w = World()
    w.dial()
    w.pump(5.0)
    before = samples(w.text())
    w.a.plane.close_all(w.net.now)
    w.net.flush(w.a)
    w.pump(200.0)
    assert not w.a.plane.conns
    after = samples(w.text())
    for key, v in before.items():
        if key[0] in ("pyl2tp_control_messages_total", "pyl2tp_control_events_total"):
            assert after[key] >= v, key
    assert value(w.text(), "pyl2tp_control_messages_total", direction="tx",
                 type="StopCCN") == 1
    assert value(w.text(), "pyl2tp_control_closed_total", kind="tunnel", result="6",
                 error="0", by_peer="false") == 1


def test_data_counters_per_tunnel_and_session_sums_survive_deletion() -> None:
    w = World()
    t = w.tunnel(10, nsessions=2)
    t.stats.rx_packets, t.stats.rx_bytes = 5, 500
    s1, s2 = (t.sessions[sid] for sid in sorted(t.sessions))
    s1.stats.tx_packets, s2.stats.tx_packets = 3, 4
    s1.stats.rx_cookie_discards = 2
    text = w.text()
    assert value(text, "pyl2tp_tunnel_rx_packets_total", tunnel_id="10") == 5
    assert value(text, "pyl2tp_tunnel_rx_bytes_total", tunnel_id="10") == 500
    assert value(text, "pyl2tp_tunnel_sessions", tunnel_id="10") == 2
    assert value(text, "pyl2tp_tunnel_info", tunnel_id="10", peer_tunnel_id="11", version="3",
                 encap="udp", local="10.0.0.1", remote="10.0.0.2", owner="api") == 1
    assert value(text, "pyl2tp_sessions_tx_packets_total") == 7
    assert value(text, "pyl2tp_sessions_rx_cookie_discards_total") == 2
    assert not any(k[0].startswith("pyl2tp_session_") for k in samples(text))
    w.registry.delete_tunnel(t)
    text = w.text()
    assert value(text, "pyl2tp_sessions_tx_packets_total") == 7
    assert value(text, "pyl2tp_sessions_rx_cookie_discards_total") == 2
    assert value(text, "pyl2tp_sessions") == 0
    assert ("pyl2tp_tunnel_rx_packets_total", (("tunnel_id", "10"),)) not in samples(text)
    assert value(text, "pyl2tp_endpoint_packets_total", encap="udp", local="0.0.0.0",
                 port="1701", counter="rx_datagrams") == 7


def test_per_session_series_only_when_asked() -> None:
    w = World(sessions=True)
    t = w.tunnel(10, nsessions=2)
    sid = sorted(t.sessions)[0]
    t.sessions[sid].stats.rx_bytes = 42
    text = w.text()
    assert value(text, "pyl2tp_session_rx_bytes_total", tunnel_id="10",
                 session_id=str(sid)) == 42
    assert value(text, "pyl2tp_session_info", tunnel_id="10", session_id=str(sid),
                 peer_session_id="1", pw_type="5", ifname="") == 1


def test_series_count_does_not_grow_with_sessions_by_default() -> None:
    """65,535 sessions must not mean 655,350 series: without --metrics-sessions the number of
    series depends on the number of tunnels only."""
    counts = []
    for n in (1, 3000):
        w = World()
        w.tunnel(10, nsessions=n)
        counts.append(len(samples(w.text())))
    assert counts[0] == counts[1]
    w = World(sessions=True)
    w.tunnel(10, nsessions=100)
    assert len(samples(w.text())) >= counts[0] + 100 * 11


def test_ppp_failures_by_reason() -> None:
    w = World()
    src = w.source
    src.on_publish("ppp_down", {"session": "session 1/2", "ifname": "",
                                "reason": "authentication failed: user 'bob' refused"})
    src.on_publish("ppp_up", {"session": "session 1/3"})
    src.on_publish("ppp_down", {"session": "session 1/3", "reason": "terminated by the peer"})
    src.on_publish("ppp_down", {"session": "session 1/4",
                                "reason": "peer not responding to 3 echo requests"})
    text = w.text()
    assert value(text, "pyl2tp_ppp_negotiation_failures_total",
                 reason="authentication failed") == 1
    assert value(text, "pyl2tp_ppp_negotiation_failures_total",
                 reason="peer not responding to N echo requests") == 1
    assert ("pyl2tp_ppp_negotiation_failures_total", (("reason", "terminated by the peer"),)) \
        not in samples(text)
    assert value(text, "pyl2tp_ppp_closed_total", reason="terminated by the peer") == 1
    assert value(text, "pyl2tp_notifications_total", event="ppp_down") == 3


def test_reason_labels_are_bounded() -> None:
    w = World()
    for i in range(MAX_REASONS * 3):
        w.source.on_publish("ppp_down", {"session": f"s{i}", "reason": f"odd reason x{i}y"})
        w.source.on_publish("ppp_down", {"session": f"t{i}", "reason": f"odd-{chr(65 + i % 26)}"
                                         f"{chr(65 + i // 26)}"})
    reasons = [k for k in samples(w.text()) if k[0] == "pyl2tp_ppp_closed_total"]
    assert len(reasons) <= MAX_REASONS + 1
    assert value(w.text(), "pyl2tp_ppp_closed_total", reason="odd reason xNy") == MAX_REASONS * 3


def test_reason_category() -> None:
    assert reason_category("authentication failed: wrong password") == "authentication failed"
    assert reason_category("peer not responding to 3 echo requests") == \
        "peer not responding to N echo requests"
    assert reason_category("") == "unknown"


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9101", ("127.0.0.1", 9101)),
    ("[::1]:9101", ("::1", 9101)),
    (":9101", (None, 9101)),
    ("9101", (None, 9101)),
])
def test_parse_address(text: str, expected: tuple[str | None, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["::1:9101", "host", "1.2.3.4:0", "1.2.3.4:70000", "[::1]9"])
def test_parse_address_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_collector_off_the_loop_reads_state_on_the_loop() -> None:
    """From another thread the collector must not touch the daemon's objects itself: it asks
    the loop for the snapshot (and gets the loop thread's view)."""
    w = World()
    w.tunnel(7)
    threads: list[Any] = []
    real = w.source.snapshot

    def spy() -> Any:
        import threading

        threads.append(threading.get_ident())
        return real()

    w.source.snapshot = spy  # type: ignore[method-assign]

    async def main() -> list[Any]:
        import threading

        loop = asyncio.get_running_loop()
        collector = DaemonCollector(w.source, loop)
        fams = await loop.run_in_executor(None, lambda: list(collector.collect()))
        assert threads == [threading.get_ident()]
        return fams

    fams = asyncio.run(main())
    names = {f.name for f in fams}
    assert "pyl2tp_tunnel_rx_packets" in names


def test_server_serves_metrics_over_http() -> None:
    w = World()
    w.tunnel(7)

    async def fetch(port: int, request: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        data = await reader.read()
        writer.close()
        return data

    async def main() -> list[bytes]:
        server = MetricsServer(w.source, "127.0.0.1", 0)
        await server.start()
        port = server.addresses[0][1]
        try:
            return [
                await fetch(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
                await fetch(port, b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n"),
                await fetch(port, b"GET /nope HTTP/1.1\r\n\r\n"),
                await fetch(port, b"POST /metrics HTTP/1.1\r\n\r\n"),
                await fetch(port, b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            ]
        finally:
            await server.close()

    plain, zipped, missing, post, head = asyncio.run(main())
    head_plain, body = plain.split(b"\r\n\r\n", 1)
    assert head_plain.startswith(b"HTTP/1.1 200 OK")
    assert value(body.decode(), "pyl2tp_tunnel_sessions", tunnel_id="7") == 0
    assert "process_cpu_seconds_total" in body.decode()  # for "high CPU"
    zhead, zbody = zipped.split(b"\r\n\r\n", 1)
    assert b"Content-Encoding: gzip" in zhead
    assert b"pyl2tp_tunnel_info" in gzip.decompress(zbody)
    assert missing.startswith(b"HTTP/1.1 404")
    assert post.startswith(b"HTTP/1.1 405")
    hhead, hbody = head.split(b"\r\n\r\n", 1)
    assert hhead.startswith(b"HTTP/1.1 200") and hbody == b""


def test_server_reports_a_busy_port_in_one_line() -> None:
    w = World()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        async def main() -> None:
            await MetricsServer(w.source, "127.0.0.1", port).start()

        with pytest.raises(OSError, match=rf"metrics endpoint 127.0.0.1:{port}: "):
            asyncio.run(main())


def test_families_of_an_empty_daemon_are_valid() -> None:
    from pyl2tp.daemon.metrics import Snapshot

    fams = list(families(Snapshot(version="1")))
    assert len({f.name for f in fams}) == len(fams)
