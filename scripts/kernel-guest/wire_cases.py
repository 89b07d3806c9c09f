"""Golden L2TPv3 data-plane packets, captured from the real kernel inside the reference VM.

For each case two network namespaces ("a" and "b") are joined by a veth pair; both ends get an
unmanaged L2TPv3 Ethernet session configured with `ip l2tp` (mirrored ids, ports and cookies),
the l2tpeth devices get fixed MACs and inner IPv4 addresses, and "a" pings "b" through the
tunnel while tcpdump records the *outer* packets on a's veth. pyl2tp's header builder must
produce the same L2TP header bytes for the same session configuration, and its parser must
accept these packets.

Determinism: fixed MACs and inner addresses; IPv6 disabled on the l2tpeth devices so no ND/MLD
noise enters the tunnel; the capture filter keeps only the L2TP packets. ICMP ids/timestamps and
outer IPv4 ids still vary between runs.

Run inside the guest only:  python3 wire_cases.py OUT_DIR   (writes OUT_DIR/wire_cases.json and
OUT_DIR/wire_<case>.pcap). Standard library only: the guest runs the host's system python3.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GENL = HERE / "l2tp_genl.py"
DEBUGFS = "/tmp/l2tp-debugfs"
MAC = {"a": "02:00:00:00:00:0a", "b": "02:00:00:00:00:0b"}
INNER = {"a": "172.16.1.1", "b": "172.16.1.2"}
OUTER4 = {"a": "192.0.2.1", "b": "192.0.2.2"}
OUTER6 = {"a": "2001:db8::1", "b": "2001:db8::2"}
IFNAME = "l2tpeth0"
PING_PATTERN = "deadbeef"

CASES: list[dict[str, Any]] = [
    {"name": "udp4_default",
     "description": "UDP/IPv4, no cookie, default L2-specific sublayer, no sequencing",
     "encap": "udp", "family": 4, "tunnel_id": {"a": 100, "b": 200},
     "session_id": {"a": 1001, "b": 2001}, "udp_port": {"a": 5000, "b": 6000},
     "cookie": {"a": None, "b": None}, "l2spec_type": "default", "seq": "none"},
    {"name": "udp4_cookie4_seq",
     "description": "UDP/IPv4, 4-byte cookies, default L2-specific sublayer, seq both",
     "encap": "udp", "family": 4, "tunnel_id": {"a": 101, "b": 201},
     "session_id": {"a": 1011, "b": 2011}, "udp_port": {"a": 5001, "b": 6001},
     "cookie": {"a": "01234567", "b": "89abcdef"}, "l2spec_type": "default", "seq": "both"},
    {"name": "ip4_cookie8",
     "description": "IP/IPv4 (protocol 115), 8-byte cookies, default L2-specific sublayer",
     "encap": "ip", "family": 4, "tunnel_id": {"a": 102, "b": 202},
     "session_id": {"a": 1021, "b": 2021}, "udp_port": None,
     "cookie": {"a": "0123456789abcdef", "b": "fedcba9876543210"}, "l2spec_type": "default",
     "seq": "none"},
    {"name": "ip4_l2spec_none",
     "description": "IP/IPv4, no cookie, l2spec_type none (no sublayer at all)",
     "encap": "ip", "family": 4, "tunnel_id": {"a": 103, "b": 203},
     "session_id": {"a": 1031, "b": 2031}, "udp_port": None,
     "cookie": {"a": None, "b": None}, "l2spec_type": "none", "seq": "none"},
    {"name": "udp6_default",
     "description": "UDP/IPv6, no cookie, default L2-specific sublayer (UDP checksum on, the "
                    "IPv6 default)",
     "encap": "udp", "family": 6, "tunnel_id": {"a": 104, "b": 204},
     "session_id": {"a": 1041, "b": 2041}, "udp_port": {"a": 5004, "b": 6004},
     "cookie": {"a": None, "b": None}, "l2spec_type": "default", "seq": "none"},
    {"name": "ip6_cookie4_seq",
     "description": "IP/IPv6, 4-byte cookies, default sublayer, seq both",
     "encap": "ip", "family": 6, "tunnel_id": {"a": 105, "b": 205},
     "session_id": {"a": 1051, "b": 2051}, "udp_port": None,
     "cookie": {"a": "a1a2a3a4", "b": "b1b2b3b4"}, "l2spec_type": "default", "seq": "both"},
    {"name": "udp4_csum_asym_cookie",
     "description": "UDP/IPv4 with udp_csum on; a sends an 8-byte cookie and expects a 4-byte "
                    "one (b the reverse), l2spec none, seq send on a only",
     "encap": "udp", "family": 4, "tunnel_id": {"a": 106, "b": 206},
     "session_id": {"a": 1061, "b": 2061}, "udp_port": {"a": 5006, "b": 6006},
     "cookie": {"a": "0011223344556677", "b": "8899aabb"}, "l2spec_type": "none",
     "seq": {"a": "send", "b": "none"}, "udp_csum": "on"},
]


def sh(argv: list[str], ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (inside a namespace if given), capturing its output."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else argv
    p = subprocess.run(full, capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise RuntimeError(f"{full} failed: {p.returncode} {p.stderr}")
    return p


def side_config(case: dict[str, Any], me: str) -> dict[str, Any]:
    """The session configuration of one side, with the peer's values mirrored in."""
    peer = "b" if me == "a" else "a"
    fam = case["family"]
    seq = case["seq"][me] if isinstance(case["seq"], dict) else case["seq"]
    cfg: dict[str, Any] = {
        "netns": f"w{me}",
        "veth": f"v{me}",
        "outer_local": (OUTER4 if fam == 4 else OUTER6)[me],
        "outer_remote": (OUTER4 if fam == 4 else OUTER6)[peer],
        "tunnel_id": case["tunnel_id"][me],
        "peer_tunnel_id": case["tunnel_id"][peer],
        "session_id": case["session_id"][me],
        "peer_session_id": case["session_id"][peer],
        "udp_sport": case["udp_port"][me] if case["udp_port"] else None,
        "udp_dport": case["udp_port"][peer] if case["udp_port"] else None,
        "cookie": case["cookie"][me],
        "peer_cookie": case["cookie"][peer],
        "l2spec_type": case["l2spec_type"],
        "seq": seq,
        "udp_csum": case.get("udp_csum"),
        "ifname": IFNAME,
        "mac": MAC[me],
        "inner_addr": INNER[me] + "/24",
    }
    return cfg


def l2tp_commands(case: dict[str, Any], cfg: dict[str, Any]) -> list[list[str]]:
    """The `ip l2tp` commands that configure one side."""
    t = ["ip", "l2tp", "add", "tunnel", "tunnel_id", str(cfg["tunnel_id"]),
         "peer_tunnel_id", str(cfg["peer_tunnel_id"]), "encap", case["encap"],
         "local", cfg["outer_local"], "remote", cfg["outer_remote"]]
    if case["encap"] == "udp":
        t += ["udp_sport", str(cfg["udp_sport"]), "udp_dport", str(cfg["udp_dport"])]
        if cfg["udp_csum"]:
            t += ["udp_csum", cfg["udp_csum"]]
    s = ["ip", "l2tp", "add", "session", "name", cfg["ifname"], "tunnel_id",
         str(cfg["tunnel_id"]), "session_id", str(cfg["session_id"]), "peer_session_id",
         str(cfg["peer_session_id"])]
    if cfg["cookie"]:
        s += ["cookie", cfg["cookie"]]
    if cfg["peer_cookie"]:
        s += ["peer_cookie", cfg["peer_cookie"]]
    s += ["l2spec_type", cfg["l2spec_type"], "seq", cfg["seq"]]
    return [t, s]


# -- pcap decoding (outer headers + L2TP header), to describe each packet in the fixture ------
def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """Classic libpcap file (what tcpdump -w writes): global header, then record headers."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != 1:
        raise ValueError(f"unexpected linktype {linktype}")
    off, out = 24, []
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        out.append((sec + frac / (1e9 if nano else 1e6), data[off : off + incl]))
        off += incl
    return out


def describe(frame: bytes, case: dict[str, Any], sides: dict[str, dict[str, Any]]) -> dict:
    """Split one captured frame into outer headers, L2TP header and inner Ethernet frame, using
    the *sender's* session configuration to know where the L2TP header ends."""
    d: dict[str, Any] = {"frame_len": len(frame)}
    etype = struct.unpack_from("!H", frame, 12)[0]
    off = 14
    if etype == 0x0800:
        ihl = (frame[off] & 0x0F) * 4
        proto = frame[off + 9]
        src = ".".join(str(b) for b in frame[off + 12 : off + 16])
        dst = ".".join(str(b) for b in frame[off + 16 : off + 20])
        flags_frag = struct.unpack_from("!H", frame, off + 6)[0]
        d["outer"] = {"ip_version": 4, "src": src, "dst": dst, "ip_proto": proto,
                      "ttl": frame[off + 8], "tos": frame[off + 1],
                      "df": bool(flags_frag & 0x4000), "ip_header_len": ihl,
                      "ip_total_len": struct.unpack_from("!H", frame, off + 2)[0]}
        off += ihl
    elif etype == 0x86DD:
        import ipaddress
        proto = frame[off + 6]
        d["outer"] = {"ip_version": 6,
                      "src": str(ipaddress.IPv6Address(frame[off + 8 : off + 24])),
                      "dst": str(ipaddress.IPv6Address(frame[off + 24 : off + 40])),
                      "ip_proto": proto, "hop_limit": frame[off + 7],
                      "traffic_class": ((frame[off] & 0x0F) << 4) | (frame[off + 1] >> 4),
                      "flow_label": struct.unpack_from("!I", frame, off)[0] & 0xFFFFF,
                      "payload_len": struct.unpack_from("!H", frame, off + 4)[0]}
        off += 40
    else:
        d["outer"] = {"ethertype": etype}
        return d
    me = "a" if d["outer"]["src"] in (OUTER4["a"], OUTER6["a"]) else "b"
    d["direction"] = "a->b" if me == "a" else "b->a"
    cfg = sides[me]
    if proto == 17:
        sport, dport, ulen, csum = struct.unpack_from("!HHHH", frame, off)
        d["udp"] = {"sport": sport, "dport": dport, "length": ulen, "checksum": csum}
        off += 8
    d["l2tp_offset"] = off
    hdr_len = (4 if proto == 17 else 0) + 4 + len(bytes.fromhex(cfg["cookie"] or "")) + \
        (4 if cfg["l2spec_type"] == "default" else 0)
    hdr = frame[off : off + hdr_len]
    d["l2tp_header_len"] = hdr_len
    d["l2tp_header_hex"] = hdr.hex()
    p = 0
    if proto == 17:
        d["l2tp_flags_ver"] = struct.unpack_from("!H", hdr, 0)[0]
        d["l2tp_reserved"] = struct.unpack_from("!H", hdr, 2)[0]
        p = 4
    d["session_id"] = struct.unpack_from("!I", hdr, p)[0]
    p += 4
    clen = len(bytes.fromhex(cfg["cookie"] or ""))
    d["cookie"] = hdr[p : p + clen].hex() or None
    p += clen
    if cfg["l2spec_type"] == "default":
        word = struct.unpack_from("!I", hdr, p)[0]
        d["l2spec_hex"] = hdr[p : p + 4].hex()
        d["seq"] = word & 0xFFFFFF if word & 0x40000000 else None
    inner = frame[off + hdr_len :]
    d["inner"] = {"len": len(inner), "dst_mac": inner[0:6].hex(":"),
                  "src_mac": inner[6:12].hex(":"),
                  "ethertype": struct.unpack_from("!H", inner, 12)[0] if len(inner) >= 14
                  else None}
    d["l2tp_payload_offset"] = off + hdr_len
    return d


def run_case(case: dict[str, Any], outdir: Path) -> dict[str, Any]:
    """Build the two namespaces, configure, ping, capture, collect counters, tear down."""
    sides = {s: side_config(case, s) for s in ("a", "b")}
    for s in ("a", "b"):
        sh(["ip", "netns", "add", sides[s]["netns"]])
    sh(["ip", "link", "add", "va", "netns", "wa", "type", "veth", "peer", "name", "vb",
        "netns", "wb"])
    commands: dict[str, list[list[str]]] = {}
    for s, cfg in sides.items():
        ns = cfg["netns"]
        env = [["ip", "link", "set", "lo", "up"], ["ip", "link", "set", cfg["veth"], "up"]]
        if case["family"] == 4:
            env.append(["ip", "addr", "add", cfg["outer_local"] + "/24", "dev", cfg["veth"]])
        else:
            env.append(["ip", "-6", "addr", "add", cfg["outer_local"] + "/64", "dev",
                        cfg["veth"], "nodad"])
        l2 = l2tp_commands(case, cfg)
        post = [["ip", "link", "set", IFNAME, "address", cfg["mac"]],
                ["sysctl", "-qw", f"net.ipv6.conf.{IFNAME}.disable_ipv6=1"],
                ["ip", "link", "set", IFNAME, "up"],
                ["ip", "addr", "add", cfg["inner_addr"], "dev", IFNAME]]
        for argv in env + l2 + post:
            sh(argv, ns)
        commands[s] = env + l2 + post
    mtu = {s: json.loads(sh(["ip", "-j", "link", "show", "dev", IFNAME],
                            sides[s]["netns"]).stdout)[0]["mtu"] for s in sides}
    if case["encap"] == "udp":
        flt = f"udp and port {sides['a']['udp_sport']}"
    else:
        flt = "ip proto 115" if case["family"] == 4 else "ip6 proto 115"
    pcap_name = f"wire_{case['name']}.pcap"
    pcap = outdir / pcap_name
    tcpdump = ["tcpdump", "-i", "va", "-n", "-s", "0", "-U", "-w", str(pcap), flt]
    proc = subprocess.Popen(["ip", "netns", "exec", "wa", *tcpdump],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    proc.stderr.readline()  # "listening on va, ..." once the capture is armed
    ping_argv = ["ping", "-c", "3", "-i", "0.3", "-W", "3", "-s", "56", "-p", PING_PATTERN,
                 INNER["b"]]
    ping = sh(ping_argv, "wa", check=False)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    tcpdump_err = proc.communicate(timeout=20)[1]
    after: dict[str, Any] = {}
    for s, cfg in sides.items():
        ns = cfg["netns"]
        after[s] = {
            "link_stats64": json.loads(sh(["ip", "-s", "-j", "link", "show", "dev", IFNAME],
                                          ns).stdout)[0].get("stats64"),
            "genl_tunnels": json.loads(sh([sys.executable, str(GENL), "dump-tunnels"],
                                          ns).stdout),
            "genl_sessions": json.loads(sh([sys.executable, str(GENL), "dump-sessions"],
                                           ns).stdout),
            "debugfs": sh(["cat", f"{DEBUGFS}/l2tp/tunnels"], ns, check=False).stdout,
            "ip_l2tp_show_session": sh(["ip", "l2tp", "show", "session"], ns).stdout,
        }
    for s in ("a", "b"):
        sh(["ip", "netns", "del", sides[s]["netns"]], check=False)
    time.sleep(0.3)
    frames = read_pcap(pcap)
    packets = [{"index": i, "time_offset": round(t - frames[0][0], 6), **describe(f, case, sides)}
               for i, (t, f) in enumerate(frames)]
    return {
        "name": case["name"],
        "description": case["description"],
        "pcap": pcap_name,
        "encap": case["encap"],
        "family": case["family"],
        "capture": {"netns": "wa", "interface": "va", "filter": flt, "argv": tcpdump,
                    "tcpdump_stderr": tcpdump_err},
        "sides": sides,
        "mtu": mtu,
        "commands": commands,
        "ping": {"netns": "wa", "argv": ping_argv, "exit_status": ping.returncode,
                 "stdout": ping.stdout},
        "after": after,
        "packets": packets,
    }


def main() -> int:
    """Run every case and write wire_cases.json next to the pcaps."""
    outdir = Path(sys.argv[1])
    outdir.mkdir(parents=True, exist_ok=True)
    modroot = os.environ["VM_MODROOT"]
    for m in ("veth", "l2tp_eth", "l2tp_ip", "l2tp_ip6", "l2tp_netlink", "l2tp_debugfs"):
        subprocess.run(["modprobe", "-d", modroot, m], check=True)
    if not os.path.ismount(DEBUGFS):
        os.makedirs(DEBUGFS, exist_ok=True)
        subprocess.run(["mount", "-t", "debugfs", "debugfs", DEBUGFS], check=True)
    results = [run_case(c, outdir) for c in CASES]
    doc = {
        "schema": "pyl2tp-wire-cases/1",
        "kernel": os.uname().release,
        "kernel_version": os.uname().version,
        "iproute2": sh(["ip", "-V"]).stdout.strip(),
        "tcpdump": sh(["tcpdump", "--version"]).stdout.splitlines()[0],
        "ping_pattern": PING_PATTERN,
        "cases": results,
    }
    (outdir / "wire_cases.json").write_text(json.dumps(doc, indent=1) + "\n")
    for r in results:
        print(f"wire case {r['name']}: {len(r['packets'])} packets, ping rc="
              f"{r['ping']['exit_status']}, mtu {r['mtu']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
