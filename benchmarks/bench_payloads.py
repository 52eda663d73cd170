"""Plans as payloads: ``qplan.dumps`` / ``qplan.loads`` with and without signing, the JSON
form, and plain ``pickle`` of a plan, against plain ``pickle`` of a Django ``qs.query``.

Run from the repository root (Django optional: ``pip install -e .[bench]``)::

    python benchmarks/bench_payloads.py [--quick]

The query is the benchmark suite's: ``filter(age__gte=30, is_active=True)
.exclude(name__startswith='a').order_by('-created', 'id')[10:30]``. Each row is the
median of several runs of a tight loop (garbage collector paused), in microseconds per
call, with the payload's size. Nothing touches a database. "First time": a payload no
process has loaded before is checked in full (signature, opcode scan, budgets, every
record replayed through the API, compiled for SQLite); "seen before": the same bytes
again, answered by ``qplan.payloads.loaded`` with the plan checked the first time.
"""

from __future__ import annotations

import gc
import os
import pickle
import statistics
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qplan  # noqa: E402
from qplan.payloads import loaded  # noqa: E402
from benchmarks.run import Person, django_model  # noqa: E402  (the suite's models)

KEY = b"benchmark signing key, 32 bytes!"


def qplan_plan() -> qplan.Plan:
    return (Person.objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
            .order_by("-created", "id")[10:30])


def django_query() -> Any:
    """The same query's ``qs.query`` in Django, or None when Django is not installed."""
    model = django_model(":memory:")
    if model is None:
        return None
    qs = (model.objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
          .order_by("-created", "id")[10:30])
    return qs.query


def median_us(fn: Callable[[], Any], loops: int, runs: int) -> float:
    for _ in range(min(loops, 200)):
        fn()
    times = []
    for _ in range(runs):
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for _ in range(loops):
                fn()
            times.append((time.perf_counter_ns() - start) / loops / 1000)
        finally:
            gc.enable()
    return statistics.median(times)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    loops, runs = (200, 3) if quick else (3000, 7)
    plan = qplan_plan()
    signed, unsigned = qplan.dumps(plan, key=KEY), qplan.dumps(plan)
    bare = pickle.dumps(plan, protocol=4)
    text = plan.to_json()
    signed_text = plan.to_json(KEY)
    assert qplan.loads(signed, key=KEY) == plan == qplan.loads(unsigned) == qplan.loads(bare)
    assert qplan.from_json(text) == plan == qplan.from_json(signed_text, key=KEY)

    def first(load: Callable[[], Any]) -> Callable[[], Any]:
        """A load that finds no plan loaded before: the full check every time."""
        def run() -> Any:
            loaded.clear()
            return load()
        return run

    rows: list[tuple[str, float, int]] = [
        ("qplan.dumps(plan)", median_us(lambda: qplan.dumps(plan), loops, runs), len(unsigned)),
        ("qplan.dumps(plan, key=...)", median_us(lambda: qplan.dumps(plan, key=KEY), loops, runs), len(signed)),
        ("qplan.loads(payload), first time", median_us(first(lambda: qplan.loads(unsigned)), loops, runs),
         len(unsigned)),
        ("qplan.loads(payload, key=...), first time",
         median_us(first(lambda: qplan.loads(signed, key=KEY)), loops, runs), len(signed)),
        ("qplan.loads(pickle.dumps(plan)), first time", median_us(first(lambda: qplan.loads(bare)), loops, runs),
         len(bare)),
        ("qplan.loads(payload), seen before", median_us(lambda: qplan.loads(unsigned), loops, runs), len(unsigned)),
        ("qplan.loads(payload, key=...), seen before",
         median_us(lambda: qplan.loads(signed, key=KEY), loops, runs), len(signed)),
        ("plan.to_json()", median_us(plan.to_json, loops, runs), len(text.encode())),
        ("qplan.from_json(text), first time", median_us(first(lambda: qplan.from_json(text)), loops, runs),
         len(text.encode())),
        ("qplan.from_json(text, key=...), first time",
         median_us(first(lambda: qplan.from_json(signed_text, key=KEY)), loops, runs), len(signed_text.encode())),
        ("pickle.dumps(plan)  [unchecked]", median_us(lambda: pickle.dumps(plan, protocol=4), loops, runs), len(bare)),
        ("pickle.loads(...)   [unchecked]", median_us(lambda: pickle.loads(bare), loops, runs), len(bare)),
    ]
    query = django_query()
    if query is not None:
        data = pickle.dumps(query)
        assert str(pickle.loads(data)) == str(query)
        rows += [
            ("Django pickle.dumps(qs.query)", median_us(lambda: pickle.dumps(query), loops, runs), len(data)),
            ("Django pickle.loads(...)", median_us(lambda: pickle.loads(data), loops, runs), len(data)),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"{'operation':<{width}}  {'us/call':>8}  {'bytes':>6}")
    for name, us, size in rows:
        print(f"{name:<{width}}  {us:>8.1f}  {size:>6}")
    if query is None:
        print("Django: n/a (not installed)")
    else:
        by = {name: us for name, us, _ in rows}
        django = by["Django pickle.loads(...)"]
        print(f"\nsigned loads vs Django's unchecked pickle.loads(qs.query): "
              f"{by['qplan.loads(payload, key=...), first time'] / django:.2f}x the time the first "
              f"time, {by['qplan.loads(payload, key=...), seen before'] / django:.2f}x seen before, "
              f"{len(signed) / len(pickle.dumps(query)):.2f}x the bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
