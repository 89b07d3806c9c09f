"""LCP option negotiation: LcpPolicy on the RFC 1661 automaton, on a virtual clock.

Two automata are wired back to back (or one to itself, for loopback) by
:class:`tests.support.pppwire.Wire`, which closes a side whose policy reports ``failure``, as
the link does. Scripted peers (raw packets fed into one automaton) cover what two of our own
policies would never send.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.pppwire import (
    Rng,
    Wire,
    answer,
    conf,
    listen,
    negotiate,
    random_loss,
    scripted_rng,
    seeded,
    sent,
)

from pyl2tp.ppp.fsm import Automaton, Judgement, State
from pyl2tp.ppp.lcp import (
    DEFAULT_MRU,
    MAX_LOOPBACKS,
    LcpConfig,
    LcpOption,
    LcpPolicy,
)
from pyl2tp.ppp.packet import PROTO_IPV6CP, Code, ControlPacket, Option
from pyl2tp.ppp.protocols import AuthMethod

PAP, CHAP, MSV2 = AuthMethod.PAP, AuthMethod.CHAP_MD5, AuthMethod.MSCHAP_V2


def pair(
    ca: LcpConfig, cb: LcpConfig, *, seed: int = 1, **automaton: int
) -> tuple[Wire, LcpPolicy, LcpPolicy]:
    pa = LcpPolicy(ca, rng=seeded(seed))
    pb = LcpPolicy(cb, rng=seeded(seed + 1000))
    return negotiate(pa, pb, **automaton), pa, pb


def auth_opt(method: AuthMethod) -> Option:
    return Option(LcpOption.AUTH_PROTOCOL, method.option_data)


def magic_opt(value: int) -> Option:
    return Option.u32(LcpOption.MAGIC_NUMBER, value)


def listening(config: LcpConfig | None = None, *, rng: Rng | None = None) -> Automaton:
    """An LCP automaton in Req-Sent whose own request has been taken off the wire."""
    return listen(LcpPolicy(config or LcpConfig(), rng=rng or seeded(0)))


SERVER = LcpConfig(auth=(CHAP,), mru=1400)
CLIENT = LcpConfig(peer_auth=(CHAP, PAP))


# ---------------------------------------------------------------------------------------------
# Whole negotiations


def test_server_and_client_open_with_chap_and_mrus() -> None:
    wire, server, client = pair(SERVER, CLIENT)
    assert wire.opened()
    assert (server.auth_of_peer, server.auth_by_peer) == (CHAP, None)
    assert (client.auth_of_peer, client.auth_by_peer) == (None, CHAP)
    assert (server.our_mru, server.peer_mru) == (1400, DEFAULT_MRU)
    assert (client.our_mru, client.peer_mru) == (DEFAULT_MRU, 1400)
    assert server.our_magic == client.peer_magic != 0
    assert client.our_magic == server.peer_magic != 0
    assert server.our_magic != client.our_magic
    assert server.magic_number() == server.our_magic
    assert server.failure is client.failure is None
    assert not (server.pfc or server.acfc or client.pfc or client.acfc)
    [req] = wire.sent("a", Code.CONFIGURE_REQUEST)
    assert [o.type for o in req.options()] == [1, 3, 5]
    assert req.options()[:2] == (Option.u16(1, 1400), Option(3, b"\xc2\x23\x05"))
    # The client requests only a magic: no MRU at 1500, never Auth-Protocol, PFC or ACFC.
    [creq] = wire.sent("b", Code.CONFIGURE_REQUEST)
    assert [o.type for o in creq.options()] == [5]
    assert wire.sent("a", Code.CONFIGURE_NAK) == wire.sent("b", Code.CONFIGURE_NAK) == []


def test_nak_naming_another_of_our_methods_switches_to_it() -> None:
    wire, server, client = pair(LcpConfig(auth=(MSV2, CHAP, PAP)), LcpConfig(peer_auth=(PAP,)))
    assert wire.opened()
    [nak] = wire.sent("b", Code.CONFIGURE_NAK)
    assert nak.options() == (auth_opt(PAP),)
    assert server.auth_of_peer is client.auth_by_peer is PAP
    requested = [r.options()[0] for r in wire.sent("a", Code.CONFIGURE_REQUEST)]
    assert requested == [auth_opt(MSV2), auth_opt(PAP)]  # skipped CHAP: the peer named PAP


def test_nak_naming_a_foreign_method_moves_down_our_list_then_fails() -> None:
    wire, server, _ = pair(LcpConfig(auth=(MSV2, PAP)), LcpConfig(peer_auth=(CHAP,)))
    requested = [r.options()[0] for r in wire.sent("a", Code.CONFIGURE_REQUEST)]
    # The request sent with the final refusal still demands auth; then LCP closes.
    assert requested == [auth_opt(MSV2), auth_opt(PAP), auth_opt(PAP)]
    assert len(wire.sent("b", Code.CONFIGURE_NAK)) == 3  # the last one answers that request
    assert server.failure == "peer refused all of: mschap-v2, pap"
    assert wire.closed_with == {"a": "peer refused all of: mschap-v2, pap"}
    [treq] = wire.sent("a", Code.TERMINATE_REQUEST)
    assert treq.data == b"peer refused all of: mschap-v2, pap"
    assert server.auth_of_peer is None and not wire.opened()


def test_peer_without_credentials_rejects_auth_and_we_fail() -> None:
    wire, server, _ = pair(LcpConfig(auth=(CHAP, PAP)), LcpConfig(peer_auth=()))
    rejects = wire.sent("b", Code.CONFIGURE_REJECT)
    # The third Reject answers the request that left with the refusal that set failure.
    expected = [(auth_opt(CHAP),), (auth_opt(PAP),), (auth_opt(PAP),)]
    assert [r.options() for r in rejects] == expected
    assert server.failure == "peer refused all of: chap-md5, pap"
    assert wire.a.state is State.CLOSED and not wire.b.is_opened
    [treq] = wire.sent("a", Code.TERMINATE_REQUEST)
    assert treq.data == b"peer refused all of: chap-md5, pap"


def test_no_auth_anywhere_opens() -> None:
    wire, a, b = pair(LcpConfig(), LcpConfig())
    assert wire.opened()
    assert a.auth_of_peer is a.auth_by_peer is b.auth_of_peer is b.auth_by_peer is None


def test_mutual_authentication() -> None:
    both = LcpConfig(auth=(PAP,), peer_auth=(PAP,))
    wire, a, b = pair(both, both)
    assert wire.opened()
    assert a.auth_of_peer is a.auth_by_peer is b.auth_of_peer is b.auth_by_peer is PAP


def test_peer_mru_below_minimum_is_naked_and_adopted() -> None:
    wire, small, strict = pair(LcpConfig(mru=500), LcpConfig(min_mru=576))
    assert wire.opened()
    [nak] = wire.sent("b", Code.CONFIGURE_NAK)
    assert nak.options() == (Option.u16(LcpOption.MRU, 576),)
    assert small.our_mru == strict.peer_mru == 576


def test_large_mru_is_acked() -> None:
    wire, big, other = pair(LcpConfig(mru=9000), LcpConfig())
    assert wire.opened() and big.our_mru == other.peer_mru == 9000


def test_stubborn_small_mru_is_naked_max_failure_times_then_rejected() -> None:
    fsm = listening(LcpConfig(min_mru=1000))
    replies = [answer(fsm, Option.u16(LcpOption.MRU, 200), ident=i) for i in range(7)]
    assert [r.code for r in replies] == [Code.CONFIGURE_NAK] * 5 + [Code.CONFIGURE_REJECT] * 2
    assert replies[0].options() == (Option.u16(LcpOption.MRU, 1000),)
    assert replies[5].options() == (Option.u16(LcpOption.MRU, 200),)


@pytest.mark.parametrize(
    ("suggested", "expected"),
    [(1200, 1200), (1500, 1500), (9000, 9000), (64, 64), (63, None), (0, None)],
)
def test_our_mru_follows_usable_naks(suggested: int, expected: int | None) -> None:
    policy = LcpPolicy(LcpConfig(mru=1400), rng=seeded(3))
    policy.apply_nak([Option.u16(LcpOption.MRU, suggested)])
    mrus = [o.as_int() for o in policy.request_options() if o.type == LcpOption.MRU]
    assert mrus == ([] if expected is None else [expected])


def test_mru_rejected_falls_back_to_default() -> None:
    policy = LcpPolicy(LcpConfig(mru=1400), rng=seeded(3))
    policy.apply_reject([Option.u16(LcpOption.MRU, 1400)])
    assert [o.type for o in policy.request_options()] == [LcpOption.MAGIC_NUMBER]


def test_malformed_mru_is_naked_with_the_right_form() -> None:
    reply = answer(listening(), Option(LcpOption.MRU, b"\x05"))
    assert (reply.code, reply.options()) == (Code.CONFIGURE_NAK, (Option.u16(1, 1500),))


# ---------------------------------------------------------------------------------------------
# Magic numbers and loopback


def test_looped_link_is_detected_and_closed() -> None:
    policy = LcpPolicy(LcpConfig(), rng=seeded(5))
    fsm = Automaton(policy)
    wire = Wire(fsm)  # wired to itself
    wire.start()
    assert policy.failure == "loopback detected"
    assert policy.loopbacks == MAX_LOOPBACKS
    assert wire.closed_with == {"a": "loopback detected"}
    assert fsm.state is State.CLOSED and not fsm.is_opened
    naks = wire.sent("a", Code.CONFIGURE_NAK)
    assert len(naks) == MAX_LOOPBACKS
    magics = [r.options()[0].as_int() for r in wire.sent("a", Code.CONFIGURE_REQUEST)]
    # A new magic every time; the last request left with the Nak that set ``failure``.
    assert len(set(magics)) == len(magics) == MAX_LOOPBACKS + 1


def test_loopback_without_closing_is_bounded_by_max_failure() -> None:
    """If nobody acts on ``failure``, Max-Failure turns the Nak into a Reject and the looped
    link opens without magic: the automaton never spins."""
    policy = LcpPolicy(LcpConfig(), rng=seeded(5))
    fsm = Automaton(policy)
    fsm.lower_up(0)
    fsm.open(0)
    for _ in range(100):
        packets = fsm.packets_to_send()
        if not packets:
            break
        for packet in packets:
            fsm.receive(packet.data, 0)
    assert fsm.is_opened and policy.our_magic == 0
    assert policy.failure == "loopback detected"


def test_magic_collision_between_two_peers_diverges() -> None:
    same = 0x11111111
    pa = LcpPolicy(LcpConfig(), rng=scripted_rng(same, 0x22222222, seed=1))
    pb = LcpPolicy(LcpConfig(), rng=scripted_rng(same, 0x33333333, seed=2))
    wire = negotiate(pa, pb)
    assert wire.opened()
    assert wire.sent("a", Code.CONFIGURE_NAK)[0].options() == (magic_opt(0x22222222),)
    assert wire.sent("b", Code.CONFIGURE_NAK)[0].options() == (magic_opt(0x33333333),)
    assert pa.loopbacks == pb.loopbacks == 0 and pa.failure is pb.failure is None
    assert pa.our_magic == pb.peer_magic and pb.our_magic == pa.peer_magic
    assert same not in (pa.our_magic, pb.our_magic) and pa.our_magic != pb.our_magic


@pytest.mark.parametrize(
    "option", [magic_opt(0), Option(LcpOption.MAGIC_NUMBER, b"\x01\x02")], ids=["zero", "short"]
)
def test_zero_or_malformed_peer_magic_is_naked(option: Option) -> None:
    fsm = listening(rng=scripted_rng(0xAAAA0001, 0xBBBB0002))
    reply = answer(fsm, option)
    assert (reply.code, reply.options()) == (Code.CONFIGURE_NAK, (magic_opt(0xBBBB0002),))


def test_peer_magic_equal_to_ours_is_naked_with_another() -> None:
    fsm = listening(rng=scripted_rng(0xAAAA0001, 0xBBBB0002))
    reply = answer(fsm, magic_opt(0xAAAA0001))
    assert reply.options() == (magic_opt(0xBBBB0002),)
    assert answer(fsm, magic_opt(0xAAAA0002), ident=78).code == Code.CONFIGURE_ACK


def test_judging_has_no_side_effects() -> None:
    policy = LcpPolicy(LcpConfig(), rng=seeded(9))
    [ours] = policy.request_options()
    first = policy.judge_request([ours, Option.u16(1, 10)])
    assert policy.judge_request([ours, Option.u16(1, 10)]) == first
    assert list(policy.request_options()) == [ours] and policy.loopbacks == 0


def test_magic_rejected_counts_as_acked_without_magic() -> None:
    fsm = listening(rng=seeded(4))
    policy = fsm.policy
    assert isinstance(policy, LcpPolicy)
    fsm.handle_timer(3.0)
    [req] = sent(fsm)
    fsm.receive(conf(Code.CONFIGURE_REJECT, req.identifier, *req.options()), 3.0)
    [req2] = sent(fsm)
    assert req2.options() == ()
    fsm.receive(ControlPacket(Code.CONFIGURE_ACK, req2.identifier).encode(), 3.0)
    answer(fsm, magic_opt(0x01020304))
    assert fsm.is_opened and policy.our_magic == 0 and policy.peer_magic == 0x01020304
    assert policy.magic_number() == 0


def test_any_nak_of_our_magic_gives_a_fresh_one() -> None:
    policy = LcpPolicy(LcpConfig(), rng=scripted_rng(0xA1, 0xB2, 0xC3, 0xD4))
    assert list(policy.request_options()) == [magic_opt(0xA1)]
    policy.apply_nak([magic_opt(0x77)])  # the peer's own idea: proof of no loop
    assert list(policy.request_options()) == [magic_opt(0xC3)] and policy.loopbacks == 0
    policy.apply_nak([magic_opt(0xD4)])  # our prepared Nak value came back: looped
    assert policy.loopbacks == 1
    [magic] = policy.request_options()
    assert magic.as_int() not in (0, 0xC3, 0xD4)


def test_broken_rng_still_yields_distinct_nonzero_magics() -> None:
    policy = LcpPolicy(LcpConfig(), rng=lambda n: bytes(n))
    [mine] = policy.request_options()
    assert mine.as_int() != 0
    [suggestion] = policy.judge_request([mine])[0].suggestions
    assert suggestion.as_int() not in (0, mine.as_int())


# ---------------------------------------------------------------------------------------------
# The peer's request: one option at a time


def test_auth_requested_by_peer() -> None:
    fsm = listening(LcpConfig(peer_auth=(CHAP, PAP)))
    assert answer(fsm, auth_opt(PAP)).code == Code.CONFIGURE_ACK
    nak = answer(fsm, auth_opt(MSV2), ident=78)
    assert (nak.code, nak.options()) == (Code.CONFIGURE_NAK, (auth_opt(CHAP),))
    odd = Option(LcpOption.AUTH_PROTOCOL, b"\xc2\x27")  # EAP: not ours
    assert answer(fsm, odd, ident=79).options() == (auth_opt(CHAP),)
    short = Option(LcpOption.AUTH_PROTOCOL, b"\xc0")
    assert answer(fsm, short, ident=80).options() == (auth_opt(CHAP),)
    refusing = listening(LcpConfig(peer_auth=()))
    rej = answer(refusing, auth_opt(PAP))
    assert (rej.code, rej.options()) == (Code.CONFIGURE_REJECT, (auth_opt(PAP),))


def test_accm_is_acked_whatever_its_value() -> None:
    fsm = listening()
    for ident, value in enumerate((0, 0xFFFFFFFF, 0x000A0000)):
        assert answer(fsm, Option.u32(LcpOption.ACCM, value), ident=ident).code == 2
    bad = answer(fsm, Option(LcpOption.ACCM, b"\0\0"), ident=9)
    assert (bad.code, bad.options()) == (Code.CONFIGURE_NAK, (Option.u32(2, 0),))


def test_pfc_and_acfc_are_acked_and_recorded() -> None:
    fsm = listening(rng=seeded(8))
    policy = fsm.policy
    assert isinstance(policy, LcpPolicy)
    request = (Option(LcpOption.PFC), Option(LcpOption.ACFC), magic_opt(0x0BADF00D))
    assert answer(fsm, *request).code == Code.CONFIGURE_ACK
    assert policy.pfc and policy.acfc and policy.peer_magic == 0x0BADF00D
    # A boolean option with data is malformed: Rejected, never Nak'd (§5.3).
    reply = answer(fsm, Option(LcpOption.PFC, b"\x01"), Option(LcpOption.ACFC), ident=78)
    assert (reply.code, reply.options()) == (Code.CONFIGURE_REJECT, (Option(7, b"\x01"),))


def test_unknown_and_unsupported_options_are_rejected_in_order() -> None:
    fsm = listening()
    odd = (
        Option(LcpOption.VENDOR_SPECIFIC, b"\x00\x00\x5e\x01"),
        Option.u16(LcpOption.MRU, 1400),
        Option(LcpOption.QUALITY_PROTOCOL, b"\xc0\x25\x00\x00\x00\x10"),
        Option(LcpOption.CALLBACK, b"\x06"),
        Option.u16(LcpOption.MRRU, 1614),
        Option(LcpOption.SHORT_SEQUENCE),
        Option(LcpOption.ENDPOINT_DISCRIMINATOR, b"\x02\x0a\x00\x00\x01"),
        Option(99, b"??"),
    )
    reply = answer(fsm, *odd)
    assert (reply.code, reply.options()) == (Code.CONFIGURE_REJECT, odd[:1] + odd[2:])


def test_duplicate_single_instance_options_are_rejected() -> None:
    fsm = listening()
    first, second = Option.u16(LcpOption.MRU, 1400), Option.u16(LcpOption.MRU, 1300)
    reply = answer(fsm, first, second, magic_opt(5), magic_opt(6))
    assert (reply.code, reply.options()) == (Code.CONFIGURE_REJECT, (second, magic_opt(6)))


def test_l2tpns_style_request_is_answered_like_the_notes_say() -> None:
    """l2tpns sends MRU 1462, PAP, magic, MRRU 1614 and an Endpoint Discriminator: a client
    Rejects the Multilink options, then Acks the rest."""
    fsm = listening(LcpConfig(peer_auth=(PAP,)), rng=seeded(2))
    request = (
        Option.u16(1, 1462),
        auth_opt(PAP),
        magic_opt(0x5F000001),
        Option.u16(17, 1614),
        Option(19, b"\x02\x0a\x00\x00\x01"),
    )
    reply = answer(fsm, *request)
    assert (reply.code, reply.options()) == (Code.CONFIGURE_REJECT, request[3:])
    assert answer(fsm, *request[:3], ident=78).code == Code.CONFIGURE_ACK
    policy = fsm.policy
    assert isinstance(policy, LcpPolicy)
    assert (policy.peer_mru, policy.auth_by_peer, policy.peer_magic) == (1462, PAP, 0x5F000001)


# ---------------------------------------------------------------------------------------------
# Opened: echoes, rejects, extension codes, renegotiation


def test_echo_replies_reach_the_hook_unless_looped() -> None:
    wire, a, _ = pair(LcpConfig(), LcpConfig())
    replies: list[int] = []
    a.on_echo_reply = replies.append
    ident = wire.a.send_echo_request(b"ping")
    assert ident is not None
    wire.pump()
    assert replies == [ident]
    assert (a.last_echo_reply_id, a.last_echo_reply_magic) == (ident, a.peer_magic)
    # An Echo-Reply with our own magic is our own echo come back: not liveness.
    looped = ControlPacket.with_magic(Code.ECHO_REPLY, 200, a.our_magic, b"ping")
    wire.a.receive(looped.encode(), 1.0)
    assert replies == [ident] and a.loopbacks == 1 and a.failure is None
    for i in range(MAX_LOOPBACKS - 1):
        wire.a.receive(ControlPacket.with_magic(Code.ECHO_REQUEST, i, a.our_magic).encode(), 1.0)
    assert a.failure == "loopback detected"


def test_protocol_reject_and_extension_codes() -> None:
    wire, a, _ = pair(LcpConfig(), LcpConfig())
    wire.a.receive(
        ControlPacket(Code.PROTOCOL_REJECT, 9, struct.pack(">H", PROTO_IPV6CP)).encode(), 1.0
    )
    assert a.rejected_protocols == {PROTO_IPV6CP}
    wire.a.receive(ControlPacket(Code.IDENTIFICATION, 10, b"\0\0\0\0hello").encode(), 1.0)
    remaining = b"\0\0\0\0" + struct.pack(">I", 3600) + b"bye"
    wire.a.receive(ControlPacket(Code.TIME_REMAINING, 11, remaining).encode(), 1.0)
    wire.a.receive(ControlPacket(Code.IDENTIFICATION, 12, b"\0").encode(), 1.0)  # too short
    assert sent(wire.a) == []  # nothing Code-Rejected
    assert a.extensions_received == {12: 2, 13: 1}
    assert (a.last_identification, a.time_remaining) == (b"hello", 3600)
    assert wire.a.is_opened


def test_new_negotiation_resets_results_and_refusals() -> None:
    policy = LcpPolicy(LcpConfig(auth=(CHAP, PAP), mru=1400), rng=seeded(6))
    policy.apply_reject([auth_opt(CHAP)])
    policy.apply_reject([auth_opt(PAP)])
    policy.apply_nak([Option.u16(LcpOption.MRU, 1000)])
    policy.peer_request_acked([Option.u16(1, 1300), Option(7)])
    policy.protocol_rejected(0x8057)
    assert policy.failure is not None
    assert [o.type for o in policy.request_options()] == [1, 3, 5]
    policy.this_layer_finished()
    options = policy.request_options()
    assert options[:2] == [Option.u16(1, 1400), auth_opt(CHAP)]
    assert policy.failure is None and policy.rejected_protocols == set()
    assert (policy.peer_mru, policy.pfc) == (DEFAULT_MRU, False)


def test_renegotiation_from_opened_recomputes_peer_results() -> None:
    wire, a, b = pair(LcpConfig(), LcpConfig(mru=1400))
    assert a.peer_mru == 1400
    # b's configuration cannot change, but a fresh request without MRU from a scripted peer
    # shows a's results follow the latest Ack.
    wire.a.receive(conf(Code.CONFIGURE_REQUEST, 50, magic_opt(b.our_magic)), 5.0)
    wire.a.packets_to_send()
    assert a.peer_mru == DEFAULT_MRU and a.our_mru == DEFAULT_MRU
    assert wire.a.state is State.ACK_SENT


def test_lossy_link_still_opens() -> None:
    pa = LcpPolicy(LcpConfig(auth=(MSV2, CHAP)), rng=seeded(1))
    pb = LcpPolicy(LcpConfig(peer_auth=(CHAP,), mru=1400), rng=seeded(2))
    wire = negotiate(pa, pb, drop=random_loss(0.25, 7))
    assert wire.opened()
    assert pa.auth_of_peer is pb.auth_by_peer is CHAP
    assert pa.peer_mru == 1400


@pytest.mark.parametrize(
    "kwargs",
    [{"mru": 63}, {"mru": 70000}, {"min_mru": 10}, {"min_mru": 1501}, {"auth": ("pap",)}],
)
def test_config_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LcpConfig(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Hostile requests

option_lists = st.lists(
    st.one_of(
        st.builds(
            Option,
            st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 13, 17, 18, 19, 200]),
            st.binary(max_size=8),
        ),
        st.builds(Option, st.integers(0, 255), st.binary(max_size=30)),
        st.sampled_from([auth_opt(m) for m in AuthMethod]),
    ),
    max_size=10,
)
configs = st.builds(
    LcpConfig,
    mru=st.integers(64, 9000),
    auth=st.lists(st.sampled_from(AuthMethod), max_size=3, unique=True).map(tuple),
    peer_auth=st.lists(st.sampled_from(AuthMethod), max_size=3, unique=True).map(tuple),
    min_mru=st.integers(64, 1500),
    magic=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(config=configs, options=option_lists, seed=st.integers(0, 2**16))
def test_judge_request_never_raises_one_verdict_each(
    config: LcpConfig, options: Sequence[Option], seed: int
) -> None:
    policy = LcpPolicy(config, rng=seeded(seed))
    verdicts = policy.judge_request(options)
    assert len(verdicts) == len(options)
    for option, verdict in zip(options, verdicts, strict=True):
        if verdict.judgement is Judgement.NAK:
            assert [s.type for s in verdict.suggestions] == [option.type]
        else:
            assert verdict.suggestions == ()
        if verdict.judgement is Judgement.ACK:
            assert option.type in (1, 2, 3, 5, 7, 8)
    # Feeding the same list to an automaton never raises either, and the policy survives
    # every Nak/Reject of its own request the list could be read as.
    fsm = listening(config, rng=seeded(seed))
    fsm.receive(conf(Code.CONFIGURE_REQUEST, 1, *options), 0)
    policy.apply_nak(options)
    policy.apply_reject(options)
    policy.request_acked(options)
    policy.peer_request_acked(options)
    policy.request_options()
