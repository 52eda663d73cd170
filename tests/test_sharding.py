"""Sharding on three SQLite files: routing by key, writes per shard, scatter-gather reads that
return what one database holding every row returns, refusals, failures and explain_routing()."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
import warnings

import pytest

import qplan
from qplan import Avg, Count, F, Max, Min, Q, Sum, fields, routing, sharding
from qplan.functions import Case, ExtractYear, Length, Round, Upper, Value, When
from qplan.sharding import PartialResultWarning, Sharded, ShardSet, stable_hash

D = decimal.Decimal
SHARDS = ("s0", "s1", "s2")


class Region(qplan.Model):
    """Not sharded: lives on 'default'."""

    name = fields.CharField(max_length=20)

    class Meta:
        db_table = "sh_region"
        key = "tests.test_sharding.Region"


class Order(qplan.Model):
    tenant_id = fields.IntegerField()
    customer = fields.CharField(max_length=30, null=True)
    amount = fields.DecimalField(max_digits=10, decimal_places=2, default=D("0"))
    qty = fields.IntegerField(null=True)
    score = fields.FloatField(null=True)
    paid = fields.BooleanField(default=False)
    placed = fields.DateField(null=True)
    region = fields.ForeignKey(Region, null=True)

    class Meta:
        db_table = "sh_order"
        key = "tests.test_sharding.Order"


class Line(qplan.Model):
    """Sharded the same way as Order: a Line lives on its Order's shard."""

    tenant_id = fields.IntegerField()
    order = fields.ForeignKey(Order)
    sku = fields.CharField(max_length=10)

    class Meta:
        db_table = "sh_line"
        key = "tests.test_sharding.Line"


MODELS = [Region, Order, Line]
CUSTOMERS = ["ann", "Bob", "bob", "Zoë", None, "åsa"]


def make_orders(n: int = 40) -> list[Order]:
    return [
        Order(id=i, tenant_id=i % 7, customer=CUSTOMERS[i % len(CUSTOMERS)],
              amount=D(i * 37 % 100) / 4, qty=None if i % 5 == 0 else (i * 13) % 17 - 4,
              score=None if i % 4 == 0 else (i % 9) * 0.5, paid=i % 3 == 0,
              placed=None if i % 6 == 0 else dt.date(2024, 1 + i % 12, 1 + i % 28))
        for i in range(1, n + 1)
    ]


def copy(obj: Order) -> Order:
    return Order(**obj.values())


NAMES = (*SHARDS, "one", "default")


def configure(folder) -> Sharded:
    router = Sharded("tenant_id", list(SHARDS))
    qplan.configure(databases={n: f"sqlite:///{folder / n}.db" for n in NAMES}, routers=[router])
    return router


def build(folder, with_rows: bool) -> list[Order]:
    """'s0', 's1', 's2' sharded by tenant_id (hash: tenant % 3), 'one' holding every row."""
    for alias in NAMES:  # one transaction per file: DDL commits are what costs here
        with qplan.atomic(using=alias):
            qplan.create_tables(MODELS, using=alias)  # Order's foreign key needs sh_region
    rows = make_orders() if with_rows else []
    if rows:
        Order.objects.bulk_create(rows)
        Order.objects.using("one").bulk_create([copy(o) for o in rows])
    qplan.connections.close_all()
    return rows


def reset() -> None:
    qplan.connections.close_all()
    sharding.shutdown()
    routing.forget_writes()
    qplan.configure(databases={}, routers=[])


@pytest.fixture
def cluster(tmp_path):
    """Fresh shards without rows, for tests that write."""
    router = configure(tmp_path)
    build(tmp_path, with_rows=False)
    routing.forget_writes()
    yield router
    reset()


@pytest.fixture
def orders(cluster):
    rows = make_orders()
    Order.objects.bulk_create(rows)
    Order.objects.using("one").bulk_create([copy(o) for o in rows])
    return rows


@pytest.fixture(scope="module")
def _read_only_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded")
    configure(folder)
    rows = build(folder, with_rows=True)
    reset()
    return folder, rows


@pytest.fixture
def library(_read_only_files):
    """The 40 orders on the shards and on 'one', built once for the tests that only read."""
    folder, rows = _read_only_files
    configure(folder)
    routing.forget_writes()
    yield rows
    reset()


# --- routing by key -------------------------------------------------------------------------------


def test_hash_range_and_callable_placement():
    assert [stable_hash(v) for v in (5, True, D("7"), 7.0)] == [5, 1, 7, 7]
    assert stable_hash("tenant") == stable_hash("tenant") != stable_hash("tenanT")
    by_hash = Sharded("tenant_id", ["a", "b", "c"])
    assert [by_hash.shard_for(v).name for v in (0, 1, 5, -1)] == ["a", "b", "c", "c"]
    by_range = Sharded("tenant_id", {"low": "a", "mid": "b", "high": "c"}, by="range",
                       bounds=[10, 100])
    assert [by_range.shard_for(v).name for v in (-5, 9, 10, 99, 100, 10**9)] == [
        "low", "low", "mid", "mid", "high", "high"]
    by_call = Sharded("tenant_id", ["a", "b"], by=lambda v: "b" if v > 3 else 0)
    assert [by_call.shard_for(v).name for v in (1, 4)] == ["a", "b"]
    with pytest.raises(qplan.RoutingError, match="no value"):
        by_hash.shard_for(None)
    with pytest.raises(qplan.RoutingError, match="not a shard index or name"):
        Sharded("k", ["a"], by=lambda v: 9).shard_for(1)


@pytest.mark.parametrize("kwargs, message", [
    ({"shards": []}, "at least one shard"),
    ({"shards": ["a", "a"]}, "must differ"),
    ({"shards": ["a", 3]}, "alias or a PrimaryReplica"),
    ({"shards": ["a", "b"], "by": "modulo"}, "'hash', 'range' or a callable"),
    ({"shards": ["a", "b"], "by": "range"}, "give 1 bounds"),
    ({"shards": ["a", "b", "c"], "by": "range", "bounds": [5, 1]}, "must ascend"),
    ({"shards": ["a", "b"], "bounds": [1]}, "only for by='range'"),
])
def test_bad_configurations_are_refused(kwargs, message):
    with pytest.raises(qplan.ConfigurationError, match=message):
        Sharded("tenant_id", **kwargs)


def test_plans_that_pin_the_key_touch_only_their_shards(cluster):
    def shards(plan):
        return [name for name, _ in plan.explain_routing().shards]

    assert shards(Order.objects.filter(tenant_id=4)) == ["s1"]
    assert shards(Order.objects.filter(tenant_id__in=[1, 7])) == ["s1"]
    assert shards(Order.objects.filter(tenant_id__in=[1, 2, 5])) == ["s1", "s2"]
    assert shards(Order.objects.filter(Q(tenant_id=0) | Q(tenant_id=2, qty=1))) == ["s0", "s2"]
    assert shards(Order.objects.filter(Q(tenant_id=0) | Q(qty=1))) == list(SHARDS)  # not pinned
    assert shards(Order.objects.filter(tenant_id__in=[1, 2]).filter(tenant_id=2)) == ["s2"]
    assert shards(Order.objects.exclude(tenant_id=1)) == list(SHARDS)
    assert shards(Order.objects.filter(tenant_id__in=[])) == ["s0"]  # matches nothing anywhere
    assert routing.route(Order.objects.filter(tenant_id=3)) == "s0"
    assert isinstance(routing.route(Order.objects.all()), ShardSet)
    assert routing.route(Region.objects.all()) == "default"  # not sharded: no opinion


def test_explain_routing_connects_to_nothing(cluster):
    qplan.connections.close_all()  # the fixture created the tables
    plan = Order.objects.values("customer").annotate(n=Count("*"), a=Avg("qty")).filter(n__gt=1)
    text = str(plan.explain_routing())
    assert "scatter-gather over 3 shards" in text and "HAVING applied after the merge" in text
    assert "sum" in text and "count" in text  # Avg travels as a sum and a count
    ordered = Order.objects.order_by("-qty", "id")[5:10].explain_routing()
    assert ordered.scatter and "first offset+limit rows" in ordered.merge
    assert "k-way merge" in ordered.merge
    single = Order.objects.filter(tenant_id=2).explain_routing()
    assert not single.scatter and single.shards == (("s2", "alias 's2'"),)
    assert "pins one shard" in str(single)
    rows = Order.objects.bulk_create_plan([Order(tenant_id=1), Order(tenant_id=2)])
    assert [n for n, _ in rows.explain_routing().shards] == ["s1", "s2"]
    assert Region.objects.explain_routing().shards == (("default", "the default alias"),)
    assert Order.objects.using("one").explain_routing().shards == (("one", "set by using()"),)
    assert all(qplan.connections[a].raw is None for a in (*SHARDS, "one", "default"))


# --- writes -------------------------------------------------------------------------------------


def test_create_and_bulk_create_place_each_row_by_its_key(cluster):
    a = Order.objects.create(tenant_id=5, customer="x")
    assert a._db == "s2" and Order.objects.using("s2").filter(pk=a.pk).exists()
    rows = [Order(tenant_id=t, customer=f"c{t}") for t in range(6)]
    Order.objects.bulk_create(rows)
    assert [o._db for o in rows] == ["s0", "s1", "s2", "s0", "s1", "s2"]
    assert all(o.pk is not None for o in rows)
    for alias in SHARDS:
        tenants = Order.objects.using(alias).values_list("tenant_id", flat=True)
        assert {t % 3 for t in tenants} == {SHARDS.index(alias)}
    pks = Order.objects.bulk_create_plan([Order(tenant_id=7), Order(tenant_id=8)]).execute()
    assert len(pks) == 2 and Order.objects.filter(tenant_id__in=[7, 8]).count() == 2


def test_rows_without_a_key_are_refused(cluster):
    with pytest.raises(qplan.RoutingError, match="shard key 'tenant_id'"):
        Order.objects.create(customer="nobody")
    with pytest.raises(qplan.RoutingError, match="row 1 has no value for the shard key"):
        Order.objects.bulk_create([Order(tenant_id=1), Order(customer="x")])
    assert Order.objects.count() == 0  # refused before anything was written


def test_bulk_create_is_one_transaction_per_shard_and_names_the_failed_shard(cluster):
    Order.objects.using("s1").create(id=100, tenant_id=1)
    rows = [Order(id=1, tenant_id=0), Order(id=100, tenant_id=4), Order(id=2, tenant_id=2)]
    with pytest.raises(qplan.IntegrityError, match="shard 's1'") as info:
        Order.objects.bulk_create(rows)
    assert "committed on shards" in str(info.value)
    assert Order.objects.using("s1").count() == 1  # s1 rolled back as a whole
    assert sorted(Order.objects.using("s0").values_list("id", flat=True)) == [1]


def test_update_and_delete_fan_out_to_the_shards_the_plan_touches(orders):
    assert Order.objects.filter(qty__gt=5).update(qty=F("qty") + 100) == \
        Order.objects.using("one").filter(qty__gt=5).update(qty=F("qty") + 100)
    assert Order.objects.filter(tenant_id__in=[1, 4]).update(customer="pinned") == \
        Order.objects.using("one").filter(tenant_id__in=[1, 4]).update(customer="pinned")
    assert Order.objects.using("s0").filter(customer="pinned").count() == 0
    assert Order.objects.filter(paid=True).delete()[0] == \
        Order.objects.using("one").filter(paid=True).delete()[0]
    assert sorted(Order.objects.values_list("id", "qty", "customer")) == \
        sorted(Order.objects.using("one").values_list("id", "qty", "customer"))


def test_changing_the_shard_key_is_refused(orders):
    with pytest.raises(qplan.RoutingError, match="cannot change the shard key 'tenant_id'"):
        Order.objects.filter(customer="ann").update(tenant_id=3)
    with pytest.raises(qplan.RoutingError, match="cannot change the shard key"):
        Order.objects.filter(tenant_id=1).update(tenant_id=F("tenant_id") + 3)
    assert Order.objects.filter(tenant_id=2).update(tenant_id=2, qty=1) == 6  # not a change
    order = Order.objects.get(id=8)  # tenant 1: on s1
    order.qty = 1234
    order.save()
    assert Order.objects.get(id=8).qty == 1234
    order.tenant_id = 2  # would move to s2
    with pytest.raises(qplan.RoutingError, match="cannot change the shard key"):
        order.save()
    order.tenant_id = 4  # same shard, other key: still a change of the key
    with pytest.raises(qplan.RoutingError, match="cannot change the shard key"):
        order.save()
    assert Order.objects.get(id=8).tenant_id == 1


def test_save_of_a_new_object_and_delete_of_an_instance(cluster):
    order = Order(tenant_id=6, customer="new")
    order.save()
    assert order._db == "s0"
    order.customer = "renamed"
    order.save()
    assert Order.objects.filter(tenant_id=6).get().customer == "renamed"
    assert order.delete() == (1, {"tests.test_sharding.Order": 1})
    assert not Order.objects.exists()


# --- reads: the same answer as one database -------------------------------------------------------


def _same(got, want):
    if isinstance(got, float) or isinstance(want, float):
        return got == pytest.approx(want)
    if isinstance(got, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in got)
    if isinstance(got, (list, tuple)):
        return len(got) == len(want) and all(_same(a, b) for a, b in zip(got, want))
    if isinstance(got, Order):
        return got.values() == want.values()
    return got == want


READS = {
    "models ordered": lambda p: list(p.order_by("customer", "-id")),
    "models sliced": lambda p: list(p.order_by("-score", "id")[3:11]),
    "mixed directions, NULLs": lambda p: list(p.order_by("-placed", "qty", "id").values_list(
        "placed", "qty", "id")),
    "offset only": lambda p: list(p.order_by("amount", "id").values_list("id", flat=True)[30:]),
    "order by an unselected field": lambda p: list(
        p.order_by("-amount", "id").values_list("customer", flat=True)[:12]),
    "order by a joined field": lambda p: list(p.filter(tenant_id__gte=0).order_by("id").values(
        "id", "customer")[2:5]),
    "named": lambda p: list(p.order_by("id").values_list("id", "customer", named=True)[:4]),
    "count": lambda p: p.count(),
    "count sliced": lambda p: p.order_by("id")[5:30].count(),
    "count past the end": lambda p: p.order_by("id")[38:50].count(),
    "count distinct rows": lambda p: p.values("customer", "paid").distinct().count(),
    "exists": lambda p: p.filter(qty=12).exists(),
    "exists sliced": lambda p: (p.order_by("id")[39:].exists(), p.order_by("id")[40:].exists()),
    "get": lambda p: (p.get(id=17), p.filter(customer="Zoë").get(qty=1)),
    "first/last": lambda p: (p.first(), p.last(), p.order_by("-amount", "id").first()),
    "aggregate": lambda p: p.aggregate(n=Count("*"), q=Count("qty"), s=Sum("qty"), a=Avg("qty"),
                                       lo=Min("customer"), hi=Max("placed"), m=Sum("amount"),
                                       am=Avg("amount"), sp=Sum("paid"), ap=Avg("paid")),
    "aggregate of nothing": lambda p: p.filter(qty=999).aggregate(
        n=Count("*"), s=Sum("qty"), a=Avg("score"), m=Max("amount")),
    "aggregate arithmetic": lambda p: p.aggregate(r=Sum("qty") / Count("qty"),
                                                  d=Max("score") - Min("score") * 2),
    "aggregate of a slice": lambda p: p.order_by("-qty", "id")[2:9].aggregate(
        s=Sum("qty"), a=Avg("score"), n=Count("*"), m=Max("amount")),
    "aggregate of distinct": lambda p: p.values("customer").distinct().aggregate(
        n=Count("*"), lo=Min("customer")),
    "aggregate of an expression": lambda p: p.order_by("id")[:20].aggregate(
        s=Sum(F("qty") * 2 + 1)),
    "groups": lambda p: list(p.values("customer").annotate(
        n=Count("*"), s=Sum("qty"), a=Avg("score"), lo=Min("placed"), m=Max("amount"),
        ap=Avg("paid")).order_by("customer")),
    "groups having": lambda p: list(p.values("paid", "customer").annotate(n=Count("*")).filter(
        n__gte=3).exclude(customer="ann").order_by("-n", "customer", "paid")),
    "groups having on an expression": lambda p: list(p.values("customer").annotate(
        s=Sum("qty"), n=Count("qty")).filter(Q(s__gt=F("n") * 2) | Q(customer=None)).order_by(
        "customer")),
    "groups ordered by an aggregate, sliced": lambda p: list(p.values("tenant_id").annotate(
        total=Sum("amount")).order_by("-total", "tenant_id")[1:4]),
    "groups with arithmetic": lambda p: list(p.values("paid").annotate(
        r=Sum("qty") / Count("*"), k=Count("*") * 10 + Max("qty")).order_by("paid")),
    "groups counted": lambda p: (p.values("customer").annotate(n=Count("*")).count(),
                                 p.values("customer").annotate(n=Count("*")).filter(
                                     n__gt=7).count(),
                                 p.values("customer").annotate(n=Count("*")).filter(
                                     n__gt=70).exists()),
    "aggregate over groups": lambda p: p.values("customer").annotate(n=Count("*")).aggregate(
        most=Max("n"), total=Sum("n"), groups=Count("*")),
    "per-row annotations": lambda p: list(p.annotate(double=F("qty") * 2, lines=Count("id"))
                                          .order_by("-double", "id").values_list(
        "id", "double", "lines")[:10]),
    "distinct ordered sliced": lambda p: list(p.values_list("customer", "paid").distinct().order_by(
        "customer", "-paid")[1:6]),
    "functions per row": lambda p: list(p.annotate(
        u=Upper("customer"), r=Round("score", 1), y=ExtractYear("placed"),
        k=Case(When(paid=True, then=Value("paid")), default=Value("due"))).filter(
        placed__month__lte=6, customer__iregex="^[a-z]").order_by("-r", "id").values_list(
        "id", "u", "r", "y", "k")[:10]),
    "aggregate of a function": lambda p: p.aggregate(
        n=Sum(Length("customer")), k=Sum(Case(When(paid=True, then=1), default=0))),
    "groups by a function": lambda p: list(p.annotate(y=ExtractYear("placed")).values("y").annotate(
        n=Count("*"), s=Sum("qty")).order_by("y")),
    "iterator": lambda p: [o.id for o in p.order_by("-id").iterator(chunk_size=7)],
}


@pytest.mark.parametrize("name", READS)
def test_reads_match_one_database(library, name):
    build = READS[name]
    got = build(Order.objects)
    want = build(Order.objects.using("one"))
    assert _same(got, want), (got, want)


def test_unordered_reads_hold_the_same_rows(library):
    assert sorted(o.id for o in Order.objects.all()) == list(range(1, 41))
    assert sorted(Order.objects.values_list("customer", flat=True).distinct(), key=str) == \
        sorted(Order.objects.using("one").values_list("customer", flat=True).distinct(), key=str)
    assert len(list(Order.objects.all()[:7])) == 7


def test_each_instance_remembers_its_shard(library):
    for order in Order.objects.order_by("id")[:10]:
        assert order._db == SHARDS[order.tenant_id % 3]
        order.refresh_from_db()


def test_co_sharded_models_join_on_every_shard(orders):
    Line.objects.bulk_create([Line(tenant_id=o.tenant_id, order=o.id, sku=f"k{o.id % 4}")
                              for o in orders])
    rows = list(Line.objects.filter(order__paid=True).order_by("-order__amount", "id")
                .values_list("id", "order__customer")[:5])
    assert len(rows) == 5
    assert Line.objects.filter(order__qty__isnull=True).count() == sum(o.qty is None for o in orders)
    assert Line.objects.filter(order__customer="ann").update(sku="ann") == \
        sum(o.customer == "ann" for o in orders)
    assert sorted(Line.objects.filter(sku="ann").values_list("order", flat=True)) == \
        [o.id for o in orders if o.customer == "ann"]


def test_prefetch_related_from_shards(cluster, monkeypatch):
    """An unsharded relation is read ONCE, where its plan routes ('default'); a co-sharded
    one scatter-gathers by key; the objects are those of the database holding every row."""
    Region.objects.bulk_create([Region(id=1, name="north"), Region(id=2, name="south")])
    for alias in SHARDS:  # the shards' copies (their foreign keys need them) are not read
        Region.objects.using(alias).bulk_create([Region(id=1, name="?"), Region(id=2, name="?")])
    rows = make_orders()
    for o in rows:
        o.region_id = None if o.id % 5 == 0 else o.id % 2 + 1
    Order.objects.bulk_create(rows)
    Line.objects.bulk_create([Line(tenant_id=o.tenant_id, order=o.id, sku=f"k{n}")
                              for o in rows for n in range(o.id % 3)])
    ran: list[str] = []
    run = qplan.execution.Engine.run
    monkeypatch.setattr(qplan.execution.Engine, "run",
                        lambda self, plan, conn: ran.append((plan.model.__name__, conn.alias))
                        or run(self, plan, conn))
    orders = list(Order.objects.order_by("id").prefetch_related("region", "line_set"))
    assert sorted(ran) == sorted([("Order", s) for s in SHARDS] + [("Region", "default")]
                                 + [("Line", s) for s in SHARDS])
    ran.clear()
    assert [(o.id, o.region.name if o.region else None) for o in orders] == \
        [(o.id, None if o.region_id is None else ("north", "south")[o.region_id - 1])
         for o in rows]
    assert [sorted(l.sku for l in o.__dict__["_prefetched"]["line_set"]) for o in orders] == \
        [[f"k{n}" for n in range(o.id % 3)] for o in rows]
    assert ran == []


def test_reverse_joins_to_co_sharded_models_run_per_shard(orders):
    lines = [Line(id=o.id, tenant_id=o.tenant_id, order=o.id, sku=f"k{o.id % 4}") for o in orders]
    Line.objects.bulk_create(lines)
    Line.objects.using("one").bulk_create([Line(**line.values()) for line in lines])
    for build in (lambda p: sorted(p.filter(line__sku="k1").values_list("id", flat=True)),
                  lambda p: sorted(p.exclude(line__sku__in=["k1", "k2"]).values_list("id", flat=True)),
                  lambda p: p.filter(line__sku="k3", paid=True).count(),
                  lambda p: sorted(p.annotate(n=Count("line")).filter(n__gt=0).values_list("id", "n"))):
        assert build(Order.objects) == build(Order.objects.using("one"))
    assert Order.objects.filter(line__sku="k0").update(qty=99) == 10
    with pytest.raises(qplan.NotSupportedError, match="Region is not"):  # and back again
        list(Line.objects.filter(order__region__order__qty=1))


# --- refusals, before any query runs --------------------------------------------------------------


def break_shard(tmp_path, alias="s1"):
    qplan.add_database(alias, f"sqlite:///{tmp_path}/missing/dir/{alias}.db")


@pytest.mark.parametrize("build, message", [
    (lambda p: p.aggregate(Count("customer", distinct=True)), r"Count\(..., distinct=True\)"),
    (lambda p: list(p.values("paid").annotate(n=Sum("qty", distinct=True))), "distinct=True"),
    (lambda p: list(p.filter(region__name="north")), "Region is not"),
    (lambda p: p.filter(region__name="north").update(qty=1), "Region is not"),
    (lambda p: list(p.values("paid").annotate(a=Sum("amount") / Count("*"))), "decimal '/'"),
    (lambda p: p.order_by("id")[:5].aggregate(x=Sum("qty") * 2), "of an expression"),
    (lambda p: list(p.values("paid").annotate(n=Count("*")).values("n")), "cannot merge by the new"),
])
def test_what_cannot_be_merged_exactly_raises_before_any_query(cluster, tmp_path, build, message):
    break_shard(tmp_path)  # any query would fail with an OperationalError
    with pytest.raises(qplan.NotSupportedError, match=message):
        build(Order.objects)


def test_a_pinned_join_to_an_unsharded_model_is_a_routing_error(orders):
    with pytest.raises(qplan.RoutingError, match="live on different databases"):
        list(Order.objects.filter(tenant_id=1, region__name="north"))


# --- failures and partial results ------------------------------------------------------------------


def test_a_failing_shard_fails_the_plan_and_is_named(orders, tmp_path):
    break_shard(tmp_path)
    with pytest.raises(qplan.OperationalError, match="shard 's1' \\(alias 's1'\\)"):
        Order.objects.count()
    with pytest.raises(qplan.OperationalError, match="shard 's1'"):
        list(Order.objects.order_by("id"))
    assert Order.objects.filter(tenant_id=3).count() == 6  # s0 alone still answers
    with pytest.raises(qplan.OperationalError, match="shard 's1'"):
        Order.objects.update(qty=0)


def test_partial_results_are_opt_in_and_say_so(orders, tmp_path):
    break_shard(tmp_path)
    with qplan.partial_results() as report:
        with pytest.warns(PartialResultWarning, match="s1"):
            n = Order.objects.count()
    assert not report.complete and list(report.failed) == ["s1"]
    assert n == Order.objects.using("one").exclude(tenant_id__in=[1, 4]).count()
    with qplan.partial_results(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(qplan.OperationalError):  # writes never go partial
            Order.objects.update(qty=0)


# --- concurrency, transactions, replicas -------------------------------------------------------


def test_shards_are_queried_concurrently(orders, monkeypatch):
    from qplan.execution import Engine

    run = Engine.run
    threads = set()

    def slow_run(self, plan, conn):
        threads.add(threading.current_thread().name)
        time.sleep(0.3)
        return run(self, plan, conn)

    monkeypatch.setattr(Engine, "run", slow_run)
    start = time.perf_counter()
    assert Order.objects.count() == 40
    elapsed = time.perf_counter() - start
    assert elapsed < 0.6, elapsed  # about one shard's latency, not three
    assert len(threads) == 3


def test_inside_atomic_a_scatter_sees_the_transaction(orders):
    with qplan.atomic(using="s1"):
        Order.objects.create(id=500, tenant_id=1, customer="in tx")
        assert Order.objects.filter(customer="in tx").count() == 1  # all shards, s1 in this thread
        assert Order.objects.count() == 41
    assert Order.objects.count() == 41


def test_each_shard_may_be_a_primary_replica_group(tmp_path):
    names = ("p0", "r0", "p1", "r1")
    group0 = routing.PrimaryReplica("p0", ["r0"], lag_window=0.3)
    group1 = routing.PrimaryReplica("p1", ["r1"], lag_window=0.3)
    router = Sharded("tenant_id", {"a": group0, "b": group1})
    qplan.configure(databases={n: f"sqlite:///{tmp_path / n}.db" for n in names}, routers=[])
    try:
        for alias in names:  # plain files, not replicated: each marks its rows with its name
            with qplan.atomic(using=alias):  # (before the router: replicas refuse writes)
                qplan.create_tables([Region, Order], using=alias)
            Order.objects.using(alias).create(tenant_id=names.index(alias) // 2, customer=alias)
        qplan.configure(routers=[router])
        routing.forget_writes()
        assert sorted(Order.objects.values_list("customer", flat=True)) == ["r0", "r1"]
        assert Order.objects.filter(tenant_id=1).get().customer == "r1"
        Order.objects.update(qty=1)  # both primaries, from worker threads: read your writes
        assert sorted(Order.objects.values_list("customer", flat=True)) == ["p0", "p1"]
        time.sleep(0.35)
        assert sorted(Order.objects.values_list("customer", flat=True)) == ["r0", "r1"]
        assert [n for n, _ in Order.objects.explain_routing().shards] == ["a", "b"]
        assert "PrimaryReplica" in str(Order.objects.explain_routing())
        created = Order.objects.create(tenant_id=1, customer="new")
        assert created._db == "p1"
        qplan.add_database("r0", f"sqlite:///{tmp_path}/missing/dir/r0.db")  # replica dies
        assert sorted(Order.objects.filter(customer__in=["p0", "p1", "r1"])
                      .values_list("customer", flat=True)) in (["p0", "p1"], ["p0", "r1"])
        assert group0.is_down("r0")
    finally:
        qplan.connections.close_all()
        sharding.shutdown()
        routing.forget_writes()
        qplan.configure(databases={}, routers=[])


def test_compile_shows_what_each_shard_runs(cluster):
    sql = Order.objects.filter(qty__gt=1).values("paid").annotate(
        a=Avg("qty")).compile().sql
    assert "SUM(" in sql and "COUNT(" in sql and "AVG(" not in sql
    assert "LIMIT" in Order.objects.order_by("id")[10:20].compile().sql
    assert Order.objects.order_by("id")[10:20].compile().params == (20,)  # offset + limit
    assert "AVG(" in Order.objects.values("paid").annotate(a=Avg("qty")).compile("sqlite").sql


def test_models_without_the_key_are_not_sharded(cluster):
    Region.objects.create(name="north")
    assert Region.objects.get().name == "north"
    assert Region.objects.using("default").count() == 1
    assert Region.objects.using("s0").count() == 0


# --- transactions follow the router ------------------------------------------------------------------


def test_atomic_binds_to_the_shard_of_its_first_statement_and_refuses_another(cluster):
    one, two = stable_hash(1) % 3, stable_hash(2) % 3
    assert one != two
    with pytest.raises(qplan.TransactionManagementError, match=f"'s{two}'.*'s{one}'"):
        with qplan.atomic():
            Order.objects.create(id=1, tenant_id=1)
            Order.objects.create(id=2, tenant_id=2)  # another shard: refused, not autocommitted
    with pytest.raises(RuntimeError):
        with qplan.atomic():
            Order.objects.create(id=3, tenant_id=1)
            raise RuntimeError("rolled back")
    assert sum(Order.objects.using(s).count() for s in SHARDS) == 0
    with qplan.atomic():
        Order.objects.create(id=4, tenant_id=1)
        Order.objects.filter(tenant_id=1).update(qty=5)
    assert list(Order.objects.filter(tenant_id=1).values_list("id", "qty")) == [(4, 5)]
    assert Order.objects.using(f"s{one}").count() == 1


def test_a_scatter_write_inside_atomic_never_commits_on_other_shards(cluster):
    Order.objects.bulk_create([Order(id=i, tenant_id=i) for i in range(1, 7)])
    with pytest.raises(qplan.TransactionManagementError):
        with qplan.atomic():
            Order.objects.update(qty=9)  # every shard: the second one is refused
    assert Order.objects.filter(qty=9).count() == 0


def test_a_bug_in_a_shard_worker_propagates_and_is_no_failed_shard(library, monkeypatch):
    from qplan.execution import Engine

    run = Engine.run

    def buggy(self, plan, conn):
        if conn.alias == "s1":
            raise TypeError("a bug, not a database error")
        return run(self, plan, conn)

    monkeypatch.setattr(Engine, "run", buggy)
    with sharding.partial_results() as report:
        with pytest.raises(TypeError, match="a bug"):
            Order.objects.count()
    assert report.complete
