"""A simulated network between ControlPlanes on a virtual clock: loss, duplication, reordering.

Tests of the control plane run through this instead of sockets, so that a thousand sessions
over a lossy link establish in seconds of CPU and every run is reproducible from its seed.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from pyl2tp.control import events as ev
from pyl2tp.control.plane import ControlPlane


@dataclass
class Link:
    """Per-direction impairments, as probabilities per datagram and a delay range (seconds)."""

    loss: float = 0.0
    duplicate: float = 0.0
    delay: tuple[float, float] = (0.005, 0.005)
    reorder_spread: float = 0.0  # extra random delay that reorders datagrams


@dataclass
class Node:
    name: str
    plane: ControlPlane
    addr: str
    events: list[ev.Event] = field(default_factory=list)
    sent: list[tuple[float, bytes]] = field(default_factory=list)


class SimNet:
    """Two or more nodes; datagrams go to the node whose ``addr`` matches the peer host."""

    def __init__(self, seed: int = 1, link: Link | None = None) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes: dict[str, Node] = {}
        self.link = link or Link()
        self.links: dict[tuple[str, str], Link] = {}
        self._queue: list[tuple[float, int, str, str, bytes]] = []
        self._seq = 0
        self.delivered = 0
        self.dropped = 0
        self.max_in_flight: dict[tuple[str, int], int] = {}

    def add(self, name: str, addr: str, **kw: Any) -> Node:
        kw.setdefault("rng", self.rng.randbytes)
        node = Node(name, ControlPlane(**kw), addr)
        self.nodes[addr] = node
        return node

    def _link(self, src: str, dst: str) -> Link:
        return self.links.get((src, dst), self.link)

    def flush(self, node: Node) -> None:
        for _local, peer, data in node.plane.datagrams():
            node.sent.append((self.now, data))
            link = self._link(node.addr, peer[0])
            copies = 1
            if self.rng.random() < link.loss:
                copies = 0
                self.dropped += 1
            elif self.rng.random() < link.duplicate:
                copies = 2
            for _ in range(copies):
                delay = self.rng.uniform(*link.delay) + self.rng.uniform(0, link.reorder_spread)
                self._seq += 1
                heapq.heappush(self._queue, (self.now + delay, self._seq, node.addr, peer[0],
                                             data))
        node.events.extend(node.plane.events())

    def step(self, until: float = float("inf")) -> bool:
        """Advance to the next datagram or timer (not past ``until``); False when nothing is
        left to do before ``until``."""
        for node in self.nodes.values():
            self.flush(node)
        deadlines = [(d, n) for n in self.nodes.values()
                     if (d := n.plane.next_deadline()) is not None]
        next_timer = min(deadlines, key=lambda x: x[0]) if deadlines else None
        next_pkt = self._queue[0][0] if self._queue else None
        soonest = min(t for t in (next_pkt, next_timer[0] if next_timer else None)
                      if t is not None) if (next_pkt is not None or next_timer) else None
        if soonest is None or soonest > until:
            self.now = max(self.now, until)
            return False
        if next_pkt is not None and (next_timer is None or next_pkt <= next_timer[0]):
            when, _seq, src, dst, data = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            node = self.nodes.get(dst)
            if node is not None:
                self.delivered += 1
                node.plane.receive("sock", data, 0, (src, 1701), self.now)
                self.flush(node)
        else:
            assert next_timer is not None
            self.now = max(self.now, next_timer[0])
            next_timer[1].plane.handle_timer(self.now)
            self.flush(next_timer[1])
        return True

    def run(self, until: float, *, stop: Any = None) -> None:
        """Run until virtual time ``until`` or until ``stop()`` is true."""
        while self.now < until:
            if stop is not None and stop():
                return
            if not self.step(until):
                return
