"""The builder: one numbered plan shape folded into a sqlglot statement for one backend."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from . import aggregates, binding, funcsql, kinds, methodsql, selectrelated
from . import records as R
from .binding import SPREAD
from .errors import FieldError, NotSupportedError, PlanError
from . import paths as P
from . import perslicesql, subquerysql
from .fields import DecimalField, Field
from .models import get_model
from .conditions import Conditions
from .sqlparts import (ARITHMETIC, FIELD_KIND, Ref, Slot, col, ident)

class Builder(Conditions):
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
        self.order: tuple[str, ...] = meta.ordering  # Meta.ordering until an order_by()
        self.default_order = True  # no order_by() record: the order is Meta.ordering
        self.offset: Slot | None = None
        self.limit: Slot | None = None
        self.sliced = False
        self.per: tuple | None = None  # a slice_per record (qplan.perslicesql)
        self.distinct = False
        self.values: tuple | None = None  # ("values", names) / ("values_list", names, flat, named)
        self.group_values = False  # values() came before an aggregate annotate()
        self.group_keys: list[exp.Expression] | None = None  # kept by a later values()
        self.late: list[str] = []  # annotations made after values(): selected too
        self.allow_joins = True
        self.order_refs: list[Ref] = []  # the references order_by() resolved to
        self.subqueries = False  # a field__in=plan subquery: other models are read
        self.scope: int | None = None  # the filter() record being built: its own many-joins
        self.latest: dict[str, str] = {}  # a multi-valued join's path -> its latest join key
        self.value_refs: dict[str, Ref] = {}  # values() names resolved where values() came
        self.select_related: tuple = ()  # the plan's select_related records
        self.related_refs: list[Ref] = []  # their columns, once selected
        self.nested: tuple | None = None  # (own columns, entries): see ``related_pairs``
        self.outer: Builder | None = None  # the enclosing statement's, in a subquery
        self.depth = 0  # how many subqueries deep (``qplan.subquerysql``)
        self.prefix = ""  # of join aliases: a subquery's differ from the enclosing ones
        # qplan.methodsql: alias() names (never selected), only()/defer() records, the
        # select_for_update() record, and the class only()/defer() rows are made of
        self.hidden, self.loading_records, self.lock, self.deferred_model = set(), (), None, None

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
        """A field path as a column, joining the related tables it passes through (either
        way, ``qplan.paths``); a path ending on a relation is the related primary key."""
        if path in self.annotations:
            return self.annotations[path]
        found = P.resolve_path(self.meta, path)
        if (found.hops or found.end is not None) and not self.allow_joins:
            raise NotSupportedError(f"{path!r}: this statement cannot refer to related fields")
        table, key, nullable = self.table, "", False
        for rel in found.hops:
            key, table = self.hop(rel, key, table, len(rel.steps), nullable)
            nullable = nullable or rel.nullable
        end = found.end
        if end is not None:
            joins, column = end.pk_column
            key, table = self.hop(end, key, table, joins, nullable)
            return self.field_ref(found.field, table, True, column)
        field = found.field
        return self.field_ref(field, table, nullable or field.null)

    def hop(self, rel: Any, parent: str, table: str, steps: int,
            after_left: bool = False) -> tuple[str, str]:
        """Join the first ``steps`` tables of relation ``rel`` from the join ``parent``
        (``table`` its alias); the new join key and alias. A single-valued join is shared by
        every reference with its path; a multi-valued one (reverse foreign key,
        many-to-many) by the references of one filter() record (``scope``), and elsewhere
        the most recent one of its path is reused (Django's rule).

        INNER JOIN where the related row is always there: a non-null forward foreign key
        (or one-to-one) reached through INNER joins only (``after_left`` False), on a
        backend enforcing foreign keys. There INNER and LEFT give the same rows whatever
        the conditions (OR, NOT, exclude's complement) say, and INNER lets the database
        plan the join freely (Django's rule). LEFT JOIN everywhere else, and on a backend
        whose planner does worse with INNER (``INNER_JOINS``: MariaDB)."""
        backend = self.backend
        inner = (not after_left and rel.kind == "forward" and not rel.nullable
                 and backend.ENFORCES_FOREIGN_KEYS and backend.INNER_JOINS)
        base = f"{parent}{R.SEP}{rel.name}" if parent else rel.name
        key = base
        if rel.many:
            if self.scope is not None:
                key = f"{base}#{self.scope}"
            else:
                key = self.latest.get(base) or f"{base}#a{len(self.joins)}"
            self.latest[base] = key
        for i, step in enumerate(rel.steps[:steps]):
            step_key = key if i == len(rel.steps) - 1 else f"{key}/{i}"
            if step_key not in self.joins:
                alias = f"{self.prefix}T{len(self.joins) + 1}"
                on = exp.EQ(this=col(step.left_column, table), expression=col(step.right_column, alias))
                self.join_sql.append(exp.Join(
                    this=exp.Table(this=ident(step.right.db_table), alias=exp.TableAlias(this=ident(alias))),
                    side="" if inner else "LEFT", kind="INNER" if inner else None, on=on))
                self.joins[step_key] = (alias, step.right)
            table = self.joins[step_key][0]
        return key, table

    def field_ref(self, field: Field, table: str | None, nullable: bool, column: str | None = None) -> Ref:
        kind = field.internal_type
        decode = (None if nullable else self.backend.DECODE_NOT_NULL.get(kind)) or \
            self.backend.DECODE.get(kind)
        if isinstance(field, DecimalField) and decode is not None:  # same scale on every backend
            decode = (lambda v, f=field, d=decode: None if v is None else f.quantize(d(v)))
        return Ref(col(column or field.column, table), FIELD_KIND.get(kind), decode, nullable, field)

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
        if tag in subquerysql.TAGS:  # Subquery, Exists, ~Exists, OuterRef
            return subquerysql.expr(self, node)
        if tag == "agg":
            return self.aggregate(node)
        if tag == "fn" or tag == "case":  # qplan.functions
            return funcsql.expr(self, node)
        if tag == "as":  # ExpressionWrapper: the SQL as is, read as the field it names
            ref, kind = self.expr(node[2]), FIELD_KIND[node[1]]
            decode = self.backend.DECODE.get(node[1]) or self.backend.DECODE_KIND.get(kind)
            return Ref(ref.sql, kind, decode, ref.nullable, aggregate=ref.aggregate)
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
        fn, arg, distinct = node[1], node[2], node[3]
        options = aggregates.options_of(node)  # filter=, default= (qplan.aggregates)
        cond = options.get("filter")
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
        where = None
        if cond is not None:
            where = self.condition(cond, False)[0]
            if not self.backend.aggregate_filter:  # CASE WHEN cond THEN x END (MariaDB)
                inner, where = self.when(where, inner), None
        if distinct:
            inner = exp.Distinct(expressions=[inner])
        sql = self.backend.aggregate(fn, inner, kind)
        if where is not None:  # FILTER (WHERE cond)
            sql = exp.Filter(this=sql, expression=exp.Where(this=where))
        decode_kind = self.backend.DECODE_KIND
        kind = kinds.of_aggregate(fn, kind)  # Sum of booleans is a number, Avg a float...
        if field is not None and fn in ("min", "max"):
            decode = self.backend.DECODE.get(field.internal_type)
        else:
            decode = decode_kind.get(kind or "")
        if isinstance(field, DecimalField) and fn in ("sum", "min", "max"):
            base = decode_kind["decimal"]
            decode = (lambda v, f=field, b=base: None if v is None else f.quantize(b(v)))
        default = options.get("default")
        if default is not None:  # Django 5.2: Coalesce(aggregate, default)
            fallback = self.expr(default)  # Min/Max of text compare by code point: so does it
            fallback_sql = self.compare(fallback) if fn in ("min", "max") else fallback.sql
            sql = exp.Coalesce(this=sql, expressions=[fallback_sql])
        return Ref(sql, kind, decode, default is None, aggregate=True)

    def case_arg(self, arg: Any, cond: tuple) -> Ref:
        """An aggregate's argument under its ``filter=``: ``CASE WHEN cond THEN arg END``."""
        where = self.condition(cond, False)[0]
        if arg == "*":
            return Ref(self.when(where, exp.Star()), "int", None, True)
        ref = self.expr(arg)
        return Ref(self.when(where, ref.sql), ref.kind, ref.decode, True, ref.field)

    @staticmethod
    def when(condition: exp.Expression, value: exp.Expression) -> exp.Expression:
        """``CASE WHEN condition THEN value END`` (``*``: 1): an aggregate's filter where
        the database has no ``FILTER (WHERE ...)``."""
        then = exp.Literal.number(1) if isinstance(value, exp.Star) else value
        return exp.Case(ifs=[exp.If(this=condition, true=then)])

    # the statement
    def apply(self, records: tuple) -> tuple:
        """Fold the plan's records into builder state; return the terminal record, if any."""
        for record in records:
            op = record[0]
            if op in ("filter", "exclude"):
                self.scope = len(self.joins)  # unique: this record's multi-valued joins
                if op == "exclude" and self.crosses_many(record[1]):
                    cond, agg = exp.Not(this=exp.Paren(this=self.pk_in(record[1]))), False
                else:
                    cond, agg = self.condition(record[1], op == "exclude")
                    if op == "exclude":
                        cond = exp.Not(this=exp.Paren(this=cond))
                self.scope = None
                (self.having if agg else self.where).append(cond)
            elif op == "order_by":
                self.order, self.default_order = record[1], False
            elif op == "slice":
                self.sliced = True
                self.offset, self.limit = record[1], record[2]
            elif op == "slice_per":
                self.per = record
            elif op == "distinct":
                self.distinct = True
            elif op == selectrelated.OP:
                self.select_related += (record,)
            elif op in ("values", "values_list"):
                if self.group_values and self.group_keys is None:
                    # values() after values().annotate(aggregate): the groups stay (Django)
                    self.group_keys = [r.sql for _, r in self.selection()[0] if not r.aggregate]
                self.values, self.late = record, []
                self.value_refs = self.multi_valued_refs(record[1])
            elif op == "annotate":
                for name, node in record[1]:
                    ref = self.expr(node)
                    if self.values is not None:
                        self.group_values = self.group_values or ref.aggregate
                        self.late.append(name)
                    self.annotations[name] = ref
                    self.hidden.discard(name)
            elif op in methodsql.OPS:
                methodsql.apply(self, record)
            else:
                return record
        return ()

    def grouped(self) -> bool:
        return any(ref.aggregate for ref in self.annotations.values()) or \
            any(ref.aggregate for ref in self.order_refs)  # order_by(Sum(...)): qplan.ordering

    def selection(self, related: bool = False) -> tuple[list[tuple[str, Ref]], str]:
        """The selected (key, reference) pairs and the result kind; ``related``: with the
        select_related columns (rows of instances only: counts and aggregates ignore it)."""
        if self.values is None:
            pairs = [(f.attname, self.field_ref(f, self.table, f.null))
                     for f in methodsql.fields(self, self.meta)]
            pairs += [(k, r) for k, r in self.annotations.items() if k not in self.hidden]
            if related and self.select_related:
                pairs += self.related_pairs(len(pairs))
            return pairs, "models"
        names = self.values[1] + tuple(n for n in self.late if n not in self.values[1])
        refs = self.value_refs
        pairs = [(name, refs.get(name) or self.column(self.value_path(name))) for name in names]
        if self.values[0] == "values":
            return pairs, "dicts"
        return pairs, "flat" if self.values[2] else ("named" if self.values[3] else "tuples")

    def multi_valued_refs(self, names: tuple[str, ...]) -> dict[str, Ref]:
        """values() names across multi-valued relations, joined where values() comes (as
        Django does): a later filter() gets its own joins, a later annotate() reuses these.
        Other names are resolved when selected (they may name later annotations)."""
        refs = {}
        for name in names:
            if name in self.annotations:
                continue
            try:
                found = P.resolve_path(self.meta, self.value_path(name))
            except FieldError:
                continue
            if P.many(found.hops) or (found.end is not None and found.end.many):
                refs[name] = self.column(found.path)
        return refs

    def related_pairs(self, start: int) -> list[tuple[str, Ref]]:
        """The columns of every select_related model after the plan's own (and its
        annotations'), through the joins filters share; sets ``nested`` to how rows split:
        ``(start, ((parent, cache attribute, model, first, stop, attnames, pk index, back
        cache attribute or None), ...))``, parent -1 for the plan's model, else the index of
        the entry it hangs from (``selectrelated.caches``)."""
        pairs: list[tuple[str, Ref]] = []
        entries: list[tuple] = []
        index: dict[str, int] = {}
        for path, rel in selectrelated.chains(self.meta, self.select_related).items():
            target = rel.target
            first = start + len(pairs)
            loaded = methodsql.fields(self, target, path)
            for f in loaded:
                pairs.append((path + R.SEP + f.name, self.column(path + R.SEP + f.name)))
            parent = path.rpartition(R.SEP)[0]
            cache, back = selectrelated.caches(rel)
            entries.append((index[parent] if parent else -1, cache,
                            methodsql.instance_class(target, loaded),
                            first, start + len(pairs), tuple(f.attname for f in loaded),
                            first + loaded.index(target.pk), back))
            index[path] = len(entries) - 1
        self.related_refs = [ref for _, ref in pairs]
        self.nested = (start, tuple(entries))
        return pairs

    def value_path(self, name: str) -> str:
        """The canonical path of a name given to values(): ``pk``, ``author_id`` and
        ``author__id`` name local columns; the row keeps the name as written."""
        if name in self.annotations:
            return name
        field = self.meta.by_attname.get(name)
        if field is not None and field.is_relation:
            return field.name
        return R.resolve_path(self.meta, name.split(R.SEP), self.meta.model.__name__)[0]

    def from_(self, select: exp.Select) -> exp.Select:
        table = exp.Table(this=ident(self.meta.db_table))
        if self.table != self.meta.db_table:  # a correlated subquery's own alias
            table.set("alias", exp.TableAlias(this=ident(self.table)))
        select = select.from_(table, copy=False)
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
            keys = list(self.group_keys or ())  # then what is selected, as Django groups
            keys += [ref.sql for _, ref in pairs if not ref.aggregate and ref.sql not in keys]
            for ref in self.order_refs:
                if not ref.aggregate and ref.sql not in keys:
                    raise NotSupportedError(
                        "order_by() of a grouped values() plan may only name grouped values "
                        "or aggregates (PostgreSQL refuses the rest, the others pick any row)")
        else:  # every column of the table: joined order columns depend on them, add them too
            keys = [col(f.column, self.table) for f in self.meta.fields]
            keys += [r.sql for r in self.order_refs if not r.aggregate and r.sql not in keys]
            keys += [r.sql for r in self.related_refs if r.sql not in keys]
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
            nulls = None
            if type(name) is tuple:  # ("expr", expression, descending, nulls): qplan.ordering
                _, node, desc, nulls = name
                ref = self.expr(node)
            else:
                desc = name.startswith("-")
                ref = self.column(name.lstrip("-"))
            if ref.kind == "json":
                raise NotSupportedError(f"order_by({name!r}): JSON values have no portable order")
            self.order_refs.append(ref)
            # NULLs sort smallest everywhere; where a column cannot be NULL the database's
            # own order is kept, so PostgreSQL still walks an index instead of sorting.
            smallest = ref.nullable or self.backend.null_order_small
            nulls_first = not desc if smallest else desc
            if nulls is not None and not self.backend.nulls_placement:  # MariaDB
                # ``x IS NULL`` first (sqlglot's own emulation would repeat x's placeholders
                # unbound); the expression built again binds its values once more
                again = self.expr(name[1]).sql
                terms.append(exp.Ordered(this=exp.Paren(this=exp.Is(this=again, expression=exp.Null())),
                                         desc=nulls == "first", nulls_first=nulls != "first"))
                nulls_first = not desc  # the database's own order: nothing more to emulate
            elif nulls is not None:  # Django's explicit nulls_first/nulls_last
                nulls_first = nulls == "first"
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
        if self.per is not None:
            return perslicesql.select(self, pairs)
        select = exp.Select(expressions=[exp.Alias(this=r.sql, alias=ident(k)) if not (
            isinstance(r.sql, exp.Column) and r.sql.name == k) else r.sql for k, r in pairs])
        if self.default_order and self.order and self.grouped():
            self.order = ()  # Django: Meta.ordering is not used in GROUP BY queries
        terms = self.order_terms() if with_order else []
        if self.default_order and self.distinct and terms and any(
                ref.sql not in [r.sql for _, r in pairs] for ref in self.order_refs):
            terms, self.order_refs = [], []  # a default order of columns distinct() drops
        if self.distinct:
            select = self._distinct(select, pairs)
        select = self.group(self.filtered(self.from_(select)), pairs)
        if terms:
            select = select.order_by(*terms, copy=False)
        if with_order:
            select = self.paged(select)
        return select

    def subquery(self, key: str, records: tuple) -> exp.Select:
        """The one-column SELECT of a plan in ``field__in=plan``, numbered with this
        statement's placeholders; a sliced one, or one reading the outer table, inside a
        derived table (MariaDB has no LIMIT in an IN subquery, nor reads the table an
        UPDATE or DELETE writes)."""
        meta = get_model(key)._meta
        inner = Builder(meta, self.backend)
        inner.binds = self.binds
        pairs = subquerysql.selected(self, inner, records)
        select = inner.select(pairs, with_order=inner.sliced)
        if not inner.sliced and meta.db_table != self.table:
            return select
        return exp.Select(expressions=[col(pairs[0][0], "sub")]).from_(
            exp.Subquery(this=select, alias=exp.TableAlias(this=ident("sub"))), copy=False)

    def derived(self, inner: exp.Select) -> exp.Select:
        return exp.Select().from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=ident("sub"))),
                                  copy=False)

    def pk_subquery(self) -> exp.Expression:
        """``pk IN (SELECT pk ...)`` for writes whose filters need joins (derived table: MySQL)."""
        pk = self.meta.pk.column
        inner = self.filtered(self.from_(exp.Select(expressions=[col(pk, self.table)])))
        wrapped = exp.Select(expressions=[col(pk, None)]).from_(
            exp.Subquery(this=inner, alias=exp.TableAlias(this=ident("sub"))), copy=False)
        return exp.In(this=col(pk, None), query=exp.Subquery(this=wrapped))

