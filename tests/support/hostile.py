"""Hostile L2TP peers for the robustness tests: forged control and data packets on real sockets.

Everything here talks to a real ``pyl2tp daemon`` over a veth, from a namespace of the test's
own. Sockets are opened *inside* that namespace by a short-lived thread that joins it with
``setns(2)`` (through ctypes: Python 3.11 has no ``os.setns``); a socket keeps the namespace it
was created in, so the test process then drives it from its main thread like any other socket.
That avoids a child interpreter per attack and lets a test keep a stateful peer (Ns/Nr,
nonces, the daemon's tunnel id) across many exchanges. Only the creating thread ever changes
namespace, so the test runner's own namespace is never touched.

:class:`HostilePeer` speaks just enough L2TP to open a control connection the way a real peer
would (v2 or v3, with or without a shared secret: Challenge/Response, v3 nonces and Message
Digests, hidden AVPs) and then sends whatever it is told to, broken on purpose. Messages are
built from :mod:`pyl2tp.wire` where the bytes are meant to be valid and patched by hand where
they are not; hidden AVPs with lying lengths are encrypted here with the RFC 2661 §4.3 MD5
chain so that the lie survives decryption.

:class:`Barrier` answers "has the daemon processed everything I sent so far?": it sends a data
packet for a session that cannot exist on the same socket and waits for the daemon's
``rx_unknown_session`` endpoint counter to count it. The daemon reads each socket in order, so
when the barrier is counted every earlier datagram has been handled and every synchronous
answer (StopCCN, CDN, SCCRP ...) is already in our socket buffer.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyl2tp.wire import auth
from pyl2tp.wire.avp import ProtocolVersion, ResultCode
from pyl2tp.wire.constants import AvpType, MessageType
from pyl2tp.wire.errors import HeaderError, ParseError
from pyl2tp.wire.message import ControlMessage, decode_message, encode_message

from .daemon import Daemon, PingResult, ping, start_all, write_temp
from .netns import NetNS, Topology, wait_for

A = AvpType
M = MessageType
T = TypeVar("T")

__all__ = [
    "LAB_LNS",
    "Barrier",
    "Capture",
    "FloodResult",
    "HostilePeer",
    "Lab",
    "Reply",
    "avp_bytes",
    "hdrincl_socket",
    "hide_raw",
    "in_netns",
    "ipv4_udp",
    "lab",
    "open_packet_socket",
    "proc_fds",
    "proc_rss_kb",
    "sccrq_flood",
    "send_spoofed",
    "udp_socket",
    "v3_data",
]

# ---------------------------------------------------------------------------------------------
# Sockets inside a namespace

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(ns: NetNS | str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a new thread that has joined network namespace ``ns``; return its result.

    Sockets ``fn`` creates stay in ``ns`` for their whole life, whichever thread uses them.
    """
    name = ns.name if isinstance(ns, NetNS) else ns
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"setns-{name}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["value"]
    return result


def udp_socket(ns: NetNS | str, addr: str, port: int = 0, *, rcvbuf: int = 1 << 22
               ) -> socket.socket:
    """An IPv4 UDP socket bound to ``addr:port`` inside ``ns``."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        s.bind((addr, port))
        return s

    return in_netns(ns, make)


def hdrincl_socket(ns: NetNS | str) -> socket.socket:
    """A raw IPv4 socket that sends whole packets we build (any source address and port)."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        return s

    return in_netns(ns, make)


def open_packet_socket(ns: NetNS | str, ifname: str) -> socket.socket:
    """An AF_PACKET socket capturing every IPv4 frame on ``ifname`` in ``ns``."""

    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
        s.bind((ifname, 0x0800))
        s.setblocking(False)
        return s

    return in_netns(ns, make)


def ipv4_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4 header and a UDP header around ``payload`` (UDP checksum 0: none, allowed in
    IPv4; the kernel fills the IP checksum and id of an IP_HDRINCL packet)."""
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip + udp + payload


def send_spoofed(raw: socket.socket, src: tuple[str, int], dst: tuple[str, int],
                 payload: bytes) -> None:
    """Send ``payload`` as UDP from any ``src`` address and port through a HDRINCL socket."""
    raw.sendto(ipv4_udp(src[0], src[1], dst[0], dst[1], payload), (dst[0], 0))


def v3_data(session_id: int, cookie: bytes = b"", payload: bytes = b"", *,
            l2spec: bool = True) -> bytes:
    """An L2TPv3-over-UDP data packet (default L2-Specific Sublayer, no sequence number)."""
    return (struct.pack(">HHI", 0x0003, 0, session_id) + cookie
            + (b"\x00\x00\x00\x00" if l2spec else b"") + payload)


@dataclass
class Capture:
    """L2TP control messages seen on a link: ``(src, sport, dst, dport, payload)``."""

    sock: socket.socket
    frames: list[tuple[str, int, str, int, bytes]] = field(default_factory=list)

    def drain(self) -> list[tuple[str, int, str, int, bytes]]:
        while True:
            try:
                pkt = self.sock.recv(70000)
            except BlockingIOError:
                break
            if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 17:
                continue
            ihl = (pkt[0] & 0x0F) * 4
            sport, dport = struct.unpack_from(">HH", pkt, ihl)
            payload = pkt[ihl + 8:]
            if not payload or not payload[0] & 0x80:
                continue  # data, not control
            src = socket.inet_ntoa(pkt[12:16])
            dst = socket.inet_ntoa(pkt[16:20])
            self.frames.append((src, sport, dst, dport, payload))
        return self.frames

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# Raw AVPs and hiding


def avp_bytes(attr: int, value: bytes, *, m: bool = True, h: bool = False, vendor: int = 0,
              length: int | None = None, reserved: int = 0) -> bytes:
    """One AVP as raw octets; ``length`` overrides the Length field (to lie with it)."""
    real = 6 + len(value)
    word = (0x8000 if m else 0) | (0x4000 if h else 0) | (reserved & 0x3C00)
    word |= (real if length is None else length) & 0x03FF
    return struct.pack(">HHH", word, vendor, attr) + value


def hide_raw(attr: int, plaintext: bytes, key: bytes, rv: bytes) -> bytes:
    """Encrypt ``plaintext`` (which must start with the 2-octet original length, true or
    not) with the RFC 2661 §4.3 chain: b1 = MD5(type || key || RV), bi = MD5(key || ci-1)."""
    out = bytearray()
    block = struct.pack(">H", attr) + key + rv
    for i in range(0, len(plaintext), 16):
        pad = hashlib.md5(block).digest()
        chunk = bytes(p ^ k for p, k in zip(plaintext[i:i + 16], pad, strict=False))
        out += chunk
        block = key + chunk
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# The hostile control peer


@dataclass
class Reply:
    """One datagram the daemon sent us, decoded if it could be."""

    raw: bytes
    msg: ControlMessage | None

    @property
    def name(self) -> str:
        return self.msg.name if self.msg is not None else "undecodable"

    @property
    def result(self) -> tuple[int, int | None] | None:
        rc = self.msg.get(A.RESULT_CODE) if self.msg is not None else None
        return (rc.result, rc.error) if rc is not None else None


def _full_sccrq(version: int, tid: int, host_name: str, rws: int) -> ControlMessage:
    msg = ControlMessage(M.SCCRQ, version=version)
    if version == 2:
        msg.add(A.PROTOCOL_VERSION, ProtocolVersion(1, 0))
        msg.add(A.HOST_NAME, host_name)
        msg.add(A.FRAMING_CAPABILITIES, 3)
        msg.add(A.BEARER_CAPABILITIES, 3)
        msg.add(A.ASSIGNED_TUNNEL_ID, tid)
        msg.add(A.RECEIVE_WINDOW_SIZE, rws)
    else:
        msg.add(A.HOST_NAME, host_name)
        msg.add(A.ROUTER_ID, 0x0A000009)
        msg.add(A.ASSIGNED_CONNECTION_ID, tid)
        msg.add(A.PW_CAPABILITIES_LIST, (5, 7))
        msg.add(A.RECEIVE_WINDOW_SIZE, rws)
    return msg


class HostilePeer:
    """A control-plane peer on a UDP socket of ours, driven step by step.

    ``send`` encodes a :class:`ControlMessage` with our Ns/Nr and, when a secret is set,
    hides the AVPs marked hidden and signs v3 messages; ``extra`` appends raw AVP octets
    after the encoded ones (fixing the header's Length and the digest), and ``patch`` rewrites
    the final octets, which is how the malformed variants are made. ``recv`` collects what
    the daemon answers and keeps our Nr in step with its in-order messages.
    """

    def __init__(self, sock: socket.socket, daemon: tuple[str, int], *, version: int,
                 host_name: str = "hostile", secret: bytes | None = None,
                 rws: int = 8, tid: int | None = None) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.daemon = daemon
        self.version = version
        self.host_name = host_name
        self.secret = secret
        self.rws = rws
        bits = 16 if version == 2 else 32
        self.tid = tid or int.from_bytes(os.urandom(bits // 8), "big") | 1
        self.peer_tid = 0
        self.ns = 0
        self.nr = 0
        self.hide_key: bytes | None = None
        self.auth_key: bytes | None = None
        self.our_nonce: bytes | None = None
        self.peer_nonce: bytes | None = None
        if secret is not None:
            self.hide_key = secret if version == 2 else auth.hiding_key_v3(secret)
            if version == 3:
                self.auth_key = auth.auth_key_v3(secret)
                self.our_nonce = os.urandom(16)
        self.challenge: bytes | None = None  # the one we sent (v2)
        self.replies: list[Reply] = []

    @property
    def local(self) -> tuple[str, int]:
        addr: tuple[str, int] = self.sock.getsockname()
        return addr

    # ---- encoding -------------------------------------------------------------------------

    def encode(self, msg: ControlMessage, *, ns: int | None = None, nr: int | None = None,
               tunnel_id: int | None = None, extra: bytes = b"",
               patch: Callable[[bytearray], None] | None = None, sign: bool = True) -> bytes:
        msg.version = self.version
        msg.tunnel_id = self.peer_tid if tunnel_id is None else tunnel_id
        msg.ns = self.ns if ns is None else ns
        msg.nr = self.nr if nr is None else nr
        digest = None
        sender = receiver = None
        if self.auth_key is not None and msg.msg_type != M.ZLB and sign:
            digest = 0
            if msg.msg_type != M.SCCRQ:
                sender, receiver = self.our_nonce, self.peer_nonce
        data = bytearray(encode_message(msg, hide_key=self.hide_key, digest_type=digest,
                                        auth_key=self.auth_key, sender_nonce=sender,
                                        receiver_nonce=receiver))
        if extra:
            data += extra
            struct.pack_into(">H", data, 2, len(data))
            if digest is not None:
                # A lying AVP Length hides the digest from the signer as from the verifier:
                # the message then goes out with a zero digest, and fails verification.
                with contextlib.suppress(HeaderError):
                    auth.sign(data, 0, self.auth_key or b"", sender, receiver)
        if patch is not None:
            patch(data)
        if ns is None and msg.msg_type not in (M.ZLB, M.ACK):
            self.ns = (self.ns + 1) & 0xFFFF
        return bytes(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.daemon)

    def send(self, msg: ControlMessage, **kw: Any) -> bytes:
        data = self.encode(msg, **kw)
        self.send_raw(data)
        return data

    def ack(self) -> None:
        """Acknowledge what we received: a ZLB, or the v3 ACK message when signing."""
        if self.auth_key is not None and self.peer_nonce is not None:
            self.send(ControlMessage(M.ACK))
        else:
            self.send(ControlMessage(M.ZLB))

    # ---- receiving ------------------------------------------------------------------------

    def recv(self, timeout: float = 0.0, *, until: Callable[[list[Reply]], bool] | None = None
             ) -> list[Reply]:
        """Datagrams from the daemon: everything already queued, waiting up to ``timeout``
        for the first one (or until ``until(new)`` holds)."""
        new: list[Reply] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, _addr = self.sock.recvfrom(70000)
            except BlockingIOError:
                if until is not None and until(new):
                    break
                left = deadline - time.monotonic()
                if left <= 0 or (until is None and new):
                    break
                select.select([self.sock], [], [], left)
                continue
            msg: ControlMessage | None
            try:
                msg = decode_message(data, hide_key=self.hide_key, validate=False)
            except ParseError:
                msg = None
            if msg is not None and msg.msg_type not in (M.ZLB, M.ACK) and msg.ns == self.nr:
                self.nr = (self.nr + 1) & 0xFFFF
            new.append(Reply(data, msg))
        self.replies.extend(new)
        return new

    def expect(self, msg_type: int, timeout: float = 3.0) -> ControlMessage:
        """Wait for one message of ``msg_type`` (others are kept in ``replies``)."""
        got = self.recv(timeout, until=lambda new: any(
            r.msg is not None and r.msg.msg_type == msg_type for r in new))
        for r in got:
            if r.msg is not None and r.msg.msg_type == msg_type:
                return r.msg
        names = [r.name for r in got]
        raise AssertionError(f"expected {M(msg_type).name} from the daemon, got {names}")

    def collect(self, count: int, timeout: float = 5.0) -> list[Reply]:
        """Receive until ``count`` sequenced (non-ZLB/ACK) messages have arrived,
        acknowledging as they come: the daemon's congestion window only opens with our
        acknowledgements, so a peer that never acknowledges sees one or two at a time."""
        got: list[Reply] = []
        deadline = time.monotonic() + timeout

        def sequenced(replies: list[Reply]) -> int:
            return sum(1 for r in replies if r.msg is None or r.msg.msg_type not in
                       (M.ZLB, M.ACK))

        while sequenced(got) < count and time.monotonic() < deadline:
            new = self.recv(min(0.2, max(0.0, deadline - time.monotonic())))
            if new:
                got += new
                self.ack()
        return got

    # ---- exchanges ------------------------------------------------------------------------

    def sccrq(self, *, challenge: bool = True) -> ControlMessage:
        msg = _full_sccrq(self.version, self.tid, self.host_name, self.rws)
        if self.secret is not None and self.version == 2 and challenge:
            self.challenge = os.urandom(16)
            msg.add(A.CHALLENGE, self.challenge)
        if self.our_nonce is not None:
            msg.add(A.CTRL_MSG_AUTH_NONCE, self.our_nonce)
        return msg

    def establish(self, timeout: float = 3.0) -> ControlMessage:
        """SCCRQ, SCCRP, SCCCN: a control connection the daemon considers established."""
        self.send(self.sccrq(), tunnel_id=0)
        sccrp = self.expect(M.SCCRP, timeout)
        self.learn_sccrp(sccrp)
        self.send(self.scccn(sccrp))
        return sccrp

    def learn_sccrp(self, sccrp: ControlMessage) -> None:
        key = A.ASSIGNED_TUNNEL_ID if self.version == 2 else A.ASSIGNED_CONNECTION_ID
        self.peer_tid = int(sccrp.get(key))
        nonce = sccrp.get(A.CTRL_MSG_AUTH_NONCE)
        if nonce is not None:
            self.peer_nonce = bytes(nonce)

    def scccn(self, sccrp: ControlMessage, *, hidden: bool = True) -> ControlMessage:
        msg = ControlMessage(M.SCCCN)
        challenge = sccrp.get(A.CHALLENGE)
        if challenge is not None and self.secret is not None:
            msg.add(A.CHALLENGE_RESPONSE,
                    auth.challenge_response(M.SCCCN, self.secret, bytes(challenge)),
                    hidden=hidden and self.hide_key is not None)
        return msg

    def stop(self) -> None:
        """Clear our side politely (StopCCN 1) so the daemon's connection does not wait for
        a setup or HELLO timeout."""
        msg = ControlMessage(M.StopCCN)
        key = A.ASSIGNED_TUNNEL_ID if self.version == 2 else A.ASSIGNED_CONNECTION_ID
        msg.add(key, self.tid)
        msg.add(A.RESULT_CODE, ResultCode(1, 0, "bye"))
        self.send(msg)

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------------------------
# Synchronising with the daemon


class Barrier:
    """Wait until the daemon has processed every datagram sent before, on one socket.

    ``stats`` reads the daemon endpoint's counters (``endpoint_stats`` of the socket the
    datagrams went to). Each barrier is a v3 data packet for a session id no daemon assigns
    in these tests; it lands in ``rx_unknown_session`` after everything queued before it.
    """

    SESSION = 0xFFFFFFF1

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.stats = stats

    def __call__(self, send: Callable[[bytes], Any], timeout: float = 5.0) -> None:
        before = int(self.stats()["rx_unknown_session"])
        send(v3_data(self.SESSION, b"", b"barrier"))
        wait_for(lambda: int(self.stats()["rx_unknown_session"]) > before, timeout=timeout,
                 interval=0.002, message="the daemon to reach the barrier")


# ---------------------------------------------------------------------------------------------
# Process accounting


def proc_rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def proc_fds(pid: int) -> int:
    """Open descriptors of ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd"))




# ---------------------------------------------------------------------------------------------
# The lab: a LAC and an LNS daemon with a live pseudowire, and an attacker beside them

LAC_ADDR, LNS_ADDR = "10.77.1.1", "10.77.1.2"
ATK_ADDR, LNS_ATK_ADDR = "10.77.2.1", "10.77.2.2"
PW_LAC, PW_LNS = "192.168.77.1", "192.168.77.2"
LEGIT_SECRET = "s3cret"
HOSTILE_SECRET = b"h0stile"

LAB_LNS = """
[daemon]
host_name = "lns"
max_tunnels = {max_tunnels}

[[listen]]
address = "0.0.0.0"

[defaults]
hello_interval = 5

[[peer]]
name = "lac"
address = "{lac}"
host_name = "lac"
secret = "{legit_secret}"
hide_avps = true

# Hostile peers: short setup and retransmission cycles so that whatever they leave behind
# is cleared within seconds.
[[peer]]
name = "hostile-secret"
address = "10.77.2.0/24"
host_name = "secret"
secret = "{hostile_secret}"
hide_avps = true
setup_timeout = 3
max_retries = 2
retransmit_initial = 0.5
hello_interval = 0

[[peer]]
name = "hostile-open"
address = "10.77.2.0/24"
setup_timeout = 3
max_retries = 2
retransmit_initial = 0.5
hello_interval = 0
max_sessions = {max_sessions}
"""


class Lab:
    """Namespaces ``lac`` — ``lns`` — ``atk``; a LAC daemon (driven through the API, as an
    operator would) has dialled the LNS daemon (configured by a file) with an L2TPv3 tunnel
    over UDP with a secret and hidden AVPs, and an Ethernet pseudowire on it carries pings
    between ``PW_LAC`` and ``PW_LNS``. Hostile peers live in ``atk`` (10.77.2.0/24, matched
    by the LNS's ``hostile-*`` policies) or borrow the LAC's address."""

    def __init__(self, topo: Topology, lac: Daemon, lns: Daemon, lac_veth: str,
                 atk_veth: str) -> None:
        self.topo = topo
        self.lac = lac
        self.lns = lns
        self.lac_veth = lac_veth
        self.atk_veth = atk_veth
        self._sources: list[str] = []
        self.lac_ns = topo["lac"]
        self.lns_ns = topo["lns"]
        self.atk_ns = topo["atk"]
        self.tunnel_id = 0          # the LAC's control connection id
        self.lns_tunnel_id = 0      # the LNS's id of the same tunnel
        self.lns_session_id = 0
        self.lac_session_id = 0
        self.lac_port = 0           # the LAC's source port as the LNS sees it
        self.capture: list[tuple[str, int, str, int, bytes]] = []

    def sources(self, count: int) -> list[str]:
        """``count`` more addresses of the attacker's subnet (10.77.2.10 onwards), added to
        its interface so that the LNS's answers to them are delivered (and refused by the
        kernel there, ICMP port unreachable), as for a flood from many real hosts."""
        have = len(self._sources)
        if count > have:
            if 10 + count > 254:
                raise ValueError("at most 244 attacker addresses")
            new = [f"10.77.2.{10 + i}" for i in range(have, count)]
            batch = "".join(f"addr add {a}/24 dev {self.atk_veth}\n" for a in new)
            self.atk_ns.run(["ip", "-batch", "-"], input=batch)
            self._sources += new
        return self._sources[:count]

    # ---- API reads ------------------------------------------------------------------------

    def plane(self, d: Daemon | None = None) -> dict[str, int]:
        stats: dict[str, int] = (d or self.lns).request("control_stats")["plane"]
        return stats

    def connections(self, d: Daemon | None = None) -> int:
        return int((d or self.lns).request("control_stats")["connections"])

    def conns(self, d: Daemon | None = None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = (d or self.lns).request("control_dump")
        return out

    def conn(self, tunnel_id: int, d: Daemon | None = None) -> dict[str, Any] | None:
        return next((c for c in self.conns(d) if c["tunnel_id"] == tunnel_id), None)

    def legit_conn(self) -> dict[str, Any]:
        conn = self.conn(self.lns_tunnel_id)
        assert conn is not None, "the legitimate tunnel is gone from the LNS"
        return conn

    def endpoint(self) -> dict[str, Any]:
        return self.lns.endpoint("udp", "0.0.0.0", 1701)

    def barrier(self) -> Barrier:
        return Barrier(self.endpoint)

    # ---- the invariant every attack must leave intact -------------------------------------

    def ping(self, count: int = 3) -> PingResult:
        return ping(self.lac_ns, PW_LNS, count=count, interval=0.1, wait=1)

    def assert_intact(self) -> None:
        """Both daemons alive, the legitimate tunnel and session established on both sides,
        and the pseudowire passing traffic."""
        for d in (self.lac, self.lns):
            assert d.alive(), f"daemon died:\n{d.log_tail()}"
        conn = self.legit_conn()
        assert conn["state"] == "established", conn
        lac = self.conn(self.tunnel_id, self.lac)
        assert lac is not None and lac["state"] == "established", lac
        assert any(c["session_id"] == self.lns_session_id and c["state"] == "established"
                   for c in conn["calls"]), conn["calls"]
        result = self.ping()
        assert result.ok and result.received == result.transmitted, result


@contextlib.contextmanager
def lab(*, max_tunnels: int = 4096, max_sessions: int = 4) -> Iterator[Lab]:
    """Build the :class:`Lab`, yield it, tear everything down."""
    with Topology() as topo:
        a, b, m = topo.add("lac"), topo.add("lns"), topo.add("atk")
        for ns in (a, b, m):
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
        lac_veth, _ = topo.veth(a, b, f"{LAC_ADDR}/24", f"{LNS_ADDR}/24")
        atk_veth, _ = topo.veth(m, b, f"{ATK_ADDR}/24", f"{LNS_ATK_ADDR}/24")
        path = write_temp(LAB_LNS.format(max_tunnels=max_tunnels, max_sessions=max_sessions,
                                         lac=LAC_ADDR, legit_secret=LEGIT_SECRET,
                                         hostile_secret=HOSTILE_SECRET.decode()))
        lac_d = Daemon(a)
        lns_d = Daemon(b, extra_args=["--config", path])
        try:
            with lac_d, lns_d:
                start_all([lac_d, lns_d])
                the_lab = Lab(topo, lac_d, lns_d, lac_veth, atk_veth)
                cap = Capture(open_packet_socket(b, _peer_ifname(b, LNS_ADDR)))
                try:
                    _bring_up(the_lab)
                    the_lab.capture = list(cap.drain())
                finally:
                    cap.close()
                yield the_lab
        finally:
            os.unlink(path)


def _peer_ifname(ns: NetNS, addr: str) -> str:
    for line in ns.ip("-o", "-4", "addr", "show").stdout.splitlines():
        words = line.split()
        if f"{addr}/24" in words:
            return words[1]
    raise AssertionError(f"no interface with {addr} in {ns.name}")


def _bring_up(lab: Lab) -> None:
    lac, lns = lab.lac, lab.lns
    res = lac.request("control_dial", {"peer": LNS_ADDR, "version": 3, "secret": LEGIT_SECRET,
                                       "hide_avps": True, "host_name": "lac"})
    tid = int(res["conn_id"])
    lab.tunnel_id = tid
    wait_for(lambda: (lab.conn(tid, lac) or {}).get("state") == "established", timeout=10,
             message="the legitimate tunnel")
    call = lac.request("control_call", {"conn_id": tid, "pw_type": "eth", "ifname": "pwlac"})
    lab.lac_session_id = int(call[0]["session_id"])
    lab.lns_tunnel_id = int((lab.conn(tid, lac) or {})["peer_tunnel_id"])

    def lns_session() -> dict[str, Any] | None:
        return next((s for s in lns.request("session_get", dump=True)
                     if s["conn_id"] == lab.lns_tunnel_id), None)

    sess = wait_for(lns_session, timeout=10, message="the legitimate session at the LNS")
    wait_for(lambda: any(s["session_id"] == lab.lac_session_id
                         for s in lac.request("session_get", dump=True)),
             timeout=10, message="the legitimate session at the LAC")
    lab.lns_session_id = int(sess["session_id"])
    lab.lac_port = int(lab.legit_conn()["peer_port"])
    lab.lac_ns.addr_add("pwlac", f"{PW_LAC}/24")
    lab.lac_ns.link_up("pwlac")
    lab.lns_ns.addr_add(sess["ifname"], f"{PW_LNS}/24")
    lab.lns_ns.link_up(sess["ifname"])
    warm = ping(lab.lac_ns, PW_LNS, count=3, interval=0.2, wait=2)
    assert warm.ok, f"the pseudowire does not pass traffic before any attack: {warm}"


@dataclass
class FloodResult:
    """What a flood of SCCRQs did to the LNS (plane counters are deltas)."""

    sent: int
    sources: int
    accepted: int
    refused: int
    rate_limited: int
    peak_connections: int
    peak_active: int
    rss_before_kb: int
    rss_after_kb: int
    seconds: float

    @property
    def accounted(self) -> int:
        return self.accepted + self.refused + self.rate_limited


def sccrq_flood(lab_: Lab, count: int, *, sources: int, version: int = 2,
                port_base: int = 30000, pace: int = 200) -> FloodResult:
    """``count`` SCCRQs that nobody will complete, from ``sources`` addresses of the
    attacker's subnet and ``count / sources`` ports each, sent through a HDRINCL socket
    (the ports are never bound: the daemon's answers bounce). Samples the daemon's
    connection table every ``pace`` SCCRQs."""
    addrs = lab_.sources(sources)
    plane0 = lab_.plane()
    rss0 = proc_rss_kb(lab_.lns.pid)
    raw = hdrincl_socket(lab_.atk_ns)
    peer = HostilePeer(udp_socket(lab_.atk_ns, ATK_ADDR, 0), (LNS_ATK_ADDR, 1701),
                       version=version, host_name="open")
    peak = active = 0

    def sample() -> None:
        nonlocal peak, active
        conns = lab_.conns()
        peak = max(peak, len(conns))
        active = max(active, sum(c["state"] != "closing" for c in conns))

    start = time.monotonic()
    try:
        for i in range(count):
            peer.tid = 1 + i % 0xFFFE
            data = peer.encode(peer.sccrq(), tunnel_id=0, ns=0)
            src = (addrs[i % len(addrs)], port_base + i // len(addrs))
            send_spoofed(raw, src, (LNS_ATK_ADDR, 1701), data)
            if i % pace == pace - 1:
                time.sleep(0.01)
                sample()
        lab_.barrier()(peer.send_raw, timeout=60)
    finally:
        raw.close()
        peer.close()
    seconds = time.monotonic() - start
    sample()
    plane1 = lab_.plane()

    def delta(name: str) -> int:
        return int(plane1.get(name, 0)) - int(plane0.get(name, 0))

    return FloodResult(sent=count, sources=len(addrs), accepted=delta("rx_sccrq_accepted"),
                       refused=delta("rx_sccrq_refused"),
                       rate_limited=delta("rx_sccrq_rate_limited"), peak_connections=peak,
                       peak_active=active, rss_before_kb=rss0,
                       rss_after_kb=proc_rss_kb(lab_.lns.pid), seconds=seconds)
