"""``[daemon] max_ppp_negotiations``: PPP sessions still negotiating are bounded.

The PPP manager runs on a real event loop but against a stand-in for the control driver, so
no socket or device is involved: a call beyond the bound is hung up with CDN 4 ("lack of
facilities, temporary") / error 4 and counted, and a negotiation that finishes (``ppp_up``)
or ends makes room again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pyl2tp.control import events as ev
from pyl2tp.control.call import Call, CallState
from pyl2tp.control.params import CallParams, ConnectionParams
from pyl2tp.control.tunnel import ControlConnection
from pyl2tp.daemon.config import PppProfile
from pyl2tp.daemon.ppp_sessions import PppManager
from pyl2tp.pw.ppp import PppChannel
from pyl2tp.wire.constants import CDNResult, ErrorCode, PwType


class _Session:
    deliver: Any = None


class _Backend:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def transmit(self, _session: Any, frame: bytes) -> None:
        self.sent.append(frame)


class _Pw:
    def __init__(self, channel: PppChannel) -> None:
        self.pw = channel


class _Driver:
    """What the PPP manager uses of the control driver."""

    def __init__(self, limit: int) -> None:
        self.observers: list[Any] = []
        self._sessions: dict[tuple[int, int], _Pw] = {}
        self.max_ppp_negotiations = limit
        self.stats: dict[str, int] = {}
        self.hangups: list[tuple[Call, str, int | None, int]] = []
        self.backend = _Backend()

    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def hangup(self, _conn: ControlConnection, call: Call, *, text: str,
               result: int | None = None, error: int = 0) -> None:
        self.hangups.append((call, text, result, error))


def _call(driver: _Driver, conn: ControlConnection, sid: int) -> Call:
    call = Call(conn, sid, CallParams(pw_type=PwType.PPP, ppp_profile="subscribers"),
                direction="incoming", initiator=False, serial=sid, now=0.0)
    call.state = CallState.ESTABLISHED
    conn.calls[sid] = call
    driver._sessions[(conn.local_id, sid)] = _Pw(PppChannel(driver.backend, _Session()))
    return call


def test_calls_beyond_max_ppp_negotiations_are_refused_with_cdn_4_4() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        driver = _Driver(limit=2)
        manager = PppManager(loop, driver,  # type: ignore[arg-type]
                             profile=lambda name: PppProfile(name=name, echo_interval=0),
                             switch_target=lambda _name: None, host_name="lns")
        conn = ControlConnection(ConnectionParams(version=2), 100, now=0.0)
        calls = [_call(driver, conn, sid) for sid in (1, 2, 3)]
        for call in calls:
            manager.on_event(ev.CallUp(call))
        assert manager.negotiating == 2 and len(manager.endpoints) == 2
        assert driver.backend.sent, "the two accepted links started LCP"
        await asyncio.sleep(0)  # the refusal is sent from the loop
        (refused,) = driver.hangups
        assert refused[0] is calls[2]
        assert (refused[2], refused[3]) == (CDNResult.NO_FACILITIES_TEMPORARY,
                                            ErrorCode.NO_RESOURCES)
        assert driver.stats == {"refused_max_ppp_negotiations": 1}
        # A link that comes up no longer counts; one that ends (CDN) frees its place too.
        manager._endpoint_event((100, 1), "ppp_up", {})
        assert manager.negotiating == 1
        fourth = _call(driver, conn, 4)
        manager.on_event(ev.CallUp(fourth))
        assert manager.negotiating == 2 and (100, 4) in manager.endpoints
        fourth.state = CallState.DEAD  # as the connection leaves it before CallDown
        manager.on_event(ev.CallDown(fourth, "peer sent CDN", 1, 0, True, True))
        assert manager.negotiating == 1
        fifth = _call(driver, conn, 5)
        manager.on_event(ev.CallUp(fifth))
        await asyncio.sleep(0)
        assert manager.negotiating == 2 and len(driver.hangups) == 1
        manager.shutdown()
        assert manager.negotiating == 0

    asyncio.run(scenario())
