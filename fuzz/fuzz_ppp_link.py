"""Harness: whole PPP links (``pyl2tp.ppp.link.PppLink``: LCP, authentication in both
directions, IPCP, IPV6CP, keepalive, phases) with the fuzzer in the middle.

An LNS-side link and a client-side link talk on a virtual clock, so the frames between them
are valid and the links reach every phase; the fuzzer delivers, corrupts, truncates, drops,
duplicates or reorders the next frame in flight, injects raw frames (under any protocol
field, with or without FF 03 and compression), lets time pass, answers the authenticator's
verification requests, and closes, drops or restarts either end.

Input: three configuration octets (see :func:`_configs`), then operations until the input
ends (see :meth:`_Pair.step`).

Contract: nothing raises out of ``receive``, ``handle_timer``, ``verdict``, ``start``,
``close``, ``lower_down`` or ``frame_ip``; every frame sent has a valid protocol field; the
links never log that their events did not settle.
"""

from __future__ import annotations

import random
from collections import deque
from ipaddress import IPv4Address

from fuzz.common import Reader, entry, instrumented, main

with instrumented(__name__):
    from pyl2tp.ppp.auth import AuthRequest, AuthResult, Credentials
    from pyl2tp.ppp.ipcp import IpcpConfig
    from pyl2tp.ppp.ipv6cp import Ipv6cpConfig
    from pyl2tp.ppp.lcp import LcpConfig
    from pyl2tp.ppp.link import LinkConfig, PppLink, VerifyRequest, decode_protocol
    from pyl2tp.ppp.protocols import AuthMethod

MAX_OPS = 120
MAX_FLIGHT = 32
USER, PASSWORD = "bob", "builder"
_AUTH = ((), (AuthMethod.PAP,), (AuthMethod.CHAP_MD5,), (AuthMethod.MSCHAP_V2,),
         (AuthMethod.MSCHAP_V2, AuthMethod.CHAP_MD5, AuthMethod.PAP), (AuthMethod.CHAP_MD5,
                                                                      AuthMethod.PAP))
_PROTOCOLS = (0xC021, 0xC023, 0xC223, 0x8021, 0x8057, 0x0021, 0x0057, 0x80FD, 0xC025, 0x002B,
              0x4021)


def _configs(r: Reader) -> tuple[LinkConfig, LinkConfig, int]:
    """Octet 1: bits 0-2 the LNS's methods, bits 3-5 the client's, bit 6 IPv6 on both,
    bit 7 a wrong client password. Octet 2: bits 0-1 IPCP on both / LNS only / client only /
    neither, bits 2-3 echo interval, bits 4-5 Max-Configure, bit 6 authentication in both
    directions (the client demands CHAP of the LNS too), bit 7 the address assignment hook
    refuses (pool exhausted). Octet 3: the seed."""
    c1, c2 = r.u8(), r.u8()
    ipcp_lns = IpcpConfig(local_address=IPv4Address("10.7.0.1"),
                          peer_address=IPv4Address("10.7.0.10"),
                          dns=(IPv4Address("10.7.0.53"),))
    ipcp_client = IpcpConfig(request_dns=True)
    which = c2 & 3
    common = dict(echo_interval=(0.0, 2.0, 5.0, 30.0)[(c2 >> 2) & 3], echo_failure=2,
                  max_configure=(2, 4, 10, 1)[(c2 >> 4) & 3], restart_interval=1.0,
                  auth_timeout=10.0)
    both_auth = bool(c2 & 64)
    lns = LinkConfig(
        lcp=LcpConfig(auth=_AUTH[(c1 & 7) % len(_AUTH)],
                      peer_auth=_AUTH[4] if both_auth else ()),
        ipcp=ipcp_lns if which in (0, 1) else None,
        ipv6cp=Ipv6cpConfig(local_ifid=1, peer_ifid=2) if c1 & 64 else None,
        credentials=Credentials("lns", "lns-secret") if both_auth else None,
        auth_name="lns", **common)  # type: ignore[arg-type]
    client = LinkConfig(
        lcp=LcpConfig(peer_auth=_AUTH[((c1 >> 3) & 7) % len(_AUTH)],
                      auth=_AUTH[2] if both_auth else ()),
        ipcp=ipcp_client if which in (0, 2) else None,
        ipv6cp=Ipv6cpConfig() if c1 & 64 else None,
        credentials=Credentials(USER, "wrong" if c1 & 128 else PASSWORD),
        **common)  # type: ignore[arg-type]
    return lns, client, c2


def _secret(request: AuthRequest) -> str:
    return {USER: PASSWORD, "lns": "lns-secret"}.get(request.username, "nobody's")


class _Pair:
    def __init__(self, r: Reader) -> None:
        self.r = r
        lns, client, c2 = _configs(r)
        rnd = random.Random(r.u8())
        refuse = bool(c2 & 128)

        def assign(_user: str | None, _result: AuthResult | None) -> IpcpConfig | str | None:
            return "address pool exhausted" if refuse else None

        self.links = (PppLink(lns, rng=rnd.randbytes, assign=assign),
                      PppLink(client, rng=rnd.randbytes))
        self.flight: deque[tuple[int, bytes]] = deque()
        self.pending: list[tuple[int, VerifyRequest]] = []
        self.now = 0.0
        for link in self.links:
            link.start(self.now)
        self.drain()

    def drain(self) -> None:
        for side, link in enumerate(self.links):
            for frame in link.frames_to_send():
                assert decode_protocol(frame) is not None, frame
                self.flight.append((1 - side, frame))
            link.ip_received()
            for event in link.events():
                if isinstance(event, VerifyRequest):
                    self.pending.append((side, event))
        while len(self.flight) > MAX_FLIGHT:
            self.flight.popleft()

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        for _ in range(64):
            due = [(d, link) for link in self.links
                   if (d := link.next_deadline()) is not None and d <= until]
            if not due:
                break
            when, link = min(due, key=lambda x: x[0])
            self.now = max(self.now, when)
            link.handle_timer(self.now)
            self.drain()
        self.now = until

    def answer(self, how: int) -> None:
        """The backend's verdict on a queued request: with ``request=`` (as the daemon gives
        it, so a stale one is ignored), or without, for whatever the authenticator awaits;
        the verdict is then about that request (a backend judges what it is asked: one
        judged for an older request of another method would be the backend's bug, which
        the link rightly logs)."""
        if not self.pending:
            return
        side, request = self.pending.pop(0 if how & 1 else -1)
        req = request.request
        link = self.links[side]
        if not how & 4 and link.authenticator is not None:
            req = link.authenticator._pending or req
        result = req.verify_with(_secret(req)) if how & 2 else req.failure("refused")
        link.verdict(result, self.now, request=request.request if how & 4 else None)

    def step(self) -> None:
        """0 deliver, 1 corrupt one octet, 2 truncate, 3 drop, 4 duplicate, 5 move to the
        back of the queue, 6 let time pass, 7 inject a frame, 8 a verification verdict,
        9 a local action (close, lower layer down, start, an IP packet to send)."""
        r = self.r
        op = r.u8() % 10
        if op <= 5:
            if not self.flight:
                return
            side, frame = self.flight.popleft()
            if op == 1 and frame:
                pos = r.u16() % len(frame)
                frame = frame[:pos] + bytes((frame[pos] ^ (r.u8() or 1),)) + frame[pos + 1:]
            elif op == 2:
                frame = frame[: r.u16() % (len(frame) + 1)]
            elif op == 3:
                return
            elif op == 4:
                self.flight.appendleft((side, frame))
            elif op == 5:
                self.flight.append((side, frame))
                return
            self.links[side].receive(frame, self.now)
        elif op == 6:
            step = r.u8()
            self.advance((step & 0x7F) * (1.0 if step & 0x80 else 0.1))
        elif op == 7:
            side, how = r.u8() & 1, r.u8()
            protocol = r.pick(_PROTOCOLS) if how & 1 else r.u16()
            head = b"\xff\x03" if how & 2 else b""
            if how & 4 and protocol < 0x100:
                head += bytes((protocol,))
            else:
                head += protocol.to_bytes(2, "big")
            self.links[side].receive((head if how & 8 else b"") + r.chunk(), self.now)
        elif op == 8:
            self.answer(r.u8())
        else:
            side, what = r.u8() & 1, r.u8() % 4
            link = self.links[side]
            if what == 0:
                link.close(self.now, r.small_chunk().decode("latin-1"))
            elif what == 1:
                link.lower_down(self.now)
            elif what == 2:
                link.start(self.now)
            else:
                link.frame_ip(r.small_chunk())
        self.drain()


@entry
def test_one_input(data: bytes) -> None:
    r = Reader(data)
    pair = _Pair(r)
    for _ in range(MAX_OPS):
        if not r.remaining:
            break
        pair.step()
    for _ in range(6):  # settle: deliver, answer and let timers run
        for _ in range(64):
            if pair.flight:
                side, frame = pair.flight.popleft()
                pair.links[side].receive(frame, pair.now)
            elif pair.pending:
                pair.answer(3)
            else:
                break
            pair.drain()
        pair.advance(3.0)


if __name__ == "__main__":
    main(test_one_input)
