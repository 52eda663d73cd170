"""Aggregate filter= as a boolean expression (Exists, ~Exists, Case(... BooleanField)) and
default= as an expression (Django 5.2: Coalesce(aggregate, default)) on every backend;
kinds checked at build; records replay, pickle, load from JSON and compile offline; over
shards an expression default applies once, after the merge."""

from __future__ import annotations

import decimal
import pickle

import pytest

import qplan
from qplan import (Avg, Count, Exists, F, FieldError, Max, Min, NotSupportedError, OuterRef, Q,
                   Sum, fields)
from qplan.functions import Abs, Case, Length, Upper, Value, When
from testmodels import Author, Book

D = decimal.Decimal
KEY = "k" * 32
VENDORS = ("sqlite", "postgresql", "mysql", "duckdb", "galera")


@pytest.fixture
def books(any_db):
    ann, bob = Author.objects.create(name="ann"), Author.objects.create(name="bobby")
    rows = [("a", ann, 10, 4.5, "1.50"), ("b", ann, 20, None, "2.25"),
            ("c", bob, 30, 3.0, "3.00"), ("d", None, 5, 1.5, "0.10")]
    Book.objects.bulk_create([Book(title=t, author=a, pages=p, rating=r, price=D(pr))
                              for t, a, p, r, pr in rows])


def by_ann():
    return Exists(Author.objects.filter(pk=OuterRef("author"), name="ann"))


def test_filter_takes_exists_and_boolean_expressions(books):
    long_ = Case(When(pages__gt=8, then=Value(True)), default=Value(False),
                 output_field=fields.BooleanField())
    got = Book.objects.aggregate(
        ann=Count("id", filter=by_ann()), other=Sum("pages", filter=~by_ann()),
        long=Count("*", filter=long_), both=Sum("pages", filter=Q(by_ann()) & Q(pages__gt=15)))
    assert got == {"ann": 2, "other": 35, "long": 3, "both": 20}


def test_default_takes_expressions(books):
    none = Book.objects.filter(pages__gt=999)
    got = none.aggregate(s=Sum("pages", default=Value(5)), a=Avg("rating", default=Value(1) + 2),
                         p=Sum("price", default=Abs(Value(-2))), t=Max("title", default=Upper(Value("x"))))
    assert got == {"s": 5, "a": 3.0, "p": D("2.00"), "t": "X"}
    assert type(got["a"]) is float and type(got["p"]) is D
    rows = Author.objects.annotate(
        s=Sum("book__pages", filter=Q(book__pages__gt=25), default=Length("name")),
        m=Min("book__rating", filter=Q(book__pages__gt=99), default=F("id") * 0.5),
    ).order_by("name").values_list("name", "s", "m")
    ids = dict(Author.objects.values_list("name", "id"))
    assert list(rows) == [("ann", 3, ids["ann"] * 0.5), ("bobby", 30, ids["bobby"] * 0.5)]


def test_expression_options_are_refused_at_build():
    with pytest.raises(FieldError, match="boolean expression"):
        Book.objects.aggregate_plan(n=Count("id", filter=F("pages")))
    with pytest.raises(FieldError, match="non-conditional"):
        Book.objects.aggregate_plan(n=Count("id", filter=Upper("title")))
    with pytest.raises(FieldError, match="Q object"):
        Book.objects.aggregate_plan(n=Count("id", filter="pages"))
    with pytest.raises(FieldError, match="CharField expression"):
        Book.objects.aggregate_plan(s=Sum("pages", default=Upper("title")))
    with pytest.raises(FieldError, match="FloatField expression"):
        Book.objects.annotate(s=Sum("pages", default=F("rating")))
    with pytest.raises(FieldError):
        Book.objects.aggregate_plan(s=Sum("pages", default=Value("x")))
    with pytest.raises(FieldError, match="aggregate"):
        Book.objects.annotate(s=Sum("pages", default=Max("pages")))
    with pytest.raises(FieldError, match="column 'pages'"):
        Book.objects.aggregate_plan(s=Sum("pages", default=F("pages") + 1))
    with pytest.raises(FieldError, match="Value\\(None\\)"):
        Book.objects.aggregate_plan(s=Sum("pages", default=Value(None)))


def test_records_replay_round_trip_and_compile_offline():
    plan = Book.objects.filter(pages__gt=1).aggregate_plan(
        n=Count("id", filter=by_ann()), s=Sum("price", default=Abs(Value(-2)) + 1),
        v=Sum("pages", default=Value(7)))
    items = dict(plan.records[-1][1])
    assert items["v"] == ("agg", "sum", ("F", "pages"), False, (("default", ("=", 7)),))
    assert items["s"][4][0][1][0] == "+"  # the expression record itself
    assert qplan.loads(qplan.dumps(plan)) == plan
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert qplan.from_json(plan.to_json(KEY), KEY) == plan
    assert qplan.loads(qplan.dumps(plan.using("other"))).db == "other"
    annotated = Author.objects.annotate(s=Sum("book__pages", default=Length("name")))
    assert qplan.loads(qplan.dumps(annotated)) == annotated
    for vendor in VENDORS:
        assert "COALESCE" in plan.compile(vendor).sql.upper()
        annotated.compile(vendor)


# --- sharded: the default once, after the merge ----------------------------------------------

import test_sharding  # noqa: E402
from test_sharding import Order  # noqa: E402

# the sharding fixtures: three SQLite shards and 'one' holding every row
_read_only_files, library = test_sharding._read_only_files, test_sharding.library


def _both(build):
    return build(Order.objects), build(Order.objects.using("one"))


def test_sharded_expression_default_applies_after_the_merge(library):
    got, want = _both(lambda p: p.filter(qty=999).aggregate(
        s=Sum("qty", default=Value(3) + 4), n=Sum("amount", default=Value(1))))
    assert got == want == {"s": 7, "n": D("1.00")}  # not 7 per shard
    got, want = _both(lambda p: list(p.values("tenant_id").order_by("tenant_id").annotate(
        s=Sum("qty", filter=Q(qty__gt=10), default=F("tenant_id") * 100))))
    assert got == want and any(r["s"] == r["tenant_id"] * 100 for r in got)
    with pytest.raises(NotSupportedError, match="Abs"):
        Order.objects.aggregate(s=Sum("qty", default=Abs(Value(-3))))
