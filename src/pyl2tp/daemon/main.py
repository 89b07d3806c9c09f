"""``pyl2tp daemon``: the asyncio service that owns the data plane and serves the management API.

It runs in the foreground, logs to stderr, and on SIGTERM or SIGINT deletes every tunnel (and
so every device it created) before exiting, so a stopped daemon leaves the host as it found it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

from pyl2tp import __version__
from pyl2tp.dataplane.registry import Registry
from pyl2tp.dataplane.userspace import UserspaceBackend
from pyl2tp.mgmt.debug import debug_listing
from pyl2tp.mgmt.paths import default_socket_path
from pyl2tp.mgmt.server import MgmtServer

log = logging.getLogger("pyl2tp.daemon")


class Daemon:
    """Wires the registry, the userspace backend and the management server together."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.loop = asyncio.get_running_loop()
        self.backend = UserspaceBackend(self.loop)
        self.registry = Registry()
        self.backend.attach(self.registry)
        self.server = MgmtServer(self.registry, socket_path, extra={
            "debug_tunnels": lambda _a: debug_listing(self.registry),
            "endpoint_stats": lambda _a: self.endpoint_stats(),
            "version": lambda _a: {"version": __version__, "backend": "userspace"},
        })
        self.stopping = asyncio.Event()
        self.registry.listeners.append(self._log_event)

    def endpoint_stats(self) -> list[dict[str, Any]]:
        return [
            {"encap": "udp" if ep.encap == 0 else "ip", "local": ep.local, "port": ep.port,
             "tunnels": len(ep.tunnels), **ep.counters()}
            for ep in self.backend.endpoints.values()
        ]

    @staticmethod
    def _log_event(event: str, obj: object) -> None:
        tid = getattr(obj, "tunnel_id", None)
        if tid is None:
            tunnel = getattr(obj, "tunnel", None)
            tid = getattr(tunnel, "tunnel_id", None)
        log.info("%s tunnel_id=%s session_id=%s", event, tid, getattr(obj, "session_id", "-"))

    async def run(self) -> None:
        await self.server.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        log.info("pyl2tp %s serving %s (backend userspace)", __version__, self.socket_path)
        await self.stopping.wait()
        log.info("shutting down: deleting %d tunnels", len(self.registry.tunnels))
        self.backend.close()
        await self.server.close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", default=None, help="management socket path "
                   "(default: /run/pyl2tp/<netns>.sock or /run/pyl2tp/pyl2tp.sock)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="stderr log level")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print("pyl2tp daemon: must run as root (it creates TAP devices and raw sockets)",
              file=sys.stderr)
        return 1
    path = args.socket or default_socket_path()

    async def main() -> None:
        daemon = Daemon(path)
        await daemon.run()

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"pyl2tp daemon: {exc.strerror or exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(Exception):
        logging.shutdown()
    return 0
