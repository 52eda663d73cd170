"""TimeField facts every backend shares: reading a TIME back, and the default SQL of
``Trunc`` of a TIME and ``TruncTime`` (PostgreSQL's and DuckDB's; SQLite and MariaDB
override them in their modules). ``Backend`` takes the two hooks in as methods.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from sqlglot import exp


def to_time_value(value: Any) -> Any:
    """A TIME as a naive ``datetime.time``: SQLite's text, MariaDB's ``timedelta`` (its
    drivers read TIME as a duration), or the driver's ``time``."""
    if value is None or type(value) is _dt.time:
        return value
    if isinstance(value, _dt.timedelta):
        micro = value // _dt.timedelta(microseconds=1)
        seconds, micro = divmod(micro, 1_000_000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        return _dt.time(hour, minute, second, micro)
    if isinstance(value, str):
        return _dt.time.fromisoformat(value)
    return value.replace(tzinfo=None)


def trunc_time(self: Any, part: str, value: exp.Expression) -> exp.Expression:
    """``value`` (a TIME) cut to ``part`` (hour, minute, second), still a TIME: DATE_TRUNC
    of the time put on a date, cast back."""
    day = exp.Cast(this=exp.Literal.string("2000-01-01"), to=exp.DataType.build("DATE"))
    stamp = exp.Paren(this=exp.Add(this=day, expression=value))
    return exp.Cast(this=exp.Anonymous(this="DATE_TRUNC", expressions=[
        exp.Literal.string(part), stamp]), to=exp.DataType.build("TIME"))


def to_time(self: Any, value: exp.Expression) -> exp.Expression:
    """The time of day of ``value`` (a naive UTC timestamp), to the microsecond."""
    return exp.Cast(this=value, to=exp.DataType.build("TIME"))
