"""Resource bounds end to end: a configured LNS daemon refuses beyond its ``[daemon]``
limits with the protocol's codes, counts it in ``control_stats``, and takes new values on
SIGHUP. The unit tests (``tests/unit/test_limits_*.py``) cover every bound on the sans-I/O
cores; this checks that the configuration reaches them in a running daemon.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.daemon import Daemon, LacLns, lac_lns_pair
from tests.support.netns import wait_for

pytestmark = pytest.mark.netns

LNS = "10.73.0.2"

LNS_CONFIG = """
[daemon]
host_name = "lns"
max_sessions = {max_sessions}
sccrq_rate = 1
sccrq_burst = 2

[[listen]]
address = "0.0.0.0"

[defaults]
hello_interval = 0

[[peer]]
name = "any"
"""


Net = LacLns


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    with lac_lns_pair("10.73.0.1/24", f"{LNS}/24", LNS_CONFIG.format(max_sessions=2)) as pair:
        yield pair


def _plane(d: Daemon) -> dict[str, int]:
    stats: dict[str, int] = d.request("control_stats")["plane"]
    return stats


def _conn(d: Daemon, conn_id: int) -> dict[str, Any] | None:
    return next((c for c in d.request("control_dump") if c["tunnel_id"] == conn_id), None)


def _established(d: Daemon, conn_id: int) -> bool:
    return (_conn(d, conn_id) or {}).get("state") == "established"


def test_sccrqs_beyond_the_rate_are_dropped_and_retried_in(net: Net) -> None:
    """Five tunnels dialled at once against a rate of 1/s with a burst of 2: the extra
    SCCRQs get no answer, and the LAC's retransmissions bring them in over a few seconds."""
    before = _plane(net.lns).get("rx_sccrq_rate_limited", 0)
    conns = [net.lac.request("control_dial", {"peer": LNS, "version": 2})["conn_id"]
             for _ in range(5)]
    wait_for(lambda: all(_established(net.lac, c) for c in conns), timeout=30,
             message="all five tunnels up after their SCCRQ retransmissions")
    assert _plane(net.lns).get("rx_sccrq_rate_limited", 0) - before >= 2
    for c in conns:
        net.lac.request("control_hangup", {"conn_id": c})


def test_sessions_beyond_max_sessions_get_cdn_4_and_sighup_raises_the_bound(net: Net) -> None:
    conn_id = net.lac.request("control_dial", {"peer": LNS, "version": 2})["conn_id"]
    wait_for(lambda: _established(net.lac, conn_id), timeout=15, message="the tunnel")
    before = _plane(net.lns).get("refused_max_sessions", 0)
    net.lac.request("control_call", {"conn_id": conn_id, "count": 3})

    def settled() -> bool:
        conn = _conn(net.lac, conn_id) or {}
        calls = conn.get("calls", [])
        return len(calls) == 2 and all(c["state"] == "established" for c in calls)
    wait_for(settled, timeout=15, message="two sessions up and the third refused")
    assert _plane(net.lns)["refused_max_sessions"] == before + 1
    assert "peer sent CDN 4/4" in net.lac.log()

    # A reload with a higher bound lets the next call in.
    with open(net.config, "w") as f:
        f.write(LNS_CONFIG.format(max_sessions=3))
    net.lns.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloading" in net.lns.log(), timeout=5, message="the reload")
    net.lac.request("control_call", {"conn_id": conn_id})
    wait_for(lambda: len([c for c in (_conn(net.lac, conn_id) or {}).get("calls", [])
                          if c["state"] == "established"]) == 3,
             timeout=15, message="the third session after the reload")
    assert _plane(net.lns)["refused_max_sessions"] == before + 1
    net.lac.request("control_hangup", {"conn_id": conn_id})
