"""Frames the generator sends, built once per measurement and handed to it as a template file.

Inner traffic is IPv4/UDP with 64 distinct flows (source ports), so a multi-queue TAP spreads
it over its queues. Ethernet frames carry a destination MAC that no device owns, so the
receiving kernel counts the frame on the device and drops it as PACKET_OTHERHOST without
answering; IP packets for TUN devices go to an address nobody routes, and the namespaces do
not forward, so they are counted and dropped the same way. Sizes are the whole inner frame
(what the pseudowire carries): Ethernet header included for TAP, the IP packet for TUN.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

FLOWS = 64
SINK_MAC = bytes.fromhex("020000000002")  # owned by no device: dropped as other-host
SOURCE_MAC = bytes.fromhex("020000000001")
INNER_SRC = "10.250.0.1"
INNER_DST = "10.251.0.1"  # routed nowhere; no namespace forwards


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip4(addr: str) -> bytes:
    return bytes(int(x) for x in addr.split("."))


def ipv4_udp(size: int, sport: int, dport: int, src: str = INNER_SRC, dst: str = INNER_DST,
             payload: bytes | None = None) -> bytes:
    """An IPv4/UDP packet of exactly ``size`` bytes (UDP checksum 0: allowed for IPv4)."""
    if payload is None:
        if size < 28:
            raise ValueError(f"an IPv4/UDP packet needs at least 28 bytes, not {size}")
        payload = bytes(size - 28)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                      _ip4(src), _ip4(dst))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + udp


def ethernet(dst: bytes, src: bytes, payload: bytes, ethertype: int = 0x0800) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def inner_frame(kind: str, size: int, flow: int) -> bytes:
    """One inner frame of ``size`` bytes: an Ethernet frame (``tap``) or an IP packet (``tun``)."""
    if kind == "tap":
        return ethernet(SINK_MAC, SOURCE_MAC, ipv4_udp(size - 14, 10000 + flow, 9))
    if kind == "tun":
        return ipv4_udp(size, 10000 + flow, 9)
    raise ValueError(kind)


def inner_templates(kind: str, size: int, n_ifs: int) -> list[tuple[int, bytes]]:
    """(interface slot, frame) pairs: traffic spread round-robin over ``n_ifs`` interfaces,
    each of them seeing several flows."""
    count = max(FLOWS, n_ifs)
    count += -count % n_ifs
    return [(i % n_ifs, inner_frame(kind, size, i % FLOWS)) for i in range(count)]


def encapsulated_templates(size: int, dst_mac: bytes, src_mac: bytes, src_ip: str, dst_ip: str,
                           dport: int, headers: Sequence[bytes], kind: str = "tap",
                           sport: int | None = None) -> list[tuple[int, bytes]]:
    """Outer Ethernet/IPv4/UDP packets carrying ``headers[i] + inner frame`` to ``dport``,
    as a tunnel peer would send them (for the one-sided "decap" measurements). One template per
    header, so a header list spreads traffic over sessions or workers; the outer source port
    varies with the flow unless ``sport`` fixes it (a tunnel checks its peer's port)."""
    out = []
    count = max(FLOWS, len(headers))
    count += -count % len(headers)
    for i in range(count):
        inner = inner_frame(kind, size, i % FLOWS)
        body = headers[i % len(headers)] + inner
        pkt = ipv4_udp(28 + len(body), sport or 20000 + i % FLOWS, dport, src_ip, dst_ip,
                       payload=body)
        out.append((0, ethernet(dst_mac, src_mac, pkt)))
    return out


def write_templates(path: str, templates: Sequence[tuple[int, bytes]]) -> None:
    with open(path, "wb") as f:
        for slot, frame in templates:
            f.write(struct.pack("!HH", slot, len(frame)) + frame)
