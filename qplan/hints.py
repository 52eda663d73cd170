"""What a plan's records tell routers: the values it pins a field to, the models it joins.

Pure functions over records (no model classes are imported): ``Plan.constraints`` and
``Plan.related_models`` are the public face routers use.
"""

from __future__ import annotations

from typing import Any, Iterator

from . import selectrelated
from .errors import Error
from .paths import resolve_path
from .records import LOOKUP_NAMES, VALUE
from .registry import get_model


def constraints(records: tuple, path: str) -> tuple | None:
    """The values ``records`` pin the field at ``path`` to (None: not pinned)."""
    pinned: set | None = None
    for record in records:
        if record[0] == "filter":
            found = _pinned(record[1], path)
        elif record[0] == "insert" and path in record[1]:
            i = record[1].index(path)
            found = {row[i][1] for row in record[2]}
        else:
            continue
        if found is not None:
            pinned = found if pinned is None else pinned & found
    return None if pinned is None else tuple(sorted(pinned, key=_sort_key))


def related_models(meta: Any, records: tuple, subquery: bool = False) -> tuple[Any, ...]:
    """The other models ``records`` join from ``meta``'s model, either way across relations
    (``qplan.paths``), through models of many-to-many relations included: joins of filters,
    orderings, values and select_related, and subqueries (a ``subquery`` selects one
    column, so its select_related joins nothing)."""
    seen: dict[Any, None] = {}
    if not subquery and any(r[0] == selectrelated.OP for r in records) \
            and _fetches_models(records):
        for rel in selectrelated.chains(meta, records).values():
            seen[rel.target.model] = None
    for key, inner in _subqueries(records):  # field__in=plan reads that plan's models too
        model = get_model(key)
        seen[model] = None
        seen.update(dict.fromkeys(related_models(model._meta, inner, True)))
    for path in _paths(records):
        try:
            found = resolve_path(meta, path)
        except Error:  # an annotation's name
            continue
        for rel in found.hops:
            seen.update(dict.fromkeys(step.right.model for step in rel.steps))
        if found.end is not None:  # the related key: only the tables holding it are joined
            steps = found.end.steps[:found.end.pk_column[0]]
            seen.update(dict.fromkeys(step.right.model for step in steps))
    seen.pop(meta.model, None)
    return tuple(seen)


def _fetches_models(records: tuple) -> bool:
    """Whether the records fetch instances: select_related joins nothing otherwise."""
    return not any(r[0] in ("values", "values_list", "count", "exists", "aggregate", "update",
                            "delete", "insert") for r in records)


def _pinned(node: tuple, path: str) -> set | None:
    """Values a condition pins ``path`` to (None: any value can match)."""
    tag = node[0]
    if tag in ("!", "^", "exists", "if"):  # an Exists, a boolean expression pin nothing
        return None
    if tag in ("&", "|"):
        parts = [_pinned(child, path) for child in node[1]]
        if tag == "|":
            return None if any(p is None for p in parts) else set().union(*parts)
        known = [p for p in parts if p is not None]
        return set.intersection(*known) if known else None
    leaf_path, lookup, rhs = node
    if leaf_path != path or type(rhs) is not tuple or rhs[0] != VALUE:
        return None
    if lookup == "exact":
        return {rhs[1]}
    if lookup == "in":
        return set(rhs[1])
    return None


def _subqueries(node: Any) -> Iterator[tuple[str, tuple]]:
    """``(model key, records)`` of every ``("query", key, records)`` rhs in records."""
    if type(node) is not tuple or not node or node[0] == VALUE:
        return
    if node[0] == "query" and len(node) == 3:
        yield node[1], node[2]
        return
    if node[0] == "combine" and len(node) == 4:  # union() & co: each operand's plan
        for key, records in node[3]:
            yield key, records
        return
    for child in node:
        yield from _subqueries(child)


def _sort_key(value: Any) -> tuple:
    return (type(value).__name__, value)


def _paths(node: Any) -> Iterator[str]:
    """Every field path string named in records (leaves, F references, orderings, values)."""
    if type(node) is not tuple or not node:
        return
    head = node[0]
    if head == VALUE or head == "query" or head == "combine":  # their own model's paths
        return
    if head == "F" and len(node) == 2:
        yield node[1]
        return
    if head in ("order_by", "values", "values_list"):
        for name in node[1]:
            if type(name) is tuple:  # an order_by expression term (qplan.ordering)
                yield from _paths(name[1])
            else:
                yield name.lstrip("-")
        return
    if type(head) is str and len(node) == 3 and node[1] in LOOKUP_NAMES:  # a leaf
        yield head
    for child in node:
        yield from _paths(child)
