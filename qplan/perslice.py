"""Per-parent slices: the record behind ``Prefetch(lookup, queryset=plan[start:stop])``.

Django 4.2+ slices a prefetch queryset per parent object: each parent gets at most
``stop - start`` related rows, not the whole query. qplan records that as

    ("slice_per", path, start value node or None, stop value node or None)

``path`` names the column that says which parent a row belongs to (the foreign key on
the related model, or the many-to-many's way back to its source), in the plan's own
query names: one relation step of those kinds, nothing else (a payload may hold any); the bounds are value nodes (``("=", int)``) so plans differing only in them
share a template. The compiler numbers the rows of each parent with
``ROW_NUMBER() OVER (PARTITION BY path ORDER BY <the plan's order, then pk>)`` and keeps
``start < n <= stop`` in an outer query (``qplan.perslicesql``). Nothing may be chained
after it but ``prefetch_related()``: it is what prefetching runs, last.
"""

from __future__ import annotations

from typing import Any

from . import records as R
from .errors import PlanError
from .relations import relation

OP = "slice_per"
LIMIT = 1 << 63
# The relations a path may name: one step back to the parent, never one that multiplies
# rows (a reverse foreign key, a join further on) nor a plain column.
BACK = ("forward", "m2m", "m2m_reverse")


def record(meta: Any, path: str, start: int, stop: int | None) -> tuple:
    """The ``slice_per`` record of ``path`` on ``meta``'s model; ``PlanError``/``FieldError``
    at a mistake (bounds that are not ints in 0..2**63-1, stop before start, unknown path)."""
    if not isinstance(path, str) or not path:
        raise PlanError(f"a per-parent slice takes a path (str), got {path!r:.60}")
    for bound in (start, stop):
        if bound is not None and (type(bound) is not int or not 0 <= bound < LIMIT):
            raise PlanError(f"a per-parent slice bound must be an int in 0..2**63-1, "
                            f"got {bound!r:.40}")
    if start is None or (stop is not None and stop < start):
        raise PlanError(f"a per-parent slice takes 0 <= start <= stop, got [{start}:{stop}]")
    R.resolve_path(meta, path.split("__"), meta.model.__name__)  # FieldError, did-you-mean
    rel = relation(meta, path)
    if rel is None or rel.kind not in BACK:
        raise PlanError(f"a per-parent slice partitions by a foreign key or a many-to-many of "
                        f"{meta.model.__name__} (its way back to the parent), got {path!r:.60}")
    return (OP, path, (R.VALUE, start) if start else None,
            None if stop is None else (R.VALUE, stop))


def bounds(rec: tuple) -> tuple[int, int | None]:
    """``(start, stop)`` of a ``slice_per`` record."""
    return (rec[2][1] if rec[2] else 0), (None if rec[3] is None else rec[3][1])


def of(records: tuple) -> tuple | None:
    """The plan's ``slice_per`` record, if it has one."""
    return next((r for r in records if r[0] == OP), None)
