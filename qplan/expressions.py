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

    def asc(self, *, nulls_first: bool | None = None, nulls_last: bool | None = None) -> "OrderBy":
        """This expression ascending, as an ``order_by()`` term."""
        return OrderBy(self, False, nulls_first, nulls_last)

    def desc(self, *, nulls_first: bool | None = None, nulls_last: bool | None = None) -> "OrderBy":
        """This expression descending, as an ``order_by()`` term."""
        return OrderBy(self, True, nulls_first, nulls_last)


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


class Conditional:
    """``&``, ``|``, ``^`` of an expression that may be a condition (its output checked to be
    a BooleanField when a plan is built) with a ``Q`` or another such expression: a ``Q``,
    as Django combines conditional expressions."""

    __slots__ = ()
    conditional = True

    def _q(self, other: Any, op: str, reverse: bool = False) -> Any:
        if not isinstance(other, Q):
            if not getattr(other, "conditional", False):
                return NotImplemented
            other = Q(other)
        mine = Q(self)
        return getattr(other, op)(mine) if reverse else getattr(mine, op)(other)

    def __and__(self, other: Any) -> Any:
        return self._q(other, "__and__")

    def __or__(self, other: Any) -> Any:
        return self._q(other, "__or__")

    def __xor__(self, other: Any) -> Any:
        return self._q(other, "__xor__")

    def __rand__(self, other: Any) -> Any:
        return self._q(other, "__and__", True)

    def __ror__(self, other: Any) -> Any:
        return self._q(other, "__or__", True)

    def __rxor__(self, other: Any) -> Any:
        return self._q(other, "__xor__", True)


class ExpressionWrapper(Conditional, Combinable):
    """``expression`` with the type its result has: ``ExpressionWrapper(F('a') + 1,
    output_field=fields.IntegerField())``. Only the field's ``internal_type`` is kept (a
    plan holds plain values); it may be given as that name too. With a BooleanField it is
    a condition (``conditional``: the type is checked when a plan is built)."""

    __slots__ = ("expression", "output_type")

    def __init__(self, expression: Any, output_field: Any) -> None:
        self.expression = expression
        self.output_type = getattr(output_field, "internal_type", output_field)

    def __repr__(self) -> str:
        return f"ExpressionWrapper({self.expression!r}, output_field={self.output_type})"


class Aggregate(Combinable):
    """An aggregate over a field; ``function`` is its record name (the SQL function).

    ``filter=Q(...)`` counts only the rows it matches, ``default=`` stands for the result
    over no rows (Django 5.2: ``Coalesce(aggregate, default)``). Subclasses say whether
    they take ``distinct`` and ``default`` (Django's ``allow_distinct``/``allow_default``).
    """

    __slots__ = ("expr", "distinct", "filter", "default")
    function = ""
    name = ""  # Django's ``name``: the default alias suffix (lower-cased)
    allow_distinct = True
    allow_default = True

    def __init__(self, expr: Any, *, distinct: bool = False, filter: Any = None,
                 default: Any = None) -> None:
        if distinct and not self.allow_distinct:
            raise TypeError(f"{type(self).__name__} does not allow distinct.")
        if default is not None and not self.allow_default:
            raise TypeError(f"{type(self).__name__} does not allow default.")
        self.expr = F(expr) if isinstance(expr, str) and expr != "*" else expr
        self.distinct = bool(distinct)
        self.filter = filter
        self.default = default

    @property
    def default_alias(self) -> str:
        if isinstance(self.expr, F):
            return f"{self.expr.name}__{self.name or self.function}"
        raise TypeError(f"{self!r} needs an explicit name: aggregate(name={self!r})")

    def __repr__(self) -> str:
        flag = ", distinct=True" if self.distinct else ""
        flag += f", filter={self.filter!r}" if self.filter is not None else ""
        flag += f", default={self.default!r}" if self.default is not None else ""
        return f"{type(self).__name__}({self.expr!r}{flag})"


class Count(Aggregate):
    __slots__ = ()
    function = "count"
    allow_default = False  # Django: a count over no rows is 0 already

    def __init__(self, expr: Any = "*", *, distinct: bool = False, filter: Any = None,
                 default: Any = None) -> None:
        super().__init__(expr, distinct=distinct, filter=filter, default=default)


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


class _Spread(Aggregate):
    """StdDev/Variance: the population one unless ``sample=True`` (Django's ``sample``)."""

    __slots__ = ()
    allow_distinct = False
    functions = ("", "")  # (population, sample)

    def __init__(self, expr: Any, sample: bool = False, *, distinct: bool = False,
                 filter: Any = None, default: Any = None) -> None:
        super().__init__(expr, distinct=distinct, filter=filter, default=default)
        self.sample = bool(sample)

    @property
    def function(self) -> str:  # type: ignore[override]
        return self.functions[self.sample]

    def __repr__(self) -> str:
        text = super().__repr__()
        return text[:-1] + ", sample=True)" if self.sample else text


class StdDev(_Spread):
    """The standard deviation (``STDDEV_POP``; ``STDDEV_SAMP`` with ``sample=True``)."""

    __slots__ = ("sample",)
    name = "stddev"
    functions = ("stddev_pop", "stddev_samp")


class Variance(_Spread):
    """The variance (``VAR_POP``; ``VAR_SAMP`` with ``sample=True``)."""

    __slots__ = ("sample",)
    name = "variance"
    functions = ("var_pop", "var_samp")


class OrderBy:
    """One ordering term: ``F('rating').desc(nulls_last=True)``, ``Lower('title').asc()``.

    ``nulls_first``/``nulls_last`` place NULLs explicitly (Django 5.2: True or None, not
    both); without them NULLs sort as qplan's smallest value.
    """

    __slots__ = ("expression", "descending", "nulls_first", "nulls_last")

    def __init__(self, expression: Any, descending: bool = False, nulls_first: bool | None = None,
                 nulls_last: bool | None = None) -> None:
        for flag in (nulls_first, nulls_last):
            if flag not in (True, None):
                raise ValueError("nulls_first and nulls_last values must be True or None.")
        if nulls_first and nulls_last:
            raise ValueError("nulls_first and nulls_last are mutually exclusive")
        self.expression = expression
        self.descending = bool(descending)
        self.nulls_first, self.nulls_last = nulls_first, nulls_last

    def __repr__(self) -> str:
        nulls = ", nulls_first=True" if self.nulls_first else (
            ", nulls_last=True" if self.nulls_last else "")
        return f"OrderBy({self.expression!r}, descending={self.descending}{nulls})"



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
