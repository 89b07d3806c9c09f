"""Harness: control message decoding (header, AVPs, hiding, RFC validation) and the v3
Message Digest locator and verifier.

Input: one selector octet, then the datagram. Selector bits: 0 = a shared secret is
configured (``hide_key``), 1 = the v3 derived hiding key rather than the secret itself,
2 = validate required AVPs, 3 = L2TPv3 over IP (the message starts at offset 4), 4 =
"pre-hide" hidden values as in ``fuzz_avp`` (the harness encrypts the clear subformat).

Contract (``pyl2tp.wire.message``, ``pyl2tp.wire.auth``): ``decode_message`` raises only
``ParseError``; a ``MessageError`` carries a decoded ``ControlMessage`` or None and the codes
the control plane needs to answer; ``auth.verify`` never raises; ``auth.find_digests`` raises
only ``HeaderError``. What decodes re-encodes (with the same hiding key) to a message that
decodes to the same type, header fields and AVPs.
"""

from __future__ import annotations

import random

from fuzz.common import allowed, entry, instrumented, main, prehide_avps

with instrumented(__name__):
    from pyl2tp.wire import auth
    from pyl2tp.wire.constants import VENDOR_IETF, AvpType
    from pyl2tp.wire.errors import HeaderError, MessageError, ParseError
    from pyl2tp.wire.message import ControlMessage, decode_message, encode_message

SECRET = b"secret"
V3_KEY = auth.hiding_key_v3(SECRET)
AUTH_KEY = auth.auth_key_v3(SECRET)
_PLACED = (AvpType.MESSAGE_TYPE, AvpType.MESSAGE_DIGEST)


@entry
def test_one_input(data: bytes) -> None:
    if not data:
        return
    sel, pkt = data[0], data[1:]
    key = (V3_KEY if sel & 2 else SECRET) if sel & 1 else None
    validate = bool(sel & 4)
    offset = 4 if sel & 8 else 0
    if key is not None and sel & 16 and len(pkt) >= offset + 12:
        version = pkt[offset + 1] & 0x0F
        start = offset + 12
        pkt = pkt[:start] + prehide_avps(pkt[start:], key, version)

    with allowed(HeaderError):
        for off, dtype in auth.find_digests(pkt, offset):
            assert offset + 12 < off <= len(pkt) and dtype in (0, 1)
    nonce = pkt[-16:]
    assert isinstance(auth.verify(pkt, offset, AUTH_KEY, None, None), bool)
    assert isinstance(auth.verify(pkt, offset, AUTH_KEY, nonce, nonce[::-1]), bool)

    try:
        msg = decode_message(pkt, offset=offset, hide_key=key, validate=validate)
    except MessageError as exc:
        assert exc.message is None or isinstance(exc.message, ControlMessage)
        assert exc.result_code is not None and exc.clears in ("tunnel", "session")
        return
    except ParseError as exc:
        assert exc.result_code is None  # a header problem: discarded without a reply
        return
    _check_round_trip(msg, key, offset)


def _comparable(msg: ControlMessage) -> list[tuple[int, int, bytes, bool, bool]]:
    """The AVPs the encoder writes back: all but those it places itself (a vendor-specific
    message's leading Message Type included: a v2 one with reserved bits set is left out of
    ``avps`` on decoding, yet the encoder writes it back, cleanly)."""
    avps = msg.avps
    if (avps and msg.vendor_id != VENDOR_IETF and avps[0].attr_type == AvpType.MESSAGE_TYPE
            and avps[0].vendor_id == msg.vendor_id):
        avps = avps[1:]
    return [(a.attr_type, a.vendor_id, a.value, a.mandatory, a.hidden) for a in avps
            if not (a.vendor_id == VENDOR_IETF and a.attr_type in _PLACED)]


def _check_round_trip(msg: ControlMessage, key: bytes | None, offset: int) -> None:
    for item in msg.avps:  # typed access on a decoded message raises only ParseError
        with allowed(ParseError):
            msg.get(item.attr_type, vendor_id=item.vendor_id)
    encoded = encode_message(msg, hide_key=key, ip_encap=offset == 4,
                             rng=random.Random(0).randbytes)
    again = decode_message(encoded, offset=offset, hide_key=key, validate=False)
    assert (again.msg_type, again.version, again.tunnel_id, again.session_id, again.ns,
            again.nr, again.vendor_id, again.type_mandatory) == (
        msg.msg_type, msg.version, msg.tunnel_id, msg.session_id, msg.ns, msg.nr,
        msg.vendor_id, msg.type_mandatory), (msg, again)
    assert _comparable(again) == _comparable(msg), (msg, again)


if __name__ == "__main__":
    main(test_one_input)
