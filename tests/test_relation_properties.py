"""Hypothesis properties of filters across reverse foreign keys and many-to-many relations:
every backend returns the same rows (as sorted primary-key multisets), and exclude(c) is the
exact complement of filter(c) (as primary-key sets), also where related rows are missing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qplan
from qplan import Q
from conftest import VENDORS, backend_settings
from relmodels import ALL, Bio, Club, Genre, Membership, Novel, NovelGenres, Review, Writer

REFERENCE, *OTHERS = VENDORS

texts = st.sampled_from(["a", "b", "c", "", "sf", "crime", "chess", "go", "poet", "ann", "bob"])
ints = st.sampled_from([0, 3, 4, 5, 30, 40, 100, 150, 200, 300])
keys = st.integers(0, 5)
TEXT = ["exact", "gt", "lt", "in", "isnull"]
NUMBER = ["exact", "gt", "lt", "in", "isnull"]
KEY = ["exact", "in", "isnull"]
PATHS = {
    Writer: {"novel__title": (texts, TEXT), "novel__pages": (ints, NUMBER),
             "novel__reviews__stars": (ints, NUMBER), "novel__genres__name": (texts, TEXT),
             "clubs__name": (texts, TEXT), "mentees__age": (ints, NUMBER),
             "edited_novel__pages": (ints, NUMBER), "bio__text": (texts, TEXT),
             "novel": (keys, KEY), "clubs": (keys, KEY), "age": (ints, NUMBER),
             "mentor__name": (texts, TEXT)},
    Genre: {"novel__title": (texts, TEXT), "novel__writer__name": (texts, TEXT),
            "novel__reviews__stars": (ints, NUMBER), "novel": (keys, KEY), "name": (texts, TEXT)},
    Novel: {"genres__name": (texts, TEXT), "reviews__stars": (ints, NUMBER), "genres": (keys, KEY),
            "writer__clubs__name": (texts, TEXT), "writer__novel__pages": (ints, NUMBER),
            "pages": (ints, NUMBER)},
}


def leaves(model):
    @st.composite
    def leaf(draw):
        path = draw(st.sampled_from(sorted(PATHS[model])))
        values, lookups = PATHS[model][path]
        lookup = draw(st.sampled_from(lookups))
        if lookup == "isnull":
            value = draw(st.booleans())
        elif lookup == "in":
            value = draw(st.lists(values, max_size=3))
        else:
            value = draw(values)
        return Q(**{f"{path}__{lookup}": value})
    return leaf()


def conditions(model):
    return st.recursive(leaves(model), lambda children: st.one_of(
        st.builds(lambda a, b: a & b, children, children),
        st.builds(lambda a, b: a | b, children, children),
        st.builds(lambda a: ~a, children)), max_leaves=4)


@st.composite
def cases(draw):
    model = draw(st.sampled_from([Writer, Genre, Novel]))
    steps = draw(st.lists(st.tuples(st.sampled_from(["filter", "exclude"]), conditions(model)),
                          min_size=1, max_size=2))
    return model, steps


@pytest.fixture
def everywhere(request):
    """The relation models' tables with a few rows (missing relations included) on an alias
    per backend, filled once per test: the properties only read."""
    qplan.configure(databases={v: backend_settings(request, v) for v in VENDORS})
    for alias in VENDORS:
        qplan.drop_tables(ALL, using=alias, missing_ok=True)
        qplan.create_tables(ALL, using=alias)
        fill(alias)
    yield
    qplan.connections.close_all()
    try:
        for alias in VENDORS:
            qplan.drop_tables(ALL, using=alias, missing_ok=True)
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})


def fill(alias: str) -> None:
    Writer.objects.using(alias).bulk_create([Writer(id=1, name="ann", age=30),
                                             Writer(id=4, name="", age=100)])  # mentors first
    Writer.objects.using(alias).bulk_create([
        Writer(id=2, name="bob", age=40, mentor_id=1), Writer(id=3, name="cid", age=0, mentor_id=1),
        Writer(id=5, name="eve", age=5, mentor_id=4)])
    Bio.objects.using(alias).bulk_create([Bio(id=1, writer_id=1, text="poet"),
                                          Bio(id=2, writer_id=2, text="")])
    Genre.objects.using(alias).bulk_create([Genre(id=1, name="sf"), Genre(id=2, name="crime"),
                                            Genre(id=3, name="poetry")])
    Novel.objects.using(alias).bulk_create([
        Novel(id=1, title="a", pages=100, writer_id=1, editor_id=2),
        Novel(id=2, title="b", pages=200, writer_id=1),
        Novel(id=3, title="a", pages=300, writer_id=2, editor_id=2),
        Novel(id=4, title="", pages=0), Novel(id=5, title="c", pages=150, writer_id=5, editor_id=1)])
    NovelGenres.objects.using(alias).bulk_create([
        NovelGenres(id=1, novel_id=1, genre_id=1), NovelGenres(id=2, novel_id=1, genre_id=2),
        NovelGenres(id=3, novel_id=2, genre_id=1), NovelGenres(id=4, novel_id=5, genre_id=2)])
    Review.objects.using(alias).bulk_create([
        Review(id=1, novel_id=1, stars=5), Review(id=2, novel_id=1, stars=3),
        Review(id=3, novel_id=2, stars=4), Review(id=4, novel_id=5, stars=0)])
    Club.objects.using(alias).bulk_create([Club(id=1, name="chess"), Club(id=2, name="go")])
    Membership.objects.using(alias).bulk_create([
        Membership(id=1, writer_id=1, club_id=1), Membership(id=2, writer_id=2, club_id=1),
        Membership(id=3, writer_id=2, club_id=2), Membership(id=4, writer_id=5, club_id=2)])


def pks(plan, alias: str) -> list[int]:
    return sorted(plan.using(alias).values_list("pk", flat=True))


def build(model, steps):
    plan = model.objects.all()
    for op, cond in steps:
        plan = getattr(plan, op)(cond)
    return plan


@given(cases())
def test_every_backend_returns_the_same_rows(everywhere, case):
    model, steps = case
    plan = build(model, steps)
    expected = pks(plan, REFERENCE)
    for alias in OTHERS:
        assert pks(plan, alias) == expected, f"{alias} differs for {steps!r}"


@given(cases())
def test_exclude_is_the_complement_of_filter(everywhere, case):
    model, steps = case
    cond = steps[0][1]
    every = set(pks(model.objects.all(), REFERENCE))
    for alias in VENDORS:
        yes = set(pks(model.objects.filter(cond), alias))
        no = set(pks(model.objects.exclude(cond), alias))
        assert yes | no == every and not yes & no, f"{alias}: {cond!r}"
