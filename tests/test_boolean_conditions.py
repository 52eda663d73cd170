"""Boolean expressions as conditions (Django 3.0+): ``filter(Case(..., output_field=
BooleanField()))``, ``ExpressionWrapper(..., output_field=BooleanField())``, inside ``Q``,
``When(Exists(...))``, ``When(<boolean Case>)``; exclude() is the exact complement (a NULL
result counts as false), with the same rows on every backend (``any_db``)."""

from __future__ import annotations

import pickle

import pytest

import qplan
from qplan import Count, Exists, ExpressionWrapper, F, FieldError, OuterRef, Q, fields
from qplan.functions import Case, Lower, Value, When
from testmodels import Author, Book

BOOL = fields.BooleanField()


@pytest.fixture
def books(any_db):
    ann = Author.objects.create(name="Ann", email="ann@x")
    bob = Author.objects.create(name="Bob", email="bob@x")
    Book.objects.create(title="a", author=ann, pages=1, rating=0.5, is_active=True)
    Book.objects.create(title="b", author=ann, pages=1, rating=1.5, is_active=False)
    Book.objects.create(title="c", author=bob, pages=1, rating=2.5, is_active=True)
    Book.objects.create(title="d", author=None, pages=1, rating=None, is_active=False)
    return any_db


def titles(plan):
    return sorted(plan.values_list("title", flat=True))


def big(default=None):
    return Case(When(rating__gt=1.0, then=Value(True)), default=default, output_field=BOOL)


def test_boolean_case_filters_and_its_exclude_is_the_complement(books):
    assert titles(Book.objects.filter(big())) == ["b", "c"]
    assert titles(Book.objects.exclude(big())) == ["a", "d"]  # NULL (no default) counts false
    assert titles(Book.objects.filter(big(Value(False)))) == ["b", "c"]
    assert titles(Book.objects.filter(~Q(big()) | Q(title="c"))) == ["a", "c", "d"]
    assert titles(Book.objects.filter(big(), is_active=True)) == ["c"]
    assert titles(Book.objects.filter(Q(title="a") | big())) == ["a", "b", "c"]
    assert titles(Book.objects.filter(big() & Q(is_active=True))) == ["c"]
    assert titles(Book.objects.exclude(big() ^ big(Value(False)))) == ["a", "b", "c", "d"]
    wrapped = ExpressionWrapper(F("is_active"), output_field=BOOL)
    assert titles(Book.objects.filter(wrapped)) == ["a", "c"]
    assert titles(Book.objects.exclude(wrapped)) == ["b", "d"]


def test_boolean_annotations_by_name(books):
    plan = Book.objects.annotate(b=big())
    assert titles(plan.filter(b=True)) == ["b", "c"]
    assert titles(plan.exclude(b=True)) == ["a", "d"]


def test_when_takes_exists_and_boolean_cases(books):
    has_big = Exists(Book.objects.filter(author=OuterRef("pk"), rating__gt=2.0))
    plan = Author.objects.annotate(x=Case(When(has_big, then=Value("big")), default=Value("-")))
    assert sorted(plan.values_list("name", "x")) == [("Ann", "-"), ("Bob", "big")]
    plan = Book.objects.annotate(x=Case(When(big(), then=Value(1)), default=Value(0)))
    assert sorted(plan.values_list("title", "x")) == [("a", 0), ("b", 1), ("c", 1), ("d", 0)]


def test_boolean_expression_over_an_aggregate_goes_to_having(books):
    plan = Author.objects.annotate(n=Count("book")).filter(
        Case(When(n__gt=1, then=Value(True)), default=Value(False), output_field=BOOL))
    assert list(plan.values_list("name", flat=True)) == ["Ann"]


def test_non_boolean_expressions_are_refused_at_build():
    for bad in (Lower("title"), Case(When(pages__gt=1, then=Value(1)), default=Value(0)),
                ExpressionWrapper(F("pages"), output_field=fields.IntegerField())):
        with pytest.raises(FieldError, match="non-conditional"):
            Book.objects.filter(bad)
    with pytest.raises(TypeError):
        When(F("pages"), then=1)


def test_records_load_back_and_compile_everywhere():
    plan = Book.objects.filter(~Q(big()) | Q(title="c")).exclude(
        ExpressionWrapper(F("is_active"), output_field=BOOL))
    assert plan._records[0][1][0] in ("|", "!", "if")
    for again in (qplan.loads(qplan.dumps(plan)), qplan.from_json(plan.to_json()),
                  pickle.loads(pickle.dumps(plan)), plan.using("other")):
        assert again._records == plan._records
    for dialect in qplan.backends.names():
        assert "COALESCE" in plan.compile(dialect).sql
    repr(plan)
