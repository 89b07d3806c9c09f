"""The daemon's management API and lifetime, against a real daemon in a namespace.

Scripts written for the kernel's netlink API (and ``ip l2tp``) branch on errnos, so every
refusal the kernel can answer is checked here with the kernel's errno, both as raw JSON on the
socket and through the CLI, which must print ``ip``'s ``RTNETLINK answers: <strerror>`` with
status 2. Then what a long-running service must get right: a malformed request is answered,
never fatal; the notification stream reports changes in order; deleting a tunnel takes its
sessions and devices with it; changing a session changes the wire; and however the daemon
dies, it leaves no devices behind.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.daemon import Daemon, cli_env, devices, ping, start_all, wait_counter
from tests.support.netns import NetNS, veth, wait_for

from pyl2tp.errors import L2tpError

pytestmark = pytest.mark.netns

NetnsFactory = Callable[[str], NetNS]

LOCAL, REMOTE = "10.77.0.1", "10.77.0.2"


def _local_link(ns: NetNS, addrs: tuple[str, ...] = (f"{LOCAL}/24",)) -> None:
    """A veth pair inside ``ns`` to hold local addresses (this kernel has no dummy driver)."""
    ns.ip("link", "add", "v0", "type", "veth", "peer", "name", "v1")
    for cidr in addrs:
        ns.addr_add("v0", cidr)
    ns.link_up("v0")
    ns.link_up("v1")


@dataclass
class Api:
    ns: NetNS
    d: Daemon


BASELINE_TUNNELS = [10, 20, 30]
BASELINE_SESSIONS = [(10, 100), (20, 200)]


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    """One daemon holding a v3 UDP tunnel (10, session 100), a v3 IP tunnel (20, session
    200) and a v2 UDP tunnel (30): every errno case needs one of them to collide with."""
    ns = NetNS("api")
    d = Daemon(ns)
    try:
        _local_link(ns, (f"{LOCAL}/24", "2001:db8:77::1/64"))
        d.start()
        d.cli(
            f"add tunnel tunnel_id 10 peer_tunnel_id 11 encap udp local {LOCAL} "
            f"remote {REMOTE} udp_sport 1701 udp_dport 1701"
        )
        d.cli("add session name s100 tunnel_id 10 session_id 100 peer_session_id 101")
        d.cli(f"add tunnel tunnel_id 20 peer_tunnel_id 21 encap ip local {LOCAL} remote {REMOTE}")
        d.cli("add session name s200 tunnel_id 20 session_id 200 peer_session_id 201")
        d.cli(
            f"add tunnel tunnel_id 30 peer_tunnel_id 31 encap udp local {LOCAL} "
            f"remote {REMOTE} udp_sport 1702 udp_dport 1702 version 2"
        )
        yield Api(ns, d)
    finally:
        d.close()
        ns.close()


def _state(d: Daemon) -> tuple[list[int], list[tuple[int, int]]]:
    tunnels = d.request("tunnel_get", dump=True)
    sessions = d.request("session_get", dump=True)
    return (
        sorted(t["conn_id"] for t in tunnels),
        sorted((s["conn_id"], s["session_id"]) for s in sessions),
    )


def _assert_baseline(api: Api) -> None:
    """A refused request must not have changed anything (nor killed the daemon)."""
    assert api.d.alive(), api.d.log_tail()
    assert _state(api.d) == (BASELINE_TUNNELS, BASELINE_SESSIONS)
    assert {"s100", "s200"} <= devices(api.ns)


# -- errnos over raw JSON -----------------------------------------------------------------

T = {
    "conn_id": 40,
    "peer_conn_id": 41,
    "proto_version": 3,
    "encap_type": 0,
    "ip_saddr": LOCAL,
    "ip_daddr": REMOTE,
    "udp_sport": 1703,
    "udp_dport": 1703,
}
S = {"conn_id": 10, "session_id": 150, "peer_session_id": 151, "pw_type": 5}


def _without(base: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k not in keys}


def _with(base: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {**base, **kw}


EINVAL, EEXIST, ENODEV = "EINVAL", "EEXIST", "ENODEV"
EPROTO = "EPROTONOSUPPORT"

JSON_CASES: list[tuple[str, str, Any, str]] = [
    # EINVAL: missing, zero, malformed or out-of-range attributes
    *[
        (f"tunnel-missing-{k}", "tunnel_create", _without(T, k), EINVAL)
        for k in ("conn_id", "peer_conn_id", "proto_version", "encap_type")
    ],
    ("tunnel-zero-id", "tunnel_create", _with(T, conn_id=0), EINVAL),
    ("tunnel-zero-peer-id", "tunnel_create", _with(T, peer_conn_id=0), EINVAL),
    ("tunnel-bad-encap", "tunnel_create", _with(T, encap_type=2), EINVAL),
    ("tunnel-no-addresses", "tunnel_create", _without(T, "ip_saddr", "ip_daddr"), EINVAL),
    (
        "tunnel-mixed-families",
        "tunnel_create",
        _with(_without(T, "ip_daddr"), ip6_daddr="2001:db8:77::2"),
        EINVAL,
    ),
    ("tunnel-bad-address", "tunnel_create", _with(T, ip_saddr="10.77.0"), EINVAL),
    ("tunnel-id-string", "tunnel_create", _with(T, conn_id="40"), EINVAL),
    ("tunnel-id-bool", "tunnel_create", _with(T, conn_id=True), EINVAL),
    ("tunnel-id-33-bits", "tunnel_create", _with(T, conn_id=1 << 32), EINVAL),
    ("tunnel-v2-17-bit-id", "tunnel_create", _with(T, proto_version=2, conn_id=70000), EINVAL),
    ("tunnel-delete-no-id", "tunnel_delete", {}, EINVAL),
    *[
        (f"session-missing-{k}", "session_create", _without(S, k), EINVAL)
        for k in ("conn_id", "session_id", "peer_session_id", "pw_type")
    ],
    ("session-zero-id", "session_create", _with(S, session_id=0), EINVAL),
    ("session-zero-peer-id", "session_create", _with(S, peer_session_id=0), EINVAL),
    ("session-pw-type-12", "session_create", _with(S, pw_type=12), EINVAL),
    ("session-bad-l2spec", "session_create", _with(S, l2spec_type=2), EINVAL),
    ("session-cookie-9-octets", "session_create", _with(S, cookie="00" * 9), EINVAL),
    ("session-peer-cookie-9-octets", "session_create", _with(S, peer_cookie="11" * 9), EINVAL),
    ("session-cookie-not-hex", "session_create", _with(S, cookie="zz"), EINVAL),
    ("session-ifname-16-chars", "session_create", _with(S, ifname="a" * 16), EINVAL),
    ("session-ifname-slash", "session_create", _with(S, ifname="a/b"), EINVAL),
    ("session-ifname-space", "session_create", _with(S, ifname="a b"), EINVAL),
    ("session-ifname-dotdot", "session_create", _with(S, ifname=".."), EINVAL),
    ("session-delete-no-session-id", "session_delete", {"conn_id": 10}, EINVAL),
    (
        "session-modify-bad-bool",
        "session_modify",
        {"conn_id": 10, "session_id": 100, "recv_seq": "yes"},
        EINVAL,
    ),
    ("attrs-not-object", "tunnel_get", [10], EINVAL),
    # EEXIST: the kernel's id rules
    ("tunnel-duplicate-id", "tunnel_create", _with(T, conn_id=10), EEXIST),
    ("tunnel-id-shared-by-v2-and-v3", "tunnel_create", _with(T, conn_id=30), EEXIST),
    ("session-duplicate-in-tunnel", "session_create", _with(S, session_id=100), EEXIST),
    ("udp-session-id-held-by-ip-tunnel", "session_create", _with(S, session_id=200), EEXIST),
    (
        "ip-session-id-held-by-udp-tunnel",
        "session_create",
        _with(S, conn_id=20, session_id=100),
        EEXIST,
    ),
    ("session-ifname-taken", "session_create", _with(S, ifname="s100"), EEXIST),
    # ENODEV: missing objects
    ("session-on-missing-tunnel", "session_create", _with(S, conn_id=999), ENODEV),
    ("tunnel-delete-missing", "tunnel_delete", {"conn_id": 999}, ENODEV),
    ("tunnel-get-missing", "tunnel_get", {"conn_id": 999}, ENODEV),
    ("tunnel-modify-missing", "tunnel_modify", {"conn_id": 999}, ENODEV),
    ("session-delete-missing", "session_delete", {"conn_id": 10, "session_id": 999}, ENODEV),
    (
        "session-delete-missing-tunnel",
        "session_delete",
        {"conn_id": 999, "session_id": 100},
        ENODEV,
    ),
    ("session-get-missing", "session_get", {"conn_id": 10, "session_id": 999}, ENODEV),
    (
        "session-modify-missing",
        "session_modify",
        {"conn_id": 10, "session_id": 999, "send_seq": True},
        ENODEV,
    ),
    ("session-delete-missing-ifname", "session_delete", {"ifname": "nope0"}, ENODEV),
    # EPROTONOSUPPORT: versions and pseudowires
    ("v2-tunnel-ethernet-session", "session_create", _with(S, conn_id=30), EPROTO),
    ("tunnel-version-4", "tunnel_create", _with(T, proto_version=4), EPROTO),
    ("tunnel-version-1", "tunnel_create", _with(T, proto_version=1), EPROTO),
    ("v2-over-ip", "tunnel_create", _with(T, proto_version=2, encap_type=1), EPROTO),
    ("pw-type-not-implemented", "session_create", _with(S, pw_type=4), EPROTO),
    # What a socket operation would answer in the kernel, too
    ("tunnel-local-not-ours", "tunnel_create", _with(T, ip_saddr="10.77.9.9"), "EADDRNOTAVAIL"),
    ("tunnel-fd-attribute", "tunnel_create", _with(T, fd=3), "EOPNOTSUPP"),
]


def _raw(d: Daemon, *lines: bytes, replies: int | None = None) -> list[dict[str, Any]]:
    """Write ``lines`` on one connection and read one reply per line (or ``replies``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(d.socket_path)
        s.sendall(b"".join(lines))
        f = s.makefile("rb")
        return [json.loads(f.readline()) for _ in range(len(lines) if replies is None else replies)]


@pytest.mark.parametrize(
    ("cmd", "attrs", "expected"), [pytest.param(c, a, e, id=i) for i, c, a, e in JSON_CASES]
)
def test_errno_over_json(api: Api, cmd: str, attrs: Any, expected: str) -> None:
    """Each refusal carries the kernel's errno (name and number) and changes nothing."""
    [reply] = _raw(api.d, json.dumps({"seq": 5, "cmd": cmd, "attrs": attrs}).encode() + b"\n")
    assert reply["ok"] is False and reply["seq"] == 5, reply
    err = reply["error"]
    # The kernel's name, even where Python's table prefers an alias (95: ENOTSUP).
    assert err["code"] == getattr(errno, expected), reply
    assert err["errno"] == expected, reply
    assert err["message"], reply
    _assert_baseline(api)


# -- errnos through the CLI ---------------------------------------------------------------

UDP_T = f"encap udp local {LOCAL} remote {REMOTE} udp_sport 1703 udp_dport 1703"
RTNL = "RTNETLINK answers: {}\n"

CLI_CASES: list[tuple[str, str, str, int]] = [
    (
        "duplicate-tunnel",
        f"add tunnel tunnel_id 10 peer_tunnel_id 11 {UDP_T}",
        RTNL.format("File exists"),
        2,
    ),
    (
        "duplicate-session",
        "add session tunnel_id 10 session_id 100 peer_session_id 1",
        RTNL.format("File exists"),
        2,
    ),
    (
        "session-id-of-ip-tunnel",
        "add session tunnel_id 10 session_id 200 peer_session_id 1",
        RTNL.format("File exists"),
        2,
    ),
    (
        "ip-tunnel-session-id-in-use",
        "add session tunnel_id 20 session_id 100 peer_session_id 1",
        RTNL.format("File exists"),
        2,
    ),
    (
        "session-on-missing-tunnel",
        "add session tunnel_id 999 session_id 5 peer_session_id 5",
        RTNL.format("No such device"),
        2,
    ),
    ("del-missing-tunnel", "del tunnel tunnel_id 999", RTNL.format("No such device"), 2),
    (
        "del-missing-session",
        "del session tunnel_id 10 session_id 999",
        RTNL.format("No such device"),
        2,
    ),
    (
        "set-missing-session",
        "set session tunnel_id 10 session_id 999 seq both",
        RTNL.format("No such device"),
        2,
    ),
    (
        "v2-ethernet-session",
        "add session tunnel_id 30 session_id 5 peer_session_id 5 pw_type eth",
        RTNL.format("Protocol not supported"),
        2,
    ),
    (
        "mixed-families",
        f"add tunnel tunnel_id 40 peer_tunnel_id 41 encap ip local {LOCAL} remote 2001:db8:77::2",
        RTNL.format("Invalid argument"),
        2,
    ),
    (
        "local-not-ours",
        f"add tunnel tunnel_id 40 peer_tunnel_id 41 encap ip local 10.77.9.9 remote {REMOTE}",
        RTNL.format("Cannot assign requested address"),
        2,
    ),
    # Refused by the command line itself, as ip does, before anything reaches the daemon.
    (
        "zero-tunnel-id",
        f"add tunnel tunnel_id 0 peer_tunnel_id 11 {UDP_T}",
        'Error: argument "tunnel_id" is required\n',
        255,
    ),
    (
        "cookie-9-octets",
        "add session tunnel_id 10 session_id 5 peer_session_id 5 cookie 001122334455667788",
        "cookie must be either 8 or 16 hex digits",
        255,
    ),
    (
        "bad-ifname",
        "add session name a/b tunnel_id 10 session_id 5 peer_session_id 5",
        '"name" not a valid ifname',
        255,
    ),
    (
        "version-4",
        f"add tunnel tunnel_id 40 peer_tunnel_id 41 {UDP_T} version 4",
        'Unknown L2TP version "4"',
        255,
    ),
    (
        "bad-l2spec",
        "add session tunnel_id 10 session_id 5 peer_session_id 5 l2spec_type x",
        'Unknown layer2specific header type "x"',
        255,
    ),
]


@pytest.mark.parametrize(
    ("args", "stderr", "status"), [pytest.param(a, e, s, id=i) for i, a, e, s in CLI_CASES]
)
def test_errno_through_cli(api: Api, args: str, stderr: str, status: int) -> None:
    """``pyl2tp`` words the daemon's refusal as ``ip l2tp`` words the kernel's."""
    proc = api.d.cli(args, check=False)
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    if status == 2:
        assert proc.stderr == stderr
    else:
        assert stderr in proc.stderr
    assert proc.stdout == ""
    _assert_baseline(api)


# -- malformed requests -------------------------------------------------------------------


def test_malformed_requests_answered_connection_kept(api: Api) -> None:
    """Garbage on the socket gets an error reply each and the same connection keeps serving;
    pipelined requests are answered in order."""
    replies = _raw(
        api.d,
        b"this is not json\n",
        b"[1, 2, 3]\n",
        b'"a string"\n',
        b"null\n",
        b"\xff\xfe\xfd\n",
        b'{"seq": 1, "cmd": "frobnicate"}\n',
        b'{"seq": 2}\n',
        b'{"seq": 3, "cmd": 42, "attrs": {}}\n',
        b'{"seq": 4, "cmd": "session_create", "dump": true}\n',
        b'{"seq": 5, "cmd": "tunnel_get", "attrs": {"conn_id": 10}}\n',
        b'{"seq": 6, "cmd": "tunnel_get", "dump": true}\n',
        b'{"seq": 7, "cmd": "tunnel_get", "attrs": {"conn_id": 20, "pad": "'
        + b"x" * 500_000
        + b'"}}\n',
    )
    codes = [r["error"]["code"] if not r["ok"] else "ok" for r in replies]
    assert codes == [errno.EINVAL] * 5 + [errno.EOPNOTSUPP] * 4 + ["ok"] * 3, replies
    assert [r["seq"] for r in replies[5:]] == [1, 2, 3, 4, 5, 6, 7]
    assert replies[9]["result"]["conn_id"] == 10
    assert [t["conn_id"] for t in replies[10]["result"]] == BASELINE_TUNNELS
    assert replies[11]["result"]["conn_id"] == 20
    _assert_baseline(api)


def test_oversized_line_closes_only_that_connection(api: Api) -> None:
    """A line over the 1 MiB limit may cost the connection (with an EMSGSIZE reply), never
    the daemon: other connections, open before and after, keep working."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bystander:
        bystander.settimeout(10)
        bystander.connect(api.d.socket_path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(api.d.socket_path)
            try:
                s.sendall(b'{"cmd": "' + b"x" * (3 << 20) + b'"}\n')
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon may close before reading it all
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except ConnectionResetError:
                pass
        if data:
            reply = json.loads(data.splitlines()[0])
            assert reply["ok"] is False and reply["error"]["errno"] == "EMSGSIZE", reply
        bystander.sendall(b'{"seq": 9, "cmd": "tunnel_get", "attrs": {"conn_id": 30}}\n')
        reply = json.loads(bystander.makefile("rb").readline())
        assert reply["ok"] and reply["result"]["proto_version"] == 2, reply
    _assert_baseline(api)
    assert "Traceback" not in api.d.log(), api.d.log_tail()


# -- v3 session ids across UDP tunnels -----------------------------------------------------


@pytest.mark.parametrize("ports", [(1701, 1702), (1701, 1701)], ids=["own-sockets", "shared"])
def test_v3_session_id_reused_across_udp_tunnels(
    netns_factory: NetnsFactory, ports: tuple[int, int]
) -> None:
    """The hub has session 100 in a tunnel to peer B and session 100 in a tunnel to peer C
    (allowed for UDP encapsulation); each peer's frames reach the hub's session of *its*
    tunnel, and only that one. ``shared`` puts both tunnels on one local port, which pyl2tp
    serves with one socket, so the source address alone tells the two apart."""
    hub, pb, pc = netns_factory("hub"), netns_factory("peerb"), netns_factory("peerc")
    for ns in (hub, pb, pc):
        # No IPv6 on the pseudowires: link-up chatter would blur "only that one".
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
    veth(hub, pb, "10.78.1.1/24", "10.78.1.2/24")
    veth(hub, pc, "10.78.2.1/24", "10.78.2.2/24")
    # Both hub tunnels use 10.78.1.1 as their local address; C reaches it via the hub.
    pc.ip("route", "add", "10.78.1.0/24", "via", "10.78.2.1")
    dh, db, dc = Daemon(hub), Daemon(pb), Daemon(pc)
    with dh, db, dc:
        start_all([dh, db, dc])
        p1, p2 = ports
        dh.cli(
            f"add tunnel tunnel_id 1 peer_tunnel_id 1 encap udp local 10.78.1.1 "
            f"remote 10.78.1.2 udp_sport {p1} udp_dport 1701"
        )
        dh.cli(
            f"add tunnel tunnel_id 2 peer_tunnel_id 1 encap udp local 10.78.1.1 "
            f"remote 10.78.2.2 udp_sport {p2} udp_dport 1701"
        )
        dh.cli("add session name tob tunnel_id 1 session_id 100 peer_session_id 100")
        dh.cli("add session name toc tunnel_id 2 session_id 100 peer_session_id 100")
        db.cli(
            f"add tunnel tunnel_id 1 peer_tunnel_id 1 encap udp local 10.78.1.2 "
            f"remote 10.78.1.1 udp_sport 1701 udp_dport {p1}"
        )
        dc.cli(
            f"add tunnel tunnel_id 1 peer_tunnel_id 2 encap udp local 10.78.2.2 "
            f"remote 10.78.1.1 udp_sport 1701 udp_dport {p2}"
        )
        for d in (db, dc):
            d.cli("add session name pw tunnel_id 1 session_id 100 peer_session_id 100")
        for ns, dev, cidr in (
            (hub, "tob", "10.178.1.1/24"),
            (hub, "toc", "10.178.2.1/24"),
            (pb, "pw", "10.178.1.2/24"),
            (pc, "pw", "10.178.2.2/24"),
        ):
            ns.addr_add(dev, cidr)
            ns.link_up(dev)

        def rx() -> tuple[int, int, int, int]:
            return (
                dh.counters(1, 100)["rx_packets"],
                dh.counters(2, 100)["rx_packets"],
                db.counters(1, 100)["rx_packets"],
                dc.counters(1, 100)["rx_packets"],
            )

        for target, idx in (("10.178.1.2", 0), ("10.178.2.2", 1)):
            before = rx()
            r = ping(hub, target)
            assert r.ok and r.received == r.transmitted, str(r)
            after = rx()
            delta = [a - b for a, b in zip(after, before, strict=True)]
            # The hub session towards the pinged peer and that peer got the frames ...
            assert delta[idx] >= r.received and delta[2 + idx] >= r.received, delta
            # ... the other hub session and the other peer got none.
            assert delta[1 - idx] == 0 and delta[3 - idx] == 0, delta

        # Deleting one tunnel leaves session 100 unique again, still reachable.
        dh.cli("del tunnel tunnel_id 1")
        r = ping(hub, "10.178.2.2")
        assert r.ok, str(r)
        ep = dh.endpoint("udp", "10.78.1.1", p2)
        assert ep["rx_unknown_session"] == 0 and ep["rx_wrong_peer"] == 0, ep


# -- notifications ------------------------------------------------------------------------


class _Lines:
    """Lines of a child's stdout, read by a thread so a test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.q: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.q.put(line)

        threading.Thread(target=pump, daemon=True).start()

    def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        return dict(json.loads(self.q.get(timeout=timeout)))


def test_monitor_reports_changes_in_order(netns_factory: NetnsFactory) -> None:
    """``pyl2tp monitor -j`` streams create, modify and delete notifications in the order
    the changes were made, each with the object's attributes at that moment."""
    ns = netns_factory("mon")
    _local_link(ns)
    with Daemon(ns) as d:
        d.start()
        d.cli(f"add tunnel tunnel_id 99 peer_tunnel_id 99 {UDP_T}")
        mon = ns.popen(
            [*d.cli_argv(["monitor", "-j"])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
        )
        lines = _Lines(mon)
        try:
            # The client consumes the subscription's acknowledgement line itself; poke until
            # the stream answers, so no event of the real sequence can be missed.
            def subscribed() -> bool:
                d.request("tunnel_modify", {"conn_id": 99})
                try:
                    return bool(lines.next_event(timeout=0.2)["event"] == "tunnel_modify")
                except queue.Empty:
                    return False

            wait_for(subscribed, timeout=10, message="monitor subscription")
            d.cli(
                f"add tunnel tunnel_id 1 peer_tunnel_id 2 encap udp local {LOCAL} "
                f"remote {REMOTE} udp_sport 1704 udp_dport 1704"
            )
            d.cli("add session name mon0 tunnel_id 1 session_id 10 peer_session_id 20")
            d.cli("set session tunnel_id 1 session_id 10 seq both")
            d.cli("del session tunnel_id 1 session_id 10")
            d.cli("del tunnel tunnel_id 1")
            events: list[dict[str, Any]] = []
            while not events or events[-1]["event"] != "tunnel_delete":
                ev = lines.next_event()
                if ev["event"] != "tunnel_modify":  # late answers to the pokes
                    events.append(ev)
        finally:
            mon.terminate()
            mon.wait(5)
    got = [(e["event"], e["attrs"]["conn_id"], e["attrs"].get("session_id")) for e in events]
    assert got == [
        ("tunnel_create", 1, None),
        ("session_create", 1, 10),
        ("session_modify", 1, 10),
        ("session_delete", 1, 10),
        ("tunnel_delete", 1, None),
    ], events
    create, modify = events[1]["attrs"], events[2]["attrs"]
    assert create["ifname"] == "mon0" and not create["send_seq"] and not create["recv_seq"]
    assert modify["send_seq"] is True and modify["recv_seq"] is True, modify
    assert events[0]["attrs"]["udp_sport"] == 1704


def test_tunnel_delete_takes_sessions_and_devices(netns_factory: NetnsFactory) -> None:
    """Deleting a tunnel deletes its sessions and their TAP devices, and nothing else."""
    ns = netns_factory("deltun")
    _local_link(ns)
    with Daemon(ns) as d:
        d.start()
        d.cli(f"add tunnel tunnel_id 1 peer_tunnel_id 1 {UDP_T}")
        d.cli(f"add tunnel tunnel_id 2 peer_tunnel_id 2 encap ip local {LOCAL} remote {REMOTE}")
        d.cli("add session name pwa tunnel_id 1 session_id 1 peer_session_id 1")
        d.cli("add session tunnel_id 1 session_id 2 peer_session_id 2")
        d.cli("add session name keep tunnel_id 2 session_id 3 peer_session_id 3")
        auto = d.session(tunnel_id=1, session_id=2)["interface"]
        assert re.fullmatch(r"l2tpeth\d+", auto), auto
        assert {"pwa", auto, "keep"} <= devices(ns)
        d.cli("del tunnel tunnel_id 1")
        assert [(s["tunnel_id"], s["session_id"]) for s in d.sessions()] == [(2, 3)]
        assert [t["tunnel_id"] for t in d.show("tunnel")] == [2]
        left = devices(ns)
        assert "pwa" not in left and auto not in left and "keep" in left, left
        # The UDP socket went with its last tunnel; the IP one stays.
        assert [ep["encap"] for ep in d.endpoint_stats()] == ["ip"]


def test_deleted_device_leaves_session_and_daemon_healthy(netns_factory: NetnsFactory) -> None:
    """A user deleting a session's device (``ip link del``) leaves the session in place, as
    the kernel does; frames that then arrive are counted and dropped, and the daemon neither
    spins nor logs errors about the dead device."""
    ns = netns_factory("linkdel")
    _local_link(ns, (f"{LOCAL}/24",))
    ns.addr_add("v1", f"{REMOTE}/24")
    with Daemon(ns) as d:
        d.start()
        d.cli(
            f"add tunnel tunnel_id 1 peer_tunnel_id 1 encap udp local {LOCAL} "
            f"remote {REMOTE} udp_sport 1701 udp_dport 1702"
        )
        d.cli("add session name gone tunnel_id 1 session_id 7 peer_session_id 7")
        ns.ip("link", "del", "gone")
        # The dead fd stays "readable" for epoll: a daemon that keeps reading it spins.
        time.sleep(0.1)
        cpu0 = _cpu_seconds(d.pid)
        time.sleep(0.5)
        busy = _cpu_seconds(d.pid) - cpu0
        assert busy < 0.2, f"daemon used {busy:.2f}s of CPU in 0.5s while idle"
        # Frames for the session from its peer's address and port.
        ns.python(
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.bind(('{REMOTE}', 1702))\n"
            "frame = bytes(6) + bytes.fromhex('020000000001') + b'\\x08\\x00' + bytes(46)\n"
            "for _ in range(3):\n"
            f"    s.sendto(b'\\x00\\x03\\x00\\x00' + (7).to_bytes(4, 'big') + bytes(4) + frame,"
            f" ('{LOCAL}', 1701))\n"
        )
        wait_counter(lambda: d.counters(1, 7), "rx_packets", 2)
        assert d.alive()
        assert d.session(session_id=7)["interface"] == "gone"
        assert "Traceback" not in d.log() and "ERROR" not in d.log(), d.log_tail()
        d.cli("del session tunnel_id 1 session_id 7")
        assert d.sessions() == []


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the wire follows configuration changes -------------------------------------------------

_NRNS_TX = re.compile(r"^   (\d+)/(\d+) tx ", re.M)


def _nr_ns(d: Daemon) -> tuple[int, int]:
    """(nr, ns) of the only session, from ``pyl2tp debug``."""
    text = d.debug()
    [(nr, ns)] = _NRNS_TX.findall(text)
    return int(nr), int(ns)


def test_set_session_send_seq_changes_the_wire(netns_factory: NetnsFactory) -> None:
    """``set session ... seq send`` on A makes A number its frames: the peer, which had
    seen no sequence number at all (nr 0), now counts them, and as the LAC it starts
    sequencing itself, as the kernel's receive path makes it do."""
    a, b = netns_factory("seqa"), netns_factory("seqb")
    for ns in (a, b):
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", 1)
    veth(a, b, "10.79.0.1/24", "10.79.0.2/24")
    da, dbb = Daemon(a), Daemon(b)
    with da, dbb:
        start_all([da, dbb])
        for d, loc, rem, tid, ptid in (
            (da, "10.79.0.1", "10.79.0.2", 1, 2),
            (dbb, "10.79.0.2", "10.79.0.1", 2, 1),
        ):
            d.cli(
                f"add tunnel tunnel_id {tid} peer_tunnel_id {ptid} encap udp local {loc} "
                f"remote {rem} udp_sport 1701 udp_dport 1701"
            )
            d.cli(f"add session name pw tunnel_id {tid} session_id {tid} peer_session_id {ptid}")
        a.addr_add("pw", "10.179.0.1/24")
        b.addr_add("pw", "10.179.0.2/24")
        a.link_up("pw")
        b.link_up("pw")
        r = ping(a, "10.179.0.2")
        assert r.ok, str(r)
        assert _nr_ns(dbb) == (0, 0) and _nr_ns(da) == (0, 0)
        assert "send_seq" not in dbb.session(session_id=2)

        da.cli("set session tunnel_id 1 session_id 1 seq send")
        assert "send_seq" in da.session(session_id=1)
        r = ping(a, "10.179.0.2", count=3)
        assert r.ok, str(r)
        nr_b, ns_b = _nr_ns(dbb)
        nr_a, ns_a = _nr_ns(da)
        assert ns_a >= 3 and nr_b >= 3, (nr_a, ns_a, nr_b, ns_b)
        assert "send_seq" in dbb.session(session_id=2), "the LAC did not follow the LNS"
        assert ns_b > 0 and nr_a > 0, (nr_a, ns_a, nr_b, ns_b)


# -- lifetime -----------------------------------------------------------------------------


def _populate(d: Daemon) -> set[str]:
    d.cli(f"add tunnel tunnel_id 1 peer_tunnel_id 1 {UDP_T}")
    d.cli(f"add tunnel tunnel_id 2 peer_tunnel_id 2 encap ip local {LOCAL} remote {REMOTE}")
    d.cli("add session name life0 tunnel_id 1 session_id 1 peer_session_id 1")
    d.cli("add session tunnel_id 1 session_id 2 peer_session_id 2")
    d.cli("add session name life2 tunnel_id 2 session_id 3 peer_session_id 3")
    made = {s["interface"] for s in d.sessions()}
    assert len(made) == 3 and made <= devices(d.ns)
    return made


def test_sigterm_removes_devices_and_socket(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """SIGTERM: every device the daemon made and its socket file are gone, exit status 0. A
    second daemon on a live socket refuses to start instead of stealing it."""
    ns = netns_factory("term")
    _local_link(ns)
    path = str(tmp_path / "api.sock")
    with Daemon(ns, path) as d:
        d.start()
        made = _populate(d)
        with Daemon(ns, path) as intruder:
            intruder.spawn()
            assert intruder.proc is not None
            assert intruder.proc.wait(15) == 1
            assert "already serving" in intruder.log()
        assert len(d.sessions()) == 3
        assert d.stop(signal.SIGTERM) == 0, d.log_tail()
        assert not (made & devices(ns)), devices(ns)
        assert not os.path.exists(path)
        assert "shutting down: deleting 2 tunnels" in d.log()
        proc = d.cli("show tunnel", check=False)
        assert proc.returncode == 1 and "cannot reach the pyl2tp daemon" in proc.stderr


def test_sigkill_leaves_no_devices(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """SIGKILL gives the daemon no chance to clean up, yet its TAP devices die with their
    file descriptors; the stale socket file left behind does not stop a new daemon."""
    ns = netns_factory("kill")
    _local_link(ns)
    path = str(tmp_path / "api.sock")
    with Daemon(ns, path) as d:
        d.start()
        made = _populate(d)
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        wait_for(lambda: not (made & devices(ns)), timeout=5, message="TAP devices to vanish")
        assert os.path.exists(path), "a killed daemon cannot have removed its socket"
    with Daemon(ns, path) as again:
        again.start()
        assert again.show("tunnel") == []
        again.cli(f"add tunnel tunnel_id 1 peer_tunnel_id 1 {UDP_T}")
        again.cli("add session name life0 tunnel_id 1 session_id 1 peer_session_id 1")
        assert "life0" in devices(ns)


def test_request_errors_have_kernel_shape(api: Api) -> None:
    """The client library raises L2tpError carrying the errno, as a netlink caller sees it."""
    with pytest.raises(L2tpError) as info:
        api.d.request("tunnel_delete", {"conn_id": 12345})
    assert info.value.code == errno.ENODEV
