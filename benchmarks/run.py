"""qplan against Django's ORM, SQLAlchemy Core, peewee and raw sqlite3, in one process.

Run from the repository root (qplan installed, e.g. ``pip install -e .[bench]``)::

    python -m benchmarks              # or: python benchmarks/run.py
    python -m benchmarks --quick      # fewer loops, a smoke run of the harness itself
    python -m benchmarks --profile    # also cProfile qplan's fetch and get(pk) paths
    python -m benchmarks --no-write   # print only; do not rewrite benchmarks/RESULTS.md
    python -m benchmarks --servers    # also PostgreSQL and MariaDB: qplan against the raw driver

Every library reads the SAME SQLite file, made in a temporary folder: one indexed
10,000-row table (``id``, ``name``, ``age``, ``is_active``, ``created``; indexes on
``age`` and ``created``) filled deterministically from ``random.Random(42)``. Names
are lowercase, so every library's LIKE returns the same rows (checked before timing).

Measured, as medians over several runs of ``time.perf_counter_ns`` loops after a
warm-up, with the garbage collector paused inside each run (as ``timeit`` does):

1. build of ``filter(age__gte=30, is_active=True).exclude(name__startswith='a')
   .order_by('-created', 'id')[10:30]`` (or each peer's spelling of it);
2. compile: first compile (qplan with ``qplan.compile_cache.clear()`` before each
   call, on a fresh plan) and cached compile (fresh-built but equal plans, prebuilt,
   timing only ``.compile()``: no per-object cache is credited);
3. pickled size and dumps/loads time;
4. end-to-end fetch of the 20 rows (build + compile + execute + materialise), as
   tuples and as model instances, against raw ``sqlite3`` executing qplan's SQL text
   on its own connection to the same file;
5. 1,000 primary-key lookups ``get(pk=k)`` against raw ``SELECT ... WHERE id = ?``.

The peers are optional (``pip install -e .[bench]``): each is imported lazily and
reported as "n/a (not installed)" when absent. The table is printed and written to
``benchmarks/RESULTS.md``; the whole run takes well under two minutes.

With ``--servers`` (benchmarks/servers_bench.py) a second table follows: throwaway PostgreSQL
and MariaDB servers are started through ``tests/servers.py`` (and always stopped), the same
table and rows are loaded into each, and the 20-row fetch (tuples and instances) and the
1,000 ``get(pk=k)`` are timed through qplan against psycopg2 / PyMySQL running qplan's
compiled SQL on the same driver connection, as ratios (issue 3's target: at most 1.3x).
This adds about a minute. Without ``--servers`` RESULTS.md holds the SQLite table only.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as _dt
import gc
import io
import os
import pickle
import platform
import pstats
import random
import shutil
import sqlite3
import statistics
import string
import sys
import tempfile
import time
from typing import Any, Callable, Iterable

if __package__ in (None, ""):  # python benchmarks/run.py: make ``benchmarks`` importable too
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import qplan
from qplan import fields

ROWS = 10_000
TABLE = "bench_person"
COLUMNS = ("id", "name", "age", "is_active", "created")
LOOKUPS = 1_000
QUERY = ("filter(age__gte=30, is_active=True).exclude(name__startswith='a')"
         ".order_by('-created', 'id')[10:30]")
RUN_BUDGET_NS = 100_000_000  # at most ~0.1 s per timed run: slow peers loop fewer times
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")

PEERS = ("qplan", "django", "sqlalchemy", "peewee", "raw")
TITLES = {"qplan": "qplan", "django": "Django", "sqlalchemy": "SQLAlchemy Core",
          "peewee": "peewee", "raw": "raw sqlite3"}
NOT_INSTALLED = "n/a (not installed)"


class Person(qplan.Model):
    name = fields.CharField(max_length=50)
    age = fields.IntegerField(db_index=True)
    is_active = fields.BooleanField(default=True)
    created = fields.DateTimeField(db_index=True)

    class Meta:
        key = "bench.Person"
        db_table = TABLE


# --- timing ----------------------------------------------------------------------------------------


class Timer:
    """Median per-call nanoseconds over ``repeat`` runs, after a warm-up run."""

    def __init__(self, repeat: int, scale: float) -> None:
        self.repeat = repeat
        self.scale = scale  # multiplies every loop count (--quick: 0.1)

    def n(self, number: int) -> int:
        return max(int(number * self.scale), 3)

    def fit(self, fn: Callable[[], Any], number: int) -> int:
        """``number`` scaled, or fewer if a run of ``fn`` would exceed its time budget."""
        fn()
        once = _loop(fn, 1)
        return max(min(self.n(number), int(RUN_BUDGET_NS * self.scale / max(once, 1))), 3)

    def calls(self, fn: Callable[[], Any], number: int) -> float:
        """``fn()`` called ``number`` times per run (fewer if a run would exceed its budget)."""
        number = self.fit(fn, number)
        return self._runs(lambda: _loop(fn, number), number)

    def paired(self, fn: Callable[[], Any], base: Callable[[], Any], number: int) -> tuple[float, float]:
        """``fn`` and ``base`` in alternating runs: (median ns per ``fn()``, median ratio to base).

        Pairing each run with a baseline run just before it keeps the ratio honest when the
        machine's load changes during the benchmark.
        """
        n_fn, n_base = self.fit(fn, number), self.fit(base, number)
        times, ratios = [], []
        for _ in range(self.repeat):
            t_base = _quiet(lambda: _loop(base, n_base)) / n_base
            t_fn = _quiet(lambda: _loop(fn, n_fn)) / n_fn
            times.append(t_fn)
            ratios.append(t_fn / t_base)
        return statistics.median(times), statistics.median(ratios)

    def each(self, items: list, fn: Callable[[Any], Any]) -> float:
        """``fn(item)`` for every item of a prebuilt list, per run (the items are reused)."""
        return self._runs(lambda: _loop_over(items, fn), len(items))

    def _runs(self, run: Callable[[], int], number: int) -> float:
        run()  # warm-up: caches filled, code paths imported
        return statistics.median(_quiet(run) / number for _ in range(self.repeat))


def _quiet(run: Callable[[], int]) -> int:
    """One timed run with the cyclic garbage collector paused (as ``timeit`` does)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return run()
    finally:
        if enabled:
            gc.enable()


def _loop(fn: Callable[[], Any], number: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return time.perf_counter_ns() - t0


def _loop_over(items: list, fn: Callable[[Any], Any]) -> int:
    t0 = time.perf_counter_ns()
    for item in items:
        fn(item)
    return time.perf_counter_ns() - t0


def first_compile_ns(timer: Timer, make: Callable[[], Any], number: int) -> float:
    """qplan's cold compile: a fresh plan and an empty compile cache for every call."""
    plans = [make() for _ in range(timer.n(number))]
    samples = []
    for plan in plans:
        qplan.compile_cache.clear()
        t0 = time.perf_counter_ns()
        plan.compile()
        samples.append(time.perf_counter_ns() - t0)
    qplan.compile_cache.clear()
    return statistics.median(samples)


# --- the database ----------------------------------------------------------------------------------


def make_rows() -> list[tuple]:
    rng = random.Random(42)
    base = _dt.datetime(2020, 1, 1)
    rows = []
    for pk in range(1, ROWS + 1):
        name = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))
        created = base + _dt.timedelta(seconds=rng.randrange(3 * 365 * 86400),
                                       microseconds=rng.randrange(1, 1_000_000))
        # qplan's SQLite storage of a DateTimeField: fixed-width UTC text, microseconds always
        rows.append((pk, name, rng.randint(18, 80), int(rng.random() < 0.7),
                     created.strftime("%Y-%m-%d %H:%M:%S.%f")))
    return rows


def setup_qplan(path: str) -> None:
    qplan.configure(databases={"default": {"ENGINE": "sqlite", "NAME": path}})
    qplan.create_tables([Person])
    raw = sqlite3.connect(path)
    with raw:
        raw.executemany(f'INSERT INTO "{TABLE}" ({", ".join(COLUMNS)}) VALUES (?, ?, ?, ?, ?)',
                        make_rows())
    # No ANALYZE: with statistics SQLite picks the age index and sorts ~8,000 rows (2 ms
    # instead of ~50 µs); without, it walks the created index and stops after 30 rows.
    raw.close()


# --- each library's spelling of the benchmark --------------------------------------------------------


class Peer:
    """One library: how it builds, compiles, pickles, fetches and looks up (None: n/a)."""

    name = ""
    build: Callable[[], Any] | None = None
    compile_first: Callable[[Any], Any] | None = None  # takes a built query
    compile_cached: Callable[[Any], Any] | None = None
    cached_note = ""
    fetch_tuples: Callable[[], list] | None = None
    fetch_models: Callable[[], list] | None = None
    get: Callable[[int], Any] | None = None
    pickled: Callable[[Any], Any] | None = None  # what is pickled for a built query
    sql: str = ""
    raw_sql: tuple[str, tuple] | None = None  # its SQL for the tuples fetch, in qmark style
    keep: Any = None  # engines and connections held open for the run
    error = ""


def qplan_peer() -> Peer:
    p = Peer()
    p.name = "qplan"
    objects = Person.objects

    def build() -> Any:
        return (objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
                .order_by("-created", "id")[10:30])

    p.build = build
    p.compile_first = lambda plan: plan.compile()
    p.compile_cached = lambda plan: plan.compile()
    p.fetch_tuples = lambda: list(
        objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
        .order_by("-created", "id").values_list(*COLUMNS)[10:30])
    p.fetch_models = lambda: list(build())
    p.get = lambda k: objects.get(pk=k)
    p.pickled = lambda plan: plan
    p.sql = build().compile().sql
    sql, params = (objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
                   .order_by("-created", "id").values_list(*COLUMNS)[10:30].compile())
    p.raw_sql = (sql, params)
    return p


def django_model(path: str) -> Any:
    """Django configured on the SQLite file ``path`` and the benchmark table's model, made once;
    None when Django is not installed."""
    model = globals().get("DjangoPerson")
    if model is not None:
        return model
    try:
        import django
        from django.conf import settings
    except ImportError:
        return None
    if not settings.configured:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": path}},
            INSTALLED_APPS=["benchmarks.apps.BenchConfig"], USE_TZ=True, TIME_ZONE="UTC",
            DEBUG=False,
        )
        django.setup()
    from django.db import models

    class DjangoPerson(models.Model):
        name = models.CharField(max_length=50)
        age = models.IntegerField(db_index=True)
        is_active = models.BooleanField(default=True)
        created = models.DateTimeField(db_index=True)

        class Meta:
            app_label = "bench"
            db_table = TABLE
            managed = False

    # pickle finds classes by module and qualified name: publish the model as a module global
    DjangoPerson.__qualname__ = "DjangoPerson"
    globals()["DjangoPerson"] = DjangoPerson
    return DjangoPerson


def django_peer(path: str) -> Peer:
    p = Peer()
    p.name = "django"
    DjangoPerson = django_model(path)
    if DjangoPerson is None:
        p.error = NOT_INSTALLED
        return p
    objects = DjangoPerson.objects

    def build() -> Any:
        return (objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
                .order_by("-created", "id")[10:30])

    p.build = build
    p.compile_first = p.compile_cached = lambda qs: qs.query.sql_with_params()
    p.cached_note = "no compile cache: same as first"
    p.fetch_tuples = lambda: list(
        objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
        .order_by("-created", "id").values_list(*COLUMNS)[10:30])
    p.fetch_models = lambda: list(build())
    p.get = lambda k: objects.get(pk=k)
    p.pickled = lambda qs: qs.query  # pickling the QuerySet itself would run the query
    p.sql = str(build().query)
    sql, params = (objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
                   .order_by("-created", "id").values_list(*COLUMNS)[10:30]
                   .query.sql_with_params())
    p.raw_sql = (sql.replace("%s", "?"), tuple(params))
    return p


def sqlalchemy_peer(path: str) -> Peer:
    p = Peer()
    p.name = "sqlalchemy"
    try:
        import sqlalchemy as sa
    except ImportError:
        p.error = NOT_INSTALLED
        return p
    md = sa.MetaData()
    t = sa.Table(
        TABLE, md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50)),
        sa.Column("age", sa.Integer, index=True),
        sa.Column("is_active", sa.Boolean),
        sa.Column("created", sa.DateTime, index=True),
    )
    engine = sa.create_engine(f"sqlite:///{path}")
    conn = engine.connect()
    dialect = engine.dialect
    c = t.c

    def build() -> Any:
        return (sa.select(t).where(c.age >= 30, c.is_active == sa.true(), ~c.name.startswith("a"))
                .order_by(c.created.desc(), c.id).limit(20).offset(10))

    p.build = build
    p.compile_first = lambda stmt: stmt.compile(dialect=dialect)
    p.cached_note = "its compiled cache is used only when executing (see fetch)"
    p.fetch_tuples = lambda: conn.execute(build()).all()
    p.get = lambda k: conn.execute(sa.select(t).where(c.id == k)).one()
    p.pickled = lambda stmt: stmt
    compiled = build().compile(dialect=dialect)
    p.sql = str(compiled)
    p.raw_sql = (p.sql, tuple(compiled.params[k] for k in compiled.positiontup or ()))
    p.keep = (engine, conn)
    return p


def peewee_peer(path: str) -> Peer:
    p = Peer()
    p.name = "peewee"
    try:
        import peewee as pw
    except ImportError:
        p.error = NOT_INSTALLED
        return p
    db = pw.SqliteDatabase(path)

    class PeeweePerson(pw.Model):
        name = pw.CharField(max_length=50)
        age = pw.IntegerField(index=True)
        is_active = pw.BooleanField(default=True)
        created = pw.DateTimeField(index=True)

        class Meta:
            database = db
            table_name = TABLE

    M = PeeweePerson

    def build() -> Any:
        return (M.select().where((M.age >= 30) & (M.is_active == True)  # noqa: E712
                                 & ~(M.name.startswith("a")))
                .order_by(M.created.desc(), M.id).limit(20).offset(10))

    db.connect()
    p.build = build
    p.compile_first = p.compile_cached = lambda q: q.sql()
    p.cached_note = "no compile cache: same as first"
    p.fetch_tuples = lambda: list(build().tuples())
    p.fetch_models = lambda: list(build())
    p.get = lambda k: M.get_by_id(k)
    p.pickled = lambda q: q
    p.sql, params = build().sql()
    p.raw_sql = (p.sql, tuple(params))
    p.keep = db
    return p


# --- measuring ------------------------------------------------------------------------------------------


def _id(row: Any) -> Any:
    if isinstance(row, (tuple, list)) or hasattr(row, "_fields"):
        return row[0]
    return row.id


def check_same_rows(peers: dict[str, Peer], raw_rows: list) -> None:
    """Every library must return the same 20 rows in the same order before it is timed."""
    want = [r[0] for r in raw_rows]
    assert len(want) == 20, f"raw sqlite3 returned {len(want)} rows"
    for peer in peers.values():
        for what, fn in (("tuples", peer.fetch_tuples), ("models", peer.fetch_models)):
            if fn is not None:
                got = [_id(r) for r in fn()]
                if got != want:
                    raise SystemExit(f"{peer.name} {what}: rows differ from raw sqlite3:\n{got}\n{want}")
        if peer.get is not None:
            for k in (1, 5000, ROWS):
                got = peer.get(k)
                assert _id(got) == k, (peer.name, k, got)


def keys() -> list[int]:
    """1,000 primary keys spread over the whole table, in a scattered order."""
    return [1 + (i * 7919) % ROWS for i in range(LOOKUPS)]


def measure(peers: dict[str, Peer], raw: sqlite3.Connection, sql: str, params: tuple,
            timer: Timer) -> dict[str, dict[str, Any]]:
    """Every metric for every library: ``results[metric][peer]`` (ns, bytes or a note)."""
    res: dict[str, dict[str, Any]] = {m: {} for m in (
        "build", "compile_first", "compile_cached", "pickle_size", "pickle_dumps",
        "pickle_loads", "qplan_dumps", "qplan_loads", "fetch_tuples", "fetch_models",
        "fetch_prebuilt", "own_sql", "get")}
    get_sql = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE id = ?"
    pks = keys()

    # raw sqlite3: the baseline for fetch and get
    def raw_fetch() -> list:
        return raw.execute(sql, params).fetchall()

    def raw_gets() -> list:
        return [raw.execute(get_sql, (k,)).fetchone() for k in pks]

    res["fetch_tuples"]["raw"] = timer.calls(raw_fetch, 3000)
    for metric in ("fetch_tuples", "fetch_models", "fetch_prebuilt", "own_sql"):
        res[metric]["raw"] = res["fetch_tuples"]["raw"]
        res[metric]["raw:x"] = 1.0
    res["get"]["raw"] = timer.calls(raw_gets, 10) / LOOKUPS
    res["get"]["raw:x"] = 1.0

    for name, peer in peers.items():
        if peer.error:
            for metric in res:
                res[metric][name] = peer.error
            continue
        sys.stderr.write(f"  measuring {TITLES[name]}...\n")
        res["build"][name] = timer.calls(peer.build, 3000)
        built = [peer.build() for _ in range(timer.n(1000))]

        # compile
        if name == "qplan":
            res["compile_first"][name] = first_compile_ns(timer, peer.build, 300)
            peer.build().compile()  # the shape is cached from here on
        else:
            res["compile_first"][name] = timer.each(built[: timer.n(500)], peer.compile_first)
        if peer.compile_cached is not None:
            res["compile_cached"][name] = timer.each(built, peer.compile_cached)
        else:
            res["compile_cached"][name] = "n/a"
        if peer.cached_note:
            res["compile_cached"][name + ":note"] = peer.cached_note

        # pickle
        obj = peer.pickled(peer.build())
        try:
            data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - the peer's statements may not pickle
            note = f"n/a (does not pickle: {type(exc).__name__})"
            for metric in ("pickle_size", "pickle_dumps", "pickle_loads"):
                res[metric][name] = note
        else:
            res["pickle_size"][name] = len(data)
            res["pickle_dumps"][name] = timer.calls(
                lambda: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 3000)
            res["pickle_loads"][name] = timer.calls(lambda: pickle.loads(data), 3000)
        if name == "qplan":
            payload = qplan.dumps(obj)
            res["qplan_dumps"][name] = timer.calls(lambda: qplan.dumps(obj), 3000)
            res["qplan_loads"][name] = timer.calls(lambda: qplan.loads(payload), 3000)
            res["qplan_dumps"]["size"] = len(payload)

        # fetch
        fetches: list[tuple[str, Callable[[], Any] | None]] = [
            ("fetch_tuples", peer.fetch_tuples), ("fetch_models", peer.fetch_models)]
        if peer.raw_sql is not None:
            own, own_params = peer.raw_sql
            fetches.append(("own_sql", lambda: raw.execute(own, own_params).fetchall()))
        if name == "qplan":
            plan = (Person.objects.filter(age__gte=30, is_active=True)
                    .exclude(name__startswith="a").order_by("-created", "id")
                    .values_list(*COLUMNS)[10:30])
            fetches.append(("fetch_prebuilt", lambda: list(plan)))
        for metric, fn in fetches:
            if fn is None:
                res[metric][name] = "n/a (Core returns rows)" if name == "sqlalchemy" else "n/a"
                continue
            res[metric][name], res[metric][name + ":x"] = timer.paired(fn, raw_fetch, 1000)

        # get(pk)
        get = peer.get
        ns, ratio = timer.paired(lambda: [get(k) for k in pks], raw_gets, 5)
        res["get"][name], res["get"][name + ":x"] = ns / LOOKUPS, ratio
    return res


# --- reporting --------------------------------------------------------------------------------------------


def us(ns: Any) -> str:
    if isinstance(ns, str):
        return ns
    return f"{ns / 1000:,.1f} µs" if ns < 100_000_000 else f"{ns / 1e6:,.0f} ms"


def ratio_text(ns: Any, ratio: float | None) -> str:
    if isinstance(ns, str) or ratio is None:
        return us(ns)
    return f"{us(ns)} ({ratio:.1f}x)"


def table(res: dict[str, dict[str, Any]]) -> list[str]:
    def cells(metric: str, fmt: Callable[[Any], str], names: Iterable[str] = PEERS) -> list[str]:
        return [fmt(res[metric][n]) if n in res[metric] else "—" for n in names]

    def ratios(metric: str) -> list[str]:
        row = res[metric]
        return [ratio_text(row[n], row.get(n + ":x")) if n in row else "—" for n in PEERS]
    rows = [
        ("1. build the query", cells("build", us)),
        ("2. first compile (empty cache)", cells("compile_first", us)),
        ("2. cached compile (equal plan, new object)", cells("compile_cached", us)),
        ("3. pickled size", cells("pickle_size", lambda v: v if isinstance(v, str) else f"{v:,} B")),
        ("3. pickle.dumps", cells("pickle_dumps", us)),
        ("3. pickle.loads", cells("pickle_loads", us)),
        ("3. qplan.dumps / qplan.loads (restricted)",
         [f"{us(res['qplan_dumps']['qplan'])} / {us(res['qplan_loads']['qplan'])}"
          if "qplan" in res["qplan_dumps"] and not isinstance(res["qplan_dumps"]["qplan"], str)
          else "—"] + ["—"] * 4),
        ("4. fetch 20 rows as tuples, end to end (x raw)",
         ratios("fetch_tuples")),
        ("4. fetch 20 rows as instances, end to end (x raw)",
         ratios("fetch_models")),
        ("4. fetch 20 tuples, plan prebuilt (x raw)",
         ratios("fetch_prebuilt")),
        ("4. that library's SQL text on raw sqlite3 (x raw)",
         ratios("own_sql")),
        ("5. get(pk=k), per lookup over 1,000 keys (x raw)",
         ratios("get")),
    ]
    header = "| measure | " + " | ".join(TITLES[n] for n in PEERS) + " |"
    lines = [header, "|" + "---|" * (len(PEERS) + 1)]
    for label, values in rows:
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return lines


def targets(res: dict[str, dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """(target, met?, the numbers) for each target of the issue; None when a peer is missing."""
    def num(metric: str, name: str) -> float | None:
        v = res[metric].get(name)
        return None if v is None or isinstance(v, str) else float(v)

    out: list[tuple[str, bool | None, str]] = []

    def check(label: str, value: float | None, limit: float | None, how: str) -> None:
        if value is None or limit is None:
            out.append((label, None, "the peer is not installed"))
        else:
            out.append((label, value <= limit, how.format(v=value, l=limit)))

    q, dj, pw = num("build", "qplan"), num("build", "django"), num("build", "peewee")
    check("build >= 3x faster than Django", q, dj / 3 if dj else None,
          "qplan {v:.0f} ns vs Django/3 = {l:.0f} ns" + (f" ({dj / q:.1f}x faster)" if dj and q else ""))
    check("build no slower than peewee", q, pw, "qplan {v:.0f} ns vs peewee {l:.0f} ns")
    qc, djc = num("compile_cached", "qplan"), num("compile_cached", "django")
    check("cached compile >= 10x faster than Django sql_with_params()", qc,
          djc / 10 if djc else None,
          "qplan {v:.0f} ns vs Django/10 = {l:.0f} ns" + (f" ({djc / qc:.0f}x faster)" if djc and qc else ""))
    qs, djs = num("pickle_size", "qplan"), num("pickle_size", "django")
    check("pickled size <= 1/5 of Django's qs.query", qs, djs / 5 if djs else None,
          "qplan {v:.0f} B vs Django/5 = {l:.0f} B")
    for metric, label, limit in (("fetch_tuples", "fetch values_list rows <= 1.5x raw", 1.5),
                                  ("fetch_models", "fetch instances <= 2x raw", 2.0),
                                  ("get", "get(pk) <= 3x raw", 3.0)):
        ratio = res[metric].get("qplan:x")
        check(label, ratio, limit,
              f"qplan {us(res[metric]['qplan'])} = {{v:.2f}}x raw (runs paired with raw sqlite3)")
    prebuilt = res["fetch_prebuilt"].get("qplan:x")
    if prebuilt is not None:  # not a target of the issue: the same fetch when the plan is reused
        check("(for reference, not a target) fetch values_list rows <= 1.5x raw, plan prebuilt",
              prebuilt, 1.5, f"qplan {us(res['fetch_prebuilt']['qplan'])} = {{v:.2f}}x raw")
    return out


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # pragma: no cover - not on every platform
        return "?"


LOAD_AT_START = _load()


def versions() -> str:
    found = [f"Python {platform.python_version()}", f"SQLite {sqlite3.sqlite_version}",
             f"qplan {qplan.__version__}"]
    for module, label in (("django", "Django"), ("sqlalchemy", "SQLAlchemy"), ("peewee", "peewee"),
                          ("sqlglot", "sqlglot")):
        try:
            mod = __import__(module)
            found.append(f"{label} {getattr(mod, '__version__', '?')}")
        except ImportError:
            found.append(f"{label} not installed")
    return ", ".join(found)


def notes(res: dict[str, dict[str, Any]], peers: dict[str, Peer]) -> str:
    out = [f"{TITLES[k.split(':')[0]]} cached compile: {v}"
           for k, v in res["compile_cached"].items() if k.endswith(":note")]
    out.append(f"qplan.dumps payload: {res['qplan_dumps'].get('size', '?')} B (pickle.dumps plus "
               "whatever qplan.payloads adds)")
    out.append("qplan's rows decode `is_active` to bool and `created` to an aware UTC datetime "
               "(Django, SQLAlchemy and peewee convert too); raw sqlite3 returns int and str")
    django = res["own_sql"].get("django:x")
    if django is not None and django > 5:
        out.append("Django inlines LIMIT 20 OFFSET 10 into its SQL; with literal bounds SQLite's "
                   "planner picks the index on `age` and sorts ~8,000 rows instead of walking the "
                   "index on `created` (row \"that library's SQL text on raw sqlite3\"), so most of "
                   "Django's fetch time here is its SQL, not its ORM")
    return "; ".join(out) + "."


def report(res: dict[str, dict[str, Any]], peers: dict[str, Peer], params: tuple,
           timer: Timer, seconds: float, command: str = "python -m benchmarks") -> str:
    lines = [
        "# qplan benchmarks",
        "",
        f"`{command}` on {os.cpu_count()} CPUs, {platform.machine()}, {versions()}.",
        f"One SQLite file, {ROWS:,} rows, indexes on `age` and `created`; medians of {timer.repeat} "
        f"runs after a warm-up (loop scale {timer.scale:g}); whole run {seconds:.0f} s; load average "
        f"{LOAD_AT_START} at the start, {_load()} at the end (other work on the machine adds noise).",
        "",
        f"Query: `{QUERY}`. \"End to end\" builds the query in every iteration, then compiles, "
        "executes and materialises; raw sqlite3 runs qplan's SQL text with fetchall() on its own "
        "connection (its instances row repeats the tuples time). Ratios (x raw) are medians of "
        "per-run ratios, each run paired with a raw sqlite3 run just before it, so a change in the "
        "machine's load during the benchmark does not skew them.",
        "",
        *table(res),
        "",
        "Notes: " + notes(res, peers),
        "",
        "## Targets",
        "",
    ]
    for label, met, how in targets(res):
        if label.startswith("(for reference"):
            mark = "reference: " + ("within" if met else "above")
        else:
            mark = "n/a" if met is None else ("met" if met else "MISSED")
        lines.append(f"- **{mark}** — {label}: {how}")
    lines += ["", "## The SQL each library sends", ""]
    for name, peer in peers.items():
        if peer.sql:
            lines.append(f"- {TITLES[name]}: `{' '.join(peer.sql.split())}`")
    lines.append(f"- raw sqlite3: qplan's text, params `{params!r}`")
    return "\n".join(lines) + "\n"


# --- profiling -----------------------------------------------------------------------------------------------


def profile_calls(title: str, fn: Callable[[], Any], number: int, top: int) -> str:
    """cProfile of ``number`` calls of ``fn``: the ``top`` functions by own time."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(number):
        fn()
    prof.disable()
    out = io.StringIO()
    out.write(f"\n===== {title} ({number} calls) =====\n")
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def profile_qplan(top: int) -> str:
    """cProfile of qplan's hot paths: end-to-end fetch (both kinds) and get(pk)."""
    peer = qplan_peer()
    pks = keys()
    out = io.StringIO()
    for label, fn, number in (("fetch tuples", peer.fetch_tuples, 3000),
                              ("fetch instances", peer.fetch_models, 3000),
                              ("get(pk) x1000", lambda: [peer.get(k) for k in pks], 5),
                              ("build", peer.build, 20000)):
        out.write(profile_calls(label, fn, number, top))
    return out.getvalue()


# --- main ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the loops, 3 runs")
    parser.add_argument("--repeat", type=int, default=11, help="runs per measure (median taken)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--profile", action="store_true", help="cProfile qplan's hot paths too")
    parser.add_argument("--servers", action="store_true",
                        help="also benchmark qplan against psycopg2 and PyMySQL on throwaway "
                             "PostgreSQL and MariaDB servers (tests/servers.py)")
    args = parser.parse_args(argv)
    timer = Timer(3 if args.quick else args.repeat, 0.1 if args.quick else 1.0)

    started = time.perf_counter()
    folder = tempfile.mkdtemp(prefix="qplan-bench-")
    try:
        path = os.path.join(folder, "bench.sqlite3")
        setup_qplan(path)
        peers = {"qplan": qplan_peer(), "django": django_peer(path),
                 "sqlalchemy": sqlalchemy_peer(path), "peewee": peewee_peer(path)}
        sql, params = Person.objects.filter(age__gte=30, is_active=True).exclude(
            name__startswith="a").order_by("-created", "id").values_list(*COLUMNS)[10:30].compile()
        raw = sqlite3.connect(path)
        raw_rows = raw.execute(sql, params).fetchall()
        check_same_rows(peers, raw_rows)
        res = measure(peers, raw, sql, params, timer)
        text = report(res, peers, params, timer, time.perf_counter() - started,
                      "python -m benchmarks --servers" if args.servers else "python -m benchmarks")
        server_profiles = ""
        if args.servers:
            if __package__ in (None, ""):
                from benchmarks import servers_bench
            else:
                from . import servers_bench
            qplan.connections.close_all()
            section, server_profiles = servers_bench.run_servers(
                sys.modules[__name__], timer, [r[0] for r in raw_rows], 18 if args.profile else 0)
            qplan.configure(databases={"default": {"ENGINE": "sqlite", "NAME": path}})
            text += "\n" + section
        print(text)
        if not args.no_write:
            with open(RESULTS, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"(written to {os.path.relpath(RESULTS)})")
        if args.profile:
            print(profile_qplan(18))
            if server_profiles:
                print(server_profiles)
        raw.close()
    finally:
        qplan.connections.close_all()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
