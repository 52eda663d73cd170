"""Functions, ``Case``/``When`` and ``Value`` (``qplan.functions``) as plain records.

Record forms (added to the grammar in ``qplan.records``)::

    ("fn", name, options, expression, ...)       a database function; options: plain values
    ("case", ((condition, expression), ...), default | None, output | None)

``name`` is one of ``funckinds.NAMES``; ``options`` shape the SQL (``("month",)`` for a
Trunc, ``(2,)`` for a Round precision, ``("DecimalField", 10, 2)`` for a Cast). ``output``
is an ``output_field`` as ``(internal_type, ...)``. Values stay in ``("=", v)`` nodes, so
two plans differing only in values share a compiled template.

``records.expression`` hands these objects here with two callbacks (an expression record
of a user object, a condition record of a ``Q``), so this module does not import it.
"""

from __future__ import annotations

from typing import Any, Callable

from . import funckinds, kinds, regex
from .errors import FieldError, suggest
from .fields import DateField, IntegerField, TimeField
from .functions import Case, Func, Value

SEP = "__"

OBJECTS = (Func, Case, Value)
TAGS = ("fn", "case")


def record(ctx: Any, value: Any, expression: Callable[[Any], tuple],
           condition: Callable[[Any], Any]) -> tuple:
    """The record of a ``Func``, ``Case`` or ``Value``; ``FieldError`` when a function is
    given the wrong type, a ``Case`` mixes result types, or an output_field is unknown."""
    if isinstance(value, Value):
        node = expression(value.value)
        if value.output is None:
            return node
        return ("as", _output(ctx, value.output)[0], node)
    if isinstance(value, Case):
        return _case(ctx, value, expression, condition)
    args = tuple(expression(a) for a in value.args)
    node = ("fn", value.function, tuple(value.options), *args)
    try:
        kind_of(ctx, node)
    except FieldError as exc:  # name the fields it was given: "Trunc('year') ... (of 'at')"
        named = [repr(a[1]) for a in args if type(a) is tuple and len(a) == 2 and a[0] == "F"]
        if not named:
            raise
        raise FieldError(f"{exc} (of {', '.join(named)})") from None
    return node


def _output(ctx: Any, output: tuple) -> tuple:
    if not output or output[0] not in kinds.FIELD_KIND:
        name = str(output[0] if output else None)
        raise FieldError(f"{ctx.who}: output_field must be a field, got {name:.80}"
                         + suggest(name, kinds.FIELD_KIND))
    return output


def _case(ctx: Any, value: Case, expression: Callable[[Any], tuple],
          condition: Callable[[Any], Any]) -> tuple:
    if not value.cases:
        raise FieldError(f"{ctx.who}: Case() needs at least one When()")
    branches = []
    for when in value.cases:
        cond = condition(when.condition)
        if cond is None:
            raise FieldError(f"{ctx.who}: When() needs a condition: an empty Q() matches every row")
        branches.append((cond, expression(when.result)))
    default = None if value.default is None else expression(value.default)
    if default == ("=", None):  # Value(None): no default, as a loaded plan writes it
        default = None
    output = None if value.output is None else _output(ctx, value.output)
    node = ("case", tuple(branches), default, output)
    kind_of(ctx, node)
    return node


def kind_of(ctx: Any, node: tuple) -> str | None:
    """The kind of a ``fn`` or ``case`` record, ``FieldError`` when its types do not fit."""
    try:
        return kinds.of_record(node, ctx.kind)
    except ValueError as exc:
        raise FieldError(f"{ctx.who}: {exc}") from None


# --- lookup transforms and regex lookups ----------------------------------------------------

TRANSFORMS = (*funckinds.EXTRACT_KINDS, "date", "time")
DATETIME_ONLY = frozenset({"date", "time"})  # TruncDate, TruncTime
_INT = IntegerField()
_INT.name = "transform"
_DATE = DateField()
_DATE.name = "transform"
_TIME = TimeField()
_TIME.name = "transform"


def time_field(model: Any, name: str) -> TimeField:
    """A TimeField named ``model.name`` that cleans the values a time annotation is
    compared with."""
    field = TimeField()
    field.model, field.name = model, name
    return field


def transformed(ctx: Any, parts: list[str], lookup: str, key: str) -> tuple | None:
    """``(path, "year__gte", output field)`` for a lookup through a date transform
    (``published__year__gte``), None when ``parts`` name a field after all; ``FieldError``
    when the transform does not apply to the field's type."""
    try:
        ctx.path(SEP.join(parts))
        return None  # a field of that name (a relation's ``year``)
    except FieldError:
        pass
    name = parts[-1]
    path, field = ctx.path(SEP.join(parts[:-1]))
    if field is not None:
        kind = kinds.FIELD_KIND.get(field.internal_type)
    else:  # an annotation: annotate(d=TruncMonth('created')).filter(d__year=2020)
        try:
            kind = ctx.kind(path)
        except (FieldError, ValueError, KeyError):
            kind = None
    if name in DATETIME_ONLY:
        allowed: tuple[str, ...] = ("datetime",)
    elif name in funckinds.TIME_KINDS:
        allowed = ("datetime", "time")
    else:
        allowed = ("date", "datetime")
    if kind not in allowed:
        what = field.internal_type if field is not None else \
            f"an annotation of {kinds.KIND_FIELD.get(kind, 'unknown type')}"
        raise FieldError(f"{ctx.who}: {key!r}: __{name} applies to "
                         f"{' or '.join(kinds.KIND_FIELD[k] for k in allowed)}, not {what}")
    out = _DATE if name == "date" else _TIME if name == "time" else _INT
    if lookup not in out.lookups:
        raise FieldError(f"{ctx.who}: {key!r}: lookup {lookup!r} does not apply after __{name}"
                         + suggest(lookup, out.lookups))
    return path, f"{name}{SEP}{lookup}", out


def check_regex(ctx: Any, key: str, value: Any) -> None:
    """A ``__regex`` value must be a str in the shared subset (``qplan.regex``)."""
    if not isinstance(value, str):
        raise FieldError(f"{ctx.who}.{key}: a regex lookup takes a str pattern, got {value!r:.80}")
    try:
        regex.check(value)
    except ValueError as exc:
        raise FieldError(f"{ctx.who}.{key}: {exc}") from None
