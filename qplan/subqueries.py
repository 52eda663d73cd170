"""``Subquery``, ``Exists`` and ``OuterRef`` (Django 5.2 meaning) and their records.

Records (plain tuples, as everything a plan holds):

    ("subquery", ("query", model_key, records))   a one-column plan as a scalar value
    ("exists", ("query", model_key, records))     EXISTS (plan): a condition or a bool
    ("outer", name) | ("outer", ("outer", ...))   OuterRef(name), OuterRef(OuterRef(name))

The inner plan is held in the same ``("query", key, records)`` form as ``field__in=plan``,
so what reads subqueries already (routing hints, shapes, checks) sees these too. The
inner plan's ``using()`` is not kept: it runs as part of the outer plan, on its alias.
An ``OuterRef`` is not resolved when the inner plan is built (its model is not known
then); it is checked against the enclosing plan's model when the ``Subquery``/``Exists``
is added to that plan, and an ``OuterRef`` no enclosing plan resolves is a ``FieldError``
when the plan compiles. Records use this module; it imports only errors and expressions.
"""

from __future__ import annotations

from typing import Any, Iterator

from .errors import FieldError, PlanError
from .expressions import Combinable, Conditional

TERMINAL = frozenset({"count", "exists", "aggregate", "update", "delete", "insert"})
TAGS = frozenset({"subquery", "exists", "outer"})


class OuterRef(Combinable):
    """A field of the enclosing plan, inside a subquery's plan: ``OuterRef('pk')``."""

    __slots__ = ("name",)
    conditional = False

    def __init__(self, name: "str | OuterRef") -> None:
        if not (isinstance(name, OuterRef) or (isinstance(name, str) and name)):
            raise TypeError(f"OuterRef() takes a field name or an OuterRef, got {name!r:.80}")
        self.name = name

    def record(self) -> tuple:
        inner = self.name.record() if isinstance(self.name, OuterRef) else self.name
        return ("outer", inner)

    def __repr__(self) -> str:
        return f"OuterRef({self.name!r})"


class _Query(Combinable):
    """What Subquery and Exists share: the inner plan, kept as it was given."""

    __slots__ = ("plan",)

    def __init__(self, plan: Any) -> None:
        if not hasattr(plan, "as_subquery"):
            raise TypeError(f"{type(self).__name__}() takes a plan, got {plan!r:.80}")
        self.plan = plan

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.plan!r})"


class Subquery(_Query):
    """The single value a one-column plan gives for each outer row (NULL when no row)."""

    __slots__ = ()
    conditional = False


class Exists(Conditional, _Query):
    """Whether the plan finds any row; a condition (``filter(Exists(...))``, ``~Exists``,
    with ``Q`` through ``&``, ``|``, ``^``) or a boolean value (``annotate``)."""

    __slots__ = ("negated",)
    conditional = True

    def __init__(self, plan: Any, negated: bool = False) -> None:
        super().__init__(plan)
        self.negated = bool(negated)

    def __invert__(self) -> "Exists":
        return Exists(self.plan, not self.negated)

    def __repr__(self) -> str:
        return ("~" if self.negated else "") + super().__repr__()


# --- records --------------------------------------------------------------------------------

def query(ctx: Any, value: _Query, one_column: bool) -> tuple:
    """``("query", key, records)`` of the inner plan, its OuterRefs checked against ``ctx``
    (the enclosing plan's model and annotations)."""
    plan = value.plan
    who = f"{ctx.who}: {type(value).__name__}({plan.model.__name__})"
    records = plan._query_records()
    if records and records[-1][0] in TERMINAL:
        raise PlanError(f"{who}: a plan ending in {records[-1][0]}() is not a subquery")
    if one_column:
        names = None
        for record in records:
            if record[0] in ("values", "values_list"):
                names = record[1]
        if names is None or len(names) != 1:
            chosen = "every field" if names is None else f"{list(names)!r}"
            raise FieldError(f"{who} must select one column (values('x') or values_list('x', "
                             f"flat=True)); it selects {chosen}")
    check_outer(ctx, records, who)
    return ("query", plan._key, records)


def check_outer(ctx: Any, records: tuple, who: str) -> None:
    """``FieldError`` (with did-you-mean) for an OuterRef of ``records`` naming nothing of
    the enclosing plan (``ctx``); deeper OuterRefs are checked when that plan is added."""
    for levels, name in outer_refs(records):
        if levels == 0:
            try:
                ctx.path(name)
            except FieldError as exc:
                raise FieldError(f"{who}: OuterRef({name!r}): {exc}") from None


def record(ctx: Any, value: Any) -> tuple:
    """The expression record of a Subquery, Exists or OuterRef."""
    if isinstance(value, OuterRef):
        return value.record()
    if isinstance(value, Subquery):
        return ("subquery", query(ctx, value, True))
    node = ("exists", query(ctx, value, False))
    return ("!", node) if value.negated else node


def outer_refs(records: Any, depth: int = 0) -> Iterator[tuple[int, str]]:
    """``(levels above the enclosing plan, name)`` of each OuterRef in a plan's ``records``:
    0 for a name of the plan the subquery is added to, 1 for that plan's own enclosing
    plan... (``depth``: how many subqueries deep ``records`` are inside the added one)."""
    for r in records if type(records) is tuple else ():
        if type(r) is not tuple or not r:
            continue
        if r[0] in ("filter", "exclude") and len(r) == 2:
            yield from _condition(r[1], depth)
        elif r[0] in ("annotate", "aggregate", "update") and len(r) == 2 and type(r[1]) is tuple:
            for item in r[1]:
                if type(item) is tuple and len(item) == 2:
                    yield from _expression(item[1], depth)


def _condition(node: Any, depth: int) -> Iterator[tuple[int, str]]:
    if type(node) is not tuple or not node:
        return
    tag = node[0]
    if tag in ("&", "|", "^") and len(node) == 2 and type(node[1]) is tuple:
        for child in node[1]:
            yield from _condition(child, depth)
    elif tag == "!" and len(node) == 2:
        yield from _condition(node[1], depth)
    elif tag == "exists" and len(node) == 2:
        yield from _expression(node, depth)
    elif tag == "if" and len(node) == 2:
        yield from _expression(node[1], depth)
    elif len(node) == 3:
        yield from _expression(node[2], depth)


def _expression(node: Any, depth: int) -> Iterator[tuple[int, str]]:
    if type(node) is not tuple or not node or node[0] == "=":
        return
    tag = node[0]
    if tag == "outer" and len(node) == 2:
        levels, name = 1, node[1]
        while type(name) is tuple and len(name) == 2 and name[0] == "outer":
            levels, name = levels + 1, name[1]
        if type(name) is str and levels - depth - 1 >= 0:
            yield levels - depth - 1, name
        return
    if tag == "query" and len(node) == 3:
        yield from outer_refs(node[2], depth + 1)
        return
    for child in node[1:]:
        yield from _expression(child, depth)


def is_expression(value: Any) -> bool:
    return isinstance(value, (OuterRef, _Query))
