"""xl2tpd as an interoperability peer: configure it, run it in a test namespace, drive it.

xl2tpd (1.3.x, Debian's ``xl2tpd`` package) is the L2TPv2 LAC/LNS most peers meet in the wild,
so tests run it opposite pyl2tp. This module writes its configuration and secrets into a
private temporary directory, starts ``xl2tpd -D`` in a :class:`~tests.support.netns.NetNS`,
keeps its log in a file, talks to it over its control FIFO and stops it again.

Configuration
    :class:`LnsSection`, :class:`LacSection` and :class:`Secret` are plain values;
    :func:`render_config` and :func:`render_secrets` turn them into the two files. The
    ``[global]`` section is written by :class:`Xl2tpd` itself, because ``auth file`` must name
    the secrets file inside its directory.

Secrets
    One ``US THEM SECRET`` line per entry (``*`` matches any name, names compare without case).
    US is our own host name (a section's ``hostname``, else the system host name) and THEM the
    Host Name AVP the peer sent. xl2tpd looks a secret up only when a tunnel challenge is
    involved (``challenge = yes`` on its side, or a Challenge AVP from the peer), and then it
    insists on the peer's Host Name AVP. ``hidden bit = yes`` only adds a Random Vector AVP to
    every message: xl2tpd 1.3.18 hides no AVP. ``#`` and ``;`` start a comment anywhere in a
    line, so secrets cannot contain them.

pppd
    Once a session is established xl2tpd forks ``/usr/sbin/pppd`` (a path compiled in) on a pty.
    Hosts without the kernel's PPP driver (no ``/dev/ppp``) make pppd exit with status 4 at
    once, and xl2tpd then tears the session down with a CDN (Result Code 1, about 10-20 ms
    after the ICCN). ``pppd="stub"`` (the default) keeps sessions up instead: xl2tpd runs in a
    mount namespace of its own in which a small script is bind-mounted over ``/usr/sbin/pppd``.
    The script records its pid and arguments, holds the pty open and copies whatever xl2tpd
    writes to it (PPP frames from the peer, async-HDLC framed) to a file. Nothing outside that
    mount namespace changes. ``pppd="real"`` runs the real pppd.

Control FIFO (``-C``)
    Every command is sent with a result FIFO (``@PATH CMD``), so :meth:`Xl2tpd.command` returns
    xl2tpd's answer (``00 OK``, ``01 ...``) and commands never merge into one read. What the
    commands do on the wire:

    * :meth:`Xl2tpd.dial` (``c NAME``): LAC only. Without a tunnel to the section's ``lns``:
      SCCRQ, SCCRP, SCCCN, then ICRQ, ICRP, ICCN. With one: only ICRQ, ICRP, ICCN.
    * :meth:`Xl2tpd.hangup` (``d NAME``): sends a StopCCN (Result Code 1, error 0, message
      ``"Goodbye!"``) for the section's tunnel and drops its sessions without CDNs.
    * :meth:`Xl2tpd.hangup_call` (``h CALLID``, CALLID = xl2tpd's own, local session id; works
      on LAC and LNS calls): SIGTERMs the call's pppd; its exit makes xl2tpd send a CDN
      (Result Code 1, error 0, message ``"Goodbye!"``). The tunnel stays up.
    * Killing a (stub) pppd, see :meth:`Xl2tpd.pppd_stub_calls`, gives the same CDN without
      the message: what a real pppd's exit does.
    * :meth:`Xl2tpd.stop` with SIGINT sends a StopCCN (Result Code 1, error 0,
      ``"Server closing"``) on every tunnel; SIGTERM (the default) sends nothing.
    * :meth:`Xl2tpd.lns_status` (``y NAME``) and :meth:`Xl2tpd.available` (``x``) only report.

A trap when ending calls quickly: xl2tpd acknowledges call messages (ICCN, CDN) with a ZLB
carrying the call's session id, and a ZLB that names a call the receiving xl2tpd has already
dropped goes down its "unknown call" path, which counts it like a message. That xl2tpd's Nr is
then one ahead, it discards the peer's next control message as a duplicate, and the tunnel
wedges (seen with crossing CDNs, and with ``d`` right after a dial). Wait for the ZLB before
ending a call that was just set up.

Typical use::

    with Xl2tpd(lns_ns, "10.77.1.2", [LnsSection(challenge=True)], [Secret("s3cret")]) as lns, \\
         Xl2tpd(lac_ns, "10.77.1.1", [LacSection("t1", lns="10.77.1.2")], [...]) as lac:
        lac.dial("t1")
        lns.wait_for_log(CALL_ESTABLISHED_LNS)
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self

from .netns import NetNS
from .peerproc import ManagedPeer, skip_or_fail

__all__ = [
    "CALL_ESTABLISHED_LAC",
    "CALL_ESTABLISHED_LNS",
    "CDN_RECEIVED",
    "PPPD",
    "PPPD_EXITED",
    "STOPCCN_RECEIVED",
    "TUNNEL_ESTABLISHED",
    "ControlReply",
    "LacSection",
    "LnsSection",
    "Secret",
    "Xl2tpd",
    "Xl2tpdError",
    "render_config",
    "render_secrets",
    "require_xl2tpd",
    "xl2tpd_binary",
    "xl2tpd_version",
]

#: The pppd xl2tpd starts; the path is compiled into xl2tpd.
PPPD = "/usr/sbin/pppd"

# Log lines of xl2tpd 1.3.18 (``-D`` logs to stderr) worth waiting for; groups name the ids.
# The *_RECEIVED ones need ``debug=True`` (xl2tpd's "debug avp/state", on by default here).
#: Either side, after SCCRP (LAC) or SCCCN (LNS): ``local``/``remote`` are tunnel ids.
TUNNEL_ESTABLISHED = (
    r"Connection established to (?P<peer>\S+), (?P<port>\d+)\.\s+"
    r"Local: (?P<local>\d+), Remote: (?P<remote>\d+)"
)
#: LAC, on sending the ICCN: ``local``/``remote`` are session ids.
CALL_ESTABLISHED_LAC = (
    r"Call established with (?P<peer>\S+), Local: (?P<local>\d+), Remote: (?P<remote>\d+), "
    r"Serial: (?P<serial>\d+)"
)
#: LNS, on receiving the ICCN (after starting pppd, whose ``pid`` it names).
CALL_ESTABLISHED_LNS = (
    r"Call established with (?P<peer>\S+), PID: (?P<pid>\d+), Local: (?P<local>\d+), "
    r"Remote: (?P<remote>\d+), Serial: (?P<serial>\d+)"
)
_RESULT = (
    r"(?:.*\n){0,4}?.*result_code_avp: peer closing for reason (?P<result>\d+) .*, "
    r"error = (?P<error>\d+) \((?P<message>[^\n]*)\)\n"
)
#: A received CDN with its Result Code AVP (``message`` is empty when none was sent).
CDN_RECEIVED = r"message type 14 \(Call-Disconnect-Notify\)\n" + _RESULT
#: A received StopCCN with its Result Code AVP.
STOPCCN_RECEIVED = r"message type 4 \(Stop-Control-Connection-Notification\)\n" + _RESULT
#: pppd (or the stub) of a call ended (``how`` is ``exited``, with an exit ``status``, or
#: ``terminated``, with a signal number); ``call`` is the *peer's* session id of the call. Only
#: logged while the call still exists: a pppd that xl2tpd itself terminated because the call
#: was closed (CDN or StopCCN received, ``d``) is reaped silently.
PPPD_EXITED = (
    r"pppd (?P<how>exited|terminated) for call (?P<call>\d+) (?:with code|by signal) "
    r"(?P<status>\d+)"
)

_READY = re.compile(r"Listening on IP address \S+, port \d+")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class Xl2tpdError(RuntimeError):
    """xl2tpd failed to start, exited, or answered a control command with an error."""


def require_xl2tpd() -> None:
    """Skip a test that needs xl2tpd and pppd when they are missing, or fail it under CI=true
    (CI must exercise the interop tests, never skip them silently)."""
    reason = None
    if xl2tpd_binary() is None:
        reason = "xl2tpd is not installed (apt install xl2tpd)"
    elif not os.path.isfile(PPPD):
        reason = f"{PPPD} is missing (apt install ppp): xl2tpd runs it for every session"
    skip_or_fail(reason)


def xl2tpd_binary() -> str | None:
    """Path of the ``xl2tpd`` executable, None if it is not installed."""
    return shutil.which("xl2tpd") or (
        "/usr/sbin/xl2tpd" if os.access("/usr/sbin/xl2tpd", os.X_OK) else None
    )


def xl2tpd_version() -> str:
    """``xl2tpd -v`` output, e.g. ``xl2tpd-1.3.18`` (the option exits with status 1)."""
    binary = xl2tpd_binary()
    if binary is None:
        raise Xl2tpdError("xl2tpd is not installed")
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    m = re.search(r"xl2tpd-\S+", out.stdout + out.stderr)
    if not m:
        raise Xl2tpdError(f"cannot parse xl2tpd -v output: {out.stdout!r} {out.stderr!r}")
    return m.group(0)


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


@dataclass(frozen=True)
class LnsSection:
    """An ``[lns NAME]`` section: accept tunnels and incoming calls (``default`` takes all).

    ``ip_range``/``local_ip`` are what xl2tpd hands pppd as ``LOCAL:REMOTE`` for each call.
    ``ppp_options`` becomes the section's ``pppoptfile``. ``extra`` adds ``key = value`` lines
    verbatim (see ``man xl2tpd.conf``), e.g. ``{"tunnel rws": "8"}``.
    """

    name: str = "default"
    ip_range: tuple[str, str] = ("10.77.250.10", "10.77.250.99")
    local_ip: str = "10.77.250.1"
    challenge: bool = False
    hidden_bit: bool = False
    hostname: str | None = None
    length_bit: bool = True
    require_authentication: bool = False
    ppp_debug: bool = False
    ppp_options: Sequence[str] = ("noauth",)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> Literal["lns"]:
        return "lns"

    def lines(self) -> list[str]:
        lo, hi = self.ip_range
        out = [
            f"ip range = {lo}-{hi}",
            f"local ip = {self.local_ip}",
            f"challenge = {_yes_no(self.challenge)}",
            f"hidden bit = {_yes_no(self.hidden_bit)}",
            f"require authentication = {_yes_no(self.require_authentication)}",
            f"length bit = {_yes_no(self.length_bit)}",
            f"ppp debug = {_yes_no(self.ppp_debug)}",
        ]
        if self.hostname:
            out.append(f"hostname = {self.hostname}")
        return out


@dataclass(frozen=True)
class LacSection:
    """An ``[lac NAME]`` section: a tunnel to ``lns`` (an address) that :meth:`Xl2tpd.dial`
    brings up on demand (``autodial``/``redial`` off, so nothing happens by itself)."""

    name: str
    lns: str
    challenge: bool = False
    hidden_bit: bool = False
    hostname: str | None = None
    length_bit: bool = True
    redial: bool = False
    autodial: bool = False
    ppp_debug: bool = False
    ppp_options: Sequence[str] = ("noauth",)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> Literal["lac"]:
        return "lac"

    def lines(self) -> list[str]:
        out = [
            f"lns = {self.lns}",
            f"challenge = {_yes_no(self.challenge)}",
            f"hidden bit = {_yes_no(self.hidden_bit)}",
            f"length bit = {_yes_no(self.length_bit)}",
            f"redial = {_yes_no(self.redial)}",
            f"autodial = {_yes_no(self.autodial)}",
            f"ppp debug = {_yes_no(self.ppp_debug)}",
        ]
        if self.hostname:
            out.append(f"hostname = {self.hostname}")
        return out


Section = LnsSection | LacSection


@dataclass(frozen=True)
class Secret:
    """One line of the secrets file; ``us``/``them`` are host names or ``*``."""

    secret: str
    us: str = "*"
    them: str = "*"

    def line(self) -> str:
        for label, value in (("us", self.us), ("them", self.them), ("secret", self.secret)):
            if not value or any(c.isspace() or c in "#;" for c in value):
                raise ValueError(f"secret {label} {value!r}: must be non-empty, no space, # or ;")
        if "!" in self.them:
            # xl2tpd's parser ends the second field at the first character <= '!'.
            raise ValueError(f"secret them {self.them!r}: xl2tpd cannot parse '!' there")
        return f"{self.us} {self.them} {self.secret}"


def render_secrets(secrets: Iterable[Secret]) -> str:
    """The l2tp-secrets file text (first matching line wins)."""
    return "".join(f"{s.line()}\n" for s in secrets)


def render_config(
    listen_addr: str,
    sections: Sequence[Section],
    *,
    auth_file: str,
    pppoptfiles: Mapping[str, str],
    port: int = 1701,
    access_control: bool = False,
    debug: bool = True,
) -> str:
    """The xl2tpd.conf text: ``[global]`` then one block per section.

    ``pppoptfiles`` maps ``"lns NAME"``/``"lac NAME"`` to an options file path. ``debug``
    turns on xl2tpd's avp/network/state/tunnel logging, which the ``*_RECEIVED`` patterns of
    this module rely on.
    """
    g = [
        "[global]",
        f"listen-addr = {listen_addr}",
        f"port = {port}",
        f"auth file = {auth_file}",
        f"access control = {_yes_no(access_control)}",
    ]
    if debug:
        g += [f"debug {what} = yes" for what in ("avp", "network", "state", "tunnel")]
    blocks = ["\n".join(g)]
    seen: set[str] = set()
    for sec in sections:
        if not _NAME_RE.fullmatch(sec.name):
            raise ValueError(f"section name {sec.name!r} is not a plain word")
        key = f"{sec.kind} {sec.name}"
        if key in seen:
            raise ValueError(f"duplicate section [{key}]")
        seen.add(key)
        lines = [f"[{key}]", *sec.lines()]
        if key in pppoptfiles:
            lines.append(f"pppoptfile = {pppoptfiles[key]}")
        lines += [f"{k} = {v}" for k, v in sec.extra.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _stub_script(record: Path, capture_dir: Path) -> str:
    rec = shlex.quote(str(record))
    cap = shlex.quote(str(capture_dir))
    return (
        "#!/bin/sh\n"
        "# pyl2tp test harness: stands in for pppd so that xl2tpd sessions stay up.\n"
        f'echo "$$ $*" >> {rec}\n'
        "stty raw -echo 2>/dev/null\n"
        # cat reports EIO when xl2tpd closes the pty's master side; that is the normal end.
        f"exec cat > {cap}/pppd-stub-$$.in 2>/dev/null\n"
    )


@dataclass(frozen=True)
class ControlReply:
    """xl2tpd's answer to a control command: ``code`` 0 is success."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        return self.code == 0


class Xl2tpd(ManagedPeer):
    """One ``xl2tpd -D`` in ``ns`` (context manager: starts on enter, stops on exit).

    ``start`` creates a private temporary directory (``workdir``) with ``xl2tpd.conf``,
    ``l2tp-secrets``, ``xl2tpd.pid``, the control FIFO ``l2tp-control``, ``xl2tpd.log``
    (stdout and stderr) and one ``ppp-<kind>-<name>.options`` per section; ``close`` removes
    it. Constructing an instance creates nothing. ``debug`` (on by default) enables the log
    lines the ``*_RECEIVED`` patterns match.
    """

    error = Xl2tpdError
    log_title = "xl2tpd log"

    def __init__(
        self,
        ns: NetNS,
        listen_addr: str,
        sections: Sequence[Section],
        secrets: Sequence[Secret] = (),
        *,
        port: int = 1701,
        access_control: bool = False,
        debug: bool = True,
        pppd: Literal["stub", "real"] = "stub",
    ) -> None:
        if pppd not in ("stub", "real"):
            raise ValueError(f"pppd must be 'stub' or 'real', not {pppd!r}")
        super().__init__(ns)
        self.listen_addr = listen_addr
        self.sections = list(sections)
        self.pppd_mode = pppd
        self._seq = 0
        self._secrets_text = render_secrets(secrets)
        self._port, self._access_control, self._debug = port, access_control, debug
        # Render once now so that a bad section fails here, before anything is created.
        self._render_config("/dev/null", {})
        # Set by start(), which creates the files; close() removes them.
        self.conf_path: Path
        self.secrets_path: Path
        self.pid_path: Path
        self.control_path: Path
        self.stub_record: Path

    def _render_config(self, auth_file: str, pppoptfiles: Mapping[str, str]) -> str:
        return render_config(
            self.listen_addr,
            self.sections,
            auth_file=auth_file,
            pppoptfiles=pppoptfiles,
            port=self._port,
            access_control=self._access_control,
            debug=self._debug,
        )

    def _prepare(self) -> None:
        self._make_workdir("xl2tpd")
        self.conf_path = self.workdir / "xl2tpd.conf"
        self.secrets_path = self.workdir / "l2tp-secrets"
        self.pid_path = self.workdir / "xl2tpd.pid"
        self.control_path = self.workdir / "l2tp-control"
        self.log_path = self.workdir / "xl2tpd.log"
        self.stub_record = self.workdir / "pppd-stub.calls"
        optfiles: dict[str, str] = {}
        for sec in self.sections:
            path = self.workdir / f"ppp-{sec.kind}-{sec.name}.options"
            path.write_text("".join(f"{opt}\n" for opt in sec.ppp_options))
            optfiles[f"{sec.kind} {sec.name}"] = str(path)
        self.secrets_path.write_text(self._secrets_text)
        self.secrets_path.chmod(0o600)
        self.conf_path.write_text(self._render_config(str(self.secrets_path), optfiles))

    def __repr__(self) -> str:
        return f"<Xl2tpd {self.ns.name} {self.listen_addr} pppd={self.pppd_mode}>"

    # -- lifetime ---------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        """The command run inside the namespace (stub mode wraps it in a mount namespace)."""
        binary = xl2tpd_binary()
        if binary is None:
            raise Xl2tpdError("xl2tpd is not installed")
        cmd = [
            binary, "-D",
            "-c", str(self.conf_path),
            "-s", str(self.secrets_path),
            "-p", str(self.pid_path),
            "-C", str(self.control_path),
        ]  # fmt: skip
        if self.pppd_mode == "real":
            return cmd
        if not os.path.isfile(PPPD):
            raise Xl2tpdError(f"pppd='stub' bind-mounts over {PPPD}, which must exist (ppp)")
        stub = self.workdir / "pppd-stub"
        stub.write_text(_stub_script(self.stub_record, self.workdir))
        stub.chmod(0o755)
        # A private mount namespace: the bind mount is invisible to the host and disappears
        # with the last process in it.
        script = 'mount --bind "$0" "$1" && shift && exec "$@"'
        return [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", script, str(stub), PPPD, *cmd,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> Self:
        """Start xl2tpd and wait until it listens and its control FIFO exists."""
        self._check_startable()
        self._prepare()
        proc = self._spawn(self._argv(), self.log_path)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise Xl2tpdError(f"{self!r} exited with {proc.returncode} on start:\n{self.log()}")
            if _READY.search(self.log()) and self.control_path.exists():
                return self
            if time.monotonic() >= deadline:
                self.stop(signal.SIGKILL)
                raise Xl2tpdError(f"{self!r} not ready after {timeout:g}s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Signal xl2tpd, wait for it, then end the pppd processes it left behind.

        SIGTERM exits at once without telling peers (userspace mode); SIGINT first sends a
        StopCCN (Result Code 1, error 0, "Server closing") on every tunnel. Returns the exit
        status (xl2tpd exits with 1 on either signal).
        """
        return super().stop(sig, timeout)

    def _after_stop(self, pid: int) -> None:
        # xl2tpd does not end its pppds when it dies; they share its process group.
        _end_group_members(pid)

    # -- pppd ---------------------------------------------------------------------------------

    def pppd_stub_calls(self) -> list[tuple[int, list[str]]]:
        """``(pid, argv[1:])`` of every stub pppd started so far (stub mode), oldest first.

        ``argv[0]`` of those arguments is the pty; the ``LOCAL:REMOTE`` address pair and
        ``file <pppoptfile>`` follow. Kill a pid to simulate pppd dying (xl2tpd sends a CDN).
        """
        try:
            text = self.stub_record.read_text()
        except FileNotFoundError:
            return []
        calls = []
        for line in text.splitlines():
            pid, _, args = line.partition(" ")
            calls.append((int(pid), args.split()))
        return calls

    def pppd_stub_input(self, pid: int) -> bytes:
        """What xl2tpd wrote to stub ``pid``'s pty: the peer's PPP frames, async-HDLC framed."""
        try:
            return (self.workdir / f"pppd-stub-{pid}.in").read_bytes()
        except FileNotFoundError:
            return b""

    # -- the control FIFO --------------------------------------------------------------------

    def command(self, line: str, timeout: float = 5.0) -> ControlReply:
        """Send one control command and return xl2tpd's reply (``NN text`` lines)."""
        if "\n" in line or not line:
            raise ValueError("one non-empty command line, please")
        if not self.alive():
            raise Xl2tpdError(f"{self!r} is not running:\n{self.log()}")
        self._seq += 1
        result = self.workdir / f"reply-{self._seq}"
        os.mkfifo(result, 0o600)
        rfd = os.open(result, os.O_RDONLY | os.O_NONBLOCK)
        try:
            try:
                wfd = os.open(self.control_path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                raise Xl2tpdError(f"cannot open {self.control_path}: {exc}") from None
            try:
                os.write(wfd, f"@{result} {line}\n".encode())
            finally:
                os.close(wfd)
            text = _read_until_writer_closes(rfd, timeout)
        finally:
            os.close(rfd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(result)
        if text is None:
            raise Xl2tpdError(f"no reply to {line!r} within {timeout:g}s:\n{self.log()}")
        m = re.match(r"(\d+) ", text)
        return ControlReply(int(m.group(1)) if m else 0, text.strip())

    def _checked(self, line: str) -> ControlReply:
        reply = self.command(line)
        if not reply.ok:
            raise Xl2tpdError(f"xl2tpd refused {line!r}: {reply.text}")
        return reply

    def dial(self, lac_name: str) -> ControlReply:
        """``c NAME``: bring up the LAC section's tunnel if needed, then one incoming call
        (ICRQ/ICRP/ICCN). Raises if xl2tpd refuses (unknown section, call already up)."""
        return self._checked(f"c {lac_name}")

    def hangup(self, lac_name: str) -> ControlReply:
        """``d NAME``: StopCCN (Result Code 1, "Goodbye!") on the LAC section's tunnel; its
        sessions go with it, without CDNs. Raises if the section has no tunnel."""
        return self._checked(f"d {lac_name}")

    def hangup_call(self, call_id: int) -> ControlReply:
        """``h CALLID``: end one call by xl2tpd's *local* session id: xl2tpd SIGTERMs its pppd
        and sends a CDN when it exits. xl2tpd answers OK even for an unknown id."""
        return self._checked(f"h {call_id}")

    def lns_status(self, lns_name: str = "default") -> dict[str, str]:
        """``y NAME``: the LNS section's tunnels and calls as ``key -> value``
        (``tunnels.0.id`` is the peer's tunnel id, ``tunnels.0.calls.0.id`` our session id)."""
        reply = self._checked(f"y {lns_name}")
        return dict(re.findall(r"STATUS (\S+)=(\S*)", reply.text))

    def available(self) -> ControlReply:
        """``x``: the configured sections and the tunnel and call counts."""
        return self._checked("x")


def _read_until_writer_closes(fd: int, timeout: float) -> str | None:
    """Read a FIFO until its writer has come and gone (POLLHUP); None on timeout."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        events = poller.poll(max(1, int(left * 1000)))
        for _, ev in events:
            if ev & select.POLLIN:
                data = os.read(fd, 65536)
                if data:
                    chunks.append(data)
                    continue
            if ev & select.POLLHUP:
                while data := os.read(fd, 65536):
                    chunks.append(data)
                return b"".join(chunks).decode(errors="replace")


def _end_group_members(pgid: int) -> None:
    """SIGKILL the processes still in process group ``pgid`` (the pppds of a dead xl2tpd).

    Found by scanning /proc, and signalled one by one by pid.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        # After the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
