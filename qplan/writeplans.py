"""Writes held as plans: ``update_plan``, ``delete_plan``, ``create_plan``,
``bulk_create_plan`` and ``aggregate_plan`` build the terminal record a plan runs later
(``plan.execute(using=...)``); ``Plan`` inherits them from ``WritePlans``."""

from __future__ import annotations

from typing import Any

from . import aggregates as A, conflicts, funcrecords
from . import records as R
from .errors import FieldError, PlanError
from .expressions import Aggregate, Combined, ExpressionWrapper, F
from .subqueries import Exists, OuterRef, Subquery

# What update() takes as an expression rather than a value.
EXPRESSIONS = (F, Combined, Aggregate, ExpressionWrapper, Subquery, Exists, OuterRef,
               *funcrecords.OBJECTS)


def aggregate_names(args: tuple) -> list[tuple[str, Any]]:
    """Positional aggregates named as Django names them (``Count('id')`` -> ``id__count``)."""
    out = []
    for arg in args:
        if not isinstance(arg, Aggregate):
            raise PlanError(f"positional arguments must be aggregates, got {arg!r}")
        out.append((arg.default_alias, arg))
    return out


class WritePlans:
    """The write-building methods of ``Plan`` (see the module docstring)."""

    __slots__ = ()

    # --- writes held as plans --------------------------------------------------------------------

    def update_plan(self, **kwargs: Any) -> Any:
        """An update held unevaluated: ``plan.update_plan(x=1).execute()`` returns the row count."""
        self._no_slice("update")
        if not kwargs:
            raise PlanError("update() needs at least one field=value")
        ctx = self._ctx()
        items = []
        for name, value in sorted(kwargs.items()):
            field = self._meta.get_field(name)
            if isinstance(value, EXPRESSIONS):
                node = R.expression(ctx, value)
                if R.has_aggregate(node):
                    raise FieldError(f"{ctx.who}.{name}: cannot update to an aggregate")
            else:
                node = (R.VALUE, field.clean_write(value))
            items.append((field.name, node))
        return self._add(("update", tuple(items)))

    def delete_plan(self) -> Any:
        """A delete held unevaluated: ``plan.delete_plan().execute()`` returns the row count."""
        self._no_slice("delete")
        if self._has("distinct") or self._has("values") or self._has("values_list"):
            raise PlanError("cannot delete() after values() or distinct()")
        return self._add(("delete",))

    def create_plan(self, **kwargs: Any) -> Any:
        """An insert of one row held unevaluated; ``execute()`` returns the new primary keys."""
        return self.bulk_create_plan([self.model(**kwargs)])

    def bulk_create_plan(self, objs: Any, *, ignore_conflicts: bool = False,
                         update_conflicts: bool = False, update_fields: Any = None,
                         unique_fields: Any = None) -> Any:
        """An insert of ``objs`` held unevaluated, with Django's conflict options
        (``qplan.conflicts``); ``execute()`` returns the primary keys the database returns."""
        option = conflicts.options(self._meta, ignore_conflicts, update_conflicts,
                                   update_fields, unique_fields)
        objs = list(objs)
        if self._records:
            raise PlanError("create() and bulk_create() start from Model.objects, not a filtered plan")
        fields = self._meta.fields
        for obj in objs:
            if not isinstance(obj, self.model):
                raise FieldError(f"bulk_create() takes {self.model.__name__} instances, got {obj!r}")
        pk = self._meta.pk
        with_pk = [obj.pk is not None for obj in objs]
        if any(with_pk) and not all(with_pk):
            raise PlanError("bulk_create(): give a primary key to every object or to none")
        cols = tuple(f for f in fields if not (f is pk and pk.auto and not any(with_pk)))
        rows = tuple(
            tuple((R.VALUE, f.clean_write(obj.__dict__.get(f.attname))) for f in cols) for obj in objs
        )
        record = ("insert", tuple(f.name for f in cols), rows)
        conflicts.check_rows(option, record[1], rows)
        return self._add(record if option is None else (*record, option))

    def aggregate_plan(self, *args: Aggregate, **kwargs: Aggregate) -> Any:
        """``aggregate()`` held unevaluated: ``execute()`` returns the dict of results."""
        named = dict(aggregate_names(args))
        named.update(kwargs)
        if not named:
            raise PlanError("aggregate() needs at least one aggregate")
        ctx = self._ctx()
        items = []
        for name, agg in named.items():
            R.check_alias(self._meta, name, "aggregate")
            record = R.expression(ctx, agg)
            if not R.has_aggregate(record):
                raise FieldError(f"{ctx.who}: aggregate({name}=...) is not an aggregate: {agg!r}")
            columns = A.default_columns(record)
            if columns:  # COALESCE(SUM(x), col) outside any group: no row to read col from
                raise FieldError(f"{ctx.who}: aggregate({name}=...): a default= over no rows "
                                 f"cannot read the column {columns[0]!r}; give a value")
            items.append((name, record))
        return self._add(("aggregate", tuple(items)))
