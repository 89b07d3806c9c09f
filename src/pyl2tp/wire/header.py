"""L2TP headers: v2 control and data (RFC 2661 §3.1), v3 control and data over UDP and IP
(RFC 3931 §3.2, §4.1.1, §4.1.2) with cookies and the default L2-specific sublayer.

Dispatch on the version nibble first: v2 flag bits mean nothing in a v3 header. Every length
field is checked against the datagram before it bounds a read; trailing bytes after a control
message's Length are tolerated (Wireshark trims to Length too).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .constants import (
    FLAG_L,
    FLAG_O,
    FLAG_P,
    FLAG_S,
    FLAG_T,
    L2SPEC_S_BIT,
    L2SPEC_SEQ_MASK,
    VERSION_MASK,
    L2SpecType,
)
from .errors import HeaderError

CONTROL_HEADER_LEN = 12
_CTRL = struct.Struct(">HHHHHH")  # flags, length, tid|ccid-hi, sid|ccid-lo, ns, nr
_CTRL_V3 = struct.Struct(">HHIHH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

CONTROL_FLAGS_V2 = FLAG_T | FLAG_L | FLAG_S | 2
CONTROL_FLAGS_V3 = FLAG_T | FLAG_L | FLAG_S | 3


def peek_version(data: bytes) -> int:
    """The version nibble of a UDP-carried L2TP packet (1 = L2F, 2, 3), for dispatch."""
    if len(data) < 2:
        raise HeaderError("datagram shorter than the L2TP flags word")
    return data[1] & VERSION_MASK


def is_control(data: bytes) -> bool:
    """True for a UDP-carried control message (T bit set)."""
    return len(data) >= 1 and bool(data[0] & 0x80)


@dataclass(slots=True)
class ControlHeader:
    """The 12-octet control header shared by v2 and v3 (over IP it follows 4 zero octets).

    For v2, ``tunnel_id``/``session_id`` are the recipient's 16-bit ids; for v3 ``tunnel_id``
    holds the 32-bit Control Connection ID and ``session_id`` is always 0.
    """

    version: int
    tunnel_id: int
    session_id: int
    ns: int
    nr: int
    length: int = CONTROL_HEADER_LEN

    def encode(self, body_len: int) -> bytes:
        length = CONTROL_HEADER_LEN + body_len
        if self.version == 2:
            return _CTRL.pack(
                CONTROL_FLAGS_V2, length, self.tunnel_id, self.session_id, self.ns, self.nr
            )
        return _CTRL_V3.pack(CONTROL_FLAGS_V3, length, self.tunnel_id, self.ns, self.nr)


def decode_control_header(data: bytes, offset: int = 0) -> ControlHeader:
    """Parse a control header at ``offset``; the message spans ``offset .. offset + length``.

    Rejects (as a malformed header, to be discarded) anything that is not T=1, L=1, S=1 with
    version 2 or 3, carries O or P (v2), or whose Length is shorter than the header or longer
    than the datagram.
    """
    avail = len(data) - offset
    if avail < CONTROL_HEADER_LEN:
        raise HeaderError(f"control message of {max(avail, 0)} octets is shorter than its header")
    flags, length, hi, lo, ns, nr = _CTRL.unpack_from(data, offset)
    version = flags & VERSION_MASK
    if not flags & FLAG_T:
        raise HeaderError("T bit clear: not a control message")
    if not flags & FLAG_L or not flags & FLAG_S:
        raise HeaderError("control message without the L and S bits")
    if version == 2:
        if flags & (FLAG_O | FLAG_P):
            raise HeaderError("control message with the O or P bit set")
        tunnel_id, session_id = hi, lo
    elif version == 3:
        tunnel_id, session_id = (hi << 16) | lo, 0
    else:
        raise HeaderError(f"unsupported L2TP version {version}")
    if length < CONTROL_HEADER_LEN:
        raise HeaderError(f"Length {length} is shorter than the control header")
    if length > avail:
        raise HeaderError(f"Length {length} exceeds the {avail}-octet datagram")
    return ControlHeader(version, tunnel_id, session_id, ns, nr, length)


@dataclass(slots=True)
class DataHeaderV2:
    """An L2TPv2 data header. ``offset_size`` is the pad length after the Offset Size field
    (the kernel and Wireshark reading of RFC 2661's ambiguous wording)."""

    tunnel_id: int
    session_id: int
    ns: int | None = None
    nr: int | None = None
    length_field: bool = False
    offset_size: int | None = None
    priority: bool = False

    def encode(self, payload: bytes = b"") -> bytes:
        flags = 2
        if self.length_field:
            flags |= FLAG_L
        if self.ns is not None:
            flags |= FLAG_S
        if self.offset_size is not None:
            flags |= FLAG_O
        if self.priority:
            flags |= FLAG_P
        parts = [b""]
        if self.ns is not None:
            parts.append(struct.pack(">HH", self.ns, self.nr or 0))
        if self.offset_size is not None:
            parts.append(_U16.pack(self.offset_size) + bytes(self.offset_size))
        rest = struct.pack(">HH", self.tunnel_id, self.session_id) + b"".join(parts)
        if self.length_field:
            total = 4 + len(rest) + len(payload)
            return struct.pack(">HH", flags, total) + rest + payload
        return _U16.pack(flags) + rest + payload


def decode_data_v2(data: bytes) -> tuple[DataHeaderV2, bytes]:
    """Parse an L2TPv2 data message into its header and PPP payload."""
    n = len(data)
    if n < 6:
        raise HeaderError("v2 data message shorter than 6 octets")
    flags = _U16.unpack_from(data, 0)[0]
    if flags & FLAG_T:
        raise HeaderError("T bit set: not a data message")
    if flags & VERSION_MASK != 2:
        raise HeaderError(f"version {flags & VERSION_MASK} is not 2")
    ptr = 2
    end = n
    has_len = bool(flags & FLAG_L)
    if has_len:
        length = _U16.unpack_from(data, 2)[0]
        if length > n:
            raise HeaderError(f"Length {length} exceeds the {n}-octet datagram")
        end = length
        ptr = 4
    if end < ptr + 4:
        raise HeaderError("v2 data message truncated in the tunnel/session ids")
    tid, sid = struct.unpack_from(">HH", data, ptr)
    ptr += 4
    hdr = DataHeaderV2(tid, sid, length_field=has_len, priority=bool(flags & FLAG_P))
    if flags & FLAG_S:
        if end < ptr + 4:
            raise HeaderError("v2 data message truncated in Ns/Nr")
        hdr.ns, hdr.nr = struct.unpack_from(">HH", data, ptr)
        ptr += 4
    if flags & FLAG_O:
        if end < ptr + 2:
            raise HeaderError("v2 data message truncated in Offset Size")
        off = _U16.unpack_from(data, ptr)[0]
        ptr += 2 + off
        if ptr > end:
            raise HeaderError(f"Offset Size {off} points past the end of the message")
        hdr.offset_size = off
    return hdr, bytes(data[ptr:end])


@dataclass(slots=True)
class DataHeaderV3:
    """An L2TPv3 data header: session id, cookie and optional default L2-specific sublayer.

    The cookie length and sublayer are per-session configuration, not self-describing on the
    wire, so decoding needs them (RFC 3931 §4.1: the Session ID alone determines them).
    ``seq`` is the sublayer sequence number when its S bit is set, else None.
    """

    session_id: int
    cookie: bytes = b""
    l2spec_type: int = L2SpecType.NONE
    seq: int | None = None

    def encode(self, payload: bytes = b"", *, udp: bool = True) -> bytes:
        out = b"\x00\x03\x00\x00" if udp else b""
        out += _U32.pack(self.session_id) + self.cookie
        if self.l2spec_type == L2SpecType.DEFAULT:
            word = 0 if self.seq is None else L2SPEC_S_BIT | (self.seq & L2SPEC_SEQ_MASK)
            out += _U32.pack(word)
        return out + payload


def decode_data_v3(
    data: bytes, *, udp: bool, cookie_len: int = 0, l2spec_type: int = L2SpecType.NONE
) -> tuple[DataHeaderV3, bytes]:
    """Parse an L2TPv3 data message (UDP form starts with the flags word; IP form with the
    session id) given the session's cookie length and sublayer type."""
    if cookie_len not in (0, 4, 8):
        raise ValueError("cookie length must be 0, 4 or 8")
    ptr = 0
    n = len(data)
    if udp:
        if n < 8:
            raise HeaderError("v3 UDP data message shorter than 8 octets")
        flags = _U16.unpack_from(data, 0)[0]
        if flags & FLAG_T:
            raise HeaderError("T bit set: not a data message")
        if flags & VERSION_MASK != 3:
            raise HeaderError(f"version {flags & VERSION_MASK} is not 3")
        ptr = 4
    elif n < 4:
        raise HeaderError("v3 IP data message shorter than its session id")
    sid = _U32.unpack_from(data, ptr)[0]
    if sid == 0:
        raise HeaderError("session id 0 is reserved for control messages")
    ptr += 4
    sub = 4 if l2spec_type == L2SpecType.DEFAULT else 0
    if n < ptr + cookie_len + sub:
        raise HeaderError("v3 data message truncated in its cookie or sublayer")
    cookie = bytes(data[ptr : ptr + cookie_len])
    ptr += cookie_len
    seq = None
    if sub:
        word = _U32.unpack_from(data, ptr)[0]
        if word & L2SPEC_S_BIT:
            seq = word & L2SPEC_SEQ_MASK
        ptr += 4
    return DataHeaderV3(sid, cookie, l2spec_type, seq), bytes(data[ptr:])
