"""Queries across relations both ways (reverse foreign keys, one-to-one, many-to-many), on
every backend, with the rows Django 5.2 gives ("Spanning multi-valued relationships")."""

from __future__ import annotations

import pickle

import pytest

import qplan
from qplan import Count, F, Q, Sum
from relmodels import Bio, Club, Genre, Membership, Novel, NovelGenres, Review, Writer

# Writers 1 ann (30), 2 bob (40, mentor ann), 3 cid (50, mentor ann), 4 dan (60, no novel).
# Novels 1 "a" 100p ann ed. bob [sf, crime]; 2 "b" 200p ann [sf]; 3 "a" 300p bob ed. bob;
# 4 "c" 50p no writer. Reviews: novel 1: 5, 3; novel 2: 4. Clubs: chess {ann, bob}, go {bob}.
# Bios: ann "poet", bob "coder". Genre 3 "poetry" has no novel.


@pytest.fixture
def data(rel_db):
    Writer.objects.create(id=1, name="ann", age=30)  # before its mentees (DuckDB checks each row)
    Writer.objects.bulk_create([
        Writer(id=2, name="bob", age=40, mentor_id=1),
        Writer(id=3, name="cid", age=50, mentor_id=1), Writer(id=4, name="dan", age=60)])
    Bio.objects.bulk_create([Bio(id=1, writer_id=1, text="poet"), Bio(id=2, writer_id=2, text="coder")])
    Genre.objects.bulk_create([Genre(id=1, name="sf"), Genre(id=2, name="crime"), Genre(id=3, name="poetry")])
    Novel.objects.bulk_create([
        Novel(id=1, title="a", pages=100, writer_id=1, editor_id=2),
        Novel(id=2, title="b", pages=200, writer_id=1),
        Novel(id=3, title="a", pages=300, writer_id=2, editor_id=2),
        Novel(id=4, title="c", pages=50)])
    NovelGenres.objects.bulk_create([NovelGenres(novel_id=1, genre_id=1),
                                     NovelGenres(novel_id=1, genre_id=2),
                                     NovelGenres(novel_id=2, genre_id=1)])
    Review.objects.bulk_create([Review(id=1, novel_id=1, stars=5), Review(id=2, novel_id=1, stars=3),
                                Review(id=3, novel_id=2, stars=4)])
    Club.objects.bulk_create([Club(id=1, name="chess"), Club(id=2, name="go")])
    Membership.objects.bulk_create([Membership(id=1, writer_id=1, club_id=1),
                                    Membership(id=2, writer_id=2, club_id=1),
                                    Membership(id=3, writer_id=2, club_id=2)])
    return rel_db


def pks(plan):
    return sorted(plan.values_list("pk", flat=True))


def test_reverse_fk_one_to_one_and_related_query_name(data):
    assert pks(Writer.objects.filter(novel__title="a")) == [1, 2]
    assert pks(Writer.objects.filter(bio__text="poet")) == [1]
    assert pks(Writer.objects.filter(edited_novel__pages__gt=150)) == [2]
    assert pks(Writer.objects.filter(edited_novel__pages__gt=50)) == [2, 2]
    assert pks(Writer.objects.filter(novel__reviews__stars=5)) == [1]
    assert pks(Writer.objects.filter(mentees__novel__title="a")) == [1]
    assert pks(Writer.objects.filter(novel__writer__bio__text="coder")) == [2]


def test_many_to_many_both_ways_and_explicit_through(data):
    assert pks(Novel.objects.filter(genres__name="sf")) == [1, 2]
    assert pks(Genre.objects.filter(novel__title="a")) == [1, 2]
    assert pks(Genre.objects.filter(novel__title="b")) == [1]
    assert pks(Club.objects.filter(members__name="bob")) == [1, 2]
    assert pks(Writer.objects.filter(clubs__name="chess")) == [1, 2]
    assert pks(Genre.objects.filter(novel__reviews__stars__gte=4)) == [1, 1, 2]


def test_one_filter_needs_one_related_row_two_filters_may_use_two(data):
    assert pks(Writer.objects.filter(novel__title="a", novel__pages=200)) == []
    assert pks(Writer.objects.filter(novel__title="a").filter(novel__pages=200)) == [1]
    assert pks(Writer.objects.filter(Q(novel__title="a") & Q(novel__pages=200))) == []
    # rows multiply across a multi-valued join (no implicit distinct), distinct() removes it
    assert pks(Writer.objects.filter(novel__title="a").filter(novel__pages__gt=50)) == [1, 1, 2]
    assert pks(Writer.objects.filter(novel__title="a").filter(novel__pages__gt=50).distinct()) == [1, 2]
    assert Writer.objects.filter(novel__pages__gt=0).count() == 3
    assert Writer.objects.filter(novel__pages__gt=0).distinct().count() == 2


def test_paths_ending_on_a_relation_mean_the_related_key(data):
    novel2, genre2 = Novel.objects.get(pk=2), Genre.objects.get(pk=2)
    assert pks(Writer.objects.filter(novel=novel2)) == [1]
    assert pks(Writer.objects.filter(novel__in=[Novel.objects.get(pk=3), 4])) == [2]
    assert pks(Novel.objects.filter(genres=genre2)) == [1]
    assert pks(Writer.objects.filter(novel__isnull=True)) == [3, 4]
    assert pks(Genre.objects.filter(novel__isnull=True)) == [3]
    assert pks(Writer.objects.filter(bio__isnull=True)) == [3, 4]
    assert list(Writer.objects.order_by("pk", "novel").values_list("name", "novel")) == [
        ("ann", 1), ("ann", 2), ("bob", 3), ("cid", None), ("dan", None)]
    assert list(Writer.objects.filter(pk=2).order_by("clubs").values("novel", "clubs")) == [
        {"novel": 3, "clubs": 1}, {"novel": 3, "clubs": 2}]
    counted = Writer.objects.annotate(n=Count("novel")).order_by("pk").values_list("pk", "n")
    assert list(counted) == [(1, 2), (2, 1), (3, 0), (4, 0)]
    counted = Novel.objects.annotate(n=Count("genres", distinct=True)).order_by("pk")
    assert list(counted.values_list("pk", "n")) == [(1, 2), (2, 1), (3, 0), (4, 0)]
    with pytest.raises(qplan.FieldError, match="Novel"):
        Writer.objects.filter(novel=genre2)


def test_aggregates_and_annotations_reuse_the_latest_join(data):
    after = Writer.objects.filter(novel__pages__gt=100).annotate(n=Count("novel")).order_by("pk")
    assert list(after.values_list("pk", "n")) == [(1, 1), (2, 1)]
    before = Writer.objects.annotate(n=Count("novel", distinct=True)).filter(novel__pages__gt=100)
    assert list(before.order_by("pk").values_list("pk", "n")) == [(1, 2), (2, 1)]
    summed = Writer.objects.annotate(s=Sum("novel__pages")).order_by("pk").values_list("pk", "s")
    assert list(summed) == [(1, 300), (2, 300), (3, None), (4, None)]
    assert Writer.objects.aggregate(s=Sum("novel__pages")) == {"s": 600}
    assert Genre.objects.aggregate(c=Count("novel")) == {"c": 3}
    assert Genre.objects.filter(novel__title="a").aggregate(c=Count("novel")) == {"c": 2}


def test_f_values_order_by_and_distinct_across_relations(data):
    assert pks(Writer.objects.filter(age__lt=F("novel__pages")).distinct()) == [1, 2]
    ordered = Writer.objects.filter(novel__isnull=False).order_by("-novel__pages")
    assert list(ordered.values_list("name", flat=True)) == ["bob", "ann", "ann"]
    assert list(ordered.values_list("name", "novel__title")) == [("bob", "a"), ("ann", "b"), ("ann", "a")]
    assert sorted(Writer.objects.filter(novel__isnull=False).values_list("name", flat=True)
                  .distinct()) == ["ann", "bob"]
    # values() joins where it comes: a later filter() has its own join (Django)
    assert sorted(Writer.objects.values_list("name", "novel__title").filter(novel__pages=200)) == [
        ("ann", "a"), ("ann", "b")]
    assert list(Writer.objects.filter(novel__pages=200).values_list("name", "novel__title")) == [
        ("ann", "b")]
    titles = Genre.objects.filter(pk=1).order_by("novel__title").values_list("novel__title", flat=True)
    assert list(titles) == ["a", "b"]


def test_exclude_and_negation_are_exact_complements(data):
    assert pks(Writer.objects.exclude(novel__title="a")) == [3, 4]
    assert pks(Writer.objects.exclude(novel__title="a", novel__pages=200)) == [1, 2, 3, 4]
    assert pks(Writer.objects.filter(~Q(novel__title="b"))) == [2, 3, 4]
    assert pks(Writer.objects.exclude(novel__reviews__stars__lt=4)) == [2, 3, 4]
    assert pks(Writer.objects.exclude(clubs__name="go")) == [1, 3, 4]
    assert pks(Genre.objects.exclude(novel__title__isnull=True)) == [1, 2]
    assert pks(Writer.objects.exclude(~Q(novel__title="b"))) == [1]
    assert pks(Writer.objects.filter(~Q(novel__title="b") | Q(novel__pages=200))) == [1, 2, 3, 4]
    for cond in (Q(novel__title="a"), Q(novel__pages__gt=150) | Q(bio__text="poet"),
                 Q(novel__reviews__stars__isnull=True), ~Q(clubs__name="chess"),
                 Q(novel__title="a", novel__pages=100), Q(edited_novel=3)):
        yes, no = set(pks(Writer.objects.filter(cond))), set(pks(Writer.objects.exclude(cond)))
        assert yes | no == {1, 2, 3, 4} and not yes & no, cond


def test_writes_across_multi_valued_relations_touch_each_row_once(data):
    assert Writer.objects.filter(novel__pages__gt=0).update(age=1) == 2
    assert pks(Writer.objects.filter(age=1)) == [1, 2]
    assert Writer.objects.exclude(clubs__name="chess").update(age=7) == 2
    assert pks(Writer.objects.filter(age=7)) == [3, 4]
    assert Review.objects.filter(novel__genres__name__in=["sf", "crime"]).delete()[0] == 3
    assert Review.objects.count() == 0
    assert Membership.objects.exclude(writer__novel__title="a").delete()[0] == 0
    assert pks(Club.objects.filter(members__age__gt=0)) == [1, 1, 2]  # chess: two members
    if qplan.backends.get(data).ON_DELETE_IN_DATABASE:  # DuckDB refuses referenced rows
        assert Club.objects.filter(members__age__gt=0).delete() == (
            5, {"relmodels.Club": 2, "relmodels.Membership": 3})


def test_subqueries_across_relations(data):
    crime = Novel.objects.filter(genres__name="crime").values("writer")
    assert pks(Writer.objects.filter(pk__in=crime)) == [1]
    assert pks(Novel.objects.filter(writer__in=Writer.objects.filter(clubs__name="go"))) == [3]
    assert pks(Writer.objects.exclude(pk__in=Writer.objects.filter(novel__title="b"))) == [2, 3, 4]


def test_unknown_names_and_accessors_raise_when_built():
    with pytest.raises(qplan.FieldError, match="did you mean 'novel'"):
        Writer.objects.filter(novle__title=1)
    with pytest.raises(qplan.FieldError, match="use 'novel' in queries"):
        Writer.objects.filter(novel_set__title="a")
    with pytest.raises(qplan.FieldError, match="use 'edited_novel' in queries"):
        Writer.objects.filter(edited__title="a")
    with pytest.raises(qplan.FieldError, match="did you mean 'genres'"):
        Novel.objects.values("genre__name")
    with pytest.raises(qplan.FieldError, match="did you mean 'title'"):
        Writer.objects.order_by("novel__titel")
    with pytest.raises(qplan.FieldError):
        Writer.objects.annotate(n=Count("novels"))
    annotated = Writer.objects.annotate(n=Count("bio"))
    with pytest.raises(qplan.FieldError, match="did you mean 'novel'"):
        annotated.filter(novle=1)
    with pytest.raises(qplan.FieldError, match="use 'novel' in queries"):
        annotated.order_by("novel_set")


def test_related_models_list_every_joined_model_with_through_models():
    assert set(Writer.objects.filter(clubs__name="x").related_models()) == {Club, Membership}
    assert set(Novel.objects.filter(genres__name="x").related_models()) == {Genre, NovelGenres}
    assert set(Novel.objects.filter(genres=1).related_models()) == {NovelGenres}
    assert set(Writer.objects.values("novel__reviews__stars").related_models()) == {Novel, Review}
    assert set(Writer.objects.annotate(n=Count("bio")).related_models()) == {Bio}
    assert set(Writer.objects.exclude(mentees__name="x").related_models()) == set()  # self


def test_models_pinned_to_other_aliases_cannot_be_joined_either_way():
    class PinA(qplan.Model):
        class Meta:
            using = "a"
            key = "tests.test_relation_paths.PinA"

    class PinB(qplan.Model):
        a = qplan.fields.ForeignKey(PinA, related_name="bs")
        tags = qplan.fields.ManyToManyField(PinA, related_name="tagged")

        class Meta:
            using = "b"
            key = "tests.test_relation_paths.PinB"

    for build in (lambda: PinA.objects.filter(bs__id=1), lambda: PinA.objects.filter(bs=1),
                  lambda: PinA.objects.filter(tagged=1), lambda: PinB.objects.filter(tags__id=2),
                  lambda: PinB.objects.values("tags__pk"), lambda: PinB.objects.filter(a__bs=1)):
        with pytest.raises(qplan.RoutingError, match="a plan cannot join them"):
            build()
    assert PinB.objects.filter(tags=2, a=1).records  # the through table lives with PinB: no join


@pytest.mark.parametrize("dialect", qplan.backends.names())
def test_plans_with_new_paths_load_retarget_and_compile(dialect):
    plan = (Writer.objects.filter(novel__title="a").exclude(clubs__name="go")
            .annotate(n=Count("novel__genres")).order_by("-n", "bio__text").values("name", "n"))
    for loaded in (pickle.loads(pickle.dumps(plan)), qplan.loads(qplan.dumps(plan)),
                   qplan.from_json(plan.to_json())):
        assert loaded.records == plan.records
    assert plan.using("other").records == plan.records
    assert plan.compile(dialect).sql
    # values differ, shape the same: one template
    assert plan.shape()[0] == (Writer.objects.filter(novel__title="zz").exclude(clubs__name="x")
                               .annotate(n=Count("novel__genres")).order_by("-n", "bio__text")
                               .values("name", "n")).shape()[0]


def test_a_negation_across_a_multi_valued_relation_cannot_see_annotations():
    plan = Writer.objects.annotate(n=Count("bio")).exclude(n__gt=1, novel__title="a")
    with pytest.raises(qplan.NotSupportedError, match="annotation"):
        plan.compile("sqlite")
    assert Writer.objects.annotate(n=Count("novel")).exclude(n__gt=1).compile("sqlite").sql
