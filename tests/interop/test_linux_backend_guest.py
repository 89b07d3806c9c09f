"""Guest-side programs of ``test_linux_backend.py``: they run INSIDE the reference-kernel VM.

This module holds no tests (pytest collects nothing here); the VM runs it with the host's
virtualenv python::

    PYTHONPATH=/work/main/src:/work/main python -m tests.interop.test_linux_backend_guest MODE ...

Modes (each prints ``@@LBK <tag> <json>`` lines that the host test parses):

``mgmt linux|userspace``
    The same list of management requests (:data:`REQUESTS`) through
    :func:`pyl2tp.mgmt.commands.execute` on a registry with the ``linux`` or the userspace
    backend, with checkpoints recording the registry's dumps and, with ``linux``, the
    kernel's own dumps (our netlink client) and ``ip l2tp show`` in text and JSON.
``managed``
    Managed tunnels: UDP (v3 Ethernet, v2 PPP) and IP (v3 Ethernet) tunnels on sockets of
    our own, with a peer made of plain sockets; data through the kernel, control messages
    passed up, a PPP channel and a ``pppN`` unit carrying an ICMP echo.
``peer``
    Unmanaged L2TPv3 Ethernet pseudowires to pyl2tp's userspace daemon on the host, pinged.
``daemon ARGS``
    ``pyl2tp daemon ARGS`` with the ``linux`` backend in place of the userspace one (what
    the integration patch does), for the pppd test.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARK = "@@LBK"


def emit(tag: str, value: Any) -> None:
    print(f"{MARK} {tag} {json.dumps(value, sort_keys=False)}", flush=True)


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False)


# ------------------------------------------------------------------------------------------
# mgmt: the same requests through both backends

A4, A4B, R4 = "10.214.50.1", "10.214.50.3", "10.214.50.2"
A6, R6 = "fd00:214:50::1", "fd00:214:50::2"

#: Commands run in ``mgmt`` mode on both backends: (cmd, attrs, dump), or ("@", checkpoint).
REQUESTS: list[tuple[str, Any, bool]] = [
    ("tunnel_create", {"conn_id": 10, "peer_conn_id": 110, "proto_version": 3, "encap_type": 0,
                       "ip_saddr": A4, "ip_daddr": R4, "udp_sport": 5010, "udp_dport": 6010},
     False),
    ("tunnel_create", {"conn_id": 11, "peer_conn_id": 111, "proto_version": 3, "encap_type": 1,
                       "ip_saddr": A4, "ip_daddr": R4}, False),
    ("tunnel_create", {"conn_id": 12, "peer_conn_id": 112, "proto_version": 3, "encap_type": 0,
                       "ip6_saddr": A6, "ip6_daddr": R6, "udp_sport": 5012, "udp_dport": 6012,
                       "udp_zero_csum6_tx": True}, False),
    ("tunnel_create", {"conn_id": 13, "peer_conn_id": 113, "proto_version": 3, "encap_type": 1,
                       "ip6_saddr": A6, "ip6_daddr": R6}, False),
    ("tunnel_create", {"conn_id": 14, "peer_conn_id": 114, "proto_version": 2, "encap_type": 0,
                       "ip_saddr": A4, "ip_daddr": R4, "udp_sport": 5014, "udp_dport": 6014,
                       "udp_csum": True}, False),
    ("tunnel_create", {"conn_id": 15, "peer_conn_id": 115, "proto_version": 2, "encap_type": 0,
                       "ip6_saddr": A6, "ip6_daddr": R6, "udp_sport": 5015, "udp_dport": 6015,
                       "udp_zero_csum6_rx": True}, False),
    ("tunnel_create", {"conn_id": 16, "peer_conn_id": 116, "proto_version": 3, "encap_type": 0,
                       "ip_saddr": A4B, "ip_daddr": R4, "udp_sport": 5016, "udp_dport": 6016,
                       "udp_csum": True}, False),
    ("session_create", {"conn_id": 10, "session_id": 100, "peer_session_id": 200, "pw_type": 5,
                        "cookie": "01234567", "peer_cookie": "0011223344556677",
                        "recv_seq": True, "send_seq": True, "ifname": "kpw0"}, False),
    ("session_create", {"conn_id": 11, "session_id": 101, "peer_session_id": 201, "pw_type": 5,
                        "l2spec_type": 0}, False),
    ("session_create", {"conn_id": 12, "session_id": 102, "peer_session_id": 202, "pw_type": 5,
                        "cookie": "a1a2a3a4a5a6a7a8", "peer_cookie": "b1b2b3b4",
                        "l2spec_type": 1}, False),
    ("session_create", {"conn_id": 13, "session_id": 103, "peer_session_id": 203, "pw_type": 5,
                        "send_seq": True, "ifname": "kpw%d"}, False),
    # PPP: one of each PPPoL2TP socket address (v2/IPv4, v2/IPv6, v3/IPv4, v3/IPv6).
    ("session_create", {"conn_id": 14, "session_id": 7, "peer_session_id": 8, "pw_type": 7},
     False),
    ("session_create", {"conn_id": 15, "session_id": 9, "peer_session_id": 10, "pw_type": 7,
                        "lns_mode": True, "send_seq": True}, False),
    ("session_create", {"conn_id": 10, "session_id": 104, "peer_session_id": 204, "pw_type": 7,
                        "cookie": "c1c2c3c4c5c6c7c8"}, False),
    ("session_create", {"conn_id": 13, "session_id": 105, "peer_session_id": 205, "pw_type": 7,
                        "l2spec_type": 0}, False),
    # A v3 UDP session id may repeat across UDP tunnels.
    ("session_create", {"conn_id": 16, "session_id": 100, "peer_session_id": 300, "pw_type": 5,
                        "cookie": "0a0b0c0d"}, False),
    ("session_modify", {"conn_id": 10, "session_id": 100, "recv_seq": False, "send_seq": True,
                        "lns_mode": True, "recv_timeout": 40}, False),
    ("session_modify", {"conn_id": 14, "session_id": 7, "send_seq": True}, False),
    ("session_modify", {"conn_id": 13, "session_id": 105, "recv_timeout": 100}, False),
    ("tunnel_modify", {"conn_id": 10}, False),
    ("tunnel_get", {"conn_id": 10}, False),
    ("tunnel_get", {"conn_id": 13}, False),
    ("tunnel_get", {"conn_id": 15}, False),
    ("session_get", {"conn_id": 10, "session_id": 100}, False),
    ("session_get", {"ifname": "kpw1"}, False),
    ("session_get", {"conn_id": 14, "session_id": 7}, False),
    ("session_get", {"conn_id": 16, "session_id": 100}, False),
    # Refusals.
    ("tunnel_create", {"conn_id": 10, "peer_conn_id": 999, "proto_version": 3, "encap_type": 1,
                       "ip_saddr": A4, "ip_daddr": R4}, False),  # EEXIST
    ("tunnel_create", {"conn_id": 17, "peer_conn_id": 117, "proto_version": 3, "encap_type": 0,
                       "ip_saddr": A4, "ip_daddr": "10.99.0.1", "udp_sport": 5017,
                       "udp_dport": 6017}, False),  # ENETUNREACH
    ("tunnel_create", {"conn_id": 18, "peer_conn_id": 118, "proto_version": 3, "encap_type": 0,
                       "ip_saddr": "10.214.60.1", "ip_daddr": R4, "udp_sport": 5018,
                       "udp_dport": 6018}, False),  # EADDRNOTAVAIL
    ("tunnel_create", {"conn_id": 19, "peer_conn_id": 119, "proto_version": 3, "encap_type": 1,
                       "ip6_saddr": "fd00:214:60::1", "ip6_daddr": R6}, False),  # EADDRNOTAVAIL
    ("session_create", {"conn_id": 99, "session_id": 1, "peer_session_id": 2, "pw_type": 5},
     False),  # ENODEV
    ("session_create", {"conn_id": 11, "session_id": 103, "peer_session_id": 2, "pw_type": 5},
     False),  # EEXIST: an IP-encap session id must be unique
    ("session_create", {"conn_id": 14, "session_id": 3, "peer_session_id": 4, "pw_type": 5},
     False),  # EPROTONOSUPPORT: v2 carries PPP only
    ("session_create", {"conn_id": 10, "session_id": 120, "peer_session_id": 220, "pw_type": 5,
                        "ifname": "kpw0"}, False),  # EEXIST: the device name
    ("session_create", {"conn_id": 10, "session_id": 100, "peer_session_id": 5, "pw_type": 5},
     False),  # EEXIST: same tunnel
    ("session_delete", {"conn_id": 10, "session_id": 999}, False),  # ENODEV
    ("session_get", {"ifname": "nosuchdev"}, False),  # ENODEV
    ("tunnel_delete", {"conn_id": 999}, False),  # ENODEV
    ("tunnel_get", {}, True),
    ("session_get", {}, True),
    ("@", "full", False),
    ("session_delete", {"conn_id": 11, "session_id": 101}, False),
    ("session_delete", {"ifname": "kpw1"}, False),
    ("tunnel_delete", {"conn_id": 12}, False),
    ("session_delete", {"conn_id": 14, "session_id": 7}, False),
    ("@", "deleted", False),
    # Re-created at once: the kernel frees a tunnel id in a work item after the delete.
    ("tunnel_create", {"conn_id": 12, "peer_conn_id": 112, "proto_version": 3, "encap_type": 0,
                       "ip6_saddr": A6, "ip6_daddr": R6, "udp_sport": 5012, "udp_dport": 6012,
                       "udp_zero_csum6_tx": True}, False),
    ("session_create", {"conn_id": 12, "session_id": 102, "peer_session_id": 202, "pw_type": 5},
     False),
    ("session_create", {"conn_id": 14, "session_id": 7, "peer_session_id": 8, "pw_type": 7},
     False),
    ("@", "recreated", False),
]


def _execute(reg: Any, cmd: str, attrs: Any, dump: bool) -> dict[str, Any]:
    from pyl2tp.errors import L2tpError
    from pyl2tp.mgmt import commands

    try:
        return {"ok": commands.execute(reg, {"cmd": cmd, "attrs": attrs, "dump": dump})}
    except L2tpError as exc:
        return {"error": exc.errno_name, "message": exc.message}


def _ip_show() -> dict[str, Any]:
    out = {}
    for key, argv in (("tunnel_text", ["ip", "l2tp", "show", "tunnel"]),
                      ("session_text", ["ip", "l2tp", "show", "session"]),
                      ("tunnel_json", ["ip", "-j", "l2tp", "show", "tunnel"]),
                      ("session_json", ["ip", "-j", "l2tp", "show", "session"])):
        res = sh(*argv)
        out[key] = {"rc": res.returncode, "out": res.stdout, "err": res.stderr}
    return out


def _links() -> list[dict[str, Any]]:
    res = sh("ip", "-j", "-d", "link", "show")
    links: list[dict[str, Any]] = json.loads(res.stdout or "[]")
    return [{"ifname": ln["ifname"], "mtu": ln.get("mtu"), "kind": ln.get("linkinfo", {})
             .get("info_kind")} for ln in links if ln["ifname"] not in ("lo",)]


async def _settled_links(expected: set[str], timeout: float = 3.0) -> list[dict[str, Any]]:
    """The devices once they are the sessions' (a backend may remove a device a moment
    after the session is gone), or as they are after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        links = _links()
        if ({ln["ifname"] for ln in links if ln["kind"] != "veth"} == expected
                or time.monotonic() > deadline):
            return links
        await asyncio.sleep(0.05)


async def mgmt(mode: str) -> None:
    from pyl2tp.dataplane.linux import LinuxBackend
    from pyl2tp.dataplane.registry import Registry
    from pyl2tp.dataplane.userspace import UserspaceBackend

    loop = asyncio.get_running_loop()
    backend: Any = LinuxBackend(loop) if mode == "linux" else UserspaceBackend(loop)
    reg = Registry()
    backend.attach(reg)
    replies = []
    t0 = time.monotonic()
    for cmd, attrs, dump in REQUESTS:
        if cmd == "@":
            sessions = _execute(reg, "session_get", {}, True)["ok"]
            point: dict[str, Any] = {
                "tunnels": _execute(reg, "tunnel_get", {}, True)["ok"],
                "sessions": sessions,
                "links": await _settled_links({s["ifname"] for s in sessions
                                               if s["pw_type"] == 5}),
            }
            if mode == "linux":
                point["kernel_tunnels"] = backend.kernel_tunnels()
                point["kernel_sessions"] = backend.kernel_sessions()
                point["ip"] = _ip_show()
            emit(f"CHECKPOINT {mode} {attrs}", point)
            continue
        replies.append(_execute(reg, cmd, attrs, dump))
    elapsed = time.monotonic() - t0
    emit(f"REPLIES {mode}", replies)
    backend.close()
    if mode == "linux":
        from pyl2tp.dataplane.genl_l2tp import L2tpNetlink

        nl = L2tpNetlink()
        emit("CLOSED", {"kernel_tunnels": nl.tunnel_dump(), "kernel_sessions": nl.session_dump(),
                        "ip": _ip_show(), "links": _links(), "elapsed": elapsed})


# ------------------------------------------------------------------------------------------
# managed tunnels

M_LOCAL, M_PEER = "10.214.70.1", "10.214.70.2"
PEER_PORT = 1801
M6_LOCAL, M6_PEER = "fd00:214:70::1", "fd00:214:70::2"
PPP_LOCAL, PPP_PEER = "10.214.80.1", "10.214.80.2"
FRAME_IN = bytes.fromhex("ffffffffffff" "020000000001" "88b5") + b"peer to kernel".ljust(46, b".")
FRAME_OUT = bytes.fromhex("ffffffffffff" "020000000002" "88b5") + b"kernel to peer".ljust(46, b".")


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def icmp_echo(src: str, dst: str, ident: int = 0x4242, seq: int = 1) -> bytes:
    """An IPv4 ICMP echo request with valid checksums."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"pyl2tp-kernel-ppp"
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + icmp


def _sysfs(dev: str, counter: str) -> int:
    try:
        with open(f"/sys/class/net/{dev}/statistics/{counter}") as f:
            return int(f.read())
    except OSError:
        return -1


def _recv(sock: socket.socket, want: Callable[[bytes], bool], timeout: float = 3.0
          ) -> bytes | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
        if want(data):
            return data
    return None


async def _until(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


def _up(dev: str) -> None:
    sh("sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
    sh("ip", "link", "set", dev, "up")


async def managed() -> None:
    from pyl2tp.dataplane.linux import KernelPppChannel, LinuxBackend
    from pyl2tp.dataplane.model import Session, Tunnel
    from pyl2tp.dataplane.registry import Registry
    from pyl2tp.wire.constants import EncapType, L2SpecType, PwType

    loop = asyncio.get_running_loop()
    backend = LinuxBackend(loop)
    reg = Registry()
    backend.attach(reg)
    got: list[tuple[Any, bytes, Any]] = []
    backend.control_handler = lambda ep, data, off, addr: got.append((ep, data[off:], addr))
    out: dict[str, Any] = {}

    # -- v3 UDP, Ethernet ------------------------------------------------------------------
    ep = backend.endpoint_for(EncapType.UDP, socket.AF_INET, "0.0.0.0", 1701)
    # The peer lives on this host too: on a port of its own, since the listener holds
    # 0.0.0.0:1701 without SO_REUSEADDR.
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((M_PEER, PEER_PORT))
    t = Tunnel(40, 140, 3, EncapType.UDP, family=socket.AF_INET, local=M_LOCAL, remote=M_PEER,
               udp_sport=1701, udp_dport=PEER_PORT, managed=True, udp_csum=True)
    t.endpoint = ep
    reg.add_tunnel(t)
    s = Session(t, 400, 500, PwType.ETH, cookie=bytes.fromhex("11223344"),
                peer_cookie=bytes.fromhex("aabbccdd"), l2spec_type=L2SpecType.DEFAULT,
                ifname="mpw0")
    reg.add_session(s)
    _up("mpw0")
    tsock = backend.tunnel_socket(40)
    out["udp_socket"] = {"local": list(tsock.getsockname()) if tsock else None,
                         "peer": list(tsock.getpeername()) if tsock else None}
    out["udp_kernel_tunnel"] = backend.nl.tunnel_get(40)
    peer.sendto(b"\x00\x03\x00\x00" + struct.pack("!I", 400) + bytes.fromhex("aabbccdd")
                + b"\0\0\0\0" + FRAME_IN, (M_LOCAL, 1701))
    await _until(lambda: _sysfs("mpw0", "rx_packets") > 0)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as ps:
        ps.bind(("mpw0", 0))
        ps.send(FRAME_OUT)
    wire = _recv(peer, lambda d: d[:2] == b"\x00\x03")
    ctl = bytes.fromhex("c803000c" "00000028" "00000000")  # a v3 control header to tunnel 40
    peer.sendto(ctl, (M_LOCAL, 1701))
    peer.sendto(b"\x00\x03\x00\x00" + struct.pack("!I", 999) + b"\0" * 20, (M_LOCAL, 1701))
    await _until(lambda: bool(got) and ep.rx_unknown_session > 0)
    out["udp"] = {
        "mpw0_rx_packets": _sysfs("mpw0", "rx_packets"),
        "wire_out": wire.hex() if wire else None,
        "expected_out": (b"\x00\x03\x00\x00" + struct.pack("!I", 500)
                         + bytes.fromhex("11223344") + b"\0\0\0\0" + FRAME_OUT).hex(),
        "control": [{"listener": e is ep, "data": d.hex(), "from": list(a)} for e, d, a in got],
        "endpoint": ep.counters(),
        "session_stats": s.stats.as_dict(),
        "tunnel_stats": t.stats.as_dict(),
    }
    got.clear()

    # -- v3 UDP over IPv6, Ethernet, zero UDP checksums on transmit ----------------------
    got.clear()
    ep6 = backend.endpoint_for(EncapType.UDP, socket.AF_INET6, "::", 1701)
    peer6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    # Our tunnel sends zero checksums, which an IPv6 UDP socket drops unless told otherwise.
    peer6.setsockopt(socket.IPPROTO_UDP, 102, 1)  # UDP_NO_CHECK6_RX
    peer6.bind((M6_PEER, PEER_PORT))
    t6 = Tunnel(43, 143, 3, EncapType.UDP, family=socket.AF_INET6, local=M6_LOCAL,
                remote=M6_PEER, udp_sport=1701, udp_dport=PEER_PORT, managed=True,
                udp_zero_csum6_tx=True)
    t6.endpoint = ep6
    reg.add_tunnel(t6)
    s6 = Session(t6, 430, 530, PwType.ETH, l2spec_type=L2SpecType.NONE, ifname="m6pw0")
    reg.add_session(s6)
    _up("m6pw0")
    peer6.sendto(b"\x00\x03\x00\x00" + struct.pack("!I", 430) + FRAME_IN, (M6_LOCAL, 1701))
    await _until(lambda: _sysfs("m6pw0", "rx_packets") > 0)
    peer6.sendto(bytes.fromhex("c803000c" "0000002b" "00000000"), (M6_LOCAL, 1701))
    await _until(lambda: bool(got))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as ps:
        ps.bind(("m6pw0", 0))
        ps.send(FRAME_OUT)
    wire6 = _recv(peer6, lambda d: d[:2] == b"\x00\x03")
    out["udp6"] = {
        "kernel_tunnel": backend.nl.tunnel_get(43),
        "m6pw0_rx_packets": _sysfs("m6pw0", "rx_packets"),
        "control": [{"listener": e is ep6, "data": d.hex()} for e, d, _a in got],
        "wire_out": wire6.hex() if wire6 else None,
        "expected_out": (b"\x00\x03\x00\x00" + struct.pack("!I", 530) + FRAME_OUT).hex(),
    }
    got.clear()

    # -- v2 UDP, PPP ---------------------------------------------------------------------
    ep2 = backend.endpoint_for(EncapType.UDP, socket.AF_INET, M_LOCAL, 1702)
    peer2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer2.bind((M_PEER, 1702))
    t2 = Tunnel(41, 141, 2, EncapType.UDP, family=socket.AF_INET, local=M_LOCAL, remote=M_PEER,
                udp_sport=1702, udp_dport=1702, managed=True, udp_csum=True)
    t2.endpoint = ep2
    reg.add_tunnel(t2)
    s2 = Session(t2, 7, 8, PwType.PPP)
    reg.add_session(s2)
    chan = s2.pw
    assert isinstance(chan, KernelPppChannel)
    frames: list[bytes] = []
    chan.on_frame = frames.append

    def v2_data(frame: bytes) -> bytes:
        return b"\x00\x02" + struct.pack("!HH", 41, 7) + b"\xff\x03" + frame

    lcp_req = bytes.fromhex("c021" "0101000a" "0506" "01020304")
    peer2.sendto(v2_data(lcp_req), (M_LOCAL, 1702))
    await _until(lambda: bool(frames))
    lcp_ack = bytes.fromhex("c021" "0201000a" "0506" "01020304")
    chan.send(lcp_ack)
    wire2 = _recv(peer2, lambda d: d[:2] == b"\x00\x02")
    ppp: dict[str, Any] = {"channel_frames": [f.hex() for f in frames],
                           "wire_out": wire2.hex() if wire2 else None,
                           "expected_out": (b"\x00\x02" + struct.pack("!HH", 141, 8)
                                            + b"\xff\x03" + lcp_ack).hex()}
    frames.clear()
    unit = chan.create_unit("kppp0")
    ppp["unit"] = unit.name
    sh("ip", "addr", "add", PPP_LOCAL, "peer", PPP_PEER, "dev", "kppp0")
    _up("kppp0")
    ipcp = bytes.fromhex("8021" "01010004")
    peer2.sendto(v2_data(ipcp), (M_LOCAL, 1702))
    await _until(lambda: bool(frames))
    ppp["unit_frames"] = [f.hex() for f in frames]
    peer2.sendto(v2_data(b"\x00\x21" + icmp_echo(PPP_PEER, PPP_LOCAL)), (M_LOCAL, 1702))
    reply = _recv(peer2, lambda d: d[:2] == b"\x00\x02" and d[8:10] == b"\x00\x21")
    ppp["echo_reply"] = reply.hex() if reply else None
    if reply:
        ip = reply[10:]
        ppp["echo_reply_ip"] = {"src": socket.inet_ntoa(ip[12:16]),
                                "dst": socket.inet_ntoa(ip[16:20]), "icmp_type": ip[20]}
    ppp["kppp0"] = {"rx_packets": _sysfs("kppp0", "rx_packets"),
                    "tx_packets": _sysfs("kppp0", "tx_packets")}
    ppp["ioc_stats"] = chan.l2tp_stats().__dict__
    ppp["session_stats"] = s2.stats.as_dict()
    ppp["channel_counters"] = {"rx_frames": chan.rx_frames, "tx_frames": chan.tx_frames,
                               "tx_errors": chan.tx_errors}
    chan.destroy_unit()
    ppp["unit_gone"] = sh("ip", "link", "show", "kppp0").returncode != 0
    out["ppp"] = ppp

    # -- v3 IP, Ethernet -----------------------------------------------------------------
    got.clear()
    ep3 = backend.endpoint_for(EncapType.IP, socket.AF_INET, "0.0.0.0", 0)
    t3 = Tunnel(42, 142, 3, EncapType.IP, family=socket.AF_INET, local=M_LOCAL, remote=M_PEER,
                managed=True)
    t3.endpoint = ep3
    reg.add_tunnel(t3)
    s3 = Session(t3, 420, 520, PwType.ETH, l2spec_type=L2SpecType.DEFAULT, ifname="ipw0")
    reg.add_session(s3)
    _up("ipw0")
    peer3 = socket.socket(socket.AF_INET, socket.SOCK_RAW, 115)
    peer3.bind((M_PEER, 0))
    peer3.sendto(struct.pack("!I", 420) + b"\0\0\0\0" + FRAME_IN, (M_LOCAL, 0))
    await _until(lambda: _sysfs("ipw0", "rx_packets") > 0)
    ctl3 = b"\0\0\0\0" + bytes.fromhex("c803000c" "0000002a" "00000000")
    peer3.sendto(ctl3, (M_LOCAL, 0))
    await _until(lambda: any(a[0] == M_PEER for _e, _d, a in got))
    await asyncio.sleep(0.3)  # a duplicate (from the tunnel's own socket) would arrive now
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as ps:
        ps.bind(("ipw0", 0))
        ps.send(FRAME_OUT)
    wire3 = _recv(peer3, lambda d: d[(d[0] & 15) * 4:][:4] == struct.pack("!I", 520))
    out["ip"] = {
        "ipw0_rx_packets": _sysfs("ipw0", "rx_packets"),
        "control_from_peer": [d.hex() for _e, d, a in got if a[0] == M_PEER],
        "wire_out": wire3[(wire3[0] & 15) * 4:].hex() if wire3 else None,
        "expected_out": (struct.pack("!I", 520) + b"\0\0\0\0" + FRAME_OUT).hex(),
        "endpoint": ep3.counters(),
        "kernel_tunnel": backend.nl.tunnel_get(42),
        "session_stats": s3.stats.as_dict(),
    }

    out["ip_l2tp_show"] = sh("ip", "l2tp", "show", "tunnel").stdout
    backend.close()
    from pyl2tp.dataplane.genl_l2tp import L2tpNetlink

    nl = L2tpNetlink()
    out["closed"] = {"kernel_tunnels": nl.tunnel_dump(), "kernel_sessions": nl.session_dump(),
                     "links": _links()}
    for sock in (peer, peer6, peer2, peer3):
        sock.close()
    emit("MANAGED", out)


# ------------------------------------------------------------------------------------------
# peer: pseudowires to the host's userspace daemon

#: (guest tunnel/session attributes, guest device, guest inner, host inner), per pseudowire.
PEER_HOST, PEER_GUEST = "10.215.1.1", "10.215.0.2"
PEER_PWS: list[dict[str, Any]] = [
    {"name": "gk1", "inner": "10.216.1.2", "host_inner": "10.216.1.1",
     "tunnel": {"conn_id": 401, "peer_conn_id": 301, "proto_version": 3, "encap_type": 0,
                "ip_saddr": PEER_GUEST, "ip_daddr": PEER_HOST, "udp_sport": 17101,
                "udp_dport": 17001},
     "session": {"conn_id": 401, "session_id": 4001, "peer_session_id": 3001, "pw_type": 5,
                 "cookie": "89abcdef", "peer_cookie": "0123456789abcdef", "recv_seq": True,
                 "send_seq": True, "ifname": "gk1"}},
    {"name": "gk2", "inner": "10.216.2.2", "host_inner": "10.216.2.1",
     "tunnel": {"conn_id": 402, "peer_conn_id": 302, "proto_version": 3, "encap_type": 1,
                "ip_saddr": PEER_GUEST, "ip_daddr": PEER_HOST},
     "session": {"conn_id": 402, "session_id": 4002, "peer_session_id": 3002, "pw_type": 5,
                 "l2spec_type": 0, "ifname": "gk2"}},
]


def _ping(addr: str, *args: str) -> dict[str, Any]:
    res = sh("ping", "-n", "-q", *args, addr)
    return {"rc": res.returncode, "out": res.stdout[-300:]}


async def peer_mode() -> None:
    from pyl2tp.dataplane.linux import LinuxBackend
    from pyl2tp.dataplane.registry import Registry

    backend = LinuxBackend(asyncio.get_running_loop())
    reg = Registry()
    backend.attach(reg)
    out: dict[str, Any] = {"setup": [], "pings": {}}
    for pw in PEER_PWS:
        out["setup"].append(_execute(reg, "tunnel_create", pw["tunnel"], False))
        out["setup"].append(_execute(reg, "session_create", pw["session"], False))
        _up(pw["name"])
        sh("ip", "addr", "add", f"{pw['inner']}/24", "dev", pw["name"])
    for pw in PEER_PWS:
        tries = 0
        while tries < 40 and _ping(pw["host_inner"], "-c1", "-W1")["rc"] != 0:
            tries += 1
        res = {"tries": tries, "small": _ping(pw["host_inner"], "-c5", "-i0.2", "-W3"),
               "big": _ping(pw["host_inner"], "-c2", "-i0.2", "-W3", "-s1600")}
        out["pings"][pw["name"]] = res
    backend.refresh_stats()
    out["sessions"] = _execute(reg, "session_get", {}, True)
    out["tunnels"] = _execute(reg, "tunnel_get", {}, True)
    out["kernel_sessions"] = backend.kernel_sessions()
    out["links"] = {pw["name"]: {k: _sysfs(pw["name"], k) for k in
                                 ("rx_packets", "tx_packets", "rx_errors", "tx_dropped")}
                    for pw in PEER_PWS}
    out["mtu"] = {pw["name"]: int(Path(f"/sys/class/net/{pw['name']}/mtu").read_text())
                  for pw in PEER_PWS}
    emit("PEER", out)
    backend.close()


# ------------------------------------------------------------------------------------------
# daemon: pyl2tp daemon on the linux backend


def daemon_mode(argv: list[str]) -> int:
    """``pyl2tp daemon --backend linux``."""
    from pyl2tp.cli.main import main as cli_main

    return cli_main(["daemon", "--backend", "linux", *argv])


# ------------------------------------------------------------------------------------------
# dynamic: a pyl2tp daemon on the linux backend dials the host's userspace daemon

DYN_SOCKET = "/run/pyl2tp/dyn.sock"
DYN_SECRET = "kernel-dyn"
DYN_GUEST, DYN_HOST = "10.215.7.2", "10.215.7.1"
LEFTOVER = ["tunnel_id", "900", "peer_tunnel_id", "901", "encap", "udp", "local", PEER_GUEST,
            "remote", PEER_HOST, "udp_sport", "5900", "udp_dport", "5901"]


def _cli(*argv: str) -> dict[str, Any]:
    """pyl2tp's CLI in this process (a python start costs seconds in the guest)."""
    import contextlib
    import io

    from pyl2tp.cli.main import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(["--socket", DYN_SOCKET, *argv])
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}


def _start_daemon(log: Path) -> subprocess.Popen[bytes]:
    Path(DYN_SOCKET).unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyl2tp.cli.main", "daemon", "--socket", DYN_SOCKET,
         "--log-level", "info"], stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not Path(DYN_SOCKET).exists():
        time.sleep(0.1)
    return proc


def _wait(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def dynamic_mode() -> None:
    """``auto`` picks the kernel; a dynamic L2TPv3 Ethernet call to the host carries pings;
    ``--kernel`` shows what ``ip l2tp`` shows; a tunnel deleted with ``ip l2tp`` leaves the
    daemon (which clears it with the peer); a kill -9 leaves an API tunnel in the kernel that
    the next start deletes."""
    log = Path("/tmp/dyn.log")
    out: dict[str, Any] = {}
    proc = _start_daemon(log)
    out["version"] = json.loads(_cli("version", "-j")["out"] or "{}")
    dial = _cli("dial", "peer", PEER_HOST, "version", "3", "encap", "udp", "secret",
                DYN_SECRET, "host_name", "guest")
    out["dial"] = dial
    tid = int(dial["out"].split()[1]) if dial["rc"] == 0 else 0

    def state() -> str:
        conns = json.loads(_cli("control", "show", "-j")["out"] or "[]")
        return next((c["state"] for c in conns if c["tunnel_id"] == tid), "gone")
    out["established"] = _wait(lambda: state() == "established")
    out["call"] = _cli("call", "tunnel_id", str(tid), "pw_type", "eth", "ifname", "kdyn0")
    out["device"] = _wait(lambda: Path("/sys/class/net/kdyn0").exists())
    sh("ip", "addr", "add", f"{DYN_GUEST}/24", "dev", "kdyn0")
    sh("ip", "link", "set", "kdyn0", "up")
    _wait(lambda: sh("ping", "-c", "1", "-W", "1", DYN_HOST).returncode == 0, 30)
    out["ping"] = sh("ping", "-c", "5", "-i", "0.2", "-W", "2", DYN_HOST).returncode
    out["ping_big"] = sh("ping", "-c", "3", "-s", "1300", "-W", "2", DYN_HOST).returncode
    out["link"] = json.loads(sh("ip", "-d", "-j", "link", "show", "kdyn0").stdout or "[]")
    out["ip_tunnel"] = sh("ip", "l2tp", "show", "tunnel").stdout
    out["ip_session"] = sh("ip", "l2tp", "show", "session").stdout
    out["kernel_tunnel"] = _cli("--kernel", "show", "tunnel")
    out["kernel_session"] = _cli("--kernel", "show", "session")
    out["sessions"] = json.loads(_cli("-j", "-s", "show", "session")["out"] or "[]")
    # --kernel creates, modifies and deletes as ip l2tp does, beside the daemon (which
    # leaves a tunnel it did not make alone), and fails as ip l2tp fails.
    out["kx"] = {
        "add": _cli("--kernel", "add", "tunnel", "tunnel_id", "700", "peer_tunnel_id", "701",
                    "encap", "udp", "local", PEER_GUEST, "remote", PEER_HOST, "udp_sport",
                    "5700", "udp_dport", "5701"),
        "add_session": _cli("--kernel", "add", "session", "tunnel_id", "700", "session_id",
                            "7", "peer_session_id", "8", "name", "kx0"),
        "set": _cli("--kernel", "set", "session", "tunnel_id", "700", "session_id", "7",
                    "seq", "both"),
        "shown": sh("ip", "-j", "l2tp", "show", "session").stdout,
        "daemon_tunnels": json.loads(_cli("-j", "show", "tunnel")["out"] or "[]"),
        "del": _cli("--kernel", "del", "tunnel", "tunnel_id", "700"),
        "after_del": sh("ip", "l2tp", "show", "tunnel", "tunnel_id", "700").stdout,
        "del_missing": _cli("--kernel", "del", "tunnel", "tunnel_id", "700"),
        "ip_del_missing": sh("ip", "l2tp", "del", "tunnel", "tunnel_id", "700").stderr,
    }
    # Deleted behind the daemon's back: the kernel's notification reaches the daemon, which
    # clears the connection. Only the control plane is asked meanwhile (control show does
    # not read the kernel's tables), so the notification, not a dump, must have done it.
    out["external_del"] = sh("ip", "l2tp", "del", "tunnel", "tunnel_id", str(tid)).returncode
    _wait(lambda: state() != "established", 8)  # the backstop poll would take 10 s
    out["conn_after_external"] = state()
    out["after_external"] = json.loads(_cli("-j", "show", "tunnel")["out"] or "[]")
    time.sleep(2)  # the StopCCN's acknowledgement
    # An API tunnel is the kernel's own (unmanaged): it outlives a killed daemon ...
    out["add_leftover"] = _cli("add", "tunnel", *LEFTOVER)
    proc.kill()
    proc.wait()
    out["after_kill"] = sh("ip", "l2tp", "show", "tunnel").stdout
    # ... until the next start.
    proc = _start_daemon(log)
    out["after_restart"] = sh("ip", "l2tp", "show", "tunnel").stdout
    proc.terminate()
    proc.wait(timeout=30)
    out["log"] = log.read_text()
    emit("DYNAMIC", out)


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "mgmt":
        asyncio.run(mgmt(argv[1]))
    elif mode == "managed":
        asyncio.run(managed())
    elif mode == "peer":
        asyncio.run(peer_mode())
    elif mode == "daemon":
        return daemon_mode(argv[1:])
    elif mode == "dynamic":
        dynamic_mode()
    elif mode == "has-l2tp":
        from pyl2tp.dataplane.genl_l2tp import kernel_has_l2tp

        emit("HAS_L2TP", {"before": os.path.exists("/sys/module/l2tp_netlink"),
                          "result": kernel_has_l2tp(),
                          "after": {m: os.path.exists(f"/sys/module/{m}") for m in
                                    ("l2tp_netlink", "l2tp_eth", "l2tp_ip", "l2tp_ip6",
                                     "l2tp_ppp")}})
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
