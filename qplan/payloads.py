"""Plans as cache payloads: ``dumps`` and the restricted ``loads``.

``loads`` unpickles with an allow-list: qplan's restore function and the plain
value types a plan may hold. Any other global (``os.system``, ``builtins.eval``...)
raises ``UnsafePayload`` before it is looked up, so loading never runs foreign code.
Every failure while loading, of any kind, surfaces as ``UnsafePayload``.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from .errors import UnsafePayload
from .plan import Plan

PROTOCOL = 4

# (module, name) pairs a plan payload may name, and nothing else.
ALLOWED = frozenset({
    ("qplan.plan", "_restore"),
    ("decimal", "Decimal"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
})


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in ``ALLOWED``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise UnsafePayload(f"payload refers to {module}.{name}, which is not allowed in a plan")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePayload("payload uses persistent ids, which plans never do")


def dumps(plan: Plan) -> bytes:
    """The pickled plan (a compact tuple with the format version)."""
    if not isinstance(plan, Plan):
        raise TypeError(f"dumps() takes a Plan, got {type(plan).__name__}")
    return pickle.dumps(plan, protocol=PROTOCOL)


def loads(data: bytes) -> Plan:
    """Load a plan with the allow-list; anything else raises ``UnsafePayload``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UnsafePayload(f"a payload is bytes, got {type(data).__name__}")
    try:
        obj = RestrictedUnpickler(io.BytesIO(bytes(data))).load()
    except UnsafePayload:
        raise
    except Exception as exc:  # truncated, corrupt or foreign data, unknown model...
        raise UnsafePayload(f"not a loadable plan payload: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Plan):
        raise UnsafePayload(f"payload holds a {type(obj).__name__}, not a Plan")
    return obj
