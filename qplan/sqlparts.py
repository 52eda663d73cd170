"""The compiler's vocabulary: numbered slots, result kinds, LIKE patterns, column references.

Small pieces the builder (``qplan.builder``) assembles sqlglot trees from; nothing here
knows a database: dialect facts come from the backend each compile is for.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlglot import exp

from . import records as R
from .fields import Field
from .kinds import FIELD_KIND  # noqa: F401 - the builder reads it from here

# --- slots -------------------------------------------------------------------------------------


class Slot:
    """A numbered value position in a shape; ``count``: placeholders for a tuple value (an
    ``in`` list's length rounded up to its bucket, see ``records._slot``)."""

    __slots__ = ("index", "count", "kind")

    def __init__(self, index: int, count: int | None, kind: str | None) -> None:
        self.index, self.count, self.kind = index, count, kind


PY_KIND = {int: "int", float: "float", str: "text", bool: "bool", bytes: "bytes"}
PY_KIND_BY_NAME = {"Decimal": "decimal", "datetime": "datetime", "date": "date", "time": "time"}


def _py_kind(t: type) -> str | None:
    return PY_KIND.get(t) or PY_KIND_BY_NAME.get(t.__name__)


def number_slots(shape: Any, counter: list[int]) -> Any:
    """Replace slot markers by ``Slot`` objects in the order ``records.walk`` made them."""
    if isinstance(shape, type):
        counter[0] += 1
        return Slot(counter[0] - 1, None, _py_kind(shape))
    if type(shape) is not tuple:
        return shape
    if len(shape) == 2 and shape[0] == R.SLOT and type(shape[1]) is int:  # not ("?", node)
        counter[0] += 1
        return Slot(counter[0] - 1, shape[1], None)
    return tuple(number_slots(s, counter) for s in shape)


NUMERIC = ("int", "float", "decimal")


# LIKE with "!" as its escape character: how a value's own wildcards are escaped ("!"
# first), and what each lookup puts before and after the escaped value.
LIKE_ESCAPES = (("!", "!!"), ("%", "!%"), ("_", "!_"))
LIKE_WRAP = {"contains": ("%", "%"), "startswith": ("", "%"), "endswith": ("%", "")}


def _escape_like(value: str) -> str:
    for char, escaped in LIKE_ESCAPES:
        value = value.replace(char, escaped)
    return value


def _like_transform(before: str, after: str) -> Callable[[str], str]:
    return lambda v: f"{before}{_escape_like(v)}{after}"


# lookup -> (the bound value's transform into a pattern, case-insensitive?)
LIKE_PATTERNS: dict[str, tuple[Callable[[str], str], bool]] = {
    prefix + name: (_like_transform(*wrap), prefix == "i")
    for name, wrap in LIKE_WRAP.items() for prefix in ("", "i")
}


def like_pattern(value: exp.Expression, lookup: str) -> exp.Expression:
    """The LIKE pattern of an expression, as ``LIKE_PATTERNS`` makes it of a value."""
    for char, escaped in LIKE_ESCAPES:
        value = exp.Replace(this=value, expression=exp.Literal.string(char),
                            replacement=exp.Literal.string(escaped))
    before, after = LIKE_WRAP[lookup[1:] if lookup.startswith("i") else lookup]
    parts = [exp.Literal.string(before), value] if before else [value]
    if after:
        parts.append(exp.Literal.string(after))
    return exp.Concat(expressions=parts, safe=False)  # NULL in, NULL out (no match)


COMPARISONS = {"gt": exp.GT, "gte": exp.GTE, "lt": exp.LT, "lte": exp.LTE}
ARITHMETIC = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul, "%": exp.Mod}


def ident(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=True)


def col(name: str, table: str | None) -> exp.Column:
    return exp.Column(this=ident(name), table=ident(table) if table else None)


class Ref:
    """A compiled reference: SQL expression, result kind, decoder, nullability, field."""

    __slots__ = ("sql", "kind", "decode", "nullable", "field", "aggregate")

    def __init__(self, sql: exp.Expression, kind: str | None, decode: Any, nullable: bool,
                 field: Field | None = None, aggregate: bool = False) -> None:
        self.sql, self.kind, self.decode = sql, kind, decode
        self.nullable, self.field, self.aggregate = nullable, field, aggregate
