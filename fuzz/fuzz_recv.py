"""Harness: the data-plane receive algorithm (``pyl2tp.dataplane.recv``) of one session.

Input: two configuration octets, then operations until the input ends.

* config 1: bit 0 L2TPv3 (else v2), bit 1 IP encapsulation (v3), bits 2-3 cookie length
  (0, 4, 8), bit 4 default L2-Specific Sublayer (v3), bit 5 ``recv_seq``, bit 6 ``send_seq``,
  bit 7 ``lns_mode``;
* config 2: bits 0-1 reorder timeout (0, 50 ms, 300 ms, 1 s), bits 2-3 reorder queue bound
  (1024, 4, 1, 2), bits 4-6 ``nr_oos_count_max``, bit 7 leave out the backend's length
  check before ``recv_common`` (the function promises to cope either way);
* each operation is one octet (its value modulo 3) then its operands: 0 a raw datagram
  (16-bit length, bytes; a bytearray when the octet's top bit is set, as the backend's
  receive buffer copies are), dispatched the way ``dataplane.userspace`` does; 1 a forged
  data packet (flags octet, 32-bit sequence number, offset pad length, payload) with the
  right or a wrong cookie; 2 the clock advances (the reorder timer fires at each deadline
  it passes, as the backend's loop timer does).

Contract: ``recv_common`` and ``handle_timer`` never raise; every delivery is counted in
``rx_packets`` of session and tunnel; the reorder queue never exceeds its bound; a deadline
is reported exactly when something is held.
"""

from __future__ import annotations

import socket
import struct

from fuzz.common import Reader, entry, instrumented, main

with instrumented(__name__):
    from pyl2tp.dataplane import recv, xmit
    from pyl2tp.dataplane.model import STATS_FIELDS, Session, Tunnel
    from pyl2tp.wire.constants import EncapType, L2SpecType, PwType

_COOKIES = (b"", b"\xc0\x0c\x1e\x01", b"\xc0\x0c\x1e\x01\x0b\xad\xf0\x0d")
_TIMEOUTS = (0.0, 0.05, 0.3, 1.0)
_QUEUE_MAX = (1024, 4, 1, 2)
TID, PEER_TID, SID, PEER_SID = 0x1111, 0x2222, 0x3333, 0x4444
MAX_OPS = 200


class _Rig:
    """One tunnel and one session; deliveries are collected."""

    def __init__(self, cfg: int, cfg2: int) -> None:
        version = 3 if cfg & 1 else 2
        self.ip = version == 3 and bool(cfg & 2)
        self.tunnel = Tunnel(TID, PEER_TID, version, EncapType.IP if self.ip else EncapType.UDP,
                             family=socket.AF_INET, local="192.0.2.1", remote="192.0.2.2",
                             udp_sport=1701, udp_dport=1701)
        cookie = _COOKIES[(cfg >> 2) % 3] if version == 3 else b""
        self.session = Session(
            self.tunnel, SID, PEER_SID, PwType.ETH if version == 3 else PwType.PPP,
            cookie=cookie[::-1], peer_cookie=cookie,
            l2spec_type=L2SpecType.DEFAULT if version == 3 and cfg & 16 else L2SpecType.NONE,
            recv_seq=bool(cfg & 32), send_seq=bool(cfg & 64), lns_mode=bool(cfg & 128),
            reorder_timeout=_TIMEOUTS[cfg2 & 3])
        self.session.reorder_q_max = _QUEUE_MAX[(cfg2 >> 2) & 3]
        self.session.nr_oos_count_max = (cfg2 >> 4) & 7
        self.precheck = not cfg2 & 128
        self.tunnel.sessions[SID] = self.session
        self.delivered: list[bytes | bytearray] = []
        self.session.deliver = self.delivered.append
        xmit.set_header(self.session)
        self.now = 0.0

    def datagram(self, data: bytes | bytearray) -> None:
        """What ``UserspaceBackend._udp_readable``/``_ip_readable`` do before ``recv_common``,
        with the session lookup taken as a hit."""
        session = self.session
        sublayer = 4 if session.l2spec_type == L2SpecType.DEFAULT else 0
        if self.ip:
            if len(data) < 4 or struct.unpack_from(">I", data)[0] == 0:
                return  # short, or a control message
            if self.precheck and len(data) < 4 + len(session.peer_cookie) + sublayer:
                return
            recv.recv_common(session, data, 4, 0, len(data), self.now)
            return
        if len(data) < 8 or data[0] & 0x80:
            return  # short, or a control message
        flags = (data[0] << 8) | data[1]
        version = flags & 0xF
        if version != self.tunnel.version:
            return
        ptr = (4 if flags & 0x4000 else 2) + 4 if version == 2 else 8
        if (version == 3 and self.precheck
                and len(data) < ptr + len(session.peer_cookie) + sublayer):
            return
        recv.recv_common(session, data, ptr, flags, len(data), self.now)

    def forged(self, r: Reader) -> None:
        """A data packet built from fields, so that sequence numbers and cookies are right
        often enough for the reorder queue to fill and drain."""
        bits = r.u8()
        ns = r.u32() & self.session.nr_max
        pad = r.u8() if bits & 4 else None
        payload = r.small_chunk()
        session = self.session
        if self.tunnel.version == 2:
            flags = 0x0002
            body = struct.pack(">HH", TID, SID)
            if bits & 1:
                flags |= 0x0800
                body += struct.pack(">HH", ns, 0)
            if pad is not None:
                flags |= 0x0200
                body += struct.pack(">H", pad) + bytes(pad if not bits & 16 else pad // 2)
            if bits & 8:
                flags |= 0x4000
                total = 4 + len(body) + len(payload)
                self.datagram(struct.pack(">HH", flags, total) + body + payload)
            else:
                self.datagram(struct.pack(">H", flags) + body + payload)
            return
        cookie = session.peer_cookie if bits & 2 else session.peer_cookie[::-1]
        body = struct.pack(">I", SID) + cookie
        if session.l2spec_type == L2SpecType.DEFAULT:
            body += struct.pack(">I", (0x40000000 | ns) if bits & 1 else 0)
        prefix = b"" if self.ip else b"\x00\x03\x00\x00"
        self.datagram(prefix + body + payload)

    def advance(self, step: int) -> None:
        """Time passes; the backend's timer fires at every deadline on the way."""
        until = self.now + (step & 0x7F) * (1.0 if step & 0x80 else 0.01)
        for _ in range(4 * self.session.reorder_q_max + 8):
            deadline = recv.next_deadline(self.session)
            if deadline is None or deadline > until:
                break
            self.now = deadline
            recv.handle_timer(self.session, self.now)
        self.now = until

    def check(self) -> None:
        session, tunnel = self.session, self.tunnel
        assert len(session.reorder_q) <= session.reorder_q_max
        assert session.stats.rx_packets == tunnel.stats.rx_packets == len(self.delivered)
        for name in STATS_FIELDS:
            assert getattr(session.stats, name) >= 0
        assert (recv.next_deadline(session) is None) == (not session.reorder_q)
        assert 0 <= session.nr <= session.nr_max


@entry
def test_one_input(data: bytes) -> None:
    r = Reader(data)
    rig = _Rig(r.u8(), r.u8())
    for _ in range(MAX_OPS):
        if not r.remaining:
            break
        code = r.u8()
        op = code % 3
        if op == 0:
            raw = r.chunk()
            # The backend may hand over a bytearray copy of its receive buffer.
            rig.datagram(bytearray(raw) if code & 0x80 else raw)
        elif op == 1:
            rig.forged(r)
        else:
            rig.advance(r.u8())
        rig.check()


if __name__ == "__main__":
    main(test_one_input)
