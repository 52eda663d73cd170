"""Awaited plans (``qplan.aio``) on real async drivers: overhead, concurrency, shards.

Run from the repository root (as root, or as a user who may start the servers)::

    python benchmarks/bench_async.py [--loops 500]

Throwaway PostgreSQL and MariaDB servers (``tests/servers.py``) hold 1,000 rows. Measured:

1. per call, a 20-row fetch (``values_list`` tuples, built + compiled + run + decoded) and
   ``acount()``: qplan awaited against the raw async driver running the same SQL on its
   own connection (psycopg 3 ``AsyncConnection``; aiomysql), paired run by run (the ratio
   is the median of per-run ratios), beside the blocking qplan call, SQLAlchemy 2's asyncio
   Core for the same query, and raw asyncpg (why psycopg 3 was picked: see the notes);
2. 1,000 concurrent coroutines each awaiting the 20-row fetch on PostgreSQL with
   ``POOL`` max 20: errors, the most server connections seen (``pg_stat_activity``), and
   the event loop's worst lag (a ticker task sleeping 1 ms), beside the same burst on
   psycopg 3 alone (its connections opened beforehand: the harness's and machine's floor);
3. ``acount()`` over 4 PostgreSQL shards with a simulated 20 ms latency per statement:
   the shards run concurrently on the loop, so it costs about one round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
from typing import Any, Awaitable, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import qplan  # noqa: E402
from qplan import Model, Sharded, aconnections, fields, pools  # noqa: E402
from servers import MariaDBServer, PostgresCluster, close_all, start_all  # noqa: E402

ROWS = 1000
RUNS = 9
DB = "qplan_abench"


class Item(Model):
    name = fields.CharField(max_length=40)
    n = fields.IntegerField(db_index=True)

    class Meta:
        db_table = "bench_async_item"
        key = "benchmarks.bench_async.Item"


def fetch_plan() -> Any:
    return Item.objects.filter(n__gte=100).order_by("id").values_list("id", "name", "n")[:20]


def settings_of(vendor: str, e: Any, name: str = DB, pool: int = 1) -> dict[str, Any]:
    return {"ENGINE": vendor, "HOST": e.host, "PORT": e.port, "USER": e.user,
            "PASSWORD": e.password, "NAME": name, "POOL": {"max_size": pool}}


def populate() -> None:
    qplan.drop_tables([Item], missing_ok=True)
    qplan.create_tables([Item])
    Item.objects.bulk_create([Item(id=i, name=f"item{i}", n=i) for i in range(1, ROWS + 1)])


async def _timed(fn: Callable[[], Awaitable[Any]], loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        await fn()
    return (time.perf_counter() - start) / loops * 1e6


async def _paired(a: Callable[[], Awaitable[Any]], b: Callable[[], Awaitable[Any]], loops: int,
                  block: int = 10) -> tuple[float, float]:
    """Per-call µs of ``a`` and ``b``, interleaved in blocks of ``block`` calls: a busy
    neighbour slows both alike (back-to-back runs of 500 calls each did not pair)."""
    spent = [0.0, 0.0]
    perf = time.perf_counter
    for _ in range(loops // block):
        for i, fn in ((0, a), (1, b)):
            start = perf()
            for _ in range(block):
                await fn()
            spent[i] += perf() - start
    n = loops // block * block
    return spent[0] / n * 1e6, spent[1] / n * 1e6


async def raw_psycopg(s: dict) -> Any:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"], dbname=s["NAME"],
        autocommit=True, prepare_threshold=None)

    async def run(sql: str, params: tuple) -> Any:
        async with conn.cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    return run, conn.close


async def raw_aiomysql(s: dict) -> Any:
    import aiomysql

    conn = await aiomysql.connect(host=s["HOST"], port=s["PORT"], user=s["USER"],
                                  password=s["PASSWORD"], db=s["NAME"], autocommit=True)

    async def run(sql: str, params: tuple) -> Any:
        async with conn.cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def close() -> None:
        conn.close()

    return run, close


async def sqlalchemy_fetch(vendor: str, s: dict) -> Any:
    from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    url = {"postgresql": "postgresql+psycopg", "mysql": "mysql+aiomysql"}[vendor]
    engine = create_async_engine(f"{url}://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/"
                                 f"{s['NAME']}", pool_size=1)
    t = Table("bench_async_item", MetaData(), Column("id", Integer, primary_key=True),
              Column("name", String(40)), Column("n", Integer))
    conn = await engine.connect()

    async def fetch() -> Any:
        q = select(t.c.id, t.c.name, t.c.n).where(t.c.n >= 100).order_by(t.c.id).limit(20)
        return (await conn.execute(q)).all()

    async def count() -> Any:
        return (await conn.execute(select(func.count()).select_from(t).where(t.c.n >= 100))).scalar()

    async def close() -> None:
        await conn.close()
        await engine.dispose()

    return fetch, count, close


async def raw_asyncpg(s: dict, sql: str, params: tuple) -> Callable[[], Awaitable[Any]]:
    import asyncpg

    conn = await asyncpg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"],
                                 password=s["PASSWORD"], database=s["NAME"])
    dollar = sql.replace("%s", "{}").format(*[f"${i + 1}" for i in range(len(params))])
    return lambda: conn.fetch(dollar, *params), conn.close  # type: ignore[return-value]


async def overhead(vendor: str, s: dict, loops: int) -> dict[str, float]:
    qplan.configure(databases={"default": s})
    populate()
    plan, count = fetch_plan(), Item.objects.filter(n__gte=100)
    sql, params = plan.compile()
    csql, cparams = count._add(("count",)).compile()
    raw, close = await (raw_psycopg(s) if vendor == "postgresql" else raw_aiomysql(s))
    sa_fetch, sa_count, sa_close = await sqlalchemy_fetch(vendor, s)
    extra = None
    if vendor == "postgresql":
        extra = await raw_asyncpg(s, sql, params)
    assert [tuple(r) for r in await raw(sql, params)] == await plan.aexecute() == plan.execute()
    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    for _ in range(RUNS):
        r, q = await _paired(lambda: raw(sql, params), lambda: fetch_plan().aexecute(), loops)
        add("fetch raw", r)
        add("fetch qplan", q)
        add("fetch ratio", q / r)
        rc, qc = await _paired(lambda: raw(csql, cparams),
                               lambda: Item.objects.filter(n__gte=100).acount(), loops)
        add("count raw", rc)
        add("count qplan", qc)
        add("count ratio", qc / rc)
        start = time.perf_counter()
        for _ in range(loops):
            fetch_plan().execute()
        add("fetch sync qplan", (time.perf_counter() - start) / loops * 1e6)
        add("fetch sqlalchemy", await _timed(sa_fetch, loops))
        add("count sqlalchemy", await _timed(sa_count, loops))
        if extra is not None:
            add("fetch raw asyncpg", await _timed(extra[0], loops))
    await close()
    await sa_close()
    if extra is not None:
        await extra[1]()
    await aconnections.close_all()
    qplan.drop_tables([Item], missing_ok=True)
    qplan.connections.close_all()
    return {k: statistics.median(v) for k, v in out.items()}


async def concurrency(s: dict, tasks: int = 1000, pool: int = 20, rounds: int = 5,
                      freeze: bool = False) -> dict[str, Any]:
    """``rounds`` times: a burst of ``tasks`` coroutines that opens the pool's connections,
    then one on the open pool; the loop's lag (median and worst of the rounds), the longest
    GC pause, beside the raw driver's and the no-op harness's own lag, as many rounds.
    ``freeze``: the heap built so far frozen first (``gc.freeze()``, as a service does after
    start-up), so that a full collection does not walk the modules' objects."""
    import psycopg

    if freeze:
        gc.collect()
        gc.freeze()

    qplan.configure(databases={"default": {**s, "POOL": {"max_size": pool, "timeout": 60}}})
    populate()
    watcher = await psycopg.AsyncConnection.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"], dbname=s["NAME"],
        autocommit=True)
    seen, running = [0], [True]
    lag = Ticker()
    pauses = gc_pauses()

    async def sampler() -> None:
        while running[0]:
            cur = await watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                                        " AND pid <> pg_backend_pid()", (s["NAME"],))
            seen[0] = max(seen[0], (await cur.fetchone())[0])
            await asyncio.sleep(0.005)

    plan = fetch_plan()  # a cached plan, as a request handler holds one

    async def one() -> int:
        return len(await plan.aexecute())

    await plan.aexecute()  # the shape compiled once, before the clock starts
    qplan.connections.close_all()
    pools.close(["default"])  # populate's blocking connections: not counted
    bg = [lag.start(), asyncio.create_task(sampler())]
    results: list[Any] = []
    cold, warm, gcs, elapsed = [], [], [], []
    for _ in range(rounds):
        await aconnections.close_all()  # the pool opens its connections again: cold
        await asyncio.sleep(0.01)
        lag.worst = pauses[0] = 0.0
        start = time.perf_counter()
        results += await asyncio.gather(*(one() for _ in range(tasks)), return_exceptions=True)
        elapsed.append(time.perf_counter() - start)
        cold.append(lag.worst)
        lag.worst = 0.0
        results += await asyncio.gather(*(one() for _ in range(tasks)), return_exceptions=True)
        warm.append(lag.worst)
        gcs.append(pauses[0])
    running[0] = lag.running = False
    await asyncio.gather(*bg)
    gc.callbacks.remove(pauses[1])
    await watcher.close()
    floors: dict[str, list[float]] = {}
    for _ in range(rounds):
        for key, value in {**await raw_concurrency(s, plan.compile(), tasks, pool),
                           **await noop_floor(tasks)}.items():
            floors.setdefault(key, []).append(value)
    await aconnections.close_all()
    qplan.drop_tables([Item], missing_ok=True)
    qplan.connections.close_all()
    if freeze:
        gc.unfreeze()
    errors = sum(1 for r in results if not isinstance(r, int) or r != 20)
    out = {"tasks": tasks, "rounds": rounds, "errors": errors, "server connections": seen[0],
           "seconds": statistics.median(elapsed)}
    for key, values in {"loop lag ms": cold, "warm pool lag ms": warm, "gc pause ms": gcs,
                        **floors}.items():
        scale = 1e3 if key in ("loop lag ms", "warm pool lag ms", "gc pause ms") else 1
        out[key] = statistics.median(values) * scale
        out[key.replace(" ms", "") + " worst ms" if key.endswith(" ms") else key + " worst"] = \
            max(values) * scale
    return out


class Ticker:
    """The loop's worst lag: a task sleeping 1 ms at a time, how much later it woke."""

    def __init__(self) -> None:
        self.worst, self.running = 0.0, True

    def start(self) -> "asyncio.Task[None]":
        return asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while self.running:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - t - 0.001)


async def noop_floor(tasks: int) -> dict[str, float]:
    """The harness's own lag: ``tasks`` no-op tasks started by one ``gather`` through a
    semaphore, as the bursts start theirs (creating 1,000 tasks and running their first
    steps takes two loop iterations whoever runs them)."""
    lag, gate = Ticker(), asyncio.Semaphore(32)

    async def one() -> None:
        async with gate:
            await asyncio.sleep(0)

    tick = lag.start()
    await asyncio.sleep(0.01)
    await asyncio.gather(*(one() for _ in range(tasks)))
    lag.running = False
    await tick
    return {"no-op harness lag ms": lag.worst * 1e3}


def gc_pauses() -> list[Any]:
    """``[longest collection so far (s), the gc callback]``: a full collection of a large
    heap holds any event loop (30-40 ms here), whoever allocated; reported beside the lag
    so that a pause is told apart from qplan's own work."""
    out: list[Any] = [0.0, None]
    began = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            out[0] = max(out[0], time.perf_counter() - began[0])

    out[1] = callback
    gc.callbacks.append(callback)
    return out


async def raw_concurrency(s: dict, statement: tuple, tasks: int, pool: int) -> dict[str, float]:
    """The floor without qplan: the same burst of tasks on psycopg 3 alone, ``pool``
    connections opened beforehand and lent through a queue; the loop's worst lag then is
    the harness's, the driver's and the machine's (a busy neighbour shows here too)."""
    import psycopg

    sql, params = statement
    free: asyncio.Queue = asyncio.Queue()
    conns = [await psycopg.AsyncConnection.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"],
        dbname=s["NAME"], autocommit=True, prepare_threshold=None) for _ in range(pool)]
    for conn in conns:
        free.put_nowait(conn)
    lag = Ticker()

    async def one() -> int:
        conn = await free.get()
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql, params)
                return len(await cur.fetchall())
        finally:
            free.put_nowait(conn)

    tick = lag.start()
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    elapsed = time.perf_counter() - start
    lag.running = False
    await tick
    for conn in conns:
        await conn.close()
    return {"raw psycopg lag ms": lag.worst * 1e3, "raw psycopg seconds": elapsed}


async def shards(pg: Any, latency: float = 0.02) -> dict[str, float]:
    from qplan.backends import get as get_backend

    names = [f"{DB}_s{i}" for i in range(4)]
    for name in names:
        pg.create_database(name)
    router = Sharded("n", names)
    qplan.configure(databases={n: settings_of("postgresql", pg.primary, n, 4) for n in names},
                    routers=[router])
    for n in names:
        qplan.drop_tables([Item], using=n, missing_ok=True)
        qplan.create_tables([Item], using=n)
    Item.objects.bulk_create([Item(id=i, name=f"item{i}", n=i) for i in range(1, ROWS + 1)])
    backend = get_backend("postgresql")
    arun = type(backend).arun

    async def slow(self: Any, *args: Any) -> Any:
        await asyncio.sleep(latency)  # the simulated network round trip
        return await arun(self, *args)

    type(backend).arun = slow  # type: ignore[method-assign]
    try:
        assert await Item.objects.acount() == ROWS
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            await Item.objects.filter(n__gte=1).acount()
            times.append(time.perf_counter() - start)
    finally:
        type(backend).arun = arun  # type: ignore[method-assign]
    await aconnections.close_all()
    for n in names:
        qplan.drop_tables([Item], using=n, missing_ok=True)
    qplan.connections.close_all()
    qplan.configure(databases={}, routers=[])
    return {"ms": statistics.median(times) * 1e3, "one round trip ms": latency * 1e3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=500)
    args = parser.parse_args(argv)
    pg, md = PostgresCluster(replica=False), MariaDBServer()
    try:
        errors = start_all(pg, md)
        if any(errors):
            print(f"servers not started: {errors}", file=sys.stderr)
            return 1
        md.create_database(DB)
        pg.create_database(DB)
        for vendor, e in (("postgresql", pg.primary), ("mysql", md)):
            r = asyncio.run(overhead(vendor, settings_of(vendor, e), args.loops))
            print(f"{vendor}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
        for freeze in (False, True):
            c = asyncio.run(concurrency(settings_of("postgresql", pg.primary), freeze=freeze))
            print(f"concurrency{', gc.freeze()' if freeze else ''}: "
                  + ", ".join(f"{k} {v:.3g}" for k, v in c.items()))
        sh = asyncio.run(shards(pg))
        print("4 shards, count: " + ", ".join(f"{k} {v:.1f}" for k, v in sh.items()))
    finally:
        close_all(pg, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
