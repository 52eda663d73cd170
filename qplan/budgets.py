"""What a payload may cost, counted on the plan as if every shared part were copied out.

``check_tree`` measures each distinct tuple once (memoised by identity), so refusing an
over-budget payload costs O(distinct objects), never O(expanded).
"""

from __future__ import annotations

import datetime as _dt
import decimal
from typing import Any, NamedTuple

from . import records as R
from .errors import UnsafePayload
from .unpickling import PLAIN

# Bounds on what a payload may hold, counted on the EXPANDED plan: a pickle can share one
# tuple many times (a DAG), so a few bytes could otherwise stand for a tree of 2**60 nodes
# or an `in` list of millions of values. ``check_tree`` measures each distinct tuple once
# (memoised by identity), so refusing costs O(distinct objects), never O(expanded).
#
# Values: no backend binds more than 65,535 parameters in one statement (PostgreSQL's
# and MySQL's protocol limit; SQLite's is 32,766), so a plan with more values can never
# run. Every value counts each time it is referenced, `in` lists item by item.
MAX_VALUES = 65_535
# The text and bytes of those values, expanded: MySQL's default max_allowed_packet (64 MiB)
# is the largest statement every backend takes with default settings.
MAX_VALUE_BYTES = 64 * 1024 * 1024
# Commands, conditions, expressions and insert rows (tuples outside value nodes): what
# compiling costs grows with these, about 0.1 ms each, not with the values; 5,000 keeps
# loading any payload (compiled once per shape) well under a second.
MAX_STRUCTURE = 5_000
# Every element of every tuple: each value costs at most 4 (its value node, its row) and
# each structure tuple a few names, so a runnable plan stays far below this.
MAX_NODES = 4 * MAX_VALUES + 20 * MAX_STRUCTURE
MAX_DEPTH = 200



class Size(NamedTuple):
    """What a (sub)tree of records costs once expanded; see the budgets at the top."""

    height: int
    nodes: int
    structure: int
    values: int
    value_bytes: int


def check_tree(records: tuple) -> Size:
    """Tuples of plain values only, within every budget (``MAX_VALUES``, ``MAX_NODES``...).

    The budgets count the plan as expanded (a tuple shared many times counts each
    time), but each distinct tuple is measured once: the cost is O(distinct objects).
    """
    return Size(*_measure(records, False, 0, {}))


_SIMPLE = PLAIN - {_dt.datetime, _dt.time, decimal.Decimal}
_TIMED = (_dt.datetime, _dt.time)
_SIZED = (str, bytes)


def _measure(node: tuple, in_value: bool, depth: int, memo: dict) -> tuple[int, int, int, int, int]:
    """``Size`` of ``node`` as a plain tuple, from ``memo`` (keyed by identity) when known."""
    key = (id(node), in_value)
    size = memo.get(key)
    if size is None:
        if depth >= MAX_DEPTH:
            raise UnsafePayload(f"payload's plan is nested more than {MAX_DEPTH} deep")
        size = memo[key] = _size(node, in_value, depth, memo)
    elif depth + size[0] > MAX_DEPTH:
        raise UnsafePayload(f"payload's plan is nested more than {MAX_DEPTH} deep")
    return size


def _size(node: tuple, in_value: bool, depth: int, memo: dict) -> tuple[int, int, int, int, int]:
    # a value node ("=", v): v counts as one value; in a value, every scalar does
    value_node = not in_value and len(node) == 2 and node[0] == R.VALUE
    inner = in_value or value_node
    height, nodes, values, value_bytes = 1, len(node) + 1, 0, 0
    structure = 0 if inner else 1
    depth += 1
    for child in node:
        kind = type(child)
        if kind is tuple:
            sub = _measure(child, inner, depth, memo)
            if sub[0] >= height:
                height = sub[0] + 1
            nodes += sub[1]
            structure += sub[2]
            values += sub[3]
            value_bytes += sub[4]
            continue
        if kind not in _SIMPLE:
            _check_scalar(child, kind)
        if in_value:
            values += 1
            if kind in _SIZED:
                value_bytes += len(child)
    if value_node and type(node[1]) is not tuple:
        values += 1
        if type(node[1]) in _SIZED:
            value_bytes += len(node[1])
    for count, limit, what in ((nodes, MAX_NODES, "holds more than {} values and names"),
                               (structure, MAX_STRUCTURE, "has more than {} commands, "
                                                          "conditions and expressions"),
                               (values, MAX_VALUES, "binds more than {} values"),
                               (value_bytes, MAX_VALUE_BYTES, "binds more than {} bytes of "
                                                              "text and bytes values")):
        if count > limit:
            raise UnsafePayload(f"payload's plan {what.format(limit)}, counting each shared "
                                f"part every time it is used")
    return height, nodes, structure, values, value_bytes


def _check_scalar(child: Any, kind: type) -> None:
    if kind is decimal.Decimal:
        if child.is_snan():  # cannot be hashed or compared: plans never hold one
            raise UnsafePayload("payload's plan holds a signaling NaN")
    elif kind in _TIMED:
        tz = child.tzinfo
        if tz is not None and type(tz) is not _dt.timezone:
            raise UnsafePayload(f"payload holds a time zone of type {type(tz).__name__}")
    else:
        raise UnsafePayload(f"payload's plan holds a {kind.__name__}, which plans never hold")
