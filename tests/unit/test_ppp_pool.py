"""The LNS address pool: allocation order, exhaustion, release, reservation, parsing."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.ppp.pool import MAX_POOL_SIZE, AddressPool

A = IPv4Address


def addrs(*last_octets: int) -> list[IPv4Address]:
    return [A(f"10.0.0.{n}") for n in last_octets]


def small(exclude: tuple[int, ...] = ()) -> AddressPool:
    return AddressPool(A("10.0.0.10"), A("10.0.0.14"), exclude=addrs(*exclude))


def test_allocates_lowest_first_skipping_exclusions_until_exhausted() -> None:
    pool = small(exclude=(11, 99))  # 99 is outside the range: ignored
    assert (len(pool), pool.in_use, pool.free) == (4, 0, 4)
    got = [pool.allocate() for _ in range(5)]
    assert got == [*addrs(10, 12, 13, 14), None]
    assert (pool.in_use, pool.free) == (4, 0)


def test_released_addresses_are_reused_least_recently_released_first() -> None:
    pool = small()
    first = [pool.allocate() for _ in range(3)]
    assert first == addrs(10, 11, 12)
    pool.release(A("10.0.0.11"))
    pool.release(A("10.0.0.10"))
    # Never-used addresses first, so the two just released are not handed straight back.
    assert [pool.allocate(), pool.allocate()] == addrs(13, 14)
    assert [pool.allocate(), pool.allocate(), pool.allocate()] == [*addrs(11, 10), None]


def test_preferred_address_is_honoured_when_free() -> None:
    pool = small()
    assert pool.allocate(A("10.0.0.13")) == A("10.0.0.13")
    assert pool.allocate(A("10.0.0.13")) == A("10.0.0.10")  # taken: lowest free instead
    assert pool.allocate(A("192.168.1.1")) == A("10.0.0.11")  # outside: ignored
    assert [pool.allocate(), pool.allocate(), pool.allocate()] == [*addrs(12, 14), None]


def test_reserve_ahead_of_the_cursor_is_not_handed_out_twice() -> None:
    pool = small()
    assert pool.reserve(A("10.0.0.12"))
    assert not pool.reserve(A("10.0.0.12"))
    assert not pool.reserve(A("10.0.0.200"))
    pool.release(A("10.0.0.12"))  # released before the cursor reaches it
    got = [pool.allocate() for _ in range(6)]
    assert got == [*addrs(10, 11, 13, 14, 12), None]
    assert pool.in_use == 5


def test_reserve_a_released_address() -> None:
    pool = small()
    address = pool.allocate()
    assert address is not None
    pool.release(address)
    assert pool.reserve(address) and pool.is_allocated(address)
    assert [pool.allocate() for _ in range(5)] == [*addrs(11, 12, 13, 14), None]


def test_release_is_idempotent_and_ignores_foreign_addresses() -> None:
    pool = small()
    address = pool.allocate()
    assert address is not None
    pool.release(address)
    pool.release(address)
    pool.release(A("10.0.0.14"))  # never allocated
    pool.release(A("8.8.8.8"))
    assert (pool.in_use, pool.free) == (0, 5)
    assert [pool.allocate() for _ in range(6)] == [*addrs(11, 12, 13, 14, 10), None]


def test_contains_means_belongs_to_the_pool() -> None:
    pool = small(exclude=(12,))
    assert A("10.0.0.10") in pool and A("10.0.0.14") in pool
    assert A("10.0.0.12") not in pool and A("10.0.0.15") not in pool
    assert "10.0.0.10" not in pool
    assert not pool.is_allocated(A("10.0.0.10"))


@pytest.mark.parametrize(
    ("spec", "first", "last", "size"),
    [
        ("10.0.0.10-10.0.0.200", "10.0.0.10", "10.0.0.200", 191),
        (" 10.0.0.10 - 10.0.0.10 ", "10.0.0.10", "10.0.0.10", 1),
        ("10.1.0.0/24", "10.1.0.1", "10.1.0.254", 254),
        ("10.1.0.0/30", "10.1.0.1", "10.1.0.2", 2),
        ("10.1.0.4/31", "10.1.0.4", "10.1.0.5", 2),
        ("10.1.0.9/32", "10.1.0.9", "10.1.0.9", 1),
        ("10.1.0.9", "10.1.0.9", "10.1.0.9", 1),
        ("10.0.0.0/12", "10.0.0.1", "10.15.255.254", MAX_POOL_SIZE - 2),
    ],
)
def test_parse(spec: str, first: str, last: str, size: int) -> None:
    pool = AddressPool.parse(spec)
    assert (pool.first, pool.last, len(pool)) == (A(first), A(last), size)


def test_parse_with_exclusions_and_a_full_cidr_cycle() -> None:
    pool = AddressPool.parse("192.168.7.0/29", exclude=[A("192.168.7.1")])
    got = [pool.allocate() for _ in range(6)]
    assert got == [A(f"192.168.7.{n}") for n in range(2, 7)] + [None]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("10.0.0.200-10.0.0.10", "first address is after the last"),
        ("10.0.0.5/24", "host bits set (did you mean 10.0.0.0/24?)"),
        ("10.0.0.0/33", "address pool '10.0.0.0/33'"),
        ("10.0.0.300-10.0.0.310", "address pool '10.0.0.300-10.0.0.310'"),
        ("10.0.0.1-", "address pool '10.0.0.1-'"),
        ("fe80::1-fe80::9", "address pool 'fe80::1-fe80::9'"),
        ("", "address pool ''"),
        ("pool", "address pool 'pool'"),
        ("10.0.0.0/11", f"at most {MAX_POOL_SIZE}"),
        ("0.0.0.0-255.255.255.255", "has 4294967296 addresses"),
    ],
)
def test_parse_errors_are_one_line_value_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        AddressPool.parse(spec)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_constructor_refuses_non_addresses() -> None:
    with pytest.raises(ValueError):
        AddressPool("10.0.0.1", A("10.0.0.2"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AddressPool(A("10.0.0.1"), A("10.0.0.2"), exclude=["10.0.0.1"])  # type: ignore[list-item]


def test_large_pool_costs_nothing_until_used() -> None:
    pool = AddressPool.parse("10.0.0.0/12")
    assert pool.allocate() == A("10.0.0.1")
    assert pool.allocate(A("10.15.255.254")) == A("10.15.255.254")
    assert pool.in_use == 2 and pool.free == MAX_POOL_SIZE - 4


operations = st.lists(
    st.tuples(
        st.sampled_from(["allocate", "prefer", "reserve", "release"]),
        st.integers(0, 20),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=operations, excluded=st.sets(st.integers(0, 20), max_size=4))
def test_pool_matches_a_set_model(ops: list[tuple[str, int]], excluded: set[int]) -> None:
    """Against a plain set: never hands out an address twice or one outside the pool, and
    allocate only fails when the pool is really full."""
    base = int(A("10.0.0.0"))
    members = {base + n for n in range(2, 18)} - {base + n for n in excluded}
    pool = AddressPool(A(base + 2), A(base + 17), exclude=[A(base + n) for n in excluded])
    used: set[int] = set()
    for op, n in ops:
        address = A(base + n)
        if op == "allocate" or op == "prefer":
            got = pool.allocate(address if op == "prefer" else None)
            if got is None:
                assert used == members
                continue
            value = int(got)
            assert value in members and value not in used
            if op == "prefer" and base + n in members and base + n not in used:
                assert value == base + n
            used.add(value)
        elif op == "reserve":
            ok = pool.reserve(address)
            assert ok == (base + n in members and base + n not in used)
            if ok:
                used.add(base + n)
        else:
            pool.release(address)
            used.discard(base + n)
        assert (pool.in_use, pool.free, len(pool)) == (
            len(used),
            len(members) - len(used),
            len(members),
        )
