"""The foreign keys and many-to-many fields pointing at each model, indexed once per registry
generation.

The reverse relations of a model (``qplan.relations``) and the rows a delete() cascades to
(``qplan.deletion``) both need every field of every registered model that points at it.
Scanning the whole registry for each of them, per query or per delete(), costs O(models)
each time; this index is built in one pass when first asked after a registration and then
read by target. A string target that does not resolve yet (``ForeignKey("NotImportedYet")``,
or a class name two models share) is left out: it cannot point at any registered model, so
it must not make other models' queries and deletes fail. A registration bumps the
generation (``qplan.registry``), so the index picks such a field up once its target arrives.
"""

from __future__ import annotations

from typing import Any

from .fields import ForeignKey, ManyToManyField
from .registry import find_model, generation, registered_models

Pointer = tuple[Any, Any]  # (model class holding the field, ForeignKey or ManyToManyField)

_index: list[Any] = [-1, {}]  # [generation, {target model: (pointer, ...)}]
counts = {"models": 0}  # models scanned building the index (tests count work, not time)


def incoming(model: Any) -> tuple[Pointer, ...]:
    """``(other model, field)`` for each foreign key, one-to-one and many-to-many field of a
    registered model whose target is ``model``, in registration order (per model: foreign
    keys and one-to-ones in field order, then many-to-many fields)."""
    found = _index
    if found[0] != generation():
        found = _build()
    return found[1].get(model, ())


def _build() -> list[Any]:
    global _index
    at = generation()  # read first: a registration during the scan leaves the index stale
    by_target: dict[Any, list[Pointer]] = {}
    for other in registered_models():
        counts["models"] += 1
        meta = other._meta
        if meta.abstract:
            continue
        for field in meta.fields:
            if isinstance(field, ForeignKey):
                _add(by_target, other, field)
        for field in meta.many_to_many:
            if isinstance(field, ManyToManyField):
                _add(by_target, other, field)
    _index = [at, {target: tuple(found) for target, found in by_target.items()}]
    return _index


def _add(by_target: dict[Any, list[Pointer]], other: Any, field: Any) -> None:
    target = target_or_none(field)
    if target is not None:
        by_target.setdefault(target, []).append((other, field))


def target_or_none(field: Any) -> Any:
    """The model ``field`` (a foreign key or many-to-many) points at, or None while its
    string target is not registered (or names two models): resolved without raising or
    caching, and without the registry scan an error's did-you-mean would cost."""
    to = field._to
    if not isinstance(to, str):
        return to
    return field.model if to == "self" else find_model(to)
