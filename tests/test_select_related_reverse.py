"""select_related over reverse one-to-ones and chains mixing directions, the caches it
fills both ways (Django 5.2), and the INNER JOINs it uses where a row is always there."""

from __future__ import annotations

import pytest

import qplan
from relmodels import Bio, Novel, Review, Writer
from conftest import statements
from test_select_related import fill


def test_reverse_one_to_one_fills_both_caches(rel_db, monkeypatch):
    fill()  # only Bob has a bio
    plan = Writer.objects.select_related("bio").order_by("name")
    with statements(monkeypatch) as seen:
        ann, bob, cy = list(plan)
        assert bob.bio.text == "bob's" and bob.bio.writer is bob  # no query either way
        for w in (ann, cy):
            with pytest.raises(Writer.bio.RelatedObjectDoesNotExist):
                w.bio
            assert not hasattr(w, "bio")
    assert len(seen) == 1 and "LEFT" in seen[0].upper()
    assert ann.__dict__["_cache_bio"] is None and bob.bio._db == "default"
    assert plan.related_models() == (Bio,)


def test_chains_mixing_directions(rel_db, monkeypatch):
    fill()
    Bio.objects.create(writer=Writer.objects.get(name="Ann"), text="ann's")
    with statements(monkeypatch) as seen:
        novels = list(Novel.objects.select_related("writer__bio").order_by("title"))
        got = []
        for n in novels:
            w = n.writer
            bio = w and w.__dict__["_cache_bio"]
            got.append((n.title, w and w.name, bio and bio.text, bio and bio.writer is w))
        bios = list(Bio.objects.select_related("writer__mentor").order_by("text"))
        mentors = [(b.text, b.writer.name, b.writer.mentor and b.writer.mentor.name) for b in bios]
    assert got == [("A1", "Ann", "ann's", True), ("B1", "Bob", "bob's", True),
                   ("C1", "Cy", None, None), ("N1", None, None, None)]
    assert mentors == [("ann's", "Ann", None), ("bob's", "Bob", "Ann")]
    assert len(seen) == 2


def test_forward_one_to_one_fills_the_reverse_cache(rel_db, monkeypatch):
    fill()
    with statements(monkeypatch) as seen:
        [bio] = list(Bio.objects.select_related("writer"))
        assert bio.writer.name == "Bob" and bio.writer.bio is bio
    assert len(seen) == 1
    [review_less] = list(Novel.objects.select_related("writer").filter(title="A1"))
    assert "_cache_novel_set" not in review_less.writer.__dict__  # a foreign key: a manager


def test_names_and_records():
    with pytest.raises(qplan.FieldError, match="'nothing'. Choices are: writer"):
        Writer.objects.select_related("bio__nothing")
    with pytest.raises(qplan.FieldError, match="did you mean 'bio'"):
        Writer.objects.select_related("bip")
    plan = Novel.objects.select_related("writer__bio")
    assert plan.records[-1] == ("select_related", "writer__bio")
    assert qplan.loads(qplan.dumps(plan)) == plan and qplan.from_json(plan.to_json()) == plan
    for backend in qplan.backends.names():
        assert "rel_bio" in plan.compile(backend).sql


def test_inner_join_only_where_a_row_is_always_there():
    def joins(plan):
        sql = plan.compile("sqlite").sql.upper()
        return sql.count("INNER JOIN"), sql.count("LEFT JOIN")

    assert joins(Review.objects.select_related("novel")) == (1, 0)  # non-null foreign key
    assert joins(Bio.objects.select_related("writer")) == (1, 0)  # non-null one-to-one
    assert joins(Review.objects.select_related("novel__writer")) == (1, 1)  # nullable after
    assert joins(Novel.objects.select_related("writer")) == (0, 1)  # nullable
    assert joins(Writer.objects.select_related("bio")) == (0, 1)  # reverse
    assert joins(Bio.objects.select_related("writer__mentor")) == (1, 1)
    assert joins(Review.objects.filter(novel__title="x")) == (1, 0)
    assert joins(Review.objects.filter(qplan.Q(novel__writer__name="x") | qplan.Q(stars=1))) \
        == (1, 1)
    assert joins(Writer.objects.filter(novel__reviews__stars=1)) == (0, 2)  # many: LEFT after
    for backend in qplan.backends.names():
        sql = Review.objects.select_related("novel").compile(backend).sql
        facts = qplan.backends.get(backend)
        if facts.ENFORCES_FOREIGN_KEYS and facts.INNER_JOINS:
            assert "INNER JOIN" in sql
        else:  # MariaDB: LEFT JOIN for its planner's sake (same rows)
            assert "LEFT JOIN" in sql and "INNER" not in sql


def test_inner_joins_keep_the_rows(rel_db):
    fill()
    novels = {n.title: n for n in Novel.objects.all()}
    for title, stars in (("A1", 1), ("B1", 5), ("N1", 3)):
        Review.objects.create(novel=novels[title], stars=stars)
    q = qplan.Q(novel__writer__name="Ann") | qplan.Q(stars__gte=3)
    assert sorted(Review.objects.filter(q).values_list("stars", flat=True)) == [1, 3, 5]
    assert sorted(Review.objects.exclude(novel__writer__name="Ann")
                  .values_list("stars", flat=True)) == [3, 5]
    got = sorted((r.stars, r.novel.title, r.novel.writer and r.novel.writer.name)
                 for r in Review.objects.select_related("novel__writer"))
    assert got == [(1, "A1", "Ann"), (3, "N1", None), (5, "B1", "Bob")]
