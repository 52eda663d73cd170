"""Deferred fields (``only()``/``defer()``): a field missing from an instance loads on access.

An instance holds its loaded fields in ``__dict__``; a deferred one is absent. Only the
instances a deferring plan makes are of a *deferred class*: a subclass of the model, made
once per (model, deferred fields), whose only additions are a non-data descriptor per
deferred field (and pickling). The model class itself never gets a descriptor, so every
other instance reads its attributes exactly as before (a class attribute on a field's name
would take CPython's attribute cache off its fast path: about 2.5x slower reads), and a
deferred instance reads its loaded fields the same way. Reading a deferred field runs
``refresh_from_db(fields=[name])``: one query per instance, Django's behaviour.

A deferred class has the model's name, ``_meta``, managers and equality (``Model.__eq__``
compares ``_meta``); it pickles as the model's key and the deferred names.
"""

from __future__ import annotations

from typing import Any

from .registry import get_model

_classes: dict[tuple[Any, tuple[str, ...]], type] = {}


class DeferredAttribute:
    """A deferred field on a deferred class: loads the value when the instance lacks it."""

    __slots__ = ("attname",)

    def __init__(self, attname: str) -> None:
        self.attname = attname

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        instance.refresh_from_db(fields=[self.attname])
        return instance.__dict__[self.attname]


def _reduce(self: Any) -> tuple:
    return (_rebuild, (self._meta.key, type(self)._deferred), self.__dict__)


def _rebuild(key: str, missing: tuple[str, ...]) -> Any:
    """An empty instance of the deferred class of ``key``'s model (pickle's constructor)."""
    meta = get_model(key)._meta
    cls = _class(meta, tuple(a for a in missing if a in meta.by_attname))
    return cls.__new__(cls)


def model_for(meta: Any, loaded: tuple) -> type:
    """The class instances loading only the fields ``loaded`` are made of: the model when
    nothing is deferred, else its deferred class for the missing fields."""
    if len(loaded) == len(meta.fields):
        return meta.model
    return _class(meta, tuple(f.attname for f in meta.fields if f not in loaded))


def _class(meta: Any, missing: tuple[str, ...]) -> type:
    model = meta.model
    if not missing:
        return model
    key = (model, missing)
    cls = _classes.get(key)
    if cls is None:
        attrs: dict[str, Any] = {a: DeferredAttribute(a) for a in missing}
        attrs.update(__module__=model.__module__, __qualname__=model.__qualname__,
                     __reduce__=_reduce, _deferred=missing)
        # type.__new__, not the model metaclass: nothing is registered or collected again
        cls = _classes[key] = type.__new__(type(model), model.__name__, (model,), attrs)
    return cls
