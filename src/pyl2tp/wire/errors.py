"""The one exception family that network bytes can raise.

Receive loops catch :class:`ParseError` and nothing else: it either means "discard silently"
(``result_code is None``, e.g. a malformed header) or carries the StopCCN/CDN result and error
code the protocol prescribes, so the control plane can answer without re-deriving the reason.
"""

from __future__ import annotations


class ParseError(Exception):
    """Malformed bytes. ``result_code``/``error_code`` say how the protocol wants it answered.

    ``clears`` is ``"tunnel"`` when the control connection must be cleared (StopCCN),
    ``"session"`` when only the session must be (CDN), and ``None`` when the bytes are simply
    discarded (a malformed header: RFC 2661 §7.1, RFC 3931 §7.1).
    """

    def __init__(
        self,
        reason: str,
        *,
        result_code: int | None = None,
        error_code: int | None = None,
        clears: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result_code = result_code
        self.error_code = error_code
        self.clears = clears


class HeaderError(ParseError):
    """The L2TP header is malformed: the datagram must be discarded without a reply."""


class AvpError(ParseError):
    """An AVP is malformed or unknown with the M bit set; the message cannot be accepted."""


class MessageError(ParseError):
    """A decodable message that violates the RFC (missing required AVP, bad value, unknown
    mandatory type). ``message`` holds what could be decoded, so the reply can name the peer's
    ids (for example the Assigned Tunnel ID for a StopCCN or the Local Session ID for a CDN)."""

    def __init__(
        self,
        reason: str,
        *,
        message: object = None,
        result_code: int | None = None,
        error_code: int | None = None,
        clears: str | None = None,
    ) -> None:
        super().__init__(reason, result_code=result_code, error_code=error_code, clears=clears)
        self.message = message
