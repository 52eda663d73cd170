"""Plan shape -> SQL template per dialect, through sqlglot.

A template is compiled from a plan's *shape* (its records with the values lifted
out), so every plan of that shape reuses it (``qplan.shapecache`` keeps them): a hit
costs a dictionary lookup plus putting the plan's values in placeholder order. This
module is the cache-miss path: the builder's statement per terminal command, rendered
with structural placeholders (``qplan.binding``).
"""

from __future__ import annotations

from typing import Any, Callable

from sqlglot import exp

from . import aggregates, binding, compound, conflicts, methodsql
from .binding import SPREAD
from .builder import Builder
from .errors import NotSupportedError
from .sqlparts import Ref, col, ident, number_slots
from .template import Template, _too_many

def _decoders(pairs: list[tuple[str, Ref]]) -> tuple:
    return tuple((i, ref.decode) for i, (_, ref) in enumerate(pairs) if ref.decode is not None)


def statement(meta: Any, shape: tuple, backend: Any) -> tuple:
    """The builder and sqlglot tree of a plan shape: (builder, tree, result, columns, decoders)."""
    numbered = number_slots(shape, [0])
    if numbered and numbered[0][0] == "combine":  # union() & co: qplan.compound
        return compound.statement(meta, numbered, backend)
    b = Builder(meta, backend)
    terminal = b.apply(numbered)
    op = terminal[0] if terminal else "select"
    built = COMPILE[op](b, terminal)
    if b.lock is not None:  # select_for_update(): FOR UPDATE, or why not (qplan.methodsql)
        built = (methodsql.lock(b, op, built[0]), *built[1:])
    return (b, *built)


def build(meta: Any, shape: tuple, backend: Any) -> Template:
    """Compile a plan shape for one backend (the cache-miss path)."""
    b, tree, result, columns, decoders = statement(meta, shape, backend)
    sql, binds = binding.render(tree, backend.dialect, backend.paramstyle, b.binds)
    excess = _width(binds) - backend.max_params
    if excess > 0 and _fit_lists(b.binds, excess):
        sql, binds = binding.render(tree, backend.dialect, backend.paramstyle, b.binds)
    if _width(binds) > backend.max_params:  # the values outside lists alone are too many
        raise _too_many(_width(binds), backend)
    template = Template(sql, binds, backend, result, columns, decoders)
    template.related = bool(b.joins) or b.subqueries
    template.nested = b.nested
    template.deferred_model = b.deferred_model
    return template


def _width(binds: list) -> int:
    """How many placeholders a bind list stands for."""
    return sum(n if sub == SPREAD else 1 for _, sub, n in binds)


def _fit_lists(binds: list, excess: int) -> bool:
    """Cut the placeholders of ``in`` lists (largest first) by ``excess`` in total, so that a
    list whose bucket crosses the backend's parameter limit still runs when its own length
    fits; a longer list then fails in ``Template.params``. False: no list to cut."""
    spreads = sorted((i for i, e in enumerate(binds) if e[1] == SPREAD), key=lambda i: -binds[i][2])
    for i in spreads:
        slot, sub, n = binds[i]
        cut = min(excess, n - 1)
        binds[i] = (slot, sub, n - cut)
        excess -= cut
    return bool(spreads)


def _select(b: Builder, terminal: tuple) -> tuple:
    pairs, result = b.selection(related=True)
    return b.select(pairs), result, tuple(k for k, _ in pairs), _decoders(pairs)


def _needs_subquery(b: Builder) -> bool:
    return b.sliced or b.distinct or b.grouped()


def _count(b: Builder, terminal: tuple) -> tuple:
    if _needs_subquery(b):
        pairs, _ = b.selection()
        inner = b.select(pairs, with_order=b.sliced)
        outer = b.derived(inner).select(exp.Count(this=exp.Star()), copy=False)
    else:
        outer = b.filtered(b.from_(exp.Select(expressions=[exp.Count(this=exp.Star())])))
    return outer, "count", (), ()


def _exists(b: Builder, terminal: tuple) -> tuple:
    one = exp.Alias(this=exp.Literal.number(1), alias=ident("a"))
    if _needs_subquery(b):
        pairs, _ = b.selection()
        outer = b.derived(b.select(pairs, with_order=b.sliced)).select(one, copy=False)
    else:
        outer = b.filtered(b.from_(exp.Select(expressions=[one])))
    return outer.limit(exp.Literal.number(1), copy=False), "exists", (), ()


def _aggregate(b: Builder, terminal: tuple) -> tuple:
    items = terminal[1]
    if not _needs_subquery(b):
        pairs = [(name, b.expr(node)) for name, node in items]
        select = exp.Select(expressions=[exp.Alias(this=r.sql, alias=ident(k)) for k, r in pairs])
        select = b.filtered(b.from_(select))
        if b.having:
            raise NotSupportedError("aggregate() over a filter on an aggregate needs values() first")
        return select, "aggregate", tuple(k for k, _ in pairs), _decoders(pairs)
    # Aggregate over the plan's own rows: select each aggregate's argument in a subquery
    # first, then compute the expressions over its columns (one placeholder numbering).
    pairs, _ = b.selection()
    inner_pairs = list(pairs)
    outer = Builder(b.meta, b.backend)
    outer.binds = b.binds

    def lift(node: Any) -> Any:
        if type(node) is not tuple or not node:
            return node
        if node[0] != "agg":
            return (node[0], *[lift(child) for child in node[1:]])
        fn, arg, distinct = node[1], node[2], node[3]
        options = aggregates.options_of(node)  # a filter= moves inside: CASE WHEN in the rows
        if arg == "*" and "filter" not in options:
            return node
        ref = b.case_arg(arg, options["filter"]) if "filter" in options else b.expr(arg)
        key = f"__a{len(inner_pairs) - len(pairs)}"
        inner_pairs.append((key, ref))
        outer.annotations[key] = Ref(col(key, "sub"), ref.kind, ref.decode, True, ref.field)
        return aggregates.with_options(("agg", fn, ("F", key), distinct),
                                       {"default": options.get("default")})

    outer_pairs = [(name, outer.expr(lift(node))) for name, node in items]
    inner = b.select(inner_pairs, with_order=b.sliced)
    select = b.derived(inner).select(
        *[exp.Alias(this=r.sql, alias=ident(k)) for k, r in outer_pairs], copy=False)
    return select, "aggregate", tuple(k for k, _ in outer_pairs), _decoders(outer_pairs)


def _where_for_write(b: Builder) -> exp.Expression | None:
    if b.having or b.grouped():
        raise NotSupportedError("update() and delete() cannot filter on aggregates")
    if b.join_sql:
        return b.pk_subquery()
    return exp.and_(*b.where, copy=False) if b.where else None


def _update(b: Builder, terminal: tuple) -> tuple:
    sets = []
    b.allow_joins = False
    for name, node in terminal[1]:
        field = b.meta.get_field(name)
        value = b.expr(node)
        sets.append(exp.EQ(this=col(field.column, None), expression=value.sql))
    b.allow_joins = True
    stmt = exp.Update(this=exp.Table(this=ident(b.table)), expressions=sets)
    where = _where_for_write(b)
    if where is not None:
        stmt.set("where", exp.Where(this=where))
    return stmt, "rowcount", (), ()


def _delete(b: Builder, terminal: tuple) -> tuple:
    stmt = exp.Delete(this=exp.Table(this=ident(b.table)))
    where = _where_for_write(b)
    if where is not None:
        stmt.set("where", exp.Where(this=where))
    return stmt, "rowcount", (), ()


def _insert(b: Builder, terminal: tuple) -> tuple:
    _, names, rows, *option = terminal
    conflict = option[0] if option else None
    backend, meta = b.backend, b.meta
    table = exp.Table(this=ident(b.table))
    if names:
        columns = exp.Schema(this=table, expressions=[ident(meta.get_field(n).column) for n in names])
        values = exp.Values(expressions=[
            exp.Tuple(expressions=[b.param(slot) for slot in row]) for row in rows])
        stmt: exp.Expression = exp.Insert(this=columns, expression=values)
    else:
        if len(rows) != 1:
            raise NotSupportedError("bulk_create() of rows without any column value")
        stmt = backend.insert_defaults(table)
    if conflict is not None:
        conflicts.require_target(conflict, backend)
        stmt = backend.on_conflict(stmt, meta, conflict)
    pk = meta.pk
    if backend.insert_returning:
        stmt = backend.returning(stmt, meta, pk.name in names)
    decode = backend.DECODE.get(pk.internal_type)
    return stmt, "insert", (pk.attname,), ((0, decode),) if decode else ()


COMPILE: dict[str, Callable[[Builder, tuple], tuple]] = {
    "select": _select,
    "count": _count,
    "exists": _exists,
    "aggregate": _aggregate,
    "update": _update,
    "delete": _delete,
    "insert": _insert,
}
