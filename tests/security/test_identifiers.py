"""Names are names: whatever characters a table, column or annotation name holds, it stays
one identifier on every database, and no value bound next to it can turn into SQL.

These run on real SQLite, PostgreSQL and MariaDB databases. Each attack would have worked
against a compiler that found its placeholders by searching the SQL text (issue 9 §1).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

import qplan
from conftest import VENDORS
from qplan import Count, F, Max, Model, Q, Sum, fields
from testmodels import Book



class Victim(Model):
    """A table an injection would drop."""

    name = fields.CharField(max_length=20)

    class Meta:
        db_table = "victim"


# Legal on all three databases: no NUL anywhere, nothing ending in a space (MariaDB), only
# BMP characters (MariaDB), short enough for MariaDB's 64-character names with "_idx" added.
HOSTILE_TABLE = "x:qp0 \"t`'?%\n;--"


class Parent(Model):
    id = fields.AutoField(db_column="i'd%s\"`?")
    label = fields.CharField(max_length=50, db_column="%(x)s")

    class Meta:
        db_table = "pct%s"


class Hostile(Model):
    qp = fields.CharField(max_length=50, db_column=":qp0", db_index=True)
    pct = fields.CharField(max_length=50, default="", db_column="%s")
    percent = fields.IntegerField(default=0, db_column="%")
    mark = fields.CharField(max_length=50, null=True, db_column="?")
    dq = fields.IntegerField(default=0, db_column='a"b')
    bt = fields.IntegerField(default=0, db_column="a`b")
    sq = fields.CharField(max_length=50, default="", db_column="a'b")
    nl = fields.CharField(max_length=50, default="", db_column="line1\nline2")
    semi = fields.IntegerField(default=0, db_column="x; DROP TABLE victim; --")
    parent = fields.ForeignKey(Parent, null=True, on_delete=fields.CASCADE, db_column="p:qp1%s")

    class Meta:
        db_table = HOSTILE_TABLE


class Colon(Model):
    n = fields.IntegerField(default=0, db_column="%(qp0)s")

    class Meta:
        db_table = "x:qp0"


HOSTILE = [Victim, Parent, Hostile, Colon]


@pytest.fixture(params=VENDORS)
def hostile_db(request: pytest.FixtureRequest, databases: Any) -> Iterator[str]:
    """``default`` on each backend, with the test models' tables and the hostile ones."""
    databases(default=request.param)
    qplan.drop_tables(HOSTILE, missing_ok=True)
    qplan.create_tables(HOSTILE)
    Victim.objects.create(name="still here")
    yield str(request.param)
    qplan.drop_tables(HOSTILE, missing_ok=True)


def victim_intact() -> bool:
    return list(Victim.objects.values_list("name", flat=True)) == ["still here"]


# The value sits next to an alias named like a placeholder: a compiler that finds
# placeholders in the SQL text binds it inside the quoted alias, where the driver's
# quoting of a string does not escape the identifier's quote character.
ATTACKS = [
    'x" FROM qt_book; DROP TABLE victim; --',
    "x` FROM qt_book; DROP TABLE victim; --",
    "x'); DROP TABLE victim; --",
]
ALIASES = [":qp0", "%(qp0)s", "%s", "%", "?x", "qp0?"]
# Refused when the plan is built, as Django's check_alias does (quotes, whitespace, comments),
# and the bare markers of the records' grammar. Names like these stay safe as columns and
# tables (test_names_with_quotes_and_placeholders_round_trip).
REFUSED = [':qp0" --', "a`b", "a'b", "a b", "a;b", "a--b", "?", "=", ""]


@pytest.mark.parametrize("alias", REFUSED)
def test_annotation_names_django_refuses_are_refused_when_built(alias):
    with pytest.raises(qplan.FieldError, match="annotation"):
        Book.objects.annotate(**{alias: F("pages")})
    with pytest.raises(qplan.FieldError):
        Book.objects.aggregate_plan(**{alias: Sum("pages")})


@pytest.mark.parametrize("alias", ALIASES)
def test_an_annotation_named_like_a_placeholder_is_only_a_column_name(hostile_db, alias):
    for attack in ATTACKS:
        Book.objects.create(title=attack, pages=7)
    Book.objects.create(title="other", pages=8)
    for attack in ATTACKS:
        plan = Book.objects.filter(title=attack).annotate(**{alias: F("pages")})
        assert list(plan.values("title", alias)) == [{"title": attack, alias: 7}]
        assert list(plan.values_list(alias, flat=True)) == [7]
        assert plan.filter(**{f"{alias}__gt": 6}).count() == 1
        assert victim_intact()
    grouped = Book.objects.filter(title__in=ATTACKS).values("pages").annotate(**{alias: Count("id")})
    assert list(grouped) == [{"pages": 7, alias: 3}]
    assert Book.objects.filter(title__contains="DROP").aggregate(**{alias: Sum("pages")}) == {alias: 21}
    assert victim_intact()


def test_names_with_quotes_and_placeholders_round_trip(hostile_db):
    parent = Parent.objects.create(label="p%s'\"`")
    objs = [
        Hostile(qp=f"v{i}%", pct="%s", percent=i, mark=None if i % 2 else "?", dq=i, bt=-i,
                sq="it's", nl="a\nb", semi=i * 10, parent=parent if i < 3 else None)
        for i in range(5)
    ]
    Hostile.objects.bulk_create(objs)
    one = Hostile.objects.create(qp=":qp0", pct="x", percent=99)
    assert [o.pk for o in objs] == sorted(o.pk for o in objs) and one.pk > objs[-1].pk
    one.pct = "%(x)s"
    one.save()
    assert Hostile.objects.get(pk=one.pk).pct == "%(x)s"

    assert Hostile.objects.count() == 6
    assert Hostile.objects.filter(qp=":qp0").values_list("percent", flat=True).get() == 99
    assert sorted(Hostile.objects.filter(qp__in=["v1%", "v3%", "nope"]).values_list("dq", flat=True)) == [1, 3]
    assert Hostile.objects.filter(qp__contains="%").count() == 5  # the wildcard matches itself
    assert Hostile.objects.filter(qp__startswith="v", qp__endswith="%").count() == 5
    assert Hostile.objects.filter(sq__icontains="IT'S").count() == 5
    assert Hostile.objects.filter(nl="a\nb", mark__isnull=True).count() == 2
    assert Hostile.objects.filter(mark="?").count() == 3
    assert Hostile.objects.exclude(Q(percent__gte=3) | Q(mark=None)).count() == 2
    assert list(Hostile.objects.filter(percent__lt=99).order_by("-bt").values_list("percent", flat=True)) == \
        [0, 1, 2, 3, 4]
    assert list(Hostile.objects.filter(parent__label="p%s'\"`").order_by("dq").values_list("dq", flat=True)) == \
        [0, 1, 2]
    rows = list(Hostile.objects.filter(percent__lt=2).order_by("percent").values("qp", "parent__label"))
    assert rows == [{"qp": "v0%", "parent__label": "p%s'\"`"}, {"qp": "v1%", "parent__label": "p%s'\"`"}]
    doubled = Hostile.objects.filter(percent__lt=3).annotate(**{"r%s": F("semi") % 7 + F("dq")})
    assert sorted(doubled.values_list("r%s", flat=True)) == [0, 4, 8]
    assert Hostile.objects.filter(percent__lt=99).aggregate(top=Max("semi"), n=Count("mark")) == \
        {"top": 40, "n": 3}
    assert list(Hostile.objects.values("parent").annotate(n=Count("id")).order_by("parent")) == \
        [{"parent": None, "n": 3}, {"parent": parent.pk, "n": 3}]
    assert Hostile.objects.order_by("percent")[1:3].count() == 2
    assert Hostile.objects.filter(percent__gte=3).update(sq="o'k", nl="%") == 3
    assert Hostile.objects.filter(nl="%").count() == 3
    assert Hostile.objects.filter(parent__label__contains="%s").delete()[0] == 3
    assert Hostile.objects.count() == 3
    assert [c.n for c in Colon.objects.bulk_create([Colon(n=1), Colon(n=2)])] == [1, 2]
    assert Colon.objects.filter(n__gt=1).update(n=F("n") + 10) == 1
    assert sorted(Colon.objects.values_list("n", flat=True)) == [1, 12]
    assert victim_intact()

    qplan.drop_tables([Hostile, Colon])
    qplan.create_tables([Hostile, Colon])
    assert Hostile.objects.count() == 0 and not Colon.objects.exists()


def test_explicit_ids_in_a_hostile_table_do_not_collide_with_generated_ones(hostile_db):
    Parent.objects.bulk_create([Parent(id=5, label="five"), Parent(id=6, label="six")])
    later = Parent.objects.create(label="later")
    assert later.pk > 6
    assert list(Parent.objects.order_by("id").values_list("label", flat=True)) == ["five", "six", "later"]


def test_rows_without_any_value_are_inserted_into_hostile_tables(hostile_db):
    class Empty(Model):
        class Meta:
            db_table = "e%s:qp0`\""

    qplan.create_tables([Empty])
    try:
        first, second = Empty.objects.create(), Empty.objects.create()
        assert second.pk > first.pk and Empty.objects.count() == 2
    finally:
        qplan.drop_tables([Empty])
