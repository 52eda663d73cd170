"""Models and fields: declaration, defaults, validation, the registry."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

import qplan
from qplan import Model, fields
from qplan.models import get_model
from testmodels import Author, Book, Tag


def test_auto_primary_key_and_attnames():
    meta = Book._meta
    assert meta.pk.name == "id" and meta.pk.auto and meta.fields[0] is meta.pk
    assert Tag._meta.pk.name == "code" and not Tag._meta.pk.auto
    author = meta.get_field("author")
    assert author.attname == "author_id" and author.column == "author_id" and author.target is Author


def test_instances_take_field_names_or_attnames_and_defaults():
    a = Author(id=5, name="x")
    b1, b2 = Book(title="t", author=a), Book(title="t", author_id=5)
    assert b1.author_id == b2.author_id == 5 and b1.author is a
    assert b1.pages == 0 and b1.price == decimal.Decimal("0.00") and b1.is_active is True
    assert b1.meta is None and b1.notes == ""
    b1.author = None
    assert b1.author_id is None


def test_field_values_are_checked_on_instances():
    with pytest.raises(qplan.FieldError, match="Book.pages: expected an integer"):
        Book(title="t", pages="lots")
    with pytest.raises(qplan.FieldError, match="a Author or its primary key"):
        Book(title="t", author=Tag(code="x"))
    assert Book(title="t", created="2020-01-02T03:04:05+02:00").created == dt.datetime(
        2020, 1, 2, 1, 4, 5, tzinfo=dt.timezone.utc)
    assert Book(title="t", meta={"a": [1, 2]}).meta == {"a": [1, 2]}
    with pytest.raises(qplan.FieldError, match="JSON"):
        Book(title="t", meta={"a": object()})


@pytest.mark.parametrize("field, good, bad", [
    (fields.IntegerField(), [(3, 3), ("4", 4), (5.0, 5)], [True, "x", 5.5, None.__class__]),
    (fields.FloatField(), [(1, 1.0), ("2.5", 2.5)], ["x", False]),
    (fields.DecimalField(max_digits=5, decimal_places=2), [(1.1, decimal.Decimal("1.1")), ("2", decimal.Decimal(2))],
     ["x", float("nan"), True]),
    (fields.CharField(max_length=3), [("abc", "abc")], [3, b"x"]),
    (fields.BooleanField(), [(True, True), (0, False)], ["true", 2]),
    (fields.DateField(), [("2020-01-02", dt.date(2020, 1, 2))], [dt.datetime(2020, 1, 1), "x"]),
    (fields.BinaryField(), [(bytearray(b"ab"), b"ab"), (memoryview(b"c"), b"c")], ["str"]),
])
def test_field_validation(field, good, bad):
    for value, expected in good:
        assert field.to_python(value) == expected
    for value in bad:
        with pytest.raises(qplan.FieldError):
            field.to_python(value)


def test_declaration_errors():
    with pytest.raises(qplan.FieldError, match="max_length"):
        fields.CharField(max_length=0)
    with pytest.raises(qplan.FieldError, match="max_digits"):
        fields.DecimalField(max_digits=2, decimal_places=3)
    with pytest.raises(qplan.FieldError, match="on_delete"):
        fields.ForeignKey(Author, on_delete="EXPLODE")
    with pytest.raises(qplan.ConfigurationError, match="unknown option 'db_tabel'.*'db_table'"):
        class Bad(Model):
            class Meta:
                db_tabel = "x"
    with pytest.raises(qplan.FieldError, match="more than one primary key"):
        class TwoKeys(Model):
            a = fields.IntegerField(primary_key=True)
            b = fields.IntegerField(primary_key=True)


def test_abstract_models_share_fields():
    class Stamped(Model):
        created = fields.DateTimeField(null=True)

        class Meta:
            abstract = True

    class Post(Stamped):
        title = fields.CharField(max_length=10)

        class Meta:
            key = "tests.test_models.Post"

    assert [f.name for f in Post._meta.fields] == ["id", "created", "title"]
    assert Post._meta.get_field("created").model is Post
    with pytest.raises(AttributeError):
        Stamped.objects


def test_registry_finds_models_by_key_and_name():
    assert get_model(Book._meta.key) is Book
    assert get_model("Author") is Author
    with pytest.raises(qplan.ConfigurationError, match="unknown model 'nope.Nothing'"):
        get_model("nope.Nothing")


def test_instance_equality_and_hash():
    assert Author(id=1, name="a") == Author(id=1, name="b")
    assert Author(id=1) != Author(id=2)
    assert len({Author(id=1), Author(id=1)}) == 1
    with pytest.raises(TypeError):
        hash(Author(name="unsaved"))


def test_multi_table_inheritance_is_refused_at_the_class_statement():
    from qplan import FieldError, Model, fields

    class Place(Model):
        name = fields.CharField(max_length=10)

        class Meta:
            db_table = "test_mti_place"

    with pytest.raises(FieldError, match="multi-table inheritance.*Place.*abstract"):
        class Restaurant(Place):
            seats = fields.IntegerField()


def test_a_proxy_model_is_refused_as_a_proxy_not_as_multi_table_inheritance():
    from qplan import FieldError, Model, fields

    class Venue(Model):
        name = fields.CharField(max_length=10)

        class Meta:
            db_table = "test_proxy_venue"

    with pytest.raises(FieldError, match="VenueProxy: proxy models .*not supported"):
        class VenueProxy(Venue):
            class Meta:
                proxy = True
