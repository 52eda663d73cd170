"""What each database function takes and gives: the kinds (``qplan.kinds``) of its
arguments and of its result, as ``django.db.models.functions`` 5.2 infers ``output_field``.

A pure table, used when a plan is built (``qplan.funcrecords`` refuses a function on the
wrong type with ``FieldError``) and when the kind of a record is asked for
(``qplan.kinds.of_record``). ``check(name, options, kinds)`` returns the result kind or
raises ``ValueError`` with the reason; callers turn it into their own error.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

TEXT = frozenset({"text"})
NUMBERS = frozenset({"int", "float", "decimal"})
DATES = frozenset({"date", "datetime"})
TIMES = DATES | {"time"}  # what Trunc and Extract take
ORDERED = NUMBERS | TEXT | TIMES | {"bool"}
NUMERIC_ORDER = ("float", "decimal", "int")

# Trunc(kind=...) kinds qplan gives on every backend; Extract(lookup_name=...) likewise.
# Week is ISO (Monday first); the time kinds need a DateTimeField or a TimeField, and a
# TimeField takes only them, as in Django.
TRUNC_KINDS = ("year", "quarter", "month", "week", "day", "hour", "minute", "second")
EXTRACT_KINDS = ("year", "iso_year", "quarter", "month", "week", "day", "week_day",
                 "iso_week_day", "hour", "minute", "second")
TIME_KINDS = frozenset({"hour", "minute", "second"})

# Cast(output_field=...) types: internal type -> kind.
CAST_TYPES = {"IntegerField": "int", "BigIntegerField": "int", "FloatField": "float",
              "DecimalField": "decimal", "CharField": "text", "TextField": "text",
              "DateField": "date"}

# Functions taking one argument of these kinds and giving that kind (None: the same kind).
UNARY = {
    "Lower": (TEXT, "text"), "Upper": (TEXT, "text"), "Trim": (TEXT, "text"),
    "Length": (TEXT, "int"), "Abs": (NUMBERS, None), "Round": (NUMBERS, None),
    "TruncDate": (frozenset({"datetime"}), "date"), "TruncTime": (frozenset({"datetime"}), "time"),
    "Trunc": (TIMES, None), "Extract": (TIMES, "int"),
}
NAMES = ("Lower", "Upper", "Trim", "Length", "Abs", "Round", "TruncDate", "Trunc", "Extract",
         "Concat", "Substr", "Replace", "Coalesce", "NullIf", "Greatest", "Least", "Cast", "Now",
         "TruncTime")

KIND_NAME = {"int": "IntegerField", "float": "FloatField", "decimal": "DecimalField",
             "text": "CharField", "bool": "BooleanField", "date": "DateField",
             "datetime": "DateTimeField", "time": "TimeField", "bytes": "BinaryField", "json": "JSONField",
             None: "NULL"}


def _name(kind: str | None) -> str:
    return KIND_NAME.get(kind, str(kind))


def _need(name: str, kind: str | None, allowed: frozenset, position: str = "") -> None:
    if kind is not None and kind not in allowed:
        raise ValueError(f"{name}() takes {' or '.join(sorted(_name(k) for k in allowed))}"
                         f"{position}, not {_name(kind)}")


def common(name: str, kinds: Sequence[str | None]) -> str | None:
    """One kind for arguments that must agree (numbers mix: float wins, then decimal)."""
    known = {k for k in kinds if k is not None}
    if not known:
        return None
    if len(known) == 1:
        return known.pop()
    if known <= NUMBERS:
        return next(k for k in NUMERIC_ORDER if k in known)
    raise ValueError(f"{name}() mixes " + ", ".join(sorted(_name(k) for k in known))
                     + ": give the arguments one type (Cast) or an output_field")


def check(name: str, options: tuple, kinds: Sequence[str | None]) -> str | None:
    """The kind ``name(*arguments of kinds)`` gives; ``ValueError`` when it takes no such
    arguments."""
    if name in UNARY:
        allowed, result = UNARY[name]
        if len(kinds) != 1:
            raise ValueError(f"{name}() takes one expression, got {len(kinds)}")
        _need(name, kinds[0], allowed)
        if name == "Trunc":
            if options[0] not in TRUNC_KINDS:
                raise ValueError(f"Trunc kind {options[0]!r} is not one of {', '.join(TRUNC_KINDS)}")
        if name == "Extract" and options[0] not in EXTRACT_KINDS:
            raise ValueError(f"Extract {options[0]!r} is not one of {', '.join(EXTRACT_KINDS)}")
        if name in ("Trunc", "Extract") and kinds[0] == "date" and options[0] in TIME_KINDS:
            raise ValueError(f"{name}({options[0]!r}) needs a DateTimeField, not a DateField")
        if name in ("Trunc", "Extract") and kinds[0] == "time" and options[0] not in TIME_KINDS:
            raise ValueError(f"{name}({options[0]!r}) needs a DateField or DateTimeField, "
                             f"not a TimeField (a time has only hour, minute, second)")
        return result or kinds[0]
    if name == "Now":
        return "datetime"
    if name == "Concat":
        if len(kinds) < 2:
            raise ValueError("Concat() takes at least two expressions")
        for k in kinds:
            _need(name, k, TEXT)
        return "text"
    if name == "Substr":
        _need(name, kinds[0], TEXT)
        for k in kinds[1:]:
            _need(name, k, frozenset({"int"}), " as position and length")
        return "text"
    if name == "Replace":
        for k in kinds:
            _need(name, k, TEXT)
        return "text"
    if name in ("Coalesce", "Greatest", "Least"):
        if len(kinds) < 2:
            raise ValueError(f"{name}() takes at least two expressions")
        kind = common(name, kinds)
        if name != "Coalesce":
            _need(name, kind, ORDERED)
        return kind
    if name == "NullIf":
        common(name, kinds)
        return kinds[0] if kinds[0] is not None else kinds[1]
    if name == "Cast":
        if options[0] not in CAST_TYPES:
            raise ValueError(f"Cast() to {options[0]!r} is not supported; one of "
                             + ", ".join(CAST_TYPES))
        _need(name, kinds[0], ORDERED)
        return CAST_TYPES[options[0]]
    raise ValueError(f"unknown function {name!r}")


def case(kinds: Sequence[str | None], output: str | None) -> str | None:
    """The kind of a ``Case``: its ``output_field``'s, else the one its results share."""
    if output is not None:
        return output
    return common("Case", kinds)


def of_record(node: tuple, kind: Callable[[Any], str | None],
              field_kind: Mapping[str, str]) -> str | None:
    """The kind of a ``fn``/``case`` record given ``kind`` of its sub-expressions
    (``ValueError`` when they do not fit); ``field_kind``: internal type -> kind."""
    if node[0] == "fn":
        return check(node[1], node[2], [kind(a) for a in node[3:]])
    results = [kind(then) for _, then in node[1]]
    if node[2] is not None:
        results.append(kind(node[2]))
    return case(results, field_kind[node[3][0]] if node[3] is not None else None)
