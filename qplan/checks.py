"""A ``CheckConstraint``'s condition as a plain condition record, checked at class creation.

The condition is normalised by the same code as a ``filter()`` argument
(``records.condition``), then held to what a CHECK clause can say: the model's own
columns only (no path through a relation, no subquery) and no aggregates; its values
must be ones ``qplan.checksql`` can write as SQL literals. ``FieldError`` otherwise, when
the model class is defined.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
from typing import Any

from . import records as R
from .errors import FieldError

# Values a CHECK clause holds as SQL literals (DDL binds no parameters).
LITERAL_TYPES = (type(None), bool, int, float, decimal.Decimal, str, _dt.date, _dt.datetime,
                 _dt.time)


def condition_record(meta: Any, constraint: Any) -> tuple:
    """The condition record of ``constraint`` (a ``CheckConstraint``) for model ``meta``."""
    who = f"{meta.model.__name__}.Meta.constraints[{constraint.name!r}]"
    if not isinstance(constraint.condition, R.Q):
        raise FieldError(f"{who}: CheckConstraint.condition must be a Q instance, got "
                         f"{constraint.condition!r}")
    record = R.condition(R.Context(meta, {}), (constraint.condition,), {})
    if record is None:
        raise FieldError(f"{who}: the condition is empty (Q())")
    _check(record, who)
    return record


def _check(node: tuple, who: str) -> None:
    tag = node[0]
    if tag in ("&", "|", "^"):
        for child in node[1]:
            _check(child, who)
    elif tag == "!":
        _check(node[1], who)
    elif tag == "exists":
        raise FieldError(f"{who}: a check constraint cannot hold a subquery")
    elif tag == "if":
        raise FieldError(f"{who}: a check constraint cannot hold a boolean expression "
                         "(write its lookups in Q)")
    else:
        path, _, rhs = node
        _own(path, who)
        _rhs(rhs, who)


def _own(path: str, who: str) -> None:
    if R.SEP in path:
        raise FieldError(f"{who}: {path!r} follows a relation; a check constraint can only "
                         f"name the model's own columns")


def _rhs(node: Any, who: str) -> None:
    if type(node) is not tuple or not node:
        return
    tag = node[0]
    if tag == R.VALUE:
        for value in node[1] if type(node[1]) is tuple else (node[1],):
            _literal(value, who)
    elif tag == "F":
        _own(node[1], who)
    elif tag == "agg":
        raise FieldError(f"{who}: a check constraint cannot hold an aggregate")
    elif tag == "query" or tag == "outer":
        raise FieldError(f"{who}: a check constraint cannot hold a subquery")
    else:
        for child in node[1:]:
            _rhs(child, who)


def _literal(value: Any, who: str) -> None:
    if not isinstance(value, LITERAL_TYPES):
        raise FieldError(f"{who}: {type(value).__name__} values cannot be written into a "
                         f"check constraint")
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(f"{who}: {value!r} cannot be written into a check constraint")


__all__ = ["condition_record", "LITERAL_TYPES"]
