"""The ``ip l2tp`` command language, as pure functions over argv and management replies.

``pyl2tp`` must be a drop-in for ``ip l2tp`` in existing scripts: same keywords, aliases,
defaults, number syntax, validation order, error texts and exit statuses, and the same
``show`` output byte for byte (text, ``-oneline`` and ``-json``). Keeping this layer free of
I/O lets every one of those details be pinned by table tests; the socket client and ``main()``
only have to move requests and strings around (see :func:`execute`).

Deliberate differences from iproute2's ``ip l2tp`` (everything else is meant to match):

* ``show`` filters client-side. ``ip`` puts the ids into a *dump* request, the kernel ignores
  attributes on dumps, so ``ip l2tp show tunnel tunnel_id 7`` prints every tunnel. pyl2tp
  prints only the matching tunnels / sessions (``show session tunnel_id T`` = sessions of T).
* ``ip`` parses every dumped message into one reused structure and only overwrites fields
  whose attribute is present, so an interface name, cookie or reorder timeout can leak from
  one printed session into the next. That is a bug; each object here is printed from its own
  attributes only.
* Cookies of unusual lengths (the kernel accepts 0..8 bytes) are printed in full; ``ip``
  prints four bytes, or eight when the length is exactly eight.
* ``-color`` is accepted but never colours the interface name.
* Extensions, all rejected by ``ip`` as unknown keywords: ``version 2|3`` on ``add tunnel``,
  ``pw_type eth|ppp``, ``reorder_timeout MS`` and ``lns_mode on|off`` on ``add session``, the
  ``set tunnel`` / ``set session`` commands, ``-s`` statistics in ``show``, ``--socket PATH``,
  and an optional leading ``l2tp`` word.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from pyl2tp.errors import L2tpError

__all__ = [
    "STATUS_ADDRESS",
    "STATUS_DUMP",
    "STATUS_KERNEL",
    "STATUS_USAGE",
    "CliError",
    "Filters",
    "Invocation",
    "OutputOptions",
    "Request",
    "execute",
    "filter_sessions",
    "filter_tunnels",
    "format_error",
    "format_sessions",
    "format_tunnels",
    "ip_usage",
    "parse",
    "render",
    "usage",
]

Request = dict[str, Any]
"""A management request: ``{"cmd": name, "attrs": {...}}``, plus ``"dump": True`` for dumps."""

STATUS_USAGE = 255
"""``ip`` calls ``exit(-1)`` for usage and argument errors; the shell sees 255."""
STATUS_KERNEL = 2
"""A create/delete/modify the kernel (here: the daemon) refused, as ``ip`` reports it."""
STATUS_ADDRESS = 1
"""``get_addr`` in iproute2 exits 1, not -1, on an unparsable address."""
STATUS_DUMP = 1
"""A failed dump ends with ``Dump terminated`` and exit 1."""

_ENCAP_UDP = 0
_ENCAP_IP = 1
_PW_ETH = 5
_PW_PPP = 7
_L2SPEC_NONE = 0
_L2SPEC_DEFAULT = 1
_U32_MAX = 0xFFFFFFFF
_U16_MAX = 0xFFFF
_ULONG_MAX = 0xFFFFFFFFFFFFFFFF
_IFNAMSIZ = 16
_C_SPACE = " \t\n\v\f\r"
_HEX_DIGITS = "0123456789abcdefABCDEF"
_HEX_DIGIT_SET = frozenset(_HEX_DIGITS)

_IP_USAGE = (
    "Usage: ip l2tp add tunnel\n"
    "          remote ADDR local ADDR\n"
    "          tunnel_id ID peer_tunnel_id ID\n"
    "          [ encap { ip | udp } ]\n"
    "          [ udp_sport PORT ] [ udp_dport PORT ]\n"
    "          [ udp_csum { on | off } ]\n"
    "          [ udp6_csum_tx { on | off } ]\n"
    "          [ udp6_csum_rx { on | off } ]\n"
    "Usage: ip l2tp add session [ name NAME ]\n"
    "          tunnel_id ID\n"
    "          session_id ID peer_session_id ID\n"
    "          [ cookie HEXSTR ] [ peer_cookie HEXSTR ]\n"
    "          [ seq { none | send | recv | both } ]\n"
    "          [ l2spec_type L2SPEC ]\n"
    "       ip l2tp del tunnel tunnel_id ID\n"
    "       ip l2tp del session tunnel_id ID session_id ID\n"
    "       ip l2tp show tunnel [ tunnel_id ID ]\n"
    "       ip l2tp show session [ tunnel_id ID ] [ session_id ID ]\n"
    "\n"
    "Where: NAME   := STRING\n"
    "       ADDR   := { IP_ADDRESS | any }\n"
    "       PORT   := { 0..65535 }\n"
    "       ID     := { 1..4294967295 }\n"
    "       HEXSTR := { 8 or 16 hex digits (4 / 8 bytes) }\n"
    "       L2SPEC := { none | default }\n"
)

_EXTENSIONS_USAGE = (
    "\n"
    "pyl2tp extensions (not in ip l2tp):\n"
    "       pyl2tp [ OPTIONS ] [ l2tp ] { add | del | show | set | help } ...\n"
    "       OPTIONS := { -j[son] | -p[retty] | -o[neline] | -s[tatistics] |\n"
    "                    --socket PATH }\n"
    "       pyl2tp add tunnel ... [ version { 2 | 3 } ]\n"
    "       pyl2tp add session ... [ pw_type { eth | ppp } ]\n"
    "          [ reorder_timeout MS ] [ lns_mode { on | off } ]\n"
    "       pyl2tp set tunnel tunnel_id ID\n"
    "       pyl2tp set session tunnel_id ID session_id ID\n"
    "          [ seq { none | send | recv | both } ]\n"
    "          [ reorder_timeout MS ] [ lns_mode { on | off } ]\n"
    "       pyl2tp -s show { tunnel | session } ...   (adds packet counters)\n"
    "\n"
    "       show only prints objects matching the tunnel_id / session_id given.\n"
    "       version 2 makes an L2TPv2 tunnel; its sessions default to pw_type ppp.\n"
    "       MS     := { 0..4294967295 } milliseconds\n"
)


def ip_usage() -> str:
    """``ip l2tp``'s usage text, byte for byte, as its errors embed it."""
    return _IP_USAGE


def usage() -> str:
    """What ``pyl2tp help`` prints on stderr: ip's text, then what pyl2tp adds to it."""
    return _IP_USAGE + _EXTENSIONS_USAGE


class CliError(Exception):
    """A command line ``ip`` would reject.

    ``message`` is exactly what ``ip`` writes to stderr, trailing newline(s) included (some of
    ip's messages end in a doubled newline), so it is written verbatim; ``status`` is the
    process exit status.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _UsageRequested(Exception):
    """Internal: the command line asks for (or degenerates to) the usage text."""


@dataclass(frozen=True)
class OutputOptions:
    """How ``show`` output is rendered; mirrors ip's ``-j``, ``-p``, ``-o`` and ``-s``."""

    json: bool = False
    pretty: bool = False
    oneline: bool = False
    stats: int = 0


@dataclass(frozen=True)
class Filters:
    """Client-side ``show`` filters; ``None`` (or an id of 0, as in ip) matches everything."""

    tunnel_id: int | None = None
    session_id: int | None = None


@dataclass
class Invocation:
    """Everything ``main()`` needs to act on one command line.

    Write ``warnings`` to stderr first. If ``usage`` is set, write :func:`usage` to stderr and
    exit with :data:`STATUS_USAGE`. Otherwise send ``requests`` in order; ``show`` says which
    formatter turns the dump reply into stdout text (:func:`render` does that, with filters).
    :func:`execute` does all of this. Every string this module produces already ends with
    its newline(s), exactly as ip writes them, so write it verbatim rather than ``print`` it.
    """

    requests: list[Request] = field(default_factory=list)
    show: Literal["tunnels", "sessions"] | None = None
    output: OutputOptions = field(default_factory=OutputOptions)
    filters: Filters = field(default_factory=Filters)
    warnings: list[str] = field(default_factory=list)
    usage: bool = False
    socket_path: str | None = None


# --------------------------------------------------------------------------------------------
# C-compatible scalar parsing


def _matches(word: str, full: str) -> bool:
    """iproute2's abbreviation rule: any prefix, even the empty one, selects ``full``."""
    return len(word) <= len(full) and full.startswith(word)


def _strtoul(text: str, start: int = 0) -> tuple[int, int, bool]:
    """glibc ``strtoul(s, &end, 0)``: (value, end index, overflowed).

    iproute2 validates numbers and IPv4 parts with it, so its quirks are part of the syntax:
    leading blanks and a sign are allowed, ``0x`` selects hex, a leading ``0`` octal, and a
    negative number wraps modulo 2**64. ``end == start`` means no digits were found.
    """
    i = start
    n = len(text)
    while i < n and text[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and text[i] in "+-":
        negative = text[i] == "-"
        i += 1
    base = 10
    if i < n and text[i] == "0":
        # "0x" only means hex when a hex digit follows; otherwise the "0" stands alone.
        if text[i + 1 : i + 2] in ("x", "X") and text[i + 2 : i + 3] in _HEX_DIGIT_SET:
            base = 16
            i += 2
        else:
            base = 8
    digits_start = i
    value = 0
    while i < n:
        c = text[i]
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif "a" <= c <= "z":
            d = ord(c) - 87
        elif "A" <= c <= "Z":
            d = ord(c) - 55
        else:
            break
        if d >= base:
            break
        value = value * base + d
        i += 1
    if i == digits_start:
        return 0, start, False
    if value > _ULONG_MAX:
        return _ULONG_MAX, i, True
    if negative:
        value = (-value) & _ULONG_MAX
    return value, i, False


def _get_unsigned(text: str, limit: int) -> int | None:
    """``get_u32`` / ``get_u16`` with base 0: the whole string must be one number <= limit."""
    if not text:
        return None
    value, end, overflow = _strtoul(text)
    if end == 0 or end != len(text) or overflow or value > limit:
        return None
    return value


def _parse_ipv4(text: str) -> bytes | None:
    """iproute2's legacy dotted-quad parser: ``10.8`` is 10.8.0.0 and parts may be hex/octal."""
    out = bytearray(4)
    pos = 0
    for i in range(4):
        value, end, overflow = _strtoul(text, pos)
        if end == pos or overflow or value > 255:
            return None
        out[i] = value
        if end == len(text):
            return bytes(out)
        if i == 3 or text[end] != ".":
            return None
        pos = end + 1
    return None  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class _Addr:
    """A parsed ``local`` / ``remote``; family None is ip's AF_UNSPEC (``any``)."""

    family: int | None
    text: str


def _get_addr(text: str) -> _Addr:
    """``get_addr(..., AF_UNSPEC)``: IPv4 or IPv6 literal, or a keyword leaving no family."""
    if text in ("default", "all", "any"):
        return _Addr(None, text)
    if ":" in text:
        try:
            raw = socket.inet_pton(socket.AF_INET6, text)
        except (OSError, ValueError):
            raw = None
        if raw is not None:
            return _Addr(6, socket.inet_ntop(socket.AF_INET6, raw))
    else:
        raw4 = _parse_ipv4(text)
        if raw4 is not None:
            return _Addr(4, socket.inet_ntop(socket.AF_INET, raw4))
    raise CliError(f'Error: any valid address is expected rather than "{text}".\n', STATUS_ADDRESS)


def _valid_ifname(name: str) -> bool:
    """``check_ifname``: length, '/' and whitespace are checked early; "." and ".." pass
    here and the kernel (or the daemon) refuses them with EINVAL, as recorded from real ip."""
    if not name or len(name.encode()) >= _IFNAMSIZ:
        return False
    return not any(c == "/" or c in _C_SPACE for c in name)


# --------------------------------------------------------------------------------------------
# Argument parsing (shared by add / del / show / set, as in ip)


def _invarg(msg: str, arg: str) -> CliError:
    return CliError(f'Error: argument "{arg}" is wrong: {msg}\n', STATUS_USAGE)


def _missarg(key: str) -> CliError:
    return CliError(f'Error: argument "{key}" is required\n', STATUS_USAGE)


@dataclass
class _Params:
    """ip's ``struct l2tp_parm`` with its defaults, plus the extensions' fields."""

    tunnel: bool = False
    session: bool = False
    tunnel_id: int = 0
    peer_tunnel_id: int = 0
    session_id: int = 0
    peer_session_id: int = 0
    encap: int = _ENCAP_UDP
    local: _Addr | None = None
    remote: _Addr | None = None
    udp_sport: int = 0
    udp_dport: int = 0
    udp_csum: bool = False
    udp6_csum_tx: bool = True
    udp6_csum_rx: bool = True
    cookie: str | None = None
    peer_cookie: str | None = None
    l2spec_type: int = _L2SPEC_DEFAULT
    recv_seq: bool = False
    send_seq: bool = False
    seq_given: bool = False
    ifname: str | None = None
    version: int | None = None
    pw_type: int | None = None
    reorder_timeout: int | None = None
    lns_mode: bool | None = None


_ID_KEYWORDS = {
    "tunnel_id": "tunnel_id",
    "tid": "tunnel_id",
    "peer_tunnel_id": "peer_tunnel_id",
    "ptid": "peer_tunnel_id",
    "session_id": "session_id",
    "sid": "session_id",
    "peer_session_id": "peer_session_id",
    "psid": "peer_session_id",
}


def _on_off(value: str, option: str) -> bool:
    if value == "on":
        return True
    if value == "off":
        return False
    raise _invarg(f"invalid option for {option}\n", value)


def _cookie(value: str) -> str:
    if len(value) not in (8, 16):
        raise _invarg("cookie must be either 8 or 16 hex digits\n", value)
    if any(c not in _HEX_DIGITS for c in value):
        raise _invarg("cookie must be a hex string\n", value)
    return value.lower()


def _apply(p: _Params, key: str, value: str) -> None:
    """Apply one ``keyword value`` pair; later occurrences win, as in ip."""
    if key in _ID_KEYWORDS:
        number = _get_unsigned(value, _U32_MAX)
        if number is None:
            raise _invarg("invalid ID\n", value)
        setattr(p, _ID_KEYWORDS[key], number)
    elif key == "encap":
        if value == "ip":
            p.encap = _ENCAP_IP
        elif value == "udp":
            p.encap = _ENCAP_UDP
        else:
            raise CliError(f'Unknown tunnel encapsulation "{value}"\n', STATUS_USAGE)
    elif key == "name":
        if not _valid_ifname(value):
            raise _invarg('"name" not a valid ifname', value)
        p.ifname = value
    elif key == "remote":
        p.remote = _get_addr(value)
    elif key == "local":
        p.local = _get_addr(value)
    elif key in ("udp_sport", "udp_dport"):
        port = _get_unsigned(value, _U16_MAX)
        if port is None:
            raise _invarg("invalid port\n", value)
        setattr(p, key, port)
    elif key in ("udp_csum", "udp6_csum_rx", "udp6_csum_tx"):
        setattr(p, key, _on_off(value, key))
    elif key == "cookie":
        p.cookie = _cookie(value)
    elif key == "peer_cookie":
        p.peer_cookie = _cookie(value)
    elif key == "l2spec_type":
        kind = value.lower()
        if kind == "default":
            p.l2spec_type = _L2SPEC_DEFAULT
        elif kind == "none":
            p.l2spec_type = _L2SPEC_NONE
        else:
            raise CliError(f'Unknown layer2specific header type "{value}"\n', STATUS_USAGE)
    elif key == "seq":
        _apply_seq(p, value)
    elif key == "version":
        if value not in ("2", "3"):
            raise CliError(f'Unknown L2TP version "{value}"\n', STATUS_USAGE)
        p.version = int(value)
    elif key == "pw_type":
        kind = value.lower()
        if kind not in ("eth", "ppp"):
            raise CliError(f'Unknown pseudowire type "{value}"\n', STATUS_USAGE)
        p.pw_type = _PW_ETH if kind == "eth" else _PW_PPP
    elif key == "reorder_timeout":
        ms = _get_unsigned(value, _U32_MAX)
        if ms is None:
            raise _invarg("invalid reorder timeout", value)
        p.reorder_timeout = ms
    elif key == "lns_mode":
        p.lns_mode = _on_off(value, "lns_mode")
    else:  # pragma: no cover - callers only pass keys from _VALUE_KEYWORDS
        raise AssertionError(key)


def _apply_seq(p: _Params, value: str) -> None:
    """``seq``: recv and send accumulate across repeats (``seq recv seq send`` is both)."""
    kind = value.lower()
    if kind == "both":
        p.recv_seq = p.send_seq = True
    elif kind == "recv":
        p.recv_seq = True
    elif kind == "send":
        p.send_seq = True
    elif kind == "none":
        p.recv_seq = p.send_seq = False
    else:
        raise CliError(f'Unknown seq value "{value}"\n', STATUS_USAGE)
    p.seq_given = True


_VALUE_KEYWORDS = frozenset(
    {
        *_ID_KEYWORDS,
        "encap",
        "name",
        "remote",
        "local",
        "udp_sport",
        "udp_dport",
        "udp_csum",
        "udp6_csum_rx",
        "udp6_csum_tx",
        "cookie",
        "peer_cookie",
        "l2spec_type",
        "seq",
        # pyl2tp extensions
        "version",
        "pw_type",
        "reorder_timeout",
        "lns_mode",
    }
)
_IGNORED_KEYWORDS = ("offset", "peer_offset")
_INCOMPLETE = 'Command line is not complete. Try option "help"\n'


def _parse_args(args: Sequence[str], warnings: list[str]) -> _Params:
    """Keywords in any order; an empty argument list or a ``help`` word means usage."""
    if not args:
        raise _UsageRequested
    p = _Params()
    i = 0
    while i < len(args):
        word = args[i]
        if word in _VALUE_KEYWORDS or word in _IGNORED_KEYWORDS:
            if i + 1 >= len(args):
                raise CliError(_INCOMPLETE, STATUS_USAGE)
            value = args[i + 1]
            i += 1
            if word in _IGNORED_KEYWORDS:
                # The kernel dropped configurable offsets in 4.16; ip warns and skips them.
                warnings.append(f'Ignoring option "{word}"\n')
            else:
                _apply(p, word, value)
        elif word == "tunnel":
            p.tunnel = True
        elif word == "session":
            p.session = True
        elif _matches(word, "help"):
            raise _UsageRequested
        else:
            raise CliError(f"Unknown command: {word}\n" + _IP_USAGE, STATUS_USAGE)
        i += 1
    return p


# --------------------------------------------------------------------------------------------
# Commands


def _request(cmd: str, attrs: dict[str, Any], *, dump: bool = False) -> Request:
    req: Request = {"cmd": cmd}
    if dump:
        req["dump"] = True
    req["attrs"] = attrs
    return req


def _tunnel_create(p: _Params) -> Request:
    assert p.local is not None and p.local.family is not None
    assert p.remote is not None and p.remote.family is not None
    attrs: dict[str, Any] = {
        "conn_id": p.tunnel_id,
        "peer_conn_id": p.peer_tunnel_id,
        "proto_version": p.version or 3,
        "encap_type": p.encap,
        # Families are chosen per address, as ip does; a v4/v6 mix is the kernel's EINVAL.
        ("ip6_saddr" if p.local.family == 6 else "ip_saddr"): p.local.text,
        ("ip6_daddr" if p.remote.family == 6 else "ip_daddr"): p.remote.text,
    }
    if p.encap == _ENCAP_UDP:
        attrs["udp_sport"] = p.udp_sport
        attrs["udp_dport"] = p.udp_dport
        # The kernel reads these as flags (presence = set), so only "on"/"off" that differ
        # from its default are sent, exactly as ip sends them.
        if p.udp_csum:
            attrs["udp_csum"] = True
        if not p.udp6_csum_tx:
            attrs["udp_zero_csum6_tx"] = True
        if not p.udp6_csum_rx:
            attrs["udp_zero_csum6_rx"] = True
    return _request("tunnel_create", attrs)


def _session_create(p: _Params) -> Request:
    pw_type = p.pw_type
    if pw_type is None:
        # ip only creates Ethernet pseudowires; an L2TPv2 tunnel can only carry PPP.
        pw_type = _PW_PPP if p.version == 2 else _PW_ETH
    attrs: dict[str, Any] = {
        "conn_id": p.tunnel_id,
        "peer_conn_id": p.peer_tunnel_id,
        "session_id": p.session_id,
        "peer_session_id": p.peer_session_id,
        "pw_type": pw_type,
        "l2spec_type": p.l2spec_type,
    }
    if p.recv_seq:
        attrs["recv_seq"] = True
    if p.send_seq:
        attrs["send_seq"] = True
    if p.lns_mode:
        attrs["lns_mode"] = True
    if p.reorder_timeout:
        attrs["recv_timeout"] = p.reorder_timeout
    if p.cookie is not None:
        attrs["cookie"] = p.cookie
    if p.peer_cookie is not None:
        attrs["peer_cookie"] = p.peer_cookie
    if p.ifname is not None:
        attrs["ifname"] = p.ifname
    return _request("session_create", attrs)


def _do_add(p: _Params) -> list[Request]:
    if not p.tunnel and not p.session:
        raise _missarg("tunnel or session")
    if p.tunnel_id == 0:
        raise _missarg("tunnel_id")
    if p.session and p.peer_session_id == 0:
        raise _missarg("peer_session_id")
    if p.session and p.session_id == 0:
        raise _missarg("session_id")
    if p.tunnel and p.peer_tunnel_id == 0:
        raise _missarg("peer_tunnel_id")
    if p.tunnel:
        if p.local is None or p.local.family is None:
            raise _missarg("local")
        if p.remote is None or p.remote.family is None:
            raise _missarg("remote")
        if p.encap == _ENCAP_UDP:
            if p.udp_sport == 0:
                raise _missarg("udp_sport")
            if p.udp_dport == 0:
                raise _missarg("udp_dport")
    if p.version == 2:
        _check_v2(p)
    # ip creates the tunnel first, then the session, when both keywords are given.
    requests: list[Request] = []
    if p.tunnel:
        requests.append(_tunnel_create(p))
    if p.session:
        requests.append(_session_create(p))
    return requests


def _check_v2(p: _Params) -> None:
    """L2TPv2 runs over UDP only and carries 16-bit ids; catch both before the daemon does."""
    if p.tunnel and p.encap != _ENCAP_UDP:
        raise CliError("Error: L2TPv2 tunnels need encap udp\n", STATUS_USAGE)
    ids = [p.tunnel_id, p.peer_tunnel_id]
    if p.session:
        ids += [p.session_id, p.peer_session_id]
    if any(i > _U16_MAX for i in ids):
        raise CliError("Error: L2TPv2 tunnel and session IDs are 1..65535\n", STATUS_USAGE)


def _do_del(p: _Params) -> list[Request]:
    if not p.tunnel and not p.session:
        raise _missarg("tunnel or session")
    if p.tunnel and p.tunnel_id == 0:
        raise _missarg("tunnel_id")
    if p.session and p.session_id == 0:
        raise _missarg("session_id")
    # ip's rule: a session id anywhere on the line makes it a session delete.
    if p.session_id:
        return [_request("session_delete", {"conn_id": p.tunnel_id, "session_id": p.session_id})]
    return [_request("tunnel_delete", {"conn_id": p.tunnel_id})]


def _do_set(p: _Params) -> list[Request]:
    if not p.tunnel and not p.session:
        raise _missarg("tunnel or session")
    if p.tunnel_id == 0:
        raise _missarg("tunnel_id")
    if not p.session:
        return [_request("tunnel_modify", {"conn_id": p.tunnel_id})]
    if p.session_id == 0:
        raise _missarg("session_id")
    attrs: dict[str, Any] = {"conn_id": p.tunnel_id, "session_id": p.session_id}
    if p.seq_given:
        # A modify states the resulting mode, so both directions are always sent.
        attrs["recv_seq"] = p.recv_seq
        attrs["send_seq"] = p.send_seq
    if p.reorder_timeout is not None:
        attrs["recv_timeout"] = p.reorder_timeout
    if p.lns_mode is not None:
        attrs["lns_mode"] = p.lns_mode
    return [_request("session_modify", attrs)]


# --------------------------------------------------------------------------------------------
# Global options (ip's own, in ip's prefix-matching order) and the top-level dispatch

# Order matters: an abbreviation selects the first option it is a prefix of, so "-h" is
# -human (not -help) and "-s" is -stats, exactly as in ip. Options meaningless for ``l2tp``
# are accepted and ignored; ones needing machinery pyl2tp lacks are refused.
_GLOBAL_OPTIONS: tuple[tuple[str, str], ...] = (
    ("-loops", "unsupported"),
    ("-family", "ignore_arg"),
    ("-human", "ignore"),
    ("-human-readable", "ignore"),
    ("-iec", "ignore"),
    ("-stats", "stats"),
    ("-statistics", "stats"),
    ("-details", "ignore"),
    ("-resolve", "ignore"),
    ("-oneline", "oneline"),
    ("-timestamp", "ignore"),
    ("-tshort", "ignore"),
    ("-Version", "unsupported"),
    ("-force", "ignore"),
    ("-batch", "unsupported"),
    ("-brief", "ignore"),
    ("-json", "json"),
    ("-pretty", "pretty"),
    ("-rcvbuf", "unsupported"),
    ("-color", "color"),
    ("-help", "help"),
    ("-netns", "unsupported"),
    ("-Numeric", "ignore"),
    ("-all", "unsupported"),
)
_EXACT_IGNORED = ("-4", "-6", "-0", "-M", "-B")


@dataclass
class _Globals:
    json: bool = False
    pretty: bool = False
    oneline: bool = False
    stats: int = 0
    help: bool = False
    socket_path: str | None = None


def _global_action(opt: str) -> str | None:
    if opt in _EXACT_IGNORED:
        return "ignore"
    if opt == "-echo":
        return "unsupported"
    for name, action in _GLOBAL_OPTIONS:
        if action == "color":
            word, _, value = opt.partition("=")
            if _matches(word, name) and value in ("", "always", "auto", "never"):
                return action
        elif _matches(opt, name):
            return action
    return None


def _parse_globals(argv: Sequence[str]) -> tuple[_Globals, list[str]]:
    g = _Globals()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "--socket" or arg.startswith("--socket="):
            if arg == "--socket":
                if i + 1 >= len(argv):
                    raise CliError('Option "--socket" requires a PATH argument\n', STATUS_USAGE)
                i += 1
                g.socket_path = argv[i]
            else:
                g.socket_path = arg.partition("=")[2]
            i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            if arg == "-":
                raise CliError('Option "-" is unknown, try "ip -help".\n', STATUS_USAGE)
            break
        opt = arg[1:] if arg.startswith("--") else arg
        action = _global_action(opt)
        if action is None:
            raise CliError(f'Option "{opt}" is unknown, try "ip -help".\n', STATUS_USAGE)
        if action == "unsupported":
            raise CliError(f'Option "{opt}" is not supported by pyl2tp\n', STATUS_USAGE)
        if action == "ignore_arg":
            # -f/-family FAMILY: ip's l2tp module ignores the family and prints everything.
            if i + 1 >= len(argv):
                raise CliError('Command line is not complete. Try option "help"\n', STATUS_USAGE)
            i += 2
            continue
        if action == "stats":
            g.stats += 1
        elif action == "json":
            g.json = True
        elif action == "pretty":
            g.pretty = True
        elif action == "oneline":
            g.oneline = True
        elif action == "help":
            g.help = True
            i += 1
            break
        i += 1
    return g, list(argv[i:])


def parse(argv: Sequence[str]) -> Invocation:
    """Turn the arguments after ``pyl2tp`` into the requests ``ip l2tp`` would send.

    Accepts ip's global options, then an optional ``l2tp`` word, then
    ``add | del[ete] | show | list | lst | set | help`` with ip's abbreviations. Raises
    :class:`CliError` for every command line ip rejects; any "Ignoring option" warnings
    printed before the failure are part of its message, as they would be on ip's stderr.
    """
    g, rest = _parse_globals(argv)
    out = OutputOptions(json=g.json, pretty=g.pretty, oneline=g.oneline, stats=g.stats)
    inv = Invocation(output=out, socket_path=g.socket_path)
    if g.help:
        inv.usage = True
        return inv
    if rest and rest[0] in ("l2", "l2t", "l2tp"):
        rest = rest[1:]
    if not rest or _matches(rest[0], "help"):
        inv.usage = True
        return inv
    command, args = rest[0], rest[1:]
    warnings = inv.warnings
    try:
        if _matches(command, "add"):
            inv.requests = _do_add(_parse_args(args, warnings))
        elif _matches(command, "delete"):
            inv.requests = _do_del(_parse_args(args, warnings))
        elif _matches(command, "show") or _matches(command, "lst") or _matches(command, "list"):
            _do_show(_parse_args(args, warnings), inv)
        elif _matches(command, "set"):
            inv.requests = _do_set(_parse_args(args, warnings))
        else:
            raise CliError(f'Command "{command}" is unknown, try "ip l2tp help".\n', STATUS_USAGE)
    except _UsageRequested:
        inv.requests = []
        inv.usage = True
    except CliError as exc:
        raise CliError("".join(warnings) + exc.message, exc.status) from None
    return inv


def _do_show(p: _Params, inv: Invocation) -> None:
    if not p.tunnel and not p.session:
        raise _missarg("tunnel or session")
    if p.session:
        inv.show = "sessions"
        inv.requests = [_request("session_get", {}, dump=True)]
        inv.filters = Filters(p.tunnel_id or None, p.session_id or None)
    else:
        inv.show = "tunnels"
        inv.requests = [_request("tunnel_get", {}, dump=True)]
        inv.filters = Filters(p.tunnel_id or None, None)


# --------------------------------------------------------------------------------------------
# Output


def filter_tunnels(tunnels: Iterable[Mapping[str, Any]], filters: Filters) -> list[dict[str, Any]]:
    """The tunnels a ``show tunnel [tunnel_id ID]`` asked for (ip would print them all)."""
    return [
        dict(t) for t in tunnels if not filters.tunnel_id or t.get("conn_id") == filters.tunnel_id
    ]


def filter_sessions(
    sessions: Iterable[Mapping[str, Any]], filters: Filters
) -> list[dict[str, Any]]:
    """The sessions matching whichever of tunnel_id / session_id were given."""
    return [
        dict(s)
        for s in sessions
        if (not filters.tunnel_id or s.get("conn_id") == filters.tunnel_id)
        and (not filters.session_id or s.get("session_id") == filters.session_id)
    ]


def _ntop(family: int, text: Any) -> str:
    """Re-render an address the way glibc's inet_ntop would; unknown text passes through."""
    af = socket.AF_INET6 if family == 6 else socket.AF_INET
    try:
        return socket.inet_ntop(af, socket.inet_pton(af, str(text)))
    except (OSError, ValueError):
        return str(text)


def _addresses(t: Mapping[str, Any]) -> tuple[int, str, int, str]:
    """(local family, local, peer family, peer); v4 when ip_*addr is present, else v6 like ip."""
    if t.get("ip_saddr") is not None:
        lfam, local = 4, _ntop(4, t["ip_saddr"])
    else:
        lfam, local = 6, _ntop(6, t.get("ip6_saddr") or "::")
    if t.get("ip_daddr") is not None:
        pfam, peer = 4, _ntop(4, t["ip_daddr"])
    else:
        pfam, peer = 6, _ntop(6, t.get("ip6_daddr") or "::")
    return lfam, local, pfam, peer


def _encap_name(t: Mapping[str, Any]) -> str:
    encap = t.get("encap_type", _ENCAP_UDP)
    return {_ENCAP_UDP: "UDP", _ENCAP_IP: "IP"}.get(encap, "??")


_RX_COLUMNS = (
    ("packets", "rx_packets"),
    ("bytes", "rx_bytes"),
    ("errors", "rx_errors"),
    ("seq_discards", "rx_seq_discards"),
    ("oos", "rx_oos_packets"),
    ("cookie_discards", "rx_cookie_discards"),
    ("invalid", "rx_invalid"),
)
_TX_COLUMNS = (("packets", "tx_packets"), ("bytes", "tx_bytes"), ("errors", "tx_errors"))
_JSON_RX_KEYS = (
    ("packets", "rx_packets"),
    ("bytes", "rx_bytes"),
    ("errors", "rx_errors"),
    ("seq_discards", "rx_seq_discards"),
    ("oos_packets", "rx_oos_packets"),
    ("cookie_discards", "rx_cookie_discards"),
    ("invalid", "rx_invalid"),
)


def _counter(stats: Mapping[str, Any], key: str) -> int:
    return int(stats.get(key) or 0)


def _stats_lines(obj: Mapping[str, Any]) -> list[str]:
    """Counters laid out like ``ip -s link``: a header row, then right-aligned values."""
    stats = obj.get("stats") or {}
    lines: list[str] = []
    for label, columns in (("RX:", _RX_COLUMNS), ("TX:", _TX_COLUMNS)):
        values = [str(_counter(stats, key)) for _, key in columns]
        widths = [max(len(h), len(v)) for (h, _), v in zip(columns, values, strict=True)]
        heads = [h.rjust(w) for (h, _), w in zip(columns, widths, strict=True)]
        lines.append(f"    {label} " + " ".join(heads))
        lines.append("        " + " ".join(v.rjust(w) for v, w in zip(values, widths, strict=True)))
    return lines


def _json_stats(obj: Mapping[str, Any]) -> dict[str, Any]:
    stats = obj.get("stats") or {}
    return {
        "rx": {name: _counter(stats, key) for name, key in _JSON_RX_KEYS},
        "tx": {name: _counter(stats, key) for name, key in _TX_COLUMNS},
    }


def _with_stats(text: str, obj: Mapping[str, Any], sl: str) -> str:
    """Insert the statistics block before the object's final newline.

    Done this way so ``-oneline`` keeps the counters on the object's line and the text form
    does not gain the blank line ip prints when a session has no optional fields.
    """
    lines = sl.join(_stats_lines(obj))
    if not text.endswith("\n"):
        return text + lines + sl
    body = text[:-1]
    if body.endswith("\n"):
        return body + lines + "\n"
    return body + sl + lines + "\n"


def _tunnel_text(t: Mapping[str, Any], sl: str) -> str:
    lfam, local, _, peer = _addresses(t)
    parts = [
        f"Tunnel {t.get('conn_id', 0)}, encap {_encap_name(t)}{sl}",
        f"  From {local} to {peer}{sl}",
        f"  Peer tunnel {t.get('peer_conn_id', 0)}{sl}",
    ]
    if t.get("encap_type", _ENCAP_UDP) == _ENCAP_UDP:
        parts.append(
            f"  UDP source / dest ports: {t.get('udp_sport', 0)}/{t.get('udp_dport', 0)}{sl}"
        )
        if lfam == 4:
            state = "enabled" if t.get("udp_csum") else "disabled"
        else:
            tx = not t.get("udp_zero_csum6_tx")
            rx = not t.get("udp_zero_csum6_rx")
            state = {
                (True, True): "enabled",
                (True, False): "tx",
                (False, True): "rx",
                (False, False): "disabled",
            }[(tx, rx)]
        # ip ends this line with a literal newline even in -oneline mode.
        parts.append(f"  UDP checksum: {state}\n")
    return "".join(parts)


def _tunnel_json(t: Mapping[str, Any], stats: bool) -> dict[str, Any]:
    lfam, local, _, peer = _addresses(t)
    obj: dict[str, Any] = {
        "tunnel_id": int(t.get("conn_id", 0)),
        "encap": _encap_name(t),
        "local": local,
        "peer": peer,
        "peer_tunnel": int(t.get("peer_conn_id", 0)),
    }
    if t.get("encap_type", _ENCAP_UDP) == _ENCAP_UDP:
        obj["local_port"] = int(t.get("udp_sport", 0))
        obj["peer_port"] = int(t.get("udp_dport", 0))
        if lfam == 4:
            obj["checksum"] = bool(t.get("udp_csum"))
        else:
            obj["checksum_tx"] = not t.get("udp_zero_csum6_tx")
            obj["checksum_rx"] = not t.get("udp_zero_csum6_rx")
    if stats:
        obj["stats"] = _json_stats(t)
    return obj


def _session_text(s: Mapping[str, Any], sl: str) -> str:
    parts = [
        f"Session {s.get('session_id', 0)} in tunnel {s.get('conn_id', 0)}{sl}",
        f"  Peer session {s.get('peer_session_id', 0)}, tunnel {s.get('peer_conn_id', 0)}{sl}",
    ]
    if s.get("ifname") is not None:
        parts.append(f"  interface name: {s['ifname']}{sl}")
    # Constant since offsets went away; ip keeps the line for scripts that parse it.
    parts.append("  offset 0, peer offset 0\n")
    # Cookies and the reorder timeout share one line with no separator but their indent.
    if s.get("cookie"):
        parts.append(f"  cookie {str(s['cookie']).lower()}")
    if s.get("peer_cookie"):
        parts.append(f"  peer cookie {str(s['peer_cookie']).lower()}")
    if s.get("recv_timeout"):
        parts.append(f"  reorder timeout: {s['recv_timeout']}")
    if s.get("send_seq") or s.get("recv_seq"):
        parts.append(f"{sl}  sequence numbering:")
        if s.get("send_seq"):
            parts.append(" send")
        if s.get("recv_seq"):
            parts.append(" recv")
    parts.append("\n")
    return "".join(parts)


def _session_json(s: Mapping[str, Any], stats: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "session_id": int(s.get("session_id", 0)),
        "tunnel_id": int(s.get("conn_id", 0)),
        "peer_session_id": int(s.get("peer_session_id", 0)),
        "peer_tunnel_id": int(s.get("peer_conn_id", 0)),
    }
    if s.get("ifname") is not None:
        obj["interface"] = str(s["ifname"])
    if s.get("cookie"):
        obj["cookie"] = str(s["cookie"]).lower()
    if s.get("peer_cookie"):
        obj["peer_cookie"] = str(s["peer_cookie"]).lower()
    if s.get("recv_timeout"):
        obj["reorder_timeout"] = int(s["recv_timeout"])
    # ip marks the sequencing flags by presence, with a null value.
    if s.get("send_seq"):
        obj["send_seq"] = None
    if s.get("recv_seq"):
        obj["recv_seq"] = None
    if stats:
        obj["stats"] = _json_stats(s)
    return obj


_JSON_ESCAPES = {
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\f": "\\f",
    "\b": "\\b",
    "\\": "\\\\",
    '"': '\\"',
}


def _json_string(text: str) -> str:
    out = []
    for c in text:
        if c in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[c])
        elif ord(c) < 0x20:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _json_scalar(value: Any, pretty: bool, depth: int) -> str:
    if isinstance(value, Mapping):
        return _json_object(value, pretty, depth + 1)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _json_string(str(value))


def _json_object(obj: Mapping[str, Any], pretty: bool, depth: int) -> str:
    """One object as iproute2's json_writer lays it out (``depth`` = nesting of its members)."""
    if not pretty:
        members = (f"{_json_string(k)}:{_json_scalar(v, False, depth)}" for k, v in obj.items())
        return "{" + ",".join(members) + "}"
    if not obj:
        return "{}"
    indent = "    " * depth
    members = (
        f"\n{indent}{_json_string(k)}: {_json_scalar(v, True, depth)}" for k, v in obj.items()
    )
    return "{" + ",".join(members) + "\n" + "    " * (depth - 1) + "}"


def _json_array(objects: Sequence[Mapping[str, Any]], pretty: bool) -> str:
    """ip's top-level array: ``[{..},{..}]`` compact, ``[ {\\n..\\n    },{..} ]`` pretty."""
    body = ",".join(_json_object(o, pretty, 2) for o in objects)
    if not pretty:
        return "[" + body + "]\n"
    return "[ " + body + (" ]\n" if objects else "]\n")


def _format(
    objects: Sequence[Mapping[str, Any]],
    opts: OutputOptions,
    to_json: Callable[[Mapping[str, Any], bool], Any],
    to_text: Callable[[Mapping[str, Any], str], str],
) -> str:
    """The output shape shared by tunnels and sessions: a JSON array, or text blocks each
    followed by its statistics with ``-s``."""
    if opts.json:
        return _json_array([to_json(o, bool(opts.stats)) for o in objects], opts.pretty)
    sl = "\\" if opts.oneline else "\n"
    chunks = []
    for o in objects:
        text = to_text(o, sl)
        chunks.append(_with_stats(text, o, sl) if opts.stats else text)
    return "".join(chunks)


def format_tunnels(
    tunnels: Sequence[Mapping[str, Any]], opts: OutputOptions, filters: Filters | None = None
) -> str:
    """``ip l2tp show tunnel`` output for these tunnel replies (text, oneline or JSON).

    With ``filters``, only the tunnels they match are printed (see :func:`filter_tunnels`).
    """
    if filters is not None:
        tunnels = filter_tunnels(tunnels, filters)
    return _format(tunnels, opts, _tunnel_json, _tunnel_text)


def format_sessions(
    sessions: Sequence[Mapping[str, Any]], opts: OutputOptions, filters: Filters | None = None
) -> str:
    """``ip l2tp show session`` output for these session replies (text, oneline or JSON).

    With ``filters``, only the sessions they match are printed (see :func:`filter_sessions`).
    """
    if filters is not None:
        sessions = filter_sessions(sessions, filters)
    return _format(sessions, opts, _session_json, _session_text)


def render(inv: Invocation, objects: Sequence[Mapping[str, Any]]) -> str:
    """Filter a dump reply by the invocation's ids and format it as ``show`` asked."""
    if inv.show == "sessions":
        return format_sessions(objects, inv.output, inv.filters)
    if inv.show == "tunnels":
        return format_tunnels(objects, inv.output, inv.filters)
    return ""


def format_error(err: Mapping[str, Any] | L2tpError, *, dump: bool = False) -> tuple[str, int]:
    """What ``ip`` prints, and its exit status, when the kernel answers with this error.

    ``err`` is a management error (``{"errno": "EEXIST", "code": 17, "message": ...}``, or
    the :class:`L2tpError` the client raises); the text uses the C library's wording for the
    code, as ``perror`` would, not the daemon's message, because scripts match ip's text.
    A failed dump additionally ends the listing with ``Dump terminated`` and exit status 1.
    """
    if isinstance(err, L2tpError):
        err = err.as_dict()
    code = err.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        code = getattr(errno_mod, str(err.get("errno", "")), None)
    reason = os.strerror(code) if isinstance(code, int) else str(err.get("message", "error"))
    text = f"RTNETLINK answers: {reason}\n"
    if dump:
        return text + "Dump terminated\n", STATUS_DUMP
    return text, STATUS_KERNEL


def _is_error(reply: Any) -> bool:
    return isinstance(reply, Mapping) and "errno" in reply


def execute(
    inv: Invocation,
    send: Callable[[Request], Any],
    out: TextIO,
    err: TextIO,
) -> int:
    """Carry out an invocation with ``send`` as the transport; returns the exit status.

    ``send(request)`` returns the decoded result (for a dump, the list of objects) and
    reports a refusal either by raising :class:`L2tpError` or by returning an error object
    (one with ``errno``). With the management client that is::

        send = lambda r: client.request(r["cmd"], r["attrs"], dump=r.get("dump", False))

    Like ip, a failed request does not stop the next one (``add tunnel ... session ...``
    still tries the session) and the exit status is that of the last request; a failed dump
    stops at once.
    """
    for warning in inv.warnings:
        err.write(warning)
    if inv.usage:
        err.write(usage())
        return STATUS_USAGE
    status = 0
    for request in inv.requests:
        is_dump = bool(request.get("dump"))
        try:
            reply = send(request)
        except L2tpError as exc:
            reply = exc.as_dict()
        if _is_error(reply):
            text, status = format_error(reply, dump=is_dump)
            err.write(text)
            if is_dump:
                return status
            continue
        status = 0
        if is_dump:
            objects = [reply] if isinstance(reply, Mapping) else list(reply or [])
            out.write(render(inv, objects))
    return status
