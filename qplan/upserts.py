"""``get_or_create`` and ``update_or_create``, as Django 5.2 runs them.

Both run on the plan's write alias (``using()``, else the routers' ``db_for_write`` for the
plan filtered by the lookups, so a shard key among them places the row). The create runs in
an ``atomic()`` block of its own (a savepoint inside an open block); when it fails with
``IntegrityError`` because another connection created the row first, the row is read again
and returned, and the error is re-raised when it still is not there (after the backend's
``CONFLICT_VISIBLE_WITHIN`` seconds: DuckDB may report the conflict just before the winner's
commit is visible).

On a database without savepoints (``backend.SUPPORTS_SAVEPOINTS`` False: DuckDB) a create
inside a caller's open block joins that block: a failure dooms it, so nothing can be read
again and the ``IntegrityError`` is re-raised. Outside a caller's block the create is a
transaction of its own, and a lost race is recovered as above.

``update_or_create`` reads, then writes, in one block. When its create loses a race and the
row cannot be read again inside that block (no savepoint; or MariaDB's repeatable-read
snapshot, which Django escapes with ``select_for_update``, not supported here), the block
rolls back and, when it was the outermost, the work is done once more outside a block:
``get_or_create`` alone recovers from the race, then the row is updated. So is a block that
fails with ``SerializationFailure`` (SQLite refuses the write lock to the second of two
transactions that read first; a MariaDB deadlock, a Galera conflict).
"""

from __future__ import annotations

import time
from typing import Any

from .connections import connections
from .errors import FieldError, IntegrityError, SerializationFailure
from .routing import db_for_write
from .saving import save_steps
from .steps import BLOCK, IN_BLOCK, SLEEP, Steps

SEP = "__"


def write_plan(plan: Any, lookups: dict[str, Any]) -> tuple[Any, bool]:
    """``plan`` bound to its write alias, and whether that database has savepoints."""
    alias = db_for_write(plan.filter(**lookups) if lookups else plan)
    return plan.using(alias), bool(connections[alias].backend.SUPPORTS_SAVEPOINTS)


def create_params(plan: Any, defaults: dict[str, Any] | None, lookups: dict[str, Any]) -> dict:
    """The new row's values: the lookups without ``__`` and ``defaults`` over them, resolving
    callables (Django's ``_extract_model_params``); ``FieldError`` names unknown fields."""
    params = {k: v for k, v in lookups.items() if SEP not in k}
    params.update(defaults or {})
    meta = plan._meta
    known = set(meta.by_name) | set(meta.by_attname) | {"pk"}
    bad = sorted(k for k in params if k not in known)
    if bad:
        raise FieldError(f"Invalid field name(s) for model {meta.model.__name__}: "
                         f"{', '.join(map(repr, bad))}.")
    if "pk" in params:
        params[meta.pk.name] = params.pop("pk")
    return {k: v() if callable(v) else v for k, v in params.items()}


def get_or_create(engine: Any, plan: Any, defaults: dict[str, Any] | None,
                  lookups: dict[str, Any]) -> Steps:
    """``(obj, created)``: the row ``lookups`` match, else a new one (module docstring);
    core steps (``qplan.steps``) both edges drive."""
    plan, savepoints = write_plan(plan, lookups)
    model = plan.model
    try:
        return (yield from engine.get_steps(plan.filter(**lookups))), False
    except model.DoesNotExist:
        pass
    params = create_params(plan, defaults, lookups)
    joined = not savepoints and (yield (IN_BLOCK,))  # a failure would doom the caller's block
    try:
        obj = model(**params)
        yield (BLOCK, plan.db, savepoints,
               save_steps(engine, obj, plan.db, force_insert=True))
        return obj, True
    except IntegrityError as lost:
        if joined:
            raise
        deadline = time.monotonic() + connections[plan.db].backend.CONFLICT_VISIBLE_WITHIN
        while True:
            try:
                return (yield from engine.get_steps(plan.filter(**lookups))), False
            except model.DoesNotExist:
                pass
            if time.monotonic() >= deadline:
                raise lost
            yield (SLEEP, 0.005)


def update_or_create(engine: Any, plan: Any, defaults: dict[str, Any] | None,
                     create_defaults: dict[str, Any] | None, lookups: dict[str, Any]) -> Steps:
    """``(obj, created)``: the matching row updated with ``defaults``, else a new row made
    from ``create_defaults`` (``defaults`` when None), in one ``atomic()`` block (steps)."""
    update_defaults = defaults or {}
    if create_defaults is None:
        create_defaults = update_defaults
    plan, savepoints = write_plan(plan, lookups)
    create_params(plan, update_defaults, {})  # unknown names fail before anything runs
    retry = not (yield (IN_BLOCK,))  # a block of our own: rolled back whole, it may be redone
    try:
        return (yield (BLOCK, plan.db, savepoints, _update_or_create(
            engine, plan, update_defaults, create_defaults, lookups)))
    except (IntegrityError, SerializationFailure):
        if not retry:
            raise
    # the lost race rolled the block back; get_or_create alone recovers from the race
    return (yield from _update_or_create(engine, plan, update_defaults, create_defaults, lookups))


def _update_or_create(engine: Any, plan: Any, update_defaults: dict[str, Any],
                      create_defaults: dict[str, Any], lookups: dict[str, Any]) -> Steps:
    obj, created = yield from get_or_create(engine, plan, create_defaults, lookups)
    if created:
        return obj, created
    meta = plan._meta
    names = []
    for key, value in update_defaults.items():
        setattr(obj, key, value() if callable(value) else value)
        names.append(meta.pk.name if key == "pk" else meta.get_field(key).name)
    if any(meta.get_field(n).primary_key for n in names):
        yield from save_steps(engine, obj, plan.db)
    else:
        yield from save_steps(engine, obj, plan.db, update_fields=names)
    return obj, False
