"""The models the symmetrical many-to-many tests run on: ``Person.friends`` (Django's
``ManyToManyField("self")``, symmetrical by default, auto through model) and ``Pal.pals``
(symmetrical through a model of yours, ``Palship``, with an extra column)."""

from __future__ import annotations

from qplan import Model, fields


class Person(Model):
    name = fields.CharField(max_length=30)
    friends = fields.ManyToManyField("self")

    class Meta:
        db_table = "symm_person"


class Pal(Model):
    name = fields.CharField(max_length=30)
    pals = fields.ManyToManyField("self", through="Palship", symmetrical=True)

    class Meta:
        db_table = "symm_pal"


class Palship(Model):
    from_pal = fields.ForeignKey(Pal, on_delete=fields.CASCADE, related_name="+")
    to_pal = fields.ForeignKey(Pal, on_delete=fields.CASCADE, related_name="+")
    since = fields.IntegerField(default=0)

    class Meta:
        db_table = "symm_palship"


PersonFriends = Person._meta.many_to_many[0].through  # the auto-created through model

ALL = [Person, PersonFriends, Pal, Palship]
