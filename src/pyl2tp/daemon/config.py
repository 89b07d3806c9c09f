"""The daemon's TOML configuration, checked once at load time into frozen dataclasses.

Everything the daemon does on its own (listen, dial, nail up static tunnels) comes from this
file, so a mistake in it is found here, before any socket is opened, and reported the way a
compiler would: ``pyl2tp.toml:12: tunnel 'to-lns': version must be 2 or 3``. ``tomllib`` keeps no
positions, so a small scanner (:func:`_locate`) maps every table and key back to its line.

Unknown keys are errors with a "did you mean" hint, because a misspelt ``helo_interval`` that is
silently ignored is a tunnel that behaves differently from what its operator reads in the file.
Booleans and integers are not interchangeable for the same reason (``hide_avps = 1`` is refused,
and so is ``port = true``).

Tunnel parameters are written once in ``[defaults]`` and overridden per ``[[peer]]`` and
``[[tunnel]]`` (and a few per ``[[tunnel.session]]``); each object here carries the merged
result, so the daemon never has to repeat the inheritance rules. All objects are frozen, hashable
and compare by value, so on SIGHUP the daemon can diff the old and the new configuration
(``old.tunnels`` against ``new.tunnels``) and touch only what changed.

PPP settings live in named ``[[ppp]]`` profiles that a ``[[peer]]``, a ``[[tunnel]]`` or a
``[[tunnel.session]]`` refers to by name; references are checked here, and a session carries
its resolved profile name, so the daemon looks it up with :meth:`Config.ppp_profile` and never
has to know where it was written. A ``[[peer]]`` may instead ``switch_to`` a dialled tunnel,
bridging each incoming PPP session to a new session placed there.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import math
import re
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn, TypeAlias

from ..dataplane.tuntap import validate_ifname
from ..ppp.protocols import AuthMethod
from ..wire.constants import DataSequencing, DigestType, EncapType, L2SpecType, PwType

__all__ = [
    "Config",
    "ConfigError",
    "DaemonSection",
    "DialSession",
    "DialTunnel",
    "Direction",
    "Listen",
    "PeerPolicy",
    "PppProfile",
    "StaticSession",
    "StaticTunnel",
    "TunnelParams",
    "load",
    "parse",
]

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

L2TP_PORT: Final = 1701
MAX_ID: Final = 0xFFFFFFFF
MAX_V2_ID: Final = 0xFFFF
MAX_RECEIVE_WINDOW: Final = 0x7FFF  # the largest window half-space Ns comparison can tell apart
MIN_RETRANSMIT_CAP: Final = 8.0  # RFC 2661 §5.8: the cap MUST be no less than 8 seconds
MAX_HOST_NAME: Final = 1017  # an AVP is at most 1023 octets, 6 of them header
MAX_SUN_PATH: Final = 107  # sockaddr_un.sun_path is 108 bytes including the NUL
MAX_POOL: Final = 1 << 20  # addresses in one [[ppp]] pool: a bound on the daemon's bookkeeping
MAX_PAP_FIELD: Final = 255  # PAP's Peer-ID and Password carry one-octet lengths (RFC 1334 §2.2.1)
MAX_DNS: Final = 2  # IPCP has options for a primary and a secondary server only (RFC 1877)


class ConfigError(Exception):
    """A configuration the daemon refuses to run with.

    ``line`` is kept separately from the text so a caller (a reload over the management API,
    an editor integration) can point at the line without parsing the message back.
    """

    def __init__(self, message: str, *, source: str = "<string>", line: int | None = None):
        self.source = source
        self.line = line
        self.message = message
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class Direction(enum.StrEnum):
    """Who places a dialled call: we send ICRQ for an incoming call, OCRQ for an outgoing one."""

    INCOMING = "incoming"
    OUTGOING = "outgoing"


# --------------------------------------------------------------------------------------------
# The validated configuration


@dataclass(frozen=True, slots=True)
class TunnelParams:
    """Control-connection and session parameters that ``[defaults]`` sets for every tunnel.

    One type for the defaults and for every resolved peer and tunnel, so code that runs a
    control connection takes a ``TunnelParams`` and never asks where a value came from.
    """

    hello_interval: float = 60.0
    receive_window: int = 8
    retransmit_initial: float = 1.0
    retransmit_cap: float = 8.0
    max_retries: int = 5
    hide_avps: bool = False
    challenge: bool = True
    digest: DigestType = DigestType.HMAC_MD5
    pw_types: tuple[PwType, ...] = (PwType.ETH, PwType.PPP)
    max_sessions: int = 1024
    cookie_len: int = 8
    l2spec_type: L2SpecType = L2SpecType.DEFAULT
    data_sequencing: DataSequencing = DataSequencing.NONE
    sequencing: bool = False
    reorder_timeout: float = 0.0
    setup_timeout: float = 30.0
    control_rx_queue: int = 16


@dataclass(frozen=True, slots=True)
class DaemonSection:
    """Process-wide settings. ``router_id`` stays None until the daemon derives one, because
    the best source (a local address) is only known once listeners are bound.

    The ``max_*`` and ``sccrq_*`` keys bound what peers can make the daemon hold (see
    docs/configuration.md): each has a default that a host of modest size carries, and each is
    enforced with the protocol's refusal and a named counter rather than by failing."""

    host_name: str = field(default_factory=socket.gethostname)
    router_id: int | None = None
    socket: str | None = None
    log_level: str = "info"
    max_tunnels: int = 4096
    max_half_open_tunnels: int = 1024
    max_sessions: int = 65535
    sccrq_rate: float = 50.0
    sccrq_burst: int = 100
    sccrq_sources: int = 4096
    max_ppp_negotiations: int = 1024
    reorder_queue: int = 1024
    metrics: str | None = None
    metrics_sessions: bool = False
    log_format: str = "text"
    backend: str = "auto"


@dataclass(frozen=True, slots=True)
class Listen:
    """A control-plane socket to accept tunnels on; ``port`` is 0 for IP encapsulation, which
    has no ports (RFC 3931 §4.1.1)."""

    encap: EncapType = EncapType.UDP
    address: str = "0.0.0.0"
    port: int = L2TP_PORT


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """How to treat an incoming tunnel. Policies are tried in file order, so a specific entry
    placed before a catch-all narrows it, as in a firewall rule list."""

    name: str
    address: IPNetwork | None = None
    host_name: str | None = None
    secret: bytes | None = None
    versions: tuple[int, ...] = (2, 3)
    accept: bool = True
    params: TunnelParams = TunnelParams()
    ppp: str | None = None
    """The [[ppp]] profile that terminates PPP sessions on tunnels accepted under this policy."""
    switch_to: str | None = None
    """The [[tunnel]] to which each incoming PPP session is switched instead (exclusive with
    ``ppp``)."""

    def matches(self, address: str, host_name: str | None) -> bool:
        """Whether a tunnel from ``address`` announcing ``host_name`` falls under this policy.

        An IPv4-mapped IPv6 address (what a dual-stack socket reports) matches IPv4 prefixes,
        so one policy covers a peer however the daemon's socket happened to see it. Host names
        compare case-insensitively, like DNS names. Raises ValueError for an invalid address,
        which is a caller bug rather than a non-match.
        """
        if self.address is not None:
            addr = ipaddress.ip_address(address)
            mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
            if mapped is not None and self.address.version == 4:
                addr = mapped
            if addr not in self.address:
                return False
        if self.host_name is not None:
            return host_name is not None and host_name.casefold() == self.host_name.casefold()
        return True


@dataclass(frozen=True, slots=True)
class DialSession:
    """A call to place once its tunnel is established; ``count`` identical calls share one
    entry so a test rig with hundreds of sessions stays a few lines of configuration.

    Values are resolved for the tunnel's version, so the daemon can use them as they are: on
    v2 ``cookie_len`` is 0 and ``l2spec_type`` NONE (v2 has neither), on v3 ``sequencing`` is
    False (``data_sequencing`` says it there).
    """

    direction: Direction = Direction.INCOMING
    pw_type: PwType = PwType.ETH
    count: int = 1
    ifname: str | None = None
    remote_end_id: str | None = None
    called_number: str | None = None
    cookie_len: int = 8
    l2spec_type: L2SpecType = L2SpecType.DEFAULT
    data_sequencing: DataSequencing = DataSequencing.NONE
    sequencing: bool = False
    reorder_timeout: float = 0.0
    ppp: str | None = None
    """The [[ppp]] profile for this session: its own, else its tunnel's when it is a PPP
    session; always None for other pseudowire types."""


@dataclass(frozen=True, slots=True)
class DialTunnel:
    """A control connection the daemon initiates at start and re-establishes when it drops.
    ``port`` and ``local_port`` are 0 for IP encapsulation. ``local_port`` defaults to 1701
    because many peers (and NAT or firewall rules written for them) expect the LAC to use
    it; 0 lets the kernel pick an ephemeral port, which gives the tunnel its own socket."""

    name: str
    peer: str
    version: int
    port: int = L2TP_PORT
    encap: EncapType = EncapType.UDP
    local: str | None = None
    local_port: int = L2TP_PORT
    secret: bytes | None = None
    params: TunnelParams = TunnelParams()
    sessions: tuple[DialSession, ...] = ()
    ppp: str | None = None
    """The default [[ppp]] profile for this tunnel's PPP sessions (already applied to those in
    ``sessions``)."""


@dataclass(frozen=True, slots=True)
class PppProfile:
    """A named ``[[ppp]]`` profile: how a PPP session is terminated locally on a TUN device.

    The same profile serves both roles. On a session the daemon accepted (LNS) it demands
    ``auth`` from the peer, checks the answer against ``secrets`` and hands out ``peer_ip`` or
    an address from ``pool``; on a session the daemon placed (LAC/client) it answers the peer's
    demand with ``user`` and ``password`` and takes the address the peer assigns. The secrets
    file is only named here: the daemon reads it (and re-reads it when it changes), so
    editing it needs no reload and a file missing at load time is not a configuration error.
    """

    name: str
    auth: tuple[AuthMethod, ...] = ()
    peer_auth: tuple[AuthMethod, ...] = (AuthMethod.MSCHAP_V2, AuthMethod.CHAP_MD5,
                                         AuthMethod.PAP)
    secrets: str | None = None
    user: str | None = None
    password: str | None = None
    auth_name: str | None = None
    mru: int = 1500
    mtu: int | None = None
    echo_interval: float = 10.0
    echo_failure: int = 3
    restart_interval: float = 3.0
    max_configure: int = 10
    max_terminate: int = 2
    max_failure: int = 5
    auth_timeout: float = 30.0
    local_ip: ipaddress.IPv4Address | None = None
    pool: str | None = None
    peer_ip: ipaddress.IPv4Address | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    request_dns: bool = False
    ipv4: bool = True
    ipv6: bool = False
    ifname: str = "ppp%d"
    default_route: bool = False

    def pool_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None:
        """The first and last address of ``pool`` (both inclusive), or None without a pool.

        A prefix gives its usable hosts: a /24 yields .1 to .254, a /31 both addresses and a
        /32 its one address. ``local_ip`` is not removed; the daemon skips it when assigning.
        """
        return None if self.pool is None else _pool_bounds(self.pool)


@dataclass(frozen=True, slots=True)
class StaticSession:
    """An unmanaged session: the same attributes ``ip l2tp add session`` takes."""

    session_id: int
    peer_session_id: int
    pw_type: PwType = PwType.ETH
    cookie: bytes | None = None
    peer_cookie: bytes | None = None
    l2spec_type: L2SpecType = L2SpecType.DEFAULT
    ifname: str | None = None
    recv_seq: bool = False
    send_seq: bool = False
    lns_mode: bool = False
    reorder_timeout: float = 0.0


@dataclass(frozen=True, slots=True)
class StaticTunnel:
    """An unmanaged tunnel: the same attributes ``ip l2tp add tunnel`` takes. The udp6 flags
    say whether checksums are used, the inverse of the kernel's ``udp_zero_csum6_*``."""

    tunnel_id: int
    peer_tunnel_id: int
    local: str
    remote: str
    version: int = 3
    encap: EncapType = EncapType.UDP
    udp_sport: int = 0
    udp_dport: int = 0
    udp_csum: bool = False
    udp6_csum_tx: bool = True
    udp6_csum_rx: bool = True
    sessions: tuple[StaticSession, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    """The whole file. Equality is by value, so ``old == new`` after a SIGHUP means a no-op."""

    daemon: DaemonSection = field(default_factory=DaemonSection)
    listen: tuple[Listen, ...] = ()
    defaults: TunnelParams = TunnelParams()
    peers: tuple[PeerPolicy, ...] = ()
    tunnels: tuple[DialTunnel, ...] = ()
    static_tunnels: tuple[StaticTunnel, ...] = ()
    ppp: tuple[PppProfile, ...] = ()

    def ppp_profile(self, name: str) -> PppProfile | None:
        """The ``[[ppp]]`` profile called ``name``; references are checked at load time, so
        None only answers a name that did not come from this configuration."""
        for profile in self.ppp:
            if profile.name == name:
                return profile
        return None

    def peer_for(self, address: str, host_name: str | None) -> PeerPolicy | None:
        """The policy for an incoming tunnel; None means no policy covers it (refuse it)."""
        for peer in self.peers:
            if peer.matches(address, host_name):
                return peer
        return None


def load(path: str) -> Config:
    """Read and validate ``path``; any problem, unreadable file included, is a ConfigError so
    the daemon has one thing to catch and print."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=path) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError("not valid UTF-8", source=path, line=line) from exc
    return parse(text, path)


def parse(text: str, source: str = "<string>") -> Config:
    """Validate configuration text; ``source`` names it in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.fullmatch(r"(.*) \(at line (\d+), column \d+\)", msg, re.DOTALL)
        if m:
            raise ConfigError(f"invalid TOML: {m[1]}", source=source, line=int(m[2])) from exc
        raise ConfigError(f"invalid TOML: {msg}", source=source) from exc
    return _Loader(text, source).config(doc)


# --------------------------------------------------------------------------------------------
# Value converters: each takes a TOML value and returns the typed value, or raises _Bad with
# the rest of a sentence that starts with the key ("port" + " must be ...").

Conv: TypeAlias = Callable[[Any], Any]


class _Bad(Exception):
    """A value's complaint; the caller adds the key and the location, which it alone knows."""


def _kind(value: object) -> str:
    """TOML's name for a value's type, so "not a string" reads in the file's own terms."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _integer(lo: int, hi: int | None = None) -> Conv:
    want = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"

    def conv(value: Any) -> int:
        # bool is a subclass of int: without this check ``port = true`` would be port 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"must be {want}, not {_kind(value)}")
        if value < lo or (hi is not None and value > hi):
            raise _Bad(f"must be {want}")
        return value

    return conv


def _one_of(*allowed: int) -> Conv:
    words = ", ".join(map(str, allowed[:-1])) + f" or {allowed[-1]}"

    def conv(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"must be {words}, not {_kind(value)}")
        if value not in allowed:
            raise _Bad(f"must be {words}")
        return value

    return conv


def _seconds(lo: float, *, strict: bool = False, note: str = "") -> Conv:
    want = f"a number {'>' if strict else '>='} {lo:g}{note}"

    def conv(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(f"must be {want}, not {_kind(value)}")
        if not math.isfinite(value) or value < lo or (strict and value == lo):
            raise _Bad(f"must be {want}")
        return float(value)

    return conv


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, not {_kind(value)}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad("must be a non-empty string")
    return value


def _choice(names: Mapping[str, Any]) -> Conv:
    words = ", ".join(repr(n) for n in names)

    def conv(value: Any) -> Any:
        if not isinstance(value, str) or value not in names:
            raise _Bad(f"must be one of {words}")
        return names[value]

    return conv


def _address(value: Any) -> str:
    # Normalised, so "2001:db8:0::1" and "2001:db8::1" compare equal on reload.
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
    except ValueError:
        raise _Bad("must be an IPv4 or IPv6 address") from None


def _network(value: Any) -> IPNetwork:
    try:
        return ipaddress.ip_network(value if isinstance(value, str) else "", strict=False)
    except ValueError:
        raise _Bad("must be an IP address or prefix such as '10.0.0.0/24'") from None


def _secret(value: Any) -> bytes:
    return _text(value).encode("utf-8")


def _host_name(value: Any) -> str:
    if len(_text(value).encode("utf-8")) > MAX_HOST_NAME:
        raise _Bad(f"must be at most {MAX_HOST_NAME} bytes (the Host Name AVP's limit)")
    return str(value)


def _socket_path(value: Any) -> str:
    if "\0" in _text(value) or len(value.encode("utf-8")) > MAX_SUN_PATH:
        raise _Bad(f"must be a path of at most {MAX_SUN_PATH} bytes")
    return str(value)


def _metrics_address(value: Any) -> str:
    from .metrics import parse_address  # only a file that sets the key pays for the import

    try:
        parse_address(_text(value))
    except ValueError as exc:
        raise _Bad(str(exc)) from None
    return str(value)


def _router_id(value: Any) -> int:
    if isinstance(value, str):
        try:
            rid = int(ipaddress.IPv4Address(value))
        except ValueError:
            raise _Bad("must be a dotted IPv4 address or an integer") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        rid = value
    else:
        raise _Bad("must be a dotted IPv4 address or an integer")
    if not 1 <= rid <= MAX_ID:
        raise _Bad("must not be 0 and must fit in 32 bits (RFC 3931 §5.4.3)")
    return rid


def _ifname(value: Any) -> str:
    name = _text(value)
    try:
        validate_ifname(name, template="%" in name)
    except ValueError as exc:
        raise _Bad(f"is not a valid interface name: {exc}") from None
    return name


def _cookie(value: Any) -> bytes:
    try:
        cookie = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        cookie = b""
    if len(cookie) not in (4, 8):
        raise _Bad("must be 4 or 8 octets in hex, such as '0011223344556677'")
    return cookie


def _list_of(conv: Conv, what: str) -> Conv:
    def convert(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list) or not value:
            raise _Bad(f"must be a non-empty array of {what}")
        try:
            items = tuple(conv(v) for v in value)
        except _Bad:
            raise _Bad(f"must be a non-empty array of {what}") from None
        if len(set(items)) != len(items):
            raise _Bad("must not list a value twice")
        return items

    return convert


def _ipv4(value: Any) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.IPv4Address(value if isinstance(value, str) else "")
    except ValueError:
        raise _Bad("must be an IPv4 address") from None
    if addr.is_unspecified or addr.is_multicast or addr == _BROADCAST:
        raise _Bad("must be a unicast IPv4 address")
    return addr


_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")
_FIRST_NON_UNICAST: Final = ipaddress.IPv4Address("224.0.0.0")  # multicast, then reserved
_POOL_FORMS: Final = ("an IPv4 range such as '10.0.0.10-10.0.0.200' "
                      "or a prefix such as '10.0.0.0/24'")


def _pool_bounds(text: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """The first and last address of a pool written as ``a-b`` or as a prefix, whose network
    and broadcast addresses are left out unless it is a /31 or /32 (RFC 3021)."""
    if ":" in text:
        raise _Bad("must be IPv4 (IPV6CP negotiates interface identifiers, not addresses)")
    if "/" in text:
        try:
            net = ipaddress.IPv4Network(text)
        except ValueError:
            try:
                loose = ipaddress.IPv4Network(text, strict=False)
            except ValueError:
                raise _Bad(f"must be {_POOL_FORMS}") from None
            raise _Bad(f"has host bits set (did you mean {str(loose)!r}?)") from None
        if net.prefixlen >= 31:
            return net[0], net[-1]
        return net[1], net[-2]
    first_text, dash, last_text = text.partition("-")
    try:
        if not dash:
            ipaddress.IPv4Address(text)
            raise _Bad("must be a range or a prefix, not one address (that is peer_ip)")
        first = ipaddress.IPv4Address(first_text.strip())
        last = ipaddress.IPv4Address(last_text.strip())
    except ValueError:
        raise _Bad(f"must be {_POOL_FORMS}") from None
    if first > last:
        raise _Bad(f"must not end before it starts ({first} > {last})")
    return first, last


def _pool(value: Any) -> str:
    """A pool, checked and normalised ("10.0.0.1 - 10.0.0.9" and "10.0.0.1-10.0.0.9" compare
    equal on reload)."""
    text = value.strip() if isinstance(value, str) else ""
    first, last = _pool_bounds(text)
    if int(first) == 0 or last >= _FIRST_NON_UNICAST:
        raise _Bad("must hold unicast addresses only (not 0.0.0.0 nor 224.0.0.0 and above)")
    size = int(last) - int(first) + 1
    if size > MAX_POOL:
        raise _Bad(f"must hold at most {MAX_POOL} addresses, not {size}")
    return str(ipaddress.IPv4Network(text)) if "/" in text else f"{first}-{last}"


def _dns(value: Any) -> tuple[ipaddress.IPv4Address, ...]:
    want = f"must be an array of at most {MAX_DNS} IPv4 addresses"
    if not isinstance(value, list) or len(value) > MAX_DNS:
        raise _Bad(want)
    try:
        servers = tuple(_ipv4(v) for v in value)
    except _Bad:
        raise _Bad(want) from None
    if len(set(servers)) != len(servers):
        raise _Bad("must not list a value twice")
    return servers


def _methods(*, empty: bool) -> Conv:
    names = [m.value for m in AuthMethod]
    words = ", ".join(repr(n) for n in names)
    want = f"must be {'an' if empty else 'a non-empty'} array of {words}"

    def conv(value: Any) -> tuple[AuthMethod, ...]:
        if not isinstance(value, list) or not (value or empty):
            raise _Bad(want)
        methods: list[AuthMethod] = []
        for item in value:
            if not isinstance(item, str):
                raise _Bad(want)
            try:
                method = AuthMethod.parse(item)
            except ValueError:
                hint = _suggest(item.strip().lower(), names) or f" (use {words})"
                raise _Bad(f"lists unknown method {item!r}{hint}") from None
            if method in methods:
                raise _Bad(f"must not list {method.value!r} twice")
            methods.append(method)
        return tuple(methods)

    return conv


def _absolute_path(value: Any) -> str:
    if "\0" in _text(value) or not value.startswith("/"):
        raise _Bad("must be an absolute path")
    return str(value)


def _pap_field(value: Any) -> str:
    if len(_text(value).encode("utf-8")) > MAX_PAP_FIELD:
        raise _Bad(f"must be at most {MAX_PAP_FIELD} bytes (PAP's length field)")
    return str(value)


_ENCAPS: Final = {"udp": EncapType.UDP, "ip": EncapType.IP}
_DIAL_PW: Final = {"eth": PwType.ETH, "eth_vlan": PwType.ETH_VLAN, "ppp": PwType.PPP}
_STATIC_PW: Final = {"eth": PwType.ETH, "ppp": PwType.PPP}
_L2SPEC: Final = {"none": L2SpecType.NONE, "default": L2SpecType.DEFAULT}
_DATA_SEQ: Final = {
    "none": DataSequencing.NONE,
    "non_ip": DataSequencing.NON_IP,
    "all": DataSequencing.ALL,
}
_DIGESTS: Final = {"md5": DigestType.HMAC_MD5, "sha1": DigestType.HMAC_SHA1}
_LOG_LEVELS: Final = {n: n for n in ("debug", "info", "warning", "error")}
_DIRECTIONS: Final = {d.value: d for d in Direction}

# --------------------------------------------------------------------------------------------
# What each table may contain. A key's presence here is what makes it known; the dataclass
# default is what it means when left out.

_PARAMS: Final[dict[str, Conv]] = {
    "hello_interval": _seconds(0),
    "receive_window": _integer(1, MAX_RECEIVE_WINDOW),
    "retransmit_initial": _seconds(0, strict=True),
    "retransmit_cap": _seconds(MIN_RETRANSMIT_CAP, note=" (RFC 2661 §5.8)"),
    "max_retries": _integer(1, 100),
    "hide_avps": _boolean,
    "challenge": _boolean,
    "digest": _choice(_DIGESTS),
    "pw_types": _list_of(_choice(_DIAL_PW), "'eth', 'eth_vlan', 'ppp'"),
    "max_sessions": _integer(1, 0xFFFF),
    "cookie_len": _one_of(0, 4, 8),
    "l2spec_type": _choice(_L2SPEC),
    "data_sequencing": _choice(_DATA_SEQ),
    "sequencing": _boolean,
    "reorder_timeout": _seconds(0),
    "setup_timeout": _seconds(0, strict=True),
    "control_rx_queue": _integer(0, MAX_RECEIVE_WINDOW),
}

_SESSION_PARAMS: Final = {
    k: _PARAMS[k]
    for k in ("cookie_len", "l2spec_type", "data_sequencing", "sequencing", "reorder_timeout")
}

# Keys that only one protocol version acts on: setting one explicitly on a tunnel of the other
# version is a mistake worth reporting rather than a setting silently without effect.
_V3_ONLY: Final = frozenset({"digest", "pw_types", "cookie_len", "l2spec_type",
                             "data_sequencing", "remote_end_id"})
_V2_ONLY: Final = frozenset({"challenge", "sequencing", "called_number"})

_DAEMON: Final[dict[str, Conv]] = {
    "host_name": _host_name,
    "router_id": _router_id,
    "socket": _socket_path,
    "log_level": _choice(_LOG_LEVELS),
    "max_tunnels": _integer(1),
    "max_half_open_tunnels": _integer(1),
    "max_sessions": _integer(1),
    "sccrq_rate": _seconds(0),  # a number >= 0 (per second); the converter is the same
    "sccrq_burst": _integer(1),
    "sccrq_sources": _integer(1),
    "max_ppp_negotiations": _integer(1),
    "reorder_queue": _integer(1),
    "metrics": _metrics_address,
    "metrics_sessions": _boolean,
    "log_format": _choice({"text": "text", "json": "json", "kv": "kv"}),
    "backend": _choice({n: n for n in ("auto", "userspace", "linux")}),
}

_LISTEN: Final[dict[str, Conv]] = {
    "encap": _choice(_ENCAPS),
    "address": _address,
    "port": _integer(1, 0xFFFF),
}

_PEER: Final[dict[str, Conv]] = {
    "name": _text,
    "address": _network,
    "host_name": _text,
    "secret": _secret,
    "versions": _list_of(_one_of(2, 3), "2 and/or 3"),
    "accept": _boolean,
    "ppp": _text,
    "switch_to": _text,
}

_TUNNEL: Final[dict[str, Conv]] = {
    "name": _text,
    "peer": _address,
    "port": _integer(1, 0xFFFF),
    "version": _one_of(2, 3),
    "encap": _choice(_ENCAPS),
    "local": _address,
    "local_port": _integer(0, 0xFFFF),
    "secret": _secret,
    "ppp": _text,
}

_DIAL_SESSION: Final[dict[str, Conv]] = {
    "direction": _choice(_DIRECTIONS),
    "pw_type": _choice(_DIAL_PW),
    "count": _integer(1, 0xFFFF),
    "ifname": _ifname,
    "remote_end_id": _text,
    "called_number": _text,
    "ppp": _text,
}

_PPP: Final[dict[str, Conv]] = {
    "name": _text,
    "auth": _methods(empty=True),
    "peer_auth": _methods(empty=False),
    "secrets": _absolute_path,
    "user": _pap_field,
    "password": _pap_field,
    "auth_name": _text,
    "mru": _integer(128, 0xFFFF),
    "mtu": _integer(68, 0xFFFF),
    "echo_interval": _seconds(0),
    "echo_failure": _integer(1, 1000),
    "restart_interval": _seconds(0, strict=True),
    "max_configure": _integer(1, 1000),
    "max_terminate": _integer(1, 1000),
    "max_failure": _integer(1, 1000),
    "auth_timeout": _seconds(0, strict=True),
    "local_ip": _ipv4,
    "pool": _pool,
    "peer_ip": _ipv4,
    "dns": _dns,
    "request_dns": _boolean,
    "ipv4": _boolean,
    "ipv6": _boolean,
    "ifname": _ifname,
    "default_route": _boolean,
}

# Settings that IPCP carries: meaningless, so refused, on a profile with ipv4 = false.
_IPCP_KEYS: Final = ("local_ip", "pool", "peer_ip", "dns", "request_dns", "default_route")
_CHAP_METHODS: Final = frozenset({AuthMethod.CHAP_MD5, AuthMethod.MSCHAP_V2})

_STATIC_TUNNEL: Final[dict[str, Conv]] = {
    "tunnel_id": _integer(1, MAX_ID),
    "peer_tunnel_id": _integer(1, MAX_ID),
    "version": _one_of(2, 3),
    "encap": _choice(_ENCAPS),
    "local": _address,
    "remote": _address,
    "udp_sport": _integer(1, 0xFFFF),
    "udp_dport": _integer(1, 0xFFFF),
    "udp_csum": _boolean,
    "udp6_csum_tx": _boolean,
    "udp6_csum_rx": _boolean,
}

_STATIC_SESSION: Final[dict[str, Conv]] = {
    "session_id": _integer(1, MAX_ID),
    "peer_session_id": _integer(1, MAX_ID),
    "pw_type": _choice(_STATIC_PW),
    "cookie": _cookie,
    "peer_cookie": _cookie,
    "l2spec_type": _choice(_L2SPEC),
    "ifname": _ifname,
    "recv_seq": _boolean,
    "send_seq": _boolean,
    "lns_mode": _boolean,
    "reorder_timeout": _seconds(0),
}

_SECTIONS: Final = ("daemon", "listen", "defaults", "ppp", "peer", "tunnel", "static_tunnel")

# --------------------------------------------------------------------------------------------
# Line numbers

Path: TypeAlias = tuple[str | int, ...]
"""Where a value sits in the document: ``("tunnel", 1, "session", 0, "pw_type")``."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(line: str, i: int, end: str) -> tuple[tuple[str, ...], int] | None:
    """Read a dotted key starting at ``line[i]`` up to the terminator ``end``; return its
    parts and the index after the terminator, or None when the line is not such a key."""
    parts: list[str] = []
    n = len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return None
        if line[i] in "\"'":
            q = line[i]
            j = i + 1
            while j < n and line[j] != q:
                j += 2 if q == '"' and line[j] == "\\" else 1
            if j >= n:
                return None
            try:
                parts.append(tomllib.loads(f"k = {line[i:j + 1]}")["k"])
            except tomllib.TOMLDecodeError:
                return None
            i = j + 1
        else:
            m = _BARE_KEY.match(line, i)
            if not m:
                return None
            parts.append(m[0])
            i = m.end()
        while i < n and line[i] in " \t":
            i += 1
        if line.startswith(end, i):
            return tuple(parts), i + len(end)
        if i >= n or line[i] != ".":
            return None
        i += 1


def _scan(line: str, i: int, open_string: str | None, depth: int) -> tuple[str | None, int]:
    """Follow strings, comments and brackets to the end of ``line`` so that the next line is
    known to start a key, or to be inside a multi-line string or array (where it cannot)."""
    n = len(line)
    while i < n:
        if open_string is not None:
            if open_string == '"""' and line[i] == "\\":
                i += 2
            elif line.startswith(open_string, i):
                i += 3
                extra = 0  # up to two quotes just before the delimiter belong to the string
                while i < n and line[i] == open_string[0] and extra < 2:
                    i += 1
                    extra += 1
                open_string = None
            else:
                i += 1
            continue
        ch = line[i]
        if ch == "#":
            break
        if ch in "\"'":
            if line.startswith(ch * 3, i):
                open_string = ch * 3
                i += 3
                continue
            i += 1
            while i < n and line[i] != ch:
                i += 2 if ch == '"' and line[i] == "\\" else 1
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return open_string, depth


def _locate(text: str) -> dict[Path, int]:
    """Map every table header and key in ``text`` to its 1-based line.

    Arrays of tables are numbered as tomllib numbers them, so ``("tunnel", 1)`` is the second
    ``[[tunnel]]`` and ``("tunnel", 1, "session", 0)`` the first ``[[tunnel.session]]`` after
    it. Best effort: anything it cannot follow (a key inside an inline table) simply has no
    entry, and :meth:`_Loader.line` falls back to the enclosing table.
    """
    where: dict[Path, int] = {}
    arrays: dict[Path, int] = {}  # path of an array of tables -> index of its last element
    table: Path = ()
    open_string: str | None = None
    depth = 0
    for lineno, line in enumerate(text.split("\n"), 1):  # tomllib counts lines by "\n" only
        i = 0
        if open_string is None and depth == 0:
            start = len(line) - len(line.lstrip(" \t"))
            if line.startswith("[", start):
                is_array = line.startswith("[[", start)
                key = _parse_key(line, start + (2 if is_array else 1), "]]" if is_array else "]")
                if key is not None:
                    table = _table_path(key[0], is_array, arrays)
                    # Prefixes too: [[tunnel.session]] is where an otherwise unwritten
                    # "tunnel" first appears, and the first [[tunnel]] stands for the array.
                    for k in range(1, len(table) + 1):
                        where.setdefault(table[:k], lineno)
                    i = key[1]
            else:
                key = _parse_key(line, start, "=")
                if key is not None:
                    parts, i = key
                    for k in range(1, len(parts) + 1):
                        where.setdefault(table + parts[:k], lineno)
        open_string, depth = _scan(line, i, open_string, depth)
    return where


def _table_path(parts: Sequence[str], is_array: bool, arrays: dict[Path, int]) -> Path:
    path: Path = ()
    for k, part in enumerate(parts):
        path += (part,)
        if is_array and k == len(parts) - 1:
            arrays[path] = arrays.get(path, -1) + 1
            path += (arrays[path],)
        elif path in arrays:  # [tunnel.x] and [[tunnel.session]] refer to the last [[tunnel]]
            path += (arrays[path],)
    return path


# --------------------------------------------------------------------------------------------
# The loader


@dataclass(frozen=True, slots=True)
class _Scope:
    """A table being validated: where it is, and how to name it to a human."""

    path: Path
    label: str


class _Loader:
    """Validates a parsed document; holds the source name and line map for error messages."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.lines = _locate(text)
        self.profiles: dict[str, PppProfile] = {}
        self.profile_scopes: dict[str, _Scope] = {}

    # ---- errors -------------------------------------------------------------------------

    def line(self, path: Path) -> int | None:
        """The line of ``path``, else of the nearest enclosing table or key that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def fail(self, scope: _Scope, message: str, key: str | None = None) -> NoReturn:
        path = (*scope.path, key) if key is not None else scope.path
        prefix = f"{scope.label}: " if scope.label else ""
        raise ConfigError(prefix + message, source=self.source, line=self.line(path))

    # ---- generic table handling -----------------------------------------------------------

    def table(self, parent: _Scope, key: str, value: Any, hint: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(parent, f"{key} must be a table: write {hint}", key)
        return value

    def array(self, parent: _Scope, key: str, value: Any, hint: str) -> list[dict[str, Any]]:
        """An array of tables; ``[tunnel]`` written for ``[[tunnel]]`` is the likely mistake."""
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(parent, f"{key} must be an array of tables: write {hint}", key)
        return value

    def convert(
        self,
        table: Mapping[str, Any],
        specs: Sequence[Mapping[str, Conv]],
        scope: _Scope,
        required: Sequence[str] = (),
        nested: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Check the keys of ``table`` against ``specs`` and convert the values present.

        Keys are visited in file order, so the first problem reported is the first in the file.
        ``nested`` names sub-tables the caller handles itself. Missing optional keys are left
        out, so the dataclass defaults (or a parent's values, via ``replace``) fill them in.
        """
        convs = {k: conv for spec in specs for k, conv in spec.items()}
        out: dict[str, Any] = {}
        for key, value in table.items():
            if key in nested:
                continue
            conv = convs.get(key)
            if conv is None:
                suggestion = _suggest(key, [*convs, *nested])
                self.fail(scope, f"unknown key {key!r}{suggestion}", key)
            try:
                out[key] = conv(value)
            except _Bad as exc:
                self.fail(scope, f"{key} {exc}", key)
        for key in required:
            if key not in table:
                self.fail(scope, f"{key} is required")
        return out

    def element_scope(self, kind: str, index: int, table: Mapping[str, Any],
                      label_key: str, parent: _Scope | None = None) -> _Scope:
        """Name an array element by its name (``label_key`` "name") or id (a key ending in
        "_id") when that has the right type, else by its 1-based position, which is what an
        operator counting headers in the file would say."""
        ident = table.get(label_key)
        if isinstance(ident, str) and ident and not label_key.endswith("_id"):
            label = f"{kind} {ident!r}"
        elif isinstance(ident, int) and not isinstance(ident, bool) and label_key.endswith("_id"):
            label = f"{kind} {ident}"
        else:
            label = f"{kind} #{index + 1}"
        if parent is not None:
            return _Scope((*parent.path, kind, index), f"{parent.label} {label}")
        return _Scope((kind, index), label)

    def params(self, base: TunnelParams, given: dict[str, Any], scope: _Scope) -> TunnelParams:
        """Merge overrides into ``base``, then check what only the merged values can show
        (a peer raising retransmit_initial above the default cap, say)."""
        params = dataclasses.replace(base, **given)
        if params.retransmit_cap < params.retransmit_initial:
            key = "retransmit_cap" if "retransmit_cap" in given else "retransmit_initial"
            self.fail(scope, f"retransmit_cap ({params.retransmit_cap:g}) must be at least "
                             f"retransmit_initial ({params.retransmit_initial:g})", key)
        return params

    def version_keys(self, given: Mapping[str, Any], version: int, scope: _Scope) -> None:
        wrong = _V2_ONLY if version == 3 else _V3_ONLY
        for key in given:
            if key in wrong:
                self.fail(scope, f"{key} only applies to version {5 - version} tunnels", key)

    def same_family(self, scope: _Scope, values: Mapping[str, Any], a: str, b: str) -> None:
        if a in values and b in values and _family(values[a]) != _family(values[b]):
            self.fail(scope, f"{a} and {b} must be of the same address family", a)

    def ip_encap(self, scope: _Scope, values: dict[str, Any], version: int,
                 udp_keys: Sequence[str]) -> bool:
        """Check the IP-encapsulation rules shared by every tunnel kind; True if it is IP."""
        if values.get("encap") != EncapType.IP:
            return False
        if version == 2:
            self.fail(scope, "encap 'ip' needs version 3 (L2TPv2 runs over UDP only)", "encap")
        for key in udp_keys:
            if key in values:
                self.fail(scope, f"{key} only applies to encap 'udp'", key)
        return True

    # ---- sections -----------------------------------------------------------------------

    def config(self, doc: dict[str, Any]) -> Config:
        root = _Scope((), "")
        for key in doc:
            if key not in _SECTIONS:
                if key in _PARAMS:
                    hint = " (tunnel parameters belong in [defaults])"
                elif key in _PPP and key != "name":
                    hint = " (PPP settings belong in a [[ppp]] profile)"
                else:
                    hint = _suggest(key, _SECTIONS)
                self.fail(root, f"unknown key {key!r}{hint}", key)
        daemon = self.table(root, "daemon", doc.get("daemon", {}), "[daemon]")
        defaults = self.table(root, "defaults", doc.get("defaults", {}), "[defaults]")
        params = self.defaults(defaults)
        daemon_section = self.daemon(daemon)
        listen = self.listeners(self.array(root, "listen", doc.get("listen", []), "[[listen]]"))
        # Profiles first: peers and tunnels refer to them by name.
        profiles = self.ppp_profiles(self.array(root, "ppp", doc.get("ppp", []), "[[ppp]]"))
        peer_tables = self.array(root, "peer", doc.get("peer", []), "[[peer]]")
        peers = self.peers(peer_tables, params)
        tunnels = self.tunnels(self.array(root, "tunnel", doc.get("tunnel", []), "[[tunnel]]"),
                               params)
        self.switch_targets(peer_tables, peers, tunnels)
        self.fixed_ifnames(peers, tunnels)
        return Config(
            daemon=daemon_section,
            listen=listen,
            defaults=params,
            peers=peers,
            tunnels=tunnels,
            static_tunnels=self.static_tunnels(self.array(
                root, "static_tunnel", doc.get("static_tunnel", []), "[[static_tunnel]]")),
            ppp=profiles,
        )

    def daemon(self, table: dict[str, Any]) -> DaemonSection:
        scope = _Scope(("daemon",), "[daemon]")
        return DaemonSection(**self.convert(table, [_DAEMON], scope))

    def defaults(self, table: dict[str, Any]) -> TunnelParams:
        scope = _Scope(("defaults",), "[defaults]")
        return self.params(TunnelParams(), self.convert(table, [_PARAMS], scope), scope)

    def listeners(self, tables: list[dict[str, Any]]) -> tuple[Listen, ...]:
        out: list[Listen] = []
        for index, table in enumerate(tables):
            scope = _Scope(("listen", index), f"listen #{index + 1}")
            values = self.convert(table, [_LISTEN], scope)
            if self.ip_encap(scope, values, 3, ["port"]):
                values["port"] = 0
            listen = Listen(**values)
            if listen in out:
                self.fail(scope, f"duplicate listener {listen.address} port {listen.port}")
            out.append(listen)
        return tuple(out)

    def ppp_profiles(self, tables: list[dict[str, Any]]) -> tuple[PppProfile, ...]:
        for index, table in enumerate(tables):
            scope = self.element_scope("ppp", index, table, "name")
            values = self.convert(table, [_PPP], scope, ["name"])
            if values["name"] in self.profiles:
                self.fail(scope, "name is already used by another ppp profile", "name")
            self.ppp_rules(scope, table, values)
            self.profiles[values["name"]] = PppProfile(**values)
            self.profile_scopes[values["name"]] = scope
        return tuple(self.profiles.values())

    def ppp_rules(self, scope: _Scope, table: Mapping[str, Any],
                  values: Mapping[str, Any]) -> None:
        """The cross-key rules of a [[ppp]] profile; each names the key that breaks it."""
        if values.get("auth") and "secrets" not in values:
            self.fail(scope, "auth needs a secrets file to check users against", "auth")
        if "auth_name" in values and not _CHAP_METHODS.intersection(values.get("auth", ())):
            self.fail(scope, "auth_name only applies when auth includes 'chap-md5' or "
                             "'mschap-v2' (it names us in CHAP challenges)", "auth_name")
        for key in ("password", "peer_auth"):
            if key in values and "user" not in values:
                self.fail(scope, f"{key} needs a user", key)
        if "user" in values and "password" not in values and "secrets" not in values:
            self.fail(scope, "user needs a password, or a secrets file holding one", "user")
        ipv4, ipv6 = values.get("ipv4", True), values.get("ipv6", False)
        if not ipv4:
            for key in _IPCP_KEYS:
                if key in values:
                    self.fail(scope, f"{key} only applies with ipv4 = true", key)
            if not ipv6:
                self.fail(scope, "ipv4 and ipv6 are both false: the link would carry nothing",
                          _later(table, "ipv4", "ipv6"))
        if "pool" in values and "peer_ip" in values:
            self.fail(scope, "pool and peer_ip are mutually exclusive",
                      _later(table, "pool", "peer_ip"))
        for key in ("pool", "peer_ip"):
            if key in values and "local_ip" not in values:
                self.fail(scope, f"{key} needs local_ip", key)
        if "peer_ip" in values and values["peer_ip"] == values["local_ip"]:
            self.fail(scope, "peer_ip must differ from local_ip", "peer_ip")

    def profile(self, scope: _Scope, name: str, key: str = "ppp") -> str:
        """Check a reference to a [[ppp]] profile and return it."""
        if name not in self.profiles:
            self.fail(scope, f"{key} {name!r} is not a [[ppp]] profile"
                             f"{_suggest(name, list(self.profiles))}", key)
        return name

    def peers(self, tables: list[dict[str, Any]], defaults: TunnelParams
              ) -> tuple[PeerPolicy, ...]:
        out: list[PeerPolicy] = []
        for index, table in enumerate(tables):
            scope = self.element_scope("peer", index, table, "name")
            own, given = _split(self.convert(table, [_PEER, _PARAMS], scope, ["name"]), _PEER)
            if any(p.name == own["name"] for p in out):
                self.fail(scope, "name is already used by another peer", "name")
            if given.get("hide_avps") and "secret" not in own:
                self.fail(scope, "hide_avps needs a secret", "hide_avps")
            if "versions" in own:
                own["versions"] = tuple(sorted(own["versions"]))
            policy = PeerPolicy(**own, params=self.params(defaults, given, scope))
            self.peer_ppp(scope, table, policy)
            out.append(policy)
        return tuple(out)

    def peer_ppp(self, scope: _Scope, table: Mapping[str, Any], peer: PeerPolicy) -> None:
        """A peer's ``ppp`` and ``switch_to``, except that switch_to names a tunnel, which is
        checked once the tunnels are known (:meth:`switch_targets`)."""
        if peer.ppp is not None and peer.switch_to is not None:
            self.fail(scope, "ppp and switch_to are mutually exclusive (a PPP session is either "
                             "terminated here or switched)", _later(table, "ppp", "switch_to"))
        key = "ppp" if peer.ppp is not None else "switch_to"
        if key not in table:
            return
        if peer.ppp is not None:
            self.profile(scope, peer.ppp)
        if not peer.accept:
            self.fail(scope, f"{key} has no effect with accept = false", key)
        if 2 not in peer.versions and PwType.PPP not in peer.params.pw_types:
            self.fail(scope, f"{key} has no effect: this peer's tunnels carry no PPP sessions "
                             "(versions = [3] and 'ppp' is not in pw_types)", key)

    def fixed_ifnames(self, peers: Sequence[PeerPolicy], tunnels: Sequence[DialTunnel]
                      ) -> None:
        """A profile whose ifname has no %d can bring up one interface at a time: refuse it
        where the configuration alone already needs more (a peer accepts any number of
        sessions; dialled sessions are counted)."""
        sessions: dict[str, int] = {}
        for tunnel in tunnels:
            for session in tunnel.sessions:
                if session.ppp is not None:
                    sessions[session.ppp] = sessions.get(session.ppp, 0) + session.count
        for name, profile in self.profiles.items():
            if "%" in profile.ifname:
                continue
            peer = next((p.name for p in peers if p.ppp == name), None)
            if peer is not None:
                users = f"peer {peer!r} can bring up any number of sessions with this profile"
            elif sessions.get(name, 0) > 1:
                users = f"{sessions[name]} sessions use this profile"
            else:
                continue
            self.fail(self.profile_scopes[name],
                      f"ifname {profile.ifname!r} names a single interface, but {users} "
                      "(use a template such as 'ppp%d')", "ifname")

    def switch_targets(self, tables: list[dict[str, Any]], peers: Sequence[PeerPolicy],
                       tunnels: Sequence[DialTunnel]) -> None:
        by_name = {t.name: t for t in tunnels}
        for index, (table, peer) in enumerate(zip(tables, peers, strict=True)):
            if peer.switch_to is None:
                continue
            scope = self.element_scope("peer", index, table, "name")
            target = by_name.get(peer.switch_to)
            if target is None:
                self.fail(scope, f"switch_to {peer.switch_to!r} is not a [[tunnel]]"
                                 f"{_suggest(peer.switch_to, list(by_name))}", "switch_to")
            if target.version == 3 and PwType.PPP not in target.params.pw_types:
                self.fail(scope, f"switch_to {peer.switch_to!r}: that tunnel carries no PPP "
                                 "sessions ('ppp' is not in its pw_types)", "switch_to")

    def tunnels(self, tables: list[dict[str, Any]], defaults: TunnelParams
                ) -> tuple[DialTunnel, ...]:
        out: list[DialTunnel] = []
        for index, table in enumerate(tables):
            scope = self.element_scope("tunnel", index, table, "name")
            values = self.convert(table, [_TUNNEL, _PARAMS], scope,
                                  ["name", "peer", "version"], nested=["session"])
            own, given = _split(values, _TUNNEL)
            if any(t.name == own["name"] for t in out):
                self.fail(scope, "name is already used by another tunnel", "name")
            version: int = own["version"]
            self.version_keys(given, version, scope)
            if self.ip_encap(scope, own, version, ["port", "local_port"]):
                own["port"] = own["local_port"] = 0
            self.same_family(scope, own, "local", "peer")
            if given.get("hide_avps") and "secret" not in own:
                self.fail(scope, "hide_avps needs a secret", "hide_avps")
            params = self.params(defaults, given, scope)
            if "ppp" in own:
                self.profile(scope, own["ppp"])
                if version == 3 and PwType.PPP not in params.pw_types:
                    self.fail(scope, "ppp has no effect: 'ppp' is not in the tunnel's pw_types",
                              "ppp")
            sessions = self.array(scope, "session", table.get("session", []),
                                  "[[tunnel.session]]")
            own["sessions"] = tuple(
                self.dial_session(t, i, scope, version, params, own.get("ppp"))
                for i, t in enumerate(sessions))
            out.append(DialTunnel(**own, params=params))
        return tuple(out)

    def dial_session(self, table: dict[str, Any], index: int, parent: _Scope, version: int,
                     params: TunnelParams, tunnel_ppp: str | None = None) -> DialSession:
        scope = self.element_scope("session", index, {}, "", parent)
        own = self.convert(table, [_DIAL_SESSION, _SESSION_PARAMS], scope)
        self.version_keys(own, version, scope)
        pw_type = own.setdefault("pw_type", PwType.PPP if version == 2 else PwType.ETH)
        if version == 2 and pw_type != PwType.PPP:
            self.fail(scope, "pw_type must be 'ppp' on a version 2 tunnel", "pw_type")
        if version == 3 and pw_type not in params.pw_types:
            self.fail(scope, f"pw_type {pw_type.name.lower()!r} is not in the tunnel's pw_types",
                      "pw_type")
        if "ppp" in own:
            if pw_type != PwType.PPP:
                self.fail(scope, "ppp only applies to pw_type 'ppp' sessions", "ppp")
            self.profile(scope, own["ppp"])
        elif pw_type == PwType.PPP and tunnel_ppp is not None:
            own["ppp"] = tunnel_ppp
        if own.get("count", 1) > 1 and "%d" not in own.get("ifname", "%d"):
            self.fail(scope, "ifname must contain %d when count is more than 1", "ifname")
        # Resolve to what the session will actually run with, so the daemon needs no
        # version-specific fallbacks: v2 has no cookies or sublayer, v3 no v2 sequencing flag.
        if version == 2:
            own.update(cookie_len=0, l2spec_type=L2SpecType.NONE,
                       data_sequencing=DataSequencing.NONE)
        else:
            own["sequencing"] = False
        inherited = {k: getattr(params, k) for k in _SESSION_PARAMS if k not in own}
        return DialSession(**own, **inherited)

    def static_tunnels(self, tables: list[dict[str, Any]]) -> tuple[StaticTunnel, ...]:
        out: list[StaticTunnel] = []
        for index, table in enumerate(tables):
            scope = self.element_scope("static_tunnel", index, table, "tunnel_id")
            own = self.convert(table, [_STATIC_TUNNEL], scope,
                               ["tunnel_id", "peer_tunnel_id", "local", "remote"],
                               nested=["session"])
            version = own.setdefault("version", 3)
            self.v2_ids(scope, own, version, "tunnel_id", "peer_tunnel_id")
            if any(t.tunnel_id == own["tunnel_id"] for t in out):
                self.fail(scope, "tunnel_id is already used by another static_tunnel",
                          "tunnel_id")
            self.same_family(scope, own, "remote", "local")
            udp_keys = [k for k in _STATIC_TUNNEL if k.startswith("udp")]
            if not self.ip_encap(scope, own, version, udp_keys):
                for key in ("udp_sport", "udp_dport"):
                    if key not in own:
                        self.fail(scope, f"{key} is required with encap 'udp'")
            tables = self.array(scope, "session", table.get("session", []),
                                "[[static_tunnel.session]]")
            sessions: list[StaticSession] = []
            for i, t in enumerate(tables):
                sessions.append(self.static_session(t, i, scope, version, sessions))
            out.append(StaticTunnel(**own, sessions=tuple(sessions)))
        return tuple(out)

    def static_session(self, table: dict[str, Any], index: int, parent: _Scope, version: int,
                       earlier: list[StaticSession]) -> StaticSession:
        scope = self.element_scope("session", index, table, "session_id", parent)
        own = self.convert(table, [_STATIC_SESSION], scope, ["session_id", "peer_session_id"])
        if version == 2:
            self.v2_ids(scope, own, version, "session_id", "peer_session_id")
            for key in ("cookie", "peer_cookie"):
                if key in own:
                    self.fail(scope, f"{key} only applies to version 3 tunnels", key)
            if own.setdefault("l2spec_type", L2SpecType.NONE) != L2SpecType.NONE:
                self.fail(scope, "l2spec_type must be 'none' on a version 2 tunnel",
                          "l2spec_type")
        if any(s.session_id == own["session_id"] for s in earlier):
            self.fail(scope, "session_id is already used in this tunnel", "session_id")
        return StaticSession(**own)

    def v2_ids(self, scope: _Scope, values: Mapping[str, int], version: int,
               *keys: str) -> None:
        """L2TPv2 headers carry 16-bit ids (RFC 2661 §3.1); v3 ids are 32-bit."""
        for key in keys:
            if version == 2 and values[key] > MAX_V2_ID:
                self.fail(scope, f"{key} must be an integer from 1 to {MAX_V2_ID} "
                                 "for version 2", key)


def _split(values: dict[str, Any], own_keys: Mapping[str, Conv]
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate an element's own keys from its tunnel-parameter overrides."""
    own = {k: v for k, v in values.items() if k in own_keys}
    return own, {k: v for k, v in values.items() if k not in own_keys}


def _later(table: Mapping[str, Any], a: str, b: str) -> str:
    """Whichever of two keys comes later in the file (the one that makes a conflict), or the
    one present when only one is."""
    keys = [k for k in table if k in (a, b)]
    return keys[-1] if keys else a


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


def _suggest(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
