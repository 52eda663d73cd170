"""Writes over several shards: updates and deletes on each, inserts placed by key.

(An instance's save() and delete() go to the shard of its key through the router's
``db_for_write``, like any other write.)

A write never skips a failed shard: ``_gather(..., write=True)`` raises, naming
the shards where it was already committed.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import DatabaseError, RoutingError
from ..plan import Plan
from ..steps import GATHER, Steps
from .pool import _MISSING, _fail, _gather, _Job, _ShardFailure, gather_steps
from .router import Shard, Sharded, ShardSet


def _write(engine: Any, plan: Plan, shards: ShardSet) -> Any:
    last = plan.records[-1]
    if last[0] == "insert":
        return _insert(engine, plan, shards)
    jobs = [_Job(shard, shard.write_alias(plan), plan) for shard in shards]
    return sum(_gather(engine, jobs, write=True))


def write_steps(engine: Any, plan: Plan, shards: ShardSet) -> Steps:
    """``_write`` of an update or delete as core steps: every shard's statement at once."""
    if plan.records[-1][0] == "insert":
        jobs, placed = _insert_jobs(plan, shards)
        return _insert_pks(placed, (yield from gather_steps(engine, jobs, write=True)))
    jobs = [_Job(shard, shard.write_alias(plan), plan) for shard in shards]
    return sum((yield from gather_steps(engine, jobs, write=True)))


def _insert(engine: Any, plan: Plan, shards: ShardSet) -> list:
    jobs, placed = _insert_jobs(plan, shards)
    return _insert_pks(placed, _gather(engine, jobs, write=True))


def _insert_jobs(plan: Plan, shards: ShardSet) -> tuple[list[_Job], list[list[int]]]:
    """An insert plan's rows, each to the shard of its key: one job per shard that gets
    rows (in the router's order) and, per job, the indexes of its rows in the plan."""
    _, names, rows, *option = plan.records[-1]
    router = shards.router
    field = router.key_field(plan.model)
    if field.name not in names:
        raise RoutingError(f"{plan.model.__name__}: the rows have no value for the shard key "
                           f"{field.name!r}")
    i = names.index(field.name)
    per_shard: dict[str, list[int]] = {}
    for n, row in enumerate(rows):
        per_shard.setdefault(_place(router, row[i][1], plan.model, n).name, []).append(n)
    order = [s for s in router.shards if s.name in per_shard]
    jobs = [_Job(s, s.write_alias(plan), plan._derive(
        (("insert", names, tuple(rows[n] for n in per_shard[s.name]), *option),), None))
        for s in order]
    return jobs, [per_shard[s.name] for s in order]


def _insert_pks(placed: list[list[int]], results: list) -> list:
    """The primary keys in the plan's row order, from each shard's job result."""
    pks: list[Any] = [None] * sum(len(p) for p in placed)
    for indexes, result in zip(placed, results):
        for n, pk in zip(indexes, result):
            pks[n] = pk
    return pks


def _place(router: Sharded, value: Any, model: Any, n: int) -> Shard:
    if value is None:
        raise RoutingError(f"{model.__name__}: row {n} has no value for the shard key "
                           f"{router.key!r}; every row needs one to be placed on a shard")
    return router.shard_for(value)


def _groups(root: Plan, objs: list, shards: ShardSet) -> list[tuple[Shard, str, list]]:
    """``(shard, its write alias, its objects)`` for the shards that get rows."""
    router = shards.router
    field = router.key_field(root.model)
    groups: dict[str, list] = {}
    for n, obj in enumerate(objs):
        shard = _place(router, obj.__dict__.get(field.attname), root.model, n)
        groups.setdefault(shard.name, []).append(obj)
    return [(shard, shard.write_alias(root), groups[shard.name])
            for shard in router.shards if shard.name in groups]


def bulk_create(engine: Any, root: Plan, objs: list, batch_size: int | None,
                shards: ShardSet, options: dict[str, Any] | None = None) -> None:
    """Each object to the shard of its key: one transaction per shard, shards concurrently."""
    jobs = []
    for shard, alias, mine in _groups(root, objs, shards):
        call = (lambda conn, mine=mine:
                engine.bulk_create(root.using(conn.alias), mine, batch_size, options) or True)
        jobs.append(_Job(shard, alias, root, call))
    _gather(engine, jobs, write=True)


def bulk_create_steps(engine: Any, root: Plan, objs: list, batch_size: int | None,
                      shards: ShardSet, options: dict[str, Any] | None,
                      insert: Callable[..., Steps]) -> Steps:
    """``bulk_create`` as core steps: the shards' inserts in one ``GATHER`` (concurrent on
    the async edge), each ``insert(engine, root on its alias, objs, batch_size, options)``;
    a failure names its shard, as in ``_gather``."""
    groups = _groups(root, objs, shards)

    def one(alias: str, mine: list) -> Steps:
        try:
            return (yield from insert(engine, root.using(alias), mine, batch_size, options))
        except DatabaseError as exc:
            return _ShardFailure(alias, exc)

    done = yield (GATHER, [one(alias, mine) for _, alias, mine in groups])
    jobs = [_Job(shard, alias, root) for shard, alias, _ in groups]
    failures = [r if isinstance(r, _ShardFailure) else None for r in done]
    if any(failures):
        _fail(jobs, [_MISSING if f else r for r, f in zip(done, failures)], failures, True)
