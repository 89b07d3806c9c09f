"""Transmit headers, precomputed per session as the kernel does in ``l2tp_session_set_header_len``.

A session's header only changes when ``send_seq`` changes or the ids/cookies change, so it is
built once into ``session.tx_prefix``; per packet only the sequence number (if any) is packed.
When no sequence number is sent the whole header is constant and kept in
``session.tx_header``, so the transmit path concatenates once and calls nothing.
"""

from __future__ import annotations

import struct

from pyl2tp.wire.constants import L2SPEC_S_BIT, EncapType, L2SpecType

from .model import Session

_V2_DATA = 0x0002
_V2_DATA_SEQ = 0x0802
# Plain ints: comparing against an enum member costs a class attribute lookup per packet.
_L2SPEC_DEFAULT = int(L2SpecType.DEFAULT)
_ENCAP_UDP = int(EncapType.UDP)
_NO_SEQ_SUBLAYER = b"\x00\x00\x00\x00"
_pack_hh = struct.Struct(">HH").pack
_pack_i = struct.Struct(">I").pack


def set_header(session: Session) -> None:
    """Recompute ``tx_prefix``, ``hdr_len`` and ``tx_header``; call after any change to ids,
    cookie or send_seq.

    Like the kernel, v2 data headers never carry L, O or P bits and Nr is always 0; with the v3
    l2spec type ``none`` no sequence number can be sent even if ``send_seq`` is set.
    """
    tunnel = session.tunnel
    if tunnel.version == 2:
        flags = _V2_DATA_SEQ if session.send_seq else _V2_DATA
        session.tx_prefix = struct.pack(
            ">HHH", flags, tunnel.peer_tunnel_id & 0xFFFF, session.peer_session_id & 0xFFFF
        )
        session.hdr_len = 6 + (4 if session.send_seq else 0)
        session.tx_header = None if session.send_seq else session.tx_prefix
        return
    prefix = b"\x00\x03\x00\x00" if tunnel.encap == _ENCAP_UDP else b""
    prefix += _pack_i(session.peer_session_id) + session.cookie
    session.tx_prefix = prefix
    sublayer = session.l2spec_type == _L2SPEC_DEFAULT
    session.hdr_len = len(prefix) + (4 if sublayer else 0)
    if not sublayer:
        session.tx_header = prefix
    else:
        session.tx_header = None if session.send_seq else prefix + _NO_SEQ_SUBLAYER


def header(session: Session) -> bytes:
    """The header for the next transmitted packet, consuming a sequence number when sending one."""
    if session.tunnel.version == 2:
        if not session.send_seq:
            return session.tx_prefix
        ns = session.ns
        session.ns = (ns + 1) & 0xFFFF
        return session.tx_prefix + _pack_hh(ns, 0)
    if session.l2spec_type != _L2SPEC_DEFAULT:
        return session.tx_prefix
    if not session.send_seq:
        return session.tx_prefix + _NO_SEQ_SUBLAYER
    ns = session.ns
    session.ns = (ns + 1) & 0xFFFFFF
    return session.tx_prefix + _pack_i(L2SPEC_S_BIT | ns)
