"""select_related (issue 12): one JOINed query filling related instances, as Django 5.2.

Run on every backend with the relation models (``rel_db``); statements are counted at
``Connection._statement``, the one place every statement passes through.
"""

from __future__ import annotations

import pickle

import pytest

import qplan
from qplan import fields, routing, sharding
from qplan.sharding import Sharded
from conftest import statements
from relmodels import Bio, Novel, Review, Writer


def fill() -> None:
    """Ann mentors Bob; Cy has no mentor; one novel without a writer, one edited by Ann."""
    ann = Writer.objects.create(name="Ann", age=50)
    bob = Writer.objects.create(name="Bob", age=30, mentor=ann)
    cy = Writer.objects.create(name="Cy", age=20)
    Novel.objects.create(title="A1", pages=100, writer=ann)
    Novel.objects.create(title="B1", pages=200, writer=bob, editor=ann)
    Novel.objects.create(title="C1", pages=300, writer=cy)
    Novel.objects.create(title="N1", pages=50)
    Bio.objects.create(writer=bob, text="bob's")


def summary(novels: list) -> list[tuple]:
    out = []
    for n in novels:
        w = n.writer
        out.append((n.title, w and w.name, w and w.age, w and w.mentor and w.mentor.name))
    return out


EXPECTED = [("A1", "Ann", 50, None), ("B1", "Bob", 30, "Ann"), ("C1", "Cy", 20, None),
            ("N1", None, None, None)]


def test_one_query_fills_the_chain_and_none_for_absent_rows(rel_db, monkeypatch):
    fill()
    plan = Novel.objects.select_related("writer__mentor").order_by("title")
    with statements(monkeypatch) as seen:
        novels = list(plan)
        assert summary(novels) == EXPECTED  # no lazy load: the chain is cached
    assert len(seen) == 1
    assert "JOIN" in seen[0].upper()
    assert novels[3].__dict__["_cache_writer"] is None
    assert all(n._db == "default" for n in novels)
    assert novels[1].writer._db == novels[1].writer.mentor._db == "default"
    assert novels[1].writer.pk == novels[1].writer_id and novels[1].writer.mentor_id == \
        novels[1].writer.mentor.pk
    assert "_cache_mentor" not in novels[0].writer.__dict__ or novels[0].writer.mentor is None
    assert not any(k.startswith("writer__") for k in novels[0].__dict__)


def test_without_select_related_the_accessor_queries(rel_db, monkeypatch):
    fill()
    novels = list(Novel.objects.order_by("title"))
    with statements(monkeypatch) as seen:
        assert summary(novels) == EXPECTED
    assert len(seen) > 1


def test_several_names_accumulate_and_none_clears(rel_db, monkeypatch):
    fill()
    plan = Novel.objects.select_related("writer").select_related("editor").filter(title="B1")
    with statements(monkeypatch) as seen:
        [b1] = list(plan)
        assert (b1.writer.name, b1.editor.name) == ("Bob", "Ann")
    assert len(seen) == 1
    assert plan.records[0] == ("select_related", "writer")
    with statements(monkeypatch) as seen:
        assert plan.get().editor.name == "Ann"
        assert plan.first().writer.mentor.name == "Ann"  # not selected: one query more
    assert len(seen) == 3
    assert [(n.__dict__["_cache_writer"].name, n.__dict__["_cache_editor"].name)
            for n in plan.iterator(chunk_size=1)] == [("Bob", "Ann")]
    Review.objects.create(novel=b1, stars=4)
    with statements(monkeypatch) as seen:
        [review] = list(Review.objects.select_related())  # non-null novel only, not its writer
        assert review.novel.title == "B1" and "_cache_writer" not in review.novel.__dict__
    assert len(seen) == 1
    cleared = plan.select_related(None)
    [b1] = list(cleared)
    assert "_cache_writer" not in b1.__dict__


def test_bare_select_related_follows_non_null_foreign_keys_only():
    sql = Review.objects.select_related().compile("sqlite").sql
    assert "rel_novel" in sql and "rel_writer" not in sql  # Novel.writer is nullable
    assert Novel.objects.select_related().compile("sqlite").sql.upper().count("JOIN") == 0
    names = Review.objects.select_related().select_related("novel__writer")
    assert "rel_writer" in names.compile("sqlite").sql  # names replace the bare call


def test_same_rows_with_filters_ordering_annotations_and_slices(rel_db):
    fill()
    base = Novel.objects.filter(writer__age__gte=20).annotate(twice=qplan.F("pages") * 2)
    plain = list(base.order_by("-writer__name")[:2])
    joined = list(base.select_related("writer").order_by("-writer__name")[:2])
    assert [(n.title, n.twice, n.writer_id) for n in joined] == \
        [(n.title, n.twice, n.writer_id) for n in plain]
    assert [(n.title, n.twice, n.writer.name, n.writer.pk) for n in joined] == \
        [("C1", 600, "Cy", plain[0].writer_id), ("B1", 400, "Bob", plain[1].writer_id)]
    grouped = Novel.objects.annotate(m=qplan.Max("pages")).select_related("writer")  # GROUP BY
    assert sorted((n.title, n.m, n.writer and n.writer.name) for n in grouped) == \
        [("A1", 100, "Ann"), ("B1", 200, "Bob"), ("C1", 300, "Cy"), ("N1", 50, None)]
    assert [n.writer.name for n in Novel.objects.select_related("writer").filter(
        title="A1").distinct()] == ["Ann"]


def test_ignored_by_values_counts_aggregates_and_writes(rel_db):
    fill()
    plan = Novel.objects.select_related("writer__mentor")
    for compiled in (plan.values("title"), plan.values_list("title", flat=True)):
        assert "JOIN" not in compiled.compile().sql.upper()
    assert plan.count() == 4 and plan.exists()
    assert plan.aggregate(s=qplan.Sum("pages")) == {"s": 650}
    assert sorted(plan.values_list("title", flat=True)) == ["A1", "B1", "C1", "N1"]
    assert plan.filter(title="N1").update(pages=51) == 1
    assert plan.filter(title="N1").delete()[0] == 1
    assert plan.related_models() == (Writer,)
    assert plan.values("title").related_models() == ()
    inner = Novel.objects.select_related("writer").filter(pages__gt=0)
    assert Review.objects.filter(novel__in=inner).related_models() == (Novel,)  # no Writer
    assert plan.count() == 3 and plan[0:1].count() == 1


@pytest.mark.parametrize("names, message", [
    (("novel_set",), "Invalid field name(s) given in select_related: 'novel_set'"),
    (("genres",), "Invalid field name(s) given in select_related: 'genres'"),
    (("writter",), "did you mean 'writer'"),
    (("title",), "Non-relational field given in select_related: 'title'"),
    (("writer__name",), "Non-relational field given in select_related: 'name'"),
    (("writer__novel",), "Invalid field name(s) given in select_related: 'novel'"),
    ((3,), "select_related() takes relation names"),
])
def test_bad_names_raise_at_the_building_line(names, message):
    with pytest.raises(qplan.FieldError) as info:
        Novel.objects.select_related(*names)
    assert message in str(info.value)
    if names == ("genres",):
        assert "Choices are: writer, editor" in str(info.value)


def test_misplaced_calls_and_reverse_names():
    with pytest.raises(qplan.PlanError, match="after .values"):
        Novel.objects.values("title").select_related("writer")
    with pytest.raises(qplan.FieldError, match="Choices are: mentor, bio"):
        Writer.objects.select_related("mentees")  # a reverse foreign key: many-valued
    with pytest.raises(qplan.PlanError, match="ends in count"):
        Novel.objects._add(("count",)).select_related("writer")


def test_record_pickles_loads_replays_and_compiles_everywhere():
    plan = Novel.objects.filter(pages__gt=1).select_related("writer__mentor", "writer",
                                                            "editor")
    assert plan.records[-1] == ("select_related", "writer__mentor", "writer", "editor")
    assert repr(plan).endswith(".select_related('writer__mentor', 'writer', 'editor')>")
    for variant in (plan, plan.select_related(None), Novel.objects.select_related(),
                    plan.using("other")):
        assert pickle.loads(pickle.dumps(variant)) == variant
        assert qplan.loads(qplan.dumps(variant)) == variant
        assert qplan.from_json(variant.to_json()) == variant
    assert plan.using("x").records == plan.records
    from qplan import records as R
    for variant in (plan, plan.select_related(None), Novel.objects.select_related()):
        assert R.shape_of(variant.records, []) == R.walk(variant.records, [])
    assert Novel.objects.filter(pages__gt=1).records == plan.records[:1]  # others unchanged
    for vendor in qplan.backends.names():
        assert "JOIN" in plan.compile(vendor).sql.upper()
    for forged in (("select_related", "writer__title"), ("select_related", "novel_set"),
                   ("select_related", "writer", "writer"), ("select_related", None, "writer"),
                   ("select_related", ("writer",))):
        bad = qplan.Plan(Novel, (forged,))  # records the API never builds
        with pytest.raises(qplan.UnsafePayload):
            qplan.loads(qplan.dumps(bad))
        with pytest.raises(qplan.UnsafePayload):
            qplan.from_json(bad.to_json())


# --- routing -------------------------------------------------------------------------------------


def test_models_pinned_apart_raise_at_build_time():
    class Home(qplan.Model):
        class Meta:
            using = "a"
            db_table = "sr_home"
            key = "tests.test_select_related.Home"

    class Guest(qplan.Model):
        home = fields.ForeignKey(Home)

        class Meta:
            using = "b"
            db_table = "sr_guest"
            key = "tests.test_select_related.Guest"

    with pytest.raises(qplan.RoutingError, match="cannot join"):
        Guest.objects.select_related("home")
    with pytest.raises(qplan.RoutingError, match="cannot join"):
        Guest.objects.select_related()


def test_allow_relation_refuses_at_run_time(tmp_path):
    class Apart:
        def allow_relation(self, a, b):
            return False

    qplan.configure(databases={"default": f"sqlite:///{tmp_path / 'd.db'}"}, routers=[Apart()])
    try:
        qplan.create_tables([Writer, Novel])
        plan = Novel.objects.select_related("writer")  # building is fine
        with pytest.raises(qplan.RoutingError, match="Novel and Writer live on different"):
            list(plan)
        assert list(Novel.objects.select_related("writer").values("title")) == []  # no join
        assert plan.count() == 0
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={}, routers=[])


class Area(qplan.Model):
    """Not sharded (no tenant_id): the shard router does not handle it."""

    name = fields.CharField(max_length=20)

    class Meta:
        db_table = "sr_area"
        key = "tests.test_select_related.Area"


class Shop(qplan.Model):
    tenant_id = fields.IntegerField()
    name = fields.CharField(max_length=20)

    class Meta:
        db_table = "sr_shop"
        key = "tests.test_select_related.Shop"


class Sale(qplan.Model):
    tenant_id = fields.IntegerField()
    shop = fields.ForeignKey(Shop, null=True)
    area = fields.ForeignKey(Area, null=True)

    class Meta:
        db_table = "sr_sale"
        key = "tests.test_select_related.Sale"


def test_sharded_plans_join_co_located_models_per_shard(tmp_path):
    shards = ["s0", "s1"]
    router = Sharded("tenant_id", shards)
    qplan.configure(databases={n: f"sqlite:///{tmp_path / n}.db" for n in [*shards, "default"]},
                    routers=[router])
    try:
        for alias in [*shards, "default"]:
            qplan.create_tables([Area, Shop, Sale], using=alias)
        for t in range(4):
            Shop.objects.create(id=t + 1, tenant_id=t, name=f"shop{t}")
            Sale.objects.create(id=t + 1, tenant_id=t, shop_id=t + 1 if t != 3 else None)
        plan = Sale.objects.select_related("shop").order_by("id")
        with statements(pytest.MonkeyPatch()) as seen:
            got = list(plan)
        assert len(seen) == 2  # one statement per shard
        assert [s.shop and s.shop.name for s in got] == ["shop0", "shop1", "shop2", None]
        assert all(s.shop is None or s.shop._db == s._db for s in got)
        assert len({s._db for s in got}) == 2
        assert [s.shop.name for s in Sale.objects.select_related("shop").filter(tenant_id=1)] \
            == ["shop1"]
        with statements(pytest.MonkeyPatch()) as seen:
            with pytest.raises(qplan.NotSupportedError, match="Area is not"):
                list(Sale.objects.select_related("area"))
        assert seen == []
    finally:
        qplan.connections.close_all()
        sharding.shutdown()
        routing.forget_writes()
        qplan.configure(databases={}, routers=[])
