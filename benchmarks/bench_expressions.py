"""Cold compile per node: issue 13's expressions against the nodes plans had before them.

Run from the repository root::

    python benchmarks/bench_expressions.py          # prints the table
    python benchmarks/bench_expressions.py --quick  # fewer samples

Each row is a plan shape compiled cold (an empty compile cache before every compile, a
fresh plan each time) for SQLite, PostgreSQL and MariaDB, offline. Its cost per node is
(its compile time - the root plan's) / (its record nodes - the root plan's), where a node is
any tuple in the plan's shape (a leaf, an expression, a function call, a ``When``...), so
plans of different sizes compare. Target (issue 13): a shape using the new expressions costs
no more per node than the shapes of before (lookups, ``F`` arithmetic, aggregates).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable

if __package__ in (None, ""):  # python benchmarks/bench_expressions.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qplan
from qplan import (Case, Count, Exists, F, OuterRef, Q, Subquery, Sum, Value, When, fields,
                   functions as fn)

DIALECTS = ("sqlite", "postgresql", "mysql")


class EWriter(qplan.Model):
    name = fields.CharField(max_length=50)
    age = fields.IntegerField()

    class Meta:
        db_table = "bench_e_writer"


class ENovel(qplan.Model):
    title = fields.CharField(max_length=100)
    pages = fields.IntegerField()
    rating = fields.FloatField(null=True)
    published = fields.DateField(null=True)
    writer = fields.ForeignKey(EWriter, null=True)

    class Meta:
        db_table = "bench_e_novel"


def before() -> dict[str, Callable[[], Any]]:
    """Shapes made of the nodes qplan had before issue 13."""
    n = ENovel.objects
    return {
        "lookups: 6 filters, Q with or and not": lambda: n.filter(
            Q(pages__gt=1) | ~Q(title__startswith="a"), rating__lt=2.5, pages__lte=900,
            title__icontains="x", published__isnull=False),
        "F arithmetic annotations": lambda: n.annotate(
            a=F("pages") * 2 + 1, b=(F("rating") - F("pages")) / 3, c=F("pages") % 7),
        "grouped aggregates": lambda: n.values("writer").annotate(
            s=Sum("pages"), c=Count("id")).filter(s__gt=10).order_by("-s"),
        "join + order": lambda: n.filter(writer__name__contains="a", writer__age__gte=3)
            .order_by("writer__name", "-pages"),
    }


def after() -> dict[str, Callable[[], Any]]:
    """Shapes built of issue 13's expressions."""
    n = ENovel.objects
    inner = ENovel.objects.filter(writer=OuterRef("writer"), pages__gt=OuterRef("pages"))
    return {
        "functions: Lower/Concat/Coalesce/Round": lambda: n.annotate(
            a=fn.Lower("title"), b=fn.Concat("title", Value("-"), fn.Upper("title")),
            c=fn.Coalesce("rating", Value(0.0)), d=fn.Round("rating", 1)),
        "Case/When": lambda: n.annotate(
            band=Case(When(pages__lt=100, then=Value(1)), When(pages__lt=300, then=Value(2)),
                      default=Value(3))).order_by("band"),
        "date transforms + Trunc": lambda: n.filter(published__year__gte=2000,
                                                    published__month=3)
            .annotate(m=fn.TruncMonth("published")),
        "Exists / Subquery": lambda: n.filter(Exists(inner)).annotate(
            top=Subquery(inner.order_by("-pages").values("pages")[:1])),
        "aggregate filter= / default=": lambda: n.values("writer").annotate(
            big=Count("id", filter=Q(pages__gt=300)), s=Sum("pages", default=0)),
        "ordering expressions": lambda: n.order_by(F("rating").desc(nulls_last=True),
                                                   fn.Lower("title").asc()),
    }


def nodes(plan: Any) -> int:
    """The tuples in the plan's shape: records, conditions, expressions, calls."""
    count, stack = 0, [plan.shape()[0]]
    while stack:
        node = stack.pop()
        if type(node) is tuple:
            count += 1
            stack.extend(node)
    return count


def cold_ns(make: Callable[[], Any], samples: int) -> float:
    """Median nanoseconds of one cold compile for every dialect (fresh plan, empty cache)."""
    times = []
    for _ in range(samples):
        plan = make()
        qplan.compile_cache.clear()
        t0 = time.perf_counter_ns()
        for dialect in DIALECTS:
            plan.compile(dialect)
        times.append((time.perf_counter_ns() - t0) / len(DIALECTS))
    qplan.compile_cache.clear()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args(argv)
    samples = 15 if args.quick else 101
    base_make = lambda: ENovel.objects.all()  # noqa: E731
    for make in (base_make, *before().values(), *after().values()):
        cold_ns(make, 5)  # warm imports and sqlglot's own caches
    base_ns, base_nodes = cold_ns(base_make, samples), nodes(base_make())
    rows, per = [], {}
    for group, shapes in (("before", before()), ("issue 13", after())):
        for name, make in shapes.items():
            ns, count = cold_ns(make, samples), nodes(make())
            per_node = (ns - base_ns) / max(count - base_nodes, 1) / 1000
            per.setdefault(group, []).append(per_node)
            rows.append(f"| {group} | {name} | {count - base_nodes} | {ns / 1000:.0f} µs | "
                        f"{per_node:.1f} µs |")
    print(f"Cold compile, mean of {', '.join(DIALECTS)}; root plan {base_ns / 1000:.0f} µs")
    print("| shapes | plan | nodes | cold compile | per node |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    old, new = max(per["before"]), max(per["issue 13"])
    median_old, median_new = statistics.median(per["before"]), statistics.median(per["issue 13"])
    print(f"\nper node: before {median_old:.1f} µs median ({old:.1f} max), issue 13 "
          f"{median_new:.1f} µs median ({new:.1f} max): target "
          f"{'met' if median_new <= median_old else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
