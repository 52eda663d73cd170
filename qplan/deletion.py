"""Counting what a delete takes with it: rows the database deletes by ON DELETE CASCADE.

Django returns ``(total, {label: count})`` from ``delete()``, cascaded rows included. The
database does the cascading here (the tables are created with their ON DELETE actions), so
the rows it will take are counted just before the delete, following every CASCADE foreign
key from the deleted rows, level by level (inside ``atomic()`` the counts and the delete
see the same rows). A model nothing cascades to costs no extra query. The rows of an
auto-created many-to-many through model (CASCADE foreign keys to both sides) are counted
under its label, as Django counts ``app.Novel_genres``. (A database whose
foreign keys take no action, ``ON_DELETE_IN_DATABASE = False``, refuses to delete a
referenced row instead: nothing cascades, so nothing is counted.)
"""

from __future__ import annotations

from typing import Any, Callable

from .fields import CASCADE, ForeignKey
from .incoming import incoming
from .steps import Steps

CHUNK = 1000  # primary keys per ``__in`` lookup


def _cascading(model: Any) -> list[tuple[Any, Any]]:
    """``(related model, foreign key)`` for every CASCADE foreign key pointing at ``model``:
    read from ``qplan.incoming``'s index (one registry scan per generation, not per delete;
    a foreign key whose target is not registered yet cannot point here and is skipped)."""
    return [(other, field) for other, field in incoming(model)
            if isinstance(field, ForeignKey) and field.on_delete == CASCADE]


def cascaded(plan: Any, using: str | None, query: Callable[..., Steps]) -> Steps:
    """``{label: rows}`` the database will delete by cascade when ``plan``'s rows go (core
    steps, ``qplan.steps``: ``query(plan, using)`` gives the steps evaluating a plan)."""
    counts: dict[str, int] = {}
    if not _cascading(plan.model):
        return counts
    frontier = [(plan.model, (yield from _pks(plan, using, query)))]
    seen: set[tuple[Any, Any]] = set()
    while frontier:
        model, pks = frontier.pop()
        for other, field in _cascading(model):
            found = []
            for start in range(0, len(pks), CHUNK):
                some = yield from _pks(other.objects.filter(
                    **{f"{field.name}__in": pks[start:start + CHUNK]}), using, query)
                found += [pk for pk in some if (other, pk) not in seen]
            if found:
                seen.update((other, pk) for pk in found)
                counts[other._meta.label] = counts.get(other._meta.label, 0) + len(found)
                frontier.append((other, found))
    return counts


def _pks(plan: Any, using: str | None, query: Callable[..., Steps]) -> Steps:
    return list((yield from query(plan.values_list("pk", flat=True), using)))
