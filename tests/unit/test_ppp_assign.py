"""How the daemon picks a PPP peer's address (``PppManager._assign``): pool leases, fixed
per-user addresses, renegotiation, and the refusals that keep users off addresses that are
not theirs."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

import pytest

from pyl2tp.daemon.config import PppProfile
from pyl2tp.daemon.ppp_sessions import PppManager
from pyl2tp.ppp.auth import AuthResult
from pyl2tp.ppp.ipcp import IpcpConfig
from pyl2tp.ppp.protocols import AuthMethod

LOCAL = IPv4Address("10.9.0.1")


def manager() -> PppManager:
    driver: Any = SimpleNamespace(observers=[])
    return PppManager(asyncio.new_event_loop(), driver, profile=lambda _n: None,
                      switch_target=lambda _n: None, host_name="lns")


def profile(**kw: Any) -> PppProfile:
    base: dict[str, Any] = {"name": "p", "auth": (AuthMethod.PAP,), "secrets": "/x",
                            "local_ip": LOCAL}
    base.update(kw)
    return PppProfile(**base)


def peer(config: IpcpConfig | str | None) -> IPv4Address | None:
    assert isinstance(config, IpcpConfig), config
    return config.peer_address


def test_pool_leases_are_per_session_and_returned() -> None:
    m, p = manager(), profile(pool="10.9.0.10-10.9.0.11")
    assert peer(m._assign((1, 1), p, "a", None)) == IPv4Address("10.9.0.10")
    assert peer(m._assign((1, 2), p, "b", None)) == IPv4Address("10.9.0.11")
    assert m._assign((1, 3), p, "c", None) == "address pool 10.9.0.10-10.9.0.11 exhausted"
    m._release((1, 1))
    assert peer(m._assign((1, 3), p, "c", None)) == IPv4Address("10.9.0.10")


def test_renegotiation_keeps_the_lease_but_a_new_user_does_not() -> None:
    m, p = manager(), profile(pool="10.9.0.10-10.9.0.20")
    first = peer(m._assign((1, 1), p, "a", None))
    assert peer(m._assign((1, 1), p, "a", None)) == first
    fixed = AuthResult(True, address="10.9.5.5")
    assert peer(m._assign((1, 1), p, "b", fixed)) == IPv4Address("10.9.5.5")
    assert first is not None
    assert not m._pools[p.pool].is_allocated(first)  # a's lease went back


def test_fixed_addresses_are_exclusive_inside_and_outside_the_pool() -> None:
    m, p = manager(), profile(pool="10.9.0.10-10.9.0.20")
    inside, outside = AuthResult(True, address="10.9.0.15"), AuthResult(True, address="10.8.0.1")
    assert peer(m._assign((1, 1), p, "a", inside)) == IPv4Address("10.9.0.15")
    assert m._assign((1, 2), p, "a", inside) == "address 10.9.0.15 of user 'a' is in use"
    assert peer(m._assign((1, 3), p, "b", outside)) == IPv4Address("10.8.0.1")
    assert m._assign((1, 4), p, "b", outside) == "address 10.8.0.1 of user 'b' is in use"
    m._release((1, 3))
    assert peer(m._assign((1, 4), p, "b", outside)) == IPv4Address("10.8.0.1")


def test_profiles_sharing_a_range_share_one_pool() -> None:
    m = manager()
    p1, p2 = profile(name="x", pool="10.9.0.10-10.9.0.10"), profile(name="y",
                                                                     pool="10.9.0.10-10.9.0.10")
    assert peer(m._assign((1, 1), p1, "a", None)) == IPv4Address("10.9.0.10")
    assert m._assign((1, 2), p2, "b", None) == "address pool 10.9.0.10-10.9.0.10 exhausted"


def test_authenticated_users_cannot_pick_their_own_address() -> None:
    m = manager()
    refused = m._assign((1, 1), profile(), "a", None)
    assert refused == "no address to assign: the profile has neither pool nor peer_ip"
    assert m._assign((1, 1), profile(auth=(), secrets=None), None, None) is None


def test_an_unusable_fixed_address_raises_before_anything_is_held() -> None:
    m, p = manager(), profile(pool="10.9.0.1-10.9.0.20")
    with pytest.raises(ValueError):
        m._assign((1, 1), p, "a", AuthResult(True, address=str(LOCAL)))
    assert m._leases == {} and m._fixed == {}
    assert m._assign((1, 1), p, "a", AuthResult(True, address="bogus")) == \
        "invalid address 'bogus' for user 'a'"
