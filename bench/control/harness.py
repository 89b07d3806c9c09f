"""Building blocks of the control-plane benchmark: namespaces, daemons, API, /proc readings.

Everything here is measurement plumbing; the scenarios live in ``run.py``.

* :class:`BenchDaemon` is the test suite's :class:`~tests.support.daemon.Daemon` started the
  way a benchmark needs it: an explicit ``RLIMIT_NOFILE``, a quiet log level (the ``info``
  level logs one line per tunnel and session, which is part of what one would measure
  otherwise), its own socket path, and optionally under ``cProfile``.
* :class:`Api` pipelines management requests (a chunk of requests is written before the
  replies are read), so that driving 10,000 calls does not cost 10,000 round trips.
* :class:`EventCounter` subscribes to a daemon's event stream in a thread and counts event
  names without parsing JSON, stamping the time at which each count was reached.
* :func:`proc_sample` reads RSS, descriptors and CPU ticks of a pid from ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.daemon import Daemon, cli_env  # noqa: E402
from tests.support.netns import NetNS  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# ---- /proc ----


@dataclass(frozen=True)
class ProcSample:
    t: float
    rss_kib: int
    fds: int
    cpu_s: float  # utime + stime


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command: state(0) ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime(11) stime(12)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_sample(pid: int) -> ProcSample:
    return ProcSample(time.monotonic(), rss_kib(pid), fd_count(pid), cpu_seconds(pid))


def system_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class Background:
    """How busy the machine was with other work while a measurement ran: all busy CPU minus
    what the measured pids and this process used, in % of one core."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.t = time.monotonic()
        self.busy = system_busy_s()
        self.own = self._own()

    def _own(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return total + ru.ru_utime + ru.ru_stime

    def other_pct(self) -> float:
        wall = time.monotonic() - self.t
        other = (system_busy_s() - self.busy) - (self._own() - self.own)
        return round(100 * max(other, 0.0) / wall, 1) if wall > 0 else 0.0


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    u = os.uname()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": f"{u.sysname} {u.release} {u.machine}",
        "python": sys.version.split()[0],
        "memory_gib": round(mem_kib / 1048576, 1),
        "nofile_soft_hard": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


# ---- daemons ----


class BenchDaemon(Daemon):
    """A pyl2tp daemon with a chosen descriptor limit, log level and (optional) profiler."""

    def __init__(self, ns: NetNS, name: str, config: str | None, *, nofile: int = 1 << 17,
                 log_level: str = "warning", profile: str | None = None) -> None:
        self.config_path: str | None = None
        extra: list[str] = []
        if config is not None:
            self.config_path = f"/tmp/pyl2tp-bench-{ns.name}-{name}.toml"
            Path(self.config_path).write_text(config)
            extra = ["--config", self.config_path]
        super().__init__(ns, f"/run/pyl2tp/bench-{ns.name}-{name}.sock", log_level=log_level,
                         extra_args=extra)
        self.nofile = nofile
        self.profile = profile
        self.expect_errors = False  # a scenario that provokes errors reads the log itself

    def spawn(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self!r} is already running")
        prof = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        argv = [sys.executable, *prof, "-m", "pyl2tp.cli.main", "daemon", "--log-level",
                self.log_level, "--socket", self.socket_path, *self.extra_args]
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # Without CAP_SYS_RESOURCE the hard limit is a ceiling: ask for at most that.
        limit = self.nofile if hard == resource.RLIM_INFINITY else min(self.nofile, hard)
        self.nofile = limit

        def limits() -> None:  # runs in the child before exec
            # A limit below the hard one is made hard too: the daemon raises its soft limit
            # to the hard one at start, and a scenario about 1024 descriptors means 1024.
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with open(self.log_path, "ab") as log:
            self.proc = self.ns.popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      env=cli_env(), preexec_fn=limits)

    def sample(self) -> ProcSample:
        return proc_sample(self.pid)

    def close(self) -> None:
        # Quiet: the suite's Daemon prints the whole log on close (for pytest); print only a
        # tail, and only when the daemon complained.
        if self._closed:
            return
        self._closed = True
        try:
            if self.alive():
                with contextlib.suppress(TimeoutError):
                    self.stop(timeout=60)
            text = self.log()
            if not self.expect_errors and ("Traceback" in text or " ERROR " in text):
                tail = "\n".join(text.splitlines()[-15:])
                print(f"--- {self!r} log tail ---\n{tail}", file=sys.stderr)
        finally:
            for path in (self.log_path, self.config_path):
                if path:
                    with contextlib.suppress(OSError):
                        os.unlink(path)


# ---- API ----


class ApiError(RuntimeError):
    pass


class Api:
    """A pipelining client of the management socket (one JSON line per request)."""

    def __init__(self, path: str, timeout: float = 120.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.rfile = self.sock.makefile("rb")
        self.seq = 0

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def many(self, reqs: Sequence[tuple[str, dict[str, Any]]], *, chunk: int = 64,
             errors: list[str] | None = None) -> list[Any]:
        """Results of ``reqs`` in order; a refused request raises, or with ``errors`` given
        records its message there and yields None."""
        out: list[Any] = []
        for i in range(0, len(reqs), chunk):
            part = reqs[i:i + chunk]
            lines = []
            for cmd, attrs in part:
                self.seq += 1
                lines.append(json.dumps({"seq": self.seq, "cmd": cmd, "attrs": attrs}))
            self.sock.sendall(("\n".join(lines) + "\n").encode())
            for _ in part:
                reply = json.loads(self.rfile.readline())
                if reply.get("ok"):
                    out.append(reply.get("result"))
                    continue
                msg = str(reply.get("error"))
                if errors is None:
                    raise ApiError(msg)
                errors.append(msg)
                out.append(None)
        return out

    def one(self, cmd: str, attrs: dict[str, Any] | None = None) -> Any:
        return self.many([(cmd, attrs or {})])[0]


class EventCounter:
    """Counts named events of a daemon's stream; ``times[name][k]`` is when count k+1 came."""

    def __init__(self, path: str, names: Iterable[str]) -> None:
        self.names = list(names)
        self.counts = dict.fromkeys(self.names, 0)
        # Why things went down: reason -> count, per *_down event name.
        self.reasons: dict[str, dict[str, int]] = {n: {} for n in self.names if
                                                   n.endswith("_down")}
        self.times: dict[str, list[float]] = {n: [] for n in self.names}
        self._needles = [(n, f'"event": "{n}"'.encode()) for n in self.names]
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.sendall(b'{"cmd": "subscribe"}\n')
        ack = b""
        while not ack.endswith(b"\n"):
            got = self.sock.recv(4096)
            if not got:
                raise ApiError("the daemon closed the event stream")
            ack += got
        if b'"subscribed": true' not in ack:
            raise ApiError(f"subscription refused: {ack!r}")
        self.closed = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        tail = b""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                data = b""
            now = time.monotonic()
            if not data:
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
                return
            buf = tail + data
            cut = buf.rfind(b"\n") + 1
            whole, tail = buf[:cut], buf[cut:]
            if not whole:
                continue
            with self.cond:
                for name, needle in self._needles:
                    n = whole.count(needle)
                    if n:
                        self.counts[name] += n
                        self.times[name].extend([now] * n)
                        if name in self.reasons:
                            self._tally(name, needle, whole)
                self.cond.notify_all()

    def _tally(self, name: str, needle: bytes, chunk: bytes) -> None:
        for line in chunk.splitlines():
            if needle in line:
                with contextlib.suppress(ValueError):
                    reason = str(json.loads(line).get("attrs", {}).get("reason"))
                    table = self.reasons[name]
                    table[reason] = table.get(reason, 0) + 1

    def wait(self, name: str, target: int, timeout: float,
             stall: float | None = None) -> bool:
        """Until ``counts[name] >= target`` (True); False on timeout, on a stall of ``stall``
        seconds without progress, or when the stream ends."""
        deadline = time.monotonic() + timeout
        last, last_at = -1, time.monotonic()
        with self.cond:
            while self.counts[name] < target:
                now = time.monotonic()
                if self.counts[name] != last:
                    last, last_at = self.counts[name], now
                if now >= deadline or self.closed or (stall and now - last_at > stall):
                    return False
                self.cond.wait(0.2)
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(2)


# ---- topology ----


def ip_link_count(ns: NetNS) -> int:
    out = ns.ip("-o", "link", "show").stdout
    return len(out.splitlines())


def wait_until(pred: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# ---- profiles ----


def collapse_profile(path: str, top: int = 20) -> dict[str, Any]:
    """Self and cumulative sample counts per function from py-spy's ``--format raw`` output
    (one ``frame;frame;... count`` line per distinct stack).

    py-spy counts a thread blocked in ``epoll_wait`` as active, so stacks ending in the
    selector's ``select`` are counted apart (``idle``) and percentages are of the rest."""
    self_n: dict[str, int] = {}
    cum_n: dict[str, int] = {}
    total = idle = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if frames[-1].startswith(("select (selectors.py", "EpollSelector.select")):
            idle += n
            continue
        total += n
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + n
        for frame in set(frames):
            cum_n[frame] = cum_n.get(frame, 0) + n

    def rows(table: dict[str, int]) -> list[dict[str, Any]]:
        best = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [{"function": f, "samples": n, "pct": round(100 * n / max(total, 1), 1)}
                for f, n in best]

    # Frames of the interpreter start-up and of the event loop itself are in every stack.
    cum = {f: n for f, n in cum_n.items() if "asyncio/" not in f and "runpy" not in f
           and "cli/main.py" not in f and "daemon/main.py" not in f}
    return {"samples": total, "idle_samples": idle, "self": rows(self_n),
            "cumulative": rows(cum)}
