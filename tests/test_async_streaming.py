"""``aiterator()`` streams (at most ``chunk_size`` rows per round trip, the cursor closed on an
early break or a cancel, the pool healthy after), held inserts over shards awaited, and
``aatomic``'s end and child tasks on its connection: on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

import pytest

import qplan
from conftest import run_async as run
from qplan import aconnections
from testmodels import Author


def _authors(n: int) -> None:
    Author.objects.bulk_create([Author(name=f"a{i:02}") for i in range(n)])


def _healthy(stats: dict[str, int]) -> bool:
    """Every open connection of the pool is idle again (none lent or leaked mid-result)."""
    return stats["open"] == stats["idle"] and stats["open"] <= 2


def test_aiterator_fetches_chunk_by_chunk_same_rows(any_db: str) -> None:
    _authors(25)
    plans = [Author.objects.order_by("id"), Author.objects.order_by("-name").values("id", "name"),
             Author.objects.filter(name__gt="a05").order_by("id").values_list("name", flat=True)]

    async def main() -> Any:
        conn = aconnections.connection("default")
        out = []
        for plan in plans:
            conn.fetches.clear()
            rows = [r async for r in plan.aiterator(chunk_size=4)]
            out.append((rows, list(conn.fetches)))
        async with qplan.aatomic():  # inside a block: on its connection, the same rows
            await Author.objects.acreate(name="zz")
            out.append(([r async for r in plans[0].aiterator(chunk_size=4)], []))
        return out, aconnections.stats("default")

    expected = [list(plan.iterator(chunk_size=4)) for plan in plans]
    out, stats = run(main())
    for want, (rows, fetches) in zip(expected, out):
        assert rows == want
        assert max(fetches) <= 4 and len(fetches) >= len(rows) // 4 + 1  # one chunk a trip
    assert [a.name for a in out[-1][0]] == [a.name for a in Author.objects.order_by("id")]
    assert _healthy(stats)


def test_aiterator_early_break_and_cancel_leave_the_pool_healthy(any_db: str) -> None:
    _authors(30)
    plan = Author.objects.order_by("id")

    async def main() -> Any:
        async with contextlib.aclosing(plan.aiterator(chunk_size=3)) as it:
            first = [a.name async for a in _take(it, 4)]
        after_close = dict(aconnections.stats("default"))
        async for _ in plan.aiterator(chunk_size=2):  # a plain break: closed when collected
            break
        await _collected()
        after_break = dict(aconnections.stats("default"))

        async def consume() -> None:
            async for _ in plan.aiterator(chunk_size=2):
                await asyncio.sleep(10)

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _collected()
        async with qplan.aatomic():  # a stream broken inside a block: the block goes on
            async for _ in plan.aiterator(chunk_size=2):
                break
            gc.collect()  # its close waits for the block's connection, or runs first
            await Author.objects.acreate(name="kept")
        return (first, after_close, after_break, await Author.objects.acount(),
                aconnections.stats("default"))

    first, after_close, after_break, n, stats = run(main())
    assert first == ["a00", "a01", "a02", "a03"]
    assert _healthy(after_close) and _healthy(after_break) and _healthy(stats)
    assert n == 31


async def _collected() -> None:
    """Let the loop finalise an abandoned async generator (it closes it in a task of its
    own) and that task finish its driver calls."""
    gc.collect()
    for _ in range(100):
        stats = aconnections.stats("default")
        if stats and stats["open"] == stats["idle"]:
            return
        await asyncio.sleep(0.01)


async def _take(it: Any, n: int) -> Any:
    async for obj in it:
        yield obj
        n -= 1
        if n == 0:
            return


def test_sharded_aiterator_and_held_insert_awaited(tmp_path) -> None:
    from test_sharding import Order, build, configure, reset

    configure(tmp_path)
    build(tmp_path, with_rows=True)
    try:
        plan = Order.objects.order_by("-amount", "id").values_list("id", flat=True)
        held = Order.objects.bulk_create_plan([Order(id=200 + i, tenant_id=i, amount=i)
                                               for i in range(6)])

        async def main() -> Any:
            rows = [r async for r in plan.aiterator(chunk_size=5)]
            return rows, await held.aexecute(), await Order.objects.filter(id__gte=200).acount()

        expected = list(plan.iterator(chunk_size=5))
        rows, pks, added = run(main())
        assert rows == expected
        assert added == 6 and sorted(pks) == list(range(200, 206))
        Order.objects.bulk_create_plan([Order(id=300 + i, tenant_id=i, amount=i)
                                        for i in range(6)]).execute()  # the blocking path
        placed = [Order.objects.get(id=200 + i)._db for i in range(6)]
        assert placed == [Order.objects.get(id=300 + i)._db for i in range(6)]
        assert len(set(placed)) > 1  # each row on the shard of its key
    finally:
        reset()


def test_aatomic_commit_on_a_lost_connection_raises(any_db: str) -> None:
    async def main() -> Any:
        with pytest.raises(qplan.ConnectionFailure):  # never a silent success
            async with qplan.aatomic():
                await Author.objects.acreate(name="lost")
                tx = aconnections.transactions()["default"]
                conn = aconnections.connection("default")
                assert tx.slot is not None
                await conn.backend.aclose(tx.slot[0])  # gone before COMMIT
        await Author.objects.acreate(name="after")  # the pool is healthy
        return aconnections.stats("default")

    stats = run(main())
    assert list(Author.objects.values_list("name", flat=True)) == ["after"]
    assert _healthy(stats)


def test_child_tasks_of_aatomic_take_turns_on_its_connection(any_db: str) -> None:
    _authors(12)

    async def child(i: int) -> Any:
        await Author.objects.acreate(name=f"c{i}")
        names = [a.name async for a in Author.objects.order_by("id").aiterator(chunk_size=5)]
        return await Author.objects.filter(name__startswith="a").acount(), len(names)

    async def main() -> Any:
        async with qplan.aatomic():
            return await asyncio.gather(*(child(i) for i in range(8)))

    results = run(main())
    assert all(n == 12 and 13 <= seen <= 20 for n, seen in results)
    assert Author.objects.filter(name__startswith="c").count() == 8
