"""A model with a TimeField, for the TimeField tests (imported by child processes too)."""

from __future__ import annotations

import datetime as dt

from qplan import CheckConstraint, Model, Q, fields


class Shift(Model):
    label = fields.CharField(max_length=20)
    starts = fields.TimeField(null=True)
    at = fields.DateTimeField(null=True)
    day = fields.DateField(null=True)

    class Meta:
        db_table = "qt_shift"


class Opening(Model):
    """A time in a CHECK constraint: written as a literal to the microsecond."""

    opens = fields.TimeField()

    class Meta:
        db_table = "qt_opening"
        constraints = [CheckConstraint(condition=Q(opens__gte=dt.time(6, 0, 0, 500000)),
                                       name="qt_opening_after_six")]


ALL = [Shift, Opening]
