"""Plans as JSON, for caches and queues that are not Python: ``to_json`` / ``from_json``.

A plan's records are tuples of plain values, so JSON arrays stand for tuples and
the values JSON lacks are tagged objects with one key::

    {"$decimal": "3.50"}   {"$datetime": "2024-05-01T12:00:00+00:00"}
    {"$date": "2024-05-01"}   {"$time": "12:00:00"}   {"$bytes": "<base64>"}
    {"$float": "nan" | "inf" | "-inf"}

The document::

    {"qplan": "plan", "format": 1, "model": "app.models.Book", "alias": null,
     "records": [["filter", ["pages", "gte", ["=", 100]]]],
     "signature": "<hex HMAC-SHA256>"}       <- only when signed

The signature is HMAC-SHA256 over the canonical JSON of the other keys (sorted keys,
no spaces, ASCII only). Loading goes through the same checks as ``qplan.loads``:
the signature first (when a key is set), then plain values only, the format
version, the model registered in this process, the plan compiled against it.
Every failure raises ``UnsafePayload``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import decimal
import json
from typing import Any, Callable

from .errors import UnsafePayload
from .jsonform import KEYS, KIND, ENCODE, canonical, encode, to_json  # noqa: F401 - re-exported
from .payloads import build, check_version, decoded, loaded
from .plan import Plan
from .signing import KeyArg, matches, signing_keys



# --- decoding -------------------------------------------------------------------------------------


def _parse_float(text: Any) -> float:
    if text not in ("nan", "inf", "-inf"):
        raise UnsafePayload(f"JSON plan has a bad $float {text!r}")
    return float(text)


def _parse_decimal(text: Any) -> decimal.Decimal:
    if type(text) is not str or len(text) > 1000:
        raise UnsafePayload("JSON plan has a bad $decimal")
    return decimal.Decimal(text)


def _iso(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def parse_text(text: Any) -> Any:
        if type(text) is not str or len(text) > 64:
            raise UnsafePayload(f"JSON plan has a bad date or time {text!r:.80}")
        return parse(text)
    return parse_text


def _parse_bytes(text: Any) -> bytes:
    if type(text) is not str:
        raise UnsafePayload("JSON plan has a bad $bytes")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise UnsafePayload("JSON plan has a $bytes that is not base64") from None


DECODE: dict[str, Callable[[Any], Any]] = {
    "$float": _parse_float,
    "$decimal": _parse_decimal,
    "$datetime": _iso(_dt.datetime.fromisoformat),
    "$date": _iso(_dt.date.fromisoformat),
    "$time": _iso(_dt.time.fromisoformat),
    "$bytes": _parse_bytes,
}

SCALARS = (str, int, float, bool, type(None))


def decode(node: Any) -> Any:
    """JSON values back into a record: lists become tuples, tagged objects values."""
    if type(node) is list:
        return tuple([decode(child) for child in node])
    if type(node) in SCALARS:
        return node
    if type(node) is dict and len(node) == 1:
        (tag, value), = node.items()
        parse = DECODE.get(tag)
        if parse is not None:
            return parse(value)
        raise UnsafePayload(f"JSON plan has an unknown tag {tag!r:.40}")
    raise UnsafePayload(f"JSON plan holds an object {json.dumps(node)[:80]}, which plans never hold")


def parse_document(data: Any) -> dict[str, Any]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    if not isinstance(data, str):
        raise UnsafePayload(f"a JSON plan is str or bytes, got {type(data).__name__}")
    doc = json.loads(data, parse_constant=_no_constant)
    if type(doc) is not dict or doc.get("qplan") != KIND:
        raise UnsafePayload('not a JSON plan: expected an object with "qplan": "plan"')
    unknown = set(doc) - KEYS
    if unknown:
        raise UnsafePayload(f"JSON plan has unknown keys: {', '.join(sorted(unknown))[:80]}")
    return doc


def _no_constant(name: str) -> Any:
    raise UnsafePayload(f"JSON plan holds {name}; non-finite floats are tagged as $float")


def verify(doc: dict[str, Any], keys: tuple[bytes, ...] | None, strict: bool = True) -> bool | None:
    """Check a parsed document's signature: True, False, or None when there is no key."""
    signature = doc.get("signature")
    if signature is None:
        if strict and keys is not None:
            raise UnsafePayload("JSON plan is not signed, but a signing key is set: refused")
        return None
    if type(signature) is not str:
        raise UnsafePayload("JSON plan has a signature that is not a string")
    if keys is None:
        if strict:
            raise UnsafePayload("JSON plan is signed but no signing key was given: "
                                "pass key=... or qplan.configure(signing_key=...)")
        return None
    rest = canonical({k: v for k, v in doc.items() if k != "signature"})
    try:
        given = bytes.fromhex(signature)
    except ValueError:
        given = b""
    ok = matches(keys, given, rest)
    if strict and not ok:
        raise UnsafePayload("JSON plan signature does not match: it was changed or signed with another key")
    return ok


def parts(doc: dict[str, Any]) -> Any:
    """The checked raw parts of a parsed document (see ``qplan.payloads.decoded``)."""
    version = check_version(doc.get("format"), "JSON plan")
    records = decode(doc.get("records"))
    return decoded(version, doc.get("model"), records, doc.get("alias"))


def from_json(data: str | bytes, key: KeyArg = None) -> Plan:
    """Load a plan written by ``to_json``; anything else raises ``UnsafePayload``."""
    keys = signing_keys(key)

    def load() -> Plan:
        doc = parse_document(data)
        verify(doc, keys)
        return build(parts(doc))

    try:
        return loaded.load(data, keys, load)
    except UnsafePayload:
        raise
    except Exception as exc:  # any failure to read a payload is reported as UnsafePayload
        raise UnsafePayload(f"not a loadable JSON plan: {type(exc).__name__}: {exc}"[:500]) from exc


__all__ = ["from_json", "to_json"]
