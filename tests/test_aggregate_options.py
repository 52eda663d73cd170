"""Aggregate options (Django 5.2): ``filter=``, ``default=``, ``distinct=`` and StdDev/Variance.

Same rows on every backend (``any_db``/``rel_db``); records stay plain values, load back
through ``qplan.loads``/``qplan.from_json``, and share templates when only values differ.
"""

from __future__ import annotations

import decimal
import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qplan
from conftest import VENDORS
from qplan import Avg, Count, F, FieldError, Max, Min, Q, StdDev, Sum, Variance
from qplan.shapecache import cache
from relmodels import Genre, Novel, Writer
from testmodels import Author, Book

D = decimal.Decimal
KEY = "k" * 32


@pytest.fixture
def books(any_db):
    ann, bob = Author.objects.create(name="ann"), Author.objects.create(name="bob")
    rows = [("a", ann, 10, 4.5, "1.50", True), ("b", ann, 20, None, "2.25", False),
            ("c", bob, 30, 3.0, "3.00", True), ("d", None, 5, 1.5, "0.10", True)]
    Book.objects.bulk_create([Book(title=t, author=a, pages=p, rating=r, price=D(pr), is_active=x)
                              for t, a, p, r, pr, x in rows])
    return rows


def test_filter_counts_only_matching_rows(books):
    got = Book.objects.aggregate(
        n=Count("id", filter=Q(pages__gt=8)), all=Count("*", filter=Q(is_active=True)),
        s=Sum("pages", filter=Q(author__name="ann")), a=Avg("rating", filter=Q(pages__lt=25)),
        lo=Min("title", filter=~Q(title="a")), hi=Max("price", filter=Q(is_active=True)),
        none=Sum("pages", filter=Q(pages__gt=999)), zero=Count("id", filter=Q(pages__gt=999)))
    assert got == {"n": 3, "all": 3, "s": 30, "a": 3.0, "lo": "b", "hi": D("3.00"),
                   "none": None, "zero": 0}


def test_filter_across_relations_and_with_distinct(books):
    got = Book.objects.aggregate(
        n=Count("author", distinct=True, filter=Q(is_active=True)),
        s=Sum("pages", distinct=True, filter=Q(author__name__startswith="b") | Q(author=None)))
    assert got == {"n": 2, "s": 35}


def test_default_replaces_null_over_no_rows(books):
    got = Book.objects.filter(pages__gt=999).aggregate(
        s=Sum("pages", default=0), a=Avg("rating", default=0), p=Sum("price", default=D("1.5")),
        t=Min("title", default="none"), sd=StdDev("pages", default=0.0))
    assert got == {"s": 0, "a": 0.0, "p": D("1.5"), "t": "none", "sd": 0.0}
    assert type(got["a"]) is float
    assert Book.objects.aggregate(s=Sum("pages", default=0))["s"] == 65


def test_annotate_with_filter_and_default(books):
    rows = Author.objects.annotate(
        long=Count("book", filter=Q(book__pages__gte=20)),
        pages=Sum("book__pages", filter=Q(book__is_active=True), default=0),
    ).order_by("name").values_list("name", "long", "pages")
    assert list(rows) == [("ann", 1, 10), ("bob", 1, 30)]


def test_stddev_and_variance_population_and_sample(books):
    pages = [p for _, _, p, *_ in books]
    ratings = [r for _, _, _, r, *_ in books if r is not None]
    got = Book.objects.aggregate(sd=StdDev("pages"), sds=StdDev("pages", sample=True),
                                 v=Variance("rating"), vs=Variance("rating", sample=True),
                                 dp=StdDev("price"), f=Variance("pages", filter=Q(is_active=True)))
    assert got["sd"] == pytest.approx(statistics.pstdev(pages), rel=1e-12)
    assert got["sds"] == pytest.approx(statistics.stdev(pages), rel=1e-12)
    assert got["v"] == pytest.approx(statistics.pvariance(ratings), rel=1e-12)
    assert got["vs"] == pytest.approx(statistics.variance(ratings), rel=1e-12)
    assert got["dp"] == pytest.approx(statistics.pstdev([float(D(b[4])) for b in books]), rel=1e-12)
    assert got["f"] == pytest.approx(statistics.pvariance([10, 30, 5]), rel=1e-12)
    assert all(type(v) is float for v in got.values())
    one = Book.objects.filter(title="a").aggregate(s=StdDev("pages", sample=True), p=StdDev("pages"))
    assert one == {"s": None, "p": 0.0}


def test_filter_across_many_relations(rel_db):
    w = Writer.objects.create(name="w")
    g1, g2 = Genre.objects.create(name="sf"), Genre.objects.create(name="crime")
    n1 = Novel.objects.create(title="n1", writer=w)
    Novel.objects.create(title="n2", writer=w)
    n1.genres.add(g1, g2)
    got = Novel.objects.aggregate(n=Count("id", distinct=True, filter=Q(genres__name="sf")),
                                  all=Count("id", distinct=True))
    assert got == {"n": 1, "all": 2}
    rows = Writer.objects.annotate(
        sf=Count("novel", filter=Q(novel__title="n1"))).values_list("name", "sf")
    assert list(rows) == [("w", 1)]


def test_options_over_a_sliced_or_distinct_plan(books):
    plan = Book.objects.order_by("pages")[:3]
    got = plan.aggregate(n=Count("*", filter=Q(is_active=True)),
                         s=Sum("pages", filter=Q(pages__gt=100), default=-1))
    assert got == {"n": 2, "s": -1}
    assert Book.objects.distinct().aggregate(m=Max("title", filter=Q(pages__lt=25))) == {"m": "d"}


# --- records, loading, shapes -----------------------------------------------------------------


def test_records_stay_plain_and_gain_options_only_when_given():
    plain = Book.objects.aggregate_plan(n=Count("id")).records
    assert plain == (("aggregate", (("n", ("agg", "count", ("F", "id"), False)),)),)
    rec = Book.objects.aggregate_plan(s=Sum("pages", filter=Q(pages__gt=2), default=0)).records
    assert rec[0][1][0][1] == ("agg", "sum", ("F", "pages"), False,
                               (("default", ("=", 0)), ("filter", ("pages", "gt", ("=", 2)))))
    assert Book.objects.aggregate_plan(v=Variance("pages", sample=True)).records[0][1][0][1] == \
        ("agg", "var_samp", ("F", "pages"), False)


def test_plans_with_options_load_and_retarget():
    plan = Book.objects.filter(pages__gt=1).aggregate_plan(
        n=Count("author", distinct=True, filter=Q(author__name__icontains="a") & ~Q(pages=3)),
        s=Sum("price", default=D("0.5")), sd=StdDev("rating", sample=True, filter=Q(is_active=True)))
    assert qplan.loads(qplan.dumps(plan)) == plan
    assert qplan.from_json(plan.to_json(KEY), KEY) == plan
    assert qplan.loads(qplan.dumps(plan.using("other"))).db == "other"
    for vendor in qplan.backends.names():
        assert "SELECT" in plan.compile(vendor).sql
    assert "FILTER" not in plan.compile("mysql").sql and "CASE WHEN" in plan.compile("mysql").sql
    assert "FILTER" in plan.compile("postgresql").sql


def test_payload_with_wrong_options_is_refused():
    bad = (("aggregate", (("s", ("agg", "sum", ("F", "pages"), False, (("default", ("=", "x")),))),)),)
    with pytest.raises(qplan.UnsafePayload):
        qplan.loads(_payload(bad))
    bad_count = (("aggregate", (("n", ("agg", "count", "*", False, (("default", ("=", 0)),))),)),)
    with pytest.raises(qplan.UnsafePayload):
        qplan.loads(_payload(bad_count))


def _payload(records: tuple) -> bytes:
    plan = Book.objects._derive(records, None)
    return qplan.dumps(plan)


def test_values_only_differences_share_one_template():
    cache.clear()
    for i in range(5):
        Book.objects.aggregate_plan(
            s=Sum("pages", filter=Q(title=f"t{i}", pages__gt=i), default=i)).compile("postgresql")
    assert cache.misses == 1


# --- build-time checks ------------------------------------------------------------------------


def test_mistakes_are_refused_when_the_plan_is_built():
    with pytest.raises(TypeError, match="does not allow default"):
        Count("id", default=0)
    with pytest.raises(TypeError, match="does not allow distinct"):
        StdDev("pages", distinct=True)
    with pytest.raises(FieldError, match="not a IntegerField value"):
        Book.objects.aggregate_plan(s=Sum("pages", default="zero"))
    with pytest.raises(FieldError, match="not a IntegerField value"):
        Book.objects.aggregate_plan(s=Sum("pages", default=1.5))
    with pytest.raises(FieldError, match="not a DateField value"):
        Book.objects.aggregate_plan(s=Max("published", default=0))
    with pytest.raises(FieldError, match="takes numbers"):
        Book.objects.aggregate_plan(s=StdDev("title"))
    with pytest.raises(FieldError, match="takes a Q object"):
        Book.objects.aggregate_plan(s=Sum("pages", filter={"pages": 1}))
    with pytest.raises(FieldError, match="pagez"):
        Book.objects.aggregate_plan(s=Sum("pages", filter=Q(pagez=1)))
    with pytest.raises(FieldError, match="aggregate"):
        Book.objects.annotate(n=Count("id")).aggregate_plan(
            s=Sum("pages", filter=Q(n__gt=1)))
    with pytest.raises(FieldError, match="column 'pages'"):  # over no rows: no row to read
        Book.objects.aggregate_plan(s=Sum("pages", default=F("pages")))
    with pytest.raises(FieldError, match="plain value"):
        Book.objects.aggregate_plan(s=Sum("pages", default=(1, 2)))
    assert Book.objects.aggregate_plan(s=Sum("rating", default=1)).records[0][1][0][1][4] == \
        (("default", ("=", 1.0)),)
    assert StdDev("pages").default_alias == "pages__stddev"
    assert Variance("pages", sample=True).default_alias == "pages__variance"


def test_math_of_the_sample_statistics_on_one_value_is_null(any_db):
    Book.objects.create(title="x", pages=3)
    got = Book.objects.aggregate(v=Variance("pages", sample=True), p=Variance("pages"))
    assert got["v"] is None and got["p"] == 0.0 and not math.isnan(got["p"])


# --- property: every backend computes what Python computes on the rows -----------------------

ROWS = st.lists(st.tuples(st.integers(-50, 50), st.none() | st.integers(-400, 400).map(lambda i: i / 4),
                          st.booleans()), max_size=10)
FILTERS = {  # name -> (Q, the same test in Python on (pages, rating, is_active))
    "pages>0": (Q(pages__gt=0), lambda r: r[0] > 0),
    "active": (Q(is_active=True), lambda r: r[2]),
    "not rated>1": (~Q(rating__gt=1), lambda r: not (r[1] is not None and r[1] > 1)),
    "rated|pages<-10": (Q(rating__isnull=False) | Q(pages__lt=-10),
                        lambda r: r[1] is not None or r[0] < -10),
}
FUNCS = {
    "count": (Count, len, 0), "sum": (Sum, sum, 1), "avg": (Avg, statistics.fmean, 1),
    "min": (Min, min, 1), "max": (Max, max, 1), "stddev": (StdDev, statistics.pstdev, 1),
    "var_samp": (lambda f, **kw: Variance(f, sample=True, **kw), statistics.variance, 2),
}
SPECS = st.tuples(st.sampled_from(sorted(FUNCS)), st.sampled_from(["pages", "rating"]),
                  st.sampled_from(sorted(FILTERS)), st.booleans())


def expected(spec, rows):
    fn, field, name, with_default = spec
    make, compute, least = FUNCS[fn]
    test = FILTERS[name][1]
    values = [r[0] if field == "pages" else r[1] for r in rows if test(r)]
    values = [v for v in values if v is not None]
    result = compute(values) if len(values) >= least else None
    if fn in ("avg", "stddev", "var_samp") and result is not None:
        result = float(result)
    default = None if fn == "count" or not with_default else (
        0 if field == "pages" and fn in ("sum", "min", "max") else 0.0)
    return default if result is None else result


@settings(max_examples=15)
@given(rows=ROWS, specs=st.lists(SPECS, min_size=1, max_size=4))
def test_filtered_aggregates_match_python_on_every_backend(every_backend, rows, specs):
    aggs = {}
    for i, (fn, field, name, with_default) in enumerate(specs):
        make = FUNCS[fn][0]
        kwargs = {"filter": FILTERS[name][0]}
        if with_default and fn != "count":
            kwargs["default"] = 0 if field == "pages" and fn in ("sum", "min", "max") else 0.0
        aggs[f"a{i}"] = make(field, **kwargs)
    for alias in every_backend:
        with qplan.atomic(using=alias):
            Book.objects.using(alias).delete()
            Book.objects.using(alias).bulk_create(
                [Book(title="t", pages=p, rating=r, is_active=a) for p, r, a in rows])
            got = Book.objects.using(alias).aggregate(**aggs)
        for i, spec in enumerate(specs):
            want = expected(spec, rows)
            value = got[f"a{i}"]
            if isinstance(want, float) and value is not None:
                assert value == pytest.approx(want, rel=1e-9, abs=1e-9), (alias, spec)
            else:
                assert value == want and type(value) is type(want), (alias, spec, value, want)


@pytest.fixture
def every_backend(databases):
    return databases(**{vendor: vendor for vendor in VENDORS})
