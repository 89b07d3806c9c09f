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
    PppProfile,
    StaticSession,
    StaticTunnel,
    TunnelParams,
    load,
    parse,
)
from pyl2tp.ppp.protocols import AuthMethod
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
        assert (config.listen, config.peers, config.tunnels, config.static_tunnels,
                config.ppp) == ((), (), (), (), ())
        assert config.defaults == TunnelParams()

    def test_comments_and_blank_lines_only(self) -> None:
        assert parse("# nothing here\n\n   # still nothing\n") == Config()

    def test_daemon_defaults(self) -> None:
        daemon = parse("").daemon
        assert daemon == DaemonSection(host_name=socket.gethostname(), router_id=None,
                                       socket=None, log_level="info", max_tunnels=4096,
                                       max_half_open_tunnels=1024, max_sessions=65535,
                                       sccrq_rate=50.0, sccrq_burst=100, sccrq_sources=4096,
                                       max_ppp_negotiations=1024)

    def test_tunnel_param_defaults_match_the_documented_schema(self) -> None:
        assert TunnelParams() == TunnelParams(
            hello_interval=60.0, receive_window=8, retransmit_initial=1.0, retransmit_cap=8.0,
            max_retries=5, hide_avps=False, challenge=True, digest=DigestType.HMAC_MD5,
            pw_types=(PwType.ETH, PwType.PPP), max_sessions=1024, cookie_len=8,
            l2spec_type=L2SpecType.DEFAULT, data_sequencing=DataSequencing.NONE,
            sequencing=False, reorder_timeout=0.0, setup_timeout=30.0, control_rx_queue=16)

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
            max_half_open_tunnels = 5
            max_sessions = 100
            sccrq_rate = 2.5
            sccrq_burst = 3
            sccrq_sources = 64
            max_ppp_negotiations = 7
            reorder_queue = 32
        """).daemon
        assert daemon == DaemonSection(host_name="lns1", router_id=0xC0000201,
                                       socket="/run/pyl2tp/x.sock", log_level="debug",
                                       max_tunnels=10, max_half_open_tunnels=5,
                                       max_sessions=100, sccrq_rate=2.5, sccrq_burst=3,
                                       sccrq_sources=64, max_ppp_negotiations=7,
                                       reorder_queue=32)

    def test_sccrq_rate_zero_disables_and_integers_are_numbers(self) -> None:
        daemon = cfg("[daemon]\nsccrq_rate = 0\n").daemon
        assert daemon.sccrq_rate == 0.0 and isinstance(daemon.sccrq_rate, float)

    @pytest.mark.parametrize(("key", "value", "message"), [
        ("max_half_open_tunnels", "0", "max_half_open_tunnels must be an integer >= 1"),
        ("max_sessions", "0", "max_sessions must be an integer >= 1"),
        ("max_sessions", "true", "max_sessions must be an integer >= 1, not a boolean"),
        ("sccrq_rate", "-1", "sccrq_rate must be a number >= 0"),
        ("sccrq_rate", "inf", "sccrq_rate must be a number >= 0"),
        ("sccrq_rate", '"fast"', "sccrq_rate must be a number >= 0, not a string"),
        ("sccrq_burst", "0", "sccrq_burst must be an integer >= 1"),
        ("sccrq_burst", "1.5", "sccrq_burst must be an integer >= 1, not a float"),
        ("sccrq_sources", "0", "sccrq_sources must be an integer >= 1"),
        ("max_ppp_negotiations", "0", "max_ppp_negotiations must be an integer >= 1"),
        ("reorder_queue", "0", "reorder_queue must be an integer >= 1"),
    ])
    def test_limit_bad_values(self, key: str, value: str, message: str) -> None:
        fails(f"""
            [daemon]
            {key} = {value}  # <
        """, f"[daemon]: {message}")

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
            control_rx_queue = 0
        """).defaults
        assert params == TunnelParams(
            hello_interval=0.0, receive_window=32767, retransmit_initial=0.5,
            retransmit_cap=16.0, max_retries=100, hide_avps=True, challenge=False,
            digest=DigestType.HMAC_SHA1, pw_types=(PwType.ETH_VLAN, PwType.PPP),
            max_sessions=65535, cookie_len=4, l2spec_type=L2SpecType.NONE,
            data_sequencing=DataSequencing.NON_IP, sequencing=True, reorder_timeout=0.25,
            setup_timeout=5.0, control_rx_queue=0)

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
        ("control_rx_queue", "-1", "control_rx_queue must be an integer from 0 to 32767"),
        ("control_rx_queue", "32768", "control_rx_queue must be an integer from 0 to 32767"),
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
# [[ppp]] profiles


SECRETS = "/etc/pyl2tp/ppp-secrets"


def profile(body: str = "", name: str = "p") -> str:
    """A one-profile document whose keys start on line 3."""
    return f'[[ppp]]\nname = "{name}"\n' + dedent(body)


def one_profile(body: str = "") -> PppProfile:
    config = cfg(profile(body))
    assert len(config.ppp) == 1
    return config.ppp[0]


class TestPppProfile:
    def test_minimal_profile_has_the_documented_defaults(self) -> None:
        assert one_profile() == PppProfile(
            name="p", auth=(), peer_auth=(AuthMethod.MSCHAP_V2, AuthMethod.CHAP_MD5,
                                          AuthMethod.PAP),
            secrets=None, user=None, password=None, auth_name=None, mru=1500, mtu=None,
            echo_interval=10.0, echo_failure=3, restart_interval=3.0, max_configure=10,
            max_terminate=2, max_failure=5, auth_timeout=30.0, local_ip=None, pool=None,
            peer_ip=None, dns=(), request_dns=False, ipv4=True, ipv6=False, ifname="ppp%d",
            default_route=False)

    def test_every_profile_field_is_configurable(self) -> None:
        from pyl2tp.daemon.config import _PPP

        assert list(_PPP) == [f.name for f in dataclasses.fields(PppProfile)]

    def test_lns_keys(self) -> None:
        got = one_profile(f"""
            auth = ["mschap-v2", "chap-md5", "pap"]
            secrets = "{SECRETS}"
            auth_name = "lns1"
            mru = 1460
            mtu = 1400
            echo_interval = 0
            echo_failure = 1
            restart_interval = 0.5
            max_configure = 1
            max_terminate = 1000
            max_failure = 7
            auth_timeout = 5
            local_ip = "10.0.0.1"
            pool = "10.0.0.0/24"
            dns = ["192.0.2.53", "192.0.2.54"]
            ipv4 = true
            ipv6 = true
            ifname = "sub%d"
        """)
        assert got == PppProfile(
            name="p", auth=(AuthMethod.MSCHAP_V2, AuthMethod.CHAP_MD5, AuthMethod.PAP),
            secrets=SECRETS, auth_name="lns1", mru=1460, mtu=1400, echo_interval=0.0,
            echo_failure=1, restart_interval=0.5, max_configure=1, max_terminate=1000,
            max_failure=7, auth_timeout=5.0, local_ip=ipaddress.IPv4Address("10.0.0.1"),
            pool="10.0.0.0/24", dns=(ipaddress.IPv4Address("192.0.2.53"),
                                     ipaddress.IPv4Address("192.0.2.54")),
            ipv4=True, ipv6=True, ifname="sub%d")
        assert isinstance(got.echo_interval, float) and isinstance(got.auth_timeout, float)

    def test_client_keys(self) -> None:
        got = one_profile("""
            user = "alice"
            password = "s3crét pass"
            peer_auth = ["pap"]
            request_dns = true
            default_route = true
            ifname = "wan%d"
        """)
        assert (got.user, got.password, got.peer_auth) == ("alice", "s3crét pass",
                                                           (AuthMethod.PAP,))
        assert got.request_dns is True and got.default_route is True
        assert got.local_ip is None and got.pool is None and got.ifname == "wan%d"

    def test_client_password_from_the_secrets_file(self) -> None:
        got = one_profile(f'user = "alice"\nsecrets = "{SECRETS}"\n')
        assert got.user == "alice" and got.password is None and got.secrets == SECRETS

    def test_fixed_peer_ip(self) -> None:
        got = one_profile('local_ip = "10.0.0.1"\npeer_ip = "10.0.0.2"\n')
        assert got.peer_ip == ipaddress.IPv4Address("10.0.0.2") and got.pool is None

    def test_ipv6_only(self) -> None:
        got = one_profile("ipv4 = false\nipv6 = true\n")
        assert (got.ipv4, got.ipv6) == (False, True)

    def test_explicit_empty_auth_and_dns(self) -> None:
        got = one_profile("auth = []\ndns = []\n")
        assert got.auth == () and got.dns == ()

    def test_auth_method_spelling_is_case_insensitive(self) -> None:
        assert one_profile(f'auth = ["PAP", "Chap-MD5"]\nsecrets = "{SECRETS}"\n').auth == (
            AuthMethod.PAP, AuthMethod.CHAP_MD5)

    def test_auth_order_is_kept(self) -> None:
        got = one_profile(f'auth = ["pap", "mschap-v2"]\nsecrets = "{SECRETS}"\n')
        assert got.auth == (AuthMethod.PAP, AuthMethod.MSCHAP_V2)

    def test_several_profiles_in_file_order_and_lookup(self) -> None:
        config = cfg("""
            [[ppp]]
            name = "b"
            [[ppp]]
            name = "a"
            mru = 1400
        """)
        assert [p.name for p in config.ppp] == ["b", "a"]
        assert config.ppp_profile("a") == PppProfile(name="a", mru=1400)
        assert config.ppp_profile("b") is config.ppp[0]
        assert config.ppp_profile("c") is None
        assert Config().ppp == () and Config().ppp_profile("a") is None

    def test_profile_is_frozen_and_hashable(self) -> None:
        got = one_profile('dns = ["192.0.2.53"]\n')
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.mru = 1400  # type: ignore[misc]
        assert hash(got) == hash(one_profile('dns = ["192.0.2.53"]\n'))

    # ---- pool --------------------------------------------------------------------------

    @pytest.mark.parametrize(("text", "normal", "first", "last"), [
        ("10.0.0.0/24", "10.0.0.0/24", "10.0.0.1", "10.0.0.254"),
        ("10.0.0.0/30", "10.0.0.0/30", "10.0.0.1", "10.0.0.2"),
        ("10.0.0.0/31", "10.0.0.0/31", "10.0.0.0", "10.0.0.1"),
        ("10.0.0.7/32", "10.0.0.7/32", "10.0.0.7", "10.0.0.7"),
        ("10.0.0.10-10.0.0.200", "10.0.0.10-10.0.0.200", "10.0.0.10", "10.0.0.200"),
        (" 10.0.0.10 - 10.0.1.2 ", "10.0.0.10-10.0.1.2", "10.0.0.10", "10.0.1.2"),
        ("10.0.0.5-10.0.0.5", "10.0.0.5-10.0.0.5", "10.0.0.5", "10.0.0.5"),
        ("10.0.0.0-10.15.255.255", "10.0.0.0-10.15.255.255", "10.0.0.0", "10.15.255.255"),
        ("10.0.0.0/12", "10.0.0.0/12", "10.0.0.1", "10.15.255.254"),
    ])
    def test_pool_forms(self, text: str, normal: str, first: str, last: str) -> None:
        got = one_profile(f'local_ip = "192.0.2.1"\npool = "{text}"\n')
        assert got.pool == normal
        assert got.pool_range() == (ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))

    def test_pool_range_without_a_pool(self) -> None:
        assert PppProfile(name="p").pool_range() is None

    def test_pool_may_contain_local_ip(self) -> None:
        got = one_profile('local_ip = "10.0.0.1"\npool = "10.0.0.0/24"\n')
        assert got.local_ip is not None and got.local_ip in ipaddress.IPv4Network(got.pool or "")

    @pytest.mark.parametrize(("value", "message"), [
        ('"10.0.0.1"', "must be a range or a prefix, not one address (that is peer_ip)"),
        ('"pool"', "must be an IPv4 range such as '10.0.0.10-10.0.0.200' or a prefix such "
                   "as '10.0.0.0/24'"),
        ('"10.0.0.1-"', "must be an IPv4 range such as '10.0.0.10-10.0.0.200' or a prefix "
                        "such as '10.0.0.0/24'"),
        ('"10.0.0.0/33"', "must be an IPv4 range such as '10.0.0.10-10.0.0.200' or a prefix "
                          "such as '10.0.0.0/24'"),
        ("24", "must be an IPv4 range such as '10.0.0.10-10.0.0.200' or a prefix such as "
               "'10.0.0.0/24'"),
        ('"10.0.0.5/24"', "has host bits set (did you mean '10.0.0.0/24'?)"),
        ('"10.0.0.9-10.0.0.1"', "must not end before it starts (10.0.0.9 > 10.0.0.1)"),
        ('"10.0.0.0/11"', "must hold at most 1048576 addresses, not 2097150"),
        ('"10.0.0.0-10.16.0.0"', "must hold at most 1048576 addresses, not 1048577"),
        ('"2001:db8::/64"', "must be IPv4 (IPV6CP negotiates interface identifiers, "
                            "not addresses)"),
        ('"2001:db8::1-2001:db8::9"', "must be IPv4 (IPV6CP negotiates interface "
                                      "identifiers, not addresses)"),
        ('"0.0.0.0-0.0.0.9"', "must hold unicast addresses only (not 0.0.0.0 nor 224.0.0.0 "
                              "and above)"),
        ('"224.0.0.0/24"', "must hold unicast addresses only (not 0.0.0.0 nor 224.0.0.0 and "
                           "above)"),
        ('"223.255.255.0-240.0.0.1"', "must hold unicast addresses only (not 0.0.0.0 nor "
                                      "224.0.0.0 and above)"),
    ])
    def test_bad_pool(self, value: str, message: str) -> None:
        fails(profile(f'local_ip = "192.0.2.1"\npool = {value}  # <\n'),
              f"ppp 'p': pool {message}")

    # ---- single keys ----------------------------------------------------------------------

    @pytest.mark.parametrize(("key", "value", "message"), [
        ("mru", "127", "must be an integer from 128 to 65535"),
        ("mru", "65536", "must be an integer from 128 to 65535"),
        ("mru", "true", "must be an integer from 128 to 65535, not a boolean"),
        ("mtu", "67", "must be an integer from 68 to 65535"),
        ("mtu", "1500.0", "must be an integer from 68 to 65535, not a float"),
        ("echo_interval", "-1", "must be a number >= 0"),
        ("echo_interval", "nan", "must be a number >= 0"),
        ("echo_interval", '"10"', "must be a number >= 0, not a string"),
        ("echo_failure", "0", "must be an integer from 1 to 1000"),
        ("restart_interval", "0", "must be a number > 0"),
        ("max_configure", "0", "must be an integer from 1 to 1000"),
        ("max_terminate", "1001", "must be an integer from 1 to 1000"),
        ("max_failure", '"5"', "must be an integer from 1 to 1000, not a string"),
        ("auth_timeout", "0", "must be a number > 0"),
        ("auth_timeout", "inf", "must be a number > 0"),
        ("auth", '"pap"', "must be an array of 'pap', 'chap-md5', 'mschap-v2'"),
        ("auth", "[1]", "must be an array of 'pap', 'chap-md5', 'mschap-v2'"),
        ("auth", '["chap"]', "lists unknown method 'chap' (did you mean 'chap-md5'?)"),
        ("auth", '["pap", "mschapv2"]',
         "lists unknown method 'mschapv2' (did you mean 'mschap-v2'?)"),
        ("auth", '["eap-tls"]',
         "lists unknown method 'eap-tls' (use 'pap', 'chap-md5', 'mschap-v2')"),
        ("auth", '["pap", "PAP"]', "must not list 'pap' twice"),
        ("peer_auth", "[]", "must be a non-empty array of 'pap', 'chap-md5', 'mschap-v2'"),
        ("peer_auth", '["md5"]', "lists unknown method 'md5' (use 'pap', 'chap-md5', "
                                 "'mschap-v2')"),
        ("secrets", '""', "must be a non-empty string"),
        ("secrets", '"ppp-secrets"', "must be an absolute path"),
        ("secrets", '"/etc/a\\u0000b"', "must be an absolute path"),
        ("secrets", "true", "must be a non-empty string"),
        ("user", '""', "must be a non-empty string"),
        ("user", '"' + "u" * 256 + '"', "must be at most 255 bytes (PAP's length field)"),
        ("password", '"' + "é" * 128 + '"', "must be at most 255 bytes (PAP's length field)"),
        ("auth_name", '""', "must be a non-empty string"),
        ("local_ip", '"10.0.0.300"', "must be an IPv4 address"),
        ("local_ip", '"2001:db8::1"', "must be an IPv4 address"),
        ("local_ip", "167772161", "must be an IPv4 address"),
        ("local_ip", '"0.0.0.0"', "must be a unicast IPv4 address"),
        ("local_ip", '"224.0.0.1"', "must be a unicast IPv4 address"),
        ("local_ip", '"255.255.255.255"', "must be a unicast IPv4 address"),
        ("peer_ip", '"10.0.0"', "must be an IPv4 address"),
        ("dns", '"192.0.2.53"', "must be an array of at most 2 IPv4 addresses"),
        ("dns", '["192.0.2.53", "192.0.2.54", "192.0.2.55"]',
         "must be an array of at most 2 IPv4 addresses"),
        ("dns", '["2001:db8::53"]', "must be an array of at most 2 IPv4 addresses"),
        ("dns", '["192.0.2.53", "192.0.2.53"]', "must not list a value twice"),
        ("request_dns", "1", "must be true or false, not an integer"),
        ("ipv4", '"yes"', "must be true or false, not a string"),
        ("ipv6", "0", "must be true or false, not an integer"),
        ("default_route", '"true"', "must be true or false, not a string"),
        ("ifname", '"ppp%d%d"', "is not a valid interface name: interface name template "
                                "'ppp%d%d' must contain exactly one %d"),
        ("ifname", '"ppp%s"', "is not a valid interface name: interface name template "
                              "'ppp%s' must contain exactly one %d"),
        ("ifname", '"a-very-long-name%d"', "is not a valid interface name: interface name "
                                           "'a-very-long-name%d' is too long (at most 15 "
                                           "bytes)"),
        ("ifname", '"my ppp%d"', "is not a valid interface name: interface name 'my ppp%d' "
                                 "contains an invalid character ' '"),
        ("ifname", '"a/b"', "is not a valid interface name: interface name 'a/b' contains an "
                            "invalid character '/'"),
        ("ifname", '""', "must be a non-empty string"),
    ])
    def test_bad_values(self, key: str, value: str, message: str) -> None:
        fails(profile(f"{key} = {value}  # <\n"), f"ppp 'p': {key} {message}")

    def test_name_required(self) -> None:
        fails("""
            [[ppp]]
            name = "a"
            [[ppp]]  # <
            mru = 1400
        """, "ppp #2: name is required")

    def test_name_must_be_a_non_empty_string(self) -> None:
        fails('[[ppp]]\nname = ""  # <\n', "ppp #1: name must be a non-empty string")
        fails('[[ppp]]\nname = 1  # <\n', "ppp #1: name must be a non-empty string")

    def test_duplicate_name(self) -> None:
        fails("""
            [[ppp]]
            name = "a"
            [[ppp]]
            name = "b"
            [[ppp]]
            name = "a"  # <
        """, "ppp 'a': name is already used by another ppp profile")

    def test_same_name_as_a_peer_or_tunnel_is_fine(self) -> None:
        config = cfg(V2_TUNNEL + '[[ppp]]\nname = "t"\n[[peer]]\nname = "t"\n')
        assert config.ppp[0].name == config.peers[0].name == config.tunnels[0].name == "t"

    def test_unknown_key_with_suggestion(self) -> None:
        fails(profile('passwd = "x"  # <\n'),
              "ppp 'p': unknown key 'passwd' (did you mean 'password'?)")
        fails(profile('pools = "10.0.0.0/24"  # <\n'),
              "ppp 'p': unknown key 'pools' (did you mean 'pool'?)")

    def test_unknown_key_without_suggestion(self) -> None:
        fails(profile("lcp_mode = 1  # <\n"), "ppp 'p': unknown key 'lcp_mode'")

    def test_tunnel_parameter_is_unknown_in_a_profile(self) -> None:
        fails(profile("hello_interval = 5  # <\n"),
              "ppp 'p': unknown key 'hello_interval' (did you mean 'echo_interval'?)")
        fails(profile("secret = \"x\"  # <\n"),
              "ppp 'p': unknown key 'secret' (did you mean 'secrets'?)")

    def test_ppp_setting_at_top_level(self) -> None:
        fails("""
            mru = 1400  # <
        """, "unknown key 'mru' (PPP settings belong in a [[ppp]] profile)")

    def test_misspelt_section(self) -> None:
        fails("""
            [[pp]]  # <
            name = "x"
        """, "unknown key 'pp' (did you mean 'ppp'?)")

    def test_single_table_instead_of_array(self) -> None:
        fails("""
            [ppp]  # <
            name = "x"
        """, "ppp must be an array of tables: write [[ppp]]")

    def test_first_problem_in_file_order_is_reported(self) -> None:
        fails(profile("""
            mru = 1400
            mtu = 1  # <
            echo_failure = 0
        """), "ppp 'p': mtu must be an integer from 68 to 65535")

    def test_error_in_a_later_profile_names_its_line(self) -> None:
        fails("""
            [[ppp]]
            name = "a"
            mru = 1400

            [[ppp]]
            name = "b"
            mru = 1400
            echo_failure = 0  # <
        """, "ppp 'b': echo_failure must be an integer from 1 to 1000")

    def test_secrets_file_is_not_read(self, tmp_path: Path) -> None:
        missing = tmp_path / "no-such-secrets"
        got = one_profile(f'auth = ["pap"]\nsecrets = "{missing}"\n')
        assert got.secrets == str(missing) and not missing.exists()


class TestPppFixedIfname:
    """A profile's ifname without %d names one device, so it serves one session at a time."""

    FIXED = '[[ppp]]\nname = "one"\nifname = "wan0"  # <\n'

    def test_fixed_name_for_one_dialled_session(self) -> None:
        config = cfg(self.FIXED + V2_TUNNEL + 'ppp = "one"\n[[tunnel.session]]\n')
        assert config.ppp[0].ifname == "wan0"

    def test_fixed_name_unused_is_fine(self) -> None:
        assert one_profile('ifname = "wan0"\n').ifname == "wan0"

    def test_fixed_name_on_a_peer(self) -> None:
        fails(self.FIXED + '[[peer]]\nname = "lacs"\nppp = "one"\n',
              "ppp 'one': ifname 'wan0' names a single interface, but peer 'lacs' can bring up "
              "any number of sessions with this profile (use a template such as 'ppp%d')")

    def test_fixed_name_for_a_counted_session(self) -> None:
        fails(self.FIXED + V2_TUNNEL + '[[tunnel.session]]\nppp = "one"\ncount = 3\n',
              "ppp 'one': ifname 'wan0' names a single interface, but 3 sessions use this "
              "profile (use a template such as 'ppp%d')")

    def test_fixed_name_for_sessions_on_two_tunnels(self) -> None:
        fails(self.FIXED + V2_TUNNEL + 'ppp = "one"\n[[tunnel.session]]\n' + """
            [[tunnel]]
            name = "u"
            peer = "10.0.0.3"
            version = 2
            [[tunnel.session]]
            ppp = "one"
        """, "ppp 'one': ifname 'wan0' names a single interface, but 2 sessions use this "
             "profile (use a template such as 'ppp%d')")

    def test_eth_sessions_of_a_tunnel_with_the_profile_do_not_count(self) -> None:
        config = cfg(self.FIXED + V3_TUNNEL + 'ppp = "one"\n[[tunnel.session]]\ncount = 5\n'
                     '[[tunnel.session]]\npw_type = "ppp"\n')
        assert [s.ppp for s in config.tunnels[0].sessions] == [None, "one"]

    def test_template_serves_any_number(self) -> None:
        config = cfg('[[ppp]]\nname = "many"\nifname = "wan%d"\n[[peer]]\nname = "p"\n'
                     'ppp = "many"\n' + V2_TUNNEL + '[[tunnel.session]]\nppp = "many"\n'
                     "count = 9\n")
        assert config.ppp[0].ifname == "wan%d"


class TestPppProfileRules:
    def test_auth_needs_secrets(self) -> None:
        fails(profile('auth = ["chap-md5"]  # <\n'),
              "ppp 'p': auth needs a secrets file to check users against")

    def test_empty_auth_needs_no_secrets(self) -> None:
        assert one_profile("auth = []\n").secrets is None

    def test_auth_name_needs_a_chap_method(self) -> None:
        fails(profile('auth_name = "lns"  # <\n'),
              "ppp 'p': auth_name only applies when auth includes 'chap-md5' or 'mschap-v2' "
              "(it names us in CHAP challenges)")
        fails(profile(f'auth = ["pap"]\nsecrets = "{SECRETS}"\nauth_name = "lns"  # <\n'),
              "ppp 'p': auth_name only applies when auth includes 'chap-md5' or 'mschap-v2' "
              "(it names us in CHAP challenges)")

    @pytest.mark.parametrize("method", ["chap-md5", "mschap-v2"])
    def test_auth_name_with_chap(self, method: str) -> None:
        got = one_profile(f'auth = ["pap", "{method}"]\nsecrets = "{SECRETS}"\n'
                          'auth_name = "lns"\n')
        assert got.auth_name == "lns"

    def test_password_needs_user(self) -> None:
        fails(profile('password = "x"  # <\n'), "ppp 'p': password needs a user")

    def test_peer_auth_needs_user(self) -> None:
        fails(profile('peer_auth = ["pap"]  # <\n'), "ppp 'p': peer_auth needs a user")

    def test_user_needs_a_password_or_secrets(self) -> None:
        fails(profile('user = "alice"  # <\n'),
              "ppp 'p': user needs a password, or a secrets file holding one")

    @pytest.mark.parametrize("key", ["local_ip", "pool", "peer_ip", "dns", "request_dns",
                                     "default_route"])
    def test_ipcp_keys_need_ipv4(self, key: str) -> None:
        value = {"local_ip": '"10.0.0.1"', "pool": '"10.0.0.0/24"', "peer_ip": '"10.0.0.2"',
                 "dns": "[]", "request_dns": "false", "default_route": "true"}[key]
        fails(profile(f"ipv6 = true\nipv4 = false\n{key} = {value}  # <\n"),
              f"ppp 'p': {key} only applies with ipv4 = true")

    def test_ipcp_key_before_ipv4_false_is_still_reported_at_the_key(self) -> None:
        fails(profile('dns = ["192.0.2.53"]  # <\nipv4 = false\nipv6 = true\n'),
              "ppp 'p': dns only applies with ipv4 = true")

    def test_ipcp_keys_with_ipv4_true_explicitly(self) -> None:
        got = one_profile('ipv4 = true\nlocal_ip = "10.0.0.1"\npool = "10.0.0.0/24"\n')
        assert got.ipv4 is True

    def test_no_network_protocol(self) -> None:
        fails(profile("ipv4 = false  # <\n"),
              "ppp 'p': ipv4 and ipv6 are both false: the link would carry nothing")
        fails(profile("ipv4 = false\nipv6 = false  # <\n"),
              "ppp 'p': ipv4 and ipv6 are both false: the link would carry nothing")
        fails(profile("ipv6 = false\nipv4 = false  # <\n"),
              "ppp 'p': ipv4 and ipv6 are both false: the link would carry nothing")

    def test_pool_and_peer_ip_are_exclusive(self) -> None:
        fails(profile('local_ip = "10.0.0.1"\npool = "10.0.0.0/24"\n'
                      'peer_ip = "10.0.0.2"  # <\n'),
              "ppp 'p': pool and peer_ip are mutually exclusive")
        fails(profile('peer_ip = "10.0.0.2"\nlocal_ip = "10.0.0.1"\n'
                      'pool = "10.0.0.0/24"  # <\n'),
              "ppp 'p': pool and peer_ip are mutually exclusive")

    @pytest.mark.parametrize(("key", "value"), [("pool", "10.0.0.0/24"),
                                                ("peer_ip", "10.0.0.2")])
    def test_assignment_needs_local_ip(self, key: str, value: str) -> None:
        fails(profile(f'{key} = "{value}"  # <\n'), f"ppp 'p': {key} needs local_ip")

    def test_peer_ip_must_differ_from_local_ip(self) -> None:
        fails(profile('local_ip = "10.0.0.1"\npeer_ip = "10.0.0.1"  # <\n'),
              "ppp 'p': peer_ip must differ from local_ip")

    def test_local_ip_alone_is_fine(self) -> None:
        assert one_profile('local_ip = "10.0.0.1"\n').local_ip == ipaddress.IPv4Address(
            "10.0.0.1")


# --------------------------------------------------------------------------------------------
# References to profiles and tunnels


PROFILES = """
[[ppp]]
name = "lns"
[[ppp]]
name = "client"
"""


class TestPeerPpp:
    def test_defaults(self) -> None:
        peer = cfg('[[peer]]\nname = "a"\n').peers[0]
        assert peer.ppp is None and peer.switch_to is None

    def test_profile_reference(self) -> None:
        config = cfg(PROFILES + '[[peer]]\nname = "a"\nppp = "lns"\n')
        assert config.peers[0].ppp == "lns"
        assert config.ppp_profile(config.peers[0].ppp or "") == PppProfile(name="lns")

    def test_profile_defined_after_the_peer(self) -> None:
        assert cfg('[[peer]]\nname = "a"\nppp = "lns"\n' + PROFILES).peers[0].ppp == "lns"

    def test_unknown_profile_with_suggestion(self) -> None:
        fails(PROFILES + """
            [[peer]]
            name = "a"
            ppp = "lnss"  # <
        """, "peer 'a': ppp 'lnss' is not a [[ppp]] profile (did you mean 'lns'?)")

    def test_unknown_profile_without_suggestion(self) -> None:
        fails("""
            [[peer]]
            name = "a"
            ppp = "lns"  # <
        """, "peer 'a': ppp 'lns' is not a [[ppp]] profile")

    def test_reference_must_be_a_string(self) -> None:
        fails('[[peer]]\nname = "a"\nppp = 1  # <\n', "peer 'a': ppp must be a non-empty string")
        fails('[[peer]]\nname = "a"\nswitch_to = ""  # <\n',
              "peer 'a': switch_to must be a non-empty string")

    def test_ppp_and_switch_to_are_exclusive(self) -> None:
        fails(PROFILES + V2_TUNNEL + """
            [[peer]]
            name = "a"
            ppp = "lns"
            switch_to = "t"  # <
        """, "peer 'a': ppp and switch_to are mutually exclusive (a PPP session is either "
             "terminated here or switched)")
        fails(PROFILES + V2_TUNNEL + """
            [[peer]]
            name = "a"
            switch_to = "t"
            ppp = "lns"  # <
        """, "peer 'a': ppp and switch_to are mutually exclusive (a PPP session is either "
             "terminated here or switched)")

    @pytest.mark.parametrize(("key", "value"), [("ppp", "lns"), ("switch_to", "t")])
    def test_no_effect_on_a_refusing_peer(self, key: str, value: str) -> None:
        fails(PROFILES + V2_TUNNEL + f"""
            [[peer]]
            name = "a"
            accept = false
            {key} = "{value}"  # <
        """, f"peer 'a': {key} has no effect with accept = false")

    @pytest.mark.parametrize(("key", "value"), [("ppp", "lns"), ("switch_to", "t")])
    def test_no_effect_on_a_peer_without_ppp(self, key: str, value: str) -> None:
        fails(PROFILES + V2_TUNNEL + f"""
            [[peer]]
            name = "a"
            versions = [3]
            pw_types = ["eth"]
            {key} = "{value}"  # <
        """, f"peer 'a': {key} has no effect: this peer's tunnels carry no PPP sessions "
             "(versions = [3] and 'ppp' is not in pw_types)")

    def test_no_ppp_in_pw_types_inherited_from_defaults(self) -> None:
        fails(PROFILES + """
            [defaults]
            pw_types = ["eth"]
            [[peer]]
            name = "a"
            versions = [3]
            ppp = "lns"  # <
        """, "peer 'a': ppp has no effect: this peer's tunnels carry no PPP sessions "
             "(versions = [3] and 'ppp' is not in pw_types)")

    def test_v3_peer_with_ppp_pw_type(self) -> None:
        peer = cfg(PROFILES + '[[peer]]\nname = "a"\nversions = [3]\nppp = "lns"\n').peers[0]
        assert peer.ppp == "lns" and PwType.PPP in peer.params.pw_types

    def test_v2_peer_needs_no_pw_types(self) -> None:
        peer = cfg(PROFILES + '[[peer]]\nname = "a"\nversions = [2]\npw_types = ["eth"]\n'
                   'ppp = "lns"\n').peers[0]
        assert peer.ppp == "lns"


class TestSwitchTo:
    def test_switch_to_a_v2_tunnel(self) -> None:
        config = cfg(V2_TUNNEL + '[[peer]]\nname = "a"\nswitch_to = "t"\n')
        assert config.peers[0].switch_to == "t" and config.peers[0].ppp is None
        assert config.tunnels[0].name == "t"

    def test_switch_to_a_tunnel_defined_later(self) -> None:
        config = cfg('[[peer]]\nname = "a"\nswitch_to = "t"\n' + V3_TUNNEL)
        assert config.peers[0].switch_to == "t"

    def test_switch_to_a_v3_tunnel_with_ppp(self) -> None:
        config = cfg(V3_TUNNEL + 'pw_types = ["ppp"]\n[[peer]]\nname = "a"\nswitch_to = "t"\n')
        assert config.peers[0].switch_to == "t"

    def test_target_tunnel_may_have_sessions_and_a_profile(self) -> None:
        config = cfg(PROFILES + V2_TUNNEL + 'ppp = "client"\n[[tunnel.session]]\n'
                     '[[peer]]\nname = "a"\nswitch_to = "t"\n')
        assert config.tunnels[0].sessions[0].ppp == "client"

    def test_unknown_tunnel_with_suggestion(self) -> None:
        fails(V2_TUNNEL + """
            [[peer]]
            name = "a"
            switch_to = "tt"  # <
        """, "peer 'a': switch_to 'tt' is not a [[tunnel]] (did you mean 't'?)")

    def test_unknown_tunnel_reported_at_the_peer_even_before_the_tunnels(self) -> None:
        fails("""
            [[peer]]
            name = "first"
            [[peer]]
            name = "a"
            switch_to = "to-lnss"  # <

            [[tunnel]]
            name = "to-lns"
            peer = "10.0.0.2"
            version = 2
        """, "peer 'a': switch_to 'to-lnss' is not a [[tunnel]] (did you mean 'to-lns'?)")

    def test_a_profile_is_not_a_tunnel(self) -> None:
        fails(PROFILES + """
            [[peer]]
            name = "a"
            switch_to = "lns"  # <
        """, "peer 'a': switch_to 'lns' is not a [[tunnel]]")

    def test_a_static_tunnel_is_not_a_dialled_tunnel(self) -> None:
        fails(STATIC + """
            [[peer]]
            name = "a"
            switch_to = "1000"  # <
        """, "peer 'a': switch_to '1000' is not a [[tunnel]]")

    def test_target_must_carry_ppp(self) -> None:
        fails(V3_TUNNEL + """
            pw_types = ["eth"]
            [[peer]]
            name = "a"
            switch_to = "t"  # <
        """, "peer 'a': switch_to 't': that tunnel carries no PPP sessions ('ppp' is not in "
             "its pw_types)")

    def test_unnamed_peer_label(self) -> None:
        # A peer without a name fails on that first; a named one is labelled by name.
        fails(V2_TUNNEL + """
            [[peer]]
            switch_to = "t"
            name = 3  # <
        """, "peer #1: name must be a non-empty string")


class TestTunnelPpp:
    def test_defaults(self) -> None:
        tunnel = cfg(V2_TUNNEL + "[[tunnel.session]]\n").tunnels[0]
        assert tunnel.ppp is None and tunnel.sessions[0].ppp is None

    def test_v2_sessions_inherit_the_tunnel_profile(self) -> None:
        tunnel = cfg(PROFILES + V2_TUNNEL + """
            ppp = "client"
            [[tunnel.session]]
            [[tunnel.session]]
            count = 2
        """).tunnels[0]
        assert tunnel.ppp == "client"
        assert [s.ppp for s in tunnel.sessions] == ["client", "client"]

    def test_session_overrides_the_tunnel_profile(self) -> None:
        tunnel = cfg(PROFILES + V2_TUNNEL + """
            ppp = "client"
            [[tunnel.session]]
            ppp = "lns"
            [[tunnel.session]]
        """).tunnels[0]
        assert [s.ppp for s in tunnel.sessions] == ["lns", "client"]

    def test_session_profile_without_a_tunnel_profile(self) -> None:
        tunnel = cfg(PROFILES + V2_TUNNEL + '[[tunnel.session]]\nppp = "lns"\n'
                     "[[tunnel.session]]\n").tunnels[0]
        assert tunnel.ppp is None
        assert [s.ppp for s in tunnel.sessions] == ["lns", None]

    def test_v3_only_ppp_sessions_inherit(self) -> None:
        tunnel = cfg(PROFILES + V3_TUNNEL + """
            ppp = "client"
            [[tunnel.session]]
            pw_type = "eth"
            [[tunnel.session]]
            pw_type = "ppp"
        """).tunnels[0]
        assert [(s.pw_type, s.ppp) for s in tunnel.sessions] == [
            (PwType.ETH, None), (PwType.PPP, "client")]

    def test_resolved_session_equals_an_explicit_one(self) -> None:
        inherited = cfg(PROFILES + V2_TUNNEL + 'ppp = "lns"\n[[tunnel.session]]\n')
        explicit = cfg(PROFILES + V2_TUNNEL + '[[tunnel.session]]\nppp = "lns"\n')
        assert inherited.tunnels[0].sessions == explicit.tunnels[0].sessions
        assert inherited.tunnels[0].sessions[0] == DialSession(
            pw_type=PwType.PPP, cookie_len=0, l2spec_type=L2SpecType.NONE, ppp="lns")

    def test_unknown_tunnel_profile(self) -> None:
        fails(PROFILES + V2_TUNNEL + """
            ppp = "clint"  # <
        """, "tunnel 't': ppp 'clint' is not a [[ppp]] profile (did you mean 'client'?)")

    def test_unknown_session_profile(self) -> None:
        fails(PROFILES + V2_TUNNEL + """
            [[tunnel.session]]
            [[tunnel.session]]
            ppp = "nope"  # <
        """, "tunnel 't' session #2: ppp 'nope' is not a [[ppp]] profile")

    def test_session_profile_on_a_non_ppp_session(self) -> None:
        fails(PROFILES + V3_TUNNEL + """
            [[tunnel.session]]
            pw_type = "eth"
            ppp = "client"  # <
        """, "tunnel 't' session #1: ppp only applies to pw_type 'ppp' sessions")

    def test_session_profile_on_a_default_eth_session(self) -> None:
        fails(PROFILES + V3_TUNNEL + """
            [[tunnel.session]]
            ppp = "client"  # <
        """, "tunnel 't' session #1: ppp only applies to pw_type 'ppp' sessions")

    def test_v3_tunnel_profile_needs_ppp_in_pw_types(self) -> None:
        fails(PROFILES + V3_TUNNEL + """
            pw_types = ["eth"]
            ppp = "client"  # <
        """, "tunnel 't': ppp has no effect: 'ppp' is not in the tunnel's pw_types")

    def test_v3_tunnel_profile_with_only_eth_sessions_is_fine(self) -> None:
        tunnel = cfg(PROFILES + V3_TUNNEL + 'ppp = "client"\n[[tunnel.session]]\n').tunnels[0]
        assert tunnel.ppp == "client" and tunnel.sessions[0].ppp is None

    def test_v2_tunnel_profile_ignores_pw_types(self) -> None:
        tunnel = cfg(PROFILES + V2_TUNNEL + 'ppp = "client"\n').tunnels[0]
        assert tunnel.ppp == "client"

    def test_profile_of_a_later_tunnel_names_its_line(self) -> None:
        fails(PROFILES + """
            [[tunnel]]
            name = "a"
            peer = "10.0.0.2"
            version = 2
            ppp = "lns"
            [[tunnel.session]]

            [[tunnel]]
            name = "b"
            peer = "10.0.0.3"
            version = 2
            [[tunnel.session]]
            ppp = "lns"
            [[tunnel.session]]
            ppp = "lsn"  # <
        """, "tunnel 'b' session #2: ppp 'lsn' is not a [[ppp]] profile (did you mean 'lns'?)")


class TestPppReload:
    BASE = """
        [[ppp]]
        name = "lns"
        auth = ["chap-md5"]
        secrets = "/etc/pyl2tp/ppp-secrets"
        local_ip = "10.0.0.1"
        pool = "10.0.0.10-10.0.0.20"
        [[ppp]]
        name = "client"
        user = "u"
        password = "p"
        [[peer]]
        name = "p"
        ppp = "lns"
        [[tunnel]]
        name = "t"
        peer = "10.0.0.2"
        version = 2
        ppp = "client"
        [[tunnel.session]]
    """

    def test_equal_text_gives_equal_and_hashable_configs(self) -> None:
        a, b = cfg(self.BASE), cfg(self.BASE)
        assert a == b and hash(a) == hash(b)

    def test_pool_spelling_does_not_matter(self) -> None:
        a = cfg(self.BASE)
        b = cfg(self.BASE.replace('"10.0.0.10-10.0.0.20"', '" 10.0.0.10 -  10.0.0.20"'))
        assert a == b

    def test_a_profile_change_touches_only_the_profile(self) -> None:
        old = cfg(self.BASE)
        new = cfg(self.BASE.replace('password = "p"', 'password = "q"'))
        assert old.ppp[0] == new.ppp[0] and old.ppp[1] != new.ppp[1]
        assert old.peers == new.peers and old.tunnels == new.tunnels
        assert old != new

    def test_a_reference_change_is_visible(self) -> None:
        old = cfg(self.BASE)
        new = cfg(self.BASE.replace('ppp = "client"', 'ppp = "lns"'))
        assert old.tunnels != new.tunnels and old.ppp == new.ppp
        assert new.tunnels[0].sessions[0].ppp == "lns"


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

    def test_ppp_lns_example(self) -> None:
        lns = [c for c in map(parse, _doc_examples())
               if any(p.ppp is not None for p in c.peers)]
        assert lns, "no example terminates PPP on an LNS"
        config = lns[0]
        peer = next(p for p in config.peers if p.ppp is not None)
        profile = config.ppp_profile(peer.ppp or "")
        assert profile is not None and config.listen
        assert profile.auth == (AuthMethod.CHAP_MD5, AuthMethod.PAP)
        assert profile.secrets and profile.local_ip and profile.pool and profile.dns
        assert profile.ipv6 is True

    def test_ppp_client_example(self) -> None:
        clients = [c for c in map(parse, _doc_examples())
                   if any(s.ppp for t in c.tunnels for s in t.sessions)]
        assert clients, "no example dials a PPP session with a profile"
        config = clients[0]
        tunnel = next(t for t in config.tunnels if t.sessions and t.sessions[0].ppp)
        profile = config.ppp_profile(tunnel.sessions[0].ppp or "")
        assert tunnel.version == 2
        assert profile is not None and profile.user and profile.password

    def test_switching_example(self) -> None:
        configs = [c for c in map(parse, _doc_examples()) if any(p.switch_to for p in c.peers)]
        assert configs, "no example switches PPP sessions"
        peer = next(p for p in configs[0].peers if p.switch_to)
        assert any(t.name == peer.switch_to for t in configs[0].tunnels)

    def test_every_ppp_key_is_documented(self) -> None:
        from pyl2tp.daemon.config import _PPP

        text = DOCS.read_text()
        section = text[text.index("### `[[ppp]]`"):]
        for key in _PPP:
            assert f"| `{key}` |" in section, key

    def test_references_are_documented(self) -> None:
        text = DOCS.read_text()
        for heading, keys in [("### `[[peer]]`", ["ppp", "switch_to"]),
                              ("### `[[tunnel]]`", ["ppp"]),
                              ("### `[[tunnel.session]]`", ["ppp"])]:
            start = text.index(heading)
            section = text[start:text.index("\n### ", start + 1)]
            for key in keys:
                assert f"| `{key}` |" in section, (heading, key)

    def test_secrets_file_format_is_documented(self) -> None:
        text = DOCS.read_text()
        section = text[text.index("### The secrets file"):]
        assert "client  server  secret  [address ...]" in section
        for word in ("`*`", "`#`", "quoted", "address"):
            assert word in section, word
