"""A combined plan (``union()``, ``intersection()``, ``difference()``) over several shards.

The SQL set operation cannot run per shard: a row of one operand on shard A may meet
its equal from another operand on shard B. So each operand runs as a sharded read of
its own (``_Read``: merged exactly, or ``NotSupportedError`` before anything runs),
and the set operation is applied to the merged operands in Python with SQL's rules:
rows are equal when every column is (NULL equals NULL), ``union(all=True)`` keeps
every row, the others keep each distinct row once. Then ``values()`` picks columns,
and ordering (NULLs smallest, text by code point), slicing, ``count()`` and
``exists()`` apply to the combined rows, as the database would apply them.
"""

from __future__ import annotations

import collections
from typing import Any

from .. import setops
from ..errors import NotSupportedError
from ..models import get_model
from ..plan import Plan
from .merge import _hashable, _sort
from .reads import _Read
from .router import ShardSet

RESULT = {"values": "dicts"}


class _Info:
    def __init__(self, terminal: tuple | None) -> None:
        self.terminal = terminal


class Combined:
    """One combined plan bound to several shards: every operand checked before anything runs."""

    def __init__(self, engine: Any, plan: Plan, shards: ShardSet) -> None:
        records = plan.records
        terminal = records[-1] if records[-1][0] in ("count", "exists") else None
        body = records[:-1] if terminal else records
        self.info = _Info(terminal)
        (_, self.op, self.all, operands), rest = body[0], body[1:]
        values, self.order, self.window = None, (), None
        for record in rest:
            if record[0] in ("values", "values_list"):
                values = record
            elif record[0] == "order_by":
                self.order = tuple(_merge_term(t) for t in record[1])
            elif record[0] == "slice":
                self.window = (record[1][1] if record[1] else 0,
                               record[2][1] if record[2] else None)
        first_meta = get_model(operands[0][0])._meta
        push = values is not None and setops.columns(first_meta, operands[0][1])[1]
        self.readers: list[Any] = []
        for key, inner in operands:
            inner = inner + ((values,) if push else ())
            operand = Plan(key, inner)
            if inner and inner[0][0] == setops.OP:
                self.readers.append(Combined(engine, operand, shards))
            else:
                self.readers.append(_Read(engine, _as_tuples(operand), shards))
        base, model = setops.columns(first_meta, operands[0][1] + ((values,) if push else ()))
        self.base = [name for name, _ in base]
        self.names = list(values[1]) if values is not None else self.base
        self.pick = [self.base.index(n) for n in self.names]
        if values is not None:
            self.result = RESULT.get(values[0]) or (
                "flat" if values[2] else ("named" if values[3] else "tuples"))
        elif model:
            self.result = "models"
        else:
            last = [r for r in operands[0][1] if r[0] in ("values", "values_list")]
            self.result = _result_of(last[-1]) if last else "tuples"
        self.describe = (f"each of {len(operands)} operands read over the shards and merged, "
                         f"then the {self.op}{' all' if self.all else ''} in Python"
                         + (f", ordered by {list(self.order)!r}" if self.order else "")
                         + (", then the slice" if self.window is not None else ""))

    @property
    def sub(self) -> Plan:
        raise NotSupportedError("compile(): a combined plan over several shards runs one "
                                "scatter-gather read per operand; compile each operand")

    def pairs(self) -> list[tuple[tuple, Any]]:
        """``(columns, row)`` of the combined rows: combined, projected, ordered, sliced."""
        operands = []
        for reader in self.readers:
            if isinstance(reader, Combined):
                operands.append(reader.pairs())
            elif self.result == "models" or reader.result == "models":
                base = self.base
                operands.append([(tuple(obj.__dict__.get(n) for n in base), obj)
                                 for obj in reader.run()])
            else:
                operands.append([(row, row) for row in reader.run()])
        rows = _combine(self.op, self.all, operands)
        if self.pick != list(range(len(self.base))):
            rows = [(tuple(key[i] for i in self.pick),) * 2 for key, _ in rows]
        if self.order:
            index = {name: i for i, name in enumerate(self.names)}
            _sort(rows, [((lambda r, i=index[n]: r[0][i]), desc, nulls)
                         for n, desc, nulls in self.order])
        if self.window is not None:
            offset, limit = self.window
            rows = rows[offset:None if limit is None else offset + limit]
        return rows

    def run(self) -> Any:
        rows = self.pairs()
        terminal = self.info.terminal
        if terminal is not None:
            return len(rows) if terminal[0] == "count" else bool(rows)
        if self.result == "models":
            return [row for _, row in rows]
        names = self.names
        if self.result == "dicts":
            return [dict(zip(names, key)) for key, _ in rows]
        if self.result == "flat":
            return [key[0] for key, _ in rows]
        if self.result == "named":
            row_type = collections.namedtuple("Row", names)  # type: ignore[misc]
            return [row_type(*key) for key, _ in rows]
        return [key for key, _ in rows]


def _combine(op: str, all_: bool, operands: list[list[tuple[tuple, Any]]]) -> list:
    """SQL's set operation over ``(key, row)`` lists, equal keys being equal rows."""
    first, others = operands[0], operands[1:]
    if op == "union" and all_:
        return [pair for rows in operands for pair in rows]
    seen: set = set()
    if op == "union":
        out = []
        for rows in operands:
            for pair in rows:
                key = _hashable(pair[0])
                if key not in seen:
                    seen.add(key)
                    out.append(pair)
        return out
    keys = [{_hashable(k) for k, _ in rows} for rows in others]
    out = []
    for pair in first:
        key = _hashable(pair[0])
        if key in seen:
            continue
        seen.add(key)
        inside = [key in found for found in keys]
        if all(inside) if op == "intersection" else not any(inside):
            out.append(pair)
    return out


def _result_of(record: tuple) -> str:
    if record[0] == "values":
        return "dicts"
    return "flat" if record[2] else ("named" if record[3] else "tuples")


def _as_tuples(plan: Plan) -> Plan:
    """A values() operand reading tuples of the same columns (its last values() as
    ``values_list``); a model operand as it is (its rows are instances)."""
    records = plan.records
    last = max((i for i, r in enumerate(records) if r[0] in ("values", "values_list")),
               default=None)
    if last is None:
        return plan
    names = records[last][1]
    return plan._derive(records[:last] + (("values_list", names, False, False),)
                        + records[last + 1:], None)


def _merge_term(term: Any) -> tuple[str, bool, str | None]:
    """``(column, descending, nulls)`` of an ordering of combined rows merged in Python: a
    column, or ``F(column)`` with a NULL placement; any other expression is refused."""
    if type(term) is str:
        return term.lstrip("-"), term.startswith("-"), None
    if term[1][0] == "F":
        return term[1][1], term[2], term[3]
    raise NotSupportedError("ordering combined rows by an expression is not merged across "
                            "shards; order by a column (F(...).desc(nulls_last=True) merges)")
