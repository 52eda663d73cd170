"""Django 5.2's meaning for queries a Django user writes (issue 12): each test runs on
every backend through ``any_db`` and pins what Django returns on the same rows."""

from __future__ import annotations

import decimal

import pytest

import qplan
from qplan import Count, ExpressionWrapper, F, Min, Q, Sum, fields
from testmodels import Author, Book

D = decimal.Decimal


@pytest.fixture
def shelf(any_db):
    """Two authors; five books: titles repeat, ann has an inactive one, one has no author."""
    ann, bob = Author.objects.bulk_create([Author(id=1, name="ann"), Author(id=2, name="bob")])
    Book.objects.bulk_create([
        Book(id=1, title="x", author=ann, pages=10, is_active=True),
        Book(id=2, title="x", author=ann, pages=20, is_active=False),
        Book(id=3, title="y", author=ann, pages=30, is_active=True),
        Book(id=4, title="y", author=bob, pages=40, is_active=True),
        Book(id=5, title="z", author=None, pages=50, is_active=True),
    ])
    return ann, bob


# --- a second values() keeps the grouping of values().annotate() ---------------------------------


def test_values_after_a_grouped_annotate_keeps_the_groups(shelf):
    per_title = Book.objects.values("title").annotate(n=Count("id")).values("n")
    assert sorted(r["n"] for r in per_title) == [1, 2, 2]
    per_author = Book.objects.values("author").annotate(n=Count("id"))
    assert sorted(per_author.values_list("n", flat=True)) == [1, 1, 3]
    assert per_author.values_list("n", flat=True).count() == 3


def test_values_after_grouping_by_two_keys_selects_only_what_it_names(shelf):
    rows = Book.objects.values("author", "is_active").annotate(n=Count("id")).values("author")
    assert sorted(rows, key=lambda r: (r["author"] is None, r["author"] or 0)) == \
        [{"author": 1}, {"author": 1}, {"author": 2}, {"author": None}]  # grouped by both keys


def test_values_after_grouping_with_order_by_runs(shelf):
    plan = Book.objects.values("title").annotate(n=Count("id"))
    assert list(plan.order_by().values("n").order_by("n")) == [{"n": 1}, {"n": 2}, {"n": 2}]
    assert list(plan.order_by("title").values("n")) == [{"n": 2}, {"n": 2}, {"n": 1}]
    assert list(plan.order_by("-title").values_list("title", "n")) == \
        [("z", 1), ("y", 2), ("x", 2)]


# --- an aggregate's type follows the aggregate ----------------------------------------------------


def test_sum_of_booleans_is_the_number_of_true_values(shelf):
    got = Book.objects.aggregate(x=Sum("is_active"))
    assert got == {"x": 4} and type(got["x"]) is int
    rows = Book.objects.values("title").annotate(x=Sum("is_active")).order_by("title")
    assert [(r["title"], r["x"], type(r["x"])) for r in rows] == \
        [("x", 1, int), ("y", 2, int), ("z", 1, int)]


# --- keys are the names the user wrote ------------------------------------------------------------


def test_values_keys_are_the_names_written(shelf):
    plan = Book.objects.filter(pk=1)
    assert list(plan.values("pk")) == [{"pk": 1}]
    assert list(plan.values("author__id")) == [{"author__id": 1}]
    assert list(plan.values("author", "author__id", "author_id")) == \
        [{"author": 1, "author__id": 1, "author_id": 1}]
    row = plan.values_list("pk", "author__id", named=True).get()
    assert row._fields == ("pk", "author__id") and tuple(row) == (1, 1)
    assert Book.objects.values("pk") != Book.objects.values("id")  # different keys, different plans
    assert qplan.loads(qplan.dumps(plan.values("pk"))) == plan.values("pk")


# --- arithmetic is type-checked when the plan is built --------------------------------------------


@pytest.mark.parametrize("build", [
    lambda: Book.objects.aggregate_plan(a=Min("published") + 1),
    lambda: Book.objects.annotate(x=F("title") + 1),
    lambda: Book.objects.filter(pages__gt=F("published") - 1),
    lambda: Book.objects.update_plan(pages=F("is_active") * 2),
    lambda: Book.objects.annotate(d=F("published")).annotate(x=F("d") + F("pages")),
])
def test_arithmetic_on_non_numbers_fails_when_built(build):
    with pytest.raises(qplan.FieldError, match="output_field"):
        build()


def test_output_field_says_what_arithmetic_is(shelf, any_db):
    wrapped = ExpressionWrapper(F("title") + 1, output_field=fields.IntegerField())
    plan = Book.objects.annotate(x=wrapped)
    for dialect in qplan.backends.names():
        plan.compile(dialect)  # builds and compiles offline everywhere
    assert qplan.loads(qplan.dumps(plan)) == plan
    as_float = Book.objects.filter(pk=1).annotate(
        x=ExpressionWrapper(F("pages") + 1, output_field=fields.FloatField())).values_list("x", flat=True)
    assert [(v, type(v)) for v in as_float] == [(11.0, float)]
    got = Book.objects.aggregate(
        a=ExpressionWrapper(Sum("pages") * 2, output_field=fields.DecimalField(max_digits=9, decimal_places=0)))
    assert got == {"a": D(300)} and type(got["a"]) is D


def test_negation_and_mixed_numbers(shelf):
    rows = Book.objects.order_by("pages").annotate(n=-F("pages"), m=F("pages") * 0.5)
    assert [(b.n, b.m) for b in rows][:2] == [(-10, 5.0), (-20, 10.0)]
    assert Book.objects.filter(pages__lt=-F("pages") + 30).count() == 1


# --- valid input that used to crash -----------------------------------------------------------------


def test_an_empty_q_matches_every_row(shelf):
    assert Book.objects.filter(Q()).count() == 5
    assert Book.objects.filter(Q()) == Book.objects.all()
    assert Book.objects.filter(~Q(), Q(Q(), pages=10)).count() == 1
    assert Book.objects.exclude(Q()).count() == 5
    assert Book.objects.filter(Q() | Q(pages=10)).count() == 1  # the empty side drops out
    assert Book.objects.filter(Q(pages=10) & Q()).count() == 1
    assert Book.objects.filter(Q(Q(), Q(pages=10), _connector="|")).count() == 5


def test_aggregate_expressions_over_a_slice_or_distinct_rows(shelf):
    assert Book.objects.order_by("id")[0:2].aggregate(a=Sum("pages") + 1) == {"a": 31}
    assert Book.objects.values("title").distinct().aggregate(n=Count("*") * 2) == {"n": 6}
    got = Book.objects.values("is_active").distinct().aggregate(s=Sum("is_active") - 1)
    assert got == {"s": 0}
    assert Book.objects.all()[0:5].aggregate(a=Sum("pages") + 1, b=Count("*")) == {"a": 151, "b": 5}


def test_aggregate_of_nothing_is_an_empty_dict(shelf):
    assert Book.objects.aggregate() == {}
    assert Book.objects.filter(pages__gt=1000).aggregate() == {}


def test_xor_is_true_for_an_odd_number_of_operands(shelf):
    def ids(plan):
        return sorted(plan.values_list("id", flat=True))

    x = Q(title="x") ^ Q(pages__gte=20)
    assert ids(Book.objects.filter(x)) == [1, 3, 4, 5]  # 2 is both
    assert ids(Book.objects.exclude(x)) == [2]
    three = Q(title="y") ^ Q(pages__gte=20) ^ Q(is_active=True)
    assert three.connector == "^" and len(three.children) == 3
    assert ids(Book.objects.filter(three)) == [1, 2, 3, 4]  # 5 has two
    # NULL counts as false on every backend: books without an author have author__name NULL
    nullable = Q(author__name="ann") ^ Q(pages__gte=40)
    assert ids(Book.objects.filter(nullable)) == [1, 2, 3, 4, 5]
    assert ids(Book.objects.filter(~nullable)) == []
    assert ids(Book.objects.filter(Q(author__name="bob") ^ Q(pages__gte=40))) == [5]
    assert ids(Book.objects.filter(Q() ^ Q(pages=10))) == [1]
    plan = Book.objects.filter(x)
    assert qplan.loads(qplan.dumps(plan)) == plan and "^" in repr(plan)


def test_a_one_column_plan_is_a_subquery_for_in(shelf):
    def ids(plan):
        return sorted(plan.values_list("id", flat=True))

    anns = Author.objects.filter(name__startswith="a")
    assert ids(Book.objects.filter(author__in=anns.values("id"))) == [1, 2, 3]
    assert ids(Book.objects.filter(author__in=anns.values_list("id", flat=True))) == [1, 2, 3]
    assert ids(Book.objects.filter(author__in=anns)) == [1, 2, 3]  # a model plan: its pk
    assert ids(Book.objects.exclude(author__in=anns.values("pk"))) == [4, 5]
    long = Book.objects.filter(pages__gte=30).values("author_id")
    assert ids(Author.objects.filter(id__in=long)) == [1, 2]
    first = Book.objects.order_by("pages")[1:3].values_list("pages", flat=True)  # sliced
    assert ids(Book.objects.filter(pages__in=first, title__in=["x", "y"])) == [2, 3]
    assert Book.objects.filter(author__in=anns.values("id")).count() == 3
    assert Book.objects.filter(author__in=anns.values("id")).update(pages=0) == 3
    short = Book.objects.filter(pages=0).values("id")
    assert Book.objects.filter(id__in=short).update(pages=1) == 3  # reads the table it writes
    assert Book.objects.filter(id__in=short.filter(title="x")).delete() == (0, {})
    assert Book.objects.filter(id__in=Book.objects.filter(pages=1, title="x")).delete()[0] == 2
    # one plain record, replayed: the inner plan's model key and records; no alias of its own
    plan = Book.objects.filter(author__in=anns.values("id"))
    assert plan == Book.objects.filter(author__in=anns.using("elsewhere").values("id"))
    assert qplan.loads(qplan.dumps(plan)) == plan and plan.related_models() == (Author,)
    assert "Author.objects.filter(" in repr(plan)
    for dialect in qplan.backends.names():
        sql, params = plan.compile(dialect)
        assert "IN (SELECT" in sql and params == ("a%",)


@pytest.mark.parametrize("build, error", [
    (lambda: Book.objects.filter(author__in=Author.objects.values("id", "name")), "one column"),
    (lambda: Book.objects.filter(author__exact=Author.objects.values("id")), "subquery for 'in'"),
])
def test_what_is_not_a_subquery_fails_when_built(build, error):
    with pytest.raises((qplan.PlanError, qplan.FieldError), match=error):
        build()
