"""Properties of time values: any naive ``datetime.time`` a plan holds survives pickling,
``qplan.loads`` and the JSON form unchanged, and every backend stores, compares, truncates
and takes apart times (and the UTC times of datetimes) as Python does, to the microsecond."""

from __future__ import annotations

import datetime as dt
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qplan
from qplan import Max, Min
from qplan.functions import (ExtractHour, ExtractMinute, ExtractSecond, TruncHour, TruncMinute,
                             TruncSecond, TruncTime, Value)
from conftest import rolled_back
from test_cross_backend import VENDORS
from timemodels import ALL, Shift

UTC = dt.timezone.utc
TIMES = st.times()  # naive, every microsecond, fold 0 or 1
ZONES = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
DATETIMES = st.builds(lambda d, z: d.replace(tzinfo=z),
                      st.datetimes(dt.datetime(1971, 1, 1), dt.datetime(2100, 1, 1)), ZONES)


def _plan(t: dt.time, d: dt.datetime) -> qplan.Plan:
    return (Shift.objects.filter(starts__gte=t, at__time__lt=t, starts__range=(t, t))
            .annotate(v=Value(t), u=TruncTime("at")).filter(u__in=[t, d.time()])
            .exclude(starts__hour=t.hour))


@given(t=TIMES, d=DATETIMES)
def test_a_time_survives_pickle_loads_and_json(t, d):
    plan = _plan(t, d)
    values = list(_values(plan.records))
    assert t in values
    pickles = [pickle.dumps(plan, protocol=p) for p in range(pickle.HIGHEST_PROTOCOL + 1)]
    for loaded in (qplan.loads(qplan.dumps(plan)), qplan.from_json(plan.to_json()),
                   *map(qplan.loads, pickles)):
        assert loaded == plan and loaded.records == plan.records
        back = list(_values(loaded.records))
        assert back == values and [type(v) for v in back] == [type(v) for v in values]
        assert [v.utcoffset() for v in back] == [v.utcoffset() for v in values]


def _values(node):
    if type(node) is tuple:
        for child in node:
            yield from _values(child)
    elif isinstance(node, (dt.time, dt.datetime)):
        yield node


@pytest.fixture
def every_shift(databases):
    aliases = databases(**{vendor: vendor for vendor in VENDORS})
    for alias in aliases:
        qplan.drop_tables(ALL, using=alias, missing_ok=True)
        qplan.create_tables(ALL, using=alias)
    yield aliases
    qplan.connections.close_all()
    for alias in aliases:
        qplan.drop_tables(ALL, using=alias, missing_ok=True)


@given(rows=st.lists(st.tuples(TIMES, DATETIMES), min_size=1, max_size=6), probe=TIMES)
def test_every_backend_keeps_and_computes_times_as_python(every_shift, rows, probe):
    expected = sorted(
        (f"r{i}", t.replace(fold=0), d.astimezone(UTC).time(), t.hour, t.minute, t.second,
         t.replace(minute=0, second=0, microsecond=0, fold=0),
         t.replace(second=0, microsecond=0, fold=0), t.replace(microsecond=0, fold=0))
        for i, (t, d) in enumerate(rows))
    below = sorted(r[0] for r in expected if r[1] < probe)
    utc_below = sorted(r[0] for r in expected if r[2] < probe)
    with rolled_back(every_shift):
        for alias in every_shift:
            Shift.objects.using(alias).bulk_create(
                [Shift(label=f"r{i}", starts=t, at=d) for i, (t, d) in enumerate(rows)])
            plan = Shift.objects.using(alias).annotate(
                u=TruncTime("at"), h=ExtractHour("starts"), m=ExtractMinute("starts"),
                s=ExtractSecond("starts"), th=TruncHour("starts"), tm=TruncMinute("starts"),
                ts=TruncSecond("starts"))
            got = sorted(plan.values_list("label", "starts", "u", "h", "m", "s", "th", "tm", "ts"))
            assert got == expected, alias
            assert sorted(plan.filter(starts__lt=probe).values_list("label", flat=True)) \
                == below, alias
            assert sorted(plan.filter(at__time__lt=probe).values_list("label", flat=True)) \
                == utc_below, alias
            assert sorted(plan.filter(u__lt=probe).values_list("label", flat=True)) \
                == utc_below, alias
            assert plan.aggregate(lo=Min("starts"), hi=Max("u")) == {
                "lo": min(r[1] for r in expected), "hi": max(r[2] for r in expected)}, alias
