"""Evaluating a plan: what ``list(plan)``, ``count()``, ``get()`` and the writes do.

``Evaluation`` is the part of ``Plan`` that runs it: each method builds the plan it
needs with the plan's own building methods and hands it to the engine ``qplan``
installed in ``qplan.runner`` (``qplan.execution.Engine``), so the plan layer imports
nothing that touches a database.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Coroutine, Iterator, NamedTuple

from .errors import FieldError, PlanError
from .expressions import Aggregate, Q
from .runner import aio, engine


# Keys per query of in_bulk(): under every backend's bind limit (SQLite's oldest is 999).
IN_BULK_BATCH = 900


class Compiled(NamedTuple):
    """A compiled plan: unpacks as ``sql, params`` in the driver's paramstyle."""

    sql: str
    params: tuple


class Evaluation:
    """The evaluating methods of ``Plan`` (see the module docstring)."""

    __slots__ = ()


    def execute(self, using: str | None = None) -> Any:
        """Run the plan: rows for a read, a row count for update/delete, pks for an insert."""
        return engine().execute(self, using)

    def explain_routing(self) -> Any:
        """Which shards and aliases the plan would touch, and how their results merge.

        Nothing runs and no connection opens; ``str()`` of the answer reads well.
        """
        return engine().explain_routing(self)

    def compile(self, dialect: str | None = None) -> Compiled:
        """SQL and parameters for ``'sqlite'``, ``'postgresql'`` or ``'mysql'`` (default: the alias's)."""
        return engine().compile(self, dialect)

    def __iter__(self) -> Iterator[Any]:
        return iter(engine().execute(self, None))

    def iterator(self, chunk_size: int = 2000) -> Iterator[Any]:
        """Stream the rows in chunks instead of fetching them all at once."""
        return engine().stream(self, chunk_size)

    def count(self) -> int:
        return engine().execute(self._add(("count",)), None)

    def exists(self) -> bool:
        return engine().execute(self._add(("exists",)), None)

    def aggregate(self, *args: Aggregate, **kwargs: Aggregate) -> dict[str, Any]:
        """The named aggregates over the plan's rows; ``{}`` for none, without a query (Django)."""
        if not args and not kwargs:
            return {}
        return engine().execute(self.aggregate_plan(*args, **kwargs), None)

    def get(self, *args: Q, **kwargs: Any) -> Any:
        plan = self.filter(*args, **kwargs) if args or kwargs else self
        return engine().get(plan)

    def first(self) -> Any:
        plan = self if self._ordering() or self._has("slice") else self.order_by(self._meta.pk.name)
        rows = list(plan[:1])
        return rows[0] if rows else None

    def earliest(self, *fields: str) -> Any:
        """The first row ordered by ``fields`` (``Meta.get_latest_by`` when none);
        ``DoesNotExist`` when there is none (Django)."""
        return self._earliest(fields, False)

    def latest(self, *fields: str) -> Any:
        """The last row ordered by ``fields`` (``Meta.get_latest_by`` when none);
        ``DoesNotExist`` when there is none (Django)."""
        return self._earliest(fields, True)

    def _earliest(self, fields: tuple, latest: bool) -> Any:
        if self._has("slice"):
            raise PlanError("Cannot change a query once a slice has been taken.")
        fields = fields or self._meta.get_latest_by
        if not fields:
            raise PlanError("earliest() and latest() require either fields as positional "
                            "arguments or 'get_latest_by' in the model's Meta.")
        if latest:
            fields = tuple(f[1:] if f.startswith("-") else "-" + f for f in fields)
        return engine().get(self.order_by(*fields)[:1])

    def contains(self, obj: Any) -> bool:
        """Whether ``obj`` is one of the plan's rows: ``filter(pk=obj.pk).exists()`` (Django:
        an instance of another model is never contained; an unsaved one is an error)."""
        if self._has("values") or self._has("values_list"):
            raise TypeError("Cannot call QuerySet.contains() after .values() or .values_list().")
        meta = getattr(obj, "_meta", None)
        if meta is None or not hasattr(obj, "pk") or isinstance(obj, type):
            raise TypeError("'obj' must be a model instance.")
        if obj.pk is None:
            raise PlanError("QuerySet.contains() cannot be used on unsaved objects.")
        if meta is not self._meta:
            return False
        return self.filter(pk=obj.pk).exists()

    def explain(self, format: str | None = None, **options: Any) -> str:
        """The database's plan for this query, as text (``EXPLAIN``; ``EXPLAIN QUERY PLAN``
        on SQLite), routed as the plan would run; Django's ``format`` and options."""
        return engine().explain(self, format, options)

    def last(self) -> Any:
        rows = list(self.reverse()[:1])
        return rows[0] if rows else None

    def update(self, **kwargs: Any) -> int:
        return engine().execute(self.update_plan(**kwargs), None)

    def delete(self) -> tuple[int, dict[str, int]]:
        """Delete the rows: Django's ``(total, {label: count})``, cascaded rows included."""
        return engine().delete(self)

    def create(self, **kwargs: Any) -> Any:
        obj = self.model(**kwargs)
        engine().save_instance(obj, self._alias, force_insert=True)
        return obj

    def get_or_create(self, defaults: dict[str, Any] | None = None, **kwargs: Any
                      ) -> tuple[Any, bool]:
        """``(obj, created)``: the row ``kwargs`` match, else one created from the ``kwargs``
        without ``__`` and ``defaults``; a create lost to a concurrent one returns that row."""
        return engine().get_or_create(self, defaults, kwargs)

    def update_or_create(self, defaults: dict[str, Any] | None = None,
                         create_defaults: dict[str, Any] | None = None, **kwargs: Any
                         ) -> tuple[Any, bool]:
        """``(obj, created)``: the row ``kwargs`` match updated with ``defaults``, else one
        created with ``create_defaults`` (``defaults`` when None), in one ``atomic()`` block."""
        return engine().update_or_create(self, defaults, create_defaults, kwargs)

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        """Write ``fields`` of ``objs`` to their rows in one transaction; the rows matched."""
        return engine().bulk_update(self, objs, fields, batch_size)

    def in_bulk(self, id_list: Any = None, *, field_name: str = "pk") -> dict[Any, Any]:
        """``{value of field_name: instance}`` for the rows whose ``field_name`` is in
        ``id_list`` (all rows when None); ``field_name`` must be unique (``FieldError``)."""
        meta = self._meta
        field = meta.get_field(field_name)
        if not field.unique:
            raise FieldError(f"in_bulk()'s field_name must be a unique field but "
                             f"{field_name!r} isn't.")
        if self._has("slice"):
            raise TypeError("Cannot use 'limit' or 'offset' with in_bulk().")
        if self._has("values") or self._has("values_list"):
            raise TypeError("in_bulk() cannot be used with values() or values_list().")
        if id_list is None:
            rows = list(self)
        else:
            ids = tuple(dict.fromkeys(id_list))
            rows = []
            for start in range(0, len(ids), IN_BULK_BATCH):
                rows += self.filter(**{f"{field_name}__in": ids[start:start + IN_BULK_BATCH]})
        return {obj.pk if field_name == "pk" else getattr(obj, field_name): obj for obj in rows}

    def bulk_create(self, objs: Any, batch_size: int | None = None, ignore_conflicts: bool = False,
                    update_conflicts: bool = False, update_fields: Any = None,
                    unique_fields: Any = None) -> list[Any]:
        """Insert ``objs`` (in batches, all or none) as Django does, with its conflict
        options (``qplan.conflicts``): the objects, with primary keys set where Django sets
        them (not when ignoring conflicts; on update only where the upsert returns keys)."""
        objs = list(objs)
        engine().bulk_create(self, objs, batch_size, dict(
            ignore_conflicts=ignore_conflicts, update_conflicts=update_conflicts,
            update_fields=update_fields, unique_fields=unique_fields))
        return objs

    # --- awaited (``qplan.aio``): the same plans, the same core, an async I/O edge ----------

    def aexecute(self, using: str | None = None) -> Coroutine[Any, Any, Any]:
        """``execute()`` awaited (the coroutine of ``qplan.aio``: one frame less per await)."""
        return aio().aexecute(self, using)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.aiterator(chunk_size=2000)

    def aiterator(self, chunk_size: int = 2000) -> AsyncIterator[Any]:
        """``iterator()`` awaited: ``async for obj in plan.aiterator(100)``."""
        return aio().aiterate(self, chunk_size)

    async def acount(self) -> int:
        return await aio().aexecute(self._add(("count",)))

    async def aexists(self) -> bool:
        return await aio().aexecute(self._add(("exists",)))

    async def aaggregate(self, *args: Aggregate, **kwargs: Aggregate) -> dict[str, Any]:
        if not args and not kwargs:
            return {}
        return await aio().aexecute(self.aggregate_plan(*args, **kwargs))

    async def aget(self, *args: Q, **kwargs: Any) -> Any:
        plan = self.filter(*args, **kwargs) if args or kwargs else self
        return await aio().aget(plan)

    async def afirst(self) -> Any:
        plan = self if self._ordering() or self._has("slice") else self.order_by(self._meta.pk.name)
        rows = await aio().aexecute(plan[:1])
        return rows[0] if rows else None

    async def alast(self) -> Any:
        rows = await aio().aexecute(self.reverse()[:1])
        return rows[0] if rows else None

    async def aupdate(self, **kwargs: Any) -> int:
        return await aio().aexecute(self.update_plan(**kwargs))

    async def adelete(self) -> tuple[int, dict[str, int]]:
        return await aio().adelete(self)

    async def acreate(self, **kwargs: Any) -> Any:
        obj = self.model(**kwargs)
        await aio().asave(obj, self._alias, force_insert=True)
        return obj

    async def ain_bulk(self, id_list: Any = None, *, field_name: str = "pk") -> dict[Any, Any]:
        """``in_bulk()`` awaited."""
        meta = self._meta
        if not meta.get_field(field_name).unique:
            raise FieldError(f"in_bulk()'s field_name must be a unique field but "
                             f"{field_name!r} isn't.")
        if id_list is None:
            rows = await aio().aexecute(self)
        else:
            ids = tuple(dict.fromkeys(id_list))
            rows = []
            for start in range(0, len(ids), IN_BULK_BATCH):
                rows += await aio().aexecute(self.filter(
                    **{f"{field_name}__in": ids[start:start + IN_BULK_BATCH]}))
        return {obj.pk if field_name == "pk" else getattr(obj, field_name): obj for obj in rows}

    async def aget_or_create(self, defaults: dict[str, Any] | None = None, **kwargs: Any
                             ) -> tuple[Any, bool]:
        return await aio().aget_or_create(self, defaults, kwargs)

    async def aupdate_or_create(self, defaults: dict[str, Any] | None = None,
                                create_defaults: dict[str, Any] | None = None, **kwargs: Any
                                ) -> tuple[Any, bool]:
        return await aio().aupdate_or_create(self, defaults, create_defaults, kwargs)

    async def abulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        return await aio().abulk_update(self, objs, fields, batch_size)

    async def abulk_create(self, objs: Any, batch_size: int | None = None,
                           ignore_conflicts: bool = False, update_conflicts: bool = False,
                           update_fields: Any = None, unique_fields: Any = None) -> list[Any]:
        objs = list(objs)
        await aio().abulk_create(self, objs, batch_size, dict(
            ignore_conflicts=ignore_conflicts, update_conflicts=update_conflicts,
            update_fields=update_fields, unique_fields=unique_fields))
        return objs
