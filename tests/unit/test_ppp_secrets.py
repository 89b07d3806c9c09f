"""pppd-style secrets files: parsing, errors with line numbers, lookup, and the backend."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyl2tp.ppp.auth import AuthBackend, AuthRequest, AuthResult, Credentials
from pyl2tp.ppp.protocols import AuthMethod
from pyl2tp.ppp.secrets import SecretEntry, SecretsError, SecretsFile

SAMPLE = """\
# Secrets for authentication using CHAP
# client        server  secret                  IP addresses
alice           *       "correct horse"         10.0.0.5
"bob smith"     lns1    s3cret                  -
bob             lns2    other                   10.0.0.7 10.0.0.8
*               *       shared                  !10.9.0.1 10.1.0.0/16
carol           lns1    'single # quoted'       *
dave            *       pass\\ word             # a comment after the fields
erin            *       ""
frank           *       multi \\
                        10.0.0.9
gina#x          *       a#b
"""


def test_parse_sample() -> None:
    secrets = SecretsFile.parse(SAMPLE, "chap-secrets")
    assert secrets.entries == (
        SecretEntry("alice", "*", "correct horse", ("10.0.0.5",)),
        SecretEntry("bob smith", "lns1", "s3cret", ()),
        SecretEntry("bob", "lns2", "other", ("10.0.0.7", "10.0.0.8")),
        SecretEntry("*", "*", "shared", ("!10.9.0.1", "10.1.0.0/16")),
        SecretEntry("carol", "lns1", "single # quoted", ()),
        SecretEntry("dave", "*", "pass word", ()),
        SecretEntry("erin", "*", "", ()),
        SecretEntry("frank", "*", "multi", ("10.0.0.9",)),
        SecretEntry("gina#x", "*", "a#b", ()),
    )
    assert len(secrets) == 9
    assert "correct horse" not in repr(secrets.entries[0])  # secrets stay out of logs


def test_fixed_address_skips_negations_and_networks() -> None:
    assert SecretEntry("a", "*", "s", ("!10.0.0.1", "10.2.0.0/16", "10.0.0.3")).fixed_address == (
        "10.0.0.3"
    )
    assert SecretEntry("a", "*", "s", ("10.2.0.0/16",)).fixed_address is None
    assert SecretEntry("a", "*", "s").fixed_address is None


def test_escapes_inside_quotes_and_adjacent_quoted_parts() -> None:
    secrets = SecretsFile.parse('u * "say \\"hi\\"" \n v * ab"c d"\'e\'\n')
    assert [e.secret for e in secrets.entries] == ['say "hi"', "abc de"]


def test_crlf_and_tabs() -> None:
    secrets = SecretsFile.parse("a\t*\tx\r\nb * y\r\n")
    assert [(e.client, e.secret) for e in secrets.entries] == [("a", "x"), ("b", "y")]


def test_empty_and_comment_only_text() -> None:
    assert len(SecretsFile.parse("")) == 0
    assert len(SecretsFile.parse("# nothing\n\n   \n# more")) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice *\n", "f:1: expected 'client server secret [address ...]', found 2 fields"),
        ("\n\n# c\nalice\n", "f:4: expected 'client server secret [address ...]', found 1 field"),
        ('a * ok\nb * "open\n', "f:2: unterminated quoted string"),
        ('a * ok\nb * "open', "f:2: unterminated quoted string"),
        (
            "a * s 10.0.0.256\n",
            "f:1: '10.0.0.256' is not an IPv4 address or network (or '-' for none)",
        ),
        (
            "a * s host.example\n",
            "f:1: 'host.example' is not an IPv4 address or network (or '-' for none)",
        ),
        (
            "a * s 10.0.0.0/33\n",
            "f:1: '10.0.0.0/33' is not an IPv4 address or network (or '-' for none)",
        ),
        ("a * s ::1\n", "f:1: '::1' is not an IPv4 address or network (or '-' for none)"),
        ('"" * s\n', "f:1: empty client name"),
        ('a "" s\n', "f:1: empty server name"),
        ("a * s\\", "f:1: backslash at end of file"),
        (
            "ok * s\n\n  x y \\\n  z 1.2.3\n",
            "f:3: '1.2.3' is not an IPv4 address or network (or '-' for none)",
        ),
    ],
)
def test_syntax_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(SecretsError) as info:
        SecretsFile.parse(text, "f")
    assert str(info.value) == message
    assert "\n" not in str(info.value)


SECRETS = SecretsFile.parse(
    """\
*       *       wild-any
*       lns1    wild-lns1
alice   *       alice-any
alice   lns1    alice-lns1
alice   lns2    alice-lns2
bob     lns1    bob-lns1
"""
)


@pytest.mark.parametrize(
    ("client", "server", "secret"),
    [
        ("alice", None, "alice-any"),  # first exact-client entry; server unconstrained
        ("alice", "lns1", "alice-lns1"),  # exact both beats exact client + '*' server
        ("alice", "lns9", "alice-any"),
        ("bob", "lns1", "bob-lns1"),
        ("bob", "lns2", "wild-any"),  # bob's only entry is for lns1
        ("zed", None, "wild-any"),
        ("zed", "lns1", "wild-lns1"),
    ],
)
def test_lookup_precedence(client: str, server: str | None, secret: str) -> None:
    entry = SECRETS.lookup(client, server)
    assert entry is not None and entry.secret == secret


def test_lookup_without_wildcard() -> None:
    secrets = SecretsFile.parse("alice lns1 x\n")
    assert secrets.lookup("bob") is None
    assert secrets.lookup("alice", "lns2") is None
    assert secrets.lookup("Alice") is None  # names are case-sensitive, as in pppd


def test_credentials_for() -> None:
    secrets = SecretsFile.parse(SAMPLE)
    assert secrets.credentials_for("alice") == Credentials("alice", "correct horse")
    assert secrets.credentials_for("nobody") == Credentials("nobody", "shared")
    assert SecretsFile.parse("a * x\n").credentials_for("b") is None


def _authenticate(secrets: SecretsFile, request: AuthRequest) -> AuthResult:
    backend: AuthBackend = secrets  # structural: a SecretsFile is an AuthBackend
    return asyncio.run(backend.authenticate(request))


def test_backend_pap() -> None:
    secrets = SecretsFile.parse(SAMPLE)
    ok = _authenticate(secrets, AuthRequest(AuthMethod.PAP, "alice", password="correct horse"))
    assert ok == AuthResult(True, "Authentication succeeded", "10.0.0.5")
    bad = _authenticate(secrets, AuthRequest(AuthMethod.PAP, "alice", password="wrong"))
    assert bad == AuthResult(False, "Authentication failed")
    # No fixed address: none assigned.
    ok = _authenticate(secrets, AuthRequest(AuthMethod.PAP, "dave", password="pass word"))
    assert ok == AuthResult(True, "Authentication succeeded", None)
    # An empty secret never authenticates, not even an empty password.
    assert not _authenticate(secrets, AuthRequest(AuthMethod.PAP, "erin", password="")).ok


def test_backend_unknown_user_looks_like_wrong_password() -> None:
    secrets = SecretsFile.parse("alice * x\n")
    unknown = _authenticate(secrets, AuthRequest(AuthMethod.PAP, "bob", password="x"))
    wrong = _authenticate(secrets, AuthRequest(AuthMethod.PAP, "alice", password="y"))
    assert unknown == wrong == AuthResult(False, "Authentication failed")
    challenge = bytes(range(16))
    mschap = _authenticate(
        secrets,
        AuthRequest(AuthMethod.MSCHAP_V2, "bob", challenge=challenge, response=bytes(49)),
    )
    assert mschap == AuthResult(
        False, "E=691 R=0 C=000102030405060708090A0B0C0D0E0F V=3 M=Authentication failed"
    )


def test_backend_chap_md5_and_wildcard_address() -> None:
    secrets = SecretsFile.parse(SAMPLE)
    challenge = b"0123456789abcdef"
    digest = hashlib.md5(b"\x09" + b"shared" + challenge).digest()
    request = AuthRequest(
        AuthMethod.CHAP_MD5, "anyone", identifier=9, challenge=challenge, response=digest
    )
    # The '*' entry matches; its first plain address is not a network or negation: none.
    assert _authenticate(secrets, request) == AuthResult(True, "Authentication succeeded")


def test_backend_mschapv2_rfc2759() -> None:
    secrets = SecretsFile.parse("User * clientPass 192.0.2.7\n")
    value = (
        bytes.fromhex("21402324255E262A28295F2B3A337C7E")
        + bytes(8)
        + bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
        + b"\x00"
    )
    request = AuthRequest(
        AuthMethod.MSCHAP_V2,
        "User",
        identifier=1,
        challenge=bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628"),
        response=value,
    )
    assert _authenticate(secrets, request) == AuthResult(
        True, "S=407A5589115FD0D6209F510FE9C04566932CDA56 M=Authentication succeeded", "192.0.2.7"
    )


# -- files ----------------------------------------------------------------------------------


def test_load_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "chap-secrets"
    path.write_text(SAMPLE, encoding="utf-8")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="pyl2tp.ppp.secrets"):
        secrets = SecretsFile.load(path)
    assert len(secrets) == 9 and secrets.source == str(path)
    assert not caplog.records


def test_load_warns_when_others_can_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "pap-secrets"
    path.write_text("a * b\n", encoding="utf-8")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="pyl2tp.ppp.secrets"):
        secrets = SecretsFile.load(path)
    assert len(secrets) == 1
    assert "accessible to group or others (mode 644)" in caplog.text


def test_load_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SecretsError, match=f"^{missing}: No such file or directory$"):
        SecretsFile.load(missing)
    with pytest.raises(SecretsError, match=f"^{tmp_path}: "):
        SecretsFile.load(tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"a * b\nc * \xff\n")
    with pytest.raises(SecretsError, match=f"^{bad}:2: not valid UTF-8$"):
        SecretsFile.load(bad)
    syntax = tmp_path / "syntax"
    syntax.write_text("a * b\n\nlonely\n", encoding="utf-8")
    with pytest.raises(SecretsError, match=f"^{syntax}:3: expected"):
        SecretsFile.load(syntax)


# -- round trip -------------------------------------------------------------------------------

field_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029\x85"),
    min_size=1,
    max_size=20,
)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(
    client=field_text,
    server=field_text,
    secret=st.text(max_size=20).filter(lambda s: "\n" not in s and "\r" not in s),
)
def test_quoted_fields_round_trip(client: str, server: str, secret: str) -> None:
    text = f"{_quote(client)} {_quote(server)} {_quote(secret)} 10.0.0.1\n"
    [entry] = SecretsFile.parse(text).entries
    assert entry == SecretEntry(client, server, secret, ("10.0.0.1",))


@given(st.text(max_size=200))
def test_parse_raises_only_secrets_error(text: str) -> None:
    try:
        SecretsFile.parse(text)
    except SecretsError as exc:
        assert str(exc).startswith("<string>:")
