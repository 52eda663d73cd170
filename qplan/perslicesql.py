"""SQL of a per-parent slice (``qplan.perslice``): a window function in a derived table.

    SELECT <columns> FROM (
        SELECT <columns>, <order terms> AS _qp_o<i>,
               ROW_NUMBER() OVER (PARTITION BY <path> ORDER BY <order terms>, pk) AS _qp_n
        FROM ... WHERE ...
    ) sub WHERE _qp_n > start AND _qp_n <= stop ORDER BY _qp_o<i>..., _qp_n

The outer query keeps the plan's order (its terms selected inside, so joins and
expressions are computed once, where they belong), which is also what a sharded read
merges by. The primary key ends the window's order so the rows each parent keeps are
the same on every backend when the plan's order has ties.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from .errors import NotSupportedError
from .sqlparts import Ref, col, ident

ROW = "_qp_n"


def select(b: Any, pairs: list[tuple[str, Ref]]) -> exp.Select:
    """The statement selecting ``pairs`` for builder ``b``, whose plan ends in ``slice_per``."""
    _, path, start, stop = b.per
    if b.distinct or b.grouped():
        raise NotSupportedError("a per-parent slice of a distinct() or grouped plan")
    part = b.column(path)  # joins first: FROM is built after
    terms = b.order_terms() if b.order else []
    pk = b.field_ref(b.meta.pk, b.table, False).sql
    small = bool(b.backend.null_order_small)  # never NULL: the database's own order, no emulation
    window = exp.Window(this=exp.RowNumber(), partition_by=[part.sql],
                        order=exp.Order(expressions=[t.copy() for t in terms]
                                        + [exp.Ordered(this=pk.copy(), desc=False, nulls_first=small)]))
    inner = [exp.Alias(this=r.sql, alias=ident(k)) for k, r in pairs]
    inner += [exp.Alias(this=t.this.copy(), alias=ident(f"_qp_o{i}")) for i, t in enumerate(terms)]
    inner.append(exp.Alias(this=window, alias=ident(ROW)))
    sub = b.group(b.filtered(b.from_(exp.Select(expressions=inner))), pairs)
    outer = exp.Select(expressions=[col(k, "sub") for k, _ in pairs]).from_(
        exp.Subquery(this=sub, alias=exp.TableAlias(this=ident("sub"))), copy=False)
    n = col(ROW, "sub")
    kept = [exp.GT(this=n.copy(), expression=b.param(start))] if start is not None else []
    if stop is not None:
        kept.append(exp.LTE(this=n.copy(), expression=b.param(stop)))
    if kept:
        outer = outer.where(exp.and_(*kept, copy=False), copy=False)
    order = [exp.Ordered(this=col(f"_qp_o{i}", "sub"), desc=t.args.get("desc"),
                         nulls_first=t.args.get("nulls_first")) for i, t in enumerate(terms)]
    return outer.order_by(*order, exp.Ordered(this=n, nulls_first=small), copy=False)
