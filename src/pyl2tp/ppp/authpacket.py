"""The PAP and CHAP packet codec: building and parsing the bytes, nothing else.

Wire formats (Code, Identifier, Length, Data as in LCP):

* PAP: Authenticate-Request ``PeerIDLen PeerID PasswdLen Password``; Authenticate-Ack/Nak
  ``MsgLen Message`` (RFC 1334 §2.2).
* CHAP: Challenge/Response ``ValueSize Value Name``; Success/Failure ``Message``
  (RFC 1994 §4). MS-CHAPv2 sub-formats the Response value (49 octets) and the Success and
  Failure messages (RFC 2759 §4-§6).

Parsers take received (hostile) bytes and raise only
:class:`~pyl2tp.ppp.packet.PppParseError`. Builders take our own values, already bounded by
the callers (see the ``MAX_*`` limits).
"""

from __future__ import annotations

import enum
import hashlib

from . import mschap
from .packet import ControlPacket, PppParseError
from .protocols import AuthMethod

__all__ = [
    "CHALLENGE_LEN",
    "MAX_MESSAGE_LEN",
    "MAX_NAME_LEN",
    "MAX_PASSWORD_LEN",
    "MD5_RESPONSE_LEN",
    "MSCHAPV2_RESPONSE_LEN",
    "MSCHAP_ERROR_AUTHENTICATION_FAILURE",
    "ChapCode",
    "PapCode",
    "chap_status",
    "chap_value_name",
    "md5_response",
    "message_from_wire",
    "message_to_wire",
    "mschapv2_failure_text",
    "mschapv2_response_value",
    "name_from_wire",
    "pap_reply",
    "pap_request",
    "parse_chap_value_name",
    "parse_pap_reply",
    "parse_pap_request",
    "response_well_formed",
    "split_mschapv2_response",
    "to_wire",
]

MAX_NAME_LEN = 255
"""Octets of a user name or authenticator name we send or accept. PAP's Peer-ID has a
one-octet length; the same bound for CHAP names keeps a hostile 64 KiB Name out of logs and
backends (pppd's MAXNAMELEN is 256 including the terminator)."""
MAX_PASSWORD_LEN = 255
"""PAP's Passwd-Length is one octet (RFC 1334 §2.2.1)."""
MAX_MESSAGE_LEN = 255
"""Octets of a Success/Failure/Ack/Nak message we send; received messages are cut to this
many characters before they reach events and logs."""
CHALLENGE_LEN = 16
"""Octets of challenge value we send, for CHAP-MD5 and (as the RFC requires) MS-CHAPv2."""
MD5_RESPONSE_LEN = 16
MSCHAPV2_RESPONSE_LEN = 49
"""Peer-Challenge 16, reserved 8, NT-Response 24, Flags 1 (RFC 2759 §4)."""
MSCHAP_ERROR_AUTHENTICATION_FAILURE = 691
"""ERROR_AUTHENTICATION_FAILURE, the E= code of a plain wrong password (RFC 2759 §6)."""


class PapCode(enum.IntEnum):
    """PAP packet codes (RFC 1334 §2.2)."""

    AUTHENTICATE_REQUEST = 1
    AUTHENTICATE_ACK = 2
    AUTHENTICATE_NAK = 3


class ChapCode(enum.IntEnum):
    """CHAP packet codes (RFC 1994 §4); MS-CHAPv2 uses the same four."""

    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


# ---------------------------------------------------------------------------------------------
# Text on the wire


def to_wire(text: str) -> bytes:
    """Names and passwords as octets. ``surrogateescape`` makes a name received as invalid
    UTF-8 go back out as exactly the octets that came in, so hashes cover what was sent."""
    return text.encode("utf-8", "surrogateescape")


def name_from_wire(raw: bytes) -> str:
    """A received name or password; the inverse of :func:`to_wire`."""
    return raw.decode("utf-8", "surrogateescape")


def message_from_wire(raw: bytes) -> str:
    """Human-readable text from the peer, safe to log: undecodable octets replaced, control
    characters escaped, cut to :data:`MAX_MESSAGE_LEN` characters."""
    text = raw.decode("utf-8", "replace")[:MAX_MESSAGE_LEN]
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def message_to_wire(text: str) -> bytes:
    """Our message text, cut to :data:`MAX_MESSAGE_LEN` octets on a character boundary."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= MAX_MESSAGE_LEN:
        return raw
    return raw[:MAX_MESSAGE_LEN].decode("utf-8", "ignore").encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Packets


def _packet(code: int, ident: int, data: bytes) -> bytes:
    return ControlPacket(code, ident & 0xFF, data).encode()


def _counted(data: bytes, what: str) -> tuple[bytes, bytes]:
    """Split ``LEN(1) FIELD rest`` into (FIELD, rest)."""
    if not data:
        raise PppParseError(f"{what} length missing")
    size = data[0]
    if 1 + size > len(data):
        raise PppParseError(f"{what} length {size} runs past the packet end")
    return data[1 : 1 + size], data[1 + size :]


def pap_request(ident: int, user: bytes, password: bytes) -> bytes:
    """An Authenticate-Request (RFC 1334 §2.2.1)."""
    return _packet(
        PapCode.AUTHENTICATE_REQUEST,
        ident,
        bytes((len(user),)) + user + bytes((len(password),)) + password,
    )


def parse_pap_request(data: bytes) -> tuple[bytes, bytes]:
    """(Peer-ID, Password) of an Authenticate-Request's Data."""
    user, rest = _counted(data, "Peer-ID")
    password, _extra = _counted(rest, "Password")
    return user, password


def pap_reply(code: PapCode, ident: int, message: str) -> bytes:
    """An Authenticate-Ack or -Nak (RFC 1334 §2.2.2)."""
    raw = message_to_wire(message)
    return _packet(code, ident, bytes((len(raw),)) + raw)


def parse_pap_reply(data: bytes) -> str:
    """The message of an Authenticate-Ack/Nak's Data, made safe to log."""
    # An empty Data field (no Msg-Length at all) is common enough to accept as "no message",
    # as pppd does; a Msg-Length running past the end is a corrupt packet.
    if not data:
        return ""
    message, _extra = _counted(data, "Msg")
    return message_from_wire(message)


def chap_value_name(code: ChapCode, ident: int, value: bytes, name: bytes) -> bytes:
    """A Challenge or Response (RFC 1994 §4.1)."""
    return _packet(code, ident, bytes((len(value),)) + value + name)


def parse_chap_value_name(data: bytes) -> tuple[bytes, bytes]:
    """(Value, Name) of a Challenge's or Response's Data."""
    value, name = _counted(data, "Value")
    if not value:
        raise PppParseError("Value-Size is 0")  # "one or more octets" (RFC 1994 §4.1)
    if len(name) > MAX_NAME_LEN:
        raise PppParseError(f"Name of {len(name)} octets is longer than {MAX_NAME_LEN}")
    return value, name


def chap_status(code: ChapCode, ident: int, message: str) -> bytes:
    """A Success or Failure (RFC 1994 §4.2)."""
    return _packet(code, ident, message_to_wire(message))


# ---------------------------------------------------------------------------------------------
# Response values and MS-CHAPv2 messages


def md5_response(ident: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 §4.1: MD5 over Identifier ‖ secret ‖ Challenge Value."""
    return hashlib.md5(bytes((ident & 0xFF,)) + secret + challenge).digest()


def mschapv2_response_value(peer_challenge: bytes, nt_response: bytes) -> bytes:
    """The 49-octet MS-CHAPv2 Response value: reserved octets and flags zero (RFC 2759 §4)."""
    return peer_challenge + bytes(8) + nt_response + b"\x00"


def split_mschapv2_response(value: bytes) -> tuple[bytes, bytes] | None:
    """(Peer-Challenge, NT-Response) of a 49-octet MS-CHAPv2 Response value, or None if the
    value is malformed (wrong size, non-zero reserved octets or flags: RFC 2759 §4 "MUST be
    zero")."""
    if len(value) != MSCHAPV2_RESPONSE_LEN:
        return None
    if any(value[16:24]) or value[48]:
        return None
    return value[:16], value[24:48]


def response_well_formed(method: AuthMethod, value: bytes) -> bool:
    """Whether a CHAP Response value has the form ``method`` gives it (RFC 1994 §4.1: 16
    octets for MD5; RFC 2759 §4 for MS-CHAPv2). A malformed one cannot be right."""
    if method is AuthMethod.CHAP_MD5:
        return len(value) == MD5_RESPONSE_LEN
    return split_mschapv2_response(value) is not None


def mschapv2_failure_text(challenge: bytes, message: str) -> str:
    """An MS-CHAPv2 Failure message, ``E=691 R=0 C=<32 hex> V=3 M=<message>`` (RFC 2759 §6;
    retry is not offered, so R=0)."""
    # C= "MUST be exactly 32 octets long and MUST be present" even when no retry is allowed.
    hex_challenge = challenge[: mschap.CHALLENGE_LEN].ljust(mschap.CHALLENGE_LEN, b"\0")
    return (
        f"E={MSCHAP_ERROR_AUTHENTICATION_FAILURE} R=0 C={hex_challenge.hex().upper()} V=3 "
        f"M={message}"
    )
