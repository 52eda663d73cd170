"""Records as the calls that made them: ``Plan.__repr__`` and ``qplan inspect``."""

from __future__ import annotations

from typing import Any

from .records import VALUE

SPREAD_NAMES = {"stddev_pop": "StdDev", "stddev_samp": "StdDev", "var_pop": "Variance",
                "var_samp": "Variance"}


def _term(term: Any) -> str:
    """An order_by() term: a name, or an expression term (``qplan.ordering``)."""
    if type(term) is not tuple:
        return repr(term)
    nulls = f"nulls_{term[3]}=True" if term[3] else ""
    return f"{_value(term[1])}.{'desc' if term[2] else 'asc'}({nulls})"


def _value(node: Any) -> str:
    """An expression record as the user would write it."""
    if type(node) is not tuple:
        return repr(node)
    tag = node[0]
    if tag == VALUE:
        return repr(list(node[1]) if type(node[1]) is tuple else node[1])
    if tag == "F":
        return f"F({node[1]!r})"
    if tag == "agg":
        arg = "'*'" if node[2] == "*" else _value(node[2]).replace("F(", "", 1)[:-1]
        flag = ", distinct=True" if node[3] else ""
        name = SPREAD_NAMES.get(node[1]) or node[1].capitalize()
        flag += ", sample=True" if node[1] in ("stddev_samp", "var_samp") else ""
        for option, value in (node[4] if len(node) > 4 else ()):  # qplan.aggregates
            flag += f", filter={_condition(value)}" if option == "filter" else \
                f", {option}={_value(value)}"
        return f"{name}({arg}{flag})"
    if tag == "query":
        return node[1].rsplit(".", 1)[-1] + ".objects" + "".join(describe(r) for r in node[2])
    if tag in ("subquery", "exists") and len(node) == 2:
        return f"{tag.capitalize()}({_value(node[1])})"
    if tag == "outer":
        return f"OuterRef({_value(node[1]) if type(node[1]) is tuple else repr(node[1])})"
    if tag == "!" and len(node) == 2:
        return f"~{_value(node[1])}"
    if tag == "as":
        return f"ExpressionWrapper({_value(node[2])}, output_field={node[1]})"
    if tag == "fn":  # qplan.functions
        return f"{node[1]}(" + ", ".join([*map(_value, node[3:]), *map(repr, node[2])]) + ")"
    if tag == "case":
        whens = [f"When({_condition(c)}, then={_value(t)})" for c, t in node[1]]
        return f"Case({', '.join(whens)}, default={_value(node[2])})"
    return f"({_value(node[1])} {tag} {_value(node[2])})"


def _condition(node: tuple, top: bool = False) -> str:
    tag = node[0]
    if tag == "!":
        return f"~{_condition(node[1])}"
    if tag == "exists":
        return _value(node)
    if tag == "if":  # a boolean expression
        return _value(node[1])
    if tag in ("&", "|", "^"):
        if top and tag == "&" and all(c[0] not in ("&", "|", "!") for c in node[1]):
            return ", ".join(_condition(c, True) for c in node[1])
        return "(" + f" {tag} ".join(_condition(c) for c in node[1]) + ")"
    path, lookup, rhs = node
    text = f"{path}__{lookup}={_value(rhs)}" if lookup != "exact" else f"{path}={_value(rhs)}"
    return text if top else f"Q({text})"


def _prefetch_item(item: Any) -> str:
    if type(item) is str:
        return repr(item)
    _, lookup, to_attr, query = item
    extra = "" if query is None else f", queryset={_value(query)}"
    extra += "" if to_attr is None else f", to_attr={to_attr!r}"
    return f"Prefetch({lookup!r}{extra})"


def describe(record: tuple) -> str:
    """One record as the call that made it."""
    op = record[0]
    if op == "slice":
        start = record[1][1] if record[1] else 0
        stop = "" if record[2] is None else start + record[2][1]
        return f"[{start}:{stop}]"
    if op == "slice_per":  # qplan.perslice
        start = record[2][1] if record[2] else 0
        stop = None if record[3] is None else record[3][1]
        return f"._slice_per({record[1]!r}, {start}, {stop})"
    if op in ("filter", "exclude"):
        return f".{op}({_condition(record[1], True)})"
    if op in ("annotate", "aggregate", "alias"):
        return f".{op}(" + ", ".join(f"{k}={_value(v)}" for k, v in record[1]) + ")"
    if op == "update":
        return ".update(" + ", ".join(f"{k}={_value(v)}" for k, v in record[1]) + ")"
    if op == "insert":
        extra = f", {record[3][0]}_conflicts" if len(record) == 4 else ""
        return f".insert({len(record[2])} rows{extra})"
    if op == "values_list":
        flags = ", flat=True" if record[2] else (", named=True" if record[3] else "")
        return ".values_list(" + ", ".join(map(repr, record[1])) + flags + ")"
    if op == "prefetch_related":
        return ".prefetch_related(" + ", ".join(map(_prefetch_item, record[1:])) + ")"
    if op == "select_related":
        return ".select_related(" + ", ".join(map(repr, record[1:])) + ")"
    if op == "order_by":
        return f".{op}(" + ", ".join(map(_term, record[1])) + ")"
    if op in ("values", "only") or (op == "defer" and record[1] is not None):
        return f".{op}(" + ", ".join(map(repr, record[1])) + ")"
    if op == "defer":
        return ".defer(None)"
    if op == "select_for_update":
        flags = [f"{k}=True" for k, v in zip(("nowait", "skip_locked"), record[1:3]) if v]
        flags += [f"of={record[3]!r}"] if record[3] else []
        flags += ["no_key=True"] if record[4] else []
        return ".select_for_update(" + ", ".join(flags) + ")"
    if op == "combine":  # union() & co (qplan.setops): the first operand, then the others
        (key, first), *others = record[3]
        plans = [k.rpartition(".")[2] + ".objects" + "".join(map(describe, r)) for k, r in others]
        return "".join(map(describe, first)) + f".{record[1]}(" + ", ".join(plans) + (
            ", all=True" if record[2] else "") + ")"
    return f".{op}()"
