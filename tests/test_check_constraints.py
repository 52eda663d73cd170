"""``qplan.CheckConstraint`` in ``Meta.constraints``: written into CREATE TABLE with its values
as SQL literals (hostile strings stay values), enforced by every backend (a violating
write raises ``qplan.IntegrityError``), refused at class creation when it names another
model's columns, an aggregate or a bad name."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from sqlglot import exp

import qplan
from qplan import CheckConstraint, F, FieldError, Model, Q, Sum, fields
from qplan.schema import table_sql

HOSTILE = "x') OR 1=1; --"
QUOTES = "it's \"quoted\" \\' \\\\ `tick` %s ?"
UTC = dt.timezone.utc


class Gadget(Model):
    name = fields.CharField(max_length=60)
    qty = fields.IntegerField(default=0)
    low = fields.IntegerField(null=True)
    high = fields.IntegerField(null=True)
    price = fields.DecimalField(max_digits=8, decimal_places=2, default=decimal.Decimal("1"))
    kind = fields.CharField(max_length=20, default="a")
    made = fields.DateTimeField(null=True)
    active = fields.BooleanField(default=True)

    class Meta:
        db_table = "qc_gadget"
        constraints = [
            CheckConstraint(condition=Q(qty__gte=0), name="qc_gadget_qty_gte_0"),
            CheckConstraint(condition=~Q(name=HOSTILE) & ~Q(name=QUOTES), name="qc_gadget_name"),
            CheckConstraint(condition=Q(low__isnull=True) | Q(high__isnull=True)
                            | Q(low__lte=F("high")), name="qc_gadget_low_high"),
            CheckConstraint(condition=Q(kind__in=["a", "b'", HOSTILE]), name="qc_gadget_kind"),
            CheckConstraint(condition=Q(price__range=(decimal.Decimal("0.50"), 1000)),
                            name="qc_gadget_price"),
            CheckConstraint(condition=Q(made__isnull=True)
                            | Q(made__gte=dt.datetime(2000, 1, 1, tzinfo=UTC)),
                            name="qc_gadget_made"),
            CheckConstraint(condition=Q(active=True) | Q(qty=0), name="qc_gadget_active"),
        ]


@pytest.fixture
def gadgets(any_db):
    qplan.drop_tables([Gadget], missing_ok=True)
    qplan.create_tables([Gadget])
    yield any_db
    qplan.drop_tables([Gadget], missing_ok=True)


def test_rows_that_satisfy_the_conditions_are_written(gadgets):
    Gadget.objects.create(name="ok", qty=3, low=1, high=2, kind=HOSTILE,
                          made=dt.datetime(2001, 1, 1, tzinfo=UTC))
    Gadget.objects.create(name=HOSTILE + "!", kind="b'", low=5)  # NULL high: the check passes
    Gadget.objects.create(name="off", active=False, qty=0)
    assert Gadget.objects.count() == 3


VIOLATIONS = [
    dict(qty=-1),
    dict(name=HOSTILE),
    dict(name=QUOTES),
    dict(low=3, high=2),
    dict(kind="c"),
    dict(kind="b"),
    dict(price=decimal.Decimal("0.49")),
    dict(made=dt.datetime(1999, 12, 31, tzinfo=UTC)),
    dict(active=False, qty=1),
]


def test_a_violating_insert_raises_integrity_error(gadgets):
    for values in VIOLATIONS:
        with pytest.raises(qplan.IntegrityError):
            Gadget.objects.create(**{"name": "n", **values})
    with pytest.raises(qplan.IntegrityError):  # all or none
        Gadget.objects.bulk_create([Gadget(name="fine"), Gadget(name="n", qty=-1)])
    assert Gadget.objects.count() == 0


def test_a_violating_update_raises_integrity_error(gadgets):
    obj = Gadget.objects.create(name="n", qty=1)
    with pytest.raises(qplan.IntegrityError):
        Gadget.objects.filter(pk=obj.pk).update(qty=F("qty") - 5)
    obj.name = HOSTILE
    with pytest.raises(qplan.IntegrityError):
        obj.save()
    assert Gadget.objects.values_list("name", "qty").get() == ("n", 1)


def test_the_ddl_holds_values_as_literals_on_every_backend():
    for vendor in qplan.backends.names():
        ddl = "\n".join(table_sql(Gadget._meta, qplan.backends.get(vendor)))
        assert "CHECK" in ddl and ddl.count("CONSTRAINT") == 7
        name = exp.to_identifier("qc_gadget_name", quoted=True).sql(qplan.backends.get(vendor).dialect)
        assert f"CONSTRAINT {name} CHECK" in ddl
        assert "x'') OR 1=1; --" in ddl  # the quote doubled: one string literal
        assert "%s" not in ddl.replace("%s ?", "")  # no placeholder was left in


def test_the_deprecated_check_keyword_means_the_same():
    with pytest.warns(DeprecationWarning, match="condition"):
        old = CheckConstraint(check=Q(qty__gte=0), name="x_old")
    assert old.condition.children == (("qty__gte", 0),)
    with pytest.raises(FieldError, match="not both"):
        CheckConstraint(check=Q(qty__gte=0), condition=Q(qty__gte=0), name="x_both")
    with pytest.raises(FieldError, match="condition"):
        CheckConstraint(name="x_none")


def model(name: str, *constraints: CheckConstraint, **extra) -> type:
    meta = type("Meta", (), {"db_table": name, "constraints": list(constraints),
                             "key": f"tests.test_check_constraints.{name}", **extra})
    return type(name, (Model,), {
        "__module__": __name__, "Meta": meta,
        "qty": fields.IntegerField(default=0),
        "ratio": fields.FloatField(null=True), "blob": fields.BinaryField(null=True),
        "owner": fields.ForeignKey(Gadget, null=True)})  # no reverse relation on shared models


@pytest.mark.parametrize("condition, match", [
    (Q(owner__name="x"), "follows a relation"),
    (Q(qty__gt=F("qty") + F("owner__low")), "follows a relation"),
    (Q(qty__gt=F("owner__name")), "follows a relation"),
    (Q(qty__gt=Sum("qty")), "aggregate"),
    (Q(qty__gt=1) | Q(qtx=2), "no field 'qtx'.*qty"),
    (Q(qty__gtee=1), "unknown lookup"),
    (Q(), "empty"),
    ("qty > 0", "must be a Q"),
    (Q(blob=b"\x00"), "cannot be written"),
    (Q(ratio__gt=float("inf")), "cannot be written"),
])
def test_bad_conditions_are_refused_at_class_creation(condition, match):
    with pytest.raises(FieldError, match=match):
        model("qc_bad", CheckConstraint(condition=condition, name="qc_bad_check"))


def test_own_foreign_key_columns_are_allowed():
    ok = model("qc_fk_ok", CheckConstraint(condition=Q(owner__id__gt=0) | Q(owner__isnull=True),
                                           name="qc_fk_ok_owner"))
    assert "CHECK" in "".join(table_sql(ok._meta, qplan.backends.get("sqlite")))


@pytest.mark.parametrize("name", ["1abc", "_x", "x" * 31, "a b", "a;--", None])
def test_names_are_checked_like_unique_constraint_names(name):
    with pytest.raises(FieldError, match="name"):
        CheckConstraint(condition=Q(qty__gte=0), name=name)


def test_a_name_used_twice_is_refused():
    with pytest.raises(FieldError, match="used twice"):
        model("qc_twice", CheckConstraint(condition=Q(qty__gte=0), name="qc_twice_a"),
              CheckConstraint(condition=Q(qty__lte=9), name="qc_twice_a"))
    with pytest.raises(FieldError, match="used twice"):
        model("qc_twice2", CheckConstraint(condition=Q(qty__gte=0), name="qc_twice2_a"),
              unique_together=("qty", "owner"), indexes=[qplan.Index(fields=["qty"],
                                                                     name="qc_twice2_a")])
