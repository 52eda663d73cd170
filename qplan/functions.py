"""Database functions and conditional expressions, named and meaning as in Django 5.2
(``django.db.models.functions``, ``Case``/``When``/``Value``).

Like ``F`` and ``Q`` these objects only describe what the user wrote; a plan turns them
into plain tuple records (``qplan.funcrecords``) the moment they are added, checking names
and types, so no object of this module ever lives inside a plan. As in Django, a str
argument of a function names a field (``Lower('name')`` is ``Lower(F('name'))``); wrap
text in ``Value`` to use it as a value.
"""

from __future__ import annotations

from typing import Any

from .errors import FieldError
from .expressions import Combinable, Conditional, F, Q


def _arg(value: Any) -> Any:
    return F(value) if isinstance(value, str) else value


def _output(output_field: Any) -> Any:
    """An output_field as the options a record keeps: its internal type (and a decimal's
    digits), never the field object."""
    if output_field is None:
        return None
    kind = getattr(output_field, "internal_type", output_field)
    if kind == "DecimalField" and hasattr(output_field, "max_digits"):
        return (kind, output_field.max_digits, output_field.decimal_places)
    return (kind,)


class Func(Conditional, Combinable):
    """A database function over expressions; ``options`` are plain values that shape its
    SQL (a Trunc kind, a Round precision, a Cast type)."""

    __slots__ = ("args", "options")
    function = ""  # a condition in filter()/When() when its output is BooleanField

    def __init__(self, *args: Any, options: tuple = ()) -> None:
        self.args = tuple(_arg(a) for a in args)
        self.options = options

    def __repr__(self) -> str:
        extra = "".join(f", {o!r}" for o in self.options)
        return f"{type(self).__name__}({', '.join(map(repr, self.args))}{extra})"


def _function(name: str, doc: str) -> type:
    cls = type(name, (Func,), {"__slots__": (), "function": name, "__doc__": doc})
    return cls


Lower = _function("Lower", "Lower case text (simple Unicode folding on every backend).")
Upper = _function("Upper", "Upper case text.")
Length = _function("Length", "The number of characters of text (an int; NULL stays NULL).")
Trim = _function("Trim", "Text without leading and trailing spaces.")
Abs = _function("Abs", "The absolute value of a number.")
Coalesce = _function("Coalesce", "The first of its expressions that is not NULL.")
Greatest = _function("Greatest", "The largest of its expressions; NULL if any is NULL "
                     "(every backend: qplan's one rule, Django's on SQLite/MySQL/Oracle).")
Least = _function("Least", "The smallest of its expressions; NULL if any is NULL.")
NullIf = _function("NullIf", "NULL when its two expressions are equal, else the first.")
Concat = _function("Concat", "Text joined; a NULL part counts as '' (Django's ConcatPair).")
Now = _function("Now", "The database's current time, an aware datetime in UTC.")


class Substr(Func):
    """``length`` characters of text from ``pos`` (1-based); to its end without length."""

    __slots__ = ()
    function = "Substr"

    def __init__(self, expression: Any, pos: Any, length: Any = None) -> None:
        super().__init__(expression, Value(pos), *(() if length is None else (Value(length),)))


class Replace(Func):
    """Text with every ``text`` replaced by ``replacement`` (default: removed)."""

    __slots__ = ()
    function = "Replace"

    def __init__(self, expression: Any, text: Any, replacement: Any = "") -> None:
        text = text if isinstance(text, Combinable) else Value(text)
        replacement = replacement if isinstance(replacement, Combinable) else Value(replacement)
        super().__init__(expression, text, replacement)


class Round(Func):
    """A number rounded half away from zero to ``precision`` places on every backend."""

    __slots__ = ()
    function = "Round"

    def __init__(self, expression: Any, precision: int = 0) -> None:
        if type(precision) is not int:
            raise TypeError(f"Round precision must be an int, got {precision!r}")
        super().__init__(expression, options=(precision,))


class Cast(Func):
    """``expression`` converted to ``output_field``'s type (a float to an integer is
    truncated toward zero on every backend)."""

    __slots__ = ()
    function = "Cast"

    def __init__(self, expression: Any, output_field: Any) -> None:
        super().__init__(expression, options=_output(output_field) or (None,))


class Trunc(Func):
    """A date, datetime or time cut to ``kind`` (year, quarter, month, week (Monday), day of
    a date or datetime; hour, minute, second of a datetime or time), in UTC for datetimes."""

    __slots__ = ()
    function = "Trunc"

    def __init__(self, expression: Any, kind: str) -> None:
        super().__init__(expression, options=(kind,))


class TruncDate(Func):
    """The date (in UTC) of a datetime."""

    __slots__ = ()
    function = "TruncDate"


class TruncTime(Func):
    """The time of day (in UTC, to the microsecond) of a datetime: a TimeField value."""

    __slots__ = ()
    function = "TruncTime"


class Extract(Func):
    """A part of a date, datetime or time as an int (in UTC): year, iso_year, quarter, month,
    week (ISO), day, week_day (1 = Sunday .. 7 = Saturday, as Django), iso_week_day (1 =
    Monday) of a date or datetime; hour, minute, second of a datetime or time (seconds
    whole)."""

    __slots__ = ()
    function = "Extract"

    def __init__(self, expression: Any, lookup_name: str) -> None:
        super().__init__(expression, options=(lookup_name,))


def _fixed(base: type, name: str, kind: str) -> type:
    """``TruncHour``-like class: ``base`` with its kind fixed."""
    def __init__(self: Any, expression: Any) -> None:
        base.__init__(self, expression, kind)
    doc = f"{base.__name__}(expression, {kind!r})."
    return type(name, (base,), {"__slots__": (), "__init__": __init__, "__doc__": doc})


TruncYear = _fixed(Trunc, "TruncYear", "year")
TruncQuarter = _fixed(Trunc, "TruncQuarter", "quarter")
TruncMonth = _fixed(Trunc, "TruncMonth", "month")
TruncWeek = _fixed(Trunc, "TruncWeek", "week")  # the Monday of the ISO week
TruncDay = _fixed(Trunc, "TruncDay", "day")
TruncHour = _fixed(Trunc, "TruncHour", "hour")
TruncMinute = _fixed(Trunc, "TruncMinute", "minute")
TruncSecond = _fixed(Trunc, "TruncSecond", "second")
ExtractYear = _fixed(Extract, "ExtractYear", "year")
ExtractQuarter = _fixed(Extract, "ExtractQuarter", "quarter")
ExtractMonth = _fixed(Extract, "ExtractMonth", "month")
ExtractWeek = _fixed(Extract, "ExtractWeek", "week")  # ISO-8601 week number
ExtractDay = _fixed(Extract, "ExtractDay", "day")
ExtractWeekDay = _fixed(Extract, "ExtractWeekDay", "week_day")  # 1 = Sunday
ExtractIsoYear = _fixed(Extract, "ExtractIsoYear", "iso_year")
ExtractIsoWeekDay = _fixed(Extract, "ExtractIsoWeekDay", "iso_week_day")  # 1 = Monday
ExtractHour = _fixed(Extract, "ExtractHour", "hour")
ExtractMinute = _fixed(Extract, "ExtractMinute", "minute")
ExtractSecond = _fixed(Extract, "ExtractSecond", "second")


class Value(Conditional, Combinable):
    """A plain value as an expression; ``output_field`` says its type."""

    __slots__ = ("value", "output")

    def __init__(self, value: Any, output_field: Any = None) -> None:
        self.value = value
        self.output = _output(output_field)

    def __repr__(self) -> str:
        return f"Value({self.value!r})"


class When:
    """``When(Q(...) or lookups, then=value)``: one branch of a ``Case``; the condition
    may be a boolean expression (``Exists(...)``, a boolean ``Case``), as in Django."""

    __slots__ = ("condition", "result")

    def __init__(self, condition: Any = None, then: Any = None, **lookups: Any) -> None:
        if condition is not None and not isinstance(condition, Q):
            if not getattr(condition, "conditional", False):
                raise TypeError("When() takes a Q object, a boolean expression or keyword "
                                f"lookups, got {condition!r:.80}")
            condition = Q(condition)
        if lookups:
            condition = Q(**lookups) if condition is None else condition & Q(**lookups)
        if condition is None or not condition.children:
            raise FieldError("When() needs a condition: a non-empty Q object or keyword lookups")
        self.condition = condition
        self.result = _arg(then)  # as Django: a str names a field (Value('x') is text)

    def __repr__(self) -> str:
        return f"When({self.condition!r}, then={self.result!r})"


class Case(Conditional, Combinable):
    """The ``then`` of the first ``When`` whose condition holds, else ``default``."""

    __slots__ = ("cases", "default", "output")

    def __init__(self, *cases: When, default: Any = None, output_field: Any = None) -> None:
        for case in cases:
            if not isinstance(case, When):
                raise TypeError(f"Case() takes When() branches, got {case!r:.80}")
        self.cases = cases
        self.default = _arg(default)
        self.output = _output(output_field)

    def __repr__(self) -> str:
        return f"Case({', '.join(map(repr, self.cases))}, default={self.default!r})"


__all__ = ["Abs", "Case", "Cast", "Coalesce", "Concat", "Extract", "ExtractDay", "ExtractHour",
           "ExtractIsoWeekDay", "ExtractIsoYear", "ExtractMinute", "ExtractMonth",
           "ExtractQuarter", "ExtractSecond", "ExtractWeek", "ExtractWeekDay", "ExtractYear",
           "Func", "Greatest", "Least", "Length", "Lower", "Now", "NullIf", "Replace", "Round",
           "Substr", "Trim", "Trunc", "TruncDate", "TruncDay", "TruncHour", "TruncMinute",
           "TruncMonth", "TruncQuarter", "TruncSecond", "TruncTime", "TruncWeek", "TruncYear", "Upper",
           "Value", "When"]
