"""Pseudowires on top of L2TP sessions: Ethernet on a TAP device (``l2tp_eth``) and the PPP
channel (``l2tp_ppp``) that a PPP endpoint or a bridge to another session consumes."""
