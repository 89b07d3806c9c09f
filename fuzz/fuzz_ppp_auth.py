"""Harness: PAP, CHAP-MD5 and MS-CHAPv2 exchanges in both roles (``pyl2tp.ppp.auth``).

Input: a configuration octet (bit 0 we are the authenticator, else the peer; bits 1-2 the
method; bit 3 re-challenge; bits 4-6 Max-Transmit), then operations until the input ends:
0 a raw packet of the method's protocol (or, with a flag, of another); 1 a packet built for
the current exchange, whose identifier, challenge response or authenticator response can be
computed right (so the exchange can succeed and the paths after success run); 2 the clock
advances and deadlines fire; 3 the backend's verdict on the outstanding request (checked
against the secret, or made up; possibly for a stale request); 4 start; 5 stop.

Contract: ``receive``, ``handle_timer`` and ``verdict`` never raise; everything sent is a
well-formed packet of the method's protocol; an authenticator only reports success for a
request the backend accepted.
"""

from __future__ import annotations

import random

from fuzz.common import Reader, entry, instrumented, main

with instrumented(__name__):
    from pyl2tp.ppp import authpacket, mschap
    from pyl2tp.ppp.auth import (
        Authenticator,
        AuthFailed,
        AuthPeer,
        AuthRequest,
        AuthResult,
        AuthSucceeded,
        Credentials,
        VerifyRequest,
    )
    from pyl2tp.ppp.packet import ControlPacket
    from pyl2tp.ppp.protocols import PROTO_CHAP, PROTO_PAP, AuthMethod

USER, PASSWORD = "alice", "wonderland"
METHODS = (AuthMethod.PAP, AuthMethod.CHAP_MD5, AuthMethod.MSCHAP_V2)
MAX_OPS = 60


class _Rig:
    def __init__(self, r: Reader) -> None:
        self.r = r
        c = r.u8()
        self.method = METHODS[((c >> 1) & 3) % 3]
        rng = random.Random(c).randbytes
        transmits = 1 + ((c >> 4) & 7)
        self.ours = bool(c & 1)
        self.endpoint: Authenticator | AuthPeer
        if self.ours:
            self.endpoint = Authenticator(self.method, name="lns", rng=rng, restart_interval=1.0,
                                          max_transmits=transmits, timeout=8.0,
                                          rechallenge_interval=3.0 if c & 8 else 0.0)
        else:
            self.endpoint = AuthPeer(self.method, Credentials(USER, PASSWORD), rng=rng,
                                     restart_interval=1.0, max_transmits=transmits, timeout=8.0)
        self.protocol = self.method.protocol
        self.now = 0.0
        self.requests: list[AuthRequest] = []
        self.accepted: set[str] = set()
        self.last_sent: ControlPacket | None = None
        self.endpoint.start(self.now)

    def drain(self) -> None:
        for protocol, data in self.endpoint.packets_to_send():
            assert protocol == self.protocol
            packet = ControlPacket.decode(data)
            assert packet.length == len(data)
            self.last_sent = packet
        for event in self.endpoint.events():
            if isinstance(event, VerifyRequest):
                assert self.ours
                self.requests.append(event.request)
            elif isinstance(event, AuthSucceeded) and self.ours:
                assert event.username in self.accepted, event
            else:
                assert isinstance(event, AuthSucceeded | AuthFailed)

    def step(self) -> None:
        r = self.r
        op = r.u8() % 6
        if op == 0:
            protocol = self.protocol if not r.u8() & 0x80 else (PROTO_PAP + PROTO_CHAP
                                                                 - self.protocol)
            self.endpoint.receive(protocol, r.chunk(), self.now)
        elif op == 1:
            self.endpoint.receive(self.protocol, self.forge(), self.now)
        elif op == 2:
            until = self.now + (r.u8() % 40) * 0.25
            for _ in range(32):
                deadline = self.endpoint.next_deadline()
                if deadline is None or deadline > until:
                    break
                self.now = max(self.now, deadline)
                self.endpoint.handle_timer(self.now)
                self.drain()
            self.now = until
        elif op == 3 and isinstance(self.endpoint, Authenticator):
            self.verdict()
        elif op == 4:
            self.endpoint.start(self.now)
        elif op == 5:
            self.endpoint.stop()
        self.drain()

    def verdict(self) -> None:
        r = self.r
        how = r.u8()
        if not self.requests:
            request = AuthRequest(self.method, USER)
        else:
            request = self.requests[-1 - (how >> 4) % len(self.requests)]
        if how & 1:
            result = request.verify_with(PASSWORD if request.username == USER else "other")
        elif how & 2 and self.method is not AuthMethod.MSCHAP_V2:
            result = AuthResult(True, r.small_chunk().decode("latin-1"), address="10.0.0.9")
        else:
            result = request.failure(r.small_chunk().decode("latin-1"))
        assert isinstance(self.endpoint, Authenticator)
        # Without ``request`` the verdict is about whatever is outstanding, not ``request``.
        judged = request if how & 4 else self.endpoint._pending
        if result.ok and judged is not None:
            self.accepted.add(judged.username)
        self.endpoint.verdict(result, self.now, request=request if how & 4 else None)

    def forge(self) -> bytes:
        """A packet of the other role, right for the exchange as far as the flags say."""
        r = self.r
        how = r.u8()
        sent = self.last_sent
        ident = sent.identifier if sent is not None and how & 1 else r.u8()
        extra = r.small_chunk() if how & 0x80 else b""
        method = self.method
        if self.ours:  # we are the authenticator: the peer answers
            user = USER.encode() if how & 2 else r.small_chunk()
            password = PASSWORD.encode() if how & 4 else r.small_chunk()
            if method is AuthMethod.PAP:
                return authpacket.pap_request(ident, user[:255], password[:255]) + extra
            challenge = b""
            if sent is not None and sent.code == 1:
                with_value = authpacket.parse_chap_value_name(sent.data)
                challenge = with_value[0]
            if method is AuthMethod.CHAP_MD5:
                value = authpacket.md5_response(ident, password, challenge)
            else:
                peer_challenge = bytes(range(16))
                nt = mschap.generate_nt_response(
                    challenge.ljust(16, b"\0")[:16], peer_challenge,
                    mschap.strip_domain(user.decode("utf-8", "surrogateescape")),
                    password.decode("utf-8", "replace"))
                value = authpacket.mschapv2_response_value(peer_challenge, nt)
            if how & 8:
                value = value[: r.u8() % (len(value) + 1)]
            return authpacket.chap_value_name(authpacket.ChapCode.RESPONSE, ident, value or b"x",
                                              user[:255]) + extra
        # We are the peer: the authenticator challenges, acknowledges or refuses.
        code = r.u8() % 4 + 1
        if method is AuthMethod.PAP:
            return authpacket.pap_reply(authpacket.PapCode(min(code, 3)), ident,
                                        r.small_chunk().decode("latin-1")) + extra
        if code == 1:
            value = bytes(range(16)) if how & 2 else r.small_chunk() or b"\1"
            return authpacket.chap_value_name(authpacket.ChapCode.CHALLENGE, ident, value,
                                              b"lns") + extra
        message = r.small_chunk().decode("latin-1")
        if code == 3 and method is AuthMethod.MSCHAP_V2 and how & 4:
            message = self._proof() + " M=welcome"
        return authpacket.chap_status(authpacket.ChapCode(code), ident, message) + extra

    def _proof(self) -> str:
        """The S= an authenticator that knows the password sends for our last Response."""
        peer = self.endpoint
        assert isinstance(peer, AuthPeer)
        sent = self.last_sent
        parts = None
        if sent is not None and sent.code == 2:
            value, _name = authpacket.parse_chap_value_name(sent.data)
            parts = authpacket.split_mschapv2_response(value)
        if parts is None:
            return "S=" + "0" * 40
        peer_challenge, nt = parts
        return mschap.generate_authenticator_response(
            PASSWORD, nt, peer_challenge, peer._chal_value, USER.encode())


@entry
def test_one_input(data: bytes) -> None:
    r = Reader(data)
    rig = _Rig(r)
    rig.drain()
    for _ in range(MAX_OPS):
        if not r.remaining:
            break
        rig.step()


if __name__ == "__main__":
    main(test_one_input)
