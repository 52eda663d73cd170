"""Plans as cache payloads: ``dumps`` / ``loads``, signed or not, with a stable format.

A payload is a small envelope around the pickled plan::

    offset  size  field
    0       4     magic b"QPLN"
    4       2     format version, unsigned big-endian (``qplan.plan.FORMAT_VERSION``)
    6       1     flags: bit 0 = signed; every other bit must be 0
    7       32    HMAC-SHA256(key, bytes 0..6 + body), only when signed
    7 / 39  ...   body: the pickle of the plan (protocol 4)

With a key (``key=`` or ``qplan.configure(signing_key=...)``; str keys are taken as
UTF-8) ``dumps`` signs and ``loads`` checks the MAC before anything is unpickled,
refusing unsigned and tampered payloads. Without a key, ``loads`` also takes an
unsigned envelope or a bare pickle (``pickle.dumps(plan)``, any protocol).

The body is unpickled with an allow-list (``ALLOWED``): qplan's restore marker and
the plain value types a plan may hold, each an immutable object. Any other global
(``os.system``, ``builtins.eval``...) raises ``UnsafePayload`` before it is looked up.
Before that, an unsigned body's opcodes are walked (``scan_pickle``) exactly as the
unpickler will execute them, frames included: only the opcodes plans use
(``NEEDED_OPCODES``; no BUILD, lists, dicts...), memo indices no larger than the
opcodes before them. After it, the records are measured as expanded, each shared
tuple once (``check_tree``): at most ``MAX_VALUES`` values (what one statement can
bind), ``MAX_VALUE_BYTES`` of text, ``MAX_STRUCTURE`` commands and conditions,
``MAX_NODES`` elements, ``MAX_DEPTH`` levels. They are then migrated from their format
version through ``LOADERS``, rebuilt through the API (``qplan.replay``: every field,
lookup, alias and value checked as when building in code) and compiled for SQLite
(no connection). Every failure, of any kind, surfaces as ``UnsafePayload``.
"""

from __future__ import annotations

import collections
import datetime as _dt
import decimal
import io
import pickle
import pickletools
import struct
import threading
from typing import Any, NamedTuple

from . import records as R
from . import signing
from .signing import MAC_SIZE, KeyArg, signing_keys
from .errors import (ConfigurationError, NotSupportedError, PlanError, RoutingError, UnsafePayload,
                     suggest)
from .models import get_model, registered_models
from .plan import FORMAT_VERSION, MIGRATIONS, TERMINAL, Plan
from .replay import replay

PROTOCOL = 4

MAGIC = b"QPLN"
HEADER = struct.Struct(">4sHB")  # magic, format version, flags
FLAG_SIGNED = 0x01
KNOWN_FLAGS = FLAG_SIGNED

# Bounds on what a payload may hold, counted on the EXPANDED plan: a pickle can share one
# tuple many times (a DAG), so a few bytes could otherwise stand for a tree of 2**60 nodes
# or an `in` list of millions of values. ``check_tree`` measures each distinct tuple once
# (memoised by identity), so refusing costs O(distinct objects), never O(expanded).
#
# Values: no backend binds more than 65,535 parameters in one statement (PostgreSQL's
# and MySQL's protocol limit; SQLite's is 32,766), so a plan with more values can never
# run. Every value counts each time it is referenced, `in` lists item by item.
MAX_VALUES = 65_535
# The text and bytes of those values, expanded: MySQL's default max_allowed_packet (64 MiB)
# is the largest statement every backend takes with default settings.
MAX_VALUE_BYTES = 64 * 1024 * 1024
# Commands, conditions, expressions and insert rows (tuples outside value nodes): what
# compiling costs grows with these, about 0.1 ms each, not with the values; 5,000 keeps
# loading any payload (compiled once per shape) well under a second.
MAX_STRUCTURE = 5_000
# Every element of every tuple: each value costs at most 4 (its value node, its row) and
# each structure tuple a few names, so a runnable plan stays far below this.
MAX_NODES = 4 * MAX_VALUES + 20 * MAX_STRUCTURE
MAX_DEPTH = 200



# --- the allow-list -------------------------------------------------------------------------------


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


# --- dumping --------------------------------------------------------------------------------------


def dumps(plan: Plan, key: KeyArg = None) -> bytes:
    """The plan as a payload: signed with ``key`` (or the configured key), else unsigned."""
    if not isinstance(plan, Plan):
        raise TypeError(f"dumps() takes a Plan, got {type(plan).__name__}")
    keys = signing_keys(key)
    body = pickle.dumps(plan, protocol=PROTOCOL)
    if keys is None:
        return HEADER.pack(MAGIC, FORMAT_VERSION, 0) + body
    header = HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED)
    return header + signing.mac(keys[0], header + body) + body


# --- opening an envelope --------------------------------------------------------------------------


class Opened(NamedTuple):
    """What the envelope says, before and after checking it."""

    container: str          # "envelope" or "pickle" (a bare pickle)
    version: int | None     # the envelope's format version (None for a bare pickle)
    signed: bool
    verified: bool | None   # True: MAC matches; False: it does not; None: not checked
    body: memoryview


def _bytes(data: Any) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UnsafePayload(f"a payload is bytes, got {type(data).__name__}")
    view = memoryview(data)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def check_version(version: Any, where: str = "payload") -> int:
    """``version`` if this qplan can read it; else ``UnsafePayload`` naming both versions."""
    if type(version) is not int:
        raise UnsafePayload(f"{where} has no valid format version ({version!r})")
    if version > FORMAT_VERSION:
        raise UnsafePayload(
            f"{where} has plan format version {version}, newer than this qplan reads "
            f"(format version {FORMAT_VERSION}): upgrade qplan to load it"
        )
    if version not in LOADERS:
        known = ", ".join(str(v) for v in sorted(LOADERS))
        raise UnsafePayload(
            f"{where} has unknown plan format version {version} "
            f"(this qplan reads format versions {known}; current is {FORMAT_VERSION})"
        )
    return version


def open_envelope(data: Any, keys: tuple[bytes, ...] | None, strict: bool = True) -> Opened:
    """Parse the envelope and check its MAC against ``keys``; nothing is unpickled here.

    ``strict`` (what ``loads`` does) refuses a payload whose signature state does not
    match the keys; ``strict=False`` (``qplan inspect``) reports it in ``verified``.
    """
    view = _bytes(data)
    if view[:4] != MAGIC:
        if view[:1] == b"{":
            raise UnsafePayload("payload is JSON, not a pickle: load it with qplan.from_json()")
        if strict and keys is not None:
            raise UnsafePayload(
                "payload is a bare pickle without a signature, but a signing key is set: refused")
        return Opened("pickle", None, False, None, view)
    if len(view) < HEADER.size:
        raise UnsafePayload("payload is truncated: its header is incomplete")
    _, version, flags = HEADER.unpack_from(view)
    check_version(version)
    if flags & ~KNOWN_FLAGS:
        raise UnsafePayload(f"payload has unknown flags 0x{flags:02x} (written by a newer qplan?)")
    header = bytes(view[:HEADER.size])
    if not flags & FLAG_SIGNED:
        if strict and keys is not None:
            raise UnsafePayload("payload is not signed, but a signing key is set: refused")
        return Opened("envelope", version, False, None, view[HEADER.size:])
    if len(view) < HEADER.size + MAC_SIZE:
        raise UnsafePayload("payload is truncated: its signature is incomplete")
    mac = bytes(view[HEADER.size:HEADER.size + MAC_SIZE])
    body = view[HEADER.size + MAC_SIZE:]
    if keys is None:
        if strict:
            raise UnsafePayload(
                "payload is signed but no signing key was given: "
                "pass key=... or qplan.configure(signing_key=...)")
        return Opened("envelope", version, True, None, body)
    verified = signing.matches(keys, mac, header + body)
    if strict and not verified:
        raise UnsafePayload(
            "payload signature does not match: it was changed or signed with another key")
    return Opened("envelope", version, True, verified, body)


# --- the body -------------------------------------------------------------------------------------


class Decoded(NamedTuple):
    """A plan payload's content, checked for plain values but not yet against its model."""

    version: int
    model_key: str
    records: tuple
    alias: str | None


def unpickle(body: bytes | memoryview, envelope_version: int | None = None,
             trusted: bool = False) -> Decoded:
    """Run the restricted unpickler over ``body``; the plan's raw parts, checked for shape.

    ``trusted``: the body's MAC was verified, so a key holder wrote it with ``dumps``
    and the opcode walk (``scan_pickle``) is skipped.
    """
    body = bytes(body)
    if not trusted:
        scan_pickle(body)
    stream = io.BytesIO(body)
    obj = RestrictedUnpickler(stream).load()
    if stream.tell() != len(body):
        raise UnsafePayload("payload has trailing bytes after its pickle")
    if type(obj) is not _Pending:
        raise UnsafePayload(f"payload holds a {type(obj).__name__}, not a qplan plan")
    if len(obj) != 4:
        raise UnsafePayload(f"payload's plan has {len(obj)} parts, expected 4")
    version, key, records, alias = obj
    check_version(version, "payload's plan")
    if envelope_version is not None and version != envelope_version:
        raise UnsafePayload(
            f"payload envelope says format version {envelope_version} "
            f"but its plan says {version}")
    return decoded(version, key, records, alias)


def decoded(version: int, key: Any, records: Any, alias: Any) -> Decoded:
    """Check the raw parts of a plan (any container): types, bounds, command order."""
    if type(key) is not str or not key:
        raise UnsafePayload(f"payload names its model with {type(key).__name__} {key!r}, not a str")
    if alias is not None and type(alias) is not str:
        raise UnsafePayload(f"payload names its alias with {type(alias).__name__}, not a str")
    if type(records) is not tuple:
        raise UnsafePayload(f"payload's records are a {type(records).__name__}, not a tuple")
    check_tree(records)
    last = len(records) - 1
    for i, record in enumerate(records):
        if type(record) is not tuple or not record or type(record[0]) is not str:
            raise UnsafePayload(f"payload's record {i} is not a command tuple: {record!r:.80}")
        if record[0] in TERMINAL and i != last:
            raise UnsafePayload(f"payload's plan has {record[0]}() before its last command")
    return Decoded(version, key, records, alias)


class Size(NamedTuple):
    """What a (sub)tree of records costs once expanded; see the budgets at the top."""

    height: int
    nodes: int
    structure: int
    values: int
    value_bytes: int


def check_tree(records: tuple) -> Size:
    """Tuples of plain values only, within every budget (``MAX_VALUES``, ``MAX_NODES``...).

    The budgets count the plan as expanded (a tuple shared many times counts each
    time), but each distinct tuple is measured once: the cost is O(distinct objects).
    """
    return Size(*_measure(records, False, 0, {}))


_SIMPLE = PLAIN - {_dt.datetime, _dt.time, decimal.Decimal}
_TIMED = (_dt.datetime, _dt.time)
_SIZED = (str, bytes)


def _measure(node: tuple, in_value: bool, depth: int, memo: dict) -> tuple[int, int, int, int, int]:
    """``Size`` of ``node`` as a plain tuple, from ``memo`` (keyed by identity) when known."""
    key = (id(node), in_value)
    size = memo.get(key)
    if size is None:
        if depth >= MAX_DEPTH:
            raise UnsafePayload(f"payload's plan is nested more than {MAX_DEPTH} deep")
        size = memo[key] = _size(node, in_value, depth, memo)
    elif depth + size[0] > MAX_DEPTH:
        raise UnsafePayload(f"payload's plan is nested more than {MAX_DEPTH} deep")
    return size


def _size(node: tuple, in_value: bool, depth: int, memo: dict) -> tuple[int, int, int, int, int]:
    # a value node ("=", v): v counts as one value; in a value, every scalar does
    value_node = not in_value and len(node) == 2 and node[0] == R.VALUE
    inner = in_value or value_node
    height, nodes, values, value_bytes = 1, len(node) + 1, 0, 0
    structure = 0 if inner else 1
    depth += 1
    for child in node:
        kind = type(child)
        if kind is tuple:
            sub = _measure(child, inner, depth, memo)
            if sub[0] >= height:
                height = sub[0] + 1
            nodes += sub[1]
            structure += sub[2]
            values += sub[3]
            value_bytes += sub[4]
            continue
        if kind not in _SIMPLE:
            _check_scalar(child, kind)
        if in_value:
            values += 1
            if kind in _SIZED:
                value_bytes += len(child)
    if value_node and type(node[1]) is not tuple:
        values += 1
        if type(node[1]) in _SIZED:
            value_bytes += len(node[1])
    if nodes > MAX_NODES:
        raise UnsafePayload(f"payload's plan holds more than {MAX_NODES} values and names, "
                            f"counting each shared part every time it is used")
    if structure > MAX_STRUCTURE:
        raise UnsafePayload(f"payload's plan has more than {MAX_STRUCTURE} commands, "
                            f"conditions and expressions")
    if values > MAX_VALUES:
        raise UnsafePayload(f"payload's plan binds more than {MAX_VALUES} values (counting each "
                            f"shared value every time it is used): no database runs that")
    if value_bytes > MAX_VALUE_BYTES:
        raise UnsafePayload(f"payload's plan binds more than {MAX_VALUE_BYTES} bytes of text "
                            f"and bytes values (counting each shared value every time)")
    return height, nodes, structure, values, value_bytes


def _check_scalar(child: Any, kind: type) -> None:
    if kind is decimal.Decimal:
        if child.is_snan():  # cannot be hashed or compared: plans never hold one
            raise UnsafePayload("payload's plan holds a signaling NaN")
    elif kind in _TIMED:
        tz = child.tzinfo
        if tz is not None and type(tz) is not _dt.timezone:
            raise UnsafePayload(f"payload holds a time zone of type {type(tz).__name__}")
    else:
        raise UnsafePayload(f"payload's plan holds a {kind.__name__}, which plans never hold")


# --- format versions ------------------------------------------------------------------------------


# One function per format version a release ever wrote, kept in qplan.plan so that
# plain pickle.loads migrates old plans too; tests/golden/ holds a payload of every version.
LOADERS = MIGRATIONS


def build(parts: Decoded, validate: bool = True) -> Plan:
    """The ``Plan`` for checked parts: migrated, its model found, rebuilt and compiled.

    ``validate`` rebuilds the plan from its records through the API (``qplan.replay``),
    so it passes every check a plan built in code passes, values included, then
    compiles it for SQLite (no connection; a cache hit after the first time) to catch
    what only the compiler refuses. The dialects compile the same records alike.
    """
    key, records, alias = LOADERS[parts.version](parts.model_key, parts.records, parts.alias)
    try:
        model = get_model(key)
    except ConfigurationError:
        raise UnsafePayload(
            f"payload's plan is on model {key!r}, which is not registered in this process: "
            f"import the module that defines it before loading (qplan never imports modules "
            f"a payload names)" + suggest(key, _registered_keys())
        ) from None
    if not validate:
        return Plan(model, records, alias)
    try:
        plan = replay(model, records, alias)
        try:
            plan.compile("sqlite")
        except NotSupportedError:
            pass  # well formed; running it raises the same error on every database
    except (PlanError, RoutingError) as exc:  # FieldError included: a field renamed or removed
        raise UnsafePayload(f"payload's plan no longer matches model {key!r}: {exc}") from exc
    return plan


def _registered_keys() -> list[str]:
    return [m._meta.key for m in registered_models()]


# --- loading --------------------------------------------------------------------------------------


class LoadedPlans:
    """Plans already loaded, by the exact payload (bytes or text) and the keys that checked it.

    A cache hands the same few payloads to every request; loading one again returns the
    plan checked the first time (plans are immutable), in a dictionary lookup instead of
    the opcode scan, budget walk and replay. Exact bytes, not equal values: ``1`` and
    ``True`` compare equal but are different payloads. Bounded: small payloads only,
    least recently used first out; a plan whose model was registered anew is checked again.
    """

    MAX_ENTRIES = 256
    MAX_PAYLOAD = 4096  # bytes or characters; larger payloads are always checked afresh

    def __init__(self) -> None:
        self._data: collections.OrderedDict[Any, Plan] = collections.OrderedDict()
        self._lock = threading.Lock()

    def key(self, data: Any, keys: tuple[bytes, ...] | None) -> Any:
        if type(data) not in (bytes, str) or len(data) > self.MAX_PAYLOAD:
            return None
        return (data, keys)

    def get(self, key: Any) -> Plan | None:
        plan = self._data.get(key) if key is not None else None
        if plan is None or _registered(plan._key) is not plan.model:
            return None
        return plan

    def put(self, key: Any, plan: Plan) -> Plan:
        if key is not None:
            with self._lock:
                self._data[key] = plan
                while len(self._data) > self.MAX_ENTRIES:
                    self._data.popitem(last=False)
        return plan

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def _registered(key: str) -> Any:
    try:
        return get_model(key)
    except ConfigurationError:
        return None


loaded = LoadedPlans()


def loads(data: bytes, key: KeyArg = None) -> Plan:
    """Load a payload written by ``dumps`` (or ``pickle.dumps(plan)``); else ``UnsafePayload``.

    With a key (``key=`` or the configured one) only payloads signed with it load,
    and the signature is checked before anything is unpickled.
    """
    keys = signing_keys(key)
    memo = loaded.key(data, keys)
    plan = loaded.get(memo)
    if plan is not None:
        return plan
    try:
        opened = open_envelope(data, keys)
        plan = build(unpickle(opened.body, opened.version, trusted=bool(opened.verified)))
        return loaded.put(memo, plan)
    except UnsafePayload:
        raise
    except Exception as exc:  # truncated, corrupt or foreign data, a field gone...
        raise UnsafePayload(f"not a loadable plan payload: {type(exc).__name__}: {exc}"[:500]) from exc


__all__ = ["ALLOWED", "LOADERS", "MAGIC", "RestrictedUnpickler", "dumps", "loads",
           "open_envelope", "signing_keys", "unpickle"]
