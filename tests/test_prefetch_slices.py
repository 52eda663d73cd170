"""Sliced Prefetch querysets (Django 4.2+): the slice applies per parent object, through
ROW_NUMBER() OVER (PARTITION BY ...) (qplan.perslice), on every backend; the record
round-trips; single-object relations and bad slices are refused at the building line."""

from __future__ import annotations

import pickle

import pytest

import qplan
from qplan import NotSupportedError, PlanError, Prefetch
from relmodels import Genre, Novel, Writer
from test_prefetch_related import populate
import test_sharding
from test_sharding import Line, Order

cluster = test_sharding.cluster  # the shards fixture

KEY = "k" * 32
VENDORS = ("sqlite", "postgresql", "mysql", "duckdb", "galera")


def _expected(parents: list, children, key, order, start, stop) -> dict:
    return {p.pk: [c.pk for c in sorted(children(p), key=order)][start:stop] for p in parents}


@pytest.mark.parametrize("start,stop", [(0, 1), (1, 2), (0, 5), (1, None)])
def test_reverse_foreign_key_slice_is_per_writer(rel_db, start, stop):
    populate(6)
    novels = list(Novel.objects.all())
    writers = list(Writer.objects.prefetch_related(Prefetch(
        "novel_set", queryset=Novel.objects.order_by("-pages")[start:stop], to_attr="top")))
    want = _expected(writers, lambda w: [n for n in novels if n.writer_id == w.pk], None,
                     lambda n: -n.pages, start, stop)
    assert {w.pk: [n.pk for n in w.top] for w in writers} == want
    assert all(n.writer is w for w in writers for n in w.top)  # no query for the way back


def test_many_to_many_slices_by_source_both_ways(rel_db):
    populate(6)
    novels = list(Novel.objects.prefetch_related("genres"))
    sliced = list(Novel.objects.prefetch_related(
        Prefetch("genres", queryset=Genre.objects.order_by("-name")[:1])))
    assert {n.pk: [g.pk for g in n.genres.all()] for n in sliced} == {
        n.pk: [g.pk for g in sorted(n.genres.all(), key=lambda g: g.name, reverse=True)][:1]
        for n in novels}
    genres = list(Genre.objects.prefetch_related("novel_set"))
    back = list(Genre.objects.prefetch_related(Prefetch(
        "novel_set", queryset=Novel.objects.filter(pages__gt=10)[1:3], to_attr="some")))
    assert {g.pk: [n.pk for n in g.some] for g in back} == {
        g.pk: sorted(n.pk for n in g.novel_set.all() if n.pages > 10)[1:3] for g in genres}


def test_slice_refused_where_django_refuses_it():
    with pytest.raises(NotSupportedError, match="single object"):
        Novel.objects.prefetch_related(Prefetch("writer", queryset=Writer.objects.all()[:1]))
    with pytest.raises(PlanError):
        Writer.objects.prefetch_related(Prefetch("novel_set", queryset=Novel.objects.all()[::2]))
    with pytest.raises(PlanError):
        Novel.objects._slice_per("writer", 0, 2).filter(pages=1)
    with pytest.raises(PlanError):
        Novel.objects._slice_per("writer", 3, 2)
    with pytest.raises(qplan.FieldError, match="writer"):
        Novel.objects._slice_per("writr", 0, 2)


def test_per_parent_slice_record_round_trips_and_compiles_offline():
    plan = Novel.objects.filter(pages__gt=3).order_by("-pages")._slice_per("writer", 1, 3)
    assert plan.records[-1] == ("slice_per", "writer", ("=", 1), ("=", 3))
    assert qplan.loads(qplan.dumps(plan)) == plan
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert qplan.from_json(plan.to_json(KEY), KEY) == plan
    assert qplan.loads(qplan.dumps(plan.using("other"))).db == "other"
    for vendor in VENDORS:
        assert "ROW_NUMBER" in plan.compile(vendor).sql.upper()
    m2m = Genre.objects.filter(novel__in=[1, 2])._slice_per("novel", 0, 1)
    assert qplan.loads(qplan.dumps(m2m)) == m2m
    prefetching = Writer.objects.prefetch_related(Prefetch(
        "novel_set", queryset=Novel.objects.order_by("title")[:2], to_attr="firsts"))
    assert qplan.loads(qplan.dumps(prefetching)) == prefetching
    assert qplan.from_json(prefetching.to_json(KEY), KEY) == prefetching


def test_sharded_slice_holds_per_parent_across_shards(cluster):
    """Order 1 lives on s1; its lines on s1 AND s0 (their own tenant): each shard keeps its
    first rows per order, the merge orders them, the slice is cut per order after it."""
    for alias in ("s1", "s0"):  # the lines' foreign key needs the order where they live
        Order.objects.using(alias).bulk_create([Order(id=i, tenant_id=1) for i in (1, 2)])
    skus = {1: ["a", "b", "c", "d", "e"], 2: ["f", "g"]}
    Line.objects.bulk_create([Line(id=10 * o + n, tenant_id=(1, 3)[n % 2], order_id=o, sku=sku)
                              for o, names in skus.items() for n, sku in enumerate(names)])
    for start, stop in ((0, 3), (1, 4), (2, None)):
        orders = list(Order.objects.using("s1").order_by("id").prefetch_related(Prefetch(
            "line_set", queryset=Line.objects.order_by("-sku")[start:stop], to_attr="few")))
        assert [[line.sku for line in o.few] for o in orders] == [
            sorted(names, reverse=True)[start:stop] for names in skus.values()]
    with pytest.raises(NotSupportedError, match="offset"):
        list(Line.objects.order_by("sku")._slice_per("order", 1, 2))
