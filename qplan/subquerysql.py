"""SQL for ``Subquery``, ``Exists`` and ``OuterRef`` records (``qplan.subqueries``).

A subquery is built by a builder of its own (the class of the enclosing one) sharing the
enclosing statement's placeholder numbering. Its table and joins get aliases of their
own (``U1``, ``U1T1``...; ``U2`` one level deeper), so a correlated subquery over the
same table as the enclosing plan (Novel inside Novel) never reads the outer columns by
mistake; an ``OuterRef`` is the enclosing builder's column (joined there if it crosses a
relation), two levels up for ``OuterRef(OuterRef(...))``.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from .errors import FieldError, PlanError
from .registry import get_model
from .sqlparts import Ref

TAGS = frozenset({"subquery", "exists", "outer", "!"})


def nested(builder: Any, meta: Any) -> Any:
    """A builder for a subquery of ``builder``'s statement: same backend and placeholders,
    its own table alias, the enclosing builder as its ``outer``."""
    inner = type(builder)(meta, builder.backend)
    inner.binds = builder.binds
    inner.outer = builder
    inner.depth = builder.depth + 1
    inner.table = f"U{inner.depth}"
    inner.prefix = inner.table
    return inner


def alias_like(inner: Any, builder: Any) -> None:
    """Give ``inner`` (a builder for ``builder``'s own model, as ``pk_in`` makes) the
    OuterRefs and a table alias of its own when ``builder`` is a subquery's."""
    if builder.outer is not None:
        inner.outer = builder.outer
        inner.depth = builder.depth
        inner.table = inner.prefix = f"{builder.table}x"


def _inner(builder: Any, node: Any) -> tuple[Any, Any, list]:
    """The subquery builder of a ``("query", key, records)`` node, its records applied."""
    if type(node) is not tuple or len(node) != 3 or node[0] != "query":
        raise PlanError(f"not a subquery record: {node!r:.80}")
    meta = get_model(node[1])._meta
    inner = nested(builder, meta)
    return inner, meta, selected(builder, inner, node[2])


def selected(builder: Any, inner: Any, records: tuple) -> list:
    """Apply a subquery plan's ``records`` to ``inner`` (a builder sharing ``builder``'s
    placeholders) and return what it selects: its ``values()``, else its primary key."""
    if inner.apply(records):
        raise PlanError("a subquery plan cannot end in a terminal command")
    builder.subqueries = True
    if inner.values is None:
        pk = inner.meta.pk
        return [(pk.attname, inner.field_ref(pk, inner.table, False))]
    return inner.selection()[0]


def expr(builder: Any, node: tuple) -> Ref:
    """A Subquery / Exists / ~Exists / OuterRef record as a reference."""
    tag = node[0]
    if tag == "outer":
        target = builder.outer
        if target is None:
            raise FieldError(f"OuterRef({_name(node[1])!r}) is only allowed inside a Subquery or "
                             f"Exists: this {builder.meta.model.__name__} plan runs on its own")
        return target.expr(node[1]) if type(node[1]) is tuple else target.column(node[1])
    if tag == "!":
        inner = expr(builder, node[1])
        return Ref(exp.Not(this=exp.Paren(this=inner.sql)), "bool", inner.decode, False)
    if tag == "exists":
        return Ref(exists(builder, node[1]), "bool", builder.backend.DECODE_KIND["bool"], False)
    inner, _, pairs = _inner(builder, node[1])
    if len(pairs) != 1:
        raise FieldError(f"a Subquery selects one column, this one selects {[k for k, _ in pairs]!r}")
    ref = pairs[0][1]
    select = inner.select(pairs, with_order=inner.sliced)
    return Ref(exp.Subquery(this=select), ref.kind, ref.decode, True, ref.field)


def exists(builder: Any, node: tuple) -> exp.Expression:
    """``EXISTS (SELECT ...)`` of a ``("query", ...)`` node; ordered only when sliced."""
    inner, _, pairs = _inner(builder, node)
    return exp.Exists(this=inner.select(pairs, with_order=inner.sliced))


def condition(builder: Any, node: tuple) -> tuple[exp.Expression, bool]:
    """An ``("exists", query)`` condition: never NULL, so its NOT is the exact complement."""
    return exists(builder, node[1]), False


def _name(node: Any) -> str:
    while type(node) is tuple:
        node = node[1]
    return str(node)
