"""xl2tpd + the real pppd inside the reference-kernel VM, as PPP peers for pyl2tp.

The host kernel has no PPP, so a real pppd (and xl2tpd in front of it, on the kernel's
PPPoL2TP data path) only runs in the guest of :mod:`tests.support.kernelvm`. This module writes
the guest shell scripts; :func:`tests.support.kernelvm.run_guest` runs them:

* :func:`lac_script` -- xl2tpd as a LAC that dials ``lns`` at once (``autodial``), pppd as the
  PPP client (``noauth``: it never asks the peer to authenticate; it answers exactly one
  authentication method, ``auth``, and refuses the others).
* :func:`lns_script` -- xl2tpd as an LNS on ``listen_addr``, pppd requiring ``auth`` from the
  client against ``users`` (``/etc/ppp/pap-secrets`` and ``chap-secrets``).

Each one waits (bounded) until its PPP interface has IPv4 addresses, optionally until IPV6CP is
up too, runs the caller's shell ``commands`` with the session's details in environment
variables, then tears the session down and prints pppd's and xl2tpd's logs. Everything the
script learns is printed as marker lines that :func:`parse_markers` turns into a dict::

    res = run_guest(lac_script(eth0="10.201.7.2/24", lns="10.201.7.1", user="alice",
                               password="s3cret", auth="chap-md5", ipv6=True,
                               commands=ping_checks(ipv6=True)),
                    tap=tap, netns=ns.name, tap_addr="10.201.7.1/24", timeout=180).check()
    m = parse_markers(res.output)
    assert "PPP-UP" in m and "PING4-OK" in m, res.output

Composition
    A script is :func:`prelude` (modules, directories, ``eth0``, shell helpers) followed by one
    or more *fragments* (:func:`lac_fragment`, :func:`lns_fragment`). A fragment is one
    ``( ... )`` subshell with its own ``tag`` (a word): its files live in ``/tmp/pppvm/TAG``,
    its marker lines carry ``tag=TAG`` and its log lines start with ``|TAG pppd|`` or
    ``|TAG xl2tpd|``. :func:`combine` runs several fragments concurrently (each one's output
    is buffered and printed whole, in argument order, once all have finished); a LAC fragment
    can wait for an LNS fragment's xl2tpd (``wait_ready``) and each can hold its session until
    the other has run its commands (``wait_done``). Several ``combine()`` blocks in one script
    run one after the other. This is how the harness test runs an LNS and a LAC against each
    other on the guest's loopback, several authentication methods at once, in ONE boot.

Marker lines (``@@NAME tag=TAG key=value ...``, values without spaces)
    ``PPPVM-START role=lac|lns``; ``XL2TPD-READY`` or ``XL2TPD-FAIL``; then either
    ``PPP-UP iface= local= peer= secs= [dns1= dns2=]`` or ``PPP-FAIL reason=... secs=
    [pppd_status=]`` with reason ``timeout``, ``pppd-exited`` (authentication failure, LCP
    failure, ...), ``xl2tpd-exited``, ``tunnel-retries`` (the LAC's SCCRQ went unanswered:
    xl2tpd gives up after 5 retransmissions, ~32 s) or ``tunnel-closed`` (LAC only: StopCCN
    from the LNS, or a tunnel authentication failure);
    with ``ipv6=True`` also ``PPP6-UP local6= peer6=`` or ``PPP6-FAIL``; whatever the
    commands print with ``pppvm_check NAME cmd...`` (``NAME-OK`` or ``NAME-FAIL rc=``) or
    ``pppvm_mark NAME key=value...``; ``TEARDOWN mode= pppd_exit_secs= [pppd_killed=yes]``; ``LOG
    source=...`` before each log dump; ``PPPVM-END up=yes|no``. ``secs`` count from xl2tpd's
    start (guest clock, which runs slow: never assert on it). pppd's exit status
    (``pppd_status``) comes from xl2tpd's log: 19 = we failed to authenticate to the peer,
    11 = the peer failed to authenticate to us, 16 = the link went down (``man pppd``).

A script exits 0 when the harness worked, whatever happened to PPP (read the markers); 90 when
a module does not load, 91/92 when the guest's directories or ``eth0`` cannot be set up, 93 when
a fragment's xl2tpd did not start.

Commands (``commands=``) run in a subshell after ``PPP-UP`` (never after ``PPP-FAIL``), with
``PPP_IFACE``, ``PPP_LOCAL``, ``PPP_PEER`` (IPv4) and, once IPV6CP is up, ``PPP_LOCAL6`` and
``PPP_PEER6`` (link-local, use ``"$PPP_PEER6%$PPP_IFACE"``) set. :func:`ping_checks` writes the
usual pings. ``pppvm_check`` prints the command's output as ``|TAG NAME| ...`` lines.

The guest
    Its filesystem is a copy-on-write view of the host's: the scripts overwrite the guest's
    ``/etc/ppp/options`` (Debian's has ``auth``, ``lock``, ``crtscts``, ``modem``, LCP echoes
    every 30 s: none of that is wanted here), ``pap-secrets`` and ``chap-secrets`` without
    touching the host. pppd's ip-up and ip-down scripts are replaced by ``/bin/true``
    (Debian's would run ``run-parts`` over the host's hooks). The only link out
    of the guest is ``eth0`` (the tap, when ``run_guest`` is given one), configured with
    ``eth0`` and ``routes`` and with IPv6 off, so nothing is sent but IPv4 to the tap's
    subnet; pppd gets ``nodefaultroute`` and never ``usepeerdns`` writes (the ip-up hook that
    would apply them is the no-op).

What xl2tpd hands pppd (xl2tpd 1.3.18, Debian, kernel mode since ``l2tp_ppp`` is loaded)
    LNS: ``pppd plugin pppol2tp.so pppol2tp FD pppol2tp_lns_mode pppol2tp_tunnel_id T
    pppol2tp_session_id S passive nodetach LOCAL:REMOTE name NAME file OPTIONS``;
    LAC: ``pppd plugin pppol2tp.so pppol2tp FD passive nodetach : file OPTIONS``. The options
    file comes last, so it overrides the rest. xl2tpd's own ``require authentication``,
    ``require chap`` etc. only add pppd options (``auth``, ``require-chap``, ...); they have
    nothing to do with L2TP tunnel authentication, which is ``challenge`` plus the
    l2tp-secrets file (``tunnel_secret`` here).

What a peer of these scripts sees (pppd 2.4.9 with the pppol2tp plugin, checked in the guest)
    * L2TP data goes through the guest kernel's PPPoL2TP (xl2tpd reports "Using l2tp kernel
      support"); xl2tpd's SCCRQ carries Framing Capabilities (async+sync), an empty Bearer
      Capabilities, Firmware Revision 1680, Host Name, Vendor Name ``xelerance.com``,
      Assigned Tunnel ID and Receive Window Size 4 (plus Challenge with a tunnel secret).
    * LCP: each side sends its Configure-Request at once (``passive`` only matters if the
      peer stays silent): ``<asyncmap 0x0> <magic X>`` -- no MRU (so 1500), no ACFC/PFC (the
      plugin turns them off, and VJ and deflate/BSD with them: no CCP is ever started); the
      LNS adds ``<auth pap>``, ``<auth chap MD5>`` or ``<auth chap MS-v2>``. The LAC's pppd
      never asks the peer to authenticate. No LCP echoes unless ``ppp_options`` ask for them.
    * Authentication: CHAP/MS-CHAPv2 challenges are 16 bytes, named ``ppp_name``;
      MS-CHAPv2 Success is ``S=<40 hex> M=Access granted`` (pppd checks the authenticator
      response), Failure ``E=691 R=1 C=<challenge> V=0 M=Access denied``; PAP answers
      ``Login ok`` / ``Login incorrect``. After a failure both sides send LCP
      Terminate-Request ("Authentication failed" / "Failed to authenticate ourselves to
      peer").
    * IPCP: the LAC asks for ``<addr 0.0.0.0>`` (plus ``<ms-dns1 0.0.0.0> <ms-dns2
      0.0.0.0>`` with ``usepeerdns``) and takes what the Configure-Nak gives; the LNS sends
      ``<addr LOCAL>`` only and Naks the client's 0.0.0.0 with its address (and ``ms-dns``).
    * IPV6CP (``ipv6=True``): ``<addr fe80::RANDOM-ID>`` from each side, acked as is; with
      ``ipv6=False`` pppd answers IPV6CP with an LCP Protocol-Reject.
    * Teardown ``ppp``: LCP Terminate-Request "User request" (retried every 3 s, twice, when
      unanswered), then xl2tpd's CDN, then StopCCN (LAC: Result Code 1 "Goodbye!"; LNS:
      "Server closing").
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .kernelvm import modprobe_lines, require_vm

__all__ = [
    "AUTH_METHODS",
    "GUEST_ROOT",
    "PPP_MODULES",
    "TEARDOWN_MODES",
    "combine",
    "guest_log",
    "lac_fragment",
    "lac_script",
    "lns_fragment",
    "lns_script",
    "parse_all_markers",
    "parse_markers",
    "ping_checks",
    "prelude",
    "require_pppd_vm",
]

#: PPP authentication methods the scripts configure (``none``: no PPP authentication at all).
AUTH_METHODS = ("none", "pap", "chap-md5", "mschap-v2")
#: Modules for PPP over the kernel's L2TP (``l2tp_ppp`` makes xl2tpd use the kernel data path).
PPP_MODULES = (
    "ppp_generic",
    "pppox",
    "l2tp_core",
    "l2tp_netlink",
    "l2tp_ppp",
    "ppp_async",
    "ppp_synctty",
)
#: How a fragment ends its session: ``ppp`` -- SIGTERM pppd (LCP Terminate-Request, then
#: xl2tpd's CDN), then the tunnel (StopCCN); ``tunnel`` -- StopCCN at once (xl2tpd then
#: SIGTERMs pppd, whose Terminate-Requests go nowhere: it exits after ~6 s of retries).
TEARDOWN_MODES = ("ppp", "tunnel")
#: Where fragments keep their files in the guest (guest memory only).
GUEST_ROOT = "/tmp/pppvm"

_TAG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,19}")
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_MARKER_RE = re.compile(r"^@@([A-Za-z0-9_.-]+)((?: +[A-Za-z0-9_]+=\S*)*) *$")
_EOF = "PPPVM_EOF"

# Client side: the options that leave exactly one way to authenticate to the peer.
_REFUSE = {
    "none": ("refuse-pap", "refuse-chap", "refuse-mschap", "refuse-mschap-v2", "refuse-eap"),
    "pap": ("refuse-chap", "refuse-mschap", "refuse-mschap-v2", "refuse-eap"),
    "chap-md5": ("refuse-pap", "refuse-mschap", "refuse-mschap-v2", "refuse-eap"),
    "mschap-v2": ("refuse-pap", "refuse-chap", "refuse-mschap", "refuse-eap"),
}
# Server side: what pppd demands of the peer.
_REQUIRE = {
    "none": ("noauth",),
    "pap": ("auth", "require-pap"),
    "chap-md5": ("auth", "require-chap"),
    "mschap-v2": ("auth", "require-mschap-v2"),
}
# pppd's IPv4 hook scripts; the defaults run the host's /etc/ppp/ip-up.d hooks in the guest
# (one of them would apply usepeerdns). pppd 2.4.9 has no such options for ip-pre-up, ipv6-up
# and ipv6-down, which run Debian's scripts (run-parts over the empty ipv6-*.d directories).
_NO_HOOKS = ("ip-up-script /bin/true", "ip-down-script /bin/true")

# Shell helpers every fragment relies on. POSIX sh (the guest runs dash).
_HELPERS = r"""
pppvm_now() { cut -d' ' -f1 /proc/uptime; }
pppvm_isecs() { cut -d. -f1 /proc/uptime; }
pppvm_since() { awk -v a="$1" -v b="$(pppvm_now)" 'BEGIN { printf "%.1f", b - a }'; }
pppvm_mark() { _pm_n=$1; shift; echo "@@$_pm_n tag=$PPPVM_TAG${*:+ $*}"; }
# pppvm_check NAME CMD...: run CMD, print its output as "|TAG NAME| ..." and NAME-OK/NAME-FAIL.
pppvm_check() {
  _pc_n=$1; shift
  _pc_o=$("$@" 2>&1); _pc_rc=$?
  [ -n "$_pc_o" ] && printf '%s\n' "$_pc_o" | sed "s/^/|$PPPVM_TAG $_pc_n| /"
  if [ "$_pc_rc" -eq 0 ]; then pppvm_mark "$_pc_n-OK"
  else pppvm_mark "$_pc_n-FAIL" "rc=$_pc_rc"; fi
  return "$_pc_rc"
}
# pppvm_wait_file PATH SECONDS: wait until PATH exists; status 1 on timeout.
pppvm_wait_file() {
  _wf_end=$(( $(pppvm_isecs) + $2 ))
  while [ ! -e "$1" ]; do
    [ "$(pppvm_isecs)" -ge "$_wf_end" ] && return 1
    sleep 0.2
  done
}
# Pids of this fragment's pppd processes: those whose command line names its options file.
# The [i] keeps grep from matching its own command line.
pppvm_pppd_pids() { grep -las "$PPPVM_DIR/pppd.opt[i]ons" /proc/[0-9]*/cmdline | cut -d/ -f3; }
# pppvm_wait_gone SECONDS: wait until this fragment's pppd processes have exited.
pppvm_wait_gone() {
  _wg_end=$(( $(pppvm_isecs) + $1 ))
  while [ -n "$(pppvm_pppd_pids)" ]; do
    [ "$(pppvm_isecs)" -ge "$_wg_end" ] && return 1
    sleep 0.2
  done
}
pppvm_pppd_log() { sed -n "s/^$1 *//p" "$PPPVM_DIR/pppd.log" 2>/dev/null | tail -n 1; }
pppvm_dump() {
  for _d_src in pppd xl2tpd; do
    pppvm_mark LOG "source=$_d_src"
    [ -f "$PPPVM_DIR/$_d_src.log" ] && tail -n "$PPPVM_LOG_LINES" "$PPPVM_DIR/$_d_src.log" \
      | sed "s/^/|$PPPVM_TAG $_d_src| /"
  done
  :
}
# pppvm_session ROLE SECTION WAIT IPV6WAIT DONEWAIT TEARDOWN [TAG...]: start xl2tpd, wait for
# PPP, run pppvm_commands, wait for the other TAGs' commands, tear down, dump the logs.
pppvm_session() {
  _s_role=$1 _s_sec=$2 _s_wait=$3 _s_w6=$4 _s_wd=$5 _s_td_mode=$6; shift 6
  _s_t0=$(pppvm_now)
  xl2tpd -D -c "$PPPVM_DIR/xl2tpd.conf" -s "$PPPVM_DIR/l2tp-secrets" -p "$PPPVM_DIR/xl2tpd.pid" \
    -C "$PPPVM_DIR/l2tp-control" > "$PPPVM_DIR/xl2tpd.log" 2>&1 &
  _s_x=$!
  _s_ok=
  for _s_i in $(seq 1 50); do
    if grep -q 'Listening on IP address' "$PPPVM_DIR/xl2tpd.log" \
        && [ -p "$PPPVM_DIR/l2tp-control" ]; then
      _s_ok=1; break
    fi
    kill -0 "$_s_x" 2>/dev/null || break
    sleep 0.2
  done
  if [ -z "$_s_ok" ]; then
    pppvm_mark XL2TPD-FAIL
    kill -9 "$_s_x" 2>/dev/null
    touch "$PPPVM_DIR/ready" "$PPPVM_DIR/done"
    pppvm_dump; pppvm_mark PPPVM-END up=no
    return 93
  fi
  touch "$PPPVM_DIR/ready"
  pppvm_mark XL2TPD-READY "pid=$_s_x"
  _s_end=$(( ${_s_t0%.*} + _s_wait ))
  _s_up= _s_why=
  while :; do
    if grep -q '^remote IP address' "$PPPVM_DIR/pppd.log" 2>/dev/null; then _s_up=yes; break; fi
    # pppd opens its log first thing, so a log without a pppd means pppd has exited.
    if [ -f "$PPPVM_DIR/pppd.log" ] && [ -z "$(pppvm_pppd_pids)" ]; then
      grep -q '^remote IP address' "$PPPVM_DIR/pppd.log" && { _s_up=yes; break; }
      _s_why=pppd-exited; break
    fi
    kill -0 "$_s_x" 2>/dev/null || { _s_why=xl2tpd-exited; break; }
    grep -q 'Maximum retries exceeded' "$PPPVM_DIR/xl2tpd.log" && { _s_why=tunnel-retries; break; }
    # A LAC never redials: its tunnel closing (StopCCN, failed tunnel authentication) is final.
    if [ "$_s_role" = lac ] \
        && grep -q 'Connection [0-9 ]*closed to [^,]*, port' "$PPPVM_DIR/xl2tpd.log"; then
      _s_why=tunnel-closed; break
    fi
    [ "$(pppvm_isecs)" -ge "$_s_end" ] && { _s_why=timeout; break; }
    sleep 0.3
  done
  if [ -n "$_s_up" ]; then
    PPP_IFACE=$(pppvm_pppd_log 'Using interface')
    PPP_LOCAL=$(pppvm_pppd_log 'local  *IP address')
    PPP_PEER=$(pppvm_pppd_log 'remote IP address')
    _s_dns1=$(pppvm_pppd_log 'primary  *DNS address')
    _s_dns2=$(pppvm_pppd_log 'secondary DNS address')
    PPP_LOCAL6= PPP_PEER6=
    export PPP_IFACE PPP_LOCAL PPP_PEER PPP_LOCAL6 PPP_PEER6
    pppvm_mark PPP-UP "role=$_s_role" "iface=$PPP_IFACE" "local=$PPP_LOCAL" "peer=$PPP_PEER" \
      "secs=$(pppvm_since "$_s_t0")" ${_s_dns1:+"dns1=$_s_dns1"} ${_s_dns2:+"dns2=$_s_dns2"}
    if [ "$_s_w6" -gt 0 ]; then
      _s_end6=$(( $(pppvm_isecs) + _s_w6 ))
      while ! grep -q '^remote LL address' "$PPPVM_DIR/pppd.log"; do
        [ "$(pppvm_isecs)" -ge "$_s_end6" ] && break
        [ -z "$(pppvm_pppd_pids)" ] && break
        sleep 0.2
      done
      PPP_LOCAL6=$(pppvm_pppd_log 'local  *LL address')
      PPP_PEER6=$(pppvm_pppd_log 'remote LL address')
      if [ -n "$PPP_PEER6" ]; then
        pppvm_mark PPP6-UP "local6=$PPP_LOCAL6" "peer6=$PPP_PEER6" "secs=$(pppvm_since "$_s_t0")"
      else
        pppvm_mark PPP6-FAIL "secs=$(pppvm_since "$_s_t0")"
      fi
    fi
    ( pppvm_commands )
  else
    _s_st=$(sed -n 's/.*pppd exited for call [0-9]* with code \([0-9]*\).*/\1/p' \
      "$PPPVM_DIR/xl2tpd.log" | tail -n 1)
    pppvm_mark PPP-FAIL "role=$_s_role" "reason=$_s_why" "secs=$(pppvm_since "$_s_t0")" \
      ${_s_st:+"pppd_status=$_s_st"}
  fi
  touch "$PPPVM_DIR/done"
  for _s_tag in "$@"; do
    pppvm_wait_file "$PPPVM_ROOT/$_s_tag/done" "$_s_wd" || pppvm_mark WAIT-FAIL "for=$_s_tag"
  done
  _s_td=$(pppvm_now)
  if [ "$_s_td_mode" = ppp ] && [ -n "$(pppvm_pppd_pids)" ]; then
    # pppd ends the link (LCP Terminate-Request), exits, and xl2tpd sends a CDN.
    kill -TERM $(pppvm_pppd_pids) 2>/dev/null
    pppvm_wait_gone 10
    sleep 0.5
  fi
  if [ "$_s_role" = lac ]; then
    # "d NAME": StopCCN to the LNS; xl2tpd SIGTERMs a pppd still running. (timeout: a FIFO
    # whose reader died would block the writer forever.)
    timeout 5 sh -c 'echo "d $1" > "$2"' sh "$_s_sec" "$PPPVM_DIR/l2tp-control" 2>/dev/null
  else
    # SIGINT: StopCCN ("Server closing") on every tunnel, then xl2tpd exits.
    kill -INT "$_s_x" 2>/dev/null
  fi
  pppvm_wait_gone 10
  _s_left=$(pppvm_pppd_pids)
  _s_pe=$(pppvm_since "$_s_td")
  # Give the StopCCN its acknowledgement before xl2tpd goes.
  [ "$_s_role" = lac ] && sleep 1
  kill -TERM "$_s_x" 2>/dev/null
  for _s_i in $(seq 1 25); do kill -0 "$_s_x" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$_s_x" 2>/dev/null
  if [ -n "$_s_left" ]; then
    kill -TERM $_s_left 2>/dev/null; sleep 1; kill -9 $_s_left 2>/dev/null
  fi
  wait "$_s_x" 2>/dev/null
  pppvm_mark TEARDOWN "mode=$_s_td_mode" "pppd_exit_secs=$_s_pe" ${_s_left:+pppd_killed=yes}
  pppvm_dump
  pppvm_mark PPPVM-END "up=${_s_up:-no}"
  return 0
}
"""


# -- validation and quoting ----------------------------------------------------------------------


def _tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag):
        raise ValueError(f"tag {tag!r} must be 1-20 chars of [a-z0-9-]")
    return tag


def _word(label: str, value: str) -> str:
    if not _WORD_RE.fullmatch(value):
        raise ValueError(f"{label} {value!r} must be a plain word ([A-Za-z0-9_.-])")
    return value


def _ipv4(label: str, value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{label} {value!r} is not an IPv4 address") from None


def _port(label: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{label} {value} is not a port")
    return value


def _auth(auth: str) -> str:
    if auth not in AUTH_METHODS:
        raise ValueError(f"auth {auth!r} must be one of {', '.join(AUTH_METHODS)}")
    return auth


def _ppp_quote(value: str) -> str:
    """A pppd options/secrets file word: double-quoted, backslash escapes (pppd's getword)."""
    if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{value!r}: must be non-empty without control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _xl2tpd_value(label: str, value: str) -> str:
    if not value or ";" in value or "\n" in value or value != value.strip():
        raise ValueError(f"{label} {value!r}: no ';', newline or surrounding spaces")
    return value


def _xl2tpd_extra(options: Mapping[str, str] | None) -> list[str]:
    return [
        f"{_xl2tpd_value('key', k)} = {_xl2tpd_value('value', v)}"
        for k, v in (options or {}).items()
    ]


def _ifname(ifname: str | None) -> str | None:
    if ifname is not None and not _IFNAME_RE.fullmatch(ifname):
        raise ValueError(f"invalid interface name {ifname!r}")
    return ifname


def _heredoc(path: str, text: str, *, append: bool = False, mode: str | None = None) -> str:
    if any(line == _EOF for line in text.splitlines()):
        raise ValueError(f"file text must not contain a line {_EOF!r}")
    op = ">>" if append else ">"
    out = f"cat {op} {path} <<'{_EOF}'\n{text}{_EOF}\n"
    if mode:
        out += f"chmod {mode} {path}\n"
    return out


def _lines(items: Iterable[str]) -> str:
    return "".join(f"{item}\n" for item in items)


# -- the script parts ----------------------------------------------------------------------------


def require_pppd_vm() -> None:
    """:func:`~tests.support.kernelvm.require_vm`, plus the host's xl2tpd and pppd, which the
    guest runs."""
    missing = None
    if shutil.which("xl2tpd") is None and not os.access("/usr/sbin/xl2tpd", os.X_OK):
        missing = "the guest runs the host's xl2tpd, which is not installed (apt install xl2tpd)"
    elif not os.access("/usr/sbin/pppd", os.X_OK):
        missing = "the guest runs the host's pppd, which is not installed (apt install ppp)"
    require_vm(missing)


def prelude(
    *,
    eth0: str | None = None,
    routes: Sequence[str] = (),
    mppe: bool = False,
    extra_modules: Sequence[str] = (),
    log_lines: int = 200,
) -> str:
    """Guest setup every script starts with.

    Loads :data:`PPP_MODULES` (plus ``ppp_mppe`` with ``mppe`` -- only needed for pppd's
    ``require-mppe``; MS-CHAPv2 itself does without -- and ``extra_modules``; the guest
    cannot auto-load modules, but compressors would change nothing: pppd's pppol2tp plugin
    turns off deflate, BSD and VJ compression, ACFC and PFC, so pppd never starts CCP even
    with ``ppp_deflate``, ``bsd_comp`` and ``ppp_mppe`` loaded), creates the directories,
    replaces ``/etc/ppp/options`` and empties the secrets files (guest copies only), brings
    up ``lo`` and, given ``eth0`` (an ``ADDRESS/PREFIX``), configures the tap link with IPv6
    disabled; ``routes`` are ``ip route add`` arguments (``"10.202.1.0/24 via 10.201.7.1"``).
    Defines the shell helpers.
    """
    modules = [*PPP_MODULES, *(("ppp_mppe",) if mppe else ()), *extra_modules]
    for m in modules:
        _word("module", m)
    out = [
        "# ---- pppvm prelude ----\n",
        modprobe_lines(modules, fail_status=90),
        f"PPPVM_ROOT={GUEST_ROOT}\n",
        f"PPPVM_LOG_LINES={int(log_lines)}\n",
        "PPPVM_TAG=prelude\n",
        'mkdir -p "$PPPVM_ROOT" /etc/ppp || exit 91\n',
        "printf '# pyl2tp pppvm: the host options file is not used\\n' > /etc/ppp/options "
        "|| exit 91\n",
        ": > /etc/ppp/pap-secrets && : > /etc/ppp/chap-secrets || exit 91\n",
        "chmod 600 /etc/ppp/pap-secrets /etc/ppp/chap-secrets\n",
        "ip link set lo up\n",
    ]
    if eth0 is not None:
        iface = ipaddress.ip_interface(eth0)
        if iface.version != 4 or iface.network.prefixlen == 32:
            raise ValueError(f"eth0 {eth0!r} must be an IPv4 ADDRESS/PREFIX")
        out += [
            "echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null\n",
            f"ip addr add {iface.with_prefixlen} dev eth0 || exit 92\n",
            "ip link set eth0 up || exit 92\n",
        ]
    for r in routes:
        out.append(f"ip route add {shlex.join(r.split())} || exit 92\n")
    out.append(_HELPERS)
    out.append("# ---- end of prelude ----\n")
    return "".join(out)


def _xl2tpd_global(listen_addr: str, port: int, debug: bool) -> list[str]:
    g = [
        "[global]",
        f"listen-addr = {_ipv4('listen_addr', listen_addr)}",
        f"port = {_port('port', port)}",
        "access control = no",
    ]
    if debug:
        g += [f"debug {what} = yes" for what in ("avp", "network", "state", "tunnel")]
    return g


def _fragment(
    *,
    tag: str,
    role: str,
    section: str,
    conf: list[str],
    ppp_options: list[str],
    l2tp_secret_lines: list[str],
    setup: str,
    commands: str,
    wait: float,
    ipv6_wait: float,
    wait_ready: Sequence[str],
    wait_done: Sequence[str],
    done_wait: float,
    teardown: str,
) -> str:
    if teardown not in TEARDOWN_MODES:
        raise ValueError(f"teardown {teardown!r} must be one of {', '.join(TEARDOWN_MODES)}")
    for t in (*wait_ready, *wait_done):
        _tag(t)
    body = [
        f"# ---- pppvm {role} fragment {tag} ----\n",
        "(\n",
        f"PPPVM_TAG={tag}\n",
        'PPPVM_DIR="$PPPVM_ROOT/$PPPVM_TAG"\n',
        'mkdir -p "$PPPVM_DIR" || exit 91\n',
        _heredoc('"$PPPVM_DIR/xl2tpd.conf"', _lines(conf)),
        _heredoc('"$PPPVM_DIR/pppd.options"', _lines(ppp_options)),
        _heredoc('"$PPPVM_DIR/l2tp-secrets"', _lines(l2tp_secret_lines), mode="600"),
        setup,
        f"pppvm_mark PPPVM-START role={role}\n",
    ]
    for t in wait_ready:
        body.append(f'pppvm_wait_file "$PPPVM_ROOT/{t}/ready" 30 || pppvm_mark WAIT-FAIL for={t}\n')
    body += [
        "pppvm_commands() {\n",
        commands.rstrip("\n") + "\n" if commands.strip() else "",
        ":\n}\n",
        f"pppvm_session {role} {section} {max(1, int(wait))} {int(ipv6_wait)} "
        f"{max(1, int(done_wait))} {teardown} {' '.join(wait_done)}\n",
        ")\n",
    ]
    return "".join(body)


def lac_fragment(
    *,
    lns: str,
    user: str,
    password: str,
    auth: str,
    tag: str = "lac",
    lns_port: int = 1701,
    listen_addr: str = "0.0.0.0",
    port: int = 1701,
    ipv6: bool = False,
    usepeerdns: bool = False,
    ifname: str | None = None,
    ppp_options: Sequence[str] = (),
    commands: str = "",
    wait: float = 30,
    ipv6_wait: float = 10,
    tunnel_secret: str | None = None,
    challenge: bool | None = None,
    hostname: str = "pppvm-lac",
    section: str = "pppvm",
    xl2tpd_options: Mapping[str, str] | None = None,
    xl2tpd_debug: bool = True,
    wait_ready: Sequence[str] = (),
    wait_done: Sequence[str] = (),
    done_wait: float = 60,
    teardown: str = "ppp",
) -> str:
    """One LAC: xl2tpd dials ``lns``:``lns_port`` at start (``autodial``, no redial) from
    ``listen_addr``:``port``; its pppd authenticates as ``user``/``password`` with ``auth``
    only (``none``: it refuses every method) and asks nothing of the peer (``noauth``).

    pppd: ``noipdefault`` (IPCP asks for 0.0.0.0), ``ipcp-accept-local``/``-remote``,
    ``nodefaultroute``, ``+ipv6`` with ``ipv6`` (random interface identifiers, IPV6CP), DNS
    requests in IPCP with ``usepeerdns`` (``PPP-UP`` then reports ``dns1``/``dns2``),
    ``debug``, plus ``ppp_options`` (e.g. ``mru 1400``, ``lcp-echo-interval 2``, ``noccp``).
    ``ifname`` names pppd's interface (default: the kernel's next ``pppN``; ``PPP-UP`` and
    ``PPP_IFACE`` tell). ``teardown`` is one of :data:`TEARDOWN_MODES`.
    L2TP: ``challenge`` (default: when ``tunnel_secret`` is given) makes xl2tpd challenge the
    LNS, and ``tunnel_secret`` answers the LNS's challenge. ``xl2tpd_options`` adds
    ``key = value`` lines to the ``[lac]`` section (e.g. ``{"tx bps": "1000000"}``).
    ``wait`` bounds the wait for IPCP (from xl2tpd's start), ``ipv6_wait`` the further wait
    for IPV6CP. See the module docstring for ``commands``, ``wait_ready`` and ``wait_done``.
    """
    _tag(tag)
    _auth(auth)
    _word("section", section)
    _word("hostname", hostname)
    chal = tunnel_secret is not None if challenge is None else challenge
    conf = [
        *_xl2tpd_global(listen_addr, port, xl2tpd_debug),
        "",
        f"[lac {section}]",
        f"lns = {_ipv4('lns', lns)}:{_port('lns_port', lns_port)}",
        f"hostname = {hostname}",
        f"challenge = {'yes' if chal else 'no'}",
        "length bit = yes",
        "autodial = yes",
        "redial = no",
        f"pppoptfile = {GUEST_ROOT}/{tag}/pppd.options",
    ]
    conf += _xl2tpd_extra(xl2tpd_options)
    opts = [
        "noauth",
        "nodefaultroute",
        "noipdefault",
        "ipcp-accept-local",
        "ipcp-accept-remote",
        f"user {_ppp_quote(user)}",
        f"password {_ppp_quote(password)}",
        *_REFUSE[auth],
        "+ipv6" if ipv6 else "noipv6",
        *(("usepeerdns",) if usepeerdns else ()),
        "debug",
        f"logfile {GUEST_ROOT}/{tag}/pppd.log",
        *_NO_HOOKS,
        *((f"ifname {_ifname(ifname)}",) if ifname else ()),
        *ppp_options,
    ]
    return _fragment(
        tag=tag,
        role="lac",
        section=section,
        conf=conf,
        ppp_options=opts,
        l2tp_secret_lines=[_secret_line(tunnel_secret)] if tunnel_secret else [],
        setup="",
        commands=commands,
        wait=wait,
        ipv6_wait=ipv6_wait if ipv6 else 0,
        wait_ready=wait_ready,
        wait_done=wait_done,
        done_wait=done_wait,
        teardown=teardown,
    )


def _secret_line(secret: str) -> str:
    if any(c.isspace() or c in "#;" for c in secret) or not secret:
        raise ValueError(f"tunnel secret {secret!r}: non-empty, no spaces, '#' or ';'")
    return f"* * {secret}"


def _ip_range(ip_range: str) -> str:
    lo, sep, hi = ip_range.partition("-")
    lo_ip = ipaddress.IPv4Address(_ipv4("ip_range start", lo.strip()))
    if not sep:
        return str(lo_ip)
    hi_ip = ipaddress.IPv4Address(_ipv4("ip_range end", hi.strip()))
    if hi_ip < lo_ip:
        raise ValueError(f"ip_range {ip_range!r}: end before start")
    return f"{lo_ip}-{hi_ip}"


def lns_fragment(
    *,
    local_ip: str,
    ip_range: str,
    users: Mapping[str, str],
    auth: str,
    ipv6: bool = False,
    tag: str = "lns",
    listen_addr: str = "0.0.0.0",
    port: int = 1701,
    ms_dns: Sequence[str] = (),
    ifname: str | None = None,
    ppp_options: Sequence[str] = (),
    commands: str = "",
    wait: float = 30,
    ipv6_wait: float = 10,
    tunnel_secret: str | None = None,
    challenge: bool | None = None,
    hostname: str = "pppvm-lns",
    ppp_name: str = "pppvm-lns",
    xl2tpd_options: Mapping[str, str] | None = None,
    xl2tpd_debug: bool = True,
    wait_ready: Sequence[str] = (),
    wait_done: Sequence[str] = (),
    done_wait: float = 60,
    teardown: str = "ppp",
) -> str:
    """One LNS: xl2tpd on ``listen_addr``:``port`` accepts any LAC (``[lns default]``) and
    starts pppd with ``local_ip`` and the next address of ``ip_range`` (``A-B`` or ``A``).

    pppd demands ``auth`` of the client (``auth`` + ``require-pap``, ``require-chap`` (MD5)
    or ``require-mschap-v2``; ``none``: ``noauth``) against ``users`` (name -> password,
    appended to the guest's ``/etc/ppp/pap-secrets`` and ``chap-secrets``, which all
    fragments of a guest share: give concurrent fragments distinct user names). Its own name
    in PAP/CHAP is ``ppp_name`` (xl2tpd's ``name``). ``ms_dns`` become ``ms-dns`` options
    (answers to IPCP DNS requests). ``tunnel_secret``: the LNS challenges the LAC (``challenge``
    defaults to whether a secret is given) and answers the LAC's challenge. ``wait`` counts
    from xl2tpd's start, so it must cover the time the host takes to dial in. The rest as in
    :func:`lac_fragment`.
    """
    _tag(tag)
    _auth(auth)
    _word("hostname", hostname)
    _word("ppp_name", ppp_name)
    chal = tunnel_secret is not None if challenge is None else challenge
    conf = [
        *_xl2tpd_global(listen_addr, port, xl2tpd_debug),
        "",
        "[lns default]",
        f"ip range = {_ip_range(ip_range)}",
        f"local ip = {_ipv4('local_ip', local_ip)}",
        f"hostname = {hostname}",
        f"name = {ppp_name}",
        f"challenge = {'yes' if chal else 'no'}",
        # Only about pppd's "auth" option (the pppd options below decide); never L2TP.
        "require authentication = no",
        "length bit = yes",
        f"pppoptfile = {GUEST_ROOT}/{tag}/pppd.options",
    ]
    conf += _xl2tpd_extra(xl2tpd_options)
    opts = [
        *_REQUIRE[auth],
        "nodefaultroute",
        "+ipv6" if ipv6 else "noipv6",
        *(f"ms-dns {_ipv4('ms_dns', d)}" for d in ms_dns),
        "debug",
        f"logfile {GUEST_ROOT}/{tag}/pppd.log",
        *_NO_HOOKS,
        *((f"ifname {_ifname(ifname)}",) if ifname else ()),
        *ppp_options,
    ]
    if auth != "none" and not users:
        raise ValueError(f"auth {auth!r} needs at least one user")
    secrets = "".join(f"{_ppp_quote(u)} * {_ppp_quote(p)} *\n" for u, p in users.items())
    setup = ""
    if secrets:
        setup = _heredoc("/etc/ppp/pap-secrets", secrets, append=True) + _heredoc(
            "/etc/ppp/chap-secrets", secrets, append=True
        )
    return _fragment(
        tag=tag,
        role="lns",
        section="default",
        conf=conf,
        ppp_options=opts,
        l2tp_secret_lines=[_secret_line(tunnel_secret)] if tunnel_secret else [],
        setup=setup,
        commands=commands,
        wait=wait,
        ipv6_wait=ipv6_wait if ipv6 else 0,
        wait_ready=wait_ready,
        wait_done=wait_done,
        done_wait=done_wait,
        teardown=teardown,
    )


def _default_listen(eth0: str | None, kw: dict[str, Any]) -> None:
    if eth0 is not None and "listen_addr" not in kw:
        kw["listen_addr"] = str(ipaddress.ip_interface(eth0).ip)


def lac_script(
    *,
    lns: str,
    user: str,
    password: str,
    auth: str,
    eth0: str | None = None,
    routes: Sequence[str] = (),
    mppe: bool = False,
    extra_modules: Sequence[str] = (),
    **kw: Any,
) -> str:
    """A whole guest script: :func:`prelude` then one :func:`lac_fragment` (keyword arguments
    as there). xl2tpd listens on ``eth0``'s address unless ``listen_addr`` says otherwise."""
    _default_listen(eth0, kw)
    return prelude(eth0=eth0, routes=routes, mppe=mppe, extra_modules=extra_modules) + lac_fragment(
        lns=lns, user=user, password=password, auth=auth, **kw
    )


def lns_script(
    *,
    local_ip: str,
    ip_range: str,
    users: Mapping[str, str],
    auth: str,
    ipv6: bool = False,
    eth0: str | None = None,
    routes: Sequence[str] = (),
    mppe: bool = False,
    extra_modules: Sequence[str] = (),
    **kw: Any,
) -> str:
    """A whole guest script: :func:`prelude` then one :func:`lns_fragment` (keyword arguments
    as there). xl2tpd listens on ``eth0``'s address unless ``listen_addr`` says otherwise."""
    _default_listen(eth0, kw)
    return prelude(eth0=eth0, routes=routes, mppe=mppe, extra_modules=extra_modules) + lns_fragment(
        local_ip=local_ip, ip_range=ip_range, users=users, auth=auth, ipv6=ipv6, **kw
    )


_FRAGMENT_TAG_RE = re.compile(r"^PPPVM_TAG=(\S+)$", re.M)


def combine(*fragments: str) -> str:
    """Run fragments concurrently (after a :func:`prelude`); print each one's output whole,
    in argument order, when all have finished. The block's status is the first non-zero
    fragment status (it does not exit the script)."""
    tags = []
    for frag in fragments:
        found = _FRAGMENT_TAG_RE.findall(frag)
        if len(found) != 1:
            raise ValueError("combine() takes fragments (lac_fragment/lns_fragment), not scripts")
        tags.append(found[0])
    if len(set(tags)) != len(tags):
        raise ValueError(f"fragment tags must be distinct: {tags}")
    out = ["# ---- pppvm combine ----\n", "pppvm_pids=\n"]
    for tag, frag in zip(tags, fragments, strict=True):
        out.append(f'mkdir -p "$PPPVM_ROOT/{tag}"\n')
        out.append("{\n" + frag + f'}} > "$PPPVM_ROOT/{tag}/out" 2>&1 &\n')
        out.append('pppvm_pids="$pppvm_pids $!"\n')
    out.append("pppvm_rc=0\nfor p in $pppvm_pids; do wait $p; r=$?; ")
    out.append('[ "$pppvm_rc" -eq 0 ] && pppvm_rc=$r; done\n')
    for tag in tags:
        out.append(f'cat "$PPPVM_ROOT/{tag}/out"\n')
    out.append("# ---- end of combine ----\n")
    return "".join(out)


def ping_checks(
    *, ipv4: bool = True, ipv6: bool = False, count: int = 3, size: int | None = None
) -> str:
    """Shell lines for ``commands=``: ping the PPP peer (``PING4``) and its link-local IPv6
    address (``PING6``), each a ``pppvm_check``."""
    size_opt = f" -s {int(size)}" if size is not None else ""
    lines = []
    if ipv4:
        lines.append(f'pppvm_check PING4 ping -c {int(count)} -i 0.3 -W 3{size_opt} "$PPP_PEER"')
    if ipv6:
        lines.append(
            'if [ -n "$PPP_PEER6" ]; then '
            f"pppvm_check PING6 ping -6 -c {int(count)} -i 0.3 -W 3{size_opt} "
            '"$PPP_PEER6%$PPP_IFACE"; else pppvm_mark PING6-FAIL reason=no-ipv6cp; fi'
        )
    return "\n".join(lines) + "\n"


# -- reading the output --------------------------------------------------------------------------


def parse_all_markers(output: str) -> dict[str, dict[str, dict[str, str]]]:
    """``{tag: {NAME: {key: value}}}`` from every ``@@NAME tag=TAG k=v ...`` line (the last
    line of a name wins; lines without a tag go under ``""``)."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for line in output.splitlines():
        m = _MARKER_RE.match(line.rstrip())
        if not m:
            continue
        fields = dict(tok.split("=", 1) for tok in m.group(2).split())
        out.setdefault(fields.get("tag", ""), {})[m.group(1)] = fields
    return out


def parse_markers(output: str, tag: str | None = None) -> dict[str, dict[str, str]]:
    """``{NAME: {key: value}}`` of one fragment's markers (``tag``), or of the only fragment
    in ``output`` when ``tag`` is None (``PPP-UP`` -> ``{"tag": "lac", "iface": "ppp0",
    "local": ..., "peer": ..., ...}``). Raises when ``tag`` is None and several fragments
    printed markers."""
    every = parse_all_markers(output)
    every.pop("prelude", None)
    if tag is not None:
        return every.get(tag, {})
    if len(every) > 1:
        raise ValueError(f"output has several fragments ({sorted(every)}): pass tag=")
    return next(iter(every.values()), {})


def guest_log(output: str, tag: str, source: str) -> str:
    """The lines a fragment printed under ``|TAG SOURCE|`` (``pppd``, ``xl2tpd`` or a
    ``pppvm_check`` name), prefix removed."""
    prefix = f"|{tag} {source}| "
    return "".join(
        line[len(prefix) :] + "\n" for line in output.splitlines() if line.startswith(prefix)
    )
