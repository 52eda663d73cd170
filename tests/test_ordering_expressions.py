"""Ordering by expressions and explicit NULL placement (Django 5.2's ``OrderBy``).

``F('x').asc()/desc(nulls_first=True | nulls_last=True)`` and any expression in
``order_by()`` give the same rows on every backend; NULLs go where Django puts them when
placed explicitly, else where qplan always puts them (the smallest value).
"""

from __future__ import annotations

import pytest

import qplan
from qplan import Count, F, FieldError, OrderBy, Sum
from qplan.shapecache import cache
from testmodels import Author, Book

KEY = "k" * 32
RATINGS = {"a": 2.0, "b": None, "c": 5.0, "d": None, "e": 1.0}


@pytest.fixture
def books(any_db):
    ann, bob = Author.objects.create(name="ann"), Author.objects.create(name="bob")
    Book.objects.bulk_create([Book(title=t, rating=r, pages=i * 10, author=ann if i % 2 else bob)
                              for i, (t, r) in enumerate(RATINGS.items())])


def titles(plan) -> list[str]:
    return list(plan.values_list("title", flat=True))


def test_nulls_first_and_last_in_both_directions(books):
    by = Book.objects.order_by
    assert titles(by(F("rating").desc(nulls_last=True), "title")) == ["c", "a", "e", "b", "d"]
    assert titles(by(F("rating").desc(nulls_first=True), "title")) == ["b", "d", "c", "a", "e"]
    assert titles(by(F("rating").asc(nulls_last=True), "title")) == ["e", "a", "c", "b", "d"]
    assert titles(by(F("rating").asc(nulls_first=True), "title")) == ["b", "d", "e", "a", "c"]
    # no placement given: qplan's NULLs-smallest order, as for "-rating"
    assert titles(by(F("rating").desc(), "title")) == titles(by("-rating", "title")) == \
        ["c", "a", "e", "b", "d"]


def test_order_by_arithmetic_and_aggregates(books):
    assert titles(Book.objects.order_by(F("pages") * -1)) == ["e", "d", "c", "b", "a"]
    assert titles(Book.objects.order_by((F("rating") + 1).desc(nulls_first=True), "-title")) == \
        ["d", "b", "c", "a", "e"]
    names = Author.objects.order_by(Sum("book__pages").desc()).values_list("name", flat=True)
    assert list(names) == ["bob", "ann"]  # 0 + 20 + 40 against 10 + 30
    counted = Author.objects.annotate(n=Count("book")).order_by(F("n").desc(), "name")
    assert list(counted.values_list("name", "n")) == [("bob", 3), ("ann", 2)]


def test_reverse_swaps_direction_and_null_placement(books):
    plan = Book.objects.order_by(F("rating").desc(nulls_last=True), "title")
    assert titles(plan.reverse()) == ["d", "b", "e", "a", "c"]
    assert plan.reverse().records[-1][1][0] == ("expr", ("F", "rating"), False, "first")
    assert plan.first().title == "c" and plan.last().title == "d"


def test_sliced_and_distinct_plans_order_by_expressions(books):
    plan = Book.objects.order_by(F("rating").asc(nulls_last=True), "title")
    assert titles(plan[1:3]) == ["a", "c"]
    assert plan.count() == 5 and titles(plan.filter(rating__gt=1.5)) == ["a", "c"]


# --- records, loading, shapes -----------------------------------------------------------------


def test_records_keep_names_and_add_a_term_only_for_expressions():
    assert Book.objects.order_by(F("title").desc(), F("pages")).records == \
        (("order_by", ("-title", "pages")),)
    plan = Book.objects.order_by("title", F("rating").desc(nulls_last=True), F("pages") + 1)
    assert plan.records == (("order_by", ("title", ("expr", ("F", "rating"), True, "last"),
                                          ("expr", ("+", ("F", "pages"), ("=", 1)), False, None))),)
    assert "nulls_last=True" in repr(plan)


def test_expression_orderings_load_retarget_and_compile_everywhere():
    plan = Book.objects.filter(pages__gt=1).order_by(
        F("rating").desc(nulls_first=True), (F("pages") * 2).asc(nulls_last=True), "-id")
    assert qplan.loads(qplan.dumps(plan)) == plan
    assert qplan.from_json(plan.to_json(KEY), KEY) == plan
    assert qplan.loads(qplan.dumps(plan.using("other"))).db == "other"
    for vendor in qplan.backends.names():
        assert "ORDER BY" in plan.compile(vendor).sql
    bad = Book.objects._derive((("order_by", (("expr", ("F", "rating"), True, "middle"),)),), None)
    with pytest.raises(qplan.UnsafePayload):
        qplan.loads(qplan.dumps(bad))
    # a bare F() term is the name it always was: another spelling is refused when loaded
    odd = Book.objects._derive((("order_by", (("expr", ("F", "rating"), True, None),)),), None)
    with pytest.raises(qplan.UnsafePayload):
        qplan.loads(qplan.dumps(odd))


def test_values_only_differences_share_one_template():
    cache.clear()
    for i in range(4):
        Book.objects.order_by((F("pages") + i).desc(nulls_last=True)).compile("postgresql")
    assert cache.misses == 1


def test_mistakes_are_refused_when_the_plan_is_built():
    with pytest.raises(ValueError, match="mutually exclusive"):
        F("rating").desc(nulls_first=True, nulls_last=True)
    with pytest.raises(ValueError, match="True or None"):
        F("rating").asc(nulls_first=False)
    with pytest.raises(FieldError, match="field names and expressions"):
        Book.objects.order_by(3)
    with pytest.raises(FieldError, match="ratin"):
        Book.objects.order_by(F("ratin").desc(nulls_last=True))
    with pytest.raises(FieldError, match="ordering"):
        Book.objects.order_by(OrderBy(F("rating").desc()))
    with pytest.raises(FieldError, match="not by an ordering or a value"):
        Book.objects.order_by(OrderBy("rating"))
    with pytest.raises(FieldError):
        Book.objects.order_by((F("title") + 1).asc())
