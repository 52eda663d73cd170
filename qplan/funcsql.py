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

How each database spells that is its backend's business (``qplan.backends.functions``:
hooks such as ``extract``, ``trunc``, ``cast_kind`` and tables such as ``CAST_TYPES``,
overridden per backend module); this module never asks which database it compiles for.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from . import funckinds, regex
from .errors import FieldError
from .sqlparts import FIELD_KIND, Ref

TRANSFORMS = {**{part: "Extract" for part in funckinds.EXTRACT_KINDS}, "date": "TruncDate",
              "time": "TruncTime"}


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _num(n: Any) -> exp.Expression:
    return exp.Literal.number(n)


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
    return b.backend.regex_match(lhs, pattern)


check_regex = regex.check


# --- the functions: (builder, argument refs, options, result kind) -> (sql, nullable) -------


def _nullable(refs: list[Ref]) -> bool:
    return any(r.nullable for r in refs)


def _case_fold(upper: bool):
    def build(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
        sql = (b.backend.upper if upper else b.backend.lower)(refs[0].sql)
        return sql, refs[0].nullable
    return build


def _concat(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    parts = [exp.Coalesce(this=r.sql, expressions=[exp.Literal.string("")]) if r.nullable
             else r.sql for r in refs]
    return b.backend.concat(parts), False


def _substr(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    return b.backend.substring([r.sql for r in refs]), _nullable(refs)


def _greatest(least: bool):
    def build(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
        args = [b.compare(r) if kind == "text" else r.sql for r in refs]
        backend = b.backend
        sql = _fn(backend.GREATEST_SQL[least], *args)
        nulls = [r.sql for r in refs if r.nullable]
        if nulls and backend.GREATEST_SKIPS_NULLS:  # qplan's rule: NULL when any argument is
            test = exp.or_(*[exp.Is(this=n.copy(), expression=exp.Null()) for n in nulls])
            sql = exp.Case(ifs=[exp.If(this=test, true=exp.Null())], default=sql)
        return sql, _nullable(refs)
    return build


def _round(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    x, places = refs[0].sql, options[0]
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
    magnitude = b.backend.floor_positive(shifted)
    if places:
        magnitude = exp.Div(this=magnitude, expression=_num(repr(10.0 ** places)))
    return _signed(x, magnitude), refs[0].nullable


def _signed(x: exp.Expression, magnitude: exp.Expression) -> exp.Expression:
    negative = exp.LT(this=x.copy(), expression=_num(0))
    return exp.Case(ifs=[exp.If(this=negative, true=exp.Neg(this=exp.Paren(this=magnitude)))],
                    default=magnitude.copy())


def _cast_fn(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    ref, backend = refs[0], b.backend
    x = ref.sql
    if kind == "date" and ref.kind == "datetime":
        return _trunc_date(b, [ref], (), kind)
    if kind == "int" and ref.kind in ("float", "decimal"):
        x = backend.truncate(x)
    if kind == "decimal":
        digits, places = (options[1], options[2]) if len(options) == 3 else (38, 10)
        to = f"DECIMAL({digits}, {places})"
    else:
        to = backend.CAST_TYPES[kind]
    sql, nulls = backend.cast_kind(x, kind, to)
    return sql, ref.nullable or nulls


def _utc(b: Any, ref: Ref) -> exp.Expression:
    """A datetime as the naive UTC timestamp it stands for (the backend's ``utc``)."""
    return b.backend.utc(ref.sql) if ref.kind == "datetime" else ref.sql


def _extract(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    return exp.Paren(this=b.backend.extract(options[0], _utc(b, refs[0]))), refs[0].nullable


def _trunc(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    x = _utc(b, refs[0])
    if refs[0].kind == "time":  # hour, minute, second of a TimeField
        return b.backend.trunc_time(options[0], x), refs[0].nullable
    return b.backend.trunc(options[0], x, refs[0].kind == "datetime"), refs[0].nullable


def _trunc_date(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    return b.backend.to_date(_utc(b, refs[0])), refs[0].nullable


def _trunc_time(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    """TruncTime: the UTC time of day of a datetime, to the microsecond (backend hook)."""
    return b.backend.to_time(_utc(b, refs[0])), refs[0].nullable


def _now(b: Any, refs: list[Ref], options: tuple, kind: str) -> tuple:
    return b.backend.now(), False


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
