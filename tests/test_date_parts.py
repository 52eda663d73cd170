"""The rest of Django's date functions: ``Trunc`` to quarter/week/hour/minute/second,
``Extract`` of quarter, ISO week and year, ISO week day, hour, minute, second, and their
lookups, with the same rows on every backend (``any_db``), in UTC."""

from __future__ import annotations

import datetime as dt

import pytest

from qplan import FieldError
from qplan.functions import (Extract, ExtractHour, Lower, TruncMonth, ExtractIsoWeekDay, ExtractIsoYear,
                             ExtractMinute, ExtractQuarter, ExtractSecond, ExtractWeek, Trunc,
                             TruncHour, TruncMinute, TruncQuarter, TruncSecond, TruncWeek)
from testmodels import Book

UTC = dt.timezone.utc
EAST = dt.timezone(dt.timedelta(hours=5))


@pytest.fixture
def books(any_db):
    # 2021-01-03 is a Sunday of ISO week 2020-W53; 23:30 UTC (04:30 next day at +05:00)
    Book.objects.create(title="a", pages=1, published=dt.date(2021, 1, 3),
                        created=dt.datetime(2021, 1, 3, 23, 30, 45, 600000, tzinfo=UTC))
    # 2019-12-30 is the Monday of ISO week 2020-W01; created is 2020-08-14 19:05:09 UTC
    Book.objects.create(title="b", pages=2, published=dt.date(2019, 12, 30),
                        created=dt.datetime(2020, 8, 15, 0, 5, 9, tzinfo=EAST))
    Book.objects.create(title="c", pages=3, published=None, created=None)
    return any_db


def values(plan, *names):
    return [tuple(r[n] for n in names) for r in plan.order_by("pages").values(*names)]


def test_extract_parts_in_utc(books):
    plan = Book.objects.annotate(
        q=ExtractQuarter("published"), w=ExtractWeek("published"), iy=ExtractIsoYear("published"),
        iwd=ExtractIsoWeekDay("published"), cq=ExtractQuarter("created"),
        cw=ExtractWeek("created"), ciy=ExtractIsoYear("created"), h=ExtractHour("created"),
        mi=ExtractMinute("created"), s=ExtractSecond("created"),
        ciwd=Extract("created", "iso_week_day"))
    assert values(plan, "q", "w", "iy", "iwd", "cq", "cw", "ciy", "h", "mi", "s", "ciwd") == [
        (1, 53, 2020, 7, 1, 53, 2020, 23, 30, 45, 7),  # whole seconds (45.6 -> 45)
        (4, 1, 2020, 1, 3, 33, 2020, 19, 5, 9, 5),
        (None,) * 11,
    ]


def test_trunc_kinds_in_utc(books):
    plan = Book.objects.annotate(
        q=TruncQuarter("published"), w=TruncWeek("published"), cq=TruncQuarter("created"),
        cw=TruncWeek("created"), h=TruncHour("created"), mi=TruncMinute("created"),
        s=TruncSecond("created"), y=Trunc("created", "year"))
    at = lambda *a: dt.datetime(*a, tzinfo=UTC)  # noqa: E731
    assert values(plan, "q", "w", "cq", "cw", "h", "mi", "s", "y") == [
        (dt.date(2021, 1, 1), dt.date(2020, 12, 28), at(2021, 1, 1), at(2020, 12, 28),
         at(2021, 1, 3, 23), at(2021, 1, 3, 23, 30), at(2021, 1, 3, 23, 30, 45), at(2021, 1, 1)),
        (dt.date(2019, 10, 1), dt.date(2019, 12, 30), at(2020, 7, 1), at(2020, 8, 10),
         at(2020, 8, 14, 19), at(2020, 8, 14, 19, 5), at(2020, 8, 14, 19, 5, 9), at(2020, 1, 1)),
        (None,) * 8,
    ]


def test_new_lookups(books):
    def titles(**kw):
        return sorted(Book.objects.filter(**kw).values_list("title", flat=True))
    assert titles(published__quarter=4) == ["b"]
    assert titles(published__week=53) == ["a"]
    assert titles(published__iso_year=2020) == ["a", "b"]
    assert titles(published__iso_week_day__gte=6) == ["a"]
    assert titles(created__hour=19) == ["b"]
    assert titles(created__minute__lt=10) == ["b"]
    assert titles(created__second=45) == ["a"]
    assert titles(created__week__in=[33, 34]) == ["b"]
    assert sorted(Book.objects.exclude(created__hour=19).values_list("title", flat=True)) \
        == ["a", "c"]


def test_time_parts_of_a_date_are_refused_at_build():
    for bad in (ExtractHour("published"), TruncMinute("published"), Trunc("created", "decade"),
                Extract("created", "millisecond")):
        with pytest.raises(FieldError):
            Book.objects.annotate(x=bad)
    with pytest.raises(FieldError, match="DateTimeField"):
        Book.objects.filter(published__hour=3)
    with pytest.raises(FieldError):
        Book.objects.filter(title__week=3)


def test_transforms_of_annotations(books):
    plan = Book.objects.annotate(d=TruncMonth("created"), w=TruncWeek("published"))
    assert sorted(plan.filter(d__year=2020).values_list("title", flat=True)) == ["b"]
    assert sorted(plan.filter(d__quarter__gte=1, w__iso_year=2020).values_list(
        "title", flat=True)) == ["a", "b"]
    assert sorted(plan.exclude(d__month=1).values_list("title", flat=True)) == ["b", "c"]
    with pytest.raises(FieldError, match="annotation of CharField"):
        Book.objects.annotate(t=Lower("title")).filter(t__year=2020)
