"""pppd-style secrets files (``chap-secrets``/``pap-secrets``) as an authentication backend.

One entry per line::

    # client      server   secret            addresses...
    alice         *        "correct horse"   10.0.0.5
    "bob smith"   lns1     s3cret            -
    *             *        shared            10.1.0.0/16

Fields are separated by blanks. A field may be quoted with ``"`` or ``'`` to hold blanks or
``#``; a backslash makes the next character literal, and a backslash at the end of a line
continues the entry on the next line. ``#`` at the start of a field begins a comment. ``*``
in the client or server column matches any name; an exact name wins over ``*``. The optional
address columns list the IPv4 addresses (or networks, optionally ``!``-negated, as pppd
allows) the client may use; ``-``, ``*`` or no column means no fixed address. The first
plain address is the one assigned to the client.

Differences from pppd, chosen so a mistake is an error rather than a surprise: addresses
must be IPv4 addresses or networks (no host names to resolve), an empty client or server
name is refused, a secret of the form ``@file`` is taken literally, and an empty secret never
authenticates anyone (see :meth:`AuthRequest.verify_with`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .auth import AuthRequest, AuthResult, Credentials

__all__ = ["WILDCARD", "SecretEntry", "SecretsError", "SecretsFile"]

_log = logging.getLogger(__name__)

WILDCARD = "*"
_NO_ADDRESS = frozenset(("-", "*"))
_QUOTES = frozenset("\"'")


class SecretsError(Exception):
    """A secrets file that cannot be used; the message is one line, ``source:line: what``."""


@dataclass(frozen=True, slots=True)
class SecretEntry:
    """One line of a secrets file. ``addresses`` holds the address columns as written,
    without the ``-``/``*`` placeholders."""

    client: str
    server: str
    secret: str = field(repr=False)
    addresses: tuple[str, ...] = ()

    @property
    def fixed_address(self) -> str | None:
        """The first plain IPv4 address (not a network, not negated): the one to assign."""
        for token in self.addresses:
            if not token.startswith("!") and "/" not in token:
                return token
        return None


def _tokenize(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-empty entry, honouring quotes, backslash
    escapes, line continuations and comments."""
    line = 1
    entry_line = 1
    fields: list[str] = []
    word: list[str] | None = None  # None: between words
    quote: str | None = None
    quote_line = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        i += 1
        if quote is not None:
            if ch == quote:
                quote = None
            elif ch == "\n":
                raise SecretsError(f"{source}:{quote_line}: unterminated quoted string")
            elif ch == "\\" and i < n and text[i] != "\n":
                assert word is not None
                word.append(text[i])
                i += 1
            else:
                assert word is not None
                word.append(ch)
            continue
        if ch == "\\":
            if i >= n:
                raise SecretsError(f"{source}:{line}: backslash at end of file")
            if text[i] == "\n":  # continuation: the entry goes on
                i += 1
                line += 1
                if word is not None:
                    fields.append("".join(word))
                    word = None
                continue
            if word is None:
                word = []
                if not fields:
                    entry_line = line
            word.append(text[i])
            i += 1
            continue
        if ch == "\n" or ch.isspace():
            if word is not None:
                fields.append("".join(word))
                word = None
            if ch == "\n":
                if fields:
                    yield entry_line, fields
                fields = []
                line += 1
            continue
        if ch == "#" and word is None:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if word is None:
            word = []
            if not fields:
                entry_line = line
        if ch in _QUOTES:
            quote = ch
            quote_line = line
        else:
            word.append(ch)
    if quote is not None:
        raise SecretsError(f"{source}:{quote_line}: unterminated quoted string")
    if word is not None:
        fields.append("".join(word))
    if fields:
        yield entry_line, fields


def _check_address(token: str, where: str) -> str:
    body = token[1:] if token.startswith("!") else token
    try:
        if "/" in body:
            ipaddress.IPv4Network(body, strict=False)
        else:
            ipaddress.IPv4Address(body)
    except ValueError:
        raise SecretsError(
            f"{where}: {token!r} is not an IPv4 address or network (or '-' for none)"
        ) from None
    return token


def _entry(line: int, fields: list[str], source: str) -> SecretEntry:
    where = f"{source}:{line}"
    if len(fields) < 3:
        raise SecretsError(
            f"{where}: expected 'client server secret [address ...]', "
            f"found {len(fields)} field{'s' if len(fields) != 1 else ''}"
        )
    client, server, secret, *rest = fields
    if not client or not server:
        raise SecretsError(f"{where}: empty {'client' if not client else 'server'} name")
    addresses = tuple(_check_address(t, where) for t in rest if t not in _NO_ADDRESS)
    return SecretEntry(client, server, secret, addresses)


class SecretsFile:
    """The entries of one secrets file, usable as an :class:`~.auth.AuthBackend` (the
    authenticator role) and as a source of :class:`~.auth.Credentials` (the peer role)."""

    def __init__(self, entries: Iterable[SecretEntry] = (), source: str = "<string>") -> None:
        self.entries: tuple[SecretEntry, ...] = tuple(entries)
        self.source = source

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"SecretsFile({self.source!r}, {len(self.entries)} entries)"

    @classmethod
    def parse(cls, text: str, source: str = "<string>") -> SecretsFile:
        """Parse file contents; raises :class:`SecretsError` naming ``source`` and the line."""
        return cls(
            (_entry(line, fields, source) for line, fields in _tokenize(text, source)), source
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SecretsFile:
        """Read and parse ``path``. Unreadable or malformed files raise :class:`SecretsError`
        with a one-line message. A file that group or others may read is loaded with a
        warning, as pppd gives: it holds cleartext passwords."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                raw = f.read()
        except OSError as exc:
            raise SecretsError(f"{source}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            raise SecretsError(f"{source}: not a regular file")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            _log.warning(
                "secrets file %s is accessible to group or others (mode %03o)",
                source,
                stat.S_IMODE(mode),
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise SecretsError(f"{source}:{line}: not valid UTF-8") from None
        return cls.parse(text, source)

    def lookup(self, client: str, server: str | None = None) -> SecretEntry | None:
        """The best entry for ``client`` talking to ``server`` (None: any server).

        An exact client name beats ``*``; then an exact server name beats ``*``; among
        equals the first in the file wins, as in pppd.
        """
        best: SecretEntry | None = None
        best_score = -1
        for entry in self.entries:
            if entry.client == client:
                score = 2
            elif entry.client == WILDCARD:
                score = 0
            else:
                continue
            if server is not None:
                if entry.server == server:
                    score += 1
                elif entry.server != WILDCARD:
                    continue
            if score > best_score:
                best, best_score = entry, score
        return best

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        """Judge ``request`` against the entry for its user name. An unknown user gets the
        same answer as a wrong password, so the reply does not reveal which names exist."""
        entry = self.lookup(request.username)
        if entry is None:
            _log.debug("%s: no entry for %r", self.source, request.username)
            return request.failure()
        result = request.verify_with(entry.secret)
        address = entry.fixed_address
        if result.ok and address is not None:
            result = dataclasses.replace(result, address=address)
        return result

    def credentials_for(self, client: str) -> Credentials | None:
        """What to answer with when a peer demands that ``client`` (our name) authenticate."""
        entry = self.lookup(client)
        return None if entry is None else Credentials(client, entry.secret)
