"""Attack: hostile payloads of today's records (``slice_per``, times, aggregate options)
through ``qplan.loads`` and ``qplan.from_json``: refused with ``UnsafePayload`` naming what
is wrong, or accepted only as what the public API builds (and then compiled everywhere)."""

from __future__ import annotations

import datetime as dt
import json
import re
import pickle
from typing import Any

import pytest

import qplan
from qplan.errors import UnsafePayload
from qplan.jsonform import encode
from qplan.plan import FORMAT_VERSION

import relmodels  # noqa: F401  (registers the models)
import timemodels  # noqa: F401
from payloadkit import PlanLike

VENDORS = ("sqlite", "postgresql", "mysql", "duckdb")


def V(value: Any) -> tuple:
    return ("=", value)


def _both(model: str, records: tuple) -> list:
    """Load ``records`` as a pickle and as JSON; the loaded plans (or the errors raised)."""
    out = []
    try:
        out.append(qplan.loads(pickle.dumps(PlanLike(FORMAT_VERSION, model, records, None))))
    except UnsafePayload as exc:
        out.append(exc)
    doc = {"qplan": "plan", "format": FORMAT_VERSION, "model": model, "alias": None,
           "records": encode(records)}
    try:
        out.append(qplan.from_json(json.dumps(doc)))
    except UnsafePayload as exc:
        out.append(exc)
    return out


def _refused(model: str, records: tuple, match: str) -> None:
    for got in _both(model, records):
        assert isinstance(got, UnsafePayload), f"accepted: {records!r:.100}"
        assert re.search(match, str(got)), str(got)


@pytest.mark.parametrize("start,stop,match", [
    (V(True), V(2), "not a value node of an int"),
    (None, V(False), "not a value node of an int"),
    (V(2 ** 70), None, "0..2\\*\\*63-1"),
    (None, V(2 ** 63), "0..2\\*\\*63-1"),
    (V(-1), V(2), "0..2\\*\\*63-1"),
    (V(0.5), V(2), "not a value node of an int"),
    (V(3), V(2), "start <= stop"),
    (V(V(1)), None, "not a value node"),
    (("x", 1), None, "not a value node"),
    (V(0), V(2), "not what slice_per\\(\\) builds"),  # start 0 is recorded as None
])
def test_slice_per_bounds_refused(start, stop, match):
    _refused("relmodels.Novel", (("slice_per", "writer", start, stop),), match)


@pytest.mark.parametrize("path", [
    "title", "pk", "id", "writer__name", "writer__novel", "reviews", "writer__bio",
    "__class__", "_meta", "writer___cache_writer", "writer_id", "",
])
def test_slice_per_path_must_be_the_way_back_to_a_parent(path):
    """Prefetching partitions by one relation step to the parent (a foreign key or a
    many-to-many's way back); any other path (a plain column, a join that multiplies
    rows, a private attribute) is refused, by the API and in payloads."""
    _refused("relmodels.Novel", (("slice_per", path, None, V(2)),), "slice|field|relation")
    with pytest.raises((qplan.PlanError, qplan.FieldError)):
        relmodels.Novel.objects._slice_per(path, 0, 2)


@pytest.mark.parametrize("model,path", [
    ("relmodels.Novel", "writer"), ("relmodels.Novel", "editor"), ("relmodels.Genre", "novel"),
    ("relmodels.Novel", "genres"), ("relmodels.Review", "novel"),
])
def test_slice_per_edges_load_and_compile(model, path):
    for start, stop in ((None, V(0)), (V(5), V(5)), (None, V(2 ** 63 - 1)), (V(2 ** 63 - 1), None)):
        for plan in _both(model, (("slice_per", path, start, stop),)):
            assert isinstance(plan, qplan.Plan), plan
            for vendor in VENDORS:
                plan.compile(vendor)


@pytest.mark.parametrize("value,match", [
    (dt.time(1, 2, tzinfo=dt.timezone.utc), "naive"),
    (dt.time(1, tzinfo=dt.timezone(dt.timedelta(hours=23, minutes=59))), "naive"),
])
def test_aware_times_refused(value, match):
    _refused("timemodels.Shift", (("filter", ("starts", "exact", V(value))),), match)
    _refused("timemodels.Shift", (("filter", ("label", "exact", V(value))),), "expected str")
    _refused("timemodels.Shift", (("filter", ("at", "exact", V(value))),), "datetime")


@pytest.mark.parametrize("text", ["24:00:00", "23:60", "12:00+01:00",
                                  "12:00Z", "x" * 5000, "", 7, None])
def test_json_time_text_refused(text):
    doc = {"qplan": "plan", "format": FORMAT_VERSION, "model": "timemodels.Shift", "alias": None,
           "records": [["filter", ["starts", "exact", ["=", {"$time": text}]]]]}
    with pytest.raises(UnsafePayload):
        qplan.from_json(json.dumps(doc))


def test_time_edges_and_fold_load_as_the_api_builds_them():
    for value in (dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(1, 2, fold=1)):
        for plan in _both("timemodels.Shift", (("filter", ("starts", "exact", V(value))),)):
            assert isinstance(plan, qplan.Plan), plan
            assert plan == timemodels.Shift.objects.filter(starts=value)
            assert all(not getattr(v, "fold", 0) for v in _leaves(plan.records))


def _leaves(node: Any):
    if type(node) is tuple:
        for child in node:
            yield from _leaves(child)
    else:
        yield node


def _agg(default: Any) -> tuple:
    return (("aggregate", (("t", ("agg", "sum", ("F", "pages"), False, (("default", default),))),)),)


def test_aggregate_default_nested_deeply_is_refused_within_budgets():
    node: Any = V(1)
    for _ in range(250):  # past the payload depth budget (200), within pickle's recursion
        node = ("+", node, V(1))
    _refused("relmodels.Novel", _agg(node), "deep|nest|budget|large|many")
    text = '["=", 1]'
    for _ in range(5000):  # JSON text: far past the budget, refused before any recursion
        text = '["+", ' + text + ', ["=", 1]]'
    doc = json.dumps({"qplan": "plan", "format": FORMAT_VERSION, "model": "relmodels.Novel",
                      "alias": None, "records": []}).replace(
        '"records": []', '"records": [["aggregate", [["t", ["agg", "sum", ["F", "pages"], false, '
        '[["default", ' + text + ']]]]]]]')
    with pytest.raises(UnsafePayload, match="deep|nest|budget|[Rr]ecursion"):
        qplan.from_json(doc)


@pytest.mark.parametrize("default,match", [
    (V("text"), "default"), (V(dt.time(1)), "default"), (V(b"x"), "default"),
    (("F", "title"), "default|title"), (("F", "__class__"), "field"),
    (("agg", "sum", ("F", "pages"), False), "aggregate"),
    (("nope", 1), "not an expression|expression|record"),
])
def test_aggregate_default_of_the_wrong_kind_is_refused(default, match):
    _refused("relmodels.Novel", _agg(default), match)
