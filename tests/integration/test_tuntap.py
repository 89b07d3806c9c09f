"""TAP/TUN devices against the real kernel, each test in a namespace of its own.

The device code runs in a child Python under ``ip netns exec`` (Python 3.11 has no setns), which
also gives it a ``/sys`` showing the namespace's devices. Each child prints one JSON line of
observations and the test asserts on them, so a failure shows what was seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from tests.support.netns import NetNS, child_env, wait_for

from pyl2tp.dataplane.tuntap import format_mac, parse_mac, validate_ifname

NetnsFactory = Callable[[str], NetNS]

PRELUDE = """
import errno, json, os, select, socket, struct, subprocess, sys, time
from pyl2tp.dataplane.tuntap import NetDevice, device_exists, open_tap, open_tun

def sh(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

def stat(dev, counter):
    with open(f"/sys/class/net/{dev}/statistics/{counter}") as f:
        return int(f.read())

def link(dev):
    return json.loads(sh("ip", "-j", "-d", "link", "show", "dev", dev))[0]

def csum(data):
    if len(data) % 2:
        data += b"\\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def echo_reply(ip_packet):
    # Turn an ICMP echo request into its reply: swap addresses (the IPv4 header checksum is a
    # sum, so a swap leaves it valid), type 8 -> 0, new ICMP checksum.
    ihl = (ip_packet[0] & 0x0F) * 4
    hdr = bytearray(ip_packet[:ihl])
    hdr[12:16], hdr[16:20] = ip_packet[16:20], ip_packet[12:16]
    icmp = bytearray(ip_packet[ihl:])
    icmp[0] = 0
    icmp[2:4] = b"\\0\\0"
    icmp[2:4] = struct.pack("!H", csum(bytes(icmp)))
    return bytes(hdr) + bytes(icmp)

def is_echo_request(ip_packet, dst):
    return (
        len(ip_packet) >= 28 and ip_packet[0] >> 4 == 4 and ip_packet[9] == 1
        and ip_packet[16:20] == socket.inet_aton(dst)
        and ip_packet[(ip_packet[0] & 0x0F) * 4] == 8
    )

def done(**kw):
    print(json.dumps(kw), flush=True)
"""


def in_ns(ns: NetNS, body: str, timeout: float = 30.0) -> dict[str, Any]:
    """Run ``body`` (after PRELUDE) in ``ns`` and return the JSON it printed last."""
    proc = ns.python(PRELUDE + textwrap.dedent(body), check=False, timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"child printed nothing; stderr:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- pure checks, no privileges needed ------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "a b", "a\tb", "a:b", "x" * 16, "é" * 8, "tap%d"]
)
def test_invalid_names_rejected(name: str) -> None:
    with pytest.raises(ValueError):
        validate_ifname(name)


@pytest.mark.parametrize("name", ["l2tpeth0", "x" * 15, "pw-1", "a.b", "A_b"])
def test_valid_names_accepted(name: str) -> None:
    assert validate_ifname(name) == name.encode()


@pytest.mark.parametrize("template", ["l2tpeth", "x%d%d", "x%s", "%d" + "x" * 14])
def test_invalid_templates_rejected(template: str) -> None:
    with pytest.raises(ValueError):
        validate_ifname(template, template=True)


def test_mac_parsing() -> None:
    assert parse_mac("02:00:5e:00:53:01") == bytes.fromhex("02005e005301")
    assert parse_mac("02-00-5E-00-53-01") == bytes.fromhex("02005e005301")
    assert format_mac(bytes.fromhex("02005e005301")) == "02:00:5e:00:53:01"
    for bad in ("02:00:5e:00:53", "zz:00:5e:00:53:01", "0200.5e00.5301", b"\x02\x00"):
        with pytest.raises(ValueError):
            parse_mac(bad)


# -- against the kernel ---------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_template_names_lowest_free(netns_factory: NetnsFactory) -> None:
    ns = netns_factory("tap")
    got = in_ns(
        ns,
        """
        a = open_tap(); b = open_tap(); t = open_tun()
        names = [a.name, b.name, t.name]
        kinds = [a.kind, b.kind, t.kind]
        a.close()
        c = open_tap()  # the lowest free number again
        d = open_tap(template="pw%d")
        done(names=names, kinds=kinds, reuse=c.name, custom=d.name,
             if_names=sorted(n for _, n in socket.if_nameindex()),
             ifindex_ok=b.ifindex == socket.if_nametoindex(b.name))
        """,
    )
    assert got["names"] == ["l2tpeth0", "l2tpeth1", "ppp0"]
    assert got["kinds"] == ["tap", "tap", "tun"]
    assert got["reuse"] == "l2tpeth0"
    assert got["custom"] == "pw0"
    assert got["if_names"] == ["l2tpeth0", "l2tpeth1", "lo", "ppp0", "pw0"]
    assert got["ifindex_ok"]


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_concurrent_template_allocation_is_race_free(netns_factory: NetnsFactory) -> None:
    """Processes creating devices at once never collide: the kernel picks names atomically."""
    ns = netns_factory("race")
    code = PRELUDE + textwrap.dedent(
        """
        devs = [open_tap() for _ in range(20)]
        done(names=[d.name for d in devs])
        sys.stdin.read()  # keep the devices until the test is done looking
        """
    )
    procs = [
        ns.popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(4)
    ]
    names: list[str] = []
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        names += json.loads(line)["names"]
    assert sorted(names) == sorted(f"l2tpeth{i}" for i in range(80))
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(10) == 0


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_explicit_name_duplicates_and_invalid(netns_factory: NetnsFactory) -> None:
    ns = netns_factory("tap")
    got = in_ns(
        ns,
        """
        errors = {}
        dev = open_tap("pw-test0")
        for label, fn in [("dup_tap", lambda: open_tap("pw-test0")),
                          ("dup_tun", lambda: open_tun("pw-test0")),
                          ("dup_lo", lambda: open_tap("lo")),
                          ("bad", lambda: open_tap("a/b")),
                          ("long", lambda: open_tap("x" * 16))]:
            try:
                fn()
                errors[label] = None
            except Exception as exc:
                errors[label] = [type(exc).__name__, str(exc)]
        done(name=dev.name, exists=device_exists("pw-test0"), errors=errors,
             lo=device_exists("lo"), missing=device_exists("nope0"), invalid=device_exists("a/b"),
             devices=sorted(n for _, n in socket.if_nameindex()))
        """,
    )
    assert got["name"] == "pw-test0"
    assert got["exists"] and got["lo"]
    assert not got["missing"] and not got["invalid"]
    errors = got["errors"]
    for label in ("dup_tap", "dup_tun", "dup_lo"):
        assert errors[label][0] == "FileExistsError", errors
    assert "already exists" in errors["dup_tap"][1]
    assert errors["bad"][0] == "ValueError"
    assert errors["long"][0] == "ValueError"
    assert got["devices"] == ["lo", "pw-test0"]


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_mtu_up_mac_carrier(netns_factory: NetnsFactory) -> None:
    ns = netns_factory("tap")
    got = in_ns(
        ns,
        """
        dev = open_tap(mtu=1446)
        out = {"mtu0": dev.get_mtu(), "up0": dev.is_up(), "mac0": dev.get_mac().hex()}
        dev.set_mtu(9000)
        out["mtu1"] = dev.get_mtu()
        out["ip_mtu"] = link(dev.name)["mtu"]
        dev.set_up()
        out["up1"] = dev.is_up()
        out["ip_flags"] = link(dev.name)["flags"]
        dev.set_mac("02:00:5e:10:00:01")
        out["mac1"] = dev.get_mac().hex()
        out["ip_mac"] = link(dev.name)["address"]
        dev.set_carrier(False)
        out["operstate_nocarrier"] = link(dev.name)["operstate"]
        dev.set_carrier(True)
        try:
            dev.set_mtu(10)
        except ValueError as exc:
            out["small_mtu"] = str(exc)
        try:
            dev.set_mac("01:00:5e:00:00:01")
        except ValueError as exc:
            out["mcast_mac"] = str(exc)
        dev.set_up(False)
        out["up2"] = dev.is_up()
        up_at_open = open_tap(up=True)
        out["up_at_open"] = up_at_open.is_up()
        tun = open_tun(mtu=1400)
        out["tun_mtu"] = tun.get_mtu()
        out["tun_mac"] = tun.get_mac().hex()
        try:
            tun.set_mac("02:00:00:00:00:01")
        except ValueError as exc:
            out["tun_set_mac"] = str(exc)
        done(**out)
        """,
    )
    assert got["mtu0"] == 1446
    assert not got["up0"]
    assert len(got["mac0"]) == 12
    assert got["mtu1"] == 9000 == got["ip_mtu"]
    assert got["up1"] and "UP" in got["ip_flags"]
    assert got["mac1"] == "02005e100001"
    assert got["ip_mac"] == "02:00:5e:10:00:01"
    assert got["operstate_nocarrier"] == "DOWN"
    assert "out of range" in got["small_mtu"]
    assert "multicast" in got["mcast_mac"]
    assert not got["up2"]
    assert got["up_at_open"]
    assert got["tun_mtu"] == 1400
    assert got["tun_mac"] == ""
    assert "TUN" in got["tun_set_mac"]


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_tap_answers_kernel_arp_and_ping(netns_factory: NetnsFactory) -> None:
    """Play the neighbour behind a TAP: the kernel's ARP request and ping come out of the fd,
    and the replies we write make ``ping`` succeed."""
    ns = netns_factory("tap")
    got = in_ns(
        ns,
        """
        peer_ip, peer_mac = "192.0.2.2", bytes.fromhex("02005e000202")
        dev = open_tap(up=True)
        my_mac = dev.get_mac()
        sh("ip", "addr", "add", "192.0.2.1/24", "dev", dev.name)
        rx0 = stat(dev.name, "rx_packets")
        ping = subprocess.Popen(["ping", "-c1", "-W5", peer_ip], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        seen = {"arp_request": None, "echo_request": False, "other_frames": 0}
        deadline = time.monotonic() + 10
        while ping.poll() is None and time.monotonic() < deadline:
            if not select.select([dev], [], [], 0.1)[0]:
                continue
            frame = dev.read()
            if frame is None:
                continue
            etype = struct.unpack("!H", frame[12:14])[0]
            if etype == 0x0806 and frame[38:42] == socket.inet_aton(peer_ip):
                op = struct.unpack("!H", frame[20:22])[0]
                seen["arp_request"] = {"op": op, "dst": frame[:6].hex(),
                                       "src_ok": frame[6:12] == my_mac}
                arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + peer_mac + frame[38:42]
                arp += frame[22:28] + frame[28:32]
                dev.write(frame[6:12] + peer_mac + b"\\x08\\x06" + arp)
            elif etype == 0x0800 and is_echo_request(frame[14:], peer_ip):
                seen["echo_request"] = frame[:6] == peer_mac
                dev.write(frame[6:12] + peer_mac + b"\\x08\\x00" + echo_reply(frame[14:]))
            else:
                seen["other_frames"] += 1  # IPv6 MLD/RS from the kernel, ignored
        if ping.poll() is None:
            ping.kill()
        out = ping.communicate()[0]
        done(ping_rc=ping.returncode, ping_out=out, rx=stat(dev.name, "rx_packets") - rx0,
             drops=dev.write_drops, **seen)
        """,
    )
    assert got["arp_request"] == {"op": 1, "dst": "ff" * 6, "src_ok": True}, got
    assert got["echo_request"], got
    assert got["ping_rc"] == 0, got["ping_out"]
    assert got["rx"] == 2  # our ARP reply and echo reply, as the kernel counted them
    assert got["drops"] == 0


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_tap_write_counts_and_drops(netns_factory: NetnsFactory) -> None:
    ns = netns_factory("tap")
    got = in_ns(
        ns,
        """
        dev = open_tap(up=True)
        rx0, bytes0 = stat(dev.name, "rx_packets"), stat(dev.name, "rx_bytes")
        frame = b"\\xff" * 6 + bytes.fromhex("02005e000303") + b"\\x88\\xb5" + b"x" * 50
        for _ in range(3):
            dev.write(frame)
        dev.write(frame[:5])  # shorter than an Ethernet header: the kernel refuses it
        out = {"rx": stat(dev.name, "rx_packets") - rx0,
               "rx_bytes": stat(dev.name, "rx_bytes") - bytes0,
               "drops": dev.write_drops, "by_errno": dev.write_drop_errnos}
        # Nothing reads what the host sends: read() says so with None, not an exception.
        dev2 = open_tap()
        out["empty_read"] = dev2.read()
        buf = bytearray(2048)
        out["empty_readinto"] = dev2.readinto(buf)
        done(**out)
        """,
    )
    assert got["rx"] == 3
    assert got["rx_bytes"] == 3 * 64
    assert got["drops"] == 1
    assert got["by_errno"] == {"22": 1}  # EINVAL
    assert got["empty_read"] is None
    assert got["empty_readinto"] is None


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_tun_carries_ip_packets(netns_factory: NetnsFactory) -> None:
    """A TUN is what the PPP endpoint uses: raw IP packets, no link header, no ARP."""
    ns = netns_factory("tun")
    got = in_ns(
        ns,
        """
        dev = open_tun(up=True)
        sh("ip", "addr", "add", "198.51.100.1", "peer", "198.51.100.2", "dev", dev.name)
        ping = subprocess.Popen(["ping", "-c1", "-W5", "198.51.100.2"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        echo = False
        deadline = time.monotonic() + 10
        while ping.poll() is None and time.monotonic() < deadline:
            if not select.select([dev], [], [], 0.1)[0]:
                continue
            pkt = dev.read()
            if pkt is not None and is_echo_request(pkt, "198.51.100.2"):
                echo = True
                dev.write(echo_reply(pkt))
        if ping.poll() is None:
            ping.kill()
        done(echo=echo, ping_rc=ping.returncode, out=ping.communicate()[0],
             rx=stat(dev.name, "rx_packets"), link_type=link(dev.name)["link_type"])
        """,
    )
    assert got["echo"], got
    assert got["ping_rc"] == 0, got["out"]
    assert got["rx"] == 1
    assert got["link_type"] == "none"


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_close_deletes_device(netns_factory: NetnsFactory) -> None:
    ns = netns_factory("tap")
    got = in_ns(
        ns,
        """
        dev = open_tap("pw-close")
        before = device_exists("pw-close")
        dev.close()
        dev.close()  # idempotent
        after = device_exists("pw-close")
        with open_tun() as tun:
            inside = device_exists(tun.name)
        done(before=before, after=after, inside=inside, tun_after=device_exists(tun.name),
             closed=dev.closed, fd=dev.fd, name_after_close=dev.name,
             sys=os.listdir("/sys/class/net"))
        """,
    )
    assert got["before"] and not got["after"]
    assert got["inside"] and not got["tun_after"]
    assert got["closed"] and got["fd"] == -1
    assert got["name_after_close"] == "pw-close"
    assert got["sys"] == ["lo"]


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_killed_owner_leaves_nothing_behind(netns_factory: NetnsFactory) -> None:
    ns = netns_factory("tap")
    code = PRELUDE + "dev = open_tap()\ndone(name=dev.name)\ntime.sleep(60)\n"
    proc = ns.popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env()
    )
    assert proc.stdout is not None
    name = json.loads(proc.stdout.readline())["name"]
    assert ns.run(["ip", "link", "show", "dev", name], check=False).returncode == 0
    proc.kill()
    proc.wait(10)
    wait_for(
        lambda: ns.run(["ip", "link", "show", "dev", name], check=False).returncode != 0,
        timeout=5,
        message=f"{name} to disappear after its owner was killed",
    )


@pytest.mark.netns
@pytest.mark.timeout(60)
def test_multi_queue(netns_factory: NetnsFactory) -> None:
    ns = netns_factory("mq")
    got = in_ns(
        ns,
        """
        dev = open_tap("pw-mq", multi_queue=True, up=True)
        q2 = dev.open_queue()
        q3 = dev.open_queue()
        out = {"names": [q2.name, q3.name], "same_ifindex": q2.ifindex == dev.ifindex,
               "numqueues": link("pw-mq")["linkinfo"]["info_data"]["numqueues"]}
        q3.set_queue_enabled(False)
        out["numdisabled"] = link("pw-mq")["linkinfo"]["info_data"]["numdisabled"]
        q3.set_queue_enabled(True)
        dev.close()
        out["after_first_close"] = device_exists("pw-mq")
        q2.write(b"\\xff" * 6 + bytes.fromhex("02005e000404") + b"\\x88\\xb5" + b"y" * 50)
        out["rx_via_queue"] = stat("pw-mq", "rx_packets")
        q2.close(); q3.close()
        out["after_all_closed"] = device_exists("pw-mq")
        single = open_tap()
        try:
            single.open_queue()
        except ValueError as exc:
            out["single_queue"] = str(exc)
        held = open_tap("pw-mq2", multi_queue=True)
        try:
            open_tap("pw-mq2", multi_queue=True)  # a new device, not another queue of held
        except FileExistsError:
            out["mq_dup"] = True
        done(**out)
        """,
    )
    assert got["names"] == ["pw-mq", "pw-mq"]
    assert got["same_ifindex"]
    assert got["numqueues"] == 3
    assert got["numdisabled"] == 1
    assert got["after_first_close"]
    assert got["rx_via_queue"] == 1
    assert not got["after_all_closed"]
    assert "multi_queue" in got["single_queue"]
    assert got["mq_dup"]
