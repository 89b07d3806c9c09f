"""Tunnels and sessions as the kernel models them (``struct l2tp_tunnel`` / ``l2tp_session``).

These are plain slotted objects: the registry is their single owner, the receive and transmit
paths touch their attributes directly, and counters are plain integers so that the per-packet
cost stays one attribute increment.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from pyl2tp.wire.constants import EncapType, L2SpecType, PwType

STATS_FIELDS = (
    "tx_packets",
    "tx_bytes",
    "tx_errors",
    "rx_packets",
    "rx_bytes",
    "rx_seq_discards",
    "rx_cookie_discards",
    "rx_oos_packets",
    "rx_errors",
    "rx_invalid",
)  # the kernel's order inside L2TP_ATTR_STATS


REORDER_Q_MAX = 1024
"""Default bound on a session's reorder queue (``Session.reorder_q_max``), in packets."""


class Stats:
    """Per-tunnel and per-session counters with the kernel's names and meanings."""

    __slots__ = STATS_FIELDS

    def __init__(self) -> None:
        self.tx_packets = 0
        self.tx_bytes = 0
        self.tx_errors = 0
        self.rx_packets = 0
        self.rx_bytes = 0
        self.rx_seq_discards = 0
        self.rx_cookie_discards = 0
        self.rx_oos_packets = 0
        self.rx_errors = 0
        self.rx_invalid = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in STATS_FIELDS}


def _packed(family: int, address: str) -> bytes:
    """``address`` in network byte order, or b"" when it is not a literal of ``family``."""
    try:
        return socket.inet_pton(family, address)
    except (OSError, ValueError, TypeError):
        return b""


def _drop(_payload: bytes | bytearray) -> None:
    """Pseudowire receive handler of a session that has none (yet): the frame is consumed."""


class Tunnel:
    """An L2TP tunnel: ids, encapsulation, addresses, its sessions and counters.

    ``endpoint`` is the backend object that owns the socket the tunnel sends and receives on
    (one per local address and port); ``sessions`` maps the local session id to the session.
    ``sock`` is the socket connected to the peer that the backend may add once the tunnel
    carries sessions (UDP only): sending on it spares the kernel a route lookup per packet,
    and what it receives is known to come from the peer. None means the endpoint's socket.
    ``peer_raw`` is the peer's address in network byte order, for comparing the source of a
    raw IPv4 packet without turning it into a string.
    """

    __slots__ = (
        "tunnel_id",
        "peer_tunnel_id",
        "version",
        "encap",
        "family",
        "local",
        "remote",
        "udp_sport",
        "udp_dport",
        "udp_csum",
        "udp_zero_csum6_tx",
        "udp_zero_csum6_rx",
        "sessions",
        "stats",
        "acpt_newsess",
        "dead",
        "endpoint",
        "peer_addr",
        "peer_raw",
        "sock",
        "managed",
        "owner",
    )

    def __init__(
        self,
        tunnel_id: int,
        peer_tunnel_id: int,
        version: int,
        encap: EncapType,
        *,
        family: int,
        local: str,
        remote: str,
        udp_sport: int = 0,
        udp_dport: int = 0,
        udp_csum: bool = False,
        udp_zero_csum6_tx: bool = False,
        udp_zero_csum6_rx: bool = False,
        managed: bool = False,
    ) -> None:
        self.tunnel_id = tunnel_id
        self.peer_tunnel_id = peer_tunnel_id
        self.version = version
        self.encap = encap
        self.family = family
        self.local = local
        self.remote = remote
        self.udp_sport = udp_sport
        self.udp_dport = udp_dport
        self.udp_csum = udp_csum
        self.udp_zero_csum6_tx = udp_zero_csum6_tx
        self.udp_zero_csum6_rx = udp_zero_csum6_rx
        self.sessions: dict[int, Session] = {}
        self.stats = Stats()
        self.acpt_newsess = True
        self.dead = False
        self.endpoint: Any = None
        # The socket address data is sent to: (remote, udp_dport) for UDP, (remote, 0) for IP.
        self.peer_addr: tuple[Any, ...] = (remote, udp_dport)
        self.peer_raw = _packed(family, remote)
        self.sock: Any = None
        self.managed = managed
        # Who created the tunnel (a control connection, a config section, the API); informative.
        self.owner: str = "api"

    @property
    def name(self) -> str:
        return f"tunl {self.tunnel_id}"


class Session:
    """An L2TP session with the kernel's receive-sequencing state.

    Sequencing fields mirror ``l2tp_session_create``: ``nr``/``ns`` start at 0, ``nr_max`` is
    0xFFFF for v2 and 0xFFFFFF for v3, the acceptance window is half the space, and
    ``reorder_skip`` starts set so that the first sequenced packet fixes ``nr``.
    ``cookie`` is what we put in transmitted packets; ``peer_cookie`` is what received packets
    must carry (the kernel's naming). ``reorder_timeout`` is in seconds.

    ``reorder_q_max`` bounds the reorder queue (the kernel bounds it by the socket's receive
    buffer, which we do not have); a packet beyond it is discarded and counted in
    ``rx_seq_discards`` and ``rx_errors``. ``tx_header`` is the whole transmit header when it
    is the same for every packet (no sequence number to send), else None; ``rx_plain`` says
    whether received packets may skip the general receive algorithm (see
    :func:`pyl2tp.dataplane.recv.set_fast_path`): -1 if not, else the length of the
    sublayer to skip. Both are derived from the configuration and recomputed on every change.
    ``deliver`` gets each received frame as bytes or a bytearray that it may keep.
    """

    __slots__ = (
        "tunnel",
        "session_id",
        "peer_session_id",
        "pw_type",
        "cookie",
        "peer_cookie",
        "l2spec_type",
        "recv_seq",
        "send_seq",
        "lns_mode",
        "reorder_timeout",
        "nr",
        "ns",
        "nr_max",
        "nr_window_size",
        "nr_oos",
        "nr_oos_count",
        "nr_oos_count_max",
        "reorder_skip",
        "reorder_q",
        "reorder_q_max",
        "stats",
        "ifname",
        "deliver",
        "dead",
        "hdr_len",
        "tx_prefix",
        "tx_header",
        "rx_plain",
        "pw",
    )

    def __init__(
        self,
        tunnel: Tunnel,
        session_id: int,
        peer_session_id: int,
        pw_type: PwType | int,
        *,
        cookie: bytes = b"",
        peer_cookie: bytes = b"",
        l2spec_type: L2SpecType | int = L2SpecType.NONE,
        recv_seq: bool = False,
        send_seq: bool = False,
        lns_mode: bool = False,
        reorder_timeout: float = 0.0,
        ifname: str = "",
    ) -> None:
        self.tunnel = tunnel
        self.session_id = session_id
        self.peer_session_id = peer_session_id
        self.pw_type = int(pw_type)
        self.cookie = cookie
        self.peer_cookie = peer_cookie
        self.l2spec_type = int(l2spec_type)
        self.recv_seq = recv_seq
        self.send_seq = send_seq
        self.lns_mode = lns_mode
        self.reorder_timeout = reorder_timeout
        self.nr = 0
        self.ns = 0
        self.nr_max = 0xFFFF if tunnel.version == 2 else 0xFFFFFF
        self.nr_window_size = self.nr_max // 2
        self.nr_oos = 0
        self.nr_oos_count = 0
        self.nr_oos_count_max = 4
        self.reorder_skip = True
        # Entries: [ns, has_seq, expires, payload, length]; see pyl2tp.dataplane.recv.
        self.reorder_q: list[list[Any]] = []
        self.reorder_q_max = REORDER_Q_MAX
        self.stats = Stats()
        self.ifname = ifname
        self.deliver: Callable[[bytes | bytearray], None] = _drop
        self.dead = False
        self.hdr_len = 0
        self.tx_prefix = b""
        self.tx_header: bytes | None = None
        # Until set_fast_path() has looked at the configuration: always the general path.
        self.rx_plain = -1
        self.pw: Any = None

    @property
    def name(self) -> str:
        return f"sess {self.tunnel.tunnel_id}/{self.session_id}"
