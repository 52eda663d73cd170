"""Rebuild a plan from its records through the public API: loaded plans pass the build checks.

A payload's records could say anything a tuple can hold. ``replay`` turns each record
back into the call that makes it (``filter(Q(...))``, ``annotate(n=Count("id"))``,
``bulk_create_plan([...])``...), runs that call on the model's root plan, and
requires the record it gets back to be *exactly* the record the payload holds:
same types, same values, same offsets. So every check a plan built in code passes
(known commands and their order, field paths and lookups, every value cleaned by its
field: range, NaN, type; annotation and aggregate aliases) also holds for a loaded
plan, with no second copy of the rules to drift. Errors are the build errors
(``FieldError``, ``PlanError``), which the loaders report as ``UnsafePayload``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable

from . import conflicts, ordering
from . import records as R
from .errors import PlanError
from . import funcreplay
from .expressions import (ARITHMETIC, Avg, Combined, Count, ExpressionWrapper, F, Max, Min, Q,
                          StdDev, Sum, Variance)
from .models import get_model
from .plan import SLICE_LIMIT, Plan
from .prefetch import ITEM, Prefetch
from .functions import Value
from .subqueries import Exists, OuterRef, Subquery

AGGREGATES = {"count": Count, "sum": Sum, "avg": Avg, "min": Min, "max": Max,
              "stddev_pop": StdDev, "stddev_samp": StdDev, "var_pop": Variance,
              "var_samp": Variance}


def replay(model: Any, records: tuple, alias: str | None) -> Plan:
    """The plan ``records`` stand for, built through the API; ``PlanError`` when they differ."""
    plan: Plan = model.objects
    for i, record in enumerate(records):
        op = record[0]
        step = STEPS.get(op)
        if step is None:
            raise PlanError(f"record {i} is an unknown command {op!r:.40}")
        plan = step(plan, record)
        if not same(plan.records[-1], record):
            raise PlanError(f"record {i} ({op}) is not what {op}() builds from its own values: "
                            f"{record!r:.120}")
    if len(plan.records) != len(records):  # a slice merged into the slice before it
        raise PlanError("records are not what the calls they name build")
    return plan.using(alias)


def same(a: Any, b: Any) -> bool:
    """``a == b`` with equal types all the way down, and equal UTC offsets for times."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is tuple:
        if len(a) != len(b):
            return False
        for x, y in zip(a, b):
            if x is not y and not same(x, y):
                return False
        return True
    if kind is _dt.datetime or kind is _dt.time:
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


# --- records back into calls ----------------------------------------------------------------------


def _fields(record: tuple, n: int) -> tuple:
    if len(record) != n:
        raise PlanError(f"a {record[0]} record has {len(record)} parts, expected {n}")
    return record


def _names(node: Any, what: str) -> tuple[str, ...]:
    if type(node) is not tuple or not all(type(n) is str for n in node):
        raise PlanError(f"{what} names are not a tuple of str: {node!r:.80}")
    return node


def _order_terms(node: Any) -> list[Any]:
    """order_by() arguments: names, and ``OrderBy`` for expression terms (qplan.ordering)."""
    if type(node) is not tuple:
        raise PlanError(f"order_by names are not a tuple: {node!r:.80}")
    try:
        return [ordering.as_order_by(t, expression) if type(t) is tuple else _names((t,), "order_by")[0]
                for t in node]
    except ValueError as exc:
        raise PlanError(str(exc)) from None


def _flag(node: Any, what: str) -> bool:
    if type(node) is not bool:
        raise PlanError(f"{what} is not a bool: {node!r:.40}")
    return node


def expression(node: Any) -> Any:
    """An expression record as the ``F`` / arithmetic / aggregate / value it was made from."""
    if type(node) is not tuple or not node:
        raise PlanError(f"not an expression: {node!r:.80}")
    tag = node[0]
    if tag == R.VALUE and len(node) == 2:
        return node[1]
    if tag == "F" and len(node) == 2 and type(node[1]) is str:
        return F(node[1])
    if tag == "agg" and len(node) in (4, 5) and type(node[1]) is str and node[1] in AGGREGATES:
        return _aggregate(node)
    if tag == "as" and len(node) == 3 and type(node[1]) is str:
        return ExpressionWrapper(expression(node[2]), output_field=node[1])
    if tag in funcreplay.TAGS:
        return funcreplay.rebuild(node, expression, _q)
    if tag in ARITHMETIC and len(node) == 3:
        return Combined(tag, expression(node[1]), expression(node[2]))
    if tag in ("subquery", "exists", "outer", "!") and len(node) == 2:
        return _subquery(node)
    raise PlanError(f"not an expression: {node!r:.80}")


def _aggregate(node: tuple) -> Any:
    """An aggregate record (``qplan.aggregates``) as the aggregate it was made from."""
    arg = node[2] if node[2] == "*" else expression(node[2])
    kwargs: dict[str, Any] = {}
    if _flag(node[3], "an aggregate's distinct"):
        kwargs["distinct"] = True
    if node[1] in ("stddev_samp", "var_samp"):
        kwargs["sample"] = True
    if len(node) == 5:
        options = _items(node[4], "an aggregate's options")
        for name, value in options:
            if name == "filter":
                kwargs["filter"] = _q(value)
            elif name == "default" and type(value) is tuple and len(value) == 2 \
                    and value[0] == R.VALUE:
                kwargs["default"] = value[1]
            elif name == "default" and type(value) is tuple and value:  # an expression
                kwargs["default"] = expression(value)
            else:
                raise PlanError(f"not an aggregate option: {(name, value)!r:.80}")
    try:
        return AGGREGATES[node[1]](arg, **kwargs)
    except TypeError as exc:  # Count(default=...), StdDev(distinct=True)
        raise PlanError(f"not an aggregate: {node!r:.80} ({exc})") from None


def _subquery(node: tuple) -> Any:
    """A Subquery / Exists / ~Exists / OuterRef record as the object it was made from; the
    inner plan replayed too (its OuterRefs are checked when the object is added back)."""
    tag, arg = node
    if tag == "outer":
        return OuterRef(_subquery(arg) if type(arg) is tuple else arg)
    if tag == "!":
        inner = expression(arg)
        if not isinstance(inner, Exists):
            raise PlanError(f"not an expression: {node!r:.80}")
        return ~inner
    if type(arg) is not tuple or len(arg) != 3 or arg[0] != "query" or type(arg[1]) is not str \
            or type(arg[2]) is not tuple:
        raise PlanError(f"not a subquery record: {node!r:.80}")
    plan = replay(get_model(arg[1]), arg[2], None)
    return Subquery(plan) if tag == "subquery" else Exists(plan)


def _q(node: Any) -> Q:
    """A condition record as the ``Q`` that ``filter()`` turns back into it."""
    q = Q()
    if type(node) is tuple and len(node) == 2 and node[0] == "!":
        q.children, q.negated = (_child(node[1]),), True
    elif type(node) is tuple and len(node) == 2 and node[0] in ("&", "|", "^") and type(node[1]) is tuple:
        q.children, q.connector = tuple(_child(c) for c in node[1]), node[0]
    else:
        q.children = (_child(node),)
    return q


def _child(node: Any) -> Any:
    """A Q child: a ``(lookup key, value)`` pair for a leaf, a ``Q`` otherwise."""
    if type(node) is not tuple or not node:
        raise PlanError(f"not a condition: {node!r:.80}")
    if node[0] in ("!", "&", "|", "^"):
        return _q(node)
    if node[0] == "exists" and len(node) == 2:  # filter(Exists(...))
        return expression(node)
    if node[0] == "if" and len(node) == 2:  # filter(<boolean expression>)
        value = expression(node[1])
        return value if getattr(value, "conditional", False) else Value(value)
    if len(node) != 3 or type(node[0]) is not str or type(node[1]) is not str:
        raise PlanError(f"not a condition: {node!r:.80}")
    path, lookup, rhs = node
    if type(rhs) is bool:  # isnull, or exact on a BooleanField
        value = rhs
    elif type(rhs) is tuple and len(rhs) == 3 and rhs[0] == "query" and type(rhs[1]) is str \
            and type(rhs[2]) is tuple:  # field__in=plan: that plan, replayed too
        value = replay(get_model(rhs[1]), rhs[2], None)
    elif type(rhs) is tuple and len(rhs) == 2 and rhs[0] == R.VALUE:
        value = rhs[1]
    else:
        value = expression(rhs)
    return (f"{path}{R.SEP}{lookup}", value)


def _items(node: Any, what: str) -> list[tuple[str, Any]]:
    if type(node) is not tuple or not all(type(i) is tuple and len(i) == 2 for i in node):
        raise PlanError(f"{what} items are not (name, expression) pairs: {node!r:.80}")
    return list(node)


def _named(plan: Plan, node: Any, what: str) -> dict[str, Any]:
    items = _items(node, what)
    for name, _ in items:
        R.check_alias(plan._meta, name, what)
    return {name: expression(expr) for name, expr in items}


def _slice(plan: Plan, record: tuple) -> Plan:
    _, offset, limit = _fields(record, 3)
    bounds = []
    for node in (offset, limit):
        if node is None:
            bounds.append(None)
            continue
        if type(node) is not tuple or len(node) != 2 or node[0] != R.VALUE \
                or type(node[1]) is not int or not 0 <= node[1] < SLICE_LIMIT:
            raise PlanError(f"a slice bound is not a value node of an int in 0..2**63-1: {node!r:.60}")
        bounds.append(node[1])
    start = bounds[0] or 0
    return plan[start:None if bounds[1] is None else start + bounds[1]]


def _slice_per(plan: Plan, record: tuple) -> Plan:
    """A per-parent slice (``qplan.perslice``): its bounds are value nodes of ints."""
    _, path, start, stop = _fields(record, 4)
    bounds = []
    for node in (start, stop):
        if node is not None and (type(node) is not tuple or len(node) != 2 or node[0] != R.VALUE
                                 or type(node[1]) is not int):
            raise PlanError(f"a per-parent slice bound is not a value node of an int: {node!r:.60}")
        bounds.append(None if node is None else node[1])
    return plan._slice_per(path, bounds[0] or 0, bounds[1])


def _update(plan: Plan, record: tuple) -> Plan:
    kwargs = {}
    for name, node in _items(_fields(record, 2)[1], "update"):
        field = plan._meta.get_field(name)
        if type(node) is tuple and len(node) == 2 and node[0] == R.VALUE:
            kwargs[name] = field.from_record(node[1])
        else:
            kwargs[name] = expression(node)
    return plan.update_plan(**kwargs)


def _insert(plan: Plan, record: tuple) -> Plan:
    _, names, rows, *option = _fields(record, 4) if len(record) == 4 else _fields(record, 3)
    meta = plan._meta
    fields = [meta.get_field(name) for name in _names(names, "insert")]
    if type(rows) is not tuple:
        raise PlanError("insert rows are not a tuple")
    objs = []
    for row in rows:
        if type(row) is not tuple or len(row) != len(fields):
            raise PlanError(f"an insert row does not hold one value per column: {row!r:.80}")
        obj = meta.model.__new__(meta.model)
        for field, node in zip(fields, row):
            if type(node) is not tuple or len(node) != 2 or node[0] != R.VALUE:
                raise PlanError(f"an insert row holds {node!r:.60}, not a value node")
            obj.__dict__[field.attname] = field.from_record(node[1])
        objs.append(obj)
    if not option:
        return plan.bulk_create_plan(objs)
    checked = conflicts.check_record(meta, option[0])
    return plan.bulk_create_plan(objs, ignore_conflicts=checked[0] == "ignore",
                                 update_conflicts=checked[0] == "update",
                                 update_fields=checked[1] if len(checked) == 3 else None,
                                 unique_fields=checked[2] if len(checked) == 3 else None)


def _prefetch_related(plan: Plan, record: tuple) -> Plan:
    """Each item back into its lookup or ``Prefetch``, the queryset plan replayed too."""
    if len(record) < 2:
        raise PlanError("a prefetch_related record holds no lookups")
    lookups: list[Any] = []
    for item in record[1:]:
        if type(item) is str:
            lookups.append(item)
            continue
        if type(item) is not tuple or len(item) != 4 or item[0] != ITEM or type(item[1]) is not str \
                or not (item[2] is None or type(item[2]) is str):
            raise PlanError(f"not a prefetch item: {item!r:.80}")
        query = item[3]
        queryset = None
        if query is not None:
            if type(query) is not tuple or len(query) != 3 or query[0] != "query" \
                    or type(query[1]) is not str or type(query[2]) is not tuple:
                raise PlanError(f"a Prefetch queryset is not a query record: {query!r:.80}")
            queryset = replay(get_model(query[1]), query[2], None)
        lookups.append(Prefetch(item[1], queryset=queryset, to_attr=item[2]))
    return plan.prefetch_related(*lookups)


def _combine(plan: Plan, record: tuple) -> Plan:
    """``("combine", op, all, ((key, records), ...))``: each operand replayed, then combined
    by the method named; only as a plan's first record, its first operand of this model."""
    _, op, all_, operands = _fields(record, 4)
    if plan.records:
        raise PlanError("a combine record can only be a plan's first record")
    if op not in ("union", "intersection", "difference"):
        raise PlanError(f"not a set operation: {op!r:.40}")
    if type(operands) is not tuple or not operands or not all(
            type(o) is tuple and len(o) == 2 and type(o[0]) is str and type(o[1]) is tuple
            for o in operands):
        raise PlanError(f"combine operands are not (model key, records) pairs: {operands!r:.80}")
    if operands[0][0] != plan._key:
        raise PlanError(f"a combine record's first operand is not a {plan._key} plan")
    first, *others = [replay(get_model(key), records, None) for key, records in operands]
    if op == "union":
        return first.union(*others, all=_flag(all_, "union all"))
    if all_ is not False:
        raise PlanError(f"{op}() has no all=True")
    return getattr(first, op)(*others)


STEPS: dict[str, Callable[[Plan, tuple], Plan]] = {
    "filter": lambda p, r: p.filter(_q(_fields(r, 2)[1])),
    "exclude": lambda p, r: p.exclude(_q(_fields(r, 2)[1])),
    "order_by": lambda p, r: p.order_by(*_order_terms(_fields(r, 2)[1])),
    "slice": _slice,
    "slice_per": _slice_per,
    "values": lambda p, r: p.values(*_names(_fields(r, 2)[1], "values")),
    "values_list": lambda p, r: p.values_list(
        *_names(_fields(r, 4)[1], "values_list"), flat=_flag(r[2], "values_list flat"),
        named=_flag(r[3], "values_list named")),
    "distinct": lambda p, r: _fields(r, 1) and p.distinct(),
    "select_related": lambda p, r: p.select_related(*r[1:]),
    "annotate": lambda p, r: p.annotate(**_named(p, _fields(r, 2)[1], "annotation")),
    "aggregate": lambda p, r: p.aggregate_plan(**_named(p, _fields(r, 2)[1], "aggregate")),
    "count": lambda p, r: _fields(r, 1) and p._add(("count",)),
    "exists": lambda p, r: _fields(r, 1) and p._add(("exists",)),
    "update": _update,
    "delete": lambda p, r: _fields(r, 1) and p.delete_plan(),
    "insert": _insert,
    "prefetch_related": _prefetch_related,
    "alias": lambda p, r: p.alias(**_named(p, _fields(r, 2)[1], "annotation")),
    "none": lambda p, r: _fields(r, 1) and p.none(),
    "only": lambda p, r: p.only(*_names(_fields(r, 2)[1], "only")),
    "defer": lambda p, r: p.defer(*((None,) if _fields(r, 2)[1] is None
                                    else _names(r[1], "defer"))),
    "select_for_update": lambda p, r: p.select_for_update(
        nowait=_flag(_fields(r, 5)[1], "nowait"), skip_locked=_flag(r[2], "skip_locked"),
        of=_names(r[3], "of"), no_key=_flag(r[4], "no_key")),
    "combine": _combine,
}
