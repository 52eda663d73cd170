"""Models: the metaclass that collects fields, ``Meta`` options and the model registry.

A plan names its model by the registry key ``module.QualName``; a process that
imported the model's module finds it again from that key, so plans never hold
classes.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterator

from . import checks, errors, runner
from . import records as R
from .constraints import CheckConstraint, Index, UniqueConstraint
from .errors import ConfigurationError, FieldError, suggest
from .fields import CASCADE, AutoField, Field, ForeignKey, ManyToManyField, points_at
from .registry import get_model, register, registered_models

__all__ = ["Model", "ModelBase", "Options", "get_model", "registered_models"]

META_OPTIONS = ("db_table", "using", "abstract", "key", "ordering", "unique_together",
                "indexes", "constraints", "get_latest_by")


class Options:
    """A model's ``_meta``: its fields by name, attname and column, its table and alias."""

    def __init__(self, model: type, meta: Any, fields: list[Field],
                 many_to_many: tuple = ()) -> None:
        self.model = model
        self.abstract = bool(getattr(meta, "abstract", False))
        self.key: str = getattr(meta, "key", None) or f"{model.__module__}.{model.__qualname__}"
        self.db_table: str = getattr(meta, "db_table", None) or model.__name__.lower()
        self.using: Any = getattr(meta, "using", None)
        self.fields: tuple[Field, ...] = tuple(fields)
        self.by_name = {f.name: f for f in fields}
        self.by_attname = {f.attname: f for f in fields}
        self.pk: Field = next((f for f in fields if f.primary_key), None)  # type: ignore[assignment]
        self.attnames = tuple(f.attname for f in fields)
        self.columns = tuple(f.column for f in fields)
        self.many_to_many: tuple[ManyToManyField, ...] = tuple(many_to_many)
        self.relation_cache: Any = None  # (registry generation, relations) (qplan.relations)
        self.auto_created: Any = None  # the model whose ManyToManyField made this through model
        # Filled lazily by the plan layer: parsed lookups and the root plan.
        self.lookup_cache: dict[Any, Any] = {}
        self.path_cache: dict[Any, Any] = {}  # field names, and values()/order_by() name lists
        self.plain_context: Any = None  # the normalising context of a plan with no annotations
        self.root_plan: Any = None
        self.ordering: tuple[str, ...] = ()  # Meta.ordering, checked (``_ordering``)
        self.get_latest_by: tuple[str, ...] = ()  # Meta.get_latest_by, checked as ordering
        self.indexes: tuple = ()  # (name, columns) of Meta.indexes (``_indexes``)
        self.uniques: tuple = ()  # (name, columns) of unique_together and constraints
        self.checks: tuple = ()  # (name, condition record) of CheckConstraints (``qplan.checks``)
        self.label = self.key  # what delete() counts rows under, as Django's "app.Model"

    def written_fields(self, names: Any, what: str) -> tuple[str, ...]:
        """Field names to write (``update_fields``, ``bulk_update``): ``FieldError`` naming an
        unknown one or the primary key, which a write by key cannot change."""
        if isinstance(names, str):
            names = (names,)
        out = []
        for name in names:
            field = self.get_field(name)
            if field.primary_key:
                raise FieldError(f"{self.model.__name__}.{name}: {what} cannot change the "
                                 f"primary key")
            out.append(field.name)
        return tuple(out)

    def get_field(self, name: str) -> Field:
        """The field called ``name`` (or with attname ``name``); ``FieldError`` otherwise."""
        field = self.by_name.get(name) or self.by_attname.get(name)
        if field is None:
            if name == "pk":
                return self.pk
            raise FieldError(
                f"{self.model.__name__} has no field {name!r}"
                + suggest(name, [*self.by_name, *self.by_attname, "pk"])
            )
        return field

    def __repr__(self) -> str:
        return f"<Options {self.key}>"


# ``qplan.related.install``, installed by ``qplan/__init__`` (a layer above this one): puts
# the related accessors (``writer.novel_set``, ``novel.genres``) on the registered models.
_related: Callable[..., Any] | None = None


def install_related(install: Callable[..., Any]) -> None:
    """Call ``install()`` now (every model registered so far) and ``install(model)`` after
    each model is registered (``qplan.related``): a reverse side may be declared after the
    class it lands on, and each registration adds only what the new model brings."""
    global _related
    _related = install
    install()


class ModelBase(type):
    """Collects ``Field`` attributes into ``_meta`` and registers concrete models."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> Any:
        parents = [b for b in bases if isinstance(b, ModelBase)]
        if not parents:  # the Model base class itself
            return super().__new__(mcs, name, bases, attrs)
        concrete = [p for p in parents if getattr(p, "_meta", None) is not None
                    and not p._meta.abstract]
        if getattr(attrs.get("Meta"), "proxy", False):
            raise FieldError(f"{name}: proxy models (Meta.proxy) are not supported; query the "
                             f"model itself")
        if concrete:
            raise FieldError(
                f"{name}: multi-table inheritance (a subclass of the concrete model "
                f"{concrete[0].__name__}) is not supported; inherit from an abstract model "
                f"(class Meta: abstract = True)")
        meta = attrs.pop("Meta", None)
        for option in vars(meta or object):
            if not option.startswith("_") and option not in META_OPTIONS:
                raise ConfigurationError(
                    f"{name}.Meta: unknown option {option!r}" + suggest(option, META_OPTIONS)
                )
        own = {k: v for k, v in attrs.items() if isinstance(v, Field)}
        own_m2m = {k: v for k, v in attrs.items() if isinstance(v, ManyToManyField)}
        for k in [*own, *own_m2m]:
            del attrs[k]
        cls = super().__new__(mcs, name, bases, attrs)
        inherited: dict[str, Field] = {}
        m2m: dict[str, ManyToManyField] = {}
        for parent in parents:
            pmeta = getattr(parent, "_meta", None)
            if pmeta is not None and pmeta.abstract:
                for f in pmeta.fields:
                    inherited[f.name] = f
                for m in pmeta.many_to_many:
                    m2m[m.name] = _copy_field(m)  # type: ignore[assignment]
        m2m.update(own_m2m)
        fields: list[Field] = []
        for fname, proto in {**inherited, **own}.items():
            field = _copy_field(proto) if fname in inherited and fname not in own else proto
            field.contribute(cls, fname)
            fields.append(field)
        abstract = bool(getattr(meta, "abstract", False))
        if not abstract and not any(f.primary_key for f in fields):
            if "id" in {f.name for f in fields}:
                raise FieldError(f"{name}: a field named 'id' must set primary_key=True")
            auto = AutoField()
            auto.contribute(cls, "id")
            fields.insert(0, auto)
        pks = [f.name for f in fields if f.primary_key]
        if len(pks) > 1:
            raise FieldError(f"{name}: more than one primary key ({', '.join(pks)})")
        clash = sorted(set(m2m) & {f.name for f in fields})
        if clash:
            raise FieldError(f"{name}: {clash[0]!r} is both a field and a ManyToManyField")
        for mname, mfield in m2m.items():
            mfield.contribute(cls, mname)
        cls._meta = Options(cls, meta, fields, tuple(m2m.values()))
        cls._meta.ordering = _ordering(cls._meta, getattr(meta, "ordering", ()))
        latest = getattr(meta, "get_latest_by", ())
        cls._meta.get_latest_by = _ordering(cls._meta, (latest,) if isinstance(latest, str)
                                            else latest)
        cls._meta.indexes, cls._meta.uniques, cls._meta.checks = _indexes(cls._meta, meta)
        for field in fields:
            if isinstance(field, ForeignKey):
                setattr(cls, field.name, ForwardRelation(field))
        cls.DoesNotExist = type(
            "DoesNotExist", (errors.ObjectDoesNotExist,), {"__qualname__": f"{name}.DoesNotExist",
                                                           "__module__": cls.__module__})
        cls.MultipleObjectsReturned = type(
            "MultipleObjectsReturned", (errors.MultipleObjectsReturned,),
            {"__qualname__": f"{name}.MultipleObjectsReturned", "__module__": cls.__module__})
        if not abstract:
            register(cls._meta.key, name, cls)
            for mfield in cls._meta.many_to_many:
                if mfield.auto_created:
                    mfield._through = _auto_through(cls, mfield)
            if _related is not None:
                _related(cls)
        return cls


def _auto_through(model: Any, field: ManyToManyField) -> Any:
    """The through model Django creates for a ManyToManyField: ``<Model>_<field>``, table
    ``<table>_<field>``, a CASCADE foreign key to each side, each pair once."""
    to = field._to
    source = model.__name__.lower()
    if points_at(to, model, model._meta.key):
        source_name, target_name, to = f"from_{source}", f"to_{source}", model
    else:
        target = to.rsplit(".", 1)[-1] if isinstance(to, str) else to.__name__
        source_name, target_name = source, target.lower()
    meta = type("Meta", (), {
        "db_table": field.db_table or f"{model._meta.db_table}_{field.name}",
        "key": f"{model._meta.key}_{field.name}",
        "using": model._meta.using,
        "unique_together": ((source_name, target_name),),
    })
    attrs = {
        "__module__": model.__module__,
        "__qualname__": f"{model.__qualname__}_{field.name}",
        "Meta": meta,
        source_name: ForeignKey(model, CASCADE, related_name="+"),
        target_name: ForeignKey(to, CASCADE, related_name="+"),
    }
    through = ModelBase(f"{model.__name__}_{field.name}", (Model,), attrs)
    through._meta.auto_created = model
    return through


def _ordering(meta: Options, names: Any) -> tuple[str, ...]:
    """``Meta.ordering`` as ``order_by()`` records it (canonical paths, ``-`` for
    descending); ``FieldError`` at the class statement for a name that is not a field."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise FieldError(f"{meta.model.__name__}.Meta.ordering is a list or tuple of field "
                         f"names, got {names!r}")
    ctx = R.Context(meta, {})
    out = []
    for name in names:
        if not isinstance(name, str) or not name.lstrip("-") or name == "?":
            raise FieldError(f"{meta.model.__name__}.Meta.ordering: {name!r} is not a field name")
        path, _ = ctx.path(name.lstrip("-"))
        out.append("-" + path if name.startswith("-") else path)
    return tuple(out)


def _columns(meta: Options, names: tuple[str, ...], what: str) -> tuple[str, ...]:
    out = []
    for name in names:
        try:
            out.append(meta.get_field(name).column)
        except FieldError as exc:
            raise FieldError(f"{meta.model.__name__}.Meta.{what}: {exc}") from None
    return tuple(out)


def _indexes(meta: Options, spec: Any) -> tuple[tuple, tuple, tuple]:
    """``(indexes, uniques, checks)`` of ``Meta.indexes``, ``Meta.unique_together`` and
    ``Meta.constraints``: ``(name, columns)`` pairs, checked (fields, names, no name twice),
    and ``(name, condition record)`` of the check constraints."""
    indexes: list[tuple[str, tuple[str, ...]]] = []
    uniques: list[tuple[str, tuple[str, ...]]] = []
    table = meta.db_table
    together = getattr(spec, "unique_together", ())
    if together and isinstance(together[0], str):
        together = (together,)  # Django accepts one tuple of names
    for names in together:
        index = UniqueConstraint(fields=list(names), name="x")
        cols = _columns(meta, index.fields, "unique_together")
        uniques.append((f"{table}_{'_'.join(cols)}_uniq"[:63], cols))
    for index in getattr(spec, "indexes", ()):
        if isinstance(index, (list, tuple)):
            index = Index(fields=list(index))
        if not isinstance(index, Index):
            raise FieldError(f"{meta.model.__name__}.Meta.indexes holds qplan.Index objects or "
                             f"tuples of field names, got {index!r}")
        cols = _columns(meta, index.fields, "indexes")
        indexes.append((index.name or f"{table}_{'_'.join(cols)}_idx"[:63], cols))
    conditions: list[tuple[str, tuple]] = []
    for constraint in getattr(spec, "constraints", ()):
        if isinstance(constraint, CheckConstraint):
            conditions.append((constraint.name, checks.condition_record(meta, constraint)))
            continue
        if not isinstance(constraint, UniqueConstraint):
            raise FieldError(f"{meta.model.__name__}.Meta.constraints holds "
                             f"qplan.UniqueConstraint and qplan.CheckConstraint objects, got "
                             f"{constraint!r}")
        uniques.append((constraint.name, _columns(meta, constraint.fields, "constraints")))
    seen: set[str] = set()
    for name, _ in indexes + uniques + conditions:
        if name in seen:
            raise FieldError(f"{meta.model.__name__}.Meta: the index or constraint name "
                             f"{name!r} is used twice")
        seen.add(name)
    return tuple(indexes), tuple(uniques), tuple(conditions)


def _copy_field(field: Field) -> Field:
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    return clone


_DEFERRED = object()


class ForwardRelation:
    """``book.author``: the related instance, fetched on first access and cached."""

    def __init__(self, field: ForeignKey) -> None:
        self.field = field
        self.cache_name = "_cache_" + field.name

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.cache_name]
        except KeyError:
            pass
        value = instance.__dict__.get(self.field.attname, _DEFERRED)
        if value is _DEFERRED:  # deferred by only()/defer(): load it (qplan.deferred)
            value = getattr(instance, self.field.attname, None)
        related = None
        if value is not None:
            related = self.field.target.objects.using(instance._db).get(pk=value)
        instance.__dict__[self.cache_name] = related
        return related

    def __set__(self, instance: Any, value: Any) -> None:
        if value is None:
            if not self.field.null:
                raise FieldError(f"{self.field!r} cannot be None (null=False)")
            instance.__dict__[self.field.attname] = None
        else:
            instance.__dict__[self.field.attname] = self.field.to_python(value)
            if isinstance(value, self.field.target):
                instance.__dict__[self.cache_name] = value
                return
        instance.__dict__.pop(self.cache_name, None)


class Model(metaclass=ModelBase):
    """Base class of user models: ``class Book(Model): title = fields.CharField(max_length=80)``."""

    _meta: ClassVar[Options]
    DoesNotExist: ClassVar[type[errors.ObjectDoesNotExist]]
    MultipleObjectsReturned: ClassVar[type[errors.MultipleObjectsReturned]]
    _db: str | None = None
    _adding = False

    def __init__(self, **kwargs: Any) -> None:
        meta = self._meta
        if meta.abstract:
            raise TypeError(f"{type(self).__name__} is abstract")
        d = self.__dict__
        self._adding = True
        given = dict(kwargs)
        for field in meta.fields:
            if field.name in given or field.attname in given:
                key = field.name if field.name in given else field.attname
                value = given.pop(key)
                if field.is_relation and key == field.name:
                    setattr(self, field.name, value)
                    continue
            else:
                value = field.get_default()
            d[field.attname] = None if value is None else field.to_attr(value)
        if given:
            bad = sorted(given)[0]
            raise FieldError(
                f"{type(self).__name__}() got an unknown field {bad!r}"
                + suggest(bad, [*meta.by_name, *meta.by_attname])
            )

    @property
    def pk(self) -> Any:
        return self.__dict__.get(self._meta.pk.attname)

    @pk.setter
    def pk(self, value: Any) -> None:
        self.__dict__[self._meta.pk.attname] = value

    def save(self, using: str | None = None, *, force_insert: bool = False,
             force_update: bool = False, update_fields: Any = None) -> None:
        """Save as Django does: with a primary key UPDATE, then INSERT if no row matched;
        ``force_insert``, ``force_update`` and ``update_fields`` as in Django."""
        if update_fields is None and not force_insert and not self._adding \
                and (using is None or using == self._db):
            deferred = self.get_deferred_fields()
            if deferred:  # Django: an instance loaded with only()/defer() saves what it loaded
                update_fields = [f.attname for f in self._meta.fields
                                 if not f.primary_key and f.attname not in deferred] or None
        runner.engine().save_instance(self, using, force_insert, force_update, update_fields)

    def get_deferred_fields(self) -> set[str]:
        """The attnames of fields not loaded (``only()``/``defer()``); Django's name."""
        d = self.__dict__
        return {a for a in self._meta.attnames if a not in d}

    def delete(self, using: str | None = None) -> tuple[int, dict[str, int]]:
        """Delete this row: Django's ``(total, {label: count})``, cascaded rows included."""
        if self.pk is None:
            raise FieldError(f"{type(self).__name__} instance has no primary key; save it first")
        result = runner.engine().delete_instance(self, using)
        self.pk = None if self._meta.pk.auto else self.pk
        self._adding = True
        return result

    def refresh_from_db(self, using: str | None = None, fields: Any = None) -> None:
        """Reload the row's fields (``fields``: only those, as Django; an instance with
        deferred fields reloads the loaded ones), dropping cached related instances."""
        plan = type(self).objects.using(using or self._db).filter(pk=self.pk)
        if fields is not None:
            fields = [fields] if isinstance(fields, str) else list(fields)
            if not fields:
                return
            if any(R.SEP in f for f in fields):
                raise ValueError(f'Found "{R.SEP}" in fields argument. Relations and '
                                 f"transforms are not allowed in fields.")
            plan = plan.only(*fields)
        else:
            deferred = self.get_deferred_fields()
            if deferred:
                plan = plan.only(*[a for a in self._meta.attnames if a not in deferred])
        fresh = plan.get()
        loaded = [a for a in self._meta.attnames if a in fresh.__dict__]
        self.__dict__.update({a: fresh.__dict__[a] for a in loaded})
        if fields is None:
            for name in [k for k in self.__dict__ if k.startswith("_cache_")]:
                del self.__dict__[name]
        else:
            for field in self._meta.fields:
                if field.is_relation and field.attname in loaded:
                    self.__dict__.pop("_cache_" + field.name, None)

    async def asave(self, using: str | None = None, *, force_insert: bool = False,
                    force_update: bool = False, update_fields: Any = None) -> None:
        """``save()`` awaited."""
        await runner.aio().asave(self, using, force_insert, force_update, update_fields)

    async def adelete(self, using: str | None = None) -> tuple[int, dict[str, int]]:
        """``delete()`` awaited."""
        if self.pk is None:
            raise FieldError(f"{type(self).__name__} instance has no primary key; save it first")
        root = type(self).objects
        alias = using or runner.aio().db_for_write(root, self)
        result = await runner.aio().adelete(root.filter(pk=self.pk), alias)
        self.pk = None if self._meta.pk.auto else self.pk
        self._adding = True
        return result

    async def arefresh_from_db(self, using: str | None = None) -> None:
        fresh = await type(self).objects.using(using or self._db).aget(pk=self.pk)
        self.__dict__.update({a: fresh.__dict__[a] for a in self._meta.attnames})
        for name in [k for k in self.__dict__ if k.startswith("_cache_")]:
            del self.__dict__[name]

    def values(self) -> dict[str, Any]:
        """The row as a dict by attname."""
        d = self.__dict__
        return {a: d[a] if a in d else getattr(self, a) for a in self._meta.attnames}

    def __eq__(self, other: Any) -> bool:
        if type(other) is not type(self) and getattr(other, "_meta", None) is not self._meta:
            return NotImplemented  # a deferred class (qplan.deferred) equals its model
        if self.pk is None:
            return self is other
        return self.pk == other.pk

    def __hash__(self) -> int:
        if self.pk is None:
            raise TypeError("unsaved model instances are unhashable")
        return hash((self._meta.model, self.pk))

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.pk!r}>"

    def __iter__(self) -> Iterator[Any]:  # pragma: no cover - guard against list(instance)
        raise TypeError(f"{type(self).__name__} instances are not iterable")
