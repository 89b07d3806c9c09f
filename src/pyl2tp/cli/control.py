"""``pyl2tp listen|dial|call|hangup|control``: the control plane from the command line.

The syntax follows ``ip l2tp``'s keyword-value style so that the commands read alike::

    pyl2tp listen encap udp address 0.0.0.0 port 1701
    pyl2tp dial peer 192.0.2.2 version 3 encap ip secret s3cret hidden
    pyl2tp call tunnel_id 1234 pw_type eth ifname l2tpeth0
    pyl2tp hangup tunnel_id 1234 [session_id 99]
    pyl2tp control show [-j]
    pyl2tp ppp show [-j]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO

USAGE = """\
Usage: pyl2tp listen [ encap { udp | ip } ] [ address ADDR ] [ port PORT ]
       pyl2tp dial peer ADDR [ version { 2 | 3 } ] [ encap { udp | ip } ] [ port PORT ]
                  [ local ADDR ] [ local_port PORT ] [ secret SECRET ] [ hidden ]
                  [ host_name NAME ] [ hello SECONDS ] [ digest { md5 | sha1 } ]
                  [ window N ] [ retries N ] [ no_challenge ]
       pyl2tp call tunnel_id ID [ incoming | outgoing ] [ pw_type { eth | ppp } ]
                  [ count N ] [ ifname NAME ] [ cookie_len { 0 | 4 | 8 } ]
                  [ l2spec_type { none | default } ] [ seq { none | non_ip | all } ]
                  [ sequencing ] [ remote_end_id ID ] [ reorder_timeout MS ]
                  [ ppp PROFILE ]
       pyl2tp hangup tunnel_id ID [ session_id ID ]
       pyl2tp control show [ -j ]
       pyl2tp ppp show [ -j ]
"""

Request = Callable[[str, dict[str, Any]], Any]


class UsageError(Exception):
    pass


def _int(word: str, value: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise UsageError(f'invalid {word} "{value}"') from None


# keyword -> (attribute, converter); converter None marks a flag without a value
_DIAL: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "peer": ("peer", str), "remote": ("peer", str), "version": ("version", int),
    "encap": ("encap", str), "port": ("port", int), "local": ("local", str),
    "local_port": ("local_port", int), "secret": ("secret", str), "hidden": ("hide_avps", None),
    "host_name": ("host_name", str), "hostname": ("host_name", str),
    "hello": ("hello_interval", float), "digest": ("digest", str),
    "window": ("receive_window", int), "retries": ("max_retries", int),
    "no_challenge": ("challenge", None),
}
_CALL: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "tunnel_id": ("conn_id", int), "pw_type": ("pw_type", str), "count": ("count", int),
    "ifname": ("ifname", str), "name": ("ifname", str), "cookie_len": ("cookie_len", int),
    "l2spec_type": ("l2spec_type", str), "seq": ("data_sequencing", str),
    "sequencing": ("sequencing", None), "remote_end_id": ("remote_end_id", str),
    "reorder_timeout": ("reorder_timeout", float), "ppp": ("ppp", str),
    "incoming": ("direction", None), "outgoing": ("direction", None),
}
_LISTEN: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "encap": ("encap", str), "address": ("address", str), "local": ("address", str),
    "port": ("port", int),
}
_HANGUP: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "tunnel_id": ("conn_id", int), "session_id": ("session_id", int),
}


def _parse(argv: Sequence[str], table: dict[str, tuple[str, Callable[[str], Any] | None]]
           ) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word not in table:
            raise UsageError(f'unknown argument "{word}"')
        name, conv = table[word]
        if conv is None:
            if word in ("incoming", "outgoing"):
                attrs[name] = word
            elif word == "no_challenge":
                attrs[name] = False
            else:
                attrs[name] = True
            i += 1
            continue
        if i + 1 >= len(argv):
            raise UsageError(f'argument "{word}" needs a value')
        value = argv[i + 1]
        if conv is int:
            attrs[name] = _int(word, value)
        elif conv is float:
            try:
                attrs[name] = float(value)
            except ValueError:
                raise UsageError(f'invalid {word} "{value}"') from None
        else:
            attrs[name] = conv(value)
        i += 2
    if "reorder_timeout" in attrs:
        attrs["reorder_timeout"] = attrs["reorder_timeout"] / 1000.0  # ms, as ip l2tp
    return attrs


def _show(conns: list[dict[str, Any]], out: TextIO) -> None:
    for c in conns:
        out.write(f"Control connection {c['tunnel_id']} -> peer {c['peer']} "
                  f"({c['encap']}{' port ' + str(c['peer_port']) if c['encap'] == 'udp' else ''})"
                  f", L2TPv{c['version']}\n")
        out.write(f"  state {c['state']}, peer tunnel id {c['peer_tunnel_id']}, "
                  f"peer host {c['peer_host_name'] or '-'}"
                  f"{', authenticated' if c['authenticated'] else ''}\n")
        out.write(f"  Ns {c['ns']} Nr {c['nr']} cwnd {c['cwnd']} peer window "
                  f"{c['peer_rws']}, {c['sessions']} sessions\n")
        if c.get("down_reason"):
            out.write(f"  down: {c['down_reason']}\n")
        for s in c.get("calls", []):
            out.write(f"  Session {s['session_id']} peer {s['peer_session_id']} "
                      f"{s['direction']} {s['state']} pw_type {s['pw_type']}\n")


def _show_ppp(links: list[dict[str, Any]], out: TextIO) -> None:
    for p in links:
        where = f"Session {p['session_id']} in tunnel {p['tunnel_id']}"
        if "switched_to" in p:
            to = p["switched_to"]
            out.write(f"{where}: switched to session {to['session_id']} in tunnel "
                      f"{to['tunnel_id']}, {p['frames']} frames\n")
            continue
        out.write(f"{where}: {p['ifname'] or '-'} phase {p['phase']}, LCP {p['lcp']}"
                  f"{', user ' + p['user'] if p.get('user') else ''}\n")
        if "local" in p:
            out.write(f"  inet {p['local']} peer {p['peer'] or '-'}"
                      f"{'  dns ' + ' '.join(p['dns']) if p.get('dns') else ''}\n")
        if "local6" in p:
            out.write(f"  inet6 {p['local6']}\n")


def run(command: str, argv: Sequence[str], request: Request, out: TextIO) -> None:
    """Execute one control command; raises UsageError or the request's errors."""
    if command == "listen":
        r = request("control_listen", _parse(argv, _LISTEN))
        out.write(f"listening: {r['encap']} {r['address']}"
                  f"{' port ' + str(r['port']) if r['encap'] == 'udp' else ''}\n")
    elif command == "dial":
        attrs = _parse(argv, _DIAL)
        if "peer" not in attrs:
            raise UsageError('"peer" is required')
        r = request("control_dial", attrs)
        out.write(f"tunnel_id {r['conn_id']} {r['state']}\n")
    elif command == "call":
        attrs = _parse(argv, _CALL)
        if "conn_id" not in attrs:
            raise UsageError('"tunnel_id" is required')
        for r in request("control_call", attrs):
            out.write(f"tunnel_id {r['conn_id']} session_id {r['session_id']} {r['state']}\n")
    elif command == "hangup":
        attrs = _parse(argv, _HANGUP)
        if "conn_id" not in attrs:
            raise UsageError('"tunnel_id" is required')
        request("control_hangup", attrs)
    elif command in ("control", "ppp"):
        args = [a for a in argv if a not in ("-j", "-json", "--json")]
        if args not in ([], ["show"]):
            raise UsageError(f'unknown argument "{args[0] if args[0] != "show" else args[1]}"')
        items = request("control_dump" if command == "control" else "ppp_dump", {})
        if len(args) != len(argv):
            out.write(json.dumps(items) + "\n")
        elif command == "control":
            _show(items, out)
        else:
            _show_ppp(items, out)
    else:
        raise UsageError(f'unknown command "{command}"')


COMMANDS = ("listen", "dial", "call", "hangup", "control", "ppp")

__all__ = ["COMMANDS", "USAGE", "UsageError", "run"]
