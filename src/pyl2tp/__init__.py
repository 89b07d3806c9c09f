"""pyl2tp: L2TPv2 (RFC 2661) and L2TPv3 (RFC 3931) in userspace Python.

Layers, lowest first: ``wire`` (pure codecs), ``dataplane`` (the kernel's tunnel/session model and
receive/transmit algorithms), ``pw`` (pseudowires), ``control`` and ``ppp`` (sans-I/O protocol
cores), ``daemon`` (asyncio wiring), ``mgmt`` (the netlink-like management API) and ``cli``.
Imports only point downward.
"""

__version__ = "0.1.0"
