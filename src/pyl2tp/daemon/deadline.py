"""One loop timer that follows a sans-I/O core's ``next_deadline()``.

Every core (the control plane, each PPP link) reports a single next deadline after each
input; its asyncio adapter keeps exactly one timer at that time, re-armed only when the
deadline moves, so thousands of idle tunnels or links cost no timer churn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class DeadlineTimer:
    """Calls ``fire`` at the last deadline given to :meth:`arm`."""

    __slots__ = ("_at", "_fire", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, fire: Callable[[], None]) -> None:
        self._loop = loop
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def arm(self, deadline: float | None) -> None:
        """Be due at ``deadline`` (None: not at all); a no-op when it has not moved."""
        if deadline == self._at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None if deadline is None else self._loop.call_at(deadline, self._run)
        self._at = deadline

    def cancel(self) -> None:
        self.arm(None)

    def _run(self) -> None:
        self._handle = None
        self._at = None
        self._fire()
