"""Round-trip properties of the wire codecs, and a fuzz run proving that only ParseError escapes
from anything that parses network bytes."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyl2tp.wire import auth, avp, header, message
from pyl2tp.wire.avp import AVP_SPECS, Avp
from pyl2tp.wire.constants import AvpType, L2SpecType, MessageType
from pyl2tp.wire.errors import ParseError

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
nz16 = st.integers(1, 0xFFFF)
nz32 = st.integers(1, 0xFFFFFFFF)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
octets = st.binary(max_size=60)

A = AvpType
VALUE_STRATEGIES: dict[int, st.SearchStrategy[Any]] = {
    A.MESSAGE_TYPE: u16,
    A.RESULT_CODE: st.builds(avp.ResultCode, u16, st.none() | u16,
                             st.none() | text.filter(bool)).filter(
        lambda r: r.message is None or r.error is not None),
    A.PROTOCOL_VERSION: st.builds(avp.ProtocolVersion, u8, u8),
    A.FRAMING_CAPABILITIES: u32,
    A.BEARER_CAPABILITIES: u32,
    A.TIE_BREAKER: st.binary(min_size=8, max_size=8),
    A.FIRMWARE_REVISION: u16,
    A.HOST_NAME: text.filter(bool),
    A.VENDOR_NAME: text,
    A.ASSIGNED_TUNNEL_ID: nz16,
    A.RECEIVE_WINDOW_SIZE: nz16,
    A.CHALLENGE: st.binary(min_size=1, max_size=64),
    A.Q931_CAUSE_CODE: st.builds(avp.Q931Cause, u16, u8,
                                 st.text(st.characters(max_codepoint=127), max_size=20)),
    A.CHALLENGE_RESPONSE: st.binary(min_size=16, max_size=16),
    A.ASSIGNED_SESSION_ID: nz16,
    A.CALL_SERIAL_NUMBER: u32,
    A.MINIMUM_BPS: u32,
    A.MAXIMUM_BPS: u32,
    A.BEARER_TYPE: u32,
    A.FRAMING_TYPE: u32,
    A.CALLED_NUMBER: text,
    A.CALLING_NUMBER: text,
    A.SUB_ADDRESS: text,
    A.TX_CONNECT_SPEED: u32,
    A.PHYSICAL_CHANNEL_ID: u32,
    A.INITIAL_RECEIVED_LCP_CONFREQ: octets,
    A.LAST_SENT_LCP_CONFREQ: octets,
    A.LAST_RECEIVED_LCP_CONFREQ: octets,
    A.PROXY_AUTHEN_TYPE: u16,
    A.PROXY_AUTHEN_NAME: octets,
    A.PROXY_AUTHEN_CHALLENGE: st.binary(min_size=1, max_size=32),
    A.PROXY_AUTHEN_ID: u16,
    A.PROXY_AUTHEN_RESPONSE: octets,
    A.CALL_ERRORS: st.builds(avp.CallErrors, u32, u32, u32, u32, u32, u32),
    A.ACCM: st.builds(avp.Accm, u32, u32),
    A.RANDOM_VECTOR: st.binary(min_size=1, max_size=32),
    A.PRIVATE_GROUP_ID: octets,
    A.RX_CONNECT_SPEED: u32,
    A.SEQUENCING_REQUIRED: st.just(True),
    A.PPP_DISCONNECT_CAUSE_CODE: st.builds(avp.PppDisconnectCause, u16, u16, u8, text),
    A.CCDS: u16,
    A.SDS: u16,
    A.MESSAGE_DIGEST: st.one_of(
        st.builds(avp.MessageDigest, st.just(0), st.binary(min_size=16, max_size=16)),
        st.builds(avp.MessageDigest, st.just(1), st.binary(min_size=20, max_size=20))),
    A.ROUTER_ID: u32,
    A.ASSIGNED_CONNECTION_ID: nz32,
    A.PW_CAPABILITIES_LIST: st.lists(u16, max_size=10).map(tuple),
    A.LOCAL_SESSION_ID: nz32,
    A.REMOTE_SESSION_ID: u32,
    A.ASSIGNED_COOKIE: st.sampled_from([0, 4, 8]).flatmap(
        lambda n: st.binary(min_size=n, max_size=n)),
    A.REMOTE_END_ID: octets,
    A.PW_TYPE: u16,
    A.L2_SPECIFIC_SUBLAYER: u16,
    A.DATA_SEQUENCING: u16,
    A.CIRCUIT_STATUS: u16,
    A.PREFERRED_LANGUAGE: text,
    A.CTRL_MSG_AUTH_NONCE: st.binary(min_size=1, max_size=32),
    A.TX_CONNECT_SPEED_V3: st.integers(0, 2**64 - 1),
    A.RX_CONNECT_SPEED_V3: st.integers(0, 2**64 - 1),
    A.LCP_WANT_OPTIONS: octets,
    A.LCP_ALLOW_OPTIONS: octets,
    A.LNS_LAST_SENT_LCP_CONFREQ: octets,
    A.LNS_LAST_RECEIVED_LCP_CONFREQ: octets,
    A.CONNECT_SPEED_UPDATE_ENABLE: st.just(True),
}
del A

# Types the encoder places itself, so they cannot appear among ordinary AVPs.
_PLACED = {AvpType.MESSAGE_TYPE, AvpType.MESSAGE_DIGEST}


def test_every_catalogued_avp_has_a_strategy() -> None:
    assert set(VALUE_STRATEGIES) == set(AVP_SPECS)


@st.composite
def typed_avp(draw: st.DrawFn, hide: bool) -> tuple[int, Any, Avp]:
    attr = draw(st.sampled_from(sorted(set(VALUE_STRATEGIES) - _PLACED)))
    value = draw(VALUE_STRATEGIES[attr])
    hidden = hide and AVP_SPECS[attr].hideable and draw(st.booleans())
    return attr, value, avp.make(attr, value, hidden=hidden)


@given(st.sampled_from(sorted(VALUE_STRATEGIES)), st.data())
def test_typed_value_round_trip(attr: int, data: st.DataObject) -> None:
    value = data.draw(VALUE_STRATEGIES[attr])
    a = avp.make(attr, value)
    assert avp.decode_value(a) == value


vendor_avp = st.builds(
    lambda t, v, vendor, ext: Avp(t, v, vendor, False, False, ext or vendor > 0xFFFF),
    u16, octets, st.integers(1, 2**32 - 1), st.booleans())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from([2, 3]),
    msg_type=st.sampled_from(sorted(message.KNOWN_TYPES)),
    avps=st.lists(typed_avp(hide=True), max_size=12),
    vendors=st.lists(vendor_avp, max_size=3),
    ids=st.tuples(u32, u16, u16, u16),
    ip=st.booleans(),
    secret=st.binary(min_size=1, max_size=16),
    pad=st.integers(0, 20),
)
def test_message_round_trip(version: int, msg_type: int, avps: list[tuple[int, Any, Avp]],
                            vendors: list[Avp], ids: tuple[int, int, int, int], ip: bool,
                            secret: bytes, pad: int) -> None:
    tid, sid, ns, nr = ids
    if version == 2:
        tid &= 0xFFFF
    else:
        sid = 0
    msg = message.ControlMessage(msg_type, [a for _, _, a in avps] + vendors, version=version,
                                 tunnel_id=tid, session_id=sid, ns=ns, nr=nr)
    key = secret if version == 2 else auth.hiding_key_v3(secret)
    rng = random.Random(1).randbytes
    wire = message.encode_message(msg, hide_key=key, ip_encap=ip and version == 3, rng=rng,
                                  hide_pad=pad)
    got = message.decode_message(wire, offset=4 if ip and version == 3 else 0, hide_key=key,
                                 validate=False)
    assert (got.msg_type, got.version, got.tunnel_id, got.session_id, got.ns, got.nr) == (
        msg_type, version, tid, sid, ns, nr)
    assert got.ignored == []
    plain = [a for a in got.avps if a.attr_type != AvpType.MESSAGE_TYPE or a.vendor_id]
    # An inserted Random Vector may precede the first hidden AVP.
    expected = [a for a in msg.avps]
    plain = [a for a in plain if not (a.attr_type == AvpType.RANDOM_VECTOR and a.vendor_id == 0
                                      and a not in expected)]
    assert [(a.vendor_id, a.attr_type, a.value, a.hidden) for a in plain] == [
        (a.vendor_id, a.attr_type, a.value, a.hidden) for a in expected]
    for attr, value, _ in avps:
        assert value in got.all(attr)


@given(version=st.sampled_from([2, 3]), digest_type=st.sampled_from([0, 1]),
       nonces=st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16)),
       ip=st.booleans(), flip=st.integers(0, 10_000))
def test_digest_sign_verify_and_tamper(version: int, digest_type: int,
                                       nonces: tuple[bytes, bytes], ip: bool, flip: int) -> None:
    key = auth.auth_key_v3(b"k")
    msg = message.ControlMessage(MessageType.HELLO, version=3, tunnel_id=77, ns=3, nr=9)
    msg.add(AvpType.VENDOR_NAME, "pyl2tp")
    start = 4 if ip else 0
    wire = bytearray(message.encode_message(msg, ip_encap=ip, digest_type=digest_type,
                                            auth_key=key, sender_nonce=nonces[0],
                                            receiver_nonce=nonces[1]))
    assert auth.verify(wire, start, key, *nonces)
    pos = start + flip % (len(wire) - start)
    wire[pos] ^= 0x01
    assert not auth.verify(wire, start, key, *nonces)


@given(tid=u16, sid=u16, ns=st.none() | u16, length=st.booleans(), off=st.none() | st.integers(
    0, 64), prio=st.booleans(), payload=octets)
def test_v2_data_round_trip(tid: int, sid: int, ns: int | None, length: bool, off: int | None,
                            prio: bool, payload: bytes) -> None:
    hdr = header.DataHeaderV2(tid, sid, ns, 0 if ns is not None else None, length, off, prio)
    got, body = header.decode_data_v2(hdr.encode(payload))
    assert got == hdr and body == payload


@given(sid=nz32, cookie=st.sampled_from([0, 4, 8]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)), l2spec=st.sampled_from([0, 1]),
    seq=st.none() | st.integers(0, 0xFFFFFF), udp=st.booleans(), payload=octets)
def test_v3_data_round_trip(sid: int, cookie: bytes, l2spec: int, seq: int | None, udp: bool,
                            payload: bytes) -> None:
    if l2spec == L2SpecType.NONE:
        seq = None
    hdr = header.DataHeaderV3(sid, cookie, l2spec, seq)
    got, body = header.decode_data_v3(hdr.encode(payload, udp=udp), udp=udp,
                                      cookie_len=len(cookie), l2spec_type=l2spec)
    assert got == hdr and body == payload


# --- fuzz: only ParseError may escape ----------------------------------------------------------

FIXTURE_PCAP = (Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
                / "fixtures-l2tp-avp-overflow.pcap")


def _parse_everything(data: bytes) -> None:
    for kwargs in ({}, {"hide_key": b"secret"}, {"offset": 4}):
        try:
            message.decode_message(data, **kwargs)  # type: ignore[arg-type]
        except ParseError:
            pass
    for fn in (header.decode_data_v2,
               lambda d: header.decode_data_v3(d, udp=True, cookie_len=8, l2spec_type=1),
               lambda d: header.decode_data_v3(d, udp=False, cookie_len=4, l2spec_type=0),
               lambda d: auth.verify(d, 0, b"k" * 16, None, None),
               lambda d: avp.decode_avps(d, 0, len(d), version=2, hide_key=b"s")):
        try:
            fn(data)
        except ParseError:
            pass


def _seed_corpus() -> list[bytes]:
    key = auth.auth_key_v3(b"secret")
    rng = random.Random(7)
    seeds = []
    for version in (2, 3):
        for t in (MessageType.SCCRQ, MessageType.ICRQ, MessageType.CDN, MessageType.HELLO):
            msg = message.ControlMessage(t, version=version, tunnel_id=1)
            msg.add(AvpType.HOST_NAME, "h").add(AvpType.RESULT_CODE, avp.ResultCode(2, 3, "x"))
            msg.add(AvpType.CHALLENGE, b"c" * 16, hidden=True)
            seeds.append(message.encode_message(
                msg, hide_key=b"secret", rng=rng.randbytes,
                digest_type=0 if version == 3 else None, auth_key=key))
    seeds.append(header.DataHeaderV2(1, 2, 3, 0, True, 4).encode(b"\xff\x03abc"))
    seeds.append(header.DataHeaderV3(5, b"12345678", 1, 9).encode(b"frame"))
    if FIXTURE_PCAP.exists():
        from pyl2tp.pcap import extract_l2tp, read_pcap

        for _ts, linktype, frame in read_pcap(FIXTURE_PCAP):
            found = extract_l2tp(frame, linktype)
            if found is not None:
                seeds.append(found[1])
    return seeds


def test_fuzz_random_and_mutated_datagrams() -> None:
    seeds = _seed_corpus()
    rng = random.Random(2661)
    for seed in seeds:
        _parse_everything(seed)
    for _ in range(20_000):
        base = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(5)
            if op == 0 and base:
                base[rng.randrange(len(base))] = rng.randrange(256)
            elif op == 1 and base:
                del base[rng.randrange(len(base)):]
            elif op == 2:
                base[rng.randrange(len(base) + 1):0] = rng.randbytes(rng.randint(1, 8))
            elif op == 3 and len(base) > 4:
                i = rng.randrange(len(base) - 1)
                base[i:i + 2] = rng.choice([b"\x00\x00", b"\xff\xff", b"\x00\x06", b"\x03\xff"])
            else:
                base = bytearray(rng.randbytes(rng.randint(0, 64)))
        _parse_everything(bytes(base))


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    _parse_everything(data)
