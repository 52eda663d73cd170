"""Subquery, OuterRef and Exists (Django 5.2 meaning) on every backend: in filter, exclude,
annotate, order_by (by an annotation) and update; records, loading and build checks."""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import qplan
from qplan import Count, Exists, F, FieldError, OuterRef, PlanError, Q, Subquery, UnsafePayload
from qplan.jsonplan import encode, from_json
from qplan.payloads import dumps, loads
from qplan.plan import FORMAT_VERSION
from qplan.shapecache import cache
from payloadkit import PlanLike
from relmodels import Genre, Novel, NovelGenres, Review, Writer
from test_sharding import cluster, orders  # noqa: F401 - fixtures

# Writers 1 ann, 2 bob, 3 cid, 4 dan. Novels 1 "a" 100p ann; 2 "b" 200p ann; 3 "a" 350p bob;
# 4 "c" 50p no writer. Reviews: novel 1: 5 (id 1), 3 (id 2); novel 2: 4 (id 3).


@pytest.fixture
def data(rel_db):
    Writer.objects.bulk_create([Writer(id=i, name=n, age=20 + 10 * i)
                                for i, n in enumerate(["ann", "bob", "cid", "dan"], 1)])
    Genre.objects.bulk_create([Genre(id=1, name="sf")])
    Novel.objects.bulk_create([
        Novel(id=1, title="a", pages=100, writer_id=1), Novel(id=2, title="b", pages=200, writer_id=1),
        Novel(id=3, title="a", pages=350, writer_id=2), Novel(id=4, title="c", pages=50)])
    NovelGenres.objects.bulk_create([NovelGenres(novel_id=1, genre_id=1)])
    Review.objects.bulk_create([Review(id=1, novel_id=1, stars=5), Review(id=2, novel_id=1, stars=3),
                                Review(id=3, novel_id=2, stars=4)])
    return rel_db


def pks(plan):
    return sorted(plan.values_list("pk", flat=True))


def reviewed(**kwargs):
    return Exists(Review.objects.filter(novel=OuterRef("pk"), **kwargs))


def test_exists_in_filter_exclude_and_with_q(data):
    long_novel = Exists(Novel.objects.filter(writer=OuterRef("pk"), pages__gt=300))
    assert pks(Writer.objects.filter(long_novel)) == [2]  # the example
    assert pks(Writer.objects.exclude(long_novel)) == [1, 3, 4]
    assert pks(Writer.objects.filter(~long_novel)) == [1, 3, 4]
    assert pks(Novel.objects.filter(reviewed())) == [1, 2]
    assert pks(Novel.objects.filter(~reviewed())) == [3, 4]
    assert pks(Novel.objects.filter(reviewed(stars__gt=4) | Q(pages__lt=60))) == [1, 4]
    assert pks(Novel.objects.filter(Q(pages__lt=60) | reviewed(stars__gt=4))) == [1, 4]
    assert pks(Novel.objects.filter(Q(reviewed()) & Q(title="a"))) == [1]
    assert pks(Novel.objects.filter(reviewed(), title="b")) == [2]
    assert pks(Novel.objects.exclude(Q(title="a") & reviewed())) == [2, 3, 4]
    assert Novel.objects.filter(reviewed()).count() == 2
    five = Exists(Review.objects.filter(novel__writer=OuterRef("pk"), stars__gt=4))
    assert pks(Writer.objects.exclude(Q(novel__title="a") & five)) == [2, 3, 4]  # NOT pk IN (...)
    assert Novel.objects.filter(~reviewed()).exists()


def test_subquery_annotation_order_by_and_values(data):
    latest = Subquery(Review.objects.filter(novel=OuterRef("pk")).order_by("-id").values("stars")[:1])
    plan = Novel.objects.annotate(latest=latest)
    assert {n.id: n.latest for n in plan} == {1: 3, 2: 4, 3: None, 4: None}
    assert list(plan.filter(latest__gte=4).values_list("id", flat=True)) == [2]
    assert pks(Novel.objects.filter(pages__gt=latest)) == [1, 2]
    assert pks(Novel.objects.exclude(pages__gt=latest)) == []  # a NULL subquery: neither (Django)
    assert pks(Novel.objects.exclude(pages__gt=latest).exclude(pages__lt=latest)) == []
    ordered = plan.filter(latest__isnull=False).order_by("-latest").values_list("id", "latest")
    assert list(ordered) == [(2, 4), (1, 3)]
    has = Novel.objects.annotate(has=reviewed(stars__gt=4), hasnt=~reviewed()).order_by("id")
    assert list(has.values_list("has", "hasnt")) == [(True, False), (False, False), (False, True),
                                                     (False, True)]
    assert list(has.order_by("-has", "id").values_list("id", flat=True))[:1] == [1]
    count = Subquery(Review.objects.filter(novel=OuterRef("pk")).values("novel")
                     .annotate(n=Count("id")).values("n"))
    assert dict(Novel.objects.annotate(n=count).values_list("id", "n")) == {1: 2, 2: 1, 3: None, 4: None}


def test_subquery_as_rhs_self_referencing_and_nested(data):
    # Novels longer than every other novel of their writer (Novel inside Novel)
    longest_other = Subquery(Novel.objects.filter(writer=OuterRef("writer")).exclude(pk=OuterRef("pk"))
                             .order_by("-pages").values("pages")[:1])
    assert pks(Novel.objects.filter(pages__gt=longest_other)) == [2]
    assert pks(Novel.objects.filter(pages=longest_other)) == []
    assert pks(Novel.objects.filter(id__in=Subquery(Review.objects.values("novel")))) == [1, 2]
    # writers with a novel having a review above the writer's age / 10: OuterRef(OuterRef())
    inner = Review.objects.filter(novel=OuterRef("pk"), stars__gt=OuterRef(OuterRef("age")) / 10)
    novels = Novel.objects.filter(writer=OuterRef("pk")).filter(Exists(inner))
    assert pks(Writer.objects.filter(Exists(novels))) == [1]  # ann is 30: stars 4, 5 > 3
    assert pks(Writer.objects.annotate(a=F("age")).filter(Exists(novels))) == [1]


def test_update_to_subquery_on_every_backend(data):
    best = Subquery(Review.objects.filter(novel=OuterRef("pk")).order_by("-stars").values("stars")[:1])
    assert Novel.objects.filter(pk__in=[1, 2, 3]).update(pages=F("pages") * 0 + 1) == 3
    assert Novel.objects.filter(reviewed()).update(pages=best) == 2
    assert dict(Novel.objects.values_list("id", "pages")) == {1: 5, 2: 4, 3: 1, 4: 50}
    # the table the UPDATE writes, read in the subquery (MariaDB's limitation)
    most = Subquery(Novel.objects.filter(writer=OuterRef("writer")).order_by("-pages").values("pages")[:1])
    assert Novel.objects.filter(writer__isnull=False).update(pages=most) == 3
    assert dict(Novel.objects.values_list("id", "pages")) == {1: 5, 2: 5, 3: 1, 4: 50}
    assert Novel.objects.filter(writer__name="ann").update(pages=best) == 2  # joins: pk IN
    assert dict(Novel.objects.values_list("id", "pages")) == {1: 5, 2: 4, 3: 1, 4: 50}


def test_build_checks():
    with pytest.raises(FieldError, match="pkk.*did you mean 'pk'|did you mean.*pk"):
        Novel.objects.filter(Exists(Review.objects.filter(novel=OuterRef("pkk"))))
    with pytest.raises(FieldError, match="titel"):
        Novel.objects.annotate(x=Subquery(Novel.objects.filter(title=OuterRef("titel")).values("id")))
    with pytest.raises(FieldError, match="one column"):
        Novel.objects.annotate(x=Subquery(Review.objects.filter(novel=OuterRef("pk"))))
    with pytest.raises(FieldError, match="one column"):
        Novel.objects.annotate(x=Subquery(Review.objects.values("id", "stars")))
    with pytest.raises(PlanError, match="not a subquery"):
        Novel.objects.filter(Exists(Review.objects.all()._add(("count",))))
    with pytest.raises(FieldError, match="Exists"):
        Novel.objects.filter(id__in=Review.objects.filter(novel=OuterRef("pk")).values("novel"))
    with pytest.raises(FieldError, match="takes values"):
        Novel.objects.filter(pages__range=Subquery(Review.objects.values("stars")))
    # an OuterRef with no enclosing plan: at compile, before any database sees it
    lonely = Review.objects.filter(novel=OuterRef("pk"))
    with pytest.raises(FieldError, match="only allowed inside"):
        lonely.compile("sqlite")
    nested = Novel.objects.filter(Exists(Review.objects.filter(novel=OuterRef(OuterRef("pk")))))
    with pytest.raises(FieldError, match="only allowed inside"):
        nested.compile("postgresql")
    with pytest.raises(TypeError):
        Subquery(Review)


def plans():
    latest = Subquery(Review.objects.filter(novel=OuterRef("pk")).order_by("-id").values("stars")[:1])
    return [
        Novel.objects.filter(reviewed(stars__gt=3)),
        Novel.objects.exclude(~reviewed() | Q(pages=3)).using("other"),
        Novel.objects.annotate(latest=latest, has=~reviewed()).order_by("-latest"),
        Novel.objects.filter(pages__gt=latest),
        Novel.objects.filter(reviewed()).update_plan(pages=latest),
        Writer.objects.filter(Exists(Novel.objects.filter(writer=OuterRef("pk")).filter(
            Exists(Review.objects.filter(novel=OuterRef("pk"), stars__gt=OuterRef(OuterRef("age"))))))),
    ]


@pytest.mark.parametrize("index", range(6))
def test_records_pickle_load_json_using_and_compile_offline(index):
    plan = plans()[index]
    assert loads(dumps(plan)) == plan and from_json(plan.to_json()) == plan
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert plan.using("x").records == plan.records and eval_repr_ok(plan)
    for dialect in qplan.backends.names():
        assert plan.compile(dialect).sql
    assert len(dumps(plan)) < 1500


def eval_repr_ok(plan):
    text = repr(plan)
    return "OuterRef(" in text and ("Exists(" in text or "Subquery(" in text)


def test_records_and_related_models():
    plan = plans()[0]
    assert plan.records == (("filter", ("exists", ("query", Review._meta.key, (
        ("filter", ("&", (("novel", "exact", ("outer", "pk")), ("stars", "gt", ("=", 3))))),)))),)
    assert Review in plan.related_models()
    elsewhere = Novel.objects.filter(Exists(Review.objects.using("other").filter(
        novel=OuterRef("pk"), stars__gt=3)))
    assert elsewhere == plan  # the inner plan's using() is not kept: it runs on the outer alias
    assert set(plans()[5].related_models()) == {Novel, Review}


def test_loaded_payload_with_a_wrong_outer_ref_is_refused():
    inner = (("filter", ("novel", "exact", ("outer", "nope"))),)
    records = (("filter", ("exists", ("query", Review._meta.key, inner))),)
    with pytest.raises(UnsafePayload, match="nope"):
        loads(pickle.dumps(PlanLike(FORMAT_VERSION, Novel._meta.key, records, None)))
    doc = {"qplan": "plan", "format": FORMAT_VERSION, "model": Novel._meta.key, "alias": None,
           "records": encode(records)}
    with pytest.raises(UnsafePayload, match="nope"):
        from_json(json.dumps(doc))


def test_values_share_one_compiled_template():
    cache.clear()
    for stars in range(5):
        Novel.objects.filter(reviewed(stars__gt=stars)).compile("postgresql")
    assert cache.misses == 1 and len(cache) == 1
    text, params = Novel.objects.filter(reviewed(stars__gt=7), pages__lt=9).compile("sqlite")
    assert list(params) == [7, 9] or list(params) == [9, 7]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stars=st.integers(0, 6), negate=st.booleans(), pages=st.integers(0, 400))
def test_property_exists_and_its_exclude_partition_the_rows(data, stars, negate, pages):
    cond = reviewed(stars__gte=stars)
    cond = ~cond if negate else cond
    inside = set(pks(Novel.objects.filter(cond | Q(pages__lt=pages))))
    outside = set(pks(Novel.objects.exclude(cond | Q(pages__lt=pages))))
    assert inside | outside == {1, 2, 3, 4} and not inside & outside
    expected = {n for n, s in [(1, 5), (1, 3), (2, 4)] if s >= stars}
    expected = ({1, 2, 3, 4} - expected) if negate else expected
    pages_of = {1: 100, 2: 200, 3: 350, 4: 50}
    assert inside == expected | {n for n, p in pages_of.items() if p < pages}
    latest = Subquery(Review.objects.filter(novel=OuterRef("pk"), stars__gte=stars)
                      .order_by("-stars").values("stars")[:1])
    got = dict(Novel.objects.annotate(best=latest).values_list("id", "best"))
    best = {n: max((s for m, s in [(1, 5), (1, 3), (2, 4)] if m == n and s >= stars), default=None)
            for n in pages_of}
    assert got == best


# --- sharding: co-located inner models run per shard, others are refused -------------------------

@pytest.fixture
def sharded_orders(orders):  # noqa: F811 - the sharding tests' fixture
    return orders


def test_sharded_exists_and_subquery_run_per_shard(sharded_orders):
    from test_sharding import Line, Order, Region
    lines = [Line(id=o.id, tenant_id=o.tenant_id, order=o.id, sku=f"k{o.id % 4}")
             for o in sharded_orders if o.id % 3]
    Line.objects.bulk_create(lines)
    Line.objects.using("one").bulk_create([Line(**line.values()) for line in lines])
    has_k1 = Exists(Line.objects.filter(order=OuterRef("pk"), sku="k1"))
    sku = Subquery(Line.objects.filter(order=OuterRef("pk")).values("sku")[:1])
    for build in (lambda p: sorted(p.filter(has_k1).values_list("id", flat=True)),
                  lambda p: sorted(p.exclude(has_k1).values_list("id", flat=True)),
                  lambda p: p.filter(~has_k1 | Q(paid=True)).count(),
                  lambda p: list(p.annotate(k=has_k1, s=sku).order_by("-k", "s", "id")
                                 .values_list("id", "k", "s")[:12])):
        assert build(Order.objects) == build(Order.objects.using("one"))
    line_id = Subquery(Line.objects.filter(order=OuterRef("pk")).values("id"))
    assert Order.objects.filter(has_k1).update(qty=line_id) == 7
    assert sorted(Order.objects.filter(has_k1).values_list("id", "qty")) == \
        [(o.id, o.id) for o in sharded_orders if o.id % 3 and o.id % 4 == 1]
    assert Region in Order.objects.filter(Exists(Region.objects.filter(id=OuterRef("region")))) \
        .related_models()
    with pytest.raises(qplan.NotSupportedError, match="Region is not"):
        list(Order.objects.filter(Exists(Region.objects.filter(id=OuterRef("region")))))
    with pytest.raises(qplan.NotSupportedError, match="Region is not"):
        list(Order.objects.annotate(r=Subquery(Region.objects.filter(id=OuterRef("region"))
                                               .values("name"))))
