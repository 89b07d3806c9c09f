"""Operating two pyl2tp daemons in namespaces: metrics that move with traffic, structured logs
that carry the ids, captures that tshark decodes, ``top`` and ``monitor`` output.

The LAC daemon is driven through the CLI (``dial``, ``call``) and logs JSON; the LNS runs a
configuration with a secret and hidden AVPs, logs key=value and exports per-session metrics.
Every check reads what an operator would read: the HTTP endpoint (fetched from inside the
namespace), the daemons' stderr, the pcap file and the commands' output.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.daemon import Daemon, LacLns, cli_env, lac_lns_pair, ping, pyl2tp_argv
from tests.support.netns import NetNS, wait_for

from pyl2tp.daemon.logfmt import parse_kv
from pyl2tp.pcap import extract_l2tp, read_pcap
from pyl2tp.wire.errors import MessageError
from pyl2tp.wire.message import decode_message

pytestmark = pytest.mark.netns

LAC_ADDR, LNS_ADDR = "10.72.0.1", "10.72.0.2"
LAC_METRICS, LNS_METRICS = 9101, 9102

LNS_CONFIG = """
[daemon]
host_name = "lns"

[[listen]]
encap = "udp"
address = "0.0.0.0"

[[listen]]
encap = "ip"
address = "0.0.0.0"

[[peer]]
name = "lac"
host_name = "lac"
secret = "s3cret"
hide_avps = true
"""


Net = LacLns

# Each pseudowire gets its own 192.168.N.0/24 on top of the tunnels' 10.72.0.0/24.
_SUBNETS = itertools.count(11)


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    with lac_lns_pair(
        [f"{LAC_ADDR}/24"], [f"{LNS_ADDR}/24"], LNS_CONFIG,
        lac_args=["--metrics", f"127.0.0.1:{LAC_METRICS}", "--log-format", "json"],
        lns_args=["--metrics", f"127.0.0.1:{LNS_METRICS}", "--metrics-sessions",
                  "--log-format", "kv"],
    ) as pair:
        yield pair


# -- helpers --------------------------------------------------------------------------------------


def scrape(ns: NetNS, port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics from inside ``ns``, parsed into {(sample, sorted labels): value}."""
    code = ("import sys, urllib.request\n"
            "url = 'http://127.0.0.1:%s/metrics' % sys.argv[1]\n"
            "sys.stdout.write(urllib.request.urlopen(url, timeout=10).read().decode())\n")
    text = ns.python(code, str(port)).stdout
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict[Any, float], name: str, **labels: Any) -> float:
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)


def control(d: Daemon) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(d.cli(["control", "show", "-j"]).stdout)
    return result


def conn(d: Daemon, tid: int) -> dict[str, Any] | None:
    return next((c for c in control(d) if c["tunnel_id"] == tid), None)


def dial(net: Net, encap: str = "udp") -> int:
    out = net.lac.cli(["dial", "peer", LNS_ADDR, "version", "3", "encap", encap,
                       "host_name", "lac", "secret", "s3cret", "hidden"]).stdout
    tid = int(out.split()[1])
    wait_for(lambda: (conn(net.lac, tid) or {}).get("state") == "established", timeout=10,
             message=f"tunnel {tid} to establish")
    return tid


class Pseudowire:
    def __init__(self, tid: int, peer_tid: int, sid: int, peer_sid: int, lac_if: str,
                 lns_if: str, lac_ip: str, lns_ip: str) -> None:
        self.tid, self.peer_tid, self.sid, self.peer_sid = tid, peer_tid, sid, peer_sid
        self.lac_if, self.lns_if = lac_if, lns_if
        self.lac_ip, self.lns_ip = lac_ip, lns_ip


def pseudowire(net: Net, tid: int, ifname: str) -> Pseudowire:
    """An Ethernet pseudowire on tunnel ``tid`` with an address at each end."""
    out = net.lac.cli(["call", "tunnel_id", str(tid), "pw_type", "eth", "ifname", ifname])
    sid = int(out.stdout.split()[3])
    wait_for(lambda: any(s["session_id"] == sid for s in net.lac.show("session")), timeout=10,
             message="the LAC session")
    peer_tid = conn(net.lac, tid)["peer_tunnel_id"]  # type: ignore[index]
    wait_for(lambda: any(s["tunnel_id"] == peer_tid for s in net.lns.show("session")),
             timeout=10, message="the LNS session")
    lns_session = next(s for s in net.lns.show("session") if s["tunnel_id"] == peer_tid)
    subnet = next(_SUBNETS)
    lac_ip, lns_ip = f"192.168.{subnet}.1", f"192.168.{subnet}.2"
    net.lac_ns.ip("addr", "add", f"{lac_ip}/24", "dev", ifname)
    net.lac_ns.link_up(ifname)
    net.lns_ns.ip("addr", "add", f"{lns_ip}/24", "dev", lns_session["interface"])
    net.lns_ns.link_up(lns_session["interface"])
    return Pseudowire(tid, peer_tid, sid, lns_session["session_id"], ifname,
                      lns_session["interface"], lac_ip, lns_ip)


def hangup(net: Net, tid: int) -> None:
    net.lac.cli(["hangup", "tunnel_id", str(tid)])
    wait_for(lambda: conn(net.lac, tid) is None, timeout=15,
             message="the connection to finish its linger")


class Lines:
    """A child's output lines, read by a thread so that a test can wait with a timeout."""

    def __init__(self, stream: Any) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in stream:
                self.q.put(line)

        threading.Thread(target=pump, daemon=True).start()

    def wait(self, predicate: Any, timeout: float = 10.0) -> str:
        import time

        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line in {self.seen}")
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return line


# -- metrics ---------------------------------------------------------------------------------------


def test_metrics_move_with_traffic(net: Net) -> None:
    tid = dial(net)
    pw = pseudowire(net, tid, "opsm0")
    assert ping(net.lac_ns, pw.lns_ip, count=2, interval=0.2).ok  # ARP settled
    before = scrape(net.lac_ns, LAC_METRICS)
    lns_before = scrape(net.lns_ns, LNS_METRICS)
    result = ping(net.lac_ns, pw.lns_ip, count=20, interval=0.05)
    assert result.ok and result.received == 20, result
    after = scrape(net.lac_ns, LAC_METRICS)
    lns_after = scrape(net.lns_ns, LNS_METRICS)

    def grew(s0: Any, s1: Any, name: str, **labels: Any) -> float:
        return metric(s1, name, **labels) - metric(s0, name, **labels)

    # The kernel's counters of the tunnel moved with the 20 echo requests and replies.
    assert grew(before, after, "pyl2tp_tunnel_tx_packets_total", tunnel_id=tid) >= 20
    assert grew(before, after, "pyl2tp_tunnel_rx_packets_total", tunnel_id=tid) >= 20
    assert grew(before, after, "pyl2tp_tunnel_rx_bytes_total", tunnel_id=tid) >= 20 * 98
    assert grew(before, after, "pyl2tp_sessions_tx_packets_total") >= 20
    assert metric(after, "pyl2tp_tunnel_rx_errors_total", tunnel_id=tid) == 0
    assert metric(after, "pyl2tp_tunnel_info", tunnel_id=tid, peer_tunnel_id=pw.peer_tid,
                  version=3, encap="udp", local=LAC_ADDR, remote=LNS_ADDR,
                  owner="control") == 1
    # The LNS exports per-session series (--metrics-sessions); the LAC does not.
    assert grew(lns_before, lns_after, "pyl2tp_session_rx_packets_total",
                tunnel_id=pw.peer_tid, session_id=pw.peer_sid) >= 20
    assert not any(k[0].startswith("pyl2tp_session_") for k in after)
    # Control plane: messages by type and direction, states, setup latency.
    assert metric(after, "pyl2tp_control_messages_total", direction="tx", type="SCCRQ") >= 1
    assert metric(after, "pyl2tp_control_messages_total", direction="rx", type="SCCRP") >= 1
    assert metric(after, "pyl2tp_control_messages_total", direction="tx", type="ICRQ") >= 1
    assert metric(lns_after, "pyl2tp_control_messages_total", direction="rx",
                  type="SCCRQ") >= 1
    assert metric(after, "pyl2tp_control_tunnels", state="established") >= 1
    assert metric(after, "pyl2tp_control_sessions", state="established") >= 1
    for samples in (after, lns_after):
        for kind in ("tunnel", "session"):
            assert metric(samples, "pyl2tp_setup_duration_seconds_count", kind=kind) >= 1
            assert metric(samples, "pyl2tp_setup_duration_seconds_bucket", kind=kind,
                          le="1.0") >= 1
    assert metric(lns_after, "pyl2tp_control_events_total", scope="plane",
                  counter="rx_sccrq_accepted") >= 1
    assert metric(after, "pyl2tp_notifications_total", event="control_tunnel_up") >= 1
    hangup(net, tid)
    gone = scrape(net.lac_ns, LAC_METRICS)
    # Counters of the finished connection are kept: nothing went backwards.
    for key, v in after.items():
        if key[0] in ("pyl2tp_control_messages_total", "pyl2tp_sessions_tx_packets_total"):
            assert gone.get(key, 0) >= v, key
    assert metric(gone, "pyl2tp_control_messages_total", direction="tx", type="StopCCN") >= 1
    assert metric(gone, "pyl2tp_control_closed_total", kind="tunnel", result=1, error=0,
                  by_peer="false") >= 1


def test_busy_metrics_port_is_a_one_line_error(net: Net) -> None:
    path = f"/run/pyl2tp/{net.lac_ns.name}-busy.sock"
    proc = net.lac_ns.run([*pyl2tp_argv(), "daemon", "--socket", path, "--metrics",
                      f"127.0.0.1:{LAC_METRICS}"], check=False, env=cli_env(), timeout=30)
    assert proc.returncode == 1, proc
    assert proc.stderr == (f"pyl2tp daemon: metrics endpoint 127.0.0.1:{LAC_METRICS}: "
                           "Address already in use\n"), proc.stderr
    assert not os.path.exists(path)
    assert net.lac.alive()


# -- logs --------------------------------------------------------------------------------------


def test_structured_logs_carry_the_ids(net: Net) -> None:
    tid = dial(net)
    peer_tid = conn(net.lac, tid)["peer_tunnel_id"]  # type: ignore[index]
    hangup(net, tid)
    lac_lines = [json.loads(line) for line in net.lac.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(o) for o in lac_lines)
    created = [o for o in lac_lines if o.get("event") == "tunnel_create"
               and o.get("tunnel_id") == tid]
    assert created and created[0]["peer"] == LNS_ADDR, lac_lines[-10:]
    down = [o for o in lac_lines if o.get("event") == "control_tunnel_down"
            and o.get("tunnel_id") == tid]
    assert down and down[0]["reason"], lac_lines[-10:]
    lns_lines = [parse_kv(line) for line in net.lns.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "msg"} <= set(f) for f in lns_lines)
    mine = [f for f in lns_lines if f.get("tunnel_id") == str(peer_tid)]
    assert {f.get("event") for f in mine} >= {"tunnel_create", "tunnel_delete"}, mine


# -- capture -----------------------------------------------------------------------------------


TSHARK = shutil.which("tshark")


def _tshark_fields(path: str) -> list[list[str]]:
    proc = subprocess.run(
        [TSHARK or "tshark", "-r", path, "-T", "fields", "-E", "separator=|",
         "-e", "frame.protocols", "-e", "l2tp.avp.message_type", "-e", "_ws.malformed"],
        capture_output=True, text=True, timeout=60, check=True)
    return [line.split("|") for line in proc.stdout.splitlines()]


def _message_type(data: bytes, offset: int) -> int:
    """The message type (0 for a ZLB); hidden AVPs we have no key for do not hide it."""
    try:
        return int(decode_message(data, offset=offset, validate=False).msg_type)
    except MessageError as exc:
        assert exc.message is not None
        return int(exc.message.msg_type)


def _our_view(path: str) -> list[tuple[str, int | None]]:
    """(encap, control message type or None for data) of every frame, decoded by pyl2tp."""
    out: list[tuple[str, int | None]] = []
    for _ts, linktype, frame in read_pcap(path):
        got = extract_l2tp(frame, linktype)
        assert got is not None, frame.hex()
        kind, data = got
        if kind == "udp" and data[0] & 0x80:
            out.append((kind, _message_type(data, 0)))
        elif kind == "ip" and data[:4] == b"\0\0\0\0":
            out.append((kind, _message_type(data, 4)))
        else:
            out.append((kind, None))
    return out


def _start_capture(ns: NetNS, d: Daemon, *args: str) -> tuple[subprocess.Popen[str], Lines]:
    proc = ns.popen(d.cli_argv(["capture", *args]), stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True, env=cli_env())
    err = Lines(proc.stderr)
    err.wait(lambda line: "listening on" in line)
    return proc, err


def test_capture_of_dynamic_bring_up_is_decoded_by_tshark(net: Net) -> None:
    if TSHARK is None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("CI=true but tshark is not installed", pytrace=False)
        pytest.skip("tshark is not installed")
    fd, path = tempfile.mkstemp(suffix=".pcap")
    os.close(fd)
    fd, ip_path = tempfile.mkstemp(suffix=".pcap")
    os.close(fd)
    try:
        everything, err = _start_capture(net.lac_ns, net.lac, "-w", path)
        udp_tid = dial(net, "udp")
        udp_pw = pseudowire(net, udp_tid, "opsc0")
        ip_tid = dial(net, "ip")
        ip_pw = pseudowire(net, ip_tid, "opsc1")
        one, one_err = _start_capture(net.lac_ns, net.lac, "tunnel_id", str(ip_tid), "-w", ip_path)
        assert ping(net.lac_ns, udp_pw.lns_ip, count=5, interval=0.05).ok
        assert ping(net.lac_ns, ip_pw.lns_ip, count=5, interval=0.05).ok
        net.lac.cli(["hangup", "tunnel_id", str(udp_tid), "session_id", str(udp_pw.sid)])
        hangup(net, udp_tid)
        hangup(net, ip_tid)
        for proc in (everything, one):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        err.wait(lambda line: "captured" in line)
        one_err.wait(lambda line: "captured" in line)

        ours = _our_view(path)
        theirs = _tshark_fields(path)
        assert len(ours) == len(theirs) > 0
        for n, ((kind, mtype), (protocols, tshark_type, malformed)) in enumerate(
                zip(ours, theirs, strict=True), 1):
            assert "l2tp" in protocols.split(":"), (n, protocols)
            assert not malformed, (n, protocols)
            if mtype is None:
                continue
            # ZLB acknowledgements have no Message Type AVP; every other message has one,
            # and tshark names the same type.
            expected = "" if mtype == 0 else str(mtype)
            assert tshark_type.split(",")[0] == expected, (n, kind, mtype, tshark_type)
        seen = {(kind, mtype) for kind, mtype in ours}
        for kind in ("udp", "ip"):
            # SCCRQ SCCRP SCCCN StopCCN ICRQ ICRP ICCN, and data packets
            for mtype in (1, 2, 3, 4, 10, 11, 12):
                assert (kind, mtype) in seen, (kind, mtype, sorted(seen, key=str))
            assert (kind, None) in seen
        assert ("udp", 14) in seen  # the CDN of the hung-up session

        # The per-tunnel capture holds the IP tunnel's packets only: its pings and teardown.
        one_view = _our_view(ip_path)
        assert {kind for kind, _ in one_view} == {"ip"}
        assert sum(1 for _, mtype in one_view if mtype is None) >= 10
        assert ("ip", 4) in one_view
    finally:
        os.unlink(path)
        os.unlink(ip_path)


# -- top and monitor -------------------------------------------------------------------------------


def test_top_batch_shows_rates_during_traffic(net: Net) -> None:
    tid = dial(net)
    pw = pseudowire(net, tid, "opst0")
    assert ping(net.lac_ns, pw.lns_ip, count=1).ok
    pinger = net.lac_ns.popen(["ping", "-n", "-q", "-c", "60", "-i", "0.05", pw.lns_ip],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = net.lac.cli(["top", "-b", "-n", "2", "-d", "1"]).stdout
    finally:
        pinger.wait(20)
    blocks = [b for b in out.split("pyl2tp top - ") if b]
    assert len(blocks) == 2, out
    row = next(line for line in blocks[-1].splitlines() if line.split()[:1] == [str(tid)])
    fields = row.split()
    assert fields[5] == "established" and fields[6] == "1", row
    assert float(fields[7]) > 5, row  # RX_PPS: about 20 replies per second
    srow = next(line for line in blocks[-1].splitlines() if line.split()[:1] == [str(pw.sid)])
    assert "opst0" in srow.split() and float(srow.split()[4]) > 5, srow
    assert "\x1b" not in out
    hangup(net, tid)


def test_monitor_prints_control_events(net: Net) -> None:
    mon = net.lac_ns.popen(net.lac.cli_argv(["monitor"]), stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True, env=cli_env())
    lines = Lines(mon.stdout)
    try:
        # Poke until the subscription is live, so no event of the sequence can be missed.
        net.lac.cli("add tunnel tunnel_id 7777 peer_tunnel_id 7777 encap udp "
                    f"local {LAC_ADDR} remote 10.72.0.9 udp_sport 7777 udp_dport 7777")

        def subscribed() -> bool:
            net.lac.request("tunnel_modify", {"conn_id": 7777})
            try:
                lines.wait(lambda line: line.startswith("tunnel modify: tunnel_id 7777"),
                           timeout=0.3)
                return True
            except AssertionError:
                return False

        wait_for(subscribed, timeout=10, message="monitor subscription")
        tid = dial(net)
        lines.wait(lambda line: line.startswith(f"tunnel create: tunnel_id {tid}"))
        lines.wait(lambda line: line.startswith(f"control tunnel up: tunnel_id {tid} ")
                   and "peer_host_name lns" in line)
        net.lac.cli(["hangup", "tunnel_id", str(tid)])
        down = lines.wait(lambda line: line.startswith(f"control tunnel down: tunnel_id {tid}"))
        assert "reason" in down and "by_peer False" in down, down
        net.lac.cli("del tunnel tunnel_id 7777")
    finally:
        mon.terminate()
        mon.wait(5)
