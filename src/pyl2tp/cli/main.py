"""The ``pyl2tp`` command: ``ip l2tp`` syntax against the daemon, plus daemon control.

``pyl2tp add|del|show|set ...`` speaks ``ip l2tp`` (see :mod:`pyl2tp.cli.iproute`);
``pyl2tp daemon`` runs the service; ``pyl2tp monitor`` prints the notification stream;
``pyl2tp debug`` prints the debugfs-style listing; ``pyl2tp top`` shows rates
(:mod:`pyl2tp.cli.top`); ``pyl2tp capture`` records packets (:mod:`pyl2tp.cli.capture`);
``pyl2tp install-service`` installs the systemd unit and a sample configuration. Errors are
one line on stderr, never a traceback. docs/cli.md describes every subcommand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyl2tp.errors import L2tpError
from pyl2tp.mgmt.client import Client, DaemonUnreachable

from . import capture, control, iproute, kernel, top


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
    if list(argv) == ["help"]:
        p.print_help()
        return 0
    args = p.parse_args(list(argv))
    if socket_path and not args.socket:
        args.socket = socket_path
    return daemon_main.run(args)


MONITOR_USAGE = """\
Usage: pyl2tp monitor [ -j ]
  Print every create/delete/modify of tunnels and sessions and every control-plane and PPP
  event as it happens, one line each (-j: the raw JSON notifications), until Ctrl-C.
"""


def _monitor(argv: Sequence[str], socket_path: str | None) -> int:
    words = [a for a in argv if a not in ("-j", "-json", "--json")]
    if words in (["help"], ["-h"], ["--help"]):
        sys.stdout.write(MONITOR_USAGE)
        return 0
    if words not in ([], ["all"]):  # ip monitor l2tp takes "all" as well
        print(f'pyl2tp: unknown argument "{words[0]}"; try "pyl2tp monitor help"',
              file=sys.stderr)
        return 255
    as_json = len(words) != len(argv)
    with Client(socket_path) as client:
        try:
            for note in client.subscribe():
                if as_json:
                    print(json.dumps(note), flush=True)
                else:
                    print(describe_event(note), flush=True)
        except KeyboardInterrupt:
            pass
    return 0


_DESCRIBED = ("reason", "result", "error", "by_peer", "peer", "peer_host_name", "state",
              "ifname", "user", "local", "old_conn_id")


def describe_event(note: dict[str, Any]) -> str:
    """One line for a notification: the event, the ids it concerns, then the few attributes
    an operator looks for (why it went down, who decided, which interface)."""
    event = str(note.get("event", "?"))
    attrs = note.get("attrs") or {}
    tid = attrs.get("conn_id", attrs.get("tunnel_id"))
    words = []
    if tid is not None:
        words.append(f"tunnel_id {tid}")
    if attrs.get("session_id") is not None:
        words.append(f"session_id {attrs['session_id']}")
    if tid is None and attrs.get("session"):
        words.append(str(attrs["session"]))
    for key in _DESCRIBED:
        value = attrs.get(key)
        if value is None or value == "" or value == []:
            continue
        words.append(f"{key} {value}")
    return f"{event.replace('_', ' ')}: {' '.join(words) or '-'}"


INSTALL_USAGE = """\
Usage: pyl2tp install-service [ --prefix DIR ] [ --force ] [ --print ]
  Install the systemd unit (DIR/etc/systemd/system/pyl2tp.service) and, unless one exists,
  the sample configuration (DIR/etc/pyl2tp/pyl2tp.toml). ExecStart is set to this pyl2tp.
  --prefix  root to install under (default /); e.g. a package build directory
  --force   overwrite an existing configuration file
  --print   print the unit as it would be installed, install nothing
"""


def share_dir() -> Path | None:
    """Where the packaging files are: installed data (``<prefix>/share/pyl2tp``) or the
    source tree's ``packaging/`` (a checkout or an editable install)."""
    candidates = [Path(sys.prefix) / "share" / "pyl2tp",
                  Path(__file__).resolve().parents[3] / "packaging"]
    for path in candidates:
        if (path / "pyl2tp.service").is_file() and (path / "pyl2tp.toml").is_file():
            return path
    return None


def _pyl2tp_executable() -> str:
    script = Path(sys.executable).with_name("pyl2tp")
    if script.exists():
        return str(script)
    return shutil.which("pyl2tp") or "/usr/local/bin/pyl2tp"


def unit_text(template: str, executable: str) -> str:
    """The unit with every ``/usr/local/bin/pyl2tp`` replaced by the real script's path."""
    return template.replace("/usr/local/bin/pyl2tp", executable)


def _install_service(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="pyl2tp install-service", add_help=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--prefix", default="/")
    p.add_argument("--force", action="store_true")
    p.add_argument("--print", dest="show", action="store_true")
    args, rest = p.parse_known_args(list(argv))
    if args.help or rest == ["help"]:
        sys.stdout.write(INSTALL_USAGE)
        return 0
    if rest:
        print(f'pyl2tp: unknown argument "{rest[0]}"; try "pyl2tp install-service help"',
              file=sys.stderr)
        return 255
    src = share_dir()
    if src is None:
        print("pyl2tp: the packaging files (pyl2tp.service, pyl2tp.toml) are not installed "
              "with this pyl2tp; copy them from the source tree's packaging/ directory",
              file=sys.stderr)
        return 1
    unit = unit_text((src / "pyl2tp.service").read_text(), _pyl2tp_executable())
    if args.show:
        sys.stdout.write(unit)
        return 0
    root = Path(args.prefix)
    unit_path = root / "etc/systemd/system/pyl2tp.service"
    conf_path = root / "etc/pyl2tp/pyl2tp.toml"
    try:
        unit_path.parent.mkdir(parents=True, exist_ok=True)
        unit_path.write_text(unit)
        print(f"installed {unit_path}")
        conf_path.parent.mkdir(parents=True, exist_ok=True)
        if conf_path.exists() and not args.force:
            print(f"kept the existing {conf_path} (--force replaces it)")
        else:
            shutil.copyfile(src / "pyl2tp.toml", conf_path)
            os.chmod(conf_path, 0o640)  # it will hold secrets
            print(f"installed {conf_path}")
    except OSError as exc:
        print(f"pyl2tp: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.prefix == "/":
        print("next: edit /etc/pyl2tp/pyl2tp.toml, then "
              "systemctl daemon-reload && systemctl enable --now pyl2tp")
    return 0


def _client_request(client: Client) -> Any:
    return lambda cmd, attrs, dump: client.request(cmd, attrs, dump=dump)


OTHER_COMMANDS = """\

pyl2tp commands beyond ip l2tp (each takes "help"; docs/cli.md describes them all):
       pyl2tp --kernel { add | del | set | show } ...  ip l2tp syntax to the kernel itself
       pyl2tp daemon [ --config FILE ] [ --backend auto|userspace|linux ] ...
       pyl2tp listen | dial | call | hangup ...      the control plane
       pyl2tp control show [ -j ] | ppp show [ -j ]
       pyl2tp monitor [ -j ]                          the event stream
       pyl2tp top [ -b ] [ -n COUNT ] [ -d SECONDS ]  rates per tunnel and session
       pyl2tp capture [ tunnel_id ID ... ] [ -w FILE ] [ -c COUNT ] [ -i IFACE ]
       pyl2tp debug                                   the kernel's debugfs layout
       pyl2tp version [ -j ]                          version and data-plane backend
       pyl2tp install-service [ --prefix DIR ]        systemd unit and sample configuration
"""


_NOT_IP_SYNTAX = frozenset({"daemon", "monitor", "install-service", "top", "capture", "debug",
                            "version", *control.COMMANDS})


def _version(argv: Sequence[str], socket_path: str | None) -> int:
    """The daemon's version and which data plane it runs, and why (``-j``: as JSON)."""
    if argv and argv[0] in ("help", "-h", "--help"):
        print("Usage: pyl2tp version [ -j ]\n  the daemon's version and data-plane backend")
        return 0
    if argv not in ([], ["-j"], ["-json"], ["--json"]):
        print(f'pyl2tp: unknown argument "{argv[0]}"; try "pyl2tp version help"',
              file=sys.stderr)
        return 255
    with Client(socket_path) as client:
        reply = client.request("version")
    if argv:
        print(json.dumps(reply))
    else:
        reason = reply.get("backend_reason")
        print(f"pyl2tp {reply['version']}, backend {reply['backend']}"
              f"{f' ({reason})' if reason else ''}")
    return 0


def _ip_l2tp(argv: list[str], socket_path: str | None, *, direct: bool = False) -> int:
    inv = iproute.parse(argv)
    if inv.usage and not inv.requests:
        return iproute.execute(inv, lambda _r: None, sys.stdout, sys.stderr)
    if direct:
        with kernel.open_kernel() as nl:
            return iproute.execute(inv, nl, sys.stdout, sys.stderr)
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
    direct = "--kernel" in args
    args = [a for a in args if a != "--kernel"]
    try:
        if direct and args and args[0] in _NOT_IP_SYNTAX:
            print(f'pyl2tp: --kernel applies to add, del, set and show only, not "{args[0]}"',
                  file=sys.stderr)
            return 255
        if args and args[0] == "daemon":
            return _daemon(args[1:], socket_path)
        if args and args[0] == "monitor":
            return _monitor(args[1:], socket_path)
        if args and args[0] == "install-service":
            return _install_service(args[1:])
        if args and args[0] == "top":
            if args[1:] in (["help"], ["-h"], ["--help"]):
                sys.stdout.write(top.USAGE)
                return 0
            with Client(socket_path) as client:
                return top.run(args[1:], _client_request(client), sys.stdout)
        if args and args[0] == "capture":
            if args[1:] in (["help"], ["-h"], ["--help"]):
                sys.stdout.write(capture.USAGE)
                return 0
            with Client(socket_path) as client:
                return capture.run(args[1:], _client_request(client), sys.stdout, sys.stderr)
        if args and args[0] in control.COMMANDS:
            if args[1:] in (["help"], ["-h"], ["--help"]):
                sys.stdout.write(control.USAGE)
                return 0
            with Client(socket_path) as client:
                control.run(args[0], args[1:],
                            lambda cmd, attrs: client.request(cmd, attrs), sys.stdout)
            return 0
        if args and args[0] == "version":
            return _version(args[1:], socket_path)
        if args and args[0] == "debug":
            if args[1:]:
                if args[1:] in (["help"], ["-h"], ["--help"]):
                    print("Usage: pyl2tp debug\n  the kernel's debugfs l2tp/tunnels listing")
                    return 0
                print(f'pyl2tp: unknown argument "{args[1]}"; try "pyl2tp debug help"',
                      file=sys.stderr)
                return 255
            with Client(socket_path) as client:
                sys.stdout.write(client.request("debug_tunnels"))
            return 0
        if args in (["help"], ["-help"], ["--help"], ["-h"]):
            status = _ip_l2tp(args, socket_path)
            sys.stderr.write(OTHER_COMMANDS)
            return status
        return _ip_l2tp(args, socket_path, direct=direct)
    except iproute.CliError as exc:
        sys.stderr.write(exc.message)
        return exc.status
    except (control.UsageError, top.TopUsage, capture.CaptureUsage) as exc:
        print(f"pyl2tp: {exc}; try \"pyl2tp {args[0]} help\"", file=sys.stderr)
        return 255
    except capture.CaptureError as exc:
        print(f"pyl2tp capture: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
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
