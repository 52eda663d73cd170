"""Reading a plan over several shards: ``_Read`` checks and rewrites it per shard, then merges.

Each strategy (counts, partial aggregates, plain rows, groups) has a ``_prepare_*``
step that builds the per-shard plan before anything runs and a ``_run_*`` step
that gathers the shards' results and merges them.
"""

from __future__ import annotations

import collections
import decimal
import heapq
import itertools
import statistics
from operator import itemgetter
from typing import Any, Iterable, Iterator, Sequence

from .. import aggregates as A
from .. import settings
from ..backends import get as get_backend
from ..errors import Error, NotSupportedError
from ..instances import nested_models
from ..plan import TERMINAL, Plan
from ..records import SEP, VALUE
from .merge import (_cond_is_agg, _decimal_field, _distinct, _hashable, _is_agg, _kind, _Merge,
                    _sort, _sort_key, _window)
from ..steps import Steps
from .pool import _MISSING, _gather, _present, _reads, gather_steps
from .router import ShardSet


class _Info:
    """What a read plan's records say, as the compiler will read them."""

    def __init__(self, plan: Plan) -> None:
        records = plan.records
        self.terminal = records[-1] if records and records[-1][0] in TERMINAL else None
        self.body = records[:-1] if self.terminal else records
        self.annotations: dict[str, Any] = {}
        self.agg: set[str] = set()
        self.group_values = False
        self.regrouped = False  # values() again after values().annotate(aggregate)
        self.first_values: int | None = None
        self.last_values: int | None = None
        self.order: tuple[str, ...] = ()
        self.window: tuple[int, int | None] | None = None
        self.distinct = False
        self.having: set[int] = set()
        for i, record in enumerate(self.body):
            op = record[0]
            if op == "annotate":
                for name, node in record[1]:
                    is_agg = _is_agg(node, self.agg)
                    self.annotations[name] = node
                    if is_agg:
                        self.agg.add(name)
                    else:
                        self.agg.discard(name)
                    if self.first_values is not None and is_agg:
                        self.group_values = True
            elif op in ("values", "values_list"):
                self.regrouped = self.regrouped or self.group_values
                if self.first_values is None:
                    self.first_values = i
                self.last_values = i
            elif op == "order_by":
                self.order = record[1]
            elif op == "slice":
                self.window = (record[1][1] if record[1] else 0,
                               record[2][1] if record[2] else None)
            elif op == "distinct":
                self.distinct = True
            elif op in ("filter", "exclude") and _cond_is_agg(record[1], self.agg):
                self.having.add(i)
        if not any(r[0] == "order_by" for r in self.body) and not (self.distinct or self.agg):
            self.order = plan.model._meta.ordering  # the default order each shard returns


class _Read:
    """One read plan bound to several shards: checked and rewritten before anything runs."""

    def __init__(self, engine: Any, plan: Plan, shards: ShardSet) -> None:
        self.engine, self.plan, self.shards = engine, plan, shards
        self.meta = plan._meta
        self.who = f"{plan.model.__name__} over shards {list(shards.names)!r}"
        info = self.info = _Info(plan)
        per = next((r for r in info.body if r[0] == "slice_per"), None)
        if per is not None and per[2] is not None:  # prefetching asks for [0:stop], then cuts
            raise NotSupportedError(f"{self.who}: a per-parent slice with an offset cannot be "
                                    f"merged across shards (a parent's rows may be on several)")
        if info.regrouped:
            raise NotSupportedError(f"{self.who}: values() after values().annotate(aggregate) "
                                    f"keeps groups the shards cannot merge by the new keys")
        backend = get_backend(settings.database(shards[0].aliases[0])["ENGINE"])
        template, _ = engine.template(plan._derive(info.body, None), backend)  # checks the plan
        self.result, self.columns = template.result, tuple(template.columns)
        self.nested = template.nested
        terminal = info.terminal[0] if info.terminal else None
        complex_ = info.group_values or info.distinct or info.window is not None
        if terminal is None:
            self.strategy = "groups" if info.group_values else "rows"
        elif terminal == "exists" and info.window is None and not info.having:
            self.strategy = "any exists"
        elif terminal in ("count", "exists"):
            if info.group_values or (info.distinct and (terminal == "count" or info.window)):
                self.strategy = "count rows"
            elif info.window is not None:
                self.strategy = "count window"
            else:
                self.strategy = "add counts" if terminal == "count" else "any exists"
        else:
            self.strategy = "aggregate rows" if complex_ else "partials"
        getattr(self, "_prepare_" + self.strategy.replace(" ", "_"))()

    # --- per strategy: the per-shard plan, and how results merge --------------------------------

    def _derive(self, records: Iterable[tuple]) -> Plan:
        return self.plan._derive(tuple(records), None)

    def _prepare_add_counts(self) -> None:
        self.sub = self.plan
        self.describe = "the per-shard counts added up"

    def _prepare_any_exists(self) -> None:
        self.sub = self.plan
        self.describe = "true if any shard has a row"

    def _prepare_count_window(self) -> None:
        info = self.info
        self.sub = self._derive([r for r in info.body if r[0] != "slice"] + [("count",)])
        self.describe = "per-shard counts of the unsliced plan added up, then the slice applied"

    def _prepare_count_rows(self) -> None:
        if self.info.group_values:
            self._prepare_grouped()
        else:
            self._prepare_fetch(order=False, extras=())
        self.describe = "rows fetched from every shard and merged, then counted: " + self.describe

    def _prepare_rows(self) -> None:
        self._prepare_fetch(order=True, extras=())

    def _prepare_groups(self) -> None:
        self._prepare_grouped()

    def _prepare_aggregate_rows(self) -> None:
        info = self.info
        items = info.terminal[1]
        if info.group_values:
            self._prepare_grouped()
            merge = self.merge
            self.aggs = []
            for name, node in items:
                if node[0] != "agg":
                    raise merge.refuse(f"aggregate({name}=...) of an expression over groups")
                fn, arg, distinct = node[1], node[2], node[3]
                if distinct:
                    raise merge.refuse(f"{fn.capitalize()}(..., distinct=True)")
                default = self._merged_options(name, node)
                get = None if arg == "*" else merge.expr(arg)
                self.aggs.append((name, fn, get, self._kind(arg), _decimal_field(self.meta, arg),
                                  default))
            self.describe += "; then the aggregates computed over the merged groups"
            return
        extras: list[tuple[str, Any]] = []
        self.aggs = []
        for i, (name, node) in enumerate(items):
            if node[0] != "agg":
                raise NotSupportedError(f"{self.who}: aggregate({name}=...) of an expression over "
                                        f"a sliced or distinct plan cannot be merged across shards")
            fn, arg, distinct = node[1], node[2], node[3]
            if distinct:
                raise NotSupportedError(f"{self.who}: {fn.capitalize()}(..., distinct=True) cannot "
                                        f"be merged exactly across shards")
            default = self._merged_options(name, node)
            if arg == "*":
                self.aggs.append((name, fn, None, "int", None, default))
                continue
            if arg[0] == "F" and (arg[1] in self.columns or arg[1] not in info.agg):
                key = arg[1]
            elif _is_agg(arg, info.agg):
                raise NotSupportedError(f"{self.who}: aggregate({name}=...) of an unselected "
                                        f"aggregate expression cannot be merged across shards")
            else:
                key = f"_qpa{i}"
                extras.append((key, arg))
            self.aggs.append((name, fn, key, self._kind(arg), _decimal_field(self.meta, arg),
                              default))
        self._prepare_fetch(order=info.window is not None, extras=extras,
                            args=[a[2] for a in self.aggs if isinstance(a[2], str)])
        self.describe = ("rows fetched from every shard and merged, then aggregated: "
                         + self.describe)

    def _merged_options(self, name: str, node: tuple) -> Any:
        """The default of an aggregate computed over merged rows; ``NotSupportedError`` for
        a filter= (the rows fetched do not say which ones it matches)."""
        options = A.options_of(node)
        if "filter" in options:
            raise NotSupportedError(f"{self.who}: aggregate({name}=...(filter=...)) over a "
                                    f"sliced, distinct or grouped plan cannot be merged across "
                                    f"shards (the merged rows do not say which match it)")
        default = options.get("default")
        if default is not None and default[0] != VALUE:
            raise NotSupportedError(f"{self.who}: aggregate({name}=...(default=<expression>)) "
                                    f"over a sliced, distinct or grouped plan cannot be merged "
                                    f"across shards: give a value")
        return None if default is None else default[1]

    def _kind(self, arg: Any) -> str | None:
        return _kind(self.meta, self.info.annotations, arg)

    def _prepare_partials(self) -> None:
        info = self.info
        merge = self.merge = _Merge(self.meta, info.annotations, info.agg, None, self.who)
        self.getters = [(name, merge.expr(node)) for name, node in info.terminal[1]]
        items = tuple((f"_qp{slot}", node) for slot, node in merge.emit)
        self.sub = self._derive(info.body + (("aggregate", items),))
        self.describe = ("per-shard partial aggregates (" + ", ".join(
            f"{fn}" for fn in merge.fns) + ") combined, then the aggregates computed")

    def _prepare_fetch(self, order: bool, extras: Iterable[tuple[str, Any]],
                       args: Sequence[str] = ()) -> None:
        """Plain rows (no cross-shard groups): each shard selects the columns, the ordering
        columns and aggregate arguments it lacks; the merge orders, de-duplicates, slices."""
        info = self.info
        names = list(self.columns)
        extras = list(extras)
        terms = []
        if order:
            for i, term in enumerate(info.order):
                if type(term) is tuple:  # an expression term (qplan.ordering): selected too
                    terms.append(self._expression_term(i, term, names, extras))
                    continue
                desc = term.startswith("-")
                path = term.lstrip("-")
                if path not in names:
                    names.append(path)
                terms.append((names.index(path), desc, self._nullable(path),
                              self._numeric(path)))
        for key in args:
            if key not in names and key not in dict(extras):
                names.append(key)
        names += [key for key, _ in extras if key not in names]
        records = []
        for i, record in enumerate(info.body):
            op = record[0]
            if op == "slice":
                offset, limit = info.window  # type: ignore[misc]
                if limit is not None:  # each shard's first offset+limit rows suffice
                    records.append(("slice", None, (VALUE, offset + limit)))
                continue
            if op == "order_by" and not order:
                continue
            if i == info.last_values:
                records.append(("values_list", tuple(names), False, False))
                continue
            records.append(record)
        if extras:
            records.append(("annotate", tuple(extras)))
        if info.last_values is None:
            records.append(("values_list", tuple(names), False, False))
        self.sub = self._derive(records)
        self.names = names
        self.index = {name: i for i, name in reversed(list(enumerate(names)))}
        self.key, self.reverse = _sort_key(terms) if terms else (None, False)
        steps = ["per shard: " + ("first offset+limit rows, " if order and info.window
                                  and info.window[1] is not None else "")
                 + (f"ordered by {list(info.order)!r}" if terms else "unordered")]
        steps.append("k-way merge" if terms else "concatenated")
        if info.distinct:
            steps.append("duplicates dropped after the merge")
        if info.window is not None and order:
            steps.append("then the slice")
        self.describe = ", ".join(steps)

    def _expression_term(self, i: int, term: tuple, names: list[str],
                         extras: list[tuple[str, Any]]) -> tuple:
        """A sort term for ``("expr", expression, descending, nulls)``: a field's column, or
        the expression selected as an extra column; NULLs placed as the databases do."""
        _, node, desc, nulls = term
        if _is_agg(node, self.info.agg):
            raise NotSupportedError(f"{self.who}: order_by() of an aggregate expression over "
                                    f"plain rows cannot be merged exactly across shards")
        if node[0] == "F" and node[1] not in self.info.annotations:
            key, nullable, numeric = node[1], self._nullable(node[1]), self._numeric(node[1])
        else:
            key, nullable, numeric = f"_qpo{i}", True, self._kind(node) in (
                "int", "float", "decimal", "bool")
            extras.append((key, node))
        if key not in names:
            names.append(key)
        return (names.index(key), desc, nullable, numeric, nulls)

    def _numeric(self, path: str) -> bool:
        try:
            return self._kind(("F", path)) in ("int", "float", "decimal", "bool")
        except Error:
            return False

    def _nullable(self, path: str) -> bool:
        if path in self.info.annotations:
            return True
        if SEP in path:
            return True
        field = self.meta.by_name.get(path) or self.meta.by_attname.get(path)
        return field is None or field.null

    def _prepare_grouped(self) -> None:
        """``values(...).annotate(aggregates)``: each shard returns its groups with partial
        aggregates; groups combine by key; HAVING, ordering and slicing run after the merge."""
        info = self.info
        keys = [c for c in self.columns if c not in info.agg]
        env_index = {c: i for i, c in enumerate(keys)}
        merge = self.merge = _Merge(self.meta, info.annotations, info.agg, env_index, self.who)
        outputs = [(None, merge.annotation(c)) if c in info.agg else (keys.index(c), None)
                   for c in self.columns]
        self.having = []
        for i in sorted(info.having):
            record = info.body[i]
            test = merge.condition(record[1])
            self.having.append(test if record[0] == "filter" else
                               (lambda env, parts, t=test: not t(env, parts)))
        self.order_terms = [(merge.expr(term[1]), term[2], term[3]) if type(term) is tuple
                            else (merge.column(term.lstrip("-")), term.startswith("-"), None)
                            for term in info.order]
        names = tuple(keys) + tuple(f"_qp{slot}" for slot, _ in merge.emit)
        records = []
        for i, record in enumerate(info.body):
            op = record[0]
            if op in ("order_by", "slice", "distinct") or i in info.having:
                continue
            if op == "annotate":
                kept = tuple((n, node) for n, node in record[1] if n not in info.agg)
                if kept:
                    records.append(("annotate", kept))
                continue
            if i == info.last_values:
                records.append(("values_list", names, False, False))
                continue
            records.append(record)
        records.append(("annotate", tuple((f"_qp{slot}", node) for slot, node in merge.emit)))
        self.sub = self._derive(records)
        self.nkeys = len(keys)
        self.outputs = outputs
        self.describe = (f"per shard: groups by {keys!r} with partial aggregates ("
                         + ", ".join(merge.fns) + "); groups combined by key"
                         + (", HAVING applied after the merge" if self.having else "")
                         + (f", ordered by {list(info.order)!r}" if info.order else "")
                         + (", then the slice" if info.window is not None else ""))

    # --- running -----------------------------------------------------------------------------------

    def run(self) -> Any:
        return getattr(self, "_run_" + self.strategy.replace(" ", "_"))()

    def run_steps(self) -> Steps:
        """``run`` as core steps (``qplan.steps``): the shards' reads in one ``GATHER``,
        then the same merge (every strategy gathers exactly once)."""
        self._results = yield from gather_steps(self.engine, self._jobs())
        return self.run()

    _results: list[Any] | None = None  # the shards' results, when gathered beforehand

    def _jobs(self) -> list[Any]:
        return _reads(self.plan, self.shards, self.sub)

    def _results_of(self, jobs: list[Any]) -> list[Any]:
        results, self._results = self._results, None
        return _gather(self.engine, jobs) if results is None else results

    def _gather(self) -> list[Any]:
        return _present(self._results_of(self._jobs()))

    def _run_add_counts(self) -> int:
        return sum(self._gather())

    def _run_any_exists(self) -> bool:
        return any(self._gather())

    def _run_count_window(self) -> Any:
        n = _window(sum(self._gather()), self.info.window)
        return n if self.info.terminal[0] == "count" else n > 0

    def _run_count_rows(self) -> Any:
        if self.info.group_values:
            n = len(self._groups(window=False))
        else:
            n = sum(1 for _ in self._merged(window=False))
        n = _window(n, self.info.window)
        return n if self.info.terminal[0] == "count" else n > 0

    def _run_partials(self) -> dict[str, Any]:
        merge = self.merge
        parts: list[Any] = [0 if fn in ("count", "trues") else None for fn in merge.fns]
        for result in self._gather():
            values = merge.shard_values([result[f"_qp{slot}"] for slot, _ in merge.emit])
            merge.combine(parts, values, 0)
        return {name: get({}, parts) for name, get in self.getters}

    def _merged(self, window: bool = True, tagged: bool = False) -> Iterator[Any]:
        """The shards' rows as one stream: merged in order, de-duplicated, sliced."""
        jobs = self._jobs()
        results = self._results_of(jobs)
        lists = [(rows, job.alias) for rows, job in zip(results, jobs) if rows is not _MISSING]
        key = self.key
        if tagged:
            streams = [zip(rows, itertools.repeat(alias)) for rows, alias in lists]
            if key is not None:
                merged: Iterator[Any] = heapq.merge(*streams, key=lambda p: key(p[0]),
                                                    reverse=self.reverse)
            else:
                merged = itertools.chain.from_iterable(streams)
            if self.info.distinct:
                merged = _distinct(merged, itemgetter(0))
        else:
            if key is not None:
                merged = heapq.merge(*[rows for rows, _ in lists], key=key, reverse=self.reverse)
            else:
                merged = itertools.chain.from_iterable(rows for rows, _ in lists)
            if self.info.distinct:
                merged = _distinct(merged)
        if window and self.info.window is not None:
            offset, limit = self.info.window
            merged = itertools.islice(merged, offset, None if limit is None else offset + limit)
        return merged

    def _groups(self, window: bool = True) -> list[tuple[tuple, list]]:
        """Every group once: ``(key columns, merged partials)``, HAVING applied, ordered, sliced."""
        merge, nkeys = self.merge, self.nkeys
        groups: dict[Any, tuple[tuple, list]] = {}
        get, values, combine, pre = groups.get, merge.shard_values, merge.combine, merge.pre
        for rows in self._gather():
            for row in rows:
                key_cols = row[:nkeys]
                try:
                    found = get(key_cols)
                except TypeError:  # JSON values
                    key_cols = _hashable(key_cols)
                    found = get(key_cols)
                if found is None:
                    groups[key_cols] = (row[:nkeys], values(row[nkeys:]) if pre else
                                        list(row[nkeys:]))
                elif pre:
                    combine(found[1], values(row[nkeys:]))
                else:
                    combine(found[1], row, nkeys)
        out = list(groups.values())
        if self.having:
            out = [g for g in out if all(test(g[0], g[1]) for test in self.having)]
        if self.order_terms and window:
            _sort(out, [((lambda g, get=get: get(g[0], g[1])), desc, nulls)
                        for get, desc, nulls in self.order_terms])
        if window and self.info.window is not None:
            offset, limit = self.info.window
            out = out[offset:None if limit is None else offset + limit]
        return out

    def _run_groups(self) -> list:
        outputs, nkeys = self.outputs, self.nkeys
        if all(get is None or hasattr(get, "slot") for _, get in outputs):
            # every column is a key column or a merged partial as it is: pick them
            pick = itemgetter(*[i if get is None else nkeys + get.slot for i, get in outputs])
            if len(outputs) == 1:
                rows = [(pick(key + tuple(parts)),) for key, parts in self._groups()]
            else:
                rows = [pick(key + tuple(parts)) for key, parts in self._groups()]
        else:
            rows = [tuple(key[i] if get is None else get(key, parts) for i, get in outputs)
                    for key, parts in self._groups()]
        return self._materialise(rows, None)

    def _run_rows(self) -> list:
        if self.result == "models":
            return self._materialise(None, list(self._merged(tagged=True)))
        return self._materialise(list(self._merged()), None)

    def _run_aggregate_rows(self) -> dict[str, Any]:
        if self.info.group_values:
            groups = self._groups()
            columns = {name: [get(g[0], g[1]) for g in groups] if get is not None else None
                       for name, _, get, _, _, _ in self.aggs}
            n = len(groups)
        else:
            rows = list(self._merged())
            n = len(rows)
            columns = {name: None if key is None else [r[self.index[key]] for r in rows]
                       for name, _, key, _, _, _ in self.aggs}
        out = {name: _aggregate(fn, columns[name], n, kind, field)
               for name, fn, _, kind, field, _ in self.aggs}
        for name, fn, _, _, field, default in self.aggs:  # default= after the merge
            if out[name] is None and default is not None:
                out[name] = field.quantize(default) if field is not None and fn != "avg" else default
        return out

    def _materialise(self, rows: list | None, tagged: list | None) -> list:
        cols = self.columns
        kind = self.result
        if kind == "models" and self.nested is not None:  # select_related
            return [obj for row, alias in tagged or ()
                    for obj in nested_models((row,), cols, self.nested, self.meta.model, alias)]
        if kind == "models":
            model = self.meta.model
            new = model.__new__
            out = []
            for row, alias in tagged or ():
                obj = new(model)
                d = obj.__dict__
                d.update(zip(cols, row))
                d["_db"] = alias
                out.append(obj)
            return out
        assert rows is not None
        n = len(cols)
        if kind == "dicts":
            return [dict(zip(cols, row)) for row in rows]
        if kind == "flat":
            return [row[0] for row in rows]
        if kind == "named":
            row_type = _row_type(cols)
            return [row_type(*row[:n]) for row in rows]
        if rows and len(rows[0]) != n:
            return [row[:n] for row in rows]
        return rows


_row_types: dict[tuple, type] = {}


def _row_type(cols: tuple) -> type:
    row_type = _row_types.get(cols)
    if row_type is None:
        row_type = _row_types[cols] = collections.namedtuple("Row", cols)  # type: ignore[misc]
    return row_type


SPREADS = {"stddev_pop": (statistics.pstdev, 1), "stddev_samp": (statistics.stdev, 2),
           "var_pop": (statistics.pvariance, 1), "var_samp": (statistics.variance, 2)}


def _spread_of(fn: str, values: list) -> float | None:
    """StdDev/Variance of merged values, exactly (``statistics``), correctly rounded."""
    compute, least = SPREADS[fn]
    return float(compute([float(v) for v in values])) if len(values) >= least else None


def _aggregate(fn: str, values: list | None, n: int, kind: str | None, field: Any) -> Any:
    """An aggregate over merged rows, computed as the database would."""
    if values is None:  # Count('*')
        return n
    present = [v for v in values if v is not None]
    if fn == "count":
        return len(present)
    if not present:
        return None
    if fn in SPREADS:
        return _spread_of(fn, present)
    if fn == "min":
        value = min(present)
    elif fn == "max":
        value = max(present)
    else:
        total = sum(present)
        if fn == "avg":
            return float(total) / len(present)
        value = bool(total) if kind == "bool" else total
    if field is not None and isinstance(value, decimal.Decimal):
        value = field.quantize(value)
    return value
