"""Throwaway hosts built from network namespaces, for tests that cross a network.

Every namespace is named ``pyl2tp-<role>-<6 hex>`` and has an owner file in ``/run/pyl2tp-test``
recording the creating process (pid and start time, so a recycled pid is not mistaken for the
owner). ``sweep_stale_namespaces`` uses it to delete what a killed test run left behind; nothing
outside our prefix is ever touched, and no device is ever created in the caller's namespace.

Python 3.11 has no ``os.setns``, so code that must run *inside* a namespace runs as a child
process under ``ip netns exec`` (``NetNS.run``/``popen``/``python``). That also gives the child a
``/sys`` mounted for the namespace, so ``/sys/class/net`` shows the namespace's devices.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

__all__ = [
    "NS_PREFIX",
    "REPO_ROOT",
    "SELFTEST",
    "CommandError",
    "NetNS",
    "SelftestAddresses",
    "SelftestTopology",
    "Topology",
    "child_env",
    "list_namespaces",
    "selftest_topology",
    "sweep_stale_namespaces",
    "veth",
    "wait_for",
]

NS_PREFIX = "pyl2tp-"
STATE_DIR = Path("/run/pyl2tp-test")
NETNS_DIR = Path("/run/netns")
REPO_ROOT = Path(__file__).resolve().parents[2]

_ROLE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,11}")
_OWNED_RE = re.compile(r"pyl2tp-[a-z0-9][a-z0-9-]{0,11}-[0-9a-f]{6}")
_DEFAULT_TIMEOUT = 30.0

T = TypeVar("T")


class CommandError(subprocess.CalledProcessError):
    """A failed command whose message carries its output, so a test failure explains itself."""

    def __str__(self) -> str:
        text = f"command {shlex.join(map(str, self.cmd))!r} exited with {self.returncode}"
        for label, data in (("stdout", self.stdout), ("stderr", self.stderr)):
            if data:
                out = data if isinstance(data, str) else data.decode(errors="replace")
                text += f"\n{label}: {out.strip()}"
        return text


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = _DEFAULT_TIMEOUT,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/<pid>/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields resume after the
    # last ')'. Field 22 is then the 20th of the rest.
    rest = stat.rpartition(")")[2].split()
    return rest[19] if len(rest) > 19 else None


def _owner_alive(record: str) -> bool:
    try:
        pid_text, start = record.split()
        pid = int(pid_text)
    except ValueError:
        return False
    return _proc_start_time(pid) == start


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (those ``ip netns`` knows about)."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def _namespace_pids(name: str) -> list[int]:
    proc = _run(["ip", "netns", "pids", name], check=False, timeout=10)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def _destroy_namespace(name: str) -> None:
    """Kill whatever still runs in our namespace, then delete it.

    A namespace with live processes only loses its name on ``ip netns del`` and keeps its
    devices and sockets alive, which would leak state into later runs.
    """
    if not _OWNED_RE.fullmatch(name):
        raise ValueError(f"refusing to destroy namespace {name!r}: not one of ours")
    for pid in _namespace_pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if (NETNS_DIR / name).exists():
        _run(["ip", "netns", "del", name], check=False, timeout=10)


def sweep_stale_namespaces() -> list[str]:
    """Delete ``pyl2tp-*`` namespaces whose creating process is dead; return their names.

    Only namespaces with an owner file are considered: the file is written before the namespace
    is created, so a namespace that is being set up right now always has a live owner.
    """
    removed: list[str] = []
    try:
        records = list(STATE_DIR.iterdir())
    except FileNotFoundError:
        return removed
    for record in records:
        name = record.name
        if not _OWNED_RE.fullmatch(name):
            continue
        try:
            owner = record.read_text()
        except OSError:
            continue
        if _owner_alive(owner):
            continue
        _destroy_namespace(name)
        record.unlink(missing_ok=True)
        removed.append(name)
    return removed


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises TimeoutError (with ``message``) instead of returning False, so a test cannot forget to
    assert on the result.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


_live: weakref.WeakSet[NetNS] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for ns in list(_live):
        try:
            ns.close()
        except Exception:
            pass


class NetNS:
    """A named network namespace acting as one test host; ``close`` (or exit) destroys it.

    The namespace starts with only ``lo``, brought up.
    """

    def __init__(self, role: str = "ns") -> None:
        if not _ROLE_RE.fullmatch(role):
            raise ValueError(f"role {role!r} must be 1-12 chars of [a-z0-9-]")
        self.role = role
        self.name = f"{NS_PREFIX}{role}-{secrets.token_hex(3)}"
        self._procs: list[subprocess.Popen[Any]] = []
        self._closed = False
        STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._owner_file = STATE_DIR / self.name
        self._owner_file.write_text(f"{os.getpid()} {_proc_start_time(os.getpid())}\n")
        try:
            _run(["ip", "netns", "add", self.name], timeout=10)
        except BaseException:
            self._owner_file.unlink(missing_ok=True)
            self._closed = True
            raise
        _live.add(self)
        try:
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"<NetNS {self.name}{' closed' if self._closed else ''}>"

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self,
        cmd: str | Sequence[str],
        check: bool = True,
        timeout: float | None = _DEFAULT_TIMEOUT,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and capture its text output.

        A string is split like a shell would split words, but no shell runs: pass
        ``["sh", "-c", ...]`` for pipes or redirections.
        """
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        return _run(self.exec_argv(argv), check=check, timeout=timeout, input=input, env=env)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ip -n <ns> ...``: configure the namespace without entering it."""
        return _run(["ip", "-n", self.name, *args], check=check, timeout=10)

    def python(
        self, code: str, *args: str, check: bool = True, timeout: float | None = _DEFAULT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` inside the namespace with ``pyl2tp`` and ``tests`` importable."""
        return self.run(
            [sys.executable, "-c", code, *args], check=check, timeout=timeout, env=child_env()
        )

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a background process in the namespace; ``close`` kills its process group.

        The process always gets its own session, so killing its group cannot hit the test runner.
        """
        if kw.get("start_new_session") is False or "process_group" in kw:
            raise ValueError("NetNS.popen always starts its process in a new session")
        kw["start_new_session"] = True
        proc: subprocess.Popen[Any] = subprocess.Popen(self.exec_argv(argv), **kw)
        self._procs.append(proc)
        return proc

    def addr_add(self, dev: str, cidr: str) -> None:
        """Add an address with prefix; IPv6 gets ``nodad`` so it is usable at once."""
        iface = ipaddress.ip_interface(cidr)
        extra = ["nodad"] if iface.version == 6 else []
        self.ip("addr", "add", str(iface), "dev", dev, *extra)

    def link_up(self, dev: str) -> None:
        self.ip("link", "set", dev, "up")

    def sysctl(self, key: str, value: str | int) -> None:
        """Set a sysctl of this namespace (``/proc/sys/net`` is per namespace of the writer)."""
        path = "/proc/sys/" + key.replace(".", "/")
        self.run(["sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", str(value), path])

    def pids(self) -> list[int]:
        return _namespace_pids(self.name)

    def _kill_procs(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                continue
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for proc in self._procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    pass
        self._procs.clear()

    def close(self) -> None:
        """Kill tracked and stray processes, delete the namespace (and with it its devices)."""
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        try:
            self._kill_procs()
        finally:
            _destroy_namespace(self.name)
            self._owner_file.unlink(missing_ok=True)

    def __enter__(self) -> NetNS:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _signal_group(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO_ROOT / "src"), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _as_list(addrs: str | Iterable[str] | None) -> list[str]:
    if addrs is None:
        return []
    if isinstance(addrs, str):
        return [addrs]
    return list(addrs)


def veth(
    ns_a: NetNS,
    ns_b: NetNS,
    addr_a: str | Iterable[str] | None = None,
    addr_b: str | Iterable[str] | None = None,
    *,
    name_a: str | None = None,
    name_b: str | None = None,
    mtu: int | None = None,
) -> tuple[str, str]:
    """Link two namespaces with a veth pair and return the two device names.

    Both ends are created directly inside their namespaces, never passing through the caller's,
    so names only have to be unique within each namespace. Addresses carry their prefix
    (``10.1.1.1/24``, ``2001:db8:1::1/64``); one or several per end.
    """
    tag = secrets.token_hex(3)
    name_a = name_a or f"va{tag}"
    name_b = name_b or f"vb{tag}"
    argv = ["ip", "link", "add", name_a, "netns", ns_a.name, "type", "veth"]
    _run([*argv, "peer", "name", name_b, "netns", ns_b.name], timeout=10)
    for ns, dev, addrs in ((ns_a, name_a, addr_a), (ns_b, name_b, addr_b)):
        if mtu is not None:
            ns.ip("link", "set", dev, "mtu", str(mtu))
        for cidr in _as_list(addrs):
            ns.addr_add(dev, cidr)
        ns.link_up(dev)
    return name_a, name_b


class Topology:
    """A set of namespaces torn down together, including when building them fails halfway."""

    def __init__(self) -> None:
        self.namespaces: dict[str, NetNS] = {}

    def add(self, role: str) -> NetNS:
        if role in self.namespaces:
            raise ValueError(f"role {role!r} already exists in this topology")
        ns = NetNS(role)
        self.namespaces[role] = ns
        return ns

    def __getitem__(self, role: str) -> NetNS:
        return self.namespaces[role]

    def veth(
        self,
        a: NetNS | str,
        b: NetNS | str,
        addr_a: str | Iterable[str] | None = None,
        addr_b: str | Iterable[str] | None = None,
        **kw: Any,
    ) -> tuple[str, str]:
        ns_a = self.namespaces[a] if isinstance(a, str) else a
        ns_b = self.namespaces[b] if isinstance(b, str) else b
        return veth(ns_a, ns_b, addr_a, addr_b, **kw)

    def close(self) -> None:
        errors: list[BaseException] = []
        for ns in reversed(list(self.namespaces.values())):
            try:
                ns.close()
            except BaseException as exc:
                errors.append(exc)
        self.namespaces.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class SelftestAddresses:
    """The addresses of the kernel's ``tools/testing/selftests/net/l2tp.sh`` topology."""

    host1_lo4: str = "172.16.101.1"
    host1_lo6: str = "fc00:101::1"
    host2_lo4: str = "172.16.101.2"
    host2_lo6: str = "fc00:101::2"
    host1_eth4: str = "10.1.1.1"
    host1_eth6: str = "2001:db8:1::1"
    router_eth1_4: str = "10.1.1.2"
    router_eth1_6: str = "2001:db8:1::2"
    router_eth2_4: str = "10.1.2.2"
    router_eth2_6: str = "2001:db8:2::2"
    host2_eth4: str = "10.1.2.1"
    host2_eth6: str = "2001:db8:2::1"
    # The addresses the selftest puts on the L2TP session devices (ptp peers of each other).
    host1_l2tp4: str = "172.16.1.1"
    host1_l2tp6: str = "fc00:1::1"
    host2_l2tp4: str = "172.16.1.2"
    host2_l2tp6: str = "fc00:1::2"


SELFTEST = SelftestAddresses()


class SelftestTopology(Topology):
    """host-1 — router — host-2, as the kernel L2TP selftest builds it; see ``selftest_topology``.

    Links: host1 ``eth0`` <-> router ``eth1`` (10.1.1.0/24, 2001:db8:1::/64) and router ``eth2``
    <-> host2 ``eth0`` (10.1.2.0/24, 2001:db8:2::/64).
    """

    addrs = SELFTEST

    @property
    def host1(self) -> NetNS:
        return self.namespaces["host1"]

    @property
    def router(self) -> NetNS:
        return self.namespaces["router"]

    @property
    def host2(self) -> NetNS:
        return self.namespaces["host2"]

    def __enter__(self) -> SelftestTopology:
        return self


def _selftest_host(topo: Topology, role: str, lo4: str | None, lo6: str | None) -> NetNS:
    ns = topo.add(role)
    if lo4:
        ns.addr_add("lo", f"{lo4}/32")
    if lo6:
        ns.addr_add("lo", f"{lo6}/128")
    # A default that fails fast instead of leaking out through some other route.
    ns.ip("-4", "route", "add", "unreachable", "default", "metric", "8192")
    ns.ip("-6", "route", "add", "unreachable", "default", "metric", "8192")
    ns.sysctl("net.ipv4.ip_forward", 1)
    ns.sysctl("net.ipv6.conf.all.keep_addr_on_down", 1)
    ns.sysctl("net.ipv6.conf.all.forwarding", 1)
    ns.sysctl("net.ipv6.conf.default.forwarding", 1)
    ns.sysctl("net.ipv6.conf.default.accept_dad", 0)
    return ns


def selftest_topology() -> SelftestTopology:
    """Build the topology of the kernel's L2TP selftest, with plain routing and no L2TP.

    Tests then add tunnels between ``host1`` (10.1.1.1) and ``host2`` (10.1.2.1) and route the
    loopback addresses (172.16.101.x, fc00:101::x) through them, as ``l2tp.sh`` does.
    """
    a = SELFTEST
    topo = SelftestTopology()
    try:
        h1 = _selftest_host(topo, "host1", a.host1_lo4, a.host1_lo6)
        rt = _selftest_host(topo, "router", None, None)
        h2 = _selftest_host(topo, "host2", a.host2_lo4, a.host2_lo6)
        h1_addrs = [f"{a.host1_eth4}/24", f"{a.host1_eth6}/64"]
        rt1_addrs = [f"{a.router_eth1_4}/24", f"{a.router_eth1_6}/64"]
        rt2_addrs = [f"{a.router_eth2_4}/24", f"{a.router_eth2_6}/64"]
        h2_addrs = [f"{a.host2_eth4}/24", f"{a.host2_eth6}/64"]
        veth(h1, rt, h1_addrs, rt1_addrs, name_a="eth0", name_b="eth1")
        veth(rt, h2, rt2_addrs, h2_addrs, name_a="eth2", name_b="eth0")
        h1.ip("-4", "route", "add", "10.1.2.0/24", "via", a.router_eth1_4)
        h1.ip("-6", "route", "add", "2001:db8:2::/64", "via", a.router_eth1_6)
        h2.ip("-4", "route", "add", "10.1.1.0/24", "via", a.router_eth2_4)
        h2.ip("-6", "route", "add", "2001:db8:1::/64", "via", a.router_eth2_6)
    except BaseException:
        topo.close()
        raise
    return topo
