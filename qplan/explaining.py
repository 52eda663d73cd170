"""``plan.explain()``: the database's own plan for a query, and the lock rule of
``select_for_update()`` (rows are locked inside ``atomic()`` only, as in Django).

``explain`` routes the plan as it would run (a ``select_for_update()`` plan to the write
alias), compiles it through the shape cache, and runs ``EXPLAIN`` in front of that SQL
with the same parameters: ``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN (FORMAT ..., option
true)`` on PostgreSQL, ``EXPLAIN FORMAT=...`` / ``ANALYZE`` on MariaDB, ``EXPLAIN
[ANALYZE]`` on DuckDB. Formats and options are Django's per backend, checked against a
table (never written into the SQL from user text): anything else is a ``PlanError``
(a ``ValueError``, as Django raises). A plan spanning shards gives each shard's text.
"""

from __future__ import annotations

import json
from typing import Any

from . import methods, sharding
from .connections import Connection, connections
from .errors import PlanError, TransactionManagementError
from .plan import LOCKS
from .routing import resolve
from .sharding import ShardSet

def check_lock(conn: Connection) -> None:
    """Django's rule: ``select_for_update()`` runs inside a transaction only."""
    if not conn.in_atomic:
        raise TransactionManagementError(
            "select_for_update cannot be used outside of a transaction: wrap it in "
            f"qplan.atomic({conn.alias!r})")


def prefix(backend: Any, format: str | None, options: dict[str, Any]) -> str:
    """The ``EXPLAIN`` words for ``backend``, from the checked format and options only
    (the backend's ``EXPLAIN_FORMATS``, ``EXPLAIN_OPTIONS`` and ``explain_prefix``)."""
    formats, known = backend.EXPLAIN_FORMATS, backend.EXPLAIN_OPTIONS
    fmt = None
    if format is not None:
        if not isinstance(format, str) or format.upper() not in formats:
            allowed = ", ".join(sorted(formats)) or "none on this backend"
            raise PlanError(f"{format!r:.40} is not a recognized format. Allowed formats: "
                            f"{allowed}.")
        fmt = format.upper()
    unknown = sorted(k for k in options if k.upper() not in known)
    if unknown:
        raise PlanError(f"Unknown options: {', '.join(unknown)}.")
    for key, value in options.items():
        if not isinstance(value, bool):
            raise PlanError(f"explain({key}=...) takes True or False, got {value!r:.40}")
    flags = {k.upper(): v for k, v in options.items()}
    return backend.explain_prefix(fmt, flags)


def _text(rows: list) -> str:
    lines = []
    for row in rows:
        cells = [c if isinstance(c, str) else json.dumps(c) if isinstance(c, (dict, list))
                 else str(c) for c in row]
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _one(engine: Any, plan: Any, conn: Connection, format: str | None,
         options: dict[str, Any]) -> str:
    template, values = engine.template(plan, conn.backend)
    words = prefix(conn.backend, format, options)
    params = template.params(values) if template.binds else ()
    return _text(conn.fetchall(words + template.sql, params))


def explain(engine: Any, plan: Any, format: str | None, options: dict[str, Any]) -> str:
    """The plan text of the database ``plan`` runs on; per shard for a sharded plan."""
    kind = "write" if plan._ops & LOCKS or plan.kind == "write" else "read"
    target = resolve(plan, kind)[0]
    if type(target) is not ShardSet:
        return _one(engine, plan, connections[target], format, options)
    methods.check_sharded(plan)
    sub = plan if kind == "write" else sharding._Read(engine, plan, target).sub  # what each runs
    texts = []
    for shard in target:
        alias = shard.write_alias(plan) if kind == "write" else shard.read_alias(plan)
        texts.append(f"-- shard {shard.name} ({alias})\n"
                     + _one(engine, sub, connections[alias], format, options))
    return "\n".join(texts)
