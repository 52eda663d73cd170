"""prefetch_related: N writers with their novels, qplan against Django 5.2, on one SQLite file.

Run from the repository root (``pip install -e .[bench]`` for Django)::

    python benchmarks/bench_prefetch.py            # N = 10, 100, 1,000 writers
    python benchmarks/bench_prefetch.py --quick    # fewer loops

Both libraries read the SAME file: ``N`` writers, 5 novels each. Timed end to end
(build, run both queries, materialise, fill the caches, then read every writer's
novels): ``list(Writer.objects.prefetch_related('novel_set'))`` and a walk of
each writer's prefetched novels through ``writer.novel_set.all()`` in both. Medians of several runs after a warm-up,
the garbage collector paused inside each run. Both send 2 queries whatever N is.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qplan  # noqa: E402
from qplan import Model, fields  # noqa: E402
from qplan.execution import Engine  # noqa: E402

NOVELS_PER_WRITER = 5
SIZES = (10, 100, 1_000)


class Writer(Model):
    name = fields.CharField(max_length=40)

    class Meta:
        db_table = "bench_writer"
        key = "benchmarks.bench_prefetch.Writer"


class Novel(Model):
    title = fields.CharField(max_length=60)
    pages = fields.IntegerField()
    writer = fields.ForeignKey(Writer, on_delete=fields.CASCADE)

    class Meta:
        db_table = "bench_novel"
        key = "benchmarks.bench_prefetch.Novel"


def fill(n: int) -> None:
    qplan.drop_tables([Novel, Writer], missing_ok=True)
    qplan.create_tables([Writer, Novel])
    with qplan.atomic():
        Writer.objects.bulk_create([Writer(id=i, name=f"writer {i}") for i in range(1, n + 1)])
        Novel.objects.bulk_create([
            Novel(id=k, title=f"novel {k}", pages=k % 500, writer_id=(k - 1) // NOVELS_PER_WRITER + 1)
            for k in range(1, n * NOVELS_PER_WRITER + 1)])


def qplan_walk() -> int:
    count = 0
    for writer in Writer.objects.prefetch_related("novel_set"):
        for _novel in writer.novel_set.all():
            count += 1
    return count


def django_models(path: str) -> tuple[Any, Any]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": path}},
            INSTALLED_APPS=["benchmarks.apps.BenchConfig"], USE_TZ=True, TIME_ZONE="UTC",
            DEBUG=False)
        django.setup()
    from django.db import models

    class DjangoWriter(models.Model):
        name = models.CharField(max_length=40)

        class Meta:
            app_label = "bench"
            db_table = "bench_writer"
            managed = False

    class DjangoNovel(models.Model):
        title = models.CharField(max_length=60)
        pages = models.IntegerField()
        writer = models.ForeignKey(DjangoWriter, on_delete=models.CASCADE, related_name="novel_set")

        class Meta:
            app_label = "bench"
            db_table = "bench_novel"
            managed = False

    return DjangoWriter, DjangoNovel


def django_walk(writer_model: Any) -> Callable[[], int]:
    def walk() -> int:
        count = 0
        for writer in writer_model.objects.prefetch_related("novel_set"):
            for _novel in writer.novel_set.all():
                count += 1
        return count
    return walk


def median_ns(fn: Callable[[], int], runs: int, loops: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        gc.disable()
        start = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter_ns() - start) / loops)
        gc.enable()
    return statistics.median(times)


def count_queries(fn: Callable[[], int]) -> int:
    ran = []
    original = Engine.run

    def run(self: Any, plan: Any, conn: Any) -> Any:
        ran.append(plan)
        return original(self, plan, conn)

    Engine.run = run  # type: ignore[method-assign]
    try:
        fn()
    finally:
        Engine.run = original  # type: ignore[method-assign]
    return len(ran)


def main() -> None:
    quick = "--quick" in sys.argv
    folder = tempfile.mkdtemp(prefix="qplan-bench-prefetch-")
    path = os.path.join(folder, "bench.db")
    qplan.configure(databases={"default": f"sqlite:///{path}"})
    try:
        DjangoWriter, _ = django_models(path)
    except ImportError:
        DjangoWriter = None
    print("| writers (x5 novels) | qplan | Django | Django / qplan | queries (qplan, Django) |")
    print("|---|---|---|---|---|")
    for n in SIZES:
        fill(n)
        qplan.connections.close_all()
        expected = n * NOVELS_PER_WRITER
        assert qplan_walk() == expected
        runs, loops = (3, 1) if quick else (7, max(1, 200 // n))
        ours = median_ns(qplan_walk, runs, loops)
        queries = count_queries(qplan_walk)
        if DjangoWriter is None:
            print(f"| {n:,} | {ours / 1000:,.0f} µs | n/a | n/a | {queries}, n/a |")
            continue
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        walk = django_walk(DjangoWriter)
        assert walk() == expected
        theirs = median_ns(walk, runs, loops)
        with CaptureQueriesContext(connection) as captured:
            walk()
        print(f"| {n:,} | {ours / 1000:,.0f} µs | {theirs / 1000:,.0f} µs | "
              f"{theirs / ours:.1f}x | {queries}, {len(captured.captured_queries)} |")


if __name__ == "__main__":
    main()
