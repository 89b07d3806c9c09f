"""The data plane: what ``net/l2tp`` does in the kernel, done in userspace.

``model`` holds tunnels and sessions, ``registry`` enforces the kernel's id and lifetime rules,
``recv`` is the kernel's receive algorithm (cookies, sequence numbers, reordering) as a sans-I/O
core, ``xmit`` builds headers, and the backends own sockets and devices.
"""
