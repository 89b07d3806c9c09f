"""PPP protocol numbers and the authentication methods LCP can negotiate.

Shared by LCP (which negotiates the Authentication-Protocol option), the authentication
protocols themselves and the link that dispatches frames by protocol number, so none of
them has to import another just for a constant.
"""

from __future__ import annotations

import enum

from .packet import PROTO_IPCP, PROTO_IPV6CP, PROTO_LCP

__all__ = [
    "PROTO_CCP",
    "PROTO_CHAP",
    "PROTO_IPCP",
    "PROTO_IPV4",
    "PROTO_IPV6",
    "PROTO_IPV6CP",
    "PROTO_LCP",
    "PROTO_LQR",
    "PROTO_PAP",
    "AuthMethod",
]

PROTO_IPV4 = 0x0021
PROTO_IPV6 = 0x0057
PROTO_PAP = 0xC023
PROTO_LQR = 0xC025
PROTO_CHAP = 0xC223
PROTO_CCP = 0x80FD

CHAP_MD5 = 0x05
"""CHAP algorithm octet for MD5 (RFC 1994 §3)."""
CHAP_MSV2 = 0x81
"""CHAP algorithm octet for MS-CHAPv2 (RFC 2759 §2)."""


class AuthMethod(enum.Enum):
    """An authentication protocol as named in configuration and negotiated by LCP.

    The value is the configuration spelling (pppd's ``require-pap``/``require-chap``/
    ``require-mschap-v2`` family).
    """

    PAP = "pap"
    CHAP_MD5 = "chap-md5"
    MSCHAP_V2 = "mschap-v2"

    @property
    def protocol(self) -> int:
        """The PPP protocol the exchange runs on (C023 or C223)."""
        return PROTO_PAP if self is AuthMethod.PAP else PROTO_CHAP

    @property
    def option_data(self) -> bytes:
        """The Authentication-Protocol option's data: protocol, then CHAP's algorithm octet
        (RFC 1661 §6.2, RFC 1994 §3, RFC 2759 §2)."""
        if self is AuthMethod.PAP:
            return PROTO_PAP.to_bytes(2, "big")
        algorithm = CHAP_MD5 if self is AuthMethod.CHAP_MD5 else CHAP_MSV2
        return PROTO_CHAP.to_bytes(2, "big") + bytes((algorithm,))

    @classmethod
    def from_option_data(cls, data: bytes) -> AuthMethod | None:
        """The method an Authentication-Protocol option asks for, or None when it is one we
        do not implement (LQR-style garbage, MS-CHAPv1, an unknown CHAP algorithm)."""
        for method in cls:
            if data == method.option_data:
                return method
        return None

    @classmethod
    def parse(cls, name: str) -> AuthMethod:
        """From the configuration spelling; raises ValueError naming the valid ones."""
        try:
            return cls(name.strip().lower())
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown authentication method {name!r} (use {valid})") from None
