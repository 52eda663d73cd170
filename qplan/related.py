"""Related objects on instances, as Django 5.2's related managers.

``writer.novel_set`` (a reverse foreign key), ``writer.bio`` (a reverse one-to-one) and
``novel.genres`` / ``genre.novel_set`` (many-to-many both ways; a symmetrical one writes
and removes both directions' rows) are found by their accessor
in ``qplan.relations.reverse_accessors``. The reverse side of a relation may be declared
after the class it lands on, so ``install(model)`` puts the descriptors a model brings on
the classes as it is registered, and those of the string references that waited for it
(no ``__getattr__``: it would slow every attribute access, and these non-data descriptors
leave the instance ``__dict__`` the fast path for fields).
A descriptor keeps only its accessor and looks the relation up at access time (cached per
registry generation), so it follows models registered later.

Reads are ordinary plans: ``Target.objects.filter(<fk>=pk)`` for a reverse foreign key,
``Target.objects.filter(pk__in=<through plan>.values(<target fk>))`` for a many-to-many.
They are bound to the instance's alias (``_db``) unless a router answers ``db_for_read``
with the instance as a hint, as Django does. A manager whose accessor is among the
instance's ``__dict__["_prefetched"]`` answers ``all()`` with a ``PrefetchedPlan`` of those
rows. Writes go where ``routing.db_for_write`` sends the written model (the target for a
reverse foreign key, the through model for a many-to-many) with the instance as a hint, in
one ``atomic()`` block.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from .connections import connections
from .errors import PlanError
from .expressions import Q
from .fields import ForeignKey
from .models import Model
from .plan import Plan, PrefetchedPlan
from .incoming import target_or_none
from .registry import find_model, generation, registered_models
from .relations import Relation, reverse_accessor, reverse_accessors
from .routing import ask, chain, db_for_write
from .transactions import Atomic

_accessors: dict[Any, tuple[int, dict[str, Relation]]] = {}
counts = {"fields": 0}  # fields install() has looked at (tests count work, not time)


def accessors(meta: Any) -> dict[str, Relation]:
    """``reverse_accessors(meta)``, kept until the next model is registered."""
    found = _accessors.get(meta)
    if found is None or found[0] != generation():
        found = _accessors[meta] = (generation(), reverse_accessors(meta))
    return found[1]


def install(model: Any = None) -> None:
    """Put a ``RelatedDescriptor`` on the models for each related accessor that lands on them
    (``writer.novel_set``, ``novel.genres``, ``genre.novel_set``), whichever order the models
    were declared in. A name the class already has (a field, a method of yours) is left alone.

    ``install()`` goes over every registered model (once, when qplan is imported);
    ``install(model)``, called as each model is registered, only adds what ``model`` brings:
    its own fields' accessors and those of the string references (``ForeignKey("Model")``)
    naming its key or class name, so declaring N models costs O(N) fields, not O(N**2). (Only
    a registration under a string can change what that string resolves to.)"""
    with _lock:  # a model is registered before this runs: a string reference is never missed
        if model is None:
            _by_string.clear()
            for each in registered_models():
                _install_own(each)
            return
        _install_own(model)
        for name in dict.fromkeys((model._meta.key, model.__name__)):
            for field in _by_string.get(name, ()):
                counts["fields"] += 1
                _put(find_model(name), reverse_accessor(field))


# Fields whose target is a model's key or class name (``ForeignKey("Writer")``), by that
# string: registering a model under it puts their reverse accessors on it, whichever of the
# two classes was declared first.
_by_string: dict[str, list[Any]] = {}
_lock = threading.RLock()


def _install_own(model: Any) -> None:
    meta = model._meta
    if meta.abstract:
        return
    for field in meta.fields:
        counts["fields"] += 1
        if isinstance(field, ForeignKey):
            _put_reverse(field)
    for field in meta.many_to_many:
        counts["fields"] += 1
        _put(model, field.name)
        _put_reverse(field)


def _put_reverse(field: Any) -> None:
    """The reverse accessor of ``field`` on its target if registered; a field naming its
    target by a string is kept under it for the registrations to come."""
    name = reverse_accessor(field)
    if name is None:  # related_name="+"
        return
    to = field._to
    if isinstance(to, str) and to != "self":
        _by_string.setdefault(to, []).append(field)
    _put(target_or_none(field), name)


def _put(model: Any, name: str | None) -> None:
    if model is None or name is None or isinstance(model.__dict__.get(name), RelatedDescriptor):
        return
    if not hasattr(model, name):
        setattr(model, name, RelatedDescriptor(model, name))


class RelatedDescriptor:
    """``Writer.novel_set``, ``Writer.bio``, ``Novel.genres``: on an instance, its manager
    (or the related instance, for a reverse one-to-one)."""

    def __init__(self, model: Any, accessor: str) -> None:
        self._owner = model
        self.accessor = accessor
        self._missing: tuple[Any, type] | None = None

    def relation(self, owner: Any = None) -> Relation:
        owner = owner or self._owner
        found = accessors(owner._meta).get(self.accessor)
        if found is None:
            raise AttributeError(f"{owner.__name__} has no related accessor {self.accessor!r}")
        return found

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        rel = self.relation(type(instance))
        if rel.kind == "reverse" and not rel.many:
            return _reverse_one(instance, rel, self.RelatedObjectDoesNotExist)
        if rel.kind == "reverse":
            cls = NullableReverseManager if rel.field.null else ReverseManager
            return cls(instance, rel)
        return ManyToManyManager(instance, rel)

    def __set__(self, instance: Any, value: Any) -> None:
        """``bio.writer``'s other side: ``writer.bio = bio`` points ``bio`` at ``writer`` (not
        saved) and caches it; a many-valued accessor refuses assignment, as in Django."""
        rel = self.relation(type(instance))
        if rel.many or rel.kind != "reverse":
            raise TypeError(f"Direct assignment to the reverse side of a related set is "
                            f"prohibited. Use {self.accessor}.set() instead.")
        key = "_cache_" + self.accessor
        if value is None:
            old = instance.__dict__.get(key)
            if old is not None and rel.field.null:
                setattr(old, rel.field.name, None)
        else:
            if not isinstance(value, rel.target.model):
                raise TypeError(f"{type(instance).__name__}.{self.accessor} must be a "
                                f"{rel.target.model.__name__} instance, got {value!r}")
            setattr(value, rel.field.name, instance)
        instance.__dict__[key] = value

    @property
    def through(self) -> Any:
        """The through model of a many-to-many accessor (Django's ``Novel.genres.through``)."""
        return self.relation().field.through

    @property
    def RelatedObjectDoesNotExist(self) -> type:  # noqa: N802 - Django's name
        """Raised by a reverse one-to-one with no row: the target's ``DoesNotExist`` and an
        ``AttributeError`` (so ``hasattr()`` answers False), as in Django."""
        target = self.relation().target.model
        if self._missing is None or self._missing[0] is not target:
            name = "RelatedObjectDoesNotExist"
            self._missing = (target, type(name, (target.DoesNotExist, AttributeError), {
                "__qualname__": f"{self._owner.__name__}.{self.accessor}.{name}",
                "__module__": self._owner.__module__}))
        return self._missing[1]

    def __repr__(self) -> str:
        return f"<related accessor {getattr(self._owner, '__name__', '?')}.{self.accessor}>"


# --- reading -----------------------------------------------------------------------------------


def _saved_pk(instance: Any, what: str = "relationship") -> Any:
    pk = instance.pk
    if pk is None:
        raise PlanError(f"{instance!r} needs to have a value for field "
                        f"{instance._meta.pk.name!r} before this {what} can be used.")
    return pk


def _bound(plan: Plan, instance: Any) -> Plan:
    """``plan`` on the instance's alias, unless a router decides reads of it (Django asks
    ``db_for_read`` with the instance as a hint, then falls back to the instance's db)."""
    if instance._db is None:
        return plan
    for router in chain(plan):
        if ask(router, "read", plan, {"instance": instance}) is not None:
            return plan
    return plan.using(instance._db)


def _reverse_one(instance: Any, rel: Relation, missing: type) -> Any:
    """``writer.bio``: the related row (one query, cached as ``_cache_<accessor>``), or
    ``missing`` when there is none (a cached None raises without a query)."""
    key = "_cache_" + rel.accessor
    d = instance.__dict__
    if key in d:
        found = d[key]
    else:
        found = None
        if instance.pk is not None:
            target = rel.target.model
            plan = _bound(target.objects.filter(**{rel.field.name: instance.pk}), instance)
            try:
                found = plan.get()
            except target.DoesNotExist:
                found = None
            else:
                found.__dict__["_cache_" + rel.field.name] = instance
        d[key] = found
    if found is None:
        raise missing(f"{type(instance).__name__} has no {rel.accessor}.")
    return found


class _Manager:
    """What the reverse foreign key and many-to-many managers share: the plan of the related
    rows (``all()``), other plan methods delegated to it, and the write alias."""

    def __init__(self, instance: Any, rel: Relation) -> None:
        self.instance = instance
        self.rel = rel
        self.model = rel.target.model
        self.pk = _saved_pk(instance, self._what)

    _what = "relationship"

    def _plan(self) -> Plan:  # pragma: no cover - per kind
        raise NotImplementedError

    def all(self) -> Plan:
        """The related rows; from ``_prefetched`` when prefetch_related filled them."""
        plan = _bound(self._plan(), self.instance)
        rows = self.instance.__dict__.get("_prefetched", {}).get(self.rel.accessor)
        return plan if rows is None else PrefetchedPlan(plan, rows)

    get_queryset = all

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.all(), name)

    def _check(self, obj: Any, model: Any) -> None:
        if not isinstance(obj, model):
            raise TypeError(f"'{model.__name__}' instance expected, got {obj!r}")

    def _atomic(self, alias: str) -> Atomic:
        return Atomic(alias, savepoint=connections[alias].backend.SUPPORTS_SAVEPOINTS)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {type(self.instance).__name__}.{self.rel.accessor}>"


# --- reverse foreign keys -----------------------------------------------------------------------


class ReverseManager(_Manager):
    """``writer.novel_set``: the rows whose foreign key points at the instance."""

    def _plan(self) -> Plan:
        return self.model.objects.filter(**{self.rel.field.name: self.pk})

    def _write_alias(self) -> str:
        return db_for_write(self.model.objects, self.instance)

    def _fill(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, self.rel.field.name: self.instance}

    def create(self, **kwargs: Any) -> Any:
        obj = self.model(**self._fill(kwargs))
        obj.save(using=self._write_alias())
        return obj

    def get_or_create(self, defaults: Any = None, **kwargs: Any) -> tuple[Any, bool]:
        return self.model.objects.using(self._write_alias()).get_or_create(
            defaults, **self._fill(kwargs))

    def update_or_create(self, defaults: Any = None, create_defaults: Any = None,
                         **kwargs: Any) -> tuple[Any, bool]:
        return self.model.objects.using(self._write_alias()).update_or_create(
            defaults, create_defaults, **self._fill(kwargs))

    def add(self, *objs: Any, bulk: bool = True) -> None:
        """Point each object's foreign key at the instance: one UPDATE of their primary
        keys (``bulk``; they must be saved), else ``save()`` each."""
        alias = self._write_alias()
        name = self.rel.field.name
        for obj in objs:
            self._check(obj, self.model)
            if bulk and (obj._adding or obj.pk is None):
                raise PlanError(f"{obj!r} instance isn't saved. Use bulk=False or save the "
                                f"object first.")
        for obj in objs:
            setattr(obj, name, self.instance)
        if not objs:
            return
        if bulk:
            self.model.objects.using(alias).filter(pk__in=[o.pk for o in objs]).update(
                **{name: self.pk})
            return
        with self._atomic(alias):
            for obj in objs:
                obj.save(using=alias)

    def set(self, objs: Any, *, bulk: bool = True, clear: bool = False) -> None:
        """Django: a foreign key that cannot be null only gains rows."""
        self.add(*objs, bulk=bulk)


class NullableReverseManager(ReverseManager):
    """A reverse foreign key with ``null=True``: it also has ``remove()`` and ``clear()``."""

    def remove(self, *objs: Any, bulk: bool = True) -> None:
        pks = []
        for obj in objs:
            self._check(obj, self.model)
            if obj.__dict__.get(self.rel.field.attname) != self.pk:
                raise type(self.instance).DoesNotExist(f"{obj!r} is not related to "
                                                       f"{self.instance!r}.")
            pks.append(obj.pk)
        self._clear(self._plan().filter(pk__in=pks), bulk)

    def clear(self, *, bulk: bool = True) -> None:
        self._clear(self._plan(), bulk)

    def _clear(self, plan: Plan, bulk: bool) -> None:
        alias = self._write_alias()
        name = self.rel.field.name
        if bulk:
            plan.using(alias).update(**{name: None})
            return
        with self._atomic(alias):
            for obj in plan.using(alias):
                setattr(obj, name, None)
                obj.save(using=alias, update_fields=[name])

    def set(self, objs: Any, *, bulk: bool = True, clear: bool = False) -> None:
        objs = tuple(objs)
        alias = self._write_alias()
        with self._atomic(alias):
            if clear:
                self.clear(bulk=bulk)
                self.add(*objs, bulk=bulk)
                return
            old = set(self._plan().using(alias))
            new = []
            for obj in objs:
                if obj in old:
                    old.remove(obj)
                else:
                    new.append(obj)
            self.remove(*old, bulk=bulk)
            self.add(*new, bulk=bulk)


# --- many-to-many ---------------------------------------------------------------------------------


class ManyToManyManager(_Manager):
    """``novel.genres`` / ``genre.novel_set``: the targets linked through the through table."""

    _what = "many-to-many relationship"

    def __init__(self, instance: Any, rel: Relation) -> None:
        super().__init__(instance, rel)
        self.through = rel.field.through
        source_fk, target_fk = rel.field.link_fields()
        mine, other = (source_fk, target_fk) if rel.kind == "m2m" else (target_fk, source_fk)
        self.mine, self.other = mine.name, other.name  # the through model's foreign keys

    def _links(self) -> Plan:
        return self.through.objects.filter(**{self.mine: self.pk})

    def _plan(self) -> Plan:
        return self.model.objects.filter(pk__in=self._links().values(self.other))

    def _write_alias(self) -> str:
        return db_for_write(self.through.objects, self.instance)

    def _pks(self, objs: tuple, verb: str) -> list[Any]:
        """The target primary keys of ``objs`` (instances or keys)."""
        out = []
        for obj in objs:
            if isinstance(obj, Model):
                self._check(obj, self.model)
                if obj.pk is None:
                    raise PlanError(f'Cannot {verb} "{obj!r}": the value for field '
                                    f'{self.other!r} is None')
                out.append(obj.pk)
            else:
                out.append(self.model._meta.pk.to_python(obj))
        return list(dict.fromkeys(out))

    def _add(self, alias: str, pks: list[Any], through_defaults: Any) -> None:
        """Insert the missing ``(instance, pk)`` rows, and ``(pk, instance)`` too when the
        relation is symmetrical (one row for the instance itself), in one bulk insert; one
        SELECT finds the rows already there (both directions), sets keep it linear."""
        if not pks:
            return
        extra = {k: v() if callable(v) else v for k, v in (through_defaults or {}).items()}
        mine, other, me = self.mine, self.other, self.pk
        links = Q(**{mine: me, f"{other}__in": pks})
        wanted = dict.fromkeys((me, pk) for pk in pks)  # in order, each pair once
        if self.rel.field.symmetrical:
            links |= Q(**{other: me, f"{mine}__in": pks})
            wanted.update(dict.fromkeys((pk, me) for pk in pks))
        present = set(self.through.objects.using(alias).filter(links).values_list(mine, other))
        rows = [self.through(**{**extra, mine: a, other: b}) for a, b in wanted
                if (a, b) not in present]
        if rows:
            self.through.objects.using(alias).bulk_create(rows)

    def _remove(self, alias: str, pks: list[Any] | None) -> None:
        """Delete the instance's through rows to ``pks`` (all with None), both directions of
        a symmetrical relation, in one DELETE."""
        if pks is not None and not pks:
            return
        links = Q(**{self.mine: self.pk})
        if pks is not None:
            links &= Q(**{f"{self.other}__in": pks})
        if self.rel.field.symmetrical:
            mirror = Q(**{self.other: self.pk})
            if pks is not None:
                mirror &= Q(**{f"{self.mine}__in": pks})
            links |= mirror
        self.through.objects.using(alias).filter(links).delete()

    def _in_block(self, work: Callable[[str], None]) -> None:
        alias = self._write_alias()
        with self._atomic(alias):
            work(alias)

    def add(self, *objs: Any, through_defaults: Any = None) -> None:
        """Link ``objs`` (instances or primary keys); pairs already linked are skipped."""
        pks = self._pks(objs, "add")
        self._in_block(lambda alias: self._add(alias, pks, through_defaults))

    def remove(self, *objs: Any) -> None:
        pks = self._pks(objs, "remove")
        self._in_block(lambda alias: self._remove(alias, pks))

    def clear(self) -> None:
        self._in_block(lambda alias: self._remove(alias, None))

    def set(self, objs: Any, *, clear: bool = False, through_defaults: Any = None) -> None:
        """Make ``objs`` the linked rows: unlink the others and link the new ones (all
        unlinked first with ``clear=True``)."""
        pks = self._pks(tuple(objs), "set")

        def work(alias: str) -> None:
            if clear:
                self._remove(alias, None)
                self._add(alias, pks, through_defaults)
                return
            old = set(self._links().using(alias).values_list(self.other, flat=True))
            self._remove(alias, [pk for pk in old if pk not in pks])
            self._add(alias, [pk for pk in pks if pk not in old], through_defaults)

        self._in_block(work)

    def create(self, *, through_defaults: Any = None, **kwargs: Any) -> Any:
        """A new target row, linked to the instance."""
        created: list[Any] = []

        def work(alias: str) -> None:
            obj = self.model(**kwargs)
            obj.save(using=db_for_write(self.model.objects, self.instance))
            created.append(obj)
            self._add(alias, [obj.pk], through_defaults)

        self._in_block(work)
        return created[0]

    def get_or_create(self, defaults: Any = None, *, through_defaults: Any = None,
                      **kwargs: Any) -> tuple[Any, bool]:
        """The linked row ``kwargs`` match, else a new row linked to the instance."""
        try:
            return self.all().get(**kwargs), False
        except self.model.DoesNotExist:
            obj = self.create(through_defaults=through_defaults, **{**kwargs, **(defaults or {})})
            return obj, True
