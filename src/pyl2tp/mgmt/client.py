"""A small blocking client of the management API, used by the CLI and by tests."""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterator
from typing import Any

from pyl2tp.errors import L2tpError

from .paths import default_socket_path


class DaemonUnreachable(Exception):
    """No daemon answers on the socket: the CLI says so in one line instead of a traceback."""


class Client:
    def __init__(self, path: str | None = None, timeout: float = 30.0) -> None:
        self.path = path or default_socket_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError as exc:
            self.sock.close()
            raise DaemonUnreachable(
                f"cannot reach the pyl2tp daemon at {self.path}: {exc.strerror}; "
                "start it with 'pyl2tp daemon' or pass --socket") from None
        self.file = self.sock.makefile("rwb")
        self.seq = 0

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, obj: dict[str, Any]) -> None:
        self.file.write(json.dumps(obj).encode() + b"\n")
        self.file.flush()

    def _recv(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise DaemonUnreachable(f"the pyl2tp daemon at {self.path} closed the connection")
        obj: dict[str, Any] = json.loads(line)
        return obj

    def request(self, cmd: str, attrs: dict[str, Any] | None = None, *, dump: bool = False) -> Any:
        """Send one request and return its result; a refusal raises :class:`L2tpError`."""
        self.seq += 1
        req: dict[str, Any] = {"seq": self.seq, "cmd": cmd, "attrs": attrs or {}}
        if dump:
            req["dump"] = True
        self._send(req)
        reply = self._recv()
        if reply.get("ok"):
            return reply.get("result")
        err = reply.get("error") or {}
        raise L2tpError(int(err.get("code", errno.EIO)), str(err.get("message", "")))

    def subscribe(self) -> Iterator[dict[str, Any]]:
        """Yield notifications forever (until the daemon goes away)."""
        self.sock.settimeout(None)
        self._send({"cmd": "subscribe"})
        ack = self._recv()
        if not ack.get("subscribed"):
            raise DaemonUnreachable(f"the daemon at {self.path} refused the subscription: {ack}")
        while True:
            line = self.file.readline()
            if not line:
                return
            yield json.loads(line)
