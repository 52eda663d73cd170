"""The PostgreSQL and MariaDB part of the benchmark (``python -m benchmarks --servers``).

What it measures is qplan's per-query overhead over the raw driver, as a ratio: for each of
PostgreSQL (psycopg2) and MariaDB (PyMySQL), on a throwaway server started through
``tests/servers.py`` (imported by path) and always stopped when the part ends:

1. the 20-row fetch of the SQLite part's query, end to end (build + compile + execute +
   materialise), as ``values_list`` tuples and as model instances, against the raw driver
   running qplan's compiled SQL text with its params on the SAME connection
   (``qplan.connections['default'].raw``) and on one reused cursor, as qplan does;
2. 1,000 primary-key lookups ``get(pk=k)`` against the raw driver running the SQL qplan
   compiles for them (``SELECT ... WHERE id = %s LIMIT %s``) on that connection.

The table and its rows are the SQLite part's (``run.Person``, 10,000 rows from ``make_rows``),
created with ``qplan.create_tables`` (indexes on ``age`` and ``created``) and
``bulk_create``, then ANALYZEd so that the server's plan does not change mid-run.
Ratios are medians of per-run ratios, each qplan run paired with a raw run just before it.

Two rows are for reference, not targets: the fetch with the plan built once, and a 20-row fetch
by primary-key range, which the server answers cheaply (the fetch above is server-bound on
both servers, so its ratio hides qplan's cost). The notes give each server's plan for the
fetch and, on PostgreSQL, what qplan's explicit ``NULLS FIRST/LAST`` costs it.
With ``--profile`` qplan's fetch and get(pk) paths are also cProfiled on each server.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import io
import os
import statistics
import sys
import time
from typing import Any, Callable

import qplan

# The harness module (benchmarks/run.py) is passed in as ``h`` rather than imported: run as
# ``python benchmarks/run.py`` it is ``__main__``, and importing it again would define its
# model a second time.

VENDORS = ("postgresql", "mysql")
TITLES = {"postgresql": "PostgreSQL", "mysql": "MariaDB"}
DRIVERS = {"postgresql": "psycopg2", "mysql": "PyMySQL"}
TARGET = 1.3  # issue 3: qplan at most 1.3x the raw driver for the 20-row fetch and get(pk)
SERVERS_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "tests", "servers.py")
METRICS = ("fetch_tuples", "fetch_models", "fetch_prebuilt", "fetch_range", "get")
LABELS = {
    "fetch_tuples": "fetch 20 rows as tuples, end to end",
    "fetch_models": "fetch 20 rows as instances, end to end",
    "fetch_prebuilt": "(reference) fetch 20 tuples, plan prebuilt",
    "fetch_range": "(reference) fetch 20 tuples by pk range, end to end",
    "get": "get(pk=k), per lookup over 1,000 keys",
}
TARGETED = ("fetch_tuples", "fetch_models", "get")


def load_servers() -> Any:
    """``tests/servers.py`` as a module (it is not a package module: import it by path)."""
    name = "qplan_bench_test_servers"
    if name in sys.modules:
        return sys.modules[name]
    folder = os.path.dirname(SERVERS_PY)
    if folder not in sys.path:  # its own imports (``processes``) sit beside it
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, SERVERS_PY)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {SERVERS_PY}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# What differs between the servers, one row each: the endpoint qplan connects to, how the
# server refreshes its statistics (and whether that answers with rows), how to read its
# EXPLAIN, and how to shorten its version.
def _pg_explain(cur: Any) -> str:
    nodes = [r[0].strip().removeprefix("->").strip().split("  (cost")[0]
             for r in cur.fetchall() if "(cost" in r[0]]
    return " → ".join(nodes)


def _mariadb_explain(cur: Any) -> str:
    names = [d[0] for d in cur.description]
    row = dict(zip(names, cur.fetchone()))
    cur.fetchall()
    return f"{row['type']} access on index {row['key']} ({row['Extra']})"


SERVERS: dict[str, dict[str, Any]] = {
    "postgresql": {"endpoint": lambda server: server.primary, "analyze": "ANALYZE {}",
                   "analyze_rows": False, "explain": _pg_explain, "driver_module": "psycopg2",
                   "version": lambda v: " ".join(v.split()[:2])},
    "mysql": {"endpoint": lambda server: server, "analyze": "ANALYZE TABLE {}",
              "analyze_rows": True, "explain": _mariadb_explain, "driver_module": "pymysql",
              "version": lambda v: "MariaDB " + v.split("-")[0]},
}


def settings_for(vendor: str, server: Any) -> dict[str, Any]:
    """qplan settings for the ``qplan_bench`` database (as tests/conftest.py spells them)."""
    server.create_database("qplan_bench")
    e = SERVERS[vendor]["endpoint"](server)
    # One connection for the run (no pool): qplan and the raw driver share it, so the ratio is
    # qplan's own cost. A pool adds a borrow and a return per statement (a few µs).
    return {"ENGINE": vendor, "HOST": e.host, "PORT": e.port, "USER": e.user,
            "PASSWORD": e.password, "NAME": "qplan_bench", "POOL": None}


def populate(h: Any, vendor: str) -> None:
    """The SQLite part's table and rows, through qplan, then ANALYZE."""
    Person = h.Person
    qplan.create_tables([Person])
    objs = []
    for pk, name, age, active, created in h.make_rows():
        when = _dt.datetime.fromisoformat(created).replace(tzinfo=_dt.timezone.utc)
        objs.append(Person(id=pk, name=name, age=age, is_active=bool(active), created=when))
    Person.objects.bulk_create(objs, batch_size=2000)
    conn = qplan.connections["default"]
    analyze = SERVERS[vendor]["analyze"].format(h.TABLE)
    (conn.fetchall if SERVERS[vendor]["analyze_rows"] else conn.execute)(analyze)
    assert Person.objects.count() == h.ROWS


def fetch_plan(h: Any) -> Any:
    return (h.Person.objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
            .order_by("-created", "id").values_list(*h.COLUMNS)[10:30])


def measure_vendor(h: Any, vendor: str, timer: Any, want_ids: list[int]) -> dict[str, Any]:
    """Every metric on the server ``default`` points at: ``{metric: (qplan ns, raw ns, ratio)}``."""
    objects, columns = h.Person.objects, h.COLUMNS
    sql, params = fetch_plan(h).compile()
    conn = qplan.connections["default"]
    raw = conn.connect()  # the driver connection qplan itself runs on
    cur = raw.cursor()  # reused, as qplan reuses its cursor

    pks = h.keys()
    get_sql = objects.filter(pk=pks[0])[:21].compile().sql  # what get() runs (it adds [:21])
    get_params = []
    for k in pks:
        compiled = objects.filter(pk=k)[:21].compile()
        assert compiled.sql == get_sql, (compiled.sql, get_sql)
        get_params.append(tuple(compiled.params))

    def raw_fetch() -> list:
        cur.execute(sql, params)
        return cur.fetchall()

    def raw_gets() -> None:
        execute, fetchone = cur.execute, cur.fetchone
        for p in get_params:
            execute(get_sql, p)
            fetchone()

    def qplan_tuples() -> list:
        return list(objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
                    .order_by("-created", "id").values_list(*columns)[10:30])

    def qplan_models() -> list:
        return list(objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
                    .order_by("-created", "id")[10:30])

    prebuilt = fetch_plan(h)

    def qplan_prebuilt() -> list:
        return list(prebuilt)

    # A 20-row fetch the server answers from the primary key index: its cost is mostly the
    # driver's, so this ratio shows qplan's overhead at its most visible (not a target).
    range_sql, range_params = (objects.filter(id__gt=5000, id__lte=5020)
                               .values_list(*columns).compile())

    def raw_range() -> list:
        cur.execute(range_sql, range_params)
        return cur.fetchall()

    def qplan_range() -> list:
        return list(objects.filter(id__gt=5000, id__lte=5020).values_list(*columns))

    def qplan_gets() -> None:
        get = objects.get
        for k in pks:
            get(pk=k)

    # The same rows as the SQLite part, through qplan and raw, on this very connection.
    for label, rows in (("raw", raw_fetch()), ("tuples", qplan_tuples()),
                        ("instances", [(m.id,) for m in qplan_models()])):
        got = [r[0] for r in rows]
        if got != want_ids:
            raise SystemExit(f"{TITLES[vendor]} {label}: rows differ from SQLite's:\n"
                             f"{got}\n{want_ids}")
    tuples = qplan_tuples()
    assert [t[:3] for t in tuples] == [r[:3] for r in raw_fetch()]
    assert sorted(r[0] for r in qplan_range()) == list(range(5001, 5021))
    assert sorted(r[0] for r in raw_range()) == list(range(5001, 5021))
    for k in (1, 5000, h.ROWS):
        assert objects.get(pk=k).id == k
        cur.execute(get_sql, tuple(objects.filter(pk=k)[:21].compile().params))
        assert cur.fetchone()[0] == k
    assert raw is conn.raw, "qplan reconnected during the checks"

    out: dict[str, Any] = {"sql": sql, "params": tuple(params), "get_sql": get_sql,
                           "get_params": get_params[0]}
    out["range_sql"] = range_sql
    out["plan"] = explain(vendor, cur, sql, params)
    if "NULLS" in sql:
        # What the explicit NULL order costs the server (a note, not part of any ratio).
        plain = sql.replace(" NULLS LAST", "").replace(" NULLS FIRST", "")
        out["plain_plan"] = explain(vendor, cur, plain, params)

        def raw_plain() -> list:
            cur.execute(plain, params)
            return cur.fetchall()

        assert [r[0] for r in raw_plain()] == want_ids
        out["plain_ns"], _, out["plain_x"] = paired(h, timer, raw_plain, raw_fetch, 1000)
    sys.stderr.write(f"  measuring qplan on {TITLES[vendor]}...\n")
    for metric, fn, base, number in (
            ("fetch_tuples", qplan_tuples, raw_fetch, 1000),
            ("fetch_models", qplan_models, raw_fetch, 1000),
            ("fetch_prebuilt", qplan_prebuilt, raw_fetch, 1000),
            ("fetch_range", qplan_range, raw_range, 1000),
            ("get", qplan_gets, raw_gets, 5)):
        ns, raw_ns, ratio = paired(h, timer, fn, base, number)
        per = h.LOOKUPS if metric == "get" else 1
        out[metric] = (ns / per, raw_ns / per, ratio)
    assert raw is conn.raw, "qplan reconnected during the timing"
    cur.close()
    return out


def explain(vendor: str, cur: Any, sql: str, params: Any) -> str:
    """The server's plan for ``sql`` in one line."""
    cur.execute("EXPLAIN " + sql, params)
    return SERVERS[vendor]["explain"](cur)


def paired(h: Any, timer: Any, fn: Callable[[], Any], base: Callable[[], Any],
           number: int) -> tuple[float, float, float]:
    """As ``Timer.paired`` (alternating runs, base first), also returning the base's median:
    (median ns per ``fn()``, median ns per ``base()``, median of the per-run ratios)."""
    n_fn, n_base = timer.fit(fn, number), timer.fit(base, number)
    times, bases, ratios = [], [], []
    for _ in range(timer.repeat):
        t_base = h._quiet(lambda: h._loop(base, n_base)) / n_base
        t_fn = h._quiet(lambda: h._loop(fn, n_fn)) / n_fn
        times.append(t_fn)
        bases.append(t_base)
        ratios.append(t_fn / t_base)
    return statistics.median(times), statistics.median(bases), statistics.median(ratios)


def profile_vendor(h: Any, vendor: str, top: int) -> str:
    """cProfile of qplan's fetch (both kinds) and get(pk) paths on this server."""
    objects = h.Person.objects
    pks = h.keys()
    text = io.StringIO()
    for label, fn, number in (
            ("fetch tuples", lambda: list(fetch_plan(h)), 2000),
            ("fetch instances", lambda: list(
                objects.filter(age__gte=30, is_active=True).exclude(name__startswith="a")
                .order_by("-created", "id")[10:30]), 2000),
            ("get(pk) x1000", lambda: [objects.get(pk=k) for k in pks], 3)):
        text.write(h.profile_calls(f"{TITLES[vendor]}: {label}", fn, number, top))
    return text.getvalue()


def server_version(vendor: str) -> str:
    version = str(qplan.connections["default"].fetchall("SELECT version()")[0][0])
    return SERVERS[vendor]["version"](version)


def driver_version(vendor: str) -> str:
    module = __import__(SERVERS[vendor]["driver_module"])
    return f"{DRIVERS[vendor]} {module.__version__.split()[0]}"


def measure_servers(h: Any, timer: Any, want_ids: list[int], profile: int = 0) -> dict[str, Any]:
    """Start both servers, measure each, ALWAYS stop them: ``{vendor: results or a note}``.

    Leaves qplan configured with no databases.
    """
    servers = load_servers()
    started = time.perf_counter()
    sys.stderr.write("  starting PostgreSQL and MariaDB (tests/servers.py)...\n")
    pg, md = servers.PostgresCluster(replica=False), servers.MariaDBServer()
    results: dict[str, Any] = {"profiles": ""}
    try:
        errors = servers.start_all(pg, md)
        results["start_s"] = time.perf_counter() - started
        for vendor, server, error in zip(VENDORS, (pg, md), errors):
            if error is not None:
                first = (str(error).splitlines() or [""])[0]
                results[vendor] = f"n/a (did not start: {type(error).__name__}: {first})"
                continue
            qplan.configure(databases={"default": settings_for(vendor, server)})
            try:
                t0 = time.perf_counter()
                sys.stderr.write(f"  loading {h.ROWS:,} rows into {TITLES[vendor]}...\n")
                populate(h, vendor)
                res = measure_vendor(h, vendor, timer, want_ids)
                res["versions"] = f"{server_version(vendor)}, {driver_version(vendor)}"
                res["seconds"] = time.perf_counter() - t0
                results[vendor] = res
                if profile:
                    results["profiles"] += profile_vendor(h, vendor, profile)
            finally:
                qplan.connections.close_all()
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})
        servers.close_all(pg, md)
    results["seconds"] = time.perf_counter() - started
    return results


# --- reporting ----------------------------------------------------------------------------------


def code(sql: str) -> str:
    """``sql`` as a markdown code span (MariaDB's backticks need a double-backtick fence)."""
    sql = " ".join(sql.split())
    return f"`` {sql} ``" if "`" in sql else f"`{sql}`"


def us(ns: float) -> str:
    return f"{ns / 1000:,.1f} µs"


def table(results: dict[str, Any]) -> list[str]:
    header = ["measure"]
    for vendor in VENDORS:
        t, d = TITLES[vendor], DRIVERS[vendor]
        header += [f"{t}: qplan", f"{t}: raw {d}", f"{t}: x raw", f"{t}: overhead"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric in METRICS:
        cells = [LABELS[metric]]
        for vendor in VENDORS:
            res = results.get(vendor)
            if not isinstance(res, dict):
                cells += [str(res)] + ["—"] * 3
                continue
            ns, raw_ns, ratio = res[metric]
            cells += [us(ns), us(raw_ns), f"{ratio:.2f}x",
                      f"{(ratio - 1) * raw_ns / 1000:+,.1f} µs"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def targets(results: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    out: list[tuple[str, bool | None, str]] = []
    for vendor in VENDORS:
        res = results.get(vendor)
        for metric in TARGETED:
            label = f"{TITLES[vendor]}: {LABELS[metric]} <= {TARGET}x raw {DRIVERS[vendor]}"
            if not isinstance(res, dict):
                out.append((label, None, str(res)))
                continue
            ns, raw_ns, ratio = res[metric]
            out.append((label, ratio <= TARGET,
                        f"qplan {us(ns)} = {ratio:.2f}x raw (raw {us(raw_ns)}; "
                        f"{(ratio - 1) * raw_ns / 1000:+,.1f} µs per query)"))
    return out


def report(h: Any, results: dict[str, Any], timer: Any) -> str:
    versions = "; ".join(f"{TITLES[v]}: {results[v]['versions']}" for v in VENDORS
                         if isinstance(results.get(v), dict))
    lines = [
        "## PostgreSQL and MariaDB: qplan against the raw driver",
        "",
        f"`python -m benchmarks --servers`: throwaway servers from `tests/servers.py` on loopback "
        f"TCP ({versions}); started in {results.get('start_s', 0):.0f} s, whole server part "
        f"{results['seconds']:.0f} s, stopped at its end. The same table and {h.ROWS:,} rows as "
        "above (created by `qplan.create_tables` and `bulk_create`, then ANALYZEd). The raw "
        "driver runs qplan's compiled SQL with its params on the SAME driver connection "
        "(`qplan.connections['default'].raw`) and one reused cursor (qplan reuses its cursor "
        "too): the ratio is qplan's whole per-query overhead (build, compile-cache lookup, "
        "routing, error mapping, decoding, materialising) over the driver's own cost "
        "(client-side parameter interpolation, the round trip, the server's work, the "
        "driver's row parsing). For the instances row the baseline is the same raw tuple "
        f"fetch. Medians of {timer.repeat} runs; x raw is the median of per-run ratios, each "
        "qplan run paired with a raw run just before it; overhead = (x raw - 1) x raw time.",
        "",
        *table(results),
        "",
        "### Targets (issue 3)",
        "",
    ]
    for label, met, how in targets(results):
        mark = "n/a" if met is None else ("met" if met else "MISSED")
        lines.append(f"- **{mark}** — {label}: {how}")
    lines += ["", "Notes: " + notes(results), ""]
    lines += ["", "### The SQL each server runs (qplan's text, also the raw driver's)", ""]
    for vendor in VENDORS:
        res = results.get(vendor)
        if isinstance(res, dict):
            lines.append(f"- {TITLES[vendor]} fetch: {code(res['sql'])}, "
                         f"params `{tuple(res['params'])!r}`")
            lines.append(f"- {TITLES[vendor]} get(pk): {code(res['get_sql'])}, "
                         f"params like `{tuple(res['get_params'])!r}`")
            lines.append(f"- {TITLES[vendor]} pk range (reference): {code(res['range_sql'])}")
    return "\n".join(lines) + "\n"


def notes(results: dict[str, Any]) -> str:
    out = []
    for vendor in VENDORS:
        res = results.get(vendor)
        if not isinstance(res, dict):
            continue
        out.append(f"{TITLES[vendor]}'s plan for the fetch: {res['plan']}")
        if "plain_ns" in res:
            out.append(
                "qplan spells its NULL order out on PostgreSQL (`DESC NULLS LAST`, `ASC NULLS "
                "FIRST`: NULLs sort smallest, as on the other databases), an order a default "
                "btree index (ASC NULLS LAST, or DESC NULLS FIRST read backward) cannot give, so "
                "the server reads and sorts every matching row although both columns are NOT "
                "NULL; the same SQL without the NULLS clauses on raw psycopg2 plans as "
                f"{res['plain_plan']} and takes {us(res['plain_ns'])} ({res['plain_x']:.2f}x the "
                "raw time above)")
    out.append(
        "the fetch query is server-bound on both servers, so its ratios stay near 1 whatever "
        "qplan costs; the pk-range row (a 20-row fetch the server answers from the primary key) "
        "shows the same overhead against a cheap query. The raw time of a round trip depends on "
        "the machine's state (on an idle 2-CPU machine a psycopg2 get(pk) took ~140-160 µs, "
        "~80 µs while other work kept the CPUs awake), so the ratios move with it more than "
        "the overhead column does")
    return "; ".join(out) + "."


def run_servers(h: Any, timer: Any, want_ids: list[int], profile: int = 0) -> tuple[str, str]:
    """The markdown section and the profiles text (empty without ``profile``).

    ``h`` is the harness module (benchmarks/run.py); ``want_ids`` the ids of the 20 rows the
    SQLite part fetched, which each server must return too.
    """
    results = measure_servers(h, timer, want_ids, profile)
    return report(h, results, timer), results["profiles"]


__all__ = ["run_servers", "measure_servers", "report", "load_servers"]
