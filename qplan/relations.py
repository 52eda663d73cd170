"""Relations both ways: every name a query can follow from a model, and how it joins.

``relations(meta)`` maps each name to a ``Relation``: the model's forward foreign keys
and one-to-ones (``author``), the reverse of every foreign key or one-to-one pointing at
it (``book``, or its ``related_query_name``/``related_name``) and its many-to-many
fields both ways (``tags`` forward, ``book`` backward through the through table; a
symmetrical one, ``ManyToManyField("self")``, only forward: it holds both directions). A
``Relation`` is a plain record of the joins it takes, so the compiler, the hints routers
read and the instance descriptors all follow one description. The reverse side needs
every field that points here (``qplan.incoming``: one registry scan per generation), so it
is computed on first use and again when a model is registered later.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .errors import ConfigurationError, FieldError, suggest
from .fields import ForeignKey, ManyToManyField
from .incoming import incoming
from .registry import generation


class Step(NamedTuple):
    """One join: ``left table.left_column = right_meta's table.right_column``."""

    left_column: str
    right: Any  # the Options of the table joined
    right_column: str


class Relation(NamedTuple):
    """A name a query follows from ``source`` (an ``Options``) to ``target`` (an ``Options``).

    ``kind`` is ``"forward"`` (a foreign key or one-to-one of ``source``), ``"reverse"``
    (one pointing at ``source``), ``"m2m"`` or ``"m2m_reverse"``. ``many`` tells a
    multi-valued relation (reverse foreign key, many-to-many) from a single-valued one;
    ``nullable`` whether a row may have no related row (a LEFT JOIN). ``field`` is the
    ``ForeignKey`` or ``ManyToManyField`` declaring it; ``accessor`` the instance attribute
    (``book_set``, ``tags``, ``profile``; None for ``related_name='+'``).
    """

    name: str
    source: Any
    target: Any
    kind: str
    many: bool
    nullable: bool
    field: Any
    steps: tuple[Step, ...]
    accessor: str | None

    @property
    def pk_column(self) -> tuple[int, str]:
        """``(joins, column)``: the related primary key is ``column`` of the table reached
        after the first ``joins`` steps, without joining the target table: the foreign key
        column itself (0), the related table's key (1, reverse), the through column (1)."""
        if self.kind == "forward":
            return 0, self.steps[0].left_column
        if len(self.steps) == 2:
            return 1, self.steps[1].left_column
        return 1, self.steps[0].right.pk.column

    @property
    def one_to_one(self) -> bool:
        return bool(getattr(self.field, "one_to_one", False))


def model_name(model: Any) -> str:
    return model.__name__.lower()


def reverse_accessor(field: Any) -> str | None:
    """The instance attribute of the reverse side of ``field`` (a foreign key, one-to-one or
    many-to-many of ``field.model``): its ``related_name``, else ``<model>_set``
    (``<model>`` for a one-to-one); None for ``related_name='+'`` and a symmetrical
    many-to-many (it has no reverse side: its forward side lists both ways)."""
    if field.related_name == "+" or getattr(field, "symmetrical", False):
        return None
    if field.related_name:
        return field.related_name
    name = model_name(field.model)
    return name if getattr(field, "one_to_one", False) else name + "_set"


def _forward(meta: Any, field: ForeignKey) -> Relation:
    target = field.target._meta
    return Relation(field.name, meta, target, "forward", False, field.null, field,
                    (Step(field.column, target, target.pk.column),), field.name)


def _reverse(meta: Any, other: Any, field: ForeignKey) -> Relation | None:
    if field.related_name == "+":
        return None
    name = field.related_query_name or field.related_name or model_name(other.model)
    return Relation(name, meta, other, "reverse", not field.one_to_one, True, field,
                    (Step(meta.pk.column, other, field.column),), reverse_accessor(field))


def _m2m(meta: Any, field: ManyToManyField) -> Relation:
    through = field.through._meta
    source_fk, target_fk = field.link_fields()
    target = field.target._meta
    return Relation(field.name, meta, target, "m2m", True, True, field,
                    (Step(meta.pk.column, through, source_fk.column),
                     Step(target_fk.column, target, target.pk.column)), field.name)


def _m2m_reverse(meta: Any, other: Any, field: ManyToManyField) -> Relation | None:
    if field.related_name == "+" or field.symmetrical:
        return None
    through = field.through._meta
    source_fk, target_fk = field.link_fields()
    name = field.related_query_name or field.related_name or model_name(other.model)
    return Relation(name, meta, other, "m2m_reverse", True, True, field,
                    (Step(meta.pk.column, through, target_fk.column),
                     Step(source_fk.column, other, other.pk.column)), reverse_accessor(field))


def _build(meta: Any) -> dict[str, Relation]:
    out: dict[str, Relation] = {}

    def add(rel: Relation | None) -> None:
        if rel is None:
            return
        if rel.name in out or (rel.kind in ("reverse", "m2m_reverse") and (
                rel.name in meta.by_name or rel.name in meta.by_attname or rel.name == "pk")):
            raise ConfigurationError(
                f"{meta.model.__name__}: the reverse query name {rel.name!r} of "
                f"{rel.field!r} clashes with a field or another relation; give it a "
                f"related_name= or related_query_name=")
        out[rel.name] = rel

    for field in meta.fields:
        if isinstance(field, ForeignKey):
            add(_forward(meta, field))
    for field in meta.many_to_many:
        add(_m2m(meta, field))
    for other, field in incoming(meta.model):
        if isinstance(field, ManyToManyField):
            add(_m2m_reverse(meta, other._meta, field))
        else:
            add(_reverse(meta, other._meta, field))
    return out


def relations(meta: Any) -> dict[str, Relation]:
    """Every relation a query can follow from ``meta``'s model, by query name."""
    cached = meta.relation_cache
    if cached is not None and cached[0] == generation():
        return cached[1]
    found = _build(meta)
    meta.relation_cache = (generation(), found)
    return found


def relation(meta: Any, name: str) -> Relation | None:
    """The relation ``name`` of ``meta``'s model, or None."""
    return relations(meta).get(name)


def get_relation(meta: Any, name: str) -> Relation:
    """The relation ``name`` of ``meta``'s model; ``FieldError`` listing the valid ones."""
    rel = relations(meta).get(name)
    if rel is None:
        raise FieldError(f"{meta.model.__name__} has no relation {name!r}"
                         + suggest(name, relations(meta)))
    return rel


def reverse_accessors(meta: Any) -> dict[str, Relation]:
    """Reverse and many-to-many relations by their instance attribute (``book_set``)."""
    return {rel.accessor: rel for rel in relations(meta).values()
            if rel.kind != "forward" and rel.accessor is not None}
