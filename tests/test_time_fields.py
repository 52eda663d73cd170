"""``fields.TimeField``, the ``__time`` lookup, ``TruncTime`` and ``Trunc``/``Extract`` of a
TimeField, with Django 5.2's meaning and the same rows on every backend (``any_db``)."""

from __future__ import annotations

import datetime as dt

import pytest

import qplan
from qplan import F, FieldError, Max, Min
from qplan.fields import TimeField
from qplan.functions import (Extract, ExtractHour, ExtractMinute, ExtractSecond, Greatest, Trunc,
                             TruncDate, TruncHour, TruncMinute, TruncSecond, TruncTime, Value)
from timemodels import ALL, Opening, Shift

UTC = dt.timezone.utc
EAST = dt.timezone(dt.timedelta(hours=5))


@pytest.fixture
def shifts(any_db):
    qplan.drop_tables(ALL, missing_ok=True)
    qplan.create_tables(ALL)
    # microseconds at the top of their range: kept exactly, never rounded into the next second
    Shift.objects.create(label="a", starts=dt.time(9, 30, 15, 999999),
                         at=dt.datetime(2024, 1, 2, 23, 59, 59, 999999, tzinfo=UTC),
                         day=dt.date(2024, 1, 2))
    # 08:00 at +05:00 is 03:00 UTC: __time and TruncTime are in UTC, as qplan stores
    Shift.objects.create(label="b", starts=dt.time(17, 5), day=dt.date(2024, 1, 3),
                         at=dt.datetime(2024, 1, 3, 8, 0, 0, 500000, tzinfo=EAST))
    Shift.objects.create(label="c", starts=dt.time(0, 0), at=dt.datetime(2024, 1, 4, tzinfo=UTC))
    Shift.objects.create(label="n")
    yield any_db
    qplan.connections.close_all()
    qplan.drop_tables(ALL, missing_ok=True)


def labels(*args, **kw):
    return sorted(Shift.objects.filter(*args, **kw).values_list("label", flat=True))


def test_values_come_back_as_naive_times_to_the_microsecond(shifts):
    got = list(Shift.objects.order_by("label").values_list("label", "starts"))
    assert got == [("a", dt.time(9, 30, 15, 999999)), ("b", dt.time(17, 5)),
                   ("c", dt.time(0, 0)), ("n", None)]
    shift = Shift.objects.get(label="a")
    assert type(shift.starts) is dt.time and shift.starts.tzinfo is None
    shift.starts = "23:59:59.000001"  # ISO text, as Django's to_python
    shift.save()
    assert Shift.objects.get(label="a").starts == dt.time(23, 59, 59, 1)


def test_lookups(shifts):
    assert labels(starts=dt.time(17, 5)) == ["b"]
    assert labels(starts="17:05") == ["b"]
    assert labels(starts__gt=dt.time(9, 30, 15, 999998)) == ["a", "b"]
    assert labels(starts__gte=dt.time(9, 30, 15, 999999)) == ["a", "b"]
    assert labels(starts__lt=dt.time(9, 30, 16)) == ["a", "c"]
    assert labels(starts__lte=dt.time(0)) == ["c"]
    assert labels(starts__range=(dt.time(9), dt.time(17, 5))) == ["a", "b"]
    assert labels(starts__in=[dt.time(0), dt.time(17, 5), dt.time(1)]) == ["b", "c"]
    assert labels(starts__isnull=True) == ["n"]
    assert labels(starts=None) == ["n"]
    assert sorted(Shift.objects.exclude(starts__gt=dt.time(9)).values_list("label", flat=True)) \
        == ["c", "n"]
    assert labels(starts__gt=F("starts")) == []
    assert labels(starts__hour=9) == ["a"]
    assert labels(starts__minute__gte=5) == ["a", "b"]
    assert labels(starts__second=15) == ["a"]
    assert labels(starts__hour__in=[0, 17]) == ["b", "c"]


def test_time_lookup_on_a_datetime_is_in_utc(shifts):
    assert labels(at__time=dt.time(3, 0, 0, 500000)) == ["b"]
    assert labels(at__time__gt=dt.time(10, 0)) == ["a"]
    assert labels(at__time__lt=dt.time(10, 0)) == ["b", "c"]
    assert labels(at__time__range=(dt.time(0), dt.time(3))) == ["c"]
    assert labels(at__time__in=[dt.time(0), dt.time(23, 59, 59, 999999)]) == ["a", "c"]
    assert labels(at__time__isnull=True) == ["n"]
    assert labels(at__time__gt=F("starts")) == ["a"]


def test_trunc_time_and_time_parts(shifts):
    plan = Shift.objects.order_by("label").annotate(
        t=TruncTime("at"), h=TruncHour("starts"), m=TruncMinute("starts"),
        s=TruncSecond("starts"), k=Trunc("starts", "minute"), eh=ExtractHour("starts"),
        em=ExtractMinute("starts"), es=ExtractSecond("starts"), x=Extract("starts", "hour"),
        d=TruncDate("at"))
    rows = list(plan.values_list("t", "h", "m", "s", "k", "eh", "em", "es", "x", "d"))
    assert rows == [
        (dt.time(23, 59, 59, 999999), dt.time(9), dt.time(9, 30), dt.time(9, 30, 15),
         dt.time(9, 30), 9, 30, 15, 9, dt.date(2024, 1, 2)),
        (dt.time(3, 0, 0, 500000), dt.time(17), dt.time(17, 5), dt.time(17, 5), dt.time(17, 5),
         17, 5, 0, 17, dt.date(2024, 1, 3)),
        (dt.time(0), dt.time(0), dt.time(0), dt.time(0), dt.time(0), 0, 0, 0, 0,
         dt.date(2024, 1, 4)),
        (None,) * 10,
    ]
    assert all(type(v) is dt.time for v in rows[0][:5])
    # computed times compare with values and columns as stored ones do
    assert sorted(plan.filter(t__gt=dt.time(3)).values_list("label", flat=True)) == ["a", "b"]
    assert sorted(plan.filter(h=F("starts")).values_list("label", flat=True)) == ["c"]
    assert sorted(plan.filter(t__hour=3).values_list("label", flat=True)) == ["b"]
    assert plan.filter(s__lt=dt.time(9, 30, 15, 1), s__gt=dt.time(9)).count() == 1


def test_aggregates_and_values_of_times(shifts):
    got = Shift.objects.aggregate(lo=Min("starts"), hi=Max("starts"), last=Max(TruncTime("at")))
    assert got == {"lo": dt.time(0), "hi": dt.time(17, 5), "last": dt.time(23, 59, 59, 999999)}
    assert Shift.objects.filter(label="n").aggregate(
        x=Max("starts", default=dt.time(1)))["x"] == dt.time(1)
    plan = Shift.objects.filter(label="b").annotate(
        v=Value(dt.time(8, 0, 0, 250000)), g=Greatest("starts", Value(dt.time(12))))
    assert list(plan.values_list("v", "g")) == [(dt.time(8, 0, 0, 250000), dt.time(17, 5))]


def test_a_time_in_a_check_constraint(shifts):
    Opening.objects.create(opens=dt.time(6, 0, 0, 500000))
    with pytest.raises(qplan.IntegrityError):
        Opening.objects.create(opens=dt.time(6, 0, 0, 499999))
    assert list(Opening.objects.values_list("opens", flat=True)) == [dt.time(6, 0, 0, 500000)]


def test_mistakes_fail_where_the_plan_is_built():
    with pytest.raises(FieldError, match="TruncTime.*DateTimeField.*not DateField.*'day'"):
        Shift.objects.annotate(x=TruncTime("day"))
    with pytest.raises(FieldError, match="TruncTime.*not TimeField.*'starts'"):
        Shift.objects.annotate(x=TruncTime("starts"))
    for kind in ("year", "quarter", "month", "week", "day"):
        with pytest.raises(FieldError, match=rf"Trunc\('{kind}'\).*not a TimeField.*'starts'"):
            Shift.objects.annotate(x=Trunc("starts", kind))
    for part in ("year", "iso_year", "quarter", "month", "week", "day", "week_day",
                 "iso_week_day"):
        with pytest.raises(FieldError, match=rf"Extract\('{part}'\).*not a TimeField.*'starts'"):
            Shift.objects.annotate(x=Extract("starts", part))
        with pytest.raises(FieldError, match=f"'starts__{part}'.*not TimeField"):
            Shift.objects.filter(**{f"starts__{part}": 1})
    with pytest.raises(FieldError, match="'day__time'.*applies to DateTimeField, not DateField"):
        Shift.objects.filter(day__time=dt.time(1))
    with pytest.raises(FieldError, match="'starts__time'.*not TimeField"):
        Shift.objects.filter(starts__time=dt.time(1))
    with pytest.raises(FieldError, match="lookup 'contains' does not apply after __time"):
        Shift.objects.filter(at__time__contains="1")
    with pytest.raises(FieldError, match="Shift.starts: expected a time"):
        Shift.objects.filter(starts=dt.date(2024, 1, 1))
    with pytest.raises(FieldError, match="Shift.starts: expected a time"):
        Shift.objects.filter(starts=36000)
    with pytest.raises(FieldError, match="Shift.starts: expected an ISO time"):
        Shift.objects.filter(starts="25:00")
    with pytest.raises(FieldError, match="naive"):
        Shift.objects.filter(starts=dt.time(10, tzinfo=UTC))
    with pytest.raises(FieldError, match="transform: expected a time"):
        Shift.objects.filter(at__time=dt.date(2024, 1, 1))
    with pytest.raises(FieldError, match="Shift.u: expected a time without a time zone"):
        Shift.objects.annotate(u=TruncTime("at")).filter(u__gt=dt.time(1, tzinfo=UTC))
    with pytest.raises(FieldError, match="Shift.u: expected a time"):
        Shift.objects.annotate(u=TruncTime("at")).filter(u__in=[dt.time(1), 5])
    with pytest.raises(FieldError, match="not a TimeField value"):
        Shift.objects.aggregate(x=Max("starts", default=dt.datetime(2024, 1, 1)))


def test_cleaning_follows_django():
    field = Shift._meta.by_name["starts"]
    assert field.clean(dt.time(10, 1, 2, 3)) == dt.time(10, 1, 2, 3)
    assert field.clean("10:01") == dt.time(10, 1)
    assert field.clean(dt.datetime(2024, 1, 1, 10, 1)) == dt.time(10, 1)  # its time
    assert field.clean(dt.datetime(2024, 1, 1, 10, 1, tzinfo=EAST)) == dt.time(5, 1)  # in UTC
    folded = field.clean(dt.time(1, 30, fold=1))
    assert folded == dt.time(1, 30) and folded.fold == 0
    assert TimeField().internal_type == "TimeField"


def test_writes_of_times(shifts):
    Shift.objects.filter(label="a").update(starts=dt.time(1, 2, 3, 4))
    Shift.objects.filter(label="b").update(starts=TruncTime("at"))
    c, n = Shift.objects.get(label="c"), Shift.objects.get(label="n")
    c.starts, n.starts = dt.time(23, 59, 59, 999999), dt.time(12)
    assert Shift.objects.bulk_update([c, n], ["starts"]) == 2
    got = dict(Shift.objects.values_list("label", "starts"))
    assert got == {"a": dt.time(1, 2, 3, 4), "b": dt.time(3, 0, 0, 500000),
                   "c": dt.time(23, 59, 59, 999999), "n": dt.time(12)}
    made = Shift.objects.bulk_create([Shift(label="x", starts="04:05:06.7")])
    assert Shift.objects.get(label="x").starts == dt.time(4, 5, 6, 700000) == made[0].starts


def test_awaited_reads_decode_times_alike(shifts):
    from conftest import run_async

    async def read():
        rows = [r async for r in Shift.objects.order_by("label").annotate(
            u=TruncTime("at"), h=TruncHour("starts")).values_list("starts", "u", "h")]
        return rows, await Shift.objects.aaggregate(hi=Max("starts"))

    rows, agg = run_async(read())
    assert rows == list(Shift.objects.order_by("label").annotate(
        u=TruncTime("at"), h=TruncHour("starts")).values_list("starts", "u", "h"))
    assert rows[0] == (dt.time(9, 30, 15, 999999), dt.time(23, 59, 59, 999999), dt.time(9))
    assert agg == {"hi": dt.time(17, 5)}
