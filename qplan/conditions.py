"""Conditions: filter()/exclude() records as SQL, the part of the builder that reads
``Q`` trees, lookups and their negations (``Builder`` inherits ``Conditions``)."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from . import funcsql, subquerysql
from . import paths as P
from . import records as R
from .errors import NotSupportedError
from .sqlparts import COMPARISONS, LIKE_PATTERNS, Ref, Slot, col, ident, like_pattern


class Conditions:
    """Condition records as SQL (the builder's column/expr/param give the parts)."""

    def condition(self, node: Any, negated: bool) -> tuple[exp.Expression, bool]:
        """SQL for a condition record; also whether it refers to an aggregate."""
        tag = node[0]
        if tag == "!":
            if self.crosses_many(node[1]):  # the exact complement: NOT (pk IN positive rows)
                return exp.Not(this=exp.Paren(this=self.pk_in(node[1]))), False
            inner, agg = self.condition(node[1], not negated)
            return exp.Not(this=exp.Paren(this=inner)), agg
        if tag == "exists":
            return subquerysql.condition(self, node)
        if tag == "if":
            return self.boolean(node[1])
        if tag == "^":  # an odd number true; UNKNOWN counts as false, so NOT stays two-valued
            parts = [self.condition(c, False) for c in node[1]]
            ones = [exp.Case(ifs=[exp.If(this=p[0], true=exp.Literal.number(1))],
                             default=exp.Literal.number(0)) for p in parts]
            total = ones[0]
            for one in ones[1:]:
                total = exp.Add(this=total, expression=one)
            odd = exp.EQ(this=exp.Mod(this=exp.Paren(this=total), expression=exp.Literal.number(2)),
                         expression=exp.Literal.number(1))
            return exp.Paren(this=odd), any(p[1] for p in parts)
        if tag in ("&", "|"):
            parts = [self.condition(c, negated) for c in node[1]]
            joined = exp.and_(*[p[0] for p in parts], copy=False) if tag == "&" else \
                exp.or_(*[p[0] for p in parts], copy=False)
            return exp.Paren(this=joined), any(p[1] for p in parts)
        return self.leaf(node, negated)

    def boolean(self, node: tuple) -> tuple[exp.Expression, bool]:
        """A boolean expression as a condition: NULL counts as false (``COALESCE(x,
        FALSE)``), so the condition is never UNKNOWN and its NOT is the exact complement."""
        ref = self.expr(node)
        sql = ref.sql
        if ref.nullable:
            sql = exp.Coalesce(this=sql, expressions=[exp.false()])
        elif not isinstance(sql, (exp.Exists, exp.Predicate)):  # a bare CASE / column
            sql = exp.Paren(this=sql)
        return sql, ref.aggregate

    def leaf(self, node: tuple, negated: bool) -> tuple[exp.Expression, bool]:
        path, lookup, rhs = node
        lhs = self.column(path)
        if R.SEP in lookup:  # transforms first: published__year__gte
            *names, lookup = lookup.split(R.SEP)
            for name in names:
                lhs = funcsql.transform(self, lhs, name)
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
        elif lookup == "regex" or lookup == "iregex":
            rhs_ref = self.expr(rhs)
            sql = funcsql.regex_match(self, target, rhs_ref.sql, lookup == "iregex")
        elif lookup == "in" and type(rhs) is tuple:  # ("query", key, records)
            sql = exp.In(this=target, query=exp.Subquery(this=self.subquery(rhs[1], rhs[2])))
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
        # keep NOT two-valued: a NULL never makes a row vanish from exclude(); but a NULL
        # Subquery does (Django adds IS NOT NULL for nullable columns only)
        if negated:
            for ref in (lhs, rhs_ref):
                if ref is not None and ref.nullable and not isinstance(ref.sql, exp.Subquery):
                    sql = exp.and_(sql, exp.Not(this=exp.Is(this=ref.sql, expression=exp.Null())),
                                   copy=False)
            sql = exp.Paren(this=sql)
        return sql, lhs.aggregate or bool(rhs_ref and rhs_ref.aggregate)

    def crosses_many(self, node: Any) -> bool:
        """True when a condition record refers to a path across a multi-valued relation;
        ``NotSupportedError`` when it also refers to an annotation (the complement is
        computed in a subquery, which cannot see this statement's annotations)."""
        found = [P.resolve_path(self.meta, p) for p in _condition_paths(node)
                 if p not in self.annotations]
        if not any(P.many(r.hops) or (r.end is not None and r.end.many) for r in found):
            return False
        if any(p in self.annotations for p in _condition_paths(node)):
            raise NotSupportedError("a negated condition across a multi-valued relation "
                                    "cannot refer to an annotation")
        return True

    def pk_in(self, node: Any) -> exp.Expression:
        """``pk IN (SELECT pk ... WHERE node)``: the rows some joined combination of related
        rows satisfies ``node`` for, as filter() finds them; its NOT is their exact
        complement even where related rows are missing or NULL. A derived table: MariaDB
        does not read the table an UPDATE or DELETE writes in a plain subquery."""
        inner = type(self)(self.meta, self.backend)
        inner.binds = self.binds
        inner.scope = 0
        subquerysql.alias_like(inner, self)
        sql, _ = inner.condition(node, False)
        pk = self.meta.pk.column
        select = inner.from_(exp.Select(expressions=[col(pk, inner.table)])).where(sql, copy=False)
        wrapped = exp.Select(expressions=[col(pk, "excl")]).from_(
            exp.Subquery(this=select, alias=exp.TableAlias(this=ident("excl"))), copy=False)
        self.subqueries = True
        return exp.In(this=col(pk, self.table), query=exp.Subquery(this=wrapped))


def _condition_paths(node: Any) -> list[str]:
    """The paths a condition record names: its leaves' and their ``F()`` references'."""
    tag = node[0]
    if tag in ("&", "|", "^"):
        return [p for child in node[1] for p in _condition_paths(child)]
    if tag == "!":
        return _condition_paths(node[1])
    if tag == "exists":  # its paths are its own model's
        return []
    if tag == "if":
        return _refs(node[1])
    return [tag, *_refs(node[2])]


def _refs(node: Any) -> list[str]:
    if type(node) is not tuple or not node or node[0] in (R.VALUE, "query"):
        return []
    if node[0] == "F" and len(node) == 2:
        return [node[1]]
    if node[0] == "case" and len(node) == 4:  # its When conditions name paths too
        return [p for cond, then in node[1] for p in (*_condition_paths(cond), *_refs(then))] \
            + _refs(node[2])
    return [p for child in node[1:] for p in _refs(child)]
