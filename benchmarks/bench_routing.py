"""The cost a router adds per query: ``get(pk=k)`` on SQLite with and without routers.

Run from the repository root::

    python benchmarks/bench_routing.py

Three SQLite files hold the same 10,000 rows ('primary', 'r1', 'r2'). The same 1,000
primary-key lookups run with no router (``default``), with ``RoundRobin`` over two
replicas, and with ``PrimaryReplica`` (reads on a replica, no pending write); the
table gives the median per lookup and the overhead against no router. Target: the
router adds under 5% to a primary-key lookup.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qplan  # noqa: E402
from qplan import Model, PrimaryReplica, RoundRobin, fields, routing  # noqa: E402

ROWS = 10_000
LOOKUPS = 1_000
RUNS = 15


class Person(Model):
    name = fields.CharField(max_length=40)
    age = fields.IntegerField()

    class Meta:
        db_table = "bench_person"
        key = "benchmarks.bench_routing.Person"


def time_lookups_ns(keys: list[int]) -> float:
    """Nanoseconds per ``get(pk=k)`` over one pass of ``keys``."""
    get = Person.objects.get
    gc.disable()
    start = time.perf_counter_ns()
    for k in keys:
        get(pk=k)
    elapsed = time.perf_counter_ns() - start
    gc.enable()
    return elapsed / len(keys)


def main() -> None:
    folder = tempfile.mkdtemp(prefix="qplan-bench-routing-")
    names = ("default", "r1", "r2")
    qplan.configure(databases={n: f"sqlite:///{folder}/{n}.db" for n in names})
    for n in names:
        qplan.create_tables([Person], using=n)
        with qplan.atomic(using=n):
            Person.objects.using(n).bulk_create(Person(name=f"p{i}", age=i % 90) for i in range(ROWS))
    keys = [(i * 7919) % ROWS + 1 for i in range(LOOKUPS)]
    for k in keys[:50]:  # warm the compile cache and the connections
        Person.objects.get(pk=k)
    setups = [
        ("no router", []),
        ("RoundRobin(['r1', 'r2'])", [RoundRobin(["r1", "r2"])]),
        ("PrimaryReplica('default', ['r1', 'r2'])", [PrimaryReplica("default", ["r1", "r2"])]),
    ]
    samples: dict[str, list[float]] = {label: [] for label, _ in setups}
    for _ in range(RUNS):  # interleaved, so drift in the machine's load hits every setup alike
        for label, routers in setups:
            qplan.configure(routers=routers)
            routing.forget_writes()
            samples[label].append(time_lookups_ns(keys))
    results = [(label, statistics.median(samples[label])) for label, _ in setups]
    base = results[0][1]
    print(f"get(pk=k) on SQLite, {LOOKUPS} lookups x {RUNS} runs, median per lookup")
    print(f"{'routing':<42} {'µs/lookup':>10} {'overhead':>9}")
    for label, ns in results:
        over = (ns - base) / base * 100
        print(f"{label:<42} {ns / 1000:>10.2f} {over:>8.1f}%")
    worst = max(r[1] for r in results[1:])
    verdict = "met" if (worst - base) / base < 0.05 else "MISSED"
    print(f"target: a router adds under 5% to a primary-key lookup: {verdict}")
    qplan.connections.close_all()


if __name__ == "__main__":
    main()
