"""The ``pyl2tp`` command: ``ip l2tp`` syntax against the daemon, plus daemon control.

``pyl2tp add|del|show|set ...`` speaks ``ip l2tp`` (see :mod:`pyl2tp.cli.iproute`);
``pyl2tp daemon`` runs the service; ``pyl2tp monitor`` prints the notification stream;
``pyl2tp debug`` prints the debugfs-style listing. Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from pyl2tp.errors import L2tpError
from pyl2tp.mgmt.client import Client, DaemonUnreachable

from . import control, iproute


def _pop_socket(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take ``--socket PATH`` (or ``--socket=PATH``) off the arguments, for every subcommand
    alike; the ip-syntax parser therefore never sees it."""
    out: list[str] = []
    path: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--socket" and i + 1 < len(argv):
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--socket="):
            path = arg.split("=", 1)[1]
            i += 1
            continue
        out.append(arg)
        i += 1
    return path, out


def _daemon(argv: Sequence[str], socket_path: str | None) -> int:
    from pyl2tp.daemon import main as daemon_main

    p = argparse.ArgumentParser(prog="pyl2tp daemon",
                                description="Run the pyl2tp data plane and management API.")
    daemon_main.add_arguments(p)
    args = p.parse_args(list(argv))
    if socket_path and not args.socket:
        args.socket = socket_path
    return daemon_main.run(args)


def _monitor(argv: Sequence[str], socket_path: str | None) -> int:
    as_json = "-j" in argv or "--json" in argv
    with Client(socket_path) as client:
        try:
            for note in client.subscribe():
                if as_json:
                    print(json.dumps(note), flush=True)
                else:
                    print(_describe(note), flush=True)
        except KeyboardInterrupt:
            pass
    return 0


def _describe(note: dict[str, Any]) -> str:
    event = str(note.get("event", "?"))
    attrs = note.get("attrs") or {}
    ids = f"tunnel_id {attrs.get('conn_id')}"
    if "session_id" in attrs:
        ids += f" session_id {attrs['session_id']}"
    extra = " ".join(f"{k} {v}" for k, v in attrs.items()
                     if k in ("reason", "peer", "ifname", "result"))
    return f"{event.replace('_', ' ')}: {ids}{' ' + extra if extra else ''}"


def _ip_l2tp(argv: list[str], socket_path: str | None) -> int:
    inv = iproute.parse(argv)
    if inv.usage and not inv.requests:
        return iproute.execute(inv, lambda _r: None, sys.stdout, sys.stderr)
    with Client(socket_path) as client:
        return iproute.execute(
            inv,
            lambda r: client.request(r["cmd"], r.get("attrs") or {}, dump=bool(r.get("dump"))),
            sys.stdout,
            sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    socket_path, args = _pop_socket(args)
    try:
        if args and args[0] == "daemon":
            return _daemon(args[1:], socket_path)
        if args and args[0] == "monitor":
            return _monitor(args[1:], socket_path)
        if args and args[0] in control.COMMANDS:
            if args[1:] in (["help"], ["-h"], ["--help"]):
                sys.stdout.write(control.USAGE)
                return 0
            with Client(socket_path) as client:
                control.run(args[0], args[1:],
                            lambda cmd, attrs: client.request(cmd, attrs), sys.stdout)
            return 0
        if args and args[0] == "debug":
            with Client(socket_path) as client:
                sys.stdout.write(client.request("debug_tunnels"))
            return 0
        return _ip_l2tp(args, socket_path)
    except iproute.CliError as exc:
        sys.stderr.write(exc.message)
        return exc.status
    except control.UsageError as exc:
        print(f"pyl2tp: {exc}; try \"pyl2tp {args[0]} help\"", file=sys.stderr)
        return 255
    except L2tpError as exc:
        print(f"pyl2tp: {exc.message}", file=sys.stderr)
        return 2
    except DaemonUnreachable as exc:
        print(f"pyl2tp: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
