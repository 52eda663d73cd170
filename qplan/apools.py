"""The async edge's connection pools: at most ``max_size`` driver connections of one alias
on one event loop, lent in arrival order (``qplan.admission.Gate``), opened one at a time
(a handshake's CPU work runs on the loop), ``min_size`` kept open, idle ones beyond it
closed after ``max_idle`` (``qplan.sweeper``'s rule), expired ones after ``max_lifetime``.
``qplan.aconnections`` borrows from them; the blocking edge's pools are ``qplan.pools``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import weakref
from typing import Any, Mapping

from . import sweeper
from .admission import Gate
from .errors import ConfigurationError, ConnectionFailure, PoolTimeout
from .refills import BACKOFF_FIRST, BACKOFF_MOST

log = logging.getLogger("qplan.pools")

if sys.version_info >= (3, 11):
    deadline = asyncio.timeout  # a timer on the running task: no task of its own
else:  # pragma: no cover - Python 3.10
    import contextlib

    @contextlib.asynccontextmanager
    async def deadline(seconds: float | None) -> Any:
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
        self._refill_after = 0.0  # no refill before (monotonic): backing off a failure
        self._backoff = BACKOFF_FIRST
        self._retired = False  # its alias changed or went: lent ones close when back
        self._opening = 0  # handshakes under way

    def _short(self) -> None:
        """A lend found fewer than ``min_size`` open: unless one runs (or the last one failed
        less than its backoff ago, or the pool is retired), start a refill task."""
        if self._refill is None and not self._retired and time.monotonic() >= self._refill_after:
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
                    self._backoff = BACKOFF_FIRST
                    self.open += 1
                    self._idle.insert(0, (raw, time.monotonic()))  # lent last, trimmed first
                    self._low = 0  # not idle since the mark: the front ones are no longer
                    if not self._armed:
                        self._arm()
                finally:
                    self._places.leave()
        except (ConfigurationError, ConnectionFailure) as exc:  # mapped: never the password
            wait, self._refill_after = self._backoff, time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MOST)
            log.warning("%s: refilling its async pool to POOL min_size (%d) failed, next try "
                        "in %g s at the earliest: %s", self.where, self.min_size, wait, exc)
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
                    async with deadline(self.timeout):
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
            if broken or self._retired or self.backend.async_in_transaction(raw):
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

    async def retire(self) -> None:
        """Its alias changed or was removed: close the idle ones now, the lent ones when
        they come back; no refill starts any more."""
        self._retired = True
        await self.close()

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
