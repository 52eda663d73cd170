"""select_related: a 20-row fetch of novels with and without their writer, qplan beside
Django's ORM and the raw driver, on SQLite and (``--servers``) PostgreSQL and MariaDB.

Run from the repository root (qplan installed; Django from ``pip install -e .[bench]``)::

    python benchmarks/bench_relations.py            # SQLite: prints the table
    python benchmarks/bench_relations.py --quick    # fewer loops, a smoke run
    python benchmarks/bench_relations.py --servers  # also PostgreSQL and MariaDB (started
                                                    # and stopped through tests/servers.py)

Set-up: 1,000 writers and 10,000 novels from ``random.Random(42)``: ``writer`` a nullable
foreign key (as Django's ``null=True``: a LEFT JOIN, one novel in 10 without a writer) and
``agent`` a non-null one (an INNER JOIN, but on MariaDB: see ``INNER_JOINS`` in
backends/mysql.py). Each library fetches
``Novel.objects.filter(pages__gte=100).order_by('id')[10:30]`` as instances, end to end
(build, compile, execute, materialise), plain and with ``select_related('writer')`` or
``select_related('agent')``; the check before timing reads ``novel.writer.name`` of every
row with no database configured (no query may follow). The raw driver runs qplan's SQL
text for each and fetches the tuples (on a server: on qplan's own connection and cursor).
Django runs on the same database (its ``mysql`` backend through PyMySQL's
``install_as_MySQLdb``). Medians of paired runs (``benchmarks.run.Timer``): ratios to the
raw driver's same fetch, and with/without.
Target (issue 12): select_related of one foreign key adds at most 25% to qplan's fetch;
the raw JOIN's own with/without is printed beside it, since it can exceed that alone.
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
VARIANTS = (("writer", "nullable FK"), ("agent", "non-null FK"))
TITLES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB"}
DJANGO_ENGINES = {"sqlite": "django.db.backends.sqlite3",
                  "postgresql": "django.db.backends.postgresql",
                  "mysql": "django.db.backends.mysql"}


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
    agent = fields.ForeignKey(BWriter, related_name="agented")

    class Meta:
        key = "bench.BNovel"
        db_table = "bench_novel"


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 12)))


def rows() -> tuple[list[tuple], list[tuple]]:
    """``(writers, novels)`` as tuples in column order, the same on every database."""
    rng = random.Random(42)
    writers = [(i, _word(rng), rng.randint(20, 90), _word(rng) + "@example.org")
               for i in range(1, WRITERS + 1)]
    novels = [(i, _word(rng), rng.randint(50, 900), rng.randint(5, 60),
               None if i % 10 == 0 else rng.randint(1, WRITERS), rng.randint(1, WRITERS))
              for i in range(1, NOVELS + 1)]
    return writers, novels


def populate() -> None:
    """The tables and rows on qplan's ``default`` database."""
    qplan.create_tables([BWriter, BNovel])
    writers, novels = rows()
    BWriter.objects.bulk_create([BWriter(id=i, name=n, age=a, email=e)
                                 for i, n, a, e in writers], batch_size=2000)
    BNovel.objects.bulk_create([BNovel(id=i, title=t, pages=p, price=c, writer_id=w,
                                       agent_id=g) for i, t, p, c, w, g in novels],
                               batch_size=2000)
    assert BNovel.objects.count() == NOVELS
    conn = qplan.connections["default"]
    for table in ("bench_writer", "bench_novel"):  # fresh statistics: a plan that holds still
        if conn.vendor == "mysql":
            conn.fetchall(f"ANALYZE TABLE {table}")
        else:
            conn.execute(f"ANALYZE {table}")


def explain(vendor: str, execute: Callable[[str, Any], list], sql: str, params: Any) -> str:
    """The server's plan for the joined fetch, in one line (a note under the table)."""
    if vendor == "sqlite":
        return " / ".join(str(r[-1]) for r in execute("EXPLAIN QUERY PLAN " + sql, params))
    found = execute("EXPLAIN " + sql, params)
    if vendor == "postgresql":
        return " → ".join(r[0].strip().removeprefix("->").strip().split("  (cost")[0]
                          for r in found if "(cost" in r[0])
    return " / ".join(f"{r[2]}: {r[3]} on {r[5]} ({r[9]})" for r in found)  # MariaDB's columns


def django_settings(vendor: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Django's DATABASES entry for qplan's ``settings`` of one database."""
    if vendor == "sqlite":
        return {"ENGINE": DJANGO_ENGINES[vendor], "NAME": settings["NAME"]}
    return {"ENGINE": DJANGO_ENGINES[vendor], "NAME": settings["NAME"],
            "HOST": settings["HOST"], "PORT": str(settings["PORT"]),
            "USER": settings["USER"], "PASSWORD": settings["PASSWORD"]}


def django_models(databases: dict[str, dict[str, Any]]) -> Any:
    """Django's spelling of the two models (one alias per vendor); None when not installed."""
    try:
        import django
        from django.conf import settings
    except ImportError:
        return None
    if "mysql" in databases:
        import pymysql
        pymysql.install_as_MySQLdb()
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
                   **databases},
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
        agent = models.ForeignKey(DWriter, on_delete=models.CASCADE, related_name="agented")

        class Meta:
            app_label = "bench"
            db_table = "bench_novel"
            managed = False

    return DNovel


def _names(novels: list, rel: str) -> list:
    return [(n.title, getattr(n, rel).name if getattr(n, rel) is not None else None)
            for n in novels]


def fetches(dnovel: Any, alias: str, rel: str) -> dict[str, Callable[[], list]]:
    """Each library's fetch, plain and with select_related(rel)."""
    q = BNovel.objects
    out: dict[str, Callable[[], list]] = {
        "qplan": lambda: list(q.filter(pages__gte=100).order_by("id")[10:30]),
        "qplan+sr": lambda: list(q.filter(pages__gte=100).select_related(rel)
                                 .order_by("id")[10:30]),
    }
    if dnovel is not None:
        d = dnovel.objects.using(alias)
        out["django"] = lambda: list(d.filter(pages__gte=100).order_by("id")[10:30])
        out["django+sr"] = lambda: list(d.filter(pages__gte=100).select_related(rel)
                                        .order_by("id")[10:30])
    return out


def raw_fetches(execute: Callable[[str, Any], list], rel: str) -> dict[str, Callable[[], list]]:
    """The raw driver running qplan's SQL text for each fetch (``execute(sql, params)``)."""
    plain = BNovel.objects.filter(pages__gte=100).order_by("id")[10:30].compile()
    joined = (BNovel.objects.filter(pages__gte=100).select_related(rel)
              .order_by("id")[10:30].compile())
    return {"raw": lambda: execute(plain.sql, plain.params),
            "raw+sr": lambda: execute(joined.sql, joined.params)}


def check(fns: dict[str, Callable[[], list]], settings: dict[str, Any], rel: str) -> None:
    """Every library returns the same 20 novels and related writers."""
    expect = _names(list(BNovel.objects.filter(pages__gte=100).select_related(rel)
                         .order_by("id")[10:30]), rel)
    assert len(expect) == 20 and (rel != "writer" or any(w is None for _, w in expect))
    for name in ("qplan+sr", "django+sr"):
        if name in fns:
            novels = fns[name]()
            if name == "qplan+sr":  # the writers are there: reading them runs no query
                qplan.connections.close_all()
                qplan.configure(databases={})
            assert _names(novels, rel) == expect, name
            if name == "qplan+sr":
                qplan.configure(databases={"default": settings})
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


def run_vendor(vendor: str, settings: dict[str, Any], dnovel: Any, timer: Timer) -> dict:
    """Both variants on one database qplan's ``default`` points at: ``{rel: results}``."""
    out = {}
    for rel, _ in VARIANTS:
        fns = fetches(dnovel, vendor, rel)
        check(fns, settings, rel)  # closes qplan's connections: the raw one comes after
        if vendor == "sqlite":
            raw = sqlite3.connect(settings["NAME"], check_same_thread=False)

            def execute(sql: str, params: Any) -> list:
                return raw.execute(sql, params).fetchall()
        else:
            cur = qplan.connections["default"].connect().cursor()  # qplan's own connection,
            # one reused cursor, as qplan reuses its cursor

            def execute(sql: str, params: Any) -> list:
                cur.execute(sql, params)
                return cur.fetchall()
        try:
            raws = raw_fetches(execute, rel)
            out[rel] = measure(timer, fns, raws)
            joined = (BNovel.objects.filter(pages__gte=100).select_related(rel)
                      .order_by("id")[10:30].compile())
            out[rel]["plan"] = explain(vendor, execute, joined.sql, joined.params)
            out[rel]["join"] = "INNER JOIN" if "INNER JOIN" in joined.sql else "LEFT JOIN"
        finally:
            if vendor == "sqlite":
                raw.close()
    return out


def table(results: dict[str, dict]) -> list[str]:
    """One markdown table over every database and variant, then the target per row."""
    def us(ns: float) -> str:
        return f"{ns / 1000:.0f} µs" if ns >= 100_000 else f"{ns / 1000:.1f} µs"

    lines = ["| 20 novels | library | plain | + select_related | ratio to raw (plain / sr) "
             "| with / without |", "|---|---|---|---|---|---|"]
    verdicts = []
    for vendor, per in results.items():
        for rel, what in VARIANTS:
            res = per[rel]
            where = f"{TITLES[vendor]}, {rel} ({what}, {res['join']})"
            lines.append(f"| {where} | raw driver | {us(res['raw'])} | {us(res['raw+sr'])} | "
                         f"1.00x / 1.00x | {res['raw sr/plain']:.2f}x |")
            for lib, title in (("qplan", "qplan"), ("django", "Django 5.2")):
                if lib in res:
                    lines.append(f"| {where} | {title} | {us(res[lib])} | {us(res[lib + '+sr'])} "
                                 f"| {res[lib + ' /raw']:.2f}x / {res[lib + '+sr /raw']:.2f}x | "
                                 f"{res[lib + ' sr/plain']:.2f}x |")
            ok = res["qplan sr/plain"] <= TARGET
            raw_over = res["raw sr/plain"] > TARGET
            verdicts.append(f"- {where}: qplan {res['qplan sr/plain']:.2f}x "
                            f"{'met' if ok else 'NOT MET'}; the raw JOIN alone "
                            f"{res['raw sr/plain']:.2f}x"
                            + (" (already over the target)" if raw_over else ""))
    plans = [f"- {TITLES[vendor]}, {rel}: {per[rel]['plan']}"
             for vendor, per in results.items() for rel, _ in VARIANTS]
    return lines + ["", f"Target: qplan with select_related / without <= {TARGET:.2f}x:",
                    *verdicts, "", "The server's plan of the joined fetch:", *plans]


def on_servers(timer: Timer, results: dict[str, dict], sqlite_settings: dict) -> None:
    """Start PostgreSQL and MariaDB (``tests/servers.py``), measure each, ALWAYS stop them."""
    from benchmarks import servers_bench
    servers = servers_bench.load_servers()
    sys.stderr.write("  starting PostgreSQL and MariaDB (tests/servers.py)...\n")
    pg, md = servers.PostgresCluster(replica=False), servers.MariaDBServer()
    try:
        errors = servers.start_all(pg, md)
        settings = {}
        for vendor, server, error in zip(servers_bench.VENDORS, (pg, md), errors):
            if error is not None:
                sys.stderr.write(f"  {vendor} did not start: {error}\n")
                continue
            settings[vendor] = servers_bench.settings_for(vendor, server)
        dnovel = django_models({v: django_settings(v, s) for v, s in
                                {"sqlite": sqlite_settings, **settings}.items()})
        for vendor in ("sqlite", *settings):
            cfg = sqlite_settings if vendor == "sqlite" else settings[vendor]
            qplan.configure(databases={"default": cfg})
            try:
                if vendor != "sqlite":
                    sys.stderr.write(f"  loading rows into {TITLES[vendor]}...\n")
                    populate()
                results[vendor] = run_vendor(vendor, cfg, dnovel, timer)
            finally:
                qplan.connections.close_all()
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})
        servers.close_all(pg, md)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the loops, 3 runs")
    parser.add_argument("--repeat", type=int, default=11, help="runs per measure (median taken)")
    parser.add_argument("--servers", action="store_true",
                        help="also PostgreSQL and MariaDB (started and stopped here)")
    args = parser.parse_args(argv)
    timer = Timer(3 if args.quick else args.repeat, 0.1 if args.quick else 1.0)
    folder = tempfile.mkdtemp(prefix="qplan-bench-rel-")
    sqlite_settings = {"ENGINE": "sqlite", "NAME": os.path.join(folder, "bench.db")}
    results: dict[str, dict] = {}
    try:
        qplan.configure(databases={"default": sqlite_settings})
        populate()
        qplan.connections.close_all()
        if args.servers:
            on_servers(timer, results, sqlite_settings)
        else:
            dnovel = django_models({"sqlite": django_settings("sqlite", sqlite_settings)})
            qplan.configure(databases={"default": sqlite_settings})
            results["sqlite"] = run_vendor("sqlite", sqlite_settings, dnovel, timer)
        print("\n".join(table(results)))
        return 0
    finally:
        qplan.connections.close_all()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
