"""The SQL of a check constraint's condition for one backend, its values as literals.

DDL cannot bind parameters, so the condition is compiled by the filter compiler
(``Builder.condition``, the same SQL a ``filter()`` gets), then each placeholder node of
the sqlglot tree is replaced by a literal node built from its value (``exp.Literal``,
``exp.Boolean``, ``exp.Null``): sqlglot quotes and escapes it for the dialect. A value is
never formatted into SQL text by qplan.
"""

from __future__ import annotations

import datetime as _dt
import decimal
from typing import Any

from sqlglot import exp

from . import binding
from . import records as R
from .binding import SPREAD
from .builder import Builder
from .errors import NotSupportedError
from .sqlparts import number_slots


def condition_sql(meta: Any, record: tuple, backend: Any) -> str:
    """``record`` (a condition of ``meta``'s own columns, ``qplan.checks``) as SQL text in
    ``backend``'s dialect, with literal values."""
    values: list[Any] = []
    shape = R.shape_of((("filter", record),), values)
    b = Builder(meta, backend)
    b.allow_joins = False
    tree, _ = b.condition(number_slots(shape, [0])[0][1], False)

    def value(index: int) -> list[Any]:
        slot, sub, transform = b.binds[index]
        if sub == SPREAD:
            return list(values[slot])
        v = values[slot] if sub == -1 else values[slot][sub]
        return [transform(v) if transform is not None else v]

    def literals(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.In) and any(isinstance(e, binding.Spread)
                                            for e in node.expressions):
            items = [_literal(v, backend) for e in node.expressions
                     for v in value(binding.entry_index(e))]
            node.set("expressions", items)
            return node
        if isinstance(node, exp.Placeholder):
            return _literal(value(binding.entry_index(node))[0], backend)
        if isinstance(node, exp.Column):  # a CHECK names its table's columns unqualified
            node.set("table", None)
        return node

    return tree.transform(literals, copy=False).sql(dialect=backend.dialect)


def _literal(value: Any, backend: Any) -> exp.Expression:
    """One value as a literal node, in the form the backend is given it as a parameter."""
    conv = backend.ADAPT.get(type(value))
    if conv is not None:
        value = conv(value)
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, decimal.Decimal):
        return exp.Literal.number(format(value, "f"))
    if isinstance(value, (int, float)):
        return exp.Literal.number(repr(value))
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, (_dt.date, _dt.datetime, _dt.time)):
        return exp.Literal.string(value.isoformat(sep=" ") if isinstance(value, _dt.datetime)
                                  else value.isoformat())
    raise NotSupportedError(f"{type(value).__name__} values cannot be written into a check "
                            f"constraint")


__all__ = ["condition_sql"]
