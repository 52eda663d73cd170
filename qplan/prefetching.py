"""Running ``prefetch_related``: one query per relation level, whatever the row count.

After a plan's model instances are materialised, each lookup (``qplan.prefetch``) is
followed level by level: the keys of the level's objects are collected and the related
model is read with ONE ordinary plan, ``Target.objects.filter(<key>__in=keys)`` (merged
with a ``Prefetch`` queryset's filters and order; a sliced one is cut per parent in SQL,
``qplan.perslice``), routed by the routers on its own: a
related model on another alias is fine, nothing is joined. Only a key list longer than the
backend binds in one statement is split. The results fill the caches the instances and
their managers read:

- forward foreign key / one-to-one: ``obj.__dict__["_cache_" + field name]``;
- reverse one-to-one: ``obj.__dict__["_cache_" + accessor]`` (None when absent);
- reverse foreign key, many-to-many: ``obj.__dict__["_prefetched"][accessor]``, a list;
- ``to_attr``: ``setattr(obj, to_attr, ...)``: a list, or the object for a single relation.

A level already fetched by an earlier lookup (``'novel_set'`` then ``'novel_set__reviews'``)
is not fetched again; nested levels run on the objects the level above found.
"""

from __future__ import annotations

from typing import Any, Callable

from . import perslice, routing, settings
from .backends import get as get_backend
from .expressions import F
from .plan import Plan
from .prefetch import SEP, by_accessor, items_of, parts_of, prefetch_to
from .relations import Relation
from .sharding import ShardSet
from .steps import Steps

Query = Callable[[Plan], Steps]  # one prefetch query's evaluation, as steps

# Keys of one query needing no look at the backend: under every backend's bind limit.
SAFE_KEYS = 900
SOURCE = "_prefetch_source"  # the annotation carrying a many-to-many row's source key


def wanted(plan: Plan, result: Any) -> bool:
    """Whether ``result`` is model instances to prefetch for (not values, counts, writes)."""
    if type(result) is not list or not result or plan.kind == "write":
        return False
    last = plan.records[-1][0]
    return not (plan._has("values") or plan._has("values_list")
                or last in ("count", "exists", "aggregate"))


def apply(engine: Any, plan: Plan, objs: list, pinned: str | None, query: Query) -> Steps:
    """Run ``plan``'s prefetch lookups for ``objs`` (its rows), filling their caches (core
    steps, ``qplan.steps``: ``query(plan)`` gives the steps evaluating one prefetch query).

    ``pinned``: the alias the rows were read from when the plan named one (``using()``);
    a prefetch query no router places runs there too, as Django's related managers do.
    """
    done: dict[str, list] = {}  # prefetch_to path -> the objects that level reached
    for item in items_of(plan.records):
        lookup, to_attr, custom = parts_of(item)
        parts = lookup.split(SEP)
        level = objs
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            path = prefetch_to(SEP.join(parts[:i + 1]), to_attr if last else None)
            if path in done:
                level = done[path]
                continue
            if not level:
                break
            rel = by_accessor(type(level[0])._meta).get(part)
            if rel is None:  # an earlier Prefetch's to_attr, filled on these objects
                level = _gathered(level, part)
                done[path] = level
                continue
            cached = None if last and (custom or to_attr) else _cached(rel, level)
            if cached is not None:  # select_related (or an earlier fill) got there first
                level = done[path] = cached
                continue
            base, cut = _unsliced(rel.target.model, custom[2]) if last and custom else (None, None)
            level = yield from fetch(query, rel, level, base, to_attr if last else None, pinned,
                                     cut)
            done[path] = level


def _cached(rel: Relation, objs: list) -> list | None:
    """The related objects when every one of ``objs`` already holds ``rel`` (Django's
    ``is_fetched``), else None."""
    if rel.many:
        lists = [o.__dict__.get("_prefetched", {}).get(rel.accessor) for o in objs]
        if any(found is None for found in lists):
            return None
        return [obj for found in lists for obj in found]
    key = "_cache_" + (rel.field.name if rel.kind == "forward" else rel.accessor)
    if not all(key in o.__dict__ for o in objs):
        return None
    return _unique([o.__dict__[key] for o in objs if o.__dict__[key] is not None])


def _gathered(objs: list, attr: str) -> list:
    out: list = []
    for obj in objs:
        value = getattr(obj, attr, None)
        if isinstance(value, list):
            out.extend(value)
        elif value is not None:
            out.append(value)
    return _unique(out)


def _unique(objs: list) -> list:
    seen: dict[int, Any] = {}
    for obj in objs:
        seen.setdefault(id(obj), obj)
    return list(seen.values())


def _unsliced(model: type, records: tuple) -> tuple[Plan, tuple[int, int | None] | None]:
    """A ``Prefetch`` queryset's plan without its slice, and the slice's ``(start, stop)``
    (None when unsliced): the slice applies per parent object (Django 4.2+)."""
    found = [r for r in records if r[0] == "slice"]
    if not found:
        return Plan(model, records), None
    plan = Plan(model, tuple(r for r in records if r[0] != "slice"))
    start, stop = perslice.bounds(("", "", *found[0][1:]))
    stop = None if stop is None else start + stop  # the record holds offset, limit
    if not plan._ordering():  # the window's order (pk), which a sharded merge keeps too
        plan = plan.order_by("pk")
    return plan, (start, stop)


def fetch(query: Query, rel: Relation, objs: list, base: Plan | None, to_attr: str | None,
          pinned: str | None, cut: tuple[int, int | None] | None = None) -> Steps:
    """Fetch ``rel`` for ``objs`` in one query (per key chunk); the related objects found.
    ``cut``: a sliced ``Prefetch`` queryset's ``(start, stop)``, kept per parent."""
    plan = base if base is not None else rel.target.model.objects
    if rel.kind == "forward":
        return (yield from _forward(query, rel, objs, plan, to_attr, pinned))
    if rel.kind == "reverse":
        return (yield from _reverse(query, rel, objs, plan, to_attr, pinned, cut))
    return (yield from _many_to_many(query, rel, objs, plan, to_attr, pinned, cut))


def _forward(query: Query, rel: Relation, objs: list, plan: Plan, to_attr: str | None,
             pinned: str | None) -> Steps:
    attname = rel.field.attname
    keys = list(dict.fromkeys(k for k in (o.__dict__.get(attname) for o in objs) if k is not None))
    found = {o.pk: o for o in (yield from run(query, plan, "pk", keys, pinned))}
    cache = "_cache_" + rel.field.name
    back = _reverse_cache(rel) if rel.one_to_one else None
    for obj in objs:
        value = found.get(obj.__dict__.get(attname))
        if to_attr is not None:
            setattr(obj, to_attr, value)
        else:
            obj.__dict__[cache] = value
        if back is not None and value is not None:  # bio.writer.bio is bio, as in Django
            value.__dict__[back] = obj
    return list(found.values())


def _reverse_cache(rel: Relation) -> str | None:
    """The cache attribute of a one-to-one's reverse side (``_cache_bio``), if it has one."""
    for other in by_accessor(rel.target).values():
        if other.field is rel.field and other.kind == "reverse":
            return "_cache_" + other.accessor
    return None


def _reverse(query: Query, rel: Relation, objs: list, plan: Plan, to_attr: str | None,
             pinned: str | None, cut: tuple | None = None) -> Steps:
    field = rel.field  # the foreign key on the related model, pointing here
    keys = list(dict.fromkeys(o.pk for o in objs if o.pk is not None))
    per = None if cut is None else (field.name, *cut, lambda row: row.__dict__.get(field.attname))
    rows = yield from run(query, plan, field.name, keys, pinned, per=per)
    by_key: dict[Any, list] = {}
    owners = {o.pk: o for o in objs}
    cache = "_cache_" + field.name
    for row in rows:
        key = row.__dict__.get(field.attname)
        by_key.setdefault(key, []).append(row)
        row.__dict__[cache] = owners.get(key)  # row.writer is the object it was fetched for
    _store(rel, objs, by_key, to_attr)
    return rows


def _many_to_many(query: Query, rel: Relation, objs: list, plan: Plan, to_attr: str | None,
                  pinned: str | None, cut: tuple | None = None) -> Steps:
    back = _back_name(rel)
    keys = list(dict.fromkeys(o.pk for o in objs if o.pk is not None))
    # the annotation after the filter reuses its join: each row once per source it links to
    # (and so does a slice's partition: the through table's source column)
    per = None if cut is None else (back, *cut, lambda row: row.__dict__[SOURCE])
    rows = yield from run(query, plan, back, keys, pinned,
                          lambda p: p.annotate(**{SOURCE: F(back)}), per)
    by_key: dict[Any, list] = {}
    for row in rows:  # a row per (target, source): each source's list holds its own objects
        by_key.setdefault(row.__dict__.pop(SOURCE), []).append(row)
    _store(rel, objs, by_key, to_attr)
    return rows


def _back_name(rel: Relation) -> str:
    """The query name leading from ``rel``'s target back to its source (``novel``, ``genres``)."""
    for other in by_accessor(rel.target).values():
        if other.field is rel.field and other.kind != rel.kind:
            return other.name
    return rel.field.name  # pragma: no cover - a many-to-many always has both sides


def _store(rel: Relation, objs: list, by_key: dict, to_attr: str | None) -> None:
    for obj in objs:
        found = by_key.get(obj.pk, [])
        if rel.one_to_one:
            value: Any = found[0] if found else None
            if to_attr is not None:
                setattr(obj, to_attr, value)
            else:
                obj.__dict__["_cache_" + rel.accessor] = value
        elif to_attr is not None:
            setattr(obj, to_attr, found)
        else:
            obj.__dict__.setdefault("_prefetched", {})[rel.accessor] = found


# --- the queries ------------------------------------------------------------------------------------


def run(query: Query, plan: Plan, name: str, keys: list, pinned: str | None,
        then: Callable[[Plan], Plan] | None = None, per: tuple | None = None) -> Steps:
    """``plan.filter(<name>__in=keys)``'s rows (``then`` applied to that plan): one query, or
    one per chunk of keys when the list is longer than the backend binds in one statement.

    ``per``: ``(path, start, stop, parent of a row)``, rows ``start:stop`` of each parent
    (a sliced ``Prefetch``), numbered in SQL per ``path`` (``qplan.perslice``). Over shards a
    parent's rows may live on several: each shard keeps its first ``stop`` per parent, the
    merge orders them all by the plan's order, and the slice is taken here, per parent."""
    if not keys:
        return []
    size = len(keys) if len(keys) <= SAFE_KEYS else _chunk(plan, name, keys[0], pinned)
    rows: list = []
    for start in range(0, len(keys), size):
        chunk = plan.filter(**{f"{name}__in": keys[start:start + size]})
        placed = _placed(chunk if then is None else then(chunk), pinned)
        if per is None:
            rows += yield from query(placed)
            continue
        path, first, stop, parent = per
        if not isinstance(routing.route(placed), ShardSet):
            rows += yield from query(placed._slice_per(path, first, stop))
            continue
        found = yield from query(placed._slice_per(path, 0, stop))
        seen: dict[Any, int] = {}
        for row in found:
            n = seen[parent(row)] = seen.get(parent(row), -1) + 1
            if n >= first and (stop is None or n < stop):
                rows.append(row)
    return rows


def _chunk(plan: Plan, name: str, key: Any, pinned: str | None) -> int:
    """Keys per query: the bind limit of where the query runs, less the plan's other values."""
    target = routing.route(_placed(plan.filter(**{f"{name}__in": (key,)}), pinned))
    alias = target[0].aliases[0] if isinstance(target, ShardSet) else target
    backend = get_backend(settings.database(alias)["ENGINE"])
    others = sum(len(v) if type(v) is tuple else 1 for v in plan.shape()[1])
    return max(backend.max_params - others, 1)


def _placed(plan: Plan, pinned: str | None) -> Plan:
    """``plan`` on ``pinned`` when no router places it; as the routers decide otherwise."""
    if pinned is None or plan.db is not None:
        return plan
    for router in routing.chain(plan):
        if routing.ask(router, "read", plan, {}) is not None:
            return plan
    return plan.using(pinned)
