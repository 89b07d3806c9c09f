"""Harness: the PPP frame and control packet codecs (``pyl2tp.ppp.packet``, the link's
protocol field decoder) and the PAP/CHAP packet parsers (``pyl2tp.ppp.authpacket``).

Input: a PPP frame as the L2TP session delivers it (with or without FF 03, compressed or full
protocol field). Every decoder runs on the frame's Information field, whatever its protocol.

Contract: ``ControlPacket.decode``, its typed views and ``decode_options`` raise only
``PppParseError``, as do the PAP/CHAP parsers; ``decode_protocol`` never raises and points
inside the frame; a decoded packet re-encodes to exactly its Length's worth of the input, a
decoded option list to exactly its octets; messages from the wire come out printable and
bounded.
"""

from __future__ import annotations

from fuzz.common import allowed, entry, instrumented, main

with instrumented(__name__):
    from pyl2tp.ppp import authpacket
    from pyl2tp.ppp.link import decode_protocol
    from pyl2tp.ppp.packet import ControlPacket, PppParseError, decode_options, encode_options
    from pyl2tp.ppp.protocols import AuthMethod


@entry
def test_one_input(data: bytes) -> None:
    decoded = decode_protocol(data)
    if decoded is None:
        info = data
    else:
        protocol, off = decoded
        assert 0 <= protocol <= 0xFFFF and protocol & 1 and off <= len(data)
        info = data[off:]

    with allowed(PppParseError):
        options = decode_options(info)
        assert encode_options(options) == info

    try:
        packet = ControlPacket.decode(info)
    except PppParseError:
        packet = None
    if packet is not None:
        assert packet.encode() == info[: packet.length]
        assert isinstance(packet.code_name, str)
        with allowed(PppParseError):
            options = packet.options()
            assert encode_options(options) == packet.data
        with allowed(PppParseError):
            magic, rest = packet.magic_and_data()
            assert 0 <= magic <= 0xFFFFFFFF and len(rest) == len(packet.data) - 4
        with allowed(PppParseError):
            protocol, rest = packet.rejected_protocol()
            assert 0 <= protocol <= 0xFFFF and len(rest) == len(packet.data) - 2
        with allowed(PppParseError):
            assert 0 <= packet.rejected_code() <= 0xFF
        _auth(packet.data)
    _auth(info)


def _auth(data: bytes) -> None:
    """The PAP and CHAP field parsers on a Data field."""
    with allowed(PppParseError):
        user, password = authpacket.parse_pap_request(data)
        assert authpacket.to_wire(authpacket.name_from_wire(user)) == user
        assert authpacket.to_wire(authpacket.name_from_wire(password)) == password
    with allowed(PppParseError):
        text = authpacket.parse_pap_reply(data)
        assert len(text) <= 4 * authpacket.MAX_MESSAGE_LEN and text.isprintable()
    with allowed(PppParseError):
        value, name = authpacket.parse_chap_value_name(data)
        assert value and len(name) <= authpacket.MAX_NAME_LEN
    text = authpacket.message_from_wire(data)
    assert len(text) <= 4 * authpacket.MAX_MESSAGE_LEN and text.isprintable()
    parts = authpacket.split_mschapv2_response(data)
    assert parts is None or (len(parts[0]) == 16 and len(parts[1]) == 24)
    for method in AuthMethod:
        assert isinstance(authpacket.response_well_formed(method, data), bool)
    assert AuthMethod.from_option_data(data) in (None, *AuthMethod)


if __name__ == "__main__":
    main(test_one_input)
