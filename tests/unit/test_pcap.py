"""Unit tests for :mod:`pyl2tp.pcap`: capture-file I/O, frame builders and the L2TP extractor.

The byte layouts are checked against the published formats (libpcap, pcapng, RFC 791/8200/768
/1071) rather than against our own reader only, so that a writer and reader sharing one mistake
cannot pass each other; tshark reading our files is covered by the integration suite.
"""

from __future__ import annotations

import io
import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.pcap import (
    DST_MAC,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    SRC_MAC,
    PcapWriter,
    extract_l2tp,
    internet_checksum,
    ip_frame,
    read_pcap,
    udp_frame,
)
from pyl2tp.wire.errors import ParseError
from pyl2tp.wire.header import decode_data_v2
from pyl2tp.wire.message import decode_message

FIXTURE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
           / "fixtures-l2tp-avp-overflow.pcap")
L2TP = bytes.fromhex("c802000c000100000001000180080000")  # any payload will do
ALL_LINKTYPES = (LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP,
                 LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2, 147)


def _write(frames: list[tuple[bytes, float]], **kw: object) -> bytes:
    buf = io.BytesIO()
    w = PcapWriter(buf, **kw)  # type: ignore[arg-type]
    for frame, ts in frames:
        w.write(frame, ts)
    w.close()
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Writer


def test_global_header_is_libpcap_2_4_little_endian_microseconds() -> None:
    data = _write([])
    assert data == bytes.fromhex("d4c3b2a1" "0200" "0400" "00000000" "00000000"
                                 "00000400" "01000000")


def test_record_layout_and_link_type() -> None:
    data = _write([(b"\xaa\xbb\xcc", 1_700_000_000.25)], linktype=LINKTYPE_RAW)
    assert struct.unpack_from("<I", data, 20)[0] == LINKTYPE_RAW
    assert data[24:] == struct.pack("<IIII", 1_700_000_000, 250_000, 3, 3) + b"\xaa\xbb\xcc"


def test_nanosecond_files_use_their_own_magic() -> None:
    data = _write([(b"x", 5.000000001)], nanosecond=True)
    assert data[:4] == bytes.fromhex("4d3cb2a1")
    assert struct.unpack_from("<II", data, 24) == (5, 1)


@pytest.mark.parametrize(("ts", "sec", "usec"), [
    (0.0, 0, 0),
    (1.9999999, 2, 0),  # rounding carries into the seconds instead of writing 1.1000000
    (1.0000004, 1, 0),
    (1_700_000_000.123456, 1_700_000_000, 123_456),
])
def test_timestamps_round_to_the_nearest_tick(ts: float, sec: int, usec: int) -> None:
    assert struct.unpack_from("<II", _write([(b"", ts)]), 24) == (sec, usec)


@pytest.mark.parametrize("ts", [-1.0, 2.0**32, float("nan"), float("inf")])
def test_timestamps_that_do_not_fit_are_refused(ts: float) -> None:
    with pytest.raises(ValueError):
        _write([(b"", ts)])


def test_snaplen_truncates_but_records_the_original_length() -> None:
    data = _write([(bytes(range(100)), 1.0)], snaplen=64)
    assert struct.unpack_from("<I", data, 16)[0] == 64
    assert struct.unpack_from("<II", data, 32) == (64, 100)
    assert len(data) == 24 + 16 + 64
    assert [f for _t, _l, f in read_pcap(data)] == [bytes(range(64))]


@pytest.mark.parametrize("kw", [{"linktype": -1}, {"linktype": 0x10000}, {"snaplen": 0}])
def test_writer_refuses_bad_parameters(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO(), **kw)  # type: ignore[arg-type]


def test_writer_leaves_the_file_open_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    with path.open("wb") as f:
        with PcapWriter(f) as w:
            w.write(b"a", 1.0)
            w.write(b"bc", 2.0)
            assert w.count == 2
        assert not f.closed  # the caller opened it, the caller closes it
    assert path.stat().st_size == 24 + 16 + 1 + 16 + 2
    assert [(t, fr) for t, _l, fr in read_pcap(path)] == [(1.0, b"a"), (2.0, b"bc")]
    assert next(read_pcap(str(path)))[1] == LINKTYPE_ETHERNET


# ---------------------------------------------------------------------------------------------
# Reader


def test_round_trip_keeps_frames_timestamps_and_link_type() -> None:
    frames = [(bytes([i]) * i, 1_600_000_000 + i / 8) for i in range(1, 6)]
    for nanosecond in (False, True):
        got = list(read_pcap(_write(frames, linktype=LINKTYPE_RAW, nanosecond=nanosecond)))
        assert [(f, lt) for _ts, lt, f in got] == [(f, LINKTYPE_RAW) for f, _ts in frames]
        assert [ts for ts, _lt, _f in got] == pytest.approx([ts for _f, ts in frames])


def test_reads_big_endian_files() -> None:
    hdr = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW)
    rec = struct.pack(">IIII", 10, 500_000, 2, 2) + b"\x45\x00"
    assert list(read_pcap(hdr + rec)) == [(10.5, LINKTYPE_RAW, b"\x45\x00")]


def test_link_type_metadata_bits_are_masked() -> None:
    # The upper 16 bits of the link-type word carry FCS information, not the link type.
    data = bytearray(_write([(b"z", 1.0)]))
    data[20:24] = struct.pack("<I", 0x30000001)
    assert [lt for _t, lt, _f in read_pcap(bytes(data))] == [LINKTYPE_ETHERNET]


def test_truncated_files_end_the_capture_without_raising() -> None:
    data = _write([(b"first", 1.0), (b"second frame", 2.0)])
    cut_in_body = data[:-4]
    assert [f for _t, _l, f in read_pcap(cut_in_body)] == [b"first", b"second f"]
    cut_in_header = data[: 24 + 16 + 5 + 7]
    assert [f for _t, _l, f in read_pcap(cut_in_header)] == [b"first"]
    assert list(read_pcap(data[:24])) == []
    assert list(read_pcap(data[:10])) == []  # a valid magic, the header cut short


def test_a_lying_captured_length_yields_what_is_there() -> None:
    data = bytearray(_write([(b"abc", 1.0)]))
    data[32:36] = struct.pack("<I", 0xFFFFFFFF)
    assert [f for _t, _l, f in read_pcap(bytes(data))] == [b"abc"]


@pytest.mark.parametrize("data", [b"", b"abc", b"GIF89a" + bytes(30)])
def test_unknown_magic_is_a_wrong_file(data: bytes) -> None:
    with pytest.raises(ValueError):
        list(read_pcap(data))


def _block(btype: int, body: bytes, endian: str = "<") -> bytes:
    body += bytes(-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)


def _pcapng(endian: str, *, tsresol: int | None) -> bytes:
    e = endian
    shb = _block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1), e)
    opts = b""
    if tsresol is not None:
        opts = struct.pack(e + "HH", 9, 1) + bytes([tsresol]) + bytes(3)
        opts += struct.pack(e + "HH", 0, 0)
    idb = _block(1, struct.pack(e + "HHI", LINKTYPE_RAW, 0, 0) + opts, e)
    nrb = _block(4, struct.pack(e + "HH", 0, 0), e)  # a block the reader must skip
    ticks = 1_500_000_000 * (10**9 if tsresol == 9 else 10**6) + 7
    epb = _block(6, struct.pack(e + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, 3, 3)
                 + b"abc", e)
    spb = _block(3, struct.pack(e + "I", 2) + b"de", e)
    return shb + idb + nrb + epb + spb


@pytest.mark.parametrize("endian", ["<", ">"])
def test_reads_pcapng_enhanced_and_simple_packet_blocks(endian: str) -> None:
    got = list(read_pcap(_pcapng(endian, tsresol=None)))
    assert [(lt, f) for _t, lt, f in got] == [(LINKTYPE_RAW, b"abc"), (LINKTYPE_RAW, b"de")]
    assert got[0][0] == pytest.approx(1_500_000_000.000007)


def test_pcapng_interface_timestamp_resolution() -> None:
    got = list(read_pcap(_pcapng("<", tsresol=9)))
    assert got[0][0] == pytest.approx(1_500_000_000.000000007)


def test_truncated_pcapng_ends_the_capture() -> None:
    data = _pcapng("<", tsresol=None)
    epb_end = len(data) - 20  # the final Simple Packet Block is 20 octets
    assert [f for _t, _l, f in read_pcap(data[:epb_end])] == [b"abc"]
    # Cut inside the EPB: trailing length (4), pad (1) and the last frame octet are gone.
    assert [f for _t, _l, f in read_pcap(data[: epb_end - 6])] == [b"ab"]
    assert [f for _t, _l, f in read_pcap(data[: epb_end + 10])] == [b"abc"]


def test_pcapng_with_an_impossible_block_length_stops() -> None:
    data = bytearray(_pcapng("<", tsresol=None))
    shb_len = struct.unpack_from("<I", data, 4)[0]
    data[shb_len + 4 : shb_len + 8] = struct.pack("<I", 13)  # not a multiple of 4
    assert list(read_pcap(bytes(data))) == []


def test_reads_the_tcpdump_l2tp_avp_overflow_fixture() -> None:
    if not FIXTURE.exists():
        pytest.skip(f"{FIXTURE} not present")
    raw = FIXTURE.read_bytes()
    assert struct.unpack_from("<I", raw, 20)[0] == 0x30000001  # fuzzed link-type word
    records = list(read_pcap(FIXTURE))
    assert len(records) == 20
    assert {lt for _t, lt, _f in records} == {LINKTYPE_ETHERNET}
    assert sorted({len(f) for _t, _l, f in records}) == [8, 58]
    # tshark shows 16 of the 20 as L2TP; the other 4 are UDP to port 2048 and a runt.
    payloads = [extract_l2tp(f, lt) for _t, lt, f in records]
    l2tp = [p for p in payloads if p is not None]
    assert len(l2tp) == 16 and all(kind == "udp" for kind, _p in l2tp)
    assert all(p[:2] == b"\xf0\x02" for _k, p in l2tp)


def test_fixture_payloads_only_ever_raise_parse_errors() -> None:
    """The fixture exists to catch parsers that over-read; the frames claim lengths far past
    their 58 captured octets. Decode each one as captured, and once more with the header forced
    to a well-formed control header so the AVP walker meets the fuzzed bytes too."""
    if not FIXTURE.exists():
        pytest.skip(f"{FIXTURE} not present")
    for _t, lt, frame in read_pcap(FIXTURE):
        found = extract_l2tp(frame, lt)
        if found is None:
            continue
        payload = found[1]
        forced = b"\xc8\x02" + struct.pack(">H", len(payload)) + payload[4:]
        for data in (payload, forced):
            for decode in (lambda d: decode_message(d, hide_key=b"secret"), decode_data_v2):
                try:
                    decode(data)
                except ParseError:
                    pass


# ---------------------------------------------------------------------------------------------
# Checksums and frame builders


def test_internet_checksum_matches_rfc_1071_example() -> None:
    # RFC 1071 §3: the one's-complement sum of 0001 f203 f4f5 f6f7 is ddf2.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00")  # odd length pads
    assert internet_checksum(b"") == 0xFFFF


def test_ipv4_header_layout_and_checksum() -> None:
    frame = ip_frame("192.0.2.1", "198.51.100.2", 115, b"\x00" * 8)
    assert frame[:6] == DST_MAC and frame[6:12] == SRC_MAC and frame[12:14] == b"\x08\x00"
    ip = frame[14:]
    assert ip[0] == 0x45 and struct.unpack_from("!H", ip, 2)[0] == 28
    assert struct.unpack_from("!H", ip, 6)[0] == 0x4000  # DF, no fragment offset
    assert ip[8] == 64 and ip[9] == 115
    assert ip[12:16] == bytes([192, 0, 2, 1]) and ip[16:20] == bytes([198, 51, 100, 2])
    assert internet_checksum(ip[:20]) == 0  # a correct header sums to all ones


def test_ipv6_header_layout() -> None:
    pkt = ip_frame("2001:db8::1", "2001:db8::2", 115, b"\x01\x02\x03", ethernet=False)
    assert len(pkt) == 43 and pkt[0] >> 4 == 6
    assert struct.unpack_from("!IHBB", pkt) == (6 << 28, 3, 115, 64)
    assert pkt[8:24] == ipaddress.IPv6Address("2001:db8::1").packed
    assert pkt[24:40] == ipaddress.IPv6Address("2001:db8::2").packed
    assert ip_frame("2001:db8::1", "2001:db8::2", 115, b"")[12:14] == b"\x86\xdd"


def _udp_checksum_ok(src: str, dst: str, udp: bytes) -> bool:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 17, len(udp))
    else:
        pseudo = s.packed + d.packed + struct.pack("!I3xB", len(udp), 17)
    return internet_checksum(pseudo + udp) == 0


@pytest.mark.parametrize(("src", "dst"), [("192.0.2.1", "192.0.2.2"),
                                          ("2001:db8::a", "2001:db8::b")])
@pytest.mark.parametrize("payload", [b"", b"\x01", L2TP, bytes(range(256)) * 3])
def test_udp_frame_carries_a_correct_checksum(src: str, dst: str, payload: bytes) -> None:
    pkt = udp_frame(src, dst, 1701, 40000, payload, ethernet=False)
    hlen = 20 if ":" not in src else 40
    udp = pkt[hlen:]
    assert struct.unpack_from("!HHH", udp) == (1701, 40000, 8 + len(payload))
    assert udp[8:] == payload
    assert struct.unpack_from("!H", udp, 6)[0] != 0
    assert _udp_checksum_ok(src, dst, udp)


def test_a_computed_zero_udp_checksum_is_sent_as_all_ones() -> None:
    # Choose the last two payload octets so that the checksum computes to zero.
    src, dst = "192.0.2.1", "192.0.2.2"
    probe = udp_frame(src, dst, 1701, 1701, b"abcd\x00\x00", ethernet=False)
    fix = struct.unpack_from("!H", probe, 26)[0]
    pkt = udp_frame(src, dst, 1701, 1701, b"abcd" + struct.pack("!H", fix), ethernet=False)
    assert struct.unpack_from("!H", pkt, 26)[0] == 0xFFFF
    assert _udp_checksum_ok(src, dst, pkt[20:])


@pytest.mark.parametrize(("call", "args"), [
    (udp_frame, ("192.0.2.1", "2001:db8::1", 1, 2, b"")),
    (udp_frame, ("192.0.2.1", "192.0.2.2", 70000, 2, b"")),
    (udp_frame, ("192.0.2.1", "192.0.2.2", 1, 2, bytes(65528))),
    (udp_frame, ("not-an-address", "192.0.2.2", 1, 2, b"")),
    (ip_frame, ("192.0.2.1", "192.0.2.2", 256, b"")),
    (ip_frame, ("192.0.2.1", "192.0.2.2", 115, bytes(65516))),
    (ip_frame, ("2001:db8::1", "2001:db8::2", 115, bytes(65536))),
])
def test_builders_refuse_what_cannot_be_encoded(call: object, args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        call(*args)  # type: ignore[operator]


# ---------------------------------------------------------------------------------------------
# extract_l2tp


@pytest.mark.parametrize(("src", "dst"), [("192.0.2.1", "192.0.2.2"),
                                          ("2001:db8::a", "2001:db8::b")])
def test_extracts_udp_1701_in_either_direction(src: str, dst: str) -> None:
    for sport, dport in ((1701, 1701), (40000, 1701), (1701, 40000)):
        frame = udp_frame(src, dst, sport, dport, L2TP)
        assert extract_l2tp(frame, LINKTYPE_ETHERNET) == ("udp", L2TP)
        raw = udp_frame(src, dst, sport, dport, L2TP, ethernet=False)
        assert extract_l2tp(raw, LINKTYPE_RAW) == ("udp", L2TP)
    assert extract_l2tp(udp_frame(src, dst, 1702, 500, L2TP), LINKTYPE_ETHERNET) is None


@pytest.mark.parametrize(("src", "dst"), [("192.0.2.1", "192.0.2.2"),
                                          ("2001:db8::a", "2001:db8::b")])
def test_extracts_ip_protocol_115(src: str, dst: str) -> None:
    payload = b"\x00\x00\x00\x00" + L2TP
    assert extract_l2tp(ip_frame(src, dst, 115, payload), LINKTYPE_ETHERNET) == ("ip", payload)
    raw = ip_frame(src, dst, 115, payload, ethernet=False)
    lt = LINKTYPE_IPV4 if ":" not in src else LINKTYPE_IPV6
    assert extract_l2tp(raw, lt) == ("ip", payload)
    assert extract_l2tp(ip_frame(src, dst, 47, payload), LINKTYPE_ETHERNET) is None  # GRE


def test_ethernet_padding_is_trimmed_by_the_ip_length() -> None:
    frame = udp_frame("192.0.2.1", "192.0.2.2", 1701, 1701, b"\xc8\x02")
    padded = frame + bytes(60 - len(frame))
    assert extract_l2tp(padded, LINKTYPE_ETHERNET) == ("udp", b"\xc8\x02")


def test_vlan_tags_are_skipped() -> None:
    frame = udp_frame("192.0.2.1", "192.0.2.2", 1701, 1701, L2TP)
    qinq = frame[:12] + bytes.fromhex("88a80064" "810000c8") + frame[12:]
    assert extract_l2tp(qinq, LINKTYPE_ETHERNET) == ("udp", L2TP)


def test_cooked_and_loopback_link_types() -> None:
    ip4 = udp_frame("192.0.2.1", "192.0.2.2", 1701, 1701, L2TP, ethernet=False)
    ip6 = udp_frame("2001:db8::1", "2001:db8::2", 1701, 1701, L2TP, ethernet=False)
    sll = struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, 0x0800) + ip4
    sll2 = struct.pack("!HHIHBB8s", 0x86DD, 0, 2, 1, 0, 6, b"\x02" * 8) + ip6
    assert extract_l2tp(sll, LINKTYPE_LINUX_SLL) == ("udp", L2TP)
    assert extract_l2tp(sll2, LINKTYPE_LINUX_SLL2) == ("udp", L2TP)
    assert extract_l2tp(struct.pack("<I", 2) + ip4, LINKTYPE_NULL) == ("udp", L2TP)
    assert extract_l2tp(struct.pack(">I", 24) + ip6, LINKTYPE_LOOP) == ("udp", L2TP)
    assert extract_l2tp(ip4, 147) is None  # a link type we do not know


def test_truncated_capture_yields_the_octets_present() -> None:
    frame = udp_frame("192.0.2.1", "192.0.2.2", 1701, 1701, L2TP)
    assert extract_l2tp(frame[:-4], LINKTYPE_ETHERNET) == ("udp", L2TP[:-4])
    assert extract_l2tp(frame[: 14 + 20 + 7], LINKTYPE_ETHERNET) is None  # no UDP header


def test_ipv4_total_length_zero_means_segmentation_offload() -> None:
    frame = bytearray(udp_frame("192.0.2.1", "192.0.2.2", 1701, 1701, L2TP))
    frame[16:18] = b"\x00\x00"
    assert extract_l2tp(bytes(frame), LINKTYPE_ETHERNET) == ("udp", L2TP)


@pytest.mark.parametrize("flags_frag", [0x2000, 0x0001, 0x2010])
def test_ipv4_fragments_are_not_l2tp_messages(flags_frag: int) -> None:
    frame = bytearray(udp_frame("192.0.2.1", "192.0.2.2", 1701, 1701, L2TP))
    frame[20:22] = struct.pack("!H", flags_frag)
    assert extract_l2tp(bytes(frame), LINKTYPE_ETHERNET) is None


def _ipv6_with(ext: bytes, first: int, payload: bytes) -> bytes:
    hdr = struct.pack("!IHBB16s16s", 6 << 28, len(ext) + len(payload), first, 64,
                      ipaddress.IPv6Address("2001:db8::1").packed,
                      ipaddress.IPv6Address("2001:db8::2").packed)
    return hdr + ext + payload


def test_ipv6_extension_headers_are_walked() -> None:
    body = b"\x00\x00\x00\x00" + L2TP
    hop_by_hop = bytes([60, 0]) + bytes(6)  # next: destination options
    dest_opts = bytes([44, 0]) + bytes(6)  # next: fragment
    atomic_fragment = bytes([115, 0, 0, 0]) + b"\x12\x34\x56\x78"
    pkt = _ipv6_with(hop_by_hop + dest_opts + atomic_fragment, 0, body)
    assert extract_l2tp(pkt, LINKTYPE_RAW) == ("ip", body)
    real_fragment = bytes([115, 0, 0, 1]) + b"\x12\x34\x56\x78"  # M bit
    assert extract_l2tp(_ipv6_with(real_fragment, 44, body), LINKTYPE_RAW) is None
    esp = _ipv6_with(b"", 50, body)
    assert extract_l2tp(esp, LINKTYPE_RAW) is None
    lying = _ipv6_with(bytes([17, 200]) + bytes(6), 0, body)  # ext header past the end
    assert extract_l2tp(lying, LINKTYPE_RAW) is None


def test_malformed_ip_and_udp_headers() -> None:
    frame = bytearray(udp_frame("192.0.2.1", "192.0.2.2", 1701, 1701, L2TP))
    bad_ihl = bytearray(frame)
    bad_ihl[14] = 0x44
    assert extract_l2tp(bytes(bad_ihl), LINKTYPE_ETHERNET) is None
    short_total = bytearray(frame)
    short_total[16:18] = struct.pack("!H", 12)
    assert extract_l2tp(bytes(short_total), LINKTYPE_ETHERNET) is None
    bad_udp_len = bytearray(frame)
    bad_udp_len[38:40] = struct.pack("!H", 7)
    assert extract_l2tp(bytes(bad_udp_len), LINKTYPE_ETHERNET) is None
    assert extract_l2tp(b"", LINKTYPE_RAW) is None
    assert extract_l2tp(b"\x70" + bytes(40), LINKTYPE_RAW) is None  # IP version 7


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), linktype=st.sampled_from(ALL_LINKTYPES))
def test_extract_never_raises_on_garbage(data: bytes, linktype: int) -> None:
    result = extract_l2tp(data, linktype)
    assert result is None or (result[0] in ("udp", "ip") and isinstance(result[1], bytes))


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, 120), flips=st.lists(st.tuples(st.integers(0, 119),
                                                        st.integers(1, 255)), max_size=4),
       v6=st.booleans(), udp=st.booleans())
def test_extract_never_raises_on_damaged_frames(
    cut: int, flips: list[tuple[int, int]], v6: bool, udp: bool
) -> None:
    src, dst = ("2001:db8::1", "2001:db8::2") if v6 else ("192.0.2.1", "192.0.2.2")
    frame = bytearray(udp_frame(src, dst, 1701, 1701, L2TP) if udp
                      else ip_frame(src, dst, 115, L2TP))
    for pos, mask in flips:
        if pos < len(frame):
            frame[pos] ^= mask
    extract_l2tp(bytes(frame[:cut]), LINKTYPE_ETHERNET)


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=200))
def test_reader_never_raises_past_a_valid_magic(tail: bytes) -> None:
    for head in (_write([]), _pcapng("<", tsresol=None)[:28]):
        for _ts, _lt, frame in read_pcap(head + tail):
            assert isinstance(frame, bytes)
