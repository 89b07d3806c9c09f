"""Capture files: write and read classic pcap, build and strip Ethernet/IP/UDP frames.

Why this exists: an operator debugging a tunnel wants a file Wireshark can open, and the test
suite wants to hand our encoder's bytes to an independent dissector (tshark) without sending a
single packet. Both only need the capture *file* format and correct outer headers, so this
module is pure byte manipulation: no sockets, no clock, no third-party packages.

Format notes (classic libpcap, the format every tool reads):

* global header: magic, version 2.4, thiszone, sigfigs, snaplen, link type (24 octets);
* per record: seconds, micro- (or nano-)seconds, captured length, original length (16 octets).

The reader accepts both byte orders and both timestamp resolutions, masks the link-type word to
its low 16 bits (the upper bits carry FCS metadata; fuzzed files such as tcpdump's
``l2tp-avp-overflow.pcap`` set them), also reads pcapng (what ``dumpcap`` writes by default),
and treats a file cut short as the end of the capture rather than an error, because captures
from a killed process or a full disk are exactly the ones an operator needs to look at.
"""

from __future__ import annotations

import ipaddress
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

LINKTYPE_NULL = 0  # BSD loopback: 4-octet address family in host byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # bare IPv4 or IPv6, version from the first nibble
LINKTYPE_LOOP = 108  # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL = 113  # Linux "cooked" capture (tcpdump -i any)
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
_ETHERTYPE_VLAN = frozenset({0x8100, 0x88A8, 0x9100})

IPPROTO_UDP = 17
IPPROTO_L2TP = 115
L2TP_PORT = 1701

# Locally administered unicast MACs: obviously fake, never collide with a real NIC's OUI.
SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BOM = 0x1A2B3C4D
DEFAULT_SNAPLEN = 262144  # what current libpcap uses; large enough for any jumbo frame

_GLOBAL_HDR = struct.Struct("IHHiIII")
_RECORD_HDR = struct.Struct("IIII")

__all__ = [
    "DEFAULT_SNAPLEN",
    "DST_MAC",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "IPPROTO_L2TP",
    "IPPROTO_UDP",
    "L2TP_PORT",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "SRC_MAC",
    "IpInfo",
    "PcapWriter",
    "extract_l2tp",
    "internet_checksum",
    "ip_frame",
    "ip_info",
    "linux_sll_header",
    "read_pcap",
    "udp_frame",
]


# ---------------------------------------------------------------------------------------------
# Writing


class PcapWriter:
    """Append frames to a classic pcap stream (little-endian, microsecond timestamps).

    The global header is written immediately, so even a capture that records nothing is a
    valid file. The caller owns ``fileobj`` (it is flushed by :meth:`close`, never closed):
    that lets the same writer target a file, a pipe into Wireshark, or a ``BytesIO`` in tests.
    Frames longer than ``snaplen`` are truncated with their original length preserved, exactly
    as a real capture engine would record them.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        linktype: int = LINKTYPE_ETHERNET,
        *,
        snaplen: int = DEFAULT_SNAPLEN,
        nanosecond: bool = False,
    ) -> None:
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"link type {linktype} out of range")
        if snaplen <= 0:
            raise ValueError("snaplen must be positive")
        self._f = fileobj
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self.count = 0
        magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
        self._f.write(struct.pack("<" + _GLOBAL_HDR.format, magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, frame: bytes, ts: float) -> None:
        """Record one frame captured at ``ts`` (seconds since the Unix epoch)."""
        if not math.isfinite(ts) or ts < 0 or ts >= 2**32:
            raise ValueError(f"timestamp {ts!r} does not fit a pcap record")
        scale = 1_000_000_000 if self.nanosecond else 1_000_000
        # Round on the total tick count so that 1.9999999 becomes 2.000000, not 1.1000000.
        ticks = round(ts * scale)
        sec, frac = divmod(ticks, scale)
        if sec >= 2**32:
            raise ValueError(f"timestamp {ts!r} does not fit a pcap record")
        caplen = min(len(frame), self.snaplen)
        self._f.write(struct.pack("<" + _RECORD_HDR.format, sec, frac, caplen, len(frame)))
        self._f.write(frame[:caplen])
        self.count += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        """Flush; the file object stays open because the caller opened it."""
        self._f.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Reading


def read_pcap(source: str | os.PathLike[str] | bytes | bytearray | memoryview,
              ) -> Iterator[tuple[float, int, bytes]]:
    """Yield ``(timestamp, linktype, frame)`` for every record of a pcap or pcapng capture.

    ``source`` is a path or the file's bytes. A record cut short by the end of the file is
    yielded with the octets that are present and ends the iteration; a record header cut
    short ends it silently. An unknown magic number raises ``ValueError`` before anything is
    yielded, because that is a wrong file, not a damaged one.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        with open(source, "rb") as f:
            data = f.read()
    if len(data) < 4:
        raise ValueError("not a capture file: shorter than a magic number")
    if struct.unpack_from("<I", data)[0] == _PCAPNG_SHB:
        yield from _read_pcapng(data)
    else:
        yield from _read_classic(data)


def _read_classic(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    magic_le = struct.unpack_from("<I", data)[0]
    magic_be = struct.unpack_from(">I", data)[0]
    if magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        endian, magic = "<", magic_le
    elif magic_be in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        endian, magic = ">", magic_be
    else:
        raise ValueError(f"not a pcap file: magic {data[:4].hex()}")
    if len(data) < _GLOBAL_HDR.size:
        return
    hdr = struct.unpack_from(endian + _GLOBAL_HDR.format, data)
    # The upper 16 bits of the link-type word hold FCS-length metadata, not the link type.
    linktype = hdr[6] & 0xFFFF
    scale = 1e9 if magic == PCAP_MAGIC_NS else 1e6
    rec = struct.Struct(endian + _RECORD_HDR.format)
    pos = _GLOBAL_HDR.size
    while pos + rec.size <= len(data):
        sec, frac, caplen, _origlen = rec.unpack_from(data, pos)
        pos += rec.size
        frame = data[pos : pos + caplen]
        pos += caplen
        yield sec + frac / scale, linktype, frame
        if len(frame) < caplen:
            return


def _read_pcapng(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    """Enhanced, simple and obsolete packet blocks; per-interface link type and ``if_tsresol``.

    Blocks we do not need (name resolution, statistics, custom) are skipped by their length.
    """
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per tick)
    pos = 0
    n = len(data)
    while pos + 12 <= n:
        btype = struct.unpack_from(endian + "I", data, pos)[0]
        if btype == _PCAPNG_SHB:
            bom = data[pos + 8 : pos + 12]
            if bom == struct.pack("<I", _PCAPNG_BOM):
                endian = "<"
            elif bom == struct.pack(">I", _PCAPNG_BOM):
                endian = ">"
            else:
                raise ValueError("pcapng section header with an unknown byte-order magic")
            interfaces = []  # interface ids are per section
        blen = struct.unpack_from(endian + "I", data, pos + 4)[0]
        if blen < 12 or blen % 4:
            return  # a damaged block length makes the rest unparseable
        body = data[pos + 8 : min(pos + blen - 4, n)]
        truncated = pos + blen > n
        if btype == 1 and len(body) >= 8:  # Interface Description Block
            linktype = struct.unpack_from(endian + "H", body)[0]
            interfaces.append((linktype, _if_tsresol(body[8:], endian)))
        elif btype in (6, 2) and len(body) >= 20:  # Enhanced / obsolete Packet Block
            if btype == 6:
                iface, ts_hi, ts_lo, caplen, _orig = struct.unpack_from(endian + "IIIII", body)
            else:
                iface, _drops, ts_hi, ts_lo, caplen, _orig = struct.unpack_from(
                    endian + "HHIIII", body)
            if iface < len(interfaces):
                linktype, unit = interfaces[iface]
                frame = body[20 : 20 + caplen]
                yield ((ts_hi << 32) | ts_lo) * unit, linktype, frame
        elif btype == 3 and len(body) >= 4 and interfaces:  # Simple Packet Block
            orig = struct.unpack_from(endian + "I", body)[0]
            yield 0.0, interfaces[0][0], body[4 : 4 + orig]
        if truncated:
            return
        pos += blen


def _if_tsresol(options: bytes, endian: str) -> float:
    """Seconds per timestamp tick from an IDB's options (default: microseconds)."""
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(endian + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1 and pos + 5 <= len(options):
            v = options[pos + 4]
            return float(2 ** -(v & 0x7F)) if v & 0x80 else float(10 ** -(v & 0x7F))
        pos += 4 + length + (-length % 4)
    return 1e-6


# ---------------------------------------------------------------------------------------------
# Building frames


def internet_checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum, as used by the IPv4 header, UDP and ICMP."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _addresses(src: str, dst: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address,
                                             ipaddress.IPv4Address | ipaddress.IPv6Address]:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version != d.version:
        raise ValueError(f"{src} and {dst} are not the same address family")
    return s, d


def _pseudo_header(src: ipaddress.IPv4Address | ipaddress.IPv6Address,
                   dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
                   proto: int, length: int) -> bytes:
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, proto)


def _ethernet(ethertype: int, payload: bytes) -> bytes:
    return DST_MAC + SRC_MAC + struct.pack("!H", ethertype) + payload


def ip_frame(src: str, dst: str, proto: int, payload: bytes, *, ethernet: bool = True,
             ttl: int = 64) -> bytes:
    """An IPv4 or IPv6 packet (family from the addresses), optionally inside Ethernet.

    The IPv4 header gets a correct checksum and DF set (L2TP relies on path MTU handling,
    never on fragmentation); with ``ethernet=False`` the result suits ``LINKTYPE_RAW``.
    The payload is carried as is: callers that need a transport checksum compute it (see
    :func:`udp_frame`).
    """
    s, d = _addresses(src, dst)
    if not 0 <= proto <= 255:
        raise ValueError(f"IP protocol {proto} out of range")
    if s.version == 4:
        total = 20 + len(payload)
        if total > 0xFFFF:
            raise ValueError("IPv4 packet longer than 65535 octets")
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, ttl, proto, 0,
                          s.packed, d.packed)
        hdr = hdr[:10] + struct.pack("!H", internet_checksum(hdr)) + hdr[12:]
        ethertype = ETHERTYPE_IPV4
    else:
        if len(payload) > 0xFFFF:
            raise ValueError("IPv6 payload longer than 65535 octets (jumbograms unsupported)")
        hdr = struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, ttl, s.packed, d.packed)
        ethertype = ETHERTYPE_IPV6
    packet = hdr + payload
    return _ethernet(ethertype, packet) if ethernet else packet


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes, *,
              ethernet: bool = True) -> bytes:
    """A UDP datagram in IPv4 or IPv6 with a correct UDP checksum.

    The checksum is always filled in (RFC 2661 §8.1 and RFC 3931 §4.1.2.3 want it on control
    messages; IPv6 requires it), with a computed 0 sent as 0xFFFF as RFC 768 prescribes.
    """
    s, d = _addresses(src, dst)
    for port in (sport, dport):
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"UDP port {port} out of range")
    length = 8 + len(payload)
    if length > 0xFFFF:
        raise ValueError("UDP datagram longer than 65535 octets")
    header = struct.pack("!HHHH", sport, dport, length, 0)
    csum = internet_checksum(_pseudo_header(s, d, IPPROTO_UDP, length) + header + payload)
    header = header[:6] + struct.pack("!H", csum or 0xFFFF)
    return ip_frame(src, dst, IPPROTO_UDP, header + payload, ethernet=ethernet)


# ---------------------------------------------------------------------------------------------
# Stripping frames

_IPV6_EXT_HEADERS = frozenset({0, 43, 60, 135, 139, 140})  # hop-by-hop, routing, dest opts, ...
_IPV6_FRAGMENT = 44
_IPV6_AH = 51


def extract_l2tp(frame: bytes, linktype: int) -> tuple[str, bytes] | None:
    """The L2TP payload of a captured frame: ``("udp", bytes)`` when either UDP port is 1701,
    ``("ip", bytes)`` for IP protocol 115, otherwise None.

    Never raises on garbage: every length is checked against the octets actually captured.
    A truncated capture (snaplen, or a fuzzed length field larger than the frame) yields the
    octets that are present, so the L2TP decoder, not this function, judges them. Fragments
    yield None: a piece of an L2TP message is not something the decoder can judge.
    """
    try:
        return _extract(memoryview(bytes(frame)), linktype)
    except (struct.error, IndexError, ValueError):  # defensive: every read is bounds-checked
        return None


def _extract(buf: memoryview, linktype: int) -> tuple[str, bytes] | None:
    n = len(buf)
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return None
        ethertype = (buf[12] << 8) | buf[13]
        pos = 14
        while ethertype in _ETHERTYPE_VLAN:
            if n < pos + 4:
                return None
            ethertype = (buf[pos + 2] << 8) | buf[pos + 3]
            pos += 4
        return _from_ethertype(buf[pos:], ethertype)
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return _from_ip(buf)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return None
        # The family is host-order for NULL; accept either order, IPv6 values differ by OS.
        return _from_ip(buf[4:])
    if linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return None
        return _from_ethertype(buf[16:], (buf[14] << 8) | buf[15])
    if linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return None
        return _from_ethertype(buf[20:], (buf[0] << 8) | buf[1])
    return None


def _from_ethertype(buf: memoryview, ethertype: int) -> tuple[str, bytes] | None:
    if ethertype not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return None
    return _from_ip(buf)


def _from_ip(buf: memoryview) -> tuple[str, bytes] | None:
    if not buf:
        return None
    version = buf[0] >> 4
    if version == 4:
        if len(buf) < 20:
            return None
        ihl = (buf[0] & 0x0F) * 4
        total = (buf[2] << 8) | buf[3]
        frag = ((buf[6] << 8) | buf[7]) & 0x3FFF  # MF bit + fragment offset
        if total == 0:
            total = len(buf)  # segmentation offload: the NIC fills Total Length in later
        if ihl < 20 or total < ihl or frag:
            return None
        # Ethernet pads short frames: trust Total Length when it is smaller than the capture.
        end = min(total, len(buf))
        if end < ihl:
            return None
        return _from_transport(buf[ihl:end], buf[9])
    if version == 6:
        if len(buf) < 40:
            return None
        plen = (buf[4] << 8) | buf[5]
        end = min(40 + plen, len(buf))
        nxt = buf[6]
        pos = 40
        while True:
            if nxt in _IPV6_EXT_HEADERS or nxt == _IPV6_AH:
                if end < pos + 2:
                    return None
                hlen = (buf[pos + 1] + 2) * 4 if nxt == _IPV6_AH else (buf[pos + 1] + 1) * 8
                nxt = buf[pos]
                pos += hlen
            elif nxt == _IPV6_FRAGMENT:
                if end < pos + 8:
                    return None
                offset_m = ((buf[pos + 2] << 8) | buf[pos + 3]) & 0xFFF9
                if offset_m:  # a real fragment; an atomic fragment (RFC 6946) is whole
                    return None
                nxt = buf[pos]
                pos += 8
            else:
                break
            if pos > end:
                return None
        return _from_transport(buf[pos:end], nxt)
    return None


def _from_transport(buf: memoryview, proto: int) -> tuple[str, bytes] | None:
    if proto == IPPROTO_L2TP:
        return "ip", bytes(buf)
    if proto != IPPROTO_UDP or len(buf) < 8:
        return None
    sport = (buf[0] << 8) | buf[1]
    dport = (buf[2] << 8) | buf[3]
    if L2TP_PORT not in (sport, dport):
        return None
    ulen = (buf[4] << 8) | buf[5]
    if ulen < 8:
        return None
    return "udp", bytes(buf[8 : min(ulen, len(buf))])


# ---------------------------------------------------------------------------------------------
# Live captures (``pyl2tp capture``)
#
# A capture on every interface mixes link types (Ethernet veths, the loopback, TUN devices with
# no link header at all), so it is written as LINKTYPE_LINUX_SLL, the "cooked" header tcpdump
# uses for ``-i any``: the packet type, the device's ARPHRD type and the protocol, then the IP
# packet. The filter needs the outer addresses, ports and fragment identity of each packet.

SLL_HEADER_LEN = 16


def linux_sll_header(protocol: int, *, pkttype: int = 0, hatype: int = 1,
                     addr: bytes = b"") -> bytes:
    """The 16-octet ``LINKTYPE_LINUX_SLL`` header: packet type (0 to us, 4 outgoing, ...),
    ARPHRD type, link-layer address (at most 8 octets kept), ethertype."""
    addr = bytes(addr[:8])
    return struct.pack("!HHH8sH", pkttype, hatype, len(addr), addr.ljust(8, b"\x00"),
                       protocol)


@dataclass(frozen=True, slots=True)
class IpInfo:
    """What a capture filter needs from an IP packet. ``sport``/``dport`` are None for a
    non-first fragment or a protocol without ports; ``frag_id`` identifies the datagram a
    fragment belongs to (None when the packet is not fragmented); ``offset`` is where the
    transport header (or the L2TP header, for protocol 115) starts."""

    src: str
    dst: str
    proto: int
    sport: int | None = None
    dport: int | None = None
    frag_id: int | None = None
    first: bool = True
    offset: int = 0


def ip_info(packet: bytes) -> IpInfo | None:
    """Addresses, transport protocol, ports and fragment identity of an IPv4 or IPv6
    packet; None for anything else or a header cut short. Never raises on garbage."""
    n = len(packet)
    if n < 1:
        return None
    version = packet[0] >> 4
    if version == 4:
        if n < 20:
            return None
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or n < ihl:
            return None
        flags_off = (packet[6] << 8) | packet[7]
        offset = flags_off & 0x1FFF
        more = bool(flags_off & 0x2000)
        ident = (packet[4] << 8) | packet[5] if (offset or more) else None
        src = str(ipaddress.IPv4Address(packet[12:16]))
        dst = str(ipaddress.IPv4Address(packet[16:20]))
        return _with_ports(IpInfo(src, dst, packet[9], frag_id=ident, first=offset == 0,
                                  offset=ihl), packet)
    if version == 6:
        if n < 40:
            return None
        src = str(ipaddress.IPv6Address(packet[8:24]))
        dst = str(ipaddress.IPv6Address(packet[24:40]))
        nxt, pos = packet[6], 40
        frag_id: int | None = None
        first = True
        while nxt in _IPV6_EXT_HEADERS or nxt in (_IPV6_AH, _IPV6_FRAGMENT):
            if n < pos + 8:
                return IpInfo(src, dst, nxt, offset=pos)
            if nxt == _IPV6_FRAGMENT:
                off_m = (packet[pos + 2] << 8) | packet[pos + 3]
                if off_m & 0xFFF9:
                    frag_id = struct.unpack_from("!I", packet, pos + 4)[0]
                    first = off_m & 0xFFF8 == 0
                hlen = 8
            elif nxt == _IPV6_AH:
                hlen = (packet[pos + 1] + 2) * 4
            else:
                hlen = (packet[pos + 1] + 1) * 8
            nxt = packet[pos]
            pos += hlen
        return _with_ports(IpInfo(src, dst, nxt, frag_id=frag_id, first=first, offset=pos),
                           packet)
    return None


def _with_ports(info: IpInfo, packet: bytes) -> IpInfo:
    if info.proto != IPPROTO_UDP or not info.first or len(packet) < info.offset + 4:
        return info
    sport, dport = struct.unpack_from("!HH", packet, info.offset)
    return IpInfo(info.src, info.dst, info.proto, sport, dport, info.frag_id, info.first,
                  info.offset)
