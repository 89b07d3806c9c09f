"""Raw generic-netlink queries of the kernel's "l2tp" family, run inside the reference-kernel VM.

iproute2 parses L2TP_ATTR_STATS but never prints it, and it hides the attribute order and the
attributes it does not understand. pyl2tp's management layer has to reproduce the kernel's
messages, so the capture records them verbatim from the kernel: every attribute with its number,
name, raw bytes and (where the type is known) decoded value, in the order the kernel sent them.

Standard library only: the guest runs the host's system python3, not the project's venv.

Usage (inside a netns, e.g. `ip netns exec NS python3 l2tp_genl.py dump-sessions`):
  dump-tunnels | dump-sessions | get-tunnel TID | get-session TID SID
Prints one JSON object: {"messages": [...], "error": null | {"errno": N, "name": "ENODEV"}}.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import sys
from typing import Any

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
L2TP_GENL_VERSION = 1
L2TP_CMD_TUNNEL_GET = 4
L2TP_CMD_SESSION_GET = 8
L2TP_ATTR_CONN_ID = 9
L2TP_ATTR_SESSION_ID = 11
L2TP_ATTR_STATS = 30

# name, decoder ("u8", "u16", "u32", "u64", "str", "flag", "bin", "ip4", "ip6", "nest")
ATTRS: dict[int, tuple[str, str]] = {
    1: ("PW_TYPE", "u16"), 2: ("ENCAP_TYPE", "u16"), 3: ("OFFSET", "u16"),
    4: ("DATA_SEQ", "u16"), 5: ("L2SPEC_TYPE", "u8"), 6: ("L2SPEC_LEN", "u8"),
    7: ("PROTO_VERSION", "u8"), 8: ("IFNAME", "str"), 9: ("CONN_ID", "u32"),
    10: ("PEER_CONN_ID", "u32"), 11: ("SESSION_ID", "u32"), 12: ("PEER_SESSION_ID", "u32"),
    13: ("UDP_CSUM", "u8"), 14: ("VLAN_ID", "u16"), 15: ("COOKIE", "bin"),
    16: ("PEER_COOKIE", "bin"), 17: ("DEBUG", "u32"), 18: ("RECV_SEQ", "u8"),
    19: ("SEND_SEQ", "u8"), 20: ("LNS_MODE", "u8"), 21: ("USING_IPSEC", "u8"),
    22: ("RECV_TIMEOUT", "u64"), 23: ("FD", "u32"), 24: ("IP_SADDR", "ip4"),
    25: ("IP_DADDR", "ip4"), 26: ("UDP_SPORT", "u16"), 27: ("UDP_DPORT", "u16"),
    28: ("MTU", "u16"), 29: ("MRU", "u16"), 30: ("STATS", "nest"), 31: ("IP6_SADDR", "ip6"),
    32: ("IP6_DADDR", "ip6"), 33: ("UDP_ZERO_CSUM6_TX", "flag"),
    34: ("UDP_ZERO_CSUM6_RX", "flag"), 35: ("PAD", "bin"),
}
STATS_ATTRS: dict[int, tuple[str, str]] = {
    1: ("TX_PACKETS", "u64"), 2: ("TX_BYTES", "u64"), 3: ("TX_ERRORS", "u64"),
    4: ("RX_PACKETS", "u64"), 5: ("RX_BYTES", "u64"), 6: ("RX_SEQ_DISCARDS", "u64"),
    7: ("RX_OOS_PACKETS", "u64"), 8: ("RX_ERRORS", "u64"), 9: ("STATS_PAD", "bin"),
    10: ("RX_COOKIE_DISCARDS", "u64"), 11: ("RX_INVALID", "u64"),
}
CMDS = {1: "TUNNEL_CREATE", 2: "TUNNEL_DELETE", 3: "TUNNEL_MODIFY", 4: "TUNNEL_GET",
        5: "SESSION_CREATE", 6: "SESSION_DELETE", 7: "SESSION_MODIFY", 8: "SESSION_GET"}


class NetlinkError(Exception):
    """A negative errno from an NLMSG_ERROR reply."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _attr(atype: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, atype) + payload + b"\0" * ((4 - length % 4) % 4)


def _decode(kind: str, data: bytes) -> Any:
    if kind in ("u8", "u16", "u32", "u64"):
        size = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}[kind]
        if len(data) != size:
            return None
        return int.from_bytes(data, sys.byteorder)
    if kind == "str":
        return data.split(b"\0", 1)[0].decode(errors="replace")
    if kind == "flag":
        return True
    if kind == "ip4" and len(data) == 4:
        return socket.inet_ntop(socket.AF_INET, data)
    if kind == "ip6" and len(data) == 16:
        return socket.inet_ntop(socket.AF_INET6, data)
    return data.hex()


def parse_attrs(buf: bytes, table: dict[int, tuple[str, str]]) -> list[dict[str, Any]]:
    """Decode a run of netlink attributes, keeping their order and raw bytes."""
    out: list[dict[str, Any]] = []
    off = 0
    while off + 4 <= len(buf):
        length, atype = struct.unpack_from("=HH", buf, off)
        if length < 4:
            break
        data = buf[off + 4 : off + length]
        num = atype & 0x3FFF
        name, kind = table.get(num, (f"UNKNOWN_{num}", "bin"))
        item: dict[str, Any] = {"type": num, "name": name, "len": len(data), "raw": data.hex()}
        if atype & 0x8000:
            item["nested_flag"] = True
        if kind == "nest":
            item["value"] = parse_attrs(data, STATS_ATTRS)
        else:
            item["value"] = _decode(kind, data)
        out.append(item)
        off += (length + 3) & ~3
    return out


class Genl:
    """Minimal generic-netlink client: one request, collect replies until DONE/ACK/error."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.bind((0, 0))
        self.seq = 1

    def request(self, family: int, cmd: int, attrs: bytes, flags: int) -> list[tuple[int, bytes]]:
        self.seq += 1
        genl = struct.pack("=BBH", cmd, L2TP_GENL_VERSION, 0) + attrs
        hdr = struct.pack("=IHHII", 16 + len(genl), family, flags | NLM_F_REQUEST, self.seq, 0)
        self.sock.send(hdr + genl)
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, off)
                body = data[off + 16 : off + length]
                off += (length + 3) & ~3
                if mtype == NLMSG_DONE:
                    return replies
                if mtype == NLMSG_ERROR:
                    code = struct.unpack_from("=i", body, 0)[0]
                    if code:
                        raise NetlinkError(-code)
                    return replies
                replies.append((mtype, body))
            if not flags & NLM_F_DUMP and replies:
                return replies

    def family_id(self, name: str) -> int:
        msgs = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                            _attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"), 0)
        for _mtype, body in msgs:
            for a in parse_attrs(body[4:], {CTRL_ATTR_FAMILY_ID: ("FAMILY_ID", "u16")}):
                if a["type"] == CTRL_ATTR_FAMILY_ID:
                    return int(a["value"])
        raise NetlinkError(errno.ENOENT)


def main(argv: list[str]) -> int:
    """Run one query and print the decoded messages (or the errno) as JSON."""
    g = Genl()
    result: dict[str, Any] = {"query": argv, "messages": [], "error": None}
    try:
        fam = g.family_id("l2tp")
        op = argv[0]
        if op == "dump-tunnels":
            msgs = g.request(fam, L2TP_CMD_TUNNEL_GET, b"", NLM_F_DUMP)
        elif op == "dump-sessions":
            msgs = g.request(fam, L2TP_CMD_SESSION_GET, b"", NLM_F_DUMP)
        elif op == "get-tunnel":
            attrs = _attr(L2TP_ATTR_CONN_ID, struct.pack("=I", int(argv[1], 0)))
            msgs = g.request(fam, L2TP_CMD_TUNNEL_GET, attrs, NLM_F_ACK)
        elif op == "get-session":
            attrs = _attr(L2TP_ATTR_CONN_ID, struct.pack("=I", int(argv[1], 0)))
            attrs += _attr(L2TP_ATTR_SESSION_ID, struct.pack("=I", int(argv[2], 0)))
            msgs = g.request(fam, L2TP_CMD_SESSION_GET, attrs, NLM_F_ACK)
        else:
            raise SystemExit(f"unknown query {op}")
        for _mtype, body in msgs:
            cmd, version, _ = struct.unpack_from("=BBH", body, 0)
            result["messages"].append({
                "cmd": cmd, "cmd_name": CMDS.get(cmd, str(cmd)), "genl_version": version,
                "attrs": parse_attrs(body[4:], ATTRS),
            })
    except NetlinkError as e:
        result["error"] = {"errno": e.code, "name": errno.errorcode.get(e.code, "?"),
                           "strerror": os.strerror(e.code)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
