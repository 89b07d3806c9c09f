"""The single source of truth for tunnels and sessions, with the kernel's id and lifetime rules.

Keys are the kernel's (``l2tp_core.c``): tunnel ids are shared by v2 and v3; v2 sessions are
keyed ``tunnel_id << 16 | session_id``; v3 sessions by session id alone. A v3 session id may
repeat across UDP tunnels (the receive path then tells them apart by the tunnel the packet came
through), but never involving an IP-encapsulated tunnel, and never twice in one tunnel.

The registry owns no sockets or devices: a :class:`Backend` opens and closes those when objects
are registered and unregistered, so the same rules serve the userspace data plane, a future
kernel-offload backend and the null backend tests use.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import Protocol

from pyl2tp.errors import L2tpError
from pyl2tp.wire.constants import EncapType

from . import recv
from .model import REORDER_Q_MAX, Session, Tunnel
from .xmit import set_header


class Backend(Protocol):
    """What a data-plane backend does when the registry's objects come and go."""

    def tunnel_open(self, tunnel: Tunnel) -> None:
        """Attach the tunnel to a socket; raise L2tpError (e.g. EADDRNOTAVAIL) on failure."""

    def tunnel_close(self, tunnel: Tunnel) -> None:
        """Detach the tunnel from its socket (closing the socket if it was the last user)."""

    def session_open(self, session: Session) -> None:
        """Create the session's pseudowire device or channel; raise L2tpError on failure."""

    def session_close(self, session: Session) -> None:
        """Remove the session's device or channel."""


class NullBackend:
    """A backend with no sockets or devices: the model and its rules alone."""

    def tunnel_open(self, tunnel: Tunnel) -> None:
        pass

    def tunnel_close(self, tunnel: Tunnel) -> None:
        pass

    def session_open(self, session: Session) -> None:
        pass

    def session_close(self, session: Session) -> None:
        pass


Listener = Callable[[str, object], None]


class Registry:
    """Tunnels and sessions of one data plane (the kernel keeps one per network namespace)."""

    def __init__(self, backend: Backend | None = None) -> None:
        self.backend: Backend = backend or NullBackend()
        self.tunnels: dict[int, Tunnel] = {}
        self.v2_sessions: dict[int, Session] = {}
        # v3 ids held by exactly one session; colliding UDP ids move to v3_collisions, keyed
        # by (tunnel id, session id), and v3_collided counts holders per id.
        self.v3_sessions: dict[int, Session] = {}
        self.v3_collisions: dict[tuple[int, int], Session] = {}
        self.v3_collided: dict[int, int] = {}
        self.listeners: list[Listener] = []
        # Bound on each session's reorder queue ([daemon] reorder_queue), given to sessions
        # as they are added; set_reorder_q_max() also applies a new value to existing ones.
        self.reorder_q_max = REORDER_Q_MAX

    def set_reorder_q_max(self, packets: int) -> None:
        self.reorder_q_max = packets
        for session in self.sessions():
            session.reorder_q_max = packets

    # -- notifications --------------------------------------------------------------------------

    def notify(self, event: str, obj: object) -> None:
        """Tell every listener about a create/delete/modify; a failing listener is dropped
        from this event only, never allowed to break the registry."""
        for listener in list(self.listeners):
            try:
                listener(event, obj)
            except Exception:
                pass

    # -- tunnels --------------------------------------------------------------------------------

    def add_tunnel(self, tunnel: Tunnel) -> Tunnel:
        if tunnel.tunnel_id in self.tunnels:
            raise L2tpError(errno.EEXIST, f"tunnel {tunnel.tunnel_id} already exists")
        self.backend.tunnel_open(tunnel)
        self.tunnels[tunnel.tunnel_id] = tunnel
        self.notify("tunnel_create", tunnel)
        return tunnel

    def get_tunnel(self, tunnel_id: int) -> Tunnel:
        tunnel = self.tunnels.get(tunnel_id)
        if tunnel is None:
            raise L2tpError(errno.ENODEV, f"no tunnel {tunnel_id}")
        return tunnel

    def delete_tunnel(self, tunnel: Tunnel) -> None:
        """Delete a tunnel and all its sessions (idempotent, like ``l2tp_tunnel_delete``).

        The delete notification goes out first so that it carries the final counters.
        """
        if tunnel.dead:
            return
        self.notify("tunnel_delete", tunnel)
        tunnel.dead = True
        tunnel.acpt_newsess = False
        for session in list(tunnel.sessions.values()):
            self.delete_session(session)
        self.tunnels.pop(tunnel.tunnel_id, None)
        self.backend.tunnel_close(tunnel)

    def sorted_tunnels(self) -> list[Tunnel]:
        """Tunnels in ascending id order, as the kernel's IDR dumps them."""
        return [self.tunnels[k] for k in sorted(self.tunnels)]

    # -- sessions -------------------------------------------------------------------------------

    def add_session(self, session: Session) -> Session:
        session.reorder_q_max = self.reorder_q_max
        tunnel = session.tunnel
        if not tunnel.acpt_newsess or tunnel.dead:
            raise L2tpError(errno.ENODEV, f"tunnel {tunnel.tunnel_id} is being deleted")
        sid = session.session_id
        if tunnel.version == 2:
            key = (tunnel.tunnel_id << 16) | sid
            if key in self.v2_sessions:
                raise L2tpError(errno.EEXIST,
                                f"session {sid} already exists in tunnel {tunnel.tunnel_id}")
        else:
            if sid in tunnel.sessions:
                raise L2tpError(errno.EEXIST,
                                f"session {sid} already exists in tunnel {tunnel.tunnel_id}")
            holder = self._v3_any(sid)
            if holder is not None and (tunnel.encap == EncapType.IP
                                       or holder.tunnel.encap == EncapType.IP):
                raise L2tpError(errno.EEXIST, f"L2TPv3 session id {sid} is already used by "
                                f"tunnel {holder.tunnel.tunnel_id}; IP encapsulation needs "
                                "session ids unique across all tunnels")
        set_header(session)
        recv.set_fast_path(session)
        self.backend.session_open(session)
        if tunnel.version == 2:
            self.v2_sessions[(tunnel.tunnel_id << 16) | sid] = session
        else:
            self._v3_insert(session)
        tunnel.sessions[sid] = session
        self.notify("session_create", session)
        return session

    def _v3_any(self, sid: int) -> Session | None:
        s = self.v3_sessions.get(sid)
        if s is not None:
            return s
        if sid in self.v3_collided:
            for (_tid, csid), cs in self.v3_collisions.items():
                if csid == sid:
                    return cs
        return None

    def _v3_insert(self, session: Session) -> None:
        sid = session.session_id
        existing = self.v3_sessions.pop(sid, None)
        if existing is not None:
            self.v3_collisions[(existing.tunnel.tunnel_id, sid)] = existing
            self.v3_collided[sid] = 1
        if sid in self.v3_collided:
            self.v3_collisions[(session.tunnel.tunnel_id, sid)] = session
            self.v3_collided[sid] += 1
        else:
            self.v3_sessions[sid] = session

    def _v3_remove(self, session: Session) -> None:
        sid = session.session_id
        if self.v3_sessions.get(sid) is session:
            del self.v3_sessions[sid]
            return
        if self.v3_collisions.pop((session.tunnel.tunnel_id, sid), None) is None:
            return
        left = self.v3_collided[sid] - 1
        if left > 1:
            self.v3_collided[sid] = left
            return
        # One holder left: it becomes unique again.
        del self.v3_collided[sid]
        for key in [k for k in self.v3_collisions if k[1] == sid]:
            self.v3_sessions[sid] = self.v3_collisions.pop(key)

    def get_session(self, tunnel: Tunnel, session_id: int) -> Session:
        session = tunnel.sessions.get(session_id)
        if session is None:
            raise L2tpError(errno.ENODEV,
                            f"no session {session_id} in tunnel {tunnel.tunnel_id}")
        return session

    def find_session_by_ifname(self, ifname: str) -> Session:
        for tunnel in self.sorted_tunnels():
            for session in tunnel.sessions.values():
                if session.ifname == ifname:
                    return session
        raise L2tpError(errno.ENODEV, f"no session with interface {ifname}")

    def delete_session(self, session: Session) -> None:
        """Delete a session (idempotent): unhash, purge the reorder queue, remove its device."""
        if session.dead:
            return
        self.notify("session_delete", session)
        session.dead = True
        tunnel = session.tunnel
        if tunnel.version == 2:
            self.v2_sessions.pop((tunnel.tunnel_id << 16) | session.session_id, None)
        else:
            self._v3_remove(session)
        tunnel.sessions.pop(session.session_id, None)
        recv.purge(session)
        self.backend.session_close(session)

    def modified(self, obj: Tunnel | Session) -> None:
        if isinstance(obj, Session):
            set_header(obj)
            recv.set_fast_path(obj)
            self.notify("session_modify", obj)
        else:
            self.notify("tunnel_modify", obj)

    def sessions(self) -> Iterator[Session]:
        """All sessions, tunnel by tunnel in ascending ids (the kernel's dump order)."""
        for tunnel in self.sorted_tunnels():
            for sid in sorted(tunnel.sessions):
                yield tunnel.sessions[sid]

    # -- receive-side lookups -------------------------------------------------------------------

    def lookup_v3(self, sid: int, tunnel_hint: Tunnel | None) -> Session | None:
        """The kernel's ``l2tp_v3_session_get``: a unique id wins whatever tunnel the packet
        came through; a colliding id needs the tunnel the packet arrived on."""
        s = self.v3_sessions.get(sid)
        if s is not None or tunnel_hint is None:
            return s
        return self.v3_collisions.get((tunnel_hint.tunnel_id, sid))

    def close_all(self) -> None:
        for tunnel in self.sorted_tunnels():
            self.delete_tunnel(tunnel)
