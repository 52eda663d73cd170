"""Awaiting plans: the async edge that drives the one execution core (``qplan.steps``).

``await plan.acount()`` and the other ``a*`` methods run the same generators as the
blocking methods (``Engine.route_steps``, ``failover_steps``, ``Engine.run_steps``):
routing, compiling, decoding, read-your-writes and failover are written once;
:func:`adrive` answers their requests with awaits on ``qplan.aconnections``.

``aatomic(using=None)`` is ``atomic()`` for tasks: nesting through savepoints, doomed
blocks, the router's write alias (or, under ``Sharded``, the first statement's alias),
held in a ``ContextVar`` so it is bound to the task.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, AsyncIterator

from . import aconnections, admission, bulkupdate, prefetching, saving, sharding, upserts
from .aconnections import Transaction, set_transaction, transactions
from .errors import PlanError, TransactionManagementError
from .execution import MAX_GET_RESULTS, Engine, engine
from .plan import NONE, PREFETCH, Plan
from .replication import record_write_steps
from .routing import db_for_write, write_alias
from .sharding import ShardSet
from .steps import BLOCK, CHECK, CONN, EXECUTE, FETCH, GATHER, IN_BLOCK, SLEEP, Steps


async def adrive(gen: Steps) -> Any:
    """Run the core's steps ``gen`` to its end with awaits; its return value."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            req = gen.send(value) if error is None else gen.throw(error)
        except StopIteration as stop:
            return stop.value
        error = None
        op = req[0]
        try:
            if op == FETCH:
                value = (await req[1].run(req[2], req[3], True))[0]  # one frame less
            elif op == CONN:
                value = aconnections.connection(req[1])
            elif op == EXECUTE:
                value = (await req[1].run(req[2], req[3], False))[1:]
            elif op == CHECK:
                value = await _check(req[1].alias, req[2])
            elif op == SLEEP:
                value = await asyncio.sleep(req[1])
            elif op == GATHER:
                value = list(await asyncio.gather(*(adrive(sub) for sub in req[1])))
            elif op == BLOCK:
                async with AAtomic(req[1], savepoint=req[2]):
                    value = await adrive(req[3])
            elif op == IN_BLOCK:
                value = bool(_frames.get())
            else:  # pragma: no cover - a bug in the core
                raise AssertionError(f"unknown step {req!r}")
        except Exception as exc:  # thrown into the core at its yield, where it is handled
            value, error = None, exc


# --- evaluation --------------------------------------------------------------------------------


async def aexecute(plan: Plan, using: str | None = None, core: Engine | None = None) -> Any:
    """Run ``plan`` (rows, a count, a rowcount or primary keys), as ``Engine.execute``."""
    gate = None if transactions() else admission.gate()
    if gate is None:
        return await adrive((core or engine).evaluate_steps(plan, using))
    waiter = gate.enter()  # Gate's own ``async with``, inline: two coroutines less per call
    if waiter is not None:
        try:
            await waiter
        except BaseException:  # cancelled while waiting (or just let in)
            gate.abandon(waiter)
            raise
    try:
        return await adrive((core or engine).evaluate_steps(plan, using))
    finally:
        gate.leave()


async def aget(plan: Plan) -> Any:
    """``Engine.get`` awaited: exactly one row, else ``DoesNotExist`` / ``MultipleObjectsReturned``."""
    sliced = plan if plan._has("slice") else plan[:MAX_GET_RESULTS]
    return engine.one(plan, await aexecute(sliced))


async def aiterate(plan: Plan, chunk_size: int) -> AsyncIterator[Any]:
    """``iterator(chunk_size)`` awaited: the rows streamed from a cursor of their own
    (``AsyncConnection.stream``: at most ``chunk_size`` rows per round trip), prefetched per
    chunk as Django does; over several shards, the merged rows as ``iterator()`` gives them."""
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise PlanError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if plan._ops & NONE:
        return
    alias = (await adrive(engine.route_steps(plan)))[0]
    if isinstance(alias, ShardSet):
        sharding.check_streamable(engine, plan, alias)
        for obj in await aexecute(plan):
            yield obj
        return
    conn = aconnections.connection(alias)
    sql, params, chunk = engine.stream_statement(plan, conn)
    await _check(conn.alias, False)
    prefetch = bool(plan._ops & PREFETCH)
    stream = conn.stream(sql, params, chunk_size)
    try:
        async for rows in stream:
            objs = chunk(rows)
            if prefetch and prefetching.wanted(plan, objs):
                await adrive(prefetching.apply(engine, plan, objs, plan.db, engine.evaluate_steps))
            for obj in objs:
                yield obj
    finally:  # closed early (or failed): the cursor is finished before this returns
        await stream.aclose()


async def asave(obj: Any, using: str | None = None, force_insert: bool = False,
                force_update: bool = False, update_fields: Any = None) -> None:
    """``save()`` awaited: the same steps (``qplan.saving``)."""
    await adrive(saving.save_steps(engine, obj, using, force_insert, force_update, update_fields))


async def abulk_create(root: Plan, objs: list, batch_size: int | None,
                       options: dict[str, Any]) -> None:
    """``bulk_create()`` awaited: the same steps (``qplan.saving``); over several shards,
    each shard's rows in its own block, the shards concurrently."""
    await adrive(saving.bulk_create_steps(engine, root, objs, batch_size, options, _over_shards))


def _over_shards(core: Engine, root: Plan, objs: list, batch_size: int | None, shards: Any,
                 options: dict[str, Any] | None) -> Steps:
    return sharding.bulk_create_steps(core, root, objs, batch_size, shards, options,
                                      _on_one_shard)


def _on_one_shard(core: Engine, root: Plan, objs: list, batch_size: int | None,
                  options: dict[str, Any] | None) -> Steps:
    return saving.bulk_create_steps(core, root, objs, batch_size, options, _over_shards)


async def aget_or_create(plan: Plan, defaults: Any, lookups: dict[str, Any]) -> tuple[Any, bool]:
    return await adrive(upserts.get_or_create(engine, plan, defaults, lookups))


async def aupdate_or_create(plan: Plan, defaults: Any, create_defaults: Any,
                            lookups: dict[str, Any]) -> tuple[Any, bool]:
    return await adrive(upserts.update_or_create(engine, plan, defaults, create_defaults, lookups))


async def abulk_update(plan: Plan, objs: Any, fields: Any, batch_size: int | None) -> int:
    return await adrive(bulkupdate.bulk_update(engine, plan, objs, fields, batch_size))


async def adelete(plan: Plan, using: str | None = None) -> tuple[int, dict[str, int]]:
    """``delete()`` awaited: the same steps, cascaded rows counted (``Engine.delete_steps``)."""
    return await adrive(engine.delete_steps(plan, using, engine.evaluate_steps))


# --- aatomic -----------------------------------------------------------------------------------


class _AFrame:
    __slots__ = ("alias", "tx", "name", "routed", "lazy")

    def __init__(self, alias: str | None, routed: bool, lazy: bool) -> None:
        self.alias, self.routed, self.lazy = alias, routed, lazy
        self.tx: Transaction | None = None
        self.name = ""


_frames: contextvars.ContextVar[tuple[_AFrame, ...]] = contextvars.ContextVar(
    "qplan_aio_frames", default=())


async def _open(frame: _AFrame) -> None:
    alias = frame.alias
    assert alias is not None
    conn = aconnections.connection(alias)
    tx = transactions().get(alias)
    if tx is None:
        tx = Transaction(alias)
        set_transaction(alias, tx)
        try:
            await conn.run(conn.backend.begin_sql(), (), False, control=True)
        except BaseException:
            set_transaction(alias, None)
            if tx.slot is not None:
                conn.pool.release(tx.slot, broken=True)
            raise
        name = ""
    else:
        if tx.doomed is not None:
            raise conn.doomed_error(tx)
        tx.ids += 1
        name = f"qplan_asp_{tx.ids}"
        await conn.run(conn.backend.savepoint_sql(name), (), False)
    tx.savepoints.append(name)
    frame.tx, frame.name = tx, name


async def _check(alias: str, write: bool) -> None:
    """``check_statement`` of the async edge: bind a waiting block, refuse another alias."""
    routed = [f for f in _frames.get() if f.routed]
    if not routed:
        return
    top = routed[-1]
    if top.alias is None:
        for frame in routed:
            if frame.alias is None:
                frame.alias = alias
                await _open(frame)
    elif top.alias != alias and (write or top.lazy):
        what = "a write" if write else "a statement"
        raise TransactionManagementError(
            f"{what} routed to {alias!r} inside an aatomic() block on {top.alias!r}: it cannot "
            f"join that transaction and would commit on its own")


class AAtomic:
    """``async with aatomic(using=None):`` (see the module docstring)."""

    def __init__(self, using: str | None = None, savepoint: bool = True) -> None:
        self.using = using
        self.savepoint = savepoint  # False: inside an open block on the alias, join it
        self._mine: contextvars.ContextVar[tuple[_AFrame, ...]] = contextvars.ContextVar(
            "qplan_aatomic", default=())

    async def __aenter__(self) -> None:
        stack = _frames.get()
        routed = [f for f in stack if f.routed]
        outer = routed[-1] if routed else None
        if self.using is not None:
            if outer is not None and outer.alias is not None and outer.alias != self.using:
                raise TransactionManagementError(
                    f"aatomic(using={self.using!r}) inside an aatomic() block on "
                    f"{outer.alias!r}: its commit would not wait for the outer block's")
            frame = _AFrame(self.using, routed=False, lazy=False)
        elif outer is not None:
            frame = _AFrame(outer.alias, routed=True, lazy=outer.lazy)
        else:
            alias = write_alias()
            frame = _AFrame(alias, routed=True, lazy=alias is None)
        joins = not self.savepoint and frame.alias in transactions()
        if frame.alias is not None and not joins:
            await _open(frame)
        _frames.set(stack + (frame,))
        self._mine.set(self._mine.get() + (frame,))

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        mine = self._mine.get()
        frame = mine[-1]
        self._mine.set(mine[:-1])
        _frames.set(tuple(f for f in _frames.get() if f is not frame))
        if frame.tx is not None:
            await _leave(frame, exc_type is not None)


async def _leave(frame: _AFrame, failing: bool) -> None:
    tx = frame.tx
    assert tx is not None and frame.alias is not None
    conn = aconnections.connection(frame.alias)
    depth = len(tx.savepoints)
    reason = tx.doomed
    lost = reason is not None and tx.doomed_depth == 0
    doomed = reason is not None and tx.doomed_depth <= depth
    name = tx.savepoints.pop()
    if name:
        if lost:
            if not failing:
                raise TransactionManagementError(
                    f"{conn.where()}: {reason}; nothing this aatomic() block wrote was committed")
            return
        if not failing and not doomed:
            await conn.run(conn.backend.release_sql(name), (), False, control=True)
            return
        async with tx.lock:
            await conn.finish_streams(tx, depth)
        await conn.run(conn.backend.rollback_to_sql(name), (), False, control=True)
        await conn.run(conn.backend.release_sql(name), (), False, control=True)
        if doomed and tx.doomed_depth == depth:
            tx.doomed = None
        if doomed and not failing:
            raise TransactionManagementError(
                f"{conn.where()}: {reason}; the aatomic() block was rolled back to its savepoint")
        return
    set_transaction(frame.alias, None)
    slot = tx.slot
    try:
        if slot is None:  # the connection was lost: nothing to commit or roll back
            if not failing:
                raise TransactionManagementError(
                    f"{conn.where()}: {reason}; the transaction was rolled back, nothing in it "
                    f"was committed")
            return
        ok, mine = False, True
        try:  # under READ_TIMEOUT, driver errors mapped: a COMMIT that fails raises
            end = "COMMIT" if not failing and not doomed else "ROLLBACK"
            async with tx.lock:  # after a child task's statement in flight on it
                if tx.slot is not slot:  # that statement lost the connection (and freed it)
                    mine = False
                    raise conn.doomed_error(tx)
                tx.slot = None
                ending, tx.streams = tx.streams, []  # its cursors end before the transaction
                for _, handle in ending:
                    await conn.guarded(slot[0], None, conn.backend.afinish, handle)
                await conn.guarded(slot[0], None, conn.backend.arun, slot[0], end, (), False)
            ok = True
        finally:  # failed, timed out or cancelled: the connection is closed, never reused
            if mine:
                conn.pool.release(slot, broken=not ok)
        if not failing and not doomed:
            await adrive(record_write_steps(conn))
        elif not failing:
            raise TransactionManagementError(
                f"{conn.where()}: {reason}; the transaction was rolled back, nothing in it was "
                f"committed")
    except Exception as error:
        if failing:
            return
        raise error


def aatomic(using: str | None = None) -> AAtomic:
    """``async with qplan.aatomic():`` (``using``: the alias; None follows the router)."""
    return AAtomic(using)


__all__ = ["db_for_write", "aatomic", "AAtomic", "adrive", "aexecute", "aget", "aiterate", "asave", "adelete",
           "abulk_create", "aget_or_create", "aupdate_or_create", "abulk_update"]
