"""Case/When/Value: Django 5.2's conditional expressions in annotate, filter, aggregates,
update and ordering through an annotation, with the same rows on every backend."""

from __future__ import annotations

import decimal

import pytest

import qplan
from qplan import Count, F, FieldError, Q, Sum, fields
from qplan.functions import Case, Length, Lower, Value, When
from testmodels import Author, Book

D = decimal.Decimal


@pytest.fixture
def books(any_db):
    ann = Author.objects.create(name="Ann")
    Book.objects.create(title="a", author=ann, pages=10, is_active=True, rating=1.0)
    Book.objects.create(title="b", author=None, pages=200, is_active=False, rating=None)
    Book.objects.create(title="c", author=ann, pages=500, is_active=True, rating=4.5)
    return any_db


def by_title(plan, *names):
    return [tuple(r[n] for n in names) for r in plan.order_by("title").values(*names)]


def test_case_in_annotate_with_values_fields_and_functions(books):
    plan = Book.objects.annotate(
        size=Case(When(pages__lt=100, then=Value("short")), When(pages__lt=300, then=Value("mid")),
                  default=Value("long")),
        score=Case(When(rating__isnull=True, then=0.0), default=F("rating") * 2),
        who=Case(When(author__name="Ann", then=Lower("author__name")), default=Value("-")),
        none=Case(When(is_active=False, then=F("pages"))),
        lenient=Case(When(Q(title="a") | Q(pages__gt=400), then=Length("title") + 1), default=0))
    assert by_title(plan, "size", "score", "who", "none", "lenient") == [
        ("short", 2.0, "ann", None, 2), ("mid", 0.0, "-", 200, 0), ("long", 9.0, "ann", None, 2)]


def test_active_first_through_an_annotation(books):
    plan = Book.objects.annotate(rank=Case(When(is_active=True, then=0), default=1))
    assert list(plan.order_by("rank", "-pages").values_list("title", flat=True)) == ["c", "a", "b"]
    assert list(plan.filter(rank=1).values_list("title", flat=True)) == ["b"]
    direct = Book.objects.order_by(Case(When(is_active=True, then=0), default=1), "-pages")
    assert list(direct.values_list("title", flat=True)) == ["c", "a", "b"]
    assert list(Book.objects.order_by(Lower("title").desc()).values_list("title", flat=True)) == [
        "c", "b", "a"]
    again = qplan.loads(qplan.dumps(direct))
    assert again._records == direct._records


def test_case_in_filter_rhs_aggregate_and_update(books):
    half = Case(When(is_active=True, then=F("pages") / 2), default=F("pages"))
    assert sorted(Book.objects.filter(pages__gt=half).values_list("title", flat=True)) == ["a", "c"]
    assert Book.objects.aggregate(active=Sum(Case(When(is_active=True, then=1), default=0)),
                                  n=Count(Case(When(pages__gt=100, then=F("id"))))) == {
        "active": 2, "n": 2}
    grouped = Author.objects.annotate(big=Sum(Case(When(book__pages__gt=100, then=1), default=0)))
    assert list(grouped.values_list("name", "big")) == [("Ann", 1)]
    assert Book.objects.update(pages=Case(When(is_active=False, then=0), default=F("pages") + 1)) == 3
    assert by_title(Book.objects.all(), "pages") == [(11,), (0,), (501,)]


def test_output_field_and_inference(books):
    plan = Book.objects.annotate(p=Case(When(pages__gt=100, then=Value("1.50")), default=Value("0"),
                                        output_field=fields.DecimalField(max_digits=5,
                                                                         decimal_places=2)))
    assert [r[0] for r in by_title(plan, "p")] == [D("0"), D("1.50"), D("1.50")]
    mixed = Case(When(pages__gt=1, then=1), default=2.5)  # numbers mix: float
    assert [r[0] for r in by_title(Book.objects.annotate(m=mixed), "m")] == [1.0, 1.0, 1.0]


def test_mistakes_are_field_errors_at_build():
    with pytest.raises(FieldError, match="condition"):
        When(then=1)
    with pytest.raises(FieldError, match="condition"):
        When(Q(), then=1)
    with pytest.raises(FieldError, match="mixes"):
        Book.objects.annotate(x=Case(When(pages=1, then=Value("a")), default=1))
    with pytest.raises(FieldError):
        Book.objects.annotate(x=Case(When(pagez=1, then=1)))
    with pytest.raises(FieldError, match="When"):
        Book.objects.annotate(x=Case())
    with pytest.raises(FieldError, match="output_field"):
        Book.objects.annotate(x=Case(When(pages=1, then=1), output_field="NoField"))
    with pytest.raises(TypeError):
        Case(Q(pages=1))


def test_case_records_load_and_share_templates():
    plan = Book.objects.annotate(k=Case(When(pages__gt=10, author__name="x", then=Value("a")),
                                        When(Q(is_active=True) | Q(rating=None), then="title"),
                                        default=Value(None))).filter(k="a")
    for again in (qplan.loads(qplan.dumps(plan)), qplan.from_json(plan.to_json())):
        assert again._records == plan._records
    assert "Case(When(" in repr(plan)
    for dialect in qplan.backends.names():
        plan.compile(dialect)
    qplan.compile_cache.clear()
    Book.objects.annotate(k=Case(When(pages__gt=1, then=Value("a")), default=Value("b"))).compile(
        "mysql")
    misses = qplan.compile_cache.misses
    Book.objects.annotate(k=Case(When(pages__gt=9, then=Value("x")), default=Value("y"))).compile(
        "mysql")
    assert qplan.compile_cache.misses == misses


def test_the_public_names_are_importable_from_qplan():
    import qplan.functions as functions_module
    assert (qplan.Case, qplan.When, qplan.Value) == (
        functions_module.Case, functions_module.When, functions_module.Value)
    assert qplan.functions is functions_module and "functions" in qplan.__all__
