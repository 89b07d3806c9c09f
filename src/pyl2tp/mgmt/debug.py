"""A debug listing in the layout of the kernel's debugfs ``l2tp/tunnels`` file.

It shows what the management API does not: sequencing state (nr/ns), the reorder queue, the
header length and sublayer, so an engineer can compare pyl2tp with a kernel side by side.
The kernel labels the tunnel's tx counters "rx" by mistake; this listing says "tx".
"""

from __future__ import annotations

import socket

from pyl2tp.dataplane.model import Session, Tunnel
from pyl2tp.dataplane.registry import Registry
from pyl2tp.wire.constants import EncapType, PwType

HEADER = """TUNNEL ID, peer ID from IP to IP
 L2TPv2/L2TPv3, UDP/IP
 sessions session-count, refcnt refcnt/sk->refcnt
 debug tx-pkts/bytes/errs rx-pkts/bytes/errs
  SESSION ID, peer ID, PWTYPE
   refcnt cnt
   offset OFFSET l2specific TYPE/LEN
   [ cookie ]
   [ peer cookie ]
   config mtu/mru/rcvseq/sendseq/dataseq/lns debug reorderto
   nr/ns tx-pkts/bytes/errs rx-pkts/bytes/errs
"""


def _tunnel(t: Tunnel) -> str:
    s = t.stats
    out = [f"\nTUNNEL {t.tunnel_id} peer {t.peer_tunnel_id} from {t.local} to {t.remote}"]
    if t.encap == EncapType.UDP:
        out.append(f" source port {t.udp_sport}, dest port {t.udp_dport}")
    out.append(f" L2TPv{t.version}, {'UDP' if t.encap == EncapType.UDP else 'IP'}"
               f"{'' if t.family == socket.AF_INET else ' (IPv6)'}")
    out.append(f" {len(t.sessions)} sessions, endpoint shared by "
               f"{len(t.endpoint.tunnels) if t.endpoint is not None else 0} tunnels")
    out.append(f" {0:08x} tx {s.tx_packets}/{s.tx_bytes}/{s.tx_errors} "
               f"rx {s.rx_packets}/{s.rx_bytes}/{s.rx_errors} invalid {s.rx_invalid}")
    return "\n".join(out) + "\n"


def _session(ss: Session) -> str:
    s = ss.stats
    pw = {PwType.ETH: "ETH", PwType.PPP: "PPP"}.get(PwType(ss.pw_type), "")
    out = [f"  SESSION {ss.session_id}, peer {ss.peer_session_id}, {pw}"]
    if ss.recv_seq or ss.send_seq:
        out.append(f"   nr {ss.nr}, ns {ss.ns}")
    out.append(f"   reorder queue {len(ss.reorder_q)}/{ss.reorder_q_max}, hdr_len {ss.hdr_len}")
    out.append(f"   config 0/0/{'R' if ss.recv_seq else '-'}/{'S' if ss.send_seq else '-'}/-/"
               f"{'LNS' if ss.lns_mode else 'LAC'} {0:08x} {round(ss.reorder_timeout * 1000)}")
    out.append(f"   offset 0 l2specific {ss.l2spec_type}/"
               f"{4 if ss.l2spec_type == 1 and ss.tunnel.version == 3 else 0}")
    if ss.cookie:
        out.append("   cookie " + " ".join(f"{b:02x}" for b in ss.cookie))
    if ss.peer_cookie:
        out.append("   peer cookie " + " ".join(f"{b:02x}" for b in ss.peer_cookie))
    out.append(f"   {ss.nr}/{ss.ns} tx {s.tx_packets}/{s.tx_bytes}/{s.tx_errors} "
               f"rx {s.rx_packets}/{s.rx_bytes}/{s.rx_errors}")
    out.append(f"   seq_discards {s.rx_seq_discards} oos {s.rx_oos_packets} "
               f"cookie_discards {s.rx_cookie_discards}")
    if ss.ifname:
        out.append(f"   interface {ss.ifname}")
    return "\n".join(out) + "\n"


def debug_listing(reg: Registry) -> str:
    parts = [HEADER]
    for t in reg.sorted_tunnels():
        parts.append(_tunnel(t))
        parts.extend(_session(t.sessions[sid]) for sid in sorted(t.sessions))
    return "".join(parts)
