"""The lazy ``connections`` registry: one connection per alias per thread, opened on first use.

Modelled on Django's connection handler: ``connections[alias]`` checks the alias at
once (``ConfigurationError`` naming the known ones) but opens nothing; the driver
connection opens on the first statement. Driver errors are mapped to qplan errors
with the original chained, and a connection that saw an operational error is
health-checked before it is used again.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator

from . import settings
from .backends import get as get_backend
from .errors import DatabaseError, DataError, IntegrityError, OperationalError, ProgrammingError

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
    """One alias's connection in one thread: lazy, error-mapping, transaction-aware."""

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
        if raw is not None:
            self.suspect = False
            if self.backend.is_usable(raw):
                return raw
            if self.in_atomic:
                raise OperationalError(f"{self.where()}: connection lost inside a transaction")
            self.close()
        try:
            self.raw = self.backend.connect(self.settings)
        except Exception as exc:
            raise self.backend.map_error(exc, f"cannot connect to {self.where()}") from exc
        return self.raw

    def cursor(self) -> Any:
        return self.connect().cursor()

    def execute(self, sql: str, params: tuple = ()) -> Any:
        """Run one statement on this connection's reusable cursor; return the cursor."""
        cur = self._cursor
        if cur is None or self.suspect or self.raw is None:
            cur = self._cursor = self.cursor()
        try:
            _run(cur, sql, params)
        except Exception as exc:
            if not self._stale(exc, sql):
                raise self._failed(exc) from exc
            # The server dropped this idle connection (restarted, timed out): a read outside
            # a transaction is safe to run again, once, on a new connection.
            self.close()
            cur = self._cursor = self.cursor()
            try:
                _run(cur, sql, params)
            except Exception as exc2:
                raise self._failed(exc2) from exc2
        return cur

    def _stale(self, exc: BaseException, sql: str) -> bool:
        return (not self.in_atomic and sql.startswith("SELECT")
                and self.backend.is_disconnect(exc, self.raw))

    def fetchall(self, sql: str, params: tuple = ()) -> list:
        cur = self.execute(sql, params)
        try:
            return cur.fetchall()
        except Exception as exc:
            raise self._failed(exc) from exc

    def stream(self, sql: str, params: tuple, chunk_size: int) -> Iterator[list]:
        """Rows in chunks, on a cursor of their own."""
        cur = self.cursor()
        try:
            _run(cur, sql, params)
            while True:
                rows = cur.fetchmany(chunk_size)
                if not rows:
                    break
                yield rows
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            try:
                cur.close()
            except Exception:
                pass

    def _failed(self, exc: BaseException) -> DatabaseError:
        error = self.backend.map_error(exc, self.where())
        if not isinstance(error, HEALTHY_AFTER):
            self.suspect = True
            self._cursor = None
        return error

    def push_block(self, name: str) -> None:
        """An ``atomic`` block opened on this connection (``""``: the outermost)."""
        self.savepoints.append(name)
        self.open_blocks.add(self.alias)

    def pop_block(self) -> str:
        name = self.savepoints.pop()
        if not self.savepoints:
            self.open_blocks.discard(self.alias)
        return name

    def close(self) -> None:
        raw, self.raw, self._cursor = self.raw, None, None
        self.savepoints.clear()
        self.open_blocks.discard(self.alias)
        if raw is not None:
            try:
                raw.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        state = "open" if self.raw is not None else "not connected"
        return f"<Connection {self.alias!r} {self.vendor} {state}>"


class _PerThread(threading.local):
    """One thread's connections by alias, and the aliases it has an atomic() block open on."""

    def __init__(self) -> None:
        self.conns: dict[str, tuple[int, Connection]] = {}
        self.atomic: set[str] = set()


class ConnectionHandler:
    """``connections[alias]``: this thread's connection for ``alias``."""

    def __init__(self) -> None:
        self._local = _PerThread()
        self._generation: dict[str, int] = {}
        settings.on_change(self._changed)

    def _changed(self, alias: str) -> None:
        # Connections in other threads notice the new generation on their next use.
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
        conn.open_blocks = self._local.atomic
        conns[alias] = (generation, conn)
        return conn

    def in_atomic(self, alias: str) -> bool:
        """Whether this thread has an ``atomic()`` block open on ``alias`` (cheap: no lookup)."""
        return alias in self._local.atomic

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
