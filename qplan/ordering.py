"""``order_by()`` terms that are expressions: ``F('rating').desc(nulls_last=True)``, ``Lower('t')``.

An ``order_by`` record holds one term per argument. A field name is the string it always
was (``"path"``, ``"-path"``), and so is a bare ``F('x')``/``F('x').desc()``, so plans
ordering by names keep their records. Any other term is

    ("expr", expression, descending, nulls)     nulls: "first", "last" or None

with ``expression`` an expression record (``qplan.records``); None keeps qplan's order
(NULLs smallest), "first"/"last" place NULLs as Django's ``nulls_first``/``nulls_last``.
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import FieldError
from .expressions import Combinable, F, OrderBy

TAG = "expr"
NULLS = ("first", "last", None)


def is_expression(term: Any) -> bool:
    """True for an ``("expr", ...)`` term, False for a field name."""
    return type(term) is tuple


def term(ctx: Any, value: Any, expression: Callable[[Any, Any], tuple]) -> str | tuple:
    """The record term of one non-string ``order_by()`` argument (``OrderBy`` or expression)."""
    order = value if isinstance(value, OrderBy) else OrderBy(value) if isinstance(
        value, Combinable) else None
    if order is None:
        raise FieldError(f"{ctx.who}: order_by() takes field names and expressions, "
                         f"got {value!r:.80}")
    nulls = "first" if order.nulls_first else ("last" if order.nulls_last else None)
    inner = order.expression
    if not isinstance(inner, Combinable):  # OrderBy('x'), OrderBy(OrderBy(...)): no constants
        raise FieldError(f"{ctx.who}: order_by() orders by a field or an expression, not by an "
                         f"ordering or a value: {value!r:.80}")
    if isinstance(inner, F) and nulls is None:  # the name it always was
        path = ctx.path(inner.name)[0]
        return "-" + path if order.descending else path
    return (TAG, expression(ctx, inner), order.descending, nulls)


def reversed_term(term: Any) -> Any:
    """``term`` in the opposite direction; explicit NULL placement swaps too (Django)."""
    if not is_expression(term):
        return term[1:] if term[0] == "-" else "-" + term
    nulls = {"first": "last", "last": "first"}.get(term[3])
    return (TAG, term[1], not term[2], nulls)


def check(term: Any) -> None:
    """``PlanError``-free structural check of a loaded term (for ``qplan.replay``)."""
    if not (type(term) is tuple and len(term) == 4 and term[0] == TAG
            and type(term[2]) is bool and term[3] in NULLS):
        raise ValueError(f"not an order_by term: {term!r:.80}")


def as_order_by(term: Any, rebuild: Callable[[Any], Any]) -> Any:
    """The argument ``order_by()`` turns into ``term`` (the name, or an ``OrderBy``)."""
    if not is_expression(term):
        return term
    check(term)
    return OrderBy(rebuild(term[1]), term[2], term[3] == "first" or None,
                   term[3] == "last" or None)
