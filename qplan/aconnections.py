"""The async I/O edge's connections: a bounded pool per alias per event loop
(``qplan.apools``), and the ``AsyncConnection`` that answers the core's requests
(``qplan.steps``) with awaits.

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
import threading
import weakref
from collections import deque
from typing import Any, AsyncIterator, Mapping

from . import routing, settings
from .apools import AsyncPool, deadline
from .backends import get as get_backend
from .errors import ConnectionFailure, DatabaseError, TransactionManagementError


class Transaction:
    """An ``aatomic()`` block's connection: held from BEGIN to the outermost block's end."""

    __slots__ = ("alias", "slot", "savepoints", "ids", "doomed", "doomed_depth", "_lock",
                 "streams")

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.slot: tuple[Any, float] | None = None
        self.savepoints: list[str] = []
        self.ids = 0
        self.doomed: str | None = None
        self.doomed_depth = 0
        self._lock: asyncio.Lock | None = None
        self.streams: list[tuple[int, Any]] = []  # (savepoint depth, handle) of open streams

    @property
    def lock(self) -> asyncio.Lock:
        """One statement at a time on the block's connection: child tasks of the block share
        it, and a driver connection cannot run two statements at once (they would interleave)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def drop_stream(self, handle: Any) -> bool:
        """Forget the stream ``handle``; whether it was still open (not finished by the end
        of the block or savepoint it was opened in)."""
        for i, (_, h) in enumerate(self.streams):
            if h is handle:
                del self.streams[i]
                return True
        return False

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
        self.fetches: deque[int] = deque(maxlen=64)  # rows per round trip of stream() (tests)
        self._cuts: set[Any] = set()  # connections READ_TIMEOUT cut mid-statement

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
        arun = self.backend.arun
        if tx is not None and tx.slot is not None:
            async with tx.lock:
                if tx.slot is None:  # lost while this statement waited its turn
                    raise self.doomed_error(tx)
                raw = tx.slot[0]
                return await self.guarded(raw, tx, arun, raw, sql, params, fetch)
        slot = self.pool.take() or await self.pool.acquire()
        raw = slot[0]
        if tx is not None:  # BEGIN of a block: the connection stays with it
            tx.slot = slot
            return await self.guarded(raw, tx, arun, raw, sql, params, fetch)
        broken = True
        try:
            result = await self.guarded(raw, None, arun, raw, sql, params, fetch)
            broken = False
            return result
        except DatabaseError as exc:
            broken = isinstance(exc, ConnectionFailure)
            raise
        finally:  # cancelled or timed out mid-statement: broken stays True, never reused
            self.pool.release(slot, broken=broken)

    async def stream(self, sql: str, params: tuple, chunk_size: int) -> AsyncIterator[list]:
        """The rows in chunks, at most ``chunk_size`` per round trip, from a cursor of their
        own (server-side where the database has one). Closed early (``aclose()``, a
        ``break`` once the generator is collected), the cursor is finished and the connection
        lent again; failed or cancelled mid-fetch, the connection is closed, never reused."""
        tx = _transactions.get().get(self.alias)
        if tx is not None and (tx.doomed is not None or tx.slot is None):
            raise self.doomed_error(tx) if tx.doomed is not None else TransactionManagementError(
                f"{self.where()}: the aatomic() block has no connection")
        if tx is not None and self.backend.STREAM_EXCLUSIVE:
            rows = await self.fetchall(sql, params)  # the block's other statements need it
            for start in range(0, len(rows), chunk_size):
                yield rows[start:start + chunk_size]
            return
        slot = tx.slot if tx is not None else await self.pool.acquire()
        assert slot is not None
        raw, backend = slot[0], self.backend
        handle, mid = None, True  # mid: inside a driver call (a failure there: not reusable)
        try:
            handle = await self._step(raw, tx, backend.astart, raw, sql, params)
            if tx is not None:  # the block's end finishes it if this generator has not
                tx.streams.append((len(tx.savepoints), handle))
            while True:
                rows = await self._step(raw, tx, backend.afetch, handle, chunk_size)
                self.fetches.append(len(rows))
                if not rows:
                    break
                mid = False
                yield rows
                mid = True
            await self._finish(raw, tx, handle)
            handle, mid = None, False
        finally:
            if not mid and handle is not None:  # closed early at a yield: finish the cursor
                mid = True
                await self._finish(raw, tx, handle)
                mid = False
            if tx is None:
                self.pool.release(slot, broken=mid)

    async def _finish(self, raw: Any, tx: Transaction | None, handle: Any) -> None:
        if tx is None:
            await self.guarded(raw, None, self.backend.afinish, handle)
            return
        async with tx.lock:  # unless the end of its block or savepoint finished it already
            if tx.slot is not None and tx.slot[0] is raw and any(h is handle for _, h in tx.streams):
                await self.guarded(raw, tx, self.backend.afinish, handle)
                tx.drop_stream(handle)

    async def finish_streams(self, tx: Transaction, depth: int) -> None:
        """Finish ``tx``'s streams opened at savepoint ``depth`` or deeper: that block ends
        (its cursors must not outlive it, nor be closed later on a connection lent on)."""
        keep = [(d, h) for d, h in tx.streams if d < depth]
        ending = [h for d, h in tx.streams if d >= depth]
        tx.streams = keep
        if tx.slot is None:
            return
        raw = tx.slot[0]
        for handle in ending:
            await self.guarded(raw, tx, self.backend.afinish, handle)

    async def _step(self, raw: Any, tx: Transaction | None, call: Any, *args: Any) -> Any:
        if tx is None:
            return await self.guarded(raw, None, call, *args)
        async with tx.lock:  # child tasks of the block: one statement at a time
            if tx.slot is None or tx.slot[0] is not raw:
                raise self.doomed_error(tx) if tx.doomed else TransactionManagementError(
                    f"{self.where()}: the aatomic() block of this statement has ended")
            return await self.guarded(raw, tx, call, *args)

    async def guarded(self, raw: Any, tx: Transaction | None, call: Any, *args: Any) -> Any:
        """``await call(*args)`` on ``raw`` under ``READ_TIMEOUT``, driver errors mapped to
        qplan errors; a lost connection dooms ``tx`` (and frees its place)."""
        backend = self.backend
        try:
            if self.timeout is None:
                return await call(*args)
            if backend.INTERRUPTS_READS:  # cut the socket after READ_TIMEOUT, as the blocking
                # edge's watchdog does (psycopg would wait for a frozen server's cancel): the
                # call then fails at once, reported as a timeout
                handle = asyncio.get_running_loop().call_later(self.timeout, self._cut, raw)
                try:
                    return await call(*args)
                except Exception:
                    if raw in self._cuts:
                        raise asyncio.TimeoutError from None
                    raise
                finally:
                    handle.cancel()
                    self._cuts.discard(raw)
            async with deadline(self.timeout):  # cancels the driver call; closed below
                return await call(*args)
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

    def _cut(self, raw: Any) -> None:
        self._cuts.add(raw)
        try:
            self.backend.interrupt(raw)
        except OSError:  # already closed
            pass

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
_closers: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


async def _at_loop_end(loop: "weakref.ref[Any]") -> AsyncIterator[None]:
    """``close_all()`` when ``loop`` ends. ``asyncio.run`` closes every async
    generator its loop has seen start (``shutdown_asyncgens``) while the loop still runs,
    before closing it; this one is started for that and waits at its ``yield``. Without
    it a pool never closed would outlive its loop: an aiosqlite connection's thread holds
    the loop (its last future) until the connection closes, and the process never exits."""
    try:
        yield
    finally:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # collected with a loop closed by hand: nothing can be awaited
            running = None
        if running is not None and running is loop():
            await close_all()


def _close_at_loop_end(loop: Any) -> Any:
    """``_at_loop_end`` started on ``loop`` (so ``shutdown_asyncgens`` will close it) but
    without the loop's finalizer hook, which would hold the loop: it is kept beside the
    pools, in the dictionary keyed weakly by that loop."""
    closer = _at_loop_end(weakref.ref(loop))
    firstiter, finalizer = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter, None)
    try:
        try:
            closer.__anext__().send(None)  # to its yield (the loop's firstiter hook saw it)
        except StopIteration:
            pass
    finally:
        sys.set_asyncgen_hooks(firstiter, finalizer)
    return closer


def connection(alias: str) -> AsyncConnection:
    """This event loop's connection (and pool) for ``alias``; new when its settings changed."""
    loop = asyncio.get_running_loop()
    conns = _by_loop.get(loop)
    if conns is None:
        conns = _by_loop[loop] = {}
        _closers[loop] = _close_at_loop_end(loop)
    config = settings.database(alias)
    entry = conns.get(alias)
    if entry is not None and entry[0] is config:
        return entry[1]
    conn = AsyncConnection(alias, config)
    conns[alias] = (config, conn)
    if entry is not None:  # the alias was reconfigured: its old pool's idle ones go
        _retire(loop, [entry[1].pool])
    return conn


def forget(aliases: Any) -> None:
    """The pools of ``aliases`` (changed or removed: ``qplan.configure``) on every loop,
    from any thread: dropped, and retired on their loop (idle connections closed, lent
    ones when they come back): at once if it runs, else at its next ``close_all()`` or its
    end. Otherwise a removed alias's pool kept its connections (and refilled to
    ``min_size``) until its loop ended."""
    for loop, conns in list(_by_loop.items()):
        gone = [entry[1].pool for entry in (conns.pop(a, None) for a in aliases) if entry]
        if gone:
            _retire(loop, gone)


_retired: "weakref.WeakKeyDictionary[Any, list]" = weakref.WeakKeyDictionary()  # loop -> pools
_retired_lock = threading.Lock()  # forget() runs in any thread
_retiring: set = set()  # the tasks retiring pools (a task nobody holds may be collected)


def _retire(loop: Any, pools: list) -> None:
    with _retired_lock:
        _retired.setdefault(loop, []).extend(pools)
    if not loop.is_closed():
        try:
            loop.call_soon_threadsafe(_start_retiring, loop)
        except RuntimeError:  # closed meanwhile: nothing left to close them with
            pass


def _start_retiring(loop: Any) -> None:
    """On ``loop``: a task retiring each pool left to retire there."""
    with _retired_lock:
        pools = _retired.pop(loop, [])
    for pool in pools:
        task = loop.create_task(pool.retire())
        _retiring.add(task)
        task.add_done_callback(_retiring.discard)


async def _retire_all(loop: Any) -> None:
    """On ``loop``: retire what is left to and wait for the retiring tasks (before its
    ``close_all()`` returns or it ends: a driver's thread must not outlive the loop)."""
    _start_retiring(loop)
    tasks = [t for t in _retiring if t.get_loop() is loop]
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def stats(alias: str) -> dict[str, int] | None:
    """The pool figures of ``alias`` on the running loop (None: not used on it yet)."""
    entry = _by_loop.get(asyncio.get_running_loop(), {}).get(alias)
    return None if entry is None else entry[1].pool.stats()


async def close_all() -> None:
    """Close the idle connections of the running loop's pools (and of those retired)."""
    loop = asyncio.get_running_loop()
    for _, conn in list(_by_loop.get(loop, {}).values()):
        await conn.pool.close()
    await _retire_all(loop)
