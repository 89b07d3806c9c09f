"""Management API commands of the control plane (beyond the kernel's netlink commands).

The kernel has no control plane, so these have no ``L2TP_CMD_*`` counterpart; they follow the
same conventions (attribute dictionaries in, attribute dictionaries out, errno-coded errors)
and are documented in ``docs/management-api.md``:

* ``control_listen``  accept incoming control connections on a socket;
* ``control_dial``    open a control connection (we send SCCRQ);
* ``control_call``    place incoming (ICRQ) or outgoing (OCRQ) calls on one;
* ``control_hangup``  clear a call (CDN) or a whole connection (StopCCN);
* ``control_dump``    every control connection with its calls, state and counters.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from pyl2tp.control.params import CallParams, ConnectionParams
from pyl2tp.errors import L2tpError
from pyl2tp.wire.constants import DataSequencing, DigestType, EncapType, L2SpecType, PwType

from .control import ControlDriver

Attrs = dict[str, Any]

PW_NAMES = {"eth": PwType.ETH, "eth_vlan": PwType.ETH_VLAN, "ppp": PwType.PPP}
L2SPEC_NAMES = {"none": L2SpecType.NONE, "default": L2SpecType.DEFAULT}
SEQ_NAMES = {"none": DataSequencing.NONE, "non_ip": DataSequencing.NON_IP,
             "all": DataSequencing.ALL}
DIGEST_NAMES = {"md5": DigestType.HMAC_MD5, "sha1": DigestType.HMAC_SHA1}


def _einval(text: str) -> L2tpError:
    return L2tpError(errno.EINVAL, text)


def _enum(attrs: Attrs, name: str, names: Mapping[str, int], default: int) -> int:
    value = attrs.get(name, default)
    if isinstance(value, str):
        if value not in names:
            raise _einval(f"{name} must be one of {', '.join(names)}, not {value!r}")
        return names[value]
    if isinstance(value, bool) or not isinstance(value, int) or value not in names.values():
        raise _einval(f"{name} must be one of {', '.join(names)}")
    return value


def _number(attrs: Attrs, name: str, default: float, *, lo: float = 0,
            hi: float = float("inf"), integer: bool = False) -> Any:
    value = attrs.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            integer and not isinstance(value, int)):
        raise _einval(f"{name} must be a{'n integer' if integer else ' number'}")
    if not lo <= value <= hi:
        raise _einval(f"{name} must be between {lo:g} and {hi:g}")
    return value


def _flag(attrs: Attrs, name: str, default: bool) -> bool:
    value = attrs.get(name, default)
    if not isinstance(value, bool):
        raise _einval(f"{name} must be true or false")
    return value


def _address(attrs: Attrs, name: str, *, required: bool) -> str | None:
    value = attrs.get(name)
    if value is None:
        if required:
            raise _einval(f"{name} is required")
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _einval(f"{name} {value!r} is not an IP address") from None


def call_params(attrs: Attrs, base: CallParams, version: int) -> CallParams:
    """Call parameters from request attributes over ``base``."""
    pw_default = base.pw_type if version == 3 else PwType.PPP
    pw_type = _enum(attrs, "pw_type", PW_NAMES, pw_default)
    if version == 2 and pw_type != PwType.PPP:
        raise L2tpError(errno.EPROTONOSUPPORT, "L2TPv2 sessions carry PPP only")
    ifname = attrs.get("ifname", base.ifname)
    if not isinstance(ifname, str) or len(ifname) > 15:
        raise _einval("ifname must be an interface name of at most 15 characters")
    ppp = attrs.get("ppp", base.ppp_profile)
    if not isinstance(ppp, str):
        raise _einval("ppp must be the name of a [[ppp]] profile")
    end_id = attrs.get("remote_end_id", base.remote_end_id)
    if isinstance(end_id, str):
        end_id = end_id.encode()
    try:
        return dataclasses.replace(
            base,
            pw_type=pw_type,
            cookie_len=_number(attrs, "cookie_len", base.cookie_len, integer=True, hi=8),
            l2spec_type=_enum(attrs, "l2spec_type", L2SPEC_NAMES, base.l2spec_type),
            data_sequencing=_enum(attrs, "data_sequencing", SEQ_NAMES, base.data_sequencing),
            sequencing=_flag(attrs, "sequencing", base.sequencing),
            reorder_timeout=_number(attrs, "reorder_timeout", base.reorder_timeout, hi=3600),
            remote_end_id=end_id,
            ifname=ifname,
            ppp_profile=ppp,
        )
    except ValueError as exc:
        raise _einval(str(exc)) from None


def connection_params(attrs: Attrs, base: ConnectionParams) -> ConnectionParams:
    """Connection parameters from request attributes over ``base``."""
    version = _number(attrs, "version", base.version, integer=True, lo=2, hi=3)
    secret = attrs.get("secret")
    if secret is not None and not isinstance(secret, str):
        raise _einval("secret must be a string")
    try:
        return dataclasses.replace(
            base,
            version=version,
            host_name=str(attrs.get("host_name", base.host_name)),
            secret=secret.encode() if secret is not None else base.secret,
            hide_avps=_flag(attrs, "hide_avps", base.hide_avps),
            challenge=_flag(attrs, "challenge", base.challenge),
            digest_type=_enum(attrs, "digest", DIGEST_NAMES, base.digest_type),
            hello_interval=_number(attrs, "hello_interval", base.hello_interval, hi=86400),
            receive_window=_number(attrs, "receive_window", base.receive_window,
                                   integer=True, lo=1, hi=32767),
            max_retries=_number(attrs, "max_retries", base.max_retries, integer=True,
                                lo=1, hi=100),
            retransmit_cap=_number(attrs, "retransmit_cap", base.retransmit_cap, lo=8,
                                   hi=3600),
            setup_timeout=_number(attrs, "setup_timeout", base.setup_timeout, lo=0.001,
                                  hi=3600),
            call=call_params(attrs, base.call, version),
        )
    except ValueError as exc:
        raise _einval(str(exc)) from None


class ControlApi:
    """The control-plane commands bound to one driver."""

    def __init__(self, driver: ControlDriver, base: Callable[[], ConnectionParams],
                 ppp_profile_exists: Callable[[str], bool] = lambda _n: False) -> None:
        self.driver = driver
        self.base = base
        self.ppp_profile_exists = ppp_profile_exists

    def commands(self) -> dict[str, Callable[[Attrs], Any]]:
        return {
            "control_listen": self.listen,
            "control_dial": self.dial,
            "control_call": self.call,
            "control_hangup": self.hangup,
            "control_dump": lambda _a: self.driver.dump(),
        }

    def listen(self, attrs: Attrs) -> Attrs:
        encap = _enum(attrs, "encap", {"udp": EncapType.UDP, "ip": EncapType.IP},
                      EncapType.UDP)
        address = _address(attrs, "address", required=False) or "0.0.0.0"
        port = _number(attrs, "port", 1701, integer=True, lo=0, hi=65535)
        ep = self.driver.listen(EncapType(encap), address, port)
        return {"encap": "udp" if ep.encap == EncapType.UDP else "ip", "address": ep.local,
                "port": ep.port}

    def dial(self, attrs: Attrs) -> Attrs:
        peer = _address(attrs, "peer", required=True)
        assert peer is not None
        params = connection_params(attrs, self.base())
        encap = _enum(attrs, "encap", {"udp": EncapType.UDP, "ip": EncapType.IP},
                      EncapType.UDP)
        conn = self.driver.dial(
            params, peer, port=_number(attrs, "port", 1701, integer=True, lo=1, hi=65535),
            encap=EncapType(encap), local=_address(attrs, "local", required=False),
            local_port=_number(attrs, "local_port", 1701, integer=True, lo=0, hi=65535))
        return {"conn_id": conn.local_id, "state": conn.state.value}

    def call(self, attrs: Attrs) -> list[Attrs]:
        conn_id = _number(attrs, "conn_id", 0, integer=True, lo=1, hi=0xFFFFFFFF)
        conn = self.driver.conn(conn_id)
        direction = attrs.get("direction", "incoming")
        if direction not in ("incoming", "outgoing"):
            raise _einval("direction must be incoming or outgoing")
        params = call_params(attrs, conn.params.call, conn.version)
        if params.ppp_profile:
            if params.pw_type != PwType.PPP:
                raise _einval("a ppp profile needs pw_type ppp")
            if not self.ppp_profile_exists(params.ppp_profile):
                raise L2tpError(errno.ENOENT, f"no [[ppp]] profile {params.ppp_profile!r} "
                                "in the daemon's configuration")
        count = _number(attrs, "count", 1, integer=True, lo=1, hi=65535)
        out = []
        for _ in range(count):
            call = self.driver.place_call(conn, params, direction=direction)
            out.append({"conn_id": conn.local_id, "session_id": call.local_id,
                        "state": call.state.value})
        return out

    def hangup(self, attrs: Attrs) -> Attrs:
        conn = self.driver.conn(_number(attrs, "conn_id", 0, integer=True, lo=1,
                                        hi=0xFFFFFFFF))
        sid = attrs.get("session_id")
        if sid is None:
            self.driver.hangup(conn)
            return {"conn_id": conn.local_id, "state": conn.state.value}
        call = conn.calls.get(sid) if isinstance(sid, int) else None
        if call is None:
            raise L2tpError(errno.ENOENT, f"no session {sid} on control connection "
                            f"{conn.local_id}")
        self.driver.hangup(conn, call)
        return {"conn_id": conn.local_id, "session_id": sid, "state": call.state.value}


__all__ = ["ControlApi", "call_params", "connection_params"]
