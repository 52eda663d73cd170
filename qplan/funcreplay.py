"""``fn``/``case`` records (``qplan.funcrecords``) as the ``qplan.functions`` objects that
make them again: ``qplan.replay`` rebuilds every loaded record through the public API."""

from __future__ import annotations

from typing import Any, Callable

from . import funckinds
from .errors import PlanError
from .functions import Case, Func, Value, When

TAGS = ("fn", "case")
CLASSES = {name: type(name, (Func,), {"__slots__": (), "function": name}) for name in funckinds.NAMES}


def rebuild(node: tuple, expression: Callable[[Any], Any], condition: Callable[[Any], Any]) -> Any:
    """The object of a ``fn``/``case`` record; ``PlanError`` when it is malformed."""
    inner = expression
    expression = lambda n: Value(n[1]) if type(n) is tuple and len(n) == 2 and n[0] == "=" \
        else inner(n)  # noqa: E731 - a str value stays a value (a bare str names a field)
    if node[0] == "fn":
        if len(node) < 3 or node[1] not in CLASSES or type(node[2]) is not tuple:
            raise PlanError(f"not a function: {node!r:.80}")
        func = CLASSES[node[1]]()
        func.args = tuple(expression(a) for a in node[3:])
        func.options = node[2]
        return func
    if len(node) != 4 or type(node[1]) is not tuple or not all(
            type(b) is tuple and len(b) == 2 for b in node[1]) or (
            node[3] is not None and type(node[3]) is not tuple):
        raise PlanError(f"not a Case: {node!r:.80}")
    case = Case(*[When(condition(cond), then=expression(then)) for cond, then in node[1]],
                default=None if node[2] is None else expression(node[2]))
    case.output = node[3]
    return case
