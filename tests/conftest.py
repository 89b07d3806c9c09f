"""Suite-wide test configuration: environment-dependent markers and namespace fixtures.

Tests marked ``netns`` or ``kernelvm`` need things a developer laptop may lack. Locally such a
test is skipped with the reason; under ``CI=true`` it fails instead, so a misconfigured CI runner
cannot turn the integration suite into a row of silent skips.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.netns import (
    NetNS,
    SelftestTopology,
    selftest_topology,
    sweep_stale_namespaces,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
KERNEL_VM = REPO_ROOT.parent / "shared" / "tools" / "kernel-vm" / "vm"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@functools.cache
def _netns_missing() -> str | None:
    """Why namespace tests cannot run here, or None; probed once per session."""
    if os.geteuid() != 0:
        return "netns: needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    if shutil.which("ip") is None:
        return "netns: the 'ip' command (iproute2) is not installed"
    if not Path("/dev/net/tun").exists():
        return "netns: /dev/net/tun is missing (no tun driver)"
    try:
        NetNS("probe").close()
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"netns: cannot create a network namespace: {first_line}"
    return None


@functools.cache
def _kernelvm_missing() -> str | None:
    if not KERNEL_VM.exists():
        return f"kernelvm: {KERNEL_VM} not found"
    if shutil.which("qemu-system-x86_64") is None:
        return "kernelvm: qemu-system-x86_64 is not installed"
    return None


def require_netns() -> None:
    """Skip (or fail under CI) unless namespace tests can run; for fixtures and helpers."""
    reason = _netns_missing()
    if reason:
        _unavailable(reason)


def pytest_sessionstart(session: pytest.Session) -> None:
    # A test run killed with SIGKILL cannot clean up; the next run removes what it left.
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return
    try:
        sweep_stale_namespaces()
    except Exception:
        # Cleaning up after someone else must never break this run.
        pass


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("netns") is not None:
        require_netns()
    if item.get_closest_marker("kernelvm") is not None:
        reason = _kernelvm_missing()
        if reason:
            _unavailable(reason)


@pytest.fixture
def netns_factory() -> Iterator[Callable[[str], NetNS]]:
    """Make namespaces by role (``netns_factory("client")``); all are destroyed after the test."""
    require_netns()
    created: list[NetNS] = []

    def make(role: str = "ns") -> NetNS:
        ns = NetNS(role)
        created.append(ns)
        return ns

    try:
        yield make
    finally:
        errors: list[BaseException] = []
        for ns in reversed(created):
            try:
                ns.close()
            except BaseException as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def selftest_topo() -> Iterator[SelftestTopology]:
    """host1 — router — host2 with the kernel L2TP selftest's addresses and routes."""
    require_netns()
    with selftest_topology() as topo:
        yield topo
