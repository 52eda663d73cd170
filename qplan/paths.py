"""Field paths across relations both ways: ``novel__title``, ``genres``, ``mentor__name``.

One walk over query names (``qplan.relations``) serves the plan layer (checking what the
user wrote, cleaning values), the routers' hints (which models a plan joins) and the
builder (which joins to make). A path names fields and relation query names joined by
``__``; it may end on a relation, which then means the related primary key (``novel``,
``genres``), as in Django. A forward foreign key ending a path (``author``, and
``author__id``) stays the local column: no join.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .errors import FieldError, RoutingError, suggest
from .fields import Field, ForeignKey
from .relations import Relation, relations

SEP = "__"


class Resolved(NamedTuple):
    """A walked path: its canonical form, the field it ends on (for cleaning values and
    lookups), the relations it crosses (``hops``) and the relation it ends on, if any
    other than a forward foreign key (``end``: its primary key is meant)."""

    path: str
    field: Field
    hops: tuple[Relation, ...]
    end: Relation | None


class RelatedKey(ForeignKey):
    """The field a path ending on a reverse or many-to-many relation stands for: the related
    primary key, cleaned as a foreign key to the target (an instance gives its pk; an
    instance of another model is a ``FieldError``)."""

    def __init__(self, rel: Relation) -> None:
        super().__init__(rel.target.model, null=True)
        self.model = rel.source.model
        self.name = rel.name
        self.attname = rel.name
        self.column = ""


_KEYS: dict[Any, RelatedKey] = {}


def related_key(rel: Relation) -> RelatedKey:
    key = (rel.source, rel.name, rel.field)
    found = _KEYS.get(key)
    if found is None:
        found = _KEYS[key] = RelatedKey(rel)
    return found


def same_database(meta: Any, target: Any, who: str) -> None:
    """Models pinned to different aliases by ``Meta.using`` cannot be joined."""
    a, b = meta.using, target.using
    if isinstance(a, str) and isinstance(b, str) and a != b:
        raise RoutingError(
            f"{who}: {meta.model.__name__} lives on {a!r} and {target.model.__name__} on {b!r}; "
            f"a plan cannot join them"
        )


def many(hops: tuple[Relation, ...]) -> bool:
    """True when a path crosses a multi-valued relation (reverse foreign key, many-to-many)."""
    return any(rel.many for rel in hops)


def _unknown(current: Any, part: str, who: str) -> FieldError:
    rels = relations(current)
    accessor = next((r for r in rels.values() if r.kind != "forward" and r.accessor == part
                     and r.name != part), None)
    if accessor is not None:
        return FieldError(f"{who}: {part!r} is {current.model.__name__}'s related manager, not a "
                          f"query name; use {accessor.name!r} in queries")
    return FieldError(f"{current.model.__name__} has no field {part!r}"
                      + suggest(part, [*current.by_name, *current.by_attname, "pk", *rels]))


def resolve(meta: Any, parts: list[str], who: str) -> Resolved:
    """Follow ``parts`` from ``meta``'s model; ``FieldError`` naming what is wrong."""
    names: list[str] = []
    hops: list[Relation] = []
    current = meta
    last = len(parts) - 1
    for i, part in enumerate(parts):
        rel = relations(current).get(part) if part != "pk" else None
        if rel is not None:
            names.append(rel.name)
            if rel.kind == "forward" and i == last:
                return Resolved(SEP.join(names), rel.field, tuple(hops), None)  # the fk column
            joined = rel.steps[:rel.pk_column[0]] if i == last else rel.steps
            for step in joined:  # the tables a join reaches must share a database
                same_database(meta, step.right, who)
            if rel.kind == "forward" and i == last - 1 and parts[-1] in ("pk", rel.target.pk.name):
                return Resolved(SEP.join(names), rel.field, tuple(hops), None)  # fk__id
            if i == last:
                return Resolved(SEP.join(names), related_key(rel), tuple(hops), rel)
            hops.append(rel)
            current = rel.target
            continue
        if part == "pk":
            field = current.pk
        else:
            field = current.by_name.get(part) or current.by_attname.get(part)
            if field is None:
                raise _unknown(current, part, who)
        names.append(field.name)
        if i != last:
            raise FieldError(f"{who}: {field.model.__name__}.{field.name} is not a relation, "
                             f"cannot follow it to {parts[i + 1]!r}")
        return Resolved(SEP.join(names), field, tuple(hops), None)
    raise FieldError(f"{who}: an empty field path")


def resolve_path(meta: Any, path: str) -> Resolved:
    """``resolve`` of a canonical path (as records hold it), cached per model."""
    cache = meta.path_cache
    key = ("resolved", path)
    found = cache.get(key)
    if found is None:
        found = cache[key] = resolve(meta, path.split(SEP), meta.model.__name__)
    return found
