"""select_related: a 20-row fetch of novels with and without their writer, qplan beside
Django's ORM and the raw driver, on the same SQLite file.

Run from the repository root (qplan installed; Django from ``pip install -e .[bench]``)::

    python benchmarks/bench_relations.py            # prints the table
    python benchmarks/bench_relations.py --quick    # fewer loops, a smoke run

Set-up: one SQLite file in a temporary folder with 1,000 writers and 10,000 novels
(``writer`` a nullable foreign key, as Django's ``null=True``: a LEFT JOIN, one novel in
10 without a writer), filled from ``random.Random(42)``. Each library fetches
``Novel.objects.filter(pages__gte=100).order_by('id')[10:30]`` as instances, end to end
(build, compile, execute, materialise), plain and with ``select_related('writer')``;
the check before timing reads ``novel.writer.name`` of every row with no database
configured (no query may follow). The raw
driver runs qplan's SQL text for each and fetches the tuples. Medians of paired runs
(``benchmarks.run.Timer``): ratios to the raw driver's same fetch, and with/without.
Target (issue 12): select_related of one foreign key adds at most 25% to qplan's fetch.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import string
import sys
import tempfile
from typing import Any, Callable

if __package__ in (None, ""):  # python benchmarks/bench_relations.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qplan
from qplan import fields

from benchmarks.run import Timer

WRITERS, NOVELS = 1_000, 10_000
TARGET = 1.25


class BWriter(qplan.Model):
    name = fields.CharField(max_length=50)
    age = fields.IntegerField()
    email = fields.CharField(max_length=80)

    class Meta:
        key = "bench.BWriter"
        db_table = "bench_writer"


class BNovel(qplan.Model):
    title = fields.CharField(max_length=100)
    pages = fields.IntegerField()
    price = fields.IntegerField()
    writer = fields.ForeignKey(BWriter, null=True)

    class Meta:
        key = "bench.BNovel"
        db_table = "bench_novel"


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 12)))


PATH: list[str] = []


def setup(path: str) -> None:
    PATH[:] = [path]
    qplan.configure(databases={"default": {"ENGINE": "sqlite", "NAME": path}})
    qplan.create_tables([BWriter, BNovel])
    rng = random.Random(42)
    raw = sqlite3.connect(path)
    with raw:
        raw.executemany("INSERT INTO bench_writer (id, name, age, email) VALUES (?, ?, ?, ?)",
                        [(i, _word(rng), rng.randint(20, 90), _word(rng) + "@example.org")
                         for i in range(1, WRITERS + 1)])
        raw.executemany(
            "INSERT INTO bench_novel (id, title, pages, price, writer_id) VALUES (?, ?, ?, ?, ?)",
            [(i, _word(rng), rng.randint(50, 900), rng.randint(5, 60),
              None if i % 10 == 0 else rng.randint(1, WRITERS)) for i in range(1, NOVELS + 1)])
    raw.close()


def django_models(path: str) -> Any:
    """Django's spelling of the two models on the same file; None when not installed."""
    try:
        import django
        from django.conf import settings
    except ImportError:
        return None
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": path}},
        INSTALLED_APPS=["benchmarks.apps.BenchConfig"], USE_TZ=True, TIME_ZONE="UTC",
        DEBUG=False)
    django.setup()
    from django.db import models

    class DWriter(models.Model):
        name = models.CharField(max_length=50)
        age = models.IntegerField()
        email = models.CharField(max_length=80)

        class Meta:
            app_label = "bench"
            db_table = "bench_writer"
            managed = False

    class DNovel(models.Model):
        title = models.CharField(max_length=100)
        pages = models.IntegerField()
        price = models.IntegerField()
        writer = models.ForeignKey(DWriter, null=True, on_delete=models.CASCADE)

        class Meta:
            app_label = "bench"
            db_table = "bench_novel"
            managed = False

    return DNovel


def _names(novels: list) -> list:
    return [(n.title, n.writer.name if n.writer is not None else None) for n in novels]


def fetches(dnovel: Any) -> dict[str, Callable[[], list]]:
    """Each library's fetch, plain and with select_related (reading the writers)."""
    q = BNovel.objects
    out: dict[str, Callable[[], list]] = {
        "qplan": lambda: list(q.filter(pages__gte=100).order_by("id")[10:30]),
        "qplan+sr": lambda: list(q.filter(pages__gte=100).select_related("writer")
                                 .order_by("id")[10:30]),
    }
    if dnovel is not None:
        d = dnovel.objects
        out["django"] = lambda: list(d.filter(pages__gte=100).order_by("id")[10:30])
        out["django+sr"] = lambda: list(d.filter(pages__gte=100).select_related("writer")
                                        .order_by("id")[10:30])
    return out


def raw_fetches(path: str) -> tuple[sqlite3.Connection, dict[str, Callable[[], list]]]:
    """The raw driver running qplan's SQL text for each fetch, on its own connection."""
    conn = sqlite3.connect(path, check_same_thread=False)
    plain = BNovel.objects.filter(pages__gte=100).order_by("id")[10:30].compile()
    joined = (BNovel.objects.filter(pages__gte=100).select_related("writer")
              .order_by("id")[10:30].compile())
    return conn, {
        "raw": lambda: conn.execute(plain.sql, plain.params).fetchall(),
        "raw+sr": lambda: conn.execute(joined.sql, joined.params).fetchall(),
    }


def check(fns: dict[str, Callable[[], list]]) -> None:
    """Every library returns the same 20 novels and writers."""
    expect = _names(list(BNovel.objects.filter(pages__gte=100).select_related("writer")
                         .order_by("id")[10:30]))
    assert len(expect) == 20 and any(w is None for _, w in expect)
    for name in ("qplan+sr", "django+sr"):
        if name in fns:
            novels = fns[name]()
            if name == "qplan+sr":  # the writers are there: reading them runs no query
                qplan.connections.close_all()
                qplan.configure(databases={})
            assert _names(novels) == expect, name
            if name == "qplan+sr":
                qplan.configure(databases={"default": {"ENGINE": "sqlite", "NAME": PATH[0]}})
    for name in ("qplan", "django"):
        if name in fns:
            assert [n.title for n in fns[name]()] == [t for t, _ in expect], name


def measure(timer: Timer, fns: dict[str, Callable[[], list]], raws: dict[str, Callable]) -> dict:
    """µs per fetch, the ratio to the raw driver's same SQL, and with/without."""
    res: dict[str, Any] = {}
    res["raw"] = timer.calls(raws["raw"], 2000)
    res["raw+sr"], res["raw sr/plain"] = timer.paired(raws["raw+sr"], raws["raw"], 2000)
    for lib in ("qplan", "django"):
        if lib not in fns:
            continue
        res[lib], res[lib + " /raw"] = timer.paired(fns[lib], raws["raw"], 1000)
        res[lib + "+sr"], res[lib + "+sr /raw"] = timer.paired(fns[lib + "+sr"], raws["raw+sr"],
                                                               1000)
        _, res[lib + " sr/plain"] = timer.paired(fns[lib + "+sr"], fns[lib], 1000)
    return res


def table(res: dict[str, Any]) -> list[str]:
    def us(ns: float) -> str:
        return f"{ns / 1000:.1f} µs"

    lines = ["| 20 novels (SQLite) | plain | ratio to raw | + select_related('writer') | "
             "ratio to raw | with / without |", "|---|---|---|---|---|---|"]
    lines.append(f"| raw sqlite3 | {us(res['raw'])} | 1.00x | {us(res['raw+sr'])} | 1.00x | "
                 f"{res['raw sr/plain']:.2f}x |")
    for lib, title in (("qplan", "qplan"), ("django", "Django 5.2")):
        if lib in res:
            lines.append(f"| {title} | {us(res[lib])} | {res[lib + ' /raw']:.2f}x | "
                         f"{us(res[lib + '+sr'])} | {res[lib + '+sr /raw']:.2f}x | "
                         f"{res[lib + ' sr/plain']:.2f}x |")
    ok = res["qplan sr/plain"] <= TARGET
    lines.append("")
    lines.append(f"Target: qplan with select_related / without <= {TARGET:.2f}x: "
                 f"{res['qplan sr/plain']:.2f}x {'met' if ok else 'NOT MET'} (the raw driver "
                 f"running the same two statements: {res['raw sr/plain']:.2f}x)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the loops, 3 runs")
    parser.add_argument("--repeat", type=int, default=11, help="runs per measure (median taken)")
    args = parser.parse_args(argv)
    timer = Timer(3 if args.quick else args.repeat, 0.1 if args.quick else 1.0)
    folder = tempfile.mkdtemp(prefix="qplan-bench-rel-")
    path = os.path.join(folder, "bench.db")
    try:
        setup(path)
        fns = fetches(django_models(path))
        conn, raws = raw_fetches(path)
        check(fns)
        res = measure(timer, fns, raws)
        conn.close()
        print("\n".join(table(res)))
        return 0 if res["qplan sr/plain"] <= TARGET else 1
    finally:
        qplan.connections.close_all()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
