"""Merging partial results as the database would: kinds, arithmetic, ``_Merge``, sorting.

Expressions over aggregates are evaluated in Python after the per-shard partials
combine, with the kinds, NULL handling and orderings the compiler and databases use.
"""

from __future__ import annotations

import decimal
import json
import math
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .. import aggregates as A
from .. import records as R
from ..kinds import of_aggregate, of_record
from ..registry import get_model
from ..sqlparts import FIELD_KIND
from ..errors import Error, NotSupportedError
from ..fields import DecimalField

VALUE = R.VALUE
SEP = R.SEP


PY_KINDS = {bool: "bool", int: "int", float: "float", decimal.Decimal: "decimal", str: "text"}


def _field(meta: Any, path: str) -> Any:
    return R.field_for_path(meta, path)


def _kind(meta: Any, annotations: Mapping[str, Any], node: Any) -> str | None:
    """The result kind the compiler gives an expression record (``builder.Builder.expr``)."""
    if node == "*":
        return "int"
    tag = node[0]
    if tag == VALUE:
        return PY_KINDS.get(type(node[1]))
    if tag == "exists" or tag == "!":  # Exists, ~Exists
        return "bool"
    if tag == "subquery":  # the kind of the one column its plan selects
        return _subquery_kind(node[1])
    if tag == "F":
        if node[1] in annotations:
            return _kind(meta, annotations, annotations[node[1]])
        return FIELD_KIND.get(_field(meta, node[1]).internal_type)
    if tag == "agg":
        return of_aggregate(node[1], _kind(meta, annotations, node[2]))
    if tag == "as":
        return FIELD_KIND[node[1]]
    if tag == "fn" or tag == "case":  # qplan.functions
        return of_record(node, lambda path: _kind(meta, annotations, ("F", path)))
    lhs, rhs = _kind(meta, annotations, node[1]), _kind(meta, annotations, node[2])
    kinds = {lhs, rhs}
    for k in ("float", "decimal"):
        if k in kinds:
            return k
    return "int" if kinds <= {"int", "bool"} else lhs


def _subquery_kind(query: tuple) -> str | None:
    meta = get_model(query[1])._meta
    names = [r[1] for r in query[2] if r[0] in ("values", "values_list")]
    annotations = {k: v for r in query[2] if r[0] == "annotate" for k, v in r[1]}
    if not names or len(names[-1]) != 1:
        return None
    name = names[-1][0]
    if name in annotations:
        return _kind(meta, annotations, annotations[name])
    try:
        return FIELD_KIND.get(_field(meta, name).internal_type)
    except Error:
        return None


def _is_agg(node: Any, agg: set[str] | frozenset[str]) -> bool:
    """Whether an expression record is aggregate-valued (directly or through an annotation)."""
    if type(node) is not tuple or not node or node[0] == VALUE or node[0] == "query":
        return False
    if node[0] == "agg":
        return True
    if node[0] == "F":
        return node[1] in agg
    return any(_is_agg(child, agg) for child in node[1:])


def _cond_is_agg(node: tuple, agg: set[str]) -> bool:
    """Whether a condition record goes to HAVING (``builder.Builder.condition``)."""
    tag = node[0]
    if tag == "!":
        return _cond_is_agg(node[1], agg)
    if tag in ("&", "|", "^"):
        return any(_cond_is_agg(child, agg) for child in node[1])
    if tag == "exists":
        return False
    if tag == "if":
        return _is_agg(node[1], agg)
    path, lookup, rhs = node
    if path in agg:
        return True
    return type(rhs) is tuple and rhs[0] != VALUE and _is_agg(rhs, agg)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _arith(op: str, a: Any, b: Any, kind: str | None) -> Any:
    """``a op b`` as SQL computes it: NULL in, NULL out; integer division truncates; x/0 is NULL."""
    if a is None or b is None:
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return None
    if op == "/":
        return _trunc_div(int(a), int(b)) if kind == "int" else float(a) / float(b)
    return int(a) - int(b) * _trunc_div(int(a), int(b))  # %: the sign of the dividend


LIKE = {
    "contains": lambda s, v: v in s, "startswith": lambda s, v: s.startswith(v),
    "endswith": lambda s, v: s.endswith(v),
}
COMPARE = {
    "exact": lambda a, b: a == b, "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
}

Getter = Callable[[Mapping[str, Any], Sequence[Any]], Any]


class _Merge:
    """Aggregates split into per-shard partial aggregates, and put together again after the merge.

    ``partial(fn, arg)`` registers a per-shard aggregate and returns its slot; the
    closures made by ``expr``/``condition`` read merged partials (``parts``) and the
    group's columns (``env``). Slots combine per function: sums and counts add, min
    and max keep the extreme, an ``Avg`` of booleans travels as (avg, count).
    """

    COMBINE: dict[str, Callable[[Any, Any], Any]] = {
        "sum": lambda a, b: b if a is None else (a if b is None else a + b),
        "count": lambda a, b: a + b,
        "min": lambda a, b: b if a is None else (a if b is None else min(a, b)),
        "max": lambda a, b: b if a is None else (a if b is None else max(a, b)),
        "trues": lambda a, b: a + b,
        "avg": lambda a, b: None,  # only read per shard, to make "trues" and "moments"
        "var_pop": lambda a, b: None,  # only read per shard, to make "moments"
        "moments": lambda a, b: _chan(a, b),
    }

    def __init__(self, meta: Any, annotations: Mapping[str, Any], agg: set[str],
                 columns: Mapping[str, int] | None, who: str) -> None:
        self.meta, self.annotations, self.agg, self.who = meta, annotations, agg, who
        self.columns = columns  # env names (group columns); None: no columns (aggregate())
        self.slots: dict[tuple, int] = {}
        self.fns: list[str] = []
        self.emit: list[tuple] = []  # (slot, per-shard aggregate node)
        # derived slots: (slot, derive, source slots), e.g. trues from (avg, count)
        self.pre: list[tuple[int, Callable[..., Any], tuple[int, ...]]] = []
        self._named: dict[str, Getter] = {}

    def partial(self, fn: str, arg: Any, where: Any = None) -> int:
        """The slot of per-shard aggregate ``fn(arg)`` (over the rows ``where`` matches: an
        aggregate's ``filter=``, ``qplan.aggregates``)."""
        key = (fn, arg, where)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = len(self.fns)
            self.fns.append(fn)
            if fn == "trues":  # an Avg of booleans: per shard avg * count, rounded
                a, c = self.partial("avg", arg, where), self.partial("count", arg, where)
                self.pre.append((slot, _trues, (a, c)))
            elif fn == "moments":  # StdDev/Variance: per shard (count, mean, count * var_pop)
                sources = tuple(self.partial(f, arg, where) for f in ("count", "avg", "var_pop"))
                self.pre.append((slot, _moments, sources))
            else:
                self.emit.append((slot, A.with_options(("agg", fn, arg, False), {"filter": where})))
        return slot

    def refuse(self, why: str) -> NotSupportedError:
        return NotSupportedError(f"{self.who}: {why} cannot be merged exactly across shards")

    def annotation(self, name: str) -> Getter:
        getter = self._named.get(name)
        if getter is None:
            getter = self._named[name] = self.expr(self.annotations[name])
        return getter

    def column(self, path: str) -> Getter:
        """A group column by path or name (``author`` finds the ``author_id`` column)."""
        if path in self.agg:
            return self.annotation(path)
        cols = self.columns or {}
        key = path if path in cols else None
        if key is None and SEP not in path and path in self.meta.by_name:
            attname = self.meta.by_name[path].attname
            key = attname if attname in cols else None
        if key is None:
            raise self.refuse(f"{path!r} is neither grouped nor an aggregate; it")
        return lambda env, parts, i=cols[key]: env[i]

    def expr(self, node: Any) -> Getter:
        tag = node[0]
        if tag == VALUE:
            value = node[1]
            return lambda env, parts: value
        if tag == "F":
            return self.column(node[1])
        if tag == "agg":
            return self.aggregate(node)
        if tag == "as":
            raise self.refuse(f"ExpressionWrapper(output_field={node[1]}) over aggregates")
        if tag == "fn" or tag == "case":
            raise self.refuse(f"{'Case' if tag == 'case' else node[1]}() over aggregates")
        op = tag
        lhs, rhs = self.expr(node[1]), self.expr(node[2])
        kind = _kind(self.meta, self.annotations, node)
        if kind == "decimal" and op in ("/", "%"):
            raise self.refuse(f"decimal {op!r} over aggregates")
        return lambda env, parts: _arith(op, lhs(env, parts), rhs(env, parts), kind)

    def aggregate(self, node: tuple) -> Getter:
        get = self._aggregate(node)
        default = A.options_of(node).get("default")
        if default is None:
            return get
        # default= after the merge (a shard without rows must not put it in a sum); an
        # expression default is computed here too, from the group's columns (F), values and
        # arithmetic; a function default is refused (NotSupportedError, before any query)
        field = _decimal_field(self.meta, node[2])
        if field is None or node[1] not in ("sum", "min", "max"):
            field = None
        if default[0] == VALUE:
            value = default[1] if field is None else field.quantize(decimal.Decimal(default[1]))
            return lambda env, parts: (lambda v: value if v is None else v)(get(env, parts))
        fallback = self.expr(default)

        def merged(env: Any, parts: Any) -> Any:
            v = get(env, parts)
            if v is not None:
                return v
            v = fallback(env, parts)
            return v if field is None or v is None else field.quantize(decimal.Decimal(v))
        return merged

    def _aggregate(self, node: tuple) -> Getter:
        fn, arg, distinct = node[1], node[2], node[3]
        where = A.options_of(node).get("filter")
        if distinct:
            raise self.refuse(f"{fn.capitalize()}(..., distinct=True)")
        kind = _kind(self.meta, self.annotations, arg)
        if fn == "avg":
            count = self.partial("count", arg, where)
            total = self.partial("trues" if kind == "bool" else "sum", arg, where)
            return lambda env, parts: (None if not parts[count] or parts[total] is None
                                       else float(parts[total]) / parts[count])
        if fn in A.SPREADS:
            slot = self.partial("moments", arg, where)
            return lambda env, parts: _spread(fn, parts[slot])
        slot = self.partial(fn, arg, where)
        if fn == "sum" and kind == "bool":  # the count of true values, a number
            return lambda env, parts: None if parts[slot] is None else int(parts[slot])
        field = _decimal_field(self.meta, arg)
        if field is not None and fn != "count":
            return lambda env, parts: None if parts[slot] is None else field.quantize(parts[slot])
        get = lambda env, parts: parts[slot]  # noqa: E731
        get.slot = slot  # type: ignore[attr-defined]  # a plain read: _run_groups picks it
        return get

    def condition(self, node: tuple) -> Callable[[Mapping[str, Any], Sequence[Any]], bool]:
        """A condition as a Python test (NULL comparisons are false: see ``_leaf``)."""
        tag = node[0]
        if tag == "!":
            inner = self.condition(node[1])
            return lambda env, parts: not inner(env, parts)
        if tag in ("&", "|", "^"):
            tests = [self.condition(child) for child in node[1]]
            if tag == "&":
                return lambda env, parts: all(t(env, parts) for t in tests)
            if tag == "^":
                return lambda env, parts: sum(bool(t(env, parts)) for t in tests) % 2 == 1
            return lambda env, parts: any(t(env, parts) for t in tests)
        if tag == "if":
            raise NotSupportedError("a boolean expression over aggregates in filter() is not "
                                    "merged across shards; filter on its annotation instead")
        return self._leaf(node)

    def _leaf(self, node: tuple) -> Callable[[Mapping[str, Any], Sequence[Any]], bool]:
        # SQL's three-valued logic collapses to two values here: the compiler makes every
        # leaf under an odd number of NOTs false on NULL, and under an even number an
        # UNKNOWN leaf and a FALSE one give the same final answer (Kleene logic is monotone).
        path, lookup, rhs = node
        lhs = self.column(path)
        if lookup == "isnull":
            return lambda env, parts: (lhs(env, parts) is None) == rhs
        if lookup == "exact" and isinstance(rhs, bool):
            return lambda env, parts: (lambda v: v is not None and bool(v) == rhs)(lhs(env, parts))
        if lookup == "in":
            values = rhs[1]
            return lambda env, parts: (lambda v: v is not None and v in values)(lhs(env, parts))
        if lookup == "range":
            low, high = rhs[1]
            return lambda env, parts: (lambda v: v is not None and low <= v <= high)(lhs(env, parts))
        insensitive = lookup.startswith("i")
        base = lookup[1:] if insensitive else lookup
        if base in LIKE:
            test, needle = LIKE[base], rhs[1]
            if insensitive:
                needle = needle.lower()
            return lambda env, parts: (lambda v: v is not None and test(
                v.lower() if insensitive else v, needle))(lhs(env, parts))
        other = self.expr(rhs)
        compare = COMPARE[base]

        def leaf(env: Mapping[str, Any], parts: Sequence[Any]) -> bool:
            a, b = lhs(env, parts), other(env, parts)
            if a is None or b is None:
                return False
            if insensitive:
                a, b = a.lower(), b.lower()
            return compare(a, b)

        return leaf

    def combine(self, acc: list[Any], parts: Sequence[Any], offset: int = 0) -> None:
        combiners = self._combiners
        if combiners is None:
            combiners = self._combiners = list(enumerate(self.COMBINE[fn] for fn in self.fns))
        for slot, combine in combiners:
            acc[slot] = combine(acc[slot], parts[slot + offset])

    _combiners: list | None = None

    def shard_values(self, values: Sequence[Any]) -> list[Any]:
        """One shard's partials (in emit order) as a slot list, with derived slots filled in."""
        if not self.pre:  # slots are emitted in order unless an Avg of booleans derives one
            return list(values)
        parts: list[Any] = [None] * len(self.fns)
        for (slot, _), value in zip(self.emit, values):
            parts[slot] = value
        for slot, derive, sources in self.pre:
            parts[slot] = derive(*[parts[s] for s in sources])
        return parts


def _trues(avg: Any, count: int) -> int:
    """How many true values an Avg of booleans averaged over ``count`` values."""
    return 0 if avg is None else round(avg * count)


def _moments(count: int, mean: Any, var_pop: Any) -> tuple | None:
    """One shard's (count, mean, sum of squared deviations) of a StdDev/Variance argument."""
    return None if not count else (count, float(mean), float(var_pop) * count)


def _chan(a: tuple | None, b: tuple | None) -> tuple | None:
    """Two shards' moments as one (Chan, Golub and LeVeque's pairwise combination): the
    mean and squared deviations of the union, as stable as the databases' own."""
    if a is None or b is None:
        return a if b is None else b
    (na, ma, sa), (nb, mb, sb) = a, b
    n = na + nb
    delta = mb - ma
    return (n, ma + delta * nb / n, sa + sb + delta * delta * na * nb / n)


def _spread(fn: str, moments: tuple | None) -> float | None:
    """StdDev/Variance (``fn``: its record name) from merged moments; NULL as SQL gives it."""
    if moments is None:
        return None
    n, _, squares = moments
    sample = fn.endswith("samp")
    if sample and n < 2:
        return None
    variance = max(squares, 0.0) / (n - 1 if sample else n)
    return math.sqrt(variance) if fn.startswith("stddev") else variance


def _decimal_field(meta: Any, arg: Any) -> Any:
    if type(arg) is tuple and arg[0] == "F":
        try:
            field = _field(meta, arg[1])
        except Error:
            return None
        return field if isinstance(field, DecimalField) else None
    return None


# --- sorting like the databases do ----------------------------------------------------------------


class _Desc:
    """Reverses the order of a key part (descending terms in a mixed-direction ordering)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: "_Desc") -> bool:
        return other.v < self.v

    def __eq__(self, other: Any) -> bool:
        return self.v == other.v


def _null_first(v: Any) -> tuple:
    """NULL sorts as the smallest value (first ascending, last descending)."""
    return (False,) if v is None else (True, v)


def _term_key(i: int, desc: bool, nullable: bool, numeric: bool) -> Callable[[Any], Any]:
    """The sort key of one term of a mixed-direction ordering (see ``_sort_key``)."""
    if desc and numeric:
        return (lambda r: (True,) if r[i] is None else (False, -r[i])) if nullable else \
            (lambda r: -r[i])
    if desc:
        return lambda r: _Desc((False,) if r[i] is None else (True, r[i]))
    return (lambda r: (False,) if r[i] is None else (True, r[i])) if nullable else itemgetter(i)


def _placed_key(i: int, desc: bool, numeric: bool, nulls: str) -> Callable[[Any], Any]:
    """The sort key of a term with explicit NULL placement (``nulls``: "first"/"last"),
    its direction built in (sorted ascending)."""
    rank = 0 if nulls == "first" else 2
    if desc and numeric:
        return lambda r: (rank,) if r[i] is None else (1, -r[i])
    if desc:
        return lambda r: (rank,) if r[i] is None else (1, _Desc(r[i]))
    return lambda r: (rank,) if r[i] is None else (1, r[i])


def _sort_key(terms: list[tuple]) -> tuple[Callable[[Any], Any], bool]:
    """``(key, reverse)`` for rows ordered by ``(index, descending, nullable, numeric)`` terms.

    One direction: the plain values (NULLs wrapped to sort first) and ``reverse`` for
    descending. Mixed directions: descending numbers are negated, other descending
    values wrapped in ``_Desc``; one closure per term, combined without a loop for up
    to three terms.
    """
    directions = {t[1] for t in terms}
    placed = any(len(t) > 4 and t[4] is not None for t in terms)  # nulls_first/nulls_last
    if len(directions) == 1 and not any(t[2] for t in terms) and not placed:
        return itemgetter(*[t[0] for t in terms]), terms[0][1]
    flip = len(directions) > 1 or placed
    keys = [_placed_key(t[0], t[1], t[3], t[4]) if len(t) > 4 and t[4] is not None
            else _term_key(t[0], t[1] and flip, t[2], t[3]) for t in terms]
    if len(keys) == 1:
        key = keys[0]
    elif len(keys) == 2:
        k0, k1 = keys
        key = lambda r: (k0(r), k1(r))  # noqa: E731
    elif len(keys) == 3:
        k0, k1, k2 = keys
        key = lambda r: (k0(r), k1(r), k2(r))  # noqa: E731
    else:
        key = lambda r: tuple([k(r) for k in keys])  # noqa: E731
    return key, False if flip else terms[0][1]


def _sort(rows: list, terms: list[tuple[Any, bool, Any]]) -> None:
    """Sort in place by ``(getter, descending, nulls)`` terms (stable, last term first): NULLs
    smallest, or first/last where ``nulls`` says so (``qplan.ordering``)."""
    for get, desc, nulls in reversed(terms):
        if nulls is None:
            rows.sort(key=lambda r: _null_first(get(r)), reverse=desc)
        else:
            low = (nulls == "first") != desc  # NULL sorts low in the sort's own direction
            rows.sort(key=lambda r, low=low: (lambda v: ((0,) if low else (2,)) if v is None
                                              else (1, v))(get(r)), reverse=desc)


def _hashable(row: tuple) -> Any:
    try:
        hash(row)
        return row
    except TypeError:  # JSON values decode to dicts and lists
        return tuple(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
                     for v in row)


def _distinct(rows: Iterable[Any], key: Callable[[Any], tuple] = lambda r: r) -> Iterator[Any]:
    seen: set = set()
    add = seen.add
    for row in rows:
        k = _hashable(key(row))
        if k not in seen:
            add(k)
            yield row


def _window(n: int, window: tuple[int, int | None] | None) -> int:
    """How many of ``n`` rows a slice ``(offset, limit)`` keeps."""
    if window is None:
        return n
    offset, limit = window
    end = n if limit is None else min(n, offset + limit)
    return max(end - offset, 0)
