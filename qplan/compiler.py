"""Plan shape -> SQL template per dialect, through sqlglot, behind a bounded shape cache.

A template is compiled from a plan's *shape* (its records with the values lifted
out), so every plan of that shape reuses it: a cache hit costs a dictionary lookup
plus putting the plan's values in placeholder order. sqlglot runs on misses only.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable

from sqlglot import exp

from . import binding
from . import records as R
from .binding import SPREAD
from .errors import FieldError, NotSupportedError, PlanError
from .fields import DecimalField, Field, ForeignKey

# --- slots -------------------------------------------------------------------------------------


class Slot:
    """A numbered value position in a shape; ``count``: placeholders for a tuple value (an
    ``in`` list's length rounded up to its bucket, see ``records._slot``)."""

    __slots__ = ("index", "count", "kind")

    def __init__(self, index: int, count: int | None, kind: str | None) -> None:
        self.index, self.count, self.kind = index, count, kind


PY_KIND = {int: "int", float: "float", str: "text", bool: "bool", bytes: "bytes"}
PY_KIND_BY_NAME = {"Decimal": "decimal", "datetime": "datetime", "date": "date", "time": "time"}


def _py_kind(t: type) -> str | None:
    return PY_KIND.get(t) or PY_KIND_BY_NAME.get(t.__name__)


def number_slots(shape: Any, counter: list[int]) -> Any:
    """Replace slot markers by ``Slot`` objects in the order ``records.walk`` made them."""
    if isinstance(shape, type):
        counter[0] += 1
        return Slot(counter[0] - 1, None, _py_kind(shape))
    if type(shape) is not tuple:
        return shape
    if len(shape) == 2 and shape[0] == R.SLOT and type(shape[1]) is int:  # not ("?", node)
        counter[0] += 1
        return Slot(counter[0] - 1, shape[1], None)
    return tuple(number_slots(s, counter) for s in shape)


FIELD_KIND = {
    "AutoField": "int", "IntegerField": "int", "BigIntegerField": "int", "FloatField": "float",
    "DecimalField": "decimal", "CharField": "text", "TextField": "text", "BooleanField": "bool",
    "DateField": "date", "DateTimeField": "datetime", "BinaryField": "bytes", "JSONField": "json",
}
NUMERIC = ("int", "float", "decimal")


# LIKE with "!" as its escape character: how a value's own wildcards are escaped ("!"
# first), and what each lookup puts before and after the escaped value.
LIKE_ESCAPES = (("!", "!!"), ("%", "!%"), ("_", "!_"))
LIKE_WRAP = {"contains": ("%", "%"), "startswith": ("", "%"), "endswith": ("%", "")}


def _escape_like(value: str) -> str:
    for char, escaped in LIKE_ESCAPES:
        value = value.replace(char, escaped)
    return value


def _like_transform(before: str, after: str) -> Callable[[str], str]:
    return lambda v: f"{before}{_escape_like(v)}{after}"


# lookup -> (the bound value's transform into a pattern, case-insensitive?)
LIKE_PATTERNS: dict[str, tuple[Callable[[str], str], bool]] = {
    prefix + name: (_like_transform(*wrap), prefix == "i")
    for name, wrap in LIKE_WRAP.items() for prefix in ("", "i")
}


def like_pattern(value: exp.Expression, lookup: str) -> exp.Expression:
    """The LIKE pattern of an expression, as ``LIKE_PATTERNS`` makes it of a value."""
    for char, escaped in LIKE_ESCAPES:
        value = exp.Replace(this=value, expression=exp.Literal.string(char),
                            replacement=exp.Literal.string(escaped))
    before, after = LIKE_WRAP[lookup[1:] if lookup.startswith("i") else lookup]
    parts = [exp.Literal.string(before), value] if before else [value]
    if after:
        parts.append(exp.Literal.string(after))
    return exp.Concat(expressions=parts, safe=False)  # NULL in, NULL out (no match)


COMPARISONS = {"gt": exp.GT, "gte": exp.GTE, "lt": exp.LT, "lte": exp.LTE}
ARITHMETIC = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul, "%": exp.Mod}


def ident(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=True)


def col(name: str, table: str | None) -> exp.Column:
    return exp.Column(this=ident(name), table=ident(table) if table else None)


class Ref:
    """A compiled reference: SQL expression, result kind, decoder, nullability, field."""

    __slots__ = ("sql", "kind", "decode", "nullable", "field", "aggregate")

    def __init__(self, sql: exp.Expression, kind: str | None, decode: Any, nullable: bool,
                 field: Field | None = None, aggregate: bool = False) -> None:
        self.sql, self.kind, self.decode = sql, kind, decode
        self.nullable, self.field, self.aggregate = nullable, field, aggregate


# --- the template --------------------------------------------------------------------------------


class Template:
    """Compiled SQL for one shape and dialect, and how to bind values and read rows.

    ``binds`` lists, in text order, where each placeholder's value comes from:
    ``(slot, -1, transform)`` a plan value, ``(slot, i, None)`` item i of a tuple value,
    ``(slot, SPREAD, n)`` a whole ``in`` list written as n placeholders (padded by
    repeating its last value, which does not change what ``IN`` matches).
    """

    __slots__ = ("sql", "binds", "adapt", "result", "columns", "decoders", "backend",
                 "related", "size")

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


# --- the builder ----------------------------------------------------------------------------------


class Builder:
    """Turns one numbered shape into a sqlglot statement for one backend."""

    def __init__(self, meta: Any, backend: Any) -> None:
        self.meta = meta
        self.backend = backend
        self.table = meta.db_table
        self.binds: list[tuple[int, int, Any]] = []
        self.joins: dict[str, tuple[str, Any]] = {}
        self.join_sql: list[exp.Join] = []
        self.annotations: dict[str, Ref] = {}
        self.where: list[exp.Expression] = []
        self.having: list[exp.Expression] = []
        self.order: tuple[str, ...] = ()
        self.offset: Slot | None = None
        self.limit: Slot | None = None
        self.sliced = False
        self.distinct = False
        self.values: tuple | None = None  # ("values", names) / ("values_list", names, flat, named)
        self.group_values = False  # values() came before an aggregate annotate()
        self.late: list[str] = []  # annotations made after values(): selected too
        self.allow_joins = True
        self.order_refs: list[Ref] = []  # the references order_by() resolved to

    # placeholders
    def param(self, slot: Slot, sub: int = -1, transform: Any = None) -> exp.Placeholder:
        self.binds.append((slot.index, sub, transform))
        return binding.placeholder(len(self.binds) - 1)

    def spread(self, slot: Slot) -> binding.Spread:
        """A whole list value as one node of ``slot.count`` placeholders."""
        self.binds.append((slot.index, SPREAD, slot.count))
        return binding.spread(len(self.binds) - 1)

    # references
    def column(self, path: str) -> Ref:
        """A field path as a column, joining the related tables it passes through."""
        if path in self.annotations:
            return self.annotations[path]
        parts = path.split(R.SEP)
        meta, table, nullable = self.meta, self.table, False
        prefix = ""
        for part in parts[:-1]:
            field = meta.get_field(part)
            if not isinstance(field, ForeignKey):
                raise FieldError(f"{meta.model.__name__}.{part} is not a relation")
            if not self.allow_joins:
                raise NotSupportedError(f"{path!r}: this statement cannot refer to related fields")
            nullable = nullable or field.null
            prefix = f"{prefix}{R.SEP}{part}" if prefix else part
            if prefix not in self.joins:
                alias = f"T{len(self.joins) + 1}"
                target = field.target._meta
                on = exp.EQ(this=col(field.column, table), expression=col(target.pk.column, alias))
                self.join_sql.append(exp.Join(
                    this=exp.Table(this=ident(target.db_table), alias=exp.TableAlias(this=ident(alias))),
                    side="LEFT", on=on))
                self.joins[prefix] = (alias, target)
            table, meta = self.joins[prefix][0], self.joins[prefix][1]
        field = meta.get_field(parts[-1])
        return self.field_ref(field, table, nullable or field.null)

    def field_ref(self, field: Field, table: str | None, nullable: bool) -> Ref:
        kind = field.internal_type
        decode = (None if nullable else self.backend.DECODE_NOT_NULL.get(kind)) or \
            self.backend.DECODE.get(kind)
        if isinstance(field, DecimalField) and decode is not None:  # same scale on every backend
            decode = (lambda v, f=field, d=decode: None if v is None else f.quantize(d(v)))
        return Ref(col(field.column, table), FIELD_KIND.get(kind), decode, nullable, field)

    def compare(self, ref: Ref) -> exp.Expression:
        """A reference as compared and ordered: text by code point on every backend."""
        return self.backend.text_compare(ref.sql) if ref.kind == "text" else ref.sql

    # expressions
    def expr(self, node: Any) -> Ref:
        if isinstance(node, Slot):
            if node.count is not None:
                raise PlanError("a list of values is not an expression")
            return Ref(self.param(node), node.kind, self.backend.DECODE_KIND.get(node.kind or ""),
                       node.kind is None)
        tag = node[0]
        if tag == "F":
            return self.column(node[1])
        if tag == "agg":
            return self.aggregate(node)
        lhs, rhs = self.expr(node[1]), self.expr(node[2])
        kinds = {lhs.kind, rhs.kind}
        kind = next((k for k in ("float", "decimal") if k in kinds), None) or (  # float wins
            "int" if kinds <= {"int", "bool"} else lhs.kind)
        if tag == "/":
            divisor = self.backend.divisor(rhs.sql)
            if kind == "int":
                sql = self.backend.int_divide(lhs.sql, divisor)
            elif kind == "decimal":
                sql = self.backend.decimal_divide(lhs.sql, divisor)
            else:
                sql = exp.Div(this=lhs.sql, expression=divisor)
        elif tag == "%":
            if kind != "int":  # SQLite truncates to integers, PostgreSQL has no float %
                raise NotSupportedError(f"% is defined for integers only, not for {kind} values")
            sql = exp.Mod(this=lhs.sql, expression=self.backend.divisor(rhs.sql))
        else:
            sql = ARITHMETIC[tag](this=lhs.sql, expression=rhs.sql)
        return Ref(exp.Paren(this=sql), kind, self.backend.DECODE_KIND.get(kind or ""),
                   lhs.nullable or rhs.nullable, aggregate=lhs.aggregate or rhs.aggregate)

    def aggregate(self, node: tuple) -> Ref:
        _, fn, arg, distinct = node
        if arg == "*":
            inner: exp.Expression = exp.Star()
            kind, field = "int", None
        else:
            ref = self.expr(arg)
            if ref.aggregate:
                raise FieldError("aggregates cannot be nested")
            inner = self.compare(ref) if fn in ("min", "max") else ref.sql
            kind, field = ref.kind, ref.field
        if kind == "json" and fn != "count":
            raise NotSupportedError(f"{fn.capitalize()}() of a JSONField: JSON has no order")
        if distinct:
            inner = exp.Distinct(expressions=[inner])
        sql = self.backend.aggregate(fn, inner, kind)
        decode_kind = self.backend.DECODE_KIND
        if fn == "count":
            decode, kind = decode_kind["int"], "int"
        elif fn == "avg":
            decode, kind = decode_kind["float"], "float"
        elif field is not None and fn in ("min", "max"):
            decode = self.backend.DECODE.get(field.internal_type)
        else:
            decode = decode_kind.get(kind or "")
        if isinstance(field, DecimalField) and fn != "avg" and fn != "count":
            base = decode_kind["decimal"]
            decode = (lambda v, f=field, b=base: None if v is None else f.quantize(b(v)))
        return Ref(sql, kind, decode, True, aggregate=True)

    # conditions
    def condition(self, node: Any, negated: bool) -> tuple[exp.Expression, bool]:
        """SQL for a condition record; also whether it refers to an aggregate."""
        tag = node[0]
        if tag == "!":
            inner, agg = self.condition(node[1], not negated)
            return exp.Not(this=exp.Paren(this=inner)), agg
        if tag in ("&", "|"):
            parts = [self.condition(c, negated) for c in node[1]]
            joined = exp.and_(*[p[0] for p in parts], copy=False) if tag == "&" else \
                exp.or_(*[p[0] for p in parts], copy=False)
            return exp.Paren(this=joined), any(p[1] for p in parts)
        return self.leaf(node, negated)

    def leaf(self, node: tuple, negated: bool) -> tuple[exp.Expression, bool]:
        path, lookup, rhs = node
        lhs = self.column(path)
        target = lhs.sql
        rhs_ref: Ref | None = None
        if lookup == "isnull":
            sql = exp.Is(this=lhs.sql, expression=exp.Null())
            return (sql if rhs else exp.Not(this=sql)), lhs.aggregate
        if lookup == "exact" and isinstance(rhs, bool):
            sql = lhs.sql if rhs else exp.Not(this=lhs.sql)
        elif lookup in LIKE_PATTERNS:
            pattern, insensitive = LIKE_PATTERNS[lookup]
            if isinstance(rhs, Slot):
                value: exp.Expression = self.param(rhs, transform=pattern)
            else:  # contains=F(...): escape and wrap in SQL
                rhs_ref = self.expr(rhs)
                value = like_pattern(rhs_ref.sql, lookup)
            sql = self.backend.like(target, value, insensitive)
        elif lookup == "in":
            if rhs.count == 0:
                return exp.EQ(this=exp.Literal.number(1), expression=exp.Literal.number(0)), False
            sql = exp.In(this=target, expressions=[self.spread(rhs)])
        elif lookup == "range":  # ordering comparisons use code-point order for text
            sql = exp.Between(this=self.compare(lhs), low=self.param(rhs, 0), high=self.param(rhs, 1))
        else:
            rhs_ref = self.expr(rhs)
            if lookup == "exact":
                sql = exp.EQ(this=target, expression=rhs_ref.sql)
            elif lookup == "iexact":
                sql = self.backend.iexact(lhs.sql, rhs_ref.sql)
            else:
                sql = COMPARISONS[lookup](this=self.compare(lhs), expression=rhs_ref.sql)
        if negated:  # keep NOT two-valued: a NULL never makes a row vanish from exclude()
            for ref in (lhs, rhs_ref):
                if ref is not None and ref.nullable:
                    sql = exp.and_(sql, exp.Not(this=exp.Is(this=ref.sql, expression=exp.Null())),
                                   copy=False)
            sql = exp.Paren(this=sql)
        return sql, lhs.aggregate or bool(rhs_ref and rhs_ref.aggregate)

    # the statement
    def apply(self, records: tuple) -> tuple:
        """Fold the plan's records into builder state; return the terminal record, if any."""
        for record in records:
            op = record[0]
            if op in ("filter", "exclude"):
                cond, agg = self.condition(record[1], op == "exclude")
                if op == "exclude":
                    cond = exp.Not(this=exp.Paren(this=cond))
                (self.having if agg else self.where).append(cond)
            elif op == "order_by":
                self.order = record[1]
            elif op == "slice":
                self.sliced = True
                self.offset, self.limit = record[1], record[2]
            elif op == "distinct":
                self.distinct = True
            elif op in ("values", "values_list"):
                self.values = record
            elif op == "annotate":
                for name, node in record[1]:
                    ref = self.expr(node)
                    if self.values is not None:
                        self.group_values = self.group_values or ref.aggregate
                        self.late.append(name)
                    self.annotations[name] = ref
            else:
                return record
        return ()

    def grouped(self) -> bool:
        return any(ref.aggregate for ref in self.annotations.values())

    def selection(self) -> tuple[list[tuple[str, Ref]], str]:
        """The selected (key, reference) pairs and the result kind."""
        if self.values is None:
            pairs = [(f.attname, self.field_ref(f, self.table, f.null)) for f in self.meta.fields]
            pairs += list(self.annotations.items())
            return pairs, "models"
        names = self.values[1] + tuple(n for n in self.late if n not in self.values[1])
        pairs = []
        for name in names:
            path = name
            field = self.meta.by_attname.get(name)
            if field is not None and field.is_relation:
                path = field.name
            pairs.append((name, self.column(path)))
        if self.values[0] == "values":
            return pairs, "dicts"
        return pairs, "flat" if self.values[2] else ("named" if self.values[3] else "tuples")

    def from_(self, select: exp.Select) -> exp.Select:
        select = select.from_(exp.Table(this=ident(self.table)), copy=False)
        for join in self.join_sql:
            select = select.join(join, copy=False)
        return select

    def filtered(self, select: exp.Select) -> exp.Select:
        if self.where:
            select = select.where(*self.where, copy=False)
        return select

    def _distinct(self, select: exp.Select, pairs: list[tuple[str, Ref]]) -> exp.Select:
        """SELECT DISTINCT, its text in code-point collation, ordered only by what it selects."""
        chosen = [ref.sql for _, ref in pairs]
        for ref in self.order_refs:
            if ref.sql not in chosen:
                raise NotSupportedError(
                    "distinct(): order_by() may only name selected values (PostgreSQL refuses "
                    "the rest, and the others would pick an arbitrary row)")
        select.set("distinct", exp.Distinct())
        if any(ref.kind == "text" for _, ref in pairs):  # ORDER BY must repeat the select list
            select.set("expressions", [exp.Alias(this=self.compare(r), alias=ident(k))
                                       if r.kind == "text" else e
                                       for e, (k, r) in zip(select.expressions, pairs)])
        return select

    def group(self, select: exp.Select, pairs: list[tuple[str, Ref]]) -> exp.Select:
        if not self.grouped():
            return select
        if self.group_values:
            keys = [ref.sql for _, ref in pairs if not ref.aggregate]
            for ref in self.order_refs:
                if not ref.aggregate and ref.sql not in keys:
                    raise NotSupportedError(
                        "order_by() of a grouped values() plan may only name grouped values "
                        "or aggregates (PostgreSQL refuses the rest, the others pick any row)")
        else:  # every column of the table: joined order columns depend on them, add them too
            keys = [col(f.column, self.table) for f in self.meta.fields]
            keys += [r.sql for r in self.order_refs if not r.aggregate and r.sql not in keys]
        if keys:
            select = select.group_by(*keys, copy=False)
        if self.having:
            select = select.having(*self.having, copy=False)
        return select

    def order_terms(self) -> list[exp.Ordered]:
        """ORDER BY terms; resolved before FROM is built, since they may add joins."""
        terms = []
        self.order_refs = []
        for name in self.order:
            desc = name.startswith("-")
            ref = self.column(name.lstrip("-"))
            if ref.kind == "json":
                raise NotSupportedError(f"order_by({name!r}): JSON values have no portable order")
            self.order_refs.append(ref)
            # NULLs sort smallest everywhere; where a column cannot be NULL the database's
            # own order is kept, so PostgreSQL still walks an index instead of sorting.
            smallest = ref.nullable or self.backend.null_order_small
            nulls_first = not desc if smallest else desc
            terms.append(exp.Ordered(this=self.compare(ref), desc=desc, nulls_first=nulls_first))
        return terms

    def paged(self, select: exp.Select) -> exp.Select:
        if self.limit is not None:
            select = select.limit(self.param(self.limit), copy=False)
        elif self.offset is not None and self.backend.LIMIT_FOR_OFFSET is not None:
            select = select.limit(exp.Literal.number(self.backend.LIMIT_FOR_OFFSET), copy=False)
        if self.offset is not None:
            select = select.offset(self.param(self.offset), copy=False)
        return select

    def select(self, pairs: list[tuple[str, Ref]], with_order: bool = True) -> exp.Select:
        select = exp.Select(expressions=[exp.Alias(this=r.sql, alias=ident(k)) if not (
            isinstance(r.sql, exp.Column) and r.sql.name == k) else r.sql for k, r in pairs])
        terms = self.order_terms() if with_order else []
        if self.distinct:
            select = self._distinct(select, pairs)
        select = self.group(self.filtered(self.from_(select)), pairs)
        if terms:
            select = select.order_by(*terms, copy=False)
        if with_order:
            select = self.paged(select)
        return select

    def subquery(self, inner: exp.Select) -> exp.Select:
        return exp.Select().from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=ident("sub"))),
                                  copy=False)

    def pk_subquery(self) -> exp.Expression:
        """``pk IN (SELECT pk ...)`` for writes whose filters need joins (derived table: MySQL)."""
        pk = self.meta.pk.column
        inner = self.filtered(self.from_(exp.Select(expressions=[col(pk, self.table)])))
        wrapped = exp.Select(expressions=[col(pk, None)]).from_(
            exp.Subquery(this=inner, alias=exp.TableAlias(this=ident("sub"))), copy=False)
        return exp.In(this=col(pk, None), query=exp.Subquery(this=wrapped))


def _decoders(pairs: list[tuple[str, Ref]]) -> tuple:
    return tuple((i, ref.decode) for i, (_, ref) in enumerate(pairs) if ref.decode is not None)


def statement(meta: Any, shape: tuple, backend: Any) -> tuple:
    """The builder and sqlglot tree of a plan shape: (builder, tree, result, columns, decoders)."""
    b = Builder(meta, backend)
    terminal = b.apply(number_slots(shape, [0]))
    op = terminal[0] if terminal else "select"
    return (b, *COMPILE[op](b, terminal))


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
    template.related = bool(b.joins)
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
    pairs, result = b.selection()
    return b.select(pairs), result, tuple(k for k, _ in pairs), _decoders(pairs)


def _needs_subquery(b: Builder) -> bool:
    return b.sliced or b.distinct or b.grouped()


def _count(b: Builder, terminal: tuple) -> tuple:
    if _needs_subquery(b):
        pairs, _ = b.selection()
        inner = b.select(pairs, with_order=b.sliced)
        outer = b.subquery(inner).select(exp.Count(this=exp.Star()), copy=False)
    else:
        outer = b.filtered(b.from_(exp.Select(expressions=[exp.Count(this=exp.Star())])))
    return outer, "count", (), ()


def _exists(b: Builder, terminal: tuple) -> tuple:
    one = exp.Alias(this=exp.Literal.number(1), alias=ident("a"))
    if _needs_subquery(b):
        pairs, _ = b.selection()
        outer = b.subquery(b.select(pairs, with_order=b.sliced)).select(one, copy=False)
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
    # Aggregate over the plan's own rows: select each argument in a subquery first.
    pairs, _ = b.selection()
    inner_pairs = list(pairs)
    outer_pairs = []
    for i, (name, node) in enumerate(items):
        _, fn, arg, distinct = node
        if arg == "*":
            outer_pairs.append((name, b.aggregate(("agg", fn, "*", distinct))))
            continue
        ref = b.expr(arg)
        key = f"__a{i}"
        inner_pairs.append((key, ref))
        outer = Builder(b.meta, b.backend)
        outer.annotations[key] = Ref(col(key, "sub"), ref.kind, ref.decode, True, ref.field)
        outer_pairs.append((name, outer.aggregate(("agg", fn, ("F", key), distinct))))
    inner = b.select(inner_pairs, with_order=b.sliced)
    select = b.subquery(inner).select(
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
    _, names, rows = terminal
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


# --- the cache -------------------------------------------------------------------------------------


class ShapeCache:
    """An LRU of templates keyed by (model, dialect, shape), bounded in entries and in bytes.

    Lookups, inserts and evictions are thread-safe. A template's bytes are estimated
    (``Template.size``: its SQL text plus a cost per bind entry); one larger than the
    whole budget is returned but not kept. ``misses`` is counted under the lock and is
    exact; ``hits`` is counted without it (a hit stays a dictionary lookup), so threads
    racing on hits may lose increments: it is a statistic, never a correctness input.
    """

    def __init__(self, maxsize: int = 2048, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: collections.OrderedDict[Any, Template] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, meta: Any, shape: tuple, backend: Any) -> Template:
        key = (meta.key, backend.name, shape)
        data = self._data
        try:
            template = data[key]
        except KeyError:
            pass
        else:
            self.hits += 1
            if len(data) > self.maxsize // 2:  # only recency matters once the cache fills
                with self._lock:
                    if key in data:
                        data.move_to_end(key)
            return template
        template = build(meta, shape, backend)
        with self._lock:
            self.misses += 1
            old = data.pop(key, None)  # another thread compiled it meanwhile
            if old is not None:
                self.bytes -= old.size
            if template.size <= self.max_bytes:
                data[key] = template
                self.bytes += template.size
                self._evict()
        return template

    def _evict(self) -> None:
        """Drop least recently used templates until both bounds hold (lock held)."""
        data = self._data
        while data and (len(data) > self.maxsize or self.bytes > self.max_bytes):
            self.bytes -= data.popitem(last=False)[1].size

    def resize(self, maxsize: int | None = None, max_bytes: int | None = None) -> None:
        """New bounds: at most ``maxsize`` templates and ``max_bytes`` estimated bytes."""
        for name, value in (("size", maxsize), ("byte budget", max_bytes)):
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"compile cache {name} must be a positive integer, got {value!r}")
        with self._lock:
            self.maxsize = self.maxsize if maxsize is None else maxsize
            self.max_bytes = self.max_bytes if max_bytes is None else max_bytes
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


cache = ShapeCache()
