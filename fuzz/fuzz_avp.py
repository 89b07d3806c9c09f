"""Harness: the generic AVP list codec, hiding, and every catalogued typed value.

Input: one selector octet, then an AVP list. Selector bits: 0 = L2TPv3 (else v2), 1 = a
shared secret is configured, 2 = "pre-hide": values of AVPs with the H bit are written in
clear (hidden subformat with its length field) and encrypted by the harness before decoding,
so the decoder meets lying decrypted lengths without the fuzzer having to invert MD5.

Contract (``pyl2tp.wire.avp``): ``decode_avps`` and ``decode_value`` raise only ``AvpError``;
problems are reported, not raised, for value-level damage; a typed value re-encodes to bytes
that decode to the same value; a hidden value unhides to what was hidden.
"""

from __future__ import annotations

from fuzz.common import allowed, entry, instrumented, main, prehide_avps

with instrumented(__name__):
    from pyl2tp.wire import avp
    from pyl2tp.wire.constants import VENDOR_IETF, AvpType
    from pyl2tp.wire.errors import AvpError

KEY = b"secret"


@entry
def test_one_input(data: bytes) -> None:
    if not data:
        return
    sel, body = data[0], data[1:]
    version = 3 if sel & 1 else 2
    key = KEY if sel & 2 else None
    if key is not None and sel & 4:
        body = prehide_avps(body, key, version)

    try:
        avps, problems = avp.decode_avps(body, 0, len(body), version=version, hide_key=key)
    except AvpError as exc:
        assert exc.error_code is not None
        return
    for problem in problems:
        assert isinstance(problem.reason, str) and problem.error_code
    rv: bytes | None = None
    for item in avps:
        assert len(item.value) <= len(body)
        if item.hidden:
            assert key is not None and rv is not None
        if item.vendor_id == VENDOR_IETF and item.attr_type == AvpType.RANDOM_VECTOR:
            rv = item.value
        _check_value(item)
        _check_hiding(item)
        assert isinstance(item.name, str)


def _check_value(item: avp.Avp) -> None:
    """A value that decodes survives its codec's encode, as a value."""
    with allowed(AvpError):
        value = avp.decode_value(item)
        spec = avp.AVP_SPECS.get(item.attr_type) if item.vendor_id == VENDOR_IETF else None
        if spec is None:
            assert value == item.value
            return
        again = avp.Avp(item.attr_type, spec.codec.encode(value))
        assert avp.decode_value(again) == value, (item, value)


def _check_hiding(item: avp.Avp) -> None:
    rv = b"\x01" * 16
    hidden = avp.hide_value(item.attr_type, item.value, KEY, rv, pad=item.value[:7])
    assert avp.unhide_value(item.attr_type, hidden, KEY, rv) == item.value


if __name__ == "__main__":
    main(test_one_input)
