"""What the daemon does with the PPP inside its L2TP sessions: terminate it or switch it.

The kernel hands a PPP session's frames to whoever opened its PPPoL2TP socket: pppd (which
terminates PPP) or, through PPPIOCBRIDGECHAN, another session's channel (switching). This
module makes the same choice per call from the call's parameters, which the configuration
set: a ``[[ppp]]`` profile name means a :class:`~pyl2tp.daemon.ppp_endpoint.PppEndpoint`
on a TUN device; a ``switch_to`` tunnel name means a new call on that tunnel and the two
channels spliced, frames relayed untouched both ways.

Either side's end ends the pair: PPP finishing hangs up its call (CDN), a CDN or StopCCN
stops the PPP endpoint, and a switched call going down takes its partner with it.

PPP negotiations in progress are bounded (``[daemon] max_ppp_negotiations``): each one may
hold an authentication request with the backend, and an LNS that thousands of subscribers
reach at once (after an outage) should finish some rather than start all. A call beyond the
bound is hung up at once with CDN 4 ("lack of facilities, temporary") / error 4, so the LAC
retries later, and counted in ``refused_max_ppp_negotiations``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from pyl2tp.control import events as ev
from pyl2tp.control.call import Call
from pyl2tp.control.params import CallParams
from pyl2tp.control.tunnel import ControlConnection
from pyl2tp.errors import L2tpError
from pyl2tp.ppp.auth import AuthBackend, AuthResult, Credentials
from pyl2tp.ppp.ipcp import IpcpConfig
from pyl2tp.ppp.ipv6cp import Ipv6cpConfig
from pyl2tp.ppp.lcp import LcpConfig
from pyl2tp.ppp.link import LinkConfig, PppLink
from pyl2tp.ppp.pool import AddressPool
from pyl2tp.ppp.secrets import SecretsError, SecretsFile
from pyl2tp.pw.ppp import PppChannel
from pyl2tp.wire.constants import CDNResult, ErrorCode, PwType

from .config import PppProfile
from .control import ControlDriver
from .ppp_endpoint import PppEndpoint, Publish

log = logging.getLogger("pyl2tp.ppp")

CallKey = tuple[int, int]
"""(control connection id, local session id)."""


def _ipcp(profile: PppProfile, peer: IPv4Address | None) -> IpcpConfig:
    """What a profile offers in IPCP, with ``peer`` as the peer's address."""
    return IpcpConfig(local_address=profile.local_ip, peer_address=peer,
                      dns=tuple(profile.dns), request_dns=profile.request_dns)


class _Secrets:
    """A secrets file, re-read when it changes on disk so edits apply without a restart."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._file: SecretsFile | None = None

    def get(self) -> SecretsFile | None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            log.error("secrets file %s: %s", self.path, exc.strerror)
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                self._file = SecretsFile.load(self.path)
            except SecretsError as exc:
                log.error("%s", exc)
                self._file = None
            self._stamp = stamp
        return self._file


class _FileBackend:
    """The profile's secrets file as an authentication backend."""

    def __init__(self, secrets: _Secrets) -> None:
        self.secrets = secrets

    async def authenticate(self, request: Any) -> AuthResult:
        file = self.secrets.get()
        if file is None:
            return AuthResult(False, "user database unavailable")
        return await file.authenticate(request)


@dataclass(slots=True)
class _Switched:
    """Two calls whose channels are spliced; ``outer`` is the one we placed."""

    inner: Call
    outer: Call
    inner_channel: PppChannel | None = None
    outer_channel: PppChannel | None = None
    frames: int = 0
    dropped: int = 0


class PppManager:
    """Terminates or switches PPP on every PPP call the control driver brings up."""

    def __init__(self, loop: asyncio.AbstractEventLoop, driver: ControlDriver, *,
                 profile: Callable[[str], PppProfile | None],
                 switch_target: Callable[[str], ControlConnection | None],
                 host_name: str, publish: Publish | None = None) -> None:
        self.loop = loop
        self.driver = driver
        self.profile = profile
        self.switch_target = switch_target
        self.host_name = host_name
        self.publish = publish or (lambda _e, _a: None)
        self.endpoints: dict[CallKey, PppEndpoint] = {}
        self._pools: dict[str, AddressPool] = {}
        # per session: (pool or None for a fixed address outside it, address, user)
        self._leases: dict[CallKey, tuple[AddressPool | None, IPv4Address, str | None]] = {}
        self._fixed: dict[IPv4Address, CallKey] = {}
        self._secrets: dict[str, _Secrets] = {}
        self._switched: dict[CallKey, _Switched] = {}
        # Endpoints started whose PPP is not up yet (bounded by max_ppp_negotiations).
        self._negotiating: set[CallKey] = set()
        driver.observers.append(self.on_event)

    @property
    def negotiating(self) -> int:
        """PPP endpoints started and not yet up."""
        return len(self._negotiating)

    # -- control-plane events -----------------------------------------------------------------

    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.CallUp):
            call = event.call
            if call.pw_type != PwType.PPP:
                return
            key = (call.conn.local_id, call.local_id)
            if key in self._switched:
                self._switch_leg_up(self._switched[key], call)
            elif call.params.switch_to:
                self._switch(call, call.params.switch_to)
            elif call.params.ppp_profile:
                self._terminate(call, call.params.ppp_profile)
            else:
                log.info("session %d/%d: no PPP profile; its PPP is not terminated here",
                         call.conn.local_id, call.local_id,
                         extra={"tunnel_id": call.conn.local_id, "session_id": call.local_id})
        elif isinstance(event, ev.CallDown):
            self._call_down(event.call)

    def _channel(self, call: Call) -> PppChannel | None:
        session = self.driver._sessions.get((call.conn.local_id, call.local_id))
        pw = session.pw if session is not None else None
        return pw if isinstance(pw, PppChannel) else None

    def _hangup(self, call: Call, text: str, *, result: int | None = None,
                error: int = ErrorCode.NO_ERROR) -> None:
        if not call.dead and not call.conn.dead:
            self.driver.hangup(call.conn, call, text=text[:200], result=result, error=error)

    # -- termination --------------------------------------------------------------------------

    def _refuse(self, call: Call, label: str, why: str, level: int, *,
                result: int | None = None, error: int = ErrorCode.NO_ERROR) -> None:
        """Clear a call whose PPP never started: logged, published as ``ppp_down`` (so the
        negotiation failures an operator watches include it) and hung up with a CDN."""
        log.log(level, "%s: refused: %s", label, why,
                extra={"tunnel_id": call.conn.local_id, "session_id": call.local_id})
        self.publish("ppp_down", {"session": label, "reason": why})
        self.loop.call_soon(functools.partial(self._hangup, call, why, result=result,
                                              error=error))

    def _terminate(self, call: Call, name: str) -> None:
        key = (call.conn.local_id, call.local_id)
        label = f"session {key[0]}/{key[1]}"
        ids = {"tunnel_id": key[0], "session_id": key[1]}
        profile = self.profile(name)
        channel = self._channel(call)
        if profile is None or channel is None:
            why = f"PPP profile {name!r} not configured" if profile is None else "no channel"
            self._refuse(call, label, why, logging.WARNING)
            return
        limit = self.driver.max_ppp_negotiations
        if len(self._negotiating) >= limit:
            self.driver.count("refused_max_ppp_negotiations")
            self._refuse(call, label, f"{limit} PPP negotiations in progress "
                         "(max_ppp_negotiations)", logging.INFO,
                         result=CDNResult.NO_FACILITIES_TEMPORARY, error=ErrorCode.NO_RESOURCES)
            return
        backend: AuthBackend | None = None
        credentials = None
        if profile.secrets:
            secrets = self._secrets.setdefault(profile.secrets, _Secrets(profile.secrets))
            backend = _FileBackend(secrets)
        if profile.user:
            password = profile.password
            if password is None and profile.secrets:
                file = self._secrets[profile.secrets].get()
                found = file.credentials_for(profile.user) if file is not None else None
                password = found.password if found is not None else None
            if password is not None:
                credentials = Credentials(profile.user, password)
            else:
                log.warning("%s: no password for user %r", label, profile.user, extra=ids)
        link = PppLink(self._link_config(profile, credentials),
                       assign=lambda user, result: self._assign(key, profile, user, result))
        # A dialled session's own ifname beats its profile's: it names that one session.
        ifname = call.params.ifname or profile.ifname
        endpoint = PppEndpoint(self.loop, channel, link, label=label, ifname=ifname,
                               mtu=profile.mtu, backend=backend,
                               default_route=profile.default_route,
                               on_finished=lambda ep, reason: self._finished(key, call, reason),
                               publish=functools.partial(self._endpoint_event, key))
        self.endpoints[key] = endpoint
        self._negotiating.add(key)
        endpoint.start()

    def _endpoint_event(self, key: CallKey, event: str, attrs: dict[str, Any]) -> None:
        """An endpoint's notification, passed on; ``ppp_up`` ends its negotiation."""
        if event == "ppp_up":
            self._negotiating.discard(key)
        self.publish(event, attrs)

    def _link_config(self, profile: PppProfile, credentials: Credentials | None) -> LinkConfig:
        ipcp = _ipcp(profile, profile.peer_ip) if profile.ipv4 else None
        return LinkConfig(
            lcp=LcpConfig(mru=profile.mru, auth=tuple(profile.auth),
                          peer_auth=tuple(profile.peer_auth) if credentials else ()),
            ipcp=ipcp, ipv6cp=Ipv6cpConfig() if profile.ipv6 else None,
            credentials=credentials, auth_name=profile.auth_name or self.host_name,
            restart_interval=profile.restart_interval, max_configure=profile.max_configure,
            max_terminate=profile.max_terminate, max_failure=profile.max_failure,
            echo_interval=profile.echo_interval, echo_failure=profile.echo_failure,
            auth_timeout=profile.auth_timeout)

    def _pool(self, profile: PppProfile) -> AddressPool | None:
        """One pool per range, whichever profiles name it, so two profiles sharing a range
        cannot lease one address twice."""
        if not profile.pool:
            return None
        pool = self._pools.get(profile.pool)
        if pool is None:
            exclude = [profile.local_ip] if profile.local_ip is not None else []
            pool = self._pools[profile.pool] = AddressPool.parse(profile.pool, exclude=exclude)
        return pool

    def _release(self, key: CallKey) -> None:
        lease = self._leases.pop(key, None)
        if lease is None:
            return
        pool, address, _user = lease
        if pool is not None:
            pool.release(address)
        self._fixed.pop(address, None)

    def _assign(self, key: CallKey, profile: PppProfile, user: str | None,
                result: AuthResult | None) -> IpcpConfig | str | None:
        """The peer's address: the user's fixed one (secrets file, RADIUS) if any, else one
        from the pool. A link renegotiating keeps its lease unless another user has
        authenticated on it. Raises ValueError for an address IPCP cannot use."""
        lease = self._leases.get(key)
        if lease is not None:
            if lease[2] == user:
                return _ipcp(profile, lease[1])
            self._release(key)
        fixed = None
        if result is not None and result.address:
            try:
                fixed = IPv4Address(result.address)
            except ValueError:
                return f"invalid address {result.address!r} for user {user!r}"
        pool = self._pool(profile)
        if fixed is not None:
            config = _ipcp(profile, fixed)  # validates (raises) before anything is held
            if fixed in self._fixed or (pool is not None and fixed in pool
                                        and not pool.reserve(fixed)):
                return f"address {fixed} of user {user!r} is in use"
            self._fixed[fixed] = key
            self._leases[key] = (pool if pool is not None and fixed in pool else None,
                                 fixed, user)
            return config
        if pool is None:
            if profile.peer_ip is None and profile.auth:
                # Users proved who they are, so they must not pick any address they like
                # (another subscriber's, a server's): pppd refuses the same way.
                return "no address to assign: the profile has neither pool nor peer_ip"
            return None
        address = pool.allocate()
        if address is None:
            return f"address pool {profile.pool} exhausted"
        self._leases[key] = (pool, address, user)
        return _ipcp(profile, address)

    def _finished(self, key: CallKey, call: Call, reason: str) -> None:
        self.endpoints.pop(key, None)
        self._negotiating.discard(key)
        self._release(key)
        # Called from inside the endpoint's event handling: hang up once it has unwound.
        self.loop.call_soon(self._hangup, call, f"PPP: {reason}")

    # -- switching ----------------------------------------------------------------------------

    def _switch(self, inner: Call, target: str) -> None:
        label = f"session {inner.conn.local_id}/{inner.local_id}"
        ids = {"tunnel_id": inner.conn.local_id, "session_id": inner.local_id}
        conn = self.switch_target(target)
        if conn is None or conn.dead:
            self._refuse(inner, label, f"switch target tunnel {target!r} is not up",
                         logging.WARNING)
            return
        params = CallParams(pw_type=PwType.PPP, cookie_len=conn.params.call.cookie_len,
                            l2spec_type=conn.params.call.l2spec_type,
                            sequencing=inner.params.sequencing,
                            called_number=inner.params.called_number,
                            calling_number=inner.params.calling_number)
        try:
            outer = self.driver.place_call(conn, params, direction="incoming")
        except Exception as exc:
            self._refuse(inner, label, f"cannot place the switched call on {target!r}: {exc}",
                         logging.WARNING)
            return
        pair = _Switched(inner, outer, inner_channel=self._channel(inner))
        self._switched[(inner.conn.local_id, inner.local_id)] = pair
        self._switched[(outer.conn.local_id, outer.local_id)] = pair
        log.info("%s: switching to tunnel %r (tunnel %d session %d)", label, target,
                 conn.local_id, outer.local_id, extra=ids)

    def _switch_leg_up(self, pair: _Switched, call: Call) -> None:
        if call is pair.outer:
            pair.outer_channel = self._channel(call)
        a, b = pair.inner_channel, pair.outer_channel
        if a is None or b is None:
            return
        event = {"session": f"{pair.inner.conn.local_id}/{pair.inner.local_id}",
                 "to": f"{pair.outer.conn.local_id}/{pair.outer.local_id}"}
        bridge = getattr(a, "bridge", None)
        if bridge is not None and hasattr(b, "bridge"):
            # Kernel channels: PPPIOCBRIDGECHAN splices them, no frame reaches Python.
            try:
                bridge(b)
            except L2tpError as exc:
                log.warning("session %s: kernel bridge refused (%s); relaying instead",
                            event["session"], exc.message)
            else:
                self.publish("ppp_switched", {**event, "kernel": True})
                return
        a.on_frame = self._relay(pair, b)
        b.on_frame = self._relay(pair, a)
        self.publish("ppp_switched", event)

    @staticmethod
    def _relay(pair: _Switched, to: PppChannel) -> Callable[[bytes], None]:
        send = to.send

        def relay(frame: bytes) -> None:
            pair.frames += 1
            send(frame)
        return relay

    def _call_down(self, call: Call) -> None:
        key = (call.conn.local_id, call.local_id)
        endpoint = self.endpoints.pop(key, None)
        self._negotiating.discard(key)
        if endpoint is not None:
            endpoint.lower_down()
        self._release(key)
        pair = self._switched.pop(key, None)
        if pair is not None:
            other = pair.outer if call is pair.inner else pair.inner
            self._switched.pop((other.conn.local_id, other.local_id), None)
            for channel in (pair.inner_channel, pair.outer_channel):
                if channel is not None:
                    channel.on_frame = None
            self.loop.call_soon(self._hangup, other, "switched session ended")

    # -- management ---------------------------------------------------------------------------

    def dump(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (conn_id, sid), endpoint in sorted(self.endpoints.items()):
            out.append({"tunnel_id": conn_id, "session_id": sid, **endpoint.summary()})
        seen: set[int] = set()
        for pair in self._switched.values():
            if id(pair) in seen:
                continue
            seen.add(id(pair))
            out.append({"tunnel_id": pair.inner.conn.local_id,
                        "session_id": pair.inner.local_id, "switched_to": {
                            "tunnel_id": pair.outer.conn.local_id,
                            "session_id": pair.outer.local_id},
                        "frames": pair.frames})
        return out

    def shutdown(self) -> None:
        for endpoint in list(self.endpoints.values()):
            endpoint.shutdown()
        self.endpoints.clear()
        self._negotiating.clear()
