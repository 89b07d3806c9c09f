"""The RFC 1661 option negotiation automaton and the PPP control packet codec.

Everything runs on a virtual clock: time is a float handed to each call, timers are fired by
calling ``handle_timer`` at ``next_deadline()``. The transition table is checked twice: as
data against a transcription of RFC 1661 §4.1 written out below in the RFC's own layout, and
as behaviour, by putting an automaton in every state, firing every event, and inferring the
actions from what came out (packets, layer signals, restart counter, timer).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.pppwire import Wire, conf, listen, negotiate, pkt, random_loss, sent

from pyl2tp.ppp.fsm import (
    ACK,
    REJECT,
    RESTART_TIMER_STATES,
    TRANSITIONS,
    Action,
    Automaton,
    Event,
    LayerEvent,
    NegotiationPolicy,
    OptionVerdict,
    State,
    Transition,
    nak,
)
from pyl2tp.ppp.packet import (
    LCP_CODES,
    NCP_CODES,
    PROTO_IPCP,
    PROTO_IPV6CP,
    PROTO_LCP,
    Code,
    ControlPacket,
    Option,
    PppParseError,
    codes_for,
    decode_options,
    encode_options,
)

# ---------------------------------------------------------------------------------------------
# RFC 1661 §4.1, transcribed by hand from rfc1661.txt (footnote letters kept as written)

RFC1661_TABLE = """
      |    0         1         2         3         4         5
Events| Initial   Starting  Closed    Stopped   Closing   Stopping
------+-----------------------------------------------------------
 Up   |    2     irc,scr/6     -         -         -         -
 Down |    -         -         0       tls/1       0         1
 Open |  tls/1       1     irc,scr/6     3r        5r        5r
 Close|    0       tlf/0       2         2         4         4
  TO+ |    -         -         -         -       str/4     str/5
  TO- |    -         -         -         -       tlf/2     tlf/3
 RCR+ |    -         -       sta/2 irc,scr,sca/8   4         5
 RCR- |    -         -       sta/2 irc,scr,scn/6   4         5
 RCA  |    -         -       sta/2     sta/3       4         5
 RCN  |    -         -       sta/2     sta/3       4         5
 RTR  |    -         -       sta/2     sta/3     sta/4     sta/5
 RTA  |    -         -         2         3       tlf/2     tlf/3
 RUC  |    -         -       scj/2     scj/3     scj/4     scj/5
 RXJ+ |    -         -         2         3         4         5
 RXJ- |    -         -       tlf/2     tlf/3     tlf/2     tlf/3
 RXR  |    -         -         2         3         4         5

      |    6         7         8           9
Events| Req-Sent  Ack-Rcvd  Ack-Sent    Opened
------+-----------------------------------------
 Up   |    -         -         -           -
 Down |    1         1         1         tld/1
 Open |    6         7         8           9r
 Close|irc,str/4 irc,str/4 irc,str/4 tld,irc,str/4
  TO+ |  scr/6     scr/6     scr/8         -
  TO- |  tlf/3p    tlf/3p    tlf/3p        -
 RCR+ |  sca/8   sca,tlu/9   sca/8   tld,scr,sca/8
 RCR- |  scn/6     scn/7     scn/6   tld,scr,scn/6
 RCA  |  irc/7     scr/6x  irc,tlu/9   tld,scr/6x
 RCN  |irc,scr/6   scr/6x  irc,scr/8   tld,scr/6x
 RTR  |  sta/6     sta/6     sta/6   tld,zrc,sta/5
 RTA  |    6         6         8       tld,scr/6
 RUC  |  scj/6     scj/7     scj/8       scj/9
 RXJ+ |    6         6         8           9
 RXJ- |  tlf/3     tlf/3     tlf/3   tld,irc,str/5
 RXR  |    6         7         8         ser/9
"""

Cell = tuple[tuple[str, ...], int] | None


def parse_rfc_table(text: str) -> dict[tuple[int, str], Cell]:
    """``(state number, event name) -> (action names, next state)`` or None for "-"."""
    table: dict[tuple[int, str], Cell] = {}
    columns: list[int] = []
    for line in text.splitlines():
        if "|" not in line or line.startswith("---"):
            continue
        label, _, rest = line.partition("|")
        label = label.strip()
        cells = rest.split()
        if not label:
            columns = [int(c) for c in cells]
            continue
        if label == "Events":
            continue
        assert len(cells) == len(columns), line
        for state, cell in zip(columns, cells, strict=True):
            if cell == "-":
                table[(state, label)] = None
                continue
            actions, _, target = cell.rpartition("/")
            table[(state, label)] = (
                tuple(actions.split(",")) if actions else (),
                int(target.rstrip("rpx")),
            )
    return table


RFC_CELLS = parse_rfc_table(RFC1661_TABLE)


def test_transcription_is_complete() -> None:
    assert len(RFC_CELLS) == 16 * 10
    assert {event for _, event in RFC_CELLS} == {e.value for e in Event}


def test_transition_table_matches_rfc1661() -> None:
    expected = {
        (State(s), Event(e)): Transition(tuple(Action(a) for a in cell[0]), State(cell[1]))
        for (s, e), cell in RFC_CELLS.items()
        if cell is not None
    }
    assert expected == TRANSITIONS
    illegal = {(State(s), Event(e)) for (s, e), cell in RFC_CELLS.items() if cell is None}
    assert illegal.isdisjoint(TRANSITIONS)
    assert len(illegal) + len(TRANSITIONS) == 160


def test_restart_timer_runs_in_states_4_to_8() -> None:
    assert frozenset(range(4, 9)) == RESTART_TIMER_STATES


# ---------------------------------------------------------------------------------------------
# A toy protocol: option 1 SPEED (u16, the rate the sender wants to receive at), option 2 FLAG
# (boolean). Each side has a wanted value, a range it accepts from the peer and a suggestion.

SPEED, FLAG = 1, 2
ANY = range(0, 0x10000)


class ToyPolicy(NegotiationPolicy):
    protocol = PROTO_LCP

    def __init__(
        self,
        *,
        want: int | None = 100,
        adoptable: Sequence[int] | range = ANY,
        accept: Sequence[int] | range = ANY,
        suggest: int = 100,
        flag: bool = False,
        accept_flag: bool = True,
        demand: int | None = None,
        magic: int = 0,
        protocol: int = PROTO_LCP,
    ) -> None:
        self.protocol = protocol
        self.want = want
        self.adoptable = adoptable
        self.accept = accept
        self.suggest = suggest
        self.flag = flag
        self.accept_flag = accept_flag
        self.demand = demand
        self.magic = magic
        self.log: list[str] = []
        self.ours: list[Option] | None = None
        self.theirs: list[Option] | None = None
        self.maintenance: list[ControlPacket] = []

    def request_options(self) -> Sequence[Option]:
        options = []
        if self.want is not None:
            options.append(Option.u16(SPEED, self.want))
        if self.flag:
            options.append(Option(FLAG))
        return options

    def apply_nak(self, options: Sequence[Option]) -> None:
        self.log.append("nak")
        for option in options:
            if option.type == SPEED and len(option.data) == 2 and option.as_int() in self.adoptable:
                self.want = option.as_int()

    def apply_reject(self, options: Sequence[Option]) -> None:
        self.log.append("reject")
        for option in options:
            if option.type == SPEED:
                self.want = None
            elif option.type == FLAG:
                self.flag = False

    def request_acked(self, options: Sequence[Option]) -> None:
        self.ours = list(options)

    def judge_option(self, option: Option) -> OptionVerdict:
        if option.type == SPEED:
            if len(option.data) == 2 and option.as_int() in self.accept:
                return ACK
            return nak(Option.u16(SPEED, self.suggest))
        if option.type == FLAG and self.accept_flag and not option.data:
            return ACK
        return REJECT

    def desired_options(self, requested: Sequence[Option]) -> Sequence[Option]:
        if self.demand is not None and all(o.type != SPEED for o in requested):
            return [Option.u16(SPEED, self.demand)]
        return ()

    def peer_request_acked(self, options: Sequence[Option]) -> None:
        self.theirs = list(options)

    def this_layer_up(self) -> None:
        self.log.append("tlu")

    def this_layer_down(self) -> None:
        self.log.append("tld")

    def this_layer_started(self) -> None:
        self.log.append("tls")

    def this_layer_finished(self) -> None:
        self.log.append("tlf")

    def code_rejected(self, code: int) -> None:
        self.log.append(f"code-rejected {code}")

    def protocol_rejected(self, protocol: int) -> None:
        self.log.append(f"protocol-rejected {protocol:#06x}")

    def magic_number(self) -> int:
        return self.magic

    def link_maintenance(self, packet: ControlPacket) -> None:
        self.maintenance.append(packet)


def codes(packets: Sequence[ControlPacket]) -> list[int]:
    return [p.code for p in packets]


# ---------------------------------------------------------------------------------------------
# Every cell, as behaviour

NOW = 100.0
FORCED_DEADLINE = NOW + 1.5  # distinct from NOW + restart_interval: restarts are visible
FORCED_COUNT = 5  # distinct from Max-Configure (10) and Max-Terminate (2), and their -1
OUR_REQUEST = (Option.u16(SPEED, 100),)
REQ_ID = 42


def forced(state: State, *, count: int = FORCED_COUNT, timer: bool = False) -> Automaton:
    """An automaton put straight into ``state`` with a pending, unanswered request id 42.

    Reaching every state by real traffic cannot make every cell fire (RCA in Ack-Rcvd needs
    a second valid Ack, which identifier matching forbids), so the test sets the fields.
    """
    fsm = Automaton(ToyPolicy(want=100, accept=range(50, 200)))
    fsm._state = state
    fsm._restart_count = count
    fsm._deadline = FORCED_DEADLINE if (timer or state in RESTART_TIMER_STATES) else None
    fsm._req_id = REQ_ID
    fsm._req_options = OUR_REQUEST
    fsm._req_data = encode_options(OUR_REQUEST)
    fsm._req_answered = False
    fsm._next_id = 200
    return fsm


def fire(fsm: Automaton, event: Event) -> float:
    """Cause ``event`` the way the world would; returns the time it happened."""
    if event is Event.UP:
        fsm.lower_up(NOW)
    elif event is Event.DOWN:
        fsm.lower_down(NOW)
    elif event is Event.OPEN:
        fsm.open(NOW)
    elif event is Event.CLOSE:
        fsm.close(NOW)
    elif event in (Event.TO_PLUS, Event.TO_MINUS):
        fsm.handle_timer(FORCED_DEADLINE)
        return FORCED_DEADLINE
    else:
        data = {
            Event.RCR_PLUS: conf(Code.CONFIGURE_REQUEST, 7, Option.u16(SPEED, 120)),
            Event.RCR_MINUS: conf(Code.CONFIGURE_REQUEST, 7, Option.u16(SPEED, 9999)),
            Event.RCA: conf(Code.CONFIGURE_ACK, REQ_ID, *OUR_REQUEST),
            Event.RCN: conf(Code.CONFIGURE_NAK, REQ_ID, Option.u16(SPEED, 120)),
            Event.RTR: pkt(Code.TERMINATE_REQUEST, 8),
            Event.RTA: pkt(Code.TERMINATE_ACK, 9),
            Event.RUC: pkt(0x42, 10, b"??"),
            Event.RXJ_PLUS: pkt(Code.CODE_REJECT, 11, pkt(Code.ECHO_REQUEST, 1, b"\0" * 4)),
            Event.RXJ_MINUS: pkt(Code.CODE_REJECT, 12, pkt(Code.CONFIGURE_REQUEST, 1)),
            Event.RXR: pkt(Code.ECHO_REQUEST, 13, b"\x00\x00\x00\x00ping"),
        }[event]
        fsm.receive(data, NOW)
    return NOW


SEND_ACTIONS = {
    Code.CONFIGURE_REQUEST: Action.SCR,
    Code.CONFIGURE_ACK: Action.SCA,
    Code.CONFIGURE_NAK: Action.SCN,
    Code.CONFIGURE_REJECT: Action.SCN,
    Code.TERMINATE_REQUEST: Action.STR,
    Code.TERMINATE_ACK: Action.STA,
    Code.CODE_REJECT: Action.SCJ,
    Code.ECHO_REPLY: Action.SER,
}
LAYER_ACTIONS = {
    LayerEvent.UP: Action.TLU,
    LayerEvent.DOWN: Action.TLD,
    LayerEvent.STARTED: Action.TLS,
    LayerEvent.FINISHED: Action.TLF,
}


def observed_actions(fsm: Automaton, count_before: int) -> list[Action]:
    """The actions an outside observer can prove happened."""
    actions = [SEND_ACTIONS[Code(p.code)] for p in sent(fsm)]
    actions += [LAYER_ACTIONS[e] for e in fsm.events()]
    transmissions = actions.count(Action.SCR) + actions.count(Action.STR)
    after = fsm.restart_counter
    initial = fsm.max_terminate if Action.STR in actions else fsm.max_configure
    if after == initial - transmissions:
        actions.append(Action.IRC)
    elif after == 0 and count_before > 0 and transmissions == 0:
        actions.append(Action.ZRC)
    else:
        assert after == max(0, count_before - transmissions), "restart counter unexplained"
    return actions


CELLS = [(state, event) for state in State for event in Event]


@pytest.mark.parametrize(("state", "event"), CELLS, ids=[f"{s.value}-{e.value}" for s, e in CELLS])
def test_every_cell_behaves_as_rfc1661_says(state: State, event: Event) -> None:
    timeout = event in (Event.TO_PLUS, Event.TO_MINUS)
    count = 0 if event is Event.TO_MINUS else FORCED_COUNT
    fsm = forced(state, count=count, timer=timeout)
    deadline_before = fsm.next_deadline()
    counters_before = (fsm.counters.illegal_events, fsm.counters.discarded_wrong_state)
    at = fire(fsm, event)
    expected = RFC_CELLS[(state.value, event.value)]

    if expected is None:
        assert fsm.state is state
        assert fsm.packets_to_send() == [] and fsm.events() == []
        assert fsm.counters.illegal_events == counters_before[0] + 1
        is_packet = event not in (Event.UP, Event.DOWN, Event.OPEN, Event.CLOSE) and not timeout
        assert fsm.counters.discarded_wrong_state == counters_before[1] + int(is_packet)
        return

    expected_actions, expected_state = expected
    actions = observed_actions(fsm, count)
    assert sorted(a.value for a in actions) == sorted(expected_actions)
    assert fsm.state.value == expected_state
    assert fsm.counters.illegal_events == counters_before[0]

    # Restart timer: runs exactly in states 4-8, (re)started only by scr, str and zrc.
    deadline = fsm.next_deadline()
    if fsm.state in RESTART_TIMER_STATES:
        if {"scr", "str", "zrc"} & set(expected_actions):
            assert deadline == at + fsm.restart_interval
        else:
            assert deadline == deadline_before
    else:
        assert deadline is None


# ---------------------------------------------------------------------------------------------
# Two automata back to back


def opened_pair() -> tuple[Wire, ToyPolicy, ToyPolicy]:
    pa, pb = ToyPolicy(want=100), ToyPolicy(want=100)
    link = negotiate(pa, pb, until=60)
    assert link.opened()
    return link, pa, pb


def test_back_to_back_opened_without_naks() -> None:
    link, pa, pb = opened_pair()
    assert pa.ours == pa.theirs == pb.ours == pb.theirs == [Option.u16(SPEED, 100)]
    assert pa.log == pb.log == ["tlu"]
    assert link.a.next_deadline() is None and link.b.next_deadline() is None
    assert link.a.events() == link.b.events() == [LayerEvent.UP]


def test_nak_loops_converge_on_each_sides_preferences() -> None:
    pa = ToyPolicy(want=50, accept=range(200, 301), suggest=250)
    pb = ToyPolicy(want=500, accept=range(80, 121), suggest=100)
    link = negotiate(pa, pb, until=60)
    assert link.opened()
    assert pa.ours == pb.theirs == [Option.u16(SPEED, 100)]
    assert pb.ours == pa.theirs == [Option.u16(SPEED, 250)]
    assert len(link.sent("a", Code.CONFIGURE_NAK)) == 1
    assert len(link.sent("b", Code.CONFIGURE_NAK)) == 1
    assert link.now == 0.0  # no retransmission was needed
    # Every Configure-Request carried a fresh identifier.
    ids = [p.identifier for p in link.sent("a", Code.CONFIGURE_REQUEST)]
    assert len(ids) == len(set(ids)) == 2


@pytest.mark.parametrize("max_failure", [5, 2, 0])
def test_max_failure_turns_naks_into_rejects(max_failure: int) -> None:
    stubborn = ToyPolicy(want=50, adoptable=[50])  # will not move from 50
    strict = ToyPolicy(want=100, accept=range(80, 121), suggest=100)
    link = Wire(Automaton(stubborn), Automaton(strict, max_failure=max_failure))
    link.start(until=60)
    naks = link.sent("b", Code.CONFIGURE_NAK)
    rejects = link.sent("b", Code.CONFIGURE_REJECT)
    assert len(naks) == max_failure
    assert [r.options() for r in rejects] == [(Option.u16(SPEED, 50),)]
    # The stubborn side can live without SPEED: it drops it and the link opens.
    assert stubborn.want is None and stubborn.ours == []
    assert link.opened()


def test_desired_options_are_appended_to_naks_until_max_failure() -> None:
    quiet = ToyPolicy(want=None, adoptable=[])  # never requests SPEED, ignores prompts
    demanding = ToyPolicy(want=100, demand=300)
    link = negotiate(quiet, demanding, until=60)
    naks = link.sent("b", Code.CONFIGURE_NAK)
    assert len(naks) == 5
    assert all(n.options() == (Option.u16(SPEED, 300),) for n in naks)
    assert link.sent("b", Code.CONFIGURE_REJECT) == []  # nothing to reject: just stop asking
    assert link.opened() and demanding.theirs == []


def test_reject_of_an_option_we_can_live_without() -> None:
    wants_flag = ToyPolicy(want=100, flag=True)
    no_flags = ToyPolicy(want=100, accept_flag=False)
    link = negotiate(wants_flag, no_flags, until=60)
    rejects = link.sent("b", Code.CONFIGURE_REJECT)
    assert [r.options() for r in rejects] == [(Option(FLAG),)]
    assert wants_flag.log[:1] == ["reject"] and not wants_flag.flag
    assert wants_flag.ours == [Option.u16(SPEED, 100)]
    assert link.opened()


def test_unknown_options_are_rejected_unmodified_and_in_order() -> None:
    fsm = listen(ToyPolicy())
    odd = (Option(77, b"x"), Option.u16(SPEED, 120), Option(FLAG, b"\x01"), Option(99))
    fsm.receive(conf(Code.CONFIGURE_REQUEST, 5, *odd), 0)
    [reply] = sent(fsm)
    assert (reply.code, reply.identifier) == (Code.CONFIGURE_REJECT, 5)
    assert reply.options() == (odd[0], odd[2], odd[3])
    assert fsm.state is State.REQ_SENT


def test_restart_timer_retransmits_with_new_ids_then_gives_up() -> None:
    policy = ToyPolicy()
    fsm = Automaton(policy)
    fsm.lower_up(0.0)
    fsm.open(0.0)
    times: list[float] = [0.0]
    requests = sent(fsm)
    while (deadline := fsm.next_deadline()) is not None:
        fsm.handle_timer(deadline - 0.001)  # early: nothing happens
        assert fsm.packets_to_send() == []
        fsm.handle_timer(deadline)
        for p in sent(fsm):
            requests.append(p)
            times.append(deadline)
    assert codes(requests) == [Code.CONFIGURE_REQUEST] * 10
    assert times == [3.0 * i for i in range(10)]
    assert len({p.identifier for p in requests}) == 10
    assert fsm.state is State.STOPPED
    assert fsm.events() == [LayerEvent.FINISHED] and policy.log == ["tlf"]
    assert (fsm.counters.restarts, fsm.counters.timeouts) == (9, 1)
    assert fsm.counters.tx == {Code.CONFIGURE_REQUEST: 10}


def test_restart_parameters_are_configurable() -> None:
    fsm = Automaton(ToyPolicy(), restart_interval=0.5, max_configure=3, first_identifier=255)
    fsm.lower_up(0.0)
    fsm.open(0.0)
    while (deadline := fsm.next_deadline()) is not None:
        fsm.handle_timer(deadline)
    assert fsm.counters.tx[Code.CONFIGURE_REQUEST] == 3
    assert fsm.counters.timeouts == 1
    assert fsm.state is State.STOPPED


@pytest.mark.parametrize(
    "kwargs",
    [{"restart_interval": 0}, {"max_configure": 0}, {"max_terminate": 0}, {"max_failure": -1}],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Automaton(ToyPolicy(), **kwargs)  # type: ignore[arg-type]


def test_a_valid_reply_resets_the_restart_counter() -> None:
    fsm = Automaton(ToyPolicy(adoptable=[]))
    fsm.lower_up(0.0)
    fsm.open(0.0)
    now = 0.0
    for _ in range(30):  # far beyond Max-Configure: every Nak is a valid reply (irc)
        [req] = sent(fsm)
        fsm.receive(conf(Code.CONFIGURE_NAK, req.identifier, Option.u16(SPEED, 7)), now)
        now += 0.1
    assert fsm.state is State.REQ_SENT
    assert fsm.restart_counter == fsm.max_configure - 1


@pytest.mark.parametrize("initiator", ["a", "b"])
def test_terminate_handshake_from_either_side(initiator: str) -> None:
    link, pa, pb = opened_pair()
    closer, other = (link.a, link.b) if initiator == "a" else (link.b, link.a)
    closer_policy, other_policy = (pa, pb) if initiator == "a" else (pb, pa)
    link.now = 10.0
    closer.close(link.now, "admin down")
    link.pump()
    [treq] = link.sent(initiator, Code.TERMINATE_REQUEST)
    assert treq.data == b"admin down"
    [tack] = [p for _, p in link.trace if p.code == Code.TERMINATE_ACK]
    assert tack.identifier == treq.identifier
    assert closer.state is State.CLOSED
    assert closer_policy.log == ["tlu", "tld", "tlf"]
    # The peer waits one restart period in Stopping before finishing (zrc, §3.7).
    assert other.state is State.STOPPING
    assert other_policy.log == ["tlu", "tld"]
    assert other.next_deadline() == 10.0 + 3.0
    link.run(60)
    assert other.state is State.STOPPED and other_policy.log[-1] == "tlf"
    assert closer.state is State.CLOSED
    # A new Open renegotiates without any help from the peer's administrator.
    closer.open(link.now)
    link.run(120)
    assert closer.is_opened and other.is_opened


def test_close_gives_up_after_max_terminate() -> None:
    link, pa, _ = opened_pair()
    link.cut = True
    link.now = 5.0
    link.a.close(link.now, b"bye")
    link.run(60)
    requests = link.sent("a", Code.TERMINATE_REQUEST)
    assert len(requests) == 2 and {r.data for r in requests} == {b"bye"}
    assert len({r.identifier for r in requests}) == 2
    assert link.a.state is State.CLOSED and pa.log == ["tlu", "tld", "tlf"]
    assert link.now == 5.0 + 2 * 3.0


def test_lower_layer_down_and_up_renegotiates() -> None:
    link, pa, pb = opened_pair()
    link.now = 20.0
    link.a.lower_down(link.now)
    assert link.a.state is State.STARTING and link.a.packets_to_send() == []
    assert pa.log == ["tlu", "tld"]
    assert link.a.next_deadline() is None
    link.a.lower_up(link.now)
    link.run(120)
    assert link.opened()
    assert pa.log == ["tlu", "tld", "tlu"]
    assert pb.log == ["tlu", "tld", "tlu"]  # Configure-Request in Opened: renegotiate


def test_down_and_close_from_starting_and_stopped() -> None:
    fsm = Automaton(policy := ToyPolicy())
    fsm.open(0)
    assert fsm.state is State.STARTING and policy.log == ["tls"]
    fsm.close(0)
    assert fsm.state is State.INITIAL and policy.log == ["tls", "tlf"]
    fsm.lower_up(0)
    fsm.lower_up(0)  # illegal in Closed: counted, ignored
    assert fsm.state is State.CLOSED and fsm.counters.illegal_events == 1


@pytest.mark.parametrize("seed", range(12))
def test_lossy_link_still_opens_both_sides(seed: int) -> None:
    link, pa, pb = lossy_negotiation(seed)
    link.run(600)
    assert link.dropped > 0
    assert link.opened(), (link.a.state, link.b.state)
    assert_negotiated(link, pa, pb)


def lossy_negotiation(seed: int) -> tuple[Wire, ToyPolicy, ToyPolicy]:
    """Both sides Nak once and one Rejects FLAG, over a link that drops 30% of packets."""
    pa = ToyPolicy(want=50, accept=range(200, 301), suggest=250, flag=True)
    pb = ToyPolicy(want=500, accept=range(80, 121), suggest=100, accept_flag=False)
    link = negotiate(pa, pb, drop=random_loss(0.3, seed), until=None)
    return link, pa, pb


def assert_negotiated(link: Wire, pa: ToyPolicy, pb: ToyPolicy) -> None:
    assert pa.ours == pb.theirs == [Option.u16(SPEED, 100)]
    assert pb.ours == pa.theirs == [Option.u16(SPEED, 250)]
    assert link.a.next_deadline() is None and link.b.next_deadline() is None


@pytest.mark.parametrize("seed", [165, 385])
def test_lossy_link_recovers_through_the_lower_layer_after_giving_up(seed: int) -> None:
    """With these seeds ten Configure-Requests in a row go unanswered, so one side gives up
    (TO-, tlf, Stopped) while the other is Opened: a dead end by design, since tlf tells the
    lower layer it is no longer needed. Modelling that (the L2TP session is dropped and
    brought back: Down then Up on both) renegotiates the link."""
    link, pa, pb = lossy_negotiation(seed)
    link.run(600)
    stopped = [fsm for fsm in (link.a, link.b) if fsm.state is State.STOPPED]
    assert stopped and stopped[0].counters.timeouts == 1
    for _ in range(10):
        if link.opened():
            break
        link.now += 1.0
        for fsm in (link.a, link.b):
            fsm.lower_down(link.now)
            fsm.lower_up(link.now)
        link.run(link.now + 600)
    assert link.opened()
    assert_negotiated(link, pa, pb)


# ---------------------------------------------------------------------------------------------
# Code-Reject, Protocol-Reject, unknown codes, echo


def opened_single(policy: ToyPolicy | None = None) -> Automaton:
    link = negotiate(policy or ToyPolicy(), ToyPolicy(), until=None)
    assert link.a.is_opened
    link.a.events()
    return link.a


def test_code_reject_of_an_extension_code_is_rxj_plus() -> None:
    fsm = opened_single(policy := ToyPolicy())
    fsm.receive(pkt(Code.CODE_REJECT, 1, pkt(Code.ECHO_REQUEST, 3, b"\0\0\0\0")), 1.0)
    assert fsm.is_opened and fsm.packets_to_send() == [] and fsm.events() == []
    assert policy.log[-1] == "code-rejected 9"


def test_code_reject_of_configure_request_is_rxj_minus() -> None:
    fsm = opened_single(policy := ToyPolicy())
    # Truncated copies are fine: only the rejected code octet is needed.
    fsm.receive(pkt(Code.CODE_REJECT, 1, b"\x01"), 1.0)
    assert fsm.state is State.STOPPING
    assert codes(sent(fsm)) == [Code.TERMINATE_REQUEST]
    assert policy.log[-1] == "tld"
    while (deadline := fsm.next_deadline()) is not None:
        fsm.handle_timer(deadline)
    assert fsm.state is State.STOPPED and policy.log[-1] == "tlf"
    assert fsm.counters.tx[Code.TERMINATE_REQUEST] == 2


def test_code_reject_while_negotiating_stops() -> None:
    fsm = Automaton(policy := ToyPolicy())
    fsm.lower_up(0)
    fsm.open(0)
    fsm.receive(pkt(Code.CODE_REJECT, 1, pkt(Code.CONFIGURE_ACK, 1)), 0)
    assert fsm.state is State.STOPPED and policy.log == ["tlf"]
    assert fsm.next_deadline() is None


def test_custom_catastrophic_codes() -> None:
    class Picky(ToyPolicy):
        def is_catastrophic_code(self, code: int) -> bool:
            return code == Code.ECHO_REQUEST

    fsm = opened_single(Picky())
    fsm.receive(pkt(Code.CODE_REJECT, 1, b"\x09"), 1.0)
    assert fsm.state is State.STOPPING


def test_unknown_code_gets_a_code_reject_truncated_to_the_peer_mru() -> None:
    fsm = opened_single()
    fsm.peer_mru = 64
    sent(fsm)
    weird = pkt(0xEE, 77, bytes(range(200))) + b"pad"
    fsm.receive(weird, 1.0)
    [rej] = sent(fsm)
    assert rej.code == Code.CODE_REJECT and rej.length == 64
    assert rej.data == weird[:60]
    assert fsm.is_opened
    fsm.receive(pkt(0xEE, 78), 1.0)
    [rej2] = sent(fsm)
    assert rej2.identifier != rej.identifier  # a new identifier for each Code-Reject


def test_ncp_code_rejects_lcp_only_codes() -> None:
    fsm = opened_single(ToyPolicy(protocol=PROTO_IPCP))
    sent(fsm)
    for code in (Code.PROTOCOL_REJECT, Code.ECHO_REQUEST, Code.DISCARD_REQUEST, 12):
        fsm.receive(pkt(code, 3, b"\0" * 8), 1.0)
        [rej] = sent(fsm)
        assert rej.code == Code.CODE_REJECT and rej.data[0] == code
    assert fsm.send_echo_request() is None
    assert fsm.send_protocol_reject(0x1234, b"x") is False


def test_extension_codes_go_to_the_policy() -> None:
    seen: list[ControlPacket] = []

    class WithIdentification(ToyPolicy):
        extension_codes = frozenset({Code.IDENTIFICATION})

        def extension_packet(self, packet: ControlPacket) -> None:
            seen.append(packet)

    fsm = opened_single(WithIdentification())
    sent(fsm)
    fsm.receive(pkt(Code.IDENTIFICATION, 5, b"\0\0\0\0hello"), 1.0)
    assert fsm.packets_to_send() == [] and [p.code for p in seen] == [12]


def test_protocol_reject() -> None:
    fsm = opened_single(policy := ToyPolicy())
    sent(fsm)
    fsm.receive(pkt(Code.PROTOCOL_REJECT, 1, struct.pack(">H", PROTO_IPCP) + b"\x01\x02"), 1.0)
    assert fsm.is_opened and policy.log[-1] == "protocol-rejected 0x8021"
    fsm.receive(pkt(Code.PROTOCOL_REJECT, 2, struct.pack(">H", PROTO_LCP)), 1.0)
    assert fsm.state is State.STOPPING  # RXJ-: tld, irc, str
    assert codes(sent(fsm)) == [Code.TERMINATE_REQUEST]


def test_protocol_reject_outside_opened_is_discarded() -> None:
    fsm = listen(ToyPolicy())
    fsm.receive(pkt(Code.PROTOCOL_REJECT, 1, struct.pack(">H", PROTO_LCP)), 0)
    assert fsm.state is State.REQ_SENT and fsm.packets_to_send() == []
    assert fsm.counters.discarded_wrong_state == 1


def test_send_protocol_reject_only_when_opened() -> None:
    fsm = Automaton(ToyPolicy())
    assert fsm.send_protocol_reject(0x0057, b"ipv6") is False
    fsm = opened_single()
    fsm.peer_mru = 10
    sent(fsm)
    assert fsm.send_protocol_reject(0x0057, b"0123456789")
    [rej] = sent(fsm)
    assert rej.rejected_protocol() == (0x0057, b"0123")


def test_echo_request_answered_only_in_opened() -> None:
    fsm = listen(policy := ToyPolicy(magic=0xDEADBEEF))
    echo = pkt(Code.ECHO_REQUEST, 9, b"\x01\x02\x03\x04data")
    fsm.receive(echo, 0)
    assert fsm.packets_to_send() == [] and fsm.state is State.REQ_SENT
    assert fsm.send_echo_request() is None

    fsm = opened_single(policy)
    sent(fsm)
    fsm.receive(echo, 1.0)
    [reply] = sent(fsm)
    assert (reply.code, reply.identifier) == (Code.ECHO_REPLY, 9)
    assert reply.magic_and_data() == (0xDEADBEEF, b"data")
    fsm.receive(pkt(Code.ECHO_REPLY, 9, b"\0\0\0\0"), 1.0)
    fsm.receive(pkt(Code.DISCARD_REQUEST, 4, b"\0\0\0\0junk"), 1.0)
    assert fsm.packets_to_send() == [] and fsm.is_opened
    assert [p.code for p in policy.maintenance] == [9, 10, 11]
    ident = fsm.send_echo_request(b"keepalive")
    assert ident is not None
    [req] = sent(fsm)
    assert req.identifier == ident and req.magic_and_data() == (0xDEADBEEF, b"keepalive")
    assert fsm.send_discard_request(b"x") is not None


# ---------------------------------------------------------------------------------------------
# Identifier matching and reply validation


def req_sent() -> tuple[Automaton, ControlPacket]:
    fsm = Automaton(ToyPolicy(want=100, flag=True))
    fsm.lower_up(0)
    fsm.open(0)
    [req] = sent(fsm)
    return fsm, req


def test_reply_with_the_wrong_identifier_is_discarded() -> None:
    fsm, req = req_sent()
    for code in (Code.CONFIGURE_ACK, Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT):
        fsm.receive(pkt(code, (req.identifier + 1) & 0xFF, req.data), 0)
    assert fsm.state is State.REQ_SENT and fsm.packets_to_send() == []
    assert fsm.counters.discarded_bad_id == 3


def test_ack_must_repeat_the_request_exactly() -> None:
    fsm, req = req_sent()
    reordered = encode_options(tuple(reversed(req.options())))
    fsm.receive(pkt(Code.CONFIGURE_ACK, req.identifier, reordered), 0)
    fsm.receive(pkt(Code.CONFIGURE_ACK, req.identifier, req.data[:4]), 0)
    assert fsm.state is State.REQ_SENT and fsm.counters.discarded_mismatch == 2
    # An extra octet inside Length is a broken option, not padding: the packet is malformed.
    fsm.receive(pkt(Code.CONFIGURE_ACK, req.identifier, req.data + b"\0"), 0)
    assert fsm.counters.discarded_malformed == 1
    # Octets after Length are padding and do not spoil an exact Ack.
    fsm.receive(pkt(Code.CONFIGURE_ACK, req.identifier, req.data) + b"\0\0pad", 0)
    assert fsm.state is State.ACK_RCVD


def test_reject_must_be_a_subset_of_the_request() -> None:
    fsm, req = req_sent()
    fsm.receive(conf(Code.CONFIGURE_REJECT, req.identifier, Option.u16(SPEED, 101)), 0)
    assert fsm.counters.discarded_mismatch == 1 and fsm.state is State.REQ_SENT
    fsm.receive(conf(Code.CONFIGURE_REJECT, req.identifier, Option(FLAG)), 0)
    [req2] = sent(fsm)
    assert req2.options() == (Option.u16(SPEED, 100),)
    assert req2.identifier != req.identifier


def test_duplicate_ack_does_not_bounce_an_opened_link() -> None:
    fsm = Automaton(ToyPolicy())
    fsm.lower_up(0)
    fsm.open(0)
    [req] = sent(fsm)
    fsm.receive(conf(Code.CONFIGURE_REQUEST, 1, Option.u16(SPEED, 100)), 0)
    fsm.receive(pkt(Code.CONFIGURE_ACK, req.identifier, req.data), 0)
    assert fsm.is_opened
    sent(fsm)
    for code in (Code.CONFIGURE_ACK, Code.CONFIGURE_NAK):
        fsm.receive(pkt(code, req.identifier, req.data), 0)
    assert fsm.is_opened and fsm.packets_to_send() == []
    assert fsm.counters.discarded_bad_id == 2


def test_stray_replies_in_closed_get_a_terminate_ack() -> None:
    fsm = Automaton(ToyPolicy())
    fsm.lower_up(0)
    fsm.receive(conf(Code.CONFIGURE_ACK, 33, Option.u16(SPEED, 1)), 0)
    fsm.receive(conf(Code.CONFIGURE_REQUEST, 34, Option.u16(SPEED, 1)), 0)
    fsm.receive(pkt(Code.TERMINATE_ACK, 35), 0)  # silently ignored: avoids a loop
    assert [(p.code, p.identifier) for p in sent(fsm)] == [(6, 33), (6, 34)]
    assert fsm.state is State.CLOSED


def test_padding_after_length_is_ignored_and_not_acked() -> None:
    fsm, _ = req_sent()
    request = conf(Code.CONFIGURE_REQUEST, 3, Option.u16(SPEED, 120)) + b"\xff" * 7
    fsm.receive(request, 0)
    [ack] = sent(fsm)
    assert ack.encode() == conf(Code.CONFIGURE_ACK, 3, Option.u16(SPEED, 120))
    assert fsm.state is State.ACK_SENT


def test_reentrant_callbacks_run_after_the_transition() -> None:
    class ClosesOnUp(ToyPolicy):
        fsm: Automaton

        def this_layer_up(self) -> None:
            super().this_layer_up()
            assert self.fsm.state is State.OPENED
            self.fsm.close(0, "no thanks")
            assert self.fsm.state is State.OPENED  # deferred

    policy = ClosesOnUp()
    fsm = Automaton(policy)
    policy.fsm = fsm
    fsm.lower_up(0)
    fsm.open(0)
    [req] = sent(fsm)
    fsm.receive(pkt(Code.CONFIGURE_ACK, req.identifier, req.data), 0)
    fsm.receive(conf(Code.CONFIGURE_REQUEST, 1, Option.u16(SPEED, 100)), 0)
    assert fsm.state is State.CLOSING
    assert codes(sent(fsm)) == [Code.CONFIGURE_ACK, Code.TERMINATE_REQUEST]
    assert policy.log == ["tlu", "tld"]


# ---------------------------------------------------------------------------------------------
# Hostile input


MALFORMED = {
    "empty": b"",
    "one octet": b"\x01",
    "three octets": b"\x01\x02\x00",
    "length below header": b"\x01\x02\x00\x03",
    "length zero": b"\x05\x02\x00\x00",
    "length past the end": b"\x01\x02\x00\x09\x01\x04\x00",
    "option length 0": pkt(Code.CONFIGURE_REQUEST, 1, b"\x01\x00\x00\x00"),
    "option length 1": pkt(Code.CONFIGURE_REQUEST, 1, b"\x01\x01"),
    "option past end": pkt(Code.CONFIGURE_REQUEST, 1, b"\x01\x04\x00"),
    "truncated option header": pkt(Code.CONFIGURE_REQUEST, 1, b"\x01\x04\x00\x64\x07"),
    "ack with bad options": pkt(Code.CONFIGURE_ACK, 1, b"\x01\x09\x00"),
    "nak with bad options": pkt(Code.CONFIGURE_NAK, 1, b"\x01\x00"),
    "reject with bad options": pkt(Code.CONFIGURE_REJECT, 1, b"\x02"),
    "empty code-reject": pkt(Code.CODE_REJECT, 1),
    "short protocol-reject": pkt(Code.PROTOCOL_REJECT, 1, b"\x80"),
    "echo-request without magic": pkt(Code.ECHO_REQUEST, 1, b"\x00\x00\x00"),
    "echo-reply without magic": pkt(Code.ECHO_REPLY, 1),
    "discard-request without magic": pkt(Code.DISCARD_REQUEST, 1, b"\x00"),
}


@pytest.mark.parametrize("state", [State.REQ_SENT, State.ACK_SENT, State.OPENED, State.CLOSED])
@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_packets_are_counted_never_raised(name: str, state: State) -> None:
    fsm = forced(state)
    deadline = fsm.next_deadline()
    fsm.receive(MALFORMED[name], NOW)
    assert fsm.state is state
    assert fsm.packets_to_send() == [] and fsm.events() == []
    assert fsm.next_deadline() == deadline
    c = fsm.counters
    assert (c.discarded_malformed, c.illegal_events, c.discarded_bad_id) == (1, 0, 0)


def test_packets_while_lower_layer_down_are_dropped() -> None:
    for state in (State.INITIAL, State.STARTING):
        fsm = forced(state)
        fsm.receive(conf(Code.CONFIGURE_REQUEST, 1, Option.u16(SPEED, 100)), NOW)
        fsm.receive(MALFORMED["empty"], NOW)
        assert fsm.state is state and fsm.packets_to_send() == []
        assert fsm.counters.discarded_wrong_state == 1
        assert fsm.counters.discarded_malformed == 1


def _counted(fsm: Automaton) -> int:
    c = fsm.counters
    return c.discarded_malformed + sum(c.rx.values())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=80), state=st.sampled_from(State))
def test_arbitrary_bytes_never_raise(data: bytes, state: State) -> None:
    fsm = forced(state)
    fsm.receive(data, NOW)
    assert _counted(fsm) == 1  # every input is accounted for: parsed or malformed
    for packet in fsm.packets_to_send():
        ControlPacket.decode(packet.data)


framed = st.builds(
    lambda code, ident, body, pad: pkt(code, ident, body) + pad,
    st.sampled_from([*range(0, 16), 0xFF]),
    st.integers(0, 255),
    st.one_of(
        st.binary(max_size=40),
        st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=6)), max_size=5).map(
            lambda opts: encode_options(Option(t, d) for t, d in opts)
        ),
    ),
    st.binary(max_size=4),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets=st.lists(framed, min_size=1, max_size=6), state=st.sampled_from(State))
def test_well_framed_garbage_sequences_never_raise(packets: list[bytes], state: State) -> None:
    fsm = forced(state)
    now = NOW
    for data in packets:
        fsm.receive(data, now)
        now += 1.0
        fsm.handle_timer(now)
    assert fsm.state in State
    deadline = fsm.next_deadline()
    assert (deadline is not None) == (fsm.state in RESTART_TIMER_STATES)
    for packet in fsm.packets_to_send():
        ControlPacket.decode(packet.data)


# ---------------------------------------------------------------------------------------------
# The codec


def test_codes_per_protocol() -> None:
    assert codes_for(PROTO_LCP) == LCP_CODES == frozenset(range(1, 12))
    assert codes_for(PROTO_IPCP) == codes_for(PROTO_IPV6CP) == NCP_CODES == frozenset(range(1, 8))


def test_packet_encoding_vector() -> None:
    packet = ControlPacket.configure(
        Code.CONFIGURE_REQUEST, 0x2A, [Option.u16(1, 1500), Option.u32(5, 0x01020304)]
    )
    assert packet.encode() == bytes.fromhex("012a000e 0104 05dc 0506 01020304")
    assert ControlPacket.decode(packet.encode()) == packet
    assert packet.options()[1].as_int() == 0x01020304
    assert Option.u8(9, 7).encode() == b"\x09\x03\x07"


@pytest.mark.parametrize("name", [n for n in MALFORMED if MALFORMED[n][:1] in (b"", b"\x01")])
def test_decode_errors_are_ppp_parse_errors(name: str) -> None:
    with pytest.raises(PppParseError):
        ControlPacket.decode(MALFORMED[name]).options()


@pytest.mark.parametrize(
    ("data", "method"),
    [
        (pkt(Code.TERMINATE_REQUEST, 1), "options"),
        (pkt(Code.CONFIGURE_ACK, 1, b"\0\0\0\0"), "magic_and_data"),
        (pkt(Code.CODE_REJECT, 1, b"\0\0"), "rejected_protocol"),
        (pkt(Code.PROTOCOL_REJECT, 1, b"\0\0"), "rejected_code"),
        (pkt(Code.CODE_REJECT, 1), "rejected_code"),
    ],
)
def test_typed_views_refuse_the_wrong_packet(data: bytes, method: str) -> None:
    with pytest.raises(PppParseError):
        getattr(ControlPacket.decode(data), method)()


def test_builders_refuse_programming_errors() -> None:
    with pytest.raises(ValueError):
        Option(256)
    with pytest.raises(ValueError):
        Option(1, bytes(254))
    with pytest.raises(ValueError):
        ControlPacket(1, 256)
    with pytest.raises(ValueError):
        ControlPacket(1, 1, bytes(0xFFFF))
    with pytest.raises(ValueError):
        ControlPacket.configure(Code.TERMINATE_REQUEST, 1, [])
    with pytest.raises(ValueError):
        ControlPacket.with_magic(Code.CONFIGURE_REQUEST, 1, 0)


def test_code_names() -> None:
    assert ControlPacket(9, 1).code_name == "ECHO_REQUEST"
    assert ControlPacket(0x99, 1).code_name == "code 153"


options_strategy = st.lists(
    st.builds(Option, st.integers(0, 255), st.binary(max_size=253)), max_size=8
)


@given(options=options_strategy, code=st.integers(1, 4), ident=st.integers(0, 255))
def test_configure_roundtrip(options: list[Option], code: int, ident: int) -> None:
    packet = ControlPacket.configure(code, ident, options)
    decoded = ControlPacket.decode(packet.encode() + b"\x00" * 3)
    assert decoded == packet and list(decoded.options()) == options


@given(data=st.binary(max_size=64))
def test_decode_raises_only_ppp_parse_error(data: bytes) -> None:
    try:
        packet = ControlPacket.decode(data)
    except PppParseError:
        return
    assert packet.encode() == data[: packet.length]
    for view in ("options", "magic_and_data", "rejected_protocol", "rejected_code"):
        try:
            getattr(packet, view)()
        except PppParseError:
            pass
    try:
        decode_options(data)
    except PppParseError:
        pass
