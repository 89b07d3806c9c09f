"""IPV6CP Interface-Identifier negotiation (RFC 5072 §4.1) on the RFC 1661 automaton."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.pppwire import (
    Rng,
    Wire,
    answer,
    listen,
    negotiate,
    scripted_rng,
    seeded,
)

from pyl2tp.ppp.fsm import Automaton, Judgement, State
from pyl2tp.ppp.ipv6cp import (
    INTERFACE_IDENTIFIER,
    MAX_LOOPBACKS,
    Ipv6cpConfig,
    Ipv6cpPolicy,
)
from pyl2tp.ppp.packet import Code, ControlPacket, Option

U_BIT = 1 << 57


def ifid(value: int) -> Option:
    return Option(INTERFACE_IDENTIFIER, value.to_bytes(8, "big"))


def pair(
    ca: Ipv6cpConfig, cb: Ipv6cpConfig, ra: Rng | None = None, rb: Rng | None = None
) -> tuple[Wire, Ipv6cpPolicy, Ipv6cpPolicy]:
    pa = Ipv6cpPolicy(ca, rng=ra or seeded(1))
    pb = Ipv6cpPolicy(cb, rng=rb or seeded(2))
    return negotiate(pa, pb), pa, pb


def agreed(a: Ipv6cpPolicy, b: Ipv6cpPolicy) -> None:
    assert a.local_ifid == b.peer_ifid != 0
    assert b.local_ifid == a.peer_ifid != 0
    assert a.local_ifid != b.local_ifid
    assert a.failure is b.failure is None


def listening(config: Ipv6cpConfig, rng: Rng) -> Automaton:
    return listen(Ipv6cpPolicy(config, rng=rng))


def test_different_identifiers_are_acked() -> None:
    wire, a, b = pair(Ipv6cpConfig(local_ifid=0x1111), Ipv6cpConfig(local_ifid=0x2222))
    assert wire.opened()
    agreed(a, b)
    assert (a.local_ifid, b.local_ifid) == (0x1111, 0x2222)
    assert wire.sent("a", Code.CONFIGURE_NAK) == wire.sent("b", Code.CONFIGURE_NAK) == []
    assert Ipv6cpPolicy.link_local(a.local_ifid) == IPv6Address("fe80::1111")


def test_random_identifiers_have_the_u_bit_clear() -> None:
    wire, a, b = pair(Ipv6cpConfig(), Ipv6cpConfig(), rb=lambda n: b"\xff" * n)
    assert wire.opened()
    agreed(a, b)
    assert b.local_ifid == 0xFFFF_FFFF_FFFF_FFFF & ~U_BIT
    assert a.local_ifid & U_BIT == 0


def test_equal_identifiers_are_naked_and_diverge() -> None:
    same = Ipv6cpConfig(local_ifid=0x4242)
    ra, rb = scripted_rng(0xA, width=8, seed=1), scripted_rng(0xB, width=8, seed=2)
    wire, a, b = pair(same, same, ra, rb)
    assert wire.opened()
    agreed(a, b)
    # Each suggests its prepared value; each adopts the other's (§4.1: different from the
    # one it last Nak'd, so the link is not looped).
    assert wire.sent("a", Code.CONFIGURE_NAK)[0].options() == (ifid(0xA),)
    assert wire.sent("b", Code.CONFIGURE_NAK)[0].options() == (ifid(0xB),)
    assert (a.local_ifid, b.local_ifid) == (0xB, 0xA)
    assert a.loopbacks == b.loopbacks == 0


def test_zero_identifier_gets_a_suggestion() -> None:
    wire, asking, giving = pair(
        Ipv6cpConfig(local_ifid=0), Ipv6cpConfig(local_ifid=0x77), rb=scripted_rng(0x99, width=8)
    )
    assert wire.opened()
    agreed(asking, giving)
    [nak] = wire.sent("b", Code.CONFIGURE_NAK)
    assert nak.options() == (ifid(0x99),)
    assert asking.local_ifid == 0x99


def test_both_zero_is_rejected_and_fails() -> None:
    zero = Ipv6cpConfig(local_ifid=0)
    wire, a, b = pair(zero, zero)
    assert wire.sent("a", Code.CONFIGURE_REJECT)[0].options() == (ifid(0),)
    assert a.failure == b.failure == "peer rejected interface identifier negotiation"
    assert not wire.a.is_opened and not wire.b.is_opened


def test_server_dictates_the_peer_identifier() -> None:
    server = Ipv6cpConfig(local_ifid=1, peer_ifid=0xC0FFEE)
    wire, s, c = pair(server, Ipv6cpConfig())
    assert wire.opened()
    agreed(s, c)
    assert (s.local_ifid, c.local_ifid) == (1, 0xC0FFEE)
    assert c.link_local(c.local_ifid) == IPv6Address("fe80::c0:ffee")


def test_dictated_identifier_is_hinted_when_missing() -> None:
    fsm = listening(Ipv6cpConfig(peer_ifid=0x55), seeded(3))
    replies = [answer(fsm, ident=i) for i in range(6)]
    assert [r.code for r in replies] == [Code.CONFIGURE_NAK] * 5 + [Code.CONFIGURE_ACK]
    assert replies[0].options() == (ifid(0x55),)
    policy = fsm.policy
    assert isinstance(policy, Ipv6cpPolicy) and policy.peer_ifid == 0  # never told


def test_looped_link_is_detected() -> None:
    policy = Ipv6cpPolicy(Ipv6cpConfig(), rng=seeded(4))
    fsm = Automaton(policy)
    wire = Wire(fsm)
    wire.start()
    assert policy.failure == "loopback detected"
    assert policy.loopbacks == MAX_LOOPBACKS
    assert wire.closed_with == {"a": "loopback detected"}
    assert fsm.state is State.CLOSED
    requested = [r.options()[0] for r in wire.sent("a", Code.CONFIGURE_REQUEST)]
    assert len(set(requested)) == len(requested) == MAX_LOOPBACKS + 1


def test_reject_keeps_a_nonzero_identifier() -> None:
    policy = Ipv6cpPolicy(Ipv6cpConfig(local_ifid=0x10), rng=seeded(5))
    policy.apply_reject([ifid(0x10)])
    assert list(policy.request_options()) == []
    policy.request_acked([])
    assert policy.local_ifid == 0x10 and policy.failure is None


def test_judging_rules_one_by_one() -> None:
    fsm = listening(Ipv6cpConfig(local_ifid=0x10), scripted_rng(0x20, width=8))
    assert answer(fsm, ifid(0x11)).code == Code.CONFIGURE_ACK
    for ident, option in enumerate((ifid(0), ifid(0x10), Option(1, b"\x01\x02"))):
        reply = answer(fsm, option, ident=ident)
        assert (reply.code, reply.options()) == (Code.CONFIGURE_NAK, (ifid(0x20),))
    compression = Option(2, b"\x00\x4f\x00\x0f")
    reply = answer(fsm, ifid(0x11), compression, ifid(0x12), ident=9)
    assert (reply.code, reply.options()) == (Code.CONFIGURE_REJECT, (compression, ifid(0x12)))


def test_nak_handling() -> None:
    policy = Ipv6cpPolicy(
        Ipv6cpConfig(local_ifid=0x10, peer_ifid=0x30), rng=scripted_rng(0x20, width=8)
    )
    policy.apply_nak([ifid(0x44)])
    assert list(policy.request_options()) == [ifid(0x44)]
    for unusable in (ifid(0), ifid(0x30), Option(1, b"\x00")):
        policy.apply_nak([unusable])
        [option] = policy.request_options()
        assert option.as_int() not in (0, 0x30, 0x44, 0x20)
    assert policy.loopbacks == 0


def test_new_negotiation_resets_results_but_keeps_the_identifier() -> None:
    policy = Ipv6cpPolicy(Ipv6cpConfig(local_ifid=0x10), rng=seeded(6))
    policy.apply_reject([ifid(0x10)])
    policy.peer_request_acked([ifid(0x99)])
    policy.this_layer_finished()
    assert list(policy.request_options()) == [ifid(0x10)]
    assert policy.peer_ifid == 0 and policy.local_ifid == 0


def test_link_local() -> None:
    assert Ipv6cpPolicy.link_local(1) == IPv6Address("fe80::1")
    assert Ipv6cpPolicy.link_local(2**64 - 1) == IPv6Address("fe80::ffff:ffff:ffff:ffff")
    with pytest.raises(ValueError):
        Ipv6cpPolicy.link_local(2**64)


@pytest.mark.parametrize(
    "kwargs",
    [{"local_ifid": 2**64}, {"peer_ifid": 0}, {"local_ifid": 5, "peer_ifid": 5}, {"peer_ifid": -1}],
)
def test_config_is_validated(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Ipv6cpConfig(**kwargs)


option_lists = st.lists(
    st.one_of(
        st.builds(ifid, st.sampled_from([0, 1, 0x10, 0x20, 2**64 - 1])),
        st.builds(Option, st.sampled_from([1, 2]), st.binary(max_size=12)),
        st.builds(Option, st.integers(0, 255), st.binary(max_size=12)),
    ),
    max_size=6,
)
configs = st.sampled_from(
    [
        Ipv6cpConfig(),
        Ipv6cpConfig(local_ifid=0),
        Ipv6cpConfig(local_ifid=0x10),
        Ipv6cpConfig(local_ifid=0x10, peer_ifid=0x20),
    ]
)


@settings(max_examples=300, deadline=None)
@given(config=configs, options=option_lists, seed=st.integers(0, 1000))
def test_judge_request_never_raises_one_verdict_each(
    config: Ipv6cpConfig, options: Sequence[Option], seed: int
) -> None:
    policy = Ipv6cpPolicy(config, rng=seeded(seed))
    ours = next(iter(policy.request_options()), None)
    verdicts = policy.judge_request(options)
    assert len(verdicts) == len(options)
    for option, verdict in zip(options, verdicts, strict=True):
        if verdict.judgement is Judgement.NAK:
            [suggestion] = verdict.suggestions
            assert suggestion.type == 1 and len(suggestion.data) == 8
            assert suggestion.as_int() != 0 and suggestion != ours
        elif verdict.judgement is Judgement.ACK:
            assert option.type == 1 and len(option.data) == 8
            assert option.as_int() != 0 and option != ours
    fsm = listening(config, seeded(seed))
    fsm.receive(ControlPacket.configure(Code.CONFIGURE_REQUEST, 1, options).encode(), 0)
    for call in (policy.apply_nak, policy.apply_reject, policy.request_acked):
        call(options)
    policy.peer_request_acked(options)
    for option in policy.request_options():
        assert len(option.data) == 8
