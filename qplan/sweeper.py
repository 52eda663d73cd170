"""Idle connections given back: POOL ``max_idle`` for the blocking pools and the async ones.

Which connections have been idle that long is known without a clock read per lend or
return. A pool's idle list is a stack (lent from its end, given back to its end), so the
connections at its front are the oldest; a pool keeps ``low``, the fewest idle connections
it held since its last sweep (its "mark"). The ``low`` front ones were never lent since the
mark: when a sweep comes ``max_idle`` or more after it, they have been idle at least
``max_idle``, and :func:`trim` takes them out (never more than the pool's connections
beyond ``min_size``, never a lent one); then a new period starts. A connection is thus
closed after between ``max_idle`` and about twice that of idleness. psycopg_pool shrinks
by the same low-water mark (one connection per period; here all of them at once, so a
quiet service is back to ``min_size`` within two periods).

A sweep runs lazily when a pool lends or takes back a connection past its period, and,
for a pool that stops being used, from a timer: the async pools arm one on their loop
(``call_later``); the blocking pools share this module's one daemon thread, started on
first use (again after a fork), which sleeps until the earliest pool is due.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
import weakref
from typing import Protocol


def trim(idle: list, low: int, surplus: int) -> list:
    """Take out of ``idle`` (oldest first) and return the ``low`` front ones, at most
    ``surplus`` (the pool's open connections beyond ``min_size``)."""
    count = min(low, len(idle), surplus)
    if count <= 0:
        return []
    gone = idle[:count]
    del idle[:count]
    return gone


class Sweepable(Protocol):
    def sweep(self) -> float | None:
        """Trim if due; the monotonic time of the next sweep, or None (no timer needed)."""


_cond = threading.Condition(threading.Lock())
_due: list[tuple[float, int, "weakref.ref[Sweepable]"]] = []  # a heap by time
_order = itertools.count()
_thread: threading.Thread | None = None


def schedule(pool: Sweepable, when: float) -> None:
    """Call ``pool.sweep()`` at monotonic time ``when`` (on this module's thread), and again
    at the time it returns, until it returns None. The pool is held weakly."""
    with _cond:
        heapq.heappush(_due, (when, next(_order), weakref.ref(pool)))
        if not _start() and _due[0][0] == when:  # earlier than the thread sleeps until
            _cond.notify()


def awake() -> None:
    """Start the thread again if it is gone (a forked child) while sweeps are scheduled."""
    if _thread is None or not _thread.is_alive():
        with _cond:
            if _due:
                _start()


def _start() -> bool:
    """Under ``_cond``: start the thread unless it runs; whether it was started."""
    global _thread
    if _thread is not None and _thread.is_alive():
        return False
    _thread = threading.Thread(target=_run, name="qplan-pool-sweeper", daemon=True)
    _thread.start()
    return True


def _run() -> None:
    while True:
        with _cond:
            while True:
                now = time.monotonic()
                if _due and _due[0][0] <= now:
                    ref = heapq.heappop(_due)[2]
                    break
                _cond.wait(None if not _due else _due[0][0] - now)
        pool = ref()
        if pool is None:
            continue
        try:
            when = pool.sweep()  # closes outside every lock but the pool's own bookkeeping
        except Exception:  # a close that failed: the next sweep tries the rest
            when = time.monotonic() + 1.0
        if when is not None:
            schedule(pool, when)
        del pool


def _forked() -> None:
    """In a forked child the thread is gone (and the lock may be held): start afresh."""
    global _cond, _thread
    _cond = threading.Condition(threading.Lock())
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
