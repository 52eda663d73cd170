"""The kind of value an expression stands for, worked out when the plan is built.

A kind is one of ``int float decimal text bool date datetime time bytes json`` (None: a
NULL value, which combines with any number). Fields give theirs by ``internal_type``,
plain values by their Python type, aggregates by what they compute (``Count`` an int,
``Avg``, ``StdDev`` and ``Variance`` a float, ``Sum`` of booleans the int count of the true ones, ``Min``/``Max``
their argument's kind) and arithmetic by its operands, as Django 5.2 infers an
expression's ``output_field``: numbers combine (float wins, then decimal, else int);
anything else needs an ``output_field`` to say what the result is.
"""

from __future__ import annotations

import datetime as _dt
import decimal
from typing import Any, Callable

from . import funckinds

FIELD_KIND = {
    "AutoField": "int", "IntegerField": "int", "BigIntegerField": "int", "FloatField": "float",
    "DecimalField": "decimal", "CharField": "text", "TextField": "text", "BooleanField": "bool",
    "DateField": "date", "DateTimeField": "datetime", "TimeField": "time", "BinaryField": "bytes",
    "JSONField": "json",
}

# A kind's field, for messages ("a DateField plus an IntegerField").
KIND_FIELD = {"int": "IntegerField", "float": "FloatField", "decimal": "DecimalField",
              "text": "CharField", "bool": "BooleanField", "date": "DateField",
              "datetime": "DateTimeField", "time": "TimeField", "bytes": "BinaryField",
              "json": "JSONField"}

PY_KIND = {int: "int", float: "float", decimal.Decimal: "decimal", str: "text", bool: "bool",
           bytes: "bytes", _dt.date: "date", _dt.datetime: "datetime", _dt.time: "time"}

NUMERIC = frozenset({"int", "float", "decimal"})

# What each aggregate function computes from its argument's kind.
AGGREGATE_KIND: dict[str, Callable[[str | None], str | None]] = {
    "count": lambda arg: "int",
    "avg": lambda arg: "float",
    "sum": lambda arg: "int" if arg == "bool" else arg,
    "min": lambda arg: arg,
    "max": lambda arg: arg,
    **dict.fromkeys(("stddev_pop", "stddev_samp", "var_pop", "var_samp"), lambda arg: "float"),
}

# The kind of ``a op b`` for numbers: the first of these present wins.
NUMERIC_PRECEDENCE = ("float", "decimal", "int")


def of_value(value: Any) -> str | None:
    """The kind of a plain value (None for NULL and for a tuple of values)."""
    return PY_KIND.get(type(value))


def of_aggregate(function: str, arg: str | None) -> str | None:
    return AGGREGATE_KIND[function](arg)


def combined(op: str, lhs: str | None, rhs: str | None) -> str | None:
    """The kind of ``lhs op rhs``; ``ValueError`` when it is not arithmetic on numbers."""
    kinds = {lhs, rhs} - {None}
    if not kinds <= NUMERIC:
        raise ValueError(
            f"cannot infer the type of {op!r} between "
            + " and ".join(KIND_FIELD.get(k or "", "NULL") for k in (lhs, rhs))
            + ": give it an output_field (ExpressionWrapper(..., output_field=...))")
    return next((k for k in NUMERIC_PRECEDENCE if k in kinds), None)


def of_record(node: Any, field_kind: Callable[[str], str | None]) -> str | None:
    """The kind of an expression record; ``field_kind(path)`` gives a field's or annotation's."""
    if node == "*":
        return "int"
    tag = node[0]
    if tag == "=":
        return of_value(node[1])
    if tag == "F":
        return field_kind(node[1])
    if tag == "agg":
        return of_aggregate(node[1], of_record(node[2], field_kind))
    if tag == "as":
        return FIELD_KIND[node[1]]
    if tag in ("fn", "case"):  # qplan.functions
        return funckinds.of_record(node, lambda n: of_record(n, field_kind), FIELD_KIND)
    if tag == "exists" or tag == "!":  # Exists, ~Exists
        return "bool"
    if tag == "subquery" or tag == "outer":  # known when compiled: any, as NULL is
        return None
    return combined(tag, of_record(node[1], field_kind), of_record(node[2], field_kind))
