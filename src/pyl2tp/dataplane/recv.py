"""The kernel's data-plane receive algorithm (``l2tp_recv_common`` and friends) as a sans-I/O core.

The encapsulation layer finds the session and calls :func:`recv_common` with the whole packet,
the offset just after the session id, the v2 flags word and the byte count that ``rx_bytes``
should grow by. From there this module does what ``net/l2tp/l2tp_core.c`` does: check the peer
cookie, read the sequence number (v2 ``S`` bit, or the v3 default L2-specific sublayer), let a
LAC follow the LNS in switching sequencing on and off, enforce ``recv_seq`` and the LNS rule,
skip the v2 offset padding, apply the half-space acceptance window, hold packets in the reorder
queue, and deliver them in order to ``session.deliver``. Every counter moves exactly where the
kernel moves it, so statistics read the same as ``ip l2tp show`` would on a Linux box.

Where this differs from the kernel, on purpose:

* **A real timer.** The kernel only looks at the reorder queue when the next data packet of the
  session arrives, so a packet held for reordering is neither delivered nor dropped while the
  peer is silent. Here :func:`next_deadline` tells the I/O layer when the queue head expires and
  :func:`handle_timer` runs the very same dequeue walk at that time, so held packets are
  released without waiting for traffic. What the walk does is unchanged: an expired packet is
  still dropped (``rx_seq_discards`` and ``rx_errors``) and the next one resynchronises ``nr``.
* **A bounded queue.** The kernel keeps queued packets charged to the tunnel socket's receive
  buffer, which is what bounds its queue. We have no such buffer, so ``session.reorder_q_max``
  bounds it: a packet that would still leave more than that many packets held once the queue
  has been serviced is discarded and counted as ``rx_seq_discards`` and ``rx_errors``.
* **Sorting across the wrap.** The kernel sorts the reorder queue with a plain integer compare,
  so a packet numbered just after the wrap that arrives early sits at the head and blocks the
  queue until it expires and is lost (with v2's 16-bit numbers, every 65,536 packets). Here the
  queue is sorted by distance ahead of ``nr``, which is the order the packets will be
  delivered in; away from the wrap the two orders, and so all counters, are identical.
* **Short packets.** The newest kernel's encapsulation handlers reject a v3 packet too short
  for its cookie and sublayer before calling ``l2tp_recv_common`` (tunnel ``rx_invalid``); older
  kernels rejected it at the top of ``l2tp_recv_common`` with ``rx_errors``. Callers here may
  do the former; if they do not, any packet too short for the fields its session and flags
  promise is discarded with ``rx_errors`` rather than read past its end.

Kernel behaviour kept although it looks odd, so that counters and outcomes match:

* The window check runs before ``reorder_skip`` resynchronises, so the very first sequenced
  packet of a session is only accepted if its number is within half the space above 0.
* With reordering off, ``nr_oos_count`` is only reset by a non-consecutive out-of-order
  packet, never by an in-order one.

Time is a float in seconds passed in by the caller; ``reorder_timeout`` 0 (or less) means no
reordering, and then a packet that has to wait behind held ones is held for at most one second,
as the kernel's ``HZ``. Queue entries are ``[ns, has_seq, expires, payload, length]`` lists.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from pyl2tp.wire.constants import FLAG_O, FLAG_S, L2SPEC_S_BIT, L2SPEC_SEQ_MASK, L2SpecType

from .model import Session
from .xmit import set_header

__all__ = ["handle_timer", "next_deadline", "purge", "recv_common", "set_fast_path"]

# One precompiled unpacker serves both the v2 Ns/Nr pair (Ns is the high half) and the v3
# sublayer word; unpack_from raising on a short buffer doubles as the truncation check, which
# costs nothing when the packet is whole. Measured faster than int.from_bytes on a slice.
_unpack_u32 = struct.Struct(">I").unpack_from
_unpack_u16 = struct.Struct(">H").unpack_from
_StructError = struct.error

_L2SPEC_DEFAULT = int(L2SpecType.DEFAULT)
# How long a packet may wait in the queue when the session does not reorder (the kernel's HZ).
_UNSEQUENCED_HOLD = 1.0

# Indexes into a reorder-queue entry.
_NS = 0
_HAS_SEQ = 1
_EXPIRES = 2
_PAYLOAD = 3
_LENGTH = 4


def set_fast_path(session: Session) -> None:
    """Decide whether the I/O layer may hand ``session``'s packets over without this module.

    A session that checks no cookie and neither requires (``recv_seq``) nor sends
    (``send_seq``) sequence numbers does, for a packet without a sequence number (no v2 ``S``
    or ``O`` bit, no ``S`` bit in the v3 default sublayer) and an empty reorder queue, exactly
    what the fast path of :func:`recv_common` does: count ``rx_packets``/``rx_bytes`` on the
    session and its tunnel and deliver what follows the header. Every other combination runs
    the general algorithm. ``session.rx_plain`` is -1 when the session never qualifies, else
    the length of the sublayer to skip (4 for the v3 default sublayer, 0 otherwise); the
    per-packet conditions (bits, queue) stay with the caller. Call this after every change to
    ``peer_cookie``, ``recv_seq``, ``send_seq`` or ``l2spec_type``, as with ``set_header``.
    """
    if session.peer_cookie or session.recv_seq or session.send_seq:
        session.rx_plain = -1
    elif session.tunnel.version != 2 and session.l2spec_type == _L2SPEC_DEFAULT:
        session.rx_plain = 4
    else:
        session.rx_plain = 0


def recv_common(
    session: Session, data: bytes | bytearray, ptr: int, hdrflags: int, length: int, now: float
) -> None:
    """Accept, hold or discard one data packet of ``session`` and deliver whatever is now due.

    ``data`` starts at the L2TP header (UDP) or at the session id (IP encapsulation), ``ptr``
    is the offset just past the session id, ``hdrflags`` is the v2 flags word (0 for v3) and
    ``length`` is what ``rx_bytes`` counts. Never raises on malformed input: the packet is
    dropped and counted instead, because a peer must not be able to break the receive loop.
    ``data`` may be a bytearray (a copy the caller made from its receive buffer): what is
    delivered or held is sliced from it, so it belongs to the session from then on.
    """
    stats: Any = session.stats
    cookie = session.peer_cookie
    if cookie:
        if not data.startswith(cookie, ptr):
            _cookie_mismatch(session, data, ptr)
            return
        ptr += len(cookie)

    # has_seq is the flag bit itself, not a bool: truth is all that is asked of it, and a
    # bool() call would be the most expensive operation of the fast path.
    tunnel = session.tunnel
    ns = 0
    has_seq: int
    if tunnel.version == 2:
        has_seq = hdrflags & FLAG_S
        if has_seq:
            # Nr follows Ns; the kernel ignores it but the packet must hold it.
            try:
                ns = _unpack_u32(data, ptr)[0] >> 16
            except _StructError:
                stats.rx_errors += 1
                return
            ptr += 4
    elif session.l2spec_type == _L2SPEC_DEFAULT:
        try:
            l2h = _unpack_u32(data, ptr)[0]
        except _StructError:
            stats.rx_errors += 1
            return
        ptr += 4
        has_seq = l2h & L2SPEC_S_BIT
        ns = l2h & L2SPEC_SEQ_MASK
    else:
        has_seq = 0

    if has_seq:
        if not session.send_seq and not session.lns_mode:
            # We are the LAC and the LNS has started sequencing: follow it.
            session.send_seq = True
            set_header(session)
            set_fast_path(session)
    else:
        if session.recv_seq:
            stats.rx_seq_discards += 1
            stats.rx_errors += 1
            return
        if session.send_seq:
            if session.lns_mode:
                # We are the LNS and sequence: a LAC that stops is broken.
                stats.rx_seq_discards += 1
                stats.rx_errors += 1
                return
            # We are the LAC and the LNS has stopped sequencing: follow it.
            session.send_seq = False
            set_header(session)
            set_fast_path(session)

    if hdrflags & FLAG_O and tunnel.version == 2:
        try:
            ptr += 2 + _unpack_u16(data, ptr)[0]
        except _StructError:
            stats.rx_errors += 1
            return
        if len(data) < ptr:
            stats.rx_errors += 1
            return

    q = session.reorder_q
    if not has_seq:
        if not q:
            # Fast path: what the kernel's append-then-dequeue amounts to on an empty queue.
            tstats: Any = tunnel.stats
            tstats.rx_packets += 1
            tstats.rx_bytes += length
            stats.rx_packets += 1
            stats.rx_bytes += length
            session.deliver(data[ptr:])
            return
        entry: list[Any] = [0, False, now + _hold_time(session), data[ptr:], length]
        q.append(entry)
    else:
        nr = session.nr
        distance = ns - nr if ns >= nr else session.nr_max + 1 - (nr - ns)
        if distance >= session.nr_window_size:
            # Outside the window: old, duplicate or absurdly far ahead (rx_errors only).
            stats.rx_errors += 1
            return
        if not q and ns == nr:
            # Fast path: the expected packet with nothing held.
            session.reorder_skip = False
            session.nr = (nr + 1) & session.nr_max
            tstats = tunnel.stats
            tstats.rx_packets += 1
            tstats.rx_bytes += length
            stats.rx_packets += 1
            stats.rx_bytes += length
            session.deliver(data[ptr:])
            return
        entry = [ns, True, now + _hold_time(session), data[ptr:], length]
        if session.reorder_timeout > 0:
            _queue_sorted(session, entry)
        elif ns == nr:
            q.append(entry)
        else:
            nr_next = (session.nr_oos + 1) & session.nr_max
            session.nr_oos_count = session.nr_oos_count + 1 if ns == nr_next else 0
            session.nr_oos = ns
            if session.nr_oos_count > session.nr_oos_count_max:
                # A run of consecutive packets all "out of sequence": the peer restarted or
                # we lost a burst; resynchronise on this one.
                session.reorder_skip = True
            if not session.reorder_skip:
                stats.rx_seq_discards += 1
                stats.rx_errors += 1
                return
            q.append(entry)

    _dequeue(session, now)
    if len(q) > session.reorder_q_max:
        _unqueue(session, entry)


def handle_timer(session: Session, now: float) -> None:
    """Expire held packets whose time has come and deliver what that unblocks.

    The kernel has no such timer (see the module docstring); this is its dequeue walk run at
    the deadline :func:`next_deadline` reported instead of at the next packet's arrival.
    """
    if session.reorder_q:
        _dequeue(session, now)


def next_deadline(session: Session) -> float | None:
    """When :func:`handle_timer` should next run for ``session``, or None if nothing is held.

    Only the head of the queue matters: the dequeue walk stops at the first held packet that
    is still waiting, so a later packet's expiry cannot change anything until the head goes.
    The returned instant is the first float after the head's ``expires``, because a packet
    expires strictly after that time (the kernel's ``time_after``); calling
    :func:`handle_timer` with it therefore always makes progress and a timer cannot spin.
    """
    q = session.reorder_q
    if not q:
        return None
    expires: float = q[0][_EXPIRES]
    return math.nextafter(expires, math.inf)


def purge(session: Session) -> None:
    """Drop everything held for ``session`` when it is deleted, counting each as ``rx_errors``.

    The queue is emptied in place so that a dequeue walk that is delivering (and whose
    pseudowire handler deleted the session) sees the queue empty and stops.
    """
    q = session.reorder_q
    stats: Any = session.stats
    stats.rx_errors += len(q)
    q.clear()


def _hold_time(session: Session) -> float:
    """How long a packet may be held: the reorder timeout, or one second when not reordering."""
    timeout = session.reorder_timeout
    return timeout if timeout > 0 else _UNSEQUENCED_HOLD


def _cookie_mismatch(session: Session, data: bytes | bytearray, ptr: int) -> None:
    """Count a packet whose peer cookie did not match.

    A packet too short even for its cookie and sublayer is a truncated packet, not a wrong
    cookie, and counts only ``rx_errors`` (as in kernels that checked this first).
    """
    stats: Any = session.stats
    needed = ptr + len(session.peer_cookie)
    if session.tunnel.version != 2 and session.l2spec_type == _L2SPEC_DEFAULT:
        needed += 4
    if len(data) >= needed:
        stats.rx_cookie_discards += 1
    stats.rx_errors += 1


def _queue_sorted(session: Session, entry: list[Any]) -> None:
    """Insert a sequenced packet before the first held packet further ahead of ``nr``.

    ``l2tp_recv_queue_skb`` compares raw numbers; comparing distances from ``nr`` gives the
    same order except across the wrap, where the kernel's order loses packets.
    """
    q = session.reorder_q
    nr = session.nr
    mask = session.nr_max
    ahead = (entry[_NS] - nr) & mask
    for index, held in enumerate(q):
        if (held[_NS] - nr) & mask > ahead:
            q.insert(index, entry)
            oos_stats: Any = session.stats
            oos_stats.rx_oos_packets += 1
            return
    q.append(entry)


def _dequeue(session: Session, now: float) -> None:
    """Deliver from the head of the queue while it holds the expected packet.

    The kernel restarts its walk from the head after each delivery; since everything it walks
    past is either delivered or dropped, that is the same as always looking at the head, which
    is also what keeps this correct if a delivery re-enters the receive path.
    """
    q = session.reorder_q
    stats: Any = session.stats
    while q:
        entry = q[0]
        if now > entry[_EXPIRES]:
            del q[0]
            stats.rx_seq_discards += 1
            stats.rx_errors += 1
            session.reorder_skip = True
            continue
        if entry[_HAS_SEQ]:
            if session.reorder_skip:
                session.reorder_skip = False
                session.nr = entry[_NS]
            if entry[_NS] != session.nr:
                return
        del q[0]
        length = entry[_LENGTH]
        tstats: Any = session.tunnel.stats
        tstats.rx_packets += 1
        tstats.rx_bytes += length
        stats.rx_packets += 1
        stats.rx_bytes += length
        if entry[_HAS_SEQ]:
            session.nr = (session.nr + 1) & session.nr_max
        session.deliver(entry[_PAYLOAD])


def _unqueue(session: Session, entry: list[Any]) -> None:
    """Discard ``entry`` if it is still held: the queue bound, which the kernel does not have.

    Checked after the dequeue walk so that the packet that fills a gap is never the one
    refused; if the queue is still over its bound, nothing was released and ``entry`` is held.
    """
    q = session.reorder_q
    for index in range(len(q) - 1, -1, -1):
        if q[index] is entry:
            del q[index]
            stats: Any = session.stats
            stats.rx_seq_discards += 1
            stats.rx_errors += 1
            return
