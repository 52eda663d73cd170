"""Sharded reads of aggregate options and expression orderings: each merges to what one
database holding every row returns ('one' in tests/test_sharding.py), or is refused with
NotSupportedError naming why, before any query runs."""

from __future__ import annotations

import decimal

import pytest

import qplan
from qplan import Avg, Count, F, Max, Min, Q, StdDev, Sum, Variance
import test_sharding
from test_sharding import Order, break_shard

# the sharding fixtures: three SQLite shards and 'one' holding every row
_read_only_files = test_sharding._read_only_files
cluster, library = test_sharding.cluster, test_sharding.library

D = decimal.Decimal


def both(build):
    """The sharded result and the single database's."""
    return build(Order.objects), build(Order.objects.using("one"))


def close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and isinstance(b[k], float):
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-12), k
        else:
            assert a[k] == b[k] and type(a[k]) is type(b[k]), k


def test_filter_and_default_merge_exactly(library):
    got, want = both(lambda p: p.aggregate(
        n=Count("id", filter=Q(paid=True)), all=Count("*", filter=Q(qty__gt=2)),
        s=Sum("amount", filter=Q(customer__startswith="b") | Q(customer=None)),
        a=Avg("qty", filter=Q(paid=False)), lo=Min("customer", filter=~Q(customer="ann")),
        hi=Max("score", filter=Q(qty__lt=0), default=-1.0),
        none=Sum("qty", filter=Q(qty__gt=999), default=7), b=Avg("paid", filter=Q(qty__gt=0))))
    close(got, want)
    assert got["none"] == 7  # the default once, after the merge, not once per shard


def test_default_applies_after_the_merge(library):
    got, want = both(lambda p: p.filter(tenant_id__in=[1, 2]).aggregate(
        s=Sum("qty", default=100), m=Max("amount", default=D("1.5"))))
    close(got, want)
    empty, one = both(lambda p: p.filter(qty=999).aggregate(s=Sum("amount", default=D("1.5"))))
    assert empty == one == {"s": D("1.50")} and str(empty["s"]) == "1.50"


def test_stddev_and_variance_merge_from_per_shard_moments(library):
    got, want = both(lambda p: p.aggregate(
        sd=StdDev("qty"), sds=StdDev("qty", sample=True), v=Variance("score"),
        vs=Variance("amount", sample=True, filter=Q(paid=True)), e=StdDev("qty", filter=Q(qty=999)),
        d=Variance("qty", filter=Q(qty=999), default=0.0)))
    close(got, want)
    assert got["e"] is None and got["d"] == 0.0
    assert "scatter-gather" in str(Order.objects.all().aggregate_plan(v=Variance("qty")).explain_routing())


def test_grouped_options_merge(library):
    def build(p):
        return sorted(tuple(d.values()) for d in p.values("paid").annotate(
            n=Count("id", filter=Q(qty__gt=0)), s=Sum("qty", filter=Q(score__gt=1), default=0),
            sd=StdDev("score")))
    got, want = both(build)
    assert [r[:3] for r in got] == [r[:3] for r in want]
    assert [r[3] for r in got] == pytest.approx([r[3] for r in want], rel=1e-12)


def test_rows_ordered_by_expressions_merge_in_order(library):
    def build(p):
        return list(p.order_by(F("score").desc(nulls_last=True), "id").values_list("id", flat=True))
    assert both(build)[0] == both(build)[1]

    def sliced(p):
        return list(p.order_by(F("qty").asc(nulls_last=True), (F("amount") * -1).desc(), "id")[3:15]
                    .values_list("id", flat=True))
    got, want = both(sliced)
    assert got == want and len(got) == 12

    def grouped(p):
        return [tuple(d.values()) for d in p.values("customer").annotate(n=Count("*"))
                .order_by(F("customer").desc(nulls_first=True))]
    got, want = both(grouped)
    assert got == want and got[0][0] is None and len(got) == 6


def test_what_cannot_be_merged_is_refused_before_any_query(cluster, tmp_path):
    break_shard(tmp_path)
    plan = Order.objects.order_by("id")[:5]
    with pytest.raises(qplan.NotSupportedError, match="filter="):
        plan.aggregate(n=Count("*", filter=Q(paid=True)))
    with pytest.raises(qplan.NotSupportedError, match="distinct=True"):
        Order.objects.aggregate(n=Count("qty", distinct=True, filter=Q(paid=True)))
    with pytest.raises(qplan.NotSupportedError, match="aggregate expression"):
        list(Order.objects.order_by(Sum("qty").desc()))


def test_sliced_plans_apply_default_and_spreads_after_the_merge(library):
    got, want = both(lambda p: p.order_by("id")[5:30].aggregate(
        s=Sum("qty", default=0), v=Variance("qty", sample=True), m=Max("amount", default=D("2"))))
    close(got, want)
