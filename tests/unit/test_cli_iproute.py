"""Table tests pinning pyl2tp's ``ip l2tp`` language to iproute2's behaviour.

Expected texts come from linux-kernel-l2tp-notes.md §11 (usage, parser table, validation
order, show formats and their examples); where pyl2tp deliberately differs (client-side
filters, no field leaking between dumped objects, extensions) the test says so.
"""

from __future__ import annotations

import errno
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pyl2tp.cli.iproute import (
    STATUS_ADDRESS,
    STATUS_DUMP,
    STATUS_KERNEL,
    STATUS_USAGE,
    CliError,
    Filters,
    Invocation,
    OutputOptions,
    execute,
    filter_sessions,
    filter_tunnels,
    format_error,
    format_sessions,
    format_tunnels,
    ip_usage,
    parse,
    render,
    usage,
)
from pyl2tp.errors import L2tpError

IP_USAGE = (
    "Usage: ip l2tp add tunnel\n"
    "          remote ADDR local ADDR\n"
    "          tunnel_id ID peer_tunnel_id ID\n"
    "          [ encap { ip | udp } ]\n"
    "          [ udp_sport PORT ] [ udp_dport PORT ]\n"
    "          [ udp_csum { on | off } ]\n"
    "          [ udp6_csum_tx { on | off } ]\n"
    "          [ udp6_csum_rx { on | off } ]\n"
    "Usage: ip l2tp add session [ name NAME ]\n"
    "          tunnel_id ID\n"
    "          session_id ID peer_session_id ID\n"
    "          [ cookie HEXSTR ] [ peer_cookie HEXSTR ]\n"
    "          [ seq { none | send | recv | both } ]\n"
    "          [ l2spec_type L2SPEC ]\n"
    "       ip l2tp del tunnel tunnel_id ID\n"
    "       ip l2tp del session tunnel_id ID session_id ID\n"
    "       ip l2tp show tunnel [ tunnel_id ID ]\n"
    "       ip l2tp show session [ tunnel_id ID ] [ session_id ID ]\n"
    "\n"
    "Where: NAME   := STRING\n"
    "       ADDR   := { IP_ADDRESS | any }\n"
    "       PORT   := { 0..65535 }\n"
    "       ID     := { 1..4294967295 }\n"
    "       HEXSTR := { 8 or 16 hex digits (4 / 8 bytes) }\n"
    "       L2SPEC := { none | default }\n"
)

TUNNEL_V4 = "tunnel tunnel_id 3000 peer_tunnel_id 4000 local 1.2.3.4 remote 5.6.7.8"
TUNNEL_V4_UDP = TUNNEL_V4 + " udp_sport 5000 udp_dport 6000"
SESSION = "session tunnel_id 3000 session_id 1000 peer_session_id 2000"


def p(line: str) -> Invocation:
    return parse(line.split())


def err(line: str | list[str]) -> CliError:
    argv = line.split() if isinstance(line, str) else line
    with pytest.raises(CliError) as info:
        parse(argv)
    return info.value


def only(inv: Invocation) -> dict[str, Any]:
    assert len(inv.requests) == 1, inv.requests
    return inv.requests[0]


def attrs(line: str) -> dict[str, Any]:
    return dict(only(p(line))["attrs"])


# ------------------------------------------------------------------------------------------
# usage and dispatch


def test_ip_usage_text_is_exact() -> None:
    assert ip_usage() == IP_USAGE


def test_usage_is_ip_text_then_extensions() -> None:
    text = usage()
    assert text.startswith(IP_USAGE)
    extra = text[len(IP_USAGE) :]
    assert extra.startswith("\n")
    for word in ("version", "pw_type", "reorder_timeout", "lns_mode", "set session", "--socket"):
        assert word in extra


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["help"],
        ["h"],
        ["he"],
        [""],
        ["l2tp"],
        ["l2tp", "help"],
        ["l2", "h"],
        ["-help"],
        ["--help"],
        ["-j", "-he"],
        ["add"],
        ["del"],
        ["show"],
        ["set"],
        ["add", "help"],
        ["add", "tunnel", "h"],
        ["show", "tunnel", "hel"],
        ["add", "tunnel", ""],
        ["-j"],
        ["--socket", "/x"],
    ],
)
def test_usage_requests(argv: list[str]) -> None:
    inv = parse(argv)
    assert inv.usage is True
    assert inv.requests == []


@pytest.mark.parametrize(
    ("word", "cmd"),
    [
        ("a", "tunnel_create"),
        ("ad", "tunnel_create"),
        ("add", "tunnel_create"),
        ("d", "tunnel_delete"),
        ("de", "tunnel_delete"),
        ("del", "tunnel_delete"),
        ("dele", "tunnel_delete"),
        ("delete", "tunnel_delete"),
        ("s", "tunnel_get"),
        ("sh", "tunnel_get"),
        ("show", "tunnel_get"),
        ("l", "tunnel_get"),
        ("ls", "tunnel_get"),
        ("lst", "tunnel_get"),
        ("li", "tunnel_get"),
        ("list", "tunnel_get"),
        ("se", "tunnel_modify"),
        ("set", "tunnel_modify"),
    ],
)
def test_subcommand_prefix_matching(word: str, cmd: str) -> None:
    args = {
        "tunnel_create": TUNNEL_V4_UDP,
        "tunnel_delete": "tunnel tunnel_id 1",
        "tunnel_get": "tunnel",
        "tunnel_modify": "tunnel tunnel_id 1",
    }[cmd]
    assert only(parse([word, *args.split()]))["cmd"] == cmd


@pytest.mark.parametrize("word", ["x", "adds", "deletes", "shows", "lists", "lsts", "sets", "Add"])
def test_unknown_subcommand(word: str) -> None:
    e = err([word, "tunnel"])
    assert e.message == f'Command "{word}" is unknown, try "ip l2tp help".\n'
    assert e.status == STATUS_USAGE


@pytest.mark.parametrize("lead", [[], ["l2tp"], ["l2t"], ["l2"]])
def test_optional_l2tp_word(lead: list[str]) -> None:
    inv = parse([*lead, "show", "tunnel"])
    assert inv.show == "tunnels"


def test_l2tp_word_is_not_abbreviated_to_one_letter() -> None:
    # "l" is the subcommand "lst", as in ip; only "l2".."l2tp" name the object.
    assert parse(["l", "tunnel"]).show == "tunnels"


def test_options_after_l2tp_word_are_commands_like_ip() -> None:
    e = err(["l2tp", "-j", "show", "tunnel"])
    assert e.message == 'Command "-j" is unknown, try "ip l2tp help".\n'


# ------------------------------------------------------------------------------------------
# global options


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ([], OutputOptions()),
        (["-j"], OutputOptions(json=True)),
        (["-json"], OutputOptions(json=True)),
        (["--json"], OutputOptions(json=True)),
        (["-js"], OutputOptions(json=True)),
        (["-p"], OutputOptions(pretty=True)),
        (["-pretty"], OutputOptions(pretty=True)),
        (["-j", "-p"], OutputOptions(json=True, pretty=True)),
        (["-o"], OutputOptions(oneline=True)),
        (["-oneline"], OutputOptions(oneline=True)),
        (["-s"], OutputOptions(stats=1)),
        (["-stats"], OutputOptions(stats=1)),
        (["-statistics"], OutputOptions(stats=1)),
        (["-s", "-s"], OutputOptions(stats=2)),
        (["-h"], OutputOptions()),
        (["-d"], OutputOptions()),
        (["-details"], OutputOptions()),
        (["-4"], OutputOptions()),
        (["-6"], OutputOptions()),
        (["-c"], OutputOptions()),
        (["-color=auto"], OutputOptions()),
        (["-r"], OutputOptions()),
        (["-N"], OutputOptions()),
        (["-t"], OutputOptions()),
        (["-ts"], OutputOptions()),
        (["-br"], OutputOptions()),
        (["-iec"], OutputOptions()),
        (["-force"], OutputOptions()),
        (["-j", "-p", "-o", "-s"], OutputOptions(json=True, pretty=True, oneline=True, stats=1)),
        (["-j", "--"], OutputOptions(json=True)),
    ],
)
def test_global_options(opts: list[str], expected: OutputOptions) -> None:
    inv = parse([*opts, "show", "tunnel"])
    assert inv.output == expected
    assert inv.show == "tunnels"


@pytest.mark.parametrize(
    ("opt", "shown"),
    [("-x", "-x"), ("--frob", "-frob"), ("-color=bogus", "-color=bogus"), ("-jsonx", "-jsonx")],
)
def test_unknown_global_option(opt: str, shown: str) -> None:
    e = err([opt, "show", "tunnel"])
    assert e.message == f'Option "{shown}" is unknown, try "ip -help".\n'
    assert e.status == STATUS_USAGE


@pytest.mark.parametrize(
    "argv", [["-f", "inet6", "show", "tunnel"], ["-family", "inet", "show", "tunnel"]]
)
def test_family_option_is_ignored_like_ip(argv: list[str]) -> None:
    # ip's l2tp module ignores -f/-family and prints every tunnel (recorded in the kernel VM).
    assert parse(argv).show == "tunnels"
    assert err(["-f"]).status == STATUS_USAGE


@pytest.mark.parametrize("opt", ["-netns", "-n", "-b", "-batch", "-V", "-a", "-echo"])
def test_unsupported_global_option(opt: str) -> None:
    e = err([opt, "x", "show", "tunnel"])
    assert e.message == f'Option "{opt}" is not supported by pyl2tp\n'
    assert e.status == STATUS_USAGE


@pytest.mark.parametrize(
    "argv",
    [
        ["--socket", "/run/p.sock", "show", "tunnel"],
        ["--socket=/run/p.sock", "show", "tunnel"],
        ["-j", "--socket", "/run/p.sock", "-p", "show", "tunnel"],
    ],
)
def test_socket_option(argv: list[str]) -> None:
    assert parse(argv).socket_path == "/run/p.sock"


def test_socket_option_needs_a_path() -> None:
    e = err(["--socket"])
    assert e.status == STATUS_USAGE
    assert "--socket" in e.message


def test_socket_default_is_none() -> None:
    assert p("show tunnel").socket_path is None


def test_double_dash_ends_options() -> None:
    e = err(["--", "-j", "show", "tunnel"])
    assert e.message == 'Command "-j" is unknown, try "ip l2tp help".\n'


# ------------------------------------------------------------------------------------------
# add tunnel


def test_add_tunnel_udp_v4() -> None:
    req = only(p("add " + TUNNEL_V4_UDP))
    assert req == {
        "cmd": "tunnel_create",
        "attrs": {
            "conn_id": 3000,
            "peer_conn_id": 4000,
            "proto_version": 3,
            "encap_type": 0,
            "ip_saddr": "1.2.3.4",
            "ip_daddr": "5.6.7.8",
            "udp_sport": 5000,
            "udp_dport": 6000,
        },
    }
    assert list(req["attrs"]) == [
        "conn_id",
        "peer_conn_id",
        "proto_version",
        "encap_type",
        "ip_saddr",
        "ip_daddr",
        "udp_sport",
        "udp_dport",
    ]


def test_add_tunnel_ip_encap_needs_no_ports() -> None:
    assert attrs("add " + TUNNEL_V4 + " encap ip") == {
        "conn_id": 3000,
        "peer_conn_id": 4000,
        "proto_version": 3,
        "encap_type": 1,
        "ip_saddr": "1.2.3.4",
        "ip_daddr": "5.6.7.8",
    }


def test_add_tunnel_ip_encap_drops_given_ports() -> None:
    a = attrs("add " + TUNNEL_V4_UDP + " encap ip udp_csum on")
    assert "udp_sport" not in a and "udp_dport" not in a and "udp_csum" not in a


def test_add_tunnel_ipv6() -> None:
    a = attrs(
        "add tunnel tid 1 ptid 2 local 2001:DB8::1 remote 2001:db8:0:0::2 "
        "udp_sport 1701 udp_dport 1701"
    )
    assert a["ip6_saddr"] == "2001:db8::1"
    assert a["ip6_daddr"] == "2001:db8::2"
    assert "ip_saddr" not in a and "ip_daddr" not in a


def test_add_tunnel_mixed_families_is_sent_as_is() -> None:
    # ip picks the attribute per address; the kernel answers EINVAL for a mix.
    a = attrs("add tunnel tid 1 ptid 2 local 10.0.0.1 remote ::1 encap ip")
    assert a["ip_saddr"] == "10.0.0.1"
    assert a["ip6_daddr"] == "::1"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", {}),
        ("udp_csum off", {}),
        ("udp_csum on", {"udp_csum": True}),
        ("udp_csum on udp_csum off", {}),
        ("udp6_csum_tx on udp6_csum_rx on", {}),
        ("udp6_csum_tx off", {"udp_zero_csum6_tx": True}),
        ("udp6_csum_rx off", {"udp_zero_csum6_rx": True}),
        (
            "udp6_csum_tx off udp6_csum_rx off",
            {"udp_zero_csum6_tx": True, "udp_zero_csum6_rx": True},
        ),
    ],
)
def test_add_tunnel_checksum_options(extra: str, expected: dict[str, Any]) -> None:
    a = attrs(f"add {TUNNEL_V4_UDP} {extra}")
    got = {k: v for k, v in a.items() if "csum" in k}
    assert got == expected


def test_add_tunnel_keywords_in_any_order_last_wins() -> None:
    a = attrs(
        "add udp_dport 6000 remote 9.9.9.9 tunnel local 1.2.3.4 tid 7 ptid 8 udp_sport 5000 "
        "remote 5.6.7.8 tunnel_id 3000 peer_tunnel_id 4000 encap ip encap udp"
    )
    assert a["conn_id"] == 3000
    assert a["peer_conn_id"] == 4000
    assert a["ip_daddr"] == "5.6.7.8"
    assert a["encap_type"] == 0


@pytest.mark.parametrize(
    ("kw", "attr"),
    [
        ("tunnel_id", "conn_id"),
        ("tid", "conn_id"),
        ("peer_tunnel_id", "peer_conn_id"),
        ("ptid", "peer_conn_id"),
    ],
)
def test_tunnel_id_aliases(kw: str, attr: str) -> None:
    a = attrs(f"add {TUNNEL_V4_UDP} {kw} 77")
    assert a[attr] == 77


def test_add_tunnel_version_2_extension() -> None:
    a = attrs("add " + TUNNEL_V4_UDP + " version 2")
    assert a["proto_version"] == 2


def test_add_tunnel_version_3_explicit() -> None:
    assert attrs("add " + TUNNEL_V4_UDP + " version 3")["proto_version"] == 3


@pytest.mark.parametrize("value", ["1", "4", "v2", "02", ""])
def test_add_tunnel_bad_version(value: str) -> None:
    e = err(["add", *TUNNEL_V4_UDP.split(), "version", value])
    assert e.message == f'Unknown L2TP version "{value}"\n'
    assert e.status == STATUS_USAGE


def test_v2_tunnel_needs_udp() -> None:
    e = err("add " + TUNNEL_V4 + " encap ip version 2")
    assert e.message == "Error: L2TPv2 tunnels need encap udp\n"


@pytest.mark.parametrize(
    "line",
    [
        "add tunnel tid 65536 ptid 1 local 1.1.1.1 remote 2.2.2.2 udp_sport 1 udp_dport 1",
        "add tunnel tid 1 ptid 70000 local 1.1.1.1 remote 2.2.2.2 udp_sport 1 udp_dport 1",
        "add session tid 1 sid 65536 psid 1",
        "add session tid 1 sid 1 psid 0x10000",
    ],
)
def test_v2_ids_are_16_bit(line: str) -> None:
    e = err(line + " version 2")
    assert e.message == "Error: L2TPv2 tunnel and session IDs are 1..65535\n"


# ------------------------------------------------------------------------------------------
# add session


def test_add_session_minimal() -> None:
    req = only(p("add " + SESSION))
    assert req == {
        "cmd": "session_create",
        "attrs": {
            "conn_id": 3000,
            "peer_conn_id": 0,
            "session_id": 1000,
            "peer_session_id": 2000,
            "pw_type": 5,
            "l2spec_type": 1,
        },
    }


@pytest.mark.parametrize(
    ("kw", "attr"),
    [
        ("session_id", "session_id"),
        ("sid", "session_id"),
        ("peer_session_id", "peer_session_id"),
        ("psid", "peer_session_id"),
        ("tid", "conn_id"),
        ("ptid", "peer_conn_id"),
    ],
)
def test_session_id_aliases(kw: str, attr: str) -> None:
    assert attrs(f"add {SESSION} {kw} 99")[attr] == 99


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("cookie 0123abcd", {"cookie": "0123abcd"}),
        ("cookie 0123ABCD", {"cookie": "0123abcd"}),
        ("peer_cookie 89abcdef", {"peer_cookie": "89abcdef"}),
        ("cookie 0123456789abcdef", {"cookie": "0123456789abcdef"}),
        (
            "cookie 014d3636deadbeef peer_cookie FEDCBA9876543210",
            {"cookie": "014d3636deadbeef", "peer_cookie": "fedcba9876543210"},
        ),
        ("l2spec_type none", {"l2spec_type": 0}),
        ("l2spec_type NONE", {"l2spec_type": 0}),
        ("l2spec_type Default", {"l2spec_type": 1}),
        ("l2spec_type none l2spec_type default", {"l2spec_type": 1}),
        ("seq both", {"recv_seq": True, "send_seq": True}),
        ("seq BOTH", {"recv_seq": True, "send_seq": True}),
        ("seq recv", {"recv_seq": True}),
        ("seq send", {"send_seq": True}),
        ("seq none", {}),
        ("seq recv seq send", {"recv_seq": True, "send_seq": True}),
        ("seq both seq none", {}),
        ("seq both seq recv", {"recv_seq": True, "send_seq": True}),
        ("name l2tpeth7", {"ifname": "l2tpeth7"}),
        ("name abcdefghijklmno", {"ifname": "abcdefghijklmno"}),
        ("pw_type ppp", {"pw_type": 7}),
        ("pw_type PPP", {"pw_type": 7}),
        ("pw_type eth", {"pw_type": 5}),
        ("reorder_timeout 250", {"recv_timeout": 250}),
        ("reorder_timeout 0x10", {"recv_timeout": 16}),
        ("reorder_timeout 0", {}),
        ("lns_mode on", {"lns_mode": True}),
        ("lns_mode off", {}),
    ],
)
def test_add_session_options(extra: str, expected: dict[str, Any]) -> None:
    base = {
        "conn_id": 3000,
        "peer_conn_id": 0,
        "session_id": 1000,
        "peer_session_id": 2000,
        "pw_type": 5,
        "l2spec_type": 1,
    }
    assert attrs(f"add {SESSION} {extra}") == base | expected


def test_add_session_attribute_order() -> None:
    a = attrs(
        f"add {SESSION} name e0 peer_cookie 89abcdef cookie 01234567 seq both "
        "reorder_timeout 5 lns_mode on"
    )
    assert list(a) == [
        "conn_id",
        "peer_conn_id",
        "session_id",
        "peer_session_id",
        "pw_type",
        "l2spec_type",
        "recv_seq",
        "send_seq",
        "lns_mode",
        "recv_timeout",
        "cookie",
        "peer_cookie",
        "ifname",
    ]


def test_add_session_version_2_defaults_to_ppp() -> None:
    assert attrs(f"add {SESSION} version 2")["pw_type"] == 7
    assert attrs(f"add {SESSION} version 2 pw_type eth")["pw_type"] == 5


def test_add_tunnel_and_session_together() -> None:
    inv = p(f"add {TUNNEL_V4_UDP} session session_id 1000 peer_session_id 2000")
    assert [r["cmd"] for r in inv.requests] == ["tunnel_create", "session_create"]
    session = inv.requests[1]["attrs"]
    # ip sends the parsed peer_tunnel_id in the session request too.
    assert session["conn_id"] == 3000 and session["peer_conn_id"] == 4000
    assert session["pw_type"] == 5


def test_add_v2_tunnel_and_session_uses_ppp() -> None:
    inv = p(f"add {TUNNEL_V4_UDP} version 2 session sid 1 psid 2")
    assert inv.requests[0]["attrs"]["proto_version"] == 2
    assert inv.requests[1]["attrs"]["pw_type"] == 7


# ------------------------------------------------------------------------------------------
# numbers and addresses


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("0x10", 16),
        ("0X1f", 31),
        ("0xFFFFFFFF", 0xFFFFFFFF),
        ("010", 8),
        ("0777", 511),
        ("00", 0),
        ("4294967295", 4294967295),
        (" 7", 7),
        ("\t7", 7),
        ("+7", 7),
        ("-0", 0),
        ("037777777777", 0xFFFFFFFF),
    ],
)
def test_u32_syntax(text: str, value: int) -> None:
    inv = parse(["add", *SESSION.split(), "peer_tunnel_id", text])
    assert only(inv)["attrs"]["peer_conn_id"] == value


@pytest.mark.parametrize(
    "text",
    ["", "abc", "0x", "0xg", "08", "09", "4294967296", "0x100000000", "-1", "-0x1", "7 ", "1e3",
     "1.0", "99999999999999999999999", "0x1g", "++1", " "],
)  # fmt: skip
def test_u32_rejects(text: str) -> None:
    e = err(["add", *SESSION.split(), "tunnel_id", text])
    assert e.message == f'Error: argument "{text}" is wrong: invalid ID\n\n'
    assert e.status == STATUS_USAGE


@pytest.mark.parametrize(
    ("text", "value"), [("1", 1), ("65535", 65535), ("0xffff", 65535), ("0100", 64)]
)
def test_port_syntax(text: str, value: int) -> None:
    a = attrs(f"add {TUNNEL_V4} udp_sport {text} udp_dport {text}")
    assert a["udp_sport"] == value and a["udp_dport"] == value


@pytest.mark.parametrize("kw", ["udp_sport", "udp_dport"])
@pytest.mark.parametrize("text", ["65536", "0x10000", "-1", "x", "", "1701/udp"])
def test_port_rejects(kw: str, text: str) -> None:
    e = err(["add", *TUNNEL_V4.split(), kw, text])
    assert e.message == f'Error: argument "{text}" is wrong: invalid port\n\n'
    assert e.status == STATUS_USAGE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        ("10.8", "10.8.0.0"),
        ("10", "10.0.0.0"),
        ("0x7f.1", "127.1.0.0"),
        ("010.0.0.1", "8.0.0.1"),
        ("255.255.255.255", "255.255.255.255"),
        ("0.0.0.0", "0.0.0.0"),
    ],
)
def test_ipv4_syntax(text: str, expected: str) -> None:
    a = attrs(f"add tunnel tid 1 ptid 1 encap ip remote 9.9.9.9 local {text}")
    assert a["ip_saddr"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::1", "::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("fe80::", "fe80::"),
    ],
)
def test_ipv6_syntax(text: str, expected: str) -> None:
    a = attrs(f"add tunnel tid 1 ptid 1 encap ip local ::2 remote {text}")
    assert a["ip6_daddr"] == expected


@pytest.mark.parametrize(
    "text",
    ["foo", "", "1.2.3.4.5", "256.1.1.1", "1..2", "1.2.3.", "1.2.3.4 ", "::g", "fe80::1%eth0",
     "1:2:3:4:5:6:7:8:9", "example.com", "0x100.1.1.1", "08.1.1.1"],
)  # fmt: skip
@pytest.mark.parametrize("kw", ["local", "remote"])
def test_address_rejects(kw: str, text: str) -> None:
    e = err(["add", "tunnel", kw, text])
    assert e.message == f'Error: any valid address is expected rather than "{text}".\n'
    assert e.status == STATUS_ADDRESS


@pytest.mark.parametrize("word", ["any", "all", "default"])
def test_address_keywords_leave_address_unset(word: str) -> None:
    assert err(f"add tunnel tid 1 ptid 1 local {word} remote 1.1.1.1").message == (
        'Error: argument "local" is required\n'
    )
    assert err(f"add tunnel tid 1 ptid 1 local 1.1.1.1 remote {word}").message == (
        'Error: argument "remote" is required\n'
    )


def test_address_keyword_does_not_matter_for_sessions() -> None:
    assert only(p(f"add {SESSION} local any"))["cmd"] == "session_create"


# ------------------------------------------------------------------------------------------
# parse-time errors


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("add encap gre", 'Unknown tunnel encapsulation "gre"\n'),
        ("add encap UDP", 'Unknown tunnel encapsulation "UDP"\n'),
        ("add udp_csum yes", 'Error: argument "yes" is wrong: invalid option for udp_csum\n\n'),
        ("add udp_csum ON", 'Error: argument "ON" is wrong: invalid option for udp_csum\n\n'),
        (
            "add udp6_csum_rx 1",
            'Error: argument "1" is wrong: invalid option for udp6_csum_rx\n\n',
        ),
        (
            "add udp6_csum_tx no",
            'Error: argument "no" is wrong: invalid option for udp6_csum_tx\n\n',
        ),
        (
            "add cookie 0123456",
            'Error: argument "0123456" is wrong: cookie must be either 8 or 16 hex digits\n\n',
        ),
        (
            "add peer_cookie 0123456789",
            'Error: argument "0123456789" is wrong: cookie must be either 8 or 16 hex digits\n\n',
        ),
        (
            "add cookie 0123456g",
            'Error: argument "0123456g" is wrong: cookie must be a hex string\n\n',
        ),
        (
            "add peer_cookie 0x234567",
            'Error: argument "0x234567" is wrong: cookie must be a hex string\n\n',
        ),
        ("add l2spec_type udp", 'Unknown layer2specific header type "udp"\n'),
        ("add seq all", 'Unknown seq value "all"\n'),
        ("add name a/b", 'Error: argument "a/b" is wrong: "name" not a valid ifname\n'),
        (
            "add name abcdefghijklmnop",
            'Error: argument "abcdefghijklmnop" is wrong: "name" not a valid ifname\n',
        ),
        ("add pw_type ip", 'Unknown pseudowire type "ip"\n'),
        ("add lns_mode yes", 'Error: argument "yes" is wrong: invalid option for lns_mode\n\n'),
        ("add reorder_timeout 1s", 'Error: argument "1s" is wrong: invalid reorder timeout\n'),
        ("add tunnel frob", "Unknown command: frob\n" + IP_USAGE),
        ("add tunnel Tunnel", "Unknown command: Tunnel\n" + IP_USAGE),
        ("add tunnel mtu 1400", "Unknown command: mtu\n" + IP_USAGE),
        ("add tunnel helpme", "Unknown command: helpme\n" + IP_USAGE),
        ("del tunnel tunnel_id", 'Command line is not complete. Try option "help"\n'),
        ("show session sid", 'Command line is not complete. Try option "help"\n'),
        ("add tunnel encap", 'Command line is not complete. Try option "help"\n'),
        ("add offset", 'Command line is not complete. Try option "help"\n'),
    ],
)
def test_parse_errors(line: str, message: str) -> None:
    e = err(line)
    assert e.message == message
    assert e.status == STATUS_USAGE


@pytest.mark.parametrize(
    "name", ["a b", "a\tb", "", "éééééééé"]
)  # the last is 16 bytes of UTF-8: over IFNAMSIZ-1
def test_name_rejects(name: str) -> None:
    e = err(["add", "name", name])
    assert e.message == f'Error: argument "{name}" is wrong: "name" not a valid ifname\n'


def test_first_bad_token_wins() -> None:
    assert err("add encap foo tunnel_id abc").message == 'Unknown tunnel encapsulation "foo"\n'
    assert err("add tunnel_id abc encap foo").message.startswith('Error: argument "abc"')


def test_parse_errors_come_before_validation() -> None:
    # A bad value anywhere beats a missing keyword.
    assert err("add tunnel_id abc").message == 'Error: argument "abc" is wrong: invalid ID\n\n'


# ------------------------------------------------------------------------------------------
# validation order


@pytest.mark.parametrize(
    ("line", "missing"),
    [
        ("add tunnel_id 1", "tunnel or session"),
        ("add seq both", "tunnel or session"),
        ("add tunnel", "tunnel_id"),
        ("add session", "tunnel_id"),
        ("add tunnel session", "tunnel_id"),
        ("add session tunnel_id 1", "peer_session_id"),
        ("add session tunnel_id 1 session_id 1", "peer_session_id"),
        ("add session tunnel_id 1 peer_session_id 1", "session_id"),
        ("add tunnel session tunnel_id 1 session_id 1", "peer_session_id"),
        ("add tunnel session tunnel_id 1 session_id 1 peer_session_id 1", "peer_tunnel_id"),
        ("add tunnel tunnel_id 1", "peer_tunnel_id"),
        ("add tunnel tunnel_id 1 peer_tunnel_id 1", "local"),
        ("add tunnel tunnel_id 1 peer_tunnel_id 1 remote 1.1.1.1", "local"),
        ("add tunnel tunnel_id 1 peer_tunnel_id 1 local 1.1.1.1", "remote"),
        ("add tunnel tunnel_id 1 peer_tunnel_id 1 local 1.1.1.1 remote 2.2.2.2", "udp_sport"),
        (
            "add tunnel tunnel_id 1 peer_tunnel_id 1 local 1.1.1.1 remote 2.2.2.2 udp_dport 1",
            "udp_sport",
        ),
        (
            "add tunnel tunnel_id 1 peer_tunnel_id 1 local 1.1.1.1 remote 2.2.2.2 udp_sport 1",
            "udp_dport",
        ),
        (
            "add tunnel tid 1 ptid 1 local 1.1.1.1 remote 2.2.2.2 udp_sport 0 udp_dport 1",
            "udp_sport",
        ),
        ("add tunnel tunnel_id 0 peer_tunnel_id 1", "tunnel_id"),
        ("add tunnel tunnel_id 1 peer_tunnel_id 0x0", "peer_tunnel_id"),
        ("del tunnel_id 1", "tunnel or session"),
        ("del tunnel", "tunnel_id"),
        ("del tunnel session_id 3", "tunnel_id"),
        ("del session tunnel_id 1", "session_id"),
        ("del tunnel session tunnel_id 1", "session_id"),
        ("show tunnel_id 1", "tunnel or session"),
        ("set tunnel_id 1", "tunnel or session"),
        ("set tunnel", "tunnel_id"),
        ("set session session_id 1", "tunnel_id"),
        ("set session tunnel_id 1", "session_id"),
    ],
)
def test_missing_arguments(line: str, missing: str) -> None:
    e = err(line)
    assert e.message == f'Error: argument "{missing}" is required\n'
    assert e.status == STATUS_USAGE


def test_v2_checks_follow_ip_checks() -> None:
    assert err("add tunnel tid 70000 version 2").message == (
        'Error: argument "peer_tunnel_id" is required\n'
    )


# ------------------------------------------------------------------------------------------
# del / show / set


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("del tunnel tunnel_id 5", {"cmd": "tunnel_delete", "attrs": {"conn_id": 5}}),
        ("del tunnel tid 0x5", {"cmd": "tunnel_delete", "attrs": {"conn_id": 5}}),
        (
            "del session tunnel_id 5 session_id 6",
            {"cmd": "session_delete", "attrs": {"conn_id": 5, "session_id": 6}},
        ),
        # ip's rule: a session id makes it a session delete whatever the keyword was.
        (
            "del tunnel tunnel_id 5 session_id 6",
            {"cmd": "session_delete", "attrs": {"conn_id": 5, "session_id": 6}},
        ),
        (
            "del session sid 6",
            {"cmd": "session_delete", "attrs": {"conn_id": 0, "session_id": 6}},
        ),
        (
            "delete tunnel tid 5 cookie 01234567 offset 3",
            {"cmd": "tunnel_delete", "attrs": {"conn_id": 5}},
        ),
    ],
)
def test_del(line: str, expected: dict[str, Any]) -> None:
    assert only(p(line)) == expected


@pytest.mark.parametrize(
    ("line", "show", "cmd", "filters"),
    [
        ("show tunnel", "tunnels", "tunnel_get", Filters()),
        ("show tunnel tunnel_id 7", "tunnels", "tunnel_get", Filters(7, None)),
        ("show tunnel tunnel_id 7 session_id 2", "tunnels", "tunnel_get", Filters(7, None)),
        ("show tunnel tid 0", "tunnels", "tunnel_get", Filters()),
        ("show session", "sessions", "session_get", Filters()),
        ("show session tunnel_id 7", "sessions", "session_get", Filters(7, None)),
        ("show session session_id 2", "sessions", "session_get", Filters(None, 2)),
        ("show session tid 7 sid 2", "sessions", "session_get", Filters(7, 2)),
        ("show tunnel session", "sessions", "session_get", Filters()),
        ("list tunnel", "tunnels", "tunnel_get", Filters()),
        ("lst session", "sessions", "session_get", Filters()),
    ],
)
def test_show(line: str, show: str, cmd: str, filters: Filters) -> None:
    inv = p(line)
    assert inv.show == show
    assert inv.requests == [{"cmd": cmd, "dump": True, "attrs": {}}]
    assert inv.filters == filters


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("set tunnel tunnel_id 3", {"cmd": "tunnel_modify", "attrs": {"conn_id": 3}}),
        (
            "set session tid 3 sid 4",
            {"cmd": "session_modify", "attrs": {"conn_id": 3, "session_id": 4}},
        ),
        (
            "set session tid 3 sid 4 seq send",
            {
                "cmd": "session_modify",
                "attrs": {"conn_id": 3, "session_id": 4, "recv_seq": False, "send_seq": True},
            },
        ),
        (
            "set session tid 3 sid 4 seq none",
            {
                "cmd": "session_modify",
                "attrs": {"conn_id": 3, "session_id": 4, "recv_seq": False, "send_seq": False},
            },
        ),
        (
            "set session tid 3 sid 4 seq both reorder_timeout 0 lns_mode off",
            {
                "cmd": "session_modify",
                "attrs": {
                    "conn_id": 3,
                    "session_id": 4,
                    "recv_seq": True,
                    "send_seq": True,
                    "recv_timeout": 0,
                    "lns_mode": False,
                },
            },
        ),
        (
            "set session tid 3 sid 4 reorder_timeout 100 lns_mode on",
            {
                "cmd": "session_modify",
                "attrs": {"conn_id": 3, "session_id": 4, "recv_timeout": 100, "lns_mode": True},
            },
        ),
    ],
)
def test_set(line: str, expected: dict[str, Any]) -> None:
    assert only(p(line)) == expected


# ------------------------------------------------------------------------------------------
# warnings


def test_offset_options_warn_and_are_skipped() -> None:
    inv = p(f"add {SESSION} offset 4 peer_offset 8")
    assert inv.warnings == ['Ignoring option "offset"\n', 'Ignoring option "peer_offset"\n']
    assert "offset" not in only(inv)["attrs"]


def test_offset_swallows_the_next_word_whatever_it_is() -> None:
    inv = p("del offset tunnel session tunnel_id 1 session_id 2")
    assert inv.warnings == ['Ignoring option "offset"\n']
    assert only(inv)["cmd"] == "session_delete"
    assert err("del offset tunnel tunnel_id 1").message == (
        'Ignoring option "offset"\nError: argument "tunnel or session" is required\n'
    )


def test_warnings_precede_errors_in_the_message() -> None:
    e = err("add peer_offset 1 offset 2 tunnel_id x")
    assert e.message == (
        'Ignoring option "peer_offset"\n'
        'Ignoring option "offset"\n'
        'Error: argument "x" is wrong: invalid ID\n\n'
    )


def test_warnings_kept_with_usage() -> None:
    inv = p("show offset 1 help")
    assert inv.usage and inv.warnings == ['Ignoring option "offset"\n']


# ------------------------------------------------------------------------------------------
# show: text


def tunnel(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "proto_version": 3,
        "conn_id": 10,
        "peer_conn_id": 11,
        "debug": 0,
        "encap_type": 0,
        "stats": {},
        "udp_csum": False,
        "udp_sport": 3000,
        "udp_dport": 4000,
        "ip_saddr": "192.168.15.181",
        "ip_daddr": "224.203.255.255",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def tunnel6(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ip_saddr": None,
        "ip_daddr": None,
        "udp_csum": None,
        "ip6_saddr": "2001:db8::1",
        "ip6_daddr": "2001:db8::2",
    }
    base.update(kw)
    return tunnel(**base)


def session(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "conn_id": 10,
        "session_id": 17,
        "peer_conn_id": 11,
        "peer_session_id": 18,
        "debug": 0,
        "pw_type": 5,
        "recv_seq": False,
        "send_seq": False,
        "lns_mode": False,
        "l2spec_type": 1,
        "stats": {},
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


TEXT = OutputOptions()
ONELINE = OutputOptions(oneline=True)


def test_tunnel_text_systemd_example() -> None:
    assert format_tunnels([tunnel()], TEXT) == (
        "Tunnel 10, encap UDP\n"
        "  From 192.168.15.181 to 224.203.255.255\n"
        "  Peer tunnel 11\n"
        "  UDP source / dest ports: 3000/4000\n"
        "  UDP checksum: disabled\n"
    )


@pytest.mark.parametrize(
    ("kw", "line"),
    [
        ({"udp_csum": True}, "  UDP checksum: enabled\n"),
        ({"udp_csum": False}, "  UDP checksum: disabled\n"),
        ({"udp_csum": None}, "  UDP checksum: disabled\n"),
    ],
)
def test_tunnel_text_ipv4_checksum(kw: dict[str, Any], line: str) -> None:
    assert format_tunnels([tunnel(**kw)], TEXT).endswith(line)


@pytest.mark.parametrize(
    ("kw", "state"),
    [
        ({}, "enabled"),
        ({"udp_zero_csum6_tx": True}, "rx"),
        ({"udp_zero_csum6_rx": True}, "tx"),
        ({"udp_zero_csum6_tx": True, "udp_zero_csum6_rx": True}, "disabled"),
        ({"udp_zero_csum6_tx": False}, "enabled"),
    ],
)
def test_tunnel_text_ipv6_checksum(kw: dict[str, Any], state: str) -> None:
    assert format_tunnels([tunnel6(**kw)], TEXT) == (
        "Tunnel 10, encap UDP\n"
        "  From 2001:db8::1 to 2001:db8::2\n"
        "  Peer tunnel 11\n"
        "  UDP source / dest ports: 3000/4000\n"
        f"  UDP checksum: {state}\n"
    )


def test_tunnel_text_ip_encap() -> None:
    t = tunnel(encap_type=1, udp_csum=None, udp_sport=None, udp_dport=None)
    assert format_tunnels([t], TEXT) == (
        "Tunnel 10, encap IP\n  From 192.168.15.181 to 224.203.255.255\n  Peer tunnel 11\n"
    )


def test_tunnel_text_unknown_encap() -> None:
    assert format_tunnels([tunnel(encap_type=9)], TEXT).startswith("Tunnel 10, encap ??\n")


def test_tunnel_text_without_addresses_prints_ipv6_any() -> None:
    t = tunnel(ip_saddr=None, ip_daddr=None, encap_type=1)
    assert "  From :: to ::\n" in format_tunnels([t], TEXT)


def test_tunnel_text_normalises_addresses() -> None:
    t = tunnel6(ip6_saddr="2001:DB8:0::1", ip6_daddr="::FFFF:10.0.0.1")
    assert "  From 2001:db8::1 to ::ffff:10.0.0.1\n" in format_tunnels([t], TEXT)


def test_tunnel_text_several() -> None:
    a = tunnel(conn_id=1, peer_conn_id=2)
    b = tunnel(conn_id=3, peer_conn_id=4, encap_type=1)
    text = format_tunnels([a, b], TEXT)
    assert text.count("Tunnel ") == 2
    assert text.index("Tunnel 1,") < text.index("Tunnel 3,")


def test_tunnel_oneline() -> None:
    assert format_tunnels([tunnel()], ONELINE) == (
        "Tunnel 10, encap UDP\\"
        "  From 192.168.15.181 to 224.203.255.255\\"
        "  Peer tunnel 11\\"
        "  UDP source / dest ports: 3000/4000\\"
        "  UDP checksum: disabled\n"
    )


def test_tunnel_oneline_ip_encap_has_no_newline_like_ip() -> None:
    t = tunnel(encap_type=1)
    assert (
        format_tunnels([t, t], ONELINE)
        == ("Tunnel 10, encap IP\\  From 192.168.15.181 to 224.203.255.255\\  Peer tunnel 11\\") * 2
    )


SESSION_CASES = [
    # (extra attributes, expected text after the two header lines)
    ({}, "  offset 0, peer offset 0\n\n"),
    ({"ifname": "test2"}, "  interface name: test2\n  offset 0, peer offset 0\n\n"),
    (
        {"cookie": "01234567", "peer_cookie": "89abcdef"},
        "  offset 0, peer offset 0\n  cookie 01234567  peer cookie 89abcdef\n",
    ),
    (
        {"recv_seq": True, "send_seq": True},
        "  offset 0, peer offset 0\n\n  sequence numbering: send recv\n",
    ),
    (
        {"cookie": "01234567", "send_seq": True},
        "  offset 0, peer offset 0\n  cookie 01234567\n  sequence numbering: send\n",
    ),
    ({"recv_seq": True}, "  offset 0, peer offset 0\n\n  sequence numbering: recv\n"),
    (
        {"cookie": "0123456789ABCDEF"},
        "  offset 0, peer offset 0\n  cookie 0123456789abcdef\n",
    ),
    ({"peer_cookie": "fedcba98"}, "  offset 0, peer offset 0\n  peer cookie fedcba98\n"),
    ({"recv_timeout": 250}, "  offset 0, peer offset 0\n  reorder timeout: 250\n"),
    ({"recv_timeout": 0}, "  offset 0, peer offset 0\n\n"),
    ({"cookie": ""}, "  offset 0, peer offset 0\n\n"),
    (
        {
            "ifname": "l2tpeth0",
            "cookie": "01234567",
            "peer_cookie": "0123456789abcdef",
            "recv_timeout": 5,
            "recv_seq": True,
            "send_seq": True,
        },
        "  interface name: l2tpeth0\n"
        "  offset 0, peer offset 0\n"
        "  cookie 01234567  peer cookie 0123456789abcdef  reorder timeout: 5\n"
        "  sequence numbering: send recv\n",
    ),
]


@pytest.mark.parametrize(("extra", "tail"), SESSION_CASES)
def test_session_text(extra: dict[str, Any], tail: str) -> None:
    head = "Session 17 in tunnel 10\n  Peer session 18, tunnel 11\n"
    assert format_sessions([session(**extra)], TEXT) == head + tail


def test_session_text_systemd_example() -> None:
    sessions = [
        session(ifname="test2"),
        session(session_id=15, peer_session_id=16, ifname="test1"),
    ]
    assert format_sessions(sessions, TEXT) == (
        "Session 17 in tunnel 10\n"
        "  Peer session 18, tunnel 11\n"
        "  interface name: test2\n"
        "  offset 0, peer offset 0\n"
        "\n"
        "Session 15 in tunnel 10\n"
        "  Peer session 16, tunnel 11\n"
        "  interface name: test1\n"
        "  offset 0, peer offset 0\n"
        "\n"
    )


def test_session_text_does_not_leak_between_entries() -> None:
    # ip would print the first session's ifname and cookie again for the second (a bug).
    text = format_sessions(
        [session(ifname="l2tpeth0", cookie="01234567", recv_timeout=9), session(session_id=2)],
        TEXT,
    )
    second = text[text.index("Session 2 ") :]
    assert second == "Session 2 in tunnel 10\n  Peer session 18, tunnel 11\n" + (
        "  offset 0, peer offset 0\n\n"
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {},
            "Session 17 in tunnel 10\\  Peer session 18, tunnel 11\\  offset 0, peer offset 0\n\n",
        ),
        (
            {"ifname": "e0", "cookie": "01234567", "send_seq": True, "recv_seq": True},
            "Session 17 in tunnel 10\\  Peer session 18, tunnel 11\\  interface name: e0\\"
            "  offset 0, peer offset 0\n  cookie 01234567\\  sequence numbering: send recv\n",
        ),
    ],
)
def test_session_oneline(extra: dict[str, Any], expected: str) -> None:
    assert format_sessions([session(**extra)], ONELINE) == expected


def test_empty_dump_prints_nothing() -> None:
    assert format_tunnels([], TEXT) == ""
    assert format_sessions([], ONELINE) == ""


# ------------------------------------------------------------------------------------------
# show: JSON

JSON = OutputOptions(json=True)
PRETTY = OutputOptions(json=True, pretty=True)


def test_tunnel_json_compact_exact() -> None:
    assert format_tunnels([tunnel()], JSON) == (
        '[{"tunnel_id":10,"encap":"UDP","local":"192.168.15.181","peer":"224.203.255.255",'
        '"peer_tunnel":11,"local_port":3000,"peer_port":4000,"checksum":false}]\n'
    )


def test_tunnel_json_pretty_exact() -> None:
    t = tunnel(encap_type=1)
    assert format_tunnels([t, t], PRETTY) == (
        "[ {\n"
        '        "tunnel_id": 10,\n'
        '        "encap": "IP",\n'
        '        "local": "192.168.15.181",\n'
        '        "peer": "224.203.255.255",\n'
        '        "peer_tunnel": 11\n'
        "    },{\n"
        '        "tunnel_id": 10,\n'
        '        "encap": "IP",\n'
        '        "local": "192.168.15.181",\n'
        '        "peer": "224.203.255.255",\n'
        '        "peer_tunnel": 11\n'
        "    } ]\n"
    )


@pytest.mark.parametrize(
    ("opts", "empty"),
    [(JSON, "[]\n"), (PRETTY, "[ ]\n"), (OutputOptions(json=True, stats=1), "[]\n")],
)
def test_json_empty(opts: OutputOptions, empty: str) -> None:
    assert format_tunnels([], opts) == empty
    assert format_sessions([], opts) == empty


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (
            tunnel(udp_csum=True),
            {
                "tunnel_id": 10,
                "encap": "UDP",
                "local": "192.168.15.181",
                "peer": "224.203.255.255",
                "peer_tunnel": 11,
                "local_port": 3000,
                "peer_port": 4000,
                "checksum": True,
            },
        ),
        (
            tunnel6(udp_zero_csum6_tx=True),
            {
                "tunnel_id": 10,
                "encap": "UDP",
                "local": "2001:db8::1",
                "peer": "2001:db8::2",
                "peer_tunnel": 11,
                "local_port": 3000,
                "peer_port": 4000,
                "checksum_tx": False,
                "checksum_rx": True,
            },
        ),
        (
            tunnel6(encap_type=1, udp_sport=None, udp_dport=None),
            {
                "tunnel_id": 10,
                "encap": "IP",
                "local": "2001:db8::1",
                "peer": "2001:db8::2",
                "peer_tunnel": 11,
            },
        ),
    ],
)
def test_tunnel_json_keys_and_types(t: dict[str, Any], expected: dict[str, Any]) -> None:
    for opts in (JSON, PRETTY):
        (obj,) = json.loads(format_tunnels([t], opts))
        assert obj == expected
        assert list(obj) == list(expected)
        for key, value in obj.items():
            assert type(value) is type(expected[key])


def test_tunnel_json_ignores_oneline() -> None:
    assert format_tunnels([tunnel()], OutputOptions(json=True, oneline=True)) == (
        format_tunnels([tunnel()], JSON)
    )


@pytest.mark.parametrize(
    ("extra", "expected_extra"),
    [
        ({}, {}),
        ({"ifname": "l2tpeth0"}, {"interface": "l2tpeth0"}),
        ({"cookie": "01234567"}, {"cookie": "01234567"}),
        ({"peer_cookie": "0123456789ABCDEF"}, {"peer_cookie": "0123456789abcdef"}),
        ({"recv_timeout": 100}, {"reorder_timeout": 100}),
        ({"send_seq": True}, {"send_seq": None}),
        ({"recv_seq": True}, {"recv_seq": None}),
        (
            {
                "ifname": "e",
                "cookie": "01234567",
                "peer_cookie": "89abcdef",
                "recv_timeout": 1,
                "recv_seq": True,
                "send_seq": True,
            },
            {
                "interface": "e",
                "cookie": "01234567",
                "peer_cookie": "89abcdef",
                "reorder_timeout": 1,
                "send_seq": None,
                "recv_seq": None,
            },
        ),
    ],
)
def test_session_json_keys(extra: dict[str, Any], expected_extra: dict[str, Any]) -> None:
    expected = {
        "session_id": 17,
        "tunnel_id": 10,
        "peer_session_id": 18,
        "peer_tunnel_id": 11,
    } | expected_extra
    (obj,) = json.loads(format_sessions([session(**extra)], JSON))
    assert obj == expected
    assert list(obj) == list(expected)
    assert "offset" not in obj and "peer_offset" not in obj


def test_session_json_compact_exact() -> None:
    s = session(ifname="test2", send_seq=True, recv_seq=True)
    assert format_sessions([s, session(session_id=15)], JSON) == (
        '[{"session_id":17,"tunnel_id":10,"peer_session_id":18,"peer_tunnel_id":11,'
        '"interface":"test2","send_seq":null,"recv_seq":null},'
        '{"session_id":15,"tunnel_id":10,"peer_session_id":18,"peer_tunnel_id":11}]\n'
    )


def test_json_string_escaping() -> None:
    out = format_sessions([session(ifname='a"b\\c')], JSON)
    assert '"interface":"a\\"b\\\\c"' in out
    assert json.loads(out)[0]["interface"] == 'a"b\\c'


# ------------------------------------------------------------------------------------------
# -s statistics (pyl2tp extension)

STATS = {
    "tx_packets": 12,
    "tx_bytes": 3456,
    "tx_errors": 1,
    "rx_packets": 7,
    "rx_bytes": 123456789,
    "rx_seq_discards": 2,
    "rx_oos_packets": 3,
    "rx_errors": 4,
    "rx_cookie_discards": 5,
    "rx_invalid": 6,
}
STATS_BLOCK = (
    "    RX: packets     bytes errors seq_discards oos cookie_discards invalid\n"
    "              7 123456789      4            2   3               5       6\n"
    "    TX: packets bytes errors\n"
    "             12  3456      1\n"
)


def test_tunnel_stats_text() -> None:
    out = format_tunnels([tunnel(stats=STATS)], OutputOptions(stats=1))
    assert out == format_tunnels([tunnel()], TEXT) + STATS_BLOCK


def test_tunnel_stats_text_ip_encap() -> None:
    t = tunnel(encap_type=1, stats=STATS)
    assert format_tunnels([t], OutputOptions(stats=1)) == (format_tunnels([t], TEXT) + STATS_BLOCK)


def test_session_stats_text_replaces_the_empty_line() -> None:
    out = format_sessions([session(stats=STATS)], OutputOptions(stats=2))
    assert out == (
        "Session 17 in tunnel 10\n  Peer session 18, tunnel 11\n  offset 0, peer offset 0\n"
        + STATS_BLOCK
    )


def test_session_stats_text_after_optional_line() -> None:
    out = format_sessions([session(cookie="01234567", stats=STATS)], OutputOptions(stats=1))
    assert out.endswith("  offset 0, peer offset 0\n  cookie 01234567\n" + STATS_BLOCK)


def test_stats_zero_when_missing() -> None:
    out = format_sessions([session(stats=None)], OutputOptions(stats=1))
    assert "    RX: packets bytes errors seq_discards oos cookie_discards invalid\n" in out
    assert "              0     0      0            0   0               0       0\n" in out
    assert "    TX: packets bytes errors\n              0     0      0\n" in out


def test_stats_oneline_stays_on_the_object_line() -> None:
    out = format_tunnels([tunnel(stats=STATS)], OutputOptions(oneline=True, stats=1))
    assert out.count("\n") == 1 and out.endswith("\n")
    assert "  UDP checksum: disabled\\    RX: packets" in out
    out = format_tunnels([tunnel(encap_type=1)], OutputOptions(oneline=True, stats=1))
    assert "\n" not in out and out.endswith("\\")


def test_stats_json() -> None:
    opts = OutputOptions(json=True, stats=1)
    for text in (
        format_tunnels([tunnel(stats=STATS)], opts),
        format_sessions([session(stats=STATS)], opts),
    ):
        (obj,) = json.loads(text)
        assert list(obj)[-1] == "stats"
        assert obj["stats"] == {
            "rx": {
                "packets": 7,
                "bytes": 123456789,
                "errors": 4,
                "seq_discards": 2,
                "oos_packets": 3,
                "cookie_discards": 5,
                "invalid": 6,
            },
            "tx": {"packets": 12, "bytes": 3456, "errors": 1},
        }


def test_stats_json_pretty_nesting() -> None:
    out = format_sessions([session()], OutputOptions(json=True, pretty=True, stats=1))
    assert ('        "stats": {\n            "rx": {\n                "packets": 0,\n') in out
    assert '            "tx": {\n' in out
    assert out.endswith("            }\n        }\n    } ]\n")


def test_no_stats_without_s() -> None:
    assert "stats" not in json.loads(format_tunnels([tunnel(stats=STATS)], JSON))[0]
    assert "RX:" not in format_tunnels([tunnel(stats=STATS)], TEXT)


# ------------------------------------------------------------------------------------------
# client-side filters


TUNNELS = [tunnel(conn_id=1), tunnel(conn_id=2), tunnel(conn_id=3)]
SESSIONS = [
    session(conn_id=1, session_id=1),
    session(conn_id=1, session_id=2),
    session(conn_id=2, session_id=1),
]


@pytest.mark.parametrize(
    ("filters", "ids"),
    [(Filters(), [1, 2, 3]), (Filters(2), [2]), (Filters(9), []), (Filters(0), [1, 2, 3])],
)
def test_filter_tunnels(filters: Filters, ids: list[int]) -> None:
    assert [t["conn_id"] for t in filter_tunnels(TUNNELS, filters)] == ids


@pytest.mark.parametrize(
    ("filters", "keys"),
    [
        (Filters(), [(1, 1), (1, 2), (2, 1)]),
        (Filters(1, None), [(1, 1), (1, 2)]),
        (Filters(None, 1), [(1, 1), (2, 1)]),
        (Filters(1, 2), [(1, 2)]),
        (Filters(2, 2), []),
    ],
)
def test_filter_sessions(filters: Filters, keys: list[tuple[int, int]]) -> None:
    got = [(s["conn_id"], s["session_id"]) for s in filter_sessions(SESSIONS, filters)]
    assert got == keys


def test_render_applies_filters_and_format() -> None:
    inv = p("-j show session tunnel_id 1 session_id 2")
    assert [(o["tunnel_id"], o["session_id"]) for o in json.loads(render(inv, SESSIONS))] == [
        (1, 2)
    ]
    inv = p("show tunnel tid 3")
    assert render(inv, TUNNELS).startswith("Tunnel 3, encap UDP\n")
    assert render(p("del tunnel tid 1"), TUNNELS) == ""


# ------------------------------------------------------------------------------------------
# errors from the daemon


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        ({"errno": "EEXIST", "code": 17, "message": "x"}, "RTNETLINK answers: File exists\n"),
        ({"errno": "ENODEV", "code": 19, "message": "x"}, "RTNETLINK answers: No such device\n"),
        ({"errno": "EINVAL", "code": 22}, "RTNETLINK answers: Invalid argument\n"),
        (
            {"errno": "EPROTONOSUPPORT", "code": 93},
            "RTNETLINK answers: Protocol not supported\n",
        ),
        ({"errno": "ENOENT", "code": 2}, "RTNETLINK answers: No such file or directory\n"),
        ({"errno": "EBUSY", "code": 16}, "RTNETLINK answers: Device or resource busy\n"),
        ({"errno": "EPERM", "code": 1}, "RTNETLINK answers: Operation not permitted\n"),
        ({"errno": "EADDRINUSE"}, "RTNETLINK answers: Address already in use\n"),
        ({"errno": "EWHAT", "message": "odd"}, "RTNETLINK answers: odd\n"),
    ],
)
def test_format_error(reply: dict[str, Any], text: str) -> None:
    assert format_error(reply) == (text, STATUS_KERNEL)


def test_format_error_dump() -> None:
    assert format_error({"errno": "EPERM", "code": 1}, dump=True) == (
        "RTNETLINK answers: Operation not permitted\nDump terminated\n",
        STATUS_DUMP,
    )


# ------------------------------------------------------------------------------------------
# execute


class FakeDaemon:
    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.sent: list[dict[str, Any]] = []

    def __call__(self, request: dict[str, Any]) -> Any:
        self.sent.append(request)
        return self.replies.pop(0)


def run(line: str, replies: list[Any]) -> tuple[int, str, str, FakeDaemon]:
    daemon = FakeDaemon(replies)
    out, err_ = io.StringIO(), io.StringIO()
    status = execute(parse(line.split()), daemon, out, err_)
    return status, out.getvalue(), err_.getvalue(), daemon


def test_execute_add_ok() -> None:
    status, out, err_, daemon = run("add " + SESSION, [{}])
    assert (status, out, err_) == (0, "", "")
    assert daemon.sent[0]["cmd"] == "session_create"


def test_execute_kernel_error() -> None:
    status, out, err_, _ = run("add " + SESSION, [{"errno": "EEXIST", "code": 17}])
    assert (status, out, err_) == (2, "", "RTNETLINK answers: File exists\n")


def test_execute_tunnel_failure_still_tries_session_like_ip() -> None:
    status, _, err_, daemon = run(
        f"add {TUNNEL_V4_UDP} session sid 1 psid 2", [{"errno": "EEXIST", "code": 17}, {}]
    )
    assert [r["cmd"] for r in daemon.sent] == ["tunnel_create", "session_create"]
    assert status == 0
    assert err_ == "RTNETLINK answers: File exists\n"
    status, _, _, _ = run(
        f"add {TUNNEL_V4_UDP} session sid 1 psid 2", [{}, {"errno": "ENODEV", "code": 19}]
    )
    assert status == 2


def test_execute_show_filters_and_prints() -> None:
    status, out, err_, daemon = run("-j show session sid 2", [SESSIONS])
    assert status == 0 and err_ == ""
    assert daemon.sent == [{"cmd": "session_get", "dump": True, "attrs": {}}]
    assert [o["session_id"] for o in json.loads(out)] == [2]


def test_execute_show_dump_error() -> None:
    status, out, err_, _ = run("show tunnel", [{"errno": "EPERM", "code": 1}])
    assert (status, out) == (1, "")
    assert err_ == "RTNETLINK answers: Operation not permitted\nDump terminated\n"


def test_execute_usage_and_warnings() -> None:
    status, out, err_, daemon = run("show offset 1 help", [])
    assert status == STATUS_USAGE and out == "" and daemon.sent == []
    assert err_ == 'Ignoring option "offset"\n' + usage()


def test_execute_warnings_before_requests() -> None:
    status, _, err_, _ = run(f"add {SESSION} offset 3", [{}])
    assert status == 0 and err_ == 'Ignoring option "offset"\n'


def test_format_error_accepts_l2tp_error() -> None:
    assert format_error(L2tpError(errno.ENODEV, "no tunnel 5")) == (
        "RTNETLINK answers: No such device\n",
        STATUS_KERNEL,
    )


def test_execute_with_a_raising_transport() -> None:
    def send(request: dict[str, Any]) -> Any:
        if request["cmd"] == "tunnel_create":
            raise L2tpError(errno.EEXIST, "tunnel 3000 already exists")
        if request.get("dump"):
            raise L2tpError(errno.EPERM)
        return {}

    out, err_ = io.StringIO(), io.StringIO()
    assert execute(p(f"add {TUNNEL_V4_UDP}"), send, out, err_) == STATUS_KERNEL
    assert err_.getvalue() == "RTNETLINK answers: File exists\n"
    out, err_ = io.StringIO(), io.StringIO()
    assert execute(p("show tunnel"), send, out, err_) == STATUS_DUMP
    assert err_.getvalue() == "RTNETLINK answers: Operation not permitted\nDump terminated\n"


def test_execute_show_accepts_a_single_object_reply() -> None:
    status, out, _, _ = run("show tunnel", [tunnel()])
    assert status == 0 and out.startswith("Tunnel 10, encap UDP\n")


def test_round_trip_through_the_management_commands() -> None:
    """The requests built here are accepted by the daemon's handlers and their replies print."""
    commands = pytest.importorskip("pyl2tp.mgmt.commands")
    registry = pytest.importorskip("pyl2tp.dataplane.registry").Registry()

    def send(request: dict[str, Any]) -> Any:
        return commands.execute(registry, request)

    def sh(line: str) -> tuple[int, str, str]:
        out, err_ = io.StringIO(), io.StringIO()
        return execute(p(line), send, out, err_), out.getvalue(), err_.getvalue()

    assert sh(f"add {TUNNEL_V4_UDP.replace('1.2.3.4', '127.0.0.1')} udp_csum on")[0] == 0
    assert sh(f"add {SESSION} cookie 0123ABCD seq both name l2tpt0")[0] == 0
    assert sh("set session tid 3000 sid 1000 seq send reorder_timeout 40")[0] == 0
    assert sh(f"add {TUNNEL_V4_UDP}") == (2, "", "RTNETLINK answers: File exists\n")
    status, out, _ = sh("show tunnel tunnel_id 3000")
    assert status == 0
    assert out == (
        "Tunnel 3000, encap UDP\n"
        "  From 127.0.0.1 to 5.6.7.8\n"
        "  Peer tunnel 4000\n"
        "  UDP source / dest ports: 5000/6000\n"
        "  UDP checksum: enabled\n"
    )
    status, out, _ = sh("show session")
    assert out == (
        "Session 1000 in tunnel 3000\n"
        "  Peer session 2000, tunnel 4000\n"
        "  interface name: l2tpt0\n"
        "  offset 0, peer offset 0\n"
        "  cookie 0123abcd  reorder timeout: 40\n"
        "  sequence numbering: send\n"
    )
    assert sh("del session tid 3000 sid 1000")[0] == 0
    assert sh("-j show session") == (0, "[]\n", "")
    assert sh("del tunnel tid 3000")[0] == 0
    assert sh("del tunnel tid 3000") == (2, "", "RTNETLINK answers: No such device\n")


def test_formatters_take_optional_filters() -> None:
    assert format_tunnels(TUNNELS, TEXT, Filters(2)) == format_tunnels([TUNNELS[1]], TEXT)
    assert format_sessions(SESSIONS, JSON, Filters(None, 2)) == format_sessions([SESSIONS[1]], JSON)


# ------------------------------------------------------------------------------------------
# golden records from the reference VM (scripts/kernel-guest/ip_l2tp_cases.py), when present

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kernel" / "ip_l2tp_cases.json"


def _recorded_ip_commands() -> list[dict[str, Any]]:
    if not FIXTURE.exists():
        return []
    doc = json.loads(FIXTURE.read_text())
    return [
        r
        for r in doc.get("records", [])
        # Without the genl family ip fails before dispatching; pyl2tp has no such state.
        if r.get("kind") == "ip_l2tp" and r.get("scenario") != "no_modules"
    ]


RECORDED = _recorded_ip_commands()


@pytest.mark.skipif(not RECORDED, reason=f"{FIXTURE.name} not recorded yet")
@pytest.mark.parametrize(
    "record",
    RECORDED or [{}],
    ids=[f"{r['scenario']}-{r['step']}" for r in RECORDED] or ["none"],
)
def test_parse_matches_recorded_ip(record: dict[str, Any]) -> None:
    """Whatever ip rejected before talking to the kernel, pyl2tp rejects with the same bytes."""
    argv, stderr, status = record["argv"][1:], record["stderr"], record["exit_status"]
    try:
        inv = parse(argv)
    except CliError as exc:
        assert (exc.message, exc.status) == (stderr, status)
        return
    warnings = "".join(inv.warnings)
    if inv.usage:
        assert (stderr, status) == (warnings + ip_usage(), STATUS_USAGE)
        return
    assert status != STATUS_USAGE, stderr
    assert stderr.startswith(warnings)
