"""A ``pyl2tp daemon`` running inside a test namespace, driven the way a user drives it.

Integration tests need the same steps over and over: start one daemon per namespace on a
socket no other test uses, wait until that socket accepts connections (not merely exists),
run ``pyl2tp`` commands under ``ip netns exec`` exactly as a shell script would, read the ``-j``
output, ask the API for counters the CLI does not print, and stop the daemon with a chosen
signal. When a data-plane test fails, the daemon's stderr log is usually the only place the
reason is written, so every daemon logs to a file and ``close`` prints that log: pytest shows
output printed during teardown only for failing tests, which puts the log next to the failure
without cluttering a green run.

The default socket path is the one the CLI derives from the namespace name
(``/run/pyl2tp/<netns>.sock``); namespace names are unique per test, so the path is too, and a
plain ``ip netns exec NS pyl2tp show tunnel`` reaches the right daemon with no ``--socket``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pyl2tp.mgmt.client import Client
from pyl2tp.mgmt.server import socket_alive

from .netns import CommandError, NetNS, Topology, child_env, wait_for

__all__ = [
    "Daemon",
    "LacLns",
    "PingResult",
    "cli_env",
    "devices",
    "lac_lns_daemons",
    "lac_lns_pair",
    "ping",
    "pyl2tp_argv",
    "start_all",
    "wait_counter",
]

RUN_DIR = "/run/pyl2tp"


def write_temp(text: str, suffix: str = ".toml") -> str:
    """A daemon configuration or secrets file for a test; the caller unlinks it."""
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def pyl2tp_argv() -> list[str]:
    """The ``pyl2tp`` console script of the running interpreter's environment.

    Falling back to ``python -m`` keeps the helper usable from an environment where the
    package is importable but its scripts were not installed.
    """
    script = Path(sys.executable).with_name("pyl2tp")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pyl2tp.cli.main"]


def cli_env() -> dict[str, str]:
    """The environment for child commands, without a ``PYL2TP_SOCKET`` inherited from the user
    (it would silently redirect every CLI call to some other daemon)."""
    env = child_env()
    env.pop("PYL2TP_SOCKET", None)
    return env


def devices(ns: NetNS) -> set[str]:
    """Names of the network devices currently in ``ns``."""
    out = ns.ip("-j", "link", "show").stdout
    return {link["ifname"] for link in json.loads(out or "[]")}


@dataclass(frozen=True)
class PingResult:
    """What ``ping`` reported; ``ok`` means exit status 0 (at least one reply)."""

    returncode: int
    transmitted: int
    received: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.received > 0

    def __str__(self) -> str:
        return f"ping rc={self.returncode} {self.received}/{self.transmitted}\n{self.output}"


_PING_STATS = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping(
    ns: NetNS,
    dst: str,
    *,
    count: int = 2,
    interval: float = 0.2,
    wait: float = 2,
    size: int | None = None,
    source: str | None = None,
    deadline: float | None = None,
    extra: Sequence[str] = (),
) -> PingResult:
    """Ping ``dst`` from inside ``ns`` quickly; never raises on loss, the caller asserts."""
    argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait)]
    if size is not None:
        argv += ["-s", str(size)]
    if source is not None:
        argv += ["-I", source]
    if deadline is not None:
        argv += ["-w", str(deadline)]
    argv += [*extra, dst]
    timeout = (deadline or count * interval + wait) + 10
    proc = ns.run(argv, check=False, timeout=timeout)
    m = _PING_STATS.search(proc.stdout)
    sent, got = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return PingResult(proc.returncode, sent, got, (proc.stdout + proc.stderr).strip())


class Daemon:
    """One ``pyl2tp daemon`` process in ``ns``; ``start`` it, then use ``cli`` / ``request``.

    ``socket_path`` None means the namespace's default path, which the CLI finds by itself;
    any other path is passed to every CLI call with ``--socket``.
    """

    def __init__(
        self, ns: NetNS, socket_path: str | None = None, *, log_level: str = "info",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.ns = ns
        self.extra_args = list(extra_args)
        self.uses_default_path = socket_path is None
        self.socket_path = socket_path or os.path.join(RUN_DIR, f"{ns.name}.sock")
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        fd, self.log_path = tempfile.mkstemp(prefix=f"{ns.name}-daemon-", suffix=".log")
        os.close(fd)
        self._closed = False

    def __repr__(self) -> str:
        return f"<Daemon {self.ns.name} {self.socket_path}>"

    # -- lifetime ---------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the process without waiting for it to serve (see ``start`` / ``start_all``)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self!r} is already running")
        argv = [*pyl2tp_argv(), "daemon", "--log-level", self.log_level, *self.extra_args]
        if not self.uses_default_path:
            argv += ["--socket", self.socket_path]
        with open(self.log_path, "ab") as log:
            self.proc = self.ns.popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=cli_env()
            )

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the socket accepts a connection; fail with the log if the daemon died."""

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"{self!r} exited ({code}) before serving:\n{self.log()}")
            return socket_alive(self.socket_path)

        try:
            wait_for(ready, timeout=timeout, interval=0.02, message=f"{self!r} to serve")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log()}") from None

    def start(self, timeout: float = 15.0) -> Daemon:
        self.spawn()
        self.wait_ready(timeout)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "daemon not started"
        return self.proc.pid

    def send_signal(self, sig: int) -> None:
        """Signal the daemon itself: ``ip netns exec`` execs it, so the pid is the daemon's."""
        assert self.proc is not None, "daemon not started"
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit status (SIGKILL if the daemon hangs)."""
        if self.proc is None:
            raise RuntimeError("daemon not started")
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise TimeoutError(
                    f"{self!r} ignored signal {sig} for {timeout}s:\n{self.log()}"
                ) from None
        return self.proc.returncode

    def close(self) -> None:
        """Stop the daemon (if running), print its log for a failing test, remove the log."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.alive():
                with contextlib.suppress(TimeoutError):
                    self.stop(signal.SIGTERM, timeout=5)
            # Shown by pytest only if the test failed (captured teardown output).
            print(f"\n----- pyl2tp daemon log, namespace {self.ns.name} -----\n{self.log()}")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    # -- the CLI ------------------------------------------------------------------------------

    def cli_argv(self, args: Sequence[str]) -> list[str]:
        prefix = [] if self.uses_default_path else ["--socket", self.socket_path]
        return [*pyl2tp_argv(), *prefix, *args]

    def cli(
        self, args: str | Sequence[str], *, check: bool = True, timeout: float = 20.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``pyl2tp ARGS`` in the namespace; a string is split like a shell would."""
        argv = shlex.split(args) if isinstance(args, str) else list(args)
        proc = self.ns.run(self.cli_argv(argv), check=False, timeout=timeout, env=cli_env())
        if check and proc.returncode != 0:
            err = CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
            raise AssertionError(f"{err}\n{self.log_tail()}")
        return proc

    def show(self, kind: str, *filters: str, stats: bool = True) -> list[dict[str, Any]]:
        """``pyl2tp -j [-s] show tunnel|session ...`` parsed."""
        args = ["-j", *(["-s"] if stats else []), "show", kind, *filters]
        out = self.cli(args).stdout.strip()
        result: list[dict[str, Any]] = json.loads(out) if out else []
        return result

    def sessions(self) -> list[dict[str, Any]]:
        return self.show("session")

    def session(
        self,
        *,
        ifname: str | None = None,
        tunnel_id: int | None = None,
        session_id: int | None = None,
    ) -> dict[str, Any]:
        """One session from ``-j -s show session``, by interface name or by ids."""
        for s in self.sessions():
            if ifname is not None and s.get("interface") != ifname:
                continue
            if tunnel_id is not None and s.get("tunnel_id") != tunnel_id:
                continue
            if session_id is not None and s.get("session_id") != session_id:
                continue
            return s
        raise AssertionError(
            f"no session ifname={ifname} tunnel_id={tunnel_id} session_id={session_id} "
            f"in {self.ns.name}: {self.sessions()}"
        )

    def session_stats(self, **key: Any) -> dict[str, int]:
        """A session's rx counters as ``-j -s`` prints them (packets, cookie_discards, ...),
        plus its tx counters prefixed ``tx_``."""
        stats = self.session(**key)["stats"]
        return {**stats["rx"], **{f"tx_{k}": v for k, v in stats["tx"].items()}}

    def debug(self) -> str:
        return self.cli(["debug"]).stdout

    # -- the API ------------------------------------------------------------------------------

    def request(self, cmd: str, attrs: dict[str, Any] | None = None, *, dump: bool = False) -> Any:
        """One management request over the Unix socket (reachable from any namespace)."""
        with Client(self.socket_path, timeout=10) as client:
            return client.request(cmd, attrs or {}, dump=dump)

    def counters(self, tunnel_id: int, session_id: int) -> dict[str, int]:
        """A session's counters straight from the API (kernel names: rx_packets, ...);
        an order of magnitude faster than the CLI where a test polls."""
        stats: dict[str, int] = self.request(
            "session_get", {"conn_id": tunnel_id, "session_id": session_id}
        )["stats"]
        return stats

    def endpoint_stats(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("endpoint_stats")
        return result

    def endpoint(self, encap: str, local: str, port: int | None = None) -> dict[str, Any]:
        for ep in self.endpoint_stats():
            if ep["encap"] == encap and ep["local"] == local and port in (None, ep["port"]):
                return ep
        raise AssertionError(f"no {encap} endpoint on {local}:{port}: {self.endpoint_stats()}")

    def log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log().splitlines()[-lines:])
        return f"--- daemon log tail ({self.ns.name}) ---\n{tail}"


def start_all(daemons: Iterable[Daemon], timeout: float = 15.0) -> None:
    """Start several daemons concurrently: their interpreter start-ups overlap."""
    items = list(daemons)
    for d in items:
        d.spawn()
    for d in items:
        d.wait_ready(timeout)


def wait_counter(read: Any, key: str, above: int, timeout: float = 5.0) -> int:
    """Poll ``read()[key]`` until it exceeds ``above``; the counters move asynchronously."""
    last: list[int] = [above]

    def moved() -> bool:
        last[0] = int(read()[key])
        return last[0] > above

    try:
        wait_for(moved, timeout=timeout, interval=0.05, message=f"{key} to exceed {above}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc} (last value {last[0]})") from None
    return last[0]


@dataclass
class LacLns:
    """A LAC daemon and an LNS daemon, each in its namespace; ``config`` is the LNS's
    configuration file, which a test may rewrite before sending SIGHUP."""

    lac_ns: NetNS
    lns_ns: NetNS
    lac: Daemon
    lns: Daemon
    config: str
    lac_dev: str = ""
    lns_dev: str = ""


@contextlib.contextmanager
def lac_lns_daemons(
    lac_ns: NetNS,
    lns_ns: NetNS,
    lns_config: str,
    *,
    log_level: str = "info",
    lac_args: Sequence[str] = (),
    lns_args: Sequence[str] = (),
) -> Iterator[LacLns]:
    """Start a LAC daemon in ``lac_ns`` and an LNS daemon configured by ``lns_config`` (TOML
    text) in ``lns_ns`` together; stop both and remove the configuration file on exit."""
    path = write_temp(lns_config)
    lac = Daemon(lac_ns, log_level=log_level, extra_args=lac_args)
    lns = Daemon(lns_ns, log_level=log_level, extra_args=["--config", path, *lns_args])
    try:
        with lac, lns:
            start_all([lac, lns])
            yield LacLns(lac_ns, lns_ns, lac, lns, path)
    finally:
        os.unlink(path)


@contextlib.contextmanager
def lac_lns_pair(
    lac_addrs: str | Iterable[str],
    lns_addrs: str | Iterable[str],
    lns_config: str,
    *,
    ipv6: str = "on",
    log_level: str = "info",
    lac_args: Sequence[str] = (),
    lns_args: Sequence[str] = (),
) -> Iterator[LacLns]:
    """Namespaces ``lac`` and ``lns`` on one veth with these addresses, running the daemons
    of ``lac_lns_daemons``; all torn down on exit.

    ``ipv6``: ``"on"`` leaves IPv6 as the kernel has it, ``"settled"`` turns off DAD and
    waits until no address is tentative, ``"off"`` disables IPv6 on new devices.
    """
    with Topology() as topo:
        a, b = topo.add("lac"), topo.add("lns")
        if ipv6 == "off":
            for ns in (a, b):
                ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        dev_a, dev_b = topo.veth(a, b, lac_addrs, lns_addrs)
        if ipv6 == "settled":
            for ns in (a, b):
                ns.sysctl("net.ipv6.conf.all.accept_dad", 0)
            wait_for(lambda: "tentative" not in a.ip("-6", "addr").stdout
                     and "tentative" not in b.ip("-6", "addr").stdout, timeout=10,
                     message="IPv6 addresses to settle")
        with lac_lns_daemons(a, b, lns_config, log_level=log_level, lac_args=lac_args,
                             lns_args=lns_args) as pair:
            pair.lac_dev, pair.lns_dev = dev_a, dev_b
            yield pair
