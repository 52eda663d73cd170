"""The SQL side of ``qplan.methods``' records: what the builder does with ``alias``,
``none``, ``only``/``defer`` and ``select_for_update``, and the ``FOR UPDATE`` clause.

``apply`` folds one record into the builder's state; ``fields`` is what a model at a
relation path selects under ``only``/``defer`` (the plan's own rows are then made of
the model's deferred class, ``qplan.deferred``, kept as ``deferred_model``); ``lock``
adds the locking clause to a compiled statement, or refuses what a backend cannot do, as
Django's ``has_select_for_update*`` features do.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from . import deferred, selectrelated
from . import methods as M
from .errors import FieldError, NotSupportedError
from .sqlparts import ident

OPS = frozenset(M.RECORDS)

def apply(b: Any, record: tuple) -> None:
    """Fold one ``qplan.methods`` record into builder ``b``."""
    op = record[0]
    if op == "alias":
        for name, node in record[1]:
            ref = b.expr(node)
            if b.values is not None:
                b.group_values = b.group_values or ref.aggregate
            b.annotations[name] = ref
            b.hidden.add(name)
    elif op == "none":
        b.where.append(exp.EQ(this=exp.Literal.number(1), expression=exp.Literal.number(0)))
    elif op in ("only", "defer"):
        b.loading_records += (record,)
    elif op == "select_for_update":
        b.lock = record


def fields(b: Any, meta: Any, path: str = "") -> tuple:
    """The fields of ``meta``'s model selected at relation ``path`` ("" for the plan's)."""
    if not b.loading_records:
        return meta.fields
    state = M.loading(b.loading_records)
    if state is None:
        return meta.fields
    if not path:
        _check_related(b, state)
    chosen = M.loaded_fields(meta, state, path)
    if not path:
        b.deferred_model = deferred.model_for(meta, chosen)
    return chosen


def instance_class(meta: Any, loaded: tuple) -> type:
    """The class of instances loading only ``loaded`` (``qplan.deferred``)."""
    return deferred.model_for(meta, loaded)


def _check_related(b: Any, state: tuple) -> None:
    """Django's rules: a field across a relation is deferred only where the relation is
    selected with ``select_related()``, and a selected relation's own key is never deferred."""
    followed = set(selectrelated.chains(b.meta, b.select_related)) if b.select_related else set()
    who = b.meta.model.__name__
    for path in M.related_names(state):
        if path not in followed:
            raise FieldError(f"{who}: only()/defer() of fields across {path!r} needs "
                             f"select_related({path!r})")
    for path in followed:
        parent, _, name = path.rpartition("__")
        holder = b.meta if not parent else selectrelated.chains(b.meta, b.select_related)[parent].target
        loaded = {f.name for f in M.loaded_fields(holder, state, parent)}
        if name in holder.by_name and name not in loaded:
            raise FieldError(f"Field {holder.model.__name__}.{name} cannot be both deferred and "
                             f"traversed using select_related at the same time.")


def lock(b: Any, op: str, tree: exp.Expression) -> exp.Expression:
    """``tree`` with ``FOR [NO KEY] UPDATE [OF ...] [NOWAIT | SKIP LOCKED]``, or
    ``NotSupportedError`` naming what the backend or the statement cannot lock."""
    _, nowait, skip_locked, of, no_key = b.lock
    backend = b.backend
    if not backend.SELECT_FOR_UPDATE:
        raise NotSupportedError(f"select_for_update() is not supported on {backend.dialect} "
                                f"(it has no row locks)")
    for wanted, what in ((nowait, "nowait"), (skip_locked, "skip_locked"), (bool(of), "of"),
                         (no_key, "no_key")):
        if wanted and what not in backend.SELECT_FOR_UPDATE_OPTIONS:
            raise NotSupportedError(f"select_for_update({what}=...) is not supported on this "
                                    f"database backend ({backend.dialect})")
    if op not in ("select", "exists"):
        raise NotSupportedError(f"select_for_update() cannot lock the rows of {op}(): "
                                f"PostgreSQL refuses FOR UPDATE with aggregate functions")
    if b.distinct or b.grouped():
        raise NotSupportedError("select_for_update() cannot be used with distinct() or "
                                "aggregate annotations (PostgreSQL refuses FOR UPDATE there)")
    tables = [exp.Table(this=ident(_of_alias(b, name))) for name in of]
    if (not backend.LOCKS_OUTER_JOINS and b.join_sql
            and any(name != "self" for name in of or ("",))):
        raise NotSupportedError(
            f"select_for_update() on {backend.dialect} cannot lock the rows of related tables, "
            "which qplan joins with LEFT JOIN (\"FOR UPDATE cannot be applied to the nullable "
            "side of an outer join\"): lock the plan's own rows with of=('self',)")
    clause = exp.Lock(update=True, key=no_key or None, expressions=tables or None,
                      wait=(False if skip_locked else True) if (nowait or skip_locked) else None)
    select = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
    select.set("locks", [clause])
    return tree


def _of_alias(b: Any, name: str) -> str:
    """The table alias ``of=`` locks: the plan's table for ``self``, else the join of a
    relation path ``select_related()`` follows (Django: "followed in the query")."""
    if name == "self":
        return b.table
    followed = set(selectrelated.chains(b.meta, b.select_related)) if b.select_related else set()
    if name not in followed or name not in b.joins:
        raise FieldError(f"Invalid field name(s) given in select_for_update(of=(...)): "
                         f"{name!r}. Only relational fields followed in the query are allowed.")
    return b.joins[name][0]
