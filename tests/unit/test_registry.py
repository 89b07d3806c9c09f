"""The registry's id and lifetime rules and the netlink command semantics, on the null backend
(no sockets or devices), against the kernel behaviour in linux-kernel-l2tp-notes.md §3-4."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from pyl2tp.dataplane.registry import Registry
from pyl2tp.errors import L2tpError
from pyl2tp.mgmt.commands import execute


def run(reg: Registry, cmd: str, dump: bool = False, **attrs: Any) -> Any:
    return execute(reg, {"cmd": cmd, "attrs": attrs, "dump": dump})


def tunnel(reg: Registry, tid: int, *, version: int = 3, encap: int = 0, v6: bool = False,
           **extra: Any) -> Any:
    addrs = ({"ip6_saddr": "2001:db8::1", "ip6_daddr": "2001:db8::2"} if v6
             else {"ip_saddr": "192.0.2.1", "ip_daddr": "192.0.2.2"})
    return run(reg, "tunnel_create", conn_id=tid, peer_conn_id=tid + 1000,
               proto_version=version, encap_type=encap, udp_sport=5000, udp_dport=5000,
               **addrs, **extra)


def session(reg: Registry, tid: int, sid: int, pw_type: int = 5, **extra: Any) -> Any:
    return run(reg, "session_create", conn_id=tid, session_id=sid, peer_session_id=sid + 1,
               pw_type=pw_type, **extra)


def errno_of(fn: Any, *args: Any, **kw: Any) -> int:
    with pytest.raises(L2tpError) as exc:
        fn(*args, **kw)
    return exc.value.code


@pytest.fixture
def reg() -> Registry:
    return Registry()


def test_tunnel_create_reports_like_the_kernel(reg: Registry) -> None:
    got = tunnel(reg, 7, udp_csum=True)
    assert list(got) == ["proto_version", "conn_id", "peer_conn_id", "debug", "encap_type",
                         "stats", "udp_csum", "udp_sport", "udp_dport", "ip_saddr", "ip_daddr"]
    assert got["udp_csum"] is True and got["stats"]["rx_invalid"] == 0
    v6 = tunnel(reg, 8, v6=True, udp_zero_csum6_tx=True)
    assert v6["udp_zero_csum6_tx"] is True and "udp_zero_csum6_rx" not in v6
    assert v6["ip6_saddr"] == "2001:db8::1"
    ip = tunnel(reg, 9, encap=1)
    assert "udp_sport" not in ip and ip["encap_type"] == 1


@pytest.mark.parametrize(("attrs", "code"), [
    ({"peer_conn_id": 2, "proto_version": 3, "encap_type": 0}, errno.EINVAL),
    ({"conn_id": 1, "proto_version": 3, "encap_type": 0}, errno.EINVAL),
    ({"conn_id": 1, "peer_conn_id": 2, "encap_type": 0}, errno.EINVAL),
    ({"conn_id": 1, "peer_conn_id": 2, "proto_version": 3}, errno.EINVAL),
    ({"conn_id": 1, "peer_conn_id": 2, "proto_version": 3, "encap_type": 2}, errno.EINVAL),
    ({"conn_id": 0, "peer_conn_id": 2, "proto_version": 3, "encap_type": 0}, errno.EINVAL),
    ({"conn_id": 1, "peer_conn_id": 2, "proto_version": 4, "encap_type": 0},
     errno.EPROTONOSUPPORT),
    ({"conn_id": 1, "peer_conn_id": 2, "proto_version": 2, "encap_type": 1},
     errno.EPROTONOSUPPORT),
    ({"conn_id": 70000, "peer_conn_id": 2, "proto_version": 2, "encap_type": 0}, errno.EINVAL),
    ({"conn_id": "x", "peer_conn_id": 2, "proto_version": 3, "encap_type": 0}, errno.EINVAL),
])
def test_tunnel_create_validation(reg: Registry, attrs: dict[str, Any], code: int) -> None:
    attrs = {"ip_saddr": "192.0.2.1", "ip_daddr": "192.0.2.2", **attrs}
    assert errno_of(execute, reg, {"cmd": "tunnel_create", "attrs": attrs}) == code


def test_tunnel_addresses_must_be_one_family(reg: Registry) -> None:
    attrs = {"conn_id": 1, "peer_conn_id": 2, "proto_version": 3, "encap_type": 0,
             "ip_saddr": "192.0.2.1", "ip6_daddr": "2001:db8::2"}
    assert errno_of(execute, reg, {"cmd": "tunnel_create", "attrs": attrs}) == errno.EINVAL
    attrs = {**attrs, "ip6_daddr": None, "ip_daddr": "2001:db8::2"}
    assert errno_of(execute, reg, {"cmd": "tunnel_create", "attrs": attrs}) == errno.EINVAL


def test_tunnel_ids_are_shared_by_v2_and_v3(reg: Registry) -> None:
    tunnel(reg, 5, version=2)
    assert errno_of(tunnel, reg, 5, version=3) == errno.EEXIST


def test_session_rules(reg: Registry) -> None:
    tunnel(reg, 1)
    tunnel(reg, 2, version=2)
    assert errno_of(session, reg, 99, 1) == errno.ENODEV
    assert errno_of(session, reg, 1, 0) == errno.EINVAL
    assert errno_of(session, reg, 1, 5, pw_type=12) == errno.EINVAL
    assert errno_of(session, reg, 1, 5, pw_type=4) == errno.EPROTONOSUPPORT
    assert errno_of(session, reg, 2, 5, pw_type=5) == errno.EPROTONOSUPPORT
    assert errno_of(session, reg, 1, 5, l2spec_type=2) == errno.EINVAL
    assert errno_of(session, reg, 1, 5, cookie="00" * 9) == errno.EINVAL
    assert errno_of(session, reg, 1, 5, ifname="a" * 16) == errno.EINVAL
    assert errno_of(session, reg, 1, 5, ifname="a/b") == errno.EINVAL
    s = session(reg, 1, 5, cookie="01234567", peer_cookie="0123456789abcdef", recv_timeout=50)
    assert (s["cookie"], s["peer_cookie"], s["recv_timeout"], s["l2spec_type"]) == (
        "01234567", "0123456789abcdef", 50, 1)
    assert errno_of(session, reg, 1, 5) == errno.EEXIST
    v2 = session(reg, 2, 5, pw_type=7)
    assert v2["l2spec_type"] == 0 and "cookie" not in v2


def test_v2_sessions_are_keyed_by_tunnel_and_session(reg: Registry) -> None:
    tunnel(reg, 1, version=2)
    tunnel(reg, 2, version=2)
    session(reg, 1, 9, pw_type=7)
    session(reg, 2, 9, pw_type=7)
    assert reg.v2_sessions[(1 << 16) | 9].tunnel.tunnel_id == 1
    assert reg.v2_sessions[(2 << 16) | 9].tunnel.tunnel_id == 2


def test_v3_ids_unique_with_ip_encap_reusable_across_udp(reg: Registry) -> None:
    tunnel(reg, 1, encap=1)
    tunnel(reg, 2, encap=0)
    tunnel(reg, 3, encap=0)
    tunnel(reg, 4, encap=1)
    session(reg, 1, 100)
    assert errno_of(session, reg, 2, 100) == errno.EEXIST  # held by an IP tunnel
    assert errno_of(session, reg, 4, 100) == errno.EEXIST
    session(reg, 2, 200)
    session(reg, 3, 200)  # UDP and UDP: a collision the kernel allows
    assert errno_of(session, reg, 4, 200) == errno.EEXIST  # new IP tunnel joins: refused
    t2, t3 = reg.tunnels[2], reg.tunnels[3]
    assert 200 not in reg.v3_sessions
    assert reg.lookup_v3(200, t2) is t2.sessions[200]
    assert reg.lookup_v3(200, t3) is t3.sessions[200]
    assert reg.lookup_v3(200, None) is None
    assert reg.lookup_v3(100, t3) is reg.tunnels[1].sessions[100]  # unique ids win anywhere
    run(reg, "session_delete", conn_id=2, session_id=200)
    assert reg.v3_sessions[200] is t3.sessions[200] and not reg.v3_collisions
    assert not reg.v3_collided


def test_tunnel_delete_cascades_and_refuses_new_sessions(reg: Registry) -> None:
    events: list[tuple[str, Any]] = []
    tunnel(reg, 1)
    reg.listeners.append(lambda e, o: events.append((e, getattr(o, "session_id", None))))
    session(reg, 1, 10)
    session(reg, 1, 11)
    t = reg.tunnels[1]
    run(reg, "tunnel_delete", conn_id=1)
    assert not reg.tunnels and not reg.v3_sessions and t.dead
    assert [e for e, _ in events] == ["session_create", "session_create", "tunnel_delete",
                                      "session_delete", "session_delete"]
    with pytest.raises(L2tpError) as exc:
        reg.add_session(_orphan(t))
    assert exc.value.code == errno.ENODEV
    assert errno_of(run, reg, "tunnel_delete", conn_id=1) == errno.ENODEV


def _orphan(t: Any) -> Any:
    from pyl2tp.dataplane.model import Session

    return Session(t, 12, 13, 5)


def test_session_delete_purges_reorder_queue(reg: Registry) -> None:
    tunnel(reg, 1)
    session(reg, 1, 10)
    s = reg.tunnels[1].sessions[10]
    s.reorder_q.append([3, True, 9e9, b"x", 1])
    run(reg, "session_delete", conn_id=1, session_id=10)
    assert s.stats.rx_errors == 1 and not s.reorder_q


def test_modify_get_and_dump(reg: Registry) -> None:
    tunnel(reg, 2)
    tunnel(reg, 1)
    session(reg, 2, 30)
    session(reg, 1, 20)
    session(reg, 1, 10, ifname="pw0")
    got = run(reg, "session_modify", conn_id=1, session_id=20, send_seq=True, recv_timeout=100)
    assert got["send_seq"] is True and got["recv_timeout"] == 100
    assert reg.tunnels[1].sessions[20].hdr_len == 12  # UDP word + id + default sublayer
    assert run(reg, "session_get", ifname="pw0")["session_id"] == 10
    assert [t["conn_id"] for t in run(reg, "tunnel_get", dump=True)] == [1, 2]
    assert [(s["conn_id"], s["session_id"]) for s in run(reg, "session_get", dump=True)] == [
        (1, 10), (1, 20), (2, 30)]
    assert run(reg, "tunnel_modify", conn_id=1, debug=255)["debug"] == 0
    assert errno_of(run, reg, "session_get", conn_id=1) == errno.EINVAL
    assert errno_of(run, reg, "session_get", conn_id=1, session_id=99) == errno.ENODEV
    assert errno_of(run, reg, "session_modify", conn_id=1, session_id=20,
                    recv_seq="yes") == errno.EINVAL
    assert errno_of(execute, reg, {"cmd": "nope"}) == errno.EOPNOTSUPP


def test_reorder_queue_bound_reaches_new_and_running_sessions(reg: Registry) -> None:
    # [daemon] reorder_queue: given to sessions as they are added, and on a reload to those
    # already running.
    tunnel(reg, 1)
    session(reg, 1, 10)
    reg.set_reorder_q_max(32)
    session(reg, 1, 11)
    assert [s.reorder_q_max for s in reg.sessions()] == [32, 32]
    reg.set_reorder_q_max(8)
    assert [s.reorder_q_max for s in reg.sessions()] == [8, 8]
