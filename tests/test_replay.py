"""Loaded plans pass the checks a plan built in code passes (``qplan.replay``), and
annotation and aggregate aliases are checked like field names (issue 9, §1, §6, §7)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import pickle
import sys
from pathlib import Path

import pytest

import qplan
from payloadkit import PlanLike
from qplan import Count, F, FieldError, Q, Sum, UnsafePayload
from qplan.jsonplan import encode, from_json
from qplan.payloads import dumps, loads
from qplan.plan import FORMAT_VERSION
from qplan.replay import replay, same
from testmodels import Author, Book, Tag

sys.path.insert(0, str(Path(__file__).parent / "golden"))
import make_golden  # noqa: E402

D = decimal.Decimal
UTC = dt.timezone.utc




def refused(records: tuple, match: str, model: str = "testmodels.Book") -> None:
    """Both loaders refuse ``records``, with a message matching ``match``."""
    with pytest.raises(UnsafePayload, match=match):
        loads(pickle.dumps(PlanLike(FORMAT_VERSION, model, records, None)))
    doc = {"qplan": "plan", "format": FORMAT_VERSION, "model": model, "alias": None,
           "records": encode(records)}
    with pytest.raises(UnsafePayload, match=match):
        from_json(json.dumps(doc))


def built_plans() -> list[qplan.Plan]:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    return [
        *(build() for build in make_golden.PLANS.values()),
        Book.objects.filter(Q(pages__gt=1) & ~Q(title__in=["a", "b"]) | Q(author=None)),
        Book.objects.filter(pages__range=(1, 5), created__gte=when).order_by("-pages")[3:][:2],
        Book.objects.filter(author_id=5).values("author_id", "author__name").distinct(),
        Book.objects.annotate(n=Count("id"), s=Sum("pages", distinct=True), **{":qp0": F("pages")})
        .filter(n__gte=2, s__isnull=True).values_list("n", "s", named=True),
        Book.objects.annotate(half=F("pages") / 2 + F("rating") * 3 - 1).filter(half__lt=F("pages") % 3),
        Book.objects.filter(is_active=True).exclude(is_active=False).reverse()[5:],
        Book.objects.filter(title="x")._add(("count",)),
        Book.objects.filter(title="x")._add(("exists",)),
        Book.objects.filter(pages__gt=0).aggregate_plan(total=Sum("pages"), n=Count("*")),
        Book.objects.filter(pk=3).update_plan(meta={"a": [1, None]}, author=None, price=D("1.5")),
        Tag.objects.bulk_create_plan([Tag(code="a", label=None), Tag(code="b", label="B")]),
        Author.objects.bulk_create_plan([Author(id=3, name="x")]),
        Author.objects.bulk_create_plan([]),
        Book.objects.using("other").filter(cover__in=[b"", b"\x00"]),
    ]


@pytest.mark.parametrize("plan", built_plans(), ids=repr)
def test_every_plan_built_in_code_replays_to_itself(plan: qplan.Plan) -> None:
    again = replay(plan.model, plan.records, plan.db)
    assert again == plan and same(again.records, plan.records) and again.db == plan.db
    assert loads(dumps(plan)) == plan
    assert from_json(plan.to_json()) == plan


def test_same_is_strict_about_types_and_offsets() -> None:
    assert same((1, ("a", D("1.0"))), (1, ("a", D("1.0"))))
    assert not same(1, 1.0) and not same(1, True) and not same((1,), [1])
    assert not same(dt.datetime(2024, 1, 1, tzinfo=UTC),
                    dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))))


@pytest.mark.parametrize("records, match", [
    # commands and their grammar
    ((("sort", ("pages",)),), "unknown command"),
    ((("filter",),), "expected 2"),
    ((("distinct", 1),), "1 parts|2 parts"),
    ((("count",), ("count",)), "count\\(\\) before its last command"),
    ((("filter", ("&", (("pages", "exact", ("=", 1)),))),), "not what filter\\(\\) builds"),
    ((("filter", ("pages", "exact", ("!", 1))),), "not an expression"),
    ((("slice", ("=", 0), None),), "not what slice\\(\\) builds"),
    ((("slice", None, ("=", True)),), "int in 0..2\\*\\*63-1"),
    ((("slice", None, ("=", -1)),), "int in 0..2\\*\\*63-1"),
    ((("slice", None, ("=", 2**70)),), "int in 0..2\\*\\*63-1"),
    ((("slice", None, ("=", 5)), ("slice", None, ("=", 2))), "not what .*build"),
    ((("slice", None, ("=", 5)), ("filter", ("pages", "exact", ("=", 1)))), "once a slice"),
    ((("values_list", ("title",), 1, 0),), "not a bool"),
    ((("values_list", ("title", "pages"), True, False),), "exactly one field"),
    ((("values", ("title", 5)),), "tuple of str"),
    ((("insert", ("title",), ((("=", "x"),),)), ("delete",)), "before its last command"),
    ((("filter", ("pages", "exact", ("=", 1))), ("insert", ("title",), ((("=", "x"),),))),
     "start from Model.objects"),
    # fields and lookups
    ((("filter", ("pagez", "exact", ("=", 1))),), "no field 'pagez'.*'pages'"),
    ((("filter", ("pages", "icontains", ("=", 1))),), "lookup 'icontains' is not supported"),
    ((("filter", ("title__x", "exact", ("=", 1))),), "not a relation"),
    ((("order_by", ("-nope",)),), "no field 'nope'"),
    ((("filter", ("pages", "exact", ("F", "nope"))),), "no field 'nope'"),
    # values, re-checked by their field: type, range, NaN, canonical form
    ((("filter", ("pages", "exact", ("=", "x"))),), "Book.pages: expected an integer"),
    ((("filter", ("pages", "exact", ("=", 2**40))),), "Book.pages: .*32-bit"),
    ((("filter", ("pages", "exact", ("=", 1.0))),), "not what filter\\(\\) builds"),
    ((("filter", ("pages", "exact", ("=", True))),), "Book.pages: expected an integer"),
    ((("filter", ("pages", "exact", ("=", " 7"))),), "not what filter\\(\\) builds"),
    ((("filter", ("rating", "gt", ("=", float("nan")))),), "Book.rating: .*NaN"),
    ((("filter", ("price", "gt", ("=", D("NaN")))),), "Book.price: .*finite"),
    ((("filter", ("price", "gt", ("=", D("1e30")))),), "Book.price: .*under 10"),
    ((("filter", ("created", "gt", ("=", dt.datetime(2024, 1, 1)))),), "not what filter"),
    ((("filter", ("created", "gt", ("=", dt.datetime(2024, 1, 1, tzinfo=dt.timezone(
        dt.timedelta(hours=2)))))),), "not what filter"),
    ((("filter", ("is_active", "exact", ("=", True))),), "not what filter"),
    ((("filter", ("pages", "in", ("=", (1, None)))),), "not what filter"),
    ((("filter", ("pages", "range", ("=", (1, 2, 3)))),), "'range' takes \\(low, high\\)"),
    ((("filter", ("pages", "isnull", ("=", True))),), "isnull takes True or False|not what"),
    ((("filter", ("pages", "exact", ("=", None))),), "not what filter"),
    ((("update", (("pages", ("=", "x")),)),), "Book.pages: expected an integer"),
    ((("update", (("title", ("=", None)),)),), "cannot be None"),
    ((("update", (("title", ("=", "b")), ("pages", ("=", 1)))),), "not what update"),
    ((("update", (("meta", ("=", "{'a': 1}")),)),), "Book.meta: expected JSON text"),
    ((("update", (("meta", ("=", '{"b":1,"a":2}')),)),), "not what update"),
    ((("insert", ("title",), ((("=", "x"),),)),), "Book.pages|not what insert"),
    # annotations and aggregates
    ((("annotate", (("pages", ("F", "pages")),)),), "annotation 'pages' clashes with a field"),
    ((("annotate", (("author_id", ("F", "pages")),)),), "clashes with a field"),
    ((("annotate", (("pk", ("F", "pages")),)),), "clashes with a field"),
    ((("annotate", (("", ("F", "pages")),)),), "non-empty str"),
    ((("annotate", ((5, ("F", "pages")),)),), "non-empty str"),
    ((("annotate", (("a b", ("F", "pages")),)),), "cannot contain whitespace"),
    ((("annotate", (("x", ("agg", "median", ("F", "pages"), False)),)),), "not an expression"),
    ((("annotate", (("x", ("agg", "count", "*", 1)),)),), "not a bool"),
    ((("annotate", (("x", ("**", ("F", "pages"), ("=", 2))),)),), "not an expression"),
    ((("annotate", (("x", ("agg", "sum", ("agg", "sum", ("F", "pages"), False), False)),)),),
     "cannot nest aggregate"),
    ((("aggregate", (("x", ("F", "pages")),)),), "not an aggregate"),
    ((("aggregate", (("title", ("agg", "count", "*", False)),)),), "aggregate 'title' clashes"),
    ((("annotate", (("x", ("F", "pages")),)), ("values_list", ("x",), False, True)), "|"),
])
def test_loaded_plans_are_checked_like_built_ones(records: tuple, match: str) -> None:
    if match == "|":  # a valid plan: named row of a legal name
        loads(pickle.dumps(PlanLike(FORMAT_VERSION, "testmodels.Book", records, None)))
        return
    refused(records, match)


# --- aliases ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, message", [
    ("pages", "clashes with a field"),
    ("author", "clashes with a field"),
    ("author_id", "clashes with a field"),
    ("pk", "clashes with a field"),
    ("", "non-empty str"),
    ("x y", "cannot contain whitespace"),
    ("x\ty", "cannot contain whitespace"),
    ("a'b", "quotes"),
    ('a"b', "quotes"),
    ("a`b", "quotes"),
    ("a[b", "brackets"),
    ("a]b", "brackets"),
    ("a;b", "semicolons"),
    ("a--b", "SQL comments"),
    ("a/*b", "SQL comments"),
    ("a*/b", "SQL comments"),
    ("=", "nor be '=' or '\\?'"),
    ("?", "nor be '=' or '\\?'"),
])
def test_bad_aliases_are_field_errors(name: str, message: str) -> None:
    with pytest.raises(FieldError, match=f"Book: annotation .*{message}"):
        Book.objects.annotate(**{name: F("pages")})
    with pytest.raises(FieldError, match=f"Book: aggregate .*{message}"):
        Book.objects.aggregate_plan(**{name: Count("id")})


@pytest.mark.parametrize("name", [":qp0", "%s", "%", "?x", "a?", "n__count", "Ünïcode", "x.y", "$1"])
def test_aliases_the_sql_layer_quotes_are_allowed(name: str) -> None:
    plan = Book.objects.annotate(**{name: F("pages")}).filter(**{f"{name}__gt": 1})
    for dialect in qplan.backends.names():
        plan.compile(dialect)
    assert loads(dumps(plan)) == plan and from_json(plan.to_json()) == plan
    assert Book.objects.aggregate_plan(**{name: Count("id")}).records[-1][1][0][0] == name


def test_default_aggregate_aliases_stay_legal() -> None:
    plan = Book.objects.annotate(Count("id")).filter(id__count__gt=1)
    assert plan.records[0] == ("annotate", (("id__count", ("agg", "count", ("F", "id"), False)),))
    assert loads(dumps(plan)) == plan


@pytest.mark.parametrize("rhs, match", [
    (("query", "testmodels.Nope", ()), "Nope"),
    (("query", "testmodels.Author", (("filter", ("nope", "exact", ("=", 1))),)), "nope"),
    (("query", "testmodels.Author", (("values", ("id", "name")),)), "one column"),
    (("query", "testmodels.Author", (("filter", ("name", "exact", ("=", 1))),)), "name"),
    (("query", "testmodels.Author", (("count",),)), "count"),
])
def test_a_subquery_in_a_payload_is_replayed_too(rhs, match):
    refused((("filter", ("author", "in", rhs)),), match)


def test_subqueries_xor_and_output_fields_load():
    from qplan import ExpressionWrapper, fields

    plan = Book.objects.filter(Q(author__in=Author.objects.filter(name="a").values("id")) ^ Q(pages=1))
    plan = plan.annotate(x=ExpressionWrapper(F("title") + 1, output_field=fields.IntegerField()))
    assert loads(dumps(plan)) == plan
    assert from_json(plan.to_json(key=b"k" * 32), key=b"k" * 32) == plan
    assert replay(Book, plan.records, None) == plan
