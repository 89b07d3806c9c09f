"""The daemon's TOML configuration: defaults, every section, inheritance, and that each refusal
names the right line. Error cases mark the line they expect with ``# <``, so the expected line
number is read from the text itself and survives edits to the snippet."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
from pathlib import Path
from textwrap import dedent

import pytest

from pyl2tp.daemon.config import (
    Config,
    ConfigError,
    DaemonSection,
    DialSession,
    DialTunnel,
    Direction,
    Listen,
    PeerPolicy,
    StaticSession,
    StaticTunnel,
    TunnelParams,
    load,
    parse,
)
from pyl2tp.wire.constants import DataSequencing, DigestType, EncapType, L2SpecType, PwType

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

V3_TUNNEL = """
[[tunnel]]
name = "t"
peer = "10.0.0.2"
version = 3
"""

V2_TUNNEL = """
[[tunnel]]
name = "t"
peer = "10.0.0.2"
version = 2
"""

STATIC = """
[[static_tunnel]]
tunnel_id = 1000
peer_tunnel_id = 2000
local = "10.0.0.1"
remote = "10.0.0.2"
udp_sport = 5000
udp_dport = 6000
"""


def cfg(text: str) -> Config:
    return parse(dedent(text), "pyl2tp.toml")


def marked_line(text: str) -> int:
    lines = [n for n, line in enumerate(text.split("\n"), 1) if line.rstrip().endswith("# <")]
    assert len(lines) == 1, "mark exactly one line with '# <'"
    return lines[0]


def fails(text: str, message: str) -> ConfigError:
    """Parse ``text`` expecting ``message`` reported at the line marked ``# <``."""
    text = dedent(text)
    with pytest.raises(ConfigError) as info:
        parse(text, "pyl2tp.toml")
    err = info.value
    line = marked_line(text)
    assert str(err) == f"pyl2tp.toml:{line}: {message}"
    assert (err.source, err.line, err.message) == ("pyl2tp.toml", line, message)
    return err


def fails_anywhere(text: str, fragment: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(dedent(text), "pyl2tp.toml")
    assert fragment in str(info.value)
    return info.value


# --------------------------------------------------------------------------------------------
# Defaults and the API surface


class TestDefaults:
    def test_empty_file_is_valid(self) -> None:
        config = parse("")
        assert config == Config()
        assert (config.listen, config.peers, config.tunnels, config.static_tunnels) == (
            (), (), (), ())
        assert config.defaults == TunnelParams()

    def test_comments_and_blank_lines_only(self) -> None:
        assert parse("# nothing here\n\n   # still nothing\n") == Config()

    def test_daemon_defaults(self) -> None:
        daemon = parse("").daemon
        assert daemon == DaemonSection(host_name=socket.gethostname(), router_id=None,
                                       socket=None, log_level="info", max_tunnels=4096)

    def test_tunnel_param_defaults_match_the_documented_schema(self) -> None:
        assert TunnelParams() == TunnelParams(
            hello_interval=60.0, receive_window=8, retransmit_initial=1.0, retransmit_cap=8.0,
            max_retries=5, hide_avps=False, challenge=True, digest=DigestType.HMAC_MD5,
            pw_types=(PwType.ETH, PwType.PPP), max_sessions=1024, cookie_len=8,
            l2spec_type=L2SpecType.DEFAULT, data_sequencing=DataSequencing.NONE,
            sequencing=False, reorder_timeout=0.0, setup_timeout=30.0)

    def test_every_tunnel_param_is_configurable(self) -> None:
        from pyl2tp.daemon.config import _PARAMS

        assert set(_PARAMS) == {f.name for f in dataclasses.fields(TunnelParams)}

    def test_session_param_names_match_dial_session_fields(self) -> None:
        from pyl2tp.daemon.config import _SESSION_PARAMS

        assert set(_SESSION_PARAMS) <= {f.name for f in dataclasses.fields(DialSession)}
        for name in _SESSION_PARAMS:
            assert getattr(DialSession(), name) == getattr(TunnelParams(), name)

    def test_objects_are_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            parse("").defaults.hello_interval = 5  # type: ignore[misc]

    def test_config_error_without_line(self) -> None:
        err = ConfigError("boom", source="x.toml")
        assert str(err) == "x.toml: boom"
        assert err.line is None
        assert str(ConfigError("boom", source="x.toml", line=3)) == "x.toml:3: boom"
        assert str(ConfigError("boom")) == "<string>: boom"

    def test_default_source_name(self) -> None:
        with pytest.raises(ConfigError, match=r"^<string>:1: "):
            parse("bogus = 1")


# --------------------------------------------------------------------------------------------
# [daemon]


class TestDaemon:
    def test_all_keys(self) -> None:
        daemon = cfg("""
            [daemon]
            host_name = "lns1"
            router_id = "192.0.2.1"
            socket = "/run/pyl2tp/x.sock"
            log_level = "debug"
            max_tunnels = 10
        """).daemon
        assert daemon == DaemonSection(host_name="lns1", router_id=0xC0000201,
                                       socket="/run/pyl2tp/x.sock", log_level="debug",
                                       max_tunnels=10)

    def test_router_id_as_integer(self) -> None:
        assert cfg("[daemon]\nrouter_id = 4294967295\n").daemon.router_id == 0xFFFFFFFF
        assert cfg("[daemon]\nrouter_id = 1\n").daemon.router_id == 1

    @pytest.mark.parametrize("value", ["0", "4294967296", '"0.0.0.0"'])
    def test_router_id_out_of_range(self, value: str) -> None:
        fails(f"""
            [daemon]
            router_id = {value}  # <
        """, "[daemon]: router_id must not be 0 and must fit in 32 bits (RFC 3931 §5.4.3)")

    @pytest.mark.parametrize("value", ['"lns1"', '"::1"', "true", "1.5"])
    def test_router_id_wrong_form(self, value: str) -> None:
        fails(f"""
            [daemon]
            router_id = {value}  # <
        """, "[daemon]: router_id must be a dotted IPv4 address or an integer")

    def test_log_level(self) -> None:
        fails("""
            [daemon]
            log_level = "verbose"  # <
        """, "[daemon]: log_level must be one of 'debug', 'info', 'warning', 'error'")

    def test_max_tunnels(self) -> None:
        fails("""
            [daemon]
            max_tunnels = 0  # <
        """, "[daemon]: max_tunnels must be an integer >= 1")

    def test_host_name_empty(self) -> None:
        fails("""
            [daemon]
            host_name = ""  # <
        """, "[daemon]: host_name must be a non-empty string")

    def test_host_name_too_long_for_the_avp(self) -> None:
        fails(f"""
            [daemon]
            host_name = "{"h" * 1018}"  # <
        """, "[daemon]: host_name must be at most 1017 bytes (the Host Name AVP's limit)")

    def test_socket_path_too_long(self) -> None:
        fails(f"""
            [daemon]
            socket = "/{"s" * 107}"  # <
        """, "[daemon]: socket must be a path of at most 107 bytes")

    def test_unknown_key_with_suggestion(self) -> None:
        fails("""
            [daemon]
            log_level = "info"
            hostname = "x"  # <
        """, "[daemon]: unknown key 'hostname' (did you mean 'host_name'?)")

    def test_unknown_key_without_suggestion(self) -> None:
        fails("""
            [daemon]
            zzz = 1  # <
        """, "[daemon]: unknown key 'zzz'")

    def test_not_a_table(self) -> None:
        fails("""
            daemon = 5  # <
        """, "daemon must be a table: write [daemon]")


# --------------------------------------------------------------------------------------------
# [[listen]]


class TestListen:
    def test_defaults(self) -> None:
        assert cfg("[[listen]]\n").listen == (Listen(EncapType.UDP, "0.0.0.0", 1701),)

    def test_several(self) -> None:
        listen = cfg("""
            [[listen]]
            address = "2001:db8:0::1"
            port = 1702
            [[listen]]
            encap = "ip"
            address = "10.0.0.1"
        """).listen
        assert listen == (Listen(EncapType.UDP, "2001:db8::1", 1702),
                          Listen(EncapType.IP, "10.0.0.1", 0))

    def test_port_with_ip_encap(self) -> None:
        fails("""
            [[listen]]
            encap = "ip"
            port = 1701  # <
        """, "listen #1: port only applies to encap 'udp'")

    def test_bad_address(self) -> None:
        fails("""
            [[listen]]
            [[listen]]
            address = "lns.example"  # <
        """, "listen #2: address must be an IPv4 or IPv6 address")

    @pytest.mark.parametrize("port", ["0", "65536", '"1701"'])
    def test_bad_port(self, port: str) -> None:
        err = fails_anywhere(f"[[listen]]\nport = {port}\n", "port must be an integer")
        assert err.line == 2

    def test_bad_encap(self) -> None:
        fails("""
            [[listen]]
            encap = "tcp"  # <
        """, "listen #1: encap must be one of 'udp', 'ip'")

    def test_duplicate(self) -> None:
        fails("""
            [[listen]]
            address = "10.0.0.1"
            [[listen]]  # <
            address = "10.0.0.1"
        """, "listen #2: duplicate listener 10.0.0.1 port 1701")

    def test_single_table_instead_of_array(self) -> None:
        fails("""
            [listen]  # <
            port = 1701
        """, "listen must be an array of tables: write [[listen]]")

    def test_inline_array_reports_the_key_line(self) -> None:
        fails("""
            listen = [  # <
              { address = "10.0.0.1", prot = 1 },
            ]
        """, "listen #1: unknown key 'prot' (did you mean 'port'?)")


# --------------------------------------------------------------------------------------------
# [defaults]


class TestDefaultsSection:
    def test_every_key(self) -> None:
        params = cfg("""
            [defaults]
            hello_interval = 0
            receive_window = 32767
            retransmit_initial = 0.5
            retransmit_cap = 16
            max_retries = 100
            hide_avps = true
            challenge = false
            digest = "sha1"
            pw_types = ["eth_vlan", "ppp"]
            max_sessions = 65535
            cookie_len = 4
            l2spec_type = "none"
            data_sequencing = "non_ip"
            sequencing = true
            reorder_timeout = 0.25
            setup_timeout = 5
        """).defaults
        assert params == TunnelParams(
            hello_interval=0.0, receive_window=32767, retransmit_initial=0.5,
            retransmit_cap=16.0, max_retries=100, hide_avps=True, challenge=False,
            digest=DigestType.HMAC_SHA1, pw_types=(PwType.ETH_VLAN, PwType.PPP),
            max_sessions=65535, cookie_len=4, l2spec_type=L2SpecType.NONE,
            data_sequencing=DataSequencing.NON_IP, sequencing=True, reorder_timeout=0.25,
            setup_timeout=5.0)

    def test_integers_become_floats_where_seconds_are_expected(self) -> None:
        params = cfg("[defaults]\nhello_interval = 30\nsetup_timeout = 10\n").defaults
        assert isinstance(params.hello_interval, float)
        assert isinstance(params.setup_timeout, float)

    def test_data_sequencing_all(self) -> None:
        assert cfg('[defaults]\ndata_sequencing = "all"\n').defaults.data_sequencing == (
            DataSequencing.ALL)

    @pytest.mark.parametrize(("key", "value", "message"), [
        ("hello_interval", "-1", "hello_interval must be a number >= 0"),
        ("hello_interval", "nan", "hello_interval must be a number >= 0"),
        ("hello_interval", "inf", "hello_interval must be a number >= 0"),
        ("hello_interval", '"60"', "hello_interval must be a number >= 0, not a string"),
        ("hello_interval", "true", "hello_interval must be a number >= 0, not a boolean"),
        ("receive_window", "0", "receive_window must be an integer from 1 to 32767"),
        ("receive_window", "32768", "receive_window must be an integer from 1 to 32767"),
        ("receive_window", "8.0", "receive_window must be an integer from 1 to 32767, "
                                  "not a float"),
        ("retransmit_initial", "0", "retransmit_initial must be a number > 0"),
        ("retransmit_cap", "7.5", "retransmit_cap must be a number >= 8 (RFC 2661 §5.8)"),
        ("max_retries", "0", "max_retries must be an integer from 1 to 100"),
        ("max_retries", "101", "max_retries must be an integer from 1 to 100"),
        ("max_retries", "true", "max_retries must be an integer from 1 to 100, not a boolean"),
        ("hide_avps", "1", "hide_avps must be true or false, not an integer"),
        ("challenge", '"yes"', "challenge must be true or false, not a string"),
        ("sequencing", "0", "sequencing must be true or false, not an integer"),
        ("digest", '"sha256"', "digest must be one of 'md5', 'sha1'"),
        ("digest", "1", "digest must be one of 'md5', 'sha1'"),
        ("pw_types", "[]", "pw_types must be a non-empty array of 'eth', 'eth_vlan', 'ppp'"),
        ("pw_types", '"eth"', "pw_types must be a non-empty array of 'eth', 'eth_vlan', 'ppp'"),
        ("pw_types", '["eth", "atm"]',
         "pw_types must be a non-empty array of 'eth', 'eth_vlan', 'ppp'"),
        ("pw_types", '["eth", "eth"]', "pw_types must not list a value twice"),
        ("max_sessions", "0", "max_sessions must be an integer from 1 to 65535"),
        ("max_sessions", "65536", "max_sessions must be an integer from 1 to 65535"),
        ("cookie_len", "2", "cookie_len must be 0, 4 or 8"),
        ("cookie_len", "false", "cookie_len must be 0, 4 or 8, not a boolean"),
        ("l2spec_type", '"atm"', "l2spec_type must be one of 'none', 'default'"),
        ("data_sequencing", '"some"', "data_sequencing must be one of 'none', 'non_ip', 'all'"),
        ("reorder_timeout", "-0.1", "reorder_timeout must be a number >= 0"),
        ("setup_timeout", "0", "setup_timeout must be a number > 0"),
    ])
    def test_bad_values(self, key: str, value: str, message: str) -> None:
        fails(f"""
            [defaults]
            {key} = {value}  # <
        """, f"[defaults]: {message}")

    def test_cap_below_initial(self) -> None:
        fails("""
            [defaults]
            retransmit_initial = 10  # <
        """, "[defaults]: retransmit_cap (8) must be at least retransmit_initial (10)")

    def test_cap_below_initial_reports_the_cap_when_both_are_set(self) -> None:
        fails("""
            [defaults]
            retransmit_cap = 9  # <
            retransmit_initial = 10
        """, "[defaults]: retransmit_cap (9) must be at least retransmit_initial (10)")

    def test_unknown_key_with_suggestion(self) -> None:
        fails("""
            [defaults]
            helo_interval = 10  # <
        """, "[defaults]: unknown key 'helo_interval' (did you mean 'hello_interval'?)")

    def test_tunnel_parameter_at_top_level(self) -> None:
        fails("""
            hello_interval = 10  # <
        """, "unknown key 'hello_interval' (tunnel parameters belong in [defaults])")

    def test_unknown_section_with_suggestion(self) -> None:
        fails("""
            [daemon]
            [[tunnels]]  # <
            name = "x"
        """, "unknown key 'tunnels' (did you mean 'tunnel'?)")

    def test_first_problem_in_file_order_is_reported(self) -> None:
        fails("""
            [defaults]
            setup_timeout = 30
            max_retries = 0  # <
            hello_interval = -1
        """, "[defaults]: max_retries must be an integer from 1 to 100")


# --------------------------------------------------------------------------------------------
# [[peer]]


class TestPeer:
    def test_minimal_peer_inherits_defaults(self) -> None:
        config = cfg("""
            [defaults]
            hello_interval = 10
            [[peer]]
            name = "any"
        """)
        assert config.peers == (PeerPolicy(name="any", params=config.defaults),)
        peer = config.peers[0]
        assert peer.address is None and peer.host_name is None and peer.secret is None
        assert peer.versions == (2, 3) and peer.accept is True
        assert peer.params.hello_interval == 10.0

    def test_all_keys_and_overrides(self) -> None:
        config = cfg("""
            [defaults]
            hello_interval = 10
            max_sessions = 10
            [[peer]]
            name = "branch-offices"
            address = "10.0.0.1/24"
            host_name = "lac1"
            secret = "s3crét"
            versions = [3, 2]
            accept = false
            hide_avps = true
            max_sessions = 20
            pw_types = ["ppp"]
        """)
        peer = config.peers[0]
        assert peer.address == ipaddress.ip_network("10.0.0.0/24")
        assert peer.host_name == "lac1"
        assert peer.secret == "s3crét".encode()
        assert peer.versions == (2, 3)
        assert peer.accept is False
        assert peer.params == dataclasses.replace(
            config.defaults, hide_avps=True, max_sessions=20, pw_types=(PwType.PPP,))
        assert config.defaults.max_sessions == 10

    def test_single_address_becomes_a_host_prefix(self) -> None:
        peer = cfg('[[peer]]\nname = "p"\naddress = "2001:db8::5"\n').peers[0]
        assert peer.address == ipaddress.ip_network("2001:db8::5/128")

    def test_name_required(self) -> None:
        fails("""
            [[peer]]
            name = "a"
            [[peer]]  # <
            address = "10.0.0.0/8"
        """, "peer #2: name is required")

    def test_name_must_be_a_string(self) -> None:
        fails("""
            [[peer]]
            name = 5  # <
        """, "peer #1: name must be a non-empty string")

    def test_duplicate_name(self) -> None:
        fails("""
            [[peer]]
            name = "a"
            [[peer]]
            name = "a"  # <
        """, "peer 'a': name is already used by another peer")

    def test_bad_address(self) -> None:
        fails("""
            [[peer]]
            name = "a"
            address = "10.0.0.0/33"  # <
        """, "peer 'a': address must be an IP address or prefix such as '10.0.0.0/24'")

    @pytest.mark.parametrize("value", ["[4]", "[]", "[2, 2]", "3", '["3"]'])
    def test_bad_versions(self, value: str) -> None:
        err = fails_anywhere(f'[[peer]]\nname = "a"\nversions = {value}\n', "peer 'a': versions")
        assert err.line == 3

    def test_empty_secret(self) -> None:
        fails("""
            [[peer]]
            name = "a"
            secret = ""  # <
        """, "peer 'a': secret must be a non-empty string")

    def test_hide_avps_needs_a_secret(self) -> None:
        fails("""
            [[peer]]
            name = "a"
            hide_avps = true  # <
        """, "peer 'a': hide_avps needs a secret")

    def test_inherited_hide_avps_without_secret_is_fine(self) -> None:
        config = cfg('[defaults]\nhide_avps = true\n[[peer]]\nname = "a"\n')
        assert config.peers[0].params.hide_avps is True

    def test_override_is_validated(self) -> None:
        fails("""
            [[peer]]
            name = "a"
            receive_window = 0  # <
        """, "peer 'a': receive_window must be an integer from 1 to 32767")

    def test_merged_values_are_cross_checked(self) -> None:
        fails("""
            [defaults]
            retransmit_cap = 10
            [[peer]]
            name = "a"
            retransmit_initial = 12  # <
        """, "peer 'a': retransmit_cap (10) must be at least retransmit_initial (12)")

    def test_unknown_key(self) -> None:
        fails("""
            [[peer]]
            name = "a"
            secrett = "x"  # <
        """, "peer 'a': unknown key 'secrett' (did you mean 'secret'?)")

    def test_tunnel_only_key_is_unknown_for_a_peer(self) -> None:
        fails("""
            [[peer]]
            name = "a"
            version = 3  # <
        """, "peer 'a': unknown key 'version' (did you mean 'versions'?)")


class TestPeerMatching:
    def test_any(self) -> None:
        peer = PeerPolicy(name="any")
        assert peer.matches("10.0.0.1", None)
        assert peer.matches("2001:db8::1", "whatever")

    def test_prefix(self) -> None:
        peer = PeerPolicy(name="p", address=ipaddress.ip_network("10.0.0.0/24"))
        assert peer.matches("10.0.0.200", None)
        assert not peer.matches("10.0.1.1", None)
        assert not peer.matches("2001:db8::1", None)

    def test_ipv4_mapped_ipv6_matches_an_ipv4_prefix(self) -> None:
        peer = PeerPolicy(name="p", address=ipaddress.ip_network("10.0.0.0/24"))
        assert peer.matches("::ffff:10.0.0.7", None)
        assert not peer.matches("::ffff:10.0.1.7", None)

    def test_ipv6_prefix(self) -> None:
        peer = PeerPolicy(name="p", address=ipaddress.ip_network("2001:db8::/32"))
        assert peer.matches("2001:db8:1::1", None)
        assert not peer.matches("10.0.0.1", None)

    def test_host_name_is_case_insensitive_and_required_when_set(self) -> None:
        peer = PeerPolicy(name="p", host_name="LAC1")
        assert peer.matches("10.0.0.1", "lac1")
        assert not peer.matches("10.0.0.1", "lac2")
        assert not peer.matches("10.0.0.1", None)

    def test_address_and_host_name_both_apply(self) -> None:
        peer = PeerPolicy(name="p", address=ipaddress.ip_network("10.0.0.0/8"),
                          host_name="lac1")
        assert peer.matches("10.1.2.3", "lac1")
        assert not peer.matches("192.0.2.1", "lac1")
        assert not peer.matches("10.1.2.3", "lac9")

    def test_invalid_address_is_a_caller_bug(self) -> None:
        with pytest.raises(ValueError):
            PeerPolicy(name="p", address=ipaddress.ip_network("10.0.0.0/8")).matches("x", None)

    def test_peer_for_first_match_wins(self) -> None:
        config = cfg("""
            [[peer]]
            name = "blocked"
            address = "10.0.0.66"
            accept = false
            [[peer]]
            name = "lac1"
            host_name = "lac1"
            secret = "one"
            [[peer]]
            name = "branches"
            address = "10.0.0.0/24"
        """)
        assert config.peer_for("10.0.0.66", "lac1").name == "blocked"  # type: ignore[union-attr]
        assert config.peer_for("192.0.2.1", "LAC1").name == "lac1"  # type: ignore[union-attr]
        assert config.peer_for("10.0.0.5", "lac2").name == "branches"  # type: ignore[union-attr]
        assert config.peer_for("192.0.2.1", "lac2") is None

    def test_no_peers_matches_nothing(self) -> None:
        assert parse("").peer_for("10.0.0.1", None) is None


# --------------------------------------------------------------------------------------------
# [[tunnel]] and [[tunnel.session]]


class TestTunnel:
    def test_minimal(self) -> None:
        config = cfg(V2_TUNNEL)
        assert config.tunnels == (DialTunnel(name="t", peer="10.0.0.2", version=2),)
        tunnel = config.tunnels[0]
        assert tunnel.port == 1701 and tunnel.encap == EncapType.UDP
        assert tunnel.local is None and tunnel.local_port == 1701 and tunnel.secret is None
        assert tunnel.params == config.defaults and tunnel.sessions == ()

    def test_all_keys(self) -> None:
        config = cfg("""
            [defaults]
            hello_interval = 20
            [[tunnel]]
            name = "to-lns"
            peer = "2001:db8::2"
            port = 1702
            version = 3
            encap = "udp"
            local = "2001:db8::1"
            local_port = 1701
            secret = "k"
            hide_avps = true
            digest = "sha1"
            receive_window = 16
        """)
        tunnel = config.tunnels[0]
        assert tunnel == DialTunnel(
            name="to-lns", peer="2001:db8::2", port=1702, version=3, encap=EncapType.UDP,
            local="2001:db8::1", local_port=1701, secret=b"k",
            params=TunnelParams(hello_interval=20.0, hide_avps=True,
                                digest=DigestType.HMAC_SHA1, receive_window=16))

    def test_ip_encap_has_no_port(self) -> None:
        tunnel = cfg(V3_TUNNEL + 'encap = "ip"\n').tunnels[0]
        assert tunnel.encap == EncapType.IP and tunnel.port == 0 and tunnel.local_port == 0

    def test_version_must_be_2_or_3(self) -> None:
        fails("""
            [daemon]
            host_name = "lac1"

            [[tunnel]]
            name = "to-lns"
            peer = "10.0.0.2"
            version = 4  # <
        """, "tunnel 'to-lns': version must be 2 or 3")

    @pytest.mark.parametrize("missing", ["name", "peer", "version"])
    def test_required(self, missing: str) -> None:
        lines = [f"{k} = {v}" for k, v in
                 (("name", '"t"'), ("peer", '"10.0.0.2"'), ("version", "3")) if k != missing]
        label = "tunnel #2" if missing == "name" else "tunnel 't'"
        fails("\n".join(["[[tunnel]]", 'name = "x"', 'peer = "10.0.0.9"', "version = 2",
                         "[[tunnel]]  # <", *lines, ""]),
              f"{label}: {missing} is required")

    def test_peer_must_be_an_address(self) -> None:
        fails("""
            [[tunnel]]
            name = "t"
            peer = "lns.example"  # <
            version = 2
        """, "tunnel 't': peer must be an IPv4 or IPv6 address")

    def test_duplicate_name(self) -> None:
        fails(V2_TUNNEL + """
            [[tunnel]]
            name = "t"  # <
            peer = "10.0.0.3"
            version = 3
        """, "tunnel 't': name is already used by another tunnel")

    def test_ip_encap_needs_v3(self) -> None:
        fails(V2_TUNNEL + """
            encap = "ip"  # <
        """, "tunnel 't': encap 'ip' needs version 3 (L2TPv2 runs over UDP only)")

    @pytest.mark.parametrize("key", ["port", "local_port"])
    def test_udp_keys_with_ip_encap(self, key: str) -> None:
        fails(V3_TUNNEL + f"""
            encap = "ip"
            {key} = 1701  # <
        """, f"tunnel 't': {key} only applies to encap 'udp'")

    def test_local_port_range(self) -> None:
        fails(V3_TUNNEL + """
            local_port = 65536  # <
        """, "tunnel 't': local_port must be an integer from 0 to 65535")

    def test_local_family_must_match(self) -> None:
        fails(V3_TUNNEL + """
            local = "2001:db8::1"  # <
        """, "tunnel 't': local and peer must be of the same address family")

    def test_v2_key_on_v3_tunnel(self) -> None:
        fails(V3_TUNNEL + """
            challenge = false  # <
        """, "tunnel 't': challenge only applies to version 2 tunnels")

    @pytest.mark.parametrize(("key", "value"), [
        ("digest", '"sha1"'), ("pw_types", '["ppp"]'), ("cookie_len", "4"),
        ("l2spec_type", '"none"'), ("data_sequencing", '"all"')])
    def test_v3_key_on_v2_tunnel(self, key: str, value: str) -> None:
        fails(V2_TUNNEL + f"""
            {key} = {value}  # <
        """, f"tunnel 't': {key} only applies to version 3 tunnels")

    def test_version_specific_defaults_are_inherited_silently(self) -> None:
        config = cfg("""
            [defaults]
            digest = "sha1"
            challenge = false
        """ + V2_TUNNEL)
        assert config.tunnels[0].params.digest == DigestType.HMAC_SHA1

    def test_hide_avps_needs_a_secret(self) -> None:
        fails(V3_TUNNEL + """
            hide_avps = true  # <
        """, "tunnel 't': hide_avps needs a secret")

    def test_unknown_key(self) -> None:
        fails(V3_TUNNEL + """
            remote = "10.0.0.3"  # <
        """, "tunnel 't': unknown key 'remote'")

    def test_lines_of_later_tunnels(self) -> None:
        fails("""
            [[tunnel]]
            name = "a"
            peer = "10.0.0.2"
            version = 2

            [[tunnel]]
            name = "b"
            peer = "10.0.0.3"
            version = 3

            [[tunnel]]
            name = "c"
            peer = "10.0.0.4"
            version = 3
            max_retries = 0  # <
        """, "tunnel 'c': max_retries must be an integer from 1 to 100")

    def test_inheritance_chain(self) -> None:
        config = cfg("""
            [defaults]
            hello_interval = 15
            max_retries = 7
            [[tunnel]]
            name = "t"
            peer = "10.0.0.2"
            version = 3
            max_retries = 9
        """)
        params = config.tunnels[0].params
        assert (params.hello_interval, params.max_retries) == (15.0, 9)
        assert config.defaults.max_retries == 7


class TestDialSession:
    def test_defaults_per_version(self) -> None:
        v2 = cfg(V2_TUNNEL + "[[tunnel.session]]\n").tunnels[0].sessions[0]
        v3 = cfg(V3_TUNNEL + "[[tunnel.session]]\n").tunnels[0].sessions[0]
        assert v2 == DialSession(pw_type=PwType.PPP, cookie_len=0,
                                 l2spec_type=L2SpecType.NONE)
        assert v3 == DialSession(pw_type=PwType.ETH)
        assert v3.direction == Direction.INCOMING and v3.count == 1

    def test_all_keys_v3(self) -> None:
        session = cfg(V3_TUNNEL + """
            pw_types = ["eth", "eth_vlan"]
            [[tunnel.session]]
            direction = "outgoing"
            pw_type = "eth_vlan"
            count = 4
            ifname = "l2tpeth%d"
            remote_end_id = "circuit-7"
            cookie_len = 0
            l2spec_type = "none"
            data_sequencing = "all"
            reorder_timeout = 1
        """).tunnels[0].sessions[0]
        assert session == DialSession(
            direction=Direction.OUTGOING, pw_type=PwType.ETH_VLAN, count=4,
            ifname="l2tpeth%d", remote_end_id="circuit-7", cookie_len=0,
            l2spec_type=L2SpecType.NONE, data_sequencing=DataSequencing.ALL,
            reorder_timeout=1.0)

    def test_all_keys_v2(self) -> None:
        session = cfg(V2_TUNNEL + """
            [[tunnel.session]]
            direction = "outgoing"
            pw_type = "ppp"
            ifname = "ppp7"
            called_number = "5551234"
            sequencing = true
        """).tunnels[0].sessions[0]
        assert session.called_number == "5551234" and session.sequencing is True
        assert session.ifname == "ppp7"

    def test_inherits_tunnel_values_which_inherit_defaults(self) -> None:
        tunnel = cfg("""
            [defaults]
            reorder_timeout = 2
            cookie_len = 4
            [[tunnel]]
            name = "t"
            peer = "10.0.0.2"
            version = 3
            data_sequencing = "non_ip"
            [[tunnel.session]]
            [[tunnel.session]]
            cookie_len = 0
        """).tunnels[0]
        first, second = tunnel.sessions
        assert (first.reorder_timeout, first.cookie_len, first.data_sequencing) == (
            2.0, 4, DataSequencing.NON_IP)
        assert second.cookie_len == 0 and second.reorder_timeout == 2.0

    def test_v3_session_ignores_inherited_v2_sequencing(self) -> None:
        session = cfg("[defaults]\nsequencing = true\n" + V3_TUNNEL +
                      "[[tunnel.session]]\n").tunnels[0].sessions[0]
        assert session.sequencing is False

    def test_v2_needs_ppp(self) -> None:
        fails(V2_TUNNEL + """
            [[tunnel.session]]
            pw_type = "eth"  # <
        """, "tunnel 't' session #1: pw_type must be 'ppp' on a version 2 tunnel")

    def test_v3_pw_type_must_be_advertised(self) -> None:
        fails(V3_TUNNEL + """
            [[tunnel.session]]
            [[tunnel.session]]
            pw_type = "eth_vlan"  # <
        """, "tunnel 't' session #2: pw_type 'eth_vlan' is not in the tunnel's pw_types")

    def test_v3_default_pw_type_must_be_advertised(self) -> None:
        fails(V3_TUNNEL + """
            pw_types = ["ppp"]
            [[tunnel.session]]  # <
        """, "tunnel 't' session #1: pw_type 'eth' is not in the tunnel's pw_types")

    def test_bad_pw_type(self) -> None:
        fails(V3_TUNNEL + """
            [[tunnel.session]]
            pw_type = "atm"  # <
        """, "tunnel 't' session #1: pw_type must be one of 'eth', 'eth_vlan', 'ppp'")

    def test_bad_direction(self) -> None:
        fails(V3_TUNNEL + """
            [[tunnel.session]]
            direction = "in"  # <
        """, "tunnel 't' session #1: direction must be one of 'incoming', 'outgoing'")

    @pytest.mark.parametrize("count", ["0", "65536", "1.0"])
    def test_bad_count(self, count: str) -> None:
        err = fails_anywhere(V3_TUNNEL + f"[[tunnel.session]]\ncount = {count}\n",
                             "tunnel 't' session #1: count must be an integer from 1 to 65535")
        assert err.line == 7

    def test_count_needs_an_ifname_template(self) -> None:
        fails(V3_TUNNEL + """
            [[tunnel.session]]
            count = 2
            ifname = "l2tpeth0"  # <
        """, "tunnel 't' session #1: ifname must contain %d when count is more than 1")

    def test_count_without_ifname_is_fine(self) -> None:
        assert cfg(V3_TUNNEL + "[[tunnel.session]]\ncount = 3\n").tunnels[0].sessions[0].count == 3

    @pytest.mark.parametrize("name", ["l2tpeth-way-too-long", "a/b", "has space", "a%d%d", "."])
    def test_bad_ifname(self, name: str) -> None:
        err = fails_anywhere(V3_TUNNEL + f'[[tunnel.session]]\nifname = "{name}"\n',
                             "tunnel 't' session #1: ifname is not a valid interface name: ")
        assert err.line == 7

    def test_remote_end_id_is_v3_only(self) -> None:
        fails(V2_TUNNEL + """
            [[tunnel.session]]
            remote_end_id = "x"  # <
        """, "tunnel 't' session #1: remote_end_id only applies to version 3 tunnels")

    def test_called_number_is_v2_only(self) -> None:
        fails(V3_TUNNEL + """
            [[tunnel.session]]
            called_number = "123"  # <
        """, "tunnel 't' session #1: called_number only applies to version 2 tunnels")

    def test_session_params_are_version_checked(self) -> None:
        fails(V2_TUNNEL + """
            [[tunnel.session]]
            cookie_len = 4  # <
        """, "tunnel 't' session #1: cookie_len only applies to version 3 tunnels")
        fails(V3_TUNNEL + """
            [[tunnel.session]]
            sequencing = true  # <
        """, "tunnel 't' session #1: sequencing only applies to version 2 tunnels")

    def test_tunnel_only_param_is_unknown_in_a_session(self) -> None:
        fails(V3_TUNNEL + """
            [[tunnel.session]]
            hello_interval = 5  # <
        """, "tunnel 't' session #1: unknown key 'hello_interval'")

    def test_session_of_second_tunnel(self) -> None:
        fails("""
            [[tunnel]]
            name = "a"
            peer = "10.0.0.2"
            version = 3
            [[tunnel.session]]
            [[tunnel.session]]

            [[tunnel]]
            name = "b"
            peer = "10.0.0.3"
            version = 3
            [[tunnel.session]]
            pw_type = "ppp"
            [[tunnel.session]]
            count = 0  # <
        """, "tunnel 'b' session #2: count must be an integer from 1 to 65535")

    def test_single_table_instead_of_array(self) -> None:
        fails(V3_TUNNEL + """
            [tunnel.session]  # <
            pw_type = "eth"
        """, "tunnel 't': session must be an array of tables: write [[tunnel.session]]")


# --------------------------------------------------------------------------------------------
# [[static_tunnel]] and [[static_tunnel.session]]


class TestStaticTunnel:
    def test_minimal(self) -> None:
        tunnel = cfg(STATIC).static_tunnels[0]
        assert tunnel == StaticTunnel(tunnel_id=1000, peer_tunnel_id=2000, local="10.0.0.1",
                                      remote="10.0.0.2", udp_sport=5000, udp_dport=6000)
        assert tunnel.version == 3 and tunnel.encap == EncapType.UDP
        assert (tunnel.udp_csum, tunnel.udp6_csum_tx, tunnel.udp6_csum_rx) == (
            False, True, True)

    def test_all_keys(self) -> None:
        tunnel = cfg("""
            [[static_tunnel]]
            tunnel_id = 4294967295
            peer_tunnel_id = 1
            version = 3
            encap = "udp"
            local = "2001:db8::1"
            remote = "2001:db8::2"
            udp_sport = 1
            udp_dport = 65535
            udp_csum = true
            udp6_csum_tx = false
            udp6_csum_rx = false
            [[static_tunnel.session]]
            session_id = 3000
            peer_session_id = 4000
            pw_type = "ppp"
            cookie = "0011223344556677"
            peer_cookie = "DEADBEEF"
            l2spec_type = "none"
            ifname = "l2tpeth0"
            recv_seq = true
            send_seq = true
            lns_mode = true
            reorder_timeout = 0.5
        """).static_tunnels[0]
        assert tunnel == StaticTunnel(
            tunnel_id=0xFFFFFFFF, peer_tunnel_id=1, local="2001:db8::1", remote="2001:db8::2",
            version=3, encap=EncapType.UDP, udp_sport=1, udp_dport=65535, udp_csum=True,
            udp6_csum_tx=False, udp6_csum_rx=False, sessions=(StaticSession(
                session_id=3000, peer_session_id=4000, pw_type=PwType.PPP,
                cookie=bytes.fromhex("0011223344556677"), peer_cookie=b"\xde\xad\xbe\xef",
                l2spec_type=L2SpecType.NONE, ifname="l2tpeth0", recv_seq=True, send_seq=True,
                lns_mode=True, reorder_timeout=0.5),))

    def test_ip_encap(self) -> None:
        tunnel = cfg("""
            [[static_tunnel]]
            tunnel_id = 1
            peer_tunnel_id = 2
            encap = "ip"
            local = "10.0.0.1"
            remote = "10.0.0.2"
        """).static_tunnels[0]
        assert tunnel.encap == EncapType.IP and tunnel.udp_sport == tunnel.udp_dport == 0

    def test_session_defaults_per_version(self) -> None:
        v3 = cfg(STATIC + "[[static_tunnel.session]]\nsession_id = 1\npeer_session_id = 2\n")
        v2 = cfg(STATIC + "version = 2\n[[static_tunnel.session]]\nsession_id = 1\n"
                 "peer_session_id = 2\n")
        assert v3.static_tunnels[0].sessions[0] == StaticSession(1, 2)
        assert v3.static_tunnels[0].sessions[0].l2spec_type == L2SpecType.DEFAULT
        assert v2.static_tunnels[0].sessions[0].l2spec_type == L2SpecType.NONE
        assert v2.static_tunnels[0].sessions[0].pw_type == PwType.ETH

    @pytest.mark.parametrize("missing", ["tunnel_id", "peer_tunnel_id", "local", "remote",
                                         "udp_sport", "udp_dport"])
    def test_required(self, missing: str) -> None:
        body = [line for line in dedent(STATIC).strip().split("\n")[1:]
                if not line.startswith(missing + " ")]
        label = "static_tunnel #1" if missing == "tunnel_id" else "static_tunnel 1000"
        suffix = " with encap 'udp'" if missing.startswith("udp") else ""
        fails("\n".join(["[[static_tunnel]]  # <", *body, ""]),
              f"{label}: {missing} is required{suffix}")

    def test_tunnel_id_range(self) -> None:
        fails("""
            [[static_tunnel]]
            tunnel_id = 0  # <
        """, "static_tunnel 0: tunnel_id must be an integer from 1 to 4294967295")

    def test_v2_ids_are_16_bit(self) -> None:
        fails(STATIC + """
            version = 2
            [[static_tunnel]]
            tunnel_id = 1001
            peer_tunnel_id = 65536  # <
            version = 2
            local = "10.0.0.1"
            remote = "10.0.0.2"
            udp_sport = 5000
            udp_dport = 6000
        """, "static_tunnel 1001: peer_tunnel_id must be an integer from 1 to 65535 "
             "for version 2")

    def test_v2_ip_encap(self) -> None:
        fails(STATIC + """
            version = 2
            encap = "ip"  # <
        """, "static_tunnel 1000: encap 'ip' needs version 3 (L2TPv2 runs over UDP only)")

    def test_udp_keys_with_ip_encap(self) -> None:
        fails("""
            [[static_tunnel]]
            tunnel_id = 1
            peer_tunnel_id = 2
            encap = "ip"
            local = "10.0.0.1"
            remote = "10.0.0.2"
            udp6_csum_rx = false  # <
        """, "static_tunnel 1: udp6_csum_rx only applies to encap 'udp'")

    def test_duplicate_tunnel_id(self) -> None:
        fails(STATIC + """
            [[static_tunnel]]
            tunnel_id = 1000  # <
            peer_tunnel_id = 2001
            local = "10.0.0.1"
            remote = "10.0.0.3"
            udp_sport = 5001
            udp_dport = 6001
        """, "static_tunnel 1000: tunnel_id is already used by another static_tunnel")

    def test_family_mismatch(self) -> None:
        fails(STATIC.replace('remote = "10.0.0.2"', 'remote = "::2"  # <'),
              "static_tunnel 1000: remote and local must be of the same address family")

    def test_bool_is_not_a_port(self) -> None:
        fails(STATIC + """
            udp_csum = 1  # <
        """, "static_tunnel 1000: udp_csum must be true or false, not an integer")


class TestStaticSession:
    def session(self, extra: str, version: int = 3) -> str:
        return (STATIC + f"version = {version}\n[[static_tunnel.session]]\nsession_id = 3000\n"
                "peer_session_id = 4000\n" + dedent(extra))

    @pytest.mark.parametrize("value", ['"00112233445566"', '"0011"', '"xyz01234"', "12345678",
                                       '"001122334455667788"'])
    def test_bad_cookie(self, value: str) -> None:
        fails(self.session(f"cookie = {value}  # <\n"),
              "static_tunnel 1000 session 3000: cookie must be 4 or 8 octets in hex, such as "
              "'0011223344556677'")

    def test_cookie_is_v3_only(self) -> None:
        fails(self.session('peer_cookie = "00112233"  # <\n', version=2),
              "static_tunnel 1000 session 3000: peer_cookie only applies to version 3 tunnels")

    def test_v2_sublayer_must_be_none(self) -> None:
        fails(self.session('l2spec_type = "default"  # <\n', version=2),
              "static_tunnel 1000 session 3000: l2spec_type must be 'none' on a version 2 "
              "tunnel")

    def test_v2_session_ids_are_16_bit(self) -> None:
        text = self.session("", version=2).replace("session_id = 3000", "session_id = 70000 # <")
        fails(text, "static_tunnel 1000 session 70000: session_id must be an integer from 1 to "
                    "65535 for version 2")

    def test_v3_session_ids_are_32_bit(self) -> None:
        text = self.session("").replace("session_id = 3000", "session_id = 4294967295")
        assert cfg(text).static_tunnels[0].sessions[0].session_id == 0xFFFFFFFF

    def test_pw_type_eth_or_ppp(self) -> None:
        fails(self.session('pw_type = "eth_vlan"  # <\n'),
              "static_tunnel 1000 session 3000: pw_type must be one of 'eth', 'ppp'")

    def test_duplicate_session_id(self) -> None:
        fails(self.session("[[static_tunnel.session]]\nsession_id = 3000  # <\n"
                           "peer_session_id = 4001\n"),
              "static_tunnel 1000 session 3000: session_id is already used in this tunnel")

    def test_same_session_id_in_two_tunnels(self) -> None:
        text = self.session("") + dedent("""
            [[static_tunnel]]
            tunnel_id = 1001
            peer_tunnel_id = 2001
            local = "10.0.0.1"
            remote = "10.0.0.3"
            udp_sport = 5001
            udp_dport = 6001
            [[static_tunnel.session]]
            session_id = 3000
            peer_session_id = 4000
        """)
        assert [len(t.sessions) for t in cfg(text).static_tunnels] == [1, 1]

    def test_required(self) -> None:
        fails(STATIC + """
            [[static_tunnel.session]]  # <
            session_id = 1
        """, "static_tunnel 1000 session 1: peer_session_id is required")

    def test_unknown_key(self) -> None:
        fails(self.session("recv_sequence = true  # <\n"),
              "static_tunnel 1000 session 3000: unknown key 'recv_sequence' "
              "(did you mean 'recv_seq'?)")

    def test_ifname(self) -> None:
        fails(self.session('ifname = "bad name"  # <\n'),
              "static_tunnel 1000 session 3000: ifname is not a valid interface name: "
              "interface name 'bad name' contains an invalid character ' '")


# --------------------------------------------------------------------------------------------
# Locating lines in awkward TOML


class TestLineNumbers:
    def test_syntax_error_uses_tomllib_line(self) -> None:
        with pytest.raises(ConfigError) as info:
            parse("[daemon]\nhost_name = \n", "pyl2tp.toml")
        assert info.value.line == 2
        assert str(info.value).startswith("pyl2tp.toml:2: invalid TOML: ")

    def test_duplicate_key_is_a_syntax_error(self) -> None:
        with pytest.raises(ConfigError, match=r"^pyl2tp\.toml:3: invalid TOML: "):
            parse("[daemon]\nlog_level = 'info'\nlog_level = 'debug'\n", "pyl2tp.toml")

    def test_multiline_strings_do_not_look_like_keys_or_headers(self) -> None:
        fails('''
            [[peer]]
            name = "a"
            host_name = """
            version = 1
            [[peer]]
            name = "b"
            """
            [[peer]]
            name = "c"
            accept = "no"  # <
        ''', "peer 'c': accept must be true or false, not a string")

    def test_literal_multiline_strings_and_quotes_inside(self) -> None:
        fails("""
            [[peer]]
            name = 'a'
            host_name = '''
            [[peer]] '' ''' # trailing comment with [[peer]]
            [[peer]]
            name = "b\\"["
            accept = 0  # <
        """, "peer 'b\"[': accept must be true or false, not an integer")

    def test_multiline_arrays(self) -> None:
        fails("""
            [defaults]
            pw_types = [
              "eth",
              # cookie_len = 4
              "ppp",
            ]
            cookie_len = 3  # <
        """, "[defaults]: cookie_len must be 0, 4 or 8")

    def test_error_inside_a_multiline_array_points_at_its_key(self) -> None:
        fails("""
            [defaults]
            pw_types = [  # <
              "eth",
              "frame-relay",
            ]
        """, "[defaults]: pw_types must be a non-empty array of 'eth', 'eth_vlan', 'ppp'")

    def test_quoted_keys_and_headers(self) -> None:
        fails("""
            [ "defaults" ]
            "hello_interval" = 1
            'max_retries' = 0  # <
        """, "[defaults]: max_retries must be an integer from 1 to 100")

    def test_dotted_keys(self) -> None:
        fails("""
            daemon.host_name = "x"
            daemon.log_level = "loud"  # <
        """, "[daemon]: log_level must be one of 'debug', 'info', 'warning', 'error'")

    def test_comment_lines_with_headers(self) -> None:
        fails("""
            # [[tunnel]]
            [[tunnel]]
            name = "a"
            peer = "10.0.0.2"
            version = 3
            # [[tunnel]]
            [[tunnel]]
            name = "b"
            peer = "10.0.0.2"
            version = 5  # <
        """, "tunnel 'b': version must be 2 or 3")

    def test_sub_array_without_its_parent_array(self) -> None:
        fails("""
            [daemon]
            [[tunnel.session]]  # <
            pw_type = "eth"
        """, "tunnel must be an array of tables: write [[tunnel]]")

    def test_crlf_line_endings(self) -> None:
        text = "[daemon]\r\nlog_level = 'info'\r\nmax_tunnels = 0\r\n"
        with pytest.raises(ConfigError) as info:
            parse(text, "pyl2tp.toml")
        assert info.value.line == 3

    def test_subtable_of_an_array_element(self) -> None:
        fails(STATIC + """
            [[static_tunnel]]
            tunnel_id = 1001
            peer_tunnel_id = 2001
            local = "10.0.0.1"
            remote = "10.0.0.2"
            udp_sport = 5000
            udp_dport = 6000
            [[static_tunnel.session]]
            session_id = 1
            peer_session_id = 2
            [[static_tunnel.session]]
            session_id = 2
            peer_session_id = 3
            cookie = "zz"  # <
        """, "static_tunnel 1001 session 2: cookie must be 4 or 8 octets in hex, such as "
             "'0011223344556677'")


# --------------------------------------------------------------------------------------------
# load(), reload comparison and the documented examples


class TestLoad:
    def test_load_reads_the_file_and_names_it(self, tmp_path: Path) -> None:
        path = tmp_path / "pyl2tp.toml"
        path.write_text("[daemon]\nhost_name = 'lns1'\n")
        assert load(str(path)).daemon.host_name == "lns1"
        path.write_text("[daemon]\n\nmax_tunnels = -1\n")
        with pytest.raises(ConfigError) as info:
            load(str(path))
        assert str(info.value) == f"{path}:3: [daemon]: max_tunnels must be an integer >= 1"

    def test_missing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "nope.toml"
        with pytest.raises(ConfigError, match=r"nope\.toml: cannot read: No such file"):
            load(str(path))

    def test_invalid_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.toml"
        path.write_bytes(b"[daemon]\nhost_name = '\xff'\n")
        with pytest.raises(ConfigError) as info:
            load(str(path))
        assert info.value.line == 2 and "not valid UTF-8" in str(info.value)


class TestReload:
    BASE = """
        [[peer]]
        name = "p"
        secret = "a"
        [[tunnel]]
        name = "a"
        peer = "10.0.0.2"
        version = 3
        [[tunnel]]
        name = "b"
        peer = "10.0.0.3"
        version = 3
    """

    def test_equal_text_gives_equal_and_hashable_configs(self) -> None:
        a, b = cfg(self.BASE), cfg(self.BASE)
        assert a == b and hash(a) == hash(b)
        assert len({a, b}) == 1

    def test_only_the_changed_tunnel_differs(self) -> None:
        old = cfg(self.BASE)
        new = cfg(self.BASE.replace('peer = "10.0.0.3"', 'peer = "10.0.0.4"'))
        assert old.tunnels[0] == new.tunnels[0]
        assert old.tunnels[1] != new.tunnels[1]
        assert old.peers == new.peers

    def test_changed_default_changes_every_inheritor(self) -> None:
        old = cfg(self.BASE)
        new = cfg("[defaults]\nhello_interval = 5\n" + dedent(self.BASE))
        assert all(o != n for o, n in zip(old.tunnels, new.tunnels, strict=True))
        assert old.peers != new.peers

    def test_secret_change_is_visible(self) -> None:
        assert cfg(self.BASE).peers != cfg(self.BASE.replace('"a"\n', '"b"\n', 1)).peers


def _doc_examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL)


class TestDocumentation:
    def test_docs_have_examples(self) -> None:
        assert len(_doc_examples()) >= 2

    @pytest.mark.parametrize("index", range(len(_doc_examples())))
    def test_every_documented_example_is_valid(self, index: int) -> None:
        parse(_doc_examples()[index], f"{DOCS.name} example {index + 1}")

    def test_lns_and_lac_examples(self) -> None:
        configs = [parse(text) for text in _doc_examples()]
        assert any(c.peers and c.listen for c in configs)
        assert any(c.tunnels for c in configs)
