"""Bounded pools of driver connections, one per alias of a server database.

A :class:`Pool` lends a driver connection (a :class:`Slot`) to one thread at a time and
takes it back: ``qplan.connections`` borrows one per statement outside transactions and
keeps it for an ``atomic()`` block or a streaming ``iterator()``. At most ``max_size``
connections of an alias are open at once; a borrower that finds none free waits up to
``timeout`` seconds, then gets ``PoolTimeout``. A connection returned broken is closed, not
lent again, and so are the idle ones when one was lost (the server may have restarted);
connections older than ``max_lifetime`` are closed when they come back or are next lent.
Idle connections beyond ``min_size`` are closed after ``max_idle`` seconds of idleness (up
to about twice that), by ``qplan.sweeper``'s thread or the pool's next lend or return; a
lent one never is.

A pool holds ``min_size`` connections from its first lend on: whenever a lend finds fewer
open (the first one, or after connections were lost, expired or abandoned), one of the
threads all pools share (``qplan.refills``, a bounded set) opens the missing ones in the
background, one at a time, stopping at the first failure, which is logged (logger
``qplan.pools``, the mapped error: never a password) and backs the pool's next refill off
(``BACKOFF_FIRST`` doubling to ``BACKOFF_MOST``). The borrower waits for its own connect at
most, never for the refill; and a refill never runs at release time, when the server that
broke a connection may still be restarting.

Written here rather than taken from a library: DBUtils' ``PooledDB`` waits for a free
connection without a time limit and its "steady" connections reconnect behind the
caller's back (a lost connection must doom an ``atomic()`` block, never be replaced inside
it); ``psycopg2.pool`` raises at once when exhausted, has no lifetime and serves only
psycopg2. What qplan needs is a counter and a condition variable.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Mapping

from . import refills, sweeper
from .errors import Error, PoolTimeout

log = logging.getLogger("qplan.pools")
BACKOFF_FIRST, BACKOFF_MOST = refills.BACKOFF_FIRST, refills.BACKOFF_MOST


class Slot:
    """One pooled driver connection and the cursor qplan reuses on it."""

    __slots__ = ("raw", "cursor", "born")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.cursor: Any = None
        self.born = time.monotonic()


def _close(raw: Any) -> None:
    try:
        raw.close()
    except Exception:  # closing a broken connection: nothing to save
        pass


class Pool:
    """At most ``max_size`` open connections made by ``opener``; see the module docstring."""

    def __init__(self, where: str, config: Mapping[str, Any], opener: Callable[[], Any]) -> None:
        self.where = where
        self.max_size: int = config["max_size"]
        self.min_size: int = config["min_size"]
        self.timeout: float | None = config["timeout"]
        self.max_lifetime: float | None = config["max_lifetime"]
        self.max_idle: float | None = config.get("max_idle")
        self._opener = opener
        self._idle: list[Slot] = []  # most recently returned last (lent first: warm caches)
        self._open = 0  # idle + lent + being opened
        self._lent = 0
        self._closed = False
        self._refilling = False  # a refill is queued or runs (see refill)
        self._refill_after = 0.0  # monotonic time before which no refill starts (backoff)
        self._backoff = BACKOFF_FIRST
        self._cond = threading.Condition(threading.Lock())
        self._abandoned: collections.deque[int] = collections.deque()  # see abandon()
        # max_idle (qplan.sweeper): the fewest idle connections since the last sweep; when
        # the next one is due (inf: never); whether the sweeper's thread has this pool.
        self._low = 0
        self._due = float("inf") if self.max_idle is None else time.monotonic() + self.max_idle
        self._scheduled = False

    # --- lending ----------------------------------------------------------------------------

    def acquire(self) -> Slot:
        """A connection for this thread alone until :meth:`release`; opens one if none is
        idle and the pool is not full, else waits up to ``timeout`` (``PoolTimeout``)."""
        stale: list[Slot] = []
        schedule = False
        try:
            with self._cond:
                self._settle()
                now = time.monotonic()
                if now >= self._due:
                    stale = self._trim(now)
                deadline = None if self.timeout is None else now + self.timeout
                while True:
                    slot = self._take_idle(stale)
                    if slot is not None:
                        break
                    if self._open < self.max_size or self._closed:
                        self._open += 1
                        # beyond min_size: the sweeper's thread trims it once it idles
                        schedule = not self._scheduled and self._open > self.min_size \
                            and self.max_idle is not None
                        self._scheduled = self._scheduled or schedule
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise PoolTimeout(
                            f"{self.where}: no connection of its pool came free within "
                            f"{self.timeout:g} s ({self._lent} of {self.max_size} in use); raise "
                            f"POOL max_size or timeout, or hold connections for less time")
                    self._cond.wait(remaining)
                self._lent += 1
                refill = self._short()
        finally:
            for old in stale:
                _close(old.raw)
        if refill:
            refills.request(self)
        if slot is not None:
            return slot
        if schedule:
            sweeper.schedule(self, self._due)
        try:
            return Slot(self._opener())
        except BaseException:
            with self._cond:
                self._open -= 1
                self._lent -= 1
                self._cond.notify()
            raise

    def _take_idle(self, stale: list[Slot]) -> Slot | None:
        """Under the lock: the most recently returned idle connection still young enough
        (the expired ones go to ``stale``, for the caller to close unlocked), or None."""
        idle = self._idle
        while idle:
            slot = idle.pop()
            if len(idle) < self._low:
                self._low = len(idle)
            if not self._expired(slot):
                return slot
            stale.append(slot)
            self._open -= 1
        return None

    def release(self, slot: Slot, broken: bool = False, lost: bool = False) -> None:
        """Take back a lent connection: idle again, or closed when ``broken`` (then ``lost``
        closes the idle ones too: whatever broke it may have broken them), expired, or the
        pool was closed."""
        doomed: list[Slot] = []
        with self._cond:
            self._lent -= 1
            now = time.monotonic()
            if broken or self._closed or (self.max_lifetime is not None
                                          and now - slot.born > self.max_lifetime):
                doomed.append(slot)
            else:
                self._idle.append(slot)
            if lost:
                doomed.extend(self._idle)
                self._idle.clear()
                self._low = 0
            self._open -= len(doomed)
            self._cond.notify(max(len(doomed), 1))
            if now >= self._due:
                doomed.extend(self._trim(now))
        for old in doomed:
            _close(old.raw)

    def abandon(self, slot: Slot) -> None:
        """A borrower vanished holding ``slot`` (its thread ended): close it, free its place.

        Safe from a finaliser: takes no lock (the count is settled by the next borrower).
        """
        _close(slot.raw)
        self._abandoned.append(1)

    def _settle(self) -> None:
        while self._abandoned:
            self._abandoned.popleft()
            self._lent -= 1
            self._open -= 1

    def _expired(self, slot: Slot) -> bool:
        return self.max_lifetime is not None and time.monotonic() - slot.born > self.max_lifetime

    def _trim(self, now: float) -> list[Slot]:
        """Under the lock, a sweep (due): take out the connections idle since the last one
        beyond ``min_size`` and start a new period; the caller closes them, unlocked."""
        gone = sweeper.trim(self._idle, self._low, self._open - self.min_size)
        self._open -= len(gone)
        self._low = len(self._idle)
        self._due = now + (self.max_idle or 0.0)  # only ever due with a max_idle
        if gone:
            self._cond.notify(len(gone))
        if self._scheduled:
            sweeper.awake()  # its thread is gone in a forked child
        return gone

    def sweep(self) -> float | None:
        """The sweeper thread's call: trim if due; when to come again (None: nothing beyond
        ``min_size`` is open, the next connection opened beyond it schedules a sweep)."""
        gone: list[Slot] = []
        with self._cond:
            self._settle()
            now = time.monotonic()
            if now >= self._due:
                gone = self._trim(now)
            again = not self._closed and self._open > self.min_size
            self._scheduled = again
            due = self._due
        for slot in gone:
            _close(slot.raw)
        return due if again else None

    def _short(self) -> bool:
        """Under the lock, at a lend: whether to start a refill (fewer than ``min_size``
        open, none running, not backing off); if so, one is now running."""
        start = (self._open < self.min_size and not self._refilling and not self._closed
                 and time.monotonic() >= self._refill_after)
        self._refilling = self._refilling or start
        return start

    def refill(self) -> None:
        """On a ``qplan.refills`` thread: open idle connections up to ``min_size``, one at a
        time; stop when the pool is closed, or at the first failure: logged, and the next
        refill (a later lend's) backs off."""
        while True:
            with self._cond:
                if self._closed or self._open >= self.min_size:
                    self._refilling = False
                    return
                self._open += 1
            try:
                slot = Slot(self._opener())
            except Exception as exc:  # logged: no caller sees it (borrowers meet their own)
                with self._cond:
                    self._open -= 1
                    self._refilling = False
                    wait, self._refill_after = self._backoff, time.monotonic() + self._backoff
                    self._backoff = min(self._backoff * 2, BACKOFF_MOST)
                    self._cond.notify()
                # a qplan error's message is mapped (names the alias, never the password);
                # of anything else only its type is shown, never its text or traceback
                log.warning("%s: refilling its pool to POOL min_size (%d) failed, next try "
                            "in %g s at the earliest: %s", self.where, self.min_size, wait,
                            exc if isinstance(exc, Error) else type(exc).__name__)
                return
            with self._cond:
                closed = self._closed
                if closed:
                    self._open -= 1
                else:
                    self._backoff = BACKOFF_FIRST
                    self._idle.insert(0, slot)  # the oldest end: lent last, trimmed first
                    self._low = 0  # not idle since the mark: the front ones are no longer
                    self._cond.notify()
            if closed:
                _close(slot.raw)

    # --- the whole pool --------------------------------------------------------------------

    def close(self) -> None:
        """Close the idle connections now and the lent ones when they come back."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._low = 0
            self._cond.notify_all()
        for slot in idle:
            _close(slot.raw)

    def stats(self) -> dict[str, int]:
        """``in_use`` (lent), ``open`` (lent or idle) and ``max_size``."""
        with self._cond:
            self._settle()
            return {"in_use": self._lent, "open": self._open, "max_size": self.max_size}


_pools: dict[str, tuple[Mapping[str, Any], Pool]] = {}  # alias -> (its settings, its pool)
_lock = threading.Lock()


def pool_for(alias: str, config: Mapping[str, Any], where: str,
             opener: Callable[[], Any]) -> Pool | None:
    """The pool of ``alias`` for these settings (made on first use); None when unpooled.

    A pool made for other settings of the alias (it was reconfigured) is closed.
    """
    if config.get("POOL") is None:
        return None
    old = None
    with _lock:
        entry = _pools.get(alias)
        if entry is not None and entry[0] is config:
            return entry[1]
        pool = Pool(where, config["POOL"], opener)
        _pools[alias] = (config, pool)
        old = entry
    if old is not None:
        old[1].close()
    return pool


def close(aliases: Any) -> None:
    """Close the pools of ``aliases`` (their settings changed or were removed)."""
    with _lock:
        gone = [_pools.pop(alias) for alias in aliases if alias in _pools]
    for _, pool in gone:
        pool.close()


def stats(alias: str) -> dict[str, int] | None:
    """``in_use``, ``open`` and ``max_size`` of ``alias``'s pool; None if it has none (yet)."""
    with _lock:
        entry = _pools.get(alias)
    return None if entry is None else entry[1].stats()
