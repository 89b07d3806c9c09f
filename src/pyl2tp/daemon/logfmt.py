"""Log formats for the daemon: the classic text line, JSON lines, and logfmt-style key=value.

Why: an operator running one daemon reads text; a site running hundreds ships the journal to
a log store, where a line that must be parsed with a regular expression per message is a
liability. JSON and key=value carry the same fields under fixed names, and the ids that make a
line findable (``tunnel_id``, ``session_id``, ``peer``) become fields of their own when the
log call passes them with ``extra=``, instead of being buried in the message text.

Nothing here runs per packet: the data path does not log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

FORMATS = ("text", "json", "kv")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Record attributes that log calls may set with ``extra=`` and that the structured formats
# emit as fields, in this order. Anything else passed in ``extra`` is ignored, so a caller
# cannot accidentally turn a log line into an unbounded dump of its locals.
EXTRA_FIELDS = ("tunnel_id", "session_id", "peer_tunnel_id", "peer_session_id", "peer",
                "event", "reason", "ifname")


def _timestamp(created: float) -> str:
    """RFC 3339 in UTC with milliseconds: sortable as text and unambiguous across hosts."""
    whole = int(created)
    millis = int((created - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


class StructuredFormatter(logging.Formatter):
    """Base of the JSON and key=value formatters: the record as an ordered list of fields."""

    def fields(self, record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
        yield "time", _timestamp(record.created)
        yield "level", record.levelname.lower()
        yield "logger", record.name
        yield "message", record.getMessage()
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                yield name, _plain(value)
        if record.exc_info:
            yield "exception", self.formatException(record.exc_info)
        elif record.exc_text:
            yield "exception", record.exc_text
        if record.stack_info:
            yield "stack", self.formatStack(record.stack_info)


def _plain(value: Any) -> Any:
    """Values JSON can carry as they are; everything else (a peer tuple, an enum) as text."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        host, port = value
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(value)


class JsonFormatter(StructuredFormatter):
    """One JSON object per line (newlines inside values are escaped by JSON itself)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(dict(self.fields(record)), ensure_ascii=False, default=str)


class KeyValueFormatter(StructuredFormatter):
    """``key=value`` pairs separated by spaces (logfmt), quoting values that need it.

    The message field is called ``msg`` here, as logfmt tools (Loki, Heroku, Grafana) expect.
    """

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in self.fields(record):
            parts.append(f"{'msg' if key == 'message' else key}={kv_quote(value)}")
        return " ".join(parts)


def kv_quote(value: Any) -> str:
    """A logfmt value: bare when it has no space, quote, equals sign or control character;
    otherwise a double-quoted string with backslash escapes (so one record stays one line)."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def parse_kv(line: str) -> dict[str, str]:
    """Parse one key=value line back into a dict (for tests and for scripts reading the log);
    the inverse of :class:`KeyValueFormatter` for the escapes it produces."""
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        eq = line.index("=", i)
        key = line[i:eq]
        i = eq + 1
        if i < n and line[i] == '"':
            i += 1
            buf = []
            while line[i] != '"':
                c = line[i]
                if c == "\\":
                    nxt = line[i + 1]
                    if nxt == "u":
                        buf.append(chr(int(line[i + 2:i + 6], 16)))
                        i += 6
                        continue
                    buf.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
                    i += 2
                    continue
                buf.append(c)
                i += 1
            i += 1
            out[key] = "".join(buf)
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            out[key] = line[i:end]
            i = end
    return out


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``--log-format``; ValueError for an unknown name."""
    if fmt == "text":
        return logging.Formatter(TEXT_FORMAT)
    if fmt == "json":
        return JsonFormatter()
    if fmt == "kv":
        return KeyValueFormatter()
    raise ValueError(f"unknown log format {fmt!r} (expected one of {', '.join(FORMATS)})")


def setup_logging(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the root logger to ``stream`` (stderr) at ``level`` in format ``fmt``, replacing
    whatever handlers were there: the daemon owns its process's logging."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


__all__ = ["EXTRA_FIELDS", "FORMATS", "JsonFormatter", "KeyValueFormatter",
           "StructuredFormatter", "kv_quote", "make_formatter", "parse_kv", "setup_logging"]
