"""``pyl2tp capture``: record a tunnel's packets to a pcap file that Wireshark and tshark read.

Why it lives in the CLI and not in the daemon: a capture must cost the data path nothing. The
command opens its own ``AF_PACKET`` socket in the namespace it runs in (run it with ``ip netns
exec NS`` like every other ``pyl2tp`` command, which also finds NS's daemon), so the daemon
forwards packets exactly as before while the kernel hands copies to this process. The daemon
only answers two ordinary dumps: which tunnels exist (``tunnel_get``: addresses, ports,
encapsulation) and which sockets it listens on (``endpoint_stats``).

Two filters keep the copies cheap and exact:

* a classic BPF program attached to the socket passes only IPv4/IPv6 packets carrying UDP or
  IP protocol 115 (and IPv6 packets whose extension headers hide the protocol), so the rest of
  the host's traffic never reaches userspace;
* :class:`Selector` then keeps the packets of the chosen tunnels: for UDP the tunnel's
  local/peer address and port pair in either direction, for IP encapsulation the address pair
  with protocol 115. Without tunnel ids it keeps every L2TP packet: UDP to or from port 1701
  or any port the daemon has a socket on (refreshed while capturing, so a tunnel dialled
  after the capture started is seen), and all of protocol 115. Fragments follow the first
  fragment of their datagram.

Packets are written as ``LINKTYPE_LINUX_SLL`` (tcpdump's ``-i any`` format) because one
capture spans interfaces of different link types. tshark decodes L2TP on UDP port 1701 and on
IP protocol 115 by itself; for static tunnels on other ports add ``-d udp.port==PORT,l2tp``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import ipaddress
import signal
import socket
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, BinaryIO, TextIO

from pyl2tp.pcap import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    IPPROTO_L2TP,
    IPPROTO_UDP,
    L2TP_PORT,
    LINKTYPE_LINUX_SLL,
    IpInfo,
    PcapWriter,
    ip_info,
    linux_sll_header,
)
from pyl2tp.wire.errors import ParseError
from pyl2tp.wire.header import is_control
from pyl2tp.wire.message import decode_message

Request = Callable[[str, dict[str, Any], bool], Any]

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
SNAPLEN = 262144
REFRESH_INTERVAL = 2.0
MAX_FRAGMENTED = 1024

USAGE = """\
Usage: pyl2tp capture [ tunnel_id ID [ ID ... ] ] [ -w FILE ] [ -c COUNT ] [ -i IFACE ]
                      [ --duration SECONDS ]
  tunnel_id  capture only these tunnels (default: every L2TP packet)
  -w FILE    write a pcap file ("-" for stdout, e.g. into "wireshark -k -i -");
             without -w a one-line summary per packet is printed
  -c COUNT   stop after COUNT packets
  -i IFACE   capture on one interface (default: all of the namespace's interfaces)
  --duration stop after SECONDS
"""


class CaptureError(Exception):
    """A user-facing failure (no permission, unknown interface, unwritable file): one line."""


class CaptureUsage(CaptureError):
    """A bad command line."""


# -- BPF -------------------------------------------------------------------------------------

_BPF_LD_W_ABS = 0x20
_BPF_LDB_ABS = 0x30
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06
_SKF_AD_PROTOCOL = 0xFFFFF000  # SKF_AD_OFF + SKF_AD_PROTOCOL: ntohs(skb->protocol)


def bpf_program(snaplen: int = SNAPLEN) -> list[tuple[int, int, int, int]]:
    """Classic BPF for an ``AF_PACKET``/``SOCK_DGRAM`` socket (offsets start at the network
    header): accept IPv4 UDP/115, IPv6 UDP/115 or with an extension header first; drop the
    rest. Instructions are ``(code, jt, jf, k)``."""
    v6_next = (IPPROTO_UDP, IPPROTO_L2TP, 0, 43, 44, 51, 60)
    # (code, label if true, label if false, k); None falls through to the next instruction.
    asm: list[tuple[str | None, int, str | None, str | None, int]] = [
        (None, _BPF_LD_W_ABS, None, None, _SKF_AD_PROTOCOL),
        (None, _BPF_JEQ_K, "v4", None, ETHERTYPE_IPV4),
        (None, _BPF_JEQ_K, "v6", "drop", ETHERTYPE_IPV6),
        ("v4", _BPF_LDB_ABS, None, None, 9),
        (None, _BPF_JEQ_K, "accept", None, IPPROTO_UDP),
        (None, _BPF_JEQ_K, "accept", "drop", IPPROTO_L2TP),
        ("v6", _BPF_LDB_ABS, None, None, 6),
        *((None, _BPF_JEQ_K, "accept", "drop" if i == len(v6_next) - 1 else None, nxt)
          for i, nxt in enumerate(v6_next)),
        ("accept", _BPF_RET_K, None, None, snaplen),
        ("drop", _BPF_RET_K, None, None, 0),
    ]
    where = {label: i for i, (label, *_rest) in enumerate(asm) if label}

    def rel(i: int, label: str | None) -> int:
        return 0 if label is None else where[label] - i - 1

    return [(code, rel(i, jt), rel(i, jf), k) for i, (_l, code, jt, jf, k) in enumerate(asm)]


def run_bpf(prog: Sequence[tuple[int, int, int, int]], packet: bytes, protocol: int) -> int:
    """A tiny interpreter of the instructions :func:`bpf_program` uses, so unit tests can check
    the program without a socket. Returns the accepted length (0 = dropped)."""
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == _BPF_LD_W_ABS:
            if k != _SKF_AD_PROTOCOL:
                raise ValueError("only the protocol ancillary load is used")
            acc = protocol
        elif code == _BPF_LDB_ABS:
            if k >= len(packet):
                return 0
            acc = packet[k]
        elif code == _BPF_JEQ_K:
            pc += jt if acc == k else jf
        elif code == _BPF_RET_K:
            return k
        else:
            raise ValueError(f"unexpected BPF code {code:#x}")
        pc += 1


def attach_filter(sock: socket.socket, prog: Sequence[tuple[int, int, int, int]]) -> None:
    """``SO_ATTACH_FILTER`` with a ``struct sock_fprog`` pointing at the instructions."""
    raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(raw)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


# -- selecting packets -------------------------------------------------------------------------


def _norm(address: str) -> str | None:
    """Canonical text of an address; None for a wildcard (matches any local address)."""
    ip = ipaddress.ip_address(address)
    return None if ip.is_unspecified else str(ip)


@dataclass
class Selector:
    """Which packets belong to the capture. ``udp`` holds (local, local port, remote, remote
    port) of chosen UDP tunnels, ``ip`` (local, remote) of chosen IP-encapsulated ones; with
    ``everything`` set, any UDP packet to or from a port in ``ports`` and any protocol-115
    packet is kept instead."""

    everything: bool = True
    ports: set[int] = field(default_factory=lambda: {L2TP_PORT})
    udp: set[tuple[str | None, int, str, int]] = field(default_factory=set)
    ip: set[tuple[str | None, str]] = field(default_factory=set)
    _fragments: OrderedDict[tuple[str, str, int], None] = field(default_factory=OrderedDict)

    @classmethod
    def for_tunnels(cls, tunnels: Iterable[dict[str, Any]]) -> Selector:
        sel = cls(everything=False, ports=set())
        for t in tunnels:
            local = t.get("ip_saddr") or t.get("ip6_saddr")
            remote = t.get("ip_daddr") or t.get("ip6_daddr")
            if not local or not remote:
                continue
            if t.get("encap_type", 0) == 0:
                sel.udp.add((_norm(local), int(t.get("udp_sport", 0)), str(_norm(remote)),
                             int(t.get("udp_dport", 0))))
            else:
                sel.ip.add((_norm(local), str(_norm(remote))))
        return sel

    def _udp_match(self, info: IpInfo) -> bool:
        if self.everything:
            return info.sport in self.ports or info.dport in self.ports
        for local, lport, remote, rport in self.udp:
            if (info.dst == remote and info.dport == rport and info.sport == lport
                    and local in (None, info.src)):
                return True
            if (info.src == remote and info.sport == rport and info.dport == lport
                    and local in (None, info.dst)):
                return True
        return False

    def _ip_match(self, info: IpInfo) -> bool:
        if self.everything:
            return True
        return any((info.dst == remote and local in (None, info.src))
                   or (info.src == remote and local in (None, info.dst))
                   for local, remote in self.ip)

    def match(self, packet: bytes) -> bool:
        """Whether ``packet`` (an IP packet) belongs to the capture."""
        info = ip_info(packet)
        if info is None:
            return False
        if info.frag_id is not None and not info.first:
            return (info.src, info.dst, info.frag_id) in self._fragments
        if info.proto == IPPROTO_UDP:
            ok = info.sport is not None and self._udp_match(info)
        elif info.proto == IPPROTO_L2TP:
            ok = self._ip_match(info)
        else:
            ok = False
        if ok and info.frag_id is not None:
            self._fragments[(info.src, info.dst, info.frag_id)] = None
            while len(self._fragments) > MAX_FRAGMENTED:
                self._fragments.popitem(last=False)
        return ok

    def describe(self) -> str:
        if self.everything:
            return ("every L2TP packet (UDP ports " + ", ".join(map(str, sorted(self.ports)))
                    + "; IP protocol 115)")
        parts = [f"udp {lo or '*'}:{lp} <-> {r}:{rp}" for lo, lp, r, rp in sorted(
            self.udp, key=str)]
        parts += [f"ip {lo or '*'} <-> {r}" for lo, r in sorted(self.ip, key=str)]
        return "; ".join(parts)


# -- describing packets ------------------------------------------------------------------------


def summarize(packet: bytes, info: IpInfo) -> str:
    """One line about an L2TP packet, tcpdump style: addresses, then what L2TP carries."""
    def ep(addr: str, port: int | None) -> str:
        if port is None:
            return addr
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    head = f"{ep(info.src, info.sport)} > {ep(info.dst, info.dport)}"
    if info.frag_id is not None and not info.first:
        return f"{head} fragment"
    l2tp, udp = _l2tp_payload(packet, info)
    if l2tp is None:
        return head
    return f"{head} {describe_l2tp(l2tp, udp=udp)}"


def _l2tp_payload(packet: bytes, info: IpInfo) -> tuple[bytes | None, bool]:
    if info.proto == IPPROTO_UDP:
        return packet[info.offset + 8:], True
    if info.proto == IPPROTO_L2TP:
        return packet[info.offset:], False
    return None, False


def describe_l2tp(data: bytes, *, udp: bool) -> str:
    """``L2TPv3 SCCRQ tunnel 0 Ns 0 Nr 0`` or ``L2TPv2 data tunnel 5 session 9, 98 octets``."""
    try:
        if not udp:
            if len(data) < 4:
                return "L2TPv3/IP (short)"
            sid = struct.unpack_from("!I", data)[0]
            if sid:
                return f"L2TPv3 data session {sid}, {len(data)} octets"
            return _control(data, 4)
        if is_control(data):
            return _control(data, 0)
        if len(data) >= 2 and data[1] & 0x0F == 3 and len(data) >= 8:
            sid = struct.unpack_from("!I", data, 4)[0]
            return f"L2TPv3 data session {sid}, {len(data)} octets"
        if len(data) >= 6 and data[1] & 0x0F == 2:
            flags = data[0]
            pos = 4 if flags & 0x40 else 2
            tid, sid = struct.unpack_from("!HH", data, pos)
            return f"L2TPv2 data tunnel {tid} session {sid}, {len(data)} octets"
    except (struct.error, IndexError):
        pass
    return f"L2TP? {len(data)} octets"


def _control(data: bytes, offset: int) -> str:
    try:
        msg = decode_message(data, offset=offset, validate=False)
    except ParseError as exc:
        partial = getattr(exc, "message", None)
        if partial is None:
            return f"L2TP control (malformed: {exc})"
        msg = partial
    session = f" session {msg.session_id}" if msg.version == 2 else ""
    return (f"L2TPv{msg.version} {msg.name} tunnel {msg.tunnel_id}{session} "
            f"Ns {msg.ns} Nr {msg.nr}")


# -- the command -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    tunnel_ids: list[int] = []
    rest: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        if args[i] in ("tunnel_id", "tid"):
            i += 1
            start = i
            while i < len(args) and args[i].isdigit():
                tunnel_ids.append(int(args[i]))
                i += 1
            if i == start:
                raise CaptureUsage('"tunnel_id" needs at least one id')
            continue
        rest.append(args[i])
        i += 1
    p = argparse.ArgumentParser(prog="pyl2tp capture", add_help=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-w", dest="write", default=None)
    p.add_argument("-c", dest="count", type=int, default=None)
    p.add_argument("-i", dest="iface", default=None)
    p.add_argument("--duration", type=float, default=None)
    try:
        ns, extra = p.parse_known_args(rest)
    except SystemExit:
        raise CaptureUsage("bad option (see pyl2tp capture help)") from None
    if extra:
        if extra == ["help"]:
            ns.help = True
        else:
            raise CaptureUsage(f'unknown argument "{extra[0]}"')
    if ns.count is not None and ns.count < 1:
        raise CaptureUsage("-c needs a count of at least 1")
    if ns.duration is not None and not ns.duration > 0:
        raise CaptureUsage("--duration needs a positive number of seconds")
    ns.tunnel_ids = tunnel_ids
    return ns


def build_selector(request: Request, tunnel_ids: Sequence[int]) -> Selector:
    """The selector for the chosen tunnels (an unknown id is the API's one-line ENODEV)."""
    if tunnel_ids:
        tunnels = [request("tunnel_get", {"conn_id": tid}, False) for tid in tunnel_ids]
        return Selector.for_tunnels(tunnels)
    sel = Selector()
    refresh_ports(sel, request)
    return sel


def refresh_ports(sel: Selector, request: Request) -> None:
    """Every UDP port the daemon has a socket on, plus 1701 and the tunnels' ports."""
    ports = {L2TP_PORT}
    for ep in request("endpoint_stats", {}, False):
        if ep.get("encap") == "udp" and ep.get("port"):
            ports.add(int(ep["port"]))
    for t in request("tunnel_get", {}, True):
        if t.get("encap_type", 0) == 0:
            ports.update(p for p in (t.get("udp_sport"), t.get("udp_dport")) if p)
    sel.ports = ports


def open_socket(iface: str | None) -> socket.socket:
    """An ``AF_PACKET`` datagram socket with the BPF prefilter, bound to ``iface`` or to all.

    Whatever the socket queued before its filter and binding took effect is drained, so the
    capture starts with the filter in force (the userspace selector checks every packet again
    anyway)."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    except PermissionError:
        raise CaptureError("packet capture needs root (CAP_NET_RAW)") from None
    try:
        attach_filter(sock, bpf_program())
        if iface:
            sock.bind((iface, ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENODEV:
            raise CaptureError(f"no interface {iface!r} in this network namespace") from None
        raise CaptureError(f"cannot capture: {exc.strerror or exc}") from None
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            sock.recv(SNAPLEN)
    sock.settimeout(0.25)
    return sock


def run(argv: Sequence[str], request: Request, out: TextIO = sys.stdout,
        err: TextIO = sys.stderr) -> int:
    """Run ``pyl2tp capture``; CaptureError (and the API's L2tpError) are one-line errors."""
    args = parse_args(argv)
    if args.help:
        out.write(USAGE)
        return 0
    sel = build_selector(request, args.tunnel_ids)
    sock = open_socket(args.iface)
    stream: BinaryIO | None = None
    writer: PcapWriter | None = None
    if args.write is not None:
        try:
            stream = sys.stdout.buffer if args.write == "-" else open(args.write, "wb")  # noqa: SIM115
        except OSError as exc:
            sock.close()
            raise CaptureError(f"{args.write}: {exc.strerror}") from None
        writer = PcapWriter(stream, LINKTYPE_LINUX_SLL, snaplen=SNAPLEN)
        writer.flush()
    stop = [False]

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop[0] = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    err.write(f"pyl2tp capture: listening on {args.iface or 'all interfaces'}, "
              f"{sel.describe()}\n")
    err.flush()
    count = 0
    deadline = None if args.duration is None else time.monotonic() + args.duration
    next_refresh = time.monotonic() + REFRESH_INTERVAL
    try:
        while not stop[0]:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if sel.everything and now >= next_refresh:
                refresh_ports(sel, request)
                next_refresh = now + REFRESH_INTERVAL
            try:
                packet, addr = sock.recvfrom(SNAPLEN)
            except TimeoutError:
                continue
            except InterruptedError:
                continue
            ts = time.time()
            ifname, proto, pkttype, hatype, hwaddr = addr[:5]
            if pkttype == PACKET_OUTGOING and hatype == ARPHRD_LOOPBACK:
                continue  # the loopback shows each packet twice; keep the incoming copy
            if proto not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6) or not sel.match(packet):
                continue
            count += 1
            if writer is not None:
                writer.write(linux_sll_header(proto, pkttype=pkttype, hatype=hatype,
                                              addr=hwaddr) + packet, ts)
                writer.flush()
            else:
                info = ip_info(packet)
                if info is not None:
                    stamp = time.strftime("%H:%M:%S", time.localtime(ts)) + \
                        f".{int((ts % 1) * 1e6):06d}"
                    out.write(f"{stamp} {ifname} {summarize(packet, info)}\n")
                    out.flush()
            if args.count is not None and count >= args.count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
        if writer is not None and stream is not None:
            writer.close()
            if stream is not sys.stdout.buffer:
                stream.close()
    err.write(f"pyl2tp capture: {count} packet{'s' if count != 1 else ''} captured\n")
    return 0


__all__ = ["USAGE", "CaptureError", "CaptureUsage", "Selector", "attach_filter", "bpf_program",
           "describe_l2tp", "parse_args", "run", "run_bpf", "summarize"]
