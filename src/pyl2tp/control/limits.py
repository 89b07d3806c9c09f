"""Resource bounds of the control plane that span connections, sans-I/O.

A daemon must not let its peers (or anyone who can reach its sockets) make it hold unbounded
state. Bounds that belong to one connection live with it (``max_sessions`` per tunnel, the
transport's queues); this module holds the two that several connections share:

* :class:`SessionBudget`: the sessions of every control connection of a daemon, against one
  bound, so that a thousand tunnels at their own ``max_sessions`` cannot add up to more than
  the host can carry. A call request beyond it is refused with CDN result 4 ("lack of
  facilities, temporary"), error 4 ("insufficient resources").
* :class:`SourceRateLimiter`: a token bucket per source address for SCCRQs. An SCCRQ costs a
  connection, an SCCRP and its retransmissions towards an address nobody has verified, so a
  flood of them (spoofed or not) is dropped silently beyond the rate: answering, even with a
  StopCCN, would reflect the flood at whoever owns the source address.

Both take ``now`` from the caller like the rest of :mod:`pyl2tp.control`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["SessionBudget", "SourceRateLimiter"]


class SessionBudget:
    """Sessions (calls in any state) of all connections of one daemon, against ``limit``.

    Connections :meth:`add` a call when they create it and :meth:`remove` it when it is
    gone; ``count`` is called with the name of a refusal counter when the budget refuses.
    """

    __slots__ = ("limit", "used", "count")

    def __init__(self, limit: int = 65535, count: Callable[[str], None] | None = None) -> None:
        if limit < 1:
            raise ValueError("the session limit must be at least 1")
        self.limit = limit
        self.used = 0
        self.count: Callable[[str], None] = count or (lambda _name: None)

    @property
    def full(self) -> bool:
        return self.used >= self.limit

    def add(self) -> None:
        self.used += 1

    def remove(self) -> None:
        self.used -= 1


class SourceRateLimiter:
    """A token bucket per source address: ``rate`` per second, up to ``burst`` at once.

    The table holds at most ``max_sources`` addresses; when it is full the address seen least
    recently is forgotten (its next packet starts with a full bucket, as a new one would).
    Forgetting the oldest rather than refusing new addresses keeps a flood from many spoofed
    sources from locking out a legitimate peer; the tunnel bounds (``max_half_open_tunnels``,
    ``max_tunnels``) still cap what such a flood can hold.
    ``rate`` 0 disables the limiter.
    """

    __slots__ = ("rate", "burst", "max_sources", "_buckets")

    def __init__(self, rate: float = 50.0, burst: int = 100, max_sources: int = 4096) -> None:
        if not (rate >= 0 and math.isfinite(rate)):
            raise ValueError("the rate must be a non-negative number")
        if burst < 1:
            raise ValueError("the burst must be at least 1")
        if max_sources < 1:
            raise ValueError("the table must hold at least one source")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        # source -> (tokens, time of the last update), least recently seen first
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: Hashable, now: float) -> bool:
        """Take a token for ``source``; False means drop the packet."""
        if self.rate <= 0:
            return True
        buckets = self._buckets
        entry = buckets.pop(source, None)
        if entry is None:
            tokens = float(self.burst)
            if len(buckets) >= self.max_sources:
                buckets.popitem(last=False)  # the least recently seen address
        else:
            tokens, then = entry
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        buckets[source] = (tokens, now)  # re-inserted: now the most recent
        return allowed
