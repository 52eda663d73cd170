"""The restricted unpickler of plan payloads, and the opcode scan that runs before it.

The allow-list (``ALLOWED``) names qplan's restore marker and the plain value types a
plan may hold; every entry is immutable, so no payload can alter it. ``scan_pickle``
walks an unsigned pickle's opcodes exactly as CPython's unpickler will run them,
frames included, and refuses anything a plan pickle never needs.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import pickle
import pickletools
from typing import Any

from .errors import UnsafePayload


class _Pending(tuple):
    """The arguments a payload gave ``qplan.plan._restore``: checked before a Plan is made."""

    __slots__ = ()


class _Restorer:
    """Stands in for ``qplan.plan._restore`` while unpickling; has no state pickle could alter."""

    __slots__ = ()

    def __call__(self, *args: Any) -> _Pending:
        return _Pending(args)


class _Latin1:
    """``_codecs.encode`` as pickle protocols 0-2 use it for bytes: latin-1 text only."""

    __slots__ = ()

    def __call__(self, text: Any, encoding: Any = "latin1") -> bytes:
        if type(text) is not str or encoding not in ("latin1", "latin-1"):
            raise UnsafePayload("payload calls _codecs.encode other than for bytes")
        return text.encode("latin1")


class _EmptyBytes:
    """``bytes`` as pickle protocols 0-2 call it for ``b""``: no arguments, nothing else.

    ``bytes`` itself is not allowed: ``bytes(10**10)`` would allocate 10 GB.
    """

    __slots__ = ()

    def __call__(self, *args: Any) -> bytes:
        if args:
            raise UnsafePayload("payload calls bytes() with arguments; plans only pickle b'' so")
        return b""


# (module, name) -> the object it loads as; nothing else can be named by a payload. Each
# is immutable (a builtin type, or an instance of a class with empty __slots__), so not
# even a signed payload, whose opcodes are not scanned, can alter one through BUILD.
ALLOWED: dict[tuple[str, str], Any] = {
    ("qplan.plan", "_restore"): _Restorer(),
    ("decimal", "Decimal"): decimal.Decimal,
    ("datetime", "datetime"): _dt.datetime,
    ("datetime", "date"): _dt.date,
    ("datetime", "time"): _dt.time,
    ("datetime", "timedelta"): _dt.timedelta,
    ("datetime", "timezone"): _dt.timezone,
    ("_codecs", "encode"): _Latin1(),
    ("__builtin__", "bytes"): _EmptyBytes(),  # protocols 0-2 name builtins as __builtin__
    ("builtins", "bytes"): _EmptyBytes(),     # ... unless pickled with fix_imports=False
}

# Exact types a record may hold (timedelta only ever builds a timezone).
PLAIN = frozenset({str, int, float, bool, type(None), bytes, decimal.Decimal,
                   _dt.datetime, _dt.date, _dt.time})


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``ALLOWED``."""

    def find_class(self, module: str, name: str) -> Any:
        obj = ALLOWED.get((module, name))
        if obj is None:
            raise UnsafePayload(f"payload refers to {module}.{name}, which is not allowed in a plan")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePayload("payload uses persistent ids, which plans never do")


# --- a pre-check of the pickle's opcodes ----------------------------------------------------------


# The opcodes a plan's pickle uses, in any protocol 0-5 (tests/security checks every golden
# file and every protocol): tuples, the plain scalars, globals and REDUCE for the allowed
# callables, the memo, frames. Everything else (BUILD, INST, OBJ, NEWOBJ, EXT*, lists,
# dicts, sets and their mutators, persistent ids, out-of-band buffers...) is refused.
NEEDED_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "GLOBAL", "STACK_GLOBAL", "REDUCE",
    "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4",
    "FLOAT", "BINFLOAT", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
    "SHORT_BINBYTES", "BINBYTES",
})

_LINE, _LINE2, _LEN1, _LEN4, _LEN8, _BAD = -1, -2, -3, -4, -5, -9


def _opcode_table() -> tuple[int, ...]:
    """Per opcode byte: the size of its fixed argument (>= 0), or how to read it (< 0)."""
    table = [_BAD] * 256
    for op in pickletools.opcodes:
        if op.name not in NEEDED_OPCODES:
            continue
        n = 0 if op.arg is None else op.arg.n
        if n >= 0:
            code = n
        elif n == pickletools.UP_TO_NEWLINE:
            code = _LINE2 if op.name == "GLOBAL" else _LINE
        elif n == pickletools.TAKEN_FROM_ARGUMENT1:
            code = _LEN1
        elif n in (pickletools.TAKEN_FROM_ARGUMENT4, pickletools.TAKEN_FROM_ARGUMENT4U):
            code = _LEN4
        else:
            code = _LEN8
        table[ord(op.code)] = code
    return tuple(table)


_OPCODES = _opcode_table()
_NAMES = {ord(op.code): op.name for op in pickletools.opcodes}
_PUTS = {ord(pickle.BINPUT): 1, ord(pickle.LONG_BINPUT): 4}
_PUT, _FRAME, _STOP = ord(pickle.PUT), ord(pickle.FRAME), ord(pickle.STOP)


def scan_pickle(body: bytes) -> None:
    """Walk the opcodes before unpickling, seeing exactly what the unpickler will execute.

    One pickle, no trailing bytes, only ``NEEDED_OPCODES``. Frames: CPython's C
    unpickler drops the rest of a FRAME when an opcode or its argument runs past the
    frame's end and reads on after it, so such an opcode, a FRAME inside a frame and
    a FRAME longer than what follows are refused; the walk and the unpickler then
    agree byte for byte. Memo indices: the unpickler sizes its memo by the largest
    index a PUT names, so an index must not exceed the number of opcodes before it
    (each object takes at least one). Lengths are unsigned: the walk only moves forward.
    """
    n = len(body)
    i = count = frame_end = 0
    table, from_bytes = _OPCODES, int.from_bytes
    while i < n:
        if i == frame_end:
            frame_end = 0  # left the frame
        limit = frame_end or n
        start = i
        op = body[i]
        code = table[op]
        i += 1
        if code >= 0:
            i += code
        elif code == _LEN1:
            i += 1 + (body[i] if i < limit else 0)
        elif code == _LEN4:
            i += 4 + (from_bytes(body[i:i + 4], "little") if i + 4 <= limit else 0)
        elif code == _LEN8:
            i += 8 + (from_bytes(body[i:i + 8], "little") if i + 8 <= limit else 0)
        elif code == _BAD:
            name = _NAMES.get(op)
            raise UnsafePayload(
                f"payload's pickle has opcode {name or f'0x{op:02x}'} at byte {start}, "
                f"which plan pickles never use" if name else
                f"payload's pickle has an unknown opcode 0x{op:02x} at byte {start}")
        else:
            end = body.find(b"\n", i, limit)
            if end >= 0 and code == _LINE2:
                end = body.find(b"\n", end + 1, limit)
            i = (end + 1) if end >= 0 else limit + 1
        if i > limit:
            if frame_end:
                raise UnsafePayload(f"payload's pickle has an opcode at byte {start} that runs past "
                                    f"the end of its frame (byte {frame_end})")
            raise UnsafePayload("payload is truncated: its pickle does not end")
        if op == _FRAME:
            if frame_end:
                raise UnsafePayload(f"payload's pickle starts a frame inside a frame at byte {start}")
            frame_end = i + from_bytes(body[start + 1:i], "little")
            if frame_end > n:
                raise UnsafePayload(f"payload's pickle has a frame at byte {start} longer than "
                                    f"the bytes that follow it")
            if frame_end == i:
                frame_end = 0
        elif op in _PUTS or op == _PUT:
            arg = body[start + 1:i]
            if op == _PUT:
                arg = arg[:-1]
                index = int(arg) if arg.isdigit() and len(arg) <= 12 else count + 1
            else:
                index = from_bytes(arg, "little")
            if index > count:
                raise UnsafePayload(f"payload's pickle names memo index {index} at byte {start}, "
                                    f"beyond the {count} opcodes before it")
        elif op == _STOP:
            if i != n:
                raise UnsafePayload("payload has trailing bytes after its pickle")
            return
        count += 1
    raise UnsafePayload("payload is truncated: its pickle does not end")
