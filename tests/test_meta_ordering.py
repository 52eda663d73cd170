"""``Meta.ordering``: a model's default order, as Django 5.2 applies it, on every backend.

No record holds it: a plan without ``order_by()`` is compiled in the model's order, and an
explicit ``order_by()`` (recorded as an empty ``order_by`` record) clears it.
"""

from __future__ import annotations

import pickle

import pytest

import qplan
from qplan import Count, Model, Sum, fields

class Novel(Model):
    """A model with a default order."""

    title = fields.CharField(max_length=200)
    pages = fields.IntegerField(default=0)

    class Meta:
        key = "tests.meta_ordering.Novel"
        db_table = "qt_novel"
        ordering = ["-pages", "title"]


@pytest.fixture
def novels(any_db):
    """Four novels on each backend: in Meta.ordering a, d, b, c; by primary key b, a, c, d."""
    qplan.create_tables([Novel])
    try:
        Novel.objects.bulk_create([Novel(id=i, title=t, pages=p) for i, (t, p) in enumerate(
            [("b", 10), ("a", 30), ("c", 10), ("d", 20)], start=1)])
        yield
    finally:
        qplan.connections.close_all()
        qplan.drop_tables([Novel])


def titles(plan) -> list[str]:
    return [n.title for n in plan]


def test_plans_come_in_the_model_order(novels):
    assert titles(Novel.objects.all()) == ["a", "d", "b", "c"]
    assert titles(Novel.objects.filter(pages__lt=30)) == ["d", "b", "c"]
    assert list(Novel.objects.values_list("title", flat=True)[1:3]) == ["d", "b"]
    assert titles(Novel.objects.order_by("title")) == ["a", "b", "c", "d"]


def test_an_empty_order_by_clears_it(novels):
    plan = Novel.objects.order_by()
    assert "ORDER BY" not in plan.compile().sql
    assert sorted(titles(plan)) == ["a", "b", "c", "d"]
    assert "ORDER BY" in Novel.objects.all().compile().sql


def test_first_last_and_reverse_honour_it(novels):
    assert Novel.objects.first().title == "a"
    assert Novel.objects.last().title == "c"
    assert titles(Novel.objects.reverse()) == ["c", "b", "d", "a"]
    assert Novel.objects.order_by().first().title == "b"  # by primary key, as Django


def test_counts_aggregates_and_groups_ignore_it(novels):
    assert Novel.objects.count() == 4
    assert Novel.objects.aggregate(s=Sum("pages")) == {"s": 70}
    per_pages = Novel.objects.values("pages").annotate(n=Count("id"))
    assert "ORDER BY" not in per_pages.compile().sql
    assert sorted((r["pages"], r["n"]) for r in per_pages) == [(10, 2), (20, 1), (30, 1)]
    assert sorted(Novel.objects.values_list("pages", flat=True).distinct()) == [10, 20, 30]


def test_the_root_plan_and_its_payloads_are_unchanged(novels):
    assert Novel.objects.records == ()
    assert Novel.objects == qplan.plan.Plan(Novel)
    plan = Novel.objects.filter(pages__gt=5)
    assert titles(pickle.loads(pickle.dumps(plan))) == titles(plan) == ["a", "d", "b", "c"]
    assert titles(qplan.loads(qplan.dumps(Novel.objects.order_by()))) != []


def test_unknown_names_fail_when_the_class_is_defined():
    with pytest.raises(qplan.FieldError, match="nope"):
        class Bad(Model):
            title = fields.CharField(max_length=10)

            class Meta:
                key = "tests.meta_ordering.Bad"
                ordering = ["-nope"]
    with pytest.raises(qplan.FieldError, match="list or tuple"):
        class Bad2(Model):
            title = fields.CharField(max_length=10)

            class Meta:
                key = "tests.meta_ordering.Bad2"
                ordering = "title"


class Writer(Model):
    name = fields.CharField(max_length=10)

    class Meta:
        key = "tests.meta_ordering.Writer"
        db_table = "qt_writer"


class ByWriter(Model):
    """Ordered through a foreign key (to a model of this module only: a relation to a shared
    test model would make its deletes look for this table)."""

    title = fields.CharField(max_length=10)
    writer = fields.ForeignKey(Writer, null=True, on_delete=fields.CASCADE)

    class Meta:
        key = "tests.meta_ordering.ByWriter"
        db_table = "qt_by_writer"
        ordering = ["-writer__name", "title"]


def test_ordering_by_a_related_field(any_db):
    qplan.create_tables([Writer, ByWriter])
    try:
        ann, bob = Writer.objects.bulk_create([Writer(name="ann"), Writer(name="bob")])
        ByWriter.objects.bulk_create([ByWriter(title="x", writer=ann),
                                      ByWriter(title="y", writer=bob),
                                      ByWriter(title="w", writer=bob)])
        assert titles(ByWriter.objects.all()) == ["w", "y", "x"]
        assert ByWriter.objects.last().title == "x"
    finally:
        qplan.connections.close_all()
        qplan.drop_tables([ByWriter, Writer])


class ShardedNovel(Model):
    tenant_id = fields.IntegerField()
    title = fields.CharField(max_length=20)
    pages = fields.IntegerField(default=0)

    class Meta:
        key = "tests.meta_ordering.ShardedNovel"
        db_table = "qt_sharded_novel"
        ordering = ["-pages", "title"]


def test_sharded_plans_merge_in_the_model_order(tmp_path):
    from qplan import routing, sharding
    from qplan.sharding import Sharded

    names = ("s0", "s1", "s2")
    qplan.configure(databases={n: f"sqlite:///{tmp_path / n}.db" for n in names},
                    routers=[Sharded("tenant_id", list(names))])
    try:
        for alias in names:
            qplan.create_tables([ShardedNovel], using=alias)
        ShardedNovel.objects.bulk_create([
            ShardedNovel(id=i, tenant_id=i % 5, title=f"t{i % 4}", pages=i % 3)
            for i in range(1, 21)])
        got = list(ShardedNovel.objects.values_list("pages", "title", "id"))
        assert [r[:2] for r in got] == sorted((r[:2] for r in got), key=lambda r: (-r[0], r[1]))
        assert len(got) == 20
        top = ShardedNovel.objects.first()
        assert (top.pages, top.title) == (2, "t0")
        assert [r[:2] for r in ShardedNovel.objects.values_list("pages", "title", "id")[:3]] == \
            [r[:2] for r in got[:3]]
    finally:
        qplan.connections.close_all()
        sharding.shutdown()
        routing.forget_writes()
        qplan.configure(databases={}, routers=[])
