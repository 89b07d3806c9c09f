"""The reference-kernel VM harness works end to end: build, boot, load L2TP, `ip l2tp` round trip.

Every kernel-interop test depends on this path, so when it breaks this one short test says so
plainly instead of a dozen interop tests failing with confusing guest output.
"""

from __future__ import annotations

import json

import pytest
from tests.support.kernelvm import (
    L2TP_MODULES,
    modprobe_lines,
    require_vm,
    run_guest,
)

pytestmark = [pytest.mark.kernelvm, pytest.mark.slow, pytest.mark.timeout(600)]


def test_guest_loads_l2tp_and_ip_l2tp_round_trips() -> None:
    require_vm()
    # Documentation addresses on a dummy device inside the throwaway guest only.
    script = (
        modprobe_lines(("dummy", *L2TP_MODULES))
        + """
ip link add dum0 type dummy && ip link set dum0 up && ip addr add 192.0.2.1/24 dev dum0
ip l2tp add tunnel tunnel_id 7 peer_tunnel_id 8 encap udp local 192.0.2.1 remote 192.0.2.2 \
  udp_sport 5007 udp_dport 6007 || exit 91
ip l2tp add session name smoke0 tunnel_id 7 session_id 70 peer_session_id 80 || exit 92
echo "@@JT $(ip -j l2tp show tunnel)"
echo "@@JS $(ip -j l2tp show session)"
echo "@@MTU $(cat /sys/class/net/smoke0/mtu)"
"""
    )
    res = run_guest(script, timeout=240).check()
    fields = {
        line.split(" ", 1)[0]: line.split(" ", 1)[1]
        for line in res.lines
        if line.startswith("@@") and " " in line
    }
    assert json.loads(fields["@@JT"]) == [
        {
            "tunnel_id": 7,
            "encap": "UDP",
            "local": "192.0.2.1",
            "peer": "192.0.2.2",
            "peer_tunnel": 8,
            "local_port": 5007,
            "peer_port": 6007,
            "checksum": False,
        }
    ]
    assert json.loads(fields["@@JS"]) == [
        {
            "session_id": 70,
            "tunnel_id": 7,
            "peer_session_id": 80,
            "peer_tunnel_id": 8,
            "interface": "smoke0",
        }
    ]
    # 1500 - (IPv4 20 + UDP 8 + L2TPv3-over-UDP header 12 + Ethernet 14)
    assert fields["@@MTU"] == "1446"
    assert res.boot_seconds is not None
