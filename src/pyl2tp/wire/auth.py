"""Tunnel authentication: the L2TPv2 CHAP-like Challenge/Response (RFC 2661 §4.4.3, §5.1.1) and
L2TPv3 Control Message Authentication (RFC 3931 §4.3, §5.4.1).

The v3 digest covers the control message from the T bit to its Length, with every Message
Digest AVP's digest octets zeroed; over IP that excludes the 4-octet zero session id. A message
may carry two digests back to back (key roll-over): it is accepted if either verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from .constants import AVP_LENGTH_MASK, VENDOR_IETF, AvpType, DigestType
from .errors import HeaderError

_AVP_HDR = struct.Struct(">HHH")
_DIGEST_SIZES = {DigestType.HMAC_MD5: 16, DigestType.HMAC_SHA1: 20}
_DIGEST_HASH = {DigestType.HMAC_MD5: "md5", DigestType.HMAC_SHA1: "sha1"}


def challenge_response(msg_type: int, secret: bytes, challenge: bytes) -> bytes:
    """v2: MD5(ID || secret || challenge), ID = the type of the message carrying the response
    (2 in an SCCRP, 3 in an SCCCN), so one side's response cannot be replayed by the other."""
    return hashlib.md5(bytes((msg_type & 0xFF,)) + secret + challenge).digest()


def hiding_key_v3(secret: bytes) -> bytes:
    """v3 AVP hiding key: HMAC-MD5(secret, 0x01)."""
    return hmac.new(secret, b"\x01", "md5").digest()


def auth_key_v3(secret: bytes) -> bytes:
    """v3 message authentication key: HMAC-MD5(secret, 0x02). With no secret configured this
    gives the integrity-only key Wireshark assumes (HMAC-MD5('', 0x02))."""
    return hmac.new(secret, b"\x02", "md5").digest()


def digest_size(digest_type: int) -> int:
    return _DIGEST_SIZES[DigestType(digest_type)]


def find_digests(msg: bytes | bytearray, start: int = 0) -> list[tuple[int, int]]:
    """Locate Message Digest AVPs in a control message starting at ``start`` (the T bit):
    returns ``(offset of the digest octets, digest type)`` for each, in order."""
    if len(msg) - start < 12:
        raise HeaderError("control message shorter than its header")
    length = struct.unpack_from(">H", msg, start + 2)[0]
    end = start + length
    if end > len(msg) or length < 12:
        raise HeaderError("control message Length disagrees with the datagram")
    found: list[tuple[int, int]] = []
    ptr = start + 12
    while ptr + 6 <= end:
        word, vendor, attr = _AVP_HDR.unpack_from(msg, ptr)
        alen = word & AVP_LENGTH_MASK
        if alen < 6 or ptr + alen > end:
            raise HeaderError("AVP length does not fit while locating the Message Digest")
        if vendor == VENDOR_IETF and attr == AvpType.MESSAGE_DIGEST and alen >= 7:
            dtype = msg[ptr + 6]
            if dtype in _DIGEST_SIZES and alen == 7 + _DIGEST_SIZES[DigestType(dtype)]:
                found.append((ptr + 7, dtype))
        ptr += alen
    return found


def compute_digest(
    msg: bytes | bytearray,
    start: int,
    digest_type: int,
    auth_key: bytes,
    sender_nonce: bytes | None,
    receiver_nonce: bytes | None,
) -> bytes:
    """HMAC over ``sender_nonce || receiver_nonce || message`` with all digests zeroed.

    For an SCCRQ no nonce has been exchanged yet: pass None for both (RFC 3931 §5.4.1).
    """
    length = struct.unpack_from(">H", msg, start + 2)[0]
    body = bytearray(msg[start : start + length])
    for off, dtype in find_digests(msg, start):
        rel = off - start
        body[rel : rel + _DIGEST_SIZES[DigestType(dtype)]] = bytes(
            _DIGEST_SIZES[DigestType(dtype)]
        )
    h = hmac.new(auth_key, digestmod=_DIGEST_HASH[DigestType(digest_type)])
    if sender_nonce is not None or receiver_nonce is not None:
        h.update((sender_nonce or b"") + (receiver_nonce or b""))
    h.update(body)
    return h.digest()


def sign(
    msg: bytearray,
    start: int,
    auth_key: bytes,
    sender_nonce: bytes | None,
    receiver_nonce: bytes | None,
) -> None:
    """Fill every Message Digest AVP of an encoded message in place (each with its own type).

    Called again on every retransmission, because the header's Nr (covered by the digest)
    changes between transmissions.
    """
    digests = find_digests(msg, start)
    if not digests:
        raise ValueError("message has no Message Digest AVP to fill")
    values = [
        compute_digest(msg, start, dtype, auth_key, sender_nonce, receiver_nonce)
        for _off, dtype in digests
    ]
    for (off, _dtype), value in zip(digests, values, strict=True):
        msg[off : off + len(value)] = value


def verify(
    msg: bytes | bytearray,
    start: int,
    auth_key: bytes,
    sender_nonce: bytes | None,
    receiver_nonce: bytes | None,
) -> bool:
    """True if any Message Digest in the message verifies (constant-time comparison)."""
    try:
        digests = find_digests(msg, start)
    except HeaderError:
        return False
    ok = False
    for off, dtype in digests:
        expect = compute_digest(msg, start, dtype, auth_key, sender_nonce, receiver_nonce)
        got = bytes(msg[off : off + len(expect)])
        ok |= hmac.compare_digest(expect, got)
    return ok
