"""User-facing expression builders: ``Q``, ``F``, arithmetic and aggregates.

These objects only describe what the user wrote. A plan turns them into plain
tuple records (see ``qplan.records``) the moment they are added, checking every
name against the model, so no builder object ever lives inside a plan.
"""

from __future__ import annotations

from typing import Any

ARITHMETIC = ("+", "-", "*", "/", "%")


class Combinable:
    """Arithmetic on expressions: ``F('price') * 2 + F('tax')``."""

    __slots__ = ()

    def _combine(self, op: str, other: Any, reverse: bool = False) -> "Combined":
        return Combined(op, other, self) if reverse else Combined(op, self, other)

    def __add__(self, other: Any) -> "Combined":
        return self._combine("+", other)

    def __sub__(self, other: Any) -> "Combined":
        return self._combine("-", other)

    def __mul__(self, other: Any) -> "Combined":
        return self._combine("*", other)

    def __truediv__(self, other: Any) -> "Combined":
        return self._combine("/", other)

    def __mod__(self, other: Any) -> "Combined":
        return self._combine("%", other)

    def __neg__(self) -> "Combined":
        """``-F('pages')``: ``F('pages') * -1``, as Django spells it."""
        return self._combine("*", -1)

    def __radd__(self, other: Any) -> "Combined":
        return self._combine("+", other, True)

    def __rsub__(self, other: Any) -> "Combined":
        return self._combine("-", other, True)

    def __rmul__(self, other: Any) -> "Combined":
        return self._combine("*", other, True)

    def __rtruediv__(self, other: Any) -> "Combined":
        return self._combine("/", other, True)

    def __rmod__(self, other: Any) -> "Combined":
        return self._combine("%", other, True)


class F(Combinable):
    """A reference to a field (``F('author__name')``) or an annotation."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"F() takes a field name, got {name!r}")
        self.name = name

    def __repr__(self) -> str:
        return f"F({self.name!r})"


class Combined(Combinable):
    """``lhs op rhs`` where each side is an expression or a plain value."""

    __slots__ = ("op", "lhs", "rhs")

    def __init__(self, op: str, lhs: Any, rhs: Any) -> None:
        self.op, self.lhs, self.rhs = op, lhs, rhs

    def __repr__(self) -> str:
        return f"({self.lhs!r} {self.op} {self.rhs!r})"


class ExpressionWrapper(Combinable):
    """``expression`` with the type its result has: ``ExpressionWrapper(F('a') + 1,
    output_field=fields.IntegerField())``. Only the field's ``internal_type`` is kept (a
    plan holds plain values); it may be given as that name too."""

    __slots__ = ("expression", "output_type")

    def __init__(self, expression: Any, output_field: Any) -> None:
        self.expression = expression
        self.output_type = getattr(output_field, "internal_type", output_field)

    def __repr__(self) -> str:
        return f"ExpressionWrapper({self.expression!r}, output_field={self.output_type})"


class Aggregate(Combinable):
    """An aggregate over a field; the subclass name is the SQL function."""

    __slots__ = ("expr", "distinct")
    function = ""

    def __init__(self, expr: Any, *, distinct: bool = False) -> None:
        self.expr = F(expr) if isinstance(expr, str) and expr != "*" else expr
        self.distinct = bool(distinct)

    @property
    def default_alias(self) -> str:
        if isinstance(self.expr, F):
            return f"{self.expr.name}__{self.function}"
        raise TypeError(f"{self!r} needs an explicit name: aggregate(name={self!r})")

    def __repr__(self) -> str:
        flag = ", distinct=True" if self.distinct else ""
        return f"{type(self).__name__}({self.expr!r}{flag})"


class Count(Aggregate):
    __slots__ = ()
    function = "count"

    def __init__(self, expr: Any = "*", *, distinct: bool = False) -> None:
        super().__init__(expr, distinct=distinct)


class Sum(Aggregate):
    __slots__ = ()
    function = "sum"


class Avg(Aggregate):
    __slots__ = ()
    function = "avg"


class Min(Aggregate):
    __slots__ = ()
    function = "min"


class Max(Aggregate):
    __slots__ = ()
    function = "max"


class Q:
    """A condition tree: keyword lookups combined with ``&``, ``|`` and ``~``."""

    __slots__ = ("children", "connector", "negated")

    AND = "&"
    OR = "|"
    XOR = "^"

    def __init__(self, *args: "Q", _connector: str = "&", _negated: bool = False, **kwargs: Any):
        for arg in args:
            if not isinstance(arg, Q) and not getattr(arg, "conditional", False):  # or Exists
                raise TypeError(f"Q() takes Q objects and keyword lookups, got {arg!r}")
        self.children: tuple[Any, ...] = (*args, *sorted(kwargs.items()))
        self.connector = _connector
        self.negated = _negated

    def _join(self, other: "Q", connector: str) -> "Q":
        """``self`` and ``other`` under ``connector``; a side that already joins its children
        with it is flattened in (as Django does), so ``q = q | Q(...)`` in a loop stays flat."""
        if not isinstance(other, Q):
            return NotImplemented
        if not other.children or not self.children:  # an empty side drops out (Django)
            return (other if not self.children else self)._copy()
        parts = []
        for side in (self, other):
            flat = side.connector == connector and not side.negated and len(side.children) > 1
            parts.extend(side.children if flat else (side,))
        joined = Q(_connector=connector)
        joined.children = tuple(parts)
        return joined

    def _copy(self) -> "Q":
        q = Q(_connector=self.connector, _negated=self.negated)
        q.children = self.children
        return q

    def __and__(self, other: "Q") -> "Q":
        return self._join(other, self.AND)

    def __xor__(self, other: "Q") -> "Q":
        """True when an odd number of the operands are (Django 4.2+)."""
        return self._join(other, self.XOR)

    def __or__(self, other: "Q") -> "Q":
        return self._join(other, self.OR)

    def __invert__(self) -> "Q":
        q = Q(self)
        q.negated = True
        return q

    def __repr__(self) -> str:
        inner = f" {self.connector} ".join(repr(c) for c in self.children)
        return f"{'~' if self.negated else ''}Q({inner})"
