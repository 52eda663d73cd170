"""Sharding: fan-out latency over 4 SQLite shards against one SQLite file with the same rows,
and the cost of merging 100,000 rows.

Run from the repository root (qplan installed)::

    python benchmarks/bench_sharding.py            # 100,000 rows
    python benchmarks/bench_sharding.py --quick    # 20,000 rows, fewer loops

Set-up: five SQLite files in a temporary folder. ``s0``..``s3`` are shards of one
``Sharded('tenant_id', ...)`` router (1,000 tenants, hash = tenant % 4, so about a
quarter of the rows each); ``one`` holds every row. The same plans run on both: the
sharded one through routing (scatter-gather, 4 shards queried concurrently by the
bounded pool, the calling thread taking one), the single one with ``using('one')``.

1. Fan-out latency: medians over repeated runs of counts, aggregates, groups, a
   top-20, a pinned plan (one shard), and the same with a simulated 2 ms network
   round trip per query (sleep, which releases the GIL as a socket wait does): there
   the sharded plan should cost about one round trip, not four.
2. Merge cost for all the rows: each shard's rows are fetched once, then only the
   merge (k-way merge / group combine / de-duplication, and materialising) is timed,
   through the same code the engine runs (``qplan.sharding._Read``).
"""

from __future__ import annotations

import argparse
import decimal
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

if __package__ in (None, ""):  # python benchmarks/bench_sharding.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qplan
from qplan import Avg, Count, Max, Sum, fields, routing, sharding
from qplan.execution import Engine, engine
from qplan.sharding import Sharded

SHARDS = ("s0", "s1", "s2", "s3")


class BenchItem(qplan.Model):
    tenant_id = fields.IntegerField()
    grp = fields.CharField(max_length=8)
    qty = fields.IntegerField()
    score = fields.FloatField(null=True)
    price = fields.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        db_table = "bench_item"
        key = "benchmarks.bench_sharding.BenchItem"


def setup(folder: str, n: int) -> None:
    names = (*SHARDS, "one")
    qplan.configure(databases={a: f"sqlite:///{folder}/{a}.db" for a in names},
                    routers=[Sharded("tenant_id", list(SHARDS))])
    rnd = random.Random(42)
    rows = [BenchItem(id=i, tenant_id=rnd.randrange(1000), grp=f"g{rnd.randrange(50):02d}",
                      qty=rnd.randrange(1000), score=None if i % 10 == 0 else rnd.random() * 100,
                      price=decimal.Decimal(rnd.randrange(100_000)) / 100)
            for i in range(1, n + 1)]
    for alias in names:
        with qplan.atomic(using=alias):
            qplan.create_tables([BenchItem], using=alias)
    BenchItem.objects.bulk_create(rows)  # each row to its shard
    BenchItem.objects.using("one").bulk_create(
        [BenchItem(**r.values()) for r in rows])
    routing.forget_writes()


def median_ms(fn: Callable[[], Any], loops: int) -> float:
    fn()  # warm-up: compile cache, connections, pool threads
    times = []
    gc.disable()
    try:
        for _ in range(loops):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return statistics.median(times) * 1000


QUERIES: list[tuple[str, Callable[[Any], Any]]] = [
    ("count()", lambda p: p.count()),
    ("filter(qty__gt=900).count()", lambda p: p.filter(qty__gt=900).count()),
    ("aggregate(Sum, Avg, Max)", lambda p: p.aggregate(s=Sum("qty"), a=Avg("score"),
                                                       m=Max("price"))),
    ("values('grp').annotate(n, avg) [50 groups]", lambda p: list(
        p.values("grp").annotate(n=Count("*"), a=Avg("qty")))),
    ("order_by('-score', 'id')[:20]", lambda p: list(
        p.order_by("-score", "id").values_list("id", "score")[:20])),
    ("filter(tenant_id=7) [pinned: 1 shard]", lambda p: list(p.filter(tenant_id=7))),
]


def fan_out(loops: int) -> list[tuple[str, float, float]]:
    out = []
    for name, build in QUERIES:
        sharded = median_ms(lambda: build(BenchItem.objects), loops)
        single = median_ms(lambda: build(BenchItem.objects.using("one")), loops)
        out.append((name, sharded, single))
    return out


def with_latency(loops: int, delay: float) -> list[tuple[str, float, float]]:
    """The same plans with a simulated network round trip per query (sleep releases the GIL)."""
    run = Engine.run

    def slow(self: Engine, plan: Any, conn: Any) -> Any:
        time.sleep(delay)
        return run(self, plan, conn)

    Engine.run = slow  # type: ignore[method-assign]
    try:
        return [(f"{name} +{delay * 1000:.0f} ms RTT", s, o)
                for name, s, o in fan_out(loops)[:4]]
    finally:
        Engine.run = run  # type: ignore[method-assign]


MERGES: list[tuple[str, Callable[[Any], Any]]] = [
    ("unordered values_list: concatenation", lambda p: p.values_list("id", "qty")),
    ("order_by('qty', 'id'): k-way merge", lambda p: p.order_by("qty", "id").values_list(
        "id", "qty")),
    ("order_by('-score', 'id'): mixed, NULLs", lambda p: p.order_by("-score", "id").values_list(
        "id", "score")),
    ("order_by('id') as model instances", lambda p: p.order_by("id")),
    ("values_list('grp', 'qty').distinct()", lambda p: p.values_list("grp", "qty").distinct()),
    ("values('id').annotate(n, s): group combine", lambda p: p.values("id").annotate(
        n=Count("*"), s=Sum("qty"))),
]


def merge_cost(loops: int, n: int) -> list[tuple[str, float, float, float]]:
    """(name, fetch ms, merge ms, rows per second merged) with each shard's rows fetched once."""
    out = []
    reads = sharding.reads  # _Read fetches with reads._gather
    original = reads._gather
    for name, build in MERGES:
        plan = build(BenchItem.objects)
        shards = routing.route(plan)
        read = sharding._Read(engine, plan, shards)
        jobs = sharding._reads(plan, shards, read.sub)
        fetch = median_ms(lambda: original(engine, jobs), max(loops // 4, 3))
        fetched = original(engine, jobs)
        reads._gather = lambda engine, jobs, write=False: fetched  # type: ignore[assignment]
        try:
            merged = median_ms(read.run, max(loops // 4, 3))
            rows = len(read.run())
        finally:
            reads._gather = original
        out.append((f"{name} ({rows:,} rows out)", fetch, merged, n / merged * 1000))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20,000 rows, fewer loops")
    args = parser.parse_args(argv)
    n, loops = (20_000, 5) if args.quick else (args.rows, 21)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        setup(folder, n)
        print(f"{n:,} rows: 4 SQLite shards vs 1 SQLite file "
              f"(set-up {time.perf_counter() - start:.1f} s, {os.cpu_count()} cores)\n")
        print(f"{'fan-out latency (median)':<62} {'4 shards':>10} {'1 db':>10} {'ratio':>7}")
        for name, sharded, single in fan_out(loops) + with_latency(max(loops // 2, 5), 0.002):
            print(f"{name:<62} {sharded:>8.2f}ms {single:>8.2f}ms {sharded / single:>6.2f}x")
        print(f"\n{'merge cost, rows fetched once (median)':<62} {'fetch':>10} {'merge':>10} "
              f"{'rows/s':>11}")
        for name, fetch, merged, rate in merge_cost(loops, n):
            print(f"{name:<62} {fetch:>8.1f}ms {merged:>8.1f}ms {rate:>11,.0f}")
        qplan.connections.close_all()
        sharding.shutdown()
        qplan.configure(databases={}, routers=[])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
