"""Placeholders are written by the generator, in text order; % is doubled only where needed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

import qplan
from qplan import Count, F, Max, Q, Sum, binding, compiler
from qplan import records as R
from qplan.backends import get
from test_properties import build, recipes
from testmodels import Author, Book

DIALECTS = qplan.backends.names()

# The reference writes a placeholder named qpN as ":qpN" whatever the dialect's own spelling
# (":qpN", "%(qpN)s", "$qpN"...).
NUMBERED = re.compile(r":qp(\d+)\b")


def reference_order(tree, dialect: str) -> list[int]:
    """Bind entry numbers in the order their placeholders appear in sqlglot's own text."""
    base = Dialect.get_or_raise(dialect).generator_class

    class Reference(base):  # type: ignore[valid-type, misc]
        TRANSFORMS = {**base.TRANSFORMS, binding.Spread: lambda self, e: f":{e.name}",
                      exp.Placeholder: lambda self, e: f":{e.name}"}

    text = Reference(dialect=dialect).generate(tree)
    return [int(n) for n in NUMBERED.findall(text)]


def assert_text_order(plan) -> None:
    for name in DIALECTS:
        backend = get(name)
        try:
            b, tree, *_ = compiler.statement(plan._meta, plan.shape()[0], backend)
        except qplan.NotSupportedError:
            continue
        _, recorded = binding.render(tree, backend.dialect, backend.paramstyle, list(b.binds))
        assert recorded == [b.binds[i] for i in reference_order(tree, backend.dialect)], name


def aggregate_plan(plan, **aggregates):
    """The plan ``plan.aggregate(**aggregates)`` runs, without running it."""
    ctx = plan._ctx()
    return plan._add(("aggregate", tuple((k, R.expression(ctx, v)) for k, v in aggregates.items())))


# Shapes that put placeholders on both sides of operators, in subqueries and in writes.
EXTRA = [
    lambda: Book.objects.annotate(p=F("pages") + 1).filter(p__in=[2, 3, 4]).values("p"),
    lambda: Book.objects.annotate(p=F("pages") * 2).filter(p__range=(1, 5), title__contains="%"),
    lambda: Book.objects.filter(title__contains=F("notes")).annotate(q=F("pages") % 3).values("q"),
    lambda: Book.objects.annotate(p=F("pages") - 2).order_by("-p").filter(p__gt=1).values("p")[1:4],
    lambda: Book.objects.annotate(p=F("pages") + 5).values("p").distinct().order_by("p"),
    lambda: Book.objects.values("author").annotate(n=Count("id"), s=Sum(F("pages") * 3))
    .filter(n__gt=1, s__lt=99),
    lambda: aggregate_plan(Book.objects.filter(pages__in=[1, 2, 3], author__name="a")[2:5],
                           m=Max(F("pages") + 7), n=Count("id")),
    lambda: aggregate_plan(Book.objects.filter(pages=3), m=Max(F("pages") * 7)),
    lambda: Book.objects.filter(Q(pages__in=[5]) | ~Q(title__startswith="x"))[3:]._add(("count",)),
    lambda: Book.objects.filter(author__name__in=["a", "b", "c"], pages=1).update_plan(pages=F("pages") + 9),
    lambda: Book.objects.filter(author__name="x").delete_plan(),
    lambda: Author.objects.bulk_create_plan([Author(id=i, name=str(i)) for i in range(1, 4)]),
]


@given(recipes)
def test_recorded_binds_follow_the_text_for_generated_plans(recipe):
    assert_text_order(build(recipe))


@pytest.mark.parametrize("make", EXTRA)
def test_recorded_binds_follow_the_text_for_tricky_shapes(make):
    assert_text_order(make())


def test_percent_is_doubled_only_in_statements_with_parameters():
    plan = Book.objects.annotate(**{"r%s": F("pages") % 7}).filter(title__contains="a")
    sql, params = plan.values_list("r%s", flat=True).compile("postgresql")
    assert '"r%%s"' in sql and "%% NULLIF(%s, 0)" in sql and sql.count("%s") == 2 + 1
    assert params == (7, "%a%")
    bare = Book.objects.annotate(**{"r%s": F("pages") % F("pages")}).values_list("r%s", flat=True)
    for vendor in qplan.backends.names():
        if get(vendor).paramstyle == "format":
            sql, params = bare.compile(vendor)
            assert params == () and "r%s" in sql and "%%" not in sql  # run without parameters
        else:  # qmark drivers do no % formatting
            sql, _ = plan.values_list("r%s", flat=True).compile(vendor)
            assert "r%s" in sql and "%%" not in sql


QUOTED_COLUMN = "a\"b`c'%?"


class Quoted(qplan.Model):
    v = qplan.fields.IntegerField(db_column=QUOTED_COLUMN)

    class Meta:
        db_table = "qt_quoted"
        key = "tests.test_binding.Quoted"


@pytest.mark.parametrize("dialect, quoted", [
    ("sqlite", '"a""b`c\'%?"'), ("postgresql", '"a""b`c\'%?"'), ("mysql", "`a\"b``c'%?`"),
])
def test_quote_characters_inside_names_are_doubled(dialect, quoted):
    assert get(dialect).quote(QUOTED_COLUMN) == quoted
    sql = Quoted.objects.values_list("v").filter(v=1).compile(dialect).sql
    if get(dialect).paramstyle == "format":
        quoted = quoted.replace("%", "%%")  # a statement with parameters
    assert f".{quoted} AS " in sql and sql.endswith(f".{quoted} = {binding.MARKS[get(dialect).paramstyle]}")


def test_the_generator_writes_each_placeholder_it_was_given():
    backend = get("postgresql")
    plan = Book.objects.annotate(p=F("pages") + 1).filter(p__gt=3).values("p")
    b, tree, *_ = compiler.statement(plan._meta, plan.shape()[0], backend)
    sql, recorded = binding.render(tree, backend.dialect, backend.paramstyle, list(b.binds))
    assert sql.count("%s") == len(recorded) == 3  # the annotation's 1 is written (and bound) twice
