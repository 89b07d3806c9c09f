"""Build the seed corpora in ``fuzz/corpus/<harness>/``: ``.venv/bin/python -m fuzz.seeds``
from the repository root (it needs ``tests.support`` and ``fuzz`` importable).

Where the seeds come from:

* the reference packets: every L2TP payload of ``shared/reference/fixtures-l2tp-avp-overflow
  .pcap`` (tcpdump's fuzzed, truncated L2TPv2 frames) and of the kernel captures in
  ``tests/fixtures/kernel/*.pcap``;
* the RFC-derived test vectors of ``shared/reference/test-vectors.txt`` (hidden AVPs with
  their Random Vectors, v3 messages with Message Digests);
* pyl2tp's own encoders and the tests' message builder (``tests.support.ctlpeer``): every
  control message type of both versions, plain, hidden and over IP; data headers of every
  shape; LCP, IPCP, IPV6CP, PAP and CHAP packets;
* for the structured harnesses, operation scripts in each harness's input layout (see their
  docstrings) that walk the usual exchanges: a tunnel and its calls coming up, a PPP link
  negotiating, authenticating and opening its NCPs.

Everything is deterministic and the directories are rewritten from scratch, so a rebuild
changes nothing unless a source did. Files are named by the SHA-1 of their content, as
libFuzzer names what it adds.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import shutil
import struct
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.support.ctlpeer import full_message

from fuzz.common import HARNESSES, Writer
from pyl2tp.pcap import read_pcap
from pyl2tp.ppp.authpacket import ChapCode, PapCode, chap_value_name, pap_reply, pap_request
from pyl2tp.ppp.packet import Code, ControlPacket, Option
from pyl2tp.wire import auth
from pyl2tp.wire.constants import L2SpecType, MessageType
from pyl2tp.wire.header import DataHeaderV2, DataHeaderV3
from pyl2tp.wire.message import encode_message

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
REFERENCE = ROOT.parent / "shared" / "reference"
AVP_PCAP = REFERENCE / "fixtures-l2tp-avp-overflow.pcap"
VECTORS = REFERENCE / "test-vectors.txt"
KERNEL_PCAPS = ROOT / "tests" / "fixtures" / "kernel"
SECRET = b"secret"
V3_KEY = auth.hiding_key_v3(SECRET)
M = MessageType


# ---------------------------------------------------------------------------------------------
# Sources


def _l2tp_payload(frame: bytes) -> tuple[str, bytes] | None:
    """The L2TP bytes of an Ethernet frame, UDP on any port or IP protocol 115 (the kernel
    captures use ports other than 1701, which ``pcap.extract_l2tp`` insists on)."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from(">H", frame, 12)[0]
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20:
        proto, start = ip[9], (ip[0] & 0x0F) * 4
    elif ethertype == 0x86DD and len(ip) >= 40:
        proto, start = ip[6], 40
    else:
        return None
    if proto == 17 and len(ip) >= start + 8:
        return "udp", ip[start + 8 :]
    if proto == 115:
        return "ip", ip[start:]
    return None


def reference_packets() -> list[tuple[str, bytes]]:
    """Every distinct L2TP payload of the AVP-overflow pcap, and the first two of each kernel
    capture (the rest are the same pings with the next sequence number)."""
    out: list[tuple[str, bytes]] = []
    paths = [AVP_PCAP, *sorted(KERNEL_PCAPS.glob("*.pcap"))]
    for path in paths:
        if not path.exists():
            print(f"seeds: {path} not found, skipped", file=sys.stderr)
            continue
        limit = None if path == AVP_PCAP else 2
        taken = 0
        for _ts, linktype, frame in read_pcap(path):
            found = _l2tp_payload(frame) if linktype == 1 else None
            if found is not None and found not in out and taken != limit:
                out.append(found)
                taken += 1
    return out


def vector_hex(label: str) -> list[bytes]:
    """The hex values on lines of ``test-vectors.txt`` that contain ``label``."""
    if not VECTORS.exists():
        print(f"seeds: {VECTORS} not found, skipped", file=sys.stderr)
        return []
    found = []
    for line in VECTORS.read_text().splitlines():
        if label in line:
            match = re.search(r"[:=]\s*([0-9a-f]{16,})\s*$", line)
            if match:
                found.append(bytes.fromhex(match.group(1)))
    return found


def control_messages() -> Iterator[tuple[int, bytes, int]]:
    """(version, encoded message, selector bits) for every message type: plain, hidden with
    the shared secret, and v3 over IP. Selector bits follow ``fuzz_message``."""
    rng = random.Random(7).randbytes
    for version in (2, 3):
        types = sorted({*full_types(version)})
        for msg_type in types:
            msg = full_message(version, msg_type, tid=0x1234, sid=0x51, peer_sid=0x62)
            msg.tunnel_id, msg.ns, msg.nr = 0x4321, 3, 2
            yield version, encode_message(msg, rng=rng), 0
            key = SECRET if version == 2 else V3_KEY
            for i, item in enumerate(msg.avps):
                if item.attr_type not in (0, 9, 10, 2, 7, 60, 61, 5, 73):
                    msg.avps[i] = type(item)(item.attr_type, item.value, item.vendor_id,
                                             item.mandatory, True)
            hidden_sel = 1 | (2 if version == 3 else 0)
            yield version, encode_message(msg, hide_key=key, rng=rng, hide_pad=8), hidden_sel
            if version == 3 and msg_type in (M.SCCRQ, M.ICRQ, M.StopCCN):
                yield version, encode_message(msg, hide_key=key, rng=rng, ip_encap=True), \
                    hidden_sel | 8
        yield version, encode_message(full_message(version, M.ZLB)), 0


def full_types(version: int) -> list[MessageType]:
    common = [M.SCCRQ, M.SCCRP, M.SCCCN, M.StopCCN, M.HELLO, M.ICRQ, M.ICRP, M.ICCN, M.OCRQ,
              M.OCRP, M.OCCN, M.CDN, M.WEN, M.SLI]
    return common + ([M.ACK] if version == 3 else [])


def prehide_bodies() -> list[bytes]:
    """AVP lists whose hidden values are written in clear (``fuzz_avp``'s pre-hide mode),
    with honest, lying and zero subformat lengths, and a hidden Random Vector."""
    rv = b"\x00\x24" + bytes(range(16))
    rv_avp = struct.pack(">HHH", 0x8000 | (6 + 16), 0, 36) + bytes(range(16))

    def hidden(attr: int, sub: bytes) -> bytes:
        return struct.pack(">HHH", 0xC000 | (6 + len(sub)), 0, attr) + sub

    del rv
    return [
        rv_avp + hidden(9, b"\x00\x02\x12\x34"),
        rv_avp + hidden(9, b"\x00\x09\x12\x34"),
        rv_avp + hidden(9, b"\xff\xff" + bytes(14)),
        rv_avp + hidden(13, b"\x00\x00"),
        rv_avp + hidden(36, b"\x00\x04abcd") + hidden(14, b"\x00\x02\x00\x07"),
        hidden(14, b"\x00\x02\x00\x07") + rv_avp,
        rv_avp + hidden(58, b"\x00\x08\x00\x00\x01\x37\x00\x01zz"),
    ]


# ---------------------------------------------------------------------------------------------
# Per-harness corpora


def header_seeds() -> Iterable[bytes]:
    for encap, pkt in reference_packets():
        for sel in (0x00, 0x0A):  # no cookie; a 4-octet cookie and the default sublayer
            yield bytes((sel | (1 if encap == "ip" else 0),)) + pkt
    yield b"\x00" + DataHeaderV2(1, 2).encode(b"\xff\x03\xc0\x21")
    yield b"\x00" + DataHeaderV2(1, 2, ns=5, nr=0, length_field=True, offset_size=3,
                                 priority=True).encode(b"\x00\x21E")
    yield b"\x0a" + DataHeaderV3(0x1001, b"ABCD", L2SpecType.DEFAULT, 77).encode(b"eth")
    yield b"\x05" + DataHeaderV3(0x1001, b"ABCDEFGH").encode(b"eth", udp=False)
    for _version, data, sel in control_messages():
        if sel == 0 and data[13:16] in (b"\x08\x00\x00", ) and data[19] in (1, 10):
            yield b"\x00" + data  # SCCRQ and ICRQ of each version


def avp_seeds() -> Iterable[bytes]:
    for version, data, sel in control_messages():
        if sel & 1:  # the hidden forms: they carry the plain AVPs too
            yield bytes(((version == 3) | 2,)) + data[(16 if sel & 8 else 12) :]
    for hidden, rv in zip(vector_hex("full AVP (M=1,H=1)"),
                          vector_hex("preceding Random Vector AVP"), strict=False):
        yield b"\x02" + rv + hidden
    for body in prehide_bodies():
        yield b"\x06" + body
        yield b"\x07" + body
    for encap, pkt in reference_packets():
        if encap == "udp" and len(pkt) > 12 and pkt[0] & 0x80:
            yield b"\x00" + pkt[12:]


def message_seeds() -> Iterable[bytes]:
    for _version, data, sel in control_messages():
        yield bytes((sel | 4,)) + data
    for wire in vector_hex("on the wire") + vector_hex("zeroed"):
        yield b"\x07" + wire
    for body in prehide_bodies():
        head = struct.pack(">HHHHHH", 0xC802, 12 + 8 + len(body), 7, 0, 0, 0)
        yield b"\x11" + head + struct.pack(">HHHH", 0x8008, 0, 0, 10) + body
    for encap, pkt in reference_packets():
        if encap == "udp":
            yield b"\x04" + pkt
        elif len(pkt) >= 4 and pkt[:4] == bytes(4):
            yield b"\x08" + pkt


def recv_seeds() -> Iterable[bytes]:
    """Sessions of each configuration receiving in-order, reordered and lost packets."""
    configs = [(0x00, 0x00), (0x40, 0x01), (0x20, 0x05), (0x80 | 0x40, 0x02),
               (0x11, 0x01), (0x11 | 0x04 | 0x20, 0x09), (0x13 | 0x08, 0x03),
               (0x01, 0x00), (0x13, 0x80), (0x11 | 0x40, 0x3D)]
    orders = [list(range(8)), [0, 2, 1, 3, 5, 4, 7, 6], [0, 1, 3, 4, 5, 6, 7, 8],
              [5, 6, 7, 0, 1, 2]]
    for cfg, cfg2 in configs:
        for order in orders:
            w = Writer().u8(cfg).u8(cfg2)
            for i, ns in enumerate(order):
                w.u8(1).u8(0x03 | (0x04 if i == 3 else 0)).u32(ns)
                if i == 3:
                    w.u8(2)
                w.small_chunk(b"payload%d" % ns)
                if i % 3 == 2:
                    w.u8(2).u8(0x03)
            w.u8(2).u8(0x82)
            yield w.bytes()
    for encap, pkt in reference_packets():
        cfg = 0 if pkt[1] & 0x0F == 2 else (0x11 | (0x02 if encap == "ip" else 0))
        yield Writer().u8(cfg).u8(0).u8(0).chunk(pkt).bytes()


def _deliver_all(w: Writer, rounds: int, advance: int = 0x04) -> None:
    """Operations that let two ends run as if nothing were in the middle."""
    for _ in range(rounds):
        for _ in range(6):
            w.u8(0)
        w.u8(8).u8(3)  # ppp_link: answer a verification request (control plane: forge op, ok)
        w.u8(6).u8(advance)


def control_plane_seeds() -> Iterable[bytes]:
    configs = [(0x00, 0x00), (0x06, 0x41), (0x03, 0x14), (0x17, 0x30), (0x47, 0x11),
               (0x01 | 0x80 | 0x02, 0x80)]
    for c1, c2 in configs:
        for script in range(5):
            w = Writer().u8(c1).u8(c2).u8(script).u8(1 if script == 4 else 0)
            for _ in range(3):
                w.u8(0).u8(0).u8(0).u8(6).u8(0x02)
            if script == 1:
                w.u8(9).u8(0).u8(0).u8(0).u8(0)  # A places an incoming call
            elif script == 2:
                w.u8(9).u8(0).u8(1).u8(0).u8(1)  # B places an outgoing call
            elif script == 3:
                w.u8(9).u8(0).u8(0).u8(0).u8(0).u8(9).u8(2).u8(1).u8(0)  # call, then close
            for _ in range(4):
                w.u8(0).u8(0).u8(0).u8(0).u8(6).u8(0x03)
            if script in (1, 2):
                w.u8(9).u8(1).u8(0).u8(0).u8(0)  # clear the call
            for _ in range(2):
                w.u8(0).u8(0).u8(0).u8(6).u8(0x85)
            yield w.bytes()
    # forged messages of every template type into an established tunnel
    for c1 in (0x00, 0x03):
        for type_index in range(18):
            w = Writer().u8(c1).u8(0x00).u8(9).u8(0)
            for _ in range(3):
                w.u8(0).u8(0).u8(0).u8(6).u8(0x02)
            w.u8(9).u8(0).u8(1).u8(0).u8(0)
            for _ in range(3):
                w.u8(0).u8(0).u8(0).u8(6).u8(0x02)
            w.u8(8).u8(1).u8(0).u8(type_index).u8(1).u8(0).u8(0x10).u8(0).u8(0).u8(0)
            w.u8(0).u8(0).u8(6).u8(0x10)
            yield w.bytes()


def ppp_frames() -> list[bytes]:
    """Frames of every protocol and code the link handles, as the session delivers them."""
    lcp, ipcp, ipv6cp = b"\xc0\x21", b"\x80\x21", b"\x80\x57"
    opts = [Option.u16(1, 1400), Option(3, b"\xc2\x23\x05"), Option.u32(5, 0x12345678),
            Option(7), Option(8), Option.u32(2, 0)]
    frames = [
        b"\xff\x03" + lcp + ControlPacket.configure(Code.CONFIGURE_REQUEST, 1, opts).encode(),
        lcp + ControlPacket.configure(Code.CONFIGURE_ACK, 1, opts[:3]).encode(),
        lcp + ControlPacket.configure(Code.CONFIGURE_NAK, 2, [Option(3, b"\xc0\x23")]).encode(),
        lcp + ControlPacket.configure(Code.CONFIGURE_REJECT, 3, opts[4:]).encode(),
        lcp + ControlPacket(Code.TERMINATE_REQUEST, 4, b"bye").encode(),
        lcp + ControlPacket(Code.TERMINATE_ACK, 4).encode(),
        lcp + ControlPacket(Code.CODE_REJECT, 5, b"\x0e\x01\x00\x04").encode(),
        lcp + ControlPacket.protocol_reject(6, 0x8057, b"\x01\x01\x00\x04", 1500).encode(),
        lcp + ControlPacket.with_magic(Code.ECHO_REQUEST, 7, 0x12345678, b"ping").encode(),
        lcp + ControlPacket.with_magic(Code.ECHO_REPLY, 7, 0x12345678).encode(),
        lcp + ControlPacket.with_magic(Code.DISCARD_REQUEST, 8, 0).encode(),
        lcp + ControlPacket(Code.IDENTIFICATION, 9, b"\0\0\0\0pyl2tp").encode(),
        lcp + ControlPacket(Code.TIME_REMAINING, 10, b"\0\0\0\0\0\0\x0e\x10").encode(),
        ipcp + ControlPacket.configure(Code.CONFIGURE_REQUEST, 1, [
            Option(3, bytes(4)), Option(129, bytes(4)), Option(131, bytes(4)),
            Option(2, b"\x00\x2d\x0f\x01")]).encode(),
        ipcp + ControlPacket.configure(Code.CONFIGURE_NAK, 1, [
            Option(3, b"\x0a\x07\x00\x0a"), Option(129, b"\x0a\x07\x00\x35")]).encode(),
        ipv6cp + ControlPacket.configure(Code.CONFIGURE_REQUEST, 1, [
            Option(1, bytes(range(8)))]).encode(),
        b"\xc0\x23" + pap_request(1, b"alice", b"wonderland"),
        b"\xc0\x23" + pap_reply(PapCode.AUTHENTICATE_ACK, 1, "welcome"),
        b"\xc2\x23" + chap_value_name(ChapCode.CHALLENGE, 1, bytes(range(16)), b"lns"),
        b"\xc2\x23" + chap_value_name(ChapCode.RESPONSE, 1, bytes(range(16)), b"alice"),
        b"\xc2\x23" + chap_value_name(ChapCode.RESPONSE, 2, bytes(49), b"DOM\\alice"),
        b"\xc2\x23" + ControlPacket(3, 2, b"S=" + b"0" * 40 + b" M=ok").encode(),
        b"\xc2\x23" + ControlPacket(4, 2, b"E=691 R=0 C=" + b"0" * 32 + b" V=3").encode(),
        b"\x21E\x00\x00\x14",
        b"\x00\x57`\x00",
        b"\x80\xfd\x01\x01\x00\x04",
    ]
    return frames


def ppp_packet_seeds() -> Iterable[bytes]:
    yield from ppp_frames()


def _option_list(w: Writer, options: list[Option]) -> None:
    w.u8(len(options))
    for option in options:
        w.u8(option.type).u8(len(option.data)).raw(option.data)


def ppp_options_seeds() -> Iterable[bytes]:
    lists = [
        [Option.u16(1, 1400), Option(3, b"\xc2\x23\x05"), Option.u32(5, 0x01020304)],
        [Option.u16(1, 100), Option(3, b"\xc0\x23"), Option.u32(5, 0), Option(7), Option(8)],
        [Option(3, b"\xc2\x23\x81"), Option.u32(2, 0xFFFFFFFF), Option(13, b"\x06")],
        [Option(3, bytes(4)), Option(129, bytes(4)), Option(131, bytes(4))],
        [Option(3, b"\x0a\x07\x00\x0a"), Option(130, bytes(4)), Option(2, b"\x00\x2d")],
        [Option(1, bytes(range(8)))],
        [Option(1, bytes(8)), Option(1, bytes(range(8)))],
        [Option(1, b"\x02\x00\x00\x00\x00\x00\x00\x02")],
    ]
    for which, relevant in ((0, lists[:3]), (1, lists[3:5]), (2, lists[5:])):
        for c in (0x00, 0x16, 0xC5):
            for index, options in enumerate(relevant):
                w = Writer().u8(which).u8(c).u8(index % 3)
                for op in (5, 0, 1, 3, 4, 2, 8, 6, 7, 0, 3):
                    w.u8(op)
                    _option_list(w, options)
                yield w.bytes()


def ppp_fsm_seeds() -> Iterable[bytes]:
    protocols = (b"\xc0\x21", b"\x80\x21", b"\x80\x57")
    for which, protocol in enumerate(protocols):
        for c in (0x00, 0x16):
            for frame in ppp_frames():
                if protocol not in frame[:4]:
                    continue
                info = frame[2:] if frame[:2] != b"\xff\x03" else frame[4:]
                w = Writer().u8(which).u8(c).u8(0x2A).u8(0).u8(1)
                w.u8(3).u8(5)  # lower layer up, Open
                w.u8(0).chunk(info)
                w.u8(1).u8(2).u8(1).small_chunk(info[4:])  # Configure-Ack of our request
                w.u8(2).u8(4).u8(0).chunk(info).u8(6).small_chunk(b"bye").u8(2).u8(12)
                yield w.bytes()


def ppp_auth_seeds() -> Iterable[bytes]:
    for role in (0, 1):
        for method in (0, 2, 4):
            for extra in (0x00, 0x08, 0x30):
                w = Writer().u8(role | method | extra)
                # the other role's packet, computed right; a verdict; time; again
                w.u8(1).u8(0x07).u8(3)
                w.u8(3).u8(0x07)
                w.u8(1).u8(0x07).u8(2).u8(0)
                w.u8(1).u8(0x05).u8(2)
                w.u8(2).u8(6).u8(3).u8(0x03).u8(2).u8(30)
                w.u8(0).u8(0).chunk(b"\x02\x09\x00\x06\x01\x00")
                yield w.bytes()


def ppp_link_seeds() -> Iterable[bytes]:
    for c1 in (0x00, 0x09, 0x12, 0x64, 0x5B):
        for c2 in (0x00, 0x05, 0x42, 0x81):
            w = Writer().u8(c1).u8(c2).u8(1)
            _deliver_all(w, 8, advance=0x05)
            w.u8(9).u8(c1 & 1).u8(0).small_chunk(b"done")
            _deliver_all(w, 3, advance=0x0A)
            yield w.bytes()


BUILDERS = {
    "header": header_seeds,
    "avp": avp_seeds,
    "message": message_seeds,
    "recv": recv_seeds,
    "control_plane": control_plane_seeds,
    "ppp_packet": ppp_packet_seeds,
    "ppp_options": ppp_options_seeds,
    "ppp_fsm": ppp_fsm_seeds,
    "ppp_auth": ppp_auth_seeds,
    "ppp_link": ppp_link_seeds,
}
assert tuple(BUILDERS) == HARNESSES


def build(names: Iterable[str], corpus: Path = CORPUS) -> dict[str, int]:
    """Rewrite the corpus directory of each harness; returns how many seeds each got."""
    counts = {}
    for name in names:
        target = corpus / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        seen = set()
        for seed in BUILDERS[name]():
            digest = hashlib.sha1(seed).hexdigest()
            if digest not in seen:
                seen.add(digest)
                (target / digest).write_bytes(seed)
        counts[name] = len(seen)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("harness", nargs="*", help="harnesses to rebuild (default: all)")
    args = parser.parse_args()
    names = args.harness or list(HARNESSES)
    unknown = set(names) - set(HARNESSES)
    if unknown:
        parser.error(f"unknown harness {', '.join(sorted(unknown))}")
    for name, count in build(names).items():
        print(f"{name:14} {count:4} seeds")


if __name__ == "__main__":
    main()
