"""Evaluating plans: route once, compile through the shape cache, execute, materialise rows.

``qplan`` installs ``engine`` in ``qplan.runner``, where plans and models find it; this
is the layer that joins plans, the compiler, routing and connections.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterator

from . import bulkupdate, deletion, explaining, prefetching, saving, settings, sharding, upserts
from . import methods
from .backends import get as get_backend
from .shapecache import cache
from .template import Template
from .connections import Connection, connections
from .errors import PlanError
from .instances import nested_models
from .models import Model
from .plan import LOCKS, NONE, PREFETCH, Compiled, Plan
from .replication import (failover_steps, record_write, record_write_steps, refresh,
                          refresh_steps, with_failover)
from .steps import CHECK, CONN, EXECUTE, FETCH, Steps, drive
from .routing import (check_relations, check_writable, db_for_write, pending_writes,
                      resolve, route)
from .sharding import ShardSet
from .transactions import Atomic, check_statement, in_block

MAX_GET_RESULTS = 21


# --- materialising rows: one function per result kind -----------------------------------------


def _decode(rows: list, decoders: tuple) -> list:
    """``rows`` with the decoded columns converted (new tuples), or ``rows`` itself if none.

    One list copy and a loop over the decoders per row: no code is generated (a generated
    lambda was about 1.5 µs faster per 20 rows, not worth an ``eval``).
    """
    if not decoders or not rows:
        return rows
    out = []
    append = out.append
    if len(decoders) == 1:  # one decoded column (a datetime): no inner loop (~0.4 µs/20 rows)
        (i, decode), = decoders
        for row in rows:
            row = list(row)
            row[i] = decode(row[i])
            append(tuple(row))
        return out
    for row in rows:
        row = list(row)
        for i, decode in decoders:
            row[i] = decode(row[i])
        append(tuple(row))
    return out


def _models(t: Template, rows: list, model: type[Model], alias: str) -> list:
    if t.deferred_model is not None:  # only()/defer(): instances of the deferred class
        model = t.deferred_model
    if t.nested is not None:  # select_related: related instances from the same rows
        return nested_models(_decode(rows, t.decoders), t.columns, t.nested, model, alias)
    cols = t.columns
    new = model.__new__
    out: list[Model] = []
    append = out.append
    for row in _decode(rows, t.decoders):
        obj = new(model)
        d = obj.__dict__  # filled in place: faster than building a dict and assigning it
        d.update(zip(cols, row))
        d["_db"] = alias
        append(obj)
    return out


def _dicts(t: Template, rows: list, model: Any, alias: str) -> list:
    cols = t.columns
    return [dict(zip(cols, row)) for row in _decode(rows, t.decoders)]


def _tuples(t: Template, rows: list, model: Any, alias: str) -> list:
    if t.decoders:
        return _decode(rows, t.decoders)  # already new tuples
    return [tuple(row) for row in rows]


def _flat(t: Template, rows: list, model: Any, alias: str) -> list:
    return [row[0] for row in _decode(rows, t.decoders)]


_row_types: dict[tuple, type] = {}


def _named(t: Template, rows: list, model: Any, alias: str) -> list:
    row_type = _row_types.get(t.columns)
    if row_type is None:
        row_type = _row_types[t.columns] = collections.namedtuple("Row", t.columns)  # type: ignore
    return [row_type(*row) for row in _decode(rows, t.decoders)]


def _aggregate(t: Template, rows: list, model: Any, alias: str) -> dict:
    return dict(zip(t.columns, _decode(rows, t.decoders)[0]))


def _inserted(t: Template, rows: list) -> list:
    """The primary keys an INSERT ... RETURNING gave back, decoded."""
    return [row[0] for row in _decode(rows, t.decoders)]


MATERIALISE: dict[str, Callable[..., Any]] = {
    "models": _models,
    "dicts": _dicts,
    "tuples": _tuples,
    "flat": _flat,
    "named": _named,
    "count": lambda t, rows, model, alias: int(rows[0][0]),
    "exists": lambda t, rows, model, alias: bool(rows),
    "aggregate": _aggregate,
}


class Engine:
    """Compiles and runs plans; installed into ``qplan.plan`` at import."""

    # --- compiling --------------------------------------------------------------------------------

    def template(self, plan: Plan, backend: Any) -> tuple[Template, tuple]:
        shape, values = plan.shape()
        return cache.get(plan._meta, shape, backend), values

    def compile(self, plan: Plan, dialect: str | None = None) -> Compiled:
        if dialect is None:
            alias = route(plan)
            if isinstance(alias, ShardSet):  # several shards: the SQL each shard runs
                methods.check_sharded(plan)
                return sharding.compile(self, plan, alias)
            dialect = settings.database(alias)["ENGINE"]
        template, values = self.template(plan, get_backend(dialect))
        return Compiled(template.sql, template.params(values))

    # --- running ------------------------------------------------------------------------------------

    def execute(self, plan: Plan, using: str | None) -> Any:
        """Run ``plan`` on one alias, chosen once; a failed read may move to another replica.
        Its ``prefetch_related`` lookups then run on the instances (``qplan.prefetching``)."""
        if not plan._ops & (NONE | PREFETCH):  # the common case: one mask test
            return self._execute(plan, using)
        if plan._ops & NONE:  # none(): nothing to ask a database (qplan.methods)
            result = methods.empty_result(plan)
            if result is not methods.QUERY:
                return result
        if plan._ops & PREFETCH:
            result = self._execute(plan, using)
            if prefetching.wanted(plan, result):
                self.prefetch(plan, result, using or plan.db)
            return result
        return self._execute(plan, using)

    def prefetch(self, plan: Plan, objs: list, pinned: str | None) -> None:
        """``plan``'s ``prefetch_related`` lookups for ``objs`` (``qplan.prefetching``'s
        steps, each query run by the blocking ``execute``)."""
        drive(prefetching.apply(self, plan, objs, pinned, self._blocking_query))

    def _blocking_query(self, plan: Plan, using: str | None = None) -> Steps:
        return self.execute(plan, using)
        yield  # a generator: the query itself is a blocking call

    def evaluate_steps(self, plan: Plan, using: str | None = None) -> Steps:
        """``execute`` as core steps: the plan's rows, then its ``prefetch_related``."""
        if plan._ops & NONE:  # none(): nothing to ask a database (qplan.methods)
            result = methods.empty_result(plan)
            if result is not methods.QUERY:
                return result
        result = yield from self.execute_steps(plan, using)
        if plan._ops & PREFETCH and prefetching.wanted(plan, result):
            yield from prefetching.apply(self, plan, result, using or plan.db,
                                         self.evaluate_steps)
        return result

    def _execute(self, plan: Plan, using: str | None) -> Any:
        if using is not None:
            return self.run(plan, connections[using])
        kind = "write" if plan._ops & LOCKS else plan.kind  # locks: the write alias (Django)
        alias, router = _resolve_read(plan) if kind == "read" else resolve(plan, kind)
        if type(alias) is ShardSet:  # several shards: scatter-gather (qplan.sharding)
            methods.check_sharded(plan)
            return sharding.execute(self, plan, alias)
        return with_failover(plan, alias, router, self.run, kind == "write")

    def execute_steps(self, plan: Plan, using: str | None) -> Steps:
        """``_execute`` as core steps: on ``using``, or routed (a ShardSet scatter-gathers);
        ``prefetch_related`` is the caller's."""
        if using is not None:
            return (yield from self.run_steps(plan, (yield (CONN, using))))
        alias, router = yield from self.route_steps(plan)
        if type(alias) is ShardSet:
            methods.check_sharded(plan)
            return (yield from sharding.execute_steps(self, plan, alias))
        return (yield from failover_steps(plan, alias, router, self.run_steps,
                                          bool(plan.kind == "write" or plan._ops & LOCKS)))

    def get_steps(self, plan: Plan) -> Steps:
        """``get`` as core steps."""
        sliced = plan if plan._has("slice") else plan[:MAX_GET_RESULTS]
        return self.one(plan, (yield from self.execute_steps(sliced, None)))

    def route_steps(self, plan: Plan) -> Steps:
        """Where ``plan`` runs: ``(alias or ShardSet, router)``; a read first reads the
        replay positions read-your-writes routers decide from, when this context wrote."""
        kind = "write" if plan._ops & LOCKS else plan.kind  # locks: the write alias (Django)
        if kind == "read" and pending_writes():
            yield from refresh_steps(plan)
        return resolve(plan, kind)

    def run(self, plan: Plan, conn: Connection) -> Any:
        """``run_steps`` on the blocking edge, called directly: a statement is the hot path,
        and driving its generator cost ~1-2 µs a query. The decisions are ``prepare``'s and
        ``_inserted``'s, shared with ``run_steps``; only the I/O calls differ."""
        template, params, kind = self.prepare(plan, conn)
        if kind == "rowcount":
            check_statement(conn.alias, True)
            count = conn.execute(template.sql, params).rowcount
            record_write(conn)
            return count
        if kind == "insert":
            check_statement(conn.alias, True)
            if conn.backend.insert_returning:
                pks = _inserted(template, conn.fetchall(template.sql, params))
            else:
                pks = [conn.execute(template.sql, params).lastrowid]
            record_write(conn)
            return pks
        check_statement(conn.alias, False)
        return MATERIALISE[kind](template, conn.fetchall(template.sql, params),
                                 plan._meta.model, conn.alias)

    def prepare(self, plan: Plan, conn: Any) -> tuple[Template, tuple, str]:
        """The statement ``plan`` runs on ``conn``: its template, parameters and result
        kind, after the checks every statement passes (relations, writable alias)."""
        template, values = self.template(plan, conn.backend)
        if template.related:  # the models a shape joins are the same for all its plans
            related = template.related_models
            if related is None:
                related = template.related_models = plan.related_models()
            check_relations(plan, related)
        params = template.params(values) if template.binds else ()
        if plan._ops & LOCKS:
            explaining.check_lock(conn)
        kind = template.result
        if kind == "rowcount" or kind == "insert":
            check_writable(conn.alias, plan)
        return template, params, kind

    def run_steps(self, plan: Plan, conn: Any) -> Steps:
        """One statement of ``plan`` on ``conn`` and its materialised result (steps; the
        blocking edge's ``run`` is the same without the generator)."""
        template, params, kind = self.prepare(plan, conn)
        write = kind == "rowcount" or kind == "insert"
        yield (CHECK, conn, write)
        if kind == "rowcount":
            count = (yield (EXECUTE, conn, template.sql, params))[0]
            yield from record_write_steps(conn)
            return count
        if kind == "insert":
            if conn.backend.insert_returning:
                pks = _inserted(template, (yield (FETCH, conn, template.sql, params)))
            else:
                pks = [(yield (EXECUTE, conn, template.sql, params))[1]]
            yield from record_write_steps(conn)
            return pks
        rows = yield (FETCH, conn, template.sql, params)
        return MATERIALISE[kind](template, rows, plan._meta.model, conn.alias)

    def stream(self, plan: Plan, chunk_size: int) -> Iterator[Any]:
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise PlanError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if plan._ops & NONE:
            return
        alias = resolve(plan, "write")[0] if plan._ops & LOCKS else _resolve_read(plan)[0]
        prefetch = bool(plan._ops & PREFETCH)
        if isinstance(alias, ShardSet):
            methods.check_sharded(plan)
            rows = list(sharding.stream(self, plan, alias, chunk_size))
            if prefetch and prefetching.wanted(plan, rows):
                self.prefetch(plan, rows, plan.db)
            yield from rows
            return
        conn = connections[alias]
        sql, params, chunk = self.stream_statement(plan, conn)
        check_statement(conn.alias, False)
        for rows in conn.stream(sql, params, chunk_size):
            objs = chunk(rows)
            if prefetch and prefetching.wanted(plan, objs):  # per chunk, as Django does
                self.prefetch(plan, objs, plan.db)
            yield from objs

    def stream_statement(self, plan: Plan, conn: Any) -> tuple[str, tuple, Callable[[list], list]]:
        """What ``iterator()`` / ``aiterator()`` stream on ``conn``: the SQL, its parameters
        and the function materialising one chunk of rows, after the checks."""
        template, values = self.template(plan, conn.backend)
        if template.result not in ("models", "dicts", "tuples", "flat", "named"):
            raise PlanError("iterator() streams rows; use execute() for counts and writes")
        materialise = MATERIALISE[template.result]
        if plan._ops & LOCKS:
            explaining.check_lock(conn)
        model, alias = plan._meta.model, conn.alias
        return (template.sql, template.params(values),
                lambda rows: materialise(template, rows, model, alias))

    def get(self, plan: Plan) -> Any:
        sliced = plan if plan._has("slice") else plan[:MAX_GET_RESULTS]
        return self.one(plan, self.execute(sliced, None))

    @staticmethod
    def one(plan: Plan, rows: list) -> Any:
        """The one row ``get()`` found, else Django's error for none or several."""
        if len(rows) == 1:
            return rows[0]
        model = plan._meta.model
        if not rows:
            raise model.DoesNotExist(f"{model.__name__} matching query does not exist: {plan!r}")
        many = "more than 20" if len(rows) == MAX_GET_RESULTS else str(len(rows))
        raise model.MultipleObjectsReturned(
            f"get() returned more than one {model.__name__} -- it returned {many}!"
        )

    def explain(self, plan: Plan, format: str | None, options: dict[str, Any]) -> str:
        """The database's plan text for ``plan`` (``qplan.explaining``)."""
        return explaining.explain(self, plan, format, options)

    def explain_routing(self, plan: Plan) -> Any:
        """Where ``plan`` would run and how shard results merge; nothing runs (qplan.sharding)."""
        return sharding.explain(self, plan)

    # --- writes -----------------------------------------------------------------------------------------

    def bulk_create(self, root: Plan, objs: list[Model], batch_size: int | None,
                    options: dict[str, Any] | None = None) -> None:
        """``options``: bulk_create's conflict keywords (``qplan.saving``)."""
        drive(saving.bulk_create_steps(self, root, objs, batch_size, options,
                                       _blocking_shards), EDGE)

    def save_instance(self, obj: Model, using: str | None, force_insert: bool = False,
                      force_update: bool = False, update_fields: Any = None) -> None:
        """Save as Django does (``qplan.saving.save_steps``)."""
        drive(saving.save_steps(self, obj, using, force_insert, force_update, update_fields),
              EDGE)

    def get_or_create(self, plan: Plan, defaults: Any, lookups: dict[str, Any]) -> tuple[Any, bool]:
        """Django's ``get_or_create`` on the plan's write alias (``qplan.upserts``)."""
        return drive(upserts.get_or_create(self, plan, defaults, lookups), EDGE)

    def update_or_create(self, plan: Plan, defaults: Any, create_defaults: Any,
                         lookups: dict[str, Any]) -> tuple[Any, bool]:
        """Django's ``update_or_create`` on the plan's write alias (``qplan.upserts``)."""
        return drive(upserts.update_or_create(self, plan, defaults, create_defaults, lookups),
                     EDGE)

    def bulk_update(self, plan: Plan, objs: Any, fields: Any, batch_size: int | None) -> int:
        """Django's ``bulk_update``: the rows matched (``qplan.bulkupdate``)."""
        return drive(bulkupdate.bulk_update(self, plan, objs, fields, batch_size), EDGE)

    def delete_instance(self, obj: Model, using: str | None) -> tuple[int, dict[str, int]]:
        """Delete one row where the routers send writes of it (never simply where it was
        read): Django's ``(total, {label: count})``, cascaded rows included."""
        root = type(obj).objects
        alias = using or db_for_write(root, obj)
        return self.delete(root.filter(pk=obj.pk), alias)

    def delete(self, plan: Plan, using: str | None = None) -> tuple[int, dict[str, int]]:
        """Delete ``plan``'s rows (``delete_steps``), each query run by ``execute``."""
        return drive(self.delete_steps(plan, using, self._blocking_query))

    def delete_steps(self, plan: Plan, using: str | None, query: Callable[..., Steps]) -> Steps:
        """Delete ``plan``'s rows: ``(total, {label: count})`` as Django returns it, counting
        the rows the database deletes by cascade too (``qplan.deletion``); ``query(plan,
        using)``: the steps evaluating one plan (blocking, or ``evaluate_steps``)."""
        if plan._ops & NONE:
            return 0, {}
        target = using or route(plan.delete_plan(), "write")
        cascades = not isinstance(target, str) or get_backend(
            settings.database(target)["ENGINE"]).ON_DELETE_IN_DATABASE
        counts = (yield from deletion.cascaded(plan, using, query)) if cascades else {}
        n = yield from query(plan.delete_plan(), using)
        if n:
            counts[plan.model._meta.label] = counts.get(plan.model._meta.label, 0) + n
        return sum(counts.values()), counts


def _blocking_shards(*args: Any) -> Steps:
    """Rows over several shards, inserted concurrently on the shard threads."""
    return sharding.bulk_create(*args)
    yield  # a generator: the inserts themselves are blocking calls


class _Blocking:
    """The blocking edge's answers to the core's transaction requests (``qplan.steps``)."""

    check = staticmethod(check_statement)
    in_block = staticmethod(in_block)

    def block(self, alias: str, savepoint: bool, inner: Steps) -> Any:
        with Atomic(alias, savepoint=savepoint):
            return drive(inner, self)


EDGE = _Blocking()


def _resolve_read(plan: Plan) -> tuple[Any, Any]:
    """Where a read runs: the replay positions read-your-writes routers decide from are
    read first, when this context has written."""
    if pending_writes():
        refresh(plan)
    return resolve(plan)


engine = Engine()


__all__ = ["Engine", "engine"]
