"""Awaited plans on every backend: same rows as the blocking path, ``aatomic``, pools,
cancellation (plain tests: each runs its coroutine with ``asyncio.run``)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

import qplan
from conftest import run_async as run
from qplan import aconnections
from testmodels import Author, Book


def test_same_rows_as_blocking(any_db: str) -> None:
    a = Author.objects.create(name="ann")
    Book.objects.create(title="t1", author=a, pages=3)
    Book.objects.create(title="t2", author=a, pages=5)
    plans = [Book.objects.order_by("id"), Book.objects.values("title", "author__name"),
             Book.objects.filter(pages__gt=3).values_list("title", flat=True)]

    async def main() -> Any:
        rows = [await p.aexecute() for p in plans]
        streamed = [b async for b in Book.objects.order_by("id")]
        return (rows, streamed, await Book.objects.acount(), await Book.objects.aexists(),
                await Book.objects.aaggregate(n=qplan.Sum("pages")),
                await Book.objects.aget(title="t2"), await Book.objects.alast(),
                await Book.objects.ain_bulk([1, 2]))

    rows, streamed, n, exists, agg, got, last, bulk = run(main())
    assert rows == [p.execute() for p in plans]
    assert streamed == list(Book.objects.order_by("id"))
    assert (n, exists, agg) == (2, True, {"n": 8})
    assert got.title == "t2" and last == Book.objects.last() and bulk == Book.objects.in_bulk([1, 2])


def test_writes_and_aatomic(any_db: str) -> None:
    async def main() -> None:
        a = await Author.objects.acreate(name="x")
        a.name = "y"
        await a.asave()
        await a.arefresh_from_db()
        assert a.name == "y"
        with pytest.raises(ZeroDivisionError):
            async with qplan.aatomic():
                await Author.objects.acreate(name="gone")
                1 / 0
        async with qplan.aatomic():
            await Author.objects.acreate(name="kept")
            if qplan.connections["default"].backend.SUPPORTS_SAVEPOINTS:
                with pytest.raises(ValueError):
                    async with qplan.aatomic():
                        await Author.objects.acreate(name="inner")
                        raise ValueError
        assert await Author.objects.filter(name="kept").aupdate(name="k") == 1
        made = await Author.objects.abulk_create([Author(name=f"b{i}") for i in range(3)])
        assert all(m.pk is not None for m in made) or vendor_lacks_returning()
        got, created = await Author.objects.aget_or_create(name="b1")
        assert not created and got.name == "b1"
        got, created = await Author.objects.aget_or_create(name="new", defaults={"email": "e"})
        assert created and got.email == "e"
        got, created = await Author.objects.aupdate_or_create(name="new", defaults={"email": "f"})
        assert not created and (await Author.objects.aget(name="new")).email == "f"
        rows = [o async for o in Author.objects.filter(name__startswith="b").order_by("id")]
        for o in rows:
            o.email = "bulk" + o.name
        assert await Author.objects.abulk_update(rows, ["email"]) == 3
        a.email = "only"
        await a.asave(update_fields=["email"])

    run(main())
    assert sorted(Author.objects.values_list("name", flat=True)) == ["b0", "b1", "b2", "k", "new", "y"]
    assert Author.objects.filter(email__startswith="bulk").count() == 3
    assert Author.objects.get(name="y").email == "only"


def vendor_lacks_returning() -> bool:
    return not qplan.connections["default"].backend.insert_returning


def test_concurrent_tasks_share_a_bounded_pool(pg_db: str) -> None:
    qplan.configure(databases={"default": {**qplan.settings.database("default"),
                                           "POOL": {"max_size": 3}}})
    Author.objects.bulk_create([Author(name=f"a{i}") for i in range(20)])

    async def main() -> Any:
        results = await asyncio.gather(*(Author.objects.order_by("id").aexecute()
                                         for _ in range(50)))
        return results, aconnections.stats("default")

    results, stats = run(main())
    assert all(len(r) == 20 for r in results) and stats["open"] <= 3


def test_a_pool_opens_its_connections_one_at_a_time(pg_db: str, monkeypatch: Any) -> None:
    # A handshake's CPU work (libpq's SCRAM key derivation) runs on the loop: a burst of
    # tasks must not stack max_size handshakes in one loop iteration.
    qplan.configure(databases={"default": {**qplan.settings.database("default"),
                                           "POOL": {"max_size": 5}}})
    backend = qplan.connections["default"].backend
    real = type(backend).aconnect
    opening, most = [0], [0]

    async def counted(self: Any, settings: Any) -> Any:
        opening[0] += 1
        most[0] = max(most[0], opening[0])
        try:
            await asyncio.sleep(0.01)  # a handshake's round trips: room for others to start
            return await real(self, settings)
        finally:
            opening[0] -= 1

    monkeypatch.setattr(type(backend), "aconnect", counted)

    async def main() -> Any:
        await asyncio.gather(*(Author.objects.acount() for _ in range(20)))
        return aconnections.stats("default")

    stats = run(main())
    assert most[0] == 1 and 1 <= stats["open"] <= 5


def test_a_failed_connect_fails_the_ones_queued_behind_it(monkeypatch: Any) -> None:
    # Opened one at a time, connects to an unreachable server must not each wait in turn.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    qplan.configure(databases={"default": f"postgresql://u:p@127.0.0.1:{port}/nowhere"})
    backend = qplan.connections["default"].backend
    real = type(backend).aconnect
    tries = [0]

    async def counted(self: Any, settings: Any) -> Any:
        tries[0] += 1
        await asyncio.sleep(0.01)  # the others queue up meanwhile
        return await real(self, settings)

    monkeypatch.setattr(type(backend), "aconnect", counted)

    async def main() -> Any:
        return await asyncio.gather(*(Author.objects.acount() for _ in range(5)),
                                    return_exceptions=True)

    try:
        results = run(main())
    finally:
        qplan.configure(databases={})
    assert all(isinstance(r, qplan.ConnectionFailure) for r in results), results
    assert tries[0] == 1 and f"127.0.0.1:{port}" in str(results[-1])


def test_a_cancelled_query_leaves_the_pool_healthy(pg_db: str) -> None:
    Author.objects.create(name="a")

    async def main() -> Any:
        slow = asyncio.ensure_future(_sleep())
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        return await Author.objects.acount(), aconnections.stats("default")

    async def _sleep() -> Any:
        conn = aconnections.connection("default")
        return await conn.fetchall("SELECT pg_sleep(5)")

    n, stats = run(main())
    assert n == 1 and stats["open"] <= 1


def test_sharded_reads_and_writes_awaited(tmp_path) -> None:
    """Scatter-gather awaited: the shards run concurrently on the loop, merged as in sync."""
    from test_sharding import Order, build, configure, reset

    configure(tmp_path)
    build(tmp_path, with_rows=True)
    try:
        plans = [Order.objects.order_by("-amount", "id")[3:9].values_list("id", flat=True),
                 Order.objects.values("tenant_id").annotate(n=qplan.Count("id")).order_by("tenant_id"),
                 Order.objects.filter(paid=True)._add(("count",))]

        async def main() -> Any:
            rows = [await p.aexecute() for p in plans]
            agg = await Order.objects.aaggregate(total=qplan.Sum("amount"), top=qplan.Max("qty"))
            changed = await Order.objects.filter(paid=False).aupdate(customer="x")
            return rows, agg, changed

        async def insert() -> Any:
            more = [Order(id=100 + i, tenant_id=i, amount=i) for i in range(6)]
            await Order.objects.abulk_create(more)
            return [o._db for o in more], await Order.objects.filter(id__gte=100).acount()

        rows, agg, changed = run(main())
        assert rows[:2] == [plans[0].execute(), plans[1].execute()] and rows[2] == plans[2].execute()
        assert agg == Order.objects.aggregate(total=qplan.Sum("amount"), top=qplan.Max("qty"))
        assert changed == Order.objects.filter(customer="x").count() > 0
        placed, added = run(insert())  # each row on the shard of its key, shards concurrently
        assert added == 6 and placed == [Order.objects.get(id=100 + i)._db for i in range(6)]
        assert len(set(placed)) > 1
    finally:
        reset()


def test_prefetch_related_awaited(rel_db: str) -> None:
    """The same prefetch steps as the blocking path: one query per level, the same caches."""
    from relmodels import Genre, Novel, Writer

    w1, w2 = Writer.objects.create(name="w1"), Writer.objects.create(name="w2")
    g1, g2 = Genre.objects.create(name="g1"), Genre.objects.create(name="g2")
    for i, w in enumerate([w1, w1, w2]):
        n = Novel.objects.create(title=f"n{i}", writer=w)
        n.genres.add(g1, *([g2] if i else []))
    plan = Writer.objects.order_by("id").prefetch_related("novel_set__genres")

    def shape(writers: list) -> list:
        return [(w.name, [(n.title, sorted(g.name for g in n.genres.all()))
                          for n in sorted(w.novel_set.all(), key=lambda n: n.title)])
                for w in writers]

    awaited = run(plan.aexecute())
    assert all("_prefetched" in w.__dict__ for w in awaited)
    assert shape(awaited) == shape(list(plan))


def test_adelete_counts_cascaded_rows_as_delete(rel_db: str) -> None:
    from relmodels import Novel, Review, Writer

    def make() -> None:
        w = Writer.objects.create(name="w")
        n = Novel.objects.create(title="n", writer=w)
        Review.objects.create(novel=n, stars=3)

    make()
    if not qplan.connections["default"].backend.ON_DELETE_IN_DATABASE:  # DuckDB: refused
        with pytest.raises(qplan.IntegrityError):
            run(Writer.objects.filter(name="w").adelete())
        with pytest.raises(qplan.IntegrityError):
            Writer.objects.filter(name="w").delete()
        return
    awaited = run(Writer.objects.filter(name="w").adelete())
    make()
    assert awaited == Writer.objects.filter(name="w").delete() and awaited[0] >= 2
    make()
    w = Writer.objects.get()
    assert run(w.adelete()) == awaited and Novel.objects.count() == 0


def test_none_and_select_for_update_awaited(any_db: str) -> None:
    Author.objects.create(name="a")

    async def main() -> Any:
        assert await Author.objects.none().acount() == 0
        assert await Author.objects.none().aexecute() == []
        if not locks:
            with pytest.raises(qplan.NotSupportedError):  # as the blocking path
                await Author.objects.select_for_update().aexecute()
            return ["a"]
        with pytest.raises(qplan.TransactionManagementError, match="select_for_update"):
            await Author.objects.select_for_update().aexecute()
        async with qplan.aatomic():
            return [a.name for a in await Author.objects.select_for_update().aexecute()]

    try:
        with qplan.atomic():
            list(Author.objects.select_for_update())
        locks = True
    except qplan.NotSupportedError:  # no row locks (SQLite, DuckDB)
        locks = False
    assert run(main()) == ["a"]
