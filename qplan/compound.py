"""Compiling a combined plan (``qplan.setops``): UNION, INTERSECT and EXCEPT statements.

A combined plan's shape starts with ``("combine", op, all, ((key, records), ...))``.
Each operand compiles with its own builder (one placeholder numbering for the whole
statement) to a plain SELECT whose columns are renamed ``c0, c1...``; a sliced operand
(ordered by its own ``order_by()`` or ``Meta.ordering``) is wrapped in a derived table
first, since SQLite and MariaDB refuse ORDER BY/LIMIT inside a compound's operands and
parenthesised operands. An operand that is itself combined is such a derived table too.
The compound then always sits in a derived table, ``SELECT u.c0 ... FROM (a UNION b) AS
u``, so the ordering (text in code-point order, NULLs smallest), slicing, ``count()`` and
``exists()`` of the combined rows are the builder's usual ones, on every backend.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from .builder import Builder
from .errors import PlanError
from .models import get_model
from .sqlparts import Ref, col, ident

SET_OPS = {"union": exp.Union, "intersection": exp.Intersect, "difference": exp.Except}
RESULT = {"values": "dicts"}


def statement(meta: Any, shape: tuple, backend: Any) -> tuple:
    """``(builder, tree, result, columns, decoders)`` of a numbered combined shape, as
    ``compiler.statement`` returns them (the builder holds the binds)."""
    outer = Builder(meta, backend)
    records, terminal = shape, None
    if shape[-1][0] in ("count", "exists"):
        records, terminal = shape[:-1], shape[-1][0]
    select, pairs, result = combined(outer, meta, records, 0)
    names = tuple(name for name, _ in pairs)
    decoders = tuple((i, ref.decode) for i, (_, ref) in enumerate(pairs) if ref.decode is not None)
    outer.subqueries = True  # the operands' models: ``hints.related_models`` names them
    if terminal == "count":
        count = exp.Select(expressions=[exp.Count(this=exp.Star())]).from_(
            exp.Subquery(this=select, alias=exp.TableAlias(this=ident("cnt"))), copy=False)
        return outer, count, "count", (), ()
    if terminal == "exists":
        one = exp.Alias(this=exp.Literal.number(1), alias=ident("a"))
        found = exp.Select(expressions=[one]).from_(
            exp.Subquery(this=select, alias=exp.TableAlias(this=ident("ex"))), copy=False)
        return outer, found.limit(exp.Literal.number(1), copy=False), "exists", (), ()
    return outer, select, result, names, decoders


def combined(outer: Builder, meta: Any, records: tuple, depth: int) -> tuple:
    """``(select, [(name, ref)], result kind)`` of combined records: the compound in a
    derived table, its columns ``c0, c1...``, then ordered and sliced."""
    (_, op, all_, operands), rest = records[0], records[1:]
    values = None
    order: tuple = ()
    offset = limit = None
    for record in rest:
        if record[0] in ("values", "values_list"):
            values = record
        elif record[0] == "order_by":
            order = record[1]
        elif record[0] == "slice":
            offset, limit = record[1], record[2]
        else:
            raise PlanError(f"{record[0]}() cannot follow {op}()")
    first_meta = get_model(operands[0][0])._meta
    push = values is not None and _model_rows(operands[0][1])
    parts, all_pairs, result = [], [], "models"
    for i, (key, inner) in enumerate(operands):
        part_meta = get_model(key)._meta
        select, pairs, kind = operand(outer, part_meta, inner + ((values,) if push else ()),
                                      depth)
        if i == 0:
            result = kind
        parts.append(select)
        all_pairs.append(pairs)
    tree = parts[0]
    for part in parts[1:]:
        tree = SET_OPS[op](this=tree, expression=part, distinct=not all_)
    alias = f"u{depth}"
    first = all_pairs[0]
    index = {name: i for i, (name, _) in enumerate(first)}
    chosen = list(values[1]) if values is not None and not push else [n for n, _ in first]
    refs = {}
    for name in chosen:
        i = index[name]
        ref = first[i][1]
        nullable = any(pairs[i][1].nullable for pairs in all_pairs)
        decode = ref.decode
        if ref.field is not None:  # the decoder of a column any operand may leave NULL
            decode = outer.field_ref(ref.field, None, nullable).decode
        refs[name] = Ref(col(f"c{i}", alias), ref.kind, decode, True, ref.field)
    if values is not None:
        result = RESULT.get(values[0]) or (
            "flat" if values[2] else ("named" if values[3] else "tuples"))
    ordering = Builder(first_meta, outer.backend)
    ordering.binds = outer.binds
    ordering.annotations = refs
    ordering.order, ordering.default_order = order, False
    ordering.offset, ordering.limit = offset, limit
    select = exp.Select(expressions=[exp.Alias(this=refs[name].sql, alias=ident(f"c{j}"))
                                     for j, name in enumerate(chosen)])
    select = select.from_(exp.Subquery(this=tree, alias=exp.TableAlias(this=ident(alias))),
                          copy=False)
    terms = ordering.order_terms()
    if terms:
        select = select.order_by(*terms, copy=False)
    select = ordering.paged(select)
    return select, [(name, refs[name]) for name in chosen], result


def operand(outer: Builder, meta: Any, records: tuple, depth: int) -> tuple:
    """``(select, [(name, ref)], result kind)`` of one operand, its columns ``c0, c1...``."""
    if records and records[0][0] == "combine":
        select, pairs, kind = combined(outer, meta, records, depth + 1)
        return select, pairs, kind  # already a derived table with columns c0, c1...
    b = Builder(meta, outer.backend)
    b.binds = outer.binds
    if b.apply(records):
        raise PlanError("a combined plan's operand cannot end in a terminal command")
    pairs, kind = b.selection()
    select = b.select(pairs, with_order=b.sliced)
    if b.sliced:  # ORDER BY/LIMIT inside a derived table: portable
        select = exp.Select(expressions=[
            exp.Alias(this=col(name, "s"), alias=ident(f"c{i}")) for i, (name, _) in enumerate(pairs)
        ]).from_(exp.Subquery(this=select, alias=exp.TableAlias(this=ident("s"))), copy=False)
    else:
        select.set("expressions", [
            exp.Alias(this=e.this if isinstance(e, exp.Alias) else e, alias=ident(f"c{i}"))
            for i, e in enumerate(select.expressions)])
    return select, pairs, kind


def _model_rows(records: tuple) -> bool:
    """Whether an operand selects model rows (no values() of its own, nor its operands')."""
    if records and records[0][0] == "combine":
        return _model_rows(records[0][3][0][1]) and not any(
            r[0] in ("values", "values_list") for r in records[1:])
    return not any(r[0] in ("values", "values_list") for r in records)
