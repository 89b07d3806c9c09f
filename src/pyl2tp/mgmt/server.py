"""The management API server: JSON lines on a Unix socket, executed against the registry.

Every malformed request gets an error reply, never a disconnect; a line longer than
``MAX_LINE`` or a subscriber that stops reading are the only reasons a connection is closed,
so one misbehaving client cannot grow the daemon's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from pyl2tp.dataplane.model import Session, Tunnel
from pyl2tp.dataplane.registry import Registry
from pyl2tp.errors import L2tpError

from . import commands

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20
SUBSCRIBER_QUEUE = 4096

Extra = Callable[[dict[str, Any]], Any]


class MgmtServer:
    def __init__(self, registry: Registry, path: str, *, mode: int = 0o660,
                 extra: dict[str, Extra] | None = None) -> None:
        self.registry = registry
        self.path = path
        self.mode = mode
        self.extra = dict(extra or {})
        self.server: asyncio.AbstractServer | None = None
        self.subscribers: set[asyncio.Queue[bytes | None]] = set()
        registry.listeners.append(self._on_event)

    async def start(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        if os.path.exists(self.path):
            if socket_alive(self.path):
                raise OSError(errno.EADDRINUSE,
                              f"another daemon is already serving {self.path}")
            os.unlink(self.path)
        self.server = await asyncio.start_unix_server(self._client, self.path, limit=MAX_LINE)
        os.chmod(self.path, self.mode)

    async def close(self) -> None:
        for q in list(self.subscribers):
            _offer(q, None)
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._on_event in self.registry.listeners:
            self.registry.listeners.remove(self._on_event)

    def _on_event(self, event: str, obj: object) -> None:
        if not self.subscribers:
            return
        if isinstance(obj, Tunnel):
            attrs = commands.tunnel_attrs(obj)
        elif isinstance(obj, Session):
            attrs = commands.session_attrs(obj)
        elif isinstance(obj, dict):
            attrs = obj
        else:
            return
        line = json.dumps({"event": event, "attrs": attrs}).encode() + b"\n"
        for q in list(self.subscribers):
            if not _offer(q, line):
                self.subscribers.discard(q)
                _offer(q, None, force=True)

    def publish(self, event: str, attrs: dict[str, Any]) -> None:
        """Send a notification that is not a registry change (e.g. a control-plane event)."""
        self._on_event(event, attrs)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(_reply(None, error=L2tpError(errno.EMSGSIZE,
                                                              "request line too long")))
                    break
                if not line:
                    break
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("a request must be a JSON object")
                except ValueError as exc:
                    writer.write(_reply(None, error=L2tpError(errno.EINVAL,
                                                              f"bad request: {exc}")))
                    await writer.drain()
                    continue
                if req.get("cmd") == "subscribe":
                    await self._stream(writer)
                    break
                writer.write(self.handle(req))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def handle(self, req: dict[str, Any]) -> bytes:
        seq = req.get("seq")
        try:
            extra = self.extra.get(str(req.get("cmd")))
            if extra is not None:
                result = extra(req.get("attrs") or {})
            else:
                result = commands.execute(self.registry, req)
        except L2tpError as exc:
            return _reply(seq, error=exc)
        except Exception as exc:  # a bug must become an error reply, not a dead connection
            log.exception("management request %r failed", req.get("cmd"))
            return _reply(seq, error=L2tpError(errno.EIO, f"internal error: {exc}"))
        return _reply(seq, result=result)

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        q: asyncio.Queue[bytes | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.subscribers.add(q)
        # Acknowledge first, so a client knows that every later change will be reported.
        writer.write(b'{"ok": true, "subscribed": true}\n')
        try:
            while True:
                item = await q.get()
                if item is None:
                    break
                writer.write(item)
                await writer.drain()
        finally:
            self.subscribers.discard(q)


def _offer(q: asyncio.Queue[bytes | None], item: bytes | None, force: bool = False) -> bool:
    try:
        q.put_nowait(item)
        return True
    except asyncio.QueueFull:
        if force:
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()
            q.put_nowait(item)
        return False


def _reply(seq: Any, *, result: Any = None, error: L2tpError | None = None) -> bytes:
    if error is not None:
        obj: dict[str, Any] = {"seq": seq, "ok": False, "error": error.as_dict()}
    else:
        obj = {"seq": seq, "ok": True, "result": result}
    return json.dumps(obj).encode() + b"\n"


def socket_alive(path: str, timeout: float = 1.0) -> bool:
    """Whether a daemon accepts connections on the Unix socket ``path`` (a stale file left by
    a killed daemon refuses them)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
