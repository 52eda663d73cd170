"""Set operations on plans: ``union()``, ``intersection()`` and ``difference()`` (Django 5.2).

``a.union(b, c, all=False)`` is a plan of ``a``'s model whose first record is

    ("combine", op, all, ((model key, records), ...))

with ``op`` one of ``"union"``, ``"intersection"``, ``"difference"``, ``all`` a bool (only
``union`` takes ``all=True``, as in Django) and one ``(key, records)`` pair per operand,
``a`` first (an operand may itself be combined: its records start with a combine record).
Later records apply to the combined rows, and only the ones Django allows there are
accepted: ``order_by()`` and ``values()``/``values_list()`` naming the combined columns,
slicing, ``count()``, ``exists()`` (so iteration, ``first()``, ``last()``, ``get()``
without arguments); anything else raises ``NotSupportedError`` as Django does.

Operands select the same columns: model plans of the same model (with the same
annotations), or ``values()``/``values_list()`` plans of the same width whose columns
have the same kinds; otherwise ``FieldError`` names the first mismatch. The combined
columns are named as the first operand's. ``values()`` after combining model plans
selects those columns in every operand (duplicates are then judged on them, Django's
meaning); after combining ``values()`` plans it picks among their columns. An
operand's own ``order_by()`` only matters with a slice: a sliced operand runs as a
derived table, so it works the same on every backend. This module is the plan side
(records and build checks); ``qplan.compound`` compiles them.
"""

from __future__ import annotations

from typing import Any

from . import kinds, ordering
from . import records as R
from .errors import FieldError, NotSupportedError, PlanError, suggest
from .models import get_model

OP = "combine"
OPERATIONS = ("union", "intersection", "difference")
# What may follow a combine record: Django's LIMIT, OFFSET, COUNT(*), ORDER BY, values().
ALLOWED = frozenset({"order_by", "slice", "values", "values_list", "count", "exists"})
# The method named in the error for a record that may not follow (Django's wording).
METHOD = {"insert": "bulk_create", "update": "update", "delete": "delete"}
TERMINAL = frozenset({"count", "exists", "aggregate", "update", "delete", "insert"})


class SetOperations:
    """The set operation methods of ``Plan`` (see the module docstring)."""

    __slots__ = ()

    def union(self, *other_qs: Any, all: bool = False) -> Any:  # noqa: A002 - Django's name
        """The rows of this plan or any of ``other_qs`` (``all=True``: with duplicates)."""
        if type(all) is not bool:
            raise PlanError(f"union(all=...) takes a bool, got {all!r}")
        return combine(self, "union", other_qs, all)

    def intersection(self, *other_qs: Any) -> Any:
        """The distinct rows of this plan found in every one of ``other_qs``."""
        return combine(self, "intersection", other_qs, False)

    def difference(self, *other_qs: Any) -> Any:
        """The distinct rows of this plan found in none of ``other_qs``."""
        return combine(self, "difference", other_qs, False)


def combine(plan: Any, op: str, others: tuple, all_: bool) -> Any:
    """The combined plan (``Plan._derive`` keeps ``plan``'s model and alias)."""
    operands = [plan, *others]
    for other in operands:
        if not isinstance(other, SetOperations):
            raise PlanError(f"{op}() combines plans, got {other!r:.80}")
        records = other._records
        if records and records[-1][0] in TERMINAL:
            raise PlanError(f"{op}(): a plan ending in {records[-1][0]}() cannot be combined")
    pairs = tuple((p._key, p._query_records()) for p in operands)
    first, first_model = columns(plan._meta, pairs[0][1])
    for i, (key, records) in enumerate(pairs[1:], 1):
        cols, model = columns(get_model(key)._meta, records)
        _check_operand(op, i, plan, first, first_model, key, cols, model)
    return plan._derive(((OP, op, all_, pairs),), plan._alias)


def _check_operand(op: str, i: int, plan: Any, first: tuple, first_model: bool, key: str,
                   cols: tuple, model: bool) -> None:
    who = f"{op}(): operand {i}"
    if first_model or model:
        if not (first_model and model and key == plan._key):
            raise FieldError(f"{who} must select what the first does: model plans of the same "
                             f"model, or values() plans of the same width")
        if [n for n, _ in cols] != [n for n, _ in first]:
            raise FieldError(f"{who} selects {[n for n, _ in cols]!r}, the first "
                             f"{[n for n, _ in first]!r} (annotations must match)")
        return
    if len(cols) != len(first):
        raise FieldError(f"{who} selects {len(cols)} columns, the first {len(first)}: "
                         f"{[n for n, _ in cols]!r} vs {[n for n, _ in first]!r}")
    for (name, kind), (other, other_kind) in zip(first, cols):
        if kind is not None and other_kind is not None and kind != other_kind:
            raise FieldError(f"{who}: column {other!r} holds {kinds.KIND_FIELD.get(other_kind)} "
                             f"values where the first's {name!r} holds "
                             f"{kinds.KIND_FIELD.get(kind)} values")


def columns(meta: Any, records: tuple) -> tuple[tuple[tuple[str, str | None], ...], bool]:
    """``((name, kind), ...)`` a plan's records select, and whether they are model rows."""
    if records and records[0][0] == OP:
        key, inner = records[0][3][0]
        cols, model = columns(get_model(key)._meta, inner)
        for record in records[1:]:
            if record[0] in ("values", "values_list"):
                by_name = dict(cols)
                cols, model = tuple((n, by_name.get(n)) for n in record[1]), False
        return cols, model
    annotations: dict[str, Any] = {}
    names: tuple | None = None
    late: list[str] = []
    for record in records:
        if record[0] == "annotate":
            annotations.update(record[1])
            if names is not None:
                late += [n for n, _ in record[1]]
        elif record[0] in ("values", "values_list"):
            names, late = record[1], []
    ctx = R.Context(meta, annotations)
    if names is None:
        fields = tuple((f.attname, kinds.FIELD_KIND.get(f.internal_type)) for f in meta.fields)
        return fields + tuple((n, _kind(ctx, n)) for n in annotations), True
    names = tuple(names) + tuple(n for n in late if n not in names)
    return tuple((n, _kind(ctx, n)) for n in names), False


def _kind(ctx: R.Context, name: str) -> str | None:
    field = ctx.meta.by_attname.get(name)
    if field is not None and name not in ctx.annotations:
        return kinds.FIELD_KIND.get(field.internal_type)
    try:
        return ctx.kind(name)
    except (FieldError, ValueError, KeyError):
        return None


def operation(plan: Any) -> str:
    return plan._records[0][1]


def check_subquery(plan: Any) -> None:
    """A combined plan is not a ``field__in=`` subquery (not supported yet)."""
    if plan._records and plan._records[0][0] == OP:
        raise NotSupportedError(f"a plan combined by {operation(plan)}() is not a subquery")


def check_after(plan: Any, record: tuple) -> None:
    """Refuse what Django refuses after a set operation; check an ordering's names."""
    op = record[0]
    if op not in ALLOWED:
        raise NotSupportedError(f"Calling QuerySet.{METHOD.get(op, op)}() after "
                                f"{operation(plan)}() is not supported.")
    if op == "order_by":
        names = [n for n, _ in columns(plan._meta, plan._records)[0]]
        for name in record[1]:
            if ordering.is_expression(name):
                _expression_columns(plan, name[1], names)
            elif name.lstrip("-") not in names:
                raise FieldError(f"{operation(plan)}(): order_by({name!r}) must name a column "
                                 f"of the combined rows {names!r}" + _suggest(name, names))


def _suggest(name: str, names: list[str]) -> str:
    return suggest(name.lstrip("-"), names)


def _column(plan: Any, name: Any, names: list[str], what: str) -> str:
    """A name given after combining as the combined column it names: the column itself,
    ``pk`` or a field whose column (``author`` for ``author_id``) is one."""
    if not isinstance(name, str):
        raise FieldError(f"{what}() takes names, got {name!r}")
    if name in names:
        return name
    meta = plan._meta
    field = meta.pk if name == "pk" else meta.by_name.get(name)
    if field is not None and field.attname in names:
        return field.attname
    raise FieldError(f"{operation(plan)}(): {what}({name!r}) must name a column of the "
                     f"combined rows {names!r}" + _suggest(name, names))


# Expression records an ordering of the combined rows may hold (no aggregate, no subquery).
_NOT_AFTER = frozenset({"agg", "subquery", "exists", "outer", "query"})


def _expression_columns(plan: Any, node: Any, names: list[str]) -> list[str]:
    """The combined columns an ordering expression reads; ``FieldError`` for any other name
    or for an aggregate or subquery (the combined rows are not grouped nor correlated)."""
    if type(node) is not tuple or not node or node[0] == R.VALUE:
        return []
    tag = node[0]
    if tag in _NOT_AFTER:
        raise FieldError(f"{operation(plan)}(): order_by() over the combined rows takes "
                         f"expressions of their columns, not {tag} expressions")
    if tag == "F":
        if node[1] not in names:
            raise FieldError(f"{operation(plan)}(): order_by() expression names {node[1]!r}, "
                             f"not a column of the combined rows {names!r}"
                             + _suggest(node[1], names))
        return [node[1]]
    if tag == "case":
        used = [c for cond, then in node[1] for c in (*_condition_columns(plan, cond, names),
                                                      *_expression_columns(plan, then, names))]
        return used + _expression_columns(plan, node[2], names)
    return [c for child in node[1:] for c in _expression_columns(plan, child, names)]


def _condition_columns(plan: Any, node: Any, names: list[str]) -> list[str]:
    if node[0] in ("&", "|", "^"):
        return [c for child in node[1] for c in _condition_columns(plan, child, names)]
    if node[0] in ("!", "if"):
        return (_condition_columns if node[0] == "!" else _expression_columns)(
            plan, node[1], names)
    if len(node) != 3:
        return _expression_columns(plan, node, names)  # exists: refused there
    return _expression_columns(plan, ("F", node[0]), names) + \
        _expression_columns(plan, node[2], names)


def _order_term(plan: Any, value: Any, cols: tuple) -> Any:
    """An expression ``order_by()`` term over the combined columns (``Lower('title')``,
    ``F('x').desc(nulls_last=True)``): the columns stand as annotations of their kinds."""
    typed = {name: ("as", kinds.KIND_FIELD[kind], (R.VALUE, None)) if kind in kinds.KIND_FIELD
             else (R.VALUE, None) for name, kind in cols}
    term = ordering.term(R.Context(plan._meta, typed), value, R.expression)
    if ordering.is_expression(term):
        _expression_columns(plan, term[1], [n for n, _ in cols])
        return term
    return ("-" if term.startswith("-") else "") + _column(
        plan, term.lstrip("-"), [n for n, _ in cols], "order_by")


def order_names(plan: Any, names: tuple) -> tuple[Any, ...]:
    """``order_by()`` after a set operation: each name as the combined column it orders by,
    an expression as an ``("expr", ...)`` term over those columns."""
    typed_cols = columns(plan._meta, plan._records)[0]
    cols = [n for n, _ in typed_cols]
    out: list[Any] = []
    for name in names:
        if not isinstance(name, str):
            out.append(_order_term(plan, name, typed_cols))
            continue
        if not name.lstrip("-"):
            raise FieldError(f"order_by() takes field names, got {name!r}")
        desc = name.startswith("-")
        column = _column(plan, name.lstrip("-"), cols, "order_by")
        out.append("-" + column if desc else column)
    return tuple(out)


def value_names(plan: Any, names: tuple) -> tuple[str, ...]:
    """``values()`` after a set operation: names among the combined columns (all: none given)."""
    cols = [n for n, _ in columns(plan._meta, plan._records)[0]]
    chosen = tuple(_column(plan, name, cols, "values") for name in names) if names else tuple(cols)
    for record in plan._records[1:]:
        for name in record[1] if record[0] == "order_by" else ():
            used = _expression_columns(plan, name[1], cols) \
                if ordering.is_expression(name) else [name.lstrip("-")]
            for column in used:
                if column not in chosen:
                    raise FieldError(f"{operation(plan)}(): values() must keep the column "
                                     f"{column!r} the rows are ordered by")
    return chosen
