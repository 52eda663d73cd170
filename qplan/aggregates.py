"""Aggregate records with options: ``filter=``, ``default=``, and StdDev/Variance.

An aggregate record is ``("agg", function, argument, distinct)``; only when ``filter=``
or ``default=`` is given does it carry a fifth element, its options, so records of
plain aggregates stay what they were:

    ("agg", function, argument, distinct, (("default", ("=", value)), ("filter", condition)))

each pair present only when given, in that (alphabetical) order. The default is a value
node, so two plans differing only in it share one compiled template; the filter is a
condition record (``qplan.records``), joins and all. Checked here, when the plan is
built: the default has the aggregate's type, StdDev/Variance take numbers, a filter
is a ``Q`` and refers to no aggregate.
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


def record(ctx: Any, value: Aggregate, node: tuple, arg_kind: str | None,
           q_record: Callable[[Any, Any], Any], is_aggregate: Callable[[Any], bool],
           check_value: Callable[[Any, str], Any]) -> tuple:
    """The record of aggregate ``value`` whose plain record is ``node``: checks the
    argument's kind for StdDev/Variance and adds the options when given."""
    name = type(value).__name__
    fn = node[1]
    if fn in SPREADS and arg_kind not in kinds.NUMERIC and arg_kind is not None:
        raise FieldError(f"{ctx.who}: {name}() takes numbers, not a "
                         f"{kinds.KIND_FIELD.get(arg_kind, arg_kind)}")
    options: dict[str, Any] = {}
    if value.filter is not None:
        if not isinstance(value.filter, Q):
            raise FieldError(f"{ctx.who}: {name}(filter=...) takes a Q object, got "
                             f"{value.filter!r:.80}")
        condition = q_record(ctx, value.filter)
        if condition is not None and _refers_to_aggregate(ctx, condition, is_aggregate):
            raise FieldError(f"{ctx.who}: {name}(filter=...) cannot refer to an aggregate")
        options["filter"] = condition
    if value.default is not None:
        options["default"] = ("=", _default(ctx, name, value.default,
                                            kinds.of_aggregate(fn, arg_kind), check_value))
    return with_options(node, options)


def _default(ctx: Any, name: str, value: Any, kind: str | None,
             check_value: Callable[[Any, str], Any]) -> Any:
    """``default=`` as a value of the aggregate's type, or ``FieldError``."""
    if isinstance(value, (tuple, Combinable, Q)):  # Django takes expressions too: not yet
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
    annotation = ctx.annotations.get(tag)
    if annotation is not None and is_aggregate(annotation):
        return True
    rhs = node[2]
    if type(rhs) is tuple and rhs and rhs[0] == "F" and rhs[1] in ctx.annotations:
        return is_aggregate(ctx.annotations[rhs[1]])
    return type(rhs) is tuple and is_aggregate(rhs)
