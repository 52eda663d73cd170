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
import io
import pickle
import struct
import threading
from typing import Any, Callable, NamedTuple

from . import signing
from .signing import MAC_SIZE, KeyArg, signing_keys
from .errors import (ConfigurationError, NotSupportedError, PlanError, RoutingError, UnsafePayload,
                     suggest)
from .models import get_model, registered_models
from .plan import FORMAT_VERSION, MIGRATIONS, TERMINAL, Plan
from .budgets import MAX_STRUCTURE, MAX_VALUES, check_tree  # noqa: F401 - part of the API
from .replay import replay
from .unpickling import (ALLOWED, NEEDED_OPCODES, PLAIN, RestrictedUnpickler,  # noqa: F401
                         _Pending, scan_pickle)

PROTOCOL = 4

MAGIC = b"QPLN"
HEADER = struct.Struct(">4sHB")  # magic, format version, flags
FLAG_SIGNED = 0x01
KNOWN_FLAGS = FLAG_SIGNED

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

    def load(self, data: Any, keys: tuple[bytes, ...] | None, load: Callable[[], Plan]) -> Plan:
        """The plan loaded before from exactly ``data`` with ``keys``, else ``load()``'s."""
        memo = self.key(data, keys)
        plan = self.get(memo)
        return plan if plan is not None else self.put(memo, load())

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

    def load() -> Plan:
        opened = open_envelope(data, keys)
        return build(unpickle(opened.body, opened.version, trusted=bool(opened.verified)))

    try:
        return loaded.load(data, keys, load)
    except UnsafePayload:
        raise
    except Exception as exc:  # truncated, corrupt or foreign data, a field gone...
        raise UnsafePayload(f"not a loadable plan payload: {type(exc).__name__}: {exc}"[:500]) from exc


__all__ = ["ALLOWED", "LOADERS", "MAGIC", "RestrictedUnpickler", "dumps", "loads",
           "open_envelope", "signing_keys", "unpickle"]
