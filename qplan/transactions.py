"""``atomic()``: a transaction as a context manager or decorator, nesting through savepoints.

The outermost block issues BEGIN and COMMIT (or ROLLBACK on an exception); inner
blocks use SAVEPOINT / RELEASE / ROLLBACK TO. State lives on the thread's
connection, so one ``atomic`` object may be reused and nested freely.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from .connections import Connection, connections
from .errors import TransactionManagementError
from .routing import write_alias, wrote

F = TypeVar("F", bound=Callable[..., Any])

class Atomic:
    """The object ``atomic()`` returns; see the module docstring."""

    def __init__(self, using: str | None) -> None:
        self.using = using

    def _connection(self) -> Connection:
        alias = self.using or write_alias()  # the transaction follows the router
        return connections[alias]

    def __enter__(self) -> Connection:
        conn = self._connection()
        if conn.savepoints:
            conn.savepoint_ids += 1
            name = f"qplan_sp_{conn.savepoint_ids}"
            conn.execute(f"SAVEPOINT {name}")
        else:
            name = ""
            conn.execute(conn.backend.begin_sql())
        conn.push_block(name)
        return conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn = self._connection()
        if not conn.savepoints:  # the connection was closed or lost inside the block
            if exc_type is None:
                raise TransactionManagementError(
                    f"{conn.where()}: the connection was closed inside atomic(); "
                    f"the transaction's work was not committed"
                )
            return  # the error that ended the block says what happened
        name = conn.pop_block()
        if name:
            if exc_type is None:
                conn.execute(f"RELEASE SAVEPOINT {name}")
            else:
                self._quietly(conn, f"ROLLBACK TO SAVEPOINT {name}")
                self._quietly(conn, f"RELEASE SAVEPOINT {name}")
            return
        if exc_type is None:
            try:
                conn.execute("COMMIT")
            except BaseException:
                self._quietly(conn, "ROLLBACK")
                raise
            wrote(conn)
        else:
            self._quietly(conn, "ROLLBACK")

    @staticmethod
    def _quietly(conn: Connection, sql: str) -> None:
        """Roll back without hiding the exception that caused it."""
        try:
            conn.execute(sql)
        except Exception:
            conn.close()  # a connection that cannot roll back is not reused

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Atomic(self.using):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def atomic(using: str | Callable[..., Any] | None = None) -> Any:
    """``with atomic():``, ``@atomic`` or ``@atomic(using='replica')``."""
    if callable(using):
        return Atomic(None)(using)
    return Atomic(using)
