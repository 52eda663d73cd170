"""A model with a TimeField, for the TimeField tests (imported by child processes too)."""

from __future__ import annotations

from qplan import Model, fields


class Shift(Model):
    label = fields.CharField(max_length=20)
    starts = fields.TimeField(null=True)
    at = fields.DateTimeField(null=True)
    day = fields.DateField(null=True)

    class Meta:
        db_table = "qt_shift"


ALL = [Shift]
