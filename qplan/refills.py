"""Refills of the blocking pools (POOL ``min_size``) on a small set of threads they share.

A pool that finds fewer than ``min_size`` connections open at a lend asks for a refill
(``request``); at most ``MAX_THREADS`` threads (``qplan-pool-refill``) run them, whatever
the number of pools: 200 aliases refilling at once queue here instead of starting 200
threads, each possibly waiting ``CONNECT_TIMEOUT`` on a dead server. A thread takes the
pools in arrival order and ends when none is left, so an idle process holds none. The
queue holds pools weakly and a pool asks at most once at a time (its ``_refilling``), so
it never holds more entries than there are pools; a closed pool's entry is done at once.

Not on ``qplan.sweeper``'s thread: a connect to a dead server would hold up every pool's
trimming for ``CONNECT_TIMEOUT``.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from typing import Protocol

MAX_THREADS = 4

# After a refill failed, a pool's next refill waits this long (doubling per failure up to
# the most, back to the first after a success): a dead server is not asked again at every
# lend, on top of the lend's own connect. The async pools (``qplan.apools``) back off alike.
BACKOFF_FIRST = 1.0
BACKOFF_MOST = 30.0


class Refillable(Protocol):
    def refill(self) -> None:
        """Open idle connections up to ``min_size``; stop at the first failure."""


_lock = threading.Lock()
_queue: collections.deque["weakref.ref[Refillable]"] = collections.deque()
_running = 0  # threads started and not yet ended


def request(pool: Refillable) -> None:
    """Run ``pool.refill()`` on one of the shared threads (started if fewer than
    ``MAX_THREADS`` run; else a running one takes it after its current pool)."""
    global _running
    with _lock:
        _queue.append(weakref.ref(pool))
        start = _running < MAX_THREADS and _running < len(_queue)
        if start:
            _running += 1
    if start:
        try:
            threading.Thread(target=_work, name="qplan-pool-refill", daemon=True).start()
        except RuntimeError:  # no thread can be started (interpreter ending, or a limit)
            with _lock:
                _running -= 1


def _work() -> None:
    global _running
    while True:
        with _lock:
            if not _queue:
                _running -= 1
                return
            ref = _queue.popleft()
        pool = ref()
        if pool is not None:
            try:
                pool.refill()
            except Exception:  # refill() reports its own failures; never lose the thread
                pass
        del pool


def _forked() -> None:
    """In a forked child no thread of the parent runs (and the lock may be held)."""
    global _lock, _running
    _lock = threading.Lock()
    _running = 0
    _queue.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
