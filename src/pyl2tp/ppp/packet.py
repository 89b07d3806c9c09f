"""PPP control packets of the LCP family (RFC 1661 §5, §6; RFC 1332 §2; RFC 5072 §3).

LCP, IPCP and IPV6CP share one packet format (Code, Identifier, Length, Data) and one
option format (Type, Length, Data); only the set of codes differs (LCP adds the link
maintenance codes 8-11). This module is the pure codec for both: no state, no time.

Every byte handed to :meth:`ControlPacket.decode` or :func:`decode_options` comes from the
network and is hostile. The only exception either can raise is :class:`PppParseError`, so a
receive loop has exactly one thing to catch and count. Octets past the packet's Length are
padding and ignored (RFC 1661 §5, Length); a Length larger than the bytes present, or an
option that runs past the end, makes the whole packet invalid (RFC 1661 §6, Data).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "HEADER_LEN",
    "LCP_CODES",
    "NCP_CODES",
    "OPTION_HEADER_LEN",
    "PROTO_IPCP",
    "PROTO_IPV6CP",
    "PROTO_LCP",
    "Code",
    "ControlPacket",
    "Option",
    "PppParseError",
    "codes_for",
    "decode_options",
    "encode_options",
]

PROTO_LCP = 0xC021
PROTO_IPCP = 0x8021
PROTO_IPV6CP = 0x8057

HEADER_LEN = 4
"""Code(1) + Identifier(1) + Length(2)."""

OPTION_HEADER_LEN = 2
"""Type(1) + Length(1)."""

MAX_PACKET_LEN = 0xFFFF
MAX_OPTION_LEN = 0xFF

_HDR = struct.Struct(">BBH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class Code(IntEnum):
    """Packet codes (RFC 1661 §5; 12 and 13 from RFC 1570, named only for logs)."""

    CONFIGURE_REQUEST = 1
    CONFIGURE_ACK = 2
    CONFIGURE_NAK = 3
    CONFIGURE_REJECT = 4
    TERMINATE_REQUEST = 5
    TERMINATE_ACK = 6
    CODE_REJECT = 7
    PROTOCOL_REJECT = 8
    ECHO_REQUEST = 9
    ECHO_REPLY = 10
    DISCARD_REQUEST = 11
    IDENTIFICATION = 12
    TIME_REMAINING = 13


NCP_CODES: frozenset[int] = frozenset(range(1, 8))
"""Codes an NCP understands: anything else gets a Code-Reject (RFC 1332 §2, RFC 5072 §3)."""

LCP_CODES: frozenset[int] = frozenset(range(1, 12))
"""Codes RFC 1661 gives LCP: the NCP codes plus Protocol-Reject and the link maintenance
codes. Extensions (RFC 1570's 12 and 13) are added by whoever implements them."""

_CONFIGURE_CODES = frozenset(
    (Code.CONFIGURE_REQUEST, Code.CONFIGURE_ACK, Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT)
)
_MAGIC_CODES = frozenset((Code.ECHO_REQUEST, Code.ECHO_REPLY, Code.DISCARD_REQUEST))


def codes_for(protocol: int) -> frozenset[int]:
    """The codes RFC 1661 defines for ``protocol``: LCP has 1-11, the NCPs 1-7."""
    return LCP_CODES if protocol == PROTO_LCP else NCP_CODES


class PppParseError(Exception):
    """Malformed PPP control bytes; the only exception the codec raises on network input.

    The protocol's answer to every such packet is the same, silent discard without affecting
    the automaton (RFC 1661 §5 Length, §6 Data), so the exception carries only a reason for
    logs and counters.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Option:
    """One Configuration Option: ``type`` and the ``data`` after the two header octets.

    Options stay opaque here; their meaning belongs to the protocol (LCP, IPCP, ...) that
    judges them. Comparing two options compares their exact bytes, which is what
    Configure-Ack and Configure-Reject validation needs (RFC 1661 §5.2, §5.4).
    """

    type: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFF:
            raise ValueError(f"option type {self.type} does not fit one octet")
        if len(self.data) + OPTION_HEADER_LEN > MAX_OPTION_LEN:
            raise ValueError(f"option data of {len(self.data)} octets does not fit")

    @property
    def length(self) -> int:
        """The option's Length field: header plus data."""
        return OPTION_HEADER_LEN + len(self.data)

    def encode(self) -> bytes:
        return bytes((self.type, self.length)) + self.data

    @classmethod
    def u8(cls, type_: int, value: int) -> Option:
        return cls(type_, bytes((value,)))

    @classmethod
    def u16(cls, type_: int, value: int) -> Option:
        return cls(type_, _U16.pack(value))

    @classmethod
    def u32(cls, type_: int, value: int) -> Option:
        return cls(type_, _U32.pack(value))

    def as_int(self) -> int:
        """The data as a big-endian unsigned integer (0 for empty data), for numeric options."""
        return int.from_bytes(self.data, "big")


def decode_options(data: bytes) -> tuple[Option, ...]:
    """Split the Options field of a Configure-* packet.

    An option Length below 2 cannot even cover its own header and would loop forever; one
    that runs past the end of the field means the packet is corrupt and must be discarded
    whole (RFC 1661 §6). Either raises :class:`PppParseError`.
    """
    options: list[Option] = []
    pos = 0
    end = len(data)
    while pos < end:
        if end - pos < OPTION_HEADER_LEN:
            raise PppParseError(f"truncated option header at offset {pos}")
        opt_type = data[pos]
        opt_len = data[pos + 1]
        if opt_len < OPTION_HEADER_LEN:
            raise PppParseError(f"option {opt_type} has length {opt_len} < 2")
        if pos + opt_len > end:
            raise PppParseError(f"option {opt_type} of length {opt_len} runs past the end")
        options.append(Option(opt_type, bytes(data[pos + OPTION_HEADER_LEN : pos + opt_len])))
        pos += opt_len
    return tuple(options)


def encode_options(options: Iterable[Option]) -> bytes:
    return b"".join(opt.encode() for opt in options)


@dataclass(frozen=True, slots=True)
class ControlPacket:
    """One LCP/IPCP/IPV6CP packet. ``code`` is a plain int so that unknown codes survive
    decoding: they must be answered with a Code-Reject, not dropped as malformed."""

    code: int
    identifier: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFF or not 0 <= self.identifier <= 0xFF:
            raise ValueError("code and identifier are single octets")
        if HEADER_LEN + len(self.data) > MAX_PACKET_LEN:
            raise ValueError("packet does not fit a 16-bit Length")

    @property
    def length(self) -> int:
        """The Length field: header plus data, padding excluded."""
        return HEADER_LEN + len(self.data)

    @property
    def code_name(self) -> str:
        try:
            return Code(self.code).name
        except ValueError:
            return f"code {self.code}"

    def encode(self) -> bytes:
        return _HDR.pack(self.code, self.identifier, self.length) + self.data

    @classmethod
    def decode(cls, buf: bytes) -> ControlPacket:
        """Parse the Information field of a control frame.

        Trailing octets beyond Length are padding (RFC 1661 §2, §5) and dropped; a Length
        below the header size or beyond the bytes present is an invalid Length and raises.
        """
        if len(buf) < HEADER_LEN:
            raise PppParseError(f"{len(buf)} octets is shorter than the packet header")
        code, identifier, length = _HDR.unpack_from(buf)
        if length < HEADER_LEN:
            raise PppParseError(f"Length {length} is shorter than the packet header")
        if length > len(buf):
            raise PppParseError(f"Length {length} exceeds the {len(buf)} octets received")
        return cls(code, identifier, bytes(buf[HEADER_LEN:length]))

    # -- typed views ------------------------------------------------------------------------

    def options(self) -> tuple[Option, ...]:
        """The option list of a Configure-Request/Ack/Nak/Reject."""
        if self.code not in _CONFIGURE_CODES:
            raise PppParseError(f"{self.code_name} carries no options")
        return decode_options(self.data)

    def magic_and_data(self) -> tuple[int, bytes]:
        """Magic-Number and trailing data of an Echo-Request/Reply or Discard-Request."""
        if self.code not in _MAGIC_CODES:
            raise PppParseError(f"{self.code_name} carries no magic number")
        if len(self.data) < 4:
            raise PppParseError(f"{self.code_name} too short for a magic number")
        return _U32.unpack_from(self.data)[0], self.data[4:]

    def rejected_protocol(self) -> tuple[int, bytes]:
        """Rejected-Protocol and Rejected-Information of a Protocol-Reject (RFC 1661 §5.7)."""
        if self.code != Code.PROTOCOL_REJECT:
            raise PppParseError(f"{self.code_name} is not a Protocol-Reject")
        if len(self.data) < 2:
            raise PppParseError("Protocol-Reject too short for the rejected protocol")
        return _U16.unpack_from(self.data)[0], self.data[2:]

    def rejected_code(self) -> int:
        """The code of the packet a Code-Reject returns (its first octet, RFC 1661 §5.6).

        Only that octet is required: the copy may have been truncated to the MRU.
        """
        if self.code != Code.CODE_REJECT:
            raise PppParseError(f"{self.code_name} is not a Code-Reject")
        if not self.data:
            raise PppParseError("Code-Reject carries no rejected packet")
        return self.data[0]

    # -- builders ---------------------------------------------------------------------------

    @classmethod
    def configure(cls, code: int, identifier: int, options: Sequence[Option]) -> ControlPacket:
        """A Configure-Request/Ack/Nak/Reject carrying ``options`` in the order given."""
        if code not in _CONFIGURE_CODES:
            raise ValueError(f"code {code} is not a Configure-* code")
        return cls(code, identifier, encode_options(options))

    @classmethod
    def with_magic(cls, code: int, identifier: int, magic: int, data: bytes = b"") -> ControlPacket:
        """An Echo-Request/Reply or Discard-Request (RFC 1661 §5.8, §5.9)."""
        if code not in _MAGIC_CODES:
            raise ValueError(f"code {code} carries no magic number")
        return cls(code, identifier, _U32.pack(magic & 0xFFFFFFFF) + data)

    @classmethod
    def code_reject(cls, identifier: int, rejected: bytes, max_length: int) -> ControlPacket:
        """A Code-Reject of ``rejected`` (the offending packet), the whole thing truncated to
        ``max_length`` octets, the peer's MRU (RFC 1661 §5.6)."""
        room = max(0, min(max_length, MAX_PACKET_LEN) - HEADER_LEN)
        return cls(Code.CODE_REJECT, identifier, bytes(rejected[:room]))

    @classmethod
    def protocol_reject(
        cls, identifier: int, protocol: int, information: bytes, max_length: int
    ) -> ControlPacket:
        """A Protocol-Reject of ``protocol``, truncated to the peer's MRU (RFC 1661 §5.7)."""
        room = max(0, min(max_length, MAX_PACKET_LEN) - HEADER_LEN - 2)
        return cls(Code.PROTOCOL_REJECT, identifier, _U16.pack(protocol) + information[:room])
