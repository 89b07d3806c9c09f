"""Peer sockets: the connected socket a UDP tunnel gets once it carries sessions.

Real UDP sockets on the loopback interface (no namespace needed): the kernel must hand the
peer's datagrams to the connected socket and everyone else's to the shared one, sending must
come from the shared port, the port must stay as exclusive as before, and the socket must go
away with the last tunnel that uses it, after what was queued in it has been read.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from pyl2tp.dataplane.model import Session, Tunnel
from pyl2tp.dataplane.registry import Registry
from pyl2tp.dataplane.userspace import UserspaceBackend
from pyl2tp.wire.constants import EncapType, PwType

LO = "127.0.0.1"


class Rig:
    """A backend on a private loop, and a 'peer' socket the tunnel talks to."""

    def __init__(self, budget: int | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.backend = UserspaceBackend(self.loop)
        if budget is not None:
            self.backend.peer_sockets_max = budget
        self.reg = Registry()
        self.backend.attach(self.reg)
        self.peer = self.udp_socket()
        self.control: list[tuple[bytes, tuple[Any, ...]]] = []
        self.backend.control_handler = lambda _ep, data, _off, addr: self.control.append(
            (data, addr))
        self.delivered: dict[int, list[bytes]] = {}

    @staticmethod
    def udp_socket() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LO, 0))
        s.settimeout(2)
        return s

    def tunnel(self, tid: int, sport: int = 0, dport: int | None = None) -> Tunnel:
        port = self.peer.getsockname()[1] if dport is None else dport
        return self.reg.add_tunnel(Tunnel(tid, tid + 100, 3, EncapType.UDP,
                                          family=socket.AF_INET, local=LO, remote=LO,
                                          udp_sport=sport, udp_dport=port))

    def session(self, tunnel: Tunnel, sid: int) -> Session:
        # PPP pseudowires need no device: the channel alone.
        s = self.reg.add_session(Session(tunnel, sid, sid, PwType.PPP))
        got: list[bytes] = []
        self.delivered[sid] = got
        s.deliver = lambda p: got.append(bytes(p))
        return s

    def spin(self, seconds: float = 0.05) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def close(self) -> None:
        self.backend.close()
        self.spin(0)
        self.loop.close()
        self.peer.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    try:
        yield r
    finally:
        r.close()


def data_packet(sid: int, payload: bytes) -> bytes:
    return b"\x00\x03\x00\x00" + struct.pack(">I", sid) + payload


def test_sessions_bring_the_peer_socket(rig: Rig) -> None:
    tunnel = rig.tunnel(1)
    ep = tunnel.endpoint
    assert tunnel.sock is None and not ep.peers  # a tunnel alone moves no data
    rig.session(tunnel, 5)
    assert tunnel.sock is not None
    assert tunnel.sock.getpeername() == (LO, rig.peer.getsockname()[1])
    assert tunnel.sock.getsockname() == ep.sock.getsockname()
    assert list(ep.peers) == [tunnel.peer_addr] and rig.backend.peer_sockets == 1
    rig.session(tunnel, 6)
    assert rig.backend.peer_sockets == 1 and ep.peers[tunnel.peer_addr].users == 1


def test_traffic_in_both_directions(rig: Rig) -> None:
    tunnel = rig.tunnel(1)
    session = rig.session(tunnel, 5)
    ep = tunnel.endpoint
    here = (LO, tunnel.udp_sport)
    rig.peer.sendto(data_packet(5, b"from the peer"), here)
    stranger = rig.udp_socket()
    stranger.sendto(data_packet(5, b"from a stranger"), here)
    rig.peer.sendto(b"\xc8\x03\x00\x0c\x00\x01\x00\x00\x00\x00\x00\x00", here)  # control
    rig.spin()
    assert rig.delivered[5] == [b"from the peer"]
    assert ep.rx_wrong_peer == 1  # the stranger's arrived on the shared socket
    assert ep.rx_datagrams == 3 and ep.rx_control == 1
    assert rig.control == [(b"\xc8\x03\x00\x0c\x00\x01\x00\x00\x00\x00\x00\x00",
                            (LO, rig.peer.getsockname()[1]))]
    rig.backend.transmit(session, b"frame")
    data, src = rig.peer.recvfrom(100)
    assert data == session.tx_header + b"frame" and src == here  # type: ignore[operator]
    assert session.stats.tx_packets == 1 and session.stats.rx_packets == 1
    stranger.close()


def test_the_port_stays_exclusive(rig: Rig) -> None:
    tunnel = rig.tunnel(1)
    rig.session(tunnel, 5)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with pytest.raises(OSError) as exc:
        intruder.bind((LO, tunnel.udp_sport))
    assert exc.value.errno == errno.EADDRINUSE
    intruder.close()
    for sock in (tunnel.endpoint.sock, tunnel.sock):
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0


def test_tunnels_to_one_peer_share_it_until_the_last_goes(rig: Rig) -> None:
    first = rig.tunnel(1)
    rig.session(first, 5)
    second = rig.tunnel(2, sport=first.udp_sport)
    rig.session(second, 6)
    ep = first.endpoint
    assert second.endpoint is ep and second.sock is first.sock
    assert ep.peers[first.peer_addr].users == 2
    ep.pinned = True  # a control-plane listener: it outlives its tunnels
    rig.reg.delete_tunnel(first)
    rig.spin()
    assert second.sock is not None and ep.peers[first.peer_addr].users == 1
    # Queued in the peer socket when the last tunnel goes: still read, then the socket closes.
    rig.peer.sendto(b"\xc8\x03\x00\x0c\x00\x02\x00\x00\x00\x00\x00\x00", (LO, ep.port))
    sock = second.sock
    rig.reg.delete_tunnel(second)
    assert ep.peers  # not yet: the loop closes it
    rig.spin()
    assert not ep.peers and rig.backend.peer_sockets == 0 and sock.fileno() == -1
    assert len(rig.control) == 1
    # From now on the peer's datagrams arrive on the shared socket.
    rig.peer.sendto(b"\xc8\x03\x00\x0c\x00\x03\x00\x00\x00\x00\x00\x00", (LO, ep.port))
    rig.spin()
    assert len(rig.control) == 2


def test_endpoint_released_with_its_peer_sockets(rig: Rig) -> None:
    tunnel = rig.tunnel(1)
    rig.session(tunnel, 5)
    sock, ep = tunnel.sock, tunnel.endpoint
    rig.reg.delete_tunnel(tunnel)
    assert sock.fileno() == -1 and ep.sock.fileno() == -1 and rig.backend.peer_sockets == 0
    rig.spin()  # the scheduled retirement finds nothing left to do


def test_without_budget_the_shared_socket_serves(rig: Rig) -> None:
    rig.backend.peer_sockets_max = 0
    tunnel = rig.tunnel(1)
    session = rig.session(tunnel, 5)
    assert tunnel.sock is None and not tunnel.endpoint.peers
    rig.peer.sendto(data_packet(5, b"in"), (LO, tunnel.udp_sport))
    rig.spin()
    rig.backend.transmit(session, b"out")
    assert rig.delivered[5] == [b"in"]
    assert rig.peer.recvfrom(100)[0].endswith(b"out")
    assert session.stats.tx_packets == 1


def test_port_unreachable_reported_on_send_is_sent_again(rig: Rig) -> None:
    """A connected socket reports the peer's ICMP port unreachable as the error of the next
    send, which sends nothing; the shared socket would have sent and said nothing."""
    gone = rig.udp_socket()
    port = gone.getsockname()[1]
    gone.close()
    tunnel = rig.tunnel(1, dport=port)
    session = rig.session(tunnel, 5)
    with mock.patch.object(rig.backend, "_resend", wraps=rig.backend._resend) as resend:
        for _ in range(3):
            rig.backend.transmit(session, b"x")
    assert [c.args[2].errno for c in resend.call_args_list] == [errno.ECONNREFUSED] * 2
    assert session.stats.tx_packets == 3 and session.stats.tx_errors == 0
    assert tunnel.endpoint.tx_errors == 0
