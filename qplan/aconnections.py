"""The async I/O edge's connections: a bounded pool per alias per event loop, and the
``AsyncConnection`` that answers the core's requests (``qplan.steps``) with awaits.

Outside ``aatomic()`` each statement borrows a driver connection from its alias's pool
and gives it back when done; an ``aatomic()`` block holds one from BEGIN to its end
(``Transaction``, kept in a ``ContextVar``: bound to the task, not the thread). A task
cancelled or timed out (``READ_TIMEOUT``) in the middle of a statement never gives its
connection back for reuse: it is closed and its place in the pool freed. Driver errors
become qplan errors through the backend's ``map_error``, as on the blocking edge.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import time
import weakref
from typing import Any, Mapping

from . import routing, settings
from .backends import get as get_backend
from .errors import (ConfigurationError, ConnectionFailure, DatabaseError, PoolTimeout,
                     TransactionManagementError)

if sys.version_info >= (3, 11):
    _deadline = asyncio.timeout  # a timer on the running task: no task of its own
else:  # pragma: no cover - Python 3.10
    import contextlib

    @contextlib.asynccontextmanager
    async def _deadline(seconds: float | None) -> Any:
        task = asyncio.current_task()
        assert task is not None
        handle = None if seconds is None else asyncio.get_running_loop().call_later(
            seconds, task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            if handle is not None and handle.when() <= asyncio.get_running_loop().time():
                raise asyncio.TimeoutError from None
            raise
        finally:
            if handle is not None:
                handle.cancel()

DEFAULT_POOL = {"max_size": 10, "min_size": 0, "timeout": 30.0, "max_lifetime": None}


class AsyncPool:
    """At most ``max_size`` driver connections of one alias on one event loop."""

    def __init__(self, alias: str, config: Mapping[str, Any], backend: Any, where: str) -> None:
        pool = config.get("POOL") or DEFAULT_POOL
        self.alias, self.config, self.backend, self.where = alias, config, backend, where
        self.max_size: int = pool["max_size"]
        self.timeout: float | None = pool["timeout"]
        self.max_lifetime: float | None = pool.get("max_lifetime")
        self._idle: list[tuple[Any, float]] = []
        self._free = asyncio.Semaphore(self.max_size)
        # Connections are opened one at a time: a handshake's CPU work runs on the loop
        # (libpq derives the SCRAM-SHA-256 key, 4,096 HMAC rounds, inside one poll step:
        # 2-5 ms), so a burst of tasks opening max_size at once held the loop for all of
        # them in one iteration (20 connections: 20-30 ms of lag). In turn, each iteration
        # carries at most one, and the pool fills as fast (the work is CPU-bound anyway).
        # A connect that fails fails the ones queued behind it too (they would each wait
        # for the same unreachable server in turn): how many failed, and the last error.
        self._connecting = asyncio.Lock()
        self._failures = 0
        self._failure: Exception | None = None
        self.open = 0

    async def acquire(self) -> tuple[Any, float]:
        try:
            if not self._free.locked():  # a free place: no timer, no task (the common case)
                await self._free.acquire()
            else:
                async with _deadline(self.timeout):
                    await self._free.acquire()
        except asyncio.TimeoutError:
            raise PoolTimeout(
                f"{self.where}: no connection of its async pool came free within "
                f"{self.timeout:g} s ({self.max_size} in use); raise POOL max_size or timeout"
            ) from None
        try:
            while self._idle:
                raw, born = self._idle.pop()
                if self.max_lifetime is None or time.monotonic() - born < self.max_lifetime:
                    return raw, born
                await self._close(raw)
            raw = await self._connect()
            return raw, time.monotonic()
        except BaseException:
            self._free.release()
            raise

    async def _connect(self) -> Any:
        failures = self._failures
        async with self._connecting:
            if self._failures != failures and self._failure is not None:
                raise type(self._failure)(str(self._failure))  # failed while this one waited
            try:
                raw = await self._handshake()
            except (ConfigurationError, ConnectionFailure) as exc:
                self._failures, self._failure = self._failures + 1, exc
                raise
        self.open += 1
        return raw

    async def _handshake(self) -> Any:
        backend = self.backend
        try:
            return await backend.aconnect(self.config)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{self.where}: the driver refused the settings: {exc}") from exc
        except Exception as exc:
            if not isinstance(exc, backend.async_errors() + (OSError,)):
                raise
            raise ConnectionFailure(str(backend.map_error(exc, f"cannot connect to {self.where}"))
                                    ) from exc

    def release(self, slot: tuple[Any, float], broken: bool = False) -> None:
        """Take a connection back: idle again, or closed (``broken``, or mid-transaction)."""
        raw = slot[0]
        try:
            if broken or self.backend.async_in_transaction(raw):
                self.discard(raw)
            else:
                self._idle.append(slot)
        finally:
            self._free.release()

    def discard(self, raw: Any) -> None:
        """Close ``raw`` for good (in the background: a cancelled task cannot await)."""
        self.open -= 1
        try:
            asyncio.get_running_loop().create_task(self._close(raw, counted=True))
        except RuntimeError:  # no loop running any more: nothing to close it with
            pass

    async def _close(self, raw: Any, counted: bool = False) -> None:
        if not counted:
            self.open -= 1
        try:
            await self.backend.aclose(raw)
        except Exception:  # closing a broken connection: nothing to save
            pass

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for raw, _ in idle:
            await self._close(raw)

    def stats(self) -> dict[str, int]:
        return {"open": self.open, "idle": len(self._idle), "max_size": self.max_size}


class Transaction:
    """An ``aatomic()`` block's connection: held from BEGIN to the outermost block's end."""

    __slots__ = ("alias", "slot", "savepoints", "ids", "doomed", "doomed_depth")

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.slot: tuple[Any, float] | None = None
        self.savepoints: list[str] = []
        self.ids = 0
        self.doomed: str | None = None
        self.doomed_depth = 0

    def doom(self, depth: int, why: str) -> None:
        if self.doomed is None or depth < self.doomed_depth:
            self.doomed, self.doomed_depth = why, depth


# alias -> this task's open transaction (replaced, never mutated in place)
_transactions: contextvars.ContextVar[dict[str, Transaction]] = contextvars.ContextVar(
    "qplan_aio_transactions", default={})


def transactions() -> dict[str, Transaction]:
    return _transactions.get()


def set_transaction(alias: str, tx: Transaction | None) -> None:
    current = dict(_transactions.get())
    if tx is None:
        current.pop(alias, None)
    else:
        current[alias] = tx
    _transactions.set(current)
    routing.set_task_blocks(frozenset(current))  # reads inside the block go to its alias


class AsyncConnection:
    """One alias on one event loop: what the core's ``CONN`` request gets on the async edge."""

    def __init__(self, alias: str, config: Mapping[str, Any]) -> None:
        self.alias = alias
        self.settings = config
        self.backend = get_backend(config["ENGINE"])
        self.pool = AsyncPool(alias, config, self.backend, self.where())
        timeout = config.get("READ_TIMEOUT", 30.0)
        self.timeout: float | None = timeout

    def where(self) -> str:
        return "database " + self.backend.describe(self.alias, self.settings)

    @property
    def in_atomic(self) -> bool:
        tx = _transactions.get().get(self.alias)
        return tx is not None and bool(tx.savepoints)

    async def fetchall(self, sql: str, params: tuple = ()) -> list:
        return (await self.run(sql, params, True))[0]

    async def execute(self, sql: str, params: tuple = ()) -> tuple:
        rows, rowcount, lastrowid = await self.run(sql, params, False)
        return rowcount, lastrowid

    async def run(self, sql: str, params: tuple, fetch: bool, control: bool = False) -> tuple:
        """Run one statement on this task's transaction connection, or a borrowed one."""
        tx = _transactions.get().get(self.alias)
        if tx is not None and tx.doomed is not None and not control:
            raise self.doomed_error(tx)  # also a lost connection: never replaced in a block
        if tx is not None and tx.slot is not None:
            return await self._on(tx.slot[0], sql, params, fetch, tx)
        slot = await self.pool.acquire()
        if tx is not None:  # BEGIN of a block: the connection stays with it
            tx.slot = slot
            return await self._on(slot[0], sql, params, fetch, tx)
        broken = True
        try:
            result = await self._on(slot[0], sql, params, fetch, None)
            broken = False
            return result
        except DatabaseError as exc:
            broken = isinstance(exc, ConnectionFailure)
            raise
        finally:  # cancelled or timed out mid-statement: broken stays True, never reused
            self.pool.release(slot, broken=broken)

    async def _on(self, raw: Any, sql: str, params: tuple, fetch: bool, tx: Transaction | None
                  ) -> tuple:
        backend = self.backend
        try:
            if self.timeout is None:
                return await backend.arun(raw, sql, params, fetch)
            if backend.INTERRUPTS_READS:  # cut the socket: psycopg would wait for a frozen
                return await self._cut_after(raw, sql, params, fetch)  # server's cancel
            async with _deadline(self.timeout):  # cancels the driver call; closed below
                return await backend.arun(raw, sql, params, fetch)
        except asyncio.TimeoutError:
            error: DatabaseError = ConnectionFailure(
                f"{self.where()}: no answer within READ_TIMEOUT={self.timeout} s: the server "
                f"is hung or unreachable")
            self._lost(tx)
            raise error from None
        except asyncio.CancelledError:
            self._lost(tx)
            raise
        except Exception as exc:
            if not isinstance(exc, backend.async_errors()):
                raise
            lost = backend.async_is_disconnect(exc, raw)
            error = backend.map_error(exc, self.where())
            if lost:
                error = ConnectionFailure(str(error))
                self._lost(tx)
            elif tx is not None and tx.savepoints:
                tx.doom(len(tx.savepoints), f"a statement failed inside aatomic() "
                                            f"({type(error).__name__}: {error})")
            raise error from exc

    async def _cut_after(self, raw: Any, sql: str, params: tuple, fetch: bool) -> tuple:
        """The driver call, its connection's socket shut after READ_TIMEOUT (as the blocking
        edge's watchdog does): the call then fails at once, reported as a timeout."""
        cut: list[bool] = []

        def fire() -> None:
            cut.append(True)
            try:
                self.backend.interrupt(raw)
            except OSError:  # already closed
                pass

        handle = asyncio.get_running_loop().call_later(self.timeout, fire)  # type: ignore[arg-type]
        try:
            return await self.backend.arun(raw, sql, params, fetch)
        except Exception:
            if cut:
                raise asyncio.TimeoutError from None
            raise
        finally:
            handle.cancel()

    def _lost(self, tx: Transaction | None) -> None:
        """The connection of ``tx`` is gone mid-statement: doom the block, free its place."""
        if tx is not None and tx.slot is not None:
            slot, tx.slot = tx.slot, None
            tx.doom(0, "the connection was lost inside aatomic()")
            self.pool.release(slot, broken=True)

    def doomed_error(self, tx: Transaction) -> TransactionManagementError:
        return TransactionManagementError(
            f"{self.where()}: {tx.doomed}; the aatomic() block is doomed: no statement runs "
            f"in it until it ends, and it rolls back")


_by_loop: "weakref.WeakKeyDictionary[Any, dict[str, tuple[Mapping, AsyncConnection]]]" = \
    weakref.WeakKeyDictionary()


def connection(alias: str) -> AsyncConnection:
    """This event loop's connection (and pool) for ``alias``; new when its settings changed."""
    loop = asyncio.get_running_loop()
    conns = _by_loop.get(loop)
    if conns is None:
        conns = _by_loop[loop] = {}
    config = settings.database(alias)
    entry = conns.get(alias)
    if entry is not None and entry[0] is config:
        return entry[1]
    conn = AsyncConnection(alias, config)
    conns[alias] = (config, conn)
    if entry is not None:  # the alias was reconfigured: its old pool's idle ones go
        loop.create_task(entry[1].pool.close())
    return conn


def stats(alias: str) -> dict[str, int] | None:
    """The pool figures of ``alias`` on the running loop (None: not used on it yet)."""
    entry = _by_loop.get(asyncio.get_running_loop(), {}).get(alias)
    return None if entry is None else entry[1].pool.stats()


async def close_all() -> None:
    """Close the idle connections of the running loop's pools."""
    for _, conn in list(_by_loop.get(asyncio.get_running_loop(), {}).values()):
        await conn.pool.close()
