"""Normalise what the user wrote into plain tuple records, checking it against the model.

Record grammar (everything is a tuple of plain values):

    condition  := (path, lookup, rhs)            a leaf; path is "field" or "fk__field"
                | ("&", (condition, ...))        all of
                | ("|", (condition, ...))        any of
                | ("^", (condition, ...))        an odd number of (XOR, as Django 4.2+)
                | ("!", condition)               not
                | ("exists", query)              Exists(plan) (``qplan.subqueries``)
                | ("if", expression)             a boolean expression as a condition
                                                 (``filter(Case(..., output_field=
                                                 BooleanField()))``); NULL counts as false
    rhs        := ("=", value) | expression | True/False (isnull, boolean exact)
                | ("query", model_key, records)  "in" a one-column plan: IN (SELECT ...)
    combine    := ("combine", "union"|"intersection"|"difference", all,
                   ((model_key, records), ...))   a plan's first record (qplan.setops)
    expression := ("=", value) | ("F", path) | (op, expression, expression)
                | ("agg", function, expression | "*", distinct)
                | ("agg", function, expression | "*", distinct, options)
                                                filter=/default= given (``qplan.aggregates``)
                | ("as", internal_type, expression)   ExpressionWrapper(output_field=)
                | ("subquery", query)            Subquery(plan): its one column's value
                | ("exists", query) | ("!", ("exists", query))   Exists(plan), ~Exists(plan)
                | ("outer", name) | ("outer", ("outer", name))   OuterRef, inside a query
                | ("fn", name, options, expression, ...)    qplan.functions (funcrecords)
                | ("case", ((condition, expression), ...), default | None, output | None)
    query      := ("query", model_key, records)
    leaf lookup:  a lookup name, or transforms then one ("year__gte", "date__exact"),
                  and "regex"/"iregex" (the shared subset, ``qplan.regex``)

Plan commands of ``qplan.methods`` (``alias``, ``none``, ``only``, ``defer``,
``select_for_update``) are listed with their record forms in that module's docstring;
the per-parent slice of a sliced ``Prefetch`` queryset, ``("slice_per", path, start,
stop)``, in ``qplan.perslice``'s.

A value node ``("=", v)`` is the only place user values live; ``"="`` is never a
field or lookup name, so the shape of a plan is its records with every value node
replaced by a slot (see ``shape_of``).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import keyword
import re
from typing import Any, Iterable

from .errors import FieldError, suggest
from . import paths
from .relations import relations, reverse_accessors
from . import aggregates, kinds
from . import subqueries as SQ
from .expressions import ARITHMETIC, Aggregate, Combined, ExpressionWrapper, F, Q
from .fields import BooleanField, Field, ForeignKey
from . import funcrecords

SEP = "__"
VALUE = "="
PLAIN_TYPES = (str, int, float, decimal.Decimal, _dt.datetime, _dt.date, _dt.time, bytes,
               bool, type(None))
LOOKUP_NAMES = (
    "exact", "iexact", "contains", "icontains", "startswith", "istartswith", "endswith",
    "iendswith", "in", "gt", "gte", "lt", "lte", "range", "isnull", "regex", "iregex",
)
AGGREGATES = aggregates.FUNCTIONS
SCALARS = frozenset({str, int, float, decimal.Decimal, _dt.datetime, _dt.date, _dt.time, bytes,
                     bool})
SCALAR_LOOKUPS = frozenset(LOOKUP_NAMES) - {"in", "range", "isnull"}


# --- paths -------------------------------------------------------------------------------

def resolve_path(meta: Any, parts: list[str], who: str) -> tuple[str, Field]:
    """Follow field and relation query names (both ways, ``qplan.paths``) to a field; return
    the canonical path. A path ending on a reverse or many-to-many relation ends on the
    related primary key (``paths.RelatedKey``)."""
    found = paths.resolve(meta, parts, who)
    return found.path, found.field


_same_database = paths.same_database


def field_for_path(meta: Any, path: str) -> Field:
    """The field a canonical path ends on (used by the compiler)."""
    return resolve_path(meta, path.split(SEP), meta.model.__name__)[1]


class Context:
    """What normalisation needs besides the model: the annotations made so far."""

    __slots__ = ("meta", "annotations")

    def __init__(self, meta: Any, annotations: dict[str, Any]) -> None:
        self.meta = meta
        self.annotations = annotations

    @property
    def who(self) -> str:
        return self.meta.model.__name__

    def kind(self, name: str) -> str | None:
        """The kind (``qplan.kinds``) of the field or annotation ``name``."""
        if name in self.annotations:
            return kinds.of_record(self.annotations[name], self.kind)
        field = self.path(name)[1]
        return kinds.FIELD_KIND.get(field.internal_type) if field is not None else None

    def path(self, name: str) -> tuple[str, Field | None]:
        """Canonical path and field of ``name``; annotations give ``(name, None)``."""
        if name in self.annotations:
            return name, None
        found = self.meta.path_cache.get(name)
        if found is not None:
            return found
        try:
            found = resolve_path(self.meta, name.split(SEP), self.who)
            self.meta.path_cache[name] = found
            return found
        except FieldError as exc:
            if SEP not in name and self.annotations and name not in reverse_accessors(self.meta):
                raise FieldError(
                    f"{self.who} has no field or annotation {name!r}"
                    + suggest(name, [*self.meta.by_name, *relations(self.meta), *self.annotations])
                ) from None
            raise exc


# --- names a plan gives its results ----------------------------------------------------------

# Django 5.2's ``Query.check_alias``: no quotes, brackets, semicolons, whitespace or SQL
# comments in an alias. ``%``, ``?`` and ``:`` are fine: the SQL layer quotes every name.
FORBIDDEN_ALIAS = re.compile(r"['`\"\]\[;\s]|--|/\*|\*/")


MARKERS = frozenset({"=", "?"})  # VALUE and SLOT (defined below)


def check_alias(meta: Any, name: Any, what: str) -> str:
    """``name`` if it may name an annotation or aggregate of ``meta``'s model; else ``FieldError``.

    ``what`` is ``"annotation"`` or ``"aggregate"``. An alias is a non-empty str that
    is not a field's name or attname, nor ``pk``, nor exactly one of the records' markers
    (``"="`` for a value, ``"?"`` for a slot in a shape): an ``(alias, expression)`` pair
    would read as one. ``?`` inside a longer name is fine.
    """
    who = meta.model.__name__
    if type(name) is not str or not name:
        raise FieldError(f"{who}: {what} name must be a non-empty str, got {name!r:.80}")
    if name == "pk" or name in meta.by_name or name in meta.by_attname:
        raise FieldError(f"{who}: {what} {name!r} clashes with a field")
    if name in MARKERS or FORBIDDEN_ALIAS.search(name):
        raise FieldError(f"{who}: {what} name {name!r:.80} cannot contain whitespace, quotes, "
                         f"brackets, semicolons or SQL comments, nor be '=' or '?'")
    return name


def check_row_names(names: tuple[str, ...], who: str) -> None:
    """``values_list(named=True)`` rows are named tuples: each name must be a field name
    Python accepts there (an identifier, not a keyword, no leading underscore, no repeat)."""
    seen: set[str] = set()
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") or name in seen:
            raise FieldError(f"{who}: values_list(named=True) cannot name a row field {name!r:.80}: "
                             f"it must be an identifier, not a keyword, not start with '_', "
                             f"and appear once")
        seen.add(name)


# --- values and expressions ----------------------------------------------------------------

INT64 = 1 << 63


def plain(value: Any, who: str) -> Any:
    """A plain value for a value node (no field to check it with), or ``FieldError``.

    Numbers must be ones every backend binds: integers within 64 bits, no NaN (it
    equals nothing, so a plan holding one would not equal itself), no Decimal infinity.
    """
    if isinstance(value, tuple):
        for v in value:
            _plain_scalar(v, who)
        return value
    return _plain_scalar(value, who)


def _plain_scalar(value: Any, who: str) -> Any:
    if not isinstance(value, PLAIN_TYPES):
        raise FieldError(f"{who}: {type(value).__name__} {value!r:.80} is not a plain value")
    if isinstance(value, int) and not -INT64 <= value < INT64:
        raise FieldError(f"{who}: an integer of {value.bit_length()} bits is beyond 64 bits")
    if isinstance(value, float) and value != value:
        raise FieldError(f"{who}: NaN is not a value a plan can compare with")
    if isinstance(value, decimal.Decimal) and not value.is_finite():
        raise FieldError(f"{who}: Decimal {value!r:.40} is not a finite number")
    return value


# How deeply expressions and Q objects may nest: far beyond what a person writes, well
# within Python's recursion limit and a payload's depth budget.
MAX_NESTING = 64


def _nested(ctx: Context, depth: int) -> int:
    if depth >= MAX_NESTING:
        raise FieldError(f"{ctx.who}: expressions and Q objects nest more than {MAX_NESTING} deep")
    return depth + 1


def expression(ctx: Context, value: Any, field: Field | None = None, depth: int = 0,
               typed: bool = False) -> tuple:
    """An expression record for ``F``/arithmetic/aggregate/plain ``value``.

    Arithmetic must be on numbers (``qplan.kinds``), else ``FieldError``, unless it is
    ``typed``: the arithmetic an ``ExpressionWrapper`` gives an ``output_field``.
    """
    if isinstance(value, F):
        return ("F", ctx.path(value.name)[0])
    if isinstance(value, Combined):
        if value.op not in ARITHMETIC:
            raise FieldError(f"{ctx.who}: unknown operator {value.op!r}")
        depth = _nested(ctx, depth)
        node = (value.op, expression(ctx, value.lhs, depth=depth, typed=typed),
                expression(ctx, value.rhs, depth=depth, typed=typed))
        if not typed:
            try:
                kinds.of_record(node, ctx.kind)
            except ValueError as exc:
                raise FieldError(f"{ctx.who}: {exc}") from None
        return node
    if isinstance(value, ExpressionWrapper):
        if value.output_type not in kinds.FIELD_KIND:
            raise FieldError(f"{ctx.who}: output_field must be a field, got {value.output_type!r:.80}"
                             + suggest(str(value.output_type), kinds.FIELD_KIND))
        inner = expression(ctx, value.expression, depth=_nested(ctx, depth), typed=True)
        return ("as", value.output_type, inner)
    if isinstance(value, Aggregate):
        arg = "*" if value.expr == "*" else expression(ctx, value.expr, depth=_nested(ctx, depth))
        if arg == "*" and value.function != "count":
            raise FieldError(f"{ctx.who}: {type(value).__name__}('*') is not allowed")
        if isinstance(arg, tuple) and arg[0] == "agg":
            raise FieldError(f"{ctx.who}: cannot nest aggregate {value!r}")
        node = ("agg", value.function, arg, value.distinct)
        if value.function in aggregates.SPREADS or value.filter is not None \
                or value.default is not None:
            arg_kind = kinds.of_record(arg, ctx.kind) if arg != "*" else "int"
            node = aggregates.record(ctx, value, node, arg_kind, _aggregate_filter, has_aggregate,
                                     plain, lambda v: expression(ctx, v, depth=_nested(ctx, depth)))
        return node
    if isinstance(value, funcrecords.OBJECTS):
        deeper = _nested(ctx, depth)
        return funcrecords.record(ctx, value, lambda v: expression(ctx, v, depth=deeper, typed=typed),
                                  lambda q: q_record(ctx, q, deeper))
    if isinstance(value, Q):
        raise FieldError(f"{ctx.who}: a Q object is a condition, not a value")
    if SQ.is_expression(value):  # Subquery, Exists, OuterRef
        if not isinstance(value, SQ.OuterRef):
            _same_database(ctx.meta, value.plan._meta, ctx.who)
        return SQ.record(ctx, value)
    if field is not None and value is not None:
        return (VALUE, field.clean(value))
    return (VALUE, plain(value, ctx.who))


def has_aggregate(node: Any) -> bool:
    """True when an expression record contains an aggregate."""
    if not isinstance(node, tuple) or not node or node[0] == VALUE:
        return False
    if node[0] == "query":  # a subquery's aggregates are its own
        return False
    return node[0] == "agg" or any(has_aggregate(n) for n in node[1:])


# --- conditions ------------------------------------------------------------------------------

def _lookup_value(ctx: Context, field: Field, lookup: str, value: Any, key: str) -> Any:
    """The rhs of a leaf: a value node, an expression, or a structural bool."""
    if type(value) in SCALARS and lookup in SCALAR_LOOKUPS:  # the common case, first
        cleaned = field.clean(value)
        if lookup == "exact" and isinstance(field, BooleanField):
            return cleaned  # structural: compiles to a bare column, which indexes well
        return (VALUE, cleaned)
    if hasattr(value, "as_subquery"):  # a plan: a plan is never a value, only a subquery
        if lookup != "in":
            raise FieldError(f"{ctx.who}.{key}: a plan is a subquery for 'in', not for {lookup!r}")
        _same_database(ctx.meta, value.model._meta, f"{ctx.who}.{key}")
        query = value.as_subquery()
        if any(SQ.outer_refs(query[2])):
            raise FieldError(f"{ctx.who}.{key}: OuterRef in field__in=plan is not supported; "
                             f"use filter(Exists(plan.filter(...=OuterRef(...))))")
        return query
    if SQ.is_expression(value):  # Subquery, Exists, OuterRef
        if lookup == "in" and isinstance(value, SQ.Subquery):  # as field__in=plan
            return _lookup_value(ctx, field, lookup, value.plan, key)
        if lookup in ("in", "range", "isnull"):
            raise FieldError(f"{ctx.who}.{key}: {lookup!r} takes values, not {value!r:.80}")
        return expression(ctx, value)
    if isinstance(value, (F, Combined, Aggregate, ExpressionWrapper, *funcrecords.OBJECTS)):
        if lookup in ("in", "range", "isnull"):
            raise FieldError(f"{ctx.who}.{key}: {lookup!r} takes values, not an expression")
        return expression(ctx, value)
    if lookup == "isnull":
        if not isinstance(value, bool):
            raise FieldError(f"{ctx.who}.{key}: isnull takes True or False, got {value!r}")
        return value
    if lookup == "in":
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise FieldError(f"{ctx.who}.{key}: 'in' takes a list of values, got {value!r}")
        return (VALUE, tuple(field.clean(v) for v in value if v is not None))
    if lookup == "range":
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise FieldError(f"{ctx.who}.{key}: 'range' takes (low, high), got {value!r}")
        pair = tuple(value)
        if len(pair) != 2 or None in pair:
            raise FieldError(f"{ctx.who}.{key}: 'range' takes (low, high), got {value!r}")
        return (VALUE, (field.clean(pair[0]), field.clean(pair[1])))
    if value is None:
        raise FieldError(f"{ctx.who}.{key}: None is only allowed with exact, iexact and isnull")
    cleaned = field.clean(value)
    if lookup == "exact" and isinstance(field, BooleanField):
        return cleaned  # structural: compiles to a bare column, which indexes well
    return (VALUE, cleaned)


def leaf(ctx: Context, key: str, value: Any) -> tuple:
    """One keyword lookup (``author__name__icontains='x'``) as a leaf record."""
    cache_key = key if not ctx.annotations else None
    parsed = ctx.meta.lookup_cache.get(cache_key) if cache_key else None
    if parsed is None:
        parts = key.split(SEP)
        lookup = "exact"
        if len(parts) > 1 and parts[-1] in LOOKUP_NAMES:
            lookup = parts.pop()
        transformed = funcrecords.transformed(ctx, parts, lookup, key) if len(parts) > 1 and \
            parts[-1] in funcrecords.TRANSFORMS else None
        if transformed is not None:  # published__year__gte: (path, "year__gte", IntegerField)
            path, lookup, field = transformed
        elif len(parts) > 1 and lookup == "exact" and key.split(SEP)[-1] != "exact":
            _check_last_part(ctx, parts, key)
        if transformed is None:
            path, field = ctx.path(SEP.join(parts))
        if field is not None and lookup.rpartition(SEP)[2] not in field.lookups:
            raise FieldError(
                f"{ctx.who}.{path}: lookup {lookup!r} is not supported for "
                f"{field.internal_type}" + suggest(lookup, field.lookups)
            )
        # the last item: transforms or a regex, the rare leaves (decided once per key)
        parsed = (path, lookup, field, SEP in lookup or lookup[-5:] == "regex")
        if cache_key:
            ctx.meta.lookup_cache[cache_key] = parsed
    path, lookup, field, rare = parsed
    if rare:
        last = lookup.rpartition(SEP)[2]
        if last == "regex" or last == "iregex":
            funcrecords.check_regex(ctx, key, value)
        if last != lookup:  # after transforms: the value is checked by the transform's output
            return (path, lookup, _lookup_value(ctx, field, last, value, key))
    if field is None:  # an annotation: compare with plain values
        if value is None:
            return (path, "isnull", True)
        return (path, lookup, _lookup_value(ctx, _annotation_field(ctx, path), lookup, value, key))
    if value is None and lookup in ("exact", "iexact"):
        return (path, "isnull", True)
    return (path, lookup, _lookup_value(ctx, field, lookup, value, key))


def _check_last_part(ctx: Context, parts: list[str], key: str) -> None:
    """Name an unknown lookup as such (``age__gtee``) rather than as an unknown field."""
    try:
        ctx.path(SEP.join(parts))
    except FieldError:
        _, field = ctx.path(SEP.join(parts[:-1]))
        if field is None or not isinstance(field, ForeignKey):
            choices = field.lookups if field is not None else LOOKUP_NAMES
            raise FieldError(
                f"{ctx.who}: unknown lookup {parts[-1]!r} in {key!r}" + suggest(parts[-1], choices)
            ) from None
        raise


class _AnyValue(Field):
    """Stands in for the field of an annotation: accepts any plain value."""

    def to_python(self, value: Any) -> Any:
        return plain(value, "annotation")


_ANY = _AnyValue()
_ANY.name = "annotation"


def _annotation_field(ctx: Context, name: str) -> Field:
    """What checks the values an annotation is compared with: any plain value, but a time
    as a TimeField cleans it (naive), since times have no other field to compare with."""
    try:
        kind = ctx.kind(name)
    except (FieldError, ValueError, KeyError):
        return _ANY
    return funcrecords.time_field(ctx.meta.model, name) if kind == "time" else _ANY


def condition(ctx: Context, args: tuple, kwargs: dict[str, Any]) -> tuple:
    """``filter``/``exclude`` arguments as one condition record."""
    children = []
    if args:  # keywords alone (the common case) skip the Q handling
        for arg in args:
            if not isinstance(arg, (Q, SQ.Exists, *CONDITIONAL)):
                raise FieldError(f"{ctx.who}: filter() takes Q objects, boolean expressions "
                                 f"and keyword lookups, got {arg!r}")
        args = tuple(a if isinstance(a, Q) else Q(a) for a in args)
        children = [node for node in (q_record(ctx, q) for q in args) if node is not None]
    for k, v in sorted(kwargs.items()):
        children.append(leaf(ctx, k, v))
    if not children:
        return None  # filter(Q()): no condition
    if len(children) == 1:
        return children[0]
    return ("&", tuple(children))


# Expression objects that are conditions when their output is a BooleanField (Django 3.0+).
CONDITIONAL = (ExpressionWrapper, *funcrecords.OBJECTS)


def boolean(ctx: Context, value: Any) -> tuple:
    """A boolean expression used as a condition, ``("if", expression)``; ``FieldError``
    when its output is not a BooleanField (Django: "a non-conditional expression")."""
    node = expression(ctx, value)
    try:
        kind = kinds.of_record(node, ctx.kind)
    except ValueError as exc:
        raise FieldError(f"{ctx.who}: {exc}") from None
    if kind != "bool":
        raise FieldError(f"{ctx.who}: cannot filter against a non-conditional expression "
                         f"{value!r:.60}: its output is {kinds.KIND_FIELD.get(kind, 'unknown')}, "
                         "not BooleanField (give output_field=BooleanField())")
    return ("if", node)


def _aggregate_filter(ctx: Context, value: Any) -> tuple | None:
    """An aggregate's ``filter=`` as a condition record: a ``Q``, an ``Exists`` or a boolean
    expression, as Django 5.2 takes them; ``FieldError`` for anything else."""
    if isinstance(value, Q):
        return q_record(ctx, value)
    if isinstance(value, (SQ.Exists, *CONDITIONAL)):
        return q_record(ctx, Q(value))
    raise FieldError(f"{ctx.who}: an aggregate's filter= takes a Q object, an Exists or a "
                     f"boolean expression, got {value!r:.80}")


def q_record(ctx: Context, q: Any, depth: int = 0) -> tuple | None:
    """A ``Q`` as a condition record; None for an empty ``Q``, which matches every row
    (Django): it drops out of an AND, makes an OR match everything and flips an XOR."""
    if not isinstance(q, Q):
        raise FieldError(f"{ctx.who}: expected a Q object, got {q!r}")
    depth = _nested(ctx, depth)
    children, flips = [], 0
    for c in q.children:
        if isinstance(c, SQ.Exists):  # Q(Exists(...)), Exists(...) & Q(...)
            node = expression(ctx, c)
        elif isinstance(c, CONDITIONAL):  # Q(Case(..., output_field=BooleanField()))
            node = boolean(ctx, c)
        else:
            node = q_record(ctx, c, depth) if isinstance(c, Q) else leaf(ctx, c[0], c[1])
        if node is None and q.connector == "|":
            return None
        if node is None:
            flips += 1
        else:
            children.append(node)
    if not children:
        return None
    node = children[0] if len(children) == 1 else (q.connector, tuple(children))
    if q.connector == "^" and flips % 2:
        node = ("!", node)
    return ("!", node) if q.negated else node


# --- shapes -------------------------------------------------------------------------------------

SLOT = "?"


def walk(node: tuple, values: list[Any]) -> tuple:
    """Any record with each value node replaced by a slot, appending the values in order.

    A scalar's slot is its Python type (the SQL may depend on it, as for integer
    division); a tuple's slot is ``("?", length)``, its number of placeholders.
    """
    out = []
    append = out.append
    for child in node:
        if type(child) is not tuple or not child:
            append(child)
        elif child[0] == VALUE and len(child) == 2:
            values.append(child[1])
            append(_slot(child[1]))
        else:
            append(walk(child, values))
    return tuple(out)


def _slot(v: Any) -> Any:
    """A value's slot. A tuple's length is rounded up to its bucket (powers of two up to
    1024, then multiples of 1024): lists of similar lengths share one template, which pads
    the list by repeating its last value, so the cache holds few shapes per ``in`` filter."""
    if type(v) is not tuple:
        return type(v)
    n = len(v)
    return (SLOT, (1 << (n - 1).bit_length() if n > 2 else n) if n <= 1024 else -(-n // 1024) * 1024)


def _unchanged(record: tuple, values: list[Any]) -> tuple:
    return record


_NODE_TAGS = frozenset(("&", "|", "^", "!", "exists", "if"))  # the rest are leaves (paths)


def _condition_shape(node: tuple, values: list[Any]) -> tuple:
    tag = node[0]
    if tag in _NODE_TAGS:  # one set lookup: leaves, the common case, pass straight on
        if tag == "!":
            return ("!", _condition_shape(node[1], values))
        if tag == "exists":
            return walk(node, values)
        if tag == "if":
            return ("if", walk(node[1], values))
        return (tag, tuple([_condition_shape(c, values) for c in node[1]]))
    rhs = node[2]
    if type(rhs) is not tuple:
        return node  # isnull, boolean exact: structural
    if rhs[0] == VALUE:
        values.append(rhs[1])
        return (tag, node[1], _slot(rhs[1]))
    return (tag, node[1], walk(rhs, values))


def _order_shape(record: tuple, values: list[Any]) -> tuple:
    """An order_by record of names is its own shape; expression terms hold values."""
    try:
        "".join(record[1])  # names only: the common case, without a generator
        return record
    except TypeError:  # an ("expr", ...) term
        return walk(record, values)


def _slice_shape(record: tuple, values: list[Any]) -> tuple:
    _, offset, limit = record
    if offset is not None:
        values.append(offset[1])
        offset = _slot(offset[1])
    if limit is not None:
        values.append(limit[1])
        limit = _slot(limit[1])
    return ("slice", offset, limit)


# How each command's record is shaped; the others go through the generic walk. Every
# shaper gives exactly what ``walk`` gives (a property test holds them to it), faster;
# records that never hold a value are their own shape.
SHAPERS = {
    "filter": lambda r, values: (r[0], _condition_shape(r[1], values)),
    "exclude": lambda r, values: (r[0], _condition_shape(r[1], values)),
    "slice": _slice_shape,
    "order_by": _order_shape,
    **dict.fromkeys(("values", "values_list", "distinct", "select_related"), _unchanged),
}


def shape_of(records: tuple, values: list[Any]) -> tuple:
    """A plan's shape: its records with the values lifted out (appended to ``values``)."""
    shapers = SHAPERS
    return tuple([(shapers.get(r[0]) or walk)(r, values) for r in records])
