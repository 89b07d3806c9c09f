"""The PPP channel of an L2TP session: what ``l2tp_ppp`` hands to ``ppp_generic``.

A consumer (the userspace PPP endpoint, or a bridge to another session's channel) sets
``on_frame`` and calls :meth:`PppChannel.send`. Like the kernel, received frames lose a leading
``FF 03`` (address/control) if present, since Microsoft clients omit it, and transmitted frames
get one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyl2tp.dataplane.model import Session
    from pyl2tp.dataplane.userspace import UserspaceBackend

HDLC_HEADER = b"\xff\x03"


class PppChannel:
    """A session's PPP frame interface; frames arriving with no consumer are counted."""

    def __init__(self, backend: UserspaceBackend, session: Session) -> None:
        self.backend = backend
        self.session = session
        self.on_frame: Callable[[bytes], None] | None = None
        self.rx_unconsumed = 0
        session.deliver = self._deliver

    def _deliver(self, payload: bytes | bytearray) -> None:
        handler = self.on_frame
        if handler is None:
            self.rx_unconsumed += 1
            return
        start = 2 if payload.startswith(HDLC_HEADER) else 0
        if type(payload) is bytes:
            handler(payload[start:])
        else:
            # The receive path hands over a bytearray; consumers (the PPP link, a bridge)
            # get bytes, made with the one copy that also drops FF 03.
            handler(bytes(memoryview(payload)[start:]))

    def send(self, frame: bytes) -> None:
        """Transmit a PPP frame (protocol field onwards) on the session."""
        self.backend.transmit(self.session, HDLC_HEADER + frame)

    def send_protocol(self, protocol_field: bytes, info: bytes) -> None:
        """Transmit ``info`` behind a protocol field: :meth:`send` of ``protocol_field +
        info`` without building that frame first, so an IP packet is copied once here (and
        once more behind the L2TP header) instead of twice."""
        self.backend.transmit(self.session, HDLC_HEADER + protocol_field + info)

    def close(self) -> None:
        self.on_frame = None
