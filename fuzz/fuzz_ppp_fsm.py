"""Harness: the RFC 1661 automaton (``pyl2tp.ppp.fsm``) under LCP, IPCP and IPV6CP policies,
fed packets, time and administrative events in any order.

Input: a policy selector octet, a configuration octet (as ``fuzz_ppp_options``), the
automaton's Max-Configure/Max-Terminate/Max-Failure octet, then operations until the input
ends: 0 a raw packet; 1 a packet built from code, identifier and data, whose identifier
can be taken from our last request (so replies match often enough to move the state);
2 the clock advances and the Restart timer fires at its deadlines; 3 lower layer up;
4 lower layer down; 5 Open; 6 Close; 7 the peer's LCP Protocol-Rejected this protocol;
8 an Echo- or Discard-Request of ours, or a Protocol-Reject we send.

Contract: ``receive`` and every other input never raise; whatever the automaton sends
decodes and is of its protocol; the Restart timer runs exactly in the states that have one.
"""

from __future__ import annotations

from fuzz.common import Reader, entry, instrumented, main

with instrumented(__name__):
    from fuzz.fuzz_ppp_options import _ipcp, _ipv6cp, _lcp, _rng  # imports the policies
    from pyl2tp.ppp.fsm import RESTART_TIMER_STATES, Automaton, NegotiationPolicy, State
    from pyl2tp.ppp.packet import ControlPacket

MAX_OPS = 100


@entry
def test_one_input(data: bytes) -> None:
    r = Reader(data)
    which, c, limits = r.u8() % 3, r.u8(), r.u8()
    rng = _rng(r.u8(), c)
    policy: NegotiationPolicy = (_lcp(c, rng), _ipcp(c), _ipv6cp(c, rng))[which]
    fsm = Automaton(policy, restart_interval=1.0, max_configure=1 + (limits & 7),
                    max_terminate=1 + ((limits >> 3) & 3), max_failure=(limits >> 5) & 7,
                    first_identifier=r.u8(), peer_mru=r.pick((1500, 4, 0, 64, 65535)))
    now = 0.0
    last_request = 0
    for _ in range(MAX_OPS):
        if not r.remaining:
            break
        op = r.u8() % 9
        if op == 0:
            fsm.receive(r.chunk(), now)
        elif op == 1:
            code, how = r.u8() % 16, r.u8()
            ident = last_request if how & 1 else r.u8()
            body = r.small_chunk()
            fsm.receive(ControlPacket(code, ident, body).encode() + (b"\0" * (how >> 5)), now)
        elif op == 2:
            until = now + (r.u8() % 32) * 0.25
            for _ in range(16):
                deadline = fsm.next_deadline()
                if deadline is None or deadline > until:
                    break
                now = deadline
                fsm.handle_timer(now)
            now = until
        elif op == 3:
            fsm.lower_up(now)
        elif op == 4:
            fsm.lower_down(now)
        elif op == 5:
            fsm.open(now)
        elif op == 6:
            fsm.close(now, r.small_chunk())
        elif op == 7:
            fsm.protocol_rejected(now)
        else:
            (fsm.send_echo_request, fsm.send_discard_request)[r.u8() & 1](r.small_chunk())
            fsm.send_protocol_reject(r.u16(), r.small_chunk())
        for out in fsm.packets_to_send():
            assert out.protocol == fsm.protocol
            packet = ControlPacket.decode(out.data)
            assert len(out.data) == packet.length
            if packet.code == 1:
                last_request = packet.identifier
        fsm.events()
        assert isinstance(fsm.state, State)
        if fsm.next_deadline() is not None:
            assert fsm.state in RESTART_TIMER_STATES, fsm.state


if __name__ == "__main__":
    main(test_one_input)
