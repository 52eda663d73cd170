"""The I/O requests evaluation is written as, and the synchronous edge that performs them.

Evaluation (``qplan.execution``, ``qplan.replication``) is written once, as generators that
*yield* what they need from a database and receive the answer: "the connection of this
alias", "fetch the rows of this SQL", "run this statement", "sleep". Routing, compiling,
decoding, failover and read-your-writes bookkeeping live in those generators; only the
edge that answers the requests differs. :func:`drive` answers them here, with the
blocking ``qplan.connections``; ``qplan.aio`` answers the same requests with awaits on
async drivers. A failed request is thrown into the generator at the ``yield``, so the
core handles driver errors (``ConnectionFailure`` -> failover) the same way on both edges.

A request is a plain tuple, first item the operation:

- ``(CONN, alias)`` -> the alias's connection object (``.alias``, ``.backend``,
  ``.in_atomic``, ``.settings``), the same object the other requests then name;
- ``(FETCH, conn, sql, params)`` -> the rows (a list of tuples);
- ``(EXECUTE, conn, sql, params)`` -> ``(rowcount, lastrowid)``;
- ``(CHECK, conn, write)`` -> None: the transaction rules of the edge (``atomic()`` /
  ``aatomic()`` binding, a write outside its block refused) before a plan's statement;
- ``(SLEEP, seconds)`` -> None;
- ``(GATHER, [generators])`` -> their results in order (the async edge runs them
  concurrently, the sync one in turn);
- ``(BLOCK, alias, savepoint, generator)`` -> the generator's result, run inside the
  edge's transaction block on ``alias`` (``atomic()`` / ``aatomic()``; ``savepoint`` False
  joins an open block instead of nesting); its exception comes out at the ``yield``;
- ``(IN_BLOCK,)`` -> whether a transaction block of the edge is open.

The edge-specific ones (``CHECK``, ``BLOCK``, ``IN_BLOCK``) are answered by the ``edge``
object :func:`drive` is given (``qplan.execution``'s blocking one): the layers below it
never ask them.
"""

from __future__ import annotations

import time
from typing import Any, Generator

from .connections import connections

CONN, FETCH, EXECUTE, CHECK, SLEEP, GATHER, BLOCK, IN_BLOCK = 0, 1, 2, 3, 4, 5, 6, 7

Steps = Generator[tuple, Any, Any]


def drive(gen: Steps, edge: Any = None) -> Any:
    """Run ``gen`` to its end on the blocking connections; its return value.

    ``edge`` answers ``CHECK`` (``edge.check(alias, write)``), ``BLOCK``
    (``edge.block(alias, savepoint, generator)``) and ``IN_BLOCK`` (``edge.in_block()``).
    """
    value: Any = None
    error: BaseException | None = None
    send, throw = gen.send, gen.throw
    while True:
        try:
            req = send(value) if error is None else throw(error)
        except StopIteration as stop:
            return stop.value
        error = None
        op = req[0]
        try:
            if op == FETCH:
                value = req[1].fetchall(req[2], req[3])
            elif op == CONN:
                value = connections[req[1]]
            elif op == EXECUTE:
                cur = req[1].execute(req[2], req[3])
                value = (cur.rowcount, cur.lastrowid)
            elif op == CHECK:
                value = edge.check(req[1].alias, req[2])
            elif op == SLEEP:
                value = time.sleep(req[1])
            elif op == GATHER:
                value = [drive(sub, edge) for sub in req[1]]
            elif op == BLOCK:
                value = edge.block(req[1], req[2], req[3])
            elif op == IN_BLOCK:
                value = edge.in_block()
            else:  # pragma: no cover - a bug in the core
                raise AssertionError(f"unknown step {req!r}")
        except Exception as exc:  # thrown into the core at its yield, where it is handled
            value, error = None, exc


__all__ = ["CONN", "FETCH", "EXECUTE", "CHECK", "SLEEP", "GATHER", "BLOCK", "IN_BLOCK", "Steps",
           "drive"]
