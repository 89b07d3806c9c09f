"""The operator commands without a daemon: ``top`` rates and batch output, ``capture``'s
filters (BPF and userspace) and packet summaries, ``monitor`` lines, ``install-service``, the
daemon's new options and the sample configuration."""

from __future__ import annotations

import io
import re
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from pyl2tp.cli import capture, top
from pyl2tp.cli.main import describe_event, main, unit_text
from pyl2tp.pcap import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    extract_l2tp,
    ip_frame,
    ip_info,
    linux_sll_header,
    udp_frame,
)
from pyl2tp.wire.constants import MessageType
from pyl2tp.wire.message import ControlMessage, encode_message

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "packaging" / "pyl2tp.toml"

# -- top ----------------------------------------------------------------------------------------


class FakeDaemon:
    """Answers the dumps ``top`` takes; every dump adds ``step`` to the counters."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, cmd: str, attrs: dict[str, Any], dump: bool) -> Any:
        n = self.calls // 3  # three requests per reading
        self.calls += 1
        if cmd == "tunnel_get":
            return [
                {"conn_id": 5, "peer_conn_id": 6, "proto_version": 3, "encap_type": 0,
                 "ip_saddr": "10.0.0.1", "ip_daddr": "10.0.0.2", "udp_sport": 1701,
                 "udp_dport": 1701, "stats": {"rx_packets": 100 * n, "rx_bytes": 100_000 * n,
                                              "tx_packets": 50 * n, "tx_bytes": 5000 * n,
                                              "rx_errors": n, "tx_errors": 0}},
                {"conn_id": 9, "peer_conn_id": 1, "proto_version": 3, "encap_type": 1,
                 "ip6_saddr": "fd00::1", "ip6_daddr": "fd00::2", "stats": {}},
            ]
        if cmd == "session_get":
            return [{"conn_id": 5, "session_id": 77, "peer_session_id": 88, "ifname": "l2tp0",
                     "stats": {"rx_packets": 100 * n, "rx_bytes": 100_000 * n}}]
        if cmd == "control_dump":
            return [{"tunnel_id": 5, "state": "established"}]
        raise AssertionError(cmd)


def test_top_batch_prints_rates_from_two_dumps() -> None:
    out = io.StringIO()
    clock = iter(float(i) for i in range(100))
    status = top.run(["-b", "-n", "2", "-d", "1"], FakeDaemon(), out, sleep=lambda _s: None,
                     clock=lambda: next(clock))
    assert status == 0
    text = out.getvalue()
    assert "\x1b" not in text
    blocks = [b for b in text.split("pyl2tp top - ") if b]
    assert len(blocks) == 2
    first = blocks[0]
    assert "Tunnels: 2  Sessions: 1  Control connections: 1 (1 established)" in first
    row = next(line for line in first.splitlines() if line.split()[:1] == ["5"])
    # 100 packets and 800,000 bits per second received, 50 packets and 40 kbit/s sent.
    assert row.split()[4:] == ["10.0.0.2:1701", "established", "1", "100", "800.0k", "50",
                               "40.0k", "1.0"], row
    row9 = next(line for line in first.splitlines() if line.split()[:1] == ["9"])
    assert "static" in row9 and "ip" in row9.split()
    srow = next(line for line in first.splitlines() if line.split()[:1] == ["77"])
    assert srow.split() == ["77", "5", "88", "l2tp0", "100", "800.0k", "0", "0", "0"]
    assert "Total: rx 800.0kbit/s 100 pkt/s" in first


def test_top_rates_and_units() -> None:
    assert top.rates(None, {"stats": {}}, 1.0) is None
    # counters that went backwards: the object was re-created, no rate
    assert top.rates({"stats": {"rx_packets": 5}}, {"stats": {"rx_packets": 1}}, 1.0) is None
    r = top.rates({"stats": {"tx_bytes": 0}}, {"stats": {"tx_bytes": 1_500_000}}, 2.0)
    assert r is not None and r.tx_bps == 6_000_000
    assert top.human(6_000_000, "bit/s") == "6.0Mbit/s"
    assert top.human(0) == "0" and top.human(2.5) == "2.5" and top.human(999) == "999"


@pytest.mark.parametrize("argv", [["-n", "0"], ["-d", "0"], ["--bogus"], ["extra"]])
def test_top_usage_errors(argv: list[str]) -> None:
    with pytest.raises(top.TopUsage):
        top.parse_args(argv)


# -- capture: BPF -------------------------------------------------------------------------------


def _v4(proto: int, payload: bytes = b"\x00" * 8) -> bytes:
    return ip_frame("10.0.0.1", "10.0.0.2", proto, payload, ethernet=False)


@pytest.mark.parametrize(("packet", "ethertype", "accepted"), [
    (_v4(17), ETHERTYPE_IPV4, True),
    (_v4(115), ETHERTYPE_IPV4, True),
    (_v4(6), ETHERTYPE_IPV4, False),
    (_v4(1), ETHERTYPE_IPV4, False),
    (ip_frame("fd00::1", "fd00::2", 17, b"\x00" * 8, ethernet=False), ETHERTYPE_IPV6, True),
    (ip_frame("fd00::1", "fd00::2", 115, b"\x00" * 8, ethernet=False), ETHERTYPE_IPV6, True),
    (ip_frame("fd00::1", "fd00::2", 44, b"\x00" * 8, ethernet=False), ETHERTYPE_IPV6, True),
    (ip_frame("fd00::1", "fd00::2", 58, b"\x00" * 8, ethernet=False), ETHERTYPE_IPV6, False),
    (b"\x00" * 28, 0x0806, False),  # ARP
])
def test_bpf_program(packet: bytes, ethertype: int, accepted: bool) -> None:
    prog = capture.bpf_program()
    assert (capture.run_bpf(prog, packet, ethertype) > 0) == accepted
    for code, jt, jf, _k in prog:  # every jump lands inside the program
        assert 0 <= jt < len(prog) and 0 <= jf < len(prog), (code, jt, jf)


def test_bpf_program_attaches_to_a_real_socket() -> None:
    """The kernel's verifier accepts the program (any socket takes SO_ATTACH_FILTER)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        capture.attach_filter(s, capture.bpf_program())


# -- capture: selecting packets ------------------------------------------------------------------

UDP_TUNNEL = {"conn_id": 5, "encap_type": 0, "ip_saddr": "10.0.0.1", "ip_daddr": "10.0.0.2",
              "udp_sport": 1701, "udp_dport": 40000}
IP_TUNNEL = {"conn_id": 6, "encap_type": 1, "ip6_saddr": "::", "ip6_daddr": "fd00::2"}


def test_selector_for_tunnels() -> None:
    sel = capture.Selector.for_tunnels([UDP_TUNNEL, IP_TUNNEL])
    assert sel.match(udp_frame("10.0.0.1", "10.0.0.2", 1701, 40000, b"x", ethernet=False))
    assert sel.match(udp_frame("10.0.0.2", "10.0.0.1", 40000, 1701, b"x", ethernet=False))
    # another tunnel's port, another peer, another local address
    assert not sel.match(udp_frame("10.0.0.2", "10.0.0.1", 40001, 1701, b"x", ethernet=False))
    assert not sel.match(udp_frame("10.0.0.3", "10.0.0.1", 40000, 1701, b"x", ethernet=False))
    assert not sel.match(udp_frame("10.0.0.2", "10.0.0.9", 40000, 1701, b"x", ethernet=False))
    # IP encapsulation with a wildcard local address: any of ours, that peer only
    assert sel.match(ip_frame("fd00::1", "fd00::2", 115, b"\0" * 8, ethernet=False))
    assert sel.match(ip_frame("fd00::2", "fd00::7", 115, b"\0" * 8, ethernet=False))
    assert not sel.match(ip_frame("fd00::3", "fd00::1", 115, b"\0" * 8, ethernet=False))
    assert not sel.match(ip_frame("fd00::1", "fd00::2", 17, b"\0" * 8, ethernet=False))


def test_selector_everything_by_port() -> None:
    sel = capture.Selector(ports={1701, 5000})
    assert sel.match(udp_frame("1.1.1.1", "2.2.2.2", 5000, 9, b"x", ethernet=False))
    assert sel.match(udp_frame("1.1.1.1", "2.2.2.2", 9, 1701, b"x", ethernet=False))
    assert not sel.match(udp_frame("1.1.1.1", "2.2.2.2", 53, 9, b"x", ethernet=False))
    assert sel.match(_v4(115))
    assert not sel.match(_v4(6))


def _fragment(first: bool, ident: int, more: bool, payload: bytes) -> bytes:
    offset = 0 if first else 185
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident,
                      (0x2000 if more else 0) | offset, 64, 17, 0,
                      socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"))
    return hdr + payload


def test_fragments_follow_their_first_fragment() -> None:
    sel = capture.Selector.for_tunnels([UDP_TUNNEL])
    udp = struct.pack("!HHHH", 1701, 40000, 3000, 0) + b"x" * 32
    assert sel.match(_fragment(True, 77, True, udp))
    assert sel.match(_fragment(False, 77, False, b"y" * 40))
    assert not sel.match(_fragment(False, 78, False, b"y" * 40))
    info = ip_info(_fragment(False, 77, False, b"y" * 40))
    assert info is not None and info.sport is None and info.frag_id == 77 and not info.first


def test_ip_info_ipv6_fragment_and_garbage() -> None:
    frag = struct.pack("!BBHI", 17, 0, (10 << 3) | 1, 0xABCD)
    info = ip_info(ip_frame("fd00::1", "fd00::2", 44, frag + b"z" * 16, ethernet=False))
    assert info is not None and info.frag_id == 0xABCD and not info.first and info.proto == 17
    for junk in (b"", b"\x45", b"\x60" * 10, b"\x10" * 60):
        assert ip_info(junk) is None or ip_info(junk) is not None  # never raises


def test_sll_records_read_back() -> None:
    msg = ControlMessage(MessageType.HELLO, version=3, tunnel_id=9)
    packet = udp_frame("10.0.0.1", "10.0.0.2", 1701, 1701, encode_message(msg), ethernet=False)
    record = linux_sll_header(ETHERTYPE_IPV4, pkttype=4, hatype=1, addr=b"\x02" * 6) + packet
    assert len(linux_sll_header(ETHERTYPE_IPV4)) == 16
    kind, l2tp = extract_l2tp(record, LINKTYPE_LINUX_SLL) or ("", b"")
    assert kind == "udp" and l2tp == encode_message(msg)


def test_summaries() -> None:
    msg = ControlMessage(MessageType.SCCRQ, version=3, tunnel_id=0)
    from pyl2tp.wire.constants import AvpType

    msg.add(AvpType.HOST_NAME, "a")
    msg.add(AvpType.ASSIGNED_CONNECTION_ID, 5)
    packet = udp_frame("10.0.0.1", "10.0.0.2", 1701, 1701, encode_message(msg), ethernet=False)
    info = ip_info(packet)
    assert info is not None
    assert capture.summarize(packet, info) == \
        "10.0.0.1:1701 > 10.0.0.2:1701 L2TPv3 SCCRQ tunnel 0 Ns 0 Nr 0"
    over_ip = ip_frame("10.0.0.1", "10.0.0.2", 115, b"\0\0\0\0" + encode_message(msg),
                       ethernet=False)
    info = ip_info(over_ip)
    assert info is not None
    assert capture.summarize(over_ip, info).endswith("L2TPv3 SCCRQ tunnel 0 Ns 0 Nr 0")
    assert capture.describe_l2tp(struct.pack("!I", 1234) + b"d" * 20, udp=False) == \
        "L2TPv3 data session 1234, 24 octets"
    assert capture.describe_l2tp(b"\x00\x02\x00\x05\x00\x09" + b"p" * 4, udp=True) == \
        "L2TPv2 data tunnel 5 session 9, 10 octets"
    assert capture.describe_l2tp(b"\xc8\x03\x00", udp=True).startswith("L2TP control")


def test_capture_arguments() -> None:
    args = capture.parse_args(["tunnel_id", "5", "6", "-w", "f.pcap", "-c", "3", "-i", "eth0"])
    assert args.tunnel_ids == [5, 6] and args.write == "f.pcap" and args.count == 3
    assert args.iface == "eth0"
    for bad in (["tunnel_id"], ["-c", "0"], ["bogus"], ["--duration", "-1"]):
        with pytest.raises(capture.CaptureUsage):
            capture.parse_args(bad)


# -- monitor --------------------------------------------------------------------------------------


def test_monitor_lines() -> None:
    assert describe_event({"event": "session_create", "attrs": {
        "conn_id": 1, "session_id": 10, "ifname": "l2tpeth0"}}) == \
        "session create: tunnel_id 1 session_id 10 ifname l2tpeth0"
    assert describe_event({"event": "control_tunnel_up", "attrs": {
        "tunnel_id": 7, "state": "established", "peer_host_name": "lns", "counters": {}}}) == \
        "control tunnel up: tunnel_id 7 peer_host_name lns state established"
    assert describe_event({"event": "control_tunnel_down", "attrs": {
        "conn_id": 7, "reason": "hello timeout", "result": None, "by_peer": False}}) == \
        "control tunnel down: tunnel_id 7 reason hello timeout by_peer False"
    assert describe_event({"event": "ppp_down", "attrs": {
        "session": "session 3/4", "ifname": "ppp0", "reason": "authentication failed: x"}}) == \
        "ppp down: session 3/4 reason authentication failed: x ifname ppp0"


def test_monitor_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "help"]) == 0
    assert "Usage: pyl2tp monitor" in capsys.readouterr().out
    assert main(["--socket", "/nonexistent.sock", "monitor", "bogus"]) == 255
    assert capsys.readouterr().err.count("\n") == 1


# -- daemon options, sample configuration, systemd unit --------------------------------------------


def test_sample_configuration_passes_check_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["daemon", "--check-config", "--config", str(SAMPLE)]) == 0
    assert capsys.readouterr().out.strip().endswith(": OK")


def test_sample_configuration_examples_are_valid(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Every commented-out setting ("#key = ..." / "#[section]") is valid once enabled, so
    the sample's examples cannot rot."""
    text = re.sub(r"(?m)^#(?=[a-z_\[])", "", SAMPLE.read_text())
    assert "[[peer]]" in text and "[[ppp]]" in text and "[[tunnel]]" in text
    path = tmp_path / "all.toml"
    path.write_text(text)
    assert main(["daemon", "--check", "--config", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--metrics", "nonsense"], "--metrics: expected ADDR:PORT"),
    (["--metrics-sessions"], "--metrics-sessions needs --metrics"),
    (["--metrics", "[::1]:99999"], "out of range"),
])
def test_daemon_option_errors_are_one_line(argv: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["daemon", *argv, "--check", "--config", str(SAMPLE)]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_unit_file() -> None:
    unit = (REPO / "packaging" / "pyl2tp.service").read_text()
    keys = dict(line.split("=", 1) for line in unit.splitlines()
                if "=" in line and not line.startswith("#"))
    assert keys["Type"] == "simple"
    assert keys["ExecStart"] == "/usr/local/bin/pyl2tp daemon --config /etc/pyl2tp/pyl2tp.toml"
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert keys["Restart"] == "on-failure"
    assert keys["CapabilityBoundingSet"] == "CAP_NET_ADMIN CAP_NET_RAW"
    assert keys["RuntimeDirectory"] == "pyl2tp"
    assert "/opt/venv/bin/pyl2tp daemon" in unit_text(unit, "/opt/venv/bin/pyl2tp")


def test_install_service_into_a_prefix(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    unit = (tmp_path / "etc/systemd/system/pyl2tp.service").read_text()
    assert "/usr/local/bin/pyl2tp" not in unit and "pyl2tp daemon --config" in unit
    conf = tmp_path / "etc/pyl2tp/pyl2tp.toml"
    assert conf.read_text() == SAMPLE.read_text()
    assert conf.stat().st_mode & 0o777 == 0o640
    conf.write_text("# mine\n")
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    assert conf.read_text() == "# mine\n"  # an existing configuration is kept
    assert "kept the existing" in capsys.readouterr().out
    assert main(["install-service", "--print"]) == 0
    assert "[Service]" in capsys.readouterr().out


def test_help_lists_the_operator_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["help"]) == 255  # as "ip l2tp help"
    err = capsys.readouterr().err
    assert err.startswith("Usage: ip l2tp add tunnel")
    for command in ("pyl2tp monitor", "pyl2tp top", "pyl2tp capture", "pyl2tp install-service",
                    "pyl2tp daemon"):
        assert command in err
    for command in (["top", "help"], ["capture", "help"], ["daemon", "help"]):
        assert main(command) == 0
        assert "sage" in capsys.readouterr().out
