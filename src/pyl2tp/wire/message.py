"""Control messages of both versions: encode, decode and RFC validation.

:func:`decode_message` either returns a :class:`ControlMessage` or raises a
:class:`~pyl2tp.wire.errors.ParseError` that says how the protocol wants the failure answered:

* a malformed header → ``HeaderError`` (discard silently);
* an unknown Message Type with the M bit → StopCCN, General Error / Bad Value;
* an unknown or malformed AVP with the M bit → StopCCN or CDN (by message), General Error with
  Error Code 8 (unknown) or 2/3 (bad length / bad value), naming the attribute (RFC 3931 §5.2,
  §7.1; RFC 2661 §4.1, §7.1);
* a missing required AVP → StopCCN or CDN, General Error with Error Code 6 and the AVP's name
  (no RFC code is more specific);
* unknown or malformed AVPs without the M bit are ignored and listed in ``ignored``.

Tolerance for real peers: M bits are never validated on recognised AVPs (prol2tp sends v3 AVPs
and Protocol Version with M=0), a Result Code without an Error Code is accepted, and trailing
octets after Length are ignored.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import auth
from .avp import (
    AVP_SPECS,
    Avp,
    AvpProblem,
    ResultCode,
    avp_name,
    decode_avps,
    decode_value,
    encode_avp,
    make,
)
from .constants import (
    AVP_FLAG_H,
    AVP_FLAG_M,
    AVP_LENGTH_MASK,
    SESSION_MESSAGES,
    VENDOR_IETF,
    AvpType,
    CDNResult,
    ErrorCode,
    MessageType,
    StopCCNResult,
)
from .errors import AvpError, MessageError
from .header import CONTROL_HEADER_LEN, ControlHeader, decode_control_header

A = AvpType
M = MessageType

# RFC 2661 §6: the AVPs each message MUST carry (Message Type is implied).
REQUIRED_V2: dict[int, tuple[int, ...]] = {
    M.SCCRQ: (A.PROTOCOL_VERSION, A.HOST_NAME, A.FRAMING_CAPABILITIES, A.ASSIGNED_TUNNEL_ID),
    M.SCCRP: (A.PROTOCOL_VERSION, A.FRAMING_CAPABILITIES, A.HOST_NAME, A.ASSIGNED_TUNNEL_ID),
    M.SCCCN: (),
    M.StopCCN: (A.ASSIGNED_TUNNEL_ID, A.RESULT_CODE),
    M.HELLO: (),
    M.OCRQ: (A.ASSIGNED_SESSION_ID, A.CALL_SERIAL_NUMBER, A.MINIMUM_BPS, A.MAXIMUM_BPS,
             A.BEARER_TYPE, A.FRAMING_TYPE, A.CALLED_NUMBER),
    M.OCRP: (A.ASSIGNED_SESSION_ID,),
    M.OCCN: (A.TX_CONNECT_SPEED, A.FRAMING_TYPE),
    M.ICRQ: (A.ASSIGNED_SESSION_ID, A.CALL_SERIAL_NUMBER),
    M.ICRP: (A.ASSIGNED_SESSION_ID,),
    M.ICCN: (A.TX_CONNECT_SPEED, A.FRAMING_TYPE),
    M.CDN: (A.RESULT_CODE, A.ASSIGNED_SESSION_ID),
    M.WEN: (A.CALL_ERRORS,),
    M.SLI: (A.ACCM,),
}

_V3_SESSION_IDS = (A.LOCAL_SESSION_ID, A.REMOTE_SESSION_ID)
_V3_CC = (A.HOST_NAME, A.ROUTER_ID, A.ASSIGNED_CONNECTION_ID, A.PW_CAPABILITIES_LIST)
# RFC 3931 §6.
REQUIRED_V3: dict[int, tuple[int, ...]] = {
    M.SCCRQ: _V3_CC,
    M.SCCRP: _V3_CC,
    M.SCCCN: (),
    M.StopCCN: (A.RESULT_CODE,),
    M.HELLO: (),
    M.ACK: (),
    M.ICRQ: (*_V3_SESSION_IDS, A.CALL_SERIAL_NUMBER, A.PW_TYPE, A.REMOTE_END_ID,
             A.CIRCUIT_STATUS),
    M.ICRP: (*_V3_SESSION_IDS, A.CIRCUIT_STATUS),
    M.ICCN: _V3_SESSION_IDS,
    M.OCRQ: (*_V3_SESSION_IDS, A.CALL_SERIAL_NUMBER, A.PW_TYPE, A.REMOTE_END_ID,
             A.CIRCUIT_STATUS),
    M.OCRP: (*_V3_SESSION_IDS, A.CIRCUIT_STATUS),
    M.OCCN: _V3_SESSION_IDS,
    M.CDN: (A.RESULT_CODE, *_V3_SESSION_IDS),
    M.WEN: (*_V3_SESSION_IDS, A.CALL_ERRORS),
    M.SLI: _V3_SESSION_IDS,
}
del A, M

# Types this implementation understands: anything else with the M bit set is invalid.
KNOWN_TYPES = frozenset(REQUIRED_V2) | frozenset(REQUIRED_V3) | {MessageType.CSUN,
                                                                 MessageType.CSURQ}


def message_name(msg_type: int) -> str:
    try:
        return MessageType(msg_type).name
    except ValueError:
        return f"type-{msg_type}"


@dataclass(slots=True)
class ControlMessage:
    """A decoded (or to-be-encoded) control message.

    ``tunnel_id`` is the v2 Tunnel ID or v3 Control Connection ID of the recipient;
    ``msg_type`` is ``MessageType.ZLB`` for a message with no AVPs.
    """

    msg_type: int
    avps: list[Avp] = field(default_factory=list)
    version: int = 2
    tunnel_id: int = 0
    session_id: int = 0
    ns: int = 0
    nr: int = 0
    ignored: list[AvpProblem] = field(default_factory=list)
    vendor_id: int = VENDOR_IETF
    type_mandatory: bool = True
    _values: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return message_name(self.msg_type)

    @property
    def is_zlb(self) -> bool:
        return self.msg_type == MessageType.ZLB

    def get(self, attr_type: int, default: Any = None, vendor_id: int = VENDOR_IETF) -> Any:
        """Typed value of the first AVP of this type (raw bytes for uncatalogued ones)."""
        if vendor_id == VENDOR_IETF and attr_type in self._values:
            return self._values[attr_type]
        for avp in self.avps:
            if avp.attr_type == attr_type and avp.vendor_id == vendor_id:
                return decode_value(avp)
        return default

    def has(self, attr_type: int, vendor_id: int = VENDOR_IETF) -> bool:
        return any(a.attr_type == attr_type and a.vendor_id == vendor_id for a in self.avps)

    def all(self, attr_type: int, vendor_id: int = VENDOR_IETF) -> list[Any]:
        return [decode_value(a) for a in self.avps
                if a.attr_type == attr_type and a.vendor_id == vendor_id]

    def add(self, attr_type: int, value: Any = True, **kw: Any) -> ControlMessage:
        """Append a typed AVP (see :func:`pyl2tp.wire.avp.make`); returns self for chaining."""
        self.avps.append(make(attr_type, value, **kw))
        return self


def _clears(msg_type: int) -> str:
    return "session" if msg_type in SESSION_MESSAGES else "tunnel"


def _general_error(msg_type: int) -> int:
    return CDNResult.GENERAL_ERROR if msg_type in SESSION_MESSAGES else StopCCNResult.GENERAL_ERROR


def decode_message(
    data: bytes,
    *,
    offset: int = 0,
    hide_key: bytes | None = None,
    validate: bool = True,
) -> ControlMessage:
    """Decode a control message at ``offset`` (4 for L2TPv3 over IP, past the zero session id).

    ``hide_key`` is the v2 shared secret or the v3 derived hiding key. With ``validate`` the
    RFC's required AVPs are enforced for known message types.
    """
    hdr = decode_control_header(data, offset)
    start = offset + CONTROL_HEADER_LEN
    end = offset + hdr.length
    msg = ControlMessage(MessageType.ZLB, [], hdr.version, hdr.tunnel_id, hdr.session_id,
                         hdr.ns, hdr.nr)
    if start == end:
        return msg
    # The Message Type AVP must come first; read it before anything can fail, so that later
    # errors know whether to clear a session or the control connection.
    # A non-zero vendor id on it marks a vendor-specific message (RFC 3931 §5.4.1).
    word, vendor, attr = struct.unpack_from(">HHH", data, start) if end - start >= 8 else (0,) * 3
    if attr != AvpType.MESSAGE_TYPE or (word & (AVP_LENGTH_MASK | AVP_FLAG_H)) != 8:
        raise MessageError("first AVP is not a well-formed Message Type", message=msg,
                           result_code=StopCCNResult.GENERAL_ERROR,
                           error_code=ErrorCode.BAD_VALUE, clears="tunnel")
    msg.msg_type = struct.unpack_from(">H", data, start + 6)[0]
    msg.vendor_id = vendor
    msg.type_mandatory = bool(word & AVP_FLAG_M)
    try:
        avps, problems = decode_avps(data, start, end, version=hdr.version, hide_key=hide_key)
    except AvpError as exc:
        raise MessageError(f"{msg.name}: {exc.reason}", message=msg,
                           result_code=_general_error(msg.msg_type), error_code=exc.error_code,
                           clears=_clears(msg.msg_type)) from None
    msg.avps = avps
    if msg.vendor_id != VENDOR_IETF or msg.msg_type not in KNOWN_TYPES:
        if msg.type_mandatory:
            raise MessageError(f"unknown mandatory message type {msg.vendor_id}:{msg.msg_type}",
                               message=msg,
                               result_code=StopCCNResult.GENERAL_ERROR,
                               error_code=ErrorCode.BAD_VALUE, clears="tunnel")
        return msg
    _type_values(msg, problems)
    for problem in problems:
        if problem.mandatory:
            raise MessageError(
                f"{msg.name}: {avp_name(problem.attr_type, problem.vendor_id)}: "
                f"{problem.reason}",
                message=msg, result_code=_general_error(msg.msg_type),
                error_code=problem.error_code, clears=_clears(msg.msg_type))
    msg.ignored = problems
    if validate:
        required = (REQUIRED_V2 if hdr.version == 2 else REQUIRED_V3).get(msg.msg_type, ())
        for attr_type in required:
            if attr_type not in msg._values:
                raise MessageError(
                    f"{msg.name} lacks the required {AVP_SPECS[attr_type].name} AVP",
                    message=msg, result_code=_general_error(msg.msg_type),
                    error_code=ErrorCode.VENDOR_SPECIFIC, clears=_clears(msg.msg_type))
    return msg


def _type_values(msg: ControlMessage, problems: list[AvpProblem]) -> None:
    """Decode catalogued IETF values once; unknown and malformed ones become problems."""
    values = msg._values
    kept: list[Avp] = []
    for avp in msg.avps:
        if avp.vendor_id != VENDOR_IETF or avp.attr_type not in AVP_SPECS:
            if avp.mandatory:
                problems.append(AvpProblem(avp.attr_type, avp.vendor_id, True,
                                           ErrorCode.UNKNOWN_MANDATORY_AVP,
                                           "unrecognised AVP with the M bit set"))
            kept.append(avp)
            continue
        try:
            value = decode_value(avp)
        except AvpError as exc:
            problems.append(AvpProblem(avp.attr_type, avp.vendor_id, avp.mandatory,
                                       exc.error_code or ErrorCode.BAD_LENGTH, exc.reason))
            continue
        kept.append(avp)
        values.setdefault(avp.attr_type, value)
    msg.avps = kept


HIDDEN_MIN_LEN = 16
"""Hidden subformats (original length, value, padding) are at least this long."""


def encode_message(
    msg: ControlMessage,
    *,
    hide_key: bytes | None = None,
    ip_encap: bool = False,
    rng: Callable[[int], bytes] = os.urandom,
    hide_pad: int = 0,
    digest_type: int | None = None,
    auth_key: bytes | None = None,
    sender_nonce: bytes | None = None,
    receiver_nonce: bytes | None = None,
) -> bytes:
    """Encode a control message (a ZLB if it has no AVPs and type ``ZLB``).

    Hidden AVPs use the most recent Random Vector before them; if none precedes the first
    hidden AVP, one of 16 random octets is inserted. A hidden value is padded with random
    octets to :data:`HIDDEN_MIN_LEN`, and ``hide_pad`` adds up to that many more to blur its
    length further. With ``digest_type`` a Message Digest
    AVP is placed right after Message Type and signed (RFC 3931 §5.4.1).
    """
    parts: list[bytes] = []
    if msg.msg_type != MessageType.ZLB:
        parts.append(encode_avp(Avp(AvpType.MESSAGE_TYPE, struct.pack(">H", msg.msg_type),
                                    msg.vendor_id, msg.type_mandatory)))
        if digest_type is not None:
            size = auth.digest_size(digest_type)
            parts.append(encode_avp(Avp(AvpType.MESSAGE_DIGEST,
                                        bytes((digest_type,)) + bytes(size))))
    rv: bytes | None = None
    for avp in _avps_for_encoding(msg):
        if avp.vendor_id == VENDOR_IETF and avp.attr_type == AvpType.RANDOM_VECTOR:
            rv = avp.value
        elif avp.hidden and rv is None:
            rv = rng(16)
            parts.append(encode_avp(Avp(AvpType.RANDOM_VECTOR, rv)))
        pad = b""
        if avp.hidden:
            # Short values are padded to one MD5 block: it hides their length, and l2tpns
            # refuses hidden subformats under 8 octets (RFC 2661 §4.3 allows padding).
            short = max(0, HIDDEN_MIN_LEN - 2 - len(avp.value))
            extra = rng(1)[0] % (hide_pad + 1) if hide_pad else 0
            pad = rng(short + extra) if short + extra else b""
        parts.append(encode_avp(avp, hide_key=hide_key, rv=rv, pad=pad))
    body = b"".join(parts)
    header = ControlHeader(msg.version, msg.tunnel_id, msg.session_id, msg.ns, msg.nr)
    out = bytearray(b"\x00\x00\x00\x00" if ip_encap else b"")
    out += header.encode(len(body)) + body
    if len(out) - (4 if ip_encap else 0) > 0xFFFF:
        raise ValueError("control message longer than 65535 octets")
    if digest_type is not None:
        if auth_key is None:
            raise ValueError("a Message Digest needs an authentication key")
        auth.sign(out, 4 if ip_encap else 0, auth_key, sender_nonce, receiver_nonce)
    return bytes(out)


def _avps_for_encoding(msg: ControlMessage) -> Iterable[Avp]:
    """The AVPs to write after the ones the encoder places itself (Message Type, Message
    Digest). A decoded vendor-specific message keeps its vendor's Message Type AVP first in
    ``avps``; it is the one the encoder writes, so it is skipped too, or a decoded message
    would re-encode with two."""
    for index, avp in enumerate(msg.avps):
        if avp.vendor_id == VENDOR_IETF and avp.attr_type in (AvpType.MESSAGE_TYPE,
                                                              AvpType.MESSAGE_DIGEST):
            continue  # placed by the encoder
        if index == 0 and avp.attr_type == AvpType.MESSAGE_TYPE and not avp.extended and (
                avp.vendor_id == msg.vendor_id):
            continue  # the vendor-specific Message Type, also placed by the encoder
        yield avp


def result_code_avp(result: int, error: int | None = None, message: str | None = None) -> Avp:
    """A Result Code AVP, always with an Error Code field: some peers (xl2tpd with SANITY)
    reject the 2-octet form."""
    return make(AvpType.RESULT_CODE, ResultCode(result, error if error is not None else 0,
                                                message))


__all__ = [
    "KNOWN_TYPES",
    "REQUIRED_V2",
    "REQUIRED_V3",
    "ControlMessage",
    "decode_message",
    "encode_message",
    "message_name",
    "result_code_avp",
]
