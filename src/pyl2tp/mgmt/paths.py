"""Where the daemon's management socket lives.

One daemon serves one network namespace (as the kernel's L2TP state is per namespace), so the
default path names the namespace when the process runs in a named one: ``ip netns exec NS
pyl2tp show tunnel`` then reaches NS's daemon with no extra option, like ``ip netns exec NS ip
l2tp show tunnel`` reaches NS's kernel state.
"""

from __future__ import annotations

import os

RUN_DIR = "/run/pyl2tp"
NETNS_DIR = "/run/netns"


def current_netns_name() -> str | None:
    """The name under /run/netns of the namespace this process is in, if it has one."""
    try:
        mine = os.stat("/proc/self/ns/net")
        names = os.listdir(NETNS_DIR)
    except OSError:
        return None
    for name in sorted(names):
        try:
            st = os.stat(os.path.join(NETNS_DIR, name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return name
    return None


def default_socket_path() -> str:
    env = os.environ.get("PYL2TP_SOCKET")
    if env:
        return env
    ns = current_netns_name()
    return os.path.join(RUN_DIR, f"{ns}.sock" if ns else "pyl2tp.sock")
