"""Placeholders written by the SQL generator itself: a bound value is never found in SQL text.

The compiler puts ``exp.Placeholder`` nodes (one value) and ``Spread`` nodes (an ``in``
list) into its sqlglot tree, each naming an entry of the builder's bind list. ``render``
generates the tree with a per-dialect subclass of sqlglot's own generator whose
``placeholder_sql``/``spread_sql`` write the driver's mark (``?`` or ``%s``) and record the
entry at that moment, so the recorded binds follow the text as long as sqlglot generates
each node's children in the order it writes them. Among the nodes the compiler builds,
``In`` alone did not (its list before its left side) and is overridden here;
tests/test_binding.py checks the recorded order against sqlglot's own numbered
rendering for many plan shapes on every dialect. Nothing ever searches the generated
text, so a table, column or alias named ``:qp0``, ``%s`` or ``?`` stays a name.

Drivers with the ``format`` paramstyle (psycopg2, PyMySQL) %-format the whole statement
text, so in a statement WITH parameters every other ``%`` is doubled where it is
written: in identifiers, string literals, bare words and the modulo operator. A
statement without parameters reaches the driver without any (``connections._run``) and
keeps its ``%`` as written.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from .errors import PlanError

# The sub-index of a bind entry ``(slot, SPREAD, n)``: the slot's whole list, as n values.
SPREAD = -2

# paramstyle -> the driver's mark for one value
MARKS = {"qmark": "?", "format": "%s"}


class Spread(exp.Expression):
    """An ``in`` list as one node: ``n`` placeholders for one list value (``this``: qpN).

    One node instead of one per element keeps a 65,536-value list a millisecond compile.
    """

    arg_types = {"this": True}


def placeholder(index: int) -> exp.Placeholder:
    """The node of bind entry ``index`` (named ``qpN``, as sqlglot would write it anyway)."""
    return exp.Placeholder(this=f"qp{index}")


def spread(index: int) -> Spread:
    return Spread(this=f"qp{index}")


def entry_index(node: exp.Expression) -> int:
    return int(node.name[2:])


class BindingMixin:
    """Writes driver marks and records bind entries while generating; doubles ``%``."""

    def __init__(self, *, mark: str, binds: list, double: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self.mark = mark
        self.entries = binds
        self.recorded: list = []
        self.double = double
        if double:  # the modulo operator is the one operator spelled with %
            self.MOD_OPERATOR = "%%"

    def placeholder_sql(self, expression: exp.Placeholder) -> str:
        self.recorded.append(self.entries[entry_index(expression)])
        return self.mark

    def spread_sql(self, expression: Spread) -> str:
        entry = self.entries[entry_index(expression)]
        self.recorded.append(entry)
        return ", ".join([self.mark] * entry[2])

    def in_sql(self, expression: exp.In) -> str:
        # sqlglot writes the list before the left side; the left side comes first in the text.
        # Only the forms the compiler builds: a value list or a subquery.
        this = self.sql(expression, "this")  # type: ignore[attr-defined]
        query = expression.args.get("query")
        rest = self.sql(query) if query else f"({self.expressions(expression, flat=True)})"  # type: ignore[attr-defined]
        return f"{this} IN {rest}"

    def _percent(self, text: str) -> str:
        return text.replace("%", "%%") if self.double else text

    def identifier_sql(self, expression: exp.Identifier) -> str:
        return self._percent(super().identifier_sql(expression))  # type: ignore[misc]

    def literal_sql(self, expression: exp.Literal) -> str:
        return self._percent(super().literal_sql(expression))  # type: ignore[misc]

    def var_sql(self, expression: exp.Var) -> str:
        return self._percent(super().var_sql(expression))  # type: ignore[misc]


# What the mixin writes itself: dialects' TRANSFORMS entries for these would bypass it.
OWN = (exp.Placeholder, exp.In, exp.Identifier, exp.Literal, exp.Var, exp.Mod)

_generators: dict[str, type] = {}


def generator_class(dialect: str) -> type:
    """The binding generator of a sqlglot dialect (built once per dialect)."""
    cls = _generators.get(dialect)
    if cls is None:
        base = Dialect.get_or_raise(dialect).generator_class
        transforms = {k: v for k, v in base.TRANSFORMS.items() if k not in OWN}
        transforms[Spread] = lambda self, e: self.spread_sql(e)
        cls = _generators[dialect] = type(
            f"Binding{base.__name__}", (BindingMixin, base), {"TRANSFORMS": transforms})
    return cls


def has_parameters(tree: exp.Expression) -> bool:
    return tree.find(exp.Placeholder, Spread) is not None


def render(tree: exp.Expression, dialect: str, paramstyle: str, binds: list) -> tuple[str, list]:
    """SQL text of ``tree`` with the driver's marks, and the bind entries in text order.

    A placeholder written twice (an annotation used in two clauses) is bound twice.
    """
    with_params = has_parameters(tree)
    gen = generator_class(dialect)(dialect=dialect, mark=MARKS[paramstyle], binds=binds,
                                   double=with_params and paramstyle == "format")
    sql = gen.generate(tree)
    if bool(gen.recorded) != with_params:  # a generator that dropped or invented a placeholder
        raise PlanError(f"internal error: {len(gen.recorded)} values bound for {dialect} SQL "
                        f"{'with' if with_params else 'without'} placeholders")
    return sql, gen.recorded
