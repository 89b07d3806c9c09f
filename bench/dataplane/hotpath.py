"""Per-packet cost of pyl2tp's data-plane hot path, piece by piece, next to leaner variants.

    python bench/dataplane/hotpath.py [--packets N]

Runs in a throwaway network namespace (it re-executes itself there) with a TAP nobody reads as
the tunnel peer's route, so a send does the kernel's whole transmit path (route lookup, UDP,
IP, device) and the packet then vanishes: nothing else runs, and the numbers are the cost of
the calls themselves. pyl2tp's own objects are used (a real UserspaceBackend, Registry, Tunnel,
Session and EthPseudowire with its TAP); the variants are what run.py's floor and the
optimisation suggestions do instead. Nanoseconds per packet, best of 5 repetitions.

A UDP tunnel with sessions sends and receives on its connected peer socket; the rows marked
``shared socket`` detach it for the measurement, which is the path every packet took before
peer sockets existed (and still takes for a tunnel beyond the peer-socket budget). The ``IP``
rows are an L2TPv3-over-IP session on the raw IPv4 socket, fed by a raw socket of the peer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCAL, PEER = "10.9.0.1", "10.9.0.2"  # PEER sits behind an unread TAP: sends go nowhere
SINK_PORT = 5000
IPPROTO_L2TP = 115


def best_ns(fn: Callable[[], None], n: int, reps: int = 5) -> float:
    """Best time per call of ``fn`` (itself a loop over ``n`` packets), in ns per packet."""
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best


class StubSocket:
    """Stands in for a socket: sends vanish, receives hand out one datagram ``left`` times."""

    def __init__(self, item: bytes = b"", left: int = 0,
                 addr: tuple[str, int] = (PEER, SINK_PORT)) -> None:
        self.item = item
        self.addr = addr
        self.left = left

    def send(self, data: Any) -> int:
        return len(data)

    def sendto(self, data: Any, addr: Any) -> int:
        return len(data)

    def recv_into(self, buf: bytearray) -> int:
        if self.left <= 0:
            raise BlockingIOError
        self.left -= 1
        n = len(self.item)
        buf[:n] = self.item
        return n

    def recvfrom(self, _size: int) -> tuple[bytes, tuple[str, int]]:
        if self.left <= 0:
            raise BlockingIOError
        self.left -= 1
        return self.item, self.addr


def inside(n: int) -> None:
    from pyl2tp.dataplane import recv, tuntap
    from pyl2tp.dataplane.model import Session, Tunnel
    from pyl2tp.dataplane.registry import Registry
    from pyl2tp.dataplane.userspace import UserspaceBackend
    from pyl2tp.ppp.link import _IPV4_HDR, PppLink
    from pyl2tp.pw.ppp import HDLC_HEADER, PppChannel
    from pyl2tp.wire.constants import EncapType, L2SpecType

    # The peer's route: a TAP nobody reads. Its queue fills once, then every packet is dropped
    # at the device: the sender pays the whole transmit path and nothing more.
    sink = tuntap.open_tap("d0", up=True)
    subprocess.run(["ip", "addr", "add", f"{LOCAL}/24", "dev", "d0"], check=True)
    subprocess.run(["ip", "neigh", "replace", PEER, "lladdr", "02:00:00:00:00:09", "dev", "d0",
                    "nud", "permanent"], check=True)

    loop = asyncio.new_event_loop()
    backend = UserspaceBackend(loop)
    reg = Registry()
    backend.attach(reg)
    tunnel = reg.add_tunnel(Tunnel(1, 2, 3, EncapType.UDP, family=socket.AF_INET, local=LOCAL,
                                   remote=PEER, udp_sport=5000, udp_dport=SINK_PORT))
    session = reg.add_session(Session(tunnel, 1, 1, 5, l2spec_type=L2SpecType.DEFAULT,
                                      ifname="pw0"))
    ip_tunnel = reg.add_tunnel(Tunnel(3, 4, 3, EncapType.IP, family=socket.AF_INET,
                                      local=LOCAL, remote=PEER))
    ip_session = reg.add_session(Session(ip_tunnel, 2, 2, 5, l2spec_type=L2SpecType.DEFAULT,
                                         ifname="pw1"))
    for dev in ("pw0", "pw1"):
        subprocess.run(["ip", "link", "set", dev, "up"], check=True)
    ep = tunnel.endpoint
    ip_ep = ip_tunnel.endpoint
    peer = ep.peers[tunnel.peer_addr]
    results: list[tuple[str, str, float]] = []

    def shared_only() -> None:
        """Detach the tunnel from its peer socket: everything goes through ``ep.sock``."""
        tunnel.sock = None
        peer.users -= 1
        backend.close_peer_socket(ep, peer)

    def run_size(size: int) -> None:
        nonlocal peer
        frame = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + bytes(size - 14)
        hdr = b"\x00\x03\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00"
        addr = (PEER, SINK_PORT)
        sock = ep.sock
        conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        conn.connect(addr)
        buf = bytearray(65600)
        buf[:12] = hdr
        mv = memoryview(buf)
        mv[12:12 + size] = frame
        rng = range(n)
        label = f"{size}B"

        # -- transmit: one frame from the device to the tunnel socket ------------------------
        transmit = backend.transmit

        def tx_pyl2tp() -> None:
            for _ in rng:
                transmit(session, frame)

        def tx_pyl2tp_python_only() -> None:
            real = tunnel.sock
            tunnel.sock = StubSocket()
            try:
                for _ in rng:
                    transmit(session, frame)
            finally:
                tunnel.sock = real

        def tx_pyl2tp_shared() -> None:
            real = tunnel.sock
            tunnel.sock = None
            try:
                for _ in rng:
                    transmit(session, frame)
            finally:
                tunnel.sock = real

        sendto = sock.sendto
        send = conn.send

        def tx_sendto_concat() -> None:
            for _ in rng:
                sendto(hdr + frame, addr)

        whole = mv[:12 + size]

        def tx_sendto_buffer() -> None:
            for _ in rng:
                sendto(whole, addr)

        def tx_send_connected() -> None:
            for _ in rng:
                send(whole)

        def tx_ip() -> None:
            for _ in rng:
                transmit(ip_session, frame)

        for what, fn in (("tx pyl2tp backend.transmit (header, concat, send on the peer "
                          "socket, counters)", tx_pyl2tp),
                         ("tx   of which Python only (socket stubbed out)",
                          tx_pyl2tp_python_only),
                         ("tx pyl2tp backend.transmit on the shared socket (sendto)",
                          tx_pyl2tp_shared),
                         ("tx sendto(hdr + frame, addr) on the shared socket",
                          tx_sendto_concat),
                         ("tx sendto(preallocated buffer, addr)", tx_sendto_buffer),
                         ("tx send(buffer) on a connected socket", tx_send_connected),
                         ("tx pyl2tp backend.transmit, IP (sendto on the raw socket)",
                          tx_ip)):
            results.append((label, what, best_ns(fn, n)))

        # PPP framing of an IP packet read from a TUN, up to the L2TP header (the send itself
        # stubbed out): before, frame_ip, PppChannel.send and transmit each concatenated.
        fixed: bytes = session.tx_header or b""

        class _HeaderOnly:
            def transmit(self, _s: Session, payload: bytes) -> None:
                fixed + payload

        class _Link:  # what PppLink.ip_protocol reads
            ipv4_open = ipv6_open = True
            counters = None

        channel = PppChannel(_HeaderOnly(), session)  # type: ignore[arg-type]
        session.deliver = session.pw._deliver  # PppChannel took it over; the TAP gets it back
        backend_stub = _HeaderOnly()
        packet = b"\x45" + frame[15:]  # an IPv4 packet, as a TUN hands it over

        def frame_ip_before(link: _Link, packet: bytes) -> bytes | None:
            version = packet[0] >> 4 if packet else 0
            if version == 4 and link.ipv4_open:
                return _IPV4_HDR + packet
            return None

        def send_before(frame: bytes) -> None:
            backend_stub.transmit(session, HDLC_HEADER + frame)

        def ppp_before() -> None:
            link = _Link()
            for _ in rng:
                framed = frame_ip_before(link, packet)
                if framed is not None:
                    send_before(framed)

        def ppp_now() -> None:
            ip_protocol = PppLink.ip_protocol.__get__(_Link())
            send_protocol = channel.send_protocol
            for _ in rng:
                protocol = ip_protocol(packet)
                if protocol is not None:
                    send_protocol(protocol, packet)

        results.append((label, "py PPP framing before: frame_ip, send, transmit (3 copies)",
                        best_ns(ppp_before, n)))
        results.append((label, "py PPP framing now: ip_protocol, send_protocol, transmit "
                        "(2 copies)", best_ns(ppp_now, n)))

        # -- device reads (frames queued in the TAP by a packet socket) ----------------------
        dev = session.pw.dev
        pkt = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        pkt.bind(("pw0", 0))
        chunk = 400  # below the TAP's 500-frame queue

        def timed_reads(read: Callable[[], object]) -> float:
            best = float("inf")
            for _ in range(5):
                total = 0
                for _ in range(max(1, n // chunk)):
                    for _ in range(chunk):
                        pkt.send(frame)
                    t = time.perf_counter_ns()
                    for _ in range(chunk):
                        read()
                    total += time.perf_counter_ns() - t
                best = min(best, total / (max(1, n // chunk) * chunk))
            return best

        tail = mv[12:]
        fd = dev.fd
        readv = os.readv
        results.append((label, "rd pyl2tp NetDevice.read (os.read, 64 KiB allocation)",
                        timed_reads(dev.read)))
        results.append((label, "rd os.readv into a preallocated buffer",
                        timed_reads(lambda: readv(fd, [tail]))))

        # -- receive: datagrams queued in a socket, drained the way pyl2tp does --------------
        # Datagrams must come from the tunnel's peer address and port: send them from a socket
        # bound to PEER:SINK_PORT, which needs PEER local; use a second address on d0.
        subprocess.run(["ip", "addr", "replace", f"{PEER}/32", "dev", "d0"], check=True)
        src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        src.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        src.bind((PEER, SINK_PORT))
        payload = hdr + frame
        delivered = [0]
        real_deliver = session.deliver

        def timed_drain(drain: Callable[[], None], per_call: int,
                        send_one: Callable[[], object] = lambda: src.sendto(payload,
                                                                          (LOCAL, 5000))
                        ) -> float:
            best = float("inf")
            rchunk = 1024
            for _ in range(5):
                total = 0
                for _ in range(max(1, n // rchunk)):
                    for _ in range(rchunk):
                        send_one()
                    t = time.perf_counter_ns()
                    for _ in range(rchunk // per_call):
                        drain()
                    total += time.perf_counter_ns() - t
                best = min(best, total / (max(1, n // rchunk) * rchunk))
            return best

        def deliver_stub(p: object) -> None:
            delivered[0] += 1

        def stand_in_cost(method: str) -> float:
            """What the stand-in's own receive call costs, subtracted from the rows below."""
            stub = StubSocket(payload, n)
            call = getattr(stub, method)
            arg: Any = backend._rx_buf if method == "recv_into" else 65535

            def loop_calls() -> None:
                stub.left = n
                for _ in rng:
                    call(arg)
            return best_ns(loop_calls, n)

        def python_only(make: Callable[[], None], path: str, method: str) -> None:
            results.append((label, f"rx   Python only, {path} (stand-in's cost subtracted, "
                            "deliver stubbed)", best_ns(make, n) - stand_in_cost(method)))

        peer = ep.peers[tunnel.peer_addr]
        psock = peer.sock
        psock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        results.append((label, "rx pyl2tp _udp_readable(peer socket) -> plain path -> "
                        "TAP write", timed_drain(lambda: backend._udp_readable(ep, peer), 64)))
        session.deliver = deliver_stub
        results.append((label, "rx   same, TAP write stubbed out",
                        timed_drain(lambda: backend._udp_readable(ep, peer), 64)))

        def rx_python_only_peer() -> None:
            real = peer.sock
            peer.sock = tunnel.sock = StubSocket(payload, n)
            try:
                for _ in range(n // 64 + 1):
                    backend._udp_readable(ep, peer)
            finally:
                peer.sock = tunnel.sock = real

        python_only(rx_python_only_peer, "peer socket, plain path", "recv_into")

        def rx_python_only_general() -> None:
            session.rx_plain = -1
            try:
                rx_python_only_peer()
            finally:
                recv.set_fast_path(session)

        python_only(rx_python_only_general, "peer socket, general path", "recv_into")

        def rx_python_only_shared() -> None:
            real_sock, real_tsock = ep.sock, tunnel.sock
            ep.sock = StubSocket(payload, n)
            tunnel.sock = None
            try:
                for _ in range(n // 64 + 1):
                    backend._udp_readable(ep)
            finally:
                ep.sock, tunnel.sock = real_sock, real_tsock

        python_only(rx_python_only_shared, "shared socket, plain path", "recvfrom")
        session.deliver = real_deliver

        rbuf = bytearray(65600)
        rmv = memoryview(rbuf)
        recv_into = psock.recv_into
        write = os.write

        def floor_drain() -> None:
            for _ in range(64):
                k = recv_into(rbuf)
                write(fd, rmv[12:k])

        results.append((label, "rx recv_into + os.write(memoryview) (the floor)",
                        timed_drain(floor_drain, 64)))

        def recv_into_only() -> None:
            for _ in range(64):
                recv_into(rbuf)

        results.append((label, "rx   recv_into(buffer) alone", timed_drain(recv_into_only, 64)))

        # The shared socket: no peer socket, so the datagrams land on ep.sock.
        shared_only()
        session.deliver = real_deliver
        results.append((label, "rx pyl2tp _udp_readable(shared socket) -> plain path -> "
                        "TAP write", timed_drain(lambda: backend._udp_readable(ep), 64)))
        recvfrom = sock.recvfrom

        def recvfrom_only() -> None:
            for _ in range(64):
                recvfrom(65535)

        results.append((label, "rx   recvfrom(65535) alone (the shared socket)",
                        timed_drain(recvfrom_only, 64)))
        backend._attach_peer_socket(tunnel)
        peer = ep.peers[tunnel.peer_addr]

        # -- L2TPv3 over IP: the raw IPv4 socket ---------------------------------------------
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_L2TP)
        raw.bind((PEER, 0))
        ip_payload = b"\x00\x00\x00\x02\x00\x00\x00\x00" + frame
        ip_ep.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)

        def send_ip() -> object:
            return raw.sendto(ip_payload, (LOCAL, 0))

        results.append((label, "rx pyl2tp _ip_readable -> plain path -> TAP write",
                        timed_drain(lambda: backend._ip_readable(ip_ep), 64, send_ip)))
        ip_deliver = ip_session.deliver
        ip_session.deliver = deliver_stub
        results.append((label, "rx   same, TAP write stubbed out",
                        timed_drain(lambda: backend._ip_readable(ip_ep), 64, send_ip)))
        ip_session.deliver = ip_deliver

        data = payload
        now = time.monotonic()
        session.deliver = deliver_stub

        def recv_common_only() -> None:
            for _ in rng:
                recv.recv_common(session, data, 8, 0, len(data), now)

        results.append((label, "py recv.recv_common alone (deliver stubbed)",
                        best_ns(recv_common_only, n)))
        session.deliver = real_deliver
        for s in (conn, pkt, src, raw):
            s.close()
        subprocess.run(["ip", "addr", "del", f"{PEER}/32", "dev", "d0"], check=False)

    for size in (64, 1400):
        run_size(size)

    sink.close()
    width = max(len(what) for _, what, _ in results)
    print(f"{'size':5s} {'what':{width}s} {'ns/packet':>9s}")
    for size_label, what, ns in results:
        print(f"{size_label:5s} {what:{width}s} {ns:9.0f}")


def main() -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--packets", type=int, default=20000)
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inside:
        inside(args.packets)
        return 0
    sys.path[:0] = [str(REPO)]
    from tests.support.netns import NetNS

    with NetNS("dphot") as ns:
        proc = subprocess.run(ns.exec_argv([sys.executable, __file__, "--inside", "--packets",
                                            str(args.packets)]))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
