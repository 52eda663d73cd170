"""A compiled statement: SQL text for one shape and dialect, its binds and its row decoders."""

from __future__ import annotations

from typing import Any

from .binding import SPREAD
from .errors import NotSupportedError

class Template:
    """Compiled SQL for one shape and dialect, and how to bind values and read rows.

    ``binds`` lists, in text order, where each placeholder's value comes from:
    ``(slot, -1, transform)`` a plan value, ``(slot, i, None)`` item i of a tuple value,
    ``(slot, SPREAD, n)`` a whole ``in`` list written as n placeholders (padded by
    repeating its last value, which does not change what ``IN`` matches).
    """

    __slots__ = ("sql", "binds", "adapt", "result", "columns", "decoders", "backend",
                 "related", "related_models", "nested", "size", "deferred_model")

    # Approximate bytes a bind entry and a template's other parts hold (ShapeCache budget).
    BIND_BYTES = 72
    BASE_BYTES = 600

    def __init__(self, sql: str, binds: list[tuple[int, int, Any]], backend: Any, result: str,
                 columns: tuple = (), decoders: tuple = ()) -> None:
        self.sql = sql
        self.binds = tuple(binds)
        self.adapt = backend.ADAPT
        self.backend = backend
        self.result = result  # models | dicts | tuples | flat | named | count | exists | aggregate | rowcount | insert
        self.columns = columns  # attnames / keys of the selected columns
        self.decoders = decoders  # ((index, function), ...) for columns that need converting
        self.related = False  # joins other models: routers' allow_relation is asked per run
        self.related_models: tuple | None = None  # Plan.related_models(), once per shape
        self.nested = None  # select_related: how rows split into instances (Builder.related_pairs)
        self.deferred_model = None  # only()/defer(): the model's deferred class (qplan.deferred)
        self.size = len(sql) + self.BIND_BYTES * len(self.binds) + self.BASE_BYTES

    def params(self, values: tuple) -> tuple:
        adapt = self.adapt
        out: list = []
        append = out.append
        for slot, sub, transform in self.binds:
            if sub == -1:
                v = values[slot]
            elif sub >= 0:
                v = values[slot][sub]
            else:  # SPREAD: ``transform`` is the number of placeholders
                self._spread(values, slot, transform, out)
                continue
            if transform is not None:
                v = transform(v)
            conv = adapt.get(type(v))
            append(v if conv is None else conv(v))
        return tuple(out)

    def _spread(self, values: tuple, slot: int, n: int, out: list) -> None:
        items = values[slot]
        if len(items) > n:  # only where a list was cut to fit the backend's parameter limit
            raise self.too_many(values)
        adapt = self.adapt
        out.extend([v if (conv := adapt.get(type(v))) is None else conv(v) for v in items])
        out.extend([out[-1]] * (n - len(items)))

    def too_many(self, values: tuple) -> NotSupportedError:
        count = sum(len(values[slot]) if sub == SPREAD else 1 for slot, sub, _ in self.binds)
        return _too_many(count, self.backend)


def _too_many(count: int, backend: Any) -> NotSupportedError:
    return NotSupportedError(
        f"this statement binds {count} values; {backend.name} accepts at most "
        f"{backend.max_params} parameters per statement (split the list or the batch)")
