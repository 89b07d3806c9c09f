"""l2tpns as an interoperability peer, with a small RADIUS server to authenticate its users.

l2tpns (2.4.x, Debian's ``l2tpns`` package) is a userspace L2TPv2 LNS: it terminates the PPP
sessions itself (LCP, PAP/CHAP, IPCP) and moves their packets through one TUN device, so,
unlike xl2tpd, it needs neither pppd nor the kernel's PPP. It authenticates every user over
RADIUS and hands out addresses from its own pool. This module runs it in a
:class:`~tests.support.netns.NetNS`, with :class:`RadiusServer` beside it on the namespace's
loopback.

RADIUS: why not freeradius
    The RADIUS side is :class:`RadiusServer`, a stdlib-only responder that runs as a child
    process in the namespace (``python -m tests.support.l2tpns radius CONFIG``). Configuring
    freeradius privately means copying its whole ``raddb`` tree (dozens of modules and sites,
    EAP certificates) and trimming it; it starts in about a second and its log is a debugging
    transcript. The responder is ~200 lines that do exactly what RFC 2865/2866 require and
    nothing else, and it records every request as a JSON line, so a test can assert what
    l2tpns sent (CHAP or PAP, accounting Start and Stop) as well as what it was told.
    What it checks, honestly:

    * Access-Request: User-Name present; exactly one of User-Password (PAP: the RFC 2865
      §5.2 MD5 chain decrypted with the shared secret and the Request Authenticator, trailing
      NULs removed) or CHAP-Password (RFC 2865 §5.3: MD5(ident + password + challenge), the
      challenge being CHAP-Challenge when present, else the Request Authenticator); a
      Message-Authenticator, when present, must verify (RFC 3579 §3.2). Unknown users,
      wrong passwords and bad packets get an Access-Reject with a Reply-Message.
    * Accounting-Request: the Request Authenticator must be MD5(packet with 16 zero octets +
      secret) (RFC 2866 §3); a request that does not verify is silently discarded, as the RFC
      says, and recorded as ``dropped``.
    * Every reply carries the Response Authenticator, MD5(code + id + length + request
      authenticator + attributes + secret), which l2tpns verifies.

    An Access-Accept carries Service-Type Framed and Framed-Protocol PPP, plus the user's own
    reply attributes (:class:`RadiusUser`): none by default, so l2tpns assigns an address from
    its pool.

l2tpns quirks the harness deals with
    * The address pool file is compiled in (``/etc/l2tpns/ip_pool``). l2tpns runs in a mount
      namespace of its own in which the harness's pool file is bind-mounted over that path;
      nothing outside that mount namespace changes (as ``tests/support/xl2tpd.py`` does for
      pppd).
    * Clustering cannot be switched off: whatever the configuration says, l2tpns joins its
      multicast group on ``cluster_interface`` (default ``eth0``) and exits if that has no
      IPv4 address; then it waits ``cluster_hb_timeout`` for a master before electing itself,
      and until then it forwards every L2TP packet to the (missing) master. The harness
      points ``cluster_interface`` at ``lo``, so heartbeats stay inside the namespace, with
      the shortest timers l2tpns accepts (1.5 s), and waits for "I am declaring myself the
      master!" before calling l2tpns ready.
    * ``bind_address`` is where l2tpns listens for L2TP (UDP 1701) and also the address it puts
      on its TUN device, unless ``iftun_address`` gives the device another one. The address
      l2tpns claims as its own in IPCP is ``peer_address``; unset, 2.4.1 sends its cluster
      interface's address, so the harness always sets it (see :class:`L2tpnsConfig`).
    * l2tpns has no per-session interface: every session's packets go through the one TUN
      device, and the pool's prefix is routed to it. What it knows about sessions and tunnels
      is in its log and its telnet CLI (:meth:`L2tpns.sessions`, :meth:`L2tpns.tunnels`); a
      closed session stays in the CLI's table for a while with address ``0.0.0.0``.
    * SIGTERM ends l2tpns without telling anyone (cluster semantics: the sessions live on in
      other nodes); SIGQUIT first sends StopCCN (result 6, "L2TPNS Closing") on every tunnel.
    * At debug level 3 l2tpns logs PAP passwords in clear ("PAP login bob/builder").

Typical use::

    with RadiusServer(ns, "radsecret", [RadiusUser("alice", "pw")]) as radius, \\
         L2tpns(ns, L2tpnsConfig(bind_address="10.81.0.2", pool=["10.81.64.0/28"])) as lns:
        ...  # dial 10.81.0.2 from pyl2tp
        lns.wait_for_log(LOGIN)
        radius.wait_for(lambda r: r.get("status") == "Start")
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from .netns import NetNS, child_env
from .peerproc import ManagedPeer, skip_or_fail

__all__ = [
    "ACCESS_ACCEPT",
    "ACCESS_REJECT",
    "ACCESS_REQUEST",
    "ACCOUNTING_REQUEST",
    "ACCOUNTING_RESPONSE",
    "AUTH_ALLOWED",
    "L2TPNS",
    "LOGIN",
    "MASTER",
    "POOL_FILE",
    "SESSION_CLOSED",
    "TUNNEL_CLOSED",
    "L2tpns",
    "L2tpnsConfig",
    "L2tpnsError",
    "RadiusResponder",
    "RadiusServer",
    "RadiusUser",
    "chap_response",
    "l2tpns_binary",
    "pap_hide",
    "pap_unhide",
    "render_startup_config",
    "require_l2tpns",
]

#: The l2tpns executable (Debian's path).
L2TPNS = "/usr/sbin/l2tpns"
#: The pool file l2tpns reads; the path is compiled in.
POOL_FILE = "/etc/l2tpns/ip_pool"

# Log lines of l2tpns 2.4.1 at debug level 3 worth waiting for. Every line starts with the date
# and time, then "TT/SS": l2tpns's own tunnel and session ids (0 when none applies).
#: l2tpns elected itself cluster master: only now does it answer L2TP itself.
MASTER = r"I am declaring myself the master!"
#: The user's PPP session is up with an address (after RADIUS, before IPCP completes).
LOGIN = (
    r"(?P<tunnel>\d+)/(?P<session>\d+) Login by (?P<user>\S+) at (?P<ip>[\d.]+) "
    r"from (?P<peer>[\d.]+) \((?P<host>[^)]*)\)"
)
#: RADIUS accepted a user (a rejected one only gets SESSION_CLOSED, "Authentication
#: rejected"); ``method`` is ``PAP`` or ``CHAP``.
AUTH_ALLOWED = (
    r"(?P<tunnel>\d+)/(?P<session>\d+)\s+(?P<method>PAP|CHAP) User (?P<user>\S+) "
    r"authentication allowed"
)
#: A session ends (CDN received, LCP Terminate, tunnel closing, ...), with l2tpns's reason.
SESSION_CLOSED = (
    r"(?P<tunnel>\d+)/(?P<session>\d+) Shutting down session \d+: (?P<reason>[^\n]*)"
)
#: A tunnel ends, with l2tpns's reason ("Stopped" after a StopCCN from the peer).
TUNNEL_CLOSED = r"(?P<tunnel>\d+)/\d+ Shutting down tunnel \d+ \((?P<reason>[^)\n]*)\)"


class L2tpnsError(RuntimeError):
    """l2tpns or the RADIUS responder failed to start, or exited."""


def l2tpns_binary() -> str | None:
    """Path of the ``l2tpns`` executable, None if it is not installed."""
    return shutil.which("l2tpns") or (L2TPNS if os.access(L2TPNS, os.X_OK) else None)


def require_l2tpns() -> None:
    """Skip a test that needs l2tpns when it (or what the harness needs to run it) is missing,
    or fail it under CI=true, where interop tests must never be skipped silently."""
    reason = None
    if os.geteuid() != 0:
        reason = "l2tpns runs as root (TUN device, bind mount of its pool file)"
    elif l2tpns_binary() is None:
        reason = "l2tpns is not installed (apt install l2tpns)"
    elif not os.path.isfile(POOL_FILE):
        reason = f"{POOL_FILE} is missing (apt install l2tpns): the harness mounts over it"
    elif shutil.which("unshare") is None:
        reason = "unshare (util-linux) is missing"
    skip_or_fail(reason)


# -- RADIUS (RFC 2865, RFC 2866) ---------------------------------------------------------------

ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT = 1, 2, 3
ACCOUNTING_REQUEST, ACCOUNTING_RESPONSE = 4, 5

CODE_NAMES = {
    ACCESS_REQUEST: "Access-Request",
    ACCESS_ACCEPT: "Access-Accept",
    ACCESS_REJECT: "Access-Reject",
    ACCOUNTING_REQUEST: "Accounting-Request",
    ACCOUNTING_RESPONSE: "Accounting-Response",
}

USER_NAME, USER_PASSWORD, CHAP_PASSWORD, NAS_IP_ADDRESS, NAS_PORT = 1, 2, 3, 4, 5
SERVICE_TYPE, FRAMED_PROTOCOL, FRAMED_IP_ADDRESS, REPLY_MESSAGE = 6, 7, 8, 18
CALLED_STATION_ID, CALLING_STATION_ID = 30, 31
ACCT_STATUS_TYPE, ACCT_INPUT_OCTETS, ACCT_OUTPUT_OCTETS, ACCT_SESSION_ID = 40, 42, 43, 44
ACCT_SESSION_TIME, ACCT_INPUT_PACKETS, ACCT_OUTPUT_PACKETS, ACCT_TERMINATE_CAUSE = 46, 47, 48, 49
CHAP_CHALLENGE, MESSAGE_AUTHENTICATOR = 60, 80

ATTR_NAMES = {
    USER_NAME: "User-Name",
    USER_PASSWORD: "User-Password",
    CHAP_PASSWORD: "CHAP-Password",
    NAS_IP_ADDRESS: "NAS-IP-Address",
    NAS_PORT: "NAS-Port",
    SERVICE_TYPE: "Service-Type",
    FRAMED_PROTOCOL: "Framed-Protocol",
    FRAMED_IP_ADDRESS: "Framed-IP-Address",
    REPLY_MESSAGE: "Reply-Message",
    CALLED_STATION_ID: "Called-Station-Id",
    CALLING_STATION_ID: "Calling-Station-Id",
    ACCT_STATUS_TYPE: "Acct-Status-Type",
    41: "Acct-Delay-Time",
    ACCT_INPUT_OCTETS: "Acct-Input-Octets",
    ACCT_OUTPUT_OCTETS: "Acct-Output-Octets",
    ACCT_SESSION_ID: "Acct-Session-Id",
    45: "Acct-Authentic",
    ACCT_SESSION_TIME: "Acct-Session-Time",
    ACCT_INPUT_PACKETS: "Acct-Input-Packets",
    ACCT_OUTPUT_PACKETS: "Acct-Output-Packets",
    ACCT_TERMINATE_CAUSE: "Acct-Terminate-Cause",
    52: "Acct-Input-Gigawords",
    53: "Acct-Output-Gigawords",
    CHAP_CHALLENGE: "CHAP-Challenge",
    61: "NAS-Port-Type",
    MESSAGE_AUTHENTICATOR: "Message-Authenticator",
}
_INTEGER_ATTRS = {NAS_PORT, SERVICE_TYPE, FRAMED_PROTOCOL, ACCT_STATUS_TYPE, 41, ACCT_INPUT_OCTETS,
                  ACCT_OUTPUT_OCTETS, 45, ACCT_SESSION_TIME, ACCT_INPUT_PACKETS,
                  ACCT_OUTPUT_PACKETS, ACCT_TERMINATE_CAUSE, 52, 53, 61}
_ADDRESS_ATTRS = {NAS_IP_ADDRESS, FRAMED_IP_ADDRESS}
_TEXT_ATTRS = {USER_NAME, REPLY_MESSAGE, CALLED_STATION_ID, CALLING_STATION_ID, ACCT_SESSION_ID}
_SECRET_ATTRS = {USER_PASSWORD, CHAP_PASSWORD}
ACCT_STATUS = {1: "Start", 2: "Stop", 3: "Interim-Update", 7: "Accounting-On", 8: "Accounting-Off"}


class RadiusFormatError(ValueError):
    """A datagram that is not a well-formed RADIUS packet."""


def decode_attributes(data: bytes) -> list[tuple[int, bytes]]:
    """The attribute list of a packet body (everything after the 20-octet header)."""
    out = []
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise RadiusFormatError("truncated attribute header")
        kind, length = data[i], data[i + 1]
        if length < 2 or i + length > len(data):
            raise RadiusFormatError(f"attribute {kind}: bad length {length}")
        out.append((kind, data[i + 2:i + length]))
        i += length
    return out


def encode_attributes(attrs: Sequence[tuple[int, bytes]]) -> bytes:
    parts = []
    for kind, value in attrs:
        if len(value) > 253:
            raise ValueError(f"attribute {kind}: value of {len(value)} octets is too long")
        parts.append(bytes([kind, len(value) + 2]) + value)
    return b"".join(parts)


def _md5(*chunks: bytes) -> bytes:
    h = hashlib.md5()
    for c in chunks:
        h.update(c)
    return h.digest()


def pap_hide(password: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """RFC 2865 §5.2: pad to a multiple of 16 with NULs, XOR with the MD5 chain."""
    padded = (password + b"\0" * (-len(password) % 16)) or b"\0" * 16
    out = b""
    prev = authenticator
    for i in range(0, len(padded), 16):
        block = bytes(a ^ b for a, b in zip(padded[i:i + 16], _md5(secret, prev), strict=True))
        out += block
        prev = block
    return out


def pap_unhide(hidden: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """The inverse of :func:`pap_hide`; trailing NULs (the padding) are removed."""
    if not hidden or len(hidden) % 16 or len(hidden) > 128:
        raise RadiusFormatError(f"User-Password of {len(hidden)} octets")
    out = b""
    prev = authenticator
    for i in range(0, len(hidden), 16):
        block = hidden[i:i + 16]
        out += bytes(a ^ b for a, b in zip(block, _md5(secret, prev), strict=True))
        prev = block
    return out.rstrip(b"\0")


def chap_response(ident: int, password: bytes, challenge: bytes) -> bytes:
    """RFC 1994 §4.1 (and RFC 2865 §5.3): MD5(identifier + secret + challenge)."""
    return _md5(bytes([ident]), password, challenge)


def _response_authenticator(
    code: int, ident: int, request_auth: bytes, attrs: bytes, secret: bytes
) -> bytes:
    length = (20 + len(attrs)).to_bytes(2, "big")
    return _md5(bytes([code, ident]), length, request_auth, attrs, secret)


def _printable(kind: int, value: bytes) -> Any:
    if kind in _SECRET_ATTRS:
        return f"<{len(value)} octets>"
    if kind in _INTEGER_ATTRS and len(value) == 4:
        return int.from_bytes(value, "big")
    if kind in _ADDRESS_ATTRS and len(value) == 4:
        return str(ipaddress.IPv4Address(value))
    if kind in _TEXT_ATTRS:
        return value.decode(errors="replace")
    return value.hex()


@dataclass(frozen=True)
class RadiusUser:
    """One user: name and clear-text password (PAP and CHAP both need it), and the attributes
    an Access-Accept carries for it besides Service-Type and Framed-Protocol, e.g.
    ``{"Framed-IP-Address": "10.1.2.3"}`` (only the attributes of :data:`ATTR_NAMES` with
    address, integer or text values)."""

    name: str
    password: str
    reply: Mapping[str, str | int] = field(default_factory=dict)


def _encode_reply_attr(name: str, value: str | int) -> tuple[int, bytes]:
    kind = next((k for k, n in ATTR_NAMES.items() if n == name), None)
    if kind is None:
        raise ValueError(f"unknown RADIUS attribute {name!r}")
    if kind in _ADDRESS_ATTRS:
        return kind, ipaddress.IPv4Address(str(value)).packed
    if kind in _INTEGER_ATTRS:
        return kind, int(value).to_bytes(4, "big")
    if kind in _TEXT_ATTRS:
        return kind, str(value).encode()
    raise ValueError(f"RADIUS attribute {name!r} cannot be sent in a reply by this responder")


class RadiusResponder:
    """The RADIUS logic without sockets: :meth:`handle` turns one request datagram into the
    reply datagram (None: discard) and a record of what it saw and decided."""

    def __init__(self, secret: str, users: Sequence[RadiusUser]) -> None:
        if not secret:
            raise ValueError("RADIUS needs a shared secret")
        self.secret = secret.encode()
        self.users = {u.name: u for u in users}
        for u in users:  # fail at construction, not at the first Accept
            for name, value in u.reply.items():
                _encode_reply_attr(name, value)

    def handle(self, packet: bytes) -> tuple[bytes | None, dict[str, Any]]:
        record: dict[str, Any] = {}
        try:
            if len(packet) < 20:
                raise RadiusFormatError(f"{len(packet)} octets")
            code, ident = packet[0], packet[1]
            length = int.from_bytes(packet[2:4], "big")
            if length < 20 or length > len(packet) or length > 4096:
                raise RadiusFormatError(f"Length field {length}, datagram {len(packet)}")
            packet = packet[:length]  # octets beyond Length are padding (RFC 2865 §3)
            record.update(code=CODE_NAMES.get(code, str(code)), id=ident)
            authenticator = packet[4:20]
            attrs = decode_attributes(packet[20:])
            record["attrs"] = {}
            for kind, value in attrs:
                record["attrs"].setdefault(ATTR_NAMES.get(kind, str(kind)), []).append(
                    _printable(kind, value))
        except RadiusFormatError as exc:
            record.update(verdict="dropped", reason=f"malformed: {exc}")
            return None, record
        if code == ACCESS_REQUEST:
            return self._access(packet, ident, authenticator, attrs, record)
        if code == ACCOUNTING_REQUEST:
            return self._accounting(packet, ident, authenticator, attrs, record)
        record.update(verdict="dropped", reason="not a request this server handles")
        return None, record

    def _reply(self, code: int, ident: int, request_auth: bytes,
               attrs: Sequence[tuple[int, bytes]]) -> bytes:
        body = encode_attributes(attrs)
        auth = _response_authenticator(code, ident, request_auth, body, self.secret)
        return bytes([code, ident]) + (20 + len(body)).to_bytes(2, "big") + auth + body

    def _access(self, packet: bytes, ident: int, authenticator: bytes,
                attrs: list[tuple[int, bytes]], record: dict[str, Any]) -> tuple[bytes | None,
                                                                                 dict[str, Any]]:
        values: dict[int, list[bytes]] = {}
        for kind, value in attrs:
            values.setdefault(kind, []).append(value)

        def reject(reason: str) -> tuple[bytes, dict[str, Any]]:
            record.update(verdict="reject", reason=reason)
            return self._reply(ACCESS_REJECT, ident, authenticator,
                               [(REPLY_MESSAGE, reason.encode()[:253])]), record

        if MESSAGE_AUTHENTICATOR in values:
            macs = values[MESSAGE_AUTHENTICATOR]
            good = b""
            if len(macs) == 1 and len(macs[0]) == 16:
                at = 20  # the attribute's offset: its value is zeroed for the HMAC
                for kind, value in attrs:
                    if kind == MESSAGE_AUTHENTICATOR:
                        break
                    at += 2 + len(value)
                zeroed = packet[:at + 2] + b"\0" * 16 + packet[at + 18:]
                good = hmac.new(self.secret, zeroed, hashlib.md5).digest()
            if not hmac.compare_digest(macs[0], good):
                record.update(verdict="dropped", reason="Message-Authenticator does not verify")
                return None, record  # RFC 3579 §3.2: silently discard
        names = values.get(USER_NAME, [])
        if len(names) != 1:
            return reject("exactly one User-Name is required")
        name = names[0].decode(errors="replace")
        record["user"] = name
        has_pap, has_chap = USER_PASSWORD in values, CHAP_PASSWORD in values
        if has_pap == has_chap:
            return reject("exactly one of User-Password and CHAP-Password is required")
        user = self.users.get(name)
        password = user.password.encode() if user else b""
        if has_pap:
            record["method"] = "pap"
            try:
                given = pap_unhide(values[USER_PASSWORD][0], self.secret, authenticator)
            except RadiusFormatError as exc:
                return reject(f"bad User-Password: {exc}")
            ok = user is not None and hmac.compare_digest(given, password)
        else:
            record["method"] = "chap"
            chap = values[CHAP_PASSWORD][0]
            if len(chap) != 17:
                return reject(f"CHAP-Password of {len(chap)} octets")
            challenge = values.get(CHAP_CHALLENGE, [authenticator])[0]
            record["chap_challenge_attr"] = CHAP_CHALLENGE in values
            expected = chap_response(chap[0], password, challenge)
            ok = user is not None and hmac.compare_digest(chap[1:], expected)
        if user is None:
            return reject(f"unknown user {name}")
        if not ok:
            return reject(f"wrong password for {name}")
        reply = [(SERVICE_TYPE, (2).to_bytes(4, "big")), (FRAMED_PROTOCOL, (1).to_bytes(4, "big"))]
        reply += [_encode_reply_attr(k, v) for k, v in user.reply.items()]
        record.update(verdict="accept")
        return self._reply(ACCESS_ACCEPT, ident, authenticator, reply), record

    def _accounting(self, packet: bytes, ident: int, authenticator: bytes,
                    attrs: list[tuple[int, bytes]], record: dict[str, Any]) -> tuple[
                        bytes | None, dict[str, Any]]:
        expected = _md5(packet[:4], b"\0" * 16, packet[20:], self.secret)
        if not hmac.compare_digest(authenticator, expected):
            record.update(verdict="dropped", reason="Request Authenticator does not verify")
            return None, record  # RFC 2866 §3: silently discard
        for kind, value in attrs:
            if kind == ACCT_STATUS_TYPE and len(value) == 4:
                code = int.from_bytes(value, "big")
                record["status"] = ACCT_STATUS.get(code, str(code))
            elif kind == USER_NAME:
                record["user"] = value.decode(errors="replace")
        record.update(verdict="ok")
        return self._reply(ACCOUNTING_RESPONSE, ident, authenticator, []), record


def serve_radius(config_path: str) -> None:
    """Run the responder on the auth and accounting ports until SIGTERM (the child process of
    :class:`RadiusServer`); each request becomes one JSON line in the log."""
    cfg = json.loads(Path(config_path).read_text())
    responder = RadiusResponder(cfg["secret"], [RadiusUser(**u) for u in cfg["users"]])
    socks = []
    for port in (cfg["auth_port"], cfg["acct_port"]):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((cfg["address"], port))
        socks.append(s)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(cfg["log"], "a", buffering=1) as log:
        log.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
        while True:
            readable, _, _ = select.select(socks, [], [])
            for s in readable:
                data, peer = s.recvfrom(65535)
                reply, record = responder.handle(data)
                record.update(t=round(time.time(), 3), src=f"{peer[0]}:{peer[1]}",
                              port=s.getsockname()[1])
                if reply is not None:
                    s.sendto(reply, peer)
                log.write(json.dumps(record) + "\n")


class RadiusServer(ManagedPeer):
    """:class:`RadiusResponder` as a process in ``ns`` on ``address`` (context manager).

    ``requests()`` returns the JSON records of everything received so far: ``code``, ``id``,
    ``attrs`` (name -> list of values; passwords shown only by length), ``user``, ``method``
    (``pap``/``chap``), ``verdict`` (``accept``, ``reject``, ``ok``, ``dropped``), ``reason``,
    ``status`` (accounting: ``Start``, ``Stop``, ...). :meth:`log` is those records, raw,
    followed by the responder's stderr.

    Signals (:meth:`stop`): SIGTERM (the default) ends the responder at once (exit status 0);
    it keeps no state worth telling anyone about.
    """

    error = L2tpnsError
    log_title = "RADIUS requests"
    wait_timeout = 10.0
    poll_interval = 0.05

    def __init__(
        self, ns: NetNS, secret: str, users: Sequence[RadiusUser], *,
        address: str = "127.0.0.1", auth_port: int = 1812,
    ) -> None:
        RadiusResponder(secret, users)  # validate now
        super().__init__(ns)
        self.secret, self.users = secret, list(users)
        self.address, self.auth_port, self.acct_port = address, auth_port, auth_port + 1

    def __repr__(self) -> str:
        return f"<RadiusServer {self.ns.name} {self.address}:{self.auth_port}>"

    def start(self, timeout: float = 10.0) -> Self:
        self._check_startable()
        self._make_workdir("radius")
        self.log_path = self.workdir / "requests.jsonl"
        conf = self.workdir / "radius.json"
        conf.write_text(json.dumps({
            "secret": self.secret, "address": self.address, "auth_port": self.auth_port,
            "acct_port": self.acct_port, "log": str(self.log_path),
            "users": [{"name": u.name, "password": u.password, "reply": dict(u.reply)}
                      for u in self.users],
        }))
        conf.chmod(0o600)
        self._spawn([sys.executable, "-m", "tests.support.l2tpns", "radius", str(conf)],
                    self.workdir / "stderr.log", env=child_env())
        self.wait_for_log(r'"ready": true', timeout)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text() + (self.workdir / "stderr.log").read_text()
        except (OSError, AttributeError):
            return ""

    def requests(self) -> list[dict[str, Any]]:
        try:
            text = self.log_path.read_text()
        except (OSError, AttributeError):
            return []
        lines = text.split("\n")[:-1]  # the last piece is "" or a line still being written
        return [r for r in map(json.loads, lines) if "ready" not in r]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0, *,
        since: int = 0,
    ) -> dict[str, Any]:
        """The first request record (from index ``since``) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for r in self.requests()[since:]:
                if predicate(r):
                    return r
            if not self.alive():
                raise L2tpnsError(f"{self!r} exited:\n{self.log()}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self!r}: no matching request after {timeout:g}s: "
                                   f"{self.requests()[since:]}")
            time.sleep(0.05)


# -- l2tpns ---------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}")


@dataclass(frozen=True)
class L2tpnsConfig:
    """What goes into the startup-config (see ``man 5 startup-config``).

    ``pool`` is the contents of the pool file: one address or prefix ``a.b.c.d/n`` per line.
    ``tun_address`` (``iftun_address``) puts a separate address on the TUN device; without it
    the TUN device gets ``bind_address``. Whichever it is, the harness also sets
    ``peer_address`` to it: that is the address l2tpns claims as its own in IPCP, and without
    it l2tpns 2.4.1 sends the address of its cluster interface (``127.0.0.1`` here).
    ``authtypes`` is l2tpns's preference order for LCP's Authentication-Protocol (``pap``,
    ``chap``): it asks for the first and accepts the peer's Nak for another one in the list.
    ``extra`` adds ``set KEY VALUE`` lines verbatim.
    """

    bind_address: str
    pool: Sequence[str] = ("10.81.64.0/28",)
    tun_address: str | None = None
    tun_name: str = "l2tpns0"
    hostname: str = "l2tpns-lns"
    l2tp_secret: str | None = None
    radius_secret: str = "radius-s3cret"
    radius_server: str = "127.0.0.1"
    radius_port: int = 1812
    radius_accounting: bool = True
    authtypes: Sequence[str] = ("chap", "pap")
    primary_dns: str | None = None
    secondary_dns: str | None = None
    echo_timeout: int = 10
    debug: int = 3
    extra: Mapping[str, str] = field(default_factory=dict)


def _quoted(label: str, value: str) -> str:
    if not value or any(c in value for c in '"\\\n\r#!') or not value.isprintable():
        raise ValueError(f"{label} {value!r}: must be non-empty, printable, without quotes, "
                         "backslash, # or !")
    return f'"{value}"'


def render_startup_config(cfg: L2tpnsConfig, *, log_file: str, pid_file: str) -> str:
    """The startup-config text for ``cfg`` (``log_file``/``pid_file`` are absolute paths)."""
    for label, addr in (("bind_address", cfg.bind_address), ("radius_server", cfg.radius_server),
                        ("tun_address", cfg.tun_address), ("primary_dns", cfg.primary_dns),
                        ("secondary_dns", cfg.secondary_dns)):
        if addr is not None:
            try:
                ipaddress.IPv4Address(addr)
            except ValueError:
                raise ValueError(f"{label} {addr!r}: not an IPv4 address") from None
    if not _WORD_RE.fullmatch(cfg.tun_name) or len(cfg.tun_name) > 15:
        raise ValueError(f"tun_name {cfg.tun_name!r}")
    if not cfg.authtypes or any(a not in ("pap", "chap") for a in cfg.authtypes):
        raise ValueError(f"authtypes {cfg.authtypes!r}: pap and/or chap")
    lines = [
        f"set debug {int(cfg.debug)}",
        f"set log_file {_quoted('log_file', log_file)}",
        f"set pid_file {_quoted('pid_file', pid_file)}",
        f"set hostname {_quoted('hostname', cfg.hostname)}",
        f"set bind_address {cfg.bind_address}",
        f"set tundevicename {_quoted('tun_name', cfg.tun_name)}",
        f"set primary_radius {cfg.radius_server}",
        f"set primary_radius_port {int(cfg.radius_port)}",
        f"set radius_secret {_quoted('radius_secret', cfg.radius_secret)}",
        f"set radius_authtypes {_quoted('authtypes', ','.join(cfg.authtypes))}",
        f"set radius_accounting {'yes' if cfg.radius_accounting else 'no'}",
        "set cli_bind_address 127.0.0.1",
        "set send_garp no",
        f"set echo_timeout {int(cfg.echo_timeout)}",
        # No way to turn clustering off: keep it on the namespace's loopback, elect fast.
        'set cluster_interface "lo"',
        "set cluster_hb_interval 1",
        "set cluster_hb_timeout 15",
    ]
    if cfg.tun_address:
        lines.append(f"set iftun_address {cfg.tun_address}")
    lines.append(f"set peer_address {cfg.tun_address or cfg.bind_address}")
    if cfg.l2tp_secret is not None:
        lines.append(f"set l2tp_secret {_quoted('l2tp_secret', cfg.l2tp_secret)}")
    for key, addr in (("primary_dns", cfg.primary_dns), ("secondary_dns", cfg.secondary_dns)):
        if addr:
            lines.append(f"set {key} {addr}")
    for key, value in cfg.extra.items():
        if not _WORD_RE.fullmatch(key) or "\n" in value:
            raise ValueError(f"extra setting {key!r} = {value!r}")
        lines.append(f"set {key} {value}")
    return "\n".join(lines) + "\n"


def render_pool(pool: Sequence[str]) -> str:
    if isinstance(pool, str):
        raise TypeError("pool is a list of addresses or prefixes, not one string")
    for entry in pool:
        ipaddress.IPv4Network(entry, strict=False)  # raises on anything else
    return "".join(f"{entry}\n" for entry in pool)


class L2tpns(ManagedPeer):
    """One ``l2tpns`` (foreground) in ``ns``; a context manager that starts it on enter and stops
    it on exit. ``start`` writes ``startup-config``, ``ip_pool`` and the log into a private
    temporary directory (``workdir``), removed again by ``close``."""

    error = L2tpnsError
    log_title = "l2tpns log"
    wait_timeout = 10.0
    poll_interval = 0.05

    def __init__(self, ns: NetNS, config: L2tpnsConfig) -> None:
        super().__init__(ns)
        self.config = config
        render_startup_config(config, log_file="/x", pid_file="/x")  # fail early
        render_pool(config.pool)
        self.conf_path: Path
        self.pool_path: Path

    def __repr__(self) -> str:
        return f"<L2tpns {self.ns.name} {self.config.bind_address}>"

    def _prepare(self) -> None:
        self._make_workdir("l2tpns")
        self.conf_path = self.workdir / "startup-config"
        self.pool_path = self.workdir / "ip_pool"
        self.log_path = self.workdir / "l2tpns.log"
        self.pool_path.write_text(render_pool(self.config.pool))
        self.conf_path.write_text(render_startup_config(
            self.config, log_file=str(self.log_path), pid_file=str(self.workdir / "l2tpns.pid")))
        self.conf_path.chmod(0o600)

    def _argv(self) -> list[str]:
        binary = l2tpns_binary()
        if binary is None:
            raise L2tpnsError("l2tpns is not installed")
        # A private mount namespace: the bind mount is invisible to the host and goes away
        # with l2tpns.
        script = 'mount --bind "$0" "$1" && shift && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                str(self.pool_path), POOL_FILE, binary, "-c", str(self.conf_path)]

    def start(self, timeout: float = 15.0) -> Self:
        """Start l2tpns and wait until it is cluster master (it serves L2TP only from then)."""
        self._check_startable()
        self._prepare()
        self._spawn(self._argv(), self.log_path)
        try:
            self.wait_for_log(MASTER, timeout)
        except (TimeoutError, L2tpnsError):
            self.stop(signal.SIGKILL)
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Signal l2tpns and wait for it. SIGTERM: exit at once, telling no peer; SIGQUIT:
        StopCCN on every tunnel first."""
        return super().stop(sig, timeout)

    def _after_stop(self, pid: int) -> None:
        # l2tpns forks for its CLI connections; none outlives the test.
        _kill_group(pid)

    # -- the CLI --------------------------------------------------------------------------------

    def cli(self, *commands: str, timeout: float = 10.0) -> str:
        """Run commands on l2tpns's telnet CLI (127.0.0.1:23 in its namespace; no users are
        configured, so libcli asks for no login) and return what it printed, e.g.
        ``cli("show session")``. Each command is sent once the prompt is back: libcli drops
        input that arrives while it is still busy."""
        return self.ns.run([sys.executable, "-c", _CLI_CLIENT, str(timeout), *commands],
                           timeout=timeout + 5).stdout

    def sessions(self) -> list[dict[str, str]]:
        """The rows of ``show session``: ``sid``, ``tid``, ``user``, ``ip`` (l2tpns's ids).

        A closed session stays in the table for a while (until l2tpns reaps it) with the
        address ``0.0.0.0``; :meth:`active_sessions` leaves those out."""
        rows = []
        for line in self.cli("show session").splitlines():
            m = re.match(r"\s*(\d+)\s+\d+\s+(\d+)\s+(\S+)\s+([\d.]+)\s", line)
            if m:
                rows.append(dict(zip(("sid", "tid", "user", "ip"), m.groups(), strict=True)))
        return rows

    def active_sessions(self) -> list[dict[str, str]]:
        return [r for r in self.sessions() if r["ip"] != "0.0.0.0"]

    def tunnels(self) -> list[dict[str, str]]:
        """The rows of ``show tunnels``: ``tid``, ``host`` (the peer's Host Name), ``ip``,
        ``state`` (``Open``, ...)."""
        rows = []
        for line in self.cli("show tunnels").splitlines():
            m = re.match(r"\s*(\d+)\s+(\S+)\s+([\d.]+)\s+(\S+)\s+\d+", line)
            if m:
                rows.append(dict(zip(("tid", "host", "ip", "state"), m.groups(), strict=True)))
        return rows


# Runs inside the namespace (Python 3.11 has no os.setns): talk to l2tpns's libcli over telnet.
_CLI_CLIENT = r"""
import re, socket, sys, time
timeout = float(sys.argv[1])
s = socket.create_connection(("127.0.0.1", 23), timeout=timeout)
buf = b""
def until_prompt():
    global buf
    deadline = time.monotonic() + timeout
    while not re.search(rb"[>#] $", buf):
        if time.monotonic() > deadline:
            raise SystemExit("no prompt from l2tpns: %r" % buf)
        d = s.recv(65536)
        if not d:
            return
        buf += d
out = []
until_prompt()
for cmd in sys.argv[2:]:
    buf = b""
    s.sendall(cmd.encode() + b"\r\n")
    until_prompt()
    out.append(buf)
s.sendall(b"quit\r\n")
text = b"".join(out)
text = re.sub(rb"\xff[\xfb-\xfe].|\xff[\xf0-\xfa]", b"", text).replace(b"\r", b"")
sys.stdout.write(text.decode("utf-8", "replace"))
"""


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of process group ``pgid`` (l2tpns's CLI children)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.l2tpns")
    sub = parser.add_subparsers(dest="cmd", required=True)
    rad = sub.add_parser("radius", help="run the RADIUS responder (RadiusServer's child)")
    rad.add_argument("config")
    args = parser.parse_args(argv)
    if args.cmd == "radius":
        serve_radius(args.config)


if __name__ == "__main__":
    _main()
