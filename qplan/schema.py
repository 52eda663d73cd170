"""Tables: ``create_tables`` and ``drop_tables`` in the dialect of the alias each model
routes to, in foreign-key order, where the routers allow it (``allow_migrate``)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from .checksql import condition_sql
from .connections import Connection, connections
from .errors import FieldError
from .models import Model
from .routing import allow_migrate, check_writable, route
from .sharding import ShardSet


def dependency_order(models: Iterable[type[Model]]) -> list[type[Model]]:
    """``models`` with the targets of their foreign keys first (dependency cycles are cut
    where they close)."""
    done: list[type[Model]] = []
    pending = list(dict.fromkeys(models))

    def visit(model: type[Model], stack: tuple) -> None:
        if model in done or model not in pending:
            return
        if model in stack:
            return
        for field in model._meta.fields:
            if field.is_relation and field.target is not model:
                visit(field.target, stack + (model,))
        done.append(model)

    for model in pending:
        visit(model, ())
    return done


def with_through_models(models: Iterable[type[Model]]) -> list[type[Model]]:
    """``models`` and the through models their ManyToManyFields created (Django creates and
    drops those with the model); ``dependency_order`` puts each after both sides, once."""
    out = list(models)
    for model in list(out):
        for field in getattr(getattr(model, "_meta", None), "many_to_many", ()):
            if field.auto_created and field.through not in out:
                out.append(field.through)
    return out


def _schema_alias(model: type[Model], using: str | None) -> str:
    return using or route(model.objects, "write")


def _schema_aliases(model: type[Model], using: str | None) -> tuple[str, ...]:
    """Where a model's table lives: one alias, or every shard's primary (qplan.sharding)."""
    alias = _schema_alias(model, using)
    return alias.write_aliases() if isinstance(alias, ShardSet) else (alias,)


def _schema_targets(models: list[type[Model]], using: str | None) -> Iterator[tuple[Connection, Any]]:
    """(connection, model meta) for each model in dependency order, where routing allows it."""
    for model in models:
        for alias in _schema_aliases(model, using):
            if allow_migrate(alias, model):
                check_writable(alias)
                yield connections[alias], model._meta


def table_sql(meta: Any, backend: Any, exist_ok: bool = False) -> list[str]:
    """The DDL of one model's table for ``backend``, check constraints compiled."""
    checks = tuple((name, condition_sql(meta, record, backend)) for name, record in meta.checks)
    return backend.create_table(meta, exist_ok=exist_ok, checks=checks)


def create_tables(models: Any, using: str | None = None, *, exist_ok: bool = False) -> None:
    """CREATE TABLE for each model (and the through models its ManyToManyFields created),
    in the dialect of the alias it routes to."""
    models = list(models)
    for model in models:
        if not (isinstance(model, type) and issubclass(model, Model)):
            raise FieldError(f"create_tables() takes model classes, got {model!r}")
    for conn, meta in _schema_targets(dependency_order(with_through_models(models)), using):
        for sql in table_sql(meta, conn.backend, exist_ok):
            conn.execute(sql)


def drop_tables(models: Any, using: str | None = None, *, missing_ok: bool = False) -> None:
    """DROP TABLE for each model (and the through models it created), dependants first."""
    ordered = dependency_order(with_through_models(models))
    for conn, meta in _schema_targets(list(reversed(ordered)), using):
        for sql in conn.backend.drop_table(meta, missing_ok=missing_ok):
            conn.execute(sql)
