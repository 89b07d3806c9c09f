"""The whole PPP link on a virtual clock: an LNS-side link and a client-side link back to back.

Each test wires two :class:`PppLink` objects through an in-memory "wire" that can drop
frames, runs the clock forward to each deadline, and checks what each side ends up with:
phases, negotiated addresses, authenticated user, IP delivery, and the reason each side gives
when the link ends.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.ppp.auth import AuthRequest, AuthResult, Credentials
from pyl2tp.ppp.ipcp import IpcpConfig
from pyl2tp.ppp.ipv6cp import Ipv6cpConfig
from pyl2tp.ppp.lcp import LcpConfig
from pyl2tp.ppp.link import (
    LinkConfig,
    LinkFinished,
    NetworkDown,
    NetworkUp,
    Phase,
    PppLink,
    UserAuthenticated,
    VerifyRequest,
    decode_protocol,
)
from pyl2tp.ppp.protocols import PROTO_IPCP, PROTO_IPV6CP, AuthMethod
from pyl2tp.ppp.secrets import SecretsFile

SECRETS = SecretsFile.parse('alice * "wonderland" 10.7.0.42\nbob * builder\n')
SERVER_IP = IPv4Address("10.7.0.1")
POOL_IP = IPv4Address("10.7.0.10")


def lns_config(*auth: AuthMethod, ipv6: bool = False, **kw: object) -> LinkConfig:
    return LinkConfig(
        lcp=LcpConfig(auth=auth),
        ipcp=IpcpConfig(local_address=SERVER_IP, peer_address=POOL_IP,
                        dns=(IPv4Address("10.7.0.53"),)),
        ipv6cp=Ipv6cpConfig(local_ifid=1) if ipv6 else None,
        auth_name="lns", **kw)  # type: ignore[arg-type]


def client_config(user: str = "bob", password: str = "builder", *, ipv6: bool = False,
                  peer_auth: tuple[AuthMethod, ...] = tuple(AuthMethod),
                  **kw: object) -> LinkConfig:
    return LinkConfig(
        lcp=LcpConfig(peer_auth=peer_auth),
        ipcp=IpcpConfig(request_dns=True),
        ipv6cp=Ipv6cpConfig() if ipv6 else None,
        credentials=Credentials(user, password), **kw)  # type: ignore[arg-type]


class Pair:
    """Two links and a clock; ``loss`` drops that fraction of frames, deterministically."""

    def __init__(self, a: LinkConfig, b: LinkConfig, *, loss: float = 0.0, seed: int = 1,
                 verify: Callable[[AuthRequest], AuthResult] | None = None,
                 assign: object = None) -> None:
        self.now = 0.0
        self.rand = random.Random(seed)
        self.loss = loss
        self.a = PppLink(a, rng=self.rand.randbytes, assign=assign)  # type: ignore[arg-type]
        self.b = PppLink(b, rng=self.rand.randbytes)
        self.events: dict[str, list[object]] = {"a": [], "b": []}
        self.ip: dict[str, list[bytes]] = {"a": [], "b": []}
        self.verify = verify or self._verify_file
        self.frames = 0

    @staticmethod
    def _verify_file(request: AuthRequest) -> AuthResult:
        return asyncio.run(SECRETS.authenticate(request))

    def start(self) -> None:
        self.a.start(self.now)
        self.b.start(self.now)
        self.flush()

    def flush(self) -> None:
        for _ in range(1000):
            moved = False
            for name, src, dst in (("a", self.a, self.b), ("b", self.b, self.a)):
                for frame in src.frames_to_send():
                    moved = True
                    self.frames += 1
                    if self.loss and self.rand.random() < self.loss:
                        continue
                    dst.receive(frame, self.now)
                for event in src.events():
                    moved = True
                    self.events[name].append(event)
                    if isinstance(event, VerifyRequest):
                        src.verdict(self.verify(event.request), self.now)
                self.ip[name] += src.ip_received()
            if not moved:
                return
        raise AssertionError("frames never stop flowing")

    def run(self, until: float) -> None:
        """Advance the clock deadline by deadline up to ``until``."""
        while True:
            deadlines = [d for d in (self.a.next_deadline(), self.b.next_deadline())
                         if d is not None]
            if not deadlines or min(deadlines) > until:
                self.now = until
                return
            self.now = max(self.now, min(deadlines))
            self.a.handle_timer(self.now)
            self.b.handle_timer(self.now)
            self.flush()

    def of(self, side: str, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events[side] if isinstance(e, kind)]


def ping(src: PppLink, dst: PppLink, packet: bytes, now: float) -> list[bytes]:
    frame = src.frame_ip(packet)
    assert frame is not None
    dst.receive(frame, now)
    return dst.ip_received()


IPV4_PACKET = bytes([0x45]) + bytes(19) + b"payload"
IPV6_PACKET = bytes([0x60]) + bytes(39) + b"payload6"


@pytest.mark.parametrize("method", list(AuthMethod))
def test_lns_and_client_come_up_with_each_auth_method(method: AuthMethod) -> None:
    pair = Pair(lns_config(method), client_config())
    pair.start()
    pair.run(5)
    assert pair.a.phase is Phase.NETWORK and pair.b.phase is Phase.NETWORK
    assert [e.username for e in pair.of("a", UserAuthenticated)] == ["bob"]
    assert pair.a.peer_name == "bob"
    (up_a,) = pair.of("a", NetworkUp)
    (up_b,) = pair.of("b", NetworkUp)
    assert (up_a.local, up_a.peer) == (SERVER_IP, POOL_IP)
    assert (up_b.local, up_b.peer) == (POOL_IP, SERVER_IP)
    assert up_b.dns == (IPv4Address("10.7.0.53"),)
    assert ping(pair.b, pair.a, IPV4_PACKET, pair.now) == [IPV4_PACKET]
    assert ping(pair.a, pair.b, IPV4_PACKET, pair.now) == [IPV4_PACKET]


def test_no_auth_comes_up_without_credentials() -> None:
    pair = Pair(lns_config(), LinkConfig(ipcp=IpcpConfig()))
    pair.start()
    pair.run(5)
    assert pair.a.ipv4_open and pair.b.ipv4_open
    assert pair.of("a", UserAuthenticated) == []


@pytest.mark.parametrize("method", list(AuthMethod))
def test_wrong_password_ends_both_sides(method: AuthMethod) -> None:
    pair = Pair(lns_config(method), client_config(password="wrong"))
    pair.start()
    pair.run(30)
    for side in "ab":
        (fin,) = pair.of(side, LinkFinished)
        assert "authentication failed" in fin.reason or "terminated" in fin.reason
    assert "authentication failed" in pair.of("a", LinkFinished)[0].reason
    assert not pair.a.ipv4_open and not pair.b.ipv4_open
    assert pair.of("a", NetworkUp) == [] and pair.of("b", NetworkUp) == []


def test_client_refusing_the_demanded_method_fails_negotiation() -> None:
    pair = Pair(lns_config(AuthMethod.MSCHAP_V2), client_config(peer_auth=(AuthMethod.PAP,)))
    pair.start()
    pair.run(60)
    (fin,) = pair.of("a", LinkFinished)
    assert "refused" in fin.reason or "negotiation" in fin.reason
    assert pair.a.finished and pair.b.finished


def test_lns_falls_back_to_the_next_method_the_client_can_do() -> None:
    pair = Pair(lns_config(AuthMethod.MSCHAP_V2, AuthMethod.CHAP_MD5, AuthMethod.PAP),
                client_config(peer_auth=(AuthMethod.PAP,)))
    pair.start()
    pair.run(5)
    assert pair.a.lcp_policy.auth_of_peer is AuthMethod.PAP
    assert pair.a.ipv4_open and pair.b.ipv4_open


def test_ipv6cp_brings_up_link_local_addresses() -> None:
    pair = Pair(lns_config(AuthMethod.CHAP_MD5, ipv6=True), client_config(ipv6=True))
    pair.start()
    pair.run(5)
    ups = {e.protocol: e for e in pair.of("b", NetworkUp)}
    assert set(ups) == {PROTO_IPCP, PROTO_IPV6CP}
    v6 = ups[PROTO_IPV6CP]
    assert v6.peer == IPv6Address("fe80::1")
    assert isinstance(v6.local, IPv6Address) and v6.local.is_link_local and v6.local != v6.peer
    assert ping(pair.b, pair.a, IPV6_PACKET, pair.now) == [IPV6_PACKET]


def test_ipv6cp_only_on_one_side_is_protocol_rejected_and_ipv4_stays_up() -> None:
    pair = Pair(lns_config(AuthMethod.PAP, ipv6=True), client_config())
    pair.start()
    pair.run(40)
    assert pair.a.ipv4_open and not pair.a.ipv6_open
    assert pair.b.counters.rx_protocol_rejected >= 1
    assert pair.of("a", LinkFinished) == []
    assert pair.a.frame_ip(IPV6_PACKET) is None
    assert pair.a.counters.tx_not_ready == 1


def test_ip_before_the_network_phase_is_not_delivered() -> None:
    pair = Pair(lns_config(AuthMethod.PAP), client_config())
    assert pair.b.frame_ip(IPV4_PACKET) is None
    pair.a.start(0)
    pair.a.receive(b"\x00\x21" + IPV4_PACKET, 0)
    assert pair.a.ip_received() == []
    assert pair.a.counters.rx_not_ready == 1


@pytest.mark.parametrize("seed", range(6))
def test_lossy_link_still_comes_up(seed: int) -> None:
    # Keepalives off: at 25% loss three lost Echo round trips in a row are likely enough
    # that the keepalive would (rightly) end some of these links.
    pair = Pair(lns_config(AuthMethod.CHAP_MD5, ipv6=True, echo_interval=0),
                client_config(ipv6=True, echo_interval=0), loss=0.25, seed=seed)
    pair.start()
    pair.run(120)
    assert pair.a.ipv4_open and pair.b.ipv4_open, pair.events
    assert pair.a.ipv6_open and pair.b.ipv6_open


def test_terminate_from_either_side() -> None:
    for closer in "ab":
        pair = Pair(lns_config(AuthMethod.PAP), client_config())
        pair.start()
        pair.run(5)
        link = pair.a if closer == "a" else pair.b
        link.close(pair.now, "admin says bye")
        pair.flush()
        pair.run(pair.now + 10)
        other = "b" if closer == "a" else "a"
        assert pair.of(closer, LinkFinished)[0].reason == "admin says bye"
        assert pair.of(other, LinkFinished)[0].reason == "terminated by the peer"
        assert [type(e) for e in pair.events[other] if isinstance(e, NetworkDown)] == \
            [NetworkDown]


def test_echo_keepalive_declares_a_silent_peer_dead() -> None:
    pair = Pair(lns_config(AuthMethod.PAP, echo_interval=2.0, echo_failure=3), client_config())
    pair.start()
    pair.run(5)
    assert pair.a.ipv4_open
    pair.run(30)  # echoes answered: still up
    assert pair.a.ipv4_open and pair.a.counters.echo_sent >= 10
    pair.loss = 1.0  # the peer vanishes without a word
    pair.run(60)
    (fin,) = pair.of("a", LinkFinished)
    assert fin.reason == "peer not responding to 3 echo requests"


def test_lower_down_finishes_at_once() -> None:
    pair = Pair(lns_config(AuthMethod.PAP), client_config())
    pair.start()
    pair.run(5)
    pair.a.lower_down(pair.now)
    pair.flush()
    assert pair.of("a", LinkFinished)[0].reason == "lower layer down"
    assert not pair.a.ipv4_open and pair.a.next_deadline() is None


def test_assign_gives_the_users_fixed_address_and_can_refuse() -> None:
    seen: list[tuple[str | None, str | None]] = []

    def assign(user: str | None, result: AuthResult | None) -> IpcpConfig | str:
        seen.append((user, result.address if result else None))
        assert result is not None and result.address is not None
        return IpcpConfig(local_address=SERVER_IP, peer_address=IPv4Address(result.address))

    pair = Pair(lns_config(AuthMethod.PAP), client_config("alice", "wonderland"),
                assign=assign)
    pair.start()
    pair.run(5)
    assert seen == [("alice", "10.7.0.42")]
    assert pair.of("b", NetworkUp)[0].local == IPv4Address("10.7.0.42")

    pair = Pair(lns_config(AuthMethod.PAP), client_config(),
                assign=lambda _u, _r: "address pool exhausted")
    pair.start()
    pair.run(20)
    assert pair.of("a", LinkFinished)[0].reason == "address pool exhausted"


def test_unknown_protocol_gets_a_protocol_reject_only_when_lcp_is_open() -> None:
    pair = Pair(lns_config(), client_config())
    pair.a.start(0)
    pair.a.frames_to_send()
    pair.a.receive(b"\x80\xfd\x01\x01\x00\x04", 0)  # CCP before LCP is up: dropped
    assert pair.a.frames_to_send() == []
    pair = Pair(lns_config(), client_config())
    pair.start()
    pair.run(5)
    pair.a.receive(b"\x80\xfd\x01\x01\x00\x04", pair.now)
    (frame,) = pair.a.frames_to_send()
    assert frame[:2] == b"\xc0\x21" and frame[2] == 8  # LCP Protocol-Reject
    assert frame[6:8] == b"\x80\xfd"


def test_decode_protocol_forms() -> None:
    assert decode_protocol(b"\xff\x03\xc0\x21\x01") == (0xC021, 4)
    assert decode_protocol(b"\xc0\x21\x01") == (0xC021, 2)
    assert decode_protocol(b"\x21\x45") == (0x21, 1)  # PFC-compressed IPv4
    assert decode_protocol(b"\xff\x03\x21") == (0x21, 3)
    assert decode_protocol(b"") is None
    assert decode_protocol(b"\xff\x03") is None
    assert decode_protocol(b"\x00\x20") is None  # low octet even: not a protocol
    assert decode_protocol(b"\x00") is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=30))
def test_hostile_frames_never_raise(frames: list[bytes]) -> None:
    pair = Pair(lns_config(AuthMethod.CHAP_MD5, ipv6=True), client_config(ipv6=True))
    pair.start()
    pair.run(5)
    for prefix in (b"", b"\xc0\x21", b"\xc2\x23", b"\x80\x21", b"\x80\x57", b"\xc0\x23"):
        for frame in frames:
            pair.a.receive(prefix + frame, pair.now)
            pair.b.receive(prefix + frame, pair.now)
    pair.flush()
    pair.run(pair.now + 60)


def test_an_unusable_assigned_address_closes_the_link_with_the_reason() -> None:
    def assign(_user: str | None, _result: AuthResult | None) -> IpcpConfig:
        return IpcpConfig(local_address=SERVER_IP, peer_address=SERVER_IP)  # raises

    pair = Pair(lns_config(AuthMethod.PAP), client_config(), assign=assign)
    pair.start()
    pair.run(20)
    (fin,) = pair.of("a", LinkFinished)
    assert fin.reason.startswith("no usable address: ")
    assert pair.of("b", LinkFinished)[0].reason == "terminated by the peer"


def test_max_configure_beyond_the_identifier_space_still_authenticates() -> None:
    pair = Pair(lns_config(AuthMethod.PAP, max_configure=1000),
                client_config(max_configure=1000))
    pair.start()
    pair.run(5)
    assert pair.a.ipv4_open and pair.b.ipv4_open


def test_a_failing_ncp_is_closed_once_and_the_link_settles(
        caplog: pytest.LogCaptureFixture) -> None:
    # The client insists on an address the server will not give: the client's IPCP fails.
    stubborn = LinkConfig(ipcp=IpcpConfig(local_address=IPv4Address("10.7.0.200")),
                          credentials=Credentials("bob", "builder"),
                          lcp=LcpConfig(peer_auth=(AuthMethod.PAP,)))
    pair = Pair(lns_config(AuthMethod.PAP), stubborn)
    with caplog.at_level("WARNING"):
        pair.start()
        pair.run(120)
    assert "did not settle" not in caplog.text
    assert not pair.a.ipv4_open and not pair.b.ipv4_open
    assert pair.of("b", LinkFinished)[0].reason == "no network protocols running"
