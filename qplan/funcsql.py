"""SQL of database functions, ``Case``, date transforms and regex lookups, per backend.

The builder hands ``fn``/``case`` records here (``expr``), the transforms of a lookup
(``published__year__gte``: ``transform``) and ``__regex``/``__iregex`` (``regex``). Each
function gives the same rows on SQLite, PostgreSQL, MariaDB and DuckDB; where the
databases differ qplan spells the one meaning out:

- dates and datetimes are truncated and taken apart in UTC (qplan stores UTC);
- ``Concat`` counts a NULL part as '' (Django's ConcatPair), never gives NULL;
- ``Round`` rounds half away from zero (floats by ``floor(|x| * 10^p + 0.5)``, the same
  IEEE arithmetic everywhere; decimals by the database's decimal ROUND);
- ``Greatest``/``Least`` are NULL when any argument is NULL (PostgreSQL and DuckDB would
  skip NULLs: qplan adds the CASE there);
- ``Cast`` of a float or decimal to an integer truncates toward zero;
- ``Upper``/``Lower`` fold by simple Unicode case mapping (as ``__iexact``).
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from . import funckinds, regex
from .errors import FieldError
from .sqlparts import FIELD_KIND, Ref

DATE_FORMATS = {"year": ("%Y-01-01", "%Y"), "month": ("%Y-%m-01", "%m"), "day": ("%Y-%m-%d", "%d")}
# Trunc to a time kind: (SQLite strftime, MariaDB DATE_FORMAT) formats.
TIME_FORMATS = {"hour": ("%Y-%m-%d %H:00:00", "%Y-%m-%d %H:00:00"),
                "minute": ("%Y-%m-%d %H:%M:00", "%Y-%m-%d %H:%i:00"),
                "second": ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%i:%s")}
SQLITE_PARTS = {"year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "minute": "%M",
                "second": "%S"}
MYSQL_EXTRACT = {"year": "YEAR", "month": "MONTH", "day": "DAYOFMONTH", "week_day": "DAYOFWEEK",
                 "quarter": "QUARTER", "hour": "HOUR", "minute": "MINUTE", "second": "SECOND"}
# EXTRACT units of PostgreSQL and DuckDB (both: ISO week, ISO year, 1 = Monday ISODOW).
EXTRACT_UNITS = {"week_day": "DOW", "iso_year": "ISOYEAR", "iso_week_day": "ISODOW"}
CAST_SQL = {  # kind -> per dialect type (DecimalField is built from its digits)
    "int": {"sqlite": "INTEGER", "postgres": "BIGINT", "mysql": "SIGNED", "duckdb": "BIGINT"},
    "float": {"sqlite": "REAL", "postgres": "DOUBLE PRECISION", "mysql": "DOUBLE",
              "duckdb": "DOUBLE"},
    "text": {"sqlite": "TEXT", "postgres": "TEXT", "mysql": "CHAR", "duckdb": "VARCHAR"},
    "date": {"sqlite": "DATE", "postgres": "DATE", "mysql": "DATE", "duckdb": "DATE"},
}
TRANSFORMS = {**{part: "Extract" for part in funckinds.EXTRACT_KINDS}, "date": "TruncDate",
              "time": "TruncTime"}


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _num(n: Any) -> exp.Expression:
    return exp.Literal.number(n)


def _cast(sql: exp.Expression, to: str, dialect: str) -> exp.Expression:
    return exp.Cast(this=sql, to=exp.DataType.build(to, dialect=dialect))


def decode(b: Any, kind: str | None) -> Any:
    """The converter of a computed value of ``kind`` on the builder's backend."""
    if kind == "date":
        return b.backend.DECODE.get("DateField")
    if kind == "datetime":
        return b.backend.DECODE.get("DateTimeField")
    return b.backend.DECODE_KIND.get(kind or "")


def expr(b: Any, node: tuple) -> Ref:
    """A ``fn`` or ``case`` record as SQL on ``b``'s backend."""
    if node[0] == "case":
        return _case(b, node)
    name, options = node[1], node[2]
    refs = [b.expr(a) for a in node[3:]]
    try:
        kind = funckinds.check(name, options, [r.kind for r in refs])
    except ValueError as exc:
        raise FieldError(str(exc)) from None
    sql, nullable = FUNCTIONS[name](b, refs, options, kind)
    return Ref(sql, kind, decode(b, kind), nullable, aggregate=any(r.aggregate for r in refs))


def _case(b: Any, node: tuple) -> Ref:
    _, branches, default, output = node
    ifs, refs, aggregate = [], [], False
    for cond, then in branches:
        sql, agg = b.condition(cond, False)
        ref = b.expr(then)
        refs.append(ref)
        aggregate = aggregate or agg or ref.aggregate
        ifs.append(exp.If(this=sql, true=ref.sql))
    other = b.expr(default) if default is not None else None
    if other is not None:
        refs.append(other)
        aggregate = aggregate or other.aggregate
    kind = funckinds.case([r.kind for r in refs],
                          None if output is None else FIELD_KIND[output[0]])
    nullable = other is None or any(r.nullable for r in refs)
    sql = exp.Case(ifs=ifs, default=other.sql if other is not None else None)
    return Ref(sql, kind, decode(b, kind), nullable, aggregate=aggregate)


def transform(b: Any, ref: Ref, name: str) -> Ref:
    """A lookup transform (an ``Extract`` kind: ``year``, ``week``, ``hour``...; ``date``)
    of ``ref``."""
    function = TRANSFORMS[name]
    options = (name,) if function == "Extract" else ()
    kind = {"Extract": "int", "TruncDate": "date", "TruncTime": "time"}[function]
    sql, nullable = FUNCTIONS[function](b, [ref], options, kind)
    return Ref(sql, kind, decode(b, kind), nullable, aggregate=ref.aggregate)


def regex_match(b: Any, lhs: exp.Expression, pattern: exp.Expression,
                insensitive: bool) -> exp.Expression:
    """``lhs`` matches ``pattern`` somewhere (the shared subset, ``qplan.regex``);
    case-insensitively both sides folded as ``__iexact`` folds them."""
    if insensitive:
        lhs, pattern = b.backend.lower(lhs), b.backend.lower(pattern)
    dialect = b.backend.dialect
    if dialect == "mysql":  # MariaDB has no REGEXP_LIKE; REGEXP_INSTR is PCRE2 too
        return exp.GT(this=_fn("REGEXP_INSTR", lhs, pattern), expression=_num(0))
    return exp.RegexpLike(this=lhs, expression=pattern)


check_regex = regex.check


# --- the functions: (builder, argument refs, options, result kind) -> (sql, nullable) -------


def _nullable(refs: list[Ref]) -> bool:
    return any(r.nullable for r in refs)


def _case_fold(upper: bool):
    def build(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
        sql = b.backend.lower(refs[0].sql)
        if upper:
            low = sql if isinstance(sql, exp.Lower) else sql.find(exp.Lower)
            up = exp.Upper(this=low.this)
            sql = up if low is sql else (low.replace(up) and sql)
            if b.backend.dialect == "duckdb":  # utf8proc upper-cases ß to ẞ; no other does
                sql = exp.Replace(this=sql, expression=exp.Literal.string("\u1e9e"),
                                  replacement=exp.Literal.string("\u00df"))
        return sql, refs[0].nullable
    return build


def _concat(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    parts = [exp.Coalesce(this=r.sql, expressions=[exp.Literal.string("")]) if r.nullable
             else r.sql for r in refs]
    if b.backend.dialect == "mysql":
        return _fn("CONCAT", *parts), False
    sql = parts[0]
    for part in parts[1:]:
        sql = exp.DPipe(this=sql, expression=part, safe=True)
    return exp.Paren(this=sql), False


def _substr(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    args = [r.sql for r in refs]
    if b.backend.dialect == "postgres":  # its SUBSTRING takes integers, a value comes untyped
        args[1:] = [_cast(a, "INTEGER", "postgres") for a in args[1:]]
    sql = exp.Substring(this=args[0], start=args[1], length=args[2] if len(args) > 2 else None)
    return sql, _nullable(refs)


def _greatest(least: bool):
    def build(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
        args = [b.compare(r) if kind == "text" else r.sql for r in refs]
        dialect = b.backend.dialect
        if dialect == "sqlite":  # multi-argument MIN/MAX: NULL when any argument is
            return _fn("MIN" if least else "MAX", *args), _nullable(refs)
        sql = _fn("LEAST" if least else "GREATEST", *args)
        nulls = [r.sql for r in refs if r.nullable]
        if nulls and dialect in ("postgres", "duckdb"):  # they skip NULLs: qplan's rule is NULL
            test = exp.or_(*[exp.Is(this=n.copy(), expression=exp.Null()) for n in nulls])
            sql = exp.Case(ifs=[exp.If(this=test, true=exp.Null())], default=sql)
        return sql, _nullable(refs)
    return build


def _round(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    x, places = refs[0].sql, options[0]
    dialect = b.backend.dialect
    if kind == "decimal":
        return exp.Round(this=x, decimals=_num(places)), refs[0].nullable
    if kind == "int":
        if places >= 0:
            return x, refs[0].nullable
        unit = _num(10 ** -places)
        half = _num(5 * 10 ** (-places - 1))
        magnitude = exp.Mul(this=exp.Paren(this=b.backend.int_divide(
            exp.Paren(this=exp.Add(this=exp.Abs(this=x), expression=half)), unit)), expression=unit)
        return _signed(x, magnitude), refs[0].nullable
    scaled = exp.Abs(this=x.copy())
    if places:
        scaled = exp.Mul(this=scaled, expression=_num(repr(10.0 ** places)))
    shifted = exp.Add(this=scaled, expression=_num("0.5"))
    floor = _cast(shifted, "INTEGER", "sqlite") if dialect == "sqlite" else exp.Floor(this=shifted)
    magnitude: exp.Expression = _cast(floor, "REAL", "sqlite") if dialect == "sqlite" else floor
    if places:
        magnitude = exp.Div(this=magnitude, expression=_num(repr(10.0 ** places)))
    return _signed(x, magnitude), refs[0].nullable


def _signed(x: exp.Expression, magnitude: exp.Expression) -> exp.Expression:
    negative = exp.LT(this=x.copy(), expression=_num(0))
    return exp.Case(ifs=[exp.If(this=negative, true=exp.Neg(this=exp.Paren(this=magnitude)))],
                    default=magnitude.copy())


def _cast_fn(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    ref, dialect = refs[0], b.backend.dialect
    x = ref.sql
    if kind == "date" and ref.kind == "datetime":
        return _trunc_date(b, [ref], (), kind)
    if kind == "int" and ref.kind in ("float", "decimal") and dialect != "sqlite":
        x = _fn("TRUNCATE", x, _num(0)) if dialect == "mysql" else _fn("TRUNC", x)
    if kind == "decimal":
        digits, places = (options[1], options[2]) if len(options) == 3 else (38, 10)
        to = f"DECIMAL({digits}, {places})"
        if dialect == "sqlite":
            return x, ref.nullable  # SQLite keeps numbers as they are (NUMERIC affinity)
    else:
        to = CAST_SQL[kind][dialect]
    if dialect == "sqlite" and kind == "date":
        return _fn("DATE", x), True
    return _cast(x, to, dialect), ref.nullable


def _utc(b: Any, ref: Ref) -> exp.Expression:
    """A datetime as the naive UTC timestamp it stands for (PostgreSQL keeps instants)."""
    if ref.kind == "datetime" and b.backend.dialect == "postgres":
        return exp.AtTimeZone(this=ref.sql, zone=exp.Literal.string("UTC"))
    return ref.sql


def _int(sql: exp.Expression) -> exp.Expression:
    return _cast(sql, "INTEGER", "sqlite")


def _strftime(fmt: str, x: exp.Expression) -> exp.Expression:
    return _fn("STRFTIME", exp.Literal.string(fmt), x.copy())


def _sqlite_monday_index(x: exp.Expression) -> exp.Expression:
    """0 = Monday .. 6 = Sunday (ISO order) of a SQLite date or datetime."""
    shifted = exp.Add(this=_int(_strftime("%w", x)), expression=_num(6))
    return exp.Paren(this=exp.Mod(this=exp.Paren(this=shifted), expression=_num(7)))


def _sqlite_day_shift(x: exp.Expression, days: exp.Expression) -> exp.Expression:
    """The date ``days`` after ``x``'s (SQLite has no %V/%G before 3.46: Julian days)."""
    return _fn("DATE", exp.Add(this=_fn("JULIANDAY", x.copy()), expression=days))


def _sqlite_thursday(x: exp.Expression) -> exp.Expression:
    """The Thursday of ``x``'s ISO week: its year and day of year give ISO year and week."""
    return _sqlite_day_shift(x, exp.Sub(this=_num(3), expression=_sqlite_monday_index(x)))


def _sqlite_extract(part: str, x: exp.Expression) -> exp.Expression:
    if part in SQLITE_PARTS:
        return _int(_strftime(SQLITE_PARTS[part], x))
    if part == "week_day":
        return exp.Add(this=_int(_strftime("%w", x)), expression=_num(1))
    if part == "iso_week_day":
        return exp.Add(this=_sqlite_monday_index(x), expression=_num(1))
    if part == "quarter":
        month = exp.Add(this=_int(_strftime("%m", x)), expression=_num(2))
        return exp.Div(this=exp.Paren(this=month), expression=_num(3), typed=True)
    thursday = _sqlite_thursday(x)
    if part == "iso_year":
        return _int(_strftime("%Y", thursday))
    day = exp.Sub(this=_int(_strftime("%j", thursday)), expression=_num(1))  # week
    return exp.Add(this=exp.Div(this=exp.Paren(this=day), expression=_num(7), typed=True),
                   expression=_num(1))


def _extract(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    part, dialect, x = options[0], b.backend.dialect, _utc(b, refs[0])
    if dialect == "sqlite":
        sql = _sqlite_extract(part, x)
    elif dialect == "mysql":
        if part == "iso_year":
            sql = b.backend.int_divide(_fn("YEARWEEK", x, _num(3)), _num(100))
        elif part == "iso_week_day":
            sql = exp.Add(this=_fn("WEEKDAY", x), expression=_num(1))
        elif part == "week":
            sql = _fn("WEEK", x, _num(3))  # mode 3: ISO weeks, Monday first
        else:
            sql = _fn(MYSQL_EXTRACT[part], x)
    else:
        sql = exp.Extract(this=exp.Var(this=EXTRACT_UNITS.get(part, part.upper())), expression=x)
        if part == "second":  # PostgreSQL's has the fraction: whole seconds, as elsewhere
            sql = exp.Floor(this=sql)
        sql = _cast(sql, "INTEGER", dialect)
        if part == "week_day":  # 0 = Sunday there, 1 = Sunday in Django
            sql = exp.Add(this=sql, expression=_num(1))
    return exp.Paren(this=sql), refs[0].nullable


def _trunc(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    part, dialect, x = options[0], b.backend.dialect, _utc(b, refs[0])
    if refs[0].kind == "time":  # hour, minute, second of a TimeField (backend hook)
        return b.backend.trunc_time(part, x), refs[0].nullable
    datetime = refs[0].kind == "datetime"
    if dialect == "sqlite":
        if part in TIME_FORMATS:
            return _strftime(TIME_FORMATS[part][0], x), refs[0].nullable
        if part == "week":
            day = _sqlite_day_shift(x, exp.Neg(this=_sqlite_monday_index(x)))
        elif part == "quarter":
            back = exp.Mod(this=exp.Paren(this=exp.Sub(this=_int(_strftime("%m", x)),
                                                       expression=_num(1))), expression=_num(3))
            months = exp.DPipe(this=exp.DPipe(this=exp.Literal.string("-"),
                                              expression=exp.Paren(this=back), safe=True),
                               expression=exp.Literal.string(" months"), safe=True)
            day = _fn("DATE", x.copy(), exp.Literal.string("start of month"), months)
        else:
            return _strftime(DATE_FORMATS[part][0] + (" 00:00:00" if datetime else ""),
                             x), refs[0].nullable
        if not datetime:
            return day, refs[0].nullable
        return exp.DPipe(this=day, expression=exp.Literal.string(" 00:00:00"),
                         safe=True), refs[0].nullable
    if dialect == "mysql":
        if part in TIME_FORMATS:
            return _cast(_fn("DATE_FORMAT", x, exp.Literal.string(TIME_FORMATS[part][1])),
                         "DATETIME(6)", "mysql"), refs[0].nullable
        if part == "week":
            day = _fn("FROM_DAYS", exp.Sub(this=_fn("TO_DAYS", x), expression=_fn("WEEKDAY", x.copy())))
        elif part == "quarter":
            first = exp.Sub(this=exp.Mul(this=_fn("QUARTER", x), expression=_num(3)),
                            expression=_num(2))
            day = _cast(_fn("CONCAT", _fn("YEAR", x.copy()), exp.Literal.string("-"), first,
                            exp.Literal.string("-01")), "DATE", "mysql")
        else:
            day = _cast(_fn("DATE_FORMAT", x, exp.Literal.string(DATE_FORMATS[part][0])),
                        "DATE", "mysql")
        return (_cast(day, "DATETIME(6)", "mysql") if datetime else day), refs[0].nullable
    sql = _fn("DATE_TRUNC", exp.Literal.string(part), x)
    if not datetime:
        return _cast(sql, "DATE", dialect), refs[0].nullable
    if dialect == "postgres":  # back to the instant, in UTC
        return exp.AtTimeZone(this=sql, zone=exp.Literal.string("UTC")), refs[0].nullable
    return _cast(sql, "TIMESTAMP", dialect), refs[0].nullable


def _trunc_date(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    x, dialect = _utc(b, refs[0]), b.backend.dialect
    if dialect == "sqlite":
        return _fn("DATE", x), refs[0].nullable
    return _cast(x, "DATE", dialect), refs[0].nullable


def _trunc_time(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    """TruncTime: the UTC time of day of a datetime, to the microsecond (backend hook)."""
    return b.backend.to_time(_utc(b, refs[0])), refs[0].nullable


def _now(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    dialect = b.backend.dialect
    if dialect == "sqlite":
        return _fn("STRFTIME", exp.Literal.string("%Y-%m-%d %H:%M:%f"),
                   exp.Literal.string("now")), False
    if dialect == "mysql":
        return _fn("UTC_TIMESTAMP", _num(6)), False
    if dialect == "duckdb":
        return _cast(_fn("get_current_timestamp"), "TIMESTAMP", dialect), False
    return exp.CurrentTimestamp(), False


def _simple(cls: type, arity: int = 1):
    def build(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
        if cls is exp.Coalesce:
            return exp.Coalesce(this=refs[0].sql, expressions=[r.sql for r in refs[1:]]), \
                all(r.nullable for r in refs)
        if cls is exp.Nullif:
            return exp.Nullif(this=refs[0].sql, expression=refs[1].sql), True
        if cls is exp.Replace:
            return exp.Replace(this=refs[0].sql, expression=refs[1].sql,
                               replacement=refs[2].sql), _nullable(refs)
        return cls(this=refs[0].sql), _nullable(refs)
    return build


FUNCTIONS = {
    "Lower": _case_fold(False), "Upper": _case_fold(True), "Length": _simple(exp.Length),
    "Trim": _simple(exp.Trim), "Abs": _simple(exp.Abs), "Coalesce": _simple(exp.Coalesce),
    "NullIf": _simple(exp.Nullif), "Replace": _simple(exp.Replace), "Concat": _concat,
    "Substr": _substr, "Greatest": _greatest(False), "Least": _greatest(True), "Round": _round,
    "Cast": _cast_fn, "Extract": _extract, "Trunc": _trunc, "TruncDate": _trunc_date,
    "Now": _now, "TruncTime": _trunc_time,
}
