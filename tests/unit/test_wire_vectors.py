"""Table tests of the wire codecs against the shared test vectors and the byte fixtures that
public implementations' test suites use (protocol-notes.md §10)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyl2tp.wire import auth, avp, header, message
from pyl2tp.wire.avp import ResultCode
from pyl2tp.wire.constants import (
    AvpType,
    CDNResult,
    ErrorCode,
    L2SpecType,
    MessageType,
    StopCCNResult,
)
from pyl2tp.wire.errors import HeaderError, MessageError, ParseError

VECTORS = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "test-vectors.txt"
h = bytes.fromhex
RV = h("101112131415161718191a1b1c1d1e1f")
SECRET = b"secret"


def _vector_lines() -> str:
    if not VECTORS.exists():
        pytest.skip("shared/reference/test-vectors.txt not beside the checkout")
    return VECTORS.read_text()


def test_v2_challenge_responses_match_vectors() -> None:
    text = _vector_lines()
    rows = re.findall(r"msgtype=(\d) secret='(\w+)' challenge=(\w+) -> response=(\w+)", text)
    assert len(rows) == 2
    for msgtype, secret, challenge, response in rows:
        got = auth.challenge_response(int(msgtype), secret.encode(), h(challenge))
        assert got.hex() == response


def test_v2_hidden_avps_match_vectors() -> None:
    text = _vector_lines()
    rows = re.findall(
        r"attr=(\d+) value=(\w+) pad=(\d+) RV=(\w+) -> hidden value=(\w+)\n"
        r"\s+full AVP \(M=1,H=1\) = (\w+)",
        text,
    )
    assert len(rows) == 3
    for attr, value, pad, rv, hidden, full in rows:
        got = avp.hide_value(int(attr), h(value), SECRET, h(rv), bytes(int(pad)))
        assert got.hex() == hidden
        a = avp.Avp(int(attr), h(value), hidden=True)
        assert avp.encode_avp(a, hide_key=SECRET, rv=h(rv), pad=bytes(int(pad))).hex() == full
        assert avp.unhide_value(int(attr), h(hidden), SECRET, h(rv)) == h(value)


def test_v2_hidden_avp_decodes_inside_a_message() -> None:
    rv_avp = h("801600000024101112131415161718191a1b1c1d1e1f")
    hidden = h("c00a00000009bb5335ed")
    body = h("8008000000000004") + rv_avp + hidden + h("800a0000000100010000")
    data = h("c802") + (12 + len(body)).to_bytes(2, "big") + h("0001000000000000") + body
    msg = message.decode_message(data, hide_key=SECRET)
    assert msg.msg_type == MessageType.StopCCN
    assert msg.get(AvpType.ASSIGNED_TUNNEL_ID) == 0x1234
    assert msg.get(AvpType.RESULT_CODE) == ResultCode(1, 0, None)


def test_v3_keys_and_hidden_ccid() -> None:
    assert auth.hiding_key_v3(SECRET).hex() == "6f9f790a8110719177da100287dae7b8"
    assert auth.auth_key_v3(SECRET).hex() == "21dc457145ad58f4b1497ae27d2a87b4"
    assert auth.auth_key_v3(b"").hex() == "7b6085fbf45933670abcb07a27fcea5e"
    hidden = avp.hide_value(61, h("2846f181"), auth.hiding_key_v3(SECRET), RV)
    assert hidden.hex() == "ffa2f0d0ba9e"


SCCRQ_ZEROED = h(
    "c803006b0000000000000000800800000000000180170000003b0000000000000000000000000000000000"
    "800c000000076c6363652d61800a0000003c0a000001800a0000003d11111111800a0000003e00050004"
    "801600000049a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
)
SCCRQ_WIRE = h(
    "c803006b0000000000000000800800000000000180170000003b00bee23042b3c7e22c78fa33b906f6d5e3"
    "800c000000076c6363652d61800a0000003c0a000001800a0000003d11111111800a0000003e00050004"
    "801600000049a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
)
NONCE_A = bytes(range(0xA0, 0xB0))
NONCE_B = bytes(range(0xB0, 0xC0))


def _sccrq_a() -> message.ControlMessage:
    msg = message.ControlMessage(MessageType.SCCRQ, version=3)
    msg.add(AvpType.HOST_NAME, "lcce-a").add(AvpType.ROUTER_ID, 0x0A000001)
    msg.add(AvpType.ASSIGNED_CONNECTION_ID, 0x11111111).add(AvpType.PW_CAPABILITIES_LIST, (5, 4))
    msg.add(AvpType.CTRL_MSG_AUTH_NONCE, NONCE_A)
    return msg


def test_v3_sccrq_digest_vector_encode_and_verify() -> None:
    key = auth.auth_key_v3(SECRET)
    wire = message.encode_message(_sccrq_a(), digest_type=0, auth_key=key)
    assert wire == SCCRQ_WIRE
    assert auth.verify(wire, 0, key, None, None)
    assert not auth.verify(wire, 0, auth.auth_key_v3(b"other"), None, None)
    assert auth.compute_digest(SCCRQ_ZEROED, 0, 0, key, None, None).hex() == (
        "bee23042b3c7e22c78fa33b906f6d5e3"
    )


def test_v3_sccrp_and_scccn_digest_vectors() -> None:
    key = auth.auth_key_v3(SECRET)
    sccrp = h(
        "c803006b1111111100000001800800000000000280170000003b0000000000000000000000000000000000"
        "800c000000076c6363652d62800a0000003c0a000002800a0000003d22222222800a0000003e00050004"
        "801600000049b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    )
    # The sender's own nonce comes first.
    assert auth.compute_digest(sccrp, 0, 0, key, NONCE_B, NONCE_A).hex() == (
        "67591182f96cb6dbb1bc1953d761a522"
    )
    scccn = message.ControlMessage(MessageType.SCCCN, version=3, tunnel_id=0x22222222, ns=1, nr=1)
    wire = message.encode_message(scccn, digest_type=0, auth_key=key, sender_nonce=NONCE_A,
                                  receiver_nonce=NONCE_B)
    assert wire[-16:].hex() == "8fd211839bc62f394efda2bc2e2dce92"
    assert auth.verify(wire, 0, key, NONCE_A, NONCE_B)
    assert not auth.verify(wire, 0, key, NONCE_B, NONCE_A)
    sha = message.encode_message(scccn, digest_type=1, auth_key=key, sender_nonce=NONCE_A,
                                 receiver_nonce=NONCE_B)
    assert sha[-20:].hex() == "18fb4014f07c6a49b11089f17e80e5bb4321d945"


def test_v3_digest_over_ip_skips_the_zero_session_id() -> None:
    key = auth.auth_key_v3(SECRET)
    wire = message.encode_message(_sccrq_a(), digest_type=0, auth_key=key, ip_encap=True)
    assert wire[:4] == bytes(4) and wire[4:] == SCCRQ_WIRE
    assert auth.verify(wire, 4, key, None, None)
    msg = message.decode_message(wire, offset=4)
    assert msg.get(AvpType.HOST_NAME) == "lcce-a"


def test_double_digest_accepts_either() -> None:
    key = auth.auth_key_v3(SECRET)
    wire = bytearray(message.encode_message(_sccrq_a(), digest_type=0, auth_key=key))
    # Insert a second (SHA-1) digest AVP right after the first and re-sign both.
    second = avp.encode_avp(avp.Avp(AvpType.MESSAGE_DIGEST, b"\x01" + bytes(20)))
    wire[43:43] = second
    wire[2:4] = (len(wire)).to_bytes(2, "big")
    auth.sign(wire, 0, key, None, None)
    assert auth.verify(wire, 0, key, None, None)
    wire[30] ^= 0xFF  # corrupt the MD5 one: the SHA-1 one still verifies
    assert auth.verify(wire, 0, key, None, None)


# --- public fixtures (protocol-notes.md §10.1) ----------------------------------------------


def test_go_l2tp_hello_and_zlb() -> None:
    hello = message.decode_message(h("c802001400010000000100018008000000000006"))
    assert (hello.msg_type, hello.tunnel_id, hello.session_id, hello.ns, hello.nr) == (
        MessageType.HELLO, 1, 0, 1, 1)
    zlb = message.decode_message(h("c802000c0001000000010001"))
    assert zlb.is_zlb and zlb.ns == 1 and zlb.nr == 1
    assert message.encode_message(zlb) == h("c802000c0001000000010001")
    assert message.encode_message(hello) == h("c802001400010000000100018008000000000006")


PROL2TP_SCCRQ = h(
    "c803007c0000000000000000"
    "8008000000000001"
    "800c000000076f70656e7633"
    "0034000000087072"
    "6f6c32747020312e372e33204c696e75782d332e31332e302d33302d67656e65726963202878"
    "38365f363429"
    "8008000000 0a000a"
    "000a0000003c00000000"
    "000a0000003d2846f181"
    "000c0000003e000700050004".replace(" ", "")
)


def test_prol2tp_sccrq_with_m0_v3_avps_and_router_id_zero() -> None:
    assert len(PROL2TP_SCCRQ) == 124
    msg = message.decode_message(PROL2TP_SCCRQ)
    assert msg.msg_type == MessageType.SCCRQ and msg.version == 3
    assert msg.get(AvpType.HOST_NAME) == "openv3"
    assert msg.get(AvpType.VENDOR_NAME) == "prol2tp 1.7.3 Linux-3.13.0-30-generic (x86_64)"
    assert msg.get(AvpType.RECEIVE_WINDOW_SIZE) == 10
    assert msg.get(AvpType.ROUTER_ID) == 0
    assert msg.get(AvpType.ASSIGNED_CONNECTION_ID) == 0x2846F181
    assert msg.get(AvpType.PW_CAPABILITIES_LIST) == (7, 5, 4)
    assert msg.ignored == []


def test_avp_fragments() -> None:
    avps, _problems = avp.decode_avps(h("0008000000020100"), 0, 8, version=2, hide_key=None)
    assert avp.decode_value(avps[0]) == avp.ProtocolVersion(1, 0) and not avps[0].mandatory
    avps, _ = avp.decode_avps(h("800a00000003000000038008000000010001"), 0, 18,
                              version=2, hide_key=None)
    assert avp.decode_value(avps[0]) == 3
    assert avp.decode_value(avps[1]) == ResultCode(1, None, None)
    rc = h("801a0000000100020003") + b"Invalid Argument"
    avps, _ = avp.decode_avps(rc, 0, len(rc), version=2, hide_key=None)
    assert avp.decode_value(avps[0]) == ResultCode(2, 3, "Invalid Argument")
    assert avp.encode_avp(avp.make(AvpType.RESULT_CODE, ResultCode(2, 3, "Invalid Argument"))) == rc
    speed = h("000e0000004b000000003b9aca00")
    avps, _ = avp.decode_avps(speed, 0, len(speed), version=3, hide_key=None)
    assert avp.decode_value(avps[0]) == 1_000_000_000


def test_mandatory_vendor_avp_is_rejected_but_not_aliased() -> None:
    body = h("8008000000000006") + h("800801ef00000006")
    data = h("c802") + (12 + len(body)).to_bytes(2, "big") + h("0001000000000000") + body
    with pytest.raises(MessageError) as exc:
        message.decode_message(data)
    assert exc.value.error_code == ErrorCode.UNKNOWN_MANDATORY_AVP
    assert exc.value.result_code == StopCCNResult.GENERAL_ERROR
    assert exc.value.clears == "tunnel"
    # Without the M bit it is ignored, and it never aliases IETF type 0 (Message Type).
    body = h("8008000000000006") + h("000801ef00000006")
    data = h("c802") + (12 + len(body)).to_bytes(2, "big") + h("0001000000000000") + body
    msg = message.decode_message(data)
    assert msg.msg_type == MessageType.HELLO
    assert msg.get(0, vendor_id=0x01EF) == h("0006")


SURICATA_ETH = h("ffffffffffff0011223344550800")  # start of an Ethernet frame


@pytest.mark.parametrize(
    ("udp", "cookie", "l2spec", "prefix"),
    [
        (True, b"", L2SpecType.NONE, "0003000012345678"),
        (True, h("cafebabe"), L2SpecType.NONE, "0003000012345678cafebabe"),
        (True, h("cafebabefacebeef"), L2SpecType.NONE, "0003000012345678cafebabefacebeef"),
        (True, h("cafebabefacebeef"), L2SpecType.DEFAULT,
         "0003000012345678cafebabefacebeef00000000"),
        (False, h("cafebabefacebeef"), L2SpecType.DEFAULT, "11223344cafebabefacebeef00000000"),
    ],
)
def test_v3_data_headers_like_suricata_fixtures(udp: bool, cookie: bytes, l2spec: int,
                                                prefix: str) -> None:
    pkt = h(prefix) + SURICATA_ETH
    hdr, payload = header.decode_data_v3(pkt, udp=udp, cookie_len=len(cookie), l2spec_type=l2spec)
    assert hdr.cookie == cookie and payload == SURICATA_ETH and hdr.seq is None
    assert hdr.encode(payload, udp=udp) == pkt


def test_v2_data_header_variants() -> None:
    full = header.DataHeaderV2(7, 9, ns=3, nr=0, length_field=True, offset_size=2, priority=True)
    pkt = full.encode(b"\xff\x03\xc0\x21")
    hdr, payload = header.decode_data_v2(pkt)
    assert (hdr.tunnel_id, hdr.session_id, hdr.ns, hdr.offset_size, hdr.priority) == (
        7, 9, 3, 2, True)
    assert payload == b"\xff\x03\xc0\x21"
    with pytest.raises(HeaderError):
        header.decode_data_v2(pkt[:-5] )  # Length now exceeds the datagram
    bad_offset = header.DataHeaderV2(1, 1, offset_size=40).encode(b"")
    with pytest.raises(HeaderError):
        header.decode_data_v2(bad_offset[:12])


# --- required AVPs and the prescribed answers ------------------------------------------------


def _v2_with(msg_type: int, avps: list[avp.Avp]) -> bytes:
    msg = message.ControlMessage(msg_type, list(avps), version=2, tunnel_id=5)
    return message.encode_message(msg)


def test_missing_required_avp_in_tunnel_message_prescribes_stopccn() -> None:
    wire = _v2_with(MessageType.SCCRQ, [avp.make(AvpType.PROTOCOL_VERSION, avp.ProtocolVersion()),
                                        avp.make(AvpType.HOST_NAME, "lac")])
    with pytest.raises(MessageError) as exc:
        message.decode_message(wire)
    err = exc.value
    assert (err.clears, err.result_code, err.error_code) == (
        "tunnel", StopCCNResult.GENERAL_ERROR, ErrorCode.VENDOR_SPECIFIC)
    assert "Framing Capabilities" in err.reason
    assert isinstance(err.message, message.ControlMessage)
    assert err.message.get(AvpType.HOST_NAME) == "lac"


def test_missing_required_avp_in_session_message_prescribes_cdn() -> None:
    wire = _v2_with(MessageType.ICRQ, [avp.make(AvpType.ASSIGNED_SESSION_ID, 77)])
    with pytest.raises(MessageError) as exc:
        message.decode_message(wire)
    assert (exc.value.clears, exc.value.result_code) == ("session", CDNResult.GENERAL_ERROR)
    assert exc.value.message.get(AvpType.ASSIGNED_SESSION_ID) == 77


def test_malformed_mandatory_avp_bad_length_and_value() -> None:
    bad_len = avp.Avp(AvpType.ASSIGNED_TUNNEL_ID, b"\x00\x01\x02")
    wire = _v2_with(MessageType.StopCCN, [bad_len, message.result_code_avp(1)])
    with pytest.raises(MessageError) as exc:
        message.decode_message(wire)
    assert exc.value.error_code == ErrorCode.BAD_LENGTH
    zero_id = avp.Avp(AvpType.ASSIGNED_TUNNEL_ID, b"\x00\x00")
    wire = _v2_with(MessageType.StopCCN, [zero_id, message.result_code_avp(1)])
    with pytest.raises(MessageError) as exc:
        message.decode_message(wire)
    assert exc.value.error_code == ErrorCode.BAD_VALUE


def test_malformed_optional_avp_is_ignored_like_rfc_rx_speed_example() -> None:
    short_speed = avp.Avp(AvpType.RX_CONNECT_SPEED, b"\x00\x10", mandatory=False)
    wire = _v2_with(MessageType.ICCN, [avp.make(AvpType.TX_CONNECT_SPEED, 10_000_000),
                                       avp.make(AvpType.FRAMING_TYPE, 1), short_speed])
    msg = message.decode_message(wire)
    assert msg.get(AvpType.RX_CONNECT_SPEED) is None
    assert [p.attr_type for p in msg.ignored] == [AvpType.RX_CONNECT_SPEED]


def test_unknown_mandatory_message_type_clears_tunnel_unknown_optional_is_returned() -> None:
    wire = _v2_with(99, [])
    with pytest.raises(MessageError) as exc:
        message.decode_message(wire)
    assert exc.value.clears == "tunnel"
    msg = message.ControlMessage(99, version=2, type_mandatory=False)
    got = message.decode_message(message.encode_message(msg))
    assert got.msg_type == 99 and not got.type_mandatory


def test_hidden_avp_with_wrong_secret_is_bounded() -> None:
    msg = message.ControlMessage(MessageType.SCCRQ, version=2)
    msg.add(AvpType.PROTOCOL_VERSION, avp.ProtocolVersion()).add(AvpType.HOST_NAME, "lac")
    msg.add(AvpType.FRAMING_CAPABILITIES, 3)
    msg.add(AvpType.ASSIGNED_TUNNEL_ID, 0x1234, hidden=True)
    wire = message.encode_message(msg, hide_key=SECRET)
    assert message.decode_message(wire, hide_key=SECRET).get(AvpType.ASSIGNED_TUNNEL_ID) == 0x1234
    # A wrong secret yields a garbage length (or value); it must be answered, never over-read.
    for wrong in (b"x", b"wrong-secret", b"secreT"):
        try:
            got = message.decode_message(wire, hide_key=wrong)
        except MessageError as exc:
            assert exc.clears == "tunnel"
        else:
            assert got.get(AvpType.ASSIGNED_TUNNEL_ID) != 0x1234
    with pytest.raises(MessageError, match="no shared secret"):
        message.decode_message(wire)


@pytest.mark.parametrize("data", [
    b"", b"\xc8", h("c802000b0001000000000000"), h("c802ffff000100000000000080080000"),
    h("4802000c0001000000000000"), h("c80a000c0001000000000000"), h("c805000c0001000000000000"),
    h("c802000e00010000000000000000"),
])
def test_malformed_headers_raise_only_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        message.decode_message(data)
