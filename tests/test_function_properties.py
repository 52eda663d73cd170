"""Differential property: generated function and Case/When plans (and date-transform and
regex lookups) give every backend the rows SQLite gives (data and helpers shared with
``test_cross_backend``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qplan import F, Q
from qplan.functions import (Abs, Case, Coalesce, Concat, ExtractDay, ExtractHour,
                             ExtractIsoWeekDay, ExtractIsoYear, ExtractMinute, ExtractMonth,
                             ExtractQuarter, ExtractSecond, ExtractWeek, ExtractWeekDay,
                             ExtractYear, Greatest, Least, Length, Lower, NullIf, Replace, Round,
                             Substr, Trim, TruncDate, TruncHour, TruncMinute, TruncMonth,
                             TruncQuarter, TruncSecond, TruncWeek, TruncYear, Upper, Value, When)
from test_cross_backend import (OTHERS, Q_TREES, REFERENCE, SMALL_INT, TEXT, datasets, every,  # noqa: F401
                                rows_in_every_database, run, same)
from testmodels import Book

TEXT_FIELDS = st.sampled_from(["title", "notes", "author__name"]).map(F)
DATE_FIELDS = st.sampled_from(["published", "created"]).map(F)


def _texts(inner: Any) -> Any:
    return st.one_of(
        st.builds(Lower, inner), st.builds(Upper, inner), st.builds(Trim, inner),
        st.builds(Concat, inner, inner), st.builds(Substr, inner, st.integers(1, 4),
                                                   st.integers(0, 4)),
        st.builds(Replace, inner, TEXT.filter(bool).map(Value), TEXT.map(Value)),
        st.builds(Coalesce, inner, inner))


texts = st.recursive(TEXT_FIELDS | TEXT.map(Value), _texts, max_leaves=4)
ints = st.one_of(
    st.just(F("pages")), st.builds(Length, texts),
    st.builds(lambda f, c: c(f), DATE_FIELDS, st.sampled_from(
        [ExtractYear, ExtractMonth, ExtractDay, ExtractWeekDay, ExtractQuarter, ExtractWeek,
         ExtractIsoYear, ExtractIsoWeekDay])),
    st.builds(lambda c: c(F("created")), st.sampled_from(
        [ExtractHour, ExtractMinute, ExtractSecond])),
    st.builds(Abs, st.just(F("pages"))), st.builds(Round, st.just(F("pages")), st.integers(-2, 0)),
    st.builds(Greatest, st.just(F("pages")), SMALL_INT.map(Value)),
    st.builds(Least, st.just(F("pages")), st.builds(Length, texts)),
    st.builds(NullIf, st.just(F("pages")), SMALL_INT.map(Value)))
floats = st.one_of(st.builds(Round, st.just(F("rating")), st.integers(0, 3)),
                   st.builds(Abs, st.just(F("rating"))),
                   st.builds(lambda c, v: c(F("rating"), Value(v)), st.sampled_from([Greatest, Least]),
                             st.floats(-5, 5, allow_nan=False)))
dates = st.one_of(st.builds(lambda c, f: c(f), st.sampled_from(
                      [TruncMonth, TruncYear, TruncQuarter, TruncWeek]), DATE_FIELDS),
                  st.builds(lambda c: c(F("created")), st.sampled_from(
                      [TruncDate, TruncHour, TruncMinute, TruncSecond])))


def cases(results: Any) -> Any:
    return st.builds(lambda branches, default: Case(*branches, default=default),
                     st.lists(st.builds(lambda q, r: When(q, then=r), Q_TREES, results),
                              min_size=1, max_size=2), st.none() | results)


expressions = st.one_of(texts, ints, floats, dates, cases(texts), cases(ints))
transform_filters = st.one_of(
    st.builds(lambda f, n: Q(**{f"{f}__year__gte": n}), st.sampled_from(["published", "created"]),
              st.integers(1995, 2025)),
    st.builds(lambda n: Q(created__month=n), st.integers(1, 12)),
    st.builds(lambda n: Q(published__week_day=n), st.integers(1, 7)),
    st.builds(lambda f, part, n: Q(**{f"{f}__{part}__lte": n}),
              st.sampled_from(["published", "created"]),
              st.sampled_from(["quarter", "week", "iso_week_day"]), st.integers(1, 53)),
    st.builds(lambda part, n: Q(**{f"created__{part}__gte": n}),
              st.sampled_from(["hour", "minute", "second"]), st.integers(0, 59)),
    st.builds(lambda p: Q(title__regex=p), st.sampled_from(["^a", "b$", "[a-c]+", "a.?b", "(a|z)"])),
    st.builds(lambda p: Q(notes__iregex=p), st.sampled_from(["^A", "É", "[^a]", "z{1,2}"])))


@st.composite
def function_plans(draw: Any) -> Any:
    exprs = {f"e{i}": draw(expressions) for i in range(draw(st.integers(1, 3)))}
    plan = Book.objects.annotate(**exprs)
    if draw(st.booleans()):
        plan = plan.filter(draw(transform_filters))
    return plan.order_by("id").values_list("id", *exprs)


@pytest.mark.usefixtures("every")
@given(data=datasets(), specs=st.lists(function_plans(), min_size=3, max_size=3))
def test_functions_return_what_sqlite_returns(data, specs):
    authors, books = data
    with rows_in_every_database(authors, books):
        for spec in specs:
            expected = run(spec, REFERENCE)
            for alias in OTHERS:
                got = run(spec, alias)
                assert same(got, expected), f"{alias} differs for {spec!r}:\n{got!r}\n!=\n{expected!r}"
