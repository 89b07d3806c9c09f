"""Attribute-Value Pairs: the generic format (RFC 2661 §4.1, RFC 3931 §5.1), hiding (§4.3 / §5.3)
and typed values for every IETF AVP L2TP defines.

An :class:`Avp` always holds the *plaintext* value bytes; hiding is applied when a message is
encoded and removed when it is decoded, so everything above this layer sees plain values. The
vendor id always takes part in matching: vendor AVPs never alias IETF ones (the xl2tpd bug).
Typed decoding is separate from the generic parse so that a malformed value can be judged by
its M bit (RFC 3931 §7.1) instead of failing the whole message.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .constants import (
    AVP_FLAG_H,
    AVP_FLAG_M,
    AVP_HEADER_LEN,
    AVP_LENGTH_MASK,
    AVP_MAX_LEN,
    AVP_RESERVED_MASK,
    VENDOR_IETF,
    AvpType,
    ErrorCode,
)
from .errors import AvpError

_AVP_HDR = struct.Struct(">HHH")


@dataclass(slots=True, frozen=True)
class Avp:
    """One AVP with its plaintext value.

    ``hidden`` asks the encoder to hide it (and records that it arrived hidden); ``extended``
    means it travels inside an Extended Vendor ID AVP (58) with a 32-bit ``vendor_id``.
    """

    attr_type: int
    value: bytes
    vendor_id: int = VENDOR_IETF
    mandatory: bool = True
    hidden: bool = False
    extended: bool = False

    @property
    def key(self) -> tuple[int, int]:
        return (self.vendor_id, self.attr_type)

    @property
    def name(self) -> str:
        if self.vendor_id == VENDOR_IETF:
            spec = AVP_SPECS.get(self.attr_type)
            if spec is not None:
                return spec.name
            return f"AVP {self.attr_type}"
        return f"vendor {self.vendor_id} AVP {self.attr_type}"


class AvpProblem(NamedTuple):
    """A malformed or unrecognised AVP found while decoding; its M bit decides its fate."""

    attr_type: int
    vendor_id: int
    mandatory: bool
    error_code: int
    reason: str


# ---------------------------------------------------------------------------------------------
# Hiding (RFC 2661 §4.3; RFC 3931 §5.3 uses the same chaining with a derived key)


def _keystream_xor(attr_type: int, data: bytes, key: bytes, rv: bytes, *, decrypt: bool) -> bytes:
    out = bytearray(len(data))
    block_in = struct.pack(">H", attr_type) + key + rv
    for i in range(0, len(data), 16):
        b = hashlib.md5(block_in).digest()
        chunk = data[i : i + 16]
        c = bytes(x ^ y for x, y in zip(chunk, b, strict=False))
        out[i : i + len(chunk)] = c
        # Chaining uses the ciphertext block in both directions.
        block_in = key + (chunk if decrypt else c)
    return bytes(out)


def hide_value(attr_type: int, value: bytes, key: bytes, rv: bytes, pad: bytes = b"") -> bytes:
    """Encrypt ``len || value || pad`` as the hidden AVP subformat."""
    if len(value) > 0xFFFF:
        raise ValueError("value too long to hide")
    plain = struct.pack(">H", len(value)) + value + pad
    return _keystream_xor(attr_type, plain, key, rv, decrypt=False)


def unhide_value(attr_type: int, hidden: bytes, key: bytes, rv: bytes) -> bytes:
    """Decrypt a hidden subformat and return the original value.

    The decrypted length is cipher output (a wrong secret gives garbage), so it is checked
    against the octets actually present before it bounds the slice.
    """
    if len(hidden) < 2:
        raise AvpError("hidden AVP shorter than its length field", error_code=ErrorCode.BAD_LENGTH)
    plain = _keystream_xor(attr_type, hidden, key, rv, decrypt=True)
    orig_len = (plain[0] << 8) | plain[1]
    if orig_len > len(plain) - 2:
        raise AvpError(
            f"hidden AVP {attr_type} decrypts to length {orig_len} but holds "
            f"{len(plain) - 2} octets (wrong secret?)",
            error_code=ErrorCode.BAD_LENGTH,
        )
    return plain[2 : 2 + orig_len]


# ---------------------------------------------------------------------------------------------
# Generic AVP list codec


def encode_avp(avp: Avp, *, hide_key: bytes | None = None, rv: bytes | None = None,
               pad: bytes = b"") -> bytes:
    """Encode one AVP, hiding it with ``hide_key`` and the preceding Random Vector ``rv``."""
    value = avp.value
    attr_type = avp.attr_type
    vendor = avp.vendor_id
    mandatory = avp.mandatory
    if avp.extended:
        # The wrapped AVP has no M bit of its own: the Extended Vendor ID AVP's carries it.
        # RFC 3931 §5.1 wants that bit 0, and it is unless the AVP is mandatory, which only
        # an AVP decoded from a peer that set it (or an explicit request) makes it; writing
        # it back keeps decode -> encode -> decode faithful.
        value = struct.pack(">IH", vendor, attr_type) + value
        attr_type, vendor = AvpType.EXTENDED_VENDOR_ID, VENDOR_IETF
    elif vendor > 0xFFFF:
        raise ValueError("a vendor id above 65535 needs the Extended Vendor ID form")
    flags = AVP_FLAG_M if mandatory else 0
    if avp.hidden:
        if hide_key is None or rv is None:
            raise ValueError(f"{avp.name}: hiding needs a shared secret and a Random Vector")
        value = hide_value(attr_type, value, hide_key, rv, pad)
        flags |= AVP_FLAG_H
    length = AVP_HEADER_LEN + len(value)
    if length > AVP_MAX_LEN:
        raise ValueError(f"{avp.name}: AVP length {length} exceeds {AVP_MAX_LEN}")
    return _AVP_HDR.pack(flags | length, vendor, attr_type) + value


def decode_avps(
    data: bytes,
    start: int,
    end: int,
    *,
    version: int,
    hide_key: bytes | None,
) -> tuple[list[Avp], list[AvpProblem]]:
    """Split ``data[start:end]`` into AVPs.

    Structural damage (an AVP header that does not fit, a Length below 6 or past the end)
    makes the rest unparseable and raises :class:`AvpError`. Value-level trouble (hidden
    without a secret or a Random Vector, a lying hidden length, v2 reserved bits, a short
    Extended Vendor ID, a hidden Random Vector) is reported as an :class:`AvpProblem` and the
    AVP is left out.
    """
    avps: list[Avp] = []
    problems: list[AvpProblem] = []
    rv: bytes | None = None
    ptr = start
    while ptr < end:
        if end - ptr < AVP_HEADER_LEN:
            raise AvpError(
                f"{end - ptr} trailing octets cannot hold an AVP header",
                error_code=ErrorCode.BAD_LENGTH,
            )
        word, vendor, attr_type = _AVP_HDR.unpack_from(data, ptr)
        length = word & AVP_LENGTH_MASK
        mandatory = bool(word & AVP_FLAG_M)
        if length < AVP_HEADER_LEN or ptr + length > end:
            raise AvpError(
                f"AVP {vendor}:{attr_type} Length {length} does not fit in the message",
                error_code=ErrorCode.BAD_LENGTH,
            )
        value = bytes(data[ptr + AVP_HEADER_LEN : ptr + length])
        ptr += length
        if version == 2 and word & AVP_RESERVED_MASK:
            # RFC 2661 §4.1: an AVP with reserved bits set is treated as unrecognized.
            problems.append(AvpProblem(attr_type, vendor, mandatory,
                                       ErrorCode.UNKNOWN_MANDATORY_AVP, "reserved bits set"))
            continue
        hidden = bool(word & AVP_FLAG_H)
        if hidden and vendor == VENDOR_IETF and attr_type == AvpType.RANDOM_VECTOR:
            # RFC 2661 §4.4.1 / RFC 3931 §5.4.1: the Random Vector MUST NOT be hidden. Which
            # vector would decrypt it, and which it would replace, is anyone's guess (our
            # encoder never hides one); it is left out and the vector in force stays.
            problems.append(AvpProblem(attr_type, vendor, mandatory, ErrorCode.BAD_VALUE,
                                       "hidden Random Vector"))
            continue
        if hidden:
            if hide_key is None or rv is None:
                why = "no shared secret" if hide_key is None else "no preceding Random Vector"
                problems.append(AvpProblem(attr_type, vendor, mandatory,
                                           ErrorCode.VENDOR_SPECIFIC, f"hidden AVP but {why}"))
                continue
            try:
                value = unhide_value(attr_type, value, hide_key, rv)
            except AvpError as exc:
                problems.append(AvpProblem(attr_type, vendor, mandatory,
                                           ErrorCode.BAD_LENGTH, exc.reason))
                continue
        if vendor == VENDOR_IETF and attr_type == AvpType.RANDOM_VECTOR:
            rv = value
        extended = False
        if vendor == VENDOR_IETF and attr_type == AvpType.EXTENDED_VENDOR_ID:
            if len(value) < 6:
                problems.append(AvpProblem(attr_type, vendor, mandatory, ErrorCode.BAD_LENGTH,
                                           "Extended Vendor ID AVP shorter than 12 octets"))
                continue
            vendor, attr_type = struct.unpack_from(">IH", value, 0)
            value = value[6:]
            extended = True
        avps.append(Avp(attr_type, value, vendor, mandatory, hidden, extended))
    return avps, problems


# ---------------------------------------------------------------------------------------------
# Typed values


class ResultCode(NamedTuple):
    """Result Code AVP: result, optional error code, optional UTF-8 message."""

    result: int
    error: int | None = None
    message: str | None = None


class ProtocolVersion(NamedTuple):
    version: int = 1
    revision: int = 0


class Q931Cause(NamedTuple):
    cause: int
    msg: int
    advisory: str = ""


class CallErrors(NamedTuple):
    """Call Errors (34). v3's figure drops the CRC and framing counters (24 octets); both
    forms are accepted and the interoperable 32-octet v2 layout is sent."""

    crc: int = 0
    framing: int = 0
    hardware_overruns: int = 0
    buffer_overruns: int = 0
    timeouts: int = 0
    alignment: int = 0


class Accm(NamedTuple):
    send: int = 0xFFFFFFFF
    recv: int = 0xFFFFFFFF


class MessageDigest(NamedTuple):
    digest_type: int
    digest: bytes


class PppDisconnectCause(NamedTuple):
    code: int
    protocol: int
    direction: int
    message: str = ""


class Codec(NamedTuple):
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


class _Bad(Exception):
    def __init__(self, error_code: int, reason: str) -> None:
        super().__init__(reason)
        self.error_code = error_code
        self.reason = reason


def _need(ok: bool, reason: str, code: int = ErrorCode.BAD_LENGTH) -> None:
    if not ok:
        raise _Bad(code, reason)


def _uint(size: int, *, nonzero: bool = False) -> Codec:
    fmt = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}[size]

    def dec(v: bytes) -> int:
        _need(len(v) == size, f"value is {len(v)} octets, expected {size}")
        n: int = struct.unpack(fmt, v)[0]
        _need(not (nonzero and n == 0), "value must not be zero", ErrorCode.BAD_VALUE)
        return n

    return Codec(lambda n: struct.pack(fmt, n), dec)


def _octets(min_len: int = 0, exact: int | None = None) -> Codec:
    def dec(v: bytes) -> bytes:
        if exact is not None:
            _need(len(v) == exact, f"value is {len(v)} octets, expected {exact}")
        _need(len(v) >= min_len, f"value is {len(v)} octets, at least {min_len} required")
        return v

    return Codec(bytes, dec)


def _string(min_len: int = 0) -> Codec:
    # surrogateescape keeps arbitrary octets round-tripping while giving callers a str.
    def dec(v: bytes) -> str:
        _need(len(v) >= min_len, f"string of {len(v)} octets, at least {min_len} required")
        return v.decode("utf-8", "surrogateescape")

    return Codec(lambda s: s.encode("utf-8", "surrogateescape"), dec)


def _empty() -> Codec:
    def dec(v: bytes) -> bool:
        _need(not v, f"value is {len(v)} octets, expected none")
        return True

    return Codec(lambda _v: b"", dec)


def _result_code() -> Codec:
    def enc(rc: ResultCode) -> bytes:
        out = struct.pack(">H", rc.result)
        if rc.error is not None or rc.message:
            out += struct.pack(">H", rc.error or 0)
        if rc.message:
            out += rc.message.encode("utf-8", "surrogateescape")
        return out

    def dec(v: bytes) -> ResultCode:
        _need(len(v) >= 2 and len(v) != 3, f"Result Code value of {len(v)} octets")
        result = struct.unpack_from(">H", v)[0]
        if len(v) == 2:
            return ResultCode(result)
        error = struct.unpack_from(">H", v, 2)[0]
        msg = v[4:].decode("utf-8", "surrogateescape") if len(v) > 4 else None
        return ResultCode(result, error, msg)

    return Codec(enc, dec)


def _protocol_version() -> Codec:
    def dec(v: bytes) -> ProtocolVersion:
        _need(len(v) == 2, f"Protocol Version value of {len(v)} octets")
        return ProtocolVersion(v[0], v[1])

    return Codec(lambda pv: bytes((pv.version, pv.revision)), dec)


def _q931() -> Codec:
    def enc(q: Q931Cause) -> bytes:
        return struct.pack(">HB", q.cause, q.msg) + q.advisory.encode("ascii", "surrogateescape")

    def dec(v: bytes) -> Q931Cause:
        _need(len(v) >= 3, f"Q.931 Cause Code value of {len(v)} octets")
        cause, msg = struct.unpack_from(">HB", v)
        return Q931Cause(cause, msg, v[3:].decode("ascii", "surrogateescape"))

    return Codec(enc, dec)


def _call_errors() -> Codec:
    def enc(c: CallErrors) -> bytes:
        return struct.pack(">H6I", 0, *c)

    def dec(v: bytes) -> CallErrors:
        if len(v) == 26:
            return CallErrors(*struct.unpack_from(">6I", v, 2))
        _need(len(v) == 18, f"Call Errors value of {len(v)} octets")
        return CallErrors(0, 0, *struct.unpack_from(">4I", v, 2))

    return Codec(enc, dec)


def _accm() -> Codec:
    def dec(v: bytes) -> Accm:
        _need(len(v) == 10, f"ACCM value of {len(v)} octets")
        return Accm(*struct.unpack_from(">II", v, 2))

    return Codec(lambda a: struct.pack(">HII", 0, a.send, a.recv), dec)


def _digest() -> Codec:
    sizes = {0: 16, 1: 20}

    def dec(v: bytes) -> MessageDigest:
        _need(len(v) >= 1, "empty Message Digest")
        _need(v[0] in sizes, f"unknown digest type {v[0]}", ErrorCode.BAD_VALUE)
        _need(len(v) == 1 + sizes[v[0]], f"Message Digest value of {len(v)} octets")
        return MessageDigest(v[0], v[1:])

    return Codec(lambda d: bytes((d.digest_type,)) + d.digest, dec)


def _u16_list() -> Codec:
    def dec(v: bytes) -> tuple[int, ...]:
        _need(len(v) % 2 == 0, f"list of 16-bit values with {len(v)} octets")
        return struct.unpack(f">{len(v) // 2}H", v)

    return Codec(lambda items: struct.pack(f">{len(items)}H", *items), dec)


def _cookie() -> Codec:
    def dec(v: bytes) -> bytes:
        _need(len(v) in (0, 4, 8), f"cookie of {len(v)} octets (0, 4 or 8 allowed)")
        return v

    return Codec(bytes, dec)


def _ppp_disconnect() -> Codec:
    def enc(c: PppDisconnectCause) -> bytes:
        return struct.pack(">HHB", c.code, c.protocol, c.direction) + c.message.encode(
            "utf-8", "surrogateescape"
        )

    def dec(v: bytes) -> PppDisconnectCause:
        _need(len(v) >= 5, f"PPP Disconnect Cause value of {len(v)} octets")
        code, proto, direction = struct.unpack_from(">HHB", v)
        return PppDisconnectCause(code, proto, direction, v[5:].decode("utf-8", "surrogateescape"))

    return Codec(enc, dec)


class AvpSpec(NamedTuple):
    """How an IETF AVP's value is typed, and the M bit and hiding policy we send it with."""

    name: str
    codec: Codec
    mandatory: bool = True
    hideable: bool = True


U16, U32, U64 = _uint(2), _uint(4), _uint(8)
ID16, ID32 = _uint(2, nonzero=True), _uint(4, nonzero=True)

A = AvpType
AVP_SPECS: dict[int, AvpSpec] = {
    A.MESSAGE_TYPE: AvpSpec("Message Type", U16, hideable=False),
    A.RESULT_CODE: AvpSpec("Result Code", _result_code(), hideable=False),
    A.PROTOCOL_VERSION: AvpSpec("Protocol Version", _protocol_version(), hideable=False),
    A.FRAMING_CAPABILITIES: AvpSpec("Framing Capabilities", U32),
    A.BEARER_CAPABILITIES: AvpSpec("Bearer Capabilities", U32),
    A.TIE_BREAKER: AvpSpec("Tie Breaker", _octets(exact=8), mandatory=False, hideable=False),
    A.FIRMWARE_REVISION: AvpSpec("Firmware Revision", U16, mandatory=False),
    A.HOST_NAME: AvpSpec("Host Name", _string(1), hideable=False),
    A.VENDOR_NAME: AvpSpec("Vendor Name", _string(), mandatory=False),
    A.ASSIGNED_TUNNEL_ID: AvpSpec("Assigned Tunnel ID", ID16),
    A.RECEIVE_WINDOW_SIZE: AvpSpec("Receive Window Size", ID16, hideable=False),
    A.CHALLENGE: AvpSpec("Challenge", _octets(1)),
    A.Q931_CAUSE_CODE: AvpSpec("Q.931 Cause Code", _q931(), hideable=False),
    A.CHALLENGE_RESPONSE: AvpSpec("Challenge Response", _octets(exact=16)),
    A.ASSIGNED_SESSION_ID: AvpSpec("Assigned Session ID", ID16),
    A.CALL_SERIAL_NUMBER: AvpSpec("Call Serial Number", U32),
    A.MINIMUM_BPS: AvpSpec("Minimum BPS", U32),
    A.MAXIMUM_BPS: AvpSpec("Maximum BPS", U32),
    A.BEARER_TYPE: AvpSpec("Bearer Type", U32),
    A.FRAMING_TYPE: AvpSpec("Framing Type", U32),
    A.CALLED_NUMBER: AvpSpec("Called Number", _string()),
    A.CALLING_NUMBER: AvpSpec("Calling Number", _string()),
    A.SUB_ADDRESS: AvpSpec("Sub-Address", _string()),
    A.TX_CONNECT_SPEED: AvpSpec("Tx Connect Speed", U32),
    A.PHYSICAL_CHANNEL_ID: AvpSpec("Physical Channel ID", U32, mandatory=False),
    A.INITIAL_RECEIVED_LCP_CONFREQ: AvpSpec("Initial Received LCP CONFREQ", _octets(),
                                            mandatory=False),
    A.LAST_SENT_LCP_CONFREQ: AvpSpec("Last Sent LCP CONFREQ", _octets(), mandatory=False),
    A.LAST_RECEIVED_LCP_CONFREQ: AvpSpec("Last Received LCP CONFREQ", _octets(),
                                         mandatory=False),
    A.PROXY_AUTHEN_TYPE: AvpSpec("Proxy Authen Type", U16, mandatory=False),
    A.PROXY_AUTHEN_NAME: AvpSpec("Proxy Authen Name", _octets(), mandatory=False),
    A.PROXY_AUTHEN_CHALLENGE: AvpSpec("Proxy Authen Challenge", _octets(1), mandatory=False),
    A.PROXY_AUTHEN_ID: AvpSpec("Proxy Authen ID", U16, mandatory=False),
    A.PROXY_AUTHEN_RESPONSE: AvpSpec("Proxy Authen Response", _octets(), mandatory=False),
    A.CALL_ERRORS: AvpSpec("Call Errors", _call_errors()),
    A.ACCM: AvpSpec("ACCM", _accm()),
    A.RANDOM_VECTOR: AvpSpec("Random Vector", _octets(1), hideable=False),
    A.PRIVATE_GROUP_ID: AvpSpec("Private Group ID", _octets(), mandatory=False),
    A.RX_CONNECT_SPEED: AvpSpec("Rx Connect Speed", U32, mandatory=False),
    A.SEQUENCING_REQUIRED: AvpSpec("Sequencing Required", _empty(), hideable=False),
    A.PPP_DISCONNECT_CAUSE_CODE: AvpSpec("PPP Disconnect Cause Code", _ppp_disconnect(),
                                         mandatory=False),
    A.CCDS: AvpSpec("Control Connection DS", U16, mandatory=False),
    A.SDS: AvpSpec("Session DS", U16, mandatory=False),
    A.MESSAGE_DIGEST: AvpSpec("Message Digest", _digest(), hideable=False),
    A.ROUTER_ID: AvpSpec("Router ID", U32, hideable=False),
    A.ASSIGNED_CONNECTION_ID: AvpSpec("Assigned Control Connection ID", ID32),
    A.PW_CAPABILITIES_LIST: AvpSpec("Pseudowire Capabilities List", _u16_list()),
    A.LOCAL_SESSION_ID: AvpSpec("Local Session ID", ID32),
    A.REMOTE_SESSION_ID: AvpSpec("Remote Session ID", U32),
    A.ASSIGNED_COOKIE: AvpSpec("Assigned Cookie", _cookie()),
    A.REMOTE_END_ID: AvpSpec("Remote End ID", _octets()),
    A.PW_TYPE: AvpSpec("Pseudowire Type", U16),
    A.L2_SPECIFIC_SUBLAYER: AvpSpec("L2-Specific Sublayer", U16),
    A.DATA_SEQUENCING: AvpSpec("Data Sequencing", U16),
    A.CIRCUIT_STATUS: AvpSpec("Circuit Status", U16),
    A.PREFERRED_LANGUAGE: AvpSpec("Preferred Language", _string(), mandatory=False),
    A.CTRL_MSG_AUTH_NONCE: AvpSpec("Control Message Authentication Nonce", _octets(1),
                                   hideable=False),
    A.TX_CONNECT_SPEED_V3: AvpSpec("Tx Connect Speed (v3)", U64, mandatory=False),
    A.RX_CONNECT_SPEED_V3: AvpSpec("Rx Connect Speed (v3)", U64, mandatory=False),
    A.LCP_WANT_OPTIONS: AvpSpec("LCP Want Options", _octets(), mandatory=False),
    A.LCP_ALLOW_OPTIONS: AvpSpec("LCP Allow Options", _octets(), mandatory=False),
    A.LNS_LAST_SENT_LCP_CONFREQ: AvpSpec("LNS Last Sent LCP Confreq", _octets(),
                                         mandatory=False),
    A.LNS_LAST_RECEIVED_LCP_CONFREQ: AvpSpec("LNS Last Received LCP Confreq", _octets(),
                                             mandatory=False),
    A.CONNECT_SPEED_UPDATE_ENABLE: AvpSpec("Connect Speed Update Enable", _empty(),
                                           mandatory=False),
}
del A


def avp_name(attr_type: int, vendor_id: int = VENDOR_IETF) -> str:
    if vendor_id == VENDOR_IETF and attr_type in AVP_SPECS:
        return AVP_SPECS[attr_type].name
    return f"AVP {vendor_id}:{attr_type}"


def make(
    attr_type: int,
    value: Any = True,
    *,
    mandatory: bool | None = None,
    hidden: bool = False,
    vendor_id: int = VENDOR_IETF,
) -> Avp:
    """Build an AVP from a typed value using the catalog's codec and default M bit.

    Unknown or vendor AVPs take ``bytes``; hiding an AVP the RFCs say MUST NOT be hidden is
    refused here, where the mistake is made, rather than on the wire.
    """
    spec = AVP_SPECS.get(attr_type) if vendor_id == VENDOR_IETF else None
    if spec is None:
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"AVP {vendor_id}:{attr_type} is not in the catalog: pass bytes")
        return Avp(attr_type, bytes(value), vendor_id, bool(mandatory), hidden,
                   extended=vendor_id > 0xFFFF)
    if hidden and not spec.hideable:
        raise ValueError(f"{spec.name} must not be hidden")
    raw = spec.codec.encode(value)
    return Avp(attr_type, raw, vendor_id, spec.mandatory if mandatory is None else mandatory,
               hidden)


def decode_value(avp: Avp) -> Any:
    """The typed value of a catalogued IETF AVP (raw bytes for anything else).

    Raises :class:`AvpError` with the general error code for a malformed value.
    """
    spec = AVP_SPECS.get(avp.attr_type) if avp.vendor_id == VENDOR_IETF else None
    if spec is None:
        return avp.value
    try:
        return spec.codec.decode(avp.value)
    except _Bad as exc:
        raise AvpError(f"{spec.name}: {exc.reason}", error_code=exc.error_code) from None
    except (struct.error, ValueError, IndexError) as exc:  # defensive: codecs check lengths
        raise AvpError(f"{spec.name}: {exc}", error_code=ErrorCode.BAD_LENGTH) from None
