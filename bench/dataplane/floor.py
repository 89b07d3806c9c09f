"""The floor: the least a Python data plane can do, for comparison with pyl2tp's.

Moves frames TAP/TUN -> UDP and UDP -> TAP/TUN with no L2TP logic at all: a 4-byte header
(worker byte, zero, 16-bit device index) in front of each frame, a list index to find the
device on receive, nothing else. Every trick a careful Python data plane could use is used:
preallocated buffers, ``os.readv`` straight into a buffer whose first 4 bytes already hold the
header (so no concatenation), ``recv_into`` and a memoryview slice for the write, bound methods
in locals, 64-frame drains per readiness event, and a choice of loop:

* ``epoll``: one ``select.epoll`` loop over the socket and every device (the default);
* ``blocking``: two threads in blocking system calls, one per direction (one device only);
* ``asyncio``: ``loop.add_reader`` callbacks with the same bodies (what pyl2tp uses).

With ``--workers 2`` the devices are multi-queue (IFF_MULTI_QUEUE, one queue per worker) and
each worker process has its own UDP socket in one SO_REUSEPORT group; a classic BPF program on
the group steers each datagram to the worker named by its first byte, so worker k on one side
talks to worker k on the other. This is the scaling a second pyl2tp worker could get.

Prints ``ready`` on stdout once the devices and sockets exist, then runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import select
import signal
import socket
import struct
import sys
import threading

from pyl2tp.dataplane import tuntap

SO_NO_CHECK = 11
SO_ATTACH_REUSEPORT_CBPF = 51
BATCH = 64
BUF = 65536 + 64


def header(worker: int, index: int) -> bytes:
    return bytes((worker, 0, index >> 8, index & 0xFF))


def _steer_by_first_byte(sock: socket.socket) -> None:
    """Attach ``ldb [0]; ret a`` to the reuseport group: the datagram's first payload byte
    picks the socket (an index past the group falls back to the hash)."""
    insns = struct.pack("HBBI", 0x30, 0, 0, 0) + struct.pack("HBBI", 0x16, 0, 0, 0)
    prog = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HxxxxxxQ", 2, ctypes.addressof(prog))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def make_socket(local: str, port: int, reuseport: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)  # as pyl2tp (udp_csum off)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((local, port))
    sock.setblocking(False)
    return sock


def run_epoll(worker: int, fds: list[int], sock: socket.socket, peer: tuple[str, int]) -> None:
    ep = select.epoll()
    sfd = sock.fileno()
    ep.register(sfd, select.EPOLLIN)
    tx: dict[int, tuple[memoryview, memoryview]] = {}
    for i, fd in enumerate(fds):
        buf = bytearray(BUF)
        buf[:4] = header(worker, i)
        whole = memoryview(buf)
        tx[fd] = (whole, whole[4:])
        ep.register(fd, select.EPOLLIN)
    rbuf = bytearray(BUF)
    rmv = memoryview(rbuf)
    recv_into = sock.recv_into
    sendto = sock.sendto
    readv = os.readv
    write = os.write
    poll = ep.poll
    batch = range(BATCH)
    while True:
        for fd, _ev in poll():
            if fd == sfd:
                for _ in batch:
                    try:
                        n = recv_into(rbuf)
                    except BlockingIOError:
                        break
                    try:
                        write(fds[rbuf[2] << 8 | rbuf[3]], rmv[4:n])
                    except (OSError, IndexError):
                        pass
            else:
                whole, tail = tx[fd]
                for _ in batch:
                    try:
                        n = readv(fd, [tail])
                    except BlockingIOError:
                        break
                    try:
                        sendto(whole[:n + 4], peer)
                    except OSError:
                        pass


def run_blocking(worker: int, fds: list[int], sock: socket.socket, peer: tuple[str, int]) -> None:
    if len(fds) != 1:
        raise SystemExit("--style blocking serves exactly one device")
    fd = fds[0]
    os.set_blocking(fd, True)
    sock.setblocking(True)

    def device_to_udp() -> None:
        buf = bytearray(BUF)
        buf[:4] = header(worker, 0)
        whole = memoryview(buf)
        tail = whole[4:]
        readv = os.readv
        sendto = sock.sendto
        while True:
            n = readv(fd, [tail])
            try:
                sendto(whole[:n + 4], peer)
            except OSError:
                pass

    def udp_to_device() -> None:
        rbuf = bytearray(BUF)
        rmv = memoryview(rbuf)
        recv_into = sock.recv_into
        write = os.write
        while True:
            n = recv_into(rbuf)
            try:
                write(fd, rmv[4:n])
            except OSError:
                pass

    threading.Thread(target=device_to_udp, daemon=True).start()
    udp_to_device()


def run_asyncio(worker: int, fds: list[int], sock: socket.socket, peer: tuple[str, int]) -> None:
    loop = asyncio.new_event_loop()
    rbuf = bytearray(BUF)
    rmv = memoryview(rbuf)
    recv_into = sock.recv_into
    sendto = sock.sendto
    readv = os.readv
    write = os.write
    batch = range(BATCH)

    def udp_readable() -> None:
        for _ in batch:
            try:
                n = recv_into(rbuf)
            except BlockingIOError:
                return
            try:
                write(fds[rbuf[2] << 8 | rbuf[3]], rmv[4:n])
            except (OSError, IndexError):
                pass

    def device_readable(fd: int, whole: memoryview, tail: memoryview) -> None:
        for _ in batch:
            try:
                n = readv(fd, [tail])
            except BlockingIOError:
                return
            try:
                sendto(whole[:n + 4], peer)
            except OSError:
                pass

    loop.add_reader(sock.fileno(), udp_readable)
    for i, fd in enumerate(fds):
        buf = bytearray(BUF)
        buf[:4] = header(worker, i)
        whole = memoryview(buf)
        loop.add_reader(fd, device_readable, fd, whole, whole[4:])
    loop.run_forever()


STYLES = {"epoll": run_epoll, "blocking": run_blocking, "asyncio": run_asyncio}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kind", choices=["tap", "tun"], default="tap")
    p.add_argument("--names", required=True, help="comma-separated device names")
    p.add_argument("--local", required=True)
    p.add_argument("--remote", required=True)
    p.add_argument("--port", type=int, default=7000, help="local UDP port")
    p.add_argument("--peer-port", type=int, default=7000)
    p.add_argument("--workers", type=int, choices=[1, 2], default=1)
    p.add_argument("--style", choices=sorted(STYLES), default="epoll")
    p.add_argument("--mtu", type=int, default=1500)
    args = p.parse_args()

    names = args.names.split(",")
    multi = args.workers > 1
    opener = tuntap.open_tap if args.kind == "tap" else tuntap.open_tun
    devs = [opener(name, mtu=args.mtu, up=True, multi_queue=multi) for name in names]
    queues = [devs] + [[d.open_queue() for d in devs] for _ in range(args.workers - 1)]
    socks = [make_socket(args.local, args.port, multi) for _ in range(args.workers)]
    if multi:
        _steer_by_first_byte(socks[0])
    peer = (args.remote, args.peer_port)
    run = STYLES[args.style]

    children: list[int] = []
    for k in range(1, args.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            run(k, [q.fd for q in queues[k]], socks[k], peer)
            os._exit(0)
        children.append(pid)

    def stop(_sig: int, _frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("ready", " ".join(str(pid) for pid in [os.getpid(), *children]), flush=True)
    run(0, [q.fd for q in queues[0]], socks[0], peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
