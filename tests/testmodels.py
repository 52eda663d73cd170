"""The models the test suite runs plans on (imported by child processes too)."""

from __future__ import annotations

import decimal

from qplan import Model, fields


class Author(Model):
    name = fields.CharField(max_length=100)
    email = fields.CharField(max_length=100, null=True, unique=True)

    class Meta:
        db_table = "qt_author"


class Book(Model):
    title = fields.CharField(max_length=200, db_index=True)
    author = fields.ForeignKey(Author, null=True, on_delete=fields.CASCADE)
    pages = fields.IntegerField(default=0)
    rating = fields.FloatField(null=True)
    price = fields.DecimalField(max_digits=10, decimal_places=2, default=decimal.Decimal("0.00"))
    is_active = fields.BooleanField(default=True)
    published = fields.DateField(null=True)
    created = fields.DateTimeField(null=True)
    cover = fields.BinaryField(null=True)
    meta = fields.JSONField(null=True)
    notes = fields.TextField(default="")

    class Meta:
        db_table = "qt_book"


class Tag(Model):
    """A model with an explicit, non-auto primary key."""

    code = fields.CharField(max_length=20, primary_key=True)
    label = fields.CharField(max_length=50, null=True)

    class Meta:
        db_table = "qt_tag"


ALL = [Author, Book, Tag]
