"""Attacks through values: numbers that cost minutes to convert, values that raise raw
Python errors, names that break result rows (issue 9, §1 and §5).

Every bad value is a ``FieldError`` naming the field when a plan is built, and an
``UnsafePayload`` when a payload holds it, before any conversion runs.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import pickle
import time
from typing import Any

import pytest

import qplan
from payloadkit import PlanLike
from qplan import F, FieldError, Q, UnsafePayload
from qplan.jsonplan import encode, from_json
from qplan.payloads import loads
from qplan.plan import FORMAT_VERSION
from qplan.sharding import Sharded, stable_hash
from testmodels import Author, Book

D = decimal.Decimal
HUGE = D("1e1000000")  # int() of it builds a million-digit integer: minutes of CPU
UTC = dt.timezone.utc




def load_both(records: tuple, model: str = "testmodels.Book") -> None:
    """Both loaders refuse ``records`` quickly, as UnsafePayload."""
    for load, data in [
        (loads, pickle.dumps(PlanLike(FORMAT_VERSION, model, records, None))),
        (from_json, json.dumps({"qplan": "plan", "format": FORMAT_VERSION, "model": model,
                                "alias": None, "records": encode(records)})),
    ]:
        started = time.perf_counter()
        with pytest.raises(UnsafePayload):
            load(data)
        assert time.perf_counter() - started < 0.5


# --- numbers out of range, never converted ---------------------------------------------------------


BAD_NUMBERS = [
    ("pages", HUGE, "32-bit range"),
    ("pages", D("-1e1000000"), "32-bit range"),
    ("pages", D("1e20"), "32-bit range"),
    ("pages", 2**31, "32-bit range"),
    ("pages", -2**31 - 1, "32-bit range"),
    ("pages", 10**5000, "32-bit range"),
    ("pages", "9" * 5000, "an integer"),
    ("pages", float("nan"), "not NaN"),
    ("pages", float("inf"), "32-bit range"),
    ("pages", float("-inf"), "32-bit range"),
    ("pages", D("NaN"), "not NaN"),
    ("pages", D("sNaN"), "not NaN"),
    ("pages", D("Infinity"), "32-bit range"),
    ("pages", D("2.5"), "whole number"),
    ("pages", D("1e-1000000"), "whole number"),
    ("author", HUGE, "32-bit range"),  # a foreign key to an AutoField
    ("author_id", 2**40, "32-bit range"),
    ("price", HUGE, "under 10\\*\\*8"),
    ("price", D("1e8"), "under 10\\*\\*8"),
    ("price", D("NaN"), "finite decimal"),
    ("price", D("-Infinity"), "finite decimal"),
    ("price", float("nan"), "finite decimal"),
    ("rating", float("nan"), "not NaN"),
    ("rating", D("NaN"), "a number"),
    ("rating", D("sNaN"), "a number"),
    ("rating", 10**400, "a number"),
    ("rating", D("1e400"), "within a double's range"),
    ("created", dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))), "exists in UTC"),
    ("created", dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone(dt.timedelta(hours=-2))),
     "exists in UTC"),
]


@pytest.mark.parametrize("field, value, message", BAD_NUMBERS,
                         ids=[f"{f}-{type(v).__name__}-{i}" for i, (f, v, _) in enumerate(BAD_NUMBERS)])
def test_bad_numbers_are_field_errors_then_refused_payloads(field: str, value: Any, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(FieldError, match=f"Book.{field.removesuffix('_id')}: .*{message}"):
        Book.objects.filter(**{field: value})
    with pytest.raises(FieldError, match=message):
        Book.objects.filter(**{f"{field}__in": [value]})
    path = field.removesuffix("_id")
    if isinstance(value, (int, float, D, dt.datetime)) and not (isinstance(value, int) and value > 2**64):
        load_both((("filter", (path, "exact", ("=", value))),))
        load_both((("filter", (path, "in", ("=", (value,)))),))
    assert time.perf_counter() - started < 1


def test_in_range_numbers_still_work() -> None:
    plan = Book.objects.filter(pages__in=[-2**31, 2**31 - 1, 2.0, D("7"), " 12 "],
                               price=D("99999999.99"), rating=float("inf"))
    assert plan.records[0][1][1][0][2] == ("=", (-2**31, 2**31 - 1, 2, 7, 12))
    assert loads(qplan.dumps(plan)) == plan and from_json(plan.to_json()) == plan


def test_big_integer_field_is_64_bit() -> None:
    class Counter(qplan.Model):
        hits = qplan.fields.BigIntegerField()

        class Meta:
            db_table = "qt_counter_value_attacks"

    assert Counter.objects.filter(hits=2**63 - 1).records[0][1][2] == ("=", 2**63 - 1)
    for bad in (2**63, -2**63 - 1, HUGE, D("NaN")):
        with pytest.raises(FieldError, match="Counter.hits: .*64-bit range|NaN"):
            Counter.objects.filter(hits=bad)


def test_writes_check_values_too() -> None:
    with pytest.raises(FieldError, match="Book.pages: .*32-bit"):
        Book.objects.all().update_plan(pages=HUGE)
    with pytest.raises(FieldError, match="Book.price: .*finite"):
        Book.objects.create_plan(title="x", price=D("NaN"))
    load_both((("update", (("pages", ("=", HUGE)),)),))
    load_both((("insert", ("title", "pages"), (((("=", "x")), ("=", 2**40)),)),))


def test_annotation_values_are_finite_64_bit_numbers() -> None:
    plan = Book.objects.annotate(x=F("pages"))
    for bad, message in [(float("nan"), "NaN"), (D("NaN"), "not a finite"), (D("inf"), "not a finite"),
                         (2**64, "beyond 64 bits"), (10**5000, "beyond 64 bits")]:
        with pytest.raises(FieldError, match=message):
            plan.filter(x__gt=bad)
    plan.filter(x__gt=float("inf")).filter(x__in=[1, 2**63 - 1])


# --- stable_hash -----------------------------------------------------------------------------------


ODD_KEYS = [HUGE, D("-1e1000000"), D("1e-1000000"), D("NaN"), D("sNaN"), D("-Infinity"),
            float("nan"), float("inf"), 1e308, "\ud800", b"\xff", None, dt.time(1, tzinfo=UTC)]


@pytest.mark.parametrize("value", ODD_KEYS, ids=range(len(ODD_KEYS)))
def test_stable_hash_is_cheap_for_any_value(value: Any) -> None:
    started = time.perf_counter()
    first = stable_hash(value)
    assert stable_hash(value) == first and isinstance(first, int)
    if value is not None:
        assert Sharded("pages", ["a", "b", "c"]).shard_for(value).name in ("a", "b", "c")
    assert time.perf_counter() - started < 0.05


def test_stable_hash_places_whole_numbers_as_before() -> None:
    assert [stable_hash(v) for v in (5, D("5"), D("5.00"), 5.0, D("1e30"), 1e30)] == \
        [5, 5, 5, 5, 10**30, int(1e30)]
    assert stable_hash(D("1.50")) == stable_hash(1.5) == stable_hash(D("1.5"))


# --- JSON depth ------------------------------------------------------------------------------------


def test_json_nested_too_deep_is_a_field_error() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(FieldError, match="Book.meta: a JSON value nested more than 100 deep"):
        Book.objects.create_plan(title="x", meta=deep)
    shared: Any = [1]
    for _ in range(150):
        shared = [shared, shared]  # a DAG: each level walked once
    with pytest.raises(FieldError, match="nested more than 100 deep"):
        Book.objects.create_plan(title="x", meta=shared)
    fine: Any = 1
    for _ in range(99):
        fine = {"a": fine}
    plan = Book.objects.create_plan(title="x", meta=fine)
    assert loads(qplan.dumps(plan)) == plan
    text = "[" * 5000 + "]" * 5000
    load_both((("insert", ("title", "meta"), ((("=", "x"), ("=", text)),)),))


# --- names of result rows ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [":qp0", "class", "_x", "9a", "%s", "a-b"])
def test_named_rows_need_identifiers(name: str) -> None:
    plan = Book.objects.annotate(**{name: F("pages")})  # a legal alias...
    with pytest.raises(FieldError, match=f"named=True.*{name!r}"):
        plan.values_list(name, named=True)  # ...but not a named-tuple field
    assert plan.values_list(name, "title").records[-1][1] == (name, "title")
    load_both(plan.records + (("values_list", (name,), False, True),))


def test_named_rows_refuse_repeated_names() -> None:
    with pytest.raises(FieldError, match="named=True.*'title'"):
        Book.objects.values_list("title", "title", named=True)
    Book.objects.values_list("title", "author__name", named=True)


# --- raw Python errors no longer escape --------------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda: Book.objects.filter(pages=float("nan")),
    lambda: Book.objects.filter(pages=float("inf")),
    lambda: Book.objects.filter(pages=D("NaN")),
    lambda: Book.objects.filter(pages__range=(0, D("sNaN"))),
    lambda: Book.objects.filter(Q(pages__gt=HUGE) | Q(title="x")),
    lambda: Book.objects.filter(created=dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))),
    lambda: Author.objects.filter(id=float("nan")),
    lambda: Book.objects.all()[: 2**64],
])
def test_only_qplan_errors(build: Any) -> None:
    with pytest.raises(qplan.Error):
        build()


def test_deep_nesting_is_a_field_error_and_chained_ors_stay_flat():
    from qplan import F, Q
    from testmodels import Book

    q = Q(pages=0)
    for i in range(3000):  # q = q | Q(...) in a loop: flat, as in Django
        q = q | Q(pages=i)
    assert len(Book.objects.filter(q).records[0][1][1]) == 3001
    deep = Q(pages=1)
    for _ in range(200):
        deep = ~Q(deep, title="x")
    with pytest.raises(qplan.FieldError, match="nest more than"):
        Book.objects.filter(deep)
    expr = F("pages")
    for _ in range(2000):
        expr = expr + 1
    with pytest.raises(qplan.FieldError, match="nest more than"):
        Book.objects.annotate(n=expr)
