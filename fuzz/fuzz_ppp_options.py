"""Harness: LCP, IPCP and IPV6CP option judgement and the results they record
(``pyl2tp.ppp.lcp``, ``ipcp``, ``ipv6cp``), driven directly rather than through the automaton.

The automaton hands a policy every option list that decodes, from any state: a Configure-
Request to judge, the Nak, Reject or Ack of our own request. This harness calls those entry
points in any order with arbitrary options, so option types, lengths and values the automaton
would take many round trips to reach are exercised on every input.

Input: a policy selector octet, a configuration octet, an rng selector, then operations, each
an octet (which entry point) and an option list (count, then type, length and data of each).
Each entry point gets what the automaton would give it: any list to judge, Nak or Reject, but
the Ack of our own request to ``request_acked`` and only an all-Acked request to
``peer_request_acked``.

Contract: no entry point raises on any option list; ``judge_request`` gives one verdict per
option, and suggestions that encode; our requests encode; with authentication configured,
LCP's request always demands one of the configured methods (it must never offer a request the
peer could Ack into an unauthenticated link); the recorded results stay in range.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import IPv4Address

from fuzz.common import Reader, entry, instrumented, main

with instrumented(__name__):
    from pyl2tp.ppp.fsm import Judgement, RenegotiatingPolicy
    from pyl2tp.ppp.ipcp import IpcpConfig, IpcpPolicy
    from pyl2tp.ppp.ipv6cp import Ipv6cpConfig, Ipv6cpPolicy
    from pyl2tp.ppp.lcp import LcpConfig, LcpOption, LcpPolicy
    from pyl2tp.ppp.packet import ControlPacket, Option, encode_options
    from pyl2tp.ppp.protocols import AuthMethod

MAX_OPS = 64
_METHODS = ((), (AuthMethod.CHAP_MD5, AuthMethod.PAP), (AuthMethod.MSCHAP_V2,),
            tuple(AuthMethod))


def _rng(kind: int, seed: int) -> Callable[[int], bytes]:
    """Random, or the degenerate generators policies must survive (zeros, a constant)."""
    if kind % 3 == 0:
        return random.Random(seed).randbytes
    fill = b"\0" if kind % 3 == 1 else b"\x5a"
    return lambda n: fill * n


def _lcp(c: int, rng: Callable[[int], bytes]) -> LcpPolicy:
    return LcpPolicy(LcpConfig(mru=(1500, 1400, 64, 65535)[c & 3], auth=_METHODS[(c >> 2) & 3],
                               peer_auth=_METHODS[(c >> 4) & 3], min_mru=(576, 64)[(c >> 6) & 1],
                               magic=not c & 128), rng=rng, max_loopbacks=1 + (c & 3))


def _ipcp(c: int) -> IpcpPolicy:
    here, there = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    dns = ((), (IPv4Address("10.0.0.53"),), (IPv4Address("10.0.0.53"), IPv4Address("9.9.9.9")))
    return IpcpPolicy(IpcpConfig(local_address=here if c & 1 else None,
                                 peer_address=there if c & 2 else None,
                                 dns=dns[(c >> 2) % 3], request_dns=bool(c & 16)))


def _ipv6cp(c: int, rng: Callable[[int], bytes]) -> Ipv6cpPolicy:
    local = (None, 0, 1, (1 << 64) - 1)[c & 3]
    peer = (None, 2, None, 0x0200_0000_0000_0002)[(c >> 2) & 3]
    return Ipv6cpPolicy(Ipv6cpConfig(local_ifid=local, peer_ifid=peer), rng=rng,
                        max_loopbacks=1 + ((c >> 4) & 3))


def _options(r: Reader) -> list[Option]:
    return [Option(r.u8(), r.take(r.u8() % 40)) for _ in range(r.u8() % 6)]


def _check_lcp(policy: LcpPolicy) -> None:
    request = policy.request_options()
    if policy.config.auth:
        demanded = [o for o in request if o.type == LcpOption.AUTH_PROTOCOL]
        assert len(demanded) == 1, request
        assert AuthMethod.from_option_data(demanded[0].data) in policy.config.auth, request
    for mru in (policy.our_mru, policy.peer_mru):
        assert 0 <= mru <= 0xFFFF
    assert 0 <= policy.our_magic <= 0xFFFFFFFF and 0 <= policy.peer_magic <= 0xFFFFFFFF


def _check_ipv6cp(policy: Ipv6cpPolicy) -> None:
    for ifid in (policy.local_ifid, policy.peer_ifid):
        assert 0 <= ifid < 1 << 64
        policy.link_local(ifid)


@entry
def test_one_input(data: bytes) -> None:
    r = Reader(data)
    which, c = r.u8() % 3, r.u8()
    rng = _rng(r.u8(), c)
    policy: RenegotiatingPolicy
    if which == 0:
        policy = _lcp(c, rng)
    elif which == 1:
        policy = _ipcp(c)
    else:
        policy = _ipv6cp(c, rng)
    for _ in range(MAX_OPS):
        if not r.remaining:
            break
        op = r.u8() % 9
        options = _options(r)
        if op == 0:
            verdicts = policy.judge_request(options)
            assert len(verdicts) == len(options)
            for verdict in verdicts:
                assert isinstance(verdict.judgement, Judgement)
                encode_options(verdict.suggestions)
        elif op == 1:
            policy.apply_nak(options)
        elif op == 2:
            policy.apply_reject(options)
        elif op == 3:
            # An Ack repeats our request byte for byte (the automaton checks), so this is
            # the only option list request_acked ever sees.
            policy.request_acked(list(policy.request_options()))
        elif op == 4:
            # The automaton Acks (and records) a request only when every option is Acked.
            verdicts = policy.judge_request(options)
            if all(v.judgement is Judgement.ACK for v in verdicts):
                policy.peer_request_acked(options)
        elif op == 5:
            encode_options(policy.desired_options(options))
        elif op == 6:
            policy.this_layer_up()
        elif op == 7:
            (policy.this_layer_down, policy.this_layer_finished,
             policy.this_layer_started)[r.u8() % 3]()
        elif isinstance(policy, LcpPolicy):
            code = r.pick((9, 10, 11, 12, 13))
            packet = ControlPacket(code, r.u8(), r.small_chunk())
            if code in (9, 10, 11) and len(packet.data) >= 4:
                policy.link_maintenance(packet)
            elif code in (12, 13):
                policy.extension_packet(packet)
        ControlPacket.configure(1, 0, list(policy.request_options())).encode()
        if isinstance(policy, LcpPolicy):
            _check_lcp(policy)
        elif isinstance(policy, Ipv6cpPolicy):
            _check_ipv6cp(policy)


if __name__ == "__main__":
    main(test_one_input)
