"""Plans as JSON documents: the encoding ``Plan.to_json`` writes (``qplan.jsonplan`` reads).

A plan's records are tuples of plain values, so JSON arrays stand for tuples and the
values JSON lacks are tagged objects with one key (see ``qplan.jsonplan``). The
signature is HMAC-SHA256 (hex) over the canonical JSON of the other keys (sorted keys,
no spaces, ASCII only).
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
from typing import Any, Callable

from .signing import KeyArg, mac, signing_keys

KIND = "plan"
KEYS = frozenset({"qplan", "format", "model", "alias", "records", "signature"})


# --- encoding -------------------------------------------------------------------------------------


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {"$float": "nan" if value != value else ("inf" if value > 0 else "-inf")}


ENCODE: dict[type, Callable[[Any], Any]] = {
    str: lambda v: v,
    int: lambda v: v,
    bool: lambda v: v,
    type(None): lambda v: v,
    float: _float,
    decimal.Decimal: lambda v: {"$decimal": str(v)},
    _dt.datetime: lambda v: {"$datetime": v.isoformat()},
    _dt.date: lambda v: {"$date": v.isoformat()},
    _dt.time: lambda v: {"$time": v.isoformat()},
    bytes: lambda v: {"$bytes": base64.b64encode(v).decode("ascii")},
}


def encode(node: Any) -> Any:
    """A record (tuples of plain values) as JSON-ready lists, dicts and scalars."""
    if type(node) is tuple:
        return [encode(child) for child in node]
    try:
        return ENCODE[type(node)](node)
    except KeyError:
        raise TypeError(f"a plan record holds a {type(node).__name__}, which JSON cannot carry") from None


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes a document's signature covers."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def document(version: int, model_key: str, alias: str | None, records: tuple,
             key: KeyArg = None, *, indent: int | None = None) -> str:
    """A plan's parts as a JSON document, signed with ``key`` (or the configured key) if any."""
    doc: dict[str, Any] = {
        "qplan": KIND,
        "format": version,
        "model": model_key,
        "alias": alias,
        "records": encode(records),
    }
    keys = signing_keys(key)
    if keys is not None:
        doc["signature"] = mac(keys[0], canonical(doc)).hex()
    return json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False)


def to_json(plan: Any, key: KeyArg = None, *, indent: int | None = None) -> str:
    """``plan.to_json(key, indent=...)``, for a plan given as an argument."""
    to_json_method = getattr(plan, "to_json", None)
    if to_json_method is None or not hasattr(plan, "records"):
        raise TypeError(f"to_json() takes a Plan, got {type(plan).__name__}")
    return to_json_method(key, indent=indent)


