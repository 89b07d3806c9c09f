"""Packet loss and duplication on a real path, made by nftables inside a test namespace.

``loss(ns, 20)`` adds a table that drops 20 % of the L2TP packets arriving in ``ns``
(``numgen random mod 100 < 20 drop`` in the input hook) and removes it on exit;
``duplicate(ns, to, dev, 20)`` adds one that sends a second copy of 20 % of the L2TP packets
leaving ``ns`` (``dup to ADDR device DEV`` in the output hook: the copy follows the original
on the same device, so the receiver sees the same datagram twice). Both match UDP port 1701
by default; ``control_only`` narrows them to control messages (the T bit, the first bit of
the UDP payload: ``@th,64,1 1``).

Each table has a unique name (``pyl2tp_<kind>_<pid>_<n>``), so several can be stacked in one
namespace and removing one never touches another or anything else in the ruleset. The
``packets`` property reads the rule's counter: how many packets were dropped or duplicated.

Reordering and delay need a queue (the kernel here has no netem); see
:class:`tests.robustness.test_lossy_path.Relay` for the in-process relay that does it.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from .netns import NetNS

__all__ = ["NftRule", "duplicate", "loss", "require_nft"]

_seq = itertools.count()


@dataclass
class NftRule:
    """One table with one counted rule in ``ns``; ``packets`` is its counter."""

    ns: NetNS
    family: str
    table: str

    @property
    def packets(self) -> int:
        out = self.ns.run(["nft", "-j", "list", "table", self.family, self.table]).stdout
        for item in json.loads(out)["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            for expr in rule["expr"]:
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        raise AssertionError(f"no counter in table {self.family} {self.table}")


@functools.cache
def _nft_missing() -> str | None:
    """Why the nftables tests cannot run here (None if they can): the ``nft`` command, and
    a kernel that loads a table with ``numgen`` and ``dup`` in a throwaway namespace."""
    if shutil.which("nft") is None:
        return "nftables: the 'nft' command is not installed"
    probe = NetNS("nftprobe")
    try:
        ruleset = ("table ip probe {\n  chain out {\n"
                   "    type filter hook output priority 0; policy accept;\n"
                   "    udp dport 9 numgen random mod 100 < 1 counter drop\n"
                   "    udp dport 9 dup to 127.0.0.1 device \"lo\"\n  }\n}\n")
        proc = probe.run(["nft", "-f", "-"], input=ruleset, check=False)
        if proc.returncode != 0:
            return f"nftables: the kernel refuses numgen/dup rules: {proc.stderr.strip()}"
    finally:
        probe.close()
    return None


def require_nft() -> None:
    """Skip without nftables, or fail under ``CI=true`` (like the namespace tests)."""
    reason = _nft_missing()
    if reason is None:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _match(port: int, control_only: bool) -> str:
    match = f"udp dport {port}"
    if control_only:
        match += " @th,64,1 1"
    return match


@contextmanager
def _table(ns: NetNS, family: str, kind: str, chain: str) -> Iterator[NftRule]:
    name = f"pyl2tp_{kind}_{os.getpid()}_{next(_seq)}"
    ns.run(["nft", "-f", "-"], input=f"table {family} {name} {{\n{chain}\n}}\n")
    try:
        yield NftRule(ns, family, name)
    finally:
        ns.run(["nft", "delete", "table", family, name], check=False)


@contextmanager
def loss(ns: NetNS, percent: int, *, port: int = 1701, control_only: bool = False
         ) -> Iterator[NftRule]:
    """Drop ``percent`` % of the L2TP packets (UDP ``port``) that arrive in ``ns``."""
    if not 0 <= percent <= 100:
        raise ValueError("percent must be 0..100")
    chain = (
        "  chain input {\n"
        "    type filter hook input priority -10; policy accept;\n"
        f"    {_match(port, control_only)} numgen random mod 100 < {percent} counter drop\n"
        "  }"
    )
    with _table(ns, "inet", "loss", chain) as rule:
        yield rule


@contextmanager
def duplicate(ns: NetNS, to: str, dev: str, percent: int, *, port: int = 1701,
              control_only: bool = False) -> Iterator[NftRule]:
    """Send a second copy of ``percent`` % of the L2TP packets leaving ``ns`` for IPv4
    address ``to`` through ``dev`` (``dup`` exists for the ip family only)."""
    if not 0 <= percent <= 100:
        raise ValueError("percent must be 0..100")
    chain = (
        "  chain output {\n"
        "    type filter hook output priority -10; policy accept;\n"
        f"    ip daddr {to} {_match(port, control_only)} numgen random mod 100 < {percent} "
        f"counter dup to {to} device \"{dev}\"\n"
        "  }"
    )
    with _table(ns, "ip", "dup", chain) as rule:
        yield rule
