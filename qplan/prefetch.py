"""``prefetch_related()`` lookups and ``Prefetch`` objects as plain records, checked at build.

``plan.prefetch_related('novel_set__genres', Prefetch('reviews', queryset=..., to_attr=...))``
adds one record ``("prefetch_related", item, ...)`` where an item is the lookup as written
(a str) or ``("prefetch", lookup, to_attr or None, ("query", model key, records) or None)``
for a ``Prefetch`` with a queryset or a ``to_attr`` (the same ``("query", ...)`` form as
``field__in=plan``; a slice in it applies per parent, Django 4.2's window: see
``qplan.prefetching``). Lookups use Django's names: forward foreign keys and one-to-ones by
field name, reverse ones by accessor (``novel_set``, ``related_name``), many-to-many both
ways, nested with ``__``, and the ``to_attr`` of an earlier ``Prefetch``. Django checks a
lookup when the queryset is evaluated; qplan checks every level here, where the mistake is
made, with did-you-mean. Running the lookups is ``qplan.prefetching``'s job; the records
never reach the compiler (``Plan.shape`` leaves them out).
"""

from __future__ import annotations

from typing import Any

from .errors import FieldError, NotSupportedError, PlanError, suggest
from .relations import Relation, relations

SEP = "__"
RECORD = "prefetch_related"
ITEM = "prefetch"


class Prefetch:
    """Django's ``Prefetch(lookup, queryset=None, to_attr=None)``: a lookup whose last level
    is fetched with ``queryset`` (a plan of the related model: its filters and order) and
    stored as a list in ``to_attr`` instead of the relation's cache."""

    __slots__ = ("prefetch_through", "queryset", "to_attr")

    def __init__(self, lookup: str, queryset: Any = None, to_attr: str | None = None) -> None:
        if not isinstance(lookup, str) or not lookup:
            raise PlanError(f"Prefetch() takes a lookup str, got {lookup!r:.80}")
        if to_attr is not None and (not isinstance(to_attr, str) or not to_attr.isidentifier()
                                    or SEP in to_attr):
            raise PlanError(f"Prefetch(to_attr=) must be an attribute name, got {to_attr!r:.80}")
        self.prefetch_through = lookup
        self.queryset = queryset
        self.to_attr = to_attr

    @property
    def prefetch_to(self) -> str:
        """Where the result lands: the lookup with its last part replaced by ``to_attr``."""
        if self.to_attr is None:
            return self.prefetch_through
        return SEP.join(self.prefetch_through.split(SEP)[:-1] + [self.to_attr])

    def __repr__(self) -> str:
        extra = "" if self.queryset is None else f", queryset={self.queryset!r}"
        extra += "" if self.to_attr is None else f", to_attr={self.to_attr!r}"
        return f"Prefetch({self.prefetch_through!r}{extra})"


def by_accessor(meta: Any) -> dict[str, Relation]:
    """Every relation of ``meta``'s model by the name ``prefetch_related`` knows it by."""
    return {rel.accessor: rel for rel in relations(meta).values() if rel.accessor is not None}


def items_of(records: tuple) -> tuple:
    """Every prefetch item of ``records``, in order."""
    return tuple(item for r in records if r[0] == RECORD for item in r[1:])


def parts_of(item: Any) -> tuple[str, str | None, tuple | None]:
    """``(lookup, to_attr, ("query", key, records) or None)`` of a record item."""
    if type(item) is str:
        return item, None, None
    return item[1], item[2], item[3]


def prefetch_to(lookup: str, to_attr: str | None) -> str:
    return lookup if to_attr is None else SEP.join(lookup.split(SEP)[:-1] + [to_attr])


def record(meta: Any, earlier: tuple, lookups: tuple, plan_type: type) -> tuple:
    """The ``("prefetch_related", ...)`` record of ``lookups`` on ``meta``'s model, after the
    ``earlier`` items of the plan; ``FieldError`` / ``PlanError`` at the first mistake."""
    seen: dict[str, tuple] = {}  # prefetch_to path -> (target meta, query record or None)
    for item in earlier:
        lookup, to_attr, query = parts_of(item)
        _check(meta, lookup, to_attr, query, seen)
    items = []
    for lookup in lookups:
        if isinstance(lookup, Prefetch):
            query = _query(lookup.queryset, plan_type)
            item: Any = lookup.prefetch_through
            if query is not None or lookup.to_attr is not None:
                item = (ITEM, lookup.prefetch_through, lookup.to_attr, query)
            _check(meta, lookup.prefetch_through, lookup.to_attr, query, seen)
        elif isinstance(lookup, str) and lookup:
            item = lookup
            _check(meta, lookup, None, None, seen)
        else:
            raise PlanError(f"prefetch_related() takes lookups (str) or Prefetch objects, "
                            f"got {lookup!r:.80}")
        items.append(item)
    return (RECORD, *items)


def _query(queryset: Any, plan_type: type) -> tuple | None:
    if queryset is None:
        return None
    if not isinstance(queryset, plan_type):
        raise PlanError(f"Prefetch(queryset=) takes a plan, got {type(queryset).__name__}")
    if queryset.db is not None:
        raise PlanError("Prefetch(queryset=) takes a plan without using(): the prefetch "
                        "query is routed like any plan (set a router to place it)")
    for rec in queryset.records:
        if rec[0] in ("values", "values_list"):
            raise PlanError("Prefetch querysets cannot use raw(), values(), and values_list().")
        if rec[0] in ("count", "exists", "aggregate", "update", "delete", "insert"):
            raise PlanError(f"Prefetch(queryset=) takes a read plan, not one ending in {rec[0]}()")
    return ("query", queryset._key, queryset.records)


def _check(meta: Any, lookup: str, to_attr: str | None, query: tuple | None,
           seen: dict[str, tuple]) -> None:
    """Follow ``lookup`` level by level from ``meta``, as the model chain allows."""
    parts = lookup.split(SEP)
    current = meta
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        path = SEP.join(parts[:i + 1])
        rel = by_accessor(current).get(part)
        if rel is not None:
            target = rel.target
            if last and query is not None and not rel.many and any(
                    r[0] == "slice" for r in query[2]):
                raise NotSupportedError(f"Prefetch({lookup!r}): a sliced queryset is per parent "
                                        f"and {part!r} is a single object per parent (Django "
                                        f"slices reverse foreign keys and many-to-many only)")
        elif path in seen:  # the to_attr of an earlier Prefetch
            target = seen[path][0]
        else:
            above = SEP.join(parts[:i])
            choices = list(by_accessor(current)) + [
                p.rsplit(SEP, 1)[-1] for p in seen
                if (p.rsplit(SEP, 1)[0] if SEP in p else "") == above]
            what = ("does not resolve to an item that supports prefetching"
                    if part in current.by_name else "is an invalid parameter to prefetch_related()")
            raise FieldError(f"Cannot find {part!r} on {current.model.__name__} object, "
                             f"{lookup!r} {what}" + suggest(part, choices))
        if last:
            if query is not None and query[1] != target.key:
                raise FieldError(f"Prefetch({lookup!r}): the queryset is a plan of "
                                 f"{query[1].rsplit('.', 1)[-1]}, the lookup reaches "
                                 f"{target.model.__name__}")
            if to_attr is not None and (to_attr in current.by_name or to_attr in current.by_attname
                                        or to_attr in by_accessor(current)):
                raise FieldError(f"to_attr={to_attr} conflicts with a field on the "
                                 f"{current.model.__name__} model.")
            if to_attr is not None and (to_attr.startswith("_")
                                        or hasattr(current.model, to_attr)):
                # pk, save, delete, _db...: a list there would break the instances (and a
                # loaded payload must not be able to put one there)
                raise FieldError(f"to_attr={to_attr} conflicts with an attribute of the "
                                 f"{current.model.__name__} model.")
            where = prefetch_to(lookup, to_attr)
            entry = (target, query)
            if where in seen and seen[where][1] != query:
                raise PlanError(f"{where!r} lookup was already seen with a different queryset. "
                                f"You may need to adjust the ordering of your lookups.")
            seen.setdefault(where, entry)
        else:
            seen.setdefault(path, (target, None))
        current = target
