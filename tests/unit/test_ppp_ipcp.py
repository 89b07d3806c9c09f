"""IPCP option negotiation: IpcpPolicy on the RFC 1661 automaton, on a virtual clock.

An LNS-style policy (its own address, an address for the peer from a pool, DNS servers) is
wired back to back with a client-style one (no addresses, asks for DNS), plus scripted peers
for requests our own policy would never send.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.pppwire import Wire, answer, conf, listen, negotiate

from pyl2tp.ppp.fsm import Automaton, Judgement, State
from pyl2tp.ppp.ipcp import MAX_UNUSABLE_NAKS, IpcpConfig, IpcpOption, IpcpPolicy
from pyl2tp.ppp.packet import Code, Option

A = IPv4Address
ZERO = A("0.0.0.0")
GATEWAY, ASSIGNED = A("10.0.0.1"), A("10.0.0.23")
DNS1, DNS2 = A("192.0.2.53"), A("198.51.100.53")

SERVER = IpcpConfig(local_address=GATEWAY, peer_address=ASSIGNED, dns=(DNS1, DNS2))
CLIENT = IpcpConfig(request_dns=True)


def pair(ca: IpcpConfig, cb: IpcpConfig) -> tuple[Wire, IpcpPolicy, IpcpPolicy]:
    pa, pb = IpcpPolicy(ca), IpcpPolicy(cb)
    return negotiate(pa, pb), pa, pb


def addr(kind: int, address: IPv4Address) -> Option:
    return Option(kind, address.packed)


def ip(address: IPv4Address) -> Option:
    return addr(IpcpOption.IP_ADDRESS, address)


def listening(config: IpcpConfig) -> Automaton:
    return listen(IpcpPolicy(config))


# ---------------------------------------------------------------------------------------------
# Server against client


def test_client_converges_to_the_assigned_address_and_dns() -> None:
    wire, server, client = pair(SERVER, CLIENT)
    assert wire.opened()
    assert (client.local_address, client.peer_address, client.dns) == (
        ASSIGNED,
        GATEWAY,
        (DNS1, DNS2),
    )
    assert (server.local_address, server.peer_address, server.dns) == (GATEWAY, ASSIGNED, ())
    assert server.failure is client.failure is None
    [first, second] = wire.sent("b", Code.CONFIGURE_REQUEST)
    assert first.options() == (ip(ZERO), addr(129, ZERO), addr(131, ZERO))
    assert second.options() == (ip(ASSIGNED), addr(129, DNS1), addr(131, DNS2))
    [nak] = wire.sent("a", Code.CONFIGURE_NAK)
    assert nak.options() == second.options()
    # The server's own request carries only its address, which the client Acks.
    [sreq] = wire.sent("a", Code.CONFIGURE_REQUEST)
    assert sreq.options() == (ip(GATEWAY),)
    assert wire.sent("b", Code.CONFIGURE_NAK) == wire.sent("b", Code.CONFIGURE_REJECT) == []


def test_server_without_dns_rejects_them_and_client_drops_them() -> None:
    wire, _, client = pair(IpcpConfig(local_address=GATEWAY, peer_address=ASSIGNED), CLIENT)
    assert wire.opened()
    [rej] = wire.sent("a", Code.CONFIGURE_REJECT)
    assert rej.options() == (addr(129, ZERO), addr(131, ZERO))
    assert (client.local_address, client.dns) == (ASSIGNED, ())
    assert wire.sent("b", Code.CONFIGURE_REQUEST)[-1].options() == (ip(ASSIGNED),)


def test_server_with_one_dns_rejects_the_secondary() -> None:
    config = IpcpConfig(local_address=GATEWAY, peer_address=ASSIGNED, dns=(DNS1,))
    wire, _, client = pair(config, CLIENT)
    assert wire.opened()
    assert client.dns == (DNS1,)
    [rej] = wire.sent("a", Code.CONFIGURE_REJECT)
    assert rej.options() == (addr(131, ZERO),)


def test_client_rejects_dns_it_cannot_give() -> None:
    server = IpcpConfig(local_address=GATEWAY, peer_address=ASSIGNED, request_dns=True)
    wire, sp, cp = pair(server, IpcpConfig())
    assert wire.opened()
    [rej] = wire.sent("b", Code.CONFIGURE_REJECT)
    assert rej.options() == (addr(129, ZERO), addr(131, ZERO))
    assert sp.dns == () and cp.local_address == ASSIGNED


def test_client_with_fixed_address_wanted_by_the_server() -> None:
    wire, server, client = pair(SERVER, IpcpConfig(local_address=ASSIGNED))
    assert wire.opened()
    assert wire.sent("a", Code.CONFIGURE_NAK) == []
    assert client.local_address == server.peer_address == ASSIGNED


def test_client_refuses_to_give_up_a_configured_address() -> None:
    mine = A("10.9.9.9")
    wire, _, client = pair(SERVER, IpcpConfig(local_address=mine))
    naks = wire.sent("a", Code.CONFIGURE_NAK)
    assert len(naks) == MAX_UNUSABLE_NAKS
    assert all(n.options() == (ip(ASSIGNED),) for n in naks)
    assert client.failure == f"peer refuses our IP address {mine}"
    assert wire.closed_with == {"b": f"peer refuses our IP address {mine}"}
    assert not wire.b.is_opened and client.local_address is None


def test_server_without_peer_address_rejects_zero_and_client_fails() -> None:
    wire, _, client = pair(IpcpConfig(local_address=GATEWAY), CLIENT)
    rejects = wire.sent("a", Code.CONFIGURE_REJECT)
    assert rejects[0].options() == (ip(ZERO), addr(129, ZERO), addr(131, ZERO))
    assert client.failure == "peer will not assign us an IP address"
    assert "b" in wire.closed_with and not wire.opened()


def test_peer_address_unset_accepts_any_nonzero_but_our_own() -> None:
    fsm = listening(IpcpConfig(local_address=GATEWAY))
    assert answer(fsm, ip(A("172.16.5.5"))).code == Code.CONFIGURE_ACK
    policy = fsm.policy
    assert isinstance(policy, IpcpPolicy) and policy.peer_address == A("172.16.5.5")
    rej = answer(fsm, ip(GATEWAY), ident=78)
    assert (rej.code, rej.options()) == (Code.CONFIGURE_REJECT, (ip(GATEWAY),))
    rej = answer(fsm, Option(IpcpOption.IP_ADDRESS, b"\x0a\x00"), ident=79)
    assert rej.code == Code.CONFIGURE_REJECT


def test_server_naks_wrong_and_malformed_addresses_with_the_assigned_one() -> None:
    fsm = listening(SERVER)
    for ident, option in enumerate(
        (ip(ZERO), ip(A("10.0.0.99")), Option(IpcpOption.IP_ADDRESS, b"\x01\x02\x03"))
    ):
        reply = answer(fsm, option, ident=ident)
        assert (reply.code, reply.options()) == (Code.CONFIGURE_NAK, (ip(ASSIGNED),))
    dns = answer(fsm, ip(ASSIGNED), addr(129, A("1.2.3.4")), Option(131), ident=9)
    assert dns.options() == (addr(129, DNS1), addr(131, DNS2))
    assert answer(fsm, ip(ASSIGNED), addr(129, DNS1), ident=10).code == Code.CONFIGURE_ACK


def test_missing_ip_address_is_hinted_until_max_failure() -> None:
    fsm = listening(SERVER)
    replies = [answer(fsm, ident=i) for i in range(6)]
    assert [r.code for r in replies] == [Code.CONFIGURE_NAK] * 5 + [Code.CONFIGURE_ACK]
    assert all(r.options() == (ip(ASSIGNED),) for r in replies[:5])
    policy = fsm.policy
    assert isinstance(policy, IpcpPolicy)
    assert policy.peer_address == ASSIGNED  # what we assigned, though the peer never said


def test_unsupported_options_are_rejected() -> None:
    fsm = listening(SERVER)
    odd = (
        Option(IpcpOption.IP_ADDRESSES, GATEWAY.packed + ASSIGNED.packed),
        Option(IpcpOption.IP_COMPRESSION, b"\x00\x2d\x0f\x01"),
        addr(IpcpOption.PRIMARY_NBNS, ZERO),
        addr(IpcpOption.SECONDARY_NBNS, ZERO),
        Option(200, b"x"),
    )
    reply = answer(fsm, ip(ASSIGNED), *odd, ip(ASSIGNED))
    assert (reply.code, reply.options()) == (Code.CONFIGURE_REJECT, (*odd, ip(ASSIGNED)))


def test_reject_of_our_address_when_we_have_one_keeps_it() -> None:
    policy = IpcpPolicy(IpcpConfig(local_address=GATEWAY))
    policy.apply_reject([ip(GATEWAY)])
    assert list(policy.request_options()) == [] and policy.failure is None
    policy.request_acked([])
    assert policy.local_address == GATEWAY and policy.failure is None


def test_nak_to_zero_does_not_leave_us_with_no_address_forever() -> None:
    policy = IpcpPolicy(CLIENT)
    for _ in range(MAX_UNUSABLE_NAKS):
        policy.apply_nak([ip(ZERO)])
    assert policy.failure == "peer will not assign us an IP address"


def test_ack_of_zero_is_a_failure() -> None:
    policy = IpcpPolicy(CLIENT)
    policy.request_acked([ip(ZERO)])
    assert policy.local_address is None
    assert policy.failure == "could not determine our IP address"


def test_new_negotiation_resets_state() -> None:
    policy = IpcpPolicy(CLIENT)
    policy.apply_nak([ip(ASSIGNED), addr(129, DNS1)])
    policy.apply_reject([addr(131, ZERO)])
    policy.request_acked([ip(ASSIGNED), addr(129, DNS1)])
    assert (policy.local_address, policy.dns) == (ASSIGNED, (DNS1,))
    policy.this_layer_down()
    assert list(policy.request_options()) == [ip(ZERO), addr(129, ZERO), addr(131, ZERO)]
    assert (policy.local_address, policy.dns, policy.failure) == (None, (), None)


def test_renegotiation_through_lower_layer_restart() -> None:
    wire, server, client = pair(SERVER, CLIENT)
    wire.now = 10.0
    wire.a.lower_down(wire.now)
    wire.b.lower_down(wire.now)
    wire.a.lower_up(wire.now)
    wire.b.lower_up(wire.now)
    wire.run(200)
    assert wire.opened() and client.local_address == ASSIGNED and client.dns == (DNS1, DNS2)
    assert server.peer_address == ASSIGNED and wire.a.state is State.OPENED
    assert len(wire.sent("b", Code.CONFIGURE_REQUEST)) == 4  # 0.0.0.0 then the Nak'd values


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dns": (DNS1, DNS2, A("9.9.9.9"))},
        {"local_address": ZERO},
        {"dns": (ZERO,)},
        {"local_address": GATEWAY, "peer_address": GATEWAY},
        {"peer_address": "10.0.0.1"},
    ],
)
def test_config_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        IpcpConfig(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Hostile requests

addresses = st.sampled_from([ZERO, GATEWAY, ASSIGNED, DNS1, A("255.255.255.255")])
option_lists = st.lists(
    st.one_of(
        st.builds(addr, st.sampled_from([1, 2, 3, 129, 130, 131, 132]), addresses),
        st.builds(Option, st.sampled_from([1, 2, 3, 129, 131]), st.binary(max_size=10)),
        st.builds(Option, st.integers(0, 255), st.binary(max_size=20)),
    ),
    max_size=8,
)
configs = st.sampled_from(
    [
        SERVER,
        CLIENT,
        IpcpConfig(),
        IpcpConfig(local_address=GATEWAY),
        IpcpConfig(local_address=GATEWAY, peer_address=ASSIGNED, dns=(DNS1,)),
    ]
)


@settings(max_examples=300, deadline=None)
@given(config=configs, options=option_lists)
def test_judge_request_never_raises_one_verdict_each(
    config: IpcpConfig, options: Sequence[Option]
) -> None:
    policy = IpcpPolicy(config)
    verdicts = policy.judge_request(options)
    assert len(verdicts) == len(options)
    for option, verdict in zip(options, verdicts, strict=True):
        if verdict.judgement is Judgement.NAK:
            [suggestion] = verdict.suggestions
            assert suggestion.type == option.type and len(suggestion.data) == 4
        elif verdict.judgement is Judgement.ACK:
            assert option.type in (3, 129, 131) and len(option.data) == 4
    fsm = listening(config)
    fsm.receive(conf(Code.CONFIGURE_REQUEST, 1, *options), 0)
    calls: list[Callable[[Sequence[Option]], None]] = [
        policy.apply_nak,
        policy.apply_reject,
        policy.request_acked,
        policy.peer_request_acked,
    ]
    for call in calls:
        call(options)
    for option in policy.request_options():
        assert len(option.data) == 4
