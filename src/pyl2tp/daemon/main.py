"""``pyl2tp daemon``: the asyncio service that owns the data plane and serves the management API.

It runs in the foreground, logs to stderr (as text, JSON or key=value: ``--log-format``), and
on SIGTERM or SIGINT deletes every tunnel (and so every device it created) before exiting, so a
stopped daemon leaves the host as it found it. With ``--metrics ADDR:PORT`` it also serves
Prometheus metrics (see :mod:`pyl2tp.daemon.metrics`); without it no metrics code runs at all.

The data plane is the userspace backend or, with ``--backend linux`` (or ``auto`` on a kernel
whose L2TP modules load), the kernel's ``net/l2tp`` through :mod:`pyl2tp.dataplane.linux`;
everything above the backend is the same either way (docs/kernel-offload.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyl2tp import __version__
from pyl2tp.control.params import ConnectionParams
from pyl2tp.control.plane import Decision
from pyl2tp.daemon import config as config_mod
from pyl2tp.daemon import logfmt
from pyl2tp.daemon.api import ControlApi
from pyl2tp.daemon.config import Config
from pyl2tp.daemon.configured import ConfigManager, connection_params, tune_gc
from pyl2tp.daemon.control import ControlDriver, raise_nofile_limit
from pyl2tp.daemon.metrics import MetricsServer, MetricsSource, parse_address
from pyl2tp.daemon.ppp_sessions import PppManager
from pyl2tp.dataplane.genl_l2tp import NO_L2TP
from pyl2tp.dataplane.linux import LinuxBackend, kernel_has_l2tp
from pyl2tp.dataplane.registry import Registry
from pyl2tp.dataplane.userspace import Endpoint, UserspaceBackend
from pyl2tp.mgmt.debug import debug_listing
from pyl2tp.mgmt.paths import default_socket_path
from pyl2tp.mgmt.server import MgmtServer
from pyl2tp.wire.message import ControlMessage

log = logging.getLogger("pyl2tp.daemon")

_SESSION_LABEL = re.compile(r"session (\d+)/(\d+)")


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    """Where to serve Prometheus metrics, and whether to export a series set per session."""

    host: str | None
    port: int
    sessions: bool = False


BACKENDS = ("auto", "userspace", "linux")


def choose_backend(choice: str, has_l2tp: Callable[[], bool] = kernel_has_l2tp
                   ) -> tuple[str, str]:
    """The backend ``choice`` resolves to, and why (for the start-up line and ``version``):
    ``auto`` takes the kernel's L2TP when its netlink family resolves (after trying to load
    the modules), else the userspace one."""
    if choice not in BACKENDS:
        raise ValueError(f"unknown backend {choice!r} (one of {', '.join(BACKENDS)})")
    if choice != "auto":
        return choice, "configured"
    if has_l2tp():
        return "linux", "auto: the kernel has L2TP"
    return "userspace", "auto: the kernel has no L2TP"


KERNEL_POLL = 10.0
"""Seconds between reads of the kernel's tables on the linux backend: counters stay fresh for
the notifications, and tunnels or sessions deleted behind the daemon's back leave it too."""


def make_backend(name: str, loop: asyncio.AbstractEventLoop, socket_path: str
                 ) -> UserspaceBackend:
    """The backend by name; the linux one records the unmanaged tunnels it creates beside the
    management socket, so the next start can delete those a killed run left in the kernel."""
    if name == "linux":
        return LinuxBackend(loop, leftovers=socket_path + ".kernel-tunnels")
    return UserspaceBackend(loop)


class Daemon:
    """Wires the registry, the data-plane backend and the management server together."""

    def __init__(self, socket_path: str, config: Config | None = None,
                 config_path: str | None = None, *,
                 metrics: MetricsOptions | None = None, backend: str = "userspace",
                 backend_reason: str = "configured") -> None:
        self.socket_path = socket_path
        self.config_path = config_path
        self.loop = asyncio.get_running_loop()
        self.backend = make_backend(backend, self.loop, socket_path)
        self.backend_reason = backend_reason
        self.registry = Registry()
        self.backend.attach(self.registry)
        self.base_params = ConnectionParams(host_name=socket.gethostname() or "pyl2tp")
        self.driver = ControlDriver(self.loop, self.registry, self.backend, policy=self.accept,
                              publish=self._publish,
                              max_tunnels=config.daemon.max_tunnels if config else 4096)
        self.metrics_options = metrics
        self.metrics: MetricsSource | None = None
        self.metrics_server: MetricsServer | None = None
        self.manager: ConfigManager | None = None
        if config is not None:
            self.manager = ConfigManager(self.loop, self.registry, self.driver, config)
            self.driver.observers.append(self.manager.on_event)
            self.base_params = connection_params(
                config.defaults, version=3, secret=None, host_name=config.daemon.host_name,
                router_id=self.manager.router_id())
        self.ppp = PppManager(self.loop, self.driver, profile=self._ppp_profile,
                              switch_target=self._switch_target,
                              host_name=config.daemon.host_name if config else
                              self.base_params.host_name, publish=self._publish)
        self.control_api = ControlApi(self.driver, lambda: self.base_params,
                                      lambda name: self._ppp_profile(name) is not None)
        self.server = MgmtServer(self.registry, socket_path, extra={
            "debug_tunnels": lambda _a: debug_listing(self.registry),
            "endpoint_stats": lambda _a: self.endpoint_stats(),
            "version": lambda _a: {"version": __version__, "backend": self.backend.name,
                                   "backend_reason": self.backend_reason},
            "ppp_dump": lambda _a: self.ppp.dump(),
            "control_stats": lambda _a: {"plane": dict(sorted(self.driver.plane.stats.items())),
                                         "connections": len(self.driver.plane.conns)},
            **self.control_api.commands(),
        })
        self.stopping = asyncio.Event()
        self.registry.listeners.append(self._log_event)
        if metrics is not None:
            self.metrics = MetricsSource(registry=self.registry, driver=self.driver,
                                         backend=self.backend, ppp=self.ppp,
                                         version=__version__, sessions=metrics.sessions)
            self.driver.observers.append(self.metrics.on_control_event)
            self.registry.listeners.append(self.metrics.on_registry)

    def _ppp_profile(self, name: str) -> config_mod.PppProfile | None:
        return self.manager.config.ppp_profile(name) if self.manager is not None else None

    def _switch_target(self, name: str) -> Any:
        if self.manager is None:
            return None
        dialled = self.manager.dialled.get(name)
        return dialled.conn if dialled is not None else None

    def endpoint_stats(self) -> list[dict[str, Any]]:
        return [
            {"encap": "udp" if ep.encap == 0 else "ip", "local": ep.local, "port": ep.port,
             "tunnels": len(ep.tunnels), **ep.counters()}
            for ep in self.backend.endpoints.values()
        ]

    def _publish(self, event: str, attrs: dict[str, Any]) -> None:
        self.server.publish(event, attrs)
        if self.metrics is not None:
            self.metrics.on_publish(event, attrs)
        if event.endswith("_down"):
            log.info("%s %s", event, attrs, extra=_event_extra(event, attrs))

    def accept(self, ep: Endpoint, peer: tuple[str, int], msg: ControlMessage) -> Decision:
        """Whom we serve: with a configuration file, its ``[[peer]]`` policies; without one
        (a daemon driven through the API), anyone who reaches a listener."""
        decision: Decision
        if self.manager is not None:
            decision = self.manager.accept(ep, peer, msg)
        elif ep not in self.driver.listeners:
            # A socket we only dial from: ignore, rather than answer (and so reflect) what
            # anyone sends it.
            return None
        else:
            decision = dataclasses.replace(self.base_params, version=msg.version)
        return decision

    @staticmethod
    def _log_event(event: str, obj: object) -> None:
        tid = getattr(obj, "tunnel_id", None)
        if tid is None:
            tunnel = getattr(obj, "tunnel", None)
            tid = getattr(tunnel, "tunnel_id", None)
        sid = getattr(obj, "session_id", None)
        extra: dict[str, Any] = {"event": event, "tunnel_id": tid}
        if sid is not None:
            extra["session_id"] = sid
        remote = getattr(obj, "remote", None) or getattr(getattr(obj, "tunnel", None),
                                                         "remote", None)
        if remote is not None:
            extra["peer"] = remote
        log.info("%s tunnel_id=%s session_id=%s", event, tid, "-" if sid is None else sid,
                 extra=extra)

    def reload(self) -> None:
        """SIGHUP: re-read the file; an invalid one changes nothing."""
        if self.manager is None or self.config_path is None:
            log.warning("SIGHUP ignored: the daemon was started without --config")
            return
        try:
            new = config_mod.load(self.config_path)
        except config_mod.ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        log.info("reloading %s", self.config_path)
        self.manager.apply(new)

    async def run(self) -> None:
        soft, _hard = raise_nofile_limit()
        log.debug("descriptor limit %d", soft)
        await self.server.start()
        if self.metrics is not None and self.metrics_options is not None:
            self.metrics_server = MetricsServer(self.metrics, self.metrics_options.host,
                                                self.metrics_options.port)
            try:
                await self.metrics_server.start()
            except OSError:
                await self.server.close()
                raise
        poll: asyncio.Task[None] | None = None
        if isinstance(self.backend, LinuxBackend):
            left = self.backend.clean_leftovers()
            if left:
                log.warning("deleted %d kernel tunnels a previous run left behind", left)
            self.backend.watch()
            poll = self.loop.create_task(self._poll_kernel(self.backend))
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        if self.manager is not None:
            self.manager.apply(self.manager.config)  # tunes the collector once applied
        else:
            tune_gc()
        log.info("pyl2tp %s serving %s (backend %s, %s)", __version__, self.socket_path,
                 self.backend.name, self.backend_reason)
        await self.stopping.wait()
        if poll is not None:
            poll.cancel()
        log.info("shutting down: deleting %d tunnels (%d control connections)",
                 len(self.registry.tunnels), len(self.driver.plane.conns))
        if self.manager is not None:
            self.manager.shutdown()
        self.ppp.shutdown()
        self.driver.shutdown()
        # Give the peers a moment to acknowledge our StopCCNs before the sockets close.
        for _ in range(30):
            if all(c.transport.outstanding == 0 for c in self.driver.plane.conns.values()):
                break
            await asyncio.sleep(0.05)
        self.backend.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        await self.server.close()

    async def _poll_kernel(self, backend: LinuxBackend) -> None:
        while True:
            await asyncio.sleep(KERNEL_POLL)
            backend.refresh_stats()


def _event_extra(event: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """The structured-log fields of a published event: its ids and reason."""
    extra: dict[str, Any] = {"event": event}
    tid = attrs.get("conn_id", attrs.get("tunnel_id"))
    sid = attrs.get("session_id")
    label = attrs.get("session")
    if tid is None and isinstance(label, str):
        m = _SESSION_LABEL.search(label)
        if m:
            tid, sid = int(m.group(1)), int(m.group(2))
    for key, value in (("tunnel_id", tid), ("session_id", sid), ("reason", attrs.get("reason")),
                       ("ifname", attrs.get("ifname")), ("peer", attrs.get("peer"))):
        if value is not None and value != "":
            extra[key] = value
    return extra


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, metavar="FILE",
                   help="TOML configuration (see docs/configuration.md); SIGHUP reloads it")
    p.add_argument("--check", "--check-config", dest="check", action="store_true",
                   help="only check the configuration file and exit")
    p.add_argument("--socket", default=None, help="management socket path "
                   "(default: /run/pyl2tp/<netns>.sock or /run/pyl2tp/pyl2tp.sock)")
    p.add_argument("--log-level", default=None,
                   choices=["debug", "info", "warning", "error"], help="stderr log level")
    p.add_argument("--log-format", default=None, choices=list(logfmt.FORMATS),
                   help="stderr log format: text (default), json (one object per line) or "
                   "kv (key=value); json and kv carry tunnel_id/session_id/peer as fields")
    p.add_argument("--metrics", default=None, metavar="ADDR:PORT",
                   help="serve Prometheus metrics on http://ADDR:PORT/metrics "
                   "(e.g. 127.0.0.1:9101, [::1]:9101, :9101 for every address); off by default")
    p.add_argument("--backend", default=None, choices=list(BACKENDS),
                   help="data plane: userspace, linux (the kernel's L2TP, see "
                   "docs/kernel-offload.md) or auto (linux when the kernel has L2TP; default)")
    p.add_argument("--metrics-sessions", action="store_true",
                   help="also export one series set per session (off: per tunnel only)")


def run(args: argparse.Namespace) -> int:
    config: Config | None = None
    if args.config is not None:
        try:
            config = config_mod.load(args.config)
        except config_mod.ConfigError as exc:
            print(f"pyl2tp daemon: {exc}", file=sys.stderr)
            return 1
    # `[daemon] metrics` / `metrics_sessions` / `log_format` in the file; the command line wins.
    metrics_text = args.metrics or (config.daemon.metrics if config else None)
    metrics: MetricsOptions | None = None
    if metrics_text:
        try:
            host, port = parse_address(str(metrics_text))
        except ValueError as exc:
            print(f"pyl2tp daemon: --metrics: {exc}", file=sys.stderr)
            return 1
        sessions = args.metrics_sessions or bool(config and config.daemon.metrics_sessions)
        metrics = MetricsOptions(host, port, sessions=sessions)
    elif args.metrics_sessions:
        print("pyl2tp daemon: --metrics-sessions needs --metrics ADDR:PORT", file=sys.stderr)
        return 1
    log_format = args.log_format or (config.daemon.log_format if config else "text")
    if log_format not in logfmt.FORMATS:
        print(f"pyl2tp daemon: unknown log format {log_format!r}", file=sys.stderr)
        return 1
    if args.check:
        if config is None:
            print("pyl2tp daemon: --check needs --config FILE", file=sys.stderr)
            return 1
        print(f"{args.config}: OK")
        return 0
    level = args.log_level or (config.daemon.log_level if config else "info")
    logfmt.setup_logging(level, log_format, sys.stderr)
    if os.geteuid() != 0:
        print("pyl2tp daemon: must run as root (it creates TAP devices and raw sockets)",
              file=sys.stderr)
        return 1
    path = args.socket or (config.daemon.socket if config else None) or default_socket_path()
    choice = args.backend or (config.daemon.backend if config else None) or "auto"
    if choice == "linux" and not kernel_has_l2tp():
        print(f"pyl2tp daemon: backend linux: {NO_L2TP}; use --backend userspace",
              file=sys.stderr)
        return 1
    backend, reason = choose_backend(choice)

    async def main() -> None:
        daemon = Daemon(path, config, args.config, metrics=metrics, backend=backend,
                        backend_reason=reason)
        await daemon.run()

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"pyl2tp daemon: {exc.strerror or exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(Exception):
        logging.shutdown()
    return 0
