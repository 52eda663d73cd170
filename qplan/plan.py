"""The ``Plan``: an immutable, picklable record of the commands that built a query.

A plan holds its model's registry key, a tuple of plain records and an optional
alias; every method returns a new plan. Nothing here touches a connection: running
a plan goes through the engine ``qplan`` installs in ``qplan.runner``, so this layer
imports nothing from the compiler, routing, execution or backend layers.
"""

from __future__ import annotations

from typing import Any, Callable

from . import hints, jsonform
from . import methods as M
from . import prefetch as P
from . import records as R
from . import ordering, perslice, selectrelated, setops
from .describe import describe
from .evaluation import Compiled, Evaluation  # noqa: F401 - Compiled is qplan.Compiled
from .errors import FieldError, PlanError
from .expressions import Aggregate, Q
from .models import Model, get_model
from .writeplans import WritePlans, aggregate_names as _aggregate_names

FORMAT_VERSION = 1

# Records after which nothing may be chained: they are what the plan does.
TERMINAL = frozenset({"count", "exists", "aggregate", "update", "delete", "insert"})
WRITES = frozenset({"update", "delete", "insert"})

# One bit per command, so "has this plan been sliced?" is a mask test, not a scan.
OP_BITS = {op: 1 << i for i, op in enumerate((
    "filter", "exclude", "order_by", "slice", "values", "values_list", "distinct", "annotate",
    "count", "exists", "aggregate", "update", "delete", "insert", "select_related",
    "prefetch_related", "alias", "none", "only", "defer", "select_for_update", "combine",
    "slice_per"))}
PER_PARENT = OP_BITS["slice_per"]  # prefetching's per-parent slice (qplan.perslice): last
SLICED, COMBINED = OP_BITS["slice"] | PER_PARENT, OP_BITS["combine"]
PREFETCH = OP_BITS["prefetch_related"]
NONE = OP_BITS["none"]  # none(): evaluating answers without a query (qplan.methods)
LOCKS = OP_BITS["select_for_update"]  # read on the write alias, inside atomic() only
ANNOTATED = OP_BITS["annotate"] | OP_BITS["alias"]  # a plan naming expressions
# A plan with one of these may refuse the next command (a terminal one, or union() & co).
GUARDED = COMBINED | PER_PARENT | sum(OP_BITS[op] for op in TERMINAL)
SLICE_LIMIT = 1 << 63  # LIMIT and OFFSET are 64-bit on every backend


def _ops_of(records: tuple) -> int:
    ops = 0
    for record in records:
        bit = OP_BITS.get(record[0]) if type(record) is tuple and record else None
        if bit is None:
            raise PlanError(f"unknown plan command {record[0] if record else record!r}")
        ops |= bit
    return ops



class Plan(setops.SetOperations, Evaluation, M.Methods, WritePlans):
    """An immutable query plan over one model; see the module docstring.

    This class holds the value (records, equality, pickling, shape) and the building
    methods (some in ``qplan.methods``); evaluating it (``list(plan)``, writes) is ``Evaluation``'s.
    """

    __slots__ = ("_key", "_records", "_alias", "_meta", "_ops", "_shape", "_values", "_hash")

    def __init__(self, model: type[Model] | str, records: tuple = (), alias: str | None = None):
        model_cls = get_model(model) if isinstance(model, str) else model
        if not (isinstance(model_cls, type) and issubclass(model_cls, Model)):
            raise TypeError(f"Plan() takes a model class or its registry key, got {model!r}")
        if alias is not None and not isinstance(alias, str):
            raise TypeError(f"an alias is a str, got {alias!r}")
        self._meta = model_cls._meta
        self._key = self._meta.key
        self._records = tuple(records)
        self._alias = alias
        self._ops = _ops_of(self._records)
        self._shape = self._values = self._hash = None

    # --- value semantics ---------------------------------------------------------------------

    def _derive(self, records: tuple, alias: str | None, ops: int | None = None) -> "Plan":
        new = object.__new__(Plan)
        new._key = self._key
        new._meta = self._meta
        new._records = records
        new._alias = alias
        new._ops = _ops_of(records) if ops is None else ops
        new._shape = new._values = new._hash = None
        return new

    def _add(self, record: tuple) -> "Plan":
        if self._ops & GUARDED:  # one mask test on the common path
            if self._records[-1][0] in TERMINAL:
                raise PlanError(f"cannot add {record[0]}() to a plan that ends in "
                                f"{self._records[-1][0]}()")
            if self._ops & COMBINED:  # union() & co: only what Django allows after them
                setops.check_after(self, record)
            if self._ops & PER_PARENT and record[0] != P.RECORD:
                raise PlanError(f"cannot add {record[0]}() to a plan sliced per parent "
                                f"(a Prefetch queryset's slice)")
        return self._derive(self._records + (record,), self._alias, self._ops | OP_BITS[record[0]])

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return (
            self._key == other._key
            and self._alias == other._alias
            and self._records == other._records
        )

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = self._hash = hash((self._key, self._records, self._alias))
        return h

    def __reduce__(self) -> tuple:
        return (_restore, (FORMAT_VERSION, self._key, self._records, self._alias))

    def __copy__(self) -> "Plan":
        return self

    def __deepcopy__(self, memo: Any) -> "Plan":
        return self

    def __bool__(self) -> bool:
        raise TypeError("a plan is not a result: use plan.exists(), plan.count() or list(plan)")

    def __repr__(self) -> str:
        alias = f".using({self._alias!r})" if self._alias else ""
        body = "".join(describe(r) for r in self._records)
        return f"<Plan {self._meta.model.__name__}.objects{body}{alias}>"

    # --- public, read-only view (what routers see) ---------------------------------------------

    @property
    def model(self) -> type[Model]:
        return self._meta.model

    @property
    def db(self) -> str | None:
        """The alias set with ``using()``, or None when routing decides (Django's ``qs.db``
        names the database routing chose; a plan decides only when it runs)."""
        return self._alias

    @property
    def records(self) -> tuple:
        return self._records

    @property
    def kind(self) -> str:
        """``"read"`` or ``"write"``."""
        return "write" if self._records and self._records[-1][0] in WRITES else "read"

    @property
    def is_write(self) -> bool:
        return self.kind == "write"

    def constraints(self, field: str) -> tuple | None:
        """The values the plan pins ``field`` to, or None when it does not pin it.

        ``filter(tenant_id=5)`` gives ``(5,)``, ``filter(tenant_id__in=[1, 2])`` ``(1, 2)``,
        ``Q(tenant_id=1) | Q(tenant_id=2)`` ``(1, 2)``; a plan that inserts rows gives
        their values. Routers use it to pick a shard without reading private records.
        """
        path = R.resolve_path(self._meta, field.split(SEP), self._meta.model.__name__)[0]
        return hints.constraints(self._query_records(), path)

    def related_models(self) -> tuple[type[Model], ...]:
        """Other models the plan reaches through foreign keys (joins)."""
        return hints.related_models(self._meta, self._query_records())

    def shape(self) -> tuple[Any, tuple]:
        """``(shape, values)``: the records with values lifted out, and the values in order."""
        shape = self._shape
        if shape is None:
            values: list[Any] = []
            shape = self._shape = R.shape_of(self._query_records(), values)
            self._values = tuple(values)
        return shape, self._values  # type: ignore[return-value]

    # --- state derived from the records ----------------------------------------------------------

    def _query_records(self) -> tuple:
        """The records the query is made of: all but ``prefetch_related``'s, which run after
        it as queries of their own (``qplan.prefetching``) and never reach the compiler."""
        if not self._ops & PREFETCH:
            return self._records
        return tuple(r for r in self._records if r[0] != P.RECORD)

    def _annotations(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for record in self._records:
            if record[0] == "annotate" or record[0] == "alias":
                out.update(record[1])
        return out

    def _ctx(self) -> R.Context:
        """What normalising needs; one shared, read-only context per model when nothing is annotated."""
        if self._ops & ANNOTATED:
            return R.Context(self._meta, self._annotations())
        ctx = self._meta.plain_context
        if ctx is None:
            ctx = self._meta.plain_context = R.Context(self._meta, {})
        return ctx

    def _has(self, op: str) -> bool:
        return bool(self._ops & OP_BITS[op])

    def _no_slice(self, what: str) -> None:
        if self._ops & SLICED:
            raise PlanError(f"cannot {what} a plan once a slice has been taken")

    # --- building --------------------------------------------------------------------------------

    def all(self) -> "Plan":
        return self

    def using(self, alias: str | None) -> "Plan":
        """The same plan bound to ``alias`` (None: let routing decide)."""
        if alias is not None and not isinstance(alias, str):
            raise TypeError(f"an alias is a str, got {alias!r}")
        if alias == self._alias:
            return self
        return self._derive(self._records, alias, self._ops)

    def filter(self, *args: Q, **kwargs: Any) -> "Plan":
        return self._where("filter", args, kwargs)

    def exclude(self, *args: Q, **kwargs: Any) -> "Plan":
        return self._where("exclude", args, kwargs)

    def _where(self, op: str, args: tuple, kwargs: dict[str, Any]) -> "Plan":
        self._no_slice("filter")
        if not args and not kwargs:
            return self
        if not args and len(kwargs) == 1:
            # filter(x=...), get(pk=...): the one leaf condition() would return, without its
            # list, sort and generator (about 0.8 µs of a 3 µs filter)
            [(key, value)] = kwargs.items()
            return self._add((op, R.leaf(self._ctx(), key, value)))
        node = R.condition(self._ctx(), args, kwargs)
        return self if node is None else self._add((op, node))

    def order_by(self, *names: Any) -> "Plan":
        self._no_slice("reorder")
        if self._ops & COMBINED:
            return self._add(("order_by", setops.order_names(self, names)))
        ctx = self._ctx()
        cache = None if ctx.annotations else self._meta.path_cache
        key = ("order_by", names)
        if cache is not None:
            try:
                found = cache.get(key)
            except TypeError:  # an unhashable expression among the names: never cached
                found = None
            if found is not None:
                return self._add(("order_by", found))
        canonical: list[Any] = []
        for name in names:
            if not isinstance(name, str):  # an expression or F(...).desc(): qplan.ordering
                cache = None
                canonical.append(ordering.term(ctx, name, R.expression))
                continue
            if not name.lstrip("-"):
                raise FieldError(f"{ctx.who}: order_by() takes field names, got {name!r}")
            if name == "?":
                raise FieldError(f"{ctx.who}: random ordering ('?') is not supported")
            desc = name.startswith("-")
            path, _ = ctx.path(name.lstrip("-"))
            canonical.append("-" + path if desc else path)
        if cache is not None:
            cache[key] = tuple(canonical)
        return self._add(("order_by", tuple(canonical)))

    def reverse(self) -> "Plan":
        """The same plan in the opposite order (by primary key when none was given)."""
        self._no_slice("reorder")
        order = self._ordering() or (self._meta.pk.name,)
        return self._add(("order_by", tuple(ordering.reversed_term(n) for n in order)))

    def _ordering(self) -> tuple[str, ...]:
        """The order the rows come in: the last ``order_by()``, else ``Meta.ordering``."""
        for record in reversed(self._records):
            if record[0] == "order_by":
                return record[1]
        return () if self._ops & COMBINED else self._meta.ordering  # combined: unordered

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            if key.step not in (None, 1):
                raise PlanError(f"slices with a step are not supported: [{key.start}:{key.stop}:{key.step}]")
            start, stop = key.start, key.stop
            for bound in (start, stop):
                if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
                    raise PlanError(f"slice bounds must be integers, got {bound!r}")
                if bound is not None and bound < 0:
                    raise PlanError(f"negative slicing is not supported: [{start}:{stop}]")
                if bound is not None and bound >= SLICE_LIMIT:
                    raise PlanError(f"slice bounds must be under 2**63 (a 64-bit LIMIT/OFFSET), "
                                    f"got {bound.bit_length()}-bit {start!r:.30}:{stop!r:.30}")
            return self._slice(start or 0, stop)
        if isinstance(key, int) and not isinstance(key, bool):
            if key < 0:
                raise PlanError(f"negative indexing is not supported: [{key}]")
            rows = list(self._slice(key, key + 1))
            if not rows:
                raise IndexError(f"plan index {key} out of range")
            return rows[0]
        raise TypeError(f"plan indices must be integers or slices, not {type(key).__name__}")

    def _slice(self, start: int, stop: int | None) -> "Plan":
        records = self._records
        offset, limit = start, (None if stop is None else max(stop - start, 0))
        if records and records[-1][0] == "slice":  # slicing a slice narrows it
            old_offset = records[-1][1][1] if records[-1][1] else 0
            old_limit = records[-1][2][1] if records[-1][2] else None
            offset = old_offset + start
            if old_limit is not None:  # stay inside the old window, as Django does
                start = min(start, old_limit)
                offset = old_offset + start
                end = old_limit if stop is None else min(stop, old_limit)
                limit = max(end - start, 0)
            records = records[:-1]
        elif self._has("slice"):
            raise PlanError("cannot slice a plan again after other commands followed a slice")
        elif records and records[-1][0] in TERMINAL:
            raise PlanError(f"cannot slice a plan that ends in {records[-1][0]}()")
        record = ("slice", (R.VALUE, offset) if offset else None,
                  None if limit is None else (R.VALUE, limit))
        return self._derive(records + (record,), self._alias, self._ops | OP_BITS["slice"])

    def _slice_per(self, path: str, start: int, stop: int | None) -> "Plan":
        """Rows ``start:stop`` of each value of ``path`` (``qplan.perslice``): what a sliced
        ``Prefetch`` queryset runs; prefetching adds it, replay rebuilds it through here."""
        if self._ops & (SLICED | GUARDED):
            raise PlanError("a per-parent slice comes last, on an unsliced read plan")
        return self._add(perslice.record(self._meta, path, start, stop))

    def values(self, *names: str) -> "Plan":
        return self._add(("values", self._value_names(names)))

    def values_list(self, *names: str, flat: bool = False, named: bool = False) -> "Plan":
        if flat and len(names) != 1:
            raise PlanError("values_list(flat=True) takes exactly one field")
        if flat and named:
            raise PlanError("values_list() takes flat=True or named=True, not both")
        columns = self._value_names(names)
        if named:
            R.check_row_names(columns, self._meta.model.__name__)
        return self._add(("values_list", columns, bool(flat), bool(named)))

    def _value_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        if self._ops & COMBINED:
            return setops.value_names(self, names)
        ctx = self._ctx()
        cache = None if ctx.annotations else self._meta.path_cache
        key = ("values", names)
        if cache is not None:
            found = cache.get(key)
            if found is not None:
                return found
        hidden = M.check_selected(self._records, names, ctx.who) if self._has("alias") else ()
        if not names:
            return tuple(f.attname for f in self._meta.fields) + tuple(
                n for n in ctx.annotations if n not in hidden)
        for name in names:
            if not isinstance(name, str):
                raise FieldError(f"{ctx.who}: values() takes field names, got {name!r}")
            if name not in self._meta.by_attname:
                ctx.path(name)  # checked here; kept as written: the rows' keys are these names
        result = tuple(names)
        if cache is not None:
            cache[key] = result
        return result

    def prefetch_related(self, *lookups: Any) -> "Plan":
        """Django's ``prefetch_related``: after the rows, one query per relation level fills
        the related objects' caches (``qplan.prefetch``); calls add up, ``(None)`` clears."""
        if lookups == (None,):
            if not self._ops & PREFETCH:
                return self
            return self._derive(self._query_records(), self._alias)
        if not lookups:
            return self
        earlier = P.items_of(self._records) if self._ops & PREFETCH else ()
        return self._add(P.record(self._meta, earlier, lookups, Plan))

    def distinct(self) -> "Plan":
        return self._add(("distinct",))

    def select_related(self, *names: str | None) -> "Plan":
        """Fill the related instances of single-valued relations in the same query (a JOIN).

        ``select_related('writer', 'writer__mentor')`` adds names (calls accumulate),
        ``select_related()`` follows every non-null foreign key (Django's default, 5
        deep), ``select_related(None)`` clears. Record: ``("select_related", path, ...)``,
        ``("select_related",)`` or ``("select_related", None)``. Counts, aggregates,
        ``values()`` and writes ignore it, as in Django.
        """
        if self._has("values") or self._has("values_list"):
            raise PlanError("Cannot call select_related() after .values() or .values_list()")
        if names == (None,):
            return self._add((selectrelated.OP, None))
        if not names:
            selectrelated.check_all(self._meta)
            return self._add((selectrelated.OP,))
        cache, key = self._meta.path_cache, (selectrelated.OP, names)
        record = cache.get(key)
        if record is None:
            record = (selectrelated.OP, *selectrelated.check(self._meta, names))
            if all(type(name) is str for name in names):
                cache[key] = record
        return self._add(record)

    def annotate(self, *args: Aggregate, **kwargs: Any) -> "Plan":
        ctx = R.Context(self._meta, self._annotations())  # its own: annotations are added below
        named = dict(_aggregate_names(args))
        named.update(kwargs)
        items = []
        for name, expr in named.items():
            R.check_alias(self._meta, name, "annotation")
            record = R.expression(ctx, expr)
            items.append((name, record))
            ctx.annotations[name] = record
        return self._add(("annotate", tuple(items)))

    def as_subquery(self) -> tuple:
        """``("query", model key, records)``: the rhs record of ``field__in=plan``.

        The plan must select one column (``values('id')``, ``values_list('id', flat=True)``;
        a plan without ``values()`` selects its primary key), and it runs as part of the
        outer plan, on the outer plan's alias: its own ``using()`` is not kept.
        """
        if self._records and self._records[-1][0] in TERMINAL:
            raise PlanError(f"a plan ending in {self._records[-1][0]}() is not a subquery")
        setops.check_subquery(self)
        names = None
        for record in self._records:
            if record[0] in ("values", "values_list"):
                names = record[1]
        if names is not None and len(names) != 1:
            raise PlanError(f"a subquery selects one column, this one selects {list(names)!r}")
        return ("query", self._key, self._query_records())

    def to_json(self, key: str | bytes | None = None, *, indent: int | None = None) -> str:
        """The plan as tagged JSON, signed with ``key`` or the configured key (``qplan.jsonplan``)."""
        return jsonform.document(FORMAT_VERSION, self._key, self._alias, self._records, key,
                                 indent=indent)


SEP = R.SEP


def _migrate_v1(key: str, records: tuple, alias: str | None) -> tuple[str, tuple, str | None]:
    return key, records, alias


# One function per format version a release ever wrote, turning that version's
# (model key, records, alias) into the current grammar. When FORMAT_VERSION becomes
# 2, keep 1 here (migrating its records) and add 2.
MIGRATIONS: dict[int, Callable[[str, tuple, Any], tuple[str, tuple, Any]]] = {
    1: _migrate_v1,
}


def _restore(version: int, key: str, records: tuple, alias: str | None) -> Plan:
    """Rebuild a pickled plan (the target of ``Plan.__reduce__``; payloads check it first)."""
    if version not in MIGRATIONS:
        raise PlanError(
            f"plan format version {version!r} is not supported by this qplan "
            f"(it reads version {FORMAT_VERSION})"
        )
    key, records, alias = MIGRATIONS[version](key, records, alias)
    if not isinstance(key, str) or not (alias is None or isinstance(alias, str)):
        raise PlanError("a plan payload names its model and alias with strings")
    if type(records) is not tuple or not all(type(r) is tuple and r and isinstance(r[0], str)
                                             for r in records):
        raise PlanError("a plan payload's records must be tuples of plain values")
    _check_plain(records)
    return Plan(key, records, alias)


def _check_plain(node: Any) -> None:
    """Refuse anything but tuples of plain values inside records (lists, dicts, sets...)."""
    if type(node) is tuple:
        for child in node:
            _check_plain(child)
    elif not isinstance(node, R.PLAIN_TYPES) or type(node).__module__ not in ("builtins", "decimal", "datetime"):
        raise PlanError(f"a plan payload holds a {type(node).__name__}, which plans never hold")


class PrefetchedPlan(Plan):
    """A plan whose rows were already fetched (``prefetch_related``): evaluating it as it is
    (iterating, ``count()``, ``exists()``, ``[i]``) answers from those rows without a query,
    while any chained call (``filter()``, ``order_by()``, a slice...) is an ordinary plan
    again. It equals, hashes and pickles as its plan: the rows are no part of the value."""

    __slots__ = ("_rows",)

    def __init__(self, plan: Plan, rows: Any) -> None:
        self._key, self._meta, self._records = plan._key, plan._meta, plan._records
        self._alias, self._ops = plan._alias, plan._ops
        self._shape = self._values = self._hash = None
        self._rows = list(rows)

    def __iter__(self) -> Any:
        return iter(self._rows)

    def count(self) -> int:
        return len(self._rows)

    def exists(self) -> bool:
        return bool(self._rows)

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
            if key >= len(self._rows):
                raise IndexError(f"plan index {key} out of range")
            return self._rows[key]
        return super().__getitem__(key)


class PlanDescriptor:
    """``Model.objects``: the model's root plan, made once per model."""

    def __get__(self, instance: Any, owner: type[Model]) -> Plan:
        if instance is not None:
            raise AttributeError("objects is reachable from the model class, not from instances")
        meta = owner._meta
        if meta.abstract:
            raise AttributeError(f"{owner.__name__} is abstract and has no objects")
        root = meta.root_plan
        if root is None or root._meta is not meta:
            root = meta.root_plan = Plan(owner)
        return root


Model.objects = PlanDescriptor()  # type: ignore[attr-defined]
