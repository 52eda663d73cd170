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
from collections import deque
from typing import Any, AsyncIterator, Mapping

from . import routing, settings, sweeper
from .admission import Gate
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

DEFAULT_POOL = {"max_size": 10, "min_size": 0, "timeout": 30.0, "max_lifetime": None,
                "max_idle": 600.0}


class AsyncPool:
    """At most ``max_size`` driver connections of one alias on one event loop; from its
    first lend on, ``min_size`` of them kept open (reopened in the background)."""

    def __init__(self, alias: str, config: Mapping[str, Any], backend: Any, where: str) -> None:
        pool = config.get("POOL") or DEFAULT_POOL
        self.alias, self.config, self.backend, self.where = alias, config, backend, where
        self.max_size: int = pool["max_size"]
        self.timeout: float | None = pool["timeout"]
        self.max_lifetime: float | None = pool.get("max_lifetime")
        self._idle: list[tuple[Any, float]] = []
        self._places = Gate(self.max_size, per_turn=None)  # lent in arrival order
        # Connections are opened one at a time: a handshake's CPU work runs on the loop
        # (libpq derives the SCRAM-SHA-256 key, 4,096 HMAC rounds, inside one poll step:
        # 2-5 ms), so a burst of tasks opening max_size at once held the loop for all of
        # them in one iteration (20 connections: 20-30 ms of lag). In turn, each iteration
        # carries at most one, and the pool fills as fast (the work is CPU-bound anyway).
        # A connect that fails fails the ones queued behind it too (they would each wait
        # for the same unreachable server in turn): how many failed, and the last error.
        self._connecting = Gate(1, per_turn=None)  # not an asyncio.Lock: that holds its loop
        self._failures = 0
        self._failure: Exception | None = None
        self.open = 0
        # POOL max_idle (qplan.sweeper): the fewest idle since the last sweep, when the next
        # is due, the loop timer armed for it (weakly: a pool must not keep its loop alive),
        # whether release() need not arm one, the tasks closing trimmed connections.
        self.min_size: int = pool.get("min_size", 0)
        self.max_idle: float | None = pool.get("max_idle")
        self._low = 0
        self._due = float("inf") if self.max_idle is None else time.monotonic() + self.max_idle
        self._timer: weakref.ref[asyncio.TimerHandle] | None = None
        self._armed = self.max_idle is None
        self._closing: set[asyncio.Task] = set()
        self._refill: asyncio.Task | None = None  # opening idle ones up to min_size
        self._opening = 0  # handshakes under way

    def _short(self) -> None:
        """A lend found fewer than ``min_size`` open: unless one runs, start a refill task."""
        if self._refill is None:
            self._refill = asyncio.get_running_loop().create_task(self._refill_to_min())

    async def _refill_to_min(self) -> None:
        """Open idle ones up to ``min_size``, one at a time, each under a place of the pool
        (never more than ``max_size`` open; a borrower waits for it only if all else is lent);
        stop at the first failure (borrowers meet it; a later lend starts another refill)."""
        try:
            while self.open + self._opening < self.min_size and not self._places.locked():
                self._places.enter()
                try:
                    raw = await self._handshake()
                    self.open += 1
                    self._idle.insert(0, (raw, time.monotonic()))  # lent last, trimmed first
                    self._low = 0  # not idle since the mark: the front ones are no longer
                    if not self._armed:
                        self._arm()
                finally:
                    self._places.leave()
        except (ConfigurationError, ConnectionFailure):
            return
        finally:
            self._refill = None

    def take(self) -> tuple[Any, float] | None:
        """An idle connection at once, if a place is free and it is young enough (no await:
        the common case of a statement outside ``aatomic()``); else None: ``acquire()``."""
        idle = self._idle
        if idle and not self._places.locked():
            born = idle[-1][1]
            if self.max_lifetime is None or time.monotonic() - born < self.max_lifetime:
                self._places.enter()
                slot = idle.pop()
                if len(idle) < self._low:
                    self._low = len(idle)
                if self.open < self.min_size:
                    self._short()
                return slot
        return None

    async def acquire(self) -> tuple[Any, float]:
        places = self._places
        waiter = places.enter()
        if waiter is not None:  # every place taken: wait, at most POOL timeout
            try:
                if self.timeout is None:
                    await waiter
                else:
                    async with _deadline(self.timeout):
                        await waiter
            except BaseException as exc:
                places.abandon(waiter)
                if isinstance(exc, asyncio.TimeoutError):
                    raise PoolTimeout(
                        f"{self.where}: no connection of its async pool came free within "
                        f"{self.timeout:g} s ({self.max_size} in use); raise POOL max_size or "
                        f"timeout") from None
                raise
        try:
            if time.monotonic() >= self._due:
                self._sweep()
            while self._idle:
                raw, born = self._idle.pop()
                if len(self._idle) < self._low:
                    self._low = len(self._idle)
                if self.max_lifetime is None or time.monotonic() - born < self.max_lifetime:
                    break
                await self._close(raw)
            else:
                raw, born = await self._connect(), time.monotonic()
            if self.open < self.min_size:
                self._short()
            return raw, born
        except BaseException:
            places.leave()
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
        if self._timer is None and self.max_idle is not None:
            self._armed = False  # the next release arms the timer (if beyond min_size)
        return raw

    async def _handshake(self) -> Any:
        backend = self.backend
        self._opening += 1  # counted before ``open`` (a refill must not overshoot min_size)
        try:
            return await backend.aconnect(self.config)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{self.where}: the driver refused the settings: {exc}") from exc
        except Exception as exc:
            if not isinstance(exc, backend.async_errors() + (OSError,)):
                raise
            raise ConnectionFailure(str(backend.map_error(exc, f"cannot connect to {self.where}"))
                                    ) from exc
        finally:
            self._opening -= 1

    def release(self, slot: tuple[Any, float], broken: bool = False) -> None:
        """Take a connection back: idle again, or closed (``broken``, or mid-transaction)."""
        raw = slot[0]
        try:
            if broken or self.backend.async_in_transaction(raw):
                self.discard(raw)
            else:
                self._idle.append(slot)
                if not self._armed:
                    self._arm()
        finally:
            self._places.leave()

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
        """Close the idle connections, and stop trimming (until the pool is used again)."""
        timer = None if self._timer is None else self._timer()
        if timer is not None:
            timer.cancel()
        self._timer, self._armed = None, self.max_idle is None
        if self._refill is not None:
            self._refill.cancel()
            await asyncio.gather(self._refill, return_exceptions=True)
        idle, self._idle = self._idle, []
        self._low = 0
        for raw, _ in idle:
            await self._close(raw)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    # --- POOL max_idle: trimming idle connections (qplan.sweeper) ---------------------------

    def _arm(self) -> None:
        """Arm the loop timer of the next sweep if connections beyond ``min_size`` are open
        (else ``_connect`` asks again when one more opens)."""
        self._armed = True
        if self.open <= self.min_size:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop running any more: nothing to trim with
            return
        delay = max(0.0, self._due - time.monotonic())
        self._timer = weakref.ref(loop.call_later(delay, self._tick))

    def _tick(self) -> None:
        self._timer, self._armed = None, False
        if time.monotonic() >= self._due:
            self._sweep()
        if self._idle or self.open <= self.min_size:
            self._arm()  # else the ones beyond min_size are lent: the next release arms

    def _sweep(self) -> None:
        """A sweep (due): close the connections idle since the last one beyond ``min_size``
        (in a task: a timer cannot await); a new period starts."""
        gone = sweeper.trim(self._idle, self._low, self.open - self.min_size)
        self._low = len(self._idle)
        self._due = time.monotonic() + (self.max_idle or 0.0)  # only ever due with a max_idle
        if gone:
            self.open -= len(gone)
            task = asyncio.get_running_loop().create_task(self._close_each(gone))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_each(self, slots: list[tuple[Any, float]]) -> None:
        for raw, _ in slots:
            await self._close(raw, counted=True)

    def stats(self) -> dict[str, int]:
        return {"open": self.open, "idle": len(self._idle), "max_size": self.max_size}


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
            async with _deadline(self.timeout):  # cancels the driver call; closed below
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


async def _at_loop_end(loop: "weakref.ref[Any]", conns: dict) -> AsyncIterator[None]:
    """Closes ``conns``' pools when their loop ends. ``asyncio.run`` closes every async
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
            for _, conn in list(conns.values()):
                await conn.pool.close()


def _close_at_loop_end(loop: Any, conns: dict) -> Any:
    """``_at_loop_end`` started on ``loop`` (so ``shutdown_asyncgens`` will close it) but
    without the loop's finalizer hook, which would hold the loop: it is kept beside the
    pools, in the dictionary keyed weakly by that loop."""
    closer = _at_loop_end(weakref.ref(loop), conns)
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
        _closers[loop] = _close_at_loop_end(loop, conns)
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
