"""What every harness shares: the atheris entry point, a structured-input reader, the
warnings-are-bugs log guard and an independent AVP hiding function for forging inputs.

Deliberately free of pyl2tp imports (see ``fuzz/__init__.py``): pyl2tp must be imported by
each harness inside :func:`instrumented`, or atheris sees no coverage in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

HARNESSES = (
    "header",
    "avp",
    "message",
    "recv",
    "control_plane",
    "ppp_packet",
    "ppp_options",
    "ppp_fsm",
    "ppp_auth",
    "ppp_link",
)
"""Every harness, in the order the runner runs them: ``fuzz/fuzz_<name>.py``."""


def instrumented(module_name: str) -> contextlib.AbstractContextManager[Any]:
    """Instrument pyl2tp's modules for coverage when the harness runs as the fuzzer's main
    module, and do nothing when it is imported (the test suite replays corpora in-process,
    where instrumentation would only slow every other test down)."""
    if module_name != "__main__":
        return contextlib.nullcontext()
    import atheris

    hook: contextlib.AbstractContextManager[Any] = atheris.instrument_imports(
        include=["pyl2tp"])
    return hook


class Reader:
    """A cursor over the fuzzer's bytes for structure-aware harnesses.

    Reads never fail: past the end every number is 0 and every chunk empty, so any prefix
    of a valid input is itself a valid (shorter) input and the fuzzer's truncations and
    splices keep meaning something. ``seeds.py`` writes inputs with :class:`Writer`, the
    mirror image, so the corpora follow the same layout.
    """

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return (self.u8() << 8) | self.u8()

    def u32(self) -> int:
        return (self.u16() << 16) | self.u16()

    def flag(self) -> bool:
        return bool(self.u8() & 1)

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def chunk(self) -> bytes:
        """A chunk with a 16-bit length prefix (cut short by the end of the input)."""
        return self.take(self.u16())

    def small_chunk(self) -> bytes:
        """A chunk with an 8-bit length prefix."""
        return self.take(self.u8())

    def pick(self, options: Sequence[T]) -> T:
        return options[self.u8() % len(options)]

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


class Writer:
    """Builds an input for :class:`Reader` (used by ``seeds.py`` and the tests)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u8(self, value: int) -> Writer:
        self.parts.append(bytes((value & 0xFF,)))
        return self

    def u16(self, value: int) -> Writer:
        self.parts.append(struct.pack(">H", value & 0xFFFF))
        return self

    def u32(self, value: int) -> Writer:
        self.parts.append(struct.pack(">I", value & 0xFFFFFFFF))
        return self

    def raw(self, data: bytes) -> Writer:
        self.parts.append(bytes(data))
        return self

    def chunk(self, data: bytes) -> Writer:
        return self.u16(len(data)).raw(data[:0xFFFF])

    def small_chunk(self, data: bytes) -> Writer:
        return self.u8(len(data)).raw(data[:0xFF])

    def bytes(self) -> bytes:
        return b"".join(self.parts)


# ---------------------------------------------------------------------------------------------
# Warnings are bugs


class _Recorder(logging.Handler):
    """Keeps every WARNING or worse that pyl2tp logs while an input runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_recorder = _Recorder()


def guard_logging() -> None:
    """Route pyl2tp's warnings to the recorder instead of stderr.

    The receive paths log a warning only where their authors wrote "this is a bug" (the PPP
    link's events that do not settle, a control message we built that cannot be encoded), so
    a harness treats any warning as a finding. Debug and info records are dropped unformatted:
    the per-packet debug logging would otherwise dominate the cost of every input.
    """
    log = logging.getLogger("pyl2tp")
    if _recorder not in log.handlers:
        log.addHandler(_recorder)
        log.propagate = False
    log.setLevel(logging.WARNING)


def check_warnings() -> None:
    """Raise if pyl2tp logged a warning since the last call."""
    if _recorder.records:
        records, _recorder.records = _recorder.records, []
        text = "; ".join(f"{r.name}: {r.getMessage()}" for r in records)
        raise AssertionError(f"pyl2tp logged a warning on hostile input: {text}")


def entry(func: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """Wrap a harness body: the log guard is installed and every warning fails the input."""

    def test_one_input(data: bytes) -> None:
        guard_logging()
        _recorder.records.clear()
        func(data)
        check_warnings()

    test_one_input.__name__ = func.__name__
    test_one_input.__doc__ = func.__doc__
    return test_one_input


def main(test_one_input: Callable[[bytes], None], argv: list[str] | None = None) -> None:
    """libFuzzer's command line (``-runs=N``, corpus directories, a crash file to replay)."""
    import atheris

    guard_logging()
    atheris.Setup(sys.argv if argv is None else argv, test_one_input)
    atheris.Fuzz()


class KnownIssue:
    """A crash already reported in a file the fuzzing campaign may not change.

    libFuzzer stops at the first crash, so one unfixed bug would hide every bug behind it.
    A harness lists the signatures of those it knows (the exception type and the function it
    escapes from, or any function of a file, and optionally a check of the harness's state)
    and carries on when one of them fires, counting it; ``FUZZ_STRICT=1`` in the environment
    turns the list off, so that each of them still reproduces on demand.
    """

    def __init__(self, name: str, exc_type: type[BaseException], path: str,
                 function: str | None, text: str = "",
                 when: Callable[[], bool] | None = None) -> None:
        self.name = name
        self.exc_type = exc_type
        self.path = path
        self.function = function
        self.text = text
        self.when = when
        """A check of the harness's state that pins the issue down further (its cause is
        visible there), so that the signature does not hide other bugs of the same type."""
        self.hits = 0

    def matches(self, exc: BaseException) -> bool:
        if not isinstance(exc, self.exc_type) or self.text not in str(exc):
            return False
        if self.when is not None and not self.when():
            return False
        tb = exc.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename.endswith(self.path) and self.function in (None, code.co_name):
                return True
            tb = tb.tb_next
        return False


@contextlib.contextmanager
def tolerating(known: Sequence[KnownIssue]) -> Iterator[None]:
    """Swallow the known, reported issues (unless ``FUZZ_STRICT`` is set); anything else
    escapes and is a crash."""
    try:
        yield
    except Exception as exc:
        if os.environ.get("FUZZ_STRICT"):
            raise
        for issue in known:
            if issue.matches(exc):
                issue.hits += 1
                if issue.hits == 1:  # once per process, so the log shows it without flooding
                    print(f"KNOWN ISSUE {issue.name}: {type(exc).__name__}: {exc} (tolerated; "
                          "FUZZ_STRICT=1 to stop on it)", file=sys.stderr, flush=True)
                return
        raise


@contextlib.contextmanager
def allowed(*exceptions: type[BaseException]) -> Iterator[None]:
    """The documented exceptions of a pure decoder: swallowed, anything else escapes and is a
    crash. Spelled out at each call so the contract is visible in the harness."""
    try:
        yield
    except exceptions:
        pass


# ---------------------------------------------------------------------------------------------
# Forging hidden AVPs


def hide_raw(attr_type: int, plain: bytes, key: bytes, rv: bytes) -> bytes:
    """RFC 2661 §4.3 hiding of an already formatted hidden subformat (length field included).

    Written here from the RFC rather than taken from pyl2tp, so that it doubles as an
    independent check of the decoder's MD5 chain: the harness encrypts whatever length the
    fuzzer wrote, and the decoder must then see exactly that length, lying or not.
    """
    out = bytearray()
    previous = struct.pack(">H", attr_type) + key + rv
    for i in range(0, len(plain), 16):
        pad = hashlib.md5(previous).digest()
        block = bytes(p ^ k for p, k in zip(plain[i : i + 16], pad, strict=False))
        out += block
        previous = key + block
    return bytes(out)


def prehide_avps(body: bytes, key: bytes, version: int) -> bytes:
    """Encrypt the value of every AVP with the H bit in ``body`` (an AVP list) as if its
    plaintext were the value as written, using the most recent Random Vector before it.

    This lets the fuzzer write hidden subformats in clear, with whatever Length field it
    likes; without it, a lying decrypted length could only come from guessing MD5 output.
    The Random Vector in force is tracked as the decoder does (one that is skipped, hidden
    ones included, does not count). Stops at the first AVP
    whose header does not fit, leaving the rest as it is.
    """
    out = bytearray(body)
    rv: bytes | None = None
    ptr = 0
    while len(body) - ptr >= 6:
        word, vendor, attr = struct.unpack_from(">HHH", body, ptr)
        length = word & 0x3FF
        if length < 6 or ptr + length > len(body):
            break
        value = body[ptr + 6 : ptr + length]
        ptr += length
        if version == 2 and word & 0x3C00:
            continue  # reserved bits: skipped by the decoder, never a Random Vector
        if word & 0x4000:
            if rv is None or len(value) < 2 or (vendor == 0 and attr == 36):
                continue  # undecryptable, or a hidden Random Vector (refused by the decoder)
            out[ptr - length + 6 : ptr] = hide_raw(attr, value, key, rv)
            size = (value[0] << 8) | value[1]
            if size > len(value) - 2:
                continue
            value = value[2 : 2 + size]
        if vendor == 0 and attr == 36:
            rv = value
    return bytes(out)
