"""PAP, CHAP-MD5 and MS-CHAPv2 exchanges on a virtual clock.

An :class:`Authenticator` and an :class:`AuthPeer` are wired back to back through
:class:`Pair`, which moves packets both ways (optionally dropping some), answers each
VerifyRequest from a dict of cleartext secrets and fires timers at their deadlines. Exact
packet bytes are asserted where the RFCs fix them; hashes are recomputed independently
(hashlib for MD5, RFC 2759 §9.2 constants for MS-CHAPv2).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyl2tp.ppp import authpacket
from pyl2tp.ppp.auth import (
    AuthCounters,
    Authenticator,
    AuthEvent,
    AuthFailed,
    AuthPeer,
    AuthRequest,
    AuthResult,
    AuthSucceeded,
    ChapCode,
    Credentials,
    PapCode,
    VerifyRequest,
)
from pyl2tp.ppp.packet import ControlPacket, PppParseError
from pyl2tp.ppp.protocols import PROTO_CHAP, PROTO_LCP, PROTO_PAP, AuthMethod

PAP, MD5, MSV2 = AuthMethod.PAP, AuthMethod.CHAP_MD5, AuthMethod.MSCHAP_V2

# RFC 2759 §9.2
RFC_USER = "User"
RFC_PASSWORD = "clientPass"
RFC_AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
RFC_PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
RFC_NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
RFC_AUTH_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"


# ---------------------------------------------------------------------------------------------
# Harness


def scripted(*chunks: bytes) -> Callable[[int], bytes]:
    """An rng that returns ``chunks`` in order (each of the requested size), then counts."""
    queue = list(chunks)
    counter = [0]

    def rng(n: int) -> bytes:
        if queue:
            chunk = queue.pop(0)
            assert len(chunk) == n, f"script expected {len(chunk)} octets, asked for {n}"
            return chunk
        counter[0] += 1
        return hashlib.sha256(counter[0].to_bytes(4, "big")).digest()[:n]

    return rng


def pkt(code: int, ident: int, data: bytes) -> bytes:
    return struct.pack(">BBH", code, ident, 4 + len(data)) + data


@dataclass
class Pair:
    """An authenticator and a peer joined by a link that may drop packets."""

    auth: Authenticator
    peer: AuthPeer
    secrets: dict[str, str] = field(default_factory=dict)
    now: float = 0.0
    drop_to_peer: Callable[[int, bytes], bool] = lambda i, p: False
    drop_to_auth: Callable[[int, bytes], bool] = lambda i, p: False
    auto_verdict: bool = True
    address: str | None = None
    wire: list[tuple[float, str, bytes]] = field(default_factory=list)
    auth_events: list[AuthEvent] = field(default_factory=list)
    peer_events: list[AuthEvent] = field(default_factory=list)
    pending: list[AuthRequest] = field(default_factory=list)

    def backend(self, request: AuthRequest) -> AuthResult:
        secret = self.secrets.get(request.username)
        if secret is None:
            return request.failure()
        result = request.verify_with(secret)
        return AuthResult(result.ok, result.message, self.address if result.ok else None)

    def pump(self) -> None:
        for _ in range(1000):
            moved = False
            for ev in self.auth.events():
                moved = True
                self.auth_events.append(ev)
                if isinstance(ev, VerifyRequest):
                    if self.auto_verdict:
                        self.auth.verdict(self.backend(ev.request), self.now)
                    else:
                        self.pending.append(ev.request)
            peer_events = self.peer.events()
            moved = moved or bool(peer_events)
            self.peer_events.extend(peer_events)
            moved |= self._carry(self.auth, self.peer, "a>p", self.drop_to_peer)
            moved |= self._carry(self.peer, self.auth, "p>a", self.drop_to_auth)
            if not moved:
                return
        raise AssertionError("packet storm")

    def _carry(
        self,
        src: Authenticator | AuthPeer,
        dst: Authenticator | AuthPeer,
        direction: str,
        drop: Callable[[int, bytes], bool],
    ) -> bool:
        """Move ``src``'s packets to ``dst``, logging each on ``wire`` (``x``: dropped);
        ``drop`` sees each packet's index in its direction."""
        packets = src.packets_to_send()
        for proto, data in packets:
            index = len(self.sent(direction))
            dropped = drop(index, data)
            self.wire.append((self.now, direction + ("x" if dropped else ""), data))
            if not dropped:
                dst.receive(proto, data, self.now)
        return bool(packets)

    def start(self) -> None:
        self.auth.start(self.now)
        self.peer.start(self.now)
        self.pump()

    def run_until(self, end: float) -> None:
        while True:
            deadlines = [
                d for d in (self.auth.next_deadline(), self.peer.next_deadline()) if d is not None
            ]
            if not deadlines or min(deadlines) > end:
                self.now = end
                return
            self.now = max(self.now, min(deadlines))
            self.auth.handle_timer(self.now)
            self.peer.handle_timer(self.now)
            self.pump()

    def sent(self, direction: str) -> list[bytes]:
        return [data for _t, d, data in self.wire if d.startswith(direction)]


def make_pair(
    method: AuthMethod,
    *,
    user: str = "alice",
    password: str = "s3cret",
    secrets: dict[str, str] | None = None,
    auth_rng: Callable[[int], bytes] | None = None,
    peer_rng: Callable[[int], bytes] | None = None,
    **auth_kwargs: Any,
) -> Pair:
    auth = Authenticator(method, name="lns", rng=auth_rng or scripted(), **auth_kwargs)
    peer = AuthPeer(method, Credentials(user, password), rng=peer_rng or scripted())
    return Pair(auth, peer, {"alice": "s3cret"} if secrets is None else secrets)


def only_request(events: list[AuthEvent]) -> AuthRequest:
    [event] = events
    assert isinstance(event, VerifyRequest)
    return event.request


def successes(events: list[AuthEvent]) -> list[AuthSucceeded]:
    return [e for e in events if isinstance(e, AuthSucceeded)]


def failures(events: list[AuthEvent]) -> list[AuthFailed]:
    return [e for e in events if isinstance(e, AuthFailed)]


def verifies(events: list[AuthEvent]) -> list[VerifyRequest]:
    return [e for e in events if isinstance(e, VerifyRequest)]


# ---------------------------------------------------------------------------------------------
# PAP


def test_pap_exact_bytes() -> None:
    peer = AuthPeer(PAP, Credentials("alice", "pw"), rng=scripted(b"\x07"))
    peer.start(0.0)
    [(proto, request)] = peer.packets_to_send()
    assert proto == PROTO_PAP
    assert request == bytes.fromhex("0107000d05") + b"alice" + b"\x02pw"

    auth = Authenticator(PAP, name="lns")
    auth.start(0.0)
    assert auth.packets_to_send() == []  # PAP's authenticator only waits
    auth.receive(PROTO_PAP, request, 0.5)
    [event] = auth.events()
    assert event == VerifyRequest(AuthRequest(PAP, "alice", password="pw", identifier=7))
    assert "pw" not in repr(event)  # passwords stay out of logs
    auth.verdict(AuthResult(True, address="10.0.0.5"), 0.6)
    [(proto, ack)] = auth.packets_to_send()
    assert (proto, ack) == (PROTO_PAP, bytes.fromhex("0207001d18") + b"Authentication succeeded")
    [done] = auth.events()
    assert done == AuthSucceeded("alice", AuthResult(True, address="10.0.0.5"))
    assert auth.authenticated_user == "alice"
    assert auth.result == AuthResult(True, address="10.0.0.5")

    peer.receive(PROTO_PAP, ack, 0.7)
    assert peer.events() == [AuthSucceeded("alice", AuthResult(True, "Authentication succeeded"))]
    assert peer.next_deadline() is None


def test_pap_success_back_to_back() -> None:
    pair = make_pair(PAP)
    pair.address = "10.1.2.3"
    pair.start()
    assert successes(pair.auth_events) == [
        AuthSucceeded("alice", AuthResult(True, "Authentication succeeded", "10.1.2.3"))
    ]
    assert [e.username for e in successes(pair.peer_events)] == ["alice"]
    assert pair.auth.next_deadline() is None and pair.peer.next_deadline() is None
    assert pair.auth.counters.rx == {1: 1} and pair.auth.counters.tx == {2: 1}


def test_pap_wrong_password_naks_and_both_sides_fail() -> None:
    pair = make_pair(PAP, password="guess")
    pair.start()
    [nak] = pair.sent("a>p")
    assert (
        nak == bytes.fromhex("03") + nak[1:2] + bytes.fromhex("001a15") + b"Authentication failed"
    )
    assert failures(pair.auth_events) == [AuthFailed("peer 'alice' failed pap authentication")]
    assert failures(pair.peer_events) == [
        AuthFailed("authenticator refused: Authentication failed")
    ]
    assert not successes(pair.auth_events) and pair.auth.authenticated_user is None


def test_pap_unknown_user_fails() -> None:
    pair = make_pair(PAP, user="mallory")
    pair.start()
    assert len(failures(pair.auth_events)) == 1 and len(failures(pair.peer_events)) == 1


def test_pap_lossy_link_retransmits_with_new_identifiers() -> None:
    pair = make_pair(PAP, peer_rng=scripted(b"\x10"))
    pair.drop_to_auth = lambda i, p: i < 2  # the first two Requests are lost
    pair.start()
    pair.run_until(20.0)
    requests = pair.sent("p>a")
    assert [r[1] for r in requests] == [0x10, 0x11, 0x12]  # RFC 1334: a new id each time
    assert [t for t, d, _ in pair.wire if d.startswith("p>a")] == [0.0, 3.0, 6.0]
    assert pair.peer.counters.retransmits == 2
    [ack] = pair.sent("a>p")
    assert ack[:2] == b"\x02\x12"
    assert len(successes(pair.peer_events)) == 1 and len(successes(pair.auth_events)) == 1


def test_pap_lost_ack_gets_the_same_answer_again() -> None:
    pair = make_pair(PAP, peer_rng=scripted(b"\x20"))
    pair.drop_to_peer = lambda i, p: i == 0  # the first Ack is lost
    pair.start()
    pair.run_until(10.0)
    acks = pair.sent("a>p")
    assert [a[:2] for a in acks] == [b"\x02\x20", b"\x02\x21"]
    assert acks[0][2:] == acks[1][2:]
    assert len(verifies(pair.auth_events)) == 1  # the backend was asked once
    assert pair.auth.counters.duplicates == 1
    assert len(successes(pair.peer_events)) == 1 and len(successes(pair.auth_events)) == 1


def test_pap_duplicate_after_nak_is_naked_again() -> None:
    pair = make_pair(PAP, password="guess")
    pair.start()
    pair.peer.stop()
    request = pkt(1, 0x55, b"\x05alice\x05guess")
    pair.auth.receive(PROTO_PAP, request, 1.0)
    [(_, nak)] = pair.auth.packets_to_send()
    assert nak[:2] == b"\x03\x55"
    assert pair.auth.events() == []  # no second AuthFailed
    assert pair.auth.counters.duplicates == 1


def test_pap_peer_gives_up_after_max_transmits() -> None:
    peer = AuthPeer(PAP, Credentials("a", "b"), restart_interval=2.0, max_transmits=4)
    peer.start(0.0)
    times = [0.0]
    sent = len(peer.packets_to_send())
    while (deadline := peer.next_deadline()) is not None:
        peer.handle_timer(deadline)
        out = peer.packets_to_send()
        if out:
            times.append(deadline)
            sent += len(out)
        events = peer.events()
        if events:
            assert events == [AuthFailed("no reply to 4 Authenticate-Requests")]
            assert deadline == 8.0
            break
    assert times == [0.0, 2.0, 4.0, 6.0] and sent == 4
    assert peer.counters.timeouts == 1 and peer.counters.retransmits == 3


def test_pap_authenticator_times_out_waiting() -> None:
    auth = Authenticator(PAP, name="lns", timeout=30.0)
    auth.start(100.0)
    assert auth.next_deadline() == 130.0
    auth.handle_timer(129.9)
    assert auth.events() == []
    auth.handle_timer(130.0)
    assert auth.events() == [AuthFailed("no valid Authenticate-Request within 30 s")]
    assert auth.next_deadline() is None and auth.counters.timeouts == 1


def test_pap_request_while_verifying_is_ignored() -> None:
    pair = make_pair(PAP, peer_rng=scripted(b"\x01"))
    pair.auto_verdict = False
    pair.start()
    pair.run_until(7.0)  # two retransmissions reach the busy authenticator
    assert len(pair.pending) == 1 and pair.auth.counters.discarded_busy == 2
    pair.auth.verdict(pair.backend(pair.pending[0]), pair.now)
    pair.pump()
    [ack] = pair.sent("a>p")
    assert ack[:2] == b"\x02\x01"  # answers the Request it judged
    assert len(successes(pair.peer_events)) == 1  # the peer accepts an Ack to any of its ids


def test_pap_backend_that_never_answers_times_out_with_nak() -> None:
    pair = make_pair(PAP, timeout=10.0)
    pair.auto_verdict = False
    pair.start()
    pair.run_until(10.0)
    assert failures(pair.auth_events) == [
        AuthFailed("no valid Authenticate-Request within 10 s (backend did not answer)")
    ]
    assert pair.sent("a>p")[0][0] == 3  # the peer is told
    assert len(failures(pair.peer_events)) == 1
    # The late verdict is stale.
    pair.auth.verdict(AuthResult(True), pair.now, request=pair.pending[0])
    assert pair.auth.counters.stale_verdicts == 1 and pair.auth.packets_to_send() == []


def test_verdict_for_another_request_is_stale() -> None:
    auth = Authenticator(PAP, name="lns")
    auth.start(0.0)
    auth.receive(PROTO_PAP, pkt(1, 1, b"\x01a\x01b"), 0.0)
    request = only_request(auth.events())
    other = AuthRequest(PAP, "a", password="b", identifier=1)  # equal, but not the same object
    auth.verdict(AuthResult(True), 0.1, request=other)
    assert auth.counters.stale_verdicts == 1 and auth.authenticated_user is None
    auth.verdict(AuthResult(True), 0.1, request=request)
    assert auth.authenticated_user == "a"


def test_pap_peer_matches_replies_to_its_identifiers() -> None:
    peer = AuthPeer(PAP, Credentials("a", "b"), rng=scripted(b"\x40"))
    peer.start(0.0)
    peer.handle_timer(3.0)  # second Request, id 0x41
    peer.receive(PROTO_PAP, pkt(2, 0x99, b"\x00"), 3.1)
    assert peer.counters.discarded_bad_id == 1 and peer.events() == []
    peer.receive(PROTO_PAP, pkt(2, 0x40, b""), 3.2)  # late Ack to the first; no Msg-Length
    assert peer.events() == [AuthSucceeded("a", AuthResult(True, ""))]
    peer.receive(PROTO_PAP, pkt(3, 0x41, b"\x00"), 3.3)  # decided already
    assert peer.events() == [] and peer.counters.duplicates == 1


def test_pap_reply_with_overlong_message_length_is_malformed() -> None:
    peer = AuthPeer(PAP, Credentials("a", "b"), rng=scripted(b"\x01"))
    peer.start(0.0)
    peer.receive(PROTO_PAP, pkt(2, 1, b"\x05abc"), 0.1)
    assert peer.counters.discarded_malformed == 1 and peer.events() == []


def test_pap_peer_rejects_credentials_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        AuthPeer(PAP, Credentials("u" * 256, "p"))
    with pytest.raises(ValueError):
        AuthPeer(PAP, Credentials("u", "p" * 256))
    AuthPeer(PAP, Credentials("u" * 255, "p" * 255))


def test_pap_messages_are_truncated_and_sanitized() -> None:
    auth = Authenticator(PAP, name="lns")
    auth.start(0.0)
    auth.receive(PROTO_PAP, pkt(1, 1, b"\x01a\x01b"), 0.0)
    auth.events()
    auth.verdict(AuthResult(False, "é" * 200), 0.0)
    [(_, nak)] = auth.packets_to_send()
    assert nak[4] == 254 and nak[5:] == "é".encode() * 127  # cut on a character boundary

    peer = AuthPeer(PAP, Credentials("a", "b"), rng=scripted(b"\x01"))
    peer.start(0.0)
    peer.receive(PROTO_PAP, pkt(3, 1, b"\x06go\naway"), 0.0)
    assert peer.events() == [AuthFailed("authenticator refused: go\\x0aawa")]


# ---------------------------------------------------------------------------------------------
# CHAP-MD5

CHALLENGE = bytes(range(16))


def test_chap_md5_exact_bytes() -> None:
    pair = make_pair(MD5, auth_rng=scripted(b"\x2a", CHALLENGE))
    pair.start()
    challenge, success = pair.sent("a>p")
    [response] = pair.sent("p>a")
    assert challenge == bytes.fromhex("012a001810") + CHALLENGE + b"lns"
    # RFC 1994 §4.1: MD5 over Identifier ‖ secret ‖ Challenge, here recomputed with hashlib
    # and, as a literal, with `md5sum`.
    digest = hashlib.md5(b"\x2a" + b"s3cret" + CHALLENGE).digest()
    assert digest.hex() == "b0d90921e9950abd1a7e76dc7a01bc64"
    assert response == bytes.fromhex("022a001a10") + digest + b"alice"
    assert success == bytes.fromhex("032a001c") + b"Authentication succeeded"
    [verify] = verifies(pair.auth_events)
    assert verify.request == AuthRequest(
        MD5, "alice", identifier=0x2A, challenge=CHALLENGE, response=digest
    )
    assert len(successes(pair.auth_events)) == 1 and len(successes(pair.peer_events)) == 1


def test_chap_md5_verify_with_directly() -> None:
    digest = hashlib.md5(b"\x07" + b"pw" + b"chal").digest()
    request = AuthRequest(MD5, "u", identifier=7, challenge=b"chal", response=digest)
    assert request.verify_with("pw").ok
    assert not request.verify_with("pW").ok
    assert not request.verify_with("").ok  # RFC 1994 §2.3: a secret is at least one octet
    assert (
        not AuthRequest(MD5, "u", identifier=8, challenge=b"chal", response=digest)
        .verify_with("pw")
        .ok
    )
    assert (
        not AuthRequest(MD5, "u", identifier=7, challenge=b"chal", response=digest[:15])
        .verify_with("pw")
        .ok
    )


def test_chap_md5_wrong_secret_fails_both_sides() -> None:
    pair = make_pair(MD5, password="wrong", auth_rng=scripted(b"\x05", CHALLENGE))
    pair.start()
    assert pair.sent("a>p")[-1] == bytes.fromhex("04050019") + b"Authentication failed"
    assert failures(pair.auth_events) == [AuthFailed("peer 'alice' failed chap-md5 authentication")]
    assert failures(pair.peer_events) == [
        AuthFailed("authenticator refused: Authentication failed")
    ]
    # A repeated Response for the same identifier gets the same Failure (RFC 1994 §4.1).
    [response] = pair.sent("p>a")
    pair.auth.receive(PROTO_CHAP, response, 1.0)
    [(_, again)] = pair.auth.packets_to_send()
    assert again == bytes.fromhex("04050019") + b"Authentication failed"
    assert pair.auth.events() == []


def test_chap_md5_retransmits_challenges_with_new_id_and_value() -> None:
    pair = make_pair(MD5, auth_rng=scripted(b"\xfe"))
    pair.drop_to_peer = lambda i, p: i < 2
    pair.start()
    pair.run_until(20.0)
    challenges = [p for p in pair.sent("a>p") if p[0] == 1]
    assert [c[1] for c in challenges] == [0xFE, 0xFF, 0x00]  # identifiers wrap
    values = {c[5:21] for c in challenges}
    assert len(values) == 3  # RFC 1994 §4.1: the value changes with every Challenge
    assert [t for t, d, p in pair.wire if p[0] == 1] == [0.0, 3.0, 6.0]
    assert pair.auth.counters.retransmits == 2
    assert len(successes(pair.auth_events)) == 1 and len(successes(pair.peer_events)) == 1


def test_chap_stale_response_is_discarded_not_fatal() -> None:
    auth = Authenticator(MD5, name="lns", rng=scripted(b"\x10", b"A" * 16, b"B" * 16))
    auth.start(0.0)
    auth.handle_timer(3.0)  # Challenge id 0x11 replaces 0x10
    assert [p[1] for _, p in auth.packets_to_send()] == [0x10, 0x11]
    old = hashlib.md5(b"\x10s3cret" + b"A" * 16).digest()
    auth.receive(PROTO_CHAP, pkt(2, 0x10, b"\x10" + old + b"alice"), 3.1)
    assert auth.counters.discarded_bad_id == 1 and auth.events() == []
    assert auth.next_deadline() == 6.0  # still challenging
    new = hashlib.md5(b"\x11s3cret" + b"B" * 16).digest()
    auth.receive(PROTO_CHAP, pkt(2, 0x11, b"\x10" + new + b"alice"), 3.2)
    request = only_request(auth.events())
    auth.verdict(request.verify_with("s3cret"), 3.3)
    assert auth.authenticated_user == "alice"


def test_chap_lost_success_peer_repeats_response_and_gets_success_again() -> None:
    pair = make_pair(MD5, auth_rng=scripted(b"\x01"))
    pair.drop_to_peer = lambda i, p: p[0] == 3 and i == 1  # the first Success is lost
    pair.start()
    assert not pair.peer_events
    pair.run_until(10.0)
    responses = pair.sent("p>a")
    assert len(responses) == 2 and responses[0] == responses[1]
    assert [t for t, d, _ in pair.wire if d == "p>a"] == [0.0, 3.0]
    assert pair.auth.counters.duplicates == 1 and len(verifies(pair.auth_events)) == 1
    assert len(successes(pair.peer_events)) == 1
    assert pair.peer.next_deadline() is None  # nothing more to repeat


def test_chap_peer_answers_repeated_challenge_identically() -> None:
    peer = AuthPeer(MSV2, Credentials(RFC_USER, RFC_PASSWORD), rng=scripted(RFC_PEER_CHALLENGE))
    peer.start(0.0)
    challenge = pkt(1, 9, b"\x10" + RFC_AUTH_CHALLENGE + b"srv")
    peer.receive(PROTO_CHAP, challenge, 0.0)
    peer.receive(PROTO_CHAP, challenge, 3.0)
    first, second = peer.packets_to_send()
    assert first == second  # same peer challenge, so a Success for either verifies
    assert peer.counters.duplicates == 1
    # A new identifier is a new Challenge: a fresh peer challenge.
    peer.receive(PROTO_CHAP, pkt(1, 10, b"\x10" + RFC_AUTH_CHALLENGE), 3.5)
    [(_, third)] = peer.packets_to_send()
    assert third[1] == 10 and third[5:21] != RFC_PEER_CHALLENGE


def test_chap_response_repeats_are_bounded() -> None:
    peer = AuthPeer(MD5, Credentials("a", "b"), max_transmits=3, timeout=100.0)
    peer.start(0.0)
    peer.receive(PROTO_CHAP, pkt(1, 1, b"\x01x"), 0.0)
    sent = len(peer.packets_to_send())
    while (d := peer.next_deadline()) is not None and d < 100.0:
        peer.handle_timer(d)
        sent += len(peer.packets_to_send())
    assert sent == 3 and peer.next_deadline() == 100.0
    peer.handle_timer(100.0)
    assert peer.events() == [AuthFailed("no CHAP Success or Failure within 100 s")]


def test_chap_success_after_success_same_id_is_sent_again() -> None:
    pair = make_pair(MD5, auth_rng=scripted(b"\x33"))
    pair.start()
    [response] = pair.sent("p>a")
    [_, success] = pair.sent("a>p")
    pair.auth.receive(PROTO_CHAP, response, 5.0)
    [(_, again)] = pair.auth.packets_to_send()
    assert again == success and pair.auth.events() == []
    # and the peer ignores the duplicate Success
    pair.peer.receive(PROTO_CHAP, again, 5.1)
    assert pair.peer.events() == [] and pair.peer.counters.duplicates == 1


def test_chap_authenticator_gives_up_after_max_transmits() -> None:
    auth = Authenticator(MD5, name="lns", max_transmits=10, restart_interval=3.0, timeout=60.0)
    auth.start(0.0)
    times: list[float] = [0.0]
    ids = [p[1] for _, p in auth.packets_to_send()]
    events: list[AuthEvent] = []
    while (d := auth.next_deadline()) is not None:
        auth.handle_timer(d)
        out = auth.packets_to_send()
        ids += [p[1] for _, p in out]
        times += [d] * len(out)
        events += auth.events()
    assert times == [3.0 * i for i in range(10)]
    assert ids == [(ids[0] + i) & 0xFF for i in range(10)]
    assert events == [AuthFailed("no Response to 10 Challenges")]
    assert auth.counters.timeouts == 1 and auth.counters.retransmits == 9


def test_chap_timeout_cuts_challenging_short() -> None:
    auth = Authenticator(MD5, name="lns", max_transmits=10, timeout=5.0)
    auth.start(0.0)
    auth.handle_timer(3.0)
    auth.handle_timer(5.0)
    assert auth.events() == [AuthFailed("no valid Response within 5 s")]


def test_chap_response_of_wrong_size_fails_without_asking_backend() -> None:
    auth = Authenticator(MD5, name="lns", rng=scripted(b"\x01"))
    auth.start(0.0)
    auth.packets_to_send()
    auth.receive(PROTO_CHAP, pkt(2, 1, b"\x05abcdealice"), 0.1)
    [(_, failure)] = auth.packets_to_send()
    assert failure[:2] == b"\x04\x01"
    assert auth.events() == [AuthFailed("peer 'alice' failed chap-md5 authentication")]
    assert auth.counters.invalid_responses == 1


def test_chap_rechallenge_passes_then_fails_when_secret_changes() -> None:
    pair = make_pair(MD5, auth_rng=scripted(b"\x01"), rechallenge_interval=60.0)
    pair.start()
    assert pair.auth.next_deadline() == 60.0
    pair.run_until(61.0)
    assert pair.auth.counters.rechallenges == 1 and pair.peer.counters.rechallenges == 1
    assert [p[:2] for p in pair.sent("a>p")] == [b"\x01\x01", b"\x03\x01", b"\x01\x02", b"\x03\x02"]
    assert len(successes(pair.auth_events)) == 1  # a passed re-challenge emits nothing
    assert len(successes(pair.peer_events)) == 1
    assert not failures(pair.auth_events) and pair.auth.next_deadline() == 120.0

    pair.secrets["alice"] = "rotated"
    pair.run_until(121.0)
    assert pair.sent("a>p")[-1][:2] == b"\x04\x03"
    assert len(failures(pair.auth_events)) == 1 and len(failures(pair.peer_events)) == 1
    assert pair.auth.next_deadline() is None


def test_chap_unanswered_rechallenge_fails() -> None:
    pair = make_pair(MD5, rechallenge_interval=10.0, max_transmits=3)
    pair.start()
    pair.peer.stop()  # the peer goes silent
    pair.run_until(100.0)
    assert failures(pair.auth_events) == [AuthFailed("no Response to 3 Challenges")]
    assert pair.now == 100.0 and pair.auth.next_deadline() is None


def test_chap_rechallenge_by_another_user_fails() -> None:
    auth = Authenticator(MD5, name="lns", rng=scripted(b"\x01"), rechallenge_interval=5.0)
    secrets = {"alice": "a", "bob": "b"}

    def answer(user: str, now: float) -> None:
        [(_, challenge)] = auth.packets_to_send()
        ident, value = challenge[1], challenge[5:21]
        digest = hashlib.md5(bytes((ident,)) + secrets[user].encode() + value).digest()
        auth.receive(PROTO_CHAP, pkt(2, ident, b"\x10" + digest + user.encode()), now)
        request = only_request(auth.events())
        auth.verdict(request.verify_with(secrets[request.username]), now)

    auth.start(0.0)
    answer("alice", 0.1)
    assert [type(e) for e in auth.events()] == [AuthSucceeded]
    [(_, success)] = auth.packets_to_send()
    assert success[0] == 3
    auth.handle_timer(5.1)
    answer("bob", 5.2)
    assert auth.events() == [AuthFailed("peer 'bob' failed chap-md5 authentication")]
    [(_, failure)] = auth.packets_to_send()
    assert failure == pkt(4, 2, b"user name changed on re-challenge")
    assert auth.authenticated_user == "alice"  # until stop(): the link is being closed


def test_late_answers_after_a_timeout_get_no_reply() -> None:
    # Found by the fuzz test: a failure by timeout has no reply to repeat.
    chap = Authenticator(MD5, name="lns", rng=scripted(b"\x01"), max_transmits=1)
    chap.start(0.0)
    chap.handle_timer(3.0)
    assert chap.events() == [AuthFailed("no Response to 1 Challenges")]
    chap.packets_to_send()
    chap.receive(PROTO_CHAP, pkt(2, 1, b"\x10" + bytes(16) + b"a"), 3.1)
    assert chap.packets_to_send() == [] and chap.counters.discarded_wrong_state == 1

    pap = Authenticator(PAP, name="lns", timeout=5.0)
    pap.start(0.0)
    pap.handle_timer(5.0)
    pap.receive(PROTO_PAP, pkt(1, 1, b"\x01a\x01b"), 5.1)
    assert pap.packets_to_send() == [] and pap.counters.discarded_wrong_state == 1


# ---------------------------------------------------------------------------------------------
# MS-CHAPv2


def rfc_pair(password: str = RFC_PASSWORD, user: str = RFC_USER) -> Pair:
    return make_pair(
        MSV2,
        user=user,
        password=password,
        secrets={RFC_USER: RFC_PASSWORD, "DOM\\User": RFC_PASSWORD},
        auth_rng=scripted(b"\x4c", RFC_AUTH_CHALLENGE),
        peer_rng=scripted(RFC_PEER_CHALLENGE),
    )


def test_mschapv2_rfc2759_vectors_end_to_end() -> None:
    pair = rfc_pair()
    pair.start()
    challenge, success = pair.sent("a>p")
    [response] = pair.sent("p>a")
    assert challenge == bytes.fromhex("014c001810") + RFC_AUTH_CHALLENGE + b"lns"
    value = RFC_PEER_CHALLENGE + bytes(8) + RFC_NT_RESPONSE + b"\x00"
    assert response == bytes.fromhex("024c003a31") + value + b"User"
    message = RFC_AUTH_RESPONSE + " M=Authentication succeeded"
    assert success == pkt(3, 0x4C, message.encode())
    assert successes(pair.auth_events)[0].result == AuthResult(True, message)
    assert successes(pair.peer_events) == [AuthSucceeded(RFC_USER, AuthResult(True, message))]


def test_mschapv2_domain_is_not_hashed() -> None:
    pair = rfc_pair(user="DOM\\User")
    pair.start()
    [response] = pair.sent("p>a")
    assert response[5 + 24 : 5 + 48] == RFC_NT_RESPONSE  # same as for plain "User"
    assert response.endswith(b"DOM\\User")
    assert successes(pair.peer_events) and successes(pair.auth_events)


def test_mschapv2_wrong_password_exact_failure() -> None:
    pair = rfc_pair(password="clientpass")
    pair.start()
    failure = pair.sent("a>p")[-1]
    text = "E=691 R=0 C=5B5D7C7D7B3F2F3E3C2C602132262628 V=3 M=Authentication failed"
    assert failure == pkt(4, 0x4C, text.encode())
    assert failures(pair.peer_events) == [AuthFailed(f"authenticator refused: {text}")]
    assert len(failures(pair.auth_events)) == 1


def test_mschapv2_backend_failure_text_is_put_in_format() -> None:
    pair = rfc_pair()
    pair.auto_verdict = False
    pair.start()
    pair.auth.verdict(AuthResult(False, "database down"), 0.0)
    pair.pump()
    text = "E=691 R=0 C=5B5D7C7D7B3F2F3E3C2C602132262628 V=3 M=database down"
    assert pair.sent("a>p")[-1] == pkt(4, 0x4C, text.encode())


def test_mschapv2_peer_rejects_forged_success(caplog: pytest.LogCaptureFixture) -> None:
    pair = rfc_pair()
    pair.auto_verdict = False
    pair.start()
    forged = "S=" + "0" * 40 + " M=welcome"
    with caplog.at_level(logging.WARNING, logger="pyl2tp.ppp.auth"):
        pair.auth.verdict(AuthResult(True, forged), 0.0)
    pair.pump()
    assert failures(pair.peer_events) == [
        AuthFailed("authenticator response (S=) missing or wrong: not the real server?")
    ]
    assert pair.peer.counters.bad_authenticator_responses == 1
    assert not caplog.records  # it starts with S=, so the authenticator did not warn


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"M=hello",
        RFC_AUTH_RESPONSE[:-1].encode(),
        RFC_AUTH_RESPONSE.encode() + b"X",
        b" " + RFC_AUTH_RESPONSE.encode(),
    ],
)
def test_mschapv2_peer_rejects_bad_success_messages(message: bytes) -> None:
    peer = AuthPeer(MSV2, Credentials(RFC_USER, RFC_PASSWORD), rng=scripted(RFC_PEER_CHALLENGE))
    peer.start(0.0)
    peer.receive(PROTO_CHAP, pkt(1, 3, b"\x10" + RFC_AUTH_CHALLENGE), 0.0)
    peer.receive(PROTO_CHAP, pkt(3, 3, message), 0.1)
    [event] = peer.events()
    assert isinstance(event, AuthFailed)


@pytest.mark.parametrize("suffix", [b"", b" M=ok", b" M="])
def test_mschapv2_peer_accepts_good_success_messages(suffix: bytes) -> None:
    peer = AuthPeer(MSV2, Credentials(RFC_USER, RFC_PASSWORD), rng=scripted(RFC_PEER_CHALLENGE))
    peer.start(0.0)
    peer.receive(PROTO_CHAP, pkt(1, 3, b"\x10" + RFC_AUTH_CHALLENGE), 0.0)
    peer.receive(PROTO_CHAP, pkt(3, 3, RFC_AUTH_RESPONSE.lower().encode() + suffix), 0.1)
    [event] = peer.events()
    assert isinstance(event, AuthSucceeded)


def test_mschapv2_backend_success_without_s_warns(caplog: pytest.LogCaptureFixture) -> None:
    pair = rfc_pair()
    pair.auto_verdict = False
    pair.start()
    with caplog.at_level(logging.WARNING, logger="pyl2tp.ppp.auth"):
        pair.auth.verdict(AuthResult(True, "ok"), 0.0)
    assert "S=" in caplog.text
    pair.pump()
    assert len(failures(pair.peer_events)) == 1  # the peer, rightly, does not accept it


def test_mschapv2_verify_with() -> None:
    value = RFC_PEER_CHALLENGE + bytes(8) + RFC_NT_RESPONSE + b"\x00"
    request = AuthRequest(
        MSV2, RFC_USER, identifier=1, challenge=RFC_AUTH_CHALLENGE, response=value
    )
    assert request.verify_with(RFC_PASSWORD) == AuthResult(
        True, RFC_AUTH_RESPONSE + " M=Authentication succeeded"
    )
    failed = request.verify_with("nope")
    assert not failed.ok and failed.message.startswith("E=691 R=0 C=5B5D7C7D")
    # Reserved octets and flags must be zero (RFC 2759 §4).
    for bad in (value[:20] + b"\x01" + value[21:], value[:48] + b"\x01", value[:48]):
        req = AuthRequest(MSV2, RFC_USER, identifier=1, challenge=RFC_AUTH_CHALLENGE, response=bad)
        assert not req.verify_with(RFC_PASSWORD).ok


def test_mschapv2_peer_drops_short_challenge() -> None:
    peer = AuthPeer(MSV2, Credentials("a", "b"))
    peer.start(0.0)
    peer.receive(PROTO_CHAP, pkt(1, 1, b"\x08" + bytes(8)), 0.0)
    assert peer.counters.discarded_malformed == 1 and peer.packets_to_send() == []


def test_mschapv2_rechallenge_checks_s_again() -> None:
    peer = AuthPeer(MSV2, Credentials(RFC_USER, RFC_PASSWORD), rng=scripted(RFC_PEER_CHALLENGE))
    peer.start(0.0)
    peer.receive(PROTO_CHAP, pkt(1, 3, b"\x10" + RFC_AUTH_CHALLENGE), 0.0)
    peer.receive(PROTO_CHAP, pkt(3, 3, RFC_AUTH_RESPONSE.encode()), 0.1)
    assert [type(e) for e in peer.events()] == [AuthSucceeded]
    peer.receive(PROTO_CHAP, pkt(1, 4, b"\x10" + bytes(16)), 60.0)
    peer.receive(PROTO_CHAP, pkt(3, 4, RFC_AUTH_RESPONSE.encode()), 60.1)  # wrong for id 4
    assert [type(e) for e in peer.events()] == [AuthFailed]


# ---------------------------------------------------------------------------------------------
# Robustness


@pytest.mark.parametrize("method", list(AuthMethod))
def test_wrong_protocol_and_unexpected_codes_are_counted(method: AuthMethod) -> None:
    auth = Authenticator(method, name="lns")
    peer = AuthPeer(method, Credentials("a", "b"))
    for endpoint in (auth, peer):
        endpoint.receive(method.protocol, pkt(1, 1, b"\x01a\x01b"), 0.0)
        assert endpoint.counters.discarded_wrong_state == 1  # not started
        endpoint.start(0.0)
        endpoint.receive(PROTO_LCP, pkt(1, 1, b""), 0.0)
        assert endpoint.counters.discarded_wrong_protocol == 1
        endpoint.receive(method.protocol, pkt(9, 1, b""), 0.0)
        assert endpoint.counters.discarded_unexpected == 1
        endpoint.receive(method.protocol, b"\x01\x01\x00", 0.0)
        endpoint.receive(method.protocol, b"\x01\x01\x00\x09abc", 0.0)
        assert endpoint.counters.discarded_malformed == 2
    # Each role also refuses the other role's packets.
    auth.receive(method.protocol, pkt(2 if method is PAP else 3, 1, b""), 0.0)
    assert auth.counters.discarded_unexpected == 2


def test_stop_cancels_everything() -> None:
    pair = make_pair(MD5, rechallenge_interval=10.0)
    pair.auto_verdict = False
    pair.start()
    assert pair.auth.next_deadline() is not None and pair.peer.next_deadline() is not None
    pair.auth.stop()
    pair.peer.stop()
    assert pair.auth.next_deadline() is None and pair.peer.next_deadline() is None
    assert pair.auth.packets_to_send() == [] and pair.auth.events() == []
    assert pair.auth.authenticated_user is None and pair.auth.phase == "idle"
    pair.auth.verdict(AuthResult(True), 1.0)
    assert pair.auth.counters.stale_verdicts == 1
    # and it can start over
    pair.auto_verdict = True
    pair.pending.clear()
    pair.start()
    assert pair.auth.authenticated_user == "alice"


def test_chap_name_longer_than_255_is_malformed() -> None:
    auth = Authenticator(MD5, name="lns", rng=scripted(b"\x01"))
    auth.start(0.0)
    auth.receive(PROTO_CHAP, pkt(2, 1, b"\x10" + bytes(16) + b"n" * 256), 0.0)
    assert auth.counters.discarded_malformed == 1 and auth.events() == []


def test_chap_zero_value_size_is_malformed() -> None:
    auth = Authenticator(MD5, name="lns", rng=scripted(b"\x01"))
    auth.start(0.0)
    auth.receive(PROTO_CHAP, pkt(2, 1, b"\x00alice"), 0.0)
    assert auth.counters.discarded_malformed == 1


@given(
    user=st.binary(max_size=255),
    password=st.binary(max_size=255),
    value=st.binary(min_size=1, max_size=255),
    name=st.binary(max_size=255),
    ident=st.integers(0, 255),
)
def test_codec_roundtrips(
    user: bytes, password: bytes, value: bytes, name: bytes, ident: int
) -> None:
    request = ControlPacket.decode(authpacket.pap_request(ident, user, password))
    assert (request.code, request.identifier) == (PapCode.AUTHENTICATE_REQUEST, ident)
    assert authpacket.parse_pap_request(request.data) == (user, password)
    challenge = authpacket.chap_value_name(ChapCode.CHALLENGE, ident, value, name)
    assert authpacket.parse_chap_value_name(ControlPacket.decode(challenge).data) == (value, name)


@given(data=st.binary(max_size=300))
def test_codec_parsers_raise_only_parse_errors(data: bytes) -> None:
    for parse in (
        authpacket.parse_pap_request,
        authpacket.parse_pap_reply,
        authpacket.parse_chap_value_name,
    ):
        try:
            parse(data)
        except PppParseError:
            pass


def test_padding_after_length_is_ignored() -> None:
    auth = Authenticator(PAP, name="lns")
    auth.start(0.0)
    auth.receive(PROTO_PAP, pkt(1, 1, b"\x01a\x01b") + b"\x00\x00\x00", 0.0)
    request = only_request(auth.events())
    assert (request.username, request.password) == ("a", "b")


def test_undecodable_names_survive_exactly() -> None:
    auth = Authenticator(PAP, name="lns")
    auth.start(0.0)
    auth.receive(PROTO_PAP, pkt(1, 1, b"\x02\xff\xfe\x01\x80"), 0.0)
    request = only_request(auth.events())
    assert request.username.encode("utf-8", "surrogateescape") == b"\xff\xfe"
    assert request.username != "\ufffd\ufffd"
    assert not request.verify_with("\ufffd").ok
    assert request.verify_with(b"\x80".decode("utf-8", "surrogateescape")).ok


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        Authenticator(MD5, name="x" * 256)
    with pytest.raises(ValueError):
        Authenticator(MD5, name="lns", max_transmits=0)
    with pytest.raises(ValueError):
        Authenticator(MD5, name="lns", restart_interval=0)
    with pytest.raises(ValueError):
        AuthPeer(MSV2, Credentials("a", "p" * 257))
    with pytest.raises(ValueError):
        AuthPeer(PAP, Credentials("a", "b"), max_transmits=256)
    assert "hunter2" not in repr(Credentials("a", "hunter2"))


def test_outbox_is_bounded_when_the_driver_never_drains() -> None:
    auth = Authenticator(PAP, name="lns")
    auth.start(0.0)
    auth.receive(PROTO_PAP, pkt(1, 1, b"\x01a\x01b"), 0.0)
    auth.verdict(AuthResult(True), 0.0)
    for i in range(200):
        auth.receive(PROTO_PAP, pkt(1, i & 0xFF, b"\x01a\x01b"), 0.0)
    assert len(auth.packets_to_send()) == 64
    assert auth.counters.queue_overflows == 200 + 1 - 64


hostile_frames = st.lists(
    st.tuples(
        st.sampled_from([PROTO_PAP, PROTO_CHAP, PROTO_LCP, 0]),
        st.one_of(
            st.binary(max_size=80),
            st.builds(
                lambda code, ident, data, extra: pkt(code, ident, data) + extra,
                st.integers(0, 6),
                st.integers(0, 3),
                st.one_of(
                    st.binary(max_size=60),
                    st.builds(
                        lambda size, value, name: bytes((size,)) + value + name,
                        st.sampled_from([0, 1, 16, 49, 255]),
                        st.binary(max_size=60),
                        st.binary(max_size=20),
                    ),
                ),
                st.binary(max_size=4),
            ),
        ),
        st.floats(0, 5),
        st.sampled_from(["receive", "timer", "verdict-ok", "verdict-no"]),
    ),
    max_size=30,
)


def _check_outputs(endpoint: Authenticator | AuthPeer, protocol: int) -> None:
    for proto, data in endpoint.packets_to_send():
        assert proto == protocol
        packet = ControlPacket.decode(data)
        assert packet.length == len(data)
    for event in endpoint.events():
        assert isinstance(event, VerifyRequest | AuthSucceeded | AuthFailed)
    deadline = endpoint.next_deadline()
    assert deadline is None or isinstance(deadline, float)
    assert isinstance(endpoint.counters, AuthCounters)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(list(AuthMethod)),
    frames=hostile_frames,
    rechallenge=st.sampled_from([0.0, 4.0]),
)
def test_fuzz_hostile_input_never_raises(
    method: AuthMethod, frames: list[tuple[int, bytes, float, str]], rechallenge: float
) -> None:
    auth = Authenticator(
        method,
        name="lns",
        rng=scripted(),
        max_transmits=3,
        timeout=12.0,
        rechallenge_interval=rechallenge,
    )
    peer = AuthPeer(method, Credentials("alice", "s3cret"), rng=scripted(), max_transmits=3)
    now = 0.0
    auth.start(now)
    peer.start(now)
    for protocol, data, step, action in frames:
        now += step
        if action == "receive":
            auth.receive(protocol, data, now)
            peer.receive(protocol, data, now)
        elif action == "timer":
            auth.handle_timer(now)
            peer.handle_timer(now)
        else:
            auth.verdict(AuthResult(action == "verdict-ok", "x"), now)
        _check_outputs(auth, method.protocol)
        _check_outputs(peer, method.protocol)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(list(AuthMethod)),
    lost_to_peer=st.sets(st.integers(0, 12), max_size=4),
    lost_to_auth=st.sets(st.integers(0, 12), max_size=4),
)
def test_lossy_link_still_authenticates(
    method: AuthMethod, lost_to_peer: set[int], lost_to_auth: set[int]
) -> None:
    # Up to four losses each way cannot exhaust ten transmissions: the exchange must succeed
    # on both sides, with exactly one AuthSucceeded each and no failure.
    pair = make_pair(method, timeout=60.0)
    pair.drop_to_peer = lambda i, p: i in lost_to_peer
    pair.drop_to_auth = lambda i, p: i in lost_to_auth
    pair.start()
    pair.run_until(60.0)
    assert len(successes(pair.auth_events)) == 1, pair.wire
    assert len(successes(pair.peer_events)) == 1, pair.wire
    assert not failures(pair.auth_events) and not failures(pair.peer_events)
