"""Per-packet cost of pyl2tp's data-plane hot path, piece by piece, next to leaner variants.

    python bench/dataplane/hotpath.py [--packets N]

Runs in a throwaway network namespace (it re-executes itself there) with a TAP nobody reads as
the tunnel peer's route, so a send does the kernel's whole transmit path (route lookup, UDP,
IP, device) and the packet then vanishes: nothing else runs, and the numbers are the cost of
the calls themselves. pyl2tp's own objects are used (a real UserspaceBackend, Registry, Tunnel,
Session and EthPseudowire with its TAP); the variants are what run.py's floor and the
optimisation suggestions do instead. Nanoseconds per packet, best of 5 repetitions.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCAL, PEER = "10.9.0.1", "10.9.0.2"  # PEER sits behind an unread TAP: sends go nowhere
SINK_PORT = 5000


def best_ns(fn: Callable[[], None], n: int, reps: int = 5) -> float:
    """Best time per call of ``fn`` (itself a loop over ``n`` packets), in ns per packet."""
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter_ns()
        fn()
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best


def inside(n: int) -> None:
    from pyl2tp.dataplane import recv, tuntap
    from pyl2tp.dataplane.model import Session, Tunnel
    from pyl2tp.dataplane.registry import Registry
    from pyl2tp.dataplane.userspace import UserspaceBackend
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
    subprocess.run(["ip", "link", "set", "pw0", "up"], check=True)
    ep = tunnel.endpoint
    results: list[tuple[str, str, float]] = []

    def run_size(size: int) -> None:
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

        # -- transmit: one frame from the device to the tunnel socket ------------------------
        transmit = backend.transmit

        def tx_pyl2tp() -> None:
            for _ in rng:
                transmit(session, frame)

        real_sendto = ep.sendto

        def tx_pyl2tp_python_only() -> None:
            ep.sendto = lambda data, a: True  # type: ignore[method-assign]
            try:
                for _ in rng:
                    transmit(session, frame)
            finally:
                ep.sendto = real_sendto  # type: ignore[method-assign]

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

        for label, fn in (("tx pyl2tp backend.transmit (header, concat, sendto, counters)",
                           tx_pyl2tp),
                          ("tx   of which Python only (sendto stubbed out)",
                           tx_pyl2tp_python_only),
                          ("tx sendto(hdr + frame, addr) on the shared socket",
                           tx_sendto_concat),
                          ("tx sendto(preallocated buffer, addr)", tx_sendto_buffer),
                          ("tx send(buffer) on a connected socket", tx_send_connected)):
            results.append((f"{size}B", label, best_ns(fn, n)))

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
        results.append((f"{size}B", "rd pyl2tp NetDevice.read (os.read, 64 KiB allocation)",
                        timed_reads(dev.read)))
        results.append((f"{size}B", "rd os.readv into a preallocated buffer",
                        timed_reads(lambda: readv(fd, [tail]))))

        # -- receive: datagrams queued in the endpoint socket, drained the way pyl2tp does ----
        # Datagrams must come from the tunnel's peer address and port: send them from a socket
        # bound to PEER:SINK_PORT, which needs PEER local; use a second address on d0.
        subprocess.run(["ip", "addr", "replace", f"{PEER}/32", "dev", "d0"], check=True)
        src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        src.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        src.bind((PEER, SINK_PORT))
        payload = hdr + frame
        delivered = [0]
        real_deliver = session.deliver

        def timed_drain(drain: Callable[[], None], per_call: int) -> float:
            best = float("inf")
            rchunk = 1024
            for _ in range(5):
                total = 0
                for _ in range(max(1, n // rchunk)):
                    for _ in range(rchunk):
                        src.sendto(payload, (LOCAL, 5000))
                    t = time.perf_counter_ns()
                    for _ in range(rchunk // per_call):
                        drain()
                    total += time.perf_counter_ns() - t
                best = min(best, total / (max(1, n // rchunk) * rchunk))
            return best

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        results.append((f"{size}B", "rx pyl2tp _udp_readable -> recv_common -> TAP write",
                        timed_drain(lambda: backend._udp_readable(ep), 64)))

        def deliver_stub(p: bytes) -> None:
            delivered[0] += 1

        session.deliver = deliver_stub
        results.append((f"{size}B", "rx   same, TAP write stubbed out",
                        timed_drain(lambda: backend._udp_readable(ep), 64)))

        # Python only: a stand-in socket hands out the same datagram, deliver is a stub.
        class FakeSock:
            def __init__(self, item: tuple[bytes, tuple[str, int]], count: int) -> None:
                self.item = item
                self.left = count

            def recvfrom(self, _size: int) -> tuple[bytes, tuple[str, int]]:
                if self.left <= 0:
                    raise BlockingIOError
                self.left -= 1
                return self.item

        real_sock = ep.sock

        def rx_python_only() -> None:
            ep.sock = FakeSock((payload, (PEER, SINK_PORT)), n)  # type: ignore[assignment]
            try:
                for _ in range(n // 64 + 1):
                    backend._udp_readable(ep)
            finally:
                ep.sock = real_sock

        results.append((f"{size}B", "rx   Python only (socket stand-in, deliver stubbed)",
                        best_ns(rx_python_only, n)))
        session.deliver = real_deliver
        rbuf = bytearray(65600)
        rmv = memoryview(rbuf)
        recv_into = sock.recv_into
        write = os.write

        def floor_drain() -> None:
            for _ in range(64):
                k = recv_into(rbuf)
                write(fd, rmv[12:k])

        results.append((f"{size}B", "rx recv_into + os.write(memoryview) (the floor)",
                        timed_drain(floor_drain, 64)))
        recvfrom = sock.recvfrom

        def recvfrom_only() -> None:
            for _ in range(64):
                recvfrom(65535)

        results.append((f"{size}B", "rx   recvfrom(65535) alone", timed_drain(recvfrom_only, 64)))

        def recv_into_only() -> None:
            for _ in range(64):
                recv_into(rbuf)

        results.append((f"{size}B", "rx   recv_into(buffer) alone",
                        timed_drain(recv_into_only, 64)))
        data = payload
        now = time.monotonic()
        session.deliver = deliver_stub

        def recv_common_only() -> None:
            for _ in rng:
                recv.recv_common(session, data, 8, 0, len(data), now)

        results.append((f"{size}B", "py recv.recv_common alone (deliver stubbed)",
                        best_ns(recv_common_only, n)))
        session.deliver = real_deliver
        for s in (conn, pkt, src):
            s.close()
        subprocess.run(["ip", "addr", "del", f"{PEER}/32", "dev", "d0"], check=False)


    for size in (64, 1400):
        run_size(size)

    sink.close()
    width = max(len(label) for _, label, _ in results)
    print(f"{'size':5s} {'what':{width}s} {'ns/packet':>9s}")
    for size, label, ns in results:
        print(f"{size:5s} {label:{width}s} {ns:9.0f}")


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
