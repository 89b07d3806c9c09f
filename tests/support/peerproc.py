"""The lifetime of a peer daemon under test: one process in a namespace, a private directory.

:class:`ManagedPeer` is what the interop harnesses (:class:`~tests.support.xl2tpd.Xl2tpd`,
:class:`~tests.support.l2tpns.L2tpns`, :class:`~tests.support.l2tpns.RadiusServer`) have in
common once their configuration is written: a private temporary directory (``workdir``), one
child started with :meth:`NetNS.popen <tests.support.netns.NetNS.popen>` (``proc``) whose
output goes to a file (``log_path``), :meth:`~ManagedPeer.stop` by signal with a SIGKILL
after a grace period, and :meth:`~ManagedPeer.close`, which stops it, prints the log (pytest
shows captured output for failing tests only) and removes the directory. It is a context
manager: ``start`` on enter (``close`` if that fails), ``close`` on exit.

A subclass provides ``start`` (write its files into :meth:`~ManagedPeer._make_workdir`, then
:meth:`~ManagedPeer._spawn`, then wait until it is ready), says in its docstrings what each
signal does to its daemon, and overrides :meth:`~ManagedPeer._after_stop` when the daemon
leaves processes behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from .netns import NetNS

__all__ = ["ManagedPeer", "poll_log", "skip_or_fail"]


def skip_or_fail(reason: str | None) -> None:
    """Skip the calling test because of ``reason`` (a missing tool), or fail it under CI=true:
    CI must exercise the interop tests, never skip them silently. None: do nothing."""
    import pytest

    if reason:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)


def poll_log(
    read: Callable[[], str],
    alive: Callable[[], bool],
    rx: re.Pattern[str],
    since: int,
    timeout: float,
    what: str,
    error: type[Exception],
    interval: float = 0.05,
) -> re.Match[str]:
    """Poll ``read()`` (from offset ``since``) until ``rx`` matches; return the match.

    Raises TimeoutError with the text attached after ``timeout`` seconds, or ``error`` as soon
    as ``alive()`` is false and the text (read after that check) still does not match.
    ``what`` names the process in both messages.
    """
    deadline = time.monotonic() + timeout
    while True:
        exited = not alive()
        m = rx.search(read(), since)
        if m:
            return m
        if exited:
            raise error(f"{what} exited while waiting for {rx.pattern!r}:\n{read()[since:]}")
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{what}: no {rx.pattern!r} in the log after {timeout:g}s:\n{read()[since:]}"
            )
        time.sleep(interval)


class ManagedPeer:
    """One peer process in ``ns`` with a private work directory (see the module docstring).

    Class attributes a subclass sets: ``error`` (raised for "already started", "not started"
    and an exit while waiting for the log), ``log_title`` (the heading :meth:`close` prints
    above the log), ``wait_timeout`` and ``poll_interval`` (the defaults of
    :meth:`wait_for_log`).
    """

    error: ClassVar[type[Exception]] = RuntimeError
    log_title: ClassVar[str] = "log"
    wait_timeout: ClassVar[float] = 5.0
    poll_interval: ClassVar[float] = 0.02

    def __init__(self, ns: NetNS) -> None:
        self.ns = ns
        self.proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        # Set by start() (through _make_workdir), which creates the directory; close()
        # removes it.
        self.workdir: Path
        self.log_path: Path

    # -- for subclasses' start() ------------------------------------------------------------

    def _check_startable(self) -> None:
        if self.proc is not None or self._closed:
            raise self.error(f"{self!r} was already started (or closed)")

    def _make_workdir(self, prefix: str) -> Path:
        """Create the private directory ``PREFIX-NSNAME-XXXXXX`` (removed by :meth:`close`)."""
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-{self.ns.name}-"))
        return self.workdir

    def _spawn(self, argv: Sequence[str], output: Path, **kw: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the namespace, stdin from /dev/null, stdout and stderr appended to
        ``output``; ``kw`` goes to ``popen`` (e.g. ``env``)."""
        with open(output, "ab") as out:
            self.proc = self.ns.popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kw
            )
        return self.proc

    # -- state --------------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        """The daemon's pid (``ip netns exec``, and ``unshare``/``sh`` wrappers, exec into it)."""
        if self.proc is None:
            raise self.error("not started")
        return self.proc.pid

    # -- lifetime -----------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Send ``sig``, wait up to ``timeout`` seconds (then SIGKILL), then
        :meth:`_after_stop`. Returns the exit status (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._after_stop(self.proc.pid)
        return self.proc.returncode

    def _after_stop(self, pid: int) -> None:
        """End what the daemon (``pid``, also its process group id) left behind: nothing by
        default."""

    def close(self) -> None:
        """Stop (if running), print the log (pytest shows it for failing tests), remove files."""
        if self._closed:
            return
        self._closed = True
        if not hasattr(self, "workdir"):
            return  # never started: nothing to stop or remove
        try:
            self.stop()
            if self.proc is not None:
                print(f"\n----- {self.log_title}, namespace {self.ns.name} -----\n{self.log()}")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self) -> Self:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the log ------------------------------------------------------------------------------

    def log(self) -> str:
        """Everything written to ``log_path`` so far ("" before ``start``)."""
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    def log_mark(self) -> int:
        """The current end of the log, for ``wait_for_log(..., since=mark)``."""
        return len(self.log())

    def wait_for_log(
        self,
        pattern: str | re.Pattern[str],
        timeout: float | None = None,
        *,
        since: int = 0,
        interval: float | None = None,
    ) -> re.Match[str]:
        """Poll the log (from offset ``since``) until ``pattern`` matches; return the match.

        Raises TimeoutError with the log attached, or the class's ``error`` as soon as the
        process exits without the line having appeared. ``timeout`` and ``interval`` default
        to the class's ``wait_timeout`` and ``poll_interval``.
        """
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return poll_log(
            self.log,
            self.alive,
            rx,
            since,
            self.wait_timeout if timeout is None else timeout,
            repr(self),
            self.error,
            self.poll_interval if interval is None else interval,
        )

    def log_matches(self, pattern: str | re.Pattern[str], *, since: int = 0) -> list[re.Match[str]]:
        """All matches of ``pattern`` in the log from ``since`` on."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        return list(rx.finditer(self.log(), since))
