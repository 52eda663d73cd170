"""Deferred fields (``only()``/``defer()``): a field missing from an instance loads on access.

An instance holds its loaded fields in ``__dict__``; a deferred one is simply absent.
``install`` puts a *non-data* descriptor for each field on the model class the first time
a plan of that model defers something: Python reads the instance's ``__dict__`` first, so
a loaded field is read as before and only a missing one reaches ``__get__``, which loads
it with one query per instance (``refresh_from_db(fields=[...])``, Django's behaviour).
Models never deferred get no descriptors at all.
"""

from __future__ import annotations

from typing import Any


class DeferredAttribute:
    """A field's class attribute after ``install``: loads the value when it is missing."""

    __slots__ = ("attname",)

    def __init__(self, attname: str) -> None:
        self.attname = attname

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        instance.refresh_from_db(fields=[self.attname])
        return instance.__dict__[self.attname]


def install(meta: Any) -> None:
    """Give ``meta``'s model a loader per non-key field (once; never over another attribute)."""
    model = meta.model
    if model.__dict__.get("_deferred_installed"):
        return
    for field in meta.fields:
        if field.primary_key or field.attname in model.__dict__:
            continue
        setattr(model, field.attname, DeferredAttribute(field.attname))
    model._deferred_installed = True
