"""Structured log formats: every line parses, carries the fixed fields, and carries the ids
that the log call passed with ``extra=`` as fields of their own."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pyl2tp.daemon.logfmt import (
    EXTRA_FIELDS,
    JsonFormatter,
    KeyValueFormatter,
    kv_quote,
    make_formatter,
    parse_kv,
    setup_logging,
)


def record(msg: str = "tunnel %d up", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("pyl2tp.control", logging.INFO, __file__, 1, msg, args or (5,),
                            None)
    rec.__dict__.update(extra)
    return rec


def test_json_has_fixed_fields_and_ids() -> None:
    line = JsonFormatter().format(record(tunnel_id=5, session_id=9, peer=("10.0.0.2", 1701),
                                         unrelated="ignored"))
    obj = json.loads(line)
    assert obj["level"] == "info" and obj["logger"] == "pyl2tp.control"
    assert obj["message"] == "tunnel 5 up"
    assert obj["tunnel_id"] == 5 and obj["session_id"] == 9
    assert obj["peer"] == "10.0.0.2:1701"
    assert obj["time"].endswith("Z") and "T" in obj["time"]
    assert "unrelated" not in obj
    assert list(obj)[:4] == ["time", "level", "logger", "message"]


def test_json_ipv6_peer_and_no_ids() -> None:
    obj = json.loads(JsonFormatter().format(record(peer=("fd00::2", 1701))))
    assert obj["peer"] == "[fd00::2]:1701"
    obj = json.loads(JsonFormatter().format(record()))
    assert not set(obj) & set(EXTRA_FIELDS)


def test_kv_round_trips_awkward_values() -> None:
    nasty = 'reason with "quotes", = signs, a \\ backslash\nand a newline\x01'
    line = KeyValueFormatter().format(record("%s", nasty, tunnel_id=7, reason=nasty))
    assert "\n" not in line
    fields = parse_kv(line)
    assert fields["msg"] == nasty and fields["reason"] == nasty
    assert fields["tunnel_id"] == "7" and fields["level"] == "info"
    assert fields["logger"] == "pyl2tp.control"


def test_kv_bare_values_stay_bare() -> None:
    assert kv_quote("established") == "established"
    assert kv_quote(True) == "true"
    assert kv_quote("") == '""'
    assert kv_quote("a b") == '"a b"'


def test_exceptions_stay_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    obj = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in obj["exception"]
    line = KeyValueFormatter().format(rec)
    assert "\n" not in line and "ValueError: boom" in parse_kv(line)["exception"]


def test_setup_logging_replaces_handlers() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("debug", "json", stream)
        logging.getLogger("pyl2tp.test").debug("hello %s", "there", extra={"session_id": 3})
        obj = json.loads(stream.getvalue().splitlines()[-1])
        assert obj["message"] == "hello there" and obj["session_id"] == 3
        assert len(root.handlers) == 1
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        make_formatter("xml")
    assert isinstance(make_formatter("text"), logging.Formatter)
