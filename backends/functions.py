"""The SQL of database functions and date parts: the defaults every backend inherits.

``qplan.funcsql`` decides what a function means (UTC dates, Concat's NULL as '', Round half
away from zero, Greatest/Least NULL when any argument is); it asks its backend, through
these hooks and tables, how the database spells that meaning. The defaults here are the
standard SQL that PostgreSQL and DuckDB share (``EXTRACT``, ``DATE_TRUNC``, ``||``,
``REGEXP_LIKE``); a backend module overrides only the facts where its database differs,
as ``Backend.lower`` and ``Backend.aggregate`` are overridden. ``Backend`` takes them in
as a mixin (like ``AsyncEdge``), so ``backends/base.py`` stays one file of shared facts.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

# Trunc of a date to a year, month or day through a format (SQLite's strftime and MariaDB's
# DATE_FORMAT read these alike).
DATE_TRUNC_FORMATS = {"year": "%Y-01-01", "month": "%Y-%m-01", "day": "%Y-%m-%d"}


def fn(name: str, *args: exp.Expression) -> exp.Expression:
    """``name(args...)``: a function sqlglot writes as it is named."""
    return exp.Anonymous(this=name, expressions=list(args))


def num(n: Any) -> exp.Expression:
    return exp.Literal.number(n)


class FunctionHooks:
    """How a database spells qplan's functions (defaults: PostgreSQL's and DuckDB's SQL)."""

    dialect = ""  # sqlglot's dialect name (``Backend`` sets it per database)

    # Cast's result kind -> the database type cast to (DecimalField is built from its digits).
    CAST_TYPES: dict[str, str] = {"int": "BIGINT", "float": "DOUBLE PRECISION", "text": "TEXT",
                                  "date": "DATE"}
    # Greatest and Least: the SQL function names.
    GREATEST_SQL = ("GREATEST", "LEAST")
    # Whether those skip NULL arguments (PostgreSQL, DuckDB): qplan's rule is NULL when any
    # argument is, so the compiler adds a CASE there.
    GREATEST_SKIPS_NULLS = False
    # EXTRACT units whose names differ from qplan's part names (PostgreSQL and DuckDB share
    # ISO weeks, ISO years and 1 = Monday ISODOW).
    EXTRACT_UNITS = {"week_day": "DOW", "iso_year": "ISOYEAR", "iso_week_day": "ISODOW"}

    def lower(self, value: exp.Expression) -> exp.Expression:  # pragma: no cover - Backend's
        raise NotImplementedError

    def cast(self, value: exp.Expression, to: str) -> exp.Expression:
        """``CAST(value AS to)``, the type read in this database's dialect."""
        return exp.Cast(this=value, to=exp.DataType.build(to, dialect=self.dialect))

    def upper(self, value: exp.Expression) -> exp.Expression:
        """Text upper-cased by simple Unicode case mapping: ``lower``'s SQL (its collation)
        with UPPER in place of LOWER."""
        sql = self.lower(value)
        low = sql if isinstance(sql, exp.Lower) else sql.find(exp.Lower)
        up = exp.Upper(this=low.this)
        return up if low is sql else (low.replace(up) and sql)

    def concat(self, parts: list[exp.Expression]) -> exp.Expression:
        """The parts joined (none is NULL: the compiler has put COALESCE around them)."""
        sql = parts[0]
        for part in parts[1:]:
            sql = exp.DPipe(this=sql, expression=part, safe=True)
        return exp.Paren(this=sql)

    def substring(self, args: list[exp.Expression]) -> exp.Expression:
        """``SUBSTRING(text, start[, length])``, 1-based."""
        return exp.Substring(this=args[0], start=args[1], length=args[2] if len(args) > 2 else None)

    def regex_match(self, value: exp.Expression, pattern: exp.Expression) -> exp.Expression:
        """``value`` matches ``pattern`` somewhere (qplan's shared regex subset)."""
        return exp.RegexpLike(this=value, expression=pattern)

    def floor_positive(self, value: exp.Expression) -> exp.Expression:
        """The floor of a positive float, as a float (Round's ``floor(|x| * 10^p + 0.5)``)."""
        return exp.Floor(this=value)

    def truncate(self, value: exp.Expression) -> exp.Expression:
        """A float or decimal truncated toward zero, before it is cast to an integer."""
        return fn("TRUNC", value)

    def cast_kind(self, value: exp.Expression, kind: str, to: str) -> tuple[exp.Expression, bool]:
        """Cast's SQL of ``value`` to result ``kind`` (database type ``to``), and whether it may
        be NULL where ``value`` is not (a text that is no date)."""
        return self.cast(value, to), False

    def utc(self, value: exp.Expression) -> exp.Expression:
        """A datetime column as the naive UTC timestamp it stands for (qplan stores UTC)."""
        return value

    def instant(self, value: exp.Expression) -> exp.Expression:
        """A naive UTC timestamp back as a datetime column's value (``utc``'s inverse)."""
        return self.cast(value, "TIMESTAMP")

    def to_date(self, value: exp.Expression) -> exp.Expression:
        """The date of a naive UTC timestamp (or of a date)."""
        return self.cast(value, "DATE")

    def extract(self, part: str, value: exp.Expression) -> exp.Expression:
        """An ``Extract`` part (``qplan.funckinds.EXTRACT_KINDS``) of a date or naive UTC
        timestamp, as an integer with Django's numbering (week_day 1 = Sunday)."""
        sql: exp.Expression = exp.Extract(
            this=exp.Var(this=self.EXTRACT_UNITS.get(part, part.upper())), expression=value)
        if part == "second":  # PostgreSQL's has the fraction: whole seconds, as elsewhere
            sql = exp.Floor(this=sql)
        sql = self.cast(sql, "INTEGER")
        if part == "week_day":  # 0 = Sunday here, 1 = Sunday in Django
            sql = exp.Add(this=sql, expression=num(1))
        return sql

    def trunc(self, part: str, value: exp.Expression, datetime: bool) -> exp.Expression:
        """A date or naive UTC timestamp truncated to ``part`` (``TRUNC_KINDS``); a date for a
        date, a datetime column's value for a datetime."""
        sql = fn("DATE_TRUNC", exp.Literal.string(part), value)
        return self.instant(sql) if datetime else self.cast(sql, "DATE")

    def now(self) -> exp.Expression:
        """The current time as a datetime column's value."""
        return exp.CurrentTimestamp()

    def trunc_time(self, part: str, value: exp.Expression) -> exp.Expression:
        """``value`` (a TIME) cut to ``part`` (hour, minute, second), still a TIME: DATE_TRUNC
        of the time put on a date, cast back."""
        day = exp.Cast(this=exp.Literal.string("2000-01-01"), to=exp.DataType.build("DATE"))
        stamp = exp.Paren(this=exp.Add(this=day, expression=value))
        return exp.Cast(this=fn("DATE_TRUNC", exp.Literal.string(part), stamp),
                        to=exp.DataType.build("TIME"))

    def to_time(self, value: exp.Expression) -> exp.Expression:
        """TruncTime: the time of day of ``value`` (a naive UTC timestamp), to the microsecond."""
        return exp.Cast(this=value, to=exp.DataType.build("TIME"))
