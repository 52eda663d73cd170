"""Aggregate records with options: ``filter=``, ``default=``, and StdDev/Variance.

An aggregate record is ``("agg", function, argument, distinct)``; only when ``filter=``
or ``default=`` is given does it carry a fifth element, its options, so records of
plain aggregates stay what they were:

    ("agg", function, argument, distinct, (("default", ("=", value)), ("filter", condition)))

each pair present only when given, in that (alphabetical) order. A plain default (or a
``Value``) is a value node, so two plans differing only in it share one compiled
template; an expression default (``F``, functions, arithmetic: Django 5.2 wraps the
aggregate in ``Coalesce(aggregate, default)``) is its expression record. The filter is a
condition record (``qplan.records``), joins and all: from a ``Q``, an ``Exists`` /
``~Exists`` or a boolean expression (``Case(..., output_field=BooleanField())``), as
Django takes them. Checked here, when the plan is built: the default's kind fits the
aggregate's output (the same kind; an integer for a float or decimal one), it refers to
no aggregate, StdDev/Variance take numbers, a filter is conditional and refers to no
aggregate.
"""

from __future__ import annotations

import datetime as _dt
import decimal
from typing import Any, Callable

from . import kinds
from .errors import FieldError
from .expressions import Aggregate, Combinable, Q

# Record function names of StdDev/Variance (population, sample), as SQL spells them.
SPREADS = ("stddev_pop", "stddev_samp", "var_pop", "var_samp")
FUNCTIONS = ("count", "sum", "avg", "min", "max", *SPREADS)
OPTIONS = ("default", "filter")

# The Python types a default may have for an aggregate of each kind, and how it is stored.
_DEFAULTS: dict[str, tuple[tuple[type, ...], Callable[[Any], Any]]] = {
    "int": ((int,), int),
    "float": ((int, float), float),
    "decimal": ((int, decimal.Decimal), decimal.Decimal),
    "bool": ((bool,), bool),
    "text": ((str,), str),
    "bytes": ((bytes,), bytes),
    "date": ((_dt.date,), lambda v: v),
    "time": ((_dt.time,), lambda v: v.replace(fold=0)),
    "datetime": ((_dt.datetime,), lambda v: v if v.tzinfo else v.replace(tzinfo=_dt.timezone.utc)),
}


def options_of(node: tuple) -> dict[str, Any]:
    """An aggregate record's options as a dict (empty for a plain aggregate)."""
    return dict(node[4]) if len(node) > 4 else {}


def plain_node(node: tuple) -> tuple:
    """The aggregate record without its options."""
    return node[:4]


def with_options(node: tuple, options: dict[str, Any]) -> tuple:
    """``node`` (options dropped) carrying ``options``; the plain form when there are none."""
    items = tuple((k, options[k]) for k in OPTIONS if options.get(k) is not None)
    return node[:4] + (items,) if items else node[:4]


# The kinds an expression default may have for an aggregate of each kind (else: the same).
_FITS = {"float": ("int", "float"), "decimal": ("int", "decimal")}


def record(ctx: Any, value: Aggregate, node: tuple, arg_kind: str | None,
           q_record: Callable[[Any, Any], Any], is_aggregate: Callable[[Any], bool],
           check_value: Callable[[Any, str], Any],
           to_expression: Callable[[Any], Any] = None) -> tuple:  # type: ignore[assignment]
    """The record of aggregate ``value`` whose plain record is ``node``: checks the
    argument's kind for StdDev/Variance and adds the options when given. ``q_record``
    makes a filter's condition record (``FieldError`` for a non-conditional one),
    ``to_expression`` a default expression's record."""
    name = type(value).__name__
    fn = node[1]
    if fn in SPREADS and arg_kind not in kinds.NUMERIC and arg_kind is not None:
        raise FieldError(f"{ctx.who}: {name}() takes numbers, not a "
                         f"{kinds.KIND_FIELD.get(arg_kind, arg_kind)}")
    options: dict[str, Any] = {}
    if value.filter is not None:
        condition = q_record(ctx, value.filter)
        if condition is not None and _refers_to_aggregate(ctx, condition, is_aggregate):
            raise FieldError(f"{ctx.who}: {name}(filter=...) cannot refer to an aggregate")
        options["filter"] = condition
    if value.default is not None:
        kind = kinds.of_aggregate(fn, arg_kind)
        if isinstance(value.default, (tuple, list, dict, set)):
            raise FieldError(f"{ctx.who}: {name}(default=...) takes a plain value or an "
                             f"expression, got {value.default!r:.80}")
        if _is_plain(value.default):
            options["default"] = ("=", _default(ctx, name, value.default, kind, check_value))
        else:
            options["default"] = _default_expression(ctx, name, to_expression(value.default),
                                                     kind, is_aggregate, check_value)
    return with_options(node, options)


def _is_plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, decimal.Decimal, bytes, _dt.date, _dt.time))


def _default_expression(ctx: Any, name: str, node: Any, kind: str | None,
                        is_aggregate: Callable[[Any], bool],
                        check_value: Callable[[Any, str], Any]) -> tuple:
    """An expression ``default=``'s record (a ``Value`` as a plain default's value node), or
    ``FieldError`` when its kind does not fit the aggregate's or it holds an aggregate."""
    if type(node) is tuple and node and node[0] == "=":
        if node[1] is None:
            raise FieldError(f"{ctx.who}: {name}(default=Value(None)) is no default")
        return ("=", _default(ctx, name, node[1], kind, check_value))
    if is_aggregate(node):
        raise FieldError(f"{ctx.who}: {name}(default=...) cannot refer to an aggregate")
    try:
        got = kinds.of_record(node, ctx.kind)
    except ValueError as exc:
        raise FieldError(f"{ctx.who}: {exc}") from None
    if got is not None and kind is not None and got not in _FITS.get(kind, (kind,)):
        raise FieldError(f"{ctx.who}: {name}(default=...) is a {kinds.KIND_FIELD.get(got, got)} "
                         f"expression, the aggregate a {kinds.KIND_FIELD.get(kind, kind)}")
    return node


def default_columns(node: Any) -> list[str]:
    """The columns (``F`` names) the defaults of the aggregates in ``node`` read: over no
    rows there is no row to read them from (``aggregate()`` refuses them)."""
    if type(node) is not tuple or not node or node[0] in ("=", "query"):
        return []
    found = []
    if node[0] == "agg":
        found += _columns(options_of(node).get("default"))
    for child in node[1:]:
        found += default_columns(child)
    return found


def _columns(node: Any) -> list[str]:
    if type(node) is not tuple or not node or node[0] in ("=", "query"):
        return []
    if node[0] == "F":
        return [node[1]]
    return [name for child in node[1:] for name in _columns(child)]


def _default(ctx: Any, name: str, value: Any, kind: str | None,
             check_value: Callable[[Any, str], Any]) -> Any:
    """``default=`` as a value of the aggregate's type, or ``FieldError``."""
    if isinstance(value, (tuple, Combinable, Q)):  # pragma: no cover - _is_plain sends them on
        raise FieldError(f"{ctx.who}: {name}(default=...) takes a plain value, got {value!r:.80}")
    if kind in _DEFAULTS:
        types, convert = _DEFAULTS[kind]
        wrong = (isinstance(value, bool) and bool not in types) or not isinstance(value, types) or (
            kind == "date" and isinstance(value, _dt.datetime))
        if wrong:
            raise FieldError(f"{ctx.who}: {name}(default={value!r:.40}) is not a "
                             f"{kinds.KIND_FIELD[kind]} value, as the aggregate is")
        value = convert(value)
    return check_value(value, ctx.who)


def _refers_to_aggregate(ctx: Any, node: Any, is_aggregate: Callable[[Any], bool]) -> bool:
    tag = node[0]
    if tag in ("&", "|", "^"):
        return any(_refers_to_aggregate(ctx, c, is_aggregate) for c in node[1])
    if tag == "!":
        return _refers_to_aggregate(ctx, node[1], is_aggregate)
    if tag == "if":  # a boolean expression
        return is_aggregate(node[1])
    if tag == "exists":  # Exists(plan): the subquery's aggregates are its own
        return False
    annotation = ctx.annotations.get(tag)
    if annotation is not None and is_aggregate(annotation):
        return True
    rhs = node[2]
    if type(rhs) is tuple and rhs and rhs[0] == "F" and rhs[1] in ctx.annotations:
        return is_aggregate(ctx.annotations[rhs[1]])
    return type(rhs) is tuple and is_aggregate(rhs)
