"""Run shell scripts inside the reference Linux kernel VM, for tests that need the real net/l2tp.

The development machines run a kernel without L2TP, so the behaviour pyl2tp mirrors is only
observable in a QEMU guest booted by ``<repo>/../shared/tools/kernel-vm/vm``. That tool boots
Debian's stock kernel with the host's root filesystem mounted read-only (copy-on-write: guest
writes never reach the host), runs one script as root and exits with the script's status. This
module wraps it for tests:

* :func:`vm_tool`, :func:`vm_available`, :func:`vm_ready`, :func:`ensure_vm_built`
* :func:`run_guest` -- run a script, get a :class:`GuestResult` (status, output, boot time)
* :func:`modprobe_lines` -- the module-loading lines a guest script must start with

Guest scripts
    Run with ``sh`` as root; every host binary and file is visible at the same path (python3,
    ip, tcpdump, this checkout). Kernel modules are NOT auto-loaded (the guest has no
    ``/lib/modules`` for its kernel), so load them explicitly, exactly as ``vm modprobe-hint``
    says::

        modprobe -d "$VM_MODROOT" l2tp_eth

    (``$VM_MODROOT`` and ``$VM_KVER`` are exported by the tool). Anything the script writes stays
    in the guest: results must be printed.

Networking with the host
    ``run_guest(..., tap="kvtap-1a2b3c", netns=ns.name, tap_addr="10.201.7.1/24")`` connects the
    guest's ``eth0`` to a new tap device created *inside* the host namespace ``netns`` (create it
    yourself, e.g. with :class:`tests.support.netns.NetNS`), and assigns ``tap_addr`` to the tap
    as soon as it appears (the tool creates the tap just before QEMU starts, so the address cannot
    be configured earlier). The guest configures its own side (``ip addr add 10.201.7.2/24 dev
    eth0; ip link set eth0 up``). Verified: guest -> host-namespace ping and host-namespace ->
    guest ping both work (virtio-net; first packets take ~1 s while ARP resolves under TCG).
    The tool deletes the tap afterwards; the namespace is the caller's to delete. Use private
    addresses, and only inside namespaces you own.

Cost
    Software emulation (TCG, one vCPU): the script starts about 3 s into the guest's boot (by the
    guest's clock) and a trivial run costs 6-8 s of host wall time; the guest runs several times
    slower than the host. Use the VM for behaviour and interoperability, never for
    timing, and batch many checks into one script.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "L2TP_MODULES",
    "MODPROBE_HINT",
    "GuestResult",
    "KernelVMError",
    "ensure_vm_built",
    "modprobe_lines",
    "require_vm",
    "run_guest",
    "vm_available",
    "vm_cache_dir",
    "vm_ready",
    "vm_tool",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
#: What ``vm modprobe-hint`` prints: the only way modules load in the guest.
MODPROBE_HINT = 'modprobe -d "$VM_MODROOT" MODULE'
#: The modules behind `ip l2tp` with Ethernet pseudowires over UDP, IPv4 IP and IPv6 IP encap.
L2TP_MODULES = ("l2tp_core", "l2tp_netlink", "l2tp_eth", "l2tp_ip", "l2tp_ip6")

_START = "@@kernelvm-script-start"
_END = "@@kernelvm-script-end"
_MARK_RE = re.compile(rf"^({_START}|{_END}) (\S+)$")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class KernelVMError(RuntimeError):
    """The VM tool is missing, could not build its image, or a guest run failed to start."""


@dataclass(frozen=True)
class GuestResult:
    """Outcome of one guest run.

    ``returncode`` is the guest script's exit status; 124 means the guest did not finish (timeout
    or crash) and 2 a usage error of the VM tool. ``output`` is everything the script wrote to
    stdout and stderr (merged in the guest), without the tool's VM-BEGIN/VM-DONE framing or this
    module's markers. ``host_stderr`` holds the tool's own messages. ``boot_seconds`` is the
    guest's uptime when the script started (kernel boot + init, by the guest's clock; None if the
    script never started); ``vm_overhead_seconds`` is host wall time not spent in the script
    (QEMU start, boot, power-off); ``elapsed`` the whole run.
    """

    returncode: int
    output: str
    host_stderr: str
    boot_seconds: float | None
    vm_overhead_seconds: float | None
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()

    def check(self) -> GuestResult:
        """Return self, or raise with the output attached so a test failure explains itself."""
        if self.returncode != 0:
            raise KernelVMError(
                f"guest script exited with {self.returncode}\n--- output ---\n{self.output}"
                f"\n--- vm ---\n{self.host_stderr}"
            )
        return self


def vm_tool() -> Path:
    """``<repo>/../shared/tools/kernel-vm/vm`` (``KERNEL_VM`` overrides, for other layouts)."""
    override = os.environ.get("KERNEL_VM")
    if override:
        return Path(override)
    return REPO_ROOT.parent / "shared" / "tools" / "kernel-vm" / "vm"


def vm_cache_dir() -> Path:
    """Where the tool keeps its image (same default and override as the tool itself)."""
    return Path(os.environ.get("KERNEL_VM_CACHE", "/var/cache/l2tp-kernel-vm"))


def vm_available() -> bool:
    """The VM can be used here: the tool exists, QEMU is installed and we are root."""
    return (
        os.access(vm_tool(), os.X_OK)
        and shutil.which("qemu-system-x86_64") is not None
        and os.geteuid() == 0
    )


def vm_ready() -> bool:
    """The VM can boot right now without building its image first."""
    return vm_available() and (vm_cache_dir() / "ready").exists()


def require_vm(missing: str | None = None) -> None:
    """Skip the calling test unless the VM can run here and ``missing`` (a further unmet
    prerequisite, described) is None; under CI=true fail instead, so that interop cannot turn
    into silent skips. Then make sure the image is built."""
    import pytest

    reason = missing if vm_available() else "kernelvm: needs the VM tool, QEMU and root"
    if reason:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    ensure_vm_built()


def ensure_vm_built(timeout: float = 900) -> None:
    """Run ``vm build`` (idempotent: seconds when the image exists, about a minute otherwise)."""
    if not os.access(vm_tool(), os.X_OK):
        raise KernelVMError(f"kernel VM tool not found at {vm_tool()}")
    proc = subprocess.run(
        [str(vm_tool()), "build"], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0 or not (vm_cache_dir() / "ready").exists():
        raise KernelVMError(
            f"vm build failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}".rstrip()
        )


def modprobe_lines(modules: Iterable[str] = L2TP_MODULES, *, fail_status: int = 90) -> str:
    """Shell lines loading ``modules`` in the guest, exiting with ``fail_status`` on failure."""
    return "".join(
        f'modprobe -d "$VM_MODROOT" {m} || '
        f'{{ echo "modprobe {m} failed" >&2; exit {fail_status}; }}\n'
        for m in modules
    )


def _ip_prefix(netns: str | None) -> list[str]:
    return ["ip", "-n", netns] if netns else ["ip"]


def _assign_tap_address(
    tap: str, netns: str | None, cidr: str, stop: threading.Event, errors: list[str]
) -> None:
    """Wait for the tool to create the tap, then give it ``cidr`` (the guest boots meanwhile)."""
    deadline = time.monotonic() + 120
    ip = _ip_prefix(netns)
    while not stop.is_set() and time.monotonic() < deadline:
        probe = subprocess.run([*ip, "link", "show", "dev", tap], capture_output=True, text=True)
        if probe.returncode == 0:
            extra = ["nodad"] if ":" in cidr else []
            res = subprocess.run(
                [*ip, "addr", "add", cidr, "dev", tap, *extra], capture_output=True, text=True
            )
            if res.returncode != 0:
                errors.append(f"cannot add {cidr} to {tap}: {res.stderr.strip()}")
            return
        stop.wait(0.05)
    if not stop.is_set():
        errors.append(f"tap {tap} never appeared")


def run_guest(
    script: str,
    *,
    tap: str | None = None,
    netns: str | None = None,
    tap_addr: str | None = None,
    timeout: float = 300,
    mem: int = 1024,
    args: Sequence[str] = (),
) -> GuestResult:
    """Boot the VM, run ``script`` (shell text) as root in it, return its status and output.

    ``tap``/``netns``/``tap_addr`` connect the guest to the host (see the module docstring).
    ``timeout`` bounds the guest run (the tool kills QEMU and reports 124); this function adds
    a margin for a first-time image build and then kills the tool's process group itself.
    ``args`` become the script's positional parameters.
    """
    if netns and not tap:
        raise ValueError("netns only makes sense with tap")
    if tap_addr and not tap:
        raise ValueError("tap_addr needs tap")
    if tap and not _IFNAME_RE.fullmatch(tap):
        raise ValueError(f"invalid interface name {tap!r}")
    tool = vm_tool()
    if not os.access(tool, os.X_OK):
        raise KernelVMError(f"kernel VM tool not found at {tool}")
    with tempfile.TemporaryDirectory(prefix="kernelvm-") as tmp:
        # The guest reads the script through its view of the host filesystem, so a host temp file
        # works; the start marker lets us time the boot and is removed from the output.
        path = Path(tmp) / "guest.sh"
        up = '$(cut -d" " -f1 /proc/uptime)'
        path.write_text(
            f"trap 'echo \"{_END} {up}\"' EXIT\n"
            f'echo "{_START} {up}"\n{script}\n'
        )
        argv = [str(tool), "run", "--timeout", str(int(timeout)), "--mem", str(mem)]
        if tap:
            argv += ["--tap", tap]
            if netns:
                argv += ["--netns", netns]
        argv += [str(path), *args]

        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        stop = threading.Event()
        tap_errors: list[str] = []
        helpers: list[threading.Thread] = []
        if tap and tap_addr:
            helpers.append(
                threading.Thread(
                    target=_assign_tap_address,
                    args=(tap, netns, tap_addr, stop, tap_errors),
                    daemon=True,
                )
            )
        err_chunks: list[str] = []
        assert proc.stderr is not None and proc.stdout is not None
        stderr_pipe = proc.stderr
        helpers.append(
            threading.Thread(target=lambda: err_chunks.append(stderr_pipe.read()), daemon=True)
        )
        killed = threading.Event()

        def watchdog() -> None:
            # A first boot may build the image first; beyond that margin the tool itself hung.
            if not stop.wait(timeout + 600):
                killed.set()
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        helpers.append(threading.Thread(target=watchdog, daemon=True))
        for t in helpers:
            t.start()

        out_lines: list[str] = []
        marks: dict[str, float] = {}
        for line in proc.stdout:
            m = _MARK_RE.match(line.rstrip("\n"))
            if m:
                try:
                    marks.setdefault(m.group(1), float(m.group(2)))
                except ValueError:
                    pass
                continue
            out_lines.append(line)
        rc = proc.wait()
        stop.set()
        for t in helpers:
            t.join(timeout=5)
        elapsed = time.monotonic() - t0
        if killed.is_set() and tap:
            # The tool never reached its own cleanup: remove the tap it created.
            subprocess.run([*_ip_prefix(netns), "link", "del", tap], capture_output=True)
    host_err = "".join(err_chunks) + "".join(f"kernelvm: {e}\n" for e in tap_errors)
    if killed.is_set():
        host_err += "kernelvm: killed the VM tool after its timeout plus margin\n"
        rc = 124
    # The tool's output pipeline buffers, so lines cannot be timed as they arrive; instead the
    # guest reports its uptime when the script starts and ends, and everything else is overhead.
    start, end = marks.get(_START), marks.get(_END)
    overhead = elapsed - (end - start) if start is not None and end is not None else None
    return GuestResult(
        returncode=rc,
        output="".join(out_lines),
        host_stderr=host_err,
        boot_seconds=start,
        vm_overhead_seconds=overhead,
        elapsed=elapsed,
    )
