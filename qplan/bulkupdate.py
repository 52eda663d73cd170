"""``bulk_update(objs, fields, batch_size=None)``, as Django 5.2 answers it.

Each object's row is UPDATEd by its primary key (plus any shard key, as ``save()`` does)
with the named fields, all inside one ``atomic()`` block on the write alias: every row or
none. The answer is the number of rows matched (Django 4+), summed over the statements
(MariaDB connections count matched rows, not changed ones). One statement per object
keeps each one a plan the shape cache already holds, on every backend; ``batch_size`` is
checked as Django checks it but changes nothing (it bounds Django's ``CASE`` statements).
"""

from __future__ import annotations

from typing import Any

from .connections import connections
from .errors import FieldError, NotSupportedError
from .routing import db_for_write, placement_keys
from .saving import on_steps
from .steps import BLOCK, Steps


def field_names(meta: Any, fields: Any) -> tuple[str, ...]:
    """The fields to write; ``FieldError`` for an unknown one or the primary key."""
    names = meta.written_fields(fields, "bulk_update()")
    if not names:
        raise ValueError("Field names must be given to bulk_update().")
    return names


def bulk_update(engine: Any, plan: Any, objs: Any, fields: Any, batch_size: int | None
                ) -> Steps:
    """Write ``fields`` of ``objs`` to their rows; the number of rows matched (core steps,
    ``qplan.steps``)."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size <= 0):
        raise ValueError("Batch size must be a positive integer.")
    meta = plan._meta
    names = field_names(meta, fields)
    objs = tuple(objs)
    for obj in objs:
        if not isinstance(obj, meta.model):
            raise FieldError(f"bulk_update() takes {meta.model.__name__} instances, got {obj!r}")
        if obj.pk is None:
            raise ValueError("All bulk_update() objects must have a primary key set.")
    if not objs:
        return 0
    root = meta.model.objects.using(plan.db)
    aliases = {db_for_write(root, obj) for obj in objs}
    if len(aliases) > 1:
        raise NotSupportedError(
            f"bulk_update(): the objects are written on {sorted(aliases)!r}, which no one "
            f"transaction spans; call it once per database")
    [alias] = aliases
    pins = placement_keys(root)
    attnames = [(name, meta.get_field(name).attname) for name in names]

    def updates() -> Steps:
        matched = 0
        for obj in objs:
            where = {k: obj.__dict__.get(meta.get_field(k).attname) for k in pins}
            updates = {name: obj.__dict__.get(attname) for name, attname in attnames}
            matched += yield from on_steps(
                engine, plan.filter(pk=obj.pk, **where).update_plan(**updates), alias)
        return matched

    return (yield (BLOCK, alias, bool(connections[alias].backend.SUPPORTS_SAVEPOINTS),
                   updates()))
