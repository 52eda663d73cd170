"""union(), intersection(), difference(): Django 5.2's meaning, the same rows on every backend.

The plan side is ``qplan.setops`` (the combine record and its checks), the SQL side
``qplan.compound``. Rows are compared with Python's own set operations.
"""

from __future__ import annotations

import collections
import contextlib
import decimal
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qplan
from conftest import VENDORS, rolled_back
from qplan import Count, FieldError, NotSupportedError, PlanError
from qplan.replay import replay
from testmodels import Author, Book

D = decimal.Decimal
KEY = b"k" * 32


def make_books():
    ann = Author.objects.create(name="Ann", email="ann@x")
    bob = Author.objects.create(name="Bob", email=None)
    rows = [("a", 1, None, ann), ("b", 2, 1.5, ann), ("b", 3, None, bob), ("c", 4, 2.5, None),
            ("d", 5, None, bob)]
    Book.objects.bulk_create([Book(title=t, pages=p, rating=r, author=a) for t, p, r, a in rows])
    return ann, bob


def ids(plan):
    return sorted(b.id for b in plan)


def pages(plan):
    return sorted(b.pages for b in plan)


# --- rows on every backend -------------------------------------------------------------------------


def test_model_plans_combine_as_sets(any_db):
    make_books()
    small, ann = Book.objects.filter(pages__lte=3), Book.objects.filter(author__name="Ann")
    assert pages(small.union(Book.objects.filter(pages__gte=3))) == [1, 2, 3, 4, 5]
    assert pages(small.union(ann, all=True)) == [1, 1, 2, 2, 3]
    assert pages(small.union(ann)) == [1, 2, 3]
    assert pages(small.intersection(Book.objects.filter(pages__gte=2))) == [2, 3]
    assert pages(small.difference(ann)) == [3]
    assert pages(small.union(ann, Book.objects.filter(pages=5))) == [1, 2, 3, 5]
    assert pages(small.intersection(ann, Book.objects.filter(pages=2))) == [2]
    assert pages(small.union()) == [1, 2, 3]
    first = small.union(ann).order_by("-pages").first()
    assert isinstance(first, Book) and first.pages == 3 and first.author_id is not None


def test_values_plans_of_the_same_width_combine_across_fields_and_models(any_db):
    make_books()
    titles = Book.objects.values_list("title", flat=True)
    assert sorted(titles.union(titles.filter(pages__gt=2))) == ["a", "b", "c", "d"]
    assert sorted(titles.union(titles, all=True)) == sorted(["a", "b", "b", "c", "d"] * 2)
    names = Author.objects.values_list("name", flat=True)
    assert sorted(titles.union(names)) == ["Ann", "Bob", "a", "b", "c", "d"]
    assert list(Book.objects.values("title", "notes").filter(pages=1).union(
        Author.objects.values("name", "email").filter(name="Ann"))
        .order_by("title")) == [{"title": "Ann", "notes": "ann@x"}, {"title": "a", "notes": ""}]
    # the rows take the first operand's names and kinds
    assert list(Book.objects.filter(pages=2).values_list("title", "rating", named=True)
                .union(Book.objects.filter(pages=4).values_list("notes", "rating"))
                .order_by("rating")) == [("b", 1.5), ("", 2.5)]


def test_nulls_compare_equal_and_duplicates_follow_all(any_db):
    make_books()
    ratings = Book.objects.values_list("rating", flat=True)
    assert sorted(ratings.union(ratings), key=str) == [1.5, 2.5, None]
    assert collections.Counter(ratings.union(ratings.filter(pages=1), all=True))[None] == 4
    assert list(ratings.filter(pages=1).intersection(ratings.filter(pages=3))) == [None]
    assert list(ratings.filter(pages=1).difference(ratings.filter(pages=5))) == []
    emails = Author.objects.values_list("email", flat=True)
    assert sorted(emails.union(emails, all=True), key=str) == [None, None, "ann@x", "ann@x"]


def test_order_slice_count_exists_get_after_combining(any_db):
    make_books()
    combined = Book.objects.filter(pages__lte=2).union(Book.objects.filter(pages__gte=4))
    assert [b.pages for b in combined.order_by("-pages")] == [5, 4, 2, 1]
    assert [b.pages for b in combined.order_by("pages")[1:3]] == [2, 4]
    assert [b.pages for b in combined.order_by("rating", "-pages")] == [5, 1, 2, 4]  # NULLs first
    assert [b.pages for b in combined.order_by("-rating", "pages")] == [4, 2, 1, 5]
    assert combined.count() == 4 and combined.order_by("pages")[3:].count() == 1
    assert combined.exists() and not combined.order_by("pages")[9:].exists()
    assert combined.order_by("pages").last().pages == 5 and combined.first().pages == 1
    assert combined.order_by("pages")[0].pages == 1
    assert Book.objects.filter(pages=1).union(Book.objects.filter(pages=1)).get().pages == 1
    with pytest.raises(Book.MultipleObjectsReturned):
        combined.get()
    assert list(combined.order_by("-title").values_list("title", flat=True)) == ["d", "c", "b", "a"]
    assert [b.pages for b in combined.order_by("author", "pages")] == [4, 1, 2, 5]
    assert list(combined.values_list("pages", flat=True).order_by("pages").reverse()) == [5, 4, 2, 1]
    with pytest.raises(FieldError, match="ordered by"):
        combined.order_by("id").values("pages")


def test_values_after_combining_model_plans_selects_in_every_operand(any_db):
    make_books()
    b_books = Book.objects.filter(title="b")
    # Django pushes values() into each operand: duplicates are judged on the title alone
    assert list(b_books.union(b_books.filter(pages=2)).values_list("title", flat=True)) == ["b"]
    assert list(b_books.union(Book.objects.filter(pages=1)).values("title").order_by("title")) \
        == [{"title": "a"}, {"title": "b"}]
    assert b_books.union(b_books).values("title").count() == 1
    # after combining values() plans, values() picks among their columns
    pairs = Book.objects.values_list("title", "pages")
    assert sorted(pairs.union(pairs).values_list("title", flat=True)) == ["a", "b", "b", "c", "d"]


def test_operands_with_order_and_slices_run_as_derived_tables(any_db):
    make_books()
    top = Book.objects.order_by("-pages")[:2]
    low = Book.objects.order_by("pages")[:1]
    assert pages(top.union(low)) == [1, 4, 5]
    assert pages(top.difference(low)) == [4, 5]
    assert pages(Book.objects.order_by("pages")[1:3].intersection(top)) == []
    assert pages(Book.objects.order_by("-title", "-pages").distinct()[:3].union(low, all=True)) == [1, 3, 4, 5]


def test_combined_plans_nest(any_db):
    make_books()
    one, two, three = (Book.objects.filter(pages=n) for n in (1, 2, 3))
    nested = one.union(two).union(three.union(two), all=True)
    assert pages(nested) == [1, 2, 2, 3]
    assert pages(one.union(two, three).difference(two)) == [1, 3]
    assert nested.values_list("pages", flat=True).order_by("-pages")[:2].count() == 2
    assert sorted(one.union(two).union(three).values_list("title", flat=True)) == ["a", "b"]


def test_annotated_model_plans_combine_when_their_annotations_match(any_db):
    ann, bob = make_books()
    counted = Author.objects.annotate(n=Count("book"))
    rows = counted.filter(name="Ann").union(counted.filter(n__gte=2)).order_by("-n", "name")
    assert [(a.name, a.n) for a in rows] == [("Ann", 2), ("Bob", 2)]
    with pytest.raises(FieldError, match="annotations must match"):
        counted.union(Author.objects.all())


# --- what may follow, what may be combined ---------------------------------------------------------


def test_only_what_django_allows_follows_a_set_operation():
    combined = Book.objects.filter(pages=1).union(Book.objects.filter(pages=2))
    with pytest.raises(NotSupportedError, match=r"Calling QuerySet.filter\(\) after union\(\)"):
        combined.filter(pages=3)
    for call in (lambda p: p.exclude(pages=3), lambda p: p.annotate(n=Count("id")),
                 lambda p: p.distinct(), lambda p: p.select_related("author"),
                 lambda p: p.prefetch_related("author"), lambda p: p.aggregate(n=Count("id")),
                 lambda p: p.update(pages=1), lambda p: p.delete()):
        with pytest.raises(NotSupportedError, match="after union"):
            call(combined)
    with pytest.raises(NotSupportedError, match=r"QuerySet.exclude\(\) after difference\(\)"):
        Book.objects.difference(Book.objects).exclude(pages=1)
    with pytest.raises(PlanError, match="slice"):
        combined[:2].order_by("pages")
    with pytest.raises(FieldError, match="did you mean 'pages'"):
        combined.order_by("-pagse")
    with pytest.raises(FieldError, match="combined rows"):
        Book.objects.values("title").union(Book.objects.values("notes")).order_by("pages")
    with pytest.raises(FieldError, match="combined rows"):
        Book.objects.values("title").union(Book.objects.values("notes")).values("notes")


def test_operands_must_select_the_same_columns():
    titles = Book.objects.values_list("title")
    with pytest.raises(FieldError, match="2 columns, the first 1"):
        titles.union(Book.objects.values_list("title", "pages"))
    with pytest.raises(FieldError, match="IntegerField values where the first's 'title' holds CharField"):
        titles.intersection(Book.objects.values_list("pages"))
    with pytest.raises(FieldError, match="same model"):
        Book.objects.union(Author.objects.all())
    with pytest.raises(FieldError, match="same model"):
        Book.objects.union(titles)
    with pytest.raises(PlanError, match="ending in count"):
        Book.objects.union(Book.objects._add(("count",)))
    with pytest.raises(PlanError, match="combines plans"):
        Book.objects.union([1, 2])
    with pytest.raises(PlanError, match="takes a bool"):
        Book.objects.union(Book.objects, all=1)
    with pytest.raises(TypeError):
        Book.objects.intersection(Book.objects, all=True)


# --- a plan value: pickles, loads, compiles offline, shares templates ------------------------------


def combined_plans():
    one = Book.objects.filter(pages__gt=1, title__startswith="x")
    return [
        one.union(Book.objects.order_by("-id")[2:5], all=True).order_by("-pages")[1:4],
        one.values_list("title", flat=True).intersection(Author.objects.values_list("name")),
        one.difference(one.union(Book.objects.filter(rating=None))).values("title")._add(("count",)),
        Author.objects.annotate(n=Count("book")).union(Author.objects.annotate(n=Count("id")))
        ._add(("exists",)),
    ]


@pytest.mark.parametrize("plan", combined_plans(), ids=range(4))
def test_a_combined_plan_pickles_loads_retargets_and_compiles_offline(plan):
    assert pickle.loads(pickle.dumps(plan)) == plan and len(pickle.dumps(plan)) < 1000
    assert qplan.loads(qplan.dumps(plan, key=KEY), key=KEY) == plan
    assert qplan.from_json(plan.to_json(KEY), key=KEY) == plan
    assert replay(plan.model, plan.records, "x") == plan.using("x")
    assert plan.using("other").records == plan.records
    for dialect in qplan.backends.names():
        sql, params = plan.compile(dialect)
        assert "UNION" in sql or "INTERSECT" in sql or "EXCEPT" in sql
    assert "union(" in repr(plan) or "intersection(" in repr(plan) or "difference(" in repr(plan)


def test_replay_refuses_forged_combine_records():
    good = Book.objects.union(Book.objects.filter(pages=1)).records[0]
    for bad in [("combine", "union", False, ()), ("combine", "join", False, good[3]),
                ("combine", "difference", True, good[3]),
                ("combine", "union", False, (("testmodels.Author", ()),) + good[3][1:]),
                ("combine", "union", "yes", good[3])]:
        with pytest.raises(PlanError):
            replay(Book, (bad,), None)
    with pytest.raises(PlanError):
        replay(Book, (("filter", ("pages", "exact", ("=", 1))), good), None)


def test_plans_differing_only_in_values_share_one_template():
    qplan.compile_cache.clear()

    def plan(a, b, n):
        return Book.objects.filter(pages=a).union(Book.objects.filter(title=b)).order_by("id")[:n]

    first = plan(1, "x", 2).compile("postgresql")
    misses = qplan.compile_cache.misses
    second = plan(7, "y", 9).compile("postgresql")
    assert qplan.compile_cache.misses == misses and second.sql == first.sql
    assert second.params == (7, "y", 9) and first.params == (1, "x", 2)


# --- property: Python's set operations on every backend ------------------------------------------


@pytest.fixture
def every(databases):
    """One alias per registered backend, named after it."""
    return databases(**{vendor: vendor for vendor in VENDORS})


@contextlib.contextmanager
def rows_everywhere(rows):
    with rolled_back(VENDORS):
        for alias in VENDORS:
            Book.objects.using(alias).bulk_create(
                [Book(title=t, pages=p, rating=r) for t, p, r in rows])
        yield


rows_strategy = st.lists(st.tuples(st.sampled_from(["a", "B", "b", "é"]), st.integers(0, 3),
                                   st.sampled_from([None, 0.5, 2.0])), max_size=8)
filters = st.tuples(st.sampled_from(["pages__gte", "pages__lte", "title", "rating__isnull"]),
                    st.integers(0, 3))


def matches(row, spec):
    name, n = spec
    title, pages_, rating = row
    return {"pages__gte": pages_ >= n, "pages__lte": pages_ <= n, "title": title == "ab"[n % 2],
            "rating__isnull": (rating is None) == bool(n % 2)}[name]


def condition(spec):
    name, n = spec
    return {name: "ab"[n % 2] if name == "title" else (bool(n % 2) if "isnull" in name else n)}


@given(rows=rows_strategy, left=filters, right=filters,
       op=st.sampled_from(["union", "union all", "intersection", "difference"]))
def test_set_operations_are_pythons_on_every_backend(every, rows, left, right, op):
    selected = [(t, r) for t, p, r in rows]
    lhs = [s for s, row in zip(selected, rows) if matches(row, left)]
    rhs = [s for s, row in zip(selected, rows) if matches(row, right)]
    expected = {"union all": lambda: collections.Counter(lhs) + collections.Counter(rhs),
                "union": lambda: collections.Counter(set(lhs) | set(rhs)),
                "intersection": lambda: collections.Counter(set(lhs) & set(rhs)),
                "difference": lambda: collections.Counter(set(lhs) - set(rhs))}[op]()
    with rows_everywhere(rows):
        for alias in VENDORS:
            a = Book.objects.using(alias).filter(**condition(left)).values_list("title", "rating")
            b = Book.objects.filter(**condition(right)).values_list("title", "rating")
            name, _, all_ = op.partition(" ")
            plan = a.union(b, all=bool(all_)) if name == "union" else getattr(a, name)(b)
            got = collections.Counter(plan)
            assert got == expected, f"{alias}: {op} {left} {right}"
            assert plan.count() == sum(expected.values())


# --- over several shards: each operand a sharded read, the set operation after the merge ----------

from test_sharding import Order, Region, _read_only_files, _same, library  # noqa: E402,F401

SHARDED = {
    "union ordered by F with nulls_last": lambda p: [o.id for o in p.filter(paid=True).union(
        p.filter(tenant_id=3)).order_by(qplan.F("qty").desc(nulls_last=True), "id")],
    "union of models": lambda p: sorted(o.id for o in p.filter(qty__gt=5).union(
        p.filter(customer="bob"))),
    "union all, ordered, sliced": lambda p: [o.id for o in p.filter(paid=True).union(
        p.filter(tenant_id=3), all=True).order_by("-amount", "id")[2:9]],
    "intersection across shards": lambda p: list(p.values_list("customer", "paid").filter(
        tenant_id__lte=2).intersection(p.values_list("customer", "paid").filter(tenant_id__gte=4))
        .order_by("customer", "paid")),
    "difference with NULLs": lambda p: list(p.values_list("customer", flat=True).difference(
        p.filter(qty__lt=0).values_list("customer", flat=True)).order_by("-customer")),
    "values() pushed into model operands": lambda p: list(p.filter(paid=True).union(
        p.filter(paid=False)).values("customer").order_by("customer")),
    "sliced operands, nested": lambda p: sorted(p.order_by("-id")[:5].union(
        p.order_by("id")[:3].union(p.filter(id=20))).values_list("id", flat=True)),
    "count and exists": lambda p: (p.union(p).count(), p.union(p, all=True).count(),
                                   p.filter(id=1).intersection(p.filter(id=2)).exists(),
                                   p.order_by("id").values("tenant_id").union(
                                       p.values("tenant_id")).count()),
    "first and get": lambda p: (p.union(p.filter(id=3)).order_by("-score", "id").first(),
                                p.filter(id=7).union(p.filter(id=7)).get()),
}


@pytest.mark.usefixtures("library")
@pytest.mark.parametrize("name", SHARDED)
def test_combined_reads_over_shards_match_one_database(name):
    got = SHARDED[name](Order.objects)
    want = SHARDED[name](Order.objects.using("one"))
    assert _same(got, want), (got, want)


@pytest.mark.usefixtures("library")
def test_combined_reads_over_shards_keep_each_shard_and_refuse_what_cannot_merge():
    rows = list(Order.objects.filter(id__lte=4).union(Order.objects.filter(id=9)).order_by("id"))
    assert [(o.id, o._db) for o in rows] == [(o.id, o._db) for o in Order.objects.filter(
        id__in=[1, 2, 3, 4, 9]).order_by("id")]
    regions = Region.objects.using("one").values_list("name", flat=True)
    with pytest.raises(NotSupportedError, match="Region is not"):
        list(Order.objects.values_list("customer", flat=True).union(regions))
    with pytest.raises(NotSupportedError, match="not merged across shards"):
        list(Order.objects.union(Order.objects.filter(paid=True)).order_by(
            qplan.functions.Lower("customer")))
    explained = str(Order.objects.union(Order.objects.filter(paid=True)).explain_routing())
    assert "then the union in Python" in explained
    with pytest.raises(NotSupportedError, match="one scatter-gather read per operand"):
        Order.objects.union(Order.objects.filter(paid=True)).compile()


def test_a_combined_plan_is_not_a_subquery():
    combined = Book.objects.values("id").union(Book.objects.values("id"))
    with pytest.raises(NotSupportedError, match="not a subquery"):
        Book.objects.filter(id__in=combined)


def test_combined_rows_order_by_expressions_of_their_columns(any_db):
    from qplan import F
    from qplan.functions import Lower
    make_books()
    Book.objects.create(title="B", pages=6, rating=None)
    combined = Book.objects.filter(pages__lte=2).union(Book.objects.filter(pages__gte=4))
    plan = combined.order_by(F("rating").desc(nulls_last=True), Lower("title"), "-pages")
    assert [(b.title, b.pages) for b in plan] == [
        ("c", 4), ("b", 2), ("a", 1), ("B", 6), ("d", 5)]
    named = Book.objects.filter(pages__lte=2).values("title", "rating").union(
        Book.objects.filter(pages__gte=4).values("title", "rating"))
    assert list(named.order_by(F("rating").asc(nulls_last=True), Lower("title")).values_list(
        "title", "rating"))[:3] == [("b", 1.5), ("c", 2.5), ("a", None)]
    again = qplan.loads(qplan.dumps(plan))
    assert again._records == plan._records
    assert qplan.from_json(plan.to_json())._records == plan._records
    with pytest.raises(FieldError, match="combined rows"):
        combined.order_by(Lower("author__name"))
    with pytest.raises(FieldError, match="not agg"):
        combined.order_by(Count("id"))
    with pytest.raises(FieldError, match="ordered by"):
        named.order_by(Lower("title")).values("rating")
