"""What the control plane reports to whoever drives it.

The cores never act on the data plane themselves: they say that a tunnel or call came up or
went down, and the daemon programs (or removes) the data-plane objects. The same events feed
the notification stream and the log, so the reason a tunnel died is recorded once, where it
is decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .call import Call
    from .tunnel import ControlConnection


@dataclass(frozen=True, slots=True)
class TunnelUp:
    conn: ControlConnection


@dataclass(frozen=True, slots=True)
class TunnelDown:
    """The control connection is gone (its data plane must be removed now).

    ``result``/``error`` are the StopCCN codes sent or received (None when there was no
    StopCCN, for example after retries were exhausted); ``by_peer`` says who decided.
    """

    conn: ControlConnection
    reason: str
    result: int | None
    error: int | None
    by_peer: bool
    was_up: bool


@dataclass(frozen=True, slots=True)
class CallUp:
    call: Call


@dataclass(frozen=True, slots=True)
class CallDown:
    call: Call
    reason: str
    result: int | None
    error: int | None
    by_peer: bool
    was_up: bool


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A WEN or SLI arrived for an established call (recorded on the call as well)."""

    call: Call
    msg_type: int


@dataclass(frozen=True, slots=True)
class TunnelReplaced:
    """Our outgoing connection lost a tie breaker; its pending calls moved to ``new``."""

    old: ControlConnection
    new: ControlConnection


Event = TunnelUp | TunnelDown | CallUp | CallDown | CallInfo | TunnelReplaced

__all__ = ["CallDown", "CallInfo", "CallUp", "Event", "TunnelDown", "TunnelReplaced",
           "TunnelUp"]
