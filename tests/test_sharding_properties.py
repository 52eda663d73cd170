"""Differential properties of sharding: hypothesis generates rows and plans; the same plan on a
sharded set-up (three SQLite files; two PostgreSQL databases) returns exactly what it returns on
one database holding every row.

Tables are created once per module; each example deletes the rows, inserts its own in bulk
(through the sharded ``bulk_create``) and runs a few plans on both set-ups.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qplan
from qplan import Avg, Count, F, Max, Min, Q, Sum, fields, routing, sharding
from qplan.sharding import Sharded

D = decimal.Decimal


class PItem(qplan.Model):
    tenant_id = fields.IntegerField()
    grp = fields.CharField(max_length=5, null=True)
    qty = fields.IntegerField(null=True)
    price = fields.DecimalField(max_digits=8, decimal_places=2)
    score = fields.FloatField(null=True)
    flag = fields.BooleanField()
    day = fields.DateField(null=True)

    class Meta:
        db_table = "shp_item"
        key = "tests.test_sharding_properties.PItem"


FIELDS = ("tenant_id", "grp", "qty", "price", "score", "flag", "day")
NUMERIC = ("tenant_id", "qty", "price", "score", "flag")
GROUP_KEYS = ("tenant_id", "grp", "flag", "day", "qty")


# --- set-ups --------------------------------------------------------------------------------------


class Setup:
    """Aliases of a sharded set-up and of the one database that holds every row."""

    def __init__(self, specs: dict[str, Any], shards: list[str], one: str) -> None:
        self.shards, self.one = shards, one
        qplan.configure(databases=specs, routers=[Sharded("tenant_id", shards)])
        for alias in specs:
            qplan.drop_tables([PItem], using=alias, missing_ok=True)
            qplan.create_tables([PItem], using=alias)

    def load(self, rows: list[dict[str, Any]]) -> None:
        routing.forget_writes()
        PItem.objects.delete()  # every shard
        PItem.objects.using(self.one).delete()
        PItem.objects.bulk_create([PItem(**row) for row in rows])  # each row to its shard
        PItem.objects.using(self.one).bulk_create([PItem(**row) for row in rows])

    def close(self) -> None:
        qplan.connections.close_all()
        sharding.shutdown()
        routing.forget_writes()
        qplan.configure(databases={}, routers=[])


@pytest.fixture(scope="module")
def sqlite_setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shard_props")
    names = ("a", "b", "c", "one")
    setup = Setup({n: f"sqlite:///{folder / n}.db" for n in names}, ["a", "b", "c"], "one")
    yield setup
    setup.close()


@pytest.fixture(scope="module")
def pg_setup(pg):
    urls = {n: pg.create_database(f"qplan_shard_{n}") for n in ("pa", "pb", "pone")}
    setup = Setup(urls, ["pa", "pb"], "pone")
    yield setup
    setup.close()


# --- rows -------------------------------------------------------------------------------------------


row_values = st.fixed_dictionaries({
    "tenant_id": st.integers(0, 8),
    "grp": st.sampled_from(["a", "A", "b", "ä", "Z", None]),
    "qty": st.one_of(st.none(), st.integers(-20, 20)),
    "price": st.integers(0, 10_000).map(lambda c: D(c) / 100),
    # dyadic values: sums are exact in any order, so shards may add them up in any order
    "score": st.one_of(st.none(), st.sampled_from([0.0, -1.5, 2.25, 3.5, 10.0, -0.75])),
    "flag": st.booleans(),
    "day": st.one_of(st.none(), st.dates(dt.date(2020, 1, 1), dt.date(2020, 12, 31))),
})
rows_strategy = st.one_of(st.lists(row_values, max_size=3),  # the edge: (almost) nothing
                          st.lists(row_values, min_size=10, max_size=30)).map(
    lambda rows: [{"id": i + 1, **row} for i, row in enumerate(rows)])


# --- plans: a recipe is the list of calls that builds one, and how to compare its results -----------

tenant = st.integers(0, 8)
small = st.integers(-20, 20)

filter_step = st.one_of(
    st.builds(lambda t: ("filter", (), {"tenant_id": t}), tenant),
    st.builds(lambda ts: ("filter", (), {"tenant_id__in": ts}), st.lists(tenant, max_size=3)),
    st.builds(lambda v: ("filter", (), {"qty__gt": v}), small),
    st.builds(lambda b: ("filter", (), {"qty__isnull": b}), st.booleans()),
    st.builds(lambda g: ("filter", (), {"grp": g}), st.sampled_from(["a", "A", "ä", None])),
    st.builds(lambda s: ("filter", (), {"grp__istartswith": s}), st.sampled_from(["a", "ä", "z"])),
    st.builds(lambda t, v: ("filter", (Q(tenant_id=t) | Q(qty__lt=v),), {}), tenant, small),
    st.builds(lambda a, b: ("filter", (Q(tenant_id=a) | Q(tenant_id=b),), {}), tenant, tenant),
    st.just(("exclude", (), {"flag": True})),
    st.builds(lambda v: ("exclude", (), {"qty__lt": v}), small),
    st.builds(lambda c: ("filter", (), {"price__gte": D(c) / 100}), st.integers(0, 10_000)),
    st.builds(lambda d: ("filter", (), {"day__lte": d}),
              st.dates(dt.date(2020, 1, 1), dt.date(2020, 12, 31))),
)
filters = st.one_of(st.just([]), st.lists(filter_step, max_size=1), st.lists(filter_step, max_size=2))


def aggregate_pool(fields_for_sum: tuple[str, ...] = NUMERIC) -> st.SearchStrategy:
    return st.one_of(
        st.just(Count("*")),
        st.builds(Count, st.sampled_from(FIELDS)),
        st.builds(Sum, st.sampled_from(fields_for_sum)),
        st.builds(Avg, st.sampled_from(fields_for_sum)),
        st.builds(Min, st.sampled_from(FIELDS)),
        st.builds(Max, st.sampled_from(FIELDS)),
    )


def named(aggs: list[Any]) -> dict[str, Any]:
    return {f"x{i}": agg for i, agg in enumerate(aggs)}


def directed(draw: Any, names: list[str]) -> list[str]:
    return [("-" if draw(st.booleans()) else "") + n for n in names]


@st.composite
def row_recipes(draw: Any) -> tuple:
    steps = list(draw(filters))
    kind = draw(st.sampled_from(["models", "values", "values_list", "flat"]))
    annotate = draw(st.booleans())
    if annotate:
        steps.append(("annotate", (), {"d": F("qty") * 2 + F("tenant_id")}))
    pool = list(FIELDS) + (["d"] if annotate else [])
    distinct = kind != "models" and draw(st.booleans())
    sliced = draw(st.booleans())
    sel = draw(st.lists(st.sampled_from(pool), unique=True, min_size=1, max_size=3))
    if kind == "flat":
        sel = sel[:1]
    if distinct:
        order = directed(draw, sel) if sliced or draw(st.booleans()) else []
        mode = "exact" if order else "bag"
    elif sliced:
        order = directed(draw, draw(st.lists(st.sampled_from(pool), unique=True, max_size=2)))
        order.append(draw(st.sampled_from(["id", "-id"])))
        if kind != "models" and "id" not in sel:
            sel = sel + ["id"] if kind != "flat" else ["id"]
        mode = "exact"
    else:
        within = pool if kind == "models" else sel
        order = directed(draw, draw(st.lists(st.sampled_from(within), unique=True, max_size=3)))
        mode = "keys" if order else "bag"
    if order:
        steps.append(("order_by", tuple(order), {}))
    if kind == "values":
        steps.append(("values", tuple(sel), {}))
    elif kind == "values_list":
        steps.append(("values_list", tuple(sel), {}))
    elif kind == "flat":
        steps.append(("values_list", tuple(sel), {"flat": True}))
    if distinct:
        steps.append(("distinct", (), {}))
    if sliced:
        start = draw(st.integers(0, 8))
        stop = draw(st.one_of(st.none(), st.integers(start, start + 10)))
        steps.append(("slice", (start, stop), {}))
    return ("list", tuple(steps), mode, kind, tuple(sel), tuple(o.lstrip("-") for o in order))


def windowed(draw: Any, steps: list, sel: list[str] | None) -> None:
    """Order totally (by the selected fields, or by id) and take a slice."""
    order = directed(draw, sel) if sel else [draw(st.sampled_from(["id", "-id"]))]
    steps.append(("order_by", tuple(order), {}))
    if sel:
        steps.append(("values", tuple(sel), {}))
        steps.append(("distinct", (), {}))
    start = draw(st.integers(0, 6))
    steps.append(("slice", (start, draw(st.one_of(st.none(), st.integers(start, start + 8)))), {}))


@st.composite
def count_recipes(draw: Any) -> tuple:
    steps = list(draw(filters))
    variant = draw(st.sampled_from(["plain", "distinct", "sliced", "distinct sliced"]))
    sel = draw(st.lists(st.sampled_from(FIELDS), unique=True, min_size=1, max_size=2))
    if variant == "distinct":
        steps += [("values", tuple(sel), {}), ("distinct", (), {})]
    elif variant == "sliced":
        windowed(draw, steps, None)
    elif variant == "distinct sliced":
        windowed(draw, steps, sel)
    return (draw(st.sampled_from(["count", "exists"])), tuple(steps), "exact", None, (), ())


@st.composite
def aggregate_recipes(draw: Any) -> tuple:
    steps = list(draw(filters))
    variant = draw(st.sampled_from(["plain", "plain", "sliced", "distinct"]))
    if variant == "sliced":
        windowed(draw, steps, None)
    elif variant == "distinct":
        sel = draw(st.lists(st.sampled_from(FIELDS), unique=True, min_size=1, max_size=2))
        steps += [("values", tuple(sel), {}), ("distinct", (), {})]
    aggs = draw(st.lists(aggregate_pool(), min_size=1, max_size=4))
    extra = {}
    if variant == "plain" and draw(st.booleans()):
        extra["ratio"] = Sum("qty") / Count("*")
    return ("aggregate", tuple(steps), "exact", {**named(aggs), **extra}, (), ())


@st.composite
def group_recipes(draw: Any) -> tuple:
    steps = list(draw(filters))
    keys = draw(st.lists(st.sampled_from(GROUP_KEYS), unique=True, min_size=1, max_size=2))
    aggs = {"n": Count("*"), **named(draw(st.lists(aggregate_pool(), max_size=2)))}
    if draw(st.booleans()):
        aggs["r"] = Sum("qty") / Count("*") if draw(st.booleans()) else Count("*") * 2 + Max("tenant_id")
    steps.append(("values", tuple(keys), {}))
    steps.append(("annotate", (), aggs))
    having = draw(st.sampled_from([None, None, "gt", "or", "exclude"]))
    k = draw(st.integers(0, 3))
    if having == "gt":
        steps.append(("filter", (), {"n__gt": k}))
    elif having == "or":
        steps.append(("filter", (Q(n__lt=k) | Q(x0__isnull=True) if "x0" in aggs else Q(n=k),), {}))
    elif having == "exclude":
        steps.append(("exclude", (), {"n": k}))
    ordered = draw(st.booleans())
    if ordered:
        order = (["-n"] if draw(st.booleans()) else []) + directed(draw, keys)
        steps.append(("order_by", tuple(order), {}))
        if draw(st.booleans()):
            start = draw(st.integers(0, 4))
            steps.append(("slice", (start, draw(st.one_of(st.none(), st.integers(start, start + 5)))), {}))
    terminal = draw(st.sampled_from(["list", "list", "count", "exists", "aggregate"]))
    if terminal == "aggregate":
        return ("aggregate", tuple(steps), "exact",
                {"most": Max("n"), "total": Sum("n"), "groups": Count("*")}, (), ())
    return (terminal, tuple(steps), "exact" if ordered else "bag", None, (), ())


recipes = st.one_of(row_recipes(), count_recipes(), aggregate_recipes(), group_recipes())


# --- running and comparing --------------------------------------------------------------------


def build(plan: Any, steps: tuple) -> Any:
    for name, args, kwargs in steps:
        plan = plan[slice(*args)] if name == "slice" else getattr(plan, name)(*args, **kwargs)
    return plan


def run(plan: Any, recipe: tuple) -> Any:
    action, steps, _, extra, _, _ = recipe
    plan = build(plan, steps)
    if action == "count":
        return plan.count()
    if action == "exists":
        return plan.exists()
    if action == "aggregate":
        return plan.aggregate(**extra)
    return list(plan)


def plain(value: Any) -> Any:
    if isinstance(value, qplan.Model):  # fields and annotations
        return plain({k: v for k, v in vars(value).items() if not k.startswith("_")})
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def bag(rows: list) -> list:
    def key(row: Any) -> str:
        return repr(round(row, 6) if isinstance(row, float) else row)
    return sorted(rows, key=key)


def order_keys(rows: list, kind: str, sel: tuple, order: tuple) -> list:
    def get(row: Any, name: str) -> Any:
        if kind == "models":
            return row[name]
        if kind == "values":
            return row[name]
        if kind == "flat":
            return row
        return row[sel.index(name)]
    return [[get(row, name) for name in order] for row in rows]


def check(setup: Setup, rows: list[dict[str, Any]], recipe: tuple) -> None:
    action, steps, mode, _, sel, order = recipe
    sharded = run(PItem.objects, recipe)
    single = run(PItem.objects.using(setup.one), recipe)
    if action == "list":
        kind = recipe[3]
        if kind == "models":
            assert all(obj._db in setup.shards for obj in sharded)
        got, want = plain(sharded), plain(single)
        if mode == "keys":
            assert same(order_keys(got, kind, sel, order), order_keys(want, kind, sel, order)), \
                (got, want)
        if mode != "exact":
            got, want = bag(got), bag(want)
        assert same(got, want), (got, want)
    else:
        assert same(plain(sharded), plain(single)), (sharded, single)


def check_all(setup: Setup, rows: list[dict[str, Any]], batch: list[tuple]) -> None:
    setup.load(rows)
    for recipe in batch:
        check(setup, rows, recipe)


@given(rows=rows_strategy, batch=st.lists(recipes, min_size=1, max_size=5))
def test_three_sqlite_files_answer_as_one(sqlite_setup, rows, batch):
    check_all(sqlite_setup, rows, batch)


@given(rows=rows_strategy, batch=st.lists(recipes, min_size=1, max_size=5))
def test_two_postgresql_databases_answer_as_one(pg_setup, rows, batch):
    check_all(pg_setup, rows, batch)
