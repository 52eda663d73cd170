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
the plain value types a plan may hold. Any other global (``os.system``,
``builtins.eval``...) raises ``UnsafePayload`` before it is looked up, and nothing
in the allow-list can be mutated through pickle's BUILD, so loading never runs or
alters foreign code. The records are then checked (plain values only, bounded
size and depth), migrated from their format version through ``LOADERS``, and the
plan is compiled for SQLite (no connection) so a field that no longer exists is
reported by name. Every failure, of any kind, surfaces as ``UnsafePayload``.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import hmac
import io
import pickle
import pickletools
import struct
from typing import Any, NamedTuple, Sequence, Union

from . import records as R
from . import settings
from .errors import ConfigurationError, NotSupportedError, PlanError, UnsafePayload, suggest
from .models import get_model
from .plan import FORMAT_VERSION, MIGRATIONS, TERMINAL, Plan

PROTOCOL = 4

MAGIC = b"QPLN"
HEADER = struct.Struct(">4sHB")  # magic, format version, flags
FLAG_SIGNED = 0x01
KNOWN_FLAGS = FLAG_SIGNED
MAC_SIZE = hashlib.sha256().digest_size

# Bounds on what a payload may hold: a pickle can share one tuple many times (a
# DAG), so a few bytes could otherwise stand for a tree of 2**60 nodes.
MAX_NODES = 1_000_000
MAX_DEPTH = 200
# Commands, conditions and expressions (tuples outside value nodes): what compiling
# costs grows with these (about 1 s for 10,000 conditions), not with the values.
MAX_STRUCTURE = 10_000

Key = Union[str, bytes]
KeyArg = Union[Key, Sequence[Key], None]


# --- the allow-list -------------------------------------------------------------------------------


class _Pending(tuple):
    """The arguments a payload gave ``qplan.plan._restore``: checked before a Plan is made."""

    __slots__ = ()


class _Restorer:
    """Stands in for ``qplan.plan._restore`` while unpickling; has no state pickle could alter."""

    __slots__ = ()

    def __call__(self, *args: Any) -> _Pending:
        return _Pending(args)


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as pickle protocols 0-2 use it for bytes; latin-1 only."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise UnsafePayload("payload calls _codecs.encode other than for bytes")
    return text.encode("latin1")


# (module, name) -> the object it loads as; nothing else can be named by a payload.
ALLOWED: dict[tuple[str, str], Any] = {
    ("qplan.plan", "_restore"): _Restorer(),
    ("decimal", "Decimal"): decimal.Decimal,
    ("datetime", "datetime"): _dt.datetime,
    ("datetime", "date"): _dt.date,
    ("datetime", "time"): _dt.time,
    ("datetime", "timedelta"): _dt.timedelta,
    ("datetime", "timezone"): _dt.timezone,
    ("_codecs", "encode"): _latin1,
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


def _opcode_table() -> tuple[int, ...]:
    """Per opcode byte: the size of its fixed argument (>= 0), or how to skip it (< 0)."""
    table = [_BAD] * 256
    for op in pickletools.opcodes:
        n = 0 if op.arg is None else op.arg.n
        if n >= 0:
            code = n
        elif n == pickletools.UP_TO_NEWLINE:
            code = _LINE2 if op.name in ("GLOBAL", "INST") else _LINE
        elif n == pickletools.TAKEN_FROM_ARGUMENT1:
            code = _LEN1
        elif n in (pickletools.TAKEN_FROM_ARGUMENT4, pickletools.TAKEN_FROM_ARGUMENT4U):
            code = _LEN4
        else:
            code = _LEN8
        table[ord(op.code)] = code
    table[ord(pickle.LONG_BINPUT)] = _LONG_BINPUT
    table[ord(pickle.STOP)] = _STOP
    return tuple(table)


_LINE, _LINE2, _LEN1, _LEN4, _LEN8, _LONG_BINPUT, _STOP, _BAD = -1, -2, -3, -4, -5, -6, -7, -9
_OPCODES = _opcode_table()
_PUT = ord(pickle.PUT)


def scan_pickle(body: bytes) -> None:
    """Walk the opcodes before unpickling: one pickle, no trailing bytes, sane memo indices.

    CPython's unpickler sizes its memo by the largest index a PUT names, so ten bytes
    could otherwise make it allocate and clear gigabytes. Lengths are unsigned, so the
    walk only moves forward and ends.
    """
    n = len(body)
    i = 0
    table, from_bytes = _OPCODES, int.from_bytes
    while i < n:
        op = body[i]
        code = table[op]
        i += 1
        if code >= 0:
            i += code
        elif code == _LEN1:
            if i >= n:
                break
            i += 1 + body[i]
        elif code == _LEN4:
            i += 4 + from_bytes(body[i:i + 4], "little")
        elif code == _LONG_BINPUT:
            if from_bytes(body[i:i + 4], "little") > n:
                raise UnsafePayload("payload's pickle names a memo index beyond its size")
            i += 4
        elif code == _STOP:
            if i != n:
                raise UnsafePayload("payload has trailing bytes after its pickle")
            return
        elif code == _LEN8:
            i += 8 + from_bytes(body[i:i + 8], "little")
        elif code == _BAD:
            raise UnsafePayload(f"payload's pickle has an unknown opcode 0x{op:02x} at byte {i - 1}")
        else:
            end = body.find(b"\n", i)
            if end < 0:
                break
            if op == _PUT:
                arg = body[i:end]
                if not arg.isdigit() or len(arg) > 12 or int(arg) > n:
                    raise UnsafePayload("payload's pickle names a memo index beyond its size")
            if code == _LINE2:
                end = body.find(b"\n", end + 1)
                if end < 0:
                    break
            i = end + 1
    raise UnsafePayload("payload is truncated: its pickle does not end")


# --- keys -----------------------------------------------------------------------------------------


def signing_keys(key: KeyArg = None) -> tuple[bytes, ...] | None:
    """The keys to sign and check with: ``key``, else the configured one; None when unsigned.

    A sequence of keys supports rotation: ``dumps`` signs with the first, ``loads``
    accepts any of them.
    """
    if key is None:
        key = settings.option("signing_key")
        if key is None:
            return None
    keys = (key,) if isinstance(key, (str, bytes, bytearray)) else key
    if not isinstance(keys, (list, tuple)) or not keys:
        raise ConfigurationError(f"a signing key is str or bytes (or a list of them), got {key!r}")
    out = []
    for k in keys:
        if isinstance(k, str):
            k = k.encode("utf-8")
        if not isinstance(k, (bytes, bytearray)):
            raise ConfigurationError(f"a signing key is str or bytes, got {type(k).__name__}")
        if not k:
            raise ConfigurationError("a signing key must not be empty")
        out.append(bytes(k))
    return tuple(out)


def _mac(key: bytes, header: bytes, body: bytes | memoryview) -> bytes:
    return hmac.digest(key, header + body, "sha256")  # one call: OpenSSL's fast path


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
    return header + _mac(keys[0], header, body) + body


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
    verified = any(hmac.compare_digest(mac, _mac(k, header, body)) for k in keys)
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


def check_tree(records: tuple) -> None:
    """Tuples of plain values only, within ``MAX_NODES``, ``MAX_STRUCTURE`` and ``MAX_DEPTH``.

    The budgets count the tree as walked, so a tuple shared many times counts each time.
    """
    _walk(records, 0, False, [MAX_NODES, MAX_STRUCTURE])


_SIMPLE = PLAIN - {_dt.datetime, _dt.time, decimal.Decimal}
_TIMED = (_dt.datetime, _dt.time)


def _walk(node: tuple, depth: int, in_value: bool, budgets: list[int]) -> None:
    if depth >= MAX_DEPTH:
        raise UnsafePayload(f"payload's plan is nested more than {MAX_DEPTH} deep")
    left = budgets[0] = budgets[0] - len(node) - 1
    if left < 0:
        raise UnsafePayload(f"payload's plan holds more than {MAX_NODES} values")
    if not in_value:
        if len(node) == 2 and node[0] == R.VALUE:
            in_value = True  # a value node: what is inside is values, not structure
        else:
            budgets[1] -= 1
            if budgets[1] < 0:
                raise UnsafePayload(f"payload's plan has more than {MAX_STRUCTURE} commands, "
                                    f"conditions and expressions")
    depth += 1
    for child in node:
        kind = type(child)
        if kind is tuple:
            _walk(child, depth, in_value, budgets)
        elif kind in _SIMPLE:
            continue
        elif kind is decimal.Decimal:
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
    """The ``Plan`` for checked parts: migrated, its model found, validated by compiling."""
    key, records, alias = LOADERS[parts.version](parts.model_key, parts.records, parts.alias)
    try:
        model = get_model(key)
    except ConfigurationError:
        raise UnsafePayload(
            f"payload's plan is on model {key!r}, which is not registered in this process: "
            f"import the module that defines it before loading (qplan never imports modules "
            f"a payload names)" + suggest(key, _registered_keys())
        ) from None
    plan = Plan(model, records, alias)
    if validate:
        try:
            plan.compile("sqlite")  # no connection; a cache hit after the first time
        except NotSupportedError:
            pass  # well formed; running it raises the same error on every database
        except PlanError as exc:  # FieldError included: a field renamed or removed
            raise UnsafePayload(
                f"payload's plan no longer matches model {key!r}: {exc}") from exc
    return plan


def _registered_keys() -> list[str]:
    from .models import registered_models

    return [m._meta.key for m in registered_models()]


# --- loading --------------------------------------------------------------------------------------


def loads(data: bytes, key: KeyArg = None) -> Plan:
    """Load a payload written by ``dumps`` (or ``pickle.dumps(plan)``); else ``UnsafePayload``.

    With a key (``key=`` or the configured one) only payloads signed with it load,
    and the signature is checked before anything is unpickled.
    """
    keys = signing_keys(key)
    try:
        opened = open_envelope(data, keys)
        return build(unpickle(opened.body, opened.version, trusted=bool(opened.verified)))
    except UnsafePayload:
        raise
    except Exception as exc:  # truncated, corrupt or foreign data, a field gone...
        raise UnsafePayload(f"not a loadable plan payload: {type(exc).__name__}: {exc}"[:500]) from exc


__all__ = ["ALLOWED", "LOADERS", "MAGIC", "RestrictedUnpickler", "dumps", "loads",
           "open_envelope", "signing_keys", "unpickle"]
