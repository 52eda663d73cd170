"""Saving instances and inserting in bulk, written once as core steps (``qplan.steps``).

``Engine.save_instance`` / ``bulk_create`` drive these on the blocking edge and
``qplan.aio`` drives them with awaits, so Django's save rules (UPDATE then INSERT, forced
inserts and updates, ``update_fields``, shard keys pinned in the filter) and bulk_create's
batching (bind limits, all rows or none in one block, conflict options) exist once.
"""

from __future__ import annotations

from typing import Any, Callable

from . import conflicts
from .backends import get as get_backend
from .errors import DatabaseError, PlanError, RoutingError
from .fields import NOT_PROVIDED
from .routing import db_for_write, placement_keys, route
from .settings import database
from .sharding import ShardSet
from .steps import BLOCK, CONN, Steps


def on_steps(engine: Any, plan: Any, alias: str) -> Steps:
    """``plan`` run on ``alias`` (as ``execute(using=alias)``)."""
    return (yield from engine.run_steps(plan, (yield (CONN, alias))))


def _backend(alias: str) -> Any:
    return get_backend(database(alias)["ENGINE"])


def save_steps(engine: Any, obj: Any, using: str | None, force_insert: bool = False,
               force_update: bool = False, update_fields: Any = None) -> Steps:
    """Save as Django does: with a primary key, UPDATE the row where ``db_for_write``
    sends it (the instance is the routers' hint), then INSERT when no row matched; without
    one (or ``force_insert``), INSERT. ``force_update`` and ``update_fields`` only update,
    and raise ``DatabaseError`` when no row matched.

    Fields that place a row (a shard key, ``routing.placement_keys``) are part of the
    update's filter, so a row whose key changed is refused instead of copied.
    """
    model = type(obj)
    root = model.objects
    meta = model._meta
    if force_insert and (force_update or update_fields is not None):
        raise PlanError("cannot force both insert and updating in model saving")
    names = None if update_fields is None else meta.written_fields(update_fields, "update_fields")
    if names == ():
        return  # Django: an empty update_fields saves nothing
    only_update = force_update or names is not None
    if (obj._adding and not only_update and meta.pk.default is not NOT_PROVIDED) \
            or obj.pk is None:
        force_insert = True  # a new row whose key comes from its default: no UPDATE first
    if only_update and force_insert:
        raise PlanError(f"cannot update a {model.__name__} without a primary key")
    alias = using or db_for_write(root, obj)
    if not force_insert and (yield from _update_steps(engine, obj, root, alias, names)):
        obj._adding = False
        obj._db = alias
        return
    if only_update:
        what = "save with update_fields" if names is not None else "forced update"
        raise DatabaseError(f"{model.__name__} {obj.pk!r}: {what} did not affect any rows")
    pks = yield from on_steps(engine, root.bulk_create_plan([obj]), alias)
    obj.pk = pks[0]
    obj._adding = False
    obj._db = alias


def _update_steps(engine: Any, obj: Any, root: Any, alias: str, names: tuple | None) -> Steps:
    """UPDATE ``obj``'s row (its fields, or ``names``); whether a row matched."""
    meta = type(obj)._meta
    fields = [f for f in meta.fields if not f.primary_key and (names is None or f.name in names)]
    pins = {name: obj.__dict__.get(meta.get_field(name).attname)
            for name in placement_keys(root)}
    match = root.filter(pk=obj.pk, **pins)
    if not fields:  # nothing but the key: the row exists, or it does not
        return bool((yield from on_steps(engine, match._add(("exists",)), alias)))
    updates = {f.name: obj.__dict__.get(f.attname) for f in fields}
    if (yield from on_steps(engine, match.update_plan(**updates), alias)):
        return True
    if pins and not obj._adding and (
            yield from on_steps(engine, root.filter(pk=obj.pk)._add(("exists",)), alias)):
        raise RoutingError(
            f"{type(obj).__name__} {obj.pk!r}: cannot change the shard key "
            f"{', '.join(map(repr, pins))} of an existing row (it decides which database "
            f"holds the row); delete it and create it again")
    return False


def bulk_create_steps(engine: Any, root: Any, objs: list, batch_size: int | None,
                      options: dict[str, Any] | None, sharded: Callable[..., Any]) -> Steps:
    """``bulk_create``; ``options``: its conflict keywords, checked before anything runs.
    Over several shards, the steps ``sharded(engine, root, objs, batch_size, target,
    options)``."""
    options = options or {}
    conflict = conflicts.options(root._meta, **options)
    if not objs:
        return
    if conflict is not None:  # the whole call at once: no clash hides in separate batches
        root.bulk_create_plan(objs, **options)
    target = route(root._add(("insert", (), ())))
    if isinstance(target, ShardSet):  # each row to the shard of its key
        for alias in target.write_aliases():  # every shard can, before any writes
            conflicts.require_target(conflict, _backend(alias))
        return (yield from sharded(engine, root, objs, batch_size, target, options))
    backend = _backend(target)
    conflicts.require_target(conflict, backend)
    keys = conflicts.returns_keys(conflict, backend)
    per_row = max(len(root._meta.fields), 1)
    limit = max(backend.max_params // per_row, 1)
    size = min(batch_size or limit, limit)
    if not backend.insert_returning:
        size = 1 if root._meta.pk.auto else size

    def batches() -> Steps:
        for start in range(0, len(objs), size):
            batch = objs[start:start + size]
            pks = yield from on_steps(engine, root.bulk_create_plan(batch, **options), target)
            if keys:
                for obj, pk in zip(batch, pks):
                    obj.pk = pk

    # All rows or none: a block of its own, or (no savepoints) the enclosing block's.
    yield (BLOCK, target, bool(backend.SUPPORTS_SAVEPOINTS), batches())
    for obj in objs:
        obj._adding = False
        obj._db = target
