"""Harness for the RFC 1661 automaton tests: automata on a virtual clock, wired together.

:class:`Wire` joins two :class:`~pyl2tp.ppp.fsm.Automaton` objects back to back (or one to
itself, to model a looped-back link) with zero latency and optional drops, and advances a
virtual clock from deadline to deadline. As the link does, it closes a side as soon as its
policy reports a ``failure``. The helpers around it script a single automaton: feed it raw
packets and read what it answers.

Used by the LCP, IPCP, IPV6CP and automaton tests; the whole-link tests drive
:class:`~pyl2tp.ppp.link.PppLink` instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pyl2tp.ppp.fsm import Automaton, NegotiationPolicy
from pyl2tp.ppp.packet import Code, ControlPacket, Option

Rng = Callable[[int], bytes]
"""What policies take as ``rng``: a function returning that many random octets."""


def seeded(seed: int) -> Rng:
    """A reproducible ``rng``."""
    return random.Random(seed).randbytes


def scripted_rng(*values: int, width: int = 4, seed: int = 0) -> Rng:
    """Returns ``values`` as ``width``-octet big-endian numbers first (cut to the size asked
    for), then seeded random bytes: 4 suits LCP magic numbers, 8 IPV6CP identifiers."""
    queue = [v.to_bytes(width, "big") for v in values]
    fallback = random.Random(seed)

    def rng(n: int) -> bytes:
        return queue.pop(0)[:n] if queue else fallback.randbytes(n)

    return rng


def random_loss(rate: float, seed: int) -> Callable[[int], bool]:
    """A ``drop`` for :class:`Wire` losing ``rate`` of the packets, reproducibly: one draw
    from a ``seed``-ed generator per packet offered."""
    rng = random.Random(seed)
    return lambda _: rng.random() < rate


def pkt(code: int, ident: int, data: bytes = b"") -> bytes:
    """An encoded control packet with raw ``data``."""
    return ControlPacket(code, ident, data).encode()


def conf(code: int, ident: int, *options: Option) -> bytes:
    """An encoded Configure-Request/Ack/Nak/Reject carrying ``options``."""
    return ControlPacket.configure(code, ident, options).encode()


def sent(fsm: Automaton) -> list[ControlPacket]:
    """Drain what ``fsm`` has to send, decoded; every packet must be of its protocol."""
    packets = fsm.packets_to_send()
    assert all(p.protocol == fsm.protocol for p in packets)
    return [ControlPacket.decode(p.data) for p in packets]


def listen(policy: NegotiationPolicy) -> Automaton:
    """An automaton in Req-Sent whose own first request has been taken off the wire."""
    fsm = Automaton(policy)
    fsm.lower_up(0)
    fsm.open(0)
    sent(fsm)
    return fsm


def answer(fsm: Automaton, *options: Option, ident: int = 77) -> ControlPacket:
    """Feed ``fsm`` a Configure-Request with ``options``; its one reply, checked to echo
    the request's identifier."""
    fsm.receive(conf(Code.CONFIGURE_REQUEST, ident, *options), 0)
    [reply] = sent(fsm)
    assert reply.identifier == ident
    return reply


class Wire:
    """Zero-latency link between two automata (or one and itself) with a virtual clock.

    ``drop`` is called with the running number of each packet sent (from 1) and drops it
    when it returns True; ``cut`` drops everything without consulting ``drop``. Every
    packet sent is in ``trace``, dropped or not. After each delivered packet, a side whose
    policy has a ``failure`` is closed with it, once (``closed_with``).
    """

    def __init__(
        self,
        a: Automaton,
        b: Automaton | None = None,
        *,
        drop: Callable[[int], bool] = lambda _: False,
    ) -> None:
        self.a = a
        self.b = b if b is not None else a
        self.drop = drop
        self.cut = False
        self.now = 0.0
        self.count = 0
        self.dropped = 0
        self.trace: list[tuple[str, ControlPacket]] = []
        self.closed_with: dict[str, str] = {}

    def sides(self) -> list[tuple[str, Automaton, Automaton]]:
        """(name, automaton, its peer) for each distinct side."""
        if self.a is self.b:
            return [("a", self.a, self.a)]
        return [("a", self.a, self.b), ("b", self.b, self.a)]

    def opened(self) -> bool:
        return self.a.is_opened and self.b.is_opened

    def check_failures(self) -> None:
        for name, fsm, _ in self.sides():
            failure = getattr(fsm.policy, "failure", None)
            if failure and name not in self.closed_with:
                self.closed_with[name] = failure
                fsm.close(self.now, failure)

    def pump(self) -> None:
        """Deliver packets both ways until neither side has anything to send."""
        for _ in range(10_000):
            moved = False
            for name, src, dst in self.sides():
                for packet in src.packets_to_send():
                    moved = True
                    self.count += 1
                    self.trace.append((name, ControlPacket.decode(packet.data)))
                    if self.cut or self.drop(self.count):
                        self.dropped += 1
                        continue
                    dst.receive(packet.data, self.now)
                    self.check_failures()
            if not moved:
                return
        raise AssertionError("packet storm")

    def start(self, until: float | None = 120.0) -> None:
        """Lower layer Up and Open on each side, then run the clock to ``until`` (None: only
        the exchange that needs no timer)."""
        for _, fsm, _ in self.sides():
            fsm.lower_up(self.now)
            fsm.open(self.now)
        self.pump()
        if until is not None:
            self.run(until)

    def run(self, until: float) -> None:
        """Fire timers deadline by deadline, delivering after each, up to ``until``."""
        self.pump()
        while True:
            deadlines = [d for _, f, _ in self.sides() if (d := f.next_deadline()) is not None]
            if not deadlines or min(deadlines) > until:
                return
            self.now = min(deadlines)
            for _, fsm, _ in self.sides():
                fsm.handle_timer(self.now)
            self.pump()

    def sent(self, name: str, code: int) -> list[ControlPacket]:
        """Packets side ``name`` sent with ``code``, oldest first."""
        return [p for n, p in self.trace if n == name and p.code == code]


def negotiate(
    pa: NegotiationPolicy,
    pb: NegotiationPolicy,
    *,
    drop: Callable[[int], bool] = lambda _: False,
    until: float | None = 120.0,
    **automaton: int,
) -> Wire:
    """Two automata with these policies (and automaton parameters), wired and started."""
    wire = Wire(Automaton(pa, **automaton), Automaton(pb, **automaton), drop=drop)
    wire.start(until)
    return wire
