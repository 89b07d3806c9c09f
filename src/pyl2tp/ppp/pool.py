"""An IPv4 address pool for an LNS: bounded, O(1) allocate and release.

Allocation order is chosen so that a user who drops and reconnects quickly does not get an
address another user released a moment ago (whose packets may still be in flight or cached
in someone's ARP/NAT state): addresses never handed out are used first, lowest first; after
that, released addresses are reused least recently released first. ``allocate(preferred)``
and ``reserve`` take a specific free address regardless of that order (a returning user's
previous address, a fixed address from the secrets file).

Memory is proportional to the addresses in use or released, not to the pool size: the never
used part of the range is a cursor, so a /12 costs nothing until it fills. Pools are still
capped at :data:`MAX_POOL_SIZE` addresses so that those tables stay bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError

__all__ = ["MAX_POOL_SIZE", "AddressPool"]

MAX_POOL_SIZE = 1 << 20
"""The largest pool accepted (a /12): bounds the in-use and released tables."""


class AddressPool:
    """IPv4 addresses ``first``..``last`` inclusive, minus ``exclude``.

    ``in`` tests membership of the pool (in range and not excluded), not allocation; use
    :meth:`is_allocated` for that.
    """

    def __init__(
        self, first: IPv4Address, last: IPv4Address, *, exclude: Iterable[IPv4Address] = ()
    ) -> None:
        if not isinstance(first, IPv4Address) or not isinstance(last, IPv4Address):
            raise ValueError("pool bounds must be IPv4 addresses")
        lo, hi = int(first), int(last)
        if lo > hi:
            raise ValueError(f"address pool {first}-{last}: the first address is after the last")
        span = hi - lo + 1
        if span > MAX_POOL_SIZE:
            raise ValueError(
                f"address pool {first}-{last} has {span} addresses; at most {MAX_POOL_SIZE}"
            )
        self.first, self.last = first, last
        self._lo, self._hi = lo, hi
        excluded: set[int] = set()
        for address in exclude:
            if not isinstance(address, IPv4Address):
                raise ValueError(f"excluded address {address!r} is not an IPv4 address")
            if lo <= int(address) <= hi:
                excluded.add(int(address))
        self._excluded = frozenset(excluded)
        self._size = span - len(self._excluded)
        self._cursor = lo  # every address >= cursor has never been handed out
        self._in_use: set[int] = set()
        self._released: OrderedDict[int, None] = OrderedDict()  # free, oldest release first

    @classmethod
    def parse(cls, spec: str, *, exclude: Iterable[IPv4Address] = ()) -> AddressPool:
        """A pool from ``"10.0.0.10-10.0.0.200"``, ``"10.0.0.0/24"`` or one address.

        For a CIDR prefix shorter than /31 the network and broadcast addresses are left out
        (/31 and /32 have none, RFC 3021). Raises ValueError with a one-line message.
        """
        text = spec.strip()
        try:
            if "/" in text:
                try:
                    network = IPv4Network(text, strict=True)
                except ValueError as exc:
                    if "host bits set" in str(exc):
                        raise ValueError(
                            f"address pool {spec!r}: host bits set (did you mean "
                            f"{IPv4Network(text, strict=False)}?)"
                        ) from None
                    raise
                first, last = network.network_address, network.broadcast_address
                if network.prefixlen < 31:
                    first, last = first + 1, last - 1
            elif "-" in text:
                left, _, right = text.partition("-")
                first, last = IPv4Address(left.strip()), IPv4Address(right.strip())
            else:
                first = last = IPv4Address(text)
        except (AddressValueError, NetmaskValueError) as exc:
            raise ValueError(f"address pool {spec!r}: {exc}") from None
        except ValueError as exc:
            if str(exc).startswith("address pool"):
                raise
            raise ValueError(f"address pool {spec!r}: {exc}") from None
        return cls(first, last, exclude=exclude)

    # -- observation --------------------------------------------------------------------------

    def __len__(self) -> int:
        """How many addresses the pool holds (exclusions left out)."""
        return self._size

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def free(self) -> int:
        return self._size - len(self._in_use)

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` belongs to the pool (allocated or not)."""
        if not isinstance(address, IPv4Address):
            return False
        value = int(address)
        return self._lo <= value <= self._hi and value not in self._excluded

    def is_allocated(self, address: IPv4Address) -> bool:
        return int(address) in self._in_use

    def __repr__(self) -> str:
        return f"AddressPool({self.first}-{self.last}, size={self._size}, in_use={self.in_use})"

    # -- allocation ---------------------------------------------------------------------------

    def allocate(self, preferred: IPv4Address | None = None) -> IPv4Address | None:
        """A free address, or None when the pool is exhausted.

        ``preferred`` is honoured when it is in the pool and free; otherwise the lowest never
        used address, then the least recently released one (see the module docstring).
        """
        if preferred is not None and self.reserve(preferred):
            return preferred
        value = self._take_fresh()
        if value is None:
            if not self._released:
                return None
            value, _ = self._released.popitem(last=False)
        self._in_use.add(value)
        return IPv4Address(value)

    def reserve(self, address: IPv4Address) -> bool:
        """Claim ``address`` (a fixed assignment); False if it is outside the pool or in use."""
        if address not in self:
            return False
        value = int(address)
        if value in self._in_use:
            return False
        # Free either as released (drop it from that table) or as never used (the cursor
        # skips in-use addresses when it reaches them).
        self._released.pop(value, None)
        self._in_use.add(value)
        return True

    def release(self, address: IPv4Address) -> None:
        """Return ``address`` to the pool; releasing a free or foreign address does nothing."""
        value = int(address)
        if value in self._in_use:
            self._in_use.discard(value)
            self._released[value] = None

    def _take_fresh(self) -> int | None:
        """The lowest never-used free address, advancing the cursor past it.

        Addresses the cursor skips (excluded, reserved ahead of it, or reserved and released
        already) are each skipped once, so this is amortised O(1).
        """
        while self._cursor <= self._hi:
            value = self._cursor
            self._cursor += 1
            if (
                value not in self._excluded
                and value not in self._in_use
                and value not in self._released
            ):
                return value
        return None
