"""The generator of ``gen.c`` in Python, for machines without a C compiler.

Same command line, same closed loop, same JSON output; one AF_PACKET socket bound to each
transmit interface (``send`` without an address: no per-packet interface lookup) and the
receive counters read with RTM_GETSTATS from a netlink socket opened in the receive namespace.
Its ceiling is several times lower than the C generator's; run.py reports it either way.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
ETH_P_IP = 0x0800
RTM_GETSTATS = 94
RTM_NEWSTATS = 92
NLM_F_REQUEST = 1
NLM_F_MULTI = 2
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
IFLA_STATS_LINK_64 = 1
_libc = ctypes.CDLL(None, use_errno=True)


def enter_ns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


class Counters:
    """Sum of rx_packets over some interfaces of the namespace this was created in."""

    def __init__(self, ifindexes: list[int]) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.wanted = set(ifindexes)
        self.single = ifindexes[0] if len(ifindexes) == 1 else 0
        self.seq = 0

    def read(self) -> int:
        self.seq += 1
        flags = NLM_F_REQUEST | (0 if self.single else NLM_F_DUMP)
        mask = 1 << (IFLA_STATS_LINK_64 - 1)
        body = struct.pack("=BBHII", socket.AF_UNSPEC, 0, 0, self.single, mask)
        self.sock.send(struct.pack("=IHHII", 16 + len(body), RTM_GETSTATS, flags, self.seq, 0)
                       + body)
        total = 0
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            done = False
            while off + 16 <= len(data):
                length, mtype, mflags, seq, _pid = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    break
                if seq == self.seq:
                    if mtype == NLMSG_DONE:
                        done = True
                    elif mtype == NLMSG_ERROR:
                        err = -struct.unpack_from("=i", data, off + 16)[0]
                        raise OSError(err, f"RTM_GETSTATS: {os.strerror(err)}")
                    elif mtype == RTM_NEWSTATS:
                        ifindex = struct.unpack_from("=I", data, off + 20)[0]
                        if ifindex in self.wanted:
                            attr = off + 16 + 12
                            while attr + 4 <= off + length:
                                alen, atype = struct.unpack_from("=HH", data, attr)
                                if alen < 4:
                                    break
                                if atype == IFLA_STATS_LINK_64:
                                    total += struct.unpack_from("=Q", data, attr + 4)[0]
                                attr += (alen + 3) & ~3
                    if not mflags & NLM_F_MULTI:
                        done = True
                off += (length + 3) & ~3
            if done:
                return total


def main() -> int:
    args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
    warmup = float(args.get("--warmup", 0.5))
    duration = float(args.get("--duration", 2.0))
    window = int(args.get("--window", 400))
    batch = int(args.get("--batch", 64))
    stall = int(args.get("--stall-ms", 20)) / 1e3
    templates: list[tuple[int, bytes]] = []
    with open(args["--templates"], "rb") as f:
        blob = f.read()
    off = 0
    while off + 4 <= len(blob):
        slot, length = struct.unpack_from("!HH", blob, off)
        templates.append((slot, blob[off + 4:off + 4 + length]))
        off += 4 + length

    enter_ns(args["--rx-ns"])
    counters = Counters([socket.if_nametoindex(n) for n in args["--rx-ifs"].split(",")])
    enter_ns(args["--tx-ns"])
    socks = []
    for name in args["--tx-ifs"].split(","):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        s.bind((name, 0))
        socks.append(s.send)
    plan = [(socks[slot], frame) for slot, frame in templates]

    base = counters.read()
    sent = presumed = delivered = last_rx = 0
    errors = stalls = sleeps = tx_dropped = 0
    cursor = 0
    start = time.monotonic()
    warm_end, meas_end = start + warmup, start + warmup + duration
    t0 = t1 = last_poll = 0.0
    rx0 = rx1 = sent0 = sent1 = 0
    last_progress = start
    phase = 0
    n_plan = len(plan)
    while True:
        t = time.monotonic()
        if phase == 0 and t >= warm_end:
            delivered = counters.read() - base
            rx0, sent0, t0, phase = delivered, sent, time.monotonic(), 1
        elif phase == 1 and t >= meas_end:
            delivered = counters.read() - base
            rx1, sent1, t1 = delivered, sent, time.monotonic()
            break
        inflight = sent - presumed - delivered
        full = window > 0 and inflight >= window
        if full or t - last_poll >= 500e-6:
            delivered = counters.read() - base
            last_poll = t
            if delivered != last_rx:
                last_rx, last_progress = delivered, t
            inflight = sent - presumed - delivered
            full = window > 0 and inflight >= window
        if full:
            if t - last_progress > stall:
                presumed = sent - delivered
                stalls += 1
                last_progress = t
            else:
                time.sleep(200e-6)
                sleeps += 1
            continue
        n = batch if window <= 0 else min(batch, window - inflight)
        for _ in range(n):
            send, frame = plan[cursor]
            cursor += 1
            if cursor == n_plan:
                cursor = 0
            try:
                send(frame)
                sent += 1
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    tx_dropped += 1
                else:
                    errors += 1
    drain_start = stable = time.monotonic()
    last = delivered
    while time.monotonic() - drain_start < 1.0:
        delivered = counters.read() - base
        if delivered >= sent:
            break
        if delivered != last:
            last, stable = delivered, time.monotonic()
        elif time.monotonic() - stable > 0.1:
            break
        time.sleep(20e-6)
    el = t1 - t0
    print(json.dumps({
        "sent": sent, "delivered": delivered, "meas_delivered": rx1 - rx0,
        "meas_sent": sent1 - sent0, "meas_seconds": el,
        "pps": (rx1 - rx0) / el if el else 0.0,
        "offered_pps": (sent1 - sent0) / el if el else 0.0,
        "send_errors": errors, "tx_dropped": tx_dropped, "last_errno": 0,
        "stalls": stalls, "polls": 0, "sleeps": sleeps, "window": window, "batch": batch,
        "templates": n_plan, "tx_ifs": len(socks), "rx_ifs": len(counters.wanted),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
