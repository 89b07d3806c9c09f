"""Harness: L2TP header decoders, v2 and v3, control and data, UDP and IP forms.

Input: one selector octet, then the datagram. The selector gives what the wire cannot say
for itself, the v3 session's configuration (UDP or IP form, cookie length, L2-Specific
Sublayer); every decoder runs on every input.

Contract (``pyl2tp.wire.header``): the only exception is ``HeaderError``; whatever decodes
re-encodes to something that decodes to the same header and payload.
"""

from __future__ import annotations

from fuzz.common import allowed, entry, instrumented, main

with instrumented(__name__):
    from pyl2tp.wire import header
    from pyl2tp.wire.constants import L2SpecType
    from pyl2tp.wire.errors import HeaderError

_COOKIES = (0, 4, 8)


@entry
def test_one_input(data: bytes) -> None:
    if not data:
        return
    sel, pkt = data[0], data[1:]
    udp = not sel & 1
    cookie_len = _COOKIES[(sel >> 1) % 3]
    l2spec = L2SpecType.DEFAULT if sel & 0x08 else L2SpecType.NONE

    with allowed(HeaderError):
        version = header.peek_version(pkt)
        assert 0 <= version <= 15
    assert isinstance(header.is_control(pkt), bool)

    for offset in (0, 4):
        with allowed(HeaderError):
            ctl = header.decode_control_header(pkt, offset)
            assert 12 <= ctl.length <= len(pkt) - offset
            again = ctl.encode(ctl.length - 12) + pkt[offset + 12 : offset + ctl.length]
            assert header.decode_control_header(again) == ctl

    with allowed(HeaderError):
        v2, payload = header.decode_data_v2(pkt)
        assert header.decode_data_v2(v2.encode(payload)) == (v2, payload)

    with allowed(HeaderError):
        v3, payload = header.decode_data_v3(pkt, udp=udp, cookie_len=cookie_len,
                                            l2spec_type=l2spec)
        assert len(v3.cookie) == cookie_len
        again = v3.encode(payload, udp=udp)
        assert header.decode_data_v3(again, udp=udp, cookie_len=cookie_len,
                                     l2spec_type=l2spec) == (v3, payload)


if __name__ == "__main__":
    main(test_one_input)
