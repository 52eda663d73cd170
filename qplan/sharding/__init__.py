"""Sharding: a model's rows spread over several databases by a shard key.

``Sharded(key, shards)`` is a router. A plan that pins the key (``tenant_id=5``,
``tenant_id__in=[1, 7]``, a ``Q`` tree that implies it) runs on the shards that can
hold its rows. When that is one shard, routing answers with that shard's alias (or
asks the shard's ``PrimaryReplica`` group) and the plan runs as on any database.
When it is several, routing answers with a ``ShardSet`` and the engine hands the
plan to ``execute`` here:

1. the plan is checked and rewritten per shard ("compile time": what cannot be
   merged exactly raises ``NotSupportedError`` before any query runs);
2. the shards run concurrently on a bounded thread pool, each in that thread's own
   connection (the calling thread takes one shard itself);
3. the partial results are merged exactly as if the rows were in one database:
   counts and sums add up, ``Avg`` travels as a sum and a count, groups combine,
   ordered rows go through a k-way merge, ``distinct`` is applied after the merge.

A shard that fails makes the plan fail with an error naming the shard; inside
``partial_results()`` a read skips it instead, and the report says which did.

The package: ``router`` (where a key value lives), ``pool`` (shards run
concurrently), ``merge`` (expressions, aggregates and sorting evaluated in Python),
``reads`` and ``writes``; this module holds the engine's entry points.
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

from .. import routing, settings
from ..backends import get as get_backend
from ..errors import NotSupportedError, PlanError, RoutingError
from ..plan import Compiled, Plan
from .pool import _reads  # noqa: F401 - for benchmarks/bench_sharding.py
from .pool import PartialResult, PartialResultWarning, partial_results, set_max_workers, shutdown
from .combined import Combined
from .reads import _Read
from .router import Shard, Sharded, ShardSet, sharded_router, stable_hash
from .writes import bulk_create, bulk_create_steps  # noqa: F401 - the engine calls them here
from .writes import _place, _write, write_steps
from ..steps import Steps


def execute(engine: Any, plan: Plan, shards: ShardSet) -> Any:
    """Run ``plan`` on several shards and merge: what ``Engine.execute`` does for a ``ShardSet``."""
    _check_joins(plan, shards)
    if plan.kind == "write":
        return _write(engine, plan, shards)
    return _reader(engine, plan, shards).run()


def _reader(engine: Any, plan: Plan, shards: ShardSet) -> Any:
    """How a read runs over several shards: ``_Read``, or per operand for union() & co."""
    if plan.records and plan.records[0][0] == "combine":
        return Combined(engine, plan, shards)
    return _Read(engine, plan, shards)


def execute_steps(engine: Any, plan: Plan, shards: ShardSet) -> Steps:
    """``execute`` as core steps (``qplan.steps``): the shards' statements in one
    ``GATHER`` (concurrent on the async edge), then the same merge."""
    _check_joins(plan, shards)
    if plan.kind == "write":
        return (yield from write_steps(engine, plan, shards))
    return (yield from _Read(engine, plan, shards).run_steps())


def _check_joins(plan: Plan, shards: ShardSet) -> None:
    router = shards.router
    for other in plan.related_models():
        if not router.handles(other):
            raise NotSupportedError(
                f"{plan.model.__name__} over shards {list(shards.names)!r}: "
                f"{plan.model.__name__} is sharded by {router!r} and {other.__name__} is not; "
                f"a plan over several shards cannot join them")


def stream(engine: Any, plan: Plan, shards: ShardSet, chunk_size: int) -> Iterator[Any]:
    """``iterator()`` over several shards: the merged result, yielded row by row."""
    yield from check_streamable(engine, plan, shards).run()


def check_streamable(engine: Any, plan: Plan, shards: ShardSet) -> Any:
    """The reader of ``plan`` over ``shards``; ``PlanError`` unless it gives rows."""
    read = _reader(engine, plan, shards)
    if read.info.terminal is not None:
        raise PlanError("iterator() streams rows; use execute() for counts and writes")
    return read


def compile(engine: Any, plan: Plan, shards: ShardSet) -> Compiled:
    """The SQL each shard runs (in the first shard's dialect)."""
    alias = shards[0].aliases[0]
    sub = plan if plan.kind == "write" else _reader(engine, plan, shards).sub
    template, values = engine.template(sub, get_backend(settings.database(alias)["ENGINE"]))
    return Compiled(template.sql, template.params(values))


class RoutingExplanation(NamedTuple):
    """Where a plan would run: ``plan.explain_routing()``; ``str()`` of it reads well."""

    plan: str
    kind: str
    router: str | None
    shards: tuple[tuple[str, str], ...]  # (shard or alias, where it runs)
    scatter: bool
    merge: str

    def __str__(self) -> str:
        lines = [f"{self.plan}: a {self.kind}"]
        if self.router:
            lines.append(f"  router: {self.router}")
        if self.scatter:
            lines.append(f"  scatter-gather over {len(self.shards)} shards (concurrently):")
        for name, where in self.shards:
            lines.append(f"    {name}: {where}")
        if self.merge:
            lines.append(f"  merge: {self.merge}")
        return "\n".join(lines)


def explain(engine: Any, plan: Plan) -> RoutingExplanation:
    """Which shards and aliases ``plan`` would touch and how results merge, without running it.

    A ``PrimaryReplica`` group is described rather than asked (asking may query a
    replica's position); a plan that could not run (an unmergeable read, a row without
    a key, an update of the key) raises as running it would.
    """
    kind, text = plan.kind, repr(plan)
    if plan.db is not None:
        return RoutingExplanation(text, kind, None, ((plan.db, "set by using()"),), False, "")
    for router in routing.chain(plan):
        if isinstance(router, Sharded) and router.handles(plan.model):
            return _explain_sharded(engine, plan, router)
        if isinstance(router, routing.PrimaryReplica):
            where = Shard(router.primary, router).describe() if kind == "read" else \
                f"alias {router.primary!r}"
            return RoutingExplanation(text, kind, repr(router), ((router.primary, where),),
                                      False, "")
        alias = routing.ask(router, kind, plan, {})
        if alias is not None:
            shown = router if isinstance(router, str) else repr(router)
            return RoutingExplanation(text, kind, shown, ((alias, f"alias {alias!r}"),), False, "")
    return RoutingExplanation(text, kind, None,
                              ((settings.DEFAULT_ALIAS, "the default alias"),), False, "")


def _explain_sharded(engine: Any, plan: Plan, router: Sharded) -> RoutingExplanation:
    kind, last = plan.kind, plan.records[-1] if plan.records else ("",)
    if last[0] == "insert":
        field = router.key_field(plan.model)
        if last[2] and field.name not in last[1]:
            raise RoutingError(f"{plan.model.__name__}: the rows have no value for the shard key "
                               f"{field.name!r}")
        names = {_place(router, row[last[1].index(field.name)][1], plan.model, n).name
                 for n, row in enumerate(last[2])}
        shards = tuple(s for s in router.shards if not last[2] or s.name in names)
        merge = "each row to the shard of its key, one statement (or transaction) per shard"
    else:
        if kind == "write":
            router._check_write(plan)
        shards = router.shards_for(plan)
        merge = "row counts added up" if kind == "write" else ""
    where = tuple((s.name, s.describe() if kind == "read" else f"alias {s.write_alias(plan)!r}")
                  for s in shards)
    scatter = len(shards) > 1 or last[0] == "insert"
    if not scatter:
        return RoutingExplanation(repr(plan), kind, repr(router), where, False,
                                  "none: the plan pins one shard")
    if kind == "read":
        _check_joins(plan, ShardSet(shards, router))
        merge = _reader(engine, plan, ShardSet(shards, router)).describe
    return RoutingExplanation(repr(plan), kind, repr(router), where, True, merge)


__all__ = [
    "PartialResult", "PartialResultWarning", "RoutingExplanation", "Shard", "ShardSet", "Sharded",
    "partial_results", "set_max_workers", "sharded_router", "shutdown", "stable_hash",
]