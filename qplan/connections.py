"""The lazy ``connections`` registry: one connection per alias per thread, opened on first use.

Modelled on Django's connection handler: ``connections[alias]`` checks the alias at
once (``ConfigurationError`` naming the known ones) but opens nothing. Driver errors are
mapped to qplan errors with the original chained, and a connection that saw an
operational error is health-checked before it is used again.

A server alias has a bounded pool (``qplan.pools``): a thread's ``Connection`` borrows a
driver connection for each statement outside transactions and gives it back when the
statement is done; it keeps it for an ``atomic()`` block, while an ``iterator()`` streams,
and after raw access (``cursor()``) until ``close()``. A file database (SQLite) keeps one
driver connection per thread. On a backend whose driver has no read timeout, each driver
call is guarded by ``qplan.watchdog`` for the alias's ``READ_TIMEOUT``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import pools, settings, watchdog
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


def open_raw(alias: str, config: Mapping[str, Any], backend: Any) -> Any:
    """A new driver connection for ``alias`` (read-only when its settings say so); driver
    errors become ``ConnectionFailure``, settings the driver refuses ``ConfigurationError``."""
    where = "database " + backend.describe(alias, config)
    try:
        raw = backend.connect(config)
        if config.get("READ_ONLY"):
            backend.set_read_only(raw)
        return raw
    except (TypeError, ValueError) as exc:  # an OPTIONS entry the driver does not take
        raise ConfigurationError(f"{where}: the driver refused the settings: {exc}") from exc
    except Exception as exc:  # only the driver's errors are mapped; others re-raise as they are
        if not backend.is_driver_error(exc):
            raise
        error = backend.map_error(exc, f"cannot connect to {where}")
        raise ConnectionFailure(str(error)) from exc


class Connection:
    """One alias's connection in one thread: lazy, error-mapping, transaction-aware.

    Inside ``atomic()`` a failed statement dooms the block it ran in (Django's rule): every
    further statement of that block raises ``TransactionManagementError`` until the block
    ends and rolls back. A lost connection dooms every open block, and is never replaced
    by a new one while a block is open, so no statement of a block runs outside it. A
    pooled driver connection is held from BEGIN to the end of the outermost block.
    """

    def __init__(self, alias: str, config: Mapping[str, Any]) -> None:
        self.alias = alias
        self.settings = config
        self.backend = get_backend(config["ENGINE"])
        self.pool = pools.pool_for(alias, config, self.where(),
                                   lambda: open_raw(alias, config, self.backend))
        self.raw: Any = None  # the driver connection while this thread has one
        self._slot: pools.Slot | None = None  # where ``raw`` was borrowed from
        self._cursor: Any = None
        self.pinned = False  # raw access (``cursor()``): kept until ``close()``
        self.streams = 0  # open ``stream()`` generators holding ``raw``
        self.savepoints: list[str] = []  # open atomic blocks, outermost first
        self.open_blocks: set[str] = set()  # this thread's aliases inside atomic (the handler's)
        self.savepoint_ids = 0
        self.suspect = False  # saw an error that may have broken the connection
        self.doomed: str | None = None  # why the open blocks from ``doomed_depth`` on are doomed
        self.doomed_depth = 0  # the block depth it happened in; 0: the whole transaction
        timeout = config.get("READ_TIMEOUT")
        # seconds after which qplan's watchdog cuts a driver call (drivers without a timeout)
        self._guard = timeout if timeout is not None and self.backend.INTERRUPTS_READS else None

    @property
    def vendor(self) -> str:
        return self.backend.name

    @property
    def in_atomic(self) -> bool:
        return bool(self.savepoints)

    def where(self) -> str:
        return "database " + self.backend.describe(self.alias, self.settings)

    def connect(self) -> Any:
        """The driver connection, borrowed or opened (or again after a failure) on demand."""
        raw = self.raw
        if raw is not None and not self.suspect:
            return raw
        if self.savepoints:  # a block's statements never run on another connection
            self.doom(0, "the connection was lost inside atomic()")
            raise self.doomed_error()
        if raw is not None:
            self.suspect = False
            if self._usable(raw):
                return raw
            self._drop()
        if self.pool is None:
            self.raw = open_raw(self.alias, self.settings, self.backend)
        else:
            slot = self._slot = self.pool.acquire()
            self.raw, self._cursor = slot.raw, slot.cursor
        return self.raw

    def cursor(self) -> Any:
        """A driver cursor for raw SQL; its connection stays with this thread until ``close()``."""
        self.pinned = True
        return self.connect().cursor()

    def _shared_cursor(self) -> Any:
        cur = self._cursor
        if cur is None or self.suspect or self.raw is None:
            cur = self._cursor = self.connect().cursor()
        return cur

    # --- statements ----------------------------------------------------------------------------

    def execute(self, sql: str, params: tuple = ()) -> Any:
        """Run one statement; return its cursor (the server drivers hold its whole result)."""
        if self.doomed is not None and self.savepoints:
            raise self.doomed_error()
        return self._statement(sql, params, False)[0]

    def control(self, sql: str, params: tuple = ()) -> Any:
        """``execute`` without the doomed-block check: what ``atomic`` itself runs.

        After BEGIN the driver connection stays with this thread (the block opens on it)."""
        return self._statement(sql, params, False, hold=sql == self.backend.begin_sql())[0]

    def fetchall(self, sql: str, params: tuple = ()) -> list:
        if self.doomed is not None and self.savepoints:
            raise self.doomed_error()
        return self._statement(sql, params, True)[1]

    def _statement(self, sql: str, params: tuple, fetch: bool, hold: bool = False) -> tuple:
        """Run ``sql`` (and fetch its rows): ``(cursor, rows)``; then give a borrowed driver
        connection back unless something holds it.

        A pooled connection's reusable cursor is only used when the rows are fetched here:
        a cursor handed to the caller is its own, since the connection may be lent on.
        """
        try:
            own = not fetch and self.pool is not None
            cur = self.connect().cursor() if own else self._shared_cursor()
            try:
                rows = self._guarded(self.raw, self._call, cur, sql, params, fetch)
            except Exception as exc:  # only the driver's errors are mapped; others re-raise
                if not self.backend.is_driver_error(exc):
                    raise  # qplan's or the caller's bug, not the database's: never disguised
                if not self._stale(exc, sql):
                    raise self._failed(exc) from exc
                # The server dropped this idle connection (restarted, timed out): a read outside
                # a transaction is safe to run again, once, on a new connection.
                self._drop(lost=True)
                cur = self.connect().cursor() if own else self._shared_cursor()
                try:
                    rows = self._guarded(self.raw, self._call, cur, sql, params, fetch)
                except Exception as exc2:  # as above
                    if not self.backend.is_driver_error(exc2):
                        raise
                    raise self._failed(exc2) from exc2
        except BaseException:
            self._done()
            raise
        if not hold:
            self._done()
        return cur, rows

    @staticmethod
    def _call(cur: Any, sql: str, params: tuple, fetch: bool) -> Any:
        _run(cur, sql, params)
        return cur.fetchall() if fetch else None

    def _guarded(self, raw: Any, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, a driver call on ``raw``, cut by the watchdog after ``READ_TIMEOUT``
        seconds."""
        seconds = self._guard
        if seconds is None:
            return fn(*args)
        backend = self.backend
        alarm = watchdog.arm(seconds, lambda: backend.interrupt(raw))
        try:
            result = fn(*args)
        except BaseException:
            if watchdog.disarm(alarm):
                self._timed_out = True
            raise
        if watchdog.disarm(alarm):  # cut just as it answered: not to be lent again
            self.suspect = True
        return result

    _timed_out = False  # the watchdog cut the last driver call
    _slot: pools.Slot | None = None
    pool: pools.Pool | None = None

    def _stale(self, exc: BaseException, sql: str) -> bool:
        """Whether ``exc`` is an idle connection the server dropped (not a hung server that
        timed out: trying again would only wait as long once more)."""
        return (not self.in_atomic and sql.startswith("SELECT") and not self._timed_out
                and not self.backend.is_timeout(exc) and self.backend.is_disconnect(exc, self.raw))

    def stream(self, sql: str, params: tuple, chunk_size: int) -> Iterator[list]:
        """Rows in chunks, on a cursor of their own; the driver connection is held meanwhile."""
        if self.doomed is not None and self.savepoints:
            raise self.doomed_error()
        self.streams += 1
        cur = None
        try:
            raw = self.connect()
            cur = raw.cursor()
            self._guarded(raw, _run, cur, sql, params)
            while True:
                rows = self._guarded(raw, cur.fetchmany, chunk_size)
                if not rows:
                    break
                yield rows
        except Exception as exc:  # only the driver's errors are mapped; others re-raise as they are
            if not self.backend.is_driver_error(exc):
                raise
            raise self._failed(exc) from exc
        finally:
            if cur is not None:
                try:
                    cur.close()
                except Exception:  # closing a cursor of a broken connection: nothing to save
                    pass
            self.streams -= 1
            self._done()

    def _failed(self, exc: BaseException) -> DatabaseError:
        """The qplan error for a driver error; a lost connection is closed and dooms the blocks."""
        timed_out, self._timed_out = self._timed_out or self.backend.is_timeout(exc), False
        lost = timed_out or self.backend.is_disconnect(exc, self.raw)
        error = self.backend.map_error(exc, self.where())
        if timed_out:
            error = ConnectionFailure(
                f"{error} (no answer within READ_TIMEOUT={self.settings.get('READ_TIMEOUT')} s: "
                f"the server is hung or unreachable)")
        elif lost:
            error = ConnectionFailure(str(error))
        if self.savepoints:
            self.doom(0 if lost else len(self.savepoints),
                      f"a statement failed inside atomic() ({type(error).__name__}: {error})")
        if lost:
            self._drop(lost=True)
        elif not isinstance(error, HEALTHY_AFTER):
            self.suspect = True
            self._cursor = None
        return error  # type: ignore[return-value]

    def _usable(self, raw: Any) -> bool:
        """The backend's health check, guarded by the read timeout."""
        try:
            return bool(self._guarded(raw, self.backend.is_usable, raw))
        finally:
            self._timed_out = False

    # --- lending back ------------------------------------------------------------------------

    def _done(self) -> None:
        """A statement ended: give a borrowed driver connection back unless something holds it
        (an open block, a stream, raw access); a suspect one is checked first."""
        slot = self._slot
        if slot is None or self.savepoints or self.streams or self.pinned:
            return
        raw, self.raw, self._slot = self.raw, None, None
        broken = raw is None or self.backend.in_transaction(raw) or (
            self.suspect and not self._usable(raw))
        slot.cursor = None if broken else self._cursor
        self._cursor, self.suspect = None, False
        self.pool.release(slot, broken=broken)  # type: ignore[union-attr]

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

    def _drop(self, lost: bool = False) -> None:
        """Close the driver connection for good (a borrowed one leaves its pool; ``lost``: the
        pool's idle ones go too, whatever broke this one may have broken them)."""
        raw, self.raw, self._cursor = self.raw, None, None
        slot, self._slot = self._slot, None
        self.pinned, self._timed_out = False, False
        if slot is not None:
            self.pool.release(slot, broken=True, lost=lost)  # type: ignore[union-attr]
        elif raw is not None:
            try:
                raw.close()
            except Exception:  # closing a broken connection: nothing to save
                pass

    def close(self) -> None:
        """Close the driver connection; inside ``atomic()`` that dooms every open block.

        A borrowed one goes back to its pool, unless raw access (``cursor()``) may have left
        state on it: then it is closed."""
        if self.savepoints:
            self.doom(0, "the connection was closed inside atomic()")
        elif self._slot is not None and not self.pinned and not self.streams:
            self._done()
            return
        self._drop()

    def __del__(self) -> None:
        slot = self._slot
        if slot is not None and self.pool is not None:  # its thread ended holding it
            self.pool.abandon(slot)

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
        """Close this thread's connections (borrowed ones go back to their pools)."""
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
