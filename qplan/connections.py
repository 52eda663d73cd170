"""The lazy ``connections`` registry: one connection per alias per thread, opened on first use.

Modelled on Django's connection handler: ``connections[alias]`` checks the alias at
once (``ConfigurationError`` naming the known ones) but opens nothing; the driver
connection opens on the first statement. Driver errors are mapped to qplan errors
with the original chained, and a connection that saw an operational error is
health-checked before it is used again.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Iterator

from . import settings
from .backends import get as get_backend
from .routing import transaction_aliases
from .errors import (ConfigurationError, ConnectionFailure, DatabaseError, DataError, IntegrityError,
                     ProgrammingError, TransactionManagementError)

# Errors after which the connection itself is known to be fine.
HEALTHY_AFTER = (IntegrityError, DataError, ProgrammingError)


def _run(cur: Any, sql: str, params: tuple) -> None:
    """Execute ``sql``; without parameters the driver is given none, so it does no ``%``
    formatting and a name holding ``%s`` or ``?`` stays part of the name."""
    if params:
        cur.execute(sql, params)
    else:
        cur.execute(sql)


class Connection:
    """One alias's connection in one thread: lazy, error-mapping, transaction-aware.

    Inside ``atomic()`` a failed statement dooms the block it ran in (Django's rule): every
    further statement of that block raises ``TransactionManagementError`` until the block
    ends and rolls back. A lost connection dooms every open block, and is never replaced
    by a new one while a block is open, so no statement of a block runs outside it.
    """

    def __init__(self, alias: str, config: dict[str, Any]) -> None:
        self.alias = alias
        self.settings = config
        self.backend = get_backend(config["ENGINE"])
        self.raw: Any = None
        self._cursor: Any = None
        self.savepoints: list[str] = []  # open atomic blocks, outermost first
        self.open_blocks: set[str] = set()  # this thread's aliases inside atomic (the handler's)
        self.savepoint_ids = 0
        self.suspect = False  # saw an error that may have broken the connection
        self.doomed: str | None = None  # why the open blocks from ``doomed_depth`` on are doomed
        self.doomed_depth = 0  # the block depth it happened in; 0: the whole transaction

    @property
    def vendor(self) -> str:
        return self.backend.name

    @property
    def in_atomic(self) -> bool:
        return bool(self.savepoints)

    def where(self) -> str:
        return "database " + self.backend.describe(self.alias, self.settings)

    def connect(self) -> Any:
        """The driver connection, opened (or re-opened after a failure) on demand."""
        raw = self.raw
        if raw is not None and not self.suspect:
            return raw
        if self.savepoints:  # a block's statements never run on another connection
            self.doom(0, "the connection was lost inside atomic()")
            raise self.doomed_error()
        if raw is not None:
            self.suspect = False
            if self.backend.is_usable(raw):
                return raw
            self.close()
        try:
            raw = self.backend.connect(self.settings)
            if self.settings.get("READ_ONLY"):
                self.backend.set_read_only(raw)
            self.raw = raw
        except (TypeError, ValueError) as exc:  # an OPTIONS entry the driver does not take
            raise ConfigurationError(
                f"{self.where()}: the driver refused the settings: {exc}") from exc
        except Exception as exc:  # only the driver's errors are mapped; others re-raise as they are
            if not self.backend.is_driver_error(exc):
                raise
            error = self.backend.map_error(exc, f"cannot connect to {self.where()}")
            raise ConnectionFailure(str(error)) from exc
        return self.raw

    def cursor(self) -> Any:
        return self.connect().cursor()

    def execute(self, sql: str, params: tuple = ()) -> Any:
        """Run one statement on this connection's reusable cursor; return the cursor."""
        if self.doomed is not None and self.savepoints:
            raise self.doomed_error()
        return self.control(sql, params)

    def control(self, sql: str, params: tuple = ()) -> Any:
        """``execute`` without the doomed-block check: what ``atomic`` itself runs."""
        cur = self._cursor
        if cur is None or self.suspect or self.raw is None:
            cur = self._cursor = self.cursor()
        try:
            _run(cur, sql, params)
        except Exception as exc:  # only the driver's errors are mapped; others re-raise as they are
            if not self.backend.is_driver_error(exc):
                raise  # qplan's or the caller's bug, not the database's: never disguised
            if not self._stale(exc, sql):
                raise self._failed(exc) from exc
            # The server dropped this idle connection (restarted, timed out): a read outside
            # a transaction is safe to run again, once, on a new connection.
            self.close()
            cur = self._cursor = self.cursor()
            try:
                _run(cur, sql, params)
            except Exception as exc2:  # as above
                if not self.backend.is_driver_error(exc2):
                    raise
                raise self._failed(exc2) from exc2
        return cur

    def _stale(self, exc: BaseException, sql: str) -> bool:
        return (not self.in_atomic and sql.startswith("SELECT")
                and self.backend.is_disconnect(exc, self.raw))

    def fetchall(self, sql: str, params: tuple = ()) -> list:
        cur = self.execute(sql, params)
        try:
            return cur.fetchall()
        except Exception as exc:  # only the driver's errors are mapped; others re-raise as they are
            if not self.backend.is_driver_error(exc):
                raise
            raise self._failed(exc) from exc

    def stream(self, sql: str, params: tuple, chunk_size: int) -> Iterator[list]:
        """Rows in chunks, on a cursor of their own."""
        if self.doomed is not None and self.savepoints:
            raise self.doomed_error()
        cur = self.cursor()
        try:
            _run(cur, sql, params)
            while True:
                rows = cur.fetchmany(chunk_size)
                if not rows:
                    break
                yield rows
        except Exception as exc:  # only the driver's errors are mapped; others re-raise as they are
            if not self.backend.is_driver_error(exc):
                raise
            raise self._failed(exc) from exc
        finally:
            try:
                cur.close()
            except Exception:  # closing a cursor of a broken connection: nothing to save
                pass

    def _failed(self, exc: BaseException) -> DatabaseError:
        """The qplan error for a driver error; a lost connection is closed and dooms the blocks."""
        lost = self.backend.is_disconnect(exc, self.raw)
        error = self.backend.map_error(exc, self.where())
        if lost:
            error = ConnectionFailure(str(error))
        if self.savepoints:
            self.doom(0 if lost else len(self.savepoints),
                      f"a statement failed inside atomic() ({type(error).__name__}: {error})")
        if lost:
            self._drop()
        elif not isinstance(error, HEALTHY_AFTER):
            self.suspect = True
            self._cursor = None
        return error  # type: ignore[return-value]

    # --- atomic blocks -------------------------------------------------------------------------

    def doom(self, depth: int, why: str) -> None:
        """Refuse statements in the blocks from ``depth`` on (0: the whole transaction)."""
        if self.doomed is None or depth < self.doomed_depth:
            self.doomed, self.doomed_depth = why, depth

    def doomed_error(self) -> TransactionManagementError:
        return TransactionManagementError(
            f"{self.where()}: {self.doomed}; the atomic() block is doomed: no statement runs "
            f"in it until it ends, and it rolls back")

    def push_block(self, name: str) -> None:
        """An ``atomic`` block opened on this connection (``""``: the outermost)."""
        self.savepoints.append(name)
        self.open_blocks.add(self.alias)

    def pop_block(self) -> str:
        name = self.savepoints.pop()
        if not self.savepoints:
            self.open_blocks.discard(self.alias)
            self.doomed, self.doomed_depth = None, 0
        return name

    def _drop(self) -> None:
        raw, self.raw, self._cursor = self.raw, None, None
        if raw is not None:
            try:
                raw.close()
            except Exception:  # closing a broken connection: nothing to save
                pass

    def close(self) -> None:
        """Close the driver connection; inside ``atomic()`` that dooms every open block."""
        if self.savepoints:
            self.doom(0, "the connection was closed inside atomic()")
        self._drop()

    def __repr__(self) -> str:
        state = "open" if self.raw is not None else "not connected"
        return f"<Connection {self.alias!r} {self.vendor} {state}>"


class _PerThread(threading.local):
    """One thread's connections by alias."""

    def __init__(self) -> None:
        self.conns: dict[str, tuple[int, Connection]] = {}


class ConnectionHandler:
    """``connections[alias]``: this thread's connection for ``alias``."""

    def __init__(self) -> None:
        self._local = _PerThread()
        self._generation: dict[str, int] = {}

    def forget(self, aliases: Iterable[str]) -> None:
        """Settings of ``aliases`` changed: close this thread's connections to them; other
        threads' notice the new generation on their next use and reconnect."""
        for alias in aliases:
            self._generation[alias] = self._generation.get(alias, 0) + 1
            mine = self._local.conns.pop(alias, None)
            if mine is not None:
                mine[1].close()

    def __getitem__(self, alias: str) -> Connection:
        conns = self._local.conns
        entry = conns.get(alias)
        generation = self._generation.get(alias, 0)
        if entry is not None and entry[0] == generation:
            return entry[1]
        if entry is not None:
            entry[1].close()
        conn = Connection(alias, settings.database(alias))
        conn.open_blocks = transaction_aliases()
        conns[alias] = (generation, conn)
        return conn

    def in_atomic(self, alias: str) -> bool:
        """Whether this thread has an ``atomic()`` block open on ``alias`` (cheap: no lookup)."""
        return alias in transaction_aliases()

    def __contains__(self, alias: str) -> bool:
        return alias in settings.databases()

    def __iter__(self) -> Iterator[str]:
        return iter(settings.databases())

    def all(self) -> list[Connection]:
        """This thread's connections, one per configured alias."""
        return [self[alias] for alias in settings.databases()]

    def close_all(self) -> None:
        """Close this thread's connections."""
        for _, conn in self._local.conns.values():
            conn.close()


class DefaultConnectionProxy:
    """``qplan.connection``: forwards to ``connections['default']``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(connections[settings.DEFAULT_ALIAS], name)

    def __repr__(self) -> str:
        return f"<proxy {connections[settings.DEFAULT_ALIAS]!r}>"


connections = ConnectionHandler()
connection = DefaultConnectionProxy()
